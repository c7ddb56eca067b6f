"""The OpenAI Chat Completions wire format, and every server that speaks it.

DeepSeek, Mistral, OpenRouter, vLLM, Ollama and most gateways accept the same
``/chat/completions`` request and answer with the same JSON and SSE shapes, but
each bends it slightly: a different name for the output cap, a field the server
rejects, an extra finish reason, usage in another place, errors in another
envelope. Those differences are *data* (an ``OpenAICompat`` row), not subclasses,
so adding a server is one dict entry and the hot path stays a single code path.

Normalization choices (documented here because callers rely on them):

* finish reasons map to the five tierwise values; an unknown reason becomes
  ``"stop"`` (the answer is complete as far as we can tell) and the provider's own
  word is kept in ``raw_finish_reason``;
* a reply that carries tool calls but says ``"stop"`` (OpenAI does this when
  ``tool_choice`` forces a function) is reported as ``"tool_calls"``, so callers
  have one test for "run the tools";
* a refusal (``message.refusal``) is reported as ``"content_filter"`` with the
  refusal text as ``text``;
* a non-streamed reply without ``finish_reason`` is complete (the JSON body ended),
  so it maps to ``"stop"``/``"tool_calls"``; a *stream* without one was cut short
  and raises ``ProtocolError``;
* both modes go through one parser (``_ChatStream``): a whole reply's message is
  folded like one big delta, so these rules are written once.

The Responses API (``POST {base_url}/responses``) is spoken instead for the whole
provider (``api="responses"``) or for the models listed in ``responses_models``
(what a deployment's ``api = "responses"`` sets); its body and parser are in
``_responses``. Chat Completions stays the default: every compatible server speaks
it, while the Responses API is OpenAI's own (and a few servers').

Embeddings (``embed``) use ``POST {base_url}/embeddings`` with
``encoding_format: "float"`` (so a server never answers base64 strings); vectors are
put back in input order by their ``index``, and a reply whose indices do not cover
the inputs exactly once is a ``ProtocolError``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Collection, Iterable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Unpack

import httpx

from ..errors import ConfigError, ContentFiltered, RateLimitError
from ..types import Embeddings, FinishReason, Message, Request, Response, StreamEvent, Tool, Usage
from ._accumulate import StreamAccumulator, cost_amount, token_count
from ._compat import COMPATIBLE_SERVERS, FINISH, OpenAICompat
from ._errors import ErrorInfo, classify_error
from ._gemini_request import google_signature
from ._normalize import check_embeddings, embedding_vector
from ._responses import ResponsesStream, responses_body
from ._sse import SSEEvent
from ._tool_ids import fit_tool_id
from .base import Provider, ProviderOptions

if TYPE_CHECKING:
    from ._batch import BatchWire

__all__ = ["COMPATIBLE_SERVERS", "OpenAI", "OpenAICompat"]

_EMPTY: dict[str, Any] = {}
#: The request fields ``POST /responses/input_tokens`` takes.
_COUNT_FIELDS = (
    "model",
    "input",
    "instructions",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "reasoning",
    "text",
    "previous_response_id",
)


def _usage(raw: Any) -> Usage:
    """Normalize an OpenAI-style usage object; absent or null fields count as 0.

    ``prompt_tokens`` already includes cached tokens and ``completion_tokens``
    already includes reasoning tokens, which is exactly tierwise's convention.
    """
    if not isinstance(raw, dict):
        return Usage()
    pd = raw.get("prompt_tokens_details")
    if not isinstance(pd, dict):
        pd = _EMPTY
    cd = raw.get("completion_tokens_details")
    if not isinstance(cd, dict):
        cd = _EMPTY
    return Usage(
        input_tokens=token_count(raw.get("prompt_tokens")),
        output_tokens=token_count(raw.get("completion_tokens")),
        # DeepSeek reports hits at the top level (newer replies also fill the OpenAI field).
        cached_input_tokens=token_count(pd.get("cached_tokens") or raw.get("prompt_cache_hit_tokens")),
        cache_write_tokens=token_count(pd.get("cache_write_tokens")),
        reasoning_tokens=token_count(cd.get("reasoning_tokens")),
        reported_cost_usd=cost_amount(raw.get("cost")),
    )


def _content(value: Any) -> tuple[str, str]:
    """(text, reasoning) from a message content: a string, null, or a list of parts.

    Mistral's reasoning models answer with ``[{"type": "thinking", ...}, {"type":
    "text", ...}]`` instead of a string.
    """
    if value is None:
        return "", ""
    if isinstance(value, str):
        return value, ""
    if not isinstance(value, list):
        raise TypeError(f"message content is a {type(value).__name__}")
    text: list[str] = []
    thinking: list[str] = []
    for part in value:
        if not isinstance(part, dict):
            continue
        kind = part.get("type")
        if kind == "text":
            text.append(str(part.get("text") or ""))
        elif kind == "thinking":
            inner = part.get("thinking")
            if isinstance(inner, str):
                thinking.append(inner)
            elif isinstance(inner, list):
                thinking.extend(str(p.get("text") or "") for p in inner if isinstance(p, dict))
    return "".join(text), "".join(thinking)


def _reasoning_text(obj: Mapping[str, Any]) -> str:
    """DeepSeek/vLLM ``reasoning_content``, else OpenRouter/Ollama ``reasoning``; never both,
    since servers that send both send the same text twice."""
    value = obj.get("reasoning_content")
    if not isinstance(value, str):
        value = obj.get("reasoning")
    return value if isinstance(value, str) else ""


def _message(m: Message, server: str, ids: str = "") -> dict[str, Any]:
    """One message in Chat Completions form; ``ids`` is the server's tool-id rule (``_tool_ids``)."""
    role = m.role
    content = m.content
    if role == "tool":
        call_id = fit_tool_id(m.tool_call_id, ids) if m.tool_call_id else m.tool_call_id
        return {"role": "tool", "tool_call_id": call_id, "content": "" if content is None else content}
    if role == "assistant" and m.tool_calls:
        out: dict[str, Any] = {
            "role": "assistant",
            # OpenAI wants null, not "", next to tool_calls when there is no text.
            "content": content or None,
            "tool_calls": [
                {
                    "id": fit_tool_id(tc.id, ids),
                    "type": "function",
                    "function": {"name": tc.name, "arguments": tc.raw_arguments or "{}"},
                }
                for tc in m.tool_calls
            ],
        }
        for item in m.reasoning_items:
            # DeepSeek rejects a tool-calling turn without its reasoning_content. Sent
            # only to the server that wrote it: OpenAI and Mistral reject unknown fields.
            if item.get("type") == "reasoning_content" and item.get("server") == server:
                out["reasoning_content"] = item.get("text", "")
    else:
        out = {"role": role, "content": "" if content is None else content}
    if m.name:
        out["name"] = m.name
    return out


