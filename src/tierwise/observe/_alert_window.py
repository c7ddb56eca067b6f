"""The sliding window behind one alert rule (``alerts.py``): time slices with
running totals, so each event costs O(1) and memory is bounded by the rule's
``resolution`` whatever the traffic. See the design notes in ``alerts.py``.
"""

from __future__ import annotations

import math
from collections import deque
from typing import TYPE_CHECKING, Any

from .sketch import QuantileSketch, nearest_rank

if TYPE_CHECKING:
    from .alerts import AlertRule

__all__ = ["RATE_KINDS", "RuleState"]

#: Kinds whose value is a fraction of the window's samples.
RATE_KINDS = ("fallback_rate", "error_rate", "expensive_share", "quality")


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


class RuleState:
    """The sliding window of one rule, with running totals over its slices."""

    __slots__ = (
        "above",
        "active",
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
        self.active = False  # an episode is open (rules with ``episodes``)

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

    def add(self, now: float, flagged: int, latency_ms: float, cost: float | None, count: int = 1) -> None:
        """Add ``count`` samples (a request's judged rungs), ``flagged`` of them bad."""
        if self.started is None:
            self.started = now
        cur = self.advance(now)
        slices = self.slices
        if not slices or slices[-1].id != cur:
            sketch = QuantileSketch() if self.rule.kind == "latency" else None
            slices.append(_Slice(cur, sketch))
        s = slices[-1]
        s.count += count
        self.count += count
        if flagged:
            s.flagged += flagged
            self.flagged += flagged
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
        if kind in RATE_KINDS:
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
