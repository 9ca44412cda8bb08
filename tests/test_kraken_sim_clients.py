"""The Kraken simulator driven by clients nobody on this project wrote: ccxt's `kraken`
and python-kraken-sdk's spot REST clients, pointed at it only through their public
options (ccxt: every URL of `exchange.urls["api"]`; the SDK: its constructors'
`url=`).  Each test checks that the client got the simulator's truth.

Fixed prices: XBTEUR at 30000.0 gives ask 30015.0 and bid 29985.0 (spread 0.1 %);
the taker fee is 0.26 %.
"""
from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest

from simulators.kraken import KrakenSimulator

ccxt = pytest.importorskip("ccxt")
spot = pytest.importorskip("kraken.spot")
kraken_exceptions = pytest.importorskip("kraken.exceptions")

START = 1_700_000_030           # half a minute into 2023-11-14 22:13
BALANCES = {"ZEUR": "1000", "XXBT": "0.05"}


def dec(value: object) -> Decimal:
    """A client's number (ccxt gives floats, the SDK strings) as an exact Decimal."""
    return Decimal(str(value))


@pytest.fixture
def sim() -> Iterator[KrakenSimulator]:
    with KrakenSimulator(clock=START) as simulator:
        simulator.set_price("XBTEUR", "30000.0")
        yield simulator


@pytest.fixture
def exchange(sim: KrakenSimulator):
    """ccxt's kraken with every API URL on the simulator; its own throttle off (the simulator limits)."""
    key, secret = sim.add_account(balances=BALANCES, tier="pro")
    client = ccxt.kraken({"apiKey": key, "secret": secret, "enableRateLimit": False, "timeout": 5000})
    client.urls["api"] = {name: sim.url for name in client.urls["api"]}
    client.sim_key = key
    return client


@pytest.fixture
def sdk(sim: KrakenSimulator):
    """python-kraken-sdk's Market, User and Trade clients of one funded account."""
    key, secret = sim.add_account(balances=BALANCES, tier="pro")
    clients = (spot.Market(url=sim.url), spot.User(key, secret, url=sim.url), spot.Trade(key, secret, url=sim.url))
    return (*clients, key)


# --- ccxt ----------------------------------------------------------------------------------------

def test_ccxt_markets_are_the_asset_pairs(sim: KrakenSimulator, exchange) -> None:
    markets = exchange.load_markets()
    assert {m["id"] for m in markets.values()} == set(sim._pairs)
    btc = markets["BTC/EUR"]
    pair = sim.pair("XBTEUR")
    assert (btc["id"], btc["base"], btc["quote"]) == ("XXBTZEUR", "BTC", "EUR")
    assert (dec(btc["precision"]["price"]), dec(btc["limits"]["amount"]["min"])) == (pair.tick_size, pair.ordermin)
    assert markets["DOGE/EUR"]["id"] == "XDGEUR"
    assert sim.calls["AssetPairs"] == 1 and sim.calls["Assets"] == 1


def test_ccxt_market_data(sim: KrakenSimulator, exchange) -> None:
    ticker = exchange.fetch_ticker("BTC/EUR")
    assert (dec(ticker["bid"]), dec(ticker["ask"]), dec(ticker["last"])) == \
        (*sim.bid_ask("XBTEUR"), sim.price("XBTEUR"))
    candles = exchange.fetch_ohlcv("BTC/EUR", "1m", limit=5)
    assert candles[-1][0] == (START - START % 60) * 1000 and dec(candles[-1][4]) == Decimal("30000.0")
    book = exchange.fetch_order_book("BTC/EUR", 3)
    assert (dec(book["asks"][0][0]), dec(book["bids"][0][0])) == (Decimal("30015.0"), Decimal("29985.0"))
    assert len(book["asks"]) == len(book["bids"]) == 3 and book["asks"][1][0] > book["asks"][0][0]
    trades = exchange.fetch_trades("BTC/EUR", limit=10)
    assert len(trades) == 10 and dec(trades[-1]["price"]) == Decimal("30000.0")
    assert all(t["side"] in ("buy", "sell") and t["timestamp"] <= START * 1000 for t in trades)


def test_ccxt_balance_is_balance_ex_with_what_orders_hold(sim: KrakenSimulator, exchange) -> None:
    balance = exchange.fetch_balance()
    assert (dec(balance["EUR"]["total"]), dec(balance["EUR"]["used"]), dec(balance["BTC"]["free"])) == \
        (Decimal("1000"), Decimal("0"), Decimal("0.05"))
    sim.inject("AddOrder", "lifecycle", pending=5)
    exchange.create_order("BTC/EUR", "market", "buy", 0.001)          # holds 30.01500 + 0.07804
    balance = exchange.fetch_balance()
    assert (dec(balance["EUR"]["used"]), dec(balance["EUR"]["free"])) == (Decimal("30.09304"), Decimal("969.90696"))
    assert sim.calls["BalanceEx"] == 2


