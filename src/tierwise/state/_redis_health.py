"""Shared circuit state: a ``HealthTracker`` whose view is kept in step with Redis.

The executor asks ``ready``/``available`` synchronously for every chain, so they
answer from the local tracker. What makes it shared: every counted failure is
also sent to Redis (the same state machine, ``HEALTH_FAIL``), whose answer is
applied locally; a success is sent only when the deployment had failures (a
healthy success path costs no round trip); and ``refresh()`` (run by
``RedisState`` every ``refresh_s``, and on entering the orchestrator) copies the
circuits other processes opened into the local view, so they route around a
failing deployment without calling it. The half-open trial is claimed per
process (each process may send one probe).

When Redis is unavailable the local tracker simply carries on (``health``
fails open: per-process circuits, as with the memory backend).
"""

from __future__ import annotations

from collections import deque

from ..execution.health import HealthTracker, _Deployment
from ._redis_conn import Conn, RedisDown

__all__ = ["RedisHealth"]


class RedisHealth(HealthTracker):
    """``tierwise.state.HealthStore`` shared through Redis (see module docstring)."""

    __slots__ = ("_conn",)

    def __init__(
        self,
        conn: Conn,
        *,
        failure_threshold: int = 5,
        cooldown_s: float = 30.0,
        window_s: float = 60.0,
        max_cooldown_s: float = 300.0,
    ) -> None:
        super().__init__(
            failure_threshold=failure_threshold,
            cooldown_s=cooldown_s,
            window_s=window_s,
            max_cooldown_s=max_cooldown_s,
            clock=conn.clock,
        )
        self._conn = conn

    def _keys(self, key: str) -> tuple[str, str, str]:
        p = self._conn.prefix
        return (f"{p}h:{key}", f"{p}hf:{key}", f"{p}hkeys")

    def record_success(self, key: str) -> None:
        dep = self._deps.get(key)
        dirty = dep is not None and (dep.failures or dep.breaker_open or dep.open_until)
        super().record_success(key)
        if dirty:
            self._conn.write("HEALTH_SUCCESS", self._keys(key)[:2], ())

    def record_failure(self, key: str, error: BaseException) -> bool:
        counted = super().record_failure(key, error)
        if counted:
            retry_after = getattr(error, "retry_after", None)
            ra = (
                float(retry_after)
                if isinstance(retry_after, int | float) and 0 < retry_after < 1e300
                else 0.0
            )
            self._conn.write(
                "HEALTH_FAIL",
                self._keys(key),
                (
                    self._conn.clock.wall(),
                    self.window_s,
                    self.failure_threshold,
                    self.cooldown_s,
                    self.max_cooldown_s,
                    ra,
                    key,
                ),
            )
        return counted

    async def refresh(self) -> bool:
        """Copy the shared circuits into the local view (one round trip); False
        when Redis did not answer (the local view stands)."""
        conn = self._conn
        try:
            rows = await conn.call(
                "health",
                "HEALTH_READ",
                (f"{conn.prefix}hkeys",),
                (conn.prefix, conn.clock.wall(), self.window_s),
            )
        except RedisDown:
            conn.fell_back("health", fail_open=True)
            return False
        now, wall = conn.clock.now(), conn.clock.wall()
        seen: set[str] = set()
        for i in range(0, len(rows), 5):
            name = rows[i].decode() if isinstance(rows[i], bytes) else str(rows[i])
            seen.add(name)
            open_until = float(rows[i + 1])
            dep = self._deps.get(name)
            if dep is None:
                dep = self._deps[name] = _Deployment(self.cooldown_s)
            dep.open_until = now + (open_until - wall) if open_until > wall else 0.0
            breaker = rows[i + 2] in (b"1", "1")
            if breaker and not dep.breaker_open:
                dep.trial_started = None
            dep.breaker_open = breaker
            dep.cooldown = float(rows[i + 3])
            shared = int(rows[i + 4])
            if shared > len(dep.failures):
                # Other processes' failures, placed now (their exact times stay in Redis).
                dep.failures = deque([now] * min(shared, self.failure_threshold))
        for name, dep in self._deps.items():
            if name not in seen and (dep.breaker_open or dep.open_until > now):
                # Another process's success closed it.
                dep.failures.clear()
                dep.open_until = 0.0
                dep.breaker_open = False
                dep.cooldown = self.cooldown_s
                dep.trial_started = None
        return True
