"""The Gate: the agent is called only when it might act.

Between two runs that trade, its threads, balances and budget stand still and
only prices move; so a run is needed only when a price crosses a held thread's
sell threshold, when a hold time runs out, or when a currency it may buy
shows a rising buy-window trend while a thread and the funds are free.  The
Gate derives those bounds from the agent's own rules (includes/rules.py), once
per agent run in Decimal, then scans the prices on floats with a margin that
errs towards calling the agent, which then decides exactly, in Decimal."""
from __future__ import annotations

import logging
import math
from array import array
from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Iterator, Sequence
from decimal import Decimal
from itertools import compress, count, islice, repeat
from operator import add, mul

from includes.agent import BUSY
from includes.config import TradingConfig
from includes.money import ZERO, to_decimal
from includes.platforms.replay import ReplayPlatform, Series
from includes.rules import cooldown_until, hold_deadline, run_budget, sell_bids, spendable, under_cap
from includes.storage.memory import MemoryStateStore
from includes.storage.state import ACTIVE, DISABLED, WAITING, Thread

log = logging.getLogger(__name__)

MARGIN = 1e-9                       # relative: the Gate's floats call the agent a little early

# The TradingConfig fields whose effect on the agent's decisions the Gate models (includes.rules,
# the trends, the markets' minimum orders, the drawdown guard).  INERT ones no replay reads.  A
# field in neither (one added later, say) set away from its default could make the agent act
# where the Gate sees nothing to do: replay() then calls the agent at every decision instead.
MODELS = frozenset({
    "quote", "currencies", "max_per_trade", "max_threads", "total_invest", "threads_per_currency",
    "sell_percent", "fee_percent", "stop_loss_percent", "max_hold_hours", "max_drawdown_percent",
    "rebuy_cooldown_minutes", "trend_windows", "buy_trend_window", "dry_run_balance",
})
INERT = frozenset({"dry_run", "dry_run_file", "stop_file"})


def unmodelled(trading: TradingConfig) -> list[str]:
    """The decision fields `trading` sets away from their defaults that the Gate does not model."""
    default = TradingConfig()
    return [name for name in TradingConfig.field_names()
            if name not in MODELS | INERT and getattr(trading, name) != getattr(default, name)]


