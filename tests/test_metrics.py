"""MetricsCollector and QuantileSketch: exact counts, honest costs, accurate percentiles."""

from __future__ import annotations

import json
import math
import random
import statistics
import time
from collections.abc import Callable

import pytest

from tierwise.observe.metrics import AttemptEvent, MetricsCollector, QuantileSketch, RequestEvent

# -- QuantileSketch -------------------------------------------------------------------

QS = (0.0, 0.001, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999, 1.0)


def _dists(rng: random.Random) -> dict[str, Callable[[], float]]:
    return {
        "lognormal": lambda: rng.lognormvariate(6.0, 1.5),
        "exponential": lambda: rng.expovariate(1 / 250),
        "uniform": lambda: rng.uniform(1.0, 5000.0),
        "pareto_heavy_tail": lambda: rng.paretovariate(1.1) * 10,
        "normal_signed": lambda: rng.gauss(0.0, 100.0),
    }


@pytest.mark.parametrize(
    "dist", ["lognormal", "exponential", "uniform", "pareto_heavy_tail", "normal_signed"]
)
def test_sketch_quantiles_within_relative_accuracy(dist: str) -> None:
    rng = random.Random(dist)
    draw = _dists(rng)[dist]
    xs = [draw() for _ in range(100_000)]
    sketch = QuantileSketch(alpha=0.01)
    for x in xs:
        sketch.add(x)
    xs.sort()
    n = len(xs)
    for q in QS:
        true = xs[max(0, math.ceil(q * n - 1e-9) - 1)]  # nearest rank
        got = sketch.quantile(q)
        assert got is not None
        assert abs(got - true) <= 0.01 * abs(true) + 1e-12, (dist, q, got, true)
    assert sketch.count == n
    assert sketch.min == xs[0] and sketch.max == xs[-1]
    assert sketch.mean == pytest.approx(statistics.fmean(xs), rel=1e-9, abs=1e-9)
    assert sketch.bucket_count <= 2048


def test_sketch_matches_statistics_quantiles_on_latency_like_data() -> None:
    rng = random.Random(7)
    xs = [rng.lognormvariate(5.5, 0.8) for _ in range(100_000)]
    sketch = QuantileSketch()
    for x in xs:
        sketch.add(x)
    # statistics.quantiles(n=100) interpolates between order statistics; on 100k
    # samples neighbours are far closer than 1% apart, so the tolerance still holds.
    cuts = statistics.quantiles(xs, n=100, method="inclusive")
    for pct in (50, 90, 95, 99):
        got = sketch.quantile(pct / 100)
        assert got == pytest.approx(cuts[pct - 1], rel=0.011)


def test_sketch_memory_is_bounded_and_high_quantiles_survive_collapsing() -> None:
    rng = random.Random(3)
    # Log-uniform over 12 orders of magnitude would need ~1400 buckets at 1%.
    xs = [10 ** rng.uniform(-3, 9) for _ in range(100_000)]
    sketch = QuantileSketch(alpha=0.01, max_buckets=300)
    for x in xs:
        sketch.add(x)
    assert sketch.bucket_count <= 300
    xs.sort()
    # 300 buckets cover a factor gamma**300 ~ 400 below the max: p99 and up stay exact-ish.
    for q in (0.99, 0.999, 1.0):
        true = xs[max(0, math.ceil(q * len(xs) - 1e-9) - 1)]
        assert sketch.quantile(q) == pytest.approx(true, rel=0.01)
    # Low quantiles were collapsed into the floor bucket: over-estimated, never below min.
    low = sketch.quantile(0.01)
    assert low is not None and low >= xs[0]

    big = QuantileSketch()
    for i in range(200_000):
        big.add(10 ** (-9 + 30 * (i / 200_000)))  # 30 orders of magnitude, > 2048 buckets
    assert big.bucket_count <= 2048


def test_sketch_merge_equals_sketch_of_union() -> None:
    rng = random.Random(11)
    xs = [rng.expovariate(0.01) for _ in range(20_000)]
    whole, a, b = QuantileSketch(), QuantileSketch(), QuantileSketch()
    for i, x in enumerate(xs):
        whole.add(x)
        (a if i % 2 else b).add(x)
    a.merge(b)
    assert a.count == whole.count
    assert a.sum == pytest.approx(whole.sum)
    assert (a.min, a.max) == (whole.min, whole.max)
    for q in QS:
        assert a.quantile(q) == whole.quantile(q)
    with pytest.raises(ValueError):
        a.merge(QuantileSketch(alpha=0.02))


