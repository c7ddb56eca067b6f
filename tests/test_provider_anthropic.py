"""Anthropic Messages adapter: request body, reply parsing, streaming, error mapping.

Every case replays a recorded reply (tests/fixtures/anthropic, see its README)
through the ``serve`` fixture, so each runs over httpx's MockTransport and over the
real loopback MockLLMServer.
"""

from __future__ import annotations

import email.utils
import json
import sys
import time
import types
from pathlib import Path
from typing import Any

import pytest

from tierwise.errors import (
    AuthenticationError,
    BadRequestError,
    ContextWindowExceeded,
    NotFoundError,
    PermissionDeniedError,
    ProtocolError,
    ProviderError,
    RateLimitError,
    ServerError,
)
from tierwise.providers.anthropic import DEFAULT_MAX_TOKENS, Anthropic
from tierwise.types import (
    Done,
    Message,
    ReasoningDelta,
    Request,
    Response,
    TextDelta,
    Tool,
    ToolCall,
    ToolCallDelta,
    Usage,
)

FIXTURES = Path(__file__).parent / "fixtures" / "anthropic"
KEY = "sk-ant-test-api03-Zq8xV2mN4pL6kR0tW9yB3cD5fH7jK1sA"
MODEL = "claude-sonnet-4-5"
REPLY_MODEL = "claude-sonnet-4-5-20250929"


def make(srv: Any, **kwargs: Any) -> Anthropic:
    return Anthropic(api_key=KEY, base_url=srv.base_url, http_client=srv.client, **kwargs)


def odd_chunks(data: bytes) -> list[bytes]:
    """Split at awkward places: inside JSON, inside ``\\n\\n``, inside UTF-8 characters."""
    sizes = (1, 2, 3, 5, 7, 11, 13, 17, 29, 64)
    out: list[bytes] = []
    pos = i = 0
    while pos < len(data):
        n = sizes[i % len(sizes)]
        out.append(data[pos : pos + n])
        pos += n
        i += 1
    return out


def body_of(name: str) -> bytes:
    return FIXTURES.joinpath(name).read_bytes()


def fixture_json(*parts: str) -> Any:
    return json.loads(FIXTURES.joinpath(*parts).read_bytes())


async def collect(provider: Anthropic, request: Request, model: str = MODEL) -> list[Any]:
    return [event async for event in provider.stream(model, request)]


def hello() -> Request:
    return Request.from_prompt("Hello")


# --------------------------------------------------------------------------- replies

EXPECTED: dict[str, Response] = {
    "text.json": Response(
        text="Hello! The café opens at 9 — see you there. ☕",
        model=REPLY_MODEL,
        provider="anthropic",
        finish_reason="stop",
        usage=Usage(input_tokens=21, output_tokens=19),
        raw_finish_reason="end_turn",
    ),
    "tool_calls_parallel.json": Response(
        text="I'll look up the weather in both cities at once.",
        model=REPLY_MODEL,
        provider="anthropic",
        finish_reason="tool_calls",
        usage=Usage(input_tokens=512, output_tokens=121),
        tool_calls=[
            ToolCall(
                "toolu_01A09q90qw90lq917835lq9",
                "get_weather",
                {"location": "San Francisco, CA", "unit": "celsius"},
            ),
            ToolCall(
                "toolu_01B7Xk2nYq3TzR8pLw4vMd5e",
                "get_weather",
                {"location": "Paris, France", "unit": "celsius"},
            ),
        ],
        raw_finish_reason="tool_use",
    ),
    "max_tokens.json": Response(
        text="The history of the Roman Empire spans more than a thousand years, beginning",
        model=REPLY_MODEL,
        provider="anthropic",
        finish_reason="length",
        usage=Usage(input_tokens=14, output_tokens=16),
        raw_finish_reason="max_tokens",
    ),
    # input_tokens=12 on the wire excludes the cache: 12 + 248 written + 1843 read.
    "cache_usage.json": Response(
        text="Section 4.2 limits liability to direct damages; consequential damages are excluded.",
        model=REPLY_MODEL,
        provider="anthropic",
        finish_reason="stop",
        usage=Usage(input_tokens=2103, output_tokens=24, cached_input_tokens=1843, cache_write_tokens=248),
        raw_finish_reason="end_turn",
    ),
    "thinking.json": Response(
        text="27 × 453 = 12,231.",
        model=REPLY_MODEL,
        provider="anthropic",
        finish_reason="stop",
        usage=Usage(input_tokens=46, output_tokens=187),
        reasoning=(
            "Let me work through this. 27 × 453: 27 × 400 = 10800 and 27 × 53 = 1431, so the total is 12231."
        ),
        raw_finish_reason="end_turn",
        # The signed block itself, kept whole to go back with the next turn.
        reasoning_items=[json.loads(body_of("thinking.json"))["content"][0]],
    ),
}

