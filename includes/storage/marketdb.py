"""The market database: markets, candles, tickers, global metrics and the order journal.

Plain DB-API: PyMySQL on MySQL/MariaDB in production, the standard library's
sqlite3 embedded.  Not SQLAlchemy: cron starts a job every minute on a Pi, and
importing SQLAlchemy cost each start some 0.2 s and 10 MB before its first
statement, and more per statement; what differs between the two dialects here
(a few types, the upsert clause, the placeholder) is a handful of substitutions.
PyMySQL is imported only when a MySQL URL is opened.

One `candles` table holds every market, keyed by (exchange, market, interval, ts): a new market is a row
in `markets`, never a new table.  Every write is a batched, idempotent upsert in
one transaction, so a cycle can be written again (spool.py replays them)
without duplicates.

Amounts are Decimal in and Decimal out: DECIMAL(30, 12) on MySQL, plain decimal
text on SQLite, whose NUMERIC would keep 15 digits only.  So compare amounts in
Python, not in SQL.  Times are Unix seconds (fractional in the order journal).
SQL is written once, with %s placeholders (sqlite3 gets them as ?) and names
quoted with backticks, which both dialects accept (`interval` is reserved in MySQL).
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from decimal import Decimal
from itertools import islice
from typing import TYPE_CHECKING, Any

from includes.errors import StorageError, StorageRefused, cause
from includes.model import DEFAULT_AGENT, EXCHANGE_FINAL, FINAL, MODES, OPEN, SIDES, Candle, Market
from includes.redaction import masked
from includes.storage import SQLITE_REFUSED
from includes.storage.journal import INTENT_STEP, FillTotals, Position, positions, totals

if TYPE_CHECKING:
    from includes.model import GlobalMetrics, Order, Ticker

BATCH = 10_000                      # rows per statement: ~1.2 MB of SQL, below any max_allowed_packet
DELETE_BATCH = 5_000                # 4 parameters a row: SQLite takes at most 32,766
DELISTED = "delisted"               # status of a market missing from the venue's listing
LOST = (2002, 2003, 2006, 2013)     # MySQL client errors: no server there, or the connection broke
REFUSED = (1044, 1045, 1049)        # MySQL: access denied (to the database, for the user), unknown database


class DatabaseUnreachable(StorageError):
    """The server could not be reached or dropped the connection: the rows may be spooled."""


class Table:
    """A table: its columns in order with their SQL types, and its primary key.

    Two words of the types differ by dialect: AMOUNT, an exact decimal with 18 digits
    before the point (market caps) and 12 after (tiny prices), and ASCII, which makes
    exchange, market and currency names ASCII and case-sensitive on MySQL, whose utf8mb4
    keys would be larger and slower to compare.
    """

    def __init__(self, name: str, types: dict[str, str], key: tuple[str, ...] = ()) -> None:
        self.name = name
        self.types = types
        self.key = key

    @property
    def columns(self) -> list[str]:
        return list(self.types)

    @property
    def amounts(self) -> set[str]:
        return {c for c, sql_type in self.types.items() if sql_type.startswith("AMOUNT")}

    def ddl(self, mysql: bool) -> str:
        lines = [f"`{c}` {sql_type}" for c, sql_type in self.types.items()]
        if self.key:
            lines.append(f"PRIMARY KEY ({_names(self.key)})")
        sql = f"CREATE TABLE IF NOT EXISTS `{self.name}` (\n    " + ",\n    ".join(lines) + "\n)"
        for word, (on_mysql, on_sqlite) in DIALECT.items():
            sql = sql.replace(word, on_mysql if mysql else on_sqlite)
        return sql


DIALECT = {"AMOUNT": ("DECIMAL(30, 12)", "VARCHAR(40)"),
           " ASCII": (" CHARACTER SET ascii COLLATE ascii_bin", "")}

EXCHANGE, MARKET = "VARCHAR(32) ASCII NOT NULL", "VARCHAR(40) ASCII NOT NULL"   # market: BASE/QUOTE
# A market's order rules, as the Market dataclass holds them: the backtest trades by them (v6).
RULES = {"price_decimals": "INTEGER", "volume_decimals": "INTEGER", "cost_decimals": "INTEGER",
         "min_volume": "AMOUNT", "min_cost": "AMOUNT"}

TABLES = {t.name: t for t in (
    Table("markets", {
        "exchange": EXCHANGE, "market": MARKET,
        "base": "VARCHAR(16) ASCII NOT NULL",
        "quote": "VARCHAR(16) ASCII NOT NULL",
        "status": "VARCHAR(32) NOT NULL",                   # the venue's own word
        "available": "BOOLEAN NOT NULL",                    # accepts orders now
        "first_seen": "BIGINT NOT NULL",
        "last_seen": "BIGINT NOT NULL",
        "status_changed": "BIGINT NOT NULL",
        **RULES,                                            # its order rules (v6); NULL until listed again
    }, key=("exchange", "market")),
    Table("candles", {
        "exchange": EXCHANGE, "market": MARKET,
        "interval": "INTEGER NOT NULL",                     # minutes
        "ts": "BIGINT NOT NULL",                            # open time
        **dict.fromkeys(("open", "high", "low", "close", "volume"), "AMOUNT NOT NULL"),
    }, key=("exchange", "market", "interval", "ts")),
    Table("tickers", {
        "exchange": EXCHANGE, "market": MARKET,
        "ts": "BIGINT NOT NULL",
        **dict.fromkeys(("last", "bid", "ask", "volume_24h"), "AMOUNT NOT NULL"),
        **dict.fromkeys(("vwap_24h", "high_24h", "low_24h"), "AMOUNT"),
    }, key=("exchange", "market", "ts")),
    Table("global_metrics", {
        "ts": "BIGINT NOT NULL",
        "source": "VARCHAR(32) ASCII NOT NULL",
        **dict.fromkeys(("total_market_cap", "total_volume_24h", "btc_dominance"), "AMOUNT NOT NULL"),
        "active_cryptocurrencies": "INTEGER NOT NULL",
        "quote": "VARCHAR(16) ASCII NOT NULL",
    }, key=("source", "ts")),
    Table("orders", {
        "ref": "VARCHAR(64) NOT NULL",                      # our unique client reference
        "namespace": "VARCHAR(8) NOT NULL",                 # live | dry
        "exchange": EXCHANGE, "market": MARKET,
        "side": "VARCHAR(4) NOT NULL",
        "thread": "INTEGER",
        "intent_at": "DOUBLE NOT NULL",                     # fractional seconds: orders keep their order
        "amount_quote": "AMOUNT",
        "volume": "AMOUNT",
        "status": "VARCHAR(16) NOT NULL",
        "order_id": "VARCHAR(64)",
        **dict.fromkeys(("filled", "price", "cost", "fee"), "AMOUNT"),
        "result_at": "DOUBLE",
        "error": "TEXT",
        "agent": f"VARCHAR(64) NOT NULL DEFAULT '{DEFAULT_AGENT}'",   # its storage.namespace (v3)
        "lookups": "INTEGER NOT NULL DEFAULT 0",            # runs that asked the exchange and found it open (v4)
    }, key=("ref",)),
    Table("schema_version", {"version": "INTEGER NOT NULL"}),
)}

# What a column's values are read as, by column name (an amount is an amount in every table).
AMOUNTS = {c for t in TABLES.values() for c in t.amounts}


# --- schema versions ---------------------------------------------------------------------
# A list of functions rather than alembic: alembic would add its import, its ini file and
# its env.py to every cron start on a Pi, for a few ALTER TABLEs a year.  The version
# check costs one query.  MIGRATIONS[n - 1] takes a database from version n to n + 1;
# append to the list, never edit an entry.

def _v2_status_changed(db: Cursor) -> None:
    """v2 dates status changes; a market's known status dates from its first sighting."""
    db.execute("ALTER TABLE `markets` ADD COLUMN `status_changed` BIGINT NOT NULL DEFAULT 0")
    db.execute("UPDATE `markets` SET `status_changed` = `first_seen`")


