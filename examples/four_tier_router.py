"""The tutorials' four-tier router, with their fallback chains.

Mirrors the multi-model pipeline tutorials: a keyword classifier sends

    complex    → Claude Opus 4.7     (falls back to Sonnet)
    standard   → Claude Sonnet 4.6   (falls back to GPT-5.5)
    structured → GPT-5.5             (falls back to Sonnet)
    bulk       → DeepSeek V3         (falls back to GPT-5.5)

Each model is called over its own wire format (Anthropic Messages for Claude, OpenAI
Chat Completions for GPT-5.5, the DeepSeek row of the OpenAI-compatible adapter),
all served offline by one ``MockLLMServer``. Opus is scripted to fail twice with 529
(overloaded), so the first complex request shows a retry and then the Opus → Sonnet
fallback.

For every example prompt from the tutorials it prints the route and the reason
(``orch.explain``, which calls no model), then which model actually answered and
what it cost.

    python examples/four_tier_router.py
"""

from __future__ import annotations

import os
from typing import Any

import anyio

import tierwise as tw
from tierwise.testing import MockLLMServer, MockModel

KEY_ENV = "TIERWISE_EXAMPLE_KEY"  # an example-only variable: never a real key

# The tutorials' example prompts, with the metadata hint one of them passes.
PROMPTS: list[tuple[str, dict[str, Any]]] = [
    (
        "Design a caching strategy for a multi-tenant SaaS application that handles 10K requests/second. "
        "Consider trade-offs between Redis cluster, local cache, and CDN caching.",
        {},
    ),
    (
        "Extract all function names, parameters, and return types from this Python file "
        "and return as JSON schema.",
        {},
    ),
    (
        "Generate unit tests for all public methods in this class. "
        "Use pytest with parametrize for edge cases.",
        {},
    ),
    (
        "Design a distributed caching system that handles partition tolerance and maintains consistency "
        "across 3 regions. Consider the CAP trade-offs.",
        {},
    ),
    (
        "Extract all API endpoints from this codebase and return as JSON with method, path, description, "
        "and parameters for each.",
        {"json_output": True},
    ),
    ("Generate unit tests for all 15 functions in this utils module.", {}),
    ("Convert this list to JSON: name=Alice, age=30, role=dev", {}),
    ("Why does my React component re-render twice on mount?", {}),
]


def router_config(base_url: str) -> dict[str, Any]:
    providers = {
        "anthropic": {"type": "anthropic", "base_url": base_url, "api_key_env": KEY_ENV},
        "openai": {"type": "openai", "base_url": base_url + "/v1", "api_key_env": KEY_ENV},
        "deepseek": {"type": "openai", "compat": "deepseek", "base_url": base_url, "api_key_env": KEY_ENV},
    }
    return {
        "providers": providers,
        "models": {
            # Prices come from the built-in catalog (the tutorials' list prices).
            "opus": {"provider": "anthropic", "model": "claude-opus-4-7", "fallbacks": ["sonnet"]},
            "sonnet": {"provider": "anthropic", "model": "claude-sonnet-4-6", "fallbacks": ["gpt55"]},
            "gpt55": {"provider": "openai", "model": "gpt-5.5", "fallbacks": ["sonnet"]},
            "deepseek": {"provider": "deepseek", "model": "deepseek-chat", "fallbacks": ["gpt55"]},
        },
        "strategies": {
            "tiers": {
                "type": "router",  # the keyword classifier by default
                "routes": {
                    "complex": "opus",
                    "standard": "sonnet",
                    "structured": "gpt55",
                    "bulk": "deepseek",
                },
                "default": "standard",
            }
        },
        # Two tries per model (short backoff for the example), then the fallback chain.
        "retry": {"max_attempts": 2, "initial_backoff_s": 0.02},
    }


def _short(text: str, width: int = 64) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


async def main() -> None:
    os.environ.setdefault(KEY_ENV, "sk-example-not-a-real-key")
    mocks = {
        "claude-opus-4-7": MockModel(reply="A layered cache: ...", latency_ms=40, faults=["529", "529"]),
        "claude-sonnet-4-6": MockModel(reply="Here is a careful answer: ...", latency_ms=25),
        "gpt-5.5": MockModel(reply='{"functions": []}', latency_ms=20),
        "deepseek-chat": MockModel(reply="def test_example(): ...", latency_ms=10),
    }
    async with (
        MockLLMServer(mocks) as server,
        tw.Orchestrator.from_config(router_config(server.base_url)) as orch,
    ):
        router = orch.strategies["tiers"]
        assert isinstance(router, tw.Router)
        for i, (prompt, metadata) in enumerate(PROMPTS, 1):
            request = tw.Request.from_prompt(prompt, metadata=metadata)
            plan = orch.explain(request)  # the decision, without calling a model
            resp = await orch.run(request)
            target = router.routes[plan.label or router.default]
            hint = f"  metadata={metadata}" if metadata else ""
            print(f"{i}. {_short(prompt)}{hint}")
            print(f"   route:    {plan.label} -> {target}   ({plan.reason})")
            failed = [a for a in resp.attempts if a.outcome == "error"]
            how = ""
            if resp.fallback:
                tries = ", ".join(f"{a.model} {a.error_type}" for a in failed)
                how = f"   fell back after: {tries}"
            cost = f"${resp.cost_usd:.6f}" if resp.cost_usd is not None else "unknown"
            print(f"   answered: {resp.deployment} ({resp.model} via {resp.provider}), {cost}{how}")
        totals = orch.metrics.snapshot()["requests"]
        print(
            f"\n{totals['total']} requests, {totals['fallbacks']} fallback(s), "
            f"{totals['attempt_errors']} provider error(s) absorbed, total ${totals['cost_usd']:.6f}"
        )


if __name__ == "__main__":
    anyio.run(main)
