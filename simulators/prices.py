"""Price paths for the simulators: real candles from CSV, or a seeded random walk.

A row is (timestamp, open, high, low, close, volume): the candle's open time in
unix seconds, then Decimals, as in ../shared/data.  `Series` holds a path
column-wise as scaled integers: a month of 1-minute candles for 50 markets takes
over a gigabyte as tuples of Decimals but 100 MB this way, and integers keep
every value exact.

What a Series knows at time `t` (no look-ahead): every candle that has closed by
`t`, and only the open of the candle holding `t`.  So the price at `t` is the
open of the candle holding `t`, or, when no candle holds it (a gap, or after the
data), the close of the last candle before it.
"""
from __future__ import annotations

import csv
import math
import random
from array import array
from bisect import bisect_left, bisect_right
from decimal import Decimal
from functools import lru_cache
from itertools import pairwise
from operator import add, mul
from os import PathLike
from typing import NamedTuple

Row = tuple[int, Decimal, Decimal, Decimal, Decimal, Decimal]
CSV_HEADER = ["timestamp", "open", "high", "low", "close", "volume"]
VOLUME_DECIMALS = 8


class Candle(NamedTuple):
    """An aggregated candle, Kraken's OHLC row."""
    ts: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    vwap: Decimal           # volume-weighted (high + low + close) / 3; the close when no volume
    volume: Decimal
    count: int              # source candles with volume: a stand-in for the number of trades


def read_candle_csv(path: str | PathLike) -> list[Row]:
    """Rows of a `timestamp,open,high,low,close,volume` CSV file."""
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = [h.strip().lower() for h in next(reader, [])]
        if header != CSV_HEADER:
            raise ValueError(f"{path}: header {header} is not {','.join(CSV_HEADER)}")
        try:
            return [(int(r[0]), *(Decimal(x) for x in r[1:6])) for r in reader if r]
        except (ValueError, ArithmeticError, IndexError) as exc:
            raise ValueError(f"{path}: line {reader.line_num}: {exc}") from None


def synthetic_path(seed: int | str, start_price: Decimal | str, start_ts: int, minutes: int,
                   volatility: float = 0.001, decimals: int = 8) -> list[Row]:
    """`minutes` 1-minute candles of a reproducible random walk from `start_price`.

    `volatility` is the standard deviation of one minute's log return.  The walk
    switches between rising, falling and flat regimes lasting two days on
    average, so over a few days some markets rise and some fall; a weak pull
    towards `start_price` keeps long paths in range.  Prices have `decimals`
    places.
    """
    return synthetic_series(seed, Decimal(start_price), start_ts, minutes, volatility, decimals).rows()


