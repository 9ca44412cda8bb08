"""Wall time and peak RSS of a whole process, for the bench scripts.

Each command runs in a fresh process under /usr/bin/time (Debian package
`time`), which reports that process's own peak RSS; a child forked straight
from a large bench process would be charged the parent's pages until its exec.
The figures are medians over several runs after a warm-up run (which also
writes the bytecode cache, as a Pi's second cron run would find it).
"""
from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
# The Pi's install, requirements.txt only (`make bench` builds it): cron runs are timed there.
RUNTIME_PYTHON = str(ROOT / ".venv-runtime" / "bin" / "python")


def bench_env() -> dict[str, str]:
    """The environment of a cron run: bytecode is cached, nothing is a terminal."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def measure(cmd: list[str], runs: int = 7, env: dict[str, str] | None = None,
            check: bool = True, before: Callable[[], None] = lambda: None) -> tuple[float, float]:
    """(median wall seconds, peak RSS MiB) of `cmd`; `before` runs untimed before each run."""
    env = env or bench_env()
    walls, rss = [], []
    for i in range(runs + 1):
        before()
        start = time.perf_counter()
        proc = subprocess.run(["/usr/bin/time", "-f", "%M", *cmd], cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        wall = time.perf_counter() - start
        if check and proc.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr.strip()[-500:]}")
        if i:  # the first run warms the caches
            walls.append(wall)
            rss.append(int(proc.stderr.strip().splitlines()[-1]) / 1024)
    return statistics.median(walls), max(rss)


def report(rows: list[tuple[str, float, float]], baseline: tuple[float, float],
           targets: tuple[float, float] | None = None) -> bool:
    """Print a table with ratios to the baseline; True when every row meets `targets`."""
    base_wall, base_rss = baseline
    print(f"{'command':58} {'wall s':>8} {'x base':>7} {'RSS MiB':>8} {'x base':>7}")
    print(f"{'python -c pass (baseline)':58} {base_wall:8.3f} {1:7.1f} {base_rss:8.1f} {1:7.1f}")
    ok = True
    for name, wall, rss in rows:
        mark = ""
        if targets:
            good = wall <= targets[0] and rss <= targets[1]
            ok &= good
            mark = "  ok" if good else "  OVER TARGET"
        print(f"{name:58} {wall:8.3f} {wall / base_wall:7.1f} {rss:8.1f} {rss / base_rss:7.1f}{mark}")
    if targets:
        print(f"targets: <= {targets[0]} s wall, <= {targets[1]} MiB peak RSS")
    return ok
