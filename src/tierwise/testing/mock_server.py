"""A real loopback HTTP/1.1 server speaking the OpenAI, Anthropic and Gemini wire formats.

Why a real server rather than ``httpx.MockTransport``: connection pooling, keep-alive,
chunked transfer encoding, sockets reset mid-reply, read timeouts and TCP back-pressure
only exist on real sockets, and those are exactly where retry, timeout and stream
fallback logic breaks. Tests, examples and benchmarks point a provider's ``base_url``
at ``server.base_url`` and get byte-accurate provider replies with scripted faults.

It runs on the asyncio event loop: ``async with MockLLMServer(...)`` serves from the
caller's loop (so tests need no threads), ``MockLLMServer.run_in_thread()`` gives it a
loop of its own in a daemon thread (for sync code and for benchmarks whose client
must not share a loop with the server), and ``serve()`` / ``tierwise mock-server``
block a whole process on it.

Built on ``asyncio.Protocol`` with a small hand-written HTTP/1.1 parser, not a web
framework: requests that need no waiting (no latency, no stream delays) are parsed and
answered inside ``data_received`` without creating a task; only replies that sleep,
hang or stream slowly get one. Measured against an ``asyncio.start_server`` streams
variant of the same handler, CPU per request was equal (~76 µs on the 2-core dev VM,
dominated by send/recv syscalls and JSON), so Protocol is kept for the control it gives
over RST, half-close and back-pressure; one process serves ~14k JSON requests/s
(``benchmarks/mock_server_rps.py``).

Supported endpoints::

    POST /v1/chat/completions, /chat/completions        OpenAI (JSON or SSE by "stream")
    POST /v1/messages                                   Anthropic (JSON or SSE by "stream")
    POST /v1beta/models/{model}:generateContent         Gemini JSON   (also /v1/models/...)
    POST /v1beta/models/{model}:streamGenerateContent   Gemini SSE with ?alt=sse, else a JSON array
    GET  /v1/models, /health                            listing and readiness probe

Fault kinds (``MockModel.faults`` / ``MockModel.fault_rates``): ``ok``, ``429``,
``500``, ``503``, ``529`` (any other HTTP error status ``400``-``599`` too), ``context``
(400 context-window error), ``hang`` (never answers), ``stall`` (starts answering, then
goes silent), ``reset`` (TCP RST; before any byte for JSON, mid-stream for SSE),
``truncate`` (stream ends cleanly at the HTTP level but before the final events; a
JSON body is cut short and the connection closed), ``malformed`` (invalid JSON body,
or one invalid SSE data line), ``inband_error`` (HTTP 200 carrying the provider's
error event; for JSON a 200 with an error body, as OpenRouter does). Error bodies use
each provider's real error JSON so tierwise's error mapping is exercised for real.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import enum
import hashlib
import json
import logging
import math
import random
import signal
import socket
import struct
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from http import HTTPStatus
from pathlib import Path
from typing import Any, ClassVar, Literal
from urllib.parse import parse_qs, unquote

__all__ = [
    "FAULT_KINDS",
    "MockLLMServer",
    "MockModel",
    "MockRequest",
    "ModelStats",
    "estimate_tokens",
    "main_mock_server",
    "serve",
]

#: Named fault kinds; any HTTP error status "400".."599" is accepted as well.
FAULT_KINDS = frozenset(
    {"ok", "429", "500", "503", "529", "context", "hang", "stall", "reset", "truncate", "malformed"}
    | {"inband_error"}
)

_log = logging.getLogger(__name__)

_MAX_HEAD = 64 * 1024
_MAX_BODY = 32 * 1024 * 1024
_MAX_PENDING = 1024 * 1024  # buffered pipelined input before we stop reading
_CHARS_PER_TOKEN = 4

_dumps_str = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def _dumps(obj: Any) -> bytes:
    return _dumps_str(obj).encode()


def estimate_tokens(text: str) -> int:
    """Deterministic token estimate (~4 characters per token), what the server reports
    when a model does not fix its token counts."""
    return (len(text) + _CHARS_PER_TOKEN - 1) // _CHARS_PER_TOKEN


# --------------------------------------------------------------------------- requests

_UNSET: Any = object()


class MockRequest:
    """One request as the server received it (header names lowercased).

    ``path`` is the raw request target including any query string, as a client sent
    it; ``model`` is parsed from the JSON body or the Gemini path (``None`` when
    neither names one); ``provider`` is ``"openai"``, ``"anthropic"``, ``"gemini"``
    or ``None`` for other paths.
    """

    __slots__ = ("_json", "_prompt", "body", "headers", "method", "model", "path", "provider", "stream")

    def __init__(self, method: str, path: str, headers: dict[str, str], body: bytes) -> None:
        self.method = method
        self.path = path
        self.headers = headers
        self.body = body
        self.model: str | None = None
        self.provider: str | None = None
        self.stream = False
        self._json: Any = _UNSET
        self._prompt: str | None = None

    def json(self) -> Any:
        """The decoded JSON body (``ValueError`` if it is not JSON)."""
        if self._json is _UNSET:
            self._json = json.loads(self.body)
        return self._json

    @property
    def query(self) -> dict[str, str]:
        """Query parameters (last value wins)."""
        _, _, qs = self.path.partition("?")
        return {k: v[-1] for k, v in parse_qs(qs).items()}

    @property
    def prompt(self) -> str:
        """All prompt text (system and every message) in the provider's format, joined by newlines."""
        if self._prompt is None:
            try:
                body = self.json()
            except ValueError:
                body = None
            self._prompt = _prompt_text(self.provider, body) if isinstance(body, dict) else ""
        return self._prompt

    def __repr__(self) -> str:
        return f"MockRequest({self.method} {self.path} model={self.model!r} stream={self.stream})"


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            part["text"] for part in content if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return ""


