"""backtest.py's command: options in, the report out, one line for every bad input."""
from __future__ import annotations

import logging
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from includes.config import TradingConfig

if TYPE_CHECKING:
    import argparse

    from includes.config import Config
    from includes.model import Market
    from includes.platforms.replay import Series

from includes.backtest.replay import replay
from includes.backtest.report import duration, print_report, report, timeframe_name, write_charts, write_json
from includes.backtest.sources import InputError, kraken_rules, read_csv, read_market_db, read_rules, rules_for
from includes.backtest.sweep import parse_sweep, print_sweep, sweep, trading_for

log = logging.getLogger(__name__)

# --- the command ---------------------------------------------------------------------------------

def parse_time(text: str | None, option: str) -> int | None:
    """Unix seconds, or an ISO date or date-time (UTC unless it says otherwise)."""
    if text is None:
        return None
    if text.isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InputError(f"{option} {text}: expected unix seconds or a date like 2019-03-29 or "
                         f"2019-03-29T12:00") from None
    return int((moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp())


def main(cfg: Config, args: argparse.Namespace) -> int:
    if not args.verbose:      # the agent's per-run lines would drown the report
        logging.getLogger("includes.agent").setLevel(logging.WARNING)
    _warnings_on_stderr()
    start, end = parse_time(args.start, "--start"), parse_time(args.end, "--end")
    runs, tables = _runs(cfg, args, start, end)
    if args.spread < 0 or args.step < 1:
        raise InputError("--step must be at least 1 minute and --spread not negative")
    for s in {s.market: s for run in runs for s in run}.values():
        short = min(cfg.trading.trend_windows)
        if s.interval > short * 60:
            log.warning("%s: %s candles cannot fill the %d-hour trend window: a trend then compares the "
                        "price with a close up to %s old, or finds none", s.label, timeframe_name(s.interval), short,
                        duration(s.interval + short * 60))
    options = {"step_minutes": args.step, "start": start, "end": end, "spread_percent": args.spread,
               "every_step": args.every_step,
               "rules": rules_for([s for run in runs for s in run], *tables)}
    if args.sweep:
        points = sweep(runs, cfg.trading, parse_sweep(args.sweep), args.workers or os.cpu_count() or 1, options)
        if args.json:   # first: a reader that closes stdout early (| head) does not lose it
            write_json(args.json, {"settings": report_settings(cfg.trading, options), "sweep": points})
        print_sweep(points, sys.stdout)
        return 0
    results = []
    for run in runs:
        label = run[0].label if len(run) == 1 else ("market_db" if args.from_db else "portfolio")
        results.append(replay(run, trading_for(cfg.trading, run, {}), label=label, **options))
    rep = report(results, report_settings(results[0].trading, options))
    if args.json:   # first: a reader that closes stdout early (| head) does not lose it
        write_json(args.json, rep)
    print_report(rep, sys.stdout)
    if args.charts:
        for path in write_charts(results, cfg.path(cfg.paths.img)):
            log.info("chart written: %s", path)
    return 0


def _runs(cfg: Config, args: argparse.Namespace, start: int | None, end: int | None
          ) -> tuple[list[list[Series]], tuple[dict[str, Market], ...]]:
    """The replays the options ask for (one per file, or one portfolio), each a list of series
    of one timeframe and one quote, and the tables of market rules to look them up in, first first."""
    given = read_rules(args.markets) if args.markets else {}
    tables: tuple[dict[str, Market], ...]
    if args.from_db:
        if args.pair or args.timeframe:
            raise InputError("--pair and --timeframe name a CSV file's market; --from-db reads the config's")
        series, db_rules = read_market_db(cfg, start, end)
        runs, tables = [series], (given, db_rules, kraken_rules())
    else:
        if (args.pair or args.timeframe) and len(args.csv) > 1:
            raise InputError("--pair and --timeframe name one file's market: give one --csv file with them")
        series = [read_csv(Path(p), args.pair, args.timeframe) for p in args.csv]
        runs, tables = [series] if args.portfolio else [[s] for s in series], (given, kraken_rules())
    for run in runs:
        if len({s.interval for s in run}) > 1:
            raise InputError("--portfolio: the series must share one timeframe, not "
                             + ", ".join(f"{s.label} {timeframe_name(s.interval)}" for s in run))
        if len({s.market.split("/")[1] for s in run}) > 1:
            raise InputError("--portfolio: one account trades in one quote currency, not "
                             + ", ".join(f"{s.label} {s.market}" for s in run))
    return runs, tables


def _warnings_on_stderr() -> None:
    """The backtest's warnings about its inputs reach whoever runs it, one line each, even when
    stderr is not a terminal (the log alone would hide them)."""
    root = logging.getLogger()
    if any(type(h) is logging.StreamHandler and getattr(h, "stream", None) is sys.stderr for h in root.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(logging.WARNING)
    handler.setFormatter(logging.Formatter("backtest: warning: %(message)s"))
    log.addHandler(handler)


def report_settings(trading: TradingConfig, options: dict[str, Any]) -> dict[str, Any]:
    shown = {"sell_percent", "fee_percent", "max_threads", "max_per_trade", "stop_loss_percent", "max_hold_hours",
             "buy_trend_window", "trend_windows", "dry_run_balance", "quote", "rebuy_cooldown_minutes",
             "max_drawdown_percent"}
    return {**{k: v for k, v in trading.as_dict(json=True).items() if k in shown},
            "budget": str(trading.budget), "currency_cap": trading.currency_cap,
            "step_minutes": options["step_minutes"], "spread_percent": str(options["spread_percent"]),
            "start": options["start"], "end": options["end"]}
