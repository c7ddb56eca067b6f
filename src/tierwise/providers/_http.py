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
        from ._pool import hand_out_once  # httpcore imports anyio: not at import time

        # Not ``transport=``: httpx then ignores the environment's proxies.
        hand_out_once(getattr(client, "_transport", None))
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
