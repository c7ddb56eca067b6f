"""The shared response cache and sticky conversations on a real ``redis-server``.

The multi-process tests run worker processes (tests/_redis_helpers.py), each
with its own Orchestrator built from the same config, against one loopback
MockLLMServer in this process, and count what reached the server. The
``memory`` parametrization runs the same scenario in one process on the default
backend. The mechanics (the lock, TTLs, bounds, fail modes) are tested in this
process against the same server, with an injected clock where time matters.
Skipped without ``redis-server`` or the ``redis`` package.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

import tierwise as tw
from _redis_helpers import REDIS_SERVER, RedisServer, run_workers, state_toml, worker_env
from tierwise.state import StateUnavailable
from tierwise.state.redis import RedisState
from tierwise.testing import FakeClock, MockLLMServer, MockModel

redis = pytest.importorskip("redis")
pytestmark = [
    pytest.mark.skipif(REDIS_SERVER is None, reason="redis-server is not installed"),
    pytest.mark.timeout(180),
]

COMPLEX = "Analyze the architecture trade-offs of this design, step by step"


def _prefix() -> str:
    return f"tc{uuid.uuid4().hex[:8]}:"


def _models(base_url: str) -> str:
    return f"""
[providers.mock]
type = "openai"
base_url = "{base_url}/v1"
api_key_env = "MOCK_KEY"

[models.small]
provider = "mock"
model = "small"
input_price = 0.0
output_price = 1.0

[models.big]
provider = "mock"
model = "big"
input_price = 0.0
output_price = 2.0

[retry]
max_attempts = 1

[logging]
level = "off"
"""


def _write(tmp: Path, text: str) -> Path:
    path = tmp / f"tierwise-{uuid.uuid4().hex[:8]}.toml"
    path.write_text(text)
    return path


def _env(redis_server: RedisServer) -> dict[str, str]:
    return worker_env(redis_server.url, "sk-test-redis-cache")


# -- coalescing across processes ------------------------------------------------------


@pytest.mark.parametrize("backend", ["redis", "memory"])
def test_identical_requests_from_4_processes_reach_the_provider_once(
    tmp_path: Path, redis_server: RedisServer, backend: str
) -> None:
    # The answer takes 3 s, and the four processes send at once (a barrier):
    # all of them ask before any answer exists, so only coalescing (not the cache)
    # can keep it to one call. The memory backend: four concurrent requests in
    # one process.
    mock = MockModel(output_tokens=4, latency_ms=3000)
    with MockLLMServer.run_in_thread({"small": mock}) as server:
        text = _models(server.base_url) + "\n[cache]\nttl_s = 600\n\n" + state_toml(backend, _prefix())
        cfg = _write(tmp_path, text)
        env = _env(redis_server)
        procs = 4 if backend == "redis" else 1
        barrier = tmp_path / "barrier"
        barrier.mkdir()
        args = {"n": 4 // procs, "prompt": "the same question", "barrier": str(barrier), "barrier_n": procs}
        results = run_workers(cfg, procs, args, env)
        assert server.stats["small"].requests == 1
        assert sum(r["ok"] for r in results) == 4
        assert sum(r["cached"] for r in results) == 3
        if backend == "redis":
            # The three others waited for the first one's answer: coalesced, not
            # merely cached after the fact.
            assert sum(r["stats"]["cache"]["peer_hits"] for r in results) == 3
            # And the answer outlives the processes: two new ones pay nothing.
            later = run_workers(cfg, 2, {"n": 1, "prompt": "the same question"}, env)
            assert server.stats["small"].requests == 1
            assert [r["cached"] for r in later] == [1, 1]


# -- the lock, in one process with two links -------------------------------------------


@contextlib.asynccontextmanager
async def _states(url: str, n: int, **kw: Any) -> AsyncIterator[list[RedisState]]:
    """``n`` RedisStates on one prefix: ``n`` processes' worth of links and owners."""
    prefix = _prefix()
    states = [RedisState(url, key_prefix=prefix, timeout_s=2.0, **kw) for _ in range(n)]
    try:
        yield states
    finally:
        for s in states:
            await s.aclose()


