"""What a failure looks like to a caller: status, error type per format, retry-after.

The library's exception tree is mapped once here, so both wire formats answer
the same failure with the same status (the SDKs turn the status into their own
exception class: 401 ``AuthenticationError``, 429 ``RateLimitError``, …).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import (
    AuthenticationError,
    BadRequestError,
    BudgetExceeded,
    ConfigError,
    ContentFiltered,
    NotFoundError,
    ProviderError,
    RateLimitError,
)
from ._common import BadInput

__all__ = ["Failure", "failure_for"]


@dataclass(frozen=True, slots=True)
class Failure:
    status: int
    message: str
    openai_type: str
    anthropic_type: str
    code: str | None = None
    param: str | None = None
    retry_after: float | None = None

    def retry_header(self) -> dict[str, str]:
        if self.retry_after is None:
            return {}
        return {"retry-after": str(max(1, math.ceil(self.retry_after)))}


def unauthorized() -> Failure:
    return Failure(
        401, "Invalid API key.", "invalid_request_error", "authentication_error", "invalid_api_key"
    )


def key_rate_limited(name: str, retry_after: float) -> Failure:
    return Failure(
        429,
        f"Rate limit reached for API key {name!r}: requests per minute. Retry after {retry_after:.1f}s.",
        "requests",
        "rate_limit_error",
        "rate_limit_exceeded",
        retry_after=retry_after,
    )


def unknown_model(name: str, known: list[str]) -> Failure:
    return Failure(
        404,
        f"The model {name!r} does not exist; served: {', '.join(known)}.",
        "invalid_request_error",
        "not_found_error",
        "model_not_found",
    )


def _leaf(exc: BaseException) -> BaseException:
    """The error that decided the outcome: the last attempt's, for a failed chain."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[-1]
    return exc


def failure_for(exc: BaseException) -> Failure:
    """The caller-facing failure for an exception raised while answering."""
    if isinstance(exc, BadInput):
        return Failure(400, str(exc), "invalid_request_error", "invalid_request_error", param=exc.param)
    if isinstance(exc, BudgetExceeded):
        return Failure(
            429,
            f"Budget exceeded for scope {exc.scope!r}.",
            "insufficient_quota",
            "rate_limit_error",
            "insufficient_quota",
        )
    if isinstance(exc, ConfigError):
        return Failure(400, str(exc), "invalid_request_error", "invalid_request_error")
    group = isinstance(exc, BaseExceptionGroup)
    leaf = _leaf(exc)
    if group and isinstance(exc, BaseExceptionGroup):
        # Every model rate limited: the caller should come back, after the soonest.
        leaves = [_leaf(e) for e in exc.exceptions]
        if leaves and all(isinstance(e, RateLimitError) for e in leaves):
            waits = [e.retry_after for e in leaves if isinstance(e, RateLimitError) and e.retry_after]
            return Failure(
                429,
                "Every model for this request is rate limited.",
                "requests",
                "rate_limit_error",
                "rate_limit_exceeded",
                retry_after=min(waits) if waits else 1.0,
            )
    if isinstance(leaf, RateLimitError):
        return Failure(
            429,
            str(leaf),
            "requests",
            "rate_limit_error",
            "rate_limit_exceeded",
            retry_after=leaf.retry_after,
        )
    if isinstance(leaf, ContentFiltered):
        return Failure(400, str(leaf), "invalid_request_error", "invalid_request_error", "content_filter")
    if isinstance(leaf, NotFoundError):
        return Failure(404, str(leaf), "invalid_request_error", "not_found_error", "model_not_found")
    if isinstance(leaf, BadRequestError):
        return Failure(400, str(leaf), "invalid_request_error", "invalid_request_error")
    if isinstance(leaf, AuthenticationError):
        # The upstream provider refused tierwise's key: the caller did nothing wrong.
        return Failure(
            502, "The upstream provider rejected the gateway's credentials.", "server_error", "api_error"
        )
    if isinstance(leaf, ProviderError):
        return Failure(502, str(leaf), "server_error", "api_error")
    name = type(leaf).__name__
    if name == "StateUnavailable":
        return Failure(503, str(leaf), "server_error", "overloaded_error")
    return Failure(500, f"{name}: the request failed inside the gateway.", "server_error", "api_error")
