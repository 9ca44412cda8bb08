#!/usr/bin/env python3
"""Record which markets the exchange has open for trading, and since when;
write tmp/available.markets.tmp (one available market per line).  Cron: hourly."""
from __future__ import annotations

import argparse

from includes.runtime import run_script


def run(cfg, args: argparse.Namespace) -> int:
    from includes.marketdata import available_markets

    return available_markets(cfg)


if __name__ == "__main__":
    run_script("available_markets", __doc__, run)
