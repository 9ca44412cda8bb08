"""The state store on SQLite, the embedded default: one (key, field, value) table in a file."""
from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from includes.storage.state import MISSING, StateStore, Thread, Value, _now_ms, _text, _translated


class SQLiteStateStore(StateStore):
    """One (key, field, value) table; plain values have the field ''.

    WAL lets readers run beside the writer; every write is BEGIN IMMEDIATE, so
    a move's read and write are one step even across processes.
    """
    backend_errors = sqlite3.Error

    def __init__(self, path: str, prefix: str = "crontrader", mode: str = "live") -> None:
        super().__init__(prefix, mode)
        self.path = path
        self.where = f"SQLite state store {path}"
        self._open()

    @_translated
    def _open(self) -> None:
        """Retried a little: while the last connection of another process closes, SQLite
        checkpoints and drops the WAL, and an opener can then be told "locked" at once,
        without its busy timeout."""
        for attempt in range(50):
            try:
                self.db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
                if self.db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                    # Persistent in the file; switching needs the database to itself.
                    self.db.execute("PRAGMA journal_mode=WAL")
                self.db.execute("CREATE TABLE IF NOT EXISTS state (key TEXT NOT NULL, field TEXT NOT NULL,"
                                " value TEXT NOT NULL, PRIMARY KEY (key, field)) WITHOUT ROWID")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or attempt == 49:
                    raise
                self.db.close()
                time.sleep(0.1)

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self.db:                                   # commits, or rolls back on error
            self.db.execute("BEGIN IMMEDIATE")
            yield self.db

    def _hash(self, key: str) -> dict[str, str]:
        return dict(self.db.execute("SELECT field, value FROM state WHERE key = ?", (key,)))

    def _write(self, key: str, fields: Mapping[str, str]) -> None:
        self.db.executemany("INSERT OR REPLACE INTO state VALUES (?, ?, ?)",
                            [(key, f, v) for f, v in fields.items()])

    @_translated
    def _move(self, n: int, expected: str, expected_ref: str | None, fields: dict[str, str]) -> bool:
        key = self._thread_key(n)
        with self._transaction():
            current = self._hash(key)
            if current.get("state", MISSING) != expected:
                return False
            if expected_ref is not None and current.get("order_ref") != expected_ref:
                return False
            self._write(key, fields)
            return True

    @_translated
    def get_thread(self, n: int) -> Thread | None:
        fields = self._hash(self._thread_key(n))
        return Thread.from_fields(n, fields) if fields else None

    @_translated
    def threads(self) -> list[Thread]:
        rows = self.db.execute("SELECT key, field, value FROM state WHERE key GLOB ?",
                               (self.key_prefix + "thread:*",))
        found: dict[int, dict[str, str]] = {}
        for key, field, value in rows:
            found.setdefault(int(key.rsplit(":", 1)[1]), {})[field] = value
        return [Thread.from_fields(n, found[n]) for n in sorted(found)]

    @_translated
    def put_thread(self, thread: Thread) -> None:
        with self._transaction():
            self._write(self._thread_key(thread.n), thread.fields())

    @_translated
    def set_many(self, values: Mapping[str, Value]) -> None:
        with self._transaction():
            self.db.executemany("INSERT OR REPLACE INTO state VALUES (?, '', ?)",
                                [(self.key_prefix + k, _text(v)) for k, v in values.items()])

    @_translated
    def get_value(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM state WHERE key = ? AND field = ''",
                              (self.key_prefix + key,)).fetchone()
        return row[0] if row else None

    @_translated
    def keys(self, pattern: str = "*") -> list[str]:
        rows = self.db.execute("SELECT DISTINCT key FROM state WHERE key GLOB ? ORDER BY key",
                               (self.key_prefix + pattern,))
        return [key[len(self.key_prefix):] for (key,) in rows]

    def close(self) -> None:
        self.db.close()

    def _lock_holder(self, key: str) -> str | None:
        """The token of the unexpired lock `key`, if any (one without an end is unexpired)."""
        lock = self._hash(key)
        return lock.get("token", "?") if lock and _expires(lock) > _now_ms() else None

    @_translated
    def _lock_bound(self, key: str, ttl_ms: int) -> int | None:
        with self._transaction():
            lock = self._hash(key)
            if not lock or _expires(lock) <= _now_ms() + ttl_ms:
                return None
            self._write(key, {"token": lock.get("token", "?"), "expires": str(_now_ms() + ttl_ms)})
            return -1 if _expires(lock) == _NO_END else _expires(lock) - _now_ms()

    @_translated
    def _lock_acquire(self, key: str, token: str, ttl_ms: int) -> bool:
        with self._transaction():
            if self._lock_holder(key):
                return False
            self._write(key, {"token": token, "expires": str(_now_ms() + ttl_ms)})
            return True

    @_translated
    def _lock_release(self, key: str, token: str) -> bool:
        with self._transaction() as db:
            if self._lock_holder(key) != token:
                return False
            db.execute("DELETE FROM state WHERE key = ?", (key,))
            return True

    @_translated
    def _lock_extend(self, key: str, token: str, ttl_ms: int) -> bool:
        with self._transaction():
            if self._lock_holder(key) != token:
                return False
            self._write(key, {"expires": str(_now_ms() + ttl_ms)})
            return True


_NO_END = 2 ** 62


def _expires(lock: Mapping[str, str]) -> int:
    """A lock row's end in ms; a missing or malformed one never ends (until bounded)."""
    value = lock.get("expires", "")
    return int(value) if value.isdigit() else _NO_END
