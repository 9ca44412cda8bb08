"""Parameter sweeps: a grid of settings replayed in worker processes and ranked."""
from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from decimal import Decimal, InvalidOperation
from itertools import product
from typing import IO, TYPE_CHECKING, Any

from includes.config import InvalidConfig, TradingConfig
from includes.platforms.replay import Series
from includes.runtime import progress

if TYPE_CHECKING:

    pass

from includes.backtest.replay import replay
from includes.backtest.report import totals
from includes.backtest.sources import InputError

log = logging.getLogger(__name__)

SWEEP_RE = re.compile(r"^([a-z_]+)=([^:]+)(?::([^:]+):([^:]+))?$")
MAX_GRID = 10_000

# --- parameters and sweeps -----------------------------------------------------------------------

def trading_for(base: TradingConfig, series: Sequence[Series], overrides: dict[str, str]) -> TradingConfig:
    """The config's trading section, playing the replayed currencies, with `overrides`, validated."""
    data = base.as_dict() | {"quote": series[0].market.split("/")[1],
                             "currencies": [s.base for s in series]} | overrides
    try:
        return TradingConfig.from_dict(data, where="trading")
    except InvalidConfig as exc:
        given = ", ".join(f"{k}={v}" for k, v in overrides.items())
        where = f"{' '.join(s.label for s in series)}{f' with {given}' if given else ''}"
        raise InputError(f"{where}: {exc.problems[0]}") from None


def parse_sweep(specs: Sequence[str]) -> list[dict[str, str]]:
    """The grid of `key=start:stop:step` (stop included) or `key=value` specs, every combination."""
    axes, keys = [], set()
    for spec in specs:
        match = SWEEP_RE.match(spec)
        if not match:
            raise InputError(f"--sweep {spec}: expected key=start:stop:step (e.g. sell_percent=1:5:0.5)")
        key, first, stop, step = match.groups()
        if key not in TradingConfig.field_names():
            raise InputError(f"--sweep {spec}: {key} is not a key of the trading section")
        if key in keys:
            raise InputError(f"--sweep {spec}: {key} is swept twice")
        keys.add(key)
        axes.append([(key, v) for v in ([first] if stop is None else _values(spec, first, stop, step))])
    grid = [dict(point) for point in product(*axes)]
    if len(grid) > MAX_GRID:
        raise InputError(f"--sweep: {len(grid)} combinations; at most {MAX_GRID}")
    return grid


def _values(spec: str, first: str, stop: str, step: str) -> list[str]:
    try:
        a, b, d = Decimal(first), Decimal(stop), Decimal(step)
    except InvalidOperation:
        raise InputError(f"--sweep {spec}: start, stop and step must be numbers") from None
    if d <= 0 or a > b:
        raise InputError(f"--sweep {spec}: needs start <= stop and a positive step")
    count = int((b - a) / d) + 1
    if count > MAX_GRID:
        raise InputError(f"--sweep {spec}: {count} values; at most {MAX_GRID}")
    return [format((a + i * d).normalize(), "f") for i in range(count)]


def evaluate(runs: Sequence[Sequence[Series]], base: TradingConfig, overrides: dict[str, str],
             options: dict[str, Any]) -> dict[str, Any]:
    """One point of a sweep: every replay with `overrides`, totalled.  Any executor's workers run this."""
    results = [replay(series, trading_for(base, series, overrides), show_progress=False, **options)
               for series in runs]
    return {"params": overrides, "totals": totals(results)}


def ranked(points: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Best first, the smaller drawdown first among equals; numbered from 1.  Best is the higher
    P&L when every replay is in one quote; across quotes, whose money cannot be added, the higher
    mean of each quote's return."""
    def key(p: dict[str, Any]) -> tuple[Any, ...]:
        by = p["totals"].values()
        worst = max(t["max_drawdown_pct"] for t in by)
        if len(by) == 1:
            return -Decimal(next(iter(by))["pnl"]), worst
        return -sum(t["return_pct"] for t in by) / len(by), worst

    return [{"rank": i, **p} for i, p in enumerate(sorted(points, key=key), 1)]


_JOBS: tuple[Any, ...] = ()        # (runs, base, options) of this worker process


def _init_worker(jobs: tuple[Any, ...]) -> None:
    global _JOBS
    _JOBS = jobs
    logging.getLogger("includes.agent").setLevel(logging.WARNING)


def _sweep_point(overrides: dict[str, str]) -> dict[str, Any]:
    runs, base, options = _JOBS
    return evaluate(runs, base, overrides, options)


def sweep(runs: Sequence[Sequence[Series]], base: TradingConfig, grid: Sequence[dict[str, str]], workers: int,
          options: dict[str, Any]) -> list[dict[str, Any]]:
    """Every grid point over every replay, in `workers` processes, ranked.

    The candles reach the workers once, when the pool starts (copied by fork,
    or pickled where processes are spawned), not once per point.
    """
    import multiprocessing

    for overrides in grid:          # a bad point fails here, in one line, before any work starts
        for series in runs:
            trading_for(base, series, overrides)
    jobs = (runs, base, options)
    if workers <= 1:
        _init_worker(jobs)
        return ranked(_sweep_point(o) for o in progress(grid, total=len(grid), desc="sweep"))
    with multiprocessing.Pool(min(workers, len(grid)), initializer=_init_worker, initargs=(jobs,)) as pool:
        return ranked(progress(pool.imap_unordered(_sweep_point, grid), total=len(grid), desc="sweep"))


def print_sweep(points: Sequence[dict[str, Any]], out: IO[str]) -> None:
    keys = list(points[0]["params"]) if points else []
    quotes = list(points[0]["totals"]) if points else []
    print(f"sweep: {len(points)} combination(s), best "
          f"{'P&L' if len(quotes) == 1 else 'mean return of ' + ', '.join(quotes)} first", file=out)
    print(f"{'rank':>4} " + " ".join(f"{k:>18}" for k in keys) + " quote" +
          f" {'P&L':>12} {'return%':>8} {'trades':>7} {'win%':>6} {'maxDD%':>7} {'B&H%':>8}", file=out)
    for p in points:
        for n, (quote, t) in enumerate(p["totals"].items()):
            win = "-" if t["win_rate_pct"] is None else f"{t['win_rate_pct']:.1f}"
            head = f"{p['rank']:>4} " + " ".join(f"{p['params'][k]:>18}" for k in keys) if not n else \
                " " * (5 + 19 * len(keys) - 1)
            print(f"{head} {quote:>5} {Decimal(t['pnl']):>12.4f} {t['return_pct']:>8.2f} {t['closed_trades']:>7} "
                  f"{win:>6} {t['max_drawdown_pct']:>7.2f} {t['buy_hold_pct']:>8.2f}", file=out)
