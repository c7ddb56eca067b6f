"""Hostile and malformed replies (issue #18 items 3-6, issue #9 items 4, 9, 10).

A raw loopback server sends the exact bytes under test (status, headers, body or
SSE), so what reaches the adapters is what a buggy or hostile upstream would
send. Every malformed reply must come out as a typed tierwise error or a valid
``Response``; the deployment must stay whole afterwards; a key the upstream
reflects must never show up in an exception, a repr, a traceback or an attempt.
"""

from __future__ import annotations

import asyncio
import json
import traceback
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tierwise as tw
from tierwise.catalog import ModelSpec
from tierwise.errors import ProtocolError, ProviderError, ServerError, TierwiseError
from tierwise.execution.budget import BudgetLedger, BudgetLimit
from tierwise.execution.executor import Deployment
from tierwise.execution.limits import RateLimiter
from tierwise.execution.retry import RetryPolicy
from tierwise.providers.anthropic import Anthropic
from tierwise.providers.base import Provider
from tierwise.providers.gemini import Gemini
from tierwise.providers.openai import OpenAI
from tierwise.types import Done, Request, Response

FIXTURES = Path(__file__).parent / "fixtures"
KEY = "sk-planted-Zq8xV3mK9wR2tY7uP4nL6jH1"

Reply = tuple[int, dict[str, str], bytes]