class Gate:
    """From which decision on the agent could act, found on floats; when in doubt, sooner.

    `exact` is False for a config setting a field the Gate does not model
    (unmodelled): the replay then skips no decision.

    Each market's price at every decision time, and whether its buy-window
    trend rises then, are computed once; what the threads allow is rebuilt
    after every agent run (until the next one only prices move).  The next
    decision that may need the agent is then found by C-level scans over
    those lists (itertools), and the equity of the quiet decisions before it
    is filled in the same way.
    """

    def __init__(self, trading: TradingConfig, series: Sequence[Series], times: range,
                 platform: ReplayPlatform) -> None:
        self.cfg = trading
        self.times = times
        self.exact = not unmodelled(trading)
        self.bid = 1 - float(platform.half_spread)
        self.net = 1 - float(trading.fee_percent) / 100
        window, history = trading.buy_trend_window * 3600, (max(trading.trend_windows) + 2) * 3600
        self.prices = {s.base: s.prices_at(times) for s in series}
        markets = platform.markets()
        # The venue's tick: a bid or an ask is rounded outwards to it (ReplayPlatform), a tick
        # further at most from the float one; the thresholds below allow for two.
        self.tick = {s.base: 2 * 10.0 ** -markets[s.market].price_decimals for s in series}
        # the range of the prices the agent is shown at the decisions (NaN: none yet)
        shown = {c: (min(seen, default=math.inf), max(seen, default=0.0))
                 for c, prices in self.prices.items() for seen in [list(filter(math.isfinite, prices))]}
        # the least a thread's buy of each currency may cost, at its dearest ask
        self.least = {s.base: float(platform.least_buy_cost(
            markets[s.market], trading.max_per_trade,
            to_decimal(shown[s.base][1] * (1 + float(platform.half_spread)) + self.tick[s.base])))
            * (1 - MARGIN) for s in series}
        self.rising = {s.base: _rising(s, times, self.prices[s.base], window, history) for s in series}
        # A market is never bought when Market.check_order refuses any order a thread's stake buys:
        # its volume is at most the stake over the lowest price shown (every ask is above it), its
        # cost at most the stake; so a minimum volume worth more than the stake there, or a minimum
        # cost above the stake, rules it out at every decision.
        self.never = {s.base for s in series for m in [markets[s.market]] for low in [shown[s.base][0]]
                      if low == math.inf or max(m.min_volume * to_decimal(low), m.min_cost) > trading.max_per_trade}
        self.buyable: list[tuple[list[bool], int]] = []
        self.sells: list[tuple[list[float], float, float, float]] = []
        self.holdings: list[tuple[list[float], float]] = []
        self.free = float(trading.dry_run_balance)
        self.exposed = 0            # decisions at which something was held

    def update(self, threads: list[Thread], balances: dict[str, Decimal], store: MemoryStateStore) -> None:
        cfg = self.cfg
        threads = threads[: cfg.max_threads]
        busy = [t for t in threads if t.state in BUSY]
        invested = sum((t.value for t in busy), ZERO)
        free = balances.get(cfg.quote, ZERO)
        left = float(spendable(run_budget(cfg, invested, free), invested, free))
        can_buy = any(t.state in (WAITING, DISABLED) for t in threads)
        held = Counter(t.currency for t in busy)
        # each buyable currency's rising flags, and the first decision its rebuy cooldown allows
        self.buyable = [(rising, bisect_left(self.times, self.rebuy_at(store, c)))
                        for c, rising in self.rising.items()
                        if can_buy and under_cap(cfg, held[c]) and left >= self.least[c] and c not in self.never]
        # Per currency held: the lowest price that sells a thread at a gain, the highest that
        # stops a loss, the earliest time a hold runs out.
        sells: dict[str, list[float]] = {}
        for t in threads:
            if t.state == ACTIVE and t.currency in self.prices:
                # rules.sell_bids on the bid; the prices here are mid, a half spread above it
                high_bid, low_bid = sell_bids(cfg, t.value, t.volume)
                tick = self.tick[t.currency] / self.bid
                high = float(high_bid) / self.bid * (1 - MARGIN) - tick
                low = float(low_bid) / self.bid * (1 + MARGIN) + tick if low_bid is not None else 0.0
                deadline = hold_deadline(cfg, t.updated)
                deadline = math.inf if deadline is None else deadline
                seen = sells.setdefault(t.currency, [high, low, deadline])
                seen[:] = min(seen[0], high), max(seen[1], low), min(seen[2], deadline)
        self.sells = [(self.prices[c], high, low, deadline) for c, (high, low, deadline) in sells.items()]
        self.holdings = [(prices, float(balances[c]) * self.bid * self.net)
                         for c, prices in self.prices.items() if balances.get(c)]
        self.free = float(free)

    def rebuy_at(self, store: MemoryStateStore, currency: str) -> float:
        """When the rebuy cooldown lets the agent buy `currency` again (0: now)."""
        return cooldown_until(self.cfg, store.get_value(f"platform:{currency}:lastsell")) or 0

    def quiet_until(self, k: int, stop: int) -> int:
        """The first decision in [k, stop) at which the agent may act; `stop` if none.  With the
        drawdown guard on, every decision while something is held: the agent keeps the peak."""
        if self.cfg.max_drawdown_percent is not None and self.holdings:
            return k
        for rising, allowed in self.buyable:
            j = max(k, allowed)
            if j < stop:
                stop = next(compress(count(j), islice(rising, j, stop)), stop)
        for prices, high, low, deadline in self.sells:
            stop = next(compress(count(k), map(high.__le__, islice(prices, k, stop))), stop)
            if low > 0:
                stop = next(compress(count(k), map(low.__ge__, islice(prices, k, stop))), stop)
            if stop > k and deadline <= self.times[stop - 1]:
                stop = max(k, bisect_left(self.times, deadline))
        return stop

    def record(self, equity: array, k: int, stop: int) -> None:
        """Append the equity at decisions k..stop-1: quote held, plus holdings sold at the bid, fee paid."""
        values: Iterator[float] = repeat(self.free, stop - k)
        for prices, weight in self.holdings:
            values = map(add, values, map(mul, repeat(weight), islice(prices, k, stop)))
        equity.extend(values)
        if self.holdings:
            self.exposed += stop - k


def _rising(s: Series, times: range, prices: list[float], window: int, history: int) -> list[bool]:
    """At each time: is the price above the close `window` seconds earlier, as the agent's trend sees it?

    That close is of the last candle closed by then, among those opening
    within the agent's `history` (trends.price_at over the DB's candles).
    The comparison needs no margin: both prices are floats the agent sees as
    their shortest repr (to_decimal), which keeps their order, and its
    percent_change of two such numbers is positive exactly when the newer is
    higher.  A margin here would call the agent at every decision of a flat
    market (bench/backtest.py).
    """
    ts, close, shift = s.ts, s.close, window + s.seconds
    counts = map(bisect_right, repeat(ts), range(times.start - shift, times.stop - shift, times.step))
    return [n > 0 and ts[n - 1] >= t - history and price > close[n - 1]
            for n, t, price in zip(counts, times, prices, strict=True)]
