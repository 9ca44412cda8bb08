"""The time-series writer against a real VictoriaMetrics (tests/plugins/victoria.py).

Each test writes under an exchange tag of its own, since the server is shared.
"""
from __future__ import annotations

import csv
import http.server
import json
import re
import socket
import threading
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from includes.errors import StorageError
from includes.model import Candle, Ticker
from includes.storage.timeseries import TimeSeriesWriter

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def exchange() -> str:
    return f"test{uuid.uuid4().hex[:12]}"


@pytest.fixture
def writer(victoria_metrics) -> Iterator[TimeSeriesWriter]:
    with TimeSeriesWriter(victoria_metrics.url, "crontrader", "crontrader", token="", timeout=5) as w:
        yield w


def by_metric(series) -> dict[tuple[str, str], list[tuple[float, float]]]:
    return {(s.labels["__name__"], s.labels.get("market", "")): s.points for s in series}


def test_tickers_are_read_back_with_their_tags_values_and_timestamps(victoria_metrics, writer, exchange):
    tickers = [
        Ticker("BTC/EUR", 1700000000, Decimal("34123.4"), Decimal("34120.1"), Decimal("34125.9"),
               Decimal("1234.56789012"), vwap_24h=Decimal("33999.87654")),
        Ticker("ETH/EUR", 1700000000, Decimal("1850.27"), Decimal("1850.01"), Decimal("1850.55"),
               Decimal("20345.1")),  # no vwap: the venue did not give one
    ]
    writer.write_tickers(exchange, tickers)
    writer.write_tickers(exchange, [Ticker("BTC/EUR", 1700000060, Decimal("34200"), Decimal("34199.5"),
                                           Decimal("34200.5"), Decimal("1240"), vwap_24h=Decimal("34000"))])

    series = victoria_metrics.series(f'{{exchange="{exchange}"}}', count=9)
    got = by_metric(series)
    assert got == {
        ("ticker_last", "BTC/EUR"): [(1700000000, 34123.4), (1700000060, 34200.0)],
        ("ticker_bid", "BTC/EUR"): [(1700000000, 34120.1), (1700000060, 34199.5)],
        ("ticker_ask", "BTC/EUR"): [(1700000000, 34125.9), (1700000060, 34200.5)],
        ("ticker_volume_24h", "BTC/EUR"): [(1700000000, 1234.56789012), (1700000060, 1240.0)],
        ("ticker_vwap_24h", "BTC/EUR"): [(1700000000, 33999.87654), (1700000060, 34000.0)],
        ("ticker_last", "ETH/EUR"): [(1700000000, 1850.27)],
        ("ticker_bid", "ETH/EUR"): [(1700000000, 1850.01)],
        ("ticker_ask", "ETH/EUR"): [(1700000000, 1850.55)],
        ("ticker_volume_24h", "ETH/EUR"): [(1700000000, 20345.1)],
    }
    eth = next(s for s in series if s.labels["market"] == "ETH/EUR")
    assert {k: v for k, v in eth.labels.items() if k != "__name__"} == {
        "exchange": exchange, "market": "ETH/EUR", "base": "ETH", "quote": "EUR"}


def test_real_candles_are_read_back_exactly(victoria_metrics, writer, exchange, shared_data):
    with (shared_data / "binance_XRP_ETH_5m.csv").open() as f:
        rows = list(csv.DictReader(f))
    candles = [Candle(int(r["timestamp"]), *(Decimal(r[k]) for k in ("open", "high", "low", "close", "volume")))
               for r in rows]
    writer.write_candles(exchange, "XRP/ETH", 5, candles)

    series = victoria_metrics.series(f'{{exchange="{exchange}"}}', count=5)
    got = by_metric(series)
    assert set(got) == {(f"candle_{k}", "XRP/ETH") for k in ("open", "high", "low", "close", "volume")}
    for field in ("open", "high", "low", "close", "volume"):
        assert got[f"candle_{field}", "XRP/ETH"] == [(int(r["timestamp"]), float(r[field])) for r in rows]
    assert {s.labels["interval"] for s in series} == {"5"}


