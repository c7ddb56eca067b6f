"""LearnedVerifier (tierwise.verify.learned): fit, score, storage, config, a cascade over sockets."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("numpy")
pytest.importorskip("sklearn")

from tierwise.catalog import ModelSpec
from tierwise.errors import ConfigError
from tierwise.execution.executor import Deployment
from tierwise.execution.retry import RetryPolicy
from tierwise.orchestrator import Orchestrator
from tierwise.providers import OpenAI
from tierwise.routing.feedback import Feedback
from tierwise.strategies.cascade import Cascade
from tierwise.testing import MockLLMServer, MockModel
from tierwise.verify import (
    AnswerRow,
    AnswerRowError,
    LearnedVerifier,
    answer_rows,
    from_config,
    read_answer_rows,
    write_answer_rows,
)
from tierwise.verify._answer_features import arithmetic_check


def word_problem(rng: random.Random, good: bool) -> tuple[str, str]:
    """A prompt and an answer; bad answers get their arithmetic wrong and hedge."""
    a, b = rng.randrange(2, 40), rng.randrange(2, 40)
    prompt = f"Sam has {a} apples and buys {b} more. How many apples does Sam have now?"
    if good:
        answer = f"Sam starts with {a} apples.\nHe buys {b}, so {a} + {b} = {a + b}.\n#### {a + b}"
    else:
        wrong = a + b + rng.choice([-3, -1, 2, 5])
        answer = f"Sam has {a} apples. However, assuming some are eaten, {a} + {b} = {wrong}.\n#### {wrong}"
    return prompt, answer


def dataset(n: int = 120, seed: int = 0) -> tuple[list[str], list[str], list[float]]:
    rng = random.Random(seed)
    prompts, answers, good = [], [], []
    for i in range(n):
        p, a = word_problem(rng, i % 3 != 0)
        prompts.append(p)
        answers.append(a)
        good.append(1.0 if i % 3 != 0 else 0.0)
    return prompts, answers, good


@pytest.fixture(scope="module")
def fitted() -> LearnedVerifier:
    return LearnedVerifier.fit(*dataset())


def test_arithmetic_check_reads_the_answers_own_equations() -> None:
    assert arithmetic_check("3 + 4 = 7 and 6 * 7 = 42, then 10 / 3 = 3.33") == (3, 0)
    assert arithmetic_check("so 2 + 2 * 3 = 12") == (0, 1)  # precedence: 8, not 12
    assert arithmetic_check("no equations here, 5 / 0 = 1") == (0, 0)  # division by zero is skipped


def test_fit_separates_good_from_bad_answers_it_never_saw(fitted: LearnedVerifier) -> None:
    prompts, answers, good = dataset(60, seed=7)
    scores = fitted.scores(prompts, answers)
    good_scores = [s for s, g in zip(scores, good, strict=True) if g]
    bad_scores = [s for s, g in zip(scores, good, strict=True) if not g]
    assert min(good_scores) > max(bad_scores)
    assert all(0.0 <= s <= 1.0 for s in scores)


def test_save_load_round_trip_scores_identically(fitted: LearnedVerifier, tmp_path: Path) -> None:
    path = tmp_path / "verifier.json"
    fitted.save(path)
    loaded = LearnedVerifier.load(path)
    prompts, answers, _ = dataset(10, seed=3)
    assert loaded.scores(prompts, answers) == pytest.approx(fitted.scores(prompts, answers), abs=1e-12)
    assert LearnedVerifier.load(path, threshold=0.9).threshold == 0.9
    data = json.loads(path.read_text())
    data["feature_version"] = 999
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="feature version"):
        LearnedVerifier.load(path)
    path.write_text('{"format": "something else"}')
    with pytest.raises(ValueError, match="format"):
        LearnedVerifier.load(path)


def test_threshold_for_share_escalates_that_share(fitted: LearnedVerifier) -> None:
    prompts, answers, _ = dataset(90, seed=11)
    t = fitted.threshold_for_share(prompts, answers, 1 / 3)
    rejected = sum(s < t for s in fitted.scores(prompts, answers))
    assert rejected == 30
    assert fitted.threshold_for_share(prompts, answers, 0.0) == 0.0
    with pytest.raises(ValueError):
        fitted.threshold_for_share(prompts, answers, 1.5)


def test_cost_aware_acceptance_divides_the_doubt_by_the_exchange_size(fitted: LearnedVerifier) -> None:
    """Acceptance = 1 - (1 - p) * (reference / size) ** a: cheap exchanges escalate on less doubt."""
    prompts, answers, _ = dataset(30, seed=13)
    assert fitted.cost_exponent == 0.0
    assert fitted.acceptances(prompts, answers) == fitted.scores(prompts, answers)  # the plain verifier
    # The reference is the training rows' median size, so a typical row is left alone.
    train_p, train_a, _ = dataset()
    sizes = sorted(len(p) + len(a) for p, a in zip(train_p, train_a, strict=True))
    assert fitted.reference_chars == (sizes[59] + sizes[60]) / 2
    aware = fitted.with_cost_exponent(0.5)
    assert aware.threshold == fitted.threshold and aware.hashed_weights == fitted.hashed_weights
    for p, a in zip(prompts, answers, strict=True):
        score, size = fitted.score(p, a), len(p) + len(a)
        expected = 1 - (1 - score) * (aware.reference_chars / size) ** 0.5
        assert aware.acceptance(p, a) == pytest.approx(min(1.0, max(0.0, expected)), abs=1e-12)
    # The same doubt on an exchange four times the reference size needs twice the doubt to escalate.
    p, a = prompts[0], answers[0]
    long_prompt = p + " " + "x" * (4 * round(aware.reference_chars) - len(p) - len(a) - 1)
    doubt = 1 - fitted.score(long_prompt, a)
    assert 1 - aware.acceptance(long_prompt, a) == pytest.approx(doubt / 2, rel=1e-9)
    # Ranking: a threshold for a share escalates by acceptance, not by p(good).
    t = aware.threshold_for_share(prompts, answers, 0.5)
    assert sum(x < t for x in aware.acceptances(prompts, answers)) == 15
    with pytest.raises(ValueError, match="cost_exponent"):
        fitted.with_cost_exponent(-1)
    with pytest.raises(ValueError, match="reference_chars"):
        LearnedVerifier(
            intercept=0.0,
            dense_weights=fitted.dense_weights,
            dense_mean=fitted.dense_mean,
            dense_scale=fitted.dense_scale,
            hashed_weights={},
            reference_chars=0,
        )


async def test_cost_aware_verdict_and_storage(fitted: LearnedVerifier, tmp_path: Path) -> None:
    from tierwise.execution.executor import Executor
    from tierwise.strategies.base import RunContext
    from tierwise.types import Request, Response

    prompts, answers, _ = dataset(4, seed=17)
    aware = LearnedVerifier.fit(*dataset(), cost_exponent=0.5, threshold=0.6)
    assert aware.cost_exponent == 0.5 and "cost-aware" in aware.describe()
    request = Request.from_prompt(prompts[0])
    response = Response(text=answers[0], model="m", provider="p")
    verdict = await aware.check(
        request, response, RunContext(Executor({}, retry=RetryPolicy(max_attempts=1)))
    )
    assert verdict.score == pytest.approx(aware.acceptance(request.prompt_text, answers[0]))
    assert verdict.accepted is (verdict.score >= 0.6)
    assert "cost-aware" in verdict.reason and "reference" in verdict.reason
    path = tmp_path / "aware.json"
    aware.save(path)
    loaded = LearnedVerifier.load(path)
    assert (loaded.cost_exponent, loaded.reference_chars) == (0.5, aware.reference_chars)
    assert loaded.acceptances(prompts, answers) == pytest.approx(aware.acceptances(prompts, answers))
    assert LearnedVerifier.load(path, cost_exponent=0).cost_exponent == 0.0
    # A file written before cost-aware acceptance existed reads as the plain verifier.
    data = json.loads(path.read_text())
    del data["cost_exponent"], data["reference_chars"]
    path.write_text(json.dumps(data))
    assert LearnedVerifier.load(path).cost_exponent == 0.0


def test_fit_rejects_unusable_input() -> None:
    with pytest.raises(ValueError, match="both good and bad"):
        LearnedVerifier.fit(["p", "q"], ["a", "b"], [1.0, 1.0])
    with pytest.raises(ValueError, match="one entry each"):
        LearnedVerifier.fit(["p"], ["a", "b"], [1.0, 0.0])


def test_fractional_scores_are_weighted_rows() -> None:
    prompts, answers, good = dataset(90, seed=5)
    soft = [0.9 if g else 0.1 for g in good]
    v = LearnedVerifier.fit(prompts, answers, soft)
    scores = v.scores(prompts, answers)
    assert min(s for s, g in zip(scores, good, strict=True) if g) > max(
        s for s, g in zip(scores, good, strict=True) if not g
    )


def test_answer_rows_file_round_trip_and_errors(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    rows = [AnswerRow("q1", "a1", 1.0, "cheap"), AnswerRow("q2", "a2", 0.25)]
    assert write_answer_rows(path, rows) == 2
    assert read_answer_rows(path) == rows
    path.write_text('{"prompt": "q", "answer": "a", "good": true, "scroe": 1}\n')
    with pytest.raises(AnswerRowError, match=r"rows.jsonl:1: unknown field"):
        read_answer_rows(path)
    path.write_text('{"prompt": "q", "answer": "a"}\n')
    with pytest.raises(AnswerRowError, match="exactly one"):
        read_answer_rows(path)


def test_answer_rows_join_audit_and_feedback() -> None:
    audit: list[dict[str, Any]] = [
        {"request_hash": "h1", "model": "cheap", "prompt": "q1", "response": "a1"},
        {"request_hash": "h2", "model": "strong", "prompt": "q2", "response": "a2"},
        {"request_hash": "h3", "model": "cheap", "prompt": "q3", "response": None, "error": "ServerError"},
        {"request_hash": "h4", "model": "cheap"},  # written without include_text
    ]
    feedback = [
        Feedback("h1", 1.0),
        Feedback("h1", 0.0, model="cheap"),  # two verdicts on one answer: averaged
        Feedback("h2", 0.0, model="cheap"),  # judges a model whose answer is not in the log
        Feedback("h3", 1.0),
        Feedback("h4", 1.0),
        Feedback("h9", 1.0),
    ]
    assert answer_rows(audit, feedback) == [AnswerRow("q1", "a1", 0.5, "cheap")]


def test_from_config_builds_the_learned_verifier(fitted: LearnedVerifier, tmp_path: Path) -> None:
    path = tmp_path / "v.json"
    fitted.save(path)

    def resolver(value: Any, field: str) -> Any:
        return value

    v = from_config({"learned": {"model": str(path), "threshold": 0.8}}, "s.accept", resolver)
    assert isinstance(v, LearnedVerifier) and v.threshold == 0.8 and v.cost_exponent == 0.0
    spec = {"learned": {"model": str(path), "cost_exponent": 0.5}}
    aware = from_config(spec, "s.accept", resolver)
    assert isinstance(aware, LearnedVerifier) and aware.cost_exponent == 0.5
    with pytest.raises(ConfigError) as err:
        from_config({"learned": {"model": str(path), "cost_exponent": -1}}, "s.accept", resolver)
    assert err.value.field == "s.accept.learned.cost_exponent"
    assert isinstance(from_config({"learned": str(path)}, "s.accept", resolver), LearnedVerifier)
    with pytest.raises(ConfigError) as err:
        from_config({"learned": {"model": str(tmp_path / "missing.json")}}, "s.accept", resolver)
    assert err.value.field == "s.accept.learned.model"
    with pytest.raises(ConfigError) as err:
        from_config({"learned": {"threshold": 0.5}}, "s.accept", resolver)
    assert err.value.field == "s.accept.learned.model"


async def test_cascade_escalates_the_answer_the_verifier_doubts(fitted: LearnedVerifier) -> None:
    """Over real sockets: the cheap model's wrong-arithmetic answer is escalated, its right one kept."""
    rng = random.Random(99)
    prompt, good_answer = word_problem(rng, True)
    _, bad_answer = word_problem(random.Random(99), False)
    replies = {"cheap-m": bad_answer}
    models = {
        "cheap-m": MockModel(reply=lambda req: replies["cheap-m"]),
        "strong-m": MockModel(reply=good_answer),
    }
    async with MockLLMServer(models) as server:
        provider = OpenAI(api_key="sk-test", base_url=server.base_url + "/v1")
        deps = {
            alias: Deployment(
                alias, provider, f"{alias}-m", spec=ModelSpec(f"{alias}-m", "mock", input=1.0, output=10.0)
            )
            for alias in ("cheap", "strong")
        }
        cascade = Cascade(["cheap", "strong"], accept=fitted, name="c")
        async with Orchestrator(deps, strategies={"c": cascade}, retry=RetryPolicy(max_attempts=1)) as orch:
            doubted = await orch.run(prompt)
            replies["cheap-m"] = good_answer
            kept = await orch.run(prompt + " ")
        assert [r.model for r in server.requests] == ["cheap-m", "strong-m", "cheap-m"]
    assert doubted.deployment == "strong" and doubted.steps[0].accepted is False
    assert doubted.steps[0].note.startswith("learned: p(good)")
    assert kept.deployment == "cheap" and kept.route.label == "cascade[0]"
    assert kept.route.score is not None and kept.route.score >= fitted.threshold


