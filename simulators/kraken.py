"""A local Kraken spot REST simulator that real Kraken clients talk to unchanged.

    with KrakenSimulator() as sim:
        key, secret = sim.add_account(balances={"ZEUR": "100"})
        api = krakenex.API(key, secret)
        api.uri = sim.url                       # the only change krakenex needs
        api.query_private("AddOrder", {"pair": "XBTEUR", "type": "buy", "ordertype": "market",
                                       "volume": "0.001"})

ccxt's `kraken` needs every URL of `exchange.urls["api"]` set to `sim.url`;
python-kraken-sdk's clients take `url=sim.url` (tests/test_kraken_sim_clients.py
drives both).

It follows ../shared/spec/exchange-apis.md §1-3: the same paths, parameters,
JSON shapes, error strings, authentication (API-Sign recomputed from the raw body
bytes) and per-key call counter, and docs.kraken.com where the spec is silent.
"[docs: page]" marks a behaviour docs.kraken.com documents, "[ours]" a choice of
the simulator's where Kraken documents nothing.

Market model
- Every pair follows a price path on a simulated clock (`clock`, `set_time`,
  `advance`): real candles given to `load_candles`, or a seeded random walk of
  1-minute candles (prices.synthetic_path) covering the 31 days before the
  simulator's start and extended as the clock moves.  `set_price` rewrites the
  path from now on: the price stays flat there until the next change.
- No look-ahead: at clock t a source candle that has not closed shows only its
  open.  The price at t is the open of the source candle holding t, else the
  close of the last one before t.  OHLC aggregates source candles into epoch-
  aligned intervals; the last row is the interval holding t (always present,
  flat at the price when it has no data); `last` is the open time of the newest
  committed row; `since` keeps rows opening after it.  Intervals finer than the
  source data show one row per source candle.  `count` is the number of source
  candles with volume, a stand-in for the number of trades.
- Ask and bid are the price plus and minus half of `spread_percent`, rounded
  outwards to the tick.  Market orders fill at once (buy at the ask, sell at the
  bid) with the taker fee; a limit order that crosses on arrival fills the same
  way, otherwise it rests, holding its funds, and fills at its limit price with
  the maker fee once the path's low (buy) or high (sell), spread applied,
  reaches it (a source candle still open when the order arrived counts
  entirely).  Fees are charged in the quote currency (oflags fcib is accepted
  and ignored), always at the first fee tier.  cost = price x volume rounded
  half-even to cost_decimals; fee = cost x percent / 100 rounded up to
  cost_decimals; a buy debits cost + fee, a sell credits cost - fee.
- Depth [docs: get-order-book: asks/bids of [price, volume, timestamp], count
  1-500, default 100]: the ticker's ask and bid first, then a level every
  0.02 % of the price (at least a tick); volumes are a seeded 1-200 x ordermin
  that change each simulated minute, timestamps within the last minute [ours:
  the book is scenery, our own orders are not in it].
- Trades [docs: get-recent-trades: [price, volume, time, "b"/"s", "m"/"l",
  misc, trade_id], "last" a nanosecond string, the last 1000 by default]: the
  tape of the price path [ours]: four trades a closed source candle with volume
  (open, low or high, high or low, close; its volume split evenly, so a
  minute's trades add up to its OHLC volume), one at the open of the candle
  holding the clock (volume ordermin: its volume is not known yet), so the last
  trade is the ticker's last price.  A trade is a buy when its price is not
  below the one before it in its candle.  trade_id is the trade's unix second.
  `since` takes seconds or an earlier answer's nanosecond `last`; count 1-1000.
  Our own orders' fills are not on the public tape [ours].
- Only `market` and `limit` orders with `timeinforce` GTC are modelled.  A
  parameter the simulator does not model is accepted at the value that means
  "not used" - reduce_only=false, leverage=none, starttm/expiretm=0,
  displayvol, price2, close[...] empty, trigger=last, asset_class=currency,
  any documented stptype (one account never trades with itself) - and refused
  with `EGeneral:Invalid arguments:<field>` at any other value rather than
  ignored [ours].  Parameters Kraken does not know are ignored, as Kraken does
  [Kraken support, "API error messages": unnecessary parameters are ignored].
  `deadline` (RFC 3339) already past is `EService:Deadline elapsed` [docs:
  add-order, spot-errors]; a later one is met at once.
- validate [docs: add-order: boolean, default false, "validate inputs only, do
  not submit order"]: true/1 checks and answers the description without a txid;
  false/0 or absent places the order (older krakenex-era docs treated any
  value as validate-only; the current docs do not).

Orders
- Statuses pending, open, closed, canceled [docs: order-lifecycle].  OpenOrders
  lists pending and open orders; closetm and reason appear once an order is
  final.  CancelOrder cancels the rest of a pending or open order; a canceled
  order that filled in part has misc "partial".
- BalanceEx [docs: get-extended-balance: per asset balance, hold_trade, credit,
  credit_used; available = balance + credit - credit_used - hold_trade]:
  balance as Balance gives it, credit and credit_used 0, hold_trade what the
  account's pending and open orders hold (a buy its cost and taker fee at its
  limit, or at the ask of its placement for a lifecycle market buy; a sell its
  volume), in the asset's decimals or more.

Authentication [docs: spot-rest-auth]: API-Sign = HMAC-SHA512(path +
SHA256(nonce + body)) over the exact body bytes.  A body with Content-Type
application/json [docs: the newer reference pages send JSON, e.g.
get-extended-balance] is verified over its raw text with the nonce taken from
the JSON object; its values may be strings, numbers, booleans (true/false),
lists (txid: comma-joined [ours]) or objects (close: close[ordertype]...
[ours]).  A JSON body that does not parse is `EGeneral:Invalid arguments` [ours].

Faults, injected with inject(method, fault, times=1, **params) (method "*" for
any) or POST /_sim/fault {"method", "fault", "times", ...params}:
- those of simulators.http: delay (seconds=1), http_500, http_520 and
  malformed_json (after=False: the call is not processed; after=True: it is,
  an AddOrder places its order, and the answer is replaced), drop (closed
  without an answer, not processed), lost_reply (processed, then dropped, or
  held `seconds`);
- Kraken errors, HTTP 200, after=False (not processed) or after=True
  (processed, then the error replaces the result): service_unavailable
  "EService:Unavailable", busy "EService:Busy", rate_limit "EAPI:Rate limit
  exceeded", invalid_nonce "EAPI:Invalid nonce", throttled "EService:Throttled:
  <unix time of the simulated clock + seconds (5)>" [docs: spot REST rate
  limits writes "EService: Throttled: [UNIX timestamp]"; we write it without
  the space, as every other Kraken error and the clients that parse it do],
  too_many_requests "EGeneral:Too many requests" [ccxt's map], deadline_elapsed
  "EService:Deadline elapsed", lockout "EGeneral:Temporary lockout",
  internal_error "EGeneral:Internal error" [docs: spot-errors];
- partial_fill (AddOrder only, fraction=0.5): a market order fills that much
  and ends canceled (reason "Partial fill", misc "partial"), a limit order
  fills that much at once and rests for the rest;
- lifecycle (AddOrder only; pending=0, open=0, fill=None, end="closed",
  hidden=0, unit="lookups"): the next market order placed is accepted (txid
  returned) but not executed at once.  Unit u (the u-th QueryOrders, OpenOrders
  or ClosedOrders call of the account, each advancing every lifecycle order of
  the account by one before it is answered; or with unit="seconds" the
  simulated second ending at u) is in stage "pending" while u <= pending, "open"
  while u <= pending + open, final after; a stage of length 0 is skipped at
  placement, so pending=open=0 fills at once as without the fault.  On opening
  it executes `fill` (0 < fill < 1) of its volume at the then-current ask
  (buy) or bid (sell) with the taker fee; the final step executes the rest at
  the then-current price and closes it (end="closed") or cancels the rest
  (end="canceled", reason "Partial fill", or "No fill" when nothing filled
  [ours]).  While pending or open it holds its funds (a buy at the ask of its
  placement, taker fee included); a buy whose free quote cannot cover the
  price of the moment fills what it covers and cancels the rest (reason
  "Insufficient funds" [ours]).  For u <= hidden it is invisible: QueryOrders
  answers as for an unknown txid, OpenOrders, ClosedOrders and TradesHistory
  leave it out, CancelOrder says unknown order; its cl_ord_id is taken all the
  same.  Example, pending=1, open=1, fill=0.4: the first lookup sees it pending,
  the second open with 0.4 filled, the third closed.  Limit orders do not take
  a lifecycle; an AddOrder refused or only validated leaves it for the next
  order; the same AddOrder can also meet an answer fault (http_500 after=True,
  deadline_elapsed after=True, lost_reply...).  complete_orders() ends every
  script now.  The Bittrex simulator's lifecycle works alike.

Driving it (thread-safe; pair names may be keys, altnames or wsnames):
- accounts: add_account(key=None, secret=None, balances=None, tier="starter",
  nonce_window=0) -> (key, secret), set_balance(key, asset, amount),
  balances(key) -> {asset: Decimal}, account_orders(key) -> [Order] (copies of
  every order ever placed, oldest first, hidden ones included: txid, cl_ord_id,
  userref, side, pair (a Pair: .key), status, vol, vol_exec, cost, fee, reason,
  misc, lifecycle), complete_orders(), rest_counter(key),
  decay_counters(seconds);
- markets: add_pair(key, base, quote, price, ...), add_synthetic_pairs(n,
  quote="ZEUR") -> keys, pair(name), set_pair_status(pair, status),
  set_system_status(status);
- prices: clock, set_time(ts), advance(seconds), load_candles(pair, rows or CSV
  path, interval=None), set_price(pair, price), price(pair), bid_ask(pair);
- faults: inject(...), clear_faults(); `calls`, a Counter of the API methods
  called, and `last_query`;
- the JSON control API: POST /_sim/time {"ts"} or {"advance"}, /_sim/price
  {"pair", "price"}, /_sim/pair_status {"pair", "status"}, /_sim/system_status
  {"status"}, /_sim/fault {"method", "fault", "times", ...} or {"clear": true},
  /_sim/complete_orders {}; GET /_sim/calls.

Choices for unconfirmed details: API errors are HTTP 200; checks run key ->
signature -> nonce -> rate limit -> arguments -> pair -> business rules; an
unknown method is `EGeneral:Unknown method`; too many decimals is
`EGeneral:Invalid arguments:volume|price`, a price off the tick `EOrder:Invalid
price`; an unknown txid in QueryOrders is `EOrder:Invalid order`; a cl_ord_id
already used by a pending or open order is `EOrder:Duplicate cl_ord_id`; an
order refused by a pair or system status gets `EService:Market in <status>
mode` (`EService:Unavailable` under maintenance, which also refuses cancels);
the optional per-IP public limit answers `EAPI:Rate limit exceeded`; a Depth or
Trades count out of range is `EGeneral:Invalid arguments:count`.  Repeated
auth failures do not lead to `EGeneral:Temporary lockout` (the lockout fault
stands in).

Run by hand: python -m simulators.kraken --port 8080 [--csv FILE --pair
XXBTZEUR ...] [--seed N] prints its URL and a funded demo key and secret.
"""
from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import hmac
import json
import math
import random
import re
import secrets
import threading
import time
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_EVEN, ROUND_UP, Decimal
from os import PathLike
from urllib.parse import parse_qsl

