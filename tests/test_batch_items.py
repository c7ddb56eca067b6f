"""Batch items end to end: what reaches the provider, and what never does.

A malformed JSONL line used to be sent as a literal prompt (and paid for); item
keys such as ``max_tokens`` were dropped silently, and a typo (``max_tokns``) too.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

import tierwise as tw
from tierwise.cli import main
from tierwise.execution.executor import Deployment
from tierwise.testing import FunctionProvider, MockLLMServer, MockModel


def _recording() -> tuple[tw.Orchestrator, list[tw.Request]]:
    seen: list[tw.Request] = []

    def answer(model: str, request: tw.Request) -> str:
        seen.append(request)
        return "ok"

    return tw.Orchestrator([Deployment("m", FunctionProvider(answer), "m")]), seen


async def test_orch_batch_applies_item_parameters() -> None:
    orch, seen = _recording()
    item = {
        "prompt": "p",
        "system": "be brief",
        "max_tokens": 7,
        "temperature": 0.2,
        "top_p": 0.5,
        "stop": ["END"],
        "seed": 11,
        "response_format": {"type": "json_object"},
        "metadata": {"team": "a"},
    }
    async with orch:
        (result,) = await orch.batch([item])
    assert result.ok, result.error
    (req,) = seen
    assert (req.max_tokens, req.temperature, req.top_p, req.stop, req.seed) == (7, 0.2, 0.5, ["END"], 11)
    assert req.response_format == {"type": "json_object"}
    assert req.messages[0].role == "system" and req.metadata["team"] == "a"


async def test_orch_batch_refuses_unknown_and_bad_keys_without_sending() -> None:
    orch, seen = _recording()
    items = [{"prompt": "a", "max_tokns": 5}, {"prompt": "b", "max_tokens": -1}, {"prompt": "c"}]
    async with orch:
        results = await orch.batch(items)
    assert [r.ok for r in results] == [False, False, True]
    assert "unknown key 'max_tokns'" in (results[0].error or "")
    assert "did you mean 'max_tokens'" in (results[0].error or "")
    assert "item 1: 'max_tokens' must be a whole number" in (results[1].error or "")
    assert [r.prompt_text for r in seen] == ["c"]


@pytest.fixture(scope="module")
def server() -> Iterator[MockLLMServer]:
    with MockLLMServer.run_in_thread({"m": MockModel(reply="fine", input_tokens=3, output_tokens=2)}) as srv:
        yield srv


def test_cli_batch_malformed_line_is_an_error_row_naming_its_line(
    tmp_path: Path, server: MockLLMServer, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "tierwise.toml"
    config.write_text(
        f"""
[providers.mock]
type = "openai"
compat = "vllm"
base_url = "{server.base_url}/v1"

[models.m]
provider = "mock"
model = "m"
input_price = 1.0
output_price = 1.0
""",
        encoding="utf-8",
    )
    items = tmp_path / "in.jsonl"
    items.write_text(
        '{"prompt": "first"}\n\n{"prompt": "broken"\nplain text prompt\n{"prompt": "x", "max_tokns": 3}\n',
        encoding="utf-8",
    )
    out = tmp_path / "out.jsonl"
    before = len(server.requests)
    code = main(["batch", str(items), "--out", str(out), "--config", str(config), "--json", "--quiet"])
    summary = json.loads(capsys.readouterr().out)
    assert code == 1 and summary["items"] == 4 and summary["ok"] == 2 and summary["failed"] == 2
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["index"] for r in records] == [0, 1, 2, 3]  # input order, as --help says
    assert [r["ok"] for r in records] == [True, False, True, False]
    assert "line 3" in records[1]["error"] and "malformed JSON" in records[1]["error"]
    assert "max_tokns" in records[3]["error"]
    sent = server.requests[before:]
    assert len(sent) == 2  # the broken line and the typo were never sent
    assert not any(b"broken" in r.body for r in sent)
