"""Response cache keys, the temperature rule, memory/SQLite caches and SingleFlight."""

from __future__ import annotations

import dataclasses
import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from tierwise._serde import response_to_dict
from tierwise.execution.cache import (
    MemoryCache,
    ResponseCache,
    SingleFlight,
    SQLiteCache,
    cacheable,
    request_key,
)
from tierwise.types import (
    Attempt,
    Message,
    RateLimitInfo,
    Request,
    Response,
    RouteInfo,
    Tool,
    ToolCall,
    Usage,
)


class ManualClock:
    def __init__(self, now: float = 100.0, wall: float = 1_767_225_600.0) -> None:
        self._now = now
        self._wall = wall

    def now(self) -> float:
        return self._now

    def wall(self) -> float:
        return self._wall

    async def sleep(self, seconds: float) -> None:
        self.advance(seconds)
        await anyio.lowlevel.checkpoint()

    def advance(self, seconds: float) -> None:
        self._now += seconds
        self._wall += seconds


async def settle(n: int = 50) -> None:
    for _ in range(n):
        await anyio.lowlevel.checkpoint()


def full_request(**changes: Any) -> Request:
    """A request with every output-affecting field set."""
    base = Request(
        messages=[
            Message("system", "Be terse."),
            Message(
                "user", [{"type": "text", "text": "What is in"}, {"type": "image_url", "image_url": "x"}]
            ),
            Message(
                "assistant",
                None,
                tool_calls=[ToolCall("call_1", "lookup", {"q": "cats", "n": 2})],
            ),
            Message("tool", '{"found": 3}', name="lookup", tool_call_id="call_1"),
        ],
        max_tokens=256,
        temperature=0.0,
        top_p=0.9,
        stop=["END"],
        tools=[Tool("lookup", "Search", {"type": "object", "properties": {"q": {"type": "string"}}})],
        tool_choice="auto",
        parallel_tool_calls=True,
        response_format={"type": "json_object"},
        reasoning_effort="low",
        thinking_budget=1024,
        seed=7,
        user="u-1",
        extra_body={"a": 1, "b": [1, 2]},
        metadata={"team": "search", "tier": "bulk"},
    )
    return dataclasses.replace(base, **changes)


def _msg(i: int, **changes: Any) -> Callable[[Request], Request]:
    def mutate(r: Request) -> Request:
        msgs = list(r.messages)
        msgs[i] = dataclasses.replace(msgs[i], **changes)
        return dataclasses.replace(r, messages=msgs)

    return mutate


def _field(**changes: Any) -> Callable[[Request], Request]:
    return lambda r: dataclasses.replace(r, **changes)


OUTPUT_AFFECTING: dict[str, Callable[[Request], Request]] = {
    "system text": _msg(0, content="Be verbose."),
    "role": _msg(0, role="user"),
    "content part text": _msg(
        1, content=[{"type": "text", "text": "What is on"}, {"type": "image_url", "image_url": "x"}]
    ),
    "content part image": _msg(
        1, content=[{"type": "text", "text": "What is in"}, {"type": "image_url", "image_url": "y"}]
    ),
    "content parts vs string": _msg(1, content="What is in"),
    "tool call args": _msg(2, tool_calls=[ToolCall("call_1", "lookup", {"q": "dogs", "n": 2})]),
    "tool call name": _msg(2, tool_calls=[ToolCall("call_1", "search", {"q": "cats", "n": 2})]),
    "tool call id": _msg(2, tool_calls=[ToolCall("call_2", "lookup", {"q": "cats", "n": 2})]),
    "no tool calls": _msg(2, tool_calls=[]),
    "tool_call_id": _msg(3, tool_call_id="call_9"),
    "message name": _msg(3, name="other"),
    "extra message": lambda r: dataclasses.replace(r, messages=[*r.messages, Message("user", "more")]),
    "max_tokens": _field(max_tokens=257),
    "max_tokens none": _field(max_tokens=None),
    "temperature": _field(temperature=0.5),
    "temperature none": _field(temperature=None),
    "top_p": _field(top_p=0.95),
    "stop": _field(stop=["STOP"]),
    "stop none": _field(stop=None),
    "tools schema": _field(tools=[Tool("lookup", "Search", {"type": "object", "properties": {}})]),
    "tools description": _field(
        tools=[Tool("lookup", "Find", {"type": "object", "properties": {"q": {"type": "string"}}})]
    ),
    "tools none": _field(tools=None),
    "tool_choice": _field(tool_choice={"type": "function", "function": {"name": "lookup"}}),
    "parallel_tool_calls": _field(parallel_tool_calls=False),
    "response_format": _field(
        response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": {}}}
    ),
    "reasoning_effort": _field(reasoning_effort="high"),
    "thinking_budget": _field(thinking_budget=2048),
    "seed": _field(seed=8),
    "extra_body": _field(extra_body={"a": 2, "b": [1, 2]}),
    "extra_body none": _field(extra_body=None),
}


