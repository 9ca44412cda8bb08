"""The state store and the market DB in memory, for the backtest.

A backtest replays years of decisions in a second: a database round trip per
thread move would dominate it, and nothing of a replay must outlive the
process.  Both classes keep the semantics of their persistent twins (the
thread moves come from the StateStore ABC itself), and both take a `clock`, so
that the times they stamp are the replay's, not the wall clock's.
"""
from __future__ import annotations

import fnmatch
import threading
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable, Mapping, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from includes.errors import StorageError
from includes.model import DEFAULT_AGENT, OPEN
from includes.storage.journal import INTENT_STEP, Journal, Position, check_intent, check_result, is_fill, positions
from includes.storage.state import MISSING, StateStore, Thread, Value, _now_ms, _text
from includes.trends import price_at

if TYPE_CHECKING:
    from includes.model import Candle, Order
    from includes.platforms.replay import Series

Clock = Callable[[], float]


class MemoryStateStore(StateStore):
    """The SQLite store's (key, field, value) model in a dict; plain values have the field ''.

    Stores opened on the same `data` dict see each other, as two clients of one
    server do; a lock makes each move atomic between threads of one process.
    """
    where = "memory state store"

    def __init__(self, prefix: str = "crontrader", mode: str = "live", *,
                 data: dict[str, dict[str, str]] | None = None, clock: Clock | None = None) -> None:
        super().__init__(prefix, mode)
        self.data = {} if data is None else data
        self.clock = clock
        self._lock = threading.RLock()
        self._parsed: dict[str, tuple[dict[str, str], Thread]] = {}

    def _move(self, n: int, expected: str, expected_ref: str | None, fields: dict[str, str]) -> bool:
        key = self._thread_key(n)
        with self._lock:
            current = self.data.get(key, {})
            if current.get("state", MISSING) != expected:
                return False
            if expected_ref is not None and current.get("order_ref") != expected_ref:
                return False
            if self.clock is not None:   # a replayed move happens at the replay's time
                fields["updated"] = str(int(self.clock()))
            self.data[key] = current | fields
            return True

    def get_thread(self, n: int) -> Thread | None:
        key = self._thread_key(n)
        fields = self.data.get(key)
        return self._thread(key, n, fields) if fields else None

    def threads(self) -> list[Thread]:
        prefix = self.key_prefix + "thread:"
        found = sorted((int(key[len(prefix):]), key, fields) for key, fields in list(self.data.items())
                       if key.startswith(prefix))
        return [self._thread(key, n, fields) for n, key, fields in found]

    def _thread(self, key: str, n: int, fields: dict[str, str]) -> Thread:
        """Parsed once per write: every write puts a new fields dict, which the cache compares by identity."""
        cached = self._parsed.get(key)
        if cached is None or cached[0] is not fields:
            cached = self._parsed[key] = (fields, Thread.from_fields(n, fields))
        return cached[1]

    def put_thread(self, thread: Thread) -> None:
        with self._lock:
            key = self._thread_key(thread.n)
            self.data[key] = self.data.get(key, {}) | thread.fields()

    def set_many(self, values: Mapping[str, Value]) -> None:
        texts = {self.key_prefix + k: _text(v) for k, v in values.items()}   # all or nothing
        with self._lock:
            for key, text in texts.items():
                self.data[key] = {"": text}

    def get_value(self, key: str) -> str | None:
        return self.data.get(self.key_prefix + key, {}).get("")

    def keys(self, pattern: str = "*") -> list[str]:
        start = len(self.key_prefix)
        return sorted(key[start:] for key in list(self.data)
                      if key.startswith(self.key_prefix) and fnmatch.fnmatchcase(key[start:], pattern))

    def close(self) -> None:
        """Nothing to close: the data lives as long as the dict."""

    def _lock_holder(self, key: str) -> str | None:
        lock = self.data.get(key)
        return lock["token"] if lock and int(lock["expires"]) > _now_ms() else None

    def _lock_acquire(self, key: str, token: str, ttl_ms: int) -> bool:
        with self._lock:
            if self._lock_holder(key):
                return False
            self.data[key] = {"token": token, "expires": str(_now_ms() + ttl_ms)}
            return True

    def _lock_release(self, key: str, token: str) -> bool:
        with self._lock:
            if self._lock_holder(key) != token:
                return False
            del self.data[key]
            return True

    def _lock_extend(self, key: str, token: str, ttl_ms: int) -> bool:
        with self._lock:
            if self._lock_holder(key) != token:
                return False
            self.data[key] = {"token": token, "expires": str(_now_ms() + ttl_ms)}
            return True


