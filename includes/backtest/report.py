"""The report of replays: per trade, per pair, per quote currency (never one sum across
quotes); as text, JSON and charts."""
from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from includes.money import ZERO

if TYPE_CHECKING:
    from includes.backtest.replay import Result, Trade

    pass

log = logging.getLogger(__name__)

# --- the report --------------------------------------------------------------------------------

def summary(r: Result) -> dict[str, Any]:
    """One replay's figures, JSON-ready: money as decimal strings in the replay's own quote,
    ratios as percent floats.  Open positions are listed apart from the closed trades, and
    counted in the win rate at their P&L now."""
    closed = [t for t in r.trades if t.exit_at is not None]
    opened = [t for t in r.trades if t.exit_at is None]
    drawdown, peak_at, trough_at = r.max_drawdown()
    return {
        "label": r.label, "markets": [s.market for s in r.series], "interval_minutes": r.series[0].interval,
        "step_minutes": r.step // 60, "start": iso(r.first), "end": iso(r.last), "decisions": r.decisions,
        "agent_runs": r.agent_runs, "quote": r.trading.quote, "start_balance": _money(r.start_balance),
        "final_equity": _money(r.final_equity), "pnl": _money(r.pnl),
        "return_pct": round(float(r.pnl / r.start_balance * 100), 4),
        "pnl_by_currency": {c: _money(v) for c, v in r.pnl_by_currency().items()},
        **trade_figures(r.trades),
        "max_drawdown_pct": round(drawdown, 4),
        "max_drawdown_from": iso(peak_at) if drawdown else None,
        "max_drawdown_to": iso(trough_at) if drawdown else None,
        "exposure_pct": round(r.exposed / r.decisions * 100, 2),
        "buy_hold_pct": round(r.buy_hold_pct, 4), "buy_hold_from": iso(r.hold_from),
        "refused": dict(sorted((r.refused or {}).items())),
        "by_pair": {s.market: {"trades": len(ts), "win_rate_pct": win_rate(ts),
                               "pnl": _money(sum((t.pnl for t in ts), ZERO))}
                    for s in r.series for ts in [[t for t in r.trades if t.market == s.market]]},
        "trades": [_trade(t, r.last) for t in closed],
        "open_positions": [_trade(t, r.last) for t in opened],
    }


def _trade(t: Trade, last: int) -> dict[str, Any]:
    return {"market": t.market, "thread": t.thread, "entry_at": iso(t.entry_at), "entry_price": _money(t.entry_price),
            "volume": _money(t.volume), "cost": _money(t.cost),
            "exit_at": iso(t.exit_at) if t.exit_at is not None else None, "exit_price": _money(t.exit_price),
            "proceeds": _money(t.proceeds), "pnl": _money(t.pnl), "gain_pct": round(t.gain_pct, 4),
            "exit_reason": t.reason, "duration_minutes": (t.held_until(last) - t.entry_at) // 60,
            "fees": _money(t.fees)}


def trade_figures(trades: Sequence[Trade]) -> dict[str, Any]:
    """Counts, win rate, profit factor, best and worst trade, fees: closed and open trades alike,
    an open one at its P&L now; round trips are the closed ones, with the fees they cost."""
    closed = [t for t in trades if t.exit_at is not None]
    gains = sum((t.pnl for t in trades if t.pnl > 0), ZERO)
    losses = -sum((t.pnl for t in trades if t.pnl < 0), ZERO)
    best = max(trades, key=lambda t: t.pnl, default=None)
    worst = min(trades, key=lambda t: t.pnl, default=None)
    return {
        "closed_trades": len(closed), "open_trades": len(trades) - len(closed), "win_rate_pct": win_rate(trades),
        "profit_factor": round(float(gains / losses), 4) if losses else None,
        "best_trade": _brief(best), "worst_trade": _brief(worst),
        "fees": _money(sum((t.fees for t in trades), ZERO)),
        "round_trips": len(closed), "round_trip_fees": _money(sum((t.fees for t in closed), ZERO)),
    }


def _brief(t: Trade | None) -> dict[str, Any] | None:
    return None if t is None else {"market": t.market, "entry_at": iso(t.entry_at), "pnl": _money(t.pnl),
                                   "gain_pct": round(t.gain_pct, 4), "open": t.exit_at is None}


def _money(value: Decimal) -> str:
    """A Decimal as JSON text, never in exponent form: 0.00000000, not 0E-8."""
    return format(value, "f")


def win_rate(trades: Sequence[Trade]) -> float | None:
    """Trades with a positive P&L, in percent of all, an open one at its P&L now: a run that
    ends holding a loss does not show 100 %."""
    return round(sum(t.pnl > 0 for t in trades) / len(trades) * 100, 2) if trades else None


def totals(results: Sequence[Result]) -> dict[str, dict[str, Any]]:
    """The replays of each quote currency together, by quote: money is never summed across quotes."""
    by_quote: dict[str, list[Result]] = {}
    for r in results:
        by_quote.setdefault(r.trading.quote, []).append(r)
    return {quote: _total(rs) for quote, rs in by_quote.items()}