# -- keys ---------------------------------------------------------------------------


def test_key_is_sha256_hex_and_deterministic() -> None:
    key = request_key("opus", full_request())
    assert len(key) == 64
    assert int(key, 16) >= 0
    assert request_key("opus", full_request()) == key


@pytest.mark.parametrize("name", list(OUTPUT_AFFECTING))
def test_key_changes_with_every_output_affecting_field(name: str) -> None:
    base = full_request()
    assert request_key("opus", OUTPUT_AFFECTING[name](base)) != request_key("opus", base)


def test_all_mutations_give_distinct_keys() -> None:
    base = full_request()
    keys = {request_key("opus", mutate(base)) for mutate in OUTPUT_AFFECTING.values()}
    keys.add(request_key("opus", base))
    assert len(keys) == len(OUTPUT_AFFECTING) + 1


def test_key_changes_with_model() -> None:
    assert request_key("opus", full_request()) != request_key("haiku", full_request())


def test_key_ignores_metadata_user_and_transport() -> None:
    base = request_key("opus", full_request())
    assert request_key("opus", full_request(metadata={})) == base
    assert request_key("opus", full_request(metadata={"user": "someone else"})) == base
    assert request_key("opus", full_request(user=None)) == base
    assert request_key("opus", full_request(stream_usage=False)) == base


def test_key_canonical_over_dict_order_and_number_form() -> None:
    base = request_key("opus", full_request())
    assert request_key("opus", full_request(extra_body={"b": [1, 2], "a": 1})) == base
    assert request_key("opus", full_request(temperature=0)) == base  # 0 and 0.0 are the same
    reordered = _msg(
        2,
        tool_calls=[ToolCall("call_1", "lookup", {"n": 2, "q": "cats"}, raw_arguments='{ "n":2,"q":"cats"}')],
    )
    assert request_key("opus", reordered(full_request())) == base


def test_key_stable_across_processes() -> None:
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        "from test_cache import full_request; from tierwise.execution.cache import request_key;"
        "print(request_key('opus', full_request()))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run(
        [sys.executable, "-c", code, str(Path(__file__).parent)],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        timeout=60,
    )
    assert out.stdout.strip() == request_key("opus", full_request())


def test_cacheable_temperature_rule() -> None:
    r = Request.from_prompt("hi")
    assert cacheable(r)  # unset temperature: provider default, cacheable
    assert cacheable(dataclasses.replace(r, temperature=0.0))
    assert not cacheable(dataclasses.replace(r, temperature=0.7))
    assert cacheable(dataclasses.replace(r, temperature=0.7), force=True)
    assert cacheable(dataclasses.replace(r, temperature=0.7, seed=1))  # reproducibility asked


# -- hits ---------------------------------------------------------------------------


