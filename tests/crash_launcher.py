#!/usr/bin/env python3
"""trade_agent.py as cron starts it, but killed with SIGKILL at a named step of an order.

The safety tests run this as a subprocess (`--crash-at buy:sent`): the library has no
crash hook of its own, only Agent's injected checkpoint, which this one fills with a kill -9.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import trade_agent  # noqa: E402
from includes.runtime import run_script  # noqa: E402


def kill_at(step: str) -> Callable[[str], None]:
    """A checkpoint that dies at `step` as kill -9 would: no finally, no atexit, no flush."""
    def checkpoint(name: str) -> None:
        if name == step:
            os.kill(os.getpid(), signal.SIGKILL)
    return checkpoint


def arguments(parser: argparse.ArgumentParser) -> None:
    trade_agent.arguments(parser)
    parser.add_argument("--crash-at", required=True, metavar="STEP",
                        help='the step to die at, e.g. "buy:sent" (Agent.checkpoint\'s names)')


def run(cfg, args: argparse.Namespace) -> int:
    return trade_agent.run(cfg, args, checkpoint=kill_at(args.crash_at))


if __name__ == "__main__":
    run_script("trade_agent", trade_agent.__doc__, run, arguments)
