"""Cascade: try the cheap target first and escalate only when its answer is not good enough.

``Cascade(["haiku", "sonnet", "opus"], accept=verifier)`` calls each target in
order and stops at the first answer the verifier accepts, so most requests are
paid at the cheap rung and only the hard ones reach the strong model. The
tutorials report 60–80% savings over always calling the best model; the price is
latency on escalated requests and the verifier's own cost, both of which the
returned ``Response`` shows.

Decisions, and why:

* **Nothing accepted → the last answer.** When no rung passes, the answer of the
  last rung that answered is returned (the strongest model's attempt), with
  ``route.reason`` starting ``"not accepted"``. Raising would throw away a paid
  answer that is usually still the best available; callers who need a hard
  guarantee check ``response.route.reason`` or the last step's ``accepted``.
* **A rung that raises is skipped.** Provider failures (``AllTargetsFailed`` after
  the executor's own fallbacks), a plain ``BadRequestError`` (rungs are different
  models: a cheap one may lack a feature the request uses) and ``BudgetExceeded``
  (budgets can be per model) are recorded and the cascade escalates. Only when
  every rung raised does the cascade raise ``AllTargetsFailed`` holding every
  error. ``ConfigError`` (an unknown alias) is a bug and propagates at once.
* **No verdict → escalate.** A verifier that could not judge the answer (a
  judge whose call failed or whose reply was unparseable: ``Verdict.undecided``;
  or a verifier that raised a tierwise error) rejects, since an unchecked answer
  should not stop the cascade, but the rung's step note starts
  ``"verifier failed: "`` so training feedback does not count it as a bad answer.
* **Everything is billed.** The returned ``Response`` carries the summed cost and
  usage of every rung and every verifier call (a judge that rejected the cheap
  answer was still paid for), ``attempts`` lists every inner attempt in call
  order, and ``steps`` lists each rung (``accepted`` flag and the verdict's
  reason as note) followed by the verifier calls made to check it. Verifier calls
  are recorded as they happen, so a subclass ``accept`` that calls ``ctx.call``
  directly is billed even if it forgets ``Verdict.calls``.
* **Paths.** Rung ``i`` runs at ``<path>.cascade[i]``; a verifier's calls run
  beneath it (``<path>.cascade[0].judge``). ``route.strategy_path`` is the
  answering rung's path and ``route.label`` is ``"cascade[i]"``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from ..errors import AllTargetsFailed, ConfigError, TierwiseError
from ..types import (
    Attempt,
    Done,
    Request,
    Response,
    RouteInfo,
    StepInfo,
    StepVerdict,
    StreamEvent,
    TextDelta,
    ToolCallDelta,
    Usage,
)
from ..verify import Verdict, Verifier, VerifyFn, as_verifier
from ._compose import RecordingContext, combine, step_of
from .base import RunContext, Strategy, Target

__all__ = ["RUNG_FAILED", "VERIFIER_CALL", "VERIFIER_FAILED", "Cascade"]

# How a rung's step note (``StepInfo.note``) and ``route.reason`` say that no
# verdict was given, so readers of audit records (``routing.feedback``) need not
# repeat the literals. A rung whose own call raised has the note
# ``"failed: <Error>: …"``; a verifier that raised instead of judging turns into a
# rejection noted ``"verifier failed: <Error>: …"``, and one that reached no
# verdict (``Verdict.undecided``: a judge whose call failed) into a rejection noted
# ``"verifier failed: <its reason>"``; the steps of the model calls a verifier
# made are noted ``"verifier call"``.
RUNG_FAILED = "failed"
VERIFIER_FAILED = "verifier failed"
VERIFIER_CALL = "verifier call"


def _name(target: Target) -> str:
    return target if isinstance(target, str) else target.name


def _join(path: str, segment: str) -> str:
    return f"{path}.{segment}" if path else segment


def _failed_rung(exc: Exception, path: str, target: str, latency_ms: float) -> Response:
    """A stand-in response for a rung that raised, so ``combine`` sums its attempts
    (failed tries can still have consumed billed tokens) in call order."""
    attempts: list[Attempt] = [a for a in getattr(exc, "attempts", ()) or () if isinstance(a, Attempt)]
    usage = Usage()
    cost = 0.0
    for a in attempts:
        if a.usage is not None:
            usage = usage + a.usage
        if a.cost_usd is not None:
            cost += a.cost_usd
    return Response(
        text="",
        model=target,
        provider="",
        finish_reason="error",
        usage=usage,
        cost_usd=cost,
        latency_ms=latency_ms,
        attempts=attempts,
        route=RouteInfo(path, None, f"failed: {type(exc).__name__}"),
        deployment=target,
    )


class Cascade(Strategy):
    """Try ``targets`` in order; stop at the first answer ``accept`` accepts.

    ``targets`` are model aliases or strategies (a rung may itself be a router or
    another cascade). ``accept`` is a ``Verifier`` (compose with ``&``/``|``) or a
    plain function (wrapped in ``Check``). To decide differently, subclass and
    override the ``accept`` hook alone; ``accept=`` may then be omitted.

    ``verify_last=False`` skips checking the last rung's answer: it is returned
    either way, so a judge call there only buys a label in ``route.reason``.
    When ``ctx.deadline`` has passed, the cascade stops escalating and returns
    the last answer it has.

    Streaming: the cascade needs a whole answer before it can decide, so
    ``stream`` runs the cascade and then replays the chosen answer (text, then
    tool calls, then ``Done``); time to first token is the whole cascade's time.
    """

    kind = "cascade"

    def __init__(
        self,
        targets: Sequence[Target],
        accept: Verifier | VerifyFn | None = None,
        *,
        name: str | None = None,
        verify_last: bool = True,
    ) -> None:
        super().__init__(name=name)
        if isinstance(targets, str | Strategy):
            raise TypeError("targets must be a list of model aliases or strategies")
        self.targets: list[Target] = list(targets)
        if not self.targets:
            raise ValueError("a cascade needs at least one target")
        for t in self.targets:
            if not isinstance(t, str | Strategy):
                raise TypeError(f"cascade target must be a model alias or a Strategy, got {type(t).__name__}")
        self.verifier: Verifier | None = as_verifier(accept) if accept is not None else None
        if self.verifier is None and type(self).accept is Cascade.accept:
            raise TypeError("Cascade needs accept=<Verifier or function>, or a subclass overriding accept()")
        self.verify_last = verify_last

    # ------------------------------------------------------------------ the hook

    async def accept(self, request: Request, response: Response, ctx: RunContext) -> Verdict:
        """Is ``response`` good enough to stop at? Override to decide differently.

        The default asks the configured verifier. Model calls made here must go
        through ``ctx.call`` (they are then costed, counted and billed to the
        cascade's response).
        """
        if self.verifier is None:  # only reachable if a subclass calls super() without a verifier
            raise TypeError(f"{type(self).__name__} has no verifier; pass accept=...")
        return await self.verifier.check(request, response, ctx)

    # ------------------------------------------------------------------ running

    async def _check(
        self, request: Request, response: Response, ctx: RunContext, rung: str
    ) -> tuple[Verdict, list[Response]]:
        """Run the ``accept`` hook; returns the verdict and every call to bill.

        A verifier that fails with a tierwise error (its judge is down, the budget
        is spent) gives an undecided rejection (``Verdict.undecided``), like a
        built-in judge whose call failed: escalating is the safe side of an
        unchecked answer.
        """
        recording = RecordingContext(ctx, rung)
        try:
            verdict = await self.accept(request, response, recording)
        except ConfigError:
            raise
        except TierwiseError as exc:
            verdict = Verdict.undecided(f"{VERIFIER_FAILED}: {type(exc).__name__}: {exc}")
        billed = list(recording.recorded)
        billed += [c for c in verdict.calls if not any(c is r for r in billed)]
        return verdict, billed

    async def run(self, request: Request, ctx: RunContext) -> Response:
        start = ctx.now()
        calls: list[Response] = []  # everything paid for, in call order
        steps: list[StepInfo] = []
        errors: list[Exception] = []
        history: list[str] = []
        answered: tuple[int, Response, Verdict | None] | None = None
        accepted = False
        last = len(self.targets) - 1
        for i, target in enumerate(self.targets):
            rung, who = f"cascade[{i}]", _name(target)
            if answered is not None and ctx.deadline is not None and ctx.now() >= ctx.deadline:
                history.append(f"deadline reached before rung {i}")
                break
            t0 = ctx.now()
            try:
                response = await ctx.call(target, request, name=rung)
            except ConfigError:
                raise
            except TierwiseError as exc:
                errors.append(exc)
                failed = _failed_rung(exc, _join(ctx.path, rung), who, (ctx.now() - t0) * 1000.0)
                calls.append(failed)
                steps.append(
                    step_of(
                        rung,
                        failed,
                        accepted=False,
                        note=f"{RUNG_FAILED}: {type(exc).__name__}: {exc}",
                        kind="rung",
                        verdict="failed",
                    )
                )
                history.append(f"rung {i} ({who}) failed: {type(exc).__name__}")
                continue
            calls.append(response)
            if i == last and not self.verify_last:
                steps.append(step_of(rung, response, note="last rung, not verified", kind="rung"))
                answered = (i, response, None)
                break
            verdict, billed = await self._check(request, response, ctx, rung)
            calls.extend(billed)
            steps.append(
                step_of(
                    rung,
                    response,
                    accepted=verdict.accepted,
                    note=_note(verdict),
                    kind="rung",
                    verdict=_verdict(verdict),
                )
            )
            steps.extend(
                step_of(_step_name(rung, ctx.path, c), c, note=VERIFIER_CALL, kind="verifier_call")
                for c in billed
            )
            answered = (i, response, verdict)
            if verdict.accepted:
                accepted = True
                break
            history.append(f"rung {i} ({who}) rejected" + ("" if verdict.decided else " (no verdict)"))
        if answered is None:
            raise AllTargetsFailed(
                f"all {len(self.targets)} cascade rung(s) of {self.name!r} failed: "
                + "; ".join(f"{type(e).__name__}: {e}" for e in errors[-3:]),
                errors,
                [a for c in calls for a in c.attempts],
            )
        i, response, final = answered
        who = _name(self.targets[i])
        if final is None:
            reason = f"rung {i} ({who}) is the last; returned without verification"
        elif accepted:
            reason = f"accepted at rung {i} ({who}): {final.reason}"
        else:
            reason = (
                f"not accepted: no rung passed; returning rung {i} ({who}), the last answer: {final.reason}"
            )
        earlier = [h for h in history if not h.startswith(f"rung {i} ")]
        if earlier:
            reason += f" [{'; '.join(earlier)}]"
        score = final.score if final is not None else None
        route = RouteInfo(_join(ctx.path, f"cascade[{i}]"), f"cascade[{i}]", reason, score)
        return combine(response, calls, route=route, steps=steps, latency_ms=(ctx.now() - start) * 1000.0)

    async def stream(self, request: Request, ctx: RunContext) -> AsyncIterator[StreamEvent]:
        response = await self.run(request, ctx)
        if response.text:
            yield TextDelta(response.text)
        for index, call in enumerate(response.tool_calls):
            yield ToolCallDelta(index, call.id, call.name, call.raw_arguments)
        yield Done(response)

    def explain(self, request: Request, ctx: RunContext | None = None) -> RouteInfo:
        chain = " → ".join(_name(t) for t in self.targets)
        check = self.verifier.describe() if self.verifier is not None else f"{type(self).__name__}.accept()"
        return RouteInfo(
            self.name, "cascade[0]", f"try {chain} in order; stop at the first answer with {check}"
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, targets={[_name(t) for t in self.targets]})"


def _note(verdict: Verdict) -> str:
    """A rung step's note: the verdict's reason, prefixed ``"verifier failed: "``
    when no verdict was reached, so an audit reader can tell it from a rejection."""
    reason = verdict.reason
    if verdict.accepted or verdict.decided:
        return reason
    if reason == VERIFIER_FAILED or reason.startswith(VERIFIER_FAILED + ":"):
        return reason  # a verifier that raised: already says so
    return f"{VERIFIER_FAILED}: {reason}" if reason else VERIFIER_FAILED


def _verdict(verdict: Verdict) -> StepVerdict:
    if verdict.accepted:
        return "accepted"
    return "rejected" if verdict.decided else "undecided"


def _step_name(rung: str, path: str, call: Response) -> str:
    """``cascade[0].judge`` for a verifier call made beneath rung ``cascade[0]``."""
    prefix = _join(path, rung) + "."
    call_path = call.route.strategy_path
    return f"{rung}.{call_path[len(prefix) :]}" if call_path.startswith(prefix) else f"{rung}.verify"
