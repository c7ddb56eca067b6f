"""Executor.stream: fallback only before the first content event, timeouts, the final response.

In-process cases use FakeProvider / FakeStreamFailure; wire-level faults (HTTP
errors, connection resets, truncated and stalled streams, servers that never
answer) run on real sockets against MockLLMServer through the OpenAI adapter, with
short real timeouts (0.2 s) where a timeout is the point.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import pytest

from tierwise.catalog import ModelSpec
from tierwise.errors import (
    AllTargetsFailed,
    BadRequestError,
    ContextWindowExceeded,
    ProviderError,
    ProviderTimeout,
    ServerError,
)
from tierwise.execution.budget import BudgetLedger, BudgetLimit
from tierwise.execution.executor import Deployment, Executor
from tierwise.execution.retry import RetryPolicy
from tierwise.providers.openai import OpenAI
from tierwise.testing import FakeClock, FakeProvider, FakeStreamFailure, MockLLMServer, MockModel
from tierwise.types import Done, Request, Response, StreamEvent, TextDelta

NO_RETRY = RetryPolicy(max_attempts=1)
PRIMARY_TEXT = "The primary model answers with a reply long enough to span many stream chunks."
SECONDARY_TEXT = "The secondary model answers instead."


def spec(name: str, window: int | None = None) -> ModelSpec:
    return ModelSpec(name, "fake", input=1.0, output=2.0, context_window=window)


def fake_dep(
    alias: str, provider: Any, *, fallbacks: Sequence[str] = (), window: int | None = None
) -> Deployment:
    return Deployment(alias, provider, alias, spec=spec(alias, window), fallbacks=tuple(fallbacks))


async def collect(events: Any) -> tuple[str, Response | None, list[StreamEvent]]:
    """Drain a stream: (concatenated text, Done's response, every event)."""
    seen: list[StreamEvent] = []
    text = ""
    final: Response | None = None
    async for event in events:
        seen.append(event)
        if isinstance(event, TextDelta):
            text += event.text
        elif isinstance(event, Done):
            final = event.response
    return text, final, seen


async def drain_until_error(events: Any) -> tuple[str, BaseException]:
    """Drain a stream that must fail: (text received before the error, the error)."""
    text = ""
    try:
        async for event in events:
            if isinstance(event, TextDelta):
                text += event.text
    except Exception as exc:
        return text, exc
    raise AssertionError("the stream was expected to fail")


# -- in-process ------------------------------------------------------------------


async def test_failure_before_first_content_falls_back() -> None:
    clock = FakeClock()
    provider = FakeProvider(
        {
            "a": FakeStreamFailure(ServerError("overloaded", status_code=529), after_chunks=0),
            "b": SECONDARY_TEXT,
        },
        clock=clock,
    )
    ex = Executor(
        {"a": fake_dep("a", provider, fallbacks=["b"]), "b": fake_dep("b", provider)},
        retry=NO_RETRY,
        clock=clock,
    )

    text, final, events = await collect(ex.stream("a", Request.from_prompt("hi")))

    assert text == SECONDARY_TEXT
    assert isinstance(events[-1], Done) and final is not None
    assert final.text == SECONDARY_TEXT
    assert final.deployment == "b" and final.fallback
    assert [(a.model, a.outcome, a.error_type) for a in final.attempts] == [
        ("a", "error", "ServerError"),
        ("b", "ok", None),
    ]
    expected = (final.usage.input_tokens * 1.0 + final.usage.output_tokens * 2.0) / 1e6
    assert final.cost_usd == pytest.approx(expected)


async def test_failure_before_content_is_retried_on_the_same_deployment() -> None:
    clock = FakeClock()
    provider = FakeProvider(
        {"a": [FakeStreamFailure(ServerError("busy", status_code=503)), "second try"], "b": "b"}, clock=clock
    )
    ex = Executor(
        {"a": fake_dep("a", provider, fallbacks=["b"]), "b": fake_dep("b", provider)},
        retry=RetryPolicy(max_attempts=2, initial_backoff=2.0, jitter=False),
        clock=clock,
    )

    text, final, _ = await collect(ex.stream("a", Request.from_prompt("hi")))

    assert text == "second try"
    assert final is not None and final.deployment == "a" and not final.fallback
    assert [(a.outcome, a.retry) for a in final.attempts] == [("error", 0), ("ok", 1)]
    assert clock.now() == 2.0


async def test_error_after_content_goes_to_the_caller_without_fallback_or_duplicate_text() -> None:
    clock = FakeClock()
    body = "0123456789abcdef" * 4
    provider = FakeProvider(
        {"a": FakeStreamFailure(ServerError("died", status_code=500), after_chunks=2, text=body), "b": "b"},
        clock=clock,
        chunk_chars=16,
    )
    ex = Executor(
        {"a": fake_dep("a", provider, fallbacks=["b"]), "b": fake_dep("b", provider)},
        retry=RetryPolicy(max_attempts=3),
        clock=clock,
    )

    text, error = await drain_until_error(ex.stream("a", Request.from_prompt("hi")))

    assert type(error) is ServerError
    assert text == body[:32]
    assert [m for m, _ in provider.calls] == ["a"]  # no retry, no fallback


async def test_context_window_error_in_a_stream_falls_back_to_a_larger_window() -> None:
    clock = FakeClock()
    provider = FakeProvider(
        {"a": ContextWindowExceeded("too long", status_code=400), "b": "b", "c": "from c"}, clock=clock
    )
    ex = Executor(
        {
            "a": fake_dep("a", provider, fallbacks=["b", "c"], window=8_000),
            "b": fake_dep("b", provider, window=8_000),
            "c": fake_dep("c", provider, window=100_000),
        },
        retry=NO_RETRY,
        clock=clock,
    )

    text, final, _ = await collect(ex.stream("a", Request.from_prompt("hi")))

    assert text == "from c"
    assert final is not None
    assert [(a.model, a.outcome) for a in final.attempts] == [("a", "error"), ("b", "skipped"), ("c", "ok")]
    assert [m for m, _ in provider.calls] == ["a", "c"]


async def test_bad_request_in_a_stream_is_raised_as_itself() -> None:
    clock = FakeClock()
    provider = FakeProvider({"a": BadRequestError("bad schema", status_code=400), "b": "b"}, clock=clock)
    ex = Executor(
        {"a": fake_dep("a", provider, fallbacks=["b"]), "b": fake_dep("b", provider)},
        retry=NO_RETRY,
        clock=clock,
    )

    _, error = await drain_until_error(ex.stream("a", Request.from_prompt("hi")))

    assert type(error) is BadRequestError
    assert [m for m, _ in provider.calls] == ["a"]


async def test_budget_downgrade_applies_to_streams_too() -> None:
    clock = FakeClock()
    provider = FakeProvider({"big": "from big", "small": "from small"}, clock=clock)
    ledger = BudgetLedger(
        [BudgetLimit(0.0, "day", scope="model:big", action="downgrade", downgrade_to="small")], clock=clock
    )
    ex = Executor(
        {"big": fake_dep("big", provider), "small": fake_dep("small", provider)}, budget=ledger, clock=clock
    )

    text, final, _ = await collect(ex.stream("big", Request.from_prompt("hi", max_tokens=20)))

    assert text == "from small"
    assert final is not None and final.deployment == "small" and not final.fallback
    assert ledger.reserved("model:big") == 0.0
    assert ledger.spent("model:small") == pytest.approx(final.cost_usd)


# -- real sockets ----------------------------------------------------------------


def http_chain(
    server: MockLLMServer, *, models: Sequence[str] = ("primary", "secondary"), **timeouts: float
) -> tuple[Executor, OpenAI]:
    """An executor whose chain is ``models`` in order, all on ``server`` via the
    OpenAI adapter; ``timeouts`` apply to the first deployment."""
    provider = OpenAI(base_url=server.base_url + "/v1", compat="vllm")
    deployments: dict[str, Deployment] = {}
    for i, name in enumerate(models):
        deployments[name] = dep = Deployment(
            name,
            provider,
            name,
            spec=ModelSpec(name, "vllm", input=2.0, output=8.0),
            fallbacks=(models[i + 1],) if i + 1 < len(models) else (),
        )
        if i == 0:
            for field, seconds in timeouts.items():
                setattr(dep, field, seconds)
    return Executor(deployments, retry=NO_RETRY), provider


@pytest.mark.parametrize(
    ("fault", "error_types"),
    [
        ("503", {"ServerError"}),
        ("529", {"ServerError"}),
        ("429", {"RateLimitError"}),
        ("reset", {"ProviderConnectionError", "ProtocolError"}),
        ("truncate", {"ProtocolError"}),
    ],
)
async def test_wire_fault_before_content_falls_back(fault: str, error_types: set[str]) -> None:
    models = {
        "primary": MockModel(reply=PRIMARY_TEXT, faults=[fault], fault_after_chunks=0, retry_after_s=0.01),
        "secondary": MockModel(reply=SECONDARY_TEXT),
    }
    async with MockLLMServer(models) as server:
        ex, provider = http_chain(server)
        try:
            text, final, _ = await collect(ex.stream("primary", Request.from_prompt("hi")))
        finally:
            await provider.aclose()

    assert text == SECONDARY_TEXT
    assert final is not None and final.deployment == "secondary" and final.fallback
    assert final.attempts[0].model == "primary" and final.attempts[0].error_type in error_types
    assert [a.outcome for a in final.attempts] == ["error", "ok"]


@pytest.mark.parametrize("fault", ["reset", "truncate", "inband_error"])
async def test_wire_fault_after_content_propagates_with_no_duplicate_text(fault: str) -> None:
    models = {
        "primary": MockModel(reply=PRIMARY_TEXT, faults=[fault], fault_after_chunks=2, tokens_per_chunk=2),
        "secondary": MockModel(reply=SECONDARY_TEXT),
    }
    async with MockLLMServer(models) as server:
        ex, provider = http_chain(server)
        try:
            text, error = await drain_until_error(ex.stream("primary", Request.from_prompt("hi")))
        finally:
            await provider.aclose()
        assert "secondary" not in server.stats

    assert isinstance(error, ProviderError) and not isinstance(error, AllTargetsFailed)
    assert text == PRIMARY_TEXT[:16], "exactly the two chunks sent before the fault, once"


async def test_server_that_never_answers_hits_the_first_token_timeout_and_falls_back() -> None:
    models = {"primary": MockModel(faults=["hang"]), "secondary": MockModel(reply=SECONDARY_TEXT)}
    async with MockLLMServer(models) as server:
        ex, provider = http_chain(server, first_token_timeout_s=0.2)
        start = time.monotonic()
        try:
            text, final, _ = await collect(ex.stream("primary", Request.from_prompt("hi")))
        finally:
            await provider.aclose()
        elapsed = time.monotonic() - start

    assert text == SECONDARY_TEXT
    assert final is not None and final.fallback
    assert final.attempts[0].error_type == "ProviderTimeout"
    assert 0.2 <= elapsed < 3.0


async def test_first_token_timeout_alone_raises_provider_timeout_in_the_group() -> None:
    async with MockLLMServer({"primary": MockModel(faults=["hang"])}) as server:
        ex, provider = http_chain(server, models=("primary",), first_token_timeout_s=0.2)
        try:
            _, error = await drain_until_error(ex.stream("primary", Request.from_prompt("hi")))
        finally:
            await provider.aclose()

    assert isinstance(error, AllTargetsFailed)
    assert [type(e) for e in error.exceptions] == [ProviderTimeout]
    assert "before the first token" in str(error.exceptions[0])


async def test_stall_before_content_is_a_first_token_timeout() -> None:
    models = {
        "primary": MockModel(reply=PRIMARY_TEXT, faults=["stall"], fault_after_chunks=0),
        "secondary": MockModel(reply=SECONDARY_TEXT),
    }
    async with MockLLMServer(models) as server:
        ex, provider = http_chain(server, first_token_timeout_s=0.2, idle_timeout_s=5.0)
        try:
            text, final, _ = await collect(ex.stream("primary", Request.from_prompt("hi")))
        finally:
            await provider.aclose()

    assert text == SECONDARY_TEXT
    assert final is not None and final.attempts[0].error_type == "ProviderTimeout"


async def test_stall_between_chunks_is_an_idle_timeout_for_the_caller() -> None:
    models = {
        "primary": MockModel(reply=PRIMARY_TEXT, faults=["stall"], fault_after_chunks=2, tokens_per_chunk=2),
        "secondary": MockModel(reply=SECONDARY_TEXT),
    }
    async with MockLLMServer(models) as server:
        ex, provider = http_chain(server, first_token_timeout_s=5.0, idle_timeout_s=0.2)
        start = time.monotonic()
        try:
            text, error = await drain_until_error(ex.stream("primary", Request.from_prompt("hi")))
        finally:
            await provider.aclose()
        elapsed = time.monotonic() - start
        assert "secondary" not in server.stats

    assert type(error) is ProviderTimeout
    assert "between chunks" in str(error)
    assert text == PRIMARY_TEXT[:16]
    assert 0.2 <= elapsed < 3.0


async def test_total_timeout_bounds_a_stream_that_never_starts() -> None:
    models = {"primary": MockModel(faults=["hang"]), "secondary": MockModel(reply=SECONDARY_TEXT)}
    async with MockLLMServer(models) as server:
        ex, provider = http_chain(server, timeout_s=0.2)
        try:
            text, final, _ = await collect(ex.stream("primary", Request.from_prompt("hi")))
        finally:
            await provider.aclose()

    assert text == SECONDARY_TEXT
    assert final is not None and final.attempts[0].error_type == "ProviderTimeout"


async def test_done_carries_cost_attempts_and_deployment() -> None:
    models = {
        "primary": MockModel(reply=PRIMARY_TEXT, input_tokens=120, output_tokens=30, stream_chunk_delay_ms=1),
        "secondary": MockModel(reply=SECONDARY_TEXT),
    }
    async with MockLLMServer(models) as server:
        ex, provider = http_chain(server)
        try:
            text, final, events = await collect(ex.stream("primary", Request.from_prompt("hi")))
        finally:
            await provider.aclose()

    assert text == PRIMARY_TEXT
    assert sum(isinstance(e, Done) for e in events) == 1 and isinstance(events[-1], Done)
    assert final is not None
    assert final.text == PRIMARY_TEXT
    assert final.deployment == "primary" and final.model == "primary" and not final.fallback
    assert (final.usage.input_tokens, final.usage.output_tokens) == (120, 30)
    assert final.cost_usd == pytest.approx((120 * 2.0 + 30 * 8.0) / 1e6)
    assert [(a.model, a.outcome, a.cost_usd) for a in final.attempts] == [("primary", "ok", final.cost_usd)]
    assert final.ttft_ms is not None and final.ttft_ms > 0
