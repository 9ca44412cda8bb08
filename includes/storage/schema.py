"""The market DB's tables and their named migrations.

One `candles` table holds every market, keyed by (exchange, market, interval, ts): a new
market is a row in `markets`, never a new table.  Amounts are AMOUNT columns, Decimal in
and out.  Times are Unix seconds (fractional in the order journal).

Migrations are functions rather than alembic: alembic would add its import, its ini file
and its env.py to every cron start on a Pi, for a few ALTER TABLEs a year.  Each is
applied once, by name, and recorded in `migrations` (name, applied_at); `schema_version`
keeps the count as well, so that the usual start costs one query, and older code reading
a newer database refuses it.  Append to MIGRATIONS, never edit or reorder an entry.
"""
from __future__ import annotations

import time
from collections.abc import Callable

from includes.errors import StorageError
from includes.model import DEFAULT_AGENT
from includes.storage.sql import (
    AMOUNT,
    BIGINT,
    BOOLEAN,
    DOUBLE,
    INTEGER,
    TEXT,
    Column,
    Cursor,
    Table,
    ascii_name,
    names,
    quote,
    varchar,
)

EXCHANGE, MARKET = Column(ascii_name(32)), Column(ascii_name(40))     # market: BASE/QUOTE
# A market's order rules, as the Market dataclass holds them: the backtest trades by them (v6).
RULES = {"price_decimals": Column(INTEGER, null=True), "volume_decimals": Column(INTEGER, null=True),
         "cost_decimals": Column(INTEGER, null=True), "min_volume": Column(AMOUNT, null=True),
         "min_cost": Column(AMOUNT, null=True)}

TABLES = {t.name: t for t in (
    Table("markets", {
        "exchange": EXCHANGE, "market": MARKET,
        "base": Column(ascii_name(16)),
        "quote": Column(ascii_name(16)),
        "status": Column(varchar(32)),                      # the venue's own word
        "available": Column(BOOLEAN),                       # accepts orders now
        "first_seen": Column(BIGINT),
        "last_seen": Column(BIGINT),
        "status_changed": Column(BIGINT),
        **RULES,                                            # its order rules (v6); NULL until listed again
    }, key=("exchange", "market")),
    Table("candles", {
        "exchange": EXCHANGE, "market": MARKET,
        "interval": Column(INTEGER),                        # minutes
        "ts": Column(BIGINT),                               # open time
        **dict.fromkeys(("open", "high", "low", "close", "volume"), Column(AMOUNT)),
    }, key=("exchange", "market", "interval", "ts")),
    Table("tickers", {
        "exchange": EXCHANGE, "market": MARKET,
        "ts": Column(BIGINT),
        **dict.fromkeys(("last", "bid", "ask", "volume_24h"), Column(AMOUNT)),
        **dict.fromkeys(("vwap_24h", "high_24h", "low_24h"), Column(AMOUNT, null=True)),
    }, key=("exchange", "market", "ts")),
    Table("global_metrics", {
        "ts": Column(BIGINT),
        "source": Column(ascii_name(32)),
        **dict.fromkeys(("total_market_cap", "total_volume_24h", "btc_dominance"), Column(AMOUNT)),
        "active_cryptocurrencies": Column(INTEGER),
        "quote": Column(ascii_name(16)),
    }, key=("source", "ts")),
    Table("orders", {
        "ref": Column(varchar(64)),                         # our unique client reference
        "mode": Column(varchar(8)),                         # live | dry (v7; `namespace` before)
        "exchange": EXCHANGE, "market": MARKET,
        "side": Column(varchar(4)),
        "thread": Column(INTEGER, null=True),
        "intent_at": Column(DOUBLE),                        # fractional seconds: orders keep their order
        "amount_quote": Column(AMOUNT, null=True),
        "volume": Column(AMOUNT, null=True),
        "status": Column(varchar(16)),
        "order_id": Column(varchar(64), null=True),
        **dict.fromkeys(("filled", "price", "cost", "fee"), Column(AMOUNT, null=True)),
        "result_at": Column(DOUBLE, null=True),
        "error": Column(TEXT, null=True),
        "agent": Column(varchar(64), default=f"'{DEFAULT_AGENT}'"),  # its storage.namespace (v3)
        "lookups": Column(INTEGER, default="0"),            # runs that asked the exchange and found it open (v4)
    }, key=("ref",)),
    Table("schema_version", {"version": Column(INTEGER)}),
    # applied_at NULL: applied before the history was kept (the database's schema_version said so)
    Table("migrations", {"name": Column(varchar(64)), "applied_at": Column(BIGINT, null=True)}, key=("name",)),
)}

# What a column's values are read as, by column name (an amount is an amount in every table).
AMOUNTS = frozenset(c for t in TABLES.values() for c in t.amounts)

