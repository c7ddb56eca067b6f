"""A streaming quantile sketch with bounded memory and relative-error guarantees.

Why a sketch and not a list of samples: an orchestrator may run for weeks at
hundreds of requests per second, and its snapshot must stay cheap and its memory
flat. This is a DDSketch-style log-bucketed histogram (Masson et al., VLDB 2019):
every value lands in bucket ``ceil(log_gamma(x))``, so any quantile reported is
within ``alpha`` *relative* error of the true order statistic (1% by default),
whatever the distribution, with a hard cap on the number of buckets. Sketches
with the same ``alpha`` merge exactly (bucket counts add), which is what per-slice
alert windows and multi-instance aggregation need.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Mapping
from typing import Any

__all__ = ["MIN_INDEXABLE", "QuantileSketch", "nearest_rank"]

MIN_INDEXABLE = 1e-9
"""Values closer to zero than this are counted in the zero bucket: a log bucket for
1e-300 would waste buckets on noise, and latencies/costs that small are zero."""

_log = math.log
_ceil = math.ceil
_isfinite = math.isfinite
_MIN_INDEXABLE = MIN_INDEXABLE


class QuantileSketch:
    """Streaming quantiles with ``alpha`` relative accuracy and at most ``max_buckets`` buckets.

    Buckets are ``(gamma**(i-1), gamma**i]`` with ``gamma = (1+alpha)/(1-alpha)``;
    the reported value of a bucket is within ``alpha`` of anything in it. Negative
    values get a mirrored store and near-zero values a counter, so the sketch is
    general, though tierwise feeds it latencies and costs. When the bucket cap is
    reached the buckets holding the *lowest* values are merged (as DDSketch does):
    high quantiles, the ones alerts and SLOs watch, keep their accuracy. With the
    default 1% accuracy, 2048 buckets cover values spanning a factor of 10**17.
    """

    __slots__ = (
        "_gamma",
        "_inv_log_gamma",
        "_neg",
        "_neg_ceiling",
        "_pos",
        "_pos_floor",
        "_zero",
        "alpha",
        "count",
        "max",
        "max_buckets",
        "min",
        "sum",
    )

    def __init__(self, alpha: float = 0.01, max_buckets: int = 2048) -> None:
        if not 0.0 < alpha < 1.0:
            raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
        if max_buckets < 2:
            raise ValueError(f"max_buckets must be at least 2, got {max_buckets!r}")
        self.alpha = alpha
        self.max_buckets = max_buckets
        self._gamma = (1.0 + alpha) / (1.0 - alpha)
        self._inv_log_gamma = 1.0 / _log(self._gamma)
        self._pos: dict[int, int] = {}
        self._neg: dict[int, int] = {}  # keyed by the index of -x
        # Collapsed stores: positive indices below the floor and negative indices
        # above the ceiling were merged into it. None until the cap is first hit.
        self._pos_floor: int | None = None
        self._neg_ceiling: int | None = None
        self._zero = 0
        self.count = 0
        self.sum = 0.0
        self.min = math.inf
        self.max = -math.inf

    # -- adding -----------------------------------------------------------------

    def index(self, x: float) -> int:
        """The bucket index of ``abs(x)``; lets a caller feeding several sketches
        with the same value pay for the logarithm once (see ``add_indexed``)."""
        return _ceil(_log(abs(x)) * self._inv_log_gamma)

    def add(self, x: float) -> None:
        """Add one value. NaN and infinities are rejected: one would poison every
        quantile, so a caller bug should fail loudly."""
        if not _isfinite(x):
            raise ValueError(f"cannot add non-finite value {x!r}")
        if x > _MIN_INDEXABLE:
            self.add_indexed(x, _ceil(_log(x) * self._inv_log_gamma))
        elif x < -_MIN_INDEXABLE:
            self._count_value(x)
            self._add_neg(_ceil(_log(-x) * self._inv_log_gamma))
        else:
            self._count_value(x)
            self._zero += 1

    def add_indexed(self, x: float, i: int) -> None:
        """Add a positive value whose bucket index (``index(x)``) is already known."""
        self._count_value(x)
        pos = self._pos
        floor = self._pos_floor
        if floor is not None and i < floor:
            i = floor
        c = pos.get(i)
        if c is None:
            pos[i] = 1
            if len(pos) + len(self._neg) > self.max_buckets:
                self._collapse()
        else:
            pos[i] = c + 1

    def _count_value(self, x: float) -> None:
        self.count += 1
        self.sum += x
        if x < self.min:
            self.min = x
        if x > self.max:
            self.max = x

    def _add_neg(self, i: int, n: int = 1) -> None:
        ceiling = self._neg_ceiling
        if ceiling is not None and i > ceiling:
            i = ceiling
        neg = self._neg
        neg[i] = neg.get(i, 0) + n
        if len(self._pos) + len(neg) > self.max_buckets:
            self._collapse()

    def _collapse(self) -> None:
        """Merge the buckets with the lowest values until the cap holds again."""
        excess = len(self._pos) + len(self._neg) - self.max_buckets
        if excess <= 0:
            return
        neg = self._neg
        if len(neg) > excess:
            # Most negative values = largest magnitude indices.
            tops = heapq.nlargest(excess + 1, neg)
            keep = tops[-1]
            neg[keep] = neg[keep] + sum(neg.pop(k) for k in tops[:-1])
            self._neg_ceiling = keep
            return
        if neg:
            # Too few negative buckets to absorb the excess: fold them into one.
            keep = min(neg)
            total = sum(neg.values())
            neg.clear()
            neg[keep] = total
            self._neg_ceiling = keep
            excess = len(self._pos) + 1 - self.max_buckets
            if excess <= 0:
                return
        pos = self._pos
        lows = heapq.nsmallest(excess + 1, pos)
        keep = lows[-1]
        pos[keep] = pos[keep] + sum(pos.pop(k) for k in lows[:-1])
        self._pos_floor = keep

    def merge(self, other: QuantileSketch) -> None:
        """Add every value of ``other`` (same ``alpha``) into this sketch."""
        if not isinstance(other, QuantileSketch):
            raise TypeError(f"can only merge a QuantileSketch, got {type(other).__name__}")
        if other._gamma != self._gamma:
            raise ValueError("cannot merge sketches with different alpha")
        if other.count == 0:
            return
        # The other sketch's collapsed bucket holds values of unknown size below its
        # floor, so our floor can be no finer than its floor after merging.
        pos, neg = self._pos, self._neg
        for i, c in other._pos.items():
            pos[i] = pos.get(i, 0) + c
        for i, c in other._neg.items():
            neg[i] = neg.get(i, 0) + c
        floor = self._pos_floor
        if other._pos_floor is not None:
            floor = other._pos_floor if floor is None else max(floor, other._pos_floor)
        if floor is not None:
            self._pos_floor = floor
            for k in [k for k in pos if k < floor]:
                pos[floor] = pos.get(floor, 0) + pos.pop(k)
        ceiling = self._neg_ceiling
        if other._neg_ceiling is not None:
            ceiling = other._neg_ceiling if ceiling is None else min(ceiling, other._neg_ceiling)
        if ceiling is not None:
            self._neg_ceiling = ceiling
            for k in [k for k in neg if k > ceiling]:
                neg[ceiling] = neg.get(ceiling, 0) + neg.pop(k)
        self._zero += other._zero
        self.count += other.count
        self.sum += other.sum
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)
        self._collapse()

    # -- reading ----------------------------------------------------------------

    @property
    def bucket_count(self) -> int:
        """Buckets in use (the memory bound), not counting the zero counter."""
        return len(self._pos) + len(self._neg)

    @property
    def mean(self) -> float | None:
        return self.sum / self.count if self.count else None

    def _value(self, i: int) -> float:
        # The point with equal relative distance to both bucket edges.
        return 2.0 * self._gamma**i / (self._gamma + 1.0)

    def quantile(self, q: float) -> float | None:
        """The nearest-rank ``q``-quantile: the smallest value with at least
        ``q * count`` values at or below it (``ceil(q*n)``-th smallest), within
        ``alpha`` relative error; ``None`` for an empty sketch, since a made-up 0
        would read as "instant". Nearest-rank because it is the definition SLOs use
        and it never reports a p95 below what 5% of requests exceeded."""
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"quantile must be in [0, 1], got {q!r}")
        if self.count == 0:
            return None
        # The extremes are known exactly; no need to approximate them.
        if q == 0.0:
            return self.min
        if q == 1.0:
            return self.max
        rank = nearest_rank(q, self.count) - 1  # 0-based
        seen = 0
        value: float | None = None
        for i in sorted(self._neg, reverse=True):
            seen += self._neg[i]
            if seen > rank:
                value = -self._value(i)
                break
        if value is None:
            seen += self._zero
            if seen > rank:
                value = 0.0
        if value is None:
            for i in sorted(self._pos):
                seen += self._pos[i]
                if seen > rank:
                    value = self._value(i)
                    break
        if value is None:  # pragma: no cover - float rounding at q=1
            value = self.max
        # Clamping to the exact extremes only ever moves the estimate closer.
        return min(max(value, self.min), self.max)

    def quantiles(self, qs: tuple[float, ...]) -> list[float | None]:
        return [self.quantile(q) for q in qs]

    # -- exchange -----------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Everything the sketch holds, as JSON-ready data: a process ships this and
        another merges it (``from_dict`` + ``merge``) into exactly the sketch it
        would have built from all the values itself, so a fleet's p99 is computable."""
        return {
            "alpha": self.alpha,
            "max_buckets": self.max_buckets,
            "pos": {str(k): v for k, v in sorted(self._pos.items())},
            "neg": {str(k): v for k, v in sorted(self._neg.items())},
            "pos_floor": self._pos_floor,
            "neg_ceiling": self._neg_ceiling,
            "zero": self._zero,
            "count": self.count,
            "sum": self.sum,
            "min": self.min if self.count else None,
            "max": self.max if self.count else None,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> QuantileSketch:
        """The sketch ``to_dict`` described (``ValueError`` on malformed data)."""
        try:
            sketch = cls(float(data["alpha"]), int(data["max_buckets"]))
            pos, neg = data["pos"], data["neg"]
            if not isinstance(pos, dict) or not isinstance(neg, dict):
                raise TypeError("pos and neg must be objects")
            sketch._pos = {int(k): int(v) for k, v in pos.items()}
            sketch._neg = {int(k): int(v) for k, v in neg.items()}
            floor, ceiling = data.get("pos_floor"), data.get("neg_ceiling")
            sketch._pos_floor = None if floor is None else int(floor)
            sketch._neg_ceiling = None if ceiling is None else int(ceiling)
            sketch._zero = int(data["zero"])
            sketch.count = int(data["count"])
            sketch.sum = float(data["sum"])
            if sketch.count:
                sketch.min = float(data["min"])
                sketch.max = float(data["max"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a QuantileSketch.to_dict() result: {exc}") from None
        if sum(sketch._pos.values()) + sum(sketch._neg.values()) + sketch._zero != sketch.count:
            raise ValueError("not a QuantileSketch.to_dict() result: bucket counts do not add up to count")
        return sketch

    def __repr__(self) -> str:
        return f"QuantileSketch(alpha={self.alpha}, count={self.count}, buckets={self.bucket_count})"


def nearest_rank(q: float, n: int) -> int:
    """``ceil(q * n)`` as a 1-based rank in ``[1, n]``, immune to float noise
    (``0.07 * 100`` is ``7.000000000000001``, whose ceiling is 8)."""
    return min(n, max(1, _ceil(q * n - 1e-9)))
