"""Agent fixtures: prices moved on the Kraken simulator so that trends are known.

    def test_x(rising):        # BTC and ETH rose over 24 h, LTC, XRP and ADA fell
        move(rising, "BTC", "1.1")
"""
from __future__ import annotations

import glob
from decimal import Decimal

import pytest

CURRENCIES = ["BTC", "ETH", "LTC", "XRP", "ADA"]
PAIRS = {"BTC": "XXBTZEUR", "ETH": "XETHZEUR", "LTC": "XLTCZEUR", "XRP": "XXRPZEUR", "ADA": "ADAEUR"}


def move(sim, currency: str, factor: str) -> None:
    """Multiply a pair's price by `factor` from now on: its trends follow."""
    pair = sim.pair(PAIRS[currency])
    price = (sim.price(PAIRS[currency]) * Decimal(factor)).quantize(Decimal(1).scaleb(-pair.pair_decimals))
    sim.set_price(PAIRS[currency], price)


def threads(cfg, mode: str = "live"):
    """The agent's threads in `mode`, read from the state store the config names."""
    from includes.storage import open_state

    store = open_state(cfg, mode)
    try:
        return store.threads()
    finally:
        store.close()


def journal(cfg, mode: str = "live"):
    """The agent's journal rows in `mode`, oldest intent first."""
    from includes.storage import open_market_db

    db = open_market_db(cfg)
    try:
        return db.journal(mode, agent=cfg.storage.namespace)
    finally:
        db.close()


def wall_clock_env(offset: str) -> dict[str, str]:
    """Environment that moves a process's wall clock by `offset` ("+3h", "-365d"): libfaketime
    preloaded (Debian's faketime, installed by tests/setup.sh); its monotonic clock stays true.
    Preloaded directly, not through the faketime command, so a SIGKILL reaches the process itself."""
    found = glob.glob("/usr/lib/*/faketime/libfaketime.so.1")
    if not found:
        pytest.fail("libfaketime is missing: tests/setup.sh installs Debian's faketime")
    return {"LD_PRELOAD": found[0], "FAKETIME": offset, "FAKETIME_DONT_FAKE_MONOTONIC": "1"}


@pytest.fixture
def rising(kraken_venue):
    """BTC and ETH rose over 24 h, the others fell."""
    sim = kraken_venue.sim
    for currency, factor in {"BTC": "1.3", "ETH": "1.2", "LTC": "0.7", "XRP": "0.7", "ADA": "0.7"}.items():
        move(sim, currency, factor)
    return sim
