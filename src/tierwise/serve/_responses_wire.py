"""The OpenAI Responses format (``POST /v1/responses``), seen from the server side.

``providers/_responses.py`` speaks this format as a client; here a caller's body
(``input`` items, ``instructions``, flat function tools, ``text.format``) becomes a
``tierwise.Request`` and the normalized answer is written back as a Response
object or its event stream, whichever provider answered.

Choices, and why:

* **Stateless.** The gateway keeps nothing between requests (it falls back across
  providers and would have to replay state from one of them), so everything that
  needs a stored response or conversation (``previous_response_id``,
  ``conversation``, ``background``, ``prompt`` templates, ``item_reference``
  input items) is refused with a 400 naming the field, never ignored: ignoring it
  would answer a different question than the one asked. ``store`` is accepted and
  ignored: nothing is stored whatever its value, and the only way a caller could
  rely on storage (``previous_response_id``) is refused.
* **Unknown parameters are refused**, as OpenAI refuses them: a misspelt field must
  not silently change nothing.
* **Reasoning items travel in the caller's conversation.** OpenAI's own reasoning
  items (with ``encrypted_content``) are relayed unchanged and come back unchanged
  in ``input``. An Anthropic thinking block must also come back signed before a
  tool result (Anthropic rejects the turn otherwise), and a Responses client has
  only reasoning items to carry it in: it is written as a reasoning item whose
  ``encrypted_content`` is the block itself (``tierwise.anthropic:`` + base64 of
  its JSON), decoded again on the way in. Other providers' reasoning text (no
  signature) becomes a summary-only item, which is dropped when it comes back:
  nobody can verify it, and OpenAI rejects a reasoning item it does not know.
  Gemini signs function calls (``thoughtSignature``), and a function_call item has
  no field for it: the signatures of an answer's calls travel in one reasoning item
  after them (``encrypted_content``: ``tierwise.gemini:`` + base64 of a JSON map
  call_id → signature) and are put back on the calls with those ids when it comes
  back, wherever in ``input`` it is. Without it the turn still works (the Gemini
  adapter sends Google's documented skip value) but the model loses its reasoning.
* **Streams end as OpenAI's do**: ``response.completed``, or
  ``response.incomplete`` for a length (or content filter) stop; a failure after
  the first byte is a ``response.failed`` event carrying the output so far and an
  ``error`` object (the SDK yields it as a typed event, it does not raise).
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Mapping
from typing import Any

from ..providers._anthropic_request import THINKING_TYPES, thinking_blocks
from ..types import Message, Request, Response, ToolCall, Usage
from ._common import BadInput, dumps, opt_float, opt_int

__all__ = ["ResponsesStream", "response_json", "responses_request"]

#: Accepted and ignored, on purpose. store: nothing is ever stored (and
#: previous_response_id, the one way to rely on storage, is refused). metadata:
#: echoed back, never sent upstream. prompt_cache_key / prompt_cache_retention:
#: caching hints, the answer is the same without them. service_tier: an OpenAI
#: scheduling tier; tierwise picks the deployment. stream_options: only
#: include_obfuscation, padding that changes no content.
_IGNORED = frozenset(
    {"store", "metadata", "prompt_cache_key", "prompt_cache_retention", "service_tier", "stream_options"}
)
#: Parameters understood: mapped onto the Request, echoed back, or in ``_IGNORED``.
_KNOWN = _IGNORED | {
    "model",
    "input",
    "instructions",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "max_output_tokens",
    "temperature",
    "top_p",
    "text",
    "reasoning",
    "stream",
    "include",
    "user",
    "safety_identifier",
}
#: Parameters whose meaning needs server-side state or a feature the gateway does not
#: have: refused unless absent (or null / their default value).
_REFUSED: dict[str, str] = {
    "previous_response_id": "the gateway keeps no responses; send the whole conversation in 'input'",
    "conversation": "the gateway keeps no conversations; send the whole conversation in 'input'",
    "background": "background responses are not supported",
    "prompt": "stored prompt templates are not supported; send 'instructions' and 'input'",
    "max_tool_calls": "max_tool_calls applies to built-in tools, which are not supported",
    "top_logprobs": "logprobs are not supported",
    "context_management": "server-side context management is not supported",
}
#: ``include`` values the answer already satisfies (native reasoning items are always
#: relayed whole, encrypted content included).
_INCLUDE = frozenset({"reasoning.encrypted_content"})
_ROLES = {"user": "user", "assistant": "assistant", "system": "system", "developer": "system"}
_TEXT_PARTS = ("input_text", "output_text", "text", "refusal")
_ANTHROPIC = "tierwise.anthropic:"
_GEMINI = "tierwise.gemini:"


# --------------------------------------------------------------------------- request


def _check_params(body: Mapping[str, Any]) -> None:
    for name, value in body.items():
        if name in _REFUSED:
            if value is None or value is False:
                continue
            raise BadInput(f"{name} is not supported by this gateway: {_REFUSED[name]}", param=name)
        if name == "truncation":
            if value not in (None, "disabled"):
                raise BadInput("truncation: only 'disabled' is supported", param="truncation")
            continue
        if name not in _KNOWN:
            raise BadInput(f"Unknown parameter: '{name}'.", param=name)
    include = body.get("include")
    if include is not None:
        if not isinstance(include, list) or not all(isinstance(v, str) for v in include):
            raise BadInput("include must be a list of strings", param="include")
        extra = sorted(set(include) - _INCLUDE)
        if extra:
            raise BadInput(f"include {extra[0]!r} is not supported", param="include")


def _parts(content: Any, where: str) -> str | list[dict[str, Any]]:
    """Message content → tierwise content: text parts joined into a string; an
    ``input_image`` by URL becomes a chat ``image_url`` part (what every adapter reads)."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise BadInput(f"{where} must be a string or a list of content parts", param=where)
    out: list[dict[str, Any]] = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, Mapping) else None
        if kind in _TEXT_PARTS and isinstance(part, Mapping):
            text = part.get("refusal" if kind == "refusal" else "text")
            out.append({"type": "text", "text": str(text or "")})
        elif kind == "input_image" and isinstance(part, Mapping) and isinstance(part.get("image_url"), str):
            out.append({"type": "image_url", "image_url": {"url": part["image_url"]}})
        else:
            raise BadInput(
                f"{where}[{j}]: content part type {kind!r} is not supported "
                "(input_text, output_text, input_image with image_url)",
                param=f"{where}[{j}].type",
            )
    if all(p["type"] == "text" for p in out):
        return "".join(p["text"] for p in out)
    return out


