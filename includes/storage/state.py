"""The agent's state store: threads, plain values and run locks.

Redis in production (state_redis.py), SQLite as the embedded default (state_sqlite.py),
behind one interface: StateStore, here, with the thread moves written once.
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
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
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
        self.key = store.key_prefix + f"lock:{name}"
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
    """One interface over Redis and SQLite; the thread moves are written once, here.

    What every method raises, once for all: StorageError when the server or the file
    fails, naming it (never a password); StorageRefused, its subclass, when waiting will
    not help (a refused login, a file that cannot be opened).  A thread move that finds
    the thread in another state, or under another order's ref, returns False: someone
    else moved it, which is no error.  lock() raises LockHeld while another run holds it.
    """

    backend_errors: type[Exception] | tuple[type[Exception], ...]
    refused_errors: type[Exception] | tuple[type[Exception], ...] = ()
    where: str

    def __init__(self, prefix: str, mode: str) -> None:
        """prefix: the agent's storage.namespace; every key starts with key_prefix, <prefix>:<mode>:
        (the one place the name is still 'namespace' is the config key, which users write)."""
        if mode not in MODES:
            raise ValueError(f"state store mode must be one of {MODES}, not {mode!r}")
        if not PREFIX_RE.match(prefix):
            raise ValueError(f"state store prefix {prefix!r} may hold only letters, digits, _ . -")
        self.key_prefix = f"{prefix}:{mode}:"

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
        """Names (without the key prefix) matching a glob pattern, for debugging."""

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
        return self.key_prefix + f"thread:{n}"


def _ref(order_ref: str) -> str:
    """An empty ref would match any thread's ref: refuse it."""
    if not order_ref:
        raise ValueError("an order ref must not be empty")
    return order_ref


def open_state_store(url: str, prefix: str = "crontrader", mode: str = "live", timeout: float = 20.0) -> StateStore:
    """redis://host:port/db (or rediss://) for Redis, sqlite:///path for the embedded store.
    Raises StorageError for another scheme, ValueError for a bad prefix or mode."""
    if url.startswith(("redis://", "rediss://")):
        from includes.storage.state_redis import RedisStateStore

        return RedisStateStore(url, prefix, mode, timeout)
    if url.startswith("sqlite:///"):
        from includes.storage.state_sqlite import SQLiteStateStore

        return SQLiteStateStore(url[len("sqlite:///"):], prefix, mode)
    scheme = url.split("://", 1)[0] + "://" if "://" in url else "no scheme"
    raise StorageError(f"state store URL must start with redis:// or sqlite:///, not {scheme}")
