"""No churn (issue 15): a currency sold in a run is not bought back in that run, nor for
rebuy_cooldown_minutes after, live (the Kraken simulator's clock) and in the backtest alike."""
from __future__ import annotations

import logging
from decimal import Decimal
from pathlib import Path

from includes.agent import run_agent
from includes.backtest.replay import replay
from includes.backtest.sources import read_csv
from includes.backtest.sweep import trading_for
from includes.config import TradingConfig
from includes.storage import open_market_db
from tests.plugins.agent import CURRENCIES, move

DATA = Path(__file__).resolve().parent / "data"


def buys(cfg) -> list[str]:
    db = open_market_db(cfg)
    try:
        return [r["market"] for r in db.journal("dry", agent=cfg.storage.namespace) if r["side"] == "buy"]
    finally:
        db.close()


def test_a_sold_currency_waits_out_its_cooldown_on_the_exchange_clock(job_config, rising, caplog):
    cfg = job_config(trading={"currencies": CURRENCIES, "max_threads": 2, "sell_percent": 3,
                              "rebuy_cooldown_minutes": 60})
    run_agent(cfg)
    assert buys(cfg) == ["BTC/EUR", "ETH/EUR"]
    move(rising, "BTC", "1.05")
    with caplog.at_level(logging.INFO, logger="includes.agent"):
        assert len(run_agent(cfg).sold) == 1
        assert "BTC left out of this run's choice: sold in this run" in caplog.text
        rising.advance(59 * 60)
        assert run_agent(cfg).bought == []
        assert "BTC left out of this run's choice: sold less than rebuy_cooldown_minutes (60.0) ago" in caplog.text
    rising.advance(60)
    assert len(run_agent(cfg).bought) == 1
    assert buys(cfg) == ["BTC/EUR", "ETH/EUR", "BTC/EUR"]


def test_the_backtest_skips_no_decision_a_cooldown_could_change():
    """The gate knows each currency's cooldown: the trades equal those of the agent run at every
    decision; and a cooldown spaces every re-entry at least that far from the sell before it."""
    series = read_csv(DATA / "bittrex_UNITTEST_BTC_1m.csv")
    for minutes in ("0", "60", "240"):
        trading = trading_for(TradingConfig(), [series], {
            "fee_percent": "0.26", "max_threads": "2", "threads_per_currency": "2", "dry_run_balance": "100",
            "rebuy_cooldown_minutes": minutes})
        fast = replay([series], trading, step_minutes=5, show_progress=False)
        slow = replay([series], trading, step_minutes=5, show_progress=False, every_step=True)
        assert fast.trades == slow.trades and fast.equity == slow.equity
        exits = sorted(t.exit_at for t in fast.trades if t.exit_at is not None)
        for t in fast.trades:
            before = [e for e in exits if e <= t.entry_at]
            if before:
                assert t.entry_at - before[-1] >= max(int(minutes) * 60, 300)
        assert fast.pnl == slow.pnl and isinstance(fast.pnl, Decimal)


def test_the_drawdown_guard_stops_buying_creates_the_stop_file_and_says_why(job_config, rising, tmp_path):
    from includes.agent import run_agent

    cfg = job_config(trading={"currencies": CURRENCIES, "max_threads": 4, "max_drawdown_percent": 5,
                              "dry_run_balance": 10})
    assert len(run_agent(cfg).bought) == 2                 # all 10 EUR in BTC and ETH
    move(rising, "BTC", "0.85")
    move(rising, "ETH", "0.85")                           # the equity falls about 15 % (more with the fees)
    summary = run_agent(cfg)
    assert summary.bought == [] and len(summary.attention) == 1
    assert "max_drawdown_percent 5% reached; buying stopped, the stop file created" in summary.attention[0]
    stop = tmp_path / "stop"
    assert stop.read_text().strip() == summary.attention[0]
    assert run_agent(cfg) is None                          # later runs sleep until the owner removes it


def test_the_backtest_halts_where_the_drawdown_guard_trips_as_live_does():
    series = read_csv(DATA / "bittrex_UNITTEST_BTC_1m.csv")
    trading = trading_for(TradingConfig(), [series], {"max_drawdown_percent": "1", "dry_run_balance": "20",
                                                      "max_per_trade": "5", "max_threads": "4"})
    fast = replay([series], trading, step_minutes=5, show_progress=False)
    slow = replay([series], trading, step_minutes=5, show_progress=False, every_step=True)
    assert fast.trades == slow.trades and fast.equity == slow.equity
    peak, tripped = 0.0, None
    for i, value in enumerate(fast.equity):
        peak = max(peak, value)
        if value <= peak * 0.99:
            tripped = fast.first + i * fast.step
            break
    assert tripped is not None and fast.trades
    assert all(t.entry_at <= tripped and (t.exit_at is None or t.exit_at <= tripped) for t in fast.trades)