async def test_train_verifier_cli_from_audit_and_feedback(tmp_path: Path, capsys: Any) -> None:
    """Audit log + feedback → answer rows → verifier.json → a config cascade that accepts with it."""
    from tierwise.cli import main
    from tierwise.observe.audit import AuditLog
    from tierwise.routing.feedback import write_feedback

    prompts, answers, good = dataset(60, seed=21)
    prompts = [f"Problem {i}. {p}" for i, p in enumerate(prompts)]  # distinct requests
    by_prompt = dict(zip(prompts, answers, strict=True))
    models = {"cheap-m": MockModel(reply=lambda req: by_prompt.get(req.prompt, "#### 0"))}
    audit_path = tmp_path / "audit.jsonl"
    feedback = []
    async with MockLLMServer(models) as server:
        provider = OpenAI(api_key="sk-test", base_url=server.base_url + "/v1")
        deps = {
            "cheap": Deployment(
                "cheap", provider, "cheap-m", spec=ModelSpec("cheap-m", "mock", input=1, output=2)
            )
        }
        audit = AuditLog(audit_path, include_text=True, flush_interval_s=0)
        async with Orchestrator(deps, audit=audit) as orch:
            for p, g in zip(prompts, good, strict=True):
                out = await orch.run(p)
                feedback.append(Feedback.for_response(p, out, good=bool(g)))
    write_feedback(tmp_path / "fb.jsonl", feedback)
    rows_path, out_path = tmp_path / "rows.jsonl", tmp_path / "verifier.json"
    argv = ["train-verifier", "--audit", str(audit_path), "--feedback", str(tmp_path / "fb.jsonl")]
    code = main(
        [*argv, "--emit-rows", str(rows_path), "--out", str(out_path), "--threshold", "0.6", "--json"]
    )
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["rows"] == 60 and summary["held_out"] == 12
    assert summary["held_out_auroc"] == 1.0  # the synthetic signal is clean
    emitted = read_answer_rows(rows_path)
    assert len(emitted) == 60 and {r.model for r in emitted} == {"cheap"}
    assert {(r.prompt, r.answer, r.score) for r in emitted} == set(zip(prompts, answers, good, strict=True))
    # The rows file is also an input of its own.
    v2 = tmp_path / "v2.json"
    assert main(["train-verifier", "--rows", str(rows_path), "--out", str(v2), "--cost-exponent", "0.5"]) == 0
    out = capsys.readouterr().out
    assert "judged answers" in out and "cost_exponent = 0.5" in out
    assert LearnedVerifier.load(v2).cost_exponent == 0.5
    verifier = LearnedVerifier.load(out_path)
    assert verifier.threshold == 0.6 and verifier.trained_on == 60
    assert main(["train-verifier", "--audit", str(audit_path), "--out", str(out_path)]) == 2
    assert "--feedback" in capsys.readouterr().err
