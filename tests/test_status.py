"""status.py: the owner's figures, checked against the journal, the paper account and the
simulator's prices, after real runs of get_api_data and the agent on the Kraken simulator."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from decimal import Decimal as D
from pathlib import Path

import pytest

from includes.agent import run_agent
from includes.marketdata import get_api_data
from includes.storage import open_market_db, open_state
from tests.plugins.agent import CURRENCIES, PAIRS, move

ROOT = Path(__file__).resolve().parent.parent


def status(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "status.py"), "--config", str(tmp_path / "config.yaml"),
                           *args], capture_output=True, text=True, timeout=60)


def test_the_figures_after_a_buy_a_sale_and_a_rebuy(tmp_path, job_config, rising, kraken_venue):
    cfg = job_config(trading={"currencies": CURRENCIES, "max_threads": 4, "sell_percent": 3,
                              "rebuy_cooldown_minutes": 0})
    get_api_data(cfg)
    run_agent(cfg)
    move(rising, "BTC", "1.02")
    move(rising, "BTC", "1.02")
    assert len(run_agent(cfg).sold) == 1          # thread 1 sold its BTC...
    assert len(run_agent(cfg).bought) == 1        # ...and bought BTC again in the next run
    move(rising, "ETH", "0.9")
    get_api_data(cfg)                              # the tickers status reads the bid from

    run = status(tmp_path, "--json")
    assert run.returncode == 0, run.stderr
    got = json.loads(run.stdout)

    db, store = open_market_db(cfg), open_state(cfg, "dry")
    rows, threads = db.journal("dry"), store.threads()
    db.close(), store.close()
    buy, sale = rows[0], rows[2]
    assert (buy["side"], sale["side"], buy["thread"], sale["thread"]) == ("buy", "sell", 1, 1)
    realised = (D(sale["cost"]) - D(sale["fee"])) - (D(buy["cost"]) + D(buy["fee"]))
    assert realised > 0
    assert D(got["realised_total"]) == D(got["realised_7d"]) == realised
    assert D(got["fees"]) == sum(D(r["fee"]) for r in rows)
    ledger = json.loads((tmp_path / "tmp" / "paper-crontrader.json").read_text())
    assert D(got["free"]) == D(ledger["balances"]["EUR"])
    fee = D("0.26")
    held = {t.n: t for t in threads if t.volume}
    assert [h["thread"] for h in got["holdings"]] == sorted(held) == [1, 2]
    equity = D(got["free"])
    unrealised = D(0)
    for h in got["holdings"]:
        t = held[h["thread"]]
        assert (h["currency"], D(h["volume"]), D(h["value"])) == (t.currency, t.volume, t.value)
        assert D(h["bid"]) == kraken_venue.sim.bid_ask(PAIRS[t.currency])[0]   # the agent's price, not the last
        net = t.volume * D(h["bid"]) * (1 - fee / 100)
        assert D(h["unrealised"]) == net - t.value
        unrealised += net - t.value
        equity += net
    eth = next(h for h in got["holdings"] if h["currency"] == "ETH")
    assert D(eth["unrealised"]) < 0 and D(eth["unrealised_percent"]) < -9   # ETH fell 10 % since its buy
    assert D(got["equity"]) == equity
    assert D(got["change"]) == realised + unrealised
    assert D(got["equity"]) - D(got["change"]) == D(100)    # the paper account's start: dry_run_balance
    assert got["mode"] == "dry" and got["in_doubt"] == [] and got["spool_files"] == 0
    assert set(got["freshness"]) == {f"{c}/EUR" for c in CURRENCIES}
    assert set(got["freshness"].values()) == {kraken_venue.sim.clock} == {got["exchange_now"]}  # its fixed clock
    assert got["attention"] == []

    text = status(tmp_path)
    assert text.returncode == 0 and text.stderr == ""
    lines = text.stdout.splitlines()
    assert lines[0] == "mode: dry"
    assert f"total {realised:+,.2f} EUR" in lines[2]
    assert any(line.startswith("  #2 active") and "ETH bought at" in line for line in lines)


def test_jobs_and_the_reasons_for_attention(tmp_path, job_config, kraken_venue, closed_port):
    """A failed run is recorded with its line; a spool and a job failing for 3 periods exit 1."""
    job_config()
    subprocess.run([sys.executable, str(ROOT / "get_api_data.py"), "--config", str(tmp_path / "config.yaml")],
                   capture_output=True, text=True, timeout=120, check=True)
    job_config(market_db=f"mysql+pymysql://ct:pw-4@127.0.0.1:{closed_port}/market")
    run = status(tmp_path, "--json")
    assert run.returncode == 1 and run.stderr.splitlines() == [     # a DB down is news for the owner too
        f"status: market DB mysql+pymysql://ct:***@127.0.0.1:{closed_port}/market is unreachable: (2003, "
        "\"Can't connect to MySQL server on '127.0.0.1' ([Errno 111] Connection refused)\")"]

    job_config(market_db=f"mysql+pymysql://ct:pw-4@127.0.0.1:{closed_port}/market")
    fetch = subprocess.run([sys.executable, str(ROOT / "get_api_data.py"), "--config", str(tmp_path / "config.yaml")],
                           capture_output=True, text=True, timeout=120)
    assert fetch.returncode == 0                   # unreachable: the cycle went to the spool
    job_config()                                   # the DB status reads is back; the spool waits for the next fetch
    got = json.loads(status(tmp_path, "--json").stdout)
    [fetch_job] = [j for j in got["jobs"] if j["name"] == "get_api_data"]
    assert fetch_job["status"] == 0 and time.time() - fetch_job["last_success"] < 60
    assert got["spool_files"] == 7 and got["attention"] == [
        f"7 batches ({got['spool_bytes'] / 1e6:.1f} MB) wait in the spool: the market DB was unreachable"]
    text = status(tmp_path)
    assert text.returncode == 1 and text.stderr.splitlines() == [f"status: {got['attention'][0]}"]

    # A job whose last success is older than 3 of its periods: its last line is the reason.
    record = tmp_path / "tmp" / "runs" / "get_api_data.json"
    data = json.loads(record.read_text())
    data.update(status=1, message="kraken/Time: connection failed (...)", last_success=time.time() - 1900)
    record.write_text(json.dumps(data))
    for spooled in (tmp_path / "tmp" / "spool").iterdir():
        os.unlink(spooled)
    got = json.loads(status(tmp_path, "--json").stdout)
    assert got["attention"] == ["get_api_data has not succeeded for 32 min: kraken/Time: connection failed (...)"]


def test_an_order_in_doubt_for_over_an_hour_needs_attention(tmp_path, job_config, kraken_venue):
    """Aged on the exchange's clock, as the agent dates its orders (the simulator's is fixed)."""
    cfg = job_config()
    get_api_data(cfg)
    db = open_market_db(cfg)
    clock = kraken_venue.sim.clock
    db.journal_intent("old", mode="dry", exchange="kraken", market="BTC/EUR", side="sell", thread=1,
                      volume=D("0.0001"), at=clock - 7200)
    db.journal_intent("young", mode="dry", exchange="kraken", market="ETH/EUR", side="buy", thread=2,
                      amount_quote=D(5), at=clock - 1800)
    db.journal_result("young", "unknown", error="no reply within 2 s")
    db.close()
    got = json.loads(status(tmp_path, "--json").stdout)
    assert [(d["ref"], d["status"]) for d in got["in_doubt"]] == [("old", "intent"), ("young", "unknown")]
    run = status(tmp_path)
    assert run.returncode == 1
    assert run.stderr.splitlines() == ["status: sell order old (BTC/EUR) in doubt for 2 h"]
    assert "  buy young ETH/EUR unknown for 30 min" in run.stdout.splitlines()


def test_an_agent_run_writes_the_bots_figures_to_the_time_series(tmp_path, job_config, rising, victoria_metrics):
    """The same figures as status.py --json, as VictoriaMetrics stores them (measurement_field)."""
    agent = f"ct{os.getpid()}{int(time.time() * 1000) % 10**8}"    # the server is shared: a name of our own
    # the market data without the time series: the server is shared, and exchange="kraken" is another test's
    get_api_data(job_config(trading={"currencies": CURRENCIES, "max_threads": 4}, storage={"namespace": agent}))
    job_config(trading={"currencies": CURRENCIES, "max_threads": 4},
               storage={"namespace": agent, "timeseries": {"url": victoria_metrics.url}})
    run = subprocess.run([sys.executable, str(ROOT / "trade_agent.py"), "--config", str(tmp_path / "config.yaml")],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    got = json.loads(status(tmp_path, "--json").stdout)
    series = victoria_metrics.series(f'{{__name__=~"bot_.+",agent="{agent}"}}', 7)
    bot = {s.labels["__name__"]: s.points for s in series}
    at = got["exchange_now"]
    close = pytest.approx  # VictoriaMetrics keeps 12 significant digits
    assert bot["bot_equity"] == [(at, close(float(D(got["equity"])), rel=1e-11))]
    assert bot["bot_free"] == [(at, close(float(D(got["free"])), rel=1e-11))]
    assert bot["bot_realised"] == [(at, 0.0)] and bot["bot_in_doubt"] == [(at, 0.0)]
    positions = victoria_metrics.series(f'{{__name__="position_volume",agent="{agent}"}}', 2)
    held = {h["currency"]: float(D(h["volume"])) for h in got["holdings"]}
    assert sorted(held) == ["BTC", "ETH"]
    assert {s.labels["currency"]: s.points[0][1] for s in positions} == {c: close(v, rel=1e-11)
                                                                          for c, v in held.items()}
    assert all(s.labels["mode"] == "dry" and s.labels["quote"] == "EUR" for s in positions)
    fills = victoria_metrics.series(f'{{__name__="fill_volume",agent="{agent}"}}', 2)   # the run's two buys
    assert {s.labels["market"]: s.points for s in fills if s.labels["side"] == "buy"} == {
        f"{c}/EUR": [(pytest.approx(at, abs=600), close(v, rel=1e-11))] for c, v in held.items()}


def test_late_means_three_of_the_configured_cycles():
    """get_api_data's and trade_agent's period is market_data.cycle_minutes (10 by default)."""
    from includes.status import Job, Status, attention

    def late(cycle_seconds: int) -> list[str]:
        jobs = [Job(name, last_run=10_000.0, status=1, last_success=10_000.0 - 1900)
                for name in ("get_api_data", "trade_agent", "plot_graphs")]
        s = Status(now=10_000.0, exchange_now=10_000.0, mode="dry", stop_file=False, dry_run_file=False,
                   quote="EUR", jobs=jobs, holdings=[], realised_today=D(0), realised_7d=D(0),
                   realised_total=D(0), fees=D(0), free=None, equity=None, change=D(0), change_percent=None,
                   first_order=None, in_doubt=[], freshness={}, spool_files=0, spool_bytes=0,
                   cycle_seconds=cycle_seconds)
        return [line.split()[0] for line in attention(s)]

    assert late(600) == ["get_api_data", "trade_agent"]       # 32 min > 3 x 10 min; plot_graphs: 3 h
    assert late(900) == []                                     # 32 min < 3 x 15 min
