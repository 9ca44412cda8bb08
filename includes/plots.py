"""The charts of plot_graphs.py and img/index.html, the static page that shows them.

One PNG per market (close, trends, the journal's buys and sells), one per
journal namespace for the portfolio, one for the global market when
CoinMarketCap data is there, and the thread table in the page itself.
matplotlib (Agg, no pyplot: nothing global, no display) is imported only here,
only when drawing; the numbers are computed first, in plain Python, from Decimals.
"""
from __future__ import annotations

import hashlib
import io
import logging
import re
import time
from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from includes.errors import StorageError
from includes.files import write_atomic
from includes.model import MARKET_RE, MODES
from includes.money import ZERO
from includes.page import SIZE, Page, index_html, thread_row, utc
from includes.storage.journal import FillTotals, fold, is_fill
from includes.trends import trends as compute_trends

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from includes.config import Config
    from includes.model import Candle
    from includes.storage.marketdb import MarketDB

log = logging.getLogger(__name__)
logging.getLogger("matplotlib").setLevel(logging.WARNING)   # its DEBUG font search would flood --verbose

PLAIN_MARKET = re.compile(r"[A-Za-z0-9]{1,16}/[A-Za-z0-9]{1,16}")
UNSAFE = re.compile(r"[^A-Za-z0-9_]")


def chart_stem(market: str) -> str:
    """A file name for a market's chart that stays inside img/, whatever the name.

    BTC/EUR gives BTC-EUR.  Any other name gives market_<sanitized>_<hash>: only
    [A-Za-z0-9_], never empty, never a dot, and the hash keeps two names that
    sanitize alike apart.  The page's own charts (portfolio_live, global_market)
    have an underscore and no such prefix, so no market name can take their file.
    """
    if PLAIN_MARKET.fullmatch(market):
        return market.replace("/", "-")
    digest = hashlib.sha256(market.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    return f"market_{UNSAFE.sub('_', market)[:40]}_{digest}"


def chart_path(img: Path, stem: str) -> Path:
    path = img / f"{stem}.png"
    if path.parent != img or not re.fullmatch(r"[A-Za-z0-9_-]+", stem):
        raise ValueError(f"chart name {stem!r} would leave {img}")
    return path


# --- the numbers --------------------------------------------------------------------------

def filled_orders(rows: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Journal rows that moved money, in the order they filled."""
    done = [r for r in rows if is_fill(r) and r["price"]]
    return sorted(done, key=order_time)


def order_time(row: Mapping[str, Any]) -> float:
    return float(row["result_at"] or row["intent_at"])


@dataclass(frozen=True)
class PortfolioPoint:
    ts: int
    quote: Decimal          # quote currency balance
    positions: Decimal      # what the held volumes were worth then
    realised: Decimal       # profit and loss of the closed trades so far, fees included


def portfolio(orders: Sequence[Mapping[str, Any]], prices: Mapping[str, Sequence[tuple[int, Decimal]]],
              times: Sequence[int], start: Decimal = ZERO, opening: FillTotals | None = None) -> list[PortfolioPoint]:
    """The portfolio at each of `times` from the filled orders (oldest first), on top of what the
    fills before them left (`opening`, MarketDB.fill_totals: none by default).

    A buy spends cost + fee, a sell brings cost - fee; a sell realises its
    proceeds less the share of its thread's buy it sold (journal.fold's Sale.pnl).
    Held volumes are valued at the last known price (`prices`: per market,
    (ts, price) oldest first), else at the last fill price.
    """
    quote, realised = start, ZERO
    held: dict[str, Decimal] = {}
    last_fill: dict[str, Decimal] = {}
    if opening is not None:
        quote, realised = start + opening.sold - opening.bought, opening.realised
        for p in opening.held.values():
            held[p.market] = held.get(p.market, ZERO) + p.volume
            last_fill[p.market] = p.price
    # what each sale made: journal.fold, on the positions the earlier fills left
    made = {sale.ref: sale.pnl for sale in fold(orders, held=opening.held if opening else None)[1]}
    points, i = [], 0
    for t in times:
        while i < len(orders) and order_time(orders[i]) <= t:
            o = orders[i]
            i += 1
            last_fill[o["market"]] = o["price"]
            fee = o["fee"] or ZERO
            if o["side"] == "buy":
                quote -= o["cost"] + fee
                held[o["market"]] = held.get(o["market"], ZERO) + o["filled"]
            else:
                quote += o["cost"] - fee
                held[o["market"]] = held.get(o["market"], ZERO) - o["filled"]
                realised += made.get(o["ref"], ZERO)
        value = sum((volume * _price_at(prices.get(m, ()), t, last_fill[m]) for m, volume in held.items()), ZERO)
        points.append(PortfolioPoint(t, quote, value, realised))
    return points


def _price_at(series: Sequence[tuple[int, Decimal]], t: int, fallback: Decimal) -> Decimal:
    i = bisect_right(series, t, key=lambda p: p[0])
    return series[i - 1][1] if i else fallback


def time_grid(start: int, end: int, orders: Sequence[Mapping[str, Any]], points: int = 400) -> list[int]:
    """Evenly spaced times from start to end (at most an hour apart), plus each fill time."""
    step = max(3600, (end - start) // points)
    grid = set(range(start, end, step)) | {end}
    grid |= {int(order_time(o)) for o in orders if start <= order_time(o) <= end}
    return sorted(grid)


# --- drawing ------------------------------------------------------------------------------

def label(name: str, width: int = 60) -> str:
    """A name as a chart can print it: printable, and short enough for the layout."""
    shown = "".join(c if c.isprintable() else "?" for c in name)
    return shown if len(shown) <= width else shown[:width - 1] + "…"


def _figure(rows: int = 1) -> tuple[Figure, Any]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(SIZE[0], SIZE[1] * (1 if rows == 1 else 1.5)), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.subplots(rows, 1, sharex=True, squeeze=False)[:, 0]


def _save(fig: Figure, path: Path) -> None:
    """Rendered in memory, then written under a temporary name in img/ and renamed."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    write_atomic(path, buffer.getvalue())


def _dates(ts: Iterable[float]) -> list[datetime]:
    return [datetime.fromtimestamp(t, UTC) for t in ts]


def _time_axis(ax: Any) -> None:
    import matplotlib.dates as mdates

    locator = mdates.AutoDateLocator(tz=UTC)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator, tz=UTC))
    ax.grid(True, alpha=0.3)


