"""The Provider contract: the one HTTP path and the one error path every adapter shares.

A provider translates: it builds the wire request, sends it with httpx, and turns
the reply (JSON or SSE) into a ``Response`` or stream events. It knows nothing
about retries, pricing, limits or fallbacks; those live in the executor.

Subclasses implement four hooks and inherit ``complete`` / ``stream``:

* ``_url(model, stream)``: the endpoint;
* ``_build_body(model, request, stream)``: the JSON body;
* ``_parse_response(model, data)``: a decoded JSON reply → ``Response``, folded
  through the same state (``StreamAccumulator``) as the adapter's stream parser;
* ``_stream_parser(model)``: an object turning ``SSEEvent`` s into stream events and,
  at the end, the same ``Response`` the non-streamed call would give.

Embeddings (``embed``) use three more hooks, overridden only by adapters whose API
has an embeddings endpoint (``supports_embeddings = True``): ``_embed_url``,
``_embed_body`` and ``_parse_embeddings``; the request goes through the same
client, auth headers, timeouts, error mapping and key redaction as a chat call.

Errors: an adapter overrides one hook, ``_error_info``, reading its error body into
an ``ErrorInfo``; ``_make_error`` is the one place a ``ProviderError`` is built from
the wire (status → class, ``retryable``, ``retry_after``, request id, redaction),
because the retry rules in DESIGN.md are the same for everyone. The helpers live
in private modules (``_http``, ``_accumulate``, ``_normalize``, ``_errors``,
``_sse``) and are re-exported here.
"""

from __future__ import annotations

import json
import os
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import httpx

from .._closing import AsyncClosing
from ..errors import (
    AuthenticationError,
    NotFoundError,
    ProtocolError,
    ProviderConnectionError,
    ProviderError,
    ProviderTimeout,
    RateLimitError,
    excerpt,
    redact,
)
from ..types import Done, Embeddings, Request, Response, StreamEvent, Usage, replay_events
from ._accumulate import StreamAccumulator, StreamParser, cost_amount, make_tool_call, token_count
from ._errors import (
    ErrorInfo,
    classify_error,
    error_envelope,
    parse_duration,
    parse_rate_limit_headers,
    parse_retry_after,
)
from ._http import (
    DEFAULT_LIMITS,
    DEFAULT_TIMEOUT,
    HTTP_CLIENT_KINDS,
    ProviderOptions,
    check_http_kind,
    make_http_client,
)
from ._normalize import check_embeddings, embedding_inputs, embedding_vector, looks_like_sse, normalize
from ._sse import SSEDecoder, SSEEvent

if TYPE_CHECKING:
    from ._batch import BatchWire

__all__ = [
    "DEFAULT_LIMITS",
    "DEFAULT_TIMEOUT",
    "HTTP_CLIENT_KINDS",
    "MALFORMED",
    "ErrorInfo",
    "Provider",
    "ProviderOptions",
    "SSEDecoder",
    "SSEEvent",
    "StreamAccumulator",
    "StreamParser",
    "check_embeddings",
    "classify_error",
    "cost_amount",
    "embedding_vector",
    "make_http_client",
    "make_tool_call",
    "parse_duration",
    "parse_rate_limit_headers",
    "parse_retry_after",
    "token_count",
]

_T = TypeVar("_T")

#: What a reply of the wrong shape raises while being parsed: each becomes a
#: ProtocolError. Overflow (``int(float("inf"))``) and recursion (JSON nested
#: thousands deep) included: a malformed reply never escapes as another type.
MALFORMED = (KeyError, TypeError, IndexError, AttributeError, ValueError, ArithmeticError, RecursionError)

_perf = time.perf_counter


