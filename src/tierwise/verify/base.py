"""The verifier contract: ``Verdict``, ``Verifier`` and the ``&`` / ``|`` / ``~`` combinators.

A cascade has to decide, answer by answer, whether to stop or escalate. That
decision is a ``Verifier``: ``await verifier.check(request, response, ctx)``
returns a ``Verdict``. Verifiers are small objects rather than bare functions so
they compose (``ValidJSON() & NoRefusal() | Judge("opus")``), describe themselves
in ``explain()`` output, and can be built from config.

A verifier that needs a model (self-rated confidence, a judge) calls it through
``ctx.call`` like any strategy does, so the call is rate-limited, retried, costed
and counted by the executor; it returns those responses in ``Verdict.calls`` so
the composite that asked can add them to the bill.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeAlias

from ..types import Request, Response

if TYPE_CHECKING:
    from ..strategies.base import RunContext

__all__ = ["AllOf", "AnyOf", "Check", "Not", "Verdict", "Verifier", "VerifyFn", "VerifyResult", "as_verifier"]


@dataclass(slots=True)
class Verdict:
    """The outcome of one check.

    ``score`` is the 0–1 figure a graded check computed (confidence, judge score),
    ``None`` for pass/fail checks. ``reason`` is one human-readable line that ends
    up in ``Response.route.reason``. ``calls`` are the responses of any model calls
    the verifier made — the exact objects ``ctx.call`` returned, so the cascade can
    bill each exactly once.

    ``decided`` is ``False`` when the check reached no verdict: its model call
    failed, its reply could not be read, it had nothing to check against. Such a
    verdict is a rejection (``Verdict.undecided``): escalating is the safe side of
    an unchecked answer, but it says nothing about whether the answer was good,
    so a cascade notes it as ``"verifier failed: …"`` and training feedback skips
    it. An acceptance is always decided (constructing one with ``decided=False``
    raises ``ValueError``).
    """

    accepted: bool
    score: float | None = None
    reason: str = ""
    calls: list[Response] = field(default_factory=list)
    decided: bool = True

    def __post_init__(self) -> None:
        if self.accepted and not self.decided:
            raise ValueError("an accepted Verdict is a decision: decided=False needs accepted=False")

    @classmethod
    def accept(cls, reason: str, *, score: float | None = None, calls: Iterable[Response] = ()) -> Verdict:
        return cls(True, score, reason, list(calls))

    @classmethod
    def reject(cls, reason: str, *, score: float | None = None, calls: Iterable[Response] = ()) -> Verdict:
        return cls(False, score, reason, list(calls))

    @classmethod
    def undecided(cls, reason: str, *, score: float | None = None, calls: Iterable[Response] = ()) -> Verdict:
        """No verdict was reached (the check's model call failed, its reply was
        unparseable): a rejection, so the caller escalates, with ``decided=False``."""
        return cls(False, score, reason, list(calls), decided=False)


VerifyResult: TypeAlias = "bool | float | Verdict"
#: A plain check: ``fn(response)``, ``fn(request, response)`` or ``fn(request, response, ctx)``,
#: sync or async, returning ``bool``, a 0–1 ``float`` or a ``Verdict``.
VerifyFn: TypeAlias = Callable[..., "VerifyResult | Awaitable[VerifyResult]"]


class Verifier(ABC):
    """Decides whether an answer is good enough to stop at.

    Subclass and implement ``check``. ``a & b`` accepts only when both accept and
    skips ``b`` when ``a`` already rejected; ``a | b`` accepts when either does and
    skips ``b`` when ``a`` already accepted — so an expensive judge placed second
    is only paid for when the cheap check could not decide. ``~a`` inverts.
    Plain callables are accepted on either side and wrapped in ``Check``.
    A check that cannot reach a verdict (its model call failed) returns
    ``Verdict.undecided``, a rejection marked ``decided=False``; see ``AllOf``,
    ``AnyOf`` and ``Not`` for how that combines.
    """

    #: Short name used in reasons, step names and ``describe()``.
    name: str = "verifier"

    @abstractmethod
    async def check(self, request: Request, response: Response, ctx: RunContext) -> Verdict:
        """Judge ``response`` to ``request``; make any model call through ``ctx.call``."""

    def describe(self) -> str:
        """What this check requires, for ``Strategy.explain`` (no model is called)."""
        return self.name

    def __and__(self, other: Verifier | VerifyFn) -> Verifier:
        return AllOf(self, as_verifier(other))

    def __rand__(self, other: Verifier | VerifyFn) -> Verifier:
        return AllOf(as_verifier(other), self)

    def __or__(self, other: Verifier | VerifyFn) -> Verifier:
        return AnyOf(self, as_verifier(other))

    def __ror__(self, other: Verifier | VerifyFn) -> Verifier:
        return AnyOf(as_verifier(other), self)

    def __invert__(self) -> Verifier:
        return Not(self)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.describe()}>"


def as_verifier(value: Verifier | VerifyFn) -> Verifier:
    """``value`` itself if it is a ``Verifier``, else a ``Check`` wrapping the callable."""
    if isinstance(value, Verifier):
        return value
    if callable(value):
        return Check(value)
    raise TypeError(f"expected a Verifier or a callable, got {type(value).__name__}")


def _min_score(verdicts: Iterable[Verdict]) -> float | None:
    scores = [v.score for v in verdicts if v.score is not None]
    return min(scores) if scores else None


def _max_score(verdicts: Iterable[Verdict]) -> float | None:
    scores = [v.score for v in verdicts if v.score is not None]
    return max(scores) if scores else None


def _flatten(cls: type[AllOf | AnyOf], verifiers: Iterable[Verifier | VerifyFn]) -> tuple[Verifier, ...]:
    """``verifiers`` as ``Verifier``s, with each one that is exactly a ``cls`` (a
    nested ``AllOf`` in an ``AllOf``) replaced by its own verifiers."""
    flat: list[Verifier] = []
    for v in verifiers:
        v = as_verifier(v)
        flat.extend(v.verifiers if isinstance(v, cls) and type(v) is cls else [v])
    if not flat:
        raise ValueError(f"{cls.__name__} needs at least one verifier")
    return tuple(flat)


async def _check_until(
    verifiers: Iterable[Verifier],
    stop_on: bool,
    score: Callable[[Iterable[Verdict]], float | None],
    request: Request,
    response: Response,
    ctx: RunContext,
) -> Verdict:
    """Run ``verifiers`` in order until one's ``accepted`` is ``stop_on``; the last
    verdict decides, reasons and calls are joined, ``score`` folds the scores.

    ``decided``: when a verdict stopped the run, the outcome is that verdict's,
    and so is ``decided``; when none did, every verifier ran and agreed, and the
    outcome is decided only if each of them was (an ``AnyOf`` whose judge could
    not answer might have been accepted by it).
    """
    seen: list[Verdict] = []
    stopped = False
    for verifier in verifiers:
        verdict = await verifier.check(request, response, ctx)
        seen.append(verdict)
        if bool(verdict.accepted) is stop_on:
            stopped = True
            break
    return Verdict(
        accepted=seen[-1].accepted,
        score=score(seen),
        reason="; ".join(v.reason for v in seen if v.reason),
        calls=[c for v in seen for c in v.calls],
        decided=seen[-1].decided if stopped else all(v.decided for v in seen),
    )


class AllOf(Verifier):
    """Accept only when every verifier accepts; stop at the first rejection.

    Order matters for cost: put cheap local checks before model-graded ones. The
    reason joins every reason checked so far; ``calls`` joins their model calls;
    ``score`` is the lowest score seen (the weakest link).

    ``decided``: an acceptance is decided; a rejection is as decided as the
    verdict that stopped the run. So a check that could not decide
    (``Verdict.undecided``) makes the whole an undecided rejection: every check
    before it accepted and the ones after it are skipped, as after any
    rejection, so nobody said the answer was bad.
    """

    name = "all"

    def __init__(self, *verifiers: Verifier | VerifyFn) -> None:
        self.verifiers: tuple[Verifier, ...] = _flatten(AllOf, verifiers)

    async def check(self, request: Request, response: Response, ctx: RunContext) -> Verdict:
        return await _check_until(self.verifiers, False, _min_score, request, response, ctx)

    def describe(self) -> str:
        return " and ".join(_group(v) for v in self.verifiers)


class AnyOf(Verifier):
    """Accept when any verifier accepts; stop at the first acceptance.

    The reason joins every reason checked so far; ``calls`` joins their model
    calls; ``score`` is the highest score seen.

    ``decided``: an acceptance is decided; a rejection (every verifier ran and
    rejected) is decided only when every one of them decided: one that could not
    decide might have accepted, so then the whole is an undecided rejection.
    """

    name = "any"

    def __init__(self, *verifiers: Verifier | VerifyFn) -> None:
        self.verifiers: tuple[Verifier, ...] = _flatten(AnyOf, verifiers)

    async def check(self, request: Request, response: Response, ctx: RunContext) -> Verdict:
        return await _check_until(self.verifiers, True, _max_score, request, response, ctx)

    def describe(self) -> str:
        return " or ".join(_group(v) for v in self.verifiers)


class Not(Verifier):
    """Accept exactly when ``verifier`` rejects (e.g. ``~Check(mentions_competitor)``).

    The score is kept as the inner verifier computed it: inverting a pass/fail
    decision does not make a judge's 0.2 a 0.8. No verdict stays no verdict: an
    undecided inner rejection (``~Judge(...)`` whose judge is down) is an
    undecided rejection here too, not an acceptance of an unchecked answer.
    """

    name = "not"

    def __init__(self, verifier: Verifier | VerifyFn) -> None:
        self.verifier = as_verifier(verifier)

    async def check(self, request: Request, response: Response, ctx: RunContext) -> Verdict:
        inner = await self.verifier.check(request, response, ctx)
        if not inner.decided:
            return Verdict.undecided(f"not ({inner.reason})", score=inner.score, calls=inner.calls)
        return Verdict(not inner.accepted, inner.score, f"not ({inner.reason})", inner.calls)

    def describe(self) -> str:
        return f"not {_group(self.verifier)}"


def _group(verifier: Verifier) -> str:
    text = verifier.describe()
    return f"({text})" if isinstance(verifier, AllOf | AnyOf) else text


def _arity(fn: Callable[..., Any]) -> int:
    """How many positional arguments ``fn`` takes (3 when it takes ``*args``)."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return 2
    count = 0
    for p in sig.parameters.values():
        if p.kind is inspect.Parameter.VAR_POSITIONAL:
            return 3
        if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD):
            count += 1
    return count


