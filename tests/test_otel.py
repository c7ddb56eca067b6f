"""The OpenTelemetry exporter against the real SDK's in-memory exporters: span
names, GenAI attributes, parent/child structure, retry and fallback events, the
two GenAI client metrics, a streamed request, a cascade, opt-in content, and W3C
trace context arriving at the provider. Real calls over loopback sockets
(OpenAI adapter against ``MockLLMServer``).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk")
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

import tierwise as tw
from tierwise.catalog import ModelSpec
from tierwise.execution.executor import Deployment
from tierwise.execution.retry import RetryPolicy
from tierwise.observe.otel import OTelObserver
from tierwise.providers.openai import OpenAI
from tierwise.strategies.base import Strategy
from tierwise.testing import MockLLMServer, MockModel

KEY = "sk-otel-test-key-0123456789abcdef"


class Telemetry:
    """An SDK tracer and meter provider wired to in-memory exporters."""

    def __init__(self) -> None:
        self.spans = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])

    def observer(self, **kw: Any) -> OTelObserver:
        return OTelObserver(tracer_provider=self.tracer_provider, meter_provider=self.meter_provider, **kw)

    def finished(self) -> list[ReadableSpan]:
        return list(self.spans.get_finished_spans())

    def metrics(self) -> dict[str, list[Any]]:
        data = self.reader.get_metrics_data()
        out: dict[str, list[Any]] = {}
        assert data is not None
        for rm in data.resource_metrics:
            for sm in rm.scope_metrics:
                assert sm.scope.name == "tierwise"
                for metric in sm.metrics:
                    out.setdefault(metric.name, []).append(metric)
        return out


def _orch(
    server: MockLLMServer, observer: OTelObserver, strategies: dict[str, Strategy] | None = None
) -> tw.Orchestrator:
    provider = OpenAI(api_key=KEY, base_url=server.base_url + "/v1")
    deps = [
        Deployment("cheap", provider, "cheap-v1", spec=ModelSpec("cheap-v1", "openai", input=1, output=2)),
        Deployment("dear", provider, "dear-v1", spec=ModelSpec("dear-v1", "openai", input=10, output=20)),
    ]
    return tw.Orchestrator(
        deps,
        strategies=strategies,
        fallbacks=["dear"],
        retry=RetryPolicy(max_attempts=2, initial_backoff=0.0, jitter=False),
        log_level=None,
        owned_providers=[provider],
        observers=[observer],
    )


def by_name(spans: list[ReadableSpan]) -> dict[str, list[ReadableSpan]]:
    out: dict[str, list[ReadableSpan]] = {}
    for s in spans:
        out.setdefault(s.name, []).append(s)
    return out


async def test_a_request_span_with_a_child_per_try_and_retry_and_fallback_events() -> None:
    tel = Telemetry()
    models = {
        "cheap-v1": MockModel(faults=["503", "503"]),
        "dear-v1": MockModel(reply="from dear", input_tokens=30, output_tokens=7),
    }
    async with MockLLMServer(models) as server, _orch(server, tel.observer()) as orch:
        response = await orch.run("hello there", metadata={"tier": "x"})
    spans = by_name(tel.finished())
    (root,) = spans["tierwise.request default"]
    tries = spans["chat cheap-v1"] + spans["chat dear-v1"]
    assert len(spans["chat cheap-v1"]) == 2 and len(spans["chat dear-v1"]) == 1
    assert root.parent is None and root.kind == SpanKind.INTERNAL
    for child in tries:
        assert child.kind == SpanKind.CLIENT
        assert child.parent is not None and child.parent.span_id == root.context.span_id
        assert child.context.trace_id == root.context.trace_id
        assert root.start_time <= child.start_time <= child.end_time <= root.end_time
    failed = spans["chat cheap-v1"][0]
    assert failed.attributes["error.type"] == "ServerError"
    assert failed.status.status_code == StatusCode.ERROR
    assert failed.attributes["gen_ai.provider.name"] == "openai"
    assert failed.attributes["gen_ai.request.model"] == "cheap-v1"
    assert "gen_ai.response.model" not in failed.attributes
    ok = spans["chat dear-v1"][0]
    assert ok.attributes["gen_ai.operation.name"] == "chat"
    assert ok.attributes["gen_ai.response.model"] == response.model
    assert ok.attributes["gen_ai.usage.input_tokens"] == 30
    assert ok.attributes["gen_ai.usage.output_tokens"] == 7
    assert tuple(ok.attributes["gen_ai.response.finish_reasons"]) == ("stop",)
    assert ok.attributes["tierwise.cost_usd"] == pytest.approx(response.cost_usd)
    assert "error.type" not in ok.attributes
    # The request span: route, answer, totals; one retry event and one fallback event.
    assert root.attributes["tierwise.strategy"] == "default"
    assert root.attributes["tierwise.deployment"] == "dear"
    assert root.attributes["tierwise.fallback"] is True
    assert root.attributes["tierwise.cost_usd"] == pytest.approx(response.cost_usd)
    events = [(e.name, e.attributes["tierwise.deployment"]) for e in root.events]
    assert events == [("tierwise.retry", "cheap"), ("tierwise.fallback", "dear")]
    assert root.events[1].attributes["tierwise.fallback.from"] == "cheap"
    # No content unless asked for.
    for span in tel.finished():
        for v in span.attributes.values():
            assert "hello there" not in str(v) and "from dear" not in str(v)

    found = tel.metrics()
    (duration,) = found["gen_ai.client.operation.duration"]
    assert duration.unit == "s"
    points = {
        (p.attributes["gen_ai.request.model"], p.attributes.get("error.type")): p
        for p in duration.data.data_points
    }
    assert points[("cheap-v1", "ServerError")].count == 2
    assert points[("dear-v1", None)].count == 1
    (usage,) = found["gen_ai.client.token.usage"]
    assert usage.unit == "{token}"
    sums = {p.attributes["gen_ai.token.type"]: p.sum for p in usage.data.data_points}
    assert sums == {"input": 30, "output": 7}


async def test_a_streamed_request_and_opt_in_content() -> None:
    tel = Telemetry()
    model = MockModel(reply="streamed words here", tokens_per_chunk=1, input_tokens=12, output_tokens=3)
    async with MockLLMServer({"cheap-v1": model}) as server:
        async with _orch(server, tel.observer(capture_content=True)) as orch:
            text = ""
            async for event in orch.stream("tell me"):
                if isinstance(event, tw.TextDelta):
                    text += event.text
    assert text == "streamed words here"
    spans = by_name(tel.finished())
    (root,) = spans["tierwise.request default"]
    (attempt,) = spans["chat cheap-v1"]
    assert attempt.parent is not None and attempt.parent.span_id == root.context.span_id
    assert attempt.attributes["tierwise.stream"] is True
    assert attempt.attributes["gen_ai.response.time_to_first_chunk"] > 0
    assert attempt.attributes["gen_ai.usage.output_tokens"] == 3
    inputs = json.loads(str(attempt.attributes["gen_ai.input.messages"]))
    assert inputs == [{"role": "user", "parts": [{"type": "text", "content": "tell me"}]}]
    outputs = json.loads(str(attempt.attributes["gen_ai.output.messages"]))
    assert outputs[0]["parts"] == [{"type": "text", "content": "streamed words here"}]
    assert outputs[0]["finish_reason"] == "stop"


async def test_a_cascade_gives_one_request_span_with_a_child_per_rung() -> None:
    tel = Telemetry()
    models = {"cheap-v1": MockModel(reply="not sure"), "dear-v1": MockModel(reply="certain answer")}
    cascade = tw.Cascade(["cheap", "dear"], accept=lambda r: "certain" in r.text, name="climb")
    async with MockLLMServer(models) as server:
        async with _orch(server, tel.observer(), strategies={"climb": cascade}) as orch:
            response = await orch.run("question")
    assert response.deployment == "dear"
    spans = by_name(tel.finished())
    (root,) = spans["tierwise.request climb"]
    (rung1,) = spans["chat cheap-v1"]
    (rung2,) = spans["chat dear-v1"]
    for rung in (rung1, rung2):
        assert rung.parent is not None and rung.parent.span_id == root.context.span_id
    assert rung1.attributes["tierwise.path"] != rung2.attributes["tierwise.path"]
    assert rung1.attributes["tierwise.path"].startswith("climb")
    # Only the accepted rung carries the response's model and finish reason.
    assert "gen_ai.response.model" not in rung1.attributes
    assert rung2.attributes["gen_ai.response.model"] == response.model
    assert root.attributes["tierwise.route.path"] == response.route.strategy_path
    # A rung that answered but was rejected is not a fallback.
    assert [e.name for e in root.events] == []


async def test_trace_context_reaches_the_provider_when_enabled() -> None:
    tel = Telemetry()
    tracer = tel.tracer_provider.get_tracer("app")
    async with MockLLMServer({"cheap-v1": MockModel(reply="ok")}) as server:
        async with _orch(server, tel.observer(propagate_context=True)) as orch:
            with tracer.start_as_current_span("GET /ask") as app_span:
                await orch.run("hi")
            await orch.run("outside any span")
        first, second = server.requests[-2:]
    trace_id = f"{app_span.get_span_context().trace_id:032x}"
    span_id = f"{app_span.get_span_context().span_id:016x}"
    flags = f"{int(app_span.get_span_context().trace_flags):02x}"
    assert first.headers["traceparent"] == f"00-{trace_id}-{span_id}-{flags}"
    assert "traceparent" not in second.headers  # no current span: nothing to propagate
    spans = by_name(tel.finished())
    (root, _) = spans["tierwise.request default"]
    assert root.parent is not None and root.parent.span_id == app_span.get_span_context().span_id


async def test_no_trace_context_by_default() -> None:
    tel = Telemetry()
    tracer = tel.tracer_provider.get_tracer("app")
    async with MockLLMServer({"cheap-v1": MockModel(reply="ok")}) as server:
        async with _orch(server, tel.observer()) as orch:
            with tracer.start_as_current_span("GET /ask"):
                await orch.run("hi")
        (request,) = server.requests
    assert "traceparent" not in request.headers
