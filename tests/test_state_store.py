"""The state store contract, on SQLite and on Redis, plus what only Redis shows."""
from __future__ import annotations

import multiprocessing
import os
import queue
import random
import socket
import sqlite3
import threading
import time
from decimal import Decimal

import pytest
import redis

from includes.errors import StorageError
from includes.storage.state import ACTIVE, BUYING, DISABLED, SELLING, WAITING, LockHeld, Thread, open_state_store
from includes.storage.state_redis import RedisStateStore
from includes.storage.state_sqlite import SQLiteStateStore
from tests.conftest import REDIS_URL

VALUE, VOLUME, BUY, SELL = Decimal("5.00"), Decimal("0.00012345"), Decimal("40501.3"), Decimal("41999.95")


def state(store, n: int) -> str:
    return store.get_thread(n).state


# -- threads ----------------------------------------------------------------------------

def test_ensure_threads_creates_the_missing_ones_as_waiting(state_store):
    assert state_store.ensure_threads(3) == 3
    assert state_store.claim(2, "BTC", "ref-1")
    assert state_store.ensure_threads(5) == 2
    threads = state_store.threads()
    assert [t.n for t in threads] == [1, 2, 3, 4, 5]
    assert [t.state for t in threads] == [WAITING, BUYING, WAITING, WAITING, WAITING]
    assert threads[0] == Thread(1, updated=threads[0].updated)
    assert threads[0].updated >= time.time() - 60


def test_a_thread_goes_through_a_whole_trade(state_store):
    state_store.ensure_threads(1)
    assert state_store.claim(1, "BTC", "buy-1")
    t = state_store.get_thread(1)
    assert (t.state, t.currency, t.order_ref) == (BUYING, "BTC", "buy-1")

    assert state_store.activate(1, "buy-1", VALUE, VOLUME, BUY)
    t = state_store.get_thread(1)
    assert (t.state, t.value, t.volume, t.lastbuyvalue) == (ACTIVE, VALUE, VOLUME, BUY)

    assert state_store.begin_sell(1, "sell-1")
    assert (state(state_store, 1), state_store.get_thread(1).order_ref) == (SELLING, "sell-1")

    assert state_store.release(1, "sell-1", SELL)
    t = state_store.get_thread(1)
    assert (t.state, t.value, t.volume) == (WAITING, 0, 0)
    assert (t.currency, t.lastbuyvalue, t.lastsellvalue) == ("BTC", BUY, SELL)

    assert state_store.claim(1, "ETH", "buy-2")   # a new trade starts clean
    t = state_store.get_thread(1)
    assert (t.currency, t.lastbuyvalue, t.lastsellvalue) == ("ETH", None, None)


def test_claim_takes_only_a_waiting_thread(state_store):
    state_store.ensure_threads(2)
    assert state_store.claim(1, "BTC", "a")
    assert not state_store.claim(1, "ETH", "b")
    assert state_store.get_thread(1).order_ref == "a"
    assert state_store.disable(2)
    assert not state_store.claim(2, "BTC", "c")
    assert not state_store.claim(3, "BTC", "d")         # does not exist
    assert state_store.get_thread(3) is None


def test_moves_need_the_state_and_the_order_ref_they_expect(state_store):
    state_store.ensure_threads(1)
    assert not state_store.activate(1, "x", VALUE, VOLUME, BUY)     # still waiting
    state_store.claim(1, "BTC", "buy")
    assert not state_store.activate(1, "other", VALUE, VOLUME, BUY)
    assert not state_store.begin_sell(1, "sell")                     # not active yet
    assert not state_store.release(1, "buy", SELL)
    assert state(state_store, 1) == BUYING
    state_store.activate(1, "buy", VALUE, VOLUME, BUY)
    assert not state_store.activate(1, "buy", VALUE, VOLUME, BUY)    # twice
    state_store.begin_sell(1, "sell")
    assert not state_store.begin_sell(1, "sell-again")
    assert not state_store.release(1, "buy", SELL)
    assert state_store.get_thread(1).lastsellvalue is None
    assert state_store.release(1, "sell", SELL)


