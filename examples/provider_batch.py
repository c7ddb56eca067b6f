"""Half price for work that can wait: a routed batch through the providers' batch APIs.

The tutorials: "for non-real-time workloads, batch requests to take advantage of
batch pricing (typically 50% cheaper)". Here 60 support tickets are routed by the
keyword router to three tiers on two providers, then each tier's items go to its
provider's batch API (OpenAI Batch, Anthropic Message Batches) in one batch each,
polled until they end and collected in input order, each item priced at the
catalog's batch discount. The summary shows what the same items would have cost in
real-time mode. A second run with the same output file resumes: it loads every
answer back and submits nothing.

    python examples/provider_batch.py
"""

from __future__ import annotations

import os
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import anyio

import tierwise as tw
from tierwise.strategies.provider_batch import job_status
from tierwise.testing import MockLLMServer

KEY_ENV = "TIERWISE_EXAMPLE_KEY"  # an example-only variable: never a real key

TICKETS = [
    "Summarize this ticket: the invoice PDF will not download",
    "Classify the sentiment of: 'love the new dashboard'",
    "Analyze the trade-offs of moving our billing service to event sourcing, step by step",
]
ITEMS = [f"{TICKETS[i % 3]} (ticket {i})" for i in range(60)]


def batch_config(base_url: str) -> dict[str, Any]:
    return {
        "providers": {
            "openai": {"type": "openai", "base_url": base_url + "/v1", "api_key_env": KEY_ENV},
            "anthropic": {"type": "anthropic", "base_url": base_url, "api_key_env": KEY_ENV},
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
            }
        },
    }


async def main() -> None:
    os.environ.setdefault(KEY_ENV, "sk-example-not-a-real-key")
    with tempfile.TemporaryDirectory(prefix="tierwise-example-") as tmp:
        output = Path(tmp) / "answers.jsonl"
        async with MockLLMServer() as server:
            server.batches.complete_after_s = 0.05  # a real batch takes minutes to hours
            async with tw.Orchestrator.from_config(batch_config(server.base_url)) as orch:
                results = await orch.batch(ITEMS, output=output, mode="provider", poll_interval_s=0.02)
                by_tier = Counter(r.response.deployment for r in results if r.response is not None)
                print(f"{sum(r.ok for r in results)}/{len(results)} answered, in input order")
                print("items per deployment: " + ", ".join(f"{k} {v}" for k, v in sorted(by_tier.items())))
                print(f"provider batches submitted: {len(server.batches.batches)}")
                status = job_status(output)
                batch, realtime = status["batch_cost_usd"], status["realtime_cost_usd"]
                print(f"cost at batch price ${batch:.6f}; the same items in real-time mode ${realtime:.6f}")
                print(f"saved {1 - batch / realtime:.0%} against real-time mode")

                again = await orch.batch(ITEMS, output=output, mode="provider", poll_interval_s=0.02)
                print(
                    f"rerun: {sum(r.resumed for r in again)}/{len(again)} loaded from {output.name}, "
                    f"provider batches submitted now: {len(server.batches.batches)}"
                )


if __name__ == "__main__":
    anyio.run(main)
