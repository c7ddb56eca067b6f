"""The provider wire formats of the mock LLM server: OpenAI, Anthropic and Gemini.

The base (``_Answer``, ``_Wire``) and the OpenAI format are in ``_mock_wire_core``
and re-exported here; this module adds the Anthropic and Gemini formats and the
one instance of each wire the server uses.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar

from ..providers._render import anthropic_error
from ._mock_http import _dumps
from ._mock_wire_core import _Answer, _Events, _OpenAIWire, _pieces, _sse, _tool_id, _Wire

__all__ = ["_ANTHROPIC", "_GEMINI", "_OPENAI", "_Answer", "_Wire", "signature"]


def signature(a: _Answer) -> str:
    """The opaque signature the mock gives ``a``'s thinking (Anthropic ``signature``,
    Gemini ``thoughtSignature``): derived from the model and the thinking, so the same
    answer streamed and not carries the same one, and a test can check it came back."""
    digest = hashlib.sha256(f"sig\0{a.model}\0{a.thinking}".encode()).digest()
    return base64.b64encode(digest * 3).decode()


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
        if a.thinking:
            content.append({"type": "thinking", "thinking": a.thinking, "signature": signature(a)})
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
        content: list[bytes] = []
        if a.thinking:
            # Thinking first (block 0): its deltas, then the signature, then the block's end.
            block = {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "thinking", "thinking": ""},
            }
            pre.append(_sse("content_block_start", block))
            for piece in _pieces(a.thinking, a.chunk_chars):
                delta = {"type": "thinking_delta", "thinking": piece}
                content.append(
                    _sse("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta})
                )
            sig = {"type": "signature_delta", "signature": signature(a)}
            content[-1] += _sse(
                "content_block_delta", {"type": "content_block_delta", "index": 0, "delta": sig}
            )
            content[-1] += _sse("content_block_stop", {"type": "content_block_stop", "index": 0})
            index = 1
        t = index
        if text_block:
            block = {"type": "content_block_start", "index": t, "content_block": {"type": "text", "text": ""}}
            if a.thinking:
                content[-1] += _sse("content_block_start", block)
            else:
                pre.append(_sse("content_block_start", block))
        pre.append(b'event: ping\ndata: {"type": "ping"}\n\n')
        content += [
            _sse(
                "content_block_delta",
                {"type": "content_block_delta", "index": t, "delta": {"type": "text_delta", "text": piece}},
            )
            for piece in _pieces(a.text, a.chunk_chars)
        ]
        pending_stop = b""
        if text_block:
            pending_stop = _sse("content_block_stop", {"type": "content_block_stop", "index": t})
            index = t + 1
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
        return _dumps({**anthropic_error(etype, message), "request_id": extra.get("request_id", "req_mock")})

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

    @staticmethod
    def _call_part(a: _Answer, i: int, name: str, args: dict[str, Any]) -> dict[str, Any]:
        part: dict[str, Any] = {"functionCall": {"name": name, "args": args}}
        if a.thinking and i == 0:
            # Gemini 3 signs the first call of a turn (parallel calls: only the first).
            part["thoughtSignature"] = signature(a)
        return part

    def _parts(self, a: _Answer) -> list[dict[str, Any]]:
        parts: list[dict[str, Any]] = [{"text": a.thinking, "thought": True}] if a.thinking else []
        parts += [{"text": a.text}] if a.text or not a.tools else []
        parts += [self._call_part(a, i, name, args) for i, (name, args) in enumerate(a.tools)]
        return parts

    def reply_json(self, a: _Answer) -> bytes:
        return _dumps(self._response(a, self._parts(a), True))

    def stream_objects(self, a: _Answer) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        content = [
            self._response(a, [{"text": piece, "thought": True}], False)
            for piece in _pieces(a.thinking, a.chunk_chars)
        ]
        content += [self._response(a, [{"text": piece}], False) for piece in _pieces(a.text, a.chunk_chars)]
        content += [
            self._response(a, [self._call_part(a, i, n, g)], False) for i, (n, g) in enumerate(a.tools)
        ]
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
