"""One replay: the live agent deciding over a set of series on the paper platform, and the
trades its journal shows."""
from __future__ import annotations

import logging
import sys
from array import array
from bisect import bisect_left
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from functools import cached_property
from itertools import accumulate
from operator import sub, truediv
from typing import TYPE_CHECKING, Any

from includes.agent import Agent
from includes.backtest.gate import Gate, unmodelled
from includes.backtest.report import iso
from includes.backtest.sources import InputError, kraken_rules, rules_for
from includes.config import TradingConfig
from includes.model import FINAL
from includes.money import ZERO
from includes.platforms.paper import PaperPlatform
from includes.platforms.replay import ReplayPlatform, Series
from includes.runtime import progress
from includes.storage.memory import MemoryMarketDB, MemoryStateStore
from includes.storage.state import Thread
from includes.trends import trends as compute_trends

if TYPE_CHECKING:

    from includes.model import Market

log = logging.getLogger(__name__)

EXCHANGE = "replay"                 # the agent's exchange name for replayed markets

BLOCK = 4096                        # decisions per step of the progress bar

# --- one replay --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Trade:
    """One thread's round trip; an open one is valued at the last bid, fee deducted."""
    market: str
    thread: int
    entry_at: int
    entry_price: Decimal
    volume: Decimal
    cost: Decimal                # quote spent, fee included
    exit_at: int | None          # None: still held at the end
    exit_price: Decimal
    proceeds: Decimal            # quote received, fee deducted
    fees: Decimal = ZERO         # both fees; an open one's sale at the last bid pays its fee too
    reason: str = "open"         # why the agent sold: sell_percent, stop loss, max hold; or open

    @property
    def pnl(self) -> Decimal:
        return self.proceeds - self.cost

    def held_until(self, last: int) -> int:
        return self.exit_at if self.exit_at is not None else last

    @property
    def gain_pct(self) -> float:
        return float(self.pnl / self.cost * 100)


@dataclass
class Result:
    """One replay: what the agent did, and the equity at each decision time."""
    label: str
    series: list[Series]
    trading: TradingConfig
    step: int                    # seconds between decisions
    first: int                   # the first decision time
    equity: array                # at each decision, valued at the bid net of the sell fee
    exposed: int                 # decisions at which something was held
    agent_runs: int
    start_balance: Decimal
    free: Decimal                # quote held at the end
    trades: list[Trade]
    buy_hold_pct: float
    journal: list[dict[str, Any]]   # the orders, as the market DB's journal keeps them
    hold_from: int = 0           # buy & hold buys at this decision: the first after the warm-up
    refused: dict[str, int] | None = None   # "<currency>: <rule>" -> agent runs that left it out

    @property
    def decisions(self) -> int:
        return len(self.equity)

    @property
    def last(self) -> int:
        return self.first + (self.decisions - 1) * self.step

    @property
    def final_equity(self) -> Decimal:
        return self.free + sum((t.proceeds for t in self.trades if t.exit_at is None), ZERO)

    @property
    def pnl(self) -> Decimal:
        return self.final_equity - self.start_balance

    def pnl_by_currency(self) -> dict[str, Decimal]:
        by: dict[str, Decimal] = {s.base: ZERO for s in self.series}
        for t in self.trades:
            by[t.market.split("/")[0]] += t.pnl
        return by

    def max_drawdown_pct(self) -> float:
        """The deepest fall of the equity from a previous peak, in percent of that peak."""
        return self.max_drawdown()[0]

    def max_drawdown(self) -> tuple[float, int, int]:
        """(percent, time of the peak, time of the trough) of the deepest fall of the equity; the
        peak is when the equity first reached it."""
        return self._drawdown

    @cached_property
    def _drawdown(self) -> tuple[float, int, int]:
        """Computed once, in C-level passes: a million candles' equity is 100,000 decisions."""
        if not self.equity:
            return 0.0, self.first, self.first
        peaks = list(accumulate(self.equity, max))
        falls = list(map(truediv, map(sub, peaks, self.equity), peaks))
        deepest = max(falls)
        trough = falls.index(deepest)
        peak = bisect_left(peaks, peaks[trough])
        return deepest * 100, self.first + peak * self.step, self.first + trough * self.step


