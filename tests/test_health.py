"""HealthTracker: breaker opens after threshold, ignores request errors, half-opens,
re-opens with doubled cooldown, honours 429 retry_after, snapshot."""

from __future__ import annotations

import asyncio

import pytest

from tierwise.errors import (
    AuthenticationError,
    BadRequestError,
    BudgetExceeded,
    ContentFiltered,
    ContextWindowExceeded,
    ProtocolError,
    ProviderConnectionError,
    ProviderTimeout,
    RateLimitError,
    ServerError,
)
from tierwise.execution.health import HealthState, HealthTracker, counts_as_failure
from tierwise.testing.clock import FakeClock

KEY = "openai/gpt-4o-mini@primary"


def tracker(clock: FakeClock, **kwargs: float) -> HealthTracker:
    return HealthTracker(clock=clock, **kwargs)  # type: ignore[arg-type]


def fail(h: HealthTracker, n: int, error: BaseException | None = None, key: str = KEY) -> None:
    for _ in range(n):
        h.record_failure(key, error or ServerError("boom", status_code=503))


def test_unknown_key_is_available() -> None:
    h = HealthTracker(clock=FakeClock())
    assert h.available("never-seen")
    assert h.state("never-seen") == HealthState("healthy", 0, 0.0, 0, 0)
    assert h.snapshot() == {}


def test_opens_after_threshold_and_cools_for_cooldown() -> None:
    clock = FakeClock(auto_advance=False)
    h = tracker(clock, failure_threshold=5, cooldown_s=30.0)
    fail(h, 4)
    assert h.available(KEY)
    fail(h, 1)
    assert not h.available(KEY)
    state = h.state(KEY)
    assert state.state == "cooling"
    assert state.consecutive_failures == 5
    assert state.cooldown_remaining_s == 30.0
    clock.advance(29.9)
    assert not h.available(KEY)
    clock.advance(0.1)
    assert h.state(KEY).state == "half_open"
    assert h.available(KEY)


def test_success_resets_the_failure_count() -> None:
    h = tracker(FakeClock(), failure_threshold=3)
    fail(h, 2)
    h.record_success(KEY)
    fail(h, 2)
    assert h.available(KEY)
    assert h.state(KEY).consecutive_failures == 2


def test_failures_spread_beyond_window_do_not_open() -> None:
    clock = FakeClock(auto_advance=False)
    h = tracker(clock, failure_threshold=3, window_s=60.0)
    for _ in range(10):
        fail(h, 1)
        clock.advance(31)  # never three within 60 s
    assert h.available(KEY)
    assert h.state(KEY).total_failures == 10


@pytest.mark.parametrize(
    "error",
    [
        BadRequestError("bad", status_code=400),
        ContextWindowExceeded("too long", status_code=400),
        ContentFiltered("refused"),
        BudgetExceeded("over"),
        asyncio.CancelledError(),
        ValueError("bug in caller"),
    ],
)
def test_request_errors_never_trip_the_breaker(error: BaseException) -> None:
    h = tracker(FakeClock(), failure_threshold=2)
    for _ in range(20):
        assert h.record_failure(KEY, error) is False
    assert h.available(KEY)
    assert h.state(KEY).total_failures == 0


@pytest.mark.parametrize(
    "error",
    [
        ServerError("boom", status_code=500),
        ProviderTimeout("slow"),
        ProviderConnectionError("reset"),
        ProtocolError("bad json"),
        RateLimitError("slow down", status_code=429),
        RateLimitError("insufficient_quota", status_code=429, retryable=False),
        AuthenticationError("bad key", status_code=401),
        TimeoutError(),
    ],
)
def test_deployment_errors_count(error: BaseException) -> None:
    assert counts_as_failure(error)
    h = tracker(FakeClock(), failure_threshold=2)
    assert h.record_failure(KEY, error)
    h.record_failure(KEY, error)
    assert not h.available(KEY)


def test_half_open_allows_exactly_one_trial() -> None:
    clock = FakeClock(auto_advance=False)
    h = tracker(clock, failure_threshold=1, cooldown_s=10.0)
    fail(h, 1)
    clock.advance(10)
    assert h.available(KEY)  # the trial
    assert not h.available(KEY)  # everyone else waits for its outcome
    assert not h.available(KEY)
    h.record_success(KEY)
    assert h.state(KEY).state == "healthy"
    assert h.available(KEY)
    assert h.available(KEY)


