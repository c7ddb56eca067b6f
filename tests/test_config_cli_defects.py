"""Config and CLI defects found as a new user (issue #9 items 11-13, 15; issue #18 item 7)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import tierwise as tw
from tierwise.cli import main, meta_value
from tierwise.config import load_config
from tierwise.errors import ConfigError
from tierwise.routing.keyword import KeywordClassifier
from tierwise.types import Request

MISTRAL_SHAPED = "aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY"  # 32 mixed alphanumerics, no prefix
TOGETHER_SHAPED = "3f" * 32  # 64 hex
OPENAI_SHAPED = "sk-proj-Zq8xV3mK9wR2tY7uP4nL6jH1"


def _cfg(**provider: object) -> dict[str, object]:
    return {
        "providers": {"gw": {"type": "openai", **provider}},
        "models": {"m": {"provider": "gw", "model": "gpt-4o"}},
    }


# -- 9.11 ---------------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["127.0.0.1:8765/v1", "localhost:8000", "ftp://host/v1", "http://", "/v1"])
def test_a_base_url_without_scheme_or_host_is_a_config_error(url: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(_cfg(base_url=url))
    assert info.value.field == "providers.gw.base_url"
    assert "http://" in str(info.value)


def test_a_proper_base_url_passes() -> None:
    load_config(_cfg(base_url="http://127.0.0.1:8765/v1"))


# -- 9.13 ---------------------------------------------------------------------------------


def test_meta_values_mean_what_they_say() -> None:
    assert meta_value("false") is False and meta_value("No") is False and meta_value("off") is False
    assert meta_value("TRUE") is True and meta_value("yes") is True
    assert meta_value("3") == 3 and meta_value("0.5") == 0.5
    assert meta_value("alice") == "alice" and meta_value("nan") == "nan"


@pytest.mark.parametrize("hint", ["false", "0", "no", "off", "", False, 0])
def test_a_false_json_output_hint_does_not_route_to_structured(hint: object) -> None:
    keyword = KeywordClassifier.default()
    request = Request.from_prompt("hello there", metadata={"json_output": hint})
    assert keyword.classify(request).label != "structured"


@pytest.mark.parametrize("hint", ["true", "1", "yes", True])
def test_a_true_json_output_hint_routes_to_structured(hint: object) -> None:
    request = Request.from_prompt("hello there", metadata={"json_output": hint})
    assert KeywordClassifier.default().classify(request).label == "structured"


# -- 9.12 ---------------------------------------------------------------------------------


def test_check_config_warns_and_uses_the_run_lookup(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "tierwise.toml"
    path.write_text(
        """
[models.a]
provider = "openai"
model = "gpt-4o"
fallbacks = ["b"]

[models.b]
provider = "openai"
model = "my-private-model"
fallbacks = ["a"]

[strategies.r]
type = "router"
routes = { standard = "a", bulkk = "b" }
"""
    )
    old = os.environ.get("TIERWISE_CONFIG")
    os.environ["TIERWISE_CONFIG"] = str(path)
    try:
        code = main(["check-config", "--json"])
    finally:
        if old is None:
            del os.environ["TIERWISE_CONFIG"]
        else:
            os.environ["TIERWISE_CONFIG"] = old
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    warnings = "\n".join(out["warnings"])
    assert "never emits 'bulkk'" in warnings
    assert "no known price for 'my-private-model'" in warnings
    assert "fallback cycle a -> b -> a" in warnings
    assert len(out["warnings"]) == 3


def test_every_config_error_is_reported() -> None:
    data = {"models": {"m": {"provider": "openai", "model": "gpt-4o", "rpm": "fast", "tpm": -1, "rmp": 3}}}
    with pytest.raises(ConfigError) as info:
        load_config(data)
    fields = [f for f, _ in info.value.problems]
    assert set(fields) == {"models.m.rpm", "models.m.tpm", "models.m.rmp"}
    assert "more error" not in str(info.value)


# -- 18.7 ---------------------------------------------------------------------------------


@pytest.mark.parametrize("key", [OPENAI_SHAPED, MISTRAL_SHAPED, TOGETHER_SHAPED])
def test_a_key_pasted_into_any_field_is_never_echoed(key: str, capsys: pytest.CaptureFixture[str]) -> None:
    cases = [
        {"models": {"m": {"provider": key, "model": "gpt-4o"}}},
        {"models": {"m": {"provider": "openai", "model": "gpt-4o", "fallbacks": [key]}}},
        {"models": {key: {"provider": "openai", "model": "gpt-4o", "rpm": "x"}}},
        {"models": {"m": {"provider": "openai", "model": "gpt-4o", "rpm": key}}},
        _cfg(api_key_env=key),
        _cfg(base_url=key),
        {"models": {"m": {"provider": "openai", "model": "gpt-4o"}}, "strategies": {"s": {"type": key}}},
        {
            "models": {"m": {"provider": "openai", "model": "gpt-4o"}},
            "strategies": {"s": {"type": "router", "routes": {"standard": "m"}, "default": key}},
        },
    ]
    for data in cases:
        with pytest.raises(ConfigError) as info:
            tw.Orchestrator.from_config(data)
        err = info.value
        for text in (str(err), repr(err), str(err.field), repr(err.problems)):
            assert key not in text, text


def test_a_key_shaped_api_key_env_is_refused() -> None:
    with pytest.raises(ConfigError, match="NAME of an environment variable") as info:
        load_config(_cfg(api_key_env=MISTRAL_SHAPED))
    assert info.value.field == "providers.gw.api_key_env"
    load_config(_cfg(api_key_env="MISTRAL_API_KEY"))  # a name is fine


@pytest.mark.parametrize(
    "text",
    [
        "unknown model alias 'claude-sonnet-4-6'",
        "gpt-4o-2024-08-06 is not a deployment",
        "models.opus.fallbacks[0]",
        "http://127.0.0.1:8765/v1 is unreachable",
        "request_hash 9f2c3e1a",
    ],
)
def test_config_redaction_leaves_ordinary_text_alone(text: str) -> None:
    assert str(ConfigError(text)) == text


# -- 9.15 ---------------------------------------------------------------------------------


def test_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    audit = tmp_path / "audit.jsonl"
    record = {"v": 1, "ts": "2026-12-01T00:00:00Z", "model": "m", "cost_usd": 0.001, "latency_ms": 5.0}
    audit.write_text("\n".join(json.dumps({**record, "request_hash": f"h{i}"}) for i in range(2000)) + "\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "tierwise", "report", str(audit), "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.read(1)  # like `| head -c 1`: read a byte, then go away
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 0
    assert "Traceback" not in err and "BrokenPipe" not in err
