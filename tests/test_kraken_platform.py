"""The Kraken platform: the real krakenex client against the Kraken simulator."""
from __future__ import annotations

import multiprocessing
import time
from decimal import Decimal
from itertools import pairwise

import pytest

from includes.agent import new_ref
from includes.errors import (
    AuthenticationError,
    MarketUnavailable,
    OrderStateUnknown,
    OrderTooSmall,
    PermanentError,
    TemporaryError,
    UnknownMarket,
)
from includes.money import percent_change
from includes.platforms.kraken import KrakenPlatform
from simulators.http import Reply, Request, json_reply
from simulators.kraken import KrakenSimulator, new_credentials
from tests.plugins.contract import KrakenSimVenue
from tests.plugins.platforms import START


def test_markets_use_common_names_and_carry_the_pair_rules(kraken_venue):
    markets = kraken_venue.platform().markets()
    btc = markets["BTC/EUR"]
    assert (btc.exchange_symbol, btc.base, btc.quote) == ("XXBTZEUR", "BTC", "EUR")
    assert (btc.price_decimals, btc.volume_decimals, btc.min_volume) == (1, 8, Decimal("0.0001"))
    assert btc.available and btc.status == "online"
    assert markets["DOGE/EUR"].exchange_symbol == "XDGEUR"
    assert markets["ETH/BTC"].exchange_symbol == "XETHXXBT"
    kraken_venue.sim.set_pair_status("XXBTZEUR", "cancel_only")
    btc = kraken_venue.platform().markets()["BTC/EUR"]
    assert not btc.available and btc.status == "cancel_only"


def test_a_run_lists_the_markets_it_needs_and_every_one_when_it_needs_more(kraken_venue):
    """AssetPairs of the run's pairs alone (every pair is a large reply on real Kraken);
    a market beyond them, or a pair Kraken does not know, lists every market, once."""
    sim, platform = kraken_venue.sim, kraken_venue.platform()
    assert set(platform.markets(["BTC/EUR", "ETH/EUR"])) == {"BTC/EUR", "ETH/EUR"}
    assert sim.last_query["AssetPairs"] == {"pair": "XBTEUR,ETHEUR"}
    assert platform.market("XBT").exchange_symbol == "XXBTZEUR"
    assert platform.get_tickers(["ETH/EUR"])["ETH/EUR"].last > 0
    assert sim.calls["AssetPairs"] == 1
    assert platform.market("ADA").symbol == "ADA/EUR"
    assert sim.calls["AssetPairs"] == 2 and sim.last_query["AssetPairs"] == {}
    assert {"DOGE/EUR", "ETH/BTC"} <= platform.markets(["DOGE/EUR"]).keys() <= platform.markets().keys()
    assert sim.calls["AssetPairs"] == 2
    assert set(kraken_venue.platform().markets(["BTC/EUR", "NOPE/EUR"])) >= {"BTC/EUR", "ADA/EUR"}
    assert sim.calls["AssetPairs"] == 4                   # refused for NOPE, then every market


def test_currency_aliases(kraken_venue):
    platform = kraken_venue.platform()
    assert platform.market("XBT").symbol == platform.market("BTC").symbol == "BTC/EUR"
    with pytest.raises(UnknownMarket, match="no market NOPE/EUR"):
        platform.market("NOPE")
    with pytest.raises(UnknownMarket, match="not of the form BASE/QUOTE"):
        platform.market("../etc")


def test_tickers_of_many_markets_in_one_request(kraken_venue):
    platform = kraken_venue.platform()
    platform.markets()
    before = kraken_venue.sim.calls["Ticker"]
    tickers = platform.get_tickers(["BTC/EUR", "ETH/EUR", "ADA/EUR"])
    assert kraken_venue.sim.calls["Ticker"] == before + 1
    bid, ask = kraken_venue.sim.bid_ask("XXBTZEUR")
    assert (tickers["BTC/EUR"].bid, tickers["BTC/EUR"].ask) == (bid, ask)
    assert isinstance(tickers["ADA/EUR"].last, Decimal)
    assert tickers["BTC/EUR"].ts == int(kraken_venue.sim.clock)