def test_unreported_trial_expires() -> None:
    clock = FakeClock(auto_advance=False)
    h = tracker(clock, failure_threshold=1, cooldown_s=10.0)
    fail(h, 1)
    clock.advance(10)
    assert h.available(KEY)
    clock.advance(9)
    assert not h.available(KEY)
    clock.advance(1)
    assert h.available(KEY)  # the first trial never reported: a new one may go


def test_inconclusive_trial_lets_another_caller_probe() -> None:
    clock = FakeClock(auto_advance=False)
    h = tracker(clock, failure_threshold=1, cooldown_s=10.0)
    fail(h, 1)
    clock.advance(10)
    assert h.available(KEY)
    h.record_failure(KEY, BadRequestError("the request's fault"))
    assert h.available(KEY)


def test_failed_trial_reopens_with_doubled_cooldown_up_to_cap() -> None:
    clock = FakeClock(auto_advance=False)
    h = tracker(clock, failure_threshold=1, cooldown_s=10.0, max_cooldown_s=35.0)
    fail(h, 1)
    expected = [20.0, 35.0, 35.0]
    clock.advance(10)
    for cooldown in expected:
        assert h.available(KEY)  # trial
        fail(h, 1)
        state = h.state(KEY)
        assert state.state == "cooling"
        assert state.cooldown_remaining_s == cooldown
        clock.advance(cooldown - 0.5)
        assert not h.available(KEY)
        clock.advance(0.5)
    # a successful trial closes it and resets the cooldown to the base value
    assert h.available(KEY)
    h.record_success(KEY)
    fail(h, 1)
    assert h.state(KEY).cooldown_remaining_s == 10.0


def test_rate_limit_with_retry_after_cools_below_threshold_then_recovers() -> None:
    clock = FakeClock(auto_advance=False)
    h = tracker(clock, failure_threshold=5, cooldown_s=30.0)
    h.record_failure(KEY, RateLimitError("slow down", status_code=429, retry_after=4.0))
    state = h.state(KEY)
    assert state.state == "cooling"
    assert state.cooldown_remaining_s == 4.0
    assert not h.available(KEY)
    clock.advance(4)
    # only a rate limit: straight back to healthy, no single-trial restriction
    assert h.state(KEY).state == "healthy"
    assert h.available(KEY)
    assert h.available(KEY)


def test_long_retry_after_extends_an_open_breaker() -> None:
    clock = FakeClock(auto_advance=False)
    h = tracker(clock, failure_threshold=1, cooldown_s=10.0)
    h.record_failure(KEY, RateLimitError("slow down", status_code=429, retry_after=45.0))
    assert h.state(KEY).cooldown_remaining_s == 45.0
    clock.advance(45)
    assert h.state(KEY).state == "half_open"


def test_forced_success_while_cooling_closes() -> None:
    h = tracker(FakeClock(), failure_threshold=1)
    fail(h, 1)
    assert not h.available(KEY)
    h.record_success(KEY)  # the executor had nothing else left, and it worked
    assert h.available(KEY)


def test_keys_are_independent_and_snapshot_reports_all() -> None:
    clock = FakeClock(auto_advance=False)
    h = tracker(clock, failure_threshold=2, cooldown_s=30.0)
    fail(h, 2, key="a")
    h.record_success("b")
    h.record_success("b")
    fail(h, 1, key="b")
    clock.advance(5)
    snap = h.snapshot()
    assert snap == {
        "a": HealthState("cooling", 2, 25.0, 2, 0),
        "b": HealthState("healthy", 1, 0.0, 1, 2),
    }
    assert not h.available("a")
    assert h.available("b")
    h.reset("a")
    assert h.available("a")
    h.reset()
    assert h.snapshot() == {}


def test_validation() -> None:
    with pytest.raises(ValueError):
        HealthTracker(failure_threshold=0)
    with pytest.raises(ValueError):
        HealthTracker(cooldown_s=0)
