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
  and raises ``ProtocolError``.

Embeddings (``embed``) use ``POST {base_url}/embeddings`` with
``encoding_format: "float"`` (so a server never answers base64 strings); vectors are
put back in input order by their ``index``, and a reply whose indices do not cover
the inputs exactly once is a ``ProtocolError``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import httpx

from ..errors import (
    AuthenticationError,
    ConfigError,
    ContentFiltered,
    ProviderError,
    RateLimitError,
    redact,
)
from ..types import Embeddings, FinishReason, Message, Request, Response, StreamEvent, Tool, Usage
from ._errors import _recast
from .base import (
    Provider,
    SSEEvent,
    StreamAccumulator,
    check_embeddings,
    classify_error,
    cost_amount,
    embedding_vector,
    make_tool_call,
    token_count,
)

__all__ = ["COMPATIBLE_SERVERS", "OpenAI", "OpenAICompat"]


@dataclass(frozen=True, slots=True)
class OpenAICompat:
    """One OpenAI-compatible server, described as data.

    ``api_key_env`` is ``None`` for servers that need no key (local vLLM/Ollama);
    then a missing key is not an error. ``drop_fields`` are request fields the
    server rejects (Mistral answers 422 to fields it does not know), removed after
    the body is built; ``rename_fields`` maps an OpenAI field name to the server's
    (Mistral's ``random_seed``). ``extra_body`` from the caller is merged after
    both, so an explicit caller choice is never dropped. ``reasoning_field`` is
    ``"reasoning_effort"`` (top level) or ``"reasoning.effort"`` (OpenRouter's
    nested object).
    """

    name: str
    default_base_url: str = ""
    api_key_env: str | None = None
    base_url_env: str | None = None
    max_tokens_field: str = "max_tokens"
    stream_usage: bool = True
    drop_fields: frozenset[str] = frozenset()
    rename_fields: tuple[tuple[str, str], ...] = ()
    finish_reasons: tuple[tuple[str, FinishReason], ...] = ()
    reasoning_field: str = "reasoning_effort"


COMPATIBLE_SERVERS: dict[str, OpenAICompat] = {
    row.name: row
    for row in (
        # OpenAI deprecated max_tokens for max_completion_tokens (o-series reject the old name);
        # usage on streams only arrives with stream_options.include_usage.
        OpenAICompat(
            "openai",
            "https://api.openai.com/v1",
            "OPENAI_API_KEY",
            max_tokens_field="max_completion_tokens",
        ),
        # DeepSeek: usage rides on the finish chunk; cache hits in prompt_cache_hit_tokens;
        # finish "insufficient_system_resource" means the server cut the answer off.
        OpenAICompat(
            "deepseek",
            "https://api.deepseek.com",
            "DEEPSEEK_API_KEY",
            finish_reasons=(("insufficient_system_resource", "error"),),
        ),
        # Mistral rejects unknown fields (422 extra_forbidden), names the seed random_seed,
        # always puts usage on the finish chunk, and says model_length when the context is full.
        OpenAICompat(
            "mistral",
            "https://api.mistral.ai/v1",
            "MISTRAL_API_KEY",
            stream_usage=False,
            drop_fields=frozenset(("user", "reasoning_effort", "stream_options")),
            rename_fields=(("seed", "random_seed"),),
            finish_reasons=(("model_length", "length"),),
        ),
        # OpenRouter always reports usage (include_usage is deprecated there) plus usage.cost,
        # and takes reasoning effort as {"reasoning": {"effort": ...}}.
        OpenAICompat(
            "openrouter",
            "https://openrouter.ai/api/v1",
            "OPENROUTER_API_KEY",
            stream_usage=False,
            reasoning_field="reasoning.effort",
        ),
        OpenAICompat("vllm", "http://localhost:8000/v1", None, finish_reasons=(("abort", "error"),)),
        OpenAICompat("ollama", "http://localhost:11434/v1", None),
        # Any other OpenAI-compatible endpoint (LiteLLM, Azure-style proxies, in-house gateways).
        OpenAICompat(
            "gateway",
            "",
            "TIERWISE_GATEWAY_API_KEY",
            base_url_env="TIERWISE_GATEWAY_BASE_URL",
        ),
    )
}

# Shared finish-reason table. Besides OpenAI's own values it accepts the words
# gateways leak from other wire formats, so a proxied Anthropic/Gemini model still
# maps correctly.
_FINISH: dict[str, FinishReason] = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "content_filter": "content_filter",
    "error": "error",
    "eos": "stop",
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
    "safety": "content_filter",
}
_EMPTY: dict[str, Any] = {}


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


def _message(m: Message) -> dict[str, Any]:
    role = m.role
    content = m.content
    if role == "tool":
        return {"role": "tool", "tool_call_id": m.tool_call_id, "content": "" if content is None else content}
    if role == "assistant" and m.tool_calls:
        out: dict[str, Any] = {
            "role": "assistant",
            # OpenAI wants null, not "", next to tool_calls when there is no text.
            "content": content or None,
            "tool_calls": [
                {
                    "id": tc.id,
                    "type": "function",
                    "function": {"name": tc.name, "arguments": tc.raw_arguments or "{}"},
                }
                for tc in m.tool_calls
            ],
        }
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


