"""One trade_agent.py process (5 currencies, 10 threads, MariaDB + Redis, the
Kraken simulator) against `python -c pass`, in one run.

Targets (issue 4): <= 0.3 s wall and <= 50 MiB peak RSS on this machine, for
the Pi's install (requirements.txt only, `.venv-runtime`, built by `make bench`).
Two kinds of run are timed: one that buys (a new namespace each time: four
threads bought) and one that holds those four threads and finds nothing to do,
with 6 days of 5-minute candles in the market DB, as a few days of cron leave it.
Cron runs the agent every 10 minutes, so before each run
Kraken's call counter is set as a 5-minute gap would leave it (empty); without
that, runs back to back would wait for the counter to decay, as they should.
Also prints where the start-up time goes (python -X importtime, top modules).
"""
from __future__ import annotations

import subprocess
import sys
import tempfile
import uuid
from decimal import Decimal
from pathlib import Path

import pymysql
import redis
import yaml
from measure import PYTHON, ROOT, RUNTIME_PYTHON, bench_env, measure, report

sys.path.insert(0, str(ROOT))
from includes.config import load_config  # noqa: E402
from includes.files import write_private  # noqa: E402
from includes.marketdata import get_api_data  # noqa: E402
from simulators.kraken import KrakenSimulator  # noqa: E402

REDIS_URL = "redis://127.0.0.1:6379/0"
TARGETS = (0.3, 50.0)
NOW = 1_700_000_000


def import_breakdown(python: str, cmd: list[str], top: int = 8) -> list[tuple[str, float]]:
    err = subprocess.run([python, "-X", "importtime", *cmd], cwd=ROOT, env=bench_env(),
                         capture_output=True, text=True).stderr
    costs = {}
    for line in err.splitlines():
        if line.startswith("import time:") and "|" in line:
            _, cumulative, name = line.split("|")
            if not name.startswith("  ") and cumulative.strip().isdigit():  # top-level imports only
                costs[name.strip()] = int(cumulative) / 1e6
    return sorted(costs.items(), key=lambda kv: -kv[1])[:top]


class Bench:
    """A home directory with its config, its key and a simulator account."""

    def __init__(self, home: Path, sim: KrakenSimulator, db: str, prefix: str) -> None:
        self.home, self.db, self.prefix = home, db, prefix
        key, secret = sim.add_account(balances={"ZEUR": "100000"})
        write_private(home / "kraken.key", f"{key}\n{secret}\n")
        self.sim = sim
        self.config = home / "config.yaml"

    def write_config(self, namespace: str) -> None:
        config = {
            "paths": {"log": str(self.home / "log"), "tmp": str(self.home / "tmp"), "img": str(self.home / "img")},
            "exchange": {"api_url": self.sim.url, "key_file": str(self.home / "kraken.key"),
                         "public_calls_per_second": 1000},
            "trading": {"currencies": ["BTC", "ETH", "LTC", "XRP", "SOL"], "max_threads": 10,
                        "dry_run": False, "stop_file": str(self.home / "stop"),
                        "dry_run_file": str(self.home / "dry")},
            "storage": {"market_db": f"mysql+pymysql://root@127.0.0.1/{self.db}", "state": REDIS_URL,
                        "namespace": f"{self.prefix}-{namespace}"},
        }
        self.config.write_text(yaml.safe_dump(config))

    def five_minutes_later(self) -> None:
        """Kraken's call counter as a 5-minute gap leaves it, at Kraken and in the key's
        gate, in Redis where the state is (decayed to 0; the nonce stays)."""
        self.sim.decay_counters(300)
        client = redis.Redis.from_url(REDIS_URL)
        for gate in client.scan_iter("crontrader:gate:kraken-*"):
            if not gate.endswith(b":lock"):
                client.hset(gate, "counter", 0)
        client.close()

    def new_namespace(self) -> None:
        self.write_config(uuid.uuid4().hex[:8])
        self.five_minutes_later()


def main() -> int:
    db = f"ct_bench_{uuid.uuid4().hex[:8]}"
    prefix = f"ctbench-{uuid.uuid4().hex[:8]}"
    conn = pymysql.connect(host="127.0.0.1", user="root", autocommit=True)
    conn.cursor().execute(f"CREATE DATABASE `{db}`")
    runtime = Path(RUNTIME_PYTHON).exists()
    if not runtime:
        print(f"{RUNTIME_PYTHON} is missing (make bench builds it): timing the dev venv only\n")
    ok = True
    try:
        with tempfile.TemporaryDirectory() as home, KrakenSimulator(clock=NOW - 6 * 86400) as sim:
            bench = Bench(Path(home), sim, db, prefix)
            bench.write_config("holding")
            for _ in range(3):  # the market DB holds 6 days of 5-minute candles, as cron leaves it
                get_api_data(load_config(bench.config))
                sim.advance(2 * 86400)
            get_api_data(load_config(bench.config))
            for pair in ("XXBTZEUR", "XETHZEUR"):  # two risers: 2 threads each (the cap: 10 threads / 5 currencies)
                decimals = Decimal(1).scaleb(-sim.pair(pair).pair_decimals)
                sim.set_price(pair, (sim.price(pair) * Decimal("1.05")).quantize(decimals))
            pythons = [("Pi install", RUNTIME_PYTHON)] if runtime else []
            pythons.append(("dev venv, with ccxt's cryptography", PYTHON))
            for label, python in pythons:
                cmd = [python, "trade_agent.py", "--config", str(bench.config)]
                bench.new_namespace()
                orders = sim.calls["AddOrder"]
                buying = measure(cmd, runs=7, before=bench.new_namespace)
                if sim.calls["AddOrder"] - orders != 4 * 8:
                    raise SystemExit(f"the buying runs sent {sim.calls['AddOrder'] - orders} orders, not 4 each")
                bench.write_config("holding")
                subprocess.run(cmd, cwd=ROOT, check=True)         # its threads bought, once
                holding = measure(cmd, runs=7, before=bench.five_minutes_later)
                print(f"\n{label} ({python}):")
                rows = [("trade_agent.py, a live run buying 4 threads", *buying),
                        ("trade_agent.py, a live run holding 4 threads", *holding)]
                good = report(rows, measure([python, "-c", "pass"]), targets=TARGETS)
                if python == pythons[0][1]:
                    ok = good
            print(f"\nwhere a run's start-up goes, {pythons[0][0]} (cumulative import time, s):")
            for name, seconds in import_breakdown(pythons[0][1], ["trade_agent.py", "--config", str(bench.config)]):
                print(f"  {name:40} {seconds:6.3f}")
            print(f"exchange calls, all runs: {dict(sim.calls)}")
    finally:
        conn.cursor().execute(f"DROP DATABASE IF EXISTS `{db}`")
        conn.close()
        client = redis.Redis.from_url(REDIS_URL)
        keys = list(client.scan_iter(f"{prefix}-*"))
        if keys:
            client.delete(*keys)
    print("within targets" if ok else "OVER TARGET")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
