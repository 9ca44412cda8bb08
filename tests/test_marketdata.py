"""get_api_data and available_markets against the Kraken simulator, into SQLite and MariaDB."""
from __future__ import annotations

import subprocess
import sys
from decimal import Decimal
from pathlib import Path

from includes.marketdata import AVAILABLE_FILE, available_markets, get_api_data
from includes.storage.marketdb import MarketDB

ROOT = Path(__file__).resolve().parent.parent
MARKETS = ["ADA/EUR", "BTC/EUR", "ETH/EUR", "LTC/EUR", "XRP/EUR"]


def rows(db: MarketDB, exchange: str = "kraken") -> dict[str, list]:
    """Every stored row of the data tables, to compare whole databases."""
    return {m: db.candles(exchange, m, 5) for m in MARKETS} | {
        "markets": [dict(r) for r in db.markets(exchange)]}


def stored_tickers(db: MarketDB) -> list:
    return db._all("SELECT * FROM tickers")


def test_a_cycle_fills_the_db_and_a_second_asks_only_what_is_due(db_url, job_config, kraken_venue):
    sim = kraken_venue.sim
    cfg = job_config(market_db=db_url)
    assert get_api_data(cfg) == 0
    db = MarketDB(db_url)
    assert db.available_markets("kraken")[:3] == ["ADA/BTC", "ADA/EUR", "BTC/EUR"]
    first = rows(db)
    for market in MARKETS:
        candles = first[market]
        assert len(candles) == 720
        assert candles[-1].ts <= sim.clock < candles[-1].ts + 300   # the open candle is stored
    assert sim.calls["Ticker"] == 1 and sim.calls["OHLC"] == 5

    assert get_api_data(cfg) == 0      # same minute: nothing is due, nothing changes
    assert sim.calls["Ticker"] == 2 and sim.calls["OHLC"] == 5
    assert rows(db) == first

    open_ts = first["BTC/EUR"][-1].ts
    sim.set_time(open_ts + 300 + 30)   # the open candle closed, a new one opened
    assert get_api_data(cfg) == 0
    assert sim.calls["OHLC"] == 10
    btc = db.candles("kraken", "BTC/EUR", 5)
    assert len(btc) == 721                                   # overwritten, not duplicated
    assert [c.ts for c in btc[-2:]] == [open_ts, open_ts + 300]
    fresh = kraken_venue.platform().get_candles("BTC/EUR", 5, since=open_ts)
    assert btc[-2:] == [c.__class__(c.ts, c.open, c.high, c.low, c.close, c.volume) for c in fresh]
    tickers = stored_tickers(db)
    assert len({r["ts"] for r in tickers}) == 2 and len(tickers) == 10   # one snapshot per clock time
    db.close()


def test_an_unavailable_market_is_recorded_and_not_fetched(tmp_path, job_config, kraken_venue):
    sim = kraken_venue.sim
    cfg = job_config()
    assert available_markets(cfg) == 0
    listed = (tmp_path / "tmp" / AVAILABLE_FILE).read_text().splitlines()
    assert listed[0].startswith("# available markets of kraken at 2023-11-14T22:13:20Z")
    assert "BTC/EUR XXBTZEUR online" in listed
    sim.set_pair_status("XXBTZEUR", "cancel_only")
    sim.advance(3600)
    assert available_markets(cfg) == 0
    assert "BTC/EUR XXBTZEUR online" not in (tmp_path / "tmp" / AVAILABLE_FILE).read_text()
    db = MarketDB(cfg.storage.market_db)
    btc = next(r for r in db.markets("kraken") if r["market"] == "BTC/EUR")
    assert (btc["status"], btc["available"], btc["status_changed"]) == ("cancel_only", False, sim.clock)
    assert get_api_data(cfg) == 0
    assert db.candles("kraken", "BTC/EUR", 5) == []
    assert len(db.candles("kraken", "ETH/EUR", 5)) == 720
    db.close()


def test_one_market_failing_skips_only_that_market(job_config, kraken_venue):
    cfg = job_config()
    kraken_venue.sim.inject("OHLC", "service_unavailable", times=2)   # the first market, retried once
    assert get_api_data(cfg) == 0
    db = MarketDB(cfg.storage.market_db)
    counts = {m: len(db.candles("kraken", m, 5)) for m in MARKETS}
    assert sorted(counts.values()) == [0, 720, 720, 720, 720]
    assert get_api_data(cfg) == 0     # the next cycle fetches the one that failed
    assert all(len(db.candles("kraken", m, 5)) == 720 for m in MARKETS)
    db.close()


