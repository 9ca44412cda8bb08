#!/usr/bin/env python3
"""Replay historical candles through the trading agent's own code: a decision
every --step minutes (the cron period) on a simulated clock, orders filled as
in dry-run, then a report (trades, P&L, drawdown, win rate, exposure, buy and
hold), optionally as JSON and charts, or a ranked parameter sweep."""
from __future__ import annotations

import argparse
from decimal import Decimal
from pathlib import Path

from includes.runtime import run_script


def arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--csv", nargs="+", type=Path, metavar="FILE",
                        help="candle files <exchange>_<BASE>_<QUOTE>_<tf>.csv (the format of ../shared/data)")
    source.add_argument("--from-db", action="store_true",
                        help="the market DB's candles of the configured currencies")
    parser.add_argument("--pair", metavar="BASE/QUOTE",
                        help="the market of a --csv file not named the project's way (e.g. BTC/EUR)")
    parser.add_argument("--timeframe", metavar="TF", help="its candles' length: 1m, 5m, 1h, 1d, 1w ...")
    parser.add_argument("--markets", type=Path, metavar="FILE",
                        help="the markets' order rules: a saved Kraken AssetPairs reply (default: the "
                             "Kraken simulator's table; with --from-db, the market DB's listing first)")
    parser.add_argument("--portfolio", action="store_true",
                        help="replay the CSV files together, one account choosing between them "
                             "(default: each file alone)")
    parser.add_argument("--step", type=int, default=10, metavar="MINUTES",
                        help="minutes between decisions, at least the candles' timeframe (default 10)")
    parser.add_argument("--start", metavar="WHEN", help="first decision: unix seconds or ISO date (UTC)")
    parser.add_argument("--end", metavar="WHEN", help="last decision: unix seconds or ISO date (UTC)")
    parser.add_argument("--spread", type=Decimal, default=Decimal("0.1"), metavar="PERCENT",
                        help="bid-ask spread around the replayed price (default 0.1)")
    parser.add_argument("--json", type=Path, metavar="PATH", help="write the report as JSON")
    parser.add_argument("--charts", action="store_true", help="write img/backtest-<replay>.png")
    parser.add_argument("--sweep", nargs="+", metavar="KEY=START:STOP:STEP",
                        help="replay every combination of these trading keys and rank them")
    parser.add_argument("--workers", type=int, default=0, metavar="N",
                        help="processes for --sweep (default: one per CPU)")
    parser.add_argument("--every-step", action="store_true",
                        help="run the agent at every decision time, even when it can only hold (slow)")


def run(cfg, args: argparse.Namespace) -> int:
    from includes.backtest.command import main

    return main(cfg, args)


if __name__ == "__main__":
    run_script("backtest", __doc__, run, arguments, lock=False)
