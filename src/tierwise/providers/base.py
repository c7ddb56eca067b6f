"""The Provider contract and the HTTP machinery every adapter shares.

A provider translates: it builds the wire request, sends it with httpx, and turns
the reply (JSON or SSE) into a ``Response`` or stream events. It knows nothing
about retries, pricing, limits or fallbacks; those live in the executor.

Subclasses implement four hooks and inherit ``complete`` / ``stream``:

* ``_url(model, stream)``: the endpoint;
* ``_build_body(model, request, stream)``: the JSON body;
* ``_parse_response(model, data)``: a decoded JSON reply → ``Response``;
* ``_stream_parser(model)``: an object turning ``SSEEvent`` s into stream events and,
  at the end, the same ``Response`` the non-streamed call would give.

Embeddings (``embed``) use three more hooks, which only adapters whose API has an
embeddings endpoint override (``supports_embeddings = True``): ``_embed_url``,
``_embed_body`` and ``_parse_embeddings``. The request goes through the same
client, auth headers, timeouts, error mapping and key redaction as a chat call.

Error mapping (status + headers + body → the right ``ProviderError`` subclass with
``retry_after``) is shared here with small per-provider hooks, because the
retry rules in DESIGN.md are the same for everyone; only body shapes differ.
"""

from __future__ import annotations

import functools
import json
import math
import os
import ssl
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, ClassVar, Protocol, TypeVar

import httpx

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
from ..types import (
    Done,
    Embeddings,
    FinishReason,
    ReasoningDelta,
    Request,
    Response,
    StreamEvent,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    Usage,
    replay_events,
)
from ._errors import classify_error, parse_duration, parse_rate_limit_headers, parse_retry_after
from ._sse import SSEDecoder, SSEEvent

__all__ = [
    "HTTP_CLIENT_KINDS",
    "Provider",
    "SSEDecoder",
    "SSEEvent",
    "StreamAccumulator",
    "StreamParser",
    "check_embeddings",
    "classify_error",
    "embedding_vector",
    "make_http_client",
    "parse_duration",
    "parse_rate_limit_headers",
    "parse_retry_after",
]

_T = TypeVar("_T")

# What a reply of the wrong shape raises while being parsed: each becomes a
# ProtocolError. Overflow (``int(float("inf"))``) and recursion (JSON nested
# thousands deep) included: a malformed reply never escapes as another type.
_MALFORMED = (KeyError, TypeError, IndexError, AttributeError, ValueError, ArithmeticError, RecursionError)

_perf = time.perf_counter

# Default transport limits: generous keep-alive pool so concurrent calls reuse
# connections; the executor's own limiter is what bounds concurrency.
DEFAULT_TIMEOUT = httpx.Timeout(600.0, connect=10.0)
DEFAULT_LIMITS = httpx.Limits(max_connections=1000, max_keepalive_connections=200)

#: Values of ``Provider(http=...)`` / ``make_http_client(kind)``.
HTTP_CLIENT_KINDS = ("httpx", "aiohttp")
_FAST_HINT = 'http="aiohttp" needs the httpx-aiohttp package: pip install "tierwise[fast]"'


def _check_http_kind(kind: str) -> None:
    if kind not in HTTP_CLIENT_KINDS:
        raise ValueError(f"unknown http client kind {kind!r}; use one of {', '.join(HTTP_CLIENT_KINDS)}")
    if kind == "aiohttp":
        import importlib.util

        if importlib.util.find_spec("httpx_aiohttp") is None:
            raise ImportError(_FAST_HINT, name="httpx_aiohttp")


def _env_proxies() -> dict[str, str]:
    import urllib.request

    return {k: v for k, v in urllib.request.getproxies().items() if k in ("http", "https", "all")}


@functools.cache
def _default_ssl_context() -> ssl.SSLContext:
    """One verified TLS context (certifi's CA bundle) per process.

    Building one costs 25-50 ms (it parses the whole CA bundle), and httpx builds a
    new one for every client, even for plain-http base URLs, blocking the event loop
    on each provider's first request. A default context is read-only configuration,
    so sharing it couples nothing between orchestrators.
    """
    return httpx.create_ssl_context()