def test_sketch_merge_respects_bucket_cap() -> None:
    a, b = QuantileSketch(max_buckets=50), QuantileSketch(max_buckets=50)
    for i in range(1000):
        a.add(1.05**i)
        b.add(1.05 ** (i + 500))
    a.merge(b)
    assert a.bucket_count <= 50
    assert a.quantile(1.0) == pytest.approx(1.05**1499, rel=1e-9)


def test_sketch_uses_nearest_rank() -> None:
    s = QuantileSketch()
    for x in (50.0, 900.0):
        s.add(x)
    # Nearest rank: p95 of two samples is the slower one, never the faster.
    assert s.quantile(0.95) == pytest.approx(900.0, rel=0.01)
    assert s.quantile(0.5) == pytest.approx(50.0, rel=0.01)
    t = QuantileSketch()
    for x in range(1, 101):
        t.add(float(x))
    assert t.quantile(0.07) == pytest.approx(7.0, rel=0.01)  # 0.07 * 100 is 7.000000000000001
    assert t.quantile(0.95) == pytest.approx(95.0, rel=0.01)


def test_sketch_edge_cases() -> None:
    s = QuantileSketch()
    assert s.quantile(0.5) is None and s.mean is None
    for bad in (math.nan, math.inf, -math.inf):
        with pytest.raises(ValueError):
            s.add(bad)
    assert s.count == 0
    with pytest.raises(ValueError):
        s.quantile(1.5)
    for x in (0.0, 0.0, -5.0, 10.0):
        s.add(x)
    assert s.quantile(0.0) == -5.0
    assert s.quantile(0.5) == 0.0
    assert s.quantile(1.0) == 10.0
    with pytest.raises(ValueError):
        QuantileSketch(alpha=0)
    with pytest.raises(ValueError):
        QuantileSketch(max_buckets=1)


# -- MetricsCollector ----------------------------------------------------------------


def _scripted(m: MetricsCollector) -> None:
    """Two requests. #1: sonnet fails twice (first try + retry), opus answers as a
    fallback. #2: a cache hit on haiku. Then a request that failed entirely."""
    m.record_attempt(
        model="sonnet", provider="anthropic", path="router", label="complex", outcome="error",
        error_type="ServerError", latency_ms=100.0, cost_usd=0.0,
    )  # fmt: skip
    m.record_attempt(
        model="sonnet", provider="anthropic", path="router", label="complex", outcome="error",
        error_type="ProviderTimeout", latency_ms=300.0, cost_usd=0.0, retry=True,
    )  # fmt: skip
    m.record_attempt(
        model="opus", provider="anthropic", path="router", label="complex", outcome="ok",
        error_type=None, latency_ms=1000.0, ttft_ms=200.0, input_tokens=1000, output_tokens=200,
        cost_usd=0.02,
    )  # fmt: skip
    m.record_request(
        strategy="router", label="complex", model="opus", latency_ms=1500.0, cost_usd=0.02,
        fallback=True, cached=False, ttft_ms=200.0, input_tokens=1000, output_tokens=200,
    )  # fmt: skip
    m.record_attempt(
        model="haiku", provider="anthropic", path="router", label="bulk", outcome="cached",
        error_type=None, latency_ms=0.0, cost_usd=0.0,
    )  # fmt: skip
    m.record_request(
        strategy="router", label="bulk", model="haiku", latency_ms=2.0, cost_usd=0.0,
        fallback=False, cached=True,
    )  # fmt: skip
    m.record_attempt(
        model="local", provider="ollama", path="router", label="bulk", outcome="ok",
        error_type=None, latency_ms=50.0, input_tokens=10, output_tokens=5, cost_usd=None,
    )  # fmt: skip
    m.record_request(
        strategy="router", label="bulk", model="local", latency_ms=60.0, cost_usd=None,
        fallback=False, cached=False, input_tokens=10, output_tokens=5,
    )  # fmt: skip
    m.record_request(
        strategy="router", label=None, model=None, latency_ms=400.0, cost_usd=None,
        fallback=False, cached=False, error_type="AllTargetsFailed",
    )  # fmt: skip


