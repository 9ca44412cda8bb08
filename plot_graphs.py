#!/usr/bin/env python3
"""Draw the charts into img/: each market's close over plots.window_hours with its
trends and the journal's buys and sells, the portfolio, the global market, and
img/index.html, a static page showing them with the thread table.  Cron: hourly."""
from __future__ import annotations

import argparse
import logging
import time

from includes.runtime import run_script

log = logging.getLogger("crontrader")


def run(cfg, args: argparse.Namespace) -> int:
    from includes.plots import plot_all

    started = time.monotonic()
    page = plot_all(cfg)
    log.info("%d charts and index.html written to %s in %.1f s", len(page.charts), cfg.path(cfg.paths.img),
             time.monotonic() - started)
    return 0


if __name__ == "__main__":
    run_script("plot_graphs", __doc__, run)
