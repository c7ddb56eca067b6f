"""strategies.Shadow over the loopback MockLLMServer: background comparisons, feedback, budgets, report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tierwise.catalog import ModelSpec
from tierwise.cli import main
from tierwise.errors import ConfigError
from tierwise.execution.budget import BudgetLedger, BudgetLimit
from tierwise.execution.executor import Deployment
from tierwise.execution.retry import RetryPolicy
from tierwise.observe.audit import AuditLog
from tierwise.observe.shadow_report import format_shadow, summarize_shadow
from tierwise.orchestrator import Orchestrator
from tierwise.providers import OpenAI
from tierwise.routing import Classification
from tierwise.routing.feedback import read_audit, read_feedback, request_hash, training_set
from tierwise.strategies import JudgeAgreement, SameAnswer, Shadow
from tierwise.strategies.base import Strategy
from tierwise.strategies.router import Router
from tierwise.testing import MockLLMServer, MockModel
from tierwise.types import Request, Response

PRICES = {"cheap": (1.0, 2.0), "mid": (3.0, 6.0), "ref": (30.0, 60.0), "judge": (5.0, 10.0)}


def deployments(server: MockLLMServer) -> dict[str, Deployment]:
    provider = OpenAI(api_key="sk-test", base_url=server.base_url + "/v1")
    return {
        alias: Deployment(
            alias, provider, f"{alias}-m", spec=ModelSpec(f"{alias}-m", "mock", input=i, output=o)
        )
        for alias, (i, o) in PRICES.items()
    }


def number_reply(answers: dict[str, str]) -> Any:
    """A reply naming a final number per prompt keyword ('q1' → answers['q1'])."""

    def reply(req: Any) -> str:
        text = req.prompt
        for key, value in answers.items():
            if key in text:
                return f"Working it out step by step.\n#### {value}"
        return "#### 0"

    return reply


class ByWord:
    """Routes prompts mentioning 'hard' to 'mid', the rest to 'cheap'."""

    default_label = "cheap"
    labels = ("cheap", "mid")

    def classify(self, request: Request) -> Classification:
        return Classification("mid" if "hard" in request.prompt_text else "cheap", 1.0, "by word")


async def test_answer_is_returned_before_the_reference_replies(tmp_path: Path) -> None:
    models = {
        "cheap-m": MockModel(reply="#### 18"),
        "ref-m": MockModel(reply="#### 18", latency_ms=1500),
    }
    async with MockLLMServer(models) as server:
        shadow = Shadow("cheap", "ref", sample=1.0, log=tmp_path / "s.jsonl", name="watch")
        async with Orchestrator(deployments(server), strategies={"watch": shadow}) as orch:
            out = await orch.run("What is 3 * 6?")
            # The answer is in hand while the reference is still thinking.
            assert out.text == "#### 18" and out.deployment == "cheap"
            assert shadow.pending == 1 and not (tmp_path / "s.jsonl").exists()
            assert [a.model for a in out.attempts] == ["cheap"]  # the shadow is not on the user's bill
            await shadow.drain()
            assert shadow.pending == 0
    snap = shadow.snapshot()
    assert snap["routes"]["cheap"]["compared"] == 1 and snap["routes"]["cheap"]["agreed"] == 1
    assert snap["cost_usd"] > 0
    record = json.loads((tmp_path / "s.jsonl").read_text())
    assert record["agreed"] is True and record["model"] == "cheap" and record["reference_model"] == "ref"
    assert record["request_hash"] == request_hash("What is 3 * 6?")


async def test_feedback_rows_train_a_router_and_report_projects_cost(tmp_path: Path) -> None:
    """Shadow rows join the audit log in `tierwise train`; the report shows agreement per route."""
    prompts = [f"q{i} {'hard ' if i % 2 else ''}question" for i in range(12)]
    right = {f"q{i} ": str(i) for i in range(12)}
    # cheap is wrong on every third easy prompt; mid is wrong on every hard prompt above 6.
    cheap = {k: (v if int(v) % 3 else "999") for k, v in right.items()}
    mid = {k: (v if int(v) < 7 else "-1") for k, v in right.items()}
    models = {
        "cheap-m": MockModel(reply=number_reply(cheap)),
        "mid-m": MockModel(reply=number_reply(mid)),
        "ref-m": MockModel(reply=number_reply(right)),
    }
    audit_path, fb, log = tmp_path / "audit.jsonl", tmp_path / "fb.jsonl", tmp_path / "shadow.jsonl"
    async with MockLLMServer(models) as server:
        router = Router(ByWord(), {"cheap": "cheap", "mid": "mid"}, "cheap", name="r")
        shadow = Shadow(
            router, "ref", sample=1.0, feedback=fb, log=log, name="watch", wall_clock=lambda: 1.7e9
        )
        audit = AuditLog(audit_path, include_text=True, flush_interval_s=0)
        async with Orchestrator(deployments(server), strategies={"watch": shadow}, audit=audit) as orch:
            for p in prompts:
                await orch.run(p)
        # aclose drained the shadow before closing connections: every comparison landed.
    rows = read_feedback(fb)
    assert len(rows) == 12 and {r.source for r in rows} == {"shadow"}
    assert {r.model for r in rows} == {"cheap", "mid"}
    assert rows[0].ts == "2023-11-14T22:13:20.000Z"
    bad = {r.request_hash for r in rows if r.score == 0.0}
    wrong = {p for p in prompts if cheap.get(p[: p.index(" ") + 1]) == "999" and "hard" not in p}
    wrong |= {p for p in prompts if "hard" in p and int(p[1 : p.index(" ")]) >= 7}
    assert bad == {request_hash(p) for p in wrong}
    data = training_set(read_audit(audit_path), rows, from_verifier=False, min_feedback=1)
    assert set(data.models) == {"cheap", "mid"} and data.sources == {"shadow": 12}
    out = tmp_path / "router.json"
    code = main(
        [
            "train",
            "--audit",
            str(audit_path),
            "--feedback",
            str(fb),
            "--out",
            str(out),
            "--min-feedback",
            "1",
            "--json",
        ]
    )
    assert code == 0 and out.exists()
    summary = summarize_shadow([log])["shadows"]["watch"]
    routes = summary["routes"]
    assert routes["cheap"]["compared"] == 6 and routes["mid"]["compared"] == 6
    assert routes["cheap"]["agreement_rate"] == pytest.approx(
        1 - sum(1 for p in wrong if "hard" not in p) / 6
    )
    assert summary["agreement_rate"] == pytest.approx(1 - len(wrong) / 12)
    proj = summary["projection"]
    assert proj["reference"]["quality_vs_reference"] == 1.0
    assert 0 < proj["cost_ratio"] < 1  # cheap and mid cost less than always asking ref
    text = format_shadow(summarize_shadow([log]))
    assert "shadow watch: 12 compared" in text and "projected: current routing keeps" in text


async def test_report_command_prints_the_shadow_section(tmp_path: Path, capsys: Any) -> None:
    models = {"cheap-m": MockModel(reply="#### 4"), "ref-m": MockModel(reply="#### 5")}
    audit_path, log = tmp_path / "audit.jsonl", tmp_path / "shadow.jsonl"
    async with MockLLMServer(models) as server:
        shadow = Shadow("cheap", "ref", sample=1.0, log=log, name="watch")
        audit = AuditLog(audit_path, flush_interval_s=0)
        async with Orchestrator(deployments(server), strategies={"watch": shadow}, audit=audit) as orch:
            await orch.run("2 + 2?")
            await shadow.drain()
            snap = orch.metrics.snapshot()
    assert snap["shadow"]["watch"]["cheap"]["agreement_rate"] == 0.0
    # The reference call went through the executor: counted per model and at its path.
    assert snap["models"]["ref"]["calls"] == 1
    assert any(p.endswith("shadow.reference") for p in snap["strategies"])
    assert main(["report", str(audit_path), "--shadow", str(log)]) == 0
    printed = capsys.readouterr().out
    assert "shadow watch: 1 compared, agreement 0.0%" in printed
    assert main(["report", str(audit_path), "--shadow", str(log), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["shadow"]["shadows"]["watch"]["routes"]["cheap"]["agreed"] == 0


async def test_own_budget_cap_stops_sampling(tmp_path: Path) -> None:
    models = {"cheap-m": MockModel(reply="#### 1"), "ref-m": MockModel(reply="#### 1")}
    async with MockLLMServer(models) as server:
        shadow = Shadow("cheap", "ref", sample=1.0, name="watch")
        async with Orchestrator(deployments(server), strategies={"watch": shadow}) as orch:
            await orch.run("one?")
            await shadow.drain()
            one = shadow.stats.cost_usd
            assert one > 0
            shadow.max_cost_usd = one * 1.5  # room for one comparison, not two
            await orch.run("one again?")
            await shadow.drain()
            await orch.run("one more?")
    snap = shadow.snapshot()
    assert snap["sampled"] == 1 and snap["skipped"] == {"budget": 2}
    assert snap["cost_usd"] == pytest.approx(one)


async def test_budget_tag_is_a_hard_line_and_failures_never_reach_the_caller(tmp_path: Path) -> None:
    """A configured `tag:shadow` budget rejects the shadow's calls in the executor; the answer is unharmed."""
    models = {"cheap-m": MockModel(reply="#### 1"), "ref-m": MockModel(reply="#### 1")}
    log = tmp_path / "s.jsonl"
    async with MockLLMServer(models) as server:
        budgets = BudgetLedger([BudgetLimit(0.0, "day", scope="tag:shadow")])
        shadow = Shadow("cheap", "ref", sample=1.0, log=log, name="watch")
        async with Orchestrator(
            deployments(server),
            strategies={"watch": shadow},
            budget=budgets,
            retry=RetryPolicy(max_attempts=1),
        ) as orch:
            out = await orch.run("one?")
            await shadow.drain()
        assert [r.model for r in server.requests] == ["cheap-m"]  # the reference was never sent
    assert out.text == "#### 1"
    assert shadow.snapshot()["errors"] == 1
    assert json.loads(log.read_text())["error"] == "BudgetExceeded"


