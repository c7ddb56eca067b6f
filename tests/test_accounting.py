"""Every cent, off the happy path too (issue #9, items 1-3).

* A stream whose server sends no usage chunk is billed at the estimator's figure,
  marked ``Usage.estimated``, in the response, the budget, the metrics and the audit.
* A custom strategy that calls two models and answers with one reports both in
  ``cost_usd``, the request metrics and the audit log: the run context accounts.
* A stream its consumer abandons is recorded as a cancelled attempt and request,
  billed for what was streamed.

All over real sockets: the OpenAI adapter against ``MockLLMServer``.
"""

from __future__ import annotations

import json
from contextlib import aclosing
from pathlib import Path
from typing import Any

import pytest

import tierwise as tw
from tierwise.catalog import ModelSpec
from tierwise.execution.budget import BudgetLedger, BudgetLimit
from tierwise.execution.executor import Deployment
from tierwise.execution.tokens import estimate_tokens
from tierwise.observe.audit import AuditLog
from tierwise.providers.openai import OpenAI
from tierwise.strategies.base import RunContext, Strategy
from tierwise.testing import MockLLMServer, MockModel
from tierwise.types import Done, Request, Response, TextDelta

LONG = " ".join(f"word{i}" for i in range(120))


def _spec(name: str, price: float) -> ModelSpec:
    return ModelSpec(name, "openai", input=price, output=2 * price)


def _orch(
    server: MockLLMServer,
    *,
    models: dict[str, float],
    budget: BudgetLedger | None = None,
    audit: AuditLog | None = None,
    strategies: dict[str, Strategy] | None = None,
) -> tw.Orchestrator:
    provider = OpenAI(api_key="sk-test-accounting", base_url=server.base_url + "/v1")
    deps = [Deployment(alias, provider, alias, spec=_spec(alias, price)) for alias, price in models.items()]
    return tw.Orchestrator(
        deps, strategies=strategies, budget=budget, audit=audit, log_level=None, owned_providers=[provider]
    )


def _audit_records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# -- 1. a stream without a usage chunk ---------------------------------------------------


async def test_stream_without_usage_chunk_is_billed_at_an_estimate(tmp_path: Path) -> None:
    budget = BudgetLedger([BudgetLimit(limit_usd=10.0, period="total")])
    audit_path = tmp_path / "audit.jsonl"
    audit = AuditLog(audit_path)
    async with MockLLMServer({"m": MockModel(reply=LONG)}) as server:
        orch = _orch(server, models={"m": 1.0}, budget=budget, audit=audit)
        async with orch:
            # stream_usage=False: no stream_options.include_usage, so the server sends
            # no usage chunk, as many OpenAI-compatible servers do anyway.
            request = Request.from_prompt("Tell me something long", stream_usage=False)
            final: Response | None = None
            text = ""
            async for event in orch.stream(request):
                if isinstance(event, TextDelta):
                    text += event.text
                elif isinstance(event, Done):
                    final = event.response
    assert final is not None and text == LONG
    usage = final.usage
    assert usage.estimated is True
    assert usage.input_tokens > 0 and usage.output_tokens > 0
    # The estimate is the limiter's estimator: prompt part of estimate_tokens, and
    # the received text at ~4 characters a token.
    prompt = estimate_tokens(request) - 1024
    assert usage.input_tokens == prompt
    assert abs(usage.output_tokens - len(LONG) / 4) <= 2
    expected = (usage.input_tokens * 1.0 + usage.output_tokens * 2.0) / 1e6
    assert final.cost_usd == pytest.approx(expected)
    assert final.attempts[-1].usage is not None and final.attempts[-1].usage.estimated
    assert budget.spent("total", "total") == pytest.approx(expected)
    snap = orch.metrics.snapshot()
    assert snap["requests"]["estimated_usage_calls"] == 1
    assert snap["requests"]["cost_usd"] == pytest.approx(expected)
    assert snap["models"]["m"]["estimated_usage_calls"] == 1
    assert snap["models"]["m"]["unknown_cost_calls"] == 0
    (record,) = _audit_records(audit_path)
    assert record["usage"]["estimated"] is True
    assert record["cost_usd"] == pytest.approx(expected)


async def test_reported_usage_is_not_marked_estimated() -> None:
    async with (
        MockLLMServer({"m": MockModel(reply="short")}) as server,
        _orch(server, models={"m": 1.0}) as orch,
    ):
        events = [e async for e in orch.stream("hi")]
    final = events[-1]
    assert isinstance(final, Done)
    assert final.response.usage.estimated is False
    assert orch.metrics.snapshot()["requests"]["estimated_usage_calls"] == 0


# -- 2. a custom strategy ---------------------------------------------------------------


class BestOfTwo(Strategy):
    """What docs/strategies.md invites: call two models, answer with one."""

    kind = "best_of_two"

    async def run(self, request: Request, ctx: RunContext) -> Response:
        first = await ctx.call("cheap", request, name="a")
        second = await ctx.call("dear", request, name="b")
        return first if len(first.text) >= len(second.text) else second