TWINS = {
    "stream_text.sse": "text.json",
    "stream_tool_calls.sse": "tool_calls_parallel.json",
    "stream_ping.sse": "max_tokens.json",
    "stream_cache_usage.sse": "cache_usage.json",
    "stream_thinking.sse": "thinking.json",
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
async def test_complete_parses_recorded_reply(serve: Any, name: str) -> None:
    srv = await serve(200, body_of(name), headers={"request-id": "req_011CReply0001"})
    resp = await make(srv).complete(MODEL, hello())
    expected = EXPECTED[name]
    assert resp == expected
    # Equality ignores bookkeeping; check the parts it skips and the fields one by one
    # so a failure says what broke.
    assert resp.text == expected.text
    assert resp.usage == expected.usage
    assert resp.finish_reason == expected.finish_reason
    assert resp.raw_finish_reason == expected.raw_finish_reason
    assert resp.reasoning == expected.reasoning
    assert [(c.id, c.name, c.arguments) for c in resp.tool_calls] == [
        (c.id, c.name, c.arguments) for c in expected.tool_calls
    ]
    assert resp.request_id == "req_011CReply0001"
    assert resp.latency_ms > 0


async def test_cache_usage_totals_whole_prompt(serve: Any) -> None:
    srv = await serve(200, body_of("cache_usage.json"))
    usage = (await make(srv).complete(MODEL, hello())).usage
    raw = fixture_json("cache_usage.json")["usage"]
    assert usage.input_tokens == (
        raw["input_tokens"] + raw["cache_creation_input_tokens"] + raw["cache_read_input_tokens"]
    )
    assert usage.cached_input_tokens == raw["cache_read_input_tokens"]
    assert usage.cache_write_tokens == raw["cache_creation_input_tokens"]
    assert usage.output_tokens == raw["output_tokens"]
    assert usage.total_tokens == 2103 + 24


async def test_tool_call_arguments_keep_raw_json(serve: Any) -> None:
    srv = await serve(200, body_of("tool_calls_parallel.json"))
    call = (await make(srv).complete(MODEL, hello())).tool_calls[1]
    assert json.loads(call.raw_arguments) == {"location": "Paris, France", "unit": "celsius"}


@pytest.mark.parametrize(
    ("stop_reason", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("pause_turn", "stop"),
        ("max_tokens", "length"),
        ("model_context_window_exceeded", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        ("some_future_reason", "stop"),
    ],
)
async def test_stop_reason_mapping(serve: Any, stop_reason: str, finish: str) -> None:
    data = fixture_json("text.json")
    data["stop_reason"] = stop_reason
    srv = await serve(200, json.dumps(data).encode())
    resp = await make(srv).complete(MODEL, hello())
    assert resp.finish_reason == finish
    assert resp.raw_finish_reason == stop_reason


async def test_missing_usage_fields_are_zero(serve: Any) -> None:
    data = fixture_json("text.json")
    data["usage"] = {"output_tokens": 3}
    srv = await serve(200, json.dumps(data).encode())
    assert (await make(srv).complete(MODEL, hello())).usage == Usage(output_tokens=3)
    del data["usage"]
    srv = await serve(200, json.dumps(data).encode())
    assert (await make(srv).complete(MODEL, hello())).usage == Usage()


async def test_redacted_thinking_is_kept_opaque_and_server_tool_blocks_skipped(serve: Any) -> None:
    data = fixture_json("thinking.json")
    redacted = {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix/LafPsn4a"}
    data["content"][1:1] = [
        redacted,
        {"type": "server_tool_use", "id": "srvtoolu_01", "name": "web_search", "input": {"query": "x"}},
    ]
    srv = await serve(200, json.dumps(data).encode())
    resp = await make(srv).complete(MODEL, hello())
    expected = EXPECTED["thinking.json"]
    # No text from either block; the redacted one travels back with the turn, unread.
    assert (resp.text, resp.reasoning, resp.tool_calls) == (expected.text, expected.reasoning, [])
    assert resp.reasoning_items == [*expected.reasoning_items, redacted]


# --------------------------------------------------------------------------- streaming


@pytest.mark.parametrize("stream_name", sorted(TWINS))
async def test_stream_equals_complete(serve: Any, stream_name: str) -> None:
    srv = await serve(200, chunks=odd_chunks(body_of(stream_name)), headers={"request-id": "req_011CStream1"})
    events = await collect(make(srv), hello())
    assert isinstance(events[-1], Done)
    assert all(not isinstance(e, Done) for e in events[:-1])
    streamed = events[-1].response
    expected = EXPECTED[TWINS[stream_name]]
    assert streamed == expected
    assert streamed.usage == expected.usage
    assert streamed.request_id == "req_011CStream1"
    assert streamed.ttft_ms is not None
    # The deltas themselves add up to the answer.
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == expected.text
    assert "".join(e.text for e in events if isinstance(e, ReasoningDelta)) == expected.reasoning
    # Each signed thinking block is announced whole as it ends, before Done (a gateway relays it)
    announced = [e.item for e in events if isinstance(e, ReasoningDelta) and e.item is not None]
    assert announced == expected.reasoning_items
    assert all(e.text == "" for e in events if isinstance(e, ReasoningDelta) and e.item is not None)

    srv2 = await serve(200, body_of(TWINS[stream_name]))
    assert await make(srv2).complete(MODEL, hello()) == streamed


async def test_stream_tool_call_deltas_are_numbered_per_tool(serve: Any) -> None:
    srv = await serve(200, chunks=odd_chunks(body_of("stream_tool_calls.sse")))
    events = await collect(make(srv), hello())
    deltas = [e for e in events if isinstance(e, ToolCallDelta)]
    # Content block indices are 1 and 2 on the wire; tool indices are 0 and 1.
    assert sorted({d.index for d in deltas}) == [0, 1]
    first = {d.index: d for d in reversed(deltas)}
    assert (first[0].id, first[0].name) == ("toolu_01A09q90qw90lq917835lq9", "get_weather")
    assert (first[1].id, first[1].name) == ("toolu_01B7Xk2nYq3TzR8pLw4vMd5e", "get_weather")
    args0 = "".join(d.arguments for d in deltas if d.index == 0)
    assert json.loads(args0) == {"location": "San Francisco, CA", "unit": "celsius"}
    assert all(d.arguments for d in deltas if d.id is None)  # empty fragments are not events


async def test_stream_request_body_and_crlf(serve: Any) -> None:
    crlf = body_of("stream_text.sse").replace(b"\n", b"\r\n")
    srv = await serve(200, chunks=odd_chunks(crlf))
    events = await collect(make(srv), hello())
    assert events[-1].response == EXPECTED["text.json"]
    sent = srv.last_json()
    assert sent["stream"] is True
    assert sent["max_tokens"] > 0
    assert srv.last_path == "/v1/messages"


async def test_stream_without_event_lines_and_trailing_blank_line(serve: Any) -> None:
    # `event:` is optional (the type is in the JSON) and the last event may lack "\n\n".
    lines = [ln for ln in body_of("stream_text.sse").split(b"\n") if not ln.startswith(b"event:")]
    raw = b"\n".join(lines).rstrip(b"\n")
    srv = await serve(200, chunks=odd_chunks(raw))
    assert (await collect(make(srv), hello()))[-1].response == EXPECTED["text.json"]


async def test_stream_message_delta_zero_fill_keeps_start_counts(serve: Any) -> None:
    raw = body_of("stream_cache_usage.sse").replace(
        b'"usage":{"input_tokens":12,"cache_creation_input_tokens":248,"cache_read_input_tokens":1843,'
        b'"output_tokens":24}',
        b'"usage":{"input_tokens":0,"cache_creation_input_tokens":0,"cache_read_input_tokens":null,'
        b'"output_tokens":24}',
    )
    assert raw != body_of("stream_cache_usage.sse")
    srv = await serve(200, chunks=[raw])
    resp = (await collect(make(srv), hello()))[-1].response
    assert resp.usage == EXPECTED["cache_usage.json"].usage


async def test_stream_message_delta_usage_supersedes_start(serve: Any) -> None:
    # Newer API versions report final (cumulative) prompt counts in message_delta.
    raw = body_of("stream_cache_usage.sse").replace(
        b'"cache_read_input_tokens":1843,"output_tokens":24}',
        b'"cache_read_input_tokens":1900,"output_tokens":24}',
    )
    srv = await serve(200, chunks=[raw])
    usage = (await collect(make(srv), hello()))[-1].response.usage
    assert usage.cached_input_tokens == 1900
    assert usage.input_tokens == 12 + 248 + 1900


async def test_stream_tool_input_in_block_start(serve: Any) -> None:
    # Some gateways put content in content_block_start (a tool's whole input, a
    # first piece of text) instead of sending it as deltas.
    events = [
        {"type": "message_start", "message": {"model": REPLY_MODEL, "usage": {"input_tokens": 5}}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": "Looking"}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": " it up."}},
        {"type": "content_block_stop", "index": 0},
        {
            "type": "content_block_start",
            "index": 1,
            "content_block": {"type": "tool_use", "id": "toolu_x", "name": "lookup", "input": {"q": "é"}},
        },
        {"type": "content_block_stop", "index": 1},
        {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 9}},
        {"type": "message_stop"},
    ]
    raw = "".join(f"data: {json.dumps(e)}\n\n" for e in events).encode()
    srv = await serve(200, chunks=odd_chunks(raw))
    out = await collect(make(srv), hello())
    resp = out[-1].response
    assert [(c.id, c.name, c.arguments) for c in resp.tool_calls] == [("toolu_x", "lookup", {"q": "é"})]
    assert resp.text == "Looking it up."
    tool_deltas = [e for e in out if isinstance(e, ToolCallDelta)]
    assert [d.index for d in tool_deltas] == [0, 0]
    assert json.loads("".join(d.arguments for d in tool_deltas)) == {"q": "é"}
    assert resp.finish_reason == "tool_calls"
    assert resp.usage == Usage(input_tokens=5, output_tokens=9)


async def test_stream_inband_overloaded_error(serve: Any) -> None:
    srv = await serve(200, chunks=odd_chunks(body_of("stream_overloaded.sse")))
    seen: list[Any] = []

    async def drain() -> None:
        async for event in make(srv).stream(MODEL, hello()):
            seen.append(event)

    with pytest.raises(ServerError) as info:
        await drain()
    err = info.value
    assert err.retryable is True
    assert err.error_type == "overloaded_error"
    assert err.provider == "anthropic"
    assert err.request_id == "req_011CTrOverloadedStream01"
    assert err.status_code is None
    assert [e.text for e in seen if isinstance(e, TextDelta)] == ["Sure, here is"]


async def test_stream_inband_invalid_request_is_not_retryable(serve: Any) -> None:
    raw = b'event: error\ndata: {"type":"error","error":{"type":"invalid_request_error","message":"bad"}}\n\n'
    srv = await serve(200, chunks=[raw])
    with pytest.raises(BadRequestError) as info:
        await collect(make(srv), hello())
    assert info.value.retryable is False


async def test_truncated_stream_is_protocol_error(serve: Any) -> None:
    srv = await serve(200, chunks=odd_chunks(body_of("stream_truncated.sse")))
    with pytest.raises(ProtocolError) as info:
        await collect(make(srv), hello())
    assert info.value.provider == "anthropic"
    assert info.value.model == MODEL
    assert "truncated" in str(info.value)
    assert "message_delta" in str(info.value)
    assert info.value.retryable is True


async def test_stream_with_message_delta_but_no_message_stop_completes(serve: Any) -> None:
    raw = body_of("stream_text.sse")
    raw = raw[: raw.index(b"event: message_stop")]
    srv = await serve(200, chunks=[raw])
    assert (await collect(make(srv), hello()))[-1].response == EXPECTED["text.json"]


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        (b"event: message_start\ndata: {not json\n\n", "invalid JSON"),
        (b'data: ["a list"]\n\n', "not a JSON object"),
        (b'data: {"type":"content_block_delta","index":0}\n\n', "KeyError"),
        (
            b'data: {"type":"content_block_delta","index":3,"delta":{"type":"input_json_delta",'
            b'"partial_json":"{}"}}\n\n',
            "never started",
        ),
        (
            b'data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":7}}\n\n',
            "text",
        ),
        (
            b'data: {"type":"content_block_start","index":0,"content_block":{"type":"tool_use"}}\n\n',
            "tool_use",
        ),
    ],
)
async def test_malformed_stream_events_are_protocol_errors(serve: Any, raw: bytes, needle: str) -> None:
    srv = await serve(200, chunks=[raw])
    with pytest.raises(ProtocolError) as info:
        await collect(make(srv), hello())
    assert info.value.provider == "anthropic"
    assert info.value.model == MODEL
    assert needle in str(info.value)


