"""Cascade: stops at the first accepted rung, escalates on rejection and on errors,
returns the last answer when nothing passes, and bills everything it called
(rungs and verifier calls) in cost, usage, attempts and steps."""

from __future__ import annotations

from typing import Any

import pytest

from tierwise.catalog import ModelSpec
from tierwise.errors import AllTargetsFailed, AuthenticationError, ConfigError, ServerError
from tierwise.execution.executor import CallScope, Deployment, Executor
from tierwise.execution.retry import RetryPolicy
from tierwise.orchestrator import Orchestrator
from tierwise.providers.openai import OpenAI
from tierwise.strategies.base import RunContext
from tierwise.strategies.cascade import Cascade
from tierwise.strategies.single import Single
from tierwise.testing import FakeClock, FakeProvider, MockLLMServer, MockModel
from tierwise.types import Done, Request, Response, TextDelta, ToolCall, ToolCallDelta, Usage
from tierwise.verify import AllOf, AnyOf, Check, Judge, MinLength, NoRefusal, ValidJSON, Verdict

# $ per 1M tokens (input, output)
PRICES = {"cheap": (1.0, 2.0), "mid": (3.0, 15.0), "strong": (5.0, 25.0), "judge": (10.0, 30.0)}
LONG_Q = "Please explain, in a few careful sentences, " + " ".join(f"point{i}" for i in range(40)) + "?"


def R(text: str, i: int = 100, o: int = 10, **kw: Any) -> Response:
    """A scripted reply with fixed usage, so costs are exact."""
    return Response(text=text, model="", provider="", usage=Usage(i, o), **kw)


def cost(alias: str, i: int = 100, o: int = 10) -> float:
    inp, out = PRICES[alias]
    return (i * inp + o * out) / 1_000_000


def build(**scripts: Any) -> tuple[Executor, dict[str, FakeProvider]]:
    providers = {alias: FakeProvider(script, name=alias) for alias, script in scripts.items()}
    deps = {
        alias: Deployment(
            alias, p, alias, spec=ModelSpec(alias, "fake", input=PRICES[alias][0], output=PRICES[alias][1])
        )
        for alias, p in providers.items()
    }
    return Executor(deps, retry=RetryPolicy(max_attempts=1)), providers


async def run(cascade: Cascade, ex: Executor, prompt: str = "hi", **kw: Any) -> Response:
    return await cascade.run(Request.from_prompt(prompt), RunContext(ex, path="cascade", **kw))


# ---------------------------------------------------------------- stopping and escalating


async def test_stops_at_first_accepted_rung() -> None:
    ex, p = build(cheap=R('{"a": 1}'), mid=R("{}"), strong=R("{}"))
    out = await run(Cascade(["cheap", "mid", "strong"], accept=ValidJSON()), ex)
    assert out.text == '{"a": 1}' and out.deployment == "cheap"
    assert len(p["cheap"].calls) == 1 and not p["mid"].calls and not p["strong"].calls
    assert out.route.label == "cascade[0]"
    assert out.route.strategy_path == "cascade.cascade[0]"
    assert out.route.reason.startswith("accepted at rung 0 (cheap)")
    assert out.cost_usd == pytest.approx(cost("cheap"))
    assert [s.accepted for s in out.steps] == [True]


async def test_escalates_on_rejection() -> None:
    ex, p = build(cheap=R("not json", 100, 10), mid=R('{"ok": true}', 120, 30), strong=R("{}"))
    out = await run(Cascade(["cheap", "mid", "strong"], accept=ValidJSON()), ex)
    assert out.text == '{"ok": true}' and out.deployment == "mid"
    assert not p["strong"].calls
    assert out.route.label == "cascade[1]" and out.route.strategy_path == "cascade.cascade[1]"
    assert "accepted at rung 1 (mid)" in out.route.reason and "rung 0 (cheap) rejected" in out.route.reason
    assert out.cost_usd == pytest.approx(cost("cheap", 100, 10) + cost("mid", 120, 30))
    assert out.usage.input_tokens == 220 and out.usage.output_tokens == 40
    assert [(a.model, a.path) for a in out.attempts] == [
        ("cheap", "cascade.cascade[0]"),
        ("mid", "cascade.cascade[1]"),
    ]
    assert [(s.name, s.accepted) for s in out.steps] == [("cascade[0]", False), ("cascade[1]", True)]
    assert "json: invalid" in out.steps[0].note


