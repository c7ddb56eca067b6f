"""Sticky conversations shared through Redis: one route per conversation, everywhere.

A ``Router`` with ``sticky = true`` keeps a conversation on the route its first
turn took, which keeps the provider's prompt cache warm (cached input is billed
at a fraction of the price, and the cache lives at the provider, per model, not
in our process) and the voice consistent. Behind a load balancer the turns of a
conversation land on different processes; each would classify the first turn it
sees on its own and could pick another model. This store makes the first
decision the only one: ``claim`` books a label with ``SET NX`` semantics and
returns the winner, so two processes routing the same new conversation at once
still agree. Each read renews the key's TTL (``ttl_s``), so a conversation in
use never moves, and one left alone is forgotten.

The router keeps its own LRU as a cache of this store: a label never changes
once booked, so a process that has seen a conversation asks Redis nothing for its
later turns.

When Redis is unavailable the ``sticky`` fail mode applies: ``open`` (the
default) carries on with the router's own LRU (per process, as with the memory
backend); ``closed`` raises ``StateUnavailable``.
"""

from __future__ import annotations

import json

from ._redis_conn import Conn, RedisDown

__all__ = ["RedisSticky"]


class RedisSticky:
    """``tierwise.state.StickyStore`` on Redis (see module docstring)."""

    def __init__(self, conn: Conn, *, ttl_s: float = 86400.0, fail_open: bool = True) -> None:
        if not ttl_s > 0:
            raise ValueError(f"ttl_s must be > 0, got {ttl_s!r}")
        self._conn = conn
        self.ttl_s = ttl_s
        self.fail_open = fail_open
        self._ttl = max(1, int(ttl_s))

    def _key(self, router: str, conversation: str | int) -> str:
        # JSON: the conversation id 5 and "5" stay two conversations.
        return f"{self._conn.prefix}s:{router}:{json.dumps(conversation)}"

    def _outage(self) -> None:
        self._conn.fell_back("sticky", fail_open=self.fail_open)
        if not self.fail_open:
            from . import StateUnavailable

            raise StateUnavailable("sticky conversations: redis unavailable (on_error.sticky = 'closed')")

    async def get(self, router: str, conversation: str | int) -> str | None:
        """The label ``conversation`` is booked on in ``router``, if any."""
        try:
            label = await self._conn.call(
                "sticky", "STICKY_GET", (self._key(router, conversation),), (self._ttl,)
            )
        except RedisDown:
            self._outage()
            return None
        return _text(label)

    async def claim(self, router: str, conversation: str | int, label: str) -> str:
        """Book ``label`` for ``conversation`` unless another process booked one
        first; the booked label either way (``label`` itself during an outage)."""
        try:
            booked = await self._conn.call(
                "sticky", "STICKY_CLAIM", (self._key(router, conversation),), (label, self._ttl)
            )
        except RedisDown:
            self._outage()
            return label
        return _text(booked) or label

    def __repr__(self) -> str:
        return f"RedisSticky(ttl_s={self.ttl_s!r}, fail_open={self.fail_open})"


def _text(value: object) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)
