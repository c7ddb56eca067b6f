"""The OpenAI Responses API (``POST {base}/responses``): request body and reply parser.

``providers.OpenAI`` speaks Chat Completions by default and this format for the
models (or the whole provider) configured with ``api = "responses"``. Kept apart
from ``openai.py`` because the shapes share almost nothing: a reply is a list of
typed *output items* (``message``, ``function_call``, ``reasoning``, ...), a stream
is a sequence of named events, and the conversation goes in as *input items*.

Choices, and why:

* **Stateless by default** (``store: false`` and ``include:
  ["reasoning.encrypted_content"]``): tierwise falls back across providers and
  replays conversations from its own ``Message`` list, so nothing should depend on
  state kept at OpenAI. Reasoning models then return their reasoning as an
  encrypted item, kept in ``Response.reasoning_items`` and sent back unchanged on
  the next turn (``Message.reasoning_items``), which is what lets a reasoning model
  continue a tool-calling turn without starting its thinking over. A caller who
  wants server-side state sets ``extra_body={"store": True, "previous_response_id":
  resp.response_id}``.
* **Function tools are sent with ``strict: false``**: the Responses API defaults
  function tools to strict mode, which rejects ordinary JSON schemas (optional
  properties, no ``additionalProperties: false``); Chat Completions does not, and a
  tool must mean the same thing on both APIs.
* ``stop`` has no Responses counterpart and is refused before sending
  (``BadRequestError``) rather than silently ignored; ``seed`` is best-effort on
  Chat Completions and is not sent.
* **Reasoning text**: summary parts (``reasoning.summary``, asked for with
  ``summary: "auto"`` whenever ``reasoning_effort`` is set) and ``reasoning_text``
  content fill ``Response.reasoning``, parts separated by a blank line in both modes.
* **One parser for both modes**: a whole reply's output items are read with the
  same rules the stream's ``response.output_item.done`` events are; the stream's
  text and argument deltas are accumulated, and usage, status and model come from
  the final ``response.completed`` / ``response.incomplete`` event. A stream that
  ends before one of those is truncated (``ProtocolError``); ``response.failed``
  and ``error`` events are in-band errors, mapped like any other OpenAI error.
* **Finish reasons**: ``completed`` → stop (tool_calls when the reply called
  tools), ``incomplete`` with ``max_output_tokens`` → length, with
  ``content_filter`` → content_filter; a refusal part → content_filter.
* **Usage**: ``input_tokens`` includes ``input_tokens_details.cached_tokens`` and
  ``output_tokens`` includes ``output_tokens_details.reasoning_tokens``, which is
  tierwise's convention already.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from ..errors import BadRequestError
from ..types import FinishReason, Message, Request, Response, StreamEvent, Tool, Usage
from ._accumulate import StreamAccumulator, token_count
from ._sse import SSEEvent
from ._tool_ids import fit_tool_id

if TYPE_CHECKING:
    from .openai import OpenAI

__all__ = ["ResponsesStream", "responses_body", "responses_usage"]

_EMPTY: dict[str, Any] = {}
_SEPARATOR = "\n\n"
#: Asked on every call so reasoning models hand back the item to replay (stateless mode).
_INCLUDE = ("reasoning.encrypted_content",)


def responses_usage(raw: Any) -> Usage:
    """A Responses ``usage`` object; absent or null fields count as 0."""
    if not isinstance(raw, dict):
        return Usage()
    ind = raw.get("input_tokens_details")
    if not isinstance(ind, dict):
        ind = _EMPTY
    outd = raw.get("output_tokens_details")
    if not isinstance(outd, dict):
        outd = _EMPTY
    return Usage(
        input_tokens=token_count(raw.get("input_tokens")),
        output_tokens=token_count(raw.get("output_tokens")),
        cached_input_tokens=token_count(ind.get("cached_tokens")),
        cache_write_tokens=token_count(ind.get("cache_write_tokens")),
        reasoning_tokens=token_count(outd.get("reasoning_tokens")),
    )


# --------------------------------------------------------------------------- request


def _content(content: str | list[dict[str, Any]] | None, role: str) -> str | list[dict[str, Any]]:
    """Message content as Responses input content: chat-style ``text`` parts become
    ``input_text`` (``output_text`` for assistant turns), ``image_url`` parts
    ``input_image``; native Responses parts pass through."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    text_type = "output_text" if role == "assistant" else "input_text"
    out: list[dict[str, Any]] = []
    for part in content:
        kind = part.get("type", "text")
        if kind == "text":
            out.append({"type": text_type, "text": str(part.get("text", ""))})
        elif kind == "image_url":
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, Mapping) else image
            out.append({"type": "input_image", "image_url": url})
        else:
            out.append(dict(part))
    return out


def _input(messages: list[Message]) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    for m in messages:
        role = m.role
        if role == "tool":
            items.append(
                {
                    "type": "function_call_output",
                    "call_id": fit_tool_id(m.tool_call_id or "", "max64"),
                    "output": m.text,
                }
            )
            continue
        if role == "assistant":
            # Reasoning items first, unchanged: each precedes the item it led to.
            items.extend(item for item in m.reasoning_items if item.get("type") == "reasoning")
            if m.content:
                items.append({"role": "assistant", "content": _content(m.content, role)})
            for call in m.tool_calls:
                items.append(
                    {
                        "type": "function_call",
                        "call_id": fit_tool_id(call.id, "max64"),
                        "name": call.name,
                        "arguments": call.raw_arguments or "{}",
                    }
                )
            continue
        items.append({"role": role, "content": _content(m.content, role)})
    return items


def _tool(t: Tool) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "function", "name": t.name, "parameters": t.parameters, "strict": False}
    if t.description:
        out["description"] = t.description
    return out


def _tool_choice(choice: str | dict[str, Any]) -> str | dict[str, Any]:
    """Strings pass through; ``{"name": X}`` and the Chat Completions
    ``{"type": "function", "function": {"name": X}}`` become ``{"type": "function", "name": X}``."""
    if isinstance(choice, str):
        return "required" if choice == "any" else choice
    fn = choice.get("function")
    name = fn.get("name") if isinstance(fn, Mapping) else choice.get("name")
    if isinstance(name, str) and name and choice.get("type") in (None, "function", "tool"):
        return {"type": "function", "name": name}
    return choice


def _text_format(fmt: Mapping[str, Any], provider: str, model: str) -> dict[str, Any]:
    kind = fmt.get("type")
    if kind == "json_schema":
        spec = fmt.get("json_schema")
        if not isinstance(spec, Mapping) or not isinstance(spec.get("schema"), Mapping):
            raise BadRequestError(
                "response_format json_schema needs {'json_schema': {'name', 'schema': {...}}}",
                provider=provider,
                model=model,
            )
        out: dict[str, Any] = {
            "type": "json_schema",
            "name": str(spec.get("name") or "response"),
            "schema": spec["schema"],
        }
        if spec.get("strict") is not None:
            out["strict"] = bool(spec["strict"])
        return out
    if kind in ("json_object", "text"):
        return {"type": kind}
    raise BadRequestError(f"unsupported response_format type {kind!r}", provider=provider, model=model)


def responses_body(owner: OpenAI, model: str, request: Request, stream: bool) -> dict[str, Any]:
    """The JSON body of ``POST /responses`` for ``request``."""
    if request.stop:
        raise BadRequestError(
            "the Responses API has no stop sequences; drop 'stop' or use api = \"chat\"",
            provider=owner.name,
            model=model,
        )
    body: dict[str, Any] = {
        "model": model,
        "input": _input(request.messages),
        "store": False,
        "include": list(_INCLUDE),
    }
    if request.max_tokens is not None:
        body["max_output_tokens"] = request.max_tokens
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.top_p is not None:
        body["top_p"] = request.top_p
    if request.user is not None:
        body["user"] = request.user
    if request.tools:
        body["tools"] = [_tool(t) for t in request.tools]
    if request.tool_choice is not None:
        body["tool_choice"] = _tool_choice(request.tool_choice)
    if request.parallel_tool_calls is not None:
        body["parallel_tool_calls"] = request.parallel_tool_calls
    if request.response_format is not None:
        body["text"] = {"format": _text_format(request.response_format, owner.name, model)}
    if request.reasoning_effort is not None:
        body["reasoning"] = {"effort": request.reasoning_effort, "summary": "auto"}
    if stream:
        body["stream"] = True
    if request.extra_body:
        body.update(request.extra_body)
    return body


