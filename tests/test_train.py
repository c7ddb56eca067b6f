"""Training a learned router from your own traffic (tierwise.routing.feedback, ``tierwise train``).

Audit logs are written by a real Orchestrator (cascades over FunctionProvider,
AuditLog/SQLiteAudit with include_text), so the records are exactly what
production writes; the CLI runs in-process through ``tierwise.cli.main``.

The cheap model answers "WRONG" to hard prompts (math words) and the cascade's
verifier rejects that answer, so verifier feedback alone says: cheap is good on
easy prompts, bad on hard ones; strong is good wherever it was asked.
"""

from __future__ import annotations

import functools
import json
import math
import random
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
import pytest

from tierwise.catalog import ModelSpec
from tierwise.cli import main
from tierwise.errors import AllTargetsFailed, ServerError
from tierwise.execution.executor import Deployment
from tierwise.execution.retry import RetryPolicy
from tierwise.observe.audit import AuditLog, SQLiteAudit
from tierwise.orchestrator import Orchestrator
from tierwise.routing import (
    Classification,
    Feedback,
    FeedbackError,
    read_audit,
    read_feedback,
    request_hash,
    training_set,
    verifier_feedback,
    write_feedback,
)
from tierwise.strategies.aggregate import FirstValid
from tierwise.strategies.base import RunContext
from tierwise.strategies.cascade import Cascade
from tierwise.strategies.ensemble import Ensemble
from tierwise.strategies.pipeline import Pipeline, Step
from tierwise.strategies.router import Router
from tierwise.strategies.single import Single
from tierwise.testing import FunctionProvider, MockLLMServer, MockModel
from tierwise.types import Request, Response
from tierwise.verify import Check, Judge

HARD = ["integral", "theorem", "proof", "eigenvalue", "derivative", "lemma"]
EASY = ["capital", "color", "weather", "greeting", "animal", "fruit"]
# $ per 1M tokens (input, output)
PRICES = {"cheap": (1.0, 2.0), "mid": (3.0, 6.0), "strong": (30.0, 60.0), "judge": (5.0, 5.0)}


def is_hard(text: str) -> bool:
    return any(w in text for w in HARD)


def make_prompts(n: int, seed: int) -> list[str]:
    """Half hard, half easy, each with three topic words and some filler."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        words = rng.sample(HARD if i % 2 == 0 else EASY, 3) + [f"filler{rng.randrange(20)}" for _ in range(3)]
        rng.shuffle(words)
        out.append("please answer about " + " ".join(words))
    return out


def reply(model: str, request: Request) -> str:
    """Markers in the prompt script each model: ``[cheap-wrong]``, ``[mid-down]``..."""
    text = request.prompt_text
    if f"[{model}-down]" in text:
        raise ServerError("overloaded", status_code=503)
    if model == "judge":
        if "[judge-flaky]" in text and "WRONG" in text:
            raise ServerError("overloaded", status_code=503)  # down only when grading a wrong answer
        if "<response>" in text and "[judge-garbled]" not in text:  # the built-in Judge's prompt
            return "0.1" if "WRONG" in text else "0.9"
        return "looks right"
    if f"[{model}-wrong]" in text or (model == "cheap" and is_hard(text)):
        return "WRONG"
    return f"{model}: a fine answer"


def not_wrong(response: Response) -> bool:
    return "WRONG" not in response.text


async def judged(request: Request, response: Response, ctx: RunContext) -> bool:
    """A judge-style check: one model call beneath the rung (``cascade[i].judge``)."""
    await ctx.call(
        "judge", Request.from_prompt(f"grade {request.prompt_text}: {response.text}"), name="judge"
    )
    return "WRONG" not in response.text


async def judged_unnamed(request: Request, response: Response, ctx: RunContext) -> bool:
    """The same, calling without a name: the judge's attempt lands at the rung's own path."""
    await ctx.call("judge", Request.from_prompt(f"grade {request.prompt_text}: {response.text}"))
    return "WRONG" not in response.text


class Always:
    """A classifier with one label: the router's route is its only target."""

    def classify(self, request: Request) -> Classification:
        return Classification("x", 1.0, "always x")


def cheap_then_strong(name: str) -> Cascade:
    return Cascade(["cheap", "strong"], accept=Check(not_wrong), name=name)


def orchestrator(audit: AuditLog | SQLiteAudit, *, priced: bool = True) -> Orchestrator:
    provider = FunctionProvider(reply, name="fake")
    deployments = [
        Deployment(
            alias,
            provider,
            alias,
            spec=ModelSpec(alias, "fake", input=PRICES[alias][0], output=PRICES[alias][1])
            if priced
            else None,
        )
        for alias in PRICES
    ]
    strategies = {
        "cascade": Cascade(["cheap", "strong"], accept=Check(not_wrong), name="cascade"),
        "c3": Cascade(["cheap", "mid", "strong"], accept=Check(not_wrong), name="c3"),
        "nolast": Cascade(["cheap", "strong"], accept=Check(not_wrong), verify_last=False, name="nolast"),
        "judged": Cascade(["cheap", "strong"], accept=Check(judged), name="judged"),
        "unnamed": Cascade(["cheap", "strong"], accept=Check(judged_unnamed), name="unnamed"),
        # the built-in Judge: a failed call or an unparseable reply is no verdict
        "real_judge": Cascade(["cheap", "strong"], accept=Judge("judge"), name="real_judge"),
        "single": Single("cheap", name="single"),
        "strong_only": Single("strong", name="strong_only"),
        # nested: a cascade as a router's route, as a pipeline step, with a router as a rung
        "routed": Router(Always(), {"x": cheap_then_strong("inner")}, "x", name="routed"),
        "piped": Pipeline([Step("answer", cheap_then_strong("inner"), "{input}")], name="piped"),
        "router_rung": Cascade(
            [Router(Always(), {"x": "cheap"}, "x", name="pick"), "strong"],
            accept=Check(not_wrong),
            name="router_rung",
        ),
        # a race whose check rejects the cheap answer, inside a router (steps propagate)
        "raced": Router(
            Always(),
            {"x": Ensemble(["cheap", "strong"], FirstValid(Check(not_wrong)), name="race")},
            "x",
            name="raced",
        ),
    }
    return Orchestrator(
        deployments,
        strategies=strategies,
        default_strategy="cascade",
        retry=RetryPolicy(max_attempts=1),
        audit=audit,
        log_level=None,
    )


