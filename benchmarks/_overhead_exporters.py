"""The exporters row of ``overhead.py``: both exporters on, as an application runs them.

Kept apart so ``overhead.py`` stays one screenful shorter and imports neither
prometheus-client nor the OpenTelemetry SDK unless the row is run.
"""

from __future__ import annotations

from typing import Any


def exporters() -> tuple[Any, ...]:
    """Both exporters on, as an application would run them: a Prometheus registry,
    and OTel spans through the SDK's batch processor (to an exporter that drops
    them: the network export is the collector's cost, not the request's) plus SDK
    metrics aggregated for a reader."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    from tierwise.observe.otel import OTelObserver
    from tierwise.observe.prometheus import PrometheusObserver

    class Drop(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(Drop()))
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    otel = OTelObserver(tracer_provider=tracer_provider, meter_provider=meter_provider)
    return PrometheusObserver(), otel
