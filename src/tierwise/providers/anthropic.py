"""Anthropic Messages API adapter (``POST {base}/v1/messages``).

Why a hand-written translation rather than the vendor SDK: one dependency
(httpx) for every provider, one normalization path, and a lean hot path — the
request body is built with plain dict/list literals and the reply is walked once.

Wire-format quirks handled here (checked against Anthropic's API reference):

* ``system`` is a top-level field, not a message role. System messages anywhere in
  the conversation are hoisted; when any of them carries content blocks the field
  is sent as a list of blocks so ``cache_control`` markers survive.
* Tool results travel as ``tool_result`` blocks inside a *user* turn; consecutive
  ``tool`` messages become one user turn (the API wants every result for an
  assistant turn's ``tool_use`` blocks in the next user turn).
* ``max_tokens`` is mandatory: the request's value, else ``default_max_tokens``,
  else the catalog's max output for the model, else 4096.
* ``usage.input_tokens`` *excludes* cache reads and writes; tierwise's
  ``Usage.input_tokens`` is the whole prompt, so the three are summed.
* Streams carry ``ping`` keep-alives, ``signature_delta`` for thinking blocks and
  in-band ``error`` events after HTTP 200 (``overloaded_error``); the final
  ``output_tokens`` (cumulative) and the stop reason come in ``message_delta``.
* A 400 whose message says the input plus ``max_tokens`` "exceed context limit"
  is a context-window error, so the executor can fall back to a bigger window.

Request-side translations with no exact Anthropic equivalent:

* ``response_format`` ``json_schema`` → structured outputs, ``output_config.format``
  (``{"type": "json_schema", "schema": ...}``), GA on current Claude models.
  ``json_object`` has no schema-less counterpart and is not sent; the cascade's
  JSON verifier is the place to enforce it.
* ``seed`` and ``reasoning_effort`` are not sent (no Anthropic counterpart that
  works across models); ``thinking_budget`` is the knob for Claude reasoning.
"""

from __future__ import annotations

import importlib
import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

import httpx

from ..errors import BadRequestError, ContextWindowExceeded, ProtocolError, ProviderError
from ..types import FinishReason, Message, Request, Response, StreamEvent, Tool, ToolCall, Usage
from ._errors import _recast
from .base import Provider, SSEEvent, StreamAccumulator, StreamParser, make_tool_call, token_count

__all__ = ["Anthropic"]

_FALLBACK_MAX_TOKENS = 4096

_FINISH: dict[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}

_TOOL_CHOICE: dict[str, str] = {"auto": "auto", "required": "any", "any": "any", "none": "none"}

# "input length and `max_tokens` exceed context limit: 178959 + 64000 > 200000, …":
# not covered by the shared patterns in base, which know "context window/length".
_CONTEXT_LIMIT = re.compile(r"exceeds? (?:the )?context limit", re.IGNORECASE)


def _finish(stop: Any) -> FinishReason:
    # Unknown future stop reasons still mean the model stopped on its own;
    # the raw value is kept in ``raw_finish_reason``.
    return _FINISH.get(stop, "stop") if isinstance(stop, str) else "stop"


def _usage(input_tokens: int, cache_write: int, cache_read: int, output_tokens: int) -> Usage:
    """Anthropic's ``input_tokens`` leaves out cached tokens; tierwise counts the whole prompt."""
    return Usage(
        input_tokens=input_tokens + cache_write + cache_read,
        output_tokens=output_tokens,
        cached_input_tokens=cache_read,
        cache_write_tokens=cache_write,
    )


