"""The OpenAI adapter against recorded replies of OpenAI and the compatible servers.

Every wire test goes through the ``serve`` fixture, so it runs once over
``httpx.MockTransport`` and once over real loopback sockets.
"""

from __future__ import annotations

import email.utils
import json
import time
from pathlib import Path
from typing import Any

import pytest

from tierwise.errors import (
    AuthenticationError,
    BadRequestError,
    ConfigError,
    ContentFiltered,
    ContextWindowExceeded,
    NotFoundError,
    PermissionDeniedError,
    ProtocolError,
    ProviderError,
    ProviderTimeout,
    RateLimitError,
    ServerError,
)
from tierwise.providers.openai import COMPATIBLE_SERVERS, OpenAI, OpenAICompat
from tierwise.types import (
    Done,
    Message,
    ReasoningDelta,
    Request,
    Response,
    StreamEvent,
    TextDelta,
    Tool,
    ToolCall,
    ToolCallDelta,
    Usage,
)

FIX = Path(__file__).parent / "fixtures" / "openai"
KEY = "sk-test-abcdefghijklmnop1234"
REQ = Request.from_prompt("What is the capital of France?", system="Answer in one sentence.")
WEATHER = Tool(
    "get_weather",
    "Current weather for a city",
    {
        "type": "object",
        "properties": {"city": {"type": "string"}, "unit": {"type": "string"}},
        "required": ["city"],
    },
)


def raw(name: str) -> bytes:
    return (FIX / name).read_bytes()


def odd_chunks(data: bytes) -> list[bytes]:
    """Split at awkward boundaries: inside ``data:``, inside JSON strings, between CR and LF."""
    sizes = (1, 7, 2, 13, 5, 31, 3, 64, 11)
    out: list[bytes] = []
    i = k = 0
    while i < len(data):
        n = sizes[k % len(sizes)]
        out.append(data[i : i + n])
        i += n
        k += 1
    return out


def make(srv: Any, compat: str | OpenAICompat = "openai", key: str | None = KEY, **kw: Any) -> OpenAI:
    return OpenAI(api_key=key, base_url=srv.base_url + "/v1", http_client=srv.client, compat=compat, **kw)


async def run_stream(
    provider: OpenAI, model: str, request: Request = REQ
) -> tuple[list[StreamEvent], Response]:
    events = [event async for event in provider.stream(model, request)]
    assert sum(isinstance(e, Done) for e in events) == 1
    last = events[-1]
    assert isinstance(last, Done)
    return events, last.response


async def drain(provider: OpenAI, model: str, seen: list[StreamEvent], request: Request = REQ) -> None:
    """Consume a stream, keeping what arrived before it raised."""
    async for event in provider.stream(model, request):
        seen.append(event)


async def call(provider: OpenAI, model: str, streamed: bool) -> Response:
    if streamed:
        return (await run_stream(provider, model))[1]
    return await provider.complete(model, REQ)


def text_of(events: list[StreamEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


def reasoning_of(events: list[StreamEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, ReasoningDelta))


# --------------------------------------------------------------------------- non-streamed replies


async def test_plain_text_reply_and_request(serve: Any) -> None:
    headers = {
        "x-request-id": "req_7f3a9c2e1b",
        "x-ratelimit-limit-requests": "10000",
        "x-ratelimit-remaining-requests": "9999",
        "x-ratelimit-reset-requests": "6ms",
        "x-ratelimit-limit-tokens": "200000",
        "x-ratelimit-remaining-tokens": "199968",
        "x-ratelimit-reset-tokens": "9ms",
    }
    srv = await serve(200, raw("chat_text.json"), headers=headers)
    resp = await make(srv).complete("gpt-4o-mini", REQ)

    assert resp.text == "The capital of France is Paris."
    assert resp.model == "gpt-4o-mini-2024-07-18"
    assert resp.provider == "openai"
    assert resp.finish_reason == "stop"
    assert resp.raw_finish_reason == "stop"
    assert resp.usage == Usage(input_tokens=24, output_tokens=8)
    assert resp.usage.reported_cost_usd is None
    assert resp.tool_calls == []
    assert resp.reasoning == ""
    assert resp.request_id == "req_7f3a9c2e1b"
    assert resp.rate_limits is not None
    assert resp.rate_limits.tokens_remaining == 199968
    assert resp.latency_ms > 0

    assert srv.last_path == "/v1/chat/completions"
    assert srv.last_headers["authorization"] == f"Bearer {KEY}"
    assert srv.last_headers["content-type"] == "application/json"
    assert srv.last_json() == {
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "Answer in one sentence."},
            {"role": "user", "content": "What is the capital of France?"},
        ],
    }