def test_the_clock_is_kraken_s_from_a_reply_s_date_or_else_asked(kraken_venue):
    """A Pi may boot with a wrong clock: now() is Kraken's, read off the Date header of
    the run's first reply, and asked of Time (one more paced call) only before any reply."""
    sim = kraken_venue.sim
    sim.set_time(sim.clock + 3 * 86400 + 0.4)            # days away from this machine's clock
    platform = kraken_venue.platform()
    platform.markets()
    asked = sim.calls["Time"]
    assert abs(platform.now() - sim.clock) <= 2
    assert sim.calls["Time"] == asked
    fresh = kraken_venue.platform()
    assert abs(fresh.now() - sim.clock) <= 2
    assert sim.calls["Time"] == asked + 1


def test_candles_keep_kraken_limits_and_mark_the_open_one(kraken_venue):
    platform = kraken_venue.platform()
    candles = platform.get_candles("BTC/EUR", 5)
    assert len(candles) == 720
    assert all(c.closed for c in candles[:-1]) and not candles[-1].closed
    assert candles[-1].ts <= kraken_venue.sim.clock < candles[-1].ts + 300
    assert [b.ts - a.ts for a, b in pairwise(candles)] == [300] * 719
    since = candles[-10].ts
    recent = platform.get_candles("BTC/EUR", 5, since=since)
    assert [c.ts for c in recent] == [c.ts for c in candles[-10:]]
    with pytest.raises(PermanentError, match="interval 7 min"):
        platform.get_candles("BTC/EUR", 7)


def test_price_trend_and_average(kraken_venue):
    platform, sim = kraken_venue.platform(), kraken_venue.sim
    now = int(sim.clock)
    assert platform.get_price("BTC") == platform.get_tickers(["BTC/EUR"])["BTC/EUR"].last
    hourly = platform.get_candles("BTC/EUR", 60, since=now - 30 * 3600)
    then = next(c for c in reversed(hourly) if c.ts + 3600 <= now - 24 * 3600).close
    assert platform.get_trend(24, "BTC") == percent_change(then, platform.get_price("BTC"))
    assert platform.get_price("BTC", at=now - 24 * 3600) == then
    assert platform.get_average("BTC") > 0


def test_balances_map_asset_ids_and_skip_staked_variants(kraken_venue):
    kraken_venue.sim.add_asset("ETH2.S", "ETH2.S")
    kraken_venue.sim.set_balance(kraken_venue.key, "ETH2.S", "3")
    account = kraken_venue.platform().get_account_info()
    assert account.balance("EUR") == Decimal("1000")
    assert account.balance("BTC") == Decimal("0.01")
    assert "ETH2.S" not in account.balances and "ETH2" not in account.balances


def test_buy_is_rounded_fee_included_and_exact(kraken_venue):
    platform, sim = kraken_venue.platform(), kraken_venue.sim
    ref = new_ref()
    _, ask = sim.bid_ask("XXBTZEUR")
    order = platform.buy(Decimal(5), "BTC", ref)
    assert order.ref == ref and order.side == "buy" and order.status == "closed"
    assert order.market == "BTC/EUR"
    assert order.filled == order.volume == order.volume.quantize(Decimal("0.00000001"))
    assert order.cost + order.fee <= Decimal(5)
    assert order.price == ask
    balances = sim.balances(kraken_venue.key)
    assert balances["ZEUR"] == Decimal(1000) - order.cost - order.fee
    assert balances["XXBT"] == Decimal("0.01") + order.filled
    assert platform.get_order(ref) == order
    assert platform.get_order(new_ref()) is None


def test_sell_moves_the_exact_balances(kraken_venue):
    platform, sim = kraken_venue.platform(), kraken_venue.sim
    bid, _ = sim.bid_ask("XXBTZEUR")
    order = platform.sell(Decimal("0.00512345678"), "BTC", new_ref())  # rounded down to 8 decimals
    assert order.filled == Decimal("0.00512345") and order.price == bid
    balances = sim.balances(kraken_venue.key)
    assert balances["XXBT"] == Decimal("0.01") - Decimal("0.00512345")
    assert balances["ZEUR"] == Decimal(1000) + order.cost - order.fee
    assert [o.ref for o in platform.get_order_history()] == [order.ref]


