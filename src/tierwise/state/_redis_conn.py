"""The connection side of the Redis backend: one pipelined link, scripts, leases.

One ``Conn`` per ``RedisState``. Every script call and every write goes through a
single sender task that owns one Redis connection and sends whatever is queued
as one pipeline (one round trip), then the next batch. Why one link rather than
a pool: with 200 requests in flight a pool opens 200 connections (redis-py caps
its pool at 100 and then *fails* the call), each paying its own round trip and
syscalls; one pipelined link sends the 200 scripts in one or two round trips and
costs the client a fraction of the CPU. Redis runs them in order, each script
still atomic, so nothing about the semantics changes.

Writes whose answer nobody waits for (a permit's release, a settlement, a circuit
update) are queued and go with the next script call, or after ``flush_delay_s``
if none comes: a request's settlement rides on the next request's first script.
``submit`` queues a script without waiting, so the executor sends the rate
limiter's first attempt and the budget reservation together: a routed request
costs one round trip, not four (limit, budget, release, settlement).
A write that fails stays queued (bounded) and goes with the next batch, so a
settlement made while Redis was away is not lost when it returns.

No call waits longer than ``timeout_s`` (queueing included). After a failure
Redis is not asked again for ``retry_s``: a dead server must not cost every
request a timeout. The first success after that clears the ``degraded`` set (and
logs it), which is the automatic recovery. Round trips and commands are
counted (``round_trips``, ``commands``) for the benchmark.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import socket
import uuid
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from .._clock import Clock
from . import _redis_scripts as scripts

__all__ = ["Conn", "Packed", "RedisDown"]

_log = logging.getLogger("tierwise.state")
_MAX_PENDING = 100_000
# Resync writes are rebuilt (with the values of the moment) rather than re-sent.
_RESYNC_SCRIPTS = frozenset(("BUDGET_SYNC",))


class RedisDown(Exception):
    """Redis did not answer in time (or at all): the caller applies its fail mode."""


class _Expired(TimeoutError):
    """A call's reply did not come within ``timeout_s`` (set on its future by a timer)."""


def _kind(exc: BaseException) -> str:
    """What failed, for logs and errors: a call's own expiry reads as the timeout it is."""
    return "TimeoutError" if isinstance(exc, TimeoutError) else type(exc).__name__


def _expire(fut: asyncio.Future[Any]) -> None:
    if not fut.done():
        fut.set_exception(_Expired())


OnReply = Callable[[Any, bool], None]
"""Told a call's reply the moment the sender reads it, and whether the caller's
future took it (``False``: the caller had stopped waiting, expired or cancelled)."""


class _Op:
    """One queued command: a script by name (``script``) or a raw command
    (``script`` is ``None``, the command in ``args``); ``fut`` is ``None`` for a write."""

    __slots__ = ("args", "fut", "keys", "on_reply", "script")

    def __init__(
        self,
        script: str | None,
        keys: Sequence[Any],
        args: Sequence[Any],
        fut: asyncio.Future[Any] | None,
        on_reply: OnReply | None = None,
    ) -> None:
        self.script = script
        # A tuple: the packed script heads are looked up by (script, keys, nargs).
        self.keys: tuple[Any, ...] = keys if type(keys) is tuple else tuple(keys)
        self.args = args
        self.fut = fut
        self.on_reply = on_reply