def make_http_client(
    kind: str = "httpx",
    *,
    timeout: float | httpx.Timeout | None = DEFAULT_TIMEOUT,
    limits: httpx.Limits = DEFAULT_LIMITS,
    headers: Mapping[str, str] | None = None,
) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` for providers: httpx's own transport (``"httpx"``) or,
    with the ``fast`` extra, one backed by aiohttp (``"aiohttp"``).

    The aiohttp transport (package ``httpx-aiohttp``) keeps httpx's API, so every
    provider works unchanged, but sends and parses HTTP with aiohttp's C-accelerated
    machinery, which costs noticeably less CPU per request than httpcore (see
    ``benchmarks/overhead.py``). It runs on asyncio only (not trio). Its
    connection pool honours ``limits.max_connections`` and ``keepalive_expiry``;
    the TLS context is httpx's (certifi), and ``HTTP(S)_PROXY``/``ALL_PROXY`` from
    the environment are honoured as with httpx. Raises ``ImportError`` naming the
    extra when the package is missing. ``headers`` become the client's defaults.
    """
    _check_http_kind(kind)
    if kind == "httpx":
        return httpx.AsyncClient(
            timeout=timeout, limits=limits, headers=headers, verify=_default_ssl_context()
        )
    import importlib

    try:
        aiohttp: Any = importlib.import_module("aiohttp")
        transport_cls: Any = importlib.import_module("httpx_aiohttp").AiohttpTransport
    except ImportError as exc:  # pragma: no cover - find_spec said it was there
        raise ImportError(_FAST_HINT, name="httpx_aiohttp") from exc

    def session() -> Any:
        # Built on first request, inside the running loop (aiohttp binds to it).
        extra: dict[str, Any] = {}
        if limits.keepalive_expiry is not None:
            extra["keepalive_timeout"] = limits.keepalive_expiry
        connector = aiohttp.TCPConnector(
            limit=limits.max_connections or 0, ssl=_default_ssl_context(), **extra
        )
        # trust_env makes aiohttp re-read proxy variables and ~/.netrc on every
        # request (~1/3 of its CPU per call); only pay that when a proxy is set.
        return aiohttp.ClientSession(connector=connector, trust_env=bool(_env_proxies()))

    # ``client=`` (a session factory) is accepted by every httpx-aiohttp release.
    transport: httpx.AsyncBaseTransport = transport_cls(client=session)
    return httpx.AsyncClient(transport=transport, timeout=timeout, headers=headers)


class StreamParser(Protocol):
    """Turns one provider's SSE events into tierwise stream events."""

    def feed(self, event: SSEEvent) -> Iterable[StreamEvent]:
        """Events produced by one SSE event; raises ``ProviderError`` on in-band errors."""
        ...

    def finish(self) -> Response:
        """The accumulated response; ``ProtocolError`` if the stream ended early."""
        ...


class StreamAccumulator:
    """Accumulates deltas into a ``Response`` (one normalization path for both modes).

    Tool-call argument fragments are collected per index and parsed once in
    ``build``, never per fragment (fragments are not valid JSON on their own).
    """

    __slots__ = (
        "finish_reason",
        "model",
        "provider",
        "raw_finish_reason",
        "reasoning_parts",
        "text_parts",
        "tools",
        "usage",
    )

    def __init__(self, provider: str, model: str) -> None:
        self.provider = provider
        self.model = model
        self.text_parts: list[str] = []
        self.reasoning_parts: list[str] = []
        # index -> [id, name, [argument fragments]]
        self.tools: dict[int, list[Any]] = {}
        self.usage = Usage()
        self.finish_reason: FinishReason | None = None
        self.raw_finish_reason: str | None = None

    def text(self, fragment: str) -> TextDelta:
        self.text_parts.append(fragment)
        return TextDelta(fragment)

    def reasoning(self, fragment: str) -> ReasoningDelta:
        self.reasoning_parts.append(fragment)
        return ReasoningDelta(fragment)

    def tool(
        self, index: int, id: str | None = None, name: str | None = None, arguments: str = ""
    ) -> ToolCallDelta:
        slot = self.tools.get(index)
        if slot is None:
            slot = self.tools[index] = [id, name, []]
        else:
            if id and not slot[0]:
                slot[0] = id
            if name and not slot[1]:
                slot[1] = name
        if arguments:
            slot[2].append(arguments)
        return ToolCallDelta(index, id, name, arguments)

    def build(self, *, default_finish: FinishReason | None = None) -> Response:
        finish = self.finish_reason or default_finish
        if finish is None:
            raise ProtocolError(
                "stream ended before its final event (truncated stream)",
                provider=self.provider,
                model=self.model,
            )
        calls: list[ToolCall] = []
        for index, slot in sorted(self.tools.items()):
            call_id, name, raw = slot[0] or f"call_{index}", slot[1] or "", "".join(slot[2])
            calls.append(
                make_tool_call(
                    call_id, name, raw, provider=self.provider, model=self.model, cut=finish == "length"
                )
            )
        return Response(
            text="".join(self.text_parts),
            model=self.model,
            provider=self.provider,
            finish_reason=finish,
            usage=self.usage,
            tool_calls=calls,
            reasoning="".join(self.reasoning_parts),
            raw_finish_reason=self.raw_finish_reason,
        )


def make_tool_call(
    id: str,
    name: str,
    raw_arguments: str | Mapping[str, Any] | None,
    *,
    provider: str,
    model: str,
    cut: bool = False,
    secrets: Sequence[str | None] = (),
) -> ToolCall:
    """Build a ``ToolCall``, parsing a JSON argument string once.

    Providers send arguments either as a JSON string (OpenAI) or an object
    (Anthropic, Gemini). Invalid JSON from the provider is a ``ProtocolError``,
    not a crash in the caller's tool dispatch — unless the reply was ``cut`` at
    its token limit (finish reason ``length``): the model ran out of tokens while
    writing the call, the provider ended the reply normally, and the answer is
    kept with the call flagged ``incomplete`` (its raw fragments kept, no
    arguments) rather than failed as a whole. ``secrets`` (the caller's key) are
    redacted from the excerpt in the error: the arguments are wire text.
    """
    if raw_arguments is None or raw_arguments == "":
        return ToolCall(id=id, name=name, arguments={}, raw_arguments=raw_arguments or "")
    if isinstance(raw_arguments, Mapping):
        args = dict(raw_arguments)
        return ToolCall(
            id=id, name=name, arguments=args, raw_arguments=json.dumps(args, separators=(",", ":"))
        )
    if not isinstance(raw_arguments, str):
        raise ProtocolError(
            f"tool call {excerpt(repr(name), secrets, 80)} arguments are a "
            f"{type(raw_arguments).__name__}, not a JSON string or object",
            provider=provider,
            model=model,
        )
    try:
        parsed = json.loads(raw_arguments)
    except (ValueError, RecursionError):
        # ValueError also covers a 5,000-digit number (int's digit limit); RecursionError
        # arguments nested thousands deep.
        parsed = _INVALID
    if isinstance(parsed, dict):
        return ToolCall(id=id, name=name, arguments=parsed, raw_arguments=raw_arguments)
    if cut:
        # Cut mid-call: '{"q": "unfini' does not parse, '{"n": 12' neither, and a
        # prefix that happens to parse ("12" of "123") is no object: all incomplete.
        return ToolCall(id=id, name=name, arguments={}, raw_arguments=raw_arguments, incomplete=True)
    what = "has invalid JSON arguments" if parsed is _INVALID else "arguments are not a JSON object"
    raise ProtocolError(
        f"tool call {excerpt(repr(name), secrets, 80)} {what}: {excerpt(raw_arguments, secrets)}",
        provider=provider,
        model=model,
    )


# Marks tool arguments that are not JSON at all (``None`` is valid JSON: ``null``).
_INVALID: Any = object()


#: Token counts above this are nonsense from the wire (no reply is a trillion tokens).
_MAX_TOKENS = 10**12


def token_count(value: Any) -> int:
    """A token count from a reply as a non-negative int; anything else counts 0.

    Where every adapter's usage numbers pass: ``Infinity``, ``NaN``, ``1e400``, a
    400-digit integer, a negative count, a bool or a string would otherwise
    overflow ``int()``, corrupt the limiter's window or the bill. A dropped count
    is 0, and a reply whose counts are all dropped is billed at the executor's
    estimate (``Usage.estimated``), never at $0."""
    if type(value) is int:
        return value if 0 <= value <= _MAX_TOKENS else 0
    if type(value) is float and 0.0 <= value <= _MAX_TOKENS:
        return int(value)
    return 0


def cost_amount(value: Any) -> float | None:
    """A provider-reported cost in USD: a finite number >= 0, else ``None`` (unknown)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        amount = float(value)
    except OverflowError:
        return None
    return amount if 0.0 <= amount < math.inf else None


def embedding_vector(value: Any, what: str) -> list[float]:
    """One embedding from a decoded reply: a non-empty list of finite numbers, as floats.

    Raises ``ValueError`` naming ``what`` (which the caller turns into a
    ``ProtocolError``): a base64 string (a server that ignored
    ``encoding_format``), ``null``, booleans or non-finite values are malformed.
    """
    if not isinstance(value, list) or not value:
        raise ValueError(f"{what} is not a non-empty list of numbers")
    out = [0.0] * len(value)
    for i, x in enumerate(value):
        if type(x) is float:
            if x - x != 0.0:  # inf or nan
                raise ValueError(f"{what}[{i}] is not finite")
            out[i] = x
        elif type(x) is int:
            out[i] = float(x)
        else:
            raise ValueError(f"{what}[{i}] is not a number ({type(x).__name__})")
    return out


def check_embeddings(vectors: list[list[float]], count: int) -> None:
    """``ValueError`` unless there are ``count`` vectors, all of one length."""
    if len(vectors) != count:
        raise ValueError(f"reply has {len(vectors)} embeddings for {count} input(s)")
    if len({len(v) for v in vectors}) > 1:
        raise ValueError("embeddings in one reply have different lengths")


_SSE_FIELDS = (b"data:", b"event:", b"id:", b"retry:", b":")


def _looks_like_sse(content: bytes) -> bool:
    """Whether a body labelled JSON is really an event stream (or empty, which is a
    cut stream, retryable, rather than a JSON reply that will never parse)."""
    head = content.lstrip()[:6]
    return not head or head.startswith(_SSE_FIELDS)


_FINISH_REASONS = frozenset(("stop", "length", "tool_calls", "content_filter", "error"))
_SCALARS = (str, int, float, bool)


def _normalize(response: Response, requested: str) -> None:
    """The ``Response`` contract, checked once where every adapter's reply (JSON, SSE,
    or a JSON body answering a stream request) leaves the provider.

    The adapters fill a ``Response`` from untyped JSON; a buggy or hostile server's
    ``"model": 42`` or ``"id": {...}`` would otherwise travel into metrics keys, audit
    records, cache keys and cost arithmetic. The rules, one place for all adapters:

    * ``model``: a non-empty string, else the *requested* model name (a number or
      object is no model name, and ``str({...})`` would be a metrics key nobody asked for);
    * ``text`` and ``reasoning``: strings (``None`` → ``""``, a scalar → ``str()``);
    * ``finish_reason``: one of the five, else ``"stop"``; ``raw_finish_reason`` a
      string or ``None``; ``request_id`` a string or ``None``;
    * usage: each count through ``token_count`` (negative, non-finite, huge, bool or
      non-number → 0; a float → its int), and the subsets capped by their totals;
      ``reported_cost_usd`` through ``cost_amount`` (finite and >= 0, else ``None``);
    * tool calls: ``id`` and ``name`` strings (a scalar → ``str()``; anything else →
      ``call_<i>`` / ``""``), ``arguments`` a dict.

    Called directly (no executor), a provider that reported its own cost sets
    ``cost_usd`` to it: the figure is known, so it is not left ``None``.
    """
    # Typed as str, but filled from untyped JSON: checked through Any.
    model: Any = response.model
    if not isinstance(model, str) or not model:
        response.model = requested
    response.text = _as_text(response.text)
    response.reasoning = _as_text(response.reasoning)
    if response.finish_reason not in _FINISH_REASONS:
        response.finish_reason = "stop"
    raw_finish: Any = response.raw_finish_reason
    if raw_finish is not None and not isinstance(raw_finish, str):
        response.raw_finish_reason = str(raw_finish) if isinstance(raw_finish, _SCALARS) else None
    rid: Any = response.request_id
    if rid is not None and not isinstance(rid, str):
        response.request_id = None
    u = response.usage
    u.input_tokens = token_count(u.input_tokens)
    u.output_tokens = token_count(u.output_tokens)
    u.cached_input_tokens = min(token_count(u.cached_input_tokens), u.input_tokens)
    u.cache_write_tokens = min(token_count(u.cache_write_tokens), u.input_tokens)
    u.reasoning_tokens = min(token_count(u.reasoning_tokens), u.output_tokens)
    u.reported_cost_usd = cost_amount(u.reported_cost_usd)
    for i, call in enumerate(response.tool_calls):
        cid: Any = call.id
        name: Any = call.name
        args: Any = call.arguments
        if not isinstance(cid, str):
            call.id = str(cid) if isinstance(cid, _SCALARS) else f"call_{i}"
        if not isinstance(name, str):
            call.name = str(name) if isinstance(name, _SCALARS) else ""
        if not isinstance(args, dict):
            call.arguments = {}
    if response.cost_usd is None and u.reported_cost_usd is not None:
        response.cost_usd = u.reported_cost_usd


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return str(value) if isinstance(value, _SCALARS) else ""


# --------------------------------------------------------------------------- provider


class Provider(ABC):
    """Base of every wire-format adapter.

    ``http_client`` lets an application share one connection pool (and its own
    transport, proxies or ``httpx.MockTransport`` in tests); when omitted the
    provider creates one lazily and closes it in ``aclose()``; ``http`` picks that
    client's transport: ``"httpx"`` (default) or ``"aiohttp"`` (the ``fast`` extra,
    see ``make_http_client``).

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
            _check_http_kind(http)
        self._http = http
        env = self.api_key_env
        self._api_key: str | None = api_key if api_key is not None else (os.environ.get(env) if env else None)
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

    def _error_fields(self, data: Any) -> tuple[str, str | None, str | None]:
        """(message, type, code) from a decoded error body; handles the common
        ``{"error": {"message", "type", "code"}}`` and ``{"error": "text"}`` shapes."""
        err = data.get("error", data) if isinstance(data, dict) else None
        if isinstance(err, str):
            return err, None, None
        if isinstance(err, dict):
            msg = err.get("message") or err.get("msg") or data.get("message") or ""
            etype = err.get("type") or err.get("status")
            code = err.get("code")
            return str(msg), None if etype is None else str(etype), None if code is None else str(code)
        return "", None, None

    def _retry_after_from_body(self, data: Any) -> float | None:
        """Provider-specific retry hints inside the error body (Gemini ``RetryInfo``)."""
        return None

    def _check_key(self, model: str) -> None:
        """Raise before sending when a key is required and missing, naming the env var."""
        if not self._api_key and self.api_key_env:
            raise AuthenticationError(
                f"no API key: pass api_key= or set {self.api_key_env}",
                provider=self.name,
                model=model,
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
        _normalize(response, model)
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
        except _MALFORMED as exc:
            raise self._protocol_error(
                f"unexpected {what} shape ({type(exc).__name__}: {exc})", content, model
            ) from None

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
        if isinstance(texts, str | bytes):
            raise TypeError("texts must be a sequence of strings, not a single string")
        batch = list(texts)
        for i, text in enumerate(batch):
            if not isinstance(text, str):
                raise TypeError(f"texts[{i}] must be a str, got {type(text).__name__}")
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
            result.request_id = self._scrub(
                next((headers[h] for h in self.request_id_headers if h in headers), None)
            )
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
                    if not _looks_like_sse(content):
                        whole = self._whole_reply(content, model)
                        whole.latency_ms = whole.ttft_ms = (_perf() - start) * 1000.0
                        self._stamp(whole, headers)
                        _normalize(whole, model)
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
        except _MALFORMED as exc:
            raise self._protocol_error(f"unexpected stream shape ({type(exc).__name__})", "", model) from None
        response.latency_ms = (_perf() - start) * 1000.0
        response.ttft_ms = ttft
        self._stamp(response, headers)
        _normalize(response, model)
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
        except _MALFORMED:
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

    async def __aenter__(self) -> Provider:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, base_url={self.base_url!r})"

    # -- shared helpers for subclasses ---------------------------------------

    def _feed(self, parser: StreamParser, sse: SSEEvent, model: str) -> Iterable[StreamEvent]:
        try:
            return parser.feed(sse)
        except ProviderError as exc:
            raise self._scrubbed(exc) from None
        except _MALFORMED as exc:
            raise self._protocol_error(
                f"unexpected stream event shape ({type(exc).__name__}: {exc})", sse.data, model
            ) from None

    def _stamp(self, response: Response, headers: httpx.Headers) -> None:
        # One pass into a plain dict: each httpx ``Headers.get`` scans and decodes every
        # header, and up to nine names are looked up here. ``items()`` joins repeated
        # names with ", " exactly as ``get`` does.
        h: Mapping[str, str] = dict(headers.items()) if isinstance(headers, httpx.Headers) else headers
        for name in self.request_id_headers:
            rid = h.get(name)
            if rid:
                response.request_id = self._scrub(rid)
                break
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
        data: Any = None
        try:
            data = json.loads(content) if content else None
        except (ValueError, RecursionError):
            data = None
        try:
            message, etype, code = self._error_fields(data) if data is not None else ("", None, None)
        except _MALFORMED:
            message, etype, code = "", None, None
        if not message:
            message = excerpt(content, (self._api_key,)) if content else httpx.codes.get_reason_phrase(status)
        retry_after = parse_retry_after(headers)
        if retry_after is None and data is not None:
            try:
                retry_after = self._retry_after_from_body(data)
            except _MALFORMED:
                retry_after = None
        cls = classify_error(status, message, etype, code)
        retryable: bool | None = None
        if cls is RateLimitError and "insufficient_quota" in f"{etype} {code}":
            retryable = False
        should = headers.get("x-should-retry")
        if should is not None:
            retryable = should.strip().lower() == "true"
        rid = next((headers[h] for h in self.request_id_headers if h in headers), None)
        etype, code, rid = self._scrub(etype), self._scrub(code), self._scrub(rid)
        return cls(
            redact(message, (self._api_key,)),
            provider=self.name,
            model=model,
            status_code=status,
            request_id=rid,
            error_type=etype,
            error_code=code,
            retry_after=retry_after,
            retryable=retryable,
            rate_limits=parse_rate_limit_headers(headers),
        )

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

    def _inband_error(self, data: Any, model: str) -> ProviderError:
        """An error event inside a stream that began with HTTP 200."""
        try:
            message, etype, code = self._error_fields(data)
            retry_after = self._retry_after_from_body(data)
        except _MALFORMED:
            message, etype, code, retry_after = "", None, None, None
        cls = classify_error(None, message, etype, code)
        etype, code = self._scrub(etype), self._scrub(code)
        return cls(
            redact(message or "error event in stream", (self._api_key,)),
            provider=self.name,
            model=model,
            error_type=etype,
            error_code=code,
            retry_after=retry_after,
            # Waiting does not refill an exhausted quota.
            retryable=False if "insufficient_quota" in f"{etype} {code}" else None,
        )