def draw_no_data(path: Path, title: str, reason: str) -> None:
    fig, (ax,) = _figure()
    ax.set_axis_off()
    ax.set_title(title)
    ax.text(0.5, 0.5, reason, ha="center", va="center", fontsize=14, color="#666666", wrap=True)
    _save(fig, path)


def draw_market(path: Path, market: str, candles: Sequence[Candle], trends: Mapping[int, Decimal],
                orders: Sequence[Mapping[str, Any]], hours: int) -> None:
    """Close over the window, the trends in the title, a marker per fill (hollow: dry-run): a buy
    under its price pointing up at it, a sell above pointing down, so that a sale and the re-buy
    of the same minute both show."""
    from matplotlib.transforms import offset_copy

    fig, (ax,) = _figure()
    ax.plot(_dates(c.ts for c in candles), [float(c.close) for c in candles], color="#1f5fa8", lw=1.2,
            label="close")
    for side, marker, color, shift in (("buy", "^", "#1a9641", -7), ("sell", "v", "#d7191c", 7)):
        for ns in MODES:
            mine = [o for o in orders if o["side"] == side and o["mode"] == ns]
            if mine:
                ax.scatter(_dates(order_time(o) for o in mine), [float(o["price"]) for o in mine], s=70,
                           marker=marker, edgecolors=color, facecolors=color if ns == "live" else "none",
                           linewidths=1.5, zorder=3, label=f"{side} ({ns})",
                           transform=offset_copy(ax.transData, fig=fig, y=shift, units="points"))
    shown = "   ".join(f"{h} h {t:+.2f}%" for h, t in sorted(trends.items())) or "no trend yet"
    ax.set_title(f"{market}: close over the last {hours} h (UTC), last {candles[-1].close}\n"
                 f"trends  {shown}", fontsize=10)
    ax.legend(loc="upper left", fontsize=8)
    _time_axis(ax)
    _save(fig, path)


def draw_portfolio(path: Path, namespace: str, points: Sequence[PortfolioPoint], quote: str,
                   start_known: bool, start: Decimal = ZERO) -> None:
    """Equity on its own scale (a -14 % move shows), and below it the P&L: realised, as the
    sales closed it, and unrealised, what the held positions would add at market price."""
    fig, (top, bottom) = _figure(rows=2)
    when = _dates(p.ts for p in points)
    equity = [float(p.quote + p.positions) for p in points]
    top.plot(when, equity, color="#08519c", lw=1.2, label=f"equity: {quote} balance + positions at market")
    top.axhline(float(start), color="#999999", lw=0.8, ls="--", label=f"start: {start:.2f}")
    basis = "" if start_known else f" ({quote} balance counted from 0 before the first order)"
    change = points[-1].quote + points[-1].positions - start
    top.set_title(f"{namespace} equity in {quote}: {equity[-1]:.2f} ({change:+.2f}){basis}", fontsize=10)
    top.legend(loc="upper left", fontsize=8)
    realised = [float(p.realised) for p in points]
    bottom.step(when, realised, where="post", color="#6a3d9a", label="realised")
    bottom.plot(when, [e - float(start) - r for e, r in zip(equity, realised, strict=True)], color="#e6550d", lw=1,
                label="unrealised")
    bottom.axhline(0, color="#999999", lw=0.8)
    bottom.set_title(f"P&L, {quote}: realised {points[-1].realised:+.2f}, unrealised "
                     f"{change - points[-1].realised:+.2f}", fontsize=10)
    bottom.legend(loc="upper left", fontsize=8)
    _time_axis(top)
    _time_axis(bottom)
    _save(fig, path)


