"""The market database: markets, candles, tickers, global metrics and the order journal.

SQLAlchemy Core only (the ORM would add some 80 ms and 6 MB to every cron
start), on MySQL/MariaDB in production and SQLite embedded.  One `candles` table holds
every market, keyed by (exchange, market, interval, ts): a new market is a row
in `markets`, never a new table.  Every write is a batched, idempotent upsert in
one transaction, so a cycle can be written again (spool.py replays them)
without duplicates.

Amounts are Decimal in and Decimal out: DECIMAL(30, 12) on MySQL, plain decimal
text on SQLite, whose NUMERIC would keep 15 digits only.  So compare amounts in
Python, not in SQL.  Times are Unix seconds (fractional in the order journal).
"""
from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from decimal import Decimal
from itertools import islice
from typing import TYPE_CHECKING, Any

from sqlalchemy import (BigInteger, Boolean, Column, Double, Integer, MetaData, Numeric, PrimaryKeyConstraint,
                        String, Table, Text, create_engine, delete, event, func, insert, inspect, select,
                        text, tuple_, update)
from sqlalchemy.dialects import mysql, sqlite
from sqlalchemy.engine import Connection, RowMapping
from sqlalchemy.exc import DBAPIError, IntegrityError, SQLAlchemyError
from sqlalchemy.types import TypeDecorator

from includes.errors import StorageError
from includes.storage import FINAL, NAMESPACES, OPEN, SIDES
from includes.platforms.base import Candle

if TYPE_CHECKING:
    from includes.coinmarketcap import GlobalMetrics
    from includes.platforms.base import Market, Order, Ticker

BATCH = 10_000                      # rows per statement: ~1.2 MB of SQL, below any max_allowed_packet
DELETE_BATCH = 5_000                # 4 parameters a row: SQLite takes at most 32,766
DELISTED = "delisted"               # status of a market missing from the venue's listing


class DatabaseUnreachable(StorageError):
    """The server could not be reached or dropped the connection: the rows may be spooled."""


class Amount(TypeDecorator):
    """An exact decimal: 18 digits before the point (market caps), 12 after (tiny prices)."""

    impl = Numeric(30, 12)
    cache_ok = True

    def load_dialect_impl(self, dialect: Any) -> Any:
        return dialect.type_descriptor(String(40) if dialect.name == "sqlite" else Numeric(30, 12))

    def process_bind_param(self, value: Decimal | None, dialect: Any) -> Any:
        return format(value, "f") if value is not None and dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Any) -> Decimal | None:
        return None if value is None else Decimal(value)


def _name(length: int) -> Any:
    """Exchange, market and currency names: ASCII and case-sensitive on MySQL, whose utf8mb4
    keys would be larger and slower to compare."""
    return String(length).with_variant(mysql.VARCHAR(length, charset="ascii", collation="ascii_bin"),
                                       "mysql", "mariadb")


metadata = MetaData()

market_table = Table(
    "markets", metadata,
    Column("exchange", _name(32), primary_key=True),
    Column("market", _name(40), primary_key=True),          # BASE/QUOTE
    Column("base", _name(16), nullable=False),
    Column("quote", _name(16), nullable=False),
    Column("status", String(32), nullable=False),            # the venue's own word
    Column("available", Boolean, nullable=False),            # accepts orders now
    Column("first_seen", BigInteger, nullable=False),
    Column("last_seen", BigInteger, nullable=False),
    Column("status_changed", BigInteger, nullable=False),
)

candle_table = Table(
    "candles", metadata,
    Column("exchange", _name(32), primary_key=True),
    Column("market", _name(40), primary_key=True),
    Column("interval", Integer, primary_key=True, autoincrement=False),   # minutes
    Column("ts", BigInteger, primary_key=True, autoincrement=False),      # open time
    *(Column(name, Amount, nullable=False) for name in ("open", "high", "low", "close", "volume")),
)

ticker_table = Table(
    "tickers", metadata,
    Column("exchange", _name(32), primary_key=True),
    Column("market", _name(40), primary_key=True),
    Column("ts", BigInteger, primary_key=True, autoincrement=False),
    *(Column(name, Amount, nullable=False) for name in ("last", "bid", "ask", "volume_24h")),
    *(Column(name, Amount) for name in ("vwap_24h", "high_24h", "low_24h")),
)

