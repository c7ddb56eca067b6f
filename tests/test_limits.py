"""RateLimiter: exact RPM windows, TPM with corrections, FIFO, concurrency, cancellation,
provider feedback (observe/penalize), fast path, snapshot. All on a FakeClock."""

from __future__ import annotations

import bisect
import math
import random
from collections.abc import Sequence

import anyio
import anyio.lowlevel
import pytest

from tierwise.execution.limits import LimiterClosed, Permit, QueueWaitTimeout, RateLimiter
from tierwise.testing.clock import FakeClock
from tierwise.types import RateLimitInfo


def max_per_window(times: Sequence[float], width: float = 60.0) -> int:
    """Most acquisitions in any window [t, t + width) starting at a recorded time."""
    ts = sorted(times)
    return max((bisect.bisect_left(ts, t + width) - bisect.bisect_left(ts, t) for t in ts), default=0)


def max_tokens_per_window(
    records: Sequence[tuple[float, int]], start: float, end: float, width: float = 60.0
) -> int:
    """Most tokens in any window [t, t + width) with start <= t and t + width <= end."""
    records = sorted(records)
    times = [t for t, _ in records]
    prefix = [0]
    for _, n in records:
        prefix.append(prefix[-1] + n)
    best = 0
    for t in times:
        if t < start or t + width > end:
            continue
        lo, hi = bisect.bisect_left(times, t), bisect.bisect_left(times, t + width)
        best = max(best, prefix[hi] - prefix[lo])
    return best


GUARD_S = 20


async def settle() -> None:
    for _ in range(20):
        await anyio.lowlevel.checkpoint()


# -- RPM ---------------------------------------------------------------------


async def test_rpm_burst_is_admitted_in_exact_minute_batches() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rpm=600, clock=clock)
    times: list[float] = []

    async def one() -> None:
        permit = await limiter.acquire(1)
        times.append(clock.now())
        permit.release()

    with anyio.fail_after(GUARD_S):  # real seconds: a deadlock fails, not hangs
        async with anyio.create_task_group() as tg:
            for _ in range(3000):
                tg.start_soon(one)
    assert len(times) == 3000
    assert max_per_window(times) == 600
    # A sliding log wastes nothing: 600 at t=0, 600 at t=60, ... , last batch at t=240.
    assert sorted(set(times)) == [0.0, 60.0, 120.0, 180.0, 240.0]
    assert all(times.count(t) == 600 for t in set(times))


async def test_rpm_never_exceeded_with_random_arrivals_and_holds() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rpm=600, clock=clock)
    rng = random.Random(42)
    times: list[float] = []

    async def client(start: float, hold: float) -> None:
        await clock.sleep(start)
        permit = await limiter.acquire(rng.randint(1, 100))
        times.append(clock.now())
        try:
            await clock.sleep(hold)
        finally:
            permit.release()

    with anyio.fail_after(GUARD_S):  # real seconds: a deadlock fails, not hangs
        async with anyio.create_task_group() as tg:
            for _ in range(3000):
                tg.start_soon(client, rng.uniform(0, 200), rng.uniform(0, 5))
    assert len(times) == 3000
    assert max_per_window(times) <= 600
    # The load (900/min over 200 s) saturates the limit; a sliding log still finishes
    # 3000 requests at 600/min in about five minutes.
    assert max(times) <= 320


async def test_rpm_sequential_calls_hit_the_limit_exactly() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rpm=7, clock=clock)
    times = []
    for _ in range(30):
        permit = await limiter.acquire()
        times.append(clock.now())
        permit.release()
        await clock.sleep(1.3)  # uneven spacing so windows do not align with batches
    assert max_per_window(times) == 7


async def test_fractional_rpm_below_one_spaces_requests() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rpm=0.5, clock=clock)
    times = []
    for _ in range(3):
        (await limiter.acquire()).release()
        times.append(clock.now())
    assert times == [0.0, 120.0, 240.0]


# -- TPM ---------------------------------------------------------------------