async def test_custom_strategy_reports_every_call_it_made(tmp_path: Path) -> None:
    audit_path = tmp_path / "audit.jsonl"
    budget = BudgetLedger([BudgetLimit(limit_usd=10.0, period="total")])
    models = {"cheap": MockModel(reply="a fairly long answer from cheap"), "dear": MockModel(reply="short")}
    async with MockLLMServer(models) as server:
        orch = _orch(
            server,
            models={"cheap": 1.0, "dear": 10.0},
            budget=budget,
            audit=AuditLog(audit_path),
            strategies={"best": BestOfTwo(name="best")},
        )
        async with orch:
            resp = await orch.run("Which is better?")
    assert resp.deployment == "cheap"
    per_model = orch.metrics.snapshot()["models"]
    both = per_model["cheap"]["cost_usd"] + per_model["dear"]["cost_usd"]
    assert per_model["dear"]["cost_usd"] > per_model["cheap"]["cost_usd"] > 0
    assert resp.cost_usd == pytest.approx(both)
    assert [a.model for a in resp.attempts] == ["cheap", "dear"]
    assert resp.usage.input_tokens == sum(a.usage.input_tokens for a in resp.attempts if a.usage)
    assert orch.metrics.snapshot()["requests"]["cost_usd"] == pytest.approx(both)
    assert budget.spent("total", "total") == pytest.approx(both)
    (record,) = _audit_records(audit_path)
    assert record["cost_usd"] == pytest.approx(both)
    assert [a["model"] for a in record["attempts"]] == ["cheap", "dear"]


async def test_custom_strategy_nested_in_a_router_is_settled_at_its_own_level() -> None:
    models = {"cheap": MockModel(reply="a fairly long answer from cheap"), "dear": MockModel(reply="short")}
    async with MockLLMServer(models) as server:
        inner = BestOfTwo(name="inner")
        router = tw.Router(
            tw.KeywordClassifier.default(), {"standard": inner, "complex": inner}, default="standard"
        )
        orch = _orch(server, models={"cheap": 1.0, "dear": 10.0}, strategies={"r": router})
        async with orch:
            resp = await orch.run("hello")
    per_model = orch.metrics.snapshot()["models"]
    assert resp.cost_usd == pytest.approx(per_model["cheap"]["cost_usd"] + per_model["dear"]["cost_usd"])
    # The router's own breakdown step for the nested strategy carries both calls too.
    assert resp.steps and resp.steps[-1].cost_usd == pytest.approx(resp.cost_usd)


# -- 3. an abandoned stream -------------------------------------------------------------


async def test_abandoned_stream_is_recorded_as_cancelled_and_billed(tmp_path: Path) -> None:
    audit_path = tmp_path / "audit.jsonl"
    budget = BudgetLedger([BudgetLimit(limit_usd=10.0, period="total")])
    model = MockModel(reply=LONG, tokens_per_chunk=2, stream_chunk_delay_ms=5)
    async with MockLLMServer({"m": model}) as server:
        orch = _orch(server, models={"m": 1.0}, budget=budget, audit=AuditLog(audit_path))
        async with orch:
            received = ""
            async with aclosing(orch.stream("Tell me something long")) as events:
                async for event in events:
                    if isinstance(event, TextDelta):
                        received += event.text
                        if len(received) > 20:
                            break  # the SSE client disconnects
            assert budget.reserved("total", "total") == 0.0
    assert 20 < len(received) < len(LONG)
    snap = orch.metrics.snapshot()
    assert snap["requests"]["cancelled"] == 1
    assert snap["requests"]["errors"]["total"] == 0
    model_stats = snap["models"]["m"]
    assert model_stats["outcomes"] == {"cancelled": 1}
    assert model_stats["tokens"]["output"] > 0
    cost = model_stats["cost_usd"]
    assert cost > 0
    assert snap["requests"]["cost_usd"] == pytest.approx(cost)
    assert budget.spent("total", "total") == pytest.approx(cost)
    (record,) = _audit_records(audit_path)
    assert record["error"]["type"] == "RequestCancelled"
    assert record["cost_usd"] == pytest.approx(cost)
    assert [a["outcome"] for a in record["attempts"]] == ["cancelled"]
    assert record["attempts"][0]["usage"]["estimated"] is True


async def test_stream_abandoned_before_any_content_costs_nothing() -> None:
    budget = BudgetLedger([BudgetLimit(limit_usd=10.0, period="total")])
    model = MockModel(reply=LONG, latency_ms=300)
    async with MockLLMServer({"m": model}) as server, _orch(server, models={"m": 1.0}, budget=budget) as orch:
        import anyio

        with anyio.move_on_after(0.05):
            async with aclosing(orch.stream("hi")) as events:
                async for _ in events:
                    pass
        assert budget.reserved("total", "total") == 0.0
    snap = orch.metrics.snapshot()
    assert snap["requests"]["cancelled"] == 1
    assert snap["models"]["m"]["outcomes"] == {"cancelled": 1}
    assert budget.spent("total", "total") == 0.0


