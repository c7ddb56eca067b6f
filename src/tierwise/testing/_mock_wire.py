"""The provider wire formats of the mock LLM server: OpenAI, Anthropic and Gemini.

Each ``_Wire`` turns one ``_Answer`` into the provider's JSON reply or its stream of
SSE events, and builds the provider's real error bodies, in-band error events and
rate-limit headers.
"""

from __future__ import annotations

import base64
import hashlib
import json
import struct
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar

from ._mock_http import _dumps
from ._mock_model import MockModel, _ModelState


@dataclass(slots=True)
class _Answer:
    model: str
    text: str
    tools: tuple[tuple[str, dict[str, Any]], ...]
    input_tokens: int
    output_tokens: int  # includes reasoning
    cached: int
    reasoning: int
    finish: str  # "stop" | "length"
    seq: int
    created: int
    chunk_chars: int


def _tool_id(prefix: str, index: int, name: str, args: Mapping[str, Any]) -> str:
    """Tool-call ids derived from the call itself, not the request number, so the same
    answer streamed and non-streamed compares equal (``ToolCall`` equality includes ids)."""
    digest = hashlib.sha1(f"{index}:{name}:{json.dumps(args, sort_keys=True)}".encode()).hexdigest()
    return f"{prefix}mock{digest[:20]}"


def _pieces(text: str, n: int) -> list[str]:
    return [text[i : i + n] for i in range(0, len(text), n)]


_Events = tuple[list[bytes], list[bytes], list[bytes]]


class _Wire:
    """One provider's wire format. Streams are returned as (preamble, content, tail)
    lists of encoded SSE events, so faults can cut between any two content events."""

    name: ClassVar[str]
    request_id_header: ClassVar[str | None] = None
    #: (error type, message) per status; "{model}" is substituted.
    errors: ClassVar[dict[int, tuple[str, str]]]
    default_server_error: ClassVar[tuple[str, str]]
    default_client_error: ClassVar[tuple[str, str]]
    #: The 400 message for a body that is not JSON.
    bad_json_message: ClassVar[str]
    #: Rate-limit header names, "{what}" being requests/tokens and "{field}"
    #: limit/remaining/reset; ``None`` sends no rate-limit headers.
    ratelimit_header: ClassVar[str | None] = None

    def reply_json(self, a: _Answer) -> bytes:
        raise NotImplementedError

    def reply_stream(self, a: _Answer, body: Mapping[str, Any]) -> _Events:
        raise NotImplementedError

    def error_body(self, status: int, model: str, message: str | None = None, **extra: Any) -> bytes:
        raise NotImplementedError

    def context_error(self, model: str, tokens: int, **extra: Any) -> bytes:
        raise NotImplementedError

    def inband_error(self) -> bytes:
        raise NotImplementedError

    def malformed_event(self, a: _Answer) -> bytes:
        raise NotImplementedError

    def embeddings_json(
        self, model: str, vectors: list[list[float]], tokens: int, body: Mapping[str, Any]
    ) -> bytes:
        """The provider's embeddings reply (only wires with an embeddings endpoint)."""
        raise NotImplementedError

    def kind_for(self, status: int, model: str, message: str | None) -> tuple[str, str]:
        """(error type, message) for ``status``; ``message`` overrides the provider's default."""
        etype, default = self.errors.get(
            status, self.default_server_error if status >= 500 else self.default_client_error
        )
        return etype, message or default.format(model=model)

    def ratelimit_reset(self, reset_s: float) -> str:
        raise NotImplementedError

    def ratelimit_headers(self, m: MockModel, st: _ModelState, reset_s: float) -> list[tuple[str, str]]:
        name = self.ratelimit_header
        if name is None:
            return []
        out: list[tuple[str, str]] = []
        reset = self.ratelimit_reset(reset_s)
        for what, limit, used in (
            ("requests", m.rate_limit_requests, st.win_requests),
            ("tokens", m.rate_limit_tokens, st.win_tokens),
        ):
            if limit is not None:
                out += [
                    (name.format(what=what, field="limit"), str(limit)),
                    (name.format(what=what, field="remaining"), str(max(0, limit - used))),
                    (name.format(what=what, field="reset"), reset),
                ]
        return out