def _tool(t: Tool) -> dict[str, Any]:
    fn: dict[str, Any] = {"name": t.name, "parameters": t.parameters}
    if t.description:
        fn["description"] = t.description
    return {"type": "function", "function": fn}


def _tool_choice(choice: str | dict[str, Any]) -> str | dict[str, Any]:
    """Strings pass through; ``{"name": X}`` (and Anthropic's ``{"type": "tool", "name": X}``)
    become OpenAI's ``{"type": "function", "function": {"name": X}}``."""
    if isinstance(choice, str):
        return choice
    kind = choice.get("type")
    name = choice.get("name")
    if name and kind in (None, "tool"):
        return {"type": "function", "function": {"name": name}}
    if kind in ("auto", "none", "required", "any") and name is None and "function" not in choice:
        return "required" if kind == "any" else kind
    return choice


def _status_from_code(code: str | None) -> int | None:
    """OpenRouter puts the HTTP status in ``error.code``; use it to classify in-band errors."""
    if code and code.isdigit():
        value = int(code)
        if 400 <= value < 600:
            return value
    return None


def _flatten_message(msg: Any) -> str:
    """Error messages are usually strings; Mistral's 422 nests a pydantic ``detail`` list."""
    if isinstance(msg, str):
        return msg
    if isinstance(msg, dict) and isinstance(msg.get("detail"), list):
        msg = msg["detail"]
    if isinstance(msg, list):
        parts = []
        for item in msg:
            if isinstance(item, dict):
                loc = ".".join(str(p) for p in item.get("loc") or ())
                text = str(item.get("msg") or item.get("message") or "")
                parts.append(f"{loc}: {text}" if loc else text)
            else:
                parts.append(str(item))
        return "; ".join(parts)
    return "" if msg is None else json.dumps(msg, separators=(",", ":"))[:500]