async def test_escalates_on_errors() -> None:
    ex, p = build(
        cheap=ServerError("overloaded", status_code=503), mid=AuthenticationError("bad key"), strong=R("[1]")
    )
    out = await run(Cascade(["cheap", "mid", "strong"], accept=ValidJSON()), ex)
    assert out.text == "[1]" and out.route.label == "cascade[2]"
    assert "rung 0 (cheap) failed" in out.route.reason and "rung 1 (mid) failed" in out.route.reason
    assert [(a.model, a.outcome) for a in out.attempts] == [
        ("cheap", "error"),
        ("mid", "error"),
        ("strong", "ok"),
    ]
    assert [s.accepted for s in out.steps] == [False, False, True]
    assert out.steps[0].note.startswith("failed: AllTargetsFailed")
    assert out.cost_usd == pytest.approx(cost("strong"))
    assert len(p["cheap"].calls) == len(p["mid"].calls) == 1


async def test_none_accepted_returns_last_answer() -> None:
    ex, _ = build(cheap=R("a"), mid=R("b"), strong=R("c"))
    out = await run(Cascade(["cheap", "mid", "strong"], accept=ValidJSON()), ex)
    assert out.text == "c" and out.deployment == "strong"
    assert out.route.reason.startswith("not accepted")
    assert out.route.label == "cascade[2]"
    assert [s.accepted for s in out.steps] == [False, False, False]
    assert out.cost_usd == pytest.approx(cost("cheap") + cost("mid") + cost("strong"))


async def test_last_answer_is_the_last_that_answered() -> None:
    ex, _ = build(cheap=R("a"), mid=R("b"), strong=ServerError("down", status_code=500))
    out = await run(Cascade(["cheap", "mid", "strong"], accept=ValidJSON()), ex)
    assert out.text == "b" and out.route.reason.startswith("not accepted")
    assert "rung 2 (strong) failed" in out.route.reason
    assert len(out.attempts) == 3


async def test_all_rungs_raise() -> None:
    ex, _ = build(
        cheap=ServerError("x", status_code=500),
        mid=ServerError("y", status_code=500),
        strong=AuthenticationError("z"),
    )
    with pytest.raises(AllTargetsFailed) as info:
        await run(Cascade(["cheap", "mid", "strong"], accept=ValidJSON()), ex)
    assert len(info.value.exceptions) == 3
    assert all(isinstance(e, AllTargetsFailed) for e in info.value.exceptions)
    assert [a.model for a in info.value.attempts] == ["cheap", "mid", "strong"]


async def test_config_error_propagates() -> None:
    ex, _ = build(cheap=R("a"))
    with pytest.raises(ConfigError):
        await run(Cascade(["nope", "cheap"], accept=ValidJSON()), ex)


# ---------------------------------------------------------------- billing verifier calls


