"""The backtest: hand-computed trades, no look-ahead, the gate's equivalence with running the
agent at every decision, the CSV and market-DB sources, JSON, charts, sweeps and bad inputs."""
from __future__ import annotations

import json
import math
import random
import subprocess
import sys
from array import array
from bisect import bisect_left
from decimal import Decimal as D
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from includes.agent import Agent
from includes.backtest import gate
from includes.backtest.command import parse_time
from includes.backtest.replay import ReplayAgent, replay
from includes.backtest.report import summary
from includes.backtest.sources import InputError, read_csv
from includes.backtest.sweep import trading_for
from includes.config import TradingConfig
from includes.errors import PermanentError, StorageError
from includes.model import Candle, Market, Order
from includes.platforms.paper import PaperPlatform
from includes.platforms.replay import ReplayPlatform, Series
from includes.storage.marketdb import MarketDB
from includes.storage.memory import MemoryMarketDB, MemoryStateStore
from includes.storage.state import ACTIVE, WAITING
from includes.trends import trends
from tests.conftest import ROOT

T0 = 1_700_006_400          # a whole day, UTC: hourly and 10-minute steps fall on candle opens
H = 3600
HEADER = "timestamp,open,high,low,close,volume"


def write_csv(path: Path, rows: list[tuple]) -> Path:
    path.write_text(HEADER + "\n" + "".join(",".join(map(str, r)) + "\n" for r in rows))
    return path


def hourly(prices: list[float]) -> list[tuple]:
    """Flat hourly candles: open = close = the price of the hour."""
    return [(T0 + h * H, p, p, p, p, 1) for h, p in enumerate(prices)]


def walk(n: int, seed: int, start: float = 100.0, step: int = 60) -> list[tuple]:
    """A continuous random walk: each candle opens at the previous close."""
    rng, price, rows = random.Random(seed), start, []
    for i in range(n):
        close = round(price * (1 + rng.gauss(0, 0.004)), 6)
        rows.append((T0 + i * step, price, round(max(price, close) * 1.001, 6),
                     round(min(price, close) * 0.999, 6), close, round(rng.random() * 5, 4)))
        price = close
    return rows


# No fee, one 5 EUR thread, a 10 EUR account: trades simple enough to compute by hand.
SETTINGS = {"fee_percent": 0, "sell_percent": 3, "max_threads": 1, "max_per_trade": 5, "dry_run_balance": 10,
            "trend_windows": [24], "buy_trend_window": 24, "rebuy_cooldown_minutes": 0}


def trading(series: list[Series], **overrides) -> TradingConfig:
    """SETTINGS with `overrides`, playing the currencies of `series`."""
    return trading_for(TradingConfig(**(SETTINGS | overrides)), series, {})


# 30 hours at 100, then 110 (the 24 h trend turns +10%: buy), 114 from hour 40 (+3.6%: sell,
# and buy again at the next decision, never in the run that sold), 104 from hour 50 (the second position falls
# 8.8%) to hour 59.
HAND = [100.0] * 30 + [110.0] * 10 + [114.0] * 10 + [104.0] * 10


@pytest.fixture
def hand_csv(tmp_path: Path) -> Path:
    return write_csv(tmp_path / "test_ABC_EUR_1h.csv", hourly(HAND))


def config_file(tmp_path: Path, **trading_section) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({
        "paths": {"log": str(tmp_path / "log"), "tmp": str(tmp_path / "tmp"), "img": str(tmp_path / "img")},
        "trading": SETTINGS | trading_section,
        "storage": {"market_db": f"sqlite:///{tmp_path / 'market.db'}"},
        "market_data": {"candle_interval": 60},
    }))
    return path


def backtest(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "backtest.py", *args], cwd=ROOT, capture_output=True, text=True,
                            timeout=120)
    if check:
        assert result.returncode == 0, result.stderr
    return result


# --- the report, by hand ---------------------------------------------------------------------------

