"""Contract fixtures: each platform, whole and real, against its simulator.

`venue` is parametrized over kraken, bittrex, ccxt-kraken and paper (paper over
kraken).  A Venue builds fresh clients of one funded account (EUR 1000, BTC
0.01) and reads and sets the simulator's truth in the project's names:

    def test_x(venue):
        order = venue.platform().buy(Decimal(5), "BTC", ref)
        assert venue.balance("EUR") == 1000 - order.cost - order.fee

`bittrex_venue` is the Bittrex one alone; `bittrex_job_config` makes a whole
Config whose exchange is that simulator, for the cron jobs (like
tests/plugins/jobs.py's `job_config` for Kraken).
"""
from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol

import pytest
import requests
import yaml

from includes.config import Config, load_config
from includes.files import write_private
from includes.platforms.base import Platform
from simulators.bittrex import BittrexSimulator
from simulators.kraken import KrakenSimulator, new_credentials

BALANCES = {"EUR": "1000", "BTC": "0.01"}
KRAKEN_ASSETS = {"EUR": "ZEUR", "BTC": "XXBT", "ETH": "XETH", "ADA": "ADA"}
KRAKEN_PAIRS = {"BTC/EUR": "XXBTZEUR", "ETH/EUR": "XETHZEUR", "ADA/EUR": "ADAEUR"}
BITTREX_KEY, BITTREX_SECRET = "contract-key", "contract-secret"  # Bittrex secrets are plain text
FAST = dict(timeout=2, retries=2)


class Venue(Protocol):
    """One venue's platform and its simulator's truth, in the project's names."""

    name: str
    wire: bool  # False for paper: no request to lose, no key to refuse

    def platform(self, **options: Any) -> Platform:
        """A new client of the funded account (another cron job); `options` override its settings."""

    def balance(self, currency: str) -> Decimal: ...
    def set_balance(self, currency: str, amount: str) -> None: ...
    def bid_ask(self, symbol: str) -> tuple[Decimal, Decimal]: ...
    def close_market(self, symbol: str) -> None: ...
    def order_calls(self) -> int: ...
    def lookup_calls(self) -> int:
        """Requests that search the account's orders (for one of ours, by its ref)."""

    def fail_next_order(self, fault: str, **params: Any) -> None:
        """lost_reply: the order is carried out, its reply lost; http_500: it never reaches the book
        (with after=True: it does, then the reply is the error page)."""

    def fail_next_lookups(self, fault: str, times: int) -> None:
        """The next `times` requests that ask about orders (by id or by ref) fail with `fault`."""

    def script_next_order(self, **lifecycle: Any) -> None:
        """The next order goes through the simulator's `lifecycle` (pending, open, fill, end, hidden, unit)."""

    def wrong_key(self) -> dict[str, str]:
        """Options of a client whose key or secret the venue refuses."""

    def slow_next_balance(self, seconds: float) -> None: ...
    def balance_calls(self) -> int: ...
    def close(self) -> None: ...


