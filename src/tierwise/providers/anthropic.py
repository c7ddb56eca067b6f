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
* ``max_tokens`` is mandatory: the request's value, else ``default_max_tokens``
  (one number, or per model: a mapping or a function of the model name, which the
  configuration fills from each deployment's max output), else
  ``DEFAULT_MAX_TOKENS`` (4096). The adapter reads no catalog itself.
* ``usage.input_tokens`` *excludes* cache reads and writes; tierwise's
  ``Usage.input_tokens`` is the whole prompt, so the three are summed.
* Streams carry ``ping`` keep-alives, ``signature_delta`` for thinking blocks and
  in-band ``error`` events after HTTP 200 (``overloaded_error``); the final
  ``output_tokens`` (cumulative) and the stop reason come in ``message_delta``.
* One parser for both modes: a non-streamed message is folded by the stream
  parser's own block, usage and stop-reason rules (``absorb_message``).
* Thinking blocks (``thinking`` with its ``signature``, ``redacted_thinking`` with its
  ``data``) are kept whole in ``Response.reasoning_items`` (streamed: assembled from
  ``thinking_delta`` and ``signature_delta``) and their text in ``Response.reasoning``;
  an assistant turn's items are sent back first in its content, unchanged, because
  the API requires the signed thinking block before the ``tool_use`` blocks when
  tool results are returned with extended thinking on.
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

import json
import re
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Unpack

import httpx

from ..errors import BadRequestError, ContextWindowExceeded, ProtocolError
from ..types import FinishReason, ReasoningDelta, Request, Response, StreamEvent, Usage
from ._accumulate import StreamAccumulator, StreamParser, token_count
from ._anthropic_request import json_schema, messages_body, tool_body, tool_choice
from ._errors import ErrorInfo, classify_error, error_envelope
from ._sse import SSEEvent
from .base import Provider, ProviderOptions

if TYPE_CHECKING:
    from ._batch import BatchWire

__all__ = ["DEFAULT_MAX_TOKENS", "Anthropic"]

#: ``max_tokens`` sent when neither the request nor ``default_max_tokens`` gives one.
DEFAULT_MAX_TOKENS = 4096

#: ``Anthropic(default_max_tokens=...)``: one value, or a value per model name.
MaxTokensDefault = int | Mapping[str, int] | Callable[[str], int | None]

_FINISH: dict[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}

# "input length and `max_tokens` exceed context limit: 178959 + 64000 > 200000, …":
# not covered by the shared patterns in base, which know "context window/length".
_CONTEXT_LIMIT = re.compile(r"exceeds? (?:the )?context limit", re.IGNORECASE)


#: The request fields ``POST /v1/messages/count_tokens`` takes.
_COUNT_FIELDS = ("model", "messages", "system", "tools", "tool_choice", "thinking", "output_config")


def _finish(stop: Any) -> FinishReason:
    # Unknown future stop reasons still mean the model stopped on its own;
    # the raw value is kept in ``raw_finish_reason``.
    return _FINISH.get(stop, "stop") if isinstance(stop, str) else "stop"


# Usage fields → the stream parser's slots.
_USAGE_FIELDS = (
    ("input_tokens", "_input"),
    ("cache_creation_input_tokens", "_cache_write"),
    ("cache_read_input_tokens", "_cache_read"),
    ("output_tokens", "_output"),
)


def _count(usage: Mapping[str, Any], key: str) -> int | None:
    """A token count, ``None`` when absent (so a later event's count is not overwritten).

    The shared rule (``token_count``): a nonsense count (a string, a bool, 1e400,
    -3) is dropped to 0, not a failed call; a reply whose counts are all dropped is
    billed at the executor's estimate."""
    value = usage.get(key)
    return None if value is None else token_count(value)


def _dump(data: Any) -> str:
    try:
        return json.dumps(data, separators=(",", ":"), default=str)
    except (TypeError, ValueError):
        return repr(data)


def _usage(input_tokens: int, cache_write: int, cache_read: int, output_tokens: int) -> Usage:
    """Anthropic's ``input_tokens`` leaves out cached tokens; tierwise counts the whole prompt."""
    return Usage(
        input_tokens=input_tokens + cache_write + cache_read,
        output_tokens=output_tokens,
        cached_input_tokens=cache_read,
        cache_write_tokens=cache_write,
    )


class Anthropic(Provider):
    """Adapter for the Anthropic Messages API (and servers that speak it).

    ``default_max_tokens`` is the ``max_tokens`` sent when a request sets none: an
    int for every model, or per model a mapping or a function of the model name
    (asked once per model; ``None`` or a model it lacks means ``DEFAULT_MAX_TOKENS``).
    """

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
        default_max_tokens: MaxTokensDefault | None = None,
        anthropic_version: str = "2023-06-01",
        **options: Unpack[ProviderOptions],
    ) -> None:
        # Set before super().__init__, which calls _auth_headers().
        self._anthropic_version = anthropic_version
        self._default_max_tokens = default_max_tokens
        self._max_output: dict[str, int] = {}
        super().__init__(api_key, base_url, http_client, **options)
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

    def batch_api(self) -> BatchWire | None:
        from ._batch_wires import AnthropicBatchWire

        return AnthropicBatchWire(self)

    def _build_body(self, model: str, request: Request, stream: bool) -> dict[str, Any]:
        system, messages = messages_body(request.messages, self.name, model)
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
            body["tools"] = [tool_body(t) for t in request.tools]
            choice = tool_choice(request.tool_choice, request.parallel_tool_calls, self.name, model)
            if choice is not None:
                body["tool_choice"] = choice
        budget = request.thinking_budget
        if budget is not None:
            body["thinking"] = (
                {"type": "enabled", "budget_tokens": budget} if budget > 0 else {"type": "disabled"}
            )
        fmt = request.response_format
        if fmt is not None and fmt.get("type") == "json_schema":
            body["output_config"] = {"format": json_schema(fmt, self.name, model)}
        if request.user is not None:
            body["metadata"] = {"user_id": request.user}
        if stream:
            body["stream"] = True
        if request.extra_body:
            body.update(request.extra_body)
        return body

    # -- token counting (POST /v1/messages/count_tokens) ---------------------------

    def supports_token_counting(self, model: str) -> bool:
        return True

    def _count_url(self, model: str) -> str:
        return self._endpoint + "/count_tokens"

    def _count_body(self, model: str, request: Request) -> dict[str, Any]:
        # The fields count_tokens accepts (it rejects max_tokens, stream and sampling).
        body = self._build_body(model, request, False)
        return {k: body[k] for k in _COUNT_FIELDS if k in body}

    def _parse_count(self, model: str, data: Any) -> int:
        return self._count_field(model, data, "input_tokens")

    def _parse_response(self, model: str, data: Any) -> Response:
        parser = _AnthropicStreamParser(self, model)
        parser.absorb_message(data)
        return parser.finish()

    def _stream_parser(self, model: str) -> StreamParser:
        return _AnthropicStreamParser(self, model)

    def _error_info(self, data: Any, status: int | None, fallback: str) -> ErrorInfo:
        """The shared envelope, plus the body's ``request_id`` (useful when a proxy
        drops the header) and "exceed context limit" 400s as context-window errors."""
        rid = data.get("request_id") if isinstance(data, dict) else None
        message, etype, code = error_envelope(data)
        info = ErrorInfo(
            message or fallback, etype, code, request_id=rid if isinstance(rid, str) and rid else None
        )
        if (
            status is not None
            and _CONTEXT_LIMIT.search(info.message)
            and classify_error(status, info.message, etype, code) is BadRequestError
        ):
            info.cls = ContextWindowExceeded
        return info

    # -- request helpers ----------------------------------------------------------

    def _max_tokens(self, model: str, request: Request) -> int:
        """``max_tokens`` is required by the API; pick the most specific value we have.

        When the value is a default (not the caller's) and a thinking budget is
        set, it is raised above the budget: the API rejects
        ``max_tokens <= budget_tokens``.
        """
        if request.max_tokens is not None:
            return request.max_tokens
        default = self._default_max_tokens
        n = default if isinstance(default, int) else self._model_max_tokens(model)
        budget = request.thinking_budget
        if budget and n <= budget:
            n = budget + DEFAULT_MAX_TOKENS
        return n

    def _model_max_tokens(self, model: str) -> int:
        """``default_max_tokens`` for ``model`` when given per model. A mapping is read
        on every call (it may be filled after construction); a function is asked once
        per model. Anything but a positive int is no answer."""
        default = self._default_max_tokens
        n: object = None
        if isinstance(default, Mapping):
            n = default.get(model)
        elif callable(default):
            cached = self._max_output.get(model)
            if cached is not None:
                return cached
            n = default(model)
            if len(self._max_output) >= 1024:  # models are few; bound it anyway
                self._max_output.clear()
            self._max_output[model] = n if type(n) is int and n > 0 else DEFAULT_MAX_TOKENS
        return n if type(n) is int and n > 0 else DEFAULT_MAX_TOKENS