def test_ccxt_market_order_fetched_as_the_simulator_filled_it(sim: KrakenSimulator, exchange) -> None:
    created = exchange.create_order("BTC/EUR", "market", "buy", 0.001)
    truth, = sim.account_orders(exchange.sim_key)
    assert created["id"] == truth.txid
    order = exchange.fetch_order(created["id"])
    assert (order["status"], dec(order["filled"]), dec(order["cost"]), dec(order["fee"]["cost"]),
            dec(order["average"])) == ("closed", truth.vol_exec, truth.cost, truth.fee, Decimal("30015.0"))
    assert (truth.vol_exec, truth.cost, truth.fee) == (Decimal("0.001"), Decimal("30.015"), Decimal("0.07804"))
    closed = exchange.fetch_closed_orders("BTC/EUR")
    assert [(o["id"], o["status"]) for o in closed] == [(truth.txid, "closed")]


def test_ccxt_partly_filled_open_order_then_canceled(sim: KrakenSimulator, exchange) -> None:
    sim.inject("AddOrder", "lifecycle", open=10, fill="0.4")
    created = exchange.create_order("BTC/EUR", "market", "buy", 0.001)
    opened = exchange.fetch_open_orders("BTC/EUR")
    assert [(o["id"], o["status"], dec(o["filled"])) for o in opened] == [(created["id"], "open", Decimal("0.0004"))]
    exchange.cancel_order(created["id"])
    order = exchange.fetch_order(created["id"])
    truth, = sim.account_orders(exchange.sim_key)
    assert (order["status"], dec(order["filled"]), dec(order["remaining"])) == \
        ("canceled", truth.vol_exec, truth.vol - truth.vol_exec)
    assert (truth.status, truth.vol_exec, truth.reason) == ("canceled", Decimal("0.0004"), "User requested")
    assert exchange.fetch_open_orders("BTC/EUR") == []
    assert [o["status"] for o in exchange.fetch_closed_orders("BTC/EUR")] == ["canceled"]


@pytest.mark.parametrize("fault, error", [("service_unavailable", "ExchangeNotAvailable"),
                                          ("internal_error", "ExchangeNotAvailable"),
                                          ("too_many_requests", "DDoSProtection"),
                                          ("lockout", "DDoSProtection"), ("invalid_nonce", "InvalidNonce")])
def test_ccxt_knows_the_simulators_error_strings(sim: KrakenSimulator, exchange, fault: str, error: str) -> None:
    exchange.load_markets()
    sim.inject("BalanceEx", fault)
    with pytest.raises(getattr(ccxt, error)):
        exchange.fetch_balance()
    with pytest.raises(ccxt.InsufficientFunds):
        exchange.create_order("BTC/EUR", "market", "buy", 1)


def test_ccxt_order_placed_behind_an_error_is_found_again(sim: KrakenSimulator, exchange) -> None:
    exchange.load_markets()
    sim.inject("AddOrder", "http_520", after=True)
    with pytest.raises(ccxt.ExchangeNotAvailable):
        exchange.create_order("BTC/EUR", "market", "buy", 0.001, params={"userref": 77})
    truth, = sim.account_orders(exchange.sim_key)
    assert [o["id"] for o in exchange.fetch_closed_orders("BTC/EUR")] == [truth.txid]


# --- python-kraken-sdk ---------------------------------------------------------------------------

def test_sdk_market_data(sim: KrakenSimulator, sdk) -> None:
    market = sdk[0]
    pairs = market.get_asset_pairs(pair="XBTEUR")
    assert (pairs["XXBTZEUR"]["altname"], pairs["XXBTZEUR"]["tick_size"]) == ("XBTEUR", "0.1")
    assert market.get_system_status()["status"] == "online"
    ticker = market.get_ticker(pair="XBTEUR")["XXBTZEUR"]
    assert (ticker["a"][0], ticker["b"][0], ticker["c"][0]) == ("30015.0", "29985.0", "30000.0")
    ohlc = market.get_ohlc(pair="XBTEUR", interval=5)
    assert ohlc["XXBTZEUR"][-1][0] == START - START % 300 and ohlc["last"] == START - START % 300 - 300
    book = market.get_order_book(pair="XBTEUR", count=2)["XXBTZEUR"]
    assert (book["asks"][0][0], book["bids"][0][0], len(book["asks"])) == ("30015.0", "29985.0", 2)
    trades = market.get_recent_trades(pair="XBTEUR", count=5)
    assert len(trades["XXBTZEUR"]) == 5 and trades["XXBTZEUR"][-1][0] == "30000.0"
    later = market.get_recent_trades(pair="XBTEUR", since=trades["last"])
    assert later["XXBTZEUR"] == [] and later["last"] == trades["last"]


