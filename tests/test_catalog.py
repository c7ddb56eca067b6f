"""Catalog: cost formula, lookups, immutability, config errors and the built-in table.

Expected dollar amounts are worked out by hand in each test (tokens × $/1M) so a
change to the formula or to a tutorial price fails loudly.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import tomllib
from importlib.resources import files
from pathlib import Path
from types import SimpleNamespace

import pytest

import tierwise.catalog as catalog_mod
from tierwise import Usage
from tierwise.catalog import Catalog, ModelSpec, UnknownModelError, compute_cost
from tierwise.errors import ConfigError

LOGGER = "tierwise.catalog"


def _approx(value: float) -> object:
    # Float sums of a handful of products: exact to ~1e-15 relative.
    return pytest.approx(value, rel=1e-12, abs=1e-15)


@pytest.fixture
def default() -> Catalog:
    return Catalog.default()


def _warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING]


# ── cost formula ─────────────────────────────────────────────────────────────


def test_openai_style_cost_cached_tokens_are_a_subset_of_input(default: Catalog) -> None:
    # OpenAI: prompt_tokens=10_000 of which cached_tokens=4_000; completion 500.
    # gpt-4o: $2.50 in, $1.25 cached, $10 out.
    usage = Usage(input_tokens=10_000, cached_input_tokens=4_000, output_tokens=500)
    # 6_000 × 2.50 + 4_000 × 1.25 + 500 × 10 = 15_000 + 5_000 + 5_000 = 25_000 µ$ → $0.025
    assert default.cost("gpt-4o", usage) == _approx(0.025)


def test_openai_style_cost_gpt_4o_mini(default: Catalog) -> None:
    # gpt-4o-mini: $0.15 in, $0.075 cached, $0.60 out.
    usage = Usage(input_tokens=2_000_000, cached_input_tokens=1_000_000, output_tokens=100_000)
    # 1M × 0.15 + 1M × 0.075 + 0.1M × 0.60 = 0.15 + 0.075 + 0.06 = $0.285
    assert default.cost("openai/gpt-4o-mini", usage) == _approx(0.285)


def test_anthropic_style_cost_with_cache_reads_and_writes(default: Catalog) -> None:
    # Anthropic wire usage: input_tokens=1_000 (uncached only), cache_creation=2_000,
    # cache_read=10_000, output=800. Normalized: input is the whole prompt = 13_000.
    usage = Usage(
        input_tokens=13_000, cache_write_tokens=2_000, cached_input_tokens=10_000, output_tokens=800
    )
    # opus-4.7: $5 in, $0.50 read, $6.25 write, $25 out
    # 1_000 × 5 + 10_000 × 0.5 + 2_000 × 6.25 + 800 × 25 = 5_000 + 5_000 + 12_500 + 20_000 = 42_500 µ$
    assert default.cost("claude-opus-4-7", usage) == _approx(0.0425)


def test_anthropic_cache_multipliers_are_applied(default: Catalog) -> None:
    # sonnet-4.6: 1M cache reads at 0.1 × $3 and 1M writes at 1.25 × $3, nothing else.
    usage = Usage(input_tokens=2_000_000, cached_input_tokens=1_000_000, cache_write_tokens=1_000_000)
    assert default.cost("claude-sonnet-4-6", usage) == _approx(0.30 + 3.75)


def test_cache_counts_larger_than_prompt_clamp_uncached_to_zero() -> None:
    spec = ModelSpec("m", "p", input=1.0, cached_input=0.5, cache_write=2.0, output=4.0)
    # Inconsistent report: 100 prompt tokens but 80 read + 50 written. Uncached must not
    # go negative (-30 × $1 would lower the bill); the cache counts are trusted.
    usage = Usage(input_tokens=100, cached_input_tokens=80, cache_write_tokens=50, output_tokens=0)
    assert compute_cost(spec, usage) == _approx((80 * 0.5 + 50 * 2.0) / 1e6)


def test_negative_counters_count_as_zero() -> None:
    spec = ModelSpec("m", "p", input=1.0, output=2.0)
    assert compute_cost(spec, Usage(input_tokens=-5, output_tokens=10)) == _approx(20 / 1e6)


def test_missing_cache_prices_fall_back_to_input_price() -> None:
    spec = ModelSpec("m", "p", input=2.0, output=8.0)
    usage = Usage(input_tokens=1_000, cached_input_tokens=300, cache_write_tokens=200, output_tokens=10)
    # every prompt token at $2, output at $8: 1_000 × 2 + 10 × 8 = 2_080 µ$
    assert compute_cost(spec, usage) == _approx(0.00208)


def test_only_needed_prices_must_be_known() -> None:
    input_only = ModelSpec("m", "p", input=1.0)
    assert compute_cost(input_only, Usage(input_tokens=1_000)) == _approx(0.001)
    assert compute_cost(input_only, Usage(input_tokens=1_000, output_tokens=1)) is None
    no_cache_price = ModelSpec("m", "p", output=1.0)  # input unknown → cache prices unknown too
    assert compute_cost(no_cache_price, Usage(input_tokens=10, cached_input_tokens=10)) is None


def test_reported_cost_wins(default: Catalog, caplog: pytest.LogCaptureFixture) -> None:
    usage = Usage(input_tokens=1_000_000, output_tokens=1_000_000, reported_cost_usd=0.0123)
    assert default.cost("gpt-4o", usage) == 0.0123
    assert compute_cost(default["gpt-4o"], usage) == 0.0123
    # ...even for a model the catalog has never heard of (OpenRouter's long tail), silently.
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert default.cost("openrouter/some/new-model", usage) == 0.0123
    assert _warnings(caplog) == []


def test_reported_zero_cost_is_not_unknown() -> None:
    spec = ModelSpec("m", "p")
    assert compute_cost(spec, Usage(input_tokens=10, reported_cost_usd=0.0)) == 0.0


# ── unknown → None with exactly one warning ──────────────────────────────────


def test_unknown_model_is_none_with_one_warning(default: Catalog, caplog: pytest.LogCaptureFixture) -> None:
    cat = default.add(ModelSpec("other", "p", input=1.0, output=1.0))  # fresh warn-once memo
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        results = [cat.cost("no-such-model", Usage(input_tokens=10, output_tokens=10)) for _ in range(50)]
    assert results == [None] * 50
    records = _warnings(caplog)
    assert len(records) == 1
    assert "no-such-model" in records[0].getMessage()


def test_warning_is_per_catalog_and_per_model(caplog: pytest.LogCaptureFixture) -> None:
    a = Catalog([ModelSpec("known", "p", input=1.0, output=1.0)])
    b = a.add(ModelSpec("x", "p", input=1.0, output=1.0))
    usage = Usage(input_tokens=1, output_tokens=1)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        for _ in range(3):
            a.cost("m1", usage)
            a.cost("m2", usage)
            b.cost("m1", usage)
    assert sorted(r.getMessage().split("'")[1] for r in _warnings(caplog)) == ["m1", "m1", "m2"]


def test_missing_price_is_none_with_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    cat = Catalog([ModelSpec("half-priced", "p", input=1.0)])
    usage = Usage(input_tokens=100, output_tokens=100)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert [cat.cost("half-priced", usage) for _ in range(10)] == [None] * 10
    records = _warnings(caplog)
    assert len(records) == 1
    assert "p/half-priced" in records[0].getMessage()
    assert "output" in records[0].getMessage()
    assert cat.cost("half-priced", Usage(input_tokens=100)) == _approx(100 / 1e6)  # input alone is fine


# ── lookups ──────────────────────────────────────────────────────────────────


def test_lookup_by_ref_name_alias_and_wire_name(default: Catalog) -> None:
    opus = default["anthropic/claude-opus-4-7"]
    assert opus.ref == "anthropic/claude-opus-4-7"
    assert default["claude-opus-4-7"] is opus
    assert default["opus-4.7"] is opus  # alias
    assert default["anthropic/opus-4.7"] is opus  # provider-qualified alias
    assert default["CLAUDE-OPUS-4-7"] is opus  # case-insensitive
    assert default["claude-haiku-4-5-20251001"] is default["claude-haiku-4-5"]  # dated snapshot alias
    assert default["gpt-4o-2024-08-06"] is default["gpt-4o"]

    custom = Catalog([ModelSpec("prod-gpt", "azure", model="gpt-4o-eastus-deploy", input=2.5, output=10.0)])
    assert custom["gpt-4o-eastus-deploy"].name == "prod-gpt"  # wire name
    assert custom["azure/prod-gpt"].model == "gpt-4o-eastus-deploy"


def test_contains_iter_len(default: Catalog) -> None:
    assert "gpt-4o" in default
    assert "openai/gpt-4o" in default
    assert "gpt-4o-2024-05-13" not in default  # priced differently: deliberately not an alias
    assert 42 not in default
    specs = list(default)
    assert len(specs) == len(default) > 20
    assert all(isinstance(s, ModelSpec) for s in specs)


def test_ambiguous_name_needs_a_provider() -> None:
    cat = Catalog(
        [
            ModelSpec("llama-4", "groq", input=0.1, output=0.2),
            ModelSpec("llama-4", "together", input=0.2, output=0.4),
        ]
    )
    assert cat.get("llama-4") is None
    assert cat.get("llama-4", provider="together") is cat["together/llama-4"]
    with pytest.raises(KeyError) as info:
        cat["llama-4"]
    assert "groq/llama-4" in str(info.value)
    assert "together/llama-4" in str(info.value)
    assert cat.cost("llama-4", Usage(input_tokens=1_000_000), provider="groq") == _approx(0.1)


def test_ref_beats_a_gateway_wire_name_that_looks_like_a_ref() -> None:
    native = ModelSpec("claude-opus-4-7", "anthropic", input=5.0, output=25.0)
    routed = ModelSpec("or-opus", "openrouter", model="anthropic/claude-opus-4-7", input=6.0, output=30.0)
    cat = Catalog([native, routed])
    assert cat["anthropic/claude-opus-4-7"] is native
    assert cat.get("anthropic/claude-opus-4-7", provider="openrouter") is routed


def test_getitem_suggests_close_matches(default: Catalog) -> None:
    with pytest.raises(KeyError) as info:
        default["claude-opus-4-6"]
    err = info.value
    assert isinstance(err, UnknownModelError)
    assert "claude-opus-4-7" in err.suggestions
    assert "did you mean" in str(err)
    assert "claude-opus-4-7" in str(err)
    with pytest.raises(KeyError, match="unknown model 'zzzzzz'"):
        default["zzzzzz"]


def test_spec_for_a_deployment(default: Catalog) -> None:
    via_gateway = default.spec_for("gpt-4o", provider="gateway", input=2.0)
    assert via_gateway is not None
    assert (via_gateway.provider, via_gateway.model, via_gateway.input, via_gateway.output) == (
        "gateway",
        "gpt-4o",
        2.0,
        10.0,
    )
    assert default["gpt-4o"].input == 2.5  # the catalog itself is untouched
    assert default.spec_for("my-finetune", provider="openai") is None
    custom = default.spec_for("my-finetune", provider="openai", input=1.0, output=2.0, context_window=8192)
    assert custom is not None
    assert custom.ref == "openai/my-finetune"
    assert custom.context_window == 8192
    with pytest.raises(ConfigError) as info:
        default.spec_for("gpt-4o", provider="openai", input=-1)
    assert info.value.field == "models.gpt-4o.input"


# ── immutability: overrides, scaled, add ────────────────────────────────────


def test_override_returns_new_catalog_and_leaves_default_alone(default: Catalog) -> None:
    cheaper = default.override("gpt-5.5", input=5.0, cached_input=0.5, output=30.0)
    assert cheaper is not default
    assert (cheaper["gpt-5.5"].input, cheaper["gpt-5.5"].output) == (5.0, 30.0)
    assert (default["gpt-5.5"].input, default["gpt-5.5"].output) == (3.0, 12.0)
    assert Catalog.default()["gpt-5.5"].input == 3.0
    assert Catalog.default() is default  # cached, never rebuilt
    assert cheaper.as_of == default.as_of
    with pytest.raises(KeyError):
        default.override("no-such-model", input=1.0)
    with pytest.raises(ConfigError) as info:
        default.override("gpt-4o", ouput=1.0)
    assert info.value.field == "models.gpt-4o.ouput"
    assert "output" in str(info.value)


def test_catalog_attributes_cannot_be_reassigned(default: Catalog) -> None:
    with pytest.raises(AttributeError, match="immutable"):
        default.as_of = "1999-01-01"
    assert default.as_of != "1999-01-01"


def test_two_keys_for_one_model_patch_cumulatively(default: Catalog) -> None:
    cat = default.with_overrides({"opus-4.7": {"input": 4.0}, "anthropic/claude-opus-4-7": {"output": 20.0}})
    assert (cat["claude-opus-4-7"].input, cat["claude-opus-4-7"].output) == (4.0, 20.0)
    assert len(cat) == len(default)


def test_two_derived_catalogs_do_not_affect_each_other(default: Catalog) -> None:
    a = default.override("gpt-4o", input=1.0)
    b = default.override("gpt-4o", input=9.0)
    assert (a["gpt-4o"].input, b["gpt-4o"].input, default["gpt-4o"].input) == (1.0, 9.0, 2.5)


def test_with_overrides_patches_and_adds(default: Catalog) -> None:
    cat = default.with_overrides(
        {
            "opus-4.7": {"input": 4.0},
            "my-llama": {"provider": "vllm", "input": 0.0, "output": 0.0, "context_window": 32_768},
        }
    )
    assert cat["claude-opus-4-7"].input == 4.0
    assert cat["claude-opus-4-7"].output == 25.0
    assert cat["vllm/my-llama"].context_window == 32_768
    assert cat.cost("my-llama", Usage(input_tokens=10, output_tokens=10)) == 0.0
    assert "my-llama" not in default
    assert default["claude-opus-4-7"].input == 5.0
    with pytest.raises(KeyError):
        default.with_overrides({"not-a-model": {"input": 1.0}})  # no provider → not an addition
    replacement = ModelSpec("gpt-4o", "openai", input=1.0, output=1.0)
    assert default.with_overrides({"gpt-4o": replacement})["gpt-4o"] is replacement


def test_scaled_returns_new_catalog(default: Catalog) -> None:
    gateway = default.scaled(0.8, providers=["openai"])
    assert gateway["gpt-4o"].input == pytest.approx(2.0)
    assert gateway["gpt-4o"].cached_input == pytest.approx(1.0)
    assert gateway["gpt-4o"].output == pytest.approx(8.0)
    assert gateway["claude-opus-4-7"].input == 5.0  # other providers untouched
    assert default["gpt-4o"].input == 2.5
    everything = default.scaled(0.7)
    assert everything["claude-opus-4-7"].output == pytest.approx(17.5)
    mistral = everything["mistral-large-latest"]
    assert mistral.cached_input is None  # unknown stays unknown (falls back to the scaled input)
    assert mistral.cached_input_price == pytest.approx(0.35)
    with pytest.raises(ValueError, match="multiplier"):
        default.scaled(-1)
    with pytest.raises(ValueError, match="unknown provider"):
        default.scaled(0.9, providers="openia")


def test_add_returns_new_catalog_and_replaces_same_ref(default: Catalog) -> None:
    spec = ModelSpec("house-model", "vllm", input=0.0, output=0.0, context_window=8192)
    bigger = default.add(spec)
    assert len(bigger) == len(default) + 1
    assert "house-model" in bigger
    assert "house-model" not in default
    repriced = bigger.add(dataclasses.replace(spec, input=0.1))
    assert len(repriced) == len(bigger)
    assert repriced["house-model"].input == 0.1


def test_model_spec_is_frozen_and_validated() -> None:
    spec = ModelSpec("gpt-x", "openai", input=1, output=2)
    assert spec.model == "gpt-x"  # wire name defaults to the name
    assert spec.input == 1.0
    assert isinstance(spec.input, float)
    assert spec.ref == "openai/gpt-x"
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.input = 3.0  # type: ignore[misc]
    with pytest.raises(ValueError, match="input"):
        ModelSpec("m", "p", input=-0.5)
    with pytest.raises(ValueError, match="context_window"):
        ModelSpec("m", "p", context_window=0)
    with pytest.raises(ValueError, match="provider"):
        ModelSpec("m", "")
    with pytest.raises(ValueError, match="duplicate"):
        Catalog([spec, spec])


# ── config rows ──────────────────────────────────────────────────────────────


@pytest.mark.parametrize(
    ("row", "field", "fragment"),
    [
        ({"provider": "openai", "input": -1}, "models.x.input", ">= 0"),
        ({"provider": "openai", "input": "cheap"}, "models.x.input", "number"),
        ({"provider": "openai", "output": True}, "models.x.output", "number"),
        ({"provider": "openai", "context_window": "128k"}, "models.x.context_window", "whole number"),
        ({"provider": "openai", "max_output_tokens": 0}, "models.x.max_output_tokens", "> 0"),
        ({"provider": "openai", "aliases": "x2"}, "models.x.aliases", "list"),
        ({"provider": "openai", "vision": "yes"}, "models.x.vision", "true or false"),
        ({"provider": "openai", "inptu": 1.0}, "models.x.inptu", "did you mean 'input'"),
        ({"input": 1.0}, "models.x.provider", "required"),
        ({"provider": ""}, "models.x.provider", "non-empty"),
    ],
)
def test_from_mapping_errors_name_the_field(row: dict[str, object], field: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        Catalog.from_mapping({"x": row})
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}: ")
    assert fragment in str(info.value)


def test_from_mapping_row_must_be_a_table() -> None:
    with pytest.raises(ConfigError) as info:
        Catalog.from_mapping({"x": 3.0})  # type: ignore[dict-item]
    assert info.value.field == "models.x"


def test_from_mapping_duplicate_refs() -> None:
    with pytest.raises(ConfigError) as info:
        Catalog.from_mapping({"a": {"provider": "p", "name": "m"}, "b": {"provider": "p", "name": "m"}})
    assert info.value.field == "models.b"
    assert "models.a" in str(info.value)


def test_from_mapping_builds_specs() -> None:
    cat = Catalog.from_mapping(
        {
            "fast": {
                "provider": "openai",
                "model": "gpt-4o-mini",
                "aliases": ["cheap"],
                "input": 0.15,
                "output": 0.6,
                "context_window": 128_000,
                "tools": True,
            }
        },
        as_of="2026-01-01",
    )
    spec = cat["cheap"]
    assert (spec.name, spec.model, spec.aliases, spec.tools, spec.vision) == (
        "fast",
        "gpt-4o-mini",
        ("cheap",),
        True,
        False,
    )
    assert cat.as_of == "2026-01-01"


def test_from_toml(tmp_path: Path) -> None:
    path = tmp_path / "prices.toml"
    path.write_text(
        'as_of = 2026-05-01\n[sources]\nacme = "https://acme.example/pricing"\n'
        '[models."acme-1"]\nprovider = "acme"\ninput = 1\noutput = 2\ncontext_window = 1000\n'
    )
    cat = Catalog.from_toml(path)
    assert cat.as_of == "2026-05-01"
    assert cat.sources == {"acme": "https://acme.example/pricing"}
    assert cat.cost("acme-1", Usage(input_tokens=1_000_000, output_tokens=1_000_000)) == _approx(3.0)
    path.write_text('[models."acme-1"]\nprovider = "acme"\ninput = -2\n')
    with pytest.raises(ConfigError) as info:
        Catalog.from_toml(path)
    assert info.value.field == "models.acme-1.input"
    path.write_text("[models\n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        Catalog.from_toml(path)


# ── the built-in table ───────────────────────────────────────────────────────

REQUIRED = [
    "claude-opus-4-7",
    "claude-sonnet-4-6",
    "claude-haiku-4-5",
    "gpt-5.5",
    "gpt-5",
    "gpt-5-mini",
    "gpt-4.1",
    "gpt-4.1-mini",
    "gpt-4o",
    "gpt-4o-mini",
    "deepseek-chat",
    "deepseek-reasoner",
    "mistral-large-latest",
    "mistral-medium-latest",
    "mistral-small-latest",
    "codestral-latest",
    "gemini-2.5-pro",
    "gemini-2.5-flash",
    "gemini-2.5-flash-lite",
]


@pytest.mark.parametrize("name", REQUIRED)
def test_required_models_are_built_in(default: Catalog, name: str) -> None:
    assert name in default


def test_every_builtin_row_is_priced_and_sized(default: Catalog) -> None:
    for spec in default:
        assert spec.input is not None and spec.input >= 0, spec.ref
        assert spec.priced, spec.ref
        if spec.embedding:
            # Embedding models bill input only: no output price, and no chat capabilities.
            assert spec.output is None, spec.ref
            assert not (spec.tools or spec.json_schema or spec.vision or spec.reasoning), spec.ref
        else:
            assert spec.output is not None and spec.output >= spec.input, spec.ref
        assert spec.context_window is not None and spec.context_window > 0, spec.ref
        if spec.max_output_tokens is not None:
            assert 0 < spec.max_output_tokens <= spec.context_window, spec.ref
        if spec.cached_input is not None:
            assert spec.cached_input <= spec.input, spec.ref  # a cache hit is never dearer
        assert spec.provider in {"anthropic", "openai", "deepseek", "mistral", "gemini"}, spec.ref


def test_every_builtin_key_resolves_to_its_own_row(default: Catalog) -> None:
    # No name, wire name or alias may be shadowed or ambiguous inside the built-in table.
    for spec in default:
        for key in (spec.ref, spec.name, spec.model, *spec.aliases):
            assert default.get(key) is spec, (key, spec.ref)


@pytest.mark.parametrize(
    ("name", "provider", "input_price", "output_price"),
    [
        ("claude-opus-4-7", "anthropic", 5.0, 25.0),
        ("claude-sonnet-4-6", "anthropic", 3.0, 15.0),
        ("gpt-5.5", "openai", 3.0, 12.0),
        ("gpt-4o", "openai", 2.5, 10.0),
        ("gpt-4o-mini", "openai", 0.15, 0.60),
        ("deepseek-chat", "deepseek", 0.27, 1.10),
    ],
)
def test_tutorial_prices_exactly(
    default: Catalog, name: str, provider: str, input_price: float, output_price: float
) -> None:
    spec = default[name]
    assert spec.provider == provider
    assert spec.input == input_price
    assert spec.output == output_price


def test_deepseek_cache_hit_and_anthropic_cache_ratios(default: Catalog) -> None:
    assert default["deepseek-chat"].cached_input == 0.07
    for name in ("claude-opus-4-7", "claude-sonnet-4-6", "claude-haiku-4-5"):
        spec = default[name]
        assert spec.input is not None
        assert spec.cached_input == pytest.approx(0.1 * spec.input)
        assert spec.cache_write == pytest.approx(1.25 * spec.input)


def test_builtin_as_of_and_sources(default: Catalog) -> None:
    assert default.as_of is not None
    dt.date.fromisoformat(default.as_of)
    for provider in default.providers:
        assert default.sources.get(provider, "").startswith("https://"), provider


def test_data_file_is_a_package_resource_with_as_of() -> None:
    # importlib.resources is how an installed wheel finds it: the file must live in the package.
    resource = files("tierwise") / "data" / "prices.toml"
    assert resource.is_file()
    document = tomllib.loads(resource.read_text(encoding="utf-8"))
    assert isinstance(document["as_of"], str)
    dt.date.fromisoformat(document["as_of"])
    assert set(document["models"]) >= set(REQUIRED)


def test_builtin_loader_falls_back_to_importlib_resources(monkeypatch: pytest.MonkeyPatch) -> None:
    direct = catalog_mod._read_builtin_text()

    # As inside a zip archive: there is no data directory on disk next to the module.
    fake_path = SimpleNamespace(dirname=lambda _: "/nonexistent", join=lambda *parts: "/".join(parts))
    monkeypatch.setattr(catalog_mod, "os", SimpleNamespace(path=fake_path))
    assert catalog_mod._read_builtin_text() == direct


def test_default_is_loaded_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = Catalog._load_builtin.__func__  # type: ignore[attr-defined]

    def counting(cls: type[Catalog]) -> Catalog:
        calls.append(1)
        return real(cls)  # type: ignore[no-any-return]

    monkeypatch.setattr(catalog_mod, "_DEFAULT", None)
    monkeypatch.setattr(Catalog, "_load_builtin", classmethod(counting))
    first = Catalog.default()
    assert Catalog.default() is first
    assert len(calls) == 1
