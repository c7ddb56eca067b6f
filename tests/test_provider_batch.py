"""Provider batch APIs: wire formats, routing, cost at batch price, resume after SIGKILL.

Wire formats follow the providers' documented shapes:

* OpenAI Batch — https://platform.openai.com/docs/guides/batch and
  https://platform.openai.com/docs/api-reference/batch (JSONL input file uploaded to
  ``/v1/files`` with ``purpose=batch``; ``POST /v1/batches``; output and error files).
* Anthropic Message Batches — https://docs.anthropic.com/en/api/creating-message-batches
  and https://docs.anthropic.com/en/api/retrieving-message-batch-results.
* Gemini batch mode — https://ai.google.dev/gemini-api/docs/batch-mode and
  https://ai.google.dev/api/batch-mode (inlined requests, ``batches/{id}`` operations).

Everything runs against the real loopback ``MockLLMServer`` (real sockets); time in
the in-process tests is a ``FakeClock`` shared by the runner and the mock's batches.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import tierwise as tw
from tierwise.catalog import Catalog, batch_discount, compute_cost
from tierwise.errors import BadRequestError, ConfigError, ProtocolError
from tierwise.providers import Anthropic, Gemini, OpenAI
from tierwise.providers._batch import BatchItemNotRun
from tierwise.strategies.provider_batch import job_path, job_status
from tierwise.testing import FakeClock, MockLLMServer
from tierwise.types import Request

KEYS = {"OPENAI_API_KEY": "sk-batch-test-openai", "ANTHROPIC_API_KEY": "sk-ant-batch-test"}


def _providers(base: str) -> list[Any]:
    return [
        OpenAI(api_key="sk-o", base_url=base + "/v1"),
        Anthropic(api_key="sk-a", base_url=base),
        Gemini(api_key="g-key", base_url=base + "/v1beta"),
    ]


def _config(base: str) -> dict[str, Any]:
    return {
        "providers": {
            "openai": {"type": "openai", "base_url": base + "/v1", "api_key_env": "OPENAI_API_KEY"},
            "anthropic": {"type": "anthropic", "base_url": base, "api_key_env": "ANTHROPIC_API_KEY"},
        },
        "models": {
            "opus": {"provider": "anthropic", "model": "claude-opus-4-7"},
            "mini": {"provider": "openai", "model": "gpt-5-mini"},
            "nano": {"provider": "openai", "model": "gpt-5-nano"},
        },
        "strategies": {
            "auto": {
                "type": "router",
                "classifier": "keyword",
                "default": "standard",
                "routes": {"complex": "opus", "standard": "mini", "bulk": "nano"},
            },
            "ladder": {"type": "cascade", "targets": ["nano", "opus"], "accept": ["finish_reason"]},
        },
        "default_strategy": "auto",
    }


TIERS = ("complex", "standard", "bulk")
DEPLOYMENT = {"complex": "opus", "standard": "mini", "bulk": "nano"}


def _items(n: int) -> list[dict[str, Any]]:
    return [{"prompt": f"item number {i}", "metadata": {"tier": TIERS[i % 3]}} for i in range(n)]


@pytest.fixture
def keys(monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in KEYS.items():
        monkeypatch.setenv(k, v)


# -- wire formats ------------------------------------------------------------------------


async def test_each_wire_submits_polls_and_collects_typed_per_item_results() -> None:
    async with MockLLMServer() as srv:
        srv.batches.complete_after_s = 0.0
        srv.batches.item_errors["bad"] = 400
        srv.batches.malformed_items.add("cut")
        for provider in _providers(srv.base_url):
            wire = provider.batch_api()
            assert wire is not None
            items = [(cid, Request.from_prompt(f"hello {cid}")) for cid in ("ok1", "bad", "cut", "ok2")]
            info = await wire.submit("m1", items, label="job-1")
            assert (await wire.status(info.id)).state == "ended"
            results = {r.custom_id: r for r in await wire.results(info.id, "m1", [c for c, _ in items])}
            for cid in ("ok1", "ok2"):
                response = results[cid].response
                assert results[cid].outcome == "succeeded" and response is not None
                assert response.text == f"Mock reply from m1: hello {cid}"
                assert response.usage.output_tokens > 0
            assert isinstance(results["bad"].error, BadRequestError)
            # The malformed line is a typed error of its own; the others were collected.
            broken = [r for cid, r in results.items() if cid not in ("ok1", "ok2", "bad")]
            assert len(broken) == 1 and isinstance(broken[0].error, ProtocolError)
            await provider.aclose()


async def test_wire_shapes_follow_the_documented_formats() -> None:
    async with MockLLMServer() as srv:
        srv.batches.complete_after_s = 0.0
        openai, anthropic, gemini = _providers(srv.base_url)
        for provider in (openai, anthropic, gemini):
            wire = provider.batch_api()
            assert wire is not None
            await wire.submit("m1", [("a-1", Request.from_prompt("hi", max_tokens=50))], label="lbl")
            await provider.aclose()
        by_path = {r.path.split("?")[0]: r for r in srv.requests}
        upload = by_path["/v1/files"]
        assert upload.headers["content-type"].startswith("multipart/form-data; boundary=")
        assert b'name="purpose"\r\n\r\nbatch' in upload.body
        line = json.loads(srv.batches.files["file-mock000001"])
        assert (
            line["custom_id"] == "a-1" and line["method"] == "POST" and line["url"] == "/v1/chat/completions"
        )
        assert line["body"]["model"] == "m1" and line["body"]["max_completion_tokens"] == 50
        created = json.loads(by_path["/v1/batches"].body)
        assert created["endpoint"] == "/v1/chat/completions" and created["completion_window"] == "24h"
        ant = json.loads(by_path["/v1/messages/batches"].body)
        assert ant["requests"][0]["custom_id"] == "a-1"
        assert ant["requests"][0]["params"]["max_tokens"] == 50
        gem = json.loads(by_path["/v1beta/models/m1:batchGenerateContent"].body)
        inlined = gem["batch"]["input_config"]["requests"]["requests"][0]
        assert inlined["metadata"] == {"key": "a-1"}
        assert inlined["request"]["contents"][0]["parts"][0]["text"] == "hi"


async def test_expired_and_canceled_items_are_typed_and_retryable() -> None:
    async with MockLLMServer() as srv:
        srv.batches.complete_after_s = 0.0
        srv.batches.expire = True
        for provider in _providers(srv.base_url):
            wire = provider.batch_api()
            assert wire is not None
            info = await wire.submit("m1", [("x", Request.from_prompt("hi"))], label="l")
            [result] = await wire.results(info.id, "m1", ["x"])
            assert result.outcome == "expired"
            assert isinstance(result.error, BatchItemNotRun) and result.error.retryable
            await provider.aclose()
        srv.batches.expire = False
        srv.batches.complete_after_s = 3600.0
        for provider in _providers(srv.base_url):
            wire = provider.batch_api()
            assert wire is not None
            info = await wire.submit("m1", [("y", Request.from_prompt("hi"))], label="l")
            assert info.state == "in_progress"
            assert (await wire.cancel(info.id)).state == "ended"
            [result] = await wire.results(info.id, "m1", ["y"])
            assert result.outcome == "canceled"
            await provider.aclose()


async def test_compatible_servers_without_a_batch_api_say_so() -> None:
    assert OpenAI(api_key="k", compat="deepseek").batch_api() is None
    assert OpenAI(api_key="k").batch_api() is not None


# -- the runner --------------------------------------------------------------------------


def _catalog_cost(model: str, usage: tw.Usage) -> float:
    spec = Catalog.default().get(model)
    assert spec is not None
    cost = compute_cost(spec, usage)
    assert cost is not None
    return cost


async def test_a_thousand_items_over_three_deployments_at_batch_price(keys: None, tmp_path: Path) -> None:
    async with MockLLMServer() as srv:
        clock = FakeClock()
        srv.batches.clock = clock.now
        srv.batches.complete_after_s = 30.0
        orch = tw.Orchestrator.from_config(_config(srv.base_url))
        out = tmp_path / "out.jsonl"
        from tierwise.strategies.provider_batch import run_provider_batch

        items = _items(1000)
        results = await run_provider_batch(orch, items, output=out, clock=clock, poll_interval_s=2.0)
        await orch.aclose()
    assert [r.index for r in results] == list(range(1000))
    assert all(r.ok for r in results)
    # Every item submitted exactly once, to the deployment its tier routes to.
    assert len(srv.batches.submitted) == 1000 and set(srv.batches.submitted.values()) == {1}
    assert {b.model for b in srv.batches.batches.values()} == {"claude-opus-4-7", "gpt-5-mini", "gpt-5-nano"}
    total = 0.0
    for i, r in enumerate(results):
        response = r.response
        assert response is not None
        assert response.text == f"Mock reply from {response.model}: item number {i}"
        assert response.deployment == DEPLOYMENT[TIERS[i % 3]]
        discount = batch_discount(response.provider)
        assert discount == 0.5
        assert response.cost_usd == _catalog_cost(response.model, response.usage) * (1 - discount)
        assert response.attempts[0].cost_usd == response.cost_usd
        assert response.route.label == TIERS[i % 3]
        total += response.cost_usd
    status = job_status(out)
    assert status["batch_cost_usd"] == pytest.approx(total, rel=1e-12)
    assert status["realtime_cost_usd"] == pytest.approx(2 * total, rel=1e-12)
    assert {g["status"] for g in status["groups"]} == {"collected"}
    # The output file holds the items in input order, as in real-time mode.
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["index"] for line in lines] == list(range(1000))
    # Polling backed off over virtual time: a handful of polls per batch, not one per tick.
    polls = [r for r in srv.requests if r.method == "GET" and "batches/" in r.path]
    assert 3 * 3 <= len(polls) <= 3 * 10


async def test_errored_items_are_resubmitted_in_a_new_round_and_bad_requests_reported(
    keys: None, tmp_path: Path
) -> None:
    async with MockLLMServer() as srv:
        srv.batches.complete_after_s = 0.0
        srv.batches.item_errors.update({"i1-r0": 500, "i2-r0": 400})
        srv.batches.poll_failures = 2  # a 5xx while polling is retried
        orch = tw.Orchestrator.from_config(_config(srv.base_url))
        results = await orch.batch(
            _items(6), output=tmp_path / "o.jsonl", mode="provider", poll_interval_s=0.001
        )
        await orch.aclose()
    assert [r.ok for r in results] == [True, True, False, True, True, True]
    assert results[2].error_type == "BadRequestError"
    assert srv.batches.submitted["i1-r1"] == 1  # the 500 went again, in round 1
    assert "i2-r1" not in srv.batches.submitted  # a 400 is not retried


async def test_failed_items_can_take_the_realtime_path(keys: None, tmp_path: Path) -> None:
    async with MockLLMServer() as srv:
        srv.batches.complete_after_s = 0.0
        srv.batches.expire = True
        orch = tw.Orchestrator.from_config(_config(srv.base_url))
        results = await orch.batch(
            _items(3),
            output=tmp_path / "o.jsonl",
            mode="provider",
            retry_failed="realtime",
            poll_interval_s=0.001,
        )
        await orch.aclose()
    assert all(r.ok for r in results)
    realtime = [r for r in srv.requests if r.path in ("/v1/chat/completions", "/v1/messages")]
    assert len(realtime) == 3


async def test_composite_strategies_are_refused_with_a_clear_error(keys: None, tmp_path: Path) -> None:
    async with MockLLMServer() as srv:
        orch = tw.Orchestrator.from_config(_config(srv.base_url))
        with pytest.raises(ConfigError, match="real-time mode"):
            await orch.batch(["x"], output=tmp_path / "o.jsonl", mode="provider", strategy="ladder")
        with pytest.raises(ValueError, match="output"):
            await orch.batch(["x"], mode="provider")
        await orch.aclose()
    assert not srv.batches.submitted


async def test_budget_reserves_at_batch_price_and_settles_per_item(keys: None, tmp_path: Path) -> None:
    async with MockLLMServer() as srv:
        srv.batches.complete_after_s = 0.0
        cfg = _config(srv.base_url) | {"budget": {"limits": [{"scope": "total", "limit_usd": 50.0}]}}
        orch = tw.Orchestrator.from_config(cfg)
        results = await orch.batch(
            _items(9), output=tmp_path / "o.jsonl", mode="provider", poll_interval_s=0.001
        )
        budget = orch.executor.budget
        assert budget is not None
        spent = sum(r.response.cost_usd or 0.0 for r in results if r.response is not None)
        assert budget.spent("total") == pytest.approx(spent, rel=1e-12)
        assert budget.reserved("total") == 0.0
        await orch.aclose()


async def test_a_changed_input_is_refused_on_resume(keys: None, tmp_path: Path) -> None:
    async with MockLLMServer() as srv:
        srv.batches.complete_after_s = 0.0
        orch = tw.Orchestrator.from_config(_config(srv.base_url))
        out = tmp_path / "o.jsonl"
        await orch.batch(_items(3), output=out, mode="provider", poll_interval_s=0.001)
        with pytest.raises(ValueError, match="different"):
            await orch.batch(["something else"] * 3, output=out, mode="provider", poll_interval_s=0.001)
        await orch.aclose()


# -- crash safety (a real process, killed with SIGKILL) -----------------------------------


def _write_config(path: Path, base: str) -> None:
    cfg = _config(base)
    lines: list[str] = []
    for section in ("providers", "models"):
        for name, row in cfg[section].items():
            lines.append(f"[{section}.{name}]")
            lines += [f"{k} = {json.dumps(v)}" for k, v in row.items()]
    lines += [
        "[strategies.auto]",
        'type = "router"',
        'classifier = "keyword"',
        'default = "standard"',
        "[strategies.auto.routes]",
        'complex = "opus"',
        'standard = "mini"',
        'bulk = "nano"',
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _start(tmp: Path, out: Path) -> subprocess.Popen[bytes]:
    env = os.environ | KEYS
    cmd = [sys.executable, "-m", "tierwise", "batch", str(tmp / "items.jsonl"), "--out", str(out)]
    cmd += ["--provider-batch", "--config", str(tmp / "tierwise.toml"), "--poll-interval", "0.02", "-q"]
    return subprocess.Popen(cmd, env=env, cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _wait_for(predicate: Any, proc: subprocess.Popen[bytes], what: str) -> None:
    for _ in range(600):
        if predicate():
            return
        if proc.poll() is not None:
            raise AssertionError(f"process ended before {what}: {proc.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _groups(out: Path) -> list[dict[str, Any]]:
    path = job_path(out)
    if not path.exists():
        return []
    try:
        return list(json.loads(path.read_text())["groups"])
    except ValueError:
        return []


def test_sigkill_after_submission_and_during_collection_resumes_without_paying_twice(tmp_path: Path) -> None:
    items = _items(30)
    (tmp_path / "items.jsonl").write_text("\n".join(json.dumps(i) for i in items) + "\n")
    with MockLLMServer.run_in_thread() as srv:
        _write_config(tmp_path / "tierwise.toml", srv.base_url)
        # The reference: an uninterrupted run into another file.
        srv.batches.complete_after_s = 0.0
        ref = tmp_path / "ref.jsonl"
        done = _start(tmp_path, ref)
        assert done.wait(120) == 0, done.stderr.read().decode()  # type: ignore[union-attr]
        srv.batches.submitted.clear()

        out = tmp_path / "out.jsonl"
        # 1. Killed after submission: every batch is submitted and still running.
        srv.batches.complete_after_s = 3600.0
        proc = _start(tmp_path, out)
        _wait_for(
            lambda: len(_groups(out)) == 3 and all(g["status"] == "submitted" for g in _groups(out)),
            proc,
            "submission",
        )
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        assert len(srv.batches.submitted) == 30

        # 2. Killed during collection: two batches end and are collected, one is held.
        srv.batches.complete_after_s = 0.0
        srv.batches.hold_models.add("gpt-5-nano")
        proc = _start(tmp_path, out)
        _wait_for(lambda: sum(g["status"] == "collected" for g in _groups(out)) == 2, proc, "collection")
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)

        # 3. Rerun to the end.
        srv.batches.hold_models.clear()
        proc = _start(tmp_path, out)
        assert proc.wait(120) == 0, proc.stderr.read().decode()  # type: ignore[union-attr]
        assert len(srv.batches.submitted) == 30 and set(srv.batches.submitted.values()) == {1}

    def answers(path: Path) -> list[tuple[int, str, float]]:
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        return [(r["index"], r["response"]["text"], r["response"]["cost_usd"]) for r in rows]

    assert answers(out) == answers(ref)
    assert len(answers(out)) == 30


def test_cli_status_and_cancel(tmp_path: Path) -> None:
    (tmp_path / "items.jsonl").write_text("\n".join(json.dumps(i) for i in _items(6)) + "\n")
    with MockLLMServer.run_in_thread() as srv:
        _write_config(tmp_path / "tierwise.toml", srv.base_url)
        srv.batches.complete_after_s = 3600.0
        out = tmp_path / "out.jsonl"
        proc = _start(tmp_path, out)
        _wait_for(
            lambda: len(_groups(out)) == 3 and all(g["status"] == "submitted" for g in _groups(out)),
            proc,
            "submission",
        )
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        env = os.environ | KEYS
        base = [
            sys.executable,
            "-m",
            "tierwise",
            "batch",
            "items.jsonl",
            "--out",
            str(out),
            "--config",
            "tierwise.toml",
        ]
        status = subprocess.run(
            [*base, "--status", "--json"], env=env, cwd=tmp_path, capture_output=True, text=True
        )
        assert status.returncode == 0, status.stderr
        data = json.loads(status.stdout)
        assert {g["status"] for g in data["groups"]} == {"submitted"}
        cancel = subprocess.run(
            [*base, "--cancel", "--json"], env=env, cwd=tmp_path, capture_output=True, text=True
        )
        assert cancel.returncode == 0, cancel.stderr
        assert len(json.loads(cancel.stdout)["canceled"]) == 3
        assert all(b.canceled for b in srv.batches.batches.values())


async def test_a_crash_inside_submit_adopts_the_batch_the_provider_accepted(
    keys: None, tmp_path: Path
) -> None:
    """The job says ``submitting`` (the process died inside the submit call): the rerun
    finds the accepted batch by its label and submits nothing again."""
    from tierwise.strategies.provider_batch import run_provider_batch

    async with MockLLMServer() as srv:
        srv.batches.complete_after_s = 0.0
        orch = tw.Orchestrator.from_config(_config(srv.base_url))
        out = tmp_path / "o.jsonl"
        items = [{"prompt": f"q{i}", "metadata": {"tier": "standard"}} for i in range(4)]
        await run_provider_batch(orch, items, output=out, poll_interval_s=0.001)
        # Rewind the job to "submitting" and forget the batch id, as a crash mid-call would.
        job = json.loads(job_path(out).read_text())
        [group] = job["groups"]
        group["status"], group["batch_id"] = "submitting", None
        job_path(out).write_text(json.dumps(job))
        out.write_text("")
        before = dict(srv.batches.submitted)
        results = await run_provider_batch(orch, items, output=out, poll_interval_s=0.001)
        await orch.aclose()
    assert all(r.ok for r in results)
    assert dict(srv.batches.submitted) == before  # adopted, not resubmitted
    assert len(srv.batches.batches) == 1


async def test_groups_split_within_the_provider_limit(
    keys: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tierwise.providers._batch_wires import OpenAIBatchWire

    monkeypatch.setattr(OpenAIBatchWire, "max_items", 10)
    async with MockLLMServer() as srv:
        srv.batches.complete_after_s = 0.0
        orch = tw.Orchestrator.from_config(_config(srv.base_url))
        items = [{"prompt": f"q{i}", "metadata": {"tier": "standard"}} for i in range(25)]
        results = await orch.batch(items, output=tmp_path / "o.jsonl", mode="provider", poll_interval_s=0.001)
        await orch.aclose()
    assert all(r.ok for r in results)
    assert sorted(len(b.items) for b in srv.batches.batches.values()) == [5, 10, 10]


async def test_the_budget_holds_each_items_worst_case_at_batch_price_while_it_waits(
    keys: None, tmp_path: Path
) -> None:
    import anyio

    from tierwise.execution._attempt import worst_request_cost

    async with MockLLMServer() as srv:
        srv.batches.hold_models.add("gpt-5-mini")
        cfg = _config(srv.base_url) | {"budget": {"limits": [{"scope": "total", "limit_usd": 100.0}]}}
        orch = tw.Orchestrator.from_config(cfg)
        items = [{"prompt": f"question {i}", "metadata": {"tier": "standard"}} for i in range(5)]
        budget = orch.executor.budget
        assert budget is not None
        dep = orch.executor.deployments["mini"]
        # The same worst case a real-time call reserves, at half price.
        worst = sum(worst_request_cost(dep, Request.from_prompt(i["prompt"])) * 0.5 for i in items)
        async with anyio.create_task_group() as tg:
            tg.start_soon(
                lambda: orch.batch(items, output=tmp_path / "o.jsonl", mode="provider", poll_interval_s=0.001)
            )
            while not srv.batches.batches:  # noqa: ASYNC110 - the mock offers no event to wait on
                await anyio.sleep(0.001)
            assert budget.reserved("total") == pytest.approx(worst, rel=1e-9)
            srv.batches.hold_models.clear()
        assert budget.reserved("total") == 0.0
        assert 0 < budget.spent("total") < worst
        await orch.aclose()
