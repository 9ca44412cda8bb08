"""Which currencies a run may choose (issue 15): only those whose market takes an order of
max_per_trade at the ask, its minimum volume and cost, fee included; the others said once per
run, with why, and never journaled.  Against the Kraken simulator's minimums (ADA: 15)."""
from __future__ import annotations

import logging

from includes.agent import run_agent
from tests.plugins.agent import CURRENCIES, journal, move


def test_a_currency_whose_minimum_order_passes_the_stake_is_left_out_once_never_journaled(
        job_config, rising, caplog):
    move(rising, "ADA", "2.2")          # ADA now rises most; 15 ADA cost more than 5 EUR
    cfg = job_config(trading={"currencies": CURRENCIES, "max_threads": 4, "threads_per_currency": 2})
    with caplog.at_level(logging.INFO, logger="includes.agent"):
        summary = run_agent(cfg)
    said = [r.getMessage() for r in caplog.records if "left out" in r.getMessage()]
    assert len(said) == 1 and said[0].startswith("ADA left out of this run's choice: needs ")
    assert said[0].endswith("EUR a trade (its minimum order, fee included), max_per_trade is 5")
    need = float(said[0].split("needs ")[1].split(" EUR")[0])
    ask = float(rising.bid_ask("ADAEUR")[1])
    assert abs(need - 15 * ask * 1.0026) < 0.0001    # 15 ADA at the ask, with Kraken's 0.26 % fee
    rows = journal(cfg, "dry")
    assert rows and "ADA/EUR" not in {r["market"] for r in rows}
    assert all(r["status"] == "closed" for r in rows) and len(summary.bought) == len(rows) == 4


def test_a_stake_that_covers_the_minimum_buys_it(job_config, rising):
    move(rising, "ADA", "2.2")
    cfg = job_config(trading={"currencies": CURRENCIES, "max_threads": 1, "max_per_trade": 10})
    run_agent(cfg)
    assert [r["market"] for r in journal(cfg, "dry")] == ["ADA/EUR"]


def test_the_example_configs_stake_buys_every_listed_currency_at_the_simulators_minimums(kraken_venue):
    """conf/config.example.yaml's defaults: each listed currency's minimum order on the Kraken
    simulator (Kraken's own: 15 ADA, 10 XRP...) fits max_per_trade, fee included, with room for
    its price to rise by half."""
    from decimal import Decimal

    from includes.config import EXAMPLE_CONFIG, load_config

    trading = load_config(EXAMPLE_CONFIG).trading
    platform = kraken_venue.platform(fee_percent=trading.fee_percent)
    for currency in trading.currencies:
        market = platform.market(currency)
        ask = platform.get_tickers([market.symbol])[market.symbol].ask
        platform.prepare_buy(trading.max_per_trade, currency, ask)        # raises OrderTooSmall if not
        assert platform.least_order_cost(market, ask * Decimal("1.5")) <= trading.max_per_trade, currency
