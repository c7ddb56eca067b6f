"""Config loading: a full TOML file builds a working Orchestrator; every mistake a
user can make fails with a ``ConfigError`` naming the exact field and saying how
to fix it; prices come from the catalog unless config overrides them; API keys
come only from the environment variable a provider names and never leak.

Why so many bad-input cases: config is where a typo in a rate limit or a price
would otherwise be silently ignored and cost money in production. Each case pins
both the field path (so the user finds the line) and a fragment of the advice.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import tierwise as tw
from tierwise.catalog import Catalog
from tierwise.config import build_orchestrator, check_config, load_config
from tierwise.errors import AllTargetsFailed, AuthenticationError, ConfigError
from tierwise.execution.cache import MemoryCache, SQLiteCache
from tierwise.testing import MockLLMServer, MockModel

# The example from docs/configuration.md, with file paths filled in per test:
# the documented config must keep building.
FULL_TOML = """
default_strategy = "default"
fallbacks = ["sonnet"]
seed = 7

[providers.anthropic]
type = "anthropic"
api_key_env = "TW_TEST_ANTHROPIC_KEY"

[providers.gateway]
type = "openai"
compat = "gateway"
base_url = "https://gateway.example/v1"
api_key_env = "TW_TEST_GATEWAY_KEY"
timeout_s = 120

[models.opus]
provider = "anthropic"
model = "claude-opus-4-7"
fallbacks = ["sonnet", "gpt55"]
rpm = 50
tpm = 400000
max_concurrency = 8
timeout_s = 120
first_token_timeout_s = 15
idle_timeout_s = 30

[models.sonnet]
provider = "anthropic"
model = "claude-sonnet-4-6"

[models.gpt55]
provider = "gateway"
model = "gpt-5.5"
input_price = 2.70
output_price = 10.80
cached_input_price = 0.27
context_window = 400000
max_output_tokens = 32000

[strategies.default]
type = "single"
target = "opus"

[strategies.cheap]
type = "single"
target = "sonnet"

[retry]
max_attempts = 4
initial_backoff_s = 0.5
max_backoff_s = 20
multiplier = 2
deadline_s = 60
max_retry_after_s = 30

[health]
failure_threshold = 5
cooldown_s = 30
window_s = 60

[budget]
timezone = "Europe/Berlin"
limits = [
  { limit_usd = 50, period = "day", scope = "total" },
  { limit_usd = 10, period = "day", scope = "model:opus", action = "downgrade", downgrade_to = "sonnet" },
  { limit_usd = 5,  period = "month", scope = "tag:team=search" },
  { limit_usd = 1,  period = "day", scope = "tag:user" },
]

[cache]
backend = "sqlite"
path = "@CACHE@"
ttl_s = 3600

