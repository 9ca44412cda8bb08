"""Orders against exchanges that fail as real ones do: a seeded random walk.

Each step moves the prices (enough to trigger buys and sells), may inject a fault
on any exchange call, before the order reaches the book or after it (5xx HTML,
malformed JSON, a dropped connection, a lost or late reply, "busy", "deadline
elapsed", rate limits, stale nonces...), may script the next order's lifecycle
(pending, open, partly filled, canceled, late to show), then runs the real agent:
in this process through `run_agent` (most steps), or as a real `trade_agent.py`
process that is killed with SIGKILL at a random moment, or whose wall clock is set
hours ahead or behind (faketime).  After every run the journal, the threads and
the simulator's own ground truth must agree:

- every exchange order has exactly one journal row, and no reference was placed twice;
- a row the journal calls final has the exchange's fills; "failed" is never on the exchange;
- each thread not in flight holds exactly what its orders' final fills leave it;
- per currency, the balance change equals what the threads hold plus the fills of
  orders still in flight (no untracked coins, no double sell);
- no buy costs more than max_per_trade, the quote balance never goes negative, and
  what the threads tie up never exceeds the budget;
- once the faults stop, two clean runs settle every open row.

The walk is replayable: CRONTRADER_FAULT_SEED=N.  CRONTRADER_SOAK=1 runs a long soak.
"""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from includes.agent import run_agent
from includes.config import Config, load_config
from includes.errors import CrontraderError
from includes.files import write_private
from includes.model import OPEN, Candle
from includes.platforms import make_platform
from includes.platforms.keygate import FileLedger
from includes.storage.journal import left_as_dust, positions
from includes.storage.marketdb import MarketDB
from includes.storage.state import ACTIVE, BUYING, SELLING, open_state_store
from tests.plugins.agent import wall_clock_env

ROOT = Path(__file__).resolve().parent.parent
SOAK = os.environ.get("CRONTRADER_SOAK") == "1"
SEED = int(os.environ.get("CRONTRADER_FAULT_SEED", "20261201"))
STEPS = {"kraken": 650, "bittrex": 600, "ccxt-kraken": 750}   # 2,000 in all
SCALE = float(os.environ.get("CRONTRADER_FAULT_SCALE", "20" if SOAK else "1"))   # 0.1: a quick look
START = 1_700_000_000
D = Decimal
MAX_PER_TRADE = D(20)
MAX_THREADS = 3
TIMEOUT = 0.4           # the client's timeout, seconds: a `delay` fault outlasts it

pytestmark = [pytest.mark.slow]


@dataclass
class ExchangeOrder:
    """The simulator's truth about one order."""
    ref: str
    side: str
    currency: str
    final: bool
    filled: Decimal
    cost: Decimal
    scripted: bool      # a lifecycle delayed its fills: the price may have moved since it was sized