def _total(results: Sequence[Result]) -> dict[str, Any]:
    start = sum((r.start_balance for r in results), ZERO)
    pnl = sum((r.pnl for r in results), ZERO)
    by: dict[str, Decimal] = {}
    for r in results:
        for currency, value in r.pnl_by_currency().items():
            by[currency] = by.get(currency, ZERO) + value
    deepest = max(results, key=lambda r: r.max_drawdown_pct())
    drawdown, peak_at, trough_at = deepest.max_drawdown()
    return {
        "runs": len(results), "start_balance": _money(start), "pnl": _money(pnl),
        "return_pct": round(float(pnl / start * 100), 4), "pnl_by_currency": {c: _money(v) for c, v in by.items()},
        **trade_figures([t for r in results for t in r.trades]),
        "max_drawdown_pct": round(drawdown, 4),
        "max_drawdown_from": iso(peak_at) if drawdown else None,
        "max_drawdown_to": iso(trough_at) if drawdown else None,
        "buy_hold_pct": round(sum(r.buy_hold_pct for r in results) / len(results), 4),
        "decisions": sum(r.decisions for r in results), "agent_runs": sum(r.agent_runs for r in results),
    }


def report(results: Sequence[Result], settings: dict[str, Any]) -> dict[str, Any]:
    return {"settings": settings, "runs": [summary(r) for r in results], "totals": totals(results)}


def print_report(rep: dict[str, Any], out: IO[str]) -> None:
    s = rep["settings"]
    quotes = list(rep["totals"])
    unit, each = (f" {quotes[0]}", "") if len(quotes) == 1 else ("", ", each in its file's quote")
    print(f"backtest: {len(rep['runs'])} replay(s), a decision every >= {s['step_minutes']} min, "
          f"fee {s['fee_percent']}%, spread {s['spread_percent']}%, sell at +{s['sell_percent']}% net, "
          f"{s['max_threads']} threads x {s['max_per_trade']}{unit} (budget {s['budget']}{unit}{each}, at most "
          f"{s['currency_cap']} a currency), rebuy after {s['rebuy_cooldown_minutes']:g} min", file=out)
    for quote, total in rep["totals"].items():
        runs = [r for r in rep["runs"] if r["quote"] == quote]
        print(f"\nin {quote}:", file=out)
        print(f"{'replay':34} {'tf':>5} {'step':>5} {'decisions':>9} {'runs':>5} {'trades':>7} {'win%':>6} "
              f"{'P&L ' + quote:>14} {'return%':>8} {'B&H%':>8} {'maxDD%':>7} {'exposed%':>8} {'PF':>6}", file=out)
        for r in [*runs, *([{**total, "label": f"total {quote}"}] if len(runs) > 1 else [])]:
            trades = f"{r['closed_trades']}+{r['open_trades']}" if r["open_trades"] else str(r["closed_trades"])
            win = "-" if r["win_rate_pct"] is None else f"{r['win_rate_pct']:.1f}"
            tf = timeframe_name(r["interval_minutes"]) if "interval_minutes" in r else ""
            step = timeframe_name(r["step_minutes"]) if "step_minutes" in r else ""
            exposed = f"{r['exposure_pct']:.1f}" if "exposure_pct" in r else ""
            pf = "-" if r["profit_factor"] is None else f"{r['profit_factor']:.2f}"
            print(f"{r['label'][:34]:34} {tf:>5} {step:>5} {r['decisions']:>9} {r['agent_runs']:>5} {trades:>7} "
                  f"{win:>6} {Decimal(r['pnl']):>14.4f} {r['return_pct']:>8.2f} {r['buy_hold_pct']:>8.2f} "
                  f"{r['max_drawdown_pct']:>7.2f} {exposed:>8} {pf:>6}", file=out)
        print(f"P&L by currency ({quote}): "
              + ", ".join(f"{c} {Decimal(v):+.4f}" for c, v in total["pnl_by_currency"].items()), file=out)
        print(f"round trips: {total['round_trips']}, costing {Decimal(total['round_trip_fees']):.4f} {quote} "
              f"in fees; fees paid in all {Decimal(total['fees']):.4f} {quote}", file=out)
        for word in ("best", "worst"):
            t = total[f"{word}_trade"]
            if t:
                print(f"{word} trade: {t['market']} from {t['entry_at']}{' (open)' if t['open'] else ''}, "
                      f"{Decimal(t['pnl']):+.4f} {quote} ({t['gain_pct']:+.2f}%)", file=out)
        if total["max_drawdown_from"]:
            print(f"max drawdown: {total['max_drawdown_pct']:.2f}% from {total['max_drawdown_from']} "
                  f"to {total['max_drawdown_to']}", file=out)
    for r in rep["runs"]:
        print(f"\n{r['label']}: buy & hold from {r['buy_hold_from']} (the first decision after the "
              f"{s['buy_trend_window']} h warm-up) {r['buy_hold_pct']:+.2f}%", file=out)
        if len(r["by_pair"]) > 1:
            for market, p in r["by_pair"].items():
                win = "-" if p["win_rate_pct"] is None else f"{p['win_rate_pct']:.1f}%"
                print(f"  {market:12} {p['trades']:>4} trade(s), win {win:>6}, P&L {Decimal(p['pnl']):+.4f} "
                      f"{r['quote']}", file=out)
        if r["refused"]:
            print("  entries refused (agent runs that left a rising currency out): "
                  + ", ".join(f"{why} x{n}" for why, n in r["refused"].items()), file=out)
        if r["trades"]:
            print(f"  {len(r['trades'])} closed trade(s), prices in {r['quote']}; threads trading alike share "
                  f"a line", file=out)
            _print_trades(r["trades"], r["quote"], out)
        if r["open_positions"]:
            print(f"  {len(r['open_positions'])} open position(s) at the end, valued at the last bid, the "
                  f"sale's fee paid", file=out)
            _print_trades(r["open_positions"], r["quote"], out)


