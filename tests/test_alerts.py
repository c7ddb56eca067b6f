"""AlertMonitor: thresholds, min_samples, cooldown and sliding windows on a fake clock."""

from __future__ import annotations

import asyncio

import pytest

from tierwise.observe.alerts import Alert, AlertMonitor, AlertRule
from tierwise.observe.metrics import MetricsCollector
from tierwise.testing import FakeClock


def _setup(*rules: AlertRule) -> tuple[MetricsCollector, AlertMonitor, FakeClock, list[Alert]]:
    clock = FakeClock(1000.0)
    fired: list[Alert] = []
    metrics = MetricsCollector()
    monitor = AlertMonitor(list(rules), [fired.append], clock=clock).attach(metrics)
    return metrics, monitor, clock, fired


def _req(
    m: MetricsCollector,
    *,
    fallback: bool = False,
    error: str | None = None,
    latency: float = 100.0,
    cost: float | None = 0.001,
    label: str | None = "complex",
) -> None:
    m.record_request(
        strategy="router", label=label, model=None if error else "opus", latency_ms=latency, cost_usd=cost,
        fallback=fallback, cached=False, error_type=error,
    )  # fmt: skip


def test_fallback_rate_fires_once_strictly_above_threshold() -> None:
    m, mon, clock, fired = _setup(AlertRule.fallback_rate(above=0.05, window_s=300, min_samples=20))
    _req(m, fallback=True)
    for _ in range(19):
        _req(m)
    assert fired == []  # exactly 5% (1/20) is not above 5%
    _req(m, fallback=True)  # 2/21 = 9.5%
    assert len(fired) == 1
    alert = fired[0]
    assert alert.kind == "fallback_rate"
    assert alert.value == pytest.approx(2 / 21)
    assert alert.threshold == 0.05 and alert.window_s == 300 and alert.samples == 21
    assert "fallback rate 9.5% > 5.0%" in alert.message
    assert alert.rule == "fallback_rate>0.05"
    assert alert.ts == clock.wall()
    for _ in range(10):
        _req(m, fallback=True)  # still burning: the cooldown keeps it to one alert
    assert len(fired) == 1
    assert list(mon.alerts) == fired


def test_min_samples_suppresses_noise() -> None:
    m, _, _, fired = _setup(AlertRule.fallback_rate(above=0.05, min_samples=20))
    for _ in range(19):
        _req(m, fallback=True)  # 100% but only 19 samples
    assert fired == []
    _req(m, fallback=True)
    assert len(fired) == 1


def test_cooldown_then_fires_again_if_still_above() -> None:
    rule = AlertRule.error_rate(above=0.5, window_s=60, min_samples=4, cooldown_s=120)
    m, _, clock, fired = _setup(rule)
    for _ in range(4):
        _req(m, error="ServerError")
    assert len(fired) == 1
    clock.advance(100)  # inside the cooldown
    for _ in range(4):
        _req(m, error="ServerError")
    assert len(fired) == 1
    clock.advance(25)  # 125 s after the alert: cooldown over, still failing
    _req(m, error="ServerError")
    assert len(fired) == 2


def test_window_slides_old_events_drop_out() -> None:
    def run(gap: float) -> list[Alert]:
        rule = AlertRule.fallback_rate(above=0.5, window_s=60, min_samples=10, resolution=60)
        m, _, clock, fired = _setup(rule)
        for _ in range(9):
            _req(m, fallback=True)  # 9 samples: below min_samples
        clock.advance(gap)
        _req(m, fallback=True)
        for _ in range(9):
            _req(m)
        return fired

    # Still inside the window: 10 fallbacks of 19 = 53% > 50% fires.
    assert len(run(30)) == 1
    # After the window: the first 9 have left; 1 of 10 = 10% does not fire.
    assert run(61) == []


