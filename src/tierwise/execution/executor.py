"""The executor: HOW a model is called, for every strategy.

One path for every call: cache → rate limit → budget → timeout/retry → fallback
chain → provider. Strategies only name a target; everything that keeps a
deployment healthy and a bill honest happens here, once, so a cascade step, an
ensemble member and a plain call all get the same guarantees. Streamed and
non-streamed calls share the same chain loop (``_run``); they differ only in how
one try talks to the provider.

Fallback rules (DESIGN.md):

* A chain is the primary, then its configured fallbacks followed transitively
  (``opus → sonnet``, ``sonnet → gpt55`` gives ``opus, sonnet, gpt55``), then the
  default chain. Each deployment appears once.
* A deployment that is cooling (circuit open, or told by a long ``Retry-After``
  to stay away) moves to the end of the chain: it is tried only when everything
  else has failed.
* Retryable errors are retried on the same deployment (bounded by attempts and the
  request deadline, honouring ``retry_after``), then fall through to the next.
* ``ContextWindowExceeded`` skips every deployment whose window is not larger than
  the one that refused; deployments whose window is known to be too small for the
  estimated prompt are skipped without a call.
* A ``BadRequestError`` stops the chain only when it is about the request (a
  malformed message list, an invalid tool schema); one about the deployment (an
  unknown model name at a gateway, a parameter this model does not support, no
  access to this model) falls back. ``BadRequestRule`` (``execution/fallback.py``)
  draws the line and makes it configurable. ``NotFoundError`` (404) always falls
  back: it says this deployment's model is unknown to its key.
* A budget downgrade replaces the deployment it hit by the cheaper model, which
  then counts as the primary: ``Response.fallback`` and the fallback metrics are
  about provider failures, not spending policy.
* A stream falls back only before its first content event; after that, an error
  is the caller's (the text already delivered cannot be taken back).

Time: the request deadline (``[retry] deadline_s`` from the first call, or the
run context's deadline if earlier) bounds everything: the wait for a rate-limit
slot, each call in flight, and the backoff between tries. A deployment's
``max_queue_wait_s`` bounds the slot wait alone: past it the request moves to the
next deployment instead of queueing (routing around a busy deployment). The
budget reservation is taken only once a slot is held, so a queued request holds
no money.

Accounting: every try becomes one ``Attempt``, appended to the call's list and to
the run context's ``CallLedger`` as it happens — including a stream the consumer
abandoned (``"cancelled"``, billed for what was received). A reply without usage
is billed at an estimate (``Usage.estimated``), never at $0.
"""

from __future__ import annotations

import logging
import random
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, TypeVar

import anyio

from .._clock import SYSTEM_CLOCK, Clock
from ..catalog import compute_cost
from ..errors import (
    AllTargetsFailed,
    ConfigError,
    ContextWindowExceeded,
    ProtocolError,
    ProviderError,
    ProviderTimeout,
    RateLimitError,
)
from ..types import (
    Attempt,
    AttemptOutcome,
    Done,
    ReasoningDelta,
    Request,
    Response,
    RouteInfo,
    StreamEvent,
    TextDelta,
    ToolCallDelta,
    Usage,
    replay_events,
)
from .budget import BudgetDowngrade, BudgetLedger, Reservation
from .cache import ResponseCache, SingleFlight, cacheable, request_key
from .fallback import BadRequestRule
from .health import HealthTracker
from .limits import Permit, QueueWaitTimeout, RateLimiter
from .retry import RetryPolicy
from .tokens import DEFAULT_OUTPUT_TOKENS, InputBound, estimate_tokens, heuristic_text_tokens

if TYPE_CHECKING:
    from ..catalog import ModelSpec
    from ..observe.metrics import MetricsCollector
    from ..providers.base import Provider
    from ..strategies.base import CallLedger

__all__ = ["Deployment", "Executor"]

_R = TypeVar("_R")

_log = logging.getLogger("tierwise.executor")
_DEFAULT_MAX_OUTPUT = 4096
# Tokens of framing per tool call in an estimated output (name, id, JSON braces).
_TOOL_CALL_TOKENS = 8


