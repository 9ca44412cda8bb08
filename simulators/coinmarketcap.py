"""Local CoinMarketCap simulator: GET /v1/global-metrics/quotes/latest (spec §5).

    with CoinMarketCapSimulator(api_keys=["k"]) as sim:
        sim.set_metrics(btc_dominance=52.1, total_market_cap=1.3e12)
        requests.get(sim.url + ENDPOINT, headers={"X-CMC_PRO_API_KEY": "k"},
                     params={"convert": "EUR"})

Values are kept in USD and converted with `rates` (units of a currency per
USD); numbers go out as JSON numbers, those of 10^12 and more in exponent form
(3.88E+12), as CMC printed them.  Faults come from simulators.http
(`inject(method_or_path, fault)`, "*" for any): http_500 (an HTML page),
malformed_json, delay (seconds=N: a client timeout) and lost_reply, plus
server_error here (HTTP 500 with CMC's JSON envelope).  Error messages are
our wording: the spec leaves them unconfirmed.
"""
from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from decimal import Decimal

from includes.money import to_decimal
from simulators.http import Fault, Reply, Request, SimulatorServer

ENDPOINT = "/v1/global-metrics/quotes/latest"
CURRENCY_IDS = {"1": "BTC", "1027": "ETH", "2781": "USD", "2790": "EUR", "2791": "GBP", "2797": "JPY"}
QUOTE_FIELDS = ("total_market_cap", "total_volume_24h", "total_volume_24h_reported",
                "altcoin_volume_24h", "altcoin_market_cap")