class Series:
    """Candles of one market, oldest first, each `step` seconds long.  Immutable."""

    __slots__ = ("step", "ts", "o", "h", "l", "c", "v", "pexp", "vexp")

    def __init__(self, step: int, ts: array, o: array, h: array, l: array, c: array, v: array,
                 pexp: int, vexp: int) -> None:
        self.step = step            # seconds
        self.ts, self.o, self.h, self.l, self.c, self.v = ts, o, h, l, c, v
        self.pexp, self.vexp = pexp, vexp   # value = integer * 10**-exp

    @classmethod
    def from_rows(cls, rows: list[Row], step: int | None = None) -> Series:
        """A Series of `rows`; `step` (seconds) is inferred as the smallest gap between rows."""
        rows = [(int(r[0]), *(Decimal(x) for x in r[1:6])) for r in rows]
        if not rows:
            raise ValueError("no candles")
        gaps = [b[0] - a[0] for a, b in pairwise(rows)]
        if gaps and min(gaps) <= 0:
            raise ValueError("candle timestamps must be strictly increasing")
        smallest = min(gaps, default=step or 60)
        step = step or smallest
        if smallest < step:
            raise ValueError(f"candles {smallest} s apart are shorter than the stated {step} s interval")
        for ts, o, h, l, c, v in rows:
            if not (0 < l <= min(o, c) and h >= max(o, c) and v >= 0):
                raise ValueError(f"candle at {ts} is inconsistent: {o} {h} {l} {c} {v}")
        pexp = max(0, *(-x.as_tuple().exponent for r in rows for x in r[1:5]))
        vexp = max(0, *(-r[5].as_tuple().exponent for r in rows))

        def column(i: int, exp: int) -> array:
            return array("q", (int(r[i].scaleb(exp)) for r in rows))

        return cls(step, array("q", (r[0] for r in rows)), column(1, pexp), column(2, pexp),
                   column(3, pexp), column(4, pexp), column(5, vexp), pexp, vexp)

    def rows(self) -> list[Row]:
        p, q = self._price, self._volume
        return [(self.ts[i], p(self.o[i]), p(self.h[i]), p(self.l[i]), p(self.c[i]), q(self.v[i]))
                for i in range(len(self.ts))]

    def __len__(self) -> int:
        return len(self.ts)

    @property
    def end(self) -> int:
        """When the last candle closes."""
        return self.ts[-1] + self.step

    def last_close(self) -> Decimal:
        return self._price(self.c[-1])

    def price(self, t: float) -> Decimal:
        """The price known at `t`; before the first candle, its open."""
        n = bisect_right(self.ts, t)
        if n == 0:
            return self._price(self.o[0])
        return self._price(self.o[n - 1] if self.holding(t) is not None else self.c[n - 1])

    def holding(self, t: float) -> int | None:
        """Open time of the candle holding `t`, if one does."""
        n = bisect_right(self.ts, t)
        return self.ts[n - 1] if n and self.ts[n - 1] + self.step > t else None

    def opened_before(self, t: float) -> int | None:
        """Open time of the last candle opening before `t`, if any."""
        n = bisect_left(self.ts, t)
        return self.ts[n - 1] if n else None

    def candles(self, seconds: int, start: float, t: float) -> list[Candle]:
        """Candles of `seconds`, aligned on the epoch, from source candles opening in [start, t]."""
        lo, hi = bisect_left(self.ts, start), bisect_right(self.ts, t)
        partial = hi - 1 if hi > lo and self.ts[hi - 1] + self.step > t else -1
        ts, o, h, l, c, v = self.ts, self.o, self.h, self.l, self.c, self.v
        out: list[list[int]] = []
        bucket = None
        for i in range(lo, hi):
            if i == partial:                # only its open is known at t
                oo = hh = ll = cc = o[i]
                vv = 0
            else:
                oo, hh, ll, cc, vv = o[i], h[i], l[i], c[i], v[i]
            b = ts[i] - ts[i] % seconds
            if b != bucket:
                bucket = b
                out.append([b, oo, hh, ll, cc, vv, (hh + ll + cc) * vv, int(vv > 0)])
            else:
                row = out[-1]
                row[2] = max(row[2], hh)
                row[3] = min(row[3], ll)
                row[4] = cc
                row[5] += vv
                row[6] += (hh + ll + cc) * vv
                row[7] += vv > 0
        return [self._candle(*row) for row in out]

    def _candle(self, ts: int, o: int, h: int, l: int, c: int, v: int, pv: int, count: int) -> Candle:
        """A Candle of scaled integers; `pv`: the sum of (high + low + close) x volume."""
        p = self._price
        return Candle(ts, p(o), p(h), p(l), p(c), (Decimal(pv) / (3 * v)).scaleb(-self.pexp) if v else p(c),
                      self._volume(v), count)

    def summary(self, start: float, t: float) -> Candle | None:
        """One candle over the source candles opening in [start, t]; None when there are none.

        candles() with one bucket, from C-level sums, max and min over the window's slices: a
        Ticker call summarises a day of 1-minute candles a pair, and must answer as fast as
        Kraken, also right after set_price has rewritten the path.
        """
        lo, hi = bisect_left(self.ts, start), bisect_right(self.ts, t)
        if lo >= hi:
            return None
        closed = hi - 1 if self.ts[hi - 1] + self.step > t else hi   # the last one holds t: its open only
        high, low = max(self.h[lo:closed], default=0), min(self.l[lo:closed], default=self.o[lo])
        close = self.c[closed - 1] if closed > lo else self.o[lo]
        if closed < hi:
            high, low, close = max(high, self.o[closed]), min(low, self.o[closed]), self.o[closed]
        v = self.v[lo:closed]
        pv = sum(map(mul, map(add, map(add, self.h[lo:closed], self.l[lo:closed]), self.c[lo:closed]), v))
        return self._candle(self.ts[lo], self.o[lo], high, low, close, sum(v), pv, len(v) - v.count(0))

    def until(self, t: float) -> Series:
        """What is known just before `t`: the candles opening before it, the one holding it cut to its open."""
        n = bisect_left(self.ts, t)
        cut = Series(self.step, *(col[:n] for col in (self.ts, self.o, self.h, self.l, self.c, self.v)),
                     self.pexp, self.vexp)
        if n and self.ts[n - 1] + self.step > t:
            cut.h[-1] = cut.l[-1] = cut.c[-1] = cut.o[-1]
            cut.v[-1] = 0
        return cut

    def concat(self, other: Series) -> Series:
        """This path followed by `other`, which must start after it."""
        if len(self) and len(other) and other.ts[0] <= self.ts[-1]:
            raise ValueError("the second series must start after the first one ends")
        pexp, vexp = max(self.pexp, other.pexp), max(self.vexp, other.vexp)
        a, b = self._scaled(pexp, vexp), other._scaled(pexp, vexp)
        return Series(self.step if len(self) else other.step,
                      *(x + y for x, y in zip(a, b, strict=True)), pexp, vexp)

    def _scaled(self, pexp: int, vexp: int) -> tuple[array, ...]:
        pm, vm = 10 ** (pexp - self.pexp), 10 ** (vexp - self.vexp)
        price = (lambda col: col) if pm == 1 else (lambda col: array("q", (x * pm for x in col)))
        volume = self.v if vm == 1 else array("q", (x * vm for x in self.v))
        return self.ts, price(self.o), price(self.h), price(self.l), price(self.c), volume

    def _price(self, n: int) -> Decimal:
        return Decimal(n).scaleb(-self.pexp)

    def _volume(self, n: int) -> Decimal:
        return Decimal(n).scaleb(-self.vexp)


