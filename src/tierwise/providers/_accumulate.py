"""Folding a reply into a ``Response``: the one accumulation path of every adapter.

A streamed reply arrives as deltas and a non-streamed one as a whole message, but
both are folded by the same ``StreamAccumulator``, so finish reasons, tool-call
assembly and argument parsing are written once per adapter, not once per mode.
``token_count`` and ``cost_amount`` are where every number read from the wire for
usage and cost passes.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

from ..errors import ProtocolError, excerpt
from ..types import (
    FinishReason,
    ReasoningDelta,
    Response,
    StreamEvent,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    Usage,
)
from ._sse import SSEEvent

__all__ = ["StreamAccumulator", "StreamParser", "cost_amount", "make_tool_call", "token_count"]


class StreamParser(Protocol):
    """Turns one provider's SSE events into tierwise stream events."""

    def feed(self, event: SSEEvent) -> Iterable[StreamEvent]:
        """Events produced by one SSE event; raises ``ProviderError`` on in-band errors."""
        ...

    def finish(self) -> Response:
        """The accumulated response; ``ProtocolError`` if the stream ended early."""
        ...


class StreamAccumulator:
    """Accumulates deltas, or a whole reply's parts, into a ``Response``.

    Tool-call argument fragments are collected per index and parsed once in
    ``build``, never per fragment (fragments are not valid JSON on their own). A
    non-streamed reply hands each call over whole (``call``): its arguments keep the
    shape the wire gave them (a JSON string or an object), parsed by the same rules.
    ``secrets`` (the caller's key) are redacted from the excerpt of bad arguments.
    """

    __slots__ = (
        "finish_reason",
        "model",
        "provider",
        "raw_finish_reason",
        "reasoning_items",
        "reasoning_parts",
        "secrets",
        "signatures",
        "text_parts",
        "tools",
        "usage",
        "whole",
    )

    def __init__(self, provider: str, model: str, secrets: Sequence[str | None] = ()) -> None:
        self.provider = provider
        self.model = model
        self.secrets = secrets
        self.text_parts: list[str] = []
        self.reasoning_parts: list[str] = []
        # Provider-native reasoning records to send back unchanged (Response.reasoning_items).
        self.reasoning_items: list[dict[str, Any]] = []
        # tool index -> Gemini thoughtSignature of that call
        self.signatures: dict[int, str] = {}
        # index -> [id, name, [argument fragments]]
        self.tools: dict[int, list[Any]] = {}
        # index -> the complete arguments of a call handed over whole
        self.whole: dict[int, Any] = {}
        self.usage = Usage()
        self.finish_reason: FinishReason | None = None
        self.raw_finish_reason: str | None = None

    def text(self, fragment: str) -> TextDelta:
        self.text_parts.append(fragment)
        return TextDelta(fragment)

    def reasoning(self, fragment: str) -> ReasoningDelta:
        self.reasoning_parts.append(fragment)
        return ReasoningDelta(fragment)

    def tool(
        self,
        index: int,
        id: str | None = None,
        name: str | None = None,
        arguments: str = "",
        thought_signature: str | None = None,
    ) -> ToolCallDelta:
        """One fragment of call ``index``; a ``thought_signature`` (Gemini's) is kept for the
        built call as well as carried on the delta."""
        slot = self.tools.get(index)
        if slot is None:
            slot = self.tools[index] = [id, name, []]
        else:
            if id and not slot[0]:
                slot[0] = id
            if name and not slot[1]:
                slot[1] = name
        if arguments:
            slot[2].append(arguments)
        if thought_signature:
            self.signatures[index] = thought_signature
        return ToolCallDelta(index, id, name, arguments, thought_signature)

    def call(
        self, index: int, id: Any, name: Any, arguments: Any, thought_signature: str | None = None
    ) -> None:
        """A complete call from a non-streamed reply; ``arguments`` as the wire has them."""
        self.tools[index] = [id, name, []]
        self.whole[index] = arguments
        if thought_signature:
            self.signatures[index] = thought_signature

    def build(self, *, default_finish: FinishReason | None = None) -> Response:
        finish = self.finish_reason or default_finish
        if finish is None:
            raise ProtocolError(
                "stream ended before its final event (truncated stream)",
                provider=self.provider,
                model=self.model,
            )
        calls: list[ToolCall] = []
        whole = self.whole
        cut = finish == "length"
        signatures = self.signatures
        for index, slot in sorted(self.tools.items()):
            raw = whole[index] if index in whole else "".join(slot[2])
            call = make_tool_call(
                slot[0] or f"call_{index}",
                slot[1] or "",
                raw,
                provider=self.provider,
                model=self.model,
                cut=cut,
                secrets=self.secrets,
            )
            if signatures:
                call.thought_signature = signatures.get(index)
            calls.append(call)
        return Response(
            text="".join(self.text_parts),
            model=self.model,
            provider=self.provider,
            finish_reason=finish,
            usage=self.usage,
            tool_calls=calls,
            reasoning="".join(self.reasoning_parts),
            raw_finish_reason=self.raw_finish_reason,
            reasoning_items=self.reasoning_items,
        )


