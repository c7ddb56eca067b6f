"""The shared half of the mock LLM server's wire encoding, and the OpenAI format.

Each ``_Wire`` turns one ``_Answer`` into the provider's JSON reply or its stream of
SSE events, and builds the provider's real error bodies, in-band error events and
rate-limit headers. The Anthropic and Gemini wires (``_mock_wire``) build on the
base here; the OpenAI one lives beside it as the reference format.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from ..providers._render import openai_embeddings, openai_error
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
    n: int = 1  # OpenAI ``n``: identical choices 0..n-1
    thinking: str = ""  # reasoning text, sent in each provider's own format
    opaque: bool = True  # Responses API: send encrypted_content (the request included it)


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
            "completion_tokens": a.output_tokens * a.n,
            "total_tokens": a.input_tokens + a.output_tokens * a.n,
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
        if a.thinking:
            message["reasoning_content"] = (
                a.thinking
            )  # DeepSeek's field, read by OpenRouter-style clients too
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
                    {"index": i, "message": message, "logprobs": None, "finish_reason": self._finish(a)}
                    for i in range(a.n)
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
        content = [chunk({"reasoning_content": piece}) for piece in _pieces(a.thinking, a.chunk_chars)]
        content += [chunk({"content": piece}) for piece in _pieces(a.text, a.chunk_chars)]
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
        for i in range(1, a.n):
            # Further choices stream after the first, each with its own index.
            other = envelope + b'[{"index":%d,"delta":' % i
            content.append(
                other
                + _dumps({"role": "assistant", "content": a.text})
                + b',"logprobs":null,"finish_reason":null}]'
                + usage_null
                + b"}\n\n"
            )
            tail.insert(
                0,
                other
                + b'{},"logprobs":null,"finish_reason":"'
                + self._finish(a).encode()
                + b'"}]'
                + usage_null
                + b"}\n\n",
            )
        if include_usage:
            tail.append(envelope + b'[],"usage":' + _dumps(self._usage(a)) + b"}\n\n")
        tail.append(b"data: [DONE]\n\n")
        return pre, content, tail

    def error_body(self, status: int, model: str, message: str | None = None, **extra: Any) -> bytes:
        etype, message = self.kind_for(status, model, message)
        code = extra.get("code", self._codes.get(status))
        return _dumps(openai_error(message, etype, extra.get("param"), code))

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
        b64 = body.get("encoding_format") == "base64"
        return _dumps(openai_embeddings(model, vectors, tokens, b64=b64))


def _sse(event: str, data: Mapping[str, Any]) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + _dumps(data) + b"\n\n"
