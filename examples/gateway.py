"""One OpenAI-compatible gateway for all models.

Mirrors the tutorials' "one endpoint for all models" setup (``OpenAI(base_url=
"https://api.futurmix.ai/v1")`` with gateway prices below list): Claude Opus, Claude
Sonnet, GPT-5.5 and DeepSeek are all called through ONE provider entry,
``type = "openai", compat = "gateway"``, and every deployment is priced 10% below the
list price in tierwise's built-in catalog (``Catalog.default().scaled(0.9)``).

Offline: a ``MockLLMServer`` on 127.0.0.1 plays the gateway; the key is a dummy
value in an example-only environment variable. Prints, per model, the list and
gateway prices and what one call cost, then checks that every request went to the
same endpoint with the same key.

    python examples/gateway.py
"""

from __future__ import annotations

import os
from typing import Any

import anyio

import tierwise as tw
from tierwise.testing import MockLLMServer, MockModel

KEY_ENV = "TIERWISE_EXAMPLE_KEY"  # an example-only variable: never a real key
DISCOUNT = 0.9  # the gateway charges 10% below list

# alias -> wire model name (what the gateway calls the model)
MODELS = {
    "opus": "claude-opus-4-7",
    "sonnet": "claude-sonnet-4-6",
    "gpt55": "gpt-5.5",
    "deepseek": "deepseek-chat",
}
INPUT_TOKENS, OUTPUT_TOKENS = 1_200, 400  # fixed token counts, so the costs are easy to check


def gateway_config(base_url: str) -> dict[str, Any]:
    """The whole setup: one provider, four models at gateway prices, one strategy each."""
    gateway_prices = tw.Catalog.default().scaled(DISCOUNT)
    models: dict[str, Any] = {}
    for alias, wire in MODELS.items():
        spec = gateway_prices[wire]
        models[alias] = {
            "provider": "gateway",
            "model": wire,
            # Prices on a model entry override the catalog for this deployment.
            "input_price": spec.input,
            "output_price": spec.output,
            "cached_input_price": spec.cached_input,
        }
    return {
        "providers": {
            "gateway": {
                "type": "openai",
                "compat": "gateway",
                "base_url": base_url,  # e.g. "https://api.futurmix.ai/v1"
                "api_key_env": KEY_ENV,
            }
        },
        "models": models,
        "strategies": {alias: {"type": "single", "target": alias} for alias in MODELS},
    }


async def main() -> None:
    os.environ.setdefault(KEY_ENV, "sk-example-not-a-real-key")
    mocks = {
        wire: MockModel(
            reply=f"[{wire}] Here is my answer.", input_tokens=INPUT_TOKENS, output_tokens=OUTPUT_TOKENS
        )
        for wire in MODELS.values()
    }
    catalog = tw.Catalog.default()
    async with MockLLMServer(mocks) as server:
        config = gateway_config(server.base_url + "/v1")
        print(f"One OpenAI-compatible endpoint for all models: {config['providers']['gateway']['base_url']}")
        print(
            f"(gateway prices = list x {DISCOUNT}; {INPUT_TOKENS} tokens in, {OUTPUT_TOKENS} out per call)\n"
        )
        print(f"  {'alias':<9} {'wire model':<18} {'list $/1M in/out':<17} {'gateway $/1M':<14} {'cost':>10}")
        total = total_list = 0.0
        async with tw.Orchestrator.from_config(config) as orch:
            for alias, wire in MODELS.items():
                resp = await orch.run("Summarize the tutorial in one sentence.", strategy=alias)
                listed = catalog[wire]
                spec = orch.deployments[alias].spec
                assert spec is not None
                assert spec.input is not None
                assert spec.output is not None
                assert listed.input is not None
                assert listed.output is not None
                list_cost = (INPUT_TOKENS * listed.input + OUTPUT_TOKENS * listed.output) / 1e6
                cost = resp.cost_usd or 0.0
                total += cost
                total_list += list_cost
                list_price = f"{listed.input:.2f} / {listed.output:.2f}"
                gateway_price = f"{spec.input:.2f} / {spec.output:.2f}"
                print(
                    f"  {alias:<9} {resp.model:<18} {list_price:<17} {gateway_price:<14} {f'${cost:.6f}':>10}"
                    f"  (provider={resp.provider})"
                )
        endpoints = sorted({r.path for r in server.requests})
        keys = {r.headers.get("authorization") for r in server.requests}
        print(
            f"\n{len(server.requests)} requests, endpoints used: {', '.join(endpoints)}; "
            f"distinct keys: {len(keys)}"
        )
        print(f"total ${total:.6f} vs ${total_list:.6f} at list price: saving {1 - total / total_list:.1%}")


if __name__ == "__main__":
    anyio.run(main)
