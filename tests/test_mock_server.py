"""MockLLMServer over real sockets: wire formats, faults, replay, keep-alive, lifecycle.

Replies are checked against each provider's real wire format (parsed with the
project's own SSE decoder), and error bodies are run through the shared
``classify_error`` so a change that breaks tierwise's error mapping fails here.
Adapters are deliberately not used: they are tested against this server separately.
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tierwise.errors import ContextWindowExceeded, NotFoundError, RateLimitError, ServerError
from tierwise.providers._sse import SSEDecoder, SSEEvent
from tierwise.providers.base import classify_error, parse_rate_limit_headers, parse_retry_after
from tierwise.testing.mock_server import (
    MockLLMServer,
    MockModel,
    estimate_tokens,
    load_config,
    main_mock_server,
)

PROMPT = "What is the capital of France?"
OPENAI = "/v1/chat/completions"
ANTHROPIC = "/v1/messages"


def gemini_path(model: str, stream: bool = False) -> str:
    action = "streamGenerateContent?alt=sse" if stream else "generateContent"
    return f"/v1beta/models/{model}:{action}"


def body_for(provider: str, model: str, *, stream: bool = False, **extra: Any) -> dict[str, Any]:
    if provider == "gemini":
        return {"contents": [{"role": "user", "parts": [{"text": PROMPT}]}], **extra}
    body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": PROMPT}], **extra}
    if stream:
        body["stream"] = True
    if provider == "anthropic":
        body.setdefault("max_tokens", 1024)
    return body


def path_for(provider: str, model: str, stream: bool = False) -> str:
    return {"openai": OPENAI, "anthropic": ANTHROPIC}.get(provider) or gemini_path(model, stream)


async def consume(client: httpx.AsyncClient, path: str, body: Any, into: list[bytes]) -> None:
    """Stream a reply into ``into`` (kept even when the stream then fails)."""
    async with client.stream("POST", path, json=body) as r:
        assert r.status_code == 200
        async for chunk in r.aiter_bytes():
            into.append(chunk)


def sse(raw: bytes) -> list[SSEEvent]:
    decoder = SSEDecoder()
    return decoder.feed(raw) + decoder.close()


def error_fields(provider: str, data: dict[str, Any]) -> tuple[str, str | None, str | None]:
    """(message, type, code) the way a provider adapter reads an error body."""
    err = data["error"]
    if provider == "gemini":
        return err["message"], err["status"], None
    return err["message"], err["type"], err.get("code")


@pytest.fixture
async def server() -> AsyncIterator[MockLLMServer]:
    models = {
        "gpt-test": MockModel(reply="Paris is the capital of France.", cached_tokens=2, reasoning_tokens=5),
        "claude-test": MockModel(reply="Paris is the capital of France.", cached_tokens=2),
        "gemini-test": MockModel(reply="Paris is the capital of France.", reasoning_tokens=5),
        "tools": MockModel(tool_calls=[("get_weather", {"city": "Paris"}), ("get_time", {"tz": "CET"})]),
    }
    async with MockLLMServer(models) as srv:
        yield srv


@pytest.fixture
async def client(server: MockLLMServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=5.0) as c:
        yield c


async def post(
    client: httpx.AsyncClient, provider: str, model: str, *, stream: bool = False, **extra: Any
) -> httpx.Response:
    return await client.post(
        path_for(provider, model, stream), json=body_for(provider, model, stream=stream, **extra)
    )


# --------------------------------------------------------------------------- OpenAI


async def test_openai_json(client: httpx.AsyncClient) -> None:
    r = await post(client, "openai", "gpt-test")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    assert int(r.headers["content-length"]) == len(r.content)
    assert r.headers["x-request-id"].startswith("req_")
    data = r.json()
    assert data["object"] == "chat.completion"
    assert data["model"] == "gpt-test"
    choice = data["choices"][0]
    assert choice["message"] == {
        "role": "assistant",
        "content": "Paris is the capital of France.",
        "refusal": None,
        "annotations": [],
    }
    assert choice["finish_reason"] == "stop"
    usage = data["usage"]
    visible = estimate_tokens("Paris is the capital of France.")
    assert usage["prompt_tokens"] == estimate_tokens(PROMPT)
    assert usage["completion_tokens"] == visible + 5  # reasoning is billed as output
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert usage["prompt_tokens_details"]["cached_tokens"] == 2
    assert usage["completion_tokens_details"]["reasoning_tokens"] == 5


async def test_openai_path_without_v1(client: httpx.AsyncClient) -> None:
    r = await client.post("/chat/completions", json=body_for("openai", "gpt-test"))
    assert r.status_code == 200
    assert r.json()["choices"][0]["message"]["content"] == "Paris is the capital of France."


async def test_openai_sse_with_usage(client: httpx.AsyncClient) -> None:
    r = await post(client, "openai", "gpt-test", stream=True, stream_options={"include_usage": True})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    assert r.headers["transfer-encoding"] == "chunked"
    events = sse(r.content)
    assert events[-1].data == "[DONE]"
    chunks = [json.loads(e.data) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" and c["id"] == chunks[0]["id"] for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "Paris is the capital of France."
    assert len([c for c in chunks if c["choices"] and c["choices"][0]["delta"].get("content")]) > 1
    finish = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]]
    assert finish[-1] == "stop" and set(finish[:-1]) == {None}
    # include_usage: a last chunk with empty choices carries usage; every other chunk has usage null.
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["completion_tokens"] == estimate_tokens(text) + 5
    assert all("usage" in c and c["usage"] is None for c in chunks[:-1])


async def test_openai_sse_without_usage_option(client: httpx.AsyncClient) -> None:
    r = await post(client, "openai", "gpt-test", stream=True)
    events = sse(r.content)
    chunks = [json.loads(e.data) for e in events[:-1]]
    assert events[-1].data == "[DONE]"
    assert all("usage" not in c for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


async def test_openai_tool_calls_json_and_stream(client: httpx.AsyncClient) -> None:
    r = await post(client, "openai", "tools")
    choice = r.json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    calls = choice["message"]["tool_calls"]
    assert [c["function"]["name"] for c in calls] == ["get_weather", "get_time"]
    assert json.loads(calls[0]["function"]["arguments"]) == {"city": "Paris"}
    assert len({c["id"] for c in calls}) == 2

    r = await post(client, "openai", "tools", stream=True, stream_options={"include_usage": True})
    chunks = [json.loads(e.data) for e in sse(r.content)[:-1]]
    args: dict[int, list[str]] = {}
    names: dict[int, str] = {}
    ids: dict[int, str] = {}
    for chunk in chunks:
        for call in (chunk["choices"][0]["delta"].get("tool_calls") or []) if chunk["choices"] else []:
            args.setdefault(call["index"], []).append(call["function"].get("arguments", ""))
            if "name" in call["function"]:
                names[call["index"]] = call["function"]["name"]
                ids[call["index"]] = call["id"]
    assert names == {0: "get_weather", 1: "get_time"}
    assert ids == {0: calls[0]["id"], 1: calls[1]["id"]}  # same answer, same ids in both modes
    assert json.loads("".join(args[0])) == {"city": "Paris"}
    assert json.loads("".join(args[1])) == {"tz": "CET"}
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"


async def test_openai_max_tokens_gives_length(client: httpx.AsyncClient) -> None:
    r = await post(client, "openai", "gpt-test", max_tokens=2)
    data = r.json()
    assert data["choices"][0]["finish_reason"] == "length"
    assert data["choices"][0]["message"]["content"] == "Paris is"
    assert data["usage"]["completion_tokens"] == 2 + 5


# --------------------------------------------------------------------------- Anthropic


async def test_anthropic_json(client: httpx.AsyncClient) -> None:
    r = await post(client, "anthropic", "claude-test")
    assert r.status_code == 200
    assert r.headers["request-id"].startswith("req_")
    data = r.json()
    assert data["type"] == "message" and data["role"] == "assistant"
    assert data["content"] == [{"type": "text", "text": "Paris is the capital of France."}]
    assert data["stop_reason"] == "end_turn"
    assert data["stop_sequence"] is None
    usage = data["usage"]
    # Anthropic reports cache reads separately: input + cache_read is the whole prompt.
    assert usage["input_tokens"] + usage["cache_read_input_tokens"] == estimate_tokens(PROMPT)
    assert usage["cache_read_input_tokens"] == 2
    assert usage["output_tokens"] == estimate_tokens("Paris is the capital of France.")


async def test_anthropic_sse_event_sequence(client: httpx.AsyncClient) -> None:
    r = await post(client, "anthropic", "claude-test", stream=True)
    assert r.headers["content-type"].startswith("text/event-stream")
    assert r.headers["transfer-encoding"] == "chunked"
    events = sse(r.content)
    names = [e.event for e in events]
    assert names[:3] == ["message_start", "content_block_start", "ping"]
    deltas = names[3:-3]
    assert deltas and set(deltas) == {"content_block_delta"}
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    payloads = [json.loads(e.data) for e in events]
    assert all(p["type"] == e.event for p, e in zip(payloads, events, strict=True))
    start = payloads[0]["message"]
    assert start["content"] == [] and start["stop_reason"] is None
    assert start["usage"]["cache_read_input_tokens"] == 2
    text = "".join(p["delta"]["text"] for p in payloads if p["type"] == "content_block_delta")
    assert text == "Paris is the capital of France."
    assert payloads[-2]["delta"]["stop_reason"] == "end_turn"
    assert payloads[-2]["usage"]["output_tokens"] == estimate_tokens(text)


async def test_anthropic_tool_use_stream(client: httpx.AsyncClient) -> None:
    r = await post(client, "anthropic", "tools")
    data = r.json()
    assert data["stop_reason"] == "tool_use"
    assert [(b["type"], b["name"], b["input"]) for b in data["content"]] == [
        ("tool_use", "get_weather", {"city": "Paris"}),
        ("tool_use", "get_time", {"tz": "CET"}),
    ]
    r = await post(client, "anthropic", "tools", stream=True)
    payloads = [json.loads(e.data) for e in sse(r.content)]
    blocks: dict[int, dict[str, Any]] = {}
    for p in payloads:
        if p["type"] == "content_block_start":
            blocks[p["index"]] = {"name": p["content_block"]["name"], "json": []}
        elif p["type"] == "content_block_delta":
            assert p["delta"]["type"] == "input_json_delta"
            blocks[p["index"]]["json"].append(p["delta"]["partial_json"])
    assert {i: (b["name"], json.loads("".join(b["json"]))) for i, b in blocks.items()} == {
        0: ("get_weather", {"city": "Paris"}),
        1: ("get_time", {"tz": "CET"}),
    }
    stops = [p["index"] for p in payloads if p["type"] == "content_block_stop"]
    assert stops == [0, 1]
    assert payloads[-2]["delta"]["stop_reason"] == "tool_use"
    assert payloads[-1]["type"] == "message_stop"


# --------------------------------------------------------------------------- Gemini


async def test_gemini_json(client: httpx.AsyncClient) -> None:
    r = await post(client, "gemini", "gemini-test")
    assert r.status_code == 200
    data = r.json()
    candidate = data["candidates"][0]
    assert candidate["content"] == {"parts": [{"text": "Paris is the capital of France."}], "role": "model"}
    assert candidate["finishReason"] == "STOP"
    usage = data["usageMetadata"]
    visible = estimate_tokens("Paris is the capital of France.")
    assert usage["promptTokenCount"] == estimate_tokens(PROMPT)
    assert usage["candidatesTokenCount"] == visible
    assert usage["thoughtsTokenCount"] == 5
    assert usage["totalTokenCount"] == usage["promptTokenCount"] + visible + 5
    assert data["modelVersion"] == "gemini-test"


async def test_gemini_sse(client: httpx.AsyncClient) -> None:
    r = await post(client, "gemini", "gemini-test", stream=True)
    assert r.headers["content-type"].startswith("text/event-stream")
    assert b"\r\n\r\n" in r.content  # Gemini frames events with CRLF
    events = sse(r.content)
    chunks = [json.loads(e.data) for e in events]
    assert len(chunks) > 2
    text = "".join(p.get("text", "") for c in chunks for p in c["candidates"][0]["content"]["parts"])
    assert text == "Paris is the capital of France."
    assert all("finishReason" not in c["candidates"][0] for c in chunks[:-1])
    assert chunks[-1]["candidates"][0]["finishReason"] == "STOP"
    assert chunks[-1]["usageMetadata"]["thoughtsTokenCount"] == 5
    assert chunks[-1]["usageMetadata"]["candidatesTokenCount"] == estimate_tokens(text)


async def test_gemini_stream_without_sse_is_json_array(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1beta/models/gemini-test:streamGenerateContent", json=body_for("gemini", "x"))
    data = r.json()
    assert isinstance(data, list) and len(data) > 1
    assert data[-1]["candidates"][0]["finishReason"] == "STOP"


async def test_gemini_tool_calls(client: httpx.AsyncClient) -> None:
    r = await post(client, "gemini", "tools")
    parts = r.json()["candidates"][0]["content"]["parts"]
    assert parts == [
        {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
        {"functionCall": {"name": "get_time", "args": {"tz": "CET"}}},
    ]


# --------------------------------------------------------------------------- request errors


@pytest.mark.parametrize("provider", ["openai", "anthropic", "gemini"])
async def test_unknown_model_is_provider_404(client: httpx.AsyncClient, provider: str) -> None:
    r = await post(client, provider, "no-such-model")
    assert r.status_code == 404
    data = r.json()
    message, etype, code = error_fields(provider, data)
    assert "no-such-model" in message
    assert classify_error(404, message, etype, code) is NotFoundError
    if provider == "anthropic":
        assert data["type"] == "error" and etype == "not_found_error"
    elif provider == "openai":
        assert code == "model_not_found"
    else:
        assert data["error"]["code"] == 404 and etype == "NOT_FOUND"


@pytest.mark.parametrize("provider", ["openai", "anthropic", "gemini"])
async def test_bad_json_is_400(client: httpx.AsyncClient, provider: str) -> None:
    r = await client.post(path_for(provider, "gpt-test"), content=b'{"model": "gpt-test", ')
    assert r.status_code == 400
    message, etype, _ = error_fields(provider, r.json())
    assert etype in ("invalid_request_error", "INVALID_ARGUMENT")
    assert "JSON" in message


async def test_unknown_path_and_wrong_method(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/fine_tuning/jobs", json={})  # completions/embeddings are served
    assert r.status_code == 404
    assert "Invalid URL" in r.json()["error"]["message"]
    r = await client.get(ANTHROPIC)
    assert r.status_code == 405
    r = await client.get("/health")
    assert r.json() == {"status": "ok"}
    r = await client.get("/v1/models")
    assert {m["id"] for m in r.json()["data"]} == {"gpt-test", "claude-test", "gemini-test", "tools"}


async def test_missing_model_field_is_400(client: httpx.AsyncClient) -> None:
    r = await client.post(OPENAI, json={"messages": []})
    assert r.status_code == 400


# --------------------------------------------------------------------------- faults


async def test_429_has_retry_after_in_every_format() -> None:
    model = MockModel(faults=["429"] * 3, retry_after_s=2.5)
    async with MockLLMServer({"m": model}) as srv, httpx.AsyncClient(base_url=srv.base_url) as c:
        for provider in ("openai", "anthropic", "gemini"):
            r = await post(c, provider, "m")
            assert r.status_code == 429
            assert r.headers["retry-after"] == "3"
            assert r.headers["retry-after-ms"] == "2500"
            assert parse_retry_after(r.headers) == 2.5
            message, etype, code = error_fields(provider, r.json())
            assert classify_error(429, message, etype, code) is RateLimitError
        assert r.json()["error"]["details"][0]["retryDelay"] == "2.5s"  # Gemini RetryInfo
        assert srv.stats["m"].faults == {"429": 3}


@pytest.mark.parametrize(
    ("provider", "status", "etype"),
    [
        ("anthropic", 529, "overloaded_error"),
        ("anthropic", 500, "api_error"),
        ("openai", 500, "server_error"),
        ("openai", 503, "server_error"),
        ("openai", 529, "server_error"),
        ("gemini", 503, "UNAVAILABLE"),
        ("gemini", 500, "INTERNAL"),
    ],
)
async def test_server_errors(provider: str, status: int, etype: str) -> None:
    async with (
        MockLLMServer({"m": MockModel(faults=[str(status)])}) as srv,
        httpx.AsyncClient(base_url=srv.base_url) as c,
    ):
        r = await post(c, provider, "m", stream=True)  # errors come as JSON even for stream requests
        assert r.status_code == status
        assert r.headers["content-type"] == "application/json"
        message, got_type, code = error_fields(provider, r.json())
        assert got_type == etype and message
        assert classify_error(status, message, got_type, code) is ServerError
        # The next request succeeds: the script had one item.
        assert (await post(c, provider, "m")).status_code == 200


@pytest.mark.parametrize("provider", ["openai", "anthropic", "gemini"])
async def test_context_error_maps_to_context_window(provider: str) -> None:
    async with (
        MockLLMServer({"m": MockModel(faults=["context"])}) as srv,
        httpx.AsyncClient(base_url=srv.base_url) as c,
    ):
        r = await post(c, provider, "m")
        assert r.status_code == 400
        message, etype, code = error_fields(provider, r.json())
        assert classify_error(400, message, etype, code) is ContextWindowExceeded
        if provider == "openai":
            assert code == "context_length_exceeded"


async def test_other_status_codes_are_accepted() -> None:
    async with (
        MockLLMServer({"m": MockModel(faults=["401", "403", "404", "418"])}) as srv,
        httpx.AsyncClient(base_url=srv.base_url) as c,
    ):
        statuses = [(await post(c, "anthropic", "m")).status_code for _ in range(5)]
        assert statuses == [401, 403, 404, 418, 200]


async def test_hang_never_answers() -> None:
    async with MockLLMServer({"m": MockModel(faults=["hang"])}) as srv:
        async with httpx.AsyncClient(base_url=srv.base_url, timeout=0.3) as c:
            start = time.perf_counter()
            with pytest.raises(httpx.ReadTimeout):
                await post(c, "openai", "m")
            assert time.perf_counter() - start >= 0.29
        assert srv.stats["m"].faults == {"hang": 1}
        async with httpx.AsyncClient(base_url=srv.base_url, timeout=2.0) as c:
            assert (await post(c, "openai", "m")).status_code == 200


async def test_stall_sends_some_events_then_goes_silent() -> None:
    model = MockModel(reply="abcdefgh" * 8, faults=["stall"], fault_after_chunks=2)
    async with MockLLMServer({"m": model}) as srv:
        timeout = httpx.Timeout(5.0, read=0.3)
        async with httpx.AsyncClient(base_url=srv.base_url, timeout=timeout) as c:
            received: list[bytes] = []
            with pytest.raises(httpx.ReadTimeout):
                await consume(c, OPENAI, body_for("openai", "m", stream=True), received)
            contents = [
                json.loads(e.data)["choices"][0]["delta"].get("content") for e in sse(b"".join(received))
            ]
            assert contents[1:] == ["abcdefghabcdefgh"] * 2


async def test_reset_before_response_is_transport_error() -> None:
    async with MockLLMServer({"m": MockModel(faults=["reset"] * 2)}) as srv:
        async with httpx.AsyncClient(base_url=srv.base_url) as c:
            with pytest.raises(httpx.TransportError):
                await post(c, "openai", "m")
        # On a raw socket the peer sees a RST, not a clean close.
        with socket.create_connection(("127.0.0.1", srv.port)) as sock:
            body = json.dumps(body_for("openai", "m")).encode()
            sock.sendall(raw_request(OPENAI, body))
            sock.settimeout(2.0)
            with pytest.raises(ConnectionResetError):
                await asyncio.to_thread(sock.recv, 65536)


async def test_reset_mid_stream() -> None:
    model = MockModel(reply="x" * 200, faults=["reset"], fault_after_chunks=3)
    async with MockLLMServer({"m": model}) as srv, httpx.AsyncClient(base_url=srv.base_url) as c:
        received: list[bytes] = []
        with pytest.raises(httpx.TransportError):
            await consume(c, ANTHROPIC, body_for("anthropic", "m", stream=True), received)
        names = [e.event for e in sse(b"".join(received))]
        assert names[:3] == ["message_start", "content_block_start", "ping"]
        assert "message_stop" not in names


@pytest.mark.parametrize("provider", ["openai", "anthropic", "gemini"])
async def test_truncated_stream_lacks_final_events(provider: str) -> None:
    model = MockModel(reply="y" * 100, faults=["truncate"], fault_after_chunks=2)
    async with MockLLMServer({"m": model}) as srv, httpx.AsyncClient(base_url=srv.base_url) as c:
        r = (
            await post(c, provider, "m", stream=True, stream_options={"include_usage": True})
            if provider == "openai"
            else await post(c, provider, "m", stream=True)
        )
        assert r.status_code == 200  # the HTTP message itself is complete
        events = sse(r.content)
        datas = [e.data for e in events]
        if provider == "openai":
            assert "[DONE]" not in datas
            chunks = [json.loads(d) for d in datas]
            assert all(c["choices"][0]["finish_reason"] is None for c in chunks)
            assert sum(1 for c in chunks if c["choices"][0]["delta"].get("content")) == 2
        elif provider == "anthropic":
            names = [e.event for e in events]
            assert "message_stop" not in names and "message_delta" not in names
            assert names.count("content_block_delta") == 2
        else:
            chunks = [json.loads(d) for d in datas]
            assert len(chunks) == 2
            assert all("finishReason" not in c["candidates"][0] for c in chunks)


async def test_truncated_json_is_incomplete_body() -> None:
    async with (
        MockLLMServer({"m": MockModel(faults=["truncate"])}) as srv,
        httpx.AsyncClient(base_url=srv.base_url) as c,
    ):
        with pytest.raises(httpx.RemoteProtocolError):
            await post(c, "openai", "m")


async def test_malformed_json_and_stream() -> None:
    async with (
        MockLLMServer({"m": MockModel(faults=["malformed"] * 2)}) as srv,
        httpx.AsyncClient(base_url=srv.base_url) as c,
    ):
        r = await post(c, "gemini", "m")
        assert r.status_code == 200
        with pytest.raises(ValueError):
            json.loads(r.content)
        r = await post(c, "anthropic", "m", stream=True)
        bad = []
        for event in sse(r.content):
            try:
                json.loads(event.data)
            except ValueError:
                bad.append(event)
        assert len(bad) == 1 and bad[0].event == "content_block_delta"
        assert sse(r.content)[-1].event == "message_stop"  # otherwise complete


@pytest.mark.parametrize("provider", ["openai", "anthropic", "gemini"])
async def test_inband_error_stream(provider: str) -> None:
    model = MockModel(reply="z" * 64, faults=["inband_error", "inband_error"], fault_after_chunks=1)
    async with MockLLMServer({"m": model}) as srv, httpx.AsyncClient(base_url=srv.base_url) as c:
        r = await post(c, provider, "m", stream=True)
        assert r.status_code == 200
        events = sse(r.content)
        last = json.loads(events[-1].data)
        if provider == "anthropic":
            assert events[-1].event == "error"
            assert last == {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
        message, etype, code = error_fields(provider, last)
        assert classify_error(None, message, etype, code) is ServerError
        # JSON mode: HTTP 200 with an error body (as OpenRouter does).
        r = await post(c, provider, "m")
        assert r.status_code == 200 and "error" in r.json()


async def test_fault_script_then_probabilities_then_cycle() -> None:
    models = {
        "scripted": MockModel(faults=["429", "ok", "500"]),
        "cycled": MockModel(faults=["503", "ok"], cycle_faults=True),
    }
    async with MockLLMServer(models) as srv, httpx.AsyncClient(base_url=srv.base_url) as c:
        assert [(await post(c, "openai", "scripted")).status_code for _ in range(5)] == [
            429,
            200,
            500,
            200,
            200,
        ]
        assert [(await post(c, "openai", "cycled")).status_code for _ in range(5)] == [
            503,
            200,
            503,
            200,
            503,
        ]
        assert srv.stats["scripted"].requests == 5
        assert srv.stats["scripted"].ok == 3
        assert srv.stats["scripted"].faults == {"429": 1, "500": 1}


async def _statuses(seed: int, n: int = 40) -> list[int]:
    model = MockModel(fault_rates={"429": 0.3, "500": 0.2})
    async with MockLLMServer({"m": model}, seed=seed) as srv, httpx.AsyncClient(base_url=srv.base_url) as c:
        # Interleave another model's traffic: it must not shift this model's sequence.
        out = []
        for i in range(n):
            out.append((await post(c, "openai", "m")).status_code)
            if seed == 7 and i % 3 == 0:
                srv.set_model("other", MockModel(fault_rates={"500": 0.5}))
                await post(c, "openai", "other")
        return out


async def test_seeded_probabilities_are_deterministic() -> None:
    a = await _statuses(7)
    b = await _statuses(7)
    c = await _statuses(8)
    assert a == b
    assert a != c
    assert set(a) == {200, 429, 500}


async def test_set_model_changes_behaviour_and_restarts_script(
    server: MockLLMServer, client: httpx.AsyncClient
) -> None:
    server.set_model("gpt-test", MockModel(reply="changed", faults=["500"]))
    assert (await post(client, "openai", "gpt-test")).status_code == 500
    r = await post(client, "openai", "gpt-test")
    assert r.json()["choices"][0]["message"]["content"] == "changed"
    server.set_model("gpt-test", MockModel(reply="again", faults=["500"]))
    assert (await post(client, "openai", "gpt-test")).status_code == 500
    server.set_model("gpt-test", None)
    assert (await post(client, "openai", "gpt-test")).status_code == 404
    assert server.stats["gpt-test"].requests == 3  # counters survive replacement


async def test_latency_and_chunk_delay() -> None:
    model = MockModel(reply="abcd" * 4, latency_ms=150, stream_chunk_delay_ms=40, tokens_per_chunk=1)
    async with MockLLMServer({"m": model}) as srv, httpx.AsyncClient(base_url=srv.base_url) as c:
        start = time.perf_counter()
        r = await post(c, "openai", "m")
        assert time.perf_counter() - start >= 0.145
        assert r.status_code == 200
        arrivals = []
        start = time.perf_counter()
        async with c.stream("POST", OPENAI, json=body_for("openai", "m", stream=True)) as resp:
            async for _ in resp.aiter_raw():
                arrivals.append(time.perf_counter() - start)
        assert arrivals[0] >= 0.145
        # 4 content chunks + finish + [DONE], each 40 ms apart, flushed as they are written.
        assert arrivals[-1] - arrivals[0] >= 5 * 0.04 - 0.01
        assert len(arrivals) >= 4


async def test_jitter_is_bounded() -> None:
    model = MockModel(latency_ms=20, jitter_ms=30)
    async with MockLLMServer({"m": model}) as srv, httpx.AsyncClient(base_url=srv.base_url) as c:
        for _ in range(3):
            start = time.perf_counter()
            await post(c, "openai", "m")
            assert time.perf_counter() - start >= 0.019


async def test_rate_limit_headers_and_enforcement() -> None:
    model = MockModel(rate_limit_requests=2, rate_limit_tokens=100_000, enforce_rate_limits=True)
    async with MockLLMServer({"m": model}) as srv, httpx.AsyncClient(base_url=srv.base_url) as c:
        r = await post(c, "openai", "m")
        info = parse_rate_limit_headers(r.headers)
        assert info is not None
        assert info.requests_limit == 2 and info.requests_remaining == 1
        assert info.tokens_limit == 100_000 and info.tokens_remaining is not None
        assert info.tokens_remaining < 100_000
        assert info.requests_reset_s is not None and 0 < info.requests_reset_s <= 60
        r = await post(c, "anthropic", "m")
        info = parse_rate_limit_headers(r.headers)
        assert info is not None and info.requests_remaining == 0
        r = await post(c, "openai", "m")
        assert r.status_code == 429
        assert 0 < float(r.headers["retry-after"]) <= 60


async def test_reply_callable_sees_request_and_utf8_splits_survive() -> None:
    seen = []

    def reply(req: Any) -> str:
        seen.append((req.model, req.prompt, req.json()["messages"][0]["role"]))
        return "héllo wörld ✓ 日本語テキスト"

    async with (
        MockLLMServer({"m": MockModel(reply=reply, tokens_per_chunk=1)}) as srv,
        httpx.AsyncClient(base_url=srv.base_url) as c,
    ):
        async with c.stream("POST", OPENAI, json=body_for("openai", "m", stream=True)) as r:
            raw = b"".join([chunk async for chunk in r.aiter_bytes(7)])  # odd sizes split UTF-8
    decoder = SSEDecoder()
    events = []
    for i in range(0, len(raw), 5):
        events += decoder.feed(raw[i : i + 5])
    events += decoder.close()
    text = "".join(json.loads(e.data)["choices"][0]["delta"].get("content") or "" for e in events[:-1])
    assert text == "héllo wörld ✓ 日本語テキスト"
    assert seen == [("m", PROMPT, "user")]


async def test_default_reply_is_deterministic_echo() -> None:
    async with MockLLMServer() as srv, httpx.AsyncClient(base_url=srv.base_url) as c:
        a = (await post(c, "openai", "any-model")).json()["choices"][0]["message"]["content"]
        b = (await post(c, "openai", "any-model")).json()["choices"][0]["message"]["content"]
    assert a == b
    assert "any-model" in a and PROMPT in a


async def test_default_model_answers_unknown_names() -> None:
    async with (
        MockLLMServer({"known": MockModel(reply="k")}, default=MockModel(reply="d")) as srv,
        httpx.AsyncClient(base_url=srv.base_url) as c,
    ):
        assert (await post(c, "anthropic", "whatever")).json()["content"][0]["text"] == "d"
        assert (await post(c, "anthropic", "known")).json()["content"][0]["text"] == "k"


# --------------------------------------------------------------------------- replay


async def test_replay_json_then_normal_service(server: MockLLMServer, client: httpx.AsyncClient) -> None:
    body = b'{"id":"chatcmpl-recorded","choices":[]}'
    server.replay(418, {"Content-Type": "application/json", "x-custom": "1", "content-length": "999"}, [body])
    server.replay(200, {"content-type": "text/plain"}, [b"second"])
    r = await client.post("/anything/at/all", content=b"{}")
    assert r.status_code == 418
    assert r.content == body
    assert r.headers["x-custom"] == "1"
    assert r.headers["content-length"] == str(len(body))
    r = await client.post(OPENAI, json=body_for("openai", "gpt-test"))
    assert r.content == b"second" and r.headers["content-type"] == "text/plain"
    r = await post(client, "openai", "gpt-test")
    assert r.json()["object"] == "chat.completion"
    assert [req.path for req in server.requests] == ["/anything/at/all", OPENAI, OPENAI]
    assert server.requests[1].model == "gpt-test"


async def test_replay_chunked_sse_writes_each_chunk(server: MockLLMServer) -> None:
    chunks = [
        b'event: message_start\r\ndata: {"a":',
        b"1}\r\n",
        b"\r\nevent: message_stop\r\ndata: {}\r\n\r\n",
    ]
    server.replay(200, {"content-type": "text/event-stream"}, chunks, chunk_delay_ms=5)
    body = json.dumps(body_for("anthropic", "m", stream=True)).encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(raw_request(ANTHROPIC, body))
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 ")
        assert b"transfer-encoding: chunked" in head
        got = []
        while True:
            size = int((await reader.readuntil(b"\r\n"))[:-2], 16)
            data = await reader.readexactly(size + 2)
            if size == 0:
                break
            got.append(data[:-2])
    finally:
        writer.close()
    assert got == chunks  # one HTTP chunk per scripted chunk
    assert [e.event for e in sse(b"".join(got))] == ["message_start", "message_stop"]


async def test_replay_via_httpx_stream(server: MockLLMServer, client: httpx.AsyncClient) -> None:
    chunks = [b'data: {"x": 1}\n\n', b'data: {"x": 2}\n\n', b"data: [DONE]\n\n"]
    server.replay(200, {"content-type": "text/event-stream"}, chunks)
    async with client.stream("POST", OPENAI, json={}) as r:
        raw = b"".join([c async for c in r.aiter_raw()])
    assert raw == b"".join(chunks)


async def test_conftest_serve_fixture(serve: Any) -> None:
    served = await serve(200, b'{"ok": true}', headers={"x-a": "b"})
    r = await served.client.post(served.base_url + "/v1/messages?beta=true", json={"model": "m"})
    assert r.json() == {"ok": True}
    assert served.last_path == "/v1/messages?beta=true"
    assert served.last_json() == {"model": "m"}


# --------------------------------------------------------------------------- HTTP behaviour


def raw_request(path: str, body: bytes, extra: str = "") -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n{extra}\r\n"
    ).encode() + body


async def read_response(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    return head, await reader.readexactly(length)


async def test_keep_alive_many_requests_one_connection(server: MockLLMServer) -> None:
    body = json.dumps(body_for("openai", "gpt-test")).encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        for _ in range(100):
            writer.write(raw_request(OPENAI, body))
            head, payload = await read_response(reader)
            assert head.startswith(b"HTTP/1.1 200 OK")
            assert json.loads(payload)["object"] == "chat.completion"
        # Pipelined: three requests in one write, three responses in order.
        writer.write(raw_request(OPENAI, body) + raw_request("/v1/nope", b"{}") + raw_request(OPENAI, body))
        statuses = [(await read_response(reader))[0][9:12] for _ in range(3)]
        assert statuses == [b"200", b"404", b"200"]
    finally:
        writer.close()
    assert len(server.requests) == 103


async def test_httpx_reuses_connection(server: MockLLMServer, client: httpx.AsyncClient) -> None:
    peers = set()
    for _ in range(20):
        async with client.stream("POST", OPENAI, json=body_for("openai", "gpt-test")) as r:
            peers.add(r.extensions["network_stream"].get_extra_info("client_addr"))
            await r.aread()
    assert len(peers) == 1


async def test_connection_close_is_honoured(server: MockLLMServer) -> None:
    body = json.dumps(body_for("openai", "gpt-test")).encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(raw_request(OPENAI, body, "Connection: close\r\n"))
    head, _ = await read_response(reader)
    assert b"connection: close" in head.lower()
    assert await reader.read() == b""  # server closed its side
    writer.close()


async def test_expect_100_continue_and_chunked_request_body(
    server: MockLLMServer, client: httpx.AsyncClient
) -> None:
    body = json.dumps(body_for("openai", "gpt-test")).encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(
            raw_request(OPENAI, b"", "Expect: 100-continue\r\n").replace(
                b"Content-Length: 0", f"Content-Length: {len(body)}".encode()
            )
        )
        assert await reader.readuntil(b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
        writer.write(body)
        head, _ = await read_response(reader)
        assert head.startswith(b"HTTP/1.1 200")
    finally:
        writer.close()

    async def gen() -> AsyncIterator[bytes]:
        yield body[:10]
        yield body[10:]

    r = await client.post(OPENAI, content=gen())  # httpx sends this chunked
    assert r.status_code == 200
    assert server.requests[-1].body == body


async def test_malformed_request_line_gets_400(server: MockLLMServer) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"NONSENSE\r\n\r\n")
    assert (await reader.read()).startswith(b"HTTP/1.1 400")
    writer.close()


async def test_requests_are_recorded_and_bounded() -> None:
    async with MockLLMServer(record_limit=5) as srv, httpx.AsyncClient(base_url=srv.base_url) as c:
        await c.post(
            gemini_path("gemini-2.0-flash", True) + "&key=abc",
            json=body_for("gemini", "x"),
            headers={"X-Goog-Api-Key": "k"},
        )
        rec = srv.requests[-1]
        assert rec.method == "POST"
        assert rec.path == "/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse&key=abc"
        assert rec.query == {"alt": "sse", "key": "abc"}
        assert rec.headers["x-goog-api-key"] == "k"
        assert rec.model == "gemini-2.0-flash" and rec.provider == "gemini" and rec.stream
        assert rec.json() == body_for("gemini", "x")
        assert rec.prompt == PROMPT
        for i in range(7):
            await c.post(OPENAI, json={"model": f"m{i}", "messages": []})
        assert [r.model for r in srv.requests] == ["m2", "m3", "m4", "m5", "m6"]
        srv.clear_requests()
        assert srv.requests == []


# --------------------------------------------------------------------------- lifecycle


async def test_aclose_ends_hanging_requests_and_stops_listening() -> None:
    before = asyncio.all_tasks()
    srv = await MockLLMServer({"m": MockModel(faults=["hang"] * 3, latency_ms=10_000)}).start()
    port = srv.port
    async with httpx.AsyncClient(base_url=srv.base_url, timeout=5.0) as c:
        pending = [asyncio.create_task(post(c, "openai", "m")) for _ in range(3)]
        for _ in range(500):
            if len(srv.requests) == 3:
                break
            await asyncio.sleep(0.01)
        start = time.perf_counter()
        await srv.aclose()
        assert time.perf_counter() - start < 1.0
        for task in pending:
            with pytest.raises(httpx.TransportError):
                await task
    assert asyncio.all_tasks() - before == set()
    with pytest.raises(httpx.ConnectError):
        async with httpx.AsyncClient() as c:
            await c.get(f"http://127.0.0.1:{port}/health")
    await srv.aclose()  # idempotent


def test_run_in_thread_serves_sync_clients() -> None:
    with MockLLMServer.run_in_thread({"m": MockModel(reply="threaded")}) as srv:
        url = srv.base_url
        r = httpx.post(url + OPENAI, json=body_for("openai", "m"))
        assert r.json()["choices"][0]["message"]["content"] == "threaded"
        srv.set_model("m", MockModel(reply="changed"))
        r = httpx.post(url + OPENAI, json=body_for("openai", "m"))
        assert r.json()["choices"][0]["message"]["content"] == "changed"
    with pytest.raises(httpx.ConnectError):
        httpx.get(url + "/health")


# --------------------------------------------------------------------------- config / CLI


def test_mock_model_validation() -> None:
    with pytest.raises(ValueError, match="unknown fault kind"):
        MockModel(faults=["boom"])
    with pytest.raises(ValueError, match="sum to at most 1"):
        MockModel(fault_rates={"429": 0.7, "500": 0.7})
    with pytest.raises(TypeError):
        MockModel(faults="429")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown MockModel key"):
        MockModel.from_dict({"reply": "x", "latencyms": 3})
    model = MockModel.from_dict({"tool_calls": [["f", {"a": 1}], {"name": "g", "arguments": {}}]})
    assert model._tools == (("f", {"a": 1}), ("g", {}))


def test_load_config_toml_and_json(tmp_path: Path) -> None:
    toml = tmp_path / "mock.toml"
    toml.write_text(
        'seed = 3\n[default]\nreply = "hi"\n[models."gpt-4o"]\nlatency_ms = 5\nfaults = ["429", "ok"]\n'
        '[models."gpt-4o".fault_rates]\n"500" = 0.1\n'
    )
    cfg = load_config(toml)
    assert cfg["seed"] == 3
    assert cfg["default"].reply == "hi"
    assert cfg["models"]["gpt-4o"].faults == ("429", "ok")
    assert cfg["models"]["gpt-4o"].fault_rates == {"500": 0.1}
    js = tmp_path / "mock.json"
    js.write_text(json.dumps({"models": {"m": {"nope": 1}}}))
    with pytest.raises(ValueError, match=r"models\.m: unknown MockModel key"):
        load_config(js)
    assert main_mock_server(["--config", str(js)]) == 2


def test_cli_subprocess_serves_and_stops_on_sigterm(tmp_path: Path) -> None:
    cfg = tmp_path / "mock.json"
    cfg.write_text(json.dumps({"models": {"m": {"reply": "from config"}}}))
    code = (
        "import sys; from tierwise.testing.mock_server import main_mock_server; "
        "sys.exit(main_mock_server(sys.argv[1:]))"
    )
    with subprocess.Popen(
        [sys.executable, "-c", code, "--port", "0", "--config", str(cfg)], stdout=subprocess.PIPE, text=True
    ) as proc:
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            assert "listening on http://127.0.0.1:" in line
            url = line.rsplit(" ", 1)[1].strip()
            r = httpx.post(url + OPENAI, json=body_for("openai", "m"))
            assert r.json()["choices"][0]["message"]["content"] == "from config"
            assert httpx.post(url + OPENAI, json=body_for("openai", "other")).status_code == 404
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=10) == 0


async def test_reply_callable_error_is_a_visible_500() -> None:
    def broken(req: Any) -> str:
        raise RuntimeError("bug in test reply")

    async with (
        MockLLMServer({"m": MockModel(reply=broken)}) as srv,
        httpx.AsyncClient(base_url=srv.base_url) as c,
    ):
        r = await post(c, "openai", "m")
        assert r.status_code == 500
        assert "bug in test reply" in r.json()["error"]["message"]
