"""The threshold agent: threads, IntelligentBuy and IntelligentSell.

One run is the seed's Main, made safe: every order has a journal row with a
unique reference before it is sent, carries that reference, gets its result
recorded, and only then moves its thread.  A run first settles whatever a
crashed run left in flight, by asking the exchange about each reference (that order
sequence and its recovery are includes/settlement.py's).
"""
from __future__ import annotations

import logging
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from includes.errors import ExchangeError, OrderTooSmall
from includes.model import DEFAULT_AGENT
from includes.money import ZERO, percent_change
from includes.rules import cooldown_until, net_gain, run_budget, sell_reason, spendable, under_cap
from includes.settlement import NOT_SENDABLE, Settlement
from includes.storage.state import ACTIVE, BUYING, DISABLED, SELLING, WAITING, StateStore, Thread
from includes.trends import changes
from includes.trends import trends as compute_trends

if TYPE_CHECKING:
    from includes.config import Config, TradingConfig
    from includes.model import Market, Order, Ticker
    from includes.platforms.base import Platform
    from includes.storage.marketdb import MarketDB
    from includes.storage.memory import MemoryMarketDB

log = logging.getLogger(__name__)

BUSY = (BUYING, ACTIVE, SELLING)
LOCK_TTL = 900  # seconds; a run takes seconds, and a dead local holder is taken over at once


def no_checkpoint(step: str) -> None:
    """The default checkpoint: a step of an order passes unremarked."""


@dataclass
class RunSummary:
    mode: str
    stopped: bool = False
    budget: Decimal = ZERO
    bought: list[str] = field(default_factory=list)
    sold: list[str] = field(default_factory=list)
    recovered: list[str] = field(default_factory=list)
    in_doubt: list[str] = field(default_factory=list)     # orders still open or unknown after this run
    refused: list[str] = field(default_factory=list)      # orders the exchange refused (nothing placed)
    attention: list[str] = field(default_factory=list)    # what the owner must hear of (stderr under cron)
    notes: list[str] = field(default_factory=list)