class _OpenAIWire(_Wire):
    name = "openai"
    request_id_header = "x-request-id"
    errors: ClassVar[dict[int, tuple[str, str]]] = {
        400: ("invalid_request_error", "Invalid request."),
        401: (
            "invalid_request_error",
            "Incorrect API key provided. You can find your API key in your settings.",
        ),
        403: ("invalid_request_error", "You are not allowed to use this model."),
        404: ("invalid_request_error", "The model `{model}` does not exist or you do not have access to it."),
        409: ("invalid_request_error", "Conflict."),
        429: (
            "requests",
            "Rate limit reached for {model} in organization org-mock on requests per min (RPM): "
            "Limit 60, Used 60, Requested 1. Please try again later.",
        ),
        500: ("server_error", "The server had an error while processing your request. Sorry about that!"),
        502: ("server_error", "Bad gateway."),
        503: ("server_error", "The server is overloaded or not ready yet."),
        529: ("server_error", "The server is overloaded or not ready yet."),
    }
    _codes: ClassVar[dict[int, str]] = {
        401: "invalid_api_key",
        404: "model_not_found",
        429: "rate_limit_exceeded",
    }
    default_server_error = ("server_error", "The server had an error while processing your request.")
    default_client_error = ("invalid_request_error", "Invalid request.")
    bad_json_message = (
        "We could not parse the JSON body of your request. (HINT: This likely means you aren't using "
        "your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not "
        "valid JSON.)"
    )
    ratelimit_header = "x-ratelimit-{field}-{what}"

    def _usage(self, a: _Answer) -> dict[str, Any]:
        return {
            "prompt_tokens": a.input_tokens,
            "completion_tokens": a.output_tokens,
            "total_tokens": a.input_tokens + a.output_tokens,
            "prompt_tokens_details": {"cached_tokens": a.cached, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": a.reasoning,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }

    @staticmethod
    def _finish(a: _Answer) -> str:
        return "tool_calls" if a.tools else a.finish

    def reply_json(self, a: _Answer) -> bytes:
        message: dict[str, Any] = {
            "role": "assistant",
            "content": a.text if a.text or not a.tools else None,
            "refusal": None,
            "annotations": [],
        }
        if a.tools:
            message["tool_calls"] = [
                {
                    "id": _tool_id("call_", i, name, args),
                    "type": "function",
                    "function": {"name": name, "arguments": json.dumps(args)},
                }
                for i, (name, args) in enumerate(a.tools)
            ]
        return _dumps(
            {
                "id": f"chatcmpl-mock{a.seq}",
                "object": "chat.completion",
                "created": a.created,
                "model": a.model,
                "choices": [
                    {"index": 0, "message": message, "logprobs": None, "finish_reason": self._finish(a)}
                ],
                "usage": self._usage(a),
                "service_tier": "default",
                "system_fingerprint": "fp_mock",
            }
        )

    def reply_stream(self, a: _Answer, body: Mapping[str, Any]) -> _Events:
        options = body.get("stream_options")
        include_usage = isinstance(options, dict) and options.get("include_usage") is True
        # Every chunk shares the same envelope: encode it once and splice the delta in.
        envelope = (
            b'data: {"id":"chatcmpl-mock%d","object":"chat.completion.chunk","created":%d,"model":%s,'
            b'"service_tier":"default","system_fingerprint":"fp_mock","choices":'
            % (a.seq, a.created, _dumps(a.model))
        )
        head = envelope + b'[{"index":0,"delta":'
        usage_null = b',"usage":null' if include_usage else b""

        def chunk(delta: Mapping[str, Any], finish: str | None = None) -> bytes:
            fin = b"null" if finish is None else b'"%s"' % finish.encode()
            return (
                head
                + _dumps(delta)
                + b',"logprobs":null,"finish_reason":'
                + fin
                + b"}]"
                + usage_null
                + b"}\n\n"
            )

        pre = [
            chunk({"role": "assistant", "content": "" if a.text or not a.tools else None, "refusal": None})
        ]
        content = [chunk({"content": piece}) for piece in _pieces(a.text, a.chunk_chars)]
        for i, (name, args) in enumerate(a.tools):
            content.append(
                chunk(
                    {
                        "tool_calls": [
                            {
                                "index": i,
                                "id": _tool_id("call_", i, name, args),
                                "type": "function",
                                "function": {"name": name, "arguments": ""},
                            }
                        ]
                    }
                )
            )
            for frag in _pieces(json.dumps(args), a.chunk_chars):
                content.append(chunk({"tool_calls": [{"index": i, "function": {"arguments": frag}}]}))
        tail = [chunk({}, self._finish(a))]
        if include_usage:
            tail.append(envelope + b'[],"usage":' + _dumps(self._usage(a)) + b"}\n\n")
        tail.append(b"data: [DONE]\n\n")
        return pre, content, tail

    def error_body(self, status: int, model: str, message: str | None = None, **extra: Any) -> bytes:
        etype, message = self.kind_for(status, model, message)
        return _dumps(
            {
                "error": {
                    "message": message,
                    "type": etype,
                    "param": extra.get("param"),
                    "code": extra.get("code", self._codes.get(status)),
                }
            }
        )

    def context_error(self, model: str, tokens: int, **extra: Any) -> bytes:
        return self.error_body(
            400,
            model,
            "This model's maximum context length is 128000 tokens. However, your messages resulted in "
            f"{max(tokens, 128001)} tokens. Please reduce the length of the messages.",
            param="messages",
            code="context_length_exceeded",
            **extra,
        )

    def inband_error(self) -> bytes:
        return (
            b'data: {"error":{"message":"The server had an error while processing your request. '
            b'Sorry about that!","type":"server_error","param":null,"code":null}}\n\n'
        )

    def malformed_event(self, a: _Answer) -> bytes:
        return (
            b'data: {"id":"chatcmpl-mock%d","object":"chat.completion.chunk",'
            b'"choices":[{"delta":{"content":"\n\n' % a.seq
        )

    def ratelimit_reset(self, reset_s: float) -> str:
        return f"{reset_s:.3f}s"

    def embeddings_json(
        self, model: str, vectors: list[list[float]], tokens: int, body: Mapping[str, Any]
    ) -> bytes:
        # encoding_format "base64" gets little-endian float32 bytes, as OpenAI sends them.
        b64 = body.get("encoding_format") == "base64"
        return _dumps(
            {
                "object": "list",
                "data": [
                    {
                        "object": "embedding",
                        "index": i,
                        "embedding": base64.b64encode(struct.pack(f"<{len(v)}f", *v)).decode() if b64 else v,
                    }
                    for i, v in enumerate(vectors)
                ],
                "model": model,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )


def _sse(event: str, data: Mapping[str, Any]) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + _dumps(data) + b"\n\n"


class _AnthropicWire(_Wire):
    name = "anthropic"
    request_id_header = "request-id"
    errors: ClassVar[dict[int, tuple[str, str]]] = {
        400: ("invalid_request_error", "Invalid request."),
        401: ("authentication_error", "invalid x-api-key"),
        402: ("billing_error", "Your credit balance is too low to access the Anthropic API."),
        403: ("permission_error", "Your API key does not have permission to use the specified resource."),
        404: ("not_found_error", "model: {model}"),
        413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
        429: (
            "rate_limit_error",
            "This request would exceed the rate limit for your organization of 50 requests per minute. "
            "Please try again later.",
        ),
        500: ("api_error", "Internal server error"),
        503: ("api_error", "Service unavailable"),
        504: ("timeout_error", "Request timed out"),
        529: ("overloaded_error", "Overloaded"),
    }
    default_server_error = ("api_error", "Internal server error")
    default_client_error = ("invalid_request_error", "Invalid request.")
    bad_json_message = "There was an error parsing the body: invalid JSON"
    ratelimit_header = "anthropic-ratelimit-{what}-{field}"

    @staticmethod
    def _stop(a: _Answer) -> str:
        return "tool_use" if a.tools else ("max_tokens" if a.finish == "length" else "end_turn")

    @staticmethod
    def _usage(a: _Answer, output_tokens: int) -> dict[str, Any]:
        return {
            # Anthropic's input_tokens excludes cache reads; the whole prompt is their sum.
            "input_tokens": max(0, a.input_tokens - a.cached),
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": a.cached,
            "output_tokens": output_tokens,
            "service_tier": "standard",
        }

    def reply_json(self, a: _Answer) -> bytes:
        content: list[dict[str, Any]] = []
        if a.text or not a.tools:
            content.append({"type": "text", "text": a.text})
        for i, (name, args) in enumerate(a.tools):
            content.append(
                {"type": "tool_use", "id": _tool_id("toolu_", i, name, args), "name": name, "input": args}
            )
        return _dumps(
            {
                "id": f"msg_mock{a.seq}",
                "type": "message",
                "role": "assistant",
                "model": a.model,
                "content": content,
                "stop_reason": self._stop(a),
                "stop_sequence": None,
                "usage": self._usage(a, a.output_tokens),
            }
        )

    def reply_stream(self, a: _Answer, body: Mapping[str, Any]) -> _Events:
        start = {
            "type": "message_start",
            "message": {
                "id": f"msg_mock{a.seq}",
                "type": "message",
                "role": "assistant",
                "model": a.model,
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": self._usage(a, 1),
            },
        }
        pre = [_sse("message_start", start)]
        text_block = bool(a.text or not a.tools)
        index = 0
        if text_block:
            block = {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
            pre.append(_sse("content_block_start", block))
        pre.append(b'event: ping\ndata: {"type": "ping"}\n\n')
        content = [
            _sse(
                "content_block_delta",
                {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}},
            )
            for piece in _pieces(a.text, a.chunk_chars)
        ]
        pending_stop = b""
        if text_block:
            pending_stop = _sse("content_block_stop", {"type": "content_block_stop", "index": 0})
            index = 1
        for i, (name, args) in enumerate(a.tools):
            block_start = {
                "type": "content_block_start",
                "index": index,
                "content_block": {
                    "type": "tool_use",
                    "id": _tool_id("toolu_", i, name, args),
                    "name": name,
                    "input": {},
                },
            }
            first = pending_stop + _sse("content_block_start", block_start)
            pending_stop = b""
            content.append(
                first
                + _sse(
                    "content_block_delta",
                    {
                        "type": "content_block_delta",
                        "index": index,
                        "delta": {"type": "input_json_delta", "partial_json": ""},
                    },
                )
            )
            for frag in _pieces(json.dumps(args), a.chunk_chars):
                delta = {"type": "input_json_delta", "partial_json": frag}
                content.append(
                    _sse(
                        "content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}
                    )
                )
            content[-1] += _sse("content_block_stop", {"type": "content_block_stop", "index": index})
            index += 1
        final = {
            "type": "message_delta",
            "delta": {"stop_reason": self._stop(a), "stop_sequence": None},
            "usage": {"output_tokens": a.output_tokens},
        }
        tail = [pending_stop + _sse("message_delta", final) + _sse("message_stop", {"type": "message_stop"})]
        return pre, content, tail

    def error_body(self, status: int, model: str, message: str | None = None, **extra: Any) -> bytes:
        etype, message = self.kind_for(status, model, message)
        return _dumps(
            {
                "type": "error",
                "error": {"type": etype, "message": message},
                "request_id": extra.get("request_id", "req_mock"),
            }
        )

    def context_error(self, model: str, tokens: int, **extra: Any) -> bytes:
        message = f"prompt is too long: {max(tokens, 200001)} tokens > 200000 maximum"
        return self.error_body(400, model, message, **extra)

    def inband_error(self) -> bytes:
        return (
            b'event: error\ndata: {"type":"error",'
            b'"error":{"type":"overloaded_error","message":"Overloaded"}}\n\n'
        )

    def malformed_event(self, a: _Answer) -> bytes:
        return (
            b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
            b'"delta":{"type":"text_delta","text":"\n\n'
        )

    def ratelimit_reset(self, reset_s: float) -> str:
        return datetime.fromtimestamp(time.time() + reset_s, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class _GeminiWire(_Wire):
    name = "gemini"
    errors: ClassVar[dict[int, tuple[str, str]]] = {
        400: ("INVALID_ARGUMENT", "Request contains an invalid argument."),
        401: ("UNAUTHENTICATED", "API key not valid. Please pass a valid API key."),
        403: ("PERMISSION_DENIED", "The caller does not have permission"),
        404: (
            "NOT_FOUND",
            "models/{model} is not found for API version v1beta, or is not supported for generateContent. "
            "Call ListModels to see the list of available models and their supported methods.",
        ),
        429: (
            "RESOURCE_EXHAUSTED",
            "You exceeded your current quota, please check your plan and billing details.",
        ),
        500: (
            "INTERNAL",
            "An internal error has occurred. Please retry or report in "
            "https://developers.generativeai.google/guide/troubleshooting",
        ),
        503: ("UNAVAILABLE", "The model is overloaded. Please try again later."),
        504: ("DEADLINE_EXCEEDED", "The request timed out. Please try again."),
        529: ("UNAVAILABLE", "The model is overloaded. Please try again later."),
    }
    default_server_error = ("INTERNAL", "An internal error has occurred.")
    default_client_error = ("INVALID_ARGUMENT", "Request contains an invalid argument.")
    bad_json_message = "Invalid JSON payload received. Unexpected token."

    @staticmethod
    def _usage(a: _Answer) -> dict[str, Any]:
        usage: dict[str, Any] = {
            "promptTokenCount": a.input_tokens,
            "candidatesTokenCount": a.output_tokens - a.reasoning,
            "totalTokenCount": a.input_tokens + a.output_tokens,
        }
        if a.cached:
            usage["cachedContentTokenCount"] = a.cached
        if a.reasoning:
            usage["thoughtsTokenCount"] = a.reasoning
        usage["promptTokensDetails"] = [{"modality": "TEXT", "tokenCount": a.input_tokens}]
        return usage

    @staticmethod
    def _finish(a: _Answer) -> str:
        return "MAX_TOKENS" if a.finish == "length" and not a.tools else "STOP"

    def _response(self, a: _Answer, parts: list[dict[str, Any]], final: bool) -> dict[str, Any]:
        candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}}
        if final:
            candidate["finishReason"] = self._finish(a)
        candidate["index"] = 0
        usage = (
            self._usage(a)
            if final
            else {"promptTokenCount": a.input_tokens, "totalTokenCount": a.input_tokens}
        )
        return {
            "candidates": [candidate],
            "usageMetadata": usage,
            "modelVersion": a.model,
            "responseId": f"mock{a.seq}",
        }

    def _parts(self, a: _Answer) -> list[dict[str, Any]]:
        parts: list[dict[str, Any]] = [{"text": a.text}] if a.text or not a.tools else []
        parts += [{"functionCall": {"name": name, "args": args}} for name, args in a.tools]
        return parts

    def reply_json(self, a: _Answer) -> bytes:
        return _dumps(self._response(a, self._parts(a), True))

    def stream_objects(self, a: _Answer) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        content = [self._response(a, [{"text": piece}], False) for piece in _pieces(a.text, a.chunk_chars)]
        content += [self._response(a, [{"functionCall": {"name": n, "args": g}}], False) for n, g in a.tools]
        return content, self._response(a, [{"text": ""}], True)

    def reply_array(self, a: _Answer) -> bytes:
        """``streamGenerateContent`` without ``alt=sse``: one JSON array of chunks."""
        content, final = self.stream_objects(a)
        return b"[" + b",\r\n".join(_dumps(o) for o in [*content, final]) + b"]"

    def reply_stream(self, a: _Answer, body: Mapping[str, Any]) -> _Events:
        # Gemini frames SSE with CRLF, which also keeps the CRLF path of clients honest.
        content, final = self.stream_objects(a)
        return (
            [],
            [b"data: " + _dumps(o) + b"\r\n\r\n" for o in content],
            [b"data: " + _dumps(final) + b"\r\n\r\n"],
        )

    def error_body(self, status: int, model: str, message: str | None = None, **extra: Any) -> bytes:
        etype, message = self.kind_for(status, model, message)
        err: dict[str, Any] = {
            "code": status,
            "message": message,
            "status": etype,
        }
        if status == 429:
            delay = extra.get("retry_after", 1.0)
            err["details"] = [
                {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{delay:g}s"},
            ]
        return _dumps({"error": err})

    def context_error(self, model: str, tokens: int, **extra: Any) -> bytes:
        return self.error_body(
            400,
            model,
            f"The input token count ({max(tokens, 1048577)}) exceeds the maximum number of tokens "
            "allowed (1048576).",
            **extra,
        )

    def inband_error(self) -> bytes:
        return (
            b'data: {"error":{"code":503,"message":"The model is overloaded. Please try again later.",'
            b'"status":"UNAVAILABLE"}}\r\n\r\n'
        )

    def malformed_event(self, a: _Answer) -> bytes:
        return b'data: {"candidates":[{"content":{"parts":[{"text":"\r\n\r\n'

    def embeddings_json(
        self, model: str, vectors: list[list[float]], tokens: int, body: Mapping[str, Any]
    ) -> bytes:
        # usageMetadata (EmbeddingUsageMetadata) is the newer API surface; older replies omit it.
        return _dumps(
            {
                "embeddings": [{"values": v} for v in vectors],
                "usageMetadata": {"promptTokenCount": tokens},
            }
        )


_OPENAI = _OpenAIWire()
_ANTHROPIC = _AnthropicWire()
_GEMINI = _GeminiWire()
