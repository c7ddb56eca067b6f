"""RetryPolicy: which errors retry, exponential full-jitter backoff, retry_after, deadline."""

from __future__ import annotations

import asyncio
import dataclasses
import random

import pytest

from tierwise.errors import (
    AllTargetsFailed,
    AuthenticationError,
    BadRequestError,
    BudgetExceeded,
    ConfigError,
    ContentFiltered,
    ContextWindowExceeded,
    ProtocolError,
    ProviderConnectionError,
    ProviderError,
    ProviderTimeout,
    RateLimitError,
    ServerError,
)
from tierwise.execution.retry import RetryPolicy


def rng() -> random.Random:
    return random.Random(1234)


@pytest.mark.parametrize(
    "error",
    [
        RateLimitError("slow down", status_code=429),
        ServerError("boom", status_code=503),
        ProviderTimeout("read timeout"),
        ProviderConnectionError("reset"),
        ProtocolError("truncated stream"),
        ProviderError("in-band overload", retryable=True),
        TimeoutError(),
    ],
)
def test_retryable_errors_are_retried(error: BaseException) -> None:
    policy = RetryPolicy()
    assert policy.should_retry(error, attempt=1, elapsed=0.0)
    assert policy.should_retry(error, attempt=2, elapsed=0.0)


@pytest.mark.parametrize(
    "error",
    [
        BadRequestError("bad", status_code=400),
        ContextWindowExceeded("too long", status_code=400),
        AuthenticationError("no key", status_code=401),
        ContentFiltered("refused"),
        RateLimitError("insufficient_quota", status_code=429, retryable=False),
        ServerError("x-should-retry: false", status_code=500, retryable=False),
        BudgetExceeded("over budget"),
        ConfigError("bad config"),
        AllTargetsFailed("all failed", [ServerError("boom")]),
        asyncio.CancelledError(),
        KeyboardInterrupt(),
        ValueError("a bug"),
    ],
)
def test_non_retryable_errors_are_never_retried(error: BaseException) -> None:
    policy = RetryPolicy(max_attempts=100)
    assert not policy.should_retry(error, attempt=1, elapsed=0.0)


def test_max_attempts_counts_tries_per_target() -> None:
    policy = RetryPolicy(max_attempts=3)
    err = ServerError("boom")
    assert [policy.should_retry(err, a, 0.0) for a in (1, 2, 3, 4)] == [True, True, False, False]
    assert not RetryPolicy(max_attempts=1).should_retry(err, 1, 0.0)


def test_retry_on_hook_overrides_but_cannot_retry_cancellation_or_budget() -> None:
    policy = RetryPolicy(retry_on=lambda e: isinstance(e, BadRequestError) or None)
    assert policy.should_retry(BadRequestError("flaky proxy 400"), 1, 0.0)
    assert policy.should_retry(ServerError("boom"), 1, 0.0)  # None → default verdict
    never = RetryPolicy(retry_on=lambda e: True)
    assert not never.should_retry(asyncio.CancelledError(), 1, 0.0)
    assert not never.should_retry(BudgetExceeded("no"), 1, 0.0)
    assert not never.should_retry(ConfigError("no"), 1, 0.0)
    veto = RetryPolicy(retry_on=lambda e: False)
    assert not veto.should_retry(ServerError("boom"), 1, 0.0)


def test_backoff_grows_exponentially_and_is_capped() -> None:
    policy = RetryPolicy(initial_backoff=0.5, multiplier=2.0, max_backoff=20.0, jitter=False)
    assert [policy.delay(a, None, rng()) for a in range(1, 9)] == [0.5, 1, 2, 4, 8, 16, 20, 20]
    assert policy.delay(10_000, None, rng()) == 20.0  # no overflow


def test_full_jitter_stays_within_bounds_and_spreads() -> None:
    policy = RetryPolicy(initial_backoff=0.5, multiplier=2.0, max_backoff=20.0)
    r = rng()
    for attempt in range(1, 8):
        cap = policy.backoff(attempt)
        samples = [policy.delay(attempt, ServerError("boom"), r) for _ in range(400)]
        assert all(0.0 <= s <= cap for s in samples)
        # full jitter: the draws cover the whole [0, cap] range, mean near cap / 2
        assert min(samples) < cap * 0.1
        assert max(samples) > cap * 0.9
        assert cap * 0.4 < sum(samples) / len(samples) < cap * 0.6


def test_delay_is_deterministic_for_a_seeded_rng() -> None:
    policy = RetryPolicy()
    assert [policy.delay(a, None, rng()) for a in (1, 2, 3)] == [
        policy.delay(a, None, rng()) for a in (1, 2, 3)
    ]


def test_retry_after_is_a_floor() -> None:
    policy = RetryPolicy(initial_backoff=0.5, max_backoff=20.0)
    err = RateLimitError("slow down", retry_after=7.0)
    r = rng()
    assert all(policy.delay(1, err, r) == 7.0 for _ in range(50))  # backoff (<=0.5) < 7
    # a longer backoff than retry_after is kept
    no_jitter = RetryPolicy(initial_backoff=10.0, jitter=False)
    assert no_jitter.delay(1, RateLimitError("x", retry_after=2.0), r) == 10.0


def test_retry_after_above_max_means_fall_back_instead() -> None:
    policy = RetryPolicy(max_retry_after=30.0)
    assert policy.should_retry(RateLimitError("x", retry_after=30.0), 1, 0.0)
    assert not policy.should_retry(RateLimitError("x", retry_after=31.0), 1, 0.0)


def test_deadline_stops_retries_and_caps_delay() -> None:
    policy = RetryPolicy(deadline=10.0, initial_backoff=8.0, jitter=False)
    err = ServerError("boom")
    assert policy.should_retry(err, 1, elapsed=3.0)
    assert not policy.should_retry(err, 1, elapsed=10.0)
    assert not policy.should_retry(err, 1, elapsed=12.0)
    assert policy.delay(1, err, rng(), elapsed=3.0) == 7.0  # 8 s backoff capped at the 7 s left
    assert policy.delay(1, err, rng(), elapsed=1.0) == 8.0
    assert policy.delay(1, err, rng(), elapsed=11.0) == 0.0
    assert policy.time_left(4.0) == 6.0
    assert RetryPolicy().time_left(4.0) is None


def test_retry_after_beyond_deadline_is_not_waited_for() -> None:
    policy = RetryPolicy(deadline=10.0)
    assert policy.should_retry(RateLimitError("x", retry_after=5.0), 1, elapsed=2.0)
    assert not policy.should_retry(RateLimitError("x", retry_after=5.0), 1, elapsed=6.0)


def test_policy_is_frozen_slotted_and_validated() -> None:
    policy = RetryPolicy()
    with pytest.raises(dataclasses.FrozenInstanceError):
        policy.max_attempts = 5  # type: ignore[misc]
    assert not hasattr(policy, "__dict__")
    assert (policy.max_attempts, policy.initial_backoff, policy.max_backoff) == (3, 0.5, 20.0)
    assert (policy.multiplier, policy.jitter, policy.deadline, policy.max_retry_after) == (
        2.0,
        True,
        None,
        30.0,
    )
    for bad in ({"max_attempts": 0}, {"multiplier": 0.5}, {"deadline": 0}, {"initial_backoff": -1}):
        with pytest.raises(ValueError):
            RetryPolicy(**bad)
