"""A 400 about the deployment falls back; a 400 about the request stops the chain (issue #9.6).

A small loopback gateway answers like the LiteLLM proxy and OpenRouter do for a
model name they do not know (HTTP 400, not 404), like OpenAI for a parameter a
model does not support, and like any server for a malformed request.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import pytest

import tierwise as tw
from test_hostile_replies import JSON, SSE, Reply, raw_server
from tierwise.errors import AllTargetsFailed, BadRequestError
from tierwise.execution.executor import Deployment
from tierwise.execution.fallback import BadRequestRule
from tierwise.execution.retry import RetryPolicy
from tierwise.providers.openai import OpenAI

OK_BODY = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "model": "good-model",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "hello"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6},
}

LITELLM_UNKNOWN_MODEL = {
    "error": {
        "message": "Invalid model name passed in model=gpt-x. Call `/v1/models` to view available models",
        "type": "invalid_request_error",
        "param": "model",
        "code": "400",
    }
}
OPENROUTER_UNKNOWN_MODEL = {"error": {"message": "foo/bar is not a valid model ID", "code": 400}}
UNSUPPORTED_PARAMETER = {
    "error": {
        "message": "Unsupported parameter: 'max_tokens' is not supported with this model. "
        "Use 'max_completion_tokens' instead.",
        "type": "invalid_request_error",
        "param": "max_tokens",
        "code": "unsupported_parameter",
    }
}
MALFORMED_MESSAGES = {
    "error": {
        "message": "Invalid value for 'messages[0].role': 'robot'.",
        "type": "invalid_request_error",
        "code": "invalid_value",
    }
}


@asynccontextmanager
async def gateway(replies: Mapping[str, tuple[int, Any]]) -> AsyncIterator[tuple[str, list[str]]]:
    """Serve ``replies[model] = (status, json body)`` (SSE for a 200 to a stream
    request); yields (base_url, models asked)."""
    asked: list[str] = []

    def reply(body: dict[str, Any]) -> Reply:
        model = str(body.get("model"))
        asked.append(model)
        status, answer = replies[model]
        if status == 200 and body.get("stream"):
            chunk = {"id": "c", "object": "chat.completion.chunk", "model": model, "choices": [
                {"index": 0, "delta": {"content": "hello"}, "finish_reason": "stop"}
            ]}  # fmt: skip
            return 200, SSE, f"data: {json.dumps(chunk)}\n\ndata: [DONE]\n\n".encode()
        return status, JSON, json.dumps(answer).encode()

    async with raw_server(reply) as base:
        yield f"{base}/v1", asked


def _orch(base_url: str, chain: list[str], rule: BadRequestRule | None = None) -> tw.Orchestrator:
    provider = OpenAI(api_key="sk-test-gateway", base_url=base_url)
    deps = []
    for i, model in enumerate(chain):
        nxt = (f"d{i + 1}",) if i + 1 < len(chain) else ()
        deps.append(Deployment(f"d{i}", provider, model, fallbacks=nxt))
    return tw.Orchestrator(
        deps, retry=RetryPolicy(max_attempts=1), bad_request=rule, log_level=None, owned_providers=[provider]
    )


@pytest.mark.parametrize(
    "refusal", [LITELLM_UNKNOWN_MODEL, OPENROUTER_UNKNOWN_MODEL, UNSUPPORTED_PARAMETER], ids=lambda r: "x"
)
async def test_deployment_specific_400_falls_back(refusal: dict[str, Any]) -> None:
    replies = {"gpt-x": (400, refusal), "good-model": (200, OK_BODY)}
    async with gateway(replies) as (url, asked), _orch(url, ["gpt-x", "good-model"]) as orch:
        resp = await orch.run("hi")
    assert resp.text == "hello"
    assert resp.deployment == "d1" and resp.fallback is True
    assert asked == ["gpt-x", "good-model"]
    assert [a.outcome for a in resp.attempts] == ["error", "ok"]
    assert resp.attempts[0].error_type == "BadRequestError"


async def test_request_level_400_stops_the_chain() -> None:
    replies = {"m1": (400, MALFORMED_MESSAGES), "m2": (200, OK_BODY)}
    async with gateway(replies) as (url, asked), _orch(url, ["m1", "m2"]) as orch:
        with pytest.raises(BadRequestError, match="messages"):
            await orch.run("hi")
    assert asked == ["m1"]  # never sent to the second model


async def test_mode_stop_restores_stopping_on_every_400() -> None:
    replies = {"gpt-x": (400, LITELLM_UNKNOWN_MODEL), "good-model": (200, OK_BODY)}
    async with (
        gateway(replies) as (url, asked),
        _orch(url, ["gpt-x", "good-model"], BadRequestRule(mode="stop")) as orch,
    ):
        with pytest.raises(BadRequestError):
            await orch.run("hi")
    assert asked == ["gpt-x"]


async def test_mode_fall_back_tries_every_deployment() -> None:
    replies = {"m1": (400, MALFORMED_MESSAGES), "m2": (400, MALFORMED_MESSAGES)}
    async with (
        gateway(replies) as (url, asked),
        _orch(url, ["m1", "m2"], BadRequestRule(mode="fall_back")) as orch,
    ):
        with pytest.raises(AllTargetsFailed) as info:
            await orch.run("hi")
    assert asked == ["m1", "m2"]
    assert all(isinstance(e, BadRequestError) for e in info.value.exceptions)


async def test_custom_patterns_classify_a_400() -> None:
    custom = {"error": {"message": "tenant quota profile forbids this deployment", "type": "x"}}
    replies = {"m1": (400, custom), "m2": (200, OK_BODY)}
    rule = BadRequestRule(deployment_patterns=[r"forbids this deployment"])
    async with gateway(replies) as (url, asked), _orch(url, ["m1", "m2"], rule) as orch:
        resp = await orch.run("hi")
    assert resp.deployment == "d1" and asked == ["m1", "m2"]
    # request_patterns win over the built-in deployment list
    rule = BadRequestRule(request_patterns=[r"unsupported parameter"])
    replies = {"m1": (400, UNSUPPORTED_PARAMETER), "m2": (200, OK_BODY)}
    async with gateway(replies) as (url, asked), _orch(url, ["m1", "m2"], rule) as orch:
        with pytest.raises(BadRequestError):
            await orch.run("hi")
    assert asked == ["m1"]


async def test_streams_follow_the_same_rule() -> None:
    replies = {"gpt-x": (400, LITELLM_UNKNOWN_MODEL), "good-model": (200, OK_BODY)}
    async with gateway(replies) as (url, asked), _orch(url, ["gpt-x", "good-model"]) as orch:
        events = [e async for e in orch.stream("hi")]
    final = events[-1]
    assert isinstance(final, tw.Done)
    assert final.response.deployment == "d1"
    assert asked == ["gpt-x", "good-model"]


def test_rule_validates_its_patterns() -> None:
    with pytest.raises(ValueError, match="mode"):
        BadRequestRule(mode="sometimes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"deployment_patterns\[0\]"):
        BadRequestRule(deployment_patterns=["(unclosed"])
    with pytest.raises(TypeError):
        BadRequestRule(request_patterns="one string")


def test_config_sets_the_rule_and_the_queue_wait() -> None:
    cfg = {
        "models": {"a": {"provider": "openai", "model": "gpt-4o", "max_queue_wait_s": 2.5}},
        "fallback": {"on_bad_request": "stop", "deployment_errors": ["tenant forbids"]},
    }
    orch = tw.Orchestrator.from_config(cfg)
    assert orch.executor.bad_request.mode == "stop"
    assert orch.executor.bad_request.deployment_patterns == ("tenant forbids",)
    assert orch.deployments["a"].max_queue_wait_s == 2.5
    with pytest.raises(tw.errors.ConfigError) as info:
        tw.Orchestrator.from_config({**cfg, "fallback": {"request_errors": ["(bad"]}})
    assert info.value.field == "fallback.request_errors"
    with pytest.raises(tw.errors.ConfigError, match="on_bad_request"):
        tw.Orchestrator.from_config({**cfg, "fallback": {"on_bad_request": "sometimes"}})
