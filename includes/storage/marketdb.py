"""The market DB: markets, candles, tickers, global metrics, the backup's reads, and the order journal.

Plain DB-API through the dialect layer (sql.py): PyMySQL on MySQL/MariaDB in production,
the standard library's sqlite3 embedded.  The tables and their migrations are schema.py's;
the order journal's SQL is journal_db.py's.

Every write is a batched, idempotent upsert in one transaction, so a cycle can be written
again (spool.py replays them) without duplicates.  Amounts are Decimal in and Decimal out;
compare them in Python, not in SQL (SQLite holds them as text).
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from includes.errors import StorageError
from includes.model import Candle, Market
from includes.storage.journal_db import JournalTable
from includes.storage.schema import AGED, AMOUNTS, ARCHIVED, RENAMED, RULES, SCHEMA_VERSION, TABLES, upgrade
from includes.storage.sql import (
    BATCH,
    Cursor,
    Database,
    DatabaseUnreachable,
    Table,
    batched,
    close_quietly,
    marks,
    names,
    quote,
    trace,
)

if TYPE_CHECKING:
    from includes.model import GlobalMetrics, Ticker

__all__ = ["BATCH", "RULES", "SCHEMA_VERSION", "TABLES", "ARCHIVED", "Cursor", "DatabaseUnreachable", "MarketDB",
           "Table", "table_layout"]

DELETE_BATCH = 5_000                # 4 parameters a row: SQLite takes at most 32,766
DELISTED = "delisted"               # status of a market missing from the venue's listing


class MarketDB(Database, JournalTable):
    """The market DB at `url` (sqlite:///PATH or mysql+pymysql://USER:PASS@HOST/DB); its
    schema is created or migrated on first use.  Database failures raise StorageError:
    DatabaseUnreachable when the server is gone, StorageRefused when it refuses us."""

    amounts = AMOUNTS

    def __init__(self, url: str, timeout: float = 20.0) -> None:
        """timeout: seconds a MariaDB connect, read or write may take (storage.timeout)."""
        super().__init__(url, timeout)
        self._schema_ready = False

    # --- schema ------------------------------------------------------------------------------
    @contextmanager
    def _begin(self, write: bool = False) -> Iterator[Cursor]:
        if not self._schema_ready:
            self.ensure_schema()
        with self._transaction(write) as db:
            yield db

    def ensure_schema(self) -> None:
        """Create the tables on first use, or migrate an older schema to SCHEMA_VERSION."""
        if self.schema_version() != SCHEMA_VERSION:  # the usual case costs this check only, and no lock
            with self._transaction(write=True) as db:
                lock = "CONCAT('crontrader:', DATABASE())"
                if self._mysql:  # two cron jobs may start on a new database at the same minute
                    db.execute(f"SELECT GET_LOCK({lock}, 60)")
                try:
                    self._upgrade(db)
                finally:
                    if self._mysql:
                        db.execute(f"SELECT RELEASE_LOCK({lock})")
        self._schema_ready = True

    def _upgrade(self, db: Cursor) -> None:
        upgrade(db, self._version(db), self.table_exists(db, "migrations"), self.where)

    def _version(self, db: Cursor) -> int | None:
        if not self.table_exists(db, "schema_version"):
            return None
        return db.value("SELECT `version` FROM `schema_version`")

    def schema_version(self) -> int | None:
        with self._transaction() as db:
            return self._version(db)

    # --- writes ----------------------------------------------------------------------------
    def _upsert_sql(self, table: Table, columns: Sequence[str], keep: Sequence[str] = ()) -> tuple[str, str, str]:
        """The upsert of `columns` of `table` as (INSERT ... VALUES, one row's placeholders, the
        clause that updates every other column but those in `keep` of a row whose key exists)."""
        head = f"INSERT INTO {quote(table.name)} ({names(columns)}) VALUES "
        row = f"({marks(len(columns))})"
        changed = [c for c in columns if c not in table.key and c not in keep]
        if self._mysql:
            tail = " ON DUPLICATE KEY UPDATE " + ", ".join(f"{quote(c)} = VALUES({quote(c)})" for c in changed)
        else:
            tail = (f" ON CONFLICT ({names(table.key)}) DO UPDATE SET "
                    + ", ".join(f"{quote(c)} = excluded.{quote(c)}" for c in changed))
        return head, row, tail

    def _upsert(self, db: Cursor, table: Table, rows: Iterable[Mapping[str, Any]],
                columns: Sequence[str] | None = None, keep: Sequence[str] = ()) -> None:
        """Insert `rows` (of `columns`, by default all); a row whose key exists updates every
        other column but those in `keep`."""
        columns = table.columns if columns is None else columns
        head, row, tail = self._upsert_sql(table, columns, keep)
        for batch in batched(rows, BATCH):
            db.executemany(head + row + tail, [tuple(r[c] for c in columns) for r in batch])

    def upsert_markets(self, exchange: str, markets: Iterable[Market],
                       seen_at: int) -> list[tuple[str, str | None, str]]:
        """Record the venue's full listing; returns the status changes as (market, old, new).

        `old` is None for a market seen for the first time.  A known market missing
        from the listing becomes unavailable with status "delisted".
        """
        with self._begin(write=True) as db:
            known = {r["market"]: r for r in db.query(
                "SELECT `market`, `status`, `status_changed` FROM `markets` WHERE `exchange` = %s", (exchange,))}
            rows, changes = [], []
            for m in markets:
                old = known.pop(m.symbol, None)
                changed = old is None or old["status"] != m.status
                if changed:
                    changes.append((m.symbol, old["status"] if old else None, m.status))
                rows.append({"exchange": exchange, "market": m.symbol, "base": m.base, "quote": m.quote,
                             "status": m.status, "available": m.available, "first_seen": seen_at,
                             "last_seen": seen_at,
                             "status_changed": seen_at if changed or old is None else old["status_changed"],
                             "price_decimals": m.price_decimals, "volume_decimals": m.volume_decimals,
                             "cost_decimals": m.cost_decimals, "min_volume": m.min_volume,
                             "min_cost": m.min_cost})
            gone = [market for market, old in known.items() if old["status"] != DELISTED]
            if gone:
                db.execute("UPDATE `markets` SET `status` = %s, `available` = %s, `status_changed` = %s "
                           f"WHERE `exchange` = %s AND `market` IN ({marks(len(gone))})",
                           (DELISTED, False, seen_at, exchange, *gone))
                changes += [(market, known[market]["status"], DELISTED) for market in gone]
            self._upsert(db, TABLES["markets"], rows, keep=("first_seen",))
        return changes

    def upsert_candles(self, exchange: str, market: str, interval: int, candles: Iterable[Candle]) -> None:
        """Write candles of `interval` minutes; a candle already stored (still open then) is overwritten."""
        with self._begin(write=True) as db:
            if self._mysql:
                self._pymysql_candles(db, exchange, market, interval, candles)
            else:
                self._upsert(db, TABLES["candles"], (
                    {"exchange": exchange, "market": market, "interval": interval, "ts": c.ts, "open": c.open,
                     "high": c.high, "low": c.low, "close": c.close, "volume": c.volume} for c in candles))

    def _pymysql_candles(self, db: Cursor, exchange: str, market: str, interval: int,
                         candles: Iterable[Candle]) -> None:
        """The hot path of ingestion and backfills, on MySQL: the same upsert, faster.

        PyMySQL's executemany builds the same statements but escapes each value through
        generic code, which tops out near 60,000 rows/s on a 2-core machine.  Formatting
        the ints and Decimals directly, and sending each statement from a second thread
        while the next one is built, reaches the server's own speed (bench/ingest.py).
        The names are escaped by the driver (cursor.mogrify).
        """
        from concurrent.futures import ThreadPoolExecutor

        table = TABLES["candles"]
        head, _, tail = self._upsert_sql(table, table.columns)
        key = db.cursor.mogrify("(%s, %s, %s, ", (exchange, market, interval))
        with ThreadPoolExecutor(1) as sender:
            sent = None
            for batch in batched(candles, BATCH):
                rows = ", ".join(f"{key}{c.ts:d}, {c.open:f}, {c.high:f}, {c.low:f}, {c.close:f}, {c.volume:f})"
                                 for c in batch)
                if sent:
                    sent.result()
                sent = sender.submit(_send, db.cursor, head + rows + tail, f"{head}({len(batch)} rows){tail}")
            if sent:
                sent.result()

    def insert_tickers(self, exchange: str, tickers: Iterable[Ticker], ts: int | None = None) -> None:
        """Write a snapshot of tickers, all stamped `ts` (by default each ticker's own time)."""
        with self._begin(write=True) as db:
            self._upsert(db, TABLES["tickers"], (
                {"exchange": exchange, "market": t.market, "ts": t.ts if ts is None else ts, "last": t.last,
                 "bid": t.bid, "ask": t.ask, "volume_24h": t.volume_24h, "vwap_24h": t.vwap_24h,
                 "high_24h": t.high_24h, "low_24h": t.low_24h} for t in tickers))

    def insert_global_metrics(self, source: str, metrics: Iterable[GlobalMetrics]) -> None:
        with self._begin(write=True) as db:
            self._upsert(db, TABLES["global_metrics"], (
                {"source": source, "ts": m.ts, "quote": m.quote, "total_market_cap": m.total_market_cap,
                 "total_volume_24h": m.total_volume_24h, "btc_dominance": m.btc_dominance,
                 "active_cryptocurrencies": m.active_cryptocurrencies} for m in metrics))

    # --- reads -----------------------------------------------------------------------------
    def _all(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        with self._begin() as db:
            return db.query(sql, params)

    def _one(self, sql: str, params: Sequence[Any] = ()) -> Any:
        with self._begin() as db:
            return db.value(sql, params)

    def markets(self, exchange: str) -> list[dict[str, Any]]:
        return self._all(f"{select('markets')} WHERE `exchange` = %s ORDER BY `market`", (exchange,))

    def market_rules(self, exchange: str) -> dict[str, Market]:
        """The markets of `exchange` with the order rules last listed, by symbol; a market listed
        before v6 and not since has none and is left out."""
        return {r["market"]: Market(symbol=r["market"], base=r["base"], quote=r["quote"],
                                    exchange_symbol=r["market"], status=r["status"], available=r["available"],
                                    price_decimals=r["price_decimals"], volume_decimals=r["volume_decimals"],
                                    min_volume=r["min_volume"], min_cost=r["min_cost"],
                                    cost_decimals=r["cost_decimals"])
                for r in self.markets(exchange) if r["price_decimals"] is not None}

    def available_markets(self, exchange: str) -> list[str]:
        return [r["market"] for r in self._all(
            "SELECT `market` FROM `markets` WHERE `exchange` = %s AND `available` ORDER BY `market`", (exchange,))]

    def last_candle_ts(self, exchange: str, market: str, interval: int) -> int | None:
        return self._one("SELECT MAX(`ts`) FROM `candles` WHERE `exchange` = %s AND `market` = %s "
                         "AND `interval` = %s", (exchange, market, interval))

    def last_candle_ts_by_market(self, exchange: str, interval: int, markets: Iterable[str]) -> dict[str, int]:
        """The newest candle of each of `markets` that has one: one primary-key probe per market
        (a GROUP BY over the exchange read every candle of a year, 5 M rows, each cycle)."""
        probe = ("SELECT %s, MAX(`ts`) FROM `candles` WHERE `exchange` = %s AND `market` = %s "
                 "AND `interval` = %s")
        found: dict[str, int] = {}
        with self._begin() as db:
            for chunk in batched(markets, 100):
                rows = db.tuples(" UNION ALL ".join([probe] * len(chunk)),
                                 [p for m in chunk for p in (m, exchange, m, interval)])
                found.update((m, int(ts)) for m, ts in rows if ts is not None)
        return found

    def candles(self, exchange: str, market: str, interval: int, since: int | None = None,
                until: int | None = None) -> list[Candle]:
        """Candles opening in [since, until), oldest first."""
        sql = ("SELECT `ts`, `open`, `high`, `low`, `close`, `volume` FROM `candles` "
               "WHERE `exchange` = %s AND `market` = %s AND `interval` = %s")
        params: list[Any] = [exchange, market, interval]
        if since is not None:
            sql += " AND `ts` >= %s"
            params.append(since)
        if until is not None:
            sql += " AND `ts` < %s"
            params.append(until)
        with self._begin() as db:
            return [Candle(*row) for row in db.tuples(sql + " ORDER BY `ts`", params)]

    def close_at(self, exchange: str, market: str, interval: int, at: int) -> Decimal | None:
        """Close of the last candle that had closed by `at` (as trends.price_at); None when none had."""
        return self.closes_at(exchange, market, interval, [at])[0]

    def closes_at(self, exchange: str, market: str, interval: int, times: Sequence[int],
                  since: int | None = None) -> list[Decimal | None]:
        """close_at each of `times`, among the candles opening at or after `since`, in one query:
        the agent's trends need six prices, not three days of candles."""
        if not times:
            return []
        one = ("(SELECT `close` FROM `candles` WHERE `exchange` = %s AND `market` = %s AND `interval` = %s "
               "AND `ts` >= %s AND `ts` <= %s ORDER BY `ts` DESC LIMIT 1) AS `close`")
        first = 0 if since is None else since
        params = [p for at in times for p in (exchange, market, interval, first, at - interval * 60)]
        with self._begin() as db:
            return list(db.tuples("SELECT " + ", ".join([one] * len(times)), params)[0])

    def tickers(self, exchange: str, market: str, since: int | None = None) -> list[dict[str, Any]]:
        """The market's ticker snapshots, oldest first."""
        sql = f"{select('tickers')} WHERE `exchange` = %s AND `market` = %s"
        params: list[object] = [exchange, market]
        if since is not None:
            sql += " AND `ts` >= %s"
            params.append(since)
        return self._all(sql + " ORDER BY `ts`", params)

    def last_ticker(self, exchange: str, market: str) -> dict[str, Any] | None:
        """The market's latest ticker snapshot (one seek down the primary key), or None."""
        rows = self._all(f"{select('tickers')} WHERE `exchange` = %s AND `market` = %s ORDER BY `ts` DESC LIMIT 1",
                         (exchange, market))
        return rows[0] if rows else None

    def global_metrics(self, since: int | None = None) -> list[dict[str, Any]]:
        """Every source's global metrics, oldest first."""
        sql, params = select("global_metrics"), []
        if since is not None:
            sql += " WHERE `ts` >= %s"
            params.append(since)
        return self._all(sql + " ORDER BY `ts`, `source`", params)

    # --- trimming, for the backup job -----------------------------------------------------
    def _delete_keys(self, db: Cursor, table: Table, keys: Sequence[Sequence[Any]]) -> int:
        """Delete the rows with these primary keys.  MariaDB reads a row-value IN list by key
        ranges; SQLite reads IN (VALUES ...) by a scan of the table, which made trimming a year
        super-linear, so there each key is a statement of its own (in-process: no round trip)."""
        if self._mysql:
            rows = ", ".join([f"({marks(len(table.key))})"] * len(keys))
            return db.execute(f"DELETE FROM {quote(table.name)} WHERE ({names(table.key)}) IN ({rows})",
                              [v for key in keys for v in key])
        where = " AND ".join(f"{quote(c)} = %s" for c in table.key)
        db.executemany(f"DELETE FROM {quote(table.name)} WHERE {where}", keys)
        return db.cursor.rowcount

    def delete_older_than(self, table: str, ts: int, batch: int = DELETE_BATCH) -> int:
        """Delete rows older than `ts`, `batch` rows per transaction; returns how many."""
        if table not in AGED:
            raise ValueError(f"{table!r} is not one of {', '.join(AGED)}")
        t = TABLES[table]
        deleted = 0
        while True:
            with self._begin(write=True) as db:
                keys = db.tuples(f"SELECT {names(t.key)} FROM {quote(table)} WHERE {quote(AGED[table])} < %s LIMIT %s",
                                 (ts, batch))
                if keys:
                    self._delete_keys(db, t, keys)
            deleted += len(keys)
            if len(keys) < batch:
                return deleted

    # --- archiving, for the backup job ----------------------------------------------------
    def _archived(self, table: str, before: int) -> list[tuple[str, tuple[int, ...]]]:
        """WHERE clauses and parameters of the rows the backup takes, as disjoint parts: older
        than `before`, and all rows of the markets that have been unavailable since before `before`.
        Apart, each part has an index to use (candles_ts, the primary key); joined by OR, neither."""
        if table not in ARCHIVED:
            raise ValueError(f"{table!r} is not one of {', '.join(ARCHIVED)}")
        gone = "NOT `available` AND `status_changed` < %s"
        if table == "markets":
            return [(gone, (before,))]
        if "market" in TABLES[table].types:
            # the markets gone first (a few, if any), then each one's rows by the primary key: an
            # IN (SELECT ...) led MariaDB down candles_ts through every row newer than `before`
            markets = self._all(f"SELECT `exchange`, `market` FROM `markets` WHERE {gone} "
                                "ORDER BY `exchange`, `market`", (before,))
            return [("`ts` < %s", (before,))] + [
                ("`exchange` = %s AND `market` = %s AND `ts` >= %s", (m["exchange"], m["market"], before))
                for m in markets]
        return [("`ts` < %s", (before,))]

    def archived_days(self, table: str, before: int) -> dict[int, int]:
        """Rows the backup would take from `table`, counted by UTC day (days since 1970-01-01)."""
        parts = self._archived(table, before)
        day = f"{quote(ARCHIVED[table])} {'DIV' if self._mysql else '/'} 86400"   # integer division
        days: dict[int, int] = {}
        with self._begin() as db:
            for where, params in parts:
                for d, n in db.tuples(f"SELECT {day} AS `day`, COUNT(*) AS `n` FROM {quote(table)} WHERE {where} "
                                      "GROUP BY `day`", params):
                    days[int(d)] = days.get(int(d), 0) + n
        return days

    def archived_rows(self, table: str, before: int) -> Iterator[tuple]:
        """Those rows, oldest first, in table column order; streamed, as a month of candles
        may not fit in a Pi's memory.

        On a connection of their own: the caller may use this MarketDB while it iterates,
        which a half-read unbuffered MySQL result would refuse.
        """
        parts = self._archived(table, before)
        where, params = " OR ".join(f"({w})" for w, _ in parts), [p for _, ps in parts for p in ps]
        sql = (f"{select(table)} WHERE {where} "
               f"ORDER BY {quote(ARCHIVED[table])}, {names(TABLES[table].key)}")
        yield from self._streamed(sql, params)

    def _streamed(self, sql: str, params: Sequence[Any]) -> Iterator[tuple]:
        """The rows of one query, a batch at a time, never all of them in memory (an unbuffered
        cursor on MySQL), on a connection of their own."""
        if not self._schema_ready:
            self.ensure_schema()
        conn = self._open()
        try:
            db = self._cursor(conn.cursor(self._driver.cursors.SSCursor) if self._mysql else conn.cursor())
            db.execute(sql, params)
            yield from db.fetch()
        except self._driver.Error as exc:
            raise self._failure(exc) from exc
        finally:
            close_quietly(conn)

    def delete_keys(self, table: str, keys: Iterable[Sequence[Any]], batch: int = DELETE_BATCH) -> int:
        """Delete the rows of `table` with these primary keys, `batch` per transaction; how many went."""
        if table not in ARCHIVED:
            raise ValueError(f"{table!r} is not one of {', '.join(ARCHIVED)}")
        t = TABLES[table]
        deleted = 0
        for chunk in batched(keys, batch):
            with self._begin(write=True) as db:
                deleted += self._delete_keys(db, t, chunk)
        return deleted

    def restore_rows(self, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
        """Put archived rows back in one transaction; upserts, so restoring twice changes nothing.
        The journal too: the trading record's backup (includes/record.py) brings it back.  Columns
        renamed since the archive was written (RENAMED) are read by their new names."""
        if table not in (*ARCHIVED, "orders"):
            raise ValueError(f"{table!r} is not one of {', '.join(ARCHIVED)}, orders")
        t = TABLES[table]
        columns = [RENAMED.get(table, {}).get(c, c) for c in columns]
        unknown = [c for c in columns if c not in t.types]
        if unknown:
            raise StorageError(f"market DB {self.where}: table {table} has no column {', '.join(unknown)}")
        amounts = t.amounts
        with self._begin(write=True) as db:
            self._upsert(db, t, ({c: Decimal(v) if c in amounts and v is not None else v
                                  for c, v in zip(columns, row, strict=True)} for row in rows), columns=columns)


def _send(cursor: Any, sql: str, shown: str) -> None:
    """One statement with its values in it (no parameters: sent as is), traced as `shown`."""
    with trace(shown):
        cursor.execute(sql)


def table_layout(table: str) -> tuple[list[str], list[str]]:
    """(columns, primary key columns) of `table`, in the table's order."""
    t = TABLES[table]
    return t.columns, list(t.key)


def select(table: str) -> str:
    """SELECT of every column of `table`, in the table's order (as archives and callers expect)."""
    return f"SELECT {names(TABLES[table].columns)} FROM {quote(table)}"