def _reasoning_in(item: Mapping[str, Any]) -> dict[str, Any] | None:
    """A caller's reasoning item → the provider-native record it stands for, or
    ``None`` for an unsigned summary nobody can verify (see the module docstring)."""
    secret = item.get("encrypted_content")
    if not isinstance(secret, str) or not secret or secret.startswith(_GEMINI):
        return None  # Gemini's call signatures go on the calls (``_gemini_signatures``)
    if secret.startswith(_ANTHROPIC):
        try:
            block = json.loads(base64.b64decode(secret[len(_ANTHROPIC) :], validate=True))
        except (ValueError, binascii.Error):
            return None
        return block if isinstance(block, dict) and block.get("type") in THINKING_TYPES else None
    return dict(item)


def _gemini_signatures(items: list[Any]) -> dict[str, str]:
    """call_id → Gemini ``thoughtSignature`` from the caller's ``tierwise.gemini:`` items
    (an undecodable one is ignored: the call then goes without, as from any client)."""
    found: dict[str, str] = {}
    for item in items:
        secret = item.get("encrypted_content") if isinstance(item, Mapping) else None
        if not (isinstance(secret, str) and secret.startswith(_GEMINI) and item.get("type") == "reasoning"):
            continue
        try:
            table = json.loads(base64.b64decode(secret[len(_GEMINI) :], validate=True))
        except (ValueError, binascii.Error):
            continue
        if isinstance(table, dict):
            found.update({k: v for k, v in table.items() if isinstance(k, str) and isinstance(v, str) and v})
    return found


def _gemini_item(calls: list[ToolCall], rid: str) -> dict[str, Any] | None:
    table = {c.id: c.thought_signature for c in calls if c.thought_signature}
    if not table:
        return None
    secret = _GEMINI + base64.b64encode(dumps(table)).decode()
    return {"type": "reasoning", "id": f"rs_{rid}_sig", "summary": [], "encrypted_content": secret}


