"""Pipeline: templates over earlier outputs, fan-out with bounded concurrency,
per-step cost and latency, nesting, failures, streaming, config.

In-process tests use FakeProvider / FunctionProvider on a FakeClock so per-step
latencies are exact virtual durations; the research pipeline of the tutorial
(decompose → research ×N in parallel → synthesize) also runs end to end over
MockLLMServer sockets, streamed and not.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from contextlib import aclosing
from typing import Any

import anyio
import pytest

from tierwise.catalog import ModelSpec
from tierwise.errors import AllTargetsFailed, ConfigError, ServerError
from tierwise.execution.budget import BudgetLedger, BudgetLimit
from tierwise.execution.executor import Deployment, Executor
from tierwise.execution.limits import RateLimiter
from tierwise.execution.retry import RetryPolicy
from tierwise.orchestrator import Orchestrator
from tierwise.providers.openai import OpenAI
from tierwise.strategies.aggregate import MajorityVote
from tierwise.strategies.base import RunContext
from tierwise.strategies.ensemble import Ensemble
from tierwise.strategies.pipeline import Pipeline, Step, parse_list
from tierwise.testing import FakeClock, FakeProvider, FunctionProvider, MockLLMServer, MockModel
from tierwise.testing.fakes import estimate_tokens
from tierwise.testing.mock_server import MockRequest
from tierwise.types import Done, Message, Request, Response, TextDelta

NO_RETRY = RetryPolicy(max_attempts=1)
PRICES = {"cheap": (0.5, 1.0), "mid": (3.0, 15.0), "best": (15.0, 75.0), "x": (1.0, 2.0), "y": (2.0, 3.0)}


def spec(alias: str) -> ModelSpec:
    inp, out = PRICES.get(alias, (1.0, 1.0))
    return ModelSpec(alias, "fake", input=inp, output=out)


def executor(provider: Any, aliases: Sequence[str], *, clock: FakeClock | None = None) -> Executor:
    deps = {a: Deployment(a, provider, a, spec=spec(a)) for a in aliases}
    kwargs: dict[str, Any] = {"clock": clock} if clock is not None else {}
    return Executor(deps, retry=NO_RETRY, **kwargs)


def cost_of(alias: str, prompt: str, reply: str) -> float:
    inp, out = PRICES[alias]
    return (max(1, estimate_tokens(prompt)) * inp + estimate_tokens(reply) * out) / 1e6


async def run(p: Pipeline, ex: Executor, prompt: str | Request = "Why is the sky blue?") -> Response:
    request = prompt if isinstance(prompt, Request) else Request.from_prompt(prompt)
    return await p.run(request, RunContext(ex, path=p.name))


def last_user(request: Request) -> str:
    return next(m.text for m in reversed(request.messages) if m.role == "user")


# -- parse_list -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "items"),
    [
        ('["a?", "b?", "c?"]', ["a?", "b?", "c?"]),
        ('Here you go:\n```json\n["one", "two"]\n```\nHope it helps', ["one", "two"]),
        ('Sure! ["x", " ", "y"] — done.', ["x", "y"]),
        ('{"questions": ["q1", "q2"]}', ["q1", "q2"]),
        ('[{"q": 1}, 2]', ['{"q": 1}', "2"]),
        (
            "Sub-questions:\n1. What is A?\n2) What is B?\n(3) What is C?",
            ["What is A?", "What is B?", "What is C?"],
        ),
        ("- alpha\n* beta\n• gamma\n+ delta", ["alpha", "beta", "gamma", "delta"]),
        ("1. First part\n   continued here\n2. Second", ["First part continued here", "Second"]),
        ("plain one\n\n plain two \n", ["plain one", "plain two"]),
        ("", []),
        ("   \n  ", []),
    ],
)
def test_parse_list(text: str, items: list[str]) -> None:
    assert parse_list(text) == items


# -- templates ----------------------------------------------------------------------------------


async def test_templates_see_the_input_and_every_earlier_output_by_name() -> None:
    def reply(model: str, request: Request) -> str:
        prompt = last_user(request)
        return {"x": f"<x saw {prompt}>", "y": f"<y saw {prompt}>"}[model]

    provider = FunctionProvider(reply)
    p = Pipeline(
        [
            Step("outline", "x", "Outline: {input}"),
            Step("draft", "y", "Q={input} O={outline}", system="Be brief."),
            Step("final", "x", "{outline} + {draft}"),
        ],
        name="p",
    )
    resp = await run(p, executor(provider, "xy"), "sky?")
    prompts = [last_user(r) for _, r in provider.calls]
    assert prompts[0] == "Outline: sky?"
    assert prompts[1] == "Q=sky? O=<x saw Outline: sky?>"
    assert prompts[2] == "<x saw Outline: sky?> + <y saw Q=sky? O=<x saw Outline: sky?>>"
    assert provider.calls[1][1].system == "Be brief."
    assert resp.text == f"<x saw {prompts[2]}>"
    assert resp.route.label == "final" and resp.route.reason == "pipeline: outline → draft → final"
    assert resp.route.strategy_path == "p.steps[2]"
    assert [a.path for a in resp.attempts] == ["p.steps[0]", "p.steps[1]", "p.steps[2]"]


async def test_literal_braces_and_step_params() -> None:
    provider = FakeProvider("ok")
    p = Pipeline([Step("s", "x", 'Return JSON like {{"a": 1}} for {input}', params={"max_tokens": 7})])
    await run(p, executor(provider, "x"), "this")
    sent = provider.calls[0][1]
    assert last_user(sent) == 'Return JSON like {"a": 1} for this'
    assert sent.max_tokens == 7


async def test_step_requests_inherit_metadata_and_user_but_not_sampling_params() -> None:
    provider = FakeProvider("ok")
    p = Pipeline([Step("s", "x", "{input}")])
    original = Request.from_prompt("hi", max_tokens=5, user="u1", metadata={"team": "search"})
    await run(p, executor(provider, "x"), original)
    sent = provider.calls[0][1]
    assert sent.metadata == {"team": "search"} and sent.user == "u1" and sent.max_tokens is None


@pytest.mark.parametrize(
    ("steps", "field", "message"),
    [
        (
            [Step("a", "x", "{input}"), Step("b", "x", "{a} {reserch}")],
            "steps[1].prompt",
            "unknown name .reserch.",
        ),
        ([Step("a", "x", "{b}"), Step("b", "x", "{input}")], "steps[0].prompt", "runs later"),
        ([Step("a", "x", "{item}")], "steps[0].prompt", "only set in a fan-out step"),
        ([Step("a", "x", "{input"), Step("b", "x", "x")], "steps[0].prompt", "invalid template"),
        ([Step("a", "x", "{}")], "steps[0].prompt", "positional"),
        ([Step("a", "x", "{input.upper}")], "steps[0].prompt", "attribute"),
        ([Step("a", "x", "{input}"), Step("a", "x", "{input}")], "steps[1].name", "duplicate"),
        (
            [Step("a", "x", "{input}"), Step("b", "x", "{item}", fan_out="zz")],
            "steps[1].fan_out",
            "unknown name",
        ),
        (
            [Step("a", "x", "{input}"), Step("b", "x", "same for all", fan_out="a")],
            "steps[1].prompt",
            "{item}",
        ),
        (
            [Step("a", "x", "{input}", fan_out="b"), Step("b", "x", "{input}")],
            "steps[0].fan_out",
            "runs later",
        ),
    ],
)
def test_template_errors_name_the_step_and_field_at_construction(
    steps: list[Step], field: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        Pipeline(steps)
    assert info.value.field == field


def test_unknown_field_error_names_the_field_and_suggests() -> None:
    with pytest.raises(ConfigError) as info:
        Pipeline([Step("research", "x", "{input}"), Step("s", "x", "use {reserch}")])
    assert "{reserch}" in str(info.value) and "'research'" in str(info.value)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"name": "input"}, "name"),
        ({"name": "has space"}, "name"),
        ({"name": "1st"}, "name"),
        ({"concurrency": 0}, "concurrency"),
        ({"concurrency": True}, "concurrency"),
        ({"params": {"max_token": 3}}, "params"),
        ({"on_item_error": "ignore"}, "on_item_error"),
        ({"target": 3}, "target"),
    ],
)
def test_step_validation(kwargs: dict[str, Any], field: str) -> None:
    base: dict[str, Any] = {"name": "s", "target": "x", "prompt": "{input}"}
    base.update(kwargs)
    with pytest.raises(ConfigError) as info:
        Step(base.pop("name"), base.pop("target"), base.pop("prompt"), **base)
    assert info.value.field == field


def test_empty_pipeline_is_refused() -> None:
    with pytest.raises(ConfigError, match="non-empty"):
        Pipeline([])


# -- fan-out ----------------------------------------------------------------------------


class Tracker:
    """Counts research calls in flight; each item takes a different virtual time so
    completion order differs from item order."""

    def __init__(self, clock: FakeClock, durations: Mapping[str, float]) -> None:
        self.clock = clock
        self.durations = durations
        self.active = 0
        self.max_active = 0
        self.finished: list[str] = []

    async def reply(self, model: str, request: Request) -> str:
        prompt = last_user(request)
        if model == "cheap":
            return json.dumps(list(self.durations))
        if model == "mid":
            item = prompt.removeprefix("Research: ")
            self.active += 1
            self.max_active = max(self.max_active, self.active)
            try:
                await self.clock.sleep(self.durations[item])
            finally:
                self.active -= 1
            self.finished.append(item)
            return f"finding({item})"
        return f"synthesis of [{prompt}]"


def research_pipeline(concurrency: int = 2, **research: Any) -> Pipeline:
    return Pipeline(
        [
            Step("decompose", "cheap", "Sub-questions of {input} as a JSON list"),
            Step(
                "research",
                "mid",
                "Research: {item}",
                fan_out="decompose",
                concurrency=concurrency,
                **research,
            ),
            Step("synthesize", "best", "Q: {input}\nFindings:\n{research}"),
        ],
        name="rp",
    )


async def test_fan_out_over_a_json_list_is_parallel_bounded_and_ordered() -> None:
    clock = FakeClock()
    durations = {"q1": 4.0, "q2": 1.0, "q3": 3.0, "q4": 1.0, "q5": 2.0, "q6": 1.0}
    tracker = Tracker(clock, durations)
    provider = FunctionProvider(tracker.reply, clock=clock)
    resp = await run(
        research_pipeline(concurrency=2), executor(provider, ["cheap", "mid", "best"], clock=clock)
    )

    assert tracker.max_active == 2  # bounded, and actually parallel
    assert tracker.finished != list(durations)  # items finished out of order…
    joined = "\n\n".join(f"finding({q})" for q in durations)
    assert resp.text == f"synthesis of [Q: Why is the sky blue?\nFindings:\n{joined}]"  # …but joined in order
    research = resp.steps[1]
    assert research.note == "fan-out over 6 item(s)"
    # Two lanes: q1(4) | q2(1) q3(3) | then q4, q5, q6 fill the lanes as they free up → 6 s.
    assert research.latency_ms == pytest.approx(6000.0)
    assert [a.path for a in resp.attempts][1:7] == [f"rp.steps[1][{j}]" for j in range(6)]


async def test_fan_out_over_numbered_lines_and_concurrency_one_is_sequential() -> None:
    clock = FakeClock()

    async def reply(model: str, request: Request) -> str:
        prompt = last_user(request)
        if model == "cheap":
            return "Here are the sub-questions:\n1. Why blue?\n2. Why not violet?\n3. What about sunsets?"
        await clock.sleep(1.0)
        return f"[{prompt}]"

    p = Pipeline(
        [
            Step("decompose", "cheap", "{input}"),
            Step("research", "mid", "{item}", fan_out="decompose", concurrency=1, join=" | "),
        ]
    )
    resp = await run(p, executor(FunctionProvider(reply, clock=clock), ["cheap", "mid"], clock=clock))
    assert resp.text == "[Why blue?] | [Why not violet?] | [What about sunsets?]"
    assert resp.steps[1].latency_ms == pytest.approx(3000.0)  # one at a time
    assert resp.route.label == "research"


async def test_fan_out_over_the_input_itself() -> None:
    provider = FunctionProvider(lambda model, request: last_user(request).upper())
    p = Pipeline([Step("each", "x", "{item}", fan_out="input", join=",")])
    resp = await run(p, executor(provider, "x"), "- a\n- b")
    assert resp.text == "A,B"


async def test_fan_out_over_nothing_runs_no_calls() -> None:
    provider = FunctionProvider(lambda model, request: "" if model == "cheap" else f"S[{last_user(request)}]")
    resp = await run(research_pipeline(), executor(provider, ["cheap", "mid", "best"]))
    assert [m for m, _ in provider.calls] == ["cheap", "best"]
    assert resp.steps[1].note == "fan-out over 0 item(s)" and resp.steps[1].cost_usd == 0.0


async def test_custom_parse() -> None:
    provider = FunctionProvider(lambda model, request: "a;b;c" if model == "cheap" else last_user(request))
    p = Pipeline(
        [
            Step("d", "cheap", "{input}"),
            Step("r", "mid", "<{item}>", fan_out="d", parse=lambda text: text.split(";"), join=""),
        ]
    )
    assert (await run(p, executor(provider, ["cheap", "mid"]))).text == "<a><b><c>"


# -- cost and latency per step -------------------------------------------------------------


async def test_per_step_cost_latency_and_summed_totals_are_exact() -> None:
    clock = FakeClock()
    latency = {"cheap": 1.0, "mid": 2.0, "best": 4.0}
    items = ["q1", "q2", "q3"]

    async def reply(model: str, request: Request) -> str:
        await clock.sleep(latency[model])
        prompt = last_user(request)
        return {"cheap": json.dumps(items), "mid": f"F:{prompt}", "best": "final answer"}[model]

    q = "Why is the sky blue?"
    resp = await run(
        research_pipeline(concurrency=4),
        executor(FunctionProvider(reply, clock=clock), ["cheap", "mid", "best"], clock=clock),
        q,
    )

    decompose_prompt = f"Sub-questions of {q} as a JSON list"
    c0 = cost_of("cheap", decompose_prompt, json.dumps(items))
    c1 = [cost_of("mid", f"Research: {i}", f"F:Research: {i}") for i in items]
    findings = "\n\n".join(f"F:Research: {i}" for i in items)
    c2 = cost_of("best", f"Q: {q}\nFindings:\n{findings}", "final answer")

    assert [s.name for s in resp.steps] == ["decompose", "research", "synthesize"]
    assert [s.cost_usd for s in resp.steps] == pytest.approx([c0, sum(c1), c2], rel=1e-12)
    assert [s.latency_ms for s in resp.steps] == pytest.approx([1000.0, 2000.0, 4000.0])
    assert [s.model for s in resp.steps] == ["cheap", "mid", "best"]
    assert resp.steps[1].usage.output_tokens == sum(estimate_tokens(f"F:Research: {i}") for i in items)
    assert resp.cost_usd == pytest.approx(c0 + sum(c1) + c2, rel=1e-12)
    assert resp.latency_ms == pytest.approx(7000.0)
    assert resp.usage.input_tokens == sum(s.usage.input_tokens for s in resp.steps)
    assert len(resp.attempts) == 5


# -- failures -------------------------------------------------------------------------------


async def test_a_failing_step_raises_and_later_steps_never_run() -> None:
    provider = FakeProvider({"x": "fine", "y": ServerError("down", status_code=503)})
    p = Pipeline([Step("a", "x", "{input}"), Step("b", "y", "{a}"), Step("c", "x", "{b}")], name="p")
    with pytest.raises(AllTargetsFailed) as info:
        await run(p, executor(provider, "xy"))
    assert [m for m, _ in provider.calls] == ["x", "y"]
    assert any("step 'b'" in note for note in info.value.__notes__)


async def test_a_failing_fan_out_item_fails_the_step_and_cancels_its_siblings() -> None:
    clock = FakeClock()
    cancelled: list[str] = []

    async def reply(model: str, request: Request) -> str:
        item = last_user(request)
        if model == "cheap":
            return '["ok", "bad", "slow"]'
        if item == "bad":
            await clock.sleep(1.0)
            raise ServerError("item failed", status_code=500)
        if item == "slow":
            try:
                await clock.sleep(100.0)
            except BaseException:
                cancelled.append(item)
                raise
        return item

    p = Pipeline(
        [Step("d", "cheap", "{input}"), Step("r", "mid", "{item}", fan_out="d"), Step("s", "best", "{r}")]
    )
    ex = executor(FunctionProvider(reply, clock=clock), ["cheap", "mid", "best"], clock=clock)
    with pytest.raises(AllTargetsFailed, match="item failed") as info:
        await run(p, ex)
    assert cancelled == ["slow"]
    assert clock.now() == pytest.approx(1.0)
    assert any("fan-out item 1 of 3" in n for n in info.value.__notes__)


async def test_skip_mode_leaves_failed_items_out_and_notes_them() -> None:
    async def reply(model: str, request: Request) -> str:
        item = last_user(request)
        if model == "cheap":
            return '["a", "bad", "c"]'
        if item == "bad":
            raise ServerError("nope", status_code=500)
        return item.upper()

    p = Pipeline(
        [
            Step("d", "cheap", "{input}"),
            Step("r", "mid", "{item}", fan_out="d", on_item_error="skip", join=""),
        ]
    )
    resp = await run(p, executor(FunctionProvider(reply), ["cheap", "mid"]))
    assert resp.text == "AC"
    assert resp.steps[1].note == "fan-out over 3 item(s); skipped failed item(s) 1"


async def test_skip_mode_still_fails_when_every_item_failed() -> None:
    provider = FakeProvider({"cheap": '["a", "b"]', "mid": ServerError("nope", status_code=500)})
    p = Pipeline(
        [Step("d", "cheap", "{input}"), Step("r", "mid", "{item}", fan_out="d", on_item_error="skip")]
    )
    with pytest.raises(AllTargetsFailed, match="every one of the 2 fan-out items failed") as info:
        await run(p, executor(provider, ["cheap", "mid"]))
    assert len(info.value.exceptions) == 2


# -- nesting ----------------------------------------------------------------------------------


async def test_a_step_may_be_an_ensemble() -> None:
    provider = FakeProvider({"cheap": "Paris", "mid": "paris.", "best": "Rome", "x": "final"})
    vote = Ensemble(["cheap", "mid", "best"], MajorityVote(), name="vote")
    p = Pipeline(
        [Step("answer", vote, "Capital? {input}"), Step("polish", "x", "Polish: {answer}")], name="p"
    )
    q = "France"
    resp = await run(p, executor(provider, ["cheap", "mid", "best", "x"]), q)
    assert resp.text == "final"
    assert last_user(provider.calls[-1][1]) == "Polish: Paris"
    paths = [a.path for a in resp.attempts]
    assert paths == [
        "p.steps[0].ensemble[0]",
        "p.steps[0].ensemble[1]",
        "p.steps[0].ensemble[2]",
        "p.steps[1]",
    ]
    member_cost = sum(
        cost_of(m, f"Capital? {q}", r) for m, r in (("cheap", "Paris"), ("mid", "paris."), ("best", "Rome"))
    )
    assert resp.steps[0].cost_usd == pytest.approx(member_cost, rel=1e-12)
    assert resp.cost_usd == pytest.approx(member_cost + cost_of("x", "Polish: Paris", "final"), rel=1e-12)
    assert resp.steps[0].path == "p.steps[0]"


async def test_fan_out_items_may_be_ensembles() -> None:
    provider = FakeProvider({"cheap": '["1", "2"]', "x": "yes", "y": "yes"})
    p = Pipeline(
        [
            Step("d", "cheap", "{input}"),
            Step("r", Ensemble(["x", "y"], name="e"), "{item}", fan_out="d", join="+"),
        ],
        name="p",
    )
    resp = await run(p, executor(provider, ["cheap", "x", "y"]))
    assert resp.text == "yes+yes"
    assert "p.steps[1][1].ensemble[1]" in [a.path for a in resp.attempts]


async def test_a_pipeline_may_nest_in_a_pipeline() -> None:
    provider = FunctionProvider(lambda model, request: f"({last_user(request)})")
    inner = Pipeline([Step("i1", "x", "in:{input}"), Step("i2", "x", "{i1}!")], name="inner")
    outer = Pipeline([Step("o1", inner, "{input}"), Step("o2", "x", "out:{o1}")], name="outer")
    resp = await run(outer, executor(provider, "x"), "q")
    assert resp.text == "(out:((in:q)!))"
    assert [a.path for a in resp.attempts] == [
        "outer.steps[0].steps[0]",
        "outer.steps[0].steps[1]",
        "outer.steps[1]",
    ]


# -- hooks -------------------------------------------------------------------------------------


async def test_render_hook_customizes_prompt_building() -> None:
    class FewShot(Pipeline):
        async def render(self, step: Step, variables: Mapping[str, str]) -> Request:
            request = await super().render(step, variables)
            request.messages[-1:-1] = [Message("user", "2+2?"), Message("assistant", "4")]
            return Request(messages=request.messages, metadata={"step": step.name})

    provider = FakeProvider("ok")
    await run(
        FewShot([Step("s", "x", "{input}")]),
        executor(provider, "x"),
        Request.from_prompt("3+3?", metadata={"t": 1}),
    )
    sent = provider.calls[0][1]
    assert [m.text for m in sent.messages] == ["2+2?", "4", "3+3?"]
    assert sent.metadata == {"t": 1, "step": "s"}  # the hook's own metadata wins, the original's is merged


async def test_join_results_hook() -> None:
    class Numbered(Pipeline):
        def join_results(self, step: Step, items: Sequence[str], answers: Sequence[Response]) -> str:
            return "\n".join(f"{i}: {a.text}" for i, a in zip(items, answers, strict=True))

    provider = FunctionProvider(
        lambda model, request: '["p", "q"]' if model == "cheap" else last_user(request) * 2
    )
    p = Numbered([Step("d", "cheap", "{input}"), Step("r", "mid", "{item}", fan_out="d")])
    assert (await run(p, executor(provider, ["cheap", "mid"]))).text == "p: pp\nq: qq"


# -- streaming --------------------------------------------------------------------------------


async def test_stream_runs_earlier_steps_then_streams_the_last_one() -> None:
    provider = FakeProvider(
        {"cheap": '["a", "b"]', "mid": "finding", "best": "The synthesis streams in pieces."}, chunk_chars=5
    )
    p = research_pipeline()
    ex = executor(provider, ["cheap", "mid", "best"])
    events = [e async for e in p.stream(Request.from_prompt("Why?"), RunContext(ex, path="rp"))]
    deltas = [e.text for e in events if isinstance(e, TextDelta)]
    assert len(deltas) > 3 and "".join(deltas) == "The synthesis streams in pieces."
    assert isinstance(events[-1], Done)
    done = events[-1].response
    assert done.text == "The synthesis streams in pieces."
    assert [s.name for s in done.steps] == ["decompose", "research", "synthesize"]
    assert done.steps[2].note == "streamed"
    assert len(done.attempts) == 4  # decompose, 2 × research, synthesize
    assert done.cost_usd == pytest.approx(sum(s.cost_usd or 0.0 for s in done.steps), rel=1e-12)
    # Only the last step streamed: every earlier step had finished before the first delta.
    assert [m for m, _ in provider.calls] == ["cheap", "mid", "mid", "best"]


async def test_a_consumer_stopping_early_releases_the_last_steps_slot_and_reservation() -> None:
    provider = FakeProvider({"x": "first", "y": "a long synthesis " * 20}, chunk_chars=4)
    limiter = RateLimiter(max_concurrency=1)
    ledger = BudgetLedger([BudgetLimit(limit_usd=100.0, period="day")])
    deps = {a: Deployment(a, provider, a, spec=spec(a), limiter=limiter) for a in "xy"}
    ex = Executor(deps, retry=NO_RETRY, budget=ledger)
    p = Pipeline([Step("a", "x", "{input}"), Step("b", "y", "{a}")])
    ctx = RunContext(ex)
    async with aclosing(p.stream(Request.from_prompt("q"), ctx)) as events:
        async for event in events:
            assert isinstance(event, TextDelta)
            assert limiter.in_flight == 1 and ledger.reserved() > 0  # the last step is mid-stream
            break
    assert limiter.in_flight == 0 and ledger.reserved() == 0.0
    # The finished step at its cost, the abandoned one at an estimate of what it streamed.
    first, cut = ctx.ledger.attempts
    assert (first.outcome, cut.outcome) == ("ok", "cancelled")
    assert cut.usage is not None and cut.usage.estimated and cut.cost_usd
    assert ledger.spent() == pytest.approx(cost_of("x", "q", "first") + cut.cost_usd)


async def test_stream_of_a_fan_out_last_step_emits_the_joined_output() -> None:
    provider = FakeProvider({"cheap": '["a", "b"]', "mid": "m"})
    p = Pipeline([Step("d", "cheap", "{input}"), Step("r", "mid", "{item}", fan_out="d", join="/")])
    events = [
        e async for e in p.stream(Request.from_prompt("x"), RunContext(executor(provider, ["cheap", "mid"])))
    ]
    assert [type(e) for e in events] == [TextDelta, Done]
    assert isinstance(events[0], TextDelta) and events[0].text == "m/m"


# -- explain / config ------------------------------------------------------------------------


def test_explain() -> None:
    info = research_pipeline(concurrency=3).explain(Request.from_prompt("x"))
    assert info.label == "synthesize"
    assert info.reason == (
        "pipeline: decompose(cheap) → research(mid, fan-out over decompose ×≤3) → synthesize(best)"
    )


def resolver(known: Sequence[str] = ("cheap", "mid", "best")) -> Callable[[Any, str], Any]:
    def target(value: Any, field: str) -> Any:
        if not isinstance(value, str) or value not in known:
            raise ConfigError(f"unknown model alias {value!r}", field=field)
        return value

    return target


RESEARCH_CONFIG: dict[str, Any] = {
    "type": "pipeline",
    "steps": [
        {"name": "decompose", "target": "cheap", "prompt": "Split: {input}", "params": {"max_tokens": 200}},
        {
            "name": "research",
            "target": "mid",
            "prompt": "Research: {item}",
            "fan_out": "decompose",
            "concurrency": 3,
        },
        {"name": "synthesize", "target": "best", "prompt": "{input}\n{research}", "system": "Be thorough."},
    ],
}


def test_from_config_builds_the_research_pipeline() -> None:
    p = Pipeline.from_config("research", RESEARCH_CONFIG, where="strategies.research", target=resolver())
    assert p.name == "research" and [s.name for s in p.steps] == ["decompose", "research", "synthesize"]
    assert p.steps[1].fan_out == "decompose" and p.steps[1].concurrency == 3
    assert p.steps[0].params == {"max_tokens": 200} and p.steps[2].system == "Be thorough."


def _with_step(i: int, **changes: Any) -> dict[str, Any]:
    steps = [dict(s) for s in RESEARCH_CONFIG["steps"]]
    for key, value in changes.items():
        if value is None:
            steps[i].pop(key, None)
        else:
            steps[i][key] = value
    return {"steps": steps}


@pytest.mark.parametrize(
    ("params", "field", "message"),
    [
        (_with_step(1, prmpt="x"), "strategies.r.steps[1].prmpt", "did you mean 'prompt'"),
        (_with_step(1, prompt=None), "strategies.r.steps[1].prompt", "required"),
        (_with_step(2, target="opus"), "strategies.r.steps[2].target", "unknown model alias 'opus'"),
        (
            _with_step(2, prompt="{input} {reserch}"),
            "strategies.r.steps[2].prompt",
            "did you mean 'research'",
        ),
        (_with_step(1, concurrency=0), "strategies.r.steps[1].concurrency", ">= 1"),
        (_with_step(1, fan_out="nope"), "strategies.r.steps[1].fan_out", "unknown name 'nope'"),
        (_with_step(0, params={"max_tokenz": 1}), "strategies.r.steps[0].params", "max_tokenz"),
        ({"steps": []}, "strategies.r.steps", "non-empty"),
        ({"steps": ["decompose"]}, "strategies.r.steps[0]", "must be a table"),
        ({**RESEARCH_CONFIG, "stepz": []}, "strategies.r.stepz", "did you mean 'steps'"),
    ],
)
def test_from_config_errors_name_the_field(params: dict[str, Any], field: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        Pipeline.from_config("r", params, where="strategies.r", target=resolver())
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}: ")


# -- the research pipeline over real sockets -------------------------------------------------


SUBQUESTIONS = ["What scatters light?", "Why blue more than red?", "Why not violet?"]


def _user_text(req: MockRequest) -> str:
    messages = req.json()["messages"]
    return str(messages[-1]["content"])


def research_server() -> MockLLMServer:
    def decompose(req: MockRequest) -> str:
        assert "Why is the sky blue?" in _user_text(req)
        return "Sure:\n```json\n" + json.dumps(SUBQUESTIONS) + "\n```"

    def research(req: MockRequest) -> str:
        return "Finding: " + _user_text(req).removeprefix("Research: ")

    def synthesize(req: MockRequest) -> str:
        text = _user_text(req)
        found = sum(f"Finding: {q}" in text for q in SUBQUESTIONS)
        return f"Synthesis from {found} findings: Rayleigh scattering favours short wavelengths."

    return MockLLMServer(
        {
            "cheap": MockModel(reply=decompose),
            "mid": MockModel(reply=research, latency_ms=30),
            "best": MockModel(reply=synthesize, stream_chunk_delay_ms=1),
        }
    )


def research_orchestrator(server: MockLLMServer) -> Orchestrator:
    provider = OpenAI(base_url=server.base_url + "/v1", compat="vllm")
    deps = [Deployment(m, provider, m, spec=spec(m)) for m in ("cheap", "mid", "best")]
    pipeline = Pipeline.from_config(
        "research",
        {
            "steps": [
                {
                    "name": "decompose",
                    "target": "cheap",
                    "prompt": "Break into 3 sub-questions (JSON list): {input}",
                },
                {"name": "research", "target": "mid", "prompt": "Research: {item}", "fan_out": "decompose"},
                {
                    "name": "synthesize",
                    "target": "best",
                    "prompt": "Question: {input}\nResearch:\n{research}",
                },
            ]
        },
        where="strategies.research",
        target=resolver(),
    )
    return Orchestrator(deps, strategies={"research": pipeline}, retry=NO_RETRY)


def _check_research_response(resp: Response, server: MockLLMServer) -> None:
    assert resp.text == "Synthesis from 3 findings: Rayleigh scattering favours short wavelengths."
    assert [r.model for r in server.requests] == ["cheap", "mid", "mid", "mid", "best"]
    assert [s.name for s in resp.steps] == ["decompose", "research", "synthesize"]
    assert resp.steps[1].note == "fan-out over 3 item(s)"
    assert [a.path for a in resp.attempts] == [
        "research.steps[0]",
        "research.steps[1][0]",
        "research.steps[1][1]",
        "research.steps[1][2]",
        "research.steps[2]",
    ]
    # Each step's cost is its calls' reported usage at that model's price; the total is their sum.
    for step in resp.steps:
        inp, out = PRICES[step.model]
        want = (step.usage.input_tokens * inp + step.usage.output_tokens * out) / 1e6
        assert step.cost_usd == pytest.approx(want, rel=1e-12)
        assert step.usage.input_tokens > 0 and step.usage.output_tokens > 0
    assert resp.cost_usd == pytest.approx(sum(s.cost_usd or 0.0 for s in resp.steps), rel=1e-12)
    # The three research calls (30 ms each) ran in parallel: the step took less
    # wall time than its calls did one after another (robust on a loaded machine).
    research = [a.latency_ms for a in resp.attempts if a.path.startswith("research.steps[1]")]
    assert len(research) == 3 and min(research) >= 30.0
    assert 30.0 <= resp.steps[1].latency_ms < sum(research)


async def test_research_pipeline_end_to_end_over_mock_server() -> None:
    async with research_server() as server, research_orchestrator(server) as orch:
        resp = await orch.run("Why is the sky blue?", strategy="research")
        _check_research_response(resp, server)
        snapshot = orch.metrics.snapshot()
        assert snapshot  # the orchestrator recorded the composite request


async def test_research_pipeline_streams_the_synthesis_over_mock_server() -> None:
    async with research_server() as server, research_orchestrator(server) as orch:
        deltas: list[str] = []
        done: Response | None = None
        with anyio.fail_after(10):
            async for event in orch.stream("Why is the sky blue?", strategy="research"):
                if isinstance(event, TextDelta):
                    deltas.append(event.text)
                elif isinstance(event, Done):
                    done = event.response
        assert done is not None and len(deltas) > 1
        assert "".join(deltas) == done.text
        _check_research_response(done, server)
        assert server.requests[-1].stream and not any(r.stream for r in list(server.requests)[:-1])
