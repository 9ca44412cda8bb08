"""The market-data jobs: get_api_data (tickers, candles, global metrics) and
available_markets (which markets are open, and since when).

A cycle asks for as little as it can: one ticker request for every market, and
candles only for the markets whose next candle is due, from the last one
stored on (the still-open one is fetched again and overwritten).  A market that
fails is skipped with a log line; the DB being down sends the rows to the spool.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from includes.errors import ExchangeError, StorageError
from includes.files import write_atomic
from includes.runtime import progress

if TYPE_CHECKING:
    from includes.config import Config
    from includes.model import Market
    from includes.platforms.base import Platform
    from includes.storage.marketdb import MarketDB
    from includes.storage.spool import Spool
    from includes.storage.timeseries import TimeSeriesWriter

log = logging.getLogger(__name__)

AVAILABLE_FILE = "available.markets.tmp"
FIRST_FETCH_CANDLES = 720     # a market seen for the first time gets this much history
BACKFILL_INTERVALS = (60, 240, 1440)
CYCLE_SHARE = 0.5             # of the cron period, the candle calls' share: a cycle ends well before the next starts
OTHER_CALLS = 3               # the listing, the tickers, a retry


@dataclass
class CycleReport:
    markets: int = 0
    tickers: int = 0
    candles: int = 0
    due: int = 0
    behind: int = 0           # due markets left for the next cycles by the call budget
    failed: list[str] = field(default_factory=list)
    gaps: list[str] = field(default_factory=list)    # holes one call could not fill: the owner is told
    global_metrics: bool = False

    @property
    def fetched_anything(self) -> bool:
        return bool(self.tickers or self.candles or self.global_metrics)


def tracked_markets(cfg: Config, platform: Platform) -> list[Market]:
    """The configured currencies x the quote currency, or every market: the available ones."""
    markets = platform.markets()
    if cfg.market_data.markets == "all":
        wanted = sorted(markets.values(), key=lambda m: m.symbol)
    else:
        wanted = []
        for currency in cfg.trading.currencies:
            symbol = f"{platform.canonical(currency)}/{cfg.trading.quote}"
            if symbol in markets:
                wanted.append(markets[symbol])
            else:
                log.warning("%s: %s has no such market; skipped (check trading.currencies)",
                            symbol, platform.name)
    for market in wanted:
        if not market.available:
            log.info("%s is %s: not fetched", market.symbol, market.status)
    return [m for m in wanted if m.available]


def record_markets(db: MarketDB, spool: Spool, platform: Platform, now: int) -> list[Market]:
    """Register the venue's listing: new markets, status changes with their date."""
    markets = sorted(platform.markets().values(), key=lambda m: m.symbol)
    changes = spool.write(db, "upsert_markets", exchange=platform.name, markets=markets, seen_at=now) or []
    for symbol, old, new in changes:
        if old is None:
            log.info("%s: new market, status %s", symbol, new)
        else:
            log.info("%s: status %s -> %s", symbol, old, new)
    return markets


def call_budget(cfg: Config) -> int:
    """Candle calls one cycle may make: its share of the cron period (market_data.cycle_minutes)
    at the exchange's public pace (1 call/s, 10 minutes: 297), so that no cycle outlasts the
    period whatever the number of markets."""
    period = cfg.market_data.cycle_minutes * 60
    return max(1, int(period * CYCLE_SHARE * cfg.exchange.public_calls_per_second) - OTHER_CALLS)