class Check(Verifier):
    """Any function as a verifier, sync or async.

    The function is called by how many positional parameters it declares:
    ``fn(response)``, ``fn(request, response)`` or ``fn(request, response, ctx)``
    (three or ``*args``; take ``ctx`` to make model calls). It returns ``bool``,
    a 0–1 number (accepted when ``>= threshold``) or a ``Verdict``. A function
    that calls a model through ``ctx.call`` inside a cascade is billed either way
    (the cascade records every call made while checking); returning the
    responses in ``Verdict.calls`` also bills them elsewhere.
    """

    def __init__(self, fn: VerifyFn, *, threshold: float = 0.5, name: str | None = None) -> None:
        if not callable(fn):
            raise TypeError(f"Check needs a callable, got {type(fn).__name__}")
        self.fn = fn
        self.threshold = threshold
        self.name = name or getattr(fn, "__name__", None) or type(fn).__name__
        self._arity = _arity(fn)

    async def check(self, request: Request, response: Response, ctx: RunContext) -> Verdict:
        if self._arity <= 1:
            result = self.fn(response)
        elif self._arity == 2:
            result = self.fn(request, response)
        else:
            result = self.fn(request, response, ctx)
        if inspect.isawaitable(result):
            result = await result
        if isinstance(result, Verdict):
            return result
        if isinstance(result, bool):
            return Verdict(result, None, f"{self.name}: {'passed' if result else 'failed'}")
        if isinstance(result, int | float):
            score = float(result)
            ok = score >= self.threshold
            sign = ">=" if ok else "<"
            return Verdict(ok, score, f"{self.name}: {score:.2f} {sign} {self.threshold:g}")
        raise TypeError(
            f"check {self.name!r} must return bool, a number or a Verdict, got {type(result).__name__}"
        )
