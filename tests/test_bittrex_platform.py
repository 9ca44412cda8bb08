"""The Bittrex platform against the Bittrex simulator.

Covered here: bittrex-api unchanged but for its base URL and its request
wrapper; errors carrying the HTTP status and Bittrex's code; faults; orders
sent once; candles paged through history.  Then the cron jobs (get_api_data,
available_markets, trade_agent), each running whole cycles on the simulator.
"""
from __future__ import annotations

import logging
from decimal import Decimal
from itertools import pairwise

import pytest
from bittrex_api.v3 import OrderDirection, OrderType, TimeInForce

from includes.agent import new_ref, run_agent
from includes.errors import (
    AuthenticationError,
    InsufficientFunds,
    MarketUnavailable,
    OrderStateUnknown,
    OrderTooSmall,
    PermanentError,
    RateLimited,
    TemporaryError,
    UnknownMarket,
)
from includes.marketdata import AVAILABLE_FILE, available_markets, get_api_data
from includes.platforms.bittrex import BittrexPlatform
from includes.storage import open_market_db
from includes.storage.marketdb import MarketDB
from simulators.bittrex import START_TIME, BittrexSimulator
from simulators.http import Reply, Request, json_reply

START = int(START_TIME)
MARKETS = ["ADA/EUR", "BTC/EUR", "ETH/EUR", "LTC/EUR", "XRP/EUR"]
POST_ORDER = "POST /v3/orders"
HISTORICAL = ("GET /v3/markets/{marketSymbol}/candles[/{candleType}]/{candleInterval}/historical/{year}"
              "[/{month}[/{day}]]")


def test_markets_keep_bittrex_ids_status_and_notice(bittrex_venue):
    bittrex_venue.sim.set_market_status("BTC-EUR", "OFFLINE", "wallet maintenance")
    markets = bittrex_venue.platform().markets()
    btc = markets["BTC/EUR"]
    assert (btc.exchange_symbol, btc.status, btc.available, btc.notice) == (
        "BTC-EUR", "OFFLINE", False, "wallet maintenance")
    xrp, eth_btc = markets["XRP/EUR"], markets["ETH/BTC"]
    assert (xrp.price_decimals, xrp.volume_decimals, xrp.min_volume) == (5, 8, Decimal(10))
    assert (eth_btc.exchange_symbol, eth_btc.min_cost) == ("ETH-BTC", Decimal("0.0001"))  # 10 000 satoshi


@pytest.mark.parametrize("call, cls, status, code", [
    (lambda c: c.get_ticker("NOPE-EUR"), UnknownMarket, 404, "MARKET_DOES_NOT_EXIST"),
    (lambda c: c.get_ticker("EUR-BTC"), UnknownMarket, 400, "MARKET_NAME_REVERSED"),
    (lambda c: c.post_order(c.create_new_order_dict("BTC-EUR", OrderDirection.BUY, OrderType.MARKET,
                                                    TimeInForce.IMMEDIATE_OR_CANCEL, quantity="0.00001")),
     OrderTooSmall, 409, "MIN_TRADE_REQUIREMENT_NOT_MET"),
    (lambda c: c.post_order(c.create_new_order_dict("BTC-EUR", OrderDirection.BUY, OrderType.MARKET,
                                                    TimeInForce.IMMEDIATE_OR_CANCEL, quantity="1")),
     InsufficientFunds, 409, "INSUFFICIENT_FUNDS"),
    (lambda c: c.post_order(c.create_new_order_dict("BTC-EUR", OrderDirection.BUY, OrderType.MARKET,
                                                    TimeInForce.GOOD_TIL_CANCELLED, quantity="0.001")),
     PermanentError, 400, "INVALID_MARKET_ORDER"),
])
def test_error_replies_become_the_projects_exceptions_with_status_and_code(bittrex_venue, call, cls,
                                                                           status, code):
    with pytest.raises(cls) as info:
        call(bittrex_venue.platform().client)
    assert type(info.value) is cls and (info.value.status, info.value.code) == (status, code)
    assert str(info.value).startswith("bittrex/") and "\n" not in str(info.value)


def test_wrong_or_missing_keys_are_refused(bittrex_venue):
    with pytest.raises(AuthenticationError, match=r"bittrex/GET /v3/balances: INVALID_SIGNATURE \| HTTP 401"):
        bittrex_venue.platform(secret="not-the-secret").get_account_info()
    with pytest.raises(AuthenticationError, match="APIKEY_INVALID"):
        bittrex_venue.platform(key="no-such-key").get_account_info()
    with pytest.raises(AuthenticationError, match="no API key configured"):
        bittrex_venue.platform(key="", secret="").get_account_info()


