"""Gemini adapter: request mapping, reply normalization, streaming, error mapping.

Every case replays a fixture from tests/fixtures/gemini through ``serve`` (httpx
MockTransport and the real loopback server).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from conftest import Served, ServeFn, fixture_bytes, fixture_json
from tierwise.errors import (
    AuthenticationError,
    BadRequestError,
    ContentFiltered,
    ContextWindowExceeded,
    NotFoundError,
    PermissionDeniedError,
    ProtocolError,
    ProviderError,
    RateLimitError,
    ServerError,
)
from tierwise.providers.gemini import Gemini
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
)

KEY = "AIza-test-0123456789abcdefghijklm"
MODEL = "gemini-2.5-flash"
SIGNATURE_SENTINEL = "skip_thought_signature_validator"


def gem(srv: Served) -> Gemini:
    return Gemini(api_key=KEY, base_url=srv.base_url + "/v1beta", http_client=srv.client)


def body(name: str) -> bytes:
    return fixture_bytes("gemini", name)


def odd_chunks(data: bytes, sizes: tuple[int, ...] = (1, 3, 17, 2, 64, 5, 129, 7)) -> list[bytes]:
    """Split at awkward places: inside CRLF pairs, inside "data:", inside UTF-8."""
    out: list[bytes] = []
    i = k = 0
    while i < len(data):
        n = sizes[k % len(sizes)]
        out.append(data[i : i + n])
        i += n
        k += 1
    return out


async def collect(
    provider: Gemini, request: Request, model: str = MODEL
) -> tuple[list[StreamEvent], Response]:
    events = [event async for event in provider.stream(model, request)]
    assert isinstance(events[-1], Done)
    assert not any(isinstance(e, Done) for e in events[:-1])
    return events[:-1], events[-1].response


async def complete(srv: Served, request: Request | None = None, model: str = MODEL) -> Response:
    return await gem(srv).complete(model, request or Request.from_prompt("hi"))


def no_nones(value: Any) -> bool:
    if value is None:
        return False
    if isinstance(value, dict):
        return all(no_nones(v) for v in value.values())
    if isinstance(value, list):
        return all(no_nones(v) for v in value)
    return True


# --------------------------------------------------------------------------- transport basics


async def test_text_response_fields_and_usage(serve: ServeFn) -> None:
    srv = await serve(200, body("text.json"))
    resp = await complete(srv)
    assert resp.text == "The capital of France is Paris."
    assert resp.provider == "gemini"
    assert resp.model == "gemini-2.5-flash"  # modelVersion
    assert resp.finish_reason == "stop"
    assert resp.raw_finish_reason == "STOP"
    assert resp.tool_calls == []
    assert resp.reasoning == ""
    assert resp.request_id == "qbNHaKPxMf-Vz7IPpfWz4Ao"  # the body's responseId
    u = resp.usage
    # thinking tokens are billed as output even when no thought parts are returned
    assert (u.input_tokens, u.output_tokens, u.cached_input_tokens, u.reasoning_tokens) == (12, 34, 0, 27)
    assert resp.latency_ms > 0


async def test_request_url_and_auth_header(serve: ServeFn) -> None:
    srv = await serve(200, body("text.json"))
    await complete(srv)
    assert srv.last_path == "/v1beta/models/gemini-2.5-flash:generateContent"
    headers = srv.last_headers
    assert headers["x-goog-api-key"] == KEY
    assert "authorization" not in headers
    assert headers["content-type"] == "application/json"
    assert KEY not in srv.last_path and "key=" not in srv.last_path


async def test_stream_url_uses_alt_sse_and_no_key_in_url(serve: ServeFn) -> None:
    srv = await serve(200, chunks=[body("stream_text.sse")])
    await collect(gem(srv), Request.from_prompt("hi"))
    assert srv.last_path == "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
    assert srv.last_headers["x-goog-api-key"] == KEY
    assert KEY not in srv.last_path and "key=" not in srv.last_path


async def test_resource_name_model_is_not_prefixed_twice(serve: ServeFn) -> None:
    srv = await serve(200, body("text.json"))
    await gem(srv).complete("tunedModels/my-model-abc123", Request.from_prompt("hi"))
    assert srv.last_path == "/v1beta/tunedModels/my-model-abc123:generateContent"


async def test_model_falls_back_to_requested_without_model_version(serve: ServeFn) -> None:
    data = fixture_json("gemini", "text.json")
    del data["modelVersion"]
    srv = await serve(200, json.dumps(data).encode())
    resp = await complete(srv, model="gemini-flash-latest")
    assert resp.model == "gemini-flash-latest"


# --------------------------------------------------------------------------- request body


async def test_minimal_body_has_no_optional_fields(serve: ServeFn) -> None:
    srv = await serve(200, body("text.json"))
    await complete(srv, Request.from_prompt("hi"))
    assert srv.last_json() == {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}


async def test_full_request_mapping(serve: ServeFn) -> None:
    weather = Tool(
        "get_weather",
        "Current weather for a city",
        {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
            "additionalProperties": False,
        },
    )
    request = Request(
        messages=[
            Message("system", "You are terse."),
            Message("system", "Use metric units."),
            Message("user", "Weather in Paris and London?"),
            Message(
                "assistant",
                "Checking.",
                tool_calls=[
                    ToolCall("call_0", "get_weather", {"city": "Paris"}),
                    ToolCall("call_1", "get_weather", {"city": "London"}),
                ],
            ),
            Message("tool", '{"temp_c": 21, "sky": "clear"}', name="get_weather", tool_call_id="call_0"),
            Message("tool", "12C and raining", tool_call_id="call_1"),  # name found via the call id
            Message("user", [{"type": "text", "text": "And "}, {"text": "tomorrow?"}]),
        ],
        max_tokens=256,
        temperature=0.2,
        top_p=0.9,
        stop=["\n\n"],
        seed=7,
        tools=[weather],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        response_format={"type": "json_schema", "json_schema": {"name": "w", "schema": {"type": "object"}}},
        thinking_budget=1024,
        parallel_tool_calls=True,
        user="u-123",
        metadata={"team": "search"},
        extra_body={
            "generationConfig": {"topK": 40},
            "safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}],
        },
    )
    srv = await serve(200, body("text.json"))
    await complete(srv, request)
    sent = srv.last_json()
    assert sent == {
        "systemInstruction": {"parts": [{"text": "You are terse.\n\nUse metric units."}]},
        "contents": [
            {"role": "user", "parts": [{"text": "Weather in Paris and London?"}]},
            {
                "role": "model",
                "parts": [
                    {"text": "Checking."},
                    {
                        "functionCall": {"name": "get_weather", "args": {"city": "Paris"}, "id": "call_0"},
                        "thoughtSignature": SIGNATURE_SENTINEL,
                    },
                    {
                        "functionCall": {"name": "get_weather", "args": {"city": "London"}, "id": "call_1"},
                        "thoughtSignature": SIGNATURE_SENTINEL,
                    },
                ],
            },
            {
                "role": "user",
                "parts": [
                    {
                        "functionResponse": {
                            "name": "get_weather",
                            "response": {"temp_c": 21, "sky": "clear"},
                            "id": "call_0",
                        }
                    },
                    {
                        "functionResponse": {
                            "name": "get_weather",
                            "response": {"result": "12C and raining"},
                            "id": "call_1",
                        }
                    },
                ],
            },
            {"role": "user", "parts": [{"text": "And "}, {"text": "tomorrow?"}]},
        ],
        "tools": [
            {
                "functionDeclarations": [
                    {
                        "name": "get_weather",
                        "description": "Current weather for a city",
                        "parametersJsonSchema": weather.parameters,
                    }
                ]
            }
        ],
        "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}},
        "generationConfig": {
            "maxOutputTokens": 256,
            "temperature": 0.2,
            "topP": 0.9,
            "stopSequences": ["\n\n"],
            "seed": 7,
            "responseMimeType": "application/json",
            "responseJsonSchema": {"type": "object"},
            "thinkingConfig": {"thinkingBudget": 1024, "includeThoughts": True},
            "topK": 40,
        },
        "safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}],
    }
    assert no_nones(sent)


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("auto", {"mode": "AUTO"}),
        ("none", {"mode": "NONE"}),
        ("required", {"mode": "ANY"}),
        ({"name": "lookup"}, {"mode": "ANY", "allowedFunctionNames": ["lookup"]}),
        ({"type": "tool", "name": "lookup"}, {"mode": "ANY", "allowedFunctionNames": ["lookup"]}),
        ({"type": "any"}, {"mode": "ANY"}),
    ],
)
async def test_tool_choice_mapping(serve: ServeFn, choice: Any, expected: dict[str, Any]) -> None:
    srv = await serve(200, body("text.json"))
    await complete(srv, Request.from_prompt("hi", tools=[Tool("lookup")], tool_choice=choice))
    assert srv.last_json()["toolConfig"] == {"functionCallingConfig": expected}


@pytest.mark.parametrize(
    ("params", "config"),
    [
        ({"response_format": {"type": "json_object"}}, {"responseMimeType": "application/json"}),
        ({"response_format": {"type": "text"}}, None),
        ({"thinking_budget": 0}, {"thinkingConfig": {"thinkingBudget": 0}}),
        ({"thinking_budget": -1}, {"thinkingConfig": {"thinkingBudget": -1, "includeThoughts": True}}),
        ({"reasoning_effort": "low"}, {"thinkingConfig": {"thinkingBudget": 1024, "includeThoughts": True}}),
        ({"reasoning_effort": "none"}, {"thinkingConfig": {"thinkingBudget": 0}}),
        (
            {"reasoning_effort": "high", "thinking_budget": 99},  # the explicit budget wins
            {"thinkingConfig": {"thinkingBudget": 99, "includeThoughts": True}},
        ),
    ],
)
async def test_generation_config_variants(
    serve: ServeFn, params: dict[str, Any], config: dict[str, Any] | None
) -> None:
    srv = await serve(200, body("text.json"))
    await complete(srv, Request.from_prompt("hi", **params))
    assert srv.last_json().get("generationConfig") == config


async def test_extra_body_none_removes_a_field(serve: ServeFn) -> None:
    srv = await serve(200, body("text.json"))
    request = Request.from_prompt(
        "hi", system="sys", extra_body={"systemInstruction": None, "cachedContent": "c/1"}
    )
    await complete(srv, request)
    assert srv.last_json() == {
        "contents": [{"role": "user", "parts": [{"text": "hi"}]}],
        "cachedContent": "c/1",
    }


async def test_tool_result_without_a_name_is_rejected_before_sending(serve: ServeFn) -> None:
    srv = await serve(200, body("text.json"))
    request = Request(messages=[Message("user", "x"), Message("tool", "42", tool_call_id="nowhere")])
    with pytest.raises(ValueError, match="function name"):
        await complete(srv, request)
    assert list(srv.records()) == []


# --------------------------------------------------------------------------- response cases


async def test_parallel_function_calls(serve: ServeFn) -> None:
    srv = await serve(200, body("function_calls.json"))
    resp = await complete(srv)
    assert resp.finish_reason == "tool_calls"
    assert resp.raw_finish_reason == "STOP"
    assert resp.text == ""
    assert resp.tool_calls == [
        # Gemini signs the first call of a parallel batch only; the signature is kept on it.
        ToolCall(
            "call_0",
            "get_weather",
            {"city": "Paris", "unit": "celsius"},
            thought_signature="CtQBAVSoXO7nkhJoS1NmRsO1FPtHu2ePwTB0Xwu0A6Mu3p5IFhQxVpXsR8r2pO3kHnDwYx4BMhF5Q0t1LQ==",
        ),
        ToolCall("call_1", "get_weather", {"city": "London", "unit": "celsius"}),
        ToolCall("call_2", "get_time", {"timezone": "Europe/Tokyo — 東京"}),
    ]
    assert json.loads(resp.tool_calls[0].raw_arguments) == {"city": "Paris", "unit": "celsius"}
    assert (resp.usage.input_tokens, resp.usage.output_tokens, resp.usage.reasoning_tokens) == (98, 145, 94)


async def test_function_call_ids_from_the_api_are_kept(serve: ServeFn) -> None:
    srv = await serve(200, body("function_calls_with_ids.json"))
    resp = await complete(srv)
    assert [c.id for c in resp.tool_calls] == ["call_4162774", "call_4162775"]
    assert [c.arguments for c in resp.tool_calls] == [{"city": "Denver"}, {"city": "Moab"}]
    assert resp.text == "I'll check both cities."
    assert resp.finish_reason == "tool_calls"
    assert resp.model == "gemini-3-flash-preview"


async def test_max_tokens_truncation(serve: ServeFn) -> None:
    srv = await serve(200, body("max_tokens.json"))
    resp = await complete(srv)
    assert resp.finish_reason == "length"
    assert resp.raw_finish_reason == "MAX_TOKENS"
    assert resp.text.endswith("chlorophyll")
    assert (resp.usage.input_tokens, resp.usage.output_tokens, resp.usage.reasoning_tokens) == (9, 32, 0)


async def test_max_tokens_spent_on_thinking_has_no_parts(serve: ServeFn) -> None:
    srv = await serve(200, body("max_tokens_thinking_no_parts.json"))
    resp = await complete(srv)
    assert (resp.text, resp.finish_reason) == ("", "length")
    assert (resp.usage.input_tokens, resp.usage.output_tokens, resp.usage.reasoning_tokens) == (14, 99, 99)


async def test_cached_content_usage(serve: ServeFn) -> None:
    srv = await serve(200, body("cached.json"))
    resp = await complete(srv)
    u = resp.usage
    assert u.input_tokens == 32871  # promptTokenCount already includes the cached part
    assert u.cached_input_tokens == 32096
    assert (u.output_tokens, u.reasoning_tokens) == (22 + 51, 51)


async def test_tool_use_prompt_tokens_count_as_input(serve: ServeFn) -> None:
    data = fixture_json("gemini", "text.json")
    data["usageMetadata"]["toolUsePromptTokenCount"] = 300
    srv = await serve(200, json.dumps(data).encode())
    assert (await complete(srv)).usage.input_tokens == 312


async def test_thinking_parts_go_to_reasoning(serve: ServeFn) -> None:
    srv = await serve(200, body("thinking.json"))
    resp = await complete(srv)
    assert resp.text == "The sum of the integers from 1 to 100 is **5050**."
    assert resp.reasoning.startswith("**Summing the series**")
    assert resp.reasoning.endswith("5050, which agrees.\n")
    assert "Double-checking" in resp.reasoning and "Double-checking" not in resp.text
    assert (resp.usage.output_tokens, resp.usage.reasoning_tokens) == (17 + 393, 393)


async def test_missing_usage_is_zero(serve: ServeFn) -> None:
    data = fixture_json("gemini", "text.json")
    del data["usageMetadata"]
    srv = await serve(200, json.dumps(data).encode())
    u = (await complete(srv)).usage
    assert (u.input_tokens, u.output_tokens, u.cached_input_tokens, u.reasoning_tokens) == (0, 0, 0, 0)


async def test_safety_stop_is_content_filter(serve: ServeFn) -> None:
    srv = await serve(200, body("safety_candidate.json"))
    resp = await complete(srv)
    assert (resp.text, resp.finish_reason, resp.raw_finish_reason) == ("", "content_filter", "SAFETY")
    assert resp.usage.input_tokens == 18


@pytest.mark.parametrize(
    ("raw", "mapped"),
    [
        ("RECITATION", "content_filter"),
        ("BLOCKLIST", "content_filter"),
        ("PROHIBITED_CONTENT", "content_filter"),
        ("SPII", "content_filter"),
        ("IMAGE_SAFETY", "content_filter"),
        ("OTHER", "error"),
        ("FINISH_REASON_UNSPECIFIED", "error"),
        ("UNEXPECTED_TOOL_CALL", "error"),
        ("SOMETHING_NEW", "error"),
    ],
)
async def test_finish_reason_mapping(serve: ServeFn, raw: str, mapped: str) -> None:
    data = fixture_json("gemini", "text.json")
    data["candidates"][0]["finishReason"] = raw
    srv = await serve(200, json.dumps(data).encode())
    resp = await complete(srv)
    assert (resp.finish_reason, resp.raw_finish_reason) == (mapped, raw)


async def test_malformed_function_call_is_error(serve: ServeFn) -> None:
    srv = await serve(200, body("malformed_function_call.json"))
    resp = await complete(srv)
    assert (resp.text, resp.tool_calls, resp.finish_reason) == ("", [], "error")
    assert resp.raw_finish_reason == "MALFORMED_FUNCTION_CALL"


async def test_blocked_prompt_raises_content_filtered(serve: ServeFn) -> None:
    srv = await serve(200, body("prompt_blocked.json"))
    with pytest.raises(ContentFiltered) as info:
        await complete(srv)
    err = info.value
    assert err.error_type == "PROHIBITED_CONTENT"
    assert err.retryable is False
    assert err.provider == "gemini" and err.model == MODEL


async def test_blocked_prompt_in_stream_raises_content_filtered(serve: ServeFn) -> None:
    chunk = b"data: " + json.dumps(fixture_json("gemini", "prompt_blocked.json")).encode() + b"\r\n\r\n"
    srv = await serve(200, chunks=[chunk])
    with pytest.raises(ContentFiltered):
        await collect(gem(srv), Request.from_prompt("hi"))


# --------------------------------------------------------------------------- streaming


@pytest.mark.parametrize(
    ("json_name", "sse_name"),
    [
        ("text.json", "stream_text.sse"),
        ("function_calls.json", "stream_function_calls.sse"),
        ("thinking.json", "stream_thinking.sse"),
    ],
)
async def test_streamed_equals_complete(serve: ServeFn, json_name: str, sse_name: str) -> None:
    srv = await serve(200, body(json_name))
    expected = await complete(srv)
    srv2 = await serve(200, chunks=odd_chunks(body(sse_name)))
    events, streamed = await collect(gem(srv2), Request.from_prompt("hi"))
    assert streamed == expected
    assert streamed.model == expected.model
    assert streamed.request_id == expected.request_id
    # raw_arguments is the provider's own string (key order may differ); it must parse to the same dict
    assert all(json.loads(c.raw_arguments) == c.arguments for c in streamed.tool_calls)
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == expected.text
    assert "".join(e.text for e in events if isinstance(e, ReasoningDelta)) == expected.reasoning
    assert streamed.ttft_ms is not None


async def test_stream_text_deltas_in_order(serve: ServeFn) -> None:
    srv = await serve(200, chunks=odd_chunks(body("stream_text.sse")))
    events, resp = await collect(gem(srv), Request.from_prompt("hi"))
    assert events == [TextDelta("The capital"), TextDelta(" of France is Paris.")]
    assert (resp.usage.input_tokens, resp.usage.output_tokens) == (12, 34)  # the last usageMetadata wins


async def test_stream_function_calls_one_delta_per_call(serve: ServeFn) -> None:
    # one byte per read: every CRLF and every UTF-8 sequence is split
    data = body("stream_function_calls.sse")
    srv = await serve(200, chunks=[data[i : i + 1] for i in range(len(data))])
    events, resp = await collect(gem(srv), Request.from_prompt("hi"))
    assert [(e.index, e.id, e.name) for e in events if isinstance(e, ToolCallDelta)] == [
        (0, "call_0", "get_weather"),
        (1, "call_1", "get_weather"),
        (2, "call_2", "get_time"),
    ]
    assert all(isinstance(e, ToolCallDelta) for e in events)
    assert json.loads(events[2].arguments) == {"timezone": "Europe/Tokyo — 東京"}  # type: ignore[union-attr]
    assert resp.finish_reason == "tool_calls"


async def test_stream_with_lf_framing_and_no_final_blank_line(serve: ServeFn) -> None:
    data = body("stream_thinking.sse").replace(b"\r\n", b"\n").rstrip(b"\n")
    srv = await serve(200, chunks=odd_chunks(data))
    _, resp = await collect(gem(srv), Request.from_prompt("hi"))
    srv2 = await serve(200, body("thinking.json"))
    assert resp == await complete(srv2)


async def test_stream_inband_error_raises_after_content(serve: ServeFn) -> None:
    srv = await serve(200, chunks=odd_chunks(body("stream_error.sse")))
    seen: list[StreamEvent] = []

    async def consume() -> None:
        async for event in gem(srv).stream(MODEL, Request.from_prompt("hi")):
            seen.append(event)

    with pytest.raises(ServerError) as info:
        await consume()
    assert seen == [TextDelta("Here is a long story about")]
    err = info.value
    assert err.retryable is True
    assert err.error_type == "UNAVAILABLE"
    assert err.status_code is None  # HTTP itself said 200
    assert "overloaded" in err.message


@pytest.mark.parametrize(
    ("error", "cls"),
    [
        ({"code": 429, "message": "quota", "status": "RESOURCE_EXHAUSTED"}, RateLimitError),
        ({"code": 400, "message": "bad", "status": "INVALID_ARGUMENT"}, BadRequestError),
        ({"code": 500, "message": "oops", "status": "INTERNAL"}, ServerError),
    ],
)
async def test_stream_inband_error_classified_by_code(
    serve: ServeFn, error: dict[str, Any], cls: type[ProviderError]
) -> None:
    chunk = b"data: " + json.dumps({"error": error}).encode() + b"\r\n\r\n"
    srv = await serve(200, chunks=[chunk])
    with pytest.raises(cls) as info:
        await collect(gem(srv), Request.from_prompt("hi"))
    assert type(info.value) is cls


async def test_stream_error_wrapped_in_array(serve: ServeFn) -> None:
    chunk = b"data: " + json.dumps([fixture_json("gemini", "error_503.json")]).encode() + b"\r\n\r\n"
    srv = await serve(200, chunks=[chunk])
    with pytest.raises(ServerError, match="overloaded"):
        await collect(gem(srv), Request.from_prompt("hi"))


async def test_truncated_stream_is_protocol_error(serve: ServeFn) -> None:
    srv = await serve(200, chunks=odd_chunks(body("stream_truncated.sse")))
    with pytest.raises(ProtocolError, match="truncated"):
        await collect(gem(srv), Request.from_prompt("hi"))


@pytest.mark.parametrize(
    "line",
    [
        b"data: {not json\r\n\r\n",
        b"data: [1, 2]\r\n\r\n",
        b'data: {"candidates": "x"}\r\n\r\n',
        b'data: {"candidates": [{"content": {"parts": [{"functionCall": {"args": {}}}]}}]}\r\n\r\n',
    ],
)
async def test_malformed_stream_chunk_is_protocol_error(serve: ServeFn, line: bytes) -> None:
    srv = await serve(200, chunks=[line])
    with pytest.raises(ProtocolError):
        await collect(gem(srv), Request.from_prompt("hi"))


# --------------------------------------------------------------------------- malformed replies


@pytest.mark.parametrize(
    "payload",
    [
        b"<html>502 Bad Gateway</html>",
        b'{"candidates": [{"content": {"parts": [{"text": "cut',
        b"[]",
        b"{}",
        b'{"candidates": []}',
        b'{"candidates": "nope"}',
        b'{"candidates": [null]}',
        b'{"candidates": [{"content": {"parts": [{"functionCall": {"args": {}}}]}, "finishReason": "STOP"}]}',
        b'{"candidates": [{"content": {"parts": [{"functionCall": {"name": "f", "args": "{}"}}]}}]}',
        b'{"candidates": [{"content": {"parts": [{"text": 5}]}, "finishReason": "STOP"}]}',
        b'{"candidates": [{"finishReason": "STOP"}], "usageMetadata": []}',
    ],
)
async def test_malformed_reply_is_protocol_error(serve: ServeFn, payload: bytes) -> None:
    srv = await serve(200, payload)
    with pytest.raises(ProtocolError) as info:
        await complete(srv)
    assert info.value.provider == "gemini"


async def test_a_token_count_that_is_no_number_counts_zero(serve: ServeFn) -> None:
    """The shared rule of every adapter (``token_count``): a string where a count
    belongs drops to 0 and the answer is kept."""
    payload = (
        b'{"candidates": [{"content": {"parts": [{"text": "hi"}]}, "finishReason": "STOP"}], '
        b'"usageMetadata": {"promptTokenCount": "lots", "candidatesTokenCount": 2}}'
    )
    srv = await serve(200, payload)
    resp = await complete(srv)
    assert resp.text == "hi" and resp.usage.input_tokens == 0 and resp.usage.output_tokens == 2


# --------------------------------------------------------------------------- HTTP errors


@pytest.mark.parametrize(
    ("name", "status", "cls", "retryable", "etype"),
    [
        ("error_400.json", 400, BadRequestError, False, "INVALID_ARGUMENT"),
        ("error_400_context.json", 400, ContextWindowExceeded, False, "INVALID_ARGUMENT"),
        ("error_400_api_key.json", 400, AuthenticationError, False, "INVALID_ARGUMENT"),
        ("error_401.json", 401, AuthenticationError, False, "UNAUTHENTICATED"),
        ("error_403.json", 403, PermissionDeniedError, False, "PERMISSION_DENIED"),
        ("error_404.json", 404, NotFoundError, False, "NOT_FOUND"),
        ("error_429.json", 429, RateLimitError, True, "RESOURCE_EXHAUSTED"),
        ("error_500.json", 500, ServerError, True, "INTERNAL"),
        ("error_503.json", 503, ServerError, True, "UNAVAILABLE"),
        ("error_504.json", 504, ServerError, True, "DEADLINE_EXCEEDED"),
    ],
)
async def test_http_errors_map_to_classes(
    serve: ServeFn, name: str, status: int, cls: type[ProviderError], retryable: bool, etype: str
) -> None:
    srv = await serve(status, body(name))
    with pytest.raises(ProviderError) as info:
        await complete(srv)
    err = info.value
    assert type(err) is cls
    assert err.status_code == status
    assert err.retryable is retryable
    assert err.error_type == etype
    assert (err.provider, err.model) == ("gemini", MODEL)
    assert err.message and KEY not in str(err) and KEY not in repr(err)


async def test_bad_key_reason_becomes_error_code(serve: ServeFn) -> None:
    srv = await serve(400, body("error_400_api_key.json"))
    with pytest.raises(AuthenticationError) as info:
        await complete(srv)
    assert info.value.error_code == "API_KEY_INVALID"


async def test_429_retry_info_sets_retry_after(serve: ServeFn) -> None:
    srv = await serve(429, body("error_429.json"))
    with pytest.raises(RateLimitError) as info:
        await complete(srv)
    assert info.value.retry_after == 37.0  # RetryInfo, not the 37.33 of the prose


async def test_429_in_stream_request_is_mapped_too(serve: ServeFn) -> None:
    srv = await serve(429, body("error_429.json"))
    with pytest.raises(RateLimitError) as info:
        await collect(gem(srv), Request.from_prompt("hi"))
    assert (info.value.retry_after, info.value.status_code) == (37.0, 429)


async def test_retry_after_header_wins_over_retry_info(serve: ServeFn) -> None:
    srv = await serve(429, body("error_429.json"), headers={"retry-after": "5"})
    with pytest.raises(RateLimitError) as info:
        await complete(srv)
    assert info.value.retry_after == 5.0


@pytest.mark.parametrize(
    ("delay", "message", "expected"),
    [
        ("0.5s", "quota", 0.5),
        ("1.5s", "quota", 1.5),
        ("3.957525076s", "quota", 3.957525076),
        ({"seconds": 2, "nanos": 500000000}, "quota", 2.5),
        (None, "Resource exhausted. Please retry in 859.999ms.", 0.859999),
        (None, "Resource exhausted. Please retry in 12s.", 12.0),
        (None, "Resource has been exhausted (e.g. check quota).", None),
        ("soon", "quota", None),
    ],
)
async def test_retry_delay_formats(serve: ServeFn, delay: Any, message: str, expected: float | None) -> None:
    details = [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": delay}] if delay else []
    err_body = {
        "error": {"code": 429, "message": message, "status": "RESOURCE_EXHAUSTED", "details": details}
    }
    srv = await serve(429, json.dumps(err_body).encode())
    with pytest.raises(RateLimitError) as info:
        await complete(srv)
    if expected is None:
        assert info.value.retry_after is None
    else:
        assert info.value.retry_after == pytest.approx(expected)


async def test_error_body_as_json_array(serve: ServeFn) -> None:
    arr = json.dumps([fixture_json("gemini", "error_503.json")]).encode()
    srv = await serve(503, arr)
    with pytest.raises(ServerError) as info:
        await complete(srv)
    assert info.value.error_type == "UNAVAILABLE"
    assert "overloaded" in info.value.message


async def test_non_json_error_body(serve: ServeFn) -> None:
    srv = await serve(502, b"<html><title>502 Server Error</title></html>")
    with pytest.raises(ServerError) as info:
        await complete(srv)
    assert info.value.status_code == 502 and info.value.retryable


# --------------------------------------------------------------------------- secrets and keys


async def test_key_never_in_errors_or_provider_repr(serve: ServeFn) -> None:
    srv = await serve(403, body("error_403.json"))
    provider = gem(srv)
    assert KEY in body("error_403.json").decode()  # the body really does quote it
    with pytest.raises(PermissionDeniedError) as info:
        await provider.complete(MODEL, Request.from_prompt("hi"))
    err = info.value
    assert KEY not in str(err) and KEY not in repr(err) and KEY not in err.message
    assert "[REDACTED]" in err.message
    assert KEY not in repr(provider) and KEY not in str(provider)


async def test_key_never_in_inband_error(serve: ServeFn) -> None:
    chunk = json.dumps(
        {"error": {"code": 403, "message": f"key {KEY} suspended", "status": "PERMISSION_DENIED"}}
    )
    srv = await serve(200, chunks=[b"data: " + chunk.encode() + b"\r\n\r\n"])
    with pytest.raises(PermissionDeniedError) as info:
        await collect(gem(srv), Request.from_prompt("hi"))
    assert KEY not in str(info.value) and KEY not in repr(info.value)


PROMPT = Request.from_prompt("x")


async def test_key_from_env_and_google_fallback(serve: ServeFn, monkeypatch: pytest.MonkeyPatch) -> None:
    srv = await serve(200, body("text.json"))
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    monkeypatch.setenv("GOOGLE_API_KEY", "AIza-google-fallback-0000000000")
    await Gemini(base_url=srv.base_url + "/v1beta", http_client=srv.client).complete(MODEL, PROMPT)
    assert srv.last_headers["x-goog-api-key"] == "AIza-google-fallback-0000000000"
    monkeypatch.setenv("GEMINI_API_KEY", "AIza-gemini-env-00000000000000")
    await Gemini(base_url=srv.base_url + "/v1beta", http_client=srv.client).complete(MODEL, PROMPT)
    assert srv.last_headers["x-goog-api-key"] == "AIza-gemini-env-00000000000000"


async def test_missing_key_fails_before_sending(serve: ServeFn, monkeypatch: pytest.MonkeyPatch) -> None:
    srv = await serve(200, body("text.json"))
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    provider = Gemini(base_url=srv.base_url + "/v1beta", http_client=srv.client)
    with pytest.raises(AuthenticationError, match="GEMINI_API_KEY"):
        await provider.complete(MODEL, Request.from_prompt("x"))
    assert list(srv.records()) == []
