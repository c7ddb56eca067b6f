"""Per-deployment circuit breaker: stop sending traffic to a deployment that is failing.

States, per deployment key (whatever string the executor uses, e.g.
``"openai/gpt-4o-mini@primary"``):

``healthy``
    Calls flow. ``failure_threshold`` counted failures within ``window_s`` of each
    other, with no success in between, open the breaker.
``cooling``
    ``available()`` is False for ``cooldown`` seconds; the executor skips the
    deployment unless nothing else is left.
``half_open``
    The cooldown is over. ``available()`` lets exactly *one* caller through (the
    call to ``available()`` that returns True claims the trial). Its success
    closes the breaker and resets the cooldown; its failure re-opens it with the
    cooldown **doubled**, up to ``max_cooldown_s``, so a deployment that stays
    down is probed less and less often. A trial whose outcome is never reported
    (the executor picked another target, or the call was cancelled) expires after
    ``cooldown_s``, and another caller may try.

What counts as a failure: only errors that say something about the
*deployment*: retryable provider errors (timeouts, connection errors, 5xx/529,
429, malformed replies), any 429 or 5xx status even if marked non-retryable (an
exhausted quota makes the deployment useless too), the built-in ``TimeoutError``,
and ``AuthenticationError`` / ``PermissionDeniedError`` (a bad key fails every
request). A ``BadRequestError`` (400, context window, 404), ``ContentFiltered``,
budget errors, cancellation and programming errors are about the *request* or
the caller, and never trip the breaker.

Rate limits: a 429 carrying ``retry_after`` cools the deployment for that long
even below the threshold, because the provider has told us it will refuse until
then (the same holds for any counted failure with ``retry_after``, such as a 503
or 529 with a Retry-After header). Such a cool-off ends by itself (back to
``healthy``, no trial) unless the threshold was also reached: the deployment is
not broken, and the rate limiter's ``penalize()`` already spaces the next
requests.

Successes reported while cooling (the executor had nothing else left and the call
worked) close the breaker at once: the best evidence of health is a success.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Literal

from .._clock import SYSTEM_CLOCK, Clock
from ..errors import AuthenticationError, BadRequestError, ContentFiltered, ProviderError

__all__ = ["HealthState", "HealthTracker", "counts_as_failure"]

HealthStatus = Literal["healthy", "cooling", "half_open"]


@dataclass(slots=True)
class HealthState:
    """A point-in-time view of one deployment (for ``snapshot()`` and metrics)."""

    state: HealthStatus
    consecutive_failures: int
    cooldown_remaining_s: float
    total_failures: int
    total_successes: int


def counts_as_failure(error: BaseException) -> bool:
    """Whether ``error`` says the deployment (not the request) is unhealthy."""
    if not isinstance(error, Exception):
        return False  # cancellation, KeyboardInterrupt
    if isinstance(error, ProviderError):
        if isinstance(error, BadRequestError | ContentFiltered):
            return False
        if isinstance(error, AuthenticationError) or error.retryable:
            return True
        status = error.status_code
        return status is not None and (status == 429 or status >= 500)
    return isinstance(error, TimeoutError)


class _Deployment:
    __slots__ = (
        "breaker_open",
        "cooldown",
        "failures",
        "open_until",
        "total_failures",
        "total_successes",
        "trial_started",
    )

    def __init__(self, cooldown: float) -> None:
        self.failures: deque[float] = deque()  # times of counted failures since the last success
        self.open_until = 0.0
        # True: cooling because the breaker tripped (→ half-open after). False with
        # open_until in the future: a rate-limit cool-off (→ healthy after).
        self.breaker_open = False
        self.cooldown = cooldown
        self.trial_started: float | None = None
        self.total_failures = 0
        self.total_successes = 0


class HealthTracker:
    """Circuit breakers for many deployments, keyed by string. See module docstring."""

    __slots__ = ("_clock", "_deps", "cooldown_s", "failure_threshold", "max_cooldown_s", "window_s")

    def __init__(
        self,
        *,
        failure_threshold: int = 5,
        cooldown_s: float = 30.0,
        window_s: float = 60.0,
        max_cooldown_s: float = 300.0,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError(f"failure_threshold must be >= 1, got {failure_threshold}")
        if not (cooldown_s > 0 and window_s > 0):
            raise ValueError("cooldown_s and window_s must be > 0")
        self.failure_threshold = failure_threshold
        self.cooldown_s = cooldown_s
        self.window_s = window_s
        self.max_cooldown_s = max(max_cooldown_s, cooldown_s)
        self._clock = clock
        self._deps: dict[str, _Deployment] = {}

    def _get(self, key: str) -> _Deployment:
        dep = self._deps.get(key)
        if dep is None:
            dep = self._deps[key] = _Deployment(self.cooldown_s)
        return dep

    def _status(self, dep: _Deployment, now: float) -> HealthStatus:
        if now < dep.open_until:
            return "cooling"
        return "half_open" if dep.breaker_open else "healthy"

    def ready(self, key: str) -> bool:
        """Whether ``key`` could take a call now, without claiming anything: healthy,
        or half-open with its trial still unclaimed. Used to order a fallback chain,
        where most deployments will not be called at all."""
        return self._admits(key, claim=False)

    def available(self, key: str) -> bool:
        """Whether to send a call to ``key`` now. In ``half_open`` the True answer
        claims the single trial call, so ask only when about to call."""
        return self._admits(key, claim=True)

    def _admits(self, key: str, *, claim: bool) -> bool:
        dep = self._deps.get(key)
        if dep is None:
            return True
        now = self._clock.now()
        status = self._status(dep, now)
        if status == "healthy":
            return True
        if status == "cooling":
            return False
        if dep.trial_started is None or now - dep.trial_started >= self.cooldown_s:
            if claim:
                dep.trial_started = now
            return True
        return False

    def record_success(self, key: str) -> None:
        dep = self._get(key)
        dep.total_successes += 1
        dep.failures.clear()
        dep.open_until = 0.0
        dep.breaker_open = False
        dep.cooldown = self.cooldown_s
        dep.trial_started = None

    def record_failure(self, key: str, error: BaseException) -> bool:
        """Record a failed call; returns whether it counted against the deployment."""
        if not counts_as_failure(error):
            dep = self._deps.get(key)
            if dep is not None:
                dep.trial_started = None  # inconclusive trial: let another caller probe
            return False
        dep = self._get(key)
        now = self._clock.now()
        dep.total_failures += 1
        status = self._status(dep, now)
        failures = dep.failures
        failures.append(now)
        horizon = now - self.window_s
        while failures and failures[0] < horizon:
            failures.popleft()

        if status == "half_open":
            # The trial failed: back off harder before the next probe.
            dep.cooldown = min(dep.cooldown * 2.0, self.max_cooldown_s)
            self._open(dep, now, dep.cooldown)
        elif status == "cooling" and dep.breaker_open:
            # A forced call to a cooling deployment failed: keep it cooling.
            dep.open_until = max(dep.open_until, now + dep.cooldown)
        elif len(failures) >= self.failure_threshold:
            self._open(dep, now, dep.cooldown)

        retry_after = getattr(error, "retry_after", None)
        if isinstance(retry_after, int | float) and 0 < retry_after < float("inf"):
            # The provider said when to come back: cool for that long even below
            # the threshold (ends in "healthy" unless the breaker itself opened).
            # Capped at max_cooldown_s: a hostile "retry-after: 1e300" must not
            # retire the deployment for good.
            dep.open_until = max(dep.open_until, now + min(float(retry_after), self.max_cooldown_s))
        return True

    def _open(self, dep: _Deployment, now: float, cooldown: float) -> None:
        dep.breaker_open = True
        dep.open_until = max(dep.open_until, now + cooldown)
        dep.trial_started = None

    def state(self, key: str) -> HealthState:
        """The current state of ``key`` (a never-seen key is healthy). Claims nothing."""
        now = self._clock.now()
        dep = self._deps.get(key)
        if dep is None:
            return HealthState("healthy", 0, 0.0, 0, 0)
        horizon = now - self.window_s
        recent = sum(1 for t in dep.failures if t >= horizon)
        return HealthState(
            state=self._status(dep, now),
            consecutive_failures=recent,
            cooldown_remaining_s=max(0.0, dep.open_until - now),
            total_failures=dep.total_failures,
            total_successes=dep.total_successes,
        )

    def snapshot(self) -> dict[str, HealthState]:
        return {key: self.state(key) for key in self._deps}

    def reset(self, key: str | None = None) -> None:
        """Forget one deployment's history, or all of them."""
        if key is None:
            self._deps.clear()
        else:
            self._deps.pop(key, None)