def _response(text: str = "answer") -> tw.Response:
    return tw.Response(text=text, model="small", provider="mock", deployment="small")


async def test_a_waiter_gets_the_leaders_answer(redis_server: RedisServer) -> None:
    async with _states(redis_server.url, 2) as (a, b):
        ca, cb = a.cache(), b.cache()
        assert await ca.claim("k") is None  # a leads
        waiting = asyncio.ensure_future(cb.claim("k"))
        await asyncio.sleep(0.05)
        assert not waiting.done()  # b waits for a's call
        await ca.set("k", _response("from a"))
        hit = await asyncio.wait_for(waiting, 5)
        assert hit is not None and hit.text == "from a" and hit.cached and hit.cost_usd == 0.0
        assert cb.peer_hits == 1 and cb.wait_timeouts == 0
        # The lock went with the answer: the next miss of another key leads at once.
        assert await cb.claim("other") is None


async def test_a_waiter_stops_waiting_after_lock_s_on_the_injected_clock(redis_server: RedisServer) -> None:
    clock = FakeClock(auto_advance=False)
    prefix = _prefix()
    a = RedisState(redis_server.url, key_prefix=prefix, timeout_s=2.0)
    b = RedisState(redis_server.url, key_prefix=prefix, timeout_s=2.0, clock=clock)
    try:
        ca, cb = a.cache(), b.cache(lock_s=10.0)
        assert await ca.claim("k") is None
        waiting = asyncio.ensure_future(cb.claim("k"))
        for _ in range(2000):
            if waiting.done():
                break
            await asyncio.sleep(0.002)  # let the poll's round trip happen
            clock.advance(0.25)
        assert await waiting is None  # call yourself
        assert cb.wait_timeouts == 1
        assert 10.0 <= clock.now() < 11.0
        # A deadline shorter than lock_s bounds the wait too: no wait at all here.
        assert await cb.claim("k", wait_s=0.0) is None
        assert cb.wait_timeouts == 2
    finally:
        await a.aclose()
        await b.aclose()


async def test_a_failed_leader_lets_waiters_call_and_a_cancelled_one_hands_over(
    redis_server: RedisServer,
) -> None:
    async with _states(redis_server.url, 3) as (a, b, c):
        ca, cb, cc = a.cache(), b.cache(), c.cache()
        # Failed: the others call at once, none of them taking the lock.
        assert await ca.claim("failed") is None
        ca.abandon("failed", failed=True)
        assert await a.flush()
        assert await cb.claim("failed") is None
        assert await cc.claim("failed", wait_s=0.0) is None
        assert cb.wait_timeouts == cc.wait_timeouts == 0
        # Cancelled: one waiter takes the lock over, the next one waits for it.
        assert await ca.claim("cancelled") is None
        ca.abandon("cancelled", failed=False)
        assert await a.flush()
        assert await cb.claim("cancelled") is None  # b leads now
        assert await cc.claim("cancelled", wait_s=0.0) is None
        assert cc.wait_timeouts == 1


# -- TTL and bounds -----------------------------------------------------------------


