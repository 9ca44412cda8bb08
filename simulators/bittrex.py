"""Local Bittrex v3 REST simulator.

Bittrex is closed (spec §4.1), so this server is the only counterpart the
project can test against: the real `bittrex-api` client talks to it unchanged
but for its base URL.  Wire formats, signatures and error codes follow
../shared/spec/exchange-apis.md §4; where the spec leaves a detail open, the
choice made here is marked "our choice".

    with BittrexSimulator() as sim:
        sim.add_account("key", "secret", {"EUR": "1000"})
        sim.set_price("BTC-EUR", "30000")
        client = BittrexV3("key", "secret", reverse_market_names=False)
        client.url_utils.base_url = sim.url + "/v3"

Prices live on a simulated clock that only the caller moves (`set_time`,
`advance`); the rate limit and the Api-Timestamp window use real time.  The
client retries failures and sleeps between tries: set
`client.requests.sleep_time = 0` in tests (spec §4.6).

Our choices where the spec is silent: a stale Api-Timestamp (more than 60 real
seconds off) is 401 INVALID_TIMESTAMP; a wrong Api-Content-Hash is 401
INVALID_SIGNATURE; MARKET_NAME_REVERSED is 400; DUST_TRADE_DISALLOWED_MIN_VALUE
(BTC markets only) is 409; a quantity with more than 8 decimals is 400
BAD_REQUEST; CLIENTORDERID_ALREADY_EXISTS is 409 with
{"existingOrderId": id} in `data`; an http_503 fault says SERVICE_UNAVAILABLE.
Market orders fill at once, in full, at the ask (buy) or bid (sell); the
commission is in quote currency.

It is served by simulators.http's `SimulatorServer` (the signature is checked
over the raw request target it keeps): `calls` counts requests by "VERB route
template", e.g. "POST /v3/orders", and /_sim/ takes the control calls of
every simulator plus POST /_sim/complete_orders.  A real exchange is harder
than the happy path, and `inject` (or POST /_sim/fault from another process)
makes it so: errors before the request is carried out or after (after=True:
a POST /orders has placed its order), a dropped connection, a lost reply, a
partial fill, and `lifecycle`, which scripts an order: OPEN with nothing
filled for a while, then partly filled, then CLOSED filled or cancelled, and
first invisible to the account's queries for a while (see
`Lifecycle` and `inject`).  Our choices there: a lifecycle order cancelled
without fills stays visible (unless `forget_unfilled_cancels`); a scripted
fill is at the current ask or bid but never beyond the order's limit; a
scripted market buy holds its quote at the ask at placement.
`account_orders(key)` is the ground truth tests compare a client's view with.

By hand: `python -m simulators.bittrex --port 8081` (the clock then
follows real time).
"""
from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import math
import random
import re
import time
import uuid
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, ROUND_UP, Decimal
from itertools import accumulate, islice
from typing import NamedTuple

from includes.money import to_decimal
from simulators.http import Fault, Reply, Request, SimulatorServer, json_reply
from simulators.lifecycle import Lifecycle

MINUTE = 60
EIGHT = Decimal("0.00000001")
DUST_BTC = Decimal("0.0001")  # 10 000 satoshi (spec §4.5)
CLIENT_ID_MEMORY = 24 * 3600  # a clientOrderId stays taken this long (simulated seconds)
START_TIME = 1_700_000_000.0  # 2023-11-14T22:13:20Z, the default simulated "now"

# Candle intervals in seconds and how far back `recent` reaches (spec §4.3).
INTERVALS = {"MINUTE_1": 60, "MINUTE_5": 300, "HOUR_1": 3600, "DAY_1": 86400}
RECENT_SPAN = {"MINUTE_1": 86400, "MINUTE_5": 86400, "HOUR_1": 31 * 86400, "DAY_1": 366 * 86400}
# How many of year/month/day a historical request gives; it covers that day, month or year.
HISTORICAL_PARTS = {"MINUTE_1": 3, "MINUTE_5": 3, "HOUR_1": 2, "DAY_1": 1}

ORDER_TYPES = ("LIMIT", "MARKET", "CEILING_LIMIT", "CEILING_MARKET")
TIMES_IN_FORCE = ("GOOD_TIL_CANCELLED", "IMMEDIATE_OR_CANCEL", "FILL_OR_KILL",
                  "POST_ONLY_GOOD_TIL_CANCELLED", "BUY_NOW", "INSTANT")
IMMEDIATE = ("IMMEDIATE_OR_CANCEL", "FILL_OR_KILL")
RESTING = ("GOOD_TIL_CANCELLED", "POST_ONLY_GOOD_TIL_CANCELLED")
LOOKUP_ROUTES = {("GET", "/v3/orders/{orderId}"), ("GET", "/v3/orders/open"), ("GET", "/v3/orders/closed")}


# ---------------------------------------------------------------- price model

@dataclass
class MarketSpec:
    symbol: str              # "BTC-EUR"
    precision: int           # decimals of a rate
    min_trade_size: Decimal  # base currency
    start_price: Decimal     # where the random walk starts
    status: str = "ONLINE"
    notice: str = ""

    @property
    def base(self) -> str:
        return self.symbol.split("-")[0]

    @property
    def quote(self) -> str:
        return self.symbol.split("-")[1]


def default_markets() -> list[MarketSpec]:
    """The markets a fresh simulator lists, with plausible late-2023 prices."""
    rows = [("BTC-EUR", 3, "0.0001", "30000"), ("ETH-EUR", 2, "0.002", "1800"),
            ("LTC-EUR", 3, "0.05", "65"), ("XRP-EUR", 5, "10", "0.55"),
            ("ADA-EUR", 5, "10", "0.35"), ("DOT-EUR", 4, "1", "4.8"),
            ("ETH-BTC", 8, "0.005", "0.06"), ("BTC-USD", 3, "0.0001", "32000")]
    return [MarketSpec(s, p, Decimal(m), Decimal(price)) for s, p, m, price in rows]


class Candle(NamedTuple):
    start: int   # unix seconds
    end: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    known: float = 0  # from then on the whole candle is known; before, only its open


def merge(parts: Sequence[Candle]) -> Candle:
    """One candle spanning consecutive parts."""
    return Candle(parts[0].start, parts[-1].end, parts[0].open, max(p.high for p in parts),
                  min(p.low for p in parts), parts[-1].close, sum((p.volume for p in parts), Decimal(0)))