def test_an_open_candle_is_written_then_rewritten_at_the_same_timestamp(victoria_metrics, writer, exchange):
    ts = 1700000100
    writer.write_candles(exchange, "BTC/EUR", 1, [Candle(ts, Decimal(1), Decimal(2), Decimal(1), Decimal(2),
                                                         Decimal(5), closed=False)])
    writer.write_candles(exchange, "BTC/EUR", 1, [Candle(ts, Decimal(1), Decimal(3), Decimal(1), Decimal(3),
                                                         Decimal(9))])
    [close] = victoria_metrics.series(f'candle_close{{exchange="{exchange}"}}')
    assert {t for t, _ in close.points} == {ts}
    assert (ts, 3.0) in close.points


def test_global_metrics_keep_the_known_fields_only(victoria_metrics, writer, exchange):
    metrics = {"total_market_cap": Decimal("1265000000000.12"), "total_volume_24h": Decimal("58100000000.5"),
               "btc_dominance": Decimal("51.234567"), "active_cryptocurrencies": 8800,
               "last_updated": "2023-11-14T22:10:00.000Z", "eth_dominance": Decimal("16.8")}
    writer.write_global_metrics(exchange, "EUR", metrics, ts=1699999800)

    series = victoria_metrics.series(f'{{source="{exchange}"}}', count=4)
    assert {s.labels["__name__"]: s.points for s in series} == {
        "global_metrics_total_market_cap": [(1699999800, 1265000000000.12)],
        "global_metrics_total_volume_24h": [(1699999800, 58100000000.5)],
        "global_metrics_btc_dominance": [(1699999800, 51.234567)],
        "global_metrics_active_cryptocurrencies": [(1699999800, 8800.0)],
    }
    assert all(s.labels["quote"] == "EUR" for s in series)


def test_a_server_that_is_down_is_a_storage_error_naming_the_url():
    with socket.socket() as reserved:  # bound, never listening: connections are refused
        reserved.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{reserved.getsockname()[1]}"
        with TimeSeriesWriter(url, "o", "b", timeout=2) as w, pytest.raises(StorageError) as err:
            w.write_global_metrics("cmc", "EUR", {"btc_dominance": Decimal(50)}, ts=1700000000)
    assert url in str(err.value) and "refused" in str(err.value)
    assert "\n" not in str(err.value)


def test_a_server_that_never_answers_is_a_storage_error_after_the_timeout():
    with socket.socket() as silent:  # the kernel accepts the connection, nobody replies
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        with TimeSeriesWriter(url, "o", "b", timeout=0.3) as w, pytest.raises(StorageError) as err:
            w.write_tickers("kraken", [Ticker("BTC/EUR", 1700000000, Decimal(1), Decimal(1), Decimal(1), Decimal(1))])
    assert url in str(err.value) and "timed out" in str(err.value)


def test_a_4xx_answer_is_a_storage_error_with_the_status(victoria_metrics, exchange):
    url = victoria_metrics.url + "/wrong/prefix"
    with TimeSeriesWriter(url, "o", "b") as w, pytest.raises(StorageError) as err:
        w.write_candles(exchange, "BTC/EUR", 5, [Candle(1700000000, *[Decimal(1)] * 5)])
    message = str(err.value)
    assert url in message and "HTTP 400" in message and "\n" not in message


