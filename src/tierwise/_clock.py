"""Time as an injectable dependency.

Rate limits, backoff, cooldowns and budget periods all read time through a
``Clock`` so tests drive them with ``tierwise.testing.FakeClock`` instead of
sleeping. ``now()`` is monotonic seconds (for intervals); ``wall()`` is Unix time
(for budget periods and audit timestamps, which must agree with calendars).
"""

from __future__ import annotations

import time
from typing import Protocol, runtime_checkable

__all__ = ["SYSTEM_CLOCK", "Clock", "SystemClock"]


@runtime_checkable
class Clock(Protocol):
    def now(self) -> float:
        """Monotonic seconds."""
        ...

    def wall(self) -> float:
        """Unix time in seconds."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Sleep for ``seconds`` of this clock's time."""
        ...


class SystemClock:
    """The real clock: ``time.monotonic``, ``time.time`` and ``anyio.sleep``."""

    __slots__ = ()

    def now(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        import anyio  # lazily: anyio costs ~10 ms of every cold start

        await anyio.sleep(seconds)

    def __repr__(self) -> str:
        return "SystemClock()"


SYSTEM_CLOCK = SystemClock()