def make_tool_call(
    id: str,
    name: str,
    raw_arguments: str | Mapping[str, Any] | None,
    *,
    provider: str,
    model: str,
    cut: bool = False,
    secrets: Sequence[str | None] = (),
) -> ToolCall:
    """Build a ``ToolCall``, parsing a JSON argument string once.

    Providers send arguments either as a JSON string (OpenAI) or an object
    (Anthropic, Gemini). Invalid JSON from the provider is a ``ProtocolError``,
    not a crash in the caller's tool dispatch — unless the reply was ``cut`` at
    its token limit (finish reason ``length``): the model ran out of tokens while
    writing the call, the provider ended the reply normally, and the answer is
    kept with the call flagged ``incomplete`` (its raw fragments kept, no
    arguments) rather than failed as a whole. ``secrets`` (the caller's key) are
    redacted from the excerpt in the error: the arguments are wire text.
    """
    if raw_arguments is None or raw_arguments == "":
        return ToolCall(id=id, name=name, arguments={}, raw_arguments=raw_arguments or "")
    if isinstance(raw_arguments, Mapping):
        args = dict(raw_arguments)
        return ToolCall(
            id=id, name=name, arguments=args, raw_arguments=json.dumps(args, separators=(",", ":"))
        )
    if not isinstance(raw_arguments, str):
        raise ProtocolError(
            f"tool call {excerpt(repr(name), secrets, 80)} arguments are a "
            f"{type(raw_arguments).__name__}, not a JSON string or object",
            provider=provider,
            model=model,
        )
    try:
        parsed = json.loads(raw_arguments)
    except (ValueError, RecursionError):
        # ValueError also covers a 5,000-digit number (int's digit limit); RecursionError
        # arguments nested thousands deep.
        parsed = _INVALID
    if isinstance(parsed, dict):
        return ToolCall(id=id, name=name, arguments=parsed, raw_arguments=raw_arguments)
    if cut:
        # Cut mid-call: '{"q": "unfini' does not parse, '{"n": 12' neither, and a
        # prefix that happens to parse ("12" of "123") is no object: all incomplete.
        return ToolCall(id=id, name=name, arguments={}, raw_arguments=raw_arguments, incomplete=True)
    what = "has invalid JSON arguments" if parsed is _INVALID else "arguments are not a JSON object"
    raise ProtocolError(
        f"tool call {excerpt(repr(name), secrets, 80)} {what}: {excerpt(raw_arguments, secrets)}",
        provider=provider,
        model=model,
    )


# Marks tool arguments that are not JSON at all (``None`` is valid JSON: ``null``).
_INVALID: Any = object()


#: Token counts above this are nonsense from the wire (no reply is a trillion tokens).
_MAX_TOKENS = 10**12


def token_count(value: Any) -> int:
    """A token count from a reply as a non-negative int; anything else counts 0.

    Where every adapter's usage numbers pass: ``Infinity``, ``NaN``, ``1e400``, a
    400-digit integer, a negative count, a bool or a string would otherwise
    overflow ``int()``, corrupt the limiter's window or the bill. A dropped count
    is 0, and a reply whose counts are all dropped is billed at the executor's
    estimate (``Usage.estimated``), never at $0."""
    if type(value) is int:
        return value if 0 <= value <= _MAX_TOKENS else 0
    if type(value) is float and 0.0 <= value <= _MAX_TOKENS:
        return int(value)
    return 0


def cost_amount(value: Any) -> float | None:
    """A provider-reported cost in USD: a finite number >= 0, else ``None`` (unknown)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        amount = float(value)
    except OverflowError:
        return None
    return amount if 0.0 <= amount < math.inf else None
