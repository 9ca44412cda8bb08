"""The two-command demo: the whole cron cycle against the bundled Kraken
simulator, on the embedded default (SQLite market DB and state, no servers).

It starts the simulator on loopback, then plays cron over a simulated day or
more: get_api_data every 10 minutes, available_markets hourly, trade_agent in
dry-run 5 minutes after each fetch.  The jobs run in this process (a simulated
day takes seconds, not a day); they are the same functions the scripts call.
"""
from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml

from includes.config import ROOT, Config, load_config
from includes.files import write_private
from includes.runtime import progress, setup_logging

CYCLE = 600              # seconds between two get_api_data runs (cron: */10)
WARMUP = 3 * 86400       # a CSV's first days are history for the trends, not played


def _csv_rows(path: Path, price: Decimal, decimals: int) -> list[tuple]:
    """The CSV's candles scaled so that its first close is `price`: the shape of the
    series (its percentages, hence trends and gains) at that pair's price level."""
    from simulators.prices import read_candle_csv

    rows = read_candle_csv(path)
    if not rows:
        raise SystemExit(f"{path}: no candles")
    factor, tick = price / rows[0][4], Decimal(1).scaleb(-decimals)
    return [(ts, *((x * factor).quantize(tick) for x in (o, h, lo, c)), v) for ts, o, h, lo, c, v in rows]


@contextmanager
def demo_venue(seed: int, csv: Path | None, pair: str) -> Iterator[tuple[Any, str]]:
    """A started Kraken simulator and a sentence saying where its prices come from."""
    from simulators.kraken import KrakenSimulator

    if csv is None:
        with KrakenSimulator(clock=1_700_000_000, seed=seed) as sim:
            yield sim, f"synthetic price path (seeded random walk, seed {seed}; --csv FILE plays real candles)"
        return
    with KrakenSimulator(clock=0, seed=seed) as probe:
        reference = probe.pair(pair)
        rows = _csv_rows(csv, reference.price, reference.pair_decimals)
    warmup = min(WARMUP, (rows[-1][0] - rows[0][0]) // 4)  # a short file keeps most of itself to play
    with KrakenSimulator(clock=rows[0][0] + warmup, seed=seed) as sim:
        sim.load_candles(pair, rows)
        yield sim, f"{pair} follows {csv.name} (scaled to its price level); other pairs: seeded walk, seed {seed}"


def demo_config(home: Path, sim: Any, storage: dict[str, Any] | None) -> Config:
    key, secret = sim.add_account(balances={"ZEUR": "100"})
    write_private(home / "kraken.key", f"{key}\n{secret}\n")
    data = {
        "paths": {"log": str(home / "log"), "tmp": str(home / "tmp"), "img": str(home / "img")},
        "exchange": {"api_url": sim.url, "key_file": str(home / "kraken.key"), "public_calls_per_second": 1000,
                     "timeout": 5},
        "trading": {"currencies": ["BTC", "ETH", "LTC", "XRP", "SOL"], "dry_run": True, "dry_run_balance": 100,
                    "sell_percent": 2, "stop_file": str(home / "stop"), "dry_run_file": str(home / "dry-run")},
        "storage": {"market_db": f"sqlite:///{home / 'crontrader.db'}", "state": f"sqlite:///{home / 'state.db'}",
                    **(storage or {})},
    }
    (home / "config.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return load_config(home / "config.yaml")


def run_demo(days: float = 1, seed: int = 7, csv: Path | None = None, pair: str = "XXBTZEUR",
             home: Path = ROOT / "tmp" / "demo", storage: dict[str, Any] | None = None) -> dict[str, Any]:
    """Play `days` of cron; print and return the summary."""
    from includes.agent import run_agent
    from includes.marketdata import available_markets, get_api_data

    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    with demo_venue(seed, csv, pair) as (sim, source):
        cfg = demo_config(home, sim, storage)
        setup_logging("demo", cfg.path(cfg.paths.log), stderr=False)
        start = int(sim.clock)
        cycles = int(days * 86400 // CYCLE)
        print(f"crontrader demo: Kraken simulator at {sim.url}")
        print(f"prices: {source}")
        print(f"playing {cycles} cron cycles from {_utc(start)}: get_api_data, available_markets hourly, "
              f"trade_agent dry-run 5 min later")
        began = time.monotonic()
        for i in progress(range(cycles), total=cycles, desc="cycles"):
            get_api_data(cfg)
            if i % 6 == 0:
                available_markets(cfg)
            sim.advance(CYCLE // 2)
            run_agent(cfg)
            sim.advance(CYCLE - CYCLE // 2)
        summary = summarise(cfg, sim, start)
        summary["seconds"] = round(time.monotonic() - began, 1)
        print_summary(summary, cfg, home)
        draw(cfg, int(sim.clock), summary["status"])
    return summary


def draw(cfg: Config, now: int, status: Any) -> None:
    """img/index.html and its charts from the demo's own data, anchored at its clock, and
    status.py's summary of it (`status`, gathered by summarise)."""
    from includes.plots import plot_all
    from includes.status import headline

    plot_all(cfg, now=now)
    print("\nstatus.py says:")
    for label, text in headline(status):
        print(f"  {label}: {text}")
    print(f"page: {cfg.path(cfg.paths.img) / 'index.html'}")


def summarise(cfg: Config, sim: Any, start: int) -> dict[str, Any]:
    """The threads, the fills and status.py's figures (prices at the bid, as the agent sees them)."""
    from includes.status import gather
    from includes.storage import open_market_db, open_state

    store, db = open_state(cfg, "dry"), open_market_db(cfg)
    try:
        threads, journal = store.threads(), db.journal("dry", agent=cfg.storage.namespace)
        status = gather(cfg, db, store, "dry")
    finally:
        store.close()
        db.close()
    return {"start": _utc(start), "end": _utc(int(sim.clock)), "threads": threads,
            "trades": [r for r in journal if r["filled"]], "status": status,
            "free": status.free, "realised": status.realised_total}


def print_summary(s: dict[str, Any], cfg: Config, home: Path) -> None:
    print(f"\nsimulated {s['start']} -> {s['end']} in {s['seconds']} s")
    print("\nthreads:")
    print(f"  {'#':>2}  {'state':8} {'currency':8} {'invested':>10} {'volume':>14} {'bought at':>12}")
    for t in s["threads"]:
        print(f"  {t.n:>2}  {t.state:8} {t.currency or '-':8} {t.value:>10.4f} {t.volume:>14} "
              f"{t.lastbuyvalue if t.lastbuyvalue is not None else '-':>12}")
    buys = sum(r["side"] == "buy" for r in s["trades"])
    print(f"\ntrades: {buys} buys, {len(s['trades']) - buys} sells")
    for r in s["trades"][-12:]:
        print(f"  {_utc(int(r['result_at'] or 0))}  thread {r['thread']}  {r['side']:4} {r['market']:8} "
              f"{r['filled']:>14} at {r['price']:>10}  {r['cost']:>8.4f} EUR")
    status, start = s["status"], cfg.trading.dry_run_balance
    equity = status.equity if status.equity is not None else status.free
    print(f"\nP&L: started with {start} EUR; now {status.free:.2f} EUR free + {equity - status.free:.2f} EUR "
          f"in positions sold at the bid = {equity:.2f} EUR ({(equity - start) * 100 / start:+.2f}%); "
          f"realised {status.realised_total:+.4f} EUR, fees {status.fees:.4f} EUR")
    print(f"files: {home}/ (config.yaml, crontrader.db, state.db, log/)")


def _utc(ts: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(ts))
