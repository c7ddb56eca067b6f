"""`tierwise demo` and `tierwise batch`: computed figures, real exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import tierwise as tw
from tierwise.demo import WORKLOAD_SHARE, format_demo, run_demo


async def test_demo_numbers_are_computed_from_the_run() -> None:
    result = await run_demo(60, concurrency=30, speed=50.0, failure_rate=0.2, seed=3)
    # One try per target and two or three targets per chain: at a 20% fault rate a
    # request fails only when its whole chain does (about 1 in 25 chains of two;
    # which ones depends on arrival order, so on the machine's load). Without the
    # fallbacks about 12 of the 60 would fail.
    assert result.failed <= 3
    assert sum(result.per_model.values()) + result.failed == 60
    # every tier got traffic, in the workload's order of magnitude
    assert set(result.per_label) == set(WORKLOAD_SHARE)
    assert result.per_model["deepseek"] > result.per_model["opus"]
    # like-for-like comparison: the same tokens priced at Opus cost more than routing
    assert result.opus_only_cost > result.sonnet_only_cost > result.total_cost > 0
    assert 0 < result.saving_vs_opus < 1
    # injected failures were absorbed by fallbacks and counted
    assert result.provider_errors > 0
    assert result.fallbacks > 0
    assert result.provider_errors >= 4 * max(1, result.failed)
    assert result.fallback_rate == pytest.approx(result.fallbacks / (60 - result.failed))
    assert 0 < result.latency_p50_ms <= result.latency_p95_ms
    text = format_demo(result)
    assert f"${result.total_cost:>11.4f}" in text
    assert "saving vs Opus-only" in text


async def test_same_seed_same_routing() -> None:
    a = await run_demo(30, speed=100.0, failure_rate=0.0, seed=5)
    b = await run_demo(30, speed=100.0, failure_rate=0.0, seed=5)
    assert a.per_label == b.per_label
    assert a.total_cost == pytest.approx(b.total_cost)


def test_demo_cli_json() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "tierwise", "demo", "-n", "20", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["requests"] == 20
    assert sum(data["per_model"].values()) == 20
    assert data["saving_vs_opus"] > 0


def test_batch_cli_resumes(tmp_path: Path) -> None:
    from tierwise.testing import MockLLMServer, MockModel

    with MockLLMServer.run_in_thread({"m": MockModel(reply="done")}) as server:
        cfg = tmp_path / "t.toml"
        cfg.write_text(
            f'[providers.p]\ntype = "openai"\ncompat = "vllm"\nbase_url = "{server.base_url}/v1"\n'
            '[models.m]\nprovider = "p"\nmodel = "m"\ninput_price = 1.0\noutput_price = 2.0\n'
        )
        items = tmp_path / "items.jsonl"
        items.write_text('"alpha"\n{"prompt": "beta"}\nplain gamma\n')
        out = tmp_path / "out.jsonl"
        cmd = [
            sys.executable,
            "-m",
            "tierwise",
            "batch",
            str(items),
            "--out",
            str(out),
            "--config",
            str(cfg),
            "--json",
        ]
        first = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        assert first.returncode == 0, first.stderr
        assert json.loads(first.stdout)["ok"] == 3
        sent = len(server.requests)
        second = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        assert second.returncode == 0, second.stderr
        assert json.loads(second.stdout)["resumed"] == 3
        assert len(server.requests) == sent  # nothing re-bought


def test_add_strategy_and_explain_with_metadata() -> None:
    from tierwise.execution.executor import Deployment
    from tierwise.testing import FakeProvider

    fake = FakeProvider(["x"])
    orch = tw.Orchestrator([Deployment(a, fake, a) for a in ("cheap", "big")])
    router = tw.Router(
        tw.KeywordClassifier.default(), routes={"bulk": "cheap", "standard": "big"}, default="standard"
    )
    orch.add_strategy("r", router, default=True)
    assert orch.default_strategy == "r"
    assert orch.explain("hello").label == "standard"
    assert orch.explain("hello", metadata={"tier": "bulk"}).label == "bulk"
    with pytest.raises(TypeError):
        orch.add_strategy("bad", "cheap")  # type: ignore[arg-type]