async def test_stream_invalid_tool_json_is_protocol_error(serve: Any) -> None:
    raw = body_of("stream_tool_calls.sse").replace(b'"partial_json":"sius\\"}"', b'"partial_json":"sius"')
    assert raw != body_of("stream_tool_calls.sse")
    srv = await serve(200, chunks=[raw])
    with pytest.raises(ProtocolError) as info:
        await collect(make(srv), hello())
    assert info.value.provider == "anthropic"
    assert info.value.model == MODEL
    assert "get_weather" in str(info.value)


async def test_stream_http_error_before_body(serve: Any) -> None:
    case = fixture_json("errors", "529_overloaded.json")
    srv = await serve(529, json.dumps(case["body"]).encode(), headers=case["headers"])
    with pytest.raises(ServerError) as info:
        await collect(make(srv), hello())
    assert info.value.status_code == 529
    assert info.value.retryable is True
    assert info.value.request_id == "req_011COverloaded00000001"


# --------------------------------------------------------------------------- request body


async def test_minimal_body_and_headers(serve: Any) -> None:
    srv = await serve(200, body_of("text.json"))
    await make(srv, default_max_tokens=1000).complete(MODEL, hello())
    assert srv.last_path == "/v1/messages"
    assert srv.last_json() == {
        "model": MODEL,
        "max_tokens": 1000,
        "messages": [{"role": "user", "content": "Hello"}],
    }
    headers = srv.last_headers
    assert headers["x-api-key"] == KEY
    assert headers["anthropic-version"] == "2023-06-01"
    assert headers["content-type"] == "application/json"
    assert "authorization" not in headers