class InfluxStub(http.server.BaseHTTPRequestHandler):
    """Answers every write as InfluxDB 2.x does with a bad token, and keeps the headers seen."""

    seen: list[dict[str, str]] = []

    def do_POST(self) -> None:
        self.seen.append({"path": self.path, "authorization": self.headers.get("Authorization", "")})
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        body = json.dumps({"code": "unauthorized", "message": "unauthorized access"}).encode()
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_the_token_is_sent_but_never_shown_in_errors():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), InfluxStub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}"
        with TimeSeriesWriter(url, "myorg", "mybucket", token="s3cr3t-t0ken", timeout=5) as w, \
                pytest.raises(StorageError) as err:
            w.write_global_metrics("cmc", "EUR", {"btc_dominance": Decimal(50)}, ts=1700000000)
    finally:
        server.shutdown()
        server.server_close()
    assert InfluxStub.seen[-1]["authorization"] == "Token s3cr3t-t0ken"
    assert InfluxStub.seen[-1]["path"].startswith("/api/v2/write?")
    assert "org=myorg" in InfluxStub.seen[-1]["path"] and "bucket=mybucket" in InfluxStub.seen[-1]["path"]
    assert str(err.value) == f"time series write to {url} failed: HTTP 401 unauthorized access"


def test_empty_batches_send_nothing():
    with socket.socket() as reserved:  # any request here would be refused
        reserved.bind(("127.0.0.1", 0))
        with TimeSeriesWriter(f"http://127.0.0.1:{reserved.getsockname()[1]}", "o", "b") as w:
            w.write_tickers("kraken", [])
            w.write_candles("kraken", "BTC/EUR", 5, [])
            w.write_global_metrics("cmc", "EUR", {"last_updated": "2023-11-14T22:10:00.000Z"})


@pytest.fixture
def written(victoria_metrics, writer, exchange) -> dict[str, set[str]]:
    """Fields by measurement, as the server got them from one write of each kind."""
    writer.write_tickers(exchange, [Ticker("BTC/EUR", 1700000000, Decimal(1), Decimal(1), Decimal(1), Decimal(1),
                                           vwap_24h=Decimal(1))])
    writer.write_candles(exchange, "BTC/EUR", 5, [Candle(1700000000, *[Decimal(1)] * 5)])
    writer.write_global_metrics(exchange, "EUR", {"total_market_cap": 1, "total_volume_24h": 1,
                                                  "btc_dominance": 1, "active_cryptocurrencies": 1}, ts=1700000000)
    fields = {}
    for measurement, selector, count in (("ticker", f'{{__name__=~"ticker_.+",exchange="{exchange}"}}', 5),
                                         ("candle", f'{{__name__=~"candle_.+",exchange="{exchange}"}}', 5),
                                         ("global_metrics", f'{{source="{exchange}"}}', 4)):
        fields[measurement] = {s.labels["__name__"].removeprefix(f"{measurement}_")
                               for s in victoria_metrics.series(selector, count)}
    return fields


def test_the_dashboard_reads_only_what_the_writer_writes(written):
    dashboard = json.loads((ROOT / "conf" / "grafana-dashboard.json").read_text())
    assert dashboard["schemaVersion"] >= 39
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "influxdb"
    assert variables["market"]["type"] == "query"

    read = set()
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}"
            [measurement] = re.findall(r'r\._measurement == "(\w+)"', target["query"])
            fields = re.findall(r'r\._field == "(\w+)"', target["query"])
            assert fields, f"panel {panel['title']!r} reads no explicit field"
            read |= {(measurement, f) for f in fields}
    assert read <= {(m, f) for m, fs in written.items() for f in fs}
    assert {("candle", "close"), ("ticker", "last"), ("ticker", "volume_24h"),
            ("global_metrics", "total_market_cap"), ("global_metrics", "btc_dominance")} <= read


def test_the_docs_name_every_measurement_and_field(written):
    docs = (ROOT / "docs" / "timeseries.md").read_text()
    assert sum(len(fs) for fs in written.values()) == 14
    for measurement, fields in written.items():
        assert f"`{measurement}`" in docs
        for field in fields:
            assert f"`{field}`" in docs, f"docs/timeseries.md does not list {measurement}.{field}"


def _promql(victoria_metrics, path: str, **params: str) -> dict:
    import urllib.parse
    import urllib.request

    with urllib.request.urlopen(f"{victoria_metrics.url}{path}?{urllib.parse.urlencode(params)}", timeout=10) as r:
        reply = json.loads(r.read())
    assert reply["status"] == "success", reply
    return reply["data"]


