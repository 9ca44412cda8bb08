"""How every platform repeats a call and paces its requests: one loop, one schedule.

The venues differ in what a call is and which of its errors are worth a repeat;
they share how long to wait, what to log and when to give up.  Sleeps and clocks
are parameters so that tests run the schedule without waiting.

A Pacer spaces calls that no key accounts for (Kraken's public calls, every Bittrex
call); a key's private calls wait in its KeyGate (keygate.py) alone, whose ledger
is shared by every process using the key.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from includes.errors import ExchangeError, InvalidNonce, RateLimited, TemporaryError

T = TypeVar("T")
log = logging.getLogger(__name__)


def backoff(attempt: int, exc: Exception) -> float:
    """Seconds to wait before repeat number `attempt` + 1: exponential, three times
    longer after a rate limit."""
    return min(0.5 * 2 ** attempt, 8.0) * (3 if isinstance(exc, RateLimited) else 1)


def given_up(exc: ExchangeError) -> ExchangeError:
    """The error to raise when repeats did not help: a nonce still refused means another
    program signs with the same key (the gate keeps our own nonces in order)."""
    if isinstance(exc, InvalidNonce):
        return InvalidNonce(f"{exc}; {InvalidNonce.ADVICE}", exchange=exc.exchange, method=exc.method,
                            refused=True)
    return exc


def temporary(exc: ExchangeError) -> bool:
    """The default test of a repeat: network trouble, 5xx, busy, a rate limit, a stale nonce."""
    return isinstance(exc, TemporaryError)


def refused_at_the_door(exc: ExchangeError) -> bool:
    """The repeat test of an order: a refusal that proves nothing reached the book (a stale
    nonce, a rate limit), the one failure after which it is sent again, as the same ref."""
    return exc.refused and isinstance(exc, (InvalidNonce, RateLimited))


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Up to `retries` repeats of a call, `backoff` seconds apart, then the last error."""

    retries: int = 0
    sleep: Callable[[float], None] = time.sleep

    def run(self, call: Callable[[], T], *, retry: bool = True,
            repeat: Callable[[ExchangeError], bool] = temporary, what: str = "") -> T:
        """`call`'s result, the call repeated after an ExchangeError that `repeat` accepts.

        `retry` False: once (a call that is not safe to repeat).  `what` prefixes the
        "retry i/n" of the warning (e.g. which order is sent again).  Raises the first
        error `repeat` refuses as it came, or the last one once the repeats are spent
        (given_up: a stale nonce then names its likely cause).
        """
        retries = self.retries if retry else 0
        for attempt in range(retries + 1):
            try:
                return call()
            except ExchangeError as exc:
                if not repeat(exc):
                    raise
                if attempt == retries:
                    raise (given_up(exc) if attempt else exc) from None
                wait = backoff(attempt, exc)
                log.warning("%s; %sretry %d/%d in %.1f s", exc, what, attempt + 1, retries, wait)
                self.sleep(wait)
        raise AssertionError("unreachable")


class Pacer:
    """At most `calls_per_second` calls through `wait()`, for one platform object (a run
    has one per process): the venues throttle by IP or key, and a burst costs a ban."""

    def __init__(self, calls_per_second: float, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = 1.0 / calls_per_second
        self.sleep = sleep
        self.clock = clock
        self._last: float | None = None   # when the last call went out; None: none yet

    def wait(self) -> None:
        """Sleep until the next call may go out, and count it as gone."""
        if self._last is not None:
            wait = self._last + self.interval - self.clock()
            if wait > 0:
                self.sleep(wait)
        self._last = self.clock()
