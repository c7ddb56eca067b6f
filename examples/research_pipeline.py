"""The tutorials' research pipeline: decompose → research in parallel → synthesize.

Mirrors "Pattern 4: Pipeline (Sequential Processing)"::

    sub_questions = await call_model('gpt-4o-mini', f"Break this into 3-5 sub-questions: {question}")
    research = await asyncio.gather(*[call_model('claude-sonnet', f"Research: {sq}") for sq in sub_questions])
    synthesis = await call_model('gpt-5', f"Synthesize these findings ...")

as a ``pipeline`` strategy in config, with one model per step: the cheap model
(DeepSeek) decomposes the question into a JSON list, the mid-tier model (Claude
Sonnet) researches every sub-question in parallel (``fan_out = "decompose"``, at
most 4 at once), and the best model (Claude Opus) writes the answer from the
findings. Templates are checked when the config loads (a typo such as
``{reserch}`` is a ``ConfigError`` naming the step, not a failure halfway through a
paid run).

Offline against ``MockLLMServer``; the decompose model's reply is a function that
returns a JSON list. Prints the cost and latency of every step, and shows that the
four research calls overlapped.

    python examples/research_pipeline.py
"""

from __future__ import annotations

import json
import os
from typing import Any

import anyio

import tierwise as tw
from tierwise.testing import MockLLMServer, MockModel
from tierwise.testing.mock_server import MockRequest

KEY_ENV = "TIERWISE_EXAMPLE_KEY"  # an example-only variable: never a real key

QUESTION = "Should our team move from a monolith to microservices this year?"
SUB_QUESTIONS = [
    "What operational costs do microservices add for a team of eight engineers?",
    "Which parts of the monolith change most often and would benefit from isolation?",
    "How do deployment frequency and incident rates change after such migrations?",
    "What intermediate steps (modular monolith, strangler fig) reduce the risk?",
]


def _decompose(request: MockRequest) -> str:
    return json.dumps(SUB_QUESTIONS) if "sub-questions" in request.prompt else "[]"


def _research(request: MockRequest) -> str:
    topic = request.prompt.removeprefix("Research: ").split("?")[0]
    return f"Finding on '{topic[:40]}…': evidence points both ways; cite two case studies."


def pipeline_config(base_url: str) -> dict[str, Any]:
    return {
        "providers": {
            "gateway": {"type": "openai", "compat": "gateway", "base_url": base_url, "api_key_env": KEY_ENV}
        },
        "models": {
            "deepseek": {"provider": "gateway", "model": "deepseek-chat"},
            "sonnet": {"provider": "gateway", "model": "claude-sonnet-4-6"},
            "opus": {"provider": "gateway", "model": "claude-opus-4-7"},
        },
        "strategies": {
            "research_pipeline": {
                "type": "pipeline",
                "steps": [
                    {
                        "name": "decompose",
                        "target": "deepseek",
                        "prompt": "Break this into 3-5 sub-questions, as a JSON list of strings: {input}",
                    },
                    {
                        "name": "research",
                        "target": "sonnet",
                        "prompt": "Research: {item}",
                        "fan_out": "decompose",
                        "concurrency": 4,
                    },
                    {
                        "name": "synthesize",
                        "target": "opus",
                        "prompt": "Synthesize these findings into a comprehensive answer.\n"
                        "Original question: {input}\n\nResearch:\n{research}",
                    },
                ],
            }
        },
    }


async def main() -> None:
    os.environ.setdefault(KEY_ENV, "sk-example-not-a-real-key")
    mocks = {
        "deepseek-chat": MockModel(reply=_decompose, latency_ms=30),
        "claude-sonnet-4-6": MockModel(reply=_research, latency_ms=120),
        "claude-opus-4-7": MockModel(
            reply="Not this year: first split the two busiest modules behind clear interfaces (a modular "
            "monolith), measure deployment pain for a quarter, then extract services where it pays.",
            latency_ms=80,
        ),
    }
    async with (
        MockLLMServer(mocks) as server,
        tw.Orchestrator.from_config(pipeline_config(server.base_url + "/v1")) as orch,
    ):
        print(f"Question: {QUESTION}")
        print(f"Plan: {orch.explain(QUESTION, strategy='research_pipeline').reason}\n")
        resp = await orch.run(QUESTION, strategy="research_pipeline")

        print(f"  {'step':<11} {'model':<9} {'cost':>10} {'latency':>9}  note")
        for step in resp.steps:
            cost = "unknown" if step.cost_usd is None else f"${step.cost_usd:.6f}"
            line = f"  {step.name:<11} {step.model:<9} {cost:>10} {step.latency_ms:>6.0f} ms  {step.note}"
            print(line.rstrip())
        research_step = next(s for s in resp.steps if s.name == "research")
        items = [a for a in resp.attempts if ".steps[1][" in a.path]
        print(
            f"\n  {len(items)} research calls took {sum(a.latency_ms for a in items):.0f} ms in total "
            f"but {research_step.latency_ms:.0f} ms of wall time: they ran in parallel"
        )
        researched = sum(1 for r in server.requests if r.model == "claude-sonnet-4-6")
        print(f"  sub-questions sent to the research model: {researched}")
        print(f"\nAnswer ({resp.deployment}): {resp.text}")
        print(
            f"Total: ${resp.cost_usd or 0.0:.6f}, {resp.latency_ms:.0f} ms, {len(resp.attempts)} model calls"
        )


if __name__ == "__main__":
    anyio.run(main)