async def test_backlog_thins_the_sample_instead_of_piling_up() -> None:
    import anyio

    models = {"cheap-m": MockModel(reply="#### 1"), "ref-m": MockModel(reply="#### 1", latency_ms=800)}
    async with MockLLMServer(models) as server:
        shadow = Shadow("cheap", "ref", sample=1.0, max_pending=1, name="watch")
        async with Orchestrator(deployments(server), strategies={"watch": shadow}) as orch:
            async with anyio.create_task_group() as tg:
                for i in range(3):
                    tg.start_soon(orch.run, f"q{i}?")
            assert shadow.pending == 1
            await shadow.drain()
    assert shadow.snapshot()["sampled"] == 1 and shadow.snapshot()["skipped"] == {"backlog": 2}


async def test_sampling_is_seeded_and_about_the_share(tmp_path: Path) -> None:
    models = {"cheap-m": MockModel(reply="#### 1"), "ref-m": MockModel(reply="#### 1")}
    counts = []
    async with MockLLMServer(models) as server:
        for _ in range(2):
            shadow = Shadow("cheap", "ref", sample=0.25, name="watch")
            async with Orchestrator(deployments(server), strategies={"watch": shadow}, seed=7) as orch:
                for i in range(80):
                    await orch.run(f"q{i}")
            counts.append(shadow.snapshot()["sampled"])
    assert counts[0] == counts[1] and 10 <= counts[0] <= 30


