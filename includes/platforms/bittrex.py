"""Bittrex v3 through bittrex-api, made safe for cron.

Bittrex stopped trading on 2023-12-04 (spec 4.1).  This adapter serves venues
that speak the Bittrex v3 API, and its tests against the simulator keep it working.

bittrex-api builds the URLs, signs the requests and names the endpoints.  But
it returns None on every failure, retries every call (orders included: it
re-POSTs them), and waits forever on a silent server.  The client sends every
request through the wrapper object in `client.requests`, calling only that
object's public `request()`.  So this module gives the client a `Transport` of
its own there.  A Transport sends each request once, through a requests.Session
with a timeout, and raises the project's exceptions with the HTTP status and
Bittrex's code.  No library code is patched.  On top of that: Bittrex's names
mapped to ours and back, Decimal money, retries only where a repeat is harmless,
and orders looked up by their clientOrderId instead of being sent again.
"""
from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import requests
from bittrex_api import BittrexV3
from bittrex_api.utils.bittrex_requests import BittrexRequests, RequestMethod
from bittrex_api.v3 import CandleInterval, OrderDirection, OrderType, TimeInForce

from includes.errors import (
    AuthenticationError,
    ExchangeError,
    InsufficientFunds,
    MarketUnavailable,
    OrderTooSmall,
    PermanentError,
    RateLimited,
    TemporaryError,
    UnknownMarket,
    cause,
    reading,
)
from includes.model import MARKET_RE, AccountInfo, Candle, Market, Order, Ticker
from includes.money import ZERO, round_half_even, to_decimal
from includes.platforms.base import Platform
from includes.platforms.transport import Pacer

log = logging.getLogger(__name__)

NAME = "bittrex"
API_URL = "https://api.bittrex.com/v3"
INTERVALS = {1: CandleInterval.MINUTE_1, 5: CandleInterval.MINUTE_5, 60: CandleInterval.HOUR_1,
             1440: CandleInterval.DAY_1}
RECENT_DAYS = {1: 1, 5: 1, 60: 31, 1440: 366}  # how far back `recent` reaches (spec 4.3)
VOLUME_DECIMALS = 8
DUST_BTC = Decimal("0.0001")  # DUST_TRADE_DISALLOWED_MIN_VALUE: 10 000 satoshi, in BTC markets
PAGE_SIZE = 200
LOOKUP_PAGES = 5  # a reference is looked for among the 1000 most recently closed orders
ALREADY_EXISTS = "CLIENTORDERID_ALREADY_EXISTS"

_CODES: dict[str, type[ExchangeError]] = {
    "APIKEY_INVALID": AuthenticationError, "INVALID_SIGNATURE": AuthenticationError,
    "APISIGN_NOT_PROVIDED": AuthenticationError, "INVALID_TIMESTAMP": AuthenticationError,
    "NOT_ALLOWED": AuthenticationError, "ACCOUNT_DISABLED": AuthenticationError,
    "MARKET_DOES_NOT_EXIST": UnknownMarket, "MARKET_NAME_REVERSED": UnknownMarket,
    "CURRENCY_DOES_NOT_EXIST": UnknownMarket,
    "INSUFFICIENT_FUNDS": InsufficientFunds,
    "MIN_TRADE_REQUIREMENT_NOT_MET": OrderTooSmall, "DUST_TRADE_DISALLOWED_MIN_VALUE": OrderTooSmall,
    "THROTTLED": RateLimited,
    "MARKET_OFFLINE": MarketUnavailable, "CURRENCY_OFFLINE": MarketUnavailable,
}


def error_class(status: int, code: str | None) -> type[ExchangeError]:
    """The project's exception for a Bittrex error reply: by its code, else by its HTTP status."""
    if code in _CODES:
        return _CODES[code]
    if status in (401, 403):
        return AuthenticationError
    if status == 429:
        return RateLimited
    return TemporaryError if status >= 500 else PermanentError


def refused_by(status: int, code: str | None) -> bool:
    """Whether an error reply says the request was refused, nothing done: a coded answer below
    500, or a coded "offline" one.  A clientOrderId already taken is no refusal: that order
    exists.  A 5xx without a code may come after the work was done."""
    if code is None or code == ALREADY_EXISTS:
        return False
    return status < 500 or error_class(status, code) is MarketUnavailable


