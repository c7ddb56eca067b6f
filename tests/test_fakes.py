"""FakeProvider and FunctionProvider: scripted and computed replies without HTTP."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tierwise.errors import NotFoundError, ProviderTimeout, RateLimitError, ServerError
from tierwise.providers.base import Provider
from tierwise.testing.clock import FakeClock
from tierwise.testing.fakes import (
    FakeProvider,
    FakeStreamFailure,
    FunctionProvider,
    ScriptExhausted,
    estimate_tokens,
)
from tierwise.types import (
    Done,
    ReasoningDelta,
    Request,
    Response,
    StreamEvent,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    Usage,
)

REQ = Request.from_prompt("Explain the difference between TCP and UDP in two sentences.")


async def collect(
    stream: AsyncIterator[StreamEvent], into: list[StreamEvent] | None = None
) -> list[StreamEvent]:
    """All events of a stream; ``into`` keeps those received before a failure."""
    got = [] if into is None else into
    async for event in stream:
        got.append(event)
    return got


async def test_is_a_provider_with_the_public_surface() -> None:
    async with FakeProvider("hi", name="fake-a") as fake:
        assert isinstance(fake, Provider)
        assert fake.name == "fake-a"
        assert (await fake.complete("m", REQ)).text == "hi"
    await fake.aclose()  # idempotent, nothing to close


async def test_text_reply_has_realistic_usage() -> None:
    fake = FakeProvider("The answer is forty-two.")
    resp = await fake.complete("small", REQ)
    assert resp.text == "The answer is forty-two."
    assert resp.model == "small" and resp.provider == "fake"
    assert resp.finish_reason == "stop"
    assert resp.usage.input_tokens == estimate_tokens(REQ.prompt_text) > 0
    assert resp.usage.output_tokens == estimate_tokens(resp.text) > 0
    assert resp.request_id == "fake-1"
    assert fake.calls == [("small", REQ)]


async def test_script_plays_in_order_then_repeats_last() -> None:
    fake = FakeProvider(["one", "two"])
    texts = [(await fake.complete("m", REQ)).text for _ in range(4)]
    assert texts == ["one", "two", "two", "two"]
    assert len(fake.calls) == 4


async def test_script_can_raise_when_exhausted() -> None:
    fake = FakeProvider(["one"], on_exhausted="raise")
    assert fake.remaining() == 1
    await fake.complete("m", REQ)
    assert fake.remaining() == 0
    with pytest.raises(ScriptExhausted, match="call 2"):
        await fake.complete("m", REQ)


async def test_exceptions_are_raised_with_provider_and_model_filled_in() -> None:
    fake = FakeProvider([RateLimitError("slow down", retry_after=1.5), "ok"])
    with pytest.raises(RateLimitError) as info:
        await fake.complete("gpt", REQ)
    err = info.value
    assert err.retry_after == 1.5 and err.retryable
    assert err.provider == "fake" and err.model == "gpt"
    assert (await fake.complete("gpt", REQ)).text == "ok"


async def test_repeated_exception_is_a_fresh_instance_each_time() -> None:
    fake = FakeProvider(ServerError("down"))
    errors = []
    for _ in range(2):
        with pytest.raises(ServerError) as info:
            await fake.complete("m", REQ)
        errors.append(info.value)
    assert errors[0] is not errors[1]
    assert str(errors[0]) == str(errors[1])


async def test_per_model_scripts_with_fallback_key() -> None:
    fake = FakeProvider({"big": ["big-1", "big-2"], "*": "anything"})
    assert (await fake.complete("big", REQ)).text == "big-1"
    assert (await fake.complete("other", REQ)).text == "anything"
    assert (await fake.complete("big", REQ)).text == "big-2"
    strict = FakeProvider({"only": "x"})
    with pytest.raises(NotFoundError) as info:
        await strict.complete("missing", REQ)
    assert info.value.status_code == 404 and info.value.model == "missing"


async def test_response_items_are_copied() -> None:
    scripted = Response(
        text="tool time",
        model="",
        provider="",
        finish_reason="tool_calls",
        usage=Usage(input_tokens=10, output_tokens=3, reasoning_tokens=1),
        tool_calls=[ToolCall(id="c1", name="lookup", arguments={"q": "x"})],
    )
    fake = FakeProvider(scripted)
    first = await fake.complete("m", REQ)
    first.cost_usd = 1.0
    first.usage.output_tokens = 999
    second = await fake.complete("m", REQ)
    assert second.usage == Usage(input_tokens=10, output_tokens=3, reasoning_tokens=1)
    assert second.cost_usd is None
    assert second.model == "m" and second.provider == "fake"
    assert second.tool_calls == [ToolCall(id="c1", name="lookup", arguments={"q": "x"})]


async def test_stream_matches_complete() -> None:
    text = "Streaming works one chunk at a time, in order."
    fake = FakeProvider(text, chunk_chars=8)
    events = await collect(fake.stream("m", REQ))
    assert isinstance(events[-1], Done)
    deltas = events[:-1]
    assert all(isinstance(e, TextDelta) for e in deltas)
    assert len(deltas) == 6
    assert "".join(e.text for e in deltas if isinstance(e, TextDelta)) == text
    streamed = events[-1].response
    assert streamed == await fake.complete("m", REQ)
    assert streamed.ttft_ms is not None
    assert fake.calls == [("m", REQ), ("m", REQ)]


async def test_stream_of_response_with_reasoning_and_tools() -> None:
    scripted = Response(
        text="",
        model="m",
        provider="fake",
        finish_reason="tool_calls",
        reasoning="thinking hard",
        tool_calls=[ToolCall(id="a", name="f", arguments={"x": 1}), ToolCall(id="b", name="g", arguments={})],
    )
    events = await collect(FakeProvider(scripted).stream("m", REQ))
    assert [type(e) for e in events] == [ReasoningDelta, ToolCallDelta, ToolCallDelta, Done]
    assert events[1] == ToolCallDelta(0, "a", "f", '{"x":1}')
    assert events[2] == ToolCallDelta(1, "b", "g", "")


async def test_stream_failure_after_chunks() -> None:
    fake = FakeProvider(
        [
            FakeStreamFailure(ProviderTimeout("stalled"), after_chunks=2, text="aaaabbbbccccdddd"),
            FakeStreamFailure(ServerError("overloaded")),
        ],
        chunk_chars=4,
    )
    got: list[StreamEvent] = []
    with pytest.raises(ProviderTimeout):
        await collect(fake.stream("m", REQ), got)
    assert got == [TextDelta("aaaa"), TextDelta("bbbb")]
    got = []
    with pytest.raises(ServerError):  # before any content: a fallback is still possible
        await collect(fake.stream("m", REQ), got)
    assert got == []
    with pytest.raises(ServerError):  # complete() fails as a whole
        await fake.complete("m", REQ)


async def test_exception_item_fails_stream_before_first_event() -> None:
    fake = FakeProvider(RateLimitError("429", retry_after=2))
    stream = fake.stream("m", REQ)
    with pytest.raises(RateLimitError):
        await anext(stream)


async def test_latency_uses_the_injected_clock() -> None:
    clock = FakeClock()
    fake = FakeProvider("slow but free", latency_s=30.0, chunk_delay_s=1.0, chunk_chars=5, clock=clock)
    wall = time.perf_counter()
    resp = await fake.complete("m", REQ)
    assert resp.latency_ms == pytest.approx(30_000.0)
    events = await collect(fake.stream("m", REQ))
    done = events[-1]
    assert isinstance(done, Done)
    assert done.response.ttft_ms == pytest.approx(30_000.0)
    assert done.response.latency_ms == pytest.approx(30_000.0 + 2 * 1000.0)  # 3 chunks, 2 gaps
    assert clock.now() == pytest.approx(62.0)
    assert time.perf_counter() - wall < 5.0


async def test_default_reply_is_deterministic_echo() -> None:
    fake = FakeProvider()
    a = await fake.complete("m", REQ)
    b = await fake.complete("m", REQ)
    assert a.text == b.text
    assert "TCP and UDP" in a.text and a.usage.output_tokens > 0


def test_invalid_scripts_are_rejected() -> None:
    with pytest.raises(ValueError, match="at least one"):
        FakeProvider([])
    with pytest.raises(TypeError, match="script items"):
        FakeProvider([42])  # type: ignore[list-item]
    with pytest.raises(TypeError):
        FakeStreamFailure("not an exception")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        FakeProvider("x", on_exhausted="loop")  # type: ignore[arg-type]


async def test_function_provider_sync_and_async() -> None:
    def sync_fn(model: str, request: Request) -> str:
        return f"{model}:{request.messages[-1].text[:7]}"

    async def async_fn(model: str, request: Request) -> Response:
        return Response(text="built", model=model, provider="", usage=Usage(5, 7))

    fp = FunctionProvider(sync_fn)
    assert fp.name == "function"
    assert (await fp.complete("m", REQ)).text == "m:Explain"
    afp = FunctionProvider(async_fn, name="af")
    resp = await afp.complete("m2", REQ)
    assert (resp.text, resp.provider, resp.usage) == ("built", "af", Usage(5, 7))
    events = await collect(afp.stream("m2", REQ))
    assert events[0] == TextDelta("built")
    assert isinstance(events[-1], Done) and events[-1].response == resp
    assert afp.calls == [("m2", REQ), ("m2", REQ)]


async def test_function_provider_errors_propagate_and_types_are_checked() -> None:
    calls = 0

    def flaky(model: str, request: Request) -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ServerError("first call fails", provider="function", model=model)
        return "second works"

    fp = FunctionProvider(flaky)
    with pytest.raises(ServerError):
        await fp.complete("m", REQ)
    assert (await fp.complete("m", REQ)).text == "second works"

    bad: Any = FunctionProvider(lambda model, request: 123)
    with pytest.raises(TypeError, match="str or Response"):
        await bad.complete("m", REQ)
    with pytest.raises(TypeError):
        FunctionProvider("not callable")  # type: ignore[arg-type]


async def test_http_hooks_are_not_reachable() -> None:
    with pytest.raises(NotImplementedError):
        FakeProvider()._url("m", False)