# The indexes that keep a cron job's queries bounded by what it needs, not by the history
# (tests/test_marketdb.py checks their plans; bench/growth.py measures them):
INDEXES = {
    "candles_ts": ("candles", ("ts",)),                                    # the backup's month scan
    "tickers_ts": ("tickers", ("ts",)),
    "orders_time": ("orders", ("agent", "mode", "intent_at")),            # the last intent; journal(since)
    "orders_status": ("orders", ("agent", "mode", "status")),             # open intents
    # a thread's latest filled buy and the fills after it, past its failed attempts
    "orders_thread": ("orders", ("agent", "mode", "thread", "status", "side", "intent_at")),
}

# Columns renamed by a migration, by table (old name -> new): archives written before still restore.
RENAMED = {"orders": {"namespace": "mode"}}

# Time column of the tables the backup job trims; never the order journal (orders).
AGED = {"candles": "ts", "tickers": "ts", "global_metrics": "ts"}
# What the backup job archives, with the time that dates a row; markets last, after their rows.
ARCHIVED = {**AGED, "markets": "status_changed"}


# --- migrations: each as it was written, on the schema of its day ----------------------------

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


def _v5_indexes(db: Cursor) -> None:
    """v5 indexes what the cron jobs look up, so a year of candles and a long journal cost
    a run nothing more (issue 17).  On the journal's column as it was named then (v7 renames it)."""
    v5 = {name: (table, tuple("namespace" if c == "mode" else c for c in columns))
          for name, (table, columns) in INDEXES.items()}
    create_indexes(db, v5)


def _v6_market_rules(db: Cursor) -> None:
    """v6 keeps each market's order rules (decimals, minimum volume and cost), so a backtest of
    the market DB trades by the venue's rules (issue 15); known markets get them at their next
    listing, NULL until then."""
    for column, kind in RULES.items():
        db.execute(f"ALTER TABLE `markets` ADD COLUMN {quote(column)} {kind.render(db.mysql)}")


def _v7_journal_mode(db: Cursor) -> None:
    """v7 names the journal's live/dry column `mode`, as the config and the agent say it:
    `namespace` also meant the agent (storage.namespace) and the state's key prefix.
    Both dialects carry the indexes over to the renamed column."""
    db.execute("ALTER TABLE `orders` RENAME COLUMN `namespace` TO `mode`")


MIGRATIONS: tuple[Callable[[Cursor], None], ...] = (
    _v2_status_changed, _v3_journal_agent, _v4_journal_lookups, _v5_indexes, _v6_market_rules, _v7_journal_mode)
SCHEMA_VERSION = len(MIGRATIONS) + 1


def migration_name(migrate: Callable[[Cursor], None]) -> str:
    return migrate.__name__.lstrip("_")


def create_indexes(db: Cursor, indexes: dict[str, tuple[str, tuple[str, ...]]]) -> None:
    for name, (table, columns) in indexes.items():
        db.execute(f"CREATE INDEX IF NOT EXISTS {quote(name)} ON {quote(table)} ({names(columns)})")


def upgrade(db: Cursor, version: int | None, has_history: bool, where: str) -> None:
    """Create the schema (`version` None: a new database), or apply the migrations not yet
    recorded.  A database from before the history (schema_version only, N) gets the names of
    the N - 1 migrations it had recorded first.  Raises StorageError for a newer schema."""
    now = int(time.time())
    record = "INSERT INTO `migrations` (`name`, `applied_at`) VALUES (%s, %s)"
    if version is None:
        for table in TABLES.values():
            db.execute(table.ddl(db.mysql))
        create_indexes(db, INDEXES)
        db.execute("INSERT INTO `schema_version` (`version`) VALUES (%s)", (SCHEMA_VERSION,))
        db.executemany(record, [(migration_name(m), now) for m in MIGRATIONS])
        return
    if version > SCHEMA_VERSION:
        raise StorageError(f"market DB {where} has schema version {version}, newer than this "
                           f"code's {SCHEMA_VERSION}: update crontrader")
    if not has_history:
        db.execute(TABLES["migrations"].ddl(db.mysql))
        db.executemany(record, [(migration_name(m), None) for m in MIGRATIONS[:version - 1]])
    applied = {name for name, in db.tuples("SELECT `name` FROM `migrations`")}
    unknown = applied - {migration_name(m) for m in MIGRATIONS}
    if unknown:
        raise StorageError(f"market DB {where} has migration {', '.join(sorted(unknown))}, unknown to "
                           "this code: update crontrader")
    for n, migrate in enumerate(MIGRATIONS, start=2):
        if migration_name(migrate) not in applied:
            migrate(db)
            db.execute(record, (migration_name(migrate), now))
            db.execute("UPDATE `schema_version` SET `version` = %s", (n,))
