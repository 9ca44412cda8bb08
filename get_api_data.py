#!/usr/bin/env python3
"""Fetch tickers and candles (and CoinMarketCap's global metrics when a key is
configured) into the market DB and the optional time-series server.  Cron:
every 10 minutes.  Only candles not stored yet are downloaded."""
from __future__ import annotations

import argparse

from includes.runtime import run_script


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backfill", type=float, metavar="DAYS",
                        help="first page through the last DAYS of history (as far as the exchange keeps it)")


def run(cfg, args: argparse.Namespace) -> int:
    from includes.marketdata import get_api_data

    return get_api_data(cfg, backfill_days=args.backfill)


if __name__ == "__main__":
    run_script("get_api_data", __doc__, run, arguments)
