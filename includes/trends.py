"""Trends (the seed's "tendance"): the percent change of a price over a window.

One place for the arithmetic, used by the live agent and the backtest alike.
A candle counts only once it has closed, so nothing looks ahead.
"""
from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from decimal import Decimal
from typing import TYPE_CHECKING

from includes.money import percent_change

if TYPE_CHECKING:
    from includes.model import Candle


def price_at(candles: Sequence[Candle], ts: int, interval: int) -> Decimal | None:
    """Close of the last candle that had closed by `ts`; None when none had.

    `candles` are of `interval` minutes, oldest first.
    """
    closes_by = [c.ts + interval * 60 for c in candles]
    i = bisect_right(closes_by, ts)
    return candles[i - 1].close if i else None


def trends(candles: Sequence[Candle], now: int, windows: Sequence[int], interval: int,
           current: Decimal | None = None) -> dict[int, Decimal]:
    """Percent change over each window of hours that the candles cover.

    `current` is the price now (a ticker); by default the close of the last
    candle that has closed.  A window whose start no candle had closed by is
    left out, for the caller to fill from elsewhere.
    """
    now_price = current if current is not None else price_at(candles, now, interval)
    if now_price is None or not candles:
        return {}
    return changes(now_price, {hours: price_at(candles, now - hours * 3600, interval) for hours in windows})


def changes(now_price: Decimal, then: dict[int, Decimal | None]) -> dict[int, Decimal]:
    """Percent change from each window's opening price (`then`, by hours; None when unknown) to now."""
    return {hours: percent_change(price, now_price) for hours, price in then.items()
            if price is not None and price > 0}