class KrakenVenue:
    name = "kraken"
    cost_tolerance = D(0)
    deadlines = True    # every AddOrder carries one, and the simulator honours it
    methods = ("AddOrder", "QueryOrders", "OpenOrders", "ClosedOrders", "BalanceEx", "Ticker", "AssetPairs",
               "OHLC")
    faults: tuple[tuple[str, bool], ...] = (   # (fault, may it come after the call was carried out)
        ("http_520", True), ("http_500", True), ("malformed_json", True), ("drop", False), ("lost_reply", False),
        ("delay", False), ("busy", True), ("service_unavailable", True), ("deadline_elapsed", True),
        ("internal_error", True), ("rate_limit", False), ("invalid_nonce", False), ("throttled", False),
        ("too_many_requests", False), ("lockout", False))
    order_method = "AddOrder"
    assets = {"XXBT": "BTC", "XETH": "ETH", "ZEUR": "EUR"}

    def __init__(self, tmp_path: Path) -> None:
        from simulators.kraken import KrakenSimulator

        self.sim = KrakenSimulator(clock=START).start()
        self.key, self.secret = self.sim.add_account(balances={"ZEUR": "1000", "XXBT": "0.01"}, tier="pro")
        self.pairs = {"BTC": "XXBTZEUR", "ETH": "XETHZEUR"}
        self.start_prices = {c: self.sim.price(p) for c, p in self.pairs.items()}
        self.min_volume = {c: self.sim.pair(p).ordermin for c, p in self.pairs.items()}

    def exchange_config(self) -> dict[str, Any]:
        return {"name": "kraken", "api_url": self.sim.url, "rate_tier": "pro"}

    def key_lines(self) -> str:
        return f"{self.key}\n{self.secret}\n"

    def set_price(self, currency: str, price: Decimal) -> None:
        pair = self.sim.pair(self.pairs[currency])
        self.sim.set_price(self.pairs[currency], price.quantize(D(1).scaleb(-pair.pair_decimals)))

    def advance(self, seconds: int) -> None:
        self.sim.advance(seconds)
        self.sim.decay_counters(3600)   # the walk calls far faster than a cron job: no rate limit but the faults

    def balances(self) -> dict[str, Decimal]:
        return {self.assets[a]: v for a, v in self.sim.balances(self.key).items() if a in self.assets}

    def orders(self) -> list[ExchangeOrder]:
        return [ExchangeOrder(o.cl_ord_id, o.side, self.assets[o.pair.base], o.status in ("closed", "canceled",
                              "expired"), o.vol_exec, o.cost, o.lifecycle is not None)
                for o in self.sim.account_orders(self.key)]

    def lifecycle(self, rng: random.Random) -> dict[str, Any]:
        if rng.random() < 0.5:   # lags and stages in lookups, spanning polls and runs
            return dict(pending=rng.randint(0, 3), open=rng.randint(0, 2), hidden=0, unit="lookups",
                        fill=rng.choice([None, "0.5", "0.75"]), end=rng.choice(["closed", "canceled"]))
        # in simulated seconds: hidden for less than the time an order takes to show (the client timeout)
        return dict(pending=rng.choice([0, 30, 90]), open=rng.choice([0, 60, 200]), hidden=rng.choice([0, 0, 1]),
                    unit="seconds", fill=rng.choice([None, "0.5", "0.75"]), end=rng.choice(["closed", "canceled"]))

    def inject(self, method: str, fault: str, after: bool, times: int) -> None:
        params: dict[str, Any] = {"after": True} if after else {}
        if fault == "delay":
            params = {"seconds": TIMEOUT + 0.1}
        self.sim.inject(method, fault, times=times, **params)

    def script_order(self, params: dict[str, Any]) -> None:
        self.sim.inject(self.order_method, "lifecycle", times=1, **params)

    def quiet(self) -> None:
        self.sim.clear_faults()
        self.sim.complete_orders()

    def close(self) -> None:
        self.sim.stop()


class CcxtKrakenVenue(KrakenVenue):
    name = "ccxt-kraken"
    cost_tolerance = D("0.0001")   # ccxt reports filled x average, not Kraken's rounded cost (docs/platforms.md)

    def exchange_config(self) -> dict[str, Any]:
        return {"name": "ccxt", "ccxt_id": "kraken", "api_url": self.sim.url, "rate_tier": "pro"}


class BittrexVenue:
    name = "bittrex"
    cost_tolerance = D(0)
    deadlines = False
    methods = ("POST /orders", "GET /orders/{orderId}", "GET /orders/open", "GET /orders/closed", "GET /balances",
               "GET /markets/tickers", "GET /markets/summaries", "GET /markets")
    faults = (("http_500", True), ("http_520", True), ("http_503", True), ("malformed_json", True),
              ("throttled", False), ("drop", False), ("lost_reply", False), ("delay", False))
    order_method = "POST /orders"

    def __init__(self, tmp_path: Path) -> None:
        from simulators.bittrex import BittrexSimulator, default_markets

        self.sim = BittrexSimulator(rate_limit=10 ** 9).start()
        self.key, self.secret = "walk-key", "walk-secret"
        self.sim.add_account(self.key, self.secret, {"EUR": "1000", "BTC": "0.01"})
        self.pairs = {"BTC": "BTC-EUR", "ETH": "ETH-EUR"}
        self.start_prices = {c: self.sim.price(p) for c, p in self.pairs.items()}
        minimums = {m.symbol: m.min_trade_size for m in default_markets()}
        self.min_volume = {c: minimums[p] for c, p in self.pairs.items()}

    def exchange_config(self) -> dict[str, Any]:
        return {"name": "bittrex", "api_url": self.sim.url + "/v3"}

    def key_lines(self) -> str:
        return f"{self.key}\n{self.secret}\n"

    def set_price(self, currency: str, price: Decimal) -> None:
        self.sim.set_price(self.pairs[currency], price.quantize(D("0.01")))

    def advance(self, seconds: int) -> None:
        self.sim.advance(seconds)

    def balances(self) -> dict[str, Decimal]:
        return {c: v for c, v in self.sim.balances(self.key).items() if c in ("BTC", "ETH", "EUR")}

    def orders(self) -> list[ExchangeOrder]:
        return [ExchangeOrder(o.client_order_id, o.side, o.symbol.split("-")[0], o.status == "CLOSED",
                              o.fill_quantity, o.proceeds, o.script is not None)
                for o in self.sim.account_orders(self.key)]

    lifecycle = KrakenVenue.lifecycle
    inject = KrakenVenue.inject
    script_order = KrakenVenue.script_order
    quiet = KrakenVenue.quiet
    close = KrakenVenue.close


