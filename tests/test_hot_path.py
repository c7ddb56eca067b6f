"""The request hot path keeps its behaviour while doing less work per call.

Covers what the overhead work (benchmarks/overhead.py) changed: providers reuse a
parsed URL and prebuilt headers (and bake the headers into a client they create
themselves), read response headers once, ``Provider(http=...)`` /
``make_http_client`` pick the transport, and ``RunContext`` builds its seeded
``Random`` only when a strategy asks for it. No timing assertions here: the
benchmark measures; these tests pin the behaviour.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import random
from typing import Any

import httpx
import pytest

from tierwise.catalog import ModelSpec
from tierwise.execution.executor import Deployment, Executor
from tierwise.orchestrator import Orchestrator
from tierwise.providers.base import make_http_client
from tierwise.providers.gemini import Gemini
from tierwise.providers.openai import OpenAI
from tierwise.strategies.base import RunContext, Strategy
from tierwise.testing import FakeProvider, MockLLMServer, MockModel
from tierwise.types import Request, Response

KEY = "sk-hot-path-test-0123456789"
HAS_AIOHTTP = importlib.util.find_spec("httpx_aiohttp") is not None


def _reply(model: str = "m", text: str = "hi") -> dict[str, Any]:
    return {
        "id": "x",
        "object": "chat.completion",
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1},
    }


# ----------------------------------------------------------------------------- providers


async def test_own_client_sends_the_same_headers_on_every_request() -> None:
    async with MockLLMServer({"m": MockModel(reply="ok")}) as server:
        async with OpenAI(api_key=KEY, base_url=server.base_url + "/v1", headers={"x-team": "a"}) as p:
            for _ in range(3):
                assert (await p.complete("m", Request.from_prompt("hi"))).text == "ok"
            streamed = [e async for e in p.stream("m", Request.from_prompt("hi"))]
        assert streamed[-1].response.text == "ok"  # type: ignore[attr-defined]
        assert len(server.requests) == 4
        for req in server.requests:
            assert req.headers["authorization"] == f"Bearer {KEY}"
            assert req.headers["content-type"] == "application/json"
            assert req.headers["x-team"] == "a"
            assert req.path == "/v1/chat/completions"


async def test_a_shared_client_gets_the_headers_per_request_and_keeps_its_own() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=_reply())

    shared = httpx.AsyncClient(transport=httpx.MockTransport(handler), headers={"x-app": "shared"})
    async with shared:
        p = OpenAI(api_key=KEY, base_url="https://gw.example/v1", http_client=shared)
        await p.complete("m", Request.from_prompt("one"))
        await p.complete("m", Request.from_prompt("two"))
        # The provider never changes a client it was given.
        assert "authorization" not in shared.headers
    for request in seen:
        assert request.headers["authorization"] == f"Bearer {KEY}"
        assert request.headers["x-app"] == "shared"
        assert str(request.url) == "https://gw.example/v1/chat/completions"
    assert [json.loads(r.content)["messages"][0]["content"] for r in seen] == ["one", "two"]


async def test_per_model_urls_are_each_right_when_cached() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        body = {
            "candidates": [{"content": {"parts": [{"text": "ok"}], "role": "model"}, "finishReason": "STOP"}],
            "usageMetadata": {"promptTokenCount": 1, "candidatesTokenCount": 1},
        }
        return httpx.Response(200, json=body)

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        g = Gemini(api_key="g-key", base_url="https://g.example/v1beta", http_client=client)
        for model in ("gemini-a", "gemini-b", "gemini-a"):
            await g.complete(model, Request.from_prompt("hi"))
    assert seen == [
        "https://g.example/v1beta/models/gemini-a:generateContent",
        "https://g.example/v1beta/models/gemini-b:generateContent",
        "https://g.example/v1beta/models/gemini-a:generateContent",
    ]


async def test_response_headers_are_read_like_httpx_get() -> None:
    """Repeated headers join with ", " (as ``httpx.Headers.get`` does) and any case works."""

    def handler(request: httpx.Request) -> httpx.Response:
        headers = [
            ("X-Request-Id", "req-1"),
            ("x-request-id", "req-2"),
            ("X-RateLimit-Limit-Requests", "500"),
            ("x-ratelimit-remaining-requests", "499"),
            ("x-ratelimit-reset-requests", "120ms"),
            ("x-ratelimit-remaining-tokens", "9000"),
        ]
        return httpx.Response(200, headers=headers, json=_reply())

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        p = OpenAI(api_key=KEY, base_url="https://gw.example/v1", http_client=client)
        resp = await p.complete("m", Request.from_prompt("hi"))
    assert resp.request_id == "req-1, req-2"
    assert resp.rate_limits is not None
    assert resp.rate_limits.requests_limit == 500
    assert resp.rate_limits.requests_remaining == 499
    assert resp.rate_limits.requests_reset_s == pytest.approx(0.12)
    assert resp.rate_limits.tokens_remaining == 9000


async def test_a_provider_rebuilds_its_client_after_aclose() -> None:
    async with MockLLMServer({"m": MockModel(reply="ok")}) as server:
        p = OpenAI(api_key=KEY, base_url=server.base_url + "/v1")
        assert (await p.complete("m", Request.from_prompt("a"))).text == "ok"
        await p.aclose()
        assert (await p.complete("m", Request.from_prompt("b"))).text == "ok"
        await p.aclose()
        assert all(r.headers["authorization"] == f"Bearer {KEY}" for r in server.requests)


# ----------------------------------------------------------------------------- http kinds


async def test_make_http_client_httpx_carries_limits_timeout_and_headers() -> None:
    client = make_http_client(
        "httpx", timeout=httpx.Timeout(7.0), limits=httpx.Limits(max_connections=3), headers={"x-a": "1"}
    )
    async with client:
        assert client.headers["x-a"] == "1"
        assert client.timeout == httpx.Timeout(7.0)


def _count_pool_retries(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many times httpcore sent a request round its pool again after a
    ``ConnectionNotAvailable`` (it clears the request's connection each time)."""
    from httpcore._async.connection_pool import AsyncPoolRequest

    retries = [0]
    real = AsyncPoolRequest.clear_connection

    def clear_connection(self: AsyncPoolRequest) -> None:
        retries[0] += 1
        real(self)

    monkeypatch.setattr(AsyncPoolRequest, "clear_connection", clear_connection)
    return retries