# --------------------------------------------------------------------------- reply

_INCOMPLETE: dict[str, FinishReason] = {"max_output_tokens": "length", "content_filter": "content_filter"}


class ResponsesStream:
    """Folds Responses stream events, or one whole ``response`` object
    (``absorb_reply``), into a ``StreamAccumulator``.

    Function calls are numbered 0, 1, ... in output order (``ToolCallDelta.index``);
    the stream addresses them by ``output_index``, mapped here. Reasoning items are
    kept whole from ``response.output_item.done`` (the ``added`` event's
    ``encrypted_content`` may be incomplete, says the API reference).
    """

    __slots__ = ("_acc", "_calls", "_model", "_owner", "_refused", "_reported", "_response_id", "_summary")

    def __init__(self, owner: OpenAI, model: str) -> None:
        self._owner = owner
        self._model = model
        self._acc = StreamAccumulator(owner.name, model, (owner._api_key,))
        self._calls: dict[int, int] = {}  # output_index -> tool index
        self._summary: tuple[int, int] | None = None  # last (output_index, summary_index) read
        self._refused = False
        self._reported: str | None = None
        self._response_id: str | None = None

    # -- stream ---------------------------------------------------------------

    def feed(self, event: SSEEvent) -> Iterable[StreamEvent]:
        data = event.data
        if not data or data == "[DONE]":
            return ()
        ev = self._owner.loads(data, self._model)
        if not isinstance(ev, dict):
            raise self._owner._protocol_error("stream event is not a JSON object", data, self._model)
        kind = ev.get("type") or event.event
        acc = self._acc
        if kind == "response.output_text.delta":
            delta = ev.get("delta")
            return (acc.text(delta),) if isinstance(delta, str) and delta else ()
        if kind == "response.function_call_arguments.delta":
            delta = ev.get("delta")
            index = self._calls.get(ev.get("output_index", -1))
            if index is None or not isinstance(delta, str) or not delta:
                return ()
            return (acc.tool(index, arguments=delta),)
        if kind in ("response.reasoning_summary_text.delta", "response.reasoning_text.delta"):
            delta = ev.get("delta")
            if not isinstance(delta, str) or not delta:
                return ()
            key = (ev.get("output_index", 0), ev.get("summary_index", ev.get("content_index", 0)))
            return self._reasoning(key, delta)
        if kind == "response.refusal.delta":
            delta = ev.get("delta")
            self._refused = True
            return (acc.text(delta),) if isinstance(delta, str) and delta else ()
        if kind == "response.output_item.added":
            item = ev.get("item")
            if isinstance(item, dict) and item.get("type") == "function_call":
                index = self._calls[ev.get("output_index", len(self._calls))] = len(self._calls)
                call_id = item.get("call_id") or item.get("id")
                return (acc.tool(index, call_id, item.get("name") or None),)
            return ()
        if kind == "response.output_item.done":
            item = ev.get("item")
            if isinstance(item, dict):
                self._item_done(ev.get("output_index", -1), item)
            return ()
        if kind in ("response.completed", "response.incomplete"):
            response = ev.get("response")
            if not isinstance(response, dict):
                raise self._owner._protocol_error(f"{kind} without a response object", data, self._model)
            self._final(response)
            return ()
        if kind in ("response.failed", "error"):
            source = ev.get("response") if kind == "response.failed" else ev
            raise self._owner._inband_error(source if isinstance(source, dict) else ev, self._model)
        if kind == "response.created":
            response = ev.get("response")
            if isinstance(response, dict):
                self._ids(response)
        # in_progress, content_part.*, *.done of deltas, annotations, tool-specific events.
        return ()

    def _reasoning(self, key: tuple[Any, Any], text: str) -> tuple[StreamEvent, ...]:
        acc = self._acc
        if self._summary is not None and self._summary != key and acc.reasoning_parts:
            self._summary = key
            return (acc.reasoning(_SEPARATOR + text),)
        self._summary = key
        return (acc.reasoning(text),)

    def _item_done(self, output_index: Any, item: dict[str, Any]) -> None:
        kind = item.get("type")
        if kind == "reasoning":
            self._acc.reasoning_items.append(item)
        elif kind == "function_call":
            index = self._calls.get(output_index)
            if index is None:  # no output_item.added seen: take the call whole
                index = self._calls[output_index] = len(self._calls)
            slot = self._acc.tools.get(index)
            args = item.get("arguments")
            if slot is None or not slot[2]:
                self._acc.tool(index, item.get("call_id") or item.get("id"), item.get("name") or None)
                if isinstance(args, str) and args:
                    self._acc.tool(index, arguments=args)

    # -- whole reply -------------------------------------------------------------

    def absorb_reply(self, data: Any) -> None:
        owner, model = self._owner, self._model
        if not isinstance(data, dict):
            raise owner._protocol_error("reply is not a JSON object", json.dumps(data)[:2000], model)
        if data.get("error") or data.get("status") == "failed" or data.get("object") == "error":
            raise owner._inband_error(data, model)
        output = data.get("output")
        if not isinstance(output, list):
            raise owner._protocol_error("reply has no 'output' list", json.dumps(data)[:2000], model)
        acc = self._acc
        for item in output:
            if not isinstance(item, dict):
                raise owner._protocol_error("output item is not an object", json.dumps(data)[:2000], model)
            kind = item.get("type")
            if kind == "message":
                for part in item.get("content") or ():
                    if not isinstance(part, dict):
                        continue
                    if part.get("type") == "output_text" and isinstance(part.get("text"), str):
                        if part["text"]:
                            acc.text(part["text"])
                    elif part.get("type") == "refusal" and isinstance(part.get("refusal"), str):
                        self._refused = True
                        acc.text(part["refusal"])
            elif kind == "function_call":
                index = len(self._calls)
                self._calls[index] = index
                acc.call(
                    index, item.get("call_id") or item.get("id"), item.get("name"), item.get("arguments")
                )
            elif kind == "reasoning":
                out_index = len(acc.reasoning_items)
                for i, part in enumerate([*(item.get("summary") or ()), *(item.get("content") or ())]):
                    text = part.get("text") if isinstance(part, dict) else None
                    if isinstance(text, str) and text:
                        self._reasoning((out_index, i), text)
                acc.reasoning_items.append(item)
        self._final(data)

    # -- both --------------------------------------------------------------------

    def _ids(self, response: dict[str, Any]) -> None:
        rid = response.get("id")
        if isinstance(rid, str) and rid:
            self._response_id = self._owner._scrub(rid)
        reported = response.get("model")
        if isinstance(reported, str) and reported:
            self._reported = reported

    def _final(self, response: dict[str, Any]) -> None:
        self._ids(response)
        acc = self._acc
        acc.usage = responses_usage(response.get("usage"))
        status = response.get("status")
        raw = str(status) if status is not None else "completed"
        finish: FinishReason = "stop"
        if raw == "incomplete":
            details = response.get("incomplete_details")
            reason = details.get("reason") if isinstance(details, dict) else None
            finish = _INCOMPLETE.get(str(reason), "length")
            if reason:
                raw = f"incomplete:{reason}"
        acc.raw_finish_reason = raw
        acc.finish_reason = finish

    def finish(self) -> Response:
        response = self._acc.build()
        if self._reported:
            response.model = self._reported
        response.response_id = self._response_id
        if self._refused:
            response.finish_reason = "content_filter"
        elif response.tool_calls and response.finish_reason == "stop":
            response.finish_reason = "tool_calls"
        return response