def test_a_malformed_answer_writes_no_partial_rows(job_config, kraken_venue):
    cfg = job_config()
    kraken_venue.sim.inject("OHLC", "malformed_json", times=None)
    assert get_api_data(cfg) == 0     # the tickers came
    db = MarketDB(cfg.storage.market_db)
    assert all(db.candles("kraken", m, 5) == [] for m in MARKETS)
    assert len(stored_tickers(db)) == 5
    db.close()


def test_nothing_fetched_is_a_failure_with_one_line(tmp_path, job_config, kraken_venue):
    job_config()
    port = kraken_venue.sim.url.rsplit(":", 1)[1]
    kraken_venue.sim.stop()
    run = subprocess.run([sys.executable, str(ROOT / "get_api_data.py"), "--config", str(tmp_path / "config.yaml")],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 1
    assert run.stderr.strip().splitlines() == [        # the root cause, whole; not the URL
        f"get_api_data: kraken/Time: connection failed (127.0.0.1:{port}: Failed to establish a new "
        "connection: [Errno 111] Connection refused)"]


def test_an_unreachable_db_spools_the_cycle_and_loses_nothing(tmp_path, mariadb_url, job_config, kraken_venue):
    down = "mysql+pymysql://root@127.0.0.1:9/crontrader"   # nothing listens on port 9
    assert get_api_data(job_config(market_db=down)) == 0
    spooled = sorted((tmp_path / "tmp" / "spool").iterdir())
    assert len(spooled) == 1 + 1 + 5          # the listing, the tickers, one candle batch per market
    assert get_api_data(job_config(market_db=mariadb_url)) == 0
    assert not list((tmp_path / "tmp" / "spool").iterdir())
    db = MarketDB(mariadb_url)
    assert all(len(db.candles("kraken", m, 5)) == 720 for m in MARKETS)
    assert len(stored_tickers(db)) == 5      # the spooled snapshot; the second is the same ts
    db.close()


def test_backfill_pages_coarser_intervals_beyond_720_candles(job_config, kraken_venue):
    cfg = job_config(trading={"currencies": ["BTC", "ETH"]})
    assert get_api_data(cfg, backfill_days=10) == 0
    db = MarketDB(cfg.storage.market_db)
    five = db.candles("kraken", "BTC/EUR", 5)
    hourly = db.candles("kraken", "BTC/EUR", 60)
    assert len(five) == 720                            # all Kraken keeps: 2.5 days
    assert hourly[0].ts <= kraken_venue.sim.clock - 10 * 86400 + 3600
    assert Decimal(len(hourly)) >= 240
    assert db.candles("kraken", "BTC/EUR", 240) == []  # hourly already covers 10 days
    db.close()


def test_global_metrics_when_a_key_is_configured(tmp_path, job_config, cmc_sim):
    from tests.plugins.cmc_sim import CMC_KEY

    (tmp_path / "cmc.key").write_text(CMC_KEY + "\n")
    cmc_sim.set_metrics(btc_dominance="51.234567", active_cryptocurrencies=8800, rates={"EUR": "0.92"})
    cfg = job_config(market_data={"coinmarketcap": {"api_url": cmc_sim.url, "key_file": str(tmp_path / "cmc.key")}})
    assert get_api_data(cfg) == 0
    db = MarketDB(cfg.storage.market_db)
    [row] = db._all("SELECT * FROM global_metrics")
    assert (row["source"], row["quote"], Decimal(row["btc_dominance"]), row["active_cryptocurrencies"]) == (
        "coinmarketcap", "EUR", Decimal("51.234567"), 8800)
    assert Decimal(row["total_market_cap"]) > 0
    db.close()
    assert CMC_KEY not in "".join(p.read_text() for p in (tmp_path / "log").glob("*"))


def test_a_refused_cmc_key_is_logged_and_the_cycle_goes_on(tmp_path, job_config, cmc_sim, caplog):
    (tmp_path / "cmc.key").write_text("wrong-key\n")
    cfg = job_config(market_data={"coinmarketcap": {"api_url": cmc_sim.url, "key_file": str(tmp_path / "cmc.key")}})
    assert get_api_data(cfg) == 0
    assert "global metrics: coinmarketcap: " in caplog.text and "HTTP 401 | 1001" in caplog.text


def test_a_cycle_writes_the_time_series(job_config, kraken_venue, victoria_metrics):
    cfg = job_config(trading={"currencies": ["BTC", "ETH"]},
                     storage={"timeseries": {"url": victoria_metrics.url}})
    assert get_api_data(cfg) == 0
    db = MarketDB(cfg.storage.market_db)
    stored = db.candles("kraken", "BTC/EUR", 5)
    db.close()
    [series] = victoria_metrics.series('candle_close{exchange="kraken",market="BTC/EUR"}', count=720)
    assert [(ts, Decimal(str(v))) for ts, v in series.points] == [(c.ts, c.close) for c in stored]
    [last] = victoria_metrics.series('ticker_last{exchange="kraken",market="ETH/EUR"}')
    assert last.points[0][0] == int(kraken_venue.sim.clock)


def test_the_time_series_server_being_down_does_not_fail_the_cycle(job_config, caplog):
    cfg = job_config(storage={"timeseries": {"url": "http://127.0.0.1:9", "timeout": 1}})
    assert get_api_data(cfg) == 0
    assert "time series: " in caplog.text
    db = MarketDB(cfg.storage.market_db)
    assert len(db.candles("kraken", "BTC/EUR", 5)) == 720
    db.close()


def test_the_call_budget_is_half_the_configured_cycle_at_the_public_pace():
    from includes.config import Config, ExchangeConfig, MarketDataConfig
    from includes.marketdata import call_budget

    assert call_budget(Config()) == 297                                     # 10 minutes at Kraken's 1/s
    assert call_budget(Config(market_data=MarketDataConfig(cycle_minutes=30))) == 897
    assert call_budget(Config(market_data=MarketDataConfig(cycle_minutes=5),
                              exchange=ExchangeConfig(public_calls_per_second=0.5))) == 72


def test_a_cycle_keeps_within_its_call_budget_most_overdue_first(job_config, kraken_venue):
    """However many markets, a cycle makes at most its budget of candle calls; the markets
    left over are the first of the next cycle, so each is fetched within a few cycles."""
    from includes.marketdata import fetch_cycle
    from includes.platforms import make_platform
    from includes.storage.spool import Spool

    sim, cfg = kraken_venue.sim, job_config()
    platform, db = make_platform(cfg, live=False), MarketDB(cfg.storage.market_db)
    spool = Spool(cfg.path(cfg.paths.tmp) / "spool")
    fetched = []
    for _ in range(3):
        before = sim.calls["OHLC"]
        report = fetch_cycle(cfg, platform, db, spool, None, budget=2)
        fetched.append((sim.calls["OHLC"] - before, report.due, report.behind))
    assert fetched == [(2, 5, 3), (2, 3, 1), (1, 1, 0)]
    assert all(len(db.candles("kraken", m, 5)) == 720 for m in MARKETS)
    first = {m: db.candles("kraken", m, 5)[-1].ts for m in MARKETS}
    sim.advance(300)                                   # every market due again: the oldest go first
    fetch_cycle(cfg, make_platform(cfg, live=False), db, spool, None, budget=2)
    moved = [m for m in MARKETS if db.candles("kraken", m, 5)[-1].ts > first[m]]
    assert len(moved) == 2 and set(moved) <= {m for m in MARKETS if first[m] == min(first.values())}
    db.close()


def test_a_gap_longer_than_one_call_is_filled_coarser_and_said_once(job_config, kraken_venue, capsys):
    sim = kraken_venue.sim
    cfg = job_config(trading={"currencies": ["BTC"]})
    assert get_api_data(cfg) == 0
    db = MarketDB(cfg.storage.market_db)
    last = db.candles("kraken", "BTC/EUR", 5)[-1].ts
    capsys.readouterr()
    sim.advance(4 * 86400)                             # a 4-day outage: Kraken keeps 2.5 days of 5-min candles
    assert get_api_data(cfg) == 0
    said = capsys.readouterr().err.strip().splitlines()
    assert len(said) == 1 and said[0].startswith("get_api_data: BTC/EUR: no 5-min candles from ")
    assert said[0].endswith("filled with 60-min candles")
    hourly = db.candles("kraken", "BTC/EUR", 60)
    assert hourly[0].ts <= last + 3600 and hourly[-1].ts >= sim.clock - 2 * 86400
    sim.advance(300)
    assert get_api_data(cfg) == 0
    assert capsys.readouterr().err == ""               # said once
    db.close()
