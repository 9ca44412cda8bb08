"""Kraken through krakenex, made safe for cron.

krakenex sends the requests and signs them; this module adds what it leaves
out: the `error` array checked on every reply, Kraken's names mapped to ours
and back, Decimal money, retries only where a repeat is harmless, orders looked
up by their client reference instead of being re-sent, nonces that keep
increasing across processes sharing a key, and Kraken's call counter.
"""
from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from decimal import Decimal
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import krakenex
import requests

from includes.errors import (
    AuthenticationError,
    ExchangeError,
    InsufficientFunds,
    InvalidNonce,
    LockedOut,
    MarketUnavailable,
    OrderTooSmall,
    PermanentError,
    RateLimited,
    TemporaryError,
    UnknownMarket,
    cause,
    reading,
)
from includes.model import AccountInfo, Candle, Market, Order, Ticker, split_market
from includes.money import to_decimal
from includes.platforms.base import Platform
from includes.platforms.keygate import KeyGate, Ledger, ledger_for
from includes.platforms.kraken_pairs import FROM_COMMON, TO_COMMON, market_of_pair
from includes.platforms.transport import Pacer

log = logging.getLogger(__name__)

INTERVALS = (1, 5, 15, 30, 60, 240, 1440, 10080, 21600)
MAX_CANDLES = 720
# Kraken's names for currencies that the rest of the world spells otherwise.
COST = {"TradesHistory": 2, "QueryTrades": 2, "Ledgers": 2, "QueryLedgers": 2,
        "AddOrder": 0, "CancelOrder": 0}
CL_ORD_ID = re.compile(r"^([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|[0-9a-f]{32}"
                       r"|[\x21-\x7e]{1,18})$", re.IGNORECASE)

# Kraken's error strings (spec 2.3, docs.kraken.com "API error messages"), first prefix wins.
# An error reply is an explicit refusal (nothing done), except where the class is a plain
# TemporaryError: "busy", "unavailable", "deadline elapsed", "internal error" may come after
# an order reached the book, so its fate is unknown until asked for.
_ERRORS: list[tuple[str, type[ExchangeError]]] = [
    ("EAPI:Invalid nonce", InvalidNonce),
    ("EAPI:Rate limit exceeded", RateLimited),
    ("EOrder:Rate limit exceeded", RateLimited),
    ("EGeneral:Too many requests", RateLimited),
    ("EService: Throttled", RateLimited),
    ("EService:Throttled", RateLimited),
    ("EGeneral:Temporary lockout", LockedOut),
    ("EAPI:Invalid key", AuthenticationError),
    ("EAPI:Invalid signature", AuthenticationError),
    ("EGeneral:Permission denied", AuthenticationError),
    ("EQuery:Unknown asset", UnknownMarket),
    ("EOrder:Insufficient funds", InsufficientFunds),
    ("EOrder:Order minimum not met", OrderTooSmall),
    ("EOrder:Cost minimum not met", OrderTooSmall),
    ("EService:Market in", MarketUnavailable),
    ("EService:", TemporaryError),
    ("EGeneral:Internal error", TemporaryError),
    ("EDatabase:", TemporaryError),
]


# AddOrder's `deadline` (docs.kraken.com, Add Order): an RFC 3339 time after which the matching
# engine rejects the request, "in presence of latency or order queueing", from now + 2 s
# (older docs: 5 s) to now + 60 s.
DEADLINE_RANGE = (5.0, 60.0)
# Seconds past the deadline after which "not found by its reference" proves an order was never
# placed: our reading of Kraken's clock is off by up to a second (the Date header), and a placed
# order takes a moment to show in OpenOrders and ClosedOrders.
VISIBILITY_MARGIN = 10.0


def deadline_seconds(timeout: float) -> float:
    """How far ahead an order's deadline is set: the client's timeout, within Kraken's range."""
    return min(DEADLINE_RANGE[1], max(DEADLINE_RANGE[0], timeout))


def rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(int(ts), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def error_class(code: str) -> type[ExchangeError]:
    """The project's exception for one of Kraken's error strings."""
    for prefix, cls in _ERRORS:
        if code.startswith(prefix):
            return cls
    return PermanentError


def error_for(code: str, method: str) -> ExchangeError:
    """The exception for an error reply, `refused` unless it may come after the work was done."""
    cls = error_class(code)
    message = LOCKOUT if cls is LockedOut else code
    return cls(message, exchange="kraken", method=method, code=code, refused=cls is not TemporaryError)


LOCKOUT = ("Kraken locked this API key out for about 15 minutes (EGeneral:Temporary lockout, after "
           "repeated refused calls); the run stops")

class _KrakenAPI(krakenex.API):
    """krakenex, with the nonce handed out by the key's gate instead of the clock."""

    nonce = 0

    def _nonce(self) -> int:
        return self.nonce


class KrakenPlatform(Platform):
    name = "kraken"
    max_candles = MAX_CANDLES

    def __init__(self, *, quote: str = "EUR", fee_percent: Decimal = Decimal("0.26"),
                 api_url: str = "https://api.kraken.com", key: str = "", secret: str = "",
                 state_dir: Path, rate_tier: str = "starter", public_calls_per_second: float = 1.0,
                 timeout: float = 15, retries: int = 3, ledger: Ledger | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        """`ledger`: where the key's nonce and call counter live (keygate.ledger_for); by default
        a file in `state_dir`, for this host's processes alone."""
        super().__init__(quote, fee_percent)
        self.api = _KrakenAPI(key, secret)
        self.api.uri = api_url.rstrip("/")
        self.timeout = timeout
        self.retries = retries
        # Every AddOrder carries a deadline on Kraken's clock: an order request held up in a queue is
        # refused once it passed, so an order not found that much later never shows up afterwards.
        self.deadline_seconds = deadline_seconds(timeout)
        self.order_visibility_delay = self.deadline_seconds + VISIBILITY_MARGIN
        self.sleep = sleep
        self.gate = KeyGate(ledger or ledger_for("", self.name, key, state_dir), rate_tier, sleep)
        # Kraken throttles public calls per IP; about one a second is safe.  (Through self.sleep,
        # read at each wait, as the retries read it.)
        self.pacer = Pacer(public_calls_per_second, sleep=lambda seconds: self.sleep(seconds))
        self._clock_offset: float | None = None
        self._by_key: dict[str, Market] = {}
        self._asset_names: dict[str, str] = {}

    # --- transport --------------------------------------------------------------------
    def _public(self, method: str, params: dict[str, Any] | None = None) -> Any:
        return self.retrying(lambda: self._once(method, params or {}, private=False))

    def _private(self, method: str, params: dict[str, Any] | None = None, *, retry: bool = True) -> Any:
        return self.retrying(lambda: self._once(method, params or {}, private=True), retry=retry)

    def _once(self, method: str, params: dict[str, Any], private: bool) -> Any:
        try:
            if private:
                if not (self.api.key and self.api.secret):
                    raise AuthenticationError("no API key configured (exchange.key_file)",
                                              exchange=self.name, method=method)
                with self.gate.call(COST.get(method, 1)) as nonce:
                    self.api.nonce = nonce
                    reply = self.api.query_private(method, dict(params), timeout=self.timeout)
            else:
                self.pacer.wait()
                reply = self.api.query_public(method, params, timeout=self.timeout)
        except requests.HTTPError as exc:
            # A 5xx page may come after the work was done; a 429 or another 4xx is a refusal.
            status = exc.response.status_code if exc.response is not None else None
            cls = TemporaryError if status is None or status >= 500 else PermanentError
            if status == 429:
                cls = RateLimited
            raise cls("HTTP error from Kraken", exchange=self.name, method=method, status=status,
                      refused=cls is not TemporaryError) from None
        except requests.Timeout:
            raise TemporaryError(f"no reply within {self.timeout:g} s", exchange=self.name,
                                 method=method) from None
        except requests.ConnectionError as exc:
            raise TemporaryError(f"connection failed ({cause(exc)})", exchange=self.name,
                                 method=method) from None
        except ValueError:  # requests' JSONDecodeError: an HTML page or a cut body
            status = self.api.response.status_code if self.api.response is not None else None
            raise TemporaryError("reply is not JSON", exchange=self.name, method=method,
                                 status=status) from None
        if self._clock_offset is None:
            self._read_clock()
        return self._result(method, reply)

    def _result(self, method: str, reply: Any) -> Any:
        """Kraken's envelope: `error` first, whatever `result` says."""
        if not isinstance(reply, dict) or not isinstance(reply.get("error", []), list):
            raise TemporaryError("reply has no error array", exchange=self.name, method=method)
        errors = [e for e in reply.get("error", []) if isinstance(e, str) and not e.startswith("W")]
        for warning in (e for e in reply.get("error", []) if isinstance(e, str) and e.startswith("W")):
            log.warning("Kraken %s: %s", method, warning)
        if errors:
            raise error_for(errors[0], method)
        if "result" not in reply:
            raise TemporaryError("reply has no result", exchange=self.name, method=method)
        return reply["result"]

    # --- names ------------------------------------------------------------------------
    def canonical(self, currency: str) -> str:
        return TO_COMMON.get(currency, currency)

    def list_markets(self) -> list[Market]:
        return self._asset_pairs({})

    def list_some_markets(self, symbols: set[str]) -> list[Market] | None:
        """AssetPairs of these pairs alone, by altname (XBTEUR): every pair is a reply of
        several hundred kB, parsed at every run on a Pi.  None when one is unknown to Kraken."""
        try:
            names = [FROM_COMMON.get(base, base) + FROM_COMMON.get(quote, quote)
                     for base, quote in map(split_market, sorted(symbols))]
            return self._asset_pairs({"pair": ",".join(names)})
        except UnknownMarket:
            return None

    def _asset_pairs(self, params: dict[str, str]) -> list[Market]:
        markets: list[Market] = []
        by_name = self._by_key
        for key, pair in self._public("AssetPairs", params).items():
            try:
                market = self._market(key, pair)
            except (KeyError, ValueError, TypeError) as exc:
                log.warning("Kraken AssetPairs %s skipped: malformed entry (%s)", key, exc)
                continue
            if market is not None:
                markets.append(market)
                by_name[key] = by_name[pair.get("altname") or key] = market
        return markets

    def _market(self, key: str, pair: dict[str, Any]) -> Market | None:
        market = market_of_pair(key, pair)
        if market is not None:
            self._asset_names[pair["base"]] = market.base
            self._asset_names[pair["quote"]] = market.quote
        return market

    def _symbol(self, kraken_name: str) -> str:
        """Our "BASE/QUOTE" for a Kraken pair key or altname."""
        market = self._by_key.get(kraken_name)
        if market is None:
            self.markets()  # every market, unless the run has listed them all already
            market = self._by_key.get(kraken_name)
        if market is None:
            raise UnknownMarket(f"unknown pair {kraken_name!r} in a reply", exchange=self.name)
        return market.symbol

    def _key(self, symbol: str) -> str:
        try:
            return self.markets([symbol])[symbol].exchange_symbol
        except KeyError:
            raise UnknownMarket(f"{self.name} has no market {symbol}") from None

    # --- market data ------------------------------------------------------------------
    def clock(self) -> float:
        """Kraken's clock: a Pi has no real-time clock and may boot with a wrong one.

        Read off the Date header of the run's first reply; the Time call, paced as
        every public call (a second apart by default), only when there was none (and
        raising as a venue call).
        """
        if self._clock_offset is None:
            reply = self._public("Time")
            with reading("Time reply", self.name, "Time"):
                server = int(reply["unixtime"])
            self._clock_offset = server - time.time()
        return time.time() + self._clock_offset

    def _read_clock(self) -> None:
        """The clock offset from the Date header of the reply just received, if it has one."""
        try:
            date = parsedate_to_datetime(self.api.response.headers["Date"])
        except (AttributeError, KeyError, TypeError, ValueError, IndexError):
            return
        if date.tzinfo is None:  # "-0000": HTTP dates are GMT
            date = date.replace(tzinfo=UTC)
        self._clock_offset = date.timestamp() - time.time()

    def get_tickers(self, markets: Iterable[str]) -> dict[str, Ticker]:
        symbols = list(markets)
        if not symbols:
            return {}
        keys = {self._key(s): s for s in symbols}
        result = self._public("Ticker", {"pair": ",".join(keys)})
        ts = self.now()
        tickers = {}
        with reading("Ticker reply", self.name, "Ticker"):
            entries = list(result.items())
        for key, t in entries:
            symbol = keys.get(key) or self._symbol(key)
            with reading(f"ticker for {symbol}", self.name, "Ticker"):
                tickers[symbol] = Ticker(
                    market=symbol, ts=ts, last=to_decimal(t["c"][0]), bid=to_decimal(t["b"][0]),
                    ask=to_decimal(t["a"][0]), volume_24h=to_decimal(t["v"][1]),
                    vwap_24h=to_decimal(t["p"][1]), high_24h=to_decimal(t["h"][1]),
                    low_24h=to_decimal(t["l"][1]))
        missing = set(symbols) - set(tickers)
        if missing:
            raise TemporaryError(f"no ticker for {', '.join(sorted(missing))}", exchange=self.name,
                                 method="Ticker")
        return tickers

    def get_candles(self, market: str, interval: int, since: int | None = None) -> list[Candle]:
        """At most the 720 most recent candles: Kraken keeps no older OHLC data.  Raises as
        Platform.get_candles; TemporaryError for a reply without rows."""
        if interval not in INTERVALS:
            raise PermanentError(f"interval {interval} min is not one of Kraken's {INTERVALS}",
                                 exchange=self.name, method="OHLC")
        key = self._key(market)
        params: dict[str, Any] = {"pair": key, "interval": interval}
        if since is not None:
            params["since"] = int(since) - 1  # Kraken answers rows after `since`
        result = self._public("OHLC", params)
        with reading(f"OHLC reply for {market}", self.name, "OHLC"):
            rows = next((v for k, v in result.items() if k != "last"), None)
        if not isinstance(rows, list):
            raise TemporaryError(f"OHLC reply for {market} has no rows", exchange=self.name, method="OHLC")
        with reading(f"OHLC row for {market}", self.name, "OHLC"):
            candles = [Candle(ts=int(r[0]), open=to_decimal(r[1]), high=to_decimal(r[2]),
                              low=to_decimal(r[3]), close=to_decimal(r[4]), volume=to_decimal(r[6]))
                       for r in rows]
        if since is not None:
            candles = [c for c in candles if c.ts >= since]
        if candles:
            last = candles[-1]
            candles[-1] = Candle(last.ts, last.open, last.high, last.low, last.close, last.volume, closed=False)
        return candles

    # --- account and orders -----------------------------------------------------------
    def get_account_info(self) -> AccountInfo:
        """Free balances: BalanceEx's balance less `hold_trade`, what open orders hold
        (Balance would count it as free, and the agent would spend it twice).  Raises as a
        venue call (TemporaryError: a malformed entry)."""
        if self._markets is None:
            self.markets()  # the asset names of the pairs (XXBT is BTC)
        balances: dict[str, Decimal] = {}
        reply = self._private("BalanceEx")
        with reading("BalanceEx reply", self.name, "BalanceEx"):
            entries = list(reply.items())
        for asset, entry in entries:
            if "." in asset:
                continue  # staked, earn and tokenized variants (.S, .M, .F, .B, .T) are not spendable
            name = self._asset_names.get(asset) or self.canonical(
                asset[1:] if len(asset) == 4 and asset[0] in "XZ" else asset)
            with reading(f"BalanceEx entry for {asset}", self.name, "BalanceEx"):
                free = to_decimal(entry["balance"], asset) - to_decimal(entry.get("hold_trade") or "0", asset)
            balances[name] = balances.get(name, Decimal(0)) + free
        return AccountInfo(balances)

    def _submit(self, market: Market, side: str, volume: Decimal, price: Decimal, ref: str) -> Order:
        """AddOrder, once.  Its reply tells the txid, never the fill: the order is returned as
        pending, for place_order to ask about.  `ref` is new (the journal refuses a ref twice),
        so it is not looked up before sending: that would cost two calls of Kraken's counter.
        Raises PermanentError (refused) for a ref that is no cl_ord_id, TemporaryError (it may
        be placed) for a reply without txid, and as a venue call."""
        if not CL_ORD_ID.match(ref):
            raise PermanentError(f"order reference {ref!r} is not a valid Kraken cl_ord_id", exchange=self.name,
                                 refused=True)
        params = {"pair": market.exchange_symbol, "type": side, "ordertype": "market",
                  "volume": f"{volume:f}", "cl_ord_id": ref, "deadline": rfc3339(self.clock() + self.deadline_seconds)}
        log.info("order %s: %s %s %s at market", ref, side, params["volume"], market.symbol)
        result = self._private("AddOrder", params, retry=False)
        txids = result.get("txid") if isinstance(result, dict) else None
        if not txids or not isinstance(txids, list):
            raise TemporaryError(f"AddOrder reply for {ref} has no txid", exchange=self.name, method="AddOrder")
        return Order(ref=ref, order_id=str(txids[0]), market=market.symbol, side=side, status="pending",
                     volume=volume, filled=Decimal(0), price=Decimal(0), cost=Decimal(0), fee=Decimal(0))

    def get_order(self, ref: str, order_id: str = "") -> Order | None:
        """By txid when known (one call), else by cl_ord_id among the open orders, then the
        closed ones (an order moves from the first to the second, never back).  Raises as a venue
        call; "EOrder:Invalid order" for a txid is None (not visible yet), not an error."""
        if order_id:
            try:
                found = self._private("QueryOrders", {"txid": order_id})
            except PermanentError as exc:
                if exc.code and exc.code.startswith("EOrder:Invalid order"):
                    return None  # not visible yet (or never was): the caller judges
                raise
            with reading("QueryOrders reply", self.name, "QueryOrders"):
                mine = found.get(order_id)
            return self._order(order_id, mine) if mine is not None else None
        for method, key in (("OpenOrders", "open"), ("ClosedOrders", "closed")):
            reply = self._private(method, {"cl_ord_id": ref})
            with reading(f"{method} reply", self.name, method):
                mine = [(txid, o) for txid, o in (reply.get(key) or {}).items() if o.get("cl_ord_id") == ref]
            if mine:
                return self._order(*mine[0])
        return None

    def get_order_history(self, limit: int = 50) -> list[Order]:
        """The `limit` latest closed orders, newest first, a ClosedOrders page at a time; raises as a
        venue call."""
        orders: list[Order] = []
        while len(orders) < limit:
            page = self._private("ClosedOrders", {"ofs": len(orders)})
            with reading("ClosedOrders reply", self.name, "ClosedOrders"):
                closed, count = list((page.get("closed") or {}).items()), int(page.get("count", 0))
            orders += [self._order(txid, o) for txid, o in closed]
            if not closed or len(orders) >= count:
                break
        return orders[:limit]

    def _order(self, txid: str, o: dict[str, Any]) -> Order:
        with reading(f"order {txid}", self.name, "order"):
            descr = o["descr"]
            return Order(ref=o.get("cl_ord_id") or str(o.get("userref") or ""), order_id=txid,
                         market=self._symbol(descr["pair"]), side=descr["type"], status=o["status"],
                         volume=to_decimal(o["vol"]), filled=to_decimal(o["vol_exec"]),
                         price=to_decimal(o.get("price") or "0"), cost=to_decimal(o.get("cost") or "0"),
                         fee=to_decimal(o.get("fee") or "0"), opened_at=float(o.get("opentm") or 0),
                         closed_at=float(o["closetm"]) if o.get("closetm") else None)

