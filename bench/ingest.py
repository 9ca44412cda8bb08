"""Ingestion speed of the market DB's write path, on MariaDB.

A year of one market's one-minute candles (525,600 rows, synthetic but
realistic Decimals) goes into a fresh database:
- through the project's write path, MarketDB.upsert_candles (best of 3, empty table each time);
- by LOAD DATA LOCAL INFILE of the same rows, the server's bulk-load speed (best of 3);
- by one INSERT per row, each committed on its own (the old style), timed on a sample;
- and, to show why the write path formats its own statements, by PyMySQL's
  executemany of the same upsert.
All of it on PyMySQL directly, as the write path is.

Targets: the write path >= 150,000 rows/s, >= 0.5x LOAD DATA, >= 20x one INSERT per row.
Run by hand: .venv/bin/python bench/ingest.py (server: CRONTRADER_BENCH_MYSQL, default
mysql+pymysql://root@127.0.0.1:3306).  Exits 1 when a target is missed.
"""
from __future__ import annotations

import os
import random
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit

import pymysql
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from includes.model import Candle  # noqa: E402
from includes.storage.marketdb import BATCH, TABLES, MarketDB  # noqa: E402

SERVER = os.environ.get("CRONTRADER_BENCH_MYSQL", "mysql+pymysql://root@127.0.0.1:3306")
ROWS = 525_600          # one year of one-minute candles
SAMPLE = 20_000         # rows timed for the one-INSERT-per-row baseline
RUNS = 3
TARGET_RATE, TARGET_VS_LOAD, TARGET_VS_ROW = 150_000, 0.5, 20
EXCHANGE, MARKET, INTERVAL = "kraken", "BTC/EUR", 1
SHOW = sys.stdout.isatty()


def synthetic_year(seed: int = 2024) -> list[Candle]:
    """A random walk around 34,000 EUR: prices to 0.1, volumes to 8 decimals, like Kraken's."""
    rng = random.Random(seed)
    tick, lot = Decimal("0.1"), Decimal("0.00000001")
    close, ts = Decimal("34000.1"), 1_672_531_200
    candles = []
    for _ in tqdm(range(ROWS), desc="candles", unit=" rows", disable=not SHOW):
        open_ = close
        close = (open_ * Decimal(str(1 + rng.gauss(0, 0.0008)))).quantize(tick)
        spread = Decimal(str(abs(rng.gauss(0, 4)))).quantize(tick)
        volume = Decimal(str(rng.lognormvariate(-1, 1.5))).quantize(lot)
        candles.append(Candle(ts, open_, max(open_, close) + spread, min(open_, close) - spread, close, volume))
        ts += 60
    return candles


def timed(action: Callable[[], object], runs: int, before: Callable[[], object]) -> list[float]:
    """Seconds of each run of `action`, after an untimed `before` (which empties the table)."""
    seconds = []
    for _ in range(runs):
        before()
        start = time.perf_counter()
        action()
        seconds.append(time.perf_counter() - start)
    return seconds


def ingest_benchmark() -> bool:
    """Prints the figures; True when the write path meets its targets."""
    database = f"ct_bench_{uuid.uuid4().hex[:8]}"
    server = urlsplit(SERVER)
    login = {"host": server.hostname, "port": server.port or 3306, "user": server.username,
             "password": server.password or ""}
    admin = pymysql.connect(**login, autocommit=True, local_infile=True)
    cursor = admin.cursor()
    cursor.execute(f"CREATE DATABASE `{database}` CHARACTER SET utf8mb4")
    try:
        return _measure(cursor, database, login)
    finally:
        cursor.execute(f"DROP DATABASE IF EXISTS `{database}`")
        admin.close()