def draw_global(path: Path, rows: Sequence[Mapping[str, Any]], hours: int) -> None:
    fig, (ax,) = _figure()
    when = _dates(r["ts"] for r in rows)
    ax.plot(when, [float(r["total_market_cap"]) / 1e9 for r in rows], color="#1f5fa8")
    ax.set_ylabel(f"total market cap, billion {rows[-1]['quote']}", color="#1f5fa8")
    right = ax.twinx()
    right.plot(when, [float(r["btc_dominance"]) for r in rows], color="#e6550d")
    right.set_ylabel("BTC dominance, %", color="#e6550d")
    ax.set_title(f"global market over the last {hours} h (UTC), {rows[-1]['source']}", fontsize=10)
    _time_axis(ax)
    _save(fig, path)


# --- the run ------------------------------------------------------------------------------

def tracked_markets(cfg: Config) -> list[str]:
    return cfg.plots.markets if cfg.plots.markets is not None else \
        [f"{c}/{cfg.trading.quote}" for c in cfg.trading.currencies]


def plot_all(cfg: Config, now: int | None = None) -> Page:
    """Every chart, then index.html; a market without data gets a chart that says so."""
    from includes.storage import open_market_db

    now = int(time.time()) if now is None else now
    img = cfg.path(cfg.paths.img)
    img.mkdir(parents=True, exist_ok=True)
    page = Page()
    agent, since = cfg.storage.namespace, now - cfg.plots.window_hours * 3600
    db = open_market_db(cfg)
    try:
        # what the charts draw: the window's orders (orders_time), and what came before as totals
        # and positions (orders_status, orders_thread), so that a long journal costs nothing more
        journal = {ns: filled_orders(db.settled(ns, agent, since=since)) for ns in MODES}
        before = {ns: db.fill_totals(ns, agent, before=since) for ns in MODES}
        prices = {}
        for market in tracked_markets(cfg):
            prices[market] = plot_market(cfg, db, page, img, market, journal, now)
            ticker = db.last_ticker(cfg.exchange.name, market) if MARKET_RE.match(market) else None
            if ticker is not None:    # the agent's price, as status.py and the log say it: the bid
                prices[market] = ticker["bid"]
        for ns in MODES:
            if journal[ns] or before[ns].fills:
                plot_portfolio(cfg, db, page, img, ns, journal[ns], before[ns], now)
        if not any(journal[ns] or before[ns].fills for ns in MODES):
            name = "portfolio_dry" if cfg.trading.dry_run else "portfolio_live"
            draw_no_data(chart_path(img, name), "portfolio", "no order has been filled yet")
            page.charts.append(("Portfolio", f"{name}.png", "portfolio: no order yet"))
        metrics = db.global_metrics(since=now - cfg.plots.window_hours * 3600)
        if metrics:
            draw_global(chart_path(img, "global_market"), metrics, cfg.plots.window_hours)
            page.charts.append(("Global market", "global_market.png", "total market cap and BTC dominance"))
        thread_tables(cfg, page, prices)
        page.summary = summary(cfg, db)
        page.trades = trade_rows(db, _mode(cfg), agent, cfg.trading.quote)
    finally:
        db.close()
    write_atomic(img / "index.html", index_html(page, now, cfg.plots.window_hours))
    return page


