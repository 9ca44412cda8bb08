"""Replay: historical candles and a simulated clock behind the Platform interface.

The backtest moves `clock`; every price served is one the market had shown
by then.  A ticker's last price is the open of the candle holding the clock
(or, in a gap, the last close), never a later value; candles are served once
closed, and the one still open only as its open.  The replay fills no orders:
wrap it in PaperPlatform, so that fees, rounding and minimums are those of
dry-run live.

Prices are kept as floats, 8 bytes a candle rather than a Decimal's 104, and
become Decimal (through their shortest repr, as money.to_decimal does) when
served.  That is exact for the 15 significant digits of the candle files and
of the market DB's prices.
"""
from __future__ import annotations

import math
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from itertools import repeat
from typing import Any

from includes.errors import PermanentError, UnknownMarket
from includes.model import AccountInfo, Candle, Market, Order, Ticker
from includes.money import ZERO, round_down, round_up, to_decimal
from includes.platforms.base import Platform


def fallback(symbol: str) -> Market:
    """The rules of a market no venue listing has: fine enough for any price a file may hold."""
    base, quote = symbol.split("/")
    return Market(symbol=symbol, base=base, quote=quote, exchange_symbol=symbol, status="online", available=True,
                  **FALLBACK)


FALLBACK: dict[str, Any] = dict(price_decimals=12, volume_decimals=8, cost_decimals=8,
                                min_volume=Decimal("0.00000001"), min_cost=Decimal("0.5"))


@dataclass(eq=False)
class Series:
    """One market's candles as columns, oldest first; `interval` in minutes."""
    market: str                  # the symbol the agent trades: "BTC/EUR"
    interval: int
    ts: array                    # open times, unix seconds ('q')
    open: array                  # prices and volumes ('d')
    high: array
    low: array
    close: array
    volume: array
    label: str = ""              # where it came from, for the report: "kraken_BTC_EUR_5m"

    @property
    def base(self) -> str:
        return self.market.split("/")[0]

    @property
    def seconds(self) -> int:
        return self.interval * 60

    def __len__(self) -> int:
        return len(self.ts)

    def closed(self, now: float) -> int:
        """How many candles had closed by `now`: candles[:closed(now)] are known then."""
        return bisect_right(self.ts, now - self.seconds)

    def last(self, now: float) -> float | None:
        """The price at `now`: the open of the candle holding it, else the last close; None before any."""
        i = bisect_right(self.ts, now) - 1
        if i < 0:
            return None
        return self.open[i] if now < self.ts[i] + self.seconds else self.close[i]

    def prices_at(self, times: range) -> list[float]:
        """last() at each of `times`, NaN where there was no price yet, in one pass of C-level bisects."""
        ts, opens, closes, seconds = self.ts, self.open, self.close, self.seconds
        return [math.nan if not n else opens[n - 1] if t < ts[n - 1] + seconds else closes[n - 1]
                for n, t in zip(map(bisect_right, repeat(ts), times), times, strict=True)]

    def candle(self, i: int) -> Candle:
        return Candle(self.ts[i], to_decimal(self.open[i]), to_decimal(self.high[i]), to_decimal(self.low[i]),
                      to_decimal(self.close[i]), to_decimal(self.volume[i]))

    def first_close(self) -> int:
        return self.ts[0] + self.seconds

    def last_close(self) -> int:
        return self.ts[-1] + self.seconds


class ReplayPlatform(Platform):
    """Markets of `series`, all quoted in `quote`, priced as of `clock`, traded by `rules`.

    `rules` holds each market's order rules as its venue lists them (decimals,
    minimum volume and cost: the Market dataclass); a market without any
    trades by FALLBACK, which lets a 5-unit thread trade any price from a
    millionth to a million.  Ask and bid are the last price plus and minus half
    of `spread_percent`, rounded outwards to the market's tick, as the Kraken
    simulator does: a dry run against it fills at the same prices.  The last
    price and the candles are served as the file has them (a file on the
    tick, as a venue's candles are, is served as the venue would).
    """
    name = "replay"

    def __init__(self, series: Iterable[Series], quote: str, fee_percent: Decimal, *,
                 spread_percent: Decimal = Decimal("0.1"), rules: Mapping[str, Market] | None = None) -> None:
        super().__init__(quote, fee_percent)
        self.series = {s.market: s for s in series}
        self.half_spread = spread_percent / 200
        rules = rules or {}
        self.rules = {m: rules.get(m) or fallback(m) for m in self.series}
        self.time = 0

    def now(self) -> int:
        return self.time

    def clock(self) -> float:
        return float(self.time)

    def list_markets(self) -> list[Market]:
        return list(self.rules.values())

    def get_tickers(self, markets: Iterable[str]) -> dict[str, Ticker]:
        """Tickers of the markets that had a price by now; volume_24h is not replayed (0)."""
        tickers = {}
        for market in markets:
            price = self._series(market).last(self.time)
            if price is not None:
                decimals = self.rules[market].price_decimals
                last = to_decimal(price)
                tickers[market] = Ticker(market, self.time, last,
                                         bid=round_down(last * (1 - self.half_spread), decimals),
                                         ask=round_up(last * (1 + self.half_spread), decimals), volume_24h=ZERO)
        return tickers

    def get_candles(self, market: str, interval: int, since: int | None = None) -> list[Candle]:
        """Closed candles opening at or after `since`, then the open one as its open price only.

        Only the series' own interval is replayed: a venue without candles of
        another interval has none to give.
        """
        series = self._series(market)
        if interval != series.interval:
            return []
        lo = 0 if since is None else bisect_left(series.ts, since)
        hi = series.closed(self.time)
        candles = [series.candle(i) for i in range(lo, hi)]
        if hi < len(series) and series.ts[hi] <= self.time and hi >= lo:
            price = to_decimal(series.open[hi])
            candles.append(Candle(series.ts[hi], price, price, price, price, ZERO, closed=False))
        return candles

    def _series(self, market: str) -> Series:
        try:
            return self.series[market]
        except KeyError:
            raise UnknownMarket(f"the replay has no market {market}", exchange=self.name) from None

    # The replay is prices only: PaperPlatform wrapped around it fills the orders.
    def _submit(self, market: Market, side: str, volume: Decimal, price: Decimal, ref: str) -> Order:
        raise self._no_orders()

    def get_order(self, ref: str, order_id: str = "") -> Order | None:
        raise self._no_orders()

    def get_order_history(self) -> list[Order]:
        raise self._no_orders()

    def get_account_info(self) -> AccountInfo:
        raise self._no_orders()

    def _no_orders(self) -> PermanentError:
        return PermanentError("the replay fills no orders: wrap it in PaperPlatform", exchange=self.name,
                              refused=True)
