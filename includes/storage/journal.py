"""What a thread holds, as its settled orders say: one rule for every journal.

The market DB and the backtest's memory journal both answer `open_positions`
with this fold, and the agent re-syncs its threads with it: a thread's volume
and value always equal its orders' final fills.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from includes.model import DEFAULT_AGENT, FINAL, MODES, OPEN, SIDES

if TYPE_CHECKING:
    from includes.model import Order

INTENT_STEP = 0.001  # seconds between two intents of one agent, at least: their order is the journal's


@dataclass(frozen=True, slots=True)
class Position:
    """What thread `thread` holds: `volume` of the market's base bought for `value` (quote, fees
    included) at `price`, by the buy order `ref`, settled at `at`."""
    thread: int
    market: str
    volume: Decimal
    value: Decimal
    price: Decimal
    ref: str
    at: float


def is_fill(row: Mapping[str, Any]) -> bool:
    """A settled order that moved coins."""
    return row["status"] in FINAL and bool(row["filled"])


@dataclass(frozen=True, slots=True)
class Sale:
    """A settled sell fill of thread `thread`: `pnl` is its proceeds net of its fee less what the
    volume sold cost (its share of the position's value, the buy's fee included)."""
    thread: int
    market: str
    at: float
    pnl: Decimal
    fee: Decimal
    ref: str


def positions(rows: Iterable[Mapping[str, Any]]) -> dict[int, Position]:
    """Per thread, what its settled fills leave it holding, from journal rows in intent order."""
    return fold(rows)[0]


def fold(rows: Iterable[Mapping[str, Any]], held: Mapping[int, Position] | None = None
         ) -> tuple[dict[int, Position], list[Sale]]:
    """The journal rows, in intent order, folded into what each thread holds and what each sale made:
    a thread holds its last filled buy, less the fills of the sells after it (its value in
    proportion); a thread whose sells took it all holds nothing.  `held`: what the rows before
    these left (MarketDB.open_positions(before=...)), so that a window of the journal folds alone."""
    sales: list[Sale] = []
    return _fold(rows, held, on_sale=sales.append), sales


def left_as_dust(rows: Iterable[Mapping[str, Any]]) -> list[Position]:
    """What threads held when they bought again: only dust, too little to sell, which the agent
    frees a thread from (Agent.is_dust); the coins stay in the account."""
    dust: list[Position] = []
    _fold(rows, on_dust=dust.append)
    return dust


def _fold(rows: Iterable[Mapping[str, Any]], held: Mapping[int, Position] | None = None,
          on_sale: Callable[[Sale], None] | None = None, on_dust: Callable[[Position], None] | None = None
          ) -> dict[int, Position]:
    """The fold itself, keeping nothing but what each thread holds: each sale and each position
    left as dust goes to its callback, so that a long journal folds in constant memory."""
    held = dict(held or {})
    for row in rows:
        n = row["thread"]
        if n is None or not is_fill(row):
            continue
        filled, at = Decimal(row["filled"]), float(row["result_at"] or row["intent_at"])
        cost, fee = Decimal(row["cost"] or 0), Decimal(row["fee"] or 0)
        if row["side"] == "buy":
            if n in held and on_dust is not None:
                on_dust(held[n])
            held[n] = Position(n, row["market"], filled, cost + fee, Decimal(row["price"] or 0), row["ref"], at)
        elif n in held:
            before = held[n]
            left = before.volume - filled
            if left <= 0:
                del held[n]
                kept = Decimal(0)
            else:
                kept = value_left(before.value, before.volume, left)
                held[n] = Position(n, before.market, left, kept, before.price, before.ref, before.at)
            if on_sale is not None:
                on_sale(Sale(n, before.market, at, cost - fee - (before.value - kept), fee, row["ref"]))
    return held


def value_left(value: Decimal, volume: Decimal, left: Decimal) -> Decimal:
    """What `left` of a position of `volume` bought for `value` cost: its share, to 1e-8."""
    return (value * left / volume).quantize(Decimal("1e-8"), rounding=ROUND_HALF_EVEN)



@dataclass(frozen=True, slots=True)
class FillTotals:
    """What a journal's fills add up to (MarketDB.fill_totals): what the threads' buys spent
    (cost + fee) and their sells brought (cost - fee), the fees of all `fills` fills, and the
    positions fold over them: what each thread holds after them and what their sales realised."""
    bought: Decimal
    sold: Decimal
    fees: Decimal
    fills: int
    held: dict[int, Position]
    realised: Decimal


def totals(rows: Iterable[Mapping[str, Any]]) -> FillTotals:
    """FillTotals of the journal rows, in intent order, in one pass: the rows need not be kept."""
    bought = sold = fees = realised = Decimal(0)
    count = 0
    held: dict[int, Position] = {}

    def fills() -> Iterator[Mapping[str, Any]]:
        nonlocal bought, sold, fees, count
        for row in rows:
            if not is_fill(row):
                continue
            count += 1
            cost, fee = Decimal(row["cost"] or 0), Decimal(row["fee"] or 0)
            fees += fee
            if row["thread"] is not None:
                if row["side"] == "buy":
                    bought += cost + fee
                else:
                    sold += cost - fee
            yield row

    def realise(sale: Sale) -> None:
        nonlocal realised
        realised += sale.pnl

    held = _fold(fills(), on_sale=realise)
    return FillTotals(bought, sold, fees, count, held, realised)


# --- the journal's interface and row checks ----------------------------------------------------

@runtime_checkable
class Journal(Protocol):
    """The order journal as the agent uses it: MarketDB (the `orders` table) and the backtest's
    MemoryMarketDB both are one, so a replay runs the agent's own recovery and bookkeeping.
    Rows are dicts of the `orders` columns; `mode` is live or dry, `agent` the storage.namespace.
    journal_intent and journal_result raise ValueError for a mode, side or status not known
    (check_intent, check_result) and StorageError for a ref journaled twice or not at all."""

    def journal_intent(self, ref: str, *, mode: str, exchange: str, market: str, side: str,
                       thread: int | None = None, amount_quote: Decimal | None = None,
                       volume: Decimal | None = None, at: float | None = None,
                       agent: str = DEFAULT_AGENT) -> None: ...

    def journal_result(self, ref: str, status: str, *, order_id: str | None = None,
                       filled: Decimal | None = None, price: Decimal | None = None, cost: Decimal | None = None,
                       fee: Decimal | None = None, error: str | None = None, at: float | None = None) -> None: ...

    def journal_looked_up(self, ref: str) -> int: ...

    def journal_order(self, order: Order, status: str | None = None) -> None: ...

    def journal_row(self, ref: str) -> dict[str, Any] | None: ...

    def journal(self, mode: str, since: int | None = None, agent: str = DEFAULT_AGENT) -> list[dict[str, Any]]: ...

    def open_intents(self, mode: str, agent: str = DEFAULT_AGENT) -> list[dict[str, Any]]: ...

    def open_positions(self, mode: str, agent: str = DEFAULT_AGENT) -> dict[int, Position]: ...


def check_intent(mode: str, side: str) -> None:
    """An intent's mode and side, before anything is written.  Raises ValueError."""
    _check(mode, MODES, "mode")
    _check(side, SIDES, "side")


def check_result(status: str) -> None:
    """A result's status, before anything is written.  Raises ValueError."""
    _check(status, OPEN + FINAL, "order status")


def _check(value: str, allowed: Iterable[str], what: str) -> None:
    if value not in allowed:
        raise ValueError(f"{what} {value!r} is not one of {', '.join(allowed)}")
