"""One try on one deployment, as an async context manager.

The executor's pipeline (``Executor._tries``) takes a try's rate-limit permit and
budget reservation, hands the try to the caller, and the caller runs the provider
call inside ``async with attempt:``. Leaving the block books the try whatever
happened — succeeded, failed with a ``ProviderError`` (suppressed: the pipeline
decides between retry, fallback and raising), or interrupted (cancelled, or a
stream consumer that stopped reading: re-raised) — so the permit and the
reservation come back exactly once, the health tracker hears of it, and one
``Attempt`` and one ``AttemptEvent`` are emitted. Plain calls, streams and
embeddings all go through this one class.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

from ..errors import ProtocolError, ProviderError, RateLimitError
from ..observe.events import AttemptEvent
from ..types import Attempt, Embeddings, ReasoningDelta, Response, TextDelta, ToolCallDelta, Usage
from .tokens import DEFAULT_OUTPUT_TOKENS, estimate_tokens, heuristic_text_tokens

if TYPE_CHECKING:
    from ..state import Permit
    from ..strategies.base import CallLedger
    from ..types import AttemptOutcome, Request, StreamEvent
    from .budget import Reservation
    from .deployment import Deployment
    from .executor import Executor

__all__ = ["CallScope"]

CallKind = Literal["complete", "stream", "embed"]

# Tokens of framing per tool call in an estimated output (name, id, JSON braces).
_TOOL_CALL_TOKENS = 8
_DEFAULT_MAX_OUTPUT = 4096


class CallScope:
    """Where a call comes from, as the executor sees it: its ``path`` and routing
    ``label`` (for metrics and ``Response.route``), the request's ``metadata``
    (budget tags), an absolute ``deadline`` on the executor's clock, and the
    ``ledger`` that receives every attempt (a run context's)."""

    __slots__ = ("deadline", "label", "ledger", "metadata", "path")

    def __init__(
        self,
        path: str = "",
        label: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        deadline: float | None = None,
        ledger: CallLedger | None = None,
    ) -> None:
        self.path = path
        self.label = label
        self.metadata: Mapping[str, Any] = metadata if metadata is not None else {}
        self.deadline = deadline
        self.ledger = ledger

    def __repr__(self) -> str:
        return f"CallScope(path={self.path!r}, label={self.label!r}, deadline={self.deadline!r})"


class Call:
    """Per-request state threaded through the chain (kept off the hot objects).

    ``estimate`` (prompt + expected output) is what the rate limiter reserves and
    what must fit a context window; ``prompt`` is its prompt part alone, priced at
    the input rate when the budget reserves the worst case. ``errors`` gets every
    failed attempt's error, in order, for ``AllTargetsFailed``. ``deadline`` is
    absolute (clock seconds) or ``None``; ``ledger`` is the run context's, which
    gets every attempt too.
    """

    __slots__ = (
        "attempts",
        "deadline",
        "errors",
        "estimate",
        "kind",
        "label",
        "ledger",
        "metadata",
        "path",
        "prompt",
        "request",
        "result",
        "start",
        "tags",
        "texts",
    )

    def __init__(
        self,
        kind: CallKind,
        scope: CallScope,
        start: float,
        deadline: float | None,
        request: Request | None,
        prompt_tokens: int = 0,
    ) -> None:
        self.kind = kind
        self.path = scope.path
        self.label = scope.label
        metadata = self.metadata = scope.metadata
        self.tags = {k: v for k, v in metadata.items() if isinstance(v, str)} if metadata else {}
        self.start = start
        self.deadline = deadline
        self.ledger = scope.ledger
        self.request = request
        self.attempts: list[Attempt] = []
        self.errors: list[Exception] = []
        self.result: Response | Embeddings | None = None
        self.texts: list[str] = []
        if request is None:  # embeddings: the input is the whole estimate
            self.estimate = self.prompt = prompt_tokens
            return
        self.estimate = estimate = estimate_tokens(request)
        # estimate_tokens adds max_tokens, or DEFAULT_OUTPUT_TOKENS (+ thinking budget).
        self.prompt = prompt_part(request, estimate)

    def add(self, attempt: Attempt) -> None:
        self.attempts.append(attempt)
        if self.ledger is not None:
            self.ledger.add(attempt)

    def left(self, now: float) -> float | None:
        """Seconds before the deadline (``None``: unbounded; may be <= 0)."""
        return None if self.deadline is None else self.deadline - now

    def worst_cost(self, dep: Deployment) -> float:
        """What the budget reserves before a try: the prompt's upper bound at the
        input price plus the largest possible output at the output price."""
        request = self.request
        if request is None:  # embeddings: input tokens only
            spec = dep.spec
            return (
                self.prompt * spec.input / 1_000_000.0 if spec is not None and spec.input is not None else 0.0
            )
        return worst_request_cost(dep, request, self.prompt)


def prompt_part(request: Request, estimate: int | None = None) -> int:
    """The prompt's share of ``estimate_tokens`` (which adds the expected output)."""
    if estimate is None:
        estimate = estimate_tokens(request)
    out = request.max_tokens
    if out is None:
        out = DEFAULT_OUTPUT_TOKENS + (request.thinking_budget or 0)
    return max(0, estimate - max(0, out))


def worst_request_cost(
    dep: Deployment, request: Request, prompt: int | None = None, *, exact: bool = False
) -> float:
    """What the budget reserves for one call of ``request`` on ``dep``: the prompt's
    upper bound at the input price plus the largest possible output at the output
    price. Shared by real-time tries and provider batches (which scale it by the
    batch discount)."""
    if prompt is None:
        prompt = prompt_part(request)
    max_out = request.max_tokens or dep.max_output_tokens or _DEFAULT_MAX_OUTPUT
    # An ``exact`` prompt was counted by the provider: no upper bound to add.
    return dep.max_cost(prompt if exact else dep.input_bound.reserve_tokens(request, prompt), max_out)


class Seen:
    """What a try delivered to the consumer so far: enough to estimate the output
    tokens of a stream that stopped (or ended without a usage chunk)."""

    __slots__ = ("chars", "started", "tool_calls")

    def __init__(self) -> None:
        self.started = False
        self.chars: list[str] = []
        self.tool_calls = 0

    def add(self, event: StreamEvent) -> None:
        self.started = True
        if isinstance(event, TextDelta | ReasoningDelta):
            self.chars.append(event.text)
        elif isinstance(event, ToolCallDelta):
            if event.name:
                self.tool_calls += 1
                self.chars.append(event.name)
            self.chars.append(event.arguments)

    def output_tokens(self) -> int:
        return heuristic_text_tokens("".join(self.chars)) + _TOOL_CALL_TOKENS * self.tool_calls


@dataclass(slots=True, eq=False, repr=False)
class Try:
    """One try: holds its permit and reservation until the ``async with`` block ends.

    The body sets ``result`` (a ``Response`` or ``Embeddings``); after the block,
    ``error`` is the suppressed ``ProviderError`` (``None`` on success).
    """

    executor: Executor
    dep: Deployment
    call: Call
    number: int
    permit: Permit | None
    reservation: Reservation | None
    waited_ms: float
    seen: Seen = field(default_factory=Seen, init=False)
    result: Response | Embeddings | None = field(default=None, init=False)
    error: ProviderError | None = field(default=None, init=False)
    t0: float = field(default=0.0, init=False)
    _booked: bool = field(default=False, init=False)

    async def __aenter__(self) -> Try:
        self.t0 = self.executor.clock.now()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool:
        if exc is None:
            result = self.result
            if isinstance(result, Response):
                await self._succeeded(result)
            elif isinstance(result, Embeddings):
                await self._embedded(result)
            else:
                dep = self.dep
                await self._failed(
                    ProtocolError(
                        "stream ended without a final response", provider=dep.provider.name, model=dep.model
                    )
                )
            return False
        if isinstance(exc, ProviderError):
            await self._failed(exc)
            return True
        # Cancelled, or the consumer stopped reading: book what was received (the
        # provider bills it) and give everything else back. Shielded: a shared
        # state backend's write must finish although the task is being cancelled.
        import anyio  # lazily: keeps it out of cold start

        with anyio.CancelScope(shield=True):
            await self._abandoned()
        return False

    async def give_back(self) -> None:
        """A try that never ran its body: return the permit (unused) and the
        reservation (unspent)."""
        if self._booked:
            return
        self._booked = True
        import anyio  # lazily: keeps it out of cold start

        with anyio.CancelScope(shield=True):
            try:
                if self.permit is not None:
                    await self.permit.arelease(None)
            finally:
                if self.reservation is not None:
                    await self.reservation.arelease()

    # -- booking ----------------------------------------------------------------

    async def _succeeded(self, response: Response) -> None:
        """Release the permit with the real usage, settle the reservation at the
        real cost, then record. The permit and the reservation come back whatever
        else fails here: a slot that leaks is a deployment lost for good."""
        self._booked = True
        dep, call, seen = self.dep, self.call, self.seen
        cost: float | None = None
        usage = response.usage
        try:
            if _no_usage(usage):
                # No usage reported (a stream without its usage chunk): bill the
                # estimate the limiter reserved by, never $0.
                output = seen.output_tokens() if seen.started else _output_estimate(response)
                usage = response.usage = Usage(call.prompt, output, estimated=True)
            elif usage.input_tokens == 0 and usage.reported_cost_usd is None and call.prompt > 0:
                # Only the prompt count is missing: the prompt was still billed.
                usage.input_tokens = call.prompt
                usage.estimated = True
            elif usage.input_tokens > 0:
                dep.input_bound.observe(call.prompt, usage.input_tokens)
            try:
                cost = dep.cost(usage)
            except (ArithmeticError, ValueError, TypeError):
                # Nonsense counts from a provider that skipped normalization: an
                # unknown cost, booked at the reservation, never a crash here.
                cost = None
            if response.rate_limits is not None and dep.limiter is not None:
                dep.limiter.observe(response.rate_limits)
        finally:
            try:
                if self.permit is not None:
                    await self.permit.arelease(usage.input_tokens + usage.output_tokens)
            finally:
                if self.reservation is not None:
                    await self.reservation.asettle(cost)
        self.executor.health.record_success(dep.alias)
        response.deployment = dep.alias
        self._record("ok", cost, usage, None, None, response.ttft_ms)

    async def _embedded(self, result: Embeddings) -> None:
        """An embedding call: billed at the reported input tokens; unknown (``None``,
        never 0) when the provider reported no count. No health record: an alias
        used for embedding is often a chat alias too."""
        self._booked = True
        dep = self.dep
        used = result.usage.input_tokens
        cost = dep.cost(result.usage) if used or result.usage.reported_cost_usd is not None else None
        try:
            if self.permit is not None:
                await self.permit.arelease(used or None)
        finally:
            if self.reservation is not None:
                await self.reservation.asettle(cost)
        result.cost_usd = cost
        result.deployment = dep.alias
        self._record("ok", cost, Usage(used), None, None, None)

    async def _failed(self, error: ProviderError) -> None:
        """Failed: the permit comes back (the limiter penalized on a short
        ``retry_after``; a longer one cools the deployment in the health tracker
        instead) and the reservation is settled at $0, unless a stream already
        delivered content, which the provider bills."""
        self.error = error
        await self._stopped(error)

    async def _abandoned(self) -> None:
        """Interrupted. Once content arrived the provider has billed the prompt and
        what it sent: estimated, booked, recorded as ``"cancelled"``. Before the
        first content event nothing is known to be billed: the reservation is
        released and the attempt costs $0."""
        await self._stopped(None)

    async def _stopped(self, error: ProviderError | None) -> None:
        """Book a try that ended without an answer: failed (``error``) or interrupted."""
        self._booked = True
        dep, call = self.dep, self.call
        usage: Usage | None = None
        cost: float | None = 0.0
        try:
            usage, cost = self._streamed()
        finally:
            try:
                if self.permit is not None:
                    await self.permit.arelease(None if usage is None else usage.total_tokens)
                    if isinstance(error, RateLimitError) and error.retry_after and dep.limiter is not None:
                        dep.limiter.penalize(error.retry_after, cap=self.executor.retry.max_retry_after)
            finally:
                if self.reservation is not None:
                    if usage is None and error is None:
                        await self.reservation.arelease()
                    else:
                        await self.reservation.asettle(cost)
        if error is None:
            self._record("cancelled", cost, usage, "Cancelled", None, None)
            return
        if call.kind != "embed":
            self.executor.health.record_failure(dep.alias, error)
        call.errors.append(error)
        self._record("error", cost, usage, type(error).__name__, str(error), None)

    def _streamed(self) -> tuple[Usage | None, float | None]:
        """The estimated usage and cost of what a stream delivered before it stopped
        (``(None, 0.0)`` when nothing was delivered: nothing is known to be billed)."""
        if not self.seen.started:
            return None, 0.0
        usage = Usage(self.call.prompt, self.seen.output_tokens(), estimated=True)
        return usage, self.dep.cost(usage)

    def _record(
        self,
        outcome: AttemptOutcome,
        cost: float | None,
        usage: Usage | None,
        error_type: str | None,
        error: str | None,
        ttft_ms: float | None,
    ) -> None:
        dep, call = self.dep, self.call
        latency = (self.executor.clock.now() - self.t0) * 1000.0
        attempt = Attempt(
            dep.alias,
            dep.provider.name,
            outcome,
            latency,
            cost,
            error_type=error_type,
            error=error,
            usage=usage,
            path=call.path,
            retry=self.number - 1,
        )
        call.add(attempt)
        emit(self.executor, call, dep.model, attempt, ttft_ms, self.waited_ms)


def emit(
    executor: Executor,
    call: Call,
    wire_model: str,
    attempt: Attempt,
    ttft_ms: float | None = None,
    waited_ms: float = 0.0,
) -> None:
    """The one place an ``Attempt`` becomes an ``AttemptEvent`` for the observers."""
    observers = executor.observers
    if not observers:
        return
    usage = attempt.usage
    outcome = attempt.outcome
    observers.attempt(
        AttemptEvent(
            attempt.model,
            attempt.provider,
            call.path,
            call.label,
            outcome,
            # A cancellation is no error of the deployment's: typed only in the attempt.
            None if outcome in ("ok", "cancelled", "cached") else attempt.error_type,
            attempt.latency_ms,
            ttft_ms,
            usage.input_tokens if usage is not None else 0,
            usage.output_tokens if usage is not None else 0,
            attempt.cost_usd,
            attempt.retry > 0,
            usage is not None and (usage.estimated or outcome != "ok"),
            usage.cached_input_tokens if usage is not None else 0,
            usage.reasoning_tokens if usage is not None else 0,
            wire_model,
            waited_ms,
            attempt.error,
            call.kind,
            attempt,
        )
    )


def sum_costs(attempts: list[Attempt]) -> float | None:
    """Total cost of a call: every attempt, failed ones included. ``None`` when the
    answering attempt's price is unknown (a partial sum would understate the bill)."""
    total = 0.0
    for a in attempts:
        if a.cost_usd is None:
            if a.outcome == "ok":
                return None
        else:
            total += a.cost_usd
    return total


def _no_usage(usage: Usage) -> bool:
    """The provider reported nothing: no tokens and no cost of its own."""
    return usage.input_tokens == 0 and usage.output_tokens == 0 and usage.reported_cost_usd is None


def _output_estimate(response: Response) -> int:
    text = response.text + response.reasoning
    for tc in response.tool_calls:
        text += tc.name + tc.raw_arguments
    return heuristic_text_tokens(text) + _TOOL_CALL_TOKENS * len(response.tool_calls)