def test_the_hand_computed_series_gives_the_hand_computed_report(tmp_path, hand_csv):
    out = tmp_path / "report.json"
    printed = backtest("--config", str(config_file(tmp_path)), "--csv", str(hand_csv), "--spread", "0",
                       "--json", str(out)).stdout
    report = json.loads(out.read_text())
    run = report["runs"][0]
    assert (run["markets"], run["interval_minutes"], run["step_minutes"]) == (["ABC/EUR"], 60, 60)
    assert (run["start"], run["end"], run["decisions"]) == ("2023-11-15 01:00", "2023-11-17 12:00", 60)
    # Hour 30: 110 against 100 a day before: buy 5 EUR worth, 0.04545454 ABC for 4.9999994 EUR.
    # Hour 40: 114 is +3.64% >= 3%: sell for 5.18181756; hour 41: 114 against 100 a day before: buy again.
    (first,), (second,) = run["trades"], run["open_positions"]
    assert (first["entry_at"], D(first["entry_price"]), D(first["volume"]), D(first["cost"])) == (
        "2023-11-16 06:00", 110, D("0.04545454"), D("4.9999994"))
    assert (first["exit_at"], D(first["exit_price"]), D(first["proceeds"]), D(first["pnl"])) == (
        "2023-11-16 16:00", 114, D("5.18181756"), D("0.18181816"))
    assert first["gain_pct"] == pytest.approx(3.6363636, abs=1e-4)
    # Still held at the end, valued at the last price, 104: 0.04385964 ABC bought for 4.99999896.
    assert (second["entry_at"], D(second["entry_price"]), D(second["volume"]), D(second["cost"])) == (
        "2023-11-16 17:00", 114, D("0.04385964"), D("4.99999896"))
    assert (second["exit_at"], D(second["exit_price"]), D(second["pnl"])) == (None, 104, D("-0.4385964"))
    assert D(run["pnl"]) == D("0.18181816") - D("0.4385964") == D(report["totals"]["EUR"]["pnl"])
    assert D(run["final_equity"]) == D(10) + D(run["pnl"])
    assert run["pnl_by_currency"] == {"ABC": run["pnl"]}
    assert run["return_pct"] == pytest.approx(-2.5677824, abs=1e-4)
    assert (run["closed_trades"], run["open_trades"], run["win_rate_pct"]) == (1, 1, 50.0)   # the open one loses
    peak, low = 10 + 0.18181816, 10 + 0.18181816 - 0.4385964
    assert run["max_drawdown_pct"] == pytest.approx((peak - low) / peak * 100, abs=1e-4)
    assert run["exposure_pct"] == pytest.approx(30 / 60 * 100, abs=0.01)   # held hours 30-39 and 41-60
    assert run["buy_hold_pct"] == pytest.approx(4.0)                     # 100 at hour 25, 104 at the end
    assert run["buy_hold_from"] == "2023-11-16 01:00"     # the first decision with a 24 h trend: hour 25
    assert (first["exit_reason"], first["duration_minutes"], D(first["fees"])) == ("sell_percent", 600, 0)
    assert (second["exit_reason"], second["duration_minutes"]) == ("open", 19 * 60)   # 17:00 to 12:00 next day
    # the peak: hour 40, the sale (the position bought at 114 is worth as much, not more); the trough:
    # hour 50, at 104
    assert (run["max_drawdown_from"], run["max_drawdown_to"]) == ("2023-11-16 16:00", "2023-11-17 02:00")
    assert run["refused"] == {"ABC: sold in this run": 1}                # hour 40 sold, so bought at 41
    assert (run["round_trips"], run["profit_factor"]) == (1, pytest.approx(0.18181816 / 0.4385964, abs=1e-4))
    assert run["by_pair"] == {"ABC/EUR": {"trades": 2, "win_rate_pct": 50.0, "pnl": run["pnl"]}}
    assert "test_ABC_EUR_1h" in printed and "2023-11-16 06:00" in printed and "P&L by currency (EUR): ABC" in printed
    assert "1 threads x 5 EUR (budget 5 EUR, at most 1 a currency), rebuy after 0 min" in printed
    assert (report["settings"]["budget"], report["settings"]["currency_cap"]) == ("5", 1)


def test_fees_are_paid_as_in_dry_run_live(hand_csv):
    series = read_csv(hand_csv)
    result = replay([series], trading([series], fee_percent=D("0.26")), spread_percent=D(0))
    first = result.trades[0]
    assert D("4.99") < first.cost <= 5                       # 5 EUR at most, the buy fee included
    assert first.cost > first.volume * 110 and first.proceeds < first.volume * 114
    assert 3 <= first.gain_pct < 114 / 110 * 100 - 100       # both fees come off the price's +3.6%
    assert result.pnl == sum((t.pnl for t in result.trades), D(0))


# --- no look-ahead ----------------------------------------------------------------------------------

def test_a_future_spike_is_never_seen_before_its_candle_closes(tmp_path):
    rows = walk(3 * 24 * 60, seed=3)
    spike = 2 * 24 * 60 + 7             # from this minute candle's close on, every price is 1000 times higher
    ts, o, h, low, c, v = rows[spike]
    rows[spike:] = [(ts, o, c * 1000, low, c * 1000, v)] + [
        (t, *(round(x * 1000, 3) for x in prices), volume) for t, *prices, volume in rows[spike + 1:]]
    full = read_csv(write_csv(tmp_path / "test_ABC_EUR_1m.csv", rows))
    cut = read_csv(write_csv(tmp_path / "cut_ABC_EUR_1m.csv", rows[:spike]))
    config = trading([full], max_threads=3, sell_percent=D("0.5"), trend_windows=[2, 6, 24], buy_trend_window=2)
    seen, blind = replay([full], config), replay([cut], config)
    assert blind.decisions < seen.decisions
    assert list(seen.equity[:blind.decisions]) == list(blind.equity)
    known = ts + 60                      # the spike is known from its candle's close on
    done = [t for t in seen.trades if t.exit_at is not None and t.exit_at < known]
    assert done and done == [t for t in blind.trades if t.exit_at is not None]
    entries = lambda trades: [(t.thread, t.entry_at, t.entry_price, t.volume, t.cost) for t in trades]  # noqa: E731
    assert entries(t for t in seen.trades if t.entry_at < known) == entries(blind.trades)
    assert all(t.entry_price < 1000 and t.exit_price < 1000 for t in done)
    assert any(t.entry_price > 1000 or t.exit_price > 1000 for t in seen.trades)   # seen once closed


