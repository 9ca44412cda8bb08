"""Kraken's names and order rules, read from an AssetPairs reply: the platform reads them live, the
backtest from a saved reply, without the HTTP client's imports (some 60 ms a start)."""
from __future__ import annotations

from typing import Any

from includes.model import Market
from includes.money import to_decimal

TO_COMMON = {"XBT": "BTC", "XDG": "DOGE"}
FROM_COMMON = {v: k for k, v in TO_COMMON.items()}


def market_of_pair(key: str, pair: dict[str, Any]) -> Market | None:
    """The Market of one AssetPairs entry, with the pair's order rules; None for a dark-pool twin
    or a pair without a websocket name.  The backtest reads a saved AssetPairs reply through it."""
    if key.endswith(".d") or "/" not in pair.get("wsname", ""):
        return None
    base_alt, quote_alt = pair["wsname"].split("/")
    base, quote = TO_COMMON.get(base_alt, base_alt), TO_COMMON.get(quote_alt, quote_alt)
    status = str(pair.get("status", "online"))
    return Market(symbol=f"{base}/{quote}", base=base, quote=quote, exchange_symbol=key,
                  status=status, available=status == "online",
                  price_decimals=int(pair["pair_decimals"]), volume_decimals=int(pair["lot_decimals"]),
                  min_volume=to_decimal(pair.get("ordermin", "0"), "ordermin"),
                  min_cost=to_decimal(pair.get("costmin", "0"), "costmin"),
                  cost_decimals=int(pair.get("cost_decimals", 8)))
