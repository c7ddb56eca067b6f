"""The connection side of the Redis backend: scripts, round trips, write-behind, leases.

One ``_Conn`` per ``RedisState``. It loads the scripts once (``EVALSHA`` from then
on, reloading after a ``SCRIPT FLUSH`` or a restart), counts every round trip
(the benchmark reads ``round_trips``), and bounds every call by ``timeout_s``.

Writes whose answer nobody waits for (a permit's release, a settlement, a
circuit update) are queued and sent together in one pipeline on the next turn
of the event loop: concurrent requests finishing together share one round
trip. A write that fails stays queued (bounded) and goes with the next batch,
so a settlement made while Redis was away is not lost when it returns.

After a failure Redis is not asked again for ``retry_s``: a dead server must
not cost every request a timeout. The first success after that clears the
"degraded" flag (and logs it), which is the automatic recovery.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import socket
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from .._clock import Clock
from . import _redis_scripts as scripts

__all__ = ["Conn", "RedisDown"]

_log = logging.getLogger("tierwise.state")
_MAX_PENDING = 100_000


class RedisDown(Exception):
    """Redis did not answer in time (or at all): the caller applies its fail mode."""


class Conn:
    """A redis-py asyncio client with the scripts, the counters and the write queue."""

    def __init__(
        self,
        client: Any,
        *,
        prefix: str,
        clock: Clock,
        timeout_s: float,
        retry_s: float,
        lease_s: float,
        refresh_s: float = 0.5,
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.clock = clock
        self.timeout_s = timeout_s
        self.retry_s = retry_s
        self.lease_s = lease_s
        self.refresh_s = refresh_s
        #: Run every ``refresh_s`` (the shared views: circuits, budget spend).
        self.tickers: list[Callable[[], Awaitable[object]]] = []
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.owners_key = prefix + "owners"
        self.round_trips = 0
        self.errors = 0
        self.degraded: set[str] = set()
        self._down_until = -math.inf
        self._sources = {
            name: getattr(scripts, name)
            for name in scripts.__all__
            if isinstance(getattr(scripts, name), str)
        }
        self._sha: dict[str, str] = {}
        self._pending: deque[tuple[str, Sequence[Any], Sequence[Any]]] = deque()
        self._flusher: asyncio.Task[None] | None = None
        self._heart: asyncio.Task[None] | None = None
        self._closed = False

    # -- health of the link --------------------------------------------------------

    def down(self) -> bool:
        """Whether Redis failed within ``retry_s`` (callers skip it meanwhile)."""
        return self.clock.now() < self._down_until

    def _failed(self, concern: str, exc: BaseException) -> RedisDown:
        self.errors += 1
        self._down_until = self.clock.now() + self.retry_s
        if concern not in self.degraded:
            self.degraded.add(concern)
            _log.warning(
                "redis unavailable for %s (%s: %s); applying its on_error mode",
                concern,
                type(exc).__name__,
                exc,
            )
        return RedisDown(f"redis unavailable for {concern}: {type(exc).__name__}")

    def _ok(self) -> None:
        if self.degraded:
            _log.warning(
                "redis reachable again; shared state resumed for %s", ", ".join(sorted(self.degraded))
            )
            self.degraded.clear()
        self._down_until = -math.inf

    # -- calls -----------------------------------------------------------------------

    async def _load(self) -> None:
        pipe = self.client.pipeline(transaction=False)
        names = list(self._sources)
        for name in names:
            pipe.script_load(self._sources[name])
        self.round_trips += 1
        shas = await pipe.execute()
        self._sha = dict(zip(names, shas, strict=True))

    async def call(self, concern: str, script: str, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        """Run one script, with any queued writes ahead of it in the same round trip.
        ``RedisDown`` when Redis is marked down or does not answer within ``timeout_s``."""
        if self.down():
            raise RedisDown(f"redis unavailable for {concern}")
        self._ensure_tasks()
        try:
            async with asyncio.timeout(self.timeout_s):
                result = await self._run(script, keys, args)
        except RedisDown:
            raise
        except (TimeoutError, OSError, _redis_errors()) as exc:
            raise self._failed(concern, exc) from None
        self._ok()
        return result

    def _take(self) -> list[tuple[str, Sequence[Any], Sequence[Any]]]:
        batch = list(self._pending)
        self._pending.clear()
        return batch

    def _put_back(self, batch: list[tuple[str, Sequence[Any], Sequence[Any]]]) -> None:
        self._pending.extendleft(reversed(batch))

    async def _run(self, script: str, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        from redis.exceptions import NoScriptError

        if not self._sha:
            await self._load()
        for attempt in (0, 1):
            if not self._pending:
                try:
                    self.round_trips += 1
                    return await self.client.evalsha(self._sha[script], len(keys), *keys, *args)
                except NoScriptError:
                    if attempt:
                        raise
                    await self._load()
                    continue
            # Queued writes go first, in the same round trip (and in order).
            batch = self._take()
            try:
                pipe = self.client.pipeline(transaction=False)
                for name, k, a in batch:
                    pipe.evalsha(self._sha[name], len(k), *k, *a)
                pipe.evalsha(self._sha[script], len(keys), *keys, *args)
                self.round_trips += 1
                out = await pipe.execute(raise_on_error=False)
            except BaseException:
                self._put_back(batch)
                raise
            if any(isinstance(item, NoScriptError) for item in out):
                self._put_back(batch)
                if attempt:
                    raise NoScriptError("scripts could not be loaded")
                await self._load()
                continue
            last = out[-1]
            if isinstance(last, Exception):
                raise last
            return last
        raise AssertionError("unreachable")  # pragma: no cover

    def write(self, script: str, keys: Sequence[Any], args: Sequence[Any]) -> None:
        """Queue a write whose answer nobody waits for; sent on the next loop turn."""
        if len(self._pending) >= _MAX_PENDING:
            self._pending.popleft()  # oldest first: bounded memory while Redis is away
        self._pending.append((script, keys, args))
        self._ensure_tasks()
        self._wake.set()

    async def flush(self) -> None:
        """Send the queued writes now (``RedisDown`` if they could not be)."""
        if not self._pending:
            return
        if self.down():
            raise RedisDown("redis unavailable")
        try:
            async with asyncio.timeout(self.timeout_s):
                await self._send_pending()
        except (TimeoutError, OSError, _redis_errors()) as exc:
            raise self._failed("writes", exc) from None
        self._ok()

    async def _send_pending(self) -> None:
        from redis.exceptions import NoScriptError

        if not self._sha:
            await self._load()
        batch = self._take()
        if not batch:
            return
        try:
            pipe = self.client.pipeline(transaction=False)
            for name, k, a in batch:
                pipe.evalsha(self._sha[name], len(k), *k, *a)
            self.round_trips += 1
            out = await pipe.execute(raise_on_error=False)
        except BaseException:
            self._put_back(batch)
            raise
        if any(isinstance(item, NoScriptError) for item in out):
            self._put_back(batch)  # resent with the reloaded scripts
            await self._load()

    # -- background work ---------------------------------------------------------------

    def _ensure_tasks(self) -> None:
        if self._flusher is None and not self._closed:
            self._wake = asyncio.Event()
            self._flusher = asyncio.get_running_loop().create_task(self._flush_loop())
            self._heart = asyncio.get_running_loop().create_task(self._heartbeat())

    async def _flush_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await asyncio.sleep(0)  # one loop turn: requests finishing together share a trip
            while self._pending:
                try:
                    await self.flush()
                except RedisDown:
                    await asyncio.sleep(self.retry_s)

    async def _heartbeat(self) -> None:
        """Keep this process's lease alive (every ``lease_s / 3``) and the shared
        views current (every ``refresh_s``)."""
        loop = asyncio.get_running_loop()
        next_lease = loop.time()
        while True:
            if loop.time() >= next_lease and not self.down():
                next_lease = loop.time() + self.lease_s / 3.0
                try:
                    async with asyncio.timeout(self.timeout_s):
                        self.round_trips += 1
                        await self.client.zadd(
                            self.owners_key, {self.owner: self.clock.wall() + self.lease_s}
                        )
                except (TimeoutError, OSError, _redis_errors()) as exc:
                    self._failed("leases", exc)
            for tick in self.tickers:
                try:
                    await tick()
                except RedisDown:
                    pass
            await asyncio.sleep(min(self.refresh_s, self.lease_s / 3.0))

    async def aclose(self) -> None:
        """Flush what is queued (best effort), stop the tasks, drop this process's lease."""
        if self._closed:
            return
        self._closed = True
        for task in (self._flusher, self._heart):
            if task is not None:
                task.cancel()
                try:
                    await task
                except (asyncio.CancelledError, Exception):
                    pass
        try:
            await self.flush()
        except RedisDown:
            pass
        try:
            async with asyncio.timeout(self.timeout_s):
                await self.client.zrem(self.owners_key, self.owner)
        except (TimeoutError, OSError, _redis_errors()):
            pass
        await self.client.aclose()


def _redis_errors() -> type[Exception]:
    from redis.exceptions import RedisError

    return RedisError