async def test_judge_calls_are_billed() -> None:
    ex, p = build(
        cheap=R("cheap answer", 100, 10),
        mid=R("mid answer", 100, 20),
        strong=R("x"),
        judge=[R("0.2", 300, 2), R("0.9", 310, 3)],
    )
    cascade = Cascade(["cheap", "mid", "strong"], accept=NoRefusal() & Judge("judge", threshold=0.7))
    out = await run(cascade, ex)
    assert out.text == "mid answer" and not p["strong"].calls
    expected = cost("cheap", 100, 10) + cost("judge", 300, 2) + cost("mid", 100, 20) + cost("judge", 310, 3)
    assert out.cost_usd == pytest.approx(expected)
    assert out.usage.input_tokens == 810 and out.usage.output_tokens == 35
    assert [(a.model, a.path) for a in out.attempts] == [
        ("cheap", "cascade.cascade[0]"),
        ("judge", "cascade.cascade[0].judge"),
        ("mid", "cascade.cascade[1]"),
        ("judge", "cascade.cascade[1].judge"),
    ]
    assert [(s.name, s.accepted) for s in out.steps] == [
        ("cascade[0]", False),
        ("cascade[0].judge", None),
        ("cascade[1]", True),
        ("cascade[1].judge", None),
    ]
    assert sum(s.cost_usd or 0 for s in out.steps) == pytest.approx(expected)
    assert out.route.score == pytest.approx(0.9)
    assert "judge (judge): 0.90 >= 0.7" in out.route.reason


async def test_verify_last_false_skips_the_last_check() -> None:
    ex, p = build(cheap=R("a"), strong=R("b"), judge=R("0.1"))
    out = await run(Cascade(["cheap", "strong"], accept=Judge("judge"), verify_last=False), ex)
    assert out.text == "b" and len(p["judge"].calls) == 1  # only rung 0 was judged
    assert "without verification" in out.route.reason
    assert out.steps[-1].accepted is None


async def test_verifier_failure_rejects_and_escalates() -> None:
    ex, _ = build(cheap=R("a"), strong=R("b"), judge=AuthenticationError("bad key"))

    async def grade(request: Request, response: Response, ctx: RunContext) -> bool:
        await ctx.call("judge", request, name="grade")  # raises AllTargetsFailed
        return True

    out = await run(Cascade(["cheap", "strong"], accept=Check(grade)), ex)
    assert out.text == "b"
    assert "verifier failed: AllTargetsFailed" in out.steps[0].note


async def test_verifier_failure_is_noted_as_no_verdict() -> None:
    ex, _ = build(cheap=R("a"), strong=R("b"), judge=AuthenticationError("bad key"))

    async def grade(request: Request, response: Response, ctx: RunContext) -> bool:
        await ctx.call("judge", request, name="grade")  # raises AllTargetsFailed
        return True

    out = await run(Cascade(["cheap", "strong"], accept=Check(grade)), ex)
    note = out.steps[0].note
    assert note.startswith("verifier failed: AllTargetsFailed") and not note.startswith(
        "verifier failed: verifier"
    )
    assert "rung 0 (cheap) rejected (no verdict)" in out.route.reason


async def test_undecided_verdict_escalates_with_a_verifier_failed_note() -> None:
    # the judge is down for rung 0, then scores rung 1's answer 0.2 (a real rejection)
    ex, p = build(
        cheap=R("a"), mid=R("b"), strong=R("c"), judge=[AuthenticationError("bad key"), R("0.2"), R("0.9")]
    )
    out = await run(Cascade(["cheap", "mid", "strong"], accept=Judge("judge")), ex)
    assert out.text == "c" and len(p["judge"].calls) == 3
    assert [(s.name, s.accepted) for s in out.steps] == [
        ("cascade[0]", False),
        ("cascade[1]", False),
        ("cascade[1].judge", None),
        ("cascade[2]", True),
        ("cascade[2].judge", None),
    ]
    assert out.steps[0].note.startswith("verifier failed: judge (judge): call failed: AllTargetsFailed")
    assert out.steps[1].note == "judge (judge): 0.20 < 0.7"  # decided: no prefix
    assert out.steps[3].note == "judge (judge): 0.90 >= 0.7"
    # the route reason keeps the verifier's own words, and says which rung had no verdict
    assert out.route.reason.startswith("accepted at rung 2 (strong): judge (judge): 0.90 >= 0.7 [")
    assert "rung 0 (cheap) rejected (no verdict); rung 1 (mid) rejected]" in out.route.reason
    assert "verifier failed" not in out.route.reason