@pytest.mark.parametrize("fault", ["http_500", "http_503", "malformed_json", "throttled"])
def test_safe_calls_are_retried_through_a_passing_fault(bittrex_venue, fault):
    platform = bittrex_venue.platform(sleep=lambda s: None)
    platform.markets()
    bittrex_venue.sim.inject("GET /v3/markets/tickers", fault)
    assert platform.get_tickers(["BTC/EUR"])["BTC/EUR"].ask == bittrex_venue.bid_ask("BTC/EUR")[1]
    assert bittrex_venue.sim.calls["GET /v3/markets/tickers"] == 2


@pytest.mark.parametrize("fault, cls, message", [
    ("http_500", TemporaryError, "bittrex/GET /v3/markets/tickers: reply is not JSON | HTTP 500"),
    ("http_503", TemporaryError, "bittrex/GET /v3/markets/tickers: SERVICE_UNAVAILABLE | HTTP 503"),
    ("malformed_json", TemporaryError, "bittrex/GET /v3/markets/tickers: reply is not JSON | HTTP 200"),
    ("throttled", RateLimited, "bittrex/GET /v3/markets/tickers: THROTTLED | HTTP 429"),
])
def test_lasting_faults_end_in_one_line_errors(bittrex_venue, fault, cls, message):
    platform = bittrex_venue.platform(retries=1, sleep=lambda s: None)
    platform.markets()
    bittrex_venue.sim.inject("GET /v3/markets/tickers", fault, times=None)
    with pytest.raises(cls) as info:
        platform.get_tickers(["BTC/EUR"])
    assert str(info.value) == message
    assert bittrex_venue.sim.calls["GET /v3/markets/tickers"] == 2


def test_a_silent_server_times_out_and_a_closed_port_fails_fast(bittrex_venue):
    bittrex_venue.sim.inject("GET /v3/ping", "delay", seconds=1)
    with pytest.raises(TemporaryError, match="bittrex/GET /v3/ping: no reply within 0.3 s"):
        bittrex_venue.platform(timeout=0.3, retries=0).now()
    platform = bittrex_venue.platform(retries=0)
    bittrex_venue.sim.stop()
    with pytest.raises(TemporaryError, match="bittrex/GET /v3/markets: connection failed"):
        platform.markets()


class WrongShapes(BittrexSimulator):
    """The simulator, but once `body` is set every call but the market list is answered with it:
    valid JSON of the wrong shape, as a proxy or a changed API may answer."""

    body: object = ...

    def handle(self, request: Request) -> Reply:
        if self.body is ... or request.path == "/v3/markets":
            return super().handle(request)
        return json_reply(self.body)


@pytest.mark.parametrize("body", [{"symbol": "BTC-EUR"}, [1], "text", None])
def test_a_reply_of_the_wrong_shape_is_a_temporary_error_that_says_so(body):
    with WrongShapes() as sim:
        sim.add_account("key", "secret", {"EUR": "10"})
        platform = BittrexPlatform(api_url=sim.url + "/v3", key="key", secret="secret", retries=0,
                                   calls_per_second=1000)
        btc = platform.markets()["BTC/EUR"]
        sim.body = body
        calls = {"clock": platform.clock, "get_account_info": platform.get_account_info,
                 "bid_ask": lambda: platform.bid_ask(btc), "get_tickers": lambda: platform.get_tickers(["BTC/EUR"]),
                 "get_candles": lambda: platform.get_candles("BTC/EUR", 60, since=START - 40 * 86400),
                 "get_order": lambda: platform.get_order(new_ref()),
                 "get_order_history": platform.get_order_history}
        for call in calls.values():
            with pytest.raises(TemporaryError, match=r"^bittrex/\S+: malformed .+ \(\w+Error: .*\)$"):
                call()


def test_an_order_goes_out_once_with_an_exact_quantity_and_our_uuid(bittrex_venue):
    sim = bittrex_venue.sim
    ref = new_ref()
    order = bittrex_venue.platform().buy(Decimal(5), "BTC", ref)
    [wire] = sim.orders("contract-key")
    assert (wire["type"], wire["timeInForce"], wire["clientOrderId"]) == ("MARKET", "IMMEDIATE_OR_CANCEL", ref)
    assert Decimal(wire["quantity"]) == order.volume and sim.calls[POST_ORDER] == 1
    with pytest.raises(PermanentError, match="'ref-1' is not a UUID"):
        bittrex_venue.platform().buy(Decimal(5), "BTC", "ref-1")
    assert sim.calls[POST_ORDER] == 1


