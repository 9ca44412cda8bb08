"""Every order journaled, sent, settled, and its thread moved: the Agent's order sequence and
its crash recovery, a mixin apart from the decisions (includes/agent.py) that use it.

A run first settles whatever a crashed run left in flight, by asking the
exchange about each reference; every order it sends gets its journal row
first, and its thread follows only what its final fills say.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from includes.errors import AuthenticationError, ExchangeError, MarketUnavailable, OrderTooSmall, UnknownMarket
from includes.model import OPEN
from includes.money import ZERO
from includes.storage.journal import value_left
from includes.storage.state import ACTIVE, BUYING, SELLING, WAITING, Thread

if TYPE_CHECKING:
    from includes.agent import RunSummary
    from includes.config import TradingConfig
    from includes.model import Order
    from includes.platforms.base import Platform
    from includes.storage.marketdb import MarketDB
    from includes.storage.memory import MemoryMarketDB
    from includes.storage.state import StateStore

log = logging.getLogger("includes.agent")   # the agent's log lines, wherever their code lives

ATTENTION_RUNS = 3  # runs that found an order still open or unseen before the owner is told on stderr
NOT_SENDABLE = (OrderTooSmall, MarketUnavailable, UnknownMarket)  # local pre-checks: no journal row


class Settlement:
    """The Agent's orders and their recovery; the Agent supplies the attributes below."""

    cfg: TradingConfig
    name: str
    platform: Platform
    store: StateStore
    db: MarketDB | MemoryMarketDB   # the backtest's journal is in memory
    mode: str
    exchange: str
    summary: RunSummary
    checkpoint: Callable[[str], None]

    # --- crash recovery ---------------------------------------------------------------
    def recover(self) -> None:
        """Settle what earlier runs left in flight, before anything else.

        First the journal's orders without a final result, asked of the exchange by
        their reference; then the threads caught between two states, finished or
        undone as the journal says; then every thread checked against what its
        orders' final fills leave it holding.
        """
        for row in self.db.open_intents(self.mode, agent=self.name):
            self.settle_row(row)
        for thread in self.store.threads():
            if thread.state not in (BUYING, SELLING):
                continue
            its = self.db.journal_row(thread.order_ref)
            if its is None:  # claimed, then died before the journal row: nothing was sent
                self.store.abort(thread.n, thread.order_ref)
                self._note(f"thread {thread.n}: claim {thread.order_ref} had no journal row; undone",
                           self.summary.recovered)
            elif its["status"] not in OPEN:
                self._follow(thread.n, _order_from_row(its), self.summary.recovered)
        self.resync_positions()

    def settle_row(self, row: dict[str, Any]) -> None:
        """Ask the exchange about one open journal row and record its answer.

        "Not found" proves the order was never placed only once it is older, on the
        exchange's clock, than the time an order takes to show (the sender is dead: we
        hold the lock).  An order still open keeps its thread busy; after a few runs
        the owner is told.
        """
        ref, n = row["ref"], row["thread"]
        try:
            order = self.platform.get_order(ref, row["order_id"] or "")
        except ExchangeError as exc:
            if isinstance(exc, AuthenticationError):
                raise
            self._doubt(row, f"could not be asked about ({exc})")
            return
        if order is None and row["order_id"]:   # the exchange gave it an id: placed, whatever a lookup says
            self._doubt(row, f"placed as {row['order_id']} but not found by its reference")
        elif order is None:
            age = self.platform.clock() - float(row["intent_at"])  # both on the exchange's clock
            # A negative age is a clock that moved back: runs minutes apart bound it instead.
            if age >= self.platform.order_visibility_delay or (age < 0 and row["lookups"] >= ATTENTION_RUNS):
                self.db.journal_result(ref, status="failed",
                                       error=f"never placed: not found by its reference {age:.0f} s after it was sent")
                self._note(f"thread {n}: order {ref} was never placed", self.summary.recovered)
            else:
                self._doubt(row, f"not visible yet ({max(age, 0):.0f} s old)")
        elif order.done:
            self.db.journal_order(order)
            self._note(f"thread {n}: order {ref} settled from the exchange ({order.status}, "
                       f"{order.filled} filled)", self.summary.recovered)
        else:
            self.db.journal_order(order)
            self._doubt(row, f"still {order.status} ({order.filled} of {order.volume} filled)")

    def _doubt(self, row: dict[str, Any], why: str) -> None:
        """An order left open for the next run; the owner hears of it after a few runs."""
        runs = self.db.journal_looked_up(row["ref"])
        text = f"thread {row['thread']}: {row['side']} order {row['ref']} ({row['market']}) {why}"
        self.summary.in_doubt.append(text)
        if runs >= ATTENTION_RUNS:
            text += f"; unsettled after {runs} runs: check it on {self.exchange}"
            self.summary.attention.append(text)
        log.warning("%s; left for the next run", text)

    def resync_positions(self) -> None:
        """Every thread not in flight holds what its orders' final fills leave it: rebuilt when the
        state store lost it, corrected when a fill was settled after the thread moved."""
        positions = self.db.open_positions(self.mode, agent=self.name)
        for thread in self.store.threads():
            if thread.state in (BUYING, SELLING):
                continue
            held = positions.get(thread.n)
            if held is not None and self.is_dust(held.market, held.volume):
                if thread.state == ACTIVE:
                    self.store.put_thread(Thread(n=thread.n, state=WAITING, lastsellvalue=thread.lastsellvalue,
                                                 updated=thread.updated))
                    self._note(self.dust_note(thread.n, held.market, held.volume), self.summary.recovered)
                continue
            if held is None:
                if thread.state == ACTIVE and self.db.journal_row(thread.order_ref) is not None:
                    self.store.put_thread(Thread(n=thread.n, state=WAITING, lastsellvalue=thread.lastsellvalue,
                                                 updated=thread.updated))
                    self._note(f"thread {thread.n}: its orders left it nothing; freed", self.summary.recovered)
                continue
            currency = _base(held.market)
            if (thread.state, thread.currency, thread.volume, thread.value) == (ACTIVE, currency, held.volume,
                                                                                 held.value):
                continue
            self.store.put_thread(Thread(n=thread.n, state=ACTIVE, currency=currency, value=held.value,
                                         volume=held.volume, lastbuyvalue=held.price,
                                         lastsellvalue=thread.lastsellvalue, order_ref=held.ref,
                                         updated=int(held.at)))
            self._note(f"thread {thread.n}: set from the journal ({held.volume} {currency}, order {held.ref})",
                       self.summary.recovered)
        for n, held in positions.items():
            if self.store.get_thread(n) is None and not self.is_dust(held.market, held.volume):
                self.store.put_thread(Thread(n=n, state=ACTIVE, currency=_base(held.market), value=held.value,
                                             volume=held.volume, lastbuyvalue=held.price, order_ref=held.ref,
                                             updated=int(held.at)))
                self._note(f"thread {n}: rebuilt from the journal ({held.market}, order {held.ref})",
                           self.summary.recovered)

    # --- the order sequence -----------------------------------------------------------
    def _send(self, n: int, side: str, ref: str, send: Callable[[], Order]) -> Order | None:
        """Send, record what the exchange says, move the thread as its order's final fills say.

        Only an explicit refusal frees the thread (Platform's rule); an order in doubt,
        pending or open keeps it buying or selling until a lookup settles it.
        """
        try:
            order = send()
        except ExchangeError as exc:
            if not exc.refused:
                self.db.journal_result(ref, status="unknown", error=str(exc))
                self._doubt(self.db.journal_row(ref) or {"ref": ref, "thread": n, "side": side, "market": "?"},
                            f"in doubt: {exc}")
                return None
            self.db.journal_result(ref, status="failed", error=str(exc))
            self.store.abort(n, ref)
            log.warning("thread %d: %s order refused: %s", n, side, exc)
            self.summary.refused.append(f"thread {n}: {side} order {ref} refused: {exc}")
            if isinstance(exc, AuthenticationError):
                raise  # a refused key refuses every order: the run stops, with one line
            return None
        self.checkpoint(f"{side}:sent")
        self.db.journal_order(order)
        self.checkpoint(f"{side}:recorded")
        if not order.done:
            self._doubt(self.db.journal_row(ref) or {"ref": ref, "thread": n, "side": side, "market": order.market},
                        f"still {order.status} ({order.filled} of {order.volume} filled)")
            return order
        return self._follow(n, order, self.summary.bought if side == "buy" else self.summary.sold)

    def _follow(self, n: int, order: Order, bucket: list[str]) -> Order | None:
        """The thread follows its final order: what it filled moves, what it did not stays.

        A buy that filled nothing frees the thread; one that filled some activates it
        with what filled.  A sell that filled nothing keeps the thread active; one that
        filled part keeps the rest active, its value in proportion; one that filled all
        frees it.  A thread left holding dust (too little to sell ever) is freed."""
        base = _base(order.market)
        if order.filled <= 0:
            self.store.abort(n, order.ref)
            self._note(f"thread {n}: {order.side} order {order.ref} filled nothing ({order.status})", bucket)
            return None
        thread = self.store.get_thread(n)
        held = order.filled if order.side == "buy" else (thread.volume - order.filled if thread else ZERO)
        if self.is_dust(order.market, held):
            if order.side == "buy":
                self.store.abort(n, order.ref)
            else:
                self.store.release(n, order.ref, sell_price=order.price)
            self._note(f"thread {n}: {order.side} order {order.ref} filled {order.filled} {base} at {order.price}; "
                       + self.dust_note(n, order.market, held), bucket)
        elif order.side == "buy":
            self.store.activate(n, order.ref, value=order.cost + order.fee, volume=order.filled,
                                buy_price=order.price, at=int(order.closed_at or self.platform.now()))
            self._note(f"thread {n}: bought {order.filled} {base} at {order.price} "
                       f"for {order.cost + order.fee} {self.cfg.quote} (order {order.ref})", bucket)
        elif held > 0 and thread is not None:
            self.store.sell_part(n, order.ref, value=value_left(thread.value, thread.volume, held), volume=held,
                                 sell_price=order.price)
            self._note(f"thread {n}: sold {order.filled} of {thread.volume} {base} at {order.price} "
                       f"for {order.cost - order.fee} {self.cfg.quote}; {held} {base} stay held "
                       f"(order {order.ref}, {order.status})", bucket)
        else:
            self.store.release(n, order.ref, sell_price=order.price)
            self._note(f"thread {n}: sold {order.filled} {base} at {order.price} "
                       f"for {order.cost - order.fee} {self.cfg.quote} (order {order.ref})", bucket)
        self.checkpoint(f"{order.side}:moved")
        return order

    def is_dust(self, symbol: str, volume: Decimal) -> bool:
        """Some of the base, but too little to sell ever (Market.is_dust): a thread holding only
        that would keep its slot forever, so it is freed and the coins stay in the account."""
        if volume <= 0:
            return False
        try:
            return self.platform.market(_base(symbol)).is_dust(volume)
        except (*NOT_SENDABLE, ExchangeError) as exc:
            log.warning("%s: no market rules to tell dust (%s); the thread keeps its %s", symbol, exc, volume)
            return False

    def dust_note(self, n: int, symbol: str, volume: Decimal) -> str:
        market = self.platform.market(_base(symbol))
        return (f"{volume} {market.base} is below {self.exchange}'s minimum order of {market.min_volume} "
                f"{market.base}: it stays in the account as dust and thread {n} is freed")

    def _note(self, text: str, bucket: list[str]) -> None:
        log.info("%s", text)
        bucket.append(text)



def _base(market: str) -> str:
    return market.split("/")[0]


def _order_from_row(row: Any) -> Order:
    """The journal's record of a settled order, as the exchange reported it."""
    from includes.model import Order

    zero = ZERO
    return Order(ref=row["ref"], order_id=row["order_id"] or "", market=row["market"], side=row["side"],
                 status=row["status"], volume=row["volume"] or row["filled"] or zero,
                 filled=row["filled"] or zero, price=row["price"] or zero, cost=row["cost"] or zero,
                 fee=row["fee"] or zero, closed_at=float(row["result_at"]) if row["result_at"] else None)