def _print_trades(trades: list[dict[str, Any]], quote: str, out: IO[str]) -> None:
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for t in trades:
        groups.setdefault((t["market"], t["entry_at"], t["entry_price"], t["exit_at"] or "open",
                           t["exit_price"], t["exit_reason"]), []).append(t)
    print(f"  {'market':12} {'threads':>7} {'entry (UTC)':16} {'entry price':>14} {'exit (UTC)':16} "
          f"{'exit price':>14} {'why':13} {'held':>6} {'gain%':>7} {'fees':>9} {'P&L ' + quote:>11}", file=out)
    for (market, entry_at, entry_price, exit_at, exit_price, why), group in groups.items():
        pnl = sum((Decimal(t["pnl"]) for t in group), ZERO)
        fees = sum((Decimal(t["fees"]) for t in group), ZERO)
        gain = pnl / sum((Decimal(t["cost"]) for t in group), ZERO) * 100
        print(f"  {market:12} {len(group):>7} {entry_at:16} {Decimal(entry_price):>14.8g} {exit_at:16} "
              f"{Decimal(exit_price):>14.8g} {why:13} {duration(group[0]['duration_minutes']):>6} {gain:>7.2f} "
              f"{fees:>9.4f} {pnl:>11.4f}", file=out)


def write_json(path: Path, data: dict[str, Any]) -> None:
    from includes.files import write_atomic

    write_atomic(path, json.dumps(data, indent=1) + "\n")


def write_charts(results: Sequence[Result], img_dir: Path) -> list[Path]:
    """img/backtest-<label>.png: each market's closes with the trades on them, then the equity."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    img_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for r in results:
        fig, axes = plt.subplots(len(r.series) + 1, 1, sharex=True, figsize=(12, 3 + 2.5 * len(r.series)),
                                 squeeze=False)
        for ax, s in zip(axes[:, 0], r.series, strict=False):
            ax.plot([_date(t + s.seconds) for t in s.ts], s.close, lw=0.7, color="0.35", label=s.market)
            trades = [t for t in r.trades if t.market == s.market]
            ax.scatter([_date(t.entry_at) for t in trades], [float(t.entry_price) for t in trades],
                       marker="^", color="tab:green", zorder=3, label="buy")
            ax.scatter([_date(t.exit_at) for t in trades if t.exit_at is not None],
                       [float(t.exit_price) for t in trades if t.exit_at is not None],
                       marker="v", color="tab:red", zorder=3, label="sell")
            ax.set_ylabel(s.market)
            ax.legend(loc="upper left", fontsize="small")
        equity = axes[-1, 0]
        equity.plot([_date(r.first + i * r.step) for i in range(r.decisions)], r.equity, lw=0.8)
        equity.set_ylabel(f"equity ({r.trading.quote})")
        axes[0, 0].set_title(f"{r.label}: P&L {r.pnl:+.2f} {r.trading.quote}, buy & hold {r.buy_hold_pct:+.2f}%")
        fig.autofmt_xdate()
        path = img_dir / f"backtest-{r.label}.png"
        fig.savefig(path, dpi=90, bbox_inches="tight")
        plt.close(fig)
        written.append(path)
    return written


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M")


def _date(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def duration(minutes: int) -> str:
    """A time held, at a glance: 45m, 10h, 3d4h, 1h30m."""
    days, rest = divmod(minutes, 1440)
    hours, mins = divmod(rest, 60)
    text = "".join(f"{n}{u}" for n, u in ((days, "d"), (hours, "h"), (mins, "m")) if n)
    return text or "0m"


def timeframe_name(minutes: int) -> str:
    for unit, size in (("d", 1440), ("h", 60)):
        if minutes and minutes % size == 0:
            return f"{minutes // size}{unit}"
    return f"{minutes}m"