class RandomWalk:
    """Seeded random walk of the log-price, one step a minute.

    It grows on demand in both directions from an origin minute, so any moment
    can be asked for and a seed always gives the same path; a year of minutes
    takes a few megabytes.
    """

    def __init__(self, seed: str, origin: int, volatility: float) -> None:
        self.origin = origin
        self.volatility = volatility
        # Per side (0: from the origin on, 1: before it): generator, log-prices, cumulated volume.
        self._rngs = (random.Random(f"{seed}:after"), random.Random(f"{seed}:before"))
        self._logs = (array("d", [0.0]), array("d", [0.0]))
        self._volumes = (array("d", [0.0]), array("d", [0.0]))

    def _index(self, minute: int) -> tuple[int, int]:
        offset = minute - self.origin
        side, index = (0, offset) if offset >= 0 else (1, -offset)
        logs, volumes, rng = self._logs[side], self._volumes[side], self._rngs[side]
        while index >= len(logs):  # a day at a time: a year of history needs no big temporary lists
            steps = [rng.gauss(0.0, 1.0) for _ in range(1440)]
            logs.extend(islice(accumulate((self.volatility * z for z in steps), initial=logs[-1]), 1, None))
            volumes.extend(islice(accumulate((0.5 + abs(z) for z in steps), initial=volumes[-1]), 1, None))
        return side, index

    def log(self, minute: int) -> float:
        side, index = self._index(minute)
        return self._logs[side][index]

    def extremes(self, first: int, last: int) -> tuple[float, float]:
        """Lowest and highest log-price over minutes first..last."""
        values: list[float] = []
        if last >= self.origin:
            self._index(last)
            values += self._logs[0][max(first - self.origin, 0):last - self.origin + 1]
        if first < self.origin:
            self._index(first)
            values += self._logs[1][max(self.origin - last, 1):self.origin - first + 1]
        return min(values), max(values)

    def volume(self, first: int, end: int) -> float:
        """Volume of minutes first..end-1, in units of an average minute's."""
        return self._cumulated(end) - self._cumulated(first)

    def _cumulated(self, minute: int) -> float:
        side, index = self._index(minute)
        return self._volumes[0][index] if side == 0 else -self._volumes[1][index]


