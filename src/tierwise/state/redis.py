"""Shared state on Redis: limits, budgets, circuits, cache and sticky routes across processes.

``RedisState`` is the object handed to every ``Orchestrator`` that should share
limits (``Orchestrator(..., state=RedisState(url))``, or ``[state] backend =
"redis"`` in config). It makes the Redis implementations of the
``tierwise.state`` protocols: a ``RedisLimiter`` per deployment, one
``RedisBudgetStore``, a ``RedisHealth`` tracker, a ``RedisCache`` (the response
cache, coalescing identical in-flight calls across processes) and a
``RedisSticky`` store (the route of each sticky conversation). redis-py's asyncio client
(the ``redis`` extra) is imported when a ``RedisState`` is made, never by
``import tierwise``; it needs the asyncio event loop.

Failure modes, per concern (``on_error``): ``limits`` fails *open* by default
and ``health`` always does (local per-process limits and circuits, a warning log, the
``degraded`` flag): a Redis outage should not take the application down with
it, and providers still enforce their own limits. ``budget`` fails *closed* by
default (``StateUnavailable``): overspending is the failure a hard budget
exists to prevent. ``cache`` and ``sticky`` fail *open* by default (this
process's own cache, its routers' own memory): both only save money and keep a
conversation's prompt cache warm, and neither is worth refusing a request over.
No call waits on Redis longer than ``timeout_s``; after a
failure Redis is left alone for ``retry_s``, then tried again, and the first
success resumes the shared state. See docs/many-processes.md.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

from .._clock import SYSTEM_CLOCK, Clock
from ._redis_budget import RedisBudgetStore
from ._redis_cache import RedisCache
from ._redis_conn import Conn, RedisDown
from ._redis_health import RedisHealth
from ._redis_limiter import RedisLimiter, RedisPermit
from ._redis_sticky import RedisSticky

if TYPE_CHECKING:
    from ..execution.budget import BudgetLedger
    from ..execution.cache import ResponseCache
    from ..execution.deployment import Deployment
    from ..execution.health import HealthTracker

__all__ = [
    "RedisBudgetStore",
    "RedisCache",
    "RedisHealth",
    "RedisLimiter",
    "RedisPermit",
    "RedisState",
    "RedisSticky",
]

OnError = Literal["open", "closed"]
_CONCERNS = ("limits", "budget", "health", "cache", "sticky")
_DEFAULTS: dict[str, OnError] = {
    "limits": "open",
    "budget": "closed",
    "health": "open",
    "cache": "open",
    "sticky": "open",
}


class RedisState:
    """One Redis connection pool and the shared state objects made on it.

    ``url`` (or, when ``None``, the environment variable ``url_env``) locates
    Redis; it is never shown in reprs or errors (it may carry a password).
    ``key_prefix`` namespaces every key, so several applications share one Redis.
    ``timeout_s`` bounds each Redis call, ``lease_s`` is how long a crashed
    process's slots and reservations keep counting, ``refresh_s`` how often the
    local views (circuits, spend) are refreshed, ``sticky_ttl_s`` how long a
    sticky conversation left alone keeps its route.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        url_env: str = "REDIS_URL",
        key_prefix: str = "tierwise:",
        timeout_s: float = 0.25,
        retry_s: float = 1.0,
        lease_s: float = 30.0,
        refresh_s: float = 0.5,
        sticky_ttl_s: float = 86400.0,
        on_error: Mapping[str, OnError] | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        from ..errors import ConfigError

        for label, value in (
            ("timeout_s", timeout_s),
            ("retry_s", retry_s),
            ("lease_s", lease_s),
            ("sticky_ttl_s", sticky_ttl_s),
        ):
            if not value > 0:
                raise ConfigError(f"must be > 0, got {value!r}", field=f"state.{label}")
        modes = dict(_DEFAULTS)
        for concern, mode in (on_error or {}).items():
            if concern not in _CONCERNS:
                raise ConfigError(
                    f"unknown concern {concern!r}; one of {', '.join(_CONCERNS)}", field="state.on_error"
                )
            if mode not in ("open", "closed") or (concern == "health" and mode != "open"):
                raise ConfigError(
                    f"must be 'open' or 'closed', got {mode!r}", field=f"state.on_error.{concern}"
                )
            modes[concern] = mode
        self.on_error: dict[str, OnError] = modes
        if url is None:
            url = os.environ.get(url_env)
            if not url:
                raise ConfigError(
                    f"environment variable {url_env} (the Redis URL) is not set", field="state.url_env"
                )
        try:
            import redis.asyncio as aredis
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff
        except ImportError:
            raise ConfigError(
                "the redis backend needs redis-py: pip install 'tierwise[redis]'", field="state.backend"
            ) from None
        client = aredis.Redis.from_url(
            url,
            # No per-read/per-send timeout in redis-py: the link bounds every whole
            # exchange with ``timeout_s`` itself, and redis-py's own would wrap each
            # send in a task (``wait_for``) and each reply in a timeout (a third of
            # the link's client CPU, benchmarks/shared_state.py).
            socket_timeout=None,
            socket_connect_timeout=timeout_s,
            retry=Retry(NoBackoff(), 0),
            retry_on_timeout=False,
        )
        self.key_prefix = key_prefix
        self._conn = Conn(
            client,
            prefix=key_prefix,
            clock=clock,
            timeout_s=timeout_s,
            retry_s=retry_s,
            lease_s=lease_s,
            refresh_s=refresh_s,
        )
        self.sticky_ttl_s = sticky_ttl_s
        self._budget: RedisBudgetStore | None = None
        self._health: list[RedisHealth] = []
        self._caches: list[RedisCache] = []
        self._sticky: RedisSticky | None = None
        self._bound = 0

    # -- the shared objects -----------------------------------------------------------

    def limiter(
        self,
        name: str,
        *,
        rpm: float | None = None,
        tpm: float | None = None,
        max_concurrency: int | None = None,
    ) -> RedisLimiter:
        """The shared limiter of deployment ``name`` (same name, same limits everywhere)."""
        return RedisLimiter(
            self._conn,
            name,
            rpm=rpm,
            tpm=tpm,
            max_concurrency=max_concurrency,
            fail_open=self.on_error["limits"] == "open",
        )

    def budget_store(self) -> RedisBudgetStore:
        """The shared budget store (one per state)."""
        if self._budget is None:
            self._budget = RedisBudgetStore(self._conn, fail_open=self.on_error["budget"] == "open")
            self._conn.tickers.append(self._budget.refresh)
        return self._budget

    def health_tracker(
        self,
        *,
        failure_threshold: int = 5,
        cooldown_s: float = 30.0,
        window_s: float = 60.0,
        max_cooldown_s: float = 300.0,
    ) -> RedisHealth:
        """A circuit tracker whose state is shared with every process on this Redis."""
        tracker = RedisHealth(
            self._conn,
            failure_threshold=failure_threshold,
            cooldown_s=cooldown_s,
            window_s=window_s,
            max_cooldown_s=max_cooldown_s,
        )
        self._health.append(tracker)
        self._conn.tickers.append(tracker.refresh)
        return tracker

    def cache(
        self,
        *,
        ttl_s: float | None = 3600.0,
        max_entries: int = 10_000,
        max_entry_bytes: int = 1_000_000,
        lock_s: float = 30.0,
    ) -> RedisCache:
        """A response cache shared by every process on this Redis, coalescing
        identical in-flight calls across them (``lock_s``: how long the others
        wait for the one calling). Answers over ``max_entry_bytes`` of JSON are
        not shared; ``max_entries`` bounds the entries in Redis."""
        cache = RedisCache(
            self._conn,
            ttl_s=ttl_s,
            max_entries=max_entries,
            max_entry_bytes=max_entry_bytes,
            lock_s=lock_s,
            fail_open=self.on_error["cache"] == "open",
        )
        self._caches.append(cache)
        return cache

    def bind_cache(self, cache: ResponseCache | None) -> ResponseCache | None:
        """An orchestrator's cache, shared: a ``MemoryCache`` becomes a ``RedisCache``
        with its TTL and entry bound (a SQLite cache, or one of the application's
        own, is kept as given: it was chosen for its own reasons)."""
        from ..execution.cache import MemoryCache

        if type(cache) is MemoryCache:
            return self.cache(ttl_s=cache.ttl_s, max_entries=cache.max_entries)
        return cache

    def sticky_store(self) -> RedisSticky:
        """Where sticky routers book their conversations (one per state)."""
        if self._sticky is None:
            self._sticky = RedisSticky(
                self._conn, ttl_s=self.sticky_ttl_s, fail_open=self.on_error["sticky"] == "open"
            )
        return self._sticky

    def bind(
        self,
        deployments: Mapping[str, Deployment],
        health: HealthTracker | None,
        budget: BudgetLedger | None,
    ) -> tuple[HealthTracker, BudgetLedger | None]:
        """Move an orchestrator's state here: each deployment's in-memory
        ``RateLimiter`` becomes a shared one with the same limits, the health
        tracker a shared one with the same settings, the budget ledger's store
        this one. Called by ``Orchestrator(..., state=...)``, which also takes
        ``bind_cache`` and ``sticky_store``."""
        from ..execution.health import HealthTracker as _Tracker
        from ..execution.limits import RateLimiter

        for alias, dep in deployments.items():
            lim = dep.limiter
            if isinstance(lim, RateLimiter):
                dep.limiter = self.limiter(
                    alias, rpm=lim.rpm, tpm=lim.tpm, max_concurrency=lim.max_concurrency
                )
        if health is None or (type(health) is _Tracker):
            h = health or _Tracker()
            health = self.health_tracker(
                failure_threshold=h.failure_threshold,
                cooldown_s=h.cooldown_s,
                window_s=h.window_s,
                max_cooldown_s=h.max_cooldown_s,
            )
        if budget is not None:
            budget = budget.with_store(self.budget_store())
        self._bound += 1
        return health, budget

    # -- lifecycle and inspection -------------------------------------------------------

    @property
    def round_trips(self) -> int:
        """Redis round trips made so far (what benchmarks/shared_state.py counts)."""
        return self._conn.round_trips

    @property
    def commands(self) -> int:
        """Redis commands (scripts, lease refreshes) sent so far, over ``round_trips`` trips."""
        return self._conn.commands

    def stats(self) -> dict[str, Any]:
        """Counters for dashboards and ``orch.health()``: round trips, commands,
        link errors, requests served by a fail-open fallback and refused by a
        fail-closed one (per concern), the concerns degraded right now, and the
        shared caches' coalescing counters (``peer_hits``: answers another
        process's call produced while this one waited; ``wait_timeouts``;
        ``too_big``: answers over ``max_entry_bytes``, not shared)."""
        conn = self._conn
        return {
            "backend": "redis",
            "shared": self.shared,
            "degraded": sorted(conn.degraded),
            "round_trips": conn.round_trips,
            "commands": conn.commands,
            "errors": conn.errors,
            "fallbacks": dict(conn.fallbacks),
            "refused": dict(conn.refused),
            "cache": {
                "peer_hits": sum(c.peer_hits for c in self._caches),
                "wait_timeouts": sum(c.wait_timeouts for c in self._caches),
                "too_big": sum(c.too_big for c in self._caches),
            },
        }

    @property
    def shared(self) -> bool:
        """Whether the shared state is in use right now: Redis answered last time and
        no concern is on its fallback."""
        return not self._conn.degraded and not self._conn.down()

    @property
    def degraded(self) -> frozenset[str]:
        """The concerns running on their ``on_error`` fallback right now (empty: all shared)."""
        return frozenset(self._conn.degraded)

    async def refresh(self) -> bool:
        """Bring the local views (circuits, spend) up to date; False if Redis did not answer."""
        ok = True
        for tracker in self._health:
            ok = await tracker.refresh() and ok
        if self._budget is not None:
            try:
                await self._budget.refresh()
            except RedisDown:
                ok = False
        return ok

    async def flush(self) -> bool:
        """Send queued writes now; False if Redis did not answer (they stay queued)."""
        try:
            await self._conn.flush()
        except RedisDown:
            return False
        return True

    async def ping(self) -> bool:
        """Whether Redis answers within ``timeout_s``."""
        try:
            await self._conn.call(
                "status", "BUDGET_READ", (self._conn.owners_key,), (self._conn.clock.wall(),)
            )
        except RedisDown:
            return False
        return True

    async def detach(self) -> None:
        """An orchestrator bound to this state is closing: flush its writes, and
        close the connection with the last one."""
        self._bound -= 1
        if self._bound <= 0:
            await self.aclose()
        else:
            await self.flush()

    async def aclose(self) -> None:
        """Flush queued writes (best effort), drop this process's lease, disconnect."""
        await self._conn.aclose()

    def __repr__(self) -> str:
        return f"RedisState(key_prefix={self.key_prefix!r}, on_error={self.on_error!r})"
