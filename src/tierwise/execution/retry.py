"""When to retry a failed attempt, and how long to wait first.

``RetryPolicy`` only *decides*; the executor does the waiting (on its injected
clock) and moves to the next target when the policy says no. Keeping it a pure
value object makes every decision testable without time passing.

Backoff: ``initial_backoff * multiplier ** (attempt - 1)``, capped at
``max_backoff``, with **full jitter** (a uniform draw from ``[0, backoff]``)
when ``jitter`` is on. Full jitter rather than "equal" or "±x %" jitter: many
clients hitting the same overloaded provider after the same error should spread
out over the whole interval, and full jitter gives the lowest total load and
completion time for that case (the well-known AWS analysis); the expected wait
is half the nominal backoff, which is fine for a per-target retry.

The provider's ``retry_after`` is a floor: we never come back sooner than asked.
But when it asks for more than ``max_retry_after`` the policy declines to retry
at all, so the executor falls back to the next target instead of parking the
request (a 60-second Retry-After on one model is a reason to try another).

``deadline`` bounds the whole request — every try of every target in the chain.
``should_retry`` refuses once the deadline has passed or when the provider's
``retry_after`` would carry us past it; ``delay`` never returns more than the
time left.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import AllTargetsFailed, BudgetExceeded, ConfigError, ProviderError

__all__ = ["RetryPolicy"]

# Past this exponent the backoff is at its cap anyway; avoids float overflow.
_MAX_EXPONENT = 64


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Retry rules for one request (immutable; share one instance freely).

    ``retry_on`` may override the verdict for errors the policy would otherwise
    judge: return ``True``/``False`` to force it, ``None`` to keep the default.
    It cannot make cancellation, ``BudgetExceeded`` or ``ConfigError`` retryable —
    retrying those is always wrong.
    """

    max_attempts: int = 3
    initial_backoff: float = 0.5
    max_backoff: float = 20.0
    multiplier: float = 2.0
    jitter: bool = True
    deadline: float | None = None
    max_retry_after: float = 30.0
    retry_on: Callable[[BaseException], bool | None] | None = None

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {self.max_attempts}")
        if not (self.initial_backoff >= 0 and self.max_backoff >= 0):
            raise ValueError("initial_backoff and max_backoff must be >= 0")
        if not self.multiplier >= 1:
            raise ValueError(f"multiplier must be >= 1, got {self.multiplier}")
        if self.deadline is not None and not self.deadline > 0:
            raise ValueError(f"deadline must be > 0 seconds or None, got {self.deadline}")
        if not self.max_retry_after >= 0:
            raise ValueError(f"max_retry_after must be >= 0, got {self.max_retry_after}")

    def is_retryable(self, error: BaseException) -> bool:
        """The error's own verdict (plus ``retry_on``), ignoring attempts and time.

        Never: anything that is not an ``Exception`` (cancellation, ``KeyboardInterrupt``),
        ``BudgetExceeded``, ``ConfigError``, ``AllTargetsFailed``. By default:
        ``ProviderError.retryable``, and the built-in ``TimeoutError`` an attempt
        timeout raises; nothing else (an unexpected exception is a bug, and
        retrying a bug only hides it).
        """
        if not isinstance(error, Exception) or isinstance(
            error, BudgetExceeded | ConfigError | AllTargetsFailed
        ):
            return False
        if self.retry_on is not None:
            verdict = self.retry_on(error)
            if verdict is not None:
                return bool(verdict)
        if isinstance(error, ProviderError):
            return error.retryable
        return isinstance(error, TimeoutError)

    def should_retry(self, error: BaseException, attempt: int, elapsed: float) -> bool:
        """Whether to try the same target again after ``attempt`` (1-based) failed
        with ``error``, ``elapsed`` seconds after the request started."""
        if attempt >= self.max_attempts or not self.is_retryable(error):
            return False
        retry_after = _retry_after(error)
        if retry_after is not None and retry_after > self.max_retry_after:
            return False
        if self.deadline is not None:
            left = self.deadline - elapsed
            if left <= 0 or (retry_after is not None and retry_after >= left):
                return False
        return True

    def backoff(self, attempt: int) -> float:
        """The nominal (un-jittered) backoff after ``attempt`` failed."""
        exponent = max(0, attempt - 1)
        if exponent > _MAX_EXPONENT:
            return self.max_backoff
        return min(self.max_backoff, self.initial_backoff * self.multiplier**exponent)

    def delay(
        self,
        attempt: int,
        error: BaseException | None,
        rng: random.Random,
        *,
        elapsed: float | None = None,
    ) -> float:
        """Seconds to wait before the try after ``attempt``.

        Full-jittered exponential backoff, raised to the provider's
        ``retry_after`` when it gave one, then capped at the time left before
        ``deadline`` when ``elapsed`` is given (the executor passes it; without it
        the deadline cannot be known here).
        """
        wait = self.backoff(attempt)
        if self.jitter:
            wait = rng.uniform(0.0, wait)
        retry_after = _retry_after(error)
        if retry_after is not None:
            wait = max(wait, retry_after)
        if self.deadline is not None and elapsed is not None:
            wait = min(wait, max(0.0, self.deadline - elapsed))
        return wait

    def time_left(self, elapsed: float) -> float | None:
        """Seconds left before the deadline (``None`` when unbounded); the executor
        uses it to shorten the last attempt's timeout."""
        if self.deadline is None:
            return None
        return max(0.0, self.deadline - elapsed)


def _retry_after(error: BaseException | None) -> float | None:
    value = getattr(error, "retry_after", None) if error is not None else None
    if isinstance(value, int | float) and math.isfinite(value) and value >= 0:
        return float(value)
    return None