class OpenAI(Provider):
    """OpenAI Chat Completions, and any server in ``COMPATIBLE_SERVERS`` (or a custom row).

    ``compat`` picks the row: a name such as ``"deepseek"`` or an ``OpenAICompat``.
    The key defaults to the row's environment variable; the base URL to the row's
    default (or, for ``"gateway"``, ``TIERWISE_GATEWAY_BASE_URL``).
    """

    name = "openai"
    # The key's env var depends on the row, so the class-level lookup in
    # Provider.__init__ is disabled and the row is consulted here instead.
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

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str | None = None,
        http_client: httpx.AsyncClient | None = None,
        *,
        compat: str | OpenAICompat = "openai",
        timeout: float | httpx.Timeout | None = None,
        headers: Mapping[str, str] | None = None,
        http: str = "httpx",
    ) -> None:
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
        if api_key is None and row.api_key_env:
            api_key = os.environ.get(row.api_key_env)
        if not base_url and row.base_url_env:
            base_url = os.environ.get(row.base_url_env)
        base_url = base_url or row.default_base_url
        if not base_url:
            hint = f" or set {row.base_url_env}" if row.base_url_env else ""
            raise ConfigError(f"{row.name!r} has no default base URL: pass base_url={hint}", field="base_url")
        super().__init__(api_key, base_url, http_client, timeout=timeout, headers=headers, http=http)
        # Per-instance constants so building a body does no lookups in the row.
        self._chat_url = self.base_url + "/chat/completions"
        self._embeddings_url = self.base_url + "/embeddings"
        self._max_tokens_field = row.max_tokens_field
        self._stream_usage = row.stream_usage
        self._drop = tuple(row.drop_fields)
        self._renames = row.rename_fields
        self._nested_reasoning = row.reasoning_field == "reasoning.effort"
        self._finish: dict[str, FinishReason] = {**_FINISH, **dict(row.finish_reasons)}

    @property
    def compat(self) -> OpenAICompat:
        return self._compat

    def _check_key(self, model: str) -> None:
        env = self._compat.api_key_env
        if not self._api_key and env:
            raise AuthenticationError(
                f"no API key: pass api_key= or set {env}", provider=self.name, model=model
            )

    # -- request -------------------------------------------------------------

    def _url(self, model: str, stream: bool) -> str:
        return self._chat_url

    def _build_body(self, model: str, request: Request, stream: bool) -> dict[str, Any]:
        body: dict[str, Any] = {"model": model, "messages": [_message(m) for m in request.messages]}
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
        if not isinstance(data, dict):
            raise self._protocol_error("reply is not a JSON object", _dump(data), model)
        if data.get("error") or data.get("object") == "error":
            # OpenRouter reports failures that happen after routing with HTTP 200.
            raise self._inband_error(data, model)
        choices = data.get("choices")
        if not isinstance(choices, list) or not choices:
            raise self._protocol_error("reply has no 'choices'", _dump(data), model)
        choice = choices[0]
        if not isinstance(choice, dict):
            raise self._protocol_error("reply choice is not an object", _dump(data), model)
        if choice.get("error"):
            raise self._inband_error(choice, model)
        msg = choice.get("message")
        if not isinstance(msg, dict):
            raise self._protocol_error("reply choice has no 'message'", _dump(data), model)

        text, thinking = _content(msg.get("content"))
        reasoning = _reasoning_text(msg) + thinking
        reported = data.get("model") or model
        calls = []
        raw_calls = msg.get("tool_calls")
        raw_finish = choice.get("finish_reason")
        # Cut at the token limit by the row's own word for it too (Mistral's
        # "model_length"): a call the model was still writing is kept, flagged.
        cut = raw_finish is not None and self._map_finish(str(raw_finish)) == "length"
        secrets = (self._api_key,)
        if raw_calls:
            for i, tc in enumerate(raw_calls):
                fn = tc.get("function") or _EMPTY
                calls.append(
                    make_tool_call(
                        tc.get("id") or f"call_{i}",
                        fn.get("name") or "",
                        fn.get("arguments"),
                        provider=self.name,
                        model=model,
                        cut=cut,
                        secrets=secrets,
                    )
                )
        else:
            legacy = msg.get("function_call")
            if isinstance(legacy, dict):
                calls.append(
                    make_tool_call(
                        "call_0",
                        legacy.get("name") or "",
                        legacy.get("arguments"),
                        provider=self.name,
                        model=model,
                        cut=cut,
                        secrets=secrets,
                    )
                )

        finish: FinishReason
        if raw_finish is None:
            finish = "tool_calls" if calls else "stop"
        else:
            raw_finish = str(raw_finish)
            finish = self._map_finish(raw_finish)
        refusal = msg.get("refusal")
        if refusal and isinstance(refusal, str):
            text = text or refusal
            finish = "content_filter"
        elif calls and finish == "stop":
            finish = "tool_calls"
        return Response(
            text=text,
            model=reported,
            provider=self.name,
            finish_reason=finish,
            usage=_usage(data.get("usage")),
            tool_calls=calls,
            reasoning=reasoning,
            raw_finish_reason=raw_finish,
        )

    def _stream_parser(self, model: str) -> _ChatStream:
        return _ChatStream(self, model)

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

    def _error_fields(self, data: Any) -> tuple[str, str | None, str | None]:
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

    def _http_error(self, status: int, headers: httpx.Headers, content: bytes, model: str) -> ProviderError:
        err = super()._http_error(status, headers, content, model)
        if err.error_code == "content_filter" and not isinstance(err, ContentFiltered):
            # OpenRouter moderation refusals come as 403; they are a content verdict, not a key problem.
            return _recast(err, ContentFiltered, retryable=False)
        return err

    def _inband_error(self, data: Any, model: str) -> ProviderError:
        message, etype, code = self._error_fields(data)
        cls: type[ProviderError]
        retryable: bool | None = None
        if code == "content_filter":
            cls = ContentFiltered
        elif "insufficient_quota" in f"{etype} {code}":
            # classify_error has no status to go on here; an empty quota is a (final) rate limit.
            cls, retryable = RateLimitError, False
        else:
            cls = classify_error(_status_from_code(code), message, etype, code)
        return cls(
            redact(message or "error event in reply", (self._api_key,)),
            provider=self.name,
            model=model,
            error_type=self._scrub(etype),
            error_code=self._scrub(code),
            retryable=retryable,
        )


