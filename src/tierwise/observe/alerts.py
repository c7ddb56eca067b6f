"""Alert hooks over sliding time windows, fed by ``MetricsCollector`` events.

Typical use, the tutorials' "alert when the fallback rate exceeds 5%"::

    monitor = AlertMonitor(
        [AlertRule.fallback_rate(above=0.05, window_s=300, min_samples=50)],
        handlers=[page_oncall],
    ).attach(orch.metrics)

Design choices, and why:

* **Bucketed windows.** Each rule keeps its window as ``resolution`` time slices
  with running totals, so memory is bounded whatever the traffic and each event
  costs O(1). The price is that the window edge moves in steps of
  ``window_s / resolution`` (an event leaves the window between ``window_s -
  window_s/resolution`` and ``window_s`` after it happened).
* **Exact latency thresholds without sorting.** "p95 above X ms" (nearest-rank
  p95) is the same statement as "more than ``n - ceil(0.95 n)`` samples took longer
  than X" — about 5% — which is a counter.
  The p95 *value* shown in the alert comes from merging the slices' sketches, done
  only when the alert fires.
* **Strict thresholds, min_samples, cooldown.** A rule fires when its value is
  strictly *above* the threshold, the window holds at least ``min_samples`` events
  (so three requests with one fallback do not page anyone), and the rule has not
  fired within ``cooldown_s`` (one incident, one alert; a still-burning incident
  alerts again once per cooldown).
* **Handlers may be sync or async.** Sync handlers run inline, right after the
  request that crossed the threshold is recorded, so keep them quick. A handler
  returning an awaitable has it scheduled as a task on the running loop (a strong
  reference is kept; ``await monitor.aclose()`` waits for them); with no running
  loop it is run to completion on the spot. A failing handler is counted in
  ``handler_errors`` and logged if a logger was given, never raised into the
  request path.
* Time comes from an injectable ``Clock`` (``now()`` for windows, ``wall()`` for
  the alert timestamp), so tests drive windows with a fake clock.
"""

from __future__ import annotations

import asyncio
import inspect
import math
from collections import deque
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

from .._clock import SYSTEM_CLOCK, Clock
from .metrics import AttemptEvent, MetricsCollector, MetricsEvent, RequestEvent
from .sketch import QuantileSketch, nearest_rank

__all__ = ["Alert", "AlertHandler", "AlertKind", "AlertMonitor", "AlertRule"]

AlertKind: TypeAlias = Literal["fallback_rate", "error_rate", "latency", "cost", "cost_anomaly"]
Source: TypeAlias = Literal["requests", "attempts"]