async def test_undecided_last_rung_and_unparseable_reply() -> None:
    ex, _ = build(cheap=R("a"), strong=R("b"), judge=R("no idea"))
    out = await run(Cascade(["cheap", "strong"], accept=Judge("judge")), ex)
    assert out.text == "b" and [s.accepted for s in out.steps if "." not in s.name] == [False, False]
    assert out.steps[0].note == "verifier failed: judge (judge): unparseable reply 'no idea'"
    assert out.steps[2].note == "verifier failed: judge (judge): unparseable reply 'no idea'"
    assert out.route.reason.startswith(
        "not accepted: no rung passed; returning rung 1 (strong), the last answer: "
        "judge (judge): unparseable reply 'no idea' [rung 0 (cheap) rejected (no verdict)]"
    )


async def test_unknown_price_is_none_not_zero() -> None:
    ex, _ = build(cheap=R("a"), strong=R("[]"))
    ex.deployments["cheap"].spec = None
    out = await run(Cascade(["cheap", "strong"], accept=ValidJSON()), ex)
    assert out.text == "[]" and out.cost_usd is None


# ---------------------------------------------------------------- hooks and nesting


class LongEnough(Cascade):
    """Overrides only the accept hook."""

    async def accept(self, request: Request, response: Response, ctx: RunContext) -> Verdict:
        ok = len(response.text) >= 10
        return Verdict(ok, None, f"{len(response.text)} chars")


async def test_subclass_overrides_accept_alone() -> None:
    ex, p = build(cheap=R("short"), mid=R("long enough answer"), strong=R("x"))
    out = await run(LongEnough(["cheap", "mid", "strong"]), ex)  # no accept= needed
    assert out.text == "long enough answer" and not p["strong"].calls
    assert out.route.reason == "accepted at rung 1 (mid): 18 chars [rung 0 (cheap) rejected]"
    with pytest.raises(TypeError):
        Cascade(["cheap"])  # the base class needs a verifier


class AskGrader(Cascade):
    """An accept hook that calls a model and forgets to list it in Verdict.calls."""

    async def accept(self, request: Request, response: Response, ctx: RunContext) -> Verdict:
        graded = await ctx.call("judge", Request.from_prompt(f"grade: {response.text}"), name="grade")
        return Verdict(graded.text == "yes", None, f"grader: {graded.text}")


async def test_hook_model_calls_are_billed_even_if_not_reported() -> None:
    ex, _ = build(cheap=R("a"), mid=R("b"), judge=[R("no", 50, 1), R("yes", 60, 1)])
    out = await run(AskGrader(["cheap", "mid"]), ex)
    assert out.text == "b"
    expected = cost("cheap") + cost("judge", 50, 1) + cost("mid") + cost("judge", 60, 1)
    assert out.cost_usd == pytest.approx(expected)
    assert [s.name for s in out.steps] == ["cascade[0]", "cascade[0].grade", "cascade[1]", "cascade[1].grade"]


async def test_nested_strategies_as_rungs() -> None:
    ex, p = build(cheap=R("{}", 100, 10), mid=R("[]"), strong=R("ok then", 200, 20))
    inner = Cascade(["cheap", "mid"], accept=ValidJSON(), name="inner")
    outer = Cascade([inner, Single("strong")], accept=Check(lambda r: "ok" in r.text), name="outer")
    out = await outer.run(Request.from_prompt("hi"), RunContext(ex, path="outer"))
    assert out.text == "ok then" and not p["mid"].calls
    assert [a.path for a in out.attempts] == ["outer.cascade[0].cascade[0]", "outer.cascade[1]"]
    assert out.cost_usd == pytest.approx(cost("cheap", 100, 10) + cost("strong", 200, 20))
    assert out.usage.input_tokens == 300
    assert out.route.strategy_path == "outer.cascade[1]"
    assert [(s.name, s.accepted) for s in out.steps] == [("cascade[0]", False), ("cascade[1]", True)]