def test_minimums_and_status_are_checked_before_sending(kraken_venue):
    platform, sim = kraken_venue.platform(), kraken_venue.sim
    with pytest.raises(OrderTooSmall, match="below the minimum order of 0.0001 BTC"):
        platform.buy(Decimal("2"), "BTC", new_ref())   # 2 EUR buys < 0.0001 BTC at 30000
    with pytest.raises(OrderTooSmall, match="ADA/EUR: volume .* below the minimum order of 15 ADA"):
        platform.buy(Decimal("3"), "ADA", new_ref())
    sim.set_pair_status("XXBTZEUR", "cancel_only")
    with pytest.raises(MarketUnavailable, match="BTC/EUR is not accepting orders .*cancel_only"):
        kraken_venue.platform().buy(Decimal(5), "BTC", new_ref())
    assert sim.calls["AddOrder"] == 0


def test_the_exchange_refusing_an_order_is_a_clear_error(kraken_venue):
    platform, sim = kraken_venue.platform(), kraken_venue.sim
    sim.set_balance(kraken_venue.key, "ZEUR", "1")
    with pytest.raises(Exception, match="EOrder:Insufficient funds") as info:
        platform.buy(Decimal(5), "BTC", new_ref())
    assert "kraken/AddOrder" in str(info.value)


def test_wrong_key_or_secret_is_refused(kraken_venue):
    other_key, other_secret = new_credentials()
    with pytest.raises(AuthenticationError, match="kraken/BalanceEx: EAPI:Invalid signature"):
        kraken_venue.platform(secret=other_secret).get_account_info()
    with pytest.raises(AuthenticationError, match="EAPI:Invalid key"):
        kraken_venue.platform(key=other_key, secret=other_secret).get_account_info()
    with pytest.raises(AuthenticationError, match="no API key configured"):
        kraken_venue.platform(key="", secret="").get_account_info()


@pytest.mark.parametrize("fault", ["http_520", "malformed_json", "service_unavailable", "busy",
                                   "rate_limit", "invalid_nonce"])
def test_safe_calls_are_retried_through_a_passing_fault(kraken_venue, fault):
    platform = kraken_venue.platform()
    kraken_venue.sim.inject("BalanceEx", fault, times=1)
    assert platform.get_account_info().balance("EUR") == Decimal(1000)
    assert kraken_venue.sim.calls["BalanceEx"] == 2


@pytest.mark.parametrize("fault, message", [
    ("http_520", "kraken/Ticker: HTTP error from Kraken | HTTP 520"),
    ("malformed_json", "kraken/Ticker: reply is not JSON | HTTP 200"),
    ("service_unavailable", "kraken/Ticker: EService:Unavailable"),
])
def test_lasting_faults_end_in_one_line_errors(kraken_venue, fault, message):
    platform = kraken_venue.platform(retries=1)
    platform.markets()
    kraken_venue.sim.inject("Ticker", fault, times=None)
    with pytest.raises(TemporaryError) as info:
        platform.get_tickers(["BTC/EUR"])
    assert str(info.value) == message
    assert kraken_venue.sim.calls["Ticker"] == 2


class WrongShapes(KrakenSimulator):
    """The simulator, but once `result` is set every call but the pair and asset lists has it as
    its result: valid JSON of the wrong shape, as a proxy or a changed API may answer."""

    result: object = ...

    def handle(self, request: Request) -> Reply:
        if self.result is ... or request.path.endswith(("/AssetPairs", "/Assets")):
            return super().handle(request)
        return json_reply({"error": [], "result": self.result})


@pytest.mark.parametrize("result", [[1], "text", None])
def test_a_reply_of_the_wrong_shape_is_a_temporary_error_that_says_so(tmp_path, result):
    venue = KrakenSimVenue(tmp_path, WrongShapes(clock=START))
    try:
        platform = venue.platform(retries=0)
        platform.markets()
        venue.sim.result = result
        calls = {"clock": venue.platform(retries=0).clock, "get_tickers": lambda: platform.get_tickers(["BTC/EUR"]),
                 "get_candles": lambda: platform.get_candles("BTC/EUR", 60),
                 "get_account_info": platform.get_account_info,
                 "get_order by ref": lambda: platform.get_order(new_ref()),
                 "get_order by id": lambda: platform.get_order(new_ref(), "OABCDE-FGHIJ-KLMNOP"),
                 "get_order_history": platform.get_order_history}
        for call in calls.values():
            with pytest.raises(TemporaryError, match=r"^kraken/\S+: malformed .+ \(\w+Error: .*\)$"):
                call()
    finally:
        venue.close()


def test_a_timeout_is_a_temporary_error(kraken_venue):
    platform = kraken_venue.platform(timeout=0.3, retries=0)
    kraken_venue.sim.inject("Time", "delay", seconds=1)
    with pytest.raises(TemporaryError, match="kraken/Time: no reply within 0.3 s"):
        platform.now()


