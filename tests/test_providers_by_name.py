"""Providers by name: every built-in row works as ``provider = "<name>"``.

A newcomer writes ``provider = "deepseek"`` because the docs list DeepSeek as a
built-in row; that must mean the DeepSeek row (its default URL, its key variable,
its wire quirks) without a ``[providers.deepseek] type = "openai", compat = ...``
section. A section with a built-in name only overrides: its type comes from the
name. Calls go to a real loopback ``MockLLMServer``; the defaults are checked on
the built provider and on the "no API key" error, which is raised before any
byte is sent (so the public URLs are never contacted).
"""

from __future__ import annotations

from typing import Any

import pytest

import tierwise as tw
from tierwise.errors import AllTargetsFailed, AuthenticationError, ConfigError
from tierwise.providers.openai import COMPATIBLE_SERVERS
from tierwise.testing import MockLLMServer

NATIVE = {"anthropic": "ANTHROPIC_API_KEY", "gemini": "GEMINI_API_KEY"}
ROWS = sorted(COMPATIBLE_SERVERS)
KEYED_ROWS = [n for n in ROWS if COMPATIBLE_SERVERS[n].api_key_env and COMPATIBLE_SERVERS[n].default_base_url]


def _one_model(provider: str, providers: dict[str, Any] | None = None) -> dict[str, Any]:
    cfg: dict[str, Any] = {"models": {"m": {"provider": provider, "model": "some-model"}}}
    if providers:
        cfg["providers"] = providers
    cfg["retry"] = {"max_attempts": 1}
    return cfg


def test_the_rows_the_issue_names_are_all_built_in() -> None:
    assert {"openai", "deepseek", "mistral", "openrouter", "ollama", "vllm"} <= set(ROWS)


@pytest.mark.parametrize("name", [n for n in ROWS if COMPATIBLE_SERVERS[n].default_base_url])
def test_compatible_row_by_name_uses_its_default_url(name: str) -> None:
    orch = tw.Orchestrator.from_config(_one_model(name))
    provider = orch.deployments["m"].provider
    assert isinstance(provider, tw.providers.OpenAI)
    assert provider.name == name
    assert provider.base_url == COMPATIBLE_SERVERS[name].default_base_url.rstrip("/")


@pytest.mark.parametrize("name", KEYED_ROWS)
async def test_compatible_row_by_name_reads_its_own_key_variable(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = COMPATIBLE_SERVERS[name].api_key_env
    assert env is not None
    monkeypatch.delenv(env, raising=False)
    async with tw.Orchestrator.from_config(_one_model(name)) as orch:
        with pytest.raises(AllTargetsFailed) as info:
            await orch.run("hi")
    (error,) = info.value.exceptions
    assert isinstance(error, AuthenticationError)
    assert env in str(error)


@pytest.mark.parametrize(("name", "env"), sorted(NATIVE.items()))
async def test_native_provider_by_name(name: str, env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(env, raising=False)
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    async with tw.Orchestrator.from_config(_one_model(name)) as orch:
        assert orch.deployments["m"].provider.name == name
        with pytest.raises(AllTargetsFailed) as info:
            await orch.run("hi")
    assert env in str(info.value.exceptions[0])


@pytest.mark.parametrize("name", ["vllm", "ollama"])
def test_local_servers_need_no_key(name: str) -> None:
    provider = tw.Orchestrator.from_config(_one_model(name)).deployments["m"].provider
    provider._check_key("some-model")  # no AuthenticationError: local servers take no key


def _override_url(name: str, base: str) -> str:
    return {"anthropic": base, "gemini": base + "/v1beta"}.get(name, base + "/v1")


@pytest.mark.parametrize("name", [*ROWS, *NATIVE])
async def test_a_section_named_after_a_row_only_overrides(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """``[providers.NAME]`` with just ``base_url``: the type comes from the name, and
    the key still comes from the row's own variable, sent the way its wire wants."""
    env = NATIVE.get(name) or COMPATIBLE_SERVERS[name].api_key_env
    if env is not None:
        monkeypatch.setenv(env, "test-key-for-" + name)
    if name == "gateway":
        monkeypatch.setenv("TIERWISE_GATEWAY_API_KEY", "test-key-for-gateway")
    async with MockLLMServer() as server:
        section = {"base_url": _override_url(name, server.base_url)}
        async with tw.Orchestrator.from_config(_one_model(name, {name: section})) as orch:
            resp = await orch.run("Say hello")
        assert resp.text
        assert resp.provider == name
        (seen,) = server.requests
        wire = {"anthropic": "anthropic", "gemini": "gemini"}.get(name, "openai")
        assert seen.provider == wire
        if env is not None:
            sent = seen.headers.get("authorization") or seen.headers.get("x-api-key") or ""
            sent = sent or seen.headers.get("x-goog-api-key", "")
            assert sent.endswith("test-key-for-" + name)


def test_row_by_name_prices_from_the_catalog() -> None:
    """DeepSeek's prices are filed under 'deepseek' in the catalog, so the name
    alone gives the right price (no 'unknown price' warning)."""
    from tierwise.config import check_config, config_warnings

    cfg = _one_model("deepseek")
    cfg["models"]["m"]["model"] = "deepseek-chat"
    orch = tw.Orchestrator.from_config(cfg)
    spec = orch.deployments["m"].spec
    assert spec is not None and spec.input is not None and spec.output is not None
    assert config_warnings(check_config(cfg)) == []


def test_a_misspelt_name_suggests_the_row() -> None:
    with pytest.raises(ConfigError) as info:
        tw.Orchestrator.from_config(_one_model("deepsek"))
    assert info.value.field == "models.m.provider"
    assert "did you mean 'deepseek'" in str(info.value)


def test_a_section_with_an_unknown_name_still_needs_a_type() -> None:
    with pytest.raises(ConfigError) as info:
        tw.Orchestrator.from_config(_one_model("mine", {"mine": {"base_url": "http://127.0.0.1:9/v1"}}))
    assert info.value.field == "providers.mine.type"