async def _tpm_load(
    factor: float, *, correct: bool, tpm: int = 100_000, duration: float = 900.0, workers: int = 12
) -> list[tuple[float, int]]:
    """Workers send requests whose estimate is ``factor`` × (±10 %) the real usage."""
    clock = FakeClock()
    limiter = RateLimiter(tpm=tpm, clock=clock)
    rng = random.Random(1234)
    records: list[tuple[float, int]] = []

    async def worker() -> None:
        while clock.now() < duration:
            real = rng.randint(500, 3000)
            estimate = max(1, int(real * factor * rng.uniform(0.9, 1.1)))
            permit = await limiter.acquire(estimate)
            records.append((clock.now(), real))
            try:
                await clock.sleep(rng.uniform(0.2, 2.0))
            finally:
                permit.release(real if correct else None)

    with anyio.fail_after(GUARD_S):  # real seconds: a deadlock fails, not hangs
        async with anyio.create_task_group() as tg:
            for _ in range(workers):
                tg.start_soon(worker)
    return records


def _rate_per_minute(records: Sequence[tuple[float, int]], start: float, end: float) -> float:
    return sum(n for t, n in records if start <= t < end) / ((end - start) / 60.0)


@pytest.mark.parametrize("factor", [0.5, 2.0])
async def test_tpm_within_five_percent_after_correction(factor: float) -> None:
    tpm, duration = 100_000, 900.0
    records = await _tpm_load(factor, correct=True, tpm=tpm, duration=duration)
    # Every full 60 s window (after the first minute of learning) stays under tpm + 5 %...
    assert max_tokens_per_window(records, 60.0, duration) <= tpm * 1.05
    # ...and the limiter does not waste the budget either (refunds are reused).
    assert _rate_per_minute(records, 60.0, duration - 60.0) >= tpm * 0.95


@pytest.mark.parametrize("factor", [0.5, 2.0])
async def test_tpm_control_without_correction_is_far_off(factor: float) -> None:
    # The same load without release(used_tokens): proves the test above can fail.
    tpm, duration = 100_000, 900.0
    records = await _tpm_load(factor, correct=False, tpm=tpm, duration=duration)
    rate = _rate_per_minute(records, 60.0, duration - 60.0)
    if factor < 1:
        assert rate > tpm * 1.5
    else:
        assert rate < tpm * 0.6


async def test_refund_wakes_waiter_immediately() -> None:
    clock = FakeClock()
    limiter = RateLimiter(tpm=1000, clock=clock)
    big = await limiter.acquire(900)
    got: list[float] = []

    async def waiter() -> None:
        (await limiter.acquire(500)).release(500)
        got.append(clock.now())

    with anyio.fail_after(GUARD_S):  # real seconds: a deadlock fails, not hangs
        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter)
            await settle()
            assert got == []
            big.release(100)  # real usage far below the estimate: 400 tokens come back
    assert got == [0.0]


async def test_extra_charge_delays_later_requests() -> None:
    clock = FakeClock()
    limiter = RateLimiter(tpm=1000, clock=clock)
    (await limiter.acquire(100)).release(900)  # estimate 100, really used 900
    assert limiter.snapshot()["tokens_in_window"] == 900
    await clock.sleep(10)
    permit = await limiter.acquire(200)  # 900 + 200 > 1000: waits for the first to expire
    assert clock.now() == 60.0
    permit.release(200)


async def test_low_estimates_scale_up_reservations_but_never_down() -> None:
    clock = FakeClock()
    limiter = RateLimiter(tpm=1_000_000, clock=clock)
    for _ in range(50):
        (await limiter.acquire(100)).release(300)
    permit = await limiter.acquire(100)
    assert permit.estimate == 100
    assert 250 <= permit.tokens <= 300  # learned ×3
    permit.release(300)

    limiter = RateLimiter(tpm=1_000_000, clock=clock)
    for _ in range(50):
        (await limiter.acquire(300)).release(100)
    permit = await limiter.acquire(300)
    assert permit.tokens == 300  # over-estimates are refunded, never pre-shrunk
    permit.release()


