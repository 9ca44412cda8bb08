"""Decimal helpers: money never touches a float."""
from __future__ import annotations

from decimal import ROUND_DOWN, ROUND_HALF_EVEN, ROUND_UP, Decimal, InvalidOperation

ZERO = Decimal(0)


def to_decimal(value: object, what: str = "value") -> Decimal:
    """Exact Decimal from an API string, int or (as a last resort) float.

    Floats go through str() so that 0.1 stays 0.1 rather than its binary
    expansion; bittrex-api and CoinMarketCap send JSON numbers.
    """
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, (int, str)) and not isinstance(value, bool):
        try:
            result = Decimal(value.strip() if isinstance(value, str) else value)
        except InvalidOperation:
            raise ValueError(f"{what}: {value!r} is not a number") from None
    elif isinstance(value, float):
        result = Decimal(repr(value))
    else:
        raise ValueError(f"{what}: {value!r} is not a number")
    if not result.is_finite():
        raise ValueError(f"{what}: {value!r} is not a finite number")
    return result


def round_down(value: Decimal, decimals: int) -> Decimal:
    """Truncate to `decimals` places: a volume never exceeds what was paid for."""
    return value.quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_DOWN)


def round_half_even(value: Decimal, decimals: int) -> Decimal:
    return value.quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_HALF_EVEN)


def round_up(value: Decimal, decimals: int) -> Decimal:
    """Away from zero: what an exchange does to the fee it charges."""
    return value.quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_UP)


def percent_change(old: Decimal, new: Decimal) -> Decimal:
    """100 * new / old - 100, the seed's trend and gain formula."""
    if old <= 0:
        raise ValueError(f"percent change from a non-positive price {old}")
    return new * 100 / old - 100