@dataclass(slots=True, eq=False)
class Deployment:
    """One configured model: an alias bound to a provider, a wire model name, its
    prices and window (``spec``), its own limiter and timeouts, and its fallbacks.

    ``max_queue_wait_s``: the longest a request waits for a slot of this
    deployment's rate limiter before it falls back to the next deployment
    (``None``: wait as long as the request deadline allows). ``input_bound``
    turns the heuristic prompt estimate into the upper bound the budget reserves
    (see ``tokens.InputBound``); it learns from this deployment's real usage.
    """

    alias: str
    provider: Provider
    model: str
    spec: ModelSpec | None = None
    limiter: RateLimiter | None = None
    fallbacks: tuple[str, ...] = ()
    timeout_s: float | None = None
    first_token_timeout_s: float | None = None
    idle_timeout_s: float | None = None
    max_output_tokens: int | None = None
    max_queue_wait_s: float | None = None
    input_bound: InputBound = field(default_factory=InputBound, repr=False)
    _warned: bool = field(default=False, repr=False)

    @property
    def context_window(self) -> int | None:
        return self.spec.context_window if self.spec is not None else None

    def cost(self, usage: Usage) -> float | None:
        """Dollar cost of ``usage``; ``None`` (with one warning) when the price is unknown."""
        if usage.reported_cost_usd is not None:
            return usage.reported_cost_usd
        if self.spec is not None:
            cost = compute_cost(self.spec, usage)
            if cost is not None:
                return cost
        if not self._warned:
            self._warned = True
            _log.warning(
                "no price known for model %r (deployment %r): cost_usd will be None, not 0; "
                "add prices to its [models.%s] config",
                self.model,
                self.alias,
                self.alias,
            )
        return None

    def max_cost(self, input_tokens: int, output_tokens: int) -> float:
        """Worst-case cost used to reserve budget before the call (0 when unknown)."""
        spec = self.spec
        if spec is None or spec.input is None or spec.output is None:
            return 0.0
        return (input_tokens * spec.input + output_tokens * spec.output) / 1_000_000.0


class _Call:
    """Per-request state threaded through the chain (kept off the hot objects).

    ``estimate`` (prompt + expected output) is what the rate limiter reserves and
    what must fit a context window; ``prompt`` is its prompt part alone, priced at
    the input rate when the budget reserves the worst case (the output part is
    priced separately at the output rate, so it must not be counted twice).
    ``errors`` gets every failed attempt's error, in order, for ``AllTargetsFailed``.
    ``deadline`` is absolute (clock seconds) or ``None``; ``ledger`` is the run
    context's, which gets every attempt too.
    """

    __slots__ = (
        "attempts",
        "deadline",
        "errors",
        "estimate",
        "label",
        "ledger",
        "metadata",
        "path",
        "prompt",
        "start",
        "tags",
    )

    def __init__(
        self,
        path: str,
        label: str | None,
        metadata: Mapping[str, Any],
        start: float,
        request: Request,
        deadline: float | None,
        ledger: CallLedger | None,
    ) -> None:
        self.path = path
        self.label = label
        self.metadata = metadata
        self.tags = {k: v for k, v in metadata.items() if isinstance(v, str)} if metadata else {}
        self.start = start
        self.deadline = deadline
        self.ledger = ledger
        self.attempts: list[Attempt] = []
        self.errors: list[Exception] = []
        self.estimate = estimate = estimate_tokens(request)
        # estimate_tokens adds max_tokens, or DEFAULT_OUTPUT_TOKENS (+ thinking budget).
        out = request.max_tokens
        if out is None:
            out = DEFAULT_OUTPUT_TOKENS + (request.thinking_budget or 0)
        self.prompt = max(0, estimate - max(0, out))

    def add(self, attempt: Attempt) -> None:
        self.attempts.append(attempt)
        if self.ledger is not None:
            self.ledger.add(attempt)

    def left(self, now: float) -> float | None:
        """Seconds before the deadline (``None``: unbounded; may be <= 0)."""
        return None if self.deadline is None else self.deadline - now

    def skip(self, dep: Deployment, window: int) -> None:
        """Record a deployment passed over because the prompt cannot fit its window."""
        self.add(
            Attempt(
                dep.alias,
                dep.provider.name,
                "skipped",
                error_type="ContextWindowExceeded",
                error=f"prompt ~{self.estimate} tokens exceeds window {window}",
                path=self.path,
            )
        )