VENUES = {"kraken": KrakenVenue, "bittrex": BittrexVenue, "ccxt-kraken": CcxtKrakenVenue}


@dataclass
class Walk:
    """One venue's walk: its config, its counts, and the checks after every run."""
    venue: Any
    cfg: Config
    path: Path
    rng: random.Random
    start: dict[str, Decimal]
    counts: Counter = field(default_factory=Counter)
    violations: list[str] = field(default_factory=list)
    events: list[str] = field(default_factory=list)     # this step's, for the failure message

    # --- the runs ---------------------------------------------------------------------
    def in_process(self) -> None:
        """run_agent as cron's process would, but here: no sleeps between retries and polls."""
        platform = make_platform(self.cfg, live=True)
        platform.sleep = lambda seconds: None
        gate = getattr(platform, "gate", None) or getattr(getattr(platform, "exchange", None), "gate", None)
        if gate is not None:
            gate.sleep = lambda seconds: None
        try:
            run_agent(self.cfg, platform=platform)
            self.counts["runs ok"] += 1
        except CrontraderError as exc:   # a run that fails says one line; the next one goes on
            self.counts[f"runs failed ({type(exc).__name__})"] += 1

    def process(self, kill_after: float | None, wall_clock: str | None) -> None:
        """trade_agent.py as cron starts it, killed after `kill_after` seconds, its wall clock moved."""
        ledger = FileLedger(self.gate_file())
        with ledger.held() as state:   # the walk's calls outran any counter: start afresh
            ledger.save({**state, "counter": 0})
        command = [sys.executable, str(ROOT / "trade_agent.py"), "--config", str(self.path)]
        env = dict(os.environ)
        if wall_clock:
            env.update(wall_clock_env(wall_clock))
            self.note(f"wall clock {wall_clock}")
        proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            if kill_after is not None:
                try:
                    proc.wait(timeout=kill_after)
                except subprocess.TimeoutExpired:
                    proc.send_signal(signal.SIGKILL)
                    self.note("kill -9", f" after {kill_after:.2f} s")
            proc.wait(timeout=120)
        finally:
            stderr = proc.stderr.read() if proc.stderr else ""
            proc.stderr and proc.stderr.close()
        self.note(f"process exit {proc.returncode}")
        if proc.returncode not in (0, 1, -9):
            self.violations.append(f"trade_agent.py exited {proc.returncode}: {stderr[-500:]}")
        if proc.returncode == 1 and "Traceback" in stderr:
            self.violations.append(f"trade_agent.py printed a traceback: {stderr[-500:]}")

    def gate_file(self) -> Path:
        tmp = self.cfg.path(self.cfg.paths.tmp)
        found = sorted(tmp.glob("*.nonce"))
        return found[0] if found else tmp / "unused.nonce"

    # --- one step ---------------------------------------------------------------------
    def note(self, event: str, detail: str = "") -> None:
        self.counts[event] += 1
        self.events.append(event + detail)

    def step(self) -> None:
        rng, venue = self.rng, self.venue
        self.events = []
        venue.advance(60)
        for currency, price in venue.start_prices.items():
            venue.set_price(currency, price * D(str(round(rng.uniform(0.97, 1.05), 4))))
        if rng.random() < 0.35:
            for _ in range(rng.choice((1, 1, 2))):
                fault, may_follow = rng.choice(venue.faults)
                method = venue.order_method if rng.random() < 0.4 else rng.choice(venue.methods)
                after = may_follow and rng.random() < 0.5
                times = rng.choice((1, 1, 2, 3))     # an outage outlasting the client's retry, sometimes
                venue.inject(method, fault, after, times)
                self.note(f"fault {fault}{' after' if after else ''} on {method}", f" x{times}")
        if rng.random() < 0.3:
            script = venue.lifecycle(rng)
            venue.script_order(script)
            self.counts["scripted lifecycles"] += 1
            self.events.append(f"lifecycle {script}")
        roll = rng.random()
        if roll < 0.02:
            self.process(kill_after=rng.uniform(0.05, 1.2), wall_clock=None)
        elif roll < 0.027:
            self.process(kill_after=rng.uniform(0.05, 1.2), wall_clock=rng.choice(("+3h", "-5h", "+400d")))
        elif roll < 0.03:
            self.process(kill_after=None, wall_clock=rng.choice(("+3h", "-5h")))
        else:
            self.in_process()
        venue.sim.clear_faults()
        if not venue.deadlines and any(e.startswith("fault delay") for e in self.events):
            # A request held past the client's timeout is carried out a moment later, as a real
            # server would; without a deadline on the order the simulated clock must not leap
            # minutes meanwhile (Kraken refuses a request that comes after its deadline).
            time.sleep(0.3)
        self.counts["steps"] += 1
        self.check(settled=False)

    def settle(self) -> None:
        """The faults stop: two clean runs settle every open row."""
        self.venue.quiet()
        for _ in range(2):
            self.venue.advance(120)
            self.in_process()
        self.check(settled=True)

    # --- the invariants -----------------------------------------------------------------
    def check(self, settled: bool) -> None:
        db = MarketDB(self.cfg.resolve_url(self.cfg.storage.market_db))
        rows = db.journal("live", agent=self.cfg.storage.namespace)
        db.close()
        store = open_state_store(self.cfg.resolve_url(self.cfg.storage.state), self.cfg.storage.namespace, "live")
        threads = store.threads()
        store.close()
        exchange = self.venue.orders()
        by_ref = {o.ref: o for o in exchange}
        journal = {r["ref"]: r for r in rows}
        bad = self.violations.append

        for ref, n in Counter(o.ref for o in exchange).items():
            if n > 1:
                bad(f"reference {ref} placed {n} times")
        for o in exchange:
            if o.ref not in journal:
                bad(f"exchange order {o.ref} has no journal row")
        for ref, row in journal.items():
            order = by_ref.get(ref)
            if row["status"] == "failed" and order is not None:
                bad(f"order {ref} journaled failed ({row['error']}) is on the exchange ({order.filled} filled)")
            if row["status"] not in OPEN and row["status"] != "failed":
                if order is None:
                    bad(f"order {ref} journaled {row['status']} is not on the exchange")
                elif (not order.final or D(row["filled"] or 0) != order.filled
                      or abs(D(row["cost"] or 0) - order.cost) > self.venue.cost_tolerance):
                    bad(f"order {ref}: journal {row['status']} {row['filled']} filled for {row['cost']}, exchange "
                        f"{'final' if order.final else 'open'} {order.filled} for {order.cost}")
            if (row["side"] == "buy" and row["cost"] is not None and order is not None and not order.scripted
                    and D(row["cost"]) + D(row["fee"] or 0) > MAX_PER_TRADE + self.venue.cost_tolerance):
                bad(f"buy {ref} cost {row['cost']} + {row['fee']} > max_per_trade {MAX_PER_TRADE}")
        if settled:
            for ref, row in journal.items():
                if row["status"] in OPEN:
                    bad(f"order {ref} still {row['status']} after two clean runs")

        held, left = positions(rows), left_as_dust(rows)
        for p in left:
            if p.volume >= self.venue.min_volume[p.market.split("/")[0]]:
                bad(f"thread {p.thread} bought again while it held {p.volume} {p.market}, more than dust")
        # Too little to sell ever: the thread was freed and the coins stay in the account.
        dust = {n for n, p in held.items() if p.volume < self.venue.min_volume[p.market.split("/")[0]]}
        in_flight = {t.n for t in threads if t.state in (BUYING, SELLING)}
        for t in threads:
            if t.n in in_flight:
                continue
            position = held.get(t.n)
            if t.state == ACTIVE and (position is None or position.volume != t.volume):
                bad(f"thread {t.n} holds {t.volume} {t.currency}; its orders' fills say "
                    f"{position.volume if position else 0}")
            if t.state != ACTIVE and position is not None and t.n not in dust:
                bad(f"thread {t.n} is {t.state}; its orders' fills say it holds {position.volume}")
        if settled and in_flight:
            bad(f"threads {sorted(in_flight)} still in flight after two clean runs")

        balances = self.venue.balances()
        for currency in self.venue.pairs:
            tracked = sum((p.volume for p in [*held.values(), *left] if p.market.startswith(currency + "/")), D(0))
            flying = sum(((o.filled if o.side == "buy" else -o.filled) for o in exchange
                          if o.currency == currency and journal.get(o.ref, {}).get("status") in OPEN), D(0))
            change = balances.get(currency, D(0)) - self.start[currency]
            if change != tracked + flying:
                bad(f"{currency}: the balance moved {change}, the threads hold {tracked}, in flight {flying}")
        if balances.get("EUR", D(0)) < 0:
            bad(f"the EUR balance is negative: {balances['EUR']}")
        # What the agent committed: each holding thread's buy as sized (a fill the exchange delayed
        # may cost more if the price rose meanwhile), each buy in flight at the most it may cost.
        committed = sum((D(journal[p.ref]["amount_quote"]) for n, p in held.items()
                         if n not in in_flight and n not in dust and p.ref in journal), D(0))
        committed += MAX_PER_TRADE * sum(t.state in (BUYING, SELLING) for t in threads)
        if committed > self.cfg.trading.budget:
            bad(f"the threads committed {committed} EUR, over the budget {self.cfg.trading.budget}")