@asynccontextmanager
async def raw_server(reply: Callable[[dict[str, Any]], Reply]) -> AsyncIterator[str]:
    """Answer every request with ``reply(json body)``: exact status, headers, bytes."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.decode("latin-1").split("\r\n")[1:]:
                    name, _, value = line.partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value.strip())
                raw = await reader.readexactly(length) if length else b"{}"
                status, headers, body = reply(json.loads(raw))
                lines = [f"HTTP/1.1 {status} X", f"content-length: {len(body)}"]
                lines += [f"{k}: {v}" for k, v in headers.items()]
                writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()
        await server.wait_closed()


JSON = {"content-type": "application/json"}
SSE = {"content-type": "text/event-stream"}


def openai_body(usage: str = '{"prompt_tokens": 5, "completion_tokens": 2}', model: str = '"m"') -> bytes:
    return (
        '{"id": "c1", "object": "chat.completion", "model": ' + model + ', "choices": [{"index": 0, '
        '"message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}], "usage": '
        + usage
        + "}"
    ).encode()


def make(kind: str, base: str, key: str = KEY) -> Provider:
    if kind == "openai":
        return OpenAI(api_key=key, base_url=base + "/v1")
    if kind == "anthropic":
        return Anthropic(api_key=key, base_url=base)
    return Gemini(api_key=key, base_url=base + "/v1beta")


# -- 18.3 / 18.5: numbers that overflow, nesting, wrong types ---------------------------


@pytest.mark.parametrize(
    "usage",
    [
        '{"prompt_tokens": Infinity, "completion_tokens": 2}',
        '{"prompt_tokens": 1e400, "completion_tokens": NaN}',
        '{"prompt_tokens": ' + "9" * 400 + ', "completion_tokens": -7}',
        '{"prompt_tokens": -5, "completion_tokens": 2, "cost": Infinity}',
    ],
)
async def test_nonsense_usage_numbers_are_dropped_not_raised(usage: str) -> None:
    async with raw_server(lambda _: (200, JSON, openai_body(usage))) as base:
        async with make("openai", base) as provider:
            resp = await provider.complete("m", Request.from_prompt("hi"))
    u = resp.usage
    for value in (u.input_tokens, u.output_tokens, u.cached_input_tokens, u.reasoning_tokens):
        assert type(value) is int and 0 <= value <= 10**12
    assert u.reported_cost_usd is None


async def test_a_non_string_model_becomes_the_requested_name() -> None:
    for model in ("42", '{"a": 1}', "[1, 2]", "null"):
        async with raw_server(lambda _, m=model: (200, JSON, openai_body(model=m))) as base:  # type: ignore[misc]
            async with make("openai", base) as provider:
                resp = await provider.complete("wanted", Request.from_prompt("hi"))
        assert resp.model == "wanted"


@pytest.mark.parametrize("kind", ["openai", "anthropic", "gemini"])
async def test_deep_nesting_is_a_protocol_error(kind: str) -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    async with raw_server(lambda _: (200, JSON, deep)) as base, make(kind, base) as provider:
        with pytest.raises(ProtocolError):
            await provider.complete("m", Request.from_prompt("hi"))
    async with raw_server(lambda _: (500, JSON, deep)) as base, make(kind, base) as provider:
        with pytest.raises(ProviderError) as info:
            await provider.complete("m", Request.from_prompt("hi"))
    assert info.value.status_code == 500


async def test_deeply_nested_tool_arguments_are_a_protocol_error() -> None:
    args = json.dumps("[" * 50_000 + "]" * 50_000)
    body = (
        '{"id": "c", "model": "m", "choices": [{"index": 0, "finish_reason": "tool_calls", "message": '
        '{"role": "assistant", "content": null, "tool_calls": [{"id": "t", "type": "function", '
        '"function": {"name": "f", "arguments": ' + args + "}}]}}]}"
    ).encode()
    async with raw_server(lambda _: (200, JSON, body)) as base, make("openai", base) as provider:
        with pytest.raises(ProtocolError):
            await provider.complete("m", Request.from_prompt("hi"))


@pytest.mark.parametrize(
    "header",
    [{"retry-after": "inf"}, {"retry-after": "nan"}, {"retry-after-ms": "1e999"}, {"retry-after": "-5"}],
)
async def test_a_nonsense_retry_after_never_reaches_the_limiter(header: dict[str, str]) -> None:
    body = b'{"error": {"message": "slow down", "type": "rate_limit_error"}}'
    calls = {"n": 0}

    def reply(_: dict[str, Any]) -> Reply:
        calls["n"] += 1
        return (429, {**JSON, **header}, body) if calls["n"] == 1 else (200, JSON, openai_body())

    async with raw_server(reply) as base:
        provider = make("openai", base)
        limiter = RateLimiter(max_concurrency=1)
        dep = Deployment("m", provider, "m", limiter=limiter)
        retry = RetryPolicy(max_attempts=2, initial_backoff=0.0, jitter=False)
        async with tw.Orchestrator([dep], retry=retry, log_level=None) as orch:
            resp = await orch.run("hi")
    assert resp.text == "hi" and calls["n"] == 2
    assert resp.attempts[0].error_type == "RateLimitError"
    assert limiter.snapshot()["hold_remaining_s"] in (0.0,) or limiter.snapshot()["hold_remaining_s"] < 1


# -- 9.4: gateway-reported cost and ids -------------------------------------------------


async def test_litellm_cost_header_wins_and_call_id_is_the_request_id() -> None:
    headers = {**JSON, "x-litellm-response-cost": "0.00042", "x-litellm-call-id": "call-abc"}
    async with raw_server(lambda _: (200, headers, openai_body())) as base:
        async with make("openai", base) as provider:
            direct = await provider.complete("m", Request.from_prompt("hi"))
        provider = make("openai", base)
        dep = Deployment("m", provider, "m", spec=ModelSpec("m", "openai", input=1.0, output=1.0))
        async with tw.Orchestrator([dep], log_level=None) as orch:
            routed = await orch.run("hi")
    assert direct.usage.reported_cost_usd == pytest.approx(0.00042)
    assert direct.cost_usd == pytest.approx(0.00042)  # a direct call knows the reported cost too
    assert direct.request_id == "call-abc"
    assert routed.cost_usd == pytest.approx(0.00042)  # the gateway's figure, not the catalog's


async def test_litellm_cost_header_on_anthropic_format() -> None:
    body = (FIXTURES / "anthropic" / "text.json").read_bytes()
    headers = {**JSON, "x-litellm-response-cost": "0.0031", "x-litellm-call-id": "call-xyz"}
    async with raw_server(lambda _: (200, headers, body)) as base, make("anthropic", base) as provider:
        resp = await provider.complete("m", Request.from_prompt("hi", max_tokens=10))
    assert resp.cost_usd == pytest.approx(0.0031) and resp.request_id == "call-xyz"


# -- 9.9: a stream cut by max_tokens inside a tool call ------------------------------------


async def test_anthropic_stream_cut_inside_tool_use_ends_with_a_length_answer() -> None:
    events = [
        ("message_start", {"type": "message_start", "message": {"id": "m1", "model": "c", "usage": {
            "input_tokens": 20, "output_tokens": 1}}}),
        ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {
            "type": "text", "text": ""}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {
            "type": "text_delta", "text": "Let me check."}}),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        ("content_block_start", {"type": "content_block_start", "index": 1, "content_block": {
            "type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 1, "delta": {
            "type": "input_json_delta", "partial_json": '{"location": "San Fr'}}),
        ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "max_tokens"}, "usage": {
            "output_tokens": 16}}),
        ("message_stop", {"type": "message_stop"}),
    ]  # fmt: skip
    body = "".join(f"event: {e}\ndata: {json.dumps(d)}\n\n" for e, d in events).encode()
    async with raw_server(lambda _: (200, SSE, body)) as base, make("anthropic", base) as provider:
        out = [e async for e in provider.stream("m", Request.from_prompt("weather?", max_tokens=16))]
    final = out[-1]
    assert isinstance(final, Done)
    resp = final.response
    assert resp.finish_reason == "length" and resp.text == "Let me check."
    (call,) = resp.tool_calls
    assert call.incomplete and call.arguments == {} and call.raw_arguments == '{"location": "San Fr'
    assert call.name == "get_weather"


async def test_openai_reply_cut_inside_tool_arguments_is_kept_flagged() -> None:
    body = (
        b'{"id": "c", "model": "m", "choices": [{"index": 0, "finish_reason": "length", "message": '
        b'{"role": "assistant", "content": null, "tool_calls": [{"id": "t", "type": "function", '
        b'"function": {"name": "f", "arguments": "{\\"q\\": \\"unfini"}}]}}], '
        b'"usage": {"prompt_tokens": 3, "completion_tokens": 8}}'
    )
    async with raw_server(lambda _: (200, JSON, body)) as base, make("openai", base) as provider:
        resp = await provider.complete("m", Request.from_prompt("hi"))
    assert resp.finish_reason == "length" and resp.tool_calls[0].incomplete


# -- 9.10: a JSON body answering a stream request -----------------------------------------


async def test_a_json_reply_to_a_stream_request_is_the_reply() -> None:
    body = (FIXTURES / "anthropic" / "text.json").read_bytes()
    async with raw_server(lambda _: (200, JSON, body)) as base, make("anthropic", base) as provider:
        out = [e async for e in provider.stream("m", Request.from_prompt("hi", max_tokens=10))]
        direct = await provider.complete("m", Request.from_prompt("hi", max_tokens=10))
    final = out[-1]
    assert isinstance(final, Done) and final.response == direct
    assert "".join(getattr(e, "text", "") for e in out[:-1]) == direct.text


async def test_json_that_is_no_reply_to_a_stream_request_is_not_retried() -> None:
    async with raw_server(lambda _: (200, JSON, b'{"status": "queued"}')) as base:
        async with make("openai", base) as provider:
            with pytest.raises(ProtocolError, match="answered a stream request with JSON") as info:
                async for _ in provider.stream("m", Request.from_prompt("hi")):
                    pass
    assert info.value.retryable is False


# -- 18.6: a key reflected by the upstream -------------------------------------------------


def _assert_clean(exc: BaseException) -> None:
    texts = [str(exc), repr(exc), "".join(traceback.format_exception(exc))]
    texts += [repr(v) for v in vars(exc).values()]
    for inner in getattr(exc, "exceptions", ()):
        texts += [str(inner), repr(inner), *(repr(v) for v in vars(inner).values())]
    texts += [repr(a) for a in getattr(exc, "attempts", ())]
    for text in texts:
        assert KEY not in text, text


@pytest.mark.parametrize("kind", ["openai", "anthropic", "gemini"])
async def test_a_reflected_key_never_reaches_an_exception(kind: str) -> None:
    error = {"error": {"message": f"bad key {KEY}", "type": f"t-{KEY}", "code": f"c-{KEY}", "status": KEY}}
    headers = {**JSON, "x-request-id": KEY, "request-id": KEY}
    async with raw_server(lambda _: (400, headers, json.dumps(error).encode())) as base:
        async with make(kind, base) as provider:
            with pytest.raises(ProviderError) as info:
                await provider.complete("m", Request.from_prompt("hi", max_tokens=5))
        _assert_clean(info.value)
        dep = Deployment("m", make(kind, base), "m")
        async with tw.Orchestrator([dep], retry=RetryPolicy(max_attempts=1), log_level=None) as orch:
            with pytest.raises(TierwiseError) as routed:
                await orch.run(Request.from_prompt("hi", max_tokens=5))
        _assert_clean(routed.value)
    # A malformed 200 and an in-band stream error carrying the key.
    async with raw_server(lambda _: (200, JSON, f'{{"oops": "{KEY}"'.encode())) as base:
        async with make(kind, base) as provider:
            with pytest.raises(ProtocolError) as bad:
                await provider.complete("m", Request.from_prompt("hi", max_tokens=5))
    _assert_clean(bad.value)


async def test_a_key_in_an_inband_stream_error_is_redacted() -> None:
    event = {"error": {"message": f"overloaded {KEY}", "type": KEY, "code": KEY}}
    body = f"data: {json.dumps(event)}\n\n".encode()
    async with raw_server(lambda _: (200, SSE, body)) as base, make("openai", base) as provider:
        with pytest.raises(ProviderError) as info:
            async for _ in provider.stream("m", Request.from_prompt("hi")):
                pass
    _assert_clean(info.value)


# -- a fuzz over replies: typed errors only, and the deployment stays whole ----------------

_SEEDS = {
    "openai": [(FIXTURES / "openai" / n).read_bytes() for n in ("chat_text.json", "chat_tool_calls.json")],
    "anthropic": [
        (FIXTURES / "anthropic" / n).read_bytes() for n in ("text.json", "tool_calls_parallel.json")
    ],
    "gemini": [(FIXTURES / "gemini" / n).read_bytes() for n in ("function_calls.json", "max_tokens.json")],
}
_HOSTILE = st.sampled_from(
    [b"Infinity", b"-1", b"1e400", b"9" * 400, b"NaN", b'"x"', b"null", b"[]", b"{}", b"true", b"[" * 3000]
)


@st.composite
def mutated(draw: st.DrawFn, kind: str) -> bytes:
    body = draw(st.sampled_from(_SEEDS[kind]))
    how = draw(st.sampled_from(["number", "truncate", "splice"]))
    if how == "truncate":
        return body[: draw(st.integers(0, len(body)))]
    digits = [i for i, b in enumerate(body) if 48 <= b <= 57]
    at = draw(st.sampled_from(digits)) if digits and how == "number" else draw(st.integers(0, len(body)))
    end = at
    while how == "number" and end < len(body) and 48 <= body[end] <= 57:
        end += 1
    return body[:at] + draw(_HOSTILE) + body[end:]


@pytest.mark.parametrize("kind", ["openai", "anthropic", "gemini"])
async def test_fuzzed_replies_give_typed_errors_and_leave_the_deployment_whole(kind: str) -> None:
    current: dict[str, bytes] = {"body": b""}

    def reply(request: dict[str, Any]) -> Reply:
        if "fine" in json.dumps(request):
            return 200, JSON, _SEEDS[kind][0]
        return 200, JSON, current["body"]

    async with raw_server(reply) as base:
        provider = make(kind, base)
        limiter = RateLimiter(max_concurrency=1)
        budget = BudgetLedger([BudgetLimit(limit_usd=0.05, period="total")])
        spec = ModelSpec("m", kind, input=1.0, output=1.0)
        dep = Deployment("m", provider, "m", spec=spec, limiter=limiter, max_output_tokens=100)
        orch = tw.Orchestrator([dep], budget=budget, retry=RetryPolicy(max_attempts=1), log_level=None)
        async with orch:
            # hypothesis drives sync functions: draw the examples first (the server
            # and the orchestrator live on this test's loop), then await each one.
            examples: list[bytes] = []

            @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)
            @given(body=mutated(kind))
            def collect(body: bytes) -> None:
                examples.append(body)

            collect()
            for body in examples:
                current["body"] = body
                for call in (
                    lambda: provider.complete("m", Request.from_prompt("x", max_tokens=5)),
                    lambda: orch.run("x"),
                ):
                    try:
                        result = await call()
                    except TierwiseError:
                        pass
                    else:
                        assert isinstance(result, Response)
                        assert isinstance(result.model, str)
                        assert all(type(v) is int and v >= 0 for v in (
                            result.usage.input_tokens, result.usage.output_tokens))  # fmt: skip
                assert limiter.in_flight == 0 and budget.reserved("total", "total") == 0.0
            follow = await orch.run("fine")  # the deployment is whole
            assert isinstance(follow, Response)


# -- second pass: gaps the first pass left -------------------------------------------------

# A key with no telling shape (no ``sk-``/``AIza``/bearer prefix): only redaction
# by the provider's own key removes it, the generic patterns do not.
BARE = "gwkeyPlantedQx7Vm2Lr9"


def _assert_no_bare(exc: BaseException) -> None:
    texts = [str(exc), repr(exc), "".join(traceback.format_exception(exc))]
    texts += [repr(v) for v in vars(exc).values()]
    for text in texts:
        assert BARE not in text, text


@pytest.mark.parametrize("kind", ["openai", "anthropic", "gemini"])
async def test_a_negative_retry_after_is_no_hint(kind: str) -> None:
    """``retry-after: -5`` used to read as 0 s ("retry at once"); it is no usable hint."""
    body = b'{"error": {"message": "slow", "type": "rate_limit_error", "status": "RESOURCE_EXHAUSTED"}}'
    for header in ({"retry-after": "-5"}, {"retry-after-ms": "-100"}, {"retry-after": "inf"}):
        async with raw_server(lambda _, h=header: (429, {**JSON, **h}, body)) as base:  # type: ignore[misc]
            async with make(kind, base) as provider:
                with pytest.raises(ProviderError) as info:
                    await provider.complete("m", Request.from_prompt("hi", max_tokens=5))
        assert info.value.retry_after is None, header


@pytest.mark.parametrize("delay", ['"-5s"', '{"seconds": -5}', '{"seconds": 1e400}', '"1e999s"'])
async def test_gemini_retry_info_must_be_finite_and_non_negative(delay: str) -> None:
    body = (
        '{"error": {"code": 429, "message": "quota", "status": "RESOURCE_EXHAUSTED", "details": [{'
        '"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": ' + delay + "}]}}"
    ).encode()
    async with raw_server(lambda _: (429, JSON, body)) as base, make("gemini", base) as provider:
        with pytest.raises(ProviderError) as info:
            await provider.complete("m", Request.from_prompt("hi"))
    assert info.value.retry_after is None


async def test_anthropic_usage_numbers_of_any_size_are_counts_not_failures() -> None:
    """``1e400`` or ``NaN`` in Anthropic usage used to fail the whole reply."""
    base_body = json.loads((FIXTURES / "anthropic" / "text.json").read_bytes())
    for raw in ("1e400", "NaN", "-3", "12.7", "9" * 400):
        text = json.dumps(base_body).replace(
            f'"input_tokens": {base_body["usage"]["input_tokens"]}', f'"input_tokens": {raw}'
        )
        async with raw_server(lambda _, t=text: (200, JSON, t.encode())) as base:  # type: ignore[misc]
            async with make("anthropic", base) as provider:
                resp = await provider.complete("m", Request.from_prompt("hi", max_tokens=10))
        assert resp.usage.input_tokens == (12 if raw == "12.7" else 0), raw
        assert resp.text == "".join(b["text"] for b in base_body["content"] if b["type"] == "text")


async def test_a_bare_key_quoted_in_a_tool_call_error_is_redacted() -> None:
    """``make_tool_call`` quotes the tool name and arguments without the key."""
    body = (
        '{"id": "c", "model": "m", "choices": [{"index": 0, "finish_reason": "tool_calls", "message": '
        '{"role": "assistant", "content": null, "tool_calls": [{"id": "t", "type": "function", '
        '"function": {"name": "' + BARE + '", "arguments": "{' + BARE + '"}}]}}]}'
    ).encode()
    async with raw_server(lambda _: (200, JSON, body)) as base, make("openai", base, BARE) as provider:
        with pytest.raises(ProtocolError) as info:
            await provider.complete("m", Request.from_prompt("hi"))
    _assert_no_bare(info.value)


async def test_a_bare_key_in_a_gemini_block_message_or_response_id_is_redacted() -> None:
    body = json.dumps(
        {"promptFeedback": {"blockReason": BARE, "blockReasonMessage": f"blocked {BARE}"}, "responseId": BARE}
    ).encode()
    async with raw_server(lambda _: (200, JSON, body)) as base, make("gemini", base, BARE) as provider:
        with pytest.raises(ProviderError) as info:
            await provider.complete("m", Request.from_prompt("hi"))
        _assert_no_bare(info.value)
        sse = b"data: " + body + b"\r\n\r\n"
    async with raw_server(lambda _: (200, SSE, sse)) as base, make("gemini", base, BARE) as provider:
        with pytest.raises(ProviderError) as info:
            async for _ in provider.stream("m", Request.from_prompt("hi")):
                pass
    _assert_no_bare(info.value)


@pytest.mark.parametrize("kind", ["openai", "anthropic", "gemini"])
async def test_a_bare_key_quoted_by_a_shape_error_is_redacted(kind: str) -> None:
    """An exception's own text about a wire value (``token count is not a number:
    '<key>'``) went into the ProtocolError unredacted."""
    usage = {
        "openai": {"choices": [{"index": 0, "message": {"content": BARE}, "finish_reason": BARE}],
                   "model": {"k": BARE}, "usage": {"prompt_tokens": BARE}},
        "anthropic": {"content": [{"type": "text", "text": "x"}], "usage": {"input_tokens": BARE}},
        "gemini": {"candidates": [{"finishReason": "STOP"}], "usageMetadata": {"promptTokenCount": BARE}},
    }[kind]  # fmt: skip
    body = json.dumps(usage).encode()
    async with raw_server(lambda _: (200, JSON, body)) as base, make(kind, base, BARE) as provider:
        try:
            await provider.complete("m", Request.from_prompt("hi", max_tokens=5))
        except TierwiseError as exc:
            _assert_no_bare(exc)


async def test_gemini_json_array_answering_a_stream_request_is_the_reply() -> None:
    """Without ``alt=sse`` Gemini streams one JSON array of chunks; the JSON-reply path
    for streams must read it as those chunks, not fail it as "not a reply"."""
    lines = (FIXTURES / "gemini" / "stream_text.sse").read_text().splitlines()
    chunks = [json.loads(line[6:]) for line in lines if line.startswith("data: ")]
    body = json.dumps(chunks).encode()
    async with raw_server(lambda _: (200, JSON, body)) as base, make("gemini", base) as provider:
        out = [e async for e in provider.stream("m", Request.from_prompt("hi"))]
    final = out[-1]
    assert isinstance(final, Done)
    expected = "".join(
        p.get("text", "")
        for c in chunks
        for p in c["candidates"][0]["content"]["parts"]
        if not p.get("thought")
    )
    assert final.response.text == expected and expected
    assert "".join(getattr(e, "text", "") for e in out[:-1] if type(e).__name__ == "TextDelta") == expected
    error = json.dumps([json.loads((FIXTURES / "gemini" / "error_503.json").read_bytes())]).encode()
    async with raw_server(lambda _: (200, JSON, error)) as base, make("gemini", base) as provider:
        with pytest.raises(ServerError):
            async for _ in provider.stream("m", Request.from_prompt("hi")):
                pass


async def test_openai_stream_cut_inside_tool_arguments_ends_with_a_length_answer() -> None:
    chunks = [
        {"choices": [{"index": 0, "delta": {"content": "Checking."}}]},
        {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "t1", "type": "function",
            "function": {"name": "f", "arguments": '{"q": "unf'}}]}}]},
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "length"}]},
    ]  # fmt: skip
    body = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks).encode() + b"data: [DONE]\n\n"
    async with raw_server(lambda _: (200, SSE, body)) as base, make("openai", base) as provider:
        out = [e async for e in provider.stream("m", Request.from_prompt("hi"))]
        bad = body.replace(b'"length"', b'"tool_calls"')
        async with raw_server(lambda _: (200, SSE, bad)) as base2, make("openai", base2) as other:
            with pytest.raises(ProtocolError):
                async for _ in other.stream("m", Request.from_prompt("hi")):
                    pass
    final = out[-1]
    assert isinstance(final, Done) and final.response.finish_reason == "length"
    assert final.response.text == "Checking."
    (call,) = final.response.tool_calls
    assert call.incomplete and call.arguments == {} and call.raw_arguments == '{"q": "unf'


# -- a fuzz over stream replies, called directly -------------------------------------------

_SSE_SEEDS = {
    kind: [(FIXTURES / kind / n).read_bytes() for n in names]
    for kind, names in (
        ("openai", ("chat_text.sse", "chat_tool_calls.sse")),
        ("anthropic", ("stream_text.sse", "stream_tool_calls.sse")),
        ("gemini", ("stream_text.sse", "stream_function_calls.sse")),
    )
}


@st.composite
def mutated_from(draw: st.DrawFn, seeds: list[bytes]) -> bytes:
    body = draw(st.sampled_from(seeds))
    how = draw(st.sampled_from(["number", "truncate", "splice", "string"]))
    if how == "truncate":
        return body[: draw(st.integers(0, len(body)))]
    if how == "string":
        quotes = [i for i, b in enumerate(body) if b == 34]
        at = draw(st.sampled_from(quotes)) if quotes else 0
        return body[:at] + draw(_HOSTILE) + b"," + body[at:]
    digits = [i for i, b in enumerate(body) if 48 <= b <= 57]
    at = draw(st.sampled_from(digits)) if digits and how == "number" else draw(st.integers(0, len(body)))
    end = at
    while how == "number" and end < len(body) and 48 <= body[end] <= 57:
        end += 1
    return body[:at] + draw(_HOSTILE) + body[end:]


def _draw(strategy: st.SearchStrategy[bytes], n: int = 50) -> list[bytes]:
    examples: list[bytes] = []

    @settings(max_examples=n, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(body=strategy)
    def collect(body: bytes) -> None:
        examples.append(body)

    collect()
    return examples


def _check_response(resp: Response) -> None:
    assert isinstance(resp, Response) and isinstance(resp.model, str) and isinstance(resp.text, str)
    u = resp.usage
    for v in (
        u.input_tokens,
        u.output_tokens,
        u.cached_input_tokens,
        u.cache_write_tokens,
        u.reasoning_tokens,
    ):
        assert type(v) is int and v >= 0
    assert u.reported_cost_usd is None or 0.0 <= u.reported_cost_usd < float("inf")
    for call in resp.tool_calls:
        assert isinstance(call.id, str) and isinstance(call.name, str)


@pytest.mark.parametrize("kind", ["openai", "anthropic", "gemini"])
@pytest.mark.parametrize("mode", ["json", "sse"])
async def test_fuzzed_replies_called_directly_give_typed_errors_or_valid_responses(
    kind: str, mode: str
) -> None:
    seeds = _SEEDS[kind] if mode == "json" else _SSE_SEEDS[kind]
    current = {"body": b""}
    headers = JSON if mode == "json" else SSE
    async with raw_server(lambda _: (200, headers, current["body"])) as base, make(kind, base) as provider:
        for body in _draw(mutated_from(seeds)):
            current["body"] = body
            request = Request.from_prompt("x", max_tokens=5)
            try:
                if mode == "json":
                    _check_response(await provider.complete("m", request))
                else:
                    events = [e async for e in provider.stream("m", request)]
                    assert isinstance(events[-1], Done)
                    _check_response(events[-1].response)
            except TierwiseError:
                pass