def test_the_replay_serves_only_what_had_happened(tmp_path):
    rows = hourly([100.0, 101.0, 102.0])
    rows[1] = (T0 + H, 101.0, 999.0, 100.5, 555.0, 7)       # the candle open at the clock
    series = read_csv(write_csv(tmp_path / "test_ABC_EUR_1h.csv", rows))
    platform = ReplayPlatform([series], "EUR", D("0.26"), spread_percent=D(2))
    db = MemoryMarketDB({("replay", "ABC/EUR", 60): series}, clock=platform.now)
    platform.time = T0 + H + 1800                           # inside candle 1
    ticker = platform.get_tickers(["ABC/EUR"])["ABC/EUR"]
    assert (ticker.last, ticker.bid, ticker.ask) == (101, D("99.99"), D("102.01"))   # its open; spread 2%
    assert db.candles("replay", "ABC/EUR", 60) == [Candle(T0, D(100), D(100), D(100), D(100), D(1))]
    assert platform.get_candles("ABC/EUR", 60) == [
        Candle(T0, D(100), D(100), D(100), D(100), D(1)),
        Candle(T0 + H, D(101), D(101), D(101), D(101), D(0), closed=False)]
    assert db.last_closed("replay", "ABC/EUR", 60, [T0 + H, T0 + 10 * H], since=T0) == [
        Candle(T0, D(100), D(100), D(100), D(100), D(1))]
    assert platform.get_candles("ABC/EUR", 5) == []            # only the series' own interval
    platform.time = T0 - 1
    assert platform.get_tickers(["ABC/EUR"]) == {}             # before the first candle: no price
    platform.time = T0 + 3 * H + 5 * H                        # after the last: its close, never more
    assert platform.get_tickers(["ABC/EUR"])["ABC/EUR"].last == 102
    times = range(T0 - 1800, T0 + 6 * H, 1800)
    assert series.last(times[0]) is None and math.isnan(series.prices_at(times)[0])
    assert series.prices_at(times)[1:] == [series.last(t) for t in times[1:]]


def test_gaps_price_at_the_last_close(tmp_path):
    rows = [(T0, 100, 100, 100, 100, 1), (T0 + 3 * H, 90, 90, 90, 95, 1)]
    series = read_csv(write_csv(tmp_path / "test_ABC_EUR_1h.csv", rows))
    times = range(T0 + H, T0 + 5 * H, H)
    assert [series.last(t) for t in times] == [100, 100, 90, 95] == series.prices_at(times)


def test_the_replay_agent_computes_the_trends_of_the_live_agent(shared_data):
    series = read_csv(shared_data / "unk_BTC_USD_1m_20190329.csv")
    config = trading_for(TradingConfig(), [series], {"trend_windows": [1, 2, 6, 12, 24], "buy_trend_window": "2"})
    platform = ReplayPlatform([series], "USD", D("0.26"))
    db = MemoryMarketDB({("replay", "BTC/USD", 1): series}, clock=platform.now)
    agent = ReplayAgent(config, platform, MemoryStateStore(), db, mode="dry", exchange="replay", candle_interval=1)
    found = 0
    for now in range(series.ts[0] - 600, series.last_close() + 600, 1700):
        platform.time = now
        since, current = now - 26 * H, D("4000.5")
        mine = agent.trends_from_db("BTC/USD", now, since, current)
        assert mine == Agent.trends_from_db(agent, "BTC/USD", now, since, current)
        assert mine == trends(db.candles("replay", "BTC/USD", 1, since=since), now, config.trend_windows, 1, current)
        found += len(mine)
    assert found > 100


# --- the gate: the same trades as running the agent at every decision -------------------------------

def series_of(market: str, rows: list[tuple], interval: int) -> Series:
    """A series straight from candle rows, as read_csv builds it."""
    columns = list(zip(*rows, strict=True))
    return Series(market, interval, array("q", columns[0]), *(array("d", c) for c in columns[1:]),
                  label=f"walk_{market.replace('/', '_')}")


def walk_of(seed: int, n: int, start: float, sigma: float, step: int) -> list[tuple]:
    """A random walk like walk(), of volatility `sigma`."""
    rng, price, rows = random.Random(seed), start, []
    for i in range(n):
        close = round(price * (1 + rng.gauss(0, sigma)), 6)
        rows.append((T0 + i * step, price, max(price, close), min(price, close), close, 1.0))
        price = close
    return rows


# Markets by Kraken's rules (BTC/EUR on a 0.1 EUR tick, XRP/EUR's 10 XRP minimum) and one by the
# replay's fine fallback rules; prices from cents to thousands.
walks = st.lists(st.tuples(st.integers(0, 2**32), st.sampled_from([0.5, 3.0, 100.0, 2500.0]),
                           st.sampled_from([0.002, 0.006, 0.015])), min_size=1, max_size=3)
