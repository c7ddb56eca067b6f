"""Shadow evaluation: answer as usual, and on a sample also ask a reference, in the background.

The tutorials' advice is "monitor for a week, then optimize". ``Shadow`` is the
monitor, without hand labels::

    shadow = tw.strategies.Shadow(router, reference="opus", sample=0.05,
                                  compare=SameAnswer(), max_cost_usd=20.0,
                                  feedback="shadow-feedback.jsonl", log="shadow.jsonl")

Every request is answered by ``target`` (a model alias or any strategy: a
router, a cascade) and that answer is returned at once. For a sampled share of
requests a background task then sends the same request to ``reference``,
compares the two answers (``compare``: ``SameAnswer`` locally, ``JudgeAgreement``
with a judge model, or any function) and records the outcome:

* a **feedback row** per comparison (``source = "shadow"``: good when the
  answers agree, bad when not, taking the reference as right), which
  ``tierwise train --feedback`` reads together with the audit log;
* a **shadow log** record (JSONL: route, models, agreement, both costs) that
  ``tierwise report --shadow`` summarizes: agreement rate per route and the
  projected cost and quality of the current routing against always using the
  reference;
* the in-process figures, in ``snapshot()`` and ``orch.metrics.snapshot()["shadow"]``.

Decisions, and why:

* **Never delays the answer.** The reference call and the comparison run in a
  task started after the answer is in hand; ``run`` returns without awaiting it.
  A reference failure is counted, never raised to the caller.
* **Billed apart.** Shadow calls run in a context with their own ledger, so the
  user's ``Response.cost_usd`` is what *answering* cost; the shadow's spend is
  its own line (``snapshot()["cost_usd"]``, the shadow log). They still go
  through the executor: rate limits, retries, metrics (at ``<path>.shadow``) and
  budgets apply. They carry the request metadata plus ``shadow = <name>``, so a
  budget with ``scope = "tag:shadow"`` (or ``tag:shadow=<name>``) is a hard cap
  the executor enforces by reservation, before any call is sent.
* **Its own cap, too.** ``max_cost_usd`` stops sampling once the shadow's
  spend, plus the mean cost of a comparison for each one still in flight,
  would pass it (a soft, per-process cap: the budget above is the hard one).
  ``max_pending`` bounds the comparisons in flight: under a burst the sample
  thins instead of piling up tasks (``skipped["backlog"]``).
* **Sampling is seeded** (the context's ``rng``), so a test or a replay samples
  the same requests.
* **Shutdown.** ``await shadow.drain()`` waits for the comparisons in flight;
  ``Orchestrator.aclose`` drains its top-level strategies before closing
  connections (a ``Shadow`` nested deeper needs its own ``drain``).
"""

from __future__ import annotations

import asyncio
import inspect
import json
import math
import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias, runtime_checkable

from ..errors import ConfigError, TierwiseError
from ..types import Done, Message, Request, Response, RouteInfo, StreamEvent
from ..verify.base import Verdict
from .base import CallLedger, RunContext, Strategy, Target

if TYPE_CHECKING:
    from ..observe.metrics import MetricsCollector

__all__ = ["Comparator", "CompareFn", "JudgeAgreement", "SameAnswer", "Shadow", "ShadowStats"]

_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")
_FINAL = re.compile(r"####\s*\$?\s*(-?[\d,]*\.?\d+)")


@runtime_checkable
class Comparator(Protocol):
    """Do ``answer`` and ``reference`` (two answers to ``request``) agree?

    Returns a ``Verdict``: ``accepted`` means they agree; ``score`` a 0–1 degree
    of agreement when graded; ``calls`` any model calls made (through ``ctx``).
    ``Verdict.undecided`` (a judge that could not answer) gives no feedback row.
    """

    name: str

    async def compare(
        self, request: Request, answer: Response, reference: Response, ctx: RunContext
    ) -> Verdict: ...


#: ``fn(request, answer, reference)`` → bool, a 0–1 number or a ``Verdict``, sync or async.
CompareFn: TypeAlias = Callable[[Request, Response, Response], "bool | float | Verdict | Awaitable[Any]"]