EXPONENT_FROM = Decimal(10) ** 12
CENT = Decimal("0.01")


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def dump(value: object) -> str:
    """JSON with Decimals as numbers, the large ones in exponent form."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)}: {dump(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(dump(v) for v in value) + "]"
    if isinstance(value, Decimal):
        return format(value, "E" if abs(value) >= EXPONENT_FROM else "f")
    return json.dumps(value)


class CoinMarketCapSimulator(SimulatorServer):
    """The global-metrics endpoint with key checks, a per-minute limit and faults."""

    ERROR_FAULTS = frozenset({"server_error"})

    def __init__(self, api_keys: Iterable[str] = (), rate_limit: int = 30, port: int = 0) -> None:
        """`rate_limit`: calls a key may make per real minute (30 on the basic plan)."""
        super().__init__(port=port)
        self.api_keys = set(api_keys)
        self.rate_limit = rate_limit
        self.data: dict[str, object] = {
            "active_cryptocurrencies": 8800, "total_cryptocurrencies": 26000, "active_market_pairs": 70500,
            "active_exchanges": 690, "total_exchanges": 7100,
            "btc_dominance": Decimal("51.234567"), "eth_dominance": Decimal("16.812345")}
        self.usd = {"total_market_cap": Decimal("1375000000000.12"), "total_volume_24h": Decimal("63150000000.5"),
                    "total_volume_24h_reported": Decimal("327000000000.25"),
                    "altcoin_volume_24h": Decimal("44560000000.75"), "altcoin_market_cap": Decimal("670500000000.5")}
        self.rates = {"USD": Decimal(1), "EUR": Decimal("0.92"), "GBP": Decimal("0.8"), "JPY": Decimal("150"),
                      "BTC": Decimal("0.000027"), "ETH": Decimal("0.0005")}
        self.last_updated = time.time()
        self._windows: dict[str, tuple[int, int]] = {}  # key -> (real minute, calls in it)

    def set_metrics(self, *, rates: dict[str, object] | None = None, last_updated: float | None = None,
                    **fields: object) -> None:
        """Quote fields (total_market_cap, ...) are in USD; any other field goes into `data` as given."""
        with self.lock:
            for name, value in fields.items():
                if name in QUOTE_FIELDS:
                    self.usd[name] = to_decimal(value, name)
                else:
                    self.data[name] = value if isinstance(value, int) else to_decimal(value, name)
            for currency, value in (rates or {}).items():
                self.rates[currency] = to_decimal(value, currency)
            self.last_updated = time.time() if last_updated is None else last_updated

    def error_reply(self, fault: Fault) -> Reply:
        if fault.kind == "server_error":
            return self._error(500, 500, "An internal server error occurred.")
        return super().error_reply(fault)

    def handle(self, request: Request) -> Reply:
        started = time.monotonic()
        if request.path != ENDPOINT:
            return self._error(404, 404, f"{request.path} is not an endpoint of this simulator.")
        key = request.headers.get("X-CMC_PRO_API_KEY") or request.query.get("CMC_PRO_API_KEY")
        if not key:
            return self._error(401, 1002, "API key missing.")
        if key not in self.api_keys:
            return self._error(401, 1001, "This API Key is invalid.")
        with self.lock:
            if not self._allow(key):
                return self._error(429, 1008, "You've exceeded your API Key's HTTP request rate limit. "
                                              "Rate limits reset every minute.")
            query = {k: v for k, v in request.query.items() if k != "CMC_PRO_API_KEY"}
            unknown = sorted(set(query) - {"convert", "convert_id"})
            if unknown:
                return self._error(400, 400, f'"{unknown[0]}" is not allowed')
            if "convert" in query and "convert_id" in query:
                return self._error(400, 400, '"convert" and "convert_id" cannot be used together')
            quotes, problem = self._conversions(query)
            if problem:
                return self._error(400, 400, problem)
            return self._reply(200, {"timestamp": iso(time.time()), "error_code": 0, "error_message": None,
                                     "elapsed": int((time.monotonic() - started) * 1000),
                                     "credit_count": len(quotes), "notice": None},
                               {**self.data, "last_updated": iso(self.last_updated),
                                "quote": {label: self._quote(symbol) for label, symbol in quotes}})

    def _conversions(self, query: dict[str, str]) -> tuple[list[tuple[str, str]], str]:
        """[(key in `quote`, currency symbol)] asked for, or an error message."""
        if "convert_id" in query:
            ids = [part.strip() for part in query["convert_id"].split(",")]
            bad = [i for i in ids if i not in CURRENCY_IDS]
            pairs = [(i, CURRENCY_IDS.get(i, "")) for i in ids]
            return pairs, f'Invalid value for "convert_id": "{",".join(bad)}"' if bad else ""
        symbols = [part.strip().upper() for part in query.get("convert", "USD").split(",")]
        bad = [s for s in symbols if s not in self.rates]
        return [(s, s) for s in symbols], f'Invalid value for "convert": "{",".join(bad)}"' if bad else ""

    def _quote(self, symbol: str) -> dict[str, object]:
        rate = self.rates[symbol]
        return {**{name: (usd * rate).quantize(CENT) for name, usd in self.usd.items()},
                "last_updated": iso(self.last_updated)}

    def _allow(self, key: str) -> bool:
        """Per key and real minute; the count resets when the minute turns (spec §5)."""
        minute = int(time.time() // 60)
        window, count = self._windows.get(key, (minute, 0))
        count = count + 1 if window == minute else 1
        self._windows[key] = (minute, count)
        return count <= self.rate_limit

    def _error(self, http_status: int, code: int, message: str) -> Reply:
        return self._reply(http_status, {"timestamp": iso(time.time()), "error_code": code,
                                         "error_message": message, "elapsed": 0, "credit_count": 0,
                                         "notice": None})

    @staticmethod
    def _reply(http_status: int, status: dict, data: dict | None = None) -> Reply:
        envelope = {"status": status} if data is None else {"status": status, "data": data}
        return Reply(http_status, dump(envelope).encode())


def main() -> None:
    parser = argparse.ArgumentParser(description="CoinMarketCap global-metrics simulator on 127.0.0.1")
    parser.add_argument("--port", type=int, default=8082)
    parser.add_argument("--key", default="simulator-key")
    args = parser.parse_args()
    with CoinMarketCapSimulator(api_keys=[args.key], port=args.port) as sim:
        print(f"CoinMarketCap simulator: {sim.url}{ENDPOINT}  key {args.key}  (Ctrl-C stops it)", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