@lru_cache(maxsize=128)
def synthetic_series(seed: int | str, start_price: Decimal, start_ts: int, minutes: int,
                     volatility: float = 0.001, decimals: int = 8) -> Series:
    """synthetic_path() as a Series; cached, since simulators of one test run share paths."""
    if start_price <= 0 or minutes < 1 or volatility < 0 or decimals < 0:
        raise ValueError(f"bad synthetic path: price {start_price}, {minutes} minutes, "
                         f"volatility {volatility}, {decimals} decimals")
    rng = random.Random(seed)
    gauss, uniform, exp = rng.gauss, rng.random, math.exp
    scale = 10 ** decimals
    anchor = math.log(float(start_price))
    pull = 1 / (10 * 1440)          # log-price pulled back towards the start with a ten-day horizon
    trend = 0.02 * volatility       # per-minute drift of a rising or falling regime (about 3 %/day)
    volume_scale = 2 * 2000 / float(start_price) * 10 ** VOLUME_DECIMALS   # about 2000 quote units a minute
    first = int(start_ts) - int(start_ts) % 60
    ts = array("q", range(first, first + 60 * minutes, 60))
    o, h, l, c, v = (array("q") for _ in range(5))
    log_price = anchor
    open_int = max(1, round(float(start_price) * scale))
    drift, regime_left = 0.0, 0
    for _ in range(minutes):        # the hot loop of a simulator's start: kept lean
        if regime_left <= 0:
            drift = rng.choice((-trend, 0.0, trend))
            regime_left = 360 + int(rng.expovariate(1 / 2520))
        regime_left -= 1
        log_price += drift - pull * (log_price - anchor) + gauss(0.0, volatility)
        close = exp(log_price) * scale
        close_int = round(close) or 1
        wick = volatility * close
        top, bottom = (close_int, open_int) if close_int > open_int else (open_int, close_int)
        o.append(open_int)
        h.append(top + int(wick * uniform()))
        l.append(max(1, bottom - int(wick * uniform())))
        c.append(close_int)
        v.append(int(volume_scale * uniform()))
        open_int = close_int
    return Series(60, ts, o, h, l, c, v, decimals, VOLUME_DECIMALS)
