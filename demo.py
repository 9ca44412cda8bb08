#!/usr/bin/env python3
"""The demo behind `make demo`: crontrader's cron cycle over a simulated day
against the bundled Kraken simulator, in dry-run, on SQLite; nothing leaves
this machine."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

# What a demo's home holds: a --home with anything else is not wiped (run_demo starts afresh).
DEMO_FILES = {"config.yaml", "crontrader.db", "state.db", "kraken.key", "log", "tmp", "img", "stop", "dry-run"}


def main() -> None:
    parser = argparse.ArgumentParser(prog="demo.py", description=__doc__)
    parser.add_argument("--days", type=float, default=1, help="simulated days to play (default 1)")
    parser.add_argument("--seed", type=int, default=7, help="seed of the synthetic price paths")
    parser.add_argument("--csv", type=Path, help="a candle CSV (format of ../shared/data) that BTC/EUR follows")
    parser.add_argument("--pair", default="XXBTZEUR", help="the Kraken pair the CSV drives")
    parser.add_argument("--home", type=Path, metavar="DIR",
                        help="where the demo writes its config, databases, log and charts, wiped first "
                             "(default: tmp/demo in the checkout); a DIR given must be new, empty or a demo's")
    args = parser.parse_args()
    from simulators.demo import run_demo

    if args.home is not None:
        if args.home.exists() and not (args.home.is_dir() and {p.name for p in args.home.iterdir()} <= DEMO_FILES):
            sys.exit(f"demo.py: {args.home} holds more than a demo's files: give a new or empty directory")
        run_demo(days=args.days, seed=args.seed, csv=args.csv, pair=args.pair, home=args.home.resolve())
    else:
        run_demo(days=args.days, seed=args.seed, csv=args.csv, pair=args.pair)


if __name__ == "__main__":
    main()