async def test_custom_version_and_extra_headers(serve: Any) -> None:
    srv = await serve(200, body_of("text.json"))
    provider = make(srv, anthropic_version="2024-01-01", headers={"anthropic-beta": "context-1m-2025-08-07"})
    await provider.complete(MODEL, hello())
    assert srv.last_headers["anthropic-version"] == "2024-01-01"
    assert srv.last_headers["anthropic-beta"] == "context-1m-2025-08-07"


async def test_base_url_with_v1_suffix(serve: Any) -> None:
    srv = await serve(200, body_of("text.json"))
    provider = Anthropic(api_key=KEY, base_url=srv.base_url + "/v1/", http_client=srv.client)
    await provider.complete(MODEL, hello())
    assert srv.last_path == "/v1/messages"


async def test_full_request_mapping(serve: Any) -> None:
    cached_doc = [{"type": "text", "text": "<contract>…</contract>", "cache_control": {"type": "ephemeral"}}]
    request = Request(
        messages=[
            Message("system", "You are a contracts assistant."),
            Message("user", cached_doc),
            Message(
                "assistant",
                "Checking both clauses.",
                tool_calls=[
                    ToolCall("toolu_1", "get_clause", {"n": "4.2"}),
                    ToolCall("toolu_2", "get_clause", raw_arguments='{"n": "7.1"}'),
                ],
            ),
            Message("tool", "Liability is capped.", tool_call_id="toolu_1"),
            Message("system", "Answer in one sentence."),
            Message("tool", [{"type": "text", "text": "Termination needs 30 days."}], tool_call_id="toolu_2"),
            Message("user", "Summarise."),
        ],
        max_tokens=512,
        temperature=0.2,
        top_p=0.9,
        stop=["\n\nHuman:"],
        tools=[
            Tool("get_clause", "Fetch a clause", {"type": "object", "properties": {"n": {"type": "string"}}}),
            {"type": "function", "function": {"name": "no_desc", "parameters": {"type": "object"}}},
        ],
        tool_choice="required",
        parallel_tool_calls=False,
        thinking_budget=2048,
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "summary", "schema": {"type": "object"}, "strict": True},
        },
        user="user-42",
        seed=7,
        metadata={"tier": "complex"},
    )
    srv = await serve(200, body_of("text.json"))
    await make(srv).complete(MODEL, request)
    assert srv.last_json() == {
        "model": MODEL,
        "max_tokens": 512,
        "system": "You are a contracts assistant.\n\nAnswer in one sentence.",
        "messages": [
            {"role": "user", "content": cached_doc},
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "Checking both clauses."},
                    {"type": "tool_use", "id": "toolu_1", "name": "get_clause", "input": {"n": "4.2"}},
                    {"type": "tool_use", "id": "toolu_2", "name": "get_clause", "input": {"n": "7.1"}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "Liability is capped."},
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_2",
                        "content": [{"type": "text", "text": "Termination needs 30 days."}],
                    },
                ],
            },
            {"role": "user", "content": "Summarise."},
        ],
        "temperature": 0.2,
        "top_p": 0.9,
        "stop_sequences": ["\n\nHuman:"],
        "tools": [
            {
                "name": "get_clause",
                "description": "Fetch a clause",
                "input_schema": {"type": "object", "properties": {"n": {"type": "string"}}},
            },
            {"name": "no_desc", "input_schema": {"type": "object"}},
        ],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
        "thinking": {"type": "enabled", "budget_tokens": 2048},
        "output_config": {"format": {"type": "json_schema", "schema": {"type": "object"}}},
        "metadata": {"user_id": "user-42"},
    }


