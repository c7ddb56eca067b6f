"""OpenTelemetry export: GenAI-convention spans and metrics, as an observer.

Switched on with ``[telemetry] otel = true`` or in code
(``Orchestrator(..., observers=[OTelObserver()])``). It uses the tracer and
meter providers the application configured (``opentelemetry.trace`` /
``opentelemetry.metrics`` globals, or the ones passed in), as OTel
instrumentations do, and needs only ``opentelemetry-api`` (the ``otel`` extra):
without an SDK configured, every call is a no-op.

What is exported (names from the OpenTelemetry GenAI semantic conventions,
docs/otel.md lists them all):

* one span per request (``tierwise.request <strategy>``, INTERNAL) with the
  strategy, route label and path, the answering deployment, the cost and token
  totals, and events for retries (``tierwise.retry``), fallbacks
  (``tierwise.fallback``), cache hits and deployments passed over;
* one CLIENT child span per provider try (``chat <model>``) with
  ``gen_ai.operation.name``, ``gen_ai.provider.name``, ``gen_ai.request.model``,
  ``gen_ai.response.model``, ``gen_ai.usage.input_tokens`` /
  ``output_tokens``, ``gen_ai.response.finish_reasons`` and ``error.type``;
* the histograms ``gen_ai.client.operation.duration`` (s) and
  ``gen_ai.client.token.usage`` ({token}, by ``gen_ai.token.type``).

Why spans are made after the fact: observers hear of a try when it ends and of a
request when it ends, so spans are started and ended with their real
timestamps (``start_time``/``end_time``) once the request is over. A try's span
waits, keyed by its ``Attempt`` object, until its request's event arrives and
names it; a try no request claims (``orch.embed``) becomes a span of its own.
The same reason decides what W3C trace context a provider sees when
``propagate_context`` is on: the context current when the HTTP request is sent
(the application's span, e.g. the web request being served), so the provider's
trace and tierwise's spans share one trace id.

Prompts and completions are never exported unless ``capture_content=True``
(then as ``gen_ai.input.messages`` / ``gen_ai.output.messages`` on the try that
answered). Error messages are never exported, only the error's class: a
provider's error text may quote the prompt.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .events import AttemptEvent, RequestEvent

if TYPE_CHECKING:
    from ..orchestrator import Orchestrator
    from ..types import Request, Response

__all__ = ["OTelObserver", "provider_name"]

_INSTALL_HINT = 'the OpenTelemetry exporter needs opentelemetry-api: pip install "tierwise[otel]"'
_SCOPE = "tierwise"
# Bucket boundaries the conventions recommend for the two histograms.
_DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
_TOKEN_BUCKETS = tuple(float(4**i) for i in range(14))  # 1, 4, 16, ... 67108864
#: tierwise provider names → ``gen_ai.provider.name`` well-known values.
_PROVIDER_NAMES = {"gemini": "gcp.gemini", "mistral": "mistral_ai", "azure": "azure.ai.openai"}
_MAX_PENDING = 10_000


def provider_name(name: str) -> str:
    """The ``gen_ai.provider.name`` for a tierwise provider name."""
    return _PROVIDER_NAMES.get(name, name)


def _api() -> tuple[Any, Any, Any]:
    try:
        from opentelemetry import metrics, trace
        from opentelemetry.trace import SpanKind
    except ImportError as exc:
        raise ImportError(_INSTALL_HINT, name="opentelemetry") from exc
    return trace, metrics, SpanKind


class OTelObserver:
    """Spans and metrics of every request and try on the application's OTel providers.

    ``tracer_provider``/``meter_provider`` default to the global ones;
    ``capture_content`` puts prompts and completions on the answering try's span;
    ``propagate_context`` adds W3C ``traceparent`` (and the other configured
    propagators' headers) to every provider HTTP request of the orchestrator.
    """

    def __init__(
        self,
        *,
        tracer_provider: Any = None,
        meter_provider: Any = None,
        capture_content: bool = False,
        propagate_context: bool = False,
    ) -> None:
        trace, metrics, span_kind = _api()
        from .. import __version__

        self._trace = trace
        self._client_kind = span_kind.CLIENT
        self._tracer = trace.get_tracer(_SCOPE, __version__, tracer_provider=tracer_provider)
        meter = metrics.get_meter(_SCOPE, __version__, meter_provider=meter_provider)
        self._duration = meter.create_histogram(
            "gen_ai.client.operation.duration",
            unit="s",
            description="GenAI operation duration.",
            explicit_bucket_boundaries_advisory=_DURATION_BUCKETS,
        )
        self._tokens = meter.create_histogram(
            "gen_ai.client.token.usage",
            unit="{token}",
            description="Measures number of input and output tokens used.",
            explicit_bucket_boundaries_advisory=_TOKEN_BUCKETS,
        )
        self.capture_content = capture_content
        self.propagate_context = propagate_context
        # id(Attempt) -> (event, end time in ns): tries waiting for their request.
        self._pending: dict[int, tuple[AttemptEvent, int]] = {}
        self._hooked: list[Any] = []

    # -- events ------------------------------------------------------------------

    def on_attempt(self, event: AttemptEvent) -> None:
        end = time.time_ns()
        self._record_metrics(event)
        if event.attempt is None or event.kind == "embed":
            self._attempt_span(event, end, None, None, None)
            return
        pending = self._pending
        if len(pending) >= _MAX_PENDING:  # never claimed: export them alone, keep memory bounded
            for key in list(pending)[: _MAX_PENDING // 10]:
                old, old_end = pending.pop(key)
                self._attempt_span(old, old_end, None, None, None)
        pending[id(event.attempt)] = (event, end)

    def on_request(self, event: RequestEvent) -> None:
        end = time.time_ns()
        start = end - int(event.latency_ms * 1e6)
        attrs: dict[str, Any] = {"tierwise.strategy": event.strategy}
        response = event.response
        if event.label is not None:
            attrs["tierwise.route.label"] = event.label
        if response is not None and response.route.strategy_path:
            attrs["tierwise.route.path"] = response.route.strategy_path
        if event.model is not None:
            attrs["tierwise.deployment"] = event.model
        attrs["tierwise.fallback"] = event.fallback
        attrs["tierwise.cached"] = event.cached
        if event.cancelled:
            attrs["tierwise.cancelled"] = True
        if event.cost_usd is not None:
            attrs["tierwise.cost_usd"] = event.cost_usd
        if response is not None and response.savings_usd is not None:
            attrs["tierwise.baseline"] = response.baseline
            attrs["tierwise.baseline_cost_usd"] = response.baseline_cost_usd or 0.0
            attrs["tierwise.savings_usd"] = response.savings_usd
        attrs["gen_ai.usage.input_tokens"] = event.input_tokens
        attrs["gen_ai.usage.output_tokens"] = event.output_tokens
        if event.error_type is not None:
            attrs["error.type"] = event.error_type
        name = f"tierwise.request {event.strategy}"
        span = self._tracer.start_span(name, attributes=attrs, start_time=start)
        if event.error_type is not None:
            span.set_status(self._trace.Status(self._trace.StatusCode.ERROR))
        parent = self._trace.set_span_in_context(span)
        answer = _answering(response)
        previous: AttemptEvent | None = None
        for attempt in event.attempts:
            found = self._pending.pop(id(attempt), None)
            if found is None:
                continue
            ev, ev_end = found
            ev_start = ev_end - int(ev.latency_ms * 1e6)
            self._events_for(span, ev, previous, ev_start)
            previous = ev
            if ev.outcome in ("cached", "skipped"):
                continue
            self._attempt_span(ev, ev_end, parent, response if attempt is answer else None, event.request)
        span.end(end_time=end)

    # -- building ------------------------------------------------------------------

    def _events_for(self, span: Any, ev: AttemptEvent, previous: AttemptEvent | None, at: int) -> None:
        where = {"tierwise.deployment": ev.model, "tierwise.path": ev.path}
        if ev.outcome == "cached":
            span.add_event("tierwise.cache_hit", where, timestamp=at)
        elif ev.outcome == "skipped":
            span.add_event("tierwise.skipped", {**where, "error.type": ev.error_type or ""}, timestamp=at)
        elif ev.retry:
            span.add_event("tierwise.retry", where, timestamp=at)
        elif (
            previous is not None
            and previous.path == ev.path
            and previous.model != ev.model
            and previous.outcome in ("error", "skipped")
        ):
            span.add_event(
                "tierwise.fallback",
                {**where, "tierwise.fallback.from": previous.model, "error.type": previous.error_type or ""},
                timestamp=at,
            )

    def _attempt_span(
        self,
        ev: AttemptEvent,
        end: int,
        parent: Any,
        response: Response | None,
        request: Request | None,
    ) -> None:
        model = ev.wire_model or ev.model
        op = "embeddings" if ev.kind == "embed" else "chat"
        attrs: dict[str, Any] = {
            "gen_ai.operation.name": op,
            "gen_ai.provider.name": provider_name(ev.provider),
            "gen_ai.request.model": model,
            "gen_ai.usage.input_tokens": ev.input_tokens,
            "gen_ai.usage.output_tokens": ev.output_tokens,
            "tierwise.deployment": ev.model,
            "tierwise.path": ev.path,
            "tierwise.outcome": ev.outcome,
            "tierwise.retry": ev.retry,
            "tierwise.stream": ev.kind == "stream",
        }
        if ev.label is not None:
            attrs["tierwise.route.label"] = ev.label
        if ev.cached_input_tokens:
            attrs["gen_ai.usage.cache_read.input_tokens"] = ev.cached_input_tokens
        if ev.reasoning_tokens:
            attrs["gen_ai.usage.reasoning.output_tokens"] = ev.reasoning_tokens
        if ev.cost_usd is not None:
            attrs["tierwise.cost_usd"] = ev.cost_usd
        if ev.ttft_ms is not None:
            attrs["gen_ai.response.time_to_first_chunk"] = ev.ttft_ms / 1000.0
        if ev.queue_wait_ms:
            attrs["tierwise.limiter.wait_s"] = ev.queue_wait_ms / 1000.0
        if ev.error_type is not None:
            attrs["error.type"] = ev.error_type
        elif ev.outcome == "cancelled":
            attrs["error.type"] = "cancelled"
        if request is not None:
            if request.max_tokens is not None:
                attrs["gen_ai.request.max_tokens"] = request.max_tokens
            if request.temperature is not None:
                attrs["gen_ai.request.temperature"] = request.temperature
        if response is not None:
            attrs["gen_ai.response.model"] = response.model
            attrs["gen_ai.response.finish_reasons"] = [response.finish_reason]
            if self.capture_content:
                attrs["gen_ai.output.messages"] = _output_messages(response)
        if self.capture_content and request is not None:
            attrs["gen_ai.input.messages"] = _input_messages(request)
        start = end - int(ev.latency_ms * 1e6)
        span = self._tracer.start_span(
            f"{op} {model}", context=parent, kind=self._client_kind, attributes=attrs, start_time=start
        )
        if ev.outcome == "error":
            span.set_status(self._trace.Status(self._trace.StatusCode.ERROR))
        span.end(end_time=end)

    def _record_metrics(self, ev: AttemptEvent) -> None:
        if ev.outcome in ("cached", "skipped"):
            return  # no provider operation took place
        attrs: dict[str, Any] = {
            "gen_ai.operation.name": "embeddings" if ev.kind == "embed" else "chat",
            "gen_ai.provider.name": provider_name(ev.provider),
            "gen_ai.request.model": ev.wire_model or ev.model,
        }
        if ev.error_type is not None:
            attrs["error.type"] = ev.error_type
        elif ev.outcome == "cancelled":
            attrs["error.type"] = "cancelled"
        self._duration.record(ev.latency_ms / 1000.0, attrs)
        if ev.input_tokens or ev.output_tokens:
            self._tokens.record(ev.input_tokens, {**attrs, "gen_ai.token.type": "input"})
            if ev.kind != "embed":
                self._tokens.record(ev.output_tokens, {**attrs, "gen_ai.token.type": "output"})

    # -- propagation ------------------------------------------------------------

    def bind_orchestrator(self, orch: Orchestrator) -> None:
        """With ``propagate_context``: add the trace-context request hook to the
        HTTP clients of ``orch``'s providers."""
        if not self.propagate_context:
            return
        from opentelemetry import propagate

        async def inject(request: Any) -> None:
            propagate.inject(request.headers)

        for provider in orch.providers:
            client = provider.client
            if any(c is client for c in self._hooked):
                continue
            hooks = {k: list(v) for k, v in client.event_hooks.items()}
            hooks.setdefault("request", []).append(inject)
            client.event_hooks = hooks
            self._hooked.append(client)

    def __repr__(self) -> str:
        return (
            f"OTelObserver(capture_content={self.capture_content}, "
            f"propagate_context={self.propagate_context})"
        )


def _answering(response: Response | None) -> Any:
    """The try whose reply is the answer: the last ok try on the answering
    deployment (a cascade's judge may have been called after it)."""
    if response is None:
        return None
    for attempt in reversed(response.attempts):
        if attempt.outcome == "ok" and attempt.model == response.deployment:
            return attempt
    return None


def _input_messages(request: Request) -> str:
    return json.dumps(
        [{"role": m.role, "parts": [{"type": "text", "content": m.text}]} for m in request.messages],
        ensure_ascii=False,
    )


def _output_messages(response: Response) -> str:
    parts: list[Mapping[str, Any]] = []
    if response.text:
        parts.append({"type": "text", "content": response.text})
    for call in response.tool_calls:
        parts.append({"type": "tool_call", "id": call.id, "name": call.name, "arguments": call.arguments})
    return json.dumps(
        [{"role": "assistant", "parts": parts, "finish_reason": response.finish_reason}], ensure_ascii=False
    )
