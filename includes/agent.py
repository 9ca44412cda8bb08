"""The threshold agent: threads, IntelligentBuy and IntelligentSell.

One run is the seed's Main, made safe: every order has a journal row with a
unique reference before it is sent, carries that reference, gets its result
recorded, and only then moves its thread.  A run first settles whatever a
crashed run left in flight, by asking the exchange about each reference.
"""
from __future__ import annotations

import logging
import os
import signal
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from includes.errors import (ExchangeError, InsufficientFunds, MarketUnavailable, OrderStateUnknown,
                             OrderTooSmall, UnknownMarket)
from includes.money import ZERO, percent_change
from includes.storage import DEFAULT_AGENT, OPEN
from includes.storage.state import ACTIVE, BUYING, DISABLED, SELLING, WAITING, StateStore, Thread
from includes.trends import changes, trends as compute_trends

if TYPE_CHECKING:
    from includes.config import Config, TradingConfig
    from includes.platforms.base import Order, Platform, Ticker
    from includes.storage.marketdb import MarketDB

log = logging.getLogger(__name__)

BUSY = (BUYING, ACTIVE, SELLING)
LOCK_TTL = 900  # seconds; a run takes seconds, and a dead local holder is taken over at once


CRASH_AT = os.environ.get("CRONTRADER_CRASH_AT")


def crash_point(name: str) -> None:
    """Test hook: die here, as kill -9 would, when CRONTRADER_CRASH_AT names this step."""
    if CRASH_AT == name:
        os.kill(os.getpid(), signal.SIGKILL)


@dataclass
class RunSummary:
    mode: str
    stopped: bool = False
    budget: Decimal = ZERO
    bought: list[str] = field(default_factory=list)
    sold: list[str] = field(default_factory=list)
    recovered: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


