"""The Kraken simulator, driven over real HTTP by the real krakenex client (only `uri` changed).

Expected figures are worked out by hand from the spec's rules: with spread 0.1 %
a price of 30000.0 gives ask 30015.0 and bid 29985.0; the taker fee is 0.26 %,
the maker fee 0.16 %, costs and fees have 5 decimals on EUR pairs.
"""
from __future__ import annotations

import base64
import itertools
import json
import random
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from decimal import ROUND_CEILING, Decimal
from itertools import pairwise
from pathlib import Path

import krakenex
import pytest
import requests

from simulators.kraken import KrakenSimulator, new_credentials, sign
from simulators.prices import Series, read_candle_csv, synthetic_path
from tests.plugins.kraken_sim import KRAKEN_TEST_BALANCES

ROOT = Path(__file__).resolve().parent.parent
KRAKEN_SECRET = "kQH5HW/8p1uGOVjbgWA7FunAmGO8lsSUXNsu3eow76sz84Q18fWxnyRzBHCd3pd5nE9qa99HAZtuZuj6F1huXg=="
OUR_SECRET = base64.b64encode(bytes(range(64))).decode()
ORDER_ID = re.compile(r"O[A-Z0-9]{5}-[A-Z0-9]{5}-[A-Z0-9]{6}")
TRADE_ID = re.compile(r"T[A-Z0-9]{5}-[A-Z0-9]{5}-[A-Z0-9]{6}")
ORDER_FIELDS = {"refid", "userref", "cl_ord_id", "status", "opentm", "starttm", "expiretm", "descr", "vol",
                "vol_exec", "cost", "fee", "price", "stopprice", "limitprice", "misc", "oflags"}
DESCR_FIELDS = {"pair", "type", "ordertype", "price", "price2", "leverage", "order", "close"}
PAIR_FIELDS = {"altname", "wsname", "aclass_base", "aclass_quote", "base", "quote", "lot", "pair_decimals",
               "cost_decimals", "lot_decimals", "lot_multiplier", "leverage_buy", "leverage_sell", "fees",
               "fees_maker", "fee_volume_currency", "margin_call", "margin_stop", "ordermin", "costmin",
               "tick_size", "status", "long_position_limit", "short_position_limit"}
TRADE_FIELDS = {"ordertxid", "postxid", "pair", "time", "type", "ordertype", "price", "cost", "fee", "vol",
                "margin", "misc", "trade_id", "maker"}
BUY = {"pair": "XBTEUR", "type": "buy", "ordertype": "market", "volume": "0.001"}


def call(api: krakenex.API, method: str, **data: object) -> dict:
    """A private call; krakenex's nonce is the clock in ms, so calls stay 1 ms apart."""
    time.sleep(0.0015)
    return api.query_private(method, data)


def ok(reply: dict) -> dict:
    assert reply["error"] == [], reply
    return reply["result"]


def raw_private(sim: KrakenSimulator, key: str, secret: str, method: str, body: str,
                signature: str | None = None) -> dict:
    """A private call with an exact body (and our own nonce), signed unless `signature` is given."""
    path = f"/0/private/{method}"
    headers = {"API-Key": key, "API-Sign": signature or sign(secret, path, body),
               "Content-Type": "application/x-www-form-urlencoded"}
    return requests.post(sim.url + path, data=body.encode(), headers=headers, timeout=5).json()


def client(sim: KrakenSimulator, key: str = "", secret: str = "") -> krakenex.API:
    api = krakenex.API(key, secret)
    api.uri = sim.url
    return api


# --- authentication ------------------------------------------------------------------------

@pytest.mark.parametrize("secret, path, body, expected", [
    (KRAKEN_SECRET, "/0/private/AddOrder",
     "nonce=1616492376594&ordertype=limit&pair=XBTUSD&price=37500&type=buy&volume=1.25",
     "4/dpxb3iT4tp/ZCVEwSnEsLxx0bqyhLpdfOpc6fn7OR8+UClSV5n9E6aSS8MPtnRfp32bAb0nmbRn6H8ndwLUQ=="),
    (OUR_SECRET, "/0/private/AddOrder",
     "pair=XBTEUR&type=buy&ordertype=limit&price=30000.0&volume=0.0002&userref=42&nonce=1700000000000",
     "VUUOWOphJcB245ywaXn+W6S1Q0Tr8Sclk+6iWy1WDOlTEbxHeQLw3twdhrbt5L1Uf+vq5ZGo7bP6gBTm82TPVg=="),
    (OUR_SECRET, "/0/private/Balance", "nonce=1700000000001",
     "V1Jsg37iXXJxropsUgZX/loVhpECFPVXKWURUxfTsHCQMmRfYAoc6I6kouKjAjFiNf2Y3OHE0Y24k0C4UkT6Fw=="),
])
def test_signature_matches_the_spec_vectors(secret: str, path: str, body: str, expected: str) -> None:
    assert sign(secret, path, body) == expected


def test_server_accepts_the_spec_vectors_and_only_once(kraken_sim: KrakenSimulator) -> None:
    kraken_sim.add_account("kraken-key", KRAKEN_SECRET)
    body = "nonce=1616492376594&ordertype=limit&pair=XBTUSD&price=37500&type=buy&volume=1.25"
    signature = "4/dpxb3iT4tp/ZCVEwSnEsLxx0bqyhLpdfOpc6fn7OR8+UClSV5n9E6aSS8MPtnRfp32bAb0nmbRn6H8ndwLUQ=="
    # signature and nonce pass; the account simply has no dollars
    assert raw_private(kraken_sim, "kraken-key", "", "AddOrder", body, signature)["error"] == \
        ["EOrder:Insufficient funds"]

    kraken_sim.add_account("our-key", OUR_SECRET, {"ZEUR": "100"})
    body = "pair=XBTEUR&type=buy&ordertype=limit&price=30000.0&volume=0.0002&userref=42&nonce=1700000000000"
    signature = "VUUOWOphJcB245ywaXn+W6S1Q0Tr8Sclk+6iWy1WDOlTEbxHeQLw3twdhrbt5L1Uf+vq5ZGo7bP6gBTm82TPVg=="
    added = ok(raw_private(kraken_sim, "our-key", "", "AddOrder", body, signature))
    assert added["descr"] == {"order": "buy 0.00020000 XBTEUR @ limit 30000.0"}
    assert ORDER_ID.fullmatch(added["txid"][0])
    body, signature = "nonce=1700000000001", \
        "V1Jsg37iXXJxropsUgZX/loVhpECFPVXKWURUxfTsHCQMmRfYAoc6I6kouKjAjFiNf2Y3OHE0Y24k0C4UkT6Fw=="
    assert "ZEUR" in ok(raw_private(kraken_sim, "our-key", "", "Balance", body, signature))
    assert raw_private(kraken_sim, "our-key", "", "Balance", body, signature)["error"] == ["EAPI:Invalid nonce"]


def test_unknown_key_and_bad_signature(kraken_sim: KrakenSimulator) -> None:
    stranger = client(kraken_sim, *new_credentials())
    assert stranger.query_private("Balance")["error"] == ["EAPI:Invalid key"]
    wrong_secret = client(kraken_sim, kraken_sim.test_key, new_credentials()[1])
    assert wrong_secret.query_private("Balance")["error"] == ["EAPI:Invalid signature"]
    no_headers = requests.post(kraken_sim.url + "/0/private/Balance", data={"nonce": "1"}, timeout=5)
    assert no_headers.status_code == 200 and no_headers.json() == {"error": ["EAPI:Invalid key"]}


def test_signature_covers_the_raw_body(kraken_sim: KrakenSimulator, kraken_api: krakenex.API) -> None:
    # spec §3.2: krakenex signs str(list) but requests sends txid=A&txid=B
    assert kraken_api.query_private("QueryOrders", {"txid": ["A", "B"]})["error"] == ["EAPI:Invalid signature"]
    body = "nonce=5&asset=ZEUR"
    signature = sign(kraken_sim.test_secret, "/0/private/TradeBalance", "nonce=5&asset=ZUSD")
    assert raw_private(kraken_sim, kraken_sim.test_key, "", "TradeBalance", body, signature)["error"] == \
        ["EAPI:Invalid signature"]


def test_nonce_must_increase_and_forged_calls_do_not_use_it_up(kraken_sim: KrakenSimulator) -> None:
    key, secret = kraken_sim.add_account()

    def balance(nonce: object, secret: str = secret) -> list[str]:
        return raw_private(kraken_sim, key, secret, "Balance", f"nonce={nonce}")["error"]

    assert balance(100) == []
    assert balance(100) == ["EAPI:Invalid nonce"]
    assert balance(99) == ["EAPI:Invalid nonce"]
    assert balance(10 ** 15, new_credentials()[1]) == ["EAPI:Invalid signature"]
    assert balance(101) == []
    assert balance("soon") == ["EAPI:Invalid nonce"]
    assert raw_private(kraken_sim, key, secret, "Balance", "")["error"] == ["EAPI:Invalid nonce"]


def test_nonce_window_tolerates_slightly_late_nonces_once(kraken_sim: KrakenSimulator) -> None:
    key, secret = kraken_sim.add_account(nonce_window=10)
    errors = [raw_private(kraken_sim, key, secret, "Balance", f"nonce={n}")["error"]
              for n in (100, 95, 95, 90, 101)]
    assert errors == [[], [], ["EAPI:Invalid nonce"], ["EAPI:Invalid nonce"], []]


def test_simulator_under_a_path_prefix(kraken_sim: KrakenSimulator) -> None:
    with KrakenSimulator(prefix="/kraken") as sim:
        key, secret = sim.add_account(balances={"ZEUR": "5"})
        api = client(sim, key, secret)
        assert sim.url.endswith("/kraken")
        assert ok(api.query_private("Balance")) == {"ZEUR": "5.0000"}
        assert ok(api.query_public("Time"))["unixtime"] == int(sim.clock)


# --- rate limits ---------------------------------------------------------------------------

def counted_calls(sim: KrakenSimulator, tier: str):
    key, secret = sim.add_account(balances={"ZEUR": "100"}, tier=tier)
    nonces = itertools.count(1)

    def private(method: str, body: str = "") -> list[str]:
        return raw_private(sim, key, secret, method, "&".join(filter(None, [body, f"nonce={next(nonces)}"])))["error"]

    return private


def test_call_counter_limits_a_starter_key(kraken_sim: KrakenSimulator) -> None:
    private = counted_calls(kraken_sim, "starter")
    assert [private("Balance") for _ in range(15)] == [[]] * 15
    assert private("Balance") == ["EAPI:Rate limit exceeded"]
    kraken_sim.advance(3600)        # the counter decays in real time, not in simulated time
    assert private("Balance") == ["EAPI:Rate limit exceeded"]
    assert private("AddOrder", "pair=XBTEUR&type=buy&ordertype=market&volume=0.0001&validate=1") == []
    assert private("CancelOrder", "txid=OAAAAA-BBBBB-CCCCCC") == ["EOrder:Unknown order"]