class Conn:
    """A redis-py asyncio connection with the scripts, the counters and the queue."""

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
        flush_delay_s: float = 0.002,
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.clock = clock
        self.timeout_s = timeout_s
        self.retry_s = retry_s
        self.lease_s = lease_s
        self.refresh_s = refresh_s
        self.flush_delay_s = flush_delay_s
        #: Run every ``refresh_s`` (the shared views: circuits, budget spend).
        self.tickers: list[Callable[[], Awaitable[object]]] = []
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.owners_key = prefix + "owners"
        self.round_trips = 0
        self.commands = 0
        self.errors = 0
        #: Requests served by a concern's ``on_error`` fallback, per concern.
        self.fallbacks: Counter[str] = Counter()
        #: Requests refused (``StateUnavailable``) by a fail-closed concern, per concern.
        self.refused: Counter[str] = Counter()
        self._outage = False
        self.degraded: set[str] = set()
        self._down_until = -math.inf
        self._sources = {
            name: getattr(scripts, name)
            for name in scripts.__all__
            if isinstance(getattr(scripts, name), str)
        }
        self._sha: dict[str, str] = {}
        self._heads: dict[tuple[str, tuple[Any, ...], int], bytes] = {}
        self._calls: deque[_Op] = deque()
        self._writes: deque[_Op] = deque()
        self._writes_due = False
        # Builders of absolute "this is what I hold" writes, sent after any exchange
        # whose replies were lost (``add_resync``).
        self._resyncs: list[Callable[[], list[tuple[str, Sequence[Any], Sequence[Any]]]]] = []
        self._resync_due = False
        self._kick: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._link: Any = None
        self._sender: asyncio.Task[None] | None = None
        self._heart: asyncio.Task[None] | None = None
        self._closed = False

    def closing(self) -> bool:
        """Whether ``aclose`` has begun (the sender stops at its next turn). A
        method, not an attribute read, because it changes across the sender's awaits."""
        return self._closed

    # -- health of the link --------------------------------------------------------

    def down(self) -> bool:
        """Whether Redis failed within ``retry_s`` (callers skip it meanwhile)."""
        return self.clock.now() < self._down_until

    def _mark_down(self, exc: BaseException) -> None:
        self.errors += 1
        self._down_until = self.clock.now() + self.retry_s
        if not self._outage:
            self._outage = True
            _log.warning("redis unavailable (%s); each concern applies its on_error mode", _kind(exc))

    def _failed(self, concern: str, exc: BaseException) -> RedisDown:
        self._mark_down(exc)
        return RedisDown(f"redis unavailable for {concern}: {_kind(exc)}")

    def fell_back(self, concern: str, *, fail_open: bool) -> None:
        """A request met an outage in ``concern``: served by this process's own
        state (``fail_open``: counted in ``fallbacks``, flagged in ``degraded``,
        logged once per outage) or refused (counted in ``refused``)."""
        if not fail_open:
            self.refused[concern] += 1
            return
        self.fallbacks[concern] += 1
        if concern not in self.degraded:
            self.degraded.add(concern)
            _log.warning("redis unavailable: %s falls back to this process's own state", concern)

    def _ok(self) -> None:
        if self._outage or self.degraded:
            _log.warning(
                "redis reachable again; shared state resumed%s",
                f" for {', '.join(sorted(self.degraded))}" if self.degraded else "",
            )
            self.degraded.clear()
            self._outage = False
        self._down_until = -math.inf

    # -- the public face -------------------------------------------------------------

    async def call(self, concern: str, script: str, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        """Run one script (queued writes go ahead of it, in the same round trip).
        ``RedisDown`` when Redis is marked down or does not answer within ``timeout_s``."""
        fut = self.submit(script, keys, args)
        if fut is None:
            raise RedisDown(f"redis unavailable for {concern}")
        return await self.result(concern, fut)

    def submit(
        self,
        script: str,
        keys: Sequence[Any],
        args: Sequence[Any],
        on_reply: OnReply | None = None,
    ) -> asyncio.Future[Any] | None:
        """Queue a script now and return its reply's future (``None`` when Redis is
        marked down or the link is closed): two concerns that submit in the same
        loop turn share one round trip (``result`` awaits each).

        ``on_reply`` is called synchronously by the sender with the reply, also
        when it comes after the caller stopped waiting: a script that *books*
        something uses it to give back what nobody will use (a reply that comes
        late is otherwise read and dropped, and what it booked stays booked)."""
        if self.down() or self._closed:
            return None
        self._ensure_tasks()
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._calls.append(_Op(script, keys, args, fut, on_reply))
        self._poke(now=True)
        return fut

    async def result(self, concern: str, fut: asyncio.Future[Any] | None) -> Any:
        """The reply of a ``submit``ted script, waiting at most ``timeout_s``
        (``RedisDown`` otherwise; a script error is raised as itself)."""
        if fut is None:
            raise RedisDown(f"redis unavailable for {concern}")
        if fut.done():
            result = fut.result()
        else:
            # A timer that fails the future, not ``asyncio.timeout``: a tenth of the
            # cost per call, and the caller's own cancellation stays a cancellation.
            timer = asyncio.get_running_loop().call_later(self.timeout_s, _expire, fut)
            try:
                result = await fut
            except _Expired as exc:
                raise self._failed(concern, exc) from None
            finally:
                timer.cancel()
        if isinstance(result, Exception):
            # A script error (a bug, not an outage): surfaced as such.
            raise result
        return result

    def write(self, script: str, keys: Sequence[Any], args: Sequence[Any]) -> None:
        """Queue a write whose answer nobody waits for (see the module docstring)."""
        self._queue_write(_Op(script, keys, args, None))

    def add_resync(self, build: Callable[[], list[tuple[str, Sequence[Any], Sequence[Any]]]]) -> None:
        """Register ``build``: after an exchange fails with its replies unread (so
        whether its scripts ran is unknown, and its writes are sent again), the
        next batch carries the ``(script, keys, args)`` writes ``build`` returns
        *then*, after the re-sent writes and before any new call. They state
        absolutely what this process holds (not a delta), which puts Redis back
        in step whatever the lost batch did."""
        self._resyncs.append(build)

    def _queue_write(self, op: _Op) -> None:
        if len(self._writes) >= _MAX_PENDING:
            self._writes.popleft()  # oldest first: bounded memory while Redis is away
        self._writes.append(op)
        if self._closed:
            return
        self._ensure_tasks()
        self._poke(now=False)

    async def flush(self) -> None:
        """Send the queued writes now (``RedisDown`` if they could not be). Through
        the sender, like everything else: only one coroutine ever uses the link."""
        if not self._writes:
            return
        if self.down() or self._closed:
            raise RedisDown("redis unavailable")
        self._ensure_tasks()
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._calls.append(_Op(None, (), ("PING",), fut))
        self._poke(now=True)
        await self.result("writes", fut)

    async def _flush_last(self) -> None:
        """``aclose``'s flush, once the sender has stopped (so the link is free)."""
        if not self._writes or self.down():
            return
        batch = list(self._writes)
        self._writes.clear()
        try:
            async with asyncio.timeout(self.timeout_s):
                await self._exchange(batch)
        except (TimeoutError, OSError, _redis_errors()):
            await self._drop_link()

    # -- the sender ---------------------------------------------------------------------

    def _poke(self, *, now: bool) -> None:
        kick = self._kick
        if now:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            if kick is not None and not kick.done():
                kick.set_result(None)
        elif self._timer is None and kick is not None and not kick.done():
            self._timer = asyncio.get_running_loop().call_later(self.flush_delay_s, self._due)

    def _due(self) -> None:
        self._timer = None
        self._writes_due = True
        kick = self._kick
        if kick is not None and not kick.done():
            kick.set_result(None)

    def _ensure_tasks(self) -> None:
        if self._sender is None and not self._closed:
            loop = asyncio.get_running_loop()
            self._sender = loop.create_task(self._send_loop())
            self._heart = loop.create_task(self._heartbeat())

    async def _send_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while not self.closing():
            while not self._calls and not (self._writes and self._writes_due) and not self.closing():
                self._kick = loop.create_future()
                if self._writes and self._timer is None:
                    self._timer = loop.call_later(self.flush_delay_s, self._due)
                await self._kick
            self._kick = None
            if self.closing():
                return
            # One loop turn: calls made by tasks that are ready now join this batch.
            await asyncio.sleep(0)
            if self.down():
                # Calls fail fast meanwhile; queued ones are failed, writes wait.
                self._fail_calls(RedisDown("redis unavailable"))
                await self.clock.sleep(max(0.0, self._down_until - self.clock.now()))
                continue
            calls = [op for op in self._calls if op.fut is not None and not op.fut.done()]
            self._calls.clear()
            writes = list(self._writes)
            self._writes.clear()
            self._writes_due = False
            resync = self._resync_due and bool(writes or calls)
            if resync:
                writes += [_Op(s, k, a, None) for build in self._resyncs for s, k, a in build()]
            batch = writes + calls
            if not batch:
                continue
            try:
                async with asyncio.timeout(self.timeout_s):
                    replies = await self._exchange(batch)
            except Exception as exc:  # the sender must outlive anything a batch raises
                _reraise_cancel(exc)
                if not isinstance(exc, TimeoutError | OSError | _redis_errors()):
                    _log.error("redis exchange failed unexpectedly: %r", exc)
                self._requeue([op for op in writes if op.script not in _RESYNC_SCRIPTS])
                self._resync_due = bool(self._resyncs)
                await self._drop_link()
                self._mark_down(exc)
                down = RedisDown(f"redis unavailable: {type(exc).__name__}")
                for op in calls:
                    if op.fut is not None and not op.fut.done():
                        op.fut.set_exception(down)
                continue
            self._ok()
            if resync:
                self._resync_due = False
            for op, reply in zip(batch, replies, strict=True):
                delivered = False
                if op.fut is not None and not op.fut.done():
                    op.fut.set_result(reply)
                    delivered = True
                if op.on_reply is not None:
                    op.on_reply(reply, delivered)

    def _fail_calls(self, exc: RedisDown) -> None:
        for op in self._calls:
            if op.fut is not None and not op.fut.done():
                op.fut.set_exception(exc)
        self._calls.clear()

    def _requeue(self, writes: list[_Op]) -> None:
        self._writes.extendleft(reversed(writes))
        while len(self._writes) > _MAX_PENDING:
            self._writes.popleft()

    async def _drop_link(self) -> None:
        """A failed or timed-out exchange may leave replies unread: start afresh."""
        link, self._link = self._link, None
        if link is not None:
            # Closing a socket that already failed may fail again: nothing to do then.
            with contextlib.suppress(Exception):
                await link.disconnect(nowait=True)
            with contextlib.suppress(Exception):
                await self.client.connection_pool.release(link)

    async def _exchange(self, batch: list[_Op]) -> list[Any]:
        """Send ``batch`` as one pipeline and read every reply (a script error is
        returned in its place); scripts Redis lost (restart, SCRIPT FLUSH) are
        loaded and those commands sent again."""
        from redis.exceptions import NoScriptError, ResponseError

        if self._link is None:
            self._link = await self.client.connection_pool.get_connection()
        link = self._link
        if not self._sha:
            await self._load(link)
        replies: list[Any] = [None] * len(batch)
        todo = list(range(len(batch)))
        for attempt in (0, 1):
            parts: list[bytes] = []
            for i in todo:
                op = batch[i]
                if op.script is None:
                    _pack(parts, op.args)
                else:
                    args = op.args
                    nargs = len(args)
                    if nargs and type(args[-1]) is Packed:
                        nargs += args[-1].n_args - 1
                    head = self._heads.get((op.script, op.keys, nargs))
                    if head is None:
                        head = self._head(op.script, op.keys, nargs)
                    parts.append(head)
                    _pack_args(parts, args)
            self.round_trips += 1
            self.commands += len(todo)
            await link.send_packed_command([b"".join(parts)], check_health=False)
            lost = []
            for i in todo:
                try:
                    replies[i] = await link.read_response()
                except NoScriptError as exc:
                    replies[i] = exc
                    lost.append(i)
                except ResponseError as exc:
                    replies[i] = exc
            if not lost:
                break
            if attempt:
                break  # still missing after a reload: returned as the errors they are
            await self._load(link)
            todo = lost
        return replies

    def _head(self, script: str, keys: tuple[Any, ...], nargs: int) -> bytes:
        """The RESP bytes of ``EVALSHA sha numkeys keys...`` (and the array
        length), which are the same for every call of one script on one
        deployment: packed once, not per call. Bounded (keys may carry a period
        or a conversation): cleared when full."""
        if len(self._heads) >= 4096:
            self._heads.clear()
        parts = [b"*%d\r\n" % (3 + len(keys) + nargs)]
        _pack_args(parts, ("EVALSHA", self._sha[script], len(keys), *keys))
        head = b"".join(parts)
        self._heads[(script, keys, nargs)] = head
        return head

    async def _load(self, link: Any) -> None:
        names = list(self._sources)
        self.round_trips += 1
        self.commands += len(names)
        await link.send_packed_command(
            link.pack_commands([("SCRIPT", "LOAD", self._sources[n]) for n in names]), check_health=False
        )
        shas = [await link.read_response() for _ in names]
        self._sha = {
            n: s.decode() if isinstance(s, bytes) else str(s) for n, s in zip(names, shas, strict=True)
        }

    # -- background work ---------------------------------------------------------------

    async def _heartbeat(self) -> None:
        """Keep this process's lease alive (every ``lease_s / 3``) and the shared
        views current (every ``refresh_s``)."""
        loop = asyncio.get_running_loop()
        next_lease = loop.time()
        while True:
            if loop.time() >= next_lease and not self.down():
                next_lease = loop.time() + self.lease_s / 3.0
                self._queue_write(
                    _Op(
                        None,
                        (),
                        ("ZADD", self.owners_key, self.clock.wall() + self.lease_s, self.owner),
                        None,
                    )
                )
            if self.tickers and not self.down():
                results = await asyncio.gather(*(tick() for tick in self.tickers), return_exceptions=True)
                for res in results:
                    if isinstance(res, Exception) and not isinstance(res, RedisDown):
                        _log.warning("shared state refresh failed: %s", type(res).__name__)
            await asyncio.sleep(min(self.refresh_s, self.lease_s / 3.0))

    async def _stop(self, task: asyncio.Task[None]) -> None:
        """Cancel ``task`` and wait for it, a bounded time: a library under it
        that swallows the cancel (seen with redis-py on Python 3.11, where a
        cancel that meets a timeout can come out as the timeout) must not hang
        the close; the task is then left to end on its own."""
        if task.done():
            return
        task.cancel()
        await asyncio.wait({task}, timeout=self.timeout_s + 0.5)
        if not task.done():
            _log.warning("redis link task did not stop within %.2f s of its cancel", self.timeout_s + 0.5)
            task.cancel()
        elif not task.cancelled() and task.exception() is not None:
            _log.debug("redis link task ended with %r", task.exception())

    async def aclose(self) -> None:
        """Flush what is queued (best effort), stop the tasks, drop this process's lease."""
        if self._closed:
            return
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
        kick = self._kick
        if kick is not None and not kick.done():
            kick.set_result(None)  # an idle sender sees ``_closed`` and returns
        for task in (self._sender, self._heart):
            if task is not None:
                await self._stop(task)
        self._fail_calls(RedisDown("closed"))
        self._writes.append(_Op(None, (), ("ZREM", self.owners_key, self.owner), None))
        await self._flush_last()
        await self._drop_link()
        await self.client.aclose()


def _pack(out: list[bytes], args: Sequence[Any]) -> None:
    """Append one command in the Redis protocol (RESP) to ``out``. Written here
    rather than redis-py's ``pack_commands`` because it runs for every script of
    every request: this is a third of its client CPU (no encoder lookups, no
    buffer-size heuristics; our arguments are only str, bytes, int and float)."""
    out.append(b"*%d\r\n" % len(args))
    _pack_args(out, args)


def _pack_args(out: list[bytes], args: Sequence[Any]) -> None:
    """The bulk strings of ``args`` (the array header is the caller's); a
    ``Packed`` argument (only ever the last) is appended as it is."""
    for arg in args:
        t = type(arg)
        if t is str:
            data = arg.encode()
        elif t is float:
            data = repr(arg).encode()
        elif t is int:
            data = b"%d" % arg
        elif t is Packed:
            out.append(arg)
            continue
        elif isinstance(arg, bytes):
            data = arg
        elif isinstance(arg, str):
            data = arg.encode()
        elif isinstance(arg, float):
            data = repr(float(arg)).encode()
        else:
            data = b"%d" % int(arg)
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))


class Packed(bytes):
    """Script arguments already in the protocol's form, for the ones that are the
    same on every call of one deployment (its limits, a budget plan's limits and
    expiries): packed once instead of per call. Only ever an ``_Op``'s last
    argument; ``n_args`` is how many arguments it stands for."""

    n_args: int

    def __new__(cls, args: Sequence[Any]) -> Packed:
        parts: list[bytes] = []
        _pack_args(parts, args)
        self = super().__new__(cls, b"".join(parts))
        self.n_args = len(args)
        return self


def _reraise_cancel(exc: BaseException) -> None:
    """Raise ``CancelledError`` if this task has a cancel pending. A cancel that
    meets an expiring ``asyncio.timeout`` (and a library under it that handles
    the first ``CancelledError`` itself) can come out as the ``TimeoutError``:
    treating that as "Redis is slow" would swallow the cancel, and a task that
    its owner cancelled and awaits would run on (the close of a worker hung
    this way under load)."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError from exc


def _redis_errors() -> type[Exception]:
    from redis.exceptions import RedisError

    return RedisError
