"""The spool: rows written while the market DB is down reach it, exactly, on the next good run."""
from __future__ import annotations

import json
from dataclasses import replace
from decimal import Decimal as D

import pytest

from includes.model import Candle, GlobalMetrics, Market, Ticker
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
    """An open candle spooled twice is spooled once, with its later values, as if never spooled."""
    spool = Spool(tmp_path)
    down = MarketDB(unreachable_url)
    final = Candle(T0, D("34000.1"), D("34020"), D("33990"), D("34019.5"), D("2.5"))
    spool.write(down, "upsert_candles", exchange="kraken", market="BTC/EUR", interval=1, candles=CANDLES[:1])
    spool.write(down, "upsert_candles", exchange="kraken", market="BTC/EUR", interval=1, candles=[final])
    assert len(spool.files()) == 1
    db = MarketDB(sqlite_url)
    assert spool.replay(db) == 1
    assert db.candles("kraken", "BTC/EUR", 1) == [final]


def test_a_reachable_db_gets_the_rows_directly(tmp_path, sqlite_url):
    spool = Spool(tmp_path / "spool")
    db = MarketDB(sqlite_url)
    assert write_everything(spool, db)[0] == [("BTC/EUR", None, "online"), ("ETH/EUR", None, "cancel_only")]
    assert spool.files() == [] and db.candles("kraken", "BTC/EUR", 1)[1].volume == D("98765432109.123456789012")


# --- each row once, a cap by size and by age, what the spool holds ---------------------------------------

class Clock:
    """Unix time the spool reads: set by the test, never slept through."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def spooled_rows(spool: Spool) -> list[tuple]:
    """Every row in the spool with its table's primary key, as replay would write it."""
    from includes.storage.spool import read

    keys = []
    for path in spool.files():
        method, args = read(path)
        for row in args.pop({"upsert_markets": "markets", "upsert_candles": "candles",
                             "insert_tickers": "tickers", "insert_global_metrics": "metrics"}[method]):
            if method == "upsert_candles":
                keys.append(("candles", args["exchange"], args["market"], args["interval"], row.ts))
            elif method == "insert_tickers":
                keys.append(("tickers", args["exchange"], row.market, args["ts"] or row.ts))
            elif method == "upsert_markets":
                keys.append(("markets", args["exchange"], row.symbol))
            else:
                keys.append(("global_metrics", args["source"], row.ts))
    return keys


def cycle(spool: Spool, db: MarketDB, i: int) -> None:
    """One get_api_data cycle i, 10 minutes after the last: what a DB down makes it fetch again.

    The last 30 one-minute candles (the newest open, its close moving with i), a ticker
    snapshot, the listing (ETH/EUR's status changing on cycle 2) and the global metrics of
    the last two cycles (CoinMarketCap's latest may be the one already fetched).
    """
    now = T0 + 600 * i
    candles = [Candle(now - 60 * k, D(34000), D(34100), D(33900), D(34000 + i) + D(k) / 1000, D("1.5"),
                      closed=k > 0) for k in range(30)][::-1]
    markets = [MARKETS[0], replace(MARKETS[1], status="online", available=True) if i >= 2 else MARKETS[1]]
    spool.write(db, "upsert_markets", exchange="kraken", markets=markets, seen_at=now)
    spool.write(db, "insert_tickers", exchange="kraken", tickers=[replace(TICKERS[0], ts=now)], ts=now)
    spool.write(db, "upsert_candles", exchange="kraken", market="BTC/EUR", interval=1, candles=candles)
    spool.write(db, "insert_global_metrics", source="coinmarketcap",
                metrics=[replace(METRICS[0], ts=T0 + 600 * max(0, i - 1)), replace(METRICS[0], ts=now)])


