"""The shared budget store: the reserve → settle ledger in Redis hashes.

One hash per ``"<period>|<scope>"`` bucket: ``spent`` plus each live process's
reserved dollars (``r:<owner>``) and count (``n:<owner>``). ``reserve`` is one
script (check every limit against spent + live reservations, book all or
nothing), so any number of processes never overshoot a hard limit; a crashed
process's reservations stop counting when its lease ends. Day buckets expire
three days after their last write, month buckets after 63 days.

``settle``/``release``/``add`` are queued writes (one pipeline per loop turn).
``get``/``reserved`` answer from a local view that script replies and the
refresher keep current.

A reservation whose reply is lost is not left booked. The process keeps its own
ledger of what it holds in Redis (``_mine``: per bucket, dollars and count of
the reservations it saw booked and has not given back). A reply that comes after
its caller stopped waiting (timeout, cancel) is read anyway and, if it booked,
released at once; an exchange that failed with replies unread (so a reservation
may have been booked unseen, and a re-sent release applied twice) is followed by
``BUDGET_SYNC``, which sets this owner's fields to that ledger.

When Redis is unavailable the ``budget`` fail mode applies: ``closed`` (the
default: money) raises ``StateUnavailable``; ``open`` books in a local
in-memory store for the outage (per process: the limit then holds per process).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from typing import Any

from ._redis_conn import Conn, Packed, RedisDown
from .memory import MemoryBudgetStore

__all__ = ["PendingReserve", "RedisBudgetStore"]

_DAY_TTL = 3 * 86400
_MONTH_TTL = 63 * 86400


def _ttl(key: str) -> int:
    if key.startswith("day:"):
        return _DAY_TTL
    if key.startswith("month:"):
        return _MONTH_TTL
    return 0


class PendingReserve:
    """A reservation sent by ``submit_reserve`` (its reply still to come)."""

    __slots__ = ("amount", "checks", "fut", "keys", "store")

    def __init__(
        self,
        checks: Sequence[tuple[str, float]],
        keys: Sequence[str],
        amount: float,
        store: RedisBudgetStore,
    ) -> None:
        self.checks = checks
        self.keys = keys
        self.amount = amount
        self.store = store
        self.fut: asyncio.Future[Any] | None = None

    def on_reply(self, reply: Any, delivered: bool) -> None:
        """The sender read this reservation's reply (see ``Conn.submit``)."""
        if isinstance(reply, Exception) or reply:
            return  # a script error or a refusal: nothing was booked
        if delivered:
            self.store._hold_mine(self.keys, self.amount, +1)
        else:  # booked, but the caller stopped waiting: nobody will settle it
            self.store._send_release(self.keys, self.amount)


