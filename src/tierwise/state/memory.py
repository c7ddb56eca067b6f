"""The in-memory state: one process, no I/O, every method atomic on the event loop.

The limiter (``execution.limits.RateLimiter``), health tracker
(``execution.health.HealthTracker``) and caches (``execution.cache``) are the
in-memory implementations of their protocols already; the budget store is here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

__all__ = ["MemoryBudgetStore"]


class MemoryBudgetStore:
    """Spent and reserved dollars in dicts, private to one ledger (or shared by
    passing the same store to several ledgers in one process).

    Each async method has a synchronous twin (``*_now``) doing the same work:
    ``BudgetLedger``'s synchronous API uses them, which only a store that never
    waits can offer.
    """

    __slots__ = ("_count", "_data", "_reserved")

    def __init__(self) -> None:
        self._data: dict[str, float] = {}
        # Outstanding reservations per key (sum and count: the count lets the float
        # sum snap back to exactly 0 when the last one goes).
        self._reserved: dict[str, float] = {}
        self._count: dict[str, int] = {}

    # -- reads ----------------------------------------------------------------------

    def get(self, key: str) -> float:
        return self._data.get(key, 0.0)

    def reserved(self, key: str) -> float:
        return self._reserved.get(key, 0.0)

    def __len__(self) -> int:
        return len(self._data)

    # -- synchronous mutations ---------------------------------------------------------

    def reserve_now(
        self, checks: Sequence[tuple[str, float]], keys: Sequence[str], amount: float
    ) -> list[tuple[int, float]]:
        data = self._data
        reserved = self._reserved
        failed: list[tuple[int, float]] = []
        for i, (key, limit) in enumerate(checks):
            used = data.get(key, 0.0) + reserved.get(key, 0.0)
            # Once spent + reserved reaches the limit nothing more is admitted, even
            # a call whose worst case is $0 (an unknown price): it would spend unbounded.
            if not (used + amount <= limit and used < limit):
                failed.append((i, used))
        if failed:
            return failed
        count = self._count
        for key in keys:
            reserved[key] = reserved.get(key, 0.0) + amount
            count[key] = count.get(key, 0) + 1
        return failed

    def release_now(self, keys: Sequence[str], amount: float) -> None:
        reserved = self._reserved
        count = self._count
        for key in keys:
            n = count.get(key, 0) - 1
            if n <= 0:
                count.pop(key, None)
                reserved.pop(key, None)
            else:
                count[key] = n
                reserved[key] -= amount

    def add_now(self, keys: Sequence[str], amount: float) -> None:
        data = self._data
        for key in keys:
            data[key] = data.get(key, 0.0) + amount

    def settle_now(self, keys: Sequence[str], amount: float, record_keys: Sequence[str], cost: float) -> None:
        self.release_now(keys, amount)
        self.add_now(record_keys, cost)

    def discard(self, keys: Iterable[str]) -> None:
        for key in keys:
            self._data.pop(key, None)

    # -- the protocol's async face ---------------------------------------------------------

    async def reserve(
        self, checks: Sequence[tuple[str, float]], keys: Sequence[str], amount: float
    ) -> list[tuple[int, float]]:
        return self.reserve_now(checks, keys, amount)

    async def settle(
        self, keys: Sequence[str], amount: float, record_keys: Sequence[str], cost: float
    ) -> None:
        self.settle_now(keys, amount, record_keys, cost)

    async def release(self, keys: Sequence[str], amount: float) -> None:
        self.release_now(keys, amount)

    async def add(self, keys: Sequence[str], amount: float) -> None:
        self.add_now(keys, amount)