def _prompt_text(provider: str | None, body: Mapping[str, Any]) -> str:
    parts: list[str] = []
    if provider == "gemini":
        system = body.get("systemInstruction") or body.get("system_instruction")
        if isinstance(system, dict):
            parts.append(_text_of(system.get("parts")))
        for content in body.get("contents") or ():
            if isinstance(content, dict):
                parts.append(_text_of(content.get("parts")))
    else:
        if provider == "anthropic" and body.get("system") is not None:
            parts.append(_text_of(body.get("system")))
        for message in body.get("messages") or ():
            if isinstance(message, dict):
                parts.append(_text_of(message.get("content")))
    return "\n".join(p for p in parts if p)


def _last_user_text(provider: str | None, body: Mapping[str, Any]) -> str:
    if provider == "gemini":
        for content in reversed(body.get("contents") or ()):
            if isinstance(content, dict) and content.get("role", "user") == "user":
                return _text_of(content.get("parts"))
        return ""
    for message in reversed(body.get("messages") or ()):
        if isinstance(message, dict) and message.get("role") == "user":
            return _text_of(message.get("content"))
    return ""


def _max_tokens(provider: str, body: Mapping[str, Any]) -> int | None:
    if provider == "gemini":
        config = body.get("generationConfig") or body.get("generation_config")
        value = config.get("maxOutputTokens") if isinstance(config, dict) else None
    elif provider == "openai":
        value = body.get("max_completion_tokens", body.get("max_tokens"))
    else:
        value = body.get("max_tokens")
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


# --------------------------------------------------------------------------- models


def _valid_fault(kind: str) -> bool:
    return kind in FAULT_KINDS or (len(kind) == 3 and kind.isdigit() and 400 <= int(kind) <= 599)


