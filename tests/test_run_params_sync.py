"""``orch.run(prompt, system=, max_tokens=, temperature=, ...)``, the blocking
``tierwise.sync`` facade and a clean ``dir(tierwise)``.

The request keywords are checked on the wire: the loopback ``MockLLMServer``
records the body it received, so a keyword that is accepted but dropped fails.
The facade is exercised from plain code, from several threads at once, after
close, and from inside a running event loop (where it must refuse, typed).
"""

from __future__ import annotations

import threading
from typing import Any

import anyio
import pytest

import tierwise as tw
from tierwise.sync import EventLoopRunningError, SyncOrchestrator
from tierwise.testing import MockLLMServer


def _config(server: MockLLMServer) -> dict[str, Any]:
    return {
        "providers": {"mock": {"type": "openai", "compat": "vllm", "base_url": server.base_url + "/v1"}},
        "models": {"m": {"provider": "mock", "model": "mock-model", "input_price": 1, "output_price": 2}},
        "retry": {"max_attempts": 1},
    }


async def test_run_sends_request_parameters() -> None:
    async with MockLLMServer() as server, tw.Orchestrator.from_config(_config(server)) as orch:
        resp = await orch.run(
            "Summarize this", system="Be brief.", max_tokens=77, temperature=0.25, top_p=0.5, stop="END"
        )
        assert resp.text
        body = server.requests[-1].json()
    assert body["messages"][0] == {"role": "system", "content": "Be brief."}
    assert body["messages"][-1]["content"] == "Summarize this"
    assert body["max_tokens"] == 77
    assert body["temperature"] == 0.25
    assert body["top_p"] == 0.5
    assert body["stop"] == ["END"]


async def test_stream_takes_the_same_parameters() -> None:
    async with MockLLMServer() as server, tw.Orchestrator.from_config(_config(server)) as orch:
        async for event in orch.stream("hi", max_tokens=12, system="S"):
            if isinstance(event, tw.Done):
                assert event.response.text
        body = server.requests[-1].json()
    assert body["max_tokens"] == 12
    assert body["messages"][0]["content"] == "S"


async def test_unset_parameters_are_not_sent() -> None:
    async with MockLLMServer() as server, tw.Orchestrator.from_config(_config(server)) as orch:
        await orch.run("hi", max_tokens=None)
        body = server.requests[-1].json()
    assert "max_tokens" not in body and "temperature" not in body
    assert [m["role"] for m in body["messages"]] == ["user"]


async def test_a_misspelt_parameter_is_a_type_error_naming_it() -> None:
    async with MockLLMServer() as server, tw.Orchestrator.from_config(_config(server)) as orch:
        with pytest.raises(TypeError, match="max_token"):
            await orch.run("hi", max_token=5)
        assert server.requests == []


async def test_parameters_with_a_request_are_refused() -> None:
    async with MockLLMServer() as server, tw.Orchestrator.from_config(_config(server)) as orch:
        with pytest.raises(TypeError, match="carries its own"):
            await orch.run(tw.Request.from_prompt("hi"), max_tokens=5)


def test_explain_sees_response_format_as_a_hint() -> None:
    cfg: dict[str, Any] = {
        "models": {"a": {"provider": "openai", "model": "y"}, "b": {"provider": "openai", "model": "x"}},
        "strategies": {"r": {"type": "router", "routes": {"structured": "a", "standard": "b"}}},
    }
    orch = tw.Orchestrator.from_config(cfg)
    route = orch.explain("hello there", "r", response_format={"type": "json_object"})
    assert route.label == "structured"
    assert orch.explain("hello there", "r").label == "standard"


# ---------------------------------------------------------------------- tierwise.sync