async def test_parallel_tool_calls(serve: Any) -> None:
    srv = await serve(200, raw("chat_tool_calls.json"))
    resp = await make(srv).complete(
        "gpt-4o", Request.from_prompt("Weather in Paris and Tokyo?", tools=[WEATHER])
    )

    assert resp.finish_reason == "tool_calls"
    assert resp.text == ""
    assert [(c.id, c.name, c.arguments) for c in resp.tool_calls] == [
        ("call_9kXbYp2mQ4rT7vN1sL8dE3fA", "get_weather", {"city": "Paris", "unit": "celsius"}),
        ("call_Hq3ZwR5tY8uI0oP2aS4dF6gJ", "get_weather", {"city": "Tokyo", "unit": "celsius"}),
    ]
    assert resp.tool_calls[0].raw_arguments == '{"city":"Paris","unit":"celsius"}'
    assert resp.usage.input_tokens == 82 and resp.usage.output_tokens == 51


async def test_length_truncation(serve: Any) -> None:
    srv = await serve(200, raw("chat_length.json"))
    resp = await make(srv).complete(
        "gpt-4o-mini", Request.from_prompt("Explain photosynthesis", max_tokens=10)
    )
    assert resp.finish_reason == "length"
    assert resp.raw_finish_reason == "length"
    assert resp.text == "Photosynthesis is the process by which green plants"
    assert srv.last_json()["max_completion_tokens"] == 10
    assert "max_tokens" not in srv.last_json()


async def test_cached_prompt_tokens_are_a_subset_of_input(serve: Any) -> None:
    srv = await serve(200, raw("chat_cached_usage.json"))
    resp = await make(srv).complete("gpt-4.1", REQ)
    assert resp.usage == Usage(input_tokens=2006, output_tokens=18, cached_input_tokens=1920)


async def test_reasoning_tokens_are_counted_in_output(serve: Any) -> None:
    srv = await serve(200, raw("chat_reasoning.json"))
    resp = await make(srv).complete(
        "gpt-5-mini", Request.from_prompt("r's in strawberry?", reasoning_effort="low")
    )
    assert resp.usage.output_tokens == 1186
    assert resp.usage.reasoning_tokens == 1152
    assert resp.usage.input_tokens == 19
    assert resp.text == 'There are 3 r\'s in "strawberry".'
    assert srv.last_json()["reasoning_effort"] == "low"


async def test_refusal_is_content_filter(serve: Any) -> None:
    srv = await serve(200, raw("chat_refusal.json"))
    resp = await make(srv).complete("gpt-4o", REQ)
    assert resp.finish_reason == "content_filter"
    assert resp.raw_finish_reason == "stop"
    assert resp.text == "I'm sorry, I can't help with that request."


async def test_deepseek_reasoning_content_and_cache_hits(serve: Any) -> None:
    srv = await serve(200, raw("deepseek_reasoner.json"))
    resp = await make(srv, "deepseek").complete("deepseek-reasoner", REQ)
    assert resp.provider == "deepseek"
    assert resp.text == "9.8 is larger than 9.11."
    assert resp.reasoning.startswith("We compare 9.11 and 9.8")
    assert resp.usage == Usage(
        input_tokens=1043, output_tokens=87, cached_input_tokens=1024, reasoning_tokens=62
    )
    assert srv.last_path == "/v1/chat/completions"


async def test_deepseek_cache_hits_without_prompt_tokens_details(serve: Any) -> None:
    srv = await serve(200, raw("deepseek_chat_cache.json"))
    resp = await make(srv, "deepseek").complete("deepseek-chat", REQ)
    assert resp.usage == Usage(input_tokens=2216, output_tokens=12, cached_input_tokens=2176)


async def test_mistral_model_length_is_length(serve: Any) -> None:
    srv = await serve(200, raw("mistral_model_length.json"))
    resp = await make(srv, "mistral").complete("mistral-small-latest", REQ)
    assert resp.provider == "mistral"
    assert resp.finish_reason == "length"
    assert resp.raw_finish_reason == "model_length"
    assert resp.usage == Usage(input_tokens=32740, output_tokens=28)


async def test_mistral_thinking_chunks(serve: Any) -> None:
    srv = await serve(200, raw("mistral_magistral_thinking.json"))
    resp = await make(srv, "mistral").complete("magistral-medium-latest", REQ)
    assert resp.text == "Yes, 17 is prime."
    assert resp.reasoning == "17 is odd and has no divisors besides 1 and 17."


async def test_openrouter_reported_cost(serve: Any) -> None:
    srv = await serve(200, raw("openrouter_cost.json"))
    resp = await make(srv, "openrouter").complete("openai/gpt-4o-mini", REQ)
    assert resp.provider == "openrouter"
    assert resp.model == "openai/gpt-4o-mini"
    assert resp.text == "Hello! How can I help you today?"
    assert resp.usage.reported_cost_usd == pytest.approx(0.0000075)
    assert resp.usage.input_tokens == 14 and resp.usage.output_tokens == 9


async def test_openrouter_reasoning_field(serve: Any) -> None:
    srv = await serve(200, raw("openrouter_reasoning.json"))
    resp = await make(srv, "openrouter").complete("deepseek/deepseek-r1", REQ)
    assert resp.reasoning == "The user wants the classic answer; 6 x 7 = 42."
    assert resp.text == "The answer is 42."
    assert resp.usage.reasoning_tokens == 21
    assert resp.usage.reported_cost_usd == pytest.approx(0.00009394)


