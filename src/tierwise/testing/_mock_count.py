"""The mock server's token-counting endpoints: Anthropic ``POST /v1/messages/count_tokens``,
Gemini ``models/{model}:countTokens`` and OpenAI ``POST /v1/responses/input_tokens``.

The count is the model's fixed ``input_tokens`` when it has one, else the server's
usual estimate of the prompt (~4 characters a token): the same number a generation
request for that body would report as its input, which is what a client that counts
before calling (tierwise's ``exact_token_counts``) relies on. Counting requests are
free and never drawn a fault, as at the real APIs; they show in ``/_mock/stats``
under their path and in each model's ``token_counts``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ._mock_http import _json_reply, _Op
from ._mock_model import MockRequest, _ModelState, _prompt_text, estimate_tokens

__all__ = ["count_problem", "count_reply"]

#: Fields Anthropic's count_tokens accepts; anything else is "Extra inputs are not permitted".
_ANTHROPIC_FIELDS = frozenset(
    {"model", "messages", "system", "tools", "tool_choice", "thinking", "mcp_servers", "output_config"}
)


def count_problem(provider: str, data: Mapping[str, Any]) -> str | None:
    """Why the real counting endpoint would answer 400 to this body, or ``None``."""
    if provider == "anthropic":
        extra = sorted(set(data) - _ANTHROPIC_FIELDS)
        if extra:
            return f"{extra[0]}: Extra inputs are not permitted"
        messages = data.get("messages")
        if not isinstance(messages, list) or not messages:
            return "messages: Field required"
        return None
    if provider == "gemini":
        inner = data.get("generateContentRequest")
        if "contents" in data and inner is not None:
            return "* CountTokensRequest: contents and generate_content_request are mutually exclusive"
        contents = inner.get("contents") if isinstance(inner, Mapping) else data.get("contents")
        if not isinstance(contents, list) or not contents:
            return "* CountTokensRequest.contents: contents is not specified"
        return None
    for key in ("max_output_tokens", "stream", "store", "include"):
        if key in data:
            return f"Unknown parameter: '{key}'."
    return None


def count_reply(
    provider: str,
    state: _ModelState,
    rec: MockRequest,
    data: dict[str, Any],
    close: bool,
    headers: list[tuple[str, str]],
) -> list[_Op]:
    """The provider's count reply for ``data`` on the model of ``state``."""
    state.stats.token_counts += 1
    fixed = state.model.input_tokens
    if fixed is not None:
        tokens = fixed
    else:
        inner = data.get("generateContentRequest") if provider == "gemini" else None
        body = inner if isinstance(inner, dict) else data
        tokens = max(1, estimate_tokens(_prompt_text(provider, body)))
    reply: dict[str, Any]
    if provider == "anthropic":
        reply = {"input_tokens": tokens}
    elif provider == "gemini":
        reply = {"totalTokens": tokens, "promptTokensDetails": [{"modality": "TEXT", "tokenCount": tokens}]}
    else:
        reply = {"object": "response.input_tokens", "input_tokens": tokens}
    return _json_reply(200, json.dumps(reply, separators=(",", ":")).encode(), headers, close)
