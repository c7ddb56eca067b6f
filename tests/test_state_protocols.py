"""The state seam (``tierwise.state``): the in-memory classes are the protocols'
default implementations, and a store that really waits (as a network backend
does) keeps a hard budget hard through the executor's async path.

The waiting store here wraps the in-memory one and yields to the event loop in
every call, so 40 concurrent requests interleave at each await, as they would on
Redis; the guarantee must come from the store's atomic ``reserve``, not from the
event loop running one task at a time.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import anyio
import anyio.lowlevel
import pytest

import tierwise as tw
from tierwise.catalog import ModelSpec
from tierwise.errors import AllTargetsFailed, BudgetExceeded
from tierwise.execution.budget import BudgetLedger, BudgetLimit, LedgerStore, MemoryLedgerStore
from tierwise.execution.cache import MemoryCache
from tierwise.execution.executor import Deployment
from tierwise.execution.health import HealthTracker
from tierwise.execution.limits import RateLimiter
from tierwise.providers.openai import OpenAI
from tierwise.state import BudgetStore, HealthStore, Limiter, Permit, ResponseCache
from tierwise.state.memory import MemoryBudgetStore
from tierwise.testing import MockLLMServer, MockModel


def test_the_in_memory_classes_implement_the_protocols() -> None:
    limiter = RateLimiter(rpm=10)
    assert isinstance(limiter, Limiter)
    assert isinstance(limiter.try_acquire(), Permit)
    assert isinstance(HealthTracker(), HealthStore)
    assert isinstance(MemoryBudgetStore(), BudgetStore)
    assert isinstance(MemoryCache(), ResponseCache)
    # The names budget.py had before the store moved keep working.
    assert LedgerStore is BudgetStore and MemoryLedgerStore is MemoryBudgetStore


class WaitingStore:
    """A ``BudgetStore`` that suspends in every mutation, like a network store."""

    def __init__(self) -> None:
        self.inner = MemoryBudgetStore()
        self.calls = 0

    async def reserve(
        self, checks: Sequence[tuple[str, float]], keys: Sequence[str], amount: float
    ) -> list[tuple[int, float]]:
        self.calls += 1
        await anyio.lowlevel.checkpoint()
        return self.inner.reserve_now(checks, keys, amount)

    async def settle(
        self, keys: Sequence[str], amount: float, record_keys: Sequence[str], cost: float
    ) -> None:
        await anyio.lowlevel.checkpoint()
        self.inner.settle_now(keys, amount, record_keys, cost)

    async def release(self, keys: Sequence[str], amount: float) -> None:
        await anyio.lowlevel.checkpoint()
        self.inner.release_now(keys, amount)

    async def add(self, keys: Sequence[str], amount: float) -> None:
        await anyio.lowlevel.checkpoint()
        self.inner.add_now(keys, amount)

    def get(self, key: str) -> float:
        return self.inner.get(key)

    def reserved(self, key: str) -> float:
        return self.inner.reserved(key)

    def discard(self, keys: Iterable[str]) -> None:
        self.inner.discard(keys)


def test_a_shared_store_refuses_the_synchronous_api_with_directions() -> None:
    ledger = BudgetLedger([BudgetLimit(1.0, "total")], store=WaitingStore())
    with pytest.raises(TypeError, match=r"areserve"):
        ledger.reserve(model="m", tags={}, amount_usd=0.1)


async def test_a_waiting_store_keeps_a_hard_limit_hard_under_concurrency() -> None:
    store = WaitingStore()
    # Each call's worst case: 100 output tokens at $100/M = $0.01 (+ a small prompt).
    limit = 0.05
    budget = BudgetLedger([BudgetLimit(limit, "total")], store=store)
    assert isinstance(store, BudgetStore)
    async with MockLLMServer({"m": MockModel(reply="ok", latency_ms=5)}) as server:
        provider = OpenAI(api_key="sk-test-state", base_url=server.base_url + "/v1")
        dep = Deployment("m", provider, "m", spec=ModelSpec("m", "openai", input=1.0, output=100.0))
        async with tw.Orchestrator([dep], budget=budget, log_level=None, owned_providers=[provider]) as orch:
            answered: list[tw.Response] = []
            refused: list[BaseException] = []

            async def one() -> None:
                try:
                    answered.append(await orch.run(tw.Request.from_prompt("hi", max_tokens=100)))
                except (BudgetExceeded, AllTargetsFailed) as exc:
                    refused.append(exc)

            async with anyio.create_task_group() as tg:
                for _ in range(40):
                    tg.start_soon(one)
    assert store.calls == 40  # every admission went through the store's atomic step
    assert 1 <= len(answered) <= 5 and len(answered) + len(refused) == 40
    assert all(isinstance(e, BudgetExceeded) for e in refused)
    spent = store.get("total|total")
    assert 0 < spent <= limit
    assert store.reserved("total|total") == 0.0  # every reservation settled or released
    assert spent == pytest.approx(sum(r.cost_usd or 0.0 for r in answered))
