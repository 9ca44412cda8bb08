"""Market data to a time-series server, for Grafana.

Anything that speaks the InfluxDB v2 write API will do: InfluxDB 2.x, or
VictoriaMetrics (which stores field `f` of measurement `m` as metric `m_f`).
docs/timeseries.md lists the measurements, tags and fields.

Line protocol has no decimals, so Decimal becomes float here and only here:
the time series feed charts, never money decisions.  Each method sends one
batch in one request, synchronously, with a short timeout: a cron run must not
hang on a chart server.  `influxdb_client` takes a few hundred milliseconds to
import, so only the scripts that build a writer pay for it.
"""
from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING

from includes.errors import StorageError, cause
from includes.model import Candle, Ticker, split_market

if TYPE_CHECKING:
    from influxdb_client import Point

GLOBAL_FIELDS = ("total_market_cap", "total_volume_24h", "btc_dominance", "active_cryptocurrencies")


class TimeSeriesWriter:
    """Writes tickers, candles, global metrics and the bot's own figures to one bucket, seconds
    precision.  Every write raises StorageError naming the server and the cause (its HTTP status
    and body, or the connection's failure); nothing is retried here: the job says so and goes on."""

    def __init__(self, url: str, org: str, bucket: str, token: str = "", timeout: float = 10.0) -> None:
        from influxdb_client import InfluxDBClient
        from influxdb_client.client.write_api import SYNCHRONOUS

        self.url = url.rstrip("/")
        self.bucket = bucket
        self._client = InfluxDBClient(url=self.url, token=token, org=org, timeout=int(timeout * 1000))
        self._write_api = self._client.write_api(write_options=SYNCHRONOUS)

    def write_tickers(self, exchange: str, tickers: list[Ticker]) -> None:
        points = []
        for t in tickers:
            base, quote = split_market(t.market)
            tags = {"exchange": exchange, "market": t.market, "base": base, "quote": quote}
            fields = {"last": t.last, "bid": t.bid, "ask": t.ask, "volume_24h": t.volume_24h, "vwap_24h": t.vwap_24h}
            points.append(self._point("ticker", tags, fields, t.ts))
        self._write(points)

    def write_candles(self, exchange: str, market: str, interval: int, candles: list[Candle]) -> None:
        """`interval` in minutes; a still-open candle is written too and replaced by the next run."""
        tags = {"exchange": exchange, "market": market, "interval": str(interval)}
        self._write([self._point("candle", tags, {"open": c.open, "high": c.high, "low": c.low,
                                                  "close": c.close, "volume": c.volume}, c.ts)
                     for c in candles])

    def write_global_metrics(self, source: str, quote: str, metrics: Mapping[str, object],
                             ts: int | None = None) -> None:
        """The GLOBAL_FIELDS found in `metrics` (others are ignored), at `ts` (default: now)."""
        fields = {name: metrics.get(name) for name in GLOBAL_FIELDS}
        if any(v is not None for v in fields.values()):
            self._write([self._point("global_metrics", {"source": source, "quote": quote}, fields,
                                     int(time.time()) if ts is None else ts)])

    def write_bot(self, agent: str, mode: str, quote: str, ts: int, figures: Mapping[str, object],
                  positions: Mapping[str, Mapping[str, object]]) -> None:
        """The bot itself at `ts`: `figures` (equity, free, realised, unrealised...) as measurement
        `bot`, and each currency's position (volume, value, market value) as `position`."""
        tags = {"agent": agent, "mode": mode, "quote": quote}
        self._write([self._point("bot", tags, figures, ts)]
                    + [self._point("position", {**tags, "currency": c}, f, ts) for c, f in positions.items()])

    def write_fills(self, agent: str, mode: str, exchange: str, fills: Sequence[Mapping[str, object]]) -> None:
        """Each fill (journal rows: market, side, thread, filled, price, cost, fee) as a point of
        measurement `fill` at its fill time: the same fill written again is the same point."""
        self._write([self._point("fill", {"agent": agent, "mode": mode, "exchange": exchange,
                                          "market": str(f["market"]), "side": str(f["side"]),
                                          "thread": "" if f["thread"] is None else str(f["thread"])},
                                 {"volume": f["filled"], "price": f["price"], "cost": f["cost"], "fee": f["fee"]},
                                 int(float(f["result_at"] or f["intent_at"])))   # type: ignore[arg-type]
                     for f in fills])

    def close(self) -> None:
        self._write_api.close()
        self._client.close()

    def __enter__(self) -> TimeSeriesWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @staticmethod
    def _point(measurement: str, tags: dict[str, str], fields: Mapping[str, object], ts: int) -> Point:
        from influxdb_client import Point, WritePrecision

        point = Point(measurement).time(ts, WritePrecision.S)
        for key, value in tags.items():
            point.tag(key, value)
        for name, number in fields.items():
            if number is not None:  # an absent value (a venue without vwap) is no field, not a zero
                point.field(name, _number(number))  # one type per field: InfluxDB refuses a change
        return point

    def _write(self, points: list[Point]) -> None:
        if not points:
            return
        from influxdb_client import WritePrecision
        from influxdb_client.rest import ApiException
        from urllib3.exceptions import HTTPError

        try:
            self._write_api.write(self.bucket, record=points,
                                  write_precision=WritePrecision.S)  # type: ignore[arg-type]  # typed str there
        except ApiException as exc:  # the server answered 4xx/5xx; its body says why
            raise StorageError(f"time series write to {self.url} failed: HTTP {exc.status} "
                               f"{cause(exc.message or '')}") from exc
        except (HTTPError, OSError) as exc:  # refused, unresolvable, timed out
            raise StorageError(f"time series write to {self.url} failed: {cause(exc)}") from exc


def _number(value: object) -> float:
    """A field's value as the float a point holds: money and counts, never a string."""
    if isinstance(value, (Decimal, int, float)) and not isinstance(value, bool):
        return float(value)
    raise TypeError(f"a time-series field must be a number, not {value!r}")