class Agent:
    def __init__(self, trading: TradingConfig, platform: Platform, store: StateStore, db: MarketDB, *,
                 mode: str, exchange: str, candle_interval: int, name: str = DEFAULT_AGENT,
                 stop_requested: Callable[[], bool] = lambda: False) -> None:
        """`name`: the storage.namespace, which tells this agent's journal from others' in a shared DB."""
        self.cfg = trading
        self.name = name
        self.platform = platform
        self.store = store
        self.db = db
        self.mode = mode
        self.exchange = exchange
        self.interval = candle_interval
        self.stop_requested = stop_requested
        self.summary = RunSummary(mode)

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
        self.allocate(threads, free)
        symbols = [s for s in wanted if s in markets]
        tickers = self.platform.get_tickers(symbols) if symbols else {}
        trends = self.update_trends(tickers, account)
        self.sell_pass(tickers)
        if self.summary.sold:  # the proceeds, to the cent the exchange credited
            free = self.platform.get_account_info().balance(self.cfg.quote)
        self.buy_pass(trends, tickers, markets, free)
        return self.summary

    def currencies(self) -> list[str]:
        return [self.platform.canonical(c) for c in self.cfg.currencies]

    # --- crash recovery ---------------------------------------------------------------
    def recover(self) -> None:
        """Settle what a previous run left in flight, before anything else.

        First the journal's orders without a result, asked of the exchange by
        their reference; then the threads caught between two states, finished
        or undone as the journal says.
        """
        for row in self.db.open_intents(self.mode, agent=self.name):
            order = self.platform.get_order(row["ref"])
            if order is None:
                age = time.time() - float(row["intent_at"])
                if age < self.platform.order_visibility_delay:
                    log.warning("thread %s: order %s not visible yet (%.0f s old); left for the next run",
                                row["thread"], row["ref"], age)
                    continue
                self.db.journal_result(row["ref"], status="failed", error="not found on the exchange")
                self._note(f"thread {row['thread']}: order {row['ref']} was never placed", self.summary.recovered)
            elif order.done:
                self.db.journal_order(order, status=order.status if order.filled else "failed")
                self._note(f"thread {row['thread']}: order {row['ref']} settled from the exchange "
                           f"({order.status}, {order.filled} filled)", self.summary.recovered)
            else:
                log.warning("thread %s: order %s is still %s; left for the next run",
                            row["thread"], row["ref"], order.status)
        for thread in self.store.threads():
            if thread.state not in (BUYING, SELLING):
                continue
            row = self.db.journal_row(thread.order_ref)
            if row is None:  # claimed, then died before the journal row: nothing was sent
                self.store.abort(thread.n, thread.order_ref)
                self._note(f"thread {thread.n}: claim {thread.order_ref} had no journal row; undone",
                           self.summary.recovered)
            elif row["status"] not in OPEN:
                self._move(thread.n, _order_from_row(row), self.summary.recovered)
        self.rebuild_if_lost()

    def rebuild_if_lost(self) -> None:
        """State store flushed: rebuild the positions from the journal's filled orders."""
        positions = self.db.open_positions(self.mode, agent=self.name)
        threads = {t.n: t for t in self.store.threads()}
        for n, buy in positions.items():
            thread = threads.get(n)
            if thread is not None and thread.state in BUSY:
                continue
            self.store.put_thread(Thread(n=n, state=ACTIVE, currency=_base(buy["market"]),
                                         value=buy["cost"] + buy["fee"], volume=buy["filled"],
                                         lastbuyvalue=buy["price"], order_ref=buy["ref"],
                                         updated=int(float(buy["result_at"] or time.time()))))
            self._note(f"thread {n}: rebuilt from the journal ({buy['market']}, order {buy['ref']})",
                       self.summary.recovered)

    # --- budget -----------------------------------------------------------------------
    def allocate(self, threads: Sequence[Thread], free: Decimal) -> None:
        """Enable as many threads as the budget and the balance cover; disable the rest."""
        invested = sum((t.value for t in threads if t.state in BUSY), ZERO)
        total = min(self.cfg.budget, invested + free)
        self.summary.budget = total
        self.store.set_many({"invest:total": total, "platform:totaleuro": free})
        room = int(total // self.cfg.max_per_trade) - sum(t.state in BUSY for t in threads)
        for t in threads:
            if t.state in BUSY:
                continue
            if room > 0:
                room -= 1
                if t.state == DISABLED and self.store.enable(t.n):
                    log.info("thread %d: enabled (budget %s %s)", t.n, total, self.cfg.quote)
            elif t.state == WAITING and self.store.disable(t.n):
                log.info("thread %d: disabled (budget %s %s covers fewer threads)", t.n, total, self.cfg.quote)

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
        return changes(current, dict(zip(windows, then)))

    # --- selling ----------------------------------------------------------------------
    def gain(self, thread: Thread, bid: Decimal) -> Decimal:
        """100 * net proceeds / quote spent - 100: both fees counted."""
        proceeds = thread.volume * bid * (1 - self.cfg.fee_percent / 100)
        return percent_change(thread.value, proceeds)

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
        if gain >= self.cfg.sell_percent:
            return f"net gain {gain:.2f}% >= sell_percent {self.cfg.sell_percent}%"
        if self.cfg.stop_loss_percent is not None and gain <= -self.cfg.stop_loss_percent:
            return f"net loss {gain:.2f}% hit stop_loss_percent {self.cfg.stop_loss_percent}%"
        if self.cfg.max_hold_hours is not None and now - thread.updated >= self.cfg.max_hold_hours * 3600:
            # `updated` is the buy's time on the platform's clock (activate(at=...))
            return f"held {(now - thread.updated) / 3600:.1f} h >= max_hold_hours {self.cfg.max_hold_hours}"
        return None

    def intelligent_sell(self, thread: Thread, bid: Decimal, gain: Decimal, reason: str) -> None:
        ref = new_ref()
        if not self.store.begin_sell(thread.n, ref):
            log.warning("thread %d: moved by someone else; not selling", thread.n)
            return
        crash_point("sell:claimed")
        symbol = f"{thread.currency}/{self.cfg.quote}"
        self.db.journal_intent(ref, namespace=self.mode, agent=self.name, exchange=self.exchange, market=symbol,
                               side="sell", thread=thread.n, volume=thread.volume, amount_quote=None)
        crash_point("sell:journaled")
        log.info("thread %d: SELL %s %s at ~%s %s: %s (order %s)", thread.n, thread.volume,
                 thread.currency, bid, self.cfg.quote, reason, ref)
        self._send(thread.n, "sell", ref, lambda: self.platform.sell(thread.volume, thread.currency, ref, bid))

    # --- buying -----------------------------------------------------------------------
    def buy_pass(self, trends: dict[str, dict[int, Decimal]], tickers: dict[str, Ticker],
                 markets: dict[str, Any], free: Decimal) -> None:
        """`free`: the quote balance now."""
        threads = self.store.threads()[: self.cfg.max_threads]
        held = Counter(t.currency for t in threads if t.state in BUSY)
        committed = sum((t.value for t in threads if t.state in BUSY), ZERO)
        window = self.cfg.buy_trend_window
        ranked = sorted(((t[window], c) for c, t in trends.items() if window in t and t[window] > 0),
                        reverse=True)
        refused: set[str] = set()
        for thread in threads:
            if thread.state != WAITING:
                continue
            while True:
                amount = min(self.cfg.max_per_trade, self.summary.budget - committed)
                if free < self.cfg.max_per_trade or amount < self.cfg.max_per_trade:
                    log.info("not enough funds: %s %s free, %s %s of the budget left, a thread needs %s",
                             free, self.cfg.quote, self.summary.budget - committed, self.cfg.quote,
                             self.cfg.max_per_trade)
                    return
                choice = next((c for _, c in ranked if c not in refused and held[c] < self.cfg.currency_cap
                               and getattr(markets.get(f"{c}/{self.cfg.quote}"), "available", False)), None)
                if choice is None:
                    log.info("thread %d: no rising currency to buy (%s h trends: %s)", thread.n, window,
                             ", ".join(f"{c} {t[window]:+.2f}%" if window in t else f"{c} n/a"
                                       for c, t in trends.items()) or "none")
                    return
                if self.stop_requested():
                    log.info("stop file present: sleeping")
                    self.summary.stopped = True
                    return
                order = self.intelligent_buy(thread, choice, amount,
                                             tickers[f"{choice}/{self.cfg.quote}"].ask, trends[choice][window])
                if order is not None:
                    held[choice] += 1
                    committed += order.cost + order.fee
                    free -= order.cost + order.fee
                    break
                refused.add(choice)  # the next best currency, for this same thread
                thread = self.store.get_thread(thread.n)
                if thread is None or thread.state != WAITING:
                    break  # its order is in doubt: the next run settles it

    def intelligent_buy(self, thread: Thread, currency: str, amount: Decimal, ask: Decimal,
                        trend: Decimal) -> Order | None:
        ref = new_ref()
        if not self.store.claim(thread.n, currency, ref):
            log.warning("thread %d: taken by another agent", thread.n)
            return None
        crash_point("buy:claimed")
        symbol = f"{currency}/{self.cfg.quote}"
        self.db.journal_intent(ref, namespace=self.mode, agent=self.name, exchange=self.exchange, market=symbol,
                               side="buy", thread=thread.n, volume=None, amount_quote=amount)
        crash_point("buy:journaled")
        log.info("thread %d: BUY %s for %s %s at ~%s: %s h trend %+.2f%% is the best rising (order %s)",
                 thread.n, currency, amount, self.cfg.quote, ask, self.cfg.buy_trend_window, trend, ref)
        return self._send(thread.n, "buy", ref, lambda: self.platform.buy(amount, currency, ref, ask))

    # --- the order sequence -----------------------------------------------------------
    def _send(self, n: int, side: str, ref: str, send: Callable[[], Order]) -> Order | None:
        """Send, record the result, move the thread; a refused order frees the thread."""
        try:
            order = send()
        except OrderStateUnknown as exc:
            self.db.journal_result(ref, status="unknown", error=str(exc))
            log.warning("thread %d: %s; the next run settles it", n, exc)
            return None
        except (OrderTooSmall, MarketUnavailable, InsufficientFunds, UnknownMarket) as exc:
            self.db.journal_result(ref, status="failed", error=str(exc))
            self.store.abort(n, ref)
            log.warning("thread %d: %s order refused: %s", n, side, exc)
            return None
        except ExchangeError as exc:
            # Refused before it reached the book (the platform looks up doubtful sends).
            self.db.journal_result(ref, status="failed", error=str(exc))
            self.store.abort(n, ref)
            log.warning("thread %d: %s order failed: %s", n, side, exc)
            return None
        crash_point(f"{side}:sent")
        return self._settle(n, side, order)

    def _settle(self, n: int, side: str, order: Order) -> Order | None:
        self.db.journal_order(order, status=order.status if order.filled else "failed")
        crash_point(f"{side}:recorded")
        return self._move(n, order, self.summary.bought if side == "buy" else self.summary.sold)

    def _move(self, n: int, order: Order, bucket: list[str]) -> Order | None:
        """The thread follows its recorded order: filled, it moves on; else it is freed."""
        if order.filled <= 0:
            self.store.abort(n, order.ref)
            self._note(f"thread {n}: {order.side} order {order.ref} filled nothing ({order.status})", bucket)
            return None
        if order.side == "buy":
            self.store.activate(n, order.ref, value=order.cost + order.fee, volume=order.filled,
                                buy_price=order.price, at=int(order.closed_at or self.platform.now()))
            self._note(f"thread {n}: bought {order.filled} {_base(order.market)} at {order.price} "
                       f"for {order.cost + order.fee} {self.cfg.quote} (order {order.ref})", bucket)
        else:
            self.store.release(n, order.ref, sell_price=order.price)
            self._note(f"thread {n}: sold {order.filled} {_base(order.market)} at {order.price} "
                       f"for {order.cost - order.fee} {self.cfg.quote} (order {order.ref})", bucket)
        crash_point(f"{order.side}:moved")
        return order

    def _note(self, text: str, bucket: list[str]) -> None:
        log.info("%s", text)
        bucket.append(text)


def new_ref() -> str:
    """A unique client order reference, accepted by Kraken (cl_ord_id) and Bittrex (clientOrderId)."""
    return str(uuid.uuid4())


def _base(market: str) -> str:
    return market.split("/")[0]


def _order_from_row(row: Any) -> Order:
    """The journal's record of a settled order, as the exchange reported it."""
    from includes.platforms.base import Order

    zero = ZERO
    return Order(ref=row["ref"], order_id=row["order_id"] or "", market=row["market"], side=row["side"],
                 status=row["status"], volume=row["volume"] or row["filled"] or zero,
                 filled=row["filled"] or zero, price=row["price"] or zero, cost=row["cost"] or zero,
                 fee=row["fee"] or zero)


def run_agent(cfg: Config, force_dry_run: bool = False) -> RunSummary | None:
    """One cron run: the stop file, the mode, the lock, then the agent.  None when skipped."""
    from includes.platforms import make_platform
    from includes.platforms.paper import PaperPlatform
    from includes.runtime import dry_run_requested, stop_requested
    from includes.storage import open_market_db, open_state

    if stop_requested(cfg):
        log.info("stop file present: sleeping")
        return None
    mode = "dry" if force_dry_run or dry_run_requested(cfg) else "live"
    platform = make_platform(cfg, live=mode == "live")
    exchange = platform.name  # the venue's name, under which get_api_data stored its candles
    if mode == "dry":
        ledger = cfg.path(cfg.paths.tmp) / f"paper-{cfg.storage.namespace}.json"
        platform = PaperPlatform(platform, ledger, cfg.trading.dry_run_balance)
    store = open_state(cfg, mode)
    db = open_market_db(cfg)
    try:
        lock = store.lock("agent", ttl_seconds=LOCK_TTL)
        if not lock.acquire():
            log.info("another agent run holds the %s lock of %s: exiting", mode, store.where)
            return None
        try:
            agent = Agent(cfg.trading, platform, store, db, mode=mode, exchange=exchange,
                          candle_interval=cfg.market_data.candle_interval, name=cfg.storage.namespace,
                          stop_requested=lambda: stop_requested(cfg))
            summary = agent.run()
        finally:
            lock.release()
    finally:
        store.close()
        db.close()
    log.info("%s run done: budget %s %s, %d bought, %d sold, %d settled from earlier runs", mode,
             summary.budget, cfg.trading.quote, len(summary.bought), len(summary.sold), len(summary.recovered))
    return summary
