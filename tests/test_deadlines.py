"""The request deadline bounds everything; a busy or rate-limited deployment is routed around.

Issue #9 items 5 and 7, issue #18 item 1: a wait for a local rate-limit slot stops
at the deadline (and at ``max_queue_wait_s``, falling back), holds no budget
reservation, and ends promptly on ``aclose()``; a call in flight is bounded by
the deadline; a long ``Retry-After`` never freezes the limiter. Limiter and
backoff time is a ``FakeClock``; the in-flight case uses a real slow server.
"""

from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest

import tierwise as tw
from tierwise.catalog import ModelSpec
from tierwise.errors import AllTargetsFailed, ProviderTimeout, RateLimitError
from tierwise.execution.budget import BudgetLedger, BudgetLimit
from tierwise.execution.executor import Deployment
from tierwise.execution.limits import LimiterClosed, QueueWaitTimeout, RateLimiter
from tierwise.execution.retry import RetryPolicy
from tierwise.providers.openai import OpenAI
from tierwise.testing import FakeClock, FakeProvider, FunctionProvider, MockLLMServer, MockModel
from tierwise.types import Request


def _spec(name: str) -> ModelSpec:
    return ModelSpec(name, "fake", input=1.0, output=2.0)


def _orch(*deps: Deployment, clock: FakeClock, **kw: object) -> tw.Orchestrator:
    return tw.Orchestrator(list(deps), clock=clock, log_level=None, **kw)  # type: ignore[arg-type]


async def test_queue_wait_stops_at_the_deadline_instead_of_a_full_window() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rpm=2, clock=clock, name="m")
    budget = BudgetLedger([BudgetLimit(limit_usd=100.0, period="total")], clock=clock)
    dep = Deployment("m", FakeProvider(), "m", spec=_spec("m"), limiter=limiter)
    async with _orch(dep, clock=clock, retry=RetryPolicy(deadline=3.0), budget=budget) as orch:
        await orch.run("one")
        await orch.run("two")
        t0 = clock.now()
        with pytest.raises(AllTargetsFailed) as info:
            await orch.run("three")
        waited = clock.now() - t0
    # The slot frees in 60 s, past the 3 s deadline: refused at once, not after a minute.
    assert waited <= 3.0
    assert any(isinstance(e, QueueWaitTimeout) for e in info.value.exceptions)
    assert [a.outcome for a in info.value.attempts] == ["skipped"]
    assert info.value.attempts[0].error_type == "QueueWaitTimeout"
    assert budget.reserved("total", "total") == 0.0
    assert limiter.queued == 0


async def test_a_queued_request_holds_no_budget_reservation() -> None:
    clock = FakeClock(auto_advance=False)
    limiter = RateLimiter(rpm=1, clock=clock, name="m")
    budget = BudgetLedger([BudgetLimit(limit_usd=100.0, period="total")], clock=clock)
    dep = Deployment("m", FakeProvider(), "m", spec=_spec("m"), limiter=limiter)
    async with _orch(dep, clock=clock, budget=budget) as orch:
        await orch.run("one")
        results: list[str] = []

        async def second() -> None:
            results.append((await orch.run("two")).text)

        async with anyio.create_task_group() as tg:
            tg.start_soon(second)
            await anyio.wait_all_tasks_blocked()
            assert limiter.queued == 1
            assert budget.reserved("total", "total") == 0.0  # waiting costs nothing
            clock.advance(60.0)
        assert results and budget.reserved("total", "total") == 0.0


async def test_busy_deployment_falls_back_after_max_queue_wait() -> None:
    clock = FakeClock()
    busy = Deployment(
        "a",
        FakeProvider(),
        "a",
        spec=_spec("a"),
        limiter=RateLimiter(rpm=1, clock=clock, name="a"),
        fallbacks=("b",),
        max_queue_wait_s=2.0,
    )
    spare = Deployment("b", FakeProvider(), "b", spec=_spec("b"))
    async with _orch(busy, spare, clock=clock) as orch:
        first = await orch.run("one")
        t0 = clock.now()
        second = await orch.run("two")
    assert first.deployment == "a"
    assert second.deployment == "b" and second.fallback is True
    assert [a.outcome for a in second.attempts] == ["skipped", "ok"]
    assert clock.now() - t0 <= 2.0