class Transport(BittrexRequests):
    """bittrex-api's request wrapper: one attempt, a timeout, and failures raised, not None."""

    def __init__(self, timeout: float) -> None:
        super().__init__(max_request_try_count=1, debug_level=0)
        self.sleep_time = 0
        self.timeout = timeout
        self.session = requests.Session()

    def request(self, url: str, method: RequestMethod, params: dict | None = None, headers: dict | None = None,
                data: dict | None = None, needed_values: dict | None = None,
                unwanted_values: list | None = None, path: list | None = None) -> Any:
        """The reply's JSON.  BittrexV3 builds the query into `url` and passes no params,
        needed_values or path; a JSON object holding an `unwanted_values` key ("code") is an error."""
        where = f"{method.value} {urlsplit(url).path}"
        body = json.dumps(data) if data is not None else None  # the very text the client signed
        try:
            reply = self.session.request(method.value, url, data=body, headers=headers, timeout=self.timeout)
        except requests.Timeout:
            raise TemporaryError(f"no reply within {self.timeout:g} s", exchange=NAME, method=where) from None
        except requests.RequestException as exc:
            raise TemporaryError(f"connection failed ({cause(exc)})", exchange=NAME, method=where) from None
        try:
            payload = reply.json(parse_float=Decimal)
        except ValueError:  # an HTML error page or a cut body
            raise TemporaryError("reply is not JSON", exchange=NAME, method=where,
                                 status=reply.status_code) from None
        refused = isinstance(payload, dict) and any(k in payload for k in unwanted_values or ())
        if reply.status_code in (200, 201) and not refused:
            return payload
        error = payload if isinstance(payload, dict) else {}
        code = str(error["code"]) if error.get("code") else None
        message = cause(error.get("detail") or code or "error reply")
        raise error_class(reply.status_code, code)(message, exchange=NAME, method=where, status=reply.status_code,
                                                   code=code, refused=refused_by(reply.status_code, code))


