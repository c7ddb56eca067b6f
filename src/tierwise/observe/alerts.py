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
from ._alert_window import RATE_KINDS
from ._alert_window import RuleState as _RuleState
from .metrics import AttemptEvent, MetricsCollector, MetricsEvent, RequestEvent

__all__ = ["Alert", "AlertHandler", "AlertKind", "AlertMonitor", "AlertRule"]

AlertKind: TypeAlias = Literal[
    "fallback_rate", "error_rate", "latency", "cost", "cost_anomaly", "expensive_share", "quality"
]
_KINDS = ("fallback_rate", "error_rate", "latency", "cost", "cost_anomaly", "expensive_share", "quality")
_RATES = RATE_KINDS
Source: TypeAlias = Literal["requests", "attempts"]


@dataclass(frozen=True, slots=True)
class AlertRule:
    """One condition to watch. Build with the classmethods; the fields document
    themselves in the error messages of ``__post_init__``.

    ``model``/``label``/``strategy`` restrict the rule to matching events;
    ``source`` picks whole requests (default) or individual provider attempts
    (e.g. one provider's raw error rate, before fallbacks hide it). ``target`` is
    the deployment an ``expensive_share`` rule watches. With ``episodes`` the rule
    fires once when its condition starts to hold and sends a resolved ``Alert``
    when it stops (``cooldown_s`` then spaces episodes), instead of re-firing
    once per cooldown while it holds.
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
    target: str | None = None
    episodes: bool = False

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(f"unknown alert kind {self.kind!r}; expected one of {', '.join(_KINDS)}")
        if self.source not in ("requests", "attempts"):
            raise ValueError(f"source must be 'requests' or 'attempts', got {self.source!r}")
        if self.kind in ("fallback_rate", "expensive_share", "quality") and self.source != "requests":
            raise ValueError(f"{self.kind} is a property of requests; use source='requests'")
        if (self.kind == "expensive_share") != (self.target is not None):
            raise ValueError("target (the deployment alias) is required by expensive_share and only by it")
        if self.kind in _RATES and not 0.0 <= self.threshold < 1.0:
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
        elif self.kind == "expensive_share":
            what = f"share[{self.target}]>{self.threshold:g}"
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

    @classmethod
    def expensive_share(
        cls,
        *,
        model: str,
        above: float,
        window_s: float = 300.0,
        min_samples: int = 20,
        cooldown_s: float = 900.0,
        **kw: Any,
    ) -> AlertRule:
        """Fraction of requests answered by deployment ``model`` (the expensive one)
        strictly above ``above``: "a routing bug sends everything to Opus"."""
        return cls("expensive_share", above, window_s, min_samples, cooldown_s, target=model, **kw)

    @classmethod
    def quality(
        cls,
        *,
        above: float,
        window_s: float = 900.0,
        min_samples: int = 20,
        cooldown_s: float = 900.0,
        **kw: Any,
    ) -> AlertRule:
        """Fraction of judged answers found bad strictly above ``above``: cascade
        rungs a verifier rejected, plus bad feedback given to
        ``AlertMonitor.record_feedback``."""
        return cls("quality", above, window_s, min_samples, cooldown_s, **kw)


@dataclass(frozen=True, slots=True)
class Alert:
    """A fired rule: what was measured against what, over which window.
    ``resolved`` marks the end of an episode (rules with ``episodes``)."""

    rule: str
    kind: AlertKind
    value: float
    threshold: float
    window_s: float
    samples: int
    message: str
    ts: float  # Unix time when it fired
    details: dict[str, Any] = field(default_factory=dict)
    resolved: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (what the webhook sink posts); ``status`` is firing or resolved."""
        return {
            "status": "resolved" if self.resolved else "firing",
            "rule": self.rule,
            "kind": self.kind,
            "value": self.value if math.isfinite(self.value) else None,
            "threshold": self.threshold,
            "window_s": self.window_s,
            "samples": self.samples,
            "message": self.message,
            "ts": self.ts,
            "details": self.details,
        }


AlertHandler: TypeAlias = Callable[[Alert], object]


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
            count = 1
            if isinstance(event, RequestEvent):
                if rule.kind == "quality":
                    count, flagged = _judged(event)
                    if not count:
                        continue  # nothing was judged: no sample
                elif rule.kind == "expensive_share":
                    if event.model is None:
                        continue  # failed requests are answered by no model
                    flagged = event.model == rule.target
                else:
                    flagged = event.fallback if rule.kind == "fallback_rate" else event.error_type is not None
            else:
                assert isinstance(event, AttemptEvent)
                if rule.kind == "latency" and event.outcome in ("cached", "skipped"):
                    continue  # no provider round trip: its ~0 ms would hide slow calls
                flagged = event.outcome == "error"
            if now is None:
                now = self.clock.now()
            state.add(now, flagged, event.latency_ms, event.cost_usd, count)
            self._check(state, now)

    def record_feedback(
        self, good: bool, *, model: str | None = None, label: str | None = None, strategy: str | None = None
    ) -> None:
        """One user verdict on an answer, for ``quality`` rules (``good=False`` is
        a bad answer); ``model``/``label``/``strategy`` say whose answer it was."""
        now = self.clock.now()
        for state in self._states:
            rule = state.rule
            if rule.kind != "quality":
                continue
            if any(
                want is not None and got != want
                for want, got in ((rule.model, model), (rule.label, label), (rule.strategy, strategy))
            ):
                continue
            state.add(now, not good, math.nan, 0.0)
            self._check(state, now)

    def _check(self, state: _RuleState, now: float) -> None:
        rule = state.rule
        if not rule.episodes:
            if state.last_fired is not None and now - state.last_fired < rule.cooldown_s:
                return
            found = state.evaluate(now)
            if found is not None:
                state.last_fired = now
                self._fire(state, found[0], found[1])
            return
        # Episodes: fire when the condition starts to hold, resolve when it stops.
        # Too few samples says neither (an empty window is no recovery).
        if state.count < rule.min_samples:
            return
        found = state.evaluate(now)
        if found is not None and not state.active:
            if state.last_fired is not None and now - state.last_fired < rule.cooldown_s:
                return
            state.active = True
            state.last_fired = now
            self._fire(state, found[0], found[1])
        elif found is None and state.active:
            state.active = False
            self._fire(state, math.nan, {}, resolved=True)

    def _fire(self, state: _RuleState, value: float, details: dict[str, Any], resolved: bool = False) -> None:
        rule = state.rule
        window = f"{rule.window_s:g}s"
        if resolved:
            what = "resolved"
        elif rule.kind in _RATES:
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
            resolved=resolved,
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
        """Wait for async handlers still running, then close handlers that have an
        ``aclose`` (the webhook sink's HTTP client)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        for handler in self.handlers:
            close = getattr(handler, "aclose", None)
            if close is not None:
                try:
                    await close()
                except Exception:
                    self._handler_failed(handler)


def _judged(event: RequestEvent) -> tuple[int, int]:
    """(answers a verifier judged, answers it rejected) among a request's cascade rungs."""
    response = event.response
    if response is None:
        return 0, 0
    judged = rejected = 0
    for step in response.steps:
        if step.kind == "rung" and step.verdict in ("accepted", "rejected"):
            judged += 1
            rejected += step.verdict == "rejected"
    return judged, rejected