def test_sdk_balances(sim: KrakenSimulator, sdk) -> None:
    _, user, trade, key = sdk
    assert user.get_account_balance() == {"ZEUR": "1000.0000", "XXBT": "0.0500000000"}
    trade.create_order(ordertype="limit", side="sell", pair="XBTEUR", volume="0.02", price="40000.0")
    balances = user.get_balances()
    assert (balances["XXBT"]["balance"], balances["XXBT"]["hold_trade"]) == ("0.0500000000", "0.0200000000")
    assert user.get_balance("XBT") == {"currency": "XXBT", "balance": 0.05, "available_balance": 0.03}
    assert sim.balances(key)["XXBT"] == Decimal("0.05")


def test_sdk_market_order_placed_and_queried(sim: KrakenSimulator, sdk) -> None:
    """Trade.create_order sends validate=False, reduce_only=False, stptype=cancel-newest
    and starttm=0: a real order, as on Kraken."""
    _, user, trade, key = sdk
    placed = trade.create_order(ordertype="market", side="buy", pair="XBTEUR", volume="0.001", userref=3)
    txid, = placed["txid"]
    truth, = sim.account_orders(key)
    order = user.get_orders_info(txid=txid)[txid]
    assert (order["status"], order["vol_exec"], order["cost"], order["fee"], order["userref"]) == \
        ("closed", f"{truth.vol_exec:.8f}", f"{truth.cost:.5f}", f"{truth.fee:.5f}", 3)
    assert truth.txid == txid and truth.cost == Decimal("30.015")
    closed = user.get_closed_orders()
    assert closed["count"] == 1 and list(closed["closed"]) == [txid]
    validated = trade.create_order(ordertype="market", side="buy", pair="XBTEUR", volume="0.001", validate=True)
    assert "txid" not in validated and len(sim.account_orders(key)) == 1


def test_sdk_cancel_an_open_lifecycle_order(sim: KrakenSimulator, sdk) -> None:
    _, user, trade, key = sdk
    sim.inject("AddOrder", "lifecycle", pending=2, open=10, fill="0.5")
    txid, = trade.create_order(ordertype="market", side="buy", pair="XBTEUR", volume="0.001")["txid"]
    assert user.get_open_orders()["open"][txid]["status"] == "pending"     # lookup 1
    assert user.get_open_orders()["open"][txid]["status"] == "pending"     # lookup 2
    opened = user.get_open_orders()["open"][txid]                          # lookup 3: half fills
    assert (opened["status"], opened["vol_exec"]) == ("open", "0.00050000")
    assert trade.cancel_order(txid=txid) == {"count": 1}
    assert user.get_open_orders() == {"open": {}}
    order = user.get_orders_info(txid=txid)[txid]
    truth, = sim.account_orders(key)
    assert (order["status"], order["vol_exec"], order["misc"]) == ("canceled", f"{truth.vol_exec:.8f}", "partial")
    with pytest.raises(kraken_exceptions.KrakenUnknownOrderError):
        trade.cancel_order(txid=txid)


def test_sdk_hidden_order_is_unknown_until_it_shows(sim: KrakenSimulator, sdk) -> None:
    _, user, trade, key = sdk
    sim.inject("AddOrder", "lifecycle", hidden=1)
    txid, = trade.create_order(ordertype="market", side="buy", pair="XBTEUR", volume="0.001")["txid"]
    with pytest.raises(kraken_exceptions.KrakenInvalidOrderError):
        user.get_orders_info(txid=txid)
    assert user.get_orders_info(txid=txid)[txid]["status"] == "closed"


def test_sdk_json_bodies(sim: KrakenSimulator, sdk) -> None:
    """The SDK's public request(..., do_json=True) signs a JSON body, as Kraken's newer docs show."""
    _, user, trade, key = sdk
    placed = trade.request("POST", "/0/private/AddOrder", do_json=True,
                           params={"ordertype": "market", "type": "buy", "pair": "XBTEUR", "volume": 0.001,
                                   "validate": False, "reduce_only": False})
    txid, = placed["txid"]
    order = user.request("POST", "/0/private/QueryOrders", do_json=True, params={"txid": [txid], "trades": True})
    assert order[txid]["vol_exec"] == "0.00100000" and len(order[txid]["trades"]) == 1
    assert user.request("POST", "/0/private/Balance", do_json=True)["XXBT"] == "0.0510000000"
    assert sim.account_orders(key)[0].txid == txid


@pytest.mark.parametrize("fault, error", [("deadline_elapsed", "KrakenDeadlineElapsedError"),
                                          ("service_unavailable", "KrakenServiceUnavailableError"),
                                          ("lockout", "KrakenTemporaryLockoutError")])
def test_sdk_knows_the_simulators_error_strings(sim: KrakenSimulator, sdk, fault: str, error: str) -> None:
    _, user, trade, key = sdk
    sim.inject("AddOrder", fault, after=True)
    with pytest.raises(getattr(kraken_exceptions, error)):
        trade.create_order(ordertype="market", side="buy", pair="XBTEUR", volume="0.001")
    assert [o.status for o in sim.account_orders(key)] == ["closed"]      # placed all the same
    with pytest.raises(kraken_exceptions.KrakenInsufficientFundsError):
        trade.create_order(ordertype="market", side="buy", pair="XBTEUR", volume="1")