def test_sync_facade_from_plain_code() -> None:
    with MockLLMServer.run_in_thread() as server:
        with SyncOrchestrator.from_config(_config(server)) as orch:
            resp = orch.run("Extract the names as JSON", max_tokens=50, system="S")
            assert resp.text and resp.cost_usd is not None
            assert server.requests[-1].json()["max_tokens"] == 50
            text = "".join(e.text for e in orch.stream("stream me") if isinstance(e, tw.TextDelta))
            assert text
            assert orch.explain("hi").strategy_path
            results = orch.batch(["a", "b", "c"])
            assert [r.ok for r in results] == [True, True, True]
            assert orch.metrics.snapshot()["requests"]["total"] == 5
        with pytest.raises(RuntimeError, match="closed"):
            orch.run("again")
        orch.close()  # idempotent


def test_sync_facade_is_thread_safe_and_reuses_one_loop() -> None:
    with MockLLMServer.run_in_thread() as server, SyncOrchestrator.from_config(_config(server)) as orch:
        errors: list[BaseException] = []
        texts: list[str] = []

        def worker() -> None:
            try:
                for _ in range(5):
                    texts.append(orch.run("hi").text)
            except BaseException as exc:  # collected, asserted below
                errors.append(exc)

        threads = [threading.Thread(target=worker) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert len(texts) == 20


def test_sync_facade_refuses_inside_a_running_loop() -> None:
    with MockLLMServer.run_in_thread() as server:
        orch = SyncOrchestrator.from_config(_config(server))
        try:

            async def inside() -> None:
                with pytest.raises(EventLoopRunningError, match="await"):
                    orch.run("hi")
                with pytest.raises(EventLoopRunningError):
                    SyncOrchestrator.from_config(_config(server))
                # A worker thread runs no loop: the blocking call is fine there.
                resp = await anyio.to_thread.run_sync(orch.run, "hi")
                assert resp.text

            anyio.run(inside)
        finally:
            orch.close()
    assert issubclass(EventLoopRunningError, tw.errors.TierwiseError)


def test_sync_facade_config_errors_stop_the_thread() -> None:
    before = threading.active_count()
    with pytest.raises(tw.errors.ConfigError):
        SyncOrchestrator.from_config({"models": {"m": {"provider": "nope", "model": "x"}}})
    assert threading.active_count() == before


def test_sync_is_a_public_submodule() -> None:
    assert tw.sync.SyncOrchestrator is SyncOrchestrator


# ---------------------------------------------------------------------- dir(tierwise)


def test_dir_tierwise_lists_only_the_public_surface() -> None:
    names = dir(tw)
    for helper in ("Any", "TYPE_CHECKING", "annotations", "importlib", "lazy_exports"):
        assert helper not in names
    assert names == sorted(tw.__all__)
    for name in names:
        getattr(tw, name)  # every listed name resolves


# ---------------------------------------------------------------------- short failures


async def test_an_offline_failure_prints_a_short_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's snippet with no keys and no network: the printed traceback is
    the caller's frames plus one line per attempt, not every attempt's executor
    and httpx frames (it was 75-91 lines, its one useful line the first)."""
    import traceback

    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    cfg = {
        "providers": {"down": {"type": "openai", "compat": "vllm", "base_url": "http://127.0.0.1:9/v1"}},
        "models": {
            "opus": {"provider": "anthropic", "model": "claude-opus-4-7", "fallbacks": ["local"]},
            "local": {"provider": "down", "model": "m", "fallbacks": ["gpt55"]},
            "gpt55": {"provider": "openai", "model": "gpt-5.5"},
        },
        "retry": {"max_attempts": 1},
    }
    async with tw.Orchestrator.from_config(cfg) as orch:
        with pytest.raises(tw.errors.AllTargetsFailed) as info:
            await orch.run("hello")
    text = "".join(traceback.format_exception(info.value))
    assert "executor.py" not in text and "httpx" not in text.replace("ConnectError", "")
    for line in ("no API key: pass api_key= or set ANTHROPIC_API_KEY", "connection failed", "OPENAI_API_KEY"):
        assert line in text
    assert len(text.splitlines()) < 25, text
    # The objects are intact for code that inspects them.
    kinds = [type(e).__name__ for e in info.value.exceptions]
    assert kinds == ["AuthenticationError", "ProviderConnectionError", "AuthenticationError"]