async def test_concurrency_wait_falls_back_after_exactly_max_queue_wait() -> None:
    clock = FakeClock()
    release = anyio.Event()

    async def slow(model: str, request: Request) -> str:
        await release.wait()
        return "slow answer"

    busy = Deployment(
        "a",
        FunctionProvider(slow),
        "a",
        spec=_spec("a"),
        limiter=RateLimiter(max_concurrency=1, clock=clock, name="a"),
        fallbacks=("b",),
        max_queue_wait_s=2.0,
    )
    spare = Deployment("b", FakeProvider(), "b", spec=_spec("b"))
    answers: dict[str, str] = {}
    async with _orch(busy, spare, clock=clock) as orch:

        async def first() -> None:
            answers["first"] = (await orch.run("one")).deployment

        async with anyio.create_task_group() as tg:
            tg.start_soon(first)
            await anyio.wait_all_tasks_blocked()
            t0 = clock.now()
            answers["second"] = (await orch.run("two")).deployment
            answers["waited"] = str(clock.now() - t0)
            release.set()
    assert answers["first"] == "a" and answers["second"] == "b"
    assert float(answers["waited"]) == pytest.approx(2.0)


async def test_aclose_fails_queued_requests_promptly() -> None:
    clock = FakeClock(auto_advance=False)
    limiter = RateLimiter(rpm=1, clock=clock, name="m")
    dep = Deployment("m", FakeProvider(), "m", spec=_spec("m"), limiter=limiter)
    orch = _orch(dep, clock=clock)
    await orch.run("one")
    errors: list[BaseException] = []

    async def queued() -> None:
        try:
            await orch.run("two")
        except Exception as exc:
            errors.append(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(queued)
        await anyio.wait_all_tasks_blocked()
        assert limiter.queued == 1
        await orch.aclose()  # no clock advance: only the close can end the wait
    assert len(errors) == 1 and isinstance(errors[0], LimiterClosed)
    assert orch.metrics.snapshot()["requests"]["errors"]["by_type"] == {"LimiterClosed": 1}


async def test_deadline_bounds_a_call_already_in_flight() -> None:
    # The server takes 5 s; no timeout_s is set; only the 0.3 s deadline can end it.
    async with MockLLMServer({"slow": MockModel(latency_ms=5000)}) as server:
        provider = OpenAI(api_key="sk-test-deadline", base_url=server.base_url + "/v1")
        dep = Deployment("slow", provider, "slow")
        orch = tw.Orchestrator([dep], retry=RetryPolicy(deadline=0.3), log_level=None)
        async with orch:
            with pytest.raises(AllTargetsFailed) as info:
                await orch.run("hi")
            with pytest.raises(AllTargetsFailed):
                async for _ in orch.stream("hi"):
                    pass
    timeouts = [e for e in info.value.exceptions if isinstance(e, ProviderTimeout)]
    assert timeouts and "deadline" in str(timeouts[0])
    assert timeouts[0].retryable is False
    assert len(server.requests) == 2  # one try each: nothing retried past the deadline


async def test_long_retry_after_cools_the_deployment_instead_of_freezing_its_limiter() -> None:
    clock = FakeClock(auto_advance=False)
    models = {"a": MockModel(faults=["429"], retry_after_s=120), "b": MockModel(reply="from b")}
    async with MockLLMServer(models) as server:
        provider = OpenAI(api_key="sk-test-retry-after", base_url=server.base_url + "/v1")
        limiter = RateLimiter(rpm=1000, clock=clock, name="a")
        a = Deployment("a", provider, "a", limiter=limiter, fallbacks=("b",))
        b = Deployment("b", provider, "b")
        orch = tw.Orchestrator([a, b], clock=clock, log_level=None, retry=RetryPolicy(max_retry_after=30.0))
        async with orch:
            first = await orch.run("hi")
            assert first.deployment == "b"
            err = first.attempts[0]
            assert err.error_type == "RateLimitError"
            # The limiter holds at most max_retry_after (30 s), not the 120 s asked for...
            assert 0 < limiter.snapshot()["hold_remaining_s"] <= 30.0
            # ...and the deployment cools for the full 120 s, so the chain routes around it.
            assert orch.health()["a"]["state"] == "cooling"
            second = await orch.run("again")
            assert second.deployment == "b"
            assert [x.model for x in second.attempts] == ["b"]
            clock.advance(31.0)
            assert limiter.snapshot()["hold_remaining_s"] == 0.0


async def test_long_retry_after_on_a_single_deployment_does_not_park_later_requests() -> None:
    clock = FakeClock()
    async with MockLLMServer({"a": MockModel(faults=["429"], retry_after_s=120)}) as server:
        provider = OpenAI(api_key="sk-test-retry-after", base_url=server.base_url + "/v1")
        limiter = RateLimiter(rpm=1000, clock=clock, name="a")
        a = Deployment("a", provider, "a", limiter=limiter)
        orch = tw.Orchestrator([a], clock=clock, log_level=None, retry=RetryPolicy(deadline=60.0))
        async with orch:
            with pytest.raises(AllTargetsFailed) as info:
                await orch.run("hi")
            assert isinstance(info.value.exceptions[0], RateLimitError)
            t0 = clock.now()
            resp = await orch.run("later")
    assert resp.text
    assert clock.now() - t0 <= 30.0  # waited out the capped hold, not 120 s