def _measure(cursor: pymysql.cursors.Cursor, database: str, login: dict[str, object]) -> bool:
    cursor.execute("SELECT VERSION(), @@GLOBAL.local_infile")
    version, local_infile = cursor.fetchone()
    if not local_infile:
        cursor.execute("SET GLOBAL local_infile = 1")
    url = f"{SERVER}/{database}"
    candles = synthetic_year()
    rows = [(EXCHANGE, MARKET, INTERVAL, c.ts, c.open, c.high, c.low, c.close, c.volume) for c in candles]
    expected = (ROWS, sum(c.close for c in candles))
    rates: dict[str, float] = {}

    def empty() -> None:
        cursor.execute(f"TRUNCATE `{database}`.candles")

    def measure(label: str, action: Callable[[], object], runs: int = 1, n: int = ROWS,
                before: Callable[[], object] = empty, note: str = "") -> None:
        seconds = timed(action, runs, before)
        rates[label] = n / min(seconds)
        if n == ROWS:
            cursor.execute(f"SELECT COUNT(*), SUM(close) FROM `{database}`.candles")
            assert cursor.fetchone() == expected, f"{label} lost rows"
        runs_text = " ".join(f"{s:.2f}" for s in seconds)
        print(f"  {label:50} {rates[label]:>9,.0f} rows/s   {runs_text} s{note}", flush=True)

    print(f"ingest: {ROWS:,} one-minute candles (one market, one year) into MariaDB {version}, "
          f"{os.cpu_count()} cores")
    db = MarketDB(url)
    db.ensure_schema()
    write_path = lambda: db.upsert_candles(EXCHANGE, MARKET, INTERVAL, candles)  # noqa: E731
    measure("write path (MarketDB.upsert_candles)", write_path, runs=RUNS)
    measure("write path again, every row already there", write_path, before=lambda: None)
    db.close()

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "candles.tsv"
        start = time.perf_counter()
        with open(path, "w") as f:
            f.writelines(f"{EXCHANGE}\t{MARKET}\t{INTERVAL}\t{c.ts}\t{c.open:f}\t{c.high:f}\t{c.low:f}\t"
                         f"{c.close:f}\t{c.volume:f}\n" for c in candles)
        load_data = (f"LOAD DATA LOCAL INFILE '{path}' INTO TABLE `{database}`.candles "
                     "(exchange, market, `interval`, ts, open, high, low, close, volume)")
        measure("LOAD DATA LOCAL INFILE", lambda: cursor.execute(load_data), runs=RUNS,
                note=f" (+ {time.perf_counter() - start:.2f} s to write the file, not counted)")

    columns = TABLES["candles"].columns
    names = ", ".join(f"`{c}`" for c in columns)
    values = "(" + ", ".join(["%s"] * len(columns)) + ")"
    upsert = (f"INSERT INTO candles ({names}) VALUES {values} ON DUPLICATE KEY UPDATE "
              + ", ".join(f"`{c}` = VALUES(`{c}`)" for c in ("open", "high", "low", "close", "volume")))

    def connect(autocommit: bool) -> pymysql.connections.Connection:
        return pymysql.connect(**login, database=database, charset="utf8mb4", autocommit=autocommit)

    def pymysql_executemany() -> None:
        conn = connect(autocommit=False)
        with conn.cursor() as driver_cursor:
            for i in range(0, ROWS, BATCH):
                driver_cursor.executemany(upsert, rows[i:i + BATCH])
        conn.commit()
        conn.close()

    measure("PyMySQL executemany of the upsert", pymysql_executemany)

    def row_per_insert() -> None:
        conn = connect(autocommit=True)
        with conn.cursor() as driver_cursor:
            for row in tqdm(rows[:SAMPLE], desc="one INSERT per row", unit=" rows", disable=not SHOW):
                driver_cursor.execute(f"INSERT INTO candles ({names}) VALUES {values}", row)
        conn.close()

    measure(f"one INSERT per row, committed ({SAMPLE:,}-row sample)", row_per_insert, n=SAMPLE)

    rate = rates["write path (MarketDB.upsert_candles)"]
    load = rates["LOAD DATA LOCAL INFILE"]
    per_row = rates[f"one INSERT per row, committed ({SAMPLE:,}-row sample)"]
    checks = [(f"write path {rate:,.0f} rows/s", rate >= TARGET_RATE, f">= {TARGET_RATE:,}"),
              (f"write path / LOAD DATA {rate / load:.2f}x", rate >= TARGET_VS_LOAD * load,
               f">= {TARGET_VS_LOAD}x"),
              (f"write path / one INSERT per row {rate / per_row:.0f}x", rate >= TARGET_VS_ROW * per_row,
               f">= {TARGET_VS_ROW}x")]
    for name, good, target in checks:
        print(f"  {name:50} target {target:10} {'ok' if good else 'MISSED'}")
    return all(good for _, good, _ in checks)


