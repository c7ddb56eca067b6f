"""Reading a provider's reply metadata: rate-limit and retry headers, and error classes.

What ``Provider`` uses to turn a status, its headers and an error body into the
right ``ProviderError`` subclass with ``retry_after`` and rate-limit figures. Kept
apart from ``base.py`` (which re-exports these names) so that module reads as
the Provider contract and its HTTP calls; everything here is pure.

An adapter reads its own error body shape into an ``ErrorInfo``; the error object
itself is built in one place (``Provider._make_error``) for every adapter.
"""

from __future__ import annotations

import email.utils
import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ..errors import (
    AuthenticationError,
    BadRequestError,
    ContentFiltered,
    ContextWindowExceeded,
    NotFoundError,
    PermissionDeniedError,
    ProviderError,
    ProviderTimeout,
    RateLimitError,
    ServerError,
)
from ..types import RateLimitInfo

__all__ = [
    "ErrorInfo",
    "classify_error",
    "error_envelope",
    "parse_duration",
    "parse_rate_limit_headers",
    "parse_retry_after",
]

_CONTEXT_PATTERNS = re.compile(
    r"context[ _-]?length|context[ _-]?window|maximum context|prompt is too long"
    r"|too many tokens|input token count.*exceeds|exceeds the maximum number of tokens"
    r"|maximum number of tokens|reduce the length|too large for model|input is too long"
    r"|string_above_max_length|token limit|context limit",
    re.IGNORECASE,
)
_CONTENT_FILTER_CODES = frozenset(
    ("content_filter", "content_policy_violation", "content_filtered", "safety", "refusal")
)


# --------------------------------------------------------------------------- headers


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")


def seconds(value: float) -> float | None:
    """A duration from the wire as finite seconds >= 0, else ``None``.

    ``retry-after: inf``, ``nan``, ``1e999`` or a negative value is not a duration:
    passed on, it would freeze a limiter forever, crash it, or (negative) read as
    "retry at once" when the server said nothing usable. ``None`` means "no
    usable hint", which the executor treats as no ``Retry-After`` at all."""
    return float(value) if 0.0 <= value < math.inf else None


def parse_duration(value: str) -> float | None:
    """Parse OpenAI reset durations (``"1s"``, ``"6m0s"``, ``"20ms"``, ``"1h2m3.5s"``),
    plain seconds (``"12"``), or an RFC 3339 timestamp (Anthropic) into seconds from now.
    ``None`` for anything unparseable or not finite."""
    value = value.strip()
    if not value:
        return None
    number = _number(value)
    if number is not None:
        return number
    parts = _DURATION_PART.findall(value)
    if parts and "".join(n + u for n, u in parts) == value:
        scale = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
        return seconds(sum(float(n) * scale[u] for n, u in parts))
    try:
        return _until(datetime.fromisoformat(value.replace("Z", "+00:00")))
    except ValueError:
        return None


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait, from ``retry-after-ms``, or ``retry-after`` in seconds or as
    an HTTP date. ``None`` when absent or unparseable."""
    ms = headers.get("retry-after-ms")
    found = _number(ms, 1000.0) if ms else None
    if found is not None:
        return found
    value = headers.get("retry-after")
    if not value:
        return None
    found = _number(value)
    if found is not None:
        return found
    try:
        return _until(email.utils.parsedate_to_datetime(value))
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def _number(value: str, per_second: float = 1.0) -> float | None:
    """A plain number of seconds (or of ``1/per_second`` units), ``None`` when it is
    not one or not a usable duration (then no other reading of it is one either)."""
    try:
        return seconds(float(value) / per_second)
    except (ValueError, OverflowError):
        return None


def _until(when: datetime) -> float:
    """Seconds from now until ``when`` (naive means UTC), never negative."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - time.time())


