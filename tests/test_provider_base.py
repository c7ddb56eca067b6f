"""The Provider base: one error constructor fed by each adapter's body hook, and the
constructor options every adapter shares. Mocked at the HTTP boundary only."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import httpx
import pytest

from tierwise.errors import (
    AuthenticationError,
    ContentFiltered,
    RateLimitError,
    ServerError,
)
from tierwise.providers.anthropic import Anthropic
from tierwise.providers.base import ErrorInfo, Provider, SSEEvent, StreamParser
from tierwise.providers.gemini import Gemini
from tierwise.providers.openai import OpenAI
from tierwise.types import Request, Response, StreamEvent

KEY = "sk-base-test-0123456789abcdef"


class _Never:
    def feed(self, event: SSEEvent) -> Iterable[StreamEvent]:
        raise AssertionError("not streamed here")

    def finish(self) -> Response:
        raise AssertionError("not streamed here")


class _Wire(Provider):
    """A minimal adapter whose error hook answers what the test scripted; a JSON reply
    ``{"fail": ...}`` is an in-band error."""

    name = "wire"
    default_base_url = "http://wire.test"

    def __init__(self, info: ErrorInfo | Exception, client: httpx.AsyncClient) -> None:
        super().__init__(KEY, None, client)
        self.info = info
        self.seen: list[tuple[Any, int | None, str]] = []

    def _url(self, model: str, stream: bool) -> str:
        return self.base_url + "/call"

    def _build_body(self, model: str, request: Request, stream: bool) -> dict[str, Any]:
        return {"model": model}

    def _parse_response(self, model: str, data: Any) -> Response:
        raise self._inband_error(data["fail"], model)

    def _stream_parser(self, model: str) -> StreamParser:
        return _Never()

    def _error_info(self, data: Any, status: int | None, fallback: str) -> ErrorInfo:
        self.seen.append((data, status, fallback))
        if isinstance(self.info, Exception):
            raise self.info
        return self.info


def _client(status: int, body: Any, headers: dict[str, str] | None = None) -> httpx.AsyncClient:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, content=content, headers=headers or {})

    return httpx.AsyncClient(transport=httpx.MockTransport(handler))


async def _fail(provider: Provider) -> BaseException:
    with pytest.raises(Exception) as info:
        await provider.complete("m", Request.from_prompt("hi"))
    return info.value


async def test_hook_record_reaches_the_one_constructor() -> None:
    info = ErrorInfo(
        f"flagged, key {KEY}",
        "moderation",
        f"c-{KEY}",
        retry_after=7.0,
        retryable=True,
        request_id="body-rid",
        cls=ContentFiltered,
    )
    wire = _Wire(info, _client(403, {"anything": 1}))
    err = await _fail(wire)
    assert type(err) is ContentFiltered
    assert err.status_code == 403 and err.retryable is True and err.retry_after == 7.0
    assert err.request_id == "body-rid" and err.error_type == "moderation"
    assert KEY not in str(err) and KEY not in (err.error_code or "")
    assert wire.seen == [({"anything": 1}, 403, '{"anything": 1}')]


async def test_headers_win_over_the_body_and_status_picks_the_class() -> None:
    headers = {"retry-after": "3", "x-request-id": "hdr-rid", "x-should-retry": "false"}
    info = ErrorInfo("slow down", retry_after=60.0, request_id="body-rid")
    err = await _fail(_Wire(info, _client(429, {"e": 1}, headers)))
    assert type(err) is RateLimitError
    assert err.retry_after == 3.0 and err.request_id == "hdr-rid"
    assert err.retryable is False  # the server's own verdict
    assert err.rate_limits is None


async def test_exhausted_quota_is_final_over_http_and_in_band() -> None:
    quota = ErrorInfo("no credit", "insufficient_quota")
    err = await _fail(_Wire(quota, _client(429, {"e": 1})))
    assert type(err) is RateLimitError and err.retryable is False
    err = await _fail(
        _Wire(ErrorInfo("no credit", "insufficient_quota", status=429), _client(200, {"fail": {}}))
    )
    assert type(err) is RateLimitError and err.retryable is False and err.status_code is None


async def test_in_band_error_is_classified_by_the_status_the_body_states() -> None:
    wire = _Wire(ErrorInfo("", status=401, request_id="rid-1"), _client(200, {"fail": {"why": "x"}}))
    err = await _fail(wire)
    assert type(err) is AuthenticationError
    assert err.status_code is None and err.request_id == "rid-1"
    assert err.message == "error event in stream"  # the hook's empty message gets the fallback
    assert wire.seen == [({"why": "x"}, None, "error event in stream")]


@pytest.mark.parametrize("broken", [KeyError("x"), TypeError("x"), RecursionError()])
async def test_a_hook_that_trips_on_the_body_still_maps_by_status(broken: Exception) -> None:
    err = await _fail(_Wire(broken, _client(503, b'{"odd": [1, 2]}')))
    assert type(err) is ServerError and err.status_code == 503
    assert err.message == '{"odd": [1, 2]}'


async def test_a_body_that_is_not_json_never_reaches_the_hook() -> None:
    wire = _Wire(ErrorInfo("unused"), _client(500, b""))
    err = await _fail(wire)
    assert type(err) is ServerError and err.message == "Internal Server Error"
    assert wire.seen == []


# --------------------------------------------------------------------------- shared options


ADAPTERS: list[type[Provider]] = [OpenAI, Anthropic, Gemini]


@pytest.mark.parametrize("cls", ADAPTERS)
async def test_every_adapter_takes_the_shared_options(cls: type[Provider]) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(500, content=b"{}")

    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    positional = cls(KEY, "http://adapter.test", client, headers={"x-team": "a"}, timeout=5.0)
    assert positional.base_url == "http://adapter.test"
    with pytest.raises(ServerError):
        await positional.complete("m", Request.from_prompt("hi"))
    assert seen[-1].headers["x-team"] == "a"
    assert KEY in " ".join(seen[-1].headers.values())
    owned = cls(api_key=KEY, base_url="http://adapter.test", timeout=5.0, http="httpx")
    assert owned.client.timeout.read == 5.0 and owned.client.timeout.connect == 5.0
    await owned.aclose()
    with pytest.raises(ValueError, match="unknown http client kind"):
        cls(api_key=KEY, http="carrier-pigeon")
    await client.aclose()


async def test_adapter_options_sit_beside_the_shared_ones() -> None:
    anthropic = Anthropic(
        KEY, None, None, default_max_tokens=100, anthropic_version="2099-01-01", timeout=3.0
    )
    assert anthropic.client.timeout.read == 3.0
    assert anthropic.client.headers["anthropic-version"] == "2099-01-01"
    openai = OpenAI(KEY, compat="mistral", headers={"x-a": "b"})
    assert openai.name == "mistral" and openai.client.headers["x-a"] == "b"
    await anthropic.aclose()
    await openai.aclose()