async def collect(
    path: Path,
    prompts: Sequence[str | tuple[str, str]],
    *,
    include_text: bool = True,
    priced: bool = True,
    sqlite: bool = False,
) -> list[Response | None]:
    """Run each prompt (``(strategy, prompt)`` pairs pick a strategy) and write the audit log."""
    audit = (
        SQLiteAudit(path, include_text=include_text)
        if sqlite
        else AuditLog(path, include_text=include_text, flush_interval_s=0)
    )
    out: list[Response | None] = []
    async with orchestrator(audit, priced=priced) as orch:
        for item in prompts:
            strategy, prompt = item if isinstance(item, tuple) else ("cascade", item)
            try:
                out.append(await orch.run(prompt, strategy=strategy))
            except AllTargetsFailed:
                out.append(None)
    return out


def write_rows(path: Path, rows: Sequence[dict[str, Any] | str]) -> Path:
    path.write_text(
        "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8"
    )
    return path


def full_feedback(prompts: Sequence[str]) -> list[dict[str, Any]]:
    """A judge's verdict on both models for every prompt (no unobserved cells)."""
    rows: list[dict[str, Any]] = []
    for p in dict.fromkeys(prompts):
        h = request_hash(p)
        rows.append({"request_hash": h, "model": "cheap", "good": not is_hard(p), "source": "judge"})
        rows.append({"request_hash": h, "model": "strong", "good": True, "source": "judge"})
    return rows


def train(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["train", *argv])
    out, err = capsys.readouterr()
    return code, out, err


HELD_OUT_HARD = "please answer about lemma integral derivative filler3"
HELD_OUT_EASY = "please answer about fruit weather animal filler3"


def assert_routes(router: Path) -> None:
    from tierwise.routing import OutcomeModel

    model = OutcomeModel.load(router)
    assert set(model.models) == {"cheap", "strong"}
    clf = model.as_classifier(strong_share=0.5)
    assert clf.classify(Request.from_prompt(HELD_OUT_HARD)).label == "strong"
    assert clf.classify(Request.from_prompt(HELD_OUT_EASY)).label == "cheap"


# ---------------------------------------------------------------- request hash and rows


async def test_request_hash_is_the_audit_records_key(tmp_path: Path) -> None:
    system_req = Request.from_prompt("what color is the fruit", system="be brief")
    responses = await collect(tmp_path / "a.jsonl", ["hello there"])
    audit = AuditLog(tmp_path / "b.jsonl", include_text=True, flush_interval_s=0)
    async with orchestrator(audit) as orch:
        resp = await orch.run(system_req, metadata={"user_tier": "gold"})
    records = read_audit(tmp_path / "a.jsonl") + read_audit(tmp_path / "b.jsonl")
    assert [r["request_hash"] for r in records] == [request_hash("hello there"), request_hash(system_req)]
    # metadata does not change the hash; the system prompt does
    assert request_hash(system_req) != request_hash("what color is the fruit")
    row = Feedback.for_response(system_req, resp, good=False)
    assert row == Feedback(request_hash(system_req), 0.0, model="cheap", source="user")
    first = responses[0]
    assert first is not None
    assert Feedback.for_response("hello there", first, score=0.75).to_dict() == {
        "request_hash": records[0]["request_hash"],
        "model": "cheap",
        "score": 0.75,
        "source": "user",
    }
    with pytest.raises(TypeError):
        request_hash(42)  # type: ignore[arg-type]


def test_feedback_rows_round_trip_through_a_file(tmp_path: Path) -> None:
    rows = [
        Feedback("h1", 1.0),
        Feedback("h2", 0.0, model="cheap", source="judge", ts="2025-06-01T00:00:00Z"),
        Feedback("h3", 0.25, source="user", ts=1717200000),
    ]
    path = tmp_path / "fb.jsonl"
    assert write_feedback(path, rows[:2]) == 2
    assert write_feedback(path, rows[2:]) == 1  # appends
    assert path.read_text().splitlines()[0] == '{"request_hash":"h1","good":true}'
    back = read_feedback(path)
    assert back == rows
    assert [r.where for r in back] == [f"{path}:1", f"{path}:2", f"{path}:3"]


# ---------------------------------------------------------------- verifier feedback


