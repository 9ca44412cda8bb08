"""The agent's state store: threads, plain values and run locks.

Redis in production, SQLite as the embedded default, behind one interface.
Keys keep the seed's names under `<prefix>:<live|dry>:` (`invest:total`,
`thread:<n>`, `platform:<CUR>:value`, ...) so a user can read them with
redis-cli, and live and dry-run state never mix.

A thread moves waiting -> buying -> active -> selling -> waiting.  Every move
is one atomic compare-and-set on the thread's state (and order ref): two
agents sharing one Redis can never take the same thread, and the order ref is
on the thread before the order is sent, so a crash leaves a trace to follow.
"""
from __future__ import annotations

import functools
import os
import re
import secrets
import socket
import sqlite3
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from typing import TypeVar

from includes.errors import StorageError, StorageRefused, cause
from includes.model import MODES
from includes.money import ZERO
from includes.storage import SQLITE_REFUSED

WAITING, BUYING, ACTIVE, SELLING, DISABLED = "waiting", "buying", "active", "selling", "disabled"
MISSING = ""                       # the "state" of a thread that does not exist yet
PREFIX_RE = re.compile(r"^[A-Za-z0-9_.-]+$")   # no glob characters: patterns stay simple

Value = Decimal | int | str
F = TypeVar("F", bound=Callable)


def _text(value: Value | None) -> str:
    """Stored form: plain decimal notation (never 1E-8), readable in redis-cli."""
    if value is None:
        return ""
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, (int, str)) and not isinstance(value, bool):
        return str(value)
    raise TypeError(f"state store values are Decimal, int or str, not {type(value).__name__}")


def _now_ms() -> int:
    return int(time.time() * 1000)


def _translated(method: F) -> F:
    """Backend errors become one-line StorageErrors naming the server (never the password);
    StorageRefused when waiting will not help (a refused login, a file that cannot be opened)."""
    @functools.wraps(method)
    def wrapper(self: StateStore, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except self.backend_errors as exc:
            refused = isinstance(exc, self.refused_errors) or getattr(exc, "sqlite_errorname", "") in SQLITE_REFUSED
            raise (StorageRefused if refused else StorageError)(f"{self.where}: {cause(exc)}") from exc
    return wrapper  # type: ignore[return-value]


@dataclass(frozen=True, slots=True)
class Thread:
    """An investment slot: value is the quote amount invested, volume the base volume held."""
    n: int
    state: str = WAITING
    currency: str = ""
    value: Decimal = ZERO
    volume: Decimal = ZERO
    lastbuyvalue: Decimal | None = None      # buy price
    lastsellvalue: Decimal | None = None     # last sell price
    order_ref: str = ""                      # the order in flight, or the last one sent
    updated: int = 0                         # unix seconds of the last move

    def fields(self) -> dict[str, str]:
        return {"state": self.state, "currency": self.currency, "value": _text(self.value),
                "volume": _text(self.volume), "lastbuyvalue": _text(self.lastbuyvalue),
                "lastsellvalue": _text(self.lastsellvalue), "order_ref": self.order_ref,
                "updated": str(self.updated)}

    @classmethod
    def from_fields(cls, n: int, f: Mapping[str, str]) -> Thread:
        def price(name: str) -> Decimal | None:
            return Decimal(f[name]) if f.get(name) else None
        return cls(n=n, state=f.get("state", WAITING), currency=f.get("currency", ""),
                   value=Decimal(f.get("value") or 0), volume=Decimal(f.get("volume") or 0),
                   lastbuyvalue=price("lastbuyvalue"), lastsellvalue=price("lastsellvalue"),
                   order_ref=f.get("order_ref", ""), updated=int(f.get("updated") or 0))


class LockHeld(StorageError):
    """Another run holds the lock."""


class Lock:
    """A run lock that expires after its ttl, so a crashed run cannot hold it forever.

    The random token makes release and extend touch only our own lock, never
    one another run took after ours expired.
    """

    def __init__(self, store: StateStore, name: str, ttl_seconds: float) -> None:
        if ttl_seconds <= 0:
            raise ValueError(f"lock {name}: ttl must be positive, not {ttl_seconds}")
        self.store, self.ttl_ms = store, int(ttl_seconds * 1000)
        self.key = store.namespace + f"lock:{name}"
        self.token = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(8)}"
        self.problem: str | None = None   # set by acquire() when the holder's lock had no bound

    def acquire(self) -> bool:
        """False, at once, when another live run holds it.

        A holder that died on this host (kill -9, power cut of a run) is
        detected by its pid and its lock taken over, rather than waiting out
        the ttl; a holder on another host is trusted until its ttl expires.
        A lock found without a ttl, or with more left than ours (set by hand, by
        another program, by a host whose clock is far ahead), gets ours: it is
        taken over at most one ttl later, and `problem` says so for the owner.
        """
        if self.store._lock_acquire(self.key, self.token, self.ttl_ms):
            return True
        holder = self.store._lock_holder(self.key)
        if holder and _dead_local_holder(holder) and self.store._lock_release(self.key, holder):
            return self.store._lock_acquire(self.key, self.token, self.ttl_ms)
        left = self.store._lock_bound(self.key, self.ttl_ms)
        if left is not None:
            self.problem = (f"{self.store.where}: lock {self.key} held by {str(holder)[:80]!r} had "
                            f"{'no ttl' if left < 0 else f'{left // 1000} s left'}: it now expires in "
                            f"{self.ttl_ms // 1000} s, and a later run takes it over")
        return False

    def release(self) -> bool:
        """False when it was no longer ours (it expired)."""
        return self.store._lock_release(self.key, self.token)

    def extend(self, ttl_seconds: float | None = None) -> bool:
        """Restart the ttl for long runs; False when it was no longer ours."""
        ttl_ms = self.ttl_ms if ttl_seconds is None else int(ttl_seconds * 1000)
        return self.store._lock_extend(self.key, self.token, ttl_ms)

    def __enter__(self) -> Lock:
        if not self.acquire():
            raise LockHeld(f"{self.store.where}: lock {self.key} is held by another run")
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _dead_local_holder(token: str) -> bool:
    host, _, rest = token.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


