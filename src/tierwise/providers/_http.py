"""Building the ``httpx.AsyncClient`` a provider sends with.

Kept apart from ``base.py`` (which re-exports these names) because it is transport
plumbing (TLS context, proxies, the optional aiohttp backend), not the Provider
contract: nothing here knows a wire format.
"""

from __future__ import annotations

import functools
import ssl
from collections.abc import Mapping
from typing import Any, TypedDict

import httpcore
import httpx

__all__ = [
    "DEFAULT_LIMITS",
    "DEFAULT_TIMEOUT",
    "HTTP_CLIENT_KINDS",
    "ProviderOptions",
    "check_http_kind",
    "make_http_client",
]

# Default transport limits: generous keep-alive pool so concurrent calls reuse
# connections; the executor's own limiter is what bounds concurrency.
DEFAULT_TIMEOUT = httpx.Timeout(600.0, connect=10.0)
DEFAULT_LIMITS = httpx.Limits(max_connections=1000, max_keepalive_connections=200)

#: Values of ``Provider(http=...)`` / ``make_http_client(kind)``.
HTTP_CLIENT_KINDS = ("httpx", "aiohttp")


class ProviderOptions(TypedDict, total=False):
    """The keyword options every adapter takes (``Provider.__init__``): how it talks
    HTTP. Subclasses accept them as ``**options`` and add only their own."""

    timeout: float | httpx.Timeout | None
    headers: Mapping[str, str] | None
    http: str


_FAST_HINT = 'http="aiohttp" needs the httpx-aiohttp package: pip install "tierwise[fast]"'


def check_http_kind(kind: str) -> None:
    """``ValueError`` for an unknown kind, ``ImportError`` naming the extra when the
    aiohttp backend is asked for but not installed: raised at construction, not on
    the first request."""
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

    Building one parses the whole CA bundle, and httpx builds a new one for every
    client, even for plain-http base URLs, blocking the event loop on each
    provider's first request. A default context is read-only configuration, so
    sharing it couples nothing between orchestrators.
    """
    return httpx.create_ssl_context()


class _HandOutOncePool(httpcore.AsyncConnectionPool):
    """httpcore's pool, except that an idle connection it has handed to a request
    is not handed to a second one before the first has started on it.

    Why: httpcore assigns an idle HTTP/1.1 connection to a request, but the
    connection stays ``IDLE`` until that request's task has taken two locks
    (each an event-loop turn under anyio). A request that enters the pool in
    between is given the same connection, loses the race, gets
    ``ConnectionNotAvailable`` and goes round the pool again: another
    assignment pass, another connection lock, an exception. That happens
    whenever several requests reach the pool in the same loop turn, which is
    what the Redis state backend does (one pipelined reply admits several
    requests at once): about one such retry per request with 8 in flight,
    ~200 us of CPU each, most of what the Redis backend cost over the memory
    one (``benchmarks/shared_state.py``; upstream: encode/httpcore#1111).

    Same decisions as httpcore 1.0's ``_assign_requests_to_connections``
    otherwise: closed connections dropped, expired ones and surplus idle ones
    (more connections than ``max_keepalive_connections``) closed, a queued
    request given the first available connection, else a new one, else an idle
    one is closed to make room. Correctness does not depend on it: httpcore's own
    state check and retry stay under it. Installed only on an ``http1``-only
    pool (what ``make_http_client`` builds): an HTTP/2 connection serves many
    requests at once and must stay available while one is starting.
    """

    def _assign_requests_to_connections(self) -> list[httpcore.AsyncConnectionInterface]:
        # Runs under the pool's (thread) lock, synchronously: no other pass interleaves.
        conns: list[httpcore.AsyncConnectionInterface] = self._connections
        requests = self._requests
        closing: list[httpcore.AsyncConnectionInterface] = []
        for conn in list(conns):
            if conn.is_closed():
                conns.remove(conn)
            elif conn.has_expired() or (conn.is_idle() and len(conns) > self._max_keepalive_connections):
                conns.remove(conn)
                closing.append(conn)
        # Handed out but not started on yet (started ones are no longer idle).
        taken = {id(r.connection) for r in requests if r.connection is not None}
        for pool_request in requests:
            if not pool_request.is_queued():
                continue
            origin = pool_request.request.url.origin
            chosen = None
            for conn in conns:
                if conn.can_handle_request(origin) and conn.is_available() and id(conn) not in taken:
                    chosen = conn
                    break
            if chosen is None:
                if len(conns) >= self._max_connections:
                    idle = next((c for c in conns if c.is_idle() and id(c) not in taken), None)
                    if idle is None:
                        continue  # waits for a connection to be released
                    conns.remove(idle)
                    closing.append(idle)
                chosen = self.create_connection(origin)
                conns.append(chosen)
            pool_request.assign_to_connection(chosen)
            taken.add(id(chosen))
        return closing


def _hand_out_once(transport: object) -> None:
    """Give ``transport``'s pool ``_HandOutOncePool``'s assignment, in place (the
    pool keeps every setting httpx gave it). Only when the pool is exactly
    httpcore's plain pool with the internals the override reads: another httpcore
    (or a proxy pool) is left as it is, which costs CPU, not correctness."""
    pool = getattr(transport, "_pool", None)
    if (
        type(pool) is httpcore.AsyncConnectionPool
        and not getattr(pool, "_http2", True)
        and all(
            hasattr(pool, a)
            for a in ("_connections", "_requests", "_max_connections", "_max_keepalive_connections")
        )
    ):
        pool.__class__ = _HandOutOncePool


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
    check_http_kind(kind)
    if kind == "httpx":
        client = httpx.AsyncClient(
            timeout=timeout, limits=limits, headers=headers, verify=_default_ssl_context()
        )
        # Not ``transport=``: httpx then ignores the environment's proxies.
        _hand_out_once(getattr(client, "_transport", None))
        return client
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