def _items(value: Any) -> list[Message]:
    """``input`` → messages. Function calls join the assistant turn before them;
    reasoning items wait for the assistant turn they precede."""
    if isinstance(value, str):
        return [Message("user", value)]
    if not isinstance(value, list) or not value:
        raise BadInput("input must be a string or a non-empty list of items", param="input")
    signatures = _gemini_signatures(value)
    out: list[Message] = []
    pending: list[dict[str, Any]] = []
    names: dict[str, str] = {}  # call_id -> function name (Gemini pairs results by name)

    def assistant() -> Message:
        last = out[-1] if out else None
        if last is None or last.role != "assistant":
            last = Message("assistant", "")
            out.append(last)
        last.reasoning_items.extend(pending)
        pending.clear()
        return last

    for i, item in enumerate(value):
        where = f"input[{i}]"
        if not isinstance(item, Mapping):
            raise BadInput(f"{where} must be an object", param=where)
        kind = item.get("type", "message")
        if kind == "message":
            role = _ROLES.get(str(item.get("role", "")))
            if role is None:
                raise BadInput(
                    f"{where}.role {item.get('role')!r} is not supported",
                    param=f"{where}.role",
                )
            content = _parts(item.get("content"), f"{where}.content")
            if role == "assistant":
                last = out[-1] if out else None
                if pending or last is None or last.role != "assistant" or last.content or last.tool_calls:
                    out.append(Message("assistant", ""))
                turn = assistant()
                turn.content = content
            else:
                out.append(Message(role, content))  # type: ignore[arg-type]
        elif kind == "function_call":
            call_id, name, raw = item.get("call_id"), item.get("name"), item.get("arguments", "{}")
            if not isinstance(call_id, str) or not isinstance(name, str) or not isinstance(raw, str):
                raise BadInput(
                    f"{where}: a function_call needs call_id, name and arguments (strings)", param=where
                )
            try:
                args = json.loads(raw or "{}")
            except ValueError:
                raise BadInput(f"{where}.arguments is not JSON", param=f"{where}.arguments") from None
            names[call_id] = name
            assistant().tool_calls.append(
                ToolCall(
                    call_id,
                    name,
                    args if isinstance(args, dict) else {},
                    raw_arguments=raw,
                    thought_signature=signatures.get(call_id),
                )
            )
        elif kind == "function_call_output":
            call_id = item.get("call_id")
            if not isinstance(call_id, str) or not call_id:
                raise BadInput(f"{where}.call_id is required", param=f"{where}.call_id")
            output = item.get("output")
            text = output if isinstance(output, str) else _parts(output, f"{where}.output")
            out.append(Message("tool", text, name=names.get(call_id), tool_call_id=call_id))
        elif kind == "reasoning":
            record = _reasoning_in(item)
            if record is not None:
                pending.append(record)
        else:
            raise BadInput(
                f"{where}.type {kind!r} is not supported "
                "(message, function_call, function_call_output, reasoning)",
                param=f"{where}.type",
            )
    if pending:
        assistant()
    return out


def _tools(value: Any) -> list[dict[str, Any]] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        raise BadInput("tools must be a list", param="tools")
    out: list[dict[str, Any]] = []
    for i, t in enumerate(value):
        if not isinstance(t, Mapping) or t.get("type") != "function":
            kind = t.get("type") if isinstance(t, Mapping) else None
            raise BadInput(
                f"tools[{i}].type {kind!r} is not supported: only function tools", param=f"tools[{i}].type"
            )
        if not isinstance(t.get("name"), str) or not t["name"]:
            raise BadInput(f"tools[{i}].name is required", param=f"tools[{i}].name")
        # ``strict`` is not carried: a tool means the same on every provider (tierwise
        # sends strict: false to OpenAI too, see providers/_responses.py).
        out.append(
            {"name": t["name"], "description": t.get("description") or "", "parameters": t.get("parameters")}
        )
    return out or None


def _tool_choice(choice: Any) -> str | dict[str, Any] | None:
    if choice is None or choice in ("auto", "none", "required"):
        return choice  # type: ignore[no-any-return]
    if (
        isinstance(choice, Mapping)
        and choice.get("type") == "function"
        and isinstance(choice.get("name"), str)
    ):
        return {"type": "function", "function": {"name": choice["name"]}}
    raise BadInput(
        "tool_choice must be 'auto', 'none', 'required' or {'type': 'function', 'name': ...}",
        param="tool_choice",
    )