async def test_missing_and_null_usage_fields_are_zero(serve: Any) -> None:
    body = {
        "id": "x",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
        "usage": {
            "prompt_tokens": None,
            "completion_tokens": 3,
            "prompt_tokens_details": None,
            "completion_tokens_details": None,
            "cost": None,
        },
    }
    srv = await serve(200, json.dumps(body).encode())
    resp = await make(srv, "vllm").complete("qwen", REQ)
    assert resp.usage == Usage(input_tokens=0, output_tokens=3)
    assert resp.model == "qwen"  # no model in the reply: the requested one


@pytest.mark.parametrize(
    ("raw_reason", "expected"),
    [
        ("stop", "stop"),
        ("length", "length"),
        ("tool_calls", "tool_calls"),
        ("function_call", "tool_calls"),
        ("content_filter", "content_filter"),
        ("STOP", "stop"),
        ("something_new", "stop"),
    ],
)
async def test_finish_reason_mapping(serve: Any, raw_reason: str, expected: str) -> None:
    body = {"choices": [{"message": {"content": "x"}, "finish_reason": raw_reason}], "model": "m"}
    srv = await serve(200, json.dumps(body).encode())
    resp = await make(srv).complete("m", REQ)
    assert resp.finish_reason == expected
    assert resp.raw_finish_reason == raw_reason


async def test_forced_tool_call_with_stop_reports_tool_calls(serve: Any) -> None:
    body = {
        "choices": [
            {
                "message": {
                    "content": None,
                    "tool_calls": [
                        {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
                    ],
                },
                "finish_reason": "stop",
            }
        ]
    }
    srv = await serve(200, json.dumps(body).encode())
    resp = await make(srv).complete("gpt-4o", REQ)
    assert resp.finish_reason == "tool_calls"
    assert resp.raw_finish_reason == "stop"
    assert resp.tool_calls == [ToolCall("call_1", "f", {})]


# --------------------------------------------------------------------------- streaming == non-streaming

PAIRS = [
    ("chat_text", "openai", "gpt-4o-mini", True),
    ("chat_tool_calls", "openai", "gpt-4o", True),
    ("deepseek_reasoner", "deepseek", "deepseek-reasoner", True),
    ("mistral_model_length", "mistral", "mistral-small-latest", False),
    ("openrouter_cost", "openrouter", "openai/gpt-4o-mini", False),
]


@pytest.mark.parametrize(
    ("name", "compat", "model", "sends_stream_options"), PAIRS, ids=[p[0] for p in PAIRS]
)
async def test_streamed_equals_non_streamed(
    serve: Any, name: str, compat: str, model: str, sends_stream_options: bool
) -> None:
    sse_name = "openrouter_stream.sse" if name == "openrouter_cost" else f"{name}.sse"
    json_srv = await serve(200, raw(f"{name}.json"), headers={"x-request-id": "req_json"})
    sse_srv = await serve(200, chunks=odd_chunks(raw(sse_name)), headers={"x-request-id": "req_sse"})
    request = Request.from_prompt("q", tools=[WEATHER]) if "tool" in name else REQ

    plain = await make(json_srv, compat).complete(model, request)
    events, streamed = await run_stream(make(sse_srv, compat), model, request)

    assert streamed == plain
    assert streamed.usage == plain.usage  # spelled out: usage is part of equality
    assert streamed.request_id == "req_sse"
    assert streamed.ttft_ms is not None and streamed.latency_ms >= streamed.ttft_ms
    assert text_of(events) == plain.text
    assert reasoning_of(events) == plain.reasoning
    assert not isinstance(events[0], Done)

    body = sse_srv.last_json()
    assert body["stream"] is True
    assert ("stream_options" in body) is sends_stream_options
    if sends_stream_options:
        assert body["stream_options"] == {"include_usage": True}
    assert "stream" not in json_srv.last_json()


async def test_stream_tool_call_deltas_by_index(serve: Any) -> None:
    srv = await serve(200, chunks=odd_chunks(raw("chat_tool_calls.sse")))
    events, resp = await run_stream(make(srv), "gpt-4o", Request.from_prompt("q", tools=[WEATHER]))
    deltas = [e for e in events if isinstance(e, ToolCallDelta)]
    firsts = [d for d in deltas if d.id]
    assert [(d.index, d.id, d.name) for d in firsts] == [
        (0, "call_9kXbYp2mQ4rT7vN1sL8dE3fA", "get_weather"),
        (1, "call_Hq3ZwR5tY8uI0oP2aS4dF6gJ", "get_weather"),
    ]
    for index, call in enumerate(resp.tool_calls):
        assert "".join(d.arguments for d in deltas if d.index == index) == call.raw_arguments
    assert resp.tool_calls[1].arguments == {"city": "Tokyo", "unit": "celsius"}
    assert resp.finish_reason == "tool_calls"


async def test_stream_interleaved_tool_calls_and_missing_index(serve: Any) -> None:
    chunks = [
        {"choices": [{"index": 0, "delta": {"tool_calls": [
            {"index": 0, "id": "call_a", "function": {"name": "alpha", "arguments": '{"x"'}},
            {"index": 1, "id": "call_b", "function": {"name": "beta", "arguments": '{"y"'}},
        ]}}]},
        {"choices": [{"index": 0, "delta": {"tool_calls": [
            {"index": 1, "function": {"arguments": ":2}"}},
            {"index": 0, "function": {"arguments": ":1}"}},
        ]}}]},
        # A server that omits index: a new id opens a third call, later fragments continue it.
        {"choices": [{"index": 0, "delta": {"tool_calls": [
            {"id": "call_c", "function": {"name": "gamma", "arguments": '{"z":'}},
        ]}}]},
        {"choices": [{"index": 0, "delta": {"tool_calls": [{"function": {"arguments": "3}"}}]}}]},
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
    ]  # fmt: skip
    data = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks).encode()
    srv = await serve(200, chunks=odd_chunks(data))
    _, resp = await run_stream(make(srv, "vllm", key=None), "qwen")
    assert [(c.id, c.name, c.arguments) for c in resp.tool_calls] == [
        ("call_a", "alpha", {"x": 1}),
        ("call_b", "beta", {"y": 2}),
        ("call_c", "gamma", {"z": 3}),
    ]


