"""Verified execution: cheap → mid → strong, escalating only when a check fails.

Mirrors the tutorials' "Pattern 2: Cascade (Quality Escalation)" and "Advanced:
Quality Verification" (``verified_execution``: answer with a cheap model, have a
better model rate it 0-1, re-run on a stronger tier below the threshold). Their
options for "confidence" are all ``tierwise.verify`` checks:

* output structure validation → ``ValidJSON()`` (free, local);
* "very short answers to complex questions" → ``MinLength()`` (free, local: a
  question of 30+ words needs a 50+ character answer);
* a better model rating the answer → ``Judge("gpt55", threshold=0.7)`` (one extra
  model call per checked rung, billed to the request).

Two cascades over DeepSeek → Claude Sonnet → Claude Opus (offline, MockLLMServer):

1. ``ValidJSON() & MinLength()``, built in code: DeepSeek answers in prose (not
   JSON), Sonnet with JSON too short for the question, Opus with a full answer.
2. a judge, from config (``accept = [{judge = {target = "gpt55", threshold =
   0.7}}]``): the judge scores DeepSeek's answer 0.4 and Sonnet's 0.9, so the
   cascade stops at Sonnet and Opus is never called.

For each it prints which rung answered and every step — rungs and verifier calls —
with its cost; ``resp.cost_usd`` is their sum.

    python examples/cascade.py
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

EXTRACT = (
    "Extract every HTTP endpoint defined in the Flask application below and return them as a JSON "
    "array of objects with the keys method, path and handler, one object per route, including the "
    "health check and the admin routes."
)
EXPLAIN = "Explain the trade-offs between optimistic and pessimistic locking for an inventory service."

FULL_JSON = (
    '[{"method": "GET", "path": "/health", "handler": "health"}, '
    '{"method": "GET", "path": "/users", "handler": "list_users"}, '
    '{"method": "POST", "path": "/admin/reindex", "handler": "reindex"}]'
)


def _answers(model: str, *, json_reply: str, prose: str) -> Any:
    def reply(request: MockRequest) -> str:
        return json_reply if "Flask" in request.prompt else f"[{model}] {prose}"

    return reply


def _judge(request: MockRequest) -> str:
    """The judge (GPT-5.5) scores DeepSeek's answers low and everyone else's high."""
    answer = re.search(r"<response>(.*)</response>", request.prompt, re.S)
    return "0.4" if answer and "[deepseek]" in answer.group(1) else "0.9"


def cascade_config(base_url: str) -> dict[str, Any]:
    return {
        "providers": {
            "gateway": {"type": "openai", "compat": "gateway", "base_url": base_url, "api_key_env": KEY_ENV}
        },
        "models": {
            "deepseek": {"provider": "gateway", "model": "deepseek-chat"},
            "sonnet": {"provider": "gateway", "model": "claude-sonnet-4-6"},
            "opus": {"provider": "gateway", "model": "claude-opus-4-7"},
            "gpt55": {"provider": "gateway", "model": "gpt-5.5"},
        },
        "strategies": {
            "judged": {
                "type": "cascade",
                "targets": ["deepseek", "sonnet", "opus"],
                "accept": [{"judge": {"target": "gpt55", "threshold": 0.7}}],
            }
        },
    }


def show(resp: tw.Response) -> None:
    print(f"   answered by rung {resp.route.label} ({resp.deployment}): {resp.text[:70]!r}")
    print(f"   reason: {resp.route.reason}")
    for step in resp.steps:
        verdict = {True: "accepted", False: "rejected", None: ""}[step.accepted]
        cost = "unknown" if step.cost_usd is None else f"${step.cost_usd:.6f}"
        note = step.note if step.note != "verifier call" else "(verifier call)"
        print(f"     {step.name:<17} {step.model:<9} {cost:>10}  {verdict:<8}  {note[:60]}")
    known = [s.cost_usd for s in resp.steps if s.cost_usd is not None]
    print(f"   total cost ${resp.cost_usd or 0.0:.6f} = sum of {len(known)} steps ${sum(known):.6f}")


async def main() -> None:
    os.environ.setdefault(KEY_ENV, "sk-example-not-a-real-key")
    mocks = {
        "deepseek-chat": MockModel(
            reply=_answers(
                "deepseek",
                json_reply="Sure! The app defines GET /health, GET /users and POST /admin/reindex.",
                prose="Optimistic locking is faster.",
            )
        ),
        "claude-sonnet-4-6": MockModel(
            reply=_answers(
                "sonnet",
                json_reply='[{"method": "GET", "path": "/health"}]',
                prose="Optimistic locking avoids holding locks and retries on conflict; pessimistic "
                "locking blocks writers but never retries. Pick by how often orders collide.",
            )
        ),
        "claude-opus-4-7": MockModel(
            reply=_answers("opus", json_reply=FULL_JSON, prose="A thorough answer.")
        ),
        "gpt-5.5": MockModel(reply=_judge),
    }
    async with (
        MockLLMServer(mocks) as server,
        tw.Orchestrator.from_config(cascade_config(server.base_url + "/v1")) as orch,
    ):
        # 1. Local checks, built in code and registered on the orchestrator.
        checks = tw.verify.ValidJSON() & tw.verify.MinLength()
        orch.strategies["checked"] = tw.Cascade(["deepseek", "sonnet", "opus"], accept=checks, name="checked")
        print(f"1) {orch.explain(EXTRACT, strategy='checked').reason}")
        show(await orch.run(EXTRACT, strategy="checked"))

        # 2. A judge model, from config.
        print(f"\n2) {orch.explain(EXPLAIN, strategy='judged').reason}")
        show(await orch.run(EXPLAIN, strategy="judged"))
        opus_calls = sum(
            1 for r in server.requests if r.model == "claude-opus-4-7" and "Flask" not in r.prompt
        )
        print(f"   Opus calls for this question: {opus_calls}")


if __name__ == "__main__":
    anyio.run(main)
