"""The paper platform (dry-run): Kraken's prices, rounding and fees, simulated fills."""
from __future__ import annotations

from decimal import Decimal

import pytest

from includes.agent import new_ref
from includes.errors import InsufficientFunds, OrderTooSmall
from includes.platforms.paper import PaperPlatform


@pytest.fixture
def paper(kraken_venue, tmp_path):
    return PaperPlatform(kraken_venue.platform(), tmp_path / "paper.json", Decimal(100))


@pytest.mark.parametrize("currency, amount", [("BTC", "5"), ("ETH", "7.5"), ("XRP", "5"), ("SOL", "12")])
def test_a_paper_fill_is_the_exchange_fill_to_the_last_digit(kraken_venue, paper, currency, amount):
    simulated = paper.buy(Decimal(amount), currency, new_ref())
    real = kraken_venue.platform().buy(Decimal(amount), currency, new_ref())
    fields = ("market", "side", "status", "volume", "filled", "price", "cost", "fee")
    assert [getattr(simulated, f) for f in fields] == [getattr(real, f) for f in fields]
    back_sim = paper.sell(simulated.filled, currency, new_ref())
    back_real = kraken_venue.platform().sell(real.filled, currency, new_ref())
    assert [getattr(back_sim, f) for f in fields] == [getattr(back_real, f) for f in fields]


def test_no_private_endpoint_is_called(kraken_venue, paper):
    paper.buy(Decimal(5), "BTC", new_ref())
    paper.get_account_info()
    paper.get_order_history()
    assert set(kraken_venue.sim.calls) <= {"AssetPairs", "Ticker", "Time"}


def test_the_ledger_lasts_across_runs_and_a_ref_fills_once(kraken_venue, tmp_path, paper):
    ref = new_ref()
    order = paper.buy(Decimal(5), "BTC", ref)
    again = PaperPlatform(kraken_venue.platform(), tmp_path / "paper.json", Decimal(100))
    assert again.buy(Decimal(5), "BTC", ref) == order
    assert again.get_order(ref) == order
    assert again.get_account_info().balance("EUR") == Decimal(100) - order.cost - order.fee
    assert again.get_account_info().balance("BTC") == order.filled


def test_funds_and_minimums_are_enforced(kraken_venue, tmp_path):
    poor = PaperPlatform(kraken_venue.platform(), tmp_path / "p.json", Decimal(4))
    with pytest.raises(InsufficientFunds, match="paper account has 4 EUR"):
        poor.buy(Decimal(5), "BTC", new_ref())
    with pytest.raises(OrderTooSmall):
        poor.buy(Decimal(1), "BTC", new_ref())
    with pytest.raises(InsufficientFunds, match="paper account has 0 BTC"):
        poor.sell(Decimal("0.001"), "BTC", new_ref())
