"""Orders against a real exchange, one behaviour at a time: pending and partly filled
orders, what an order in doubt does to its thread and to the owner, clocks that
cannot be trusted, one nonce per key across hosts, free balances, Kraken's errors.
(tests/test_order_faults.py throws all of these at the agent at random.)"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import pytest

from includes.agent import new_ref, run_agent
from includes.errors import InvalidNonce, LockedOut, PermanentError, RateLimited, TemporaryError, UnknownMarket
from includes.platforms import make_platform
from includes.platforms.keygate import FileLedger, KeyGate, RedisLedger
from includes.platforms.kraken import error_for
from includes.storage.state import ACTIVE, BUYING, WAITING
from tests.conftest import REDIS_URL
from tests.plugins.agent import journal, move, threads, wall_clock_env

ROOT = Path(__file__).resolve().parent.parent
START_XBT = Decimal("0.01")


@pytest.fixture
def live(job_config, rising):
    """One thread, live, on BTC (it rose most)."""
    return job_config(trading={"currencies": ["BTC", "ETH"], "max_threads": 1, "dry_run": False,
                               "sell_percent": 3, "max_per_trade": 20})


def held_btc(venue) -> Decimal:
    return venue.sim.balances(venue.key)["XXBT"] - START_XBT


def test_a_pending_buy_keeps_its_thread_buying_until_it_fills(live, kraken_venue):
    kraken_venue.sim.inject("AddOrder", "lifecycle", pending=5)   # five lookups: longer than one run's poll
    first = run_agent(live)
    assert first.bought == [] and len(first.in_doubt) == 1 and "still pending" in first.in_doubt[0]
    (thread,) = threads(live)
    (row,) = journal(live)
    assert (thread.state, thread.order_ref, row["status"], row["filled"]) == (BUYING, row["ref"], "pending", 0)
    assert kraken_venue.sim.calls["AddOrder"] == 1
    for _ in range(3):
        run_agent(live)
    (thread,) = threads(live)
    (row,) = journal(live)
    assert (thread.state, row["status"]) == (ACTIVE, "closed")
    assert thread.volume == row["filled"] == held_btc(kraken_venue) > 0
    assert kraken_venue.sim.calls["AddOrder"] == 1     # never sent again while it was pending


def test_a_buy_that_fills_partly_then_is_canceled_holds_what_filled(live, kraken_venue):
    kraken_venue.sim.inject("AddOrder", "lifecycle", open=1, fill="0.5", end="canceled")
    run_agent(live)
    (thread,) = threads(live)
    (row,) = journal(live)
    assert row["status"] == "canceled" and 0 < row["filled"] < row["volume"]
    assert (thread.state, thread.volume, thread.value) == (ACTIVE, row["filled"], row["cost"] + row["fee"])
    assert held_btc(kraken_venue) == thread.volume


def sell_filling(live, venue, fill: str):
    """A buy, BTC up 10 %, then a run whose sell fills `fill` of its volume and is canceled:
    (the thread as bought, the selling run's summary, the thread after it, the sell's row)."""
    run_agent(live)
    (bought,) = threads(live)
    move(venue.sim, "BTC", "1.1")
    venue.sim.inject("AddOrder", "lifecycle", open=1, fill=fill, end="canceled")
    summary = run_agent(live)
    (thread,) = threads(live)
    return bought, summary, thread, journal(live)[-1]


def test_a_sell_that_fills_partly_keeps_the_rest_held(live, kraken_venue):
    bought, summary, thread, sell = sell_filling(live, kraken_venue, "0.5")
    assert sell["side"] == "sell" and sell["status"] == "canceled" and 0 < sell["filled"] < bought.volume
    assert thread.state == ACTIVE and thread.volume == bought.volume - sell["filled"] == held_btc(kraken_venue)
    assert thread.value == (bought.value * thread.volume / bought.volume).quantize(Decimal("1e-8"))
    assert "stay held" in summary.sold[0]
    rest = thread.volume
    assert "sold" in run_agent(live).sold[0]   # the rest sells in full next time
    assert [(r["side"], r["status"], r["filled"]) for r in journal(live)[2:]][0] == ("sell", "closed", rest)


def test_a_sell_that_leaves_dust_frees_its_thread_and_the_dust_stays_in_the_account(job_config, rising,
                                                                                    kraken_venue):
    """0.9 of 0.00057 BTC sold leaves 0.000057 BTC, under Kraken's minimum order of 0.0001:
    a thread holding it could never sell it and would keep its slot for ever."""
    settings = {"currencies": ["BTC"], "max_threads": 1, "dry_run": False, "sell_percent": 3, "max_per_trade": 20}
    live = job_config(trading=settings)
    bought, summary, thread, sell = sell_filling(live, kraken_venue, "0.9")
    dust = bought.volume - sell["filled"]
    assert sell["status"] == "canceled" and 0 < dust < Decimal("0.0001") and held_btc(kraken_venue) == dust
    assert thread.state == WAITING and thread.volume == 0
    assert summary.sold == [f"thread {thread.n}: sell order {sell['ref']} filled {sell['filled']} BTC at "
                            f"{sell['price']}; {dust} BTC is below kraken's minimum order of 0.0001 BTC: it "
                            f"stays in the account as dust and thread {thread.n} is freed"]
    again = run_agent(live)   # BTC cools down: the thread waits, and is not rebuilt from the dust
    assert (again.recovered, again.bought, threads(live)[0].state) == ([], [], WAITING)
    live = job_config(trading={**settings, "rebuy_cooldown_minutes": 0})
    assert len(run_agent(live).bought) == 1
    (thread,) = threads(live)
    assert thread.state == ACTIVE and held_btc(kraken_venue) == dust + thread.volume


def test_a_buy_that_fills_only_dust_frees_its_thread(job_config, rising, kraken_venue):
    live = job_config(trading={"currencies": ["BTC"], "max_threads": 1, "dry_run": False, "max_per_trade": 20})
    kraken_venue.sim.inject("AddOrder", "lifecycle", open=1, fill="0.1", end="canceled")
    summary = run_agent(live)
    (thread,) = threads(live)
    (row,) = journal(live)
    assert row["status"] == "canceled" and 0 < row["filled"] < Decimal("0.0001")
    assert thread.state == WAITING and held_btc(kraken_venue) == row["filled"]
    assert summary.bought[0].endswith("it stays in the account as dust and thread 1 is freed")
    again = run_agent(live)   # not rebuilt from the dust: the thread buys anew
    assert again.recovered == [] and len(again.bought) == 1 and threads(live)[0].state == ACTIVE


def test_an_order_in_doubt_for_three_runs_is_told_on_stderr_once_a_run(live, kraken_venue, tmp_path):
    kraken_venue.sim.inject("AddOrder", "lifecycle", pending=1000)
    runs = [subprocess.run([sys.executable, str(ROOT / "trade_agent.py"), "--config", str(tmp_path / "config.yaml")],
                           capture_output=True, text=True, timeout=120) for _ in range(3)]
    assert [r.returncode for r in runs] == [0, 0, 1]
    assert runs[0].stderr == runs[1].stderr == ""
    (line,) = runs[2].stderr.splitlines()
    assert line.startswith("trade_agent: thread 1: buy order ") and "still pending" in line
    assert line.endswith("unsettled after 3 runs: check it on kraken")
    assert threads(live)[0].state == BUYING and kraken_venue.sim.calls["AddOrder"] == 1


def test_a_reply_lost_then_failed_reads_leave_the_buy_in_doubt_never_failed(live, kraken_venue):
    """Defect 1 end to end: the order filled, every read after it failed (5xx pages)."""
    kraken_venue.sim.inject("AddOrder", "lost_reply")
    for method in ("QueryOrders", "OpenOrders", "ClosedOrders"):
        kraken_venue.sim.inject(method, "http_520", times=20)
    summary = run_agent(live)
    (row,) = journal(live)
    assert row["status"] == "unknown" and threads(live)[0].state == BUYING and summary.bought == []
    assert kraken_venue.sim.calls["AddOrder"] == 1       # the same run did not buy again with the thread
    kraken_venue.sim.clear_faults()
    run_agent(live)
    (thread,) = threads(live)
    assert thread.state == ACTIVE and thread.volume == journal(live)[0]["filled"] == held_btc(kraken_venue)


@pytest.mark.parametrize("wall_clock", ["+365d", "-365d"])
def test_an_intent_journaled_with_a_wrong_wall_clock_is_settled_by_the_next_run(live, kraken_venue, tmp_path,
                                                                                  wall_clock):
    """A Pi without a real-time clock: the run that journaled and sent the order thought it
    was a year off, and died; the next one, on a right clock, still settles it at once."""
    command = [sys.executable, str(ROOT / "trade_agent.py"), "--config", str(tmp_path / "config.yaml")]
    crash = [sys.executable, str(ROOT / "tests" / "crash_launcher.py"), "--crash-at", "buy:sent", *command[2:]]
    env = dict(os.environ, **wall_clock_env(wall_clock))
    crashed = subprocess.run(crash, env=env, capture_output=True, timeout=120)
    assert crashed.returncode == -9 and threads(live)[0].state == BUYING
    kraken_venue.sim.advance(60)   # a cron period later, on the exchange's clock
    assert subprocess.run(command, capture_output=True, timeout=120).returncode == 0
    (thread,) = threads(live)
    (row,) = journal(live)
    assert (thread.state, row["status"]) == (ACTIVE, "closed") and thread.volume == held_btc(kraken_venue)


def test_an_order_never_placed_is_called_so_only_after_its_deadline(live, kraken_venue):
    """Dropped before the book: nothing was placed, but only the deadline Kraken honours
    makes "not found" proof of that."""
    kraken_venue.sim.inject("AddOrder", "drop")
    run_agent(live)
    (row,) = journal(live)
    assert row["status"] == "unknown" and threads(live)[0].state == BUYING
    run_agent(live)   # seconds later: not found, but the request might still be queued somewhere
    assert journal(live)[0]["status"] == "unknown"
    kraken_venue.sim.advance(30)   # past the deadline (the 2 s timeout, raised to Kraken's 5 s floor) and margin
    summary = run_agent(live)
    rows = journal(live)
    assert rows[0]["status"] == "failed" and "never placed" in rows[0]["error"]
    assert "was never placed" in summary.recovered[0]
    assert [r["status"] for r in rows[1:]] == ["closed"] and threads(live)[0].state == ACTIVE   # bought anew


def test_the_free_balance_leaves_out_what_open_orders_hold(kraken_venue):
    platform = kraken_venue.platform()
    kraken_venue.sim.inject("AddOrder", "lifecycle", pending=100)
    order = platform.buy(Decimal(20), "BTC", new_ref())
    assert not order.done
    free = platform.get_account_info().balance("EUR")
    held = Decimal(1000) - free
    assert Decimal(19) < held <= Decimal(20) and kraken_venue.sim.balances(kraken_venue.key)["ZEUR"] == 1000


@pytest.mark.parametrize("code, cls, refused", [
    ("EGeneral:Too many requests", RateLimited, True),
    ("EService:Throttled: 1700000000", RateLimited, True),
    ("EAPI:Rate limit exceeded", RateLimited, True),
    ("EAPI:Invalid nonce", InvalidNonce, True),
    ("EService:Busy", TemporaryError, False),
    ("EService:Unavailable", TemporaryError, False),
    ("EService:Deadline elapsed", TemporaryError, False),
    ("EGeneral:Internal error", TemporaryError, False),
    ("EOrder:Insufficient funds", PermanentError, True),
    ("EQuery:Unknown asset pair", UnknownMarket, True),
    ("EGeneral:Temporary lockout", LockedOut, True),
    ("EGeneral:Something new", PermanentError, True),
])
def test_krakens_errors_are_mapped_as_kraken_means_them(code, cls, refused):
    """Busy, unavailable, deadline elapsed, internal error: the order may be on the book."""
    error = error_for(code, "AddOrder")
    assert type(error) is cls or (cls is PermanentError and isinstance(error, PermanentError))
    assert error.refused is refused and not (refused and isinstance(error, TemporaryError)
                                             and not isinstance(error, (RateLimited, InvalidNonce)))


def test_a_temporary_lockout_stops_the_run_with_one_line(live, kraken_venue, tmp_path):
    kraken_venue.sim.inject("BalanceEx", "lockout", times=5)
    result = subprocess.run([sys.executable, str(ROOT / "trade_agent.py"), "--config", str(tmp_path / "config.yaml")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "trade_agent: kraken/BalanceEx: Kraken locked this API key out for about 15 minutes (EGeneral:Temporary "
        "lockout, after repeated refused calls); the run stops"]
    assert kraken_venue.sim.calls["AddOrder"] == 0


def test_a_nonce_refused_again_and_again_names_the_other_program(kraken_venue):
    platform = kraken_venue.platform(retries=2)
    platform.markets()
    kraken_venue.sim.inject("BalanceEx", "invalid_nonce", times=3)
    with pytest.raises(InvalidNonce, match="another program uses this API key with larger nonces: "
                                           "give crontrader a key of its own"):
        platform.get_account_info()


def _skewed(venue, state_dir: Path, skew: float, ledger):
    platform = venue.platform(state_dir=state_dir, ledger=ledger, retries=0)
    platform.gate.clock = lambda: time.time() + skew
    return platform


def test_hosts_with_skewed_clocks_collide_with_a_nonce_file_each(kraken_venue, tmp_path):
    """Why the nonce lives in the shared Redis: two hosts, one key, clocks 5 s apart."""
    ahead = _skewed(kraken_venue, tmp_path / "a", 5, FileLedger(tmp_path / "a" / "gate"))
    behind = _skewed(kraken_venue, tmp_path / "b", 0, FileLedger(tmp_path / "b" / "gate"))
    ahead.get_account_info()
    with pytest.raises(InvalidNonce):
        behind.get_account_info()


def test_hosts_with_skewed_clocks_share_one_nonce_sequence_in_redis(kraken_venue, tmp_path, redis_namespace):
    key = f"{redis_namespace}:gate"
    ahead = _skewed(kraken_venue, tmp_path / "a", 5, RedisLedger(REDIS_URL, key))
    behind = _skewed(kraken_venue, tmp_path / "b", -5, RedisLedger(REDIS_URL, key))
    for _ in range(5):
        assert ahead.get_account_info().balance("EUR") == behind.get_account_info().balance("EUR") == 1000


def test_the_config_puts_the_nonce_where_the_state_is(job_config, redis_namespace):
    in_redis = make_platform(job_config(state=REDIS_URL, storage={"namespace": redis_namespace, "timeout": 7}),
                             live=False)
    on_disk = make_platform(job_config(), live=False)
    assert isinstance(in_redis.gate.ledger, RedisLedger)
    assert in_redis.gate.ledger.key.startswith("crontrader:gate:kraken-") and in_redis.gate.ledger.server_timeout == 7
    assert isinstance(on_disk.gate.ledger, FileLedger) and on_disk.gate.ledger.path.suffix == ".nonce"


def test_a_gate_lock_left_by_a_dead_host_expires_and_a_live_one_is_waited_for(redis_namespace):
    import redis

    from includes.errors import TemporaryError as Temporary
    from includes.platforms.keygate import KeyGate

    key = f"{redis_namespace}:gate"
    client = redis.Redis.from_url(REDIS_URL)
    client.set(f"{key}:lock", "a host that died mid-call", px=300)
    gate = KeyGate(RedisLedger(REDIS_URL, key, hold_seconds=5, wait_seconds=10), "pro")
    with gate.call(1) as first:
        pass
    with gate.call(1) as second:
        assert second > first
    client.set(f"{key}:lock", "a host still calling", px=60_000)
    with (pytest.raises(Temporary, match="stayed held for 0.2 s"),
          KeyGate(RedisLedger(REDIS_URL, key, wait_seconds=0.2), "pro").call(1)):
        pass
    client.close()


def test_the_call_counter_is_dated_when_the_answer_came(tmp_path):
    """Kraken counts a call when it arrives, somewhere between our send and its answer: the
    gate must wait as if it came last, or a slow answer makes the next wait short."""
    now = [1000.0]

    class Ledger(FileLedger):
        def clock(self) -> float:
            return now[0]

    waits: list[float] = []
    gate = KeyGate(Ledger(tmp_path / "gate.json"), "starter",
                   sleep=lambda seconds: (waits.append(seconds), now.__setitem__(0, now[0] + seconds)))
    for n in range(15):               # starter: 15 calls, decaying 0.33 a second
        with gate.call(1):
            now[0] += 1.0 if n == 14 else 0.0   # the last answer takes a second
    with gate.call(1):
        pass
    assert waits == [pytest.approx(1 / 0.33)]