async def test_request_larger_than_tpm_goes_alone() -> None:
    clock = FakeClock()
    limiter = RateLimiter(tpm=1000, clock=clock)
    huge = await limiter.acquire(5000)  # empty window: admitted, alone
    assert clock.now() == 0.0
    huge.release(5000)
    small = await limiter.acquire(10)
    assert clock.now() == 60.0
    small.release(10)

    # with something already in the window it waits until the window is empty
    await clock.sleep(1)
    t0 = clock.now()
    huge = await limiter.acquire(5000)
    assert clock.now() == t0 + 59.0  # the 10-token request (t=60) expires at t=120
    huge.release()


# -- FIFO ----------------------------------------------------------------------


async def test_big_request_at_head_is_not_starved_by_small_ones() -> None:
    clock = FakeClock()
    limiter = RateLimiter(tpm=1000, clock=clock)
    first = await limiter.acquire(800)
    order: list[tuple[str, float]] = []

    async def client(name: str, tokens: int) -> None:
        permit = await limiter.acquire(tokens)
        order.append((name, clock.now()))
        permit.release()

    with anyio.fail_after(GUARD_S):  # real seconds: a deadlock fails, not hangs
        async with anyio.create_task_group() as tg:
            tg.start_soon(client, "big", 900)
            await settle()
            for i in range(3):
                # each would fit right now (800 + 50 <= 1000) but must queue behind "big"
                tg.start_soon(client, f"small{i}", 50)
                await settle()
            assert order == []
            assert limiter.snapshot()["queued"] == 4
            first.release()
    assert order == [("big", 60.0), ("small0", 60.0), ("small1", 60.0), ("small2", 120.0)]


async def test_arrivals_are_served_in_order() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rpm=5, max_concurrency=2, clock=clock)
    order: list[int] = []
    rng = random.Random(5)

    async def client(i: int) -> None:
        permit = await limiter.acquire(rng.randint(1, 10))
        order.append(i)
        await clock.sleep(rng.uniform(1, 30))
        permit.release()

    with anyio.fail_after(GUARD_S):  # real seconds: a deadlock fails, not hangs
        async with anyio.create_task_group() as tg:
            for i in range(40):
                tg.start_soon(client, i)
                await settle()
    assert order == list(range(40))


# -- concurrency ---------------------------------------------------------------


async def test_concurrency_cap_holds() -> None:
    clock = FakeClock()
    limiter = RateLimiter(max_concurrency=3, clock=clock)
    rng = random.Random(9)
    current = peak = 0

    async def client() -> None:
        nonlocal current, peak
        permit = await limiter.acquire(1)
        try:
            current += 1
            peak = max(peak, current)
            assert limiter.in_flight <= 3
            await clock.sleep(rng.uniform(0.1, 10))
        finally:
            current -= 1
            permit.release()

    with anyio.fail_after(GUARD_S):  # real seconds: a deadlock fails, not hangs
        async with anyio.create_task_group() as tg:
            for _ in range(60):
                tg.start_soon(client)
    assert peak == 3
    assert limiter.in_flight == 0
    assert limiter.queued == 0


# -- cancellation --------------------------------------------------------------


async def test_cancel_while_waiting_on_concurrency_takes_nothing() -> None:
    clock = FakeClock()
    limiter = RateLimiter(max_concurrency=1, tpm=1000, rpm=10, clock=clock)
    held = await limiter.acquire(100)
    got: list[str] = []

    async def client(name: str, scope: anyio.CancelScope) -> None:
        with scope:
            (await limiter.acquire(100)).release()
            got.append(name)

    victim, survivor = anyio.CancelScope(), anyio.CancelScope()
    with anyio.fail_after(GUARD_S):  # real seconds: a deadlock fails, not hangs
        async with anyio.create_task_group() as tg:
            tg.start_soon(client, "victim", victim)  # head of the queue
            await settle()
            tg.start_soon(client, "survivor", survivor)
            await settle()
            assert limiter.queued == 2
            victim.cancel()
            await settle()
            assert limiter.queued == 1
            snap = limiter.snapshot()
            assert snap["in_flight"] == 1
            assert snap["tokens_in_window"] == 100
            assert snap["requests_in_window"] == 1
            held.release()
    assert got == ["survivor"]
    assert limiter.snapshot()["requests_in_window"] == 2  # the victim never took a slot


