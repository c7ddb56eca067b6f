"""The OpenAI Chat Completions and Embeddings formats, seen from the server side.

``providers/openai.py`` builds these requests and parses these replies; here it
is the other way round: a caller's body becomes a ``tierwise.Request`` and the
normalized ``Response`` (or the stream of events) is written back in the shape
the official SDKs parse, whatever provider really answered.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

from ..providers._gemini_request import google_extra, google_signature
from ..providers._render import openai_embeddings, openai_error
from ..types import Embeddings, Message, Request, Response, ToolCall, Usage
from ._common import BadInput, dumps, opt_float, opt_int

__all__ = ["OpenAIStream", "chat_request", "chat_response", "embeddings_response", "error_body"]

_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant", "tool": "tool"}


def _message(m: Any, i: int) -> Message:
    if not isinstance(m, Mapping):
        raise BadInput(f"messages[{i}] must be an object", param=f"messages[{i}]")
    role = _ROLES.get(m.get("role", ""))
    if role is None:
        raise BadInput(f"messages[{i}].role {m.get('role')!r} is not supported", param=f"messages[{i}].role")
    content = m.get("content")
    if content is not None and not isinstance(content, str | list):
        raise BadInput(f"messages[{i}].content must be a string or a list", param=f"messages[{i}].content")
    if isinstance(content, list) and all(isinstance(p, Mapping) and p.get("type") == "text" for p in content):
        # All-text parts are plain text to every provider; other parts pass through.
        content = "".join(str(p.get("text", "")) for p in content)
    calls: list[ToolCall] = []
    for j, tc in enumerate(m.get("tool_calls") or []):
        fn = tc.get("function") if isinstance(tc, Mapping) else None
        if not isinstance(fn, Mapping) or not isinstance(fn.get("name"), str):
            raise BadInput("tool call needs function.name", param=f"messages[{i}].tool_calls[{j}]")
        raw = fn.get("arguments") or "{}"
        try:
            args = json.loads(raw) if isinstance(raw, str) else dict(raw)
        except (ValueError, TypeError):
            raise BadInput("arguments are not JSON", param=f"messages[{i}].tool_calls[{j}]") from None
        calls.append(
            ToolCall(
                id=str(tc.get("id", "")),
                name=fn["name"],
                arguments=args if isinstance(args, dict) else {},
                raw_arguments=raw if isinstance(raw, str) else "",
                thought_signature=google_signature(tc),
            )
        )
    return Message(
        role=role,  # type: ignore[arg-type]
        content=content,
        name=m.get("name") if isinstance(m.get("name"), str) else None,
        tool_call_id=m.get("tool_call_id"),
        tool_calls=calls,
    )


def chat_request(body: Mapping[str, Any]) -> Request:
    """A Chat Completions body → ``Request`` (``BadInput`` names the bad field)."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadInput("messages must be a non-empty list", param="messages")
    stop = body.get("stop")
    if isinstance(stop, str):
        stop = [stop]
    elif stop is not None and not (isinstance(stop, list) and all(isinstance(s, str) for s in stop)):
        raise BadInput("stop must be a string or a list of strings", param="stop")
    tools = body.get("tools")
    if tools is not None and not isinstance(tools, list):
        raise BadInput("tools must be a list", param="tools")
    fmt = body.get("response_format")
    if fmt is not None and not isinstance(fmt, Mapping):
        raise BadInput("response_format must be an object", param="response_format")
    try:
        return Request(
            messages=[_message(m, i) for i, m in enumerate(messages)],
            max_tokens=opt_int(body, "max_completion_tokens") or opt_int(body, "max_tokens"),
            temperature=opt_float(body, "temperature"),
            top_p=opt_float(body, "top_p"),
            stop=stop,
            tools=tools or None,
            tool_choice=body.get("tool_choice"),
            parallel_tool_calls=body.get("parallel_tool_calls"),
            response_format=dict(fmt) if fmt else None,
            reasoning_effort=body.get("reasoning_effort"),
            seed=opt_int(body, "seed"),
            user=body.get("user") if isinstance(body.get("user"), str) else None,
        )
    except (TypeError, ValueError) as exc:
        raise BadInput(str(exc), param="tools") from None


def _usage(u: Usage) -> dict[str, Any]:
    return {
        "prompt_tokens": u.input_tokens,
        "completion_tokens": u.output_tokens,
        "total_tokens": u.input_tokens + u.output_tokens,
        "prompt_tokens_details": {"cached_tokens": u.cached_input_tokens},
        "completion_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
    }