def test_every_promql_query_of_the_second_dashboard_finds_what_it_charts(victoria_metrics, writer, exchange):
    """conf/grafana-dashboard-promql.json on the real VictoriaMetrics: each variable lists our values,
    each panel query returns the series it draws."""
    agent, ts = f"agent-{exchange}", 1700000000
    writer.write_tickers(exchange, [Ticker("BTC/EUR", ts, Decimal(30000), Decimal("29990"), Decimal(30010),
                                           Decimal(1))])
    writer.write_candles(exchange, "BTC/EUR", 5, [Candle(ts, *[Decimal(30000)] * 5)])
    writer.write_bot(agent, "dry", "EUR", ts, {"equity": Decimal("99.5"), "free": Decimal(90), "realised": Decimal(1),
                                               "unrealised": Decimal("-1.5"), "change": Decimal("-0.5"),
                                               "fees": Decimal("0.1"), "in_doubt": 0},
                     {"BTC": {"volume": Decimal("0.0003"), "value": Decimal(10), "market_value": Decimal("8.5")}})
    writer.write_fills(agent, "dry", exchange, [{"market": "BTC/EUR", "side": "buy", "thread": 1, "intent_at": ts - 2,
                                                 "result_at": ts, "filled": Decimal("0.0003"),
                                                 "price": Decimal(30005), "cost": Decimal("9.0015"),
                                                 "fee": Decimal("0.0234")}])
    victoria_metrics.series(f'{{agent="{agent}"}}', 14)           # flushed and searchable
    dashboard = json.loads((ROOT / "conf" / "grafana-dashboard-promql.json").read_text())
    values = {"agent": agent, "mode": "dry", "exchange": exchange, "market": "BTC/EUR", "interval": "5"}

    def substitute(text: str) -> str:
        return re.sub(r"\$\{(\w+)\}", lambda m: values[m.group(1)], text)   # no regex metacharacter in them

    for variable in dashboard["templating"]["list"][1:]:
        label, selector = re.fullmatch(r"label_values\((.+), (\w+)\)", variable["definition"]).group(2, 1)
        found = _promql(victoria_metrics, f"/api/v1/label/{label}/values", **{"match[]": substitute(selector)},
                        start=str(ts - 60), end=str(ts + 60))
        assert values[variable["name"]] in found, (variable["name"], found)
    charted = 0
    for panel in dashboard["panels"]:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        for target in panel["targets"]:
            result = _promql(victoria_metrics, "/api/v1/query", query=substitute(target["expr"]), time=str(ts + 1))
            assert result["resultType"] == "vector" and len(result["result"]) == 1, (target["expr"], result)
            labels = result["result"][0]["metric"]
            assert all(labels.get(k, v) == v for k, v in values.items() if k in labels), labels
            assert float(result["result"][0]["value"][1]) == {
                "bot_equity": 99.5, "bot_free": 90, "bot_realised": 1, "bot_unrealised": -1.5, "bot_in_doubt": 0,
                "position_market_value": 8.5, "ticker_bid": 29990, "candle_close": 30000, "fill_price": 30005}[
                re.search(r"(bot_\w+|position_\w+|ticker_\w+|candle_\w+|fill_\w+)", target["expr"]).group(1)]
            charted += 1
    assert charted == 9


# --- the bot's fills -------------------------------------------------------------------------------------

def journal_fill(db, ref: str, side: str, thread: int, at: float, filled: str, price: str, *,
                 status: str = "closed", settled_at: float | None = None) -> None:
    """An order of the dry journal, from intent to its result `settled_at` (by default 2 s after)."""
    db.journal_intent(ref, mode="dry", exchange="kraken", market="BTC/EUR", side=side, thread=thread,
                      amount_quote=Decimal(10), at=at, agent="fills")
    if status != "intent":
        cost = Decimal(filled) * Decimal(price)
        db.journal_result(ref, status, order_id=f"O-{ref}", filled=Decimal(filled), price=Decimal(price),
                          cost=cost if status != "open" else None, fee=(cost * Decimal("0.0026")).quantize(
                              Decimal("1e-8")), at=(at + 2) if settled_at is None else settled_at)


