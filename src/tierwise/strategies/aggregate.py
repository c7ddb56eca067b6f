"""Ensemble aggregators: how several member answers become one.

An ensemble runs its members in one of two shapes, and an aggregator says which
(``Aggregator.mode``) because the two need different control flow, not just a
different final choice:

* ``"all"`` — gather every member's answer (members that fail are left out), then
  ``choose`` one: ``MajorityVote``, ``JudgePick``, or any async callable. Quality
  over latency: the ensemble is as slow as its slowest member.
* ``"race"`` — take the first member answer that ``accept`` approves and cancel the
  rest: ``FirstValid`` and ``Fastest`` (hedged requests). Latency over cost: the
  losers are cancelled mid-call, which releases their limiter slots, budget
  reservations and connections (the executor does that on cancellation), and
  they are billed nothing, because a cancelled call returns no usage to bill.

Aggregators never call providers directly: a judge calls its model through
``ctx.call`` like any strategy, and the ensemble bills every call made through
the context it hands to ``choose``/``accept``.
"""

from __future__ import annotations

import inspect
import re
import unicodedata
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Literal, TypeAlias

from ..errors import TierwiseError
from ..types import Request, Response
from .base import RunContext, Strategy, Target

__all__ = [
    "AGGREGATE_NAMES",
    "AggregateFn",
    "AggregateMode",
    "Aggregator",
    "AnswerRejected",
    "CallableAggregator",
    "Fastest",
    "FirstValid",
    "JudgePick",
    "MajorityVote",
    "VerifierFn",
    "as_aggregator",
    "complete_answer",
    "extract_final_answer",
    "normalize_answer",
]

AggregateMode: TypeAlias = Literal["all", "race"]

#: ``async (request, answers, ctx) -> Response`` (or ``(Response, reason)``), sync or
#: async: a custom choice. The return is typed ``Any`` so both shapes type-check.
AggregateFn: TypeAlias = Callable[[Request, list[Response], RunContext], Any]

#: ``(request, response, ctx) -> bool`` (sync or async): a check for ``FirstValid``.
VerifierFn: TypeAlias = Callable[[Request, Response, RunContext], Any]


class AnswerRejected(TierwiseError):
    """A member answered, but its answer failed the race's check.

    Raised only inside ``AllTargetsFailed`` when no member of a ``FirstValid`` race
    gave an acceptable answer; ``.response`` keeps the rejected answer (and its
    cost) so nothing the caller paid for is lost.
    """

    def __init__(self, message: str, response: Response) -> None:
        super().__init__(message)
        self.response = response


class Aggregator:
    """Base of every aggregator. Subclass and override ``choose`` (``mode = "all"``)
    or ``accept`` (``mode = "race"``).

    A base class rather than a bare Protocol because most aggregators need only one
    of the two methods, and the defaults (quorum of 1, accept everything) are the
    right ones for the other.
    """

    #: Short name used in reasons, ``explain`` and config (``aggregate = "vote"``).
    kind: ClassVar[str] = "custom"
    #: ``"all"``: gather every answer then ``choose``; ``"race"``: first ``accept`` ed answer wins.
    mode: ClassVar[AggregateMode] = "all"

    def default_quorum(self, members: int) -> int:
        """How many members must answer when the ensemble sets no ``quorum``."""
        return 1

    async def choose(
        self, request: Request, answers: Sequence[Response], ctx: RunContext
    ) -> tuple[Response, str]:
        """Pick (or make) the answer from ``answers`` (members in target order, failed
        members left out); return it and the reason shown in ``Response.route``."""
        raise NotImplementedError(f"{type(self).__name__} is a race aggregator; it has no choose()")

    async def accept(self, request: Request, response: Response, ctx: RunContext) -> bool:
        """Race mode: may ``response`` win? Called as each member answers."""
        return True

    def describe(self) -> str:
        """One line for ``explain``."""
        return self.kind

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


# --------------------------------------------------------------------------- majority vote

# "Answer: X", "**Final answer:** X", "answer = X" on a line of its own.
_ANSWER_LINE = re.compile(
    r"^[ \t>*_#-]*(?:final[ \t]+)?answer[ \t*_]*[:：=][ \t*_]*(?P<answer>\S.*?)[ \t]*$",
    re.IGNORECASE | re.MULTILINE,
)
_TRAILING_PUNCT = ".,;:!?。．，；：！？…"
_WRAPPERS = "\"'`*“”‘’«»"