def _finish(r: Response) -> str:
    # OpenAI has no "error" finish reason; a reply that ended in error is cut short.
    return "length" if r.finish_reason == "error" else r.finish_reason


def _tool_calls(calls: list[ToolCall]) -> list[dict[str, Any]]:
    out = []
    for c in calls:
        entry: dict[str, Any] = {
            "id": c.id,
            "type": "function",
            "function": {"name": c.name, "arguments": c.raw_arguments or json.dumps(c.arguments)},
        }
        if c.thought_signature:
            # Where Google's own OpenAI-compatible endpoint puts it: clients written for
            # that endpoint already send it back.
            entry["extra_content"] = google_extra(c.thought_signature)
        out.append(entry)
    return out


def chat_response(r: Response, rid: str) -> bytes:
    message: dict[str, Any] = {
        "role": "assistant",
        "content": r.text if r.text or not r.tool_calls else None,
        "refusal": None,
    }
    if r.tool_calls:
        message["tool_calls"] = _tool_calls(r.tool_calls)
    return dumps(
        {
            "id": f"chatcmpl-{rid}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": r.model,
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": _finish(r)}],
            "usage": _usage(r.usage),
        }
    )


class OpenAIStream:
    """Chat Completions chunks for one streamed answer. The answering model is only
    known when the stream ends, so content chunks carry the requested name and the
    closing chunks the model that answered."""

    def __init__(self, rid: str, model: str, include_usage: bool) -> None:
        self.model = model
        self.include_usage = include_usage
        self._created = int(time.time())
        self._id = f"chatcmpl-{rid}"
        self._tools_seen: set[int] = set()

    def _chunk(self, choices: list[dict[str, Any]], model: str | None = None, **extra: Any) -> bytes:
        obj: dict[str, Any] = {
            "id": self._id,
            "object": "chat.completion.chunk",
            "created": self._created,
            "model": model or self.model,
            "choices": choices,
        }
        obj.update(extra)
        return b"data: " + dumps(obj) + b"\n\n"

    def start(self) -> bytes:
        return self._chunk(
            [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]
        )

    def text(self, piece: str) -> bytes:
        return self._chunk([{"index": 0, "delta": {"content": piece}, "finish_reason": None}])

    def reasoning_item(self, item: Mapping[str, Any]) -> bytes:
        """Chat Completions has no field for a signed reasoning record: nothing to write."""
        return b""

    def reasoning(self, piece: str) -> bytes:
        return self._chunk([{"index": 0, "delta": {"reasoning_content": piece}, "finish_reason": None}])

    def tool(
        self, index: int, call_id: str | None, name: str | None, arguments: str, signature: str | None = None
    ) -> bytes:
        entry: dict[str, Any] = {"index": index, "function": {"arguments": arguments}}
        if index not in self._tools_seen:
            self._tools_seen.add(index)
            entry.update(id=call_id or f"call_{index}", type="function")
            entry["function"]["name"] = name or ""
        if signature:
            entry["extra_content"] = google_extra(signature)
        return self._chunk([{"index": 0, "delta": {"tool_calls": [entry]}, "finish_reason": None}])

    def end(self, r: Response, tierwise: Mapping[str, Any]) -> bytes:
        out = self._chunk(
            [{"index": 0, "delta": {}, "finish_reason": _finish(r)}], r.model, tierwise=tierwise
        )
        if self.include_usage:
            out += self._chunk([], r.model, usage=_usage(r.usage))
        return out + b"data: [DONE]\n\n"

    @staticmethod
    def error(status: int, message: str, etype: str, code: str | None = None) -> bytes:
        # The SDKs raise on a data event that carries "error" after HTTP 200.
        return b"data: " + error_body(status, message, etype, code) + b"\n\n"


def error_body(
    status: int, message: str, etype: str, code: str | None = None, param: str | None = None
) -> bytes:
    return dumps(openai_error(message, etype, param, code))


def embeddings_response(e: Embeddings, body: Mapping[str, Any]) -> bytes:
    b64 = body.get("encoding_format") == "base64"
    return dumps(openai_embeddings(e.model, e.vectors, e.usage.input_tokens, b64=b64))


def embedding_inputs(body: Mapping[str, Any]) -> list[str]:
    value = body.get("input")
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return list(value)
    raise BadInput("input must be a string or a non-empty list of strings", param="input")
