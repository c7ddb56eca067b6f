"""Shared fixtures.

``serve`` replays a recorded provider reply (status, headers, body or SSE chunks)
two ways: through ``httpx.MockTransport`` (no sockets) and through the real
loopback ``MockLLMServer`` (real sockets, real chunked SSE). Adapter tests take it
so every recorded case runs over both.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from _redis_helpers import RedisServer, SlowProxy

FIXTURES = Path(__file__).parent / "fixtures"


def fixture_bytes(*parts: str) -> bytes:
    return FIXTURES.joinpath(*parts).read_bytes()


def fixture_json(*parts: str) -> Any:
    return json.loads(fixture_bytes(*parts))


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Served:
    """Where a provider should send its request, and what it sent."""

    base_url: str
    client: httpx.AsyncClient
    records: Callable[[], Sequence[Recorded]]

    def last_json(self) -> Any:
        return json.loads(self.records()[-1].body)

    @property
    def last_path(self) -> str:
        return self.records()[-1].path

    @property
    def last_headers(self) -> dict[str, str]:
        return self.records()[-1].headers


class _Chunks(httpx.AsyncByteStream):
    def __init__(self, chunks: Sequence[bytes]) -> None:
        self._chunks = list(chunks)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self._chunks:
            yield chunk


ServeFn = Callable[..., Awaitable[Served]]


@pytest.fixture(params=["transport", "socket"])
async def serve(request: pytest.FixtureRequest) -> AsyncIterator[ServeFn]:
    """``await serve(status, body | chunks=[...], headers={...})`` → ``Served``."""
    mode: str = request.param
    stack = AsyncExitStack()

    async def _serve(
        status: int = 200,
        body: bytes = b"",
        *,
        chunks: Sequence[bytes] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Served:
        hdrs = {"content-type": "text/event-stream" if chunks is not None else "application/json"}
        hdrs.update(headers or {})
        if mode == "transport":
            seen: list[Recorded] = []

            def handler(req: httpx.Request) -> httpx.Response:
                seen.append(
                    Recorded(
                        req.url.raw_path.decode(), {k.lower(): v for k, v in req.headers.items()}, req.content
                    )
                )
                if chunks is not None:
                    return httpx.Response(status, headers=hdrs, stream=_Chunks(chunks))
                return httpx.Response(status, headers=hdrs, content=body)

            client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
            stack.push_async_callback(client.aclose)
            return Served("http://mock.test", client, lambda: seen)

        from tierwise.testing import MockLLMServer

        server = await stack.enter_async_context(MockLLMServer())
        server.replay(status, hdrs, list(chunks) if chunks is not None else [body])
        client = httpx.AsyncClient()
        stack.push_async_callback(client.aclose)
        return Served(
            server.base_url,
            client,
            lambda: [
                Recorded(r.path, {k.lower(): v for k, v in r.headers.items()}, r.body)
                for r in server.requests
            ],
        )

    yield _serve
    await stack.aclose()


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    """A real ``redis-server`` on a free port for one test module (tests needing
    one of their own, to stop and restart it, define a function-scoped one)."""
    server = RedisServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def proxy(redis_server: RedisServer) -> AsyncIterator[SlowProxy]:
    """A ``SlowProxy`` in front of the test's ``redis_server`` (set ``delay`` to hold replies back)."""
    p = SlowProxy(redis_server.port)
    await p.start()
    yield p
    await p.aclose()
