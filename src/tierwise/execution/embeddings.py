"""Embedding calls with the executor's guarantees: ``Orchestrator.embed``'s engine.

An embedding call is not a chat ``Request``, so it does not go through
``Executor.complete`` (whose cache keys, context-window checks, fallback chains and
output-token reservations are all about chat). It reuses the executor's *objects*
instead, in a small loop of its own: the ``RetryPolicy`` (same retryable errors,
backoff with jitter, ``retry_after`` floor, deadline), the deployment's
``timeout_s`` and rate limiter (429 penalties included), the budget ledger
(worst case reserved at the input price, settled at the real cost) and the metrics
collector (one attempt event per try, path ``"embed"``).

Deliberately not applied: fallbacks (another deployment is another embedding
model, whose vectors live in a different space — silently mixing them would corrupt
whatever compares them), the response cache, and health tracking (an alias used
for embedding is often a chat alias too; an embedding failure must not cool down
its chat traffic).

Cost: ``Deployment.cost`` of the reported usage (the catalog's input price).
``None`` — never 0 — when the price is unknown or the provider did not report a
token count (Gemini's older replies): a zero count for non-empty input means
"not reported", not "free".
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..errors import ProviderError, ProviderTimeout
from ..types import Embeddings
from .executor import _give_back, _settle_failed, within_timeout
from .limits import QueueWaitTimeout
from .tokens import heuristic_text_tokens

if TYPE_CHECKING:
    from ..execution.budget import Reservation
    from .executor import Deployment, Executor
    from .limits import Permit

__all__ = ["embed_with_retry"]

_PATH = "embed"


async def embed_with_retry(executor: Executor, dep: Deployment, texts: Sequence[str]) -> Embeddings:
    """Embed ``texts`` on ``dep``, retrying per ``executor.retry``; raises the last
    error (a ``ProviderError``, or ``BudgetExceeded`` before any call)."""
    batch = list(texts)
    if not batch:
        # The provider checks its own support (and argument types) first.
        result = await dep.provider.embed(dep.model, batch)
        result.cost_usd = 0.0
        result.deployment = dep.alias
        return result
    retry = executor.retry
    clock = executor.clock
    tokens = sum(heuristic_text_tokens(t) for t in batch)
    spec = dep.spec
    worst = tokens * spec.input / 1_000_000.0 if spec is not None and spec.input is not None else 0.0
    start = clock.now()
    attempt = 0
    while True:
        attempt += 1
        # The slot first (never waiting past the deadline), then the reservation: a
        # request queued for a slot holds no money.
        permit: Permit | None = None
        if dep.limiter is not None:
            timeout = dep.max_queue_wait_s
            if retry.deadline is not None:
                left = max(0.0, retry.deadline - (clock.now() - start))
                timeout = left if timeout is None else min(timeout, left)
            try:
                permit = await dep.limiter.acquire(tokens, timeout=timeout)
            except QueueWaitTimeout as exc:
                raise ProviderTimeout(
                    str(exc), provider=dep.provider.name, model=dep.model, retryable=False
                ) from None
        reservation: Reservation | None = None
        if executor.budget is not None:
            try:
                reservation = executor.budget.reserve(model=dep.alias, tags={}, amount_usd=worst)
            except BaseException:
                _give_back(permit, None)
                raise
        t0 = clock.now()
        try:
            result = await within_timeout(dep, "no embeddings", dep.provider.embed, dep.model, batch)
        except ProviderError as exc:
            error: ProviderError = exc
        except BaseException:
            _give_back(permit, reservation)
            raise
        else:
            used = result.usage.input_tokens
            cost = dep.cost(result.usage) if used or result.usage.reported_cost_usd is not None else None
            if permit is not None:
                permit.release(used or None)
            if reservation is not None:
                reservation.settle(cost)
            result.cost_usd = cost
            result.deployment = dep.alias
            _record(executor, dep, "ok", None, (clock.now() - t0) * 1000.0, used, cost, attempt)
            return result
        _settle_failed(dep, error, permit, reservation, retry.max_retry_after)
        _record(executor, dep, "error", type(error).__name__, (clock.now() - t0) * 1000.0, 0, 0.0, attempt)
        elapsed = clock.now() - start
        if not retry.should_retry(error, attempt, elapsed):
            raise error
        delay = retry.delay(attempt, error, executor.rng, elapsed=elapsed)
        if retry.deadline is not None and elapsed + delay > retry.deadline:
            raise error
        await clock.sleep(delay)


def _record(
    executor: Executor,
    dep: Deployment,
    outcome: str,
    error_type: str | None,
    latency_ms: float,
    input_tokens: int,
    cost: float | None,
    attempt: int,
) -> None:
    if executor.metrics is not None:
        executor.metrics.record_attempt(
            model=dep.alias,
            provider=dep.provider.name,
            path=_PATH,
            label=None,
            outcome=outcome,
            error_type=error_type,
            latency_ms=latency_ms,
            input_tokens=input_tokens,
            cost_usd=cost,
            retry=attempt > 1,
        )
