"""Token counting: ``provider.count_tokens`` over the providers' counting endpoints (on
``MockLLMServer``'s), and the deployment option ``exact_token_counts`` that makes the
rate limiter and budget reserve the counted prompt instead of the heuristic estimate."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

import tierwise as tw
from tierwise.errors import AllTargetsFailed, BudgetExceeded, ConfigError, NotFoundError
from tierwise.providers import Anthropic, Gemini, OpenAI
from tierwise.providers.base import Provider
from tierwise.testing import MockLLMServer, MockModel
from tierwise.types import Request, Tool

REQUEST = Request.from_prompt("count these words for me " * 20, system="Be exact.", max_tokens=64)
TOOL = Tool("lookup", "Look a thing up", {"type": "object", "properties": {"q": {"type": "string"}}})


def _provider(kind: str, server: MockLLMServer) -> Provider:
    if kind == "anthropic":
        return Anthropic(api_key="sk-ant-test", base_url=server.base_url)
    if kind == "gemini":
        return Gemini(api_key="g-test", base_url=server.base_url + "/v1beta")
    return OpenAI(api_key="sk-test", base_url=server.base_url + "/v1", api="responses")


@pytest.mark.parametrize(
    ("kind", "path"),
    [
        ("anthropic", "/v1/messages/count_tokens"),
        ("gemini", "/v1beta/models/m:countTokens"),
        ("openai", "/v1/responses/input_tokens"),
    ],
)
async def test_count_matches_the_input_the_model_then_reports(kind: str, path: str) -> None:
    async with MockLLMServer({"m": MockModel()}) as server:
        provider = _provider(kind, server)
        try:
            counted = await provider.count_tokens("m", REQUEST)
            reply = await provider.complete("m", REQUEST)
        finally:
            await provider.aclose()
    assert counted == reply.usage.input_tokens > 100
    sent = server.requests[0]
    assert sent.path == path
    body = sent.json()
    # Only the fields the counting endpoint takes: the real APIs reject the rest.
    assert not {"max_tokens", "max_output_tokens", "stream", "store", "include"} & set(body)
    if kind == "gemini":
        inner = body["generateContentRequest"]
        assert inner["model"] == "models/m"
        assert inner["systemInstruction"] == {"parts": [{"text": "Be exact."}]}  # counted too
    assert server.stats["m"].token_counts == 1 and server.stats["m"].requests == 1


async def test_count_uses_the_models_fixed_input_size() -> None:
    async with MockLLMServer({"m": MockModel(input_tokens=4321)}) as server:
        provider = _provider("anthropic", server)
        try:
            assert await provider.count_tokens("m", Request.from_prompt("hi", tools=[TOOL])) == 4321
        finally:
            await provider.aclose()
    assert server.requests[0].json()["tools"][0]["name"] == "lookup"


async def test_chat_completions_has_no_count_endpoint_and_sends_nothing() -> None:
    async with MockLLMServer() as server:
        provider = OpenAI(api_key="sk-test", base_url=server.base_url + "/v1")
        try:
            assert not provider.supports_token_counting("gpt-4.1")
            with pytest.raises(NotFoundError, match="no token-counting endpoint"):
                await provider.count_tokens("gpt-4.1", REQUEST)
        finally:
            await provider.aclose()
    assert server.requests == []


async def test_mock_counting_endpoints_validate_like_the_real_apis() -> None:
    async with MockLLMServer() as server, httpx.AsyncClient(base_url=server.base_url) as client:
        extra = await client.post(
            "/v1/messages/count_tokens",
            json={"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "x"}]},
        )
        empty = await client.post("/v1beta/models/m:countTokens", json={})
        stream = await client.post(
            "/v1/responses/input_tokens", json={"model": "m", "input": "x", "stream": True}
        )
    assert extra.status_code == 400 and extra.json()["error"]["message"] == (
        "max_tokens: Extra inputs are not permitted"
    )
    assert extra.json()["type"] == "error"  # Anthropic's envelope
    assert empty.status_code == 400 and empty.json()["error"]["status"] == "INVALID_ARGUMENT"
    assert stream.status_code == 400 and "stream" in stream.json()["error"]["message"]


def _config(
    server: MockLLMServer, *, exact: bool, budget_usd: float | None = None, **model: Any
) -> dict[str, Any]:
    config: dict[str, Any] = {
        "providers": {
            "ant": {"type": "anthropic", "base_url": server.base_url, "api_key_env": "TW_COUNT_KEY"}
        },
        "models": {
            "claude": {
                "provider": "ant",
                "model": "claude-counted",
                "input_price": 1.0,
                "output_price": 1.0,
                "exact_token_counts": exact,
                **model,
            }
        },
        "strategies": {"default": {"type": "single", "target": "claude"}},
        "retry": {"max_attempts": 1},
    }
    if budget_usd is not None:
        config["budget"] = {"limits": [{"limit_usd": budget_usd, "period": "total"}]}
    return config


async def test_exact_counts_make_the_budget_reserve_the_real_prompt(monkeypatch: pytest.MonkeyPatch) -> None:
    """A short text whose real size is huge (think images or documents): the heuristic
    reserves a few cents' worth and the call goes through; the exact count reserves the
    real 900k-token prompt, which does not fit the $0.50 budget, so nothing is called."""
    monkeypatch.setenv("TW_COUNT_KEY", "sk-ant-test")
    big = MockModel(input_tokens=900_000, output_tokens=5)
    prompt = Request.from_prompt("summarise the attached", max_tokens=10)
    async with MockLLMServer({"claude-counted": big}) as server:
        async with tw.Orchestrator.from_config(_config(server, exact=False, budget_usd=0.5)) as orch:
            await orch.run(prompt)
        assert [r.path for r in server.requests] == ["/v1/messages"]
        server.clear_requests()
        async with tw.Orchestrator.from_config(_config(server, exact=True, budget_usd=0.5)) as orch:
            with pytest.raises((BudgetExceeded, AllTargetsFailed)) as info:
                await orch.run(prompt)
    budget_errors = [info.value] if isinstance(info.value, BudgetExceeded) else list(info.value.exceptions)
    assert any(isinstance(e, BudgetExceeded) for e in budget_errors)
    assert [r.path for r in server.requests] == ["/v1/messages/count_tokens"]


async def test_exact_counts_feed_the_rate_limiter_and_a_failed_count_falls_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The limiter learns how far its estimates fall short (``estimate_scale``): on the
    heuristic a 2,000-token prompt that reads as ~1 token is a large miss; on the
    counted prompt the estimate is right and nothing needs learning."""
    monkeypatch.setenv("TW_COUNT_KEY", "sk-ant-test")
    scales: dict[bool, float] = {}
    async with MockLLMServer({"claude-counted": MockModel(input_tokens=2000, output_tokens=5)}) as server:
        for exact in (False, True):
            async with tw.Orchestrator.from_config(_config(server, exact=exact, tpm=1_000_000)) as orch:
                await orch.run(Request.from_prompt("hi", max_tokens=10))
                limiter = orch.deployments["claude"].limiter
                assert limiter is not None
                scales[exact] = limiter.snapshot()["estimate_scale"]
                if exact:
                    # The counting endpoint fails: the call still goes out, on the estimate.
                    server.replay(500, {"content-type": "application/json"}, [b'{"type":"error"}'])
                    reply = await orch.run(Request.from_prompt("hi again", max_tokens=10))
                    assert reply.text.startswith("Mock reply")
    assert scales[True] == 1.0 < scales[False]
    assert [r.path for r in server.requests] == [
        "/v1/messages",
        "/v1/messages/count_tokens",
        "/v1/messages",
        "/v1/messages/count_tokens",
        "/v1/messages",
    ]
    assert server.stats["claude-counted"].token_counts == 1  # the failed one was a replayed 500


def test_exact_counts_need_a_counting_endpoint() -> None:
    config = {
        "models": {"g": {"provider": "openai", "model": "gpt-4.1", "exact_token_counts": True}},
        "strategies": {"default": {"type": "single", "target": "g"}},
    }
    with pytest.raises(ConfigError, match="no token-counting endpoint") as info:
        tw.Orchestrator.from_config(config)
    assert "models.g.exact_token_counts" in str(info.value)
