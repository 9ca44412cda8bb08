"""Backtest: the live agent replayed over historical candles.

Each decision is the live agent's own (includes/agent.py): its orders fill
on the paper platform, so fees, rounding and minimums are those of dry-run
live, against a replay platform whose clock the loop moves.  The state store
and the market DB live in memory, and the DB hands the agent's trends only
the candles they use (ReplayAgent).

Speed comes from not calling the agent when it provably would do nothing.
Between two runs that trade, its threads, balances and budget stand still and
only prices move; so a run is needed only when a price crosses a held thread's
sell threshold, when a hold time runs out, or when a currency it may buy
shows a rising buy-window trend while a thread and the funds are free.  The
Gate checks that on floats, with a margin that errs towards calling the
agent, which then decides exactly, in Decimal.  `every_step=True` calls it at
every decision instead; a test checks that both trade alike.
"""
from __future__ import annotations

import json
import logging
import math
import os
import re
import sys
import time
from array import array
from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from functools import cached_property
from itertools import accumulate, compress, count, islice, product, repeat
from operator import add, lt, mul, sub, truediv
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from includes.agent import BUSY, Agent, cooldown_until, run_budget, spendable
from includes.config import InvalidConfig, TradingConfig
from includes.errors import ConfigError
from includes.money import ZERO, to_decimal
from includes.platforms.paper import PaperPlatform
from includes.platforms.replay import FALLBACK, ReplayPlatform, Series, fallback
from includes.runtime import progress
from includes.storage.memory import FINAL, MemoryMarketDB, MemoryStateStore
from includes.storage.state import ACTIVE, DISABLED, WAITING, Thread
from includes.trends import trends as compute_trends

if TYPE_CHECKING:
    import argparse

    from includes.config import Config
    from includes.platforms.base import Market

log = logging.getLogger(__name__)

EXCHANGE = "replay"                 # the agent's exchange name for replayed markets
MARGIN = 1e-9                       # relative: the Gate's floats call the agent a little early
HEADER = "timestamp,open,high,low,close,volume"
CHUNK = 1 << 20                     # characters of CSV parsed at a time
NAME_RE = re.compile(r"^([A-Za-z0-9]+)_([A-Z0-9]{1,16})_([A-Z0-9]{1,16})_(\d+)([mhdwM])(?:_.*)?$")
UNITS = {"m": 1, "h": 60, "d": 1440, "w": 10080}
PAIR_RE = re.compile(r"^[A-Z0-9]{1,16}/[A-Z0-9]{1,16}$")
TIMEFRAME_RE = re.compile(r"^(\d+)([mhdwM])$")
MS_FROM = 100_000_000_000          # unix seconds of the year 5138: a time past it is in milliseconds
SWEEP_RE = re.compile(r"^([a-z_]+)=([^:]+)(?::([^:]+):([^:]+))?$")
MAX_GRID = 10_000
BLOCK = 4096                        # decisions per step of the progress bar


class InputError(ConfigError):
    """A candle file, the market DB's candles or an argument cannot be used (exit status 2)."""


# --- sources ---------------------------------------------------------------------------------

