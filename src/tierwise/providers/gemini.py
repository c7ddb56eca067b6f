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
  ``thoughtSignature`` it issued. The signature of each call is kept on
  ``ToolCall.thought_signature`` and sent back with the call unchanged. Only a turn
  with no known signature at all (written by hand, or answered by another provider
  before a fallback) gets Google's documented ``skip_thought_signature_validator``
  stand-in: the call is accepted, but the model's reasoning state is not restored.
  Thought parts (``thought: true``) go to ``Response.reasoning``, never ``text``.
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
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from ..errors import AuthenticationError, BadRequestError, ContentFiltered, ProtocolError, ProviderError
from ..types import Embeddings, FinishReason, Request, Response, StreamEvent, Usage
from ._accumulate import StreamAccumulator, token_count
from ._errors import ErrorInfo, classify_error, seconds
from ._gemini_request import contents, generation_config, merge, tool_choice
from ._normalize import check_embeddings, embedding_vector
from ._sse import SSEEvent
from .base import MALFORMED, Provider

if TYPE_CHECKING:
    from ._batch import BatchWire

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

    # -- request --------------------------------------------------------------

    def _auth_headers(self) -> dict[str, str]:
        return {"x-goog-api-key": self._api_key} if self._api_key else {}

    def _env_api_key(self) -> str | None:
        return os.environ.get("GEMINI_API_KEY") or os.environ.get("GOOGLE_API_KEY")

    def _key_hint(self) -> str | None:
        return "GEMINI_API_KEY (or GOOGLE_API_KEY)"

    def _url(self, model: str, stream: bool) -> str:
        path = _resource(model)
        if stream:
            return f"{self.base_url}/{path}:streamGenerateContent?alt=sse"
        return f"{self.base_url}/{path}:generateContent"

    def batch_api(self) -> BatchWire | None:
        from ._batch_wires import GeminiBatchWire

        return GeminiBatchWire(self)

    def _build_body(self, model: str, request: Request, stream: bool) -> dict[str, Any]:
        body: dict[str, Any] = {"contents": contents(request.messages)}
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
            body["toolConfig"] = {"functionCallingConfig": tool_choice(request.tool_choice)}
        config = generation_config(request)
        if config:
            body["generationConfig"] = config
        if request.extra_body:
            merge(body, request.extra_body)
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
        except MALFORMED:
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

    # -- token counting (models/{model}:countTokens) ----------------------------

    def supports_token_counting(self, model: str) -> bool:
        return True

    def _count_url(self, model: str) -> str:
        return f"{self.base_url}/{_resource(model)}:countTokens"

    def _count_body(self, model: str, request: Request) -> dict[str, Any]:
        # generateContentRequest (not bare contents) so the system prompt and tools count too.
        inner = self._build_body(model, request, False)
        inner.pop("generationConfig", None)
        inner.pop("toolConfig", None)
        return {"generateContentRequest": {"model": _resource(model), **inner}}

    def _parse_count(self, model: str, data: Any) -> int:
        return self._count_field(model, data, "totalTokens")

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

    def _error_info(self, data: Any, status: int | None, fallback: str) -> ErrorInfo:
        """Google's error object: ``status`` is the type, ``ErrorInfo.reason`` the code,
        ``RetryInfo`` (or "retry in 37s" in the message) the retry hint, and its
        numeric ``code`` classifies an in-band error. A bad key is HTTP 400 at Google,
        mapped to ``AuthenticationError`` all the same."""
        err = _error_object(data)
        if err is None:
            info = super()._error_info(data, status, fallback)
        else:
            etype, code, num = err.get("status"), _error_reason(err) or err.get("code"), err.get("code")
            info = ErrorInfo(
                str(err.get("message") or "") or fallback,
                None if etype is None else str(etype),
                None if code is None else str(code),
                status=num if status is None and isinstance(num, int) and 400 <= num <= 599 else None,
                retry_after=_retry_hint(err),
            )
        if (
            status is not None
            and ((info.error_code or "").startswith("API_KEY_") or _BAD_KEY.search(info.message))
            and classify_error(status, info.message, info.error_type, info.error_code) is BadRequestError
        ):
            info.cls, info.retryable = AuthenticationError, False
        return info


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
        self.acc = StreamAccumulator(provider.name, model, (provider._api_key,))
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
                message = f"prompt blocked by Gemini ({reason})" + (f": {detail}" if detail else "")
                info = ErrorInfo(message, str(reason), request_id=self.request_id, cls=ContentFiltered)
                raise self.provider._make_error(info, self.model)
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
                sig = part.get("thoughtSignature")
                events.append(
                    acc.tool(
                        index,
                        cid if isinstance(cid, str) and cid else f"call_{index}",
                        name,
                        json.dumps(args, separators=_COMPACT, ensure_ascii=False),
                        sig if isinstance(sig, str) and sig else None,
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


def _details(err: Mapping[str, Any], kind: str) -> Iterator[dict[str, Any]]:
    """The ``details`` entries of ``err`` whose ``@type`` is ``google.rpc.<kind>``."""
    details = err.get("details")
    if isinstance(details, list):
        for detail in details:
            if isinstance(detail, dict) and str(detail.get("@type", "")).endswith(f"google.rpc.{kind}"):
                yield detail


def _error_reason(err: Mapping[str, Any]) -> str | None:
    for detail in _details(err, "ErrorInfo"):
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


def _retry_hint(err: Mapping[str, Any]) -> float | None:
    """``RetryInfo.retryDelay``, else a "retry in 37.3s" in the message."""
    for detail in _details(err, "RetryInfo"):
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
