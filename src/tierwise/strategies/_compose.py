"""Summing inner calls into one composite ``Response``.

A composite strategy (router, cascade, ensemble, pipeline) answers with one of its
inner responses, but the bill and the audit trail must cover everything it
called: verifier and judge calls, rejected cascade rungs, ensemble losers. This
module does that once, so every composite reports cost the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from ..types import Response, RouteInfo, StepInfo, Usage

__all__ = ["combine", "step_of"]


def step_of(name: str, response: Response, *, accepted: bool | None = None, note: str = "") -> StepInfo:
    """A ``StepInfo`` describing one inner response."""
    return StepInfo(
        name=name,
        path=response.route.strategy_path,
        model=response.deployment or response.model,
        cost_usd=response.cost_usd,
        latency_ms=response.latency_ms,
        usage=response.usage,
        accepted=accepted,
        note=note,
    )


def combine(
    answer: Response,
    calls: Sequence[Response],
    *,
    route: RouteInfo,
    steps: Sequence[StepInfo] | None = None,
    latency_ms: float | None = None,
) -> Response:
    """A copy of ``answer`` carrying the summed cost and usage of ``calls``.

    ``calls`` must include ``answer`` itself (and every other inner response the
    strategy paid for). ``cost_usd`` is ``None`` if any inner cost is unknown: a
    partial sum would understate the bill. ``attempts`` concatenates every inner
    attempt in call order; ``steps`` lists one entry per inner call unless given.
    """
    usage = Usage()
    cost: float | None = 0.0
    attempts = []
    for r in calls:
        usage = usage + r.usage
        if cost is not None:
            cost = None if r.cost_usd is None else cost + r.cost_usd
        attempts.extend(r.attempts)
    return replace(
        answer,
        usage=usage,
        cost_usd=cost,
        attempts=attempts,
        route=route,
        steps=list(steps) if steps is not None else [step_of(r.route.strategy_path, r) for r in calls],
        latency_ms=latency_ms if latency_ms is not None else answer.latency_ms,
        cached=all(r.cached for r in calls) if calls else answer.cached,
    )
