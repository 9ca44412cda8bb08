"""Rows that could not reach the market DB wait here until it is back.

A cycle's write that finds the DB unreachable is saved as one file, written
atomically (temporary file, fsync, rename), so a crash leaves either the whole
batch or nothing.  The next good run replays the files oldest first, and deletes
each one only once its rows are committed: a crash in between writes them again,
which the DB's idempotent upserts absorb.

A file is JSON lines: first {"method": ..., "args": {...}}, the MarketDB call,
then one row per line, Decimals as strings so that no digit is lost.

The spool holds each row once: a new batch drops from the older files the rows it
writes again under the same primary key (a DB down for several cycles re-fetches
overlapping candles), and a newer listing of a venue replaces the older one.  It
is capped by size and by age (storage.spool_max_mb, storage.spool_max_days): past
a cap the oldest batches are dropped, and `told` says so, for the owner.
"""
from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Hashable
from dataclasses import asdict, dataclass, fields
from decimal import Decimal
from pathlib import Path
from typing import Any

from includes.errors import StorageError
from includes.model import Candle, GlobalMetrics, Market, Ticker
from includes.storage.marketdb import DatabaseUnreachable, MarketDB

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class Write:
    """A MarketDB write that can be spooled, and the primary key of its rows (the table's)."""

    rows: str                                       # its rows argument
    row_type: type
    group: tuple[str, ...]                          # the arguments that are part of the key
    key: Callable[[dict[str, Any], dict[str, Any]], Hashable]   # (args, row) -> the rest of the key
    listing: bool = False                           # the whole venue: a newer one replaces it


# The MarketDB writes that can be spooled, by method.
WRITES: dict[str, Write] = {
    "upsert_markets": Write("markets", Market, ("exchange",), lambda a, r: r["symbol"], listing=True),
    "upsert_candles": Write("candles", Candle, ("exchange", "market", "interval"), lambda a, r: r["ts"]),
    "insert_tickers": Write("tickers", Ticker, ("exchange",),
                            lambda a, r: (r["market"], r["ts"] if a.get("ts") is None else a["ts"])),
    "insert_global_metrics": Write("metrics", GlobalMetrics, ("source",), lambda a, r: r["ts"]),
}
MB = 1_000_000
DAY = 86_400


@dataclass(frozen=True)
class Holding:
    """What the spool holds: for the log line of every run that uses it, and stderr when not empty."""

    files: int
    rows: int
    bytes: int
    oldest: float | None            # unix time the oldest batch was spooled

    def describe(self, now: float) -> str:
        if not self.files:
            return "the spool is empty"
        assert self.oldest is not None
        return (f"the spool holds {_count(self.files, 'batch', 'es')}, {_count(self.rows, 'row')}, "
                f"{self.bytes / MB:.1f} MB, the oldest {_age(now - self.oldest)} old: the market DB was "
                "unreachable; the next run that reaches it writes them")


