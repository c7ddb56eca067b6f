"""Ensemble: ask several targets the same request, then aggregate.

Members run concurrently in one anyio task group, each through
``ctx.call(target, request, name="ensemble[i]")``, so each gets the executor's
fallbacks, retries, limits, budget and cost like any call. Two run shapes, chosen
by the aggregator (see ``aggregate``):

* gather-all (``MajorityVote``, ``JudgePick``, callables): wait for every member,
  then ``aggregate`` picks the answer. A member that fails is left out rather than
  failing the ensemble, as long as ``quorum`` members answer; once so many have
  failed that the quorum cannot be met, the rest are cancelled and
  ``AllTargetsFailed`` is raised at once, holding every member's error.
* race (``FirstValid``, ``Fastest``): the first answer ``accept`` approves wins and
  the task group's cancel scope cancels every other member mid-call.

Why failures are captured per member instead of letting the task group fail:
"a member's failure does not sink the ensemble while a quorum answers". Only
runtime failures (``TierwiseError`` other than ``ConfigError``) are captured;
configuration mistakes and bugs propagate, since a quorum must not hide them.

The returned ``Response`` is the chosen answer carrying the summed cost and usage
of every member that answered plus every call the aggregator made (a judge),
every inner attempt (failed members' too) in ``attempts``, one ``StepInfo`` per
member (``accepted`` marks the winner; failed and cancelled members say so in
``note``) plus one per aggregator call, and a ``route`` naming the answering
path, ``label="ensemble[i]"`` and the aggregator's reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import anyio

from ..errors import AllTargetsFailed, ConfigError, TierwiseError
from ..types import Attempt, Request, Response, RouteInfo, StepInfo
from ._compose import RecordingContext, combine, step_of
from .aggregate import (
    AggregateFn,
    Aggregator,
    AnswerRejected,
    as_aggregator,
)
from .base import RunContext, Strategy, Target

__all__ = ["Ensemble"]


class _Member:
    """One member's outcome in one run."""

    __slots__ = (
        "accepted",
        "cancelled",
        "error",
        "index",
        "latency_ms",
        "name",
        "note",
        "response",
        "target",
    )

    def __init__(self, index: int, target: Target) -> None:
        self.index = index
        self.target = target
        self.name = f"ensemble[{index}]"
        self.response: Response | None = None
        self.error: TierwiseError | None = None
        self.cancelled = False
        self.accepted: bool | None = None
        self.latency_ms = 0.0
        self.note = ""


def _target_name(target: Target) -> str:
    return target if isinstance(target, str) else target.name


