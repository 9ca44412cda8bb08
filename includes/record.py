"""The trading record leaves the Pi: a consistent full copy of the order journal, the
threads and plain values of both modes, and the paper ledger, written as archives
(docs/backup.md's format) and put through the backup's copy-then-verify; and brought
back onto empty stores.

Consistent: the copy is read while this agent's lock is held in both modes, so no
agent run moves a thread or journals an order in between.  An SD card that dies
loses at most what happened since the last copy.
"""
from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from includes.backup import (
    RECORD,
    SUFFIX,
    Archive,
    BackupError,
    archive_rows,
    destination,
    verify_archive,
    write_archive,
)
from includes.model import MODES
from includes.storage.state import Thread

if TYPE_CHECKING:
    from includes.config import Config
    from includes.storage.marketdb import MarketDB
    from includes.storage.state import StateStore

log = logging.getLogger(__name__)

LOCK_WAIT = 120         # seconds to wait for an agent run to finish
LOCK_TTL = 300
THREAD_FIELDS = list(Thread(0).fields())
LAYOUTS = {             # the record's archives besides the journal: columns and key
    "threads": (["mode", "thread", *THREAD_FIELDS], ["mode", "thread"]),
    "state_values": (["mode", "key", "value"], ["mode", "key"]),
    "paper_ledger": (["namespace", "ledger"], ["namespace"]),
}


def _ledger(cfg: Config) -> Path:
    """The dry-run paper account (as run_agent names it)."""
    return cfg.path(cfg.paths.tmp) / f"paper-{cfg.storage.namespace}.json"


@contextmanager
def _stores(cfg: Config, lock: bool) -> Iterator[tuple[MarketDB, dict[str, StateStore]]]:
    """The market DB and both modes' state stores; with `lock`, each mode's agent lock held."""
    from includes.agent import LOCK_TTL as AGENT_LOCK
    from includes.storage import open_market_db, open_state

    with ExitStack() as stack:
        db = open_market_db(cfg)
        stack.callback(db.close)
        stores = {}
        for mode in MODES:
            stores[mode] = store = open_state(cfg, mode)
            stack.callback(store.close)
            if lock:
                held = store.lock("agent", ttl_seconds=max(LOCK_TTL, AGENT_LOCK))
                deadline = time.monotonic() + LOCK_WAIT
                while not held.acquire():
                    if time.monotonic() > deadline:
                        raise BackupError(f"the {mode} agent's lock in {store.where} stayed held for "
                                          f"{LOCK_WAIT} s: no consistent copy of the trading record")
                    time.sleep(1)
                stack.callback(held.release)
        yield db, stores


def _values(store: StateStore) -> list[tuple[str, str]]:
    """The plain values (budget, trends, balances), not the threads nor the locks."""
    return [(k, store.get_value(k) or "") for k in store.keys()  # noqa: SIM118 -- StateStore.keys(), not a dict
            if not k.startswith(("thread:", "lock:"))]


def snapshot(cfg: Config, staging: Path, stamp: str) -> list[Archive]:
    """The whole trading record as verified archives in staging/, read under both agent locks."""
    from includes.storage.marketdb import table_layout

    archives = []
    with _stores(cfg, lock=True) as (db, stores):
        columns, key = table_layout("orders")
        tables: dict[str, tuple[list[str], list[str], list[Sequence[Any]]]] = {
            "orders": (columns, key, [[row[c] for c in columns] for mode in MODES
                                      for row in db.journal(mode, agent=cfg.storage.namespace)]),
            "threads": (*LAYOUTS["threads"], [[mode, t.n, *t.fields().values()] for mode, s in stores.items()
                                              for t in s.threads()]),
            "state_values": (*LAYOUTS["state_values"], [[mode, k, v] for mode, s in stores.items()
                                                        for k, v in _values(s)]),
            "paper_ledger": (*LAYOUTS["paper_ledger"], [[cfg.storage.namespace, _ledger(cfg).read_text()]]
                             if _ledger(cfg).exists() else []),
        }
        version = db.schema_version()
        for table, (columns, key, rows) in tables.items():
            path = staging / f"record.{table}.{stamp}{SUFFIX}"
            written = write_archive(path, table, "full", columns, key, rows, version)
            if verify_archive(path) != written:
                raise BackupError(f"{path}: reads back differently from what was written")
            archives.append(written)
    return archives


def back_up_record(cfg: Config, now: float | None = None) -> list[str]:
    """Copy the trading record to backup.destination and verify the copies there; their names."""
    dest = destination(cfg)
    tmp = cfg.path(cfg.paths.tmp)
    tmp.mkdir(parents=True, exist_ok=True)
    stamp = datetime.fromtimestamp(time.time() if now is None else now, UTC).strftime("%Y%m%dT%H%M%SZ")
    with tempfile.TemporaryDirectory(dir=tmp, prefix="record-") as staging:
        archives = snapshot(cfg, Path(staging), stamp)
        dest.copy([a.path for a in archives])
        copies = dest.checksums([a.path.name for a in archives])
        for a in archives:
            if copies.get(a.path.name) != a.file_sha256:
                raise BackupError(f"backup check in {dest.where} failed: the copy of {a.path.name} "
                                  f"differs from the archive")
    log.info("trading record (%s) copied to %s and verified there",
             ", ".join(f"{a.rows} {a.table}" for a in archives), dest.where)
    return [a.path.name for a in archives]


def restore_record(cfg: Config, archives: Sequence[Archive]) -> None:
    """Put a trading record back, onto stores that hold none: a restore never mixes two records."""
    with _stores(cfg, lock=False) as (db, stores):
        busy = [f"{mode} journal" for mode in MODES if db.journal(mode, agent=cfg.storage.namespace)]
        busy += [f"{s.where} ({mode})" for mode, s in stores.items() if [k for k in s.keys()  # noqa: SIM118 -- StateStore.keys()
                                                                           if not k.startswith("lock:")]]
        busy += [str(_ledger(cfg))] if _ledger(cfg).exists() else []
        if busy:
            raise BackupError(f"the trading record is restored onto empty stores only: {', '.join(busy)} "
                              f"already hold one")
        for a in archives:
            rows = archive_rows(a.path)
            if a.table == "orders":
                db.restore_rows("orders", a.columns, rows)
            elif a.table == "threads":
                for mode, n, *fields in rows:
                    stores[mode].put_thread(Thread.from_fields(n, dict(zip(THREAD_FIELDS, fields, strict=True))))
            elif a.table == "state_values":
                for mode, key, value in rows:
                    stores[mode].set_value(key, value)
            else:
                from includes.files import write_atomic
                for _, ledger in rows:
                    write_atomic(_ledger(cfg), ledger)
            log.info("restored %d rows of %s from %s", a.rows, a.table, a.path)


def is_record(archive: Archive) -> bool:
    return archive.table in RECORD
