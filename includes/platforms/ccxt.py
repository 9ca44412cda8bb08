"""Any exchange that ccxt supports, behind the project's interface.

ccxt is an optional requirement (requirements-optional.txt).  This module is
imported only when the config says `exchange.name: ccxt`.  ccxt handles the
venue's wire format, signing and names.  As kraken.py does for krakenex, this
module adds what a cron job needs on top:

- ccxt's exceptions mapped to the project's;
- exact Decimal money: ccxt is told to hand numbers over as the venue's strings;
- retries only where a repeat is harmless;
- orders tagged with our reference, and looked up by it instead of being sent again;
- private calls serialised across processes (and hosts sharing Redis) by the
  KeyGate, so that nonces keep increasing.

The tests run it against the Kraken simulator, with the API URLs of ccxt's kraken
class pointed at loopback.  For other venues we have only ccxt's word.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import ccxt

from includes.errors import (
    AuthenticationError,
    ExchangeError,
    InsufficientFunds,
    InvalidNonce,
    LockedOut,
    MarketUnavailable,
    PermanentError,
    RateLimited,
    SettingError,
    TemporaryError,
    UnknownMarket,
    cause,
)
from includes.model import (
    CURRENCY_RE,
    EXCHANGE_FINAL,
    MARKET_RE,
    AccountInfo,
    Candle,
    Market,
    Order,
    Ticker,
    split_market,
)
from includes.money import ZERO, to_decimal
from includes.platforms.base import Platform
from includes.platforms.keygate import KeyGate, Ledger, ledger_for
from includes.platforms.kraken import VISIBILITY_MARGIN, deadline_seconds, rfc3339

log = logging.getLogger(__name__)

# Venues that keep only their newest candles, however old `since` is.
MAX_CANDLES = {"kraken": 720}
# Error strings that ccxt's own tables leave as a bare ExchangeError.
EXACT_ERRORS: dict[str, dict[str, type[ccxt.BaseError]]] = {
    "kraken": {"EAPI:Invalid signature": ccxt.AuthenticationError,
               "EService:Deadline elapsed": ccxt.ExchangeNotAvailable,
               "EGeneral:Too many requests": ccxt.RateLimitExceeded,
               "EGeneral:Temporary lockout": ccxt.AccountSuspended}}   # ccxt says DDoSProtection: no retry helps
# ... and those that carry a varying tail ("EService:Throttled: <unix time>").
BROAD_ERRORS: dict[str, dict[str, type[ccxt.BaseError]]] = {
    "kraken": {"EService:Throttled": ccxt.RateLimitExceeded}}

# Errors that are an explicit refusal by the venue: nothing was done.  A bare
# ccxt.ExchangeError (an error string ccxt does not know), a BadResponse (a malformed
# reply) and every NetworkError but these may come after an order reached the book.
REFUSALS: tuple[type[ccxt.BaseError], ...] = (
    ccxt.InvalidNonce, ccxt.DDoSProtection, ccxt.OnMaintenance, ccxt.AuthenticationError, ccxt.PermissionDenied,
    ccxt.AccountSuspended, ccxt.InsufficientFunds, ccxt.InvalidOrder, ccxt.BadRequest, ccxt.BadSymbol,
    ccxt.MarketClosed, ccxt.NotSupported)

# First match wins: subclasses before their bases.
_ERRORS: list[tuple[type[ccxt.BaseError], type[ExchangeError]]] = [
    (ccxt.InvalidNonce, InvalidNonce),
    (ccxt.RateLimitExceeded, RateLimited),
    (ccxt.DDoSProtection, RateLimited),
    (ccxt.OnMaintenance, MarketUnavailable),
    (ccxt.MarketClosed, MarketUnavailable),
    (ccxt.OperationFailed, TemporaryError),  # network trouble, timeouts, 5xx, unreadable replies
    (ccxt.BadResponse, TemporaryError),      # a reply that is not what the API sends (malformed, cut)
    (ccxt.AccountSuspended, LockedOut),
    (ccxt.AuthenticationError, AuthenticationError),
    (ccxt.BadSymbol, UnknownMarket),
    (ccxt.InsufficientFunds, InsufficientFunds),
    (ccxt.BaseError, PermanentError),
]


def error_class(exc: ccxt.BaseError) -> type[ExchangeError]:
    """The project's exception for one of ccxt's."""
    return next(ours for theirs, ours in _ERRORS if isinstance(exc, theirs))


def refused(exc: ccxt.BaseError) -> bool:
    return isinstance(exc, REFUSALS) and not isinstance(exc, ccxt.BadResponse)


def _json(path: str, reply: Any) -> Any:
    """A reply that is not JSON is an error.  ccxt hands an unparsable body over as its text,
    and its parsers then read it as empty: a malformed QueryOrders reply would become
    "order not found", a malformed OpenOrders reply "no open orders"."""
    if isinstance(reply, (str, bytes)):
        raise ccxt.BadResponse(f"{path}: reply is not JSON")
    return reply


def _gated(cls: type[ccxt.Exchange]) -> type[ccxt.Exchange]:
    """`cls` whose private calls take their nonce from a KeyGate, and hold its lock until answered,
    and whose replies must be JSON."""

    class Gated(cls):
        gate: KeyGate
        gate_nonce: int | None = None

        def fetch2(self, path: str, api: Any = "public", *args: Any, **kwargs: Any) -> Any:
            if (api[0] if isinstance(api, list) else api) == "public":
                return _json(path, super().fetch2(path, api, *args, **kwargs))
            with self.gate.call(0) as nonce:  # cost 0: ccxt paces the calls itself (rateLimit)
                self.gate_nonce = nonce
                try:
                    return _json(path, super().fetch2(path, api, *args, **kwargs))
                finally:
                    self.gate_nonce = None

        def nonce(self) -> int:
            return super().nonce() if self.gate_nonce is None else self.gate_nonce

    return Gated


class CcxtPlatform(Platform):
    """`exchange_id` is ccxt's name of the venue ("kraken", "bitvavo", ...)."""

    name = "ccxt"

    def __init__(self, *, exchange_id: str, quote: str = "EUR", fee_percent: Decimal = Decimal("0.26"),
                 api_url: str | None = None, key: str = "", secret: str = "", state_dir: Path,
                 rate_tier: str = "starter", calls_per_second: float = 1.0, timeout: float = 15,
                 retries: int = 3, ledger: Ledger | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        super().__init__(quote, fee_percent)
        if exchange_id not in ccxt.exchanges:
            raise SettingError("exchange.ccxt_id", f"ccxt {ccxt.__version__} has no exchange {exchange_id!r}")
        self.exchange_id = exchange_id
        self.exchange = _gated(getattr(ccxt, exchange_id))({
            "apiKey": key, "secret": secret, "timeout": int(timeout * 1000),
            "enableRateLimit": True, "rateLimit": 1000 / calls_per_second})
        self.exchange.number = str  # ccxt's switch: numbers stay the venue's strings, Decimal stays exact
        self.exchange.exceptions["exact"].update(EXACT_ERRORS.get(exchange_id, {}))
        self.exchange.exceptions["broad"].update(BROAD_ERRORS.get(exchange_id, {}))
        if api_url:
            self.exchange.urls["api"] = _repointed(self.exchange.urls["api"], api_url)
        self.exchange.gate = KeyGate(ledger or ledger_for("", exchange_id, key, state_dir), rate_tier, sleep)
        self.max_candles = MAX_CANDLES.get(exchange_id)
        self.retries = retries
        self.timeout = timeout
        self.order_visibility_delay = (deadline_seconds(timeout) + VISIBILITY_MARGIN if exchange_id == "kraken"
                                       else timeout + 5)
        self.sleep = sleep
        self._clock_offset: float | None = None

    # --- transport --------------------------------------------------------------------
    def _call(self, method: str, *args: Any, retry: bool = True, **kwargs: Any) -> Any:
        """One ccxt call, its error mapped, repeated on temporary failures only when `retry` allows it.
        (ccxt paces the calls itself: its rateLimit.)"""
        def once() -> Any:
            try:
                return getattr(self.exchange, method)(*args, **kwargs)
            except ccxt.BaseError as exc:
                raise error_class(exc)(cause(exc), exchange=self.name, method=method,
                                       code=type(exc).__name__, refused=refused(exc)) from None
        return self.retrying(once, retry=retry)

    # --- names ------------------------------------------------------------------------
    def canonical(self, currency: str) -> str:
        """ccxt's common code: Kraken's XBT is BTC."""
        return self.exchange.safe_currency_code(currency)

    def list_markets(self) -> list[Market]:
        """ccxt's spot markets named BASE/QUOTE; raises as a venue call."""
        markets = []
        for m in self._call("load_markets").values():
            if not m.get("spot") or not MARKET_RE.match(m.get("symbol") or ""):
                continue  # derivatives, and symbols that are not BASE/QUOTE
            try:
                markets.append(self._market(m))
            except (KeyError, TypeError, ValueError) as exc:
                log.warning("%s market %s skipped: malformed entry (%s)", self.exchange_id, m["symbol"], exc)
        return markets

    def _market(self, m: dict[str, Any]) -> Market:
        limits, precision = m.get("limits") or {}, m["precision"]
        active = m.get("active") is not False
        return Market(symbol=m["symbol"], base=m["base"], quote=m["quote"], exchange_symbol=m["id"],
                      status="active" if active else "inactive", available=active,
                      price_decimals=self._decimals(precision["price"]),
                      volume_decimals=self._decimals(precision["amount"]),
                      min_volume=to_decimal((limits.get("amount") or {}).get("min") or 0),
                      min_cost=to_decimal((limits.get("cost") or {}).get("min") or 0),
                      cost_decimals=self._decimals(precision["cost"]) if precision.get("cost") else 8)

    def _decimals(self, precision: str) -> int:
        """Decimals of a ccxt precision: a tick size ("0.001") or a count, as the venue's mode says."""
        value = to_decimal(precision, "precision")
        if self.exchange.precisionMode == ccxt.TICK_SIZE:
            return max(0, -int(value.normalize().as_tuple().exponent))  # finite: to_decimal refuses NaN
        return int(value)

    def _known(self, symbol: str) -> Market:
        try:
            return self.markets()[symbol]
        except KeyError:
            raise UnknownMarket(f"{self.name} has no market {symbol}") from None

    # --- market data ------------------------------------------------------------------
    def clock(self) -> float:
        """The venue's clock when ccxt can read it: a Pi may boot with a wrong one.  Raises as a
        venue call (fetch_time), the first time in a run."""
        if self._clock_offset is None:
            server = int(self._call("fetch_time")) / 1000 if self.exchange.has.get("fetchTime") else time.time()
            self._clock_offset = server - time.time()
        return time.time() + self._clock_offset

    def get_tickers(self, markets: Iterable[str]) -> dict[str, Ticker]:
        """fetch_tickers where the venue has it, else one fetch_ticker each.  Raises UnknownMarket for a
        market not listed, and as a venue call (TemporaryError: a ticker missing or malformed)."""
        symbols = [self._known(s).symbol for s in markets]
        if not symbols:
            return {}
        if self.exchange.has.get("fetchTickers"):
            raw = self._call("fetch_tickers", symbols)
        else:
            raw = {s: self._call("fetch_ticker", s) for s in symbols}
        ts = self.now()
        tickers = {}
        for symbol in symbols:
            t = raw.get(symbol)
            try:
                tickers[symbol] = Ticker(
                    market=symbol, ts=ts, last=to_decimal(t["last"]), bid=to_decimal(t["bid"]),
                    ask=to_decimal(t["ask"]), volume_24h=to_decimal(t["baseVolume"] or 0),
                    vwap_24h=_decimal(t.get("vwap")), high_24h=_decimal(t.get("high")), low_24h=_decimal(t.get("low")))
            except (KeyError, TypeError, ValueError) as exc:
                raise TemporaryError(f"no usable ticker for {symbol} ({exc})", exchange=self.name,
                                     method="fetch_tickers") from None
        return tickers

    def get_candles(self, market: str, interval: int, since: int | None = None) -> list[Candle]:
        """fetch_ohlcv of the venue's timeframe; raises as Platform.get_candles, and UnknownMarket."""
        timeframes = {self.exchange.parse_timeframe(tf) // 60: tf for tf in self.exchange.timeframes or {}}
        if interval not in timeframes:
            raise PermanentError(f"interval {interval} min is not one of {self.exchange_id}'s {tuple(timeframes)}",
                                 exchange=self.name, method="fetch_ohlcv")
        symbol = self._known(market).symbol
        rows = self._call("fetch_ohlcv", symbol, timeframes[interval], None if since is None else since * 1000)
        now, step = self.now(), interval * 60
        try:
            candles = [Candle(ts=int(r[0]) // 1000, open=to_decimal(r[1]), high=to_decimal(r[2]),
                              low=to_decimal(r[3]), close=to_decimal(r[4]), volume=to_decimal(r[5]),
                              closed=int(r[0]) // 1000 + step <= now) for r in rows]
        except (IndexError, TypeError, ValueError) as exc:
            raise TemporaryError(f"malformed candle for {market} ({exc})", exchange=self.name,
                                 method="fetch_ohlcv") from None
        return [c for c in candles if since is None or c.ts >= since]

    # --- account and orders -----------------------------------------------------------
    def get_account_info(self) -> AccountInfo:
        """fetch_balance's `free`; raises as a venue call."""
        free = self._call("fetch_balance").get("free") or {}
        return AccountInfo({code: to_decimal(amount, code) for code, amount in free.items()
                            if amount is not None and CURRENCY_RE.match(code)})

    def _submit(self, market: Market, side: str, volume: Decimal, price: Decimal, ref: str) -> Order:
        """create_order, once.  Its reply rarely tells the fill: unless it reports the order
        final, the order is returned as pending, for place_order to ask about.  Raises
        TemporaryError (it may be placed) for a reply without id, and as a venue call."""
        log.info("order %s: %s %s %s at market", ref, side, f"{volume:f}", market.symbol)
        params: dict[str, Any] = {"clientOrderId": ref}
        if self.exchange_id == "kraken":  # a late request is refused (kraken.py: deadline)
            params["deadline"] = rfc3339(self.clock() + deadline_seconds(self.timeout))
        created = self._call("create_order", market.symbol, "market", side, f"{volume:f}", None, params,
                             retry=False)
        if not created.get("id"):
            raise TemporaryError(f"create_order reply for {ref} has no order id", exchange=self.name,
                                 method="create_order")
        if created.get("status") in EXCHANGE_FINAL and created.get("filled") is not None:
            return self._order(created, ref)
        return Order(ref=ref, order_id=str(created["id"]), market=market.symbol, side=side, status="pending",
                     volume=volume, filled=ZERO, price=ZERO, cost=ZERO, fee=ZERO)

    def get_order(self, ref: str, order_id: str = "") -> Order | None:
        """By id when the venue can fetch one order, else among the open orders, then the
        closed ones, by our clientOrderId.  Raises as a venue call; OrderNotFound (or InvalidOrder)
        for an id is None."""
        if order_id and self.exchange.has.get("fetchOrder"):
            try:
                return self._order(self._call("fetch_order", order_id), ref)
            except PermanentError as exc:
                if exc.code not in ("OrderNotFound", "InvalidOrder"):
                    raise
                return None
        for method in ("fetch_open_orders", "fetch_closed_orders"):
            for o in self._call(method, params={"clientOrderId": ref}):
                if o.get("clientOrderId") == ref:
                    return self._order(o, ref)
        return None

    def get_order_history(self, limit: int = 50) -> list[Order]:
        """The `limit` latest closed orders, newest first; raises as a venue call."""
        closed = [self._order(o) for o in self._call("fetch_closed_orders", limit=limit)]
        return sorted(closed, key=lambda o: o.opened_at, reverse=True)[:limit]

    def _order(self, o: dict[str, Any], ref: str = "") -> Order:
        try:
            filled = to_decimal(o.get("filled") or 0)
            cost = to_decimal(o.get("cost") or 0)
            price = _decimal(o.get("average")) or (cost / filled if filled else ZERO)
            status = str({"rejected": "canceled", None: "pending"}.get(o.get("status"), o.get("status")))
            done = status in ("closed", "canceled", "expired")
            closed_at = (o.get("lastTradeTimestamp") or o.get("lastUpdateTimestamp")) if done else None
            return Order(ref=o.get("clientOrderId") or ref, order_id=str(o["id"]), market=o["symbol"],
                         side=o["side"], status=status, volume=to_decimal(o.get("amount") or filled),
                         filled=filled, price=price, cost=cost, fee=self._fee(o, price),
                         opened_at=(o.get("timestamp") or 0) / 1000,
                         closed_at=closed_at / 1000 if closed_at else None)
        except (KeyError, TypeError, ValueError) as exc:
            raise TemporaryError(f"malformed order {o.get('id')} ({exc})", exchange=self.name) from None

    def _fee(self, o: dict[str, Any], price: Decimal) -> Decimal:
        """The fees in quote currency; one taken in the base currency is valued at the fill price."""
        base, quote = split_market(o["symbol"])
        total = ZERO
        for fee in o.get("fees") or ([o["fee"]] if o.get("fee") else []):
            amount = to_decimal(fee.get("cost") or 0)
            if fee.get("currency") == base:
                amount *= price
            elif fee.get("currency") not in (quote, None):
                log.warning("order %s: a fee of %s %s is not counted", o.get("id"), amount, fee["currency"])
                continue
            total += amount
        return total


def _repointed(urls: Any, base: str) -> Any:
    """ccxt's API URLs (one, or a dict of them) with the scheme, host and port of `base`."""
    if isinstance(urls, dict):
        return {name: _repointed(url, base) for name, url in urls.items()}
    return base.rstrip("/") + urlsplit(urls).path


def _decimal(value: object) -> Decimal | None:
    return to_decimal(value) if value not in (None, "") else None
