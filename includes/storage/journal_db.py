"""The order journal's SQL: the `orders` table of the market DB, as MarketDB's methods.

A mixin rather than a class of its own: the journal shares the market DB's connection and
transactions (Database), and MarketDB is the one object the agent is given.  The row checks
and the position fold are journal.py's, shared with the backtest's MemoryMarketDB.
"""
from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from includes.errors import StorageError
from includes.model import DEFAULT_AGENT, EXCHANGE_FINAL, OPEN
from includes.storage.journal import (
    INTENT_STEP,
    FillTotals,
    Journal,
    Position,
    check_intent,
    check_result,
    positions,
    totals,
)
from includes.storage.schema import TABLES
from includes.storage.sql import Cursor, marks, names, quote

if TYPE_CHECKING:
    from includes.model import Order


def select(table: str) -> str:
    """SELECT of every column of `table`, in the table's order."""
    return f"SELECT {names(TABLES[table].columns)} FROM {quote(table)}"


class JournalTable(Journal):
    """The journal's methods on the market DB (MarketDB mixes them in); they raise StorageError
    as the market DB does, ValueError for a mode, side or status not known."""

    where: str
    _mysql: bool
    _driver: Any

    if TYPE_CHECKING:   # MarketDB's
        def _begin(self, write: bool = False) -> AbstractContextManager[Cursor]: ...
        def _all(self, sql: str, params: Any = ()) -> list[dict[str, Any]]: ...
        def _one(self, sql: str, params: Any = ()) -> Any: ...
        def _streamed(self, sql: str, params: Sequence[Any]) -> Iterator[tuple]: ...

    # --- the order journal -------------------------------------------------------------------
    def journal_intent(self, ref: str, *, mode: str, exchange: str, market: str, side: str,
                       thread: int | None = None, amount_quote: Decimal | None = None,
                       volume: Decimal | None = None, at: float | None = None, agent: str = DEFAULT_AGENT) -> None:
        """Record an order before it is sent; a second intent with the same ref is refused.
        `mode` is live or dry; `agent`, the storage.namespace of the agent sending it.
        `at` (the exchange's clock) is a floor: an intent is dated after the agent's last one,
        so the journal's order is the order of the intents whatever a clock did in between."""
        check_intent(mode, side)
        with self._begin(write=True) as db:
            last = db.value("SELECT MAX(`intent_at`) FROM `orders` WHERE `agent` = %s AND `mode` = %s",
                            (agent, mode))
            at = max(time.time() if at is None else at, float(last or 0) + INTENT_STEP)
            try:
                db.execute("INSERT INTO `orders` (`ref`, `agent`, `mode`, `exchange`, `market`, `side`, "
                           "`thread`, `intent_at`, `amount_quote`, `volume`, `status`) "
                           "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                           (ref, agent, mode, exchange, market, side, thread, at, amount_quote, volume,
                            "intent"))
            except self._driver.IntegrityError:
                raise StorageError(f"market DB {self.where}: order {ref!r} is already journaled") from None

    def journal_result(self, ref: str, status: str, *, order_id: str | None = None,
                       filled: Decimal | None = None, price: Decimal | None = None, cost: Decimal | None = None,
                       fee: Decimal | None = None, error: str | None = None, at: float | None = None) -> None:
        """Record what became of the order `ref`; fields left None keep their value."""
        check_result(status)
        given = {"order_id": order_id, "filled": filled, "price": price, "cost": cost, "fee": fee, "error": error}
        values = {"status": status, "result_at": time.time() if at is None else at,
                  **{k: v for k, v in given.items() if v is not None}}
        with self._begin(write=True) as db:
            found = db.execute(f"UPDATE `orders` SET {', '.join(f'{quote(c)} = %s' for c in values)} WHERE `ref` = %s",
                               (*values.values(), ref))
        if not found:
            raise StorageError(f"market DB {self.where}: no journaled order {ref!r}")

    def journal_looked_up(self, ref: str) -> int:
        """One more run found the order `ref` still open (or not visible yet); how many have."""
        with self._begin(write=True) as db:
            db.execute("UPDATE `orders` SET `lookups` = `lookups` + 1 WHERE `ref` = %s", (ref,))
            return int(db.value("SELECT `lookups` FROM `orders` WHERE `ref` = %s", (ref,)) or 0)

    def journal_order(self, order: Order, status: str | None = None) -> None:
        """Record the exchange's report of an order (its status unless `status` says otherwise)."""
        self.journal_result(order.ref, status or order.status, order_id=order.order_id or None,
                            filled=order.filled, price=order.price, cost=order.cost, fee=order.fee,
                            at=order.closed_at or None)

    def journal_row(self, ref: str) -> dict[str, Any] | None:
        rows = self._all(f"{select('orders')} WHERE `ref` = %s", (ref,))
        return rows[0] if rows else None

    def journal(self, mode: str, since: int | None = None, agent: str = DEFAULT_AGENT) -> list[dict[str, Any]]:
        """The agent's orders in the mode, oldest intent first."""
        sql = f"{select('orders')} WHERE `agent` = %s AND `mode` = %s"
        params: list[object] = [agent, mode]
        if since is not None:
            sql += " AND `intent_at` >= %s"
            params.append(since)
        return self._all(sql + " ORDER BY `intent_at`, `ref`", params)

    def settled(self, mode: str, agent: str = DEFAULT_AGENT, since: float | None = None) -> list[dict[str, Any]]:
        """The agent's orders that settled on the exchange (all that may have moved coins: not
        the failed ones, however many), intended at or after `since`, oldest intent first,
        through an index (orders_status, or orders_time for a recent `since`): a chart's window
        holds few fills among a great many failed attempts, and only the fills are kept."""
        sql = (f"{select('orders')} WHERE `agent` = %s AND `mode` = %s "
               f"AND `status` IN ({marks(len(EXCHANGE_FINAL))})")
        params: list[Any] = [agent, mode, *EXCHANGE_FINAL]
        if since is not None:
            sql += " AND `intent_at` >= %s"
            params.append(since)
        rows = self._all(sql, params)
        return sorted(rows, key=lambda r: (float(r["intent_at"]), r["ref"]))   # an ORDER BY: see open_intents

    def open_intents(self, mode: str, agent: str = DEFAULT_AGENT) -> list[dict[str, Any]]:
        """Orders whose fate must be asked of the exchange before anything else, oldest intent first.
        Sorted here: an ORDER BY would lead SQLite to orders_time, past every row of the agent."""
        rows = self._all(f"{select('orders')} WHERE `agent` = %s AND `mode` = %s "
                         f"AND `status` IN ({marks(len(OPEN))})", (agent, mode, *OPEN))
        return sorted(rows, key=lambda r: (float(r["intent_at"]), r["ref"]))

    def open_positions(self, mode: str, agent: str = DEFAULT_AGENT,
                       before: float | None = None) -> dict[int, Position]:
        """Per thread, what its settled fills leave it holding (journal.positions), from the
        rows that can matter only: its latest filled buy and the settled orders after it,
        each found through orders_thread, however many failed attempts the journal holds.
        `before`: what the orders intended before that time left (a chart's window opens there)."""
        filled = self._filled()
        bound, bounds = ("AND `intent_at` < %s ", (before,)) if before is not None else ("", ())
        # the threads one index probe each (a recursive CTE's correlated step is a scan on MariaDB)
        following = ("SELECT `thread` FROM `orders` WHERE `agent` = %s AND `mode` = %s AND `thread` > %s "
                     "ORDER BY `thread` LIMIT 1")
        last_buy = ("SELECT `intent_at` FROM `orders` WHERE `agent` = %s AND `mode` = %s AND `thread` = %s "
                    f"AND `status` = %s AND `side` = 'buy' AND {filled} {bound}ORDER BY `intent_at` DESC LIMIT 1")
        after = (f"{select('orders')} WHERE `agent` = %s AND `mode` = %s AND `thread` = %s "
                 f"AND `status` IN ({marks(len(EXCHANGE_FINAL))}) AND `side` IN ('buy', 'sell') "
                 f"AND `intent_at` >= %s {bound}ORDER BY `intent_at`, `ref`")
        rows: list[dict[str, Any]] = []
        with self._begin() as db:
            n = -1
            while (n := db.value(following, (agent, mode, n))) is not None:
                # failed rows are never fills ("nothing placed"): they are not read at all
                starts = [db.value(last_buy, (agent, mode, n, status, *bounds)) for status in EXCHANGE_FINAL]
                start = max((float(at) for at in starts if at is not None), default=None)
                if start is not None:
                    rows += db.query(after, (agent, mode, n, *EXCHANGE_FINAL, start, *bounds))
        rows.sort(key=lambda r: (float(r["intent_at"]), r["ref"]))
        return positions(rows)

    def _filled(self) -> str:
        return "`filled` <> 0" if self._mysql else "CAST(`filled` AS REAL) <> 0"

    def fill_totals(self, mode: str, agent: str = DEFAULT_AGENT, before: float | None = None) -> FillTotals:
        """What the agent's fills intended before `before` add up to (journal.totals: the positions
        fold over them, as a running total): the settled rows only, through orders_status, never the
        failed attempts, and a row at a time into the fold, none of them kept."""
        columns = ("ref", "market", "side", "thread", "status", "intent_at", "filled", "price", "cost", "fee",
                   "result_at")
        sql = (f"SELECT {names(columns)} FROM `orders` WHERE `agent` = %s AND `mode` = %s "
               f"AND `status` IN ({marks(len(EXCHANGE_FINAL))}) AND {self._filled()}")
        params: list[Any] = [agent, mode, *EXCHANGE_FINAL]
        if before is not None:    # + 0: not by orders_time, which would read every failed attempt before it
            sql += " AND `intent_at` + 0 < %s"
            params.append(before)
        # + 0: sorted by the server after orders_status found the fills, not read down orders_time
        rows = self._streamed(sql + " ORDER BY `intent_at` + 0, `ref`", params)
        return totals(dict(zip(columns, row, strict=True)) for row in rows)

    def first_intent(self, mode: str, agent: str = DEFAULT_AGENT) -> float | None:
        """When the agent's first order in the mode was intended (one seek down orders_time)."""
        at = self._one("SELECT MIN(`intent_at`) FROM `orders` WHERE `agent` = %s AND `mode` = %s",
                       (agent, mode))
        return None if at is None else float(at)

    def latest_fills(self, mode: str, agent: str = DEFAULT_AGENT, limit: int = 20) -> list[dict[str, Any]]:
        """The agent's `limit` latest fills (settled orders that moved coins), newest intent first,
        down orders_time from its end: the recent rows only, whatever the journal's length."""
        return self._all(f"{select('orders')} WHERE `agent` = %s AND `mode` = %s "
                         f"AND `status` IN ({marks(len(EXCHANGE_FINAL))}) AND {self._filled()} "
                         f"ORDER BY `intent_at` DESC, `ref` DESC LIMIT {int(limit)}",
                         (agent, mode, *EXCHANGE_FINAL))