async def test_cancel_head_waiting_on_time_passes_turn_to_next() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rpm=2, clock=clock)
    for _ in range(2):
        (await limiter.acquire()).release()
    got: list[tuple[str, float]] = []
    victim = anyio.CancelScope()

    async def client(name: str, scope: anyio.CancelScope | None = None) -> None:
        with scope or anyio.CancelScope():
            (await limiter.acquire()).release()
            got.append((name, clock.now()))

    async def cancel_later() -> None:
        await clock.sleep(30)
        victim.cancel()

    with anyio.fail_after(GUARD_S):  # real seconds: a deadlock fails, not hangs
        async with anyio.create_task_group() as tg:
            tg.start_soon(client, "victim", victim)
            await settle()
            tg.start_soon(client, "a")
            tg.start_soon(client, "b")
            tg.start_soon(client, "c")
            tg.start_soon(cancel_later)
    # the victim's slot was never used: a and b get t=60, c waits for a's to expire
    assert got == [("a", 60.0), ("b", 60.0), ("c", 120.0)]


async def test_cancel_while_holding_releases_in_finally() -> None:
    clock = FakeClock()
    limiter = RateLimiter(max_concurrency=1, clock=clock)

    async def holder() -> None:
        permit = await limiter.acquire(10)
        try:
            await clock.sleep(1000)
        finally:
            permit.release()

    with anyio.fail_after(GUARD_S):  # real seconds: a deadlock fails, not hangs
        async with anyio.create_task_group() as tg:
            tg.start_soon(holder)
            await settle()
            assert limiter.in_flight == 1
            tg.cancel_scope.cancel()
    assert limiter.in_flight == 0
    with anyio.fail_after(1):
        (await limiter.acquire(10)).release()


async def test_release_is_idempotent_and_context_manager_releases() -> None:
    limiter = RateLimiter(max_concurrency=2, tpm=1000, clock=FakeClock())
    permit = await limiter.acquire(100)
    permit.release(50)
    permit.release(500)  # ignored
    permit.release()
    assert permit.released
    assert limiter.in_flight == 0
    assert limiter.snapshot()["tokens_in_window"] == 50
    with await limiter.acquire(10) as p:
        assert isinstance(p, Permit)
        assert limiter.in_flight == 1
    assert limiter.in_flight == 0


@pytest.mark.parametrize("bad", [-1, -5, True, 1.5, float("inf"), float("nan"), 10**400, "7"])
async def test_a_nonsense_used_count_still_frees_the_slot(bad: object) -> None:
    # A release that raised before marking itself released leaked the slot forever:
    # with max_concurrency=1 the next request hung (issue #18.4).
    clock = FakeClock()
    limiter = RateLimiter(max_concurrency=1, tpm=10_000, clock=clock)
    permit = await limiter.acquire(100)
    permit.release(bad)  # type: ignore[arg-type]
    assert permit.released and limiter.in_flight == 0
    assert limiter.snapshot()["tokens_in_window"] == 100  # no correction: the reservation stands
    with anyio.fail_after(1):
        (await limiter.acquire(1)).release()


# -- provider feedback ---------------------------------------------------------


async def test_observe_zero_remaining_requests_holds_until_reset() -> None:
    clock = FakeClock()
    limiter = RateLimiter(clock=clock)
    limiter.observe(RateLimitInfo(requests_remaining=0, requests_reset_s=2.0))
    (await limiter.acquire()).release()
    assert clock.now() == 2.0


async def test_observe_remaining_requests_is_a_budget_until_reset() -> None:
    clock = FakeClock()
    limiter = RateLimiter(clock=clock)
    limiter.observe(RateLimitInfo(requests_remaining=2, requests_reset_s=5.0))
    times = []
    for _ in range(3):
        (await limiter.acquire()).release()
        times.append(clock.now())
    assert times == [0.0, 0.0, 5.0]