def _v3_journal_agent(db: Cursor) -> None:
    """v3 tells apart the journals of agents sharing one market DB (storage.namespace):
    one agent's recovery must never settle or rebuild another's orders.  Rows written
    before belong to the default namespace; an agent with another one recovers them by
    UPDATE orders SET agent = '<its namespace>'."""
    db.execute(f"ALTER TABLE `orders` ADD COLUMN `agent` VARCHAR(64) NOT NULL DEFAULT '{DEFAULT_AGENT}'")


def _v4_journal_lookups(db: Cursor) -> None:
    """v4 counts the runs that asked about an order and found it still open or not yet
    visible: a few of them, and the owner is told (a clock cannot be trusted to say it)."""
    db.execute("ALTER TABLE `orders` ADD COLUMN `lookups` INTEGER NOT NULL DEFAULT 0")


# The indexes that keep a cron job's queries bounded by what it needs, not by the history
# (tests/test_marketdb.py checks their plans; bench/growth.py measures them):
INDEXES = {
    "candles_ts": ("candles", ("ts",)),                                    # the backup's month scan
    "tickers_ts": ("tickers", ("ts",)),
    "orders_time": ("orders", ("agent", "namespace", "intent_at")),       # the last intent; journal(since)
    "orders_status": ("orders", ("agent", "namespace", "status")),        # open intents
    # a thread's latest filled buy and the fills after it, past its failed attempts
    "orders_thread": ("orders", ("agent", "namespace", "thread", "status", "side", "intent_at")),
}