def history(cfg: Config, venue: Any) -> None:
    """Flat 5-minute candles at the walk's reference prices, in the market DB as get_api_data
    leaves them, for as long as the walk lasts: trends are then each price against its
    reference, and a run asks the exchange for no candles (order calls are what the walk is for)."""
    db = MarketDB(cfg.resolve_url(cfg.storage.market_db))
    step = 300
    span = range(START - 30 * 3600, START + int(max(STEPS.values()) * SCALE + 10) * 60, step)
    exchange = "ccxt" if venue.name == "ccxt-kraken" else venue.name
    for currency, price in venue.start_prices.items():
        db.upsert_candles(exchange, f"{currency}/EUR", step // 60,
                          [Candle(ts, price, price, price, price, D(1)) for ts in span])
    db.close()


def make_walk(venue: Any, tmp_path: Path, seed: int) -> Walk:
    key_file = tmp_path / "exchange.key"
    write_private(key_file, venue.key_lines())
    data = {
        "paths": {"log": str(tmp_path / "log"), "tmp": str(tmp_path / "tmp"), "img": str(tmp_path / "img")},
        "exchange": {**venue.exchange_config(), "key_file": str(key_file), "public_calls_per_second": 1000,
                     "timeout": TIMEOUT, "retries": 1},
        "trading": {"stop_file": str(tmp_path / "stop"), "dry_run_file": str(tmp_path / "dry-run"),
                    "dry_run": False, "currencies": list(venue.pairs), "max_threads": MAX_THREADS,
                    "max_per_trade": str(MAX_PER_TRADE), "threads_per_currency": 2, "sell_percent": "0.8",
                    "stop_loss_percent": "2", "max_hold_hours": 1,
                    "rebuy_cooldown_minutes": 0,   # sold in one run, bought again in the next: more orders to break
                    "trend_windows": [24], "buy_trend_window": 24,
                    "fee_percent": "0.25" if venue.name == "bittrex" else "0.26"},
        "storage": {"market_db": f"sqlite:///{tmp_path / 'market.db'}", "state": f"sqlite:///{tmp_path / 'state.db'}",
                    "namespace": "walk"},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    cfg = load_config(path)
    history(cfg, venue)
    start = venue.balances()
    return Walk(venue, cfg, path, random.Random(f"{seed}-{venue.name}"),
                {c: start.get(c, D(0)) for c in venue.pairs})


@pytest.mark.timeout(3600 if SOAK else 600)
@pytest.mark.parametrize("name", list(VENUES))
def test_a_random_walk_of_faults_never_loses_or_doubles_an_order(name, tmp_path, capsys):
    if name == "ccxt-kraken":
        pytest.importorskip("ccxt")
    venue = VENUES[name](tmp_path)
    walk = make_walk(venue, tmp_path, SEED)
    steps = int(STEPS[name] * SCALE)
    began = time.monotonic()
    try:
        for _ in range(steps):
            walk.step()
            assert not walk.violations, (f"seed {SEED}, step {walk.counts['steps']} ({'; '.join(walk.events)}): "
                                         f"{walk.violations[:5]}")
        walk.settle()
    finally:
        venue.close()
    assert not walk.violations, f"seed {SEED}: {walk.violations[:5]}"
    db = MarketDB(walk.cfg.resolve_url(walk.cfg.storage.market_db))
    rows = db.journal("live", agent="walk")
    db.close()
    statuses = Counter(r["status"] for r in rows)
    with capsys.disabled():
        print(f"\n{name}: seed {SEED}, {walk.counts['steps']} steps in {time.monotonic() - began:.0f} s, "
              f"{len(venue.orders())} exchange orders, journal {dict(statuses)}, 0 violations")
        kinds = Counter()
        for what, n in walk.counts.items():
            if what.startswith("fault "):
                kinds[what.split(" on ")[0][6:]] += n
            else:
                print(f"  {n:6d}  {what}")
        print("  faults by kind: " + ", ".join(f"{kind} {n}" for kind, n in sorted(kinds.items())))
    assert statuses["closed"] + statuses["canceled"] > 20 * SCALE, "the walk traded too little to prove anything"