metric_table = Table(
    "global_metrics", metadata,
    Column("ts", BigInteger, nullable=False),
    Column("source", _name(32), nullable=False),
    *(Column(name, Amount, nullable=False) for name in ("total_market_cap", "total_volume_24h",
                                                         "btc_dominance")),
    Column("active_cryptocurrencies", Integer, nullable=False),
    Column("quote", _name(16), nullable=False),
    PrimaryKeyConstraint("source", "ts"),
)

order_table = Table(
    "orders", metadata,
    Column("ref", String(64), primary_key=True),             # our unique client reference
    Column("namespace", String(8), nullable=False),          # live | dry
    Column("exchange", _name(32), nullable=False),
    Column("market", _name(40), nullable=False),
    Column("side", String(4), nullable=False),
    Column("thread", Integer),
    Column("intent_at", Double, nullable=False),             # fractional seconds: orders keep their order
    Column("amount_quote", Amount),
    Column("volume", Amount),
    Column("status", String(16), nullable=False),
    Column("order_id", String(64)),
    *(Column(name, Amount) for name in ("filled", "price", "cost", "fee")),
    Column("result_at", Double),
    Column("error", Text),
)

version_table = Table("schema_version", metadata, Column("version", Integer, nullable=False))


# --- schema versions ---------------------------------------------------------------------
# A list of functions rather than alembic: alembic would add its import, its ini file and
# its env.py to every cron start on a Pi, for a few ALTER TABLEs a year.  The version
# check costs one query.  MIGRATIONS[n - 1] takes a database from version n to n + 1;
# append to the list, never edit an entry.

def _v2_status_changed(conn: Connection) -> None:
    """v2 dates status changes; a market's known status dates from its first sighting."""
    conn.execute(text("ALTER TABLE markets ADD COLUMN status_changed BIGINT NOT NULL DEFAULT 0"))
    conn.execute(update(market_table).values(status_changed=market_table.c.first_seen))


MIGRATIONS = [_v2_status_changed]
SCHEMA_VERSION = len(MIGRATIONS) + 1

# Time column of the tables the backup job trims; never the order journal (orders).
AGED = {"candles": "ts", "tickers": "ts", "global_metrics": "ts"}
# What the backup job archives, with the time that dates a row; markets last, after their rows.
ARCHIVED = {**AGED, "markets": "status_changed"}


