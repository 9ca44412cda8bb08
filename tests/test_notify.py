"""Alerts through Apprise's real code to a local HTTP receiver, and the jobs' pings: the
owner hears of fills, failed runs and switches; a notification that fails never fails or
holds up the job."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_job(tmp_path: Path, script: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / script), "--config", str(tmp_path / "config.yaml"), *args],
                          capture_output=True, text=True, timeout=120)


def messages(requests, path: str) -> list[dict]:
    return [json.loads(body) for method, p, body in requests if method == "POST" and p.startswith(path)]


def test_fills_reach_the_urls_that_take_them_and_a_dead_url_fails_nothing(tmp_path, job_config, rising, receiver,
                                                                          closed_port):
    job_config(trading={"currencies": ["BTC", "ETH", "LTC"], "max_threads": 2},
               notify={"urls": [{"url": f"json://127.0.0.1:{receiver.port}/fills", "events": ["fill"]},
                                {"url": f"json://127.0.0.1:{receiver.port}/failures", "events": ["failed_run"]},
                                {"url": f"json://127.0.0.1:{closed_port}/nobody", "events": ["fill"]}]})
    run = run_job(tmp_path, "trade_agent.py")
    assert run.returncode == 0 and run.stderr == ""
    [fill] = messages(receiver.wait_for(1), "/fills")
    assert fill["title"] == "crontrader trade_agent: dry: 2 fill"
    assert "thread 1: bought" in fill["message"] and "BTC" in fill["message"] and "ETH" in fill["message"]
    assert messages(receiver.requests, "/failures") == []
    log = (tmp_path / "log" / "trade_agent.log").read_text()
    assert "fill notification not delivered to every URL" in log


def test_a_failed_run_is_alerted_with_its_line_and_pinged_fail(tmp_path, job_config, receiver, kraken_venue):
    ping = f"http://127.0.0.1:{receiver.port}/ping/abc-123"
    job_config(notify={"urls": [{"url": f"json://127.0.0.1:{receiver.port}/alerts", "events": ["failed_run"]}],
                       "ping": {"get_api_data": ping}})
    ok = run_job(tmp_path, "get_api_data.py")
    assert ok.returncode == 0
    assert [(m, p) for m, p, _ in receiver.wait_for(2)] == [("GET", "/ping/abc-123/start"), ("GET", "/ping/abc-123")]
    kraken_venue.sim.stop()
    failed = run_job(tmp_path, "get_api_data.py")
    assert failed.returncode == 1
    [line] = failed.stderr.splitlines()
    requests = receiver.wait_for(5)
    assert [(m, p) for m, p, _ in requests if m == "GET"][2:] == [("GET", "/ping/abc-123/start"),
                                                                  ("GET", "/ping/abc-123/fail")]
    [alert] = messages(requests, "/alerts")
    assert alert["title"] == "crontrader get_api_data: failed (exit 1)"
    assert alert["message"] == line.removeprefix("get_api_data: ")


def test_a_receiver_that_never_answers_holds_the_job_no_longer_than_the_timeout(tmp_path, job_config, receiver,
                                                                                   kraken_venue):
    receiver.silent_paths = {"/ping/slow/start", "/ping/slow"}
    job_config(notify={"ping": {"available_markets": f"http://127.0.0.1:{receiver.port}/ping/slow"},
                       "timeout": 2})
    started = time.monotonic()
    run = run_job(tmp_path, "available_markets.py")
    took = time.monotonic() - started
    assert run.returncode == 0 and run.stderr == ""
    assert took < 2 + 5      # the whole wait is bounded by notify.timeout (plus the start-up)
    assert "still in flight after 2 s: left behind" in (tmp_path / "log" / "available_markets.log").read_text()


def test_the_stop_file_switching_is_told(tmp_path, job_config, rising, receiver):
    job_config(notify={"urls": [{"url": f"json://127.0.0.1:{receiver.port}/switch", "events": ["switch"]}]})
    assert run_job(tmp_path, "trade_agent.py").returncode == 0      # the first run sets the baseline
    (tmp_path / "stop").touch()
    assert run_job(tmp_path, "trade_agent.py").returncode == 0
    (tmp_path / "stop").unlink()
    assert run_job(tmp_path, "trade_agent.py").returncode == 0
    said = [m["message"] for m in messages(receiver.wait_for(2), "/switch")]
    assert said == ["the stop file appeared: all trading halted", "the stop file is gone: trading resumes"]


def test_status_sends_the_daily_summary(tmp_path, job_config, rising, receiver):
    job_config(notify={"urls": [{"url": f"json://127.0.0.1:{receiver.port}/daily", "events": ["summary"]}]})
    assert run_job(tmp_path, "trade_agent.py").returncode == 0
    run = run_job(tmp_path, "status.py", "--notify")
    assert run.returncode == 0, run.stderr
    [summary] = messages(receiver.wait_for(1), "/daily")
    assert summary["message"] == run.stdout.rstrip("\n")
    assert summary["title"].startswith("crontrader status: dry: equity ")


def test_a_refused_order_is_told(tmp_path, job_config, rising, kraken_venue, receiver):
    job_config(trading={"currencies": ["BTC", "ETH"], "max_threads": 1, "dry_run": False},
               notify={"urls": [{"url": f"json://127.0.0.1:{receiver.port}/refused", "events": ["refused"]}]})
    kraken_venue.sim.inject("AddOrder", "rate_limit", times=2)   # refused, and refused again when resent
    run = run_job(tmp_path, "trade_agent.py")
    assert run.returncode == 0, run.stderr
    [refused] = messages(receiver.wait_for(1), "/refused")
    assert refused["title"] == "crontrader trade_agent: live: 1 refused"
    assert refused["message"].startswith("thread 1: buy order ") and "EAPI:Rate limit exceeded" in refused["message"]
