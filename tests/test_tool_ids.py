"""Tool-call ids issued by one provider reach another in a form it accepts.

A tool conversation started on one provider continues on another after a fallback
or a routing decision, carrying the first one's ids. The loopback mock holds each
wire to its real API's rule (OpenAI: at most 40 characters; its Responses API: 64;
Mistral's models: exactly 9 alphanumerics; Anthropic: ``[a-zA-Z0-9_-]+``) and
answers 400 as they do; each adapter must send ids that pass, with every tool
result still naming its call.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from tierwise.errors import BadRequestError
from tierwise.providers import Anthropic, OpenAI
from tierwise.providers._tool_ids import fit_tool_id
from tierwise.providers.openai import OpenAICompat
from tierwise.testing import MockLLMServer, MockModel
from tierwise.types import Message, Request, ToolCall

LONG = "call_" + "0123456789abcdef" * 3  # 53 characters: a client's UUID-style id
KIMI = "functions.get_weather:0"  # ids some OpenAI-compatible servers issue
GEMINI = "call_0"  # what tierwise synthesizes for Gemini, which sends none


def conversation(call_id: str) -> Request:
    return Request(
        messages=[
            Message("user", "Weather in Paris?"),
            Message("assistant", "", tool_calls=[ToolCall(call_id, "get_weather", {"city": "Paris"})]),
            Message("tool", '{"temp": 21}', tool_call_id=call_id, name="get_weather"),
        ]
    )


def test_ids_that_fit_are_kept_and_the_others_mapped_stably() -> None:
    for rule in ("max40", "max64", "alnum9", "anthropic", ""):
        assert fit_tool_id("abcDEF123", rule) == "abcDEF123"  # fits every rule
    assert fit_tool_id(LONG, "") == LONG
    short = fit_tool_id(LONG, "max40")
    assert (
        len(short) <= 40 and short == fit_tool_id(LONG, "max40") and short != fit_tool_id(LONG + "x", "max40")
    )
    assert fit_tool_id(LONG, "max64") == LONG and len(fit_tool_id("c" * 65, "max64")) <= 64
    for raw in (GEMINI, LONG, KIMI, "toolu_01A09q90qw90lq917835lq9"):
        nine = fit_tool_id(raw, "alnum9")
        assert re.fullmatch(r"[A-Za-z0-9]{9}", nine) and nine == fit_tool_id(raw, "alnum9")
    assert fit_tool_id(KIMI, "anthropic") != KIMI
    assert re.fullmatch(r"[A-Za-z0-9_-]+", fit_tool_id(KIMI, "anthropic"))
    assert fit_tool_id("toolu_01A09q90qw90lq917835lq9", "anthropic") == "toolu_01A09q90qw90lq917835lq9"
    with pytest.raises(ValueError, match="unknown tool-id rule"):
        fit_tool_id("x", "max12")


def _sent_ids(body: dict[str, Any]) -> tuple[str, str]:
    """(the assistant turn's call id, the tool result's) as a Chat Completions server saw them."""
    assistant = next(m for m in body["messages"] if m["role"] == "assistant")
    tool = next(m for m in body["messages"] if m["role"] == "tool")
    return assistant["tool_calls"][0]["id"], tool["tool_call_id"]


@pytest.mark.parametrize(
    ("compat", "model", "call_id", "pattern"),
    [
        ("openai", "gpt-4o", LONG, r".{1,40}"),
        ("gateway", "gpt-4o", LONG, r".{1,40}"),
        ("mistral", "mistral-small-latest", GEMINI, r"[A-Za-z0-9]{9}"),
        ("mistral", "mistral-small-latest", LONG, r"[A-Za-z0-9]{9}"),
        ("openrouter", "mistral-small-latest", KIMI, r"[A-Za-z0-9]{9}"),
    ],
)
async def test_chat_completions_servers_get_ids_they_accept(
    compat: str, model: str, call_id: str, pattern: str
) -> None:
    async with MockLLMServer({model: MockModel(reply="21 degrees")}) as server:
        provider = OpenAI(api_key="sk-test", base_url=server.base_url + "/v1", compat=compat)
        try:
            r = await provider.complete(model, conversation(call_id))
        finally:
            await provider.aclose()
        sent, answered = _sent_ids(server.requests[-1].json())
    assert r.text == "21 degrees"
    assert sent == answered and re.fullmatch(pattern, sent)


async def test_the_mock_refuses_what_the_real_apis_refuse() -> None:
    """Without the mapping (a row with no rule), the mock answers 400 as OpenAI and Mistral do."""
    models = {"gpt-4o": MockModel(), "mistral-small-latest": MockModel()}
    async with MockLLMServer(models) as server:
        plain = OpenAI(api_key="sk-test", base_url=server.base_url + "/v1", compat=OpenAICompat("plain"))
        try:
            with pytest.raises(BadRequestError, match="maximum length 40"):
                await plain.complete("gpt-4o", conversation(LONG))
            with pytest.raises(BadRequestError, match="length of 9"):
                await plain.complete("mistral-small-latest", conversation(GEMINI))
        finally:
            await plain.aclose()


async def test_anthropic_and_the_responses_api_get_ids_they_accept() -> None:
    models = {"claude-x": MockModel(reply="ok"), "gpt-5": MockModel(reply="ok")}
    async with MockLLMServer(models) as server:
        anthropic = Anthropic(api_key="sk-ant-test", base_url=server.base_url)
        responses = OpenAI(api_key="sk-test", base_url=server.base_url + "/v1", api="responses")
        try:
            assert (await anthropic.complete("claude-x", conversation(KIMI))).text == "ok"
            blocks = [
                b for m in server.requests[-1].json()["messages"] for b in m["content"] if isinstance(b, dict)
            ]
            use = next(b for b in blocks if b["type"] == "tool_use")
            result = next(b for b in blocks if b["type"] == "tool_result")
            assert use["id"] == result["tool_use_id"] and re.fullmatch(r"[A-Za-z0-9_-]+", use["id"])
            long = "call_" + "x" * 80
            assert (await responses.complete("gpt-5", conversation(long))).text == "ok"
            items = server.requests[-1].json()["input"]
            ids = [i["call_id"] for i in items if i.get("type") in ("function_call", "function_call_output")]
            assert len(ids) == 2 and ids[0] == ids[1] and len(ids[0]) <= 64
        finally:
            await anthropic.aclose()
            await responses.aclose()