class MarketDB:
    """The market DB at `url` (sqlite:///PATH or mysql+pymysql://USER:PASS@HOST/DB)."""

    def __init__(self, url: str) -> None:
        self.where = _redacted(url)
        sqlite_options = {"connect_args": {"timeout": 30}} if url.startswith("sqlite") else {}
        try:
            self.engine = create_engine(url, **sqlite_options)
        except (SQLAlchemyError, ImportError, ValueError) as exc:
            raise StorageError(f"market DB URL {self.where} is malformed or unsupported: {exc}") from None
        dialect = self.engine.dialect
        if dialect.name not in ("mysql", "mariadb", "sqlite"):
            raise StorageError(f"market DB {self.where}: only MySQL/MariaDB and SQLite are supported")
        self._mysql = dialect.name != "sqlite"
        self._fast_candles = dialect.driver == "pymysql"
        if not self._mysql:
            event.listen(self.engine, "connect", _sqlite_wal)
        self._schema_ready = False

    def close(self) -> None:
        self.engine.dispose()

    # --- connections and schema ----------------------------------------------------------
    @contextmanager
    def _transaction(self) -> Iterator[Connection]:
        """One transaction; a database failure becomes a one-line StorageError naming the URL."""
        try:
            conn = self.engine.connect()
        except SQLAlchemyError as exc:
            raise DatabaseUnreachable(f"market DB {self.where} is unreachable: {_reason(exc)}") from exc
        try:
            with conn, conn.begin():
                yield conn
        except SQLAlchemyError as exc:
            lost = isinstance(exc, DBAPIError) and exc.connection_invalidated
            kind = DatabaseUnreachable if lost else StorageError
            raise kind(f"market DB {self.where}: {_reason(exc)}") from exc

    @contextmanager
    def _begin(self) -> Iterator[Connection]:
        if not self._schema_ready:
            self.ensure_schema()
        with self._transaction() as conn:
            yield conn

    def ensure_schema(self) -> None:
        """Create the tables on first use, or migrate an older schema to SCHEMA_VERSION."""
        with self._transaction() as conn:
            if self._mysql:  # two cron jobs may start on a new database at the same minute
                conn.execute(select(func.get_lock(func.concat("crontrader:", func.database()), 60)))
            try:
                self._upgrade(conn)
            finally:
                if self._mysql:
                    conn.execute(select(func.release_lock(func.concat("crontrader:", func.database()))))
        self._schema_ready = True

    def _upgrade(self, conn: Connection) -> None:
        version = None
        if inspect(conn).has_table(version_table.name):
            version = conn.execute(select(version_table.c.version)).scalar()
        if version is None:
            metadata.create_all(conn)
            conn.execute(insert(version_table).values(version=SCHEMA_VERSION))
            return
        if version > SCHEMA_VERSION:
            raise StorageError(f"market DB {self.where} has schema version {version}, newer than this "
                               f"code's {SCHEMA_VERSION}: update crontrader")
        for n, migrate in enumerate(MIGRATIONS[version - 1:], start=version):
            migrate(conn)
            conn.execute(update(version_table).values(version=n + 1))

    def schema_version(self) -> int | None:
        with self._transaction() as conn:
            if not inspect(conn).has_table(version_table.name):
                return None
            return conn.execute(select(version_table.c.version)).scalar()

    # --- writes ----------------------------------------------------------------------------
    def _upsert(self, conn: Connection, table: Table, rows: Iterable[dict], keep: Sequence[str] = ()) -> None:
        """Insert `rows`; a row whose key exists updates every other column but those in `keep`."""
        for batch in _batched(rows, BATCH):
            conn.execute(self._upsert_statement(table, keep), batch)

    def _upsert_statement(self, table: Table, keep: Sequence[str] = ()) -> Any:
        stmt = (mysql.insert if self._mysql else sqlite.insert)(table)
        new = stmt.inserted if self._mysql else stmt.excluded
        changes = {c.name: new[c.name] for c in table.columns if not c.primary_key and c.name not in keep}
        if self._mysql:
            return stmt.on_duplicate_key_update(changes)
        return stmt.on_conflict_do_update(index_elements=list(table.primary_key), set_=changes)

    def upsert_markets(self, exchange: str, markets: Iterable[Market],
                       seen_at: int) -> list[tuple[str, str | None, str]]:
        """Record the venue's full listing; returns the status changes as (market, old, new).

        `old` is None for a market seen for the first time.  A known market missing
        from the listing becomes unavailable with status "delisted".
        """
        t = market_table
        with self._begin() as conn:
            known = {r.market: r for r in conn.execute(
                select(t.c.market, t.c.status, t.c.status_changed).where(t.c.exchange == exchange))}
            rows, changes = [], []
            for m in markets:
                old = known.pop(m.symbol, None)
                changed = old is None or old.status != m.status
                if changed:
                    changes.append((m.symbol, old.status if old else None, m.status))
                rows.append({"exchange": exchange, "market": m.symbol, "base": m.base, "quote": m.quote,
                             "status": m.status, "available": m.available, "first_seen": seen_at,
                             "last_seen": seen_at, "status_changed": seen_at if changed else old.status_changed})
            gone = [market for market, old in known.items() if old.status != DELISTED]
            if gone:
                conn.execute(update(t).where(t.c.exchange == exchange, t.c.market.in_(gone))
                             .values(status=DELISTED, available=False, status_changed=seen_at))
                changes += [(market, known[market].status, DELISTED) for market in gone]
            self._upsert(conn, t, rows, keep=("first_seen",))
        return changes

    def upsert_candles(self, exchange: str, market: str, interval: int, candles: Iterable[Candle]) -> None:
        """Write candles of `interval` minutes; a candle already stored (still open then) is overwritten."""
        with self._begin() as conn:
            if self._fast_candles:
                self._pymysql_candles(conn, exchange, market, interval, candles)
            else:
                self._upsert(conn, candle_table, (
                    {"exchange": exchange, "market": market, "interval": interval, "ts": c.ts, "open": c.open,
                     "high": c.high, "low": c.low, "close": c.close, "volume": c.volume} for c in candles))

    def _pymysql_candles(self, conn: Connection, exchange: str, market: str, interval: int,
                         candles: Iterable[Candle]) -> None:
        """The ingestion hot path: multi-row statements whose numbers are written out here.

        PyMySQL's executemany builds the same statements but escapes each value through
        generic code, which tops out near 60,000 rows/s on a 2-core machine.  Formatting
        the ints and Decimals directly, and sending each statement from a second thread
        while the next one is built, reaches the server's own speed (bench/ingest.py).
        The names are escaped by the driver (cursor.mogrify).
        """
        sql = str(self._upsert_statement(candle_table).compile(dialect=conn.dialect))
        head, _, tail = sql.partition("(" + ", ".join(f"%({c.name})s" for c in candle_table.c) + ")")
        key = conn.connection.cursor().mogrify("(%s, %s, %s, ", (exchange, market, interval))
        with ThreadPoolExecutor(1) as sender:
            sent = None
            for batch in _batched(candles, BATCH):
                rows = ", ".join(f"{key}{c.ts:d}, {c.open:f}, {c.high:f}, {c.low:f}, {c.close:f}, {c.volume:f})"
                                 for c in batch)
                if sent:
                    sent.result()
                sent = sender.submit(conn.exec_driver_sql, head + rows + tail,
                                     execution_options={"no_parameters": True})
            if sent:
                sent.result()

    def insert_tickers(self, exchange: str, tickers: Iterable[Ticker], ts: int | None = None) -> None:
        """Write a snapshot of tickers, all stamped `ts` (by default each ticker's own time)."""
        with self._begin() as conn:
            self._upsert(conn, ticker_table, (
                {"exchange": exchange, "market": t.market, "ts": t.ts if ts is None else ts, "last": t.last,
                 "bid": t.bid, "ask": t.ask, "volume_24h": t.volume_24h, "vwap_24h": t.vwap_24h,
                 "high_24h": t.high_24h, "low_24h": t.low_24h} for t in tickers))

    def insert_global_metrics(self, source: str, metrics: Iterable[GlobalMetrics]) -> None:
        with self._begin() as conn:
            self._upsert(conn, metric_table, (
                {"source": source, "ts": m.ts, "quote": m.quote, "total_market_cap": m.total_market_cap,
                 "total_volume_24h": m.total_volume_24h, "btc_dominance": m.btc_dominance,
                 "active_cryptocurrencies": m.active_cryptocurrencies} for m in metrics))

    # --- reads -----------------------------------------------------------------------------
    def _all(self, query: Any) -> list[RowMapping]:
        with self._begin() as conn:
            return list(conn.execute(query).mappings())

    def _one(self, query: Any) -> Any:
        with self._begin() as conn:
            return conn.execute(query).scalar()

    def markets(self, exchange: str) -> list[RowMapping]:
        t = market_table
        return self._all(select(t).where(t.c.exchange == exchange).order_by(t.c.market))

    def available_markets(self, exchange: str) -> list[str]:
        t = market_table
        return [r["market"] for r in self._all(
            select(t.c.market).where(t.c.exchange == exchange, t.c.available).order_by(t.c.market))]

    def last_candle_ts(self, exchange: str, market: str, interval: int) -> int | None:
        t = candle_table
        return self._one(select(func.max(t.c.ts)).where(
            t.c.exchange == exchange, t.c.market == market, t.c.interval == interval))

    def last_candle_ts_by_market(self, exchange: str, interval: int) -> dict[str, int]:
        """The newest candle of every market of `exchange`, in one query (the primary key answers it)."""
        t = candle_table
        return {r["market"]: r["ts"] for r in self._all(
            select(t.c.market, func.max(t.c.ts).label("ts"))
            .where(t.c.exchange == exchange, t.c.interval == interval).group_by(t.c.market))}

    def candles(self, exchange: str, market: str, interval: int, since: int | None = None,
                until: int | None = None) -> list[Candle]:
        """Candles opening in [since, until), oldest first."""
        t = candle_table
        query = select(t.c.ts, t.c.open, t.c.high, t.c.low, t.c.close, t.c.volume).where(
            t.c.exchange == exchange, t.c.market == market, t.c.interval == interval).order_by(t.c.ts)
        if since is not None:
            query = query.where(t.c.ts >= since)
        if until is not None:
            query = query.where(t.c.ts < until)
        with self._begin() as conn:
            return [Candle(*row) for row in conn.execute(query)]

    def close_at(self, exchange: str, market: str, interval: int, at: int) -> Decimal | None:
        """Close of the last candle that had closed by `at` (as trends.price_at); None when none had."""
        t = candle_table
        return self._one(select(t.c.close).where(
            t.c.exchange == exchange, t.c.market == market, t.c.interval == interval,
            t.c.ts <= at - interval * 60).order_by(t.c.ts.desc()).limit(1))

    def tickers(self, exchange: str, market: str, since: int | None = None) -> list[RowMapping]:
        """The market's ticker snapshots, oldest first."""
        t = ticker_table
        query = select(t).where(t.c.exchange == exchange, t.c.market == market).order_by(t.c.ts)
        if since is not None:
            query = query.where(t.c.ts >= since)
        return self._all(query)

    def global_metrics(self, since: int | None = None) -> list[RowMapping]:
        """Every source's global metrics, oldest first."""
        t = metric_table
        query = select(t).order_by(t.c.ts, t.c.source)
        if since is not None:
            query = query.where(t.c.ts >= since)
        return self._all(query)

    # --- the order journal -------------------------------------------------------------------
    def journal_intent(self, ref: str, *, namespace: str, exchange: str, market: str, side: str,
                       thread: int | None = None, amount_quote: Decimal | None = None,
                       volume: Decimal | None = None, at: float | None = None) -> None:
        """Record an order before it is sent; a second intent with the same ref is refused."""
        _check(namespace, NAMESPACES, "namespace")
        _check(side, SIDES, "side")
        with self._begin() as conn:
            try:
                conn.execute(insert(order_table).values(
                    ref=ref, namespace=namespace, exchange=exchange, market=market, side=side, thread=thread,
                    intent_at=time.time() if at is None else at, amount_quote=amount_quote, volume=volume,
                    status="intent"))
            except IntegrityError:
                raise StorageError(f"market DB {self.where}: order {ref!r} is already journaled") from None

    def journal_result(self, ref: str, status: str, *, order_id: str | None = None,
                       filled: Decimal | None = None, price: Decimal | None = None, cost: Decimal | None = None,
                       fee: Decimal | None = None, error: str | None = None, at: float | None = None) -> None:
        """Record what became of the order `ref`; fields left None keep their value."""
        _check(status, OPEN + FINAL, "order status")
        given = {"order_id": order_id, "filled": filled, "price": price, "cost": cost, "fee": fee, "error": error}
        values = {k: v for k, v in given.items() if v is not None}
        t = order_table
        with self._begin() as conn:
            found = conn.execute(update(t).where(t.c.ref == ref).values(
                status=status, result_at=time.time() if at is None else at, **values)).rowcount
        if not found:
            raise StorageError(f"market DB {self.where}: no journaled order {ref!r}")

    def journal_order(self, order: Order, status: str | None = None) -> None:
        """Record the exchange's report of an order (its status unless `status` says otherwise)."""
        self.journal_result(order.ref, status or order.status, order_id=order.order_id or None,
                            filled=order.filled, price=order.price, cost=order.cost, fee=order.fee,
                            at=order.closed_at or None)

    def journal_row(self, ref: str) -> RowMapping | None:
        rows = self._all(select(order_table).where(order_table.c.ref == ref))
        return rows[0] if rows else None

    def journal(self, namespace: str, since: int | None = None) -> list[RowMapping]:
        """The namespace's orders, oldest intent first."""
        t = order_table
        query = select(t).where(t.c.namespace == namespace).order_by(t.c.intent_at, t.c.ref)
        if since is not None:
            query = query.where(t.c.intent_at >= since)
        return self._all(query)

    def open_intents(self, namespace: str) -> list[RowMapping]:
        """Orders whose fate must be asked of the exchange before anything else."""
        t = order_table
        return self._all(select(t).where(t.c.namespace == namespace, t.c.status.in_(OPEN))
                         .order_by(t.c.intent_at, t.c.ref))

    def open_positions(self, namespace: str) -> dict[int, RowMapping]:
        """Per thread, the filled buy not followed by a filled sell: what the thread holds."""
        t = order_table
        positions: dict[int, RowMapping] = {}
        for row in self._all(select(t).where(t.c.namespace == namespace, t.c.status.in_(FINAL),
                                             t.c.thread.is_not(None)).order_by(t.c.intent_at, t.c.ref)):
            if row["filled"]:
                if row["side"] == "buy":
                    positions[row["thread"]] = row
                else:
                    positions.pop(row["thread"], None)
        return positions

    # --- trimming, for the backup job -----------------------------------------------------
    def delete_older_than(self, table: str, ts: int, batch: int = DELETE_BATCH) -> int:
        """Delete rows older than `ts`, `batch` rows per transaction; returns how many."""
        if table not in AGED:
            raise ValueError(f"{table!r} is not one of {', '.join(AGED)}")
        t = metadata.tables[table]
        old = t.c[AGED[table]] < ts
        key = list(t.primary_key)
        deleted = 0
        while True:
            with self._begin() as conn:
                keys = conn.execute(select(*key).where(old).limit(batch)).all()
                if keys:
                    conn.execute(delete(t).where(tuple_(*key).in_(keys)))
            deleted += len(keys)
            if len(keys) < batch:
                return deleted

    # --- archiving, for the backup job ----------------------------------------------------
    def _archived(self, table: str, before: int) -> Any:
        """The rows the backup takes: older than `before`, and all rows of the markets that
        have been unavailable since before `before`."""
        if table not in ARCHIVED:
            raise ValueError(f"{table!r} is not one of {', '.join(ARCHIVED)}")
        m = market_table
        gone = m.c.available.is_(False) & (m.c.status_changed < before)
        if table == "markets":
            return gone
        t = metadata.tables[table]
        old = t.c.ts < before
        if "market" in t.c:
            old |= tuple_(t.c.exchange, t.c.market).in_(select(m.c.exchange, m.c.market).where(gone))
        return old

    def archived_days(self, table: str, before: int) -> dict[int, int]:
        """Rows the backup would take from `table`, counted by UTC day (days since 1970-01-01)."""
        t = metadata.tables[table]
        day = (t.c[ARCHIVED[table]] // 86400).label("day")
        return {int(r.day): r.n for r in self._all(
            select(day, func.count().label("n")).where(self._archived(table, before)).group_by("day"))}

    def archived_rows(self, table: str, before: int) -> Iterator[tuple]:
        """Those rows, oldest first, in table column order; streamed, as a month of candles
        may not fit in a Pi's memory."""
        t = metadata.tables[table]
        query = (select(t).where(self._archived(table, before))
                 .order_by(t.c[ARCHIVED[table]], *t.primary_key))
        with self._begin() as conn:
            for row in conn.execution_options(yield_per=BATCH).execute(query):
                yield tuple(row)

    def delete_keys(self, table: str, keys: Iterable[Sequence[Any]], batch: int = DELETE_BATCH) -> int:
        """Delete the rows of `table` with these primary keys, `batch` per transaction; how many went."""
        if table not in ARCHIVED:
            raise ValueError(f"{table!r} is not one of {', '.join(ARCHIVED)}")
        t = metadata.tables[table]
        deleted = 0
        for chunk in _batched(keys, batch):
            with self._begin() as conn:
                deleted += conn.execute(delete(t).where(tuple_(*t.primary_key).in_(chunk))).rowcount
        return deleted

    def restore_rows(self, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
        """Put archived rows back in one transaction; upserts, so restoring twice changes nothing."""
        if table not in ARCHIVED:
            raise ValueError(f"{table!r} is not one of {', '.join(ARCHIVED)}")
        t = metadata.tables[table]
        unknown = [c for c in columns if c not in t.c]
        if unknown:
            raise StorageError(f"market DB {self.where}: table {table} has no column {', '.join(unknown)}")
        amounts = {c for c in columns if isinstance(t.c[c].type, Amount)}
        with self._begin() as conn:
            self._upsert(conn, t, ({c: Decimal(v) if c in amounts and v is not None else v
                                    for c, v in zip(columns, row)} for row in rows))


def table_layout(table: str) -> tuple[list[str], list[str]]:
    """(columns, primary key columns) of `table`, in the table's order."""
    t = metadata.tables[table]
    return [c.name for c in t.columns], [c.name for c in t.primary_key]


def _batched(rows: Iterable[Any], n: int) -> Iterator[list[Any]]:
    it = iter(rows)
    while batch := list(islice(it, n)):
        yield batch


def _check(value: str, allowed: Sequence[str], what: str) -> None:
    if value not in allowed:
        raise ValueError(f"{what} {value!r} is not one of {', '.join(allowed)}")


def _reason(exc: SQLAlchemyError) -> str:
    """The driver's own message on one line (SQLAlchemy's adds the statement and its rows)."""
    return " ".join(str(getattr(exc, "orig", None) or exc).split())


def _redacted(url: str) -> str:
    """`url` with the password of user:password@ replaced by ***, even when the URL is malformed."""
    userinfo, at, rest = url.rpartition("@")
    scheme, slashes, credentials = userinfo.partition("//")
    if not at or not slashes or ":" not in credentials:
        return url
    return f"{scheme}//{credentials.partition(':')[0]}:***@{rest}"


def _sqlite_wal(dbapi_connection: Any, _record: Any) -> None:
    """Readers (plots, the agent) never wait for the ingestion job, nor it for them."""
    dbapi_connection.execute("PRAGMA journal_mode=WAL")