def requests_benchmark(markets: int = 50) -> bool:
    """The exchange requests of get_api_data cycles over `markets` markets, against the
    Kraken simulator limiting public calls per IP to about one a second (Kraken's
    usual safe rate) at the client's default pace of one a second.

    Targets: one Ticker request a cycle; OHLC requests only for the markets whose
    next candle is due; no rate-limit error (every OHLC call answered the first time).
    """
    import logging

    import yaml

    from includes.config import load_config
    from includes.marketdata import get_api_data
    from simulators.kraken import KrakenSimulator

    print(f"\nexchange requests of get_api_data over {markets} markets (public calls paced at 1/s):")
    ok = True
    with tempfile.TemporaryDirectory() as home, \
            KrakenSimulator(clock=1_700_000_000, public_limit=(15, 1.0)) as sim:
        home = Path(home)
        defaults = [sim.pair(k).base for k in ("XXBTZEUR", "XETHZEUR", "XLTCZEUR", "XXRPZEUR", "ADAEUR",
                                                 "DOTEUR", "SOLEUR", "LINKEUR", "XDGEUR")]
        synthetic = [sim.pair(k).base for k in sim.add_synthetic_pairs(markets - len(defaults))]
        names = {"XXBT": "BTC", "XETH": "ETH", "XLTC": "LTC", "XXRP": "XRP", "XXDG": "DOGE"}
        currencies = [names.get(a, a) for a in defaults + synthetic]
        config = {"paths": {"log": str(home / "log"), "tmp": str(home / "tmp"), "img": str(home / "img")},
                  "exchange": {"api_url": sim.url},
                  "trading": {"currencies": currencies},
                  "storage": {"market_db": f"sqlite:///{home / 'market.db'}"}}
        (home / "config.yaml").write_text(yaml.safe_dump(config))
        cfg = load_config(home / "config.yaml")
        logging.disable(logging.WARNING)   # the failures are read from the request counts
        print(f"  {'cycle':44} {'wall s':>7} {'Ticker':>7} {'OHLC':>5} {'due':>4} {'other':>6}")
        for name, advance in (("first cycle (every market new)", 0), ("10 s later (nothing due)", 10),
                              ("5 min later (every next candle due)", 290)):
            sim.advance(advance)
            db = MarketDB(cfg.storage.market_db)
            symbols = [f"{c}/EUR" for c in currencies]
            last = db.last_candle_ts_by_market("kraken", 5, symbols) if (home / "market.db").exists() else {}
            db.close()
            due = sum(1 for c in currencies if last.get(f"{c}/EUR") is None or sim.clock >= last[f"{c}/EUR"] + 300)
            before = dict(sim.calls)
            start = time.perf_counter()
            get_api_data(cfg)
            wall = time.perf_counter() - start
            calls = {k: v - before.get(k, 0) for k, v in sim.calls.items()}
            ticker, ohlc = calls.get("Ticker", 0), calls.get("OHLC", 0)
            other = sum(calls.values()) - ticker - ohlc
            print(f"  {name:44} {wall:7.1f} {ticker:7} {ohlc:5} {due:4} {other:6}")
            ok &= ticker == 1 and ohlc == due   # each due market fetched once: no refusal, no retry
        logging.disable(logging.NOTSET)
    print(f"  targets: 1 Ticker request a cycle, OHLC only for due markets, no rate-limit error: "
          f"{'ok' if ok else 'MISSED'}")
    return ok


def main() -> int:
    ok = ingest_benchmark()
    ok &= requests_benchmark()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