async def test_system_blocks_keep_cache_control(serve: Any) -> None:
    blocks = [{"type": "text", "text": "Long policy…", "cache_control": {"type": "ephemeral", "ttl": "1h"}}]
    request = Request(
        messages=[Message("system", "Be brief."), Message("system", blocks), Message("user", "Hi")],
        max_tokens=10,
    )
    srv = await serve(200, body_of("text.json"))
    await make(srv).complete(MODEL, request)
    assert srv.last_json()["system"] == [{"type": "text", "text": "Be brief."}, *blocks]


async def test_no_system_field_without_system_messages(serve: Any) -> None:
    srv = await serve(200, body_of("text.json"))
    await make(srv).complete(MODEL, hello())
    assert "system" not in srv.last_json()


@pytest.mark.parametrize(
    ("choice", "parallel", "expected"),
    [
        ("auto", None, {"type": "auto"}),
        ("required", None, {"type": "any"}),
        ("none", None, {"type": "none"}),
        ({"name": "lookup"}, None, {"type": "tool", "name": "lookup"}),
        ({"type": "function", "function": {"name": "lookup"}}, None, {"type": "tool", "name": "lookup"}),
        ({"type": "tool", "name": "lookup"}, None, {"type": "tool", "name": "lookup"}),
        (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
        ({"name": "lookup"}, False, {"type": "tool", "name": "lookup", "disable_parallel_tool_use": True}),
        ("none", False, {"type": "none"}),
        (None, None, None),
        (None, True, None),
    ],
)
async def test_tool_choice_mapping(serve: Any, choice: Any, parallel: Any, expected: Any) -> None:
    request = Request.from_prompt(
        "x", tools=[Tool("lookup")], tool_choice=choice, parallel_tool_calls=parallel, max_tokens=5
    )
    srv = await serve(200, body_of("text.json"))
    await make(srv).complete(MODEL, request)
    assert srv.last_json().get("tool_choice") == expected


async def test_unknown_tool_choice_is_rejected_before_sending(serve: Any) -> None:
    srv = await serve(200, body_of("text.json"))
    request = Request.from_prompt("x", tools=[Tool("lookup")], tool_choice="sometimes")
    with pytest.raises(BadRequestError):
        await make(srv).complete(MODEL, request)
    assert srv.records() == []


async def test_tool_message_without_id_is_rejected(serve: Any) -> None:
    srv = await serve(200, body_of("text.json"))
    request = Request(messages=[Message("user", "x"), Message("tool", "result")])
    with pytest.raises(BadRequestError, match="tool_call_id"):
        await make(srv).complete(MODEL, request)


async def test_json_object_format_and_seed_not_sent(serve: Any) -> None:
    srv = await serve(200, body_of("text.json"))
    request = Request.from_prompt("x", response_format={"type": "json_object"}, seed=1, max_tokens=5)
    await make(srv).complete(MODEL, request)
    assert set(srv.last_json()) == {"model", "max_tokens", "messages"}


async def test_thinking_budget_zero_disables(serve: Any) -> None:
    srv = await serve(200, body_of("text.json"))
    await make(srv).complete(MODEL, Request.from_prompt("x", thinking_budget=0, max_tokens=5))
    assert srv.last_json()["thinking"] == {"type": "disabled"}


async def test_extra_body_merged_last(serve: Any) -> None:
    srv = await serve(200, body_of("text.json"))
    request = Request.from_prompt(
        "x",
        max_tokens=5,
        temperature=0.5,
        extra_body={"temperature": 1.0, "top_k": 40, "service_tier": "auto"},
    )
    await make(srv).complete(MODEL, request)
    sent = srv.last_json()
    assert sent["temperature"] == 1.0
    assert sent["top_k"] == 40
    assert sent["service_tier"] == "auto"


# --------------------------------------------------------------------------- max_tokens


def fake_catalog(specs: dict[str, int], calls: list[str]) -> types.ModuleType:
    class _Catalog:
        @classmethod
        def default(cls) -> _Catalog:
            return cls()

        def get(self, key: str) -> Any:
            calls.append(key)
            if key not in specs:
                raise KeyError(key)
            return types.SimpleNamespace(max_output_tokens=specs[key])

    module = types.ModuleType("tierwise.catalog")
    module.Catalog = _Catalog  # type: ignore[attr-defined]
    return module


async def test_max_tokens_per_model_function_asked_once_per_model(serve: Any) -> None:
    # What configuration passes: each deployment's max output, by model name.
    calls: list[str] = []

    def max_output(model: str) -> int | None:
        calls.append(model)
        return {"claude-opus-4-7": 128000}.get(model)

    srv = await serve(200, body_of("text.json"))
    provider = make(srv, default_max_tokens=max_output)
    await provider.complete("claude-opus-4-7", hello())
    assert srv.last_json()["max_tokens"] == 128000
    n = len(calls)
    await provider.complete("claude-opus-4-7", hello())
    assert srv.last_json()["max_tokens"] == 128000
    assert len(calls) == n == 1  # asked once per model
    await provider.complete("claude-unknown-1", hello())
    assert srv.last_json()["max_tokens"] == 4096
    assert calls == ["claude-opus-4-7", "claude-unknown-1"]


async def test_max_tokens_per_model_mapping(serve: Any) -> None:
    srv = await serve(200, body_of("text.json"))
    provider = make(srv, default_max_tokens={"claude-opus-4-7": 128000, "claude-haiku-4-5": 64000})
    await provider.complete("claude-opus-4-7", hello())
    assert srv.last_json()["max_tokens"] == 128000
    await provider.complete("claude-haiku-4-5", hello())
    assert srv.last_json()["max_tokens"] == 64000
    await provider.complete("claude-unknown-1", hello())
    assert srv.last_json()["max_tokens"] == 4096


async def test_max_tokens_mapping_filled_after_construction(serve: Any) -> None:
    # Configuration may build the provider before it knows every deployment.
    srv = await serve(200, body_of("text.json"))
    per_model: dict[str, int] = {}
    provider = make(srv, default_max_tokens=per_model)
    per_model[MODEL] = 32000
    await provider.complete(MODEL, hello())
    assert srv.last_json()["max_tokens"] == 32000


@pytest.mark.parametrize("answer", [0, -5, True, "8000", 1.5, None])
async def test_max_tokens_per_model_nonsense_answer_falls_back(serve: Any, answer: Any) -> None:
    srv = await serve(200, body_of("text.json"))
    await make(srv, default_max_tokens=lambda model: answer).complete(MODEL, hello())
    assert srv.last_json()["max_tokens"] == DEFAULT_MAX_TOKENS == 4096


async def test_max_tokens_never_reads_the_catalog(serve: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # The executor's deployment knows the max output; the adapter does no global lookup.
    calls: list[str] = []
    monkeypatch.setitem(sys.modules, "tierwise.catalog", fake_catalog({f"anthropic/{MODEL}": 64000}, calls))
    srv = await serve(200, body_of("text.json"))
    await make(srv).complete(MODEL, hello())
    assert srv.last_json()["max_tokens"] == 4096
    assert calls == []


async def test_max_tokens_fallback_without_catalog(serve: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tierwise.catalog", None)  # import fails
    srv = await serve(200, body_of("text.json"))
    request = hello()
    assert request.max_tokens is None
    await make(srv).complete(MODEL, request)
    assert srv.last_json()["max_tokens"] == 4096


async def test_max_tokens_precedence(serve: Any) -> None:
    srv = await serve(200, body_of("text.json"))
    await make(srv, default_max_tokens=2000).complete(MODEL, hello())
    assert srv.last_json()["max_tokens"] == 2000
    await make(srv, default_max_tokens=2000).complete(MODEL, Request.from_prompt("x", max_tokens=77))
    assert srv.last_json()["max_tokens"] == 77
    per_model = {MODEL: 64000}
    await make(srv, default_max_tokens=per_model).complete(MODEL, Request.from_prompt("x", max_tokens=77))
    assert srv.last_json()["max_tokens"] == 77
    await make(srv, default_max_tokens=per_model).complete(MODEL, hello())
    assert srv.last_json()["max_tokens"] == 64000


async def test_default_max_tokens_raised_above_thinking_budget(serve: Any) -> None:
    srv = await serve(200, body_of("text.json"))
    await make(srv, default_max_tokens=4096).complete(MODEL, Request.from_prompt("x", thinking_budget=8000))
    sent = srv.last_json()
    assert sent["max_tokens"] > sent["thinking"]["budget_tokens"] == 8000
    # A per-model default is raised above the budget too.
    await make(srv, default_max_tokens={MODEL: 4096}).complete(
        MODEL, Request.from_prompt("x", thinking_budget=8000)
    )
    assert srv.last_json()["max_tokens"] > 8000
    # An explicit max_tokens is the caller's choice and is sent as is.
    await make(srv).complete(MODEL, Request.from_prompt("x", thinking_budget=8000, max_tokens=1000))
    assert srv.last_json()["max_tokens"] == 1000


# --------------------------------------------------------------------------- errors

ERROR_CASES = {
    "400_invalid_request": (BadRequestError, False, None),
    "400_prompt_too_long": (ContextWindowExceeded, False, None),
    "400_context_limit": (ContextWindowExceeded, False, None),
    "401_authentication": (AuthenticationError, False, None),
    "403_permission": (PermissionDeniedError, False, None),
    "404_not_found": (NotFoundError, False, None),
    "413_request_too_large": (BadRequestError, False, None),
    "429_rate_limit": (RateLimitError, True, 20.0),
    "500_api_error": (ServerError, True, None),
    "500_no_retry": (ServerError, False, None),
    "529_overloaded": (ServerError, True, None),
}


@pytest.mark.parametrize("name", sorted(ERROR_CASES))
async def test_error_mapping(serve: Any, name: str) -> None:
    cls, retryable, retry_after = ERROR_CASES[name]
    case = fixture_json("errors", f"{name}.json")
    srv = await serve(case["status"], json.dumps(case["body"]).encode(), headers=case["headers"])
    with pytest.raises(ProviderError) as info:
        await make(srv).complete(MODEL, hello())
    err = info.value
    assert type(err) is cls
    assert err.status_code == case["status"]
    assert err.retryable is retryable
    assert err.retry_after == retry_after
    assert err.request_id == case["headers"]["request-id"]
    assert err.error_type == case["body"]["error"]["type"]
    assert err.provider == "anthropic"
    assert err.model == MODEL
    assert case["body"]["error"]["message"][:40] in err.message
    assert KEY not in str(err) and KEY not in repr(err)


async def test_rate_limit_headers_parsed(serve: Any) -> None:
    case = fixture_json("errors", "429_rate_limit.json")
    srv = await serve(429, json.dumps(case["body"]).encode(), headers=case["headers"])
    with pytest.raises(RateLimitError) as info:
        await make(srv).complete(MODEL, hello())
    limits = info.value.rate_limits
    assert limits is not None
    assert (limits.requests_limit, limits.requests_remaining) == (50, 0)
    assert (limits.tokens_limit, limits.tokens_remaining) == (40000, 1200)
    assert limits.requests_reset_s == 0.0  # the recorded reset time is in the past


async def test_rate_limit_headers_on_success(serve: Any) -> None:
    case = fixture_json("errors", "429_rate_limit.json")
    headers = {k: v for k, v in case["headers"].items() if k.startswith("anthropic-ratelimit-")}
    srv = await serve(200, body_of("text.json"), headers=headers)
    resp = await make(srv).complete(MODEL, hello())
    assert resp.rate_limits is not None
    assert resp.rate_limits.tokens_remaining == 1200


async def test_retry_after_http_date(serve: Any) -> None:
    case = fixture_json("errors", "429_rate_limit.json")
    headers = dict(case["headers"], **{"retry-after": email.utils.formatdate(time.time() + 30, usegmt=True)})
    srv = await serve(429, json.dumps(case["body"]).encode(), headers=headers)
    with pytest.raises(RateLimitError) as info:
        await make(srv).complete(MODEL, hello())
    assert info.value.retry_after is not None
    assert 25.0 <= info.value.retry_after <= 31.0
    assert info.value.retryable is True


async def test_request_id_from_error_body_when_header_missing(serve: Any) -> None:
    case = fixture_json("errors", "404_not_found.json")
    srv = await serve(404, json.dumps(case["body"]).encode())
    with pytest.raises(NotFoundError) as info:
        await make(srv).complete(MODEL, hello())
    assert info.value.request_id == case["body"]["request_id"]


async def test_non_json_error_body(serve: Any) -> None:
    srv = await serve(
        502, b"<html><body>502 Bad Gateway</body></html>", headers={"content-type": "text/html"}
    )
    with pytest.raises(ServerError) as info:
        await make(srv).complete(MODEL, hello())
    assert info.value.retryable is True
    assert info.value.status_code == 502


async def test_error_200_body_is_inband_error(serve: Any) -> None:
    body = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    srv = await serve(200, json.dumps(body).encode())
    with pytest.raises(ServerError) as info:
        await make(srv).complete(MODEL, hello())
    assert info.value.retryable is True


# --------------------------------------------------------------------------- malformed replies


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b'{"id": "msg_1", "content": [', "not valid JSON"),
        (b"[]", "not a JSON object"),
        (b'{"id":"msg_1","type":"message","stop_reason":"end_turn"}', "content"),
        (b'{"content": {"type": "text"}}', "content"),
        (b'{"content": ["hello"]}', "content block"),
        (b'{"content": [{"type": "text"}]}', "text"),
        (b'{"content": [{"type": "tool_use", "name": "x", "input": {}}]}', "tool_use"),
        (b'{"content": [{"type": "tool_use", "id": "t", "name": "x", "input": "{}"}]}', "input"),
        (b'{"content": [{"type": "thinking"}]}', "thinking"),
        (b'{"content": [], "usage": [1, 2]}', "usage"),
    ],
)
async def test_malformed_reply_is_protocol_error(serve: Any, body: bytes, needle: str) -> None:
    srv = await serve(200, body)
    with pytest.raises(ProtocolError) as info:
        await make(srv).complete(MODEL, hello())
    err = info.value
    assert err.provider == "anthropic"
    assert err.model == MODEL
    assert needle in str(err)


