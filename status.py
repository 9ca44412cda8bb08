#!/usr/bin/env python3
"""The owner's view at a glance: the mode, each job's last run, what every thread holds and
its unrealised P&L at the bid, realised P&L, fees, free balance and equity, orders in doubt,
data freshness and the spool.  Exit status 1 when something needs attention (a job not
succeeding for 3 of its periods, an order in doubt for over an hour, a non-empty spool), so
it can itself run from cron.  Reads the stores only: it never calls the exchange."""
from __future__ import annotations

import argparse

from includes.runtime import run_script


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="the same figures as JSON")
    parser.add_argument("--notify", action="store_true",
                        help="also send the status to the notify.urls that take the 'summary' event (e.g. daily)")


def run(cfg, args: argparse.Namespace) -> int:
    from includes.status import status_job

    return status_job(cfg, as_json=args.json, send=args.notify)


if __name__ == "__main__":
    run_script("status", __doc__, run, arguments, lock=False)