async def test_verifier_feedback_rows_exactly(tmp_path: Path) -> None:
    cases: list[tuple[str, str]] = [
        ("c3", "alpha"),  # cheap accepted
        ("c3", "beta [cheap-wrong] [mid-wrong]"),  # two rejections, strong accepted
        ("c3", "gamma [cheap-wrong] [mid-wrong] [strong-wrong]"),  # nothing accepted
        ("c3", "delta [cheap-down]"),  # a failed rung has no answer to judge
        ("nolast", "epsilon [cheap-wrong]"),  # the last rung is returned unverified
        # the judge is down: each rung's verifier failed, no verdict was given
        ("judged", "zeta [judge-down] [cheap-wrong]"),
        ("judged", "eta [cheap-wrong]"),
        ("unnamed", "theta [judge-down] [cheap-wrong]"),
        ("unnamed", "iota [cheap-wrong]"),
        ("single", "kappa"),  # not a cascade: no verdict
        ("c3", "lambda [cheap-down] [mid-down] [strong-down]"),  # the request failed
        # the verifier of an earlier rung failed, the next rung's accepted
        ("judged", "mu [judge-flaky] [cheap-wrong]"),
        ("routed", "nu [cheap-wrong]"),  # a cascade nested in a router: its steps propagate
        ("piped", "xi [cheap-wrong]"),  # a cascade nested in a pipeline: they do not
        ("router_rung", "omicron [cheap-wrong]"),  # a rung that is a strategy: its answer is judged
        ("raced", "pi [cheap-wrong]"),  # an ensemble's accepted marks the winner: not a verdict
        # the built-in Judge (scores 0.1 for WRONG, 0.9 otherwise) down for both rungs: no verdict
        # on either answer, so no row, although the cascade escalated and returned "not accepted"
        ("real_judge", "rho [judge-down] [cheap-wrong]"),
        ("real_judge", "sigma [cheap-wrong]"),  # the judge's real rejection is a verdict
        ("real_judge", "tau [judge-garbled]"),  # an unparseable reply is no verdict
        ("real_judge", "upsilon [judge-flaky] [cheap-wrong]"),  # down for the wrong answer only
    ]
    responses = await collect(tmp_path / "audit.jsonl", cases)
    assert responses[10] is None and all(r is not None for i, r in enumerate(responses) if i != 10)
    records = read_audit(tmp_path / "audit.jsonl")
    rows = verifier_feedback(records)
    h = {prompt.split()[0]: request_hash(prompt) for _, prompt in cases}
    got = [(r.request_hash, r.model, r.score, r.source) for r in rows]
    assert got == [
        (h["alpha"], "cheap", 1.0, "verifier"),
        (h["beta"], "cheap", 0.0, "verifier"),
        (h["beta"], "mid", 0.0, "verifier"),
        (h["beta"], "strong", 1.0, "verifier"),
        (h["gamma"], "cheap", 0.0, "verifier"),
        (h["gamma"], "mid", 0.0, "verifier"),
        (h["gamma"], "strong", 0.0, "verifier"),
        (h["delta"], "mid", 1.0, "verifier"),
        (h["epsilon"], "cheap", 0.0, "verifier"),
        (h["eta"], "cheap", 0.0, "verifier"),
        (h["eta"], "strong", 1.0, "verifier"),
        (h["iota"], "cheap", 0.0, "verifier"),
        (h["iota"], "strong", 1.0, "verifier"),
        (h["mu"], "strong", 1.0, "verifier"),
        (h["nu"], "cheap", 0.0, "verifier"),
        (h["nu"], "strong", 1.0, "verifier"),
        (h["omicron"], "cheap", 0.0, "verifier"),
        (h["omicron"], "strong", 1.0, "verifier"),
        (h["sigma"], "cheap", 0.0, "verifier"),
        (h["sigma"], "strong", 1.0, "verifier"),
        (h["upsilon"], "strong", 1.0, "verifier"),
    ]
    by_hash = {r["request_hash"]: r for r in records}
    assert all(r.ts == by_hash[r.request_hash]["ts"] and isinstance(r.ts, str) for r in rows)

    # What the rows were read from: the response's steps, as the audit recorded them.
    def steps(word: str) -> list[tuple[str, str, bool | None, str]]:
        return [(s["name"], s["model"], s["accepted"], s["note"]) for s in by_hash[h[word]]["steps"]]

    assert steps("mu") == [
        ("cascade[0]", "cheap", False, steps("mu")[0][3]),
        ("cascade[1]", "strong", True, "judged: passed"),
        ("cascade[1].judge", "judge", None, "verifier call"),
    ]
    assert steps("mu")[0][3].startswith("verifier failed: AllTargetsFailed: ")
    assert steps("delta")[0][:3] == ("cascade[0]", "cheap", False)
    assert steps("delta")[0][3].startswith("failed: AllTargetsFailed: ")
    assert steps("epsilon")[-1] == ("cascade[1]", "strong", None, "last rung, not verified")
    assert [s[:3] for s in steps("nu")] == [("cascade[0]", "cheap", False), ("cascade[1]", "strong", True)]
    assert steps("xi") == [("answer", "strong", None, "")]  # one step per pipeline step
    assert {(s[0], s[1]) for s in steps("pi")} == {("ensemble[0]", "cheap"), ("ensemble[1]", "strong")}
    assert ("ensemble[1]", "strong", True, "") in steps("pi")
    assert steps("kappa") == [] and by_hash[h["lambda"]]["steps"] == []
    rho = steps("rho")
    assert [s[:3] for s in rho] == [("cascade[0]", "cheap", False), ("cascade[1]", "strong", False)]
    assert all(
        s[3].startswith("verifier failed: judge (judge): call failed: AllTargetsFailed: ") for s in rho
    )
    assert by_hash[h["rho"]]["route"]["reason"].startswith("not accepted: no rung passed")
    assert steps("sigma")[0] == ("cascade[0]", "cheap", False, "judge (judge): 0.10 < 0.7")
    assert [s[3] for s in steps("tau") if s[2] is not None] == [
        "verifier failed: judge (judge): unparseable reply 'looks right'"
    ] * 2
    assert steps("upsilon")[0][:3] == ("cascade[0]", "cheap", False)
    assert steps("upsilon")[0][3].startswith("verifier failed: judge (judge): call failed: ")

    # Records written before audit records had steps give no verifier feedback.
    old = [{k: v for k, v in r.items() if k != "steps"} for r in records]
    assert verifier_feedback(old) == []


async def test_costs_are_the_mean_answer_cost_without_verifier_calls(tmp_path: Path) -> None:
    prompts = ["eta [cheap-wrong]", "iota [cheap-wrong] please", "alpha"]
    cases = [("judged", prompts[0]), ("unnamed", prompts[1]), ("cascade", prompts[2])]
    responses = await collect(tmp_path / "audit.jsonl", cases)
    answers: dict[str, list[float]] = {}
    for resp in responses:
        assert resp is not None
        for a in resp.attempts:
            if a.model != "judge":
                assert a.cost_usd is not None
                answers.setdefault(a.model, []).append(a.cost_usd)
    # the judge answered only as a verifier, so it is not costed (nor trained)
    fb = [Feedback(request_hash(p), 1.0, model="judge") for p in prompts]
    with pytest.raises(FeedbackError, match=r"no known cost for 'judge'"):
        training_set(read_audit(tmp_path / "audit.jsonl"), fb, min_feedback=1)
    data = training_set(read_audit(tmp_path / "audit.jsonl"), min_feedback=1)
    assert data.costs == pytest.approx({m: sum(c) / len(c) for m, c in answers.items()})
    assert data.cost_source == {"cheap": "audit", "strong": "audit"}


# ---------------------------------------------------------------- the join


async def test_join_averages_verdicts_and_dedupes_prompts(tmp_path: Path) -> None:
    prompts = ["what color is the fruit", "prove the lemma", "what color is the fruit", "name an animal"]
    await collect(tmp_path / "audit.jsonl", [*prompts, ("strong_only", "name an animal")])
    records = read_audit(tmp_path / "audit.jsonl")
    fruit, lemma, animal = (
        request_hash(p) for p in ("what color is the fruit", "prove the lemma", "name an animal")
    )
    feedback = [
        Feedback(fruit, 1.0, source="user"),  # model: the one that answered (cheap)
        Feedback(fruit, 0.0, source="user"),
        Feedback(fruit, 0.2, model="cheap", source="judge"),
        Feedback(lemma, 1.0, model="strong"),
        Feedback(animal, 1.0),  # answered by cheap and by strong: ambiguous
        Feedback("0" * 64, 1.0, model="cheap"),  # not in this audit
    ]
    data = training_set(records, feedback, from_verifier=False, min_feedback=1)
    assert data.request_hashes == [fruit, lemma]
    assert data.prompts == ["what color is the fruit", "prove the lemma"]
    assert data.scores["cheap"][0] == pytest.approx((1.0 + 0.0 + 0.2) / 3)
    assert math.isnan(data.scores["cheap"][1]) and math.isnan(data.scores["strong"][0])
    assert data.scores["strong"][1] == 1.0
    assert data.rows == {"cheap": 3, "strong": 1}
    assert data.labeled == {"cheap": 1, "strong": 1}
    assert data.skipped == {"ambiguous_model": 1, "not_in_audit": 1}
    assert data.sources == {"user": 2, "judge": 1, "unspecified": 1}

    # with the verifier: the fruit prompt was accepted twice (two requests), the
    # lemma rejected once for cheap and accepted for strong
    data = training_set(records, feedback, min_feedback=1)
    assert data.scores["cheap"][data.request_hashes.index(fruit)] == pytest.approx((1.2 + 2.0) / 5)
    assert data.scores["cheap"][data.request_hashes.index(lemma)] == 0.0
    assert data.scores["strong"][data.request_hashes.index(lemma)] == 1.0


