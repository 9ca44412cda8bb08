"""Fixtures for tests that talk to Kraken: a real local simulator over HTTP.

`kraken_sim` yields a started `simulators.kraken.KrakenSimulator`
(default markets: XXBTZEUR, XETHZEUR, ADAEUR, XETHXXBT, ...; seed 0; the
simulated clock at the real now, frozen until the test moves it) with one
funded Starter-tier account:

    sim.url          base URL for krakenex: api.uri = sim.url
    sim.test_key     API key of the funded account
    sim.test_secret  its base64 secret
    KRAKEN_TEST_BALANCES, the account's balances at the start

Drive it from the test: sim.set_time(ts) / sim.advance(s), sim.set_price(pair,
price), sim.load_candles(pair, rows_or_csv), sim.set_pair_status(pair, status),
sim.set_system_status(status), sim.inject(method, fault, times=1, **params) (faults
before the call or, with after=True, after it was carried out; "lifecycle" on
AddOrder scripts the next market order: pending, open, fill, end, hidden, unit),
sim.complete_orders(), sim.add_account(..., tier="pro").  Read sim.calls["AddOrder"],
sim.balances(key), sim.account_orders(key) (every order placed, the ground truth),
sim.price(pair), sim.bid_ask(pair).  The module docstring of
simulators/kraken.py lists every fault.

`kraken_api` is a krakenex.API pointed at `kraken_sim` with the test key.

Two things real Kraken does that tests meet: krakenex's nonce is the clock in
milliseconds, so two private calls in one millisecond share a nonce and the
second gets EAPI:Invalid nonce; and a Starter key may make 15 counted calls
before EAPI:Rate limit exceeded, regaining one every 3 s.
"""
from __future__ import annotations

from collections.abc import Iterator

import krakenex
import pytest

from simulators.kraken import KrakenSimulator

KRAKEN_TEST_BALANCES = {"ZEUR": "1000", "XXBT": "0.05", "XETH": "0.5"}


@pytest.fixture
def kraken_sim() -> Iterator[KrakenSimulator]:
    with KrakenSimulator() as sim:
        sim.test_key, sim.test_secret = sim.add_account(balances=KRAKEN_TEST_BALANCES)
        yield sim


@pytest.fixture
def kraken_api(kraken_sim: KrakenSimulator) -> Iterator[krakenex.API]:
    api = krakenex.API(kraken_sim.test_key, kraken_sim.test_secret)
    api.uri = kraken_sim.url
    yield api
    api.close()
