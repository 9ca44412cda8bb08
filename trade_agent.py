#!/usr/bin/env python3
"""One run of the trading agent: settle orders in flight, size the budget,
update the trends, sell the threads whose gain reached sell_percent, and buy
the best rising currencies with the free ones.  Cron: every 10 minutes,
offset from get_api_data."""
from __future__ import annotations

import gc

gc.disable()  # one short, bounded run: no cyclic collections while it imports ~500 modules (15 ms)

import argparse  # noqa: E402
from collections.abc import Callable  # noqa: E402

from includes.runtime import run_script  # noqa: E402


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dry-run", action="store_true",
                        help="simulate the orders whatever the config and the dry-run file say")


def run(cfg, args: argparse.Namespace, checkpoint: Callable[[str], None] | None = None) -> int:
    """1 when an order stayed unsettled for several runs: the owner must look (cron mails stderr).
    `checkpoint`: the agent's, for tests/crash_launcher.py (the safety tests' kill -9 at a step)."""
    from includes.agent import no_checkpoint, run_agent
    from includes.runtime import dry_run_requested, notify, stop_requested, tell_owner

    if cfg.notify.urls:
        from includes.notify import switches

        for line in switches(cfg, stop_requested(cfg), args.dry_run or dry_run_requested(cfg)):
            notify("switch", line, line)
    summary = run_agent(cfg, force_dry_run=args.dry_run, checkpoint=checkpoint or no_checkpoint)
    if summary and cfg.storage.timeseries.url:
        from includes.status import write_timeseries

        write_timeseries(cfg, summary.mode)
    if summary:
        for event, lines in (("fill", summary.bought + summary.sold), ("refused", summary.refused),
                             ("recovered", summary.recovered), ("doubt", summary.attention)):
            if lines:
                notify(event, f"{summary.mode}: {len(lines)} {event}", "\n".join(lines))
    for line in summary.attention if summary else ():
        tell_owner("trade_agent", line)
    return 1 if summary and summary.attention else 0


if __name__ == "__main__":
    run_script("trade_agent", __doc__, run, arguments)