def _text_format(text: Any) -> dict[str, Any] | None:
    """``text.format`` → the Request's ``response_format`` (the Chat Completions shape)."""
    if text is None:
        return None
    if not isinstance(text, Mapping):
        raise BadInput("text must be an object", param="text")
    for key in text:
        if key not in ("format", "verbosity"):
            raise BadInput(f"Unknown parameter: 'text.{key}'.", param=f"text.{key}")
    if text.get("verbosity") not in (None, "medium"):
        # Only OpenAI's newest models have it; elsewhere it would be silently lost.
        raise BadInput("text.verbosity is not supported (only the default, 'medium')", param="text.verbosity")
    fmt = text.get("format")
    if fmt is None:
        return None
    kind = fmt.get("type") if isinstance(fmt, Mapping) else None
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "json_object"}
    if kind == "json_schema" and isinstance(fmt, Mapping):
        if not isinstance(fmt.get("schema"), Mapping):
            raise BadInput("text.format.schema must be an object", param="text.format.schema")
        spec: dict[str, Any] = {"name": str(fmt.get("name") or "response"), "schema": dict(fmt["schema"])}
        if fmt.get("strict") is not None:
            spec["strict"] = bool(fmt["strict"])
        if isinstance(fmt.get("description"), str):
            spec["description"] = fmt["description"]
        return {"type": "json_schema", "json_schema": spec}
    raise BadInput(f"text.format.type {kind!r} is not supported", param="text.format.type")


def _effort(reasoning: Any) -> str | None:
    if reasoning is None:
        return None
    if not isinstance(reasoning, Mapping):
        raise BadInput("reasoning must be an object", param="reasoning")
    # ``summary`` is not needed: readable reasoning is always relayed when a model gives it.
    effort = reasoning.get("effort")
    if effort is not None and not isinstance(effort, str):
        raise BadInput("reasoning.effort must be a string", param="reasoning.effort")
    return effort


def responses_request(body: Mapping[str, Any]) -> Request:
    """A Responses body → ``Request`` (``BadInput`` names the bad field)."""
    _check_params(body)
    messages = _items(body.get("input"))
    instructions = body.get("instructions")
    if instructions is not None:
        if not isinstance(instructions, str):
            raise BadInput("instructions must be a string", param="instructions")
        messages.insert(0, Message("system", instructions))
    parallel = body.get("parallel_tool_calls")
    if parallel is not None and not isinstance(parallel, bool):
        raise BadInput("parallel_tool_calls must be a boolean", param="parallel_tool_calls")
    user = body.get("user") or body.get("safety_identifier")
    try:
        return Request(
            messages=messages,
            max_tokens=opt_int(body, "max_output_tokens"),
            temperature=opt_float(body, "temperature"),
            top_p=opt_float(body, "top_p"),
            tools=_tools(body.get("tools")),  # type: ignore[arg-type]  # coerced by Request
            tool_choice=_tool_choice(body.get("tool_choice")),
            parallel_tool_calls=parallel,
            response_format=_text_format(body.get("text")),
            reasoning_effort=_effort(body.get("reasoning")),
            user=user if isinstance(user, str) else None,
        )
    except (TypeError, ValueError) as exc:
        raise BadInput(str(exc), param="tools") from None


# --------------------------------------------------------------------------- reply


def _usage(u: Usage) -> dict[str, Any]:
    return {
        "input_tokens": u.input_tokens,
        "input_tokens_details": {"cached_tokens": u.cached_input_tokens},
        "output_tokens": u.output_tokens,
        "output_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
        "total_tokens": u.input_tokens + u.output_tokens,
    }


def _incomplete(r: Response) -> str | None:
    """Why the answer is incomplete, in OpenAI's words; ``None`` when it is complete."""
    if r.finish_reason == "content_filter":
        return "content_filter"
    if r.finish_reason in ("length", "error"):  # "error": cut short, as chat completions says it
        return "max_output_tokens"
    return None


def _summary(text: str) -> list[dict[str, Any]]:
    return [{"type": "summary_text", "text": text}] if text else []


