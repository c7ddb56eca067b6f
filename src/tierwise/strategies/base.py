"""Strategy and RunContext: the seam between deciding and enforcing.

A strategy decides WHICH model(s) answer a request; it never sleeps, retries or
counts tokens. Every call it makes goes through ``ctx.call(target, request)``,
which sends model references to the executor (cache, budget, limits, retries,
fallbacks, cost, metrics) and runs nested strategies with a child context, so
a cascade inside a pipeline step gets the same guarantees as a top-level call
and its path (``pipeline.steps[2].cascade[1]``) shows up in logs, metrics and
``Response.route``.

Accounting happens here too, so no strategy has to sum anything: every context
holds a ``CallLedger`` that the executor appends each attempt to as it is made
(failed, cancelled and cached ones included), and that forwards it to the
ledgers of the enclosing contexts. When a nested strategy returns, and when the
orchestrator gets the top-level answer, ``CallLedger.settle`` adds to the
response whatever was paid on its behalf but is missing from it — the second
model a custom strategy called and then dropped, an ensemble loser cancelled
mid-stream — so ``Response.cost_usd`` is the request's whole bill whatever the
strategy returns. Built-in composites already report every inner call (through
``_compose.combine``); for them ``settle`` finds nothing missing.
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, ClassVar, TypeAlias

from ..execution._attempt import CallScope
from ..types import Attempt, Done, Request, Response, RouteInfo, StreamEvent, TextDelta

if TYPE_CHECKING:
    from ..catalog import ModelSpec
    from ..execution.executor import Executor
    from ..types import Embeddings

__all__ = ["CallLedger", "RunContext", "Strategy", "Target", "TargetInfo"]

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


class CallLedger:
    """Every attempt made on behalf of one request, or of one nested strategy in it.

    ``add`` appends to this ledger and to every enclosing one (a nested strategy's
    calls are also its parent's), so each level knows its whole bill. Attempts are
    identified by object identity: the executor creates each ``Attempt`` once and
    every layer passes the same objects along.
    """

    __slots__ = ("attempts", "parent")

    def __init__(self, parent: CallLedger | None = None) -> None:
        self.attempts: list[Attempt] = []
        self.parent = parent

    def add(self, attempt: Attempt) -> None:
        node: CallLedger | None = self
        while node is not None:
            node.attempts.append(attempt)
            node = node.parent

    @property
    def cost_usd(self) -> float | None:
        """The sum over every attempt; ``None`` when an answering (or cancelled,
        tokens-consuming) attempt's price is unknown: a partial sum would understate it."""
        return _add_costs(0.0, self.attempts)

    def settle(self, response: Response) -> Response:
        """``response`` with the cost, usage and attempts of every call in this ledger
        that it does not already account for (a copy; unchanged when none is missing)."""
        if not self.attempts:
            return response
        have = {id(a) for a in response.attempts}
        missing = [a for a in self.attempts if id(a) not in have]
        if not missing:
            return response
        usage = response.usage
        for a in missing:
            if a.usage is not None:
                usage = usage + a.usage
        return replace(
            response,
            cost_usd=None if response.cost_usd is None else _add_costs(response.cost_usd, missing),
            usage=usage,
            attempts=[*response.attempts, *missing],
        )

    def __repr__(self) -> str:
        return f"CallLedger(attempts={len(self.attempts)}, cost_usd={self.cost_usd!r})"


def _add_costs(total: float, attempts: list[Attempt]) -> float | None:
    for a in attempts:
        if a.cost_usd is None:
            if a.outcome in ("ok", "cancelled"):
                return None
        else:
            total += a.cost_usd
    return total


@dataclass(frozen=True, slots=True)
class TargetInfo:
    """Read-only facts about a model alias a strategy may consult before calling
    it: its provider and wire model, its context window and largest output, and
    its catalog entry (prices, capabilities; ``None`` when unknown)."""

    alias: str
    provider: str
    model: str
    context_window: int | None
    max_output_tokens: int | None
    spec: ModelSpec | None


class RunContext:
    """A strategy's only door: ``call``/``stream`` for targets, ``embed`` for
    vectors, ``now``/``sleep`` on the injected clock (so a staggered or hedged call
    is legal, testable strategy code), ``target`` for a model's facts, its path,
    the request's metadata, a deadline (clock seconds, or ``None``), and a seeded
    random source so sampling strategies are reproducible.

    ``rng`` is the given ``Random``, else one seeded with ``seed`` (default 0),
    created on first access. ``ledger`` is the context's ``CallLedger``: every
    attempt made through ``call``/``stream`` lands there (and in the enclosing
    contexts' ledgers); ``deadline`` bounds every call made through the context,
    queueing for a rate-limit slot included."""

    __slots__ = ("_rng", "deadline", "executor", "label", "ledger", "metadata", "path")

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
        ledger: CallLedger | None = None,
    ) -> None:
        self.executor = executor
        self.ledger = CallLedger() if ledger is None else ledger
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

    def now(self) -> float:
        """The executor's clock, in seconds (monotonic; a ``FakeClock`` in tests)."""
        return self.executor.clock.now()

    async def sleep(self, seconds: float) -> None:
        """Wait on the executor's clock: a ``FakeClock`` advances instead of sleeping."""
        await self.executor.clock.sleep(seconds)

    def target(self, alias: str) -> TargetInfo | None:
        """Facts about the model alias ``alias``; ``None`` when it is not configured."""
        dep = self.executor.deployments.get(alias)
        if dep is None:
            return None
        return TargetInfo(
            dep.alias, dep.provider.name, dep.model, dep.context_window, dep.max_output_tokens, dep.spec
        )

    async def embed(self, model: str, texts: Sequence[str], *, record: bool = True) -> Embeddings:
        """Embedding vectors from the deployment ``model`` (no fallback: vectors of
        another model are not comparable). With ``record`` (the default) its cost is
        added to this request's bill like any call; a classifier that reports the
        call itself (``Classification.call``, billed by the router) passes ``False``."""
        result = await self.executor.embed(model, texts)
        if record:
            self.ledger.add(
                Attempt(
                    result.deployment,
                    result.provider,
                    "ok",
                    result.latency_ms,
                    result.cost_usd,
                    usage=result.usage,
                    path=f"{self.path}.embed" if self.path else "embed",
                )
            )
        return result

    def child(self, segment: str, *, label: str | None = None) -> RunContext:
        """A context for a nested call, one path segment deeper."""
        ctx = RunContext(
            self.executor,
            path=f"{self.path}.{segment}" if self.path else segment,
            label=label if label is not None else self.label,
            metadata=self.metadata,
            deadline=self.deadline,
            ledger=CallLedger(self.ledger),
        )
        ctx._rng = self._rng  # the same (still lazy) random source
        return ctx

    def _scope(self, name: str | None, label: str | None) -> CallScope:
        """The executor's view of a call made through this context."""
        return CallScope(
            f"{self.path}.{name}" if name else self.path,
            label if label is not None else self.label,
            self.metadata,
            self.deadline,
            self.ledger,
        )

    async def call(
        self, target: Target, request: Request, *, name: str | None = None, label: str | None = None
    ) -> Response:
        """Run ``target`` (a model alias or a Strategy) on ``request``.

        ``name`` is this call's path segment (``"steps[2]"``, ``"cascade[1]"``). A
        nested strategy's answer comes back settled: it carries the cost of every
        call made on its behalf, whatever that strategy returned.
        """
        if isinstance(target, Strategy):
            child = self.child(name or target.name, label=label)
            return child.ledger.settle(await target.run(request, child))
        return await self.executor.complete(target, request, self._scope(name, label))

    def stream(
        self, target: Target, request: Request, *, name: str | None = None, label: str | None = None
    ) -> AsyncIterator[StreamEvent]:
        """Stream ``target``'s answer: deltas, then ``Done(response)`` (settled like
        ``call``'s answer for a nested strategy)."""
        if isinstance(target, Strategy):
            child = self.child(name or target.name, label=label)
            return _settled(target.stream(request, child), child.ledger)
        return self.executor.stream(target, request, self._scope(name, label))