class Anthropic(Provider):
    """Adapter for the Anthropic Messages API (and servers that speak it)."""

    name = "anthropic"
    api_key_env = "ANTHROPIC_API_KEY"
    default_base_url = "https://api.anthropic.com"
    request_id_headers = ("request-id", "x-request-id", "x-litellm-call-id")

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str | None = None,
        http_client: httpx.AsyncClient | None = None,
        *,
        timeout: float | httpx.Timeout | None = None,
        headers: Mapping[str, str] | None = None,
        http: str = "httpx",
        default_max_tokens: int | None = None,
        anthropic_version: str = "2023-06-01",
    ) -> None:
        # Set before super().__init__, which calls _auth_headers().
        self._anthropic_version = anthropic_version
        self._default_max_tokens = default_max_tokens
        self._max_output: dict[str, int] = {}
        super().__init__(api_key, base_url, http_client, timeout=timeout, headers=headers, http=http)
        # Accept a base URL given with or without the /v1 suffix.
        base = self.base_url
        self._endpoint = f"{base}/messages" if base.endswith("/v1") else f"{base}/v1/messages"

    # -- hooks ------------------------------------------------------------------

    def _auth_headers(self) -> dict[str, str]:
        headers = {"anthropic-version": self._anthropic_version}
        if self._api_key:
            headers["x-api-key"] = self._api_key
        return headers

    def _url(self, model: str, stream: bool) -> str:
        return self._endpoint

    def _build_body(self, model: str, request: Request, stream: bool) -> dict[str, Any]:
        system, messages = self._messages(request.messages, model)
        body: dict[str, Any] = {
            "model": model,
            "max_tokens": self._max_tokens(model, request),
            "messages": messages,
        }
        if system is not None:
            body["system"] = system
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.top_p is not None:
            body["top_p"] = request.top_p
        if request.stop:
            body["stop_sequences"] = list(request.stop)
        if request.tools:
            body["tools"] = [_tool(t) for t in request.tools]
            choice = self._tool_choice(request.tool_choice, request.parallel_tool_calls, model)
            if choice is not None:
                body["tool_choice"] = choice
        budget = request.thinking_budget
        if budget is not None:
            body["thinking"] = (
                {"type": "enabled", "budget_tokens": budget} if budget > 0 else {"type": "disabled"}
            )
        fmt = request.response_format
        if fmt is not None and fmt.get("type") == "json_schema":
            body["output_config"] = {"format": self._json_schema(fmt, model)}
        if request.user is not None:
            body["metadata"] = {"user_id": request.user}
        if stream:
            body["stream"] = True
        if request.extra_body:
            body.update(request.extra_body)
        return body

    def _parse_response(self, model: str, data: Any) -> Response:
        if not isinstance(data, dict):
            raise self._shape_error("reply is not a JSON object", data, model)
        if data.get("type") == "error":
            raise self._inband_error(data, model)
        content = data.get("content")
        if not isinstance(content, list):
            raise self._shape_error("reply has no 'content' list", data, model)
        texts: list[str] = []
        thinking: list[str] = []
        calls: list[ToolCall] = []
        for block in content:
            if not isinstance(block, dict):
                raise self._shape_error("content block is not an object", data, model)
            kind = block.get("type")
            if kind == "text":
                text = block.get("text")
                if not isinstance(text, str):
                    raise self._shape_error("text block without a 'text' string", data, model)
                texts.append(text)
            elif kind == "tool_use":
                call_id, name, args = block.get("id"), block.get("name"), block.get("input")
                if not isinstance(call_id, str) or not isinstance(name, str):
                    raise self._shape_error("tool_use block without 'id' and 'name'", data, model)
                if args is None:
                    args = {}
                elif not isinstance(args, dict):
                    raise self._shape_error("tool_use 'input' is not an object", data, model)
                calls.append(make_tool_call(call_id, name, args, provider=self.name, model=model))
            elif kind == "thinking":
                text = block.get("thinking")
                if not isinstance(text, str):
                    raise self._shape_error("thinking block without a 'thinking' string", data, model)
                thinking.append(text)
            # redacted_thinking, server_tool_use, web_search_tool_result, …: nothing
            # for the caller to read or execute.
        usage = data.get("usage")
        if usage is None:
            usage = {}
        elif not isinstance(usage, dict):
            raise self._shape_error("'usage' is not an object", data, model)
        count = self._count
        stop = data.get("stop_reason")
        reply_model = data.get("model")
        return Response(
            text="".join(texts),
            model=reply_model if isinstance(reply_model, str) and reply_model else model,
            provider=self.name,
            finish_reason=_finish(stop),
            usage=_usage(
                count(usage, "input_tokens", model) or 0,
                count(usage, "cache_creation_input_tokens", model) or 0,
                count(usage, "cache_read_input_tokens", model) or 0,
                count(usage, "output_tokens", model) or 0,
            ),
            tool_calls=calls,
            reasoning="".join(thinking),
            raw_finish_reason=stop if isinstance(stop, str) else None,
        )

    def _stream_parser(self, model: str) -> StreamParser:
        return _AnthropicStreamParser(self, model)

    # -- errors -------------------------------------------------------------------

    def _http_error(self, status: int, headers: httpx.Headers, content: bytes, model: str) -> ProviderError:
        err = super()._http_error(status, headers, content, model)
        if type(err) is BadRequestError and _CONTEXT_LIMIT.search(err.message):
            err = _recast(err, ContextWindowExceeded, retryable=err.retryable)
        if err.request_id is None:
            # Error bodies carry "request_id" too; useful when a proxy drops the header.
            try:
                data = json.loads(content)
            except (ValueError, RecursionError):
                data = None
            rid = data.get("request_id") if isinstance(data, dict) else None
            if isinstance(rid, str) and rid:
                err.request_id = self._scrub(rid)
        return err

    def _inband_error(self, data: Any, model: str) -> ProviderError:
        err = super()._inband_error(data, model)
        rid = data.get("request_id") if isinstance(data, dict) else None
        if isinstance(rid, str) and rid:
            err.request_id = self._scrub(rid)
        return err

    # -- helpers --------------------------------------------------------------------

    def _shape_error(self, what: str, data: Any, model: str) -> ProtocolError:
        try:
            raw = json.dumps(data, separators=(",", ":"), default=str)
        except (TypeError, ValueError):
            raw = repr(data)
        return self._protocol_error(what, raw, model)

    def _count(self, usage: Mapping[str, Any], key: str, model: str) -> int | None:
        """A token count, ``None`` when absent (so a later event's count is not overwritten)."""
        value = usage.get(key)
        if value is None:
            return None
        # The shared rule (``token_count``): a nonsense count (a string, a bool, 1e400,
        # -3) is dropped to 0, not a failed call; a reply whose counts are all dropped
        # is billed at the executor's estimate.
        return token_count(value)

    def _max_tokens(self, model: str, request: Request) -> int:
        """``max_tokens`` is required by the API; pick the most specific value we have.

        When the value is a default (not the caller's) and a thinking budget is
        set, it is raised above the budget: the API rejects
        ``max_tokens <= budget_tokens``.
        """
        if request.max_tokens is not None:
            return request.max_tokens
        n = self._default_max_tokens
        if n is None:
            n = self._catalog_max_output(model)
        budget = request.thinking_budget
        if budget and n <= budget:
            n = budget + _FALLBACK_MAX_TOKENS
        return n

    def _catalog_max_output(self, model: str) -> int:
        """The catalog's max output tokens for ``model``, cached per model.

        Imported lazily (keeps ``import tierwise`` small) and defensively: a
        missing catalog module or an unknown model must never break a call, so
        any failure falls back to 4096.
        """
        cached = self._max_output.get(model)
        if cached is not None:
            return cached
        value = _FALLBACK_MAX_TOKENS
        try:
            catalog = importlib.import_module("..catalog", __package__).Catalog.default()
        except Exception:
            catalog = None
        if catalog is not None:
            for key in (f"{self.name}/{model}", model):
                try:
                    spec = catalog.get(key)
                except Exception:  # unknown model: lookup errors are not call errors
                    spec = None
                n = getattr(spec, "max_output_tokens", None)
                if type(n) is int and n > 0:
                    value = n
                    break
        self._max_output[model] = value
        return value

    def _messages(
        self, messages: list[Message], model: str
    ) -> tuple[str | list[dict[str, Any]] | None, list[dict[str, Any]]]:
        """Split out the system prompt and map turns to Anthropic's shapes."""
        system: list[str | list[dict[str, Any]]] = []
        system_blocks = False
        out: list[dict[str, Any]] = []
        results: list[dict[str, Any]] | None = None  # the open user turn of tool_result blocks
        for m in messages:
            role = m.role
            content = m.content
            if role == "system":
                if isinstance(content, list):
                    system_blocks = True
                    system.append(content)
                else:
                    system.append(content or "")
                continue  # hoisted: does not interrupt a run of tool results
            if role == "tool":
                if not m.tool_call_id:
                    raise BadRequestError(
                        "a 'tool' message needs tool_call_id (the tool_use id it answers)",
                        provider=self.name,
                        model=model,
                    )
                block: dict[str, Any] = {"type": "tool_result", "tool_use_id": m.tool_call_id}
                if content:
                    block["content"] = content
                if results is None:
                    results = []
                    out.append({"role": "user", "content": results})
                results.append(block)
                continue
            results = None
            if role == "user":
                out.append({"role": "user", "content": "" if content is None else content})
            elif m.tool_calls:
                blocks: list[dict[str, Any]]
                if not content:
                    blocks = []
                elif isinstance(content, str):
                    blocks = [{"type": "text", "text": content}]
                else:
                    blocks = list(content)
                for call in m.tool_calls:
                    blocks.append(
                        {
                            "type": "tool_use",
                            "id": call.id,
                            "name": call.name,
                            "input": self._call_input(call.arguments, call.raw_arguments, model),
                        }
                    )
                out.append({"role": "assistant", "content": blocks})
            elif content:
                # An empty assistant turn carries nothing and the API rejects it.
                out.append({"role": "assistant", "content": content})
        if not system:
            return None, out
        if not system_blocks:
            return "\n\n".join(s for s in system if isinstance(s, str)), out
        merged: list[dict[str, Any]] = []
        for part in system:
            if isinstance(part, str):
                if part:
                    merged.append({"type": "text", "text": part})
            else:
                merged.extend(part)
        return merged, out

    def _call_input(self, arguments: dict[str, Any], raw: str, model: str) -> dict[str, Any]:
        if arguments or not raw:
            return arguments
        try:
            parsed = json.loads(raw)
        except (ValueError, RecursionError):
            parsed = None
        if not isinstance(parsed, dict):
            raise BadRequestError(
                "assistant tool call arguments are not a JSON object", provider=self.name, model=model
            )
        return parsed

    def _tool_choice(self, choice: Any, parallel: bool | None, model: str) -> dict[str, Any] | None:
        """OpenAI-style ``tool_choice`` → Anthropic's; Anthropic-shaped dicts pass through."""
        out: dict[str, Any] | None
        if choice is None:
            out = None
        elif isinstance(choice, str):
            kind = _TOOL_CHOICE.get(choice)
            if kind is None:
                raise BadRequestError(
                    f"unknown tool_choice {choice!r}; use auto, required, none or {{'name': ...}}",
                    provider=self.name,
                    model=model,
                )
            out = {"type": kind}
        elif isinstance(choice, Mapping):
            fn = choice.get("function")
            if choice.get("type") == "function" and isinstance(fn, Mapping):
                out = {"type": "tool", "name": fn.get("name")}
            elif "type" not in choice and "name" in choice:
                out = {"type": "tool", "name": choice["name"]}
            else:
                out = dict(choice)
        else:
            raise BadRequestError(
                f"tool_choice must be a string or a dict, got {type(choice).__name__}",
                provider=self.name,
                model=model,
            )
        if parallel is False:
            if out is None:
                out = {"type": "auto"}
            if out.get("type") != "none":
                out["disable_parallel_tool_use"] = True
        return out

    def _json_schema(self, fmt: Mapping[str, Any], model: str) -> dict[str, Any]:
        spec = fmt.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, Mapping) else None
        if not isinstance(schema, Mapping):
            raise BadRequestError(
                "response_format json_schema needs {'json_schema': {'schema': {...}}}",
                provider=self.name,
                model=model,
            )
        return {"type": "json_schema", "schema": schema}