def test_each_fill_is_a_point_at_its_fill_time_written_once(victoria_metrics, writer, exchange, tmp_path):
    from includes.status import write_fills
    from includes.storage.marketdb import MarketDB
    from includes.storage.state import open_state_store

    db = MarketDB(f"sqlite:///{tmp_path / 'market.db'}")
    store = open_state_store(f"sqlite:///{tmp_path / 'state.db'}", "crontrader", "dry")
    t = 1700000000.0
    journal_fill(db, "b1", "buy", 1, t, "0.0003", "30000")
    journal_fill(db, "f1", "buy", 2, t + 10, "0", "0", status="canceled")          # settled, nothing filled
    journal_fill(db, "s1", "sell", 1, t + 600, "0.0003", "31000.5")
    journal_fill(db, "b2", "buy", 2, t + 1200, "0.00025", "31000", status="open")   # may fill yet
    journal_fill(db, "b3", "buy", 3, t + 1800, "0.0002", "31500")

    def run() -> int:
        return write_fills(writer, db, store, "fills", "dry", exchange)

    def points() -> dict[tuple[str, str, str], set[tuple[float, float]]]:
        return {(s.labels["__name__"], s.labels["side"], s.labels["thread"]): set(s.points)
                for s in victoria_metrics.series(f'{{__name__=~"fill_.+",exchange="{exchange}"}}', 4 * len(seen))}

    seen = ["b1", "s1", "b3"]
    assert run() == 3
    got = points()
    assert got[("fill_price", "buy", "1")] == {(t + 2, 30000.0)}
    assert got[("fill_volume", "sell", "1")] == {(t + 602, 0.0003)}
    assert got[("fill_cost", "sell", "1")] == {(t + 602, 9.30015)}
    assert got[("fill_fee", "buy", "3")] == {(t + 1802, 0.0163800)}
    assert {k[2] for k in got} == {"1", "3"} and all(len(v) == 1 for v in got.values())
    [label] = {tuple(sorted(s.labels.items())) for s in victoria_metrics.series(f'fill_price{{thread="1",side="buy",'
                                                                                f'exchange="{exchange}"}}')}
    assert dict(label) | {"__name__": ""} == {"__name__": "", "agent": "fills", "mode": "dry", "exchange": exchange,
                                              "market": "BTC/EUR", "side": "buy", "thread": "1"}

    assert run() == 0                                             # nothing new: nothing written again
    db.journal_result("b2", "closed", filled=Decimal("0.00025"), price=Decimal(31000), cost=Decimal("7.75"),
                      fee=Decimal("0.02015"), at=t + 2400)       # the open order filled, after b3
    journal_fill(db, "s3", "sell", 3, t + 3000, "0.0002", "32000")
    seen += ["b2", "s3"]
    assert run() == 2                                             # only those two
    got = points()
    assert got[("fill_cost", "buy", "2")] == {(t + 2400, 7.75)}
    assert got[("fill_price", "sell", "3")] == {(t + 3002, 32000.0)}
    assert all(len(v) == 1 for v in got.values())
    assert run() == 0


def test_a_fill_written_twice_is_the_same_point(victoria_metrics, writer, exchange):
    fill = {"market": "ETH/EUR", "side": "sell", "thread": 4, "filled": Decimal("0.01"), "price": Decimal(2000),
            "cost": Decimal(20), "fee": Decimal("0.052"), "intent_at": 1700000000.25, "result_at": 1700000003.5}
    writer.write_fills("twice", "live", exchange, [fill])
    writer.write_fills("twice", "live", exchange, [fill])
    series = victoria_metrics.series(f'{{__name__=~"fill_.+",exchange="{exchange}"}}', 4)
    assert len(series) == 4 and {s.labels["__name__"] for s in series} == {"fill_volume", "fill_price", "fill_cost",
                                                                           "fill_fee"}
    assert all({t for t, _ in s.points} == {1700000003} and len(set(s.points)) == 1 for s in series)
