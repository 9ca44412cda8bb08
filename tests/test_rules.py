"""The decision rules (includes/rules.py): the sell bounds are the inverse of the net gain, so
that the backtest's Gate, which uses them, calls the agent exactly where its rule fires; and
the rules stay pure, importing nothing but money, the value types and the config's types."""
from __future__ import annotations

from decimal import Decimal as D

from hypothesis import given, settings
from hypothesis import strategies as st

from includes.config import TradingConfig
from includes.rules import hold_deadline, net_gain, sell_bids, sell_reason
from tests.test_layers import ROOT, imports

amounts = st.decimals(min_value=D("0.01"), max_value=D(10_000), places=8)
configs = st.builds(lambda sell, stop, fee: TradingConfig(sell_percent=sell, stop_loss_percent=stop,
                                                          fee_percent=fee),
                    st.decimals(D("0.01"), D(50), places=2), st.none() | st.decimals(D("0.01"), D(90), places=2),
                    st.sampled_from([D(0), D("0.1"), D("0.26"), D("1.5")]))
NUDGE = D("1.000000000001")          # far above Decimal's rounding, far below any price step


@settings(max_examples=200, deadline=None)
@given(trading=configs, value=amounts, volume=amounts)
def test_the_sell_bids_are_where_the_rule_fires(trading, value, volume):
    high, low = sell_bids(trading, value, volume)
    assert sell_reason(trading, net_gain(value, volume, high * NUDGE, trading.fee_percent), 0, 0).startswith(
        "net gain")
    below = sell_reason(trading, net_gain(value, volume, high / NUDGE, trading.fee_percent), 0, 0)
    assert below is None or below.startswith("net loss")
    if low is None:
        assert trading.stop_loss_percent is None
        return
    assert sell_reason(trading, net_gain(value, volume, low / NUDGE, trading.fee_percent), 0, 0).startswith(
        "net loss")
    assert sell_reason(trading, net_gain(value, volume, min(low * NUDGE, high / NUDGE), trading.fee_percent),
                       0, 0) is None


def test_the_sell_reasons_say_which_rule_and_the_hold_deadline_is_when_max_hold_fires():
    trading = TradingConfig(sell_percent=D(3), stop_loss_percent=D(5), max_hold_hours=2)
    assert sell_reason(trading, D("3.004"), 0, 0) == "net gain 3.00% >= sell_percent 3%"
    assert sell_reason(trading, D(-5), 0, 0) == "net loss -5.00% hit stop_loss_percent 5%"
    deadline = hold_deadline(trading, 1000)
    assert sell_reason(trading, D(0), 1000, int(deadline) - 1) is None
    assert sell_reason(trading, D(0), 1000, int(deadline)) == "held 2.0 h >= max_hold_hours 2"
    assert hold_deadline(TradingConfig(), 1000) is None


def test_the_gain_counts_both_fees():
    # 10 paid (the buy's fee in it), 0.1 sold at 101 less 1%: 99.99 - 100 percent
    assert net_gain(D(10), D("0.1"), D(101), D(1)) == D("-0.01")


def test_the_rules_are_pure():
    assert {m for m in imports(ROOT / "includes" / "rules.py") if m.startswith("includes")} <= {
        "includes.money", "includes.model"}