def _tool(tool: Tool) -> dict[str, Any]:
    out: dict[str, Any] = {"name": tool.name}
    if tool.description:
        out["description"] = tool.description
    out["input_schema"] = tool.parameters
    return out


class _AnthropicStreamParser:
    """Anthropic SSE events → tierwise stream events and, at the end, the same
    ``Response`` a non-streamed call returns (through ``StreamAccumulator``).

    Content blocks are addressed by the API's block ``index`` (text, thinking and
    tool blocks share one numbering); tool calls are renumbered 0, 1, … among
    tool_use blocks only, which is what ``ToolCallDelta.index`` means.
    """

    __slots__ = (
        "_acc",
        "_blocks",
        "_cache_read",
        "_cache_write",
        "_input",
        "_model",
        "_output",
        "_pending",
        "_provider",
        "_reply_model",
        "_tools",
    )

    def __init__(self, provider: Anthropic, model: str) -> None:
        self._provider = provider
        self._model = model
        self._acc = StreamAccumulator(provider.name, model)
        # block index -> tool index (>= 0) for tool_use blocks, -1 for every other block
        self._blocks: dict[int, int] = {}
        self._tools = 0
        # tool_use blocks whose content_block_start already carried a full input
        # (some gateways do that instead of input_json_delta fragments)
        self._pending: dict[int, dict[str, Any]] = {}
        self._input = self._cache_write = self._cache_read = self._output = 0
        # The dated model id the API reports; errors keep naming the requested model.
        self._reply_model: str | None = None

    def feed(self, event: SSEEvent) -> Iterable[StreamEvent]:
        raw = event.data
        if not raw or raw == "[DONE]":
            return ()
        data = self._provider.loads(raw, self._model)
        if not isinstance(data, dict):
            raise self._bad("stream event is not a JSON object", raw)
        kind = data.get("type") or event.event
        if kind == "content_block_delta":
            return self._delta(data, raw)
        if kind == "content_block_start":
            return self._block_start(data, raw)
        if kind == "content_block_stop":
            return self._block_stop(data)
        if kind == "message_start":
            self._message_start(data, raw)
        elif kind == "message_delta":
            self._message_delta(data, raw)
        elif kind == "error":
            raise self._provider._inband_error(data, self._model)
        # message_stop, ping and unknown future events carry nothing we need.
        return ()

    def finish(self) -> Response:
        acc = self._acc
        for index, args in self._pending.items():
            acc.tool(self._blocks[index], arguments=json.dumps(args, separators=(",", ":")))
        self._pending.clear()
        if acc.finish_reason is None:
            raise ProtocolError(
                "stream ended before message_delta carried a stop_reason (truncated stream)",
                provider=self._provider.name,
                model=self._model,
            )
        acc.usage = _usage(self._input, self._cache_write, self._cache_read, self._output)
        response = acc.build()
        if self._reply_model:
            response.model = self._reply_model
        return response

    # -- event handlers -------------------------------------------------------------

    def _delta(self, data: dict[str, Any], raw: str) -> tuple[StreamEvent, ...]:
        delta = data["delta"]
        kind = delta.get("type")
        if kind == "text_delta":
            text = delta["text"]
            if not isinstance(text, str):
                raise self._bad("text_delta without a 'text' string", raw)
            return (self._acc.text(text),) if text else ()
        if kind == "input_json_delta":
            index = data["index"]
            tool = self._blocks.get(index)
            if tool is None:
                raise self._bad(f"input_json_delta for content block {index} that never started", raw)
            if tool < 0:
                return ()  # server_tool_use: executed by Anthropic, not a call for the caller
            fragment = delta.get("partial_json") or ""
            if not isinstance(fragment, str):
                raise self._bad("input_json_delta 'partial_json' is not a string", raw)
            self._pending.pop(index, None)
            return (self._acc.tool(tool, arguments=fragment),) if fragment else ()
        if kind == "thinking_delta":
            text = delta["thinking"]
            if not isinstance(text, str):
                raise self._bad("thinking_delta without a 'thinking' string", raw)
            return (self._acc.reasoning(text),) if text else ()
        # signature_delta (thinking integrity check), citations_delta, future kinds.
        return ()

    def _block_start(self, data: dict[str, Any], raw: str) -> tuple[StreamEvent, ...]:
        index = data["index"]
        block = data["content_block"]
        kind = block["type"]
        if kind == "tool_use":
            call_id, name = block.get("id"), block.get("name")
            if not isinstance(call_id, str) or not isinstance(name, str):
                raise self._bad("tool_use block without 'id' and 'name'", raw)
            tool = self._tools
            self._tools += 1
            self._blocks[index] = tool
            args = block.get("input")
            if isinstance(args, dict) and args:
                self._pending[index] = args
            return (self._acc.tool(tool, call_id, name),)
        self._blocks[index] = -1
        # Text and thinking blocks start empty on the real API; keep any text a
        # gateway puts in the start event rather than dropping it.
        if kind == "text":
            text = block.get("text")
            if isinstance(text, str) and text:
                return (self._acc.text(text),)
        elif kind == "thinking":
            text = block.get("thinking")
            if isinstance(text, str) and text:
                return (self._acc.reasoning(text),)
        return ()

    def _block_stop(self, data: dict[str, Any]) -> tuple[StreamEvent, ...]:
        index = data.get("index")
        if not isinstance(index, int):
            return ()
        args = self._pending.pop(index, None)
        if args is None:
            return ()
        return (self._acc.tool(self._blocks[index], arguments=json.dumps(args, separators=(",", ":"))),)

    def _message_start(self, data: dict[str, Any], raw: str) -> None:
        message = data["message"]
        model = message.get("model")
        if isinstance(model, str) and model:
            self._reply_model = model
        usage = message.get("usage")
        if usage is not None:
            self._take_usage(usage, raw)

    def _message_delta(self, data: dict[str, Any], raw: str) -> None:
        delta = data.get("delta")
        if isinstance(delta, dict):
            stop = delta.get("stop_reason")
            if isinstance(stop, str) and stop:
                self._acc.raw_finish_reason = stop
                self._acc.finish_reason = _finish(stop)
        usage = data.get("usage")
        if usage is not None:
            self._take_usage(usage, raw)

    def _take_usage(self, usage: Any, raw: str) -> None:
        """Counts in message_delta are cumulative and supersede message_start's, so
        a field present in a later event replaces the earlier value (as the
        official SDKs do). An absent field, or a 0 where a count was already
        known (some gateways zero-fill message_delta usage), keeps it: cumulative
        counts never fall back to zero."""
        if not isinstance(usage, dict):
            raise self._bad("'usage' is not an object", raw)
        count = self._provider._count
        model = self._model
        n = count(usage, "input_tokens", model)
        if n:
            self._input = n
        n = count(usage, "cache_creation_input_tokens", model)
        if n:
            self._cache_write = n
        n = count(usage, "cache_read_input_tokens", model)
        if n:
            self._cache_read = n
        n = count(usage, "output_tokens", model)
        if n:
            self._output = n

    def _bad(self, what: str, raw: str) -> ProtocolError:
        return self._provider._protocol_error(what, raw, self._model)