def extract_final_answer(text: str) -> str:
    """The text after the LAST ``Answer:`` / ``Final answer:`` line, else ``text``.

    Models asked to reason first usually end with such a line; voting on the whole
    reply would split identical answers with different reasoning into different votes.
    """
    last = None
    for match in _ANSWER_LINE.finditer(text):
        last = match
    return last.group("answer") if last is not None else text


def normalize_answer(text: str) -> str:
    """The vote key of an answer: Unicode NFKC, whitespace collapsed, casefolded,
    wrapping quotes/backticks/asterisks and trailing punctuation removed.

    So ``"Paris."``, ``" paris"`` and ``"**Paris**"`` are one vote; ``"Paris, France"``
    is another (normalization is deliberately shallow: anything deeper is a
    ``normalize=`` function the caller writes for their answer format).
    """
    text = " ".join(unicodedata.normalize("NFKC", text).split()).casefold()
    while True:
        stripped = text.strip().strip(_WRAPPERS).rstrip(_TRAILING_PUNCT).strip()
        if stripped == text:
            return text
        text = stripped


def _show(key: str, limit: int = 40) -> str:
    return repr(key if len(key) <= limit else key[: limit - 1] + "…")


class MajorityVote(Aggregator):
    """The most common answer wins (the tutorial's classification ensemble).

    Answers are compared by their vote key: ``extract_final_answer`` (when
    ``extract_answer``) then ``normalize`` (default ``normalize_answer``). Members
    whose key is empty abstain.

    **Tie rule:** among answers tied for the most votes, the one given by the
    EARLIEST member in target order wins, and the returned response is that
    member's own answer. Order the targets best-first and a tie goes to the model
    you trust most. (This is a deterministic rule, not a random draw, so the same
    answers always give the same result.)

    Default quorum: a majority of the members (``n // 2 + 1``) must answer, since a
    vote among fewer is not a majority of anything.
    """

    kind = "vote"

    def __init__(self, normalize: Callable[[str], str] | None = None, *, extract_answer: bool = True) -> None:
        if normalize is not None and not callable(normalize):
            raise TypeError("normalize must be a callable str -> str")
        self.normalize = normalize or normalize_answer
        self.extract_answer = extract_answer

    def default_quorum(self, members: int) -> int:
        return members // 2 + 1

    def key(self, response: Response) -> str:
        """The vote key of one answer (override to vote on something else, e.g. a tool call)."""
        text = extract_final_answer(response.text) if self.extract_answer else response.text
        return self.normalize(text)

    async def choose(
        self, request: Request, answers: Sequence[Response], ctx: RunContext
    ) -> tuple[Response, str]:
        groups: dict[str, list[int]] = {}
        for i, response in enumerate(answers):
            key = self.key(response)
            if key:
                groups.setdefault(key, []).append(i)
        if not groups:
            return answers[0], f"majority vote: all {len(answers)} answer(s) empty; returning the first"
        # dicts keep insertion order, and keys are inserted in member order: among
        # equal counts, the first key is the one whose earliest member comes first.
        best = max(len(v) for v in groups.values())
        tied = [k for k, v in groups.items() if len(v) == best]
        winner = tied[0]
        tally = ", ".join(f"{_show(k)}={len(v)}" for k, v in groups.items())
        reason = f"majority vote: {_show(winner)} has {best} of {len(answers)} votes ({tally})"
        if len(tied) > 1:
            reason += f"; {len(tied)}-way tie broken by earliest member"
        return answers[groups[winner][0]], reason

    def describe(self) -> str:
        return "majority vote (ties: earliest member)"

    def __repr__(self) -> str:
        return f"MajorityVote(extract_answer={self.extract_answer!r})"


# --------------------------------------------------------------------------- judge

_JUDGE_SYSTEM = (
    "You compare candidate answers to a user's request and pick the best one. "
    "Judge correctness first, then completeness and clarity. Do not write a new answer."
)
_BEST = re.compile(r"\bbest\b[^0-9\n]{0,24}?#?\s*(\d+)", re.IGNORECASE)
_CANDIDATE = re.compile(r"\bcandidate\s*#?\s*(\d+)", re.IGNORECASE)
_BARE = re.compile(r"^\W*(\d+)\W*$")


