"""The platforms' one retry loop and one pacer (includes/platforms/transport.py), on fake
sleeps and clocks: the schedule, what is repeated, what is raised, what is logged."""
from __future__ import annotations

import logging
from collections.abc import Callable

import pytest

from includes.errors import InvalidNonce, PermanentError, RateLimited, TemporaryError
from includes.platforms.bittrex import BittrexPlatform
from includes.platforms.kraken import KrakenPlatform
from includes.platforms.transport import Pacer, RetryPolicy, backoff, refused_at_the_door


def failing(*errors: Exception, result: str = "ok") -> tuple[Callable[[], str], list[int]]:
    """A call that raises `errors` in turn, then returns `result`; and its call count."""
    calls = [0]

    def call() -> str:
        calls[0] += 1
        if calls[0] <= len(errors):
            raise errors[calls[0] - 1]
        return result
    return call, calls


def test_the_backoff_doubles_from_half_a_second_to_eight_and_triples_after_a_rate_limit():
    assert [backoff(n, TemporaryError("x")) for n in range(6)] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]
    assert [backoff(n, RateLimited("x")) for n in range(6)] == [1.5, 3.0, 6.0, 12.0, 24.0, 24.0]


def test_temporary_failures_are_repeated_on_the_schedule_and_logged(caplog):
    waits: list[float] = []
    call, calls = failing(TemporaryError("busy", exchange="v", method="m"), RateLimited("slow down"))
    with caplog.at_level(logging.WARNING, logger="includes.platforms.transport"):
        assert RetryPolicy(3, waits.append).run(call) == "ok"
    assert calls == [3] and waits == [0.5, 3.0]
    assert [r.getMessage() for r in caplog.records] == ["v/m: busy; retry 1/3 in 0.5 s",
                                                        "slow down; retry 2/3 in 3.0 s"]


def test_spent_retries_raise_the_last_error_and_a_stale_nonce_names_its_likely_cause():
    waits: list[float] = []
    last = TemporaryError("third")
    call, calls = failing(TemporaryError("first"), TemporaryError("second"), last)
    with pytest.raises(TemporaryError) as raised:
        RetryPolicy(2, waits.append).run(call)
    assert raised.value is last and calls == [3] and waits == [0.5, 1.0]

    call, _ = failing(*[InvalidNonce("EAPI:Invalid nonce", exchange="kraken", refused=True)] * 3)
    with pytest.raises(InvalidNonce, match=InvalidNonce.ADVICE) as raised:
        RetryPolicy(2, waits.append).run(call)
    assert raised.value.refused and raised.value.exchange == "kraken"


def test_a_call_made_once_is_not_repeated_and_its_error_is_raised_as_it_came():
    nonce = InvalidNonce("EAPI:Invalid nonce", refused=True)
    call, calls = failing(nonce)
    with pytest.raises(InvalidNonce) as raised:
        RetryPolicy(3, lambda s: pytest.fail("slept")).run(call, retry=False)
    assert raised.value is nonce and calls == [1]   # no advice: one refusal proves nothing


def test_a_permanent_error_is_raised_at_once():
    refusal = PermanentError("EGeneral:Invalid arguments", refused=True)
    call, calls = failing(refusal)
    with pytest.raises(PermanentError) as raised:
        RetryPolicy(3, lambda s: pytest.fail("slept")).run(call)
    assert raised.value is refusal and calls == [1]


def test_an_order_is_sent_again_only_after_a_refusal_at_the_door(caplog):
    waits: list[float] = []
    call, calls = failing(RateLimited("EAPI:Rate limit exceeded", refused=True), result="order")
    with caplog.at_level(logging.WARNING, logger="includes.platforms.transport"):
        assert RetryPolicy(3, waits.append).run(call, repeat=refused_at_the_door, what="order b1 ") == "order"
    assert calls == [2] and waits == [1.5]
    assert caplog.records[0].getMessage() == "EAPI:Rate limit exceeded; order b1 retry 1/3 in 1.5 s"

    lost = TemporaryError("no reply within 15 s")   # may have reached the book: never sent again
    call, calls = failing(lost)
    with pytest.raises(TemporaryError) as raised:
        RetryPolicy(3, lambda s: pytest.fail("slept")).run(call, repeat=refused_at_the_door)
    assert raised.value is lost and calls == [1]


class FakeClock:
    def __init__(self, now: float = 0.0) -> None:
        self.now = now
        self.waits: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds


def test_the_pacer_spaces_calls_by_its_interval_and_lets_the_first_one_go():
    clock = FakeClock()
    pacer = Pacer(2.0, sleep=clock.sleep, clock=clock)
    pacer.wait()
    pacer.wait()
    assert clock.waits == [0.5]
    clock.now += 0.2
    pacer.wait()
    assert clock.waits == [0.5, pytest.approx(0.3)]
    clock.now += 5.0             # a pause longer than the interval: no wait, no credit for later
    pacer.wait()
    pacer.wait()
    assert clock.waits == [0.5, pytest.approx(0.3), 0.5]


@pytest.mark.parametrize("build", [
    lambda tmp_path, sleep: KrakenPlatform(state_dir=tmp_path, public_calls_per_second=1.0, sleep=sleep),
    lambda tmp_path, sleep: BittrexPlatform(calls_per_second=1.0, sleep=sleep)], ids=["kraken", "bittrex"])
def test_a_platform_paces_through_the_sleep_it_has_now(tmp_path, build):
    """Tests replace `sleep` on a built platform (test_order_faults): the pacer must use it."""
    platform = build(tmp_path, lambda s: pytest.fail("the sleep given at construction was used"))
    waits: list[float] = []
    platform.sleep = waits.append
    platform.pacer.wait()
    platform.pacer.wait()
    assert len(waits) == 1 and 0 < waits[0] <= 1.0
