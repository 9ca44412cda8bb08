"""The Bittrex v3 simulator, driven by the real bittrex-api client and by raw requests.

The client hides every error (it returns None), so status codes and error
bodies are checked with `requests` and hand-made signatures.
"""
from __future__ import annotations

import csv
import json
import select
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from decimal import Decimal
from itertools import pairwise
from pathlib import Path

import pytest
import requests
from bittrex_api.v3 import CandleInterval, OrderDirection, OrderType, TimeInForce

from simulators.bittrex import START_TIME, BittrexSimulator, MarketSpec, content_hash, default_markets, signature
from tests.plugins.bittrex_sim import BITTREX_KEY, BITTREX_SECRET, bittrex_v3, signed_headers

ROOT = Path(__file__).resolve().parent.parent
EMPTY_HASH = ("cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce"
              "47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e")
VECTOR_BODY = (b'{"marketSymbol": "BTC-EUR", "direction": "BUY", "type": "LIMIT", "timeInForce": '
               b'"GOOD_TIL_CANCELLED", "quantity": 0.0002, "limit": 30000.0, '
               b'"clientOrderId": "6d1b345e-2821-40e2-ad83-4ecb18a06876"}')
RECENT = "GET /v3/markets/{marketSymbol}/candles[/{candleType}]/{candleInterval}/recent"


def call(sim: BittrexSimulator, method: str, path: str, body: object = None, *, key: str = BITTREX_KEY,
         secret: str = BITTREX_SECRET, signed: bool = True, **kwargs) -> requests.Response:
    """A raw request; signed as spec §4.4 says unless `signed` is False."""
    url = sim.url + path
    data = body if isinstance(body, bytes) else b"" if body is None else json.dumps(body).encode()
    headers = signed_headers(key, secret, method, url, data) if signed else {}
    return requests.request(method, url, data=data or None, headers=headers, timeout=10, **kwargs)


def new_order(market: str = "BTC-EUR", direction: str = "BUY", kind: str = "MARKET",
              tif: str = "IMMEDIATE_OR_CANCEL", **fields: object) -> dict:
    return {"marketSymbol": market, "direction": direction, "type": kind, "timeInForce": tif, **fields}


def error(response: requests.Response) -> tuple[int, str]:
    return response.status_code, response.json()["code"]


def dec(text: str) -> Decimal:
    return Decimal(text)


def eight(text: str) -> str:
    """A CSV number as the simulator prints it with 8 decimals."""
    return f"{Decimal(text):.8f}"


# ----------------------------------------------------------------- signatures

def test_signature_helpers_reproduce_the_spec_vectors() -> None:
    assert content_hash(b"") == EMPTY_HASH
    assert signature("simulator-secret", "1700000000000", "http://127.0.0.1:8081/v3/balances", "GET",
                     EMPTY_HASH) == (
        "905cb5a5d79637c7e04914ee21354572b74be4e8a0ee7fd28e4b5167ad509a17"
        "7c88dfd97a3133766693fc49b7ff36840e81372f9b5ff4e85fa623c3bafd3322")
    body_hash = content_hash(VECTOR_BODY)
    assert body_hash == ("3b55cc5d3a12ac56be4df17f65e4f7cd78147407d629cd22e9d47e0fb1e502f9"
                         "8110a36bfb267e5e1501a74a04b55272209fc5ec802fae36613b070ece0aa8f6")
    assert signature("simulator-secret", "1700000000002", "http://127.0.0.1:8081/v3/orders", "POST",
                     body_hash) == (
        "266fcdc0edbdb69dff3da2da3b571ff9e4e2941e557d77fb152638a7f191648a"
        "eb4f5e8fa0b0658a965700ea779a146c8ba709b827f268b09cc44a93f0ef6c9f")


def test_server_accepts_the_spec_vectors_byte_for_byte() -> None:
    """The spec's signed requests, sent as they are (Host 127.0.0.1:8081, old timestamps)."""
    with BittrexSimulator(timestamp_window=None) as sim:
        sim.add_account("vector-key", "simulator-secret", {"EUR": "100"})
        base = {"Api-Key": "vector-key", "Host": "127.0.0.1:8081", "Content-Type": "application/json"}
        balances = requests.get(sim.url + "/v3/balances", timeout=10, headers={
            **base, "Api-Timestamp": "1700000000000", "Api-Content-Hash": EMPTY_HASH,
            "Api-Signature": "905cb5a5d79637c7e04914ee21354572b74be4e8a0ee7fd28e4b5167ad509a17"
                             "7c88dfd97a3133766693fc49b7ff36840e81372f9b5ff4e85fa623c3bafd3322"})
        assert balances.status_code == 200
        assert balances.json()[0]["total"] == "100.00000000"
        placed = requests.post(sim.url + "/v3/orders", data=VECTOR_BODY, timeout=10, headers={
            **base, "Api-Timestamp": "1700000000002", "Api-Content-Hash": content_hash(VECTOR_BODY),
            "Api-Signature": "266fcdc0edbdb69dff3da2da3b571ff9e4e2941e557d77fb152638a7f191648a"
                             "eb4f5e8fa0b0658a965700ea779a146c8ba709b827f268b09cc44a93f0ef6c9f"})
        assert placed.status_code == 201
        order = placed.json()
        assert (order["quantity"], order["limit"], order["status"]) == ("0.00020000", "30000.000", "OPEN")
        assert order["clientOrderId"] == "6d1b345e-2821-40e2-ad83-4ecb18a06876"


def test_the_real_client_signs_what_the_server_checks(bittrex_client) -> None:
    balances = {b["currencySymbol"]: b for b in bittrex_client.get_balances()}
    assert balances["EUR"] == {"currencySymbol": "EUR", "total": "1000.00000000", "available": "1000.00000000",
                               "updatedAt": "2023-11-14T22:13:20.000Z"}
    assert set(balances) == {"EUR", "BTC", "ETH"}


def _without_signature(url: str) -> dict:
    headers = signed_headers(BITTREX_KEY, BITTREX_SECRET, "GET", url)
    del headers["Api-Signature"]
    return headers


def _ms(ts: float) -> str:
    return str(int(ts * 1000))


AUTH_FAILURES = {  # case: (headers for the url, body sent, code)
    "unknown key": (lambda url: signed_headers("nobody", BITTREX_SECRET, "GET", url), b"", "APIKEY_INVALID"),
    "wrong secret": (lambda url: signed_headers(BITTREX_KEY, "not-it", "GET", url), b"", "INVALID_SIGNATURE"),
    "no signature": (_without_signature, b"", "APISIGN_NOT_PROVIDED"),
    "stale timestamp": (lambda url: signed_headers(BITTREX_KEY, BITTREX_SECRET, "GET", url,
                                                   timestamp=_ms(time.time() - 120)), b"", "INVALID_TIMESTAMP"),
    "timestamp in seconds": (lambda url: signed_headers(BITTREX_KEY, BITTREX_SECRET, "GET", url,
                                                        timestamp=str(int(time.time()))), b"", "INVALID_TIMESTAMP"),
    "body sent but not signed": (lambda url: signed_headers(BITTREX_KEY, BITTREX_SECRET, "GET", url),
                                 b'{"extra": 1}', "INVALID_SIGNATURE"),
    "signed for another host": (lambda url: signed_headers(BITTREX_KEY, BITTREX_SECRET, "GET",
                                                           url.replace("127.0.0.1", "localhost")),
                                b"", "INVALID_SIGNATURE"),
    "signed the url-encoded query": (lambda url: signed_headers(BITTREX_KEY, BITTREX_SECRET, "GET",
                                                                url.replace("00:00:00Z", "00%3A00%3A00Z")),
                                     b"", "INVALID_SIGNATURE"),
    "signed as DELETE": (lambda url: signed_headers(BITTREX_KEY, BITTREX_SECRET, "DELETE", url), b"",
                         "INVALID_SIGNATURE"),
}


@pytest.mark.parametrize("case", AUTH_FAILURES)
def test_authentication_failures(bittrex_sim: BittrexSimulator, case: str) -> None:
    make_headers, body, code = AUTH_FAILURES[case]
    url = bittrex_sim.url + "/v3/orders/closed?startDate=2023-11-14T00:00:00Z"
    response = requests.get(url, data=body or None, headers=make_headers(url), timeout=10)
    assert error(response) == (401, code)


@pytest.mark.parametrize("query", ["startDate=2023-11-14T00:00:00Z", "startDate=2023-11-14T00%3A00%3A00Z"])
def test_a_correctly_signed_raw_request_passes(bittrex_sim: BittrexSimulator, query: str) -> None:
    """The control case of the failures above; the signature covers the query exactly as sent."""
    url = bittrex_sim.url + "/v3/orders/closed?" + query
    response = requests.get(url, headers=signed_headers(BITTREX_KEY, BITTREX_SECRET, "GET", url), timeout=10)
    assert (response.status_code, response.json()) == (200, [])


def test_a_rejected_client_gets_none(bittrex_sim: BittrexSimulator) -> None:
    client = bittrex_v3(bittrex_sim, secret="wrong", tries=1)
    assert client.get_balances() is None
    assert bittrex_sim.calls["GET /v3/balances"] == 1


def test_signed_query_strings_are_checked_raw(bittrex_sim: BittrexSimulator, bittrex_client) -> None:
    """bittrex-api signs and sends ISO dates unencoded; the server verifies the raw target."""
    assert bittrex_client.get_closed_orders(market="BTC-EUR", start_date="2023-11-14T00:00:00Z",
                                            end_date="2023-11-15T00:00:00Z", page_size=5) == []
    assert bittrex_sim.calls["GET /v3/orders/closed"] == 1