from includes.money import ZERO, round_down, round_half_even, to_decimal
from simulators.http import Fault, Reply, Request, SimulatorServer, json_reply
from simulators.lifecycle import Lifecycle
from simulators.prices import Candle, Row, Series, read_candle_csv, synthetic_series

INTERVALS = (1, 5, 15, 30, 60, 240, 1440, 10080, 21600)    # OHLC, minutes
OHLC_ROWS = 720
PAGE = 50                                                   # ClosedOrders, TradesHistory
MAX_QUERY_TXIDS = 50
HISTORY_MINUTES = 31 * 1440         # synthetic history before the simulator's start
EXTENSION_MINUTES = 1440            # the walk grows a day at a time as the clock moves

TIERS = {"starter": (15, 0.33), "intermediate": (20, 0.5), "pro": (20, 1.0)}   # max counter, decay/s
CALL_COST = {"AddOrder": 0, "CancelOrder": 0, "TradesHistory": 2, "QueryTrades": 2,
             "Ledgers": 2, "QueryLedgers": 2}                                    # default 1
SYSTEM_STATUSES = ("online", "maintenance", "cancel_only", "post_only")
OFLAGS = frozenset({"post", "fcib", "fciq", "nompp", "viqc"})
# AddOrder parameters the simulator does not model: accepted only at the value that means "not used"
NOT_MODELLED = {"leverage": ("", "0", "none"), "reduce_only": ("", "false", "0"), "starttm": ("", "0", "+0"),
                "expiretm": ("", "0", "+0"), "displayvol": ("", "0"), "price2": ("", "0"), "trigger": ("", "last"),
                "close[ordertype]": ("",), "close[price]": ("", "0"), "close[price2]": ("", "0"),
                "asset_class": ("", "currency"),
                # one account never trades with itself: every self-trade prevention behaves alike
                "stptype": ("", "cancel-newest", "cancel-oldest", "cancel-both")}
LOOKUPS = ("QueryOrders", "OpenOrders", "ClosedOrders")     # the calls that advance a lifecycle by "lookups"
DEPTH_COUNT, MAX_DEPTH_COUNT = 100, 500
TRADES_COUNT, MAX_TRADES_COUNT = 1000, 1000
THROTTLE_SECONDS = 5                # EService:Throttled: the retry time it names, after now
FEE_TIER_VOLUMES = (0, 50000, 100000, 250000, 500000, 1000000)
TRADE_TYPES = ("all", "any position", "closed position", "closing position", "no position")

CL_ORD_ID_RE = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
                          r"|[0-9a-fA-F]{32}|[\x20-\x7e]{1,18}")
ID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"

DEFAULT_ASSETS = [  # id, altname, decimals, display_decimals
    ("ZEUR", "EUR", 4, 2), ("ZUSD", "USD", 4, 2), ("XXBT", "XBT", 10, 5), ("XETH", "ETH", 10, 5),
    ("XLTC", "LTC", 10, 5), ("XXRP", "XRP", 8, 5), ("XXDG", "XDG", 8, 2), ("ADA", "ADA", 8, 6),
    ("DOT", "DOT", 10, 8), ("SOL", "SOL", 10, 5), ("LINK", "LINK", 10, 5)]
DEFAULT_PAIRS = [  # key, base, quote, reference price, pair_decimals, ordermin
    ("XXBTZEUR", "XXBT", "ZEUR", "30000", 1, "0.0001"),
    ("XETHZEUR", "XETH", "ZEUR", "2000", 2, "0.002"),
    ("XLTCZEUR", "XLTC", "ZEUR", "70", 2, "0.05"),
    ("XXRPZEUR", "XXRP", "ZEUR", "0.5", 5, "10"),
    ("XDGEUR", "XXDG", "ZEUR", "0.08", 7, "50"),
    ("ADAEUR", "ADA", "ZEUR", "0.35", 6, "15"),
    ("DOTEUR", "DOT", "ZEUR", "5", 4, "1"),
    ("SOLEUR", "SOL", "ZEUR", "60", 2, "0.02"),
    ("LINKEUR", "LINK", "ZEUR", "12", 5, "0.2"),
    ("XXBTZUSD", "XXBT", "ZUSD", "32000", 1, "0.0001"),
    ("XETHZUSD", "XETH", "ZUSD", "2150", 2, "0.002"),
    ("ZEURZUSD", "ZEUR", "ZUSD", "1.08", 5, "5"),
    ("XETHXXBT", "XETH", "XXBT", "0.066", 5, "0.002"),
    ("ADAXBT", "ADA", "XXBT", "0.0000117", 8, "15")]
QUOTE_COSTMIN = {"XXBT": "0.00002", "XETH": "0.0002"}       # other quotes: 0.5


class KrakenError(Exception):
    """An answer with a Kraken error string (HTTP 200 unless `status` says otherwise)."""

    def __init__(self, message: str, status: int = 200) -> None:
        super().__init__(message)
        self.message, self.status = message, status


@dataclass
class Asset:
    id: str
    altname: str
    decimals: int = 8
    display_decimals: int = 5
    status: str = "enabled"


@dataclass
class Pair:
    key: str
    base: str
    quote: str
    altname: str
    wsname: str
    price: Decimal                  # where the synthetic walk starts
    pair_decimals: int
    lot_decimals: int
    cost_decimals: int
    ordermin: Decimal
    costmin: Decimal
    tick_size: Decimal
    status: str = "online"
    volatility: float = 0.001
    series: Series | None = None    # None until first needed, then the synthetic walk
    synthetic: bool = True          # the walk grows as the clock moves

    def price_text(self, value: Decimal) -> str:
        """A price as Kraken writes it for this pair."""
        return _fmt(value, self.pair_decimals)

    def volume_text(self, value: Decimal) -> str:
        return _fmt(value, self.lot_decimals)

    def cost_text(self, value: Decimal) -> str:
        return _fmt(value, self.cost_decimals)


@dataclass
class Order:
    txid: str
    account: str
    pair: Pair
    side: str
    ordertype: str
    vol: Decimal
    price: Decimal | None           # limit price
    userref: int | None
    cl_ord_id: str | None
    oflags: str
    opentm: float
    seq: int
    status: str = "open"
    vol_exec: Decimal = ZERO
    cost: Decimal = ZERO
    fee: Decimal = ZERO
    value: Decimal = ZERO           # sum of price x volume of the fills, for the average price
    closetm: float | None = None
    reason: str | None = None
    misc: str = ""
    trades: list[str] = field(default_factory=list)
    hold_price: Decimal | None = None   # a lifecycle market order holds its funds at the price of its placement
    lifecycle: Lifecycle | None = None

    @property
    def visible(self) -> bool:
        return self.lifecycle is None or not self.lifecycle.lagging

    @property
    def live(self) -> bool:
        """Pending or open: it holds funds and can be canceled."""
        return self.status in ("pending", "open")


@dataclass
class Trade:
    txid: str
    order: Order
    postxid: str
    time: float
    price: Decimal
    vol: Decimal
    cost: Decimal
    fee: Decimal
    maker: bool
    trade_id: int