@dataclass
class Notes:
    """What the agent said during a replay that its journal does not keep, for the report."""
    exits: dict[tuple[int, int], str]       # (thread, time) -> the sell's reason
    refused: Counter[str]                   # "<currency>: <rule>" -> agent runs that left it out


class ReplayAgent(Agent):
    """The live agent; only its DB trends are read from the replay's arrays, and what it says
    of its sells and of the currencies it leaves out is noted for the report.

    The live agent fetches every candle of the last 74 hours and lets
    trends.price_at pick one per window; here the DB hands over just the
    candles it would pick, and the same trends() computes the same figures.
    """

    def trends_from_db(self, symbol: str, now: int, since: int, current: Decimal) -> dict[int, Decimal]:
        windows = self.cfg.trend_windows
        db = self.db
        assert isinstance(db, MemoryMarketDB), "a replay's journal is in memory"
        candles = db.last_closed(self.exchange, symbol, self.interval,
                                      [now - hours * 3600 for hours in windows], since)
        return compute_trends(candles, now, windows, self.interval, current=current)

    notes: Notes | None = None

    def sell_reason(self, thread: Thread, gain: Decimal, now: int) -> str | None:
        reason = super().sell_reason(thread, gain, now)
        if reason is not None and self.notes is not None:
            self.notes.exits[thread.n, now] = reason
        return reason

    def left_out(self, currency: str, kind: str, why: str) -> None:
        super().left_out(currency, kind, why)
        if self.notes is not None:
            self.notes.refused[f"{currency}: {kind}"] += 1

def replay(series: Sequence[Series], trading: TradingConfig, *, step_minutes: int = 10,
           start: int | None = None, end: int | None = None, spread_percent: Decimal = Decimal("0.1"),
           every_step: bool = False, label: str = "", show_progress: bool = True,
           rules: Mapping[str, Market] | None = None) -> Result:
    """The agent deciding every max(step_minutes, candle interval) minutes over the series.

    Decisions fall on multiples of the step, as cron's do, from the first
    candle's close (or `start`) until a series ends (or `end`): a market
    whose data has ended would trade on at its last price.  Each market
    trades by its `rules` (by default the Kraken simulator's table).
    """
    interval = series[0].interval
    step = max(step_minutes, interval) * 60
    first = max(min(s.first_close() for s in series), start or 0)
    first += -first % step
    last = min(min(s.last_close() for s in series), end if end is not None else sys.maxsize)
    if last < first:
        raise InputError(f"{label or series[0].label}: no decision time between "
                         f"{iso(first)} and {iso(last)}")
    if rules is None:
        rules = rules_for(series, kraken_rules())
    platform = ReplayPlatform(series, trading.quote, trading.fee_percent, spread_percent=spread_percent,
                              rules=rules)
    paper = PaperPlatform(platform, None, trading.dry_run_balance)
    store = MemoryStateStore("backtest", "dry", clock=platform.now)
    db = MemoryMarketDB({(EXCHANGE, s.market, s.interval): s for s in series}, clock=platform.now)
    times = range(first, last + 1, step)
    gate = Gate(trading, series, times, platform)
    if not gate.exact and not every_step:
        log.info("the backtest's Gate does not model %s: the agent runs at every decision",
                 ", ".join(unmodelled(trading)))
        every_step = True
    equity = array("d")
    halted: list[str] = []          # the drawdown guard's stop file: no agent run after it
    notes = Notes({}, Counter())
    runs = k = 0
    blocks = range(min(BLOCK, len(times)), len(times) + BLOCK, BLOCK)
    for stop in progress(blocks, total=len(blocks), desc=label) if show_progress else blocks:
        stop = min(stop, len(times))
        while k < stop:
            act = stop if halted else k if every_step or not runs else gate.quiet_until(k, stop)
            gate.record(equity, k, act)
            k = act
            if act < stop:
                platform.time = times[act]
                agent = ReplayAgent(trading, paper, store, db, mode="dry", exchange=EXCHANGE,
                                    candle_interval=interval, request_stop=halted.append)
                agent.notes = notes
                agent.run()
                gate.update(store.threads(), paper.balances, store)
                runs += 1
                gate.record(equity, act, act + 1)
                k = act + 1
    platform.time = times[-1]
    journal = db.journal("dry")
    trades = trades_of(journal, platform, paper.fee_percent, notes.exits)
    # the agent can buy once its buy-window trend is known: buy & hold buys then too
    warm = min(s.first_close() for s in series) + trading.buy_trend_window * 3600
    hold_from = times[min(bisect_left(times, warm), len(times) - 1)]
    return Result(label or series[0].label, list(series), trading, step, first, equity, gate.exposed, runs,
                  trading.dry_run_balance, paper.balances.get(trading.quote, ZERO), trades,
                  buy_hold_pct(series, hold_from, last, platform.half_spread, trading.fee_percent), journal,
                  hold_from, dict(notes.refused))