class Ensemble(Strategy):
    """Run ``targets`` concurrently and aggregate their answers.

    ``aggregate``: an ``Aggregator`` (``MajorityVote()``, ``JudgePick("opus")``,
    ``FirstValid(check)``, ``Fastest()``), a name (``"vote"``, ``"fastest"``,
    ``"first_valid"``), or any callable ``(request, answers, ctx) -> Response``;
    default majority vote.

    ``quorum``: how many members must answer for a gather-all ensemble to answer.
    Default: the aggregator's (``MajorityVote``: a majority of the members,
    ``n // 2 + 1``; others: 1). A race needs exactly one valid answer, so
    ``quorum`` other than 1 is refused for race aggregators.

    Hooks for subclasses: ``aggregate`` (gather-all: choose the answer) and
    ``accept`` (race: may this answer win?).
    """

    kind = "ensemble"

    def __init__(
        self,
        targets: Sequence[Target],
        aggregate: Aggregator | str | AggregateFn | None = None,
        *,
        quorum: int | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(name=name)
        if isinstance(targets, str | Strategy) or not isinstance(targets, Sequence):
            raise TypeError("targets must be a list of model aliases or strategies")
        if not targets:
            raise ValueError("an ensemble needs at least one target")
        for t in targets:
            if not isinstance(t, str | Strategy):
                raise TypeError(f"ensemble target must be a model alias or a Strategy, got {t!r}")
        self.targets: list[Target] = list(targets)
        self.aggregator = as_aggregator(aggregate)
        n = len(self.targets)
        if quorum is not None:
            if isinstance(quorum, bool) or not isinstance(quorum, int) or not 1 <= quorum <= n:
                raise ValueError(
                    f"quorum must be an int from 1 to {n} (the number of targets), got {quorum!r}"
                )
            if self.aggregator.mode == "race" and quorum != 1:
                raise ValueError(
                    f"quorum={quorum} does not apply to {self.aggregator.kind!r}: a race answers with "
                    "the first valid member"
                )
        self.quorum = quorum if quorum is not None else self.aggregator.default_quorum(n)

    # ------------------------------------------------------------------ hooks

    async def aggregate(
        self, request: Request, answers: list[Response], ctx: RunContext
    ) -> tuple[Response, str]:
        """Gather-all hook: the chosen answer and the reason, from ``answers`` (the
        members that answered, in target order). Calls made through ``ctx`` are
        billed to the ensemble. Default: the configured aggregator's ``choose``."""
        return await self.aggregator.choose(request, answers, ctx)

    async def accept(self, request: Request, response: Response, ctx: RunContext) -> bool:
        """Race hook: may ``response`` win? Default: the configured aggregator's ``accept``."""
        return await self.aggregator.accept(request, response, ctx)

    # ------------------------------------------------------------------ running

    async def run(self, request: Request, ctx: RunContext) -> Response:
        start = ctx.now()
        members = [_Member(i, t) for i, t in enumerate(self.targets)]
        recorder = RecordingContext(ctx)
        if self.aggregator.mode == "race":
            chosen, reason = await self._race(request, ctx, recorder, members)
        else:
            chosen, reason = await self._gather(request, ctx, recorder, members)
        return self._result(chosen, reason, members, recorder, ctx, (ctx.now() - start) * 1000.0)

    async def _gather(
        self, request: Request, ctx: RunContext, recorder: RecordingContext, members: list[_Member]
    ) -> tuple[Response, str]:
        need = self.quorum
        allowed_failures = len(members) - need
        failures = 0
        crash: list[BaseException] = []

        async with anyio.create_task_group() as tg:

            async def one(m: _Member) -> None:
                nonlocal failures
                t0 = ctx.now()
                try:
                    m.response = await ctx.call(m.target, request, name=m.name)
                except anyio.get_cancelled_exc_class():
                    m.cancelled = True
                    hopeless = failures > allowed_failures
                    m.note = "cancelled: the quorum could no longer be met" if hopeless else "cancelled"
                    raise
                except Exception as raised:
                    exc = _member_error(raised, crash, tg.cancel_scope)
                    if exc is None:
                        return
                    m.error = exc
                    failures += 1
                    if failures > allowed_failures:
                        tg.cancel_scope.cancel()
                finally:
                    m.latency_ms = (ctx.now() - t0) * 1000.0

            for m in members:
                tg.start_soon(one, m, name=f"{ctx.path}.{m.name}")
        if crash:
            raise crash[0]
        answers = [m.response for m in members if m.response is not None]
        if len(answers) < need:
            raise self._failed(
                f"ensemble {self.name!r}: {len(answers)} of {len(members)} member(s) answered, "
                f"quorum is {need}",
                members,
            )
        return await self.aggregate(request, answers, recorder)

    async def _race(
        self, request: Request, ctx: RunContext, recorder: RecordingContext, members: list[_Member]
    ) -> tuple[Response, str]:
        winner: list[_Member] = []
        crash: list[BaseException] = []

        async with anyio.create_task_group() as tg:

            async def one(m: _Member) -> None:
                t0 = ctx.now()
                try:
                    m.response = await ctx.call(m.target, request, name=m.name)
                    m.latency_ms = (ctx.now() - t0) * 1000.0
                    m.accepted = await self.accept(request, m.response, recorder)
                except anyio.get_cancelled_exc_class():
                    m.cancelled = m.response is None
                    m.note = (
                        "cancelled: another member won the race"
                        if m.response is None
                        else "answered, but another member won while this one was being checked"
                    )
                    raise
                except Exception as raised:
                    exc = _member_error(raised, crash, tg.cancel_scope)
                    if exc is None:
                        return
                    if m.response is None:
                        m.error = exc
                    else:
                        m.accepted = False
                        m.note = f"check failed: {type(exc).__name__}: {exc}"
                    return
                finally:
                    if m.response is None:
                        m.latency_ms = (ctx.now() - t0) * 1000.0
                if m.accepted and not winner:
                    winner.append(m)
                    tg.cancel_scope.cancel()
                elif not m.accepted:
                    m.note = m.note or "answer rejected by the check"

            for m in members:
                tg.start_soon(one, m, name=f"{ctx.path}.{m.name}")
        if crash:
            raise crash[0]
        if not winner:
            raise self._failed(f"ensemble {self.name!r}: no member gave a valid answer", members)
        won = winner[0]
        assert won.response is not None
        others = []
        rejected = sum(1 for m in members if m.accepted is False)
        failed = sum(1 for m in members if m.error is not None)
        cancelled = sum(1 for m in members if m.cancelled)
        for count, what in ((rejected, "rejected"), (failed, "failed"), (cancelled, "cancelled")):
            if count:
                others.append(f"{count} {what}")
        tail = f" ({', '.join(others)})" if others else ""
        return won.response, f"{self.aggregator.kind}: {won.name} gave the first valid answer{tail}"

    def _failed(self, message: str, members: list[_Member]) -> AllTargetsFailed:
        errors: list[Exception] = []
        attempts: list[Attempt] = []
        for m in members:
            if m.error is not None:
                errors.append(m.error)
                attempts.extend(getattr(m.error, "attempts", ()))
            elif m.response is not None:
                attempts.extend(m.response.attempts)
                if m.accepted is False:
                    errors.append(AnswerRejected(f"{m.name}: {m.note or 'answer rejected'}", m.response))
        if not errors:  # cannot happen with quorum >= 1; keep the group non-empty anyway
            errors.append(TierwiseError(message))
        detail = "; ".join(
            f"{m.name}: {type(m.error).__name__}: {m.error}" for m in members if m.error is not None
        )
        return AllTargetsFailed(f"{message}{': ' + detail if detail else ''}", errors, attempts)

    def _result(
        self,
        chosen: Response,
        reason: str,
        members: list[_Member],
        recorder: RecordingContext,
        ctx: RunContext,
        latency_ms: float,
    ) -> Response:
        answered = [m.response for m in members if m.response is not None]
        extra = list(recorder.recorded)
        calls = answered + extra
        label = "aggregate"
        for m in members:
            if m.response is chosen:
                label = m.name
                m.accepted = True
            elif m.response is not None and self.aggregator.mode == "all":
                m.accepted = False
        steps: list[StepInfo] = []
        attempts: list[Attempt] = []
        failed_cost = 0.0
        for m in members:
            if m.response is not None:
                steps.append(
                    step_of(
                        m.name,
                        m.response,
                        accepted=m.accepted,
                        note=m.note,
                        kind="member",
                        verdict="accepted" if m.accepted else None,
                    )
                )
                attempts.extend(m.response.attempts)
                continue
            inner: list[Attempt] = list(getattr(m.error, "attempts", ()))
            cost = sum((a.cost_usd for a in inner if a.cost_usd is not None), 0.0)
            failed_cost += cost
            attempts.extend(inner)
            note = m.note if m.cancelled else f"failed: {type(m.error).__name__}: {m.error}"
            steps.append(
                StepInfo(
                    name=m.name,
                    path=f"{ctx.path}.{m.name}" if ctx.path else m.name,
                    model=_target_name(m.target),
                    cost_usd=cost,
                    latency_ms=m.latency_ms,
                    accepted=False if m.error is not None else None,
                    note=note[:300],
                    kind="member",
                    verdict="failed" if m.error is not None and not m.cancelled else None,
                )
            )
        for r in extra:
            segment = r.route.strategy_path.rsplit(".", 1)[-1] or "aggregate"
            steps.append(
                step_of(
                    segment,
                    r,
                    accepted=True if r is chosen else None,
                    verdict="accepted" if r is chosen else None,
                )
            )
            attempts.extend(r.attempts)
        answer = combine(
            chosen,
            calls,
            route=RouteInfo(chosen.route.strategy_path or ctx.path, label, reason),
            steps=steps,
            latency_ms=latency_ms,
        )
        total = answer.cost_usd
        if total is not None:
            total += failed_cost
        return replace(answer, attempts=attempts, cost_usd=total)

    # ------------------------------------------------------------------ describing

    def explain(self, request: Request, ctx: RunContext | None = None) -> RouteInfo:
        names = ", ".join(_target_name(t) for t in self.targets)
        quorum = f"; quorum {self.quorum} of {len(self.targets)}" if self.aggregator.mode == "all" else ""
        return RouteInfo(
            self.name,
            None,
            f"ensemble of {len(self.targets)} ({names}); {self.aggregator.describe()}{quorum}",
        )

    def __repr__(self) -> str:
        return f"Ensemble({self.targets!r}, {self.aggregator!r}, quorum={self.quorum}, name={self.name!r})"


def _member_error(
    exc: Exception, crash: list[BaseException], scope: anyio.CancelScope
) -> TierwiseError | None:
    """``exc`` when it is a member's own failure; ``None`` for a bug or a config
    error, which is noted and stops every member (the ensemble re-raises it once
    the group has ended)."""
    if isinstance(exc, ConfigError) or not isinstance(exc, TierwiseError):
        crash.append(exc)
        scope.cancel()
        return None
    return exc