def test_cycles_with_the_db_down_spool_each_row_once_and_replay_it_once(tmp_path, unreachable_url, db_url):
    spool = Spool(tmp_path / "spool")
    down = MarketDB(unreachable_url)
    for i in range(5):
        cycle(spool, down, i)
    keys = spooled_rows(spool)
    assert len(keys) == len(set(keys))                           # each row once
    candles = {k for k in keys if k[0] == "candles"}
    assert len(candles) == 30 + 4 * 10                           # 30 minutes, then 10 more a cycle
    assert sum(k[0] == "markets" for k in keys) == 2            # the newest listing only
    assert sum(k[0] == "tickers" for k in keys) == 5 and sum(k[0] == "global_metrics" for k in keys) == 5

    db = MarketDB(db_url)
    assert spool.replay(db) == len(keys)
    assert spool.files() == []
    stored = db.candles("kraken", "BTC/EUR", 1)
    assert len(stored) == len(candles)
    assert stored[-1].close == D(34004) and stored[-30].close == D(34004) + D("0.029")   # the newest values
    assert stored[0].close == D(34000) + D("0.029")
    assert len(db._all("SELECT * FROM tickers")) == 5 and len(db._all("SELECT * FROM global_metrics")) == 5
    assert {m["market"]: m["status"] for m in db.markets("kraken")} == {"BTC/EUR": "online", "ETH/EUR": "online"}


def test_the_size_cap_drops_the_oldest_batches_and_says_so(tmp_path, unreachable_url, caplog):
    spool = Spool(tmp_path, max_mb=0.002)                        # 2,000 bytes
    down = MarketDB(unreachable_url)
    for i in range(8):
        spool.write(down, "upsert_candles", exchange="kraken", market="BTC/EUR", interval=1,
                    candles=[replace(CANDLES[0], ts=T0 + 600 * i + 60 * k) for k in range(2)])
    held = spool.holding()
    assert 0 < held.bytes <= 2000 and held.files < 8
    kept = sorted(k[4] for k in spooled_rows(spool))
    assert kept == [T0 + 600 * i + 60 * k for i in range(8 - held.files, 8) for k in range(2)]  # the newest
    dropped = 8 - held.files
    assert spool.told() == (f"spool full: dropped the oldest {dropped} batches ({2 * dropped} rows, 0.0 MB) beyond "
                            f"0.002 MB (storage.spool_max_mb); those rows never reach the market DB ({tmp_path})")
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == dropped and all("over storage.spool_max_mb" in e for e in errors)


def test_the_age_cap_drops_batches_older_than_the_days(tmp_path, unreachable_url):
    clock = Clock(T0)
    spool = Spool(tmp_path, max_days=2, clock=clock)
    down = MarketDB(unreachable_url)
    for day in range(4):
        clock.now = T0 + 86400 * day
        spool.write(down, "upsert_candles", exchange="kraken", market="BTC/EUR", interval=1,
                    candles=[replace(CANDLES[0], ts=T0 + 86400 * day)])
    assert [k[4] for k in spooled_rows(spool)] == [T0 + 86400, T0 + 2 * 86400, T0 + 3 * 86400]   # 2 days old: kept
    assert spool.told() == ("spool full: dropped the oldest 1 batch (1 row, 0.0 MB) older than 2 days "
                            f"(storage.spool_max_days); those rows never reach the market DB ({tmp_path})")
    held = spool.holding()
    assert (held.files, held.rows, held.oldest) == (3, 3, T0 + 86400)
    clock.now = T0 + 3 * 86400 + 1800
    assert held.describe(clock()).startswith("the spool holds 3 batches, 3 rows, 0.0 MB, the oldest 2.0 days old")


def test_a_spool_never_written_says_nothing_and_a_replayed_one_is_empty(tmp_path, unreachable_url, sqlite_url):
    spool = Spool(tmp_path)
    assert spool.told() is None and not spool.used
    write_everything(spool, MarketDB(unreachable_url))
    assert spool.used
    replayer = Spool(tmp_path)
    replayer.replay(MarketDB(sqlite_url))
    assert replayer.used and replayer.holding().describe(T0) == "the spool is empty"
