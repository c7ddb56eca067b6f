"""When Redis is down or slow: every request follows its concern's ``on_error``
mode, none waits past its deadline, and the shared state resumes by itself when
Redis is back.

Real parts only: a ``redis-server`` these tests stop and start again on the same
port, a loopback TCP proxy (``SlowProxy``) that holds Redis's replies back past
the timeout, and the loopback ``MockLLMServer``. One process: these failure
modes belong to the Redis backend (the memory backend has nothing to lose), so
there is no memory parametrization here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest

import tierwise as tw
from _redis_helpers import REDIS_SERVER, RedisServer, SlowProxy
from tierwise.testing import MockLLMServer, MockModel

redis = pytest.importorskip("redis")
pytestmark = [
    pytest.mark.skipif(REDIS_SERVER is None, reason="redis-server is not installed"),
    pytest.mark.timeout(120),
]

TIMEOUT_S = 0.2
RETRY_S = 0.2
# How long a request may take while Redis is away: its one bounded wait on Redis
# plus the mock call, with room for a loaded 2-core machine. The slow proxy
# holds replies 3 s back, so a request that waited for Redis would blow this.
DEADLINE_S = 1.5
MODES = [("open", "open"), ("open", "closed"), ("closed", "open"), ("closed", "closed")]


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def mock_url(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("MOCK_KEY", "sk-test-redis-failures")
    with MockLLMServer.run_in_thread({"m": MockModel(output_tokens=4)}) as server:
        yield server.base_url


def _config(base_url: str, limits: str, budget: str) -> dict[str, Any]:
    return {
        "providers": {"mock": {"type": "openai", "base_url": f"{base_url}/v1", "api_key_env": "MOCK_KEY"}},
        "models": {
            "m": {
                "provider": "mock",
                "model": "m",
                "rpm": 1000,
                "max_concurrency": 8,
                "input_price": 0.0,
                "output_price": 1.0,
            }
        },
        "retry": {"max_attempts": 1},
        "logging": {"level": "off"},
        "telemetry": {"prometheus": True},
        "budget": {"limits": [{"scope": "total", "period": "day", "limit_usd": 100.0}]},
        "state": {
            "backend": "redis",
            "key_prefix": "tfail:",
            "timeout_s": TIMEOUT_S,
            "retry_s": RETRY_S,
            "on_error": {"limits": limits, "budget": budget},
        },
    }


def _name(exc: BaseException) -> str:
    inner = getattr(exc, "exceptions", None)
    return type(inner[-1] if inner else exc).__name__


async def _outcomes(orch: tw.Orchestrator, n: int) -> list[str]:
    """Run ``n`` requests one after the other; each must end within DEADLINE_S."""
    out = []
    for _ in range(n):
        t0 = time.monotonic()
        try:
            await orch.run(tw.Request.from_prompt("hello", max_tokens=8))
            out.append("ok")
        except Exception as exc:
            out.append(_name(exc))
        took = time.monotonic() - t0
        assert took < DEADLINE_S, f"a request waited {took:.2f} s on an unavailable Redis"
    return out


def _scrape(orch: tw.Orchestrator) -> str:
    from prometheus_client import generate_latest

    return bytes(generate_latest(orch.prometheus_registry)).decode()


def _expected(limits: str, budget: str) -> str:
    return "ok" if limits == budget == "open" else "StateUnavailable"


def _check_outage(orch: tw.Orchestrator, limits: str, budget: str, outcomes: list[str]) -> None:
    assert orch.state is not None
    assert outcomes == [_expected(limits, budget)] * len(outcomes)
    stats = orch.state.stats()
    assert stats["shared"] is False
    assert all(entry["shared"] is False for entry in orch.health().values())
    n = len(outcomes)
    scrape = _scrape(orch)
    assert "tierwise_state_shared 0.0" in scrape
    assert (
        f'tierwise_state_refused_total{{concern="limits"}} {float(stats["refused"].get("limits", 0))}'
        in scrape
    )
    # The rate-limit slot is taken before the budget is reserved: closed limits
    # refuse first; open limits fall back, then the budget applies its own mode.
    if limits == "closed":
        assert stats["refused"] == {"limits": n} and "limits" not in stats["degraded"]
        return
    assert "limits" in stats["degraded"] and stats["fallbacks"]["limits"] == n
    assert 'tierwise_state_degraded{concern="limits"} 1.0' in scrape
    if budget == "open":
        assert "budget" in stats["degraded"] and stats["fallbacks"]["budget"] == n
    else:
        assert stats["refused"] == {"budget": n} and "budget" not in stats["degraded"]


async def _resumed(orch: tw.Orchestrator) -> None:
    """Requests go on until the shared state is back (bounded), then the next one
    is booked in Redis again: its limiter window and the day's spend count it."""
    state = orch.state
    assert state is not None
    for _ in range(60):
        # Fail-closed concerns still refuse until the link is back.
        with contextlib.suppress(Exception):
            await orch.run(tw.Request.from_prompt("hello", max_tokens=8))
        if state.shared:
            break
        await asyncio.sleep(0.05)
    assert state.shared and state.degraded == frozenset()
    assert all(entry["shared"] is True for entry in orch.health().values())
    assert "tierwise_state_shared 1.0" in _scrape(orch)
    limiter: Any = orch.executor.deployments["m"].limiter
    before = (await limiter.asnapshot())["requests_in_window"]
    await orch.run(tw.Request.from_prompt("hello", max_tokens=8))
    after = await limiter.asnapshot()
    assert after["requests_in_window"] == before + 1
    assert await state.flush()
    store = state.budget_store()
    day = time.strftime("%Y-%m-%d", time.gmtime())
    spent, reserved = (await store.refresh([f"day:{day}|total"]))[f"day:{day}|total"]
    assert spent > 0 and reserved == 0.0


@pytest.mark.parametrize(("limits", "budget"), MODES)
async def test_redis_stopped_mid_run_follows_each_fail_mode_and_resumes_on_restart(
    redis_server: RedisServer,
    mock_url: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    limits: str,
    budget: str,
) -> None:
    monkeypatch.setenv("REDIS_URL", redis_server.url)
    caplog.set_level(logging.WARNING, logger="tierwise.state")
    async with tw.Orchestrator.from_config(_config(mock_url, limits, budget)) as orch:
        assert orch.state is not None
        assert await _outcomes(orch, 2) == ["ok", "ok"]
        assert orch.state.shared
        redis_server.stop()
        outcomes = await _outcomes(orch, 5)
        _check_outage(orch, limits, budget, outcomes)
        assert any("redis unavailable" in r.getMessage() for r in caplog.records)
        # Same port, empty server (no persistence, no scripts loaded): the link
        # reconnects and reloads its scripts by itself.
        redis_server.start()
        await _resumed(orch)
        assert any("resumed" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(("limits", "budget"), MODES)
async def test_redis_slower_than_the_timeout_follows_each_fail_mode_and_resumes(
    redis_server: RedisServer,
    proxy: SlowProxy,
    mock_url: str,
    monkeypatch: pytest.MonkeyPatch,
    limits: str,
    budget: str,
) -> None:
    monkeypatch.setenv("REDIS_URL", proxy.url)
    async with tw.Orchestrator.from_config(_config(mock_url, limits, budget)) as orch:
        assert orch.state is not None
        assert await _outcomes(orch, 2) == ["ok", "ok"]
        proxy.delay = 3.0
        outcomes = await _outcomes(orch, 4)
        _check_outage(orch, limits, budget, outcomes)
        proxy.delay = 0.0
        await _resumed(orch)