async def test_stream_crlf_without_done_and_without_final_blank_line(serve: Any) -> None:
    data = raw("chat_text.sse").replace(b"data: [DONE]\n\n", b"").rstrip(b"\n").replace(b"\n", b"\r\n")
    srv = await serve(200, chunks=odd_chunks(data))
    _, resp = await run_stream(make(srv), "gpt-4o-mini")
    assert resp.text == "The capital of France is Paris."
    assert resp.usage.input_tokens == 24 and resp.usage.output_tokens == 8


async def test_stream_usage_chunk_with_null_choices(serve: Any) -> None:
    data = (
        b'data: {"choices":[{"index":0,"delta":{"content":"ok"},"finish_reason":null}]}\n\n'
        b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n'
        b'data: {"choices":null,"usage":{"prompt_tokens":5,"completion_tokens":1}}\n\n'
    )
    srv = await serve(200, chunks=[data])
    _, resp = await run_stream(make(srv, "vllm", key=None), "qwen")
    assert resp.text == "ok"
    assert resp.usage == Usage(input_tokens=5, output_tokens=1)


async def test_stream_without_usage_request_sends_no_stream_options(serve: Any) -> None:
    srv = await serve(200, chunks=[raw("chat_text.sse")])
    request = Request.from_prompt("q", stream_usage=False)
    await run_stream(make(srv), "gpt-4o-mini", request)
    assert "stream_options" not in srv.last_json()


async def test_truncated_stream_is_protocol_error(serve: Any) -> None:
    data = raw("chat_text.sse")
    cut = data.index(b'"finish_reason":"stop"')
    data = data[: data.rindex(b"data: ", 0, cut)]
    srv = await serve(200, chunks=odd_chunks(data))
    seen: list[StreamEvent] = []
    with pytest.raises(ProtocolError) as info:
        await drain(make(srv), "gpt-4o-mini", seen)
    assert "truncated" in str(info.value)
    assert info.value.provider == "openai"
    assert info.value.model == "gpt-4o-mini"  # the requested name, not the reported snapshot
    assert info.value.retryable is True
    assert text_of(seen) == "The capital of France is Paris."  # content arrived, the end did not


@pytest.mark.parametrize(
    ("event", "needle"),
    [
        (b"data: {not json\n\n", "{not json"),
        (b"data: [1, 2]\n\n", "[1, 2]"),
        (b'data: {"choices":[{"index":0,"delta":"oops"}]}\n\n', "oops"),
        (b'data: {"choices":["nope"]}\n\n', "nope"),
    ],
)
async def test_malformed_stream_event_is_protocol_error(serve: Any, event: bytes, needle: str) -> None:
    first = b'data: {"choices":[{"index":0,"delta":{"content":"a"}}]}\n\n'
    srv = await serve(200, chunks=[first, event])
    with pytest.raises(ProtocolError) as info:
        await run_stream(make(srv), "gpt-4o-mini")
    assert "[openai/gpt-4o-mini]" in str(info.value)
    assert needle in str(info.value)


async def test_stream_invalid_tool_arguments_is_protocol_error(serve: Any) -> None:
    data = (
        b'data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"c1",'
        b'"function":{"name":"f","arguments":"{\\"a\\":"}}]}}]}\n\n'
        b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}\n\n'
    )
    srv = await serve(200, chunks=[data])
    with pytest.raises(ProtocolError, match="invalid JSON arguments"):
        await run_stream(make(srv), "gpt-4o")


async def test_openai_inband_stream_error(serve: Any) -> None:
    srv = await serve(200, chunks=odd_chunks(raw("chat_stream_error.sse")))
    seen: list[StreamEvent] = []
    with pytest.raises(ServerError) as info:
        await drain(make(srv), "gpt-4.1", seen)
    assert text_of(seen) == "The answer"
    assert info.value.retryable is True
    assert info.value.error_type == "server_error"
    assert "Sorry about that" in str(info.value)


