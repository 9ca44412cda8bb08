"""The market DB, on SQLite and on MariaDB: schema, idempotent upserts, exact decimals, journal."""
from __future__ import annotations

import logging
import re
import sqlite3
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from decimal import Decimal as D
from typing import Any
from urllib.parse import urlsplit

import certifi
import pymysql
import pytest

from includes.errors import StorageError, StorageRefused
from includes.model import Candle, GlobalMetrics, Market, Order, Ticker
from includes.storage import marketdb
from includes.storage.marketdb import RULES, SCHEMA_VERSION, TABLES, DatabaseUnreachable, MarketDB, Table
from includes.storage.schema import INDEXES, MIGRATIONS, migration_name
from includes.storage.sql import Cursor, mysql_args, quote
from includes.trends import price_at
from tests.conftest import ROOT

T0 = 1_700_000_040  # a minute boundary


def candle(i: int, close: str = "34000.1", volume: str = "0.5", closed: bool = True) -> Candle:
    c = D(close)
    return Candle(T0 + 60 * i, c - D("0.5"), c + D("1.25"), c - D("2"), c, D(volume), closed)


def market(symbol: str, status: str = "online", available: bool = True) -> Market:
    base, quote = symbol.split("/")
    return Market(symbol, base, quote, base + quote, status, available, 1, 8, D("0.0001"), D("0.5"))


def rows(db: MarketDB, table: str) -> list[dict]:
    key = ", ".join(f"`{c}`" for c in TABLES[table].key)
    return db._all(f"SELECT * FROM `{table}` ORDER BY {key}")


def count(db: MarketDB, table: str) -> int:
    return db._one(f"SELECT COUNT(*) FROM `{table}`")


@contextmanager
def driver(url: str) -> Iterator[Any]:
    """A plain DB-API connection (sqlite3 or PyMySQL, autocommit) beside the code under test."""
    if url.startswith("sqlite:///"):
        conn = sqlite3.connect(url[len("sqlite:///"):], isolation_level=None)
    else:
        u = urlsplit(url)
        conn = pymysql.connect(host=u.hostname, port=u.port or 3306, user=u.username, password=u.password or "",
                               database=u.path.lstrip("/"), autocommit=True)
    try:
        yield conn
    finally:
        conn.close()


