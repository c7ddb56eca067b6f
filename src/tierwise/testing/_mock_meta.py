"""The mock server's routes besides generation: model lists and retrieval in each
provider's shape, ``/health``, ``/_mock/stats`` (traffic counters a test in another
process can read), provider-shaped 404s, and the legacy ``/v1/completions``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from ._mock_fidelity import choices_of, completion_body, model_list, model_object, not_found_body
from ._mock_http import _LAST_CHUNK, _SSE, _frame, _head, _json_reply, _Op

if TYPE_CHECKING:
    from ._mock_model import MockRequest, _ModelState
    from .mock_server import MockLLMServer

__all__ = ["caller_provider", "completions_reply", "meta_reply", "not_found_reply", "stats"]

_GEMINI_MODELS = ("/v1beta/models", "/v1/models", "/v1alpha/models")


def _dumps(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":")).encode()


def caller_provider(path: str, headers: Mapping[str, str]) -> str:
    """Which provider's client is asking: Gemini by its versioned paths or key header,
    Anthropic by its version header, otherwise OpenAI."""
    if path.startswith(("/v1beta/", "/v1alpha/")) or "x-goog-api-key" in headers:
        return "gemini"
    if "anthropic-version" in headers:
        return "anthropic"
    return "openai"


def not_found_reply(method: str, path: str, headers: Mapping[str, str], close: bool) -> list[_Op]:
    provider = caller_provider(path, headers)
    body = not_found_body(provider, f"Invalid URL ({method} {path})")
    return _json_reply(404, _dumps(body), (), close)


def meta_reply(
    server: MockLLMServer, method: str, path: str, headers: Mapping[str, str], close: bool
) -> list[_Op] | None:
    """The reply to a non-generation GET, or ``None`` when ``path`` is not one."""
    if method != "GET":
        return None
    if path == "/health":
        return _json_reply(200, b'{"status":"ok"}', (), close)
    if path == "/_mock/stats":
        return _json_reply(200, _dumps(stats(server)), (), close)
    provider = caller_provider(path, headers)
    names = list(server.models)
    if path in ("/v1/models", "/models") or (provider == "gemini" and path in _GEMINI_MODELS):
        return _json_reply(200, _dumps(model_list(provider, names)), (), close)
    for prefix in ("/v1/models/", "/models/", "/v1beta/models/", "/v1alpha/models/"):
        if path.startswith(prefix) and ":" not in path:
            name = path[len(prefix) :]
            if name in server.models or server._default is not None:
                return _json_reply(200, _dumps(model_object(provider, name)), (), close)
            body = not_found_body(provider, f"model: {name}")
            return _json_reply(404, _dumps(body), (), close)
    return None


def stats(server: MockLLMServer) -> dict[str, Any]:
    """Counters for tests that cannot reach the server object (another process)."""
    return {
        "requests": server._seq,
        "paths": dict(server._paths),
        "unanswered": server._unanswered,
        "models": {name: asdict(s) for name, s in server.stats.items()},
        "batches": {
            "batches": len(server.batches.batches),
            "submitted_items": sum(server.batches.submitted.values()),
        },
    }


def completions_reply(
    state: _ModelState,
    rec: MockRequest,
    data: dict[str, Any],
    close: bool,
    headers: list[tuple[str, str]],
    seq: int,
    answer: Callable[..., Any],
) -> list[_Op]:
    """The legacy ``/v1/completions``: the model's answer to ``prompt``, JSON or SSE."""
    prompt = data.get("prompt")
    text_in = prompt if isinstance(prompt, str) else " ".join(p for p in prompt or [] if isinstance(p, str))
    chat = {"messages": [{"role": "user", "content": text_in}], "max_tokens": data.get("max_tokens")}
    from ._mock_wire import _OPENAI

    a = answer(state, rec, chat, _OPENAI, seq)
    n = choices_of(data)
    created = int(time.time())
    state.stats.requests += 1
    state.stats.ok += 1
    if data.get("stream") is not True:
        body = completion_body(a.model, a.text, n, seq, created, (a.input_tokens, a.output_tokens))
        return _json_reply(200, _dumps(body), headers, close)
    state.stats.streamed += 1
    base = {"id": f"cmpl-mock{seq}", "object": "text_completion", "created": created, "model": a.model}
    events = [
        b"data: "
        + _dumps(base | {"choices": [{"text": a.text, "index": i, "logprobs": None, "finish_reason": None}]})
        for i in range(n)
    ]
    events += [
        b"data: "
        + _dumps(base | {"choices": [{"text": "", "index": i, "logprobs": None, "finish_reason": "stop"}]})
        for i in range(n)
    ]
    events.append(b"data: [DONE]")
    head = _head(200, _SSE, None, headers, close)
    return [head + b"".join(_frame(e + b"\n\n") for e in events) + _LAST_CHUNK]
