"""Response caching and request coalescing.

Mirrors the tutorials' production advice "Caching — cache responses for identical
prompts (hash the prompt + model)" and their router's ``_cache`` dict, done by the
executor instead: with ``[cache] backend = "memory"``

* a repeated identical request is answered from the cache: ``cached=True``, $0,
  and the provider never sees it;
* identical requests that arrive *while the first is still in flight* are
  coalesced: the provider gets ONE request and every caller gets the answer
  (one pays, the others are accounted as cache hits);
* a request that asks for variety (``temperature > 0`` without a ``seed``) is not
  cached unless the config says ``force = true``.

The proof is on the server side: ``MockLLMServer.requests`` records what the
"provider" actually received.

    python examples/caching.py
"""

from __future__ import annotations

import os
from typing import Any

import anyio

import tierwise as tw
from tierwise.testing import MockLLMServer, MockModel

KEY_ENV = "TIERWISE_EXAMPLE_KEY"  # an example-only variable: never a real key


def cache_config(base_url: str) -> dict[str, Any]:
    return {
        "providers": {
            "gateway": {"type": "openai", "compat": "gateway", "base_url": base_url, "api_key_env": KEY_ENV}
        },
        "models": {"sonnet": {"provider": "gateway", "model": "claude-sonnet-4-6"}},
        "cache": {"backend": "memory", "ttl_s": 3600, "max_entries": 10_000},
    }


def _cost(resp: tw.Response) -> str:
    return "unknown" if resp.cost_usd is None else f"${resp.cost_usd:.6f}"


async def main() -> None:
    os.environ.setdefault(KEY_ENV, "sk-example-not-a-real-key")
    # 150 ms per answer, so the concurrent calls below really overlap.
    mocks = {"claude-sonnet-4-6": MockModel(reply="HTTP 429 means Too Many Requests.", latency_ms=150)}
    async with (
        MockLLMServer(mocks) as server,
        tw.Orchestrator.from_config(cache_config(server.base_url + "/v1")) as orch,
    ):

        def received(text: str) -> int:
            return sum(1 for r in server.requests if text in r.prompt)

        print("1) The same request twice, one after the other")
        question = "What does HTTP status 429 mean?"
        for n in (1, 2):
            resp = await orch.run(question)
            print(
                f"   call {n}: cached={resp.cached}  cost={_cost(resp)}  latency={resp.latency_ms:.0f} ms"
                f"  attempts={[a.outcome for a in resp.attempts]}"
            )
        print(f"   server received {received(question)} request(s) for it")

        print("\n2) Five identical requests at the same time (coalesced)")
        burst = "Summarize RFC 9110 in one paragraph."
        answers: list[tw.Response] = []

        async def ask() -> None:
            answers.append(await orch.run(burst))

        async with anyio.create_task_group() as tg:
            for _ in range(5):
                tg.start_soon(ask)
        paid = [r for r in answers if not r.cached]
        print(
            f"   {len(answers)} answers: {len(paid)} paid ({_cost(paid[0])}), "
            f"{len(answers) - len(paid)} cached=True at $0; "
            f"all identical: {len({r.text for r in answers}) == 1}"
        )
        print(f"   server received {received(burst)} request(s) for it")

        print("\n3) temperature=0.7 asks for a fresh sample each time: not cached")
        varied = "Suggest a name for a caching library."
        for _ in range(2):
            await orch.run(tw.Request.from_prompt(varied, temperature=0.7))
        print(f"   2 calls -> server received {received(varied)} request(s)")
        seeded = "Suggest a name for a routing library."
        for _ in range(2):
            await orch.run(tw.Request.from_prompt(seeded, temperature=0.7, seed=42))
        print(f"   with seed=42 (reproducible): 2 calls -> server received {received(seeded)} request(s)")

        req = orch.metrics.snapshot()["requests"]
        print(
            f"\n{req['total']} requests, {req['cache_hits']} cache hits ({req['cache_hit_rate']:.0%}), "
            f"{len(server.requests)} reached the server, total cost ${req['cost_usd']:.6f}"
        )


if __name__ == "__main__":
    anyio.run(main)