async def test_exported_verifier_rows_are_not_counted_twice(tmp_path: Path) -> None:
    await collect(tmp_path / "audit.jsonl", make_prompts(6, seed=1))
    records = read_audit(tmp_path / "audit.jsonl")
    exported = tmp_path / "verifier.jsonl"
    write_feedback(exported, verifier_feedback(records))
    alone = training_set(records, min_feedback=1)
    both = training_set(records, read_feedback(exported), min_feedback=1)
    assert both.rows == alone.rows == {"cheap": 6, "strong": 3}
    # without the derived rows, the exported ones give the same data
    only_file = training_set(records, read_feedback(exported), from_verifier=False, min_feedback=1)
    assert only_file.request_hashes == alone.request_hashes
    for m in ("cheap", "strong"):
        assert only_file.scores[m] == pytest.approx(alone.scores[m], nan_ok=True)


async def test_failed_requests_and_missing_text_are_skipped_or_explained(tmp_path: Path) -> None:
    failed = "lambda [cheap-down] [strong-down]"
    await collect(tmp_path / "audit.jsonl", [failed, "alpha"])
    records = read_audit(tmp_path / "audit.jsonl")
    with pytest.raises(FeedbackError, match="no feedback row matches") as info:
        training_set(records, [Feedback(request_hash(failed), 1.0)], from_verifier=False)
    assert "1 failed_request" in str(info.value)
    await collect(tmp_path / "notext.jsonl", ["alpha", "beta"], include_text=False)
    with pytest.raises(FeedbackError, match=r"include_text = true"):
        training_set(read_audit(tmp_path / "notext.jsonl"), min_feedback=1)


# ---------------------------------------------------------------- the CLI, end to end


async def test_train_from_judge_and_verifier_feedback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    prompts = make_prompts(40, seed=0)
    asked = prompts + prompts[:8]  # repeated questions are one training row each
    responses = await collect(tmp_path / "audit.jsonl", asked)
    fb = write_rows(tmp_path / "fb.jsonl", full_feedback(prompts))
    out = tmp_path / "router.json"
    code, stdout, stderr = train(
        capsys, "--audit", str(tmp_path / "audit.jsonl"), "--feedback", str(fb), "--out", str(out), "--json"
    )
    assert code == 0, stderr
    summary = json.loads(stdout)
    assert summary["prompts"] == 40 and summary["audit_records"] == 48
    # judge rows (40 per model) + verifier rows: cheap on all 48 requests, strong on the 24 hard ones
    assert summary["models"]["cheap"]["feedback_rows"] == 40 + 48
    assert summary["models"]["strong"]["feedback_rows"] == 40 + 24
    assert summary["models"]["cheap"]["good_rate"] == pytest.approx(0.5)
    assert summary["models"]["strong"]["good_rate"] == 1.0
    assert summary["sources"] == {"judge": 80, "verifier": 72}
    cheap_costs = [a.cost_usd for r in responses if r for a in r.attempts if a.model == "cheap"]
    assert summary["models"]["cheap"]["expected_cost_usd"] == pytest.approx(
        sum(c for c in cheap_costs if c is not None) / len(cheap_costs)
    )
    assert summary["strong"] == "strong" and summary["out"] == str(out)
    assert summary["suggested_strong_share"] == 0.5
    assert "as_classifier(strong_share=0.5)" in summary["snippet"]
    assert summary["embedding"] is None
    assert summary["config_snippet"].splitlines() == [
        "[strategies.learned]",
        'type = "router"',
        'classifier = "outcome"',
        f"model = {json.dumps(str(out))}",
        "strong_share = 0.5",
        'routes = { cheap = "cheap", strong = "strong" }',
    ]
    assert_routes(out)

    # human output: the same facts, and the snippet to use it
    code, stdout, _ = train(
        capsys, "--audit", str(tmp_path / "audit.jsonl"), "--feedback", str(fb), "--out", str(out)
    )
    assert code == 0
    assert "trained on 40 distinct prompts from 48 audit records" in stdout
    assert f"wrote {out}" in stdout and 'routes={"cheap": "cheap", "strong": "strong"}' in stdout
    assert "or in tierwise.toml:\n  [strategies.learned]\n" in stdout
    assert "embedding half" not in stdout and "embedder" not in stdout


