"""Strategy and RunContext: the seam between deciding and enforcing.

A strategy decides WHICH model(s) answer a request; it never sleeps, retries or
counts tokens. Every call it makes goes through ``ctx.call(target, request)``,
which sends model references to the executor (cache, budget, limits, retries,
fallbacks, cost, metrics) and runs nested strategies with a child context, so
a cascade inside a pipeline step gets the same guarantees as a top-level call
and its path (``pipeline.steps[2].cascade[1]``) shows up in logs, metrics and
``Response.route``.
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, TypeAlias

from ..types import Done, Request, Response, RouteInfo, StreamEvent, TextDelta

if TYPE_CHECKING:
    from ..execution.executor import Executor

__all__ = ["RunContext", "Strategy", "Target"]

Target: TypeAlias = "str | Strategy"


class _LazyRandom:
    """A ``random.Random`` made on first use: seeding one costs several µs, and most
    requests never draw a number. Shared by a context and its children, as the
    ``Random`` itself would be."""

    __slots__ = ("rng", "seed")

    def __init__(self, seed: int, rng: random.Random | None = None) -> None:
        self.seed = seed
        self.rng = rng

    def get(self) -> random.Random:
        rng = self.rng
        if rng is None:
            rng = self.rng = random.Random(self.seed)
        return rng


class RunContext:
    """What a strategy may use while it runs: ``call``/``stream`` for targets, its
    path, the request's metadata, a deadline (clock seconds, or ``None``), and a
    seeded random source so sampling strategies are reproducible.

    ``rng`` is the given ``Random``, else one seeded with ``seed`` (default 0),
    created on first access."""

    __slots__ = ("_rng", "deadline", "executor", "label", "metadata", "path")

    def __init__(
        self,
        executor: Executor,
        *,
        path: str = "",
        label: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        deadline: float | None = None,
        rng: random.Random | None = None,
        seed: int | None = None,
    ) -> None:
        self.executor = executor
        self.path = path
        self.label = label
        self.metadata: Mapping[str, Any] = metadata if metadata is not None else {}
        self.deadline = deadline
        self._rng = _LazyRandom(0 if seed is None else seed, rng)

    @property
    def rng(self) -> random.Random:
        return self._rng.get()

    @rng.setter
    def rng(self, value: random.Random) -> None:
        self._rng = _LazyRandom(0, value)

    def child(self, segment: str, *, label: str | None = None) -> RunContext:
        """A context for a nested call, one path segment deeper."""
        ctx = RunContext(
            self.executor,
            path=f"{self.path}.{segment}" if self.path else segment,
            label=label if label is not None else self.label,
            metadata=self.metadata,
            deadline=self.deadline,
        )
        ctx._rng = self._rng  # the same (still lazy) random source
        return ctx

    async def call(
        self, target: Target, request: Request, *, name: str | None = None, label: str | None = None
    ) -> Response:
        """Run ``target`` (a model alias or a Strategy) on ``request``.

        ``name`` is this call's path segment (``"steps[2]"``, ``"cascade[1]"``).
        """
        if isinstance(target, Strategy):
            return await target.run(request, self.child(name or target.name, label=label))
        path = f"{self.path}.{name}" if name else self.path
        return await self.executor.complete(
            target,
            request,
            path=path,
            label=label if label is not None else self.label,
            metadata=self.metadata,
        )

    def stream(
        self, target: Target, request: Request, *, name: str | None = None, label: str | None = None
    ) -> AsyncIterator[StreamEvent]:
        """Stream ``target``'s answer: deltas, then ``Done(response)``."""
        if isinstance(target, Strategy):
            return target.stream(request, self.child(name or target.name, label=label))
        path = f"{self.path}.{name}" if name else self.path
        return self.executor.stream(
            target,
            request,
            path=path,
            label=label if label is not None else self.label,
            metadata=self.metadata,
        )


class Strategy(ABC):
    """Decides which target(s) answer. Subclass and implement ``run``.

    Built-ins expose small named hooks (``Router.select``, ``Cascade.accept``,
    ``Ensemble.aggregate``) so a subclass overrides one decision, not the class.
    """

    #: The strategy type, used in paths and config (``type = "cascade"``).
    kind: ClassVar[str] = "strategy"

    def __init__(self, *, name: str | None = None) -> None:
        self.name = name or self.kind

    @abstractmethod
    async def run(self, request: Request, ctx: RunContext) -> Response:
        """Answer ``request``, calling targets only through ``ctx``."""

    async def stream(self, request: Request, ctx: RunContext) -> AsyncIterator[StreamEvent]:
        """Default streaming for strategies that need the whole answer before
        deciding (cascades, ensembles): run, then emit the text and ``Done``."""
        response = await self.run(request, ctx)
        if response.text:
            yield TextDelta(response.text)
        yield Done(response)

    def explain(self, request: Request, ctx: RunContext | None = None) -> RouteInfo:
        """The decision this strategy would make for ``request``, without calling a model.

        ``ctx`` (when the orchestrator has one) lets a strategy consult deployments,
        e.g. the router's long-context check against a model's window.
        """
        return RouteInfo(self.name, None, f"{self.kind} strategy")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"