class RedisBudgetStore:
    """``tierwise.state.BudgetStore`` on Redis (see module docstring)."""

    def __init__(self, conn: Conn, *, fail_open: bool = False) -> None:
        self._conn = conn
        self.fail_open = fail_open
        self.local = MemoryBudgetStore()
        self._p = conn.prefix + "b:"
        self._spent: dict[str, float] = {}
        self._held: dict[str, float] = {}
        # Reservations booked locally during an outage: released there, not in Redis.
        self._local_ids: set[tuple[tuple[str, ...], float]] = set()
        self._memo: dict[tuple[Any, ...], tuple[tuple[str, ...], Packed]] = {}
        # What this process holds in Redis per bucket: [dollars, count] (module docstring).
        self._mine: dict[str, list[float]] = {}
        conn.add_resync(self._sync_writes)

    def _k(self, keys: Iterable[str]) -> list[str]:
        p = self._p
        return [p + k for k in keys]

    async def reserve(
        self, checks: Sequence[tuple[str, float]], keys: Sequence[str], amount: float
    ) -> list[tuple[int, float]]:
        return await self.finish_reserve(self.submit_reserve(checks, keys, amount))

    def submit_reserve(
        self, checks: Sequence[tuple[str, float]], keys: Sequence[str], amount: float
    ) -> PendingReserve:
        """Send the reservation script now; ``finish_reserve`` takes its reply
        (so it can share a round trip with the rate limiter's first attempt)."""
        conn = self._conn
        memo = self._memo.get(("r", checks, keys))
        if memo is None:
            memo = self._remember(
                ("r", checks, keys),
                (conn.owners_key, *self._k(k for k, _ in checks), *self._k(keys)),
                (len(checks), *(float(limit) for _, limit in checks), *(_ttl(k) for k in keys)),
            )
        pending = PendingReserve(checks, keys, amount, self)
        pending.fut = conn.submit(
            "BUDGET_RESERVE",
            memo[0],
            (conn.clock.wall(), conn.owner, conn.lease_s, float(amount), memo[1]),
            pending.on_reply,
        )
        return pending

    def _remember(
        self, key: tuple[Any, ...], redis_keys: tuple[str, ...], tail: tuple[Any, ...]
    ) -> tuple[tuple[str, ...], Packed]:
        """The prefixed keys and packed fixed arguments of one budget plan's
        scripts (the ledger memoizes its plans, so they repeat call after call)."""
        if len(self._memo) >= 1024:
            self._memo.clear()
        memo = (redis_keys, Packed(tail))
        self._memo[key] = memo
        return memo

    async def finish_reserve(self, pending: PendingReserve) -> list[tuple[int, float]]:
        """The limits a submitted reservation would cross (empty: booked)."""
        conn = self._conn
        checks, keys, amount = pending.checks, pending.keys, pending.amount
        try:
            reply = await conn.result("budget", pending.fut)
        except asyncio.CancelledError:
            # Cancelled after the reply was in but before this task took it: booked
            # and counted in _mine, and nobody will settle it.
            self._give_back_taken(pending)
            raise
        except RedisDown:
            from . import StateUnavailable

            conn.fell_back("budget", fail_open=self.fail_open)
            if not self.fail_open:
                raise StateUnavailable("budget: redis unavailable (on_error.budget = 'closed')") from None
            failed = self.local.reserve_now(checks, keys, amount)
            if not failed:
                self._local_ids.add((tuple(keys), amount))
            return failed
        out = [(int(reply[i]), float(reply[i + 1])) for i in range(0, len(reply), 2)]
        if not out:
            for k in keys:
                self._held[k] = self._held.get(k, 0.0) + amount
        return out

    async def abandon_reserve(self, pending: PendingReserve) -> None:
        """Give back what a submitted reservation booked, once its reply is in.
        Not an attempt of its own: Redis being down here is nobody's fallback or
        refusal (the request failed on something else first)."""
        try:
            reply = await self._conn.result("budget", pending.fut)
        except asyncio.CancelledError:
            self._give_back_taken(pending)
            raise
        except RedisDown:
            return  # a late reply that booked is released by ``on_reply``
        if not reply:  # booked: release it (a refusal booked nothing)
            self._release_mine(pending.keys, pending.amount)

    def _give_back_taken(self, pending: PendingReserve) -> None:
        fut = pending.fut
        if fut is not None and fut.done() and not fut.cancelled():
            reply = fut.result()
            if not isinstance(reply, Exception) and not reply:
                self._release_mine(pending.keys, pending.amount)
        # Not done yet: the future was cancelled with the task, and ``on_reply``
        # releases whatever its late reply booked.

    def _release_mine(self, keys: Sequence[str], amount: float) -> None:
        self._hold_mine(keys, amount, -1)
        self._send_release(keys, amount)

    def _send_release(self, keys: Sequence[str], amount: float) -> None:
        self._conn.write("BUDGET_RELEASE", self._k(keys), (self._conn.owner, repr(float(amount))))

    def _hold_mine(self, keys: Iterable[str], amount: float, sign: int) -> None:
        mine = self._mine
        for k in keys:
            row = mine.get(k)
            if sign > 0:
                if row is None:
                    mine[k] = [amount, 1.0]
                else:
                    row[0] += amount
                    row[1] += 1.0
            elif row is not None:  # none: a bucket ``discard``ed since (an old period)
                row[1] -= 1.0
                if row[1] <= 0.0:
                    # The float sum snaps back to 0 with the count, as in the scripts; the
                    # row stays, so a sync clears what a lost reply may have booked there.
                    row[0] = row[1] = 0.0
                else:
                    row[0] -= amount

    def _sync_writes(self) -> list[tuple[str, Sequence[Any], Sequence[Any]]]:
        """``BUDGET_SYNC`` for every bucket this process has held in (``Conn.add_resync``)."""
        if not self._mine:
            return []
        names = list(self._mine)
        args: list[Any] = [self._conn.owner]
        for k in names:
            dollars, count = self._mine[k]
            args += [repr(dollars), int(count), _ttl(k)]
        return [("BUDGET_SYNC", self._k(names), args)]

    def _was_local(self, keys: Sequence[str], amount: float) -> bool:
        ident = (tuple(keys), amount)
        if ident in self._local_ids:
            self._local_ids.discard(ident)
            return True
        return False

    async def settle(
        self, keys: Sequence[str], amount: float, record_keys: Sequence[str], cost: float
    ) -> None:
        if keys and self._was_local(keys, amount):
            self.local.release_now(keys, amount)
            keys = ()
        self._unhold(keys, amount)
        self._hold_mine(keys, amount, -1)
        for k in record_keys:
            self._spent[k] = self._spent.get(k, 0.0) + cost
        keys, record_keys = tuple(keys), tuple(record_keys)
        memo = self._memo.get(("s", keys, record_keys))
        if memo is None:
            memo = self._remember(
                ("s", keys, record_keys),
                (*self._k(keys), *self._k(record_keys)),
                tuple(_ttl(k) for k in record_keys),
            )
        self._conn.write(
            "BUDGET_SETTLE", memo[0], (self._conn.owner, float(amount), len(keys), float(cost), memo[1])
        )

    async def release(self, keys: Sequence[str], amount: float) -> None:
        if self._was_local(keys, amount):
            self.local.release_now(keys, amount)
            return
        self._unhold(keys, amount)
        self._release_mine(keys, amount)

    async def add(self, keys: Sequence[str], amount: float) -> None:
        for k in keys:
            self._spent[k] = self._spent.get(k, 0.0) + amount
        self._conn.write("BUDGET_ADD", self._k(keys), (repr(float(amount)), *(_ttl(k) for k in keys)))

    def _unhold(self, keys: Sequence[str], amount: float) -> None:
        held = self._held
        for k in keys:
            left = held.get(k, 0.0) - amount
            if left <= 1e-12:
                held.pop(k, None)
            else:
                held[k] = left

    # -- the local view ----------------------------------------------------------

    def get(self, key: str) -> float:
        return self._spent.get(key, 0.0)

    def reserved(self, key: str) -> float:
        return self._held.get(key, 0.0)

    def discard(self, keys: Iterable[str]) -> None:
        # Redis expires old periods itself; only the local view forgets them.
        for k in keys:
            self._spent.pop(k, None)
            self._held.pop(k, None)
            self._mine.pop(k, None)

    async def refresh(self, keys: Iterable[str] | None = None) -> dict[str, tuple[float, float]]:
        """Read spent and reserved (every process's) for ``keys`` (default: the ones
        this process has seen) from Redis into the local view; one round trip."""
        names = list(self._spent if keys is None else keys)
        if not names:
            return {}
        conn = self._conn
        reply = await conn.call(
            "budget", "BUDGET_READ", (conn.owners_key, *self._k(names)), (conn.clock.wall(),)
        )
        out: dict[str, tuple[float, float]] = {}
        for i, k in enumerate(names):
            spent, held = float(reply[2 * i]), float(reply[2 * i + 1])
            out[k] = (spent, held)
            self._spent[k] = spent
            if held:
                self._held[k] = held
            else:
                self._held.pop(k, None)
        return out
