"""``FakeClock``: virtual time for tests of rate limits, backoff and cooldowns.

Everything time-dependent in tierwise reads a ``Clock`` (``tierwise._clock``), so
tests swap in this one and run minutes of limiter or breaker behaviour in
milliseconds, deterministically, without ever sleeping for real.

Two ways to move time:

* ``advance(seconds)`` — synchronous and explicit. Sleepers whose deadline has
  passed are woken in deadline order (ties in the order they went to sleep); they
  run once the caller next yields, and all of them then see the final time.
* **auto-advance** (the default, ``auto_advance=True``) — when every task is
  blocked, virtual time jumps to the earliest sleeper's deadline, so a test can
  just ``await`` code that sleeps. Each jump goes to *one* deadline and then lets
  the woken tasks run until the loop is idle again, so a woken task always sees
  ``now()`` equal to its own deadline and anything it schedules in reaction (a
  new, shorter sleep) is honoured before later deadlines.

Why auto-advance is the default: almost every test wants "time passes while
things sleep" and nothing more; manual stepping is opt-in
(``auto_advance=False``) for the tests that assert what happens *between* steps.

How auto-advance works without a background task: one sleeping task at a time is
the *driver*. Instead of waiting on its event it yields to the event loop until
nothing else is runnable, then advances time to the earliest registered deadline.
When the driver itself wakes (or is cancelled) it hands the role to the next
sleeper. Nothing is spawned, so the clock works inside any task structure and
leaves nothing running when a test ends.

"Nothing else is runnable" is read from asyncio's ready queue (the standard
event loop's ``_ready``); it is deterministic and cheap. On other loops (uvloop,
trio via anyio) the driver instead yields a fixed ``idle_yields`` times. Caveat:
a task waiting for *real* I/O or a real-time timer is not runnable, so virtual
time may jump while it waits; drive such tests with ``auto_advance=False``.
"""

from __future__ import annotations

import asyncio
import heapq
import math
from collections import deque
from typing import Any

import anyio
import anyio.lowlevel

__all__ = ["FakeClock"]

# Upper bound on yields while waiting for the loop to go idle: a task that spins
# on ``await sleep(0)`` polling ``now()`` must not stop time forever.
_MAX_SETTLE_YIELDS = 1000


class _Sleeper:
    """One pending ``sleep()``. ``event`` is replaced when the sleeper is woken to
    become the driver (anyio events cannot be cleared)."""

    __slots__ = ("cancelled", "deadline", "event", "woken")

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.event = anyio.Event()
        self.woken = False
        self.cancelled = False


class FakeClock:
    """A ``tierwise._clock.Clock`` whose time moves only when told to (or, with
    ``auto_advance``, when every task is waiting on it).

    ``start`` is the initial ``now()``; ``wall()`` starts at ``wall_start``
    (2026-01-01T00:00:00Z by default, so budget periods in tests have a known
    calendar position) and moves in lockstep with ``now()``.
    """

    def __init__(
        self,
        start: float = 0.0,
        wall_start: float = 1_767_225_600.0,
        *,
        auto_advance: bool = True,
        idle_yields: int = 50,
    ) -> None:
        self._start = float(start)
        self._now = float(start)
        self._wall_start = float(wall_start)
        self._auto = auto_advance
        self._idle_yields = max(1, idle_yields)
        self._heap: list[tuple[float, int, _Sleeper]] = []
        self._seq = 0
        self._live = 0
        self._driver: _Sleeper | None = None

    # -- Clock protocol -------------------------------------------------------

    def now(self) -> float:
        return self._now

    def wall(self) -> float:
        return self._wall_start + (self._now - self._start)

    async def sleep(self, seconds: float) -> None:
        """Sleep ``seconds`` of virtual time; ``<= 0`` is only a checkpoint."""
        if math.isnan(seconds):
            raise ValueError("sleep() needs a number of seconds, got NaN")
        if seconds <= 0:
            await anyio.lowlevel.checkpoint()
            return
        entry = _Sleeper(self._now + seconds)
        self._seq += 1
        heapq.heappush(self._heap, (entry.deadline, self._seq, entry))
        self._live += 1
        if self._auto and self._driver is None:
            self._driver = entry
        try:
            while not entry.woken:
                if self._driver is entry:
                    await self._drive(entry)
                else:
                    await entry.event.wait()
        finally:
            if not entry.woken:
                entry.cancelled = True
                self._live -= 1
            if self._driver is entry:
                self._hand_off()

    # -- manual control -------------------------------------------------------

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds`` and wake every sleeper whose deadline
        has passed, in deadline order. The woken tasks run when the caller yields."""
        if not seconds >= 0:
            raise ValueError(f"cannot advance by {seconds!r}: time only moves forward")
        self._wake_until(self._now + seconds, stop_at=None)
        self._now += seconds

    @property
    def auto_advance(self) -> bool:
        return self._auto

    @property
    def sleepers(self) -> int:
        """How many tasks are currently sleeping on this clock."""
        return self._live

    @property
    def next_deadline(self) -> float | None:
        """The earliest pending deadline, or None when nobody sleeps."""
        top = self._peek()
        return top.deadline if top is not None else None

    def __repr__(self) -> str:
        return f"FakeClock(now={self._now!r}, sleepers={self._live}, auto_advance={self._auto})"

    # -- internals ------------------------------------------------------------

    def _peek(self) -> _Sleeper | None:
        heap = self._heap
        while heap and heap[0][2].cancelled:
            heapq.heappop(heap)
        return heap[0][2] if heap else None

    def _wake_until(self, target: float, stop_at: _Sleeper | None) -> None:
        """Wake sleepers with deadline <= target in (deadline, seq) order.

        Stops right after ``stop_at`` (the driver): entries tied with it but
        registered later stay queued, so the driver's own resumption, which goes
        to the back of the ready queue, does not overtake them.
        """
        heap = self._heap
        while heap and heap[0][0] <= target:
            entry = heapq.heappop(heap)[2]
            if entry.cancelled:
                continue
            entry.woken = True
            self._live -= 1
            entry.event.set()
            if entry is stop_at:
                return

    async def _drive(self, me: _Sleeper) -> None:
        while not me.woken and self._driver is me:
            await self._settle()
            if me.woken or self._driver is not me:
                return
            top = self._peek()
            if top is None or math.isinf(top.deadline):
                # Only endless sleeps remain: step down so the next finite
                # sleep() becomes the driver instead of spinning here forever.
                self._driver = None
                return
            self._now = max(self._now, top.deadline)
            self._wake_until(self._now, stop_at=me)
        if me.woken and self._driver is me:
            self._hand_off()
            # Let sleepers woken just before us (earlier deadline or seq) run first.
            await anyio.lowlevel.checkpoint()

    def _hand_off(self) -> None:
        self._driver = None
        nxt = self._peek()
        if nxt is None or not self._auto:
            return
        self._driver = nxt
        old, nxt.event = nxt.event, anyio.Event()
        old.set()

    async def _settle(self) -> None:
        """Yield until no other task is ready to run (see module docstring)."""
        ready = _ready_queue()
        if ready is None:
            for _ in range(self._idle_yields):
                await anyio.lowlevel.checkpoint()
            return
        for _ in range(_MAX_SETTLE_YIELDS):
            await anyio.lowlevel.checkpoint()
            if not ready:
                return


def _ready_queue() -> deque[Any] | None:
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return None
    ready = getattr(loop, "_ready", None)
    return ready if isinstance(ready, deque) else None
