"""The demo: the README's main-job command, and the same cycle on MariaDB + Redis."""
from __future__ import annotations

import subprocess
import sys
from decimal import Decimal
from pathlib import Path

from includes.config import TradingConfig
from simulators.demo import run_demo
from tests.conftest import REDIS_URL

ROOT = Path(__file__).resolve().parent.parent


def test_the_cron_cycle_on_mariadb_and_redis(tmp_path, mariadb_url, redis_namespace, capsys):
    summary = run_demo(days=0.5, home=tmp_path / "demo",
                       storage={"market_db": mariadb_url, "state": REDIS_URL, "namespace": redis_namespace})
    assert summary["trades"], "half a day of a seeded walk makes trades"
    assert {t.state for t in summary["threads"]} <= {"waiting", "active", "disabled"}
    active = [t for t in summary["threads"] if t.state == "active"]
    assert sum(t.value for t in active) <= TradingConfig().budget   # the default budget: 10 threads x 10
    assert summary["free"] + sum(t.value for t in active) <= Decimal(100) + summary["realised"]
    out = capsys.readouterr().out
    assert "prices: synthetic price path (seeded random walk, seed 7" in out
    assert "P&L: started with 100 EUR" in out
    assert "status.py says:\n  mode: dry\n  equity: " in out
    page = (tmp_path / "demo" / "img" / "index.html").read_text()
    assert "<h2>Summary</h2>" in page and "<figcaption>BTC/EUR</figcaption>" in page    # charts with data


def test_the_demo_script_on_the_embedded_default(tmp_path):
    home = tmp_path / "demo"
    run = subprocess.run([sys.executable, str(ROOT / "demo.py"), "--days", "0.1", "--home", str(home)],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert "playing 14 cron cycles" in run.stdout and "threads:" in run.stdout and "P&L:" in run.stdout
    assert (home / "crontrader.db").exists()


def test_the_demo_script_wipes_no_directory_but_a_demos(tmp_path):
    """--home is wiped first: a directory holding anything else is refused, untouched."""
    (tmp_path / "notes.txt").write_text("mine")
    run = subprocess.run([sys.executable, str(ROOT / "demo.py"), "--days", "0.1", "--home", str(tmp_path)],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 1 and "holds more than a demo's files" in run.stderr
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_the_demo_plays_a_real_candle_csv(tmp_path, shared_data, capsys):
    summary = run_demo(days=0.2, csv=shared_data / "unk_BTC_USD_1m_20190329.csv", home=tmp_path / "demo")
    assert summary["start"].startswith("2019-03-29") or summary["start"].startswith("2019-04-01")
    assert "XXBTZEUR follows unk_BTC_USD_1m_20190329.csv" in capsys.readouterr().out
