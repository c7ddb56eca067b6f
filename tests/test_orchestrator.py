"""Orchestrator: the public entry point (run, stream, explain, health, lifecycle, audit, secrets).

Code-built orchestrators use FakeProvider; the audit and secret tests build from
config against MockLLMServer with a key planted in the environment and in a
provider's error body, then grep every output (audit file, errors, reprs, log
records at DEBUG) for it.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from tierwise.catalog import ModelSpec
from tierwise.errors import AllTargetsFailed, ConfigError, ServerError
from tierwise.execution.executor import Deployment
from tierwise.execution.health import HealthTracker
from tierwise.execution.retry import RetryPolicy
from tierwise.observe.audit import AuditLog
from tierwise.orchestrator import Orchestrator
from tierwise.strategies.single import Single
from tierwise.testing import FakeClock, FakeProvider, FunctionProvider, MockLLMServer, MockModel
from tierwise.types import Done, Request, Response, RouteInfo, TextDelta

# Shaped like no known key format, so only redaction by value can catch it.
SECRET = "tw-planted-7f3a9c2e5d1b8a46e0"
SECRET2 = "tw-planted-second-41d07c9b3e"
HEALTH_KEYS = {"state", "consecutive_failures", "cooldown_remaining_s", "total_failures", "total_successes"}


def spec(name: str) -> ModelSpec:
    return ModelSpec(name, "fake", input=1.0, output=2.0)


def two_models(provider: Any, **kwargs: Any) -> Orchestrator:
    return Orchestrator(
        [
            Deployment("a", provider, "a", spec=spec("a"), fallbacks=("b",)),
            Deployment("b", provider, "b", spec=spec("b")),
        ],
        **kwargs,
    )


async def stream_text(events: Any) -> tuple[str, Response]:
    text, final = "", None
    async for event in events:
        if isinstance(event, TextDelta):
            text += event.text
        elif isinstance(event, Done):
            final = event.response
    assert final is not None
    return text, final


# -- run / stream ----------------------------------------------------------------


async def test_run_accepts_a_prompt_or_a_request_and_merges_metadata() -> None:
    provider = FakeProvider({"a": "from a", "b": "from b"})
    orch = two_models(provider)
    request = Request.from_prompt("hello", system="be brief", metadata={"team": "search", "user": "u1"})

    by_str = await orch.run("hello", metadata={"user": "u2"})
    by_req = await orch.run(request, metadata={"user": "u3", "tier": "bulk"})

    assert by_str.text == by_req.text == "from a"
    (_, sent_str), (_, sent_req) = provider.calls
    assert sent_str.prompt_text == "hello" and sent_str.metadata == {"user": "u2"}
    assert sent_req.system == "be brief"
    assert sent_req.metadata == {"team": "search", "user": "u3", "tier": "bulk"}
    assert request.metadata == {"team": "search", "user": "u1"}, "the caller's request is not mutated"
    assert by_req.route.strategy_path == "default"
    assert orch.metrics.snapshot()["requests"]["total"] == 2


async def test_stream_accepts_a_prompt_or_a_request() -> None:
    provider = FakeProvider({"a": "streamed from a", "b": "b"}, chunk_chars=4)
    orch = two_models(provider)

    text1, final1 = await stream_text(orch.stream("hi", metadata={"team": "x"}))
    text2, final2 = await stream_text(orch.stream(Request.from_prompt("hi"), strategy="default"))

    assert text1 == text2 == final1.text == final2.text == "streamed from a"
    assert provider.calls[0][1].metadata == {"team": "x"}
    assert final1.deployment == "a" and final1.cost_usd is not None
    req = orch.metrics.snapshot()["requests"]
    assert req["total"] == 2 and req["errors"]["total"] == 0


async def test_run_rejects_other_prompt_types() -> None:
    orch = two_models(FakeProvider("x"))
    with pytest.raises(TypeError, match=r"str or a tierwise\.Request"):
        await orch.run(["not", "a", "prompt"])  # type: ignore[arg-type]


async def test_unknown_strategy_is_a_config_error_everywhere() -> None:
    provider = FakeProvider("x")
    orch = two_models(provider)

    with pytest.raises(ConfigError, match="nope"):
        await orch.run("hi", strategy="nope")
    with pytest.raises(ConfigError, match="nope"):
        async for _ in orch.stream("hi", strategy="nope"):
            pass
    with pytest.raises(ConfigError, match="nope"):
        orch.explain("hi", strategy="nope")
    with pytest.raises(ConfigError) as info:
        two_models(provider, default_strategy="nope")
    assert info.value.field == "default_strategy"
    assert provider.calls == []


async def test_explain_says_which_route_without_calling_a_model() -> None:
    provider = FakeProvider("x")
    orch = two_models(provider, strategies={"pinned": Single("b", name="pinned")}, default_strategy="pinned")

    info = orch.explain("hi")

    assert isinstance(info, RouteInfo)
    assert info.strategy_path == "pinned" and "b" in info.reason
    assert orch.explain("hi", strategy="pinned") == info
    assert provider.calls == []


async def test_health_snapshot_has_the_same_shape_for_every_deployment() -> None:
    clock = FakeClock()
    provider = FakeProvider({"a": ServerError("down", status_code=503), "b": "b"}, clock=clock)
    orch = Orchestrator(
        [
            Deployment("a", provider, "a", spec=spec("a"), fallbacks=("b",)),
            Deployment("b", provider, "b", spec=spec("b")),
            Deployment("idle", provider, "idle", spec=spec("idle")),
        ],
        health=HealthTracker(failure_threshold=1, cooldown_s=30.0, clock=clock),
        retry=RetryPolicy(max_attempts=1),
        clock=clock,
    )

    before = orch.health()
    assert set(before) == {"a", "b", "idle"}
    assert all(set(v) == HEALTH_KEYS and v["state"] == "healthy" for v in before.values())

    await orch.run("hi")
    after = orch.health()
    assert all(set(v) == HEALTH_KEYS for v in after.values())
    assert after["a"]["state"] == "cooling"
    assert after["a"]["total_failures"] == 1 and after["a"]["cooldown_remaining_s"] == 30.0
    assert after["b"]["state"] == "healthy" and after["b"]["total_successes"] == 1
    assert after["idle"] == before["idle"]
    json.dumps(after)  # plain data, ready for a /health endpoint


# -- lifecycle -----------------------------------------------------------------------


class ClosingProvider(FakeProvider):
    closed = 0

    async def aclose(self) -> None:
        self.closed += 1
        await super().aclose()


async def test_aclose_is_idempotent_and_a_closed_orchestrator_refuses_work() -> None:
    provider = ClosingProvider("x")
    async with two_models(provider) as orch:
        assert (await orch.run("hi")).text == "x"
    assert provider.closed == 1, "each distinct provider is closed once"
    await orch.aclose()
    await orch.aclose()
    assert provider.closed == 1

    with pytest.raises(RuntimeError, match="closed"):
        await orch.run("hi")
    with pytest.raises(RuntimeError, match="closed"):
        async for _ in orch.stream("hi"):
            pass
    assert len(provider.calls) == 1


async def test_two_orchestrators_share_nothing() -> None:
    config = {
        "providers": {"local": {"type": "openai", "compat": "vllm", "base_url": "http://127.0.0.1:9/v1"}},
        "models": {"m": {"provider": "local", "model": "m", "rpm": 100}},
        "strategies": {"default": {"type": "single", "target": "m"}},
    }
    one, two = Orchestrator.from_config(config), Orchestrator.from_config(config)
    try:
        assert one.metrics is not two.metrics
        assert one.executor.health is not two.executor.health
        assert one.deployments["m"].provider is not two.deployments["m"].provider
        assert one.deployments["m"].limiter is not two.deployments["m"].limiter
        assert one.executor.rng is not two.executor.rng
        one.metrics.record_request(
            strategy="default",
            label=None,
            model="m",
            latency_ms=1.0,
            cost_usd=0.0,
            fallback=False,
            cached=False,
        )
        one.executor.health.record_failure("m", ServerError("x", status_code=503))
        assert two.metrics.snapshot()["requests"]["total"] == 0
        assert two.health()["m"]["total_failures"] == 0
    finally:
        await one.aclose()
        await two.aclose()


async def test_requests_on_one_orchestrator_do_not_show_in_another() -> None:
    a = two_models(FakeProvider("x"))
    b = two_models(FakeProvider("y"))
    await a.run("hi")
    assert a.metrics.snapshot()["requests"]["total"] == 1
    assert b.metrics.snapshot()["requests"]["total"] == 0
    assert b.metrics.snapshot()["models"] == {}


# -- audit log and secrets -------------------------------------------------------------


def error_body_with(secret: str) -> bytes:
    """An overload error whose message echoes the key the caller sent, as misbehaving
    proxies do (this shape parses for both the Anthropic and the OpenAI adapter)."""
    return json.dumps(
        {"type": "error", "error": {"type": "overloaded_error", "message": f"upstream rejected key {secret}"}}
    ).encode()


def config_for(server: MockLLMServer, audit: Path) -> dict[str, Any]:
    return {
        "providers": {
            "anth": {"type": "anthropic", "base_url": server.base_url, "api_key_env": "TW_TEST_PLANTED_KEY"},
            "oai": {
                "type": "openai",
                "compat": "vllm",
                "base_url": server.base_url + "/v1",
                "api_key_env": "TW_TEST_PLANTED_KEY2",
            },
        },
        "models": {
            "primary": {
                "provider": "anth",
                "model": "claude-test",
                "fallbacks": ["secondary"],
                "input_price": 3.0,
                "output_price": 15.0,
            },
            "secondary": {"provider": "oai", "model": "gpt-test", "input_price": 1.0, "output_price": 2.0},
        },
        "strategies": {"default": {"type": "single", "target": "primary"}},
        "retry": {"max_attempts": 1},
        "audit": {"path": str(audit)},
    }


async def test_audit_log_has_one_record_per_request_with_attempts_and_no_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("TW_TEST_PLANTED_KEY", SECRET)
    monkeypatch.setenv("TW_TEST_PLANTED_KEY2", SECRET2)
    caplog.set_level(logging.DEBUG)
    audit = tmp_path / "audit.jsonl"
    models = {"claude-test": MockModel(reply="from claude"), "gpt-test": MockModel(reply="from gpt")}
    async with MockLLMServer(models) as server:
        orch = Orchestrator.from_config(config_for(server, audit))
        async with orch:
            ok = await orch.run("first question", metadata={"team": "search"})

            server.replay(503, {"content-type": "application/json"}, [error_body_with(SECRET)])
            fell_back = await orch.run("second question")

            # primary (Anthropic, sent SECRET), then secondary (OpenAI, sent SECRET2).
            server.replay(503, {"content-type": "application/json"}, [error_body_with(SECRET)])
            server.replay(503, {"content-type": "application/json"}, [error_body_with(SECRET2)])
            with pytest.raises(AllTargetsFailed) as failed:
                await orch.run("third question")

            provider = orch.deployments["primary"].provider
            texts = [repr(orch), str(orch), repr(provider), str(provider), repr(orch.deployments["primary"])]
            texts += [str(failed.value), repr(failed.value)]
            texts += [f"{e!s} {e!r}" for e in failed.value.exceptions]
            texts += [f"{a.error}" for a in fell_back.attempts + failed.value.attempts]
        # The planted keys really were in use.
        assert any(r.headers.get("x-api-key") == SECRET for r in server.requests)
        assert any(r.headers.get("authorization") == f"Bearer {SECRET2}" for r in server.requests)

    assert ok.deployment == "primary" and fell_back.deployment == "secondary" and fell_back.fallback

    lines = audit.read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines]
    assert len(records) == 3
    first, second, third = records
    assert first["model"] == "primary" and first["metadata"] == {"team": "search"}
    assert [a["outcome"] for a in first["attempts"]] == ["ok"]
    assert first["cost_usd"] == pytest.approx(ok.cost_usd)
    assert second["fallback"] is True and second["model"] == "secondary"
    assert [(a["model"], a["outcome"]) for a in second["attempts"]] == [
        ("primary", "error"),
        ("secondary", "ok"),
    ]
    assert third["error"]["type"] == "AllTargetsFailed" and third["model"] is None
    assert [a["outcome"] for a in third["attempts"]] == ["error", "error"]
    assert "prompt" not in first and "response" not in first

    logged = audit.read_text(encoding="utf-8")
    formatter = logging.Formatter()
    for secret in (SECRET, SECRET2):
        assert secret not in logged
        for text in texts:
            assert secret not in text, text
        for record in caplog.records:
            assert secret not in formatter.format(record), record.name


async def test_audit_log_scrubs_a_known_secret_from_an_unredacted_custom_provider(tmp_path: Path) -> None:
    """A custom provider may not redact its errors; the audit sink scrubs the keys it
    was given anyway, in error messages and attempt records alike."""

    def leaky(model: str, request: Request) -> str:
        if model == "a":
            raise ServerError(f"gateway said: bad token {SECRET}", status_code=502)
        return "fine"

    path = tmp_path / "audit.jsonl"
    audit = AuditLog(path, secrets=[SECRET], flush_interval_s=0)
    orch = two_models(FunctionProvider(leaky), retry=RetryPolicy(max_attempts=1), audit=audit)
    async with orch:
        resp = await orch.run("hi")
    assert resp.deployment == "b" and SECRET in (resp.attempts[0].error or "")

    record = json.loads(path.read_text(encoding="utf-8"))
    assert record["attempts"][0]["error_type"] == "ServerError"
    assert SECRET not in path.read_text(encoding="utf-8")


async def test_every_attempt_is_a_structlog_event_without_the_key(caplog: pytest.LogCaptureFixture) -> None:
    """Failures log at info, successes at debug, through the orchestrator's own
    logger; the provider key never appears in a rendered line."""
    import logging

    from tierwise.errors import ServerError
    from tierwise.execution.executor import Deployment
    from tierwise.testing import FakeProvider

    secret = "sk-test-SECRETSECRET123456"
    bad = FakeProvider([ServerError(f"upstream said {secret}")], name="bad")
    bad._api_key = secret
    good = FakeProvider(["fine"], name="good")
    orch = Orchestrator(
        [Deployment("a", bad, "a", fallbacks=("b",)), Deployment("b", good, "b")], log_level="debug"
    )
    with caplog.at_level(logging.DEBUG, logger="tierwise"):
        resp = await orch.run("hi")
    assert resp.text == "fine"
    lines = [r.getMessage() for r in caplog.records if r.name == "tierwise"]
    assert any("attempt_failed" in line and "model=a" in line for line in lines), lines
    assert any("event=attempt " in line and "model=b" in line for line in lines), lines
    assert any("event=request" in line for line in lines), lines
    assert all(secret not in line for line in lines)
    quiet = Orchestrator([Deployment("b", FakeProvider(["x"]), "b")], log_level=None)
    assert quiet.log is None
