"""In-memory metrics: the per-orchestrator collector (and its quantile sketch).

Percentiles come from ``QuantileSketch`` (``observe/sketch.py``, re-exported
here): 1% relative accuracy, bounded memory, so ``snapshot()`` stays cheap and
memory flat however long the orchestrator runs.

Why the collector looks the way it does: ``record_attempt`` runs once per provider
try on the hot path, so stats live in ``__slots__`` objects found by one dict lookup
per view, the bucket index (one ``log``) is computed once and shared by every view,
and listener events are only built when someone listens. Nothing here is global:
each orchestrator owns its collector. It is not thread-safe; it is meant to be fed
from one event loop.

Units of the views, chosen so they add up:

* ``models``, ``labels`` and ``strategies`` (keyed by call path) count provider
  *attempts* (``calls``): summing ``calls`` or ``cost_usd`` over models gives every
  try made and every dollar spent, failed tries included. They also carry the
  request-level ``requests`` and ``fallbacks`` attributed to the key by
  ``record_request`` (for ``models``: requests the model answered).
* ``requests`` is one whole orchestrator request per ``record_request``: end-to-end
  latency, the fallback rate, cache hit rate and error rate users alert on.

Unknown prices are never folded into a silent zero: ``cost_usd`` sums the known
costs and ``unknown_cost_calls`` says how many calls had none (``cost_usd`` is
``None`` when no call had a known cost).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, TypeAlias

from .events import AttemptEvent, RequestEvent
from .sketch import MIN_INDEXABLE as _MIN_INDEXABLE
from .sketch import QuantileSketch, nearest_rank

__all__ = [
    "AttemptEvent",
    "MetricsCollector",
    "MetricsEvent",
    "MetricsListener",
    "QuantileSketch",
    "RequestEvent",
    "nearest_rank",
]

_isfinite = math.isfinite
_INF = math.inf


# -- events (defined in observe/events.py, re-exported for existing imports) ----

MetricsEvent: TypeAlias = AttemptEvent | RequestEvent
MetricsListener: TypeAlias = Callable[[MetricsEvent], object]


# -- stats ----------------------------------------------------------------------


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 3)


def _rate(n: int, d: int) -> float | None:
    return n / d if d else None


class _Stats:
    """Counters for one key of one view. Plain attributes: the hot path is
    attribute increments, nothing else."""

    __slots__ = (
        "cache_hits",
        "calls",
        "cost_known",
        "cost_usd",
        "errors",
        "errors_by_type",
        "estimated_usage",
        "failed_requests",
        "fallbacks",
        "input_tokens",
        "latency",
        "outcomes",
        "output_tokens",
        "provider",
        "requests",
        "retries",
        "ttft",
        "unknown_cost",
    )

    def __init__(self, alpha: float, max_buckets: int, provider: str | None = None) -> None:
        self.provider = provider
        self.calls = 0
        self.requests = 0
        self.outcomes: dict[str, int] = {}
        self.errors = 0
        self.errors_by_type: dict[str, int] = {}
        self.retries = 0
        self.fallbacks = 0
        self.failed_requests = 0
        self.cache_hits = 0
        self.latency = QuantileSketch(alpha, max_buckets)
        self.ttft = QuantileSketch(alpha, max_buckets)
        self.input_tokens = 0
        self.output_tokens = 0
        self.cost_usd = 0.0
        self.cost_known = 0
        self.unknown_cost = 0
        self.estimated_usage = 0

    def add_spend(self, input_tokens: int, output_tokens: int, cost_usd: float | None) -> None:
        self.input_tokens += input_tokens
        self.output_tokens += output_tokens
        if cost_usd is None:
            self.unknown_cost += 1
        else:
            self.cost_usd += cost_usd
            self.cost_known += 1

    def to_dict(self) -> dict[str, Any]:
        lat, ttft = self.latency, self.ttft
        out: dict[str, Any] = {}
        if self.provider is not None:
            out["provider"] = self.provider
        out.update(
            calls=self.calls,
            requests=self.requests,
            outcomes=dict(sorted(self.outcomes.items())),
            errors={"total": self.errors, "by_type": dict(sorted(self.errors_by_type.items()))},
            error_rate=_rate(self.errors, self.calls),
            retries=self.retries,
            fallbacks=self.fallbacks,
            fallback_rate=_rate(self.fallbacks, self.requests),
            failed_requests=self.failed_requests,
            cache_hits=self.cache_hits,
            latency_ms=_latency_dict(lat),
            ttft_ms={
                "p50": _r(ttft.quantile(0.5)),
                "p95": _r(ttft.quantile(0.95)),
                "p99": _r(ttft.quantile(0.99)),
            },
            tokens={"input": self.input_tokens, "output": self.output_tokens},
            cost_usd=self.cost_usd if self.cost_known else (None if self.unknown_cost else 0.0),
            unknown_cost_calls=self.unknown_cost,
            estimated_usage_calls=self.estimated_usage,
        )
        return out


def _latency_dict(s: QuantileSketch) -> dict[str, float | None]:
    return {
        "p50": _r(s.quantile(0.5)),
        "p95": _r(s.quantile(0.95)),
        "p99": _r(s.quantile(0.99)),
        "mean": _r(s.mean),
        "max": _r(s.max) if s.count else None,
    }


# Attempts whose latency is not a provider round trip (served from cache, never
# sent): counting their ~0 ms would drag every percentile down.
_NO_LATENCY_OUTCOMES = frozenset(("cached", "skipped"))


class MetricsCollector:
    """Per-orchestrator counters and latency sketches, fed by the executor.

    ``record_attempt`` is called for every provider try and ``record_request`` once
    per orchestrator request; ``snapshot()`` returns a JSON-serializable dict (see
    the module docstring for what each view counts). Listeners added with
    ``add_listener`` receive an ``AttemptEvent``/``RequestEvent`` per call: alert
    monitors and exporters hang off this. A listener that raises never breaks a
    request; the failure is counted (``listener_errors`` in the snapshot) and
    handed to ``logger.exception`` when a logger was given.
    """

    __slots__ = (
        "_alpha",
        "_attempt_errors",
        "_attempts",
        "_baseline_cost",
        "_cancelled",
        "_labels",
        "_listeners",
        "_logger",
        "_max_buckets",
        "_models",
        "_paths",
        "_requests",
        "_retries",
        "_savings",
        "_savings_requests",
        "_shadow",
        "_sketch_index",
        "listener_errors",
    )

    def __init__(self, *, alpha: float = 0.01, max_buckets: int = 2048, logger: Any = None) -> None:
        self._alpha = alpha
        self._max_buckets = max_buckets
        self._logger = logger
        # One throwaway sketch supplies the bucket index function shared by all views.
        self._sketch_index = QuantileSketch(alpha, max_buckets).index
        self._listeners: list[MetricsListener] = []
        self.listener_errors = 0
        self._reset()

    def _reset(self) -> None:
        self._models: dict[str, _Stats] = {}
        self._labels: dict[str, _Stats] = {}
        self._paths: dict[str, _Stats] = {}
        self._requests = _Stats(self._alpha, self._max_buckets)
        self._attempts = 0
        self._attempt_errors = 0
        self._retries = 0
        self._cancelled = 0
        self._baseline_cost = 0.0
        self._savings = 0.0
        self._savings_requests = 0
        self._shadow: dict[str, dict[str, dict[str, Any]]] = {}

    def reset(self) -> None:
        """Forget every count (listeners stay)."""
        self._reset()
        self.listener_errors = 0

    # -- listeners --------------------------------------------------------------

    def add_listener(self, fn: MetricsListener) -> None:
        """Call ``fn(event)`` after every recorded attempt and request."""
        self._listeners.append(fn)

    def remove_listener(self, fn: MetricsListener) -> None:
        self._listeners.remove(fn)

    def _emit(self, event: MetricsEvent) -> None:
        for fn in self._listeners:
            try:
                fn(event)
            except Exception:
                self.listener_errors += 1
                if self._logger is not None:
                    self._logger.exception("metrics listener failed", listener=repr(fn))

    def _stats(self, view: dict[str, _Stats], key: str, provider: str | None = None) -> _Stats:
        s = view.get(key)
        if s is None:
            s = view[key] = _Stats(self._alpha, self._max_buckets, provider)
        return s

    # -- hot path ---------------------------------------------------------------

    def record_attempt(
        self,
        *,
        model: str,
        provider: str,
        path: str,
        label: str | None,
        outcome: str,
        error_type: str | None,
        latency_ms: float,
        ttft_ms: float | None = None,
        input_tokens: int = 0,
        output_tokens: int = 0,
        cost_usd: float | None = None,
        retry: bool = False,
        estimated: bool = False,
    ) -> None:
        """Record one provider try given as fields (``on_attempt`` takes the event)."""
        self.on_attempt(
            AttemptEvent(
                model, provider, path, label, outcome, error_type,
                latency_ms, ttft_ms, input_tokens, output_tokens, cost_usd, retry, estimated,
            )
        )  # fmt: skip

    def on_attempt(self, event: AttemptEvent) -> None:
        """Record one provider try. ``outcome == "error"`` counts as an error (typed
        by ``error_type``, ``"unknown"`` if missing); ``"cached"`` as a cache hit;
        ``"cancelled"`` (the caller went away mid-reply) as neither. ``estimated``:
        the tokens and cost are tierwise's estimate, the provider reported none."""
        (model, provider, path, label, outcome, error_type, latency_ms, ttft_ms,
         input_tokens, output_tokens, cost_usd, retry, estimated) = event[:13]  # fmt: skip
        self._attempts += 1
        is_error = outcome == "error"
        etype = error_type or "unknown"
        if is_error:
            self._attempt_errors += 1
        if retry:
            self._retries += 1
        # Bucket indexes computed once for all three views. Latency modes: 1 = the
        # common positive value (pre-indexed), 2 = zero/negative (checked add),
        # 0 = not recorded (cache hit, skipped try, or a NaN/inf from a caller bug,
        # which must not fail the request it describes).
        lat_mode = 0
        lat_i = 0
        if outcome not in _NO_LATENCY_OUTCOMES:
            if _MIN_INDEXABLE < latency_ms < _INF:
                lat_mode = 1
                lat_i = self._sketch_index(latency_ms)
            elif _isfinite(latency_ms):
                lat_mode = 2
        ttft_mode = 0
        ttft_i = 0
        ttft = 0.0
        if ttft_ms is not None:
            ttft = ttft_ms
            if _MIN_INDEXABLE < ttft < _INF:
                ttft_mode = 1
                ttft_i = self._sketch_index(ttft)
            elif _isfinite(ttft):
                ttft_mode = 2

        s = self._models.get(model)
        if s is None:
            s = self._stats(self._models, model, provider)
        views = [s, self._paths.get(path) or self._stats(self._paths, path)]
        if label is not None:
            views.append(self._labels.get(label) or self._stats(self._labels, label))
        for s in views:
            s.calls += 1
            s.outcomes[outcome] = s.outcomes.get(outcome, 0) + 1
            if is_error:
                s.errors += 1
                s.errors_by_type[etype] = s.errors_by_type.get(etype, 0) + 1
            elif outcome == "cached":
                s.cache_hits += 1
            if retry:
                s.retries += 1
            if lat_mode == 1:
                s.latency.add_indexed(latency_ms, lat_i)
            elif lat_mode == 2:
                s.latency.add(latency_ms)
            if ttft_mode == 1:
                s.ttft.add_indexed(ttft, ttft_i)
            elif ttft_mode == 2:
                s.ttft.add(ttft)
            s.add_spend(input_tokens, output_tokens, cost_usd)
            if estimated:
                s.estimated_usage += 1

        if self._listeners:
            self._emit(event._replace(error_type=etype) if is_error and error_type is None else event)

    def record_request(
        self,
        *,
        strategy: str,
        label: str | None,
        model: str | None,
        latency_ms: float,
        cost_usd: float | None,
        fallback: bool,
        cached: bool,
        error_type: str | None = None,
        ttft_ms: float | None = None,
        input_tokens: int = 0,
        output_tokens: int = 0,
        estimated: bool = False,
        cancelled: bool = False,
    ) -> None:
        """Record one whole request given as fields (``on_request`` takes the event)."""
        self.on_request(
            RequestEvent(
                strategy, label, model, latency_ms, cost_usd, fallback, cached, error_type, ttft_ms,
                input_tokens, output_tokens, estimated, cancelled,
            )
        )  # fmt: skip

    def on_request(self, event: RequestEvent) -> None:
        """Record one whole orchestrator request. ``fallback`` means the answering
        model was not the primary; ``error_type`` set means the request failed;
        ``cancelled`` that its caller went away first (not an error: nothing
        failed, but what was streamed is billed)."""
        (strategy, label, model, latency_ms, cost_usd, fallback, cached, error_type, ttft_ms,
         input_tokens, output_tokens, estimated, cancelled) = event[:13]  # fmt: skip
        r = self._requests
        r.calls += 1
        r.requests += 1
        if cancelled:
            self._cancelled += 1
        if estimated:
            r.estimated_usage += 1
        if error_type is not None:
            r.errors += 1
            r.failed_requests += 1
            r.errors_by_type[error_type] = r.errors_by_type.get(error_type, 0) + 1
        if fallback:
            r.fallbacks += 1
        if cached:
            r.cache_hits += 1
        if _isfinite(latency_ms):
            r.latency.add(latency_ms)
        if ttft_ms is not None and _isfinite(ttft_ms):
            r.ttft.add(ttft_ms)
        r.add_spend(input_tokens, output_tokens, cost_usd)
        response = event.response
        if response is not None and response.savings_usd is not None:
            self._savings += response.savings_usd
            self._baseline_cost += response.baseline_cost_usd or 0.0
            self._savings_requests += 1

        # Attribute the request to its strategy, label and answering model.
        keys: list[_Stats] = [self._paths.get(strategy) or self._stats(self._paths, strategy)]
        if label is not None:
            keys.append(self._labels.get(label) or self._stats(self._labels, label))
        if model is not None:
            keys.append(self._models.get(model) or self._stats(self._models, model))
        for s in keys:
            s.requests += 1
            if fallback:
                s.fallbacks += 1
            if error_type is not None:
                s.failed_requests += 1

        if self._listeners:
            self._emit(event)

    def record_shadow(
        self,
        shadow: str,
        route: str,
        *,
        agreed: bool,
        cost_usd: float | None,
        reference_cost_usd: float | None,
    ) -> None:
        """One shadow comparison (``strategies.Shadow``): did ``route``'s answer agree
        with the reference, and what did each cost (``None``: price unknown)."""
        row = self._shadow.setdefault(shadow, {}).setdefault(
            route, {"compared": 0, "agreed": 0, "cost_usd": 0.0, "reference_cost_usd": 0.0, "priced": 0}
        )
        row["compared"] += 1
        row["agreed"] += int(agreed)
        if cost_usd is not None and reference_cost_usd is not None:
            row["cost_usd"] += cost_usd
            row["reference_cost_usd"] += reference_cost_usd
            row["priced"] += 1

    # -- reading ----------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Everything counted so far, as plain JSON-serializable data."""
        r = self._requests
        requests: dict[str, Any] = {
            "total": r.calls,
            "errors": {"total": r.errors, "by_type": dict(sorted(r.errors_by_type.items()))},
            "error_rate": _rate(r.errors, r.calls),
            "fallbacks": r.fallbacks,
            "fallback_rate": _rate(r.fallbacks, r.calls),
            "cache_hits": r.cache_hits,
            "cache_hit_rate": _rate(r.cache_hits, r.calls),
            "attempts": self._attempts,
            "attempt_errors": self._attempt_errors,
            "retries": self._retries,
            "latency_ms": _latency_dict(r.latency),
            "ttft_ms": {
                "p50": _r(r.ttft.quantile(0.5)),
                "p95": _r(r.ttft.quantile(0.95)),
                "p99": _r(r.ttft.quantile(0.99)),
            },
            "tokens": {"input": r.input_tokens, "output": r.output_tokens},
            "cost_usd": r.cost_usd if r.cost_known else (None if r.unknown_cost else 0.0),
            "unknown_cost_calls": r.unknown_cost,
            "estimated_usage_calls": r.estimated_usage,
            "cancelled": self._cancelled,
            # Against the baseline model (Response.savings_usd), over the requests priced both ways.
            "savings": {
                "requests": self._savings_requests,
                "baseline_cost_usd": self._baseline_cost,
                "savings_usd": self._savings,
            },
        }
        return {
            "requests": requests,
            "models": {k: v.to_dict() for k, v in sorted(self._models.items())},
            "labels": {k: v.to_dict() for k, v in sorted(self._labels.items())},
            "strategies": {k: v.to_dict() for k, v in sorted(self._paths.items())},
            "listener_errors": self.listener_errors,
            # Shadow comparisons, per shadow strategy and route: agreement with its reference.
            "shadow": {
                name: {
                    route: {**row, "agreement_rate": _rate(row["agreed"], row["compared"])}
                    for route, row in sorted(routes.items())
                }
                for name, routes in sorted(self._shadow.items())
            },
        }