def test_a_test_can_let_the_counter_decay_at_once(kraken_sim: KrakenSimulator) -> None:
    private = counted_calls(kraken_sim, "starter")
    assert [private("Balance") for _ in range(15)] == [[]] * 15
    key = list(kraken_sim._accounts)[-1]
    assert kraken_sim.rest_counter(key) > 14
    kraken_sim.decay_counters(4)                  # 4 s at -0.33/s: room for one call
    assert 13 < kraken_sim.rest_counter(key) < 14
    assert private("Balance") == [] and private("Balance") == ["EAPI:Rate limit exceeded"]
    kraken_sim.decay_counters(300)               # the gap between two cron runs
    assert kraken_sim.rest_counter(key) == 0
    assert [private("Balance") for _ in range(15)] == [[]] * 15


def test_trades_history_counts_two(kraken_sim: KrakenSimulator) -> None:
    private = counted_calls(kraken_sim, "starter")
    assert [private("Balance") for _ in range(14)] == [[]] * 14
    assert private("TradesHistory") == ["EAPI:Rate limit exceeded"]
    assert private("Balance") == []


def test_call_counter_decays(kraken_sim: KrakenSimulator) -> None:
    private = counted_calls(kraken_sim, "pro")
    answers = list(itertools.takewhile(lambda errors: errors == [], (private("Balance") for _ in range(40))))
    assert 20 <= len(answers) < 40, "a Pro key allows 20 calls at once"
    deadline = time.monotonic() + 5
    while private("Balance") != [] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert time.monotonic() < deadline, "a Pro key regains a call every second"


def test_public_calls_unlimited_unless_a_per_ip_limit_is_set(kraken_api: krakenex.API) -> None:
    assert all(kraken_api.query_public("Time")["error"] == [] for _ in range(30))
    with KrakenSimulator(public_limit=(3, 0.01)) as sim:
        api = client(sim)
        assert [api.query_public("Time")["error"] for _ in range(4)] == [[], [], [], ["EAPI:Rate limit exceeded"]]


# --- public endpoints ----------------------------------------------------------------------

def test_time_and_system_status_follow_the_simulated_clock(kraken_sim: KrakenSimulator,
                                                          kraken_api: krakenex.API) -> None:
    kraken_sim.set_time(1700000000)
    assert ok(kraken_api.query_public("Time")) == {"unixtime": 1700000000, "rfc1123": "Tue, 14 Nov 23 22:13:20 +0000"}
    assert kraken_api.response.headers["Date"] == "Tue, 14 Nov 2023 22:13:20 GMT"   # every reply's, too
    assert ok(kraken_api.query_public("SystemStatus")) == {"status": "online", "timestamp": "2023-11-14T22:13:20Z"}
    kraken_sim.advance(61)
    kraken_sim.set_system_status("post_only")
    assert ok(kraken_api.query_public("Time"))["unixtime"] == 1700000061
    assert ok(kraken_api.query_public("SystemStatus"))["status"] == "post_only"
    with pytest.raises(ValueError):
        kraken_sim.set_system_status("closed")


def test_unknown_methods(kraken_api: krakenex.API) -> None:
    assert kraken_api.query_public("Spread", {"pair": "XBTEUR"})["error"] == ["EGeneral:Unknown method"]
    assert call(kraken_api, "Ledgers")["error"] == ["EGeneral:Unknown method"]


def test_assets(kraken_api: krakenex.API) -> None:
    assets = ok(kraken_api.query_public("Assets"))
    assert assets["XXBT"] == {"aclass": "currency", "altname": "XBT", "decimals": 10, "display_decimals": 5,
                              "collateral_value": 1.0, "status": "enabled"}
    assert (assets["ZEUR"]["altname"], assets["ADA"]["altname"], assets["XXDG"]["altname"]) == ("EUR", "ADA", "XDG")
    assert set(ok(kraken_api.query_public("Assets", {"asset": "XBT,EUR"}))) == {"XXBT", "ZEUR"}
    assert kraken_api.query_public("Assets", {"asset": "XBT,NOPE"})["error"] == ["EQuery:Unknown asset"]


def test_asset_pairs(kraken_sim: KrakenSimulator, kraken_api: krakenex.API) -> None:
    pairs = ok(kraken_api.query_public("AssetPairs"))
    assert {"XXBTZEUR", "XETHZEUR", "XLTCZEUR", "XXRPZEUR", "ADAEUR", "DOTEUR", "SOLEUR", "XETHXXBT",
            "XXBTZUSD"} <= set(pairs)
    assert all(set(p) == PAIR_FIELDS for p in pairs.values())
    btc = pairs["XXBTZEUR"]
    assert (btc["altname"], btc["wsname"], btc["base"], btc["quote"]) == ("XBTEUR", "XBT/EUR", "XXBT", "ZEUR")
    assert (btc["pair_decimals"], btc["lot_decimals"], btc["ordermin"], btc["costmin"], btc["tick_size"]) == \
        (1, 8, "0.0001", "0.5", "0.1")
    assert btc["fees"][0] == [0, 0.26] and btc["fees_maker"][0] == [0, 0.16] and btc["status"] == "online"
    assert (pairs["ADAEUR"]["base"], pairs["ADAEUR"]["altname"]) == ("ADA", "ADAEUR")
    assert (pairs["XETHXXBT"]["altname"], pairs["XETHXXBT"]["quote"]) == ("ETHXBT", "XXBT")

    kraken_sim.set_pair_status("ADAEUR", "cancel_only")
    some = ok(kraken_api.query_public("AssetPairs", {"pair": "XBTEUR,ADAEUR"}))
    assert set(some) == {"XXBTZEUR", "ADAEUR"} and some["ADAEUR"]["status"] == "cancel_only"
    fees = ok(kraken_api.query_public("AssetPairs", {"pair": "XBTEUR", "info": "fees"}))
    assert set(fees["XXBTZEUR"]) == {"fees", "fees_maker", "fee_volume_currency"}
    assert kraken_api.query_public("AssetPairs", {"pair": "XBTJPY"})["error"] == ["EQuery:Unknown asset pair"]


def test_pair_names_resolve_to_the_key(kraken_api: krakenex.API) -> None:
    for name in ("XXBTZEUR", "XBTEUR", "XBT/EUR", "BTC/EUR", "xbteur"):
        assert list(ok(kraken_api.query_public("Ticker", {"pair": name}))) == ["XXBTZEUR"]
    assert list(ok(kraken_api.query_public("OHLC", {"pair": "XBTEUR"}))) == ["XXBTZEUR", "last"]
    assert set(ok(kraken_api.query_public("Ticker", {"pair": "XBTEUR,ETHEUR,XDGEUR"}))) == \
        {"XXBTZEUR", "XETHZEUR", "XDGEUR"}
    assert kraken_api.query_public("Ticker", {"pair": "XBTEUR,NOPEEUR"})["error"] == ["EQuery:Unknown asset pair"]
    assert set(ok(kraken_api.query_public("Ticker"))) == set(ok(kraken_api.query_public("AssetPairs")))


def test_ticker(kraken_sim: KrakenSimulator, kraken_api: krakenex.API) -> None:
    kraken_sim.set_price("XXBTZEUR", "30000.0")
    ticker = ok(kraken_api.query_public("Ticker", {"pair": "XBTEUR"}))["XXBTZEUR"]
    assert (ticker["a"][0], ticker["b"][0], ticker["c"][0]) == ("30015.0", "29985.0", "30000.0")
    assert all(isinstance(ticker[k], list) and len(ticker[k]) == n
               for k, n in (("a", 3), ("b", 3), ("c", 2), ("v", 2), ("p", 2), ("t", 2), ("l", 2), ("h", 2)))
    assert all(isinstance(n, int) for n in ticker["t"]) and isinstance(ticker["o"], str)
    assert Decimal(ticker["l"][1]) <= Decimal("30000.0") <= Decimal(ticker["h"][1])
    assert ticker["v"][1] == f"{Decimal(ticker['v'][1]):.8f}" and Decimal(ticker["v"][1]) > 0


def test_ohlc_returns_720_rows_ending_with_the_open_interval(kraken_sim: KrakenSimulator,
                                                             kraken_api: krakenex.API) -> None:
    now = int(kraken_sim.clock)
    for interval in (1, 5, 60):
        seconds = interval * 60
        current = now - now % seconds
        result = ok(kraken_api.query_public("OHLC", {"pair": "XBTEUR", "interval": interval}))
        rows = result["XXBTZEUR"]
        assert [r[0] for r in rows] == list(range(current - 719 * seconds, current + 1, seconds))
        assert result["last"] == current - seconds
        assert all([type(v) for v in r] == [int] + [str] * 6 + [int] for r in rows)
        assert all(Decimal(r[3]) <= min(Decimal(r[1]), Decimal(r[4])) and Decimal(r[2]) >= Decimal(r[4])
                   for r in rows)
    daily = ok(kraken_api.query_public("OHLC", {"pair": "XBTEUR", "interval": 1440}))["XXBTZEUR"]
    assert 31 <= len(daily) <= 33 and daily[-1][0] == now - now % 86400
    assert kraken_api.query_public("OHLC", {"pair": "XBTEUR", "interval": 2})["error"] == \
        ["EGeneral:Invalid arguments"]
    assert kraken_api.query_public("OHLC", {"pair": "NOPE"})["error"] == ["EQuery:Unknown asset pair"]