class _AnthropicStreamParser:
    """Anthropic SSE events, or one whole non-streamed message (``absorb_message``),
    → tierwise stream events and, at the end, the ``Response`` (through
    ``StreamAccumulator``): content blocks, usage and the stop reason are read by the
    same rules in both modes.

    Content blocks are addressed by the API's block ``index`` (text, thinking and
    tool blocks share one numbering); tool calls are renumbered 0, 1, … among
    tool_use blocks only, which is what ``ToolCallDelta.index`` means. A whole
    message is stricter about block shapes (it must carry the whole answer).
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
        "_thinking",
        "_tools",
        "_whole",
    )

    def __init__(self, provider: Anthropic, model: str) -> None:
        self._provider = provider
        self._model = model
        self._acc = StreamAccumulator(provider.name, model, (provider._api_key,))
        # block index -> tool index (>= 0) for tool_use blocks, -1 for every other block
        self._blocks: dict[int, int] = {}
        self._tools = 0
        # tool_use blocks whose content_block_start already carried a full input
        # (some gateways do that instead of input_json_delta fragments)
        self._pending: dict[int, dict[str, Any]] = {}
        # block index -> the thinking block being streamed (text and signature so far)
        self._thinking: dict[int, dict[str, Any]] = {}
        self._input = self._cache_write = self._cache_read = self._output = 0
        # The dated model id the API reports; errors keep naming the requested model.
        self._reply_model: str | None = None
        self._whole = False

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
            return self._block(data["index"], data["content_block"], raw)
        if kind == "content_block_stop":
            return self._block_stop(data)
        if kind == "message_start":
            self._message(data["message"], raw)
        elif kind == "message_delta":
            delta = data.get("delta")
            if isinstance(delta, dict):
                stop = delta.get("stop_reason")
                if isinstance(stop, str) and stop:
                    self._stop(stop)
            usage = data.get("usage")
            if usage is not None:
                self._take_usage(usage, raw)
        elif kind == "error":
            raise self._provider._inband_error(data, self._model)
        # message_stop, ping and unknown future events carry nothing we need.
        return ()

    def absorb_message(self, data: Any) -> None:
        """A whole Messages reply: each content block as its block start, then the
        message's model and usage, then its stop reason (a whole body always has one)."""
        if not isinstance(data, dict):
            raise self._bad("reply is not a JSON object", _dump(data))
        if data.get("type") == "error":
            raise self._provider._inband_error(data, self._model)
        content = data.get("content")
        if not isinstance(content, list):
            raise self._bad("reply has no 'content' list", data)
        self._whole = True
        for index, block in enumerate(content):
            if not isinstance(block, dict):
                raise self._bad("content block is not an object", data)
            self._block(index, block, data)
        self._message(data, data)
        self._stop(data.get("stop_reason"))

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
            block = self._thinking.get(data["index"])
            if block is not None:
                block["thinking"] += text
            return (self._acc.reasoning(text),) if text else ()
        if kind == "signature_delta":
            block = self._thinking.get(data["index"])
            sig = delta.get("signature")
            if block is not None and isinstance(sig, str):
                block["signature"] += sig
        # citations_delta, future kinds: nothing to keep.
        return ()

    def _block(self, index: int, block: dict[str, Any], raw: Any) -> tuple[StreamEvent, ...]:
        """A content block as it starts (stream) or whole (non-streamed message)."""
        whole = self._whole
        kind = block.get("type") if whole else block["type"]
        acc = self._acc
        if kind == "tool_use":
            call_id, name = block.get("id"), block.get("name")
            if not isinstance(call_id, str) or not isinstance(name, str):
                raise self._bad("tool_use block without 'id' and 'name'", raw)
            tool = self._tools
            self._tools += 1
            self._blocks[index] = tool
            args = block.get("input")
            if whole:
                if args is None:
                    args = {}
                elif not isinstance(args, dict):
                    raise self._bad("tool_use 'input' is not an object", raw)
                acc.call(tool, call_id, name, args)
                return ()
            if isinstance(args, dict) and args:
                self._pending[index] = args
            return (acc.tool(tool, call_id, name),)
        self._blocks[index] = -1
        if kind == "redacted_thinking":
            item = dict(block)
            acc.reasoning_items.append(item)  # opaque: sent back as it came
            return () if whole else (ReasoningDelta("", item=item),)
        if kind == "thinking":
            if whole:
                acc.reasoning_items.append(dict(block))
            else:
                self._thinking[index] = {
                    "type": "thinking",
                    "thinking": block.get("thinking") or "",
                    "signature": block.get("signature") or "",
                }
        if kind == "text" or kind == "thinking":
            # Text and thinking blocks start empty on the real API; keep any text a
            # gateway puts in the start event rather than dropping it.
            text = block.get(kind)
            if not isinstance(text, str):
                if whole:
                    raise self._bad(f"{kind} block without a '{kind}' string", raw)
                return ()
            if text:
                return (acc.text(text) if kind == "text" else acc.reasoning(text),)
        # redacted_thinking, server_tool_use, web_search_tool_result, …: nothing
        # for the caller to read or execute.
        return ()

    def _block_stop(self, data: dict[str, Any]) -> tuple[StreamEvent, ...]:
        index = data.get("index")
        if not isinstance(index, int):
            return ()
        thinking = self._thinking.pop(index, None)
        if thinking is not None:
            # Complete now, signature included: said in the stream too (ReasoningDelta.item)
            self._acc.reasoning_items.append(thinking)
            return (ReasoningDelta("", item=thinking),)
        args = self._pending.pop(index, None)
        if args is None:
            return ()
        return (self._acc.tool(self._blocks[index], arguments=json.dumps(args, separators=(",", ":"))),)

    def _message(self, message: dict[str, Any], raw: Any) -> None:
        model = message.get("model")
        if isinstance(model, str) and model:
            self._reply_model = model
        usage = message.get("usage")
        if usage is not None:
            self._take_usage(usage, raw)

    def _stop(self, stop: Any) -> None:
        # Unknown future stop reasons still mean the model stopped on its own.
        self._acc.raw_finish_reason = stop if isinstance(stop, str) else None
        self._acc.finish_reason = _finish(stop)

    def _take_usage(self, usage: Any, raw: Any) -> None:
        """Counts in message_delta are cumulative and supersede message_start's, so
        a field present in a later event replaces the earlier value (as the
        official SDKs do). An absent field, or a 0 where a count was already
        known (some gateways zero-fill message_delta usage), keeps it: cumulative
        counts never fall back to zero."""
        if not isinstance(usage, dict):
            raise self._bad("'usage' is not an object", raw)
        for key, attr in _USAGE_FIELDS:
            n = _count(usage, key)
            if n:
                setattr(self, attr, n)

    def _bad(self, what: str, raw: Any) -> ProtocolError:
        return self._provider._protocol_error(what, raw if isinstance(raw, str) else _dump(raw), self._model)
