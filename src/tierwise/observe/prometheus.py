"""Prometheus export: an observer that counts into its own ``CollectorRegistry``.

Switched on with ``[telemetry] prometheus = true`` (the registry is then
``orch.prometheus_registry``) or in code::

    prom = PrometheusObserver()
    orch = tw.Orchestrator(models, observers=[prom])
    app.mount("/metrics", metrics_app(orch))

Why it looks the way it does:

* **One registry per observer**, never the process-global ``REGISTRY`` unless the
  application passes it: two orchestrators in one process (or one test after
  another) must not collide on metric names or add into each other's counts.
* **Bounded labels only**: deployment alias, provider, provider model name,
  strategy path, route label, outcome, error class, token kind. Every one of
  them comes from the configuration or from a class name, so the number of
  series is fixed by the config, never by traffic. No prompt, request id, user
  or tag ever becomes a label.
* **Cheap on the hot path**: ``on_attempt``/``on_request`` run inline once per
  try / request, so the labelled children are looked up once per label tuple
  and kept in a dict (``labels()`` takes a lock and builds a tuple each call).
* **Gauges read at scrape time**: circuit state and budget figures are read from
  the orchestrator's health tracker and budget ledger when Prometheus scrapes,
  so nothing is updated per request for them.

``prometheus_client`` is imported when an observer is made, never by
``import tierwise`` (it is the optional ``prometheus`` extra).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from .events import AttemptEvent, RequestEvent

if TYPE_CHECKING:
    from ..orchestrator import Orchestrator

__all__ = ["LATENCY_BUCKETS_S", "PrometheusObserver", "metrics_app"]

#: The shared state's concerns, each with its own ``on_error`` mode.
_CONCERNS = ("limits", "budget", "health", "cache", "sticky")

#: Histogram buckets (seconds) for provider and request latency: LLM calls run
#: from ~100 ms (a short cached reply) to minutes (long reasoning).
LATENCY_BUCKETS_S = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
_TTFT_BUCKETS_S = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_WAIT_BUCKETS_S = (0.001, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 15.0, 60.0)

_ATTEMPT = ("deployment", "provider", "model", "strategy", "route")
_REQUEST = ("strategy", "route", "deployment")
# Tries with no provider round trip: their ~0 s would hide slow calls.
_NO_LATENCY = frozenset(("cached", "skipped"))
_INSTALL_HINT = 'the Prometheus exporter needs prometheus-client: pip install "tierwise[prometheus]"'


def _client() -> Any:
    try:
        import prometheus_client
    except ImportError as exc:
        raise ImportError(_INSTALL_HINT, name="prometheus_client") from exc
    return prometheus_client


class PrometheusObserver:
    """Counters and histograms of every try and request, in Prometheus names.

    ``registry`` defaults to a new ``CollectorRegistry`` (``self.registry``);
    ``namespace`` prefixes every metric name (``tierwise_requests_total``).
    ``bind_orchestrator`` (called by the orchestrator that is given this
    observer) adds the scrape-time gauges for its circuits and budgets.
    """

    def __init__(self, registry: Any = None, *, namespace: str = "tierwise") -> None:
        pc = _client()
        self.registry = pc.CollectorRegistry(auto_describe=True) if registry is None else registry
        self.namespace = namespace
        reg = self.registry
        ns = namespace

        def counter(name: str, doc: str, labels: tuple[str, ...]) -> Any:
            return pc.Counter(name, doc, labels, namespace=ns, registry=reg)

        def histogram(name: str, doc: str, labels: tuple[str, ...], buckets: tuple[float, ...]) -> Any:
            return pc.Histogram(name, doc, labels, namespace=ns, registry=reg, buckets=buckets)

        self._attempts = counter(
            "attempts", "Provider tries by outcome and error class.", (*_ATTEMPT, "outcome", "error_type")
        )
        self._retries = counter("retries", "Tries that were a retry on the same deployment.", _ATTEMPT)
        self._tokens = counter(
            "tokens",
            "Tokens by kind: input (whole prompt), cached (subset of input), output, reasoning "
            "(subset of output).",
            (*_ATTEMPT, "kind"),
        )
        self._cost = counter("cost_usd", "Known spend in US dollars, failed tries included.", _ATTEMPT)
        self._unpriced = counter(
            "unpriced_attempts", "Tries that consumed tokens at an unknown price (not in cost).", _ATTEMPT
        )
        self._attempt_seconds = histogram(
            "attempt_duration_seconds",
            "Provider round-trip time of a try.",
            ("deployment", "provider", "model", "outcome"),
            LATENCY_BUCKETS_S,
        )
        self._ttft = histogram(
            "time_to_first_token_seconds",
            "Time to the first streamed content of a try.",
            ("deployment", "provider", "model"),
            _TTFT_BUCKETS_S,
        )
        self._wait = histogram(
            "limiter_wait_seconds",
            "Time a try waited for a rate-limit slot.",
            ("deployment", "provider", "model"),
            _WAIT_BUCKETS_S,
        )
        self._requests = counter(
            "requests",
            "Whole requests by outcome (ok, error, cancelled).",
            (*_REQUEST, "outcome", "error_type"),
        )
        self._request_seconds = histogram(
            "request_duration_seconds", "End-to-end time of a request.", _REQUEST, LATENCY_BUCKETS_S
        )
        self._fallbacks = counter("fallbacks", "Requests answered by a fallback model.", _REQUEST)
        self._cache_hits = counter("cache_hits", "Requests answered from the response cache.", _REQUEST)
        self._baseline = counter(
            "baseline_cost_usd",
            "What the answers' tokens would have cost on the baseline model (priced requests only).",
            _REQUEST,
        )
        self._routed = counter(
            "routed_cost_usd",
            "What the same requests cost as routed, every try and check included; "
            "savings = baseline_cost_usd_total - routed_cost_usd_total.",
            _REQUEST,
        )
        self._children: dict[tuple[Any, ...], Any] = {}
        self._bound: _StateCollector | None = None

    # -- hot path ----------------------------------------------------------------

    def _child(self, metric: Any, values: tuple[str, ...]) -> Any:
        key = (id(metric), *values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*values)
        return child

    def on_attempt(self, event: AttemptEvent) -> None:
        child = self._child
        base = (event.model, event.provider, event.wire_model or event.model, event.path, event.label or "")
        outcome = event.outcome
        error_type = event.error_type or ("unknown" if outcome == "error" else "")
        child(self._attempts, (*base, outcome, error_type)).inc()
        if event.retry:
            child(self._retries, base).inc()
        for kind, n in (
            ("input", event.input_tokens),
            ("cached", event.cached_input_tokens),
            ("output", event.output_tokens),
            ("reasoning", event.reasoning_tokens),
        ):
            if n:
                child(self._tokens, (*base, kind)).inc(n)
        if event.cost_usd is not None:
            if event.cost_usd > 0:
                child(self._cost, base).inc(event.cost_usd)
        elif event.input_tokens or event.output_tokens:
            child(self._unpriced, base).inc()
        where = base[:3]
        if event.ttft_ms is not None:
            child(self._ttft, where).observe(event.ttft_ms / 1000.0)
        if outcome not in _NO_LATENCY:
            child(self._attempt_seconds, (*where, outcome)).observe(event.latency_ms / 1000.0)
            # Every try that went through the limiter, waiting or not.
            child(self._wait, where).observe(event.queue_wait_ms / 1000.0)

    def on_request(self, event: RequestEvent) -> None:
        child = self._child
        base = (event.strategy, event.label or "", event.model or "")
        outcome = "cancelled" if event.cancelled else "ok" if event.error_type is None else "error"
        child(self._requests, (*base, outcome, event.error_type or "")).inc()
        child(self._request_seconds, base).observe(event.latency_ms / 1000.0)
        if event.fallback:
            child(self._fallbacks, base).inc()
        if event.cached:
            child(self._cache_hits, base).inc()
        response = event.response
        if response is not None and response.savings_usd is not None:
            child(self._baseline, base).inc(response.baseline_cost_usd or 0.0)
            child(self._routed, base).inc(response.cost_usd or 0.0)

    # -- scrape-time state -------------------------------------------------------

    def bind_orchestrator(self, orch: Orchestrator) -> None:
        """Export ``orch``'s circuit states and budgets, read when scraped."""
        if self._bound is not None:
            if self._bound.orch is orch:
                return
            raise ValueError("this PrometheusObserver already exports another orchestrator's state")
        self._bound = _StateCollector(orch, self.namespace)
        self.registry.register(self._bound)

    def exposition(self) -> bytes:
        """The registry in the Prometheus text format (what ``/metrics`` serves)."""
        return bytes(_client().generate_latest(self.registry))

    def __repr__(self) -> str:
        return f"PrometheusObserver(namespace={self.namespace!r})"


