"""The mock server's OpenAI Responses API (``POST /v1/responses``), JSON and SSE.

A reply is a list of typed output items: a ``reasoning`` item when the model has
``thinking`` text (with ``encrypted_content`` when the request asks for
``include: ["reasoning.encrypted_content"]``, as the real API does), then a
``message`` with ``output_text``, then one ``function_call`` per scripted tool
call. Streams send the event sequence the real API sends (``response.created``,
``response.output_item.added``, ``response.reasoning_summary_text.delta``,
``response.output_text.delta``, ``response.function_call_arguments.delta``,
``response.output_item.done``, ``response.completed``, each numbered by
``sequence_number``), which the official ``openai`` SDK parses into its typed events.

Ids and the encrypted reasoning are derived from the answer, not the request
number, so the same answer streamed and non-streamed compares equal; the
encrypted content is a deterministic opaque string a test can look for in the
next request (it must come back unchanged).
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from typing import Any

from ._mock_http import _dumps
from ._mock_wire_core import _Answer, _Events, _OpenAIWire, _pieces, _tool_id

__all__ = ["RESPONSES", "encrypted_reasoning", "responses_problem"]


def encrypted_reasoning(model: str, thinking: str) -> str:
    """The opaque ``encrypted_content`` the mock issues for ``thinking`` on ``model``."""
    digest = hashlib.sha256(f"{model}\0{thinking}".encode()).digest()
    return "gAAAAB" + base64.urlsafe_b64encode(digest * 2).decode().rstrip("=")


def responses_problem(data: Mapping[str, Any]) -> str | None:
    """Why the real Responses API would answer 400 to this body, or ``None``."""
    value = data.get("input")
    if value is None and not data.get("previous_response_id"):
        return "Missing required parameter: 'input'."
    if isinstance(value, list):
        for i, item in enumerate(value):
            if not isinstance(item, Mapping):
                return f"Invalid type for 'input[{i}]': expected an object."
            kind = item.get("type", "message")
            if kind == "message" and item.get("role") not in ("user", "assistant", "system", "developer"):
                return (
                    f"Invalid value: {item.get('role')!r}. Supported values are: 'assistant', "
                    "'system', 'developer', and 'user'."
                )
            if kind == "function_call_output" and not item.get("call_id"):
                return f"Missing required parameter: 'input[{i}].call_id'."
            call_id = item.get("call_id")
            if (
                kind in ("function_call", "function_call_output")
                and isinstance(call_id, str)
                and len(call_id) > 64
            ):
                return (
                    f"Invalid 'input[{i}].call_id': string too long. Expected a string with maximum "
                    f"length 64, but got a string with length {len(call_id)} instead."
                )
            if kind == "reasoning" and not isinstance(item.get("summary"), list):
                return f"Missing required parameter: 'input[{i}].summary'."
    elif not isinstance(value, str) and value is not None:
        return "Invalid type for 'input': expected a string or an array of input items."
    return None


class _ResponsesWire(_OpenAIWire):
    name = "responses"

    @staticmethod
    def _ids(a: _Answer) -> tuple[str, str]:
        digest = hashlib.sha1(f"{a.model}\0{a.text}\0{a.thinking}".encode()).hexdigest()
        return f"rs_mock{digest[:24]}", f"msg_mock{digest[:24]}"

    def _usage_obj(self, a: _Answer) -> dict[str, Any]:
        return {
            "input_tokens": a.input_tokens,
            "input_tokens_details": {"cached_tokens": a.cached},
            "output_tokens": a.output_tokens,
            "output_tokens_details": {"reasoning_tokens": a.reasoning},
            "total_tokens": a.input_tokens + a.output_tokens,
        }

    def _reasoning_item(self, a: _Answer, done: bool) -> dict[str, Any]:
        rs_id, _ = self._ids(a)
        item: dict[str, Any] = {
            "id": rs_id,
            "type": "reasoning",
            "summary": [{"type": "summary_text", "text": a.thinking}] if done else [],
        }
        if a.opaque:
            item["encrypted_content"] = encrypted_reasoning(a.model, a.thinking)
        return item

    def _message_item(self, a: _Answer, text: str, done: bool) -> dict[str, Any]:
        _, msg_id = self._ids(a)
        return {
            "id": msg_id,
            "type": "message",
            "status": "completed" if done else "in_progress",
            "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]
            if done
            else [],
        }

    @staticmethod
    def _call_item(i: int, name: str, args: Mapping[str, Any], done: bool) -> dict[str, Any]:
        call_id = _tool_id("call_", i, name, dict(args))
        return {
            "id": "fc_" + call_id[5:],
            "type": "function_call",
            "status": "completed" if done else "in_progress",
            "call_id": call_id,
            "name": name,
            "arguments": json.dumps(args) if done else "",
        }

    def _output(self, a: _Answer) -> list[dict[str, Any]]:
        output: list[dict[str, Any]] = []
        if a.thinking:
            output.append(self._reasoning_item(a, True))
        if a.text or not a.tools:
            output.append(self._message_item(a, a.text, True))
        output += [self._call_item(i, n, g, True) for i, (n, g) in enumerate(a.tools)]
        return output

    def _response(self, a: _Answer, output: list[dict[str, Any]], status: str) -> dict[str, Any]:
        done = status != "in_progress"
        cut = a.finish == "length" and not a.tools
        return {
            "id": f"resp_mock{a.seq:08d}",
            "object": "response",
            "created_at": a.created,
            "status": ("incomplete" if cut else "completed") if done else status,
            "error": None,
            "incomplete_details": {"reason": "max_output_tokens"} if cut and done else None,
            "instructions": None,
            "max_output_tokens": None,
            "model": a.model,
            "output": output,
            "parallel_tool_calls": True,
            "previous_response_id": None,
            "reasoning": {"effort": None, "summary": None},
            "store": False,
            "temperature": 1.0,
            "text": {"format": {"type": "text"}},
            "tool_choice": "auto",
            "tools": [],
            "top_p": 1.0,
            "truncation": "disabled",
            "usage": self._usage_obj(a) if done else None,
            "user": None,
            "metadata": {},
        }

    def reply_json(self, a: _Answer) -> bytes:
        return _dumps(self._response(a, self._output(a), "completed"))

    def reply_stream(self, a: _Answer, body: Mapping[str, Any]) -> _Events:
        seq = 0

        def ev(kind: str, data: dict[str, Any]) -> bytes:
            nonlocal seq
            payload = {"type": kind, "sequence_number": seq, **data}
            seq += 1
            return b"event: " + kind.encode() + b"\ndata: " + _dumps(payload) + b"\n\n"

        pre = [
            ev("response.created", {"response": self._response(a, [], "in_progress")}),
            ev("response.in_progress", {"response": self._response(a, [], "in_progress")}),
        ]
        content: list[bytes] = []
        index = 0
        if a.thinking:
            item = self._reasoning_item(a, False)
            rs = {"item_id": item["id"], "output_index": index, "summary_index": 0}
            content.append(
                ev("response.output_item.added", {"output_index": index, "item": item})
                + ev(
                    "response.reasoning_summary_part.added",
                    {**rs, "part": {"type": "summary_text", "text": ""}},
                )
            )
            for piece in _pieces(a.thinking, a.chunk_chars):
                content.append(ev("response.reasoning_summary_text.delta", {**rs, "delta": piece}))
            content[-1] += (
                ev("response.reasoning_summary_text.done", {**rs, "text": a.thinking})
                + ev(
                    "response.reasoning_summary_part.done",
                    {**rs, "part": {"type": "summary_text", "text": a.thinking}},
                )
                + ev(
                    "response.output_item.done",
                    {"output_index": index, "item": self._reasoning_item(a, True)},
                )
            )
            index += 1
        if a.text or not a.tools:
            item = self._message_item(a, "", False)
            ref = {"item_id": item["id"], "output_index": index, "content_index": 0}
            part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
            content.append(
                ev("response.output_item.added", {"output_index": index, "item": item})
                + ev("response.content_part.added", {**ref, "part": part})
            )
            for piece in _pieces(a.text, a.chunk_chars):
                content.append(ev("response.output_text.delta", {**ref, "delta": piece, "logprobs": []}))
            content[-1] += (
                ev("response.output_text.done", {**ref, "text": a.text, "logprobs": []})
                + ev("response.content_part.done", {**ref, "part": {**part, "text": a.text}})
                + ev(
                    "response.output_item.done",
                    {"output_index": index, "item": self._message_item(a, a.text, True)},
                )
            )
            index += 1
        for i, (name, args) in enumerate(a.tools):
            item = self._call_item(i, name, args, False)
            ref = {"item_id": item["id"], "output_index": index}
            content.append(ev("response.output_item.added", {"output_index": index, "item": item}))
            arguments = json.dumps(args)
            for frag in _pieces(arguments, a.chunk_chars):
                content.append(ev("response.function_call_arguments.delta", {**ref, "delta": frag}))
            content[-1] += ev(
                "response.function_call_arguments.done", {**ref, "name": name, "arguments": arguments}
            ) + ev(
                "response.output_item.done",
                {"output_index": index, "item": self._call_item(i, name, args, True)},
            )
            index += 1
        final = self._response(a, self._output(a), "completed")
        kind = "response.incomplete" if final["status"] == "incomplete" else "response.completed"
        return pre, content, [ev(kind, {"response": final})]

    def inband_error(self) -> bytes:
        return (
            b'event: error\ndata: {"type":"error","sequence_number":99,"code":"server_error",'
            b'"message":"The server had an error while processing your request. Sorry about that!",'
            b'"param":null}\n\n'
        )

    def malformed_event(self, a: _Answer) -> bytes:
        return b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta","delta":"\n\n'


RESPONSES = _ResponsesWire()
