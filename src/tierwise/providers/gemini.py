"""Google Gemini API (``generativelanguage`` v1beta ``generateContent``) adapter.

Wire format only, over httpx. Choices that are not obvious from the API reference:

* **Auth in a header.** The key goes in ``x-goog-api-key``, never in the ``?key=``
  query parameter, so it cannot land in URLs, access logs or exception text.
* **Streaming** uses ``:streamGenerateContent?alt=sse``: every ``data:`` line is a
  whole ``GenerateContentResponse`` carrying only the *new* parts. Function calls
  arrive complete (one part each, often one chunk each, no index), so each becomes
  one ``ToolCallDelta`` with the full JSON arguments; the running call count is the
  index. ``usageMetadata`` repeats on every chunk and the last one wins.
* **One normalization path.** A non-streamed reply is fed through the same
  ``_Parser`` as a single chunk, so both modes give equal ``Response`` objects.
* **Tool-call ids.** Older models send no id: we synthesize ``call_0``, ``call_1``…
  in part order (identical in both modes); an ``id`` the API sends is kept. Ids are
  echoed back on ``functionCall``/``functionResponse`` so newer models, which
  check that they match, accept the history.
* **Thought signatures.** Gemini 3 rejects a history whose function calls lack the
  ``thoughtSignature`` it issued. ``ToolCall`` has no field to carry it, so replayed
  calls get Google's documented ``skip_thought_signature_validator`` sentinel (the
  call works; the model's private reasoning state for that turn is not restored).
  A caller who kept the real signature can pass Gemini-native parts as content.
* **Schemas.** ``Tool.parameters`` and ``response_format`` schemas are full JSON
  Schema, so they go in ``parametersJsonSchema`` / ``responseJsonSchema``; the older
  ``parameters`` / ``responseSchema`` fields take an OpenAPI subset and reject
  common keys such as ``additionalProperties``.
* **Finish reasons.** ``STOP`` → stop (tool_calls when calls are present),
  ``MAX_TOKENS`` → length, the safety family → content_filter; everything else
  (``MALFORMED_FUNCTION_CALL``, ``UNEXPECTED_TOOL_CALL``, ``OTHER``, ``LANGUAGE``,
  unspecified, unknown future values) → error, since the answer is not usable as
  is. The raw value is kept in ``raw_finish_reason``.
* **Usage.** ``promptTokenCount`` already includes ``cachedContentTokenCount``;
  ``toolUsePromptTokenCount`` (grounding/tool results fed back) is billed as input
  and added to it. Output = ``candidatesTokenCount`` + ``thoughtsTokenCount``.
* **Errors.** Google's ``{"error": {code, message, status, details}}`` body:
  ``status`` is the error type, the ``ErrorInfo.reason`` (e.g. ``API_KEY_INVALID``)
  the code, ``RetryInfo.retryDelay`` the retry hint. An invalid key is HTTP 400 at
  Google; it is mapped to ``AuthenticationError`` all the same.
* **Embeddings** use ``models/{model}:batchEmbedContents`` (one ``EmbedContentRequest``
  per text, each naming the same model, as the API requires); the reply's
  ``embeddings`` come in request order. Token usage is read from
  ``usageMetadata.promptTokenCount`` when the reply carries it; older API surfaces
  omit it, and the usage is then 0 (unknown), so no cost is claimed for it.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import httpx

from ..errors import (
    AuthenticationError,
    BadRequestError,
    ContentFiltered,
    ProtocolError,
    ProviderError,
    redact,
)
from ..types import Embeddings, FinishReason, Message, Request, Response, StreamEvent, Usage
from ._errors import _recast, seconds
from .base import (
    Provider,
    SSEEvent,
    StreamAccumulator,
    check_embeddings,
    classify_error,
    embedding_vector,
    token_count,
)

__all__ = ["Gemini"]

_COMPACT = (",", ":")

_FINISH: dict[str, FinishReason] = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
    "IMAGE_PROHIBITED_CONTENT": "content_filter",
    "IMAGE_RECITATION": "content_filter",
    "MODEL_ARMOR": "content_filter",
}

# Google's documented value for "no signature available, skip validation".
_SKIP_SIGNATURE = "skip_thought_signature_validator"

# reasoning_effort → thinkingBudget, as Google's own OpenAI-compatible endpoint maps
# it. A budget works on 2.5 and 3.x models alike; thinkingLevel is 3.x only.
_EFFORT_BUDGET = {"none": 0, "minimal": 512, "low": 1024, "medium": 8192, "high": 24576}

_TOOL_CHOICE_MODE = {"auto": "AUTO", "none": "NONE", "required": "ANY", "any": "ANY"}

# google.protobuf.Duration in JSON: "37s", "0.5s", "3.957525076s".
_DURATION = re.compile(r"\s*(\d+(?:\.\d*)?)s\s*")
# The same hint in prose, used when RetryInfo is absent: "Please retry in 37.3s."
_RETRY_IN = re.compile(r"retry in (\d+(?:\.\d+)?)\s*(ms|s)\b", re.IGNORECASE)
# 400 INVALID_ARGUMENT is what Google returns for a bad or expired key.
_BAD_KEY = re.compile(r"API key (?:not valid|expired|invalid)", re.IGNORECASE)


class Gemini(Provider):
    """The Gemini API (AI Studio keys). ``api_key`` defaults to ``GEMINI_API_KEY``,
    then ``GOOGLE_API_KEY``."""

    name = "gemini"
    api_key_env: ClassVar[str | None] = "GEMINI_API_KEY"
    default_base_url: ClassVar[str] = "https://generativelanguage.googleapis.com/v1beta"
    supports_embeddings: ClassVar[bool] = True

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str | None = None,
        http_client: httpx.AsyncClient | None = None,
        *,
        timeout: float | httpx.Timeout | None = None,
        headers: Mapping[str, str] | None = None,
        http: str = "httpx",
    ) -> None:
        if api_key is None and not os.environ.get("GEMINI_API_KEY"):
            api_key = os.environ.get("GOOGLE_API_KEY")
        super().__init__(api_key, base_url, http_client, timeout=timeout, headers=headers, http=http)

    # -- request --------------------------------------------------------------

    def _auth_headers(self) -> dict[str, str]:
        return {"x-goog-api-key": self._api_key} if self._api_key else {}

    def _check_key(self, model: str) -> None:
        if not self._api_key:
            raise AuthenticationError(
                "no API key: pass api_key= or set GEMINI_API_KEY (or GOOGLE_API_KEY)",
                provider=self.name,
                model=model,
            )

    def _url(self, model: str, stream: bool) -> str:
        path = _resource(model)
        if stream:
            return f"{self.base_url}/{path}:streamGenerateContent?alt=sse"
        return f"{self.base_url}/{path}:generateContent"

    def _build_body(self, model: str, request: Request, stream: bool) -> dict[str, Any]:
        body: dict[str, Any] = {"contents": _contents(request.messages)}
        system = request.system
        if system:
            body["systemInstruction"] = {"parts": [{"text": system}]}
        if request.tools:
            body["tools"] = [
                {
                    "functionDeclarations": [
                        {"name": t.name, "description": t.description, "parametersJsonSchema": t.parameters}
                        if t.description
                        else {"name": t.name, "parametersJsonSchema": t.parameters}
                        for t in request.tools
                    ]
                }
            ]
        if request.tool_choice is not None:
            body["toolConfig"] = {"functionCallingConfig": _tool_choice(request.tool_choice)}
        config = _generation_config(request)
        if config:
            body["generationConfig"] = config
        if request.extra_body:
            _merge(body, request.extra_body)
        return body

    # -- response -------------------------------------------------------------

    def _parse_response(self, model: str, data: Any) -> Response:
        parser = _Parser(self, model, stream=False)
        parser.absorb(data)
        return parser.finish()

    def _stream_parser(self, model: str) -> _Parser:
        return _Parser(self, model, stream=True)

    def _whole_reply(self, content: bytes, model: str) -> Response:
        """Without ``alt=sse`` Gemini streams one JSON array of chunks, sent as
        ``application/json``: those are the stream's chunks, read through a stream
        parser (an error object among them raises its typed error). Any other JSON
        body takes the shared path (one reply, or a non-retryable ``ProtocolError``)."""
        try:
            data: Any = json.loads(content)
        except (ValueError, RecursionError):
            data = None
        if not isinstance(data, list) or not data:
            return super()._whole_reply(content, model)
        parser = _Parser(self, model, stream=True)
        try:
            for chunk in data:
                parser.absorb(chunk)
            return parser.finish()
        except ProviderError as exc:
            raise self._scrubbed(exc) from None
        except (KeyError, TypeError, IndexError, AttributeError, ValueError, ArithmeticError, RecursionError):
            return super()._whole_reply(content, model)

    def _parse_whole(self, model: str, data: Any) -> Response:
        # streamGenerateContent without alt=sse (a proxy that dropped the query, a
        # server that ignores it): a JSON array of the stream's chunks, folded as the
        # stream would have been, so a missing finishReason still reads as truncated.
        if not isinstance(data, list):
            return self._parse_response(model, data)
        parser = _Parser(self, model, stream=True)
        for chunk in data:
            parser.absorb(chunk)
        return parser.finish()

    # -- embeddings -------------------------------------------------------------

    def _embed_url(self, model: str) -> str:
        return f"{self.base_url}/{_resource(model)}:batchEmbedContents"

    def _embed_body(self, model: str, texts: list[str]) -> dict[str, Any]:
        name = _resource(model)
        return {"requests": [{"model": name, "content": {"parts": [{"text": t}]}} for t in texts]}

    def _parse_embeddings(self, model: str, data: Any, count: int) -> Embeddings:
        if _error_object(data) is not None:
            raise self._inband_error(data, model)
        if not isinstance(data, dict):
            raise self._protocol_error("reply is not a JSON object", json.dumps(data, default=str), model)
        items = data.get("embeddings")
        if not isinstance(items, list):
            raise self._protocol_error(
                "reply has no 'embeddings' list", json.dumps(data, default=str)[:2000], model
            )
        vectors = []
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                raise ValueError(f"embeddings[{i}] is not an object")
            vectors.append(embedding_vector(item.get("values"), f"embeddings[{i}].values"))
        check_embeddings(vectors, count)
        meta = data.get("usageMetadata")
        tokens = _count(meta.get("promptTokenCount")) if isinstance(meta, dict) else 0
        return Embeddings(vectors=vectors, model=model, provider=self.name, usage=Usage(input_tokens=tokens))

    # -- errors ---------------------------------------------------------------

    def _error_fields(self, data: Any) -> tuple[str, str | None, str | None]:
        err = _error_object(data)
        if err is None:
            return super()._error_fields(data)
        status = err.get("status")
        code = _error_reason(err) or err.get("code")
        return (
            str(err.get("message") or ""),
            None if status is None else str(status),
            None if code is None else str(code),
        )

    def _retry_after_from_body(self, data: Any) -> float | None:
        err = _error_object(data)
        if err is None:
            return None
        details = err.get("details")
        if isinstance(details, list):
            for detail in details:
                if isinstance(detail, dict) and str(detail.get("@type", "")).endswith("google.rpc.RetryInfo"):
                    delay = _duration(detail.get("retryDelay"))
                    if delay is not None:
                        return delay
        message = err.get("message")
        if isinstance(message, str):
            match = _RETRY_IN.search(message)
            if match:
                value = float(match.group(1))
                return seconds(value / 1000.0 if match.group(2).lower() == "ms" else value)
        return None

    def _http_error(self, status: int, headers: httpx.Headers, content: bytes, model: str) -> ProviderError:
        err = super()._http_error(status, headers, content, model)
        if type(err) is BadRequestError and (
            (err.error_code or "").startswith("API_KEY_") or _BAD_KEY.search(err.message)
        ):
            return _recast(err, AuthenticationError)
        return err

    def _inband_error(self, data: Any, model: str) -> ProviderError:
        # The error object carries its HTTP-equivalent code; classify by it rather
        # than by the status string alone. status_code stays None: HTTP said 200.
        message, etype, code = self._error_fields(data)
        err = _error_object(data)
        num = err.get("code") if err is not None else None
        status = num if isinstance(num, int) and 400 <= num <= 599 else None
        cls = classify_error(status, message, etype, code)
        return cls(
            redact(message or "error event in stream", (self._api_key,)),
            provider=self.name,
            model=model,
            error_type=self._scrub(etype),
            error_code=self._scrub(code),
            retry_after=self._retry_after_from_body(data),
        )


class _Parser:
    """Folds ``GenerateContentResponse`` chunks into a ``StreamAccumulator``.

    Used for streams (one chunk per SSE event) and for non-streamed replies (one
    chunk), which is what makes the two modes return equal responses.
    """

    __slots__ = ("acc", "calls", "model", "model_version", "provider", "request_id", "stream")

    def __init__(self, provider: Gemini, model: str, *, stream: bool) -> None:
        self.provider = provider
        self.model = model
        self.stream = stream
        self.acc = StreamAccumulator(provider.name, model)
        self.calls = 0
        self.model_version: str | None = None
        self.request_id: str | None = None

    def feed(self, event: SSEEvent) -> list[StreamEvent]:
        data = event.data
        if not data or data == "[DONE]":
            return []
        return self.absorb(self.provider.loads(data, self.model))

    def absorb(self, chunk: Any) -> list[StreamEvent]:
        if _error_object(chunk) is not None:
            raise self.provider._inband_error(chunk, self.model)
        if not isinstance(chunk, dict):
            raise self._malformed("reply is not a JSON object", chunk)
        acc = self.acc
        rid = chunk.get("responseId")
        if isinstance(rid, str) and rid:
            # Wire text that reaches errors and the Response: redacted at intake.
            self.request_id = self.provider._scrub(rid)
        version = chunk.get("modelVersion")
        if isinstance(version, str) and version:
            self.model_version = version
        usage = chunk.get("usageMetadata")
        if usage is not None:
            acc.usage = _usage(usage)
        candidates = chunk.get("candidates")
        if not candidates:
            feedback = chunk.get("promptFeedback")
            reason = feedback.get("blockReason") if isinstance(feedback, dict) else None
            if reason:
                detail = feedback.get("blockReasonMessage") if isinstance(feedback, dict) else None
                keys = (self.provider._api_key,)
                raise ContentFiltered(
                    redact(f"prompt blocked by Gemini ({reason})" + (f": {detail}" if detail else ""), keys),
                    provider=self.provider.name,
                    model=self.model,
                    request_id=self.request_id,
                    error_type=self.provider._scrub(str(reason)),
                )
            if self.stream:
                return []  # a usage-only chunk
            raise self._malformed("reply has no candidates", chunk)
        candidate = candidates[0]
        events: list[StreamEvent] = []
        content = candidate.get("content")
        parts = content.get("parts") if content else None  # MAX_TOKENS/SAFETY may omit both
        for part in parts or ():
            call = part.get("functionCall")
            if call is not None:
                name = call["name"]
                args = call.get("args")
                if args is None:
                    args = {}
                if not isinstance(name, str) or not isinstance(args, dict):
                    raise self._malformed("functionCall needs a string name and object args", part)
                cid = call.get("id")
                index = self.calls
                self.calls += 1
                events.append(
                    acc.tool(
                        index,
                        cid if isinstance(cid, str) and cid else f"call_{index}",
                        name,
                        json.dumps(args, separators=_COMPACT, ensure_ascii=False),
                    )
                )
                continue
            text = part.get("text")
            if text:
                if not isinstance(text, str):
                    raise self._malformed("text part is not a string", part)
                events.append(acc.reasoning(text) if part.get("thought") else acc.text(text))
        finish = candidate.get("finishReason")
        if finish:
            acc.raw_finish_reason = str(finish)
            acc.finish_reason = _FINISH.get(acc.raw_finish_reason, "error")
        return events

    def finish(self) -> Response:
        acc = self.acc
        if acc.finish_reason is None:
            if self.stream:
                raise ProtocolError(
                    "stream ended without a finishReason (truncated stream)",
                    provider=self.provider.name,
                    model=self.model,
                    request_id=self.request_id,
                )
            acc.finish_reason = "stop"  # a whole JSON body cannot be truncated
        acc.model = self.model_version or self.model
        response = acc.build()
        if response.tool_calls and response.finish_reason == "stop":
            response.finish_reason = "tool_calls"
        response.request_id = self.request_id
        return response

    def _malformed(self, what: str, data: Any) -> ProtocolError:
        return self.provider._protocol_error(what, json.dumps(data, default=str), self.model)


# --------------------------------------------------------------------------- helpers


def _resource(model: str) -> str:
    """The resource name of ``model``: ``gemini-2.5-flash`` → ``models/gemini-2.5-flash``;
    ``models/…`` and ``tunedModels/…`` names are used as given."""
    return model if "/" in model else f"models/{model}"


def _contents(messages: Sequence[Message]) -> list[dict[str, Any]]:
    """Messages → ``contents``. System turns go to ``systemInstruction`` instead;
    consecutive tool results become one user turn (Gemini pairs a batch of
    parallel calls with one turn of responses); empty turns are dropped, as the
    API rejects parts-less contents."""
    contents: list[dict[str, Any]] = []
    call_names: dict[str, str] = {}
    tool_turn: list[dict[str, Any]] | None = None
    for m in messages:
        role = m.role
        if role == "system":
            continue
        if role == "tool":
            response = _function_response(m, call_names)
            if tool_turn is None:
                tool_turn = []
                contents.append({"role": "user", "parts": tool_turn})
            tool_turn.append({"functionResponse": response})
            continue
        tool_turn = None
        parts = _parts(m.content)
        if role == "assistant":
            for tc in m.tool_calls:
                call: dict[str, Any] = {"name": tc.name, "args": tc.arguments}
                if tc.id:
                    call["id"] = tc.id
                    call_names[tc.id] = tc.name
                parts.append({"functionCall": call, "thoughtSignature": _SKIP_SIGNATURE})
        if parts:
            contents.append({"role": "model" if role == "assistant" else "user", "parts": parts})
    return contents


def _parts(content: str | list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    if not content:
        return []
    if isinstance(content, str):
        return [{"text": content}]
    # Gemini-native parts pass through; OpenAI-style {"type": "text"} parts are
    # the one foreign shape worth translating, since Message.text understands it.
    return [
        {"text": p.get("text", "")} if p.get("type") == "text" and "text" in p else dict(p) for p in content
    ]


def _function_response(m: Message, call_names: Mapping[str, str]) -> dict[str, Any]:
    name = m.name or (call_names.get(m.tool_call_id) if m.tool_call_id else None)
    if not name:
        raise ValueError(
            "Gemini needs the function name of a tool result: set Message.name or a "
            "tool_call_id matching an earlier assistant tool call"
        )
    text = m.text
    try:
        parsed: Any = json.loads(text) if text else None
    except (ValueError, RecursionError):
        parsed = text
    response: dict[str, Any] = {
        "name": name,
        "response": parsed if isinstance(parsed, dict) else {"result": parsed if parsed is not None else ""},
    }
    if m.tool_call_id:
        response["id"] = m.tool_call_id
    return response


def _tool_choice(choice: str | dict[str, Any]) -> dict[str, Any]:
    """OpenAI/Anthropic tool_choice shapes → ``functionCallingConfig``."""
    if isinstance(choice, str):
        mode = _TOOL_CHOICE_MODE.get(choice.lower())
        if mode is None:
            raise ValueError(f"unsupported tool_choice {choice!r} for Gemini")
        return {"mode": mode}
    fn = choice.get("function")
    name = fn.get("name") if isinstance(fn, Mapping) else choice.get("name")
    if isinstance(name, str) and name:
        return {"mode": "ANY", "allowedFunctionNames": [name]}
    kind = choice.get("type") or choice.get("mode")
    if isinstance(kind, str):
        return _tool_choice(kind)
    raise ValueError(f"unsupported tool_choice {choice!r} for Gemini")


def _generation_config(request: Request) -> dict[str, Any]:
    config: dict[str, Any] = {}
    if request.max_tokens is not None:
        config["maxOutputTokens"] = request.max_tokens
    if request.temperature is not None:
        config["temperature"] = request.temperature
    if request.top_p is not None:
        config["topP"] = request.top_p
    if request.stop:
        config["stopSequences"] = list(request.stop)
    if request.seed is not None:
        config["seed"] = request.seed
    fmt = request.response_format
    if fmt:
        kind = fmt.get("type")
        if kind == "json_object":
            config["responseMimeType"] = "application/json"
        elif kind == "json_schema":
            spec = fmt.get("json_schema") or {}
            schema = spec.get("schema") if isinstance(spec, Mapping) else None
            config["responseMimeType"] = "application/json"
            if schema is not None:
                config["responseJsonSchema"] = schema
        elif kind != "text":
            raise ValueError(f"unsupported response_format type {kind!r} for Gemini")
    budget = request.thinking_budget
    if budget is None and request.reasoning_effort is not None:
        effort = request.reasoning_effort.lower()
        if effort not in _EFFORT_BUDGET:
            raise ValueError(f"unsupported reasoning_effort {request.reasoning_effort!r} for Gemini")
        budget = _EFFORT_BUDGET[effort]
    if budget is not None:
        # Thought summaries cost nothing extra (thinking is billed either way) and
        # fill Response.reasoning, so ask for them whenever thinking is on.
        config["thinkingConfig"] = (
            {"thinkingBudget": budget, "includeThoughts": True} if budget != 0 else {"thinkingBudget": 0}
        )
    return config


def _merge(target: dict[str, Any], extra: Mapping[str, Any]) -> None:
    """Deep-merge ``extra_body``: nested objects merge (so ``{"generationConfig":
    {"topK": 40}}`` adds one knob), other values replace, ``None`` removes a key."""
    for key, value in extra.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = value


def _count(value: Any) -> int:
    # Absent, or nonsense from the wire (a string, a bool, ``Infinity``): 0, the same
    # rule as every adapter (``token_count``); the executor bills such a reply at its estimate.
    return token_count(value)


def _usage(meta: Any) -> Usage:
    if not isinstance(meta, dict):
        raise TypeError("usageMetadata is not an object")
    thoughts = _count(meta.get("thoughtsTokenCount"))
    return Usage(
        input_tokens=_count(meta.get("promptTokenCount")) + _count(meta.get("toolUsePromptTokenCount")),
        output_tokens=_count(meta.get("candidatesTokenCount")) + thoughts,
        cached_input_tokens=_count(meta.get("cachedContentTokenCount")),
        reasoning_tokens=thoughts,
    )


def _error_object(data: Any) -> dict[str, Any] | None:
    # Google wraps errors as {"error": {...}}; some streaming paths send a
    # one-element JSON array of that.
    if isinstance(data, list) and data:
        data = data[0]
    if isinstance(data, dict):
        err = data.get("error")
        if isinstance(err, dict):
            return err
    return None


def _error_reason(err: Mapping[str, Any]) -> str | None:
    details = err.get("details")
    if isinstance(details, list):
        for detail in details:
            if isinstance(detail, dict) and str(detail.get("@type", "")).endswith("google.rpc.ErrorInfo"):
                reason = detail.get("reason")
                if isinstance(reason, str) and reason:
                    return reason
    return None


def _duration(value: Any) -> float | None:
    """A JSON ``google.protobuf.Duration`` ("37s", "0.5s") or its object form."""
    try:
        if isinstance(value, str):
            match = _DURATION.fullmatch(value)
            return seconds(float(match.group(1))) if match else None
        if isinstance(value, dict):
            return seconds(float(value.get("seconds") or 0) + float(value.get("nanos") or 0) / 1e9)
    except (TypeError, ValueError, OverflowError):
        return None
    return None
