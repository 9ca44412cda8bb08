"""trade_agent against the Kraken simulator: dry-run and live, budget, stop file, selling."""
from __future__ import annotations

import logging
import os
from decimal import Decimal

import pytest

from includes.agent import run_agent
from includes.storage import open_market_db, open_state
from includes.storage.state import ACTIVE, DISABLED, WAITING
from tests.plugins.agent import CURRENCIES, journal, move, threads


def test_dry_run_buys_the_best_rising_currencies_without_private_calls(job_config, rising, kraken_venue):
    cfg = job_config(trading={"currencies": CURRENCIES, "max_threads": 4, "dry_run": True})
    summary = run_agent(cfg)
    assert summary.mode == "dry" and len(summary.bought) == 2
    state = threads(cfg, "dry")
    assert [(t.n, t.state, t.currency) for t in state] == [
        (1, ACTIVE, "BTC"), (2, ACTIVE, "ETH"), (3, WAITING, ""), (4, WAITING, "")]
    assert all(t.value <= Decimal(5) and t.volume > 0 for t in state[:2])
    private = {"Balance", "BalanceEx", "AddOrder", "QueryOrders", "OpenOrders", "ClosedOrders", "CancelOrder"}
    assert not private & set(kraken_venue.sim.calls)
    assert kraken_venue.sim.calls["Ticker"] == 1   # the run's one read of the prices sizes its orders too
    assert kraken_venue.sim.calls["AssetPairs"] == 1 and kraken_venue.sim.last_query["AssetPairs"] == {
        "pair": "ADAEUR,XBTEUR,ETHEUR,LTCEUR,XRPEUR"}   # its own pairs, not Kraken's every one
    assert "Time" not in kraken_venue.sim.calls       # Kraken's clock came with the first reply
    rows = journal(cfg, "dry")
    assert [(r["side"], r["status"], r["market"]) for r in rows] == [
        ("buy", "closed", "BTC/EUR"), ("buy", "closed", "ETH/EUR")]
    assert journal(cfg, "live") == [] and threads(cfg, "live") == []


def test_the_seed_keys_are_written(job_config, rising, redis_namespace):
    import redis

    from tests.conftest import REDIS_URL

    cfg = job_config(trading={"currencies": CURRENCIES, "max_threads": 4},
                     storage={"state": REDIS_URL, "namespace": redis_namespace})
    run_agent(cfg)
    r = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    ns = f"{redis_namespace}:dry:"
    assert r.hgetall(ns + "thread:1")["state"] == "active"
    assert Decimal(r.get(ns + "invest:total")) == Decimal(20)
    assert Decimal(r.get(ns + "platform:totaleuro")) == Decimal(100)
    assert Decimal(r.get(ns + "platform:BTC:last24h:tendance")) > 9
    assert Decimal(r.get(ns + "platform:LTC:last2h:tendance")) < 0
    assert Decimal(r.get(ns + "platform:BTC:value")) == rising.price("XXBTZEUR")
    assert r.get(ns + "platform:BTC:montant") == "0"
    r.close()


def test_a_sell_comes_when_the_net_gain_reaches_sell_percent(job_config, rising, caplog):
    cfg = job_config(trading={"currencies": CURRENCIES, "max_threads": 4, "sell_percent": 3})
    run_agent(cfg)
    move(rising, "BTC", "1.02")   # +2% gross is less than 3% once both fees are paid
    summary = run_agent(cfg)
    assert summary.sold == []
    move(rising, "BTC", "1.02")   # now about +4% gross, +3.5% net
    with caplog.at_level(logging.INFO):
        summary = run_agent(cfg)
    assert len(summary.sold) == 1 and "sold" in summary.sold[0] and "BTC" in summary.sold[0]
    assert "SELL" in caplog.text and "net gain" in caplog.text
    rows = journal(cfg, "dry")
    assert [(r["thread"], r["side"], r["status"]) for r in rows] == [
        (1, "buy", "closed"), (2, "buy", "closed"), (1, "sell", "closed")]   # not bought back in the same run
    assert "BTC left out of this run's choice: sold in this run" in caplog.text
    assert rows[2]["filled"] == rows[0]["filled"]


def test_a_currency_dropped_from_the_config_is_still_sold_never_bought(job_config, rising, kraken_venue):
    """Its threads keep their prices and sell at the threshold; no thread buys it again."""
    cfg = job_config(trading={"currencies": CURRENCIES, "max_threads": 4, "sell_percent": 3})
    run_agent(cfg)
    before = threads(cfg, "dry")
    assert [(t.state, t.currency) for t in before[:2]] == [(ACTIVE, "BTC"), (ACTIVE, "ETH")]
    cfg = job_config(trading={"currencies": [c for c in CURRENCIES if c != "BTC"], "max_threads": 4,
                              "sell_percent": 3})
    move(rising, "BTC", "1.05")
    summary = run_agent(cfg)
    assert [line.split(" at ")[0] for line in summary.sold] == [f"thread 1: sold {before[0].volume} BTC"]
    assert "BTC" not in {t.currency for t in threads(cfg, "dry") if t.state == ACTIVE}


