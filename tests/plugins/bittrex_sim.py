"""Bittrex v3 simulator fixtures (simulators/bittrex.py).

- `bittrex_sim`: a started BittrexSimulator with one funded account,
  BITTREX_KEY / BITTREX_SECRET holding BITTREX_BALANCES.  The clock is at
  START_TIME (2023-11-14T22:13:20Z) and prices follow the seeded walk until a
  test calls `set_price` or `load_candles`; `set_time`/`advance` move the clock.
- `bittrex_client`: the real `bittrex_api.BittrexV3` on that account, pointed at
  the simulator; `bittrex_v3(sim, key, secret, tries)` builds more of them.

The client retries a failed call `tries` times (3 by default, as in the library;
its retry sleep is set to 0 here) and returns None on any error: read status
codes and error bodies with raw `requests` and `signed_headers`.

    def test_buy(bittrex_sim, bittrex_client):
        bittrex_sim.set_price("BTC-EUR", "30000")
        assert bittrex_client.get_ticker("BTC-EUR")["lastTradeRate"] == "30000.000"
"""
from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from simulators.bittrex import BittrexSimulator, content_hash, signature

if TYPE_CHECKING:
    from bittrex_api import BittrexV3

BITTREX_KEY = "test-key"
BITTREX_SECRET = "test-secret"
BITTREX_BALANCES = {"EUR": "1000", "BTC": "0.05", "ETH": "2"}


def bittrex_v3(sim: BittrexSimulator, key: str = BITTREX_KEY, secret: str = BITTREX_SECRET,
               tries: int = 3) -> BittrexV3:
    """A real BittrexV3 client on `sim`: v3 market names, no sleep between its retries."""
    from bittrex_api import BittrexV3  # not imported at plugin load: every test session loads this module

    client = BittrexV3(key, secret, max_request_try_count=tries, debug_level=0, reverse_market_names=False)
    client.url_utils.base_url = sim.url + "/v3"
    client.requests.sleep_time = 0
    return client


def signed_headers(key: str, secret: str, method: str, url: str, body: bytes = b"",
                   timestamp: str | None = None) -> dict[str, str]:
    """Headers of a signed request to `url` (the full URL, query included), as spec §4.4 says."""
    stamp = timestamp or str(int(time.time() * 1000))
    body_hash = content_hash(body)
    return {"Api-Key": key, "Api-Timestamp": stamp, "Api-Content-Hash": body_hash,
            "Api-Signature": signature(secret, stamp, url, method, body_hash),
            "Content-Type": "application/json"}


@pytest.fixture
def bittrex_sim() -> Iterator[BittrexSimulator]:
    with BittrexSimulator() as sim:
        sim.add_account(BITTREX_KEY, BITTREX_SECRET, BITTREX_BALANCES)
        yield sim


@pytest.fixture
def bittrex_client(bittrex_sim: BittrexSimulator) -> BittrexV3:
    return bittrex_v3(bittrex_sim)