async def test_judge_agreement_calls_the_judge_in_the_background(tmp_path: Path) -> None:
    models = {
        "cheap-m": MockModel(reply="Paris is the capital."),
        "ref-m": MockModel(reply="The capital of France is Paris."),
        "judge-m": MockModel(reply="9"),
    }
    async with MockLLMServer(models) as server:
        shadow = Shadow("cheap", "ref", sample=1.0, compare=JudgeAgreement("judge"), name="watch")
        async with Orchestrator(deployments(server), strategies={"watch": shadow}) as orch:
            out = await orch.run("Capital of France?")
            await shadow.drain()
        assert sorted(r.model for r in server.requests) == ["cheap-m", "judge-m", "ref-m"]
    assert out.cost_usd is not None and [a.model for a in out.attempts] == ["cheap"]
    assert shadow.snapshot()["routes"]["cheap"]["agreed"] == 1


async def test_same_answer_and_function_comparators() -> None:
    same = SameAnswer()

    def r(text: str) -> Response:
        return Response(text=text, model="m", provider="p")

    req = Request.from_prompt("x")
    assert (
        await same.compare(req, r("so 1,200 apples\n#### 1,200"), r("The answer is 1200."), None)
    ).accepted  # type: ignore[arg-type]
    assert not (await same.compare(req, r("#### 12"), r("#### 13"), None)).accepted  # type: ignore[arg-type]
    assert (await same.compare(req, r("Yes."), r("yes"), None)).accepted  # type: ignore[arg-type]
    shadow = Shadow("a", "b", compare=lambda q, a, b: a.text == b.text)
    assert (await shadow.comparator.compare(req, r("k"), r("k"), None)).accepted  # type: ignore[arg-type]


