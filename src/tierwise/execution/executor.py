"""The executor: HOW a model is called, for every strategy.

One path for every call: cache → budget → rate limit → timeout/retry → fallback
chain → provider. Strategies only name a target; everything that keeps a
deployment healthy and a bill honest happens here, once, so a cascade step, an
ensemble member and a plain call all get the same guarantees.

Fallback rules (DESIGN.md):

* A chain is the primary, then its configured fallbacks followed transitively
  (``opus → sonnet``, ``sonnet → gpt55`` gives ``opus, sonnet, gpt55``), then the
  default chain. Each deployment appears once.
* A deployment that is cooling (circuit open) moves to the end of the chain: it is
  tried only when everything else has failed.
* Retryable errors are retried on the same deployment (bounded by attempts and the
  request deadline, honouring ``retry_after``), then fall through to the next.
* ``ContextWindowExceeded`` skips every deployment whose window is not larger than
  the one that refused; deployments whose window is known to be too small for the
  estimated prompt are skipped without a call.
* A plain ``BadRequestError`` stops the chain: the request itself is wrong, and
  sending it to every model would only multiply the failure. ``NotFoundError``
  (404) does not: it says this deployment's model is unknown to its key, like a
  401 says its key is bad, and the next deployment is another model.
* A budget downgrade replaces the deployment it hit by the cheaper model, which
  then counts as the primary: ``Response.fallback`` and the fallback metrics are
  about provider failures, not spending policy.
* A stream falls back only before its first content event; after that, an error
  is the caller's (the text already delivered cannot be taken back).
"""

from __future__ import annotations

import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, TypeVar

import anyio

from .._clock import SYSTEM_CLOCK, Clock
from ..catalog import compute_cost
from ..errors import (
    AllTargetsFailed,
    BadRequestError,
    ConfigError,
    ContextWindowExceeded,
    NotFoundError,
    ProtocolError,
    ProviderError,
    ProviderTimeout,
    RateLimitError,
)
from ..types import Attempt, Done, Request, Response, RouteInfo, StreamEvent, Usage
from .budget import BudgetDowngrade, BudgetLedger, Reservation
from .cache import ResponseCache, SingleFlight, cacheable, request_key
from .health import HealthTracker
from .limits import Permit, RateLimiter
from .retry import RetryPolicy
from .tokens import DEFAULT_OUTPUT_TOKENS, estimate_tokens

if TYPE_CHECKING:
    from ..catalog import ModelSpec
    from ..observe.metrics import MetricsCollector
    from ..providers.base import Provider

__all__ = ["Deployment", "Executor"]

_R = TypeVar("_R")

_log = logging.getLogger("tierwise.executor")
_DEFAULT_MAX_OUTPUT = 4096