def sample_response(text: str = "hello") -> Response:
    return Response(
        text=text,
        model="claude-x",
        provider="anthropic",
        finish_reason="tool_calls",
        usage=Usage(120, 40, 100, 0, 10, None),
        tool_calls=[ToolCall("t1", "lookup", {"q": {"deep": [1]}}, raw_arguments='{"q": {"deep": [1]}}')],
        reasoning="thought",
        raw_finish_reason="tool_use",
        cost_usd=0.0123,
        latency_ms=812.0,
        ttft_ms=200.0,
        route=RouteInfo("router.routes[complex]", "complex", "keyword"),
        attempts=[
            Attempt("opus", "anthropic", "error", 10.0, 0.001, "ServerError", "boom"),
            Attempt("opus", "anthropic", "ok", 800.0, 0.0113),
        ],
        request_id="req_1",
        rate_limits=RateLimitInfo(requests_remaining=3),
        deployment="opus",
        fallback=True,
    )


def assert_hit(hit: Response | None, original: Response) -> None:
    assert hit is not None
    assert hit.cached is True
    assert hit.cost_usd == 0.0
    assert [(a.outcome, a.model, a.cost_usd) for a in hit.attempts] == [("cached", "opus", 0.0)]
    assert hit.rate_limits is None
    assert hit == original  # text, usage, tool calls, finish reason, model, provider, reasoning
    assert hit.tool_calls[0].raw_arguments == original.tool_calls[0].raw_arguments
    for name in ("latency_ms", "ttft_ms", "route", "request_id", "deployment", "fallback"):
        assert getattr(hit, name) == getattr(original, name), name


@pytest.fixture(params=["memory", "sqlite"])
async def cache(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ResponseCache]:
    c: ResponseCache = MemoryCache() if request.param == "memory" else SQLiteCache(tmp_path / "cache.db")
    yield c
    await c.aclose()


async def test_hit_is_marked_and_equal(cache: ResponseCache) -> None:
    assert isinstance(cache, ResponseCache)
    original = sample_response()
    before = response_to_dict(original)
    assert await cache.get("k") is None
    await cache.set("k", original)
    assert response_to_dict(original) == before  # storing does not touch the original
    assert_hit(await cache.get("k"), original)
    assert await cache.get("other") is None


async def test_hits_are_isolated_copies(cache: ResponseCache) -> None:
    original = sample_response()
    await cache.set("k", original)
    original.tool_calls[0].arguments["q"]["deep"].append(2)  # caller mutates after storing
    hit = await cache.get("k")
    assert hit is not None
    assert hit.tool_calls[0].arguments == {"q": {"deep": [1]}}
    hit.text = "changed"
    hit.tool_calls[0].arguments["q"]["deep"].append(3)
    again = await cache.get("k")
    assert again is not None
    assert again.text == "hello"
    assert again.tool_calls[0].arguments == {"q": {"deep": [1]}}


async def test_set_overwrites(cache: ResponseCache) -> None:
    await cache.set("k", sample_response("one"))
    await cache.set("k", sample_response("two"))
    hit = await cache.get("k")
    assert hit is not None
    assert hit.text == "two"


# -- MemoryCache --------------------------------------------------------------------


async def test_memory_lru_eviction_order() -> None:
    cache = MemoryCache(max_entries=3)
    for k in "abc":
        await cache.set(k, sample_response(k))
    assert await cache.get("a") is not None  # a is now most recent
    await cache.set("d", sample_response("d"))  # evicts b, the least recently used
    assert "b" not in cache
    assert [k for k in "acd" if k in cache] == ["a", "c", "d"]
    await cache.set("c", sample_response("c2"))  # overwriting refreshes c
    await cache.set("e", sample_response("e"))  # evicts a
    assert "a" not in cache
    assert len(cache) == 3
    assert {k for k in "cde" if k in cache} == {"c", "d", "e"}