class Agent(Settlement):
    """The decisions of one run; the order sequence and crash recovery are Settlement's."""

    def __init__(self, trading: TradingConfig, platform: Platform, store: StateStore, db: MarketDB | MemoryMarketDB, *,
                 mode: str, exchange: str, candle_interval: int, name: str = DEFAULT_AGENT,
                 stop_requested: Callable[[], bool] = lambda: False,
                 request_stop: Callable[[str], None] = lambda why: None,
                 checkpoint: Callable[[str], None] = no_checkpoint) -> None:
        """`name`: the storage.namespace, which tells this agent's journal from others' in a shared DB;
        `request_stop(why)`: halt later runs (the stop file), for the drawdown guard;
        `checkpoint(step)`: called at each step of an order ("buy:claimed" .. "sell:moved"), so the
        safety tests can kill the process there (tests/crash_launcher.py)."""
        self.cfg = trading
        self.name = name
        self.platform = platform
        self.store = store
        self.db = db
        self.mode = mode
        self.exchange = exchange
        self.interval = candle_interval
        self.stop_requested = stop_requested
        self.request_stop = request_stop
        self.checkpoint = checkpoint
        self.summary = RunSummary(mode)
        self.sold_now: set[str] = set()   # currencies this run sold: not bought back in it

    # --- one run ----------------------------------------------------------------------
    def run(self) -> RunSummary:
        self.store.ensure_threads(self.cfg.max_threads)
        self.recover()
        threads = self.store.threads()[: self.cfg.max_threads]
        # the configured currencies, and those the threads hold: one dropped from the config still sells
        held = [t.currency for t in threads if t.state in BUSY]
        wanted = [f"{c}/{self.cfg.quote}" for c in dict.fromkeys(self.currencies() + held)]
        markets = self.platform.markets(wanted)
        account = self.platform.get_account_info()
        free = account.balance(self.cfg.quote)
        symbols = [s for s in wanted if s in markets]
        tickers = self.platform.get_tickers(symbols) if symbols else {}
        self.allocate(threads, free, self.stake_cost(markets, tickers))
        trends = self.update_trends(tickers, account)
        self.sell_pass(tickers)
        if self.summary.sold:  # the proceeds, to the cent the exchange credited
            free = self.platform.get_account_info().balance(self.cfg.quote)
        if not self.drawdown_hit(threads, tickers, free):
            self.buy_pass(trends, tickers, markets, free)
        return self.summary

    def drawdown_hit(self, threads: Sequence[Thread], tickers: dict[str, Ticker], free: Decimal) -> bool:
        """The max_drawdown_percent guard: the equity (free quote, positions at the bid, buys in
        flight at what they may cost) against its peak, kept in the state store.  When it has
        fallen that far, buying stops: the stop file halts the later runs, and the owner is told."""
        limit = self.cfg.max_drawdown_percent
        if limit is None:
            return False
        equity = free
        for t in self.store.threads()[: self.cfg.max_threads]:
            ticker = tickers.get(f"{t.currency}/{self.cfg.quote}")
            equity += t.volume * ticker.bid if t.state in (ACTIVE, SELLING) and ticker else self.committed(t)
        peak = max(self.store.get_decimal("equity:peak") or equity, equity)
        self.store.set_many({"equity:peak": peak, "equity:now": equity})
        if equity > peak * (1 - limit / 100):
            return False
        why = (f"equity {equity:.2f} {self.cfg.quote} is {percent_change(peak, equity):.2f}% from its peak "
               f"{peak:.2f}: max_drawdown_percent {limit}% reached; buying stopped, the stop file created")
        self.request_stop(why)
        self.summary.stopped = True
        self.summary.attention.append(why)
        log.warning("%s", why)
        return True

    def currencies(self) -> list[str]:
        return [self.platform.canonical(c) for c in self.cfg.currencies]

    # --- budget -----------------------------------------------------------------------
    def allocate(self, threads: Sequence[Thread], free: Decimal, stake_cost: Decimal | None = None) -> None:
        """Enable as many threads as the budget and the balance cover, each at what its order
        really costs (`stake_cost`, max_per_trade when None); disable the rest."""
        invested = sum((self.committed(t) for t in threads), ZERO)
        total = run_budget(self.cfg, invested, free)
        self.summary.budget = total
        self.store.set_many({"invest:total": total, "platform:totaleuro": free})
        room = int(total // (stake_cost or self.cfg.max_per_trade)) - sum(t.state in BUSY for t in threads)
        for t in threads:
            if t.state in BUSY:
                continue
            if room > 0:
                room -= 1
                if t.state == DISABLED and self.store.enable(t.n):
                    log.info("thread %d: enabled (budget %s %s)", t.n, total, self.cfg.quote)
            elif t.state == WAITING and self.store.disable(t.n):
                log.info("thread %d: disabled (budget %s %s covers fewer threads)", t.n, total, self.cfg.quote)

    def stake_cost(self, markets: dict[str, Market], tickers: dict[str, Ticker]) -> Decimal | None:
        """What a thread's order of max_per_trade really costs now (Market.charges), at the cheapest
        of the configured currencies it can buy; None when none is priced."""
        costs = []
        for currency in self.currencies():
            market, ticker = markets.get(f"{currency}/{self.cfg.quote}"), tickers.get(f"{currency}/{self.cfg.quote}")
            if market is None or ticker is None or not market.available:
                continue
            try:
                volume = self.platform.buy_volume(market, self.cfg.max_per_trade, ticker.ask)
            except NOT_SENDABLE:
                continue
            cost, fee = market.charges(volume, ticker.ask, self.platform.fee_percent)
            costs.append(cost + fee)
        return min(costs, default=None)

    def committed(self, thread: Thread) -> Decimal:
        """The quote money a thread ties up: what it paid, or for a buy in flight (its value not
        known yet, the exchange holding the money) the most a buy may cost."""
        if thread.state == BUYING:
            return self.cfg.max_per_trade
        return thread.value if thread.state in BUSY else ZERO

    # --- trends -----------------------------------------------------------------------
    def update_trends(self, tickers: dict[str, Ticker], account: Any) -> dict[str, dict[int, Decimal]]:
        """Trends from the market DB, from the exchange's candles when history is short."""
        now = self.platform.now()
        start = now - (max(self.cfg.trend_windows) + 2) * 3600
        result: dict[str, dict[int, Decimal]] = {}
        values: dict[str, Decimal | str] = {}
        for currency in self.currencies():
            symbol = f"{currency}/{self.cfg.quote}"
            ticker = tickers.get(symbol)
            if ticker is None:
                continue
            found = self.trends_from_db(symbol, now, start, ticker.last)
            if len(found) < len(self.cfg.trend_windows):
                try:
                    hourly = self.platform.get_candles(symbol, 60, since=start)
                except ExchangeError as exc:
                    log.warning("%s: no exchange candles for the trends (%s)", symbol, exc)
                else:
                    found = compute_trends(hourly, now, self.cfg.trend_windows, 60, current=ticker.last) | found
            result[currency] = found
            values[f"platform:{currency}:value"] = ticker.last
            values[f"platform:{currency}:montant"] = account.balance(currency)
            for hours, trend in found.items():
                values[f"platform:{currency}:last{hours}h:tendance"] = trend.quantize(Decimal("0.0001"))
        if values:
            self.store.set_many(values)
        return result

    def trends_from_db(self, symbol: str, now: int, since: int, current: Decimal) -> dict[int, Decimal]:
        """Trends over the market DB's candles opening at or after `since`, as trends.trends
        computes them, from the one close each window needs (the backtest reads its arrays)."""
        windows = self.cfg.trend_windows
        then = self.db.closes_at(self.exchange, symbol, self.interval, [now - h * 3600 for h in windows], since)
        return changes(current, dict(zip(windows, then, strict=True)))

    # --- selling ----------------------------------------------------------------------
    def gain(self, thread: Thread, bid: Decimal) -> Decimal:
        """The thread's net gain at `bid` (rules.net_gain)."""
        return net_gain(thread.value, thread.volume, bid, self.cfg.fee_percent)

    def sell_pass(self, tickers: dict[str, Ticker]) -> None:
        now = self.platform.now()
        for thread in self.store.threads()[: self.cfg.max_threads]:
            if thread.state != ACTIVE:
                continue
            ticker = tickers.get(f"{thread.currency}/{self.cfg.quote}")
            if ticker is None:
                log.warning("thread %d: no price for %s; not selling this run", thread.n, thread.currency)
                continue
            gain = self.gain(thread, ticker.bid)
            reason = self.sell_reason(thread, gain, now)
            if reason is None:
                log.info("thread %d: holding %s %s bought at %s, bid %s, net gain %.2f%% < %s%%",
                         thread.n, thread.volume, thread.currency, thread.lastbuyvalue, ticker.bid,
                         gain, self.cfg.sell_percent)
                continue
            if self.stop_requested():
                log.info("stop file present: sleeping")
                self.summary.stopped = True
                return
            self.intelligent_sell(thread, ticker.bid, gain, reason)

    def sell_reason(self, thread: Thread, gain: Decimal, now: int) -> str | None:
        """rules.sell_reason; `updated` is the buy's time on the platform's clock (activate(at=...))."""
        return sell_reason(self.cfg, gain, thread.updated, now)

    def intelligent_sell(self, thread: Thread, bid: Decimal, gain: Decimal, reason: str) -> None:
        symbol = f"{thread.currency}/{self.cfg.quote}"
        try:
            market, volume = self.platform.prepare_sell(thread.volume, thread.currency, bid)
        except NOT_SENDABLE as exc:
            log.warning("thread %d: cannot sell %s %s: %s", thread.n, thread.volume, thread.currency, exc)
            return
        ref = new_ref()
        if not self.store.begin_sell(thread.n, ref):
            log.warning("thread %d: moved by someone else; not selling", thread.n)
            return
        self.checkpoint("sell:claimed")
        self.db.journal_intent(ref, mode=self.mode, agent=self.name, exchange=self.exchange, market=symbol,
                               side="sell", thread=thread.n, volume=volume, amount_quote=None,
                               at=self.platform.clock())
        self.checkpoint("sell:journaled")
        self.sold_now.add(thread.currency)
        self.store.set_value(f"platform:{thread.currency}:lastsell", self.platform.now())
        log.info("thread %d: SELL %s %s at ~%s %s: %s (order %s)", thread.n, volume,
                 thread.currency, bid, self.cfg.quote, reason, ref)
        self._send(thread.n, "sell", ref, lambda: self.platform.place_order(market, "sell", volume, bid, ref))

    # --- buying -----------------------------------------------------------------------
    def buy_pass(self, trends: dict[str, dict[int, Decimal]], tickers: dict[str, Ticker],
                 markets: dict[str, Any], free: Decimal) -> None:
        """`free`: the quote balance now.  Each waiting thread's order is sized at max_per_trade
        and sent when what it really costs (rounded cost plus rounded-up fee) fits the money left."""
        threads = self.store.threads()[: self.cfg.max_threads]
        held = Counter(t.currency for t in threads if t.state in BUSY)
        committed = sum((self.committed(t) for t in threads), ZERO)
        window = self.cfg.buy_trend_window
        rising = sorted(((t[window], c) for c, t in trends.items() if window in t and t[window] > 0),
                        reverse=True)
        if not any(t.state == WAITING for t in threads):
            return
        orders = self.sendable([c for _, c in rising if not self.cooling(c)], tickers)
        refused: set[str] = set()
        for thread in threads:
            if thread.state != WAITING:
                continue
            while True:
                left = spendable(self.summary.budget, committed, free)
                choice = next((c for _, c in rising if c in orders and c not in refused
                               and under_cap(self.cfg, held[c])), None)
                if choice is None:
                    log.info("thread %d: no rising currency to buy (%s h trends: %s)", thread.n, window,
                             ", ".join(f"{c} {t[window]:+.2f}%" if window in t else f"{c} n/a"
                                       for c, t in trends.items()) or "none")
                    return
                market, volume, ask = orders[choice]
                cost = sum(market.charges(volume, ask, self.platform.fee_percent))
                if cost > left:
                    self.left_out(choice, "funds", f"not enough funds: {free} {self.cfg.quote} free, "
                                  f"{self.summary.budget - committed} {self.cfg.quote} of the budget left, "
                                  f"the order costs {cost}")
                    return
                if self.stop_requested():
                    log.info("stop file present: sleeping")
                    self.summary.stopped = True
                    return
                self.intelligent_buy(thread, market, volume, ask, trends[choice][window])
                thread = self.store.get_thread(thread.n) or thread
                if thread.state == WAITING:
                    refused.add(choice)  # refused by the exchange: the next best currency, for this same thread
                    continue
                # bought, or in flight (pending, or in doubt): its money is the exchange's now
                spent = thread.value if thread.state == ACTIVE else self.cfg.max_per_trade
                held[choice] += 1
                committed += spent
                free -= spent
                break

    def cooling(self, currency: str) -> bool:
        """Sold in this run, or less than rebuy_cooldown_minutes ago: buying it back would pay two
        fees and the spread for the same position (said once per run)."""
        if currency in self.sold_now:
            self.left_out(currency, "sold in this run", f"{currency} left out of this run's choice: sold in this run")
            return True
        until = cooldown_until(self.cfg, self.store.get_value(f"platform:{currency}:lastsell"))
        if until is not None and self.platform.now() < until:
            self.left_out(currency, "rebuy cooldown", f"{currency} left out of this run's choice: sold less than "
                          f"rebuy_cooldown_minutes ({self.cfg.rebuy_cooldown_minutes}) ago")
            return True
        return False

    def left_out(self, currency: str, kind: str, why: str) -> None:
        """A rising currency not bought in this run, and why (`kind` names the rule): said in the
        log; the backtest counts them for its report."""
        log.info("%s", why)

    def sendable(self, currencies: list[str], tickers: dict[str, Ticker]) -> dict[str, tuple[Market, Decimal, Decimal]]:
        """The order of max_per_trade at the ask (market, volume, ask) of each currency whose
        market takes it: open, and its minimum volume and cost, fee included, within the stake.
        The others are said once, with why, and never reach the journal."""
        orders = {}
        for currency in currencies:
            ask = tickers[f"{currency}/{self.cfg.quote}"].ask
            try:
                market, volume = self.platform.prepare_buy(self.cfg.max_per_trade, currency, ask)
            except OrderTooSmall as exc:
                try:
                    need = self.platform.least_order_cost(self.platform.market(currency), ask)
                except NOT_SENDABLE:
                    need = None
                why = (f"needs {need} {self.cfg.quote} a trade (its minimum order, fee included), "
                       f"max_per_trade is {self.cfg.max_per_trade}") if need else str(exc)
                self.left_out(currency, "below the market's minimum order",
                              f"{currency} left out of this run's choice: {why}")
                continue
            except NOT_SENDABLE as exc:
                self.left_out(currency, "market unavailable", f"{currency} left out of this run's choice: {exc}")
                continue
            orders[currency] = (market, volume, ask)
        return orders

    def intelligent_buy(self, thread: Thread, market: Market, volume: Decimal, ask: Decimal,
                        trend: Decimal) -> Order | None:
        """Claim the thread, journal the intent, send the prepared order (Platform.prepare_buy)."""
        ref = new_ref()
        currency = market.base
        if not self.store.claim(thread.n, currency, ref):
            log.warning("thread %d: taken by another agent", thread.n)
            return None
        self.checkpoint("buy:claimed")
        self.db.journal_intent(ref, mode=self.mode, agent=self.name, exchange=self.exchange,
                               market=market.symbol, side="buy", thread=thread.n, volume=volume,
                               amount_quote=self.cfg.max_per_trade, at=self.platform.clock())
        self.checkpoint("buy:journaled")
        log.info("thread %d: BUY %s %s for at most %s %s at ~%s: %s h trend %+.2f%% is the best rising (order %s)",
                 thread.n, volume, currency, self.cfg.max_per_trade, self.cfg.quote, ask,
                 self.cfg.buy_trend_window, trend, ref)
        return self._send(thread.n, "buy", ref, lambda: self.platform.place_order(market, "buy", volume, ask, ref))


def new_ref() -> str:
    """A unique client order reference, accepted by Kraken (cl_ord_id) and Bittrex (clientOrderId)."""
    return str(uuid.uuid4())


def run_agent(cfg: Config, force_dry_run: bool = False, platform: Platform | None = None,
              checkpoint: Callable[[str], None] = no_checkpoint) -> RunSummary | None:
    """One cron run: the stop file, the mode, the lock, then the agent.  None when skipped.
    `platform`: the exchange, made from the config when None, and `checkpoint`: the Agent's
    (seams for tests)."""
    from includes.platforms import make_platform
    from includes.platforms.paper import PaperPlatform
    from includes.runtime import dry_run_requested, request_stop, stop_requested
    from includes.storage import open_market_db, open_state

    if stop_requested(cfg):
        log.info("stop file present: sleeping")
        return None
    mode = "dry" if force_dry_run or dry_run_requested(cfg) else "live"
    platform = platform or make_platform(cfg, live=mode == "live")
    exchange = platform.name  # the venue's name, under which get_api_data stored its candles
    if mode == "dry":
        ledger = cfg.path(cfg.paths.tmp) / f"paper-{cfg.storage.namespace}.json"
        platform = PaperPlatform(platform, ledger, cfg.trading.dry_run_balance)
    store = open_state(cfg, mode)
    db = open_market_db(cfg)
    try:
        lock = store.lock("agent", ttl_seconds=LOCK_TTL)
        if not lock.acquire():
            if lock.problem:               # a lock without a bound: the owner hears of it once
                from includes.runtime import tell_owner
                tell_owner("trade_agent", lock.problem)
            log.info("another agent run holds the %s lock of %s: exiting", mode, store.where)
            return None
        try:
            agent = Agent(cfg.trading, platform, store, db, mode=mode, exchange=exchange,
                          candle_interval=cfg.market_data.candle_interval, name=cfg.storage.namespace,
                          stop_requested=lambda: stop_requested(cfg), request_stop=lambda why: request_stop(cfg, why),
                          checkpoint=checkpoint)
            summary = agent.run()
        finally:
            lock.release()
    finally:
        store.close()
        db.close()
    log.info("%s run done: budget %s %s, %d bought, %d sold, %d settled from earlier runs, %d in doubt", mode,
             summary.budget, cfg.trading.quote, len(summary.bought), len(summary.sold), len(summary.recovered),
             len(summary.in_doubt))
    return summary
