"""Observability: Prometheus metrics, OpenTelemetry GenAI traces, alerts and savings.

Mirrors the tutorials' production advice: "latency p50/p95/p99 per model, error
rate per model and error type, cost per request by task type, fallback rate",
and "alert when the fallback rate exceeds 5%" or when "a routing bug sends
everything to the expensive model". Here those figures leave the process the way
a backend team reads them:

* ``[telemetry] prometheus = true``: ``orch.prometheus_registry`` holds the
  counters and histograms (serve it with ``metrics_app(orch)`` on ``/metrics``);
* an ``OTelObserver`` on an OpenTelemetry SDK tracer provider: one span per
  request, a child per provider try, GenAI attribute names (``gen_ai.*``);
* ``[alerts]``: a fallback-rate rule and a most-expensive-model-share rule, each
  firing once per episode;
* savings against the priciest model ("Opus for everything"), per request.

The workload (30 requests, offline against ``MockLLMServer``) routes four tiers
and has Sonnet fail now and then (seeded 503s, answered by its fallback). Needs
``prometheus-client`` and ``opentelemetry-sdk`` (``pip install -e ".[dev]"``);
without them it says so and exits 0.

    python examples/observability.py
"""

from __future__ import annotations

import os
from typing import Any

import anyio

import tierwise as tw
from tierwise.testing import MockLLMServer, MockModel

KEY_ENV = "TIERWISE_EXAMPLE_KEY"  # an example-only variable: never a real key
PROMPTS = [
    "Debug this race condition in the billing worker pool and find the root cause.",
    "Why does my search component re-render twice on mount?",
    "Extract the function names from upload.py and return as JSON.",
    "Add docstrings to every function in session.py.",
    "Generate unit tests for the invoice class.",
]


def config(base_url: str) -> dict[str, Any]:
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
        "retry": {"max_attempts": 1},
        "telemetry": {"prometheus": True},
        "alerts": {
            "log": False,  # this example prints them itself
            "rules": [
                {"kind": "fallback_rate", "threshold": 0.05, "min_samples": 10},
                {"kind": "expensive_share", "threshold": 0.15, "min_samples": 10},
            ],
        },
        "logging": {"level": "off"},
        "seed": 7,
    }


async def main() -> None:
    try:
        import prometheus_client
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    except ImportError:
        print('This example needs prometheus-client and opentelemetry-sdk: pip install -e ".[dev]"')
        return
    from tierwise.observe.otel import OTelObserver

    os.environ.setdefault(KEY_ENV, "sk-example-not-a-real-key")
    # In an application: the SDK set up once (OTLP exporter to your collector) and
    # [telemetry] otel = true. Here the spans are kept in memory to print them.
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    words = "This answer explains the change step by step with code and caveats. " * 4
    mocks = {
        "claude-opus-4-7": MockModel(reply=words * 2, latency_ms=20),
        "claude-sonnet-4-6": MockModel(reply=words, latency_ms=10, fault_rates={"503": 0.3}),
        "gpt-5.5": MockModel(reply='{"functions": ["merge", "split"]}', latency_ms=8),
        "deepseek-chat": MockModel(reply=words, latency_ms=5),
    }
    async with MockLLMServer(mocks, seed=3) as server:
        orch = tw.Orchestrator.from_config(config(server.base_url + "/v1"))
        orch.observers.add(OTelObserver(tracer_provider=tracer_provider))
        assert orch.alerts is not None
        orch.alerts.handlers.append(
            lambda a: print(f"ALERT {'resolved' if a.resolved else 'firing'}: {a.message}")
        )
        async with orch:
            saved = 0.0
            for i in range(30):
                response = await orch.run(PROMPTS[i % len(PROMPTS)])
                saved += response.savings_usd or 0.0
            registry = orch.prometheus_registry

    print(f"\nsaved ${saved:.4f} against {orch.baseline} for everything")
    print("\nPrometheus (a few series of orch.prometheus_registry):")
    exposition = prometheus_client.generate_latest(registry).decode()
    for line in exposition.splitlines():
        if line.startswith(
            ("tierwise_requests_total", "tierwise_fallbacks_total", "tierwise_cost_usd_total")
        ):
            print(" ", line)

    finished = spans.get_finished_spans()
    root = next(
        s for s in finished if s.name.startswith("tierwise.request") and s.attributes["tierwise.fallback"]
    )
    print(f"\nOpenTelemetry: {len(finished)} spans; one request that fell back:")
    events = [e.name for e in root.events]
    print(f"  {root.name}  route={root.attributes['tierwise.route.label']}  events={events}")
    for child in finished:
        if child.parent is not None and child.parent.span_id == root.context.span_id:
            outcome = child.attributes.get("error.type", "ok")
            print(f"    {child.name}  provider={child.attributes['gen_ai.provider.name']}  {outcome}")


if __name__ == "__main__":
    anyio.run(main)