gated_configs = st.fixed_dictionaries({
    "sell_percent": st.sampled_from(["0.2", "0.5", "1", "3"]),
    "stop_loss_percent": st.one_of(st.none(), st.sampled_from(["0.3", "1", "4"])),
    "max_hold_hours": st.one_of(st.none(), st.sampled_from([1, 3, 12])),
    "max_threads": st.integers(1, 5),
    "threads_per_currency": st.one_of(st.none(), st.integers(1, 3)),
    "rebuy_cooldown_minutes": st.sampled_from([0, 20, 240]),
    "fee_percent": st.sampled_from(["0", "0.1", "0.26"]),
    "max_per_trade": st.sampled_from(["3", "5", "12", "30"]),
})


@settings(max_examples=25, deadline=None)
@given(config=gated_configs, paths=walks, length=st.integers(200, 400), interval=st.sampled_from([5, 60]))
def test_gated_replay_trades_as_the_agent_at_every_step(config, paths, length, interval):
    """The Gate skips only decisions at which the agent provably does nothing: over random configs
    and price walks, the trades and the equity are those of calling the agent at every decision."""
    bases = ["BTC", "XRP", "ZZZ"]
    series = [series_of(f"{bases[i]}/EUR", walk_of(seed, length, start, sigma, interval * 60), interval)
              for i, (seed, start, sigma) in enumerate(paths)]
    overrides = {k: v for k, v in config.items() if v is not None} | {"trend_windows": [1, 2],
                                                                        "buy_trend_window": 1}
    trading = TradingConfig.from_dict(TradingConfig().as_dict() | {"currencies": [s.base for s in series]} | overrides)
    fast = replay(series, trading, show_progress=False)
    slow = replay(series, trading, every_step=True, show_progress=False)
    assert fast.agent_runs <= slow.agent_runs == slow.decisions
    assert fast.trades == slow.trades
    assert list(fast.equity) == list(slow.equity)


def test_a_field_the_gate_does_not_model_runs_the_agent_at_every_step(tmp_path, monkeypatch):
    """A decision field the Gate does not name (as a new rule would be) set away from its default:
    no decision is skipped."""
    series = read_csv(write_csv(tmp_path / "test_ABC_EUR_1h.csv", hourly([100.0] * 300)))
    config = trading([series])
    assert replay([series], config, show_progress=False).agent_runs == 1
    monkeypatch.setattr(gate, "MODELS", gate.MODELS - {"fee_percent"})
    assert gate.unmodelled(config) == ["fee_percent"]
    result = replay([series], config, show_progress=False)
    assert result.agent_runs == result.decisions > 250


def test_a_portfolio_chooses_between_markets_under_the_currency_cap(tmp_path):
    a = read_csv(write_csv(tmp_path / "test_AAA_EUR_5m.csv", walk(1500, seed=1, step=300)))
    b = read_csv(write_csv(tmp_path / "test_BBB_EUR_5m.csv", walk(1500, seed=2, start=3.0, step=300)))
    config = trading_for(TradingConfig(), [a, b], {"max_threads": "5", "threads_per_currency": "2",
                                                   "sell_percent": "1", "stop_loss_percent": "2",
                                                   "trend_windows": [2, 6], "buy_trend_window": "2"})
    fast, slow = replay([a, b], config), replay([a, b], config, every_step=True)
    assert fast.trades == slow.trades and list(fast.equity) == list(slow.equity)
    assert {t.market for t in fast.trades} == {"AAA/EUR", "BBB/EUR"}
    assert fast.pnl == sum(fast.pnl_by_currency().values())


# --- sources -------------------------------------------------------------------------------------------

def test_the_market_db_source_replays_the_same_candles(tmp_path, hand_csv):
    series = read_csv(hand_csv)
    db = MarketDB(f"sqlite:///{tmp_path / 'market.db'}")
    db.upsert_candles("kraken", "ABC/EUR", 60, [series.candle(i) for i in range(len(series))])
    db.close()
    config = config_file(tmp_path, currencies=["ABC"])
    from_db, from_csv = tmp_path / "db.json", tmp_path / "csv.json"
    backtest("--config", str(config), "--from-db", "--spread", "0", "--json", str(from_db))
    backtest("--config", str(config), "--csv", str(hand_csv), "--spread", "0", "--json", str(from_csv))
    db_run, csv_run = (json.loads(p.read_text())["runs"][0] for p in (from_db, from_csv))
    assert db_run["label"] == "kraken_ABC_EUR" and db_run["markets"] == ["ABC/EUR"]
    assert db_run["trades"] == csv_run["trades"] and db_run["open_positions"] == csv_run["open_positions"]
    assert len(db_run["trades"] + db_run["open_positions"]) == 2
    assert db_run["pnl"] == csv_run["pnl"]
    assert D(db_run["trades"][0]["volume"]) == D("0.04545454")   # no venue lists ABC/EUR: fine rules