async def test_memory_ttl_with_fake_clock() -> None:
    clock = ManualClock()
    cache = MemoryCache(ttl_s=10.0, clock=clock)
    await cache.set("k", sample_response())
    await cache.set("long", sample_response(), ttl_s=100.0)
    clock.advance(9.9)
    assert await cache.get("k") is not None
    clock.advance(0.1)
    assert await cache.get("k") is None
    assert "k" not in cache  # expired entries are dropped on read
    assert await cache.get("long") is not None
    clock.advance(90.0)
    assert await cache.get("long") is None


async def test_memory_no_ttl_and_zero_ttl() -> None:
    clock = ManualClock()
    cache = MemoryCache(ttl_s=None, clock=clock)
    await cache.set("k", sample_response())
    await cache.set("z", sample_response(), ttl_s=0)
    clock.advance(1e9)
    assert await cache.get("k") is not None
    assert await cache.get("z") is None
    with pytest.raises(ValueError, match="max_entries"):
        MemoryCache(max_entries=0)


# -- SQLiteCache --------------------------------------------------------------------


async def test_sqlite_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    first = SQLiteCache(path)
    await first.set("k", sample_response())
    await first.aclose()
    second = SQLiteCache(str(path))
    try:
        assert_hit(await second.get("k"), sample_response())
    finally:
        await second.aclose()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_sqlite_ttl_uses_wall_clock_across_reopen(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    clock = ManualClock()
    first = SQLiteCache(path, ttl_s=60.0, clock=clock)
    await first.set("k", sample_response())
    await first.set("forever", sample_response(), ttl_s=float("inf"))
    await first.aclose()
    later = ManualClock(now=0.0, wall=clock.wall() + 59.0)  # a new process: monotonic restarted
    second = SQLiteCache(path, ttl_s=60.0, clock=later)
    assert await second.get("k") is not None
    later.advance(1.0)
    assert await second.get("k") is None
    assert await second.get("forever") is not None
    await second.aclose()
    with sqlite3.connect(path) as conn:
        assert [r[0] for r in conn.execute("SELECT key FROM tierwise_responses")] == ["forever"]


async def test_sqlite_unreadable_row_is_a_miss(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    cache = SQLiteCache(path)
    await cache.set("k", sample_response())
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE tierwise_responses SET body = ? WHERE key = 'k'", (json.dumps({"nope": 1}),))
    assert await cache.get("k") is None
    await cache.set("k", sample_response())
    assert await cache.get("k") is not None
    await cache.aclose()


async def test_sqlite_concurrent_use_and_closed_is_noop(tmp_path: Path) -> None:
    cache = SQLiteCache(tmp_path / "c.db")
    results: dict[int, str | None] = {}

    async def worker(i: int) -> None:
        await cache.set(f"k{i}", sample_response(f"r{i}"))
        hit = await cache.get(f"k{i}")
        results[i] = None if hit is None else hit.text

    async with anyio.create_task_group() as tg:
        for i in range(40):
            tg.start_soon(worker, i)
    assert results == {i: f"r{i}" for i in range(40)}
    await cache.aclose()
    assert await cache.get("k1") is None
    await cache.set("k1", sample_response())  # no error during shutdown
    await cache.aclose()


async def test_sqlite_construction_does_no_io(tmp_path: Path) -> None:
    path = tmp_path / "lazy.db"
    cache = SQLiteCache(path)
    assert not path.exists()
    await cache.get("k")
    assert path.exists()
    await cache.aclose()


# -- SingleFlight -------------------------------------------------------------------


async def test_singleflight_coalesces_100_calls_into_one() -> None:
    flight = SingleFlight()
    calls = 0
    gate = anyio.Event()
    results: list[object] = []
    sentinel = object()

    async def fn() -> object:
        nonlocal calls
        calls += 1
        await gate.wait()
        return sentinel

    async def caller() -> None:
        results.append(await flight.do("key", fn))

    async with anyio.create_task_group() as tg:
        for _ in range(100):
            tg.start_soon(caller)
        await settle()
        assert flight.waiting("key") == 99
        gate.set()
    assert calls == 1
    assert len(results) == 100
    assert all(r is sentinel for r in results)
    assert len(flight) == 0
    # Nothing is remembered: the next call runs fn again.
    gate2 = anyio.Event()
    gate2.set()
    gate = gate2
    assert await flight.do("key", fn) is sentinel
    assert calls == 2


async def test_singleflight_distinct_keys_run_separately() -> None:
    flight = SingleFlight()
    seen: list[str] = []

    async def make(k: str) -> str:
        seen.append(k)
        await anyio.lowlevel.checkpoint()
        return k.upper()

    out: dict[str, str] = {}

    async def caller(k: str) -> None:
        out[k] = await flight.do(k, lambda: make(k))

    async with anyio.create_task_group() as tg:
        for k in ("a", "b", "c"):
            tg.start_soon(caller, k)
    assert sorted(seen) == ["a", "b", "c"]
    assert out == {"a": "A", "b": "B", "c": "C"}


async def test_singleflight_exception_reaches_every_waiter() -> None:
    flight = SingleFlight()
    calls = 0
    gate = anyio.Event()

    async def fn() -> str:
        nonlocal calls
        calls += 1
        await gate.wait()
        raise ValueError("provider said no")

    errors: list[BaseException] = []

    async def caller() -> None:
        try:
            await flight.do("k", fn)
        except ValueError as exc:
            errors.append(exc)

    async with anyio.create_task_group() as tg:
        for _ in range(20):
            tg.start_soon(caller)
        await settle()
        gate.set()
    assert calls == 1
    assert len(errors) == 20
    assert all(e is errors[0] for e in errors)
    assert str(errors[0]) == "provider said no"
    assert len(flight) == 0


async def test_singleflight_leader_cancelled_follower_takes_over() -> None:
    flight = SingleFlight()
    calls = 0
    gate = anyio.Event()

    async def fn() -> str:
        nonlocal calls
        calls += 1
        n = calls
        await gate.wait()
        return f"result-{n}"

    leader_scope = anyio.CancelScope()
    leader_out: list[str] = []
    follower_out: list[str] = []

    async def leader() -> None:
        with leader_scope:
            leader_out.append(await flight.do("k", fn))

    async def follower() -> None:
        follower_out.append(await flight.do("k", fn))

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(leader)
            await settle()
            assert calls == 1
            for _ in range(5):
                tg.start_soon(follower)
            await settle()
            assert flight.waiting("k") == 5
            leader_scope.cancel()
            await settle()
            # One follower took over and is now running fn; the others follow it.
            assert calls == 2
            assert flight.waiting("k") == 4
            gate.set()
    assert leader_scope.cancel_called
    assert leader_out == []
    assert follower_out == ["result-2"] * 5
    assert len(flight) == 0


async def test_singleflight_cancelled_follower_does_not_disturb_others() -> None:
    flight = SingleFlight()
    calls = 0
    gate = anyio.Event()

    async def fn() -> str:
        nonlocal calls
        calls += 1
        await gate.wait()
        return "ok"

    out: list[str] = []
    follower_scope = anyio.CancelScope()

    async def caller(scope: anyio.CancelScope | None = None) -> None:
        if scope is None:
            out.append(await flight.do("k", fn))
        else:
            with scope:
                out.append(await flight.do("k", fn))

    async with anyio.create_task_group() as tg:
        tg.start_soon(caller)
        await settle()
        tg.start_soon(caller, follower_scope)
        tg.start_soon(caller)
        await settle()
        assert flight.waiting("k") == 2
        follower_scope.cancel()
        await settle()
        assert flight.waiting("k") == 1
        gate.set()
    assert calls == 1
    assert out == ["ok", "ok"]


async def test_singleflight_lone_leader_cancelled_frees_key() -> None:
    flight = SingleFlight()

    async def fn() -> str:
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    with anyio.move_on_after(0.01):
        await flight.do("k", fn)
    assert len(flight) == 0

    async def quick() -> str:
        return "fresh"

    assert await flight.do("k", quick) == "fresh"
