"""``--meta`` values are typed on every command that takes them (run, explain, batch).

The bug: ``--meta json_output=false`` reached the keyword classifier as the string
"false", which is truthy, so the request went to the (dearer) structured tier.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tierwise.cli import main
from tierwise.testing import MockLLMServer, MockModel


@pytest.fixture(scope="module")
def server() -> Iterator[MockLLMServer]:
    models = {
        "cheap-model": MockModel(reply="from cheap", input_tokens=10, output_tokens=5),
        "json-model": MockModel(reply='{"from": "json"}', input_tokens=10, output_tokens=5),
    }
    with MockLLMServer.run_in_thread(models) as srv:
        yield srv


@pytest.fixture
def config(tmp_path: Path, server: MockLLMServer) -> Path:
    path = tmp_path / "tierwise.toml"
    path.write_text(
        f"""
[providers.mock]
type = "openai"
compat = "vllm"
base_url = "{server.base_url}/v1"

[models.cheap]
provider = "mock"
model = "cheap-model"
input_price = 0.1
output_price = 0.1

[models.json]
provider = "mock"
model = "json-model"
input_price = 1.0
output_price = 1.0

[strategies.default]
type = "router"
routes = {{ simple = "cheap", standard = "cheap", structured = "json" }}
""",
        encoding="utf-8",
    )
    return path


@pytest.mark.parametrize(
    ("value", "label"),
    [
        ("false", "standard"),
        ("OFF", "standard"),
        ("0", "standard"),
        ("true", "structured"),
        ("Yes", "structured"),
    ],
)
def test_explain_meta_is_typed(
    config: Path, capsys: pytest.CaptureFixture[str], value: str, label: str
) -> None:
    prompt = "Tell me about the weather in spring and why it changes so much from day to day"
    code = main(["explain", prompt, "--meta", f"json_output={value}", "--config", str(config), "--json"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["label"] == "structured") is (label == "structured"), out


def test_batch_meta_is_typed_and_applied(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    items = tmp_path / "in.jsonl"
    items.write_text('"describe a spring day in two sentences"\n', encoding="utf-8")
    out = tmp_path / "out.jsonl"
    for value, model in (("false", "cheap"), ("true", "json")):
        out.unlink(missing_ok=True)
        argv = ["batch", str(items), "--out", str(out), "--meta", f"json_output={value}"]
        code = main([*argv, "--config", str(config), "--json", "--quiet"])
        assert code == 0, capsys.readouterr()
        capsys.readouterr()
        (record,) = [json.loads(line) for line in out.read_text().splitlines()]
        assert record["response"]["deployment"] == model, record