class PricePath:
    """Price of one market on the simulated clock, with no look-ahead.

    Recorded candles (loaded data, and the one-minute candles `set_price`
    writes) rule from the first of them on.  Until a loaded candle has closed
    only its open is known, so that is the price meanwhile; after the last
    candle, and in gaps, the last close holds.  Before the recorded candles a
    seeded random walk gives the price, which moves at each minute's start.
    Walk candles start no earlier than `walk_from` (the market's creation), so
    that nobody grows years of walk by accident.
    """

    def __init__(self, spec: MarketSpec, seed: str, origin: float, walk_from: float,
                 volatility: float) -> None:
        self.spec = spec
        self.walk = RandomWalk(f"{seed}:{spec.symbol}", int(origin // MINUTE), volatility)
        self.walk_from = int(walk_from // MINUTE) * MINUTE
        self.minute_volume = spec.min_trade_size * 20
        self.rows: list[Candle] = []
        self._starts: list[int] = []

    def price(self, ts: float) -> Decimal:
        i = bisect_right(self._starts, ts)
        if not i:
            return self._walk_price(int(ts // MINUTE))
        row = self.rows[i - 1]
        return row.open if ts < row.known else row.close

    def set_price(self, ts: float, price: Decimal) -> None:
        """A trade at `price`, known at once: the close of the candle holding `ts`."""
        i = bisect_right(self._starts, ts)
        if i and ts < self.rows[i - 1].end:
            row = self.rows[i - 1]
            if ts < row.known:  # what the loaded candle had not revealed yet is replaced
                row = row._replace(high=row.open, low=row.open, volume=Decimal(0))
            self.rows[i - 1] = row._replace(high=max(row.high, price), low=min(row.low, price), close=price,
                                            known=row.start)
            return
        start = int(ts // MINUTE) * MINUTE
        before = self.price(ts)
        self.load([Candle(start, start + MINUTE, before, max(before, price), min(before, price), price,
                          Decimal(0), start)])

    def load(self, candles: Sequence[Candle]) -> None:
        """Replace the recorded candles in the span of `candles` (sorted) with them."""
        first, end = candles[0].start, candles[-1].end
        kept = [r for r in self.rows if not first <= r.start < end]
        self.rows = sorted(kept + list(candles), key=lambda r: r.start)
        self._starts = [r.start for r in self.rows]

    def candles(self, first: int, last: int, interval: int, now: float) -> list[Candle]:
        """Candles starting at first, first + interval, ... up to last, as known at `now`;
        spans without data are left out."""
        found = (self.aggregate(start, start + interval, now) for start in range(first, last + 1, interval))
        return [c for c in found if c]

    def aggregate(self, start: int, end: int, now: float) -> Candle | None:
        """One candle over [start, end) (whole minutes) as known at `now`, or None when nothing is."""
        switch = self._starts[0] if self._starts else end
        parts = []
        walk_start = max(start, self.walk_from)
        walk_end = min(end, switch, (int(now // MINUTE) + 1) * MINUTE)
        if walk_start < walk_end:
            parts.append(self._walk_candle(walk_start // MINUTE, walk_end // MINUTE))
        for row in self.rows[bisect_left(self._starts, start):bisect_right(self._starts, min(end - 1, now))]:
            parts.append(row if row.known <= now else
                         row._replace(high=row.open, low=row.open, close=row.open, volume=Decimal(0)))
        return merge(parts) if parts else None

    def _walk_candle(self, first: int, end: int) -> Candle:
        """Minutes first..end-1 of the walk; a minute opens at the previous one's price."""
        low, high = self.walk.extremes(first - 1, end - 1)
        volume = Decimal(repr(self.walk.volume(first, end))) * self.minute_volume
        return Candle(first * MINUTE, end * MINUTE, self._walk_price(first - 1), self._to_price(high),
                      self._to_price(low), self._walk_price(end - 1), volume.quantize(EIGHT))

    def _walk_price(self, minute: int) -> Decimal:
        return self._to_price(self.walk.log(minute))

    def _to_price(self, log: float) -> Decimal:
        value = Decimal(repr(float(self.spec.start_price) * math.exp(log)))
        return value.quantize(Decimal(1).scaleb(-self.spec.precision))


# ---------------------------------------------------------------- wire helpers

class ApiError(Exception):
    """An error reply: HTTP status and Bittrex's {"code", "detail", "data"} body."""

    def __init__(self, status: int, code: str, detail: str = "", data: dict | None = None) -> None:
        super().__init__(f"{status} {code} {detail}")
        self.status, self.code, self.detail, self.data = status, code, detail, data

    def body(self) -> dict:
        out: dict = {"code": self.code}
        if self.detail:
            out["detail"] = self.detail
        if self.data:
            out["data"] = self.data
        return out


def bad_request(parameter: str, detail: str = "") -> ApiError:
    return ApiError(400, "BAD_REQUEST", detail or f"invalid {parameter}", {"invalidRequestParameter": parameter})


def iso(ts: float, timespec: str = "milliseconds") -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec=timespec).replace("+00:00", "Z")


def parse_iso(text: str, parameter: str) -> float:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise bad_request(parameter, f"{parameter} is not an ISO-8601 date") from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def content_hash(body: bytes) -> str:
    return hashlib.sha512(body).hexdigest()


def signature(secret: str, timestamp: str, uri: str, method: str, body_hash: str, subaccount: str = "") -> str:
    """Api-Signature (spec §4.4): HMAC-SHA512 keyed with the secret as UTF-8 text."""
    presign = timestamp + uri + method + body_hash + subaccount
    return hmac.new(secret.encode(), presign.encode(), hashlib.sha512).hexdigest()


def route_regex(template: str) -> re.Pattern:
    """"/a/{x}[/{y}]" -> a regex with named groups; [...] marks an optional part."""
    optional = template.replace("[", "(?:").replace("]", ")?")
    return re.compile(re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", optional))


def rate(value: Decimal, spec: MarketSpec) -> str:
    return f"{value:.{spec.precision}f}"


# ---------------------------------------------------------------- accounts, orders

@dataclass
class Account:
    key: str
    secret: str
    totals: dict[str, Decimal] = field(default_factory=dict)
    held: dict[str, Decimal] = field(default_factory=dict)  # reserved by open orders
    updated: dict[str, float] = field(default_factory=dict)

    def change(self, currency: str, delta: Decimal, now: float) -> None:
        self.totals[currency] = self.totals.get(currency, Decimal(0)) + delta
        self.updated[currency] = now

    def hold(self, currency: str, delta: Decimal, now: float) -> None:
        self.held[currency] = self.held.get(currency, Decimal(0)) + delta
        self.updated[currency] = now

    def available(self, currency: str) -> Decimal:
        return self.totals.get(currency, Decimal(0)) - self.held.get(currency, Decimal(0))

    def wire(self, currency: str) -> dict:
        return {"currencySymbol": currency, "total": f"{self.totals.get(currency, Decimal(0)):.8f}",
                "available": f"{self.available(currency):.8f}",
                "updatedAt": iso(self.updated.get(currency, 0.0))}


@dataclass
class Order:
    """One order; `account_orders` hands out copies of these as the tests' ground truth."""
    id: str
    key: str
    market: MarketSpec
    direction: str
    type: str
    time_in_force: str
    quantity: Decimal
    ceiling: Decimal | None
    limit: Decimal | None
    client_order_id: str | None
    created: float
    seq: int
    updated: float = 0.0
    fill_quantity: Decimal = Decimal(0)
    commission: Decimal = Decimal(0)
    proceeds: Decimal = Decimal(0)
    closed: float | None = None
    held: Decimal = Decimal(0)
    hidden: bool = False         # for good: a cancelled order without fills forgotten
    hold_rate: Decimal | None = None  # price a buy holds its quote at: the limit, else the ask at placement
    script: Lifecycle | None = None   # set when placed under a lifecycle fault
    executions: list[dict] = field(default_factory=list)

    @property
    def remaining(self) -> Decimal:
        return self.quantity - self.fill_quantity

    @property
    def symbol(self) -> str:
        return self.market.symbol

    @property
    def side(self) -> str:
        """"buy" or "sell" (`direction` is the wire's BUY or SELL)."""
        return self.direction.lower()

    @property
    def status(self) -> str:
        return "OPEN" if self.closed is None else "CLOSED"

    @property
    def visible(self) -> bool:
        """Whether the account's queries (GET, DELETE, listings) see it."""
        return not self.hidden and not (self.script is not None and self.script.lagging)

    @property
    def hold_currency(self) -> str:
        return self.market.quote if self.direction == "BUY" else self.market.base

    def wire(self) -> dict:
        out = {"id": self.id, "marketSymbol": self.market.symbol, "direction": self.direction, "type": self.type}
        if self.ceiling is None:
            out["quantity"] = f"{self.quantity:.8f}"
        else:
            out["ceiling"] = f"{self.ceiling:.8f}"
        if self.limit is not None:
            out["limit"] = rate(self.limit, self.market)
        out["timeInForce"] = self.time_in_force
        if self.client_order_id:
            out["clientOrderId"] = self.client_order_id
        out.update({"fillQuantity": f"{self.fill_quantity:.8f}", "commission": f"{self.commission:.8f}",
                    "proceeds": f"{self.proceeds:.8f}", "status": self.status,
                    "createdAt": iso(self.created), "updatedAt": iso(self.updated)})
        if self.closed is not None:
            out["closedAt"] = iso(self.closed)
        return out


@dataclass
class Call:
    """What a route handler gets."""
    params: dict[str, str]      # the route template's parameters
    query: dict[str, str]
    body: bytes
    account: Account | None     # the signed-in account of a signed route
    fault_keys: Collection[str]  # what a fault's `method` may be to match this call


class Route(NamedTuple):
    method: str
    template: str               # "/v3/orders/{orderId}": with the method, the name `calls` counts
    regex: re.Pattern
    handler: Callable[[Call], tuple[int, object]]
    signed: bool


# ---------------------------------------------------------------- the simulator

class BittrexSimulator(SimulatorServer):
    """Bittrex v3 on 127.0.0.1: markets on a simulated clock, accounts, orders, faults.

    `url` has no /v3 suffix.  `calls` counts requests by "VERB route template",
    e.g. "POST /v3/orders".
    """

    ERROR_FAULTS = frozenset({"http_503", "throttled"})
    SHAPING_FAULTS = frozenset({"partial_fill", "lifecycle"})
    MALFORMED_BODY = b'[{"symbol": "BTC-EUR", "lastTradeRate": "3'

    ROUTES = [  # (method, template, handler, signed); literal paths before {parameters}
        ("GET", "/v3/ping", "ping", False),
        ("GET", "/v3/markets", "markets", False),
        ("GET", "/v3/markets/summaries", "summaries", False),
        ("GET", "/v3/markets/tickers", "tickers", False),
        ("GET", "/v3/markets/{marketSymbol}", "market", False),
        ("GET", "/v3/markets/{marketSymbol}/summary", "summary", False),
        ("GET", "/v3/markets/{marketSymbol}/ticker", "ticker", False),
        ("GET", "/v3/markets/{marketSymbol}/candles[/{candleType}]/{candleInterval}/recent", "recent", False),
        ("GET", "/v3/markets/{marketSymbol}/candles[/{candleType}]/{candleInterval}/historical/{year}"
                "[/{month}[/{day}]]", "historical", False),
        ("GET", "/v3/balances", "balances", True),
        ("GET", "/v3/balances/{currencySymbol}", "balance", True),
        ("POST", "/v3/orders", "post_order", True),
        ("GET", "/v3/orders/open", "open_orders", True),
        ("GET", "/v3/orders/closed", "closed_orders", True),
        ("GET", "/v3/orders/{orderId}", "get_order", True),
        ("DELETE", "/v3/orders/{orderId}", "cancel_order", True),
        ("GET", "/v3/orders/{orderId}/executions", "executions", True),
    ]

    def __init__(self, *, markets: Iterable[MarketSpec] | None = None, start_time: float = START_TIME,
                 seed: int = 0, volatility: float = 0.0007, commission_percent: Decimal | str = "0.25",
                 spread_percent: Decimal | str = "0.1", rate_limit: int = 60,
                 timestamp_window: float | None = 60.0, forget_unfilled_cancels: bool = False,
                 port: int = 0) -> None:
        """`timestamp_window`: how far (real seconds) Api-Timestamp may be from now, None for no check
        (our choice: 60 s and code INVALID_TIMESTAMP; the real value is unconfirmed).
        `forget_unfilled_cancels`: a cancelled order without fills then vanishes (the spec's "may")."""
        super().__init__(port=port)
        self.now = float(start_time)
        self.commission_percent = Decimal(commission_percent)
        self.spread_percent = Decimal(spread_percent)
        self.rate_limit = rate_limit
        self.timestamp_window = timestamp_window
        self.forget_unfilled_cancels = forget_unfilled_cancels
        self.created_at = float(start_time) - 400 * 86400  # a year of candles behind every market
        self._seed, self._volatility = seed, volatility
        self._markets: dict[str, MarketSpec] = {}
        self._paths: dict[str, PricePath] = {}
        self._accounts: dict[str, Account] = {}
        self._orders: dict[str, Order] = {}
        self._scripted: list[Order] = []  # lifecycle orders whose script still runs or that still lag
        self._ids = random.Random(seed)
        self._window = (0, 0)  # (real minute, requests in it)
        self._routes = [Route(m, t, route_regex(t), getattr(self, "_on_" + h), signed)
                        for m, t, h, signed in self.ROUTES]
        self.controls["complete_orders"] = lambda payload: self.complete_orders() or {}
        for spec in markets if markets is not None else default_markets():
            self.add_market(spec)

    # ------------------------------------------------------------ test controls

    def add_market(self, spec: MarketSpec) -> None:
        with self.lock:
            self._markets[spec.symbol] = spec
            self._paths[spec.symbol] = PricePath(spec, str(self._seed), self.now, self.created_at,
                                                 self._volatility)

    def set_market_status(self, market: str, status: str, notice: str = "") -> None:
        """ONLINE or OFFLINE; an OFFLINE market refuses new orders with MARKET_OFFLINE."""
        if status not in ("ONLINE", "OFFLINE"):
            raise ValueError(f"market status {status!r} is neither ONLINE nor OFFLINE")
        with self.lock:
            self._markets[market].status, self._markets[market].notice = status, notice

    def add_account(self, key: str, secret: str, balances: Mapping[str, object] | None = None) -> None:
        with self.lock:
            account = self._accounts[key] = Account(key, secret)
            for currency, value in (balances or {}).items():
                account.change(currency, to_decimal(value, currency), self.now)

    def balances(self, key: str) -> dict[str, Decimal]:
        """Totals per currency of one account."""
        with self.lock:
            return dict(self._accounts[key].totals)

    def orders(self, key: str) -> list[dict]:
        """Every order of one account as the API shows it, oldest first (hidden ones included)."""
        with self.lock:
            return [o.wire() for o in self._orders.values() if o.key == key]

    def account_orders(self, key: str) -> list[Order]:
        """Ground truth for tests: copies of every order the account ever placed, oldest first,
        hidden ones included.  Attributes: id, client_order_id, direction ("BUY"/"SELL"),
        side ("buy"/"sell"), symbol ("BTC-EUR"), status ("OPEN"/"CLOSED"), quantity,
        fill_quantity, proceeds, commission (Decimal, quote currency), created, closed
        (simulated unix seconds or None), visible, script (the Lifecycle or None)."""
        with self.lock:
            return [replace(o, executions=list(o.executions), script=replace(o.script) if o.script else None)
                    for o in self._orders.values() if o.key == key]

    def complete_orders(self) -> None:
        """Finish every lifecycle order now, as its script ends (at the current prices), and show it."""
        with self.lock:
            for order in self._scripted:
                order.script.elapsed = math.inf
                self._run_script(order)
            self._scripted.clear()

    def price(self, market: str) -> Decimal:
        with self.lock:
            return self._paths[market].price(self.now)

    def set_time(self, ts: float) -> None:
        with self.lock:
            self.now = float(ts)
            self._advance_scripts(None, "seconds")
            self._match_open_orders()

    def advance(self, seconds: float) -> None:
        with self.lock:
            self.set_time(self.now + seconds)

    def set_price(self, market: str, price: object) -> None:
        """Trade at `price` now; the price then holds until the next set_price (the walk stops)."""
        value = to_decimal(price, "price")
        if value <= 0:
            raise ValueError(f"price {value} is not positive")
        with self.lock:
            self._paths[market].set_price(self.now, value)
            self._match_open_orders()

    def load_candles(self, market: str, rows: Iterable[Sequence[object]], interval: int = 60) -> None:
        """Record candles (ts, open, high, low, close, volume), ts = open time in unix seconds,
        `interval` seconds long: the path of `market` follows them (see PricePath)."""
        candles = sorted(Candle(int(ts), int(ts) + interval, *(to_decimal(v) for v in values), int(ts) + interval)
                         for ts, *values in rows)
        with self.lock:
            self._paths[market].load(candles)
            self._match_open_orders()

    def inject(self, method: str, fault: str, times: int | None = 1, **params: object) -> None:
        """Make the next `times` requests matching `method` (None: all, until clear_faults) fail.

        `method`: "*", an HTTP method, a route template or a path, optionally after
        the method, with or without /v3: "POST /v3/orders" and "POST /orders" are
        the same.  Faults, named as in simulators.http:

        - delay (seconds=1): wait, then answer normally;
        - http_500 and http_520 (an HTML page), http_503 (JSON
          SERVICE_UNAVAILABLE), throttled (429 THROTTLED), malformed_json (200,
          cut-off body): with after=False
          (the default) the request is not carried out; with after=True it is (a
          POST /orders places its order), then its reply is replaced by the error;
        - drop: the connection is closed without a reply; not carried out;
        - lost_reply: carried out, then the connection is closed without a reply,
          or with seconds=N the reply is held N seconds;
        - partial_fill: the next order placed fills half at once (a FILL_OR_KILL
          one is refused); a POST /orders takes it with an answer fault too;
        - lifecycle (pending=0, open=0, fill=None, end="closed", hidden=0,
          unit="lookups"): the next `times` orders placed (only a POST /orders
          that places an order takes it) are scripted, see `Lifecycle`.  The
          order is accepted OPEN with nothing filled and does not trade at once;
          it stays OPEN unfilled for `pending` units, then OPEN for `open`
          units with `fill` (0 < fill < 1) of its quantity executed on entering
          that stage at the then-current ask (buy) or bid (sell), never beyond
          its limit and as far as the funds cover (the rest is then cancelled);
          then CLOSED: end="closed" executes the rest at the
          then-current price, end="canceled" leaves it unfilled (closedAt set;
          kept visible even with no fills unless forget_unfilled_cancels).  It
          is invisible (404 ORDER_DOES_NOT_EXIST, not listed, DELETE says it does
          not exist) for its first `hidden` units; its clientOrderId is taken at
          once all the same.  A unit is one authenticated GET /orders/{id},
          /orders/open or /orders/closed of the account (each advances every
          lifecycle order of the account before it is answered), or with
          unit="seconds" a second of the simulated clock.  While OPEN it holds
          its funds (a market buy at the ask at placement); DELETE cancels its
          rest; `complete_orders` ends every script now.  A lifecycle is kept
          apart from the other faults: the same POST can also take one of those
          (lost_reply, http_500 with after=True...).
        """
        if fault == "lifecycle":
            Lifecycle.from_params(params)
        super().inject(method, fault, times, **params)

    # -------------------------------------------------------------------- HTTP

    def _route(self, request: Request) -> tuple[Route, re.Match] | None:
        for route in self._routes:
            match = route.regex.fullmatch(request.path)
            if route.method == request.method and match:
                return route, match
        return None

    def method_name(self, request: Request) -> str:
        found = self._route(request)
        return f"{request.method} {found[0].template if found else request.path}"

    def fault_keys(self, request: Request, name: str) -> Collection[str]:
        """"*", the HTTP method, and the route template and the path, each with or without
        /v3, alone or after the method."""
        keys = {"*", request.method}
        for route in (name.partition(" ")[2], request.path):
            for form in (route, route.removeprefix("/v3")):
                keys |= {form, f"{request.method} {form}"}
        return keys

    def handle(self, request: Request) -> Reply:
        found = self._route(request)
        if found is None:
            return json_reply({"code": "NOT_FOUND"}, 404)
        route, match = found
        try:
            with self.lock:
                self._count_request()
                account = self._authenticate(request) if route.signed else None
                if (route.method, route.template) in LOOKUP_ROUTES:
                    self._advance_scripts(account, "lookups")
                params = {k: v for k, v in match.groupdict().items() if v is not None}
                keys = self.fault_keys(request, f"{route.method} {route.template}")
                status, payload = route.handler(Call(params, request.query, request.body, account, keys))
        except ApiError as error:
            status, payload = error.status, error.body()
        return json_reply(payload, status)

    def error_reply(self, fault: Fault) -> Reply:
        if fault.kind == "http_503":
            return json_reply(ApiError(503, "SERVICE_UNAVAILABLE").body(), 503)  # code: our choice
        if fault.kind == "throttled":
            return json_reply(ApiError(429, "THROTTLED").body(), 429)
        return super().error_reply(fault)

    def _count_request(self) -> None:
        """Per real minute, reset when the minute turns (spec §4.5)."""
        minute = int(time.time() // 60)
        count = self._window[1] + 1 if self._window[0] == minute else 1
        self._window = (minute, count)
        if count > self.rate_limit:
            raise ApiError(429, "THROTTLED", f"more than {self.rate_limit} requests this minute")

    def _authenticate(self, request: Request) -> Account:
        """Spec §4.4: the URI is rebuilt from the Host header and the raw request target."""
        headers = request.headers
        account = self._accounts.get(headers.get("Api-Key", ""))
        if account is None:
            raise ApiError(401, "APIKEY_INVALID")
        sent = headers.get("Api-Signature", "")
        if not sent:
            raise ApiError(401, "APISIGN_NOT_PROVIDED")
        stamp = headers.get("Api-Timestamp", "")
        if not stamp.isdigit() or (self.timestamp_window is not None
                                   and abs(int(stamp) / 1000 - time.time()) > self.timestamp_window):
            raise ApiError(401, "INVALID_TIMESTAMP",  # our choice of code
                           f"Api-Timestamp must be epoch milliseconds within {self.timestamp_window} s of now")
        body_hash = content_hash(request.body)
        if headers.get("Api-Content-Hash", "").lower() != body_hash:
            raise ApiError(401, "INVALID_SIGNATURE", "Api-Content-Hash is not the SHA-512 of the body")
        uri = f"http://{headers.get('Host', '')}{request.target}"
        expected = signature(account.secret, stamp, uri, request.method, body_hash,
                             headers.get("Api-Subaccount-Id", ""))
        if not hmac.compare_digest(sent.lower(), expected):
            raise ApiError(401, "INVALID_SIGNATURE")
        return account

    # ----------------------------------------------------------- public routes

    def _resolve(self, symbol: str) -> MarketSpec:
        if symbol in self._markets:
            return self._markets[symbol]
        if "-".join(symbol.split("-")[::-1]) in self._markets:  # status 400: our choice
            raise ApiError(400, "MARKET_NAME_REVERSED", f"markets are BASE-QUOTE, not {symbol}")
        raise ApiError(404, "MARKET_DOES_NOT_EXIST", f"no market {symbol}")

    def _on_ping(self, r: Call) -> tuple[int, object]:
        return 200, {"serverTime": int(self.now) * 1000}

    def _market_wire(self, spec: MarketSpec) -> dict:
        return {"symbol": spec.symbol, "baseCurrencySymbol": spec.base, "quoteCurrencySymbol": spec.quote,
                "minTradeSize": f"{spec.min_trade_size:.8f}", "precision": spec.precision,
                "status": spec.status, "createdAt": iso(self.created_at, "seconds"), "notice": spec.notice,
                "prohibitedIn": [], "associatedTermsOfService": [], "tags": []}

    def _on_markets(self, r: Call) -> tuple[int, object]:
        return 200, [self._market_wire(spec) for spec in self._markets.values()]

    def _on_market(self, r: Call) -> tuple[int, object]:
        return 200, self._market_wire(self._resolve(r.params["marketSymbol"]))

    def _summary_wire(self, spec: MarketSpec) -> dict:
        """The last 24 h of the price path; high and low are "0" when nothing is known."""
        path = self._paths[spec.symbol]
        end = int(self.now // MINUTE) * MINUTE + MINUTE
        day = path.aggregate(end - 86400, end, self.now)
        out = {"symbol": spec.symbol, "high": rate(day.high, spec) if day else "0",
               "low": rate(day.low, spec) if day else "0",
               "volume": f"{day.volume if day else 0:.8f}", "quoteVolume": f"{quote_volume(day):.8f}"}
        if day:
            out["percentChange"] = f"{day.close * 100 / day.open - 100:.2f}"
        out["updatedAt"] = iso(self.now)
        return out

    def _on_summaries(self, r: Call) -> tuple[int, object]:
        return 200, [self._summary_wire(spec) for spec in self._markets.values()]

    def _on_summary(self, r: Call) -> tuple[int, object]:
        return 200, self._summary_wire(self._resolve(r.params["marketSymbol"]))

    def _bid_ask(self, spec: MarketSpec) -> tuple[Decimal, Decimal]:
        price = self._paths[spec.symbol].price(self.now)
        half, step = price * self.spread_percent / 200, Decimal(1).scaleb(-spec.precision)
        return (price - half).quantize(step, ROUND_DOWN), (price + half).quantize(step, ROUND_UP)

    def _ticker_wire(self, spec: MarketSpec) -> dict:
        bid, ask = self._bid_ask(spec)
        return {"symbol": spec.symbol, "lastTradeRate": rate(self._paths[spec.symbol].price(self.now), spec),
                "bidRate": rate(bid, spec), "askRate": rate(ask, spec)}

    def _on_tickers(self, r: Call) -> tuple[int, object]:
        return 200, [self._ticker_wire(spec) for spec in self._markets.values()]

    def _on_ticker(self, r: Call) -> tuple[int, object]:
        return 200, self._ticker_wire(self._resolve(r.params["marketSymbol"]))

    def _candle_args(self, r: Call) -> tuple[MarketSpec, str, int]:
        """TRADE and MIDPOINT candles are the same here: the path is the mid price."""
        spec = self._resolve(r.params["marketSymbol"])
        if r.params.get("candleType", "TRADE") not in ("TRADE", "MIDPOINT"):
            raise bad_request("candleType")
        name = r.params["candleInterval"]
        if name not in INTERVALS:
            raise bad_request("candleInterval")
        return spec, name, INTERVALS[name]

    def _candles_wire(self, spec: MarketSpec, first: int, last: int, interval: int) -> list[dict]:
        return [{"startsAt": iso(c.start, "seconds"), "open": rate(c.open, spec), "high": rate(c.high, spec),
                 "low": rate(c.low, spec), "close": rate(c.close, spec), "volume": f"{c.volume:.8f}",
                 "quoteVolume": f"{quote_volume(c):.8f}"}
                for c in self._paths[spec.symbol].candles(first, last, interval, self.now)]

    def _on_recent(self, r: Call) -> tuple[int, object]:
        """Up to the candle in progress, whose close is the current price."""
        spec, name, interval = self._candle_args(r)
        last = int(self.now // interval) * interval
        return 200, self._candles_wire(spec, last - RECENT_SPAN[name] + interval, last, interval)

    def _on_historical(self, r: Call) -> tuple[int, object]:
        """The day (minute intervals), month (HOUR_1) or year (DAY_1) named by the path, up to now."""
        spec, name, interval = self._candle_args(r)
        names = ("year", "month", "day")
        given = [part for part in names if part in r.params]
        wanted = names[:HISTORICAL_PARTS[name]]
        if tuple(given) != wanted:
            wrong = next(p for p in names if (p in given) != (p in wanted))
            raise bad_request(wrong, f"{name} candles need {'/'.join(wanted)}")
        numbers = []
        for part in given:
            if not r.params[part].isdigit():
                raise bad_request(part)
            numbers.append(int(r.params[part]))
        year, month, day = numbers + [1] * (3 - len(numbers))
        if not 1970 <= year <= 9998:
            raise bad_request("year")
        if not 1 <= month <= 12:
            raise bad_request("month")
        try:
            start = datetime(year, month, day, tzinfo=UTC)
        except ValueError:
            raise bad_request("day") from None
        if len(numbers) == 1:
            end = start.replace(year=year + 1)
        elif len(numbers) == 2:
            end = start.replace(year=year + month // 12, month=month % 12 + 1)
        else:
            end = start + timedelta(days=1)
        last = min(int(end.timestamp()) - interval, int(self.now // interval) * interval)
        return 200, self._candles_wire(spec, int(start.timestamp()), last, interval)

    # ---------------------------------------------------------- account routes

    def _on_balances(self, r: Call) -> tuple[int, object]:
        return 200, [r.account.wire(c) for c in sorted(r.account.totals)]

    def _on_balance(self, r: Call) -> tuple[int, object]:
        currency = r.params["currencySymbol"]
        known = {c for spec in self._markets.values() for c in (spec.base, spec.quote)} | set(r.account.totals)
        if currency not in known:
            raise ApiError(404, "CURRENCY_DOES_NOT_EXIST", f"no currency {currency}")
        return 200, r.account.wire(currency)

    def _own_order(self, r: Call) -> Order:
        order = self._orders.get(r.params["orderId"])
        if order is None or order.key != r.account.key or not order.visible:
            raise ApiError(404, "ORDER_DOES_NOT_EXIST", f"no order {r.params['orderId']}")
        return order

    def _on_get_order(self, r: Call) -> tuple[int, object]:
        return 200, self._own_order(r).wire()

    def _on_executions(self, r: Call) -> tuple[int, object]:
        return 200, self._own_order(r).executions

    def _on_cancel_order(self, r: Call) -> tuple[int, object]:
        order = self._own_order(r)
        if order.closed is not None:
            raise ApiError(409, "ORDER_NOT_OPEN", f"order {order.id} is closed")
        self._cancel(order, r.account)
        return 200, order.wire()

    def _market_filter(self, r: Call) -> str | None:
        symbol = r.query.get("marketSymbol")
        return self._resolve(symbol).symbol if symbol else None

    def _on_open_orders(self, r: Call) -> tuple[int, object]:
        market = self._market_filter(r)
        return 200, [o.wire() for o in self._orders.values()
                     if o.key == r.account.key and o.closed is None and o.visible
                     and market in (None, o.market.symbol)]

    def _on_closed_orders(self, r: Call) -> tuple[int, object]:
        """Newest closed first; the page tokens are order ids (spec §4.3)."""
        q, market = r.query, self._market_filter(r)
        start = parse_iso(q["startDate"], "startDate") if q.get("startDate") else -math.inf
        end = parse_iso(q["endDate"], "endDate") if q.get("endDate") else math.inf
        if end < start:
            raise bad_request("endDate", "endDate is before startDate")
        size = q.get("pageSize", "100")
        if not size.isdigit() or not 1 <= int(size) <= 200:
            raise bad_request("pageSize", "pageSize must be 1 to 200")
        size = int(size)
        if q.get("nextPageToken") and q.get("previousPageToken"):
            raise bad_request("previousPageToken", "nextPageToken and previousPageToken exclude each other")
        orders = sorted((o for o in self._orders.values()
                         if o.key == r.account.key and o.closed is not None and o.visible
                         and market in (None, o.market.symbol) and start <= o.closed <= end),
                        key=lambda o: (o.closed, o.seq), reverse=True)
        ids = [o.id for o in orders]
        for token, code in (("nextPageToken", "INVALID_NEXT_PAGE_TOKEN"),
                            ("previousPageToken", "INVALID_PREVIOUS_PAGE_TOKEN")):
            if q.get(token) and q[token] not in ids:
                raise ApiError(400, code, f"{token} {q[token]} is not an order of this listing")
        if q.get("nextPageToken"):
            at = ids.index(q["nextPageToken"]) + 1
            orders = orders[at:at + size]
        elif q.get("previousPageToken"):
            at = ids.index(q["previousPageToken"])
            orders = orders[max(at - size, 0):at]
        else:
            orders = orders[:size]
        return 200, [o.wire() for o in orders]

    # ------------------------------------------------------------------ orders

    def _on_post_order(self, r: Call) -> tuple[int, object]:
        """Validate a NewOrder as Bittrex did, then fill what crosses at once (spec §4.3, §4.5)."""
        try:
            new = json.loads(r.body, parse_float=Decimal)
        except ValueError:
            raise bad_request("body", "the body is not JSON") from None
        if not isinstance(new, dict):
            raise bad_request("body", "the body is not a NewOrder object")
        if not isinstance(new.get("marketSymbol"), str):
            raise bad_request("marketSymbol")
        spec = self._resolve(new["marketSymbol"])
        direction, kind, tif = new.get("direction"), new.get("type"), new.get("timeInForce")
        for name, value, allowed in (("direction", direction, ("BUY", "SELL")), ("type", kind, ORDER_TYPES),
                                     ("timeInForce", tif, TIMES_IN_FORCE)):
            if value not in allowed:
                raise bad_request(name, f"{name} must be one of {', '.join(allowed)}")
        if kind == "MARKET" and tif not in IMMEDIATE:
            raise ApiError(400, "INVALID_MARKET_ORDER", "a MARKET order must be IMMEDIATE_OR_CANCEL or FILL_OR_KILL")
        if tif not in IMMEDIATE and not (kind == "LIMIT" and tif in RESTING):
            raise ApiError(400, "INVALID_ORDER_TYPE", f"a {kind} order cannot be {tif}")
        ceiling_type = kind.startswith("CEILING")
        wanted = {"quantity": not ceiling_type, "ceiling": ceiling_type, "limit": kind.endswith("LIMIT")}
        amounts: dict[str, Decimal | None] = {}
        for name, needed in wanted.items():
            amounts[name] = amount(new.get(name), name)
            if needed != (amounts[name] is not None):
                raise bad_request(name, f"{name} is {'required' if needed else 'not allowed'} for {kind}")
        quantity, ceiling, limit = amounts["quantity"], amounts["ceiling"], amounts["limit"]
        if quantity is not None and decimals(quantity) > 8:
            raise bad_request("quantity", "quantity has more than 8 decimals")  # our choice
        if limit is not None and decimals(limit) > spec.precision:
            raise ApiError(400, "RATE_PRECISION_NOT_ALLOWED", f"{spec.symbol} rates have {spec.precision} decimals")
        client_id = self._client_order_id(new.get("clientOrderId"), r.account)
        if spec.status != "ONLINE":
            raise ApiError(503, "MARKET_OFFLINE", spec.notice or f"{spec.symbol} is offline")

        buy = direction == "BUY"
        bid, ask = self._bid_ask(spec)
        taker_rate = ask if buy else bid
        crosses = limit is None or (taker_rate <= limit if buy else taker_rate >= limit)
        if ceiling_type:
            per_unit = taker_rate * (1 + self.commission_percent / 100) if buy else taker_rate
            quantity = (ceiling / per_unit).quantize(EIGHT, ROUND_DOWN)
        if quantity < spec.min_trade_size:
            raise ApiError(409, "MIN_TRADE_REQUIREMENT_NOT_MET",
                           f"{spec.symbol} orders need at least {spec.min_trade_size} {spec.base}")
        if spec.quote == "BTC" and quantity * (limit or taker_rate) < DUST_BTC:  # status 409: our choice
            raise ApiError(409, "DUST_TRADE_DISALLOWED_MIN_VALUE", "the order is worth less than 10000 satoshi")
        if tif == "POST_ONLY_GOOD_TIL_CANCELLED" and crosses:
            raise ApiError(409, "POST_ONLY", "the order would fill at once")
        fill = quantity if crosses else Decimal(0)
        scripted = self.next_fault(r.fault_keys, shaping=True, kinds=("lifecycle",)) is not None
        if not scripted and self.take_fault(r.fault_keys, shaping=True, kinds=("partial_fill",)):
            fill = (fill / 2).quantize(EIGHT, ROUND_DOWN)
        if tif == "FILL_OR_KILL" and fill < quantity:
            raise ApiError(409, "FILL_OR_KILL", "the order cannot fill completely at once")
        rests = tif in RESTING or scripted
        hold_rate = limit if limit is not None else taker_rate
        if scripted:
            fill = Decimal(0)  # the script decides when it trades
        if buy:
            need = sum(self._cost(fill, taker_rate)) + (self._hold_amount(quantity - fill, hold_rate) if rests else 0)
        else:
            need = quantity if rests else fill
        currency = spec.quote if buy else spec.base
        if r.account.available(currency) < need:
            raise ApiError(409, "INSUFFICIENT_FUNDS", f"{need} {currency} needed, "
                                                      f"{r.account.available(currency)} available")

        order = Order(self._new_id(), r.account.key, spec, direction, kind, tif, quantity, ceiling, limit,
                      client_id, created=self.now, seq=len(self._orders), updated=self.now, hold_rate=hold_rate)
        self._orders[order.id] = order
        if scripted:  # taken only now: a refused order leaves the script to the next one
            script = self.take_fault(r.fault_keys, shaping=True, kinds=("lifecycle",))
            order.script = Lifecycle.from_params(script.params)
            self._scripted.append(order)
            self._set_hold(order, r.account)
            return 201, order.wire()
        if fill:
            self._fill(order, r.account, fill, taker_rate, taker=True)
        if rests and order.remaining:
            self._set_hold(order, r.account)
        else:
            self._close(order, r.account)
        return 201, order.wire()

    def _client_order_id(self, value: object, account: Account) -> str | None:
        """A UUID not used by this account in the last 24 h (simulated time)."""
        if value is None:
            return None
        try:
            client_id = str(uuid.UUID(str(value)))
        except ValueError:
            raise bad_request("clientOrderId", "clientOrderId must be a UUID") from None
        for order in self._orders.values():
            if (order.key == account.key and order.client_order_id == client_id
                    and self.now - order.created < CLIENT_ID_MEMORY):
                # Where the existing id sits in `data` is our choice (spec: unconfirmed).
                raise ApiError(409, "CLIENTORDERID_ALREADY_EXISTS", f"order {order.id} has this clientOrderId",
                               {"existingOrderId": order.id})
        return client_id

    def _new_id(self) -> str:
        return str(uuid.UUID(int=self._ids.getrandbits(128), version=4))

    def _cost(self, quantity: Decimal, at: Decimal) -> tuple[Decimal, Decimal]:
        """(proceeds, commission) of a fill, both in quote currency."""
        proceeds = (quantity * at).quantize(EIGHT, ROUND_HALF_EVEN)
        return proceeds, (proceeds * self.commission_percent / 100).quantize(EIGHT, ROUND_UP)

    def _hold_amount(self, quantity: Decimal, at: Decimal) -> Decimal:
        """Quote reserved by an open buy: its cost at `at` (its hold rate), commission included."""
        return (quantity * at * (1 + self.commission_percent / 100)).quantize(EIGHT, ROUND_UP)

    def _set_hold(self, order: Order, account: Account) -> None:
        if order.closed is not None:
            amount_now = Decimal(0)
        elif order.direction == "BUY":
            amount_now = self._hold_amount(order.remaining, order.hold_rate)
        else:
            amount_now = order.remaining
        account.hold(order.hold_currency, amount_now - order.held, self.now)
        order.held = amount_now

    def _fill(self, order: Order, account: Account, quantity: Decimal, at: Decimal, taker: bool) -> None:
        proceeds, commission = self._cost(quantity, at)
        base, quote = order.market.base, order.market.quote
        if order.direction == "BUY":
            account.change(quote, -(proceeds + commission), self.now)
            account.change(base, quantity, self.now)
        else:
            account.change(base, -quantity, self.now)
            account.change(quote, proceeds - commission, self.now)
        order.fill_quantity += quantity
        order.proceeds += proceeds
        order.commission += commission
        order.updated = self.now
        order.executions.append({"id": self._new_id(), "marketSymbol": order.market.symbol,
                                 "executedAt": iso(self.now), "quantity": f"{quantity:.8f}",
                                 "rate": rate(at, order.market), "orderId": order.id,
                                 "commission": f"{commission:.8f}", "isTaker": taker})

    def _close(self, order: Order, account: Account) -> None:
        order.closed = order.updated = self.now
        self._set_hold(order, account)

    def _cancel(self, order: Order, account: Account) -> None:
        """CLOSED with what filled; without fills it may vanish (spec §4.3), if so configured."""
        self._close(order, account)
        order.hidden = self.forget_unfilled_cancels and not order.fill_quantity

    def _advance_scripts(self, account: Account | None, unit: str) -> None:
        """One lookup of `account` (unit "lookups"), or the clock moved (unit "seconds", account None)."""
        for order in list(self._scripted):
            script = order.script
            if script.unit != unit or (account is not None and order.key != account.key):
                continue
            script.elapsed = script.elapsed + 1 if unit == "lookups" else self.now - order.created
            self._run_script(order)
            if script.stage == "done" and not script.lagging:
                self._scripted.remove(order)

    def _run_script(self, order: Order) -> None:
        """Carry out the stages of a lifecycle order that `elapsed` has reached."""
        script, account = order.script, self._accounts[order.key]
        if order.closed is not None:  # cancelled by DELETE
            script.stage = "done"
        if script.stage == "pending" and script.elapsed > script.pending:
            script.stage = "open"
            if script.fill is not None:
                self._scripted_fill(order, account, (order.quantity * script.fill).quantize(EIGHT, ROUND_DOWN))
        if script.stage == "open" and script.elapsed > script.pending + script.open:
            script.stage = "done"
            if script.end == "closed" and order.closed is None:
                self._scripted_fill(order, account, order.remaining)
            if order.closed is None:
                (self._close if script.end == "closed" else self._cancel)(order, account)

    def _scripted_fill(self, order: Order, account: Account, quantity: Decimal) -> None:
        """A fill at the current ask (buy) or bid (sell), never beyond the order's limit, as far
        as the account's funds (the order's own hold included) cover it; the rest is cancelled if
        not (a market buy holds at the ask of its placement, and the price may have risen)."""
        if quantity <= 0:
            return
        bid, ask = self._bid_ask(order.market)
        free = account.available(order.hold_currency) + order.held
        if order.direction == "BUY":
            at = ask if order.limit is None else min(ask, order.limit)
            covered = min(quantity, (max(free, Decimal(0)) / (at * (1 + self.commission_percent / 100)))
                          .quantize(EIGHT, ROUND_DOWN))
            while covered > 0 and sum(self._cost(covered, at)) > free:
                covered -= EIGHT
        else:
            at = bid if order.limit is None else max(bid, order.limit)
            covered = min(quantity, max(free, Decimal(0)))
        if covered > 0:
            self._fill(order, account, covered, at, taker=True)
            self._set_hold(order, account)
        if covered < quantity:
            self._cancel(order, account)

    def _match_open_orders(self) -> None:
        """Resting limit orders fill, at their limit, once the current price crosses it (a lifecycle
        order trades only as its script says)."""
        for order in self._orders.values():
            if order.closed is not None or order.script is not None:
                continue
            bid, ask = self._bid_ask(order.market)
            if (ask <= order.limit) if order.direction == "BUY" else (bid >= order.limit):
                account = self._accounts[order.key]
                self._fill(order, account, order.remaining, order.limit, taker=False)
                self._close(order, account)


def amount(value: object, name: str) -> Decimal | None:
    """A positive decimal from a JSON number or string; None when absent."""
    if value is None:
        return None
    try:
        result = to_decimal(value, name)
    except ValueError:
        raise bad_request(name, f"{name} is not a number") from None
    if result <= 0:
        raise bad_request(name, f"{name} must be positive")
    return result


def decimals(value: Decimal) -> int:
    return max(-value.normalize().as_tuple().exponent, 0)


def quote_volume(candle: Candle | None) -> Decimal:
    """Base volume at the typical price (high + low + close) / 3: recorded data has no quote volume."""
    if candle is None:
        return Decimal(0)
    return candle.volume * (candle.high + candle.low + candle.close) / 3


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Bittrex v3 simulator on 127.0.0.1 (base URL <url>/v3)")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--key", default="simulator-key")
    parser.add_argument("--secret", default="simulator-secret")
    args = parser.parse_args(argv)
    sim = BittrexSimulator(start_time=time.time(), port=args.port)
    sim.add_account(args.key, args.secret, {"EUR": "1000", "BTC": "0.01"})
    with sim:
        print(f"Bittrex v3 simulator: {sim.url}/v3  key {args.key}  secret {args.secret}  (Ctrl-C stops it)",
              flush=True)
        try:
            while True:
                time.sleep(1)
                sim.set_time(time.time())
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