@dataclass
class Account:
    key: str
    secret: bytes
    balances: dict[str, Decimal]
    tier: str
    nonce_window: int
    last_nonce: int = 0
    recent_nonces: set[int] = field(default_factory=set)   # accepted within the window
    counter: float = 0.0
    counter_at: float = field(default_factory=time.monotonic)
    orders: dict[str, Order] = field(default_factory=dict)
    trades: dict[str, Trade] = field(default_factory=dict)


def sign(secret: str, path: str, body: bytes | str) -> str:
    """API-Sign of a private call (spec §2.2), the nonce taken from `body`: a JSON
    object when it starts with "{", else urlencoded."""
    body = body.encode() if isinstance(body, str) else body
    try:
        params = _json_params(body) if body.lstrip().startswith(b"{") else _form_params(body)
    except KrakenError:
        params = {}
    return _signature(base64.b64decode(secret), path, body, params.get("nonce", ""))


def _signature(secret: bytes, path: str, body: bytes, nonce: str) -> str:
    """HMAC-SHA512 of (path + SHA256(nonce + the raw body bytes)), as docs.kraken.com's
    "Spot REST Authentication" gives it, for form and JSON bodies alike."""
    inner = hashlib.sha256(nonce.encode() + body).digest()
    return base64.b64encode(hmac.new(secret, path.encode() + inner, hashlib.sha512).digest()).decode()


def _form_params(body: bytes) -> dict[str, str]:
    return dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))


def _json_params(body: bytes) -> dict[str, str]:
    """The parameters of a JSON body as the strings a form body would carry: booleans
    "true"/"false", numbers as written, lists comma-joined (txid), objects as
    name[key] (close[ordertype]); null means absent."""
    try:
        obj = json.loads(body, parse_float=Decimal)
    except ValueError:
        raise KrakenError("EGeneral:Invalid arguments") from None
    if not isinstance(obj, dict):
        raise KrakenError("EGeneral:Invalid arguments")
    params: dict[str, str] = {}

    def text(value: object) -> str:
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, (str, int, Decimal)):
            return str(value)
        raise KrakenError("EGeneral:Invalid arguments")

    def put(name: str, value: object) -> None:
        if value is None:
            return
        if isinstance(value, dict):
            for key, inner in value.items():
                put(f"{name}[{key}]", inner)
        elif isinstance(value, list):
            params[name] = ",".join(text(v) for v in value)
        else:
            params[name] = text(value)

    for name, value in obj.items():
        put(name, value)
    return params


def new_credentials() -> tuple[str, str]:
    """A random (API key, base64 secret) pair shaped like Kraken's."""
    return (base64.b64encode(secrets.token_bytes(42)).decode(),
            base64.b64encode(secrets.token_bytes(64)).decode())


def _fmt(value: Decimal, places: int) -> str:
    return f"{value:.{places}f}"


def _fmt_balance(value: Decimal, places: int) -> str:
    """At least `places` decimals, more rather than rounding a balance."""
    return _fmt(value, max(places, -value.as_tuple().exponent))


def _flag(params: dict[str, str], name: str) -> bool:
    return params.get(name, "").lower() in ("true", "1")


def _int(params: dict[str, str], name: str) -> int | None:
    text = params.get(name, "")
    if text == "":
        return None
    try:
        return int(text)
    except ValueError:
        raise KrakenError(f"EGeneral:Invalid arguments:{name}") from None


def _number(params: dict[str, str], name: str) -> Decimal | None:
    text = params.get(name, "")
    if text == "":
        return None
    try:
        return to_decimal(text)
    except ValueError:
        raise KrakenError(f"EGeneral:Invalid arguments:{name}") from None