[audit]
path = "@AUDIT@"
include_text = false
"""

# A small valid dict config; each bad-input case mutates a copy.
BASE: dict[str, Any] = {
    "providers": {
        "gw": {"type": "openai", "base_url": "https://gw.example/v1", "api_key_env": "TW_TEST_GW_KEY"}
    },
    "models": {
        "opus": {"provider": "anthropic", "model": "claude-opus-4-7", "fallbacks": ["mini"]},
        "mini": {"provider": "gw", "model": "gpt-4o-mini"},
    },
    "strategies": {"default": {"type": "single", "target": "opus"}},
}

SECRET = "tw-secret-5d41402abc4b2a76b9719d911017c592"  # not sk- shaped: only the secret list can catch it


def write_full(tmp_path: Path) -> Path:
    text = FULL_TOML.replace("@CACHE@", str(tmp_path / "cache.sqlite3")).replace(
        "@AUDIT@", str(tmp_path / "audit.jsonl")
    )
    path = tmp_path / "tierwise.toml"
    path.write_text(text, encoding="utf-8")
    return path


def config_error(data: Any) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        build_orchestrator(data)
    return info.value


# ---------------------------------------------------------------------- the full file


async def test_full_toml_builds_every_section(tmp_path: Path) -> None:
    orch = tw.Orchestrator.from_config(write_full(tmp_path))
    async with orch:
        deps = orch.deployments
        assert list(deps) == ["opus", "sonnet", "gpt55"]
        opus = deps["opus"]
        assert opus.provider.name == "anthropic"
        assert opus.model == "claude-opus-4-7"
        assert (opus.timeout_s, opus.first_token_timeout_s, opus.idle_timeout_s) == (120, 15, 30)
        assert opus.limiter is not None
        assert (opus.limiter.rpm, opus.limiter.tpm, opus.limiter.max_concurrency) == (50, 400000, 8)
        assert deps["sonnet"].limiter is None  # no limits configured: no limiter on the hot path
        # Transitive chain, each model once, global fallbacks appended.
        assert [d.alias for d in orch.executor.chain("opus")] == ["opus", "sonnet", "gpt55"]
        assert [d.alias for d in orch.executor.chain("gpt55")] == ["gpt55", "sonnet"]
        gpt55 = deps["gpt55"]
        assert gpt55.provider.base_url == "https://gateway.example/v1"
        assert gpt55.spec is not None
        assert (gpt55.spec.input, gpt55.spec.output, gpt55.spec.cached_input) == (2.70, 10.80, 0.27)
        assert (gpt55.spec.context_window, gpt55.max_output_tokens) == (400000, 32000)
        assert sorted(orch.strategies) == ["cheap", "default"]
        assert orch.default_strategy == "default"
        assert orch.executor.retry.max_attempts == 4
        assert orch.executor.retry.deadline == 60
        assert orch.executor.health.failure_threshold == 5
        assert orch.executor.budget is not None
        assert isinstance(orch.executor.cache, SQLiteCache)
        assert orch.audit is not None
        assert orch.explain("hi").reason == "always opus"
    assert (tmp_path / "audit.jsonl").exists()


def test_dict_and_toml_give_the_same_config(tmp_path: Path) -> None:
    import tomllib

    path = write_full(tmp_path)
    assert load_config(path) == load_config(tomllib.loads(path.read_text()))


async def test_memory_cache_and_no_sections_defaults() -> None:
    async with tw.Orchestrator.from_config(
        {"models": {"m": {"provider": "openai", "model": "gpt-4o-mini"}}, "cache": {}}
    ) as orch:
        assert isinstance(orch.executor.cache, MemoryCache)
        assert orch.default_strategy == "default"  # made by the Orchestrator: the first model
        assert orch.executor.budget is None and orch.audit is None


def test_check_config_validates_without_side_effects(tmp_path: Path) -> None:
    """``tierwise check-config`` must not create the audit log or the cache file."""
    cfg = check_config(write_full(tmp_path))
    assert sorted(cfg.models) == ["gpt55", "opus", "sonnet"]
    assert not (tmp_path / "audit.jsonl").exists()
    assert not (tmp_path / "cache.sqlite3").exists()


# ---------------------------------------------------------------------- bad input


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(d: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = d
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value

    return mutate


def _drop(path: str) -> Callable[[dict[str, Any]], None]:
    def mutate(d: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = d
        for p in parents:
            node = node[p]
        del node[last]

    return mutate


BAD: list[tuple[str, Callable[[dict[str, Any]], None], str, tuple[str, ...]]] = [
    # typos: the unknown key is named, with the closest known one
    (
        "typo-top",
        _set("defualt_strategy", "default"),
        "defualt_strategy",
        ("did you mean 'default_strategy'",),
    ),
    ("typo-model", _set("models.opus.rmp", 50), "models.opus.rmp", ("unknown field 'rmp'", "'rpm'")),
    ("typo-retry", _set("retry", {"max_attempt": 2}), "retry.max_attempt", ("'max_attempts'",)),
    ("typo-cache", _set("cache", {"ttl": 60}), "cache.ttl", ("'ttl_s'",)),
    ("typo-budget", _set("budget", {"limts": []}), "budget.limts", ("'limits'",)),
    (
        "typo-budget-limit",
        _set("budget", {"limits": [{"limit_usd": 1, "perod": "day"}]}),
        "budget.limits[0].perod",
        ("'period'",),
    ),
    ("typo-provider", _set("providers.gw.base_ulr", "x"), "providers.gw.base_ulr", ("'base_url'",)),
    # a typo that also leaves a required key missing reports the typo, not "missing"
    ("typo-beats-missing", _set("audit", {"pth": "a.jsonl"}), "audit.pth", ("'path'",)),
    # an alias that happens to be a field name must not confuse the suggestion
    (
        "typo-alias-named-model",
        _set("models.model", {"provider": "openai", "model": "x", "rmp": 1}),
        "models.model.rmp",
        ("'rpm'",),
    ),
    # wrong types and values
    ("wrong-type", _set("models.opus.rpm", "fast"), "models.opus.rpm", ("valid number", "'fast'")),
    ("bool-is-not-a-number", _set("models.opus.rpm", True), "models.opus.rpm", ("valid number",)),
    (
        "negative-price",
        _set("models.opus.input_price", -1),
        "models.opus.input_price",
        ("greater than or equal to 0", "-1"),
    ),
    (
        "infinite-price",
        _set("models.opus.output_price", float("inf")),
        "models.opus.output_price",
        ("finite",),
    ),
    ("zero-cooldown", _set("health", {"cooldown_s": 0}), "health.cooldown_s", ("greater than 0",)),
    ("empty-model-name", _set("models.opus.model", ""), "models.opus.model", ("at least 1 character",)),
    ("no-models", _set("models", {}), "models", ("at least one model",)),
    ("missing-models", _drop("models"), "models", ("required",)),
    # references
    (
        "unknown-provider",
        _set("models.opus.provider", "antropic"),
        "models.opus.provider",
        ("unknown provider 'antropic'", "did you mean 'anthropic'", "[providers.antropic]"),
    ),
    (
        "unknown-fallback",
        _set("models.opus.fallbacks", ["mnii"]),
        "models.opus.fallbacks[0]",
        ("unknown model alias 'mnii'", "did you mean 'mini'"),
    ),
    (
        "second-fallback",
        _set("models.opus.fallbacks", ["mini", "sonet"]),
        "models.opus.fallbacks[1]",
        ("'sonet'",),
    ),
    (
        "self-fallback",
        _set("models.opus.fallbacks", ["opus"]),
        "models.opus.fallbacks[0]",
        ("cannot fall back to itself",),
    ),
    ("global-fallback", _set("fallbacks", ["mni"]), "fallbacks[0]", ("did you mean 'mini'",)),
    (
        "unknown-default-strategy",
        _set("default_strategy", "defualt"),
        "default_strategy",
        ("unknown strategy 'defualt'", "did you mean 'default'"),
    ),
    # strategies
    (
        "single-unknown-target",
        _set("strategies.default.target", "opsu"),
        "strategies.default.target",
        ("unknown target 'opsu'", "did you mean 'opus'"),
    ),
    (
        "single-missing-target",
        _drop("strategies.default.target"),
        "strategies.default.target",
        ("needs target",),
    ),
    (
        "single-extra-key",
        _set("strategies.default.targets", ["opus"]),
        "strategies.default.targets",
        ("unknown field 'targets'", "did you mean 'target'"),
    ),
    ("single-target-not-str", _set("strategies.default.target", 3), "strategies.default.target", ("string",)),
    (
        "unknown-strategy-type",
        _set("strategies.default.type", "singel"),
        "strategies.default.type",
        ("'single'",),
    ),
    (
        "strategy-cycle",
        lambda c: c["strategies"].update(
            {"a": {"type": "single", "target": "b"}, "b": {"type": "single", "target": "a"}}
        ),
        "strategies.a",
        ("cycle", "a → b → a"),
    ),
    # budget
    (
        "downgrade-without-target",
        _set("budget", {"limits": [{"limit_usd": 5, "action": "downgrade"}]}),
        "budget.limits[0].downgrade_to",
        ("needs downgrade_to",),
    ),
    (
        "downgrade-unknown-alias",
        _set(
            "budget",
            {"limits": [{"limit_usd": 1}, {"limit_usd": 5, "action": "downgrade", "downgrade_to": "mnii"}]},
        ),
        "budget.limits[1].downgrade_to",
        ("unknown model alias 'mnii'", "did you mean 'mini'"),
    ),
    (
        "downgrade-to-without-action",
        _set("budget", {"limits": [{"limit_usd": 5, "downgrade_to": "mini"}]}),
        "budget.limits[0].downgrade_to",
        ("only used with action='downgrade'",),
    ),
    (
        "scope-unknown-alias",
        _set("budget", {"limits": [{"limit_usd": 5, "scope": "model:opsu"}]}),
        "budget.limits[0].scope",
        ("'opsu'", "did you mean 'opus'"),
    ),
    (
        "scope-syntax",
        _set("budget", {"limits": [{"limit_usd": 5, "scope": "team"}]}),
        "budget.limits[0].scope",
        ("'model:<alias>'",),
    ),
    (
        "bad-timezone",
        _set("budget", {"timezone": "Mars/Olympus_Mons", "limits": [{"limit_usd": 5}]}),
        "budget.timezone",
        ("unknown timezone 'Mars/Olympus_Mons'", "IANA"),
    ),
    # checked even without limits, so check-config catches it before a limit is added
    (
        "bad-timezone-no-limits",
        _set("budget", {"timezone": "UTC+2"}),
        "budget.timezone",
        ("unknown timezone",),
    ),
    # cache
    ("sqlite-without-path", _set("cache", {"backend": "sqlite"}), "cache.path", ("needs path",)),
    # providers
    (
        "unknown-compat",
        _set("providers.gw.compat", "vlm"),
        "providers.gw.compat",
        ("unknown OpenAI-compatible server 'vlm'", "did you mean 'vllm'", "known: "),
    ),
    (
        "compat-on-anthropic",
        _set("providers.a", {"type": "anthropic", "compat": "vllm"}),
        "providers.a.compat",
        ('type = "openai"',),
    ),
    ("unknown-provider-type", _set("providers.gw.type", "opeani"), "providers.gw.type", ("'openai'",)),
]


@pytest.mark.parametrize(("mutate", "field", "fragments"), [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_bad_config_names_the_field(
    mutate: Callable[[dict[str, Any]], None], field: str, fragments: tuple[str, ...]
) -> None:
    data = copy.deepcopy(BASE)
    mutate(data)
    err = config_error(data)
    assert err.field == field, str(err)
    assert str(err).startswith(f"{field}: "), str(err)
    for fragment in fragments:
        assert fragment in str(err), str(err)
    # check-config runs the same validation
    with pytest.raises(ConfigError) as again:
        check_config(data)
    assert again.value.field == field


def test_gateway_without_base_url_names_the_provider_field(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TIERWISE_GATEWAY_BASE_URL", raising=False)
    data = copy.deepcopy(BASE)
    data["providers"]["gw"] = {"type": "openai", "compat": "gateway"}
    err = config_error(data)
    assert err.field == "providers.gw.base_url"
    assert "TIERWISE_GATEWAY_BASE_URL" in str(err)


def test_audit_in_missing_directory_fails_at_build(tmp_path: Path) -> None:
    data = copy.deepcopy(BASE)
    data["audit"] = {"path": str(tmp_path / "no" / "such" / "audit.jsonl")}
    err = config_error(data)
    assert err.field == "audit.path"
    with pytest.raises(ConfigError) as info:
        check_config(data)
    assert info.value.field == "audit.path"


def test_sqlite_cache_in_missing_directory_fails_at_build(tmp_path: Path) -> None:
    """SQLiteCache connects lazily; without this check the first request would fail."""
    data = copy.deepcopy(BASE)
    data["cache"] = {"backend": "sqlite", "path": str(tmp_path / "nope" / "c.db")}
    assert config_error(data).field == "cache.path"


def test_invalid_toml(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[models.opus]\nprovider = "anthropic\n', encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "invalid TOML" in str(info.value)
    assert str(path) in str(info.value)
    assert "line 2" in str(info.value)


def test_toml_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'# caf\xe9\n[models.m]\nprovider = "openai"\nmodel = "gpt-4o"\n')
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_config(path)


def test_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match="config file not found") as info:
        tw.Orchestrator.from_config(missing)
    assert str(missing) in str(info.value)


def test_directory_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path)


def test_toml_errors_carry_the_field_too(tmp_path: Path) -> None:
    path = tmp_path / "t.toml"
    path.write_text('[models.opus]\nprovider = "anthropic"\nmodel = "claude-opus-4-7"\nrmp = 5\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.field == "models.opus.rmp"


def test_every_error_is_reported() -> None:
    data = copy.deepcopy(BASE)
    data["models"]["opus"].update(rpm="fast", tpm="slow")
    err = config_error(data)
    assert "models.opus.rpm" in str(err) and "also models.opus.tpm" in str(err)
    assert [f for f, _ in err.problems] == ["models.opus.rpm", "models.opus.tpm"]


# ---------------------------------------------------------------------- prices


def test_prices_default_to_the_catalog() -> None:
    orch = build_orchestrator({"models": {"mini": {"provider": "openai", "model": "gpt-4o-mini"}}})
    spec = orch.deployments["mini"].spec
    assert spec is not None
    assert (spec.input, spec.output) == (0.15, 0.60)


def test_config_prices_override_the_catalog_without_touching_it() -> None:
    """A gateway 10% cheaper than list price: config wins, the shared catalog is unchanged
    (a second orchestrator in the same process must still see list prices)."""
    orch = build_orchestrator(
        {
            "providers": {"gw": {"type": "openai", "base_url": "https://gw.example/v1"}},
            "models": {
                "mini": {"provider": "gw", "model": "gpt-4o-mini", "input_price": 0.135, "output_price": 0.54}
            },
        }
    )
    spec = orch.deployments["mini"].spec
    assert spec is not None
    assert (spec.input, spec.output) == (0.135, 0.54)
    assert spec.context_window == 128_000  # the rest still comes from the catalog
    listed = Catalog.default().get("gpt-4o-mini")
    assert listed is not None and (listed.input, listed.output) == (0.15, 0.60)
    other = build_orchestrator({"models": {"mini": {"provider": "openai", "model": "gpt-4o-mini"}}})
    other_spec = other.deployments["mini"].spec
    assert other_spec is not None and other_spec.input == 0.15


def _mock_provider(server: MockLLMServer) -> dict[str, Any]:
    return {"type": "openai", "compat": "vllm", "base_url": server.base_url + "/v1"}


async def test_costs_use_catalog_and_override_prices_end_to_end() -> None:
    """1000 input + 500 output tokens: list price $0.00045, the gateway's 10% less."""
    tokens = MockModel(reply="ok", input_tokens=1000, output_tokens=500)
    async with MockLLMServer({"gpt-4o-mini": tokens, "private-ft-1": tokens}) as server:
        cfg = {
            "providers": {"mock": _mock_provider(server)},
            "models": {
                "list": {"provider": "mock", "model": "gpt-4o-mini"},
                "cheap": {
                    "provider": "mock",
                    "model": "gpt-4o-mini",
                    "input_price": 0.135,
                    "output_price": 0.54,
                },
                "private": {"provider": "mock", "model": "private-ft-1"},
            },
            "strategies": {name: {"type": "single", "target": name} for name in ("list", "cheap", "private")},
            "default_strategy": "list",
        }
        async with tw.Orchestrator.from_config(cfg) as orch:
            listed = await orch.run("hi", strategy="list")
            cheap = await orch.run("hi", strategy="cheap")
            unknown = await orch.run("hi", strategy="private")
    assert listed.cost_usd == pytest.approx(1000 * 0.15e-6 + 500 * 0.60e-6)
    assert cheap.cost_usd == pytest.approx(0.9 * 0.00045)
    # unknown to the catalog and no prices in config: unknown, never a silent 0
    assert orch.deployments["private"].spec is None
    assert unknown.cost_usd is None