class JudgePick(Aggregator):
    """A judge model reads the request and the numbered candidates and names the
    best; that member's answer is returned unchanged (the judge never rewrites it).

    The judge call goes through ``ctx.call`` (path ``<ensemble>.judge``), so it is
    rate-limited, retried and billed like any other; its cost is in the ensemble's
    total. With only one answer left (the others failed) the judge is not called.
    If the judge's reply names no valid candidate, the first answer is returned
    and the reason says so (the members' work is not thrown away over a chatty
    judge); a judge call that FAILS raises, since then nothing was judged.
    """

    kind = "judge"

    def __init__(self, judge: Target, rubric: str | None = None, *, name: str = "judge") -> None:
        if not isinstance(judge, str | Strategy):
            raise TypeError("judge must be a model alias or a Strategy")
        self.judge = judge
        self.rubric = rubric
        self.name = name

    def build_request(self, request: Request, answers: Sequence[Response]) -> Request:
        """The judge's prompt (override to change its wording)."""
        parts = [
            "Request:",
            "<request>",
            request.prompt_text.strip(),
            "</request>",
            "",
        ]
        for i, response in enumerate(answers, 1):
            parts += [f"Candidate {i}:", "<candidate>", response.text.strip(), "</candidate>", ""]
        if self.rubric:
            parts += ["Criteria:", self.rubric.strip(), ""]
        parts.append(
            f"Which candidate (1-{len(answers)}) is best? Explain briefly if you need to, "
            "then end with a last line of the form 'Best: <number>'."
        )
        return Request.from_prompt("\n".join(parts), system=_JUDGE_SYSTEM)

    def parse(self, text: str, count: int) -> int | None:
        """The 1-based candidate number the judge chose, or ``None``.

        In order: the last ``Best: N``; else the only candidate number mentioned as
        ``candidate N``; else a reply that is just a number. Numbers out of range
        are ignored.
        """
        best = [int(m.group(1)) for m in _BEST.finditer(text)]
        best = [n for n in best if 1 <= n <= count]
        if best:
            return best[-1]
        named = {int(m.group(1)) for m in _CANDIDATE.finditer(text)} & set(range(1, count + 1))
        if len(named) == 1:
            return named.pop()
        bare = _BARE.match(text.strip())
        if bare and 1 <= int(bare.group(1)) <= count:
            return int(bare.group(1))
        return None

    async def choose(
        self, request: Request, answers: Sequence[Response], ctx: RunContext
    ) -> tuple[Response, str]:
        if len(answers) == 1:
            return answers[0], "judge: only one answer; judge not called"
        verdict = await ctx.call(self.judge, self.build_request(request, answers), name=self.name)
        pick = self.parse(verdict.text, len(answers))
        if pick is None:
            return answers[0], (
                f"judge: reply named no candidate 1-{len(answers)} ({_show(verdict.text.strip(), 60)}); "
                "returning the first answer"
            )
        return answers[pick - 1], f"judge: picked candidate {pick} of {len(answers)}"

    def describe(self) -> str:
        judge = self.judge if isinstance(self.judge, str) else self.judge.name
        return f"judge pick by {judge}"

    def __repr__(self) -> str:
        return f"JudgePick({self.judge!r})"


# --------------------------------------------------------------------------- races


def _truthy(result: Any) -> bool:
    """A check's result as a decision: ``bool``; a verdict object's boolean
    ``accepted`` (``tierwise.verify.Verdict``); a 0-1 score, accepted at ``>= 0.5``
    (``tierwise.verify.Check``'s default threshold, so one function means the same
    in a cascade and a race)."""
    if isinstance(result, bool):
        return result
    accepted = getattr(result, "accepted", None)
    if isinstance(accepted, bool):
        return accepted
    if isinstance(result, int | float):
        return float(result) >= 0.5
    raise TypeError(f"a verifier must return bool, a 0-1 score or a Verdict, got {type(result).__name__}")


def complete_answer(response: Response) -> bool:
    """The default ``FirstValid`` check: the model finished normally (``stop`` or
    ``tool_calls``, not cut off, filtered or errored) and said something."""
    if response.finish_reason not in ("stop", "tool_calls"):
        return False
    return bool(response.text.strip() or response.tool_calls)


