"""Exact prompt sizes for admission, from the provider's token-counting endpoint.

A deployment with ``exact_token_counts`` asks its provider (``Provider.count_tokens``:
Anthropic ``count_tokens``, Gemini ``countTokens``, OpenAI Responses
``input_tokens``) for the prompt's real size before each try, so the rate limiter
reserves the true prompt (plus the expected output) and the budget reserves the
prompt at its real size instead of the heuristic's upper bound. Why it is off by
default: it is one more HTTP round trip before every try, which a chatty app pays
in latency for estimates the limiter already corrects as it learns.

A failed count never fails the call: the heuristic estimate is used instead (the
count is an optimisation, and a provider whose counting endpoint is down may still
answer), and the reason is logged at debug level.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ..errors import ProviderError

if TYPE_CHECKING:
    from ..types import Request
    from .deployment import Deployment

__all__ = ["exact_prompt_tokens"]

_log = logging.getLogger("tierwise.executor")


async def exact_prompt_tokens(dep: Deployment, request: Request) -> int | None:
    """The prompt size of ``request`` on ``dep`` as its provider counts it, or
    ``None`` (no endpoint for this model, or the count failed)."""
    provider = dep.provider
    if not provider.supports_token_counting(dep.model):
        return None
    try:
        return await provider.count_tokens(dep.model, request)
    except ProviderError as exc:
        _log.debug("token count for %r failed (%s); using the estimate", dep.alias, type(exc).__name__)
        return None
