"""crontab.example: every job, on its schedule, runnable as cron would run it."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import datetime
from itertools import pairwise
from pathlib import Path

import pytest
from croniter import croniter

from includes.config import Config
from tests.conftest import ROOT

JOBS = {"get_api_data", "available_markets", "trade_agent", "plot_graphs", "clean_and_backup_database",
        "clean_and_backup_database --state-only"}
START = datetime(2024, 1, 31, 23, 51)


def crontab() -> tuple[dict[str, str], dict[str, tuple[str, str]]]:
    """(variables, {job: (schedule, command)}): a job is the script, with its options if any."""
    variables, jobs = {}, {}
    for line in (ROOT / "crontab.example").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if re.match(r"^[A-Z_]+=", line):
            name, _, value = line.partition("=")
            variables[name] = value
            continue
        fields = line.split(None, 5)
        schedule, command = " ".join(fields[:5]), fields[5]
        script, options = re.search(r"\$CRONTRADER/(\w+)\.py((?: --[\w-]+)*)", command).groups()
        job = script + options
        assert job not in jobs, f"{job} is scheduled twice"
        jobs[job] = (schedule, command)
    return variables, jobs


def runs(schedule: str, n: int = 6) -> list[datetime]:
    it = croniter(schedule, START)
    return [it.get_next(datetime) for _ in range(n)]


def gaps(schedule: str) -> set[float]:
    times = runs(schedule)
    return {(b - a).total_seconds() for a, b in pairwise(times)}


def test_every_job_is_there_with_its_schedule():
    variables, jobs = crontab()
    assert set(jobs) == JOBS
    assert all(croniter.is_valid(schedule) for schedule, _ in jobs.values())
    cycle = Config().market_data.cycle_minutes * 60     # the default of the config key is the crontab's
    assert gaps(jobs["get_api_data"][0]) == {cycle} == {600}
    assert gaps(jobs["trade_agent"][0]) == {cycle}
    fetches = {t.minute for t in runs(jobs["get_api_data"][0])}
    assert not fetches & {t.minute for t in runs(jobs["trade_agent"][0])}      # offset from the fetch
    assert gaps(jobs["available_markets"][0]) == {3600}
    assert gaps(jobs["plot_graphs"][0]) == {3600}
    monthly = runs(jobs["clean_and_backup_database"][0], 3)
    assert [(t.month, t.day) for t in monthly] == [(2, 1), (3, 1), (4, 1)]
    nightly = runs(jobs["clean_and_backup_database --state-only"][0], 31)   # the trading record, but on the 1st
    assert [(t.day, t.hour) for t in nightly] == [(d, 3) for d in range(2, 30)] + [(2, 3), (3, 3), (4, 3)]
    assert variables["CRONTRADER"].startswith("/") and "MAILTO" in variables


def test_every_command_uses_the_venv_python_absolute_paths_and_log():
    for job, (_, command) in crontab()[1].items():
        script, _, options = job.partition(" ")
        assert command.startswith(f"$CRONTRADER/.venv/bin/python $CRONTRADER/{script}.py {options}".rstrip() + " ")
        assert re.search(r">>\s*\$CRONTRADER/log/\S+\.log$", command)


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """CRONTRADER for the test: the scripts and the library of this checkout, sys.executable as
    the venv's python, and a log/ of its own."""
    for script in {job.split()[0] for job in JOBS}:
        (tmp_path / f"{script}.py").symlink_to(ROOT / f"{script}.py")
    (tmp_path / "includes").symlink_to(ROOT / "includes")
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    (tmp_path / ".venv" / "bin" / "python").symlink_to(sys.executable)
    (tmp_path / "log").mkdir()
    return tmp_path


@pytest.mark.parametrize("job", sorted(JOBS))
def test_each_command_runs_as_cron_would_run_it(checkout, job):
    _, command = crontab()[1][job]
    script = job.split()[0]
    env = {"CRONTRADER": str(checkout), "PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/")}
    done = subprocess.run(["/bin/sh", "-c", f"{command} --help"], env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert (checkout / "log" / "cron.log").read_text().startswith(f"usage: {script}.py [-h] [--config PATH]")
