"""A 400 about the deployment falls back; a 400 about the request stops the chain (issue #9.6).

A small loopback gateway answers like the LiteLLM proxy and OpenRouter do for a
model name they do not know (HTTP 400, not 404), like OpenAI for a parameter a
model does not support, and like any server for a malformed request.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import pytest

import tierwise as tw
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
    """Serve ``replies[model] = (status, json body)``; yields (base_url, models asked)."""
    asked: list[str] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.decode("latin-1").split("\r\n")[1:]:
                    name, _, value = line.partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value.strip())
                body = json.loads(await reader.readexactly(length)) if length else {}
                model = str(body.get("model"))
                asked.append(model)
                status, reply = replies[model]
                kind = "application/json"
                data = json.dumps(reply).encode()
                if status == 200 and body.get("stream"):
                    kind = "text/event-stream"
                    chunk = {"id": "c", "object": "chat.completion.chunk", "model": model, "choices": [
                        {"index": 0, "delta": {"content": "hello"}, "finish_reason": "stop"}
                    ]}  # fmt: skip
                    data = f"data: {json.dumps(chunk)}\n\ndata: [DONE]\n\n".encode()
                writer.write(
                    f"HTTP/1.1 {status} X\r\ncontent-type: {kind}\r\n"
                    f"content-length: {len(data)}\r\n\r\n".encode()
                    + data
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/v1", asked
    finally:
        server.close()
        await server.wait_closed()


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
