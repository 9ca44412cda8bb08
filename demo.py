#!/usr/bin/env python3
"""The demo behind `make demo`: crontrader's cron cycle over a simulated day
against the bundled Kraken simulator, in dry-run, on SQLite; nothing leaves
this machine."""
from __future__ import annotations

import argparse
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(prog="demo.py", description=__doc__)
    parser.add_argument("--days", type=float, default=1, help="simulated days to play (default 1)")
    parser.add_argument("--seed", type=int, default=7, help="seed of the synthetic price paths")
    parser.add_argument("--csv", type=Path, help="a candle CSV (format of ../shared/data) that BTC/EUR follows")
    parser.add_argument("--pair", default="XXBTZEUR", help="the Kraken pair the CSV drives")
    args = parser.parse_args()
    from simulators.demo import run_demo

    run_demo(days=args.days, seed=args.seed, csv=args.csv, pair=args.pair)


if __name__ == "__main__":
    main()