class FirstValid(Aggregator):
    """Hedged requests: every member starts at once, the first answer that passes
    ``verifier`` wins and the others are cancelled.

    ``verifier`` is a ``tierwise.verify`` verifier (anything with an async
    ``check(request, response, ctx)`` returning a ``Verdict``), or any callable
    ``(request, response, ctx)``, sync or async, returning ``bool``, a 0-1 score
    (accepted at ``>= 0.5``) or a ``Verdict``. Model calls it makes through ``ctx``
    are billed to the ensemble (not also from ``Verdict.calls``, which would count
    them twice). Without
    one, an answer is valid when it finished normally and is not empty
    (``complete_answer``): a truncated or filtered reply should not win a race just
    by being fast. If no member passes, the ensemble raises ``AllTargetsFailed``
    holding each failure and an ``AnswerRejected`` per rejected answer.
    """

    kind = "first_valid"
    mode = "race"

    def __init__(self, verifier: VerifierFn | Any | None = None) -> None:
        # Duck-typed rather than importing tierwise.verify: any object with a
        # ``check`` method works, and this module stays independent of it.
        check = getattr(verifier, "check", None)
        if verifier is not None and not callable(check) and not callable(verifier):
            raise TypeError("verifier must be a Verifier or a callable (request, response, ctx) -> bool")
        self.verifier = verifier
        self._check: Callable[[Request, Response, RunContext], Any] | None = (
            check if callable(check) else verifier
        )

    async def accept(self, request: Request, response: Response, ctx: RunContext) -> bool:
        if self._check is None:
            return complete_answer(response)
        result = self._check(request, response, ctx)
        if inspect.isawaitable(result):
            result = await result
        return _truthy(result)

    def describe(self) -> str:
        if self.verifier is None:
            return "first complete answer; the rest cancelled"
        describe = getattr(self.verifier, "describe", None)
        check = describe() if callable(describe) else getattr(self.verifier, "__name__", "check")
        return f"first answer passing {check}; the rest cancelled"

    def __repr__(self) -> str:
        return f"FirstValid({self.verifier!r})"


class Fastest(FirstValid):
    """The first member to answer wins, whatever it says; the rest are cancelled.
    For tail latency when any answer will do (an error still loses: a failed member
    simply drops out of the race)."""

    kind = "fastest"

    def __init__(self) -> None:
        super().__init__(None)

    async def accept(self, request: Request, response: Response, ctx: RunContext) -> bool:
        return True

    def describe(self) -> str:
        return "fastest answer; the rest cancelled"

    def __repr__(self) -> str:
        return "Fastest()"


# --------------------------------------------------------------------------- callables


class CallableAggregator(Aggregator):
    """Wraps ``fn(request, answers, ctx)`` returning a ``Response`` (or
    ``(Response, reason)``), sync or async.

    ``fn`` may return one of ``answers`` or a new response it made with
    ``ctx.call`` (a synthesis of all answers, say); either way the ensemble bills
    every call made through ``ctx``.
    """

    def __init__(self, fn: AggregateFn, *, quorum: int = 1) -> None:
        if not callable(fn):
            raise TypeError("an aggregate function must be callable (request, answers, ctx) -> Response")
        self.fn = fn
        self._quorum = quorum
        self.kind_name = getattr(fn, "__name__", type(fn).__name__)

    def default_quorum(self, members: int) -> int:
        return min(self._quorum, members)

    async def choose(
        self, request: Request, answers: Sequence[Response], ctx: RunContext
    ) -> tuple[Response, str]:
        result: Any = self.fn(request, list(answers), ctx)
        if inspect.isawaitable(result):
            result = await result
        if isinstance(result, tuple) and len(result) == 2 and isinstance(result[0], Response):
            return result[0], str(result[1])
        if not isinstance(result, Response):
            raise TypeError(
                f"aggregate function {self.kind_name} returned {type(result).__name__}, not Response"
            )
        return result, f"custom aggregator {self.kind_name}"

    def describe(self) -> str:
        return f"custom aggregator {self.kind_name}"

    def __repr__(self) -> str:
        return f"CallableAggregator({self.kind_name})"


#: Names accepted by ``as_aggregator`` / config ``aggregate = "..."`` (``judge`` needs a judge target).
AGGREGATE_NAMES = ("vote", "judge", "fastest", "first_valid")


def as_aggregator(value: Aggregator | str | AggregateFn | None, *, judge: Target | None = None) -> Aggregator:
    """Coerce what ``Ensemble(aggregate=...)`` accepts: an ``Aggregator``, a name
    (``"vote"``, ``"judge"`` with ``judge=``, ``"fastest"``, ``"first_valid"``), a
    callable, or ``None`` (majority vote)."""
    if value is None:
        return MajorityVote()
    if isinstance(value, Aggregator):
        return value
    if isinstance(value, str):
        if value == "vote":
            return MajorityVote()
        if value == "fastest":
            return Fastest()
        if value == "first_valid":
            return FirstValid()
        if value == "judge":
            if judge is None:
                raise ValueError('aggregate="judge" needs a judge model: use JudgePick("<alias>")')
            return JudgePick(judge)
        raise ValueError(f"unknown aggregate {value!r}; expected one of {', '.join(AGGREGATE_NAMES)}")
    if callable(value):
        return CallableAggregator(value)
    raise TypeError(f"aggregate must be an Aggregator, a name or a callable, got {type(value).__name__}")