def _v5_indexes(db: Cursor) -> None:
    """v5 indexes what the cron jobs look up, so a year of candles and a long journal cost
    a run nothing more (issue 17)."""
    for name, (table, columns) in INDEXES.items():
        db.execute(f"CREATE INDEX IF NOT EXISTS `{name}` ON `{table}` ({_names(columns)})")


def _v6_market_rules(db: Cursor) -> None:
    """v6 keeps each market's order rules (decimals, minimum volume and cost), so a backtest of
    the market DB trades by the venue's rules (issue 15); known markets get them at their next
    listing, NULL until then."""
    for column, sql_type in RULES.items():
        sql_type = sql_type.replace("AMOUNT", "DECIMAL(30, 12)" if db.mysql else "VARCHAR(40)")
        db.execute(f"ALTER TABLE `markets` ADD COLUMN `{column}` {sql_type}")


MIGRATIONS: list[Callable[[Cursor], None]] = [_v2_status_changed, _v3_journal_agent, _v4_journal_lookups,
                                              _v5_indexes, _v6_market_rules]
SCHEMA_VERSION = len(MIGRATIONS) + 1

# Time column of the tables the backup job trims; never the order journal (orders).
AGED = {"candles": "ts", "tickers": "ts", "global_metrics": "ts"}
# What the backup job archives, with the time that dates a row; markets last, after their rows.
ARCHIVED = {**AGED, "markets": "status_changed"}


