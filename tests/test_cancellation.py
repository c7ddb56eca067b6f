"""Cancellation at any point gives back the limiter slot, the budget reservation and the connection.

Three places a request can be when its caller gives up: waiting for a rate-limit
slot (or a retry backoff), with a provider call in flight, and mid-stream (the
consumer stops reading, or its task is cancelled). In each, afterwards:
``limiter.in_flight == limiter.queued == 0``, ``ledger.reserved() == 0``, and no
TCP connection to the server is left established. Connections are counted from
the kernel's table (``/proc/net/tcp``), so the check does not depend on httpx or
MockLLMServer internals.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import aclosing
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from tierwise.catalog import ModelSpec
from tierwise.errors import ServerError
from tierwise.execution.budget import BudgetLedger, BudgetLimit
from tierwise.execution.cache import MemoryCache
from tierwise.execution.executor import Deployment, Executor
from tierwise.execution.limits import RateLimiter
from tierwise.execution.retry import RetryPolicy
from tierwise.orchestrator import Orchestrator
from tierwise.providers.openai import OpenAI
from tierwise.testing import FakeClock, FakeProvider, MockLLMServer, MockModel
from tierwise.types import Request, TextDelta

LONG_TEXT = " ".join(f"word{i}" for i in range(400))


def spec(name: str) -> ModelSpec:
    return ModelSpec(name, "fake", input=1.0, output=2.0)


def ledger_for(clock: Any = None) -> BudgetLedger:
    kwargs = {"clock": clock} if clock is not None else {}
    return BudgetLedger([BudgetLimit(limit_usd=100.0, period="day")], **kwargs)


async def settle(n: int = 50) -> None:
    for _ in range(n):
        await anyio.lowlevel.checkpoint()


# -- connection counting ------------------------------------------------------------

_TCP_TABLES = [Path("/proc/net/tcp"), Path("/proc/net/tcp6")]
_ESTABLISHED = "01"


def established(port: int) -> int:
    """TCP connections in ESTABLISHED state with ``port`` at either end (both the
    client's and the server's socket of one loopback connection are counted)."""
    count = 0
    for table in _TCP_TABLES:
        if not table.exists():
            continue
        for line in table.read_text().splitlines()[1:]:
            fields = line.split()
            local, remote, state = fields[1], fields[2], fields[3]
            if state == _ESTABLISHED and port in (
                int(local.rsplit(":", 1)[1], 16),
                int(remote.rsplit(":", 1)[1], 16),
            ):
                count += 1
    return count


needs_proc = pytest.mark.skipif(
    not sys.platform.startswith("linux") or not _TCP_TABLES[0].exists(),
    reason="counts sockets from /proc/net/tcp",
)


async def wait_for(predicate: Any, within: float = 2.0) -> bool:
    """Poll ``predicate`` for up to ``within`` real seconds (socket teardown crosses
    the kernel, so there is no event to wait on)."""
    for _ in range(int(within / 0.01)):
        if predicate():
            return True
        await anyio.sleep(0.01)
    return bool(predicate())


# -- waiting for a slot -------------------------------------------------------------


async def test_cancel_while_waiting_for_a_concurrency_slot() -> None:
    clock = FakeClock(auto_advance=False)
    provider = FakeProvider("ok", clock=clock, latency_s=1.0)
    limiter = RateLimiter(max_concurrency=1, clock=clock)
    ledger = ledger_for(clock)
    ex = Executor(
        {"a": Deployment("a", provider, "a", spec=spec("a"), limiter=limiter)}, budget=ledger, clock=clock
    )
    request = Request.from_prompt("hi", max_tokens=10)
    done: list[str] = []

    async def holder() -> None:
        done.append((await ex.complete("a", request)).text)

    async with anyio.create_task_group() as tg:
        tg.start_soon(holder)
        await settle()
        assert limiter.in_flight == 1
        one = ledger.reserved()
        assert one > 0

        waiter_scope = anyio.CancelScope()

        async def waiter() -> None:
            with waiter_scope:
                await ex.complete("a", request)
                raise AssertionError("the waiter must not get a slot")

        tg.start_soon(waiter)
        await settle()
        assert limiter.queued == 1
        assert ledger.reserved() == pytest.approx(one)  # queued: it holds no money yet
        waiter_scope.cancel()
        await settle()

        assert limiter.queued == 0 and limiter.in_flight == 1
        assert ledger.reserved() == pytest.approx(one)
        clock.advance(1.0)

    assert done == ["ok"]
    assert len(provider.calls) == 1
    assert limiter.in_flight == 0 and limiter.queued == 0
    assert ledger.reserved() == 0.0


async def test_move_on_after_while_waiting_for_an_rpm_slot() -> None:
    clock = FakeClock(auto_advance=False)
    provider = FakeProvider("ok", clock=clock)
    limiter = RateLimiter(rpm=1, clock=clock)
    ledger = ledger_for(clock)
    orch = Orchestrator(
        [Deployment("a", provider, "a", spec=spec("a"), limiter=limiter)], budget=ledger, clock=clock
    )

    await orch.run("first")  # uses the minute's only slot
    spent = ledger.spent()
    with anyio.move_on_after(0.05) as scope:  # real time; the clock never moves
        await orch.run("second")
    assert scope.cancelled_caught

    assert limiter.queued == 0 and limiter.in_flight == 0
    assert ledger.reserved() == 0.0 and ledger.spent() == spent
    assert len(provider.calls) == 1
    clock.advance(60.0)
    assert (await orch.run("third")).text == "ok"


async def test_cancel_during_retry_backoff_holds_nothing() -> None:
    clock = FakeClock(auto_advance=False)
    provider = FakeProvider([ServerError("busy", status_code=503), "ok"], clock=clock)
    limiter = RateLimiter(max_concurrency=1, clock=clock)
    ledger = ledger_for(clock)
    ex = Executor(
        {"a": Deployment("a", provider, "a", spec=spec("a"), limiter=limiter)},
        budget=ledger,
        retry=RetryPolicy(max_attempts=3, initial_backoff=10.0, jitter=False),
        clock=clock,
    )

    async with anyio.create_task_group() as tg:
        tg.start_soon(ex.complete, "a", Request.from_prompt("hi"))
        await settle()
        assert len(provider.calls) == 1 and clock.sleepers == 1  # sleeping off the backoff
        assert limiter.in_flight == 0 and ledger.reserved() == 0.0
        tg.cancel_scope.cancel()

    assert limiter.in_flight == 0 and limiter.queued == 0 and ledger.reserved() == 0.0
    assert clock.sleepers == 0


async def test_cancelled_coalescing_leader_hands_over_to_a_follower() -> None:
    clock = FakeClock(auto_advance=False)
    provider = FakeProvider("ok", clock=clock, latency_s=1.0)
    limiter = RateLimiter(max_concurrency=10, clock=clock)
    ledger = ledger_for(clock)
    ex = Executor(
        {"a": Deployment("a", provider, "a", spec=spec("a"), limiter=limiter)},
        budget=ledger,
        cache=MemoryCache(clock=clock),
        clock=clock,
    )
    request = Request.from_prompt("same")
    results: list[Any] = []

    async with anyio.create_task_group() as tg:
        leader_scope = anyio.CancelScope()

        async def leader() -> None:
            with leader_scope:
                await ex.complete("a", request)

        async def follower() -> None:
            results.append(await ex.complete("a", request))

        tg.start_soon(leader)
        await settle()
        tg.start_soon(follower)
        await settle()
        assert len(provider.calls) == 1
        leader_scope.cancel()
        await settle()
        # The follower took over with its own call; the leader's slot is back.
        assert len(provider.calls) == 2
        assert limiter.in_flight == 1
        clock.advance(1.0)

    assert [r.text for r in results] == ["ok"]
    assert limiter.in_flight == 0 and ledger.reserved() == 0.0


# -- real sockets -------------------------------------------------------------------


async def http_orchestrator(
    server: MockLLMServer, *, limiter: RateLimiter, ledger: BudgetLedger
) -> tuple[Orchestrator, OpenAI]:
    provider = OpenAI(base_url=server.base_url + "/v1", compat="vllm")
    dep = Deployment("m", provider, "m", spec=ModelSpec("m", "vllm", input=1.0, output=2.0), limiter=limiter)
    return Orchestrator([dep], budget=ledger, retry=RetryPolicy(max_attempts=1)), provider


@needs_proc
async def test_cancel_with_a_provider_call_in_flight_releases_slot_budget_and_socket() -> None:
    async with MockLLMServer({"m": MockModel(latency_ms=10_000)}) as server:
        limiter, ledger = RateLimiter(max_concurrency=4), ledger_for()
        orch, _ = await http_orchestrator(server, limiter=limiter, ledger=ledger)
        async with orch:
            with anyio.move_on_after(0.3) as scope:
                await orch.run("hello")
            assert scope.cancelled_caught
            assert len(server.requests) == 1, "the request reached the server before the cancel"

            assert limiter.in_flight == 0 and limiter.queued == 0
            assert ledger.reserved() == 0.0 and ledger.spent() == 0.0
            assert await wait_for(lambda: established(server.port) == 0), (
                "the cancelled call's socket stayed open"
            )

            server.set_model("m", MockModel(reply="fine"))
            assert (await orch.run("again")).text == "fine"  # the pool still works
        assert await wait_for(lambda: established(server.port) == 0), "aclose() left a connection open"


async def _read_two_deltas(events: AsyncIterator[Any]) -> list[str]:
    got: list[str] = []
    async for event in events:
        if isinstance(event, TextDelta):
            got.append(event.text)
            if len(got) == 2:
                break
    return got


@needs_proc
async def test_consumer_closing_a_stream_midway_releases_everything_at_once() -> None:
    model = MockModel(reply=LONG_TEXT, stream_chunk_delay_ms=20)
    async with MockLLMServer({"m": model}) as server:
        limiter, ledger = RateLimiter(max_concurrency=4), ledger_for()
        orch, _ = await http_orchestrator(server, limiter=limiter, ledger=ledger)
        async with orch:
            async with aclosing(orch.stream("tell me a long story")) as events:
                got = await _read_two_deltas(events)
                assert len(got) == 2
                assert limiter.in_flight == 1 and ledger.reserved() > 0
            # aclose() of the outermost stream has returned: nothing may be held now.
            assert limiter.in_flight == 0 and limiter.queued == 0
            assert ledger.reserved() == 0.0
            assert await wait_for(lambda: established(server.port) == 0), "the stream's socket stayed open"
        assert await wait_for(lambda: established(server.port) == 0)


@needs_proc
async def test_consumer_breaking_out_of_a_stream_releases_everything_soon() -> None:
    """Without ``aclosing`` Python closes an abandoned async generator through the
    event loop's finalizer hook, a task later; the slot must still come back."""
    model = MockModel(reply=LONG_TEXT, stream_chunk_delay_ms=20)
    async with MockLLMServer({"m": model}) as server:
        limiter, ledger = RateLimiter(max_concurrency=4), ledger_for()
        orch, _ = await http_orchestrator(server, limiter=limiter, ledger=ledger)
        async with orch:
            got = await _read_two_deltas(orch.stream("tell me a long story"))
            assert len(got) == 2
            assert await wait_for(lambda: limiter.in_flight == 0 and ledger.reserved() == 0.0)
            assert await wait_for(lambda: established(server.port) == 0)


