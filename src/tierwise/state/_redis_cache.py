"""The shared response cache: answers in Redis, identical in-flight calls coalesced.

Why both: the cache answers a request another process already paid for, and the
lock answers the burst the cache cannot — identical requests arriving in several
processes before the first answer exists. Without it, four workers behind a load
balancer each pay for the same answer.

* **Entries**: one string per request key, holding ``{"exp": wall deadline,
  "r": the response}`` as JSON through ``tierwise._serde`` (never pickle: a
  value read from a shared server must not be able to run code). Redis expires
  the key itself (``PX``), so every key is volatile and a ``maxmemory-policy`` of
  ``volatile-lru`` can evict them; the deadline in the body is checked against
  the caller's clock too, so TTLs follow an injected clock in tests. An index
  zset bounds the number of entries (``max_entries``, oldest expiry first) and an
  answer larger than ``max_entry_bytes`` is not shared at all.
* **Coalescing**: a miss ``claim``s the key: ``SET NX PX lock_s``. The winner
  calls the provider, and its ``set`` stores the answer and frees the lock in one
  script. The others poll (5 ms doubling to 100 ms, on the injected clock) until
  the answer is there, the holder gave up, or ``lock_s`` (or the request's
  deadline) has passed; then they call themselves. A holder cancelled before it
  had an answer frees the lock, and one waiter takes over; a holder whose call
  failed (or whose answer is too big to share) marks it given up, and the
  waiters call at once rather than in turn.

When Redis is unavailable the ``cache`` fail mode applies: ``open`` (the
default) uses this process's own ``MemoryCache`` and coalesces only within the
process; ``closed`` raises ``StateUnavailable`` from ``get``/``claim``. A write
that cannot be sent is dropped, never raised: the answer was already paid for.
"""

from __future__ import annotations

import json
import logging
import math
import uuid
from typing import Any

from .._serde import response_from_dict, response_to_dict
from ..execution.cache import MemoryCache, _as_hit
from ..types import Response
from ._redis_conn import Conn, RedisDown

__all__ = ["RedisCache"]

_log = logging.getLogger("tierwise.state")
_POLL_MIN = 0.005
_POLL_MAX = 0.1
#: Redis needs an expiry on every key (maxmemory-friendly): "never expire" means a week.
NO_TTL_S = 7 * 86400.0