def _final_number(text: str) -> float | None:
    marked = _FINAL.search(text)
    raw = marked.group(1) if marked else (_NUMBER.findall(text) or [None])[-1]
    if raw is None:
        return None
    try:
        return float(raw.replace(",", ""))
    except ValueError:
        return None


def _normalized(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


class SameAnswer:
    """Local and free: agree when the final numbers match (both answers have one),
    else when the texts match once case, punctuation and spacing are ignored.

    Right for tasks with one short right answer (math, extraction, labels); for
    open-ended text use ``JudgeAgreement``.
    """

    name = "same_answer"

    def __init__(self, *, tolerance: float = 1e-6) -> None:
        self.tolerance = tolerance

    async def compare(
        self, request: Request, answer: Response, reference: Response, ctx: RunContext
    ) -> Verdict:
        a, b = _final_number(answer.text), _final_number(reference.text)
        if a is not None and b is not None:
            same = abs(a - b) <= self.tolerance * max(1.0, abs(b))
            return Verdict(same, 1.0 if same else 0.0, f"final numbers {a:g} vs {b:g}")
        same = _normalized(answer.text) == _normalized(reference.text)
        return Verdict(same, 1.0 if same else 0.0, "same text" if same else "texts differ")


_JUDGE_PROMPT = (
    "Two answers to the same request follow. Does the CANDIDATE say the same thing as the "
    "REFERENCE (same final answer, same facts; wording may differ)? Reply with a single "
    "number from 0 (contradicts it) to 10 (fully agrees).\n\nREQUEST:\n{request}\n\n"
    "REFERENCE:\n{reference}\n\nCANDIDATE:\n{candidate}\n\nAgreement (0-10):"
)


class JudgeAgreement:
    """A judge model rates 0–10 how far the answer agrees with the reference; one call.

    Agreement is ``score >= threshold``. The call goes through ``ctx`` (rate-limited,
    costed, counted at ``<path>.shadow.judge``) and its cost is the shadow's.
    """

    name = "judge_agreement"

    def __init__(self, target: Target, threshold: float = 0.7, *, max_tokens: int | None = 16) -> None:
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be within 0..1, got {threshold}")
        self.target = target
        self.threshold = threshold
        self.max_tokens = max_tokens

    async def compare(
        self, request: Request, answer: Response, reference: Response, ctx: RunContext
    ) -> Verdict:
        from ..verify.graded import parse_score

        prompt = _JUDGE_PROMPT.format(
            request=request.prompt_text, reference=reference.text, candidate=answer.text
        )
        judge_request = Request([Message("user", prompt)], max_tokens=self.max_tokens, temperature=0.0)
        try:
            reply = await ctx.call(self.target, judge_request, name="judge")
        except ConfigError:
            raise
        except TierwiseError as exc:
            return Verdict.undecided(f"judge call failed: {type(exc).__name__}")
        score = parse_score(reply.text, 10)
        if score is None:
            return Verdict.undecided(f"judge: unparseable reply {reply.text[:40]!r}", calls=[reply])
        ok = score >= self.threshold
        return Verdict(ok, score, f"judge agreement {score:.2f}", [reply])


class _FnComparator:
    def __init__(self, fn: CompareFn) -> None:
        self.fn = fn
        self.name = getattr(fn, "__name__", "compare")

    async def compare(
        self, request: Request, answer: Response, reference: Response, ctx: RunContext
    ) -> Verdict:
        result = self.fn(request, answer, reference)
        if inspect.isawaitable(result):
            result = await result
        if isinstance(result, Verdict):
            return result
        if isinstance(result, bool):
            return Verdict(result, 1.0 if result else 0.0, f"{self.name}: {'agree' if result else 'differ'}")
        if isinstance(result, int | float):
            score = float(result)
            return Verdict(score >= 0.5, score, f"{self.name}: {score:.2f}")
        raise TypeError(f"compare function {self.name!r} must return bool, a number or a Verdict")


def as_comparator(value: Comparator | CompareFn | None) -> Comparator:
    if value is None:
        return SameAnswer()
    if isinstance(value, Comparator):
        return value
    if callable(value):
        return _FnComparator(value)
    raise TypeError(f"compare must be a Comparator or a function, got {type(value).__name__}")


@dataclass(slots=True)
class _Route:
    compared: int = 0
    agreed: int = 0
    cost_usd: float = 0.0
    reference_cost_usd: float = 0.0
    priced: int = 0  # comparisons whose both costs are known

    def to_dict(self) -> dict[str, Any]:
        return {
            "compared": self.compared,
            "agreed": self.agreed,
            "agreement_rate": self.agreed / self.compared if self.compared else None,
            "cost_usd": self.cost_usd,
            "reference_cost_usd": self.reference_cost_usd,
            "priced": self.priced,
        }


@dataclass(slots=True)
class ShadowStats:
    """What one ``Shadow`` has seen: per route, and its own spend."""

    requests: int = 0
    sampled: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    errors: int = 0
    undecided: int = 0
    cost_usd: float = 0.0
    unknown_cost: int = 0
    routes: dict[str, _Route] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        total = _Route()
        for r in self.routes.values():
            total.compared += r.compared
            total.agreed += r.agreed
            total.cost_usd += r.cost_usd
            total.reference_cost_usd += r.reference_cost_usd
            total.priced += r.priced
        return {
            "requests": self.requests,
            "sampled": self.sampled,
            "skipped": dict(sorted(self.skipped.items())),
            "errors": self.errors,
            "undecided": self.undecided,
            "cost_usd": self.cost_usd,
            "unknown_cost": self.unknown_cost,
            "routes": {k: v.to_dict() for k, v in sorted(self.routes.items())},
            "projection": projection(total.to_dict()),
        }


def projection(total: Mapping[str, Any]) -> dict[str, Any]:
    """Current routing against always using the reference, over the compared requests.

    Quality is measured against the reference (its own answers count as 100%):
    current routing keeps ``agreement_rate`` of it. Cost is the mean per request
    of each, over the comparisons with both prices known.
    """
    priced = total.get("priced") or 0
    current = total["cost_usd"] / priced if priced else None
    reference = total["reference_cost_usd"] / priced if priced else None
    return {
        "current": {"quality_vs_reference": total.get("agreement_rate"), "cost_per_request_usd": current},
        "reference": {
            "quality_vs_reference": 1.0 if total.get("compared") else None,
            "cost_per_request_usd": reference,
        },
        "cost_ratio": current / reference if current is not None and reference else None,
    }


def _route_key(response: Response) -> str:
    return response.route.label or response.deployment or response.model


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Shadow(Strategy):
    """Answer with ``target``; on a sampled share also ask ``reference``, compare, record.

    ``sample`` is the share of requests shadowed (0..1). ``compare`` a
    ``Comparator`` (default ``SameAnswer()``) or a function
    ``fn(request, answer, reference)``. ``feedback`` and ``log`` are JSONL
    paths (appended to; either may be omitted). ``max_cost_usd`` caps the
    shadow's own spend, ``max_pending`` the comparisons in flight,
    ``timeout_s`` each comparison (on the executor's clock). Rows are stamped
    with the executor clock's ``wall()`` (a ``FakeClock`` in tests), or with
    ``wall_clock()`` when given (Unix seconds).
    """

    kind = "shadow"

    def __init__(
        self,
        target: Target,
        reference: Target,
        *,
        compare: Comparator | CompareFn | None = None,
        sample: float = 0.1,
        max_cost_usd: float | None = None,
        max_pending: int = 16,
        timeout_s: float | None = 120.0,
        feedback: str | os.PathLike[str] | None = None,
        log: str | os.PathLike[str] | None = None,
        name: str | None = None,
        wall_clock: Callable[[], float] | None = None,
    ) -> None:
        super().__init__(name=name)
        for what, t in (("target", target), ("reference", reference)):
            if not isinstance(t, str | Strategy):
                raise TypeError(f"shadow {what} must be a model alias or a Strategy, got {type(t).__name__}")
        if isinstance(sample, bool) or not isinstance(sample, int | float) or not 0.0 <= sample <= 1.0:
            raise ValueError(f"sample must be a share within 0..1, got {sample!r}")
        if max_cost_usd is not None and not (math.isfinite(max_cost_usd) and max_cost_usd >= 0):
            raise ValueError(f"max_cost_usd must be a number >= 0, got {max_cost_usd!r}")
        if max_pending < 1:
            raise ValueError(f"max_pending must be at least 1, got {max_pending}")
        self.target = target
        self.reference = reference
        self.comparator = as_comparator(compare)
        self.sample = float(sample)
        self.max_cost_usd = max_cost_usd
        self.max_pending = max_pending
        self.timeout_s = timeout_s
        self.feedback_path = feedback
        self.log_path = log
        self.wall_clock = wall_clock
        self.stats = ShadowStats()
        self._tasks: set[asyncio.Task[None]] = set()
        self._metrics: MetricsCollector | None = None

    # ------------------------------------------------------------------ answering

    async def run(self, request: Request, ctx: RunContext) -> Response:
        response = await ctx.call(self.target, request)
        self._maybe_shadow(request, response, ctx)
        return response

    def _maybe_shadow(self, request: Request, response: Response, ctx: RunContext) -> None:
        """Sample; when sampled, start the comparison task and return at once."""
        self.stats.requests += 1
        reason = self._skip_reason(response, ctx)
        if reason is not None:
            if reason != "not_sampled":
                self.stats.skipped[reason] = self.stats.skipped.get(reason, 0) + 1
            return
        self.stats.sampled += 1
        metadata = {**ctx.metadata, "shadow": self.name}
        shadow_ctx = RunContext(
            ctx.executor,
            path=f"{ctx.path}.shadow" if ctx.path else "shadow",
            label="shadow",
            metadata=metadata,
            deadline=None if self.timeout_s is None else ctx.now() + self.timeout_s,
            ledger=CallLedger(),  # detached: not billed to the user's request
        )
        self._metrics = getattr(ctx.executor, "metrics", None)
        task = asyncio.get_running_loop().create_task(self._compare(request, response, shadow_ctx))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _skip_reason(self, response: Response, ctx: RunContext) -> str | None:
        if self.sample <= 0.0 or (self.sample < 1.0 and ctx.rng.random() >= self.sample):
            return "not_sampled"
        if not response.text.strip():
            return "no_text"
        if len(self._tasks) >= self.max_pending:
            return "backlog"
        if self.max_cost_usd is not None:
            done = self.stats.sampled - len(self._tasks)
            mean = self.stats.cost_usd / done if done > 0 else 0.0
            if self.stats.cost_usd + mean * (len(self._tasks) + 1) > self.max_cost_usd:
                return "budget"
        return None

    # ------------------------------------------------------------------ the background half

    async def _compare(self, request: Request, answer: Response, ctx: RunContext) -> None:
        try:
            reference = await ctx.call(self.reference, request, name="reference")
            verdict = await self.comparator.compare(request, answer, reference, ctx)
        except asyncio.CancelledError:
            self._charge(ctx)
            raise
        except Exception as exc:  # a failed shadow never reaches the caller; it is counted
            self._charge(ctx)
            self.stats.errors += 1
            self._write_log(request, answer, None, None, ctx, error=type(exc).__name__)
            return
        self._charge(ctx)
        if not verdict.decided:
            self.stats.undecided += 1
            self._write_log(request, answer, reference, verdict, ctx)
            return
        key = _route_key(answer)
        route = self.stats.routes.setdefault(key, _Route())
        route.compared += 1
        route.agreed += int(verdict.accepted)
        if answer.cost_usd is not None and reference.cost_usd is not None:
            route.cost_usd += answer.cost_usd
            route.reference_cost_usd += reference.cost_usd
            route.priced += 1
        if self._metrics is not None:
            self._metrics.record_shadow(
                self.name,
                key,
                agreed=verdict.accepted,
                cost_usd=answer.cost_usd,
                reference_cost_usd=reference.cost_usd,
            )
        self._write_feedback(request, answer, verdict, ctx)
        self._write_log(request, answer, reference, verdict, ctx)

    def _charge(self, ctx: RunContext) -> None:
        cost = ctx.ledger.cost_usd
        if cost is None:
            self.stats.unknown_cost += 1
            cost = math.fsum(a.cost_usd for a in ctx.ledger.attempts if a.cost_usd is not None)
        self.stats.cost_usd += cost

    def _stamp(self, ctx: RunContext) -> str:
        return _iso(self.wall_clock() if self.wall_clock is not None else ctx.executor.clock.wall())

    def _write_feedback(self, request: Request, answer: Response, verdict: Verdict, ctx: RunContext) -> None:
        if self.feedback_path is None:
            return
        from ..routing.feedback import Feedback, write_feedback

        score = 1.0 if verdict.accepted else 0.0
        row = Feedback.for_response(request, answer, score=score, source="shadow", ts=self._stamp(ctx))
        write_feedback(self.feedback_path, [row])

    def _write_log(
        self,
        request: Request,
        answer: Response,
        reference: Response | None,
        verdict: Verdict | None,
        ctx: RunContext,
        *,
        error: str | None = None,
    ) -> None:
        if self.log_path is None:
            return
        from ..routing.feedback import request_hash

        record: dict[str, Any] = {
            "ts": self._stamp(ctx),
            "shadow": self.name,
            "request_hash": request_hash(request),
            "route": _route_key(answer),
            "model": answer.deployment or answer.model,
            "reference_model": None if reference is None else (reference.deployment or reference.model),
            "agreed": None if verdict is None or not verdict.decided else verdict.accepted,
            "score": None if verdict is None else verdict.score,
            "reason": error if verdict is None else verdict.reason,
            "cost_usd": answer.cost_usd,
            "reference_cost_usd": None if reference is None else reference.cost_usd,
            "shadow_cost_usd": ctx.ledger.cost_usd,
        }
        if error is not None:
            record["error"] = error
        with open(self.log_path, "a", encoding="utf-8", newline="\n") as fh:
            fh.write(json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n")

    # ------------------------------------------------------------------ lifecycle and reading

    @property
    def pending(self) -> int:
        """Comparisons still in flight."""
        return len(self._tasks)

    async def drain(self, timeout_s: float | None = 30.0) -> None:
        """Wait for the comparisons in flight; cancel what is left after ``timeout_s``
        (real seconds: shutdown is not a test's fake time)."""
        tasks = list(self._tasks)
        if not tasks:
            return
        _, late = await asyncio.wait(tasks, timeout=timeout_s)
        for task in late:
            task.cancel()
        if late:
            await asyncio.wait(late)

    def snapshot(self) -> dict[str, Any]:
        """Agreement per route, the shadow's spend and the projection (plain JSON data)."""
        out = self.stats.to_dict()
        out["pending"] = self.pending
        return out

    async def stream(self, request: Request, ctx: RunContext) -> AsyncIterator[StreamEvent]:
        """Streams the target's answer as it comes; the comparison starts once it is done."""
        async for event in ctx.stream(self.target, request):
            if isinstance(event, Done):
                self._maybe_shadow(request, event.response, ctx)
            yield event

    def explain(self, request: Request, ctx: RunContext | None = None) -> RouteInfo:
        who = self.target if isinstance(self.target, str) else self.target.name
        ref = self.reference if isinstance(self.reference, str) else self.reference.name
        return RouteInfo(
            self.name,
            None,
            f"answer with {who}; shadow {self.sample:.0%} of requests to {ref} ({self.comparator.name})",
        )

    def __repr__(self) -> str:
        return f"Shadow(name={self.name!r}, sample={self.sample:g}, pending={self.pending})"