def test_snapshot_numbers_for_a_scripted_sequence() -> None:
    m = MetricsCollector()
    _scripted(m)
    snap = m.snapshot()
    json.dumps(snap, allow_nan=False)  # JSON-serializable, no NaN

    r = snap["requests"]
    assert r["total"] == 4
    assert r["errors"] == {"total": 1, "by_type": {"AllTargetsFailed": 1}}
    assert r["error_rate"] == 0.25
    assert r["fallbacks"] == 1 and r["fallback_rate"] == 0.25
    assert r["cache_hits"] == 1 and r["cache_hit_rate"] == 0.25
    assert r["attempts"] == 5 and r["attempt_errors"] == 2 and r["retries"] == 1
    assert r["tokens"] == {"input": 1010, "output": 205}
    assert r["cost_usd"] == pytest.approx(0.02)
    assert r["unknown_cost_calls"] == 2  # the local model and the failed request
    assert r["latency_ms"]["max"] == 1500.0
    assert r["latency_ms"]["mean"] == pytest.approx((1500 + 2 + 60 + 400) / 4, abs=1e-3)
    # p50 of [2, 60, 400, 1500] is the lower middle order statistic: 60.
    assert r["latency_ms"]["p50"] == pytest.approx(60.0, rel=0.01)
    assert r["ttft_ms"]["p50"] == pytest.approx(200.0, rel=0.01)

    sonnet = snap["models"]["sonnet"]
    assert sonnet["provider"] == "anthropic"
    assert sonnet["calls"] == 2
    assert sonnet["errors"] == {"total": 2, "by_type": {"ProviderTimeout": 1, "ServerError": 1}}
    assert sonnet["error_rate"] == 1.0
    assert sonnet["retries"] == 1
    assert sonnet["requests"] == 0 and sonnet["fallbacks"] == 0
    assert sonnet["latency_ms"]["p50"] == pytest.approx(100.0, rel=0.01)
    assert sonnet["latency_ms"]["max"] == 300.0
    assert sonnet["ttft_ms"] == {"p50": None, "p95": None, "p99": None}
    assert sonnet["cost_usd"] == 0.0 and sonnet["unknown_cost_calls"] == 0

    opus = snap["models"]["opus"]
    assert (opus["calls"], opus["requests"], opus["fallbacks"], opus["fallback_rate"]) == (1, 1, 1, 1.0)
    assert opus["tokens"] == {"input": 1000, "output": 200}
    assert opus["cost_usd"] == pytest.approx(0.02)
    assert opus["outcomes"] == {"ok": 1}

    haiku = snap["models"]["haiku"]
    assert haiku["cache_hits"] == 1 and haiku["calls"] == 1
    assert haiku["latency_ms"]["p50"] is None  # a cache hit is not a provider round trip

    local = snap["models"]["local"]
    assert local["cost_usd"] is None  # every call unpriced: unknown, not $0
    assert local["unknown_cost_calls"] == 1

    complex_ = snap["labels"]["complex"]
    assert complex_["calls"] == 3 and complex_["errors"]["total"] == 2
    assert complex_["requests"] == 1 and complex_["fallbacks"] == 1
    assert complex_["cost_usd"] == pytest.approx(0.02)
    bulk = snap["labels"]["bulk"]
    assert bulk["calls"] == 2 and bulk["requests"] == 2 and bulk["cache_hits"] == 1
    assert bulk["cost_usd"] == 0.0 and bulk["unknown_cost_calls"] == 1

    router = snap["strategies"]["router"]
    assert router["calls"] == 5 and router["requests"] == 4
    assert router["fallbacks"] == 1 and router["failed_requests"] == 1
    assert router["outcomes"] == {"cached": 1, "error": 2, "ok": 2}
    # Summing attempt-level cost over models gives the same spend as over paths.
    assert sum(v["cost_usd"] or 0 for v in snap["models"].values()) == pytest.approx(router["cost_usd"])


def test_unknown_costs_are_counted_not_zeroed() -> None:
    m = MetricsCollector()
    for cost in (None, None, 0.5):
        m.record_attempt(
            model="x", provider="p", path="single", label=None, outcome="ok", error_type=None,
            latency_ms=10.0, cost_usd=cost,
        )  # fmt: skip
    x = m.snapshot()["models"]["x"]
    assert x["cost_usd"] == 0.5
    assert x["unknown_cost_calls"] == 2
    m.reset()
    m.record_request(
        strategy="s", label=None, model="x", latency_ms=1.0, cost_usd=None, fallback=False, cached=False
    )
    assert m.snapshot()["requests"]["cost_usd"] is None
    assert m.snapshot()["requests"]["unknown_cost_calls"] == 1