@pytest.mark.parametrize("backend", ["redis", "memory"])
async def test_entries_expire_after_ttl_on_the_injected_clock(
    redis_server: RedisServer, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REDIS_URL", redis_server.url)
    monkeypatch.setenv("MOCK_KEY", "sk-test-redis-cache")
    clock = FakeClock(auto_advance=False)
    prefix = _prefix()
    with MockLLMServer.run_in_thread({"small": MockModel(output_tokens=4)}) as server:
        import tomllib

        cfg = tomllib.loads(
            _models(server.base_url) + "\n[cache]\nttl_s = 60\n\n" + state_toml(backend, prefix)
        )
        async with tw.Orchestrator.from_config(cfg, clock=clock) as orch:
            first = await orch.run("hello")
            assert not first.cached
            if orch.state is not None:
                assert await orch.state.flush()
            second = await orch.run("hello")
            assert second.cached and second.text == first.text
            clock.advance(59.0)
            assert (await orch.run("hello")).cached
            clock.advance(2.0)
            third = await orch.run("hello")
            assert not third.cached
        assert server.stats["small"].requests == 2
    if backend == "redis":
        # Redis expires the key by itself too (volatile keys: maxmemory-friendly).
        client = redis.asyncio.Redis.from_url(redis_server.url)
        try:
            keys = [k async for k in client.scan_iter(f"{prefix}c:*")]
            assert len(keys) == 1
            assert 0 < await client.pttl(keys[0]) <= 60_000
        finally:
            await client.aclose()


async def test_the_shared_cache_is_bounded_in_entries_and_entry_size(redis_server: RedisServer) -> None:
    async with _states(redis_server.url, 1) as (a,):
        cache = a.cache(max_entries=3, max_entry_bytes=2_000)
        for i in range(5):
            await cache.set(f"k{i}", _response(f"answer {i}"))
        await cache.set("big", _response("x" * 5_000))
        assert await a.flush()
        got = [await cache.get(f"k{i}") for i in range(5)]
        assert [g is None for g in got] == [True, True, False, False, False]
        assert [g.text for g in got if g is not None] == ["answer 2", "answer 3", "answer 4"]
        assert await cache.get("big") is None and cache.too_big == 1
        client = redis.asyncio.Redis.from_url(redis_server.url)
        try:
            assert await client.zcard(a.key_prefix + "cidx") == 3
        finally:
            await client.aclose()


async def test_an_unreadable_entry_is_a_miss(redis_server: RedisServer) -> None:
    async with _states(redis_server.url, 1) as (a,):
        cache = a.cache()
        client = redis.asyncio.Redis.from_url(redis_server.url)
        try:
            await client.set(a.key_prefix + "c:bad", b"\x80not json", px=60_000)
            await client.set(a.key_prefix + "c:alien", json.dumps({"exp": 1e12, "r": {}}), px=60_000)
        finally:
            await client.aclose()
        assert await cache.get("bad") is None
        assert await cache.get("alien") is None


# -- sticky conversations ------------------------------------------------------------


def _router(sticky_ttl: str = "") -> str:
    return f"""
[strategies.auto]
type = "router"
sticky = true
default = "standard"

[strategies.auto.routes]
standard = "small"
complex = "big"
{sticky_ttl}
"""


def _routed(base_url: str) -> str:
    """The models and a sticky router as the default strategy (a top-level key: first)."""
    return 'default_strategy = "auto"\n' + _models(base_url) + _router()


@pytest.mark.parametrize("backend", ["redis", "memory"])
def test_a_conversation_keeps_its_route_in_every_process(
    tmp_path: Path, redis_server: RedisServer, backend: str
) -> None:
    # Turn 1 is plain (standard → small); turn 2 would classify complex (→ big)
    # but is the same conversation; another conversation with that turn goes big.
    turn1 = {"prompt": "hello there", "metadata": {"conversation_id": "c1"}}
    turn2 = {"prompt": COMPLEX, "metadata": {"conversation_id": "c1"}}
    other = {"prompt": COMPLEX, "metadata": {"conversation_id": "c2"}}
    with MockLLMServer.run_in_thread({"small": MockModel(), "big": MockModel()}) as server:
        text = _routed(server.base_url) + state_toml(backend, _prefix())
        cfg = _write(tmp_path, text)
        env = _env(redis_server)
        if backend == "redis":
            (first,) = run_workers(cfg, 1, {"turns": [turn1]}, env)
            (second,) = run_workers(cfg, 1, {"turns": [turn2, other]}, env)
            models = first["models"] + second["models"]
        else:
            (only,) = run_workers(cfg, 1, {"turns": [turn1, turn2, other]}, env)
            models = only["models"]
        assert models == ["small", "small", "big"]
        assert server.stats["small"].requests == 2 and server.stats["big"].requests == 1


async def test_two_processes_routing_a_new_conversation_at_once_agree(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tomllib

    monkeypatch.setenv("REDIS_URL", redis_server.url)
    monkeypatch.setenv("MOCK_KEY", "sk-test-redis-cache")
    prefix = _prefix()
    with MockLLMServer.run_in_thread({"small": MockModel(), "big": MockModel()}) as server:
        cfg = tomllib.loads(_routed(server.base_url) + state_toml("redis", prefix))
        async with tw.Orchestrator.from_config(cfg) as a, tw.Orchestrator.from_config(cfg) as b:
            for i in range(5):
                md = {"conversation_id": f"race{i}"}
                ra, rb = await asyncio.gather(a.run("hello there", metadata=md), b.run(COMPLEX, metadata=md))
                assert ra.deployment == rb.deployment
                # Later turns stay there, in both.
                again = await b.run("hello there", metadata=md)
                assert again.deployment == ra.deployment
                assert "sticky" in again.route.reason


# -- Redis unavailable ----------------------------------------------------------------


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    yield server
    server.stop()


def _failing_config(base_url: str, *, cache: str, sticky: str) -> dict[str, Any]:
    import tomllib

    text = (
        _routed(base_url)
        + "\n[cache]\nttl_s = 600\n\n[telemetry]\nprometheus = true\n\n"
        + state_toml(
            "redis",
            "tfc:",
            f'retry_s = 0.2\n\n[state.on_error]\ncache = "{cache}"\nsticky = "{sticky}"\n',
        ).replace("timeout_s = 2.0", "timeout_s = 0.2")
    )
    return tomllib.loads(text)


def _scrape(orch: tw.Orchestrator) -> str:
    from prometheus_client import generate_latest

    return bytes(generate_latest(orch.prometheus_registry)).decode()


async def _timed(coro: Any) -> Any:
    t0 = time.monotonic()
    try:
        return await coro
    finally:
        took = time.monotonic() - t0
        assert took < 1.5, f"a request waited {took:.2f} s on an unavailable Redis"


async def test_redis_down_cache_and_sticky_open_serve_from_this_process_and_resume(
    own_redis: RedisServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("REDIS_URL", own_redis.url)
    monkeypatch.setenv("MOCK_KEY", "sk-test-redis-cache")
    caplog.set_level(logging.WARNING, logger="tierwise.state")
    with MockLLMServer.run_in_thread({"small": MockModel(), "big": MockModel()}) as server:
        async with tw.Orchestrator.from_config(
            _failing_config(server.base_url, cache="open", sticky="open")
        ) as orch:
            state = orch.state
            assert state is not None
            assert not (await orch.run("warm up")).cached
            own_redis.stop()
            md = {"conversation_id": "outage"}
            first = await _timed(orch.run("hello there", metadata=md))
            second = await _timed(orch.run("hello there", metadata=md))
            # The local cache answered the repeat; the local memory kept the route.
            assert not first.cached and second.cached
            turn = await _timed(orch.run(COMPLEX, metadata=md))
            assert turn.deployment == "small" and "sticky" in turn.route.reason
            assert {"cache", "sticky"} <= state.degraded
            stats = state.stats()
            assert stats["fallbacks"]["cache"] >= 2 and stats["fallbacks"]["sticky"] >= 1
            scrape = _scrape(orch)
            assert 'tierwise_state_degraded{concern="cache"} 1.0' in scrape
            assert 'tierwise_state_degraded{concern="sticky"} 1.0' in scrape
            assert any("cache falls back" in r.getMessage() for r in caplog.records)
            own_redis.start()
            for _ in range(60):
                with contextlib.suppress(Exception):
                    await orch.run("after")
                if state.shared:
                    break
                await asyncio.sleep(0.05)
            assert state.shared and state.degraded == frozenset()
            # Shared again: a new answer goes to Redis, where another process finds it.
            assert not (await orch.run("fresh")).cached
            assert await state.flush()
            calls = server.stats["small"].requests
            async with tw.Orchestrator.from_config(
                _failing_config(server.base_url, cache="open", sticky="open")
            ) as other:
                assert (await other.run("fresh")).cached
            assert server.stats["small"].requests == calls


async def test_redis_down_cache_and_sticky_closed_refuse(
    own_redis: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REDIS_URL", own_redis.url)
    monkeypatch.setenv("MOCK_KEY", "sk-test-redis-cache")
    with MockLLMServer.run_in_thread({"small": MockModel(), "big": MockModel()}) as server:
        for cache, sticky in (("closed", "open"), ("open", "closed")):
            cfg = _failing_config(server.base_url, cache=cache, sticky=sticky)
            if own_redis.proc is None:
                own_redis.start()
            async with tw.Orchestrator.from_config(cfg) as orch:
                assert orch.state is not None
                await orch.run("warm up", metadata={"conversation_id": "w"})
                own_redis.stop()
                before = server.stats["small"].requests
                with pytest.raises(StateUnavailable):
                    await _timed(orch.run("hello there", metadata={"conversation_id": "x"}))
                # Nothing was sent.
                assert server.stats["small"].requests == before
                concern = "cache" if cache == "closed" else "sticky"
                assert orch.state.stats()["refused"][concern] >= 1
                assert concern not in orch.state.degraded


async def test_redis_slower_than_the_timeout_never_holds_a_request(
    own_redis: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from _redis_helpers import SlowProxy

    proxy = SlowProxy(own_redis.port)
    await proxy.start()
    try:
        monkeypatch.setenv("REDIS_URL", proxy.url)
        monkeypatch.setenv("MOCK_KEY", "sk-test-redis-cache")
        with MockLLMServer.run_in_thread({"small": MockModel(), "big": MockModel()}) as server:
            cfg = _failing_config(server.base_url, cache="open", sticky="open")
            async with tw.Orchestrator.from_config(cfg) as orch:
                assert orch.state is not None
                await orch.run("warm up", metadata={"conversation_id": "slow"})
                proxy.delay = 3.0
                # A conversation this process knows asks Redis nothing; a new one
                # waits timeout_s at most, then routes and remembers locally.
                for prompt, conversation in (("hello there", "new"), (COMPLEX, "new"), (COMPLEX, "slow")):
                    resp = await _timed(orch.run(prompt, metadata={"conversation_id": conversation}))
                    assert resp.deployment == "small"
                assert {"cache", "sticky"} <= orch.state.degraded
    finally:
        await proxy.aclose()


# -- streams, across processes ---------------------------------------------------------


async def test_identical_streams_in_two_processes_reach_the_provider_once(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tomllib

    monkeypatch.setenv("REDIS_URL", redis_server.url)
    monkeypatch.setenv("MOCK_KEY", "sk-test-redis-cache")
    mock = MockModel(output_tokens=8, latency_ms=500)
    with MockLLMServer.run_in_thread({"small": mock}) as server:
        cfg = tomllib.loads(_models(server.base_url) + "\n[cache]\n\n" + state_toml("redis", _prefix()))
        async with tw.Orchestrator.from_config(cfg) as a, tw.Orchestrator.from_config(cfg) as b:

            async def answer(orch: tw.Orchestrator) -> tw.Response:
                async for event in orch.stream("stream me"):
                    if isinstance(event, tw.Done):
                        return event.response
                raise AssertionError("no Done event")

            ra, rb = await asyncio.gather(answer(a), answer(b))
        assert server.stats["small"].requests == 1
        assert ra.text == rb.text and sorted([ra.cached, rb.cached]) == [False, True]


# -- configuration ----------------------------------------------------------------------


def test_the_new_keys_are_validated_and_built(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tomllib

    from tierwise.config import load_config
    from tierwise.errors import ConfigError
    from tierwise.state.redis import RedisCache, RedisSticky

    monkeypatch.setenv("REDIS_URL", redis_server.url)
    monkeypatch.setenv("MOCK_KEY", "sk-test-redis-cache")
    base = _routed("http://127.0.0.1:9")
    text = (
        base
        + "\n[cache]\nttl_s = 60\nmax_entries = 7\nmax_entry_bytes = 5000\nlock_s = 2.5\n\n"
        + state_toml(
            "redis",
            _prefix(),
            'sticky_ttl_s = 120\n\n[state.on_error]\ncache = "closed"\nsticky = "closed"\n',
        )
    )
    orch = tw.Orchestrator.from_config(tomllib.loads(text))
    cache = orch.executor.cache
    assert isinstance(cache, RedisCache)
    assert (cache.ttl_s, cache.max_entries, cache.max_entry_bytes, cache.lock_s) == (60.0, 7, 5000, 2.5)
    assert cache.fail_open is False
    sticky = orch.executor.sticky
    assert isinstance(sticky, RedisSticky) and sticky.ttl_s == 120.0 and sticky.fail_open is False
    assert orch.state is not None and orch.state.on_error["cache"] == "closed"
    asyncio.run(orch.aclose())
    for bad, field in (
        ('[state.on_error]\ncache = "maybe"\n', "state.on_error.cache"),
        ('[state.on_error]\nsticky = "shut"\n', "state.on_error.sticky"),
        ("sticky_ttl_s = 0\n", "state.sticky_ttl_s"),
    ):
        with pytest.raises(ConfigError) as info:
            load_config(tomllib.loads(base + state_toml("redis", "x:", bad)))
        assert field in str(info.value)
    for bad, field in (("lock_s = 0\n", "cache.lock_s"), ("max_entry_bytes = -1\n", "cache.max_entry_bytes")):
        with pytest.raises(ConfigError) as info:
            load_config(tomllib.loads(base + "\n[cache]\n" + bad))
        assert field in str(info.value)
    with pytest.raises(ConfigError, match=r"state\.on_error"):
        RedisState(redis_server.url, on_error={"sticky": "sometimes"})  # type: ignore[dict-item]


async def test_an_orchestrator_built_in_code_shares_its_memory_cache_and_sticky_routes(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tierwise.execution.cache import CoalescingCache, MemoryCache, SQLiteCache
    from tierwise.execution.deployment import Deployment
    from tierwise.state import StickyStore
    from tierwise.state.redis import RedisCache, RedisSticky

    monkeypatch.setenv("MOCK_KEY", "sk-test-redis-cache")
    with MockLLMServer.run_in_thread({"small": MockModel()}) as server:
        provider = tw.providers.OpenAI(api_key="sk-test", base_url=f"{server.base_url}/v1")
        deployments = [Deployment("small", provider, "small")]
        state = RedisState(redis_server.url, key_prefix=_prefix())
        orch = tw.Orchestrator(deployments, cache=MemoryCache(ttl_s=90.0, max_entries=5), state=state)
        cache = orch.executor.cache
        assert isinstance(cache, RedisCache) and (cache.ttl_s, cache.max_entries) == (90.0, 5)
        assert isinstance(orch.executor.sticky, RedisSticky)
        # The protocols they implement (what the executor and routers rely on).
        assert isinstance(cache, CoalescingCache) and isinstance(orch.executor.sticky, StickyStore)
        assert not isinstance(MemoryCache(), CoalescingCache)
        async with orch:
            await orch.run("hello")
            assert (await orch.run("hello")).cached
        assert server.stats["small"].requests == 1
    # A cache chosen for its own reasons stays as given.
    other = RedisState(redis_server.url, key_prefix=_prefix())
    sqlite = SQLiteCache(":memory:")
    assert other.bind_cache(sqlite) is sqlite
    await other.aclose()
