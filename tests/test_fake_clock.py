"""FakeClock: virtual time, manual and auto-advance, many sleepers, cancellation."""

from __future__ import annotations

import random

import anyio
import pytest

from tierwise._clock import Clock
from tierwise.testing.clock import FakeClock


async def test_implements_clock_protocol_and_wall_moves_with_now() -> None:
    clock = FakeClock(start=100.0, wall_start=1_000.0)
    assert isinstance(clock, Clock)
    assert clock.now() == 100.0
    assert clock.wall() == 1_000.0
    clock.advance(2.5)
    assert clock.now() == 102.5
    assert clock.wall() == 1_002.5


async def test_default_wall_start_is_2026_new_year() -> None:
    assert FakeClock().wall() == 1_767_225_600.0


async def test_advance_rejects_going_backwards() -> None:
    clock = FakeClock()
    with pytest.raises(ValueError):
        clock.advance(-1)


async def test_auto_advance_sleep_takes_no_real_time() -> None:
    clock = FakeClock()
    with anyio.fail_after(5):  # real seconds: an hour of virtual sleep must be instant
        await clock.sleep(3600)
    assert clock.now() == 3600


async def test_zero_and_negative_sleep_do_not_move_time() -> None:
    clock = FakeClock()
    await clock.sleep(0)
    await clock.sleep(-5)
    assert clock.now() == 0.0
    assert clock.sleepers == 0


async def test_many_sleepers_wake_in_deadline_order_at_their_deadline() -> None:
    clock = FakeClock()
    rng = random.Random(7)
    delays = [d / 8 for d in rng.sample(range(1, 80_000), 500)]
    woke: list[tuple[float, float]] = []

    async def sleeper(d: float) -> None:
        await clock.sleep(d)
        woke.append((d, clock.now()))

    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            for d in delays:
                tg.start_soon(sleeper, d)
    assert [d for d, _ in woke] == sorted(delays)
    assert all(now == d for d, now in woke)
    assert clock.now() == max(delays)
    assert clock.sleepers == 0


async def test_ties_wake_in_registration_order() -> None:
    clock = FakeClock()
    woke: list[int] = []

    async def sleeper(i: int) -> None:
        await clock.sleep(5.0)
        woke.append(i)

    async with anyio.create_task_group() as tg:
        for i in range(20):
            tg.start_soon(sleeper, i)
    assert woke == list(range(20))
    assert clock.now() == 5.0


async def test_woken_task_reacting_with_shorter_sleep_runs_before_later_deadlines() -> None:
    # Time must only jump once everything runnable has run: a task woken at t=1 that
    # sleeps 1 more second must wake at t=2, before a sleeper due at t=3.
    clock = FakeClock()
    log: list[tuple[str, float]] = []

    async def chain() -> None:
        await clock.sleep(1)
        log.append(("a", clock.now()))
        await clock.sleep(1)
        log.append(("b", clock.now()))

    async def late() -> None:
        await clock.sleep(3)
        log.append(("late", clock.now()))

    async with anyio.create_task_group() as tg:
        tg.start_soon(late)
        tg.start_soon(chain)
    assert log == [("a", 1.0), ("b", 2.0), ("late", 3.0)]


async def test_time_does_not_jump_while_other_tasks_are_runnable() -> None:
    clock = FakeClock()
    seen: list[float] = []

    async def busy() -> None:
        for _ in range(20):
            seen.append(clock.now())
            await anyio.lowlevel.checkpoint()

    async with anyio.create_task_group() as tg:
        tg.start_soon(clock.sleep, 10)
        tg.start_soon(busy)
    assert seen == [0.0] * 20
    assert clock.now() == 10


async def test_sleep_waits_for_event_driven_tasks() -> None:
    # A task blocked on an Event is not runnable; the one that sets it is.
    clock = FakeClock()
    done = anyio.Event()
    order: list[str] = []

    async def setter() -> None:
        await clock.sleep(2)
        order.append("set")
        done.set()

    async def waiter() -> None:
        await done.wait()
        order.append(f"waiter@{clock.now()}")

    async with anyio.create_task_group() as tg:
        tg.start_soon(waiter)
        tg.start_soon(setter)
        tg.start_soon(clock.sleep, 5)
    assert order == ["set", "waiter@2.0"]


async def test_cancelled_sleeper_is_forgotten_and_others_still_advance() -> None:
    clock = FakeClock()
    woke: list[float] = []
    scope = anyio.CancelScope()

    async def victim() -> None:
        with scope:
            await clock.sleep(100)
            woke.append(clock.now())

    async def sleeper(d: float) -> None:
        await clock.sleep(d)
        woke.append(clock.now())

    async def canceller() -> None:
        await clock.sleep(2)
        scope.cancel()

    async with anyio.create_task_group() as tg:
        # The victim sleeps first, so it is the task driving the clock; cancelling
        # it must hand the driving to the others.
        tg.start_soon(victim)
        await anyio.lowlevel.checkpoint()
        tg.start_soon(sleeper, 4)
        tg.start_soon(sleeper, 7)
        tg.start_soon(canceller)
    assert woke == [4.0, 7.0]
    assert clock.now() == 7.0  # the cancelled 100 s deadline was never reached
    assert clock.sleepers == 0
    assert clock.next_deadline is None


async def test_manual_mode_sleeps_until_advanced() -> None:
    clock = FakeClock(auto_advance=False)
    woke: list[tuple[str, float]] = []

    async def sleeper(name: str, d: float) -> None:
        await clock.sleep(d)
        woke.append((name, clock.now()))

    async with anyio.create_task_group() as tg:
        tg.start_soon(sleeper, "b", 5)
        tg.start_soon(sleeper, "a", 2)
        tg.start_soon(sleeper, "c", 9)
        for _ in range(10):
            await anyio.lowlevel.checkpoint()
        assert woke == []
        assert clock.sleepers == 3
        assert clock.next_deadline == 2.0
        clock.advance(6)
        for _ in range(10):
            await anyio.lowlevel.checkpoint()
        # woken in deadline order; both see the time advance() reached
        assert woke == [("a", 6.0), ("b", 6.0)]
        clock.advance(3)
    assert woke[-1] == ("c", 9.0)


async def test_manual_advance_in_auto_mode_wakes_sleepers() -> None:
    clock = FakeClock()
    woke: list[float] = []

    async def sleeper() -> None:
        await clock.sleep(10)
        woke.append(clock.now())

    async with anyio.create_task_group() as tg:
        tg.start_soon(sleeper)
        await anyio.lowlevel.checkpoint()
        clock.advance(20)
    assert woke == [20.0]


async def test_sleep_forever_does_not_stop_finite_sleepers() -> None:
    clock = FakeClock()
    woke: list[float] = []

    async def forever() -> None:
        await clock.sleep(float("inf"))

    async def finite() -> None:
        await clock.sleep(5)
        woke.append(clock.now())

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(forever)
            await anyio.lowlevel.checkpoint()
            tg.start_soon(finite)
            await finite()
            tg.cancel_scope.cancel()
    assert woke == [5.0, 5.0]


async def test_nan_sleep_rejected() -> None:
    with pytest.raises(ValueError):
        await FakeClock().sleep(float("nan"))