def test_abort_undoes_the_claim_or_the_sell(state_store):
    state_store.ensure_threads(1)
    state_store.claim(1, "BTC", "buy")
    assert not state_store.abort(1, "other")
    assert state_store.abort(1, "buy")
    t = state_store.get_thread(1)
    assert (t.state, t.currency, t.order_ref) == (WAITING, "", "")

    state_store.claim(1, "BTC", "buy")
    state_store.activate(1, "buy", VALUE, VOLUME, BUY)
    assert not state_store.abort(1, "buy")                # active: nothing in flight
    state_store.begin_sell(1, "sell")
    assert state_store.abort(1, "sell")
    t = state_store.get_thread(1)
    assert (t.state, t.volume, t.lastbuyvalue) == (ACTIVE, VOLUME, BUY)
    assert state_store.begin_sell(1, "sell-2")


def test_disable_and_enable_move_only_between_waiting_and_disabled(state_store):
    state_store.ensure_threads(2)
    assert state_store.disable(1)
    assert not state_store.disable(1)
    assert state(state_store, 1) == DISABLED
    assert state_store.enable(1)
    assert not state_store.enable(1)
    state_store.claim(2, "BTC", "buy")
    assert not state_store.disable(2)
    assert not state_store.enable(2)
    assert [t.state for t in state_store.threads()] == [WAITING, BUYING]


def test_empty_order_refs_and_bad_numbers_are_refused(state_store):
    state_store.ensure_threads(1)
    with pytest.raises(ValueError, match="order ref"):
        state_store.claim(1, "BTC", "")
    state_store.claim(1, "BTC", "buy")
    with pytest.raises(ValueError, match="order ref"):
        state_store.activate(1, "", VALUE, VOLUME, BUY)
    with pytest.raises(ValueError, match="start at 1"):
        state_store.claim(0, "BTC", "x")
    assert state(state_store, 1) == BUYING


def test_put_thread_writes_a_whole_thread(state_store):
    rebuilt = Thread(4, ACTIVE, "ETH", VALUE, VOLUME, BUY, None, "buy-9", 1700000000)
    state_store.ensure_threads(4)
    state_store.put_thread(rebuilt)
    assert state_store.get_thread(4) == rebuilt
    assert state_store.begin_sell(4, "sell-9")
    state_store.put_thread(Thread(4))
    assert state_store.get_thread(4) == Thread(4)


# -- plain values -----------------------------------------------------------------------

def test_plain_values_round_trip(state_store):
    assert state_store.get_value("invest:total") is None
    assert state_store.get_decimal("invest:total") is None
    state_store.set_value("invest:total", Decimal("50.10"))
    state_store.set_many({"platform:BTC:value": Decimal("1E-8"), "platform:BTC:montant": 3,
                          "platform:BTC:last24h:tendance": "-2.5", "platform:totaleuro": Decimal("0")})
    assert state_store.get_value("invest:total") == "50.10"
    assert state_store.get_decimal("invest:total") == Decimal("50.10")
    assert state_store.get_value("platform:BTC:value") == "0.00000001"
    assert state_store.get_value("platform:BTC:montant") == "3"
    assert state_store.get_decimal("platform:BTC:last24h:tendance") == Decimal("-2.5")
    state_store.ensure_threads(1)
    assert state_store.keys("platform:BTC:*") == ["platform:BTC:last24h:tendance",
                                                  "platform:BTC:montant", "platform:BTC:value"]
    assert state_store.keys() == ["invest:total", "platform:BTC:last24h:tendance",   # not Redis's set of threads
                                  "platform:BTC:montant", "platform:BTC:value",
                                  "platform:totaleuro", "thread:1"]


def test_floats_never_enter(state_store):
    with pytest.raises(TypeError, match="float"):
        state_store.set_value("invest:total", 50.1)
    assert state_store.get_value("invest:total") is None


def test_live_and_dry_never_mix(state_store, open_store):
    dry = open_store("dry")
    state_store.ensure_threads(2)
    state_store.claim(1, "BTC", "live-buy")
    state_store.set_value("invest:total", 100)
    assert dry.threads() == [] and dry.get_value("invest:total") is None and dry.keys() == []
    assert dry.ensure_threads(2) == 2
    assert dry.claim(1, "ETH", "dry-buy")
    dry.set_value("invest:total", 7)
    assert state_store.get_thread(1).order_ref == "live-buy"
    assert state_store.get_value("invest:total") == "100"
    assert dry.get_value("invest:total") == "7"