class Provider(AsyncClosing, ABC):
    """Base of every wire-format adapter.

    ``http_client`` lets an application share one connection pool (and its own
    transport, proxies or ``httpx.MockTransport`` in tests); when omitted the
    provider creates one lazily and closes it in ``aclose()``; ``http`` picks that
    client's transport: ``"httpx"`` (default) or ``"aiohttp"`` (the ``fast`` extra,
    see ``make_http_client``). These, ``api_key``/``base_url`` and the keyword options
    ``timeout`` and ``headers`` (``ProviderOptions``) are taken here once for every
    adapter; subclasses add only their own options.

    The API key is held privately, never appears in ``repr``, and is scrubbed from
    every error message.
    """

    #: Short provider name reported in ``Response.provider`` and errors.
    name: str = "provider"
    #: Environment variable read when ``api_key`` is not given.
    api_key_env: ClassVar[str | None] = None
    #: Default base URL of the public API.
    default_base_url: ClassVar[str] = ""
    #: Response headers that carry the provider's request id, first match wins.
    request_id_headers: ClassVar[tuple[str, ...]] = ("x-request-id", "request-id")
    #: Whether the wire format has an embeddings endpoint (the ``_embed_*`` hooks).
    supports_embeddings: ClassVar[bool] = False
    #: Message of an in-band error whose body carries none.
    inband_error_text: ClassVar[str] = "error event in stream"

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str | None = None,
        http_client: httpx.AsyncClient | None = None,
        *,
        timeout: float | httpx.Timeout | None = None,
        headers: Mapping[str, str] | None = None,
        http: str = "httpx",
    ) -> None:
        if http_client is None:
            check_http_kind(http)
        self._http = http
        self._api_key: str | None = api_key if api_key is not None else self._env_api_key()
        self.base_url = (base_url or self.default_base_url).rstrip("/")
        self._client = http_client
        self._owns_client = http_client is None
        self._timeout = (
            timeout
            if isinstance(timeout, httpx.Timeout)
            else httpx.Timeout(timeout, connect=min(10.0, timeout))
            if timeout is not None
            else DEFAULT_TIMEOUT
        )
        self._extra_headers = dict(headers or {})
        self._headers = self._auth_headers() | {"content-type": "application/json"} | self._extra_headers
        # Hot-path caches. httpx would otherwise normalize the header dict and parse the
        # URL string again on every request. The client this provider builds itself
        # carries ``_headers`` as its defaults, so requests through it pass none.
        self._request_headers = httpx.Headers(self._headers)
        self._own_client: httpx.AsyncClient | None = None
        self._urls: dict[str, httpx.URL] = {}

    # -- hooks --------------------------------------------------------------

    def _auth_headers(self) -> dict[str, str]:
        """Headers carrying the key; default is a bearer token."""
        return {"authorization": f"Bearer {self._api_key}"} if self._api_key else {}

    @abstractmethod
    def _url(self, model: str, stream: bool) -> str: ...

    @abstractmethod
    def _build_body(self, model: str, request: Request, stream: bool) -> dict[str, Any]: ...

    @abstractmethod
    def _parse_response(self, model: str, data: Any) -> Response: ...

    @abstractmethod
    def _stream_parser(self, model: str) -> StreamParser: ...

    def _embed_url(self, model: str) -> str:
        """The embeddings endpoint for ``model`` (adapters with ``supports_embeddings``)."""
        raise NotImplementedError

    def _embed_body(self, model: str, texts: list[str]) -> dict[str, Any]:
        """The JSON body embedding ``texts`` (adapters with ``supports_embeddings``)."""
        raise NotImplementedError

    def _parse_embeddings(self, model: str, data: Any, count: int) -> Embeddings:
        """A decoded reply → ``Embeddings`` with exactly ``count`` vectors in input
        order; ``ProtocolError`` (or a ``KeyError``/``TypeError``/``ValueError``, which
        becomes one) when it is malformed."""
        raise NotImplementedError

    def batch_api(self) -> BatchWire | None:
        """This provider's batch API (half-price, asynchronous), or ``None``."""
        return None

    def _env_api_key(self) -> str | None:
        """The key when ``api_key`` is not given: ``api_key_env`` from the environment."""
        env = self.api_key_env
        return os.environ.get(env) if env else None

    def _error_info(self, data: Any, status: int | None, fallback: str) -> ErrorInfo:
        """The one error hook: what a decoded error body says, for an HTTP error
        (``status``) or an in-band error (``status`` is ``None``). ``message`` is
        ``fallback`` when the body has none. The default reads the common
        ``{"error": {"message", "type", "code"}}`` and ``{"error": "text"}`` shapes.
        May raise on a body of an unexpected shape: that body maps as one without
        fields."""
        message, etype, code = error_envelope(data)
        return ErrorInfo(message or fallback, etype, code)

    def _key_hint(self) -> str | None:
        """Where a missing key should come from, named in the error; ``None`` when
        the server needs no key (local vLLM/Ollama rows)."""
        return self.api_key_env

    def _check_key(self, model: str) -> None:
        """Raise before sending when a key is required and missing, naming the env var."""
        hint = None if self._api_key else self._key_hint()
        if hint:
            raise AuthenticationError(
                f"no API key: pass api_key= or set {hint}", provider=self.name, model=model
            )

    # -- public API ---------------------------------------------------------

    @property
    def client(self) -> httpx.AsyncClient:
        client = self._client
        if client is None:
            client = self._client = self._own_client = make_http_client(
                self._http, timeout=self._timeout, limits=DEFAULT_LIMITS, headers=self._headers
            )
        return client

    def _target(self, model: str, stream: bool) -> tuple[httpx.AsyncClient, httpx.URL, httpx.Headers | None]:
        """Client, parsed endpoint URL (cached per URL string) and the per-request
        headers (none when the client already carries them)."""
        return self._client_for(self._url(model, stream))

    def _client_for(self, url: str) -> tuple[httpx.AsyncClient, httpx.URL, httpx.Headers | None]:
        """``_target`` for an explicit URL string."""
        client = self.client
        target = self._urls.get(url)
        if target is None:
            target = httpx.URL(url)
            if len(self._urls) >= 256:  # per-model URLs (Gemini) stay few; bound it anyway
                self._urls.clear()
            self._urls[url] = target
        return client, target, None if client is self._own_client else self._request_headers

    async def complete(self, model: str, request: Request) -> Response:
        """One non-streamed call. Raises a ``ProviderError`` subclass on failure."""
        self._check_key(model)
        start = _perf()
        response, headers = await self._post_json(
            self._target(model, False),
            self._build_body(model, request, False),
            model,
            "reply",
            lambda data: self._parse_response(model, data),
        )
        response.latency_ms = (_perf() - start) * 1000.0
        self._stamp(response, headers)
        normalize(response, model)
        return response

    async def _post_json(
        self,
        target: tuple[httpx.AsyncClient, httpx.URL, httpx.Headers | None],
        body: Any,
        model: str,
        what: str,
        parse: Callable[[Any], _T],
    ) -> tuple[_T, httpx.Headers]:
        """POST ``body`` as JSON and ``parse`` the JSON reply: the one place non-streamed
        calls map transport errors, HTTP errors and malformed replies to typed errors."""
        client, url, headers = target
        content_out = json.dumps(body, separators=(",", ":")).encode()
        try:
            http = await client.post(url, content=content_out, headers=headers)
        except httpx.HTTPError as exc:
            raise self._transport_error(exc, model) from None
        content = http.content
        if http.status_code >= 400:
            raise self._http_error(http.status_code, http.headers, content, model)
        try:
            data = json.loads(content)
        except (ValueError, RecursionError):
            raise self._protocol_error(f"{what} is not valid JSON", content, model) from None
        try:
            return parse(data), http.headers
        except ProviderError as exc:
            raise self._scrubbed(exc) from None
        except MALFORMED as exc:
            raise self._protocol_error(
                f"unexpected {what} shape ({type(exc).__name__}: {exc})", content, model
            ) from None

    def supports_token_counting(self, model: str) -> bool:
        """Whether ``count_tokens`` has an endpoint for ``model`` (the ``_count_*`` hooks)."""
        return False

    async def count_tokens(self, model: str, request: Request) -> int:
        """The exact prompt size of ``request`` on ``model``, counted by the provider.

        Only where the API has a counting endpoint (Anthropic ``count_tokens``, Gemini
        ``countTokens``, OpenAI Responses ``input_tokens``); elsewhere ``NotFoundError``.
        It is one more HTTP request, free at every provider that offers it but not
        free of latency, so nothing calls it unless asked (``exact_token_counts``).
        Errors are the same ``ProviderError`` subclasses as ``complete``.
        """
        if not self.supports_token_counting(model):
            raise NotFoundError(
                f"provider {self.name!r} has no token-counting endpoint for {model!r}",
                provider=self.name,
                model=model,
            )
        self._check_key(model)
        count, _ = await self._post_json(
            self._client_for(self._count_url(model)),
            self._count_body(model, request),
            model,
            "token count reply",
            lambda data: self._parse_count(model, data),
        )
        return count

    def _count_url(self, model: str) -> str:
        raise NotImplementedError

    def _count_body(self, model: str, request: Request) -> dict[str, Any]:
        raise NotImplementedError

    def _parse_count(self, model: str, data: Any) -> int:
        raise NotImplementedError

    def _count_field(self, model: str, data: Any, key: str) -> int:
        """``data[key]`` as a token count; a reply without one is a ``ProtocolError``."""
        value = data.get(key) if isinstance(data, dict) else None
        if type(value) is not int or value < 0:
            if isinstance(data, dict) and data.get("error"):
                raise self._inband_error(data, model)
            raise self._protocol_error(f"token count reply has no {key!r}", json.dumps(data)[:500], model)
        return value

    async def embed(self, model: str, texts: Sequence[str]) -> Embeddings:
        """Embedding vectors for ``texts``, in input order, from ``model``.

        One HTTP request for the whole batch (split large batches yourself: providers
        cap the inputs per request). An empty ``texts`` returns empty ``Embeddings``
        without a call. Raises ``NotFoundError`` when this provider's API has no
        embeddings endpoint (Anthropic), ``ProtocolError`` for a malformed reply
        (wrong vector count, non-numeric values), and the same ``ProviderError``
        subclasses as ``complete`` for HTTP and transport failures.
        """
        if not self.supports_embeddings:
            raise NotFoundError(
                f"provider {self.name!r} has no embeddings endpoint; "
                "embed with an OpenAI-compatible or Gemini deployment",
                provider=self.name,
                model=model,
            )
        batch = embedding_inputs(texts)
        if not batch:
            return Embeddings([], model, self.name, Usage())
        self._check_key(model)
        start = _perf()
        result, headers = await self._post_json(
            self._client_for(self._embed_url(model)),
            self._embed_body(model, batch),
            model,
            "embeddings reply",
            lambda data: self._parse_embeddings(model, data, len(batch)),
        )
        result.latency_ms = (_perf() - start) * 1000.0
        if result.request_id is None:
            result.request_id = self._scrub(self._header_request_id(headers))
        return result

    async def stream(self, model: str, request: Request) -> AsyncIterator[StreamEvent]:
        """Stream the reply as ``TextDelta`` / ``ReasoningDelta`` / ``ToolCallDelta``
        events, ending with ``Done(response)`` holding the accumulated ``Response``.

        In-band error events raise the mapped ``ProviderError``; a stream that ends
        before its final event raises ``ProtocolError``.
        """
        self._check_key(model)
        body = json.dumps(self._build_body(model, request, True), separators=(",", ":")).encode()
        parser = self._stream_parser(model)
        client, url, req_headers = self._target(model, True)
        start = _perf()
        ttft: float | None = None
        try:
            async with client.stream("POST", url, content=body, headers=req_headers) as http:
                if http.status_code >= 400:
                    content = await http.aread()
                    raise self._http_error(http.status_code, http.headers, content, model)
                headers = http.headers
                ctype = headers.get("content-type", "")
                if "json" in ctype and "event-stream" not in ctype:
                    # A server that ignored ``stream: true`` (LiteLLM's /v1/messages with
                    # mock models does this): a complete JSON reply, not a truncated stream.
                    content = await http.aread()
                    if not looks_like_sse(content):
                        whole = self._whole_reply(content, model)
                        whole.latency_ms = whole.ttft_ms = (_perf() - start) * 1000.0
                        self._stamp(whole, headers)
                        normalize(whole, model)
                        for event in replay_events(whole):
                            yield event
                        yield Done(whole)
                        return
                    # Events mislabelled as JSON (or an empty body): read as the stream
                    # they are; ``aiter_bytes`` replays the body already read.
                decoder = SSEDecoder()
                async for chunk in http.aiter_bytes():
                    for sse in decoder.feed(chunk):
                        for event in self._feed(parser, sse, model):
                            if ttft is None:
                                ttft = (_perf() - start) * 1000.0
                            yield event
                for sse in decoder.close():
                    for event in self._feed(parser, sse, model):
                        if ttft is None:
                            ttft = (_perf() - start) * 1000.0
                        yield event
        except httpx.HTTPError as exc:
            raise self._transport_error(exc, model) from None
        try:
            response = parser.finish()
        except ProviderError as exc:
            raise self._scrubbed(exc) from None
        except MALFORMED as exc:
            raise self._protocol_error(f"unexpected stream shape ({type(exc).__name__})", "", model) from None
        response.latency_ms = (_perf() - start) * 1000.0
        response.ttft_ms = ttft
        self._stamp(response, headers)
        normalize(response, model)
        yield Done(response)

    def _whole_reply(self, content: bytes, model: str) -> Response:
        """A JSON body answering a stream request, parsed as the reply it is; one that
        does not parse is a non-retryable ``ProtocolError`` (sending the same request
        again gets the same JSON)."""
        try:
            return self._parse_whole(model, json.loads(content))
        except ProviderError as exc:
            if not isinstance(exc, ProtocolError):
                # An error object (in-band error in a JSON body) keeps its type.
                raise self._scrubbed(exc) from None
            detail = redact(exc.message, (self._api_key,))
        except MALFORMED:
            detail = excerpt(content, (self._api_key,))
        raise ProtocolError(
            f"the server answered a stream request with JSON that is not a reply: {detail}",
            provider=self.name,
            model=model,
            retryable=False,
        )

    def _parse_whole(self, model: str, data: Any) -> Response:
        """A decoded JSON body answering a *stream* request → ``Response``: the
        non-streamed parser, except where the wire format defines another JSON shape
        for streams (Gemini's ``streamGenerateContent`` without ``alt=sse`` answers
        one JSON array of the chunks it would have sent as events)."""
        return self._parse_response(model, data)

    async def aclose(self) -> None:
        """Close the connection pool if this provider created it."""
        if self._owns_client and self._client is not None:
            await self._client.aclose()
            self._client = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, base_url={self.base_url!r})"

    # -- shared helpers for subclasses ---------------------------------------

    def _feed(self, parser: StreamParser, sse: SSEEvent, model: str) -> Iterable[StreamEvent]:
        try:
            return parser.feed(sse)
        except ProviderError as exc:
            raise self._scrubbed(exc) from None
        except MALFORMED as exc:
            raise self._protocol_error(
                f"unexpected stream event shape ({type(exc).__name__}: {exc})", sse.data, model
            ) from None

    def _stamp(self, response: Response, headers: httpx.Headers) -> None:
        # One pass into a plain dict: each httpx ``Headers.get`` scans and decodes every
        # header, and up to nine names are looked up here. ``items()`` joins repeated
        # names with ", " exactly as ``get`` does.
        h: Mapping[str, str] = dict(headers.items()) if isinstance(headers, httpx.Headers) else headers
        rid = next((v for v in map(h.get, self.request_id_headers) if v), None)
        if rid:
            response.request_id = self._scrub(rid)
        response.rate_limits = parse_rate_limit_headers(h)
        # A gateway that prices the call itself (LiteLLM proxy) says so in a header;
        # like OpenRouter's usage.cost, the provider's own figure wins.
        reported = h.get("x-litellm-response-cost")
        if reported is not None and response.usage.reported_cost_usd is None:
            try:
                response.usage.reported_cost_usd = cost_amount(float(reported))
            except ValueError:
                pass

    def loads(self, data: str | bytes, model: str) -> Any:
        """``json.loads`` that raises ``ProtocolError`` with a short excerpt."""
        try:
            return json.loads(data)
        except (ValueError, RecursionError):
            raise self._protocol_error("invalid JSON in reply", data, model) from None

    def _protocol_error(self, what: str, data: str | bytes, model: str) -> ProtocolError:
        # ``what`` may quote the wire too (an exception's text about a field's value).
        what = redact(what, (self._api_key,))
        return ProtocolError(
            f"{what}: {excerpt(data, (self._api_key,))}" if data else what,
            provider=self.name,
            model=model,
        )

    def _transport_error(self, exc: httpx.HTTPError, model: str) -> ProviderError:
        detail = redact(f"{type(exc).__name__}: {exc}", (self._api_key,))
        if isinstance(exc, httpx.TimeoutException):
            return ProviderTimeout(f"timed out ({detail})", provider=self.name, model=model)
        if isinstance(exc, httpx.RemoteProtocolError):
            # The peer closed mid-reply (a truncated body or stream).
            return ProtocolError(f"connection closed mid-reply ({detail})", provider=self.name, model=model)
        return ProviderConnectionError(f"connection failed ({detail})", provider=self.name, model=model)

    def _http_error(self, status: int, headers: httpx.Headers, content: bytes, model: str) -> ProviderError:
        """The typed error for an HTTP error reply. Never raises: an error body of
        any shape (nested thousands deep, numbers that overflow) still maps."""
        fallback = excerpt(content, (self._api_key,)) if content else httpx.codes.get_reason_phrase(status)
        try:
            data: Any = json.loads(content) if content else None
        except (ValueError, RecursionError):
            data = None
        info = self._read_error(data, status, fallback)
        return self._make_error(info, model, status=status, headers=headers)

    def _inband_error(self, data: Any, model: str) -> ProviderError:
        """The typed error for an error inside a reply that began with HTTP 200 (a
        stream's error event, or an error object as a JSON reply)."""
        return self._make_error(self._read_error(data, None, self.inband_error_text), model)

    def _read_error(self, data: Any, status: int | None, fallback: str) -> ErrorInfo:
        if data is None:
            return ErrorInfo(fallback)
        try:
            info = self._error_info(data, status, fallback)
        except MALFORMED:
            return ErrorInfo(fallback)
        if not info.message:
            info.message = fallback
        return info

    def _make_error(
        self,
        info: ErrorInfo,
        model: str,
        *,
        status: int | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> ProviderError:
        """The one place a ``ProviderError`` is built from what the wire said.

        The class comes from the status (or the body's own status for an in-band
        error) and the error type/code, unless ``info.cls`` overrides it. An
        exhausted quota is never retryable (waiting does not refill it), and an
        ``x-should-retry`` header is the server's own verdict; ``info.retryable``
        overrides both. Headers win over the body for ``retry_after`` and the
        request id. Every wire-derived text is redacted of the caller's key.
        """
        etype, code = info.error_type, info.error_code
        cls = info.cls or classify_error(
            status if status is not None else info.status, info.message, etype, code
        )
        quota = "insufficient_quota" in f"{etype} {code}"
        # In-band, an exhausted quota is final whatever the class; over HTTP, as a 429.
        retryable: bool | None = False if quota and (headers is None or cls is RateLimitError) else None
        retry_after: float | None = None
        rid: str | None = None
        if headers is not None:
            should = headers.get("x-should-retry")
            if should is not None:
                retryable = should.strip().lower() == "true"
            retry_after = parse_retry_after(headers)
            rid = self._header_request_id(headers)
        if info.retryable is not None:
            retryable = info.retryable
        return cls(
            redact(info.message, (self._api_key,)),
            provider=self.name,
            model=model,
            status_code=status,
            request_id=self._scrub(info.request_id if rid is None else rid),
            error_type=self._scrub(etype),
            error_code=self._scrub(code),
            retry_after=info.retry_after if retry_after is None else retry_after,
            retryable=retryable,
            rate_limits=None if headers is None else parse_rate_limit_headers(headers),
        )

    def _header_request_id(self, headers: Mapping[str, str]) -> str | None:
        return next((headers[h] for h in self.request_id_headers if h in headers), None)

    def _scrub(self, value: str | None) -> str | None:
        """A short field taken from the wire into an error (type, code, request id):
        redacted like the message, since a hostile or buggy upstream may reflect the
        caller's key into any of them, and from there into ``str``/``repr``."""
        return None if value is None else redact(value, (self._api_key,))[:200]

    def _scrubbed(self, exc: ProviderError) -> ProviderError:
        """``exc`` with every wire-derived text field redacted, in place.

        The one gate every typed error raised while parsing a reply passes (JSON,
        stream events, the stream's end), so an adapter that quotes the wire into an
        error (a tool name, a block reason, an id from the body) cannot leak a key the
        upstream reflected, whatever it forgot to redact itself."""
        keys = (self._api_key,)
        message = redact(exc.message, keys)
        if message != exc.message or exc.args != (message,):
            exc.message = message
            exc.args = (message,)
        exc.request_id = self._scrub(exc.request_id)
        exc.error_type = self._scrub(exc.error_type)
        exc.error_code = self._scrub(exc.error_code)
        return exc
