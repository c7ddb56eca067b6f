"""The tierwise exception tree.

::

    TierwiseError
    ├── ProviderError                 .retryable .status_code .provider .model .request_id
    │   │                             .retry_after .error_type .error_code .rate_limits
    │   ├── RateLimitError            429 (retryable; not for insufficient_quota)
    │   ├── ProviderTimeout           connect/read timeout, 408, stalled stream
    │   ├── ProviderConnectionError   connection refused/reset before a reply
    │   ├── ServerError               5xx, 529 overloaded, 409
    │   ├── AuthenticationError       401
    │   │   └── PermissionDeniedError 403
    │   ├── BadRequestError           400, 413, 422 (not retryable)
    │   │   ├── ContextWindowExceeded prompt too long for the model: fall back to a bigger window
    │   │   └── NotFoundError         404 (unknown model or endpoint)
    │   ├── ContentFiltered           the provider refused on safety grounds
    │   └── ProtocolError             malformed reply: bad JSON, missing fields, truncated stream
    ├── BudgetExceeded                a hard spending limit would be crossed
    ├── AllTargetsFailed              every target in a fallback chain failed (an ExceptionGroup)
    └── ConfigError                   invalid configuration; names the field path

Why a class per failure *kind* rather than per status code: callers and the executor
decide on kinds (retry? fall back? give up?), and providers disagree on codes
(Anthropic's 529, Gemini's RESOURCE_EXHAUSTED, in-band stream errors after HTTP 200).

Secrets: every message that may contain provider text passes through
``redact()``, which removes the provider's own key and anything shaped like an
API key or bearer token, so an error string is always safe to log.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .types import RateLimitInfo

__all__ = [
    "AllTargetsFailed",
    "AuthenticationError",
    "BadRequestError",
    "BudgetExceeded",
    "ConfigError",
    "ContentFiltered",
    "ContextWindowExceeded",
    "NotFoundError",
    "PermissionDeniedError",
    "ProtocolError",
    "ProviderConnectionError",
    "ProviderError",
    "ProviderTimeout",
    "RateLimitError",
    "ServerError",
    "TierwiseError",
    "redact",
]

# Shapes of credentials that may show up in provider error bodies or URLs:
# OpenAI/Anthropic/OpenRouter style keys, Google API keys, bearer tokens, ?key= params.
_SECRET_PATTERNS = re.compile(
    r"(sk-[A-Za-z0-9_\-]{8,}"
    r"|AIza[0-9A-Za-z_\-]{20,}"
    r"|(?i:bearer)\s+[A-Za-z0-9._\-]{8,}"
    r"|(?<=[?&]key=)[^&\s\"']+)"
)
_EXCERPT_LEN = 300
# Keys without a telling prefix (Mistral: 32 mixed-case alphanumerics; Together: 64
# hex; many gateways alike). Only config messages are scrubbed of these shapes: in
# general text they would also eat request hashes and ids, which logs need.
_BARE_KEY = re.compile(
    r"(?<![A-Za-z0-9_\-])(?:(?=[A-Za-z0-9]{32,}(?![A-Za-z0-9]))(?=[A-Za-z0-9]*[0-9])(?=[A-Za-z0-9]*[A-Za-z])"
    r"[A-Za-z0-9]{32,}|[0-9a-fA-F]{64})(?![A-Za-z0-9_\-])"
)


def looks_like_key(text: str) -> bool:
    """Whether ``text`` has the shape of an API key (prefixed or bare)."""
    return bool(_SECRET_PATTERNS.search(text) or _BARE_KEY.search(text))


def close_matches(name: str, known: Iterable[str], *, n: int = 1) -> list[str]:
    """The ``known`` names closest to ``name``, best first (at most ``n``).

    The one "did you mean" helper: config keys, aliases, catalog models and batch
    item keys all suggest the same way, so a typo gets the same kind of hint
    everywhere. difflib is imported here, not at import time.
    """
    import difflib

    return difflib.get_close_matches(name, list(known), n=n)


def did_you_mean(name: str, known: Iterable[str], *, n: int = 1) -> str:
    """``"did you mean 'rpm'?"`` (or ``'a' or 'b'`` for ``n > 1``), or ``""``."""
    close = close_matches(name, known, n=n)
    return f"did you mean {' or '.join(repr(c) for c in close)}?" if close else ""


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """Remove ``secrets`` and anything that looks like an API key from ``text``."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "[REDACTED]")
    return _SECRET_PATTERNS.sub("[REDACTED]", text)


