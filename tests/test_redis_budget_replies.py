"""Budget reservations (and concurrency slots) whose reply was lost leave nothing booked.

A reservation is one script; Redis may run it and the reply still never reach the
caller (slow Redis, a timeout, a cancelled request). Before, what it booked
counted against the budget until the process ended: for a long-lived server, for
good, and a few such blips could exhaust a budget nobody spent. Here a real
``redis-server`` sits behind ``SlowProxy`` (requests reach Redis at once, replies
come late), and an observer connected straight to Redis reads what every process
holds. Skipped without ``redis-server`` or the ``redis`` package.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable

import pytest

from _redis_helpers import REDIS_SERVER, RedisServer, SlowProxy

redis = pytest.importorskip("redis")
pytestmark = [
    pytest.mark.skipif(REDIS_SERVER is None, reason="redis-server is not installed"),
    pytest.mark.timeout(60),
]

from tierwise.state import StateUnavailable  # noqa: E402
from tierwise.state.redis import RedisState  # noqa: E402

KEY = "total|total"
DAY = "day:2026-12-07|total"
CHECKS = ((KEY, 10.0),)


@contextlib.asynccontextmanager
async def through(proxy: SlowProxy, prefix: str, timeout_s: float) -> AsyncIterator[RedisState]:
    """A ``RedisState`` that reaches Redis through the proxy, closed after the test."""
    state = RedisState(proxy.url, key_prefix=prefix, timeout_s=timeout_s, retry_s=0.05)
    try:
        yield state
    finally:
        await state.aclose()


async def held(redis_server: RedisServer, prefix: str) -> tuple[float, float]:
    """(spent, reserved by every live process) as Redis has them."""
    observer = RedisState(redis_server.url, key_prefix=prefix)
    try:
        return (await observer.budget_store().refresh([KEY]))[KEY]
    finally:
        await observer.aclose()


async def settle_down(state: RedisState, proxy: SlowProxy) -> None:
    """Replies on time again; let a late one land, then put one more batch through
    (what a resync rides on)."""
    proxy.delay = 0.0
    await asyncio.sleep(0.6)
    assert await state.flush()
    await state.budget_store().refresh([KEY])


async def lose_the_reply(proxy: SlowProxy, booking: Awaitable[object]) -> None:
    """``booking`` with every reply held back past the timeout: its link is dropped."""
    proxy.delay = 1.0
    with pytest.raises(StateUnavailable):
        await booking


async def cancel_in_flight(state: RedisState, proxy: SlowProxy, booking: Awaitable[object]) -> None:
    """Start ``booking``, cancel it while its reply is held back, then let things settle."""
    proxy.delay = 0.2
    task = asyncio.ensure_future(booking)
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await settle_down(state, proxy)


async def test_a_reply_that_comes_after_the_timeout_is_released(
    redis_server: RedisServer, proxy: SlowProxy
) -> None:
    async with through(proxy, "lost1:", 0.5) as state:
        store = state.budget_store()
        assert await store.reserve(CHECKS, (KEY,), 0.25) == []  # warm link, a live reservation
        proxy.delay = 0.3
        # A call in flight, then the reservation queued behind it: its 0.5 s run out
        # before its own reply (≈ 0.6 s), while the link's exchange still succeeds.
        first = asyncio.ensure_future(store.refresh([KEY]))
        await asyncio.sleep(0.02)
        with pytest.raises(StateUnavailable):
            await store.reserve(CHECKS, (KEY,), 1.0)
        await asyncio.gather(first, return_exceptions=True)
        await settle_down(state, proxy)
        # Redis ran the script (the request reached it) but the caller gave up: released.
        assert await held(redis_server, "lost1:") == (0.0, 0.25)


async def test_an_exchange_lost_whole_is_followed_by_a_sync_of_what_is_held(
    redis_server: RedisServer, proxy: SlowProxy
) -> None:
    async with through(proxy, "lost2:", 0.25) as state:
        store = state.budget_store()
        assert await store.reserve(CHECKS, (KEY,), 0.5) == []
        assert await store.reserve(CHECKS, (KEY,), 0.125) == []
        proxy.delay = 1.0  # every reply of the next exchange is lost with its link
        await store.release((KEY,), 0.125)  # a write: Redis applies it, the ack is lost
        await lose_the_reply(proxy, store.reserve(CHECKS, (KEY,), 2.0))  # booked in Redis
        # Redis now has the lost reservation booked, and the release is re-sent with the
        # next batch: applied twice, it would also free a reservation still in use.
        await settle_down(state, proxy)
        assert await held(redis_server, "lost2:") == (0.0, 0.5)  # exactly the one still held
        # A period bucket the sync writes keeps its expiry (a day bucket: three days).
        assert await store.reserve(((DAY, 10.0),), (DAY,), 0.25) == []
        await lose_the_reply(proxy, store.reserve(((DAY, 10.0),), (DAY,), 1.0))
        await settle_down(state, proxy)
        raw = redis.asyncio.Redis.from_url(redis_server.url)
        try:
            fields = await raw.hgetall(f"lost2:b:{DAY}")
            ttl = await raw.ttl(f"lost2:b:{DAY}")
        finally:
            await raw.aclose()
        assert {k: float(v) for k, v in fields.items() if k.startswith(b"r:")}.popitem()[1] == 0.25
        assert 2 * 86400 < ttl <= 3 * 86400
        await store.settle((KEY,), 0.5, (KEY,), 0.375)
        assert await state.flush()
        assert await held(redis_server, "lost2:") == (0.375, 0.0)


async def test_a_request_cancelled_while_its_reservation_is_in_flight_books_nothing(
    redis_server: RedisServer, proxy: SlowProxy
) -> None:
    async with through(proxy, "lost3:", 1.0) as state:
        store = state.budget_store()
        assert await store.reserve(CHECKS, (KEY,), 0.25) == []
        await cancel_in_flight(state, proxy, store.reserve(CHECKS, (KEY,), 1.0))
        assert await held(redis_server, "lost3:") == (0.0, 0.25)
        # The ledger the sync would state agrees with Redis: one reservation of 0.25.
        assert store._mine[KEY] == [0.25, 1.0]


async def test_an_admission_cancelled_in_flight_frees_its_concurrency_slot(
    redis_server: RedisServer, proxy: SlowProxy
) -> None:
    state = RedisState(proxy.url, key_prefix="lost4:", timeout_s=1.0, retry_s=0.05)
    observer = RedisState(redis_server.url, key_prefix="lost4:")
    limiter = state.limiter("m", max_concurrency=1)
    try:
        await (await limiter.acquire(1)).arelease(None)  # warm link
        await cancel_in_flight(state, proxy, limiter.acquire(1))
        snap = await observer.limiter("m", max_concurrency=1).asnapshot()
        assert snap["in_flight"] == 0  # the slot Redis booked for the cancelled admission is free
    finally:
        await state.aclose()
        await observer.aclose()