class BittrexPlatform(Platform):
    name = NAME
    max_candles = None  # `historical` pages reach back to the market's creation

    def __init__(self, *, quote: str = "EUR", fee_percent: Decimal = Decimal("0.26"), api_url: str = API_URL,
                 key: str = "", secret: str = "", calls_per_second: float = 1.0, timeout: float = 15,
                 retries: int = 3, sleep: Callable[[float], None] = time.sleep) -> None:
        super().__init__(quote, fee_percent)
        self.client = BittrexV3(key, secret, max_request_try_count=1, debug_level=0, reverse_market_names=False)
        self.client.url_utils.base_url = api_url.rstrip("/")
        self.client.requests = Transport(timeout)
        self.has_key = bool(key and secret)
        self.retries = retries
        self.order_visibility_delay = timeout + 5
        self.sleep = sleep
        # Bittrex counts every call, about 60 a minute being safe (spec 4.5).  (Through self.sleep,
        # read at each wait, as the retries read it.)
        self.pacer = Pacer(calls_per_second, sleep=lambda seconds: self.sleep(seconds))
        self._clock_offset: float | None = None
        self._by_id: dict[str, Market] = {}

    # --- transport --------------------------------------------------------------------
    def _call(self, fn: Callable[..., Any], *args: Any, retry: bool = True, **kwargs: Any) -> Any:
        """One client call, repeated on temporary failures only when `retry` allows it."""
        def paced() -> Any:
            self.pacer.wait()
            return fn(*args, **kwargs)
        return self.retrying(paced, retry=retry)

    def _private(self, fn: Callable[..., Any], *args: Any, retry: bool = True, **kwargs: Any) -> Any:
        if not self.has_key:
            raise AuthenticationError("no API key configured (exchange.key_file)", exchange=self.name,
                                      method=fn.__name__)
        return self._call(fn, *args, retry=retry, **kwargs)

    # --- names ------------------------------------------------------------------------
    def list_markets(self) -> list[Market]:
        """Every market Bittrex lists; an entry we cannot read is skipped with a warning, the
        others still count.  Raises as a venue call (TemporaryError: the list itself malformed)."""
        entries, markets = self._call(self.client.get_markets), []
        if not isinstance(entries, list):
            raise TemporaryError("malformed market list (not a list)", exchange=self.name, method="list_markets")
        for entry in entries:
            try:
                market = _market(entry)
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                name = entry.get("symbol") if isinstance(entry, dict) else None
                log.warning("Bittrex market %s skipped: malformed entry (%s)", name, exc)
                continue
            if market is not None:
                markets.append(market)
        self._by_id = {m.exchange_symbol: m for m in markets}
        return markets

    def _id(self, symbol: str) -> str:
        try:
            return self.markets()[symbol].exchange_symbol
        except KeyError:
            raise UnknownMarket(f"{self.name} has no market {symbol}") from None

    def _known(self, market_id: str) -> Market:
        """The market of a BASE-QUOTE id in a reply."""
        self.markets()
        market = self._by_id.get(market_id)
        if market is None:
            raise UnknownMarket(f"unknown market {market_id!r} in a reply", exchange=self.name)
        return market

    # --- market data ------------------------------------------------------------------
    def clock(self) -> float:
        """Bittrex's clock: a Pi has no real-time clock and may boot with a wrong one.  Raises as a
        venue call (ping), the first time in a run."""
        if self._clock_offset is None:
            reply = self._call(self.client.ping)
            with reading("ping reply", NAME, "clock"):
                server = int(reply["serverTime"]) / 1000
            self._clock_offset = server - time.time()
        return time.time() + self._clock_offset

    def get_tickers(self, markets: Iterable[str]) -> dict[str, Ticker]:
        """Two requests whatever the number of markets: every ticker, then every 24 h summary.
        Raises as a venue call (TemporaryError: a ticker missing or malformed)."""
        ids = {self._id(s): s for s in markets}
        if not ids:
            return {}
        rates, summaries = self._call(self.client.get_tickers), self._call(self.client.get_market_summaries)
        with reading("ticker list", NAME, "get_tickers"):
            rates = {t.get("symbol"): t for t in rates}
            summaries = {s.get("symbol"): s for s in summaries}
        ts = self.now()
        tickers = {}
        for market_id, symbol in ids.items():
            if market_id not in rates or market_id not in summaries:
                raise TemporaryError(f"no ticker for {symbol}", exchange=self.name, method="get_tickers")
            t, s = rates[market_id], summaries[market_id]
            with reading(f"ticker for {symbol}", NAME, "get_tickers"):
                volume, quote_volume = to_decimal(s["volume"]), to_decimal(s.get("quoteVolume") or 0)
                vwap = quote_volume / volume if volume and quote_volume else None
                tickers[symbol] = Ticker(
                    market=symbol, ts=ts, last=to_decimal(t["lastTradeRate"]), bid=to_decimal(t["bidRate"]),
                    ask=to_decimal(t["askRate"]), volume_24h=volume,
                    vwap_24h=round_half_even(vwap, self.markets()[symbol].price_decimals) if vwap else None,
                    high_24h=to_decimal(s["high"]) or None, low_24h=to_decimal(s["low"]) or None)
        return tickers

    def get_candles(self, market: str, interval: int, since: int | None = None) -> list[Candle]:
        """`recent`, after one `historical` page per day (minutes), month (hours) or year (days)
        from `since` on, for what `recent` does not reach back to.  Raises as Platform.get_candles."""
        if interval not in INTERVALS:
            raise PermanentError(f"interval {interval} min is not one of Bittrex's {tuple(INTERVALS)}",
                                 exchange=self.name, method="get_candles")
        market_id, kind, step = self._id(market), INTERVALS[interval], interval * 60
        now = self.now()
        pages: list[Any] = []
        if since is not None:
            recent_from = now // step * step - RECENT_DAYS[interval] * 86400 + step
            for year, month, day in _pages(since, recent_from, interval):
                pages.append(self._call(self.client.get_historical_candles, market_id, kind, year, month, day))
        pages.append(self._call(self.client.get_recent_candles, market_id, kind))
        by_ts: dict[int, Candle] = {}
        with reading(f"candle for {market}", NAME, "get_candles"):
            for r in (r for page in pages for r in page):  # `recent` comes last and wins where pages overlap
                ts = int(_timestamp(r["startsAt"]))
                by_ts[ts] = Candle(ts=ts, open=to_decimal(r["open"]), high=to_decimal(r["high"]),
                                   low=to_decimal(r["low"]), close=to_decimal(r["close"]),
                                   volume=to_decimal(r["volume"]), closed=ts + step <= now)
        return [by_ts[ts] for ts in sorted(by_ts) if since is None or ts >= since]

    # --- account and orders -----------------------------------------------------------
    def get_account_info(self) -> AccountInfo:
        """`available` of each balance; raises as a venue call."""
        balances = self._private(self.client.get_balances)
        with reading("balance", NAME, "get_account_info"):
            return AccountInfo({b["currencySymbol"]: to_decimal(b["available"], b["currencySymbol"])
                                for b in balances})

    def bid_ask(self, market: Market) -> tuple[Decimal, Decimal]:
        """One market's ticker: Bittrex has a call for it.  Raises as a venue call."""
        t = self._call(self.client.get_ticker, market.exchange_symbol)
        with reading(f"ticker for {market.symbol}", NAME, "bid_ask"):
            return to_decimal(t["bidRate"]), to_decimal(t["askRate"])

    def _submit(self, market: Market, side: str, volume: Decimal, price: Decimal, ref: str) -> Order:
        """A MARKET order, IMMEDIATE_OR_CANCEL, POSTed once: its reply is the order as Bittrex
        has it then (a CLIENTORDERID_ALREADY_EXISTS reply is no refusal: place_order looks it up).
        Raises PermanentError (refused) for a ref that is no UUID, and as a venue call."""
        try:
            uuid.UUID(ref)
        except ValueError:
            raise PermanentError(f"order reference {ref!r} is not a UUID (Bittrex's clientOrderId)",
                                 exchange=self.name, refused=True) from None
        quantity = f"{volume:f}"  # a string: exact, where bittrex-api's float would round
        direction = OrderDirection.BUY if side == "buy" else OrderDirection.SELL
        new = self.client.create_new_order_dict(market.exchange_symbol, direction, OrderType.MARKET,
                                                TimeInForce.IMMEDIATE_OR_CANCEL, quantity=quantity,
                                                client_order_id=ref)
        log.info("order %s: %s %s %s at market", ref, direction.value, quantity, market.symbol)
        return self._order(self._private(self.client.post_order, new, retry=False))

    def get_order(self, ref: str, order_id: str = "") -> Order | None:
        """By id when known, else open orders, then the most recently closed ones, searched
        for our clientOrderId.  Raises as a venue call; ORDER_DOES_NOT_EXIST for an id is None."""
        if order_id:
            try:
                return self._order(self._private(self.client.get_order_by_id, order_id))
            except ExchangeError as exc:
                if exc.code != "ORDER_DOES_NOT_EXIST":
                    raise
                return None
        ref = ref.lower()
        found = self._find(ref, self._private(self.client.get_open_orders))
        token = None
        for _ in range(LOOKUP_PAGES):
            if found:
                break
            page = self._private(self.client.get_closed_orders, next_page_token=token, page_size=PAGE_SIZE)
            found = self._find(ref, page)
            if len(page) < PAGE_SIZE:
                break
            with reading("order list", NAME, "get_order"):
                token = page[-1]["id"]
        return found

    def _find(self, ref: str, orders: list[dict[str, Any]]) -> Order | None:
        """The order of a list whose clientOrderId is `ref` (lower case), if any."""
        with reading("order list", NAME, "get_order"):
            mine = [o for o in orders if str(o.get("clientOrderId", "")).lower() == ref]
        return self._order(mine[0]) if mine else None

    def get_order_history(self, limit: int = 50) -> list[Order]:
        """The `limit` latest closed orders (one page), newest first; raises as a venue call."""
        closed = self._private(self.client.get_closed_orders, page_size=min(limit, PAGE_SIZE))
        with reading("order list", NAME, "get_order_history"):
            rows = list(closed)
        return [self._order(o) for o in rows]

    def _order(self, o: dict[str, Any]) -> Order:
        """Bittrex has OPEN and CLOSED only: an IOC order closed short of its quantity was canceled."""
        with reading(f"order {o.get('id') if isinstance(o, dict) else ''}", NAME, "order"):
            market = self._known(o["marketSymbol"])
            filled, proceeds = to_decimal(o["fillQuantity"]), to_decimal(o["proceeds"])
            volume = to_decimal(o.get("quantity") or filled)  # a ceiling order has no quantity
            status = "open" if o["status"] == "OPEN" else "closed" if filled >= volume else "canceled"
            return Order(ref=o.get("clientOrderId") or "", order_id=o["id"], market=market.symbol,
                         side=o["direction"].lower(), status=status, volume=volume, filled=filled,
                         price=round_half_even(proceeds / filled, market.price_decimals) if filled else ZERO,
                         cost=proceeds, fee=to_decimal(o["commission"]), opened_at=_timestamp(o["createdAt"]),
                         closed_at=_timestamp(o["closedAt"]) if o.get("closedAt") else None)


