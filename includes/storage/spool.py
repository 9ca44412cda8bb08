"""Rows that could not reach the market DB wait here until it is back.

A cycle's write that finds the DB unreachable is saved as one file, written
atomically (temporary file, fsync, rename), so a crash leaves either the whole
batch or nothing.  The next good run replays the files oldest first, and deletes
each one only once its rows are committed: a crash in between writes them again,
which the DB's idempotent upserts absorb.

A file is JSON lines: first {"method": ..., "args": {...}}, the MarketDB call,
then one row per line, Decimals as strings so that no digit is lost.
"""
from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, fields
from decimal import Decimal
from pathlib import Path
from typing import Any

from includes.coinmarketcap import GlobalMetrics
from includes.errors import StorageError
from includes.platforms.base import Candle, Market, Ticker
from includes.storage.marketdb import DatabaseUnreachable, MarketDB

log = logging.getLogger(__name__)

# The MarketDB writes that can be spooled: method -> (its rows argument, the rows' type).
WRITES: dict[str, tuple[str, type]] = {
    "upsert_markets": ("markets", Market),
    "upsert_candles": ("candles", Candle),
    "insert_tickers": ("tickers", Ticker),
    "insert_global_metrics": ("metrics", GlobalMetrics),
}


class Spool:
    def __init__(self, directory: Path | str) -> None:
        self.directory = Path(directory)

    def write(self, db: MarketDB, method: str, **kwargs: Any) -> Any:
        """db.<method>(**kwargs), or, when the DB is unreachable, the same call saved for later.

        Returns what the method returns, or None when the rows were spooled.
        """
        rows_arg, _ = WRITES[method]
        kwargs[rows_arg] = list(kwargs[rows_arg])
        try:
            return getattr(db, method)(**kwargs)
        except DatabaseUnreachable as exc:
            path = self.save(method, **kwargs)
            log.warning("%s; %d rows spooled to %s", exc, len(kwargs[rows_arg]), path)
            return None

    def save(self, method: str, **kwargs: Any) -> Path:
        """Write one spool file atomically; its name sorts in the order of the writes."""
        rows_arg, _ = WRITES[method]
        rows = kwargs.pop(rows_arg)
        lines = [json.dumps({"method": method, "args": kwargs})]
        lines += [json.dumps(asdict(row), default=_exact) for row in rows]
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"{time.time_ns():020d}-{os.getpid()}-{method}.jsonl"
        partial = path.with_suffix(".tmp")
        try:
            with open(partial, "w", encoding="utf-8") as f:
                f.write("\n".join(lines) + "\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(partial, path)
        except OSError as exc:          # a full disk: no half batch left, and the job says where
            partial.unlink(missing_ok=True)
            raise OSError(exc.errno, exc.strerror, str(path)) from None
        directory = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(directory)  # the rename itself survives a power cut
        finally:
            os.close(directory)
        return path

    def files(self) -> list[Path]:
        """The spooled batches, oldest first."""
        return sorted(self.directory.glob("*.jsonl"))

    @property
    def bad(self) -> Path:
        """Where unreadable files go, so that one of them never holds back the batches after it."""
        return self.directory / "bad"

    def replay(self, db: MarketDB) -> int:
        """Write every spooled batch, oldest first; returns the number of rows written.

        An unreadable file is moved to bad/ and the others replayed; a warning says so at
        every run while bad/ holds any.  Stops at the first failure of the DB
        (DatabaseUnreachable when it is down again), leaving that file and the later ones
        for the next run.
        """
        written = 0
        for path in self.files():
            try:
                method, kwargs = read(path)
            except FileNotFoundError:
                continue  # another job replayed it meanwhile
            except (StorageError, OSError) as exc:
                self._set_aside(path, exc)
                continue
            result = getattr(db, method)(**kwargs)
            path.unlink(missing_ok=True)
            written += len(kwargs[WRITES[method][0]])
            for market, old, new in result or ():
                log.info("%s %s: status %s -> %s (spooled at %s)", kwargs["exchange"], market, old, new,
                         kwargs["seen_at"])
        aside = sorted(self.bad.iterdir()) if self.bad.is_dir() else []
        if aside:
            log.warning("%d unreadable spool file%s set aside in %s (%s...): their rows are not in the market DB; "
                        "look at them, then delete them", len(aside), "s" if len(aside) > 1 else "", self.bad,
                        aside[0].name)
        return written

    def _set_aside(self, path: Path, exc: Exception) -> None:
        self.bad.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(path, self.bad / path.name)
        except FileNotFoundError:
            return                          # another job moved it meanwhile
        log.error("%s; moved to %s", str(exc)[:300] if isinstance(exc, StorageError) else
                  f"spool file {path} is unreadable ({exc.strerror or exc})", self.bad)


def read(path: Path) -> tuple[str, dict[str, Any]]:
    """The MarketDB call saved in `path`: (method, keyword arguments)."""
    with open(path, encoding="utf-8") as f:
        try:
            header = json.loads(f.readline())
            method, args = header["method"], header["args"]
            if not isinstance(args, dict):
                raise TypeError("its args are not a mapping")
            rows_arg, row_type = WRITES[method]
            decimals = {f.name for f in fields(row_type) if "Decimal" in str(f.type)}
            rows = [row_type(**{k: Decimal(v) if k in decimals and v is not None else v
                                for k, v in json.loads(line).items()}) for line in f]
        except (ValueError, KeyError, TypeError, ArithmeticError) as exc:
            raise StorageError(f"spool file {path} is unreadable ({str(exc)[:100]!r})") from None
    return method, {**args, rows_arg: rows}


def _exact(value: Any) -> str:
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"{type(value).__name__} cannot be spooled")