async def test_openrouter_stream_comments_and_inband_error(serve: Any) -> None:
    srv = await serve(200, chunks=odd_chunks(raw("openrouter_stream_error.sse")))
    seen: list[StreamEvent] = []
    with pytest.raises(ServerError) as info:
        await drain(make(srv, "openrouter"), "anthropic/claude-sonnet-4", seen)
    assert text_of(seen) == "Once upon a"
    assert info.value.provider == "openrouter"
    assert info.value.error_code == "server_error"
    assert info.value.retryable is True
    assert "Provider disconnected unexpectedly" in str(info.value)


@pytest.mark.parametrize(
    ("error", "cls", "retryable"),
    [
        ({"code": 429, "message": "Rate limit exceeded: free-models-per-min."}, RateLimitError, True),
        ({"code": 402, "message": "Insufficient credits"}, BadRequestError, False),
        ({"code": 502, "message": "Provider returned error"}, ServerError, True),
        ({"message": "Overloaded", "type": "overloaded_error"}, ServerError, True),
        (
            {"message": "quota", "type": "insufficient_quota", "code": "insufficient_quota"},
            RateLimitError,
            False,
        ),
    ],
)
async def test_inband_error_classification(
    serve: Any, error: dict[str, Any], cls: type[ProviderError], retryable: bool
) -> None:
    data = (
        b'data: {"choices":[{"index":0,"delta":{"content":"a"}}]}\n\n'
        + f"data: {json.dumps({'error': error})}\n\n".encode()
    )
    srv = await serve(200, chunks=[data])
    with pytest.raises(ProviderError) as info:
        await run_stream(make(srv, "openrouter"), "x/y")
    assert type(info.value) is cls
    assert info.value.retryable is retryable


async def test_openrouter_error_in_200_json_body(serve: Any) -> None:
    body = {"error": {"code": 429, "message": "Rate limit exceeded"}, "user_id": "user_2x"}
    srv = await serve(200, json.dumps(body).encode())
    with pytest.raises(RateLimitError):
        await make(srv, "openrouter").complete("x/y", REQ)


async def test_openrouter_error_embedded_in_choice(serve: Any) -> None:
    body = {
        "id": "gen-1",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "partial"},
                "finish_reason": "error",
                "error": {"code": 502, "message": "Upstream error from Together"},
            }
        ],
    }
    srv = await serve(200, json.dumps(body).encode())
    with pytest.raises(ServerError, match="Upstream error from Together"):
        await make(srv, "openrouter").complete("x/y", REQ)


# --------------------------------------------------------------------------- HTTP errors

DATE = "<http-date +30s>"
ERRORS: list[tuple[str, str, int, dict[str, str], type[ProviderError], bool, float | None]] = [
    # (compat, body file, status, headers, class, retryable, retry_after)
    ("openai", "openai_400_context_length.json", 400, {}, ContextWindowExceeded, False, None),
    ("openai", "openai_401_invalid_key.json", 401, {}, AuthenticationError, False, None),
    ("openai", "openai_403_region.json", 403, {}, PermissionDeniedError, False, None),
    ("openai", "openai_404_model.json", 404, {}, NotFoundError, False, None),
    (
        "openai",
        "openai_429_rate_limit.json",
        429,
        {"retry-after-ms": "430", "retry-after": "1", "x-ratelimit-remaining-tokens": "0"},
        RateLimitError,
        True,
        0.43,
    ),
    ("openai", "openai_429_rate_limit.json", 429, {"retry-after": "20"}, RateLimitError, True, 20.0),
    ("openai", "openai_429_rate_limit.json", 429, {"retry-after": DATE}, RateLimitError, True, 30.0),
    ("openai", "openai_429_insufficient_quota.json", 429, {}, RateLimitError, False, None),
    ("openai", "openai_500.json", 500, {"x-should-retry": "true"}, ServerError, True, None),
    ("openai", "openai_500.json", 500, {"x-should-retry": "false"}, ServerError, False, None),
    ("openai", "openai_503_overloaded.json", 503, {"retry-after": "5"}, ServerError, True, 5.0),
    ("openai", "openai_500.json", 408, {}, ProviderTimeout, True, None),
    ("gateway", "gateway_529_overloaded.json", 529, {"x-should-retry": "true"}, ServerError, True, None),
    ("gateway", "proxy_502.html", 502, {"content-type": "text/html"}, ServerError, True, None),
    ("mistral", "mistral_400_context.json", 400, {}, ContextWindowExceeded, False, None),
    ("mistral", "mistral_401.json", 401, {}, AuthenticationError, False, None),
    ("mistral", "mistral_422_extra_field.json", 422, {}, BadRequestError, False, None),
    ("mistral", "mistral_429.json", 429, {}, RateLimitError, True, None),
    ("deepseek", "deepseek_400_context.json", 400, {}, ContextWindowExceeded, False, None),
    ("deepseek", "deepseek_402.json", 402, {}, BadRequestError, False, None),
    ("openrouter", "openrouter_400_context.json", 400, {}, ContextWindowExceeded, False, None),
    ("openrouter", "openrouter_402.json", 402, {}, BadRequestError, False, None),
    ("openrouter", "openrouter_403_moderation.json", 403, {}, ContentFiltered, False, None),
    ("openrouter", "openrouter_429_upstream.json", 429, {"retry-after": "60"}, RateLimitError, True, 60.0),
    ("openrouter", "openrouter_502_provider.json", 502, {}, ServerError, True, None),
    ("vllm", "vllm_400_context.json", 400, {}, ContextWindowExceeded, False, None),
    ("ollama", "ollama_404_model.json", 404, {}, NotFoundError, False, None),
]