class StateStore(ABC):
    """One interface over Redis and SQLite; the thread moves are written once, here."""

    backend_errors: type[Exception] | tuple[type[Exception], ...]
    refused_errors: type[Exception] | tuple[type[Exception], ...] = ()
    where: str

    def __init__(self, prefix: str, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"state store mode must be one of {MODES}, not {mode!r}")
        if not PREFIX_RE.match(prefix):
            raise ValueError(f"state store prefix {prefix!r} may hold only letters, digits, _ . -")
        self.namespace = f"{prefix}:{mode}:"

    # -- what each backend provides -------------------------------------------------
    @abstractmethod
    def _move(self, n: int, expected: str, expected_ref: str | None, fields: dict[str, str]) -> bool:
        """Atomically write `fields` iff the thread's state is `expected` (and its ref matches)."""

    @abstractmethod
    def get_thread(self, n: int) -> Thread | None: ...

    @abstractmethod
    def threads(self) -> list[Thread]:
        """Every thread, by number."""

    @abstractmethod
    def put_thread(self, thread: Thread) -> None:
        """Write a whole thread unconditionally: rebuilding the state from the journal."""

    @abstractmethod
    def set_many(self, values: Mapping[str, Value]) -> None:
        """Several plain values in one round trip."""

    @abstractmethod
    def get_value(self, key: str) -> str | None: ...

    @abstractmethod
    def keys(self, pattern: str = "*") -> list[str]:
        """Names (without the namespace) matching a glob pattern, for debugging."""

    @abstractmethod
    def close(self) -> None: ...

    @abstractmethod
    def _lock_acquire(self, key: str, token: str, ttl_ms: int) -> bool: ...

    @abstractmethod
    def _lock_release(self, key: str, token: str) -> bool: ...

    @abstractmethod
    def _lock_holder(self, key: str) -> str | None: ...

    @abstractmethod
    def _lock_extend(self, key: str, token: str, ttl_ms: int) -> bool: ...

    def _lock_bound(self, key: str, ttl_ms: int) -> int | None:
        """Give the lock `key` at most `ttl_ms` to live; the ms it had left (-1: no end)
        when that was more, else None.  (A store whose locks cannot outlive it has none.)"""
        return None

    # -- built on them ----------------------------------------------------------------
    def set_value(self, key: str, value: Value) -> None:
        self.set_many({key: value})

    def get_decimal(self, key: str) -> Decimal | None:
        value = self.get_value(key)
        return Decimal(value) if value else None

    def lock(self, name: str, ttl_seconds: float) -> Lock:
        return Lock(self, name, ttl_seconds)

    def ensure_threads(self, total: int) -> int:
        """Create threads 1..total that do not exist yet, as waiting; how many were created."""
        fields = {k: v for k, v in Thread(0).fields().items() if k != "updated"}
        return sum(self._step(n, MISSING, None, **fields) for n in range(1, total + 1))

    def claim(self, n: int, currency: str, order_ref: str) -> bool:
        """waiting -> buying, recording the ref before the order is sent; False if taken."""
        return self._step(n, WAITING, None, state=BUYING, currency=currency,
                          order_ref=_ref(order_ref), value=ZERO, volume=ZERO,
                          lastbuyvalue=None, lastsellvalue=None)

    def activate(self, n: int, order_ref: str, value: Decimal, volume: Decimal,
                 buy_price: Decimal, at: int | None = None) -> bool:
        """buying -> active once the buy order `order_ref` filled (at `at`, the platform's clock)."""
        return self._step(n, BUYING, _ref(order_ref), state=ACTIVE, value=value, volume=volume,
                          lastbuyvalue=buy_price, updated=at)

    def begin_sell(self, n: int, order_ref: str) -> bool:
        """active -> selling, recording the sell order's ref before it is sent."""
        return self._step(n, ACTIVE, None, state=SELLING, order_ref=_ref(order_ref))

    def release(self, n: int, order_ref: str, sell_price: Decimal) -> bool:
        """selling -> waiting once the sell order `order_ref` filled; the last trade stays readable."""
        return self._step(n, SELLING, _ref(order_ref), state=WAITING, value=ZERO, volume=ZERO,
                          lastsellvalue=sell_price)

    def sell_part(self, n: int, order_ref: str, value: Decimal, volume: Decimal, sell_price: Decimal) -> bool:
        """selling -> active once the sell order `order_ref` ended having filled part: the rest
        (`volume`, worth `value` of what was paid) stays held."""
        return self._step(n, SELLING, _ref(order_ref), state=ACTIVE, value=value, volume=volume,
                          lastsellvalue=sell_price)

    def abort(self, n: int, order_ref: str) -> bool:
        """Undo claim or begin_sell when the order `order_ref` was definitely not placed."""
        ref = _ref(order_ref)
        return (self._step(n, BUYING, ref, state=WAITING, currency="", order_ref="")
                or self._step(n, SELLING, ref, state=ACTIVE, order_ref=""))

    def disable(self, n: int) -> bool:
        """waiting -> disabled: the budget does not cover this thread."""
        return self._step(n, WAITING, None, state=DISABLED)

    def enable(self, n: int) -> bool:
        return self._step(n, DISABLED, None, state=WAITING)

    def _step(self, n: int, expected: str, expected_ref: str | None, **fields: Value | None) -> bool:
        if n < 1:
            raise ValueError(f"thread numbers start at 1, not {n}")
        if fields.get("updated") is None:
            fields["updated"] = int(time.time())
        return self._move(n, expected, expected_ref, {k: _text(v) for k, v in fields.items()})

    def _thread_key(self, n: int) -> str:
        return self.namespace + f"thread:{n}"