def test_constructor_validates() -> None:
    with pytest.raises(ValueError, match="sample"):
        Shadow("a", "b", sample=1.5)
    with pytest.raises(ValueError, match="max_pending"):
        Shadow("a", "b", max_pending=0)
    with pytest.raises(TypeError):
        Shadow("a", 3)  # type: ignore[arg-type]


def test_from_config_type_shadow(tmp_path: Path) -> None:
    cfg: dict[str, Any] = {
        "providers": {
            "mock": {
                "type": "openai",
                "base_url": "http://127.0.0.1:1/v1",
                "api_key_env": "TW_TEST_SHADOW_KEY",
            }
        },
        "models": {
            "cheap": {"provider": "mock", "model": "cheap-m"},
            "ref": {"provider": "mock", "model": "ref-m"},
            "judge": {"provider": "mock", "model": "judge-m"},
        },
        "strategies": {
            "watch": {
                "type": "shadow",
                "target": "cheap",
                "reference": "ref",
                "sample": 0.2,
                "compare": {"judge": {"target": "judge", "threshold": 0.6}},
                "max_cost_usd": 5,
                "feedback": str(tmp_path / "fb.jsonl"),
            }
        },
    }
    orch = Orchestrator.from_config(cfg)
    s = orch.strategies["watch"]
    assert isinstance(s, Shadow) and s.sample == 0.2 and s.max_cost_usd == 5.0
    assert isinstance(s.comparator, JudgeAgreement) and s.comparator.threshold == 0.6
    bad = json.loads(json.dumps(cfg))
    bad["strategies"]["watch"]["sampel"] = 0.1
    with pytest.raises(ConfigError, match="sampel"):
        Orchestrator.from_config(bad)
    bad = json.loads(json.dumps(cfg))
    bad["strategies"]["watch"]["reference"] = "nowhere"
    with pytest.raises(ConfigError) as err:
        Orchestrator.from_config(bad)
    assert "strategies.watch.reference" in str(err.value)


def test_strategy_is_a_strategy() -> None:
    assert issubclass(Shadow, Strategy) and Shadow.kind == "shadow"