@pytest.mark.parametrize("streamed", [False, True], ids=["complete", "stream"])
@pytest.mark.parametrize(
    ("compat", "name", "status", "headers", "cls", "retryable", "retry_after"),
    ERRORS,
    ids=[f"{e[0]}-{e[2]}-{e[1].split('.')[0]}-{i}" for i, e in enumerate(ERRORS)],
)
async def test_http_errors(
    serve: Any,
    compat: str,
    name: str,
    status: int,
    headers: dict[str, str],
    cls: type[ProviderError],
    retryable: bool,
    retry_after: float | None,
    streamed: bool,
) -> None:
    headers = dict(headers)
    is_date = headers.get("retry-after") == DATE
    if is_date:
        headers["retry-after"] = email.utils.formatdate(time.time() + 30, usegmt=True)
    headers["x-request-id"] = "req_err_42"
    srv = await serve(status, raw(f"errors/{name}"), headers=headers)
    provider = make(srv, compat)

    with pytest.raises(ProviderError) as info:
        await call(provider, "some-model", streamed)
    err = info.value
    assert type(err) is cls
    assert err.retryable is retryable
    assert err.status_code == status
    assert err.request_id == "req_err_42"
    assert err.provider == compat
    assert err.model == "some-model"
    assert err.message  # never empty
    if retry_after is None:
        assert err.retry_after is None
    else:
        # An HTTP date has one-second resolution and the clock moves on while the test runs.
        assert err.retry_after == pytest.approx(retry_after, abs=2.0 if is_date else 1e-6)
    assert KEY not in str(err) and KEY not in repr(err)


async def test_error_details_are_kept(serve: Any) -> None:
    srv = await serve(400, raw("errors/openai_400_context_length.json"))
    with pytest.raises(ContextWindowExceeded) as info:
        await make(srv).complete("gpt-4o", REQ)
    assert info.value.error_code == "context_length_exceeded"
    assert info.value.error_type == "invalid_request_error"
    assert "maximum context length is 128000 tokens" in info.value.message


async def test_mistral_422_detail_is_readable(serve: Any) -> None:
    srv = await serve(422, raw("errors/mistral_422_extra_field.json"))
    with pytest.raises(BadRequestError) as info:
        await make(srv, "mistral").complete("mistral-small-latest", REQ)
    assert info.value.message == "body.user: Extra inputs are not permitted"


async def test_openrouter_upstream_raw_error_is_in_message(serve: Any) -> None:
    srv = await serve(429, raw("errors/openrouter_429_upstream.json"))
    with pytest.raises(RateLimitError) as info:
        await make(srv, "openrouter").complete("deepseek/deepseek-chat-v3-0324:free", REQ)
    assert "temporarily rate-limited upstream" in info.value.message
    assert info.value.error_code == "429"


async def test_proxy_html_error_is_excerpted(serve: Any) -> None:
    srv = await serve(502, raw("errors/proxy_502.html"), headers={"content-type": "text/html"})
    with pytest.raises(ServerError) as info:
        await make(srv).complete("gpt-4o", REQ)
    assert "502 Bad Gateway" in info.value.message
    assert "\n" not in info.value.message


# --------------------------------------------------------------------------- malformed replies


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b"not json{", "not json{"),
        (b'{"id":"chatcmpl-1","object":"chat.completion"}', "chatcmpl-1"),
        (b'{"id":"c2","choices":[]}', "no 'choices'"),
        (b'{"id":"c3","choices":null}', "no 'choices'"),
        (b'{"id":"c4","choices":["x"]}', "c4"),
        (b'{"id":"c5","choices":[{"index":0,"finish_reason":"stop"}]}', "no 'message'"),
        (b'{"id":"c6","choices":[{"message":{"content":5},"finish_reason":"stop"}]}', "c6"),
        (b'{"id":"c7","choices":[{"message":{"tool_calls":["oops"]}}]}', "c7"),
        (b"[1, 2, 3]", "[1,2,3]"),
        (
            b'{"choices":[{"message":{"tool_calls":[{"id":"c","function":{"name":"f","arguments":"{bad"}}]}}]}',
            "invalid JSON arguments",
        ),
    ],
)
async def test_malformed_reply_is_protocol_error(serve: Any, body: bytes, needle: str) -> None:
    srv = await serve(200, body)
    with pytest.raises(ProtocolError) as info:
        await make(srv).complete("gpt-4o", REQ)
    message = str(info.value)
    assert message.startswith("[openai/gpt-4o]")
    assert needle in message
    assert info.value.retryable is True