# ---------------------------------------------------------------------- keys


@pytest.mark.parametrize("key", ["api_key", "API_KEY", "token"])
def test_literal_key_in_provider_is_rejected(key: str) -> None:
    data = copy.deepcopy(BASE)
    data["providers"]["gw"][key] = SECRET
    err = config_error(data)
    assert err.field == f"providers.gw.{key}"
    assert "api_key_env" in str(err)
    assert "environment variable" in str(err)
    assert SECRET not in str(err) and SECRET not in repr(err)


def test_literal_key_wins_over_other_errors() -> None:
    """Reported first even next to another mistake: it is the one that leaks."""
    data = copy.deepcopy(BASE)
    data["providers"]["gw"]["api_key"] = SECRET
    data["models"]["opus"]["rpm"] = "fast"
    err = config_error(data)
    assert err.field == "providers.gw.api_key"


def test_key_pasted_into_api_key_env_is_rejected_without_echo() -> None:
    data = copy.deepcopy(BASE)
    data["providers"]["gw"]["api_key_env"] = "sk-proj-" + SECRET
    err = config_error(data)
    assert err.field == "providers.gw.api_key_env"
    assert "NAME of an environment variable" in str(err)
    assert SECRET not in str(err)


def test_auth_header_with_a_key_is_rejected() -> None:
    data = copy.deepcopy(BASE)
    data["providers"]["gw"]["headers"] = {"Authorization": f"Bearer {SECRET}"}
    err = config_error(data)
    assert err.field == "providers.gw.headers.Authorization"
    assert "api_key_env" in str(err) and SECRET not in str(err)