def _anthropic_item(block: Mapping[str, Any], item_id: str) -> dict[str, Any]:
    secret = _ANTHROPIC + base64.b64encode(dumps(dict(block))).decode()
    text = block.get("thinking") if block.get("type") == "thinking" else ""
    return {
        "type": "reasoning",
        "id": item_id,
        "summary": _summary(str(text or "")),
        "encrypted_content": secret,
    }


def _reasoning_out(r: Response, rid: str) -> list[dict[str, Any]]:
    native = [dict(item) for item in r.reasoning_items if item.get("type") == "reasoning"]
    if native:
        return native
    blocks = thinking_blocks(r.reasoning_items)
    if blocks:
        return [_anthropic_item(b, f"rs_{rid}_{i}") for i, b in enumerate(blocks)]
    if r.reasoning:
        return [{"type": "reasoning", "id": f"rs_{rid}_0", "summary": _summary(r.reasoning)}]
    return []


def _text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def _message_item(rid: str, text: str, status: str) -> dict[str, Any]:
    return {
        "type": "message",
        "id": f"msg_{rid}",
        "status": status,
        "role": "assistant",
        "content": [_text_part(text)],
    }


def _call_item(rid: str, index: int, call_id: str, name: str, arguments: str, status: str) -> dict[str, Any]:
    return {
        "type": "function_call",
        "id": f"fc_{rid}_{index}",
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
        "status": status,
    }


def _output(r: Response, rid: str) -> list[dict[str, Any]]:
    out = _reasoning_out(r, rid)
    if r.text or not r.tool_calls:
        out.append(_message_item(rid, r.text, "incomplete" if _incomplete(r) else "completed"))
    for i, c in enumerate(r.tool_calls):
        out.append(_call_item(rid, i, c.id, c.name, c.raw_arguments or json.dumps(c.arguments), "completed"))
    signed = _gemini_item(r.tool_calls, rid)
    if signed is not None:
        out.append(signed)
    return out


class _Echo:
    """The request's settings a Response object repeats back (the SDK's Response has
    required ``tools``, ``tool_choice`` and ``parallel_tool_calls``)."""

    __slots__ = ("fields",)

    def __init__(self, body: Mapping[str, Any]) -> None:
        raw_reasoning, raw_text = body.get("reasoning"), body.get("text")
        reasoning: Mapping[str, Any] = raw_reasoning if isinstance(raw_reasoning, Mapping) else {}
        text: Mapping[str, Any] = raw_text if isinstance(raw_text, Mapping) else {}
        self.fields: dict[str, Any] = {
            "instructions": body.get("instructions"),
            "max_output_tokens": body.get("max_output_tokens"),
            "metadata": body.get("metadata") or {},
            "parallel_tool_calls": body.get("parallel_tool_calls", True),
            "previous_response_id": None,
            "reasoning": {"effort": reasoning.get("effort"), "summary": reasoning.get("summary")},
            "store": False,
            "temperature": body.get("temperature"),
            "text": {"format": text.get("format") or {"type": "text"}},
            "tool_choice": body.get("tool_choice") or "auto",
            "tools": body.get("tools") or [],
            "top_p": body.get("top_p"),
            "truncation": "disabled",
            "user": body.get("user"),
        }


def _response_object(
    rid: str,
    created: int,
    model: str,
    echo: _Echo,
    status: str,
    output: list[dict[str, Any]],
    usage: dict[str, Any] | None = None,
    incomplete: str | None = None,
    error: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "id": f"resp_{rid}",
        "object": "response",
        "created_at": created,
        "status": status,
        "error": error,
        "incomplete_details": {"reason": incomplete} if incomplete else None,
        "model": model,
        "output": output,
        **echo.fields,
        "usage": usage,
    }


def response_json(r: Response, rid: str, body: Mapping[str, Any]) -> bytes:
    """The whole answer as a Response object."""
    incomplete = _incomplete(r)
    return dumps(
        _response_object(
            rid,
            int(time.time()),
            r.model,
            _Echo(body),
            "incomplete" if incomplete else "completed",
            _output(r, rid),
            _usage(r.usage),
            incomplete,
        )
    )


