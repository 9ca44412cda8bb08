"""The one interface every exchange goes through.

Names inside the project are common currency codes ("BTC", "EUR") and markets
are "BASE/QUOTE" ("BTC/EUR"); each implementation maps them to the venue's own
names (Kraken's XXBTZEUR, Bittrex's BTC-EUR) and back.  Money is Decimal.
"""
from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import TypeVar

from includes.errors import ExchangeError, OrderStateUnknown, UnknownMarket
from includes.model import MARKET_RE, VENUE_WORD, AccountInfo, Candle, Market, Order, Ticker, split_market
from includes.money import ZERO, round_down, round_up
from includes.platforms.transport import RetryPolicy, refused_at_the_door, temporary
from includes.trends import price_at, trends

T = TypeVar("T")
log = logging.getLogger(__name__)


def _usable(venue: str, markets: Iterable[Market]) -> list[Market]:
    """The markets whose names the code, the market DB and the files can hold; the others
    are data from the venue, not schema: skipped, in one warning line a run."""
    usable, skipped = [], []
    for m in markets:
        if (MARKET_RE.match(m.symbol) and m.symbol == f"{m.base}/{m.quote}"
                and VENUE_WORD.fullmatch(m.exchange_symbol) and " " not in m.exchange_symbol
                and VENUE_WORD.fullmatch(m.status)):
            usable.append(m)
        else:
            skipped.append(ascii(m.symbol[:40]) + ("..." if len(m.symbol) > 40 else ""))
    if skipped:
        log.warning("%s: %d market%s skipped, named other than BASE/QUOTE of A-Z and 0-9 (16 at most each) "
                    "or with a malformed id or status: %s%s", venue, len(skipped), "s" if len(skipped) > 1 else "",
                    ", ".join(skipped[:5]), f" and {len(skipped) - 5} more" if len(skipped) > 5 else "")
    return usable