async def test_deadline_stops_escalation() -> None:
    # The first rung takes 2 s of a 1 s deadline: answered, but no time to escalate.
    clock = FakeClock()
    cheap = FakeProvider(R("a"), name="cheap", latency_s=2.0, clock=clock)
    strong = FakeProvider(R("[]"), name="strong")
    deps = {
        alias: Deployment(alias, prov, alias, spec=ModelSpec(alias, "fake", input=1.0, output=1.0))
        for alias, prov in (("cheap", cheap), ("strong", strong))
    }
    ex = Executor(deps, retry=RetryPolicy(max_attempts=1), clock=clock)
    out = await run(Cascade(["cheap", "strong"], accept=ValidJSON()), ex, deadline=clock.now() + 1.0)
    assert out.text == "a" and not strong.calls
    assert out.route.reason.startswith("not accepted") and "deadline" in out.route.reason


# ---------------------------------------------------------------- stream, explain, orchestrator


async def test_stream_replays_the_decided_answer() -> None:
    call = ToolCall("c1", "lookup", {"q": "x"})
    ex, _ = build(cheap=R("nope"), strong=R("found", tool_calls=[call], finish_reason="tool_calls"))
    cascade = Cascade(["cheap", "strong"], accept=Check(lambda r: bool(r.tool_calls)))
    ctx = RunContext(ex, path="cascade")
    events = [e async for e in cascade.stream(Request.from_prompt("hi"), ctx)]
    assert isinstance(events[0], TextDelta) and events[0].text == "found"
    assert isinstance(events[1], ToolCallDelta) and events[1].name == "lookup"
    assert isinstance(events[-1], Done)
    assert events[-1].response.cost_usd == pytest.approx(cost("cheap") + cost("strong"))


def test_explain_calls_nothing() -> None:
    cascade = Cascade(["cheap", "mid", "strong"], accept=ValidJSON() & Judge("judge", threshold=0.8))
    info = cascade.explain(Request.from_prompt("hi"))
    assert info.label == "cascade[0]"
    assert "cheap → mid → strong" in info.reason and "judge (judge) score >= 0.8" in info.reason


async def test_through_the_orchestrator_every_call_is_counted() -> None:
    ex, _ = build(cheap=R("no"), mid=R("[1]"), judge=R("0.9"))
    cascade = Cascade(["cheap", "mid"], accept=ValidJSON() & Judge("judge"), name="tiered")
    async with Orchestrator(ex.deployments, strategies={"tiered": cascade}) as orch:
        out = await orch.run("question")
        snap = orch.metrics.snapshot()
    assert out.route.strategy_path == "tiered.cascade[1]"
    assert snap["requests"]["attempts"] == 3  # cheap, mid, and the judge on mid
    assert snap["requests"]["cost_usd"] == pytest.approx(out.cost_usd)
    assert out.cost_usd == pytest.approx(cost("cheap") + cost("mid") + cost("judge"))


# ---------------------------------------------------------------- config


def resolve(value: Any, field: str) -> str:
    if value not in PRICES:
        raise ConfigError(f"unknown model alias {value!r}", field=field)
    return str(value)


