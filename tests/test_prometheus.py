"""The Prometheus exporter, scraped the way Prometheus does: the text exposition of
the orchestrator's own registry, parsed with prometheus-client's parser, after real
calls over loopback sockets (OpenAI adapter against ``MockLLMServer``).

One run holds every case the dashboards need: a retry, a fallback, a cache hit and
a budget rejection; every figure is asserted against what the run did.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

prometheus_client = pytest.importorskip("prometheus_client")
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

import tierwise as tw  # noqa: E402
from tierwise.catalog import ModelSpec  # noqa: E402
from tierwise.errors import BudgetExceeded  # noqa: E402
from tierwise.execution.budget import BudgetLedger, BudgetLimit  # noqa: E402
from tierwise.execution.cache import MemoryCache  # noqa: E402
from tierwise.execution.executor import Deployment  # noqa: E402
from tierwise.execution.retry import RetryPolicy  # noqa: E402
from tierwise.observe.prometheus import PrometheusObserver, metrics_app  # noqa: E402
from tierwise.providers.openai import OpenAI  # noqa: E402
from tierwise.testing import MockLLMServer, MockModel  # noqa: E402

KEY = "sk-prometheus-test-key-0123456789"


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of an exposition, keyed by name and label set."""
    out: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(found: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    """The sum over the series of ``name`` whose labels include ``labels``."""
    want = set(labels.items())
    hits = [v for (n, ls), v in found.items() if n == name and want <= ls]
    assert hits, f"no sample {name}{labels}"
    return sum(hits)


def names(found: dict[tuple[str, frozenset[tuple[str, str]]], float]) -> Iterator[str]:
    return iter({n for n, _ in found})


def _orch(server: MockLLMServer, prom: PrometheusObserver, limit_usd: float) -> tw.Orchestrator:
    provider = OpenAI(api_key=KEY, base_url=server.base_url + "/v1")
    deps = [
        Deployment("cheap", provider, "cheap-v1", spec=ModelSpec("cheap-v1", "openai", input=1, output=2)),
        Deployment("dear", provider, "dear-v1", spec=ModelSpec("dear-v1", "openai", input=10, output=20)),
    ]
    return tw.Orchestrator(
        deps,
        fallbacks=["dear"],
        retry=RetryPolicy(max_attempts=2, initial_backoff=0.0, jitter=False),
        cache=MemoryCache(),
        budget=BudgetLedger([BudgetLimit(limit_usd=limit_usd, period="total")]),
        log_level=None,
        owned_providers=[provider],
        observers=[prom],
    )


async def test_a_scrape_after_retries_fallbacks_a_cache_hit_and_a_budget_rejection() -> None:
    prom = PrometheusObserver()
    models = {
        # Two 500s: the first try, then its retry; then the fallback answers.
        "cheap-v1": MockModel(reply="from cheap", faults=["500", "500"], input_tokens=100, output_tokens=10),
        "dear-v1": MockModel(reply="from dear", input_tokens=100, output_tokens=10, cached_tokens=40),
    }
    async with MockLLMServer(models) as server, _orch(server, prom, limit_usd=0.5) as orch:
        assert orch.prometheus_registry is prom.registry
        first = await orch.run("hello")
        again = await orch.run("hello")  # same request: from the cache
        assert first.fallback and again.cached
        second = await orch.run("another prompt")
        assert second.deployment == "cheap"
        # A prompt of ~500k tokens is refused before any call: its estimate alone
        # is over the limit (the estimate of a short one fits).
        with pytest.raises(BudgetExceeded):
            await orch.run("x" * 2_000_000)
        text = prom.exposition().decode()
        spent = orch.executor.budget.spent("total", "total")  # type: ignore[union-attr]

    found = samples(text)
    # Requests by outcome; the budget rejection is a failed request typed BudgetExceeded.
    assert value(found, "tierwise_requests_total", outcome="ok") == 3
    assert value(found, "tierwise_requests_total", outcome="error", error_type="BudgetExceeded") == 1
    assert value(found, "tierwise_requests_total", deployment="dear", outcome="ok") == 2
    assert value(found, "tierwise_fallbacks_total") == 1
    assert value(found, "tierwise_fallbacks_total", deployment="dear", strategy="default") == 1
    assert value(found, "tierwise_cache_hits_total", deployment="dear") == 1
    assert value(found, "tierwise_request_duration_seconds_count") == 4
    # Attempts: two errors on cheap (one a retry), an ok on dear, a cache hit, an ok on cheap.
    cheap = {"deployment": "cheap", "provider": "openai", "model": "cheap-v1"}
    assert value(found, "tierwise_attempts_total", outcome="error", error_type="ServerError", **cheap) == 2
    assert value(found, "tierwise_attempts_total", outcome="ok", **cheap) == 1
    assert value(found, "tierwise_attempts_total", outcome="ok", deployment="dear", model="dear-v1") == 1
    assert value(found, "tierwise_attempts_total", outcome="cached", deployment="dear") == 1
    assert value(found, "tierwise_retries_total") == 1
    assert value(found, "tierwise_retries_total", **cheap) == 1
    # Tokens by kind: the dear answer and the cheap answer (cache hits bill nothing).
    assert value(found, "tierwise_tokens_total", kind="input", deployment="dear") == 100
    assert value(found, "tierwise_tokens_total", kind="cached", deployment="dear") == 40
    assert value(found, "tierwise_tokens_total", kind="output", deployment="dear") == 10
    assert value(found, "tierwise_tokens_total", kind="input", **cheap) == 100
    # Cost: the sum of the exported series is the ledger's spend, to the cent and below.
    assert value(found, "tierwise_cost_usd_total") == pytest.approx(spent)
    assert value(found, "tierwise_cost_usd_total", deployment="dear") == pytest.approx(
        first.cost_usd, rel=1e-9
    )
    # Histograms in seconds: latency of the provider round trips only (no cache hit).
    assert value(found, "tierwise_attempt_duration_seconds_count") == 4
    assert value(found, "tierwise_attempt_duration_seconds_count", outcome="error") == 2
    assert value(found, "tierwise_limiter_wait_seconds_count") == 4
    # Scrape-time gauges: circuits and the configured budget.
    assert value(found, "tierwise_circuit_state", deployment="cheap", state="healthy") == 1
    assert value(found, "tierwise_circuit_state", deployment="cheap", state="cooling") == 0
    assert value(found, "tierwise_budget_spent_usd", scope="total", period="total") == pytest.approx(spent)
    assert value(found, "tierwise_budget_limit_usd", scope="total", period="total") == 0.5
    assert value(found, "tierwise_budget_remaining_usd", scope="total", period="total") == pytest.approx(
        0.5 - spent
    )
    # Units in the names, conventional suffixes.
    for name in names(found):
        assert name.startswith("tierwise_")
    # Bounded labels: no prompt, no key, no request id anywhere in the exposition.
    for secret in ("hello", "another prompt", "xxxx", KEY, "from dear", "from cheap"):
        assert secret not in text


async def test_two_orchestrators_have_separate_registries_and_none_is_global() -> None:
    async with MockLLMServer({"cheap-v1": MockModel(reply="ok")}) as server:
        a, b = PrometheusObserver(), PrometheusObserver()
        async with _orch(server, a, 1.0) as one, _orch(server, b, 1.0) as two:
            await one.run("hi")
            await one.run("hi again")
            await two.run("hi")
            found_a, found_b = samples(a.exposition().decode()), samples(b.exposition().decode())
    assert value(found_a, "tierwise_requests_total") == 2
    assert value(found_b, "tierwise_requests_total") == 1
    global_text = prometheus_client.generate_latest(prometheus_client.REGISTRY).decode()
    assert "tierwise_" not in global_text


async def test_the_asgi_app_serves_the_exposition() -> None:
    prom = PrometheusObserver()
    async with MockLLMServer({"cheap-v1": MockModel(reply="ok")}) as server, _orch(server, prom, 1.0) as orch:
        await orch.run("hi")
        app = metrics_app(orch)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://metrics") as client:
            reply = await client.get("/metrics")
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("text/plain")
    assert value(samples(reply.text), "tierwise_requests_total", outcome="ok") == 1


def test_metrics_app_needs_a_registry() -> None:
    with pytest.raises(ValueError, match="Prometheus observer"):
        metrics_app(None)


def test_multiprocess_mode_merges_the_workers_files(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """What gunicorn workers write with PROMETHEUS_MULTIPROC_DIR set is served summed."""
    from prometheus_client import values

    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    values.ValueClass = values.get_value_class()
    try:
        for pid in (101, 102):
            monkeypatch.setattr("os.getpid", lambda pid=pid: pid)
            values.ValueClass = values.get_value_class()
            prom = PrometheusObserver()
            prom.on_request(tw.observe.RequestEvent("default", None, "m", 120.0, 0.001, False, False))
        app = metrics_app(multiprocess_dir=str(tmp_path))
    finally:
        monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR")
        values.ValueClass = values.get_value_class()

    async def scrape() -> str:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://metrics") as client:
            return (await client.get("/metrics")).text

    import anyio

    text = anyio.run(scrape)
    assert value(samples(text), "tierwise_requests_total", outcome="ok") == 2


async def test_telemetry_config_switches_the_exporters_on(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("opentelemetry")
    from tierwise.observe.otel import OTelObserver

    async with MockLLMServer({"m-v1": MockModel(reply="ok")}) as server:
        cfg = {
            "providers": {
                "mock": {"type": "openai", "base_url": server.base_url + "/v1", "api_key_env": "NOPE_KEY"}
            },
            "models": {"m": {"provider": "mock", "model": "m-v1", "input_price": 1.0, "output_price": 1.0}},
            "telemetry": {"prometheus": True, "otel": True, "propagate_context": True},
            "logging": {"level": "off"},
        }
        monkeypatch.setenv("NOPE_KEY", KEY)
        async with tw.Orchestrator.from_config(cfg) as orch:
            await orch.run("hi")
            registry = orch.prometheus_registry
            otel = [o for o in orch.observers if isinstance(o, OTelObserver)]
    text = prometheus_client.generate_latest(registry).decode()
    assert value(samples(text), "tierwise_requests_total", deployment="m", outcome="ok") == 1
    assert len(otel) == 1 and otel[0].propagate_context and not otel[0].capture_content


def test_telemetry_config_errors_name_the_field() -> None:
    from tierwise.config import load_config
    from tierwise.errors import ConfigError

    base: dict[str, Any] = {"models": {"m": {"provider": "openai", "model": "gpt-4o-mini"}}}
    with pytest.raises(ConfigError) as info:
        load_config({**base, "telemetry": {"capture_content": True}})
    assert info.value.field == "telemetry.capture_content"
    assert "otel = true" in str(info.value)
    with pytest.raises(ConfigError) as info:
        load_config({**base, "telemetry": {"prometheus": "yes"}})
    assert info.value.field == "telemetry.prometheus"
    with pytest.raises(ConfigError) as info:
        load_config({**base, "telemetry": {"promethus": True}})
    assert "prometheus" in str(info.value)  # did you mean


def test_a_missing_extra_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    from tierwise.config import load_config
    from tierwise.errors import ConfigError

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "prometheus_client" else real(name, *a)
    )
    with pytest.raises(ConfigError) as info:
        load_config(
            {
                "models": {"m": {"provider": "openai", "model": "gpt-4o-mini"}},
                "telemetry": {"prometheus": True},
            }
        )
    assert info.value.field == "telemetry.prometheus"
    assert "tierwise[prometheus]" in str(info.value)


def test_an_orchestrator_without_exporters_imports_neither_library() -> None:
    import json
    import subprocess
    import sys

    code = (
        "import json, sys\n"
        "import tierwise as tw\n"
        "from tierwise.testing import FakeProvider\n"
        "orch = tw.Orchestrator([tw.Deployment('m', FakeProvider(), 'm')], log_level=None)\n"
        "assert orch.prometheus_registry is None\n"
        "import tierwise.observe as o\n"
        "o.PrometheusObserver, o.OTelObserver\n"
        "libs = ('prometheus_client', 'opentelemetry')\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith(libs))))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []
