"""Normalized request/response types shared by every provider, strategy and the executor.

Representation: plain ``@dataclass(slots=True)`` classes, not pydantic models.

* Speed: one ``Response`` is built per call on the hot path. A slotted dataclass is
  constructed by a generated ``__init__`` with no validation pass; pydantic would
  validate every field of data we have just parsed ourselves from a provider reply
  (the adapters already raise ``ProtocolError`` on malformed input). Slots also keep
  each object small, which matters for caches and batch results.
* Clarity: the fields are the documentation; ``dataclasses.replace`` gives cheap
  copies; equality is structural.
* Not frozen: freezing costs an ``object.__setattr__`` per field at construction and
  the executor legitimately fills in ``cost_usd``, ``route`` and ``attempts`` after
  the provider returns.

Equality of ``Response`` deliberately ignores timing and bookkeeping fields
(latency, attempts, route, request id, rate-limit snapshot): two responses are
equal when they carry the same answer (text, usage, finish reason, tool calls),
which is exactly the guarantee that a streamed call and a non-streamed call of
the same reply must give.

Config, where validation is the point, uses pydantic instead (``tierwise.config``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

__all__ = [
    "Attempt",
    "Done",
    "Embeddings",
    "FinishReason",
    "Message",
    "RateLimitInfo",
    "ReasoningDelta",
    "Request",
    "Response",
    "Role",
    "RouteInfo",
    "StepInfo",
    "StepKind",
    "StepVerdict",
    "StreamEvent",
    "TextDelta",
    "Tool",
    "ToolCall",
    "ToolCallDelta",
    "Usage",
    "replay_events",
]

FinishReason: TypeAlias = Literal["stop", "length", "tool_calls", "content_filter", "error"]
Role: TypeAlias = Literal["system", "user", "assistant", "tool"]
AttemptOutcome: TypeAlias = Literal["ok", "error", "cached", "skipped", "rejected", "cancelled"]
#: What an inner call of a composite strategy was: a cascade rung, a model call a
#: verifier made, an ensemble member, a pipeline step, a classifier's own call, a
#: router's summary of its nested strategy, or any other call.
StepKind: TypeAlias = Literal["rung", "verifier_call", "member", "step", "classify", "route", "call"]
#: What was decided about a step's answer: a verifier accepted or rejected it, no
#: verdict was reached (a judge whose call failed), or the call itself failed.
StepVerdict: TypeAlias = Literal["accepted", "rejected", "undecided", "failed"]

_ROLES = frozenset(("system", "user", "assistant", "tool"))


@dataclass(slots=True)
class ToolCall:
    """A function call requested by the model.

    ``arguments`` is the parsed JSON object; ``raw_arguments`` keeps the exact string
    the provider sent (OpenAI sends a string, Anthropic and Gemini an object), so a
    caller can log or re-send it byte for byte.

    ``incomplete`` marks a call the model was still writing when the reply was cut
    (``finish_reason == "length"``): its ``raw_arguments`` are the fragments received
    and ``arguments`` is empty. A reply the provider ended normally at its token
    limit is an answer, not a protocol error, so the call is kept, flagged, rather
    than raised; a caller must not dispatch it.

    ``thought_signature`` is Gemini's opaque ``thoughtSignature`` issued with the
    call: Gemini 3 rejects a history whose function calls lack the signature it
    gave them, so the Gemini adapter sends it back unchanged with the call. Other
    providers leave it ``None``.
    """

    id: str
    name: str
    arguments: dict[str, Any] = field(default_factory=dict)
    # Excluded from equality: providers differ in whitespace and key order for
    # the same arguments, and a streamed call must equal a non-streamed one.
    raw_arguments: str = field(default="", compare=False)
    incomplete: bool = False
    thought_signature: str | None = None

    def __post_init__(self) -> None:
        if not self.raw_arguments and self.arguments:
            self.raw_arguments = json.dumps(self.arguments, separators=(",", ":"))


@dataclass(slots=True)
class Tool:
    """A function the model may call. ``parameters`` is a JSON Schema object."""

    name: str
    description: str = ""
    parameters: dict[str, Any] = field(default_factory=lambda: {"type": "object", "properties": {}})

    @classmethod
    def coerce(cls, value: Tool | Mapping[str, Any]) -> Tool:
        """Accept a ``Tool`` or the dict shapes users copy from provider docs.

        Both the OpenAI envelope ``{"type": "function", "function": {...}}`` and the
        flat ``{"name", "description", "parameters"}`` (Anthropic uses
        ``input_schema``) are understood, so existing tool definitions work unchanged.
        """
        if isinstance(value, Tool):
            return value
        if not isinstance(value, Mapping):
            raise TypeError(f"tool must be a Tool or a dict, got {type(value).__name__}")
        spec: Mapping[str, Any] = value
        if value.get("type") == "function" and isinstance(value.get("function"), Mapping):
            spec = value["function"]
        name = spec.get("name")
        if not isinstance(name, str) or not name:
            raise ValueError("tool definition needs a non-empty 'name'")
        params = spec.get("parameters", spec.get("input_schema"))
        return cls(
            name=name,
            description=str(spec.get("description", "") or ""),
            parameters=dict(params) if isinstance(params, Mapping) else {"type": "object", "properties": {}},
        )


@dataclass(slots=True)
class Message:
    """One chat turn.

    ``content`` is a string for plain text, or a list of content parts (dicts) when
    the caller needs provider features such as images or Anthropic
    ``cache_control`` markers; adapters pass parts through in their own format.
    Assistant turns that called tools carry ``tool_calls``; tool results carry
    ``tool_call_id`` (and ``name``, which Gemini needs to pair the result).

    ``reasoning_items`` are an assistant turn's provider-native reasoning records,
    exactly as the provider sent them (``Response.reasoning_items``): OpenAI
    Responses ``reasoning`` items with their ``encrypted_content``, Anthropic
    ``thinking``/``redacted_thinking`` blocks with their ``signature``. They are
    opaque: the adapter that understands an item's ``type`` sends it back
    unchanged (the APIs verify them, and reasoning models need them to continue a
    tool-calling turn); other adapters skip items that are not theirs, since one
    provider cannot verify another's signatures.
    """

    role: Role
    content: str | list[dict[str, Any]] | None = ""
    name: str | None = None
    tool_call_id: str | None = None
    tool_calls: list[ToolCall] = field(default_factory=list)
    reasoning_items: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.role not in _ROLES:
            raise ValueError(f"message role must be one of {sorted(_ROLES)}, got {self.role!r}")

    @property
    def text(self) -> str:
        """The textual content, joining text parts when content is a list."""
        content = self.content
        if content is None:
            return ""
        if isinstance(content, str):
            return content
        return "".join(str(part.get("text", "")) for part in content if part.get("type", "text") == "text")


_REQUEST_PARAMS = (
    "max_tokens",
    "temperature",
    "top_p",
    "stop",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "response_format",
    "reasoning_effort",
    "thinking_budget",
    "seed",
    "user",
    "extra_body",
    "metadata",
    "stream_usage",
)


@dataclass(slots=True)
class Request:
    """A provider-neutral chat request.

    ``response_format`` uses the OpenAI shape (``{"type": "json_object"}`` or
    ``{"type": "json_schema", "json_schema": {"name", "schema", "strict"}}``) because
    it is the most widely copied; the Anthropic and Gemini adapters translate it.
    ``extra_body`` is merged last into the provider's JSON body: the escape hatch for
    a provider feature tierwise does not model, without ``**kwargs`` soup.
    ``metadata`` is never sent to a provider; routing hints and budget tags
    (``tier``, ``team``, ``user``) live there.
    """

    messages: list[Message]
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: list[str] | None = None
    tools: list[Tool] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    response_format: dict[str, Any] | None = None
    reasoning_effort: str | None = None
    thinking_budget: int | None = None
    seed: int | None = None
    user: str | None = None
    extra_body: dict[str, Any] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    stream_usage: bool = True

    @classmethod
    def from_prompt(cls, prompt: str, *, system: str | None = None, **params: Any) -> Request:
        """Build a one-turn request; ``params`` are the other fields of ``Request``.

        Unknown parameters raise ``TypeError`` naming them (a typo such as
        ``max_token=`` must not be silently ignored).
        """
        unknown = sorted(set(params) - set(_REQUEST_PARAMS))
        if unknown:
            raise TypeError(
                f"unknown request parameter(s): {', '.join(unknown)}; "
                f"expected some of: {', '.join(_REQUEST_PARAMS)}"
            )
        messages: list[Message] = []
        if system is not None:
            messages.append(Message("system", system))
        messages.append(Message("user", prompt))
        tools = params.pop("tools", None)
        if tools is not None:
            params["tools"] = [Tool.coerce(t) for t in tools]
        stop = params.get("stop")
        if isinstance(stop, str):
            params["stop"] = [stop]
        return cls(messages=messages, **params)

    def __post_init__(self) -> None:
        if any(not isinstance(m, Message) for m in self.messages):
            self.messages = _coerce_messages(self.messages)
        if self.tools is not None and any(not isinstance(t, Tool) for t in self.tools):
            self.tools = [Tool.coerce(t) for t in self.tools]

    @property
    def system(self) -> str | None:
        """All system messages joined, for wire formats with a top-level system field."""
        parts = [m.text for m in self.messages if m.role == "system"]
        return "\n\n".join(parts) if parts else None

    @property
    def prompt_text(self) -> str:
        """The whole conversation as text: what classifiers and token estimates see."""
        return "\n".join(m.text for m in self.messages)


@dataclass(slots=True)
class Usage:
    """Token counts, normalized across providers.

    ``input_tokens`` is the whole prompt, cached tokens included;
    ``cached_input_tokens`` (cache reads) and ``cache_write_tokens`` are subsets of it.
    ``output_tokens`` includes ``reasoning_tokens``, because reasoning is billed as
    output. ``reported_cost_usd`` is set only when the provider itself states the
    cost (OpenRouter's ``usage.cost``, LiteLLM's ``x-litellm-response-cost``); it
    then wins over the catalog price.

    ``estimated`` is True when the provider sent no usage at all (a stream from a
    server that ignores ``stream_options.include_usage``, a reply cut off by the
    consumer) and the executor filled the counts in with the same estimator the
    rate limiter uses: the call is then billed at an estimate, never at $0.
    """

    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    reported_cost_usd: float | None = None
    estimated: bool = False

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def __add__(self, other: Usage) -> Usage:
        if not isinstance(other, Usage):
            return NotImplemented
        cost: float | None
        if self.reported_cost_usd is None and other.reported_cost_usd is None:
            cost = None
        else:
            cost = (self.reported_cost_usd or 0.0) + (other.reported_cost_usd or 0.0)
        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cached_input_tokens + other.cached_input_tokens,
            self.cache_write_tokens + other.cache_write_tokens,
            self.reasoning_tokens + other.reasoning_tokens,
            cost,
            self.estimated or other.estimated,
        )


@dataclass(slots=True)
class RateLimitInfo:
    """The provider's own view of our rate limits, parsed from response headers.

    ``*_reset_s`` are seconds from when the response was received. Any field the
    provider did not send is ``None``. The executor uses this to tighten its local
    limiter before the provider starts refusing.
    """

    requests_limit: int | None = None
    requests_remaining: int | None = None
    requests_reset_s: float | None = None
    tokens_limit: int | None = None
    tokens_remaining: int | None = None
    tokens_reset_s: float | None = None


@dataclass(slots=True)
class RouteInfo:
    """Which strategy path answered and why (``pipeline.steps[2].cascade[1]``)."""

    strategy_path: str = ""
    label: str | None = None
    reason: str = ""
    score: float | None = None


@dataclass(slots=True)
class Attempt:
    """One try at one model: the unit of the audit trail.

    ``cost_usd`` is ``None`` when the price is unknown; a failed attempt that still
    consumed tokens carries their cost too.
    """

    model: str
    provider: str
    outcome: AttemptOutcome
    latency_ms: float = 0.0
    cost_usd: float | None = 0.0
    error_type: str | None = None
    error: str | None = None
    usage: Usage | None = None
    path: str = ""
    retry: int = 0


@dataclass(slots=True)
class StepInfo:
    """One inner call of a composite strategy (a pipeline step, a cascade rung, an
    ensemble member, a verifier or judge call): where it ran and what it cost."""

    name: str
    path: str
    model: str
    cost_usd: float | None
    latency_ms: float
    usage: Usage = field(default_factory=Usage)
    accepted: bool | None = None
    #: For humans: the verifier's reason, an error. Code reads ``kind``/``verdict``.
    note: str = ""
    kind: StepKind = "call"
    verdict: StepVerdict | None = None


@dataclass(slots=True)
class Response:
    """One normalized answer, whatever the provider and whether streamed or not.

    ``reasoning`` is the readable reasoning text (DeepSeek ``reasoning_content``,
    Anthropic thinking, Gemini thought summaries, OpenAI reasoning summaries): never
    part of ``text``. ``reasoning_items`` are the provider-native records that must
    travel back with the next turn (see ``Message``); ``to_message()`` builds that
    assistant turn. ``response_id`` is the provider's id of the reply where it has
    one worth reusing (the Responses API's ``resp_...``, for ``previous_response_id``).
    """

    text: str
    model: str
    provider: str
    finish_reason: FinishReason = "stop"
    usage: Usage = field(default_factory=Usage)
    tool_calls: list[ToolCall] = field(default_factory=list)
    reasoning: str = ""
    raw_finish_reason: str | None = None
    reasoning_items: list[dict[str, Any]] = field(default_factory=list)
    cost_usd: float | None = field(default=None, compare=False)
    latency_ms: float = field(default=0.0, compare=False)
    ttft_ms: float | None = field(default=None, compare=False)
    route: RouteInfo = field(default_factory=RouteInfo, compare=False)
    attempts: list[Attempt] = field(default_factory=list, compare=False)
    cached: bool = field(default=False, compare=False)
    request_id: str | None = field(default=None, compare=False)
    rate_limits: RateLimitInfo | None = field(default=None, compare=False)
    #: The configured model alias that answered ("opus"); ``model`` is the
    #: provider's own name for it ("claude-opus-4-7").
    deployment: str = field(default="", compare=False)
    #: True when a fallback model answered instead of the primary.
    fallback: bool = field(default=False, compare=False)
    #: Composite strategies only: each inner call in order (per-step cost/latency).
    steps: list[StepInfo] = field(default_factory=list, compare=False)
    #: What the answer's tokens would have cost on the orchestrator's baseline model
    #: (``baseline``, default the priciest), and that minus ``cost_usd`` (which
    #: includes every try, classifier, verifier and judge call). ``None`` if unpriced.
    baseline: str = field(default="", compare=False)
    baseline_cost_usd: float | None = field(default=None, compare=False)
    savings_usd: float | None = field(default=None, compare=False)
    response_id: str | None = field(default=None, compare=False)

    def to_message(self) -> Message:
        """The assistant turn this answer adds to a conversation: its text, tool calls
        (with their thought signatures) and reasoning items, ready to send back."""
        return Message(
            "assistant",
            self.text,
            tool_calls=list(self.tool_calls),
            reasoning_items=list(self.reasoning_items),
        )


@dataclass(slots=True)
class Embeddings:
    """Embedding vectors for a batch of texts, normalized across providers.

    ``vectors[i]`` belongs to the ``i``-th input text, whatever order the provider
    sent them in. ``model`` is the provider's name for the model that answered;
    ``usage.input_tokens`` is the billed prompt size (0 when the provider did not
    report it; ``output_tokens`` is always 0). A provider leaves ``cost_usd`` at
    ``None``; ``Orchestrator.embed`` fills it from the catalog, and keeps it ``None``
    when the price or the token count is unknown — never a silent 0.
    """

    vectors: list[list[float]]
    model: str
    provider: str
    usage: Usage = field(default_factory=Usage)
    cost_usd: float | None = field(default=None, compare=False)
    latency_ms: float = field(default=0.0, compare=False)
    request_id: str | None = field(default=None, compare=False)
    #: The configured model alias that answered (set by ``Orchestrator.embed``).
    deployment: str = field(default="", compare=False)

    @property
    def dimensions(self) -> int:
        """Length of each vector (0 for an empty batch)."""
        return len(self.vectors[0]) if self.vectors else 0


@dataclass(slots=True)
class TextDelta:
    """A fragment of answer text, in order."""

    text: str


@dataclass(slots=True)
class ReasoningDelta:
    """A fragment of reasoning/thinking text (DeepSeek ``reasoning_content``, Anthropic thinking).

    ``item``, when set, is a provider-native reasoning record completed at this point
    of the stream, exactly as it will be in ``Response.reasoning_items`` (an Anthropic
    ``thinking`` block with its ``signature`` as the block ends, a ``redacted_thinking``
    block as it arrives); its ``text`` is then empty. A gateway relays it so that its
    caller can send the signed block back on the next turn without waiting for ``Done``.
    """

    text: str
    item: dict[str, Any] | None = None


@dataclass(slots=True)
class ToolCallDelta:
    """A fragment of a tool call. ``id`` and ``name`` arrive with the first fragment of
    each ``index``; ``arguments`` is a piece of the JSON string, parsed once at the end.
    ``thought_signature`` is Gemini's signature of the call (``ToolCall.thought_signature``),
    on the fragment that carried it: Gemini sends each call whole, signature included, so
    a relay can pass it on before the stream ends."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""
    thought_signature: str | None = None


@dataclass(slots=True)
class Done:
    """The last event of every stream: the accumulated ``Response``."""

    response: Response


StreamEvent: TypeAlias = TextDelta | ReasoningDelta | ToolCallDelta | Done


def replay_events(response: Response) -> list[StreamEvent]:
    """The content events a stream of ``response`` would have carried (no ``Done``):
    for an answer that arrived whole but must be streamed (a cache hit, a server
    that answered a stream request with JSON)."""
    events: list[StreamEvent] = []
    if response.reasoning:
        events.append(ReasoningDelta(response.reasoning))
    if response.text:
        events.append(TextDelta(response.text))
    for i, call in enumerate(response.tool_calls):
        events.append(ToolCallDelta(i, call.id, call.name, call.raw_arguments, call.thought_signature))
    return events


def _coerce_messages(messages: Sequence[Message | Mapping[str, Any]]) -> list[Message]:
    """Accept OpenAI-style ``{"role", "content"}`` dicts as well as ``Message`` objects."""
    out: list[Message] = []
    for m in messages:
        if isinstance(m, Message):
            out.append(m)
        elif isinstance(m, Mapping) and "role" in m:
            out.append(
                Message(
                    role=m["role"],
                    content=m.get("content", ""),
                    name=m.get("name"),
                    tool_call_id=m.get("tool_call_id"),
                )
            )
        else:
            raise TypeError(f"message must be a Message or a dict with 'role', got {m!r:.80}")
    return out
