"""Executor: retries, fallback chains, health ordering, cost, metrics, budget, cache, rate limits.

Everything runs in-process (FakeProvider / FunctionProvider) on a FakeClock, so
backoff delays, cooldowns and rate-limit windows are asserted exactly, in virtual
seconds, without sleeping. Each test pins one rule of DESIGN.md's executor so a
regression names the rule it broke.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from tierwise.catalog import ModelSpec
from tierwise.errors import (
    AllTargetsFailed,
    AuthenticationError,
    BadRequestError,
    BudgetExceeded,
    ContextWindowExceeded,
    NotFoundError,
    PermissionDeniedError,
    ProviderError,
    ProviderTimeout,
    RateLimitError,
    ServerError,
)
from tierwise.execution.budget import BudgetLedger, BudgetLimit
from tierwise.execution.cache import MemoryCache
from tierwise.execution.executor import Deployment, Executor
from tierwise.execution.health import HealthTracker
from tierwise.execution.limits import RateLimiter
from tierwise.execution.retry import RetryPolicy
from tierwise.execution.tokens import estimate_tokens, prompt_upper_bound
from tierwise.observe.metrics import MetricsCollector
from tierwise.orchestrator import Orchestrator
from tierwise.testing import FakeClock, FakeProvider, FunctionProvider
from tierwise.types import Request, Response, Usage

NO_RETRY = RetryPolicy(max_attempts=1)


def spec(
    name: str,
    *,
    input: float | None = 1.0,
    output: float | None = 2.0,
    cached_input: float | None = None,
    window: int | None = None,
) -> ModelSpec:
    return ModelSpec(
        name, "fake", input=input, output=output, cached_input=cached_input, context_window=window
    )


def dep(
    alias: str,
    provider: Any,
    *,
    fallbacks: Sequence[str] = (),
    window: int | None = None,
    priced: bool = True,
    limiter: RateLimiter | None = None,
) -> Deployment:
    """A deployment whose wire model name is its alias (FakeProvider scripts key on it)."""
    return Deployment(
        alias,
        provider,
        alias,
        spec=spec(alias, window=window) if priced else None,
        limiter=limiter,
        fallbacks=tuple(fallbacks),
    )


class Scripted:
    """A FunctionProvider playing per-model scripts and recording ``(model, clock time)``
    of every call, so tests can assert *when* each retry happened."""

    def __init__(self, clock: FakeClock, scripts: dict[str, list[Any]], latency_s: float = 0.0) -> None:
        self.clock = clock
        self.latency_s = latency_s
        self.scripts = {k: list(v) for k, v in scripts.items()}
        self.log: list[tuple[str, float]] = []
        self.provider = FunctionProvider(self._reply, name="fake", clock=clock)

    async def _reply(self, model: str, request: Request) -> str | Response:
        self.log.append((model, self.clock.now()))
        script = self.scripts[model]
        item = script.pop(0) if len(script) > 1 else script[0]
        if self.latency_s:
            await self.clock.sleep(self.latency_s)  # failures take time too
        if isinstance(item, ProviderError):
            err = copy.copy(item)
            err.provider, err.model = "fake", model
            raise err
        assert isinstance(item, str | Response)
        return item

    @property
    def models(self) -> list[str]:
        return [m for m, _ in self.log]

    @property
    def times(self) -> list[float]:
        return [t for _, t in self.log]


def err503() -> ServerError:
    return ServerError("overloaded", status_code=503)


def req(prompt: str = "hello", **params: Any) -> Request:
    return Request.from_prompt(prompt, **params)


async def settle(n: int = 50) -> None:
    for _ in range(n):
        await anyio.lowlevel.checkpoint()


# -- retries ---------------------------------------------------------------------


async def test_retries_with_exponential_backoff_and_retry_after_as_a_floor() -> None:
    clock = FakeClock()
    s = Scripted(clock, {"a": [err503(), RateLimitError("slow", status_code=429, retry_after=7.0), "ok"]})
    retry = RetryPolicy(max_attempts=3, initial_backoff=1.0, multiplier=2.0, jitter=False)
    ex = Executor({"a": dep("a", s.provider)}, retry=retry, clock=clock)

    resp = await ex.complete("a", req())

    assert resp.text == "ok" and resp.deployment == "a" and not resp.fallback
    # 1 s backoff after the first failure; after the 429 the 2 s backoff is raised to 7 s.
    assert s.times == [0.0, 1.0, 8.0]
    assert clock.now() == 8.0
    assert [(a.outcome, a.error_type, a.retry) for a in resp.attempts] == [
        ("error", "ServerError", 0),
        ("error", "RateLimitError", 1),
        ("ok", None, 2),
    ]


async def test_jittered_backoff_never_comes_back_before_retry_after() -> None:
    clock = FakeClock()
    limited = RateLimitError("slow", status_code=429, retry_after=5.0)
    s = Scripted(clock, {"a": [limited, limited, "ok"]})
    retry = RetryPolicy(max_attempts=3, initial_backoff=1.0, jitter=True)
    ex = Executor({"a": dep("a", s.provider)}, retry=retry, clock=clock, seed=7)

    resp = await ex.complete("a", req())

    assert resp.text == "ok"
    assert s.times == [0.0, 5.0, 10.0]


async def test_retries_stop_at_max_attempts_then_the_chain_moves_on() -> None:
    clock = FakeClock()
    s = Scripted(clock, {"a": [err503()], "b": ["from b"]})
    retry = RetryPolicy(max_attempts=3, initial_backoff=0.5, multiplier=2.0, jitter=False)
    ex = Executor(
        {"a": dep("a", s.provider, fallbacks=["b"]), "b": dep("b", s.provider)}, retry=retry, clock=clock
    )

    resp = await ex.complete("a", req())

    assert s.log == [("a", 0.0), ("a", 0.5), ("a", 1.5), ("b", 1.5)]
    assert resp.text == "from b" and resp.deployment == "b" and resp.fallback
    assert [(a.model, a.outcome, a.retry) for a in resp.attempts] == [
        ("a", "error", 0),
        ("a", "error", 1),
        ("a", "error", 2),
        ("b", "ok", 0),
    ]


async def test_retry_after_beyond_max_retry_after_falls_back_without_waiting() -> None:
    clock = FakeClock()
    s = Scripted(
        clock, {"a": [RateLimitError("come back later", status_code=429, retry_after=120.0)], "b": ["b"]}
    )
    retry = RetryPolicy(max_attempts=5, max_retry_after=30.0)
    ex = Executor(
        {"a": dep("a", s.provider, fallbacks=["b"]), "b": dep("b", s.provider)}, retry=retry, clock=clock
    )

    resp = await ex.complete("a", req())

    assert s.models == ["a", "b"]
    assert clock.now() == 0.0
    assert resp.deployment == "b"


async def test_retry_deadline_bounds_the_whole_request() -> None:
    clock = FakeClock()
    s = Scripted(clock, {"a": [err503()], "b": ["b"]})
    # Second backoff (8 s) would end past the 5 s deadline: stop retrying a, go to b.
    retry = RetryPolicy(max_attempts=5, initial_backoff=4.0, multiplier=2.0, jitter=False, deadline=5.0)
    ex = Executor(
        {"a": dep("a", s.provider, fallbacks=["b"]), "b": dep("b", s.provider)}, retry=retry, clock=clock
    )

    resp = await ex.complete("a", req())

    assert s.log == [("a", 0.0), ("a", 4.0), ("b", 4.0)]
    assert resp.deployment == "b"


@pytest.mark.parametrize(
    "error",
    [
        AuthenticationError("bad key", status_code=401),
        PermissionDeniedError("not allowed", status_code=403),
        RateLimitError("quota", status_code=429, error_code="insufficient_quota", retryable=False),
    ],
    ids=["401", "403", "insufficient_quota"],
)
async def test_non_retryable_errors_are_never_retried(error: Exception) -> None:
    clock = FakeClock()
    s = Scripted(clock, {"a": [error], "b": ["b"]})
    retry = RetryPolicy(max_attempts=5, initial_backoff=1.0)
    ex = Executor(
        {"a": dep("a", s.provider, fallbacks=["b"]), "b": dep("b", s.provider)}, retry=retry, clock=clock
    )

    resp = await ex.complete("a", req())

    assert s.models == ["a", "b"]  # one try on a, then the next deployment
    assert clock.now() == 0.0
    assert resp.attempts[0].error_type == type(error).__name__


# -- fallback chains ----------------------------------------------------------------


def chain_executor(provider: Any, clock: FakeClock) -> Executor:
    deployments = {
        "a": dep("a", provider, fallbacks=["b"]),
        "b": dep("b", provider, fallbacks=["c", "a"]),
        "c": dep("c", provider, fallbacks=["d"]),
        "d": dep("d", provider),
        "e": dep("e", provider),
        "f": dep("f", provider),
        "g": dep("g", provider, fallbacks=["b", "x"]),
        "x": dep("x", provider),
    }
    return Executor(deployments, retry=NO_RETRY, default_fallbacks=["e", "b"], clock=clock)


def test_chain_follows_fallbacks_transitively_then_the_default_chain() -> None:
    ex = chain_executor(FakeProvider("x"), FakeClock())
    names = {alias: [d.alias for d in ex.chain(alias)] for alias in ("a", "d", "e", "g")}
    assert names["a"] == ["a", "b", "c", "d", "e"]  # b's "a" is a cycle: each deployment once
    assert names["d"] == ["d", "e", "b"]
    assert names["e"] == ["e", "b"]
    # A model's own fallbacks come before their fallbacks (breadth first).
    assert names["g"] == ["g", "b", "x", "c", "a", "d", "e"]


async def test_every_deployment_in_the_chain_is_tried_once_in_order() -> None:
    clock = FakeClock()
    s = Scripted(clock, {m: [err503()] for m in "abcdefgx"})
    ex = chain_executor(s.provider, clock)

    with pytest.raises(AllTargetsFailed) as info:
        await ex.complete("a", req())

    assert s.models == ["a", "b", "c", "d", "e"]
    assert [a.model for a in info.value.attempts] == ["a", "b", "c", "d", "e"]
    assert all(isinstance(e, ServerError) for e in info.value.exceptions)
    assert [getattr(e, "model", None) for e in info.value.exceptions] == ["a", "b", "c", "d", "e"]


async def test_plain_bad_request_stops_the_chain_and_is_raised_as_itself() -> None:
    clock = FakeClock()
    s = Scripted(clock, {"a": [BadRequestError("temperature must be <= 2", status_code=400)], "b": ["b"]})
    ex = Executor(
        {"a": dep("a", s.provider, fallbacks=["b"]), "b": dep("b", s.provider)},
        retry=RetryPolicy(max_attempts=3),
        clock=clock,
    )

    with pytest.raises(BadRequestError) as info:
        await ex.complete("a", req())

    assert type(info.value) is BadRequestError
    assert s.models == ["a"]


async def test_not_found_falls_back_because_it_is_about_the_deployment() -> None:
    """A 404 says this deployment's model does not exist for its key, not that the
    request is wrong: the next deployment (another model) may well serve it."""
    clock = FakeClock()
    s = Scripted(clock, {"a": [NotFoundError("no such model", status_code=404)], "b": ["b"]})
    ex = Executor(
        {"a": dep("a", s.provider, fallbacks=["b"]), "b": dep("b", s.provider)}, retry=NO_RETRY, clock=clock
    )

    resp = await ex.complete("a", req())

    assert s.models == ["a", "b"] and resp.deployment == "b"


async def test_context_window_error_falls_back_only_to_larger_windows() -> None:
    clock = FakeClock()
    s = Scripted(
        clock,
        {
            "a": [ContextWindowExceeded("prompt is too long", status_code=400)],
            "b": ["b"],
            "c": ["c"],
            "d": ["d"],
        },
    )
    ex = Executor(
        {
            "a": dep("a", s.provider, window=8_000, fallbacks=["b", "c", "d"]),
            "b": dep("b", s.provider, window=4_000),
            "c": dep("c", s.provider, window=8_000),
            "d": dep("d", s.provider, window=128_000),
        },
        retry=RetryPolicy(max_attempts=3),
        clock=clock,
    )

    resp = await ex.complete("a", req())

    assert s.models == ["a", "d"]
    assert resp.deployment == "d" and resp.fallback
    assert [(a.model, a.outcome, a.error_type) for a in resp.attempts] == [
        ("a", "error", "ContextWindowExceeded"),
        ("b", "skipped", "ContextWindowExceeded"),
        ("c", "skipped", "ContextWindowExceeded"),
        ("d", "ok", None),
    ]


async def test_prompt_larger_than_a_known_window_skips_that_model_without_a_call() -> None:
    clock = FakeClock()
    s = Scripted(clock, {"small": ["small"], "big": ["big"]})
    ex = Executor(
        {
            "small": dep("small", s.provider, window=8_000, fallbacks=["big"]),
            "big": dep("big", s.provider, window=200_000),
        },
        retry=NO_RETRY,
        clock=clock,
    )
    long_prompt = "lorem ipsum " * 4_000  # ~12k tokens

    resp = await ex.complete("small", req(long_prompt))
    assert s.models == ["big"]
    assert [(a.model, a.outcome) for a in resp.attempts] == [("small", "skipped"), ("big", "ok")]
    assert resp.fallback

    await ex.complete("small", req("short"))
    assert s.models == ["big", "small"]


async def test_cooling_deployments_move_to_the_end_and_are_still_tried_last() -> None:
    clock = FakeClock()
    s = Scripted(
        clock,
        {"a": [err503(), "from a"], "b": ["from b", "from b", err503()], "c": [err503()]},
    )
    health = HealthTracker(failure_threshold=1, cooldown_s=30.0, clock=clock)
    ex = Executor(
        {
            "a": dep("a", s.provider, fallbacks=["b", "c"]),
            "b": dep("b", s.provider),
            "c": dep("c", s.provider),
        },
        retry=NO_RETRY,
        health=health,
        clock=clock,
    )

    first = await ex.complete("a", req())
    assert s.models == ["a", "b"] and first.deployment == "b"

    s.log.clear()
    second = await ex.complete("a", req())  # a is cooling: b first, a never reached
    assert s.models == ["b"]
    assert second.deployment == "b"
    assert second.fallback, "served by a fallback while the primary cools: still a fallback"

    s.log.clear()
    third = await ex.complete("a", req())  # b and c fail: the cooling a is the last resort
    assert s.models == ["b", "c", "a"]
    assert third.deployment == "a" and third.text == "from a" and not third.fallback


async def test_all_targets_failed_holds_every_attempts_error_in_order() -> None:
    clock = FakeClock()
    s = Scripted(
        clock,
        {
            "a": [ServerError("first", status_code=500), ServerError("second", status_code=502)],
            "b": [RateLimitError("slow", status_code=429, retry_after=1.0), ProviderTimeout("slow read")],
        },
    )
    ex = Executor(
        {"a": dep("a", s.provider, fallbacks=["b"]), "b": dep("b", s.provider)},
        retry=RetryPolicy(max_attempts=2, initial_backoff=0.1, jitter=False),
        clock=clock,
    )

    with pytest.raises(AllTargetsFailed) as info:
        await ex.complete("a", req())

    group = info.value
    assert [type(e).__name__ for e in group.exceptions] == [
        "ServerError",
        "ServerError",
        "RateLimitError",
        "ProviderTimeout",
    ]
    assert [getattr(e, "status_code", None) for e in group.exceptions] == [500, 502, 429, None]
    assert [(a.model, a.outcome, a.error_type) for a in group.attempts] == [
        ("a", "error", "ServerError"),
        ("a", "error", "ServerError"),
        ("b", "error", "RateLimitError"),
        ("b", "error", "ProviderTimeout"),
    ]


# -- attempts and cost -------------------------------------------------------------------


async def test_attempts_list_each_failure_then_the_success_with_latency_and_cost() -> None:
    clock = FakeClock()
    s = Scripted(clock, {"a": [err503()], "b": [err503(), "from b"]}, latency_s=0.5)
    ex = Executor(
        {"a": dep("a", s.provider, fallbacks=["b"]), "b": dep("b", s.provider)},
        retry=RetryPolicy(max_attempts=2, initial_backoff=1.0, jitter=False),
        clock=clock,
    )

    resp = await ex.complete("a", req("hi there"))

    assert [(a.model, a.outcome, a.retry) for a in resp.attempts] == [
        ("a", "error", 0),
        ("a", "error", 1),
        ("b", "error", 0),
        ("b", "ok", 1),
    ]
    assert [a.latency_ms for a in resp.attempts] == [500.0] * 4
    ok = resp.attempts[-1]
    assert ok.usage == resp.usage
    expected = (resp.usage.input_tokens * 1.0 + resp.usage.output_tokens * 2.0) / 1e6
    assert ok.cost_usd == pytest.approx(expected)
    assert [a.cost_usd for a in resp.attempts[:-1]] == [0.0, 0.0, 0.0]
    assert resp.cost_usd == pytest.approx(sum(a.cost_usd or 0.0 for a in resp.attempts))
    assert resp.deployment == "b" and resp.model == "b" and resp.fallback


async def test_cost_follows_the_catalog_formula() -> None:
    clock = FakeClock()
    usage = Usage(input_tokens=1_000, output_tokens=200, cached_input_tokens=400)
    reply = Response(text="priced", model="m", provider="fake", usage=usage)
    provider = FakeProvider({"m": reply}, clock=clock)
    d = Deployment("m", provider, "m", spec=ModelSpec("m", "fake", input=3.0, output=15.0, cached_input=0.3))
    ex = Executor({"m": d}, clock=clock)

    resp = await ex.complete("m", req())

    # 600 uncached × $3 + 400 cached × $0.30 + 200 output × $15, per million tokens.
    assert resp.cost_usd == pytest.approx((600 * 3.0 + 400 * 0.3 + 200 * 15.0) / 1e6)
    assert resp.attempts[-1].cost_usd == resp.cost_usd


async def test_provider_reported_cost_wins_over_the_catalog() -> None:
    clock = FakeClock()
    reply = Response(text="x", model="m", provider="fake", usage=Usage(100, 100, reported_cost_usd=0.0123))
    ex = Executor({"m": Deployment("m", FakeProvider(reply, clock=clock), "m", spec=spec("m"))}, clock=clock)
    assert (await ex.complete("m", req())).cost_usd == 0.0123


async def test_unknown_price_gives_none_with_exactly_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    provider = FakeProvider("x", clock=clock)
    ex = Executor(
        {
            "free": dep("free", provider, priced=False),
            "half": Deployment("half", provider, "half", spec=spec("half", output=None)),
        },
        clock=clock,
    )
    caplog.set_level(logging.WARNING, logger="tierwise.executor")

    for _ in range(3):
        resp = await ex.complete("free", req())
        assert resp.cost_usd is None
        assert resp.attempts[-1].cost_usd is None
    warnings = [r for r in caplog.records if r.name == "tierwise.executor" and r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "free" in warnings[0].getMessage()

    caplog.clear()
    assert (await ex.complete("half", req())).cost_usd is None
    assert (await ex.complete("half", req())).cost_usd is None
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1


async def test_unknown_price_of_the_answer_makes_the_total_unknown_not_partial() -> None:
    clock = FakeClock()
    s = Scripted(clock, {"priced": [err503()], "free": ["x"]})
    ex = Executor(
        {
            "priced": dep("priced", s.provider, fallbacks=["free"]),
            "free": dep("free", s.provider, priced=False),
        },
        retry=NO_RETRY,
        clock=clock,
    )
    resp = await ex.complete("priced", req())
    assert resp.deployment == "free" and resp.cost_usd is None


# -- metrics -----------------------------------------------------------------------------


async def test_metrics_snapshot_counts_calls_errors_retries_and_fallbacks_exactly() -> None:
    clock = FakeClock()
    plans: dict[str, list[Any]] = {
        "ok": ["fine"],
        "retry": [err503(), "fine"],
        "fallback": [err503(), err503()],
        "timeout": [ProviderTimeout("slow"), ProviderTimeout("slow")],
    }
    seen: dict[str, int] = {}

    def fn(model: str, request: Request) -> str:
        prompt = request.prompt_text
        if model == "b":
            return "from b"
        n = seen.get(prompt, 0)
        seen[prompt] = n + 1
        item = plans[prompt][min(n, len(plans[prompt]) - 1)]
        if isinstance(item, BaseException):
            raise copy.copy(item)
        return str(item)

    provider = FunctionProvider(fn, name="fake", clock=clock)
    orch = Orchestrator(
        [dep("a", provider, fallbacks=["b"]), dep("b", provider)],
        retry=RetryPolicy(max_attempts=2, initial_backoff=0.1, jitter=False),
        health=HealthTracker(failure_threshold=100, clock=clock),
        clock=clock,
    )

    results = [await orch.run(p) for p in ("ok", "retry", "fallback", "timeout")]
    assert [r.deployment for r in results] == ["a", "a", "b", "b"]

    snap = orch.metrics.snapshot()
    r = snap["requests"]
    assert r["total"] == 4
    assert r["fallbacks"] == 2
    assert r["errors"]["total"] == 0
    assert r["attempts"] == 1 + 2 + 3 + 3
    assert r["attempt_errors"] == 5
    assert r["retries"] == 3  # the second try on a of "retry", "fallback" and "timeout"
    a, b = snap["models"]["a"], snap["models"]["b"]
    assert a["calls"] == 7 and b["calls"] == 2
    assert a["errors"]["by_type"] == {"ProviderTimeout": 2, "ServerError": 3}
    assert a["outcomes"] == {"error": 5, "ok": 2}
    assert b["errors"]["total"] == 0
    assert (a["requests"], a["fallbacks"]) == (2, 0)
    assert (b["requests"], b["fallbacks"]) == (2, 2)
    assert snap["strategies"]["default"]["requests"] == 4


async def test_metrics_count_failed_requests_by_error_type() -> None:
    clock = FakeClock()
    provider = FakeProvider(
        {"a": err503(), "b": AuthenticationError("bad key", status_code=401)}, clock=clock
    )
    orch = Orchestrator(
        [dep("a", provider, fallbacks=["b"]), dep("b", provider)], retry=NO_RETRY, clock=clock
    )

    with pytest.raises(AllTargetsFailed):
        await orch.run("x")

    r = orch.metrics.snapshot()["requests"]
    assert r["total"] == 1
    assert r["errors"] == {"total": 1, "by_type": {"AllTargetsFailed": 1}}
    assert r["attempt_errors"] == 2


# -- budget ------------------------------------------------------------------------------


def worst_case(request: Request, input_price: float = 1.0, output_price: float = 2.0) -> float:
    """The reservation the executor must book: the prompt's upper bound (its UTF-8
    bytes plus framing: no tokenizer counts more) at the input price and the maximum
    output at the output price (max_tokens is output, not prompt)."""
    assert request.max_tokens is not None
    prompt = max(prompt_upper_bound(request), estimate_tokens(request) - request.max_tokens)
    return (prompt * input_price + request.max_tokens * output_price) / 1e6


async def test_hard_budget_limit_rejects_before_any_call() -> None:
    clock = FakeClock()
    provider = FakeProvider("x", clock=clock)
    ledger = BudgetLedger([BudgetLimit(limit_usd=0.0001, period="day")], clock=clock)
    ex = Executor({"a": dep("a", provider)}, budget=ledger, clock=clock)

    with pytest.raises(BudgetExceeded) as info:
        await ex.complete("a", req(max_tokens=100))

    assert not isinstance(info.value, AllTargetsFailed)
    assert provider.calls == []
    assert ledger.reserved() == 0.0 and ledger.spent() == 0.0


async def test_reservation_is_the_worst_case_and_settles_to_the_real_cost() -> None:
    clock = FakeClock(auto_advance=False)
    provider = FakeProvider("ok", clock=clock, latency_s=1.0)
    ledger = BudgetLedger([BudgetLimit(limit_usd=10.0, period="day")], clock=clock)
    ex = Executor({"a": dep("a", provider)}, budget=ledger, clock=clock)
    request = req("what is the capital of France?", max_tokens=100)
    got: list[Response] = []

    async def one() -> None:
        got.append(await ex.complete("a", request))

    async with anyio.create_task_group() as tg:
        tg.start_soon(one)
        await settle()
        assert len(provider.calls) == 1
        assert ledger.reserved() == pytest.approx(worst_case(request))
        clock.advance(1.0)

    assert ledger.reserved() == 0.0
    assert got[0].cost_usd is not None
    assert ledger.spent() == pytest.approx(got[0].cost_usd)


async def test_downgrade_limit_routes_to_the_cheaper_model() -> None:
    clock = FakeClock()
    provider = FakeProvider({"big": "from big", "small": "from small"}, clock=clock)
    ledger = BudgetLedger(
        [
            BudgetLimit(
                limit_usd=0.0, period="day", scope="model:big", action="downgrade", downgrade_to="small"
            )
        ],
        clock=clock,
    )
    ex = Executor({"big": dep("big", provider), "small": dep("small", provider)}, budget=ledger, clock=clock)

    resp = await ex.complete("big", req(max_tokens=50))

    assert resp.text == "from small" and resp.deployment == "small"
    assert [m for m, _ in provider.calls] == ["small"]
    assert not resp.fallback, "a budget downgrade is a routing decision, not a provider failure"
    assert ledger.spent("model:small") == pytest.approx(resp.cost_usd)
    assert ledger.reserved("model:big") == 0.0


async def test_500_concurrent_requests_never_overshoot_a_hard_limit() -> None:
    clock = FakeClock()
    provider = FakeProvider("ok", clock=clock, latency_s=1.0)
    limit = 0.01
    ledger = BudgetLedger([BudgetLimit(limit_usd=limit, period="day")], clock=clock)
    ex = Executor({"a": dep("a", provider)}, budget=ledger, retry=NO_RETRY, clock=clock)
    request = req("q", max_tokens=100)
    served: list[Response] = []
    rejected: list[BudgetExceeded] = []

    async def one() -> None:
        try:
            served.append(await ex.complete("a", request))
        except BudgetExceeded as exc:
            rejected.append(exc)

    async with anyio.create_task_group() as tg:
        for _ in range(500):
            tg.start_soon(one)

    # Every request is admitted before any reply arrives, so only the reservations
    # decide: exactly as many as fit under the limit are sent.
    expected = int(limit // worst_case(request))
    assert 0 < expected < 500
    assert len(served) == expected
    assert len(rejected) == 500 - expected
    assert len(provider.calls) == expected
    assert ledger.spent() <= limit
    assert ledger.spent() == pytest.approx(sum(r.cost_usd or 0.0 for r in served))
    assert ledger.reserved() == 0.0


# -- cache -------------------------------------------------------------------------------


async def test_identical_second_call_is_served_from_cache_for_free() -> None:
    clock = FakeClock()
    provider = FakeProvider("answer", clock=clock)
    metrics = MetricsCollector()
    ex = Executor({"a": dep("a", provider)}, cache=MemoryCache(clock=clock), metrics=metrics, clock=clock)

    first = await ex.complete("a", req("same"))
    second = await ex.complete("a", req("same"))

    assert len(provider.calls) == 1
    assert not first.cached and first.cost_usd is not None and first.cost_usd > 0
    assert second.cached and second.cost_usd == 0.0
    assert second.text == first.text and second.deployment == "a"
    assert [(a.outcome, a.cost_usd) for a in second.attempts] == [("cached", 0.0)]
    assert metrics.snapshot()["models"]["a"]["outcomes"] == {"cached": 1, "ok": 1}


async def test_sampling_requests_are_not_cached_unless_forced() -> None:
    clock = FakeClock()
    provider = FakeProvider("answer", clock=clock)
    ex = Executor({"a": dep("a", provider)}, cache=MemoryCache(clock=clock), clock=clock)
    hot = req("same", temperature=0.7)

    assert not (await ex.complete("a", hot)).cached
    assert not (await ex.complete("a", hot)).cached
    assert len(provider.calls) == 2

    forced = Executor(
        {"a": dep("a", provider)}, cache=MemoryCache(clock=clock), cache_force=True, clock=clock
    )
    await forced.complete("a", hot)
    assert (await forced.complete("a", hot)).cached
    assert len(provider.calls) == 3


async def test_concurrent_identical_requests_make_one_provider_call() -> None:
    clock = FakeClock()
    provider = FakeProvider("answer", clock=clock, latency_s=1.0)
    metrics = MetricsCollector()
    ex = Executor({"a": dep("a", provider)}, cache=MemoryCache(clock=clock), metrics=metrics, clock=clock)
    results: list[Response] = []

    async def one() -> None:
        results.append(await ex.complete("a", req("same question")))

    async with anyio.create_task_group() as tg:
        for _ in range(50):
            tg.start_soon(one)

    assert len(provider.calls) == 1
    leaders = [r for r in results if not r.cached]
    followers = [r for r in results if r.cached]
    assert len(leaders) == 1 and len(followers) == 49
    assert all(r.cost_usd == 0.0 and r.text == "answer" for r in followers)
    assert leaders[0].cost_usd is not None and leaders[0].cost_usd > 0
    assert metrics.snapshot()["models"]["a"]["outcomes"] == {"cached": 49, "ok": 1}
    # The followers got their own objects: mutating one does not touch another.
    followers[0].attempts.clear()
    assert followers[1].attempts and leaders[0].attempts


# -- rate limits -------------------------------------------------------------------------


async def test_rpm_is_enforced_through_the_executor() -> None:
    clock = FakeClock()
    s = Scripted(clock, {"a": ["ok"]})
    limiter = RateLimiter(rpm=60, clock=clock, name="a")
    ex = Executor({"a": dep("a", s.provider, limiter=limiter)}, clock=clock)

    async with anyio.create_task_group() as tg:
        for _ in range(150):
            tg.start_soon(ex.complete, "a", req())

    times = sorted(s.times)
    assert len(times) == 150
    assert times.count(0.0) == 60 and times.count(60.0) == 60 and times.count(120.0) == 30
    assert all(later - earlier >= 60.0 for earlier, later in zip(times, times[60:], strict=False))
    assert clock.now() == 120.0
    assert limiter.in_flight == 0 and limiter.queued == 0


async def test_a_429_with_retry_after_holds_the_limiter() -> None:
    clock = FakeClock()
    s = Scripted(clock, {"a": [RateLimitError("slow", status_code=429, retry_after=10.0), "ok"]})
    limiter = RateLimiter(rpm=1000, clock=clock)
    ex = Executor({"a": dep("a", s.provider, limiter=limiter)}, retry=NO_RETRY, clock=clock)

    with pytest.raises(AllTargetsFailed):
        await ex.complete("a", req())
    resp = await ex.complete("a", req())  # the next request waits out the provider's hold

    assert resp.text == "ok"
    assert s.times == [0.0, 10.0]


async def test_ordering_the_chain_does_not_claim_unused_half_open_trials() -> None:
    """A half-open fallback that is never called keeps its trial for a request that
    needs it; only the deployment actually called claims one."""
    from tierwise.errors import ServerError
    from tierwise.execution.executor import Deployment, Executor
    from tierwise.execution.health import HealthTracker
    from tierwise.testing import FakeProvider
    from tierwise.testing.clock import FakeClock

    clock = FakeClock(auto_advance=False)
    health = HealthTracker(failure_threshold=1, cooldown_s=10.0, clock=clock)
    health.record_failure("b", ServerError("down"))
    clock.advance(11.0)  # b is half-open now
    assert health.ready("b")
    a = FakeProvider(["from a"], name="a")
    b = FakeProvider(["from b"], name="b")
    ex = Executor(
        {"a": Deployment("a", a, "a", fallbacks=("b",)), "b": Deployment("b", b, "b")},
        health=health,
        clock=clock,
    )
    resp = await ex.complete("a", Request.from_prompt("hi"))
    assert resp.deployment == "a"
    assert health.ready("b")  # still unclaimed: a answered, b was never called
    resp = await ex.complete("b", Request.from_prompt("hi"))
    assert resp.deployment == "b"