@dataclass(frozen=True, slots=True)
class AlertRule:
    """One condition to watch. Build with the classmethods; the fields document
    themselves in the error messages of ``__post_init__``.

    ``model``/``label``/``strategy`` restrict the rule to matching events;
    ``source`` picks whole requests (default) or individual provider attempts
    (e.g. one provider's raw error rate, before fallbacks hide it).
    """

    kind: AlertKind
    threshold: float
    window_s: float = 300.0
    min_samples: int = 20
    cooldown_s: float = 900.0
    name: str = ""
    source: Source = "requests"
    quantile: float = 0.95
    baseline_s: float = 3600.0
    min_baseline_s: float | None = None
    min_usd: float = 0.0
    resolution: int = 30
    model: str | None = None
    label: str | None = None
    strategy: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("fallback_rate", "error_rate", "latency", "cost", "cost_anomaly"):
            raise ValueError(f"unknown alert kind {self.kind!r}")
        if self.source not in ("requests", "attempts"):
            raise ValueError(f"source must be 'requests' or 'attempts', got {self.source!r}")
        if self.kind == "fallback_rate" and self.source != "requests":
            raise ValueError("fallback_rate is a property of requests; use source='requests'")
        if self.kind in ("fallback_rate", "error_rate") and not 0.0 <= self.threshold < 1.0:
            raise ValueError(f"{self.kind} threshold must be a fraction in [0, 1), got {self.threshold!r}")
        if self.threshold < 0 or not math.isfinite(self.threshold):
            raise ValueError(f"threshold must be finite and >= 0, got {self.threshold!r}")
        if self.window_s <= 0 or self.cooldown_s < 0 or self.baseline_s <= 0:
            raise ValueError("window_s and baseline_s must be > 0 and cooldown_s >= 0")
        if self.min_samples < 1 or self.resolution < 1:
            raise ValueError("min_samples and resolution must be >= 1")
        if not 0.0 < self.quantile < 1.0:
            raise ValueError(f"quantile must be in (0, 1), got {self.quantile!r}")
        if not self.name:
            object.__setattr__(self, "name", self._default_name())

    def _default_name(self) -> str:
        scope = "".join(
            f"[{k}={v}]"
            for k, v in (("model", self.model), ("label", self.label), ("strategy", self.strategy))
            if v
        )
        if self.kind == "latency":
            what = f"latency_p{self.quantile * 100:g}>{self.threshold:g}ms"
        elif self.kind == "cost_anomaly":
            what = f"cost_rate>{self.threshold:g}x_baseline"
        elif self.kind == "cost":
            what = f"cost>${self.threshold:g}/{self.window_s:g}s"
        else:
            what = f"{self.kind}>{self.threshold:g}"
        src = "" if self.source == "requests" else "attempt_"
        return f"{src}{what}{scope}"

    # -- constructors -------------------------------------------------------------

    @classmethod
    def fallback_rate(
        cls,
        *,
        above: float,
        window_s: float = 300.0,
        min_samples: int = 20,
        cooldown_s: float = 900.0,
        **kw: Any,
    ) -> AlertRule:
        """Fraction of requests answered by a non-primary model, strictly above ``above``."""
        return cls("fallback_rate", above, window_s, min_samples, cooldown_s, **kw)

    @classmethod
    def error_rate(
        cls,
        *,
        above: float,
        window_s: float = 300.0,
        min_samples: int = 20,
        cooldown_s: float = 900.0,
        **kw: Any,
    ) -> AlertRule:
        """Fraction of failed requests (or, with ``source="attempts"``, failed tries)."""
        return cls("error_rate", above, window_s, min_samples, cooldown_s, **kw)

    @classmethod
    def latency(
        cls,
        *,
        above_ms: float,
        quantile: float = 0.95,
        window_s: float = 300.0,
        min_samples: int = 20,
        cooldown_s: float = 900.0,
        **kw: Any,
    ) -> AlertRule:
        """The ``quantile`` (p95 by default) of latency strictly above ``above_ms``,
        i.e. more than ``1 - quantile`` of the window's samples were slower."""
        return cls("latency", above_ms, window_s, min_samples, cooldown_s, quantile=quantile, **kw)

    @classmethod
    def cost(
        cls,
        *,
        above_usd: float,
        window_s: float = 3600.0,
        min_samples: int = 1,
        cooldown_s: float = 3600.0,
        **kw: Any,
    ) -> AlertRule:
        """Known spend within the window strictly above ``above_usd``."""
        return cls("cost", above_usd, window_s, min_samples, cooldown_s, **kw)

    @classmethod
    def cost_anomaly(
        cls,
        *,
        factor: float,
        window_s: float = 300.0,
        baseline_s: float = 3600.0,
        min_samples: int = 20,
        cooldown_s: float = 900.0,
        min_usd: float = 0.0,
        min_baseline_s: float | None = None,
        **kw: Any,
    ) -> AlertRule:
        """Spend rate in the window strictly above ``factor`` × the rate over the
        ``baseline_s`` before it. Stays quiet until ``min_baseline_s`` (default:
        ``window_s``) of baseline history exists, and below ``min_usd`` of window spend."""
        return cls(
            "cost_anomaly", factor, window_s, min_samples, cooldown_s, baseline_s=baseline_s,
            min_usd=min_usd, min_baseline_s=min_baseline_s, **kw,
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class Alert:
    """A fired rule: what was measured against what, over which window."""

    rule: str
    kind: AlertKind
    value: float
    threshold: float
    window_s: float
    samples: int
    message: str
    ts: float  # Unix time when it fired
    details: dict[str, Any] = field(default_factory=dict)


AlertHandler: TypeAlias = Callable[[Alert], object]


class _Slice:
    __slots__ = ("above", "cost", "count", "flagged", "id", "sketch", "unknown_cost")

    def __init__(self, slice_id: int, sketch: QuantileSketch | None) -> None:
        self.id = slice_id
        self.count = 0
        self.flagged = 0  # fallbacks or errors
        self.above = 0  # latency above the threshold
        self.cost = 0.0
        self.unknown_cost = 0
        self.sketch = sketch


class _RuleState:
    """The sliding window of one rule, with running totals over its slices."""

    __slots__ = (
        "above",
        "baseline",
        "baseline_cost",
        "cost",
        "count",
        "flagged",
        "last_fired",
        "rule",
        "slices",
        "started",
        "unknown_cost",
        "width",
    )

    def __init__(self, rule: AlertRule) -> None:
        self.rule = rule
        self.width = rule.window_s / rule.resolution
        self.slices: deque[_Slice] = deque()
        # Slices that left the window but are still inside the anomaly baseline.
        self.baseline: deque[_Slice] = deque()
        self.baseline_cost = 0.0
        self.count = 0
        self.flagged = 0
        self.above = 0
        self.cost = 0.0
        self.unknown_cost = 0
        self.started: float | None = None
        self.last_fired: float | None = None

    def advance(self, now: float) -> int:
        """Drop slices that left the window; return the current slice id."""
        cur = math.floor(now / self.width)
        oldest = cur - self.rule.resolution + 1
        slices = self.slices
        while slices and slices[0].id < oldest:
            old = slices.popleft()
            self.count -= old.count
            self.flagged -= old.flagged
            self.above -= old.above
            self.cost -= old.cost
            self.unknown_cost -= old.unknown_cost
            if self.rule.kind == "cost_anomaly":
                old.sketch = None
                self.baseline.append(old)
                self.baseline_cost += old.cost
        if self.rule.kind == "cost_anomaly":
            first_baseline = oldest - math.ceil(self.rule.baseline_s / self.width)
            while self.baseline and self.baseline[0].id < first_baseline:
                self.baseline_cost -= self.baseline.popleft().cost
        if self.count == 0:
            # Running float sums drift; re-zero whenever the window empties.
            self.cost = 0.0
        if not self.baseline:
            self.baseline_cost = 0.0
        return cur

    def add(self, now: float, flagged: bool, latency_ms: float, cost: float | None) -> None:
        if self.started is None:
            self.started = now
        cur = self.advance(now)
        slices = self.slices
        if not slices or slices[-1].id != cur:
            sketch = QuantileSketch() if self.rule.kind == "latency" else None
            slices.append(_Slice(cur, sketch))
        s = slices[-1]
        s.count += 1
        self.count += 1
        if flagged:
            s.flagged += 1
            self.flagged += 1
        if self.rule.kind == "latency" and math.isfinite(latency_ms):
            if latency_ms > self.rule.threshold:
                s.above += 1
                self.above += 1
            assert s.sketch is not None
            s.sketch.add(latency_ms)
        if cost is None:
            s.unknown_cost += 1
            self.unknown_cost += 1
        else:
            s.cost += cost
            self.cost += cost

    def evaluate(self, now: float) -> tuple[float, dict[str, Any]] | None:
        """The measured value and details if the rule's condition holds now."""
        rule = self.rule
        n = self.count
        if n < rule.min_samples:
            return None
        kind = rule.kind
        if kind in ("fallback_rate", "error_rate"):
            value = self.flagged / n
            return (value, {"flagged": self.flagged}) if value > rule.threshold else None
        if kind == "latency":
            # The nearest-rank q-quantile is above X  <=>  fewer than ceil(q*n)
            # samples are <= X  <=>  more than n - ceil(q*n) samples are above X.
            if self.above <= n - nearest_rank(rule.quantile, n):
                return None
            merged = QuantileSketch()
            for s in self.slices:
                if s.sketch is not None:
                    merged.merge(s.sketch)
            est = merged.quantile(rule.quantile)
            return (est if est is not None else math.nan), {"above_threshold": self.above}
        if kind == "cost":
            if self.cost > rule.threshold:
                return self.cost, {"unknown_cost_calls": self.unknown_cost}
            return None
        # cost_anomaly: spend rate now vs. the rate over the baseline before the window.
        if self.cost < rule.min_usd or self.started is None:
            return None
        window_start = (math.floor(now / self.width) - rule.resolution + 1) * self.width
        observed = window_start - max(self.started, window_start - rule.baseline_s)
        need = rule.window_s if rule.min_baseline_s is None else rule.min_baseline_s
        if observed < need or observed <= 0:
            return None
        rate = self.cost / rule.window_s
        base_rate = self.baseline_cost / observed
        if rate > rule.threshold * base_rate and rate > 0:
            ratio = rate / base_rate if base_rate > 0 else math.inf
            return ratio, {
                "window_cost_usd": self.cost,
                "baseline_cost_usd": self.baseline_cost,
                "baseline_s": observed,
                "unknown_cost_calls": self.unknown_cost,
            }
        return None


class AlertMonitor:
    """Evaluates ``rules`` on every metrics event and calls ``handlers`` on alerts.

    Feed it with ``monitor.attach(collector)`` (or register ``monitor.observe`` as a
    listener yourself). ``alerts`` keeps the most recent ``history`` alerts.
    """

    def __init__(
        self,
        rules: Sequence[AlertRule],
        handlers: Sequence[AlertHandler] = (),
        *,
        clock: Clock = SYSTEM_CLOCK,
        logger: Any = None,
        history: int = 100,
    ) -> None:
        names = [r.name for r in rules]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"alert rule names must be unique; repeated: {dupes}")
        self.rules = tuple(rules)
        self.handlers: list[AlertHandler] = list(handlers)
        self.clock = clock
        self.alerts: deque[Alert] = deque(maxlen=history)
        self.handler_errors = 0
        self._logger = logger
        self._states = [_RuleState(r) for r in self.rules]
        self._tasks: set[asyncio.Task[Any]] = set()

    def attach(self, collector: MetricsCollector) -> AlertMonitor:
        """Register as a listener on ``collector``; returns ``self`` for chaining."""
        collector.add_listener(self.observe)
        return self

    def on_attempt(self, event: AttemptEvent) -> None:
        self.observe(event)

    def on_request(self, event: RequestEvent) -> None:
        self.observe(event)

    def observe(self, event: MetricsEvent) -> None:
        """The metrics listener: slide windows, add the event, fire what crossed."""
        is_request = isinstance(event, RequestEvent)
        now: float | None = None
        for state in self._states:
            rule = state.rule
            if (rule.source == "requests") != is_request:
                continue
            if rule.model is not None and event.model != rule.model:
                continue
            if rule.label is not None and event.label != rule.label:
                continue
            if rule.strategy is not None:
                where = event.strategy if isinstance(event, RequestEvent) else event.path
                if where != rule.strategy:
                    continue
            if isinstance(event, RequestEvent):
                flagged = event.fallback if rule.kind == "fallback_rate" else event.error_type is not None
            else:
                assert isinstance(event, AttemptEvent)
                if rule.kind == "latency" and event.outcome in ("cached", "skipped"):
                    continue  # no provider round trip: its ~0 ms would hide slow calls
                flagged = event.outcome == "error"
            if now is None:
                now = self.clock.now()
            state.add(now, flagged, event.latency_ms, event.cost_usd)
            if state.last_fired is not None and now - state.last_fired < rule.cooldown_s:
                continue
            found = state.evaluate(now)
            if found is not None:
                state.last_fired = now
                self._fire(state, found[0], found[1])

    def _fire(self, state: _RuleState, value: float, details: dict[str, Any]) -> None:
        rule = state.rule
        window = f"{rule.window_s:g}s"
        if rule.kind in ("fallback_rate", "error_rate"):
            what = f"{rule.kind.replace('_', ' ')} {value:.1%} > {rule.threshold:.1%}"
        elif rule.kind == "latency":
            what = f"latency p{rule.quantile * 100:g} {value:.0f} ms > {rule.threshold:g} ms"
        elif rule.kind == "cost":
            what = f"cost ${value:.4f} > ${rule.threshold:g}"
            if details.get("unknown_cost_calls"):
                what += f" (+{details['unknown_cost_calls']} calls of unknown cost)"
        else:
            what = f"cost rate {value:.1f}x the trailing baseline > {rule.threshold:g}x"
        alert = Alert(
            rule=rule.name,
            kind=rule.kind,
            value=value,
            threshold=rule.threshold,
            window_s=rule.window_s,
            samples=state.count,
            message=f"{rule.name}: {what} over the last {window} ({state.count} {rule.source})",
            ts=self.clock.wall(),
            details=details,
        )
        self.alerts.append(alert)
        for handler in self.handlers:
            try:
                result = handler(alert)
            except Exception:
                self._handler_failed(handler)
                continue
            if inspect.isawaitable(result):
                self._schedule(handler, result)

    def _schedule(self, handler: AlertHandler, awaitable: Any) -> None:
        async def run() -> None:
            try:
                await awaitable
            except Exception:
                self._handler_failed(handler)

        coro: Coroutine[Any, Any, None] = run()
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            asyncio.run(coro)
            return
        task = loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _handler_failed(self, handler: AlertHandler) -> None:
        self.handler_errors += 1
        if self._logger is not None:
            self._logger.exception("alert handler failed", handler=repr(handler))

    async def aclose(self) -> None:
        """Wait for async handlers still running."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
