"""LiteLLM-proxy compatibility over a real loopback socket: the gateway's cost and
call-id headers on streamed replies (the JSON case lives in test_hostile_replies)."""

from __future__ import annotations

import json

import pytest

from test_hostile_replies import FIXTURES, JSON, SSE, make, openai_body, raw_server
from tierwise.types import Done, Request

LITELLM = {"x-litellm-response-cost": "0.00125", "x-litellm-call-id": "litellm-call-7"}


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
async def test_litellm_cost_and_call_id_on_a_stream(kind: str) -> None:
    name = "chat_text.sse" if kind == "openai" else "stream_text.sse"
    body = (FIXTURES / kind / name).read_bytes()
    async with raw_server(lambda _: (200, {**SSE, **LITELLM}, body)) as base, make(kind, base) as provider:
        out = [e async for e in provider.stream("m", Request.from_prompt("hi", max_tokens=10))]
    final = out[-1]
    assert isinstance(final, Done)
    assert final.response.usage.reported_cost_usd == pytest.approx(0.00125)
    assert final.response.cost_usd == pytest.approx(0.00125)
    assert final.response.request_id == "litellm-call-7"


@pytest.mark.parametrize("cost", ["inf", "nan", "-1", "1e999", "free", ""])
async def test_a_nonsense_litellm_cost_is_unknown(cost: str) -> None:
    headers = {**JSON, "x-litellm-response-cost": cost}
    async with raw_server(lambda _: (200, headers, openai_body())) as base, make("openai", base) as provider:
        resp = await provider.complete("m", Request.from_prompt("hi"))
    assert resp.usage.reported_cost_usd is None and resp.cost_usd is None


async def test_x_request_id_is_the_request_id_on_anthropic_format() -> None:
    body = (FIXTURES / "anthropic" / "text.json").read_bytes()
    headers = {**JSON, "x-request-id": "gw-req-1"}
    async with raw_server(lambda _: (200, headers, body)) as base, make("anthropic", base) as provider:
        resp = await provider.complete("m", Request.from_prompt("hi", max_tokens=10))
    assert resp.request_id == "gw-req-1"


async def test_the_providers_own_cost_wins_over_the_header() -> None:
    usage = json.dumps({"prompt_tokens": 5, "completion_tokens": 2, "cost": 0.5})
    headers = {**JSON, "x-litellm-response-cost": "0.9"}
    async with raw_server(lambda _: (200, headers, openai_body(usage))) as base, make("openai", base) as p:
        resp = await p.complete("m", Request.from_prompt("hi"))
    assert resp.usage.reported_cost_usd == pytest.approx(0.5) and resp.cost_usd == pytest.approx(0.5)