# -- a hard budget is hard, a malformed reply leaks nothing (issue #18, items 2 and 4) ---


async def test_hard_budget_holds_when_real_tokenization_is_denser_than_estimated() -> None:
    prompt = ("Summarize the quarterly report section by section. " * 60)[:3000]
    request = Request.from_prompt(prompt, max_tokens=16)
    estimated_prompt = estimate_tokens(request) - 16
    real_input = int(estimated_prompt * 1.6)  # the provider counts 1.6x what we estimate
    budget = BudgetLedger([BudgetLimit(limit_usd=1.00, period="total", action="reject")])
    model = MockModel(reply="ok", input_tokens=real_input, output_tokens=10)
    async with MockLLMServer({"m": model}) as server:
        provider = OpenAI(api_key="sk-test-budget", base_url=server.base_url + "/v1")
        dep = Deployment("m", provider, "m", spec=ModelSpec("m", "openai", input=10.0, output=10.0))
        orch = tw.Orchestrator([dep], budget=budget, log_level=None, owned_providers=[provider])
        served = refused = 0
        async with orch:
            import anyio

            async def one() -> None:
                nonlocal served, refused
                try:
                    await orch.run(request)
                    served += 1
                except tw.errors.BudgetExceeded:
                    refused += 1

            async with anyio.create_task_group() as tg:
                for _ in range(500):
                    tg.start_soon(one)
            burst = budget.spent("total", "total")
            # Then one at a time until refused: what the burst's worst cases left
            # unclaimed is spent down to less than one reservation.
            while True:
                try:
                    await orch.run(request)
                    served += 1
                except tw.errors.BudgetExceeded:
                    break
    spent = budget.spent("total", "total")
    per_call = (real_input * 10.0 + 10 * 10.0) / 1e6
    assert served + refused >= 500
    assert burst <= 1.00 + 1e-9 and spent <= 1.00 + 1e-9  # hard: never crossed
    assert spent == pytest.approx(served * per_call)
    # Less than one worst-case reservation is left unspent: the bound is an upper
    # bound, not a brake.
    worst = dep.max_cost(dep.input_bound.reserve_tokens(request, estimated_prompt), 16)
    assert 1.00 - spent < worst, f"${spent:.3f} of $1.00 used ({served} served), reservation ${worst:.4f}"
    assert budget.reserved("total", "total") == 0.0


async def test_nonsense_usage_from_a_provider_leaks_no_slot_and_no_reservation() -> None:
    from tierwise.execution.limits import RateLimiter
    from tierwise.testing import FakeProvider
    from tierwise.types import Usage

    bad = Response("x", "m", "fake", usage=Usage(input_tokens=-5, output_tokens=10**400))
    provider = FakeProvider({"m": [bad, "fine"]})
    limiter = RateLimiter(max_concurrency=1)
    budget = BudgetLedger([BudgetLimit(limit_usd=0.05, period="total")])
    dep = Deployment("m", provider, "m", spec=ModelSpec("m", "fake", input=1.0, output=1.0), limiter=limiter)
    async with tw.Orchestrator([dep], budget=budget, log_level=None) as orch:
        first = await orch.run("one")
        assert first.cost_usd is None  # an unknown cost, not a crash
        assert limiter.in_flight == 0 and budget.reserved("total", "total") == 0.0
        second = await orch.run("two")  # the slot and the money came back
    assert second.text == "fine"


async def test_a_reply_missing_only_its_prompt_count_is_billed_for_the_prompt_too() -> None:
    from tierwise.testing import FakeProvider
    from tierwise.types import Usage

    provider = FakeProvider({"m": Response("x", "m", "fake", usage=Usage(input_tokens=0, output_tokens=10))})
    dep = Deployment("m", provider, "m", spec=ModelSpec("m", "fake", input=1.0, output=1.0))
    request = Request.from_prompt("a prompt of some length " * 10, max_tokens=10)
    async with tw.Orchestrator([dep], log_level=None) as orch:
        resp = await orch.run(request)
    assert resp.usage.output_tokens == 10 and resp.usage.estimated
    assert resp.usage.input_tokens == estimate_tokens(request) - 10
    assert resp.cost_usd == pytest.approx((resp.usage.input_tokens + 10) / 1e6)


async def test_a_hostile_retry_after_cools_a_deployment_for_at_most_max_cooldown() -> None:
    from tierwise.execution.health import HealthTracker
    from tierwise.testing import FakeClock

    clock = FakeClock()
    health = HealthTracker(clock=clock, max_cooldown_s=300.0)
    health.record_failure("m", tw.errors.RateLimitError("slow", retry_after=1e300))
    assert not health.ready("m")
    clock.advance(301.0)
    assert health.ready("m")