def _int(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        number = float(value)
        return int(number) if 0 <= number < 1e15 else None
    except (ValueError, OverflowError):
        return None


def parse_rate_limit_headers(headers: Mapping[str, str]) -> RateLimitInfo | None:
    """OpenAI-style ``x-ratelimit-*`` and Anthropic ``anthropic-ratelimit-*`` headers.

    For Anthropic the request and (combined) token buckets are used; when only the
    separate input/output token buckets are present the input bucket is used, as it
    is the one a large prompt exhausts first.
    """
    get = headers.get
    if get("x-ratelimit-limit-requests") is not None or get("x-ratelimit-remaining-tokens") is not None:
        rr = get("x-ratelimit-reset-requests")
        rt = get("x-ratelimit-reset-tokens")
        return RateLimitInfo(
            requests_limit=_int(get("x-ratelimit-limit-requests")),
            requests_remaining=_int(get("x-ratelimit-remaining-requests")),
            requests_reset_s=parse_duration(rr) if rr else None,
            tokens_limit=_int(get("x-ratelimit-limit-tokens")),
            tokens_remaining=_int(get("x-ratelimit-remaining-tokens")),
            tokens_reset_s=parse_duration(rt) if rt else None,
        )
    if (
        get("anthropic-ratelimit-requests-limit") is not None
        or get("anthropic-ratelimit-tokens-limit") is not None
        or get("anthropic-ratelimit-input-tokens-limit") is not None
    ):
        tok = "tokens" if get("anthropic-ratelimit-tokens-limit") is not None else "input-tokens"
        rr = get("anthropic-ratelimit-requests-reset")
        rt = get(f"anthropic-ratelimit-{tok}-reset")
        return RateLimitInfo(
            requests_limit=_int(get("anthropic-ratelimit-requests-limit")),
            requests_remaining=_int(get("anthropic-ratelimit-requests-remaining")),
            requests_reset_s=parse_duration(rr) if rr else None,
            tokens_limit=_int(get(f"anthropic-ratelimit-{tok}-limit")),
            tokens_remaining=_int(get(f"anthropic-ratelimit-{tok}-remaining")),
            tokens_reset_s=parse_duration(rt) if rt else None,
        )
    return None


def classify_error(
    status: int | None, message: str, error_type: str | None, error_code: str | None
) -> type[ProviderError]:
    """Pick the exception class from HTTP status and the provider's error type/code.

    ``status`` is ``None`` for in-band errors (an ``error`` event in a stream that
    started with HTTP 200), which are classified by type alone.
    """
    kind = f"{error_type or ''} {error_code or ''}".lower()
    filtered = (error_code or "").lower() in _CONTENT_FILTER_CODES or (
        error_type or ""
    ).lower() in _CONTENT_FILTER_CODES
    if status is None:
        if "insufficient_quota" in kind:
            return RateLimitError
        if "overloaded" in kind or "unavailable" in kind:
            return ServerError
        if "rate_limit" in kind or "resource_exhausted" in kind or "too_many" in kind:
            return RateLimitError
        if "invalid_request" in kind or "invalid_argument" in kind:
            status = 400
        elif "authentication" in kind:
            status = 401
        elif "permission" in kind:
            status = 403
        elif "not_found" in kind:
            status = 404
        elif "timeout" in kind or "deadline" in kind:
            return ProviderTimeout
        else:
            return ServerError
    if filtered and status in (400, 403, 422):
        return ContentFiltered
    if status in (400, 413, 422) or (400 <= status < 500 and status not in (401, 403, 404, 408, 409, 429)):
        if _CONTEXT_PATTERNS.search(message) or _CONTEXT_PATTERNS.search(kind):
            return ContextWindowExceeded
        return BadRequestError
    if status == 401:
        return AuthenticationError
    if status == 403:
        return PermissionDeniedError
    if status == 404:
        return NotFoundError
    if status == 408:
        return ProviderTimeout
    if status == 429:
        return RateLimitError
    return ServerError  # 409, 5xx, 529 and anything unexpected


@dataclass(slots=True)
class ErrorInfo:
    """What an adapter read from an error body (HTTP error or in-band error event).

    ``status`` is the HTTP-equivalent status the body states (OpenRouter's numeric
    ``code``, Google's ``error.code``), used to classify an in-band error, which has
    no HTTP status of its own. ``retry_after`` and ``request_id`` count when the
    headers carry none. ``retryable`` and ``cls`` override the shared rules when the
    body says more than the status does (a moderation verdict behind a 403).
    """

    message: str = ""
    error_type: str | None = None
    error_code: str | None = None
    status: int | None = None
    retry_after: float | None = None
    retryable: bool | None = None
    request_id: str | None = None
    cls: type[ProviderError] | None = None


def error_envelope(data: Any) -> tuple[str, str | None, str | None]:
    """(message, type, code) from the common ``{"error": {"message", "type", "code"}}``
    and ``{"error": "text"}`` error body shapes."""
    err = data.get("error", data) if isinstance(data, dict) else None
    if isinstance(err, str):
        return err, None, None
    if isinstance(err, dict):
        msg = err.get("message") or err.get("msg") or data.get("message") or ""
        etype = err.get("type") or err.get("status")
        code = err.get("code")
        return str(msg), None if etype is None else str(etype), None if code is None else str(code)
    return "", None, None
