"""Savings against a baseline model, per request and in total: in ``Response``, the
metrics, the Prometheus registry, the audit log and the report. Real calls over
loopback sockets (OpenAI adapter against ``MockLLMServer``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import tierwise as tw
from tierwise.catalog import ModelSpec
from tierwise.config import load_config
from tierwise.errors import ConfigError
from tierwise.execution.cache import MemoryCache
from tierwise.execution.executor import Deployment
from tierwise.observe.audit import AuditLog
from tierwise.observe.report import format_report, summarize
from tierwise.providers.openai import OpenAI
from tierwise.testing import FakeProvider, MockLLMServer, MockModel

# $ per million tokens
CHEAP = {"input": 1.0, "output": 2.0}
DEAR = {"input": 10.0, "output": 30.0}


def _deps(server: MockLLMServer) -> tuple[OpenAI, list[Deployment]]:
    provider = OpenAI(api_key="sk-savings-test-0123456789", base_url=server.base_url + "/v1")
    return provider, [
        Deployment("cheap", provider, "cheap-v1", spec=ModelSpec("cheap-v1", "openai", **CHEAP)),
        Deployment("dear", provider, "dear-v1", spec=ModelSpec("dear-v1", "openai", **DEAR)),
    ]


def _at(prices: dict[str, float], input_tokens: int, output_tokens: int) -> float:
    return (input_tokens * prices["input"] + output_tokens * prices["output"]) / 1e6


async def test_savings_per_request_and_in_total(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    models = {
        "cheap-v1": MockModel(reply="unsure", input_tokens=1000, output_tokens=100),
        "dear-v1": MockModel(reply="certain", input_tokens=1000, output_tokens=50),
    }
    async with MockLLMServer(models) as server:
        provider, deps = _deps(server)
        cascade = tw.Cascade(["cheap", "dear"], accept=lambda r: "certain" in r.text, name="climb")
        async with tw.Orchestrator(
            deps,
            strategies={"default": tw.Single("cheap"), "climb": cascade},
            cache=MemoryCache(),
            audit=AuditLog(path),
            log_level=None,
            owned_providers=[provider],
        ) as orch:
            assert orch.baseline == "dear"  # the priciest model, by default
            single = await orch.run("hello")
            climbed = await orch.run("question", strategy="climb")
            cached = await orch.run("hello")
            snapshot = orch.metrics.snapshot()

    # Routed to cheap: the same 1000 in / 100 out on dear would cost more.
    assert single.baseline == "dear"
    assert single.baseline_cost_usd == pytest.approx(_at(DEAR, 1000, 100))
    assert single.savings_usd == pytest.approx(_at(DEAR, 1000, 100) - _at(CHEAP, 1000, 100))
    # The cascade answered on dear after a rejected cheap rung: its baseline is the
    # answer's own tokens on dear, so the savings are minus the wasted rung.
    assert climbed.deployment == "dear"
    assert climbed.baseline_cost_usd == pytest.approx(_at(DEAR, 1000, 50))
    assert climbed.savings_usd == pytest.approx(-_at(CHEAP, 1000, 100))
    # A cache hit used no tokens.
    assert cached.cached and cached.baseline_cost_usd == 0.0 and cached.savings_usd == 0.0

    total = single.savings_usd + climbed.savings_usd
    saved = snapshot["requests"]["savings"]
    assert saved["requests"] == 3
    assert saved["savings_usd"] == pytest.approx(total)
    assert saved["baseline_cost_usd"] == pytest.approx(_at(DEAR, 1000, 100) + _at(DEAR, 1000, 50))

    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["savings_usd"] for r in records] == pytest.approx(
        [single.savings_usd, climbed.savings_usd, 0.0]
    )
    assert {r["baseline"] for r in records} == {"dear"}

    summary = summarize(path)
    assert summary["savings"]["savings_usd"] == pytest.approx(total)
    assert summary["savings"]["baseline"] == "dear"
    assert summary["savings"]["savings_rate"] == pytest.approx(total / saved["baseline_cost_usd"])
    day = next(iter(summary["days"].values()))
    assert day["savings"]["savings_usd"] == pytest.approx(total)
    text = format_report(summary)
    assert f"Savings      ${total:,.4f}" in text and "against dear for everything" in text


async def test_a_named_baseline_and_the_prometheus_counters() -> None:
    prometheus_client = pytest.importorskip("prometheus_client")
    from prometheus_client.parser import text_string_to_metric_families

    from tierwise.observe.prometheus import PrometheusObserver

    prom = PrometheusObserver()
    async with MockLLMServer(
        {"dear-v1": MockModel(reply="x", input_tokens=1000, output_tokens=100)}
    ) as server:
        provider, deps = _deps(server)
        async with tw.Orchestrator(
            deps,
            strategies={"default": tw.Single("dear")},
            baseline="cheap",
            log_level=None,
            owned_providers=[provider],
            observers=[prom],
        ) as orch:
            response = await orch.run("hello")
        text = prometheus_client.generate_latest(prom.registry).decode()
    # Answering on the dearer model than the baseline is a negative saving.
    assert response.baseline == "cheap"
    assert response.savings_usd == pytest.approx(_at(CHEAP, 1000, 100) - _at(DEAR, 1000, 100))
    found = {
        s.name: s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name.endswith("_total")
    }
    assert found["tierwise_baseline_cost_usd_total"] == pytest.approx(_at(CHEAP, 1000, 100))
    assert found["tierwise_routed_cost_usd_total"] == pytest.approx(_at(DEAR, 1000, 100))


def test_an_unknown_baseline_names_the_field() -> None:
    with pytest.raises(ConfigError) as info:
        load_config({"models": {"small": {"provider": "openai", "model": "gpt-4o-mini"}}, "baseline": "smal"})
    assert info.value.field == "baseline" and "small" in str(info.value)
    with pytest.raises(ConfigError) as info:
        tw.Orchestrator([Deployment("m", FakeProvider(), "m")], baseline="nope")
    assert info.value.field == "baseline"
