"""Dry-run: real prices, simulated fills.

Every decision is taken as in live; the orders fill here against the real
venue's ask and bid, with the configured fee, the venue's rounding and minimums.
No private endpoint of the venue is ever called.  The paper account lives in
a JSON file of its own (tmp/paper-<namespace>.json), apart from any live state.
"""
from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import asdict
from decimal import Decimal
from pathlib import Path
from typing import Any

from includes.errors import InsufficientFunds, StorageError
from includes.files import write_atomic
from includes.model import AccountInfo, Candle, Market, Order, Ticker
from includes.platforms.base import Platform


class PaperPlatform(Platform):
    name = "paper"

    def __init__(self, source: Platform, ledger: Path | None, start_balance: Decimal) -> None:
        """`ledger` None keeps the account in memory (a backtest: nothing outlives it)."""
        super().__init__(source.quote, source.fee_percent)
        self.source = source
        self.max_candles = source.max_candles
        self.ledger = ledger
        if ledger is not None and ledger.exists():
            self.balances, self.orders = _load(ledger)
        else:
            self.balances = {source.quote: start_balance}
            self.orders = {}

    # Market data comes from the real venue.
    def list_markets(self) -> list[Market]:
        return self.source.list_markets()

    def markets(self, only: Iterable[str] | None = None) -> dict[str, Market]:
        return self.source.markets(only)

    def canonical(self, currency: str) -> str:
        return self.source.canonical(currency)

    def get_tickers(self, markets: Iterable[str]) -> dict[str, Ticker]:
        return self.source.get_tickers(markets)

    def get_candles(self, market: str, interval: int, since: int | None = None) -> list[Candle]:
        return self.source.get_candles(market, interval, since)

    def now(self) -> int:
        return self.source.now()

    def clock(self) -> float:
        return self.source.clock()

    # The account and the fills are simulated.
    def get_account_info(self) -> AccountInfo:
        return AccountInfo(dict(self.balances))

    def _submit(self, market: Market, side: str, volume: Decimal, price: Decimal, ref: str) -> Order:
        """Filled at once at `price`, with Kraken's arithmetic: cost rounded half-even,
        the fee rounded up, both to cost_decimals.  A ref never fills twice."""
        if ref in self.orders:
            return self.orders[ref]
        cost, fee = market.charges(volume, price, self.fee_percent)
        base, quote = self.balances.get(market.base, Decimal(0)), self.balances.get(market.quote, Decimal(0))
        if side == "buy":
            if quote < cost + fee:
                raise InsufficientFunds(f"paper account has {quote} {market.quote}, the order needs "
                                        f"{cost + fee}", exchange=self.name, refused=True)
            base, quote = base + volume, quote - cost - fee
        else:
            if base < volume:
                raise InsufficientFunds(f"paper account has {base} {market.base}, the order sells "
                                        f"{volume}", exchange=self.name, refused=True)
            base, quote = base - volume, quote + cost - fee
        self.balances[market.base], self.balances[market.quote] = base, quote
        now = float(self.now())
        order = Order(ref=ref, order_id=f"PAPER-{len(self.orders) + 1:06d}", market=market.symbol,
                      side=side, status="closed", volume=volume, filled=volume, price=price,
                      cost=cost, fee=fee, opened_at=now, closed_at=now)
        self.orders[ref] = order
        self._save()
        return order

    def get_order(self, ref: str, order_id: str = "") -> Order | None:
        return self.orders.get(ref)

    def get_order_history(self) -> list[Order]:
        return sorted(self.orders.values(), key=lambda o: o.opened_at, reverse=True)

    def _save(self) -> None:
        if self.ledger is None:
            return
        data = {"saved_at": time.time(), "balances": {k: str(v) for k, v in self.balances.items()},
                "orders": {ref: _order_to_json(o) for ref, o in self.orders.items()}}
        write_atomic(self.ledger, json.dumps(data, indent=1))


def _load(ledger: Path) -> tuple[dict[str, Decimal], dict[str, Order]]:
    """The paper account saved in `ledger`, or one line saying it is corrupted and how to start anew."""
    try:
        data = json.loads(ledger.read_text(encoding="utf-8"))
        balances = {str(k): Decimal(v) for k, v in data["balances"].items()}
        if not all(v.is_finite() for v in balances.values()):
            raise ValueError("a balance is not a finite number")
        return balances, {str(ref): _order_from_json(o) for ref, o in data["orders"].items()}
    except OSError as exc:
        raise StorageError(f"{ledger}: the paper account cannot be read: {exc.strerror}") from None
    except (ValueError, TypeError, KeyError, AttributeError, ArithmeticError) as exc:
        reason = f"no {exc}" if isinstance(exc, KeyError) else str(exc)[:80] or type(exc).__name__
        raise StorageError(f"{ledger}: the paper account is corrupted ({reason}); move it aside to start a new "
                           f"one from trading.dry_run_balance: mv {ledger} {ledger}.bad") from None


def _order_to_json(order: Order) -> dict[str, Any]:
    return {k: str(v) if isinstance(v, Decimal) else v for k, v in asdict(order).items()}


def _order_from_json(data: dict[str, Any]) -> Order:
    decimals = ("volume", "filled", "price", "cost", "fee")
    fields: dict[str, Any] = {k: Decimal(v) if k in decimals else v for k, v in data.items()}
    return Order(**fields)
