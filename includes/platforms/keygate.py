"""One API key's private calls kept in order across processes, and across hosts.

Kraken refuses a nonce that is not larger than the last one it accepted for the
key, and counts the key's calls against a budget that decays over time (spec
2.1, 2.4).  Every cron job sharing a key therefore takes its nonce and its share
of the budget from one ledger, under one lock held until Kraken has answered, so
nonces reach Kraken in the order they were handed out:

- `FileLedger`: an flock on a small file in tmp/ (one host: the embedded default);
- `RedisLedger`: a lock and a hash in the Redis that the hosts already share for
  their state; the call budget decays on the Redis server's clock, and a nonce is
  never below the last one handed out, so hosts whose clocks are seconds apart
  never collide.

What it does not do: it cannot order the calls of another program using the same
key.  Give crontrader a key of its own.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import math
import os
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, Protocol

from includes.errors import StorageError, TemporaryError

log = logging.getLogger(__name__)

# REST call counter per API key (spec 2.4): tier -> (maximum, decay per second).
TIERS = {"starter": (15.0, 0.33), "intermediate": (20.0, 0.5), "pro": (20.0, 1.0)}


class Ledger(Protocol):
    """Where one key's last nonce and call counter live."""

    def held(self) -> AbstractContextManager[dict[str, Any]]:
        """The key's state ({"nonce", "counter", "at"}), held exclusively."""

    def save(self, state: dict[str, Any]) -> None:
        """Write `state` back, while it is held."""

    def clock(self) -> float:
        """Seconds on the clock the counter decays on (the same for every holder)."""


class KeyGate:
    """Hands out one key's nonces, in order, and waits for room in its call counter."""

    def __init__(self, ledger: Ledger, tier: str, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.time) -> None:
        """`clock`: this host's wall clock, the base of the nonces (a seam for skew tests)."""
        self.ledger = ledger
        self.maximum, self.decay = TIERS[tier]
        self.sleep = sleep
        self.clock = clock

    @contextmanager
    def call(self, cost: int) -> Iterator[int]:
        """Yields the nonce for one call, held until the call is answered."""
        with self.ledger.held() as state:
            now = self.ledger.clock()
            counter = self._decayed(state, now)
            if counter + cost > self.maximum:
                wait = (counter + cost - self.maximum) / self.decay
                log.debug("call counter at %.2f: waiting %.1f s", counter, wait)
                self.sleep(wait)
                now = self.ledger.clock()
                counter = self._decayed(state, now)
            nonce = max(int(self.clock() * 1000), int(state.get("nonce", 0)) + 1)
            # Recorded before the call: a process killed while waiting for Kraken's answer must
            # not leave a nonce Kraken has seen unrecorded (every later call would be refused).
            state.update(nonce=nonce, counter=counter + cost, at=now)
            self.ledger.save(state)
            try:
                yield nonce
            finally:
                # The exchange counted the call on arrival, some time before its answer: dating the
                # count at the answer never lets the wait for the next call come out short.
                state["at"] = self.ledger.clock()
                self.ledger.save(state)

    def _decayed(self, state: dict[str, Any], now: float) -> float:
        elapsed = max(0.0, now - float(state.get("at", 0)))
        return max(0.0, float(state.get("counter", 0)) - elapsed * self.decay)