def test_stop_loss_frees_a_thread_when_configured(job_config, rising, caplog):
    cfg = job_config(trading={"currencies": CURRENCIES, "max_threads": 2, "stop_loss_percent": 5})
    run_agent(cfg)
    move(rising, "BTC", "0.97")
    assert run_agent(cfg).sold == []          # -3.6% net: held
    move(rising, "BTC", "0.97")
    with caplog.at_level(logging.INFO):
        assert len(run_agent(cfg).sold) == 1  # -6.4% net: sold
    assert "hit stop_loss_percent 5%" in caplog.text


def test_max_hold_frees_a_thread_on_the_platform_clock(job_config, rising, caplog):
    cfg = job_config(trading={"currencies": CURRENCIES, "max_threads": 2, "max_hold_hours": 6})
    run_agent(cfg)
    rising.advance(5 * 3600)
    assert run_agent(cfg).sold == []
    rising.advance(3600)
    with caplog.at_level(logging.INFO):
        assert len(run_agent(cfg).sold) >= 1
    assert "max_hold_hours 6" in caplog.text


def test_the_stop_file_halts_everything(tmp_path, job_config, rising, caplog):
    cfg = job_config(trading={"currencies": CURRENCIES})
    (tmp_path / "stop").touch()
    with caplog.at_level(logging.INFO):
        assert run_agent(cfg) is None
    assert "stop file present: sleeping" in caplog.text
    assert journal(cfg, "dry") == []


def test_the_dry_run_file_turns_a_live_config_into_a_dry_run(tmp_path, job_config, rising, kraken_venue):
    cfg = job_config(trading={"currencies": CURRENCIES, "dry_run": False})
    (tmp_path / "dry-run").touch()
    assert run_agent(cfg).mode == "dry"
    assert kraken_venue.sim.calls["AddOrder"] == 0


def test_live_orders_reach_the_exchange_with_their_journal_refs(db_url, job_config, rising, kraken_venue):
    cfg = job_config(market_db=db_url, trading={"currencies": CURRENCIES, "max_threads": 4, "dry_run": False})
    summary = run_agent(cfg)
    assert summary.mode == "live" and len(summary.bought) == 2
    platform = kraken_venue.platform()
    rows = journal(cfg, "live")
    for row in rows:
        order = platform.get_order(row["ref"])
        assert order is not None and order.filled == row["filled"] and order.cost == row["cost"]
    balances = kraken_venue.sim.balances(kraken_venue.key)
    spent = sum(r["cost"] + r["fee"] for r in rows)
    assert balances["ZEUR"] == Decimal(1000) - spent
    state = threads(cfg, "live")
    assert balances["XETH"] == state[1].volume


def test_live_refuses_a_key_file_others_can_read(tmp_path, job_config, rising):
    cfg = job_config(trading={"currencies": CURRENCIES, "dry_run": False})
    os.chmod(tmp_path / "kraken.key", 0o644)
    from includes.errors import ConfigError
    with pytest.raises(ConfigError, match="readable by group or others"):
        run_agent(cfg)


def test_threads_the_budget_cannot_cover_are_disabled_then_enabled(job_config, rising, kraken_venue):
    sim = kraken_venue.sim
    sim.set_balance(kraken_venue.key, "ZEUR", "12")
    cfg = job_config(trading={"currencies": CURRENCIES, "max_threads": 4, "dry_run": False})
    summary = run_agent(cfg)
    assert summary.budget == Decimal(12)
    state = threads(cfg, "live")
    assert [t.state for t in state] == [ACTIVE, ACTIVE, DISABLED, DISABLED]
    sim.set_balance(kraken_venue.key, "ZEUR", "100")
    run_agent(cfg)
    assert [t.state for t in threads(cfg, "live")][2:] == [WAITING, WAITING]


def test_agents_sharing_the_market_db_keep_to_their_own_orders(job_config, rising, kraken_venue):
    """Two storage namespaces on one market DB and one state DB: the second agent's
    first run finds no state of its own, and must not rebuild the first's positions
    (it would sell coins it never bought)."""
    trading = {"currencies": CURRENCIES, "max_threads": 2, "dry_run": False}
    alpha = job_config(trading=trading, storage={"namespace": "alpha"})
    assert len(run_agent(alpha).bought) == 2
    beta = job_config(trading=trading, storage={"namespace": "beta"})
    summary = run_agent(beta)
    assert summary.recovered == []
    assert [t.order_ref for t in threads(beta, "live")] == [r["ref"] for r in journal(beta, "live")]
    assert not {r["ref"] for r in journal(alpha, "live")} & {r["ref"] for r in journal(beta, "live")}
    assert len(journal(alpha, "live")) == 2 and len(summary.bought) == 2


