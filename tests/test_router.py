"""Router: route choice, route info, default and unknown labels, long-context override,
sticky conversations, the ``select`` hook, nested strategies, streaming, explain,
config, and one run over real sockets (MockLLMServer)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from tierwise.catalog import ModelSpec
from tierwise.errors import AllTargetsFailed, ConfigError
from tierwise.execution.executor import Deployment, Executor
from tierwise.execution.retry import RetryPolicy
from tierwise.execution.tokens import estimate_tokens
from tierwise.orchestrator import Orchestrator
from tierwise.providers.openai import OpenAI
from tierwise.routing import Classification, KeywordClassifier
from tierwise.strategies._compose import combine
from tierwise.strategies.base import RunContext, Strategy, Target
from tierwise.strategies.router import Router
from tierwise.strategies.single import Single
from tierwise.testing import FakeProvider, MockLLMServer, MockModel
from tierwise.types import Done, Message, Request, Response, RouteInfo, StreamEvent, TextDelta, Usage

# $ per 1M tokens (input, output); windows in tokens (None: unknown)
MODELS: dict[str, tuple[float, float, int | None]] = {
    "opus": (5.0, 25.0, None),
    "sonnet": (3.0, 15.0, None),
    "gpt": (2.0, 8.0, None),
    "cheap": (0.2, 0.8, 2_000),
    "gemini": (1.0, 4.0, 1_000_000),
}
TIERS = {"complex": "opus", "standard": "sonnet", "structured": "gpt", "bulk": "cheap"}

DESIGN = (
    "Design a caching strategy for a multi-tenant SaaS application that handles 10K requests/second. "
    "Consider trade-offs between Redis cluster, local cache, and CDN caching."
)
EXTRACT = (
    "Extract all function names, parameters, and return types from this Python file "
    "and return as JSON schema."
)
TESTS = (
    "Generate unit tests for all public methods in this class. Use pytest with parametrize for edge cases."
)


def R(text: str, i: int = 1000, o: int = 100) -> Response:
    """A scripted reply with fixed usage, so costs are exact."""
    return Response(text=text, model="", provider="", usage=Usage(i, o))


def cost(alias: str, i: int = 1000, o: int = 100) -> float:
    inp, out, _ = MODELS[alias]
    return (i * inp + o * out) / 1_000_000


def deployments(replies: dict[str, Any] | None = None) -> tuple[dict[str, Deployment], FakeProvider]:
    """One FakeProvider behind every alias (wire model name = alias), so its
    ``calls`` list every model call in order."""
    provider = FakeProvider({alias: (replies or {}).get(alias, f"reply from {alias}") for alias in MODELS})
    deps = {
        alias: Deployment(
            alias,
            provider,
            alias,
            spec=ModelSpec(alias, "fake", input=inp, output=out, context_window=window),
        )
        for alias, (inp, out, window) in MODELS.items()
    }
    return deps, provider


def router(**kw: Any) -> Router:
    routes: dict[str, Target] = dict(kw.pop("routes", TIERS))
    return Router(KeywordClassifier.default(), routes, kw.pop("default", "standard"), **kw)


def orchestrator(
    strategy: Strategy, replies: dict[str, Any] | None = None
) -> tuple[Orchestrator, FakeProvider]:
    deps, provider = deployments(replies)
    orch = Orchestrator(deps, strategies={strategy.name: strategy}, retry=RetryPolicy(max_attempts=1))
    return orch, provider


def called(provider: FakeProvider) -> list[str]:
    return [model for model, _ in provider.calls]


class Fixed:
    """A classifier stub: always the same label."""

    def __init__(self, label: str) -> None:
        self.label = label

    def classify(self, request: Request) -> Classification:
        return Classification(self.label, 0.25, f"stub says {self.label}")


# -- choosing the route --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prompt", "label", "alias", "matched"),
    [
        (DESIGN, "complex", "opus", "matched 'trade-offs' (complex)"),
        (EXTRACT, "structured", "gpt", "matched 'json*' (structured)"),
        (TESTS, "bulk", "cheap", "matched 'generate ... tests' (bulk)"),
        ("What is the capital of France?", "standard", "sonnet", "no rule matched (standard)"),
    ],
)
async def test_each_tutorial_prompt_goes_to_its_route(
    prompt: str, label: str, alias: str, matched: str
) -> None:
    orch, providers = orchestrator(router(name="smart"), {alias: R(f"answer from {alias}")})
    out = await orch.run(prompt)
    assert called(providers) == [alias]
    assert out.text == f"answer from {alias}" and out.deployment == alias
    assert out.route == RouteInfo(
        f"smart.routes[{label}]", label, f"{matched} → model {alias}", out.route.score
    )
    assert out.route.score == (0.5 if label == "standard" else 0.8)
    assert out.cost_usd == pytest.approx(cost(alias))
    assert [a.path for a in out.attempts] == [f"smart.routes[{label}]"]
    # metrics are counted under the route label
    assert orch.metrics.snapshot()["labels"][label]["calls"] == 1


async def test_unknown_label_goes_to_the_default_route() -> None:
    strategy = Router(Fixed("premium"), TIERS, "standard", name="r")
    orch, providers = orchestrator(strategy)
    out = await orch.run("anything")
    assert called(providers) == ["sonnet"]
    assert out.route.label == "standard" and out.route.score == 0.25
    assert out.route.reason == "stub says premium; no route for 'premium', default 'standard' → model sonnet"


async def test_a_label_without_a_route_goes_to_the_default_route() -> None:
    routes = {"complex": "opus", "standard": "sonnet"}
    orch, providers = orchestrator(router(routes=routes))
    out = await orch.run(TESTS)
    assert called(providers) == ["sonnet"]
    assert out.route.reason.startswith("matched 'generate ... tests' (bulk); no route for 'bulk', default")


async def test_metadata_hints_reach_the_classifier() -> None:
    orch, providers = orchestrator(router())
    out = await orch.run(DESIGN, metadata={"tier": "bulk"})
    assert called(providers) == ["cheap"] and out.route.reason == "metadata tier='bulk' → model cheap"


async def test_the_whole_conversation_is_classified() -> None:
    orch, providers = orchestrator(router())
    chat = Request(
        messages=[
            Message("user", "We have a deadlock in the job scheduler."),
            Message("assistant", "Which locks does it take?"),
            Message("user", "Just these two."),
        ]
    )
    out = await orch.run(chat)
    assert called(providers) == ["opus"] and out.route.label == "complex"


# -- long-context override -----------------------------------------------------------------

BIG = "format this log: " + "lorem ipsum dolor sit amet " * 600  # bulk, ~4,000 tokens + 1,024 output


async def test_too_long_for_the_routes_model_goes_to_the_long_context_route() -> None:
    routes = {**TIERS, "long": "gemini"}
    orch, providers = orchestrator(router(routes=routes, long_context="long"))
    out = await orch.run(BIG)
    assert called(providers) == ["gemini"]
    needed = estimate_tokens(Request.from_prompt(BIG))
    assert needed > 2_000
    assert out.route.label == "long"
    assert out.route.reason == (
        f"matched 'format' (bulk); ~{needed:,} tokens exceed cheap's 2,000-token window, "
        "long-context route 'long' → model gemini"
    )
    # one that fits stays on its route
    out = await orch.run("format this log: short")
    assert called(providers)[-1] == "cheap" and out.route.label == "bulk"


async def test_no_override_when_the_window_is_unknown_or_no_long_route() -> None:
    routes = {**TIERS, "long": "gemini"}
    orch, providers = orchestrator(router(routes=routes, long_context="long"))
    await orch.run("refactor this: " + "lorem ipsum " * 5000)  # opus: window unknown
    assert called(providers) == ["opus"]
    # without long_context the router leaves it to the executor, which skips the
    # too-small model and reports it
    orch, providers = orchestrator(router(routes=routes))
    with pytest.raises(AllTargetsFailed, match="cheap"):
        await orch.run(BIG)
    assert called(providers) == []


def test_long_context_must_be_a_route() -> None:
    with pytest.raises(ValueError, match="long_context 'long' is not a route"):
        router(long_context="long")


# -- sticky conversations ------------------------------------------------------------------


async def test_sticky_conversation_stays_on_its_first_route() -> None:
    strategy = router(sticky=True, name="chat")
    orch, providers = orchestrator(strategy)
    first = await orch.run("Refactor the billing module", metadata={"conversation_id": "c1"})
    later = await orch.run("thanks! what about naming?", metadata={"conversation_id": "c1"})
    other = await orch.run("thanks! what about naming?", metadata={"conversation_id": "c2"})
    anonymous = await orch.run("thanks! what about naming?")
    assert called(providers) == ["opus", "opus", "sonnet", "sonnet"]
    assert first.route.label == later.route.label == "complex"
    assert later.route.reason == "sticky: conversation 'c1' started on 'complex' → model opus"
    assert later.route.score == 1.0
    assert other.route.label == anonymous.route.label == "standard"


async def test_a_tier_hint_overrides_a_sticky_conversation_for_that_turn() -> None:
    orch, providers = orchestrator(router(sticky=True))
    await orch.run("Refactor this", metadata={"conversation_id": 7})
    hinted = await orch.run("and this", metadata={"conversation_id": 7, "tier": "bulk"})
    after = await orch.run("and this", metadata={"conversation_id": 7})
    assert called(providers) == ["opus", "cheap", "opus"]
    assert hinted.route.reason == "metadata tier='bulk' → model cheap"
    assert after.route.label == "complex"


async def test_hinted_first_turns_are_not_remembered() -> None:
    orch, providers = orchestrator(router(sticky=True))
    await orch.run("hello", metadata={"conversation_id": "c", "tier": "complex"})
    await orch.run("hello", metadata={"conversation_id": "c"})
    await orch.run("refactor it", metadata={"conversation_id": "c"})
    assert called(providers) == ["opus", "sonnet", "sonnet"]


async def test_without_sticky_every_turn_is_classified_afresh() -> None:
    orch, providers = orchestrator(router())
    await orch.run("Refactor this", metadata={"conversation_id": "c1"})
    await orch.run("thanks", metadata={"conversation_id": "c1"})
    assert called(providers) == ["opus", "sonnet"]


async def test_sticky_memory_is_a_bounded_lru() -> None:
    strategy = router(sticky=True, sticky_size=2)
    orch, providers = orchestrator(strategy)
    for conv in ("a", "b"):
        await orch.run("Refactor this", metadata={"conversation_id": conv})
    await orch.run("hi", metadata={"conversation_id": "a"})  # touches a: b is now the oldest
    await orch.run("hi", metadata={"conversation_id": "c"})  # evicts b
    await orch.run("hi", metadata={"conversation_id": "a"})
    await orch.run("hi", metadata={"conversation_id": "b"})
    assert called(providers) == ["opus", "opus", "opus", "sonnet", "opus", "sonnet"]
    assert len(strategy._conversations) == 2


async def test_sticky_applies_to_streams_and_explain_does_not_remember() -> None:
    strategy = router(sticky=True)
    orch, providers = orchestrator(strategy)
    assert (
        strategy.explain(Request.from_prompt("refactor", metadata={"conversation_id": "s"})).label
        == "complex"
    )
    assert not strategy._conversations
    async for _ in orch.stream("hi there", metadata={"conversation_id": "s"}):
        pass
    out = await orch.run("Refactor this", metadata={"conversation_id": "s"})
    assert called(providers) == ["sonnet", "sonnet"] and out.route.label == "standard"


# -- the select hook -------------------------------------------------------------------------


class FreePlanRouter(Router):
    """Free-plan users get the cheap model whatever they ask: one method overridden."""

    def select(self, request: Request, ctx: RunContext | None = None) -> tuple[str, Target, Classification]:
        if request.metadata.get("plan") == "free":
            return "bulk", self.routes["bulk"], Classification("bulk", 1.0, "free plan")
        return super().select(request, ctx)


async def test_a_subclass_overrides_select_only() -> None:
    strategy = FreePlanRouter(KeywordClassifier.default(), TIERS, "standard", name="plans")
    orch, providers = orchestrator(strategy)
    free = await orch.run(DESIGN, metadata={"plan": "free"})
    paid = await orch.run(DESIGN, metadata={"plan": "pro"})
    assert called(providers) == ["cheap", "opus"]
    assert free.route == RouteInfo("plans.routes[bulk]", "bulk", "free plan → model cheap", 1.0)
    assert paid.route.label == "complex"
    assert (
        strategy.explain(Request.from_prompt(DESIGN, metadata={"plan": "free"})).reason == "free plan → cheap"
    )
    events = [e async for e in orch.stream(DESIGN, metadata={"plan": "free"})]
    assert isinstance(events[-1], Done) and events[-1].response.route.reason == "free plan → model cheap"


# -- nested strategies -----------------------------------------------------------------------


class DraftThenPolish(Strategy):
    """A two-call composite: a cheap draft, then the strong model."""

    kind = "polish"

    async def run(self, request: Request, ctx: RunContext) -> Response:
        draft = await ctx.call("cheap", request, name="draft")
        final = await ctx.call("opus", request, name="final")
        return combine(final, [draft, final], route=RouteInfo(ctx.path, None, "polished a draft"))


async def test_a_route_that_is_a_strategy_keeps_cost_usage_and_attempts_summed() -> None:
    routes: dict[str, Target] = {**TIERS, "complex": DraftThenPolish()}
    orch, providers = orchestrator(
        router(routes=routes, name="r"), {"cheap": R("draft", 1000, 100), "opus": R("final", 2000, 300)}
    )
    out = await orch.run(DESIGN)
    assert called(providers) == ["cheap", "opus"]
    assert out.text == "final"
    assert out.cost_usd == pytest.approx(cost("cheap", 1000, 100) + cost("opus", 2000, 300))
    assert (out.usage.input_tokens, out.usage.output_tokens) == (3000, 400)
    assert [(a.model, a.path) for a in out.attempts] == [
        ("cheap", "r.routes[complex].draft"),
        ("opus", "r.routes[complex].final"),
    ]
    assert out.route == RouteInfo(
        "r.routes[complex]", "complex", "matched 'trade-offs' (complex) → polished a draft", 0.8
    )
    # the nested strategy's own breakdown survives the router
    assert [s.name for s in out.steps] == ["r.routes[complex].draft", "r.routes[complex].final"]
    assert sum(s.cost_usd or 0.0 for s in out.steps) == pytest.approx(out.cost_usd)
    # a Single is a strategy too
    orch, providers = orchestrator(router(routes={**TIERS, "standard": Single("gpt")}))
    out = await orch.run("hello")
    assert called(providers) == ["gpt"] and out.route.label == "standard"
    assert out.route.reason == "no rule matched (standard) → model gpt"


async def test_a_router_inside_a_router() -> None:
    inner = Router(Fixed("x"), {"x": "gpt", "y": "cheap"}, "y", name="inner")
    orch, providers = orchestrator(router(routes={**TIERS, "complex": inner}, name="outer"))
    out = await orch.run(DESIGN)
    assert called(providers) == ["gpt"]
    assert out.route.strategy_path == "outer.routes[complex].routes[x]"
    assert out.route.label == "complex"
    assert out.route.reason == "matched 'trade-offs' (complex) → stub says x → model gpt"


# -- streaming --------------------------------------------------------------------------------


async def test_streaming_through_the_router() -> None:
    orch, providers = orchestrator(router(name="s"), {"gpt": R("a structured answer, streamed in pieces")})
    events: list[StreamEvent] = [e async for e in orch.stream(EXTRACT)]
    deltas = [e.text for e in events if isinstance(e, TextDelta)]
    assert len(deltas) > 1 and "".join(deltas) == "a structured answer, streamed in pieces"
    done = events[-1]
    assert isinstance(done, Done)
    assert done.response.text == "".join(deltas)
    assert done.response.route == RouteInfo(
        "s.routes[structured]", "structured", "matched 'json*' (structured) → model gpt", 0.8
    )
    assert done.response.cost_usd == pytest.approx(cost("gpt"))
    assert called(providers) == ["gpt"]


async def test_streaming_a_strategy_route_rewrites_the_final_route() -> None:
    routes: dict[str, Target] = {**TIERS, "complex": DraftThenPolish()}
    orch, _ = orchestrator(router(routes=routes), {"cheap": R("d"), "opus": R("final answer")})
    events = [e async for e in orch.stream(DESIGN)]
    done = events[-1]
    assert isinstance(done, Done) and done.response.text == "final answer"
    assert done.response.route.label == "complex"
    assert done.response.cost_usd == pytest.approx(cost("cheap") + cost("opus"))


async def test_closing_a_stream_early_closes_the_inner_stream() -> None:
    closed: list[bool] = []

    class Tracked(Strategy):
        kind = "tracked"

        async def run(self, request: Request, ctx: RunContext) -> Response:
            raise NotImplementedError

        async def stream(self, request: Request, ctx: RunContext) -> AsyncIterator[StreamEvent]:
            try:
                for piece in ("a", "b", "c"):
                    yield TextDelta(piece)
            finally:
                closed.append(True)

    deps, _ = deployments()
    strategy = router(routes={**TIERS, "standard": Tracked()})
    events = strategy.stream(Request.from_prompt("hi"), RunContext(Executor(deps), path="router"))
    assert isinstance(await anext(events), TextDelta)
    await events.aclose()  # type: ignore[attr-defined]
    assert closed == [True]


# -- explain ----------------------------------------------------------------------------------


async def test_explain_calls_nothing() -> None:
    strategy = router(routes={**TIERS, "long": "gemini"}, long_context="long", name="smart")
    orch, providers = orchestrator(strategy)
    info = orch.explain(DESIGN)
    assert info == RouteInfo("smart.routes[complex]", "complex", "matched 'trade-offs' (complex) → opus", 0.8)
    # with a context the long-context check applies too
    ctx = RunContext(orch.executor, path="smart")
    assert strategy.explain(Request.from_prompt(BIG), ctx).label == "long"
    assert strategy.explain(Request.from_prompt(BIG)).label == "bulk"  # no deployments known
    assert called(providers) == []


# -- construction and config -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "kwargs", "error"),
    [
        ((KeywordClassifier.default(), {}, "standard"), {}, ValueError),
        ((KeywordClassifier.default(), TIERS, "premium"), {}, ValueError),
        ((object(), TIERS, "standard"), {}, TypeError),
        ((KeywordClassifier.default(), {"standard": 3}, "standard"), {}, TypeError),
        ((KeywordClassifier.default(), TIERS, "standard"), {"sticky_size": 0}, ValueError),
    ],
)
def test_invalid_routers_fail_at_construction(
    args: tuple[Any, ...], kwargs: dict[str, Any], error: type
) -> None:
    with pytest.raises(error):
        Router(*args, **kwargs)


def resolve(value: Any, field: str) -> Target:
    if value in MODELS:
        return str(value)
    raise ConfigError(f"unknown target {value!r}", field=field)


def test_from_config_builds_a_router() -> None:
    r = Router.from_config(
        "smart",
        {
            "type": "router",
            "routes": {**TIERS, "long": "gemini", "math": "opus"},
            "long_context": "long",
            "sticky": True,
            "sticky_size": 50,
            "classifier": "keyword",
            "rules": {"math": {"keywords": ["integral*"], "priority": 400}},
            "extra_keywords": {"bulk": ["changelog"]},
            "long_prompt_words": 1000,
        },
        where="strategies.smart",
        target=resolve,
    )
    assert r.name == "smart" and r.default == "standard"  # the classifier's default label
    assert (r.long_context, r.sticky, r.sticky_size) == ("long", True, 50)
    assert r.routes == {**TIERS, "long": "gemini", "math": "opus"}
    assert r.explain(Request.from_prompt("integrals as JSON")).label == "math"
    assert r.explain(Request.from_prompt("update the changelog")).label == "bulk"


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"routes": TIERS, "fallback": "x"}, "strategies.r.fallback"),
        ({"routes": TIERS, "classifier": "learned"}, "strategies.r.classifier"),
        ({}, "strategies.r.routes"),
        ({"routes": {}}, "strategies.r.routes"),
        ({"routes": {"complex": "nope"}}, "strategies.r.routes.complex"),
        ({"routes": {"complex": "opus"}}, "strategies.r.default"),
        ({"routes": TIERS, "default": "premium"}, "strategies.r.default"),
        ({"routes": TIERS, "long_context": "long"}, "strategies.r.long_context"),
        ({"routes": TIERS, "sticky": "yes"}, "strategies.r.sticky"),
        ({"routes": TIERS, "sticky_size": 0}, "strategies.r.sticky_size"),
        ({"routes": TIERS, "rules": {"complex": ["ok", "... bad"]}}, "strategies.r.rules.complex[1]"),
        ({"routes": TIERS, "long_prompt_words": -1}, "strategies.r.long_prompt_words"),
    ],
)
def test_from_config_errors_name_the_field(params: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        Router.from_config("r", params, where="strategies.r", target=resolve)
    assert info.value.field == field


# -- real sockets -------------------------------------------------------------------------------


async def test_router_over_mock_llm_server() -> None:
    wire = {
        "opus": "claude-opus-4-7",
        "sonnet": "claude-sonnet-4-6",
        "gpt": "gpt-5.5",
        "cheap": "deepseek-chat",
    }
    models = {name: MockModel(reply=f"reply from {name}") for name in wire.values()}
    async with MockLLMServer(models) as server:
        provider = OpenAI(api_key="sk-test", base_url=server.base_url + "/v1")
        deps = {
            alias: Deployment(
                alias,
                provider,
                name,
                spec=ModelSpec(name, "mock", input=MODELS[alias][0], output=MODELS[alias][1]),
            )
            for alias, name in wire.items()
        }
        strategy = router(name="smart")
        async with Orchestrator(
            deps, strategies={"smart": strategy}, retry=RetryPolicy(max_attempts=1)
        ) as orch:
            outs = [await orch.run(p) for p in (DESIGN, EXTRACT, TESTS, "Hi, how are you?")]
            events = [e async for e in orch.stream(TESTS)]
        assert [r.model for r in server.requests] == [
            "claude-opus-4-7",
            "gpt-5.5",
            "deepseek-chat",
            "claude-sonnet-4-6",
            "deepseek-chat",
        ]
    assert [o.route.label for o in outs] == ["complex", "structured", "bulk", "standard"]
    assert [o.text for o in outs] == [f"reply from {wire[a]}" for a in ("opus", "gpt", "cheap", "sonnet")]
    for out, alias in zip(outs, ("opus", "gpt", "cheap", "sonnet"), strict=True):
        assert out.cost_usd is not None and out.cost_usd > 0
        assert out.route.reason.endswith(f"→ model {alias}")
        assert out.usage.input_tokens > 0
    done = events[-1]
    assert isinstance(done, Done) and done.response.text == "reply from deepseek-chat"
    assert done.response.route.label == "bulk"


async def test_router_from_orchestrator_config() -> None:
    async with MockLLMServer({"m1": MockModel(reply="one"), "m2": MockModel(reply="two")}) as server:
        config = {
            "providers": {"local": {"type": "openai", "base_url": server.base_url + "/v1", "compat": "vllm"}},
            "models": {
                "big": {"provider": "local", "model": "m1"},
                "small": {"provider": "local", "model": "m2"},
            },
            "strategies": {
                "smart": {
                    "type": "router",
                    "routes": {"complex": "big", "standard": "small"},
                    "rules": {"complex": ["kubernetes"]},
                }
            },
        }
        async with Orchestrator.from_config(config) as orch:
            assert (await orch.run("Debug our kubernetes cluster")).text == "one"
            assert (await orch.run("Refactor this")).text == "two"  # default complex keywords replaced


async def test_nested_strategy_keeps_its_step_breakdown() -> None:
    import tierwise as tw

    """A cascade behind a route must keep its per-rung steps, not collapse to one."""
    from tierwise.execution.executor import Deployment, Executor
    from tierwise.strategies.base import RunContext
    from tierwise.testing import FakeProvider
    from tierwise.verify import Check

    fake = FakeProvider(["too short", "a long enough answer"])
    executor = Executor({a: Deployment(a, fake, a) for a in ("cheap", "strong")})
    cascade = tw.Cascade(["cheap", "strong"], accept=Check(lambda r: len(r.text) > 10))
    router = tw.Router(tw.KeywordClassifier.default(), routes={"standard": cascade}, default="standard")
    resp = await router.run(tw.Request.from_prompt("hello"), RunContext(executor, path="router"))
    assert resp.text == "a long enough answer"
    assert [s.name for s in resp.steps][:2] == ["cascade[0]", "cascade[1]"]
    assert [s.accepted for s in resp.steps][:2] == [False, True]