def test_the_market_db_source_trades_by_the_rules_available_markets_kept(tmp_path, hand_csv):
    """The listing's rules (schema v6) are the ones the backtest of the DB trades by: 2 volume
    decimals make the 5 EUR buy at 110 one of 0.04 ABC."""
    series = read_csv(hand_csv)
    db = MarketDB(f"sqlite:///{tmp_path / 'market.db'}")
    db.upsert_candles("kraken", "ABC/EUR", 60, [series.candle(i) for i in range(len(series))])
    db.upsert_markets("kraken", [Market("ABC/EUR", "ABC", "EUR", "ABCEUR", "online", True, 2, 2, D("0.01"),
                                        D("0.5"))], seen_at=T0)
    db.close()
    out = tmp_path / "db.json"
    backtest("--config", str(config_file(tmp_path, currencies=["ABC"])), "--from-db", "--spread", "0",
             "--json", str(out))
    run = json.loads(out.read_text())["runs"][0]
    assert [D(t["volume"]) for t in run["trades"] + run["open_positions"]] == [D("0.04"), D("0.04")]


def test_the_csv_files_of_shared_data_are_read_whole(shared_data):
    series = read_csv(shared_data / "unk_BTC_USD_1m_20190329.csv")
    assert (series.market, series.interval, len(series), series.label) == (
        "BTC/USD", 1, 1382, "unk_BTC_USD_1m_20190329")
    assert series.candle(0) == Candle(1553817600, D("4092.56783507"), D("4092.56783507"), D("4092.56783507"),
                                      D("4092.56783507"), D("0.067335"))
    assert read_csv(shared_data / "fx_EUR_USD_1h.csv").market == "EUR/USD"   # the file's own quote
    assert read_csv(shared_data / "nasdaq_GOOG_USD_1d.csv").interval == 1440


def test_a_big_file_is_read_across_chunks(tmp_path):
    rows = walk(60_000, seed=5)
    series = read_csv(write_csv(tmp_path / "test_ABC_EUR_1m.csv", rows))
    assert len(series) == 60_000 and series.ts[-1] == rows[-1][0] and series.close[-1] == rows[-1][4]
    (tmp_path / "bad_ABC_EUR_1m.csv").write_text((tmp_path / "test_ABC_EUR_1m.csv").read_text()
                                                 .replace(f"\n{rows[50_000][0]},", f"\n{rows[50_000][0]},x"))
    with pytest.raises(InputError, match=r"bad_ABC_EUR_1m.csv:50002: not a number"):
        read_csv(tmp_path / "bad_ABC_EUR_1m.csv")


# --- output --------------------------------------------------------------------------------------------

def test_charts_are_written_when_asked(tmp_path, hand_csv):
    backtest("--config", str(config_file(tmp_path)), "--csv", str(hand_csv), "--charts")
    chart = tmp_path / "img" / "backtest-test_ABC_EUR_1h.png"
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_sweep_of_2x2_in_2_processes_is_ranked(tmp_path, hand_csv):
    out = tmp_path / "sweep.json"
    printed = backtest("--config", str(config_file(tmp_path)), "--csv", str(hand_csv), "--spread", "0",
                       "--sweep", "sell_percent=3:5:2", "max_threads=1:2:1", "--workers", "2",
                       "--json", str(out)).stdout
    points = json.loads(out.read_text())["sweep"]
    assert sorted((p["params"]["sell_percent"], p["params"]["max_threads"]) for p in points) == [
        ("3", "1"), ("3", "2"), ("5", "1"), ("5", "2")]
    assert [p["rank"] for p in points] == [1, 2, 3, 4]
    pnl = [D(p["totals"]["EUR"]["pnl"]) for p in points]
    assert pnl == sorted(pnl, reverse=True)
    # sell_percent 5 never sells (114 is +3.6%): one open trade per thread, at 104.
    series = read_csv(hand_csv)
    direct = replay([series], trading([series], sell_percent=5, max_threads=2), spread_percent=D(0))
    point = next(p for p in points if p["params"] == {"sell_percent": "5", "max_threads": "2"})
    assert D(point["totals"]["EUR"]["pnl"]) == direct.pnl and point["totals"]["EUR"]["closed_trades"] == 0
    assert "sweep: 4 combination(s)" in printed


# --- bad inputs ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, text, error", [
    ("kraken_BTC_EUR_1m.csv", "timestamp,open,high,low,close,volume\n99999999999999999999999,1,1,1,1,1\n",
     r"kraken_BTC_EUR_1m.csv:2: timestamp 99999999999999999999999 is out of range"),
    ("kraken_BTC_EUR_5m.csv", "timestamp,open,high,low,close,volume\n1,2,3,4,5\n",
     r"kraken_BTC_EUR_5m.csv:2: 5 fields, not 6"),
    ("kraken_BTC_EUR_5m.csv", "timestamp,open,high,low,close,volume\n1,2,3,4,5,6\n2,2,3,4,abc,6\n",
     r"kraken_BTC_EUR_5m.csv:3: not a number in '2,2,3,4,abc,6'"),
    ("kraken_BTC_EUR_5m.csv", "time,o,h,l,c,v\n1,2,3,4,5,6\n", r"kraken_BTC_EUR_5m.csv:1: the header is"),
    ("kraken_BTC_EUR_5m.csv", "timestamp,open,high,low,close,volume\n600,2,3,1,2,6\n300,2,3,1,2,6\n",
     r"kraken_BTC_EUR_5m.csv:3: timestamp 300 does not follow 600"),
    ("kraken_BTC_EUR_5m.csv", "timestamp,open,high,low,close,volume\n300,2,3,1,2,6\n600,2,nan,1,2,6\n",
     r"kraken_BTC_EUR_5m.csv:3: high nan is not a positive price"),
    ("kraken_BTC_EUR_5m.csv", "timestamp,open,high,low,close,volume\n", r"no candles after the header"),
    ("btc-eur.csv", HEADER + "\n300,2,3,1,2,6\n", r"btc-eur.csv: the name is not <exchange>_<BASE>_"),
    ("kraken_BTC_EUR_1M.csv", HEADER + "\n300,2,3,1,2,6\n", r"calendar-month candles"),
])
def test_a_bad_file_is_one_line_naming_it(tmp_path, name, text, error):
    (tmp_path / name).write_text(text)
    with pytest.raises(InputError, match=error) as caught:
        read_csv(tmp_path / name)
    assert "\n" not in str(caught.value)