class MemoryMarketDB(Journal):
    """The candles of a replay and an order journal, behind the MarketDB methods the agent calls.

    Candles come from `series` ((exchange, market, interval) -> Series) and only
    those closed by `clock()` are ever served: the candle still open at the
    replay's time would leak its close.  Journal rows are dicts with the
    columns of the `orders` table; rows stamped in the same second keep the
    order they were written in, as MarketDB's fractional stamps keep them.
    """

    def __init__(self, series: Mapping[tuple[str, str, int], Series] | None = None,
                 clock: Clock = time.time, where: str = "memory market DB") -> None:
        self.series = dict(series or {})
        self.clock = clock
        self.where = where
        self._rows: dict[str, dict[str, Any]] = {}
        self._seq: dict[str, int] = {}
        self._open: dict[str, dict[str, Any]] = {}
        self._fills: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
        self._last_intent: dict[tuple[str, str], float] = {}

    def close(self) -> None:
        """Nothing to close."""

    # --- candles, as of the clock --------------------------------------------------------
    def candles(self, exchange: str, market: str, interval: int, since: int | None = None,
                until: int | None = None) -> list[Candle]:
        """Candles opening in [since, until) and closed by now, oldest first."""
        series = self.series.get((exchange, market, interval))
        if series is None:
            return []
        lo = 0 if since is None else bisect_left(series.ts, since)
        hi = series.closed(self.clock())
        if until is not None:
            hi = min(hi, bisect_left(series.ts, until))
        return [series.candle(i) for i in range(lo, hi)]

    def closes_at(self, exchange: str, market: str, interval: int, times: Sequence[int],
                  since: int | None = None) -> list[Decimal | None]:
        """MarketDB.closes_at: the close known at each of `times`, of candles opening at or after `since`."""
        candles = self.last_closed(exchange, market, interval, times, 0 if since is None else since)
        return [price_at(candles, t, interval) for t in times]

    def last_closed(self, exchange: str, market: str, interval: int, times: Iterable[int],
                    since: int) -> list[Candle]:
        """For each of `times`, the last candle closed by then that opened at or after `since`.

        These are the only candles of candles(since=since) that trends.price_at
        can pick at those times: trends computed on them are the same, without
        building the thousands of candles of a 1-minute series.
        """
        series = self.series.get((exchange, market, interval))
        if series is None:
            return []
        lo, now = bisect_left(series.ts, since), self.clock()
        picks = {series.closed(min(t, now)) - 1 for t in times}
        return [series.candle(i) for i in sorted(picks) if i >= lo]

    # --- the order journal ---------------------------------------------------------------
    # Rows live in `_rows` in the order they were written.  A replay asks for the open
    # intents and positions at every run, so both are kept up to date as rows change
    # rather than found by scanning thousands of rows.
    def journal_intent(self, ref: str, *, mode: str, exchange: str, market: str, side: str,
                       thread: int | None = None, amount_quote: Decimal | None = None,
                       volume: Decimal | None = None, at: float | None = None, agent: str = DEFAULT_AGENT) -> None:
        check_intent(mode, side)
        if ref in self._rows:
            raise StorageError(f"{self.where}: order {ref!r} is already journaled")
        at = max(float(self.clock() if at is None else at), self._last_intent.get((agent, mode), 0.0) + INTENT_STEP)
        self._last_intent[(agent, mode)] = at
        row = self._rows[ref] = {
            "ref": ref, "agent": agent, "mode": mode, "exchange": exchange, "market": market, "side": side,
            "thread": thread, "intent_at": at,
            "amount_quote": amount_quote, "volume": volume, "status": "intent", "order_id": None,
            "filled": None, "price": None, "cost": None, "fee": None, "result_at": None, "error": None,
            "lookups": 0}
        self._seq[ref] = len(self._seq)
        self._open[ref] = row

    def journal_result(self, ref: str, status: str, *, order_id: str | None = None,
                       filled: Decimal | None = None, price: Decimal | None = None, cost: Decimal | None = None,
                       fee: Decimal | None = None, error: str | None = None, at: float | None = None) -> None:
        check_result(status)
        row = self._rows.get(ref)
        if row is None:
            raise StorageError(f"{self.where}: no journaled order {ref!r}")
        given = {"order_id": order_id, "filled": filled, "price": price, "cost": cost, "fee": fee, "error": error}
        row.update({k: v for k, v in given.items() if v is not None})
        row.update(status=status, result_at=float(self.clock() if at is None else at))
        if status in OPEN:
            self._open[ref] = row
        else:
            self._open.pop(ref, None)
        if row["thread"] is not None:
            self._place(row)

    def journal_looked_up(self, ref: str) -> int:
        self._rows[ref]["lookups"] += 1
        return self._rows[ref]["lookups"]

    def journal_order(self, order: Order, status: str | None = None) -> None:
        self.journal_result(order.ref, status or order.status, order_id=order.order_id or None,
                            filled=order.filled, price=order.price, cost=order.cost, fee=order.fee,
                            at=order.closed_at or None)

    def journal_row(self, ref: str) -> dict[str, Any] | None:
        row = self._rows.get(ref)
        return dict(row) if row is not None else None

    def journal(self, mode: str, since: int | None = None, agent: str = DEFAULT_AGENT) -> list[dict[str, Any]]:
        """The agent's orders in the mode, oldest intent first."""
        return [dict(r) for r in self._ordered(self._rows.values())
                if (r["agent"], r["mode"]) == (agent, mode) and (since is None or r["intent_at"] >= since)]

    def open_intents(self, mode: str, agent: str = DEFAULT_AGENT) -> list[dict[str, Any]]:
        """Orders whose fate must be asked of the exchange before anything else."""
        return [dict(r) for r in self._ordered(self._open.values()) if (r["agent"], r["mode"]) == (agent, mode)]

    def open_positions(self, mode: str, agent: str = DEFAULT_AGENT) -> dict[int, Position]:
        """Per thread, what its settled fills leave it holding (journal.positions)."""
        return positions(row for (a, ns, _), rows in self._fills.items() if (a, ns) == (agent, mode)
                         for row in self._ordered(rows))

    def _place(self, row: dict[str, Any]) -> None:
        """Keep, per thread, its fills from its latest filled buy on: all a position needs."""
        key = (row["agent"], row["mode"], row["thread"])
        fills = self._fills.setdefault(key, [])
        known = any(r is row for r in fills)
        if known and not is_fill(row):      # no longer a fill (rare): look at the thread's rows again
            rows = self._ordered(r for r in self._rows.values()
                                 if (r["agent"], r["mode"], r["thread"]) == key and is_fill(r))
            buys = [i for i, r in enumerate(rows) if r["side"] == "buy"]
            self._fills[key] = rows[buys[-1]:] if buys else []
        elif is_fill(row) and not known:
            self._fills[key] = [row] if row["side"] == "buy" else fills + [row]

    def _key(self, row: dict[str, Any]) -> tuple[float, int]:
        return row["intent_at"], self._seq[row["ref"]]

    def _ordered(self, rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        """By intent time, then in the order written (MarketDB's fractional stamps keep that order)."""
        return sorted(rows, key=self._key)

