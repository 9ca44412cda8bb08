#!/usr/bin/env python3
"""Archive the candles, tickers and global metrics older than backup.retention_days
(and the markets unavailable that long, with all their rows), copy the archives
to backup.destination, verify the copies there, and only then delete the rows.
The order journal is never deleted.  Cron: monthly."""
from __future__ import annotations

import argparse
from pathlib import Path

from includes.runtime import run_script


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dry-run", action="store_true",
                        help="say what would be archived and deleted (or restored); change nothing")
    parser.add_argument("--restore", type=Path, nargs="+", metavar="ARCHIVE",
                        help="put the rows of these archives back into the market DB (idempotent)")


def run(cfg, args: argparse.Namespace) -> int:
    from includes.backup import restore, run_backup

    if args.restore:
        restore(cfg, args.restore, dry_run=args.dry_run)
    else:
        run_backup(cfg, dry_run=args.dry_run)
    return 0


if __name__ == "__main__":
    run_script("clean_and_backup_database", __doc__, run, arguments)