def test_a_clientorderid_already_used_is_looked_up_not_filled_again(bittrex_venue, caplog):
    sim = bittrex_venue.sim
    ref = new_ref()
    first = bittrex_venue.platform().buy(Decimal(5), "BTC", ref)
    with caplog.at_level(logging.WARNING):
        again = bittrex_venue.platform().buy(Decimal(5), "BTC", ref)
    assert again == first and sim.calls[POST_ORDER] == 2
    assert "HTTP 409 | CLIENTORDERID_ALREADY_EXISTS" in caplog.text
    assert bittrex_venue.balance("BTC") == Decimal("0.01") + first.filled


@pytest.mark.parametrize("fault", ["http_500", "http_503"])
def test_a_failed_post_is_never_sent_again(bittrex_venue, fault):
    platform = bittrex_venue.platform()
    platform.markets()
    bittrex_venue.fail_next_order(fault)
    with pytest.raises(OrderStateUnknown):
        platform.buy(Decimal(5), "BTC", new_ref())
    assert bittrex_venue.sim.calls[POST_ORDER] == 1 and bittrex_venue.balance("EUR") == Decimal(1000)


def test_a_throttled_order_was_refused_at_the_door_and_is_sent_again(bittrex_venue):
    platform = bittrex_venue.platform(sleep=lambda s: None)
    platform.markets()
    bittrex_venue.fail_next_order("throttled")
    order = platform.buy(Decimal(5), "BTC", new_ref())
    assert bittrex_venue.sim.calls[POST_ORDER] == 2 and order.filled > 0
    assert len(platform.get_order_history()) == 1


def test_an_offline_market_refuses_the_order_once(bittrex_venue):
    platform = bittrex_venue.platform()
    platform.markets()  # listed while still online
    bittrex_venue.sim.set_market_status("BTC-EUR", "OFFLINE")
    with pytest.raises(MarketUnavailable) as info:
        platform.buy(Decimal(5), "BTC", new_ref())
    assert (info.value.status, info.value.code) == (503, "MARKET_OFFLINE")
    assert bittrex_venue.sim.calls[POST_ORDER] == 1


def test_a_partial_fill_is_reported_as_a_canceled_remainder(bittrex_venue):
    bittrex_venue.fail_next_order("partial_fill")
    order = bittrex_venue.platform().buy(Decimal(10), "BTC", new_ref())
    assert order.status == "canceled" and 0 < order.filled < order.volume
    assert bittrex_venue.balance("BTC") == Decimal("0.01") + order.filled
    assert bittrex_venue.balance("EUR") == Decimal(1000) - order.cost - order.fee