# -- locks ------------------------------------------------------------------------------

def test_lock_is_exclusive_until_released(state_store, open_store):
    other = open_store()
    mine, theirs = state_store.lock("agent", 60), other.lock("agent", 60)
    assert mine.acquire()
    assert not theirs.acquire()
    assert not theirs.release()              # a stranger cannot release it
    assert not theirs.acquire()
    assert mine.extend(120)
    assert mine.release()
    assert theirs.acquire()
    assert state_store.lock("backup", 60).acquire()      # another name, another lock
    assert open_store("dry").lock("agent", 60).acquire()  # another namespace, another lock


def test_lock_as_context_manager(state_store):
    with (state_store.lock("agent", 60), pytest.raises(LockHeld, match="held by another run"),
          state_store.lock("agent", 60)):
        pass
    with state_store.lock("agent", 60):        # released on the way out
        pass


def test_an_expired_lock_is_taken_and_its_old_holder_cannot_touch_it(state_store):
    stale, fresh = state_store.lock("agent", 0.05), state_store.lock("agent", 60)
    assert stale.acquire()
    deadline = time.monotonic() + 5
    while not fresh.acquire():
        assert time.monotonic() < deadline, "the lock never expired"
        time.sleep(0.01)
    assert not stale.extend()
    assert not stale.release()
    assert not state_store.lock("agent", 60).acquire()


# -- concurrency: threads and processes, as two agents on two hosts ---------------------

def _hold_lock_and_die(url: str, prefix: str) -> None:
    lock = open_state_store(url, prefix).lock("agent", ttl_seconds=600)
    assert lock.acquire()
    os._exit(0)  # dies holding it, as a kill -9 would


def test_a_lock_whose_holder_died_on_this_host_is_taken_over(state_store, state_store_target):
    if state_store_target[0] == "memory":
        pytest.skip("a memory store lives in one process")
    worker = multiprocessing.get_context("fork").Process(target=_hold_lock_and_die,
                                                         args=state_store_target)
    worker.start()
    worker.join(10)
    assert worker.exitcode == 0
    assert state_store.lock("agent", ttl_seconds=600).acquire()
    assert not state_store.lock("agent", ttl_seconds=600).acquire()  # we are alive: no takeover


def claim_every_thread(url: str, prefix: str, total: int, worker: int) -> list[int]:
    store = open_state_store(url, prefix)
    order = random.Random(worker).sample(range(1, total + 1), total)
    won = [n for n in order if store.claim(n, "BTC", f"w{worker}-{n}")]
    store.close()
    return won


def take_every_lock(url: str, prefix: str, total: int, worker: int) -> list[int]:
    store = open_state_store(url, prefix)
    order = random.Random(worker).sample(range(total), total)
    won = [i for i in order if store.lock(f"run-{i}", 60).acquire()]   # kept held
    store.close()
    return won


def _run(fn, args: tuple, worker: int, barrier, results) -> None:
    try:
        barrier.wait(30)
        results.put((worker, fn(*args, worker)))
    except Exception as exc:                  # reported to the test, which fails with it
        results.put((worker, exc))
    barrier.wait(30)  # nobody exits before all have tried: a dead holder's lock may be taken over


def race(kind: str, fn, *args, workers: int = 8) -> dict[int, object]:
    """fn(*args, worker) in `workers` OS threads or processes released at the same instant."""
    if kind == "threads":
        barrier, results = threading.Barrier(workers), queue.Queue()
        runners = [threading.Thread(target=_run, args=(fn, args, i, barrier, results))
                   for i in range(workers)]
    else:
        ctx = multiprocessing.get_context("fork")
        barrier, results = ctx.Barrier(workers), ctx.Queue()
        runners = [ctx.Process(target=_run, args=(fn, args, i, barrier, results))
                   for i in range(workers)]
    for runner in runners:
        runner.start()
    outcome = dict(results.get(timeout=60) for _ in runners)
    for runner in runners:
        runner.join(timeout=30)
    errors = [r for r in outcome.values() if isinstance(r, Exception)]
    assert not errors, errors
    return outcome


