"""Where the executor's state lives: the seam for sharing it across processes.

Four kinds of state decide what a request may do: the rate limiter of each
deployment (requests, tokens and concurrency per window), the health of each
deployment (circuit state, cooldowns), the budget ledger (spent and reserved
dollars per scope and period) and the response cache (with coalescing of
identical in-flight calls); a fifth steers it: the route each sticky
conversation is booked on (``StickyStore``). Each is a small protocol
here; the in-memory classes are the default, and a shared backend (Redis) is one
module implementing the same protocols. Nothing here is process-global: a backend
object is handed to the orchestrators that should share it.

Why the methods are shaped as they are:

* ``Limiter.acquire`` and ``BudgetStore.reserve`` are async and atomic: a shared
  backend checks and books in one server-side step, never read-then-write.
* ``Permit.arelease`` and the ``BudgetStore`` mutations are async, so a shared
  backend can write through; the in-memory ones never suspend.
* ``HealthStore`` and the ``BudgetStore`` reads are synchronous: the chain order
  and dashboards are decided from a local view, which a shared backend keeps
  current (pub/sub, a refresher) instead of paying a round trip per request.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from ..errors import TierwiseError

if TYPE_CHECKING:
    from ..execution.cache import ResponseCache
    from ..execution.health import HealthState
    from ..types import RateLimitInfo

__all__ = [
    "BudgetStore",
    "HealthStore",
    "Limiter",
    "MemoryBudgetStore",
    "Permit",
    "ResponseCache",
    "StateUnavailable",
    "StickyStore",
]


class StateUnavailable(TierwiseError):
    """The shared state backend (Redis) did not answer in time and this concern is
    configured to fail closed (``[state.on_error]``): the request was not sent."""


@runtime_checkable
class Permit(Protocol):
    """One admitted call's hold on a limiter: released exactly once, with the
    tokens it really used (``None``: the estimate stands, or nothing was sent)."""

    async def arelease(self, used_tokens: int | None = None) -> None: ...


@runtime_checkable
class Limiter(Protocol):
    """Requests, tokens and concurrency of one deployment."""

    async def acquire(self, tokens: int = 0, *, timeout: float | None = None) -> Permit:  # noqa: ASYNC109
        """Wait for room for ``tokens`` (at most ``timeout`` seconds: then
        ``QueueWaitTimeout``); ``LimiterClosed`` once closed."""
        ...

    def observe(self, info: RateLimitInfo) -> None:
        """Tighten the view with the provider's own rate-limit headers."""
        ...

    def penalize(self, retry_after: float, *, cap: float | None = None) -> None:
        """The provider said to wait ``retry_after`` seconds: hold new calls back."""
        ...

    def close(self, reason: str = ...) -> None:
        """Fail queued and future ``acquire`` calls at once (the process is draining)."""
        ...


@runtime_checkable
class HealthStore(Protocol):
    """Circuit state per deployment key (the executor's ``HealthTracker``)."""

    def ready(self, key: str) -> bool: ...

    def available(self, key: str) -> bool: ...

    def record_success(self, key: str) -> None: ...

    def record_failure(self, key: str, error: BaseException) -> bool: ...

    def state(self, key: str) -> HealthState: ...


@runtime_checkable
class BudgetStore(Protocol):
    """Spent and reserved dollars, keyed by ``"<period id>|<scope>"`` strings.

    ``reserve`` is the budget's whole check-and-book, atomic in the store: for
    each ``(key, limit)`` of ``checks``, ``used = spent + reserved``; when every
    check passes (``used + amount <= limit`` and ``used < limit``) ``amount`` is
    added to the reservations of ``keys`` and ``[]`` returned; otherwise nothing
    changes and the failing ``(index, used)`` pairs are returned.
    """

    async def reserve(
        self, checks: Sequence[tuple[str, float]], keys: Sequence[str], amount: float
    ) -> list[tuple[int, float]]: ...

    async def settle(
        self, keys: Sequence[str], amount: float, record_keys: Sequence[str], cost: float
    ) -> None:
        """Remove a reservation of ``amount`` from ``keys`` and add ``cost`` as spent."""
        ...

    async def release(self, keys: Sequence[str], amount: float) -> None:
        """Remove a reservation of ``amount`` from ``keys``: nothing was spent."""
        ...

    async def add(self, keys: Sequence[str], amount: float) -> None:
        """Add ``amount`` as spent to every key (a cost that was not reserved)."""
        ...

    def get(self, key: str) -> float:
        """Spent under ``key`` (0.0 if never seen), from the local view."""
        ...

    def reserved(self, key: str) -> float:
        """Outstanding reservations under ``key``, from the local view."""
        ...

    def discard(self, keys: Iterable[str]) -> None:
        """The ledger no longer needs these keys (their period is over); a shared
        store may ignore this and let its own expiry remove them."""
        ...


@runtime_checkable
class StickyStore(Protocol):
    """The route label each sticky conversation is booked on, per router name.

    Async because a shared store asks its server; the ``Router``'s own LRU is the
    in-memory implementation (and the shared store's local cache), so without a
    shared backend there is no store object at all. A booked label never changes:
    ``claim`` books only when none is booked yet and returns the one that is.
    """

    async def get(self, router: str, conversation: str | int) -> str | None: ...

    async def claim(self, router: str, conversation: str | int, label: str) -> str: ...


def __getattr__(name: str) -> Any:
    # Loaded on first use: the budget ledger imports this module, and that must not
    # pull in the cache's modules for processes without a cache.
    if name == "MemoryBudgetStore":
        from .memory import MemoryBudgetStore

        return MemoryBudgetStore
    if name == "ResponseCache":
        from ..execution.cache import ResponseCache

        return ResponseCache
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
