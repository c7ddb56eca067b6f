"""Client-side rate limiting: requests per minute, tokens per minute, concurrency.

One ``RateLimiter`` guards one deployment: ``acquire(tokens)`` waits (FIFO, on the
injected clock, bounded by ``timeout``) until all three budgets have room and
returns a ``Permit``; ``release(used_tokens)`` corrects the reservation with the
real usage. A sliding-window log gives the exact "no 60 s window holds more than
``rpm``" guarantee providers state their limits in; the design notes (why a log,
estimate learning, oversized requests, cancellation, closing) are in
docs/execution.md.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any

from .._clock import SYSTEM_CLOCK, Clock
from ..errors import TierwiseError
from ..types import RateLimitInfo

if TYPE_CHECKING:
    import anyio

__all__ = ["LimiterClosed", "Permit", "QueueWaitTimeout", "RateLimiter"]

_WINDOW = 60.0
# Smallest sleep the head waiter takes: guards against float rounding leaving it
# a few ulps short of an expiry time and spinning on zero-length sleeps.
_MIN_SLEEP = 1e-6
_NEVER = -math.inf
# Weight of the newest release in the used/estimated ratio, and its cap.
_LEARN_RATE = 0.05
_MAX_SCALE = 4.0
# Larger "used" counts are nonsense from a provider (no window holds 10^12 tokens).
_MAX_TOKENS = 10**12


class QueueWaitTimeout(TimeoutError):
    """No slot within the caller's ``timeout``: the deployment is too busy to wait for.

    A ``TimeoutError`` (not a ``ProviderError``): nothing was sent, the provider did
    nothing wrong, and the executor moves on to the next deployment."""

    def __init__(self, limiter: str, timeout: float, waited_s: float) -> None:
        name = repr(limiter) if limiter else "this deployment"
        super().__init__(f"no rate-limit slot on {name} within {timeout:g}s")
        self.limiter = limiter
        self.timeout = timeout
        self.waited_s = waited_s


class LimiterClosed(TierwiseError):
    """The limiter was closed (the orchestrator is shutting down) while waiting for it."""


@dataclass(slots=True, eq=False, repr=False)
class Permit:
    """The right to send one request. Release it exactly once (more is harmless).

    ``estimate`` is what was passed to ``acquire``; ``tokens`` is what is counted
    in the TPM window: the reservation (the estimate, scaled up when estimates
    have been running low) until ``release(used_tokens)`` replaces it with real
    usage. Usable as a context
    manager (``with await limiter.acquire(n) as permit:``), which releases
    without a correction.
    """

    _limiter: RateLimiter
    acquired_at: float
    estimate: int
    tokens: int
    _released: bool = field(default=False, init=False)
    _in_window: bool = field(default=False, init=False)

    @property
    def released(self) -> bool:
        return self._released

    def release(self, used_tokens: int | None = None) -> None:
        """Free the concurrency slot and, when ``used_tokens`` is given, replace the
        token reservation with it (a refund or an extra charge in the window the
        request was admitted in). Only the first call has any effect."""
        if self._released:
            return
        self._released = True
        # Never raise here: a release that fails leaks the slot for good. A count
        # that is not a sane token number (negative, bool, non-int, absurd) corrects
        # nothing; the reservation stands.
        if used_tokens is not None and (type(used_tokens) is not int or not 0 <= used_tokens <= _MAX_TOKENS):
            used_tokens = None
        self._limiter._release(self, used_tokens)

    async def arelease(self, used_tokens: int | None = None) -> None:
        """``release`` for the ``tierwise.state.Permit`` protocol (never waits here)."""
        self.release(used_tokens)

    def __enter__(self) -> Permit:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def __repr__(self) -> str:
        state = "released" if self._released else "held"
        return f"Permit(tokens={self.tokens}, acquired_at={self.acquired_at!r}, {state})"


class _Waiter:
    __slots__ = ("scope", "tokens")

    def __init__(self, tokens: int) -> None:
        self.tokens = tokens
        self.scope: anyio.CancelScope | None = None


class RateLimiter:
    """RPM + TPM + concurrency limits for one deployment, FIFO, cancellation-safe.

    Any limit left ``None`` is not enforced; a limiter with none of them only
    counts in-flight requests. See the module docstring for the algorithm.
    """

    __slots__ = (
        "_clock",
        "_closed",
        "_ew_est",
        "_ew_used",
        "_hdr_req_left",
        "_hdr_req_reset_at",
        "_hdr_tok_left",
        "_hdr_tok_reset_at",
        "_hold_until",
        "_in_flight",
        "_max_conc",
        "_req_cap",
        "_req_log",
        "_req_window",
        "_scale",
        "_tok_log",
        "_tok_sum",
        "_tpm",
        "_waiters",
        "max_concurrency",
        "name",
        "rpm",
        "tpm",
    )

    def __init__(
        self,
        *,
        rpm: float | None = None,
        tpm: float | None = None,
        max_concurrency: int | None = None,
        clock: Clock = SYSTEM_CLOCK,
        name: str = "",
    ) -> None:
        for label, value in (("rpm", rpm), ("tpm", tpm)):
            if value is not None and not (value > 0 and math.isfinite(value)):
                raise ValueError(f"{label} must be a positive number or None, got {value!r}")
        if max_concurrency is not None and max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1 or None, got {max_concurrency!r}")
        self.rpm = rpm
        self.tpm = tpm
        self.max_concurrency = max_concurrency
        self.name = name
        self._clock = clock
        # RPM: capacity 0 means "not enforced" so the hot path tests one int.
        if rpm is None:
            self._req_cap, self._req_window = 0, _WINDOW
        elif rpm >= 1:
            self._req_cap, self._req_window = int(rpm), _WINDOW
        else:
            self._req_cap, self._req_window = 1, _WINDOW / rpm
        self._req_log: deque[float] = deque()
        self._tpm = tpm
        self._tok_log: deque[Permit] = deque()
        self._tok_sum = 0
        self._max_conc = max_concurrency or 0
        self._in_flight = 0
        self._waiters: deque[_Waiter] = deque()
        self._closed: str | None = None
        self._hold_until = _NEVER
        self._hdr_req_left = 0
        self._hdr_req_reset_at = _NEVER
        self._hdr_tok_left = 0
        self._hdr_tok_reset_at = _NEVER
        self._ew_used = 0.0
        self._ew_est = 0.0
        self._scale = 1.0

    # -- acquiring ------------------------------------------------------------

    # A timeout parameter, not a cancel scope around the call (ASYNC109): the limiter
    # must know the bound to refuse at once a wait it can tell is longer.
    async def acquire(self, tokens: int = 0, *, timeout: float | None = None) -> Permit:  # noqa: ASYNC109
        """Wait (FIFO) until a request slot, ``tokens`` of token budget and a
        concurrency slot are all free, and take them.

        ``timeout`` (seconds on the limiter's clock; ``<= 0``: only if free now)
        bounds the wait: past it, or at once when the wait is certain to be longer,
        ``QueueWaitTimeout`` is raised and nothing is taken. ``LimiterClosed`` once
        ``close()`` was called. The fast path (nobody queued, capacity free) neither
        yields nor allocates anything but the ``Permit``.
        """
        if tokens < 0:
            raise ValueError(f"tokens must be >= 0, got {tokens}")
        if self._closed is not None:
            raise LimiterClosed(self._closed)
        deadline: float | None = None
        if timeout is not None and not (timeout == timeout and timeout < math.inf):  # nan or inf
            if timeout != math.inf:
                raise ValueError(f"timeout must be a number of seconds or None, got {timeout!r}")
            timeout = None
        if not self._waiters:
            now = self._clock.now()
            reserve = tokens if self._scale == 1.0 else self._scaled(tokens)
            wait = self._wait_time(reserve, now)
            if wait == 0.0:
                return self._admit(tokens, reserve, now)
            if timeout is not None and (timeout <= 0 or (wait > timeout and wait != math.inf)):
                raise QueueWaitTimeout(self.name, max(0.0, timeout), 0.0)
        elif timeout is not None and timeout > 0:
            # Behind others the time-based wait alone is still a floor (those ahead
            # only add to the windows), so a longer one is already certain too.
            wait = self._wait_time(tokens if self._scale == 1.0 else self._scaled(tokens), self._clock.now())
            if wait > timeout and wait != math.inf:
                raise QueueWaitTimeout(self.name, timeout, 0.0)
        if timeout is not None:
            if timeout <= 0:
                raise QueueWaitTimeout(self.name, 0.0, 0.0)
            deadline = self._clock.now() + timeout
        return await self._acquire_slow(tokens, deadline, timeout)

    def try_acquire(self, tokens: int = 0) -> Permit | None:
        """Take a permit only if that needs no waiting (and nobody is queued), else
        ``None``: lets the executor prefer a deployment with free capacity."""
        if tokens < 0:
            raise ValueError(f"tokens must be >= 0, got {tokens}")
        if self._waiters or self._closed is not None:
            return None
        now = self._clock.now()
        reserve = tokens if self._scale == 1.0 else self._scaled(tokens)
        if self._wait_time(reserve, now) == 0.0:
            return self._admit(tokens, reserve, now)
        return None

    def wait_time(self, tokens: int = 0) -> float:
        """Seconds until ``tokens`` could be admitted if requested now: 0.0 free now,
        ``inf`` blocked on concurrency (only a release can help) or closed.

        Read-only (no permit is taken): the executor compares deployments with it.
        Queued waiters count ahead of the caller, conservatively: they take their
        request slots, tokens and concurrency slots first, so with anyone queued it
        is never 0. Refunds and provider headers that may arrive meanwhile are not
        foreseen, so it is an estimate, not a promise."""
        if tokens < 0:
            raise ValueError(f"tokens must be >= 0, got {tokens}")
        if self._closed is not None:
            return math.inf
        now = self._clock.now()
        reserve = tokens if self._scale == 1.0 else self._scaled(tokens)
        wait = self._wait_time(reserve, now)
        waiters = self._waiters
        if not waiters or wait == math.inf:
            return wait
        ahead = len(waiters)
        if self._max_conc and self._in_flight + ahead >= self._max_conc:
            return math.inf
        if self._req_cap:
            log = self._req_log
            # The admission whose expiry frees a request slot for the caller; past
            # the log it is one of the queued ones, admitted no earlier than now.
            i = len(log) + ahead - self._req_cap
            if i >= len(log):
                wait = max(wait, self._req_window)
            elif i >= 0:
                wait = max(wait, log[i] + self._req_window - now)
        if self._tpm is not None:
            queued = sum(w.tokens for w in waiters)
            need = self._tok_sum + (queued if self._scale == 1.0 else self._scaled(queued)) + reserve
            need -= int(self._tpm)
            if need > 0:
                expiry = self._freed_after(need, now)
                wait = max(wait, _WINDOW if expiry is None else expiry)
        return max(wait, _MIN_SLEEP)

    def close(self, reason: str = "the orchestrator is closing") -> None:
        """Fail every queued and every later ``acquire`` with ``LimiterClosed``.
        Held permits release as usual. Idempotent."""
        if self._closed is not None:
            return
        self._closed = f"rate limiter {self.name!r} closed: {reason}" if self.name else reason
        for waiter in self._waiters:
            if waiter.scope is not None:
                waiter.scope.cancel()

    @property
    def closed(self) -> bool:
        return self._closed is not None

    async def _acquire_slow(
        self,
        tokens: int,
        deadline: float | None,
        timeout: float | None,  # noqa: ASYNC109 (only reported in the error)
    ) -> Permit:
        waiters = self._waiters
        me = _Waiter(tokens)
        waiters.append(me)
        admitted = False
        clock = self._clock
        start = clock.now()
        try:
            while True:
                if self._closed is not None:
                    raise LimiterClosed(self._closed)
                now = clock.now()
                wait = math.inf
                if waiters[0] is me:
                    reserve = tokens if self._scale == 1.0 else self._scaled(tokens)
                    wait = self._wait_time(reserve, now)
                    if wait == 0.0:
                        waiters.popleft()
                        admitted = True
                        permit = self._admit(tokens, reserve, now)
                        self._wake_head()
                        return permit
                if deadline is not None:
                    assert timeout is not None
                    if now >= deadline or (wait != math.inf and now + wait > deadline):
                        raise QueueWaitTimeout(self.name, timeout, now - start)
                    wait = min(wait, deadline - now)
                import anyio  # lazily: keeps it out of cold start

                with anyio.CancelScope() as scope:
                    me.scope = scope
                    if wait == math.inf:
                        await anyio.sleep_forever()
                    else:
                        await clock.sleep(max(wait, _MIN_SLEEP))
                me.scope = None
        finally:
            if not admitted:
                was_head = bool(waiters) and waiters[0] is me
                try:
                    waiters.remove(me)
                except ValueError:
                    pass
                if was_head:
                    self._wake_head()

    def _wake_head(self) -> None:
        """Make the head waiter re-check capacity now (it may be sleeping on a
        longer deadline, or forever while not yet head / blocked on concurrency)."""
        if self._waiters:
            scope = self._waiters[0].scope
            if scope is not None:
                scope.cancel()

    def _purge(self, now: float) -> None:
        if self._req_cap:
            log = self._req_log
            window = self._req_window
            while log and log[0] + window <= now:
                log.popleft()
        if self._tpm is not None:
            tlog = self._tok_log
            while tlog and tlog[0].acquired_at + _WINDOW <= now:
                p = tlog.popleft()
                p._in_window = False
                self._tok_sum -= p.tokens

    def _wait_time(self, tokens: int, now: float) -> float:
        """Seconds until ``tokens`` could be admitted: 0.0 = now, inf = blocked on
        concurrency (only a release can help)."""
        if self._max_conc and self._in_flight >= self._max_conc:
            return math.inf
        self._purge(now)
        wait = self._hold_until - now
        if self._req_cap:
            log = self._req_log
            if len(log) >= self._req_cap:
                wait = max(wait, log[len(log) - self._req_cap] + self._req_window - now)
        if self._hdr_req_reset_at > now and self._hdr_req_left <= 0:
            wait = max(wait, self._hdr_req_reset_at - now)
        tpm = self._tpm
        if tpm is not None and self._tok_sum > 0 and self._tok_sum + tokens > tpm:
            # Tokens that must expire before this request fits; all of them when
            # it is larger than the whole budget (it then goes alone).
            need = self._tok_sum if tokens > tpm else self._tok_sum + tokens - tpm
            expiry = self._freed_after(need, now)
            if expiry is not None:
                wait = max(wait, expiry)
        if self._hdr_tok_reset_at > now and tokens > self._hdr_tok_left:
            wait = max(wait, self._hdr_tok_reset_at - now)
        return wait if wait > 0.0 else 0.0

    def _freed_after(self, need: float, now: float) -> float | None:
        """Seconds until admissions holding ``need`` tokens have left the window
        (``None``: the log does not hold that many)."""
        freed = 0
        for p in self._tok_log:
            freed += p.tokens
            if freed >= need:
                return p.acquired_at + _WINDOW - now
        return None

    def _admit(self, estimate: int, tokens: int, now: float) -> Permit:
        permit = Permit(self, now, estimate, tokens)
        if self._req_cap:
            self._req_log.append(now)
        if self._tpm is not None:
            self._tok_log.append(permit)
            self._tok_sum += tokens
            permit._in_window = True
        if self._hdr_req_reset_at > now:
            self._hdr_req_left -= 1
        if self._hdr_tok_reset_at > now:
            self._hdr_tok_left -= tokens
        self._in_flight += 1
        return permit

    def _release(self, permit: Permit, used_tokens: int | None) -> None:
        self._in_flight -= 1
        if used_tokens is not None and self._tpm is not None:
            if permit.estimate > 0:
                self._learn(permit.estimate, used_tokens)
            if permit._in_window:
                self._tok_sum += used_tokens - permit.tokens
            # Outside the window the correction no longer matters for admission:
            # the request's minute is over. Keep the real figure for the record.
            permit.tokens = used_tokens
        if self._waiters:
            self._wake_head()

    def _scaled(self, tokens: int) -> int:
        # The epsilon keeps float noise (100 × 3.0000000001) from adding a token.
        return math.ceil(tokens * self._scale - 1e-6)

    def _learn(self, estimate: int, used: int) -> None:
        """Update the used/estimated ratio (token-weighted EWMA, see module docstring)."""
        self._ew_used += _LEARN_RATE * (used - self._ew_used)
        self._ew_est += _LEARN_RATE * (estimate - self._ew_est)
        ratio = self._ew_used / self._ew_est
        self._scale = 1.0 if ratio <= 1.0 else min(ratio, _MAX_SCALE)

    # -- feedback from the provider --------------------------------------------

    def observe(self, info: RateLimitInfo) -> None:
        """Tighten the local view with the provider's rate-limit headers.

        ``*_remaining`` with a ``*_reset_s`` becomes a budget until the reset: at
        most that many more requests (or tokens) are admitted before it, and with
        zero remaining nothing is. The latest observation replaces the previous
        one (it is the provider's newest count). A remaining count without a reset
        time cannot be bounded in time and is ignored; a 429 then arrives and
        ``penalize()`` handles it. Configured ``rpm``/``tpm`` still apply on top.
        """
        now = self._clock.now()
        if info.requests_remaining is not None and info.requests_reset_s is not None:
            self._hdr_req_left = info.requests_remaining
            self._hdr_req_reset_at = now + max(0.0, info.requests_reset_s)
        if info.tokens_remaining is not None and info.tokens_reset_s is not None:
            self._hdr_tok_left = info.tokens_remaining
            self._hdr_tok_reset_at = now + max(0.0, info.tokens_reset_s)
        # A newer window may be looser than the one the head is sleeping on.
        self._wake_head()

    def penalize(self, retry_after: float, *, cap: float | None = None) -> None:
        """After a 429: admit nothing new until ``now + retry_after`` (at most ``cap``
        seconds). Requests in flight are not affected; a later, shorter penalty never
        shortens a hold. A value that is not a finite number >= 0 (a hostile
        ``retry-after: inf``) is ignored: a hold must never freeze the deployment.

        Why a cap: a provider asking for two minutes would otherwise park every
        queued request for two minutes; the executor caps the hold at
        ``max_retry_after`` and lets the health tracker cool the deployment for the
        rest, so the chain routes around it instead."""
        if isinstance(retry_after, bool) or not isinstance(retry_after, int | float):
            return
        if not (retry_after >= 0 and math.isfinite(retry_after)):
            return
        if cap is not None and cap >= 0:
            retry_after = min(retry_after, cap)
        self._hold_until = max(self._hold_until, self._clock.now() + retry_after)

    # -- introspection ---------------------------------------------------------

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @property
    def queued(self) -> int:
        return len(self._waiters)

    def snapshot(self) -> dict[str, Any]:
        """Current state, for metrics and debugging (plain JSON-able values)."""
        now = self._clock.now()
        self._purge(now)
        return {
            "name": self.name,
            "rpm": self.rpm,
            "tpm": self.tpm,
            "max_concurrency": self.max_concurrency,
            "in_flight": self._in_flight,
            "queued": len(self._waiters),
            "requests_in_window": len(self._req_log) if self._req_cap else None,
            "tokens_in_window": self._tok_sum if self._tpm is not None else None,
            "estimate_scale": self._scale,
            "hold_remaining_s": max(0.0, self._hold_until - now),
            "provider_requests_remaining": (self._hdr_req_left if self._hdr_req_reset_at > now else None),
            "provider_tokens_remaining": (self._hdr_tok_left if self._hdr_tok_reset_at > now else None),
        }

    def __repr__(self) -> str:
        label = f"{self.name!r}, " if self.name else ""
        return (
            f"RateLimiter({label}rpm={self.rpm}, tpm={self.tpm}, max_concurrency={self.max_concurrency}, "
            f"in_flight={self._in_flight}, queued={len(self._waiters)})"
        )
