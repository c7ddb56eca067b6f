"""Custom strategies by subclassing: override one decision, keep everything else.

The tutorials' routers grow business rules ("check metadata hints first", "if
already using complex tier, no verification needed"). Instead of forking a
router, subclass a built-in strategy and override its one hook:

* ``VipRouter(tw.Router)`` overrides only ``select``: requests whose metadata says
  ``user_tier = "vip"`` always go to the best model; everyone else is classified
  as usual (``super().select``). ``run``, ``stream`` and ``explain`` all go
  through ``select``, so ``orch.explain`` shows the VIP rule too.
* ``CodeCascade(tw.Cascade)`` overrides only ``accept``: an answer to a question
  that asks for code is good enough only when it contains a fenced code block;
  anything else just has to be non-empty. No ``accept=`` verifier is needed.

The cascade is nested as the router's "standard" route (strategies are targets
like model aliases). Retries, fallbacks, cost, metrics and paths still come from
the executor, untouched. Offline against ``MockLLMServer``.

    python examples/custom_strategy.py
"""

from __future__ import annotations

import os
from typing import Any

import anyio

import tierwise as tw
from tierwise.testing import MockLLMServer, MockModel
from tierwise.testing.mock_server import MockRequest
from tierwise.verify import Verdict

KEY_ENV = "TIERWISE_EXAMPLE_KEY"  # an example-only variable: never a real key


class VipRouter(tw.Router):
    """The keyword router, except that VIP users always get the complex route."""

    def select(
        self, request: tw.Request, ctx: tw.RunContext | None = None
    ) -> tuple[str, tw.strategies.Target, tw.Classification]:
        if request.metadata.get("user_tier") == "vip":
            return (
                "complex",
                self.routes["complex"],
                tw.Classification("complex", 1.0, "VIP user: best model"),
            )
        return super().select(request, ctx)


class CodeCascade(tw.Cascade):
    """Escalate when a request for code is answered without a code block."""

    async def accept(self, request: tw.Request, response: tw.Response, ctx: tw.RunContext) -> Verdict:
        question = request.messages[-1].text.lower()
        if any(word in question for word in ("function", "code", "snippet", "script")):
            if "```" in response.text:
                return Verdict.accept("code requested and a code block given")
            return Verdict.reject("code requested but no code block in the answer")
        return Verdict(bool(response.text.strip()), reason="non-empty answer")


def models_config(base_url: str) -> dict[str, Any]:
    model = {"provider": "gateway"}
    return {
        "providers": {
            "gateway": {"type": "openai", "compat": "gateway", "base_url": base_url, "api_key_env": KEY_ENV}
        },
        "models": {
            "opus": {**model, "model": "claude-opus-4-7"},
            "sonnet": {**model, "model": "claude-sonnet-4-6"},
            "gpt55": {**model, "model": "gpt-5.5"},
            "deepseek": {**model, "model": "deepseek-chat"},
        },
    }


def _deepseek(request: MockRequest) -> str:
    if "merges" in request.prompt:  # prose where code was asked for: the cascade escalates
        return "To merge two sorted lists, walk both with two indexes and take the smaller head each time."
    if "docstrings" in request.prompt:
        return '"""Return the invoice total, tax included."""'
    return "React 18's StrictMode mounts components twice in development to surface side effects."


def _sonnet(request: MockRequest) -> str:
    return "```python\ndef merge(a, b):\n    return sorted(a + b)\n```"


PROMPTS: list[tuple[str, dict[str, Any]]] = [
    ("Why does my React component re-render twice on mount?", {"user_tier": "free"}),
    ("Why does my React component re-render twice on mount?", {"user_tier": "vip"}),
    ("Add docstrings to every function in billing.py.", {"user_tier": "free"}),
    ("Add docstrings to every function in billing.py.", {"user_tier": "vip"}),
    ("Write a Python function that merges two sorted lists.", {"user_tier": "free"}),
]


async def main() -> None:
    os.environ.setdefault(KEY_ENV, "sk-example-not-a-real-key")
    mocks = {
        "claude-opus-4-7": MockModel(reply="[opus] A thorough, carefully reasoned answer."),
        "claude-sonnet-4-6": MockModel(reply=_sonnet),
        "gpt-5.5": MockModel(reply='{"ok": true}'),
        "deepseek-chat": MockModel(reply=_deepseek),
    }
    async with (
        MockLLMServer(mocks) as server,
        tw.Orchestrator.from_config(models_config(server.base_url + "/v1")) as orch,
    ):
        code_first = CodeCascade(["deepseek", "sonnet", "opus"], name="code_first")
        router = VipRouter(
            tw.KeywordClassifier.default(),
            routes={"complex": "opus", "standard": code_first, "structured": "gpt55", "bulk": "deepseek"},
            default="standard",
            name="vip_router",
        )
        # Strategies built in code are registered on the orchestrator by name.
        orch.strategies["vip_router"] = router
        orch.default_strategy = "vip_router"

        for prompt, metadata in PROMPTS:
            request = tw.Request.from_prompt(prompt, metadata=metadata)
            plan = orch.explain(request)
            resp = await orch.run(request)
            print(f"{prompt}  [{metadata['user_tier']}]")
            print(f"   explain(): {plan.label}  ({plan.reason})")
            print(f"   answered by {resp.deployment} at {resp.route.strategy_path}: {resp.text[:60]!r}")
            print(f"   why: {resp.route.reason}")
        print(f"\n{len(server.requests)} model calls in total")


if __name__ == "__main__":
    anyio.run(main)