def plot_market(cfg: Config, db: MarketDB, page: Page, img: Path, market: str,
                journal: Mapping[str, Sequence[Mapping[str, Any]]], now: int) -> Decimal | None:
    """The market's chart; returns its last price for the thread table."""
    interval, hours = cfg.market_data.candle_interval, cfg.plots.window_hours
    since = now - hours * 3600
    # a name no market can have has no rows (and MariaDB would refuse to compare a non-ASCII one)
    history = db.candles(cfg.exchange.name, market, interval,
                         since=now - (max(max(cfg.trading.trend_windows), hours) + 1) * 3600) \
        if MARKET_RE.match(market) else []
    shown = [c for c in history if c.ts >= since]
    path = chart_path(img, chart_stem(market))
    if not shown:
        draw_no_data(path, label(market), f"no price data for {label(market, 30)} in the last {hours} h")
        page.charts.append(("Markets", path.name, f"{market}: no data"))
        log.info("%r: no candles in the last %d h; chart says so", market, hours)
        return None
    trends = compute_trends(history, now, cfg.trading.trend_windows, interval)
    orders = [o for ns in MODES for o in journal[ns] if o["market"] == market and order_time(o) >= since]
    draw_market(path, label(market), shown, trends, orders, hours)
    page.charts.append(("Markets", path.name, market))
    return shown[-1].close


def plot_portfolio(cfg: Config, db: MarketDB, page: Page, img: Path, ns: str,
                   orders: Sequence[Mapping[str, Any]], opening: FillTotals, now: int) -> None:
    """Equity and P&L over the window (from the first order when that came later), on top of
    what the orders before it left."""
    since = now - cfg.plots.window_hours * 3600
    start_at = since if opening.fills else max(since, int(order_time(orders[0])))
    prices = {}
    for market in {o["market"] for o in orders} | {p.market for p in opening.held.values()}:
        tickers = db.tickers(cfg.exchange.name, market, since=start_at)
        if tickers:
            prices[market] = [(t["ts"], t["last"]) for t in tickers]
        else:
            interval = cfg.market_data.candle_interval
            prices[market] = [(c.ts + interval * 60, c.close)
                              for c in db.candles(cfg.exchange.name, market, interval, since=start_at)]
    start = cfg.trading.dry_run_balance if ns == "dry" else ZERO
    points = portfolio(orders, prices, time_grid(start_at, now, orders), start, opening)
    name = f"portfolio_{ns}"
    draw_portfolio(chart_path(img, name), ns, points, cfg.trading.quote, start_known=ns == "dry", start=start)
    page.charts.append(("Portfolio", f"{name}.png", f"{ns} portfolio"))


def thread_tables(cfg: Config, page: Page, prices: Mapping[str, Decimal | None]) -> None:
    """Both namespaces' threads; a state store that cannot be read is noted, not fatal."""
    from includes.storage import open_state

    for ns in MODES:
        try:
            store = open_state(cfg, ns)
            try:
                threads = store.threads()
            finally:
                store.close()
        except StorageError as exc:
            page.notes.append(f"{ns} threads: {exc}")
            log.warning("%s threads not shown: %s", ns, exc)
            continue
        if threads:
            page.threads[ns] = [thread_row(t, prices.get(f"{t.currency}/{cfg.trading.quote}"),
                                           cfg.trading.fee_percent) for t in threads]


def _mode(cfg: Config) -> str:
    from includes.runtime import dry_run_requested

    return "dry" if dry_run_requested(cfg) else "live"


def trade_rows(db: MarketDB, namespace: str, agent: str, quote: str, limit: int = 20) -> list[dict[str, str]]:
    """The latest fills, newest first, with their fees and, for a sale, what it made: journal.fold
    of those fills on the positions the orders before them left (the journal's end only)."""
    latest = sorted(db.latest_fills(namespace, agent, limit), key=lambda r: (float(r["intent_at"]), r["ref"]))
    held = db.open_positions(namespace, agent, before=float(latest[0]["intent_at"])) if latest else {}
    made = {sale.ref: sale.pnl for sale in fold(latest, held=held)[1]}
    rows = []
    for r in reversed(filled_orders(latest)):
        pnl = made.get(r["ref"])
        rows.append({"time": utc(order_time(r)), "side": r["side"], "market": r["market"],
                     "thread": str(r["thread"] or ""), "volume": f"{r['filled']:f}", "price": f"{r['price']:f}",
                     f"cost ({quote})": f"{r['cost']:f}" if r["cost"] is not None else "",
                     f"fee ({quote})": f"{r['fee']:f}" if r["fee"] is not None else "",
                     f"P&L ({quote})": f"{pnl:+.2f}" if pnl is not None else ""})
    return rows


def summary(cfg: Config, db: MarketDB) -> list[tuple[str, str]]:
    """status.py's headline for the configured mode; a state store that cannot be read leaves it out."""
    from includes.status import gather, headline
    from includes.storage import open_state

    mode = _mode(cfg)
    try:
        store = open_state(cfg, mode)
        try:
            status = gather(cfg, db, store, mode)
        finally:
            store.close()
    except StorageError as exc:
        log.warning("no summary: %s", exc)
        return []
    return headline(status) + [("attention", line) for line in status.attention]