def excerpt(data: bytes | str, secrets: Iterable[str | None] = (), limit: int = _EXCERPT_LEN) -> str:
    """A short, redacted, single-line excerpt of a reply body for error messages."""
    if isinstance(data, bytes):
        data = data[: limit * 4].decode("utf-8", "replace")
    text = redact(data, secrets).replace("\r", "\\r").replace("\n", "\\n")
    return text if len(text) <= limit else text[:limit] + "…"


class TierwiseError(Exception):
    """Base of every error tierwise raises on purpose."""


class ProviderError(TierwiseError):
    """A call to a provider failed. Carries everything needed to decide what next.

    ``retryable`` is the provider-side verdict (status class, ``x-should-retry``,
    in-band overload); the executor still bounds retries by attempts and deadline.
    """

    default_retryable = False

    def __init__(
        self,
        message: str,
        *,
        provider: str = "",
        model: str = "",
        status_code: int | None = None,
        request_id: str | None = None,
        error_type: str | None = None,
        error_code: str | None = None,
        retry_after: float | None = None,
        retryable: bool | None = None,
        rate_limits: RateLimitInfo | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.provider = provider
        self.model = model
        self.status_code = status_code
        self.request_id = request_id
        self.error_type = error_type
        self.error_code = error_code
        self.retry_after = retry_after
        self.retryable = self.default_retryable if retryable is None else retryable
        self.rate_limits = rate_limits

    def __str__(self) -> str:
        where = "/".join(p for p in (self.provider, self.model) if p)
        head = f"[{where}] " if where else ""
        status = f" (HTTP {self.status_code})" if self.status_code is not None else ""
        tail = f" request_id={self.request_id}" if self.request_id else ""
        return f"{head}{self.message}{status}{tail}"

    def __repr__(self) -> str:
        fields = ", ".join(
            f"{k}={v!r}"
            for k, v in (
                ("provider", self.provider),
                ("model", self.model),
                ("status_code", self.status_code),
                ("error_type", self.error_type),
                ("retryable", self.retryable),
                ("retry_after", self.retry_after),
            )
            if v not in (None, "")
        )
        return f"{type(self).__name__}({self.message!r}, {fields})"

    def __reduce__(self) -> tuple[Any, ...]:
        # Keep errors picklable (multiprocessing, caches) with all their fields.
        return (_rebuild_error, (type(self), self.message, self.__dict__.copy()))


def _rebuild_error(cls: type[ProviderError], message: str, state: dict[str, Any]) -> ProviderError:
    err = cls.__new__(cls)
    Exception.__init__(err, message)
    err.__dict__.update(state)
    return err


def _rebuild_plain(cls: type[Exception], args: tuple[Any, ...], state: dict[str, Any]) -> Exception:
    err = cls.__new__(cls)
    Exception.__init__(err, *args)
    err.__dict__.update(state)
    return err


class RateLimitError(ProviderError):
    """429 or an in-band rate-limit error. Not retryable when the quota is exhausted
    (``insufficient_quota``): waiting will not bring money back."""

    default_retryable = True


class ProviderTimeout(ProviderError):
    """The provider did not answer (or stopped streaming) in time."""

    default_retryable = True


class ProviderConnectionError(ProviderError):
    """The connection failed or was reset before a complete reply."""

    default_retryable = True


class ServerError(ProviderError):
    """5xx, 529 overloaded or 409 conflict: the provider's problem, worth retrying."""

    default_retryable = True


class AuthenticationError(ProviderError):
    """401: the key is missing or wrong. Retrying cannot help."""


class PermissionDeniedError(AuthenticationError):
    """403: the key is valid but may not use this model or endpoint."""


class BadRequestError(ProviderError):
    """The provider rejected the request itself. Retrying the same request cannot help."""


class ContextWindowExceeded(BadRequestError):
    """The prompt (plus ``max_tokens``) does not fit the model's context window.

    Not retryable on the same model, but the executor falls back to a model whose
    window fits.
    """


class NotFoundError(BadRequestError):
    """404: the model or endpoint does not exist for this key."""


class ContentFiltered(ProviderError):
    """The provider refused the request or answer on safety grounds."""


class ProtocolError(ProviderError):
    """The provider's reply was malformed: invalid JSON, missing fields, or a stream
    that ended before its final event. Retryable: these are almost always transient
    (a proxy cutting a connection, a half-written body), and a stream that broke
    before its first content event can safely go to the next model."""

    default_retryable = True


class BudgetExceeded(TierwiseError):
    """Sending the request could cross a hard budget limit."""

    def __init__(
        self,
        message: str,
        *,
        scope: str = "total",
        limit_usd: float | None = None,
        spent_usd: float | None = None,
        requested_usd: float | None = None,
    ) -> None:
        super().__init__(message)
        self.scope = scope
        self.limit_usd = limit_usd
        self.spent_usd = spent_usd
        self.requested_usd = requested_usd

    def __reduce__(self) -> tuple[Any, ...]:
        # Keep the keyword fields across pickling (multiprocessing, caches).
        return (_rebuild_plain, (type(self), self.args, self.__dict__.copy()))


class AllTargetsFailed(ExceptionGroup[Exception], TierwiseError):
    """Every target in the chain failed. ``.exceptions`` holds each attempt's error in
    order, so nothing about the failure is lost; ``.attempts`` the audit records."""

    attempts: list[Any]

    def __new__(
        cls, message: str, exceptions: Sequence[Exception], attempts: Sequence[Any] = ()
    ) -> AllTargetsFailed:
        for exc in exceptions:
            _shorten(exc)
        self = super().__new__(cls, message, list(exceptions))
        self.attempts = list(attempts)
        return self

    def __init__(self, message: str, exceptions: Sequence[Exception], attempts: Sequence[Any] = ()) -> None:
        super().__init__(message, list(exceptions))

    def derive(self, excs: Sequence[Exception]) -> AllTargetsFailed:  # type: ignore[override]
        return AllTargetsFailed(self.message, excs, self.attempts)


def _shorten(exc: BaseException) -> None:
    """Drop the stack of an expected provider failure (and of what caused it).

    A provider error's message says everything (provider, model, status, what the
    server said); its traceback is always the same executor and httpx frames. Kept,
    Python prints one per attempt inside the group, each with its chained httpx
    cause: an offline run of a three-model chain ended in a 91-line traceback whose
    one useful line was the first. The exception objects, ``__cause__`` included,
    stay available to code; only the printed frames go. Anything else (a bug in a
    custom strategy or verifier) keeps its traceback, which is then the point.
    """
    if not isinstance(exc, ProviderError):
        return
    exc.__traceback__ = None
    exc.__suppress_context__ = True  # the implicit "during handling" chain is noise here
    cause, depth = exc.__cause__, 0
    while cause is not None and depth < 8:
        cause.__traceback__ = None
        cause.__suppress_context__ = True
        cause, depth = cause.__cause__, depth + 1


class ConfigError(TierwiseError, ValueError):
    """Invalid configuration. ``.field`` is the dotted path of the offending field
    (``models.opus.fallbacks[0]``), also leading the message."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        # A key pasted into the wrong field ("unknown provider 'sk-…'") must not be
        # repeated back: every config message is scrubbed, bare key shapes included.
        message = _BARE_KEY.sub("[REDACTED]", redact(message))
        if field:
            field = _BARE_KEY.sub("[REDACTED]", redact(field))
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        #: Every (field, message) found, when validation found several.
        self.problems: list[tuple[str, str]] = [(field or "", message)]
