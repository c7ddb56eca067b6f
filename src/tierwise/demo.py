"""``tierwise demo``: the tutorials' four-tier router, offline, with real numbers.

Starts a ``MockLLMServer`` with four simulated models priced as in the tutorials
(Claude Opus 4.7 $5/$25, Claude Sonnet 4.6 $3/$15, GPT-5.5 $3/$12, DeepSeek V3
$0.27/$1.10 per 1M tokens), with latencies in the tutorials' range and a few
injected failures; sends a mixed workload through the keyword router with the
tutorials' fallback chains; and prints the tutorials' table.

Nothing in the table is written in: request counts, costs, latencies and the
fallback rate come from the run. The "Opus only" and "Sonnet only" rows price
the *same token usage* at those models' prices, so the saving is like for like.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import anyio

__all__ = ["WORKLOAD_SHARE", "DemoResult", "run_demo"]

# The four tiers: model alias -> (wire model, mock latency ms, jitter ms, answer words)
_MODELS: dict[str, tuple[str, float, float, int]] = {
    "opus": ("claude-opus-4-7", 1200.0, 400.0, 420),
    "sonnet": ("claude-sonnet-4-6", 850.0, 250.0, 300),
    "gpt55": ("gpt-5.5", 700.0, 200.0, 220),
    "deepseek": ("deepseek-chat", 450.0, 150.0, 260),
}
# The tutorials' fallback chain.
_FALLBACKS = {"opus": ["sonnet"], "sonnet": ["gpt55"], "gpt55": ["sonnet"], "deepseek": ["gpt55"]}
_ROUTES = {"complex": "opus", "standard": "sonnet", "structured": "gpt55", "bulk": "deepseek"}

# A development day: mostly bulk and simple work, some structured, a few hard ones
# (the tutorials' "60-70% of requests are boilerplate, docs or simple transformations").
WORKLOAD_SHARE = {"bulk": 0.45, "standard": 0.25, "structured": 0.18, "complex": 0.12}

_PROMPTS: dict[str, list[str]] = {
    "bulk": [
        "Generate unit tests for all public methods in the {x} class. Use pytest with parametrize.",
        "Add docstrings to every function in {x}.py.",
        "Translate the error messages in {x} to German.",
        "Write boilerplate CRUD handlers for the {x} resource.",
        "Rename the variable tmp to {x}_count across this module and add comments.",
    ],
    "standard": [
        "Why does my {x} component re-render twice on mount?",
        "Write a Python function that merges two sorted lists of {x} records.",
        "What does this SQL query do and is the index on {x} used?",
        "Summarize the changes in the {x} pull request for the release notes.",
    ],
    "structured": [
        "Extract all function names, parameters, and return types from {x}.py and return as JSON schema.",
        "Parse this log excerpt from {x} into CSV with columns time, level, message.",
        "Convert this list to JSON: name={x}, age=30, role=dev",
    ],
    "complex": [
        "Design a caching strategy for a multi-tenant {x} service handling 10K requests/second. "
        "Consider trade-offs between Redis cluster, local cache, and CDN caching.",
        "Debug this race condition in the {x} worker pool and find the root cause.",
        "Refactor the {x} module into hexagonal architecture; compare approaches.",
    ],
}
_NOUNS = ["billing", "invoice", "user", "session", "payment", "search", "report", "upload", "auth", "queue"]

_PRICES = {  # USD per 1M tokens (input, output): the tutorials' list prices
    "opus": (5.0, 25.0),
    "sonnet": (3.0, 15.0),
    "gpt55": (3.0, 12.0),
    "deepseek": (0.27, 1.10),
}


@dataclass(slots=True)
class DemoResult:
    """Everything the table shows, computed from the run."""

    requests: int
    failed: int
    per_model: dict[str, int]
    per_label: dict[str, int]
    total_cost: float
    opus_only_cost: float
    sonnet_only_cost: float
    latency_p50_ms: float
    latency_p95_ms: float
    fallback_rate: float
    fallbacks: int
    provider_errors: int
    wall_s: float

    @property
    def saving_vs_opus(self) -> float:
        return 1.0 - self.total_cost / self.opus_only_cost if self.opus_only_cost else 0.0

    @property
    def saving_vs_sonnet(self) -> float:
        return 1.0 - self.total_cost / self.sonnet_only_cost if self.sonnet_only_cost else 0.0


def _workload(n: int, rng: random.Random) -> list[str]:
    labels = list(WORKLOAD_SHARE)
    weights = [WORKLOAD_SHARE[k] for k in labels]
    prompts = []
    for _ in range(n):
        label = rng.choices(labels, weights)[0]
        prompts.append(rng.choice(_PROMPTS[label]).format(x=rng.choice(_NOUNS)))
    return prompts


def _reply(words: int) -> Any:
    filler = (
        "This answer walks through the approach step by step with concrete code and caveats. " * 40
    ).split()

    def reply(req: Any) -> str:
        return " ".join(filler[:words])

    return reply


async def run_demo(
    requests: int = 200,
    *,
    concurrency: int = 24,
    seed: int = 7,
    failure_rate: float = 0.04,
    speed: float = 1.0,
) -> DemoResult:
    """Run the demo workload and return the computed figures.

    ``speed`` divides the simulated latencies (tests use a large value to stay fast).
    """
    from .errors import TierwiseError
    from .orchestrator import Orchestrator
    from .routing import KeywordClassifier
    from .strategies.router import Router
    from .testing import MockLLMServer, MockModel

    rng = random.Random(seed)
    models = {
        wire: MockModel(
            reply=_reply(words),
            latency_ms=latency / speed,
            jitter_ms=jitter / speed,
            fault_rates={"429": failure_rate / 2, "503": failure_rate / 4, "529": failure_rate / 4},
            retry_after_s=0.05,
        )
        for wire, latency, jitter, words in _MODELS.values()
    }
    async with MockLLMServer(models, seed=seed) as server:
        config = {
            "providers": {
                "anthropic": {
                    "type": "anthropic",
                    "base_url": server.base_url,
                    "api_key_env": "TIERWISE_DEMO_KEY",
                },
                "openai": {"type": "openai", "compat": "vllm", "base_url": server.base_url + "/v1"},
            },
            "models": {
                alias: {
                    "provider": "anthropic" if wire.startswith("claude") else "openai",
                    "model": wire,
                    "input_price": _PRICES[alias][0],
                    "output_price": _PRICES[alias][1],
                    "fallbacks": _FALLBACKS[alias],
                    "max_output_tokens": 1024,
                    "timeout_s": 30,
                }
                for alias, (wire, _, _, _) in _MODELS.items()
            },
            "retry": {"max_attempts": 1},
            "seed": seed,
        }
        import os

        os.environ.setdefault("TIERWISE_DEMO_KEY", "demo-key-not-secret")
        orch = Orchestrator.from_config(config)
        orch.strategies["router"] = Router(
            KeywordClassifier.default(), routes=dict(_ROUTES), default="standard"
        )
        orch.default_strategy = "router"
        prompts = _workload(requests, rng)
        per_model: Counter[str] = Counter()
        per_label: Counter[str] = Counter()
        served = 0
        failed = 0
        total = opus_only = sonnet_only = 0.0
        fallbacks = 0
        errors = 0
        limiter = anyio.CapacityLimiter(concurrency)
        start = time.perf_counter()

        async def one(prompt: str) -> None:
            nonlocal served, failed, total, opus_only, sonnet_only, fallbacks, errors
            async with limiter:
                try:
                    resp = await orch.run(prompt)
                except TierwiseError:
                    failed += 1
                    return
            served += 1
            per_model[resp.deployment] += 1
            per_label[resp.route.label or "?"] += 1
            total += resp.cost_usd or 0.0
            u = resp.usage
            opus_only += (u.input_tokens * _PRICES["opus"][0] + u.output_tokens * _PRICES["opus"][1]) / 1e6
            sonnet_only += (
                u.input_tokens * _PRICES["sonnet"][0] + u.output_tokens * _PRICES["sonnet"][1]
            ) / 1e6
            fallbacks += resp.fallback
            errors += sum(1 for a in resp.attempts if a.outcome == "error")

        async with orch, anyio.create_task_group() as tg:
            for prompt in prompts:
                tg.start_soon(one, prompt)
        wall = time.perf_counter() - start
        # Percentiles and the fallback rate come from the orchestrator's own metrics.
        summary = orch.metrics.snapshot()["requests"]
    return DemoResult(
        requests=requests,
        failed=failed,
        per_model=dict(per_model),
        per_label=dict(per_label),
        total_cost=total,
        opus_only_cost=opus_only,
        sonnet_only_cost=sonnet_only,
        latency_p50_ms=summary["latency_ms"]["p50"] or 0.0,
        latency_p95_ms=summary["latency_ms"]["p95"] or 0.0,
        fallback_rate=fallbacks / served if served else 0.0,
        fallbacks=fallbacks,
        provider_errors=errors,
        wall_s=wall,
    )


def format_demo(result: DemoResult) -> str:
    """The tutorials' table, from a ``DemoResult``."""
    lines = [
        f"tierwise demo — {result.requests} mixed requests through the keyword router "
        f"(offline, MockLLMServer), {result.wall_s:.1f} s",
        "",
        "Requests per model",
        f"  {'model':<10} {'route':<11} {'requests':>8} {'share':>7}",
    ]
    by_alias = {v: k for k, v in _ROUTES.items()}
    served = sum(result.per_model.values()) or 1
    for alias in _MODELS:
        n = result.per_model.get(alias, 0)
        lines.append(f"  {alias:<10} {by_alias.get(alias, ''):<11} {n:>8} {n / served:>7.0%}")
    lines += [
        "",
        f"  {'approach':<28} {'cost':>12}",
        f"  {'Claude Opus for everything':<28} ${result.opus_only_cost:>11.4f}",
        f"  {'Claude Sonnet for everything':<28} ${result.sonnet_only_cost:>11.4f}",
        f"  {'Smart routing (tierwise)':<28} ${result.total_cost:>11.4f}",
        "",
        f"  saving vs Opus-only:   {result.saving_vs_opus:6.1%}",
        f"  saving vs Sonnet-only: {result.saving_vs_sonnet:6.1%}",
        f"  latency p50 / p95:     {result.latency_p50_ms:.0f} ms / {result.latency_p95_ms:.0f} ms",
        f"  fallback rate:         {result.fallback_rate:6.1%} ({result.fallbacks} requests; "
        f"{result.provider_errors} provider errors absorbed)",
        f"  failed requests:       {result.failed}",
    ]
    return "\n".join(lines)