def test_not_enough_funds_buys_nothing_more(job_config, rising, kraken_venue, caplog):
    """The balance checked before each buy (the balance of the run, less what it spent),
    not only the budget sized at the start."""
    from includes.agent import Agent
    from includes.platforms import make_platform

    cfg = job_config(trading={"currencies": CURRENCIES, "max_threads": 4, "dry_run": False})
    store, db = open_state(cfg, "live"), open_market_db(cfg)
    agent = Agent(cfg.trading, make_platform(cfg, live=True), store, db, mode="live", exchange="kraken",
                  candle_interval=5)
    store.ensure_threads(4)
    agent.allocate(store.threads(), Decimal(1000))
    tickers = agent.platform.get_tickers(["BTC/EUR", "ETH/EUR"])
    trends = agent.update_trends(tickers, agent.platform.get_account_info())
    kraken_venue.sim.set_balance(kraken_venue.key, "ZEUR", "7")   # spent elsewhere meanwhile
    with caplog.at_level(logging.INFO):
        agent.buy_pass(trends, tickers, agent.platform.markets(), agent.platform.get_account_info().balance("EUR"))
    assert [t.state for t in store.threads()] == [ACTIVE, WAITING, WAITING, WAITING]
    assert "not enough funds: 2.0" in caplog.text
    store.close()
    db.close()


def test_the_per_currency_cap_falls_back_to_the_next_best(job_config, rising):
    cfg = job_config(trading={"currencies": CURRENCIES, "max_threads": 6, "threads_per_currency": 2})
    run_agent(cfg)
    assert [t.currency for t in threads(cfg, "dry")] == ["BTC", "BTC", "ETH", "ETH", "", ""]


def test_an_unavailable_market_is_never_bought(job_config, rising):
    rising.set_pair_status("XXBTZEUR", "cancel_only")
    cfg = job_config(trading={"currencies": CURRENCIES, "max_threads": 4})
    run_agent(cfg)
    assert [t.currency for t in threads(cfg, "dry")][:2] == ["ETH", ""]


def test_a_minimum_too_high_falls_back_to_the_next_currency(job_config, rising):
    move(rising, "ADA", "2")     # ADA rises most, but 15 ADA cost more than 5 EUR
    cfg = job_config(trading={"currencies": CURRENCIES, "max_threads": 4})
    run_agent(cfg)
    assert [t.currency for t in threads(cfg, "dry")][:2] == ["BTC", "ETH"]
    assert [(r["market"], r["status"]) for r in journal(cfg, "dry")] == [("BTC/EUR", "closed"), ("ETH/EUR", "closed")]
    # checked before anything was written: no journal row for an order that could not be sent


def test_no_secret_reaches_log_tmp_or_img(tmp_path, job_config, rising, kraken_venue):
    """Live runs of the jobs at DEBUG level, with a time-series token and a failing
    call on the way; then every file they wrote is searched for the secrets."""
    import subprocess
    import sys

    from tests.conftest import ROOT

    (tmp_path / "ts.token").write_text("T0KEN-never-logged\n")
    job_config(trading={"currencies": CURRENCIES, "max_threads": 2, "dry_run": False},
               storage={"timeseries": {"url": "http://127.0.0.1:9", "token_file": str(tmp_path / "ts.token"),
                                       "timeout": 1}})
    kraken_venue.sim.inject("BalanceEx", "service_unavailable")
    for script in ("get_api_data.py", "available_markets.py", "trade_agent.py", "plot_graphs.py"):
        run = subprocess.run([sys.executable, str(ROOT / script), "--config", str(tmp_path / "config.yaml"),
                              "--verbose"], capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stderr
        assert kraken_venue.secret not in run.stderr and "T0KEN" not in run.stderr
    assert kraken_venue.sim.calls["AddOrder"] == 2
    written = [p for d in ("log", "tmp", "img") for p in (tmp_path / d).rglob("*") if p.is_file()]
    assert any(p.suffix == ".log" for p in written) and any(p.suffix == ".png" for p in written)
    for path in written:
        data = path.read_bytes()
        for secret in (kraken_venue.secret, kraken_venue.key, "T0KEN-never-logged"):
            assert secret.encode() not in data, f"{secret[:6]}... found in {path}"
