"""The executor: HOW a model is called, for every strategy.

One pipeline for every call: cache → rate limit → budget → timeout/retry →
fallback chain → provider, so a cascade step, an ensemble member and a plain
call get the same guarantees. ``Chain`` (``_chain.py``) yields the deployments
in order, ``_tries`` is the one retry loop, and each try is a ``Try``
(``_attempt.py``) that holds its permit and reservation and books itself on
exit. Plain calls, streams and embeddings differ only in how one try talks to
the provider. The fallback, deadline and accounting rules are listed in
docs/execution.md.
"""

from __future__ import annotations

import random
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Mapping, Sequence
from contextlib import aclosing
from dataclasses import replace
from typing import TYPE_CHECKING, TypeVar, cast

from .._clock import SYSTEM_CLOCK, Clock
from ..errors import AllTargetsFailed, ConfigError, ContextWindowExceeded, ProviderTimeout
from ..observe.events import Observer, Observers
from ..types import Attempt, Done, Embeddings, Request, Response, RouteInfo, StreamEvent, replay_events
from ._attempt import Call, CallKind, CallScope, Try, emit, sum_costs, worst_request_cost
from ._chain import Chain
from .budget import BudgetDowngrade, BudgetLedger
from .deployment import Deployment
from .fallback import BadRequestRule
from .health import HealthTracker
from .limits import QueueWaitTimeout
from .retry import RetryPolicy
from .tokens import heuristic_text_tokens

if TYPE_CHECKING:
    from ..observe.metrics import MetricsCollector
    from ..state import Permit, StickyStore
    from ..state._redis_limiter import FirstTry, RedisLimiter
    from .budget import PendingReservation, Reservation
    from .cache import CoalescingCache, ResponseCache, SingleFlight

__all__ = ["CallScope", "Deployment", "Executor"]

_ROOT = CallScope()
_EMBED = CallScope("embed")

_R = TypeVar("_R")


