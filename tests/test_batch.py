"""Batch: input order, per-item errors, progress, and resume without re-buying answers."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest

import tierwise as tw
from tierwise.errors import BadRequestError
from tierwise.execution.executor import Deployment
from tierwise.strategies.batch import BatchProgress, InvalidItem, render_items, run_batch
from tierwise.testing import FunctionProvider
from tierwise.types import Request


def orchestrator(fn: object) -> tuple[tw.Orchestrator, list[str]]:
    seen: list[str] = []

    async def answer(model: str, request: tw.Request) -> str:
        seen.append(request.prompt_text)
        await anyio.sleep(0.001 * (len(seen) % 3))  # finish out of order
        return fn(request.prompt_text)  # type: ignore[operator]

    provider = FunctionProvider(answer)
    return tw.Orchestrator([Deployment("m", provider, "m")]), seen


async def test_results_in_input_order_with_errors_captured() -> None:
    def fn(prompt: str) -> str:
        if "3" in prompt:
            raise BadRequestError("item three is bad")
        return prompt.upper()

    orch, seen = orchestrator(fn)
    progress: list[BatchProgress] = []
    async with orch:
        results = await orch.batch(
            [str(i) for i in range(8)], "item {item}", concurrency=3, progress=progress.append
        )
    assert [r.index for r in results] == list(range(8))
    assert [r.response.text if r.response else None for r in results] == [
        "ITEM 0",
        "ITEM 1",
        "ITEM 2",
        None,
        "ITEM 4",
        "ITEM 5",
        "ITEM 6",
        "ITEM 7",
    ]
    bad = results[3]
    assert not bad.ok
    assert bad.error_type == "BadRequestError"
    assert "item three is bad" in (bad.error or "")
    assert len(seen) == 8
    assert [p.done for p in progress] == list(range(1, 9))
    assert progress[-1].failed == 1
    assert progress[-1].total == 8


async def test_concurrency_is_bounded() -> None:
    running = peak = 0

    async def answer(model: str, request: tw.Request) -> str:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await anyio.sleep(0.005)
        running -= 1
        return "ok"

    orch = tw.Orchestrator([Deployment("m", FunctionProvider(answer), "m")])
    async with orch:
        await run_batch(orch, [f"p{i}" for i in range(20)], concurrency=4)
    assert peak == 4


async def test_resume_skips_what_succeeded_and_retries_failures(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    fail = {"1"}

    def fn(prompt: str) -> str:
        if prompt.split()[-1] in fail:
            raise BadRequestError("flaky")
        return "answer " + prompt

    orch, seen = orchestrator(fn)
    items = ["0", "1", "2", "3"]
    async with orch:
        first = await run_batch(orch, items, "q {item}", output=out)
        assert [r.ok for r in first] == [True, False, True, True]
        # A crash mid-write leaves a cut line; it must not break the resume.
        with out.open("a") as fh:
            fh.write('{"index": 3, "ok": tr')
        fail.clear()
        seen.clear()
        second = await run_batch(orch, items, "q {item}", output=out)
    assert seen == ["q 1"]  # only the failed item is paid for again
    assert [r.ok for r in second] == [True, True, True, True]
    assert [r.resumed for r in second] == [True, False, True, True]
    assert second[0].response is not None
    assert second[0].response.text == "answer q 0"


async def test_resume_refuses_a_changed_input(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    orch, _ = orchestrator(lambda p: "x")
    async with orch:
        await run_batch(orch, ["a", "b"], output=out)
        with pytest.raises(ValueError, match="different prompt"):
            await run_batch(orch, ["a", "CHANGED"], output=out)


def test_render_items_shapes_and_errors() -> None:
    reqs = render_items(["x", {"prompt": "y", "system": "s", "metadata": {"team": "a"}}], None)
    assert [r.prompt_text for r in reqs] == ["x", "s\ny"]
    assert reqs[1].metadata == {"team": "a"}
    assert render_items([{"name": "Ada"}], "Hi {name}")[0].prompt_text == "Hi Ada"
    (bad,) = render_items([{"name": "Ada"}], "{age}")
    assert isinstance(bad, InvalidItem) and "item 0: template field 'age'" in bad.message
    (bad,) = render_items([42], None)
    assert isinstance(bad, InvalidItem) and "item 0" in bad.message


def test_item_parameters_apply_and_unknown_keys_are_named() -> None:
    (req,) = render_items([{"prompt": "p", "max_tokens": 7, "temperature": 0.2, "stop": "END"}], None)
    assert isinstance(req, Request)
    assert (req.max_tokens, req.temperature, req.stop) == (7, 0.2, ["END"])
    (bad,) = render_items([{"prompt": "p", "max_tokns": 7}], None)
    assert isinstance(bad, InvalidItem)
    assert "unknown key 'max_tokns'" in bad.message and "did you mean 'max_tokens'" in bad.message


async def test_invalid_items_are_error_rows_and_nothing_is_sent(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    orch, seen = orchestrator(lambda p: "x")
    async with orch:
        items = ["a", {"prompt": "b", "max_tokns": 3}, InvalidItem("line 3: malformed JSON"), "d"]
        results = await run_batch(orch, items, output=out, concurrency=4)
    assert [r.ok for r in results] == [True, False, False, True]
    assert results[2].error_type == "InvalidItem" and "line 3" in (results[2].error or "")
    assert seen == ["a", "d"] or sorted(seen) == ["a", "d"]
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [rec["index"] for rec in lines] == [0, 1, 2, 3]  # input order


async def test_output_records_are_json_per_line(tmp_path: Path) -> None:
    out = tmp_path / "o.jsonl"
    orch, _ = orchestrator(lambda p: "fine")
    async with orch:
        await run_batch(orch, ["a", "b", "c"], output=out)
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(r["index"] for r in records) == [0, 1, 2]
    assert all(r["ok"] and r["response"]["text"] == "fine" for r in records)
