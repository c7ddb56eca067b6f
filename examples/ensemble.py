"""Ensembles: ask three models at once, then majority vote or let a judge pick.

Mirrors the tutorials' "Pattern 3: Ensemble (Consensus)": ``asyncio.gather`` over
several models, then "for classification: majority vote" and "for generation: use
a judge model to pick the best". Both are config tables here:

* ``aggregate = "vote"``: answers are compared after taking the last ``Answer:``
  line and normalizing case, quotes and trailing punctuation, so ``"Answer:
  Negative"`` and ``"negative."`` are one vote; ties go to the earliest member.
* ``aggregate = "judge", judge = "opus"``: Claude Opus reads the numbered
  candidates and names the best; that member's answer is returned unchanged.

Members run concurrently (the ensemble takes as long as its slowest member, not
the sum), each through the executor, and the returned cost covers every member
plus the judge call. Offline against ``MockLLMServer``.

    python examples/ensemble.py
"""

from __future__ import annotations

import os
import re
from typing import Any

import anyio

import tierwise as tw
from tierwise.testing import MockLLMServer, MockModel
from tierwise.testing.mock_server import MockRequest

KEY_ENV = "TIERWISE_EXAMPLE_KEY"  # an example-only variable: never a real key

CLASSIFY = (
    "Classify the sentiment of this review as positive, negative or neutral: "
    "'The battery lasts two days, but the screen scratched within a week and support never replied.'"
)
TAGLINE = "Write a one-line tagline for an LLM router that saves money."

# What each member says: (answer to CLASSIFY, answer to TAGLINE)
ANSWERS = {
    "claude-sonnet-4-6": (
        "The praise is outweighed by two complaints.\nAnswer: Negative",
        "Smart routing, smaller bills.",
    ),
    "gpt-5.5": ("negative.", "Every prompt to the cheapest model that can answer it well."),
    "deepseek-chat": ("Neutral", "Cheap AI."),
}


def _member(model: str, latency_ms: float) -> MockModel:
    classify, tagline = ANSWERS[model]
    return MockModel(reply=lambda r: classify if "sentiment" in r.prompt else tagline, latency_ms=latency_ms)


def _judge(request: MockRequest) -> str:
    """A stand-in judge: prefers the most complete (longest) candidate."""
    candidates = re.findall(r"<candidate>\n(.*?)\n</candidate>", request.prompt, re.S)
    best = max(range(len(candidates)), key=lambda i: len(candidates[i])) + 1
    return f"Candidate {best} is the most specific.\nBest: {best}"


def ensemble_config(base_url: str) -> dict[str, Any]:
    members = ["sonnet", "gpt55", "deepseek"]
    return {
        "providers": {
            "gateway": {"type": "openai", "compat": "gateway", "base_url": base_url, "api_key_env": KEY_ENV}
        },
        "models": {
            "opus": {"provider": "gateway", "model": "claude-opus-4-7"},
            "sonnet": {"provider": "gateway", "model": "claude-sonnet-4-6"},
            "gpt55": {"provider": "gateway", "model": "gpt-5.5"},
            "deepseek": {"provider": "gateway", "model": "deepseek-chat"},
        },
        "strategies": {
            "vote": {"type": "ensemble", "targets": members, "aggregate": "vote"},
            "judge": {
                "type": "ensemble",
                "targets": members,
                "aggregate": "judge",
                "judge": "opus",
                "rubric": "Prefer specific, concrete taglines.",
            },
        },
    }


def show(resp: tw.Response) -> None:
    print(f"   answer: {resp.text!r}  (from {resp.route.label}: {resp.deployment})")
    print(f"   reason: {resp.route.reason}")
    for step in resp.steps:
        mark = "chosen" if step.accepted else ""
        cost = "unknown" if step.cost_usd is None else f"${step.cost_usd:.6f}"
        print(f"     {step.name:<12} {step.model:<9} {cost:>10} {step.latency_ms:>5.0f} ms  {mark}".rstrip())
    members = sum(s.latency_ms for s in resp.steps if s.name.startswith("ensemble["))
    print(
        f"   total cost ${resp.cost_usd or 0.0:.6f}; wall time {resp.latency_ms:.0f} ms "
        f"(members ran concurrently: {members:.0f} ms one after another)"
    )


async def main() -> None:
    os.environ.setdefault(KEY_ENV, "sk-example-not-a-real-key")
    mocks = {
        "claude-sonnet-4-6": _member("claude-sonnet-4-6", 150),
        "gpt-5.5": _member("gpt-5.5", 100),
        "deepseek-chat": _member("deepseek-chat", 50),
        "claude-opus-4-7": MockModel(reply=_judge, latency_ms=30),
    }
    async with (
        MockLLMServer(mocks) as server,
        tw.Orchestrator.from_config(ensemble_config(server.base_url + "/v1")) as orch,
    ):
        print(f"1) Majority vote — {orch.explain(CLASSIFY, strategy='vote').reason}")
        show(await orch.run(CLASSIFY, strategy="vote"))
        print(f"\n2) Judge pick — {orch.explain(TAGLINE, strategy='judge').reason}")
        show(await orch.run(TAGLINE, strategy="judge"))


if __name__ == "__main__":
    anyio.run(main)
