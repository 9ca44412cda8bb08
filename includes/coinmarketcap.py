"""CoinMarketCap's global metrics: total market cap, 24 h volume, BTC dominance."""
from __future__ import annotations

import json
from decimal import Decimal

import requests

from includes.errors import AuthenticationError, ExchangeError, PermanentError, RateLimited, TemporaryError
from includes.model import GlobalMetrics

PATH = "/v1/global-metrics/quotes/latest"


def fetch_global_metrics(api_url: str, key: str, quote: str, now: int, timeout: float = 15,
                         session: requests.Session | None = None) -> GlobalMetrics:
    """One call; the key travels in a header so it stays out of URLs and logs."""
    http = session or requests.Session()
    try:
        reply = http.get(api_url.rstrip("/") + PATH, params={"convert": quote}, timeout=timeout,
                         headers={"X-CMC_PRO_API_KEY": key, "Accept": "application/json"})
    except requests.Timeout:
        raise TemporaryError(f"no reply within {timeout:g} s", exchange="coinmarketcap") from None
    except requests.RequestException as exc:
        raise TemporaryError(f"connection failed ({type(exc).__name__})", exchange="coinmarketcap") from None
    finally:
        if session is None:
            http.close()
    try:
        body = json.loads(reply.text, parse_float=Decimal, parse_int=int)
        status = body["status"]
        code = int(status.get("error_code") or 0)
    except (ValueError, KeyError, TypeError):
        cls = TemporaryError if reply.status_code >= 500 or reply.status_code == 200 else PermanentError
        raise cls("reply is not CoinMarketCap's JSON envelope", exchange="coinmarketcap",
                  status=reply.status_code) from None
    if code or reply.status_code != 200:
        raise _error(code, reply.status_code)(
            str(status.get("error_message") or "error"), exchange="coinmarketcap",
            status=reply.status_code, code=str(code))
    try:
        data = body["data"]
        q = data["quote"][quote]
        return GlobalMetrics(ts=now, quote=quote, total_market_cap=Decimal(str(q["total_market_cap"])),
                             total_volume_24h=Decimal(str(q["total_volume_24h"])),
                             btc_dominance=Decimal(str(data["btc_dominance"])),
                             active_cryptocurrencies=int(data["active_cryptocurrencies"]))
    except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
        raise TemporaryError(f"malformed global metrics ({exc!r})", exchange="coinmarketcap") from None


def _error(code: int, http_status: int) -> type[ExchangeError]:
    if code in (1001, 1002, 1003, 1004, 1005, 1006, 1007) or http_status in (401, 402, 403):
        return AuthenticationError
    if code in (1008, 1009, 1010, 1011) or http_status == 429:
        return RateLimited
    if http_status >= 500:
        return TemporaryError
    return PermanentError
