"""Providers that answer in-process, without HTTP: for unit tests of strategies and the executor.

``FakeProvider`` plays a script (text, ready ``Response`` s, exceptions, or
``FakeStreamFailure`` for a stream that breaks after N chunks); ``FunctionProvider``
computes each reply with a function. Both are real ``Provider`` subclasses with the
same public surface (``name``, ``complete``, ``stream``, ``aclose``), so the executor
cannot tell them from an adapter, and both record every call in ``.calls``.

Replies carry realistic, non-zero usage (about four characters per token) so cost
arithmetic downstream is exercised. Latency goes through an injected
``tierwise._clock.Clock``: with ``tierwise.testing.FakeClock`` a "slow" provider
costs no wall time.

When a script runs out, the last item repeats (``FakeProvider("hi")`` answers "hi"
forever, and a provider scripted to end on an error stays down), unless
``on_exhausted="raise"``, which raises ``ScriptExhausted``: not a ``ProviderError``,
so an unexpected extra call fails the test instead of being retried or fallen back.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

from .._clock import SYSTEM_CLOCK, Clock
from ..errors import NotFoundError, ProviderError
from ..providers.base import Provider, StreamParser
from ..types import (
    Done,
    ReasoningDelta,
    Request,
    Response,
    StreamEvent,
    TextDelta,
    ToolCallDelta,
    Usage,
)

__all__ = [
    "FakeProvider",
    "FakeStreamFailure",
    "FunctionProvider",
    "ScriptExhausted",
    "estimate_tokens",
]


def estimate_tokens(text: str) -> int:
    """About four characters per token: deterministic and close enough for cost tests."""
    return (len(text) + 3) // 4


@dataclass(frozen=True, slots=True)
class FakeStreamFailure:
    """A scripted failure part-way through a stream.

    ``stream()`` yields the first ``after_chunks`` text chunks of ``text`` (default:
    the provider's default reply) and then raises ``error``; with ``after_chunks=0``
    it fails before any content, which is when the executor may still fall back.
    ``complete()`` simply raises ``error``.
    """

    error: BaseException
    after_chunks: int = 0
    text: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.error, BaseException):
            raise TypeError("FakeStreamFailure.error must be an exception instance")
        if self.after_chunks < 0:
            raise ValueError("FakeStreamFailure.after_chunks must be >= 0")


class ScriptExhausted(RuntimeError):
    """``FakeProvider(on_exhausted="raise")`` was called more times than scripted."""


ReplyItem: TypeAlias = str | Response | BaseException | FakeStreamFailure
Script: TypeAlias = ReplyItem | Sequence[ReplyItem]
Replies: TypeAlias = Script | Mapping[str, Script] | None
Reply: TypeAlias = str | Response
ReplyFn: TypeAlias = Callable[[str, Request], Reply | Awaitable[Reply]]

_ITEM_TYPES = (str, Response, BaseException, FakeStreamFailure)


def _as_script(value: Script, where: str) -> list[ReplyItem]:
    items: list[Any] = [value] if isinstance(value, _ITEM_TYPES) else list(value)
    if not items:
        raise ValueError(f"{where}: a reply script needs at least one item")
    for item in items:
        if not isinstance(item, _ITEM_TYPES):
            raise TypeError(
                f"{where}: script items must be str, Response, an exception instance or "
                f"FakeStreamFailure, got {type(item).__name__}"
            )
    return items


class _LocalProvider(Provider):
    """What the fakes share: no HTTP, call recording, usage estimates, chunked streaming."""

    def __init__(
        self,
        *,
        name: str,
        latency_s: float = 0.0,
        chunk_delay_s: float = 0.0,
        chunk_chars: int = 16,
        clock: Clock | None = None,
    ) -> None:
        super().__init__(api_key=None, base_url=f"fake://{name}")
        if latency_s < 0 or chunk_delay_s < 0:
            raise ValueError("latency_s and chunk_delay_s must be >= 0")
        if chunk_chars < 1:
            raise ValueError("chunk_chars must be >= 1")
        self.name = name
        self.latency_s = latency_s
        self.chunk_delay_s = chunk_delay_s
        self.chunk_chars = chunk_chars
        self.clock: Clock = clock if clock is not None else SYSTEM_CLOCK
        #: Every call in order, as ``(model, request)``; a stream is recorded when iterated.
        self.calls: list[tuple[str, Request]] = []
        self._count = 0

    # The HTTP hooks of Provider are never reached: complete/stream are overridden.
    def _url(self, model: str, stream: bool) -> str:
        raise NotImplementedError(f"{type(self).__name__} does not speak HTTP")

    def _build_body(self, model: str, request: Request, stream: bool) -> dict[str, Any]:
        raise NotImplementedError(f"{type(self).__name__} does not speak HTTP")

    def _parse_response(self, model: str, data: Any) -> Response:
        raise NotImplementedError(f"{type(self).__name__} does not speak HTTP")

    def _stream_parser(self, model: str) -> StreamParser:
        raise NotImplementedError(f"{type(self).__name__} does not speak HTTP")

    async def _produce(self, model: str, request: Request) -> ReplyItem:
        raise NotImplementedError

    # -- helpers ---------------------------------------------------------------

    def default_text(self, model: str, request: Request) -> str:
        """Deterministic echo of the last user message, used when no reply is scripted."""
        last = next((m.text for m in reversed(request.messages) if m.role == "user"), "")
        said = " ".join(last.split())[:160]
        return f"Fake reply from {model}: {said or '(empty prompt)'}"

    def _response(self, reply: Reply, model: str, request: Request) -> Response:
        self._count += 1
        if isinstance(reply, Response):
            resp = copy.deepcopy(reply)  # the executor fills cost/route/attempts in place
            resp.provider = resp.provider or self.name
            resp.model = resp.model or model
        else:
            resp = Response(
                text=reply,
                model=model,
                provider=self.name,
                finish_reason="stop",
                usage=Usage(
                    input_tokens=max(1, estimate_tokens(request.prompt_text)),
                    output_tokens=estimate_tokens(reply),
                ),
            )
        if resp.request_id is None:
            resp.request_id = f"{self.name}-{self._count}"
        return resp

    def _error(self, exc: BaseException, model: str) -> BaseException:
        # Raise a copy: re-raising one instance would chain tracebacks across calls.
        try:
            err = copy.copy(exc)
        except Exception:
            err = exc
        if isinstance(err, ProviderError):
            err.provider = err.provider or self.name
            err.model = err.model or model
        return err

    def _chunks(self, text: str) -> list[str]:
        n = self.chunk_chars
        return [text[i : i + n] for i in range(0, len(text), n)]

    # -- Provider surface ------------------------------------------------------------

    async def complete(self, model: str, request: Request) -> Response:
        self.calls.append((model, request))
        start = self.clock.now()
        item = await self._produce(model, request)
        if self.latency_s:
            await self.clock.sleep(self.latency_s)
        if isinstance(item, FakeStreamFailure):
            raise self._error(item.error, model)
        if isinstance(item, BaseException):
            raise self._error(item, model)
        resp = self._response(item, model, request)
        resp.latency_ms = (self.clock.now() - start) * 1000.0
        return resp

    async def stream(self, model: str, request: Request) -> AsyncIterator[StreamEvent]:
        self.calls.append((model, request))
        start = self.clock.now()
        item = await self._produce(model, request)
        if self.latency_s:
            await self.clock.sleep(self.latency_s)
        if isinstance(item, BaseException):
            raise self._error(item, model)
        if isinstance(item, FakeStreamFailure):
            text = item.text if item.text is not None else self.default_text(model, request)
            for i, piece in enumerate(self._chunks(text)[: item.after_chunks]):
                if i and self.chunk_delay_s:
                    await self.clock.sleep(self.chunk_delay_s)
                yield TextDelta(piece)
            raise self._error(item.error, model)
        resp = self._response(item, model, request)
        ttft: float | None = None
        events: list[StreamEvent] = [ReasoningDelta(p) for p in self._chunks(resp.reasoning)]
        events += [TextDelta(p) for p in self._chunks(resp.text)]
        events += [
            ToolCallDelta(i, call.id, call.name, call.raw_arguments) for i, call in enumerate(resp.tool_calls)
        ]
        for i, event in enumerate(events):
            if i and self.chunk_delay_s:
                await self.clock.sleep(self.chunk_delay_s)
            if ttft is None:
                ttft = (self.clock.now() - start) * 1000.0
            yield event
        resp.latency_ms = (self.clock.now() - start) * 1000.0
        resp.ttft_ms = ttft
        yield Done(resp)


class FakeProvider(_LocalProvider):
    """A provider that plays a script of replies.

    ``replies`` is one item, a list of items (one per call, in order), or a dict of
    model name → item or list (``"*"`` is the fallback key; a model with no entry
    gets ``NotFoundError``, like an unknown model on a real API). Items are ``str``
    (a text reply), ``Response`` (returned as a copy, usage as given), an exception
    instance (raised; ``ProviderError`` s get this provider's name and the model
    filled in), or ``FakeStreamFailure``. ``None`` answers every call with a
    deterministic echo. ``latency_s`` is slept on ``clock`` before each reply and
    ``chunk_delay_s`` between stream chunks.
    """

    def __init__(
        self,
        replies: Replies = None,
        *,
        name: str = "fake",
        on_exhausted: Literal["repeat", "raise"] = "repeat",
        latency_s: float = 0.0,
        chunk_delay_s: float = 0.0,
        chunk_chars: int = 16,
        clock: Clock | None = None,
    ) -> None:
        super().__init__(
            name=name, latency_s=latency_s, chunk_delay_s=chunk_delay_s, chunk_chars=chunk_chars, clock=clock
        )
        if on_exhausted not in ("repeat", "raise"):
            raise ValueError("on_exhausted must be 'repeat' or 'raise'")
        self.on_exhausted = on_exhausted
        self._scripts: dict[str, list[ReplyItem]] | None
        if replies is None:
            self._scripts = None
        elif isinstance(replies, Mapping):
            self._scripts = {str(k): _as_script(v, f"replies[{k!r}]") for k, v in replies.items()}
        else:
            self._scripts = {"*": _as_script(replies, "replies")}
        self._positions: dict[str, int] = {}

    async def _produce(self, model: str, request: Request) -> ReplyItem:
        scripts = self._scripts
        if scripts is None:
            return self.default_text(model, request)
        key = model if model in scripts else "*"
        script = scripts.get(key)
        if script is None:
            return NotFoundError(
                f"model {model!r} is not scripted in this FakeProvider",
                provider=self.name,
                model=model,
                status_code=404,
            )
        pos = self._positions.get(key, 0)
        self._positions[key] = pos + 1
        if pos < len(script):
            return script[pos]
        if self.on_exhausted == "raise":
            raise ScriptExhausted(
                f"{self.name}: reply script for {key!r} has {len(script)} item(s) but call {pos + 1} was made"
            )
        return script[-1]

    def remaining(self, model: str = "*") -> int:
        """Scripted items not yet used for ``model`` (the ``"*"`` script by default)."""
        if self._scripts is None:
            return 0
        key = model if model in self._scripts else "*"
        return max(0, len(self._scripts.get(key, ())) - self._positions.get(key, 0))


class FunctionProvider(_LocalProvider):
    """A provider whose reply is computed: ``fn(model, request)`` returns (or, when
    async, resolves to) a ``str`` or ``Response``; exceptions it raises propagate, so
    it can simulate failures conditionally (e.g. by prompt or call count)."""

    def __init__(
        self,
        fn: ReplyFn,
        *,
        name: str = "function",
        latency_s: float = 0.0,
        chunk_delay_s: float = 0.0,
        chunk_chars: int = 16,
        clock: Clock | None = None,
    ) -> None:
        if not callable(fn):
            raise TypeError("FunctionProvider needs a callable fn(model, request)")
        super().__init__(
            name=name, latency_s=latency_s, chunk_delay_s=chunk_delay_s, chunk_chars=chunk_chars, clock=clock
        )
        self.fn = fn

    async def _produce(self, model: str, request: Request) -> ReplyItem:
        result = self.fn(model, request)
        if inspect.isawaitable(result):
            result = await result
        if not isinstance(result, str | Response):
            raise TypeError(f"FunctionProvider fn must return str or Response, got {type(result).__name__}")
        return result
