"""No exporter sees an API key, a prompt or a completion unless content capture is
on: a key, a prompt and a completion are planted, a run with retries, a fallback,
a stream and a failure is exported through both exporters, and every exported
byte is searched (the Prometheus exposition; every span and metric point in the
SDK's JSON form, attributes, events and resource included).
"""

from __future__ import annotations

import pytest

pytest.importorskip("prometheus_client")
pytest.importorskip("opentelemetry.sdk")

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import tierwise as tw
from tierwise.catalog import ModelSpec
from tierwise.errors import TierwiseError
from tierwise.execution.executor import Deployment
from tierwise.execution.retry import RetryPolicy
from tierwise.observe.otel import OTelObserver
from tierwise.observe.prometheus import PrometheusObserver
from tierwise.providers.openai import OpenAI
from tierwise.testing import MockLLMServer, MockModel

# No telling prefix: only not exporting it keeps it out.
KEY = "Zq8Lm3Xv7Tn2Pw9Rk4PlantedKey"
PROMPT = "PROMPT-7f3a-please-summarize-the-quarterly-report"
COMPLETION = "COMPLETION-9b1c-the-quarter-went-well"


async def _exported(capture_content: bool) -> str:
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    prom = PrometheusObserver()
    otel = OTelObserver(
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
        capture_content=capture_content,
        propagate_context=True,
    )
    models = {
        "a-v1": MockModel(reply=COMPLETION, faults=["500", "429", "500", "500"]),
        "b-v1": MockModel(reply=COMPLETION, tokens_per_chunk=2),
        "c-v1": MockModel(faults=["401"], cycle_faults=True),
    }
    async with MockLLMServer(models) as server:
        provider = OpenAI(api_key=KEY, base_url=server.base_url + "/v1")
        deps = [
            Deployment(
                alias,
                provider,
                f"{alias}-v1",
                spec=ModelSpec(f"{alias}-v1", "openai", input=1, output=2),
                fallbacks=("b",) if alias == "a" else (),
            )
            for alias in ("a", "b", "c")
        ]
        async with tw.Orchestrator(
            deps,
            strategies={"default": tw.Single("a"), "only_c": tw.Single("c")},
            retry=RetryPolicy(max_attempts=2, initial_backoff=0.0, jitter=False),
            log_level=None,
            owned_providers=[provider],
            observers=[prom, otel],
        ) as orch:
            assert (await orch.run(PROMPT)).text == COMPLETION  # a: a 500, a 429; b answers
            text = ""
            async for event in orch.stream(PROMPT):  # a: two 500s; b streams
                if isinstance(event, tw.TextDelta):
                    text += event.text
            assert text == COMPLETION
            with pytest.raises(TierwiseError):  # a 401: no retry, no fallback
                await orch.run(PROMPT, strategy="only_c", metadata={"user": KEY})
        # The key reached the provider (it is the real one) yet nowhere else.
        assert any(KEY in r.headers.get("authorization", "") for r in server.requests)
    metrics = reader.get_metrics_data()
    assert metrics is not None
    return "\n".join(
        [
            prom.exposition().decode(),
            *(s.to_json() for s in spans.get_finished_spans()),
            metrics.to_json(),
        ]
    )


async def test_no_key_prompt_or_completion_is_exported_by_default() -> None:
    exported = await _exported(capture_content=False)
    assert "tierwise_requests_total" in exported and "gen_ai.client.operation.duration" in exported
    for planted in (KEY, PROMPT, COMPLETION, "quarterly", "quarter-went"):
        assert planted not in exported


async def test_content_capture_exports_the_conversation_but_never_the_key() -> None:
    exported = await _exported(capture_content=True)
    assert PROMPT in exported and COMPLETION in exported
    assert KEY not in exported