class KrakenSimVenue:
    name = "kraken"
    wire = True
    balance_method = "BalanceEx"

    def __init__(self, tmp_path: Path, sim: KrakenSimulator | None = None) -> None:
        from tests.plugins.platforms import START, KrakenVenue  # plugins import each other lazily

        self.sim = (sim or KrakenSimulator(clock=START)).start()
        key, secret = self.sim.add_account(balances={KRAKEN_ASSETS[c]: v for c, v in BALANCES.items()},
                                           tier="pro")
        self.kraken = KrakenVenue(self.sim, key, secret, tmp_path)

    def platform(self, **options: Any) -> Platform:
        return self.kraken.platform(**options)

    def balance(self, currency: str) -> Decimal:
        return self.sim.balances(self.kraken.key).get(KRAKEN_ASSETS[currency], Decimal(0))

    def set_balance(self, currency: str, amount: str) -> None:
        self.sim.set_balance(self.kraken.key, KRAKEN_ASSETS[currency], amount)

    def bid_ask(self, symbol: str) -> tuple[Decimal, Decimal]:
        return self.sim.bid_ask(KRAKEN_PAIRS[symbol])

    def close_market(self, symbol: str) -> None:
        self.sim.set_pair_status(KRAKEN_PAIRS[symbol], "cancel_only")

    def order_calls(self) -> int:
        return self.sim.calls["AddOrder"]

    def lookup_calls(self) -> int:
        return self.sim.calls["OpenOrders"] + self.sim.calls["ClosedOrders"]

    def fail_next_order(self, fault: str, **params: Any) -> None:
        self.sim.inject("AddOrder", fault, **params)

    def fail_next_lookups(self, fault: str, times: int) -> None:
        for method in ("QueryOrders", "OpenOrders", "ClosedOrders"):
            self.sim.inject(method, fault, times=times)

    def script_next_order(self, **lifecycle: Any) -> None:
        self.sim.inject("AddOrder", "lifecycle", **lifecycle)

    def wrong_key(self) -> dict[str, str]:
        return {"secret": new_credentials()[1]}

    def slow_next_balance(self, seconds: float) -> None:
        self.sim.inject(self.balance_method, "delay", seconds=seconds)

    def balance_calls(self) -> int:
        return self.sim.calls[self.balance_method]

    def close(self) -> None:
        self.sim.stop()


class CcxtKrakenVenue(KrakenSimVenue):
    name = "ccxt-kraken"

    def __init__(self, tmp_path: Path) -> None:
        from tests.plugins.platforms import START

        pytest.importorskip("ccxt")
        super().__init__(tmp_path, KrakenSimulator(clock=START))
        self.state_dir = tmp_path

    def platform(self, **options: Any) -> Platform:
        from includes.platforms.ccxt import CcxtPlatform

        settings = dict(exchange_id="kraken", api_url=self.sim.url, key=self.kraken.key,
                        secret=self.kraken.secret, state_dir=self.state_dir, calls_per_second=1000, **FAST)
        return CcxtPlatform(**settings | options)


class PaperVenue(KrakenSimVenue):
    """Paper trading over the Kraken simulator; its truth is the ledger file."""

    name = "paper"
    wire = False

    def __init__(self, tmp_path: Path) -> None:
        super().__init__(tmp_path)
        self.ledger = tmp_path / "paper.json"
        self._write(dict(BALANCES))

    def platform(self, **options: Any) -> Platform:
        from includes.platforms.paper import PaperPlatform

        return PaperPlatform(self.kraken.platform(**options), self.ledger, Decimal(BALANCES["EUR"]))

    def _read(self) -> dict[str, Any]:
        return json.loads(self.ledger.read_text())

    def _write(self, balances: dict[str, str], orders: dict | None = None) -> None:
        self.ledger.write_text(json.dumps({"balances": balances, "orders": orders or {}}))

    def balance(self, currency: str) -> Decimal:
        return Decimal(self._read()["balances"].get(currency, "0"))

    def set_balance(self, currency: str, amount: str) -> None:
        data = self._read()
        self._write(data["balances"] | {currency: amount}, data["orders"])

    def order_calls(self) -> int:
        return len(self._read()["orders"])