class _ChatStream:
    """Turns ``chat.completion.chunk`` events into stream events.

    Accumulation goes through ``StreamAccumulator`` so the final ``Response``
    equals the non-streamed one. Only choice 0 is followed. Usage may arrive on a
    choices-less chunk (OpenAI ``include_usage``), on the finish chunk (DeepSeek,
    Mistral) or on every chunk (vLLM continuous stats): the last one seen wins.
    """

    __slots__ = ("_acc", "_model", "_owner", "_refused", "_reported")

    def __init__(self, owner: OpenAI, model: str) -> None:
        self._owner = owner
        # Errors name the requested model (what the caller and executor know it by);
        # the reported model only goes into the final Response.
        self._model = model
        self._reported: str | None = None
        self._acc = StreamAccumulator(owner.name, model)
        self._refused = False

    def feed(self, event: SSEEvent) -> Iterable[StreamEvent]:
        data = event.data
        if data == "[DONE]" or not data:
            return ()
        acc = self._acc
        chunk = self._owner.loads(data, self._model)
        if not isinstance(chunk, dict):
            raise self._owner._protocol_error("stream event is not a JSON object", data, self._model)
        if chunk.get("error") or chunk.get("object") == "error" or event.event == "error":
            raise self._owner._inband_error(chunk, self._model)
        reported = chunk.get("model")
        if reported:
            self._reported = reported
        usage = chunk.get("usage")
        if usage:
            acc.usage = _usage(usage)
        choices = chunk.get("choices")
        if not choices:
            return ()
        out: list[StreamEvent] = []
        for choice in choices:
            if choice.get("index", 0) != 0:
                continue
            if choice.get("error"):
                raise self._owner._inband_error(choice, self._model)
            delta = choice.get("delta")
            if delta:
                reasoning = _reasoning_text(delta)
                if reasoning:
                    out.append(acc.reasoning(reasoning))
                content = delta.get("content")
                if content:
                    if isinstance(content, str):
                        out.append(acc.text(content))
                    else:
                        text, thinking = _content(content)
                        if thinking:
                            out.append(acc.reasoning(thinking))
                        if text:
                            out.append(acc.text(text))
                refusal = delta.get("refusal")
                if refusal and isinstance(refusal, str):
                    self._refused = True
                    out.append(acc.text(refusal))
                calls = delta.get("tool_calls")
                if calls:
                    self._tool_deltas(calls, out)
                legacy = delta.get("function_call")
                if isinstance(legacy, dict):
                    out.append(acc.tool(0, None, legacy.get("name") or None, _args(legacy.get("arguments"))))
            raw_finish = choice.get("finish_reason")
            if raw_finish:
                raw_finish = str(raw_finish)
                acc.raw_finish_reason = raw_finish
                acc.finish_reason = self._owner._map_finish(raw_finish)
        return out

    def _tool_deltas(self, calls: list[Any], out: list[StreamEvent]) -> None:
        acc = self._acc
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
            out.append(acc.tool(index, call_id, fn.get("name") or None, _args(fn.get("arguments"))))

    def finish(self) -> Response:
        response = self._acc.build()
        if self._reported:
            response.model = self._reported
        if self._refused:
            response.finish_reason = "content_filter"
        elif response.tool_calls and response.finish_reason == "stop":
            response.finish_reason = "tool_calls"
        return response


def _args(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"))