@dataclass(slots=True, eq=False)
class Deployment:
    """One configured model: an alias bound to a provider, a wire model name, its
    prices and window (``spec``), its own limiter and timeouts, and its fallbacks."""

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
    """

    __slots__ = ("attempts", "errors", "estimate", "label", "metadata", "path", "prompt", "start", "tags")

    def __init__(
        self, path: str, label: str | None, metadata: Mapping[str, Any], start: float, request: Request
    ) -> None:
        self.path = path
        self.label = label
        self.metadata = metadata
        self.tags = {k: v for k, v in metadata.items() if isinstance(v, str)} if metadata else {}
        self.start = start
        self.attempts: list[Attempt] = []
        self.errors: list[Exception] = []
        self.estimate = estimate = estimate_tokens(request)
        # estimate_tokens adds max_tokens, or DEFAULT_OUTPUT_TOKENS (+ thinking budget).
        out = request.max_tokens
        if out is None:
            out = DEFAULT_OUTPUT_TOKENS + (request.thinking_budget or 0)
        self.prompt = max(0, estimate - max(0, out))

    def skip(self, dep: Deployment, window: int) -> None:
        """Record a deployment passed over because the prompt cannot fit its window."""
        self.attempts.append(
            Attempt(
                dep.alias,
                dep.provider.name,
                "skipped",
                error_type="ContextWindowExceeded",
                error=f"prompt ~{self.estimate} tokens exceeds window {window}",
                path=self.path,
            )
        )


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

    # ------------------------------------------------------------------ complete

    async def complete(
        self,
        alias: str,
        request: Request,
        *,
        path: str = "",
        label: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> Response:
        """Call ``alias`` (with its fallback chain) and return the answer.

        Raises ``BudgetExceeded``, a plain ``BadRequestError``, or
        ``AllTargetsFailed`` holding every attempt's error.
        """
        cache = self.cache
        if cache is not None and cacheable(request, self.cache_force):
            key = request_key(alias, request)
            hit = await cache.get(key)
            if hit is not None:
                return self._cached(hit, alias, path)
            led = False

            async def lead() -> Response:
                nonlocal led
                led = True
                return await self._complete_and_store(key, alias, request, path, label, metadata)

            response = await self._flight.do(key, lead)
            # Followers of a coalesced call share the leader's single provider call:
            # they get their own copy, accounted like a cache hit ($0), so the one
            # real cost is counted once.
            return response if led else self._cached(response, alias, path)
        return await self._complete(alias, request, path, label, metadata)

    async def _complete_and_store(
        self,
        key: str,
        alias: str,
        request: Request,
        path: str,
        label: str | None,
        metadata: Mapping[str, Any] | None,
    ) -> Response:
        response = await self._complete(alias, request, path, label, metadata)
        assert self.cache is not None
        await self.cache.set(key, response)
        return response

    def _cached(self, hit: Response, alias: str, path: str) -> Response:
        response = replace(
            hit,
            cached=True,
            cost_usd=0.0,
            latency_ms=0.0,
            fallback=False,
            attempts=[Attempt(hit.deployment or alias, hit.provider, "cached", 0.0, 0.0, path=path)],
            route=RouteInfo(path, hit.route.label, "cache hit"),
        )
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

    async def _complete(
        self,
        alias: str,
        request: Request,
        path: str,
        label: str | None,
        metadata: Mapping[str, Any] | None,
    ) -> Response:
        ordered = self._ordered(alias)
        call = _Call(path, label, metadata or {}, self.clock.now(), request)
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
            # Claim a half-open deployment's single trial now that it is called.
            self.health.available(dep.alias)
            try:
                response = await self._try(dep, request, call)
            except BudgetDowngrade as exc:
                target = exc.downgrade_to
                if downgraded or target is None or target not in self.deployments:
                    raise
                downgraded = True
                if dep.alias == primary:
                    primary = target
                _insert_next(ordered, i, self.deployments[target])
                continue
            except ContextWindowExceeded:
                min_window = max(min_window, window or 0)
                continue
            except ProviderError as exc:
                if _stops_chain(exc):
                    raise
                continue
            response.fallback = dep.alias != primary
            response.attempts = call.attempts
            response.route = RouteInfo(path, label, response.route.reason or f"model {dep.alias}")
            response.cost_usd = _sum_costs(call.attempts)
            return response
        raise AllTargetsFailed(
            f"all {len(ordered)} target(s) failed for {alias!r}: "
            + "; ".join(f"{type(e).__name__}: {e}" for e in call.errors[-3:]),
            call.errors or [ConfigError(f"no deployment could take the request for {alias!r}")],
            call.attempts,
        )

    async def _try(self, dep: Deployment, request: Request, call: _Call) -> Response:
        """All tries on one deployment: returns the answer or raises its last error."""
        retry = self.retry
        clock = self.clock
        limiter = dep.limiter
        budget = self.budget
        max_out = request.max_tokens or dep.max_output_tokens or _DEFAULT_MAX_OUTPUT
        attempt = 0
        while True:
            attempt += 1
            reservation = (
                budget.reserve(model=dep.alias, tags=call.tags, amount_usd=dep.max_cost(call.prompt, max_out))
                if budget is not None
                else None
            )
            permit = await _acquire(limiter, call.estimate, reservation)
            t0 = clock.now()
            try:
                response = await within_timeout(dep, "no answer", dep.provider.complete, dep.model, request)
            except ProviderError as exc:
                error: ProviderError = exc
            except BaseException:
                # Cancellation or a bug: give back everything this try held.
                _give_back(permit, reservation)
                raise
            else:
                self._succeeded(dep, response, call, permit, reservation, t0, attempt)
                return response
            # A failed try: release what it held, record it, then retry or give up.
            self._release_failed(dep, error, call, permit, reservation, t0, attempt)
            elapsed = clock.now() - call.start
            if not retry.should_retry(error, attempt, elapsed):
                raise error
            delay = retry.delay(attempt, error, self.rng)
            if retry.deadline is not None and elapsed + delay > retry.deadline:
                raise error
            await clock.sleep(delay)

    def _succeeded(
        self,
        dep: Deployment,
        response: Response,
        call: _Call,
        permit: Permit | None,
        reservation: Reservation | None,
        t0: float,
        attempt: int,
    ) -> None:
        """Book a successful try: release the permit with the real usage, settle the
        reservation at the real cost, and record the attempt (health, metrics)."""
        usage = response.usage
        if permit is not None:
            permit.release(usage.input_tokens + usage.output_tokens)
            if response.rate_limits is not None:
                dep.limiter.observe(response.rate_limits)  # type: ignore[union-attr]
        cost = dep.cost(usage)
        if reservation is not None:
            reservation.settle(cost)
        self.health.record_success(dep.alias)
        latency = (self.clock.now() - t0) * 1000.0
        response.deployment = dep.alias
        call.attempts.append(
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
            )

    def _release_failed(
        self,
        dep: Deployment,
        error: ProviderError,
        call: _Call,
        permit: Permit | None,
        reservation: Reservation | None,
        t0: float,
        attempt: int,
    ) -> None:
        """Book a failed try (``_settle_failed``) and record the failure."""
        _settle_failed(dep, error, permit, reservation)
        self._failed(dep, error, call, (self.clock.now() - t0) * 1000.0, attempt)

    def _failed(
        self, dep: Deployment, error: ProviderError, call: _Call, latency: float, attempt: int
    ) -> None:
        self.health.record_failure(dep.alias, error)
        call.errors.append(error)
        name = type(error).__name__
        call.attempts.append(
            Attempt(
                dep.alias,
                dep.provider.name,
                "error",
                latency,
                0.0,
                error_type=name,
                error=str(error),
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
                outcome="error",
                error_type=name,
                latency_ms=latency,
                cost_usd=0.0,
                retry=attempt > 1,
            )

    # ------------------------------------------------------------------ stream

    async def stream(
        self,
        alias: str,
        request: Request,
        *,
        path: str = "",
        label: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> AsyncIterator[StreamEvent]:
        """Stream ``alias``'s answer, ending with ``Done(response)``.

        Falls back (and retries) only before the first content event. Timeouts:
        ``first_token_timeout_s`` until the first event, ``idle_timeout_s`` between
        events (a stalled stream is a ``ProviderTimeout``), and ``timeout_s`` for the
        whole stream. Chain, budget (downgrades included) and window rules are the
        same as ``complete``'s.
        """
        ordered = self._ordered(alias)
        clock = self.clock
        call = _Call(path, label, metadata or {}, clock.now(), request)
        primary = alias
        budget = self.budget
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
            self.health.available(dep.alias)  # claim a half-open trial: it is called now
            max_out = request.max_tokens or dep.max_output_tokens or _DEFAULT_MAX_OUTPUT
            limiter = dep.limiter
            attempt = 0
            while True:
                attempt += 1
                reservation: Reservation | None = None
                if budget is not None:
                    try:
                        reservation = budget.reserve(
                            model=dep.alias, tags=call.tags, amount_usd=dep.max_cost(call.prompt, max_out)
                        )
                    except BudgetDowngrade as exc:
                        target = exc.downgrade_to
                        if downgraded or target is None or target not in self.deployments:
                            raise
                        downgraded = True
                        if dep.alias == primary:
                            primary = target
                        _insert_next(ordered, i, self.deployments[target])
                        break
                permit = await _acquire(limiter, call.estimate, reservation)
                t0 = clock.now()
                deadline = t0 + dep.timeout_s if dep.timeout_s is not None else None
                started = False
                final: Response | None = None
                error: ProviderError | None = None
                events = dep.provider.stream(dep.model, request).__aiter__()
                try:
                    while True:
                        limit = dep.idle_timeout_s if started else dep.first_token_timeout_s
                        if deadline is not None:
                            remaining = max(0.0, deadline - clock.now())
                            limit = remaining if limit is None else min(limit, remaining)
                        try:
                            if limit is not None:
                                with anyio.fail_after(limit):
                                    event = await events.__anext__()
                            else:
                                event = await events.__anext__()
                        except StopAsyncIteration:
                            break
                        if isinstance(event, Done):
                            final = event.response
                            break
                        started = True
                        yield event
                except TimeoutError:
                    phase = "between chunks" if started else "before the first token"
                    error = ProviderTimeout(
                        f"stream stalled {phase}", provider=dep.provider.name, model=dep.model
                    )
                except ProviderError as exc:
                    error = exc
                except BaseException:
                    # Cancelled, or the consumer stopped early: give everything back.
                    _give_back(permit, reservation)
                    with anyio.CancelScope(shield=True):
                        await _aclose(events)
                    raise
                await _aclose(events)
                if error is None and final is None:
                    error = ProtocolError(
                        "stream ended without a final response", provider=dep.provider.name, model=dep.model
                    )
                if error is None and final is not None:
                    self._succeeded(dep, final, call, permit, reservation, t0, attempt)
                    final.fallback = dep.alias != primary
                    final.attempts = call.attempts
                    final.route = RouteInfo(path, label, f"model {dep.alias}")
                    final.cost_usd = _sum_costs(call.attempts)
                    yield Done(final)
                    return
                assert error is not None
                self._release_failed(dep, error, call, permit, reservation, t0, attempt)
                if started or _stops_chain(error):
                    # Text already delivered cannot be taken back, and a bad request
                    # is bad everywhere: the error is the caller's.
                    raise error
                if isinstance(error, ContextWindowExceeded):
                    min_window = max(min_window, window or 0)
                    break
                elapsed = clock.now() - call.start
                if not self.retry.should_retry(error, attempt, elapsed):
                    break
                delay = self.retry.delay(attempt, error, self.rng)
                if self.retry.deadline is not None and elapsed + delay > self.retry.deadline:
                    break
                await clock.sleep(delay)
        raise AllTargetsFailed(
            f"all targets failed to stream for {alias!r}: "
            + "; ".join(f"{type(e).__name__}: {e}" for e in call.errors[-3:]),
            call.errors or [ConfigError(f"no deployment could take the request for {alias!r}")],
            call.attempts,
        )


def _stops_chain(error: ProviderError) -> bool:
    """A request-level refusal: the same request would fail on every model."""
    return isinstance(error, BadRequestError) and not isinstance(error, ContextWindowExceeded | NotFoundError)


def _insert_next(ordered: list[Deployment], i: int, target: Deployment) -> None:
    """Put ``target`` at position ``i`` (tried next), removing any later copy so each
    deployment is still tried once."""
    later = ordered[i:]
    del ordered[i:]
    ordered.append(target)
    ordered.extend(d for d in later if d is not target)


def _settle_failed(
    dep: Deployment, error: ProviderError, permit: Permit | None, reservation: Reservation | None
) -> None:
    """A try that failed: release its permit unused (penalizing the limiter on a
    ``retry_after``) and settle its reservation at $0."""
    if permit is not None:
        permit.release(None)
        if isinstance(error, RateLimitError) and error.retry_after and dep.limiter is not None:
            dep.limiter.penalize(error.retry_after)
    if reservation is not None:
        reservation.settle(0.0)


def _give_back(permit: Permit | None, reservation: Reservation | None) -> None:
    """Return an interrupted try's permit (unused) and budget reservation (unspent)."""
    if permit is not None:
        permit.release(None)
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


async def _acquire(
    limiter: RateLimiter | None, tokens: int, reservation: Reservation | None
) -> Permit | None:
    """Wait for a rate-limit slot; a cancelled wait gives back the budget reservation."""
    if limiter is None:
        return None
    try:
        return await limiter.acquire(tokens)
    except BaseException:
        if reservation is not None:
            reservation.release()
        raise


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