async def test_observe_low_token_budget_limits_until_reset() -> None:
    clock = FakeClock()
    limiter = RateLimiter(tpm=1_000_000, clock=clock)
    limiter.observe(RateLimitInfo(tokens_remaining=100, tokens_reset_s=5.0))
    (await limiter.acquire(50)).release()
    assert clock.now() == 0.0
    (await limiter.acquire(60)).release()  # 50 left until the reset
    assert clock.now() == 5.0
    assert limiter.snapshot()["provider_tokens_remaining"] is None  # window over


async def test_observe_without_reset_is_ignored() -> None:
    clock = FakeClock()
    limiter = RateLimiter(clock=clock)
    limiter.observe(RateLimitInfo(requests_remaining=0, tokens_remaining=0))
    (await limiter.acquire(10)).release()
    assert clock.now() == 0.0


async def test_newer_observation_wakes_sleeping_head() -> None:
    clock = FakeClock(auto_advance=False)
    limiter = RateLimiter(clock=clock)
    limiter.observe(RateLimitInfo(requests_remaining=0, requests_reset_s=30.0))
    got: list[float] = []

    async def client() -> None:
        (await limiter.acquire()).release()
        got.append(clock.now())

    with anyio.fail_after(GUARD_S):  # real seconds: a deadlock fails, not hangs
        async with anyio.create_task_group() as tg:
            tg.start_soon(client)
            await settle()
            clock.advance(1)
            await settle()
            assert got == []
            limiter.observe(RateLimitInfo(requests_remaining=10, requests_reset_s=60.0))
            await settle()
    assert got == [1.0]


async def test_penalize_holds_new_acquisitions_but_not_in_flight() -> None:
    clock = FakeClock()
    limiter = RateLimiter(max_concurrency=5, clock=clock)
    in_flight = await limiter.acquire()
    limiter.penalize(3.0)
    limiter.penalize(1.0)  # a shorter penalty never shortens the hold
    assert limiter.snapshot()["hold_remaining_s"] == 3.0
    in_flight.release()
    (await limiter.acquire()).release()
    assert clock.now() == 3.0


@pytest.mark.parametrize("bad", [-1, float("inf"), float("nan"), float("-inf"), True, "60"])
async def test_a_nonsense_retry_after_never_freezes_or_crashes_the_limiter(bad: object) -> None:
    clock = FakeClock()
    limiter = RateLimiter(clock=clock)
    limiter.penalize(bad)  # type: ignore[arg-type]
    assert limiter.snapshot()["hold_remaining_s"] == 0.0


async def test_penalize_cap_bounds_the_hold() -> None:
    clock = FakeClock()
    limiter = RateLimiter(clock=clock)
    limiter.penalize(120.0, cap=30.0)
    assert limiter.snapshot()["hold_remaining_s"] == 30.0
    (await limiter.acquire()).release()
    assert clock.now() == 30.0


# -- bounded waits and closing -------------------------------------------------


async def test_a_wait_certain_to_exceed_the_timeout_fails_at_once() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rpm=1, clock=clock, name="m")
    (await limiter.acquire()).release()
    with pytest.raises(QueueWaitTimeout, match="'m' within 3s") as info:
        await limiter.acquire(timeout=3.0)
    assert clock.now() == 0.0 and info.value.waited_s == 0.0
    assert limiter.queued == 0 and limiter.snapshot()["requests_in_window"] == 1
    with pytest.raises(QueueWaitTimeout):
        await limiter.acquire(timeout=0)
    permit = await limiter.acquire(timeout=61.0)  # long enough: waits and gets it
    assert clock.now() == 60.0
    permit.release()


async def test_a_waiter_behind_a_busy_slot_times_out_after_exactly_the_timeout() -> None:
    clock = FakeClock()
    limiter = RateLimiter(max_concurrency=1, clock=clock)
    held = await limiter.acquire()
    with pytest.raises(QueueWaitTimeout) as info:
        await limiter.acquire(timeout=2.5)
    assert clock.now() == 2.5 and info.value.waited_s == 2.5
    assert limiter.queued == 0 and limiter.in_flight == 1
    held.release()
    with anyio.fail_after(1):
        (await limiter.acquire(timeout=0.5)).release()


