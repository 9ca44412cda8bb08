"""The project's value types and vocabulary, defined once.

Markets, tickers, candles, orders and balances as every layer passes them (the
exchanges make them, the stores keep them, the agent and the backtest read them),
and the words of the order journal.  Importing it costs nothing: no client, no I/O.
Names are common currency codes ("BTC", "EUR"), markets "BASE/QUOTE"; money is Decimal.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal

from includes.errors import MarketUnavailable, OrderTooSmall, UnknownMarket
from includes.money import ZERO, round_down, round_half_even, round_up

MODES = ("live", "dry")   # live orders, or the paper platform's (dry run): each has its own threads and journal
DEFAULT_AGENT = "crontrader"   # an order's agent: the storage.namespace that sent it (the config's default)
SIDES = ("buy", "sell")
OPEN = ("intent", "sent", "unknown", "pending", "open")   # the exchange must be asked about these
EXCHANGE_FINAL = ("closed", "canceled", "expired")        # an exchange order's statuses once nothing more fills
FINAL = (*EXCHANGE_FINAL, "failed")                       # failed: refused by the exchange, nothing placed

MARKET_RE = re.compile(r"^[A-Z0-9]{1,16}/[A-Z0-9]{1,16}$")
CURRENCY_RE = re.compile(r"^[A-Z0-9]{1,16}$")
VENUE_WORD = re.compile(r"[!-~][ -~]{0,31}")     # an exchange id or status: printable ASCII, on one line


def split_market(symbol: str) -> tuple[str, str]:
    """("BTC", "EUR") from "BTC/EUR"; anything else is refused by name."""
    if not isinstance(symbol, str) or not MARKET_RE.match(symbol):
        raise UnknownMarket(f"market {symbol!r} is not of the form BASE/QUOTE "
                            f"(upper-case letters and digits, e.g. BTC/EUR)")
    base, quote = symbol.split("/")
    return base, quote


@dataclass(frozen=True, slots=True)
class Market:
    symbol: str              # "BTC/EUR"
    base: str                # "BTC"
    quote: str               # "EUR"
    exchange_symbol: str     # the venue's id: "XXBTZEUR", "BTC-EUR"
    status: str              # the venue's raw status: "online", "cancel_only", "OFFLINE"
    available: bool          # accepts new market orders now
    price_decimals: int
    volume_decimals: int
    min_volume: Decimal      # in base currency
    min_cost: Decimal        # in quote currency
    notice: str = ""
    cost_decimals: int = 8   # decimals of a cost or fee, in quote currency

    def order_volume(self, amount_quote: Decimal, price: Decimal) -> Decimal:
        """Volume that `amount_quote` buys at `price`, rounded down to the pair's decimals."""
        if price <= 0:
            raise OrderTooSmall(f"{self.symbol}: no usable price ({price})")
        return round_down(amount_quote / price, self.volume_decimals)

    def charges(self, volume: Decimal, price: Decimal, fee_percent: Decimal) -> tuple[Decimal, Decimal]:
        """(cost, fee) of a fill of `volume` at `price`, as Kraken reckons them: the cost rounded
        half-even and the fee rounded up, both to cost_decimals."""
        cost = round_half_even(volume * price, self.cost_decimals)
        return cost, round_up(cost * fee_percent / 100, self.cost_decimals)

    def is_dust(self, volume: Decimal) -> bool:
        """Too little to be sold ever: below the pair's minimum volume once rounded down.  (A cost
        under the minimum cost is a matter of price, and prices move: that is not dust.)"""
        return round_down(volume, self.volume_decimals) < self.min_volume

    def check_order(self, volume: Decimal, price: Decimal) -> None:
        """Refuse, before anything is sent, an order the venue would refuse."""
        if not self.available:
            raise MarketUnavailable(f"{self.symbol} is not accepting orders (status {self.status})")
        if volume != round_down(volume, self.volume_decimals):
            raise OrderTooSmall(f"{self.symbol}: volume {volume} has more than "
                                f"{self.volume_decimals} decimals")
        if volume < self.min_volume:
            raise OrderTooSmall(f"{self.symbol}: volume {volume} {self.base} is below the "
                                f"minimum order of {self.min_volume} {self.base}")
        if volume * price < self.min_cost:
            raise OrderTooSmall(f"{self.symbol}: cost {volume * price:.8f} {self.quote} is below "
                                f"the minimum cost of {self.min_cost} {self.quote}")


@dataclass(frozen=True, slots=True)
class Ticker:
    market: str
    ts: int                  # unix seconds of the snapshot
    last: Decimal
    bid: Decimal
    ask: Decimal
    volume_24h: Decimal      # base currency
    vwap_24h: Decimal | None = None
    high_24h: Decimal | None = None
    low_24h: Decimal | None = None


@dataclass(frozen=True, slots=True)
class Candle:
    ts: int                  # open time, unix seconds, UTC
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    closed: bool = True      # False for the still-open last interval: overwrite it later


@dataclass(frozen=True, slots=True)
class Order:
    ref: str                 # our client reference, the journal's key
    order_id: str            # the venue's id
    market: str
    side: str                # "buy" | "sell"
    status: str              # "pending" | "open" | "closed" | "canceled" | "expired"
    volume: Decimal          # ordered, base currency
    filled: Decimal          # executed, base currency
    price: Decimal           # average fill price
    cost: Decimal            # quote currency, before the fee
    fee: Decimal             # quote currency
    opened_at: float = 0.0
    closed_at: float | None = None

    @property
    def done(self) -> bool:
        """No more fills will come."""
        return self.status in EXCHANGE_FINAL


@dataclass(frozen=True, slots=True)
class AccountInfo:
    balances: dict[str, Decimal] = field(default_factory=dict)

    def balance(self, currency: str) -> Decimal:
        return self.balances.get(currency, ZERO)


@dataclass(frozen=True, slots=True)
class GlobalMetrics:
    ts: int
    quote: str
    total_market_cap: Decimal
    total_volume_24h: Decimal
    btc_dominance: Decimal
    active_cryptocurrencies: int