async def _settled(events: AsyncIterator[StreamEvent], ledger: CallLedger) -> AsyncIterator[StreamEvent]:
    try:
        async for event in events:
            yield Done(ledger.settle(event.response)) if isinstance(event, Done) else event
    finally:
        aclose = getattr(events, "aclose", None)
        if aclose is not None:
            await aclose()


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

    @classmethod
    def from_config(
        cls,
        name: str,
        params: Mapping[str, Any],
        *,
        where: str,
        target: Callable[[Any, str], Target],
    ) -> Strategy:
        """Build from a ``[strategies.NAME]`` table's keys (``type`` excluded),
        resolving each target with ``target(value, field_path)``.

        The built-in strategies (and subclasses of them) read the table registered
        for their ``kind``, validated declaratively (docs/config.md lists each
        type's keys); a strategy of your own overrides this to read its own table.
        """
        from .._config.strategies import table_for

        table = table_for(cls).parse(params, where=where, target=target)
        return table.build(name, where=where, target=target, cls=cls)

    def explain(self, request: Request, ctx: RunContext | None = None) -> RouteInfo:
        """The decision this strategy would make for ``request``, without calling a model.

        ``ctx`` (when the orchestrator has one) lets a strategy consult deployments,
        e.g. the router's long-context check against a model's window.
        """
        return RouteInfo(self.name, None, f"{self.kind} strategy")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"