async def test_a_timed_out_head_lets_the_next_waiter_in() -> None:
    clock = FakeClock()
    limiter = RateLimiter(max_concurrency=1, clock=clock)
    held = await limiter.acquire()
    got: list[float] = []

    async def patient() -> None:
        (await limiter.acquire()).release()
        got.append(clock.now())

    async with anyio.create_task_group() as tg:
        with pytest.raises(QueueWaitTimeout):
            await limiter.acquire(timeout=1.0)  # head, times out
        tg.start_soon(patient)
        await anyio.wait_all_tasks_blocked()
        held.release()
    assert got == [1.0]


async def test_close_fails_queued_and_later_acquires() -> None:
    clock = FakeClock(auto_advance=False)
    limiter = RateLimiter(rpm=1, clock=clock, name="m")
    held = await limiter.acquire()
    errors: list[BaseException] = []

    async def queued() -> None:
        try:
            await limiter.acquire()
        except LimiterClosed as exc:
            errors.append(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(queued)
        tg.start_soon(queued)
        await anyio.wait_all_tasks_blocked()
        assert limiter.queued == 2
        limiter.close()
    assert len(errors) == 2 and limiter.queued == 0 and limiter.closed
    with pytest.raises(LimiterClosed):
        await limiter.acquire()
    held.release()  # a held permit still releases
    assert limiter.in_flight == 0


async def test_a_caller_behind_the_queue_fails_at_once_when_the_window_alone_is_longer() -> None:
    clock = FakeClock(auto_advance=False)
    limiter = RateLimiter(rpm=1, clock=clock, name="m")
    (await limiter.acquire()).release()
    async with anyio.create_task_group() as tg:
        tg.start_soon(limiter.acquire)  # queued head, waits for t=60
        await anyio.wait_all_tasks_blocked()
        with pytest.raises(QueueWaitTimeout) as info:
            await limiter.acquire(timeout=3.0)
        assert info.value.waited_s == 0.0 and info.value.limiter == "m"
        assert limiter.queued == 1  # never joined the queue
        tg.cancel_scope.cancel()
    assert limiter.queued == 0


async def test_a_timed_out_waiter_takes_nothing() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rpm=10, tpm=1_000, max_concurrency=1, clock=clock)
    held = await limiter.acquire(100)
    with pytest.raises(QueueWaitTimeout):
        await limiter.acquire(500, timeout=1.0)
    snap = limiter.snapshot()
    assert (snap["in_flight"], snap["queued"], snap["requests_in_window"], snap["tokens_in_window"]) == (
        1,
        0,
        1,
        100,
    )
    held.release()
    permit = await limiter.acquire(900)  # the timed-out 500 left no trace: 100 + 900 fit
    assert clock.now() == 1.0
    permit.release()


async def test_timeout_validation() -> None:
    limiter = RateLimiter(max_concurrency=1, clock=FakeClock())
    with pytest.raises(ValueError, match="timeout"):
        await limiter.acquire(timeout=float("nan"))
    held = await limiter.acquire(timeout=float("inf"))  # no bound
    with pytest.raises(QueueWaitTimeout):
        await limiter.acquire(timeout=-1.0)  # past a deadline: only if free now
    held.release()
    (await limiter.acquire(timeout=-1.0)).release()  # free now: admitted


async def test_wait_time_is_a_read_only_estimate() -> None:
    clock = FakeClock(auto_advance=False)
    limiter = RateLimiter(rpm=2, max_concurrency=3, clock=clock)
    assert limiter.wait_time() == 0.0
    (await limiter.acquire()).release()
    clock.advance(10)
    (await limiter.acquire()).release()
    assert limiter.wait_time() == 50.0  # the t=0 admission expires at t=60
    assert limiter.snapshot()["requests_in_window"] == 2  # nothing taken
    async with anyio.create_task_group() as tg:
        tg.start_soon(limiter.acquire)  # queued for t=60
        await anyio.wait_all_tasks_blocked()
        # Behind it: the next slot frees when the t=10 admission expires.
        assert limiter.wait_time() == 60.0
        tg.cancel_scope.cancel()
    limiter.close()
    assert limiter.wait_time() == math.inf