def test_from_config() -> None:
    params = {
        "type": "cascade",
        "targets": ["cheap", "mid", "strong"],
        "accept": ["finish_reason", "json", {"min_length": {"ratio": 0.5}}, {"judge": {"target": "judge"}}],
    }
    c = Cascade.from_config("tiered", params, where="strategies.tiered", target=resolve)
    assert c.name == "tiered" and c.targets == ["cheap", "mid", "strong"]
    assert isinstance(c.verifier, AllOf) and len(c.verifier.verifiers) == 4
    any_of = Cascade.from_config(
        "t", {"targets": ["cheap"], "accept_any": ["json", "no_refusal"]}, where="s.t", target=resolve
    )
    assert isinstance(any_of.verifier, AnyOf)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"targets": ["cheap"], "accept": ["json", "jason"]}, "s.t.accept[1]"),
        ({"targets": ["cheap", "gpt9"], "accept": ["json"]}, "s.t.targets[1]"),
        ({"targets": [], "accept": ["json"]}, "s.t.targets"),
        ({"targets": ["cheap"]}, "s.t.accept"),
        ({"targets": ["cheap"], "accept": ["json"], "accept_any": ["json"]}, "s.t.accept_any"),
        ({"targets": ["cheap"], "accept_any": ["json", "nah"]}, "s.t.accept_any[1]"),
        ({"targets": ["cheap"], "accept": ["json"], "stop_early": True}, "s.t.stop_early"),
        ({"targets": ["cheap"], "accept": ["json"], "verify_last": "no"}, "s.t.verify_last"),
    ],
)
def test_from_config_errors(params: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        Cascade.from_config("t", params, where="s.t", target=resolve)
    assert info.value.field == field


# ---------------------------------------------------------------- over real sockets


async def test_cascade_over_mock_llm_server() -> None:
    models = {
        "cheap-m": MockModel(reply="I'm sorry, but I can't help with that."),
        "mid-m": MockModel(reply="Too short."),
        "strong-m": MockModel(
            reply="A thorough answer that covers every point raised, one by one, at length."
        ),
    }
    async with MockLLMServer(models) as server:
        provider = OpenAI(api_key="sk-test", base_url=server.base_url + "/v1")
        deps = {
            alias: Deployment(
                alias,
                provider,
                f"{alias}-m",
                spec=ModelSpec(f"{alias}-m", "mock", input=PRICES[alias][0], output=PRICES[alias][1]),
            )
            for alias in ("cheap", "mid", "strong")
        }
        cascade = Cascade(["cheap", "mid", "strong"], accept=NoRefusal() & MinLength(), name="c")
        async with Orchestrator(deps, strategies={"c": cascade}, retry=RetryPolicy(max_attempts=1)) as orch:
            out = await orch.run(LONG_Q)
        assert [r.model for r in server.requests] == ["cheap-m", "mid-m", "strong-m"]
    assert out.text.startswith("A thorough answer") and out.deployment == "strong"
    assert out.route.label == "cascade[2]"
    assert [(s.accepted, s.note.split(":")[0]) for s in out.steps] == [
        (False, "refusal"),
        (False, "no refusal; min_length"),
        (True, "no refusal; min_length"),
    ]
    expected = 0.0
    for a in out.attempts:
        assert a.outcome == "ok" and a.usage is not None and a.usage.input_tokens > 0
        expected += cost(a.model, a.usage.input_tokens, a.usage.output_tokens)
    assert len(out.attempts) == 3
    assert out.cost_usd is not None and out.cost_usd > 0
    assert out.cost_usd == pytest.approx(expected)
    assert out.usage.input_tokens == sum(a.usage.input_tokens for a in out.attempts if a.usage)


async def test_calls_reported_only_in_the_verdict_are_billed() -> None:
    ex, _ = build(cheap=R("a"), mid=R("b"), judge=R("0.9", 40, 2))

    async def out_of_band(request: Request, response: Response, ctx: RunContext) -> Verdict:
        # a call that bypasses ctx.call (e.g. through another client) but is reported
        graded = await ctx.executor.complete("judge", request, CallScope("elsewhere"))
        return Verdict(True, None, "graded elsewhere", [graded])

    out = await run(Cascade(["cheap", "mid"], accept=Check(out_of_band)), ex)
    assert out.text == "a"
    assert out.cost_usd == pytest.approx(cost("cheap") + cost("judge", 40, 2))
    assert [a.model for a in out.attempts] == ["cheap", "judge"]
