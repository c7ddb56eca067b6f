"""Ensemble: majority vote, judge pick, first-valid/fastest races, quorum, cost.

In-process tests run on FakeProvider / FunctionProvider with a FakeClock, so
"slow" members cost no wall time and the order members finish in is fixed by
virtual latencies. Races assert that losers were really cancelled mid-call (they
record it) and that their limiter slot and budget reservation came back. The
MockLLMServer tests run the same over real sockets, including a hung member
whose connection must be closed when it loses.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import anyio
import pytest

from tierwise.catalog import ModelSpec
from tierwise.errors import AllTargetsFailed, ConfigError, ServerError
from tierwise.execution.budget import BudgetLedger, BudgetLimit
from tierwise.execution.executor import Deployment, Executor
from tierwise.execution.limits import RateLimiter
from tierwise.execution.retry import RetryPolicy
from tierwise.orchestrator import Orchestrator
from tierwise.providers.openai import OpenAI
from tierwise.strategies.aggregate import (
    AnswerRejected,
    Fastest,
    FirstValid,
    JudgePick,
    MajorityVote,
    extract_final_answer,
    normalize_answer,
)
from tierwise.strategies.base import RunContext, Strategy
from tierwise.strategies.ensemble import Ensemble
from tierwise.strategies.single import Single
from tierwise.testing import FakeClock, FakeProvider, FunctionProvider, MockLLMServer, MockModel
from tierwise.testing.fakes import estimate_tokens
from tierwise.types import Done, Request, Response, TextDelta, Usage

NO_RETRY = RetryPolicy(max_attempts=1)
# Distinct prices per model, so a sum that misses or double-counts a call is visibly wrong.
PRICES = {"a": (1.0, 2.0), "b": (3.0, 5.0), "c": (7.0, 11.0), "d": (13.0, 17.0), "e": (19.0, 23.0)}
PRICES |= {"judge": (29.0, 31.0), "j": (29.0, 31.0)}


def spec(alias: str) -> ModelSpec:
    inp, out = PRICES.get(alias, (1.0, 1.0))
    return ModelSpec(alias, "fake", input=inp, output=out)


def executor(
    provider: Any,
    aliases: Sequence[str],
    *,
    clock: FakeClock | None = None,
    limiters: Mapping[str, RateLimiter] | None = None,
    budget: BudgetLedger | None = None,
) -> Executor:
    deps = {a: Deployment(a, provider, a, spec=spec(a), limiter=(limiters or {}).get(a)) for a in aliases}
    kwargs: dict[str, Any] = {"clock": clock} if clock is not None else {}
    return Executor(deps, retry=NO_RETRY, budget=budget, **kwargs)


def expected_cost(alias: str, prompt: str, reply: str) -> float:
    """What one FakeProvider call costs, computed independently of the code under test."""
    inp, out = PRICES[alias]
    return (max(1, estimate_tokens(prompt)) * inp + estimate_tokens(reply) * out) / 1e6


async def run(
    strategy: Strategy, ex: Executor, prompt: str | Request = "What is the capital of France?"
) -> Response:
    request = prompt if isinstance(prompt, Request) else Request.from_prompt(prompt)
    return await strategy.run(request, RunContext(ex, path=strategy.name))


def per_model(replies: Mapping[str, Any]) -> FakeProvider:
    return FakeProvider(dict(replies))


Q = "What is the capital of France?"


# -- normalization ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ("Paris", "paris"),
        ("  Paris.  ", "paris"),
        ("**Paris**.", "paris"),
        ('"PARIS!"', "paris"),
        ("New   York\n City", "new york city"),
        ("Paris, France", "paris, france"),
        ("...", ""),
    ],
)
def test_normalize_answer(raw: str, key: str) -> None:
    assert normalize_answer(raw) == key


def test_extract_final_answer_takes_the_last_answer_line() -> None:
    text = "Let me think. The answer: maybe Lyon?\nNo.\n**Final answer:** Paris"
    assert extract_final_answer(text) == "Paris"
    assert extract_final_answer("Answer: 42\nsome trailing words") == "42"
    assert extract_final_answer("no marker here") == "no marker here"


# -- majority vote --------------------------------------------------------------------


async def test_vote_normalizes_answers_and_returns_the_majority() -> None:
    provider = per_model({"a": "London", "b": "Reasoning first...\nAnswer: **Paris**.", "c": " paris "})
    ens = Ensemble(["a", "b", "c"], MajorityVote(), name="vote")
    resp = await run(ens, executor(provider, "abc"))
    assert resp.text == "Reasoning first...\nAnswer: **Paris**."  # the earliest member of the winning group
    assert resp.route.label == "ensemble[1]"
    assert resp.route.strategy_path == "vote.ensemble[1]"
    assert "'paris' has 2 of 3 votes" in resp.route.reason
    assert "'london'=1" in resp.route.reason
    assert [s.accepted for s in resp.steps] == [False, True, False]


async def test_vote_without_extraction_compares_whole_texts() -> None:
    provider = per_model({"a": "x\nAnswer: Paris", "b": "y\nAnswer: Paris", "c": "x\nAnswer: Paris"})
    ens = Ensemble(["a", "b", "c"], MajorityVote(extract_answer=False))
    resp = await run(ens, executor(provider, "abc"))
    assert resp.route.label == "ensemble[0]"
    assert "2 of 3" in resp.route.reason  # "x…" twice, "y…" once


@pytest.mark.parametrize(
    ("replies", "label", "text"),
    [
        # 2-2 tie: the group whose earliest member comes first wins (a, "London").
        ({"a": "London", "b": "Paris", "c": "paris!", "d": "london"}, "ensemble[0]", "London"),
        # The first member is in neither tied group: b (London) beats c (Paris).
        ({"a": "Rome", "b": "London", "c": "Paris", "d": "paris", "e": "LONDON"}, "ensemble[1]", "London"),
        # All different: a 1-1-1 tie goes to the first member.
        ({"a": "Rome", "b": "London", "c": "Paris"}, "ensemble[0]", "Rome"),
    ],
)
async def test_vote_tie_goes_to_the_earliest_member(replies: dict[str, str], label: str, text: str) -> None:
    ens = Ensemble(list(replies), MajorityVote())
    resp = await run(ens, executor(per_model(replies), list(replies)))
    assert (resp.route.label, resp.text) == (label, text)
    assert "tie broken by earliest member" in resp.route.reason


async def test_vote_tie_rule_follows_target_order_not_finish_order() -> None:
    """The earliest member in TARGET order wins a tie even when it answered last."""
    clock = FakeClock()
    delays = {"a": 5.0, "b": 1.0}

    async def reply(model: str, request: Request) -> str:
        await clock.sleep(delays[model])
        return {"a": "Paris", "b": "London"}[model]

    ens = Ensemble(["a", "b"], MajorityVote(), quorum=2)
    resp = await run(ens, executor(FunctionProvider(reply, clock=clock), "ab", clock=clock))
    assert (resp.route.label, resp.text) == ("ensemble[0]", "Paris")
    assert resp.latency_ms == pytest.approx(5000.0)  # members ran concurrently: max, not sum


async def test_vote_sums_cost_usage_and_attempts_of_every_member_exactly() -> None:
    replies = {"a": "Paris", "b": "Paris.", "c": "Lyon"}
    ens = Ensemble(["a", "b", "c"])  # default aggregate: majority vote
    resp = await run(ens, executor(per_model(replies), "abc"), Q)
    want = sum(expected_cost(m, Q, r) for m, r in replies.items())
    assert resp.cost_usd == pytest.approx(want, rel=1e-12)
    assert resp.usage.input_tokens == 3 * estimate_tokens(Q)
    assert resp.usage.output_tokens == sum(estimate_tokens(r) for r in replies.values())
    assert [a.model for a in resp.attempts] == ["a", "b", "c"]
    assert [a.path for a in resp.attempts] == [
        "ensemble.ensemble[0]",
        "ensemble.ensemble[1]",
        "ensemble.ensemble[2]",
    ]
    assert [s.name for s in resp.steps] == ["ensemble[0]", "ensemble[1]", "ensemble[2]"]
    assert [s.cost_usd for s in resp.steps] == pytest.approx(
        [expected_cost(m, Q, r) for m, r in replies.items()]
    )


async def test_vote_with_unknown_price_reports_none_not_a_partial_sum() -> None:
    provider = per_model({"a": "x", "b": "x", "c": "x"})
    deps = {a: Deployment(a, provider, a, spec=spec(a) if a != "c" else None) for a in "abc"}
    resp = await run(Ensemble(["a", "b", "c"]), Executor(deps, retry=NO_RETRY))
    assert resp.cost_usd is None


# -- quorum and failures ----------------------------------------------------------------------


async def test_one_member_failing_does_not_sink_the_vote() -> None:
    provider = per_model({"a": "Paris", "b": ServerError("down", status_code=503), "c": "Paris"})
    resp = await run(Ensemble(["a", "b", "c"]), executor(provider, "abc"), Q)
    assert resp.text == "Paris"
    assert "2 of 2 votes" in resp.route.reason
    failed = resp.steps[1]
    assert failed.accepted is False and failed.note.startswith("failed: AllTargetsFailed")
    assert failed.path == "ensemble.ensemble[1]" and failed.model == "b"
    # The failed try is in the audit trail; the bill is the two answers.
    assert [(a.model, a.outcome) for a in resp.attempts] == [("a", "ok"), ("b", "error"), ("c", "ok")]
    assert resp.cost_usd == pytest.approx(expected_cost("a", Q, "Paris") + expected_cost("c", Q, "Paris"))


async def test_too_many_failures_raise_all_targets_failed_and_cancel_the_rest() -> None:
    clock = FakeClock()
    cancelled: list[str] = []

    async def reply(model: str, request: Request) -> str:
        if model == "c":
            try:
                await clock.sleep(1000.0)
            except BaseException:
                cancelled.append(model)
                raise
            return "late"
        await clock.sleep(1.0)
        raise ServerError(f"{model} down", status_code=500)

    ens = Ensemble(["a", "b", "c"])  # vote: quorum 2 of 3
    with pytest.raises(AllTargetsFailed) as info:
        await run(ens, executor(FunctionProvider(reply, clock=clock), "abc", clock=clock))
    err = info.value
    assert len(err.exceptions) == 2
    assert all(isinstance(e, AllTargetsFailed) for e in err.exceptions)
    assert "0 of 3 member(s) answered, quorum is 2" in str(err)
    assert {a.model for a in err.attempts} == {"a", "b"}
    # Once the quorum was out of reach, the third member was cancelled, not awaited.
    assert cancelled == ["c"]
    assert clock.now() == pytest.approx(1.0)


async def test_explicit_quorum_is_enforced() -> None:
    provider = per_model({"a": "x", "b": ServerError("down", status_code=500), "c": "y"})
    with pytest.raises(AllTargetsFailed, match="2 of 3 member"):
        await run(Ensemble(["a", "b", "c"], quorum=3), executor(provider, "abc"))
    resp = await run(Ensemble(["a", "b", "c"], quorum=2), executor(provider, "abc"))
    assert resp.text == "x"


def test_quorum_validation() -> None:
    with pytest.raises(ValueError, match="quorum"):
        Ensemble(["a", "b"], quorum=3)
    with pytest.raises(ValueError, match="quorum"):
        Ensemble(["a", "b"], quorum=0)
    with pytest.raises(ValueError, match="race"):
        Ensemble(["a", "b"], Fastest(), quorum=2)
    with pytest.raises(ValueError, match="at least one"):
        Ensemble([])
    assert Ensemble(["a", "b", "c", "d"]).quorum == 3  # majority
    assert Ensemble(["a", "b", "c"], JudgePick("j")).quorum == 1


class Boom(Strategy):
    kind = "boom"

    async def run(self, request: Request, ctx: RunContext) -> Response:
        raise RuntimeError("a bug, not a provider failure")


async def test_a_bug_in_a_member_propagates_instead_of_being_outvoted() -> None:
    ens = Ensemble(["a", "b", Boom()])
    with pytest.raises(RuntimeError, match="a bug"):
        await run(ens, executor(per_model({"a": "x", "b": "x"}), "ab"))


async def test_unknown_model_alias_is_a_config_error_not_a_member_failure() -> None:
    with pytest.raises(ConfigError, match="unknown model"):
        await run(Ensemble(["a", "b", "nope"]), executor(per_model({"a": "x", "b": "x"}), "ab"))


# -- judge -------------------------------------------------------------------------------------


async def test_judge_pick_returns_the_judged_answer_and_bills_the_judge() -> None:
    judge_reply = "Candidate 1 is wrong.\nBest: 2"
    provider = per_model({"a": "Lyon", "b": "Paris", "j": judge_reply})
    ens = Ensemble(["a", "b"], JudgePick("j", rubric="Prefer factual accuracy."), name="jens")
    resp = await run(ens, executor(provider, ["a", "b", "j"]), Q)
    assert resp.text == "Paris" and resp.route.label == "ensemble[1]"
    assert resp.route.reason == "judge: picked candidate 2 of 2"
    judge_prompt = provider.calls[-1][1].prompt_text
    assert provider.calls[-1][0] == "j"
    assert Q in judge_prompt and "Candidate 1:" in judge_prompt and "Lyon" in judge_prompt
    assert "Candidate 2:" in judge_prompt and "Prefer factual accuracy." in judge_prompt
    judge_cost = expected_cost("j", provider.calls[-1][1].prompt_text, judge_reply)
    want = expected_cost("a", Q, "Lyon") + expected_cost("b", Q, "Paris") + judge_cost
    assert resp.cost_usd == pytest.approx(want, rel=1e-12)
    assert [s.name for s in resp.steps] == ["ensemble[0]", "ensemble[1]", "judge"]
    assert resp.steps[2].path == "jens.judge" and resp.steps[2].cost_usd == pytest.approx(judge_cost)
    assert [a.model for a in resp.attempts] == ["a", "b", "j"]


@pytest.mark.parametrize(
    ("reply", "pick"),
    [
        ("Best: 3", 3),
        ("I think candidate 2 is better than candidate 1.\n\nBest: candidate #1", 1),
        ("**Best:** 2", 2),
        ("Candidate 3 is clearly the strongest.", 3),
        ("2", 2),
        ("Best: 9", None),
        ("Candidate 1 and candidate 2 are both fine.", None),
        ("no idea", None),
    ],
)
def test_judge_reply_parsing(reply: str, pick: int | None) -> None:
    assert JudgePick("j").parse(reply, 3) == pick


async def test_unparseable_judge_falls_back_to_the_first_answer_and_says_so() -> None:
    provider = per_model({"a": "Lyon", "b": "Paris", "j": "They are all lovely."})
    resp = await run(Ensemble(["a", "b"], JudgePick("j")), executor(provider, ["a", "b", "j"]))
    assert resp.text == "Lyon"
    assert "named no candidate" in resp.route.reason
    assert len(resp.attempts) == 3  # the judge still cost money


async def test_judge_is_not_called_when_only_one_member_answered() -> None:
    provider = per_model({"a": ServerError("down", status_code=500), "b": "Paris", "j": "Best: 1"})
    resp = await run(Ensemble(["a", "b"], JudgePick("j")), executor(provider, ["a", "b", "j"]))
    assert resp.text == "Paris"
    assert [m for m, _ in provider.calls].count("j") == 0
    assert "judge not called" in resp.route.reason


async def test_a_failing_judge_raises() -> None:
    provider = per_model({"a": "x", "b": "y", "j": ServerError("judge down", status_code=500)})
    with pytest.raises(AllTargetsFailed, match="judge down"):
        await run(Ensemble(["a", "b"], JudgePick("j")), executor(provider, ["a", "b", "j"]))


# -- races: fastest / first valid -------------------------------------------------------


async def test_fastest_returns_the_first_answer_and_cancels_the_losers_releasing_everything() -> None:
    clock = FakeClock()
    started = {"b": anyio.Event(), "c": anyio.Event()}
    cancelled: list[str] = []
    finished: list[str] = []
    limiters = {m: RateLimiter(max_concurrency=1, clock=clock) for m in "abc"}
    ledger = BudgetLedger([BudgetLimit(limit_usd=100.0, period="day")], clock=clock)
    seen_in_flight: list[int] = []

    async def reply(model: str, request: Request) -> str:
        if model == "a":
            # Answer only once both losers are mid-call, holding their slot and reservation.
            await started["b"].wait()
            await started["c"].wait()
            seen_in_flight.append(sum(lim.in_flight for lim in limiters.values()))
            assert ledger.reserved() > 0
            return "fast"
        started[model].set()
        try:
            await anyio.sleep_forever()
        except BaseException:
            cancelled.append(model)
            raise
        finished.append(model)  # pragma: no cover - must never happen
        return "never"

    tasks_before = len(asyncio.all_tasks())
    ex = executor(FunctionProvider(reply, clock=clock), "abc", clock=clock, limiters=limiters, budget=ledger)
    with anyio.fail_after(5):
        resp = await run(Ensemble(["c", "b", "a"], Fastest(), name="hedge"), ex, Q)

    assert resp.text == "fast" and resp.route.label == "ensemble[2]"
    assert sorted(cancelled) == ["b", "c"] and finished == []
    assert seen_in_flight == [3]
    # Nothing left running or held: slots, reservations, tasks.
    assert all(lim.in_flight == 0 and lim.queued == 0 for lim in limiters.values())
    assert ledger.reserved() == 0.0
    assert len(asyncio.all_tasks()) == tasks_before
    # Only the winner is billed: the cancelled calls returned no usage.
    assert resp.cost_usd == pytest.approx(expected_cost("a", Q, "fast"))
    assert ledger.spent() == pytest.approx(expected_cost("a", Q, "fast"))
    assert [(s.name, s.accepted, s.cost_usd) for s in resp.steps] == [
        ("ensemble[0]", None, 0.0),
        ("ensemble[1]", None, 0.0),
        ("ensemble[2]", True, pytest.approx(expected_cost("a", Q, "fast"))),
    ]
    assert resp.steps[0].note.startswith("cancelled")
    assert "2 cancelled" in resp.route.reason


async def test_first_valid_skips_invalid_answers_and_bills_what_answered() -> None:
    clock = FakeClock()
    delays = {"a": 1.0, "b": 2.0, "c": 100.0}
    texts = {"a": "I am not sure.", "b": "The answer is 42.", "c": "42"}
    cancelled: list[str] = []

    async def reply(model: str, request: Request) -> str:
        try:
            await clock.sleep(delays[model])
        except BaseException:
            cancelled.append(model)
            raise
        return texts[model]

    checked: list[str] = []

    async def has_42(request: Request, response: Response, ctx: RunContext) -> bool:
        checked.append(response.text)
        return "42" in response.text

    ens = Ensemble(["a", "b", "c"], FirstValid(has_42))
    resp = await run(ens, executor(FunctionProvider(reply, clock=clock), "abc", clock=clock), Q)
    assert resp.text == "The answer is 42." and resp.route.label == "ensemble[1]"
    assert checked == ["I am not sure.", "The answer is 42."]
    assert cancelled == ["c"]
    assert clock.now() == pytest.approx(2.0)
    assert resp.latency_ms == pytest.approx(2000.0)
    # The rejected answer was paid for; the cancelled one was not.
    want = expected_cost("a", Q, texts["a"]) + expected_cost("b", Q, texts["b"])
    assert resp.cost_usd == pytest.approx(want, rel=1e-12)
    assert [s.accepted for s in resp.steps] == [False, True, None]
    assert "1 rejected" in resp.route.reason and "1 cancelled" in resp.route.reason


async def test_first_valid_default_check_rejects_truncated_and_empty_answers() -> None:
    clock = FakeClock()
    delays = {"a": 1.0, "b": 2.0, "c": 3.0}
    replies: dict[str, str | Response] = {
        "a": Response(text="Par", model="a", provider="fake", finish_reason="length", usage=Usage(5, 1)),
        "b": "   ",
        "c": "Paris",
    }

    async def reply(model: str, request: Request) -> str | Response:
        await clock.sleep(delays[model])
        return replies[model]

    resp = await run(
        Ensemble(["a", "b", "c"], "first_valid"),
        executor(FunctionProvider(reply, clock=clock), "abc", clock=clock),
    )
    assert resp.text == "Paris"
    assert [s.accepted for s in resp.steps] == [False, False, True]


async def test_first_valid_with_no_valid_answer_raises_with_the_rejected_answers() -> None:
    provider = per_model({"a": "nope", "b": ServerError("down", status_code=500)})
    ens = Ensemble(["a", "b"], FirstValid(lambda req, resp, ctx: False))
    with pytest.raises(AllTargetsFailed, match="no member gave a valid answer") as info:
        await run(ens, executor(provider, "ab"))
    kinds = sorted(type(e).__name__ for e in info.value.exceptions)
    assert kinds == ["AllTargetsFailed", "AnswerRejected"]
    rejected = next(e for e in info.value.exceptions if isinstance(e, AnswerRejected))
    assert rejected.response.text == "nope"
    assert [a.outcome for a in info.value.attempts] == ["ok", "error"]


async def test_first_valid_accepts_verifier_objects_and_bills_their_model_calls() -> None:
    """A tierwise.verify-style object (``async check`` → verdict with ``accepted``)
    works, and a model call it makes through ctx is billed to the ensemble."""

    class GradedByModel:
        async def check(self, request: Request, response: Response, ctx: RunContext) -> Any:
            grade = await ctx.call("j", Request.from_prompt(f"Grade: {response.text}"), name="check")
            return SimpleNamespace(accepted=grade.text == "good", reason="graded")

    provider = per_model({"a": "Paris", "j": "good"})
    resp = await run(Ensemble(["a"], FirstValid(GradedByModel())), executor(provider, ["a", "j"]), Q)
    assert resp.text == "Paris"
    grade_cost = expected_cost("j", "Grade: Paris", "good")
    assert resp.cost_usd == pytest.approx(expected_cost("a", Q, "Paris") + grade_cost)
    assert [s.name for s in resp.steps] == ["ensemble[0]", "check"]


async def test_first_valid_works_with_tierwise_verify() -> None:
    verify = pytest.importorskip("tierwise.verify")
    provider = per_model({"a": "short", "b": "a much longer answer that passes"})
    ens = Ensemble(["a", "b"], FirstValid(verify.Check(lambda response: len(response.text) > 10)))
    resp = await run(ens, executor(provider, "ab"))
    assert resp.text == "a much longer answer that passes"


async def test_race_member_failure_does_not_win() -> None:
    clock = FakeClock()

    async def reply(model: str, request: Request) -> str:
        if model == "a":
            raise ServerError("fast failure", status_code=500)
        await clock.sleep(1.0)
        return "slow but fine"

    resp = await run(
        Ensemble(["a", "b"], Fastest()), executor(FunctionProvider(reply, clock=clock), "ab", clock=clock)
    )
    assert resp.text == "slow but fine"
    assert resp.steps[0].note.startswith("failed:")
    assert "1 failed" in resp.route.reason


async def test_cancelling_the_ensemble_cancels_every_member() -> None:
    cancelled: list[str] = []
    started = anyio.Event()
    count = 0

    async def reply(model: str, request: Request) -> str:
        nonlocal count
        count += 1
        if count == 3:
            started.set()
        try:
            await anyio.sleep_forever()
        except BaseException:
            cancelled.append(model)
            raise
        return "never"  # pragma: no cover

    ex = executor(FunctionProvider(reply), "abc")
    async with anyio.create_task_group() as tg:
        tg.start_soon(run, Ensemble(["a", "b", "c"]), ex)
        await started.wait()
        tg.cancel_scope.cancel()
    assert sorted(cancelled) == ["a", "b", "c"]


# -- custom aggregation and hooks ---------------------------------------------------------


async def test_any_async_callable_aggregates() -> None:
    async def longest(request: Request, answers: list[Response], ctx: RunContext) -> Response:
        return max(answers, key=lambda r: len(r.text))

    provider = per_model({"a": "short", "b": "the longest one", "c": "medium"})
    resp = await run(Ensemble(["a", "b", "c"], longest), executor(provider, "abc"))
    assert resp.text == "the longest one" and resp.route.label == "ensemble[1]"
    assert resp.route.reason == "custom aggregator longest"


async def test_a_synthesizing_aggregator_is_billed_for_its_own_call() -> None:
    async def synthesize(request: Request, answers: list[Response], ctx: RunContext) -> tuple[Response, str]:
        merged = " | ".join(a.text for a in answers)
        return await ctx.call("j", Request.from_prompt(f"Merge: {merged}"), name="merge"), "merged"

    provider = per_model({"a": "x", "b": "y", "j": "x and y"})
    resp = await run(Ensemble(["a", "b"], synthesize, name="syn"), executor(provider, ["a", "b", "j"]), Q)
    assert resp.text == "x and y"
    assert (resp.route.label, resp.route.reason, resp.route.strategy_path) == (
        "aggregate",
        "merged",
        "syn.merge",
    )
    want = (
        expected_cost("a", Q, "x")
        + expected_cost("b", Q, "y")
        + expected_cost("j", "Merge: x | y", "x and y")
    )
    assert resp.cost_usd == pytest.approx(want, rel=1e-12)
    assert [s.accepted for s in resp.steps] == [False, False, True]


async def test_subclass_overrides_one_hook() -> None:
    class LastWins(Ensemble):
        async def aggregate(
            self, request: Request, answers: list[Response], ctx: RunContext
        ) -> tuple[Response, str]:
            return answers[-1], "last member wins"

    resp = await run(LastWins(["a", "b"]), executor(per_model({"a": "first", "b": "second"}), "ab"))
    assert (resp.text, resp.route.reason, resp.route.label) == ("second", "last member wins", "ensemble[1]")


async def test_members_may_be_strategies() -> None:
    inner = Ensemble(["b", "c"], Fastest(), name="inner")
    outer = Ensemble(["a", Single("a", name="one"), inner], name="outer")
    resp = await run(outer, executor(per_model({"a": "x", "b": "x", "c": "x"}), "abc"))
    paths = [a.path for a in resp.attempts]
    assert paths[:2] == ["outer.ensemble[0]", "outer.ensemble[1]"]
    assert set(paths[2:]) <= {"outer.ensemble[2].ensemble[0]", "outer.ensemble[2].ensemble[1]"}
    assert resp.text == "x"


async def test_stream_emits_the_chosen_text_then_done() -> None:
    ens = Ensemble(["a", "b", "c"])
    ex = executor(per_model({"a": "Paris", "b": "Paris", "c": "Rome"}), "abc")
    events = [e async for e in ens.stream(Request.from_prompt(Q), RunContext(ex, path="e"))]
    assert [type(e) for e in events] == [TextDelta, Done]
    assert isinstance(events[-1], Done) and events[-1].response.cost_usd is not None


def test_explain_calls_no_model() -> None:
    info = Ensemble(["a", "b", "c"], name="v").explain(Request.from_prompt("x"))
    assert info.strategy_path == "v"
    assert "ensemble of 3 (a, b, c)" in info.reason and "quorum 2 of 3" in info.reason
    info = Ensemble(["a", "b"], JudgePick("opus")).explain(Request.from_prompt("x"))
    assert "judge pick by opus" in info.reason
    assert "fastest" in Ensemble(["a", "b"], "fastest").explain(Request.from_prompt("x")).reason


async def test_orchestrator_runs_an_ensemble_and_records_its_metrics() -> None:
    provider = per_model({"a": "Paris", "b": "Paris", "c": "Rome"})
    deps = [Deployment(m, provider, m, spec=spec(m)) for m in "abc"]
    orch = Orchestrator(deps, strategies={"vote": Ensemble(["a", "b", "c"], name="vote")}, retry=NO_RETRY)
    async with orch:
        resp = await orch.run(Q)
    assert resp.text == "Paris" and resp.route.strategy_path == "vote.ensemble[0]"
    want = expected_cost("a", Q, "Paris") + expected_cost("b", Q, "Paris") + expected_cost("c", Q, "Rome")
    assert resp.cost_usd == pytest.approx(want)


# -- config ----------------------------------------------------------------------------------


def resolver(known: Sequence[str] = ("a", "b", "c", "opus")) -> Callable[[Any, str], Any]:
    def target(value: Any, field: str) -> Any:
        if not isinstance(value, str) or value not in known:
            raise ConfigError(f"unknown model alias {value!r}", field=field)
        return value

    return target


def test_from_config_builds_each_aggregate() -> None:
    vote = Ensemble.from_config(
        "v", {"type": "ensemble", "targets": ["a", "b", "c"]}, where="strategies.v", target=resolver()
    )
    assert isinstance(vote.aggregator, MajorityVote) and vote.quorum == 2 and vote.name == "v"
    judge = Ensemble.from_config(
        "j",
        {"targets": ["a", "b"], "aggregate": "judge", "judge": "opus", "rubric": "be right"},
        where="strategies.j",
        target=resolver(),
    )
    assert isinstance(judge.aggregator, JudgePick) and judge.aggregator.judge == "opus"
    assert judge.aggregator.rubric == "be right"
    fast = Ensemble.from_config(
        "f", {"targets": ["a", "b"], "aggregate": "fastest"}, where="s.f", target=resolver()
    )
    assert isinstance(fast.aggregator, Fastest)
    fv = Ensemble.from_config(
        "f", {"targets": ["a", "b"], "aggregate": "first_valid"}, where="s.f", target=resolver()
    )
    assert type(fv.aggregator) is FirstValid
    q = Ensemble.from_config("q", {"targets": ["a", "b", "c"], "quorum": 3}, where="s.q", target=resolver())
    assert q.quorum == 3


@pytest.mark.parametrize(
    ("params", "field", "message"),
    [
        ({"targets": ["a"], "agregate": "vote"}, "strategies.e.agregate", "did you mean 'aggregate'"),
        ({"targets": []}, "strategies.e.targets", "non-empty"),
        ({"targets": "a"}, "strategies.e.targets", "non-empty"),
        ({"targets": ["a", "zz"]}, "strategies.e.targets[1]", "unknown model alias 'zz'"),
        ({"targets": ["a"], "aggregate": "best"}, "strategies.e.aggregate", "must be one of"),
        ({"targets": ["a"], "aggregate": "judge"}, "strategies.e.judge", "needs judge"),
        ({"targets": ["a"], "aggregate": "judge", "judge": "zz"}, "strategies.e.judge", "unknown model"),
        ({"targets": ["a"], "judge": "opus"}, "strategies.e.judge", "only used with"),
        ({"targets": ["a", "b"], "quorum": 5}, "strategies.e.quorum", "quorum must be"),
        ({"targets": ["a", "b"], "quorum": "2"}, "strategies.e.quorum", "integer"),
        ({"targets": ["a", "b"], "aggregate": "fastest", "quorum": 2}, "strategies.e.quorum", "race"),
    ],
)
def test_from_config_errors_name_the_field(params: dict[str, Any], field: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        Ensemble.from_config("e", params, where="strategies.e", target=resolver())
    assert info.value.field == field


# -- over real sockets ---------------------------------------------------------------------


_TCP_TABLES = [Path("/proc/net/tcp"), Path("/proc/net/tcp6")]


def established(port: int) -> int:
    count = 0
    for table in _TCP_TABLES:
        if table.exists():
            for line in table.read_text().splitlines()[1:]:
                fields = line.split()
                ports = (int(fields[1].rsplit(":", 1)[1], 16), int(fields[2].rsplit(":", 1)[1], 16))
                if fields[3] == "01" and port in ports:
                    count += 1
    return count


def http_deployments(server: MockLLMServer, models: Sequence[str]) -> tuple[list[Deployment], OpenAI]:
    provider = OpenAI(base_url=server.base_url + "/v1", compat="vllm")
    return [Deployment(m, provider, m, spec=spec(m)) for m in models], provider


async def test_vote_over_mock_server_with_a_failing_member() -> None:
    models = {
        "a": MockModel(reply="Paris."),
        "b": MockModel(reply="paris", faults=["500"], cycle_faults=True),
        "c": MockModel(reply="PARIS"),
        "d": MockModel(reply="Rome"),
    }
    async with MockLLMServer(models) as server:
        deps, _ = http_deployments(server, list(models))
        orch = Orchestrator(deps, strategies={"v": Ensemble(list(models), name="v")}, retry=NO_RETRY)
        async with orch:
            resp = await orch.run(Q)
        assert resp.text == "Paris." and resp.route.label == "ensemble[0]"
        assert "'paris' has 2 of 3 votes" in resp.route.reason
        assert sorted(r.model for r in server.requests if r.model) == ["a", "b", "c", "d"]
        # Cost: each answered member's own reported usage at its own price.
        want = sum(
            (s.usage.input_tokens * PRICES[s.model][0] + s.usage.output_tokens * PRICES[s.model][1]) / 1e6
            for s in resp.steps
            if s.accepted is not None and s.note == ""
        )
        assert resp.cost_usd == pytest.approx(want)
        assert resp.usage.output_tokens > 0 and resp.steps[1].note.startswith("failed:")


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or not _TCP_TABLES[0].exists(), reason="/proc/net/tcp"
)
async def test_fastest_over_mock_server_cancels_a_hung_member_and_closes_its_socket() -> None:
    models = {
        "slow": MockModel(faults=["hang"], cycle_faults=True),
        "fast": MockModel(reply="hi", latency_ms=50),
    }
    async with MockLLMServer(models) as server:
        deps, _ = http_deployments(server, list(models))
        limiter = RateLimiter(max_concurrency=2)
        deps[0].limiter = limiter
        ledger = BudgetLedger([BudgetLimit(limit_usd=100.0, period="day")])
        orch = Orchestrator(
            deps, strategies={"h": Ensemble(["slow", "fast"], Fastest(), name="h")}, budget=ledger
        )
        async with orch:
            with anyio.fail_after(10):
                resp = await orch.run(Q)
            assert resp.text == "hi" and resp.route.label == "ensemble[1]"
            assert resp.steps[0].note.startswith("cancelled")
            assert limiter.in_flight == 0 and ledger.reserved() == 0.0
            assert len(server.requests) == 2, "both members reached the server"
            # The winner's pooled keep-alive connection (2 sockets) may stay; the hung one must go.
            for _ in range(100):
                if established(server.port) <= 2:
                    break
                await anyio.sleep(0.02)
            assert established(server.port) <= 2
        for _ in range(100):
            if established(server.port) == 0:
                break
            await anyio.sleep(0.02)
        assert established(server.port) == 0