async def test_a_token_count_that_is_no_number_counts_zero(serve: Any) -> None:
    """The shared rule of every adapter (``token_count``): a string where a count
    belongs drops to 0 and the answer is kept, as OpenAI's and Gemini's are."""
    body = (
        b'{"content": [{"type": "text", "text": "hi"}], "usage": {"input_tokens": "12", "output_tokens": 3}}'
    )
    srv = await serve(200, body)
    resp = await make(srv).complete(MODEL, hello())
    assert resp.text == "hi" and resp.usage.input_tokens == 0 and resp.usage.output_tokens == 3


# --------------------------------------------------------------------------- secrets


async def test_api_key_never_leaks(serve: Any) -> None:
    body = {
        "type": "error",
        "error": {"type": "authentication_error", "message": f"invalid x-api-key: {KEY}"},
    }
    srv = await serve(401, json.dumps(body).encode())
    provider = make(srv)
    with pytest.raises(AuthenticationError) as info:
        await provider.complete(MODEL, hello())
    assert KEY not in str(info.value)
    assert KEY not in repr(info.value)
    assert KEY not in info.value.message
    assert KEY not in repr(provider) and KEY not in str(provider)

    srv = await serve(200, f'{{"content": "{KEY}"'.encode())
    with pytest.raises(ProtocolError) as info2:
        await make(srv).complete(MODEL, hello())
    assert KEY not in str(info2.value)


async def test_missing_key_names_env_var(serve: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    srv = await serve(200, body_of("text.json"))
    provider = Anthropic(base_url=srv.base_url, http_client=srv.client)
    with pytest.raises(AuthenticationError, match="ANTHROPIC_API_KEY"):
        await provider.complete(MODEL, hello())
    assert srv.records() == []


async def test_key_from_env(serve: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-from-env-0000000000")
    srv = await serve(200, body_of("text.json"))
    await Anthropic(base_url=srv.base_url, http_client=srv.client).complete(MODEL, hello())
    assert srv.last_headers["x-api-key"] == "sk-ant-from-env-0000000000"