def _dump(data: Any) -> str:
    try:
        return json.dumps(data, separators=(",", ":"))[:2000]
    except (TypeError, ValueError):
        return repr(data)[:2000]


def _error_fields(data: Any) -> tuple[str, str | None, str | None]:
    """Understands the OpenAI/DeepSeek ``{"error": {...}}`` envelope, Mistral's and
    vLLM's flat ``{"object": "error", "message", "type", "code"}``, OpenRouter's
    numeric ``code`` with ``metadata.raw`` (the upstream provider's own error) and
    moderation ``metadata.reasons``, and FastAPI's ``{"detail": ...}``."""
    if isinstance(data, list) and data:
        data = data[0]
    if not isinstance(data, dict):
        return "", None, None
    err = data.get("error")
    if isinstance(err, str):
        return err, None, None
    src = err if isinstance(err, dict) else data
    message = _flatten_message(src.get("message") or src.get("msg") or src.get("detail"))
    etype = src.get("type") or src.get("status")
    code = src.get("code")
    meta = src.get("metadata")
    if isinstance(meta, dict):
        raw = meta.get("raw")
        if raw:
            raw_text = raw if isinstance(raw, str) else _dump(raw)
            message = f"{message}: {raw_text[:500]}" if message else raw_text[:500]
        if meta.get("reasons") or meta.get("flagged_input"):
            code = "content_filter"
    return (
        message,
        None if etype is None else str(etype),
        None if code is None else str(code),
    )