def test_trailing_blank_lines_and_crlf_are_fine(tmp_path):
    path = tmp_path / "kraken_BTC_EUR_5m.csv"
    path.write_bytes(b"timestamp,open,high,low,close,volume\r\n300,2,3,1,2,6\r\n600,2,3,1,2.5,6\r\n\r\n\n")
    assert list(read_csv(path).close) == [2, 2.5]


def test_the_script_exits_2_with_one_line_on_bad_input(tmp_path, hand_csv):
    config = str(config_file(tmp_path))
    missing = backtest("--config", config, "--csv", str(tmp_path / "none_ABC_EUR_1h.csv"), check=False)
    assert missing.returncode == 2
    assert missing.stderr.strip().splitlines() == [
        f"backtest: {tmp_path / 'none_ABC_EUR_1h.csv'}: cannot be read: No such file or directory"]
    bad = backtest("--config", config, "--csv", str(hand_csv), "--sweep", "sell_percent=5:1:1", check=False)
    assert bad.returncode == 2 and "needs start <= stop" in bad.stderr
    bad = backtest("--config", config, "--csv", str(hand_csv), "--sweep", "max_threads=0:1:1", check=False)
    assert bad.returncode == 2 and "trading.max_threads" in bad.stderr
    bad = backtest("--config", config, "--csv", str(hand_csv), "--start", "yesterday", check=False)
    assert bad.returncode == 2 and "--start yesterday" in bad.stderr
    empty = backtest("--config", config, "--from-db", check=False)
    assert empty.returncode == 2 and "no 60-minute candles of BTC" in empty.stderr


# --- the memory stores ------------------------------------------------------------------------------------

def test_the_memory_journal_keeps_the_market_db_semantics(tmp_path):
    real = MarketDB(f"sqlite:///{tmp_path / 'm.db'}")

    def story(db):
        db.journal_intent("b1", mode="dry", exchange="kraken", market="BTC/EUR", side="buy", thread=1,
                          amount_quote=D(5), at=100)
        db.journal_intent("b2", mode="dry", exchange="kraken", market="ETH/EUR", side="buy", thread=2, at=100)
        db.journal_intent("x", mode="live", exchange="kraken", market="BTC/EUR", side="buy", thread=1, at=100)
        with pytest.raises(StorageError, match="order 'b1' is already journaled"):
            db.journal_intent("b1", mode="dry", exchange="kraken", market="BTC/EUR", side="buy")
        seen = [[r["ref"] for r in db.open_intents("dry")]]
        db.journal_order(Order("b1", "O1", "BTC/EUR", "buy", "closed", D("0.1"), D("0.1"), D(50), D(5), D("0.01"),
                               closed_at=101))
        db.journal_result("b2", "failed", error="refused", at=102)
        seen.append([r["ref"] for r in db.open_intents("dry")])
        seen.append({n: p.ref for n, p in db.open_positions("dry").items()})
        db.journal_intent("s1", mode="dry", exchange="kraken", market="BTC/EUR", side="sell", thread=1,
                          volume=D("0.1"), at=200)
        db.journal_result("s1", "unknown", error="no reply", at=201)
        seen.append(({n: p.ref for n, p in db.open_positions("dry").items()},
                     [r["ref"] for r in db.open_intents("dry")]))
        db.journal_result("s1", "closed", filled=D("0.1"), price=D(55), cost=D("5.5"), fee=D("0.01"), at=202)
        seen.append({n: p.ref for n, p in db.open_positions("dry").items()})
        row = db.journal_row("s1")
        seen.append((row["status"], row["error"], row["filled"], row["intent_at"], row["result_at"]))
        seen.append([r["ref"] for r in db.journal("dry")])
        seen.append([r["ref"] for r in db.journal("dry", since=150)])
        assert db.journal_row("nope") is None
        with pytest.raises(StorageError, match="no journaled order 'nope'"):
            db.journal_result("nope", "failed")
        with pytest.raises(ValueError, match="mode 'paper'"):
            db.journal_intent("p", mode="paper", exchange="kraken", market="BTC/EUR", side="buy")
        return seen

    assert story(MemoryMarketDB()) == story(real)
    real.close()