@dataclass
class MockModel:
    """How one model behaves. Plain data, so it can be written in TOML/JSON config.

    ``reply`` is a fixed string, or a callable taking the ``MockRequest`` (which has
    ``.json()`` and ``.prompt``) and returning the text; ``None`` gives a
    deterministic echo of the last user message. ``output_tokens`` counts the visible
    answer; ``reasoning_tokens`` come on top, as providers bill them (OpenAI/Anthropic
    report their sum, Gemini reports them as ``thoughtsTokenCount``). ``input_tokens``
    is the whole prompt; ``cached_tokens`` is reported as the cached part of it. When
    the request's max tokens is below the answer's size, the text is cut and the
    finish reason becomes ``length``, as a real model would.

    Faults: the scripted ``faults`` sequence applies to successive requests (then,
    when exhausted, ``fault_rates`` probabilities apply, drawn from an RNG seeded by
    the server seed and the model name; ``cycle_faults`` repeats the script instead).
    ``fault_after_chunks`` is how many content events a stream sends before a
    ``truncate``/``reset``/``stall``/``malformed``/``inband_error`` fault (0: right
    after the preamble, before any content). ``latency_ms`` (+ uniform
    ``0..jitter_ms``) delays the first byte of every reply, faults included.
    ``rate_limit_requests`` / ``rate_limit_tokens`` (per 60 s window) make the server
    send ``x-ratelimit-*`` (OpenAI) or ``anthropic-ratelimit-*`` headers, and with
    ``enforce_rate_limits`` answer 429 once a limit is spent.
    """

    reply: str | Callable[[MockRequest], str] | None = None
    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    stream_chunk_delay_ms: float = 0.0
    tokens_per_chunk: int = 4
    input_tokens: int | None = None
    output_tokens: int | None = None
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    tool_calls: Sequence[tuple[str, Mapping[str, Any]] | Mapping[str, Any]] = ()
    finish: Literal["stop", "length"] = "stop"
    faults: Sequence[str] = ()
    fault_rates: Mapping[str, float] = field(default_factory=dict)
    cycle_faults: bool = False
    fault_after_chunks: int = 2
    retry_after_s: float = 1.0
    rate_limit_requests: int | None = None
    rate_limit_tokens: int | None = None
    enforce_rate_limits: bool = False
    _tools: tuple[tuple[str, dict[str, Any]], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not (self.reply is None or isinstance(self.reply, str) or callable(self.reply)):
            raise TypeError("MockModel.reply must be a string, a callable or None")
        for attr in ("latency_ms", "jitter_ms", "stream_chunk_delay_ms", "retry_after_s"):
            if getattr(self, attr) < 0:
                raise ValueError(f"MockModel.{attr} must be >= 0")
        if self.tokens_per_chunk < 1:
            raise ValueError("MockModel.tokens_per_chunk must be >= 1")
        if self.fault_after_chunks < 0:
            raise ValueError("MockModel.fault_after_chunks must be >= 0")
        if self.finish not in ("stop", "length"):
            raise ValueError(f"MockModel.finish must be 'stop' or 'length', got {self.finish!r}")
        if isinstance(self.faults, str):
            raise TypeError("MockModel.faults must be a sequence of fault kinds, not a string")
        self.faults = tuple(str(k) for k in self.faults)
        self.fault_rates = {str(k): float(v) for k, v in dict(self.fault_rates).items()}
        for kind in (*self.faults, *self.fault_rates):
            if not _valid_fault(kind):
                raise ValueError(
                    f"unknown fault kind {kind!r}; expected one of {sorted(FAULT_KINDS)} "
                    "or an HTTP status 400-599"
                )
        if any(p < 0 for p in self.fault_rates.values()) or sum(self.fault_rates.values()) > 1.0 + 1e-9:
            raise ValueError("MockModel.fault_rates must be >= 0 and sum to at most 1")
        tools: list[tuple[str, dict[str, Any]]] = []
        items: Sequence[Any] = self.tool_calls  # config data may hold lists, not tuples
        for item in items:
            name: Any
            args: Any
            if isinstance(item, Mapping):
                name, args = item.get("name"), item.get("arguments", item.get("args", {}))
            elif isinstance(item, Sequence) and len(item) == 2:
                name, args = item
            else:
                name = args = None
            if not isinstance(name, str) or not isinstance(args, Mapping):
                raise ValueError(f"tool call must be (name, arguments dict), got {item!r}")
            tools.append((name, dict(args)))
        self._tools = tuple(tools)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MockModel:
        """Build from config data, naming unknown keys instead of a bare ``TypeError``."""
        allowed = {f.name for f in fields(cls) if f.init}
        unknown = sorted(set(data) - allowed)
        if unknown:
            raise ValueError(
                f"unknown MockModel key(s): {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}"
            )
        return cls(**dict(data))


@dataclass
class ModelStats:
    """Per-model counters: requests seen, how many were streams, served OK, and faults by kind."""

    requests: int = 0
    streamed: int = 0
    ok: int = 0
    faults: dict[str, int] = field(default_factory=dict)


class _ModelState:
    """Runtime state of one model name: script position, RNGs, rate-limit window."""

    __slots__ = (
        "jitter_rng",
        "model",
        "rng",
        "script_pos",
        "stats",
        "win_requests",
        "win_start",
        "win_tokens",
    )

    def __init__(self, name: str, model: MockModel, seed: int, stats: ModelStats) -> None:
        self.model = model
        # String seeds hash deterministically (sha512), so a (seed, name) pair gives the
        # same fault sequence in every process, independent of other models' traffic.
        self.rng = random.Random(f"{seed}/{name}")
        self.jitter_rng = random.Random(f"{seed}/{name}/jitter")
        self.script_pos = 0
        self.stats = stats
        self.win_start = time.monotonic()
        self.win_requests = 0
        self.win_tokens = 0

    def next_fault(self) -> str:
        m = self.model
        script = m.faults
        if script:
            pos = self.script_pos
            self.script_pos = pos + 1
            if pos < len(script):
                return script[pos]
            if m.cycle_faults:
                return script[pos % len(script)]
        if m.fault_rates:
            r = self.rng.random()
            acc = 0.0
            for kind, p in m.fault_rates.items():
                acc += p
                if r < acc:
                    return kind
        return "ok"


# --------------------------------------------------------------------------- wire formats


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

    def kind_for(self, status: int) -> tuple[str, str]:
        return self.errors.get(
            status, self.default_server_error if status >= 500 else self.default_client_error
        )

    def ratelimit_headers(self, m: MockModel, st: _ModelState, reset_s: float) -> list[tuple[str, str]]:
        return []


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
        head = (
            b'data: {"id":"chatcmpl-mock%d","object":"chat.completion.chunk","created":%d,"model":%s,'
            b'"service_tier":"default","system_fingerprint":"fp_mock","choices":[{"index":0,"delta":'
            % (a.seq, a.created, _dumps(a.model))
        )
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
            tail.append(
                b'data: {"id":"chatcmpl-mock%d","object":"chat.completion.chunk","created":%d,"model":%s,'
                b'"service_tier":"default","system_fingerprint":"fp_mock","choices":[],"usage":%s}\n\n'
                % (a.seq, a.created, _dumps(a.model), _dumps(self._usage(a)))
            )
        tail.append(b"data: [DONE]\n\n")
        return pre, content, tail

    def error_body(self, status: int, model: str, message: str | None = None, **extra: Any) -> bytes:
        etype, default = self.kind_for(status)
        return _dumps(
            {
                "error": {
                    "message": message or default.format(model=model),
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

    def ratelimit_headers(self, m: MockModel, st: _ModelState, reset_s: float) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        reset = f"{reset_s:.3f}s"
        if m.rate_limit_requests is not None:
            out += [
                ("x-ratelimit-limit-requests", str(m.rate_limit_requests)),
                ("x-ratelimit-remaining-requests", str(max(0, m.rate_limit_requests - st.win_requests))),
                ("x-ratelimit-reset-requests", reset),
            ]
        if m.rate_limit_tokens is not None:
            out += [
                ("x-ratelimit-limit-tokens", str(m.rate_limit_tokens)),
                ("x-ratelimit-remaining-tokens", str(max(0, m.rate_limit_tokens - st.win_tokens))),
                ("x-ratelimit-reset-tokens", reset),
            ]
        return out


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
        etype, default = self.kind_for(status)
        return _dumps(
            {
                "type": "error",
                "error": {"type": etype, "message": message or default.format(model=model)},
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

    def ratelimit_headers(self, m: MockModel, st: _ModelState, reset_s: float) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        reset = datetime.fromtimestamp(time.time() + reset_s, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        if m.rate_limit_requests is not None:
            out += [
                ("anthropic-ratelimit-requests-limit", str(m.rate_limit_requests)),
                (
                    "anthropic-ratelimit-requests-remaining",
                    str(max(0, m.rate_limit_requests - st.win_requests)),
                ),
                ("anthropic-ratelimit-requests-reset", reset),
            ]
        if m.rate_limit_tokens is not None:
            out += [
                ("anthropic-ratelimit-tokens-limit", str(m.rate_limit_tokens)),
                ("anthropic-ratelimit-tokens-remaining", str(max(0, m.rate_limit_tokens - st.win_tokens))),
                ("anthropic-ratelimit-tokens-reset", reset),
            ]
        return out


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
        etype, default = self.kind_for(status)
        err: dict[str, Any] = {
            "code": status,
            "message": message or default.format(model=model),
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


_OPENAI = _OpenAIWire()
_ANTHROPIC = _AnthropicWire()
_GEMINI = _GeminiWire()


# --------------------------------------------------------------------------- HTTP framing


class _Signal(enum.Enum):
    HANG = "hang"  # write nothing more; wait until the connection closes
    RESET = "reset"  # abort with a TCP RST
    CLOSE = "close"  # flush and close (FIN)


# A reply is a list of operations: bytes to write, floats to sleep (seconds), or a signal.
_Op = bytes | float | _Signal

_STATUS_LINES: dict[int, bytes] = {}
_EXTRA_REASONS = {529: "Site Overloaded"}


def _status_line(status: int) -> bytes:
    line = _STATUS_LINES.get(status)
    if line is None:
        try:
            reason = HTTPStatus(status).phrase
        except ValueError:
            reason = _EXTRA_REASONS.get(status, "Unknown")
        line = _STATUS_LINES[status] = f"HTTP/1.1 {status} {reason}\r\n".encode()
    return line


_JSON = b"application/json"
_SSE = b"text/event-stream; charset=utf-8"


def _head(
    status: int, ctype: bytes, length: int | None, headers: Sequence[tuple[str, str]], close: bool
) -> bytes:
    """Status line and headers; ``length=None`` means a chunked body."""
    parts = [_status_line(status), b"content-type: ", ctype, b"\r\n"]
    if length is None:
        parts.append(b"transfer-encoding: chunked\r\ncache-control: no-cache\r\n")
    else:
        parts.append(b"content-length: %d\r\n" % length)
    for name, value in headers:
        parts.append(f"{name}: {value}\r\n".encode("latin-1"))
    parts.append(b"connection: close\r\n\r\n" if close else b"\r\n")
    return b"".join(parts)


def _frame(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


_LAST_CHUNK = b"0\r\n\r\n"


def _json_reply(status: int, body: bytes, headers: Sequence[tuple[str, str]], close: bool) -> list[_Op]:
    return [_head(status, _JSON, len(body), headers, close) + body]


def _linger_reset(transport: asyncio.Transport) -> None:
    """Close with SO_LINGER 0 so the peer sees a RST (ECONNRESET), not a clean FIN."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


class _Connection(asyncio.Protocol):
    """One client connection: parses pipelined HTTP/1.1 requests and runs replies in order."""

    def __init__(self, server: MockLLMServer) -> None:
        self._server = server
        self._transport: asyncio.Transport | None = None
        self._buf = bytearray()
        self._busy = False
        self._closed = False
        self._continued = False
        self._read_paused = False
        self._write_paused = False
        self._drain_waiter: asyncio.Future[None] | None = None
        self._closed_waiter: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None

    # -- asyncio callbacks ---------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._server._conns.add(self)

    def data_received(self, data: bytes) -> None:
        self._buf += data
        if self._busy:
            if len(self._buf) > _MAX_PENDING and self._transport is not None and not self._read_paused:
                self._read_paused = True
                self._transport.pause_reading()
            return
        self._process()

    def eof_received(self) -> bool:
        # The client is gone (or half-closed): stop; a hanging reply ends here too.
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._server._conns.discard(self)
        for waiter in (self._drain_waiter, self._closed_waiter):
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
        task = self._task
        if task is not None and not task.done() and task is not asyncio.current_task():
            task.cancel()

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- request loop ----------------------------------------------------------

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    def _process(self) -> None:
        transport = self._transport
        assert transport is not None
        while not self._closed and not self._busy:
            parsed = self._parse()
            if parsed is None:
                return
            method, target, headers, body, keep_alive = parsed
            try:
                ops = self._server._dispatch(method, target, headers, body, not keep_alive)
            except Exception as exc:
                # A bug in a reply callable must reach the test as a visible 500 (and the
                # log), not as asyncio's "data_received() failed" and a dropped socket.
                _log.exception("MockLLMServer failed to handle %s %s", method, target)
                ops = _json_reply(
                    500, _dumps({"error": {"message": f"mock server error: {exc!r}"}}), (), True
                )
                keep_alive = False
            if any(type(op) is float or op is _Signal.HANG for op in ops):
                self._busy = True
                task = asyncio.get_running_loop().create_task(self._run(ops, keep_alive))
                self._task = task
                self._server._tasks.add(task)
                task.add_done_callback(self._server._tasks.discard)
                return
            for op in ops:
                if type(op) is bytes:
                    transport.write(op)
                elif op is _Signal.RESET:
                    _linger_reset(transport)
                    return
                else:  # CLOSE
                    transport.close()
                    return
            if not keep_alive:
                transport.close()
                return

    async def _run(self, ops: list[_Op], keep_alive: bool) -> None:
        transport = self._transport
        assert transport is not None
        for op in ops:
            if self._closed:
                return
            if type(op) is bytes:
                transport.write(op)
                if self._write_paused:
                    await self._drain()
            elif type(op) is float:
                await asyncio.sleep(op)
            elif op is _Signal.HANG:
                loop = asyncio.get_running_loop()
                self._closed_waiter = loop.create_future()
                await self._closed_waiter
                return
            elif op is _Signal.RESET:
                _linger_reset(transport)
                return
            else:
                transport.close()
                return
        if self._closed:
            return
        if not keep_alive:
            transport.close()
            return
        self._busy = False
        self._task = None
        if self._read_paused:
            self._read_paused = False
            transport.resume_reading()
        self._process()

    async def _drain(self) -> None:
        if self._closed or not self._write_paused:
            return
        self._drain_waiter = asyncio.get_running_loop().create_future()
        await self._drain_waiter

    def _fail(self, status: int, message: str) -> None:
        body = _dumps({"error": {"message": message, "type": "invalid_request_error", "code": None}})
        assert self._transport is not None
        self._transport.write(_head(status, _JSON, len(body), (), True) + body)
        self._transport.close()
        self._closed = True

    def _parse(self) -> tuple[str, str, dict[str, str], bytes, bool] | None:
        """One complete request from the buffer, or ``None`` (need more data / failed)."""
        buf = self._buf
        end = buf.find(b"\r\n\r\n")
        if end < 0 or end > _MAX_HEAD:
            if end > _MAX_HEAD or len(buf) > _MAX_HEAD:
                self._fail(431, "request headers too large")
            return None
        lines = buf[:end].decode("latin-1").split("\r\n")
        try:
            method, target, version = lines[0].split(" ")
        except ValueError:
            self._fail(400, "malformed request line")
            return None
        if not version.startswith("HTTP/1.") or not target:
            self._fail(400, "unsupported HTTP version")
            return None
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep or not name or name[-1] in " \t":
                self._fail(400, "malformed header line")
                return None
            name = name.lower()
            value = value.strip()
            old = headers.get(name)
            headers[name] = value if old is None else f"{old}, {value}"
        start = end + 4
        te = headers.get("transfer-encoding")
        if te is not None:
            if te.lower().rsplit(",", 1)[-1].strip() != "chunked":
                self._fail(400, "unsupported transfer-encoding")
                return None
            try:
                result = _parse_chunked(buf, start)
            except ValueError as exc:
                self._fail(400 if "size" not in str(exc) else 413, str(exc))
                return None
            if result is None:
                self._maybe_continue(headers)
                return None
            body, consumed = result
        else:
            cl = headers.get("content-length")
            if cl is None:
                body, consumed = b"", start
            else:
                if not cl.isdigit():
                    self._fail(400, "invalid content-length")
                    return None
                n = int(cl)
                if n > _MAX_BODY:
                    self._fail(413, "request body too large")
                    return None
                if len(buf) < start + n:
                    self._maybe_continue(headers)
                    return None
                body, consumed = bytes(buf[start : start + n]), start + n
        del buf[:consumed]
        self._continued = False
        connection = headers.get("connection", "").lower()
        # HTTP/1.1 is persistent unless told otherwise; HTTP/1.0 only when asked.
        keep_alive = "close" not in connection if version == "HTTP/1.1" else "keep-alive" in connection
        return method, target, headers, body, keep_alive

    def _maybe_continue(self, headers: Mapping[str, str]) -> None:
        # curl sends "Expect: 100-continue" for bodies over 1 KiB and waits for this.
        if not self._continued and headers.get("expect", "").lower() == "100-continue":
            self._continued = True
            assert self._transport is not None
            self._transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")


def _parse_chunked(buf: bytearray, pos: int) -> tuple[bytes, int] | None:
    out = bytearray()
    while True:
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            return None
        try:
            size = int(bytes(buf[pos:eol]).split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise ValueError("invalid chunk header") from None
        pos = eol + 2
        if size == 0:
            while True:  # optional trailers, then a blank line
                eol = buf.find(b"\r\n", pos)
                if eol < 0:
                    return None
                if eol == pos:
                    return bytes(out), pos + 2
                pos = eol + 2
        if len(out) + size > _MAX_BODY:
            raise ValueError("request body size too large")
        if len(buf) < pos + size + 2:
            return None
        if buf[pos + size : pos + size + 2] != b"\r\n":
            raise ValueError("invalid chunk framing")
        out += buf[pos : pos + size]
        pos += size + 2


# --------------------------------------------------------------------------- server


@dataclass(slots=True)
class _Replay:
    status: int
    headers: list[tuple[str, str]]
    ctype: bytes
    chunks: list[bytes]
    delay: float


_GEMINI_PREFIXES = ("/v1beta/models/", "/v1/models/", "/v1alpha/models/")
_FRAMING_HEADERS = frozenset(("content-length", "transfer-encoding", "connection", "content-type"))


class MockLLMServer:
    """A loopback LLM API server with per-model behaviour and fault injection.

    ``models`` maps model names to ``MockModel``; requests for other names get the
    provider's 404, unless ``default`` is given (it then answers every name). With
    neither ``models`` nor ``default`` every name is answered by ``MockModel()``.
    ``seed`` makes probabilistic faults and jitter deterministic.
    ``record_limit`` bounds ``requests`` (the most recent are kept) so a long
    benchmark does not grow memory; 0 disables recording.

    ``set_model`` and ``replay`` may be called from another thread while the server
    runs in ``run_in_thread`` (they are single atomic container operations).
    """

    def __init__(
        self,
        models: Mapping[str, MockModel] | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        default: MockModel | None = None,
        seed: int = 0,
        record_limit: int = 10_000,
    ) -> None:
        if models is not None and not isinstance(models, Mapping):
            raise TypeError("models must be a mapping of model name to MockModel")
        self._models: dict[str, MockModel] = dict(models or {})
        self._default = default if default is not None or models is not None else MockModel()
        self.host = host
        self._port = port
        self.seed = seed
        self._requests: deque[MockRequest] = deque(maxlen=max(0, record_limit))
        self._states: dict[str, _ModelState] = {}
        self._stats: dict[str, ModelStats] = {}
        self._replays: deque[_Replay] = deque()
        self._server: asyncio.Server | None = None
        self._conns: set[_Connection] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._seq = 0

    # -- lifecycle --------------------------------------------------------------

    async def start(self) -> MockLLMServer:
        """Bind and start accepting; returns ``self`` (port 0 picks a free port)."""
        if self._server is not None:
            raise RuntimeError("MockLLMServer already started")
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _Connection(self), self.host, self._port, backlog=1024, reuse_address=True
        )
        self._port = self._server.sockets[0].getsockname()[1]
        return self

    async def aclose(self) -> None:
        """Stop listening, drop every connection (hanging replies included), end all tasks."""
        server = self._server
        if server is None:
            return
        self._server = None
        server.close()
        for conn in list(self._conns):
            conn.abort()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.sleep(0)  # let connection_lost callbacks run
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(server.wait_closed(), 5.0)

    async def __aenter__(self) -> MockLLMServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    @classmethod
    @contextlib.contextmanager
    def run_in_thread(
        cls,
        models: Mapping[str, MockModel] | None = None,
        **kwargs: Any,
    ) -> Iterator[MockLLMServer]:
        """Run a started server on its own event loop in a daemon thread.

        For synchronous code, and for benchmarks where the client must not compete
        with the server for one loop. Stops and joins the thread on exit.
        """
        server = cls(models, **kwargs)
        loop = asyncio.new_event_loop()
        ready = threading.Event()
        failure: list[BaseException] = []

        def runner() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(server.start())
            except BaseException as exc:
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
                loop.run_until_complete(server.aclose())
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()

        thread = threading.Thread(target=runner, name="tierwise-mock-server", daemon=True)
        thread.start()
        ready.wait()
        if failure:
            thread.join()
            raise failure[0]
        try:
            yield server
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join()

    # -- public state ---------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._server is None and self._port == 0:
            raise RuntimeError("MockLLMServer not started")
        return self._port

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def requests(self) -> list[MockRequest]:
        """A snapshot of the recorded requests, oldest first (at most ``record_limit``)."""
        return list(self._requests)

    def clear_requests(self) -> None:
        self._requests.clear()

    @property
    def stats(self) -> dict[str, ModelStats]:
        """Live per-model counters, keyed by the model name requested."""
        return self._stats

    @property
    def models(self) -> dict[str, MockModel]:
        return dict(self._models)

    def set_model(self, name: str, model: MockModel | None) -> None:
        """Add, replace (restarting its fault script and RNG) or, with ``None``, remove a model."""
        if model is None:
            self._models.pop(name, None)
        else:
            self._models[name] = model
        self._states.pop(name, None)

    def replay(
        self,
        status: int,
        headers: Mapping[str, str],
        chunks: Sequence[bytes],
        *,
        chunk_delay_ms: float = 0.0,
    ) -> None:
        """Queue one raw scripted response (FIFO) for the next request, whatever its path.

        Each chunk is written separately; the body is chunked when there is more than
        one chunk or the content type is ``text/event-stream``, else sent with
        Content-Length. Framing headers in ``headers`` are replaced by the server's own.
        """
        hdrs = [(k.lower(), v) for k, v in headers.items()]
        ctype = next((v for k, v in hdrs if k == "content-type"), "application/json")
        self._replays.append(
            _Replay(
                status,
                [(k, v) for k, v in hdrs if k not in _FRAMING_HEADERS],
                ctype.encode("latin-1"),
                [bytes(c) for c in chunks],
                chunk_delay_ms / 1000.0,
            )
        )

    # -- request handling -----------------------------------------------------------

    def _state_for(self, name: str) -> _ModelState | None:
        state = self._states.get(name)
        if state is None:
            model = self._models.get(name, self._default)
            if model is None:
                return None
            stats = self._stats.get(name)
            if stats is None:
                stats = self._stats[name] = ModelStats()
            state = self._states[name] = _ModelState(name, model, self.seed, stats)
        return state

    def _dispatch(
        self, method: str, target: str, headers: dict[str, str], body: bytes, close: bool
    ) -> list[_Op]:
        rec = MockRequest(method, target, headers, body)
        self._requests.append(rec)
        self._seq += 1
        path, _, query = target.partition("?")
        if self._replays:
            _guess_model(rec, path)
            return self._replay_ops(self._replays.popleft(), close)

        wire: _Wire
        gemini_model: str | None = None
        if path in ("/v1/chat/completions", "/chat/completions"):
            wire = _OPENAI
        elif path == "/v1/messages":
            wire = _ANTHROPIC
        elif path.startswith(_GEMINI_PREFIXES) and ":" in path:
            wire = _GEMINI
            gemini_model, _, action = path.split("/models/", 1)[1].rpartition(":")
            gemini_model = unquote(gemini_model)
            if action not in ("generateContent", "streamGenerateContent"):
                return self._not_found(method, path, close)
            rec.stream = action == "streamGenerateContent"
        elif method == "GET" and path in ("/v1/models", "/models"):
            data = [
                {"id": n, "object": "model", "created": 0, "owned_by": "tierwise-mock"} for n in self._models
            ]
            return _json_reply(200, _dumps({"object": "list", "data": data}), (), close)
        elif method == "GET" and path == "/health":
            return _json_reply(200, b'{"status":"ok"}', (), close)
        else:
            return self._not_found(method, path, close)
        rec.provider = wire.name
        rid = f"req_mock{self._seq:08d}"
        hdrs = [(wire.request_id_header, rid)] if wire.request_id_header else []

        def error(status: int, message: str | None = None, model: str = "") -> list[_Op]:
            return _json_reply(status, wire.error_body(status, model, message, request_id=rid), hdrs, close)

        if method != "POST":
            return error(405, f"Method {method} not allowed on {path}")
        try:
            data = json.loads(body)
        except ValueError:
            return error(400, _bad_json_message(wire))
        rec._json = data
        if not isinstance(data, dict):
            return error(400, "The request body must be a JSON object.")
        if wire is _GEMINI:
            model = gemini_model or ""
            sse = "alt=sse" in query
        else:
            named = data.get("model")
            if not isinstance(named, str) or not named:
                return error(400, "model: Field required")
            model = named
            rec.stream = data.get("stream") is True
            sse = rec.stream
        rec.model = model
        state = self._state_for(model)
        if state is None:
            return error(404, None, model)
        return self._respond(wire, state, rec, data, sse, close, hdrs, rid)

    def _not_found(self, method: str, path: str, close: bool) -> list[_Op]:
        body = _dumps(
            {
                "error": {
                    "message": f"Invalid URL ({method} {path})",
                    "type": "invalid_request_error",
                    "param": None,
                    "code": None,
                }
            }
        )
        return _json_reply(404, body, (), close)

    def _respond(
        self,
        wire: _Wire,
        st: _ModelState,
        rec: MockRequest,
        data: dict[str, Any],
        sse: bool,
        close: bool,
        headers: list[tuple[str, str]],
        rid: str,
    ) -> list[_Op]:
        m = st.model
        stats = st.stats
        stats.requests += 1
        if rec.stream:
            stats.streamed += 1
        kind = st.next_fault()
        answer: _Answer | None = None
        if m.rate_limit_requests is not None or m.rate_limit_tokens is not None:
            answer = self._answer(st, rec, data, wire)
            now = time.monotonic()
            if now - st.win_start >= 60.0:
                st.win_start, st.win_requests, st.win_tokens = now, 0, 0
            reset_s = max(0.001, 60.0 - (now - st.win_start))
            over = (m.rate_limit_requests is not None and st.win_requests >= m.rate_limit_requests) or (
                m.rate_limit_tokens is not None and st.win_tokens >= m.rate_limit_tokens
            )
            if over and m.enforce_rate_limits and kind == "ok":
                kind = "429"
                retry_after = reset_s
            else:
                st.win_requests += 1
                st.win_tokens += answer.input_tokens + answer.output_tokens
                retry_after = m.retry_after_s
            headers += wire.ratelimit_headers(m, st, reset_s)
        else:
            retry_after = m.retry_after_s
        if kind == "ok":
            stats.ok += 1
        else:
            stats.faults[kind] = stats.faults.get(kind, 0) + 1

        ops: list[_Op] = []
        delay = m.latency_ms / 1000.0
        if m.jitter_ms:
            delay += st.jitter_rng.uniform(0.0, m.jitter_ms / 1000.0)
        if delay > 0:
            ops.append(delay)
        if kind == "hang":
            ops.append(_Signal.HANG)
            return ops
        if kind == "reset" and not sse:
            ops.append(_Signal.RESET)
            return ops
        if kind == "context":
            tokens = answer.input_tokens if answer is not None else estimate_tokens(rec.prompt)
            ops += _json_reply(
                400, wire.context_error(rec.model or "", tokens, request_id=rid), headers, close
            )
            return ops
        if kind[0].isdigit():
            status = int(kind)
            if status == 429:
                headers.append(("retry-after", str(math.ceil(retry_after))))
                headers.append(("retry-after-ms", str(round(retry_after * 1000))))
            body = wire.error_body(status, rec.model or "", None, retry_after=retry_after, request_id=rid)
            ops += _json_reply(status, body, headers, close)
            return ops

        if answer is None:
            answer = self._answer(st, rec, data, wire)
        if kind == "inband_error" and not sse:
            ops += _json_reply(
                200,
                wire.error_body(500 if wire is _OPENAI else 529, answer.model, request_id=rid),
                headers,
                close,
            )
            return ops
        if not sse:
            # Gemini's streamGenerateContent without alt=sse answers one JSON array.
            body = _GEMINI.reply_array(answer) if wire is _GEMINI and rec.stream else wire.reply_json(answer)
            if kind == "ok":
                ops += _json_reply(200, body, headers, close)
            elif kind == "malformed":
                ops += _json_reply(200, body[: len(body) // 2], headers, close)
            else:  # truncate / stall: promise the whole body, deliver half
                ops.append(_head(200, _JSON, len(body), headers, close) + body[: len(body) // 2])
                ops.append(_Signal.CLOSE if kind == "truncate" else _Signal.HANG)
            return ops

        pre, content, tail = wire.reply_stream(answer, data)
        n = min(m.fault_after_chunks, len(content))
        events: list[bytes]
        end: _Op = _LAST_CHUNK
        if kind == "ok":
            events = pre + content + tail
        elif kind == "malformed":
            events = pre + content[:n] + [wire.malformed_event(answer)] + content[n:] + tail
        elif kind == "inband_error":
            events = [*pre, *content[:n], wire.inband_error()]
        else:  # truncate / reset / stall
            events = pre + content[:n]
            end = _LAST_CHUNK if kind == "truncate" else _Signal.RESET if kind == "reset" else _Signal.HANG
        head = _head(200, _SSE, None, headers, close)
        gap = m.stream_chunk_delay_ms / 1000.0
        if gap <= 0:
            ops.append(head + b"".join(_frame(e) for e in events) + (end if isinstance(end, bytes) else b""))
        else:
            # Preamble goes out with the headers; each later event is its own write after a pause.
            npre = len(pre)
            ops.append(head + b"".join(_frame(e) for e in events[:npre]))
            for event in events[npre:]:
                ops.append(gap)
                ops.append(_frame(event))
            if isinstance(end, bytes):
                ops.append(end)
        if not isinstance(end, bytes):
            ops.append(end)
        return ops

    def _answer(self, st: _ModelState, rec: MockRequest, data: dict[str, Any], wire: _Wire) -> _Answer:
        m = st.model
        model = rec.model or ""
        tools = m._tools
        reply = m.reply
        if callable(reply):
            text = reply(rec)
            if not isinstance(text, str):
                raise TypeError(f"MockModel.reply callable returned {type(text).__name__}, not str")
        elif reply is not None:
            text = reply
        elif tools:
            text = ""
        else:
            said = " ".join(_last_user_text(wire.name, data).split())
            text = f"Mock reply from {model}: {said[:160] or '(empty prompt)'}"
        if m.output_tokens is not None:
            visible = m.output_tokens
        else:
            visible = estimate_tokens(text) + sum(estimate_tokens(n + json.dumps(a)) for n, a in tools)
        finish = m.finish
        cap = _max_tokens(wire.name, data)
        if cap is not None and visible > cap and not tools:
            text = text[: cap * _CHARS_PER_TOKEN]
            visible = cap
            finish = "length"
        in_tokens = m.input_tokens if m.input_tokens is not None else max(1, estimate_tokens(rec.prompt))
        return _Answer(
            model=model,
            text=text,
            tools=tools,
            input_tokens=in_tokens,
            output_tokens=visible + m.reasoning_tokens,
            cached=min(m.cached_tokens, in_tokens),
            reasoning=m.reasoning_tokens,
            finish=finish,
            seq=self._seq,
            created=int(time.time()),
            chunk_chars=m.tokens_per_chunk * _CHARS_PER_TOKEN,
        )

    def _replay_ops(self, r: _Replay, close: bool) -> list[_Op]:
        chunked = len(r.chunks) > 1 or r.ctype.startswith(b"text/event-stream")
        if not chunked:
            body = b"".join(r.chunks)
            return [_head(r.status, r.ctype, len(body), r.headers, close) + body]
        ops: list[_Op] = [_head(r.status, r.ctype, None, r.headers, close)]
        for chunk in r.chunks:
            if chunk:
                # A pause (at least one loop turn) between writes so chunks tend to
                # arrive as separate reads, exercising the client's boundary handling.
                ops.append(r.delay)
                ops.append(_frame(chunk))
        ops.append(_LAST_CHUNK)
        return ops


def _bad_json_message(wire: _Wire) -> str:
    if wire is _OPENAI:
        return (
            "We could not parse the JSON body of your request. (HINT: This likely means you aren't using "
            "your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not "
            "valid JSON.)"
        )
    if wire is _GEMINI:
        return "Invalid JSON payload received. Unexpected token."
    return "There was an error parsing the body: invalid JSON"


def _guess_model(rec: MockRequest, path: str) -> None:
    """Best-effort model/provider for a replayed request (recorded, not routed)."""
    if path.startswith(_GEMINI_PREFIXES) and ":" in path:
        rec.provider = "gemini"
        name, _, action = path.split("/models/", 1)[1].rpartition(":")
        rec.model = unquote(name)
        rec.stream = action == "streamGenerateContent"
        return
    if path.endswith("/chat/completions"):
        rec.provider = "openai"
    elif path.endswith("/messages"):
        rec.provider = "anthropic"
    try:
        data = rec.json()
    except ValueError:
        return
    if isinstance(data, dict):
        model = data.get("model")
        rec.model = model if isinstance(model, str) else None
        rec.stream = data.get("stream") is True


# --------------------------------------------------------------------------- blocking entry points


def serve(
    host: str = "127.0.0.1",
    port: int = 8000,
    models: Mapping[str, MockModel] | None = None,
    *,
    default: MockModel | None = None,
    seed: int = 0,
    record_limit: int = 1000,
    on_ready: Callable[[MockLLMServer], None] | None = None,
) -> None:
    """Serve until SIGINT/SIGTERM (blocking): for the CLI and benchmark subprocesses."""

    async def main() -> None:
        async with MockLLMServer(
            models, host=host, port=port, default=default, seed=seed, record_limit=record_limit
        ) as server:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                    loop.add_signal_handler(sig, stop.set)
            if on_ready is not None:
                on_ready(server)
            await stop.wait()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())


def load_config(path: str | Path) -> dict[str, Any]:
    """Read a mock-server config (TOML or JSON) into ``serve()`` keyword arguments.

    Shape: ``seed``, ``record_limit``, ``default`` (a model table) and ``models``
    (name → model table); model tables take ``MockModel`` field names.
    """
    p = Path(path)
    raw = p.read_bytes()
    if p.suffix.lower() == ".json":
        data = json.loads(raw)
    else:
        import tomllib

        data = tomllib.loads(raw.decode())
    if not isinstance(data, dict):
        raise ValueError("config must be a table/object")
    unknown = sorted(set(data) - {"seed", "record_limit", "default", "models"})
    if unknown:
        raise ValueError(f"unknown config key(s): {', '.join(unknown)}")
    out: dict[str, Any] = {}
    if "seed" in data:
        out["seed"] = int(data["seed"])
    if "record_limit" in data:
        out["record_limit"] = int(data["record_limit"])
    if data.get("default") is not None:
        out["default"] = _model_from(data["default"], "default")
    models = data.get("models")
    if models is not None:
        if not isinstance(models, dict):
            raise ValueError("models: must be a table of model name → settings")
        out["models"] = {str(name): _model_from(spec, f"models.{name}") for name, spec in models.items()}
    return out


def _model_from(spec: Any, where: str) -> MockModel:
    if not isinstance(spec, dict):
        raise ValueError(f"{where}: must be a table of MockModel settings")
    try:
        return MockModel.from_dict(spec)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where}: {exc}") from None


def main_mock_server(argv: list[str] | None = None) -> int:
    """``tierwise mock-server``: run the mock server in the foreground."""
    parser = argparse.ArgumentParser(
        prog="tierwise mock-server",
        description="Run a local mock LLM API server (OpenAI, Anthropic and Gemini wire formats).",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on (0 picks a free one)")
    parser.add_argument("--config", help="TOML or JSON file with models/default/seed")
    parser.add_argument("--seed", type=int, default=None, help="seed for probabilistic faults")
    args = parser.parse_args(argv)
    kwargs: dict[str, Any] = {}
    if args.config:
        try:
            kwargs = load_config(args.config)
        except (OSError, ValueError) as exc:
            print(f"tierwise mock-server: bad config {args.config}: {exc}", file=sys.stderr)
            return 2
    if args.seed is not None:
        kwargs["seed"] = args.seed

    def ready(server: MockLLMServer) -> None:
        print(f"tierwise mock server listening on {server.base_url}", flush=True)

    try:
        serve(args.host, args.port, on_ready=ready, **kwargs)
    except OSError as exc:
        print(f"tierwise mock-server: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main_mock_server())
