"""The backtest as a whole process, `backtest.py --csv ...`, against `python -c pass`, in one run.

Targets (issues 7 and 15), on this machine:
- the 10 real series of tests/data (29,060 candles): <= 0.45 s wall, <= 80 MiB peak RSS;
- 1,000,000 one-minute candles (a seeded random walk written to a temp dir): within 150 x the
  wall time of `python -c pass` measured in the same run;
- flat prices (100,000 one-minute candles at one price) never make it run the agent at every
  decision: the agent runs are counted, as a share of the decisions.
Then where the time goes, phase by phase, measured inside one process.
"""
from __future__ import annotations

import json
import random
import subprocess
import sys
import tempfile
from pathlib import Path

from measure import PYTHON, ROOT, bench_env, measure, report

DATA = ROOT / "tests" / "data"
BIG = 1_000_000
FLAT = 100_000
BIG_RATIO = 150                     # the 1 M candles' wall time, at most this many `python -c pass`

# Run in a fresh process: the phases of one backtest, timed as backtest.py runs them.
PHASES = """
import json, sys, time
t0 = time.perf_counter()
import includes.runtime
t1 = time.perf_counter()
from includes.config import load_config
t2 = time.perf_counter()
cfg = load_config(sys.argv[1])
t3 = time.perf_counter()
from includes.backtest.command import report_settings
from includes.backtest.replay import replay
from includes.backtest.report import report
from includes.backtest.sources import read_csv
from includes.backtest.sweep import trading_for
from pathlib import Path
t4 = time.perf_counter()
series = [read_csv(Path(p)) for p in sys.argv[2:]]
t5 = time.perf_counter()
results = [replay([s], trading_for(cfg.trading, [s], {}), show_progress=False) for s in series]
t6 = time.perf_counter()
rep = report(results, report_settings(results[0].trading, {"step_minutes": 10, "spread_percent": "0.1",
                                                           "start": None, "end": None}))
t7 = time.perf_counter()
print(json.dumps({"import runtime (argparse, logging)": t1 - t0, "import config (dataclasses, yaml)": t2 - t1,
                  "validate the config": t3 - t2, "import backtest (agent, stores, platforms)": t4 - t3,
                  "parse the CSV files": t5 - t4, "replay": t6 - t5, "report": t7 - t6,
                  "candles": sum(len(s) for s in series),
                  "decisions": sum(t["decisions"] for t in rep["totals"].values()),
                  "agent runs": sum(t["agent_runs"] for t in rep["totals"].values()),
                  "trades": sum(t["closed_trades"] for t in rep["totals"].values())}))
"""


def write_walk(path: Path, n: int, seed: int = 7) -> None:
    """n one-minute candles of a random walk (about 2% a day), in the format of tests/data."""
    rng = random.Random(seed)
    price, ts = 20000.0, 1_600_000_020 - 1_600_000_020 % 60
    lines = ["timestamp,open,high,low,close,volume"]
    for _ in range(n):
        close = price * (1 + rng.gauss(0, 0.0005))
        spread = abs(rng.gauss(0, 0.0002))
        lines.append(f"{ts},{price:.2f},{max(price, close) * (1 + spread):.2f},"
                     f"{min(price, close) * (1 - spread):.2f},{close:.2f},{rng.random() * 10:.5f}")
        price, ts = close, ts + 60
    path.write_text("\n".join(lines) + "\n")


def write_flat(path: Path, n: int) -> None:
    """n one-minute candles all at one price: nothing rises, nothing is held."""
    ts = 1_600_000_020 - 1_600_000_020 % 60
    path.write_text("timestamp,open,high,low,close,volume\n"
                    + "".join(f"{ts + 60 * i},20000.0,20000.0,20000.0,20000.0,1.0\n" for i in range(n)))


def phases(config: Path, files: list[Path]) -> dict[str, float]:
    out = subprocess.run([PYTHON, "-c", PHASES, str(config), *map(str, files)], cwd=ROOT, env=bench_env(),
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def show(title: str, figures: dict[str, float]) -> None:
    print(f"\n{title}: {figures['candles']:,} candles, {figures['decisions']:,} decisions, "
          f"{figures['agent runs']} agent runs, {figures['trades']} closed trades")
    for name, value in figures.items():
        if name not in ("candles", "decisions", "agent runs", "trades"):
            print(f"  {name:48} {value:7.3f} s")


def main() -> int:
    files = sorted(DATA.glob("*.csv"))
    if len(files) != 10:
        raise SystemExit(f"{DATA}: expected the 10 candle files, found {len(files)}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        config = tmp_path / "config.yaml"
        config.write_text(f"paths: {{log: {tmp_path / 'log'}, tmp: {tmp_path / 'tmp'}, img: {tmp_path / 'img'}}}\n")
        big = tmp_path / "bench_BTC_EUR_1m.csv"
        # In another process: this one must stay small, its children's peak RSS starts from its own.
        subprocess.run([PYTHON, __file__, "--walk", str(big)], check=True)
        flat = tmp_path / "bench_BTC_EUR_1m_flat.csv"
        write_flat(flat, FLAT)
        command = [PYTHON, "backtest.py", "--config", str(config), "--csv"]
        baseline = measure([PYTHON, "-c", "pass"])
        real = measure([*command, *map(str, files)])
        walk = measure([*command, str(big)], runs=3)
        candles = sum(_lines(f) for f in files)
        report([(f"backtest.py --csv <the 10 series: {candles:,} candles>", *real),
                (f"backtest.py --csv <{BIG:,} candles>", *walk)], baseline)
        small_ok, big_ok = real[0] <= 0.45 and real[1] <= 80, walk[0] <= BIG_RATIO * baseline[0]
        print(f"targets: the 10 series <= 0.45 s and <= 80 MiB: {_verdict(small_ok)}; "
              f"{BIG:,} candles <= {BIG_RATIO} x python -c pass ({walk[0] / baseline[0]:.0f} x): "
              f"{_verdict(big_ok)}")
        show("the 10 series, phase by phase", phases(config, files))
        show("the 1,000,000 candles, phase by phase", phases(config, [big]))
        still = phases(config, [flat])
        show(f"{FLAT:,} flat candles, phase by phase", still)
        flat_ok = still["agent runs"] * 100 <= still["decisions"]
        print(f"flat prices: the agent ran at {still['agent runs']} of {still['decisions']:,} decisions "
              f"({still['agent runs'] / still['decisions']:.4%}; at most 1 %): {_verdict(flat_ok)}")
    ok = small_ok and big_ok and flat_ok
    print("\nall within targets" if ok else "\nSOME OVER TARGET")
    return 0 if ok else 1


def _verdict(good: bool) -> str:
    return "ok" if good else "OVER TARGET"


def _lines(path: Path) -> int:
    with open(path, "rb") as f:
        return sum(1 for _ in f) - 1


if __name__ == "__main__":
    if sys.argv[1:2] == ["--walk"]:
        write_walk(Path(sys.argv[2]), BIG)
    else:
        sys.exit(main())