class ResponsesStream:
    """Responses stream events for one answer, numbered by ``sequence_number``.

    Output items are opened as their first delta arrives (reasoning, the message, each
    function call) and closed when another kind starts or the answer ends; function
    calls stay open together, so interleaved argument deltas of parallel calls land
    on their own items. The closing ``response.completed`` carries the output built
    from the final ``Response``, with the same item ids as the streamed items: the
    SDK checks that they match, and OpenAI's own reasoning items (whole only at the
    end) take the place of the summary-only item streamed for them."""

    def __init__(self, rid: str, model: str, body: Mapping[str, Any]) -> None:
        self.model = model
        self._rid = rid
        self._echo = _Echo(body)
        self._created = int(time.time())
        self._seq = 0
        self._done: list[dict[str, Any]] = []  # finished items, in output order
        self._index = -1  # output index of the last item opened
        self._reasoning: tuple[int, str, list[str]] | None = None  # (index, id, text pieces)
        self._message: tuple[int, list[str]] | None = None
        self._calls: dict[
            int, tuple[int, str, str, list[str]]
        ] = {}  # tool index -> (out, call_id, name, args)
        self._reasonings = 0

    def _event(self, kind: str, **fields: Any) -> bytes:
        data = {"type": kind, "sequence_number": self._seq, **fields}
        self._seq += 1
        return b"event: " + kind.encode() + b"\ndata: " + dumps(data) + b"\n\n"

    def _snapshot(self, status: str, output: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
        return _response_object(self._rid, self._created, self.model, self._echo, status, output, **extra)

    def start(self) -> bytes:
        return self._event("response.created", response=self._snapshot("in_progress", [])) + self._event(
            "response.in_progress", response=self._snapshot("in_progress", [])
        )

    # -- closing items -------------------------------------------------------------

    def _close_reasoning(self, native: Mapping[str, Any] | None = None) -> bytes:
        if self._reasoning is None:
            return b""
        assert self._reasoning is not None
        index, item_id, pieces = self._reasoning
        self._reasoning = None
        text = "".join(pieces)
        out = b""
        if pieces:
            part = {"type": "summary_text", "text": text}
            where = {"item_id": item_id, "output_index": index, "summary_index": 0}
            out += self._event("response.reasoning_summary_text.done", **where, text=text)
            out += self._event("response.reasoning_summary_part.done", **where, part=part)
        if native is not None:
            item = _anthropic_item(native, item_id)
        else:
            item = {"type": "reasoning", "id": item_id, "summary": _summary(text)}
        self._done.append(item)
        return out + self._event("response.output_item.done", output_index=index, item=item)

    def _close_message(self, status: str = "completed") -> bytes:
        if self._message is None:
            return b""
        index, pieces = self._message
        self._message = None
        text = "".join(pieces)
        where = {"item_id": f"msg_{self._rid}", "output_index": index, "content_index": 0}
        item = _message_item(self._rid, text, status)
        self._done.append(item)
        return (
            self._event("response.output_text.done", **where, text=text, logprobs=[])
            + self._event("response.content_part.done", **where, part=_text_part(text))
            + self._event("response.output_item.done", output_index=index, item=item)
        )

    def _close_calls(self) -> bytes:
        out = b""
        for tool, (index, call_id, name, pieces) in sorted(self._calls.items(), key=lambda kv: kv[1][0]):
            args = "".join(pieces)
            item = _call_item(self._rid, tool, call_id, name, args, "completed")
            self._done.append(item)
            out += self._event(
                "response.function_call_arguments.done",
                item_id=item["id"],
                output_index=index,
                arguments=args,
            )
            out += self._event("response.output_item.done", output_index=index, item=item)
        self._calls.clear()
        return out

    def _close_all(self, status: str = "completed") -> bytes:
        return self._close_reasoning() + self._close_message(status) + self._close_calls()

    # -- deltas ----------------------------------------------------------------------

    def _open_reasoning(self) -> tuple[bytes, str]:
        """Close what is open and start a reasoning item (its ``output_item.added``; its id)."""
        out = self._close_all()
        self._index += 1
        item_id = f"rs_{self._rid}_{self._reasonings}"
        self._reasonings += 1
        self._reasoning = (self._index, item_id, [])
        added = {"type": "reasoning", "id": item_id, "summary": []}
        return out + self._event("response.output_item.added", output_index=self._index, item=added), item_id

    def reasoning(self, piece: str) -> bytes:
        out = b""
        if self._reasoning is None:
            opened, new_id = self._open_reasoning()
            out += opened + self._event(
                "response.reasoning_summary_part.added",
                item_id=new_id,
                output_index=self._index,
                summary_index=0,
                part={"type": "summary_text", "text": ""},
            )
        current = self._reasoning
        assert current is not None  # opened above
        index, item_id, pieces = current
        pieces.append(piece)
        return out + self._event(
            "response.reasoning_summary_text.delta",
            item_id=item_id,
            output_index=index,
            summary_index=0,
            delta=piece,
        )

    def reasoning_item(self, item: Mapping[str, Any]) -> bytes:
        """An Anthropic block, complete: it closes the reasoning item being written
        (carried in its ``encrypted_content``); a redacted block is an item of its own.
        OpenAI's own items arrive whole with the final ``Response`` instead."""
        if item.get("type") not in THINKING_TYPES:
            return b""
        out = self._open_reasoning()[0] if self._reasoning is None else b""
        return out + self._close_reasoning(item)

    def text(self, piece: str) -> bytes:
        out = b""
        if self._message is None:
            out += self._close_all()
            self._index += 1
            self._message = (self._index, [])
            item = {**_message_item(self._rid, "", "in_progress"), "content": []}
            where = {"item_id": item["id"], "output_index": self._index, "content_index": 0}
            out += self._event("response.output_item.added", output_index=self._index, item=item)
            out += self._event("response.content_part.added", **where, part=_text_part(""))
        index, pieces = self._message
        pieces.append(piece)
        if not piece:
            return out
        where = {"item_id": f"msg_{self._rid}", "output_index": index, "content_index": 0}
        return out + self._event("response.output_text.delta", **where, delta=piece, logprobs=[])

    def tool(
        self, index: int, call_id: str | None, name: str | None, arguments: str, signature: str | None = None
    ) -> bytes:
        # ``signature`` (Gemini's, on a call): this format carries it otherwise, or not at all.
        out = b""
        if index not in self._calls:
            out += self._close_reasoning() + self._close_message()
            self._index += 1
            cid, fname = call_id or f"call_{index}", name or ""
            self._calls[index] = (self._index, cid, fname, [])
            item = _call_item(self._rid, index, cid, fname, "", "in_progress")
            out += self._event("response.output_item.added", output_index=self._index, item=item)
        out_index, _cid, _name, pieces = self._calls[index]
        if not arguments:
            return out
        pieces.append(arguments)
        return out + self._event(
            "response.function_call_arguments.delta",
            item_id=f"fc_{self._rid}_{index}",
            output_index=out_index,
            delta=arguments,
        )

    # -- the end ---------------------------------------------------------------------

    def end(self, r: Response, tierwise: Mapping[str, Any]) -> bytes:
        incomplete = _incomplete(r)
        out = b""
        has_message = self._message is not None or any(i.get("type") == "message" for i in self._done)
        if not has_message and not r.tool_calls:
            out += self.text("")  # an answer without tool calls always has its message item
        out += self._close_all("incomplete" if incomplete else "completed")
        signed = _gemini_item(r.tool_calls, self._rid)
        if signed is not None:  # known once the calls are whole: an item after them
            self._index += 1
            self._done.append(signed)
            out += self._event("response.output_item.added", output_index=self._index, item=signed)
            out += self._event("response.output_item.done", output_index=self._index, item=signed)
        self.model = r.model
        final = _output(r, self._rid)
        sig_id = f"rs_{self._rid}_sig"

        def thought(i: Mapping[str, Any]) -> bool:
            return i.get("type") == "reasoning" and i.get("id") != sig_id

        if not any(thought(i) for i in final):
            # Reasoning streamed but not kept in the Response (a cached answer): keep what was sent.
            final = [i for i in self._done if thought(i)] + final
        response = self._snapshot(
            "incomplete" if incomplete else "completed", final, usage=_usage(r.usage), incomplete=incomplete
        )
        kind = "response.incomplete" if incomplete else "response.completed"
        return out + self._event(kind, response=response, tierwise={**tierwise, "model": r.model})

    def error(self, status: int, message: str, etype: str, code: str | None = None) -> bytes:
        # OpenAI's own mid-stream failure: the response, failed, with what was finished.
        error = {"code": "rate_limit_exceeded" if status == 429 else "server_error", "message": message}
        return self._event(
            "response.failed", response=self._snapshot("failed", list(self._done), error=error)
        )