def execute(conn: Any, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
    cursor = conn.cursor()
    cursor.execute(sql.replace("%s", "?") if isinstance(conn, sqlite3.Connection) else sql, params)
    return list(cursor.fetchall())


# --- schema -----------------------------------------------------------------------------------

def test_schema_is_created_on_first_use(market_db, db_url):
    assert market_db.schema_version() is None
    assert market_db.markets("kraken") == []
    assert market_db.schema_version() == SCHEMA_VERSION
    with driver(db_url) as conn:
        if db_url.startswith("sqlite"):
            tables = execute(conn, "SELECT name FROM sqlite_master WHERE type = 'table'")
            key = [(name,) for _, name, _, _, _, pk in execute(conn, "PRAGMA table_info(candles)") if pk]
        else:
            tables = execute(conn, "SHOW TABLES")
            key = execute(conn, "SELECT column_name FROM information_schema.key_column_usage WHERE table_schema "
                                "= DATABASE() AND table_name = 'candles' AND constraint_name = 'PRIMARY'")
    assert {name for name, in tables} == set(TABLES)
    assert {name for name, in key} == {"exchange", "market", "interval", "ts"}
    MarketDB(db_url).ensure_schema()  # a second job finds it ready
    assert count(market_db, "schema_version") == 1


def test_mysql_types_are_those_of_the_schema(mariadb_url):
    """Exact decimals, ASCII case-sensitive names, booleans, integer and fractional times."""
    db = MarketDB(mariadb_url)
    db.ensure_schema()
    with driver(mariadb_url) as conn:
        types = dict(execute(conn, "SELECT CONCAT(table_name, '.', column_name), CONCAT_WS(' ', column_type, "
                                   "character_set_name, collation_name) FROM information_schema.columns "
                                   "WHERE table_schema = DATABASE()"))
    assert types["candles.close"] == "decimal(30,12)"
    assert types["candles.market"] == "varchar(40) ascii ascii_bin"
    assert types["candles.ts"] == "bigint(20)" and types["candles.interval"] == "int(11)"
    assert types["markets.available"] == "tinyint(1)"
    assert types["orders.intent_at"] == "double" and types["orders.error"].startswith("text")
    assert types["orders.ref"].startswith("varchar(64) utf8mb4")
    db.close()


def v6_orders() -> Table:
    """The orders table before v7, whose live/dry column was `namespace`."""
    t = TABLES["orders"]
    return Table("orders", {"namespace" if c == "mode" else c: k for c, k in t.types.items()}, t.key)


def without(table: str, *columns: str) -> Table:
    """TABLES[table] as an older version had it (orders as before v7), without `columns`."""
    current = v6_orders() if table == "orders" else TABLES[table]
    return Table(table, {c: t for c, t in current.types.items() if c not in columns}, current.key)


def old_schema(conn: Any, mysql: bool, version: int, *changed: Table) -> None:
    """A database at schema `version` as the code of its day built it: the tables, the
    `changed` ones as they were then, and no migration history."""
    tables = {**TABLES, "orders": v6_orders(), **{t.name: t for t in changed}}
    for name, table in tables.items():
        if name != "migrations":
            execute(conn, table.ddl(mysql))
    execute(conn, "INSERT INTO schema_version (version) VALUES (%s)", (version,))


def test_a_v1_database_is_migrated_without_losing_a_row(db_url):
    """v1 had no markets.status_changed (nor v2's orders.agent); its rows must all survive the upgrade."""
    mysql = not db_url.startswith("sqlite")
    listing = [("BTC/EUR", "online", True, 100), ("ETH/EUR", "cancel_only", False, 200)]
    with driver(db_url) as conn:
        old_schema(conn, mysql, 1, without("markets", "status_changed", *RULES), without("orders", "agent", "lookups"))
        for m, s, a, t in listing:
            execute(conn, "INSERT INTO markets (exchange, market, base, quote, status, available, first_seen, "
                          "last_seen) VALUES ('kraken', %s, %s, 'EUR', %s, %s, %s, 300)", (m, m[:3], s, a, t))
        for c in map(candle, range(5)):
            execute(conn, "INSERT INTO candles VALUES ('kraken', 'BTC/EUR', 1, %s, %s, %s, %s, %s, %s)",
                    (c.ts, *(format(v, "f") for v in (c.open, c.high, c.low, c.close, c.volume))))

    db = MarketDB(db_url)
    assert [(r["market"], r["status"], r["available"], r["first_seen"], r["status_changed"])
            for r in db.markets("kraken")] == [(m, s, a, t, t) for m, s, a, t in listing]
    assert db.schema_version() == SCHEMA_VERSION
    assert db.candles("kraken", "BTC/EUR", 1) == [candle(i) for i in range(5)]
    assert db.upsert_markets("kraken", [market("BTC/EUR"), market("ETH/EUR")], seen_at=400) == \
        [("ETH/EUR", "cancel_only", "online")]
    assert {r["market"]: r["status_changed"] for r in db.markets("kraken")} == {"BTC/EUR": 100, "ETH/EUR": 400}
    db.close()


def test_a_v2_journal_belongs_to_the_default_agent_after_the_upgrade(db_url):
    """v3 adds orders.agent; the rows before it were the default namespace's (v4 counts lookups)."""
    mysql = not db_url.startswith("sqlite")
    with driver(db_url) as conn:
        old_schema(conn, mysql, 2, without("orders", "agent", "lookups"), without("markets", *RULES))
        execute(conn, "INSERT INTO orders (ref, namespace, exchange, market, side, thread, intent_at, status, "
                      "filled) VALUES ('old', 'live', 'kraken', 'BTC/EUR', 'buy', 1, 10, 'closed', '0.1')")
    db = MarketDB(db_url)
    assert [(r["ref"], r["lookups"]) for r in db.journal("live")] == [("old", 0)]
    assert list(db.open_positions("live", agent="crontrader")) == [1]
    assert db.open_positions("live", agent="other") == {}
    assert db.schema_version() == SCHEMA_VERSION
    db.close()


def test_a_v5_listing_gains_its_order_rules_at_the_next_listing(db_url):
    """v6 keeps each market's order rules; a market listed before has none (left out of
    market_rules) until available_markets lists it again, and then they read back whole."""
    mysql = not db_url.startswith("sqlite")
    with driver(db_url) as conn:
        old_schema(conn, mysql, 5, without("markets", *RULES))
        execute(conn, "INSERT INTO markets (exchange, market, base, quote, status, available, first_seen, "
                      "last_seen, status_changed) VALUES ('kraken', 'BTC/EUR', 'BTC', 'EUR', 'online', 1, 1, 1, 1)")
    db = MarketDB(db_url)
    assert db.market_rules("kraken") == {}
    assert db.schema_version() == SCHEMA_VERSION
    listed = [Market("BTC/EUR", "BTC", "EUR", "XXBTZEUR", "online", True, 1, 8, D("0.0001"), D("0.5"),
                     cost_decimals=5),
              Market("XRP/BTC", "XRP", "BTC", "XXRPXXBT", "online", True, 8, 6, D(10), D("0.00002"))]
    db.upsert_markets("kraken", listed, seen_at=2)
    rules = db.market_rules("kraken")
    assert sorted(rules) == ["BTC/EUR", "XRP/BTC"]
    for m in listed:
        got = rules[m.symbol]
        assert (got.base, got.quote, got.price_decimals, got.volume_decimals, got.cost_decimals) == \
            (m.base, m.quote, m.price_decimals, m.volume_decimals, m.cost_decimals)
        assert (got.min_volume, got.min_cost) == (m.min_volume, m.min_cost)
    db.close()


def test_agents_sharing_a_db_never_see_each_others_orders(market_db):
    """Recovery settles and rebuilds from its own agent's rows only (storage.namespace)."""
    db = market_db
    for agent, ref in (("alpha", "a-buy"), ("beta", "b-buy"), ("beta", "b-open")):
        db.journal_intent(ref, mode="live", agent=agent, exchange="kraken", market="BTC/EUR", side="buy",
                          thread=1, amount_quote=D(5))
    db.journal_result("a-buy", "closed", filled=D("0.1"), price=D(50), cost=D(5), fee=D("0.01"))
    db.journal_result("b-buy", "closed", filled=D("0.2"), price=D(25), cost=D(5), fee=D("0.01"))
    assert {n: p.ref for n, p in db.open_positions("live", agent="alpha").items()} == {1: "a-buy"}
    assert {n: p.ref for n, p in db.open_positions("live", agent="beta").items()} == {1: "b-buy"}
    assert db.open_intents("live", agent="alpha") == []
    assert [r["ref"] for r in db.open_intents("live", agent="beta")] == ["b-open"]
    assert [r["ref"] for r in db.journal("live", agent="alpha")] == ["a-buy"]
    assert db.journal("live") == []                      # nothing of the default agent's
    assert db.journal_row("b-open")["agent"] == "beta"


def index_columns(conn: Any, mysql: bool, index: str) -> list[str]:
    if mysql:
        return [c for c, in execute(conn, "SELECT column_name FROM information_schema.statistics WHERE table_schema "
                                          "= DATABASE() AND index_name = %s ORDER BY seq_in_index", (index,))]
    return [name for _, _, name in execute(conn, f"PRAGMA index_info({quote(index)})")]


def test_a_v6_journal_gets_its_mode_column_and_the_history_its_names(db_url):
    """v7 renames orders.namespace to mode, rows and indexes kept; a database from before the
    history gets the names of the migrations its schema_version counted, undated, once."""
    mysql = not db_url.startswith("sqlite")
    with driver(db_url) as conn:
        old_schema(conn, mysql, 6)
        MIGRATIONS[3](Cursor(conn.cursor(), mysql))          # v5's indexes, on orders.namespace
        execute(conn, "INSERT INTO orders (ref, namespace, exchange, market, side, thread, intent_at, status, "
                      "filled, cost, fee, result_at) VALUES ('old', 'live', 'kraken', 'BTC/EUR', 'buy', 1, 10, "
                      "'closed', '0.1', '5', '0.01', 11)")
    db = MarketDB(db_url)
    assert [(r["ref"], r["mode"]) for r in db.journal("live")] == [("old", "live")]
    assert list(db.open_positions("live")) == [1]
    assert db.schema_version() == SCHEMA_VERSION == 7
    history = dict(db._all("SELECT `name`, `applied_at` FROM `migrations`")[i].values()
                   for i in range(len(MIGRATIONS)))
    assert sorted(history) == sorted(map(migration_name, MIGRATIONS))
    assert [name for name, at in history.items() if at is not None] == ["v7_journal_mode"]
    db.close()
    MarketDB(db_url).ensure_schema()                       # nothing more to apply, nor to record
    with driver(db_url) as conn:
        assert execute(conn, "SELECT COUNT(*) FROM migrations")[0][0] == len(MIGRATIONS)
        for index, (_, columns) in INDEXES.items():
            assert index_columns(conn, mysql, index) == list(columns), index


def test_a_new_database_records_every_migration_as_applied(market_db, db_url):
    market_db.ensure_schema()
    history = {r["name"]: r["applied_at"] for r in market_db._all("SELECT * FROM `migrations`")}
    assert sorted(history) == sorted(map(migration_name, MIGRATIONS))
    assert all(at is not None for at in history.values())


def test_a_migration_unknown_to_the_code_is_refused(market_db, db_url):
    market_db.ensure_schema()
    with driver(db_url) as conn:
        execute(conn, "INSERT INTO migrations (name, applied_at) VALUES ('v8_from_the_future', 1)")
        execute(conn, "UPDATE schema_version SET version = 1")   # so that the upgrade runs
    with pytest.raises(StorageError, match="migration v8_from_the_future, unknown"):
        MarketDB(db_url).markets("kraken")


def test_a_schema_newer_than_the_code_is_refused(market_db, db_url):
    market_db.ensure_schema()
    with driver(db_url) as conn:
        execute(conn, "UPDATE schema_version SET version = %s", (SCHEMA_VERSION + 1,))
    with pytest.raises(StorageError, match=f"schema version {SCHEMA_VERSION + 1}, newer"):
        MarketDB(db_url).markets("kraken")


def test_pymysql_is_imported_only_for_a_mysql_url(tmp_path):
    """Every cron start imports the module; SQLite users never pay for PyMySQL's import."""
    code = ("import sys, includes.storage.marketdb as m; "
            "print('pymysql' in sys.modules); "
            f"m.MarketDB('sqlite:///{tmp_path / 'm.db'}').markets('kraken'); print('pymysql' in sys.modules); "
            "m.MarketDB('mysql+pymysql://u@127.0.0.1/x'); print('pymysql' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False", "True"]


# --- candles ----------------------------------------------------------------------------------

def test_candles_are_upserted_idempotently_and_read_back(market_db):
    btc = [candle(i, close=str(34000 + i)) for i in range(10)]
    for _ in range(2):
        market_db.upsert_candles("kraken", "BTC/EUR", 1, btc)
    market_db.upsert_candles("kraken", "ETH/EUR", 1, btc[:4])
    market_db.upsert_candles("kraken", "BTC/EUR", 60, btc[:1])
    market_db.upsert_candles("bittrex", "BTC/EUR", 1, btc)
    assert count(market_db, "candles") == 10 + 4 + 1 + 10
    assert market_db.candles("kraken", "BTC/EUR", 1) == btc
    assert market_db.candles("kraken", "BTC/EUR", 1, since=btc[2].ts, until=btc[5].ts) == btc[2:5]
    assert market_db.candles("kraken", "BTC/EUR", 60) == btc[:1]
    assert market_db.last_candle_ts("kraken", "BTC/EUR", 1) == btc[-1].ts
    assert market_db.last_candle_ts("kraken", "DOGE/EUR", 1) is None
    assert market_db.last_candle_ts_by_market("kraken", 1, ["BTC/EUR", "DOGE/EUR", "ETH/EUR"]) == {
        "BTC/EUR": btc[-1].ts, "ETH/EUR": btc[3].ts}
    assert market_db.last_candle_ts_by_market("kraken", 5, ["BTC/EUR"]) == {}


def test_an_open_candle_is_overwritten_not_duplicated(market_db):
    market_db.upsert_candles("kraken", "BTC/EUR", 1, [candle(0), candle(1, close="34000.1", closed=False)])
    market_db.upsert_candles("kraken", "BTC/EUR", 1, [candle(1, close="34010.7", volume="2.25")])
    assert market_db.candles("kraken", "BTC/EUR", 1) == [candle(0), candle(1, close="34010.7", volume="2.25")]
    assert count(market_db, "candles") == 2


def test_decimals_round_trip_exactly(market_db):
    values = [D("0.00000123"), D("34000.12345678"), D("0.000000000001"), D("999999999999999999.999999999999"),
              D("1E-8"), D("3.88E+12")]
    written = [Candle(T0 + 60 * i, v, v, v, v, v) for i, v in enumerate(values)]
    market_db.upsert_candles("kraken", "SHIB/EUR", 1, written)
    read = market_db.candles("kraken", "SHIB/EUR", 1)
    assert [c.close for c in read] == values
    assert all(isinstance(c.volume, D) for c in read)


def test_writes_go_in_batches(market_db, monkeypatch):
    monkeypatch.setattr(marketdb, "BATCH", 3)
    written = [candle(i) for i in range(10)]
    market_db.upsert_candles("kraken", "BTC/EUR", 1, iter(written))
    market_db.upsert_candles("kraken", "BTC/EUR", 1, written)
    assert market_db.candles("kraken", "BTC/EUR", 1) == written


def test_a_write_that_fails_midway_leaves_no_row(market_db, monkeypatch):
    monkeypatch.setattr(marketdb, "BATCH", 3)

    def feed():
        yield from map(candle, range(7))
        raise RuntimeError("the exchange's reply broke off")

    with pytest.raises(RuntimeError):
        market_db.upsert_candles("kraken", "BTC/EUR", 1, feed())
    assert market_db.candles("kraken", "BTC/EUR", 1) == []


def test_a_value_the_server_refuses_fails_the_whole_write(mariadb_url, monkeypatch):
    monkeypatch.setattr(marketdb, "BATCH", 3)
    db = MarketDB(mariadb_url)
    with pytest.raises(StorageError, match="Out of range value"):
        db.upsert_candles("kraken", "BTC/EUR", 1, [candle(0), candle(1), candle(2), candle(3, close="1E+20")])
    assert db.candles("kraken", "BTC/EUR", 1) == []
    db.close()


def test_close_at_is_the_last_close_known_at_that_time(market_db):
    market_db.upsert_candles("kraken", "BTC/EUR", 1, [candle(i, close=str(100 + i)) for i in range(5)])
    close_of_2 = T0 + 3 * 60
    assert market_db.close_at("kraken", "BTC/EUR", 1, close_of_2) == D(102)
    assert market_db.close_at("kraken", "BTC/EUR", 1, close_of_2 - 1) == D(101)
    assert market_db.close_at("kraken", "BTC/EUR", 1, T0 + 10_000) == D(104)
    assert market_db.close_at("kraken", "BTC/EUR", 1, T0 + 59) is None


def test_closes_at_many_times_in_one_query_agree_with_the_trend_arithmetic(market_db):
    """What the agent's trends read: trends.price_at over the candles since `since`, with gaps."""
    kept = [i for i in range(200) if i % 7 not in (3, 4)]          # a market with holes in its history
    market_db.upsert_candles("kraken", "BTC/EUR", 5, [candle(i * 5, close=str(1000 + i)) for i in kept])
    market_db.upsert_candles("kraken", "ETH/EUR", 5, [candle(i * 5, close="1") for i in range(200)])
    times = [T0 + s for s in range(-600, 200 * 300 + 900, 419)]
    for since in (None, T0 + 50 * 300, T0 + 50 * 300 + 1):
        candles = market_db.candles("kraken", "BTC/EUR", 5, since=since)
        assert market_db.closes_at("kraken", "BTC/EUR", 5, times, since) == [price_at(candles, t, 5) for t in times]
    assert market_db.closes_at("kraken", "BTC/EUR", 5, []) == []
    assert market_db.closes_at("kraken", "NOPE/EUR", 5, [T0 + 9000]) == [None]


# --- markets, tickers, global metrics -------------------------------------------------------

def test_market_status_changes_are_tracked(market_db):
    listing = [market("BTC/EUR"), market("ETH/EUR"), market("XRP/EUR")]
    assert market_db.upsert_markets("kraken", listing, seen_at=1000) == [
        ("BTC/EUR", None, "online"), ("ETH/EUR", None, "online"), ("XRP/EUR", None, "online")]
    assert market_db.upsert_markets("kraken", listing, seen_at=2000) == []
    changes = market_db.upsert_markets("kraken", [market("BTC/EUR"), market("ETH/EUR", "cancel_only", False)],
                                       seen_at=3000)
    assert changes == [("ETH/EUR", "online", "cancel_only"), ("XRP/EUR", "online", "delisted")]
    assert market_db.upsert_markets("kraken", [market("BTC/EUR"), market("ETH/EUR", "cancel_only", False)],
                                    seen_at=4000) == []
    got = {r["market"]: (r["status"], r["available"], r["first_seen"], r["last_seen"], r["status_changed"])
           for r in market_db.markets("kraken")}
    assert got == {"BTC/EUR": ("online", True, 1000, 4000, 1000),
                   "ETH/EUR": ("cancel_only", False, 1000, 4000, 3000),
                   "XRP/EUR": ("delisted", False, 1000, 2000, 3000)}
    assert market_db.available_markets("kraken") == ["BTC/EUR"]
    assert market_db.markets("bittrex") == []
    assert market_db.upsert_markets("kraken", [market("XRP/EUR")] + listing[:1], seen_at=5000)[0] == \
        ("XRP/EUR", "delisted", "online")


def test_tickers_are_upserted_idempotently(market_db):
    tickers = [Ticker("BTC/EUR", 50, D("34000.1"), D("33999.9"), D("34000.3"), D("1234.56789012"),
                      vwap_24h=D("33950.12345678")),
               Ticker("SHIB/EUR", 51, D("0.00000123"), D("0.00000122"), D("0.00000124"), D("98765432109.5"))]
    for _ in range(2):
        market_db.insert_tickers("kraken", tickers, ts=60)
    market_db.insert_tickers("kraken", tickers)
    got = rows(market_db, "tickers")
    assert [(r["market"], r["ts"]) for r in got] == [("BTC/EUR", 50), ("BTC/EUR", 60), ("SHIB/EUR", 51),
                                                     ("SHIB/EUR", 60)]
    assert [r["last"] for r in got] == [D("34000.1"), D("34000.1"), D("0.00000123"), D("0.00000123")]
    assert got[0]["vwap_24h"] == D("33950.12345678") and got[2]["vwap_24h"] is None
    assert got[3]["volume_24h"] == D("98765432109.5")


def test_global_metrics_are_upserted_idempotently(market_db):
    metrics = GlobalMetrics(ts=60, quote="EUR", total_market_cap=D("1265000000000.12"),
                            total_volume_24h=D("58100000000.5"), btc_dominance=D("51.234567"),
                            active_cryptocurrencies=8800)
    for _ in range(2):
        market_db.insert_global_metrics("coinmarketcap", [metrics])
    assert rows(market_db, "global_metrics") == [
        {"ts": 60, "source": "coinmarketcap", "total_market_cap": D("1265000000000.12"),
         "total_volume_24h": D("58100000000.5"), "btc_dominance": D("51.234567"),
         "active_cryptocurrencies": 8800, "quote": "EUR"}]


# --- the order journal ------------------------------------------------------------------------

def test_the_journal_records_intents_then_results(market_db):
    db = market_db
    db.journal_intent("ref-1", mode="live", exchange="kraken", market="BTC/EUR", side="buy", thread=1,
                      amount_quote=D("5"), at=100)
    db.journal_intent("ref-2", mode="dry", exchange="kraken", market="ETH/EUR", side="buy", thread=1,
                      amount_quote=D("5"), at=101)
    with pytest.raises(StorageError, match="order 'ref-1' is already journaled"):
        db.journal_intent("ref-1", mode="live", exchange="kraken", market="BTC/EUR", side="buy", thread=1)
    assert [r["ref"] for r in db.open_intents("live")] == ["ref-1"]

    db.journal_result("ref-1", "sent", order_id="OQCLML-BW3P3-BUCMWZ", at=102)
    assert [r["status"] for r in db.open_intents("live")] == ["sent"]
    buy = Order("ref-1", "OQCLML-BW3P3-BUCMWZ", "BTC/EUR", "buy", "closed", D("0.00012345"), D("0.00012345"),
                D("40501.3"), D("4.99988"), D("0.01299969"), opened_at=102.5, closed_at=103.9)
    db.journal_order(buy)
    row = db.journal_row("ref-1")
    assert (row["status"], row["filled"], row["price"], row["cost"], row["fee"], row["intent_at"],
            row["result_at"]) == ("closed", D("0.00012345"), D("40501.3"), D("4.99988"), D("0.01299969"),
                                  100, 103.9)
    assert row["amount_quote"] == D(5) and row["volume"] is None and row["mode"] == "live"
    assert db.open_intents("live") == []
    assert {n: p.ref for n, p in db.open_positions("live").items()} == {1: "ref-1"}
    assert db.open_positions("dry") == {}

    db.journal_intent("ref-3", mode="live", exchange="kraken", market="BTC/EUR", side="sell", thread=1,
                      volume=D("0.00012345"), at=200)
    db.journal_result("ref-3", "unknown", error="no reply within 10 s", at=201)
    assert [r["ref"] for r in db.open_intents("live")] == ["ref-3"]
    db.journal_result("ref-3", "closed", order_id="O2", filled=D("0.00012345"), price=D("41999.95"),
                      cost=D("5.18"), fee=D("0.0134"), at=202)
    db.journal_result("ref-3", "closed", at=202)  # the same report again changes nothing, and is no error
    assert db.journal_row("ref-3")["error"] == "no reply within 10 s"
    assert db.open_positions("live") == {}
    assert [r["ref"] for r in db.journal("live")] == ["ref-1", "ref-3"]
    assert [r["ref"] for r in db.journal("live", since=150)] == ["ref-3"]
    assert db.journal_row("nope") is None
    with pytest.raises(StorageError, match="no journaled order 'nope'"):
        db.journal_result("nope", "failed")
    with pytest.raises(ValueError, match="mode 'paper'"):
        db.journal_intent("ref-4", mode="paper", exchange="kraken", market="BTC/EUR", side="buy")
    with pytest.raises(ValueError, match="order status 'done'"):
        db.journal_result("ref-3", "done")


def test_the_journal_keeps_the_order_of_intents_made_in_the_same_second(market_db):
    for ref in ("z-first", "a-second", "m-third"):
        market_db.journal_intent(ref, mode="dry", exchange="kraken", market="BTC/EUR", side="buy", thread=1)
    assert [r["ref"] for r in market_db.journal("dry")] == ["z-first", "a-second", "m-third"]


# --- trimming ---------------------------------------------------------------------------------

def test_old_rows_are_deleted_in_batches(market_db):
    db = market_db
    db.upsert_candles("kraken", "BTC/EUR", 1, [candle(i) for i in range(10)])
    db.upsert_candles("kraken", "ETH/EUR", 1, [candle(i) for i in range(10)])
    assert db.delete_older_than("candles", T0 + 7 * 60, batch=3) == 14
    assert db.candles("kraken", "BTC/EUR", 1) == [candle(i) for i in range(7, 10)]
    assert db.delete_older_than("candles", T0 + 7 * 60, batch=3) == 0

    db.insert_tickers("kraken", [Ticker("BTC/EUR", t, D(1), D(1), D(1), D(1)) for t in (10, 20, 30)])
    assert db.delete_older_than("tickers", 25) == 2 and count(db, "tickers") == 1

    db.journal_intent("settled", mode="live", exchange="kraken", market="BTC/EUR", side="buy", at=10)
    db.journal_result("settled", "closed", at=20)
    for table in ("orders", "markets"):  # the journal is never trimmed; markets go with the archive
        with pytest.raises(ValueError, match=f"'{table}' is not one of"):
            db.delete_older_than(table, 50)
    assert [r["ref"] for r in db.journal("live")] == ["settled"]


# --- failures ---------------------------------------------------------------------------------

def test_an_unreachable_server_is_named_without_its_password(unreachable_url, closed_port):
    db = MarketDB(unreachable_url)
    with pytest.raises(DatabaseUnreachable) as caught:
        db.last_candle_ts("kraken", "BTC/EUR", 1)
    message = str(caught.value)
    assert f"crontrader:***@127.0.0.1:{closed_port}/market is unreachable" in message
    assert "s3cret-pw" not in message and "\n" not in message


def test_a_lost_connection_is_unreachable_then_the_next_call_reconnects(mariadb_url):
    db = MarketDB(mariadb_url)
    db.upsert_candles("kraken", "BTC/EUR", 1, [candle(0)])
    with driver(mariadb_url) as conn:
        [(mine,)] = execute(conn, "SELECT id FROM information_schema.processlist WHERE db = DATABASE() "
                                  "AND id <> CONNECTION_ID()")
        execute(conn, f"KILL {mine}")
    with pytest.raises(DatabaseUnreachable, match="Lost connection|gone away") as caught:
        db.upsert_candles("kraken", "BTC/EUR", 1, [candle(1)])
    assert "\n" not in str(caught.value)
    assert db.candles("kraken", "BTC/EUR", 1) == [candle(0)]
    db.upsert_candles("kraken", "BTC/EUR", 1, [candle(1)])
    assert db.last_candle_ts("kraken", "BTC/EUR", 1) == candle(1).ts
    db.close()
    db.close()  # closing twice is harmless, and a closed MarketDB opens again when used
    assert len(db.candles("kraken", "BTC/EUR", 1)) == 2
    db.close()


def test_another_database_error_is_one_line_naming_the_url(market_db, db_url):
    with pytest.raises(StorageError) as caught:
        market_db._all("SELECT nope FROM `candles`")
    assert not isinstance(caught.value, DatabaseUnreachable)
    assert str(caught.value).startswith(f"market DB {db_url}: ") and "\n" not in str(caught.value)
    assert market_db.candles("kraken", "BTC/EUR", 1) == []  # the connection is still good


def test_a_missing_sqlite_directory_is_refused_not_unreachable(tmp_path):
    with pytest.raises(StorageRefused, match="unable to open database"):
        MarketDB(f"sqlite:///{tmp_path / 'no' / 'such' / 'market.db'}").markets("kraken")


def test_an_unknown_database_is_refused_not_unreachable(mariadb_url):
    with pytest.raises(StorageRefused, match="Unknown database 'ct_missing'"):
        MarketDB(mariadb_url.rpartition("/")[0] + "/ct_missing").markets("kraken")


def test_archived_rows_stream_while_the_db_is_used(market_db):
    """The backup reads and writes the DB between two rows of the stream."""
    market_db.upsert_candles("kraken", "BTC/EUR", 1, [candle(i) for i in range(5)])
    seen = []
    for row in market_db.archived_rows("candles", T0 + 3 * 60):
        seen.append(row)
        market_db.insert_tickers("kraken", [Ticker("BTC/EUR", row[3], D(1), D(1), D(1), D(1))])
        assert market_db.last_candle_ts("kraken", "BTC/EUR", 1) == candle(4).ts
    assert seen == [("kraken", "BTC/EUR", 1, c.ts, c.open, c.high, c.low, c.close, c.volume)
                    for c in map(candle, range(3))]
    assert count(market_db, "tickers") == 3


@pytest.mark.parametrize("url", [
    "mysql+pymysql//crontrader:s3cret-pw@db.example/market",       # no colon after the scheme
    "mysql+pymysql://crontrader:s3cret-pw@db.example:port/market",  # port not a number
    "nosuchdb://crontrader:s3cret-pw@db.example/market",            # no such dialect
    "mysql+pymysql://crontrader:s3cret-pw@db.example/market?nosuch=1",  # no such driver option
])
def test_a_malformed_url_is_named_without_its_password(url):
    with pytest.raises(StorageError, match="is malformed") as caught:
        MarketDB(url)
    assert "crontrader:***@db.example" in str(caught.value) and "s3cret-pw" not in str(caught.value)


def test_mysql_urls_are_read_as_before():
    """As SQLAlchemy read them: a password may hold / ? #, an @ is %40; options go to PyMySQL."""
    args = mysql_args("mysql+pymysql://ct:p%40ss/w?rd#@db.example:3307/market?read_timeout=30")
    assert {k: args[k] for k in ("host", "port", "user", "password", "database", "read_timeout")} == {
        "host": "db.example", "port": 3307, "user": "ct", "password": "p@ss/w?rd#", "database": "market",
        "read_timeout": 30}
    assert mysql_args("mysql+pymysql://root@127.0.0.1/market")["port"] == 3306


def test_tls_to_mysql_is_what_the_url_asks_for(mariadb_url):
    """No TLS unless asked (the server here offers none); asked, it is required and verified."""
    plain = mysql_args("mysql+pymysql://root@127.0.0.1/market")
    assert plain["ssl_disabled"] is True
    asked = mysql_args("mysql+pymysql://root@db.example/market?ssl_ca=/etc/ssl/ca.pem&ssl_verify_identity=1")
    assert "ssl_disabled" not in asked and asked["ssl_ca"] == "/etc/ssl/ca.pem"
    db = MarketDB(mariadb_url)
    try:
        assert db.markets("kraken") == []           # connected, in the clear
        assert db._conn.ssl is False
    finally:
        db.close()
    with pytest.raises(StorageError, match="SSL is required but the server doesn't support it"):
        MarketDB(f"{mariadb_url}?ssl_ca={certifi.where()}").markets("kraken")
    with pytest.raises(StorageError, match="TLS set-up failed.*No such file"):
        MarketDB(mariadb_url + "?ssl_ca=/nonexistent/ca.pem").markets("kraken")


def test_a_refused_login_is_named_without_its_password(mariadb_url):
    url = mariadb_url.replace("://root@", "://ct_nobody:s3cret-pw@")
    with pytest.raises(StorageRefused, match="Access denied") as caught:
        MarketDB(url).markets("kraken")
    assert "ct_nobody:***@127.0.0.1" in str(caught.value) and "s3cret-pw" not in str(caught.value)


# --- the dialect layer (includes/storage/sql.py) ----------------------------------------------

def test_quote_makes_any_name_one_identifier(market_db, db_url):
    """A reserved word and a backtick in a name: both dialects read the quoted name back whole."""
    assert quote("interval") == "`interval`" and quote("a`b") == "`a``b`"
    with market_db._transaction(write=True) as db:
        db.execute(f"CREATE TABLE {quote('we`ird')} ({quote('select')} INTEGER, {quote('interval')} INTEGER)")
        db.execute(f"INSERT INTO {quote('we`ird')} ({quote('select')}, {quote('interval')}) VALUES (%s, %s)", (1, 2))
        assert db.query(f"SELECT {quote('select')}, {quote('interval')} FROM {quote('we`ird')}") == [
            {"select": 1, "interval": 2}]


def test_statements_are_traced_at_debug_without_their_parameters(market_db, caplog):
    """--verbose sets DEBUG: each statement with its duration, never its values (secrets)."""
    market_db.ensure_schema()
    with caplog.at_level(logging.INFO, logger="includes.storage.sql"):
        market_db.markets("kraken")
    assert not caplog.records
    with caplog.at_level(logging.DEBUG, logger="includes.storage.sql"):
        market_db.markets("secret-exchange")
    traced = [r.getMessage() for r in caplog.records if r.name == "includes.storage.sql"]
    assert any(re.match(r"\d+\.\d ms SELECT .* FROM `markets` WHERE `exchange` = %s", m) for m in traced), traced
    assert not any("secret-exchange" in m for m in traced)


def test_a_url_option_pymysql_is_not_given_is_refused():
    """The accepted options are a documented list (sql.URL_OPTIONS); others are one-line errors."""
    assert mysql_args("mysql+pymysql://u@h/db?charset=utf8mb4&ssl_ca=/ca.pem")["ssl_ca"] == "/ca.pem"
    for option in ("nope", "cursorclass", "autocommit", "client_flag"):
        with pytest.raises(ValueError, match=f"PyMySQL takes no option {option}"):
            mysql_args(f"mysql+pymysql://u@h/db?{option}=1")
    with pytest.raises(StorageError, match="is malformed or unsupported: PyMySQL takes no option nope"):
        MarketDB("mysql+pymysql://u:pw@h/db?nope=1")


def test_column_kinds_render_per_dialect():
    assert TABLES["candles"].types["close"].render(True) == "DECIMAL(30, 12) NOT NULL"
    assert TABLES["candles"].types["close"].render(False) == "VARCHAR(40) NOT NULL"
    assert TABLES["orders"].types["lookups"].render(False) == "INTEGER NOT NULL DEFAULT 0"
    assert "CHARACTER SET ascii" in TABLES["candles"].ddl(True) and "ascii" not in TABLES["candles"].ddl(False)
    assert TABLES["orders"].amounts == {"amount_quote", "volume", "filled", "price", "cost", "fee"}


def test_both_journals_are_the_journal_protocol(market_db):
    """MarketDB and the backtest's MemoryMarketDB declare Journal and take its parameters, by
    the same names: the agent may be given either."""
    import inspect

    from includes.storage.journal import Journal
    from includes.storage.memory import MemoryMarketDB

    methods = [name for name in vars(Journal) if name.startswith(("journal", "open_"))]
    assert {"journal_intent", "journal_result", "journal", "open_intents", "open_positions"} <= set(methods)
    for db in (market_db, MemoryMarketDB()):
        assert isinstance(db, Journal)
        for name in methods:
            wanted = list(inspect.signature(getattr(Journal, name)).parameters)[1:]
            assert list(inspect.signature(getattr(db, name)).parameters)[:len(wanted)] == wanted, (db, name)
    with pytest.raises(ValueError, match="mode 'paper'"):
        MemoryMarketDB().journal_intent("p", mode="paper", exchange="kraken", market="BTC/EUR", side="buy")
    with pytest.raises(ValueError, match="order status 'lost'"):
        market_db.journal_result("p", "lost")


def test_a_journal_archived_before_v7_restores_into_mode(market_db):
    """A trading record backed up when the column was `namespace` comes back under `mode`."""
    columns = ["ref", "namespace", "exchange", "market", "side", "thread", "intent_at", "status", "agent", "lookups"]
    market_db.restore_rows("orders", columns, [["r1", "dry", "kraken", "BTC/EUR", "buy", 1, 10.0, "closed",
                                                "crontrader", 0]])
    assert [(r["ref"], r["mode"]) for r in market_db.journal("dry")] == [("r1", "dry")]


def test_mariadb_candle_batches_are_traced_without_their_values(mariadb_url, caplog):
    db = MarketDB(mariadb_url)
    try:
        with caplog.at_level(logging.DEBUG, logger="includes.storage.sql"):
            db.upsert_candles("kraken", "BTC/EUR", 1, [candle(i) for i in range(3)])
        traced = [r.getMessage() for r in caplog.records if "INSERT INTO `candles`" in r.getMessage()]
        assert len(traced) == 1 and "(3 rows)" in traced[0] and "BTC/EUR" not in traced[0]
        assert db.candles("kraken", "BTC/EUR", 1) == [candle(i) for i in range(3)]
    finally:
        db.close()