def trades_of(rows: Iterable[dict[str, Any]], platform: ReplayPlatform, fee_percent: Decimal,
              exits: dict[tuple[int, int], str] | None = None) -> list[Trade]:
    """Round trips from the journal: each thread's filled buy, then its filled sell (and the
    agent's reason for it, from `exits`)."""
    exits = exits or {}
    held: dict[int, dict[str, Any]] = {}
    trades = []
    for row in rows:
        if row["status"] not in FINAL or not row["filled"]:
            continue
        if row["side"] == "buy":
            held[row["thread"]] = row
            continue
        buy = held.pop(row["thread"])
        at = int(row["result_at"])
        trades.append(Trade(buy["market"], buy["thread"], int(buy["result_at"]), buy["price"], buy["filled"],
                            buy["cost"] + buy["fee"], at, row["price"], row["cost"] - row["fee"],
                            buy["fee"] + row["fee"], exit_kind(exits.get((row["thread"], at), ""))))
    bids = {m: t.bid for m, t in platform.get_tickers({b["market"] for b in held.values()}).items()}
    for n, buy in held.items():
        bid = bids[buy["market"]]
        sale_fee = buy["filled"] * bid * fee_percent / 100
        trades.append(Trade(buy["market"], n, int(buy["result_at"]), buy["price"], buy["filled"],
                            buy["cost"] + buy["fee"], None, bid, buy["filled"] * bid - sale_fee,
                            buy["fee"] + sale_fee))
    return sorted(trades, key=lambda t: (t.entry_at, t.thread))


def exit_kind(reason: str) -> str:
    """The rule the agent's sell reason names (Agent.sell_reason)."""
    for key, kind in (("sell_percent", "sell_percent"), ("stop_loss_percent", "stop loss"),
                      ("max_hold_hours", "max hold")):
        if key in reason:
            return kind
    return "other"


def buy_hold_pct(series: Sequence[Series], first: int, last: int, half_spread: Decimal,
                 fee_percent: Decimal) -> float:
    """Every market bought in equal parts at decision `first`'s ask (or its first open, if later)
    and sold at the last decision's bid, fees paid: the percent change of the money."""
    fee, spread = float(fee_percent) / 100, float(half_spread)
    changes = [end * (1 - spread) * (1 - fee) / ((s.last(first) or s.open[0]) * (1 + spread) * (1 + fee))
               for s in series if (end := s.last(last))]
    return (sum(changes) / len(changes) - 1) * 100 if changes else 0.0
