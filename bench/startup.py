"""Start-up cost of each cron script: `script.py --help` through its real import
path, against `python -c pass`, in one run.

Targets (issue 2): <= 0.15 s wall and <= 35 MiB peak RSS on this machine.
Also checks that no script that neither plots nor backtests imports matplotlib,
pandas or numpy.
"""
from __future__ import annotations

import subprocess
import sys

from measure import PYTHON, ROOT, bench_env, measure, report

HEAVY = ("matplotlib", "pandas", "numpy")
NEEDS_HEAVY = {"plot_graphs.py", "backtest.py"}


def scripts() -> list[str]:
    return sorted(p.name for p in ROOT.glob("*.py") if p.name not in ("demo.py", "setup.py"))


def heavy_imports(script: str) -> list[str]:
    out = subprocess.run([PYTHON, "-X", "importtime", script, "--help"], cwd=ROOT, env=bench_env(),
                         capture_output=True, text=True).stderr
    names = {line.split("|")[-1].strip().split(".")[0] for line in out.splitlines() if "|" in line}
    return sorted(names & set(HEAVY))


def main() -> int:
    baseline = measure([PYTHON, "-c", "pass"])
    rows = [(f"{s} --help", *measure([PYTHON, s, "--help"])) for s in scripts()]
    ok = report(rows, baseline, targets=(0.15, 35.0))
    for s in scripts():
        heavy = heavy_imports(s)
        if heavy and s not in NEEDS_HEAVY:
            print(f"{s} imports {', '.join(heavy)} at start")
            ok = False
    print("all within targets" if ok else "SOME OVER TARGET")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
