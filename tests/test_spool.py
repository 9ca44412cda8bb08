"""The spool: rows written while the market DB is down reach it, exactly, on the next good run."""
from __future__ import annotations

import json
from dataclasses import replace
from decimal import Decimal as D

import pytest

from includes.coinmarketcap import GlobalMetrics
from includes.errors import StorageError
from includes.platforms.base import Candle, Market, Ticker
from includes.storage.marketdb import DatabaseUnreachable, MarketDB
from includes.storage.spool import Spool

T0 = 1_700_000_040
CANDLES = [Candle(T0, D("34000.1"), D("34010.12345678"), D("33990"), D("34005.5"), D("0.00000123")),
           Candle(T0 + 60, D("0.00000123"), D("0.00000125"), D("0.00000120"), D("0.00000124"),
                  D("98765432109.123456789012"), closed=False)]
TICKERS = [Ticker("BTC/EUR", T0, D("34005.5"), D("34005.4"), D("34005.6"), D("1234.56789012"),
                  vwap_24h=D("33950.12345678"))]
MARKETS = [Market("BTC/EUR", "BTC", "EUR", "XXBTZEUR", "online", True, 1, 8, D("0.0001"), D("0.5")),
           Market("ETH/EUR", "ETH", "EUR", "XETHZEUR", "cancel_only", False, 2, 8, D("0.01"), D("0.5"))]
METRICS = [GlobalMetrics(T0, "EUR", D("1265000000000.12"), D("58100000000.5"), D("51.234567"), 8800)]


def write_everything(spool: Spool, db: MarketDB) -> list:
    return [spool.write(db, "upsert_markets", exchange="kraken", markets=MARKETS, seen_at=T0),
            spool.write(db, "upsert_candles", exchange="kraken", market="BTC/EUR", interval=1,
                        candles=iter(CANDLES)),
            spool.write(db, "insert_tickers", exchange="kraken", tickers=TICKERS, ts=T0 + 5),
            spool.write(db, "insert_global_metrics", source="coinmarketcap", metrics=METRICS)]


def content(db: MarketDB) -> tuple:
    tickers = db._all("SELECT * FROM tickers ORDER BY exchange, market, ts")
    metrics = db._all("SELECT * FROM global_metrics ORDER BY source, ts")
    return [dict(r) for r in db.markets("kraken")], db.candles("kraken", "BTC/EUR", 1), tickers, metrics


def test_rows_spooled_while_the_db_is_down_are_replayed_exactly(tmp_path, unreachable_url, db_url):
    spool = Spool(tmp_path / "spool")
    assert write_everything(spool, MarketDB(unreachable_url)) == [None] * 4
    files = spool.files()
    assert [f.name.split("-", 2)[2] for f in files] == [
        "upsert_markets.jsonl", "upsert_candles.jsonl", "insert_tickers.jsonl", "insert_global_metrics.jsonl"]
    assert list((tmp_path / "spool").glob("*.tmp")) == []

    db = MarketDB(db_url)
    assert spool.replay(db) == len(MARKETS) + len(CANDLES) + len(TICKERS) + len(METRICS)
    assert spool.files() == []
    reference = MarketDB(f"sqlite:///{tmp_path / 'reference.db'}")
    assert write_everything(spool, reference)[0] == [("BTC/EUR", None, "online"), ("ETH/EUR", None, "cancel_only")]
    assert content(db) == content(reference)
    markets, candles, tickers, metrics = content(db)
    assert candles == [CANDLES[0], replace(CANDLES[1], closed=True)]  # the DB keeps no "closed" flag
    assert tickers[0]["vwap_24h"] == D("33950.12345678")
    assert metrics[0]["total_market_cap"] == D("1265000000000.12")
    assert spool.replay(db) == 0


def test_a_spool_file_is_json_lines_with_exact_decimal_strings(tmp_path, unreachable_url):
    spool = Spool(tmp_path)
    spool.write(MarketDB(unreachable_url), "upsert_candles", exchange="kraken", market="BTC/EUR", interval=1,
                candles=CANDLES)
    lines = [json.loads(line) for line in spool.files()[0].read_text().splitlines()]
    assert lines[0] == {"method": "upsert_candles", "args": {"exchange": "kraken", "market": "BTC/EUR",
                                                             "interval": 1}}
    assert lines[2] == {"ts": T0 + 60, "open": "0.00000123", "high": "0.00000125", "low": "0.00000120",
                        "close": "0.00000124", "volume": "98765432109.123456789012", "closed": False}


def test_replay_stops_at_a_failure_and_keeps_the_files(tmp_path, unreachable_url, sqlite_url):
    spool = Spool(tmp_path)
    down = MarketDB(unreachable_url)
    write_everything(spool, down)
    with pytest.raises(DatabaseUnreachable):
        spool.replay(down)
    assert len(spool.files()) == 4



def test_an_unreadable_file_is_set_aside_and_the_others_replayed(tmp_path, unreachable_url, sqlite_url, caplog):
    spool = Spool(tmp_path)
    write_everything(spool, MarketDB(unreachable_url))
    bad = spool.files()[2]
    bad.write_text("not json\n")
    (tmp_path / "99999999999999999999-1-upsert_candles.jsonl").mkdir()     # a directory, named as a batch
    db = MarketDB(sqlite_url)
    assert spool.replay(db) == len(MARKETS) + len(CANDLES) + len(METRICS)
    assert spool.files() == []
    assert sorted(p.name for p in spool.bad.iterdir()) == [bad.name, "99999999999999999999-1-upsert_candles.jsonl"]
    assert db.candles("kraken", "BTC/EUR", 1)[0] == CANDLES[0]
    caplog.clear()
    assert spool.replay(db) == 0                                    # every later run says so, in one line
    [line] = [r.getMessage() for r in caplog.records]
    assert line.startswith(f"2 unreadable spool files set aside in {spool.bad} (") and "look at them" in line


def test_later_batches_win_over_earlier_ones(tmp_path, unreachable_url, sqlite_url):
    """An open candle spooled twice ends with its later values, as if never spooled."""
    spool = Spool(tmp_path)
    down = MarketDB(unreachable_url)
    final = Candle(T0, D("34000.1"), D("34020"), D("33990"), D("34019.5"), D("2.5"))
    spool.write(down, "upsert_candles", exchange="kraken", market="BTC/EUR", interval=1, candles=CANDLES[:1])
    spool.write(down, "upsert_candles", exchange="kraken", market="BTC/EUR", interval=1, candles=[final])
    db = MarketDB(sqlite_url)
    assert spool.replay(db) == 2
    assert db.candles("kraken", "BTC/EUR", 1) == [final]


def test_a_reachable_db_gets_the_rows_directly(tmp_path, sqlite_url):
    spool = Spool(tmp_path / "spool")
    db = MarketDB(sqlite_url)
    assert write_everything(spool, db)[0] == [("BTC/EUR", None, "online"), ("ETH/EUR", None, "cancel_only")]
    assert spool.files() == [] and db.candles("kraken", "BTC/EUR", 1)[1].volume == D("98765432109.123456789012")