class Spool:
    def __init__(self, directory: Path | str, max_mb: float | None = None, max_days: float | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        """`max_mb`, `max_days`: the caps (None: none); `clock`: unix time now, which names and ages the files."""
        self.directory = Path(directory)
        self.max_bytes = None if max_mb is None else int(max_mb * MB)
        self.max_age = None if max_days is None else max_days * DAY
        self.clock = clock
        self.dropped: dict[str, list[int]] = {}   # cap key -> [batches, rows, bytes] dropped by this object
        self.used = False                          # this run wrote to the spool or replayed it

    def write(self, db: MarketDB, method: str, **kwargs: Any) -> Any:
        """db.<method>(**kwargs), or, when the DB is unreachable, the same call saved for later.

        Returns what the method returns, or None when the rows were spooled.  Raises what the
        method raises but DatabaseUnreachable (StorageRefused is never spooled: waiting will
        not cure it), and OSError naming the file when the spool cannot be written (a full disk).
        """
        rows_arg = WRITES[method].rows
        kwargs[rows_arg] = list(kwargs[rows_arg])
        try:
            return getattr(db, method)(**kwargs)
        except DatabaseUnreachable as exc:
            path = self.save(method, **kwargs)
            log.warning("%s; %d rows spooled to %s", exc, len(kwargs[rows_arg]), path)
            return None

    def save(self, method: str, **kwargs: Any) -> Path:
        """Write one spool file atomically (its name sorts in the order of the writes), then drop
        the rows it holds from the older files, then the oldest files past a cap."""
        spec = WRITES[method]
        rows = [asdict(row) for row in kwargs.pop(spec.rows)]
        self.used = True
        self.directory.mkdir(parents=True, exist_ok=True)
        ns = int(self.clock() * 1e9)
        while True:           # unique, also under a clock that stands still
            path = self.directory / f"{ns:020d}-{os.getpid()}-{method}.jsonl"
            if not path.exists():
                break
            ns += 1
        self._write_file(path, [json.dumps({"method": method, "args": kwargs})]
                         + [json.dumps(row, default=_exact) for row in rows])
        self._drop_older(path, method, kwargs, {spec.key(kwargs, row) for row in rows})
        self._cap()
        return path

    def _write_file(self, path: Path, lines: list[str]) -> None:
        """Atomically: a temporary file, fsync, rename, fsync of the directory."""
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

    def _drop_older(self, new: Path, method: str, args: dict[str, Any], keys: set[Hashable]) -> None:
        """The older files' rows under the same keys as the batch just written: each row spooled once,
        with its newest values (written after the new file, so a crash leaves a row twice, never none)."""
        spec = WRITES[method]
        group = [args.get(name) for name in spec.group]
        dropped = 0
        for path in self.files():
            if path >= new:
                continue
            try:
                with open(path, encoding="utf-8") as f:
                    first = f.readline()
                    header = json.loads(first)
                    if header.get("method") != method or [header["args"].get(n) for n in spec.group] != group:
                        continue
                    lines = f.read().splitlines()
                if spec.listing:
                    kept: list[str] = []
                else:
                    kept = [line for line in lines if spec.key(header["args"], json.loads(line)) not in keys]
            except FileNotFoundError:
                continue                    # replayed meanwhile
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                continue                    # unreadable: the replay sets it aside
            if len(kept) == len(lines):
                continue
            dropped += len(lines) - len(kept)
            if kept:
                self._write_file(path, [first.rstrip("\n"), *kept])
            else:
                path.unlink(missing_ok=True)
        if dropped:
            log.info("%d %s rows spooled earlier dropped: the new batch holds them%s", dropped, spec.rows,
                     " (a newer listing)" if spec.listing else ", newer")

    def _cap(self) -> None:
        """Past storage.spool_max_days or storage.spool_max_mb, the oldest batches go, and `told` says so."""
        now = self.clock()
        held = [(path, _spooled_at(path), _size(path)) for path in self.files()]
        total = sum(size for _, _, size in held)
        for path, at, size in held:
            if self.max_age is not None and at < now - self.max_age:
                cap = "spool_max_days"
            elif self.max_bytes is not None and total > self.max_bytes:
                cap = "spool_max_mb"
            else:
                break
            rows = _rows(path)
            try:
                path.unlink()
            except FileNotFoundError:
                continue                    # replayed meanwhile
            total -= size
            counts = self.dropped.setdefault(cap, [0, 0, 0])
            counts[0] += 1
            counts[1] += rows
            counts[2] += size
            log.error("%s (%d rows spooled %s ago) dropped: over storage.%s; its rows never reach the market DB",
                      path.name, rows, _age(now - at), cap)

    def told(self) -> str | None:
        """One line for the owner when this object dropped batches past a cap; None otherwise."""
        if not self.dropped:
            return None
        limits = {"spool_max_days": f"older than {(self.max_age or 0) / DAY:g} days",
                  "spool_max_mb": f"beyond {(self.max_bytes or 0) / MB:g} MB"}
        parts = [f"{_count(n, 'batch', 'es')} ({_count(rows, 'row')}, {size / MB:.1f} MB) {limits[cap]} "
                 f"(storage.{cap})" for cap, (n, rows, size) in self.dropped.items()]
        return (f"spool full: dropped the oldest {' and '.join(parts)}; those rows never reach the market DB "
                f"({self.directory})")

    def holding(self) -> Holding:
        """What the spool holds now (rows counted by lines: the files are small, being capped)."""
        files = self.files()
        return Holding(len(files), sum(_rows(p) for p in files), sum(_size(p) for p in files),
                       min((_spooled_at(p) for p in files), default=None))

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
        files = self.files()
        self.used = self.used or bool(files)
        for path in files:
            try:
                method, kwargs = read(path)
            except FileNotFoundError:
                continue  # another job replayed it meanwhile
            except (StorageError, OSError) as exc:
                self._set_aside(path, exc)
                continue
            result = getattr(db, method)(**kwargs)
            path.unlink(missing_ok=True)
            written += len(kwargs[WRITES[method].rows])
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
                  f"spool file {path} is unreadable ({getattr(exc, 'strerror', None) or exc})", self.bad)


def read(path: Path) -> tuple[str, dict[str, Any]]:
    """The MarketDB call saved in `path`: (method, keyword arguments)."""
    with open(path, encoding="utf-8") as f:
        try:
            header = json.loads(f.readline())
            method, args = header["method"], header["args"]
            if not isinstance(args, dict):
                raise TypeError("its args are not a mapping")
            rows_arg, row_type = WRITES[method].rows, WRITES[method].row_type
            decimals = {f.name for f in fields(row_type) if "Decimal" in str(f.type)}
            rows = [row_type(**{k: Decimal(v) if k in decimals and v is not None else v
                                for k, v in json.loads(line).items()}) for line in f]
        except (ValueError, KeyError, TypeError, ArithmeticError) as exc:
            raise StorageError(f"spool file {path} is unreadable ({str(exc)[:100]!r})") from None
    return method, {**args, rows_arg: rows}


def _spooled_at(path: Path) -> float:
    """When a batch was spooled: its name starts with the nanoseconds (a name not so: now)."""
    try:
        return int(path.name.split("-", 1)[0]) / 1e9
    except ValueError:
        return time.time()


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _rows(path: Path) -> int:
    """The rows of a batch: its lines but the header."""
    try:
        with open(path, "rb") as f:
            return max(0, sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 16), b"")) - 1)
    except OSError:
        return 0


def _count(n: int, noun: str, plural: str = "s") -> str:
    return f"{n} {noun}{plural if n != 1 else ''}"


def _age(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 3600:
        return f"{seconds // 60} min"
    if seconds < 2 * DAY:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / DAY:.1f} days"


def _exact(value: Any) -> str:
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"{type(value).__name__} cannot be spooled")