class Cursor:
    """A DB-API cursor taking the SQL written once, with %s placeholders, on either driver;
    rows come back with amounts as Decimal and `available` as bool."""

    def __init__(self, cursor: Any, mysql: bool) -> None:
        self.cursor = cursor
        self.mysql = mysql

    def sql(self, sql: str) -> str:
        return sql if self.mysql else sql.replace("%s", "?")

    def params(self, params: Sequence[Any]) -> Sequence[Any]:
        """PyMySQL writes a Decimal exactly; sqlite3 takes none, so amounts go in as decimal text."""
        if self.mysql:
            return params
        return [format(v, "f") if isinstance(v, Decimal) else v for v in params]

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement; returns the rows it matched (FOUND_ROWS on MySQL: not only those it changed)."""
        self.cursor.execute(self.sql(sql), self.params(params))
        return self.cursor.rowcount

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        """PyMySQL sends an INSERT ... VALUES run this way as multi-row statements."""
        self.cursor.executemany(self.sql(sql), rows if self.mysql else map(self.params, rows))

    def fetch(self) -> Iterator[tuple]:
        """The rows of the last query, BATCH at a time (an unbuffered cursor streams them)."""
        decode = _decoder([d[0] for d in self.cursor.description], self.mysql)
        while rows := self.cursor.fetchmany(BATCH):
            yield from map(decode, rows)

    def tuples(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        self.execute(sql, params)
        return list(self.fetch())

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        self.execute(sql, params)
        names = [d[0] for d in self.cursor.description]
        return [dict(zip(names, row)) for row in self.fetch()]

    def value(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """The first column of the first row, or None."""
        rows = self.tuples(sql, params)
        return rows[0][0] if rows else None


class MarketDB:
    """The market DB at `url` (sqlite:///PATH or mysql+pymysql://USER:PASS@HOST/DB)."""

    def __init__(self, url: str, timeout: float = 20.0) -> None:
        """timeout: seconds a MariaDB connect, read or write may take (storage.timeout)."""
        self.where = masked(url)
        self._mysql = url.startswith("mysql+pymysql://")
        try:
            if self._mysql:
                import pymysql
                self._driver: Any = pymysql
                self._args = _mysql_args(url, timeout)
            elif url.startswith("sqlite:///") and len(url) > len("sqlite:///"):
                import sqlite3
                self._driver = sqlite3
                # isolation_level None: transactions are begun here, not by the driver; one connection,
                # used by one thread at a time, may be used by another (as SQLAlchemy's pool allowed)
                self._args = {"database": url[len("sqlite:///"):], "timeout": 30, "isolation_level": None,
                              "check_same_thread": False}
            else:
                raise ValueError("only sqlite:///PATH and mysql+pymysql://USER:PASS@HOST/DB are supported")
        except (ImportError, ValueError) as exc:
            raise StorageError(f"market DB URL {self.where} is malformed or unsupported: {exc}") from None
        self._conn: Any = None
        self._schema_ready = False

    def close(self) -> None:
        self._drop()

    # --- connections and schema ----------------------------------------------------------
    def _open(self) -> Any:
        """A new connection; DatabaseUnreachable when none can be had."""
        try:
            conn = self._driver.connect(**self._args)
        except self._driver.Error as exc:
            failure = self._failure(exc)
            if isinstance(failure, DatabaseUnreachable):
                raise DatabaseUnreachable(f"market DB {self.where} is unreachable: {_reason(exc)}") from exc
            raise failure from exc
        except OSError as exc:  # the URL's ssl_ca / ssl_cert files, read before connecting
            raise StorageRefused(f"market DB {self.where}: TLS set-up failed: {_reason(exc)}") from exc
        if not self._mysql:
            try:  # readers (plots, the agent) never wait for the ingestion job, nor it for them
                conn.execute("PRAGMA journal_mode=WAL")
            except self._driver.Error as exc:
                conn.close()
                raise DatabaseUnreachable(f"market DB {self.where} is unreachable: {_reason(exc)}") from exc
        return conn

    def _drop(self) -> None:
        """Close the connection, if any, and forget it: the next call connects again."""
        conn, self._conn = self._conn, None
        if conn is not None:
            _close_quietly(conn)

    @contextmanager
    def _transaction(self, write: bool = False) -> Iterator[Cursor]:
        """One transaction; a database failure becomes a one-line StorageError naming the URL.

        SQLite writes BEGIN IMMEDIATE: they wait (30 s) for the write lock up front,
        rather than failing when a transaction that has read turns into a write.
        """
        if self._conn is None:
            self._conn = self._open()
        conn = self._conn
        try:
            if not self._mysql:
                conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            yield Cursor(conn.cursor(), self._mysql)
            conn.commit()
        except self._driver.Error as exc:
            self._rollback()
            raise self._failure(exc) from exc
        except Exception:
            self._rollback()
            raise
        except BaseException:  # interrupted, perhaps mid-statement: closing rolls back as well
            self._drop()
            raise

    def _rollback(self) -> None:
        try:
            if self._conn is not None:
                self._conn.rollback()
        except Exception:  # noqa: BLE001 - a connection that cannot roll back is not reused
            self._drop()

    def _failure(self, exc: Exception) -> StorageError:
        """The driver's error as ours: DatabaseUnreachable, with the connection dropped, when it is gone;
        StorageRefused when the server refused us or the SQLite file cannot be opened or created."""
        code = exc.args[0] if self._mysql and isinstance(exc, self._driver.OperationalError) and exc.args else None
        if code in REFUSED or getattr(exc, "sqlite_errorname", "") in SQLITE_REFUSED:
            self._drop()
            return StorageRefused(f"market DB {self.where}: {_reason(exc)}")
        lost = self._mysql and (isinstance(exc, self._driver.InterfaceError) or code in LOST)
        if lost:
            self._drop()
            return DatabaseUnreachable(f"market DB {self.where}: {_reason(exc)}")
        return StorageError(f"market DB {self.where}: {_reason(exc)}")

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
        version = self._version(db)
        if version is None:
            for table in TABLES.values():
                db.execute(table.ddl(self._mysql))
            _v5_indexes(db)
            db.execute("INSERT INTO `schema_version` (`version`) VALUES (%s)", (SCHEMA_VERSION,))
            return
        if version > SCHEMA_VERSION:
            raise StorageError(f"market DB {self.where} has schema version {version}, newer than this "
                               f"code's {SCHEMA_VERSION}: update crontrader")
        for n, migrate in enumerate(MIGRATIONS[version - 1:], start=version):
            migrate(db)
            db.execute("UPDATE `schema_version` SET `version` = %s", (n + 1,))

    def _version(self, db: Cursor) -> int | None:
        if self._mysql:
            exists = ("SELECT COUNT(*) FROM information_schema.tables "
                      "WHERE table_schema = DATABASE() AND table_name = %s")
        else:
            exists = "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = %s"
        if not db.value(exists, ("schema_version",)):
            return None
        return db.value("SELECT `version` FROM `schema_version`")

    def schema_version(self) -> int | None:
        with self._transaction() as db:
            return self._version(db)

    # --- writes ----------------------------------------------------------------------------
    def _upsert_sql(self, table: Table, columns: Sequence[str], keep: Sequence[str] = ()) -> tuple[str, str, str]:
        """The upsert of `columns` of `table` as (INSERT ... VALUES, one row's placeholders, the
        clause that updates every other column but those in `keep` of a row whose key exists)."""
        head = f"INSERT INTO `{table.name}` ({_names(columns)}) VALUES "
        row = f"({_marks(len(columns))})"
        changed = [c for c in columns if c not in table.key and c not in keep]
        if self._mysql:
            tail = " ON DUPLICATE KEY UPDATE " + ", ".join(f"`{c}` = VALUES(`{c}`)" for c in changed)
        else:
            tail = (f" ON CONFLICT ({_names(table.key)}) DO UPDATE SET "
                    + ", ".join(f"`{c}` = excluded.`{c}`" for c in changed))
        return head, row, tail

    def _upsert(self, db: Cursor, table: Table, rows: Iterable[Mapping[str, Any]],
                columns: Sequence[str] | None = None, keep: Sequence[str] = ()) -> None:
        """Insert `rows` (of `columns`, by default all); a row whose key exists updates every
        other column but those in `keep`."""
        columns = table.columns if columns is None else columns
        head, row, tail = self._upsert_sql(table, columns, keep)
        for batch in _batched(rows, BATCH):
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
                             "status_changed": seen_at if changed else old["status_changed"],
                             "price_decimals": m.price_decimals, "volume_decimals": m.volume_decimals,
                             "cost_decimals": m.cost_decimals, "min_volume": m.min_volume,
                             "min_cost": m.min_cost})
            gone = [market for market, old in known.items() if old["status"] != DELISTED]
            if gone:
                db.execute("UPDATE `markets` SET `status` = %s, `available` = %s, `status_changed` = %s "
                           f"WHERE `exchange` = %s AND `market` IN ({_marks(len(gone))})",
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
            for batch in _batched(candles, BATCH):
                rows = ", ".join(f"{key}{c.ts:d}, {c.open:f}, {c.high:f}, {c.low:f}, {c.close:f}, {c.volume:f})"
                                 for c in batch)
                if sent:
                    sent.result()
                sent = sender.submit(db.cursor.execute, head + rows + tail)  # no parameters: sent as is
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
        return self._all(f"{_select('markets')} WHERE `exchange` = %s ORDER BY `market`", (exchange,))

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
            for chunk in _batched(markets, 100):
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
        sql, params = f"{_select('tickers')} WHERE `exchange` = %s AND `market` = %s", [exchange, market]
        if since is not None:
            sql += " AND `ts` >= %s"
            params.append(since)
        return self._all(sql + " ORDER BY `ts`", params)

    def last_ticker(self, exchange: str, market: str) -> dict[str, Any] | None:
        """The market's latest ticker snapshot (one seek down the primary key), or None."""
        rows = self._all(f"{_select('tickers')} WHERE `exchange` = %s AND `market` = %s ORDER BY `ts` DESC LIMIT 1",
                         (exchange, market))
        return rows[0] if rows else None

    def global_metrics(self, since: int | None = None) -> list[dict[str, Any]]:
        """Every source's global metrics, oldest first."""
        sql, params = _select("global_metrics"), []
        if since is not None:
            sql += " WHERE `ts` >= %s"
            params.append(since)
        return self._all(sql + " ORDER BY `ts`, `source`", params)

    # --- the order journal -------------------------------------------------------------------
    def journal_intent(self, ref: str, *, namespace: str, exchange: str, market: str, side: str,
                       thread: int | None = None, amount_quote: Decimal | None = None,
                       volume: Decimal | None = None, at: float | None = None, agent: str = DEFAULT_AGENT) -> None:
        """Record an order before it is sent; a second intent with the same ref is refused.
        `namespace` is live or dry; `agent`, the storage.namespace of the agent sending it.
        `at` (the exchange's clock) is a floor: an intent is dated after the agent's last one,
        so the journal's order is the order of the intents whatever a clock did in between."""
        _check(namespace, MODES, "namespace")
        _check(side, SIDES, "side")
        with self._begin(write=True) as db:
            last = db.value("SELECT MAX(`intent_at`) FROM `orders` WHERE `agent` = %s AND `namespace` = %s",
                            (agent, namespace))
            at = max(time.time() if at is None else at, float(last or 0) + INTENT_STEP)
            try:
                db.execute("INSERT INTO `orders` (`ref`, `agent`, `namespace`, `exchange`, `market`, `side`, "
                           "`thread`, `intent_at`, `amount_quote`, `volume`, `status`) "
                           "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                           (ref, agent, namespace, exchange, market, side, thread, at, amount_quote, volume,
                            "intent"))
            except self._driver.IntegrityError:
                raise StorageError(f"market DB {self.where}: order {ref!r} is already journaled") from None

    def journal_result(self, ref: str, status: str, *, order_id: str | None = None,
                       filled: Decimal | None = None, price: Decimal | None = None, cost: Decimal | None = None,
                       fee: Decimal | None = None, error: str | None = None, at: float | None = None) -> None:
        """Record what became of the order `ref`; fields left None keep their value."""
        _check(status, OPEN + FINAL, "order status")
        given = {"order_id": order_id, "filled": filled, "price": price, "cost": cost, "fee": fee, "error": error}
        values = {"status": status, "result_at": time.time() if at is None else at,
                  **{k: v for k, v in given.items() if v is not None}}
        with self._begin(write=True) as db:
            found = db.execute(f"UPDATE `orders` SET {', '.join(f'`{c}` = %s' for c in values)} WHERE `ref` = %s",
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
        rows = self._all(f"{_select('orders')} WHERE `ref` = %s", (ref,))
        return rows[0] if rows else None

    def journal(self, namespace: str, since: int | None = None, agent: str = DEFAULT_AGENT) -> list[dict[str, Any]]:
        """The agent's orders in the namespace, oldest intent first."""
        sql, params = f"{_select('orders')} WHERE `agent` = %s AND `namespace` = %s", [agent, namespace]
        if since is not None:
            sql += " AND `intent_at` >= %s"
            params.append(since)
        return self._all(sql + " ORDER BY `intent_at`, `ref`", params)

    def settled(self, namespace: str, agent: str = DEFAULT_AGENT, since: float | None = None) -> list[dict[str, Any]]:
        """The agent's orders that settled on the exchange (all that may have moved coins: not
        the failed ones, however many), intended at or after `since`, oldest intent first,
        through an index (orders_status, or orders_time for a recent `since`): a chart's window
        holds few fills among a great many failed attempts, and only the fills are kept."""
        sql = (f"{_select('orders')} WHERE `agent` = %s AND `namespace` = %s "
               f"AND `status` IN ({_marks(len(EXCHANGE_FINAL))})")
        params: list[Any] = [agent, namespace, *EXCHANGE_FINAL]
        if since is not None:
            sql += " AND `intent_at` >= %s"
            params.append(since)
        rows = self._all(sql, params)
        return sorted(rows, key=lambda r: (float(r["intent_at"]), r["ref"]))   # an ORDER BY: see open_intents

    def open_intents(self, namespace: str, agent: str = DEFAULT_AGENT) -> list[dict[str, Any]]:
        """Orders whose fate must be asked of the exchange before anything else, oldest intent first.
        Sorted here: an ORDER BY would lead SQLite to orders_time, past every row of the agent."""
        rows = self._all(f"{_select('orders')} WHERE `agent` = %s AND `namespace` = %s "
                         f"AND `status` IN ({_marks(len(OPEN))})", (agent, namespace, *OPEN))
        return sorted(rows, key=lambda r: (float(r["intent_at"]), r["ref"]))

    def open_positions(self, namespace: str, agent: str = DEFAULT_AGENT,
                       before: float | None = None) -> dict[int, Position]:
        """Per thread, what its settled fills leave it holding (journal.positions), from the
        rows that can matter only: its latest filled buy and the settled orders after it,
        each found through orders_thread, however many failed attempts the journal holds.
        `before`: what the orders intended before that time left (a chart's window opens there)."""
        filled = self._filled()
        bound, bounds = ("AND `intent_at` < %s ", (before,)) if before is not None else ("", ())
        # the threads one index probe each (a recursive CTE's correlated step is a scan on MariaDB)
        following = ("SELECT `thread` FROM `orders` WHERE `agent` = %s AND `namespace` = %s AND `thread` > %s "
                     "ORDER BY `thread` LIMIT 1")
        last_buy = ("SELECT `intent_at` FROM `orders` WHERE `agent` = %s AND `namespace` = %s AND `thread` = %s "
                    f"AND `status` = %s AND `side` = 'buy' AND {filled} {bound}ORDER BY `intent_at` DESC LIMIT 1")
        after = (f"{_select('orders')} WHERE `agent` = %s AND `namespace` = %s AND `thread` = %s "
                 f"AND `status` IN ({_marks(len(EXCHANGE_FINAL))}) AND `side` IN ('buy', 'sell') "
                 f"AND `intent_at` >= %s {bound}ORDER BY `intent_at`, `ref`")
        rows: list[dict[str, Any]] = []
        with self._begin() as db:
            n = -1
            while (n := db.value(following, (agent, namespace, n))) is not None:
                # failed rows are never fills ("nothing placed"): they are not read at all
                starts = [db.value(last_buy, (agent, namespace, n, status, *bounds)) for status in EXCHANGE_FINAL]
                start = max((float(at) for at in starts if at is not None), default=None)
                if start is not None:
                    rows += db.query(after, (agent, namespace, n, *EXCHANGE_FINAL, start, *bounds))
        rows.sort(key=lambda r: (float(r["intent_at"]), r["ref"]))
        return positions(rows)

    def _filled(self) -> str:
        return "`filled` <> 0" if self._mysql else "CAST(`filled` AS REAL) <> 0"

    def fill_totals(self, namespace: str, agent: str = DEFAULT_AGENT, before: float | None = None) -> FillTotals:
        """What the agent's fills intended before `before` add up to (journal.totals: the positions
        fold over them, as a running total): the settled rows only, through orders_status, never the
        failed attempts, and a row at a time into the fold, none of them kept."""
        names = ("ref", "market", "side", "thread", "status", "intent_at", "filled", "price", "cost", "fee",
                 "result_at")
        sql = (f"SELECT {_names(names)} FROM `orders` WHERE `agent` = %s AND `namespace` = %s "
               f"AND `status` IN ({_marks(len(EXCHANGE_FINAL))}) AND {self._filled()}")
        params: list[Any] = [agent, namespace, *EXCHANGE_FINAL]
        if before is not None:    # + 0: not by orders_time, which would read every failed attempt before it
            sql += " AND `intent_at` + 0 < %s"
            params.append(before)
        with self._begin() as db:
            rows = db.tuples(sql, params)
        rows.sort(key=lambda r: (float(r[5]), r[0]))     # sorted here, as settled()
        return totals(dict(zip(names, row)) for row in rows)

    def first_intent(self, namespace: str, agent: str = DEFAULT_AGENT) -> float | None:
        """When the agent's first order in the namespace was intended (one seek down orders_time)."""
        at = self._one("SELECT MIN(`intent_at`) FROM `orders` WHERE `agent` = %s AND `namespace` = %s",
                       (agent, namespace))
        return None if at is None else float(at)

    def latest_fills(self, namespace: str, agent: str = DEFAULT_AGENT, limit: int = 20) -> list[dict[str, Any]]:
        """The agent's `limit` latest fills (settled orders that moved coins), newest intent first,
        down orders_time from its end: the recent rows only, whatever the journal's length."""
        return self._all(f"{_select('orders')} WHERE `agent` = %s AND `namespace` = %s "
                         f"AND `status` IN ({_marks(len(EXCHANGE_FINAL))}) AND {self._filled()} "
                         f"ORDER BY `intent_at` DESC, `ref` DESC LIMIT {int(limit)}",
                         (agent, namespace, *EXCHANGE_FINAL))

    # --- trimming, for the backup job -----------------------------------------------------
    def _delete_keys(self, db: Cursor, table: Table, keys: Sequence[Sequence[Any]]) -> int:
        """Delete the rows with these primary keys.  MariaDB reads a row-value IN list by key
        ranges; SQLite reads IN (VALUES ...) by a scan of the table, which made trimming a year
        super-linear, so there each key is a statement of its own (in-process: no round trip)."""
        if self._mysql:
            rows = ", ".join([f"({_marks(len(table.key))})"] * len(keys))
            return db.execute(f"DELETE FROM `{table.name}` WHERE ({_names(table.key)}) IN ({rows})",
                              [v for key in keys for v in key])
        db.executemany(f"DELETE FROM `{table.name}` WHERE " + " AND ".join(f"`{c}` = %s" for c in table.key), keys)
        return db.cursor.rowcount

    def delete_older_than(self, table: str, ts: int, batch: int = DELETE_BATCH) -> int:
        """Delete rows older than `ts`, `batch` rows per transaction; returns how many."""
        if table not in AGED:
            raise ValueError(f"{table!r} is not one of {', '.join(AGED)}")
        t = TABLES[table]
        deleted = 0
        while True:
            with self._begin(write=True) as db:
                keys = db.tuples(f"SELECT {_names(t.key)} FROM `{table}` WHERE `{AGED[table]}` < %s LIMIT %s",
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
        day = f"`{ARCHIVED[table]}` {'DIV' if self._mysql else '/'} 86400"   # integer division
        days: dict[int, int] = {}
        with self._begin() as db:
            for where, params in parts:
                for d, n in db.tuples(f"SELECT {day} AS `day`, COUNT(*) AS `n` FROM `{table}` WHERE {where} "
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
        sql = (f"{_select(table)} WHERE {where} "
               f"ORDER BY `{ARCHIVED[table]}`, {_names(TABLES[table].key)}")
        if not self._schema_ready:
            self.ensure_schema()
        conn = self._open()
        try:
            db = Cursor(conn.cursor(self._driver.cursors.SSCursor) if self._mysql else conn.cursor(), self._mysql)
            db.execute(sql, params)
            yield from db.fetch()
        except self._driver.Error as exc:
            raise self._failure(exc) from exc
        finally:
            _close_quietly(conn)

    def delete_keys(self, table: str, keys: Iterable[Sequence[Any]], batch: int = DELETE_BATCH) -> int:
        """Delete the rows of `table` with these primary keys, `batch` per transaction; how many went."""
        if table not in ARCHIVED:
            raise ValueError(f"{table!r} is not one of {', '.join(ARCHIVED)}")
        t = TABLES[table]
        deleted = 0
        for chunk in _batched(keys, batch):
            with self._begin(write=True) as db:
                deleted += self._delete_keys(db, t, chunk)
        return deleted

    def restore_rows(self, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
        """Put archived rows back in one transaction; upserts, so restoring twice changes nothing.
        The journal too: the trading record's backup (includes/record.py) brings it back."""
        if table not in (*ARCHIVED, "orders"):
            raise ValueError(f"{table!r} is not one of {', '.join(ARCHIVED)}, orders")
        t = TABLES[table]
        unknown = [c for c in columns if c not in t.types]
        if unknown:
            raise StorageError(f"market DB {self.where}: table {table} has no column {', '.join(unknown)}")
        amounts = t.amounts
        with self._begin(write=True) as db:
            self._upsert(db, t, ({c: Decimal(v) if c in amounts and v is not None else v
                                  for c, v in zip(columns, row)} for row in rows), columns=columns)


def table_layout(table: str) -> tuple[list[str], list[str]]:
    """(columns, primary key columns) of `table`, in the table's order."""
    t = TABLES[table]
    return t.columns, list(t.key)


def _names(columns: Iterable[str]) -> str:
    return ", ".join(f"`{c}`" for c in columns)


def _marks(n: int) -> str:
    return ", ".join(["%s"] * n)


def _select(table: str) -> str:
    """SELECT of every column of `table`, in the table's order (as archives and callers expect)."""
    return f"SELECT {_names(TABLES[table].columns)} FROM `{table}`"


def _decoder(names: Sequence[str], mysql: bool) -> Callable[[Sequence[Any]], tuple]:
    """Row -> tuple, amounts as Decimal (SQLite keeps them as text; PyMySQL gives Decimals) and
    `available` as bool (a tinyint or integer in the database)."""
    converters = [bool if n == "available" else Decimal if n in AMOUNTS and not mysql else None for n in names]
    if not any(converters):
        return tuple

    def decode(row: Sequence[Any]) -> tuple:
        return tuple(v if f is None or v is None else f(v) for f, v in zip(converters, row))
    return decode


def _mysql_args(url: str, timeout: float = 20.0) -> dict[str, Any]:
    """pymysql.connect's arguments for mysql+pymysql://USER:PASS@HOST[:PORT]/DB[?OPTION=VALUE...].

    Parsed as SQLAlchemy did, so that URLs that worked keep working: the password may
    hold / ? or #, an @ in it is written %40, and the options go to the driver as they are.
    """
    import re
    from urllib.parse import parse_qsl, unquote

    from pymysql import Connection
    from pymysql.constants import CLIENT

    m = re.fullmatch(r"mysql\+pymysql://(?:(?P<user>[^:/]*)(?::(?P<password>[^@]*))?@)?"
                     r"(?:\[(?P<ipv6>[^/?]+)\]|(?P<host>[^/:?]*))(?::(?P<port>[^/?]*))?"
                     r"/(?P<database>[^?]+)(?:\?(?P<options>.*))?", url, re.DOTALL)
    if not m:
        raise ValueError("expected mysql+pymysql://USER:PASS@HOST[:PORT]/DB")
    if m["port"] is not None and not (m["port"].isdigit() and 0 < int(m["port"]) < 65536):
        raise ValueError(f"port {m['port']!r} is not a port number")
    options = {k: int(v) if v.isdigit() else v for k, v in parse_qsl(m["options"] or "")}
    for name, value in options.items():
        if name.endswith("_timeout") and not (isinstance(value, int) and 0 < value <= 3600):
            raise ValueError(f"option {name} must be a whole number of seconds, 1 to 3600")
    accepted = Connection.__init__.__code__
    unknown = set(options) - set(accepted.co_varnames[:accepted.co_argcount + accepted.co_kwonlyargcount])
    if unknown:
        raise ValueError(f"PyMySQL takes no option {', '.join(sorted(unknown))}")
    if not any(name.startswith("ssl") for name in options):
        # TLS when the URL asks for it (ssl_ca=..., ssl_verify_identity=1), as PyMySQL 1.x and
        # SQLAlchemy had it.  PyMySQL 2's default, "preferred" TLS, verifies nothing and loads
        # the system's CA store at every connect: 25 ms of each cron run, for no safety.
        options["ssl_disabled"] = True
    return {"host": m["ipv6"] or m["host"] or "localhost", "port": int(m["port"] or 3306),
            "user": unquote(m["user"] or ""), "password": unquote(m["password"] or ""),
            "database": m["database"], "charset": "utf8mb4", "autocommit": False,
            # a hung server fails the call, as an unreachable one does (2013, lost connection)
            "connect_timeout": timeout, "read_timeout": timeout, "write_timeout": timeout,
            # an UPDATE counts the rows it matched, as SQLite does, not only those it changed
            "client_flag": CLIENT.FOUND_ROWS, **options}


def _close_quietly(conn: Any) -> None:
    try:
        conn.close()
    except Exception:  # noqa: BLE001 - closing a broken connection may fail too; it is gone either way
        pass


def _batched(rows: Iterable[Any], n: int) -> Iterator[list[Any]]:
    it = iter(rows)
    while batch := list(islice(it, n)):
        yield batch


def _check(value: str, allowed: Sequence[str], what: str) -> None:
    if value not in allowed:
        raise ValueError(f"{what} {value!r} is not one of {', '.join(allowed)}")


def _reason(exc: Exception) -> str:
    """The driver's own message, on one line."""
    return cause(exc)