def test_the_memory_state_store_moves_threads_on_the_replay_clock():
    clock = [1_500_000_000]
    data: dict = {}
    store = MemoryStateStore("backtest", "dry", data=data, clock=lambda: clock[0])
    other = MemoryStateStore("backtest", "dry", data=data)       # a second client of the same data
    assert store.ensure_threads(2) == 2 and other.ensure_threads(2) == 0
    assert store.claim(1, "BTC", "b1") and not other.claim(1, "ETH", "b2")
    clock[0] += 3600
    assert store.activate(1, "b1", D(5), D("0.1"), D(50))
    assert other.get_thread(1).state == ACTIVE and other.get_thread(1).updated == 1_500_003_600
    assert [t.state for t in store.threads()] == [ACTIVE, WAITING]
    store.set_many({"platform:BTC:value": D("1E-8"), "invest:total": 5})
    assert other.get_value("platform:BTC:value") == "0.00000001"
    assert store.keys("platform:*") == ["platform:BTC:value"]
    assert MemoryStateStore("backtest", "live", data=data).threads() == []
    with store.lock("agent", 60):
        assert not other.lock("agent", 60).acquire()


def test_the_replay_fills_nothing_itself_paper_fills_at_its_prices(tmp_path, hand_csv):
    platform = ReplayPlatform([read_csv(hand_csv)], "EUR", D("0.26"), spread_percent=D(0))
    platform.time = T0 + 35 * H
    with pytest.raises(PermanentError, match="wrap it in PaperPlatform"):
        platform.buy(D(5), "ABC", "r1")
    paper = PaperPlatform(platform, tmp_path / "ledger.json", D(100))
    order = paper.buy(D(5), "ABC", "r1")
    assert (order.market, order.price, order.closed_at) == ("ABC/EUR", 110, T0 + 35 * H)
    assert paper.get_account_info().balance("ABC") == order.filled