@pytest.mark.parametrize("interval, days, pages", [(60, 45, 2), (1440, 380, 1)])
def test_history_is_paged_by_month_or_year(bittrex_venue, interval, days, pages):
    since = START - days * 86400
    candles = bittrex_venue.platform().get_candles("BTC/EUR", interval, since=since)
    step = interval * 60
    assert candles[0].ts == -(-since // step) * step and candles[-1].ts == START // step * step
    assert [b.ts - a.ts for a, b in pairwise(candles)] == [step] * (len(candles) - 1)
    assert bittrex_venue.sim.calls[HISTORICAL] == pages
    with pytest.raises(PermanentError, match=r"interval 15 min is not one of Bittrex's \(1, 5, 60, 1440\)"):
        bittrex_venue.platform().get_candles("BTC/EUR", 15)


# --- the cron jobs on Bittrex -------------------------------------------------------------

def test_get_api_data_runs_whole_cycles(bittrex_job_config, bittrex_venue):
    sim = bittrex_venue.sim
    cfg = bittrex_job_config()
    assert get_api_data(cfg) == 0
    db = MarketDB(cfg.storage.market_db)
    first = {m: db.candles("bittrex", m, 5) for m in MARKETS}
    for candles in first.values():
        assert len(candles) == 720  # 720 candles of history, from `historical` days and `recent`
        assert candles[-1].ts <= START < candles[-1].ts + 300
    assert len(db.tickers("bittrex", "BTC/EUR")) == 1
    fetches = sim.calls.copy()
    assert get_api_data(cfg) == 0  # same minute: no candle is due
    assert {k: v - fetches[k] for k, v in sim.calls.items() if "candles" in k[1]} == {
        k: 0 for k in fetches if "candles" in k[1]}
    sim.advance(330)  # the open candle closed, a new one opened
    assert get_api_data(cfg) == 0
    btc = db.candles("bittrex", "BTC/EUR", 5)
    assert len(btc) == 721 and btc[-2].ts == first["BTC/EUR"][-1].ts
    db.close()


def test_available_markets_runs_whole_cycles(tmp_path, bittrex_job_config, bittrex_venue):
    sim = bittrex_venue.sim
    cfg = bittrex_job_config()
    assert available_markets(cfg) == 0
    listed = (tmp_path / "tmp" / AVAILABLE_FILE).read_text().splitlines()
    assert listed[0].startswith("# available markets of bittrex at 2023-11-14T22:13:20Z")
    assert "BTC/EUR BTC-EUR ONLINE" in listed and "ETH/BTC ETH-BTC ONLINE" in listed
    sim.set_market_status("BTC-EUR", "OFFLINE", "maintenance")
    sim.advance(3600)
    assert available_markets(cfg) == 0
    assert "BTC/EUR BTC-EUR ONLINE" not in (tmp_path / "tmp" / AVAILABLE_FILE).read_text()
    db = MarketDB(cfg.storage.market_db)
    btc = next(r for r in db.markets("bittrex") if r["market"] == "BTC/EUR")
    assert (btc["status"], btc["available"]) == ("OFFLINE", False)
    db.close()


def _move(sim, market: str, factor: str) -> None:
    sim.set_price(market, (sim.price(market) * Decimal(factor)).quantize(sim.price(market)))


def _rising(sim) -> None:
    """BTC and ETH rose over 24 h, the others fell."""
    for market, factor in {"BTC-EUR": "1.3", "ETH-EUR": "1.2", "LTC-EUR": "0.7", "XRP-EUR": "0.7",
                           "ADA-EUR": "0.7"}.items():
        _move(sim, market, factor)


def _journal(cfg, mode: str) -> list:
    db = open_market_db(cfg)
    try:
        return db.journal(mode, agent=cfg.storage.namespace)
    finally:
        db.close()


def test_trade_agent_buys_then_sells_live(bittrex_job_config, bittrex_venue):
    sim = bittrex_venue.sim
    _rising(sim)
    cfg = bittrex_job_config(trading={"max_threads": 4, "dry_run": False})
    summary = run_agent(cfg)
    assert summary.mode == "live" and len(summary.bought) == 2
    rows = _journal(cfg, "live")
    assert [(r["side"], r["status"], r["market"]) for r in rows] == [
        ("buy", "closed", "BTC/EUR"), ("buy", "closed", "ETH/EUR")]
    assert bittrex_venue.balance("EUR") == Decimal(1000) - sum(r["cost"] + r["fee"] for r in rows)
    assert bittrex_venue.balance("BTC") == Decimal("0.01") + rows[0]["filled"]
    assert {o["clientOrderId"] for o in sim.orders("contract-key")} == {r["ref"] for r in rows}

    sim.advance(600)
    _move(sim, "BTC-EUR", "1.05")  # +5% gross, above sell_percent 3 net of both fees
    summary = run_agent(cfg)
    assert len(summary.sold) == 1 and "BTC" in summary.sold[0]
    rows = _journal(cfg, "live")
    sell = rows[2]
    assert (sell["side"], sell["status"], sell["market"], sell["filled"]) == ("sell", "closed", "BTC/EUR",
                                                                           rows[0]["filled"])
    btc = [r for r in rows if r["market"] == "BTC/EUR"]
    assert bittrex_venue.balance("BTC") == Decimal("0.01") + sum(
        r["filled"] if r["side"] == "buy" else -r["filled"] for r in btc)
    assert bittrex_venue.balance("EUR") == Decimal(1000) + sum(
        -(r["cost"] + r["fee"]) if r["side"] == "buy" else r["cost"] - r["fee"] for r in rows)


def test_trade_agent_dry_run_makes_no_private_call(bittrex_job_config, bittrex_venue):
    sim = bittrex_venue.sim
    _rising(sim)
    cfg = bittrex_job_config(trading={"max_threads": 4})
    summary = run_agent(cfg)
    assert summary.mode == "dry" and len(summary.bought) == 2
    assert not [k for k in sim.calls if k[1].startswith(("/v3/balances", "/v3/orders"))]
    assert [(r["side"], r["market"]) for r in _journal(cfg, "dry")] == [("buy", "BTC/EUR"), ("buy", "ETH/EUR")]
    assert bittrex_venue.balance("EUR") == Decimal(1000)