_CIRCUIT_STATES = ("healthy", "cooling", "half_open")


class _StateCollector:
    """A custom collector: gauges computed from the orchestrator at scrape time."""

    def __init__(self, orch: Orchestrator, namespace: str) -> None:
        self.orch = orch
        self._ns = namespace

    def describe(self) -> list[Any]:
        return []  # the names are known only when collected (budgets are optional)

    def _shared_state(self) -> Iterator[Any]:
        """With a shared backend (Redis): whether it is in use, which concerns run
        on their fail-open fallback, and how many requests fell back or were refused."""
        state = self.orch.state
        if state is None:
            return
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        ns = self._ns
        stats = state.stats()
        yield GaugeMetricFamily(
            f"{ns}_state_shared",
            "1 while the shared state backend (Redis) is in use.",
            value=float(stats["shared"]),
        )
        degraded = GaugeMetricFamily(
            f"{ns}_state_degraded",
            "1 for a concern running on this process's own state (Redis unavailable, on_error = open).",
            labels=["concern"],
        )
        for concern in _CONCERNS:
            degraded.add_metric([concern], 1.0 if concern in stats["degraded"] else 0.0)
        yield degraded
        for name, doc in (
            ("fallbacks", "Requests served by a concern's fail-open fallback while Redis was unavailable."),
            (
                "refused",
                "Requests refused (StateUnavailable) by a fail-closed concern while Redis was unavailable.",
            ),
        ):
            counter = CounterMetricFamily(f"{ns}_state_{name}", doc, labels=["concern"])
            counts: Any = stats[name]
            for concern in _CONCERNS:
                counter.add_metric([concern], float(counts.get(concern, 0)))
            yield counter

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        ns = self._ns
        circuit = GaugeMetricFamily(
            f"{ns}_circuit_state",
            "1 for the deployment's current circuit state (healthy, cooling = open, half_open).",
            labels=["deployment", "state"],
        )
        health = self.orch.executor.health
        for alias in self.orch.deployments:
            now = health.state(alias).state
            for state in _CIRCUIT_STATES:
                circuit.add_metric([alias, state], 1.0 if state == now else 0.0)
        yield circuit
        yield from self._shared_state()
        budget = self.orch.executor.budget
        if budget is None:
            return
        # Only the scopes a limit names: a per-user scope would be a label per user.
        configured = {(lim.scope, lim.period) for lim in budget.limits}
        gauges: dict[str, Any] = {
            name: GaugeMetricFamily(f"{ns}_budget_{name}_usd", doc, labels=["scope", "period"])
            for name, doc in (
                ("spent", "Spent in the current period on a budget scope."),
                ("reserved", "Reserved by requests in flight on a budget scope."),
                ("limit", "The tightest limit on a budget scope."),
                ("remaining", "Limit minus spent and reserved (never below 0)."),
            )
        }
        figures: list[tuple[str, Callable[[dict[str, Any]], Any]]] = [
            ("spent", lambda e: e["spent_usd"]),
            ("reserved", lambda e: e["reserved_usd"]),
            ("limit", lambda e: e["limit_usd"]),
            ("remaining", lambda e: e["remaining_usd"]),
        ]
        for entry in budget.snapshot().values():
            if (entry["scope"], entry["period"]) not in configured:
                continue
            for name, get in figures:
                value = get(entry)
                if value is not None:
                    gauges[name].add_metric([entry["scope"], entry["period"]], float(value))
        yield from gauges.values()


def metrics_app(source: Orchestrator | Any = None, *, multiprocess_dir: str | None = None) -> Any:
    """An ASGI app serving ``/metrics`` for an orchestrator (or a registry).

    With ``multiprocess_dir`` (gunicorn/uvicorn workers, ``PROMETHEUS_MULTIPROC_DIR``
    set before the workers start) it serves the merged counts of every worker from
    that directory instead; see docs/prometheus.md for what that mode leaves out.
    """
    pc = _client()
    if multiprocess_dir is not None:
        from prometheus_client import multiprocess

        registry = pc.CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=multiprocess_dir)  # type: ignore[no-untyped-call]
    else:
        registry = getattr(source, "prometheus_registry", source)
        if registry is None:
            raise ValueError("metrics_app needs an orchestrator with a Prometheus observer, or a registry")
    return pc.make_asgi_app(registry=registry)