async def test_requests_reaching_the_pool_together_get_one_idle_connection_each(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # httpcore alone gives the first idle connection to every request that enters
    # the pool before the previous one has started on it; all but one then fail
    # over with ConnectionNotAvailable and go round again (CPU the Redis backend
    # paid, since one pipelined reply admits several requests in one loop turn).
    retries = _count_pool_retries(monkeypatch)
    async with MockLLMServer({"m": MockModel(reply="ok", latency_ms=20)}) as server:
        client = make_http_client("httpx")
        async with client:
            url = server.base_url + "/v1/chat/completions"
            body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
            # Four keep-alive connections, then rounds of four requests started in one loop turn.
            for _ in range(5):
                replies = await asyncio.gather(*(client.post(url, json=body) for _ in range(4)))
                assert [r.status_code for r in replies] == [200] * 4
            pool = client._transport._pool  # type: ignore[attr-defined]
            assert len(pool.connections) == 4
    assert len(server.requests) == 20
    assert retries[0] == 0


async def test_the_pool_keeps_its_limits_while_handing_connections_out_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # max_connections still bounds the pool (the rest wait their turn) and
    # connections beyond max_keepalive_connections are closed once idle.
    retries = _count_pool_retries(monkeypatch)
    async with MockLLMServer({"m": MockModel(reply="ok", latency_ms=10)}) as server:
        client = make_http_client(
            "httpx", limits=httpx.Limits(max_connections=2, max_keepalive_connections=1)
        )
        async with client:
            pool = client._transport._pool  # type: ignore[attr-defined]
            url = server.base_url + "/v1/chat/completions"
            body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
            most = 0

            async def one() -> int:
                nonlocal most
                response = await client.post(url, json=body)
                most = max(most, len(pool.connections))
                return response.status_code

            assert await asyncio.gather(*(one() for _ in range(8))) == [200] * 8
            assert most <= 2
            assert len(pool.connections) <= 1
    assert len(server.requests) == 8
    assert retries[0] == 0


async def test_a_request_cancelled_while_waiting_for_the_pool_leaves_its_connection_free() -> None:
    # One connection: the second request waits for it and is handed it when the
    # first one's response closes; cancelled then (before it starts on it), the
    # connection must go to the next request, not stay taken.
    async with MockLLMServer({"m": MockModel(reply="ok", latency_ms=30)}) as server:
        client = make_http_client("httpx", limits=httpx.Limits(max_connections=1))
        async with client:
            pool = client._transport._pool  # type: ignore[attr-defined]
            url = server.base_url + "/v1/chat/completions"
            body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
            first = asyncio.create_task(client.post(url, json=body))
            await asyncio.sleep(0.01)
            second = asyncio.create_task(client.post(url, json=body))
            assert (await first).status_code == 200
            second.cancel()
            with pytest.raises(asyncio.CancelledError):
                await second
            third = await asyncio.wait_for(client.post(url, json=body), 5.0)
            assert third.status_code == 200
            assert len(pool.connections) == 1


def test_the_pool_is_changed_only_on_the_httpcore_release_it_mirrors(monkeypatch: pytest.MonkeyPatch) -> None:
    import httpcore

    from tierwise.providers._pool import _HandOutOncePool

    plain = make_http_client("httpx")
    assert type(plain._transport._pool) is _HandOutOncePool  # type: ignore[attr-defined]
    # another httpcore release: its private assignment pass may differ, so it is left alone
    monkeypatch.setattr(httpcore, "__version__", "1.1.0")
    other = make_http_client("httpx")
    assert type(other._transport._pool) is httpcore.AsyncConnectionPool  # type: ignore[attr-defined]


def test_unknown_http_kind_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown http client kind 'curl'"):
        make_http_client("curl")
    with pytest.raises(ValueError, match="httpx, aiohttp"):
        OpenAI(api_key=KEY, base_url="https://x.example/v1", http="curl")


def test_aiohttp_without_the_fast_extra_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec

    def find_spec(name: str, *args: Any, **kwargs: Any) -> Any:
        return None if name == "httpx_aiohttp" else real(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    with pytest.raises(ImportError, match=r'pip install "tierwise\[fast\]"'):
        make_http_client("aiohttp")
    # Checked when the provider is built, not at its first request.
    with pytest.raises(ImportError, match=r"tierwise\[fast\]"):
        OpenAI(api_key=KEY, base_url="https://x.example/v1", http="aiohttp")
    # A client passed in is used as it is: no transport choice to check.
    OpenAI(api_key=KEY, base_url="https://x.example/v1", http="aiohttp", http_client=httpx.AsyncClient())


@pytest.mark.skipif(not HAS_AIOHTTP, reason="needs the fast extra (httpx-aiohttp)")
async def test_aiohttp_transport_end_to_end() -> None:
    models = {"m": MockModel(reply="fast", faults=["503"])}
    async with MockLLMServer(models) as server:
        async with OpenAI(api_key=KEY, base_url=server.base_url + "/v1", http="aiohttp") as p:
            from tierwise.errors import ServerError

            with pytest.raises(ServerError):
                await p.complete("m", Request.from_prompt("hi"))
            resp = await p.complete("m", Request.from_prompt("hi"))
            events = [e async for e in p.stream("m", Request.from_prompt("hi"))]
        assert resp.text == "fast"
        assert events[-1].response.text == "fast"  # type: ignore[attr-defined]
        assert server.requests[-1].headers["authorization"] == f"Bearer {KEY}"


# ----------------------------------------------------------------------------- run context


class _Draw(Strategy):
    """Draws one number from ctx.rng and answers with it."""

    kind = "draw"

    async def run(self, request: Request, ctx: RunContext) -> Response:
        value = ctx.rng.random()
        response = await ctx.call("a", request)
        response.text = repr(value)
        return response


class _Outer(Strategy):
    """Calls a nested strategy: its child context must share this rng."""

    kind = "outer"

    def __init__(self, inner: Strategy) -> None:
        super().__init__()
        self.inner = inner

    async def run(self, request: Request, ctx: RunContext) -> Response:
        first = ctx.rng.random()
        response = await ctx.call(self.inner, request)
        response.text = f"{first!r} {response.text}"
        return response


def test_run_context_rng_is_lazy_seeded_and_shared_with_children() -> None:
    executor = Executor({"a": Deployment("a", FakeProvider(), "m")})
    ctx = RunContext(executor, path="p", seed=42)
    child = ctx.child("x")
    grandchild = child.child("y")
    assert ctx._rng.rng is None  # nothing built until asked
    assert grandchild.rng is ctx.rng is child.rng
    expected = random.Random(42)
    assert [ctx.rng.random(), child.rng.random()] == [expected.random(), expected.random()]
    # Defaults unchanged: seed 0, or the Random given.
    assert RunContext(executor).rng.random() == random.Random(0).random()
    given = random.Random(7)
    assert RunContext(executor, rng=given).rng is given
    ctx.rng = given
    assert ctx.rng is given


async def test_seeded_orchestrators_draw_the_same_per_request_numbers() -> None:
    def build() -> Orchestrator:
        dep = Deployment("a", FakeProvider(), "m", spec=ModelSpec("m", "fake", input=1.0, output=1.0))
        draw = _Draw(name="draw")
        return Orchestrator([dep], strategies={"draw": draw, "outer": _Outer(_Draw(name="inner"))}, seed=1234)

    one, two = build(), build()
    texts_one = [(await one.run("q", "draw")).text for _ in range(3)]
    texts_one += [(await one.run("q", "outer")).text]
    texts_two = [(await two.run("q", "draw")).text for _ in range(3)]
    texts_two += [(await two.run("q", "outer")).text]
    assert texts_one == texts_two
    assert len(set(texts_one[:3])) == 3  # a fresh stream per request
    # Same per-request seeds as drawing them eagerly: Random(seed-rng.getrandbits(64)).
    seeds = random.Random(1234)
    expected = [repr(random.Random(seeds.getrandbits(64)).random()) for _ in range(3)]
    assert texts_one[:3] == expected
    rng = random.Random(seeds.getrandbits(64))
    assert texts_one[3] == f"{rng.random()!r} {rng.random()!r}"  # the inner draw continues the stream


def test_a_string_prompt_builds_the_same_request_as_from_prompt() -> None:
    orch = Orchestrator([Deployment("a", FakeProvider(), "m")])
    assert orch._request("hello", None) == Request.from_prompt("hello")
    merged = orch._request("hello", {"team": "x"})
    assert merged == Request.from_prompt("hello", metadata={"team": "x"})