# ------------------------------------------------------------------- markets

def test_ping_reports_the_simulated_clock(bittrex_sim: BittrexSimulator, bittrex_client) -> None:
    assert bittrex_client.ping() == {"serverTime": int(START_TIME) * 1000}
    bittrex_sim.set_time(START_TIME + 0.9)
    assert bittrex_client.ping() == {"serverTime": int(START_TIME) * 1000}  # rounded down to the second
    bittrex_sim.advance(90)
    assert bittrex_client.ping() == {"serverTime": (int(START_TIME) + 90) * 1000}


def test_markets_list_the_defaults_in_the_spec_shape(bittrex_client) -> None:
    markets = bittrex_client.get_markets()
    assert [m["symbol"] for m in markets] == ["BTC-EUR", "ETH-EUR", "LTC-EUR", "XRP-EUR", "ADA-EUR", "DOT-EUR",
                                              "ETH-BTC", "BTC-USD"]
    assert markets[0] == {"symbol": "BTC-EUR", "baseCurrencySymbol": "BTC", "quoteCurrencySymbol": "EUR",
                          "minTradeSize": "0.00010000", "precision": 3, "status": "ONLINE",
                          "createdAt": "2022-10-10T22:13:20Z", "notice": "", "prohibitedIn": [],
                          "associatedTermsOfService": [], "tags": []}
    eth_btc = bittrex_client.get_market("ETH-BTC")
    assert (eth_btc["precision"], eth_btc["minTradeSize"]) == (8, "0.00500000")


def test_market_status_and_notice(bittrex_sim: BittrexSimulator, bittrex_client) -> None:
    bittrex_sim.set_market_status("DOT-EUR", "OFFLINE", "wallet maintenance")
    market = bittrex_client.get_market("DOT-EUR")
    assert (market["status"], market["notice"]) == ("OFFLINE", "wallet maintenance")
    refused = call(bittrex_sim, "POST", "/v3/orders", new_order("DOT-EUR", quantity="1"))
    assert error(refused) == (503, "MARKET_OFFLINE")
    assert refused.json()["detail"] == "wallet maintenance"
    bittrex_sim.set_market_status("DOT-EUR", "ONLINE")
    assert call(bittrex_sim, "POST", "/v3/orders", new_order("DOT-EUR", quantity="1")).status_code == 201
    with pytest.raises(ValueError):
        bittrex_sim.set_market_status("DOT-EUR", "MAINTENANCE")


@pytest.mark.parametrize("path", ["/v3/markets/{}", "/v3/markets/{}/ticker", "/v3/markets/{}/summary",
                                  "/v3/markets/{}/candles/HOUR_1/recent"])
def test_unknown_and_reversed_market_names(bittrex_sim: BittrexSimulator, path: str) -> None:
    assert error(call(bittrex_sim, "GET", path.format("FOO-EUR"), signed=False)) == (404, "MARKET_DOES_NOT_EXIST")
    assert error(call(bittrex_sim, "GET", path.format("EUR-BTC"), signed=False)) == (400, "MARKET_NAME_REVERSED")


def test_the_client_gets_none_for_an_unknown_market(bittrex_client) -> None:
    assert bittrex_client.get_ticker("FOO-EUR") is None


def test_ticker_follows_set_price_with_a_spread(bittrex_sim: BittrexSimulator, bittrex_client) -> None:
    bittrex_sim.set_price("BTC-EUR", "30000")
    assert bittrex_client.get_ticker("BTC-EUR") == {"symbol": "BTC-EUR", "lastTradeRate": "30000.000",
                                                    "bidRate": "29985.000", "askRate": "30015.000"}
    bittrex_sim.advance(3600)
    assert bittrex_client.get_ticker("BTC-EUR")["lastTradeRate"] == "30000.000"  # a set price holds
    bittrex_sim.set_price("XRP-EUR", "0.512345")
    assert bittrex_client.get_ticker("XRP-EUR")["lastTradeRate"] == "0.51234"  # to the market's precision
    tickers = bittrex_client.get_tickers()
    assert [t["symbol"] for t in tickers] == [m.symbol for m in default_markets()]


def test_the_walk_moves_the_price_with_the_clock_and_the_seed(bittrex_sim: BittrexSimulator, bittrex_client) -> None:
    first = bittrex_client.get_ticker("ETH-EUR")["lastTradeRate"]
    assert first == "1800.00"  # the walk starts at the market's start price
    bittrex_sim.advance(6 * 3600)
    later = bittrex_client.get_ticker("ETH-EUR")["lastTradeRate"]
    assert later != first
    with BittrexSimulator() as same_seed, BittrexSimulator(seed=7) as other_seed:
        for sim in (same_seed, other_seed):
            sim.advance(6 * 3600)
        assert same_seed.price("ETH-EUR") == Decimal(later)
        assert other_seed.price("ETH-EUR") != Decimal(later)


def test_summaries_cover_the_last_24_hours(bittrex_sim: BittrexSimulator, bittrex_client) -> None:
    now = 1_700_002_800  # 2023-11-14T23:00:00Z
    bittrex_sim.set_time(now + 1800)
    rows = [(now - 3600 * (25 - i), 60 + i, 62 + i, 59 + i, 61 + i, 10) for i in range(26)]
    bittrex_sim.load_candles("LTC-EUR", rows, 3600)
    summary = bittrex_client.get_market_summary("LTC-EUR")
    # Hourly candles opening from 00:00 (i = 2) count; the one in progress (23:00, i = 25)
    # shows only its open, 85, and no volume.
    assert {k: summary[k] for k in ("high", "low", "volume", "percentChange")} == {
        "high": "86.000", "low": "61.000", "volume": "230.00000000", "percentChange": "37.10"}
    assert dec(summary["quoteVolume"]) > 0
    assert summary["updatedAt"] == "2023-11-14T23:30:00.000Z"
    assert {s["symbol"] for s in bittrex_client.get_market_summaries()} == {m.symbol for m in default_markets()}


# ------------------------------------------------------------------- candles

@pytest.mark.parametrize("interval, count", [(CandleInterval.MINUTE_1, 1440), (CandleInterval.MINUTE_5, 288),
                                             (CandleInterval.HOUR_1, 744), (CandleInterval.DAY_1, 366)])
def test_recent_candles_of_the_walk(bittrex_sim: BittrexSimulator, bittrex_client, interval: CandleInterval,
                                    count: int) -> None:
    seconds = {"MINUTE_1": 60, "MINUTE_5": 300, "HOUR_1": 3600, "DAY_1": 86400}[interval.value]
    candles = bittrex_client.get_recent_candles("BTC-EUR", interval)
    assert len(candles) == count
    last_start = int(START_TIME) // seconds * seconds
    assert candles[-1]["startsAt"] == time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(last_start))
    assert candles[-1]["close"] == bittrex_client.get_ticker("BTC-EUR")["lastTradeRate"]
    for before, after in pairwise(candles):
        assert after["open"] == before["close"]
    for c in candles:
        assert dec(c["high"]) >= max(dec(c["open"]), dec(c["close"])) >= min(dec(c["open"]), dec(c["close"])) \
            >= dec(c["low"]) > 0
        assert dec(c["volume"]) > 0 and dec(c["quoteVolume"]) > 0


