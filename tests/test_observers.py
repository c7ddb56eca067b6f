"""Observers: one typed event per try and per request, to every consumer alike;
and the run context as a strategy's only door (clock, sleep, embeddings, facts).

Over real sockets: the OpenAI adapter against ``MockLLMServer``; time on a
``FakeClock``.
"""

from __future__ import annotations

import pytest

import tierwise as tw
from tierwise.catalog import ModelSpec
from tierwise.execution.executor import Deployment
from tierwise.execution.retry import RetryPolicy
from tierwise.observe.events import AttemptEvent, Observers, RequestCancelled, RequestEvent
from tierwise.providers.openai import OpenAI
from tierwise.strategies.base import RunContext, Strategy
from tierwise.testing import FakeClock, MockLLMServer, MockModel
from tierwise.types import Request, Response


class Recorder:
    def __init__(self) -> None:
        self.attempts: list[AttemptEvent] = []
        self.requests: list[RequestEvent] = []
        self.closed = False

    def on_attempt(self, event: AttemptEvent) -> None:
        self.attempts.append(event)

    def on_request(self, event: RequestEvent) -> None:
        self.requests.append(event)

    async def aclose(self) -> None:
        self.closed = True


class Broken:
    def on_attempt(self, event: AttemptEvent) -> None:
        raise RuntimeError("dashboard down")

    def on_request(self, event: RequestEvent) -> None:
        raise RuntimeError("dashboard down")


def _orch(
    server: MockLLMServer,
    observers: list[object],
    *,
    strategies: dict[str, Strategy] | None = None,
    clock: FakeClock | None = None,
) -> tw.Orchestrator:
    provider = OpenAI(api_key="sk-test-observers", base_url=server.base_url + "/v1")
    deps = [
        Deployment("cheap", provider, "cheap", spec=ModelSpec("cheap", "openai", input=1.0, output=2.0)),
        Deployment("dear", provider, "dear", spec=ModelSpec("dear", "openai", input=10.0, output=20.0)),
        Deployment("vec", provider, "vec", spec=ModelSpec("vec", "openai", input=0.5, output=0.0)),
    ]
    return tw.Orchestrator(
        deps,
        strategies=strategies,
        fallbacks=["dear"],
        retry=RetryPolicy(max_attempts=2, initial_backoff=0.01, jitter=False),
        log_level=None,
        owned_providers=[provider],
        observers=observers,  # type: ignore[arg-type]
        **({"clock": clock} if clock is not None else {}),
    )


async def test_every_try_and_the_request_reach_an_observer_as_typed_events() -> None:
    rec = Recorder()
    models = {"cheap": MockModel(faults=["500", "500"]), "dear": MockModel(reply="from dear")}
    async with MockLLMServer(models) as server:
        async with _orch(server, [rec]) as orch:
            response = await orch.run("hello")
    assert response.text == "from dear"
    # Two failed tries on cheap (the second a retry), then the fallback's answer.
    assert [(e.model, e.outcome, e.retry) for e in rec.attempts] == [
        ("cheap", "error", False),
        ("cheap", "error", True),
        ("dear", "ok", False),
    ]
    assert rec.attempts[0].error_type == "ServerError"
    ok = rec.attempts[-1]
    assert ok.wire_model == "dear" and ok.kind == "complete" and ok.input_tokens > 0
    assert ok.attempt is response.attempts[-1]
    (req,) = rec.requests
    assert req.response is response and req.fallback and req.model == "dear"
    assert req.cost_usd == response.cost_usd and len(req.attempts) == 3
    # Immutable: one observer cannot change what the next one sees.
    with pytest.raises(AttributeError):
        ok.outcome = "error"  # type: ignore[misc]
    # The metrics collector saw the same events.
    assert orch.metrics.snapshot()["requests"]["attempts"] == 3
    assert rec.closed  # the orchestrator closes the observers it was given


async def test_a_failing_observer_never_fails_the_request() -> None:
    rec = Recorder()
    async with MockLLMServer({"cheap": MockModel(reply="fine")}) as server:
        async with _orch(server, [Broken(), rec]) as orch:
            response = await orch.run("hello")
            assert orch.observers.errors == 2  # one attempt, one request
    assert response.text == "fine"
    assert len(rec.attempts) == 1 and len(rec.requests) == 1


def test_an_object_without_the_observer_methods_is_refused() -> None:
    with pytest.raises(TypeError, match="on_attempt"):
        Observers([]).add(object())  # type: ignore[arg-type]


async def test_an_abandoned_stream_is_a_cancelled_request_event() -> None:
    rec = Recorder()
    model = MockModel(reply=" ".join(["word"] * 200), tokens_per_chunk=2)
    async with MockLLMServer({"cheap": model}) as server:
        async with _orch(server, [rec]) as orch:
            stream = orch.stream("hello")
            async for _ in stream:
                break
            await stream.aclose()
    (req,) = rec.requests
    assert req.cancelled and isinstance(req.error, RequestCancelled) and req.response is None
    assert [e.outcome for e in rec.attempts] == ["cancelled"]
    assert rec.attempts[0].kind == "stream" and rec.attempts[0].estimated


class Hedged(Strategy):
    """A hedged request, legal strategy code: wait on the context's clock, read a
    target's facts, embed through the context."""

    kind = "hedged"

    def __init__(self) -> None:
        super().__init__(name="hedged")
        self.waited = 0.0
        self.window: int | None = None

    async def run(self, request: Request, ctx: RunContext) -> Response:
        t0 = ctx.now()
        await ctx.sleep(2.5)
        self.waited = ctx.now() - t0
        info = ctx.target("dear")
        assert info is not None and ctx.target("nope") is None
        self.window = info.context_window
        await ctx.embed("vec", ["what is this about"])
        return await ctx.call("cheap", request)


async def test_a_strategy_sleeps_on_the_injected_clock_and_embeds_through_its_context() -> None:
    rec = Recorder()
    clock = FakeClock()
    strategy = Hedged()
    async with MockLLMServer({"cheap": MockModel(reply="ok"), "vec": MockModel()}) as server:
        async with _orch(server, [rec], strategies={"hedged": strategy}, clock=clock) as orch:
            response = await orch.run("hello")
    assert strategy.waited == 2.5  # virtual seconds: the test did not wait
    # The embedding went through the executor (an event of kind "embed") and is
    # part of the request's bill.
    kinds = [(e.model, e.kind) for e in rec.attempts]
    assert kinds == [("vec", "embed"), ("cheap", "complete")]
    embed_cost = rec.attempts[0].cost_usd
    assert embed_cost is not None and embed_cost > 0
    answer_cost = rec.attempts[1].cost_usd
    assert answer_cost is not None
    assert response.cost_usd == pytest.approx(embed_cost + answer_cost)