class KrakenSimulator(SimulatorServer):
    """Kraken's spot REST API on loopback; see the module docstring."""

    FAULT_ERRORS = {"service_unavailable": "EService:Unavailable", "busy": "EService:Busy",
                    "rate_limit": "EAPI:Rate limit exceeded", "invalid_nonce": "EAPI:Invalid nonce",
                    "throttled": "EService:Throttled", "too_many_requests": "EGeneral:Too many requests",
                    "deadline_elapsed": "EService:Deadline elapsed", "lockout": "EGeneral:Temporary lockout",
                    "internal_error": "EGeneral:Internal error"}
    ERROR_FAULTS = frozenset(FAULT_ERRORS)
    SHAPING_FAULTS = frozenset({"partial_fill", "lifecycle"})

    def __init__(self, *, clock: float | None = None, seed: int = 0, fee_percent: Decimal | str = "0.26",
                 maker_fee_percent: Decimal | str = "0.16", spread_percent: Decimal | str = "0.1",
                 default_markets: bool = True, public_limit: tuple[float, float] | None = None,
                 host: str = "127.0.0.1", port: int = 0, prefix: str = "") -> None:
        """`clock` defaults to now; `public_limit` = (max counter, decay per second) per client IP."""
        super().__init__(host, port, prefix)
        self.seed = seed
        self.fee_percent = to_decimal(fee_percent)
        self.maker_fee_percent = to_decimal(maker_fee_percent)
        self.spread_percent = to_decimal(spread_percent)
        self.public_limit = public_limit
        self.system_status = "online"
        self._clock = float(int(time.time()) if clock is None else clock)
        self._epoch = int(self._clock) // 3600 * 3600       # anchors the synthetic walks
        self._checked = self._clock                          # limit orders were checked up to here
        self._assets: dict[str, Asset] = {}
        self._pairs: dict[str, Pair] = {}
        self._pair_names: dict[str, str] = {}               # key, altname, wsname (upper case) -> key
        self._accounts: dict[str, Account] = {}
        self._open: dict[str, Order] = {}                  # resting limit orders
        self._lifecycle: dict[str, Order] = {}             # lifecycle orders still scripted or still hidden
        self._order_seq = 0
        self._trade_seq = 5_000_000
        self._public_counters: dict[str, tuple[float, float]] = {}
        self._public = {"Time": self._time, "SystemStatus": self._system_status, "Assets": self._assets_call,
                        "AssetPairs": self._asset_pairs, "Ticker": self._ticker, "OHLC": self._ohlc,
                        "Depth": self._depth, "Trades": self._trades}
        self._private = {"Balance": self._balance, "BalanceEx": self._balance_ex, "TradeBalance": self._trade_balance,
                         "AddOrder": self._add_order, "QueryOrders": self._query_orders,
                         "OpenOrders": self._open_orders, "ClosedOrders": self._closed_orders,
                         "CancelOrder": self._cancel_order, "TradesHistory": self._trades_history}
        self.controls.update(time=self._control_time, price=self._control_price,
                             pair_status=self._control_pair_status, system_status=self._control_system_status,
                             complete_orders=lambda payload: {"completed": self.complete_orders()})
        if default_markets:
            for asset_id, altname, decimals, display in DEFAULT_ASSETS:
                self.add_asset(asset_id, altname, decimals, display)
            for key, base, quote, price, pair_decimals, ordermin in DEFAULT_PAIRS:
                self.add_pair(key, base, quote, price, pair_decimals=pair_decimals, ordermin=ordermin)

    # --- accounts -------------------------------------------------------------------
    def add_account(self, key: str | None = None, secret: str | None = None,
                    balances: dict[str, object] | None = None, *, tier: str = "starter",
                    nonce_window: int = 0) -> tuple[str, str]:
        """Register an API key (random when not given); returns (key, secret)."""
        if tier not in TIERS:
            raise ValueError(f"unknown tier {tier!r}; one of {', '.join(TIERS)}")
        if key is None or secret is None:
            key, secret = new_credentials()
        raw = base64.b64decode(secret, validate=True)
        with self.lock:
            self._accounts[key] = Account(key, raw, {}, tier, nonce_window)
            for asset, amount in (balances or {}).items():
                self.set_balance(key, asset, amount)
        return key, secret

    def rest_counter(self, key: str) -> float:
        """The key's REST call counter now (spec §2.4)."""
        with self.lock:
            account = self._account(key)
            decay = TIERS[account.tier][1]
            return max(0.0, account.counter - (time.monotonic() - account.counter_at) * decay)

    def decay_counters(self, seconds: float) -> None:
        """Every key's REST call counter as `seconds` more of real time would leave it."""
        with self.lock:
            for account in self._accounts.values():
                account.counter_at -= seconds

    def set_balance(self, key: str, asset: str, amount: object) -> None:
        with self.lock:
            self._account(key).balances[self._asset_id(asset)] = to_decimal(amount, f"balance of {asset}")

    def balances(self, key: str) -> dict[str, Decimal]:
        with self.lock:
            return dict(self._account(key).balances)

    def account_orders(self, key: str) -> list[Order]:
        """Ground truth for tests: copies of every order the account ever placed, oldest
        first, hidden ones included (fields txid, cl_ord_id, userref, side, ordertype,
        pair (a Pair: .key, .altname), status, vol, vol_exec, cost, fee, reason, misc,
        opentm, closetm, lifecycle)."""
        with self.lock:
            return [replace(o, trades=list(o.trades), lifecycle=replace(o.lifecycle) if o.lifecycle else None)
                    for o in self._account(key).orders.values()]

    def complete_orders(self) -> int:
        """Finish every lifecycle order now, as if all its units had passed (at the
        current prices), and show it; returns how many were still scripted or hidden."""
        with self.lock:
            orders = list(self._lifecycle.values())
            for order in orders:
                order.lifecycle.elapsed = math.inf
                self._run_lifecycle(order)
            self._lifecycle.clear()
            return len(orders)

    def _account(self, key: str) -> Account:
        try:
            return self._accounts[key]
        except KeyError:
            raise ValueError(f"no account with key {key!r}") from None

    # --- markets --------------------------------------------------------------------
    def add_asset(self, asset_id: str, altname: str | None = None, decimals: int = 8,
                  display_decimals: int = 5) -> None:
        with self.lock:
            self._assets[asset_id] = Asset(asset_id, altname or asset_id, decimals, display_decimals)

    def add_pair(self, key: str, base: str, quote: str, price: Decimal | str, *, altname: str | None = None,
                 wsname: str | None = None, pair_decimals: int | None = None, lot_decimals: int = 8,
                 cost_decimals: int | None = None, ordermin: Decimal | str | None = None,
                 costmin: Decimal | str | None = None, tick_size: Decimal | str | None = None,
                 status: str = "online", volatility: float = 0.001) -> str:
        """Add a pair (its assets too, when unknown); unset details follow Kraken's habits."""
        price = to_decimal(price, "price")
        if price <= 0:
            raise ValueError(f"{key}: the price must be positive, not {price}")
        with self.lock:
            for asset in (base, quote):
                if asset not in self._assets:
                    self.add_asset(asset)
            base_alt, quote_alt = self._assets[base].altname, self._assets[quote].altname
            if pair_decimals is None:   # about five significant digits
                pair_decimals = max(0, min(8, 4 - math.floor(math.log10(price))))
            costmin = to_decimal(costmin if costmin is not None else QUOTE_COSTMIN.get(quote, "0.5"))
            if ordermin is None:        # a round volume worth a few times the minimum cost
                ordermin = max(Decimal(10) ** math.ceil(math.log10(4 * costmin / price)),
                               Decimal(1).scaleb(-lot_decimals))
            pair = Pair(key, base, quote, altname or base_alt + quote_alt, wsname or f"{base_alt}/{quote_alt}",
                        round_half_even(price, pair_decimals), pair_decimals, lot_decimals,
                        cost_decimals if cost_decimals is not None else max(5, self._assets[quote].decimals),
                        to_decimal(ordermin), costmin,
                        to_decimal(tick_size) if tick_size is not None else Decimal(1).scaleb(-pair_decimals),
                        status, volatility)
            self._pairs[key] = pair
            for name in (key, pair.altname, pair.wsname, pair.wsname.replace("XBT", "BTC")):
                self._pair_names[name.upper()] = key
        return key

    def add_synthetic_pairs(self, n: int, quote: str = "ZEUR") -> list[str]:
        """Add `n` made-up pairs (SYN001EUR, ...) with seeded prices from 0.01 to 10000."""
        keys: list[str] = []
        with self.lock:
            quote_alt = self._assets[self._asset_id(quote)].altname
            number = 0
            while len(keys) < n:
                number += 1
                key = f"SYN{number:03d}{quote_alt}"
                if key in self._pairs:
                    continue
                rng = random.Random(f"{self.seed}:{key}")
                price = Decimal(f"{10 ** rng.uniform(-2, 4):.5g}")
                keys.append(self.add_pair(key, f"SYN{number:03d}", self._asset_id(quote), price))
        return keys

    def pair(self, name: str) -> Pair:
        """The pair named by key, altname or wsname (read it, do not change it)."""
        with self.lock:
            key = self._pair_names.get(name.upper())
            if key is None:
                raise ValueError(f"unknown pair {name!r}")
            return self._pairs[key]

    def set_pair_status(self, pair: str, status: str) -> None:
        if not status:
            raise ValueError("a pair status cannot be empty")
        with self.lock:
            self.pair(pair).status = status

    def set_system_status(self, status: str) -> None:
        if status not in SYSTEM_STATUSES:
            raise ValueError(f"unknown system status {status!r}; one of {', '.join(SYSTEM_STATUSES)}")
        with self.lock:
            self.system_status = status

    def _asset_id(self, name: str) -> str:
        for asset in self._assets.values():
            if name.upper() in (asset.id.upper(), asset.altname.upper()):
                return asset.id
        raise ValueError(f"unknown asset {name!r}")

    # --- clock and prices -----------------------------------------------------------
    @property
    def clock(self) -> float:
        """The simulated now, unix seconds."""
        return self._clock

    def server_time(self) -> float:
        return self._clock

    def set_time(self, ts: float) -> None:
        with self.lock:
            self._clock = float(ts)
            self._settle()
            self._advance_lifecycles(None, "seconds")

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError(f"the clock only advances, not by {seconds} s (use set_time)")
        with self.lock:
            self.set_time(self._clock + seconds)

    def load_candles(self, pair: str, rows_or_csv_path: list[Row] | str | PathLike,
                     interval: int | None = None) -> None:
        """Make `pair` follow these candles; `interval` (minutes) is inferred from the rows when not given."""
        rows = (read_candle_csv(rows_or_csv_path) if isinstance(rows_or_csv_path, (str, PathLike))
                else rows_or_csv_path)
        series = Series.from_rows(rows, step=interval * 60 if interval else None)
        with self.lock:
            market = self.pair(pair)
            market.series, market.synthetic = series, False
            self._settle()

    def set_price(self, pair: str, price: Decimal | str) -> None:
        """From now on `pair` trades at `price`, until the next change."""
        price = to_decimal(price, "price")
        with self.lock:
            market = self.pair(pair)
            if price <= 0 or price != round_down(price, market.pair_decimals):
                raise ValueError(f"{market.key}: price {price} is not positive with at most "
                                 f"{market.pair_decimals} decimals")
            series = self._series(market)
            now = int(self._clock)
            point = Series.from_rows([(now, price, price, price, price, ZERO)], step=series.step)
            market.series, market.synthetic = series.until(now).concat(point), False
            self._settle()

    def price(self, pair: str) -> Decimal:
        """The last price of `pair` at the simulated now."""
        with self.lock:
            return self._mid(self.pair(pair))

    def bid_ask(self, pair: str) -> tuple[Decimal, Decimal]:
        with self.lock:
            market = self.pair(pair)
            return self._bid(market, self._mid(market)), self._ask(market, self._mid(market))

    def _series(self, pair: Pair) -> Series:
        """The pair's path, grown so that it reaches the clock."""
        if pair.series is None:
            pair.series = synthetic_series(f"{self.seed}:{pair.key}", pair.price,
                                           self._epoch - HISTORY_MINUTES * 60,
                                           HISTORY_MINUTES + EXTENSION_MINUTES, pair.volatility,
                                           pair.pair_decimals)
        while pair.synthetic and pair.series.end <= self._clock:
            start = max(pair.series.end, int(self._clock) // 60 * 60 - HISTORY_MINUTES * 60)
            more = synthetic_series(f"{self.seed}:{pair.key}:{start}", pair.series.last_close(), start,
                                    EXTENSION_MINUTES, pair.volatility, pair.pair_decimals)
            pair.series = pair.series.concat(more)
        return pair.series

    def _mid(self, pair: Pair) -> Decimal:
        return self._on_tick(pair, self._series(pair).price(self._clock), ROUND_HALF_EVEN)

    def _ask(self, pair: Pair, price: Decimal) -> Decimal:
        return self._on_tick(pair, price * (1 + self.spread_percent / 200), ROUND_CEILING)

    def _bid(self, pair: Pair, price: Decimal) -> Decimal:
        return self._on_tick(pair, price * (1 - self.spread_percent / 200), ROUND_FLOOR)

    @staticmethod
    def _on_tick(pair: Pair, value: Decimal, rounding: str) -> Decimal:
        ticks = (value / pair.tick_size).to_integral_value(rounding)
        return (ticks * pair.tick_size).quantize(Decimal(1).scaleb(-pair.pair_decimals))

    # --- HTTP -----------------------------------------------------------------------
    def method_name(self, request: Request) -> str:
        parts = request.path.split("/")
        if len(parts) == 4 and parts[1] == "0" and parts[2] in ("public", "private"):
            return parts[3]
        return request.path

    def inject(self, method: str, fault: str, times: int | None = 1, **params: object) -> None:
        """As SimulatorServer.inject, plus the faults of the module docstring; partial_fill
        (fraction=0.5) and lifecycle (pending=0, open=0, fill=None, end="closed",
        hidden=0, unit="lookups") apply to AddOrder only and are checked here."""
        if fault in self.SHAPING_FAULTS and method != "AddOrder":
            raise ValueError(f"{fault} applies to AddOrder only")
        if fault == "partial_fill":
            fraction = to_decimal(params.get("fraction", "0.5"), "fraction")
            if not 0 < fraction < 1:
                raise ValueError(f"fraction must be between 0 and 1, not {fraction}")
            params["fraction"] = fraction
        elif fault == "lifecycle":
            Lifecycle.from_params(params)
        super().inject(method, fault, times, **params)

    def error_reply(self, fault: Fault) -> Reply:
        """A Kraken error fault is an HTTP 200 with the error in the body, as Kraken answers."""
        if fault.kind in self.FAULT_ERRORS:
            return json_reply({"error": [self._fault_error(fault)]})
        return super().error_reply(fault)

    def handle(self, request: Request) -> Reply:
        try:
            parts = request.path.split("/")
            if len(parts) != 4 or parts[1] != "0" or parts[2] not in ("public", "private"):
                raise KrakenError("EGeneral:Unknown method", 404)
            with self.lock:
                if parts[2] == "public":
                    result = self._call_public(request, parts[3])
                else:
                    result = self._call_private(request, parts[3])
        except KrakenError as exc:
            return json_reply({"error": [exc.message]}, exc.status)
        return json_reply({"error": [], "result": result})

    def _call_public(self, request: Request, method: str) -> object:
        handler = self._public.get(method)
        if handler is None:
            raise KrakenError("EGeneral:Unknown method")
        if request.method != "GET":
            raise KrakenError("EGeneral:Invalid arguments", 405)
        if self.public_limit:
            limit, decay = self.public_limit
            counter, at = self._public_counters.get(request.client, (0.0, time.monotonic()))
            now = time.monotonic()
            counter = max(0.0, counter - (now - at) * decay)
            if counter + 1 > limit:
                self._public_counters[request.client] = (counter, now)
                raise KrakenError("EAPI:Rate limit exceeded")
            self._public_counters[request.client] = (counter + 1, now)
        return handler(request.query)

    def _fault_error(self, fault: Fault) -> str:
        message = self.FAULT_ERRORS[fault.kind]
        if fault.kind == "throttled":       # "EService: Throttled: [UNIX timestamp]" (spot REST rate limits)
            message += f": {int(self._clock) + int(fault.params.get('seconds', THROTTLE_SECONDS))}"
        return message

    def _call_private(self, request: Request, method: str) -> object:
        handler = self._private.get(method)
        if handler is None:
            raise KrakenError("EGeneral:Unknown method")
        if request.method != "POST":
            raise KrakenError("EGeneral:Invalid arguments", 405)
        account = self._accounts.get(request.headers.get("API-Key", ""))
        if account is None:
            raise KrakenError("EAPI:Invalid key")
        content_type = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
        params = _json_params(request.body) if content_type == "application/json" else _form_params(request.body)
        expected = _signature(account.secret, request.path, request.body, params.get("nonce", ""))
        if not hmac.compare_digest(expected.encode(), request.headers.get("API-Sign", "").encode("latin-1")):
            raise KrakenError("EAPI:Invalid signature")
        self._use_nonce(account, params.get("nonce", ""))
        self._count_call(account, method)
        if method in LOOKUPS:
            self._advance_lifecycles(account, "lookups")
        return handler(account, params)

    def _use_nonce(self, account: Account, text: str) -> None:
        """Strictly increasing per key; with a window, slightly late nonces pass once each."""
        try:
            nonce = int(text)
        except ValueError:
            raise KrakenError("EAPI:Invalid nonce") from None
        late_ok = (account.nonce_window and nonce > account.last_nonce - account.nonce_window
                   and nonce not in account.recent_nonces)
        if not (0 < nonce < 2 ** 64) or not (nonce > account.last_nonce or late_ok):
            raise KrakenError("EAPI:Invalid nonce")
        account.last_nonce = max(account.last_nonce, nonce)
        if account.nonce_window:
            account.recent_nonces = {n for n in account.recent_nonces | {nonce}
                                     if n > account.last_nonce - account.nonce_window}

    def _count_call(self, account: Account, method: str) -> None:
        """The REST call counter (spec §2.4), decaying in real time."""
        limit, decay = TIERS[account.tier]
        now = time.monotonic()
        account.counter = max(0.0, account.counter - (now - account.counter_at) * decay)
        account.counter_at = now
        cost = CALL_COST.get(method, 1)
        if account.counter + cost > limit:
            raise KrakenError("EAPI:Rate limit exceeded")
        account.counter += cost

    def _pair_arg(self, name: str | None) -> Pair:
        if not name:
            raise KrakenError("EGeneral:Invalid arguments:pair")
        key = self._pair_names.get(name.upper())
        if key is None:
            raise KrakenError("EQuery:Unknown asset pair")
        return self._pairs[key]

    def _pairs_arg(self, names: str | None) -> list[Pair]:
        """A comma list of pairs, every pair when empty; one unknown name fails them all."""
        if not names:
            return list(self._pairs.values())
        return [self._pair_arg(name) for name in names.split(",")]

    def _asset_arg(self, name: str) -> Asset:
        try:
            return self._assets[self._asset_id(name)]
        except ValueError:
            raise KrakenError("EQuery:Unknown asset") from None

    # --- public endpoints -----------------------------------------------------------
    def _time(self, params: dict[str, str]) -> dict:
        now = time.gmtime(self._clock)
        return {"unixtime": int(self._clock), "rfc1123": time.strftime("%a, %d %b %y %H:%M:%S +0000", now)}

    def _system_status(self, params: dict[str, str]) -> dict:
        return {"status": self.system_status, "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                         time.gmtime(self._clock))}

    def _assets_call(self, params: dict[str, str]) -> dict:
        aclass = params.get("aclass", "currency")
        if aclass not in ("currency", "tokenized_asset"):
            raise KrakenError("EGeneral:Invalid arguments:aclass")
        names = params.get("asset")
        assets = [self._asset_arg(n) for n in names.split(",")] if names else list(self._assets.values())
        if aclass != "currency":
            return {}
        return {a.id: {"aclass": "currency", "altname": a.altname, "decimals": a.decimals,
                       "display_decimals": a.display_decimals, "collateral_value": 1.0, "status": a.status}
                for a in assets}

    def _asset_pairs(self, params: dict[str, str]) -> dict:
        info = params.get("info", "info")
        subsets = {"info": None, "leverage": ("leverage_buy", "leverage_sell"),
                   "fees": ("fees", "fees_maker", "fee_volume_currency"), "margin": ("margin_call", "margin_stop")}
        if info not in subsets:
            raise KrakenError("EGeneral:Invalid arguments:info")
        result = {}
        for pair in self._pairs_arg(params.get("pair")):
            entry = self._pair_json(pair)
            result[pair.key] = entry if subsets[info] is None else {k: entry[k] for k in subsets[info]}
        return result

    def _pair_json(self, pair: Pair) -> dict:
        def tiers(percent: Decimal) -> list[list]:
            return [[volume, float(max(percent - Decimal("0.02") * i, ZERO))]
                    for i, volume in enumerate(FEE_TIER_VOLUMES)]

        return {"altname": pair.altname, "wsname": pair.wsname, "aclass_base": "currency", "base": pair.base,
                "aclass_quote": "currency", "quote": pair.quote, "lot": "unit",
                "cost_decimals": pair.cost_decimals, "pair_decimals": pair.pair_decimals,
                "lot_decimals": pair.lot_decimals, "lot_multiplier": 1, "leverage_buy": [], "leverage_sell": [],
                "fees": tiers(self.fee_percent), "fees_maker": tiers(self.maker_fee_percent),
                "fee_volume_currency": "ZUSD", "margin_call": 80, "margin_stop": 40,
                "ordermin": str(pair.ordermin), "costmin": str(pair.costmin), "tick_size": str(pair.tick_size),
                "status": pair.status, "long_position_limit": 0, "short_position_limit": 0}

    def _ticker(self, params: dict[str, str]) -> dict:
        return {pair.key: self._ticker_json(pair) for pair in self._pairs_arg(params.get("pair"))}

    def _ticker_json(self, pair: Pair) -> dict:
        series, now = self._series(pair), self._clock
        price = self._mid(pair)
        quiet = Candle(0, price, price, price, price, price, ZERO, 0)
        today = series.summary(now - now % 86400, now) or quiet
        day = series.summary(now - 86400, now) or quiet
        p = pair.price_text
        return {"a": [p(self._ask(pair, price)), "1", "1.000"], "b": [p(self._bid(pair, price)), "1", "1.000"],
                "c": [p(price), pair.volume_text(day.volume / day.count if day.count else ZERO)],
                "v": [pair.volume_text(today.volume), pair.volume_text(day.volume)], "p": [p(today.vwap), p(day.vwap)],
                "t": [today.count, day.count], "l": [p(today.low), p(day.low)], "h": [p(today.high), p(day.high)],
                "o": p(today.open)}

    def _ohlc(self, params: dict[str, str]) -> dict:
        interval = _int(params, "interval")
        interval = 1 if interval is None else interval
        if interval not in INTERVALS:
            raise KrakenError("EGeneral:Invalid arguments")
        since = _number(params, "since")
        pair = self._pair_arg(params.get("pair"))
        series, seconds, now = self._series(pair), interval * 60, self._clock
        current = int(now) - int(now) % seconds
        first = current - (OHLC_ROWS - 1) * seconds
        start = first if since is None else min(max(first, (int(since) // seconds + 1) * seconds), current)
        rows = series.candles(seconds, start, now)     # only what is sent: polling with `since` stays cheap
        committed = [row for row in rows if row.ts < current]
        newest = series.opened_before(current)
        last = newest - newest % seconds if newest is not None and newest >= first else current - seconds
        if rows and rows[-1].ts == current:
            still_open = rows[-1]
        else:
            price = self._mid(pair)
            still_open = Candle(current, price, price, price, price, price, ZERO, 0)
        p = pair.price_text
        return {pair.key: [[r.ts, p(r.open), p(r.high), p(r.low), p(r.close), p(r.vwap),
                            pair.volume_text(r.volume), r.count] for r in committed + [still_open]],
                "last": last}

    def _depth(self, params: dict[str, str]) -> dict:
        """A book around the ticker: its best ask and bid first, then a level every 0.02 %
        (at least a tick), volumes a seeded 1-200 x ordermin that change each minute."""
        pair = self._pair_arg(params.get("pair"))
        count = _int(params, "count")
        count = DEPTH_COUNT if count is None else count
        if not 1 <= count <= MAX_DEPTH_COUNT:
            raise KrakenError("EGeneral:Invalid arguments:count")
        mid = self._mid(pair)
        step = max(pair.tick_size, self._on_tick(pair, mid * Decimal("0.0002"), ROUND_HALF_EVEN))
        now = int(self._clock)

        def side(best: Decimal, direction: int, name: str) -> list[list]:
            rng = random.Random(f"{self.seed}:{pair.key}:{now // 60}:{name}")
            levels = []
            for i in range(count):
                price = best + direction * i * step
                if price <= 0:
                    break
                levels.append([pair.price_text(price), pair.volume_text(pair.ordermin * rng.randint(1, 200)),
                               now - rng.randrange(60)])
            return levels

        return {pair.key: {"asks": side(self._ask(pair, mid), 1, "asks"),
                           "bids": side(self._bid(pair, mid), -1, "bids")}}

    def _trades(self, params: dict[str, str]) -> dict:
        """The public tape of the price path (see the module docstring), oldest first:
        the last `count` trades, or the first `count` after `since` (seconds, or the
        nanosecond `last` of an earlier answer)."""
        pair = self._pair_arg(params.get("pair"))
        count = _int(params, "count")
        count = TRADES_COUNT if count is None else count
        if not 1 <= count <= MAX_TRADES_COUNT:
            raise KrakenError("EGeneral:Invalid arguments:count")
        since = _number(params, "since")
        series, now = self._series(pair), self._clock
        if since is None:
            tape = self._tape(pair, series, now - series.step * (count + 2), now)[-count:]
            last = tape[-1][0] if tape else now
        else:
            after = float(since / 10 ** 9 if since >= 10 ** 12 else since)
            start, tape = after - series.step, []
            while len(tape) < count:
                end = min(now, start + series.step * (count + 3))
                page = self._tape(pair, series, start, end)
                cut = series.holding(end) if end < now else None   # known only to its open at `end`
                tape += [t for t in page if t[0] > after and (cut is None or t[0] < cut)]
                if end >= now:
                    break
                start = cut if cut is not None else end
            tape = tape[:count]
            last = tape[-1][0] if tape else after
        rows = [[pair.price_text(price), pair.volume_text(volume), when, side, kind, "", int(when)]
                for when, price, volume, side, kind in tape]
        return {pair.key: rows, "last": str(int(round(last * 10 ** 9)))}

    def _tape(self, pair: Pair, series: Series, start: float, t: float) -> list[tuple]:
        """(time, price, volume, side, "m"/"l") of the trades of the source candles opening
        in [start, t]: four a closed candle with volume (open, low or high, high or low,
        close, its volume split evenly), one at the open otherwise (ordermin, a stand-in:
        no volume is known yet).  A trade is a buy when its price is not below the one
        before it in its candle (the open: when the candle closes at or above it), so
        that every page of a tape reads alike."""
        step, trades = series.step, []
        for candle in series.candles(1, start, t):      # one row a source candle, even unaligned ones
            rising = candle.close >= candle.open
            if candle.ts + step > t or not candle.volume:
                trades.append((float(candle.ts), self._on_tick(pair, candle.open, ROUND_HALF_EVEN), pair.ordermin,
                               "b" if rising else "s", "m"))
                continue
            first, second = (candle.low, candle.high) if rising else (candle.high, candle.low)
            part = round_down(candle.volume / 4, pair.lot_decimals)
            volumes = (part, part, part, candle.volume - 3 * part)
            previous = None
            for i, (price, volume) in enumerate(zip((candle.open, first, second, candle.close), volumes, strict=True)):
                up = rising if previous is None else price >= previous
                previous = price
                if volume > 0:
                    trades.append((candle.ts + step * i / 4, self._on_tick(pair, price, ROUND_HALF_EVEN), volume,
                                   "b" if up else "s", "m" if i in (0, 3) else "l"))
        return trades

    # --- private endpoints: account ---------------------------------------------------
    def _balance(self, account: Account, params: dict[str, str]) -> dict:
        return {asset: _fmt_balance(amount, self._assets[asset].decimals)
                for asset, amount in account.balances.items()}

    def _balance_ex(self, account: Account, params: dict[str, str]) -> dict:
        """Per asset the balance, the (never used) credit and what live orders hold."""
        result = {}
        for asset, amount in account.balances.items():
            places = self._assets[asset].decimals
            result[asset] = {"balance": _fmt_balance(amount, places), "credit": _fmt(ZERO, places),
                             "credit_used": _fmt(ZERO, places),
                             "hold_trade": _fmt_balance(self._held(account, asset), places)}
        return result

    def _trade_balance(self, account: Account, params: dict[str, str]) -> dict:
        target = self._asset_arg(params.get("asset") or "ZUSD")
        equity = sum((self._convert(amount, asset, target.id) for asset, amount in account.balances.items()),
                     ZERO)
        unexecuted = sum((self._convert((o.vol - o.vol_exec) * (o.price if o.price is not None else o.hold_price),
                                        o.pair.quote, target.id)
                          for o in account.orders.values() if o.live), ZERO)
        equity, unexecuted, zero = (_fmt(v, target.decimals) for v in (equity, unexecuted, ZERO))
        return {"eb": equity, "tb": equity, "m": zero, "n": zero, "c": zero, "v": zero, "e": equity, "mf": equity,
                "uv": unexecuted}

    def _convert(self, amount: Decimal, asset: str, target: str) -> Decimal:
        """`amount` of `asset` in `target`, through one intermediate asset at most; 0 when there is no route."""
        def direct(a: str, b: str) -> Decimal | None:
            for pair in self._pairs.values():
                if (pair.base, pair.quote) == (a, b):
                    return self._mid(pair)
                if (pair.base, pair.quote) == (b, a):
                    return 1 / self._mid(pair)
            return None

        if asset == target or not amount:
            return amount
        rate = direct(asset, target)
        if rate is not None:
            return amount * rate
        for middle in self._assets:
            first, second = direct(asset, middle), direct(middle, target)
            if first is not None and second is not None:
                return amount * first * second
        return ZERO

    # --- private endpoints: orders ----------------------------------------------------
    def _add_order(self, account: Account, params: dict[str, str]) -> dict:
        side, ordertype = params.get("type"), params.get("ordertype")
        if side not in ("buy", "sell"):
            raise KrakenError("EGeneral:Invalid arguments:type")
        if ordertype not in ("market", "limit"):
            raise KrakenError("EGeneral:Invalid arguments:ordertype")
        for name, defaults in NOT_MODELLED.items():
            if params.get(name, "").lower() not in defaults:
                raise KrakenError(f"EGeneral:Invalid arguments:{name}")
        if params.get("timeinforce", "GTC").upper() != "GTC":
            raise KrakenError("EGeneral:Invalid arguments:timeinforce")
        validate = params.get("validate", "").lower()
        if validate not in ("", "false", "0", "true", "1"):
            raise KrakenError("EGeneral:Invalid arguments:validate")
        deadline = params.get("deadline", "")
        if deadline:
            try:
                expires = datetime.fromisoformat(deadline.replace("Z", "+00:00")).timestamp()
            except ValueError:
                raise KrakenError("EGeneral:Invalid arguments:deadline") from None
        volume = _number(params, "volume")
        if volume is None or volume <= 0:
            raise KrakenError("EGeneral:Invalid arguments:volume")
        price = _number(params, "price") if ordertype == "limit" else None
        if ordertype == "limit" and (price is None or price <= 0):
            raise KrakenError("EGeneral:Invalid arguments:price")
        userref = _int(params, "userref")
        if userref is not None and not -2 ** 31 <= userref < 2 ** 31:
            raise KrakenError("EGeneral:Invalid arguments:userref")
        cl_ord_id = params.get("cl_ord_id") or None
        if cl_ord_id is not None and (userref is not None or not CL_ORD_ID_RE.fullmatch(cl_ord_id)):
            raise KrakenError("EGeneral:Invalid arguments:cl_ord_id")
        flags = [f for f in params.get("oflags", "").split(",") if f]
        if (not OFLAGS.issuperset(flags) or {"fcib", "fciq"} <= set(flags)
                or ("post" in flags and ordertype != "limit")
                or ("viqc" in flags and (side, ordertype) != ("buy", "market"))):
            raise KrakenError("EGeneral:Invalid arguments:oflags")
        pair = self._pair_arg(params.get("pair"))

        volume_decimals = pair.cost_decimals if "viqc" in flags else pair.lot_decimals
        if volume != round_down(volume, volume_decimals):
            raise KrakenError("EGeneral:Invalid arguments:volume")
        if price is not None and price != round_down(price, pair.pair_decimals):
            raise KrakenError("EGeneral:Invalid arguments:price")
        if price is not None and price % pair.tick_size:
            raise KrakenError("EOrder:Invalid price")
        self._check_open_for_orders(pair, ordertype, flags)
        mid = self._mid(pair)
        market_price = self._ask(pair, mid) if side == "buy" else self._bid(pair, mid)
        if "viqc" in flags:
            volume = round_down(volume / market_price, pair.lot_decimals)
        reference = price if price is not None else market_price
        if volume < pair.ordermin:
            raise KrakenError("EOrder:Order minimum not met")
        if volume * reference < pair.costmin:
            raise KrakenError("EOrder:Cost minimum not met")
        if cl_ord_id is not None and any(o.cl_ord_id == cl_ord_id and o.live for o in account.orders.values()):
            raise KrakenError("EOrder:Duplicate cl_ord_id")
        if side == "buy":
            cost, fee = self._charges(pair, reference, volume, maker=False)
            short = cost + fee > self._available(account, pair.quote)
        else:
            short = volume > self._available(account, pair.base)
        if short:
            raise KrakenError("EOrder:Insufficient funds")

        if deadline and expires < self._clock:
            raise KrakenError("EService:Deadline elapsed")

        oflags = ",".join(flags) or "fciq"
        order = Order(self._new_id("O", account.orders), account.key, pair, side, ordertype, volume, price,
                      userref, cl_ord_id, oflags, self._clock, self._order_seq)
        if validate in ("true", "1"):   # docs.kraken.com: validate (default false) checks without placing
            return {"descr": {"order": self._description(order)}}
        self._order_seq += 1
        account.orders[order.txid] = order
        shaping = self.take_fault(("AddOrder",), shaping=True,
                                  kinds=("partial_fill", "lifecycle") if ordertype == "market" else ("partial_fill",))
        if shaping is not None and shaping.kind == "lifecycle":
            order.status, order.hold_price = "pending", market_price
            order.lifecycle = Lifecycle.from_params(shaping.params)
            self._lifecycle[order.txid] = order
            self._run_lifecycle(order)
            if order.lifecycle.stage == "done" and not order.lifecycle.lagging:
                del self._lifecycle[order.txid]
        else:
            self._open[order.txid] = order
            self._execute(order, market_price, shaping.params["fraction"] if shaping is not None else None)
        return {"descr": {"order": self._description(order)}, "txid": [order.txid]}

    def _check_open_for_orders(self, pair: Pair, ordertype: str, flags: list[str]) -> None:
        """Refuse a new order that the system or pair status does not allow."""
        post_limit = ordertype == "limit" and "post" in flags
        if self.system_status == "maintenance":
            raise KrakenError("EService:Unavailable")
        if self.system_status == "cancel_only" or (self.system_status == "post_only" and not post_limit):
            raise KrakenError(f"EService:Market in {self.system_status} mode")
        allowed = {"online": True, "post_only": post_limit, "limit_only": ordertype == "limit"}
        if not allowed.get(pair.status, False):
            raise KrakenError(f"EService:Market in {pair.status} mode")

    def _execute(self, order: Order, market_price: Decimal, fill_fraction: Decimal | None) -> None:
        """Fill what crosses now; a resting limit order waits for _settle()."""
        crosses = (order.ordertype == "market" or (order.side == "buy" and order.price >= market_price)
                   or (order.side == "sell" and order.price <= market_price))
        if crosses and "post" in order.oflags.split(","):
            self._close(order, "canceled", "Post only order")
        elif fill_fraction is not None:
            part = round_down(order.vol * fill_fraction, order.pair.lot_decimals)
            if part:
                self._fill(order, part, market_price if crosses else order.price, maker=not crosses)
            order.misc = "partial"
            if order.ordertype == "market":
                self._close(order, "canceled", "Partial fill")
        elif crosses:
            self._fill(order, order.vol, market_price, maker=False)
            self._close(order, "closed")

    def _settle(self) -> None:
        """Fill the resting limit orders whose price the path reached since the last check."""
        start, now = self._checked, self._clock
        self._checked = now
        for order in list(self._open.values()):
            pair, series = order.pair, self._series(order.pair)
            mid = self._mid(pair)
            # the candles opened since the last check, and the one open then if it has closed since
            held = series.holding(start)
            first = held if held is not None and held + series.step <= now else start
            seen = series.summary(first, now) if now >= start else None
            if order.side == "buy":
                crossed = self._ask(pair, min(mid, seen.low) if seen else mid) <= order.price
            else:
                crossed = self._bid(pair, max(mid, seen.high) if seen else mid) >= order.price
            if crossed:
                self._fill(order, order.vol - order.vol_exec, order.price, maker=True)
                self._close(order, "closed")

    def _charges(self, pair: Pair, price: Decimal, volume: Decimal, maker: bool) -> tuple[Decimal, Decimal]:
        """(cost, fee) in the quote currency."""
        cost = round_half_even(price * volume, pair.cost_decimals)
        percent = self.maker_fee_percent if maker else self.fee_percent
        fee = (cost * percent / 100).quantize(Decimal(1).scaleb(-pair.cost_decimals), rounding=ROUND_UP)
        return cost, fee

    def _fill(self, order: Order, volume: Decimal, price: Decimal, maker: bool) -> None:
        pair, account = order.pair, self._accounts[order.account]
        cost, fee = self._charges(pair, price, volume, maker)
        balances = account.balances
        for asset in (pair.base, pair.quote):
            balances.setdefault(asset, ZERO)
        if order.side == "buy":
            balances[pair.quote] -= cost + fee
            balances[pair.base] += volume
        else:
            balances[pair.base] -= volume
            balances[pair.quote] += cost - fee
        order.vol_exec += volume
        order.cost += cost
        order.fee += fee
        order.value += price * volume
        self._trade_seq += 1
        trade = Trade(self._new_id("T", account.trades), order, self._new_id("T", account.trades), self._clock,
                      price, volume, cost, fee, maker, self._trade_seq)
        account.trades[trade.txid] = trade
        order.trades.append(trade.txid)

    def _close(self, order: Order, status: str, reason: str | None = None) -> None:
        order.status, order.reason, order.closetm = status, reason, self._clock
        if status == "canceled" and order.vol_exec:
            order.misc = "partial"
        self._open.pop(order.txid, None)

    def _held(self, account: Account, asset: str, exclude: Order | None = None) -> Decimal:
        """What live orders hold of `asset`: a buy its cost and taker fee at its limit price
        (a lifecycle market buy: at the price of its placement), a sell its volume."""
        held = ZERO
        for order in account.orders.values():
            if order is exclude or not order.live:
                continue
            remaining = order.vol - order.vol_exec
            if order.side == "buy" and asset == order.pair.quote:
                price = order.price if order.price is not None else order.hold_price
                held += sum(self._charges(order.pair, price, remaining, maker=False))
            elif order.side == "sell" and asset == order.pair.base:
                held += remaining
        return held

    def _available(self, account: Account, asset: str, exclude: Order | None = None) -> Decimal:
        """Balance not held by live orders (`exclude`'s own hold left out)."""
        return account.balances.get(asset, ZERO) - self._held(account, asset, exclude)

    # --- lifecycle orders ---------------------------------------------------------------
    def _advance_lifecycles(self, account: Account | None, unit: str) -> None:
        """One lookup of `account` (unit "lookups"), or the clock moved (unit "seconds", account None)."""
        for order in list(self._lifecycle.values()):
            script = order.lifecycle
            if script.unit != unit or (account is not None and order.account != account.key):
                continue
            script.elapsed = (script.elapsed + 1 if unit == "lookups"
                              else max(script.elapsed, self._clock - order.opentm))
            self._run_lifecycle(order)
            if script.stage == "done" and not script.lagging:
                del self._lifecycle[order.txid]

    def _run_lifecycle(self, order: Order) -> None:
        """Carry out the stages of a lifecycle order that its `elapsed` has reached."""
        script = order.lifecycle
        if not order.live:              # canceled by CancelOrder, or short of funds
            script.stage = "done"
        if script.stage == "pending" and (script.elapsed > script.pending or not script.pending):
            script.stage, order.status = "open", "open"
            if script.fill is not None:
                self._scripted_fill(order, round_down(order.vol * script.fill, order.pair.lot_decimals))
        if script.stage == "open" and (script.elapsed > script.pending + script.open
                                       or not script.pending + script.open):
            script.stage = "done"
            if order.live and script.end == "closed":
                self._scripted_fill(order, order.vol - order.vol_exec)
                if order.live:
                    self._close(order, "closed")
            elif order.live:
                self._close(order, "canceled", "Partial fill" if order.vol_exec else "No fill")

    def _scripted_fill(self, order: Order, volume: Decimal) -> None:
        """Execute `volume` at the current ask (buy) or bid (sell) with the taker fee, as far
        as the free balance (the order's own hold included) covers it; cancel the rest if not."""
        if volume <= 0:
            return
        pair, account = order.pair, self._accounts[order.account]
        mid = self._mid(pair)
        if order.side == "buy":
            price = self._ask(pair, mid)
            free = self._available(account, pair.quote, exclude=order)
            covered = min(volume, round_down(max(free, ZERO) / (price * (1 + self.fee_percent / 100)),
                                             pair.lot_decimals))
            while covered > 0 and sum(self._charges(pair, price, covered, maker=False)) > free:
                covered -= Decimal(1).scaleb(-pair.lot_decimals)
        else:
            price = self._bid(pair, mid)
            covered = min(volume, max(self._available(account, pair.base, exclude=order), ZERO))
        if covered > 0:
            self._fill(order, covered, price, maker=False)
        if covered < volume:
            self._close(order, "canceled", "Insufficient funds")

    def _new_id(self, first: str, taken: dict) -> str:
        while True:
            chars = "".join(secrets.choice(ID_ALPHABET) for _ in range(16))     # unique across simulators too
            txid = f"{first}{chars[:5]}-{chars[5:10]}-{chars[10:]}"
            if txid not in taken:
                return txid

    def _description(self, order: Order) -> str:
        pair = order.pair
        where = "market" if order.price is None else f"limit {pair.price_text(order.price)}"
        return f"{order.side} {pair.volume_text(order.vol)} {pair.altname} @ {where}"

    def _order_json(self, order: Order, with_trades: bool) -> dict:
        pair = order.pair
        average = order.value / order.vol_exec if order.vol_exec else ZERO
        entry = {"refid": None, "userref": order.userref or 0, "cl_ord_id": order.cl_ord_id,
                 "status": order.status, "opentm": order.opentm, "starttm": 0, "expiretm": 0,
                 "descr": {"pair": pair.altname, "type": order.side, "ordertype": order.ordertype,
                           "price": pair.price_text(order.price) if order.price is not None else "0", "price2": "0",
                           "leverage": "none", "order": self._description(order), "close": ""},
                 "vol": pair.volume_text(order.vol), "vol_exec": pair.volume_text(order.vol_exec),
                 "cost": pair.cost_text(order.cost), "fee": pair.cost_text(order.fee),
                 "price": pair.price_text(average), "stopprice": "0.00000", "limitprice": "0.00000",
                 "misc": order.misc, "oflags": order.oflags}
        if not order.live:
            entry["closetm"] = order.closetm
            entry["reason"] = order.reason
        if with_trades and order.trades:
            entry["trades"] = list(order.trades)
        return entry

    def _filtered(self, account: Account, params: dict[str, str], statuses: tuple[str, ...]) -> list[Order]:
        """The account's orders with these statuses matching the userref and cl_ord_id filters, newest first."""
        userref, cl_ord_id = _int(params, "userref"), params.get("cl_ord_id") or None
        found = [o for o in account.orders.values() if o.status in statuses and o.visible
                 and (userref is None or o.userref == userref)
                 and (cl_ord_id is None or o.cl_ord_id == cl_ord_id)]
        return found[::-1]

    def _open_orders(self, account: Account, params: dict[str, str]) -> dict:
        trades = _flag(params, "trades")
        return {"open": {o.txid: self._order_json(o, trades)
                         for o in self._filtered(account, params, ("pending", "open"))}}

    def _closed_orders(self, account: Account, params: dict[str, str]) -> dict:
        closetime = params.get("closetime", "both")
        if closetime not in ("open", "close", "both"):
            raise KrakenError("EGeneral:Invalid arguments:closetime")

        def bound(name: str) -> float | None:
            text = params.get(name, "")
            if text in account.orders and account.orders[text].visible:
                order = account.orders[text]
                return order.closetm if closetime == "close" and order.closetm else order.opentm
            return _number(params, name)

        start, end, ofs = bound("start"), bound("end"), _int(params, "ofs") or 0

        def in_range(t: float | None) -> bool:
            return t is not None and (start is None or t > start) and (end is None or t <= end)

        times = {"open": lambda o: (o.opentm,), "close": lambda o: (o.closetm,),
                 "both": lambda o: (o.opentm, o.closetm)}[closetime]
        orders = [o for o in self._filtered(account, params, ("closed", "canceled", "expired"))
                  if any(in_range(t) for t in times(o))]
        orders.sort(key=lambda o: (o.closetm, o.seq), reverse=True)
        trades = _flag(params, "trades")
        result: dict = {"closed": {o.txid: self._order_json(o, trades) for o in orders[ofs:ofs + PAGE]}}
        if not _flag(params, "without_count"):
            result["count"] = len(orders)
        return result

    def _query_orders(self, account: Account, params: dict[str, str]) -> dict:
        txids = [t for t in params.get("txid", "").split(",") if t]
        if not txids or len(txids) > MAX_QUERY_TXIDS:
            raise KrakenError("EGeneral:Invalid arguments:txid")
        userref = _int(params, "userref")
        if any(t not in account.orders or not account.orders[t].visible for t in txids):
            raise KrakenError("EOrder:Invalid order")
        trades = _flag(params, "trades")
        return {t: self._order_json(account.orders[t], trades) for t in txids
                if userref is None or account.orders[t].userref == userref}

    def _cancel_order(self, account: Account, params: dict[str, str]) -> dict:
        if self.system_status == "maintenance":
            raise KrakenError("EService:Unavailable")
        txid, cl_ord_id = params.get("txid", ""), params.get("cl_ord_id", "")
        if not txid and not cl_ord_id:
            raise KrakenError("EGeneral:Invalid arguments:txid")
        if cl_ord_id:
            targets = [o for o in account.orders.values() if o.cl_ord_id == cl_ord_id]
        elif re.fullmatch(r"-?\d+", txid):
            targets = [o for o in account.orders.values() if o.userref == int(txid)]
        else:
            targets = [account.orders[txid]] if txid in account.orders else []
        targets = [o for o in targets if o.live and o.visible]
        if not targets:
            raise KrakenError("EOrder:Unknown order")
        for order in targets:
            self._close(order, "canceled", "User requested")
            if order.lifecycle is not None:
                order.lifecycle.stage = "done"
                self._lifecycle.pop(order.txid, None)
        return {"count": len(targets)}

    def _trades_history(self, account: Account, params: dict[str, str]) -> dict:
        kind = params.get("type", "all")
        if kind not in TRADE_TYPES:
            raise KrakenError("EGeneral:Invalid arguments:type")

        def bound(name: str) -> float | None:
            text = params.get(name, "")
            return account.trades[text].time if text in account.trades else _number(params, name)

        start, end, ofs = bound("start"), bound("end"), _int(params, "ofs") or 0
        found = [t for t in reversed(account.trades.values()) if kind in ("all", "no position") and t.order.visible
                 and (start is None or t.time > start) and (end is None or t.time <= end)]
        return {"trades": {t.txid: self._trade_json(t) for t in found[ofs:ofs + PAGE]}, "count": len(found)}

    @staticmethod
    def _trade_json(trade: Trade) -> dict:
        pair = trade.order.pair
        return {"ordertxid": trade.order.txid, "postxid": trade.postxid, "pair": pair.key, "time": trade.time,
                "type": trade.order.side, "ordertype": trade.order.ordertype, "price": pair.price_text(trade.price),
                "cost": pair.cost_text(trade.cost), "fee": pair.cost_text(trade.fee),
                "vol": pair.volume_text(trade.vol), "margin": pair.cost_text(ZERO), "misc": "",
                "trade_id": trade.trade_id, "maker": trade.maker}

    # --- /_sim/ control API -----------------------------------------------------------
    def _control_time(self, payload: dict) -> dict:
        if "ts" in payload:
            self.set_time(float(payload["ts"]))
        elif "advance" in payload:
            self.advance(float(payload["advance"]))
        return {"clock": self.clock}

    def _control_price(self, payload: dict) -> dict:
        if "price" in payload:
            self.set_price(payload["pair"], str(payload["price"]))
        pair = self.pair(payload["pair"])
        bid, ask = self.bid_ask(pair.key)
        return {"pair": pair.key, "price": str(self.price(pair.key)), "bid": str(bid), "ask": str(ask)}

    def _control_pair_status(self, payload: dict) -> dict:
        if "status" in payload:
            self.set_pair_status(payload["pair"], payload["status"])
        pair = self.pair(payload["pair"])
        return {"pair": pair.key, "status": pair.status}

    def _control_system_status(self, payload: dict) -> dict:
        if "status" in payload:
            self.set_system_status(payload["status"])
        return {"status": self.system_status}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m simulators.kraken",
                                     description="Serve a local Kraken REST simulator until Ctrl-C.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080, help="0 picks a free port")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic price paths")
    parser.add_argument("--time", type=float, help="the simulated clock, unix seconds (default: now)")
    parser.add_argument("--csv", action="append", default=[], help="a candle CSV; give one --pair per --csv")
    parser.add_argument("--pair", action="append", default=[], help="the pair the matching --csv drives")
    parser.add_argument("--balance", action="append", default=[], metavar="ASSET=AMOUNT",
                        help="demo account balance (default ZEUR=1000)")
    args = parser.parse_args(argv)
    if len(args.csv) != len(args.pair):
        parser.error("give exactly one --pair for each --csv")
    sim = KrakenSimulator(clock=args.time, seed=args.seed, host=args.host, port=args.port)
    try:
        for path, pair in zip(args.csv, args.pair, strict=True):
            sim.load_candles(pair, path)
        balances = dict(b.split("=", 1) for b in args.balance) or {"ZEUR": "1000"}
        key, secret = sim.add_account(balances=balances)
    except (OSError, ValueError) as exc:
        parser.error(str(exc))
    with sim:
        print(f"Kraken simulator at {sim.url}  (clock {int(sim.clock)})")
        print(f"API key:    {key}")
        print(f"API secret: {secret}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()


if __name__ == "__main__":
    main()