def fetch_cycle(cfg: Config, platform: Platform, db: MarketDB, spool: Spool,
                timeseries: TimeSeriesWriter | None, budget: int | None = None) -> CycleReport:
    """One run of get_api_data: the due markets, most overdue first, within `budget` candle
    calls (call_budget); those left over come first in the next cycles."""
    report = CycleReport()
    replayed = _replay(db, spool)
    if replayed:
        log.info("%d spooled rows replayed into the market DB", replayed)
    now = platform.now()
    record_markets(db, spool, platform, now)
    markets = tracked_markets(cfg, platform)
    report.markets = len(markets)
    if not markets:
        log.warning("no available market to fetch")
        return report
    exchange = platform.name

    try:
        tickers = platform.get_tickers([m.symbol for m in markets])
    except ExchangeError as exc:
        log.error("tickers: %s", exc)
        report.failed.append("tickers")
    else:
        report.tickers = len(tickers)
        spool.write(db, "insert_tickers", exchange=exchange, tickers=list(tickers.values()), ts=now)
        _to_timeseries(timeseries, "write_tickers", exchange, list(tickers.values()))

    interval = cfg.market_data.candle_interval
    try:
        last = db.last_candle_ts_by_market(exchange, interval, [m.symbol for m in markets])
    except StorageError as exc:
        log.warning("%s; fetching recent candles for every market", exc)
        last = {}
    step = interval * 60
    due = sorted(((last.get(m.symbol), m) for m in markets
                  if last.get(m.symbol) is None or now >= last[m.symbol] + step),   # else the stored candle is open
                 key=lambda d: -1 if d[0] is None else d[0])                        # new markets, then the oldest
    budget = call_budget(cfg) if budget is None else budget
    report.due = len(due)
    calls = 0
    for i, (since, market) in enumerate(progress(due, total=len(due), desc="candles")):
        if calls >= budget:
            report.behind = len(due) - i
            log.warning("%d markets due, %d fetched within this cycle's budget of %d calls; %d wait for the "
                        "next cycles, the most overdue %s", len(due), i, budget, report.behind,
                        "never fetched yet" if since is None else f"{(now - since) // 60} min behind")
            break
        calls += 1
        if since is None:
            since = now - FIRST_FETCH_CANDLES * interval * 60
        elif platform.max_candles is not None and now - since > platform.max_candles * step:
            calls += _fill_gap(platform, db, spool, timeseries, report, market.symbol, interval, since, now)
        try:
            candles = platform.get_candles(market.symbol, interval, since=since)
        except ExchangeError as exc:
            log.error("%s candles: %s; skipped this cycle", market.symbol, exc)
            report.failed.append(market.symbol)
            continue
        spool.write(db, "upsert_candles", exchange=exchange, market=market.symbol, interval=interval,
                    candles=candles)
        _to_timeseries(timeseries, "write_candles", exchange, market.symbol, interval, candles)
        report.candles += len(candles)
    log.info("%d markets: %d tickers, %d candles from %d due markets%s", len(markets), report.tickers,
             report.candles, report.due, f"; failed: {', '.join(report.failed)}" if report.failed else "")
    return report


def _fill_gap(platform: Platform, db: MarketDB, spool: Spool, timeseries: TimeSeriesWriter | None,
              report: CycleReport, market: str, interval: int, since: int, now: int) -> int:
    """A hole longer than one call of `interval` candles can fill (an outage of days): covered
    by the first coarser interval whose one call reaches back to `since`, and reported once (the
    next cycle starts after it); the calls it made."""
    assert platform.max_candles is not None
    kept = now - platform.max_candles * interval * 60
    hole = f"{market}: no {interval}-min candles from {_utc(since)} to {_utc(kept)}"
    for coarse in (i for i in BACKFILL_INTERVALS if i > interval):
        if platform.max_candles * coarse * 60 >= now - since:
            try:
                candles = platform.get_candles(market, coarse, since=since)
            except ExchangeError as exc:
                report.gaps.append(f"{hole} (the exchange keeps {platform.max_candles}; {coarse}-min: {exc})")
                return 1
            spool.write(db, "upsert_candles", exchange=platform.name, market=market, interval=coarse,
                        candles=candles)
            _to_timeseries(timeseries, "write_candles", platform.name, market, coarse, candles)
            report.gaps.append(f"{hole} (the exchange keeps {platform.max_candles}): filled with {coarse}-min candles")
            return 1
    report.gaps.append(f"{hole}: the exchange keeps {platform.max_candles}, and no coarser interval reaches back")
    return 0


def _utc(ts: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(ts))


def backfill(cfg: Config, platform: Platform, db: MarketDB, spool: Spool,
             timeseries: TimeSeriesWriter | None, days: float) -> int:
    """History of the last `days`, page by page, within the venue's candle limit.

    Kraken keeps only the 720 newest candles of each interval, so a span longer
    than 720 candles of the configured interval is covered by coarser ones too
    (hourly: 30 days, 4-hourly: 120 days, daily: 2 years); the agent's trends
    read whichever covers their window.
    """
    now = platform.now()
    start = now - int(days * 86400)
    intervals = []
    for interval in sorted({cfg.market_data.candle_interval, *BACKFILL_INTERVALS}):
        if interval < cfg.market_data.candle_interval:
            continue
        intervals.append(interval)
        if platform.max_candles is None or platform.max_candles * interval * 60 >= now - start:
            break
    markets = tracked_markets(cfg, platform)
    stored = 0
    for market, interval in progress([(m, i) for m in markets for i in intervals],
                                     total=len(markets) * len(intervals), desc="backfill"):
        since = start
        while since < now:
            try:
                candles = platform.get_candles(market.symbol, interval, since=since)
            except ExchangeError as exc:
                log.error("%s %d min candles: %s; skipped", market.symbol, interval, exc)
                break
            spool.write(db, "upsert_candles", exchange=platform.name, market=market.symbol,
                        interval=interval, candles=candles)
            _to_timeseries(timeseries, "write_candles", platform.name, market.symbol, interval, candles)
            stored += len(candles)
            if not candles or not candles[-1].closed or candles[-1].ts <= since:
                break  # reached the open candle, or the venue gives nothing older
            since = candles[-1].ts + interval * 60
    log.info("backfill of %g days: %d candles of %s min for %d markets", days, stored,
             "/".join(map(str, intervals)), len(markets))
    return stored


