"""Alerts from config: the new rules (share of traffic on the expensive model,
quality), episodes that fire once and resolve, and the sinks (log, webhook,
callback). Time on a ``FakeClock``; the webhook receiver is an
``httpx.MockTransport`` (the HTTP boundary); the cascade runs over loopback
sockets against ``MockLLMServer``.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import httpx
import pytest

import tierwise as tw
from tierwise.config import build_orchestrator, check_config, load_config
from tierwise.errors import ConfigError
from tierwise.observe.alert_sinks import LogSink, WebhookSink
from tierwise.observe.alerts import Alert, AlertMonitor, AlertRule
from tierwise.observe.events import RequestEvent
from tierwise.testing import FakeClock, MockLLMServer, MockModel

RECEIVED: list[Alert] = []


def collect(alert: Alert) -> None:
    """The callback sink named in config below."""
    RECEIVED.append(alert)


def _request(model: str | None) -> RequestEvent:
    return RequestEvent("default", None, model, 100.0, 0.001, False, False)


def test_expensive_share_fires_once_per_episode_and_resolves() -> None:
    clock = FakeClock(1000.0)
    fired: list[Alert] = []
    rule = AlertRule.expensive_share(
        model="opus", above=0.5, window_s=60, min_samples=4, cooldown_s=0, episodes=True, resolution=6
    )
    monitor = AlertMonitor([rule], [fired.append], clock=clock)
    for _ in range(4):
        monitor.on_request(_request("haiku"))
    for _ in range(5):
        monitor.on_request(_request("opus"))  # 5/9 on opus
    assert [a.resolved for a in fired] == [False]
    assert fired[0].kind == "expensive_share" and fired[0].value == pytest.approx(5 / 9)
    assert "expensive share 55.6% > 50.0%" in fired[0].message
    clock.advance(3600)
    for _ in range(10):
        monitor.on_request(_request("opus"))  # still burning, an hour on: no repeat
    assert len(fired) == 1
    monitor.on_request(_request(None))  # a failed request is no sample
    clock.advance(120)  # the window empties
    for _ in range(4):
        monitor.on_request(_request("haiku"))
    assert [a.resolved for a in fired] == [False, True]
    assert fired[1].to_dict()["status"] == "resolved" and fired[1].to_dict()["value"] is None
    for _ in range(6):
        monitor.on_request(_request("opus"))  # a new episode
    assert [a.resolved for a in fired] == [False, True, False]


def test_rules_without_episodes_keep_re_firing_per_cooldown() -> None:
    clock = FakeClock(1000.0)
    fired: list[Alert] = []
    rule = AlertRule.expensive_share(model="opus", above=0.5, window_s=60, min_samples=2, cooldown_s=30)
    monitor = AlertMonitor([rule], [fired.append], clock=clock)
    for _ in range(3):
        monitor.on_request(_request("opus"))
    clock.advance(31)
    monitor.on_request(_request("opus"))
    assert [a.resolved for a in fired] == [False, False]


async def test_quality_counts_rejected_cascade_rungs_and_bad_feedback() -> None:
    clock = FakeClock(1000.0)
    fired: list[Alert] = []
    rule = AlertRule.quality(above=0.4, window_s=600, min_samples=2, episodes=True, cooldown_s=0)
    monitor = AlertMonitor([rule], [fired.append], clock=clock)
    models = {"cheap-v1": MockModel(reply="unsure"), "dear-v1": MockModel(reply="certain")}
    async with MockLLMServer(models) as server:
        provider = tw.providers.OpenAI(api_key="sk-alerts-test-0123456789", base_url=server.base_url + "/v1")
        deps = [
            tw.Deployment(
                "cheap", provider, "cheap-v1", spec=tw.ModelSpec("cheap-v1", "openai", input=1, output=2)
            ),
            tw.Deployment(
                "dear", provider, "dear-v1", spec=tw.ModelSpec("dear-v1", "openai", input=5, output=9)
            ),
        ]
        cascade = tw.Cascade(["cheap", "dear"], accept=lambda r: "certain" in r.text, name="climb")
        async with tw.Orchestrator(
            deps, strategies={"climb": cascade}, alerts=monitor, log_level=None, owned_providers=[provider]
        ) as orch:
            await orch.run("question")  # cheap rejected, dear accepted: 1 of 2 judged is bad
    assert len(fired) == 1 and fired[0].kind == "quality" and fired[0].value == pytest.approx(0.5)
    for _ in range(3):
        monitor.record_feedback(True)  # 1 bad of 5 = 20%
    assert [a.resolved for a in fired] == [False, True]
    monitor.record_feedback(False, model="dear")
    monitor.record_feedback(False)  # 3 of 7 = 43%
    assert [a.resolved for a in fired] == [False, True, False]


def test_new_rule_validation() -> None:
    with pytest.raises(ValueError, match="target"):
        AlertRule("expensive_share", 0.5)
    with pytest.raises(ValueError, match="target"):
        AlertRule("error_rate", 0.5, target="opus")
    with pytest.raises(ValueError, match="fraction"):
        AlertRule.quality(above=2.0)
    with pytest.raises(ValueError, match="requests"):
        AlertRule.quality(above=0.1, source="attempts")


async def test_the_webhook_sink_retries_and_never_blocks_the_request() -> None:
    posts: list[dict[str, Any]] = []
    statuses = iter([503, 200, 400])

    def receive(request: httpx.Request) -> httpx.Response:
        posts.append(json.loads(request.content))
        return httpx.Response(next(statuses))

    client = httpx.AsyncClient(transport=httpx.MockTransport(receive))
    sink = WebhookSink("https://hooks.example/T000/SECRET", backoff_s=0.0, client=client)
    clock = FakeClock(1000.0)
    rule = AlertRule.error_rate(above=0.1, min_samples=1, episodes=True, cooldown_s=0)
    monitor = AlertMonitor([rule], [sink], clock=clock)
    monitor.on_request(RequestEvent("default", None, None, 5.0, None, False, False, "ServerError"))
    # The request path returned at once: the delivery is a task still to run.
    assert posts == [] and sink.pending == 1
    await monitor.aclose()
    assert [p["status"] for p in posts] == ["firing", "firing"]  # a 503, then the retry's 200
    assert posts[0]["rule"] == "error_rate>0.1" and posts[0]["value"] == 1.0
    assert sink.delivered == 1 and sink.failed == 0 and sink.pending == 0
    # A 400 is not retried.
    failing = AlertMonitor([AlertRule.error_rate(above=0.1, min_samples=1)], [sink], clock=clock)
    failing.on_request(RequestEvent("default", None, None, 5.0, None, False, False, "ServerError"))
    await failing.aclose()
    assert len(posts) == 3 and sink.failed == 1
    assert "SECRET" not in repr(sink)
    await client.aclose()


def test_the_webhook_sink_drops_beyond_max_pending() -> None:
    sink = WebhookSink("https://hooks.example/x", max_pending=1)
    alert = Alert("r", "cost", 1.0, 0.5, 60.0, 1, "m", 0.0)
    first = sink(alert)
    assert first is not None and sink(alert) is None and sink.dropped == 1
    first.close()  # type: ignore[attr-defined]  # a coroutine never started


def test_the_log_sink(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="tierwise.alerts")
    sink = LogSink()
    sink(Alert("r", "cost", 1.0, 0.5, 60.0, 1, "r: cost $1 > $0.5", 0.0))
    sink(Alert("r", "cost", float("nan"), 0.5, 60.0, 1, "r: resolved", 0.0, resolved=True))
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("WARNING", "alert firing: r: cost $1 > $0.5"),
        ("INFO", "alert resolved: r: resolved"),
    ]


def _config(**alerts: Any) -> dict[str, Any]:
    return {
        "models": {
            "small": {"provider": "openai", "model": "gpt-4o-mini"},
            "big": {"provider": "openai", "model": "gpt-4o"},
        },
        "logging": {"level": "off"},
        "alerts": alerts,
    }


async def test_alerts_from_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_ALERT_HOOK", "https://hooks.example/T/B/secret")
    cfg = _config(
        callback="test_alert_config:collect",
        webhook={"url_env": "TEST_ALERT_HOOK", "max_attempts": 2},
        rules=[
            {"kind": "fallback_rate", "threshold": 0.05},
            {"kind": "expensive_share", "threshold": 0.5, "min_samples": 2},
            {"kind": "latency", "threshold": 2000, "quantile": 0.99, "episodes": False},
        ],
    )
    async with build_orchestrator(cfg, clock=FakeClock(0.0)) as orch:
        monitor = orch.alerts
        assert monitor is not None
        share = monitor.rules[1]
        assert share.target == "big"  # the priciest model by default
        assert share.episodes and not monitor.rules[2].episodes
        assert [type(h).__name__ for h in monitor.handlers] == ["LogSink", "WebhookSink", "function"]
        RECEIVED.clear()
        monitor.handlers.remove(monitor.handlers[1])  # no network in this test
        for _ in range(2):
            monitor.on_request(_request("big"))
        assert [a.rule for a in RECEIVED] == ["share[big]>0.5"]


@pytest.mark.parametrize(
    ("alerts", "field", "words"),
    [
        ({"rules": [{"kind": "fallbak_rate", "threshold": 0.1}]}, "alerts.rules[0].kind", "fallback_rate"),
        ({"rules": [{"kind": "error_rate", "threshold": 1.5}]}, "alerts.rules[0]", "fraction"),
        ({"rules": [{"kind": "cost", "threshold": 1.0, "target": "big"}]}, "alerts.rules[0].target", "only"),
        ({"rules": [{"kind": "cost", "threshold": 1, "windw_s": 5}]}, "alerts.rules[0].windw_s", "window_s"),
        (
            {"rules": [{"kind": "cost", "threshold": 1.0}, {"kind": "cost", "threshold": 1.0}]},
            "alerts.rules[1].name",
            "repeats",
        ),
        ({"callback": "no_such_module:fn"}, "alerts.callback", "cannot import"),
        ({"webhook": {"url_env": "https://hooks.example/x"}}, "alerts.webhook.url_env", "NAME"),
    ],
)
def test_bad_alert_config_names_the_field(alerts: dict[str, Any], field: str, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(_config(**alerts))
    assert info.value.field == field
    assert words in str(info.value)


def test_unknown_aliases_and_missing_webhook_env(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = _config(rules=[{"kind": "error_rate", "threshold": 0.1, "model": "smal"}])
    with pytest.raises(ConfigError) as info:
        check_config(cfg)
    assert info.value.field == "alerts.rules[0].model" and "small" in str(info.value)
    monkeypatch.delenv("TEST_ALERT_HOOK", raising=False)
    cfg = _config(webhook={"url_env": "TEST_ALERT_HOOK"}, rules=[{"kind": "error_rate", "threshold": 0.1}])
    with pytest.raises(ConfigError) as info:
        build_orchestrator(cfg)
    assert info.value.field == "alerts.webhook.url_env" and "not set" in str(info.value)