def test_ohlc_since_and_last(kraken_sim: KrakenSimulator, kraken_api: krakenex.API) -> None:
    kraken_sim.set_time(kraken_sim.clock // 60 * 60 + 30)
    first = ok(kraken_api.query_public("OHLC", {"pair": "XBTEUR"}))
    rows, last = first["XXBTZEUR"], first["last"]
    assert last == rows[-2][0]
    assert ok(kraken_api.query_public("OHLC", {"pair": "XBTEUR", "since": rows[-5][0]}))["XXBTZEUR"] == rows[-4:]
    only_open = ok(kraken_api.query_public("OHLC", {"pair": "XBTEUR", "since": last}))
    assert only_open == {"XXBTZEUR": rows[-1:], "last": last}

    kraken_sim.advance(60)
    polled = ok(kraken_api.query_public("OHLC", {"pair": "XBTEUR", "since": last}))
    committed, still_open = polled["XXBTZEUR"]
    assert polled["last"] == committed[0] == rows[-1][0] == last + 60
    assert still_open[0] == last + 120
    assert committed[1] == rows[-1][1] and Decimal(committed[2]) >= Decimal(rows[-1][2])


def test_ohlc_aggregates_real_candles_without_look_ahead(kraken_sim: KrakenSimulator, kraken_api: krakenex.API,
                                                          shared_data: Path) -> None:
    rows = read_candle_csv(shared_data / "unk_BTC_USD_1m_20230115.csv")     # gap-free 1-minute candles
    kraken_sim.load_candles("XXBTZUSD", rows)
    clock = rows[100][0] + 30       # half-way through a minute
    kraken_sim.set_time(clock)
    one = lambda v: f"{v:.1f}"      # XXBTZUSD has one price decimal

    hour = clock - clock % 3600
    done = [r for r in rows if hour <= r[0] and r[0] + 60 <= clock]
    now_open = rows[100][1]
    later = [r for r in rows if clock < r[0] + 60 and r[0] < hour + 3600]
    assert min(r[3] for r in later) < min(r[3] for r in done)     # the future holds a lower low
    hourly = ok(kraken_api.query_public("OHLC", {"pair": "XBTUSD", "interval": 60}))["XXBTZUSD"]
    assert hourly[-1][:5] == [hour, one(done[0][1]), one(max(max(r[2] for r in done), now_open)),
                              one(min(min(r[3] for r in done), now_open)), one(now_open)]
    assert hourly[-1][6] == f"{sum(r[5] for r in done):.8f}"

    full_hour = [r for r in rows if hour - 3600 <= r[0] < hour]
    volume = sum(r[5] for r in full_hour)
    vwap = sum((r[2] + r[3] + r[4]) / 3 * r[5] for r in full_hour) / volume
    assert hourly[-2] == [hour - 3600, one(full_hour[0][1]), one(max(r[2] for r in full_hour)),
                          one(min(r[3] for r in full_hour)), one(full_hour[-1][4]), one(vwap),
                          f"{volume:.8f}", len(full_hour)]

    minutes = ok(kraken_api.query_public("OHLC", {"pair": "XBTUSD", "interval": 1}))["XXBTZUSD"]
    assert minutes[-1] == [rows[100][0]] + [one(now_open)] * 5 + ["0.00000000", 0]
    assert minutes[-2][1:5] == [one(v) for v in rows[99][1:5]]
    assert ok(kraken_api.query_public("Ticker", {"pair": "XBTUSD"}))["XXBTZUSD"]["c"][0] == one(now_open)
    assert kraken_sim.price("XBTUSD") == Decimal(one(now_open))


def test_pair_without_data_at_the_clock(kraken_sim: KrakenSimulator, kraken_api: krakenex.API,
                                        shared_data: Path) -> None:
    rows = read_candle_csv(shared_data / "unk_SOL_USD_1m.csv")
    kraken_sim.add_pair("SOLUSD", "SOL", "ZUSD", "10")
    kraken_sim.load_candles("SOLUSD", rows)
    kraken_sim.set_time(rows[-1][0] + 86400)      # a day after the data ends: flat at the last close
    result = ok(kraken_api.query_public("OHLC", {"pair": "SOLUSD", "interval": 60}))
    last_close = f"{rows[-1][4]:.{kraken_sim.pair('SOLUSD').pair_decimals}f}"
    assert result["SOLUSD"][-1][1:] == [last_close] * 5 + ["0.00000000", 0]
    assert ok(kraken_api.query_public("Ticker", {"pair": "SOL/USD"}))["SOLUSD"]["c"][0] == last_close
    with pytest.raises(ValueError):
        kraken_sim.load_candles("SOLUSD", rows, interval=60)     # 1-minute rows are not hourly


# --- accounts and orders -------------------------------------------------------------------

def test_balance_and_trade_balance(kraken_sim: KrakenSimulator, kraken_api: krakenex.API) -> None:
    assert ok(call(kraken_api, "Balance")) == {"ZEUR": "1000.0000", "XXBT": "0.0500000000", "XETH": "0.5000000000"}
    kraken_sim.set_price("XBTEUR", "30000.0")
    kraken_sim.set_price("ETHEUR", "2000.00")
    balance = ok(call(kraken_api, "TradeBalance", asset="ZEUR"))
    assert balance["eb"] == balance["e"] == balance["mf"] == "3500.0000" and balance["uv"] == "0.0000"
    assert call(kraken_api, "TradeBalance", asset="NOPE")["error"] == ["EQuery:Unknown asset"]
    assert {k: str(v) for k, v in kraken_sim.balances(kraken_sim.test_key).items()} == KRAKEN_TEST_BALANCES


def test_market_orders_move_balances_exactly(kraken_sim: KrakenSimulator, kraken_api: krakenex.API) -> None:
    kraken_sim.set_price("XXBTZEUR", "30000.0")
    assert kraken_sim.bid_ask("XBTEUR") == (Decimal("29985.0"), Decimal("30015.0"))
    added = ok(call(kraken_api, "AddOrder", **BUY, userref=42))
    assert added["descr"] == {"order": "buy 0.00100000 XBTEUR @ market"}
    buy, = added["txid"]
    assert ORDER_ID.fullmatch(buy)
    order = ok(call(kraken_api, "QueryOrders", txid=buy, trades=True))[buy]
    assert ORDER_FIELDS | {"closetm", "reason", "trades"} == set(order) and set(order["descr"]) == DESCR_FIELDS
    assert (order["status"], order["vol"], order["vol_exec"], order["cost"], order["fee"], order["price"]) == \
        ("closed", "0.00100000", "0.00100000", "30.01500", "0.07804", "30015.0")
    assert (order["userref"], order["descr"]["pair"], order["opentm"], order["closetm"]) == \
        (42, "XBTEUR", kraken_sim.clock, kraken_sim.clock)
    assert kraken_sim.balances(kraken_sim.test_key) == \
        {"ZEUR": Decimal("969.90696"), "XXBT": Decimal("0.051"), "XETH": Decimal("0.5")}

    kraken_sim.advance(60)
    sell, = ok(call(kraken_api, "AddOrder", pair="XXBTZEUR", type="sell", ordertype="market", volume="0.01"))["txid"]
    assert ok(call(kraken_api, "Balance")) == {"ZEUR": "1268.97735", "XXBT": "0.0410000000", "XETH": "0.5000000000"}

    trades = ok(call(kraken_api, "TradesHistory"))
    assert trades["count"] == 2
    newest, oldest = trades["trades"].values()
    assert all(TRADE_ID.fullmatch(t) for t in trades["trades"]) and set(newest) == TRADE_FIELDS
    assert (newest["ordertxid"], newest["pair"], newest["type"], newest["price"], newest["vol"], newest["cost"],
            newest["fee"], newest["maker"]) == (sell, "XXBTZEUR", "sell", "29985.0", "0.01000000", "299.85000",
                                                "0.77961", False)
    assert (oldest["ordertxid"], oldest["time"]) == (buy, kraken_sim.clock - 60)


def test_limit_order_holds_funds_and_fills_at_its_price(kraken_sim: KrakenSimulator,
                                                        kraken_api: krakenex.API) -> None:
    kraken_sim.set_price("XBTEUR", "30000.0")
    limit = {"pair": "XBTEUR", "type": "buy", "ordertype": "limit", "price": "29000.0"}
    txid, = ok(call(kraken_api, "AddOrder", **limit, volume="0.001"))["txid"]
    order = ok(call(kraken_api, "OpenOrders"))["open"][txid]
    assert (order["status"], order["vol_exec"], order["descr"]["price"], order["descr"]["order"]) == \
        ("open", "0.00000000", "29000.0", "buy 0.00100000 XBTEUR @ limit 29000.0")
    assert "closetm" not in order and kraken_sim.balances(kraken_sim.test_key)["ZEUR"] == Decimal("1000")
    # 29.0754 EUR are held: 0.0334 more at 29000.0 would need 971.11836 of the 970.9246 left
    assert call(kraken_api, "AddOrder", **limit, volume="0.0334")["error"] == ["EOrder:Insufficient funds"]

    kraken_sim.set_price("XBTEUR", "29100.0")       # ask 29114.6: not yet
    kraken_sim.set_price("XBTEUR", "28980.0")       # ask 28994.5: crossed
    order = ok(call(kraken_api, "QueryOrders", txid=txid))[txid]
    assert (order["status"], order["vol_exec"], order["price"], order["cost"], order["fee"]) == \
        ("closed", "0.00100000", "29000.0", "29.00000", "0.04640")
    assert kraken_sim.balances(kraken_sim.test_key)["ZEUR"] == Decimal("970.9536")
    assert list(ok(call(kraken_api, "TradesHistory"))["trades"].values())[0]["maker"] is True


def test_limit_order_fills_when_the_loaded_path_crosses_it(kraken_sim: KrakenSimulator, kraken_api: krakenex.API,
                                                           shared_data: Path) -> None:
    rows = read_candle_csv(shared_data / "unk_BTC_USD_1m_20230115.csv")
    kraken_sim.load_candles("XXBTZUSD", rows)
    kraken_sim.set_time(rows[0][0])
    kraken_sim.set_balance(kraken_sim.test_key, "USD", "1000")
    ask_of = lambda low: (low * Decimal("1.0005") / Decimal("0.1")).to_integral_value(ROUND_CEILING) / 10
    price = ask_of(min(r[3] for r in rows[:20]))
    crossing = next(i for i, r in enumerate(rows) if ask_of(r[3]) <= price)
    assert ask_of(rows[crossing][1]) > price < kraken_sim.bid_ask("XBTUSD")[1]
    txid, = ok(call(kraken_api, "AddOrder", pair="XBTUSD", type="buy", ordertype="limit", price=f"{price:.1f}",
                    volume="0.001"))["txid"]
    kraken_sim.set_time(rows[crossing][0] + 59)     # the crossing candle is not over yet
    assert ok(call(kraken_api, "QueryOrders", txid=txid))[txid]["status"] == "open"
    kraken_sim.set_time(rows[crossing][0] + 60)
    order = ok(call(kraken_api, "QueryOrders", txid=txid))[txid]
    assert (order["status"], order["price"], order["closetm"]) == ("closed", f"{price:.1f}", rows[crossing][0] + 60)


def test_cancel_by_txid_userref_and_cl_ord_id(kraken_sim: KrakenSimulator, kraken_api: krakenex.API) -> None:
    resting = {"pair": "XBTEUR", "type": "buy", "ordertype": "limit", "price": "20000.0", "volume": "0.0001"}
    ref = str(uuid.uuid4())
    a, b = (ok(call(kraken_api, "AddOrder", **resting, userref=7))["txid"][0] for _ in range(2))
    c, = ok(call(kraken_api, "AddOrder", **resting, cl_ord_id=ref))["txid"]
    assert ok(call(kraken_api, "CancelOrder", txid=a)) == {"count": 1}
    assert list(ok(call(kraken_api, "OpenOrders"))["open"]) == [c, b]
    assert ok(call(kraken_api, "CancelOrder", txid=7)) == {"count": 1}
    assert ok(call(kraken_api, "CancelOrder", cl_ord_id=ref)) == {"count": 1}
    for gone in ({"txid": a}, {"txid": 7}, {"cl_ord_id": ref}, {"txid": "OAAAAA-BBBBB-CCCCCC"}):
        assert call(kraken_api, "CancelOrder", **gone)["error"] == ["EOrder:Unknown order"]
    closed = ok(call(kraken_api, "ClosedOrders"))["closed"]
    assert [(o["status"], o["reason"], o["vol_exec"]) for o in closed.values()] == \
        [("canceled", "User requested", "0.00000000")] * 3


def test_validate_true_only_checks_and_false_places_the_order(kraken_sim: KrakenSimulator,
                                                              kraken_api: krakenex.API) -> None:
    """docs.kraken.com add-order: validate (boolean, default false) validates inputs only."""
    for validate in (True, "true", 1):
        result = ok(call(kraken_api, "AddOrder", **BUY, validate=validate))
        assert result == {"descr": {"order": "buy 0.00100000 XBTEUR @ market"}}
    assert call(kraken_api, "AddOrder", **{**BUY, "volume": "1"}, validate=True)["error"] == \
        ["EOrder:Insufficient funds"]
    assert ok(call(kraken_api, "ClosedOrders"))["count"] == 0 and kraken_sim.account_orders(kraken_sim.test_key) == []
    assert {k: str(v) for k, v in kraken_sim.balances(kraken_sim.test_key).items()} == KRAKEN_TEST_BALANCES

    placed = [ok(call(kraken_api, "AddOrder", **BUY, validate=validate))["txid"][0]
              for validate in (False, "false", 0)]
    assert [o.txid for o in kraken_sim.account_orders(kraken_sim.test_key)] == placed
    assert kraken_sim.balances(kraken_sim.test_key)["XXBT"] == Decimal("0.053")
    assert call(kraken_api, "AddOrder", **BUY, validate="maybe")["error"] == ["EGeneral:Invalid arguments:validate"]


@pytest.mark.parametrize("fields, message", [
    ({"volume": "0.00009"}, "EOrder:Order minimum not met"),
    ({"ordertype": "limit", "price": "1000.0", "volume": "0.0001"}, "EOrder:Cost minimum not met"),
    ({"volume": "0.000100001"}, "EGeneral:Invalid arguments:volume"),
    ({"ordertype": "limit", "price": "30000.05"}, "EGeneral:Invalid arguments:price"),
    ({"ordertype": "limit"}, "EGeneral:Invalid arguments:price"),
    ({"volume": "1"}, "EOrder:Insufficient funds"),
    ({"type": "sell", "volume": "0.06"}, "EOrder:Insufficient funds"),
    ({"pair": "XBTJPY"}, "EQuery:Unknown asset pair"),
    ({"pair": "XBTJPY", "volume": "lots"}, "EGeneral:Invalid arguments:volume"),    # arguments come first
    ({"volume": "-1"}, "EGeneral:Invalid arguments:volume"),
    ({"type": "short"}, "EGeneral:Invalid arguments:type"),
    ({"ordertype": "stop-loss", "price": "25000"}, "EGeneral:Invalid arguments:ordertype"),
    ({"leverage": "2"}, "EGeneral:Invalid arguments:leverage"),
    ({"timeinforce": "IOC"}, "EGeneral:Invalid arguments:timeinforce"),
    ({"userref": str(2 ** 31)}, "EGeneral:Invalid arguments:userref"),
    ({"cl_ord_id": "x" * 19}, "EGeneral:Invalid arguments:cl_ord_id"),
    ({"cl_ord_id": "mine", "userref": "1"}, "EGeneral:Invalid arguments:cl_ord_id"),
    ({"oflags": "fcib,fciq"}, "EGeneral:Invalid arguments:oflags"),
    ({"oflags": "post"}, "EGeneral:Invalid arguments:oflags"),
    ({"oflags": "viqc", "type": "sell"}, "EGeneral:Invalid arguments:oflags"),
])
def test_add_order_refusals(kraken_sim: KrakenSimulator, kraken_api: krakenex.API, fields: dict,
                            message: str) -> None:
    kraken_sim.set_price("XBTEUR", "30000.0")
    assert call(kraken_api, "AddOrder", **{**BUY, **fields})["error"] == [message]
    assert {k: str(v) for k, v in kraken_sim.balances(kraken_sim.test_key).items()} == KRAKEN_TEST_BALANCES


def test_viqc_buys_for_an_amount_of_quote(kraken_sim: KrakenSimulator, kraken_api: krakenex.API) -> None:
    kraken_sim.set_price("XBTEUR", "30000.0")
    txid, = ok(call(kraken_api, "AddOrder", pair="XBTEUR", type="buy", ordertype="market", volume="10",
                    oflags="viqc"))["txid"]
    order = ok(call(kraken_api, "QueryOrders", txid=txid))[txid]
    assert (order["vol_exec"], order["cost"], order["oflags"]) == ("0.00033316", "9.99980", "viqc")


def test_pair_status_restricts_new_orders(kraken_sim: KrakenSimulator, kraken_api: krakenex.API) -> None:
    kraken_sim.set_price("XBTEUR", "30000.0")
    resting = {"pair": "XBTEUR", "type": "buy", "ordertype": "limit", "price": "20000.0", "volume": "0.0001"}
    txid, = ok(call(kraken_api, "AddOrder", **resting))["txid"]
    kraken_sim.set_pair_status("XBTEUR", "cancel_only")
    assert call(kraken_api, "AddOrder", **BUY)["error"] == ["EService:Market in cancel_only mode"]
    assert ok(call(kraken_api, "CancelOrder", txid=txid)) == {"count": 1}
    kraken_sim.set_pair_status("XBTEUR", "limit_only")
    assert call(kraken_api, "AddOrder", **BUY)["error"] == ["EService:Market in limit_only mode"]
    assert ok(call(kraken_api, "AddOrder", **resting))["txid"]
    kraken_sim.set_pair_status("XBTEUR", "post_only")
    assert call(kraken_api, "AddOrder", **resting)["error"] == ["EService:Market in post_only mode"]
    assert ok(call(kraken_api, "AddOrder", **resting, oflags="post"))["txid"]
    kraken_sim.set_pair_status("XBTEUR", "delisted")
    assert call(kraken_api, "AddOrder", **BUY)["error"] == ["EService:Market in delisted mode"]


def test_post_only_order_that_would_take_is_canceled(kraken_sim: KrakenSimulator, kraken_api: krakenex.API) -> None:
    kraken_sim.set_price("XBTEUR", "30000.0")
    txid, = ok(call(kraken_api, "AddOrder", pair="XBTEUR", type="buy", ordertype="limit", price="30100.0",
                    volume="0.001", oflags="post"))["txid"]
    order = ok(call(kraken_api, "QueryOrders", txid=txid))[txid]
    assert (order["status"], order["reason"], order["vol_exec"], order["oflags"]) == \
        ("canceled", "Post only order", "0.00000000", "post")


def test_system_status_restricts_orders(kraken_sim: KrakenSimulator, kraken_api: krakenex.API) -> None:
    resting = {"pair": "XBTEUR", "type": "buy", "ordertype": "limit", "price": "20000.0", "volume": "0.0001"}
    first, second = (ok(call(kraken_api, "AddOrder", **resting))["txid"][0] for _ in range(2))
    kraken_sim.set_system_status("cancel_only")
    assert call(kraken_api, "AddOrder", **BUY)["error"] == ["EService:Market in cancel_only mode"]
    assert ok(call(kraken_api, "CancelOrder", txid=first)) == {"count": 1}
    kraken_sim.set_system_status("maintenance")
    assert call(kraken_api, "AddOrder", **BUY)["error"] == ["EService:Unavailable"]
    assert call(kraken_api, "CancelOrder", txid=second)["error"] == ["EService:Unavailable"]


def test_cl_ord_id_formats_and_uniqueness_among_open_orders(kraken_sim: KrakenSimulator,
                                                            kraken_api: krakenex.API) -> None:
    resting = {"pair": "XBTEUR", "type": "buy", "ordertype": "limit", "price": "20000.0", "volume": "0.0001"}
    refs = [str(uuid.uuid4()), uuid.uuid4().hex, "run 42/thread 7 ok"]
    txids = [ok(call(kraken_api, "AddOrder", **resting, cl_ord_id=ref))["txid"][0] for ref in refs]
    assert call(kraken_api, "AddOrder", **resting, cl_ord_id=refs[0])["error"] == ["EOrder:Duplicate cl_ord_id"]
    found = ok(call(kraken_api, "OpenOrders", cl_ord_id=refs[1]))["open"]
    assert list(found) == [txids[1]] and found[txids[1]]["cl_ord_id"] == refs[1]
    assert ok(call(kraken_api, "CancelOrder", cl_ord_id=refs[0])) == {"count": 1}
    assert ok(call(kraken_api, "AddOrder", **resting, cl_ord_id=refs[0]))["txid"]


def test_query_orders(kraken_sim: KrakenSimulator, kraken_api: krakenex.API) -> None:
    a, b = (ok(call(kraken_api, "AddOrder", **BUY, userref=ref))["txid"][0] for ref in (1, 2))
    assert list(ok(call(kraken_api, "QueryOrders", txid=f"{a},{b}"))) == [a, b]
    assert list(ok(call(kraken_api, "QueryOrders", txid=f"{a},{b}", userref=2))) == [b]
    assert call(kraken_api, "QueryOrders", txid=f"{a},OAAAAA-BBBBB-CCCCCC")["error"] == ["EOrder:Invalid order"]
    assert call(kraken_api, "QueryOrders", txid=",".join([a] * 51))["error"] == ["EGeneral:Invalid arguments:txid"]
    assert call(kraken_api, "QueryOrders")["error"] == ["EGeneral:Invalid arguments:txid"]


def test_closed_orders_and_trades_history_come_in_pages_of_50(kraken_sim: KrakenSimulator,
                                                              kraken_api: krakenex.API) -> None:
    kraken_sim.set_price("XBTEUR", "30000.0")
    txids = []
    for _ in range(55):
        kraken_sim.advance(60)
        txids.append(ok(call(kraken_api, "AddOrder", **{**BUY, "volume": "0.0001"}))["txid"][0])
    newest_first = txids[::-1]
    first = ok(call(kraken_api, "ClosedOrders"))
    assert first["count"] == 55 and list(first["closed"]) == newest_first[:50]
    assert list(ok(call(kraken_api, "ClosedOrders", ofs=50))["closed"]) == newest_first[50:]
    window = ok(call(kraken_api, "ClosedOrders", start=txids[9], end=txids[19]))
    assert window["count"] == 10 and list(window["closed"]) == txids[19:9:-1]
    opened = first["closed"][txids[29]]["opentm"]
    assert ok(call(kraken_api, "ClosedOrders", start=opened))["count"] == 25

    trades = ok(call(kraken_api, "TradesHistory"))
    assert trades["count"] == 55 and len(trades["trades"]) == 50
    assert [t["ordertxid"] for t in trades["trades"].values()] == newest_first[:50]
    assert [t["ordertxid"] for t in ok(call(kraken_api, "TradesHistory", ofs=50))["trades"].values()] == \
        newest_first[50:]


def test_concurrent_clients_keep_balances_exact(kraken_sim: KrakenSimulator) -> None:
    kraken_sim.set_price("XBTEUR", "30000.0")
    accounts = [kraken_sim.add_account(balances={"ZEUR": "100"}) for _ in range(4)]

    def trade(key: str, secret: str) -> None:
        nonces = itertools.count(1)
        for _ in range(10):
            body = f"pair=XBTEUR&type=buy&ordertype=market&volume=0.0001&nonce={next(nonces)}"
            assert raw_private(kraken_sim, key, secret, "AddOrder", body)["error"] == []

    threads = [threading.Thread(target=trade, args=account) for account in accounts]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    # each buy: cost 3.00150, fee 0.00781 (0.0078039 rounded up)
    assert [kraken_sim.balances(key) for key, _ in accounts] == \
        [{"ZEUR": Decimal("69.9069"), "XXBT": Decimal("0.001")}] * 4
    assert kraken_sim.calls["AddOrder"] == 40


# --- faults --------------------------------------------------------------------------------

def test_delay_fault_makes_the_client_time_out(kraken_sim: KrakenSimulator, kraken_api: krakenex.API) -> None:
    kraken_sim.inject("Time", "delay", seconds=2)
    with pytest.raises(requests.exceptions.ReadTimeout):
        kraken_api.query_public("Time", timeout=0.3)
    assert ok(kraken_api.query_public("Time", timeout=5))


@pytest.mark.parametrize("fault, status", [("http_500", 500), ("http_520", 520)])
def test_http_error_pages(kraken_sim: KrakenSimulator, kraken_api: krakenex.API, fault: str, status: int) -> None:
    kraken_sim.inject("Ticker", fault)
    with pytest.raises(requests.exceptions.HTTPError) as raised:
        kraken_api.query_public("Ticker", {"pair": "XBTEUR"})
    assert raised.value.response.status_code == status
    assert raised.value.response.text.startswith("<!DOCTYPE html>")
    assert ok(kraken_api.query_public("Ticker", {"pair": "XBTEUR"}))


def test_malformed_json(kraken_sim: KrakenSimulator, kraken_api: krakenex.API) -> None:
    kraken_sim.inject("Balance", "malformed_json")
    with pytest.raises(requests.exceptions.JSONDecodeError):
        call(kraken_api, "Balance")
    assert ok(call(kraken_api, "Balance"))


@pytest.mark.parametrize("fault, message", [("service_unavailable", "EService:Unavailable"),
                                            ("busy", "EService:Busy"), ("rate_limit", "EAPI:Rate limit exceeded"),
                                            ("invalid_nonce", "EAPI:Invalid nonce")])
def test_error_faults_leave_the_call_unprocessed(kraken_sim: KrakenSimulator, kraken_api: krakenex.API,
                                                 fault: str, message: str) -> None:
    kraken_sim.inject("AddOrder", fault)
    assert call(kraken_api, "AddOrder", **BUY) == {"error": [message]}
    assert ok(call(kraken_api, "ClosedOrders"))["count"] == 0
    assert ok(call(kraken_api, "AddOrder", **BUY))["txid"]


def test_fault_times_wildcard_and_clearing(kraken_sim: KrakenSimulator, kraken_api: krakenex.API) -> None:
    kraken_sim.inject("*", "busy", times=2)
    assert kraken_api.query_public("Time")["error"] == ["EService:Busy"]
    assert call(kraken_api, "Balance")["error"] == ["EService:Busy"]
    assert ok(kraken_api.query_public("Time"))
    kraken_sim.inject("Ticker", "service_unavailable", times=None)
    assert [kraken_api.query_public("Ticker")["error"] for _ in range(3)] == [["EService:Unavailable"]] * 3
    kraken_sim.clear_faults()
    assert ok(kraken_api.query_public("Ticker", {"pair": "XBTEUR"}))
    assert (kraken_sim.calls["Time"], kraken_sim.calls["Balance"], kraken_sim.calls["Ticker"]) == (2, 1, 4)
    with pytest.raises(ValueError):
        kraken_sim.inject("Time", "meteor")
    with pytest.raises(ValueError):
        kraken_sim.inject("*", "partial_fill")


def test_partial_fill_of_a_market_order(kraken_sim: KrakenSimulator, kraken_api: krakenex.API) -> None:
    kraken_sim.set_price("XBTEUR", "30000.0")
    kraken_sim.inject("AddOrder", "partial_fill", fraction="0.4")
    txid, = ok(call(kraken_api, "AddOrder", **BUY))["txid"]
    order = ok(call(kraken_api, "QueryOrders", txid=txid))[txid]
    assert (order["status"], order["vol"], order["vol_exec"], order["cost"], order["fee"], order["misc"]) == \
        ("canceled", "0.00100000", "0.00040000", "12.00600", "0.03122", "partial")
    assert kraken_sim.balances(kraken_sim.test_key)["ZEUR"] == Decimal("987.96278")
    assert kraken_sim.balances(kraken_sim.test_key)["XXBT"] == Decimal("0.0504")


def test_partial_fill_of_a_limit_order_leaves_it_open(kraken_sim: KrakenSimulator, kraken_api: krakenex.API) -> None:
    kraken_sim.set_price("XBTEUR", "30000.0")
    kraken_sim.inject("AddOrder", "partial_fill", fraction="0.25")
    txid, = ok(call(kraken_api, "AddOrder", pair="XBTEUR", type="buy", ordertype="limit", price="29000.0",
                    volume="0.002"))["txid"]
    order = ok(call(kraken_api, "OpenOrders"))["open"][txid]
    assert (order["status"], order["vol_exec"], order["cost"], order["fee"]) == \
        ("open", "0.00050000", "14.50000", "0.02320")
    kraken_sim.set_price("XBTEUR", "28900.0")
    order = ok(call(kraken_api, "QueryOrders", txid=txid))[txid]
    assert (order["status"], order["vol_exec"], order["cost"], order["fee"], order["price"]) == \
        ("closed", "0.00200000", "58.00000", "0.09280", "29000.0")
    assert kraken_sim.balances(kraken_sim.test_key)["ZEUR"] == Decimal("941.9072")


def test_lost_reply_after_the_order_was_placed(kraken_sim: KrakenSimulator, kraken_api: krakenex.API) -> None:
    kraken_sim.inject("AddOrder", "lost_reply")
    ref = str(uuid.uuid4())
    with pytest.raises(requests.exceptions.ConnectionError):
        call(kraken_api, "AddOrder", **BUY, cl_ord_id=ref)
    closed = ok(call(kraken_api, "ClosedOrders", cl_ord_id=ref))["closed"]
    assert [(o["status"], o["cl_ord_id"]) for o in closed.values()] == [("closed", ref)]
    assert kraken_sim.calls["AddOrder"] == 1


def test_lost_reply_held_past_the_client_timeout(kraken_sim: KrakenSimulator, kraken_api: krakenex.API) -> None:
    kraken_sim.inject("AddOrder", "lost_reply", seconds=1.5)
    resting = {"pair": "XBTEUR", "type": "buy", "ordertype": "limit", "price": "20000.0", "volume": "0.0001"}
    time.sleep(0.0015)
    with pytest.raises(requests.exceptions.ReadTimeout):
        kraken_api.query_private("AddOrder", {**resting, "userref": 99}, timeout=0.3)
    assert len(ok(call(kraken_api, "OpenOrders", userref=99))["open"]) == 1


@pytest.mark.parametrize("fault, after",
                         [(f, a) for f in ("http_500", "http_520", "malformed_json") for a in (False, True)])
def test_http_faults_before_or_after_the_order_reaches_the_book(kraken_sim: KrakenSimulator, kraken_api: krakenex.API,
                                                                fault: str, after: bool) -> None:
    kraken_sim.inject("AddOrder", fault, after=after)
    expected = requests.exceptions.JSONDecodeError if fault == "malformed_json" else requests.exceptions.HTTPError
    with pytest.raises(expected):
        call(kraken_api, "AddOrder", **BUY, userref=5)
    placed = kraken_sim.account_orders(kraken_sim.test_key)
    assert [(o.userref, o.status, o.vol_exec) for o in placed] == ([(5, "closed", Decimal("0.001"))] if after else [])
    assert len(ok(call(kraken_api, "ClosedOrders", userref=5))["closed"]) == (1 if after else 0)
    assert kraken_sim.calls["AddOrder"] == 1


@pytest.mark.parametrize("fault, message", [
    ("service_unavailable", "EService:Unavailable"), ("busy", "EService:Busy"),
    ("deadline_elapsed", "EService:Deadline elapsed"), ("internal_error", "EGeneral:Internal error"),
    ("too_many_requests", "EGeneral:Too many requests"), ("lockout", "EGeneral:Temporary lockout")])
def test_error_faults_after_the_order_was_placed(kraken_sim: KrakenSimulator, kraken_api: krakenex.API,
                                                 fault: str, message: str) -> None:
    kraken_sim.inject("AddOrder", fault, after=True)
    ref = str(uuid.uuid4())
    assert call(kraken_api, "AddOrder", **BUY, cl_ord_id=ref) == {"error": [message]}
    order, = kraken_sim.account_orders(kraken_sim.test_key)
    assert (order.cl_ord_id, order.status, order.vol_exec) == (ref, "closed", Decimal("0.001"))
    assert list(ok(call(kraken_api, "ClosedOrders", cl_ord_id=ref))["closed"]) == [order.txid]


def test_throttled_names_the_time_to_retry_on_the_simulated_clock(kraken_sim: KrakenSimulator,
                                                                  kraken_api: krakenex.API) -> None:
    kraken_sim.set_time(1700000000)
    kraken_sim.inject("Ticker", "throttled")
    kraken_sim.inject("Ticker", "throttled", seconds=30)
    assert kraken_api.query_public("Ticker", {"pair": "XBTEUR"})["error"] == ["EService:Throttled: 1700000005"]
    assert kraken_api.query_public("Ticker", {"pair": "XBTEUR"})["error"] == ["EService:Throttled: 1700000030"]
    kraken_sim.inject("AddOrder", "throttled")
    assert call(kraken_api, "AddOrder", **BUY)["error"] == ["EService:Throttled: 1700000005"]
    assert kraken_sim.account_orders(kraken_sim.test_key) == []        # not processed


def test_drop_closes_the_connection_without_processing(kraken_sim: KrakenSimulator, kraken_api: krakenex.API) -> None:
    kraken_sim.inject("AddOrder", "drop")
    with pytest.raises(requests.exceptions.ConnectionError):
        call(kraken_api, "AddOrder", **BUY)
    assert kraken_sim.calls["AddOrder"] == 1 and kraken_sim.account_orders(kraken_sim.test_key) == []
    assert ok(call(kraken_api, "AddOrder", **BUY))["txid"]


def test_faults_with_after_through_the_control_api(kraken_sim: KrakenSimulator, kraken_api: krakenex.API) -> None:
    control = kraken_sim.url + "/_sim/"
    listed = requests.post(control + "fault", json={"method": "AddOrder", "fault": "deadline_elapsed",
                                                    "after": True}, timeout=5).json()
    assert listed == [{"method": "AddOrder", "fault": "deadline_elapsed", "times": 1, "after": True}]
    assert call(kraken_api, "AddOrder", **BUY)["error"] == ["EService:Deadline elapsed"]
    requests.post(control + "fault", json={"method": "AddOrder", "fault": "http_500", "after": False}, timeout=5)
    with pytest.raises(requests.exceptions.HTTPError):
        call(kraken_api, "AddOrder", **BUY)
    assert [o.status for o in kraken_sim.account_orders(kraken_sim.test_key)] == ["closed"]
    assert requests.post(control + "fault", json={"method": "Time", "fault": "lifecycle"}, timeout=5).status_code == 400
    requests.post(control + "fault", json={"method": "AddOrder", "fault": "lifecycle", "pending": 1, "fill": "0.5",
                                          "open": 1}, timeout=5)
    txid, = ok(call(kraken_api, "AddOrder", **BUY))["txid"]
    assert order_state(kraken_api, txid)[:2] == ("pending", "0.00000000")
    assert order_state(kraken_api, txid)[:2] == ("open", "0.00050000")


# --- lifecycle orders ------------------------------------------------------------------------

def order_state(api: krakenex.API, txid: str) -> tuple:
    order = ok(call(api, "QueryOrders", txid=txid))[txid]
    return order["status"], order["vol_exec"], order["cost"], order["fee"]


def balance_ex(api: krakenex.API, asset: str) -> tuple[str, str]:
    entry = ok(call(api, "BalanceEx"))[asset]
    return entry["balance"], entry["hold_trade"]


def test_lifecycle_by_lookups_each_order_query_is_a_unit(kraken_sim: KrakenSimulator,
                                                         kraken_api: krakenex.API) -> None:
    """pending=1, open=1: the first lookup sees it pending, the second open (0.4 filled
    at the ask then), the third closed; QueryOrders, OpenOrders and ClosedOrders all count."""
    kraken_sim.set_price("XBTEUR", "30000.0")
    kraken_sim.inject("AddOrder", "lifecycle", pending=1, open=1, fill="0.4")
    txid, = ok(call(kraken_api, "AddOrder", **BUY))["txid"]
    truth, = kraken_sim.account_orders(kraken_sim.test_key)
    assert (truth.txid, truth.status, truth.vol_exec) == (txid, "pending", 0)
    # the whole order is held at the ask of its placement: cost 30.01500 + fee 0.07804
    assert balance_ex(kraken_api, "ZEUR") == ("1000.0000", "30.09304")      # BalanceEx is no lookup
    assert ok(call(kraken_api, "TradesHistory"))["count"] == 0               # nor TradesHistory
    assert order_state(kraken_api, txid) == ("pending", "0.00000000", "0.00000", "0.00000")
    kraken_sim.set_price("XBTEUR", "31000.0")                                # ask 31015.5
    opened = ok(call(kraken_api, "OpenOrders"))["open"][txid]
    assert (opened["status"], opened["vol_exec"], opened["cost"]) == ("open", "0.00040000", "12.40620")
    closed = ok(call(kraken_api, "ClosedOrders"))["closed"][txid]
    # + 0.0006 x 31015.5 = 18.60930
    assert (closed["status"], closed["vol_exec"], closed["cost"], closed["price"]) == \
        ("closed", "0.00100000", "31.01550", "31015.5")
    truth, = kraken_sim.account_orders(kraken_sim.test_key)
    assert (truth.status, truth.vol_exec, truth.cost) == ("closed", Decimal("0.001"), Decimal("31.0155"))


def test_lifecycle_stage_by_stage(kraken_sim: KrakenSimulator, kraken_api: krakenex.API) -> None:
    """pending=2, open=1: lookups 1-2 see it pending, lookup 3 opens it (0.4 filled at
    the ask then), lookup 4 closes it (the rest at the ask then)."""
    kraken_sim.set_price("XBTEUR", "30000.0")
    kraken_sim.inject("AddOrder", "lifecycle", pending=2, open=1, fill="0.4")
    txid, = ok(call(kraken_api, "AddOrder", **BUY))["txid"]
    assert order_state(kraken_api, txid) == ("pending", "0.00000000", "0.00000", "0.00000")
    assert order_state(kraken_api, txid) == ("pending", "0.00000000", "0.00000", "0.00000")
    kraken_sim.set_price("XBTEUR", "31000.0")                                # ask 31015.5
    # 0.0004 x 31015.5 = 12.40620, fee 0.0322561 rounded up
    assert order_state(kraken_api, txid) == ("open", "0.00040000", "12.40620", "0.03226")
    # the rest (0.0006) is held at the placement ask 30015.0: 18.00900 + 0.04683
    assert balance_ex(kraken_api, "ZEUR") == ("987.56154", "18.05583")
    kraken_sim.set_price("XBTEUR", "32000.0")                                # ask 32016.0
    # + 0.0006 x 32016.0 = 19.20960, fee 0.0499450 rounded up
    order = ok(call(kraken_api, "QueryOrders", txid=txid, trades=True))[txid]
    assert (order["status"], order["vol_exec"], order["cost"], order["fee"], order["price"], len(order["trades"])) == \
        ("closed", "0.00100000", "31.61580", "0.08221", "31615.8", 2)
    assert balance_ex(kraken_api, "ZEUR") == ("968.30199", "0.0000")
    truth, = kraken_sim.account_orders(kraken_sim.test_key)
    assert (truth.status, truth.vol_exec, truth.cost, truth.fee) == \
        ("closed", Decimal("0.001"), Decimal("31.61580"), Decimal("0.08221"))


def test_lifecycle_by_seconds_ignores_lookups(kraken_sim: KrakenSimulator, kraken_api: krakenex.API) -> None:
    kraken_sim.set_price("XBTEUR", "30000.0")
    kraken_sim.inject("AddOrder", "lifecycle", pending=10, open=20, unit="seconds")
    txid, = ok(call(kraken_api, "AddOrder", **BUY))["txid"]
    assert [order_state(kraken_api, txid)[0] for _ in range(3)] == ["pending"] * 3
    kraken_sim.advance(10)
    assert order_state(kraken_api, txid)[0] == "pending"
    kraken_sim.advance(1)
    assert order_state(kraken_api, txid)[:2] == ("open", "0.00000000")      # fill=None: nothing while open
    kraken_sim.set_price("XBTEUR", "30100.0")                               # ask 30115.1 (30115.05 up)
    kraken_sim.advance(19)
    assert order_state(kraken_api, txid)[0] == "open"
    kraken_sim.advance(1)
    assert order_state(kraken_api, txid) == ("closed", "0.00100000", "30.11510", "0.07830")


def test_lifecycle_partial_fill_then_canceled(kraken_sim: KrakenSimulator, kraken_api: krakenex.API) -> None:
    kraken_sim.set_price("XBTEUR", "30000.0")
    kraken_sim.inject("AddOrder", "lifecycle", open=1, fill="0.5", end="canceled")
    txid, = ok(call(kraken_api, "AddOrder", **BUY))["txid"]
    # pending=0: it opens on placement and half fills at once: 0.0005 x 30015.0 = 15.00750 + 0.03902
    assert kraken_sim.balances(kraken_sim.test_key)["XXBT"] == Decimal("0.0505")
    assert order_state(kraken_api, txid) == ("open", "0.00050000", "15.00750", "0.03902")
    order = ok(call(kraken_api, "QueryOrders", txid=txid))[txid]
    assert (order["status"], order["vol_exec"], order["misc"], order["reason"]) == \
        ("canceled", "0.00050000", "partial", "Partial fill")
    assert balance_ex(kraken_api, "ZEUR") == ("984.95348", "0.0000")
    assert [(o.status, o.vol_exec) for o in kraken_sim.account_orders(kraken_sim.test_key)] == \
        [("canceled", Decimal("0.0005"))]


def test_lifecycle_without_stages_fills_at_once(kraken_sim: KrakenSimulator, kraken_api: krakenex.API) -> None:
    kraken_sim.inject("AddOrder", "lifecycle")
    txid, = ok(call(kraken_api, "AddOrder", **BUY))["txid"]
    assert kraken_sim.account_orders(kraken_sim.test_key)[0].status == "closed"
    assert order_state(kraken_api, txid)[:2] == ("closed", "0.00100000")


def test_lifecycle_hidden_order_is_unknown_for_a_while(kraken_sim: KrakenSimulator, kraken_api: krakenex.API) -> None:
    ref = str(uuid.uuid4())
    kraken_sim.inject("AddOrder", "lifecycle", pending=5, hidden=2)
    txid, = ok(call(kraken_api, "AddOrder", **BUY, cl_ord_id=ref))["txid"]
    assert call(kraken_api, "QueryOrders", txid=txid)["error"] == ["EOrder:Invalid order"]       # lookup 1
    assert call(kraken_api, "CancelOrder", txid=txid)["error"] == ["EOrder:Unknown order"]       # no lookup
    assert call(kraken_api, "CancelOrder", cl_ord_id=ref)["error"] == ["EOrder:Unknown order"]
    assert ok(call(kraken_api, "OpenOrders"))["open"] == {}                                       # lookup 2
    assert call(kraken_api, "AddOrder", **BUY, cl_ord_id=ref)["error"] == ["EOrder:Duplicate cl_ord_id"]
    assert list(ok(call(kraken_api, "OpenOrders", cl_ord_id=ref))["open"]) == [txid]             # lookup 3
    assert [(o.txid, o.status) for o in kraken_sim.account_orders(kraken_sim.test_key)] == [(txid, "pending")]


def test_lifecycle_hidden_after_it_filled(kraken_sim: KrakenSimulator, kraken_api: krakenex.API) -> None:
    kraken_sim.inject("AddOrder", "lifecycle", hidden=1)
    txid, = ok(call(kraken_api, "AddOrder", **BUY))["txid"]
    assert kraken_sim.balances(kraken_sim.test_key)["XXBT"] == Decimal("0.051")      # filled at once
    assert ok(call(kraken_api, "ClosedOrders")) == {"closed": {}, "count": 0}
    assert ok(call(kraken_api, "TradesHistory"))["count"] == 0
    assert list(ok(call(kraken_api, "ClosedOrders"))["closed"]) == [txid]
    assert ok(call(kraken_api, "TradesHistory"))["count"] == 1


def test_lifecycle_order_holds_its_funds(kraken_sim: KrakenSimulator, kraken_api: krakenex.API) -> None:
    kraken_sim.set_price("XBTEUR", "30000.0")
    kraken_sim.inject("AddOrder", "lifecycle", pending=3)
    ok(call(kraken_api, "AddOrder", **{**BUY, "volume": "0.03"}))        # holds 900.45000 + 2.34117 EUR
    assert call(kraken_api, "AddOrder", **{**BUY, "volume": "0.004"})["error"] == ["EOrder:Insufficient funds"]
    assert ok(call(kraken_api, "AddOrder", **{**BUY, "volume": "0.003"}))["txid"]
    kraken_sim.inject("AddOrder", "lifecycle", pending=3)
    ok(call(kraken_api, "AddOrder", pair="XBTEUR", type="sell", ordertype="market", volume="0.05"))
    assert balance_ex(kraken_api, "XXBT") == ("0.0530000000", "0.0500000000")
    assert call(kraken_api, "AddOrder", pair="XBTEUR", type="sell", ordertype="market",
                volume="0.004")["error"] == ["EOrder:Insufficient funds"]
    trade_balance = ok(call(kraken_api, "TradeBalance", asset="ZEUR"))
    assert Decimal(trade_balance["uv"]) > 900


def test_delayed_buy_fills_what_the_funds_cover_and_cancels_the_rest(kraken_sim: KrakenSimulator) -> None:
    kraken_sim.set_price("XBTEUR", "30000.0")
    key, secret = kraken_sim.add_account(balances={"ZEUR": "31"})
    api = client(kraken_sim, key, secret)
    kraken_sim.inject("AddOrder", "lifecycle", pending=1)
    txid, = ok(call(api, "AddOrder", **BUY))["txid"]                 # 30.09304 at ask 30015.0: covered
    kraken_sim.set_price("XBTEUR", "33000.0")                         # ask 33016.5
    assert order_state(api, txid)[0] == "pending"
    order = ok(call(api, "QueryOrders", txid=txid))[txid]
    # 31 EUR buy 0.00093649 at 33016.5: cost 30.91962 + fee 0.08040 = 31.00002 > 31, so 0.00093648
    assert (order["status"], order["vol_exec"], order["misc"], order["reason"]) == \
        ("canceled", "0.00093648", "partial", "Insufficient funds")
    balance = kraken_sim.balances(key)
    assert Decimal(0) <= balance["ZEUR"] < Decimal("0.001") and balance["XXBT"] == Decimal("0.00093648")
    truth, = kraken_sim.account_orders(key)
    assert (truth.vol_exec, str(truth.cost + truth.fee)) == (Decimal("0.00093648"), str(31 - balance["ZEUR"]))


def test_cancel_a_pending_lifecycle_order(kraken_sim: KrakenSimulator, kraken_api: krakenex.API) -> None:
    kraken_sim.inject("AddOrder", "lifecycle", pending=3, open=1, fill="0.5")
    txid, = ok(call(kraken_api, "AddOrder", **BUY, userref=9))["txid"]
    assert ok(call(kraken_api, "CancelOrder", txid=9)) == {"count": 1}
    assert balance_ex(kraken_api, "ZEUR") == ("1000.0000", "0.0000")
    states = [order_state(kraken_api, txid) for _ in range(5)]
    assert states == [("canceled", "0.00000000", "0.00000", "0.00000")] * 5
    assert ok(call(kraken_api, "QueryOrders", txid=txid))[txid]["reason"] == "User requested"
    assert call(kraken_api, "CancelOrder", txid=txid)["error"] == ["EOrder:Unknown order"]


def test_cancel_an_open_partly_filled_lifecycle_order(kraken_sim: KrakenSimulator, kraken_api: krakenex.API) -> None:
    kraken_sim.inject("AddOrder", "lifecycle", open=5, fill="0.5")
    txid, = ok(call(kraken_api, "AddOrder", **BUY))["txid"]
    assert ok(call(kraken_api, "CancelOrder", txid=txid)) == {"count": 1}
    order = ok(call(kraken_api, "QueryOrders", txid=txid))[txid]
    assert (order["status"], order["vol_exec"], order["misc"]) == ("canceled", "0.00050000", "partial")
    assert kraken_sim.balances(kraken_sim.test_key)["XXBT"] == Decimal("0.0505")


def test_complete_orders_finishes_every_script(kraken_sim: KrakenSimulator, kraken_api: krakenex.API) -> None:
    kraken_sim.inject("AddOrder", "lifecycle", times=2, pending=100, hidden=100)
    a, b = (ok(call(kraken_api, "AddOrder", **BUY))["txid"][0] for _ in range(2))
    assert kraken_sim.complete_orders() == 2
    assert list(ok(call(kraken_api, "QueryOrders", txid=f"{a},{b}"))) == [a, b]
    assert [o.status for o in kraken_sim.account_orders(kraken_sim.test_key)] == ["closed", "closed"]
    kraken_sim.inject("AddOrder", "lifecycle", pending=100)
    ok(call(kraken_api, "AddOrder", **BUY))
    assert requests.post(kraken_sim.url + "/_sim/complete_orders", json={}, timeout=5).json() == {"completed": 1}
    assert kraken_sim.balances(kraken_sim.test_key)["XXBT"] == Decimal("0.053")


def test_a_lifecycle_and_an_answer_fault_on_one_call(kraken_sim: KrakenSimulator, kraken_api: krakenex.API) -> None:
    kraken_sim.inject("AddOrder", "lifecycle", pending=1)
    kraken_sim.inject("AddOrder", "internal_error", after=True)
    assert call(kraken_api, "AddOrder", **BUY)["error"] == ["EGeneral:Internal error"]
    assert [o.status for o in kraken_sim.account_orders(kraken_sim.test_key)] == ["pending"]
    kraken_sim.inject("AddOrder", "lifecycle", pending=1)
    kraken_sim.inject("AddOrder", "busy")        # refused at the door: the lifecycle waits for a placed order
    assert call(kraken_api, "AddOrder", **BUY)["error"] == ["EService:Busy"]
    ok(call(kraken_api, "AddOrder", **{**BUY, "ordertype": "limit", "price": "20000.0"}))   # limit: not scripted
    ok(call(kraken_api, "AddOrder", **BUY))
    assert [o.status for o in kraken_sim.account_orders(kraken_sim.test_key)] == ["pending", "open", "pending"]


def test_lifecycle_parameters_are_checked_at_injection(kraken_sim: KrakenSimulator) -> None:
    for bad in ({"fill": "1"}, {"end": "expired"}, {"unit": "minutes"}, {"pending": 1.5}, {"pending": -1},
                {"colour": "red"}):
        with pytest.raises(ValueError):
            kraken_sim.inject("AddOrder", "lifecycle", **bad)
    with pytest.raises(ValueError):
        kraken_sim.inject("*", "lifecycle")
    kraken_sim.inject("AddOrder", "lifecycle", pending=1.5, unit="seconds")


# --- BalanceEx, order parameters, JSON bodies ------------------------------------------------

def test_balance_ex_shows_what_open_orders_hold(kraken_sim: KrakenSimulator, kraken_api: krakenex.API) -> None:
    assert ok(call(kraken_api, "BalanceEx")) == {
        "ZEUR": {"balance": "1000.0000", "credit": "0.0000", "credit_used": "0.0000", "hold_trade": "0.0000"},
        "XXBT": {"balance": "0.0500000000", "credit": "0.0000000000", "credit_used": "0.0000000000",
                 "hold_trade": "0.0000000000"},
        "XETH": {"balance": "0.5000000000", "credit": "0.0000000000", "credit_used": "0.0000000000",
                 "hold_trade": "0.0000000000"}}
    ok(call(kraken_api, "AddOrder", pair="XBTEUR", type="buy", ordertype="limit", price="20000.0", volume="0.001"))
    ok(call(kraken_api, "AddOrder", pair="ETHEUR", type="sell", ordertype="limit", price="9000.00", volume="0.2"))
    balances = ok(call(kraken_api, "BalanceEx"))
    # 0.001 x 20000.0 = 20.00000, taker fee 0.05200 held
    assert (balances["ZEUR"]["balance"], balances["ZEUR"]["hold_trade"]) == ("1000.0000", "20.05200")
    assert balances["XETH"]["hold_trade"] == "0.2000000000"
    assert ok(call(kraken_api, "Balance"))["ZEUR"] == "1000.0000"     # Balance shows totals


@pytest.mark.parametrize("fields", [{"reduce_only": "false"}, {"reduce_only": False}, {"leverage": "none"},
                                    {"starttm": "0"}, {"expiretm": "0"}, {"stptype": "cancel-newest"},
                                    {"timeinforce": "gtc"}, {"trigger": "last"}, {"oflags": "fciq"},
                                    {"deadline": "2999-01-01T00:00:00Z"}, {"displayvol": ""}])
def test_parameters_at_their_default_are_accepted(kraken_sim: KrakenSimulator, kraken_api: krakenex.API,
                                                  fields: dict) -> None:
    txid, = ok(call(kraken_api, "AddOrder", **BUY, **fields))["txid"]
    assert kraken_sim.account_orders(kraken_sim.test_key)[0].txid == txid


@pytest.mark.parametrize("fields, message", [
    ({"reduce_only": "true"}, "EGeneral:Invalid arguments:reduce_only"),
    ({"stptype": "cancel-all"}, "EGeneral:Invalid arguments:stptype"),
    ({"starttm": "+60"}, "EGeneral:Invalid arguments:starttm"),
    ({"price2": "25000"}, "EGeneral:Invalid arguments:price2"),
    ({"close[ordertype]": "limit"}, "EGeneral:Invalid arguments:close[ordertype]"),
    ({"deadline": "soon"}, "EGeneral:Invalid arguments:deadline"),
    ({"deadline": "2001-01-01T00:00:00Z"}, "EService:Deadline elapsed"),
])
def test_parameters_the_simulator_cannot_model_are_refused(kraken_sim: KrakenSimulator, kraken_api: krakenex.API,
                                                           fields: dict, message: str) -> None:
    assert call(kraken_api, "AddOrder", **BUY, **fields)["error"] == [message]
    assert kraken_sim.account_orders(kraken_sim.test_key) == []


def raw_json(sim: KrakenSimulator, key: str, secret: str, method: str, body: str,
             signature: str | None = None) -> dict:
    """A private call with a JSON body, signed over its exact bytes unless `signature` is given."""
    path = f"/0/private/{method}"
    headers = {"API-Key": key, "API-Sign": signature or sign(secret, path, body), "Content-Type": "application/json"}
    return requests.post(sim.url + path, data=body.encode(), headers=headers, timeout=5).json()


def test_json_bodies_signed_over_their_raw_bytes(kraken_sim: KrakenSimulator) -> None:
    kraken_sim.set_price("XBTEUR", "30000.0")
    key, secret = kraken_sim.add_account(balances={"ZEUR": "100"})
    body = '{"nonce": 1700000000001, "pair": "XBTEUR", "type": "buy", "ordertype": "market", "volume": 0.001,' \
           ' "validate": false, "reduce_only": false, "userref": 7}'
    txid, = ok(raw_json(kraken_sim, key, secret, "AddOrder", body))["txid"]
    # the nonce is the JSON's; the same body again is a replay
    assert raw_json(kraken_sim, key, secret, "AddOrder", body)["error"] == ["EAPI:Invalid nonce"]
    order = ok(raw_json(kraken_sim, key, secret, "QueryOrders",
                        json.dumps({"nonce": "1700000000002", "txid": [txid], "trades": True})))[txid]
    assert (order["userref"], order["vol_exec"], len(order["trades"])) == (7, "0.00100000", 1)
    assert ok(raw_json(kraken_sim, key, secret, "Balance", '{"nonce":1700000000003}'))["XXBT"] == "0.0010000000"


def test_json_bodies_with_a_bad_signature_are_refused(kraken_sim: KrakenSimulator) -> None:
    key, secret = kraken_sim.add_account(balances={"ZEUR": "100"})
    path = "/0/private/AddOrder"
    body = json.dumps({"nonce": 1700000000001, "pair": "XBTEUR", "type": "buy", "ordertype": "market",
                       "volume": "0.001"})
    respaced = body.replace(", ", ",")          # the same object, other bytes
    assert raw_json(kraken_sim, key, secret, "AddOrder", body, sign(secret, path, respaced))["error"] == \
        ["EAPI:Invalid signature"]
    assert raw_json(kraken_sim, key, new_credentials()[1], "AddOrder", body)["error"] == ["EAPI:Invalid signature"]
    # signed as JSON but sent as a form: the server reads no nonce from it
    assert raw_private(kraken_sim, key, secret, "AddOrder", body)["error"] == ["EAPI:Invalid signature"]
    assert raw_json(kraken_sim, key, secret, "Balance", '{"nonce": 5', sign(secret, "/0/private/Balance", ""))[
        "error"] == ["EGeneral:Invalid arguments"]
    assert kraken_sim.account_orders(key) == []
    assert ok(raw_json(kraken_sim, key, secret, "AddOrder", body))["txid"]     # the same body, rightly signed


# --- Depth and Trades ------------------------------------------------------------------------------

def test_depth_is_a_book_around_the_ticker(kraken_sim: KrakenSimulator, kraken_api: krakenex.API) -> None:
    kraken_sim.set_price("XBTEUR", "30000.0")
    book = ok(kraken_api.query_public("Depth", {"pair": "XBTEUR", "count": 5}))
    assert list(book) == ["XXBTZEUR"]
    asks, bids = book["XXBTZEUR"]["asks"], book["XXBTZEUR"]["bids"]
    assert len(asks) == len(bids) == 5
    assert all([type(v) for v in level] == [str, str, int] for level in asks + bids)
    ticker = ok(kraken_api.query_public("Ticker", {"pair": "XBTEUR"}))["XXBTZEUR"]
    assert (asks[0][0], bids[0][0]) == (ticker["a"][0], ticker["b"][0]) == ("30015.0", "29985.0")
    ask_prices, bid_prices = [Decimal(a[0]) for a in asks], [Decimal(b[0]) for b in bids]
    assert ask_prices == sorted(set(ask_prices)) and bid_prices == sorted(set(bid_prices), reverse=True)
    assert all(Decimal(level[1]) >= Decimal("0.0001") and level[2] <= kraken_sim.clock for level in asks + bids)
    full = ok(kraken_api.query_public("Depth", {"pair": "XBTEUR"}))["XXBTZEUR"]
    assert len(full["asks"]) == 100 and full["asks"][:5] == asks and full["bids"][:5] == bids
    assert kraken_api.query_public("Depth", {"pair": "XBTEUR", "count": 501})["error"] == \
        ["EGeneral:Invalid arguments:count"]
    assert kraken_api.query_public("Depth", {"pair": "NOPE"})["error"] == ["EQuery:Unknown asset pair"]


def test_trades_follow_the_price_path(kraken_sim: KrakenSimulator, kraken_api: krakenex.API) -> None:
    kraken_sim.set_time(kraken_sim.clock // 60 * 60 + 30)
    result = ok(kraken_api.query_public("Trades", {"pair": "XBTEUR"}))
    trades, last = result["XXBTZEUR"], result["last"]
    assert len(trades) == 1000 and isinstance(last, str)
    assert all([type(v) for v in t] == [str, str, float, str, str, str, int] and t[3] in "bs" and t[4] in "ml"
               for t in trades)
    times = [t[2] for t in trades]
    assert times == sorted(times) and times[-1] <= kraken_sim.clock and int(last) == int(times[-1] * 10 ** 9)
    ticker = ok(kraken_api.query_public("Ticker", {"pair": "XBTEUR"}))["XXBTZEUR"]
    assert trades[-1][0] == ticker["c"][0]                      # the last trade is the last price
    # every closed minute: its volume, and prices within its low and high
    minutes = ok(kraken_api.query_public("OHLC", {"pair": "XBTEUR"}))["XXBTZEUR"]
    by_minute: dict[int, list] = {}
    for t in trades:
        by_minute.setdefault(int(t[2]) // 60 * 60, []).append(t)
    for ts, _, high, low, _, _, volume, _ in minutes[-100:-1]:
        assert sum(Decimal(t[1]) for t in by_minute[ts]) == Decimal(volume)
        assert all(Decimal(low) <= Decimal(t[0]) <= Decimal(high) for t in by_minute[ts])
    assert kraken_api.query_public("Trades", {"pair": "XBTEUR", "count": 0})["error"] == \
        ["EGeneral:Invalid arguments:count"]


def test_trades_since_pages_forward(kraken_sim: KrakenSimulator, kraken_api: krakenex.API) -> None:
    kraken_sim.set_time(kraken_sim.clock // 60 * 60 + 10)
    start = kraken_sim.clock - 3600
    first = ok(kraken_api.query_public("Trades", {"pair": "XBTEUR", "since": int(start), "count": 50}))
    assert len(first["XXBTZEUR"]) == 50 and all(t[2] > start for t in first["XXBTZEUR"])
    second = ok(kraken_api.query_public("Trades", {"pair": "XBTEUR", "since": first["last"], "count": 50}))
    both = first["XXBTZEUR"] + second["XXBTZEUR"]
    whole = ok(kraken_api.query_public("Trades", {"pair": "XBTEUR", "since": int(start), "count": 100}))
    assert both == whole["XXBTZEUR"] and second["last"] == whole["last"]
    assert [t[6] for t in both] == sorted({t[6] for t in both})
    latest = ok(kraken_api.query_public("Trades", {"pair": "XBTEUR"}))["last"]
    assert ok(kraken_api.query_public("Trades", {"pair": "XBTEUR", "since": latest}))["XXBTZEUR"] == []
    kraken_sim.advance(120)
    newer = ok(kraken_api.query_public("Trades", {"pair": "XBTEUR", "since": latest}))["XXBTZEUR"]
    assert newer and all(t[2] * 10 ** 9 > int(latest) for t in newer)
    assert newer[-1][0] == ok(kraken_api.query_public("Ticker", {"pair": "XBTEUR"}))["XXBTZEUR"]["c"][0]
    kraken_sim.set_price("XBTEUR", "31000.0")       # mid-minute, on a path not aligned on minutes
    assert ok(kraken_api.query_public("Trades", {"pair": "XBTEUR", "count": 1}))["XXBTZEUR"][0][0] == "31000.0"


# --- control API, markets, command line ----------------------------------------------------

def test_control_api(kraken_sim: KrakenSimulator) -> None:
    control = kraken_sim.url + "/_sim/"
    post = lambda name, payload: requests.post(control + name, json=payload, timeout=5)
    assert post("time", {"ts": 1700000000}).json() == {"clock": 1700000000.0}
    assert post("time", {"advance": 60}).json() == {"clock": 1700000060.0}
    assert kraken_sim.clock == 1700000060
    assert post("price", {"pair": "XBTEUR", "price": "31000.0"}).json() == \
        {"pair": "XXBTZEUR", "price": "31000.0", "bid": "30984.5", "ask": "31015.5"}
    assert kraken_sim.price("XXBTZEUR") == Decimal("31000.0")
    assert requests.get(control + "price", params={"pair": "XBT/EUR"}, timeout=5).json()["price"] == "31000.0"
    assert post("pair_status", {"pair": "ADAEUR", "status": "cancel_only"}).json() == \
        {"pair": "ADAEUR", "status": "cancel_only"}
    assert kraken_sim.pair("ADAEUR").status == "cancel_only"
    assert post("system_status", {"status": "maintenance"}).json() == {"status": "maintenance"}
    assert post("fault", {"method": "Time", "fault": "http_500", "times": 1}).json() == \
        [{"method": "Time", "fault": "http_500", "times": 1}]
    assert requests.get(kraken_sim.url + "/0/public/Time", timeout=5).status_code == 500
    assert requests.get(control + "calls", timeout=5).json() == {"Time": 1}
    assert post("price", {"pair": "NOPE", "price": "1"}).status_code == 400
    assert post("price", {"pair": "XBTEUR", "price": "1.25"}).status_code == 400    # XBTEUR has 1 decimal
    assert post("teleport", {}).status_code == 404


def test_many_synthetic_pairs(kraken_sim: KrakenSimulator, kraken_api: krakenex.API) -> None:
    keys = kraken_sim.add_synthetic_pairs(50)
    assert len(set(keys)) == 50 and keys[0] == "SYN001EUR"
    pairs = ok(kraken_api.query_public("AssetPairs"))
    assert set(keys) <= set(pairs)
    assert all(pairs[k]["quote"] == "ZEUR" and pairs[k]["wsname"] == f"{k[:6]}/EUR" for k in keys)
    tickers = ok(kraken_api.query_public("Ticker", {"pair": ",".join(keys[:3])}))
    for key in keys[:3]:
        price, ordermin = Decimal(tickers[key]["c"][0]), Decimal(pairs[key]["ordermin"])
        assert price > 0 and Decimal("0.5") <= price * ordermin <= 100     # a minimum order worth a few euros
    assert kraken_sim.add_synthetic_pairs(1) == ["SYN051EUR"]


def test_command_line_serves_until_interrupted(shared_data: Path) -> None:
    csv = shared_data / "unk_BTC_USD_1m_20230115.csv"
    rows = read_candle_csv(csv)
    proc = subprocess.Popen([sys.executable, "-m", "simulators.kraken", "--port", "0", "--csv", str(csv),
                             "--pair", "XXBTZUSD", "--time", str(rows[10][0])],
                            cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        url = re.search(r"http://127\.0\.0\.1:\d+", proc.stdout.readline()).group()
        key = proc.stdout.readline().split()[-1]
        secret = proc.stdout.readline().split()[-1]
        api = krakenex.API(key, secret)
        api.uri = url
        assert ok(api.query_private("Balance")) == {"ZEUR": "1000.0000"}
        assert ok(api.query_public("Ticker", {"pair": "XBTUSD"}))["XXBTZUSD"]["c"][0] == f"{rows[10][1]:.1f}"
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0


# --- price paths ---------------------------------------------------------------------------

def test_read_candle_csv(shared_data: Path, tmp_path: Path) -> None:
    rows = read_candle_csv(shared_data / "unk_SOL_USD_1m.csv")
    assert len(rows) == 300
    assert rows[0] == (1672531200, Decimal("9.97"), Decimal("9.98"), Decimal("9.95"), Decimal("9.98"),
                       Decimal("6012.86"))
    bad = tmp_path / "bad.csv"
    bad.write_text("time,price\n1,2\n")
    with pytest.raises(ValueError, match="header"):
        read_candle_csv(bad)


@pytest.mark.parametrize("name", ["unk_BTC_USD_1m_20190329.csv", "nasdaq_GOOG_USD_1d.csv",
                                  "bittrex_UNITTEST_BTC_1m.csv"])
def test_series_keeps_real_candles_exactly(shared_data: Path, name: str) -> None:
    rows = read_candle_csv(shared_data / name)
    assert Series.from_rows(rows).rows() == rows


def test_synthetic_path_is_reproducible_consistent_and_varied() -> None:
    path = synthetic_path(1, "100", 1700000000, 3 * 1440)
    assert path == synthetic_path(1, "100", 1700000000, 3 * 1440) != synthetic_path(2, "100", 1700000000, 3 * 1440)
    assert path[0][0] == 1700000000 - 1700000000 % 60 and path[0][1] == 100
    assert all(b[0] - a[0] == 60 and b[1] == a[4] for a, b in pairwise(path))
    assert all(h >= max(o, c) and 0 < l <= min(o, c) and v >= 0 for _, o, h, l, c, v in path)
    changes = [synthetic_path(seed, "100", 1700000000, 3 * 1440)[-1][4] - 100 for seed in range(20)]
    assert any(c > 2 for c in changes) and any(c < -2 for c in changes)


def test_a_summary_is_the_one_bucket_aggregate_of_its_candles() -> None:
    """Series.summary (slice sums, what Ticker serves) against candles() with one bucket."""
    series = Series.from_rows(synthetic_path(3, "250.5", 1700000000, 600))
    first, rng = series.ts[0], random.Random(7)
    spans = [(first, series.end), (first - 600, first + 30), (first + 60, first + 95), (first + 61, first + 59)]
    spans += [(first + rng.randrange(-120, 36000), first + rng.randrange(0, 36600)) for _ in range(200)]
    for start, t in spans:
        whole, summary = series.candles(2 ** 62, start, t), series.summary(start, t)
        if not whole:
            assert summary is None, (start, t)
            continue
        assert summary[1:] == whole[0][1:], (start, t)
        assert summary.ts == min(ts for ts in series.ts if ts >= start)   # its first candle's open
    assert series.summary(first + 60, first + 95).volume == 0      # only the open of the candle holding t