def read_csv(path: Path, pair: str | None = None, timeframe: str | None = None) -> Series:
    """A candle file, as a series of BASE/QUOTE in the file's own quote, at its own timeframe.

    Both come from a name <exchange>_<BASE>_<QUOTE>_<timeframe>[_<note>].csv,
    or from `pair` ("BTC/EUR") and `timeframe` ("5m") for a file named
    otherwise.  Times in milliseconds are converted to seconds.  Parsing goes
    a megabyte at a time, a column at a time, in C: str.split and float()
    over a whole column; a line is looked at alone only to name it in an error.
    """
    match = NAME_RE.match(path.stem)
    if (pair is None or timeframe is None) and not match:
        raise InputError(f"{path}: the name is not <exchange>_<BASE>_<QUOTE>_<timeframe>.csv "
                         f"(e.g. kraken_BTC_EUR_5m.csv): give --pair BASE/QUOTE and --timeframe (e.g. 5m)")
    if pair is not None:
        if not PAIR_RE.match(pair):
            raise InputError(f"--pair {pair}: expected BASE/QUOTE in capitals and digits, e.g. BTC/EUR")
        base, own_quote = pair.split("/")
    else:
        assert match
        base, own_quote = match.group(2), match.group(3)
    if timeframe is not None:
        frame = TIMEFRAME_RE.match(timeframe)
        if not frame:
            raise InputError(f"--timeframe {timeframe}: expected a number and m, h, d or w, e.g. 5m or 1d")
        length, unit = frame.groups()
    else:
        assert match
        length, unit = match.group(4), match.group(5)
    if unit == "M":
        raise InputError(f"{path}: calendar-month candles ({length}M) have no fixed length and cannot be replayed")
    interval = int(length) * UNITS[unit]
    if interval < 1:
        raise InputError(f"{path}: a timeframe of {length}{unit} is not a length of time")
    columns = [array("q"), *(array("d") for _ in range(5))]
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            header = f.readline()
            if header.strip().replace(" ", "") != HEADER:
                raise InputError(f"{path}:1: the header is {header.strip()[:60]!r}, not {HEADER!r}")
            for line, chunk in _chunks(f, first_line=2):
                _parse_chunk(chunk, columns, path, line)
    except OSError as exc:
        raise InputError(f"{path}: cannot be read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: is not a text file ({exc.reason})") from None
    if not columns[0]:
        raise InputError(f"{path}: no candles after the header")
    _check_columns(path, columns)
    columns[0] = _seconds(path, columns[0])
    return Series(f"{base}/{own_quote}", interval, *columns, label=path.stem)