def test_error_rate_on_attempts_filtered_by_model() -> None:
    rule = AlertRule.error_rate(above=0.2, source="attempts", model="sonnet", min_samples=5)
    m, _, _, fired = _setup(rule)

    def attempt(model: str, outcome: str) -> None:
        m.record_attempt(
            model=model, provider="anthropic", path="router", label=None, outcome=outcome,
            error_type="ServerError" if outcome == "error" else None, latency_ms=50.0,
        )  # fmt: skip

    for _ in range(10):
        attempt("opus", "error")  # another model's errors do not count
    for _ in range(4):
        attempt("sonnet", "ok")
    attempt("sonnet", "error")  # 1/5 = 20%: not above
    assert fired == []
    attempt("sonnet", "error")  # 2/6
    assert len(fired) == 1
    assert fired[0].rule == "attempt_error_rate>0.2[model=sonnet]"
    # Requests are not attempts: a failing request does not feed this rule.
    for _ in range(10):
        _req(m, error="AllTargetsFailed")
    assert len(fired) == 1


def test_latency_p95_above_threshold() -> None:
    rule = AlertRule.latency(above_ms=500, min_samples=50, window_s=300)
    m, _, _, fired = _setup(rule)
    for _ in range(95):
        _req(m, latency=100.0)
    for _ in range(5):
        _req(m, latency=1000.0)
    assert fired == []  # 5 of 100 above: p95 itself is still 100 ms
    _req(m, latency=1000.0)  # 6 of 101: the p95 is now a slow request
    assert len(fired) == 1
    assert fired[0].value == pytest.approx(1000.0, rel=0.01)
    assert fired[0].details["above_threshold"] == 6
    assert "latency p95 1000 ms > 500 ms" in fired[0].message


def test_latency_on_attempts_ignores_cache_hits() -> None:
    rule = AlertRule.latency(above_ms=500, min_samples=10, source="attempts")
    m, _, _, fired = _setup(rule)
    for _ in range(10):
        m.record_attempt(
            model="opus", provider="a", path="s", label=None, outcome="ok", error_type=None, latency_ms=900.0
        )
    assert len(fired) == 1
    m2, _, _, fired2 = _setup(rule)
    for _ in range(9):
        m2.record_attempt(
            model="opus", provider="a", path="s", label=None, outcome="ok", error_type=None, latency_ms=900.0
        )
    for _ in range(50):
        m2.record_attempt(
            model="opus",
            provider="a",
            path="s",
            label=None,
            outcome="cached",
            error_type=None,
            latency_ms=0.0,
        )
    assert fired2 == []  # cache hits neither count as samples nor dilute the p95


def test_cost_per_window_counts_unknown_separately() -> None:
    rule = AlertRule.cost(above_usd=1.0, window_s=3600)
    m, _, clock, fired = _setup(rule)
    _req(m, cost=0.4)
    _req(m, cost=None)
    _req(m, cost=0.6)  # exactly $1.00: not above
    assert fired == []
    clock.advance(10)
    _req(m, cost=0.05)
    assert len(fired) == 1
    assert fired[0].value == pytest.approx(1.05)
    assert fired[0].details["unknown_cost_calls"] == 1
    assert "+1 calls of unknown cost" in fired[0].message


def test_cost_window_slides() -> None:
    rule = AlertRule.cost(above_usd=1.0, window_s=600, resolution=60)
    m, _, clock, fired = _setup(rule)
    _req(m, cost=0.9)
    clock.advance(601)
    _req(m, cost=0.9)
    assert fired == []


def test_cost_anomaly_against_trailing_baseline() -> None:
    rule = AlertRule.cost_anomaly(factor=3, window_s=60, baseline_s=600, min_samples=5, resolution=60)
    m, _, clock, fired = _setup(rule)
    # A burst before any baseline exists must not page: nothing to compare against.
    for _ in range(5):
        _req(m, cost=1.0)
    assert fired == []
    # Ten minutes of steady spend: $0.01 every 10 s = $0.001/s.
    clock.advance(60)
    for _ in range(60):
        _req(m, cost=0.01)
        clock.advance(10)
    assert fired == []
    # The window (60 s, ~6 requests) now spends 2x the baseline rate: fine.
    for _ in range(6):
        _req(m, cost=0.02)
        clock.advance(10)
    assert fired == []
    # A spike: $0.30 within a minute is ~5x the baseline.
    for _ in range(10):
        _req(m, cost=0.03)
    assert len(fired) == 1
    assert fired[0].kind == "cost_anomaly"
    assert fired[0].value > 3
    assert "the trailing baseline" in fired[0].message


