"""Backtest = live: one CSV replayed by the backtest and played through the cron jobs
(get_api_data, available_markets, trade_agent in dry run) against the Kraken simulator fed the
same candles; both must make the same trades, by the same market rules."""
from __future__ import annotations

import json
import random
import subprocess
import sys
from decimal import Decimal as D
from pathlib import Path

import requests
import yaml

from includes.backtest.replay import replay
from includes.backtest.sources import KRAKEN_PAIRS, kraken_rules, read_csv, read_rules
from includes.backtest.sweep import trading_for
from includes.config import TradingConfig, load_config
from includes.files import write_private
from simulators.kraken import KrakenSimulator
from tests.conftest import ROOT

T0 = 1_700_006_400          # a whole day, UTC
HEADER = "timestamp,open,high,low,close,volume"
# One BTC/EUR thread trades by Kraken's rules: 1 price decimal, 8 volume decimals, at least 0.0001 BTC.
TRADING = {"currencies": ["BTC"], "quote": "EUR", "trend_windows": [1, 2], "buy_trend_window": 1,
           "sell_percent": D("0.4"), "stop_loss_percent": D(2), "max_threads": 3, "max_per_trade": 10,
           "dry_run_balance": 100, "rebuy_cooldown_minutes": 0}


def candles(n: int, seed: int) -> list[tuple]:
    """Five-minute candles of a walk around 30,000 EUR on Kraken's tick of 0.1 EUR, each opening at
    the previous close: what the venue's own candles look like."""
    rng, price, rows = random.Random(seed), D("30000.0"), []
    for i in range(n):
        close = (price * D(1 + rng.gauss(0.0001, 0.003))).quantize(D("0.1"))
        high, low = max(price, close) + D("3.7"), min(price, close) - D("2.9")
        rows.append((T0 + i * 300, price, high, low, close, D(rng.randint(1, 900)) / 100))
        price = close
    return rows


def write_csv(path: Path, rows: list[tuple]) -> Path:
    path.write_text(HEADER + "\n" + "".join(",".join(map(str, r)) + "\n" for r in rows))
    return path


def live_config(tmp_path: Path, sim: KrakenSimulator) -> object:
    key, secret = sim.add_account(balances={"ZEUR": "100"})
    write_private(tmp_path / "kraken.key", f"{key}\n{secret}\n")
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({
        "paths": {"log": str(tmp_path / "log"), "tmp": str(tmp_path / "tmp"), "img": str(tmp_path / "img")},
        "exchange": {"api_url": sim.url, "key_file": str(tmp_path / "kraken.key"), "public_calls_per_second": 1000,
                     "timeout": 5, "retries": 1},
        "market_data": {"candle_interval": 5},
        "trading": {**{k: str(v) if isinstance(v, D) else v for k, v in TRADING.items()}, "dry_run": True,
                    "stop_file": str(tmp_path / "stop"), "dry_run_file": str(tmp_path / "dry-run")},
        "storage": {"market_db": f"sqlite:///{tmp_path / 'market.db'}", "state": f"sqlite:///{tmp_path / 'state.db'}"},
    }))
    return load_config(path)


def fills(rows: list[dict]) -> list[tuple]:
    """(time, side, volume, price) of each filled order of a journal."""
    return [(int(r["result_at"]), r["side"], r["filled"], r["price"]) for r in rows
            if r["filled"] and r["status"] in ("closed", "filled")]