def test_the_json_report_is_written_before_stdout_closes_early(tmp_path):
    """backtest.py ... --json F | true: the reader is gone before a report longer than a pipe's
    buffer is printed; the JSON is written first, so it is there."""
    out, csv = tmp_path / "report.json", ROOT / "tests" / "data" / "bittrex_UNITTEST_BTC_1m.csv"
    config = config_file(tmp_path, fee_percent=0.1, max_threads=1, trend_windows=[1, 24], buy_trend_window=1)
    cmd = (f"{sys.executable} backtest.py --config {config} --csv {' '.join([str(csv)] * 8)} --step 1 "
           f"--json {out} | true")
    subprocess.run(["bash", "-c", cmd], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert len(json.loads(out.read_text())["runs"]) == 8


# --- the report a trader checks -------------------------------------------------------------------------

# 24 h at 100, then 110 (buy), 104 from hour 35 (-5.45%: the stop loss at 5%), then flat at 104: bought
# again and sold after max_hold_hours 3, over and over; each sale leaves ABC out of that run's choice.
EXITS = [100.0] * 30 + [110.0] * 5 + [104.0] * 15


def test_each_trade_says_why_it_ended_how_long_it_was_held_and_its_fees(tmp_path):
    series = read_csv(write_csv(tmp_path / "test_ABC_EUR_1h.csv", hourly(EXITS)))
    result = replay([series], trading([series], fee_percent=D("0.26"), stop_loss_percent=5, max_hold_hours=3),
                    spread_percent=D(0), show_progress=False)
    closed = [t for t in result.trades if t.exit_at is not None]
    assert [t.reason for t in result.trades] == ["max hold", "stop loss", "max hold", "max hold", "max hold",
                                                 "open"]
    assert all(t.exit_at - t.entry_at == (H if t.reason == "stop loss" else 3 * H) for t in closed)
    # a closed trade's fees are its two journal rows' fees; an open one's, its buy's and its sale's at the bid
    fees = {(r["thread"], int(r["result_at"])): r["fee"] for r in result.journal if r["filled"]}
    for t in closed:
        assert t.fees == fees[t.thread, t.entry_at] + fees[t.thread, t.exit_at] > 0
    run = summary(result)
    assert run["refused"] == {"ABC: sold in this run": len(closed)}
    assert D(run["round_trip_fees"]) == sum(t.fees for t in closed)
    assert run["worst_trade"]["entry_at"] == "2023-11-16 10:00" and run["worst_trade"]["pnl"].startswith("-")
    peak, trough = (bisect_left(range(result.first, result.last + 1, result.step), parse_time(run[k], k))
                    for k in ("max_drawdown_from", "max_drawdown_to"))
    assert result.equity[trough] == min(result.equity[peak:]) and result.equity[peak] == max(
        result.equity[:trough + 1])
    assert run["max_drawdown_pct"] == pytest.approx((result.equity[peak] - result.equity[trough])
                                                    / result.equity[peak] * 100, abs=1e-4)


def test_totals_are_per_quote_currency_and_never_added_across(tmp_path, hand_csv):
    usd = write_csv(tmp_path / "test_ABC_USD_1h.csv", hourly(HAND))
    out = tmp_path / "report.json"
    printed = backtest("--config", str(config_file(tmp_path)), "--csv", str(hand_csv), str(usd), "--spread", "0",
                       "--json", str(out)).stdout
    report = json.loads(out.read_text())
    assert [r["quote"] for r in report["runs"]] == ["EUR", "USD"]
    assert {q: t["pnl"] for q, t in report["totals"].items()} == {r["quote"]: r["pnl"] for r in report["runs"]}
    assert "P&L EUR" in printed and "P&L USD" in printed and "in USD:" in printed
    assert "x 5 (budget 5, each in its file's quote," in printed
    refused = backtest("--config", str(config_file(tmp_path)), "--csv", str(hand_csv), str(usd), "--portfolio",
                       check=False)
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1
    assert "one account trades in one quote currency" in refused.stderr


def test_millisecond_times_are_read_as_seconds_or_refused_in_one_line(tmp_path):
    rows = walk(50, seed=4)
    seconds = read_csv(write_csv(tmp_path / "s_ABC_EUR_1m.csv", rows))
    millis = read_csv(write_csv(tmp_path / "ms_ABC_EUR_1m.csv", [(t * 1000, *r) for t, *r in rows]))
    assert list(millis.ts) == list(seconds.ts) and list(millis.close) == list(seconds.close)
    mixed = [(t * 1000 if i else t, *r) for i, (t, *r) in enumerate(rows)]
    with pytest.raises(InputError, match=r"mix_ABC_EUR_1m.csv:3: timestamp \d+ mixes seconds and milliseconds"):
        read_csv(write_csv(tmp_path / "mix_ABC_EUR_1m.csv", mixed))
    with pytest.raises(InputError, match=r"odd_ABC_EUR_1m.csv:2: .* not on a whole second"):
        read_csv(write_csv(tmp_path / "odd_ABC_EUR_1m.csv", [(t * 1000 + 5, *r) for t, *r in rows]))
    with pytest.raises(InputError, match=r"us_ABC_EUR_1m.csv:2: .* neither unix seconds nor milliseconds"):
        read_csv(write_csv(tmp_path / "us_ABC_EUR_1m.csv", [(t * 1_000_000, *r) for t, *r in rows]))


def test_a_file_named_otherwise_takes_pair_and_timeframe(tmp_path, hand_csv):
    other = tmp_path / "prices.csv"
    other.write_text(hand_csv.read_text())
    with pytest.raises(InputError, match="give --pair BASE/QUOTE and --timeframe"):
        read_csv(other)
    series = read_csv(other, "ABC/EUR", "1h")
    assert (series.market, series.interval, list(series.close)) == ("ABC/EUR", 60, HAND)
    out = tmp_path / "r.json"
    backtest("--config", str(config_file(tmp_path)), "--csv", str(other), "--pair", "ABC/EUR", "--timeframe", "1h",
             "--spread", "0", "--json", str(out))
    run = json.loads(out.read_text())["runs"][0]
    assert run["markets"] == ["ABC/EUR"] and len(run["trades"]) == 1 and len(run["open_positions"]) == 1
    bad = backtest("--config", str(config_file(tmp_path)), "--csv", str(other), "--pair", "ABC-EUR",
                   "--timeframe", "1h", check=False)
    assert bad.returncode == 2 and bad.stderr == "backtest: --pair ABC-EUR: expected BASE/QUOTE in capitals " \
        "and digits, e.g. BTC/EUR\n"


def test_weekly_candles_are_warned_about_on_stderr(tmp_path):
    weekly = write_csv(tmp_path / "test_ABC_EUR_1w.csv",
                       [(T0 + w * 7 * 24 * H, p, p, p, p, 1) for w, p in enumerate([100.0, 101, 103, 99, 104])])
    done = backtest("--config", str(config_file(tmp_path)), "--csv", str(weekly))
    assert "test_ABC_EUR_1w: 7d candles cannot fill the 24-hour trend window" in done.stderr
    assert "in EUR:" in done.stdout


def test_a_flat_market_does_not_call_the_agent_at_every_decision(tmp_path):
    """Nothing rises, nothing is held: after its first run the agent provably does nothing."""
    series = read_csv(write_csv(tmp_path / "test_ABC_EUR_1h.csv", hourly([100.0] * 300)))
    config = trading([series])
    fast, slow = replay([series], config, show_progress=False), replay([series], config, every_step=True,
                                                                       show_progress=False)
    assert fast.agent_runs == 1 and slow.agent_runs == slow.decisions > 250
    assert fast.trades == slow.trades == [] and list(fast.equity) == list(slow.equity)


def test_a_market_whose_minimum_order_exceeds_the_stake_does_not_call_the_agent_on_every_rise(tmp_path):
    """ETH/EUR by Kraken's rules takes 0.002 ETH at least: 4 EUR at 2,000, more than a 3 EUR thread.
    The agent refuses it at every rise; the gate knows it from the start."""
    series = read_csv(write_csv(tmp_path / "kraken_ETH_EUR_5m.csv", walk(1500, seed=5, start=2000.0, step=300)))
    config = trading([series], max_per_trade=3, trend_windows=[1, 2], buy_trend_window=1)
    fast, slow = replay([series], config, show_progress=False), replay([series], config, every_step=True,
                                                                       show_progress=False)
    assert fast.agent_runs == 1 and fast.trades == slow.trades == [] and list(fast.equity) == list(slow.equity)
    assert slow.refused["ETH: below the market's minimum order"] > 100