async def test_train_from_verifier_feedback_alone(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The zero-effort loop: a cascade's verifier is the only feedback. The strong
    model is never asked the easy prompts, so its scores there are unobserved (nan)."""
    await collect(tmp_path / "audit.jsonl", make_prompts(40, seed=0))
    out = tmp_path / "router.json"
    code, stdout, stderr = train(
        capsys, "--audit", str(tmp_path / "audit.jsonl"), "--out", str(out), "--json"
    )
    assert code == 0, stderr
    summary = json.loads(stdout)
    assert summary["models"]["cheap"]["labeled_prompts"] == 40
    assert summary["models"]["strong"]["labeled_prompts"] == 20
    assert_routes(out)


async def test_train_reads_a_sqlite_audit(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    prompts = make_prompts(30, seed=2)
    await collect(tmp_path / "audit.db", prompts, sqlite=True)
    fb = write_rows(tmp_path / "fb.jsonl", full_feedback(prompts))
    out = tmp_path / "router.json"
    code, stdout, stderr = train(
        capsys,
        *("--audit", str(tmp_path / "audit.db"), "--feedback", str(fb)),
        *("--out", str(out), "--no-from-verifier", "--json"),
    )
    assert code == 0, stderr
    assert json.loads(stdout)["sources"] == {"judge": 60}
    assert_routes(out)


async def test_unknown_costs_need_cost_overrides(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    prompts = make_prompts(30, seed=3)
    await collect(tmp_path / "audit.jsonl", prompts, priced=False)
    fb = write_rows(tmp_path / "fb.jsonl", full_feedback(prompts))
    args = ["--audit", str(tmp_path / "audit.jsonl"), "--feedback", str(fb), "--no-from-verifier"]
    out = tmp_path / "router.json"
    code, _, err = train(capsys, *args, "--out", str(out))
    assert code == 2
    assert "no known cost for 'cheap', 'strong'" in err and "--cost cheap=" in err
    assert not out.exists()
    code, stdout, err = train(
        capsys, *args, "--out", str(out), "--cost", "cheap=0.0001", "--cost", "strong=0.003", "--json"
    )
    assert code == 0, err
    models = json.loads(stdout)["models"]
    assert models["cheap"]["expected_cost_usd"] == 0.0001 and models["cheap"]["cost_from"] == "given"
    assert models["strong"]["expected_cost_usd"] == 0.003
    assert_routes(out)


# ---------------------------------------------------------------- CLI errors


@pytest.fixture
async def audit_file(tmp_path: Path) -> Path:
    path = tmp_path / "audit.jsonl"
    await collect(path, make_prompts(12, seed=4))
    return path


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (['{"request_hash": "h", "good": true}', "{not json"], r"fb.jsonl:2: not valid JSON"),
        (
            ['{"request_hash": "h", "scroe": 0.5}'],
            r"fb.jsonl:1: unknown field\(s\) 'scroe'; expected some of",
        ),
        (['{"request_hash": "h", "score": 1.5}'], r'fb.jsonl:1: "score" must be within 0..1, got 1.5'),
        (['{"request_hash": "h", "score": "high"}'], r'fb.jsonl:1: "score" must be a number within 0..1'),
        (['{"request_hash": "h", "good": "yes"}'], r'fb.jsonl:1: "good" must be true or false'),
        (['{"request_hash": "h", "good": true, "score": 1}'], r'fb.jsonl:1: give exactly one of "good"'),
        (['{"request_hash": "h"}'], r'fb.jsonl:1: give exactly one of "good"'),
        (['{"good": true}'], r"fb.jsonl:1: missing request_hash"),
        (['{"request_hash": "h", "good": true, "source": "boss"}'], r"fb.jsonl:1: source must be one of"),
        (['{"request_hash": "h", "good": true, "model": ""}'], r"fb.jsonl:1: model must be a non-empty"),
        (["[1, 2]"], r"fb.jsonl:1: a feedback row must be a JSON object"),
    ],
)
def test_bad_feedback_rows_exit_2_naming_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], audit_file: Path, rows: list[str], message: str
) -> None:
    fb = write_rows(tmp_path / "fb.jsonl", rows)
    code, _, err = train(
        capsys, "--audit", str(audit_file), "--feedback", str(fb), "--out", str(tmp_path / "r.json")
    )
    assert code == 2
    assert err.startswith("tierwise: error: ")
    assert f"{fb}:" in err
    import re

    assert re.search(message, err), err


def test_input_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], audit_file: Path) -> None:
    out = str(tmp_path / "r.json")
    audit = str(audit_file)

    code, _, err = train(capsys, "--audit", str(tmp_path / "nope.jsonl"), "--out", out)
    assert code == 2 and "nope.jsonl: audit log not found" in err

    code, _, err = train(capsys, "--audit", audit, "--feedback", str(tmp_path / "nofb.jsonl"), "--out", out)
    assert code == 2 and "nofb.jsonl: file not found" in err

    code, _, err = train(capsys, "--audit", audit, "--out", str(tmp_path / "missing" / "r.json"))
    assert code == 2 and "--out: directory not found" in err

    code, _, err = train(capsys, "--audit", audit, "--out", out, "--cost", "cheap")
    assert code == 2 and "--cost expects MODEL=USD" in err
    code, _, err = train(capsys, "--audit", audit, "--out", out, "--cost", "cheap=-1")
    assert code == 2 and "--cost expects MODEL=USD" in err

    # 12 prompts: 12 labeled for cheap, 6 for strong (verifier feedback)
    code, _, err = train(capsys, "--audit", audit, "--out", out)
    assert code == 2 and "too few labeled prompts: strong has 6 (need at least 10 per model" in err
    code, _, err = train(capsys, "--audit", audit, "--out", out, "--min-feedback", "0")
    assert code == 2 and "--min-feedback must be at least 1" in err

    code, _, err = train(capsys, "--audit", audit, "--out", out, "--no-from-verifier")
    assert code == 2 and "no feedback" in err
    assert not Path(out).exists()


async def test_audit_without_prompt_text_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    await collect(tmp_path / "audit.jsonl", make_prompts(12, seed=4), include_text=False)
    code, _, err = train(capsys, "--audit", str(tmp_path / "audit.jsonl"), "--out", str(tmp_path / "r.json"))
    assert code == 2
    assert "no prompt text" in err and "[audit] include_text = true" in err


def test_corrupt_audit_lines(tmp_path: Path, capsys: pytest.CaptureFixture[str], audit_file: Path) -> None:
    lines = audit_file.read_text().splitlines()
    truncated = tmp_path / "truncated.jsonl"
    truncated.write_text("\n".join(lines) + "\n" + lines[0][:40])  # the writer died mid-line
    assert len(read_audit(truncated)) == len(lines)
    corrupt = tmp_path / "corrupt.jsonl"
    corrupt.write_text("\n".join([lines[0], lines[1][:40], *lines[2:]]) + "\n")
    code, _, err = train(capsys, "--audit", str(corrupt), "--out", str(tmp_path / "r.json"))
    assert code == 2 and f"{corrupt}:2: not valid JSON" in err
    not_db = tmp_path / "broken.db"
    not_db.write_bytes(b"SQLite format 3\x00" + b"\x00" * 100)
    with pytest.raises(FeedbackError, match="not a readable tierwise SQLite audit"):
        read_audit(not_db)


def test_runtime_failure_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], audit_file: Path
) -> None:
    out_dir = tmp_path / "router.json"
    out_dir.mkdir()  # cannot write the model there
    prompts = [r["prompt"] for r in read_audit(audit_file)]
    fb = write_rows(tmp_path / "fb.jsonl", full_feedback(prompts))
    code, _, err = train(
        capsys,
        *("--audit", str(audit_file), "--feedback", str(fb), "--out", str(out_dir)),
        *("--min-feedback", "5", "--no-from-verifier"),
    )
    assert code == 1
    assert err.startswith("tierwise: training failed: IsADirectoryError")


def test_missing_scikit_learn_says_what_to_install(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], audit_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "sklearn", None)  # import sklearn now raises ImportError
    code, _, err = train(capsys, "--audit", str(audit_file), "--out", str(tmp_path / "r.json"))
    assert code == 1
    assert 'pip install "tierwise[learn]"' in err


def test_training_helpers_do_not_import_numpy() -> None:
    code = (
        "import sys, tierwise.routing as r; r.training_set; r.request_hash('x');"
        "assert 'numpy' not in sys.modules and 'sklearn' not in sys.modules, sorted(sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


async def test_feedback_on_one_model_is_not_a_router(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    prompts = make_prompts(12, seed=5)
    await collect(tmp_path / "audit.jsonl", prompts)
    rows = [r for r in full_feedback(prompts) if r["model"] == "cheap"]
    fb = write_rows(tmp_path / "fb.jsonl", rows)
    code, _, err = train(
        capsys,
        *("--audit", str(tmp_path / "audit.jsonl"), "--feedback", str(fb)),
        *("--out", str(tmp_path / "r.json"), "--no-from-verifier"),
    )
    assert code == 2 and "feedback covers only 'cheap'" in err


def test_the_offline_walkthrough_in_the_docs_runs(tmp_path: Path) -> None:
    doc = (Path(__file__).parent.parent / "docs" / "training.md").read_text(encoding="utf-8")
    section = doc.split("## Try it offline", 1)[1]
    script = section.split("```python\n", 1)[1].split("```", 1)[0]
    after = section.split("```python\n", 1)[1].split("```\n", 1)[1]
    expected = after.split("```\n", 1)[1].split("```", 1)[0]  # the output block after the script
    (tmp_path / "train_offline.py").write_text(script, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "train_offline.py"], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip("\n") == expected.strip("\n")
    assert (tmp_path / "router.json").exists()


# ---------------------------------------------------------------- the embedding half (--embedder)
#
# The prompts below are one sentence in different letter cases, which the text features
# do not see (they lowercase): the text half of the model cannot tell them apart. Which
# ones the cheap model fails is a hidden label that only their embeddings (served by a
# loopback MockLLMServer through /v1/embeddings) carry, so only a model whose embedding
# half was fitted on the right vector for each prompt routes the held-out ones right.

DIM = 8
EMBED_PRICE = 0.02  # $ per 1M input tokens
EMBED_TOKENS = 100  # what the mock reports per embeddings request
SENTENCE = "please answer the next question about our product"


def hidden_prompts(n: int, seed: int) -> dict[str, bool]:
    """``prompt → hard``: SENTENCE in random letter cases; a random half is hard."""
    rng = random.Random(seed)
    prompts: dict[str, None] = {}
    while len(prompts) < n:
        prompts["".join(c.upper() if rng.random() < 0.5 else c for c in SENTENCE)] = None
    hard = [i < n // 2 for i in range(n)]
    rng.shuffle(hard)
    return dict(zip(prompts, hard, strict=True))


HIDDEN = hidden_prompts(48, seed=11)
HELD_OUT = hidden_prompts(4, seed=12)  # not trained on; asked through the config snippet
assert not set(HIDDEN) & set(HELD_OUT) and not any(is_hard(p) for p in [*HIDDEN, *HELD_OUT])
assert sum(HIDDEN.values()) == 24 and sum(HELD_OUT.values()) == 2


def direction(hard: bool, text: str, noise: float = 0.2) -> list[float]:
    """Hard and easy prompts point in two directions, with some per-prompt noise."""
    rng = random.Random(text)
    vec = [rng.uniform(-noise, noise) for _ in range(DIM)]
    vec[0 if hard else 1] += 1.0
    return vec


class Embedder:
    """``MockLLMServer(embed=...)``: records every batch it is asked for."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def __call__(self, texts: list[str]) -> list[list[float]]:
        self.calls.append(list(texts))
        # held-out prompts sit in the middle of their cluster
        return [direction(HIDDEN[t], t) if t in HIDDEN else direction(HELD_OUT[t], t, 0.0) for t in texts]


def hidden_feedback(prompts: Sequence[str]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for p in prompts:
        h = request_hash(p)
        rows.append({"request_hash": h, "model": "cheap", "good": not HIDDEN[p], "source": "judge"})
        rows.append({"request_hash": h, "model": "strong", "good": True, "source": "judge"})
    return rows


def mock_models() -> dict[str, MockModel]:
    return {
        "cheap-model": MockModel(reply="from cheap"),
        "strong-model": MockModel(reply="from strong"),
        "emb-model": MockModel(input_tokens=EMBED_TOKENS),
        "free-emb-model": MockModel(input_tokens=EMBED_TOKENS),
    }


def write_config(
    path: Path, server: MockLLMServer, *, head: str = "", tail: str = "", provider: str = ""
) -> Path:
    """A tierwise config pointing an OpenAI-compatible (vLLM, no key) provider at the mock."""
    path.write_text(
        f"""{head}
[providers.mock]
type = "openai"
compat = "vllm"
base_url = "{server.base_url}/v1"
{provider}

[providers.ant]
type = "anthropic"
base_url = "{server.base_url}"
api_key_env = "TW_TEST_TRAIN_ANTHROPIC_KEY"

[models.cheap]
provider = "mock"
model = "cheap-model"
input_price = 1.0
output_price = 2.0

[models.strong]
provider = "mock"
model = "strong-model"
input_price = 30.0
output_price = 60.0

[models.emb]
provider = "mock"
model = "emb-model"
input_price = {EMBED_PRICE}

[models.free]
provider = "mock"
model = "free-emb-model"

[models.claude]
provider = "ant"
model = "claude-sonnet-4-6"

[retry]
max_attempts = 2
initial_backoff_s = 0
{tail}""",
        encoding="utf-8",
    )
    return path


@pytest.fixture
def hidden_audit(tmp_path: Path) -> tuple[Path, Path]:
    """An audit of the HIDDEN prompts (one asked twice, one of the strong model too, which
    gives its cost) and a judge's verdicts on both models."""
    prompts = list(HIDDEN)
    audit = tmp_path / "audit.jsonl"
    anyio.run(functools.partial(collect, audit, [*prompts, prompts[0], ("strong_only", prompts[1])]))
    return audit, write_rows(tmp_path / "fb.jsonl", hidden_feedback(prompts))


def train_args(audit: Path, fb: Path, out: Path) -> list[str]:
    # no verifier rows: the cascade's verifier sees no "WRONG" answer on these prompts
    return ["--audit", str(audit), "--feedback", str(fb), "--out", str(out), "--no-from-verifier"]


def test_train_with_an_embedder_fits_the_embedding_half(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], hidden_audit: tuple[Path, Path]
) -> None:
    from tierwise.routing import OutcomeModel

    audit, fb = hidden_audit
    out = tmp_path / "router.json"
    embed = Embedder()
    with MockLLMServer.run_in_thread(mock_models(), embed=embed) as server:
        config = write_config(tmp_path / "tierwise.toml", server)
        code, stdout, stderr = train(
            capsys,
            *train_args(audit, fb, out),
            *("--config", str(config), "--embedder", "emb", "--embed-batch", "7", "--json"),
        )
        assert code == 0, stderr
        summary = json.loads(stdout)
        # every distinct training prompt embedded once, in training order, 7 per request
        training_prompts = training_set(
            read_audit(audit), read_feedback(fb), from_verifier=False, min_feedback=1
        ).prompts
        assert sorted(training_prompts) == sorted(HIDDEN)
        assert [len(c) for c in embed.calls] == [7] * 6 + [6]
        assert [t for c in embed.calls for t in c] == training_prompts
        embed_requests = [r for r in server.requests if r.path == "/v1/embeddings"]
        assert len(embed_requests) == 7 and {r.model for r in embed_requests} == {"emb-model"}

        assert summary["embedding"] == {
            "model": "emb",
            "dimension": DIM,
            "prompts": 48,
            "batches": 7,
            "cost_usd": pytest.approx(7 * EMBED_TOKENS * EMBED_PRICE / 1e6),
        }
        assert 'embed_model="emb")' in summary["snippet"]
        snippet = summary["config_snippet"]
        assert snippet.splitlines()[-1] == 'embedder = "emb"'

        # the written model has an embedding half, and it is what tells hard from easy
        raw = json.loads(out.read_text(encoding="utf-8"))
        assert "emb_coef" in raw and "emb_intercept" in raw
        model = OutcomeModel.load(out)
        assert model.embedding_dim == DIM
        text_only = model.predict(list(HIDDEN))["cheap"]
        assert max(text_only) - min(text_only) < 1e-9  # the text half sees one prompt
        p = model.predict([SENTENCE] * 2, embeddings=[direction(True, "a"), direction(False, "b")])
        assert p["cheap"][0] < 0.35 < 0.65 < p["cheap"][1], p

        # the printed config snippet, as is, routes held-out prompts on their embeddings
        routing = write_config(
            tmp_path / "routing.toml", server, head='default_strategy = "learned"', tail=snippet
        )
        embed.calls.clear()

        async def ask() -> dict[str, str]:
            async with Orchestrator.from_config(routing) as orch:
                return {prompt: (await orch.run(prompt)).text for prompt in HELD_OUT}

        answers = anyio.run(ask)
    assert answers == {p: "from strong" if hard else "from cheap" for p, hard in HELD_OUT.items()}
    assert embed.calls == [[p] for p in HELD_OUT]


def test_train_with_an_embedder_human_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], hidden_audit: tuple[Path, Path]
) -> None:
    audit, fb = hidden_audit
    out = tmp_path / "router.json"
    embed = Embedder()
    with MockLLMServer.run_in_thread(mock_models(), embed=embed) as server:
        config = write_config(tmp_path / "tierwise.toml", server)
        args = [*train_args(audit, fb, out), "--config", str(config)]
        code, stdout, stderr = train(capsys, *args, "--embedder", "emb")
        assert code == 0, stderr
        assert "embedding 48 training prompts with emb (1 request)…" in stderr  # default batch: 64
        assert [len(c) for c in embed.calls] == [48]
        cost = EMBED_TOKENS * EMBED_PRICE / 1e6
        assert (
            f"embedding half: dimension {DIM}, embedder emb (48 prompts in 1 request, "
            f'embedding cost ${cost:.8f}); the router needs embedder = "emb"\n'
        ) in stdout
        assert 'as_classifier(strong_share=0.5, embed_model="emb")' in stdout
        assert stdout.endswith('  embedder = "emb"\n')

        # an embedding model without a price: its cost is unknown, never $0
        code, stdout, stderr = train(capsys, *args, "--embedder", "free", "--embed-batch", "20")
        assert code == 0, stderr
        assert "embedder free (48 prompts in 3 requests, embedding cost unknown)" in stdout
        assert stdout.endswith('  embedder = "free"\n')
        code, stdout, stderr = train(capsys, *args, "--embedder", "free", "--json")
        assert code == 0, stderr
        assert json.loads(stdout)["embedding"]["cost_usd"] is None
        assert stderr == ""


