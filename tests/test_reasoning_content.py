"""Reasoning content across providers, over sockets: the mock's ``thinking`` knob sends
it in each format (DeepSeek ``reasoning_content``, Anthropic signed thinking blocks,
Gemini thought parts and ``thoughtSignature``); tierwise keeps it out of
``Response.text``, exposes it as ``Response.reasoning`` and sends back what the API
requires, unchanged (asserted at the mock's request log)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

import tierwise as tw
from tierwise.errors import BadRequestError
from tierwise.providers import Anthropic, Gemini, OpenAI
from tierwise.providers.base import Provider
from tierwise.testing import MockLLMServer, MockModel
from tierwise.types import Done, Message, ReasoningDelta, Request, Response, Tool, ToolCall

THINKING = "The user wants the weather; I should call the tool for each city."
WEATHER = Tool(
    "get_weather", "Weather for a city", {"type": "object", "properties": {"city": {"type": "string"}}}
)
CALLS = [("get_weather", {"city": "Paris"}), ("get_weather", {"city": "Rome"})]


def _provider(kind: str, server: MockLLMServer) -> Provider:
    if kind == "anthropic":
        return Anthropic(api_key="sk-ant-test", base_url=server.base_url)
    if kind == "gemini":
        return Gemini(api_key="g-test", base_url=server.base_url + "/v1beta")
    return OpenAI(api_key="sk-test", base_url=server.base_url + "/v1", compat="deepseek")


async def _both(provider: Provider, model: str, request: Request) -> tuple[Response, Response, list[Any]]:
    whole = await provider.complete(model, request)
    events = [e async for e in provider.stream(model, request)]
    done = events[-1]
    assert isinstance(done, Done)
    return whole, done.response, events


@pytest.mark.parametrize("kind", ["openai", "anthropic", "gemini"])
async def test_reasoning_is_kept_out_of_text_in_every_format(kind: str) -> None:
    async with MockLLMServer({"m": MockModel(reply="It is sunny.", thinking=THINKING)}) as server:
        provider = _provider(kind, server)
        try:
            whole, streamed, events = await _both(
                provider, "m", Request.from_prompt("Weather?", max_tokens=500)
            )
        finally:
            await provider.aclose()
    assert whole.text == "It is sunny." and whole.reasoning == THINKING
    assert streamed == whole
    assert "".join(e.text for e in events if isinstance(e, ReasoningDelta)) == THINKING


async def test_anthropic_signed_thinking_goes_back_unchanged_with_tool_results() -> None:
    async with MockLLMServer({"claude": MockModel(thinking=THINKING, tool_calls=CALLS)}) as server:
        provider = _provider("anthropic", server)
        try:
            request = Request.from_prompt("Weather?", tools=[WEATHER], thinking_budget=1024, max_tokens=4000)
            first, streamed, _ = await _both(provider, "claude", request)
            assert streamed == first
            block = first.reasoning_items[0]
            assert block["type"] == "thinking" and block["thinking"] == THINKING and block["signature"]
            history = [*request.messages, first.to_message()]
            history += [Message("tool", "sunny", tool_call_id=c.id) for c in first.tool_calls]
            server.set_model("claude", MockModel(reply="Sunny in both."))
            follow = Request(messages=history, tools=[WEATHER], max_tokens=4000, thinking_budget=1024)
            second = await provider.complete("claude", follow)
            # Without the signed block the (strict) mock refuses the turn, as the API does.
            bare = [*history[:1], Message("assistant", "", tool_calls=first.tool_calls), *history[2:]]
            with pytest.raises(BadRequestError, match="must start with a thinking block"):
                await provider.complete(
                    "claude", Request(messages=bare, tools=[WEATHER], max_tokens=4000, thinking_budget=1024)
                )
        finally:
            await provider.aclose()
    assert second.text == "Sunny in both."
    sent = server.requests[-2].json()["messages"]
    assert sent[1]["role"] == "assistant"
    assert sent[1]["content"][0] == block  # byte-identical, first in the turn
    assert [b["type"] for b in sent[1]["content"]] == ["thinking", "tool_use", "tool_use"]
    assert [b["type"] for b in sent[2]["content"]] == ["tool_result", "tool_result"]


async def test_anthropic_skips_reasoning_items_of_other_providers() -> None:
    async with MockLLMServer({"claude": MockModel(reply="ok")}) as server:
        provider = _provider("anthropic", server)
        foreign = {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "gAAA"}
        turn = Message("assistant", "hi", reasoning_items=[foreign])
        try:
            await provider.complete(
                "claude", Request(messages=[Message("user", "a"), turn, Message("user", "b")])
            )
        finally:
            await provider.aclose()
    assert server.requests[-1].json()["messages"][1]["content"] == "hi"  # unchanged: no foreign item


async def test_gemini_thought_signatures_round_trip_on_tool_calls() -> None:
    async with MockLLMServer({"gemini-3-pro": MockModel(thinking=THINKING, tool_calls=CALLS)}) as server:
        provider = _provider("gemini", server)
        try:
            request = Request.from_prompt("Weather?", tools=[WEATHER])
            first, streamed, _ = await _both(provider, "gemini-3-pro", request)
            assert streamed == first
            signature = first.tool_calls[0].thought_signature
            assert signature and first.tool_calls[1].thought_signature is None  # Gemini signs the first call
            history = [*request.messages, first.to_message()]
            history += [Message("tool", "sunny", tool_call_id=c.id, name=c.name) for c in first.tool_calls]
            server.set_model("gemini-3-pro", MockModel(reply="Sunny."))
            await provider.complete("gemini-3-pro", Request(messages=history, tools=[WEATHER]))
            # A turn with no known signature (another provider wrote it): the stand-in, on every call.
            unsigned = Message("assistant", "", tool_calls=[ToolCall("c1", "get_weather", {"city": "Oslo"})])
            await provider.complete(
                "gemini-3-pro",
                Request(
                    messages=[Message("user", "x"), unsigned, Message("tool", "rain", tool_call_id="c1")]
                ),
            )
        finally:
            await provider.aclose()
    replayed = server.requests[-2].json()["contents"][1]["parts"]
    assert replayed[0]["thoughtSignature"] == signature
    assert "thoughtSignature" not in replayed[1]  # replayed exactly as received
    assert not any(p.get("thought") for p in replayed)  # the thought text itself is not sent back
    stand_in = server.requests[-1].json()["contents"][1]["parts"][0]
    assert stand_in["thoughtSignature"] == "skip_thought_signature_validator"


async def test_response_to_message_round_trips_through_the_cache_dict() -> None:
    from tierwise._serde import response_from_dict, response_to_dict

    resp = Response(
        "t",
        "m",
        "p",
        tool_calls=[ToolCall("c", "f", {"a": 1}, thought_signature="sig")],
        reasoning_items=[{"type": "thinking", "thinking": "x", "signature": "s"}],
        response_id="resp_1",
    )
    back = response_from_dict(response_to_dict(resp))
    assert back == resp and back.response_id == "resp_1"
    assert back.tool_calls[0].thought_signature == "sig"
    message = back.to_message()
    assert message.role == "assistant" and message.reasoning_items == resp.reasoning_items
    assert isinstance(tw.Message, type)


async def test_deepseek_reasoning_content_goes_back_with_its_tool_calls_only_to_its_server() -> None:
    async with MockLLMServer({"ds": MockModel(thinking=THINKING, tool_calls=CALLS[:1])}) as server:
        deepseek = _provider("openai", server)
        plain = OpenAI(api_key="sk-test", base_url=server.base_url + "/v1")  # OpenAI's own row
        try:
            request = Request.from_prompt("Weather?", tools=[WEATHER])
            first, streamed, _ = await _both(deepseek, "ds", request)
            assert streamed == first
            assert first.text == "" and first.reasoning == THINKING
            history = [*request.messages, first.to_message(), Message("tool", "sunny", tool_call_id="x")]
            history[-1].tool_call_id = first.tool_calls[0].id
            server.set_model("ds", MockModel(reply="Sunny."))
            await deepseek.complete("ds", Request(messages=history, tools=[WEATHER]))
            to_deepseek = server.requests[-1].json()["messages"][1]
            await plain.complete("ds", Request(messages=history, tools=[WEATHER]))
            to_openai = server.requests[-1].json()["messages"][1]
        finally:
            await deepseek.aclose()
            await plain.aclose()
    assert to_deepseek["reasoning_content"] == THINKING and to_deepseek["tool_calls"]
    assert "reasoning_content" not in to_openai  # OpenAI rejects unknown message fields


async def test_mock_rejects_a_gemini_3_call_without_its_signature() -> None:
    history = {
        "contents": [
            {"role": "user", "parts": [{"text": "Weather?"}]},
            {
                "role": "model",
                "parts": [{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}],
            },
            {"role": "user", "parts": [{"functionResponse": {"name": "get_weather", "response": {"t": 20}}}]},
        ]
    }
    async with MockLLMServer() as server, httpx.AsyncClient(base_url=server.base_url) as client:
        unsigned = await client.post("/v1beta/models/gemini-3-pro:generateContent", json=history)
        older = await client.post("/v1beta/models/gemini-2.5-flash:generateContent", json=history)
    assert unsigned.status_code == 400 and "thought_signature" in unsigned.json()["error"]["message"]
    assert older.status_code == 200  # only Gemini 3 validates signatures