def test_the_backtest_makes_the_trades_of_live_dry_runs_against_the_simulator(tmp_path):
    from includes.agent import run_agent
    from includes.marketdata import available_markets, get_api_data
    from includes.storage import open_market_db

    rows = candles(12 * 30, seed=11)                     # 30 hours
    csv = write_csv(tmp_path / "kraken_BTC_EUR_5m.csv", rows)
    start = T0 + 4 * 3600                                 # the trend windows are full by then
    series = read_csv(csv)
    result = replay([series], trading_for(TradingConfig(**TRADING), [series], {}), step_minutes=10, start=start,
                    show_progress=False)
    assert result.trades and any(t.exit_at for t in result.trades)

    with KrakenSimulator(clock=start) as sim:
        sim.load_candles("XXBTZEUR", str(csv))
        cfg = live_config(tmp_path, sim)
        for i, now in enumerate(range(start, result.last + 1, 600)):
            sim.set_time(now)
            get_api_data(cfg)
            if i % 6 == 0:
                available_markets(cfg)
            run_agent(cfg)
        db = open_market_db(cfg)
        try:
            live = db.journal("dry")
            listed = db.market_rules("kraken")["BTC/EUR"]
        finally:
            db.close()
    assert fills(live) == fills(result.journal) and len(fills(live)) >= 4
    replayed = kraken_rules()["BTC/EUR"]
    assert (listed.price_decimals, listed.volume_decimals, listed.min_volume, listed.min_cost) == \
        (replayed.price_decimals, replayed.volume_decimals, replayed.min_volume, replayed.min_cost)


def test_the_default_rules_are_the_simulators_own_table():
    """kraken_rules reads a saved copy of the simulator's AssetPairs reply: it must be the same.
    To renew it: python -c "import json; from simulators.kraken import KrakenSimulator as K;
    print(json.dumps({'error': [], 'result': K(clock=0)._asset_pairs({})}, indent=1, sort_keys=True))"
    > includes/platforms/kraken_asset_pairs.json"""
    served = json.loads(json.dumps(KrakenSimulator(clock=0)._asset_pairs({})))
    assert json.loads(KRAKEN_PAIRS.read_text())["result"] == served
    assert kraken_rules()["BTC/EUR"].min_volume == D("0.0001") and kraken_rules()["ETH/BTC"].price_decimals == 5


def coarse_pairs_file(tmp_path: Path) -> Path:
    """A saved AssetPairs reply, as the simulator serves it, with BTC/EUR traded in lots of
    0.001 and at least 0.001 BTC: rules that visibly change the volumes."""
    with KrakenSimulator(clock=T0) as sim:
        reply = requests.get(sim.url + "/0/public/AssetPairs", timeout=5).json()   # as a client reads it
    reply["result"]["XXBTZEUR"].update(lot_decimals=3, ordermin="0.001")
    path = tmp_path / "pairs.json"
    path.write_text(json.dumps(reply))
    return path


def test_a_markets_file_sets_the_rules_the_replay_trades_by(tmp_path):
    """--markets: a saved AssetPairs reply; a coarser lot and a bigger minimum change the volumes."""
    rules = read_rules(coarse_pairs_file(tmp_path))
    assert rules["BTC/EUR"].volume_decimals == 3 and rules["BTC/EUR"].min_volume == D("0.001")
    series = read_csv(write_csv(tmp_path / "kraken_BTC_EUR_5m.csv", candles(12 * 30, seed=11)))
    config = trading_for(TradingConfig(**TRADING), [series], {"max_per_trade": "40"})
    coarse = replay([series], config, start=T0 + 4 * 3600, show_progress=False, rules=rules)
    fine = replay([series], config, start=T0 + 4 * 3600, show_progress=False)
    assert coarse.trades and all(t.volume == t.volume.quantize(D("0.001")) for t in coarse.trades)
    assert any(t.volume != t.volume.quantize(D("0.001")) for t in fine.trades)


def test_the_script_trades_by_the_markets_file_it_is_given(tmp_path):
    pairs = coarse_pairs_file(tmp_path)
    csv = write_csv(tmp_path / "kraken_BTC_EUR_5m.csv", candles(12 * 30, seed=11))
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({
        "paths": {"log": str(tmp_path / "log"), "tmp": str(tmp_path / "tmp"), "img": str(tmp_path / "img")},
        "trading": {**{k: str(v) if isinstance(v, D) else v for k, v in TRADING.items()}, "max_per_trade": 40}}))
    out = tmp_path / "report.json"
    done = subprocess.run([sys.executable, "backtest.py", "--config", str(config), "--csv", str(csv), "--markets",
                           str(pairs), "--json", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stderr
    run = json.loads(out.read_text())["runs"][0]
    volumes = [D(t["volume"]) for t in run["trades"] + run["open_positions"]]
    assert volumes and all(v == v.quantize(D("0.001")) for v in volumes)