def fetch_global_metrics(cfg: Config, db: MarketDB, spool: Spool, timeseries: TimeSeriesWriter | None,
                         now: int) -> bool:
    """CoinMarketCap's totals, when a key is configured; False when there was none to get."""
    cmc = cfg.market_data.coinmarketcap
    if cmc.key_file is None:
        return False
    from includes.coinmarketcap import fetch_global_metrics as fetch
    from includes.files import read_token_file
    from includes.redaction import register_secret

    key = read_token_file(cfg.path(cmc.key_file))
    register_secret(key)
    try:
        metrics = fetch(cmc.api_url, key, cfg.trading.quote, now, timeout=cfg.exchange.timeout)
    except ExchangeError as exc:
        log.error("global metrics: %s", exc)
        return False
    spool.write(db, "insert_global_metrics", source="coinmarketcap", metrics=[metrics])
    if timeseries is not None:
        from dataclasses import asdict
        _to_timeseries(timeseries, "write_global_metrics", "coinmarketcap", metrics.quote, asdict(metrics),
                       ts=metrics.ts)
    log.info("global metrics: market cap %s %s, BTC dominance %s%%", metrics.total_market_cap,
             metrics.quote, metrics.btc_dominance)
    return True


def write_available_file(path, exchange: str, markets: list[Market], now: int) -> None:
    """tmp/available.markets.tmp: a comment line, then one available market per line."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
    lines = [f"# available markets of {exchange} at {stamp}: BASE/QUOTE exchange-id status\n"]
    lines += [f"{m.symbol} {m.exchange_symbol} {m.status}\n" for m in markets if m.available]
    write_atomic(path, "".join(lines))


def _replay(db: MarketDB, spool: Spool) -> int:
    try:
        return spool.replay(db)
    except StorageError as exc:
        log.warning("spool not replayed: %s", exc)
        return 0


def tell_spool(job: str, spool: Spool) -> None:
    """A run that used the spool says what it holds in one log line, and on stderr (cron mails it)
    when rows wait there: a backlog is news; so is every batch a cap dropped."""
    from includes.runtime import tell_owner

    dropped = spool.told()
    if dropped:
        tell_owner(job, dropped)
    if not spool.used:
        return
    holding = spool.holding()
    if holding.files:
        tell_owner(job, holding.describe(spool.clock()))
    else:
        log.info("%s", holding.describe(spool.clock()))


def _to_timeseries(writer: TimeSeriesWriter | None, method: str, *args, **kwargs) -> None:
    """The time series are optional: a failure there is logged, never fatal."""
    if writer is None:
        return
    try:
        getattr(writer, method)(*args, **kwargs)
    except StorageError as exc:
        log.warning("time series: %s", exc)


def get_api_data(cfg: Config, backfill_days: float | None = None) -> int:
    """The get_api_data job; exit status 1 only when nothing at all could be fetched."""
    from includes.platforms import make_platform
    from includes.storage import open_market_db, open_spool, open_timeseries

    platform = make_platform(cfg, live=False)
    db = open_market_db(cfg)
    spool = open_spool(cfg)
    timeseries = open_timeseries(cfg)
    try:
        if backfill_days:
            backfill(cfg, platform, db, spool, timeseries, backfill_days)
        report = fetch_cycle(cfg, platform, db, spool, timeseries)
        report.global_metrics = fetch_global_metrics(cfg, db, spool, timeseries, platform.now())
    finally:
        db.close()
        if timeseries is not None:
            timeseries.close()
    tell_spool("get_api_data", spool)   # a run that failed says its one line only (the log has the drops)
    from includes.runtime import tell_owner
    for gap in report.gaps:
        tell_owner("get_api_data", gap)
    if not report.fetched_anything:
        log.error("nothing could be fetched this cycle")
        return 1
    return 0


def available_markets(cfg: Config) -> int:
    """The available_markets job: record the listing, write tmp/available.markets.tmp."""
    from includes.platforms import make_platform
    from includes.storage import open_market_db, open_spool

    platform = make_platform(cfg, live=False)
    db = open_market_db(cfg)
    spool = open_spool(cfg)
    try:
        now = platform.now()
        markets = record_markets(db, spool, platform, now)
    finally:
        db.close()
    tell_spool("available_markets", spool)
    path = cfg.path(cfg.paths.tmp) / AVAILABLE_FILE
    write_available_file(path, platform.name, markets, now)
    log.info("%d of %d markets available; written to %s", sum(m.available for m in markets),
             len(markets), path)
    return 0