def test_a_closed_port_is_a_temporary_error(kraken_venue):
    platform = kraken_venue.platform(retries=0)
    kraken_venue.sim.stop()
    with pytest.raises(TemporaryError, match="kraken/AssetPairs: connection failed"):
        platform.markets()


@pytest.mark.parametrize("variant", [{}, {"seconds": 3}])
def test_an_order_whose_reply_is_lost_is_found_by_its_ref_not_sent_again(kraken_venue, variant):
    platform, sim = kraken_venue.platform(), kraken_venue.sim
    platform.markets()
    sim.inject("AddOrder", "lost_reply", **variant)
    ref = new_ref()
    order = platform.buy(Decimal(5), "BTC", ref)
    assert order.ref == ref and order.status == "closed"
    assert sim.calls["AddOrder"] == 1
    assert len(platform.get_order_history()) == 1


def test_an_order_lost_before_reaching_the_book_is_unknown_not_resent(kraken_venue):
    platform, sim = kraken_venue.platform(), kraken_venue.sim
    platform.markets()
    sim.inject("AddOrder", "http_500")
    ref = new_ref()
    with pytest.raises(OrderStateUnknown, match=f"order {ref} for BTC/EUR may be placed: .*HTTP 500"):
        platform.buy(Decimal(5), "BTC", ref)
    assert sim.calls["AddOrder"] == 1
    assert platform.get_order(ref) is None
    assert sim.balances(kraken_venue.key)["ZEUR"] == Decimal(1000)


@pytest.mark.parametrize("fault", ["invalid_nonce", "rate_limit"])
def test_an_order_refused_at_the_door_is_sent_again_once(kraken_venue, fault):
    platform, sim = kraken_venue.platform(), kraken_venue.sim
    platform.markets()
    sim.inject("AddOrder", fault)
    order = platform.buy(Decimal(5), "BTC", new_ref())
    assert sim.calls["AddOrder"] == 2
    assert len(platform.get_order_history()) == 1 and order.filled > 0


def test_a_partial_fill_is_reported_as_such(kraken_venue):
    platform, sim = kraken_venue.platform(), kraken_venue.sim
    platform.markets()
    sim.inject("AddOrder", "partial_fill", fraction="0.5")
    order = platform.buy(Decimal(10), "BTC", new_ref())
    assert order.status == "canceled" and 0 < order.filled < order.volume
    assert sim.balances(kraken_venue.key)["XXBT"] == Decimal("0.01") + order.filled


def _slow_balance(venue_args: tuple, queue) -> None:
    url, key, secret, state_dir = venue_args
    platform = KrakenPlatform(api_url=url, key=key, secret=secret, state_dir=state_dir, retries=0)
    try:
        platform.get_account_info()
        queue.put("ok")
    except Exception as exc:  # noqa: BLE001 - reported to the parent
        queue.put(str(exc))


def test_a_later_nonce_from_another_process_never_overtakes_a_slow_call(kraken_venue):
    """krakenex alone would fail here: the second call's higher nonce reaches
    Kraken first, and the slow first call is then refused as EAPI:Invalid nonce."""
    sim = kraken_venue.sim
    mine = kraken_venue.platform(retries=0)
    mine.markets()
    sim.inject("BalanceEx", "delay", seconds=0.6)
    queue = multiprocessing.get_context("fork").Queue()
    args = (sim.url, kraken_venue.key, kraken_venue.secret, kraken_venue.state_dir)
    other = multiprocessing.get_context("fork").Process(target=_slow_balance, args=(args, queue))
    other.start()
    deadline = time.monotonic() + 10
    while sim.calls["BalanceEx"] == 0:  # the other process's call is in the simulator, delayed
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert mine.get_account_info().balance("EUR") == Decimal(1000)
    assert queue.get(timeout=10) == "ok"
    other.join(10)


def test_the_call_counter_waits_instead_of_hitting_the_limit(kraken_venue):
    key, secret = kraken_venue.sim.add_account(balances={"ZEUR": "1"}, tier="starter")
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        time.sleep(seconds)

    platform = kraken_venue.platform(key=key, secret=secret, rate_tier="starter", retries=0, sleep=sleep)
    for _ in range(17):  # starter: 15 at most, decaying 0.33 per second
        platform.get_account_info()
    assert sum(waits) > 3