async def test_wait_time_counts_the_queue_against_concurrency_and_tokens() -> None:
    clock = FakeClock(auto_advance=False)
    limiter = RateLimiter(tpm=1_000, max_concurrency=2, clock=clock)
    held = await limiter.acquire(600)
    assert limiter.wait_time(300) == 0.0
    assert limiter.wait_time(500) == 60.0
    async with anyio.create_task_group() as tg:
        tg.start_soon(limiter.acquire, 500)  # waits for the 600 to expire
        await anyio.wait_all_tasks_blocked()
        assert limiter.wait_time(0) > 0.0  # someone is queued: never "free now"
        assert limiter.wait_time(0) == math.inf  # 1 in flight + 1 queued fill both slots
        tg.cancel_scope.cancel()
    held.release()
    blocked = [await limiter.acquire(), await limiter.acquire()]
    assert limiter.wait_time() == math.inf
    for p in blocked:
        p.release()


# -- fast path, try_acquire, snapshot, validation ------------------------------


class CountingClock(FakeClock):
    def __init__(self) -> None:
        super().__init__()
        self.sleeps = 0

    async def sleep(self, seconds: float) -> None:
        self.sleeps += 1
        await super().sleep(seconds)


async def test_fast_path_never_sleeps_or_yields() -> None:
    clock = CountingClock()
    limiter = RateLimiter(rpm=1000, tpm=1_000_000, max_concurrency=10, clock=clock)
    # Inside an already-cancelled scope any checkpoint would raise: the fast path has none.
    with anyio.CancelScope() as scope:
        scope.cancel()
        for _ in range(100):
            (await limiter.acquire(100)).release(100)
    assert not scope.cancelled_caught
    assert clock.sleeps == 0


async def test_try_acquire() -> None:
    clock = FakeClock()
    limiter = RateLimiter(max_concurrency=1, clock=clock)
    permit = limiter.try_acquire(5)
    assert permit is not None
    assert limiter.try_acquire(5) is None
    permit.release()
    assert limiter.try_acquire(5) is not None


async def test_snapshot_contents() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rpm=10, tpm=1000, max_concurrency=4, clock=clock, name="openai/gpt-4o")
    a = await limiter.acquire(100)
    b = await limiter.acquire(200)
    b.release(150)
    snap = limiter.snapshot()
    assert snap == {
        "name": "openai/gpt-4o",
        "rpm": 10,
        "tpm": 1000,
        "max_concurrency": 4,
        "in_flight": 1,
        "queued": 0,
        "requests_in_window": 2,
        "tokens_in_window": 250,
        "estimate_scale": 1.0,
        "hold_remaining_s": 0.0,
        "provider_requests_remaining": None,
        "provider_tokens_remaining": None,
    }
    await clock.sleep(60)
    a.release(100)
    snap = limiter.snapshot()
    assert snap["requests_in_window"] == 0
    assert snap["tokens_in_window"] == 0
    assert "openai/gpt-4o" in repr(limiter)


async def test_unlimited_limiter_only_counts() -> None:
    limiter = RateLimiter(clock=FakeClock())
    permits = [await limiter.acquire(10**9) for _ in range(100)]
    assert limiter.in_flight == 100
    for p in permits:
        p.release()
    assert limiter.snapshot()["requests_in_window"] is None


@pytest.mark.parametrize(
    "kwargs", [{"rpm": 0}, {"rpm": -1}, {"tpm": 0}, {"max_concurrency": 0}, {"rpm": float("inf")}]
)
def test_invalid_limits_rejected(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        RateLimiter(**kwargs)  # type: ignore[arg-type]


async def test_negative_tokens_rejected() -> None:
    with pytest.raises(ValueError):
        await RateLimiter().acquire(-1)