def test_empty_snapshot_and_reset() -> None:
    m = MetricsCollector()
    snap = m.snapshot()
    assert snap["requests"]["total"] == 0
    assert snap["requests"]["fallback_rate"] is None
    assert snap["requests"]["cost_usd"] == 0.0
    assert snap["requests"]["latency_ms"]["p95"] is None
    assert snap["models"] == snap["labels"] == snap["strategies"] == {}
    _scripted(m)
    m.reset()
    assert m.snapshot() == snap


def test_bad_latency_values_do_not_break_the_request() -> None:
    m = MetricsCollector()
    m.record_attempt(
        model="x", provider="p", path="s", label=None, outcome="ok", error_type=None,
        latency_ms=math.nan, ttft_ms=math.inf,
    )  # fmt: skip
    m.record_request(
        strategy="s", label=None, model="x", latency_ms=math.inf, cost_usd=0.0, fallback=False, cached=False
    )
    snap = m.snapshot()
    assert snap["models"]["x"]["calls"] == 1
    assert snap["models"]["x"]["latency_ms"]["p50"] is None
    json.dumps(snap, allow_nan=False)


def test_error_outcome_without_type_is_counted_as_unknown() -> None:
    m = MetricsCollector()
    m.record_attempt(
        model="x", provider="p", path="s", label=None, outcome="error", error_type=None, latency_ms=5.0
    )
    assert m.snapshot()["models"]["x"]["errors"] == {"total": 1, "by_type": {"unknown": 1}}


def test_listeners_receive_events_and_failures_are_contained() -> None:
    m = MetricsCollector()
    seen: list[object] = []
    m.add_listener(seen.append)

    def broken(event: object) -> None:
        raise RuntimeError("boom")

    m.add_listener(broken)
    _scripted(m)
    assert [type(e) for e in seen].count(AttemptEvent) == 5
    assert [type(e) for e in seen].count(RequestEvent) == 4
    first = seen[0]
    assert isinstance(first, AttemptEvent)
    assert (first.model, first.outcome, first.error_type, first.latency_ms) == (
        "sonnet", "error", "ServerError", 100.0,
    )  # fmt: skip
    req = seen[3]
    assert isinstance(req, RequestEvent) and req.fallback and req.model == "opus"
    assert m.snapshot()["listener_errors"] == 9
    m.remove_listener(broken)
    m.remove_listener(seen.append)
    _scripted(m)
    assert len(seen) == 9


def test_listener_failure_goes_to_the_given_logger() -> None:
    calls: list[tuple[str, dict[str, object]]] = []

    class Log:
        def exception(self, event: str, **kw: object) -> None:
            calls.append((event, kw))

    m = MetricsCollector(logger=Log())
    m.add_listener(lambda e: 1 / 0)
    m.record_request(
        strategy="s", label=None, model=None, latency_ms=1, cost_usd=0, fallback=False, cached=False
    )
    assert calls and calls[0][0] == "metrics listener failed"


def test_collectors_share_nothing() -> None:
    a, b = MetricsCollector(), MetricsCollector()
    got: list[object] = []
    a.add_listener(got.append)
    _scripted(a)
    assert b.snapshot()["requests"]["total"] == 0
    b.record_request(
        strategy="s", label=None, model=None, latency_ms=1, cost_usd=0, fallback=False, cached=False
    )
    assert len(got) == 9  # b's event did not reach a's listener


def test_record_attempt_is_cheap() -> None:
    # A loose bound (shared CI cores): the measured cost is ~2-4 µs.
    m = MetricsCollector()
    n = 20_000
    t0 = time.perf_counter()
    for i in range(n):
        m.record_attempt(
            model="opus", provider="anthropic", path="router", label="complex", outcome="ok",
            error_type=None, latency_ms=100.0 + i % 500, ttft_ms=50.0, input_tokens=10,
            output_tokens=5, cost_usd=0.001,
        )  # fmt: skip
    per_call_us = (time.perf_counter() - t0) / n * 1e6
    assert per_call_us < 50, per_call_us
    assert m.snapshot()["models"]["opus"]["calls"] == n