def test_key_shaped_value_in_a_wrong_field_is_not_echoed() -> None:
    data = copy.deepcopy(BASE)
    data["models"]["opus"]["timeout_s"] = "sk-ant-api03-abcdefghijklmnopqrstuvwxyz"
    err = config_error(data)
    assert err.field == "models.opus.timeout_s"
    assert "abcdefghijklmnop" not in str(err)


async def test_key_comes_only_from_the_named_env_var(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The provider sends the key from ``api_key_env``, and that key appears in no
    repr, no ConfigError and not in the audit log (even when a prompt contains it)."""
    monkeypatch.setenv("TW_TEST_GW_KEY", SECRET)
    monkeypatch.setenv("TIERWISE_GATEWAY_API_KEY", "decoy-gateway-key")
    monkeypatch.setenv("OPENAI_API_KEY", "decoy-openai-key")
    audit = tmp_path / "audit.jsonl"
    async with MockLLMServer({"gpt-4o-mini": MockModel()}) as server:  # reply=None echoes the prompt
        cfg = {
            "providers": {
                "gw": {"type": "openai", "base_url": server.base_url + "/v1", "api_key_env": "TW_TEST_GW_KEY"}
            },
            "models": {"mini": {"provider": "gw", "model": "gpt-4o-mini"}},
            "audit": {"path": str(audit), "include_text": True},
        }
        async with tw.Orchestrator.from_config(cfg) as orch:
            response = await orch.run(f"please repeat {SECRET}")
            assert SECRET in response.text  # the echo really carried it
            assert SECRET not in repr(orch)
            assert SECRET not in repr(orch.deployments["mini"].provider)
            assert SECRET not in repr(orch.deployments["mini"])
        sent = server.requests[-1].headers
        auth = {k.lower(): v for k, v in sent.items()}["authorization"]
        assert auth == f"Bearer {SECRET}"
    text = audit.read_text()
    assert json.loads(text.splitlines()[0])["model"] == "mini"
    assert SECRET not in text
    # a config error in the same environment does not print it either
    bad = copy.deepcopy(cfg)
    bad["models"]["mini"]["rmp"] = 5
    assert SECRET not in str(config_error(bad))


async def test_configured_env_var_unset_does_not_fall_back_to_defaults(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With api_key_env set but empty, the provider's default variable (another
    account's key) must not be used; the error names the configured variable."""
    monkeypatch.delenv("TW_TEST_MISSING_KEY", raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", "decoy-openai-key")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "decoy-anthropic-key")
    async with MockLLMServer({"gpt-4o-mini": MockModel(), "claude-sonnet-4-6": MockModel()}) as server:
        cfg = {
            "providers": {
                "oai": {
                    "type": "openai",
                    "base_url": server.base_url + "/v1",
                    "api_key_env": "TW_TEST_MISSING_KEY",
                },
                "ant": {
                    "type": "anthropic",
                    "base_url": server.base_url,
                    "api_key_env": "TW_TEST_MISSING_KEY",
                },
            },
            "models": {
                "mini": {"provider": "oai", "model": "gpt-4o-mini"},
                "sonnet": {"provider": "ant", "model": "claude-sonnet-4-6"},
            },
            "strategies": {
                "mini": {"type": "single", "target": "mini"},
                "sonnet": {"type": "single", "target": "sonnet"},
            },
            "retry": {"max_attempts": 1},
        }
        async with tw.Orchestrator.from_config(cfg) as orch:
            for strategy in ("mini", "sonnet"):
                with pytest.raises((AuthenticationError, AllTargetsFailed)) as info:
                    await orch.run("hi", strategy=strategy)
                assert "TW_TEST_MISSING_KEY" in str(info.value) or any(
                    "TW_TEST_MISSING_KEY" in str(e) for e in getattr(info.value, "exceptions", ())
                )
        assert server.requests == []  # nothing was sent with a decoy key


# ---------------------------------------------------------------------- scale


def test_hundred_model_config_builds() -> None:
    """The shape benchmarks/config_build.py times (timing lives there, not here)."""
    models = {
        f"m{i}": {
            "provider": ("openai", "anthropic", "gemini")[i % 3],
            "model": f"model-{i}",
            "input_price": 1.0,
            "output_price": 2.0,
            "rpm": 60,
            "fallbacks": [f"m{(i + 1) % 100}"],
        }
        for i in range(100)
    }
    orch = build_orchestrator({"models": models})
    assert len(orch.deployments) == 100
    chain = orch.executor.chain("m42")
    assert len(chain) == 100 and chain[0].alias == "m42" and chain[1].alias == "m43"


def test_benchmark_configs_stay_valid(tmp_path: Path) -> None:
    """benchmarks/config_build.py must time a config that builds, and its TOML
    writer must produce the same config (no timing asserted here)."""
    import importlib.util

    script = Path(__file__).parent.parent / "benchmarks" / "config_build.py"
    spec = importlib.util.spec_from_file_location("config_build", script)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    cfg = bench.make_config()
    orch = build_orchestrator(cfg)
    assert len(orch.deployments) == bench.N_MODELS
    path = tmp_path / "bench.toml"
    path.write_text(bench.to_toml(cfg), encoding="utf-8")
    assert load_config(path) == load_config(cfg)
    chained = build_orchestrator(bench.make_config(chained=True))
    assert len(chained.executor.chain("m0")) == bench.N_MODELS


def test_fast_transport_without_the_extra_names_the_field() -> None:
    """``http = "aiohttp"`` needs the ``fast`` extra; without it the error says how to
    get it and points at the field."""
    import importlib.util

    if importlib.util.find_spec("httpx_aiohttp") is not None:
        pytest.skip("httpx-aiohttp is installed here")
    cfg = {
        "providers": {
            "p": {"type": "openai", "compat": "vllm", "base_url": "http://x/v1", "http": "aiohttp"}
        },
        "models": {"m": {"provider": "p", "model": "m"}},
    }
    with pytest.raises(ConfigError) as info:
        build_orchestrator(cfg)
    assert info.value.field == "providers.p.http"
    assert "tierwise[fast]" in str(info.value)


async def test_an_anthropic_request_without_max_tokens_gets_its_deployments_max_output(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The Anthropic API requires max_tokens: config hands each model's largest output
    (the catalog's, or the deployment's override) to the provider, which sends it
    when a request sets none."""
    seen: list[int] = []

    def reply(req: Any) -> str:
        seen.append(req.json()["max_tokens"])
        return "ok"

    monkeypatch.setenv("TW_TEST_ANTHROPIC_KEY", "sk-ant-test-0000")
    async with MockLLMServer({"claude-sonnet-4-6": MockModel(reply=reply)}) as server:
        config = {
            "providers": {
                "anthropic": {
                    "type": "anthropic",
                    "base_url": server.base_url,
                    "api_key_env": "TW_TEST_ANTHROPIC_KEY",
                }
            },
            "models": {
                "plain": {"provider": "anthropic", "model": "claude-sonnet-4-6"},
            },
        }
        async with tw.Orchestrator.from_config(config) as orch:
            await orch.run("hello")
            expected = orch.deployments["plain"].max_output_tokens
        config["models"]["plain"]["max_output_tokens"] = 1234  # type: ignore[index]
        async with tw.Orchestrator.from_config(config) as orch:
            await orch.run("hello")
    assert expected is not None and expected > 4096
    assert seen == [expected, 1234]