class _Seen:
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


class Executor:
    """Calls deployments by alias with every guarantee applied."""

    def __init__(
        self,
        deployments: Mapping[str, Deployment],
        *,
        retry: RetryPolicy | None = None,
        health: HealthTracker | None = None,
        budget: BudgetLedger | None = None,
        cache: ResponseCache | None = None,
        cache_force: bool = False,
        metrics: MetricsCollector | None = None,
        default_fallbacks: Sequence[str] = (),
        bad_request: BadRequestRule | None = None,
        clock: Clock = SYSTEM_CLOCK,
        seed: int | None = None,
    ) -> None:
        self.deployments = dict(deployments)
        self.retry = retry or RetryPolicy()
        self.clock = clock
        self.health = health or HealthTracker(clock=clock)
        self.budget = budget
        self.cache = cache
        self.cache_force = cache_force
        self.metrics = metrics
        self.default_fallbacks = tuple(default_fallbacks)
        self.bad_request = bad_request or BadRequestRule()
        self.rng = random.Random(seed)
        self._flight = SingleFlight()
        for name in self.default_fallbacks:
            if name not in self.deployments:
                raise ConfigError(f"unknown model alias {name!r}", field="fallbacks")
        for dep in self.deployments.values():
            for i, name in enumerate(dep.fallbacks):
                if name not in self.deployments:
                    raise ConfigError(
                        f"unknown model alias {name!r}", field=f"models.{dep.alias}.fallbacks[{i}]"
                    )
        self._chains = {alias: self._build_chain(alias) for alias in self.deployments}

    # ------------------------------------------------------------------ chains

    def _build_chain(self, alias: str) -> tuple[Deployment, ...]:
        seen: dict[str, None] = {}
        queue = [alias]
        while queue:
            name = queue.pop(0)
            if name in seen:
                continue
            seen[name] = None
            queue.extend(self.deployments[name].fallbacks)
        for name in self.default_fallbacks:
            seen.setdefault(name, None)
        return tuple(self.deployments[n] for n in seen)

    def chain(self, alias: str) -> tuple[Deployment, ...]:
        """The fallback chain for ``alias``, in order (health not applied)."""
        try:
            return self._chains[alias]
        except KeyError:
            raise ConfigError(
                f"unknown model {alias!r}; configured: {', '.join(sorted(self.deployments)) or 'none'}"
            ) from None

    def _ordered(self, alias: str) -> list[Deployment]:
        chain = self.chain(alias)
        health = self.health
        # ``ready`` claims nothing: a half-open deployment's single trial is claimed
        # (``available``) only when a call is actually sent to it.
        ready = [d for d in chain if health.ready(d.alias)]
        if len(ready) == len(chain):
            return ready
        return ready + [d for d in chain if d not in ready]

    def close(self) -> None:
        """Refuse new slots: requests queued on a rate limiter fail at once
        (``LimiterClosed``) instead of waiting out a window while the process drains."""
        for dep in self.deployments.values():
            if dep.limiter is not None:
                dep.limiter.close()

    def _call(
        self,
        path: str,
        label: str | None,
        metadata: Mapping[str, Any] | None,
        request: Request,
        deadline: float | None,
        ledger: CallLedger | None,
    ) -> _Call:
        start = self.clock.now()
        limit = self.retry.deadline
        if limit is not None:
            deadline = start + limit if deadline is None else min(deadline, start + limit)
        return _Call(path, label, metadata or {}, start, request, deadline, ledger)

    # ------------------------------------------------------------------ complete

    async def complete(
        self,
        alias: str,
        request: Request,
        *,
        path: str = "",
        label: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        deadline: float | None = None,
        ledger: CallLedger | None = None,
    ) -> Response:
        """Call ``alias`` (with its fallback chain) and return the answer.

        ``deadline`` (absolute, on the executor's clock) tightens the retry
        policy's own; ``ledger`` receives every attempt as it is made. Raises
        ``BudgetExceeded``, a request-level ``BadRequestError``, or
        ``AllTargetsFailed`` holding every attempt's error.
        """
        cache = self.cache
        if cache is not None and cacheable(request, self.cache_force):
            key = request_key(alias, request)
            hit = await cache.get(key)
            if hit is not None:
                return self._cached(hit, alias, path, ledger)
            return await self._coalesced(key, alias, request, path, label, metadata, deadline, ledger)
        return await self._complete(alias, request, path, label, metadata, deadline, ledger)

    async def _coalesced(
        self,
        key: str,
        alias: str,
        request: Request,
        path: str,
        label: str | None,
        metadata: Mapping[str, Any] | None,
        deadline: float | None,
        ledger: CallLedger | None,
    ) -> Response:
        """Join the call in flight for ``key``, or lead one (and cache its answer).

        Followers of a coalesced call share the leader's single provider call: they
        get their own copy, accounted like a cache hit ($0), so the one real cost is
        counted once."""
        assert self.cache is not None
        cache = self.cache
        led = False

        async def lead() -> Response:
            nonlocal led
            led = True
            response = await self._complete(alias, request, path, label, metadata, deadline, ledger)
            await cache.set(key, response)
            return response

        response = await self._flight.do(key, lead)
        return response if led else self._cached(response, alias, path, ledger)

    async def _complete(
        self,
        alias: str,
        request: Request,
        path: str,
        label: str | None,
        metadata: Mapping[str, Any] | None,
        deadline: float | None,
        ledger: CallLedger | None,
    ) -> Response:
        call = self._call(path, label, metadata, request, deadline, ledger)
        events = self._run(alias, request, call, False)
        try:
            event = await events.__anext__()
        finally:
            await events.aclose()
        assert isinstance(event, Done)
        return event.response

    def _cached(self, hit: Response, alias: str, path: str, ledger: CallLedger | None) -> Response:
        attempt = Attempt(hit.deployment or alias, hit.provider, "cached", 0.0, 0.0, path=path)
        response = replace(
            hit,
            cached=True,
            cost_usd=0.0,
            latency_ms=0.0,
            fallback=False,
            attempts=[attempt],
            route=RouteInfo(path, hit.route.label, "cache hit"),
        )
        if ledger is not None:
            ledger.add(attempt)
        if self.metrics is not None:
            self.metrics.record_attempt(
                model=response.deployment or alias,
                provider=response.provider,
                path=path,
                label=hit.route.label,
                outcome="cached",
                error_type=None,
                latency_ms=0.0,
                cost_usd=0.0,
            )
        return response

    # ------------------------------------------------------------------ stream

    async def stream(
        self,
        alias: str,
        request: Request,
        *,
        path: str = "",
        label: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        deadline: float | None = None,
        ledger: CallLedger | None = None,
    ) -> AsyncIterator[StreamEvent]:
        """Stream ``alias``'s answer, ending with ``Done(response)``.

        Falls back (and retries) only before the first content event. Timeouts:
        ``first_token_timeout_s`` until the first event, ``idle_timeout_s`` between
        events (a stalled stream is a ``ProviderTimeout``), and ``timeout_s`` (and
        the request deadline) for the whole stream. Chain, budget (downgrades
        included), window and cache rules are the same as ``complete``'s: a cache
        hit replays the cached answer as events, and identical concurrent streams
        share one provider call (the others replay its answer when it is done).
        """
        cache = self.cache
        if cache is None or not cacheable(request, self.cache_force):
            call = self._call(path, label, metadata, request, deadline, ledger)
            # aclosing: a consumer that stops early closes the chain loop now, so the
            # abandoned try is booked and its slot and connection come back at once.
            async with aclosing(self._run(alias, request, call, True)) as events:
                async for event in events:
                    yield event
            return
        key = request_key(alias, request)
        hit = await cache.get(key)
        if hit is not None:
            answer = self._cached(hit, alias, path, ledger)
            for event in replay_events(answer):
                yield event
            yield Done(answer)
            return
        flight = self._flight.begin(key)
        if flight is None:
            # Another call is producing this answer: wait for it (taking over with a
            # plain call if it is abandoned) and replay it.
            answer = await self._coalesced(key, alias, request, path, label, metadata, deadline, ledger)
            for event in replay_events(answer):
                yield event
            yield Done(answer)
            return
        call = self._call(path, label, metadata, request, deadline, ledger)
        result: Response | None = None
        error: BaseException | None = None
        try:
            async with aclosing(self._run(alias, request, call, True)) as events:
                async for event in events:
                    if isinstance(event, Done):
                        result = event.response
                        await cache.set(key, result)
                    yield event
        except Exception as exc:
            error = exc
            raise
        finally:
            # Unfinished (cancelled, abandoned by the consumer): followers take over.
            self._flight.end(key, flight, result, error)

    # ------------------------------------------------------------------ the chain

    async def _run(
        self, alias: str, request: Request, call: _Call, streaming: bool
    ) -> AsyncGenerator[StreamEvent, None]:
        """The one chain loop: every deployment in order, every try on each, for
        streamed (content events, then ``Done``) and plain calls (``Done`` only)."""
        ordered = self._ordered(alias)
        clock = self.clock
        retry = self.retry
        # The requested alias, not ordered[0]: when the primary is cooling and moved
        # to the end, whatever answers instead is still a fallback.
        primary = alias
        min_window = 0
        downgraded = False
        i = 0
        while i < len(ordered):
            dep = ordered[i]
            i += 1
            window = dep.context_window
            if window is not None and (window <= min_window or call.estimate > window):
                call.skip(dep, window)
                continue
            left = call.left(clock.now())
            if left is not None and left <= 0:
                break
            # Claim a half-open deployment's single trial now that it is called.
            self.health.available(dep.alias)
            attempt = 0
            while True:
                attempt += 1
                try:
                    permit, reservation = await self._admit(dep, request, call)
                except QueueWaitTimeout as exc:
                    self._busy(dep, call, exc)
                    break
                except BudgetDowngrade as exc:
                    target = exc.downgrade_to
                    if downgraded or target is None or target not in self.deployments:
                        raise
                    downgraded = True
                    if dep.alias == primary:
                        primary = target
                    _insert_next(ordered, i, self.deployments[target])
                    break
                t0 = clock.now()
                seen = _Seen()
                error: ProviderError | None = None
                final: Response | None = None
                try:
                    if streaming:
                        async with aclosing(self._stream_try(dep, request, call, t0, seen)) as tries:
                            async for event in tries:
                                if isinstance(event, Done):
                                    final = event.response
                                else:
                                    yield event
                    else:
                        final = await self._complete_try(dep, request, call)
                except ProviderError as exc:
                    error = exc
                except BaseException:
                    # Cancelled, or the consumer stopped reading: book what was
                    # received (the provider bills it) and give everything else back.
                    self._abandoned(dep, call, permit, reservation, t0, attempt, seen)
                    raise
                if error is None and final is None:
                    error = ProtocolError(
                        "stream ended without a final response", provider=dep.provider.name, model=dep.model
                    )
                if error is None:
                    assert final is not None
                    self._succeeded(dep, final, call, permit, reservation, t0, attempt, seen)
                    final.fallback = dep.alias != primary
                    final.attempts = call.attempts
                    final.route = RouteInfo(call.path, call.label, final.route.reason or f"model {dep.alias}")
                    final.cost_usd = _sum_costs(call.attempts)
                    yield Done(final)
                    return
                self._failed(dep, error, call, permit, reservation, t0, attempt, seen)
                if seen.started or self.bad_request.stops_chain(error):
                    # Text already delivered cannot be taken back, and a bad request
                    # is bad everywhere: the error is the caller's.
                    raise error
                if isinstance(error, ContextWindowExceeded):
                    min_window = max(min_window, window or 0)
                    break
                now = clock.now()
                elapsed = now - call.start
                if not retry.should_retry(error, attempt, elapsed):
                    break
                delay = retry.delay(attempt, error, self.rng, elapsed=elapsed)
                left = call.left(now)
                if left is not None and delay >= left:
                    break
                await clock.sleep(delay)
        if call.deadline is not None and clock.now() >= call.deadline:
            call.errors.append(
                ProviderTimeout(
                    f"request deadline of {retry.deadline}s passed"
                    if retry.deadline is not None
                    else "request deadline passed",
                    provider="",
                    model=alias,
                    retryable=False,
                )
            )
        raise AllTargetsFailed(
            f"all {len(ordered)} target(s) failed for {alias!r}: "
            + "; ".join(f"{type(e).__name__}: {e}" for e in call.errors[-3:]),
            call.errors or [ConfigError(f"no deployment could take the request for {alias!r}")],
            call.attempts,
        )

    async def _admit(
        self, dep: Deployment, request: Request, call: _Call
    ) -> tuple[Permit | None, Reservation | None]:
        """A rate-limit slot (waiting at most ``max_queue_wait_s`` and never past the
        deadline), then the budget reservation, taken only once the slot is held."""
        permit: Permit | None = None
        limiter = dep.limiter
        if limiter is not None:
            timeout = dep.max_queue_wait_s
            left = call.left(self.clock.now())
            if left is not None:
                timeout = left if timeout is None else min(timeout, left)
            permit = await limiter.acquire(call.estimate, timeout=timeout)
        budget = self.budget
        if budget is None:
            return permit, None
        max_out = request.max_tokens or dep.max_output_tokens or _DEFAULT_MAX_OUTPUT
        try:
            prompt = dep.input_bound.reserve_tokens(request, call.prompt)
            reservation = budget.reserve(
                model=dep.alias, tags=call.tags, amount_usd=dep.max_cost(prompt, max_out)
            )
        except BaseException:
            if permit is not None:
                permit.release(None)
            raise
        return permit, reservation

    async def _complete_try(self, dep: Deployment, request: Request, call: _Call) -> Response:
        """One plain call, bounded by ``timeout_s`` and the request deadline."""
        limit = dep.timeout_s
        left = call.left(self.clock.now())
        by_deadline = False
        if left is not None and (limit is None or left < limit):
            limit = max(0.0, left)
            by_deadline = True
        if limit is None:
            return await dep.provider.complete(dep.model, request)
        try:
            with anyio.fail_after(limit):
                return await dep.provider.complete(dep.model, request)
        except TimeoutError:
            what = "request deadline reached" if by_deadline else f"no answer within {dep.timeout_s}s"
            raise ProviderTimeout(
                what, provider=dep.provider.name, model=dep.model, retryable=not by_deadline
            ) from None

    async def _stream_try(
        self, dep: Deployment, request: Request, call: _Call, t0: float, seen: _Seen
    ) -> AsyncGenerator[StreamEvent, None]:
        """One streamed call: its events (``seen`` notes each), ending with ``Done``.

        ``first_token_timeout_s`` until the first event, ``idle_timeout_s`` between
        events, and ``timeout_s`` and the deadline for the whole stream."""
        clock = self.clock
        end = t0 + dep.timeout_s if dep.timeout_s is not None else None
        if call.deadline is not None and (end is None or call.deadline < end):
            end = call.deadline
        events = dep.provider.stream(dep.model, request).__aiter__()
        try:
            while True:
                limit = dep.idle_timeout_s if seen.started else dep.first_token_timeout_s
                if end is not None:
                    remaining = max(0.0, end - clock.now())
                    limit = remaining if limit is None else min(limit, remaining)
                try:
                    if limit is not None:
                        with anyio.fail_after(limit):
                            event = await events.__anext__()
                    else:
                        event = await events.__anext__()
                except StopAsyncIteration:
                    return
                except TimeoutError:
                    phase = "between chunks" if seen.started else "before the first token"
                    raise ProviderTimeout(
                        f"stream stalled {phase}", provider=dep.provider.name, model=dep.model
                    ) from None
                if isinstance(event, Done):
                    yield event
                    return
                seen.add(event)
                yield event
        finally:
            with anyio.CancelScope(shield=True):
                await _aclose(events)

    # ------------------------------------------------------------------ bookkeeping

    def _succeeded(
        self,
        dep: Deployment,
        response: Response,
        call: _Call,
        permit: Permit | None,
        reservation: Reservation | None,
        t0: float,
        attempt: int,
        seen: _Seen,
    ) -> None:
        """Book a successful try: release the permit with the real usage, settle the
        reservation at the real cost, and record the attempt (health, metrics).

        The permit and the reservation are given back whatever else fails here: a
        slot or a reservation that leaks is a deployment lost for good."""
        cost: float | None = None
        usage = response.usage
        try:
            if _no_usage(usage):
                # The provider sent no usage (a stream without its usage chunk): bill
                # the estimate the limiter reserved by, never $0.
                output = seen.output_tokens() if seen.started else _output_estimate(response)
                usage = response.usage = Usage(call.prompt, output, estimated=True)
            elif usage.input_tokens == 0 and usage.reported_cost_usd is None and call.prompt > 0:
                # Only the prompt count is missing (dropped as malformed, or never
                # sent): the prompt was still billed.
                usage.input_tokens = call.prompt
                usage.estimated = True
            elif usage.input_tokens > 0:
                dep.input_bound.observe(call.prompt, usage.input_tokens)
            try:
                cost = dep.cost(usage)
            except (ArithmeticError, ValueError, TypeError):
                # Nonsense counts from a provider that skipped normalization (the
                # built-in adapters clamp them): an unknown cost, booked at the
                # reservation, never a crash that skips the settlement.
                cost = None
            if response.rate_limits is not None and dep.limiter is not None:
                dep.limiter.observe(response.rate_limits)
        finally:
            if permit is not None:
                permit.release(usage.input_tokens + usage.output_tokens)
            if reservation is not None:
                reservation.settle(cost)
        self.health.record_success(dep.alias)
        latency = (self.clock.now() - t0) * 1000.0
        response.deployment = dep.alias
        call.add(
            Attempt(
                dep.alias,
                dep.provider.name,
                "ok",
                latency,
                cost,
                usage=usage,
                path=call.path,
                retry=attempt - 1,
            )
        )
        if self.metrics is not None:
            self.metrics.record_attempt(
                model=dep.alias,
                provider=dep.provider.name,
                path=call.path,
                label=call.label,
                outcome="ok",
                error_type=None,
                latency_ms=latency,
                ttft_ms=response.ttft_ms,
                input_tokens=usage.input_tokens,
                output_tokens=usage.output_tokens,
                cost_usd=cost,
                retry=attempt > 1,
                estimated=usage.estimated,
            )

    def _failed(
        self,
        dep: Deployment,
        error: ProviderError,
        call: _Call,
        permit: Permit | None,
        reservation: Reservation | None,
        t0: float,
        attempt: int,
        seen: _Seen,
    ) -> None:
        """Book a failed try: give back its permit (penalizing the limiter on a
        ``retry_after``) and settle its reservation, then record the failure. A
        stream that failed after delivering content is billed for what it sent."""
        usage: Usage | None = None
        cost: float | None = 0.0
        try:
            if seen.started:
                usage = Usage(call.prompt, seen.output_tokens(), estimated=True)
                cost = dep.cost(usage)
        finally:
            _settle_failed(dep, error, permit, reservation, self.retry.max_retry_after, usage, cost)
        self.health.record_failure(dep.alias, error)
        call.errors.append(error)
        latency = (self.clock.now() - t0) * 1000.0
        name = type(error).__name__
        self._record(dep, call, "error", latency, cost, usage, attempt, name, str(error))

    def _abandoned(
        self,
        dep: Deployment,
        call: _Call,
        permit: Permit | None,
        reservation: Reservation | None,
        t0: float,
        attempt: int,
        seen: _Seen,
    ) -> None:
        """A try interrupted by cancellation or by a consumer that stopped reading.

        Once content arrived the provider has billed the prompt and what it sent:
        that is estimated, booked to the budget and recorded as a ``"cancelled"``
        attempt. Before the first content event nothing is known to be billed, so
        the reservation is released and the attempt costs $0."""
        usage: Usage | None = None
        cost: float | None = 0.0
        try:
            if seen.started:
                usage = Usage(call.prompt, seen.output_tokens(), estimated=True)
                cost = dep.cost(usage)
        finally:
            if permit is not None:
                permit.release(None if usage is None else usage.total_tokens)
            if reservation is not None:
                if usage is None:
                    reservation.release()
                else:
                    reservation.settle(cost)
        latency = (self.clock.now() - t0) * 1000.0
        self._record(dep, call, "cancelled", latency, cost, usage, attempt, "Cancelled", None)

    def _busy(self, dep: Deployment, call: _Call, error: QueueWaitTimeout) -> None:
        """No rate-limit slot within ``max_queue_wait_s`` (or before the deadline):
        the deployment is passed over, like one whose window is too small."""
        call.errors.append(error)
        self._record(dep, call, "skipped", 0.0, 0.0, None, 1, "QueueWaitTimeout", str(error))

    def _record(
        self,
        dep: Deployment,
        call: _Call,
        outcome: AttemptOutcome,
        latency: float,
        cost: float | None,
        usage: Usage | None,
        attempt: int,
        error_type: str,
        error: str | None,
    ) -> None:
        """One not-ok try into the call's attempts (and the run's ledger) and the metrics."""
        call.add(
            Attempt(
                dep.alias,
                dep.provider.name,
                outcome,
                latency,
                cost,
                error_type=error_type,
                error=error,
                usage=usage,
                path=call.path,
                retry=attempt - 1,
            )
        )
        if self.metrics is not None:
            self.metrics.record_attempt(
                model=dep.alias,
                provider=dep.provider.name,
                path=call.path,
                label=call.label,
                outcome=outcome,
                # A cancellation is no error of the deployment's: typed only in the attempt.
                error_type=None if outcome == "cancelled" else error_type,
                latency_ms=latency,
                input_tokens=usage.input_tokens if usage is not None else 0,
                output_tokens=usage.output_tokens if usage is not None else 0,
                cost_usd=cost,
                retry=attempt > 1,
                estimated=usage is not None,
            )