def _args(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"))


class OpenAI(Provider):
    """OpenAI Chat Completions, and any server in ``COMPATIBLE_SERVERS`` (or a custom row).

    ``compat`` picks the row: a name such as ``"deepseek"`` or an ``OpenAICompat``.
    The key defaults to the row's environment variable; the base URL to the row's
    default (or, for ``"gateway"``, ``TIERWISE_GATEWAY_BASE_URL``).

    ``api`` picks the wire format for every model: ``"chat"`` (Chat Completions,
    the default) or ``"responses"`` (the Responses API); ``responses_models`` names
    models that use the Responses API while the rest stay on Chat Completions.
    """

    name = "openai"
    # The key's env var depends on the row (``_env_api_key``), not the class.
    api_key_env: ClassVar[str | None] = None
    default_base_url: ClassVar[str] = "https://api.openai.com/v1"
    request_id_headers: ClassVar[tuple[str, ...]] = (
        "x-request-id",
        "request-id",
        "x-generation-id",  # OpenRouter
        "mistral-correlation-id",
        "x-litellm-call-id",  # LiteLLM proxy
    )
    supports_embeddings: ClassVar[bool] = True
    inband_error_text: ClassVar[str] = "error event in reply"

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str | None = None,
        http_client: httpx.AsyncClient | None = None,
        *,
        compat: str | OpenAICompat = "openai",
        api: Literal["chat", "responses"] = "chat",
        responses_models: Collection[str] = (),
        **options: Unpack[ProviderOptions],
    ) -> None:
        if api not in ("chat", "responses"):
            raise ConfigError(f"api must be 'chat' or 'responses', got {api!r}", field="api")
        self._all_responses = api == "responses"
        self._responses_models = frozenset(responses_models)
        if isinstance(compat, OpenAICompat):
            row = compat
        else:
            found = COMPATIBLE_SERVERS.get(compat)
            if found is None:
                raise ConfigError(
                    f"unknown OpenAI-compatible server {compat!r}; "
                    f"known: {', '.join(sorted(COMPATIBLE_SERVERS))} (or pass an OpenAICompat)",
                    field="compat",
                )
            row = found
        self._compat = row
        self.name = row.name
        if not base_url and row.base_url_env:
            base_url = os.environ.get(row.base_url_env)
        base_url = base_url or row.default_base_url
        if not base_url:
            hint = f" or set {row.base_url_env}" if row.base_url_env else ""
            raise ConfigError(f"{row.name!r} has no default base URL: pass base_url={hint}", field="base_url")
        super().__init__(api_key, base_url, http_client, **options)
        # Per-instance constants so building a body does no lookups in the row.
        self._chat_url = self.base_url + "/chat/completions"
        self._responses_url = self.base_url + "/responses"
        self._embeddings_url = self.base_url + "/embeddings"
        self._max_tokens_field = row.max_tokens_field
        self._stream_usage = row.stream_usage
        self._drop = tuple(row.drop_fields)
        self._renames = row.rename_fields
        self._nested_reasoning = row.reasoning_field == "reasoning.effort"
        self._finish: dict[str, FinishReason] = {**FINISH, **dict(row.finish_reasons)}

    @property
    def compat(self) -> OpenAICompat:
        return self._compat

    def _env_api_key(self) -> str | None:
        env = self._compat.api_key_env
        return os.environ.get(env) if env else None

    def _key_hint(self) -> str | None:
        return self._compat.api_key_env

    # -- request -------------------------------------------------------------

    def uses_responses(self, model: str) -> bool:
        """Whether calls to ``model`` go over the Responses API."""
        return self._all_responses or model in self._responses_models

    def _url(self, model: str, stream: bool) -> str:
        return self._responses_url if self.uses_responses(model) else self._chat_url

    def batch_api(self) -> BatchWire | None:
        if not self._compat.batch_api:
            return None
        from ._batch_wires import OpenAIBatchWire

        return OpenAIBatchWire(self)

    def _build_body(self, model: str, request: Request, stream: bool) -> dict[str, Any]:
        if self._all_responses or model in self._responses_models:
            return responses_body(self, model, request, stream)
        name = self.name
        ids = self._compat.tool_ids
        body: dict[str, Any] = {
            "model": model,
            "messages": [_message(m, name, ids) for m in request.messages],
        }
        if request.max_tokens is not None:
            body[self._max_tokens_field] = request.max_tokens
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.top_p is not None:
            body["top_p"] = request.top_p
        if request.stop:
            body["stop"] = request.stop
        if request.seed is not None:
            body["seed"] = request.seed
        if request.user is not None:
            body["user"] = request.user
        if request.tools:
            body["tools"] = [_tool(t) for t in request.tools]
        if request.tool_choice is not None:
            body["tool_choice"] = _tool_choice(request.tool_choice)
        if request.parallel_tool_calls is not None:
            body["parallel_tool_calls"] = request.parallel_tool_calls
        if request.response_format is not None:
            body["response_format"] = request.response_format
        if request.reasoning_effort is not None:
            if self._nested_reasoning:
                body["reasoning"] = {"effort": request.reasoning_effort}
            else:
                body["reasoning_effort"] = request.reasoning_effort
        if stream:
            body["stream"] = True
            if self._stream_usage and request.stream_usage:
                body["stream_options"] = {"include_usage": True}
        for name in self._drop:
            body.pop(name, None)
        for src, dst in self._renames:
            if src in body:
                body[dst] = body.pop(src)
        if request.extra_body:
            body.update(request.extra_body)
        return body

    # -- response ------------------------------------------------------------

    def _map_finish(self, raw: str) -> FinishReason:
        finish = self._finish.get(raw)
        if finish is None:
            finish = self._finish.get(raw.lower(), "stop")
        return finish

    def _parse_response(self, model: str, data: Any) -> Response:
        parser: _ChatStream | ResponsesStream
        if self.uses_responses(model):
            parser = ResponsesStream(self, model)
        else:
            parser = _ChatStream(self, model, whole=True)
        parser.absorb_reply(data)
        return parser.finish()

    def _stream_parser(self, model: str) -> _ChatStream | ResponsesStream:
        if self.uses_responses(model):
            return ResponsesStream(self, model)
        return _ChatStream(self, model)

    # -- token counting (Responses API only: POST /responses/input_tokens) ------

    def supports_token_counting(self, model: str) -> bool:
        return self.uses_responses(model)

    def _count_url(self, model: str) -> str:
        return self._responses_url + "/input_tokens"

    def _count_body(self, model: str, request: Request) -> dict[str, Any]:
        body = responses_body(self, model, request, False)
        return {k: body[k] for k in _COUNT_FIELDS if k in body}

    def _parse_count(self, model: str, data: Any) -> int:
        return self._count_field(model, data, "input_tokens")

    # -- embeddings ----------------------------------------------------------

    def _embed_url(self, model: str) -> str:
        return self._embeddings_url

    def _embed_body(self, model: str, texts: list[str]) -> dict[str, Any]:
        return {"model": model, "input": texts, "encoding_format": "float"}

    def _parse_embeddings(self, model: str, data: Any, count: int) -> Embeddings:
        if not isinstance(data, dict):
            raise self._protocol_error("reply is not a JSON object", _dump(data), model)
        if data.get("error") or data.get("object") == "error":
            raise self._inband_error(data, model)
        items = data.get("data")
        if not isinstance(items, list):
            raise self._protocol_error("reply has no 'data' list", _dump(data), model)
        slots: list[list[float] | None] = [None] * len(items)
        for pos, item in enumerate(items):
            if not isinstance(item, dict):
                raise ValueError(f"data[{pos}] is not an object")
            index = item.get("index", pos)
            if type(index) is not int or not 0 <= index < len(items) or slots[index] is not None:
                raise ValueError(f"data[{pos}] has a missing, duplicate or out-of-range index {index!r}")
            slots[index] = embedding_vector(item.get("embedding"), f"data[{pos}].embedding")
        vectors = [v for v in slots if v is not None]
        check_embeddings(vectors, count)
        reported = data.get("model")
        return Embeddings(
            vectors=vectors,
            model=reported if isinstance(reported, str) and reported else model,
            provider=self.name,
            usage=_usage(data.get("usage")),
        )

    # -- errors --------------------------------------------------------------

    def _error_info(self, data: Any, status: int | None, fallback: str) -> ErrorInfo:
        """Reads every envelope ``_error_fields`` knows. A moderation verdict
        (``code: content_filter``, OpenRouter sends it as 403) is ``ContentFiltered``,
        not a key problem; an in-band error is classified by the HTTP status
        OpenRouter puts in ``error.code``, and an empty quota there is a (final)
        rate limit."""
        message, etype, code = _error_fields(data)
        info = ErrorInfo(message or fallback, etype, code)
        if status is None:
            if code == "content_filter":
                info.cls = ContentFiltered
            elif "insufficient_quota" in f"{etype} {code}":
                info.cls = RateLimitError
            else:
                info.status = _status_from_code(code)
        elif (
            code == "content_filter"
            and classify_error(status, info.message, etype, code) is not ContentFiltered
        ):
            info.cls, info.retryable = ContentFiltered, False
        return info


