"""Summing inner calls into one composite ``Response``.

A composite strategy (router, cascade, ensemble, pipeline) answers with one of its
inner responses, but the bill and the audit trail must cover everything it
called: verifier and judge calls, rejected cascade rungs, ensemble losers. This
module does that once, so every composite reports cost the same way.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import replace

from ..types import Done, Request, Response, RouteInfo, StepInfo, StepKind, StepVerdict, StreamEvent, Usage
from .base import RunContext, Target

__all__ = ["RecordingContext", "combine", "step_of"]


class RecordingContext(RunContext):
    """A ``RunContext`` that keeps every response its ``call``/``stream`` produced,
    so the model calls a hook makes (a verifier's, a judge's, a custom
    aggregator's) are billed to the composite strategy however the hook reports
    them.

    It is a copy of ``parent`` (every ``RunContext`` field, the still-lazy random
    source shared), one path ``segment`` deeper when one is given.
    """

    __slots__ = ("recorded",)

    def __init__(self, parent: RunContext, segment: str = "") -> None:
        # No super().__init__(): every RunContext field is copied from the parent.
        for slot in RunContext.__slots__:
            setattr(self, slot, getattr(parent, slot))
        if segment:
            self.path = f"{parent.path}.{segment}" if parent.path else segment
        self.recorded: list[Response] = []

    async def call(
        self, target: Target, request: Request, *, name: str | None = None, label: str | None = None
    ) -> Response:
        response = await super().call(target, request, name=name, label=label)
        self.recorded.append(response)
        return response

    def stream(
        self, target: Target, request: Request, *, name: str | None = None, label: str | None = None
    ) -> AsyncIterator[StreamEvent]:
        return self._record_stream(super().stream(target, request, name=name, label=label))

    async def _record_stream(self, events: AsyncIterator[StreamEvent]) -> AsyncIterator[StreamEvent]:
        async for event in events:
            if isinstance(event, Done):
                self.recorded.append(event.response)
            yield event


def step_of(
    name: str,
    response: Response,
    *,
    accepted: bool | None = None,
    note: str = "",
    kind: StepKind = "call",
    verdict: StepVerdict | None = None,
) -> StepInfo:
    """A ``StepInfo`` describing one inner response."""
    model = response.deployment or response.model
    where = response.route.strategy_path
    return StepInfo(
        name,
        where,
        model,
        response.cost_usd,
        response.latency_ms,
        response.usage,
        accepted,
        note,
        kind,
        verdict,
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