def test_wider_candles_aggregate_narrower_ones(bittrex_client) -> None:
    minutes = bittrex_client.get_recent_candles("ETH-EUR", CandleInterval.MINUTE_1)
    fives = bittrex_client.get_recent_candles("ETH-EUR", CandleInterval.MINUTE_5)
    by_start = {c["startsAt"]: c for c in minutes}
    for five in fives[-20:-1]:
        start = time.mktime(time.strptime(five["startsAt"], "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
        parts = [by_start[time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(start + 60 * i))] for i in range(5)]
        assert five["open"] == parts[0]["open"] and five["close"] == parts[-1]["close"]
        assert five["high"] == max((p["high"] for p in parts), key=Decimal)
        assert five["low"] == min((p["low"] for p in parts), key=Decimal)
        assert dec(five["volume"]) == pytest.approx(sum(dec(p["volume"]) for p in parts), abs=Decimal("1e-7"))


def test_the_candle_in_progress_holds_no_future(bittrex_sim: BittrexSimulator, bittrex_client) -> None:
    first = bittrex_client.get_recent_candles("BTC-EUR", CandleInterval.HOUR_1)[-1]
    bittrex_sim.advance(60 * 20)
    later = bittrex_client.get_recent_candles("BTC-EUR", CandleInterval.HOUR_1)[-1]
    assert later["startsAt"] == first["startsAt"] and later["open"] == first["open"]
    assert dec(later["volume"]) > dec(first["volume"])


def test_candle_type_segment_and_bad_parts(bittrex_sim: BittrexSimulator) -> None:
    plain = call(bittrex_sim, "GET", "/v3/markets/BTC-EUR/candles/MINUTE_5/recent", signed=False).json()
    for kind in ("TRADE", "MIDPOINT"):
        typed = call(bittrex_sim, "GET", f"/v3/markets/BTC-EUR/candles/{kind}/MINUTE_5/recent", signed=False)
        assert typed.json() == plain
    assert bittrex_sim.calls[RECENT] == 3
    for path, parameter in (("/candles/ASK/MINUTE_5/recent", "candleType"), ("/candles/MINUTE_2/recent",
                                                                              "candleInterval")):
        response = call(bittrex_sim, "GET", "/v3/markets/BTC-EUR" + path, signed=False)
        assert error(response) == (400, "BAD_REQUEST")
        assert response.json()["data"] == {"invalidRequestParameter": parameter}


@pytest.mark.parametrize("interval, date, count, first, last", [
    (CandleInterval.MINUTE_1, (2023, 11, 2), 1440, "2023-11-02T00:00:00Z", "2023-11-02T23:59:00Z"),
    (CandleInterval.MINUTE_5, (2023, 11, 14), 267, "2023-11-14T00:00:00Z", "2023-11-14T22:10:00Z"),
    (CandleInterval.HOUR_1, (2023, 2, None), 672, "2023-02-01T00:00:00Z", "2023-02-28T23:00:00Z"),
    (CandleInterval.DAY_1, (2023, None, None), 318, "2023-01-01T00:00:00Z", "2023-11-14T00:00:00Z"),
    (CandleInterval.DAY_1, (2024, None, None), 0, None, None),
])
def test_historical_candles_cover_a_day_month_or_year_up_to_now(bittrex_client, interval, date, count, first,
                                                                last) -> None:
    candles = bittrex_client.get_historical_candles("ADA-EUR", interval, *date)
    assert len(candles) == count
    if count:
        assert (candles[0]["startsAt"], candles[-1]["startsAt"]) == (first, last)


@pytest.mark.parametrize("path, parameter", [
    ("MINUTE_1/historical/2023/11", "day"),
    ("HOUR_1/historical/2023/11/2", "day"),
    ("DAY_1/historical/2023/11", "month"),
    ("HOUR_1/historical/2023", "month"),
    ("HOUR_1/historical/2023/13", "month"),
    ("MINUTE_5/historical/2023/2/30", "day"),
    ("DAY_1/historical/twenty", "year"),
])
def test_historical_date_parts_are_checked(bittrex_sim: BittrexSimulator, path: str, parameter: str) -> None:
    response = call(bittrex_sim, "GET", "/v3/markets/BTC-EUR/candles/" + path, signed=False)
    assert error(response) == (400, "BAD_REQUEST")
    assert response.json()["data"] == {"invalidRequestParameter": parameter}


def test_loaded_real_candles_drive_prices_and_candles(bittrex_sim: BittrexSimulator, bittrex_client,
                                                      shared_data: Path) -> None:
    with open(shared_data / "bittrex_UNITTEST_BTC_1m.csv", newline="") as f:
        rows = list(csv.reader(f))[1:]
    bittrex_sim.add_market(MarketSpec("UNITTEST-BTC", 8, Decimal("1"), Decimal("0.0016")))
    bittrex_sim.load_candles("UNITTEST-BTC", rows, 60)
    ts = int(rows[5000][0])
    bittrex_sim.set_time(ts + 30)  # inside the candle of row 5000: only its open is known
    assert bittrex_client.get_ticker("UNITTEST-BTC")["lastTradeRate"] == eight(rows[5000][1])
    bittrex_sim.set_time(ts + 60)  # that candle has closed, the next one (row 5001) just opened
    assert bittrex_client.get_ticker("UNITTEST-BTC")["lastTradeRate"] == eight(rows[5001][1])

    minutes = bittrex_client.get_recent_candles("UNITTEST-BTC", CandleInterval.MINUTE_1)
    day_rows = [r for r in rows if ts + 60 - 86400 < int(r[0]) <= ts]
    assert len(minutes) == len(day_rows) + 1  # the real data has gaps: those minutes are left out
    assert minutes[-2] == {"startsAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts)),
                           **{k: eight(v) for k, v in zip(("open", "high", "low", "close", "volume"), rows[5000][1:],
                                                          strict=True)},
                           "quoteVolume": minutes[-2]["quoteVolume"]}
    hour = [r for r in rows if (ts - 3600) // 3600 * 3600 <= int(r[0]) < (ts - 3600) // 3600 * 3600 + 3600]
    hours = bittrex_client.get_recent_candles("UNITTEST-BTC", CandleInterval.HOUR_1)
    previous_hour = hours[-2]
    assert (previous_hour["open"], previous_hour["close"]) == (eight(hour[0][1]), eight(hour[-1][4]))
    assert previous_hour["high"] == eight(max((r[2] for r in hour), key=Decimal))
    assert dec(previous_hour["volume"]) == sum(dec(r[5]) for r in hour).quantize(Decimal("1e-8"))


# ------------------------------------------------------------------ balances

def test_balances_one_by_one(bittrex_sim: BittrexSimulator, bittrex_client) -> None:
    assert bittrex_client.get_balance("BTC")["total"] == "0.05000000"
    assert bittrex_client.get_balance("ADA") == {"currencySymbol": "ADA", "total": "0.00000000",
                                                 "available": "0.00000000", "updatedAt": "1970-01-01T00:00:00.000Z"}
    assert error(call(bittrex_sim, "GET", "/v3/balances/XYZ")) == (404, "CURRENCY_DOES_NOT_EXIST")


# -------------------------------------------------------------------- orders

def place(client, market: str = "BTC-EUR", direction: OrderDirection = OrderDirection.BUY,
          kind: OrderType = OrderType.MARKET, tif: TimeInForce = TimeInForce.IMMEDIATE_OR_CANCEL, **fields) -> dict:
    return client.post_order(client.create_new_order_dict(market, direction, kind, tif, **fields))


def test_market_buy_fills_at_the_ask_with_commission_in_quote(bittrex_sim: BittrexSimulator, bittrex_client) -> None:
    bittrex_sim.set_price("BTC-EUR", "30000")
    client_id = str(uuid.uuid4())
    order = place(bittrex_client, quantity=0.001, client_order_id=client_id)
    assert {k: order[k] for k in ("marketSymbol", "direction", "type", "quantity", "timeInForce", "clientOrderId",
                                  "fillQuantity", "proceeds", "commission", "status", "closedAt")} == {
        "marketSymbol": "BTC-EUR", "direction": "BUY", "type": "MARKET", "quantity": "0.00100000",
        "timeInForce": "IMMEDIATE_OR_CANCEL", "clientOrderId": client_id, "fillQuantity": "0.00100000",
        "proceeds": "30.01500000", "commission": "0.07503750", "status": "CLOSED",
        "closedAt": "2023-11-14T22:13:20.000Z"}
    assert uuid.UUID(order["id"]).version == 4
    assert bittrex_sim.balances(BITTREX_KEY) == {"EUR": Decimal("969.9099625"), "BTC": Decimal("0.051"),
                                                 "ETH": Decimal("2")}
    assert bittrex_client.get_balance("EUR")["available"] == "969.90996250"
    assert bittrex_client.get_order_by_id(order["id"]) == order
    executions = call(bittrex_sim, "GET", f"/v3/orders/{order['id']}/executions").json()
    assert [(e["quantity"], e["rate"], e["commission"], e["isTaker"], e["orderId"]) for e in executions] == [
        ("0.00100000", "30015.000", "0.07503750", True, order["id"])]


def test_market_sell_fill_or_kill_fills_at_the_bid(bittrex_sim: BittrexSimulator, bittrex_client) -> None:
    bittrex_sim.set_price("BTC-EUR", "30000")
    order = place(bittrex_client, direction=OrderDirection.SELL, tif=TimeInForce.FILL_OR_KILL, quantity=0.01)
    assert (order["proceeds"], order["commission"], order["status"]) == ("299.85000000", "0.74962500", "CLOSED")
    assert bittrex_sim.balances(BITTREX_KEY)["EUR"] == Decimal("1299.100375")
    assert bittrex_sim.balances(BITTREX_KEY)["BTC"] == Decimal("0.04")


def test_ceiling_market_buy_spends_at_most_the_ceiling(bittrex_sim: BittrexSimulator, bittrex_client) -> None:
    bittrex_sim.set_price("BTC-EUR", "30000")
    order = place(bittrex_client, kind=OrderType.CEILING_MARKET, ceiling=50)
    assert order["ceiling"] == "50.00000000" and "quantity" not in order
    spent = dec(order["proceeds"]) + dec(order["commission"])
    assert Decimal("49.99") < spent <= 50
    assert dec(order["fillQuantity"]) == (Decimal(50) / (Decimal("30015") * Decimal("1.0025"))).quantize(
        Decimal("1e-8"), rounding="ROUND_DOWN")
    assert bittrex_sim.balances(BITTREX_KEY)["EUR"] == 1000 - spent


def test_ceiling_limit_fills_only_within_its_limit(bittrex_sim: BittrexSimulator, bittrex_client) -> None:
    bittrex_sim.set_price("BTC-EUR", "30000")
    within = place(bittrex_client, kind=OrderType.CEILING_LIMIT, ceiling=50, limit=30100)
    beyond = place(bittrex_client, kind=OrderType.CEILING_LIMIT, ceiling=50, limit=29000)
    assert (within["status"], within["limit"], dec(within["fillQuantity"]) > 0) == ("CLOSED", "30100.000", True)
    assert (beyond["status"], beyond["fillQuantity"]) == ("CLOSED", "0.00000000")
    spent = dec(within["proceeds"]) + dec(within["commission"])
    assert bittrex_sim.balances(BITTREX_KEY)["EUR"] == 1000 - spent


def test_limit_order_rests_holds_funds_then_fills_at_its_limit(bittrex_sim: BittrexSimulator,
                                                               bittrex_client) -> None:
    bittrex_sim.set_price("BTC-EUR", "30000")
    order = place(bittrex_client, kind=OrderType.LIMIT, tif=TimeInForce.GOOD_TIL_CANCELLED, quantity=0.001,
                  limit=29000)
    assert (order["status"], order["fillQuantity"], order["limit"]) == ("OPEN", "0.00000000", "29000.000")
    eur = bittrex_client.get_balance("EUR")
    assert (eur["total"], eur["available"]) == ("1000.00000000", "970.92750000")  # 29 EUR + 0.25 %
    assert [o["id"] for o in bittrex_client.get_open_orders("BTC-EUR")] == [order["id"]]
    assert bittrex_client.get_open_orders("ETH-EUR") == []
    bittrex_sim.set_price("BTC-EUR", "29010")  # ask 29024.505: still above the limit
    assert bittrex_client.get_order_by_id(order["id"])["status"] == "OPEN"
    bittrex_sim.advance(60)
    bittrex_sim.set_price("BTC-EUR", "28980")  # ask 28994.490: crosses
    filled = bittrex_client.get_order_by_id(order["id"])
    assert (filled["status"], filled["fillQuantity"], filled["proceeds"], filled["commission"]) == (
        "CLOSED", "0.00100000", "29.00000000", "0.07250000")
    assert filled["closedAt"] == "2023-11-14T22:14:20.000Z"
    eur = bittrex_client.get_balance("EUR")
    assert (eur["total"], eur["available"]) == ("970.92750000", "970.92750000")
    assert call(bittrex_sim, "GET", f"/v3/orders/{order['id']}/executions").json()[0]["isTaker"] is False
    assert bittrex_client.get_open_orders() == []


def test_a_crossing_limit_order_fills_at_once_at_the_better_price(bittrex_sim: BittrexSimulator,
                                                                  bittrex_client) -> None:
    bittrex_sim.set_price("BTC-EUR", "30000")
    order = place(bittrex_client, kind=OrderType.LIMIT, tif=TimeInForce.GOOD_TIL_CANCELLED, quantity=0.001,
                  limit=31000)
    assert (order["status"], order["proceeds"]) == ("CLOSED", "30.01500000")
    assert bittrex_client.get_balance("EUR")["available"] == "969.90996250"


def test_immediate_limit_order_that_cannot_fill_closes_empty(bittrex_sim: BittrexSimulator, bittrex_client) -> None:
    bittrex_sim.set_price("BTC-EUR", "30000")
    order = place(bittrex_client, kind=OrderType.LIMIT, quantity=0.001, limit=29000)
    assert (order["status"], order["fillQuantity"]) == ("CLOSED", "0.00000000")
    assert bittrex_sim.balances(BITTREX_KEY)["EUR"] == 1000


def test_cancel_releases_the_hold_and_cannot_happen_twice(bittrex_sim: BittrexSimulator, bittrex_client) -> None:
    bittrex_sim.set_price("BTC-EUR", "30000")
    order = place(bittrex_client, direction=OrderDirection.SELL, kind=OrderType.LIMIT,
                  tif=TimeInForce.GOOD_TIL_CANCELLED, quantity=0.02, limit=35000)
    assert bittrex_client.get_balance("BTC")["available"] == "0.03000000"
    bittrex_sim.advance(30)
    cancelled = bittrex_client.cancel_order(order["id"])
    assert (cancelled["status"], cancelled["fillQuantity"], cancelled["closedAt"]) == (
        "CLOSED", "0.00000000", "2023-11-14T22:13:50.000Z")
    assert bittrex_client.get_balance("BTC")["available"] == "0.05000000"
    assert error(call(bittrex_sim, "DELETE", f"/v3/orders/{order['id']}")) == (409, "ORDER_NOT_OPEN")
    assert bittrex_client.get_order_by_id(order["id"])["status"] == "CLOSED"
    assert [o["id"] for o in bittrex_client.get_closed_orders()] == [order["id"]]


def test_cancelled_orders_without_fills_may_vanish() -> None:
    with BittrexSimulator(forget_unfilled_cancels=True) as sim:
        sim.add_account(BITTREX_KEY, BITTREX_SECRET, {"EUR": "100"})
        client = bittrex_v3(sim, tries=1)
        order = place(client, kind=OrderType.LIMIT, tif=TimeInForce.GOOD_TIL_CANCELLED, quantity=0.001, limit=20000)
        assert client.cancel_order(order["id"])["status"] == "CLOSED"
        assert error(call(sim, "GET", f"/v3/orders/{order['id']}")) == (404, "ORDER_DOES_NOT_EXIST")
        assert client.get_closed_orders() == []
        assert client.get_balance("EUR")["available"] == "100.00000000"


def test_orders_of_others_and_unknown_ids_do_not_exist(bittrex_sim: BittrexSimulator, bittrex_client) -> None:
    bittrex_sim.add_account("other", "other-secret", {"EUR": "100"})
    theirs = place(bittrex_v3(bittrex_sim, "other", "other-secret"), quantity=0.001)
    assert theirs["status"] == "CLOSED"
    for order_id in (theirs["id"], str(uuid.uuid4())):
        assert error(call(bittrex_sim, "GET", f"/v3/orders/{order_id}")) == (404, "ORDER_DOES_NOT_EXIST")
        assert error(call(bittrex_sim, "DELETE", f"/v3/orders/{order_id}")) == (404, "ORDER_DOES_NOT_EXIST")
        assert error(call(bittrex_sim, "GET", f"/v3/orders/{order_id}/executions")) == (404, "ORDER_DOES_NOT_EXIST")
    assert bittrex_client.get_closed_orders() == []


@pytest.mark.parametrize("fields, status, code, parameter", [
    (dict(tif="GOOD_TIL_CANCELLED", quantity="0.001"), 400, "INVALID_MARKET_ORDER", None),
    (dict(kind="CEILING_MARKET", tif="GOOD_TIL_CANCELLED", ceiling="50"), 400, "INVALID_ORDER_TYPE", None),
    (dict(kind="LIMIT", tif="BUY_NOW", quantity="0.001", limit="30000"), 400, "INVALID_ORDER_TYPE", None),
    (dict(kind="LIMIT", tif="GOOD_TIL_CANCELLED", quantity="0.001"), 400, "BAD_REQUEST", "limit"),
    (dict(quantity="0.001", limit="30000"), 400, "BAD_REQUEST", "limit"),
    (dict(), 400, "BAD_REQUEST", "quantity"),
    (dict(kind="CEILING_MARKET", ceiling="50", quantity="0.001"), 400, "BAD_REQUEST", "quantity"),
    (dict(direction="HOLD", quantity="0.001"), 400, "BAD_REQUEST", "direction"),
    (dict(kind="STOP", quantity="0.001"), 400, "BAD_REQUEST", "type"),
    (dict(quantity="-0.001"), 400, "BAD_REQUEST", "quantity"),
    (dict(quantity="lots"), 400, "BAD_REQUEST", "quantity"),
    (dict(quantity=True), 400, "BAD_REQUEST", "quantity"),
    (dict(quantity="0.000123456"), 400, "BAD_REQUEST", "quantity"),
    (dict(quantity="0.001", clientOrderId="not-a-uuid"), 400, "BAD_REQUEST", "clientOrderId"),
    (dict(market="EUR-BTC", quantity="0.001"), 400, "MARKET_NAME_REVERSED", None),
    (dict(market="FOO-EUR", quantity="0.001"), 404, "MARKET_DOES_NOT_EXIST", None),
    (dict(kind="LIMIT", tif="GOOD_TIL_CANCELLED", quantity="0.001", limit="29000.1234"), 400,
     "RATE_PRECISION_NOT_ALLOWED", None),
    (dict(quantity="0.00009"), 409, "MIN_TRADE_REQUIREMENT_NOT_MET", None),
    (dict(kind="CEILING_MARKET", ceiling="2"), 409, "MIN_TRADE_REQUIREMENT_NOT_MET", None),
    (dict(quantity="1"), 409, "INSUFFICIENT_FUNDS", None),
    (dict(direction="SELL", quantity="0.06"), 409, "INSUFFICIENT_FUNDS", None),
    (dict(kind="LIMIT", tif="GOOD_TIL_CANCELLED", quantity="0.04", limit="29000"), 409, "INSUFFICIENT_FUNDS", None),
    (dict(kind="LIMIT", tif="POST_ONLY_GOOD_TIL_CANCELLED", quantity="0.001", limit="31000"), 409, "POST_ONLY",
     None),
    (dict(kind="LIMIT", tif="FILL_OR_KILL", quantity="0.001", limit="29000"), 409, "FILL_OR_KILL", None),
])
def test_order_rules(bittrex_sim: BittrexSimulator, fields: dict, status: int, code: str,
                     parameter: str | None) -> None:
    bittrex_sim.set_price("BTC-EUR", "30000")
    body = new_order(**{k: v for k, v in fields.items() if k in ("market", "direction", "kind", "tif")},
                     **{k: v for k, v in fields.items() if k not in ("market", "direction", "kind", "tif")})
    response = call(bittrex_sim, "POST", "/v3/orders", body)
    assert error(response) == (status, code)
    if parameter:
        assert response.json()["data"] == {"invalidRequestParameter": parameter}
    assert bittrex_sim.orders(BITTREX_KEY) == []
    assert bittrex_sim.balances(BITTREX_KEY) == {"EUR": 1000, "BTC": Decimal("0.05"), "ETH": 2}


def test_a_body_that_is_not_json_is_a_bad_request(bittrex_sim: BittrexSimulator) -> None:
    assert error(call(bittrex_sim, "POST", "/v3/orders", b"quantity=1")) == (400, "BAD_REQUEST")
    assert error(call(bittrex_sim, "POST", "/v3/orders", b"[1, 2]")) == (400, "BAD_REQUEST")


def test_dust_trades_are_refused_in_btc_markets(bittrex_sim: BittrexSimulator) -> None:
    bittrex_sim.set_price("ETH-BTC", "0.01")  # 0.005 ETH is then worth 0.00005 BTC
    assert error(call(bittrex_sim, "POST", "/v3/orders", new_order("ETH-BTC", quantity="0.005"))) == (
        409, "DUST_TRADE_DISALLOWED_MIN_VALUE")
    bittrex_sim.set_price("ETH-BTC", "0.06")
    assert call(bittrex_sim, "POST", "/v3/orders", new_order("ETH-BTC", quantity="0.005")).status_code == 201


def test_amounts_may_be_json_numbers_or_strings(bittrex_sim: BittrexSimulator) -> None:
    bittrex_sim.set_price("BTC-EUR", "30000")
    as_number = call(bittrex_sim, "POST", "/v3/orders", b'{"marketSymbol": "BTC-EUR", "direction": "BUY", '
                     b'"type": "LIMIT", "timeInForce": "GOOD_TIL_CANCELLED", "quantity": 0.0003, "limit": 2e4}')
    as_string = call(bittrex_sim, "POST", "/v3/orders", new_order(kind="LIMIT", tif="GOOD_TIL_CANCELLED",
                                                                  quantity="0.0003", limit="20000"))
    for response in (as_number, as_string):
        assert response.status_code == 201
        assert (response.json()["quantity"], response.json()["limit"]) == ("0.00030000", "20000.000")
    assert bittrex_sim.balances(BITTREX_KEY)["EUR"] == 1000


def test_client_order_ids_are_unique_for_24_hours(bittrex_sim: BittrexSimulator, bittrex_client) -> None:
    client_id = str(uuid.uuid4())
    first = call(bittrex_sim, "POST", "/v3/orders", new_order(quantity="0.001", clientOrderId=client_id))
    assert first.status_code == 201
    again = call(bittrex_sim, "POST", "/v3/orders", new_order(quantity="0.002", clientOrderId=client_id))
    assert error(again) == (409, "CLIENTORDERID_ALREADY_EXISTS")
    assert again.json()["data"] == {"existingOrderId": first.json()["id"]}
    assert place(bittrex_client, quantity=0.001, client_order_id=client_id) is None
    bittrex_sim.add_account("other", "other-secret", {"EUR": "100"})
    assert call(bittrex_sim, "POST", "/v3/orders", new_order(quantity="0.001", clientOrderId=client_id),
                key="other", secret="other-secret").status_code == 201  # ids are per account
    bittrex_sim.advance(24 * 3600 + 1)
    assert place(bittrex_client, quantity=0.001, client_order_id=client_id)["clientOrderId"] == client_id


# ---------------------------------------------------------------- pagination

def test_closed_orders_newest_closed_first_with_page_tokens(bittrex_sim: BittrexSimulator, bittrex_client) -> None:
    bittrex_sim.set_price("BTC-EUR", "30000")
    resting = place(bittrex_client, kind=OrderType.LIMIT, tif=TimeInForce.GOOD_TIL_CANCELLED, quantity=0.001,
                    limit=29500)
    market = []
    for _ in range(6):
        bittrex_sim.advance(60)
        market.append(place(bittrex_client, quantity=0.0001)["id"])
    bittrex_sim.advance(60)
    bittrex_sim.set_price("BTC-EUR", "29000")  # the oldest order closes last
    newest_first = [resting["id"]] + market[::-1]

    pages = [bittrex_client.get_closed_orders(page_size=3)]
    while pages[-1]:
        pages.append(bittrex_client.get_closed_orders(next_page_token=pages[-1][-1]["id"], page_size=3))
    assert [[o["id"] for o in page] for page in pages] == [newest_first[0:3], newest_first[3:6],
                                                           newest_first[6:7], []]
    back = bittrex_client.get_closed_orders(previous_page_token=pages[1][0]["id"], page_size=3)
    assert [o["id"] for o in back] == newest_first[0:3]
    back = bittrex_client.get_closed_orders(previous_page_token=pages[1][1]["id"], page_size=3)
    assert [o["id"] for o in back] == newest_first[1:4]
    assert [o["id"] for o in bittrex_client.get_closed_orders()] == newest_first

    # closedAt of market[i] is START_TIME + 60 (i + 1): 22:14:20 ... 22:19:20.
    window = bittrex_client.get_closed_orders(start_date="2023-11-14T22:15:20Z", end_date="2023-11-14T22:17:20Z")
    assert [o["id"] for o in window] == market[3:0:-1]
    assert bittrex_client.get_closed_orders(market="ETH-EUR") == []


@pytest.mark.parametrize("query, code, parameter", [
    ("pageSize=0", "BAD_REQUEST", "pageSize"),
    ("pageSize=201", "BAD_REQUEST", "pageSize"),
    ("pageSize=ten", "BAD_REQUEST", "pageSize"),
    (f"nextPageToken={uuid.UUID(int=1)}", "INVALID_NEXT_PAGE_TOKEN", None),
    (f"previousPageToken={uuid.UUID(int=1)}", "INVALID_PREVIOUS_PAGE_TOKEN", None),
    ("nextPageToken=a&previousPageToken=b", "BAD_REQUEST", "previousPageToken"),
    ("startDate=2023-11-14T10:00:00Z&endDate=2023-11-14T09:00:00Z", "BAD_REQUEST", "endDate"),
    ("startDate=yesterday", "BAD_REQUEST", "startDate"),
])
def test_closed_orders_bad_queries(bittrex_sim: BittrexSimulator, query: str, code: str,
                                   parameter: str | None) -> None:
    response = call(bittrex_sim, "GET", "/v3/orders/closed?" + query)
    assert error(response) == (400, code)
    if parameter:
        assert response.json()["data"] == {"invalidRequestParameter": parameter}


# -------------------------------------------------------------------- faults

def test_http_500_is_an_html_page_and_the_client_retries(bittrex_sim: BittrexSimulator, bittrex_client) -> None:
    bittrex_sim.inject("GET /v3/markets/{marketSymbol}/ticker", "http_500", times=2)
    ticker = "GET /v3/markets/{marketSymbol}/ticker"
    assert bittrex_client.get_ticker("BTC-EUR")["symbol"] == "BTC-EUR"  # third try of three
    assert bittrex_sim.calls[ticker] == 3
    for status in (500, 520):  # Cloudflare's pages, as in front of Bittrex
        bittrex_sim.inject("*", f"http_{status}")
        page = call(bittrex_sim, "GET", "/v3/markets/BTC-EUR/ticker", signed=False)
        assert page.status_code == status and page.headers["Content-Type"].startswith("text/html")
        assert "<html" in page.text


@pytest.mark.parametrize("fault, status, code", [("http_503", 503, "SERVICE_UNAVAILABLE"),
                                                 ("throttled", 429, "THROTTLED")])
def test_json_error_faults(bittrex_sim: BittrexSimulator, fault: str, status: int, code: str) -> None:
    bittrex_sim.inject("GET", fault)
    assert error(call(bittrex_sim, "GET", "/v3/balances")) == (status, code)
    assert call(bittrex_sim, "GET", "/v3/balances").status_code == 200


def test_malformed_json_fails_the_client_without_an_exception(bittrex_sim: BittrexSimulator) -> None:
    bittrex_sim.inject("/v3/ping", "malformed_json")
    response = call(bittrex_sim, "GET", "/v3/ping", signed=False)
    assert response.status_code == 200
    with pytest.raises(ValueError):
        response.json()
    bittrex_sim.inject("/v3/ping", "malformed_json")
    assert bittrex_v3(bittrex_sim, tries=1).ping() is None


def test_faults_can_target_one_path_and_last_until_cleared(bittrex_sim: BittrexSimulator) -> None:
    bittrex_sim.inject("/v3/markets/ETH-EUR/ticker", "http_503", times=None)
    for _ in range(3):
        assert call(bittrex_sim, "GET", "/v3/markets/ETH-EUR/ticker", signed=False).status_code == 503
        assert call(bittrex_sim, "GET", "/v3/markets/BTC-EUR/ticker", signed=False).status_code == 200
    bittrex_sim.clear_faults()
    assert call(bittrex_sim, "GET", "/v3/markets/ETH-EUR/ticker", signed=False).status_code == 200
    with pytest.raises(ValueError):
        bittrex_sim.inject("*", "meteor")


def test_delay_outlasts_a_client_timeout(bittrex_sim: BittrexSimulator) -> None:
    bittrex_sim.inject("GET /v3/ping", "delay", seconds=30)
    with pytest.raises(requests.exceptions.ReadTimeout):
        requests.get(bittrex_sim.url + "/v3/ping", timeout=0.2)
    assert requests.get(bittrex_sim.url + "/v3/ping", timeout=10).json() == {"serverTime": int(START_TIME) * 1000}


def test_a_lost_reply_still_places_the_order_and_retries_hit_the_client_id(bittrex_sim: BittrexSimulator,
                                                                           bittrex_client) -> None:
    """bittrex-api re-POSTs a failed order: the clientOrderId is what stops a duplicate."""
    bittrex_sim.set_price("BTC-EUR", "30000")
    bittrex_sim.inject("POST /v3/orders", "lost_reply")
    client_id = str(uuid.uuid4())
    assert place(bittrex_client, quantity=0.001, client_order_id=client_id) is None
    assert bittrex_sim.calls["POST /v3/orders"] == 3  # lost, then refused twice as a duplicate
    [order] = bittrex_sim.orders(BITTREX_KEY)
    assert order["clientOrderId"] == client_id and order["status"] == "CLOSED"
    assert bittrex_sim.balances(BITTREX_KEY)["BTC"] == Decimal("0.051")
    found = [o for o in bittrex_client.get_closed_orders() if o["clientOrderId"] == client_id]
    assert [o["id"] for o in found] == [order["id"]]


def test_a_held_reply_times_out_after_the_order_is_placed(bittrex_sim: BittrexSimulator) -> None:
    bittrex_sim.inject("POST /v3/orders", "lost_reply", seconds=30)
    url = bittrex_sim.url + "/v3/orders"
    body = json.dumps(new_order(quantity="0.001")).encode()
    with pytest.raises(requests.exceptions.ReadTimeout):
        requests.post(url, data=body, headers=signed_headers(BITTREX_KEY, BITTREX_SECRET, "POST", url, body),
                      timeout=0.3)
    assert [o["fillQuantity"] for o in bittrex_sim.orders(BITTREX_KEY)] == ["0.00100000"]


def test_partial_fills(bittrex_sim: BittrexSimulator, bittrex_client) -> None:
    bittrex_sim.set_price("BTC-EUR", "30000")
    bittrex_sim.inject("POST /v3/orders", "partial_fill")
    market = place(bittrex_client, quantity=0.001)
    assert (market["status"], market["fillQuantity"], market["quantity"]) == ("CLOSED", "0.00050000", "0.00100000")

    bittrex_sim.inject("POST /v3/orders", "partial_fill")
    limit = place(bittrex_client, kind=OrderType.LIMIT, tif=TimeInForce.GOOD_TIL_CANCELLED, quantity=0.001,
                  limit=30100)
    assert (limit["status"], limit["fillQuantity"]) == ("OPEN", "0.00050000")
    bittrex_sim.advance(60)  # still crossing: the rest fills at the limit
    rest = bittrex_client.get_order_by_id(limit["id"])
    assert (rest["status"], rest["fillQuantity"], rest["proceeds"]) == ("CLOSED", "0.00100000", "30.05750000")

    bittrex_sim.inject("POST /v3/orders", "partial_fill")
    refused = call(bittrex_sim, "POST", "/v3/orders", new_order(tif="FILL_OR_KILL", quantity="0.001"))
    assert error(refused) == (409, "FILL_OR_KILL")


def test_a_partial_fill_waits_for_an_order_and_can_lose_its_reply(bittrex_sim: BittrexSimulator) -> None:
    """partial_fill shapes the next order placed, whatever else meets its POST: other calls
    leave it alone, and the same POST can also lose its reply."""
    bittrex_sim.set_price("BTC-EUR", "30000")
    bittrex_sim.inject("*", "partial_fill")
    bittrex_sim.inject("POST /orders", "lost_reply")
    assert call(bittrex_sim, "GET", "/v3/balances").status_code == 200
    with pytest.raises(requests.exceptions.ConnectionError):
        post(bittrex_sim, quantity="0.001")
    [order] = bittrex_sim.account_orders(BITTREX_KEY)
    assert (order.status, order.fill_quantity, order.quantity) == ("CLOSED", Decimal("0.0005"), Decimal("0.001"))
    assert post(bittrex_sim, quantity="0.001").json()["fillQuantity"] == "0.00100000"


def test_rate_limit_per_minute() -> None:
    with BittrexSimulator(rate_limit=3) as sim:
        statuses = [requests.get(sim.url + "/v3/ping", timeout=10) for _ in range(7)]
    # However the minute turns during the seven calls, one minute gets four of them.
    assert [r.status_code for r in statuses[:3]] == [200, 200, 200]
    assert (429, "THROTTLED") in [error(r) for r in statuses if r.status_code != 200]


def test_calls_count_requests_by_route(bittrex_sim: BittrexSimulator, bittrex_client) -> None:
    bittrex_client.get_ticker("BTC-EUR")
    bittrex_client.get_ticker("ETH-EUR")
    bittrex_client.get_recent_candles("BTC-EUR", CandleInterval.MINUTE_5)
    bittrex_client.get_open_orders()
    assert bittrex_sim.calls == Counter({"GET /v3/markets/{marketSymbol}/ticker": 2, RECENT: 1,
                                         "GET /v3/orders/open": 1})


def test_unknown_routes_are_not_found(bittrex_sim: BittrexSimulator) -> None:
    assert error(call(bittrex_sim, "GET", "/v3/currencies", signed=False)) == (404, "NOT_FOUND")
    assert error(call(bittrex_sim, "POST", "/v3/balances")) == (404, "NOT_FOUND")


# ----------------------------------------------------------------------- CLI

def test_runnable_by_hand() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    process = subprocess.Popen([sys.executable, "-m", "simulators.bittrex", "--port", str(port)],
                               cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        ready, _, _ = select.select([process.stdout], [], [], 20)
        assert ready, "the simulator printed nothing in 20 s"
        assert f"http://127.0.0.1:{port}/v3" in process.stdout.readline()
        url = f"http://127.0.0.1:{port}/v3/balances"
        response = requests.get(url, headers=signed_headers("simulator-key", "simulator-secret", "GET", url),
                                timeout=10)
        assert {b["currencySymbol"]: b["total"] for b in response.json()} == {"EUR": "1000.00000000",
                                                                             "BTC": "0.01000000"}
        server_time = requests.get(f"http://127.0.0.1:{port}/v3/ping", timeout=10).json()["serverTime"]
        assert abs(server_time / 1000 - time.time()) < 60  # by hand, the clock follows real time
    finally:
        process.terminate()
        process.wait(10)


# ---------------------------------------------------------- order lifecycles
# set_price("BTC-EUR", P) gives bid P - P/2000 and ask P + P/2000; commission 0.25 % in quote.

def post(sim: BittrexSimulator, **fields: object) -> requests.Response:
    return call(sim, "POST", "/v3/orders", new_order(**fields))


def lookup(sim: BittrexSimulator, order_id: str) -> dict:
    """One lookup unit: GET /orders/{id}, which must answer."""
    response = call(sim, "GET", f"/v3/orders/{order_id}")
    assert response.status_code == 200, response.text
    return response.json()


def shown(order: dict) -> tuple[str, str, str]:
    return order["status"], order["fillQuantity"], order["proceeds"]


def eur(sim: BittrexSimulator, currency: str = "EUR") -> tuple[str, str]:
    balance = call(sim, "GET", f"/v3/balances/{currency}").json()
    return balance["total"], balance["available"]


def test_lifecycle_by_lookups_partial_then_closed(bittrex_sim: BittrexSimulator) -> None:
    bittrex_sim.set_price("BTC-EUR", "30000")
    bittrex_sim.inject("POST /orders", "lifecycle", pending=1, open=2, fill="0.25")
    placed = post(bittrex_sim, quantity="0.004")
    assert placed.status_code == 201
    order = placed.json()
    assert shown(order) == ("OPEN", "0.00000000", "0.00000000") and "closedAt" not in order
    assert eur(bittrex_sim) == ("1000.00000000", "879.63985000")  # 0.004 at the ask 30015, + 0.25 %, held
    assert shown(lookup(bittrex_sim, order["id"])) == ("OPEN", "0.00000000", "0.00000000")  # unit 1: pending
    bittrex_sim.set_price("BTC-EUR", "31000")  # ask 31015.5
    assert [shown(o) for o in call(bittrex_sim, "GET", "/v3/orders/open").json()] == [  # unit 2: 1/4 fills
        ("OPEN", "0.00100000", "31.01550000")]
    bittrex_sim.set_price("BTC-EUR", "32000")  # ask 32016
    assert call(bittrex_sim, "GET", "/v3/orders/closed").json() == []  # unit 3: still open
    closed = lookup(bittrex_sim, order["id"])  # unit 4: the rest fills at the ask of now
    assert shown(closed) == ("CLOSED", "0.00400000", "127.06350000")
    assert (closed["commission"], closed["closedAt"]) == ("0.31765875", "2023-11-14T22:13:20.000Z")
    total = Decimal(1000) - Decimal("127.0635") - Decimal("0.31765875")
    assert eur(bittrex_sim) == (f"{total:.8f}", f"{total:.8f}")  # the hold is gone
    assert bittrex_sim.balances(BITTREX_KEY)["BTC"] == Decimal("0.054")
    assert [(e["quantity"], e["rate"]) for e in call(bittrex_sim, "GET", f"/v3/orders/{order['id']}/executions")
            .json()] == [("0.00100000", "31015.500"), ("0.00300000", "32016.000")]


def test_lookups_are_counted_per_account(bittrex_sim: BittrexSimulator) -> None:
    bittrex_sim.add_account("other", "other-secret", {"EUR": "100"})
    bittrex_sim.inject("POST /v3/orders", "lifecycle", pending=1)
    order = post(bittrex_sim, quantity="0.001").json()
    for _ in range(3):  # the other account's lookups move nothing of ours
        assert call(bittrex_sim, "GET", "/v3/orders/open", key="other", secret="other-secret").json() == []
    assert call(bittrex_sim, "GET", f"/v3/orders/{order['id']}/executions").json() == []  # not a lookup
    assert call(bittrex_sim, "GET", "/v3/balances").status_code == 200  # nor this
    assert lookup(bittrex_sim, order["id"])["status"] == "OPEN"
    assert lookup(bittrex_sim, order["id"])["status"] == "CLOSED"


def test_lifecycle_partial_then_canceled(bittrex_sim: BittrexSimulator) -> None:
    bittrex_sim.set_price("BTC-EUR", "30000")
    bittrex_sim.inject("POST /v3/orders", "lifecycle", open=1, fill=Decimal("0.5"), end="canceled")
    order = post(bittrex_sim, direction="SELL", quantity="0.02").json()
    assert eur(bittrex_sim, "BTC") == ("0.05000000", "0.03000000")
    bittrex_sim.advance(30)
    assert shown(lookup(bittrex_sim, order["id"])) == ("OPEN", "0.01000000", "299.85000000")  # at the bid
    assert eur(bittrex_sim, "BTC") == ("0.04000000", "0.03000000")
    bittrex_sim.advance(30)
    final = lookup(bittrex_sim, order["id"])
    assert shown(final) == ("CLOSED", "0.01000000", "299.85000000")
    assert (final["quantity"], final["closedAt"]) == ("0.02000000", "2023-11-14T22:14:20.000Z")
    assert eur(bittrex_sim, "BTC") == ("0.04000000", "0.04000000")
    assert [o["id"] for o in call(bittrex_sim, "GET", "/v3/orders/closed").json()] == [order["id"]]


def test_a_lifecycle_canceled_without_fills_stays_visible(bittrex_sim: BittrexSimulator) -> None:
    bittrex_sim.inject("POST /v3/orders", "lifecycle", end="canceled")
    order = post(bittrex_sim, quantity="0.001").json()
    assert [shown(o) for o in call(bittrex_sim, "GET", "/v3/orders/closed").json()] == [
        ("CLOSED", "0.00000000", "0.00000000")]
    assert lookup(bittrex_sim, order["id"])["closedAt"] == "2023-11-14T22:13:20.000Z"
    assert bittrex_sim.balances(BITTREX_KEY) == {"EUR": 1000, "BTC": Decimal("0.05"), "ETH": 2}


def test_lifecycle_by_seconds_of_the_simulated_clock(bittrex_sim: BittrexSimulator) -> None:
    bittrex_sim.set_price("BTC-EUR", "30000")
    bittrex_sim.inject("POST /v3/orders", "lifecycle", pending=10, open=20, fill="0.5", unit="seconds")
    order = post(bittrex_sim, quantity="0.002").json()
    for _ in range(3):  # lookups do not count
        assert shown(lookup(bittrex_sim, order["id"])) == ("OPEN", "0.00000000", "0.00000000")
    bittrex_sim.advance(10)
    assert lookup(bittrex_sim, order["id"])["fillQuantity"] == "0.00000000"  # 10 s: still pending
    bittrex_sim.set_price("BTC-EUR", "31000")
    bittrex_sim.advance(1)
    assert shown(lookup(bittrex_sim, order["id"])) == ("OPEN", "0.00100000", "31.01550000")
    bittrex_sim.advance(19)
    assert lookup(bittrex_sim, order["id"])["status"] == "OPEN"  # 30 s: the open stage's last second
    bittrex_sim.advance(0.5)
    final = lookup(bittrex_sim, order["id"])
    assert shown(final) == ("CLOSED", "0.00200000", "62.03100000")
    assert final["closedAt"] == "2023-11-14T22:13:50.500Z"


def test_a_hidden_order_lags_but_its_client_order_id_is_taken(bittrex_sim: BittrexSimulator, bittrex_client) -> None:
    bittrex_sim.inject("POST /v3/orders", "lifecycle", pending=10, hidden=2)
    client_id = str(uuid.uuid4())
    placed = post(bittrex_sim, quantity="0.001", clientOrderId=client_id)
    assert placed.status_code == 201
    order_id = placed.json()["id"]
    assert error(call(bittrex_sim, "GET", f"/v3/orders/{order_id}")) == (404, "ORDER_DOES_NOT_EXIST")  # unit 1
    assert error(call(bittrex_sim, "DELETE", f"/v3/orders/{order_id}")) == (404, "ORDER_DOES_NOT_EXIST")
    again = post(bittrex_sim, quantity="0.001", clientOrderId=client_id)
    assert error(again) == (409, "CLIENTORDERID_ALREADY_EXISTS")
    assert again.json()["data"] == {"existingOrderId": order_id}
    assert bittrex_client.get_open_orders() == []  # unit 2
    assert [o["id"] for o in bittrex_client.get_open_orders()] == [order_id]  # unit 3: it shows
    assert [o.visible for o in bittrex_sim.account_orders(BITTREX_KEY)] == [True]


def test_a_hidden_order_that_closes_meanwhile_shows_closed(bittrex_sim: BittrexSimulator) -> None:
    bittrex_sim.inject("POST /v3/orders", "lifecycle", hidden=3)
    order_id = post(bittrex_sim, quantity="0.001").json()["id"]
    for _ in range(3):  # closed after unit 1, invisible until unit 4
        assert call(bittrex_sim, "GET", "/v3/orders/closed").json() == []
    [truth] = bittrex_sim.account_orders(BITTREX_KEY)
    assert (truth.status, truth.fill_quantity, truth.visible) == ("CLOSED", Decimal("0.001"), False)
    assert [o["id"] for o in call(bittrex_sim, "GET", "/v3/orders/closed").json()] == [order_id]


def test_a_lifecycle_order_holds_its_funds_while_open(bittrex_sim: BittrexSimulator) -> None:
    bittrex_sim.set_price("BTC-EUR", "30000")
    bittrex_sim.inject("POST /v3/orders", "lifecycle", pending=5, times=2)
    post(bittrex_sim, kind="LIMIT", tif="GOOD_TIL_CANCELLED", quantity="0.02", limit="31000")  # crosses, waits
    assert eur(bittrex_sim) == ("1000.00000000", "378.45000000")  # held at its limit: 620 EUR + 0.25 %
    bittrex_sim.advance(60)  # a crossing price trades no lifecycle order
    assert bittrex_sim.account_orders(BITTREX_KEY)[0].fill_quantity == 0
    refused = post(bittrex_sim, quantity="0.013")  # 390.6 EUR at the ask: more than is available
    assert error(refused) == (409, "INSUFFICIENT_FUNDS")
    assert post(bittrex_sim, direction="SELL", quantity="0.05").status_code == 201  # the second script
    assert eur(bittrex_sim, "BTC") == ("0.05000000", "0.00000000")
    assert error(post(bittrex_sim, direction="SELL", quantity="0.001")) == (409, "INSUFFICIENT_FUNDS")
    bittrex_sim.complete_orders()
    assert eur(bittrex_sim, "BTC") == ("0.02000000", "0.02000000")
    [buy, sell] = bittrex_sim.account_orders(BITTREX_KEY)
    assert (buy.status, buy.proceeds / buy.fill_quantity) == ("CLOSED", Decimal("30015"))  # the ask, not the limit
    assert (sell.status, sell.proceeds / sell.fill_quantity) == ("CLOSED", Decimal("29985"))


def test_a_scripted_fill_never_goes_beyond_the_limit(bittrex_sim: BittrexSimulator) -> None:
    bittrex_sim.set_price("BTC-EUR", "30000")
    bittrex_sim.inject("POST /v3/orders", "lifecycle")
    order = post(bittrex_sim, kind="LIMIT", tif="GOOD_TIL_CANCELLED", quantity="0.001", limit="29000").json()
    assert lookup(bittrex_sim, order["id"])["proceeds"] == "29.00000000"


def test_a_scripted_buy_fills_only_what_the_funds_cover(bittrex_sim: BittrexSimulator) -> None:
    bittrex_sim.set_price("BTC-EUR", "30000")
    bittrex_sim.add_account("small", "small-secret", {"EUR": "100"})
    bittrex_sim.inject("POST /v3/orders", "lifecycle", pending=1, open=1, fill="0.5")
    order = call(bittrex_sim, "POST", "/v3/orders", new_order(quantity="0.003"), key="small",
                 secret="small-secret").json()  # 90.27 EUR held at the ask of 30015
    bittrex_sim.set_price("BTC-EUR", "40000")  # ask 40020: the half still fits, the rest does not
    bittrex_sim.complete_orders()
    [truth] = bittrex_sim.account_orders("small")
    assert (truth.id, truth.status, truth.closed) == (order["id"], "CLOSED", START_TIME)
    assert Decimal("0.0015") < truth.fill_quantity < Decimal("0.003")
    left = bittrex_sim.balances("small")["EUR"]
    assert left == 100 - truth.proceeds - truth.commission
    assert 0 <= left < Decimal("40020e-8") * Decimal("1.0025")  # 0.00000001 BTC more would not fit


def test_delete_cancels_the_rest_of_a_lifecycle_order(bittrex_sim: BittrexSimulator, bittrex_client) -> None:
    bittrex_sim.set_price("BTC-EUR", "30000")
    bittrex_sim.inject("POST /v3/orders", "lifecycle", open=5, fill="0.5")
    order = post(bittrex_sim, quantity="0.004").json()
    assert lookup(bittrex_sim, order["id"])["fillQuantity"] == "0.00200000"
    cancelled = bittrex_client.cancel_order(order["id"])
    assert (cancelled["status"], cancelled["fillQuantity"]) == ("CLOSED", "0.00200000")
    for _ in range(7):  # the script has nothing left to do
        assert shown(lookup(bittrex_sim, order["id"])) == ("CLOSED", "0.00200000", "60.03000000")
    total = Decimal(1000) - Decimal("60.03") - Decimal("0.150075")
    assert eur(bittrex_sim) == (f"{total:.8f}", f"{total:.8f}")
    assert error(call(bittrex_sim, "DELETE", f"/v3/orders/{order['id']}")) == (409, "ORDER_NOT_OPEN")


def test_complete_orders_finishes_every_script_now(bittrex_sim: BittrexSimulator) -> None:
    bittrex_sim.set_price("BTC-EUR", "30000")
    bittrex_sim.inject("POST /v3/orders", "lifecycle", pending=50, hidden=50)
    bittrex_sim.inject("POST /v3/orders", "lifecycle", pending=3600, open=60, fill="0.5", end="canceled",
                       unit="seconds")
    hidden = post(bittrex_sim, quantity="0.001").json()
    slow = post(bittrex_sim, quantity="0.002").json()
    plain = post(bittrex_sim, kind="LIMIT", tif="GOOD_TIL_CANCELLED", quantity="0.001", limit="20000").json()
    bittrex_sim.set_price("BTC-EUR", "31000")
    bittrex_sim.complete_orders()
    assert shown(lookup(bittrex_sim, hidden["id"])) == ("CLOSED", "0.00100000", "31.01550000")
    assert shown(lookup(bittrex_sim, slow["id"])) == ("CLOSED", "0.00100000", "31.01550000")  # canceled half
    assert lookup(bittrex_sim, plain["id"])["status"] == "OPEN"  # not a lifecycle order
    bittrex_sim.advance(7200)
    assert lookup(bittrex_sim, slow["id"])["fillQuantity"] == "0.00100000"


def test_account_orders_is_the_ground_truth(bittrex_sim: BittrexSimulator) -> None:
    bittrex_sim.set_price("BTC-EUR", "30000")
    bittrex_sim.add_account("other", "other-secret", {"EUR": "100"})
    call(bittrex_sim, "POST", "/v3/orders", new_order(quantity="0.001"), key="other", secret="other-secret")
    first = post(bittrex_sim, quantity="0.001", clientOrderId=str(uuid.UUID(int=1))).json()
    bittrex_sim.inject("POST /v3/orders", "lifecycle", hidden=5)
    second = post(bittrex_sim, direction="SELL", quantity="0.002").json()
    truth = bittrex_sim.account_orders(BITTREX_KEY)
    assert [(o.id, o.client_order_id, o.direction, o.side, o.symbol, o.status, o.quantity, o.fill_quantity,
             o.proceeds, o.commission, o.visible) for o in truth] == [
        (first["id"], str(uuid.UUID(int=1)), "BUY", "buy", "BTC-EUR", "CLOSED", Decimal("0.001"),
         Decimal("0.001"), Decimal("30.015"), Decimal("0.0750375"), True),
        (second["id"], None, "SELL", "sell", "BTC-EUR", "OPEN", Decimal("0.002"), 0, 0, 0, False)]
    truth[1].fill_quantity = Decimal(1)  # a copy: the simulator is not touched
    assert bittrex_sim.account_orders(BITTREX_KEY)[1].fill_quantity == 0


def test_a_lifecycle_is_taken_only_by_an_order_placed(bittrex_sim: BittrexSimulator) -> None:
    bittrex_sim.inject("*", "lifecycle", pending=1)
    assert call(bittrex_sim, "GET", "/v3/orders/open").status_code == 200
    assert error(post(bittrex_sim, quantity="1")) == (409, "INSUFFICIENT_FUNDS")
    assert post(bittrex_sim, quantity="0.001").json()["fillQuantity"] == "0.00000000"
    assert post(bittrex_sim, quantity="0.001").json()["fillQuantity"] == "0.00100000"  # times=1: used up


@pytest.mark.parametrize("params", [dict(fill="1"), dict(fill=0), dict(end="filled"), dict(unit="minutes"),
                                    dict(pending=-1), dict(open=1.5), dict(hidden="2"), dict(colour="red")])
def test_bad_lifecycles_are_refused_at_injection(bittrex_sim: BittrexSimulator, params: dict) -> None:
    with pytest.raises(ValueError):
        bittrex_sim.inject("POST /v3/orders", "lifecycle", **params)
    bittrex_sim.inject("POST /v3/orders", "lifecycle", open=1.5, unit="seconds")  # seconds may be fractions


# ------------------------------------------------------ faults around orders

ERROR_STATUS = {"http_500": 500, "http_503": 503, "throttled": 429, "malformed_json": 200}


@pytest.mark.parametrize("fault", list(ERROR_STATUS))
@pytest.mark.parametrize("after", [False, True])
def test_error_faults_before_or_after_the_order_reaches_the_book(bittrex_sim: BittrexSimulator, fault: str,
                                                                 after: bool) -> None:
    bittrex_sim.inject("POST /orders", fault, after=after)
    response = post(bittrex_sim, quantity="0.001")
    assert response.status_code == ERROR_STATUS[fault]
    assert '"id"' not in response.text  # the error, not the order, even when it was placed
    assert [o["fillQuantity"] for o in bittrex_sim.orders(BITTREX_KEY)] == (["0.00100000"] if after else [])
    assert bittrex_sim.calls["POST /v3/orders"] == 1


def test_after_faults_apply_to_any_route(bittrex_sim: BittrexSimulator) -> None:
    bittrex_sim.inject("GET /orders/open", "http_503", after=True)
    bittrex_sim.inject("POST /v3/orders", "lifecycle", pending=1)
    order_id = post(bittrex_sim, quantity="0.001").json()["id"]
    assert error(call(bittrex_sim, "GET", "/v3/orders/open")) == (503, "SERVICE_UNAVAILABLE")  # unit 1, lost
    assert lookup(bittrex_sim, order_id)["status"] == "CLOSED"  # unit 2


def test_drop_closes_the_connection_and_places_nothing(bittrex_sim: BittrexSimulator) -> None:
    bittrex_sim.inject("POST /v3/orders", "drop")
    with pytest.raises(requests.exceptions.ConnectionError):
        post(bittrex_sim, quantity="0.001")
    assert bittrex_sim.orders(BITTREX_KEY) == [] and bittrex_sim.calls["POST /v3/orders"] == 1
    assert post(bittrex_sim, quantity="0.001").status_code == 201


def test_the_client_retries_a_dropped_order_once_it_is_placed(bittrex_sim: BittrexSimulator, bittrex_client) -> None:
    bittrex_sim.inject("POST /v3/orders", "drop")
    client_id = str(uuid.uuid4())
    order = place(bittrex_client, quantity=0.001, client_order_id=client_id)
    assert order["clientOrderId"] == client_id and bittrex_sim.calls["POST /v3/orders"] == 2
    assert len(bittrex_sim.account_orders(BITTREX_KEY)) == 1


def test_a_lagging_order_whose_reply_failed(bittrex_sim: BittrexSimulator, bittrex_client) -> None:
    """The hard case for a client: placed, the reply an error, and the order not yet to be found."""
    bittrex_sim.inject("POST /v3/orders", "lifecycle", hidden=2, pending=3)
    bittrex_sim.inject("POST /v3/orders", "http_500", after=True)
    client_id = str(uuid.uuid4())
    assert place(bittrex_client, quantity=0.001, client_order_id=client_id) is None  # 500, then 409 twice
    [truth] = bittrex_sim.account_orders(BITTREX_KEY)
    assert (truth.client_order_id, truth.status, truth.visible) == (client_id, "OPEN", False)
    assert bittrex_client.get_open_orders() == [] and bittrex_client.get_closed_orders() == []
    [found] = bittrex_client.get_open_orders()
    assert (found["id"], found["clientOrderId"], found["status"]) == (truth.id, client_id, "OPEN")


# --------------------------------------------------------------- control API

def test_faults_through_the_control_api(bittrex_sim: BittrexSimulator) -> None:
    url = bittrex_sim.url + "/_sim/fault"
    listed = requests.post(url, json={"method": "POST /orders", "fault": "lifecycle", "pending": 1, "hidden": 1},
                           timeout=10).json()
    assert listed == [{"method": "POST /orders", "fault": "lifecycle", "times": 1, "pending": 1, "hidden": 1}]
    requests.post(url, json={"method": "GET /v3/ping", "fault": "http_503", "times": None}, timeout=10)
    assert [f["fault"] for f in requests.get(url, timeout=10).json()] == ["lifecycle", "http_503"]
    order_id = post(bittrex_sim, quantity="0.001").json()["id"]
    assert error(call(bittrex_sim, "GET", f"/v3/orders/{order_id}")) == (404, "ORDER_DOES_NOT_EXIST")
    assert requests.post(bittrex_sim.url + "/_sim/complete_orders", timeout=10).status_code == 200
    assert lookup(bittrex_sim, order_id)["status"] == "CLOSED"
    for _ in range(2):
        assert requests.get(bittrex_sim.url + "/v3/ping", timeout=10).status_code == 503
    assert requests.post(url, json={"clear": True}, timeout=10).json() == []
    assert requests.get(bittrex_sim.url + "/v3/ping", timeout=10).status_code == 200
    calls = requests.get(bittrex_sim.url + "/_sim/calls", timeout=10).json()
    assert (calls["GET /v3/ping"], calls["POST /v3/orders"]) == (3, 1)
    for bad in ({"method": "*", "fault": "meteor"}, {"fault": "drop"},
                {"method": "*", "fault": "lifecycle", "fill": "2"}):
        response = requests.post(url, json=bad, timeout=10)
        assert response.status_code == 400 and "error" in response.json()
    assert requests.get(bittrex_sim.url + "/_sim/nothing", timeout=10).status_code == 404