def _market(m: dict[str, Any]) -> Market | None:
    base, quote = m["baseCurrencySymbol"], m["quoteCurrencySymbol"]
    symbol = f"{base}/{quote}"
    if not MARKET_RE.match(symbol):
        return None
    status = str(m["status"])
    return Market(symbol=symbol, base=base, quote=quote, exchange_symbol=m["symbol"], status=status,
                  available=status == "ONLINE", price_decimals=int(m["precision"]),
                  volume_decimals=VOLUME_DECIMALS, min_volume=to_decimal(m["minTradeSize"], "minTradeSize"),
                  min_cost=DUST_BTC if quote == "BTC" else ZERO, notice=str(m.get("notice") or ""))


def _pages(since: int, until: int, interval: int) -> Iterator[tuple[int, int | None, int | None]]:
    """(year, month, day) of each `historical` page from the one holding `since` to the
    last one starting before `until`: days for minute candles, months for hours, years for days."""
    start = datetime.fromtimestamp(since, UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if interval >= 60:
        start = start.replace(day=1)
    if interval >= 1440:
        start = start.replace(month=1)
    while start.timestamp() < until:
        if interval < 60:
            yield start.year, start.month, start.day
            start += timedelta(days=1)
        elif interval < 1440:
            yield start.year, start.month, None
            start = start.replace(year=start.year + start.month // 12, month=start.month % 12 + 1)
        else:
            yield start.year, None, None
            start = start.replace(year=start.year + 1)


def _timestamp(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