class _ChatStream:
    """Folds ``chat.completion.chunk`` events, or one whole ``chat.completion``
    (``absorb_reply``), into a ``StreamAccumulator``: one set of rules for finish
    reasons, refusals, reasoning, tool calls and usage in both modes.

    Only choice 0 is followed. Usage may arrive on a choices-less chunk (OpenAI
    ``include_usage``), on the finish chunk (DeepSeek, Mistral) or on every chunk
    (vLLM continuous stats): the last one seen wins. A whole reply's message is
    read like one delta, except that its tool calls arrive complete and a reply
    cannot be truncated (no ``finish_reason`` means it ended normally).
    """

    __slots__ = ("_acc", "_model", "_owner", "_reasoning_field", "_refused", "_reported", "_whole")

    def __init__(self, owner: OpenAI, model: str, *, whole: bool = False) -> None:
        self._owner = owner
        # Errors name the requested model (what the caller and executor know it by);
        # the reported model only goes into the final Response.
        self._model = model
        self._reported: str | None = None
        self._acc = StreamAccumulator(owner.name, model, (owner._api_key,))
        self._refused = False
        self._whole = whole
        self._reasoning_field = False  # reasoning came as DeepSeek's reasoning_content

    def feed(self, event: SSEEvent) -> Iterable[StreamEvent]:
        data = event.data
        if data == "[DONE]" or not data:
            return ()
        chunk = self._owner.loads(data, self._model)
        if not isinstance(chunk, dict):
            raise self._owner._protocol_error("stream event is not a JSON object", data, self._model)
        self._top(chunk, event.event == "error")
        choices = chunk.get("choices")
        if not choices:
            return ()
        out: list[StreamEvent] = []
        for choice in choices:
            if choice.get("index", 0) == 0:
                self._choice(choice, choice.get("delta"), out)
        return out

    def absorb_reply(self, data: Any) -> None:
        """One whole non-streamed reply; its shape is checked strictly, since a JSON
        body (unlike a stream chunk) must carry the answer."""
        owner, model = self._owner, self._model
        if not isinstance(data, dict):
            raise owner._protocol_error("reply is not a JSON object", _dump(data), model)
        # OpenRouter reports failures that happen after routing with HTTP 200.
        self._top(data, False)
        choices = data.get("choices")
        if not isinstance(choices, list) or not choices:
            raise owner._protocol_error("reply has no 'choices'", _dump(data), model)
        choice = choices[0]
        if not isinstance(choice, dict):
            raise owner._protocol_error("reply choice is not an object", _dump(data), model)
        msg = choice.get("message")
        if not isinstance(msg, dict) and not choice.get("error"):
            raise owner._protocol_error("reply choice has no 'message'", _dump(data), model)
        self._choice(choice, msg, [])

    def _top(self, chunk: dict[str, Any], error_event: bool) -> None:
        if chunk.get("error") or chunk.get("object") == "error" or error_event:
            raise self._owner._inband_error(chunk, self._model)
        reported = chunk.get("model")
        if reported:
            self._reported = reported
        usage = chunk.get("usage")
        if usage:
            self._acc.usage = _usage(usage)

    def _choice(self, choice: dict[str, Any], part: Any, out: list[StreamEvent]) -> None:
        """A choice's ``delta`` (stream) or ``message`` (whole reply) and its finish."""
        if choice.get("error"):
            raise self._owner._inband_error(choice, self._model)
        acc = self._acc
        if part:
            reasoning = _reasoning_text(part)
            if reasoning:
                out.append(acc.reasoning(reasoning))
                if isinstance(part.get("reasoning_content"), str):
                    self._reasoning_field = True
            content = part.get("content")
            if isinstance(content, str):
                if content:
                    out.append(acc.text(content))
            elif content or self._whole:  # a whole reply's content must be text or parts
                text, thinking = _content(content)
                if thinking:
                    out.append(acc.reasoning(thinking))
                if text:
                    out.append(acc.text(text))
            refusal = part.get("refusal")
            if refusal and isinstance(refusal, str):
                self._refused = True
                # A whole reply's refusal stands in for missing text, never beside it.
                if not (self._whole and acc.text_parts):
                    out.append(acc.text(refusal))
            self._tools(part, out)
        raw_finish = choice.get("finish_reason")
        # Streams send null until the last chunk; a whole reply's "" or 0 is still its word.
        if raw_finish or (self._whole and raw_finish is not None):
            raw_finish = str(raw_finish)
            acc.raw_finish_reason = raw_finish
            acc.finish_reason = self._owner._map_finish(raw_finish)

    def _tools(self, part: dict[str, Any], out: list[StreamEvent]) -> None:
        acc = self._acc
        calls = part.get("tool_calls")
        legacy = part.get("function_call")
        if self._whole:
            if calls:
                for i, tc in enumerate(calls):
                    fn = tc.get("function") or _EMPTY
                    acc.call(i, tc.get("id"), fn.get("name"), fn.get("arguments"), google_signature(tc))
            elif isinstance(legacy, dict):
                acc.call(0, None, legacy.get("name"), legacy.get("arguments"))
            return
        if calls:
            for pos, tc in enumerate(calls):
                index = tc.get("index")
                call_id = tc.get("id") or None
                if not isinstance(index, int):
                    # Some servers omit index: a new id opens a new call, otherwise continue the last one.
                    if call_id and all(slot[0] != call_id for slot in acc.tools.values()):
                        index = len(acc.tools)
                    else:
                        index = max(acc.tools, default=pos)
                fn = tc.get("function") or _EMPTY
                out.append(
                    acc.tool(
                        index,
                        call_id,
                        fn.get("name") or None,
                        _args(fn.get("arguments")),
                        google_signature(tc),
                    )
                )
        if isinstance(legacy, dict):
            out.append(acc.tool(0, None, legacy.get("name") or None, _args(legacy.get("arguments"))))

    def finish(self) -> Response:
        response = self._acc.build(default_finish="stop" if self._whole else None)
        if self._reasoning_field and response.tool_calls:
            # Kept to go back with the tool results (``_message``), tagged with the server.
            response.reasoning_items.append(
                {"type": "reasoning_content", "text": response.reasoning, "server": self._owner.name}
            )
        if self._reported:
            response.model = self._reported
        if self._refused:
            response.finish_reason = "content_filter"
        elif response.tool_calls and response.finish_reason == "stop":
            response.finish_reason = "tool_calls"
        return response