def _no_usage(usage: Usage) -> bool:
    """The provider reported nothing: no tokens and no cost of its own."""
    return usage.input_tokens == 0 and usage.output_tokens == 0 and usage.reported_cost_usd is None


def _output_estimate(response: Response) -> int:
    text = response.text + response.reasoning
    for tc in response.tool_calls:
        text += tc.name + tc.raw_arguments
    return heuristic_text_tokens(text) + _TOOL_CALL_TOKENS * len(response.tool_calls)


def _insert_next(ordered: list[Deployment], i: int, target: Deployment) -> None:
    """Put ``target`` at position ``i`` (tried next), removing any later copy so each
    deployment is still tried once."""
    later = ordered[i:]
    del ordered[i:]
    ordered.append(target)
    ordered.extend(d for d in later if d is not target)


def _settle_failed(
    dep: Deployment,
    error: ProviderError,
    permit: Permit | None,
    reservation: Reservation | None,
    max_retry_after: float,
    usage: Usage | None = None,
    cost: float | None = 0.0,
) -> None:
    """A try that failed: release its permit (penalizing the limiter on a
    ``retry_after``, at most ``max_retry_after`` seconds: a longer one cools the
    deployment in the health tracker instead, which the chain routes around) and
    settle its reservation (at $0 unless it consumed tokens)."""
    try:
        if permit is not None:
            permit.release(None if usage is None else usage.total_tokens)
            retry_after = error.retry_after
            if isinstance(error, RateLimitError) and retry_after and dep.limiter is not None:
                dep.limiter.penalize(retry_after, cap=max_retry_after)
    finally:
        if reservation is not None:
            reservation.settle(cost)


def _give_back(permit: Permit | None, reservation: Reservation | None) -> None:
    """Return an interrupted try's permit (unused) and budget reservation (unspent)."""
    try:
        if permit is not None:
            permit.release(None)
    finally:
        if reservation is not None:
            reservation.release()


async def within_timeout(dep: Deployment, what: str, fn: Callable[..., Awaitable[_R]], *args: Any) -> _R:
    """``await fn(*args)`` bounded by ``dep.timeout_s``; running out is a ``ProviderTimeout``
    (retryable like any provider failure), not a bare ``TimeoutError``."""
    if dep.timeout_s is None:
        return await fn(*args)
    try:
        with anyio.fail_after(dep.timeout_s):
            return await fn(*args)
    except TimeoutError:
        raise ProviderTimeout(
            f"{what} within {dep.timeout_s}s", provider=dep.provider.name, model=dep.model
        ) from None


async def _aclose(events: AsyncIterator[StreamEvent]) -> None:
    aclose = getattr(events, "aclose", None)
    if aclose is not None:
        await aclose()


def _sum_costs(attempts: Sequence[Attempt]) -> float | None:
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