@needs_proc
async def test_cancelling_the_consuming_task_mid_stream_releases_everything() -> None:
    model = MockModel(reply=LONG_TEXT, stream_chunk_delay_ms=20)
    async with MockLLMServer({"m": model}) as server:
        limiter, ledger = RateLimiter(max_concurrency=4), ledger_for()
        orch, _ = await http_orchestrator(server, limiter=limiter, ledger=ledger)
        async with orch:
            started = anyio.Event()
            received: list[str] = []

            async def consume() -> None:
                async for event in orch.stream("tell me a long story"):
                    if isinstance(event, TextDelta):
                        received.append(event.text)
                        started.set()

            async with anyio.create_task_group() as tg:
                tg.start_soon(consume)
                await started.wait()
                assert limiter.in_flight == 1
                tg.cancel_scope.cancel()

            assert received and "".join(received) != LONG_TEXT
            assert limiter.in_flight == 0 and limiter.queued == 0
            assert ledger.reserved() == 0.0
            assert await wait_for(lambda: established(server.port) == 0)


async def test_cancel_a_stream_waiting_for_a_slot() -> None:
    clock = FakeClock(auto_advance=False)
    provider = FakeProvider("ok", clock=clock, latency_s=1.0)
    limiter = RateLimiter(max_concurrency=1, clock=clock)
    ledger = ledger_for(clock)
    ex = Executor(
        {"a": Deployment("a", provider, "a", spec=spec("a"), limiter=limiter)}, budget=ledger, clock=clock
    )

    async def drain() -> None:
        async for _ in ex.stream("a", Request.from_prompt("hi")):
            pass

    async with anyio.create_task_group() as tg:
        tg.start_soon(drain)
        await settle()
        scope = anyio.CancelScope()

        async def waiting() -> None:
            with scope:
                await drain()

        tg.start_soon(waiting)
        await settle()
        assert limiter.in_flight == 1 and limiter.queued == 1
        scope.cancel()
        await settle()
        assert limiter.queued == 0
        clock.advance(1.0)

    assert len(provider.calls) == 1
    assert limiter.in_flight == 0 and ledger.reserved() == 0.0


@needs_proc
async def test_timeout_on_a_hanging_call_falls_back_and_drops_its_socket() -> None:
    models = {"slow": MockModel(faults=["hang"]), "fast": MockModel(reply="fast")}
    async with MockLLMServer(models) as server:
        provider = OpenAI(base_url=server.base_url + "/v1", compat="vllm")
        limiter, ledger = RateLimiter(max_concurrency=4), ledger_for()
        orch = Orchestrator(
            [
                Deployment(
                    "slow",
                    provider,
                    "slow",
                    spec=spec("slow"),
                    limiter=limiter,
                    timeout_s=0.2,
                    fallbacks=("fast",),
                ),
                Deployment("fast", provider, "fast", spec=spec("fast")),
            ],
            budget=ledger,
            retry=RetryPolicy(max_attempts=1),
        )
        async with orch:
            resp = await orch.run("hi")
            assert resp.deployment == "fast"
            assert [a.error_type for a in resp.attempts] == ["ProviderTimeout", None]
            assert limiter.in_flight == 0 and ledger.reserved() == 0.0
            # Only the pooled keep-alive connection of the answered call is left (2 ends).
            assert await wait_for(lambda: established(server.port) == 2)
        assert await wait_for(lambda: established(server.port) == 0)
