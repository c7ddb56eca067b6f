"""Shared fixtures.

``serve`` replays a recorded provider reply (status, headers, body or SSE chunks)
two ways: through ``httpx.MockTransport`` (no sockets) and through the real
loopback ``MockLLMServer`` (real sockets, real chunked SSE). Adapter tests take it
so every recorded case runs over both.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

FIXTURES = Path(__file__).parent / "fixtures"


def fixture_bytes(*parts: str) -> bytes:
    return FIXTURES.joinpath(*parts).read_bytes()


def fixture_json(*parts: str) -> Any:
    return json.loads(fixture_bytes(*parts))


@dataclass
class Served:
    """Where a provider should send its request, and what it sent."""

    base_url: str
    client: httpx.AsyncClient
    _bodies: list[bytes] = field(default_factory=list)
    _paths: list[str] = field(default_factory=list)
    _headers: list[dict[str, str]] = field(default_factory=list)

    def last_json(self) -> Any:
        return json.loads(self._bodies[-1])

    @property
    def last_path(self) -> str:
        return self._paths[-1]

    @property
    def last_headers(self) -> dict[str, str]:
        return self._headers[-1]


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
            served: Served

            def handler(req: httpx.Request) -> httpx.Response:
                served._bodies.append(req.content)
                served._paths.append(req.url.raw_path.decode())
                served._headers.append({k.lower(): v for k, v in req.headers.items()})
                if chunks is not None:
                    return httpx.Response(status, headers=hdrs, stream=_Chunks(chunks))
                return httpx.Response(status, headers=hdrs, content=body)

            client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
            stack.push_async_callback(client.aclose)
            served = Served("http://mock.test", client)
            return served

        from tierwise.testing import MockLLMServer

        server = await stack.enter_async_context(MockLLMServer())
        server.replay(status, hdrs, list(chunks) if chunks is not None else [body])
        client = httpx.AsyncClient()
        stack.push_async_callback(client.aclose)
        served = Served(server.base_url, client)

        # Expose what the server received through the same accessors.
        class _View(list[Any]):
            def __init__(self, attr: str) -> None:
                super().__init__()
                self.attr = attr

            def __getitem__(self, i: Any) -> Any:
                rec = server.requests[i]
                if self.attr == "headers":
                    return {k.lower(): v for k, v in rec.headers.items()}
                return getattr(rec, self.attr)

        served._bodies = _View("body")  # type: ignore[assignment]
        served._paths = _View("path")  # type: ignore[assignment]
        served._headers = _View("headers")  # type: ignore[assignment]
        return served

    yield _serve
    await stack.aclose()