def _seconds(path: Path, ts: array) -> array:
    """Unix seconds: times past MS_FROM are milliseconds, converted when they are whole seconds.
    `ts` is strictly increasing (checked before)."""
    if ts[-1] < MS_FROM:
        return ts
    if ts[0] < MS_FROM:
        i = bisect_left(ts, MS_FROM)
        raise InputError(f"{path}:{i + 2}: timestamp {ts[i]} mixes seconds and milliseconds with "
                         f"{ts[0]} on line 2")
    if any(t % 1000 for t in ts):
        i = next(i for i, t in enumerate(ts) if t % 1000)
        raise InputError(f"{path}:{i + 2}: timestamp {ts[i]} is in milliseconds but not on a whole second")
    if ts[-1] >= MS_FROM * 1000:
        i = bisect_left(ts, MS_FROM * 1000)
        raise InputError(f"{path}:{i + 2}: timestamp {ts[i]} is neither unix seconds nor milliseconds")
    log.warning("%s: timestamps in milliseconds, read as seconds", path)
    return array("q", (t // 1000 for t in ts))


def _chunks(f: IO[str], first_line: int) -> Iterator[tuple[int, str]]:
    """(number of its first line, text) of about CHUNK characters of whole lines; trailing blanks dropped."""
    def read() -> str:
        text = f.read(CHUNK)
        return text + f.readline() if text else ""

    line, chunk = first_line, read()
    while chunk:
        following = read()
        if not following:
            chunk = chunk.rstrip()
        if chunk:
            chunk = chunk if chunk.endswith("\n") else chunk + "\n"
            yield line, chunk
            line += chunk.count("\n")
        chunk = following


def _parse_chunk(chunk: str, columns: list[array], path: Path, line: int) -> None:
    """Append the chunk's candles to the columns; a bad line raises InputError naming it."""
    n = chunk.count("\n")
    if chunk.count(",") == 5 * n:
        cells = chunk[:-1].replace("\n", ",").split(",")
        try:
            ts = array("q", map(int, cells[0::6]))
            values = [array("d", map(float, cells[k::6])) for k in range(1, 6)]
        except (ValueError, OverflowError):
            pass
        else:
            columns[0].extend(ts)
            for column, new in zip(columns[1:], values):
                column.extend(new)
            return
    for i, text in enumerate(chunk[:-1].split("\n")):
        _check_line(text, path, line + i)
    raise AssertionError(f"{path}: no bad line found in a chunk that failed to parse")


def _check_line(text: str, path: Path, line: int) -> None:
    cells = text.split(",")
    if len(cells) != 6:
        raise InputError(f"{path}:{line}: {len(cells)} fields, not 6 ({HEADER}): {text[:80]!r}")
    try:
        ts, _ = int(cells[0]), [float(c) for c in cells[1:]]
    except ValueError:
        raise InputError(f"{path}:{line}: not a number in {text[:80]!r}") from None
    if not -(1 << 63) <= ts < 1 << 63:
        raise InputError(f"{path}:{line}: timestamp {cells[0][:30]} is out of range")


def _check_columns(path: Path, columns: list[array]) -> None:
    """Times strictly increasing, prices finite and positive, volumes finite and not negative."""
    ts = columns[0]
    if not all(map(lt, ts, islice(ts, 1, None))):
        i = next(i for i in range(1, len(ts)) if ts[i] <= ts[i - 1])
        raise InputError(f"{path}:{i + 2}: timestamp {ts[i]} does not follow {ts[i - 1]}: "
                         f"the rows must be in strictly increasing time")
    for name, column in zip(HEADER.split(",")[1:], columns[1:]):
        lowest = 0.0 if name == "volume" else math.ulp(0)
        if not math.isfinite(sum(column)) or min(column) < lowest:
            i = next(i for i, v in enumerate(column) if not math.isfinite(v) or v < lowest)
            raise InputError(f"{path}:{i + 2}: {name} {column[i]} is not a "
                             f"{'finite number >= 0' if name == 'volume' else 'positive price'}")


# --- the markets' order rules ------------------------------------------------------------------

KRAKEN_PAIRS = Path(__file__).parent / "platforms" / "kraken_asset_pairs.json"


def kraken_rules() -> dict[str, Market]:
    """The default: the Kraken simulator's own table of pairs, as its AssetPairs serves it, saved in
    KRAKEN_PAIRS (tests/test_backtest_live.py checks the copy; importing the simulator would cost
    every backtest some 30 ms)."""
    global _KRAKEN
    if _KRAKEN is None:
        _KRAKEN = read_rules(KRAKEN_PAIRS)
    return _KRAKEN


_KRAKEN: dict[str, Market] | None = None


def read_rules(path: Path) -> dict[str, Market]:
    """--markets FILE: a saved reply of Kraken's AssetPairs (the whole reply, or its result)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"), parse_float=Decimal)
    except OSError as exc:
        raise InputError(f"--markets {path}: cannot be read: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"--markets {path}: not JSON ({exc})") from None
    if isinstance(data, dict) and isinstance(data.get("result"), dict):
        data = data["result"]
    if not isinstance(data, dict) or not data:
        raise InputError(f"--markets {path}: expected Kraken's AssetPairs reply, an object of pairs")
    return _pairs(data, f"--markets {path}")


def _pairs(reply: dict[str, Any], where: str) -> dict[str, Market]:
    from includes.platforms.kraken_pairs import market_of_pair

    rules = {}
    for key, pair in reply.items():
        try:
            market = market_of_pair(key, pair)
        except (KeyError, ValueError, TypeError, AttributeError, ConfigError) as exc:
            raise InputError(f"{where}: pair {str(key)[:40]!r} is malformed ({exc})") from None
        if market is not None:
            rules[market.symbol] = market
    return rules


def rules_for(series: Sequence[Series], *tables: Mapping[str, Market]) -> dict[str, Market]:
    """Each market's rules from the first table that lists it; a market none lists trades by the
    replay's FALLBACK, said in one warning line."""
    found = {s.market: next((t[s.market] for t in tables if s.market in t), None) for s in series}
    missing = [m for m, rules in found.items() if rules is None]
    if missing:
        log.warning("%s: no venue lists %s; traded by fine rules (price %d decimals, volume %d, minimum "
                    "cost %s)", ", ".join(missing), "it" if len(missing) == 1 else "them",
                    FALLBACK["price_decimals"], FALLBACK["volume_decimals"], FALLBACK["min_cost"])
    return {m: rules or fallback(m) for m, rules in found.items()}


def read_market_db(cfg: Config, start: int | None, end: int | None) -> tuple[list[Series], dict[str, Market]]:
    """The configured markets' candles in the market DB, as of now (a still-open candle is left out),
    and the order rules the DB keeps of the exchange's markets (available_markets lists them)."""
    from includes.storage import open_market_db

    interval, quote = cfg.market_data.candle_interval, cfg.trading.quote
    now = int(time.time())
    db = open_market_db(cfg)
    series = []
    try:
        for currency in cfg.trading.currencies:
            market = f"{currency}/{quote}"
            candles = [c for c in db.candles(cfg.exchange.name, market, interval, since=start, until=end)
                       if c.ts + interval * 60 <= now]
            if not candles:
                log.warning("%s: no %d-minute candles of %s in the market DB", market, interval,
                            cfg.exchange.name)
                continue
            columns = [array("q", (c.ts for c in candles)),
                       *(array("d", (float(getattr(c, name)) for c in candles))
                         for name in ("open", "high", "low", "close", "volume"))]
            series.append(Series(market, interval, *columns, label=f"{cfg.exchange.name}_{currency}_{quote}"))
        rules = db.market_rules(cfg.exchange.name)
    finally:
        db.close()
    if not series:
        raise InputError(f"market DB {db.where}: no {interval}-minute candles of "
                         f"{', '.join(cfg.trading.currencies)} against {quote} on {cfg.exchange.name}")
    return series, rules


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
        candles = self.db.last_closed(self.exchange, symbol, self.interval,
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


class Gate:
    """From which decision on the agent could act, found on floats; when in doubt, sooner.

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
        self.buyable = [(rising, bisect_left(self.times, cooldown_until(cfg, store, c) or 0))
                        for c, rising in self.rising.items()
                        if can_buy and held[c] < cfg.currency_cap and left >= self.least[c] and c not in self.never]
        # Per currency held: the lowest price that sells a thread at a gain, the highest that
        # stops a loss, the earliest time a hold runs out.
        sells: dict[str, list[float]] = {}
        for t in threads:
            if t.state == ACTIVE and t.currency in self.prices:
                even = float(t.value) / (float(t.volume) * self.net * self.bid)    # the price of a zero net gain
                tick = self.tick[t.currency] / self.bid
                high = even * (1 + float(cfg.sell_percent) / 100) * (1 - MARGIN) - tick
                low = even * (1 - float(cfg.stop_loss_percent) / 100) * (1 + MARGIN) + tick \
                    if cfg.stop_loss_percent else 0.0
                deadline = t.updated + cfg.max_hold_hours * 3600 if cfg.max_hold_hours else math.inf
                seen = sells.setdefault(t.currency, [high, low, deadline])
                seen[:] = min(seen[0], high), max(seen[1], low), min(seen[2], deadline)
        self.sells = [(self.prices[c], *limits) for c, limits in sells.items()]
        self.holdings = [(prices, float(balances[c]) * self.bid * self.net)
                         for c, prices in self.prices.items() if balances.get(c)]
        self.free = float(free)

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
            for n, t, price in zip(counts, times, prices)]


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
    changes = [s.last(last) * (1 - spread) * (1 - fee) / ((s.last(first) or s.open[0]) * (1 + spread) * (1 + fee))
               for s in series if s.last(last)]
    return (sum(changes) / len(changes) - 1) * 100 if changes else 0.0


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
            tf = _minutes(r["interval_minutes"]) if "interval_minutes" in r else ""
            step = _minutes(r["step_minutes"]) if "step_minutes" in r else ""
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
              f"{Decimal(exit_price):>14.8g} {why:13} {_duration(group[0]['duration_minutes']):>6} {gain:>7.2f} "
              f"{fees:>9.4f} {pnl:>11.4f}", file=out)


def write_json(path: Path, data: dict[str, Any]) -> None:
    from includes.runtime import write_atomic

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
        for ax, s in zip(axes[:, 0], r.series):
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
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d %H:%M")


def _date(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, timezone.utc)


def _duration(minutes: int) -> str:
    """A time held, at a glance: 45m, 10h, 3d4h, 1h30m."""
    days, rest = divmod(minutes, 1440)
    hours, mins = divmod(rest, 60)
    text = "".join(f"{n}{u}" for n, u in ((days, "d"), (hours, "h"), (mins, "m")) if n)
    return text or "0m"


def _minutes(minutes: int) -> str:
    for unit, size in (("d", 1440), ("h", 60)):
        if minutes and minutes % size == 0:
            return f"{minutes // size}{unit}"
    return f"{minutes}m"


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
    return int((moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).timestamp())


def main(cfg: Config, args: argparse.Namespace) -> int:
    if not args.verbose:      # the agent's per-run lines would drown the report
        logging.getLogger("includes.agent").setLevel(logging.WARNING)
    _warnings_on_stderr()
    start, end = parse_time(args.start, "--start"), parse_time(args.end, "--end")
    given = read_rules(args.markets) if args.markets else {}
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
                             + ", ".join(f"{s.label} {_minutes(s.interval)}" for s in run))
        if len({s.market.split("/")[1] for s in run}) > 1:
            raise InputError("--portfolio: one account trades in one quote currency, not "
                             + ", ".join(f"{s.label} {s.market}" for s in run))
    if args.spread < 0 or args.step < 1:
        raise InputError("--step must be at least 1 minute and --spread not negative")
    for s in {s.market: s for run in runs for s in run}.values():
        short = min(cfg.trading.trend_windows)
        if s.interval > short * 60:
            log.warning("%s: %s candles cannot fill the %d-hour trend window: a trend then compares the "
                        "price with a close up to %s old, or finds none", s.label, _minutes(s.interval), short,
                        _duration(s.interval + short * 60))
    options = {"step_minutes": args.step, "start": start, "end": end, "spread_percent": args.spread,
               "every_step": args.every_step,
               "rules": rules_for([s for run in runs for s in run], *tables)}
    if args.sweep:
        points = sweep(runs, cfg.trading, parse_sweep(args.sweep), args.workers or os.cpu_count() or 1, options)
        if args.json:   # first: a reader that closes stdout early (| head) does not lose it
            write_json(args.json, {"settings": _settings(cfg.trading, options), "sweep": points})
        print_sweep(points, sys.stdout)
        return 0
    results = []
    for run in runs:
        label = run[0].label if len(run) == 1 else ("market_db" if args.from_db else "portfolio")
        results.append(replay(run, trading_for(cfg.trading, run, {}), label=label, **options))
    rep = report(results, _settings(results[0].trading, options))
    if args.json:   # first: a reader that closes stdout early (| head) does not lose it
        write_json(args.json, rep)
    print_report(rep, sys.stdout)
    if args.charts:
        for path in write_charts(results, cfg.path(cfg.paths.img)):
            log.info("chart written: %s", path)
    return 0


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


def _settings(trading: TradingConfig, options: dict[str, Any]) -> dict[str, Any]:
    shown = {"sell_percent", "fee_percent", "max_threads", "max_per_trade", "stop_loss_percent", "max_hold_hours",
             "buy_trend_window", "trend_windows", "dry_run_balance", "quote", "rebuy_cooldown_minutes",
             "max_drawdown_percent"}
    return {**{k: v for k, v in trading.as_dict(json=True).items() if k in shown},
            "budget": str(trading.budget), "currency_cap": trading.currency_cap,
            "step_minutes": options["step_minutes"], "spread_percent": str(options["spread_percent"]),
            "start": options["start"], "end": options["end"]}