class BittrexSimVenue:
    name = "bittrex"
    wire = True

    def __init__(self, tmp_path: Path, **options: Any) -> None:
        self.sim = BittrexSimulator(**options).start()
        self.sim.add_account(BITTREX_KEY, BITTREX_SECRET, BALANCES)

    def platform(self, **options: Any) -> Platform:
        from includes.platforms.bittrex import BittrexPlatform

        settings = dict(api_url=self.sim.url + "/v3", key=BITTREX_KEY, secret=BITTREX_SECRET,
                        calls_per_second=1000, **FAST)
        return BittrexPlatform(**settings | options)

    def balance(self, currency: str) -> Decimal:
        return self.sim.balances(BITTREX_KEY).get(currency, Decimal(0))

    def set_balance(self, currency: str, amount: str) -> None:
        totals = {c: str(v) for c, v in self.sim.balances(BITTREX_KEY).items()}
        self.sim.add_account(BITTREX_KEY, BITTREX_SECRET, totals | {currency: amount})

    def bid_ask(self, symbol: str) -> tuple[Decimal, Decimal]:
        """Read over the wire, as any client of the simulator would."""
        t = requests.get(f"{self.sim.url}/v3/markets/{symbol.replace('/', '-')}/ticker", timeout=5).json()
        return Decimal(t["bidRate"]), Decimal(t["askRate"])

    def close_market(self, symbol: str) -> None:
        self.sim.set_market_status(symbol.replace("/", "-"), "OFFLINE", "closed for the test")

    def order_calls(self) -> int:
        return self.sim.calls["POST /v3/orders"]

    def lookup_calls(self) -> int:
        return self.sim.calls["GET /v3/orders/open"] + self.sim.calls["GET /v3/orders/closed"]

    def fail_next_order(self, fault: str, **params: Any) -> None:
        self.sim.inject("POST /v3/orders", fault, **params)

    def fail_next_lookups(self, fault: str, times: int) -> None:
        for where in ("GET /v3/orders/{orderId}", "GET /v3/orders/open", "GET /v3/orders/closed"):
            self.sim.inject(where, fault, times=times)

    def script_next_order(self, **lifecycle: Any) -> None:
        self.sim.inject("POST /v3/orders", "lifecycle", **lifecycle)

    def wrong_key(self) -> dict[str, str]:
        return {"secret": "not-the-secret"}

    def slow_next_balance(self, seconds: float) -> None:
        self.sim.inject("GET /v3/balances", "delay", seconds=seconds)

    def balance_calls(self) -> int:
        return self.sim.calls["GET /v3/balances"]

    def close(self) -> None:
        self.sim.stop()


VENUES: dict[str, Callable[[Path], Venue]] = {
    "kraken": KrakenSimVenue, "bittrex": BittrexSimVenue, "ccxt-kraken": CcxtKrakenVenue, "paper": PaperVenue}


@pytest.fixture(params=list(VENUES))
def venue(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Venue]:
    built = VENUES[request.param](tmp_path)
    yield built
    built.close()


@pytest.fixture
def bittrex_venue(tmp_path: Path) -> Iterator[BittrexSimVenue]:
    built = BittrexSimVenue(tmp_path)
    yield built
    built.close()


@pytest.fixture
def bittrex_job_config(tmp_path: Path, bittrex_venue: BittrexSimVenue) -> Callable[..., Config]:
    """cfg = bittrex_job_config(trading={"dry_run": False}): paths in tmp_path, the exchange
    the Bittrex simulator with its funded key, the databases SQLite files."""
    from tests.plugins.jobs import deep_merge

    key_file = tmp_path / "bittrex.key"
    write_private(key_file, f"{BITTREX_KEY}\n{BITTREX_SECRET}\n")

    def make(**sections: Any) -> Config:
        data = {
            "paths": {"log": str(tmp_path / "log"), "tmp": str(tmp_path / "tmp"), "img": str(tmp_path / "img")},
            "exchange": {"name": "bittrex", "api_url": bittrex_venue.sim.url + "/v3", "key_file": str(key_file),
                         "public_calls_per_second": 1000, "timeout": 2, "retries": 1},
            "trading": {"stop_file": str(tmp_path / "stop"), "dry_run_file": str(tmp_path / "dry-run"),
                        "fee_percent": "0.25"},
            "storage": {"market_db": f"sqlite:///{tmp_path / 'market.db'}",
                        "state": f"sqlite:///{tmp_path / 'state.db'}"},
        }
        path = tmp_path / "config.yaml"
        path.write_text(yaml.safe_dump(deep_merge(data, sections)))
        return load_config(path)

    return make
