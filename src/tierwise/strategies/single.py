"""The simplest strategy: one target (with the executor's fallback chain)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from ..types import Request, Response, RouteInfo, StreamEvent
from .base import RunContext, Strategy, Target

__all__ = ["Single"]


class Single(Strategy):
    """Always call ``target``. Fallbacks, retries and limits still apply: they are
    the executor's job, configured on the model, not here."""

    kind = "single"

    def __init__(self, target: Target, *, name: str | None = None) -> None:
        super().__init__(name=name)
        self.target = target

    async def run(self, request: Request, ctx: RunContext) -> Response:
        return await ctx.call(self.target, request)

    async def stream(self, request: Request, ctx: RunContext) -> AsyncIterator[StreamEvent]:
        async for event in ctx.stream(self.target, request):
            yield event

    def explain(self, request: Request) -> RouteInfo:
        target = self.target if isinstance(self.target, str) else self.target.name
        return RouteInfo(self.name, None, f"always {target}")