@pytest.mark.parametrize("kind", ["threads", "processes"])
def test_concurrent_claimers_take_each_thread_exactly_once(state_store, state_store_target, kind):
    if state_store_target[0] == "memory":
        pytest.skip("a memory store lives in one process")
    total = 40
    state_store.ensure_threads(total)
    won = race(kind, claim_every_thread, *state_store_target, total)
    claims = sorted(n for ns in won.values() for n in ns)
    assert claims == list(range(1, total + 1))
    for worker, ns in won.items():
        for n in ns:
            assert state_store.get_thread(n).order_ref == f"w{worker}-{n}"


def test_concurrent_lockers_have_one_winner_each(state_store_target):
    if state_store_target[0] == "memory":
        pytest.skip("a memory store lives in one process")
    won = race("processes", take_every_lock, *state_store_target, 20)
    assert sorted(i for locks in won.values() for i in locks) == list(range(20))


# -- what only one backend shows ----------------------------------------------------------

def test_redis_keys_keep_the_seed_names(redis_namespace):
    store = RedisStateStore(REDIS_URL, redis_namespace, "live")
    raw = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        store.ensure_threads(2)
        store.claim(1, "BTC", "buy-1")
        store.activate(1, "buy-1", VALUE, VOLUME, BUY)
        store.set_value("invest:total", Decimal("50.00"))
        store.set_many({"platform:totaleuro": Decimal("12.5"), "platform:BTC:montant": VOLUME,
                        "platform:BTC:value": BUY, "platform:BTC:last2h:tendance": Decimal("-0.75")})
        ns = f"{redis_namespace}:live:"
        thread = raw.hgetall(ns + "thread:1")
        assert thread == {"state": "active", "currency": "BTC", "value": "5.00",
                          "volume": "0.00012345", "lastbuyvalue": "40501.3", "lastsellvalue": "",
                          "order_ref": "buy-1", "updated": thread["updated"]}
        assert raw.hget(ns + "thread:2", "state") == "waiting"
        assert raw.get(ns + "invest:total") == "50.00"
        assert raw.get(ns + "platform:totaleuro") == "12.5"
        assert raw.get(ns + "platform:BTC:montant") == "0.00012345"
        assert raw.get(ns + "platform:BTC:value") == "40501.3"
        assert raw.get(ns + "platform:BTC:last2h:tendance") == "-0.75"
        assert sorted(raw.scan_iter(f"{redis_namespace}:*")) == sorted(
            ns + k for k in ("thread:1", "thread:2", "threads", "invest:total", "platform:totaleuro",
                             "platform:BTC:montant", "platform:BTC:value", "platform:BTC:last2h:tendance"))
    finally:
        store.close()
        raw.close()


def test_redis_live_and_dry_keys_live_apart(redis_namespace):
    live = RedisStateStore(REDIS_URL, redis_namespace, "live")
    dry = RedisStateStore(REDIS_URL, redis_namespace, "dry")
    raw = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        live.ensure_threads(1)
        dry.ensure_threads(1)
        dry.claim(1, "ETH", "dry-1")
        dry.lock("agent", 60).acquire()
        assert raw.hget(f"{redis_namespace}:live:thread:1", "state") == "waiting"
        assert raw.hget(f"{redis_namespace}:dry:thread:1", "state") == "buying"
        assert sorted(raw.scan_iter(f"{redis_namespace}:dry:*")) == [
            f"{redis_namespace}:dry:lock:agent", f"{redis_namespace}:dry:thread:1", f"{redis_namespace}:dry:threads"]
        assert 0 < raw.pttl(f"{redis_namespace}:dry:lock:agent") <= 60000
    finally:
        for client in (live, dry, raw):
            client.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_redis_is_a_one_line_storage_error_without_password():
    port = free_port()
    store = open_state_store(f"redis://:s3cret@127.0.0.1:{port}/0", "crontrader")
    with pytest.raises(StorageError) as caught:
        store.threads()
    message = str(caught.value)
    assert f"Redis at 127.0.0.1:{port}/0" in message
    assert "s3cret" not in message and "\n" not in message
    store.close()