def test_embedder_usage_errors_exit_2_naming_the_alias(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    hidden_audit: tuple[Path, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TW_TEST_TRAIN_ANTHROPIC_KEY", "tw-test-anthropic-key-1234")
    audit, fb = hidden_audit
    out = tmp_path / "router.json"
    args = train_args(audit, fb, out)
    embed = Embedder()
    with MockLLMServer.run_in_thread(mock_models(), embed=embed) as server:
        config = str(write_config(tmp_path / "tierwise.toml", server))

        code, _, err = train(capsys, *args, "--embedder", "emb")
        assert code == 2 and err.startswith("tierwise: error: --embedder 'emb' needs --config FILE")

        code, _, err = train(capsys, *args, "--config", config)
        assert code == 2 and "--config is only used with --embedder" in err

        code, _, err = train(capsys, *args, "--config", str(tmp_path / "nope.toml"), "--embedder", "emb")
        assert code == 2 and "config file not found" in err and "nope.toml" in err

        code, _, err = train(capsys, *args, "--config", config, "--embedder", "emb", "--embed-batch", "0")
        assert code == 2 and "--embed-batch must be at least 1" in err

        code, _, err = train(capsys, *args, "--config", config, "--embedder", "nope")
        assert code == 2
        assert err.startswith("tierwise: error: --embedder 'nope': unknown model 'nope'; configured: ")

        # Anthropic serves no embeddings: said before any request is sent
        code, _, err = train(capsys, *args, "--config", config, "--embedder", "claude")
        assert code == 2
        assert err.startswith("tierwise: error: --embedder 'claude': ")
        assert "has no embeddings endpoint" in err

        # the provider is there, but the server does not know the model (404): a config mistake
        ghost = write_config(
            tmp_path / "404.toml", server, tail='[models.ghost]\nprovider = "mock"\nmodel = "ghost-model"'
        )
        code, _, err = train(capsys, *args, "--config", str(ghost), "--embedder", "ghost")
        sent = [(r.path, r.model) for r in server.requests]
    assert code == 2
    assert err.splitlines()[-1].startswith("tierwise: error: --embedder 'ghost': ") and "ghost-model" in err
    # only that one request reached the server: every other error was found before any call
    assert sent == [("/v1/embeddings", "ghost-model")]
    assert embed.calls == [] and not out.exists()


def test_embedding_failure_exits_1_without_printing_the_key(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    hidden_audit: tuple[Path, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    secret = (
        "tw-test-train-secret-8f3k2"  # shaped like no known key: only the provider's own redaction hides it
    )
    monkeypatch.setenv("TW_TEST_TRAIN_KEY", secret)
    audit, fb = hidden_audit
    out = tmp_path / "router.json"
    embed = Embedder()
    with MockLLMServer.run_in_thread(mock_models(), embed=embed) as server:
        config = write_config(
            tmp_path / "tierwise.toml", server, provider='api_key_env = "TW_TEST_TRAIN_KEY"'
        )
        body = json.dumps({"error": {"message": f"overloaded (key {secret})", "type": "server_error"}})
        for _ in range(2):  # the config's retry.max_attempts
            server.replay(500, {"content-type": "application/json"}, [body.encode()])
        code, stdout, err = train(
            capsys, *train_args(audit, fb, out), "--config", str(config), "--embedder", "emb"
        )
        sent = server.requests
    assert code == 1
    assert err.splitlines()[-1].startswith("tierwise: embedding with 'emb' failed: ServerError: ")
    assert "overloaded" in err and "[REDACTED]" in err
    assert secret not in err and secret not in stdout
    # the key was really sent (so it really was in play), twice: the retry policy applied
    assert [r.headers.get("authorization") for r in sent] == [f"Bearer {secret}"] * 2
    assert embed.calls == [] and not out.exists()


# ---------------------------------------------------------------- held-out figures


def _constant_difficulty() -> Any:
    from tierwise.routing.difficulty import FORMAT, DifficultyClassifier

    weights = {"format": FORMAT, "ngrams": [], "idf": [], "coef": [], "length_coef": 0.0, "intercept": 0.0}
    return DifficultyClassifier.from_dict(weights)


def _oracle_difficulty() -> Any:
    """A 'pretrained' router that knows exactly which prompts the cheap model fails."""
    from tierwise.routing.difficulty import FORMAT, DifficultyClassifier

    weights = {
        "format": FORMAT,
        "ngrams": HARD,
        "idf": [1.0] * len(HARD),
        "coef": [20.0] * len(HARD),
        "length_coef": 0.0,
        "intercept": -10.0,
    }
    return DifficultyClassifier.from_dict(weights)


async def test_train_reports_held_out_figures_against_the_pretrained_router(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from tierwise.routing.difficulty import DifficultyClassifier

    prompts = make_prompts(100, seed=5)
    await collect(tmp_path / "audit.jsonl", prompts)
    fb = write_rows(tmp_path / "fb.jsonl", full_feedback(prompts))
    out = tmp_path / "router.json"
    args = ["--audit", str(tmp_path / "audit.jsonl"), "--feedback", str(fb), "--out", str(out)]

    # a pretrained router that knows nothing: the trained one is better, no warning
    monkeypatch.setattr(DifficultyClassifier, "pretrained", classmethod(lambda cls: _constant_difficulty()))
    code, stdout, stderr = train(capsys, *args, "--json")
    assert code == 0, stderr
    held = json.loads(stdout)["held_out"]
    assert (held["fraction"], held["train_prompts"], held["held_out_prompts"]) == (0.2, 80, 20)
    assert held["models"]["cheap"]["labeled"] == 20
    assert held["models"]["cheap"]["auroc"] > 0.9  # hard words are learned from the other 80
    assert held["models"]["strong"]["auroc"] is None  # always good: one class, no AUROC
    assert held["cheapest"] == "cheap" and held["pretrained_auroc"] == 0.5
    assert held["better_than_pretrained"] is True
    assert json.loads(stdout)["warning"] is None and "warning" not in stderr

    code, stdout, stderr = train(capsys, *args)
    assert code == 0
    assert "held-out check: fitted on 80 prompts, measured on the other 20 (20%)" in stdout
    assert "pretrained difficulty router, cheap: 0.500" in stdout

    # a pretrained router that is already perfect: training bought nothing, say so
    monkeypatch.setattr(DifficultyClassifier, "pretrained", classmethod(lambda cls: _oracle_difficulty()))
    code, stdout, stderr = train(capsys, *args, "--json")
    assert code == 0, stderr
    summary = json.loads(stdout)
    assert summary["held_out"]["pretrained_auroc"] == 1.0
    assert summary["held_out"]["better_than_pretrained"] is False
    assert "no better than the pretrained difficulty router" in summary["warning"]
    assert "tierwise: warning: on 20 held-out prompts the trained router is no better" in stderr
    assert out.exists()  # the model is still written: the warning informs, it does not refuse

    # --holdout 0 skips the check; a fraction of 1 or more is a usage error
    code, stdout, _ = train(capsys, *args, "--json", "--holdout", "0")
    assert code == 0 and json.loads(stdout)["held_out"] is None
    code, _, stderr = train(capsys, *args, "--holdout", "1")
    assert code == 2 and "--holdout" in stderr


async def test_held_out_too_small_gives_no_figure(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    prompts = make_prompts(30, seed=6)
    await collect(tmp_path / "audit.jsonl", prompts)
    fb = write_rows(tmp_path / "fb.jsonl", full_feedback(prompts))
    code, stdout, stderr = train(
        capsys,
        *("--audit", str(tmp_path / "audit.jsonl"), "--feedback", str(fb)),
        *("--out", str(tmp_path / "r.json"), "--json"),
    )
    assert code == 0, stderr
    held = json.loads(stdout)["held_out"]
    assert held["held_out_prompts"] == 6
    assert held["models"]["cheap"]["auroc"] is None and held["pretrained_auroc"] is None
    assert held["better_than_pretrained"] is None and "warning" not in stderr
