"""The shared rate limiter: one ``LIMIT_ACQUIRE`` script per admission attempt.

The script counts the deployment's sliding windows (requests, tokens), its
live concurrency slots (leased per process) and the provider's own headers,
and books all of them or none; it answers with how long to wait, so a caller
sleeps exactly that long (or fails at once when the wait is past its
``timeout``), like the in-memory ``RateLimiter``. Waiting is not FIFO across
processes: each waiter retries when its wait is over, and one blocked on
concurrency polls (2 ms doubling to 50 ms), since only another process's
release can free it.

When Redis is unavailable the ``limits`` fail mode applies: ``open`` admits
through a local in-memory ``RateLimiter`` with the same limits (per process,
so the aggregate is the limit times the processes until Redis returns),
``closed`` raises ``StateUnavailable``.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import os
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from ..execution.limits import LimiterClosed, QueueWaitTimeout, RateLimiter
from ._redis_conn import Conn, Packed, RedisDown

if TYPE_CHECKING:
    from ..types import RateLimitInfo

__all__ = ["FirstTry", "RedisLimiter", "RedisPermit"]

_WINDOW = 60.0
_POLL_MIN = 0.002
_POLL_MAX = 0.05
_MAX_TOKENS = 10**12
# Permit ids are members of shared sets, so unique across processes: a random
# per-process prefix and a counter (uuid4 per permit cost more than the rest of
# the acquisition's Python side).
_ID_PREFIX = os.urandom(6).hex()
_ids = itertools.count()


def _new_id_prefix() -> None:
    # A worker forked from a parent that imported this (gunicorn --preload) gets its own.
    global _ID_PREFIX
    _ID_PREFIX = os.urandom(6).hex()


os.register_at_fork(after_in_child=_new_id_prefix)


class FirstTry:
    """An admission attempt sent by ``RedisLimiter.begin`` (its reply still to come)."""

    __slots__ = ("fut", "permit_id", "reserve")

    def __init__(self, permit_id: str, reserve: int, fut: asyncio.Future[Any] | None) -> None:
        self.permit_id = permit_id
        self.reserve = reserve
        self.fut = fut


class RedisPermit:
    """A slot booked in Redis; ``arelease`` queues the release (and the token
    correction) as a write-behind, so it never waits on the network."""

    __slots__ = ("_limiter", "_released", "estimate", "id", "tokens")

    def __init__(self, limiter: RedisLimiter, permit_id: str, tokens: int, reserved: int) -> None:
        self._limiter = limiter
        self.id = permit_id
        self.estimate = tokens
        self.tokens = reserved
        self._released = False

    @property
    def released(self) -> bool:
        return self._released

    async def arelease(self, used_tokens: int | None = None) -> None:
        if self._released:
            return
        self._released = True
        if used_tokens is not None and (type(used_tokens) is not int or not 0 <= used_tokens <= _MAX_TOKENS):
            used_tokens = None
        lim = self._limiter
        if used_tokens is not None:
            if lim.tpm and self.estimate > 0:
                # The same learned used/estimated ratio as the memory limiter: later
                # reservations of this process are scaled up when estimates run low.
                lim.local._learn(self.estimate, used_tokens)
            self.tokens = used_tokens
        lim._conn.write(
            "LIMIT_RELEASE",
            lim._keys_release,
            (lim._conn.owner, self.id, -1 if used_tokens is None or not lim.tpm else used_tokens, lim._conc),
        )

    def __repr__(self) -> str:
        state = "released" if self._released else "held"
        return f"RedisPermit(tokens={self.tokens}, {state})"


class RedisLimiter:
    """RPM + TPM + concurrency of one deployment, shared through Redis."""

    def __init__(
        self,
        conn: Conn,
        name: str,
        *,
        rpm: float | None = None,
        tpm: float | None = None,
        max_concurrency: int | None = None,
        fail_open: bool = True,
    ) -> None:
        self.local = RateLimiter(
            rpm=rpm, tpm=tpm, max_concurrency=max_concurrency, clock=conn.clock, name=name
        )
        self.name = name
        self.rpm = rpm
        self.tpm = tpm
        self.max_concurrency = max_concurrency
        self.fail_open = fail_open
        self._conn = conn
        if rpm is None:
            self._cap, self._window = 0, _WINDOW
        elif rpm >= 1:
            self._cap, self._window = int(rpm), _WINDOW
        else:
            self._cap, self._window = 1, _WINDOW / rpm
        base = f"{conn.prefix}l:{name}:"
        self._k_req, self._k_tok, self._k_amt = base + "req", base + "tok", base + "amt"
        self._k_conc, self._k_meta = base + "conc", base + "meta"
        self._keys_acquire = (
            self._k_req,
            self._k_tok,
            self._k_amt,
            self._k_conc,
            conn.owners_key,
            self._k_meta,
        )
        self._keys_release = (self._k_tok, self._k_amt, self._k_conc)
        self._conc = "1" if max_concurrency else "0"
        self._static = (self._cap, self._window, int(tpm or 0), max_concurrency or 0, conn.lease_s)
        self._static_packed = Packed(self._static)
        self._closed: str | None = None

    def begin(self, tokens: int = 0) -> FirstTry:
        """Send the first admission attempt now, without waiting for its reply:
        the executor sends it in the same round trip as the budget reservation
        (``acquire(..., first=...)`` then takes the reply)."""
        if tokens < 0:
            raise ValueError(f"tokens must be >= 0, got {tokens}")
        permit_id, reserve = self._ticket(tokens)
        fut = None
        if self._closed is None:
            fut = self._conn.submit(
                "LIMIT_ACQUIRE", self._keys_acquire, self._acquire_args(permit_id, reserve)
            )
        return FirstTry(permit_id, reserve, fut)

    def _ticket(self, tokens: int) -> tuple[str, int]:
        """A new permit id and the tokens to reserve for ``tokens`` (scaled up
        by this process's learned used/estimated ratio when a tpm applies)."""
        local = self.local
        reserve = tokens if not self._static[2] or local._scale == 1.0 else local._scaled(tokens)
        return f"{_ID_PREFIX}{next(_ids):x}", reserve

    def _acquire_args(self, permit_id: str, reserve: int) -> tuple[Any, ...]:
        conn = self._conn
        return (conn.clock.wall(), conn.owner, permit_id, reserve, self._static_packed)

    async def acquire(
        self,
        tokens: int = 0,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - a queue wait, like RateLimiter.acquire
        first: FirstTry | None = None,
        on_wait: Callable[[], Awaitable[None]] | None = None,
    ) -> Any:
        """Book a request, ``tokens`` and a concurrency slot in one script, waiting
        at most ``timeout`` seconds (``QueueWaitTimeout``; ``LimiterClosed`` once closed).

        ``first`` is an attempt already sent by ``begin``; ``on_wait`` is awaited
        once if that first attempt does not admit (before waiting): the executor
        gives back the budget reservation it sent alongside, so no money is held
        while a request waits for a slot."""
        if tokens < 0:
            raise ValueError(f"tokens must be >= 0, got {tokens}")
        if self._closed is not None:
            raise LimiterClosed(self._closed)
        if timeout is not None and not timeout < math.inf:
            timeout = None
        conn = self._conn
        clock = conn.clock
        start = clock.now()
        deadline = None if timeout is None else start + max(0.0, timeout)
        poll = _POLL_MIN
        permit_id, reserve = (first.permit_id, first.reserve) if first is not None else self._ticket(tokens)
        maxc = self._static[3]
        while True:
            if self._closed is not None:
                raise LimiterClosed(self._closed)
            try:
                if first is not None:
                    fut, first = first.fut, None
                    reply = await conn.result("limits", fut)
                else:
                    reply = await conn.call(
                        "limits", "LIMIT_ACQUIRE", self._keys_acquire, self._acquire_args(permit_id, reserve)
                    )
            except RedisDown:
                if maxc:
                    # The admission may have been booked before its reply was lost:
                    # free that slot when Redis answers again (a no-op otherwise).
                    conn.write("LIMIT_RELEASE", self._keys_release, (conn.owner, permit_id, -1, "1"))
                return await self._fallback(tokens, deadline)
            except asyncio.CancelledError:
                if maxc:
                    # Cancelled while the admission was in flight: it may be booked, and
                    # nobody will hold the permit. The release is per permit (idempotent).
                    conn.write("LIMIT_RELEASE", self._keys_release, (conn.owner, permit_id, -1, "1"))
                raise
            code = int(reply[0])
            if code == 1:
                return RedisPermit(self, permit_id, tokens, reserve)
            if on_wait is not None:
                hook, on_wait = on_wait, None
                await hook()
            now = clock.now()
            if code == 0:
                wait = float(reply[1])
            else:
                wait = poll
                poll = min(poll * 2.0, _POLL_MAX)
            if deadline is not None:
                if now >= deadline or (code == 0 and now + wait > deadline):
                    raise QueueWaitTimeout(self.name, timeout or 0.0, now - start)
                wait = min(wait, deadline - now)
            await clock.sleep(max(wait, 1e-6))

    async def _fallback(self, tokens: int, deadline: float | None) -> Any:
        from . import StateUnavailable

        self._conn.fell_back("limits", fail_open=self.fail_open)
        if not self.fail_open:
            raise StateUnavailable(
                f"rate limits of {self.name!r}: redis unavailable (on_error.limits = 'closed')"
            )
        left = None if deadline is None else max(0.0, deadline - self._conn.clock.now())
        return await self.local.acquire(tokens, timeout=left)

    def observe(self, info: RateLimitInfo) -> None:
        """The provider's ``x-ratelimit-*`` headers tighten the shared view (queued write)."""
        self.local.observe(info)
        req = info.requests_remaining is not None and info.requests_reset_s is not None
        tok = info.tokens_remaining is not None and info.tokens_reset_s is not None
        if not (req or tok):
            return
        self._conn.write(
            "LIMIT_OBSERVE",
            (self._k_meta,),
            (
                self._conn.clock.wall(),
                info.requests_remaining if req else "",
                max(0.0, info.requests_reset_s or 0.0) if req else "",
                info.tokens_remaining if tok else "",
                max(0.0, info.tokens_reset_s or 0.0) if tok else "",
            ),
        )

    def penalize(self, retry_after: float, *, cap: float | None = None) -> None:
        """A 429's ``retry_after``: every process holds new calls back (queued write)."""
        self.local.penalize(retry_after, cap=cap)
        if isinstance(retry_after, bool) or not isinstance(retry_after, int | float):
            return
        if not (retry_after >= 0 and math.isfinite(retry_after)):
            return
        if cap is not None and cap >= 0:
            retry_after = min(retry_after, cap)
        self._conn.write("LIMIT_HOLD", (self._k_meta,), (self._conn.clock.wall() + retry_after,))

    def close(self, reason: str = "the orchestrator is closing") -> None:
        if self._closed is None:
            self._closed = f"rate limiter {self.name!r} closed: {reason}"
        self.local.close(reason)

    @property
    def closed(self) -> bool:
        return self._closed is not None

    async def asnapshot(self) -> dict[str, Any]:
        """The shared levels (one round trip), for ``tierwise status``."""
        conn = self._conn
        reqs, toks, conc, hold = await conn.call(
            "limits",
            "LIMIT_READ",
            (self._k_req, self._k_amt, self._k_conc, conn.owners_key, self._k_meta),
            (conn.clock.wall(), self._window),
        )
        return {
            "name": self.name,
            "rpm": self.rpm,
            "tpm": self.tpm,
            "max_concurrency": self.max_concurrency,
            "in_flight": int(conc),
            "requests_in_window": int(reqs) if self._cap else None,
            "tokens_in_window": int(toks) if self.tpm else None,
            "hold_remaining_s": float(hold),
        }

    def snapshot(self) -> dict[str, Any]:
        """This process's fallback limiter (the shared levels need ``asnapshot``)."""
        return self.local.snapshot()

    def __repr__(self) -> str:
        return (
            f"RedisLimiter({self.name!r}, rpm={self.rpm}, tpm={self.tpm}, "
            f"max_concurrency={self.max_concurrency})"
        )