class RedisCache:
    """``tierwise.execution.cache.CoalescingCache`` on Redis (see module docstring)."""

    def __init__(
        self,
        conn: Conn,
        *,
        ttl_s: float | None = 3600.0,
        max_entries: int = 10_000,
        max_entry_bytes: int = 1_000_000,
        lock_s: float = 30.0,
        fail_open: bool = True,
    ) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be >= 1, got {max_entries!r}")
        if max_entry_bytes < 1:
            raise ValueError(f"max_entry_bytes must be >= 1, got {max_entry_bytes!r}")
        if not lock_s > 0:
            raise ValueError(f"lock_s must be > 0, got {lock_s!r}")
        self._conn = conn
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self.max_entry_bytes = max_entry_bytes
        self.lock_s = lock_s
        self.fail_open = fail_open
        #: This process's cache while Redis is away (``on_error.cache = "open"``).
        self.local = MemoryCache(max_entries=max_entries, ttl_s=ttl_s, clock=conn.clock)
        self._p = conn.prefix + "c:"
        self._lp = conn.prefix + "cl:"
        self._index = conn.prefix + "cidx"
        #: Locks this process holds: request key -> token.
        self._held: dict[str, str] = {}
        #: Answers another process's call produced while this one waited for it.
        self.peer_hits = 0
        #: Waits that ran out (``lock_s`` or the deadline) before an answer came.
        self.wait_timeouts = 0
        #: Answers not shared because they were larger than ``max_entry_bytes``.
        self.too_big = 0

    # -- failure ------------------------------------------------------------------

    def _outage(self) -> None:
        """Redis did not answer: count it, and refuse when failing closed."""
        self._conn.fell_back("cache", fail_open=self.fail_open)
        if not self.fail_open:
            from . import StateUnavailable

            raise StateUnavailable("response cache: redis unavailable (on_error.cache = 'closed')")

    def _decode(self, body: Any) -> Response | None:
        """A stored body as a hit, or ``None`` when expired on our clock or unreadable
        (written by an incompatible version, or not by tierwise)."""
        try:
            data = json.loads(body)
            if float(data["exp"]) <= self._conn.clock.wall():
                return None
            return _as_hit(response_from_dict(data["r"]))
        except (ValueError, KeyError, TypeError, AttributeError):
            return None

    # -- the ResponseCache protocol ---------------------------------------------------

    async def get(self, key: str) -> Response | None:
        conn = self._conn
        try:
            body = await conn.call("cache", "CACHE_GET", (self._p + key,), ())
        except RedisDown:
            self._outage()
            return await self.local.get(key)
        return None if body is None else self._decode(body)

    async def set(self, key: str, response: Response, ttl_s: float | None = None) -> None:
        """Store ``response`` (a queued write: it rides on the next round trip) and
        free this process's lock on ``key``, if it holds one."""
        token = self._held.pop(key, "")
        ttl = self.ttl_s if ttl_s is None else ttl_s
        if ttl is None or ttl == math.inf:
            ttl = NO_TTL_S
        conn = self._conn
        if ttl <= 0:
            if token:
                conn.write("CACHE_RELEASE", (self._lp + key,), (token, "gave_up"))
            return
        if conn.down():
            if self.fail_open:
                await self.local.set(key, response, ttl)
            return
        exp = conn.clock.wall() + ttl
        # ensure_ascii (the default): lone surrogates in model output must not break the encode.
        body = json.dumps({"exp": exp, "r": response_to_dict(response)}, separators=(",", ":"))
        if len(body) > self.max_entry_bytes:
            self.too_big += 1
            _log.debug(
                "cache: answer of %d bytes not shared (max_entry_bytes %d)", len(body), self.max_entry_bytes
            )
            if token:
                conn.write("CACHE_RELEASE", (self._lp + key,), (token, "gave_up"))
            return
        conn.write(
            "CACHE_SET",
            (self._p + key, self._lp + key, self._index),
            (body, max(1, int(ttl * 1000)), token, self.max_entries, conn.clock.wall(), key, self._p),
        )

    async def aclose(self) -> None:
        """Forget the local fallback; the connection belongs to the ``RedisState``."""
        await self.local.aclose()

    # -- coalescing across processes ------------------------------------------------------

    async def claim(self, key: str, *, wait_s: float | None = None) -> Response | None:
        """Wait for another process's call with the same ``key``, or lead one.

        Returns that process's answer (a hit), or ``None``: call the provider now.
        With ``None`` this process may hold the key's lock, which ``set`` (the
        answer) or ``abandon`` (no answer) gives back. Waits at most ``lock_s``
        and at most ``wait_s`` seconds (the request's deadline)."""
        conn = self._conn
        clock = conn.clock
        token = uuid.uuid4().hex
        lock_key = self._lp + key
        keys = (self._p + key, lock_key)
        args = (token, max(1, int(self.lock_s * 1000)))
        start = clock.now()
        limit = self.lock_s if wait_s is None else max(0.0, min(self.lock_s, wait_s))
        poll = _POLL_MIN
        while True:
            try:
                reply = await conn.call("cache", "CACHE_CLAIM", keys, args)
            except RedisDown:
                self._outage()
                return None
            except BaseException:
                # Cancelled with the script possibly run: free the lock it may have
                # taken (a no-op when another token holds it).
                conn.write("CACHE_RELEASE", (lock_key,), (token, "free"))
                raise
            code = int(reply[0])
            if code == 1:
                hit = self._decode(reply[1])
                if hit is not None:
                    self.peer_hits += 1
                return hit
            if code == 2:
                self._held[key] = token
                return None
            if code == 3:
                return None
            waited = clock.now() - start
            if waited >= limit:
                self.wait_timeouts += 1
                return None
            await clock.sleep(min(poll, limit - waited))
            poll = min(poll * 2.0, _POLL_MAX)

    def abandon(self, key: str, *, failed: bool) -> None:
        """This process's call for ``key`` ended without an answer to share. ``failed``
        (an error): the waiters call themselves; otherwise (cancelled) one of them
        takes over. Synchronous: it runs while a cancellation unwinds."""
        token = self._held.pop(key, None)
        if token is not None:
            self._conn.write("CACHE_RELEASE", (self._lp + key,), (token, "gave_up" if failed else "free"))

    async def asnapshot(self) -> dict[str, Any]:
        """The shared cache's size and settings (one round trip), for ``tierwise status``."""
        conn = self._conn
        entries = await conn.call("cache", "CACHE_SIZE", (self._index,), (conn.clock.wall(),))
        return {
            "entries": int(entries),
            "max_entries": self.max_entries,
            "ttl_s": self.ttl_s,
            "max_entry_bytes": self.max_entry_bytes,
            "lock_s": self.lock_s,
        }

    def __repr__(self) -> str:
        return f"RedisCache(ttl_s={self.ttl_s!r}, max_entries={self.max_entries}, lock_s={self.lock_s})"
