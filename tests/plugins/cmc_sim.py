"""CoinMarketCap simulator fixture (simulators/coinmarketcap.py).

- `cmc_sim`: a started CoinMarketCapSimulator that accepts one key, CMC_KEY;
  its global metrics are at their defaults until a test calls
  `cmc_sim.set_metrics(...)`.  The endpoint is `cmc_sim.url + ENDPOINT`.

    def test_dominance(cmc_sim):
        cmc_sim.set_metrics(btc_dominance=55.5)
        body = requests.get(cmc_sim.url + ENDPOINT, headers={"X-CMC_PRO_API_KEY": CMC_KEY}).json()
        assert body["data"]["btc_dominance"] == 55.5
"""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from simulators.coinmarketcap import CoinMarketCapSimulator

CMC_KEY = "cmc-test-key"


@pytest.fixture
def cmc_sim() -> Iterator[CoinMarketCapSimulator]:
    with CoinMarketCapSimulator(api_keys=[CMC_KEY]) as sim:
        yield sim