def test_cost_anomaly_min_usd_floor() -> None:
    rule = AlertRule.cost_anomaly(factor=2, window_s=60, baseline_s=600, min_samples=1, min_usd=5.0)
    m, _, clock, fired = _setup(rule)
    _req(m, cost=0.0)
    clock.advance(700)
    for _ in range(5):
        _req(m, cost=0.5)  # infinitely above a $0 baseline, but only $2.50
    assert fired == []
    for _ in range(6):
        _req(m, cost=0.5)
    assert len(fired) == 1


def test_label_and_strategy_filters() -> None:
    r1 = AlertRule.fallback_rate(above=0.1, min_samples=2, label="bulk")
    r2 = AlertRule.fallback_rate(above=0.1, min_samples=2, strategy="other")
    m, _, _, fired = _setup(r1, r2)
    _req(m, fallback=True, label="complex")
    _req(m, fallback=True, label="complex")
    assert fired == []
    _req(m, fallback=True, label="bulk")
    _req(m, fallback=True, label="bulk")
    assert [a.rule for a in fired] == ["fallback_rate>0.1[label=bulk]"]


def test_failing_sync_handler_is_counted_not_raised() -> None:
    clock = FakeClock(1000.0)
    got: list[Alert] = []

    def bad(alert: Alert) -> None:
        raise RuntimeError("pager down")

    metrics = MetricsCollector()
    mon = AlertMonitor([AlertRule.error_rate(above=0.0, min_samples=1)], [bad, got.append], clock=clock)
    mon.attach(metrics)
    _req(metrics, error="X")  # must not raise into the request path
    assert mon.handler_errors == 1
    assert len(got) == 1  # later handlers still run


async def test_async_handlers_are_scheduled_and_awaited_on_close() -> None:
    clock = FakeClock(1000.0)
    seen: list[str] = []
    started = asyncio.Event()

    async def notify(alert: Alert) -> None:
        started.set()
        await asyncio.sleep(0.01)
        seen.append(alert.rule)

    async def broken(alert: Alert) -> None:
        raise RuntimeError("webhook 500")

    metrics = MetricsCollector()
    mon = AlertMonitor([AlertRule.error_rate(above=0.0, min_samples=1)], [notify, broken], clock=clock)
    mon.attach(metrics)
    _req(metrics, error="X")
    assert seen == []  # not run inline
    await mon.aclose()
    assert seen == ["error_rate>0"]
    assert started.is_set()
    assert mon.handler_errors == 1


def test_async_handler_without_running_loop_runs_to_completion() -> None:
    seen: list[Alert] = []

    async def notify(alert: Alert) -> None:
        seen.append(alert)

    metrics = MetricsCollector()
    rules = [AlertRule.error_rate(above=0.0, min_samples=1)]
    AlertMonitor(rules, [notify], clock=FakeClock(1000.0)).attach(metrics)
    _req(metrics, error="X")
    assert len(seen) == 1


def test_monitors_are_independent() -> None:
    m1, _, _, f1 = _setup(AlertRule.error_rate(above=0.0, min_samples=1))
    _, _, _, f2 = _setup(AlertRule.error_rate(above=0.0, min_samples=1))
    _req(m1, error="X")
    assert len(f1) == 1 and f2 == []


def test_rule_validation() -> None:
    with pytest.raises(ValueError):
        AlertRule.fallback_rate(above=1.5)
    with pytest.raises(ValueError):
        AlertRule.fallback_rate(above=0.1, source="attempts")
    with pytest.raises(ValueError):
        AlertRule.latency(above_ms=100, quantile=1.0)
    with pytest.raises(ValueError):
        AlertRule.error_rate(above=0.1, window_s=0)
    with pytest.raises(ValueError):
        AlertRule("bogus", 1.0)  # type: ignore[arg-type]
    r = AlertRule.error_rate(above=0.1)
    with pytest.raises(ValueError, match="unique"):
        AlertMonitor([r, AlertRule.error_rate(above=0.1)])
    named = AlertRule.error_rate(above=0.1, name="errors-high")
    assert named.name == "errors-high"
