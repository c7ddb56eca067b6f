"""providers.OpenAI over the Responses API (``api="responses"``).

Recorded-shape fixtures (tests/fixtures/openai/responses_*) go through
``httpx.MockTransport``; the multi-turn, streaming and cost checks run over real
sockets against ``MockLLMServer``'s ``/v1/responses``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

import tierwise as tw
from tierwise.errors import BadRequestError, ConfigError, ProtocolError, RateLimitError, ServerError
from tierwise.providers import OpenAI
from tierwise.testing import MockLLMServer, MockModel
from tierwise.testing._mock_responses import encrypted_reasoning
from tierwise.types import Done, ReasoningDelta, Request, Response, TextDelta, Tool, ToolCallDelta

FIX = Path(__file__).parent / "fixtures" / "openai"
KEY = "sk-test-responses-0123456789abcdef"
WEATHER = Tool(
    "get_weather",
    "Current weather for a city",
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)
THINKING = "First find the city, then call the weather tool."


def _transport(body: bytes, ctype: str, seen: list[httpx.Request]) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=body, headers={"content-type": ctype, "x-request-id": "req_fx"})

    return httpx.MockTransport(handler)


def _fixture_provider(name: str, seen: list[httpx.Request]) -> OpenAI:
    data = (FIX / name).read_bytes()
    ctype = "text/event-stream" if name.endswith(".sse") else "application/json"
    client = httpx.AsyncClient(transport=_transport(data, ctype, seen))
    return OpenAI(api_key=KEY, base_url="https://api.openai.com/v1", http_client=client, api="responses")


async def _streamed(provider: OpenAI, model: str, request: Request) -> tuple[list[Any], Response]:
    events = [e async for e in provider.stream(model, request)]
    done = events[-1]
    assert isinstance(done, Done)
    return events[:-1], done.response


# --------------------------------------------------------------------------- fixtures


async def test_recorded_reply_with_reasoning_and_parallel_calls() -> None:
    seen: list[httpx.Request] = []
    provider = _fixture_provider("responses_tools_reasoning.json", seen)
    resp = await provider.complete(
        "o4-mini", Request.from_prompt("Weather in Paris and Tokyo?", tools=[WEATHER])
    )
    assert seen[0].url.path == "/v1/responses"
    assert resp.text == ""
    assert resp.finish_reason == "tool_calls"
    assert [(c.name, c.arguments) for c in resp.tool_calls] == [
        ("get_weather", {"city": "Paris", "unit": "c"}),
        ("get_weather", {"city": "Tokyo", "unit": "c"}),
    ]
    assert resp.tool_calls[0].id == "call_Qm3X9pLr2Tz8VbN1cK4dE7fG"  # call_id, not the fc_ item id
    assert resp.reasoning == (
        "**Checking two cities**\n\nThe user wants weather for Paris and Tokyo.\n\n"
        "I will call get_weather twice in parallel."
    )
    recorded = json.loads((FIX / "responses_tools_reasoning.json").read_bytes())["output"][0]
    assert resp.reasoning_items == [recorded]
    assert resp.usage.input_tokens == 1843
    assert resp.usage.cached_input_tokens == 1536
    assert resp.usage.output_tokens == 412
    assert resp.usage.reasoning_tokens == 320
    assert resp.model == "o4-mini-2025-04-16"
    assert resp.response_id == "resp_68de42f5a4b08190b1c2d3e4f5a6b7c8"


async def test_recorded_stream_equals_recorded_reply() -> None:
    whole = await _fixture_provider("responses_tools_reasoning.json", []).complete(
        "o4-mini", Request.from_prompt("x", tools=[WEATHER])
    )
    events, streamed = await _streamed(
        _fixture_provider("responses_tools_reasoning.sse", []),
        "o4-mini",
        Request.from_prompt("x", tools=[WEATHER]),
    )
    assert streamed == whole
    # The complete item from output_item.done, not the partial one of output_item.added.
    assert streamed.reasoning_items[0]["encrypted_content"] == whole.reasoning_items[0]["encrypted_content"]
    kinds = {type(e) for e in events}
    assert kinds == {ReasoningDelta, ToolCallDelta}
    assert "".join(e.text for e in events if isinstance(e, ReasoningDelta)) == whole.reasoning
    assert "".join(e.arguments for e in events if isinstance(e, ToolCallDelta) and e.index == 1) == (
        '{"city":"Tokyo","unit":"c"}'
    )


async def test_recorded_text_and_incomplete_replies() -> None:
    resp = await _fixture_provider("responses_text.json", []).complete("gpt-4.1", Request.from_prompt("x"))
    assert (resp.text, resp.finish_reason, resp.reasoning, resp.reasoning_items) == (
        "The capital of France is Paris.",
        "stop",
        "",
        [],
    )
    cut = await _fixture_provider("responses_incomplete.json", []).complete(
        "gpt-4.1", Request.from_prompt("x")
    )
    assert (cut.text, cut.finish_reason, cut.raw_finish_reason) == (
        "The capital of",
        "length",
        "incomplete:max_output_tokens",
    )


async def test_response_failed_event_is_a_typed_error() -> None:
    provider = _fixture_provider("responses_failed.sse", [])
    with pytest.raises(ServerError, match="failed to generate") as info:
        await _streamed(provider, "gpt-4.1", Request.from_prompt("x"))
    assert info.value.retryable


async def test_request_body_translation() -> None:
    seen: list[httpx.Request] = []
    provider = _fixture_provider("responses_text.json", seen)
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    request = Request(
        messages=[
            tw.Message("system", "Be brief."),
            tw.Message("user", [{"type": "text", "text": "Where?"}]),
        ],
        max_tokens=50,
        tools=[WEATHER],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        parallel_tool_calls=False,
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "place", "schema": schema, "strict": True},
        },
        reasoning_effort="low",
    )
    await provider.complete("o4-mini", request)
    body = json.loads(seen[0].content)
    assert body["input"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "input_text", "text": "Where?"}]},
    ]
    assert body["max_output_tokens"] == 50
    # strict: false so an ordinary JSON schema means what it means on Chat Completions.
    assert body["tools"] == [
        {
            "type": "function",
            "name": "get_weather",
            "parameters": WEATHER.parameters,
            "strict": False,
            "description": "Current weather for a city",
        }
    ]
    assert body["tool_choice"] == {"type": "function", "name": "get_weather"}
    assert body["parallel_tool_calls"] is False
    assert body["text"] == {
        "format": {"type": "json_schema", "name": "place", "schema": schema, "strict": True}
    }
    assert body["reasoning"] == {"effort": "low", "summary": "auto"}
    assert body["store"] is False and body["include"] == ["reasoning.encrypted_content"]
    assert "messages" not in body and "stream" not in body


async def test_stop_sequences_are_refused_before_sending() -> None:
    seen: list[httpx.Request] = []
    provider = _fixture_provider("responses_text.json", seen)
    with pytest.raises(BadRequestError, match="no stop sequences"):
        await provider.complete("gpt-4.1", Request.from_prompt("x", stop=["\n"]))
    assert seen == []


def test_api_value_is_checked() -> None:
    with pytest.raises(ConfigError, match="api must be"):
        OpenAI(api_key=KEY, api="assistants")  # type: ignore[arg-type]


async def test_only_listed_models_use_the_responses_api() -> None:
    seen: list[httpx.Request] = []
    client = httpx.AsyncClient(
        transport=_transport((FIX / "chat_text.json").read_bytes(), "application/json", seen)
    )
    provider = OpenAI(api_key=KEY, http_client=client, responses_models={"o4-mini"})
    assert provider.uses_responses("o4-mini") and not provider.uses_responses("gpt-4.1")
    await provider.complete("gpt-4.1", Request.from_prompt("x"))
    assert seen[0].url.path == "/v1/chat/completions"


# --------------------------------------------------------------------------- over sockets


def _thinker(**kw: Any) -> MockModel:
    return MockModel(
        thinking=THINKING,
        tool_calls=[("get_weather", {"city": "Paris"}), ("get_weather", {"city": "Oslo"})],
        input_tokens=1000,
        cached_tokens=400,
        output_tokens=50,
        reasoning_tokens=200,
        **kw,
    )


async def test_multi_turn_tool_calls_send_the_encrypted_reasoning_back_unchanged() -> None:
    async with MockLLMServer({"o4-mini": _thinker()}) as server:
        provider = OpenAI(api_key=KEY, base_url=server.base_url + "/v1", api="responses")
        try:
            first = await provider.complete("o4-mini", Request.from_prompt("Weather?", tools=[WEATHER]))
            assert first.finish_reason == "tool_calls" and len(first.tool_calls) == 2
            assert first.reasoning == THINKING and first.text == ""
            item = first.reasoning_items[0]
            assert item["encrypted_content"] == encrypted_reasoning("o4-mini", THINKING)

            history = [*Request.from_prompt("Weather?").messages, first.to_message()]
            history += [
                tw.Message("tool", f"sunny in {c.arguments['city']}", tool_call_id=c.id)
                for c in first.tool_calls
            ]
            server.set_model("o4-mini", MockModel(reply="Sunny in both."))
            second = await provider.complete("o4-mini", Request(messages=history, tools=[WEATHER]))
            assert second.text == "Sunny in both."
        finally:
            await provider.aclose()
        sent = server.requests[-1].json()["input"]
    assert server.requests[-1].path == "/v1/responses"
    # The reasoning item comes back byte-identical, before the calls it led to.
    assert sent[1] == item
    assert [i["type"] for i in sent[1:]] == [
        "reasoning",
        "function_call",
        "function_call",
        "function_call_output",
        "function_call_output",
    ]
    assert [i["call_id"] for i in sent[2:4]] == [c.id for c in first.tool_calls]
    assert [i["call_id"] for i in sent[4:]] == [c.id for c in first.tool_calls]
    assert sent[4]["output"] == "sunny in Paris"


async def test_streamed_and_non_streamed_give_equal_responses_over_sockets() -> None:
    async with MockLLMServer(
        {"o4-mini": _thinker(), "gpt-4.1": MockModel(reply="Paris is the capital.")}
    ) as server:
        provider = OpenAI(api_key=KEY, base_url=server.base_url + "/v1", api="responses")
        try:
            for model in ("o4-mini", "gpt-4.1"):
                request = Request.from_prompt("Weather?", tools=[WEATHER])
                whole = await provider.complete(model, request)
                events, streamed = await _streamed(provider, model, request)
                assert streamed == whole
                assert streamed.reasoning_items == whole.reasoning_items
            assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "Paris is the capital."
        finally:
            await provider.aclose()
    assert [r.stream for r in server.requests] == [False, True, False, True]


async def test_cost_includes_reasoning_and_cached_tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    async with MockLLMServer({"o4-mini": _thinker()}) as server:
        config = {
            "providers": {
                "oa": {"type": "openai", "base_url": server.base_url + "/v1", "api_key_env": "TW_RESP_KEY"}
            },
            "models": {
                "thinker": {
                    "provider": "oa",
                    "model": "o4-mini",
                    "api": "responses",
                    "input_price": 1.0,
                    "cached_input_price": 0.25,
                    "output_price": 4.0,
                }
            },
            "strategies": {"default": {"type": "single", "target": "thinker"}},
        }
        monkeypatch.setenv("TW_RESP_KEY", KEY)
        async with tw.Orchestrator.from_config(config) as orch:
            resp = await orch.run(Request.from_prompt("Weather?", tools=[WEATHER]))
    assert server.requests[0].path == "/v1/responses"
    assert resp.usage.output_tokens == 250 and resp.usage.reasoning_tokens == 200
    # 600 uncached x $1 + 400 cached x $0.25 + (50 visible + 200 reasoning) x $4, per 1M tokens.
    assert resp.cost_usd == pytest.approx((600 * 1.0 + 400 * 0.25 + 250 * 4.0) / 1e6)


async def test_errors_are_mapped_like_chat_completions() -> None:
    async with MockLLMServer(
        {"m": MockModel(faults=["429", "inband_error", "truncate"], thinking="t")}
    ) as server:
        provider = OpenAI(api_key=KEY, base_url=server.base_url + "/v1", api="responses")
        try:
            with pytest.raises(RateLimitError) as info:
                await provider.complete("m", Request.from_prompt("x"))
            assert info.value.retry_after == pytest.approx(1.0)
            with pytest.raises(ServerError):
                await _streamed(provider, "m", Request.from_prompt("x"))
            with pytest.raises(ProtocolError, match="truncated"):
                await _streamed(provider, "m", Request.from_prompt("x"))
        finally:
            await provider.aclose()


async def test_mock_rejects_a_body_without_input() -> None:
    async with MockLLMServer() as server, httpx.AsyncClient() as client:
        reply = await client.post(server.base_url + "/v1/responses", json={"model": "m"})
    assert reply.status_code == 400
    assert reply.json()["error"]["message"] == "Missing required parameter: 'input'."


def test_config_rejects_responses_on_a_non_openai_provider() -> None:
    config = {
        "models": {"c": {"provider": "anthropic", "model": "claude-x", "api": "responses"}},
        "strategies": {"default": {"type": "single", "target": "c"}},
    }
    with pytest.raises(ConfigError, match="OpenAI-type provider"):
        tw.Orchestrator.from_config(config)


async def test_provider_batch_of_a_responses_deployment_uses_the_responses_endpoint(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("TW_RESP_KEY", KEY)
    async with MockLLMServer({"o4-mini": MockModel(thinking=THINKING, reply="done")}) as server:
        server.batches.complete_after_s = 0.0
        config = {
            "providers": {
                "oa": {
                    "type": "openai",
                    "compat": "openai",
                    "base_url": server.base_url + "/v1",
                    "api_key_env": "TW_RESP_KEY",
                }
            },
            "models": {"thinker": {"provider": "oa", "model": "o4-mini", "api": "responses"}},
            "strategies": {"default": {"type": "single", "target": "thinker"}},
        }
        async with tw.Orchestrator.from_config(config) as orch:
            results = await orch.batch(
                ["a", "b"], output=tmp_path / "o.jsonl", mode="provider", poll_interval_s=0.001
            )
        upload = next(r for r in server.requests if r.path == "/v1/files")
        created = next(r for r in server.requests if r.path == "/v1/batches" and r.method == "POST")
    assert [r.response.text if r.response else None for r in results] == ["done", "done"]
    assert results[0].response is not None and results[0].response.reasoning == THINKING
    assert b'"url":"/v1/responses"' in upload.body and b'"input":' in upload.body
    assert created.json()["endpoint"] == "/v1/responses"
