"""Order safety on MariaDB + Redis with real trade_agent.py processes: a kill -9 at
every step of a buy and of a sell, 20 overlapping runs, and a flushed Redis."""
from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path

import pytest
import redis
import yaml

from includes.storage import open_market_db, open_state
from includes.storage.state import ACTIVE
from tests.conftest import REDIS_URL
from tests.plugins.agent import CURRENCIES, move

ROOT = Path(__file__).resolve().parent.parent
CRASH_LAUNCHER = ROOT / "tests" / "crash_launcher.py"
BUY_STEPS = ["buy:claimed", "buy:journaled", "buy:sent", "buy:recorded", "buy:moved"]
SELL_STEPS = ["sell:claimed", "sell:journaled", "sell:sent", "sell:recorded", "sell:moved"]


@pytest.fixture
def live(job_config, mariadb_url, redis_namespace, rising, tmp_path):
    """A live config on MariaDB + Redis; returns a function running one trade_agent.py process."""
    cfg = job_config(market_db=mariadb_url, state=REDIS_URL, storage={"namespace": redis_namespace},
                     exchange={"timeout": 1}, trading={"currencies": CURRENCIES, "max_threads": 2, "dry_run": False})

    def run(crash_at: str | None = None, config: Path = tmp_path / "config.yaml") -> subprocess.CompletedProcess:
        """trade_agent.py, or with `crash_at` tests/crash_launcher.py: the same run, killed -9 at that step."""
        command = [sys.executable, str(ROOT / "trade_agent.py"), "--config", str(config)]
        if crash_at:
            command = [sys.executable, str(CRASH_LAUNCHER), "--crash-at", crash_at, "--config", str(config)]
        return subprocess.run(command, capture_output=True, text=True, timeout=120)

    run.cfg = cfg
    return run


def check_state_equals_exchange(cfg, venue, start_xbt: Decimal = Decimal("0.01")) -> None:
    """Every order on the exchange is journaled once with its result, nothing is in flight,
    no order was sent twice, and the threads hold exactly what the account holds."""
    exchange = {o.ref: o for o in venue.platform().get_order_history(limit=500)}
    db = open_market_db(cfg)
    rows = db.journal("live", agent=cfg.storage.namespace)
    db.close()
    assert all(r["status"] in ("closed", "canceled", "failed") for r in rows), rows
    filled = {r["ref"]: r for r in rows if r["filled"]}
    assert set(filled) == set(exchange)
    for ref, order in exchange.items():
        assert filled[ref]["filled"] == order.filled and filled[ref]["cost"] == order.cost
    assert venue.sim.calls["AddOrder"] == len(exchange)
    store = open_state(cfg, "live")
    threads = store.threads()
    store.close()
    assert all(t.state in ("waiting", "active", "disabled") for t in threads), threads
    held = Counter()
    for t in threads:
        if t.state == ACTIVE:
            held[t.currency] += t.volume
    balances = venue.sim.balances(venue.key)
    assert held["BTC"] == balances["XXBT"] - start_xbt
    assert held["ETH"] == balances.get("XETH", Decimal(0))


def settle(run, venue) -> None:
    """Normal runs, a cron period apart on the exchange's clock, until nothing is left in
    flight (an order journaled just before a crash is trusted as 'never placed' only once
    its deadline and a margin have passed on Kraken's clock)."""
    for _ in range(2):
        venue.sim.advance(60)
        result = run()
        assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("step", BUY_STEPS)
def test_a_kill_during_a_buy_neither_duplicates_nor_loses_an_order(live, kraken_venue, step):
    crashed = live(crash_at=step)
    assert crashed.returncode == -9
    settle(live, kraken_venue)
    check_state_equals_exchange(live.cfg, kraken_venue)
    store = open_state(live.cfg, "live")
    assert [t.currency for t in store.threads()] == ["BTC", "ETH"]
    store.close()


@pytest.mark.parametrize("step", SELL_STEPS)
def test_a_kill_during_a_sell_neither_duplicates_nor_loses_an_order(live, kraken_venue, step):
    assert live().returncode == 0
    move(kraken_venue.sim, "BTC", "1.1")
    crashed = live(crash_at=step)
    assert crashed.returncode == -9
    settle(live, kraken_venue)
    check_state_equals_exchange(live.cfg, kraken_venue)
    db = open_market_db(live.cfg)
    sells = [r for r in db.journal("live", agent=live.cfg.storage.namespace) if r["side"] == "sell" and r["filled"]]
    db.close()
    assert len(sells) == 1


def test_twenty_overlapping_runs_place_the_orders_of_exactly_one(live, kraken_venue, tmp_path):
    """Twenty runs as if on twenty hosts (own tmp/ and log/, one Redis, one MariaDB):
    the Redis lock lets one through.  Its first exchange call is held by the
    simulator until the nineteen others have tried and exited, so all of them
    overlap it, however loaded the machine is."""
    base = yaml.safe_load((tmp_path / "config.yaml").read_text())
    base["exchange"]["timeout"] = 240   # the winner waits for the held reply, however slow the machine
    configs = []
    for i in range(20):
        host = tmp_path / f"host{i}"
        base["paths"] = {"log": str(host / "log"), "tmp": str(host / "tmp"), "img": str(host / "img")}
        path = host / "config.yaml"
        host.mkdir()
        path.write_text(yaml.safe_dump(base))
        configs.append(path)
    kraken_venue.sim.inject("AssetPairs", "delay", seconds=300)
    procs = [subprocess.Popen([sys.executable, str(ROOT / "trade_agent.py"), "--config", str(c)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for c in configs]
    deadline = time.monotonic() + 240
    while sum(p.poll() is not None for p in procs) < 19:
        assert time.monotonic() < deadline, "the losing runs did not exit"
        time.sleep(0.1)
    kraken_venue.sim.release_delays()
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * 20, errors
    logs = [(tmp_path / f"host{i}" / "log" / "trade_agent.log").read_text() for i in range(20)]
    assert sum("live run done" in text for text in logs) == 1
    assert sum("another agent run holds the live lock" in text for text in logs) == 19
    assert not any("Invalid nonce" in text for text in logs)
    assert kraken_venue.sim.calls["AddOrder"] == 2
    check_state_equals_exchange(live.cfg, kraken_venue)


def test_a_flushed_redis_is_rebuilt_from_the_journal_and_the_exchange(live, kraken_venue, redis_namespace):
    assert live().returncode == 0
    store = open_state(live.cfg, "live")
    before = [(t.n, t.state, t.currency, t.volume, t.value, t.lastbuyvalue) for t in store.threads()]
    store.close()
    client = redis.Redis.from_url(REDIS_URL)
    client.delete(*client.scan_iter(f"{redis_namespace}:*"))
    client.close()
    result = live()
    assert result.returncode == 0, result.stderr
    store = open_state(live.cfg, "live")
    after = [(t.n, t.state, t.currency, t.volume, t.value, t.lastbuyvalue) for t in store.threads()]
    store.close()
    assert after == before and [b[1] for b in before] == [ACTIVE, ACTIVE]
    assert kraken_venue.sim.calls["AddOrder"] == 2
    check_state_equals_exchange(live.cfg, kraken_venue)