# --------------------------------------------------------------------------- secrets


@pytest.mark.parametrize("key", [KEY, "gw-Secret-Value-9f8e7d6c"])
async def test_api_key_never_leaks(serve: Any, key: str) -> None:
    echo = {"error": {"message": f"key {key} is not valid for this org", "type": "invalid_request_error"}}
    srv = await serve(401, json.dumps(echo).encode())
    provider = make(srv, "gateway", key=key)
    assert key not in repr(provider) and key not in str(provider)
    with pytest.raises(AuthenticationError) as info:
        await provider.complete("m", REQ)
    for text in (str(info.value), repr(info.value), info.value.message):
        assert key not in text

    srv = await serve(200, f'{{"choices": "{key}"'.encode())
    with pytest.raises(ProtocolError) as perr:
        await make(srv, "gateway", key=key).complete("m", REQ)
    assert key not in str(perr.value) and key not in repr(perr.value)


# --------------------------------------------------------------------------- request mapping


async def test_full_request_mapping_openai(serve: Any) -> None:
    srv = await serve(200, raw("chat_text.json"))
    request = Request(
        messages=[
            Message("system", "You are terse."),
            Message(
                "user",
                [{"type": "text", "text": "Weather?"}, {"type": "image_url", "image_url": {"url": "u"}}],
            ),
            Message(
                "assistant",
                "",
                tool_calls=[ToolCall("call_1", "get_weather", {"city": "Paris"})],
            ),
            Message("tool", '{"temp": 21}', tool_call_id="call_1", name="get_weather"),
            Message("user", "And Tokyo?", name="alice"),
        ],
        max_tokens=256,
        temperature=0.2,
        top_p=0.9,
        stop=["\n\n"],
        tools=[WEATHER],
        tool_choice={"name": "get_weather"},
        parallel_tool_calls=False,
        response_format={"type": "json_object"},
        reasoning_effort="minimal",
        thinking_budget=1024,
        seed=7,
        user="u-123",
        extra_body={"service_tier": "flex", "temperature": 0.0},
        metadata={"team": "search"},
    )
    await make(srv).complete("gpt-4o", request)
    assert srv.last_json() == {
        "model": "gpt-4o",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Weather?"},
                    {"type": "image_url", "image_url": {"url": "u"}},
                ],
            },
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": '{"temp": 21}'},
            {"role": "user", "content": "And Tokyo?", "name": "alice"},
        ],
        "max_completion_tokens": 256,
        "temperature": 0.0,  # extra_body wins
        "top_p": 0.9,
        "stop": ["\n\n"],
        "seed": 7,
        "user": "u-123",
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "description": "Current weather for a city",
                    "parameters": WEATHER.parameters,
                },
            }
        ],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "parallel_tool_calls": False,
        "response_format": {"type": "json_object"},
        "reasoning_effort": "minimal",
        "service_tier": "flex",
    }


async def test_mistral_request_drops_unknown_fields(serve: Any) -> None:
    srv = await serve(200, chunks=[raw("mistral_model_length.sse")])
    request = Request.from_prompt(
        "hi", max_tokens=64, seed=3, user="u-1", reasoning_effort="high", extra_body={"safe_prompt": True}
    )
    await run_stream(make(srv, "mistral"), "mistral-small-latest", request)
    body = srv.last_json()
    assert body["max_tokens"] == 64
    assert body["random_seed"] == 3
    assert body["safe_prompt"] is True
    for absent in ("max_completion_tokens", "seed", "user", "reasoning_effort", "stream_options"):
        assert absent not in body
    assert body["stream"] is True


async def test_openrouter_reasoning_effort_is_nested(serve: Any) -> None:
    srv = await serve(200, raw("openrouter_reasoning.json"))
    await make(srv, "openrouter").complete(
        "deepseek/deepseek-r1", Request.from_prompt("q", reasoning_effort="high", max_tokens=9)
    )
    body = srv.last_json()
    assert body["reasoning"] == {"effort": "high"}
    assert "reasoning_effort" not in body
    assert body["max_tokens"] == 9


@pytest.mark.parametrize(
    ("choice", "sent"),
    [
        ("auto", "auto"),
        ("none", "none"),
        ("required", "required"),
        ({"name": "f"}, {"type": "function", "function": {"name": "f"}}),
        ({"type": "tool", "name": "f"}, {"type": "function", "function": {"name": "f"}}),
        ({"type": "any"}, "required"),
        ({"type": "function", "function": {"name": "f"}}, {"type": "function", "function": {"name": "f"}}),
    ],
)
async def test_tool_choice_shapes(serve: Any, choice: Any, sent: Any) -> None:
    srv = await serve(200, raw("chat_tool_calls.json"))
    await make(srv).complete("gpt-4o", Request.from_prompt("q", tools=[WEATHER], tool_choice=choice))
    assert srv.last_json()["tool_choice"] == sent