class Executor:
    """Calls deployments by alias with every guarantee applied.

    ``observers`` get one ``AttemptEvent`` per try (``metrics`` is one of them
    when given); the orchestrator adds its own.
    """

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
        observers: Sequence[Observer] | Observers = (),
        default_fallbacks: Sequence[str] = (),
        bad_request: BadRequestRule | None = None,
        clock: Clock = SYSTEM_CLOCK,
        seed: int | None = None,
        sticky: StickyStore | None = None,
    ) -> None:
        self.deployments = dict(deployments)
        #: Where sticky routers book their conversations when shared (``None``: each
        #: router's own memory). Held here because ``RunContext`` reaches the
        #: executor; the executor itself never reads it.
        self.sticky = sticky
        self.retry = retry or RetryPolicy()
        self.clock = clock
        self.health = health or HealthTracker(clock=clock)
        self.budget = budget
        self.cache = cache
        self.cache_force = cache_force
        self.metrics = metrics
        self.observers = observers if isinstance(observers, Observers) else Observers(observers)
        if metrics is not None and metrics not in self.observers:
            self.observers.add(metrics)
        self.default_fallbacks = tuple(default_fallbacks)
        self.bad_request = bad_request or BadRequestRule()
        self.rng = random.Random(seed)
        self._flight: SingleFlight | None = None
        self._shared: CoalescingCache | None = None
        if cache is not None:
            # Imported only with a cache: most processes never load its modules.
            from .cache import CoalescingCache, SingleFlight, cacheable, request_key

            self._flight = SingleFlight()
            # Shared by processes: identical calls are coalesced across them too.
            self._shared = cache if isinstance(cache, CoalescingCache) else None
            self._cacheable = cacheable
            self._request_key = request_key
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

    def close(self) -> None:
        """Refuse new slots: requests queued on a rate limiter fail at once
        (``LimiterClosed``) instead of waiting out a window while the process drains."""
        for dep in self.deployments.values():
            if dep.limiter is not None:
                dep.limiter.close()

    def _call(
        self, kind: CallKind, scope: CallScope, request: Request | None, prompt_tokens: int = 0
    ) -> Call:
        start = self.clock.now()
        deadline = scope.deadline
        limit = self.retry.deadline
        if limit is not None:
            deadline = start + limit if deadline is None else min(deadline, start + limit)
        return Call(kind, scope, start, deadline, request, prompt_tokens)

    # ------------------------------------------------------------------ complete

    async def complete(self, alias: str, request: Request, scope: CallScope | None = None) -> Response:
        """Call ``alias`` (with its fallback chain) and return the answer.

        ``scope`` says where the call is made from (path, label, metadata), its
        deadline (absolute, on the executor's clock: it tightens the retry
        policy's own) and the ledger that receives every attempt. Raises
        ``BudgetExceeded``, a request-level ``BadRequestError``, or
        ``AllTargetsFailed`` holding every attempt's error.
        """
        scope = scope or _ROOT
        cache = self.cache
        if cache is not None and self._cacheable(request, self.cache_force):
            key = self._request_key(alias, request)
            hit = await cache.get(key)
            if hit is not None:
                return self._cached(hit, alias, scope)
            return await self._coalesced(key, alias, request, scope)
        return await self._complete(alias, request, scope)

    async def _coalesced(self, key: str, alias: str, request: Request, scope: CallScope) -> Response:
        """Join the call in flight for ``key``, or lead one (and cache its answer).

        Followers of a coalesced call share the leader's single provider call: they
        get their own copy, accounted like a cache hit ($0), so the one real cost is
        counted once. With a cache shared by processes the leader first waits for
        (or takes) the key across processes, so the answer another process is
        producing is awaited instead of paid for again."""
        assert self.cache is not None
        cache = self.cache
        led = False
        peer = False

        async def lead() -> Response:
            nonlocal led, peer
            led = True
            hit = await self._claim(key, scope)
            if hit is not None:
                peer = True
                return hit
            try:
                response = await self._complete(alias, request, scope)
            except BaseException as exc:
                self._abandon(key, exc)
                raise
            await cache.set(key, response)
            return response

        assert self._flight is not None
        response = await self._flight.do(key, lead)
        return response if led and not peer else self._cached(response, alias, scope)

    async def _claim(self, key: str, scope: CallScope) -> Response | None:
        """Across processes: another process's answer for ``key``, or ``None`` (call
        now). Waits no longer than the call's deadline allows."""
        shared = self._shared
        if shared is None:
            return None
        wait_s = None
        deadline = self._call("complete", scope, None).deadline
        if deadline is not None:
            wait_s = deadline - self.clock.now()
        return await shared.claim(key, wait_s=wait_s)

    def _abandon_stream(self, key: str, error: BaseException | None) -> None:
        if self._shared is not None:
            self._shared.abandon(key, failed=error is not None)

    def _abandon(self, key: str, exc: BaseException) -> None:
        if self._shared is not None:
            self._shared.abandon(key, failed=isinstance(exc, Exception))

    async def _complete(self, alias: str, request: Request, scope: CallScope) -> Response:
        call = self._call("complete", scope, request)
        async with aclosing(self._run(alias, call)) as events:
            async for _ in events:
                pass  # a plain call yields no content events
        assert isinstance(call.result, Response)
        return call.result

    def _cached(self, hit: Response, alias: str, scope: CallScope) -> Response:
        path, ledger = scope.path, scope.ledger
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
        if self.observers:
            call = Call("complete", CallScope(path, hit.route.label), 0.0, None, None)
            emit(self, call, hit.model, attempt)
        return response

    # ------------------------------------------------------------------ stream

    async def stream(
        self, alias: str, request: Request, scope: CallScope | None = None
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
        scope = scope or _ROOT
        cache = self.cache
        if cache is None or not self._cacheable(request, self.cache_force):
            call = self._call("stream", scope, request)
            # aclosing: a consumer that stops early closes the chain loop now, so the
            # abandoned try is booked and its slot and connection come back at once.
            async with aclosing(self._run(alias, call)) as events:
                async for event in events:
                    yield event
            assert isinstance(call.result, Response)
            yield Done(call.result)
            return
        key = self._request_key(alias, request)
        hit = await cache.get(key)
        if hit is not None:
            answer = self._cached(hit, alias, scope)
            for event in replay_events(answer):
                yield event
            yield Done(answer)
            return
        assert self._flight is not None
        flight = self._flight.begin(key)
        if flight is None:
            # Another call is producing this answer: wait for it (taking over with a
            # plain call if it is abandoned) and replay it.
            answer = await self._coalesced(key, alias, request, scope)
            for event in replay_events(answer):
                yield event
            yield Done(answer)
            return
        result: Response | None = None
        error: BaseException | None = None
        try:
            peer = await self._claim(key, scope)
        except BaseException as exc:
            self._flight.end(key, flight, None, exc if isinstance(exc, Exception) else None)
            raise
        if peer is not None:
            # Another process produced this answer while we waited: replay it.
            self._flight.end(key, flight, peer, None)
            answer = self._cached(peer, alias, scope)
            for event in replay_events(answer):
                yield event
            yield Done(answer)
            return
        call = self._call("stream", scope, request)
        try:
            async with aclosing(self._run(alias, call)) as events:
                async for event in events:
                    yield event
            assert isinstance(call.result, Response)
            result = call.result
            await cache.set(key, result)
            yield Done(result)
        except Exception as exc:
            error = exc
            raise
        finally:
            # Unfinished (cancelled, abandoned by the consumer): followers take over.
            if result is None:
                self._abandon_stream(key, error)
            self._flight.end(key, flight, result, error)

    # ------------------------------------------------------------------ embed

    async def embed(self, alias: str, texts: Sequence[str]) -> Embeddings:
        """Embed ``texts`` on ``alias`` itself, through the same pipeline as a chat
        call (limiter, budget, timeout, retries) minus what is about chat: no
        fallback (another model's vectors live in another space), no cache, no
        context-window check, no health record. Raises the last attempt's error
        (a ``ProviderError``, or ``BudgetExceeded`` before any call)."""
        dep = self.chain(alias)[0]
        batch = list(texts)
        if not batch:
            # The provider checks its own support (and argument types) first.
            result = await dep.provider.embed(dep.model, batch)
            result.cost_usd = 0.0
            result.deployment = dep.alias
            return result
        tokens = sum(heuristic_text_tokens(t) for t in batch)
        call = self._call("embed", _EMBED, None, tokens)
        call.texts = batch
        async with aclosing(self._run(alias, call)) as events:
            async for _ in events:
                pass
        assert isinstance(call.result, Embeddings)
        return call.result

    # ------------------------------------------------------------------ the pipeline

    async def _run(self, alias: str, call: Call) -> AsyncGenerator[StreamEvent, None]:
        """The one chain loop, for every kind of call: each deployment in order,
        each try on it; a stream's content events are passed on as they arrive.
        The answer is left in ``call.result``."""
        chain = Chain(self, alias, call, fallback=call.kind != "embed")
        request = call.request
        for dep in chain:
            async with aclosing(self._tries(dep, call, chain)) as tries:
                async for attempt in tries:
                    async with attempt:
                        if call.kind == "stream":
                            assert request is not None
                            async with aclosing(self._stream_try(dep, request, call, attempt)) as events:
                                async for event in events:
                                    if isinstance(event, Done):
                                        attempt.result = event.response
                                    else:
                                        yield event
                        elif call.kind == "complete":
                            assert request is not None
                            attempt.result = await self._bounded(
                                dep, call, "no answer", dep.provider.complete(dep.model, request)
                            )
                        else:
                            attempt.result = await self._bounded(
                                dep, call, "no embeddings", dep.provider.embed(dep.model, call.texts)
                            )
                    if attempt.error is None:
                        final = attempt.result
                        if isinstance(final, Response):
                            final.fallback = dep.alias != chain.primary
                            final.attempts = call.attempts
                            final.route = RouteInfo(
                                call.path, call.label, final.route.reason or f"model {dep.alias}"
                            )
                            final.cost_usd = sum_costs(call.attempts)
                        call.result = final
                        return
        raise self._exhausted(alias, call, len(chain))

    async def _tries(self, dep: Deployment, call: Call, chain: Chain) -> AsyncGenerator[Try, None]:
        """The one retry loop: tries on ``dep`` until one succeeds, the error says
        to fall back or stop (raised), or attempts, backoff and deadline run out."""
        clock = self.clock
        retry = self.retry
        number = 0
        while True:
            number += 1
            queued = clock.now()
            try:
                permit, reservation = await self._admit(dep, call)
            except QueueWaitTimeout as exc:
                # Too busy to wait for: passed over, like a deployment whose window is too small.
                call.errors.append(exc)
                skipped = Attempt(
                    dep.alias,
                    dep.provider.name,
                    "skipped",
                    0.0,
                    0.0,
                    error_type="QueueWaitTimeout",
                    error=str(exc),
                    path=call.path,
                )
                call.add(skipped)
                emit(self, call, dep.model, skipped)
                return
            except BudgetDowngrade as exc:
                chain.downgrade(dep, exc)
                return
            attempt = Try(self, dep, call, number, permit, reservation, (clock.now() - queued) * 1000.0)
            try:
                yield attempt
            finally:
                await attempt.give_back()
            error = attempt.error
            if error is None:
                return
            if attempt.seen.started or self.bad_request.stops_chain(error):
                # Text already delivered cannot be taken back, and a bad request is
                # bad everywhere: the error is the caller's.
                raise error
            if isinstance(error, ContextWindowExceeded):
                chain.refused_window(dep)
                return
            now = clock.now()
            elapsed = now - call.start
            if not retry.should_retry(error, number, elapsed):
                return
            delay = retry.delay(number, error, self.rng, elapsed=elapsed)
            left = call.left(now)
            if left is not None and delay >= left:
                return
            await clock.sleep(delay)

    def _exhausted(self, alias: str, call: Call, tried: int) -> Exception:
        """The error for a call no deployment answered."""
        retry = self.retry
        if call.kind == "embed":
            if not call.errors:
                return ProviderTimeout("request deadline passed", provider="", model=alias, retryable=False)
            last = call.errors[-1]
            if isinstance(last, QueueWaitTimeout):
                dep = self.deployments[alias]
                return ProviderTimeout(
                    str(last), provider=dep.provider.name, model=dep.model, retryable=False
                )
            return last
        if call.deadline is not None and self.clock.now() >= call.deadline:
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
        return AllTargetsFailed(
            f"all {tried} target(s) failed for {alias!r}: "
            + "; ".join(f"{type(e).__name__}: {e}" for e in call.errors[-3:]),
            call.errors or [ConfigError(f"no deployment could take the request for {alias!r}")],
            call.attempts,
        )

    async def _admit(self, dep: Deployment, call: Call) -> tuple[Permit | None, Reservation | None]:
        """A rate-limit slot (waiting at most ``max_queue_wait_s`` and never past the
        deadline), then the budget reservation, taken only once the slot is held."""
        permit: Permit | None = None
        limiter = dep.limiter
        budget = self.budget
        estimate, worst = call.estimate, None
        if dep.exact_token_counts and call.request is not None and (limiter or budget):
            from ._exact import exact_prompt_tokens

            counted = await exact_prompt_tokens(dep, call.request)
            if counted is not None:  # the counted prompt replaces the heuristic's share
                estimate = counted + max(0, call.estimate - call.prompt)
                worst = worst_request_cost(dep, call.request, counted, exact=True)
        if limiter is not None:
            timeout = dep.max_queue_wait_s
            left = call.left(self.clock.now())
            if left is not None:
                timeout = left if timeout is None else min(timeout, left)
            begin = getattr(limiter, "begin", None) if budget is not None else None
            if budget is not None and begin is not None:
                amount = call.worst_cost(dep) if worst is None else worst
                pending = budget.begin_reserve(model=dep.alias, tags=call.tags, amount_usd=amount)
                if pending is not None:
                    shared = cast("RedisLimiter", limiter)
                    return await self._admit_shared(
                        dep, call, shared, estimate, begin(estimate), pending, timeout
                    )
            permit = await limiter.acquire(estimate, timeout=timeout)
        if budget is None:
            return permit, None
        try:
            reservation = await budget.areserve(
                model=dep.alias, tags=call.tags, amount_usd=call.worst_cost(dep) if worst is None else worst
            )
        except BaseException:
            if permit is not None:
                import anyio  # lazily: keeps it out of cold start

                with anyio.CancelScope(shield=True):
                    await permit.arelease(None)
            raise
        return permit, reservation

    async def _admit_shared(
        self,
        dep: Deployment,
        call: Call,
        limiter: RedisLimiter,
        estimate: int,
        first: FirstTry,
        pending: PendingReservation,
        timeout: float | None,  # noqa: ASYNC109 - the queue wait, passed on to the limiter
    ) -> tuple[Permit | None, Reservation | None]:
        """``_admit`` on a shared backend: the limiter's first attempt and the
        budget reservation were sent together (one round trip on the success
        path instead of two). The order of ``_admit`` still holds for waiting:
        if the first attempt does not admit, the reservation is given back
        before the wait and made again once the slot is held."""
        import anyio  # lazily: keeps it out of cold start

        budget = self.budget
        assert budget is not None
        gave_back = False

        async def give_back() -> None:
            nonlocal gave_back
            if not gave_back:
                gave_back = True
                with anyio.CancelScope(shield=True):
                    await budget.abandon_reserve(pending)

        try:
            permit = await limiter.acquire(estimate, timeout=timeout, first=first, on_wait=give_back)
        except BaseException:
            await give_back()
            raise
        try:
            if gave_back:
                reservation = await budget.areserve(
                    model=dep.alias, tags=call.tags, amount_usd=pending.amount
                )
            else:
                reservation = await budget.finish_reserve(pending)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await permit.arelease(None)
            raise
        return permit, reservation

    async def _bounded(self, dep: Deployment, call: Call, what: str, work: Awaitable[_R]) -> _R:
        """``await work`` bounded by ``timeout_s`` and the request deadline; running
        out is a ``ProviderTimeout`` (retryable unless the deadline ended it)."""
        limit = dep.timeout_s
        left = call.left(self.clock.now())
        by_deadline = False
        if left is not None and (limit is None or left < limit):
            limit = max(0.0, left)
            by_deadline = True
        if limit is None:
            return await work
        try:
            import anyio  # lazily: keeps it out of cold start

            with anyio.fail_after(limit):
                return await work
        except TimeoutError:
            message = "request deadline reached" if by_deadline else f"{what} within {dep.timeout_s}s"
            raise ProviderTimeout(
                message, provider=dep.provider.name, model=dep.model, retryable=not by_deadline
            ) from None

    async def _stream_try(
        self, dep: Deployment, request: Request, call: Call, attempt: Try
    ) -> AsyncGenerator[StreamEvent, None]:
        """One streamed call: its events (``seen`` notes each), ending with ``Done``.

        ``first_token_timeout_s`` until the first event, ``idle_timeout_s`` between
        events, and ``timeout_s`` and the deadline for the whole stream."""
        import anyio  # lazily: keeps it out of cold start

        clock = self.clock
        seen = attempt.seen
        end = attempt.t0 + dep.timeout_s if dep.timeout_s is not None else None
        if call.deadline is not None and (end is None or call.deadline < end):
            end = call.deadline
        events = dep.provider.stream(dep.model, request).__aiter__()
        try:
            if end is None and dep.idle_timeout_s is None and dep.first_token_timeout_s is None:
                # Nothing to time: pass events on without a timer per event.
                async for event in events:
                    if isinstance(event, Done):
                        yield event
                        return
                    seen.add(event)
                    yield event
                return
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


async def _aclose(events: AsyncIterator[StreamEvent]) -> None:
    aclose = getattr(events, "aclose", None)
    if aclose is not None:
        await aclose()
