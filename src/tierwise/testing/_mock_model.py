"""What the mock LLM server knows about requests and models.

``MockRequest`` (a received request), ``MockModel`` (how a model behaves, plain
config data), ``ModelStats``, ``_ModelState`` (a model's fault script, RNGs and
rate-limit window), token estimation, and ``load_config`` for TOML/JSON files.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qs

#: Named fault kinds; any HTTP error status "400".."599" is accepted as well.
FAULT_KINDS = frozenset(
    {"ok", "429", "500", "503", "529", "context", "hang", "stall", "reset", "truncate", "malformed"}
    | {"inband_error"}
)

_CHARS_PER_TOKEN = 4


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


def embedding_inputs(provider: str | None, body: Mapping[str, Any]) -> list[str] | None:
    """The texts of an embeddings request (OpenAI ``input``, Gemini ``requests``), or
    ``None`` when ``body`` is not one or holds something other than text."""
    if provider == "gemini":
        requests = body.get("requests")
        if not isinstance(requests, list):
            return None
        texts: list[str] = []
        for item in requests:
            content = item.get("content") if isinstance(item, dict) else None
            parts = content.get("parts") if isinstance(content, dict) else None
            if not isinstance(parts, list):
                return None
            texts.append(_text_of(parts))
        return texts
    value = body.get("input")
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    return None


def _prompt_text(provider: str | None, body: Mapping[str, Any]) -> str:
    parts: list[str] = []
    embedded = (
        embedding_inputs(provider, body)
        if provider != "responses" and ("input" in body or "requests" in body)
        else None
    )
    if embedded is not None:
        return "\n".join(t for t in embedded if t)
    if provider == "responses":
        if isinstance(body.get("instructions"), str):
            parts.append(body["instructions"])
        value = body.get("input")
        for item in [value] if isinstance(value, str) else value if isinstance(value, list) else ():
            if isinstance(item, str):
                parts.append(item)
            elif isinstance(item, dict):
                parts.append(_text_of(item.get("content", item.get("output"))))
    elif provider == "gemini":
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
    if provider == "responses":
        value = body.get("input")
        if isinstance(value, str):
            return value
        items: list[Any] = value if isinstance(value, list) else []
        for item in reversed(items):
            if isinstance(item, dict) and item.get("role") == "user":
                return _text_of(item.get("content"))
        return ""
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
    elif provider == "responses":
        value = body.get("max_output_tokens")
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
    #: Reasoning/thinking text the model sends besides its answer, in each format:
    #: OpenAI ``reasoning_content`` (DeepSeek), a Responses ``reasoning`` item (with
    #: ``encrypted_content``), an Anthropic ``thinking`` block with a ``signature``,
    #: Gemini ``thought`` parts and ``thoughtSignature`` on function calls.
    thinking: str | None = None
    #: Answer structured-output requests (``response_format``, Gemini's JSON mime type)
    #: with broken JSON instead of a value matching the schema: for testing verifiers.
    invalid_json: bool = False
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
    """Per-model counters: requests seen, how many were streams, served OK, faults by
    kind, and token-counting requests."""

    requests: int = 0
    streamed: int = 0
    ok: int = 0
    faults: dict[str, int] = field(default_factory=dict)
    #: Token-counting requests (count_tokens, countTokens, input_tokens); not in ``requests``.
    token_counts: int = 0


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


# --------------------------------------------------------------------------- config


def load_config(path: str | Path) -> dict[str, Any]:
    """Read a mock-server config (TOML or JSON) into ``serve()`` keyword arguments.

    Shape: ``seed``, ``record_limit``, ``embedding_dim``, ``default`` (a model table)
    and ``models`` (name → model table); model tables take ``MockModel`` field names.
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
    unknown = sorted(set(data) - {"seed", "record_limit", "embedding_dim", "strict", "default", "models"})
    if unknown:
        raise ValueError(f"unknown config key(s): {', '.join(unknown)}")
    out: dict[str, Any] = {}
    if "seed" in data:
        out["seed"] = int(data["seed"])
    if "record_limit" in data:
        out["record_limit"] = int(data["record_limit"])
    if "embedding_dim" in data:
        out["embedding_dim"] = int(data["embedding_dim"])
    if "strict" in data:
        if not isinstance(data["strict"], bool):
            raise ValueError("strict: must be true or false")
        out["strict"] = data["strict"]
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