async def test_key_from_environment(serve: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEEPSEEK_API_KEY", "sk-deepseek-from-env-000")
    srv = await serve(200, raw("deepseek_chat_cache.json"))
    provider = OpenAI(base_url=srv.base_url + "/v1", http_client=srv.client, compat="deepseek")
    await provider.complete("deepseek-chat", REQ)
    assert srv.last_headers["authorization"] == "Bearer sk-deepseek-from-env-000"


async def test_local_servers_need_no_key(serve: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    srv = await serve(200, raw("chat_text.json"))
    resp = await make(srv, "ollama", key=None).complete("llama3.2", REQ)
    assert resp.provider == "ollama"
    assert "authorization" not in srv.last_headers


async def test_missing_key_fails_before_sending(serve: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    srv = await serve(200, raw("chat_text.json"))
    provider = make(srv, key=None)
    with pytest.raises(AuthenticationError, match="OPENAI_API_KEY"):
        await provider.complete("gpt-4o", REQ)
    with pytest.raises(AuthenticationError, match="OPENAI_API_KEY"):
        await run_stream(provider, "gpt-4o")
    assert srv.records() == []


async def test_custom_headers_are_sent(serve: Any) -> None:
    srv = await serve(200, raw("openrouter_cost.json"))
    provider = make(srv, "openrouter", headers={"HTTP-Referer": "https://app.example", "X-Title": "demo"})
    await provider.complete("openai/gpt-4o-mini", REQ)
    assert srv.last_headers["http-referer"] == "https://app.example"
    assert srv.last_headers["x-title"] == "demo"


# --------------------------------------------------------------------------- construction (no wire)


def test_compat_rows() -> None:
    assert set(COMPATIBLE_SERVERS) == {
        "openai",
        "deepseek",
        "mistral",
        "openrouter",
        "vllm",
        "ollama",
        "gateway",
    }
    assert COMPATIBLE_SERVERS["openai"].max_tokens_field == "max_completion_tokens"
    assert all(
        row.max_tokens_field == "max_tokens" for name, row in COMPATIBLE_SERVERS.items() if name != "openai"
    )
    assert COMPATIBLE_SERVERS["vllm"].api_key_env is None
    assert COMPATIBLE_SERVERS["ollama"].api_key_env is None
    assert COMPATIBLE_SERVERS["gateway"].api_key_env == "TIERWISE_GATEWAY_API_KEY"
    hash(COMPATIBLE_SERVERS["mistral"])  # rows are plain frozen data


def test_unknown_compat_and_missing_gateway_url(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="known: deepseek"):
        OpenAI(api_key=KEY, compat="nope")
    monkeypatch.delenv("TIERWISE_GATEWAY_BASE_URL", raising=False)
    with pytest.raises(ConfigError, match="TIERWISE_GATEWAY_BASE_URL"):
        OpenAI(api_key=KEY, compat="gateway")
    monkeypatch.setenv("TIERWISE_GATEWAY_BASE_URL", "https://llm.internal/v1/")
    assert OpenAI(api_key=KEY, compat="gateway").base_url == "https://llm.internal/v1"


def test_custom_row() -> None:
    row = OpenAICompat("together", "https://api.together.xyz/v1", "TOGETHER_API_KEY")
    provider = OpenAI(api_key=KEY, compat=row)
    assert provider.name == "together"
    assert provider.compat is row
    assert repr(provider) == "OpenAI(name='together', base_url='https://api.together.xyz/v1')"


async def test_gemini_signatures_from_googles_openai_endpoint_are_kept(serve: Any) -> None:
    """Google's OpenAI-compatible endpoint (and gateways in front of Gemini) put a call's
    thought signature in ``extra_content.google.thought_signature`` (the shape Google
    documents for its compatibility layer); it lands on ``ToolCall.thought_signature``, JSON
    and streamed, so a conversation continued on the Gemini adapter sends it back."""
    google = {"extra_content": {"google": {"thought_signature": "c2lnLUE="}}}
    call = {
        "id": "function-call-1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": "{}"},
    }
    body = {
        "id": "x",
        "object": "chat.completion",
        "model": "gemini-3-flash-preview",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": None, "tool_calls": [{**call, **google}]},
                "finish_reason": "tool_calls",
            }
        ],
    }
    srv = await serve(200, json.dumps(body).encode())
    resp = await make(srv, "gateway").complete(
        "gemini-3-flash-preview", Request.from_prompt("q", tools=[WEATHER])
    )
    assert resp.tool_calls[0].thought_signature == "c2lnLUE="
    chunks = [
        {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, **call, **google}]}}]},
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
    ]
    srv = await serve(200, chunks=odd_chunks("".join(f"data: {json.dumps(c)}\n\n" for c in chunks).encode()))
    events, resp = await run_stream(make(srv, "gateway"), "gemini-3-flash-preview")
    assert [e.thought_signature for e in events if isinstance(e, ToolCallDelta)] == ["c2lnLUE="]
    assert resp.tool_calls[0].thought_signature == "c2lnLUE="
