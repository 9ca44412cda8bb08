#!/usr/bin/env python3
"""Archive the candles, tickers and global metrics older than backup.retention_days
(and the markets unavailable that long, with all their rows), copy the archives
to backup.destination, verify the copies there, and only then delete the rows.
The order journal is never deleted.  Each run also copies the whole trading record (the
journal, the threads of both modes, the paper ledger) there and verifies it; --state-only
does only that, nightly.  Cron: monthly (and nightly with --state-only)."""
from __future__ import annotations

import argparse
from pathlib import Path

from includes.runtime import run_script


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dry-run", action="store_true",
                        help="say what would be archived and deleted (or restored); change nothing")
    parser.add_argument("--restore", type=Path, nargs="+", metavar="ARCHIVE",
                        help="put the rows of these archives back into the market DB (idempotent); "
                             "trading-record archives (record.*) onto an empty DB and state store")
    parser.add_argument("--state-only", action="store_true",
                        help="only copy the trading record (journal, threads, paper ledger) and verify it")


def run(cfg, args: argparse.Namespace) -> int:
    from includes.backup import restore, run_backup, verify_archive
    from includes.record import back_up_record, is_record, restore_record

    if args.restore:
        archives = [verify_archive(p) for p in args.restore]      # all checked before anything is written
        record = [a for a in archives if is_record(a)]
        if record and not args.dry_run:
            restore_record(cfg, record)
        restore(cfg, [a.path for a in archives if not is_record(a)], dry_run=args.dry_run)
        return 0
    if not args.state_only:
        run_backup(cfg, dry_run=args.dry_run)
    if not args.dry_run:
        back_up_record(cfg)
    return 0


if __name__ == "__main__":
    run_script("clean_and_backup_database", __doc__, run, arguments)