class Platform(ABC):
    """An exchange, bound to one quote currency (the config's `trading.quote`).

    The order rule, for every venue, enforced once in `place_order`: once a request
    that may place an order has left the process, only an explicit answer from the
    exchange about it makes it "not placed".  An explicit refusal (an ExchangeError
    whose `refused` is True: insufficient funds, invalid arguments, a market in
    cancel_only...) is the only "failed".  Every other outcome (a timeout, a 5xx or
    HTML page, a malformed reply, "busy", a lookup or a confirmation that fails) is
    *unknown*: the order is asked for by its reference, a few times now and by every
    later run, until the exchange reports it final.  A venue implements `_submit`
    (one request, its errors mapped, `refused` set only where its reply says so)
    and `get_order`; it never decides an order's fate itself.

    "Raises as a venue call" (includes/errors.py): TemporaryError (network, 5xx, a malformed
    reply: retries spent, a later run may do), RateLimited, InvalidNonce (another program signs
    with the key), AuthenticationError (no key, or refused), LockedOut (stop the run),
    PermanentError (refused: repeating will not help), UnknownMarket (not the venue's, or not
    in a reply); StorageError when the key's nonce ledger (keygate.py) fails.
    """

    name: str = "platform"
    # Seconds after which an order sent is surely visible when asked for by its
    # reference: "not found" before then proves nothing.
    order_visibility_delay: float = 0.0
    # The most candles the venue returns for one market and interval, however old
    # `since` is (Kraken: 720); None when it pages through any history.
    max_candles: int | None = None

    def __init__(self, quote: str, fee_percent: Decimal) -> None:
        self.quote = quote
        self.fee_percent = fee_percent
        self._markets: dict[str, Market] | None = None
        self._every_market = False  # _markets holds every market, not only some the run asked for

    # --- what each venue implements -------------------------------------------------
    @abstractmethod
    def list_markets(self) -> list[Market]:
        """Every spot market of the venue, with its status.  Raises as a venue call."""

    def list_some_markets(self, symbols: set[str]) -> list[Market] | None:
        """The markets of `symbols` alone, where the venue can list them so (a smaller
        reply than every market); None where it cannot, or did not know one.  Raises as a venue call."""
        return None

    @abstractmethod
    def get_tickers(self, markets: Iterable[str]) -> dict[str, Ticker]:
        """Tickers of `markets` ("BTC/EUR", ...) in as few requests as the venue allows; raises as a
        venue call (TemporaryError: a ticker missing or malformed)."""

    @abstractmethod
    def get_candles(self, market: str, interval: int, since: int | None = None) -> list[Candle]:
        """Candles of `interval` minutes opening at or after `since`, oldest first.

        The last one may still be open (`closed=False`): store it, then
        overwrite it when it comes again.  Raises as a venue call; PermanentError
        for an interval the venue does not offer, TemporaryError for a malformed row.
        """

    @abstractmethod
    def _submit(self, market: Market, side: str, volume: Decimal, price: Decimal, ref: str) -> Order:
        """Send one market order, once, tagged with `ref`: the order as its reply tells it (at
        least its id; "pending" with nothing filled when the reply says no more).  Raises as a
        venue call, with `refused` set only for an explicit refusal (see the class docstring):
        place_order alone reads it.  Never repeated here: a lost reply may hide a placed order."""

    @abstractmethod
    def get_order(self, ref: str, order_id: str = "") -> Order | None:
        """The order tagged with `ref` (the venue's `order_id` when known: a cheaper lookup),
        or None when the venue has none, yet.  Raises as a venue call: the order may exist."""

    @abstractmethod
    def get_order_history(self) -> list[Order]:
        """Closed orders, newest first.  Raises as a venue call."""

    @abstractmethod
    def get_account_info(self) -> AccountInfo:
        """Free balances by currency.  Raises as a venue call."""

    # --- shared by all venues -------------------------------------------------------
    def canonical(self, currency: str) -> str:
        """Our name for a venue's spelling of a currency (Kraken's XBT is BTC)."""
        return currency

    def bid_ask(self, market: Market) -> tuple[Decimal, Decimal]:
        """The best bid and ask of `market` now; raises as get_tickers."""
        ticker = self.get_tickers([market.symbol])[market.symbol]
        return ticker.bid, ticker.ask

    def prepare_buy(self, amount_quote: Decimal, currency: str, ask: Decimal) -> tuple[Market, Decimal]:
        """The market and volume of a market buy of at most `amount_quote`, fee included, at `ask`
        (the price the caller read seconds ago).  Raises OrderTooSmall, MarketUnavailable or
        UnknownMarket for an order the venue would refuse, before it is journaled; and as market()."""
        market = self.market(currency)
        return market, self.buy_volume(market, amount_quote, ask)

    def prepare_sell(self, volume: Decimal, currency: str, bid: Decimal) -> tuple[Market, Decimal]:
        """The market and volume (rounded down to the pair's decimals) of a market sell at `bid`;
        raises as prepare_buy does."""
        market = self.market(currency)
        volume = round_down(volume, market.volume_decimals)
        market.check_order(volume, bid)
        return market, volume

    retries: int = 0
    sleep: Callable[[float], None] = staticmethod(time.sleep)
    # After sending, the order is asked for by its reference up to `confirm_polls` times,
    # `confirm_wait` seconds apart, until it is final: a short bounded poll in the run.
    confirm_polls: int = 3
    confirm_wait: float = 1.0

    def retrying(self, call: Callable[[], T], *, retry: bool = True,
                 repeat: Callable[[ExchangeError], bool] = temporary, what: str = "") -> T:
        """`call` under RetryPolicy(self.retries, self.sleep).run (transport.py); `sleep` is read
        at each call, so that a test may replace it on a built platform."""
        return RetryPolicy(self.retries, self.sleep).run(call, retry=retry, repeat=repeat, what=what)

    def buy(self, amount_quote: Decimal, currency: str, ref: str, ask: Decimal | None = None) -> Order:
        """Market-buy `currency` for at most `amount_quote`, the fee included, tagged with our `ref`
        (`ask`: the price read seconds ago, None: read now).  Raises as bid_ask, prepare_buy, place_order."""
        if ask is None:
            ask = self.bid_ask(self.market(currency))[1]
        market, volume = self.prepare_buy(amount_quote, currency, ask)
        return self.place_order(market, "buy", volume, ask, ref)

    def sell(self, volume: Decimal, currency: str, ref: str, bid: Decimal | None = None) -> Order:
        """Market-sell `volume` of `currency` tagged with `ref`; raises as bid_ask, prepare_sell, place_order."""
        if bid is None:
            bid = self.bid_ask(self.market(currency))[0]
        market, volume = self.prepare_sell(volume, currency, bid)
        return self.place_order(market, "sell", volume, bid, ref)

    def place_order(self, market: Market, side: str, volume: Decimal, price: Decimal, ref: str) -> Order:
        """Send a market order of `volume` (prepared: rounded and checked), tagged with our
        `ref`, and report what the exchange says of it: final, or still pending or open.
        `price` is the fill expected (the ask or bid read), for venues that simulate fills.

        The class docstring's rule, carried out:
        - refused at the door (a stale nonce, a rate limit): nothing reached the book,
          it is sent again, as the same `ref`;
        - any other explicit refusal (ExchangeError.refused: insufficient funds,
          invalid arguments, market closed...) is raised: nothing was placed;
        - every other outcome (a timeout, a 5xx page, a malformed reply, "busy", a
          lookup or confirmation that fails) is settled by asking for `ref`, a few
          times; an order not final by then is returned as it was last seen.
        Raises: ExchangeError with `refused` True (nothing placed: InsufficientFunds,
        MarketUnavailable, PermanentError, AuthenticationError, LockedOut; RateLimited or
        InvalidNonce once the resends are spent), or OrderStateUnknown (it may be placed:
        the next run asks again); StorageError when the key's ledger fails before sending.
        """
        doubt: ExchangeError | None = None
        order: Order | None = None
        try:
            order = self.retrying(lambda: self._submit(market, side, volume, price, ref),
                                  repeat=refused_at_the_door, what=f"order {ref} refused at the door, ")
        except ExchangeError as exc:
            if exc.refused:
                raise
            log.warning("%s: looking order %s up before anything else", exc, ref)
            doubt = exc
        return self.confirm(ref, market.symbol, order, doubt)

    def confirm(self, ref: str, symbol: str, order: Order | None, doubt: ExchangeError | None) -> Order:
        """`order` as the exchange reports it now, asked for by `ref` until final (a few times).
        Raises OrderStateUnknown when no lookup found it (a lookup's error is logged, not raised)."""
        polls = 0
        while order is None or not order.done:
            if polls == self.confirm_polls:
                break
            if polls:
                self.sleep(self.confirm_wait)
            polls += 1
            try:
                found = self.get_order(ref, order.order_id if order is not None else "")
            except ExchangeError as exc:
                log.warning("%s: order %s not confirmed yet", exc, ref)
                doubt = exc
                continue
            if found is not None:
                order = found
        if order is None:
            cause = f"{doubt}" if doubt is not None else "not found by its reference yet"
            raise OrderStateUnknown(f"order {ref} for {symbol} may be placed: {cause}",
                                    exchange=self.name, method="place_order")
        return order

    def buy_volume(self, market: Market, amount_quote: Decimal, price: Decimal) -> Decimal:
        """The most a market buy may ask for so that its cost and fee, rounded as the venue rounds
        them, stay within `amount_quote` at `price`.  Raises OrderTooSmall or MarketUnavailable
        (Market.check_order) when even that is refused."""
        gross, decimals = 1 + self.fee_percent / 100, market.volume_decimals
        volume = market.order_volume(amount_quote / gross, price)
        over: Decimal | None = None     # the least volume known to cost too much
        while volume > 0 and (paid := sum(market.charges(volume, price, self.fee_percent))) > amount_quote:
            # rounding took it over by a hair: the lots that hair is worth less (at least one)
            over = volume
            volume -= max(Decimal(1).scaleb(-decimals), round_up((paid - amount_quote) / (price * gross), decimals))
        volume = max(volume, ZERO)
        if over is not None:            # the most that fits lies in [volume, over): halve the lots between
            lo, hi = int(volume.scaleb(decimals)), int(over.scaleb(decimals))
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if sum(market.charges(Decimal(mid).scaleb(-decimals), price, self.fee_percent)) <= amount_quote:
                    lo = mid
                else:
                    hi = mid
            volume = Decimal(lo).scaleb(-decimals)
        market.check_order(volume, price)
        return volume

    def least_order_cost(self, market: Market, price: Decimal) -> Decimal:
        """What the smallest buy `market` accepts costs at `price`, fee included: its minimum
        volume, or the lots its minimum cost needs, whichever is more."""
        step = Decimal(1).scaleb(-market.volume_decimals)
        volume = max(market.min_volume, round_up(market.min_cost / price, market.volume_decimals), step)
        cost, fee = market.charges(volume, price, self.fee_percent)
        return cost + fee

    def least_buy_cost(self, market: Market, amount_quote: Decimal, price: Decimal) -> Decimal:
        """A floor under what buy_volume's order for `amount_quote` costs, fee included, at any
        price up to `price`: it falls short of the amount by less than one lot step at that price
        and the rounding of its cost and fee (the backtest skips runs that could not buy by it)."""
        step, ulp = Decimal(1).scaleb(-market.volume_decimals), Decimal(1).scaleb(-market.cost_decimals)
        return amount_quote - step * price * (1 + self.fee_percent / 100) - 5 * ulp

    def clock(self) -> float:
        """The exchange's clock, in fractional seconds: a Pi has no real-time clock, and the
        journal dates orders on it, so their age is known whatever this host's clock says.  A
        venue that reads it raises as a venue call."""
        return time.time()

    def now(self) -> int:
        """The platform's clock in whole seconds; replay and simulators move it."""
        return int(self.clock())

    def markets(self, only: Iterable[str] | None = None) -> dict[str, Market]:
        """Markets by symbol, fetched once per run.

        `only`: the symbols the caller needs.  The first call may then list just those
        (list_some_markets); a later need beyond them lists every market, once.  Raises
        as a venue call.
        """
        wanted = None if only is None else set(only)
        if self._markets is not None and (self._every_market or (wanted is not None
                                                                  and wanted <= self._markets.keys())):
            return self._markets
        some = self.list_some_markets(wanted) if wanted and self._markets is None else None
        if some is not None:
            self._markets = {m.symbol: m for m in _usable(self.name, some)}
        else:
            self._markets, self._every_market = {m.symbol: m for m in _usable(self.name, self.list_markets())}, True
        return self._markets

    def market(self, currency: str) -> Market:
        """The market of `currency` against the quote currency.  Raises UnknownMarket when the
        venue has none (or the name is not one), and as markets()."""
        symbol = f"{self.canonical(currency)}/{self.quote}"
        split_market(symbol)
        try:
            return self.markets([symbol])[symbol]
        except KeyError:
            raise UnknownMarket(f"{self.name} has no market {symbol}") from None

    def get_price(self, currency: str, at: int | None = None) -> Decimal:
        """Last price now, or the close of the last candle closed by `at` (unix seconds).  Raises as
        market(), get_tickers and get_candles; UnknownMarket when no candle covers `at`."""
        symbol = self.market(currency).symbol
        if at is None:
            return self.get_tickers([symbol])[symbol].last
        interval = 60 if self.now() - at > 12 * 3600 else 1
        price = price_at(self.get_candles(symbol, interval, since=at - 2 * interval * 60), at, interval)
        if price is None:
            raise UnknownMarket(f"{symbol}: no price known at {at}")
        return price

    def get_average(self, currency: str) -> Decimal:
        """The 24 h volume-weighted average price (last price when the venue has none); raises as get_price."""
        symbol = self.market(currency).symbol
        ticker = self.get_tickers([symbol])[symbol]
        return ticker.vwap_24h if ticker.vwap_24h else ticker.last

    def get_trend(self, duration: int, currency: str) -> Decimal:
        """Percent change of the price over the last `duration` hours, from hourly candles.  Raises as
        market(), get_candles and get_tickers; UnknownMarket when the venue has too little history."""
        symbol = self.market(currency).symbol
        now = self.now()
        candles = self.get_candles(symbol, 60, since=now - (duration + 2) * 3600)
        found = trends(candles, now, [duration], 60, current=self.get_tickers([symbol])[symbol].last)
        if duration not in found:
            raise UnknownMarket(f"{symbol}: the exchange has no {duration} h of history")
        return found[duration]