class FileLedger:
    """The ledger in a small JSON file under an flock (processes of one host)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def clock(self) -> float:
        return time.time()

    @contextmanager
    def held(self) -> Iterator[dict[str, Any]]:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise StorageError(f"{self.path}: the API key's nonce file cannot be opened: {exc.strerror}; "
                               f"check paths.tmp") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield _checked(os.pread(fd, 4096, 0), self.path)
        finally:
            self._fd = None
            os.close(fd)

    def save(self, state: dict[str, Any]) -> None:
        assert self._fd is not None, "save() outside held()"
        try:
            os.pwrite(self._fd, json.dumps(state).encode().ljust(4096), 0)
        except OSError as exc:
            raise StorageError(f"{self.path}: the API key's nonce file cannot be written: {exc.strerror}") from None


def _checked(raw: bytes, path: Path) -> dict[str, Any]:
    """The nonce file's state, or a StorageError saying it is corrupted and how to mend it
    (never a ValueError, which the venue's reply parsing would take for a bad reply)."""
    try:
        state = json.loads(raw.rstrip(b" \0")) if raw.strip(b" \0") else {}
        if not isinstance(state, dict):
            raise ValueError("not a JSON object")
        for name in ("nonce", "counter", "at"):
            if name in state and (isinstance(state[name], bool) or not isinstance(state[name], (int, float))
                                  or not math.isfinite(state[name])):
                raise ValueError(f"{name} is not a number")
    except ValueError as exc:
        raise StorageError(f"{path}: the API key's nonce file is corrupted ({str(exc)[:80]}); delete it: "
                           f"the next call starts a new one from the clock") from None
    return state


class RedisLedger:
    """The ledger in the shared Redis: the hash `key` (crontrader:gate:<venue>-<key id>) and its lock.

    The lock expires after `hold_seconds` (longer than any call), so a holder that
    died frees it; a waiter gives up after `wait_seconds` with a TemporaryError.
    Redis is connected on first use: jobs that make no private call never pay for it.
    """

    RELEASE = """
        if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
        return redis.call('DEL', KEYS[1])"""

    def __init__(self, url: str, key: str, hold_seconds: float = 60, wait_seconds: float = 120,
                 sleep: Callable[[float], None] = time.sleep, server_timeout: float = 20) -> None:
        """`server_timeout`: storage.timeout, after which a hung Redis is an unreachable one."""
        self.url, self.key = url, key
        self.hold_ms, self.wait_seconds, self.sleep = int(hold_seconds * 1000), wait_seconds, sleep
        self.server_timeout = server_timeout
        self._client: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            import redis

            self._client = redis.Redis.from_url(self.url, decode_responses=True,
                                                socket_connect_timeout=self.server_timeout,
                                                socket_timeout=self.server_timeout)
        return self._client

    def clock(self) -> float:
        seconds, micros = self._redis(self.client.time)
        return seconds + micros / 1e6

    @contextmanager
    def held(self) -> Iterator[dict[str, Any]]:
        lock, token = f"{self.key}:lock", secrets.token_hex(8)
        deadline = time.monotonic() + self.wait_seconds
        while not self._redis(self.client.set, lock, token, nx=True, px=self.hold_ms):
            if time.monotonic() > deadline:
                raise TemporaryError(f"the API key's gate {lock} in Redis stayed held for "
                                     f"{self.wait_seconds:g} s", exchange="gate")
            self.sleep(0.01)
        try:
            yield dict(self._redis(self.client.hgetall, self.key))
        finally:
            self._redis(self.client.eval, self.RELEASE, 1, lock, token)

    def save(self, state: dict[str, Any]) -> None:
        self._redis(self.client.hset, self.key, mapping={k: str(v) for k, v in state.items()})

    def _redis(self, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        import redis

        try:
            return call(*args, **kwargs)
        except redis.RedisError as exc:
            raise StorageError(f"Redis, for the API key's nonce: {str(exc).splitlines()[0]}") from exc


def ledger_for(state_url: str, venue: str, key: str, tmp_dir: Path, timeout: float = 15,
               server_timeout: float = 20) -> Ledger:
    """The ledger of API key `key` shared by everything that shares the state store: in
    Redis when the state is there (hosts share it), else in tmp_dir/<venue>-<key id>.nonce.
    The key itself is never written anywhere: only a hash of it names the ledger.
    `timeout`: the longest an exchange call may take (the Redis lock outlives it);
    `server_timeout`: storage.timeout, for Redis itself."""
    key_id = f"{venue}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"
    if state_url.startswith(("redis://", "rediss://")):
        return RedisLedger(state_url, f"crontrader:gate:{key_id}", hold_seconds=timeout + 30,
                           wait_seconds=2 * timeout + 60, server_timeout=server_timeout)
    return FileLedger(tmp_dir / f"{key_id}.nonce")
