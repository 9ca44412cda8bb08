"""One trade_agent.py process (5 currencies, 10 threads, MariaDB + Redis, the
Kraken simulator) against `python -c pass`, in one run.

Targets (issue 4): <= 0.3 s wall and <= 50 MiB peak RSS on this machine.
Also prints where the start-up time goes (python -X importtime, top modules).
"""
from __future__ import annotations

import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pymysql
import redis
import yaml

from measure import PYTHON, ROOT, bench_env, measure, report

sys.path.insert(0, str(ROOT))
from includes.config import load_config, write_private  # noqa: E402
from includes.marketdata import get_api_data  # noqa: E402
from includes.simulators.kraken import KrakenSimulator  # noqa: E402

REDIS_URL = "redis://127.0.0.1:6379/0"


def import_breakdown(cmd: list[str], top: int = 8) -> list[tuple[str, float]]:
    err = subprocess.run([PYTHON, "-X", "importtime", *cmd[1:]], cwd=ROOT, env=bench_env(),
                         capture_output=True, text=True).stderr
    costs = {}
    for line in err.splitlines():
        if line.startswith("import time:") and "|" in line:
            _, cumulative, name = line.split("|")
            if not name.startswith("  ") and cumulative.strip().isdigit():  # top-level imports only
                costs[name.strip()] = int(cumulative) / 1e6
    return sorted(costs.items(), key=lambda kv: -kv[1])[:top]


def main() -> int:
    db = f"ct_bench_{uuid.uuid4().hex[:8]}"
    namespace = f"ctbench-{uuid.uuid4().hex[:8]}"
    conn = pymysql.connect(host="127.0.0.1", user="root", autocommit=True)
    conn.cursor().execute(f"CREATE DATABASE `{db}`")
    try:
        with tempfile.TemporaryDirectory() as home, KrakenSimulator(clock=1_700_000_000) as sim:
            home = Path(home)
            key, secret = sim.add_account(balances={"ZEUR": "1000"}, tier="pro")
            write_private(home / "kraken.key", f"{key}\n{secret}\n")
            config = {
                "paths": {"log": str(home / "log"), "tmp": str(home / "tmp"), "img": str(home / "img")},
                "exchange": {"api_url": sim.url, "key_file": str(home / "kraken.key"),
                             "public_calls_per_second": 1000},
                "trading": {"currencies": ["BTC", "ETH", "LTC", "XRP", "SOL"], "max_threads": 10,
                            "dry_run": False, "stop_file": str(home / "stop"), "dry_run_file": str(home / "dry")},
                "storage": {"market_db": f"mysql+pymysql://root@127.0.0.1/{db}", "state": REDIS_URL,
                            "namespace": namespace},
            }
            (home / "config.yaml").write_text(yaml.safe_dump(config))
            get_api_data(load_config(home / "config.yaml"))   # the market DB holds the candles
            baseline = measure([PYTHON, "-c", "pass"])
            cmd = [PYTHON, "trade_agent.py", "--config", str(home / "config.yaml")]
            wall, rss = measure(cmd, runs=7)
            ok = report([("trade_agent.py (one cron run, live, 10 threads)", wall, rss)], baseline,
                        targets=(0.3, 50.0))
            print("\nwhere a run's start-up goes (cumulative import time, s):")
            for name, seconds in import_breakdown(cmd):
                print(f"  {name:40} {seconds:6.3f}")
            print(f"exchange calls during the {8} runs: {dict(sim.calls)}")
    finally:
        conn.cursor().execute(f"DROP DATABASE IF EXISTS `{db}`")
        conn.close()
        client = redis.Redis.from_url(REDIS_URL)
        keys = list(client.scan_iter(f"{namespace}:*"))
        if keys:
            client.delete(*keys)
    print("within targets" if ok else "OVER TARGET")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