def _ref(order_ref: str) -> str:
    """An empty ref would match any thread's ref: refuse it."""
    if not order_ref:
        raise ValueError("an order ref must not be empty")
    return order_ref


class RedisStateStore(StateStore):

    # KEYS[1] thread, KEYS[2] the set of thread numbers; ARGV: expected state ('' = missing),
    # expected ref ('' = any), thread number, field, value...
    MOVE = """
        if (redis.call('HGET', KEYS[1], 'state') or '') ~= ARGV[1] then return 0 end
        if ARGV[2] ~= '' and redis.call('HGET', KEYS[1], 'order_ref') ~= ARGV[2] then return 0 end
        redis.call('HSET', KEYS[1], unpack(ARGV, 4))
        redis.call('SADD', KEYS[2], ARGV[3])
        return 1"""
    UNLOCK = """
        if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
        return redis.call('DEL', KEYS[1])"""
    EXTEND = """
        if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
        return redis.call('PEXPIRE', KEYS[1], ARGV[2])"""
    BOUND = """
        local left = redis.call('PTTL', KEYS[1])
        if left == -1 or left > tonumber(ARGV[1]) then
            redis.call('PEXPIRE', KEYS[1], ARGV[1])
            return left
        end
        return false"""

    def __init__(self, url: str, prefix: str = "crontrader", mode: str = "live", timeout: float = 20.0) -> None:
        import redis  # here, not at the top: the SQLite store must not pay for it

        super().__init__(prefix, mode)
        self.backend_errors = redis.RedisError
        self.refused_errors = redis.AuthenticationError
        # Timeouts (storage.timeout): a cron run must fail, not hang, when the server is gone or hung.
        self.client = redis.Redis.from_url(url, decode_responses=True,
                                           socket_connect_timeout=timeout, socket_timeout=timeout)
        kw = self.client.connection_pool.connection_kwargs
        server = kw.get("path") or f"{kw.get('host')}:{kw.get('port')}"
        self.where = f"Redis at {server}/{kw.get('db', 0)}"
        self._scripts = {name: self.client.register_script(getattr(self, name))
                         for name in ("MOVE", "UNLOCK", "EXTEND", "BOUND")}
        self._registered = False   # _register_old_threads has run

    @_translated
    def _move(self, n: int, expected: str, expected_ref: str | None, fields: dict[str, str]) -> bool:
        args = [expected, expected_ref or "", n, *(x for item in fields.items() for x in item)]
        return bool(self._scripts["MOVE"](keys=[self._thread_key(n), self._numbers], args=args))

    @property
    def _numbers(self) -> str:
        """The set of the namespace's thread numbers: the agent finds its threads by their own
        keys, never by scanning a Redis database that may hold a million keys of others."""
        return self.namespace + "threads"

    def _register_old_threads(self) -> None:
        """Threads written before the set existed are found by a scan, once, and registered."""
        if self._registered:
            return
        if not self.client.exists(self._numbers):
            numbers = [key.rsplit(":", 1)[1] for key in
                       self.client.scan_iter(match=self.namespace + "thread:*", count=1000)]
            if numbers:
                self.client.sadd(self._numbers, *numbers)
        self._registered = True

    @_translated
    def ensure_threads(self, total: int) -> int:
        self._register_old_threads()
        return super().ensure_threads(total)

    @_translated
    def get_thread(self, n: int) -> Thread | None:
        fields = self.client.hgetall(self._thread_key(n))
        return Thread.from_fields(n, fields) if fields else None

    @_translated
    def threads(self) -> list[Thread]:
        self._register_old_threads()
        keys = [self._thread_key(int(n)) for n in self.client.smembers(self._numbers)]
        pipe = self.client.pipeline(transaction=False)
        for key in keys:
            pipe.hgetall(key)
        found = [Thread.from_fields(int(key.rsplit(":", 1)[1]), fields)
                 for key, fields in zip(keys, pipe.execute()) if fields]
        return sorted(found, key=lambda t: t.n)

    @_translated
    def put_thread(self, thread: Thread) -> None:
        pipe = self.client.pipeline(transaction=True)
        pipe.hset(self._thread_key(thread.n), mapping=thread.fields())
        pipe.sadd(self._numbers, thread.n)
        pipe.execute()

    @_translated
    def set_many(self, values: Mapping[str, Value]) -> None:
        if values:
            self.client.mset({self.namespace + k: _text(v) for k, v in values.items()})

    @_translated
    def get_value(self, key: str) -> str | None:
        return self.client.get(self.namespace + key)

    @_translated
    def keys(self, pattern: str = "*") -> list[str]:
        """As the interface says; the set of thread numbers is the store's own index, not a value."""
        start = len(self.namespace)
        return sorted(k[start:] for k in self.client.scan_iter(match=self.namespace + pattern, count=1000)
                      if k != self._numbers)

    def close(self) -> None:
        self.client.close()

    @_translated
    def _lock_acquire(self, key: str, token: str, ttl_ms: int) -> bool:
        return bool(self.client.set(key, token, nx=True, px=ttl_ms))

    @_translated
    def _lock_holder(self, key: str) -> str | None:
        return self.client.get(key)

    @_translated
    def _lock_release(self, key: str, token: str) -> bool:
        return bool(self._scripts["UNLOCK"](keys=[key], args=[token]))

    @_translated
    def _lock_extend(self, key: str, token: str, ttl_ms: int) -> bool:
        return bool(self._scripts["EXTEND"](keys=[key], args=[token, ttl_ms]))

    @_translated
    def _lock_bound(self, key: str, ttl_ms: int) -> int | None:
        left = self._scripts["BOUND"](keys=[key], args=[ttl_ms])
        return None if left is None else int(left)


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
                               (self.namespace + "thread:*",))
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
                                [(self.namespace + k, _text(v)) for k, v in values.items()])

    @_translated
    def get_value(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM state WHERE key = ? AND field = ''",
                              (self.namespace + key,)).fetchone()
        return row[0] if row else None

    @_translated
    def keys(self, pattern: str = "*") -> list[str]:
        rows = self.db.execute("SELECT DISTINCT key FROM state WHERE key GLOB ? ORDER BY key",
                               (self.namespace + pattern,))
        return [key[len(self.namespace):] for (key,) in rows]

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


def open_state_store(url: str, prefix: str = "crontrader", mode: str = "live", timeout: float = 20.0) -> StateStore:
    """redis://host:port/db (or rediss://) for Redis, sqlite:///path for the embedded store."""
    if url.startswith(("redis://", "rediss://")):
        return RedisStateStore(url, prefix, mode, timeout)
    if url.startswith("sqlite:///"):
        return SQLiteStateStore(url[len("sqlite:///"):], prefix, mode)
    scheme = url.split("://", 1)[0] + "://" if "://" in url else "no scheme"
    raise StorageError(f"state store URL must start with redis:// or sqlite:///, not {scheme}")
