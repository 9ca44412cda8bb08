"""The agent's decision rules, in one place: net gain, why to sell and at which bids, buy room.

The agent decides with them; the backtest's Gate derives from them when the
agent could act; the plots and `status` show the gain the agent would see.
A rule changed here changes all of them at once, so the backtest can never
report another strategy than the one the agent runs.  Pure functions over
Decimal: no I/O, no store, no platform.
"""
from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING

from includes.money import percent_change

if TYPE_CHECKING:
    from includes.config import TradingConfig


def net_proceeds(volume: Decimal, bid: Decimal, fee_percent: Decimal) -> Decimal:
    """What selling `volume` at `bid` brings, the sell fee paid."""
    return volume * bid * (1 - fee_percent / 100)


def net_gain(value: Decimal, volume: Decimal, bid: Decimal, fee_percent: Decimal) -> Decimal:
    """100 * net proceeds / quote spent - 100: both fees counted (`value` paid the buy's)."""
    return percent_change(value, net_proceeds(volume, bid, fee_percent))


def sell_reason(trading: TradingConfig, gain: Decimal, held_since: int, now: int) -> str | None:
    """Why a thread bought at `held_since` with net `gain` sells now; None: it holds."""
    if gain >= trading.sell_percent:
        return f"net gain {gain:.2f}% >= sell_percent {trading.sell_percent}%"
    if trading.stop_loss_percent is not None and gain <= -trading.stop_loss_percent:
        return f"net loss {gain:.2f}% hit stop_loss_percent {trading.stop_loss_percent}%"
    if trading.max_hold_hours is not None and now - held_since >= trading.max_hold_hours * 3600:
        return f"held {(now - held_since) / 3600:.1f} h >= max_hold_hours {trading.max_hold_hours}"
    return None


def bid_for_gain(value: Decimal, volume: Decimal, gain: Decimal, fee_percent: Decimal) -> Decimal:
    """The bid at which net_gain is `gain`: its inverse, for the thresholds below."""
    return value * (1 + gain / 100) / (volume * (1 - fee_percent / 100))


def sell_bids(trading: TradingConfig, value: Decimal, volume: Decimal) -> tuple[Decimal, Decimal | None]:
    """The bids at which a held thread sells on price: from the first (sell_percent) up, and at
    the second (stop_loss_percent; None when unset) and below.  Decimal division rounds at 28
    digits, so a bid within a rounding of either bound is not decided here: the Gate, which
    uses these, calls the agent with a margin around them."""
    high = bid_for_gain(value, volume, trading.sell_percent, trading.fee_percent)
    stop = trading.stop_loss_percent
    return high, None if stop is None else bid_for_gain(value, volume, -stop, trading.fee_percent)


def hold_deadline(trading: TradingConfig, held_since: int) -> float | None:
    """When max_hold_hours sells a thread bought at `held_since`; None: never."""
    return None if trading.max_hold_hours is None else held_since + trading.max_hold_hours * 3600


def run_budget(trading: TradingConfig, invested: Decimal, free: Decimal) -> Decimal:
    """The money the threads may tie up this run: the configured budget, or less when what they
    hold plus the free balance is less (a loss is not made good from elsewhere)."""
    return min(trading.budget, invested + free)


def spendable(budget: Decimal, committed: Decimal, free: Decimal) -> Decimal:
    """What the next buy may cost: the free balance, within what the budget leaves.  Compared with
    an order's real cost (Market.charges), so rounding never refuses a thread the money covers."""
    return min(free, budget - committed)


def under_cap(trading: TradingConfig, held: int) -> bool:
    """May one more thread buy a currency `held` threads already hold (the currency cap)?"""
    return held < trading.currency_cap


def cooldown_until(trading: TradingConfig, last_sell: int | str | None) -> float | None:
    """When a currency last sold at `last_sell` (platform seconds) may be bought again; None: now."""
    if not trading.rebuy_cooldown_minutes or last_sell is None:
        return None
    return int(last_sell) + trading.rebuy_cooldown_minutes * 60
