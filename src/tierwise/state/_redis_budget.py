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

When Redis is unavailable the ``budget`` fail mode applies: ``closed`` (the
default: money) raises ``StateUnavailable``; ``open`` books in a local
in-memory store for the outage (per process: the limit then holds per process).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from ._redis_conn import Conn, RedisDown
from .memory import MemoryBudgetStore

__all__ = ["RedisBudgetStore"]

_DAY_TTL = 3 * 86400
_MONTH_TTL = 63 * 86400


def _ttl(key: str) -> int:
    if key.startswith("day:"):
        return _DAY_TTL
    if key.startswith("month:"):
        return _MONTH_TTL
    return 0


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

    def _k(self, keys: Iterable[str]) -> list[str]:
        p = self._p
        return [p + k for k in keys]

    async def reserve(
        self, checks: Sequence[tuple[str, float]], keys: Sequence[str], amount: float
    ) -> list[tuple[int, float]]:
        conn = self._conn
        try:
            reply = await conn.call(
                "budget",
                "BUDGET_RESERVE",
                (conn.owners_key, *self._k(k for k, _ in checks), *self._k(keys)),
                (
                    conn.clock.wall(),
                    conn.owner,
                    conn.lease_s,
                    repr(float(amount)),
                    len(checks),
                    *(repr(float(limit)) for _, limit in checks),
                    *(_ttl(k) for k in keys),
                ),
            )
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
        for k in record_keys:
            self._spent[k] = self._spent.get(k, 0.0) + cost
        self._conn.write(
            "BUDGET_SETTLE",
            (*self._k(keys), *self._k(record_keys)),
            (
                self._conn.owner,
                repr(float(amount)),
                len(keys),
                repr(float(cost)),
                *(_ttl(k) for k in record_keys),
            ),
        )

    async def release(self, keys: Sequence[str], amount: float) -> None:
        if self._was_local(keys, amount):
            self.local.release_now(keys, amount)
            return
        self._unhold(keys, amount)
        self._conn.write("BUDGET_RELEASE", self._k(keys), (self._conn.owner, repr(float(amount))))

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
