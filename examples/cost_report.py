"""Cost report: a mixed workload, its JSONL audit log, and the report built from it.

Mirrors the tutorials' cost tracker ("Cost Tracker ← Log usage per model",
``tracker.summary()`` by model) and their production advice ("track which models
handle which tasks", "alert when the fallback rate exceeds 5%"): instead of a
hand-written tracker, the orchestrator writes one audit record per request
(``[audit] path = ...``; prompts and answers are left out unless
``include_text = true``), and ``tierwise.observe.report`` turns the log into the
same table ``tierwise report audit.jsonl`` prints: cost, errors, fallbacks, cache
hits and latency per model, per route label and per day.

The workload (40 requests, offline against ``MockLLMServer``) mixes the four
tiers, repeats some prompts (memory cache: hits cost $0) and has Sonnet fail now
and then (seeded 503s, answered by its GPT-5.5 fallback instead).
Afterwards it also prints the orchestrator's live metrics per model
(``orch.metrics.snapshot()``), which need no log at all.

    python examples/cost_report.py
"""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path
from typing import Any

import anyio

import tierwise as tw
from tierwise.observe.report import format_report, summarize
from tierwise.testing import MockLLMServer, MockModel

KEY_ENV = "TIERWISE_EXAMPLE_KEY"  # an example-only variable: never a real key

WORKLOAD = {  # label -> prompt templates (the tutorials' kinds of work)
    "bulk": [
        "Add docstrings to every function in {x}.py.",
        "Generate unit tests for the {x} class.",
        "Translate the error messages in {x}.py to German.",
    ],
    "standard": [
        "Why does my {x} component re-render twice on mount?",
        "Write a function that merges two sorted lists of {x} records.",
    ],
    "structured": [
        "Extract the function names from {x}.py and return as JSON.",
        "Parse this {x} log excerpt into CSV with columns time, level, message.",
    ],
    "complex": ["Debug this race condition in the {x} worker pool and find the root cause."],
}
SHARE = {"bulk": 0.45, "standard": 0.25, "structured": 0.2, "complex": 0.1}
NOUNS = ["billing", "invoice", "user", "session", "payment", "search", "report", "upload"]
REQUESTS = 40


def report_config(base_url: str, audit_path: Path) -> dict[str, Any]:
    gateway = {"provider": "gateway", "max_output_tokens": 1024}
    return {
        "providers": {
            "gateway": {"type": "openai", "compat": "gateway", "base_url": base_url, "api_key_env": KEY_ENV}
        },
        "models": {
            "opus": {**gateway, "model": "claude-opus-4-7", "fallbacks": ["sonnet"]},
            "sonnet": {**gateway, "model": "claude-sonnet-4-6", "fallbacks": ["gpt55"]},
            "gpt55": {**gateway, "model": "gpt-5.5", "fallbacks": ["sonnet"]},
            "deepseek": {**gateway, "model": "deepseek-chat", "fallbacks": ["gpt55"]},
        },
        "strategies": {
            "tiers": {
                "type": "router",
                "routes": {
                    "complex": "opus",
                    "standard": "sonnet",
                    "structured": "gpt55",
                    "bulk": "deepseek",
                },
            }
        },
        # No retries: a failure goes straight down the fallback chain, as in the tutorials.
        "retry": {"max_attempts": 1},
        "cache": {"backend": "memory"},
        "audit": {"path": str(audit_path)},
        "seed": 7,
    }


def _workload(n: int, seed: int = 7) -> list[str]:
    """``n`` prompts in the tiers' shares; about one in five repeats an earlier one."""
    rng = random.Random(seed)
    labels = list(SHARE)
    prompts: list[str] = []
    for _ in range(n):
        if prompts and rng.random() < 0.2:
            prompts.append(rng.choice(prompts))
            continue
        label = rng.choices(labels, [SHARE[k] for k in labels])[0]
        prompts.append(rng.choice(WORKLOAD[label]).format(x=rng.choice(NOUNS)))
    return prompts


async def main() -> None:
    os.environ.setdefault(KEY_ENV, "sk-example-not-a-real-key")
    words = "This answer explains the change step by step with code and caveats. " * 6
    mocks = {
        "claude-opus-4-7": MockModel(reply=words * 3, latency_ms=30),
        "claude-sonnet-4-6": MockModel(reply=words * 2, latency_ms=20, fault_rates={"503": 0.3}),
        "gpt-5.5": MockModel(reply='{"functions": ["merge", "split"]}', latency_ms=15),
        "deepseek-chat": MockModel(reply=words, latency_ms=10),
    }
    with tempfile.TemporaryDirectory(prefix="tierwise-example-") as tmp:
        audit_path = Path(tmp) / "audit.jsonl"
        async with MockLLMServer(mocks, seed=3) as server:
            async with tw.Orchestrator.from_config(
                report_config(server.base_url + "/v1", audit_path)
            ) as orch:
                limiter = anyio.CapacityLimiter(6)

                async def one(prompt: str) -> None:
                    async with limiter:
                        await orch.run(prompt)

                async with anyio.create_task_group() as tg:
                    for prompt in _workload(REQUESTS):
                        tg.start_soon(one, prompt)
            # Leaving the block closed the orchestrator, which flushed the audit log.
            snapshot = orch.metrics.snapshot()

        print(f"audit log: {audit_path.name}, {len(audit_path.read_text().splitlines())} records\n")
        summary = summarize(audit_path)
        print(format_report(summary))

    print("\nLive metrics per model (orch.metrics.snapshot()['models']):")
    print(
        f"  {'model':<9} {'calls':>5} {'errors':>6} {'fallbacks':>9} {'cache':>5} {'p50 ms':>7} {'cost':>10}"
    )
    for model, m in snapshot["models"].items():
        p50 = m["latency_ms"]["p50"]
        cost = m["cost_usd"]
        print(
            f"  {model:<9} {m['calls']:>5} {m['errors']['total']:>6} {m['fallbacks']:>9} {m['cache_hits']:>5}"
            f" {'-' if p50 is None else f'{p50:.0f}':>7} {'-' if cost is None else f'${cost:.6f}':>10}"
        )
    req = snapshot["requests"]
    print(
        f"  all: {req['total']} requests, ${req['cost_usd']:.6f}, fallback rate {req['fallback_rate']:.1%}, "
        f"cache hit rate {req['cache_hit_rate']:.1%}"
    )
    same = abs((summary["cost_usd"] or 0.0) - (req["cost_usd"] or 0.0)) < 1e-9
    print(f"  audit log and live metrics agree on the total: {'yes' if same else 'NO'}")


if __name__ == "__main__":
    anyio.run(main)
