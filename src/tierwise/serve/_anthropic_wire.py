"""The Anthropic Messages format, seen from the server side.

A caller's ``/v1/messages`` body becomes a ``tierwise.Request`` (content blocks,
``tool_use``/``tool_result`` turns, top-level ``system``, ``tool_choice``), and
the normalized answer is written back as a Message object or its event stream
(``message_start`` … ``message_stop``), whichever provider answered.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ..providers._anthropic_request import THINKING_TYPES, thinking_blocks
from ..providers._render import anthropic_error
from ..types import Message, Request, Response, ToolCall, Usage
from ._common import BadInput, dumps, opt_float, opt_int

__all__ = ["AnthropicStream", "error_body", "messages_request", "messages_response"]

_STOP = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "content_filter": "refusal"}
_CHOICE = {"auto": "auto", "any": "required", "none": "none"}


def _text(blocks: Any, where: str) -> str | list[dict[str, Any]]:
    if isinstance(blocks, str):
        return blocks
    if not isinstance(blocks, list):
        raise BadInput(f"{where} must be a string or a list of content blocks", param=where)
    if all(isinstance(b, Mapping) and b.get("type") == "text" for b in blocks):
        return "".join(str(b.get("text", "")) for b in blocks)
    return [dict(b) for b in blocks if isinstance(b, Mapping)]


def _turns(m: Any, i: int) -> list[Message]:
    """One Anthropic turn → tierwise messages: tool results become ``tool`` messages
    (one per result, as every other format has them) and tool_use blocks tool calls."""
    where = f"messages[{i}]"
    if not isinstance(m, Mapping) or m.get("role") not in ("user", "assistant"):
        raise BadInput(f"{where}.role must be 'user' or 'assistant'", param=f"{where}.role")
    role = m["role"]
    content = m.get("content")
    if isinstance(content, str):
        return [Message(role, content)]
    if not isinstance(content, list):
        raise BadInput(f"{where}.content must be a string or a list", param=f"{where}.content")
    out: list[Message] = []
    texts: list[Any] = []
    calls: list[ToolCall] = []
    thinking: list[dict[str, Any]] = []
    for block in content:
        if not isinstance(block, Mapping):
            raise BadInput(f"{where}.content has a non-object block", param=f"{where}.content")
        kind = block.get("type")
        if kind in THINKING_TYPES and role == "assistant":
            # Signed blocks go back to Anthropic unchanged (its adapter sends them first);
            # every other provider's adapter leaves them out.
            thinking.append(dict(block))
        elif kind == "tool_result":
            out.append(
                Message(
                    "tool",
                    _text(block.get("content", ""), f"{where}.content"),
                    tool_call_id=str(block.get("tool_use_id", "")),
                )
            )
        elif kind == "tool_use":
            args = block.get("input")
            calls.append(
                ToolCall(
                    id=str(block.get("id", "")),
                    name=str(block.get("name", "")),
                    arguments=dict(args) if isinstance(args, Mapping) else {},
                )
            )
        else:
            texts.append(block)
    if texts or calls or thinking:
        body = _text(texts, f"{where}.content") if texts else ""
        out.append(Message(role, body, tool_calls=calls, reasoning_items=thinking))
    return out


def _tool_choice(choice: Any) -> str | dict[str, Any] | None:
    if choice is None:
        return None
    if not isinstance(choice, Mapping):
        raise BadInput("tool_choice must be an object", param="tool_choice")
    kind = choice.get("type")
    if kind == "tool":
        return {"type": "function", "function": {"name": str(choice.get("name", ""))}}
    if kind in _CHOICE:
        return _CHOICE[kind]
    raise BadInput(f"unknown tool_choice type {kind!r}", param="tool_choice")


def messages_request(body: Mapping[str, Any]) -> Request:
    """A Messages body → ``Request`` (``BadInput`` names the bad field)."""
    raw = body.get("messages")
    if not isinstance(raw, list) or not raw:
        raise BadInput("messages: must be a non-empty list", param="messages")
    max_tokens = opt_int(body, "max_tokens")
    if max_tokens is None:
        raise BadInput("max_tokens: Field required", param="max_tokens")
    messages: list[Message] = []
    system = body.get("system")
    if system:
        messages.append(Message("system", _text(system, "system")))
    for i, m in enumerate(raw):
        messages.extend(_turns(m, i))
    stop = body.get("stop_sequences")
    if stop is not None and not (isinstance(stop, list) and all(isinstance(s, str) for s in stop)):
        raise BadInput("stop_sequences must be a list of strings", param="stop_sequences")
    tools = body.get("tools")
    if tools is not None and not isinstance(tools, list):
        raise BadInput("tools must be a list", param="tools")
    thinking = body.get("thinking")
    budget = thinking.get("budget_tokens") if isinstance(thinking, Mapping) else None
    try:
        return Request(
            messages=messages,
            max_tokens=max_tokens,
            temperature=opt_float(body, "temperature"),
            top_p=opt_float(body, "top_p"),
            stop=stop,
            tools=tools or None,
            tool_choice=_tool_choice(body.get("tool_choice")),
            thinking_budget=budget if isinstance(budget, int) else None,
        )
    except (TypeError, ValueError) as exc:
        raise BadInput(str(exc), param="tools") from None


def _usage(u: Usage, output: int | None = None) -> dict[str, Any]:
    # Anthropic's input_tokens excludes cache reads and writes; tierwise's is the whole prompt.
    return {
        "input_tokens": max(0, u.input_tokens - u.cached_input_tokens - u.cache_write_tokens),
        "cache_creation_input_tokens": u.cache_write_tokens,
        "cache_read_input_tokens": u.cached_input_tokens,
        "output_tokens": u.output_tokens if output is None else output,
    }


def _stop(r: Response) -> str:
    return _STOP.get(r.finish_reason, "end_turn")


def messages_response(r: Response, rid: str) -> bytes:
    content: list[dict[str, Any]] = []
    native = thinking_blocks(r.reasoning_items)
    if native:
        content.extend(native)
    elif r.reasoning:
        # Another provider's reasoning (DeepSeek, Gemini thoughts): readable, but there is
        # no Anthropic signature to give it, so it cannot be sent back to Anthropic.
        content.append({"type": "thinking", "thinking": r.reasoning, "signature": ""})
    if r.text or not r.tool_calls:
        content.append({"type": "text", "text": r.text})
    for c in r.tool_calls:
        content.append({"type": "tool_use", "id": c.id, "name": c.name, "input": c.arguments})
    return dumps(
        {
            "id": f"msg_{rid}",
            "type": "message",
            "role": "assistant",
            "model": r.model,
            "content": content,
            "stop_reason": _stop(r),
            "stop_sequence": None,
            "usage": _usage(r.usage),
        }
    )


def _event(name: str, data: Mapping[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + dumps(data) + b"\n\n"


class AnthropicStream:
    """Messages stream events for one answer. Content blocks are opened as their
    first delta arrives (text, then each tool call), and closed in order."""

    def __init__(self, rid: str, model: str) -> None:
        self.model = model
        self._id = f"msg_{rid}"
        self._open: str | None = None  # "text" | "thinking" | "tool:<i>"
        self._index = -1

    def start(self) -> bytes:
        message: dict[str, Any] = {
            "id": self._id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 0, "output_tokens": 0},
        }
        return _event("message_start", {"type": "message_start", "message": message})

    def _switch(self, key: str, block: dict[str, Any]) -> bytes:
        if self._open == key:
            return b""
        out = self._close()
        self._index += 1
        self._open = key
        return out + _event(
            "content_block_start",
            {"type": "content_block_start", "index": self._index, "content_block": block},
        )

    def _close(self) -> bytes:
        if self._open is None:
            return b""
        self._open = None
        return _event("content_block_stop", {"type": "content_block_stop", "index": self._index})

    def _delta(self, delta: dict[str, Any]) -> bytes:
        return _event(
            "content_block_delta", {"type": "content_block_delta", "index": self._index, "delta": delta}
        )

    def text(self, piece: str) -> bytes:
        head = self._switch("text", {"type": "text", "text": ""})
        return head + self._delta({"type": "text_delta", "text": piece})

    def reasoning(self, piece: str) -> bytes:
        head = self._switch("thinking", {"type": "thinking", "thinking": ""})
        return head + self._delta({"type": "thinking_delta", "thinking": piece})

    def reasoning_item(self, item: Mapping[str, Any]) -> bytes:
        """A provider-native record, complete: a thinking block's signature goes on the
        thinking block being written (then the block ends, as Anthropic ends it); a
        redacted_thinking block is a block of its own."""
        kind = item.get("type")
        if kind == "thinking":
            signature = item.get("signature")
            if not isinstance(signature, str) or not signature:
                return b""
            head = self._switch("thinking", {"type": "thinking", "thinking": ""})
            return head + self._delta({"type": "signature_delta", "signature": signature}) + self._close()
        if kind == "redacted_thinking":
            head = self._switch(f"redacted:{self._index + 1}", dict(item))
            return head + self._close()
        return b""  # another provider's record: nothing Anthropic's format can carry

    def tool(
        self, index: int, call_id: str | None, name: str | None, arguments: str, signature: str | None = None
    ) -> bytes:
        # ``signature`` (Gemini's, on a call): this format carries it otherwise, or not at all.
        block = {"type": "tool_use", "id": call_id or f"toolu_{index}", "name": name or "", "input": {}}
        head = self._switch(f"tool:{index}", block)
        if not arguments:
            return head
        return head + self._delta({"type": "input_json_delta", "partial_json": arguments})

    def end(self, r: Response, tierwise: Mapping[str, Any]) -> bytes:
        out = self._close()
        if self._index < 0:
            # An empty answer still has one (empty) text block, as Anthropic sends it.
            out += self.text("") + self._close()
        delta = {"type": "message_delta", "delta": {"stop_reason": _stop(r), "stop_sequence": None}}
        out += _event(
            "message_delta", {**delta, "usage": _usage(r.usage), "tierwise": {**tierwise, "model": r.model}}
        )
        return out + _event("message_stop", {"type": "message_stop"})

    @staticmethod
    def error(status: int, message: str, etype: str, code: str | None = None) -> bytes:
        return _event("error", json.loads(error_body(status, message, etype)))


def error_body(
    status: int, message: str, etype: str, code: str | None = None, param: str | None = None
) -> bytes:
    return dumps(anthropic_error(etype, message))