def test_an_unopenable_sqlite_file_is_a_storage_error_naming_it(tmp_path):
    path = tmp_path / "missing-dir" / "state.db"
    with pytest.raises(StorageError, match=f"SQLite state store {path}: unable to open"):
        open_state_store(f"sqlite:///{path}")


def test_sqlite_store_uses_wal_and_one_table(tmp_path):
    path = tmp_path / "state.db"
    store = SQLiteStateStore(str(path), "crontrader", "dry")
    store.ensure_threads(1)
    store.set_value("invest:total", 5)
    store.close()
    raw = sqlite3.connect(path)
    assert raw.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert raw.execute("SELECT value FROM state WHERE key = 'crontrader:dry:thread:1' "
                       "AND field = 'state'").fetchone() == ("waiting",)
    raw.close()


@pytest.mark.services   # the shared Redis, by URL: no fixture tells tests/conftest.py
def test_open_state_store_picks_the_backend_by_scheme(tmp_path):
    store = open_state_store(f"sqlite:///{tmp_path / 's.db'}", "crontrader", "dry")
    assert isinstance(store, SQLiteStateStore) and store.key_prefix == "crontrader:dry:"
    store.close()
    store = open_state_store(REDIS_URL)
    assert isinstance(store, RedisStateStore) and store.key_prefix == "crontrader:live:"
    store.close()
    with pytest.raises(StorageError, match="not mysql://"):
        open_state_store("mysql://user:pw@host/db")
    with pytest.raises(ValueError, match="mode"):
        open_state_store(REDIS_URL, "crontrader", "paper")
    with pytest.raises(ValueError, match="prefix"):
        open_state_store(REDIS_URL, "cron*trader")


def test_redis_threads_are_found_by_their_numbers_not_by_a_scan(redis_namespace):
    """The agent's threads come from the set of their numbers, so a Redis holding a million
    keys of others costs it nothing; threads written before the set existed are registered once."""
    raw = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    ns = f"{redis_namespace}:live:"
    try:
        raw.hset(ns + "thread:12", mapping={"state": "active", "currency": "BTC", "value": "5", "volume": "1"})
        store = RedisStateStore(REDIS_URL, redis_namespace, "live")
        assert store.ensure_threads(2) == 2
        assert raw.smembers(ns + "threads") == {"1", "2", "12"}       # the old thread 12 is kept
        raw.hset(ns + "thread:13", mapping={"state": "waiting"})      # not registered: never scanned for again
        assert [t.n for t in store.threads()] == [1, 2, 12]
        store.put_thread(Thread(5, state="disabled"))
        assert [t.n for t in store.threads()] == [1, 2, 5, 12]
        store.close()
    finally:
        raw.close()


def test_a_lock_without_a_ttl_or_with_more_than_ours_is_bounded_reported_and_taken_over(state_store):
    """Set by hand, by another program, by a host whose clock is far ahead: it gets our ttl,
    acquire() says so once, and a later run takes it after that ttl at most."""
    if isinstance(state_store, RedisStateStore):
        key = state_store.key_prefix + "lock:agent"
        state_store.client.set(key, "otherhost:1:foreign")               # no ttl
        forever = lambda: state_store.client.set(key, "otherhost:1:foreign", px=10 ** 12)
    elif isinstance(state_store, SQLiteStateStore):
        key = state_store.key_prefix + "lock:agent"
        with state_store._transaction():
            state_store._write(key, {"token": "otherhost:1:foreign"})    # no expires
        def forever():
            with state_store._transaction():
                state_store._write(key, {"token": "otherhost:1:foreign", "expires": str(10 ** 15)})
    else:
        pytest.skip("a memory store's locks end with its process")
    for left in ("no ttl", "s left"):
        lock = state_store.lock("agent", 0.5)
        assert not lock.acquire()
        assert lock.problem and f"lock {key} held by 'otherhost:1:foreign' had {'no ttl' if left == 'no ttl' else ''}" \
            in lock.problem and left in lock.problem and "it now expires in 0 s" in lock.problem
        again = state_store.lock("agent", 0.5)
        assert not again.acquire() and again.problem is None         # said once
        deadline = time.monotonic() + 5
        while not again.acquire():
            assert time.monotonic() < deadline, "the bounded lock never expired"
            time.sleep(0.02)
        assert again.release()
        forever()
