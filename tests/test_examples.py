"""Every example in ``examples/`` runs, offline, and shows what it says it shows.

Each example is imported by path and its ``main()`` awaited in the test's event
loop (each starts its own ``MockLLMServer``); assertions are on what it prints.
"""

from __future__ import annotations

import ast
import importlib.util
import re
import subprocess
import sys
import warnings
from pathlib import Path
from types import ModuleType

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
KEY_ENV = "TIERWISE_EXAMPLE_KEY"
ALL = sorted(p.stem for p in EXAMPLES.glob("*.py"))


def load(name: str) -> ModuleType:
    """Import ``examples/<name>.py`` as a fresh module."""
    path = EXAMPLES / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"tierwise_examples_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # pydantic models resolve their annotations through it
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[spec.name]
        raise
    return module


@pytest.fixture(autouse=True)
def _dummy_key(monkeypatch: pytest.MonkeyPatch) -> None:
    # The examples setdefault() this; setting it here keeps the process env unchanged after.
    monkeypatch.setenv(KEY_ENV, "sk-test-not-a-real-key")


async def run(name: str, capsys: pytest.CaptureFixture[str]) -> str:
    await load(name).main()
    return capsys.readouterr().out


# --------------------------------------------------------------------------- shape


def test_every_example_is_listed_and_shaped_alike() -> None:
    readme = (EXAMPLES / "README.md").read_text()
    assert len(ALL) == 13
    for name in ALL:
        source = (EXAMPLES / f"{name}.py").read_text()
        tree = ast.parse(source)
        assert ast.get_docstring(tree), f"{name}: module docstring"
        mains = [n for n in tree.body if isinstance(n, ast.AsyncFunctionDef) and n.name == "main"]
        assert mains and ast.unparse(mains[0].returns or ast.Constant(None)) == "None", name
        assert source.rstrip().endswith('if __name__ == "__main__":\n    anyio.run(main)'), name
        assert f"`{name}.py`" in readme, f"{name} missing from examples/README.md"
        assert "api_key=" not in source and "sk-" not in source.replace("sk-example-not-a-real-key", "")


def test_an_example_runs_as_a_script() -> None:
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / "gateway.py")], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert "saving 10.0%" in proc.stdout


# --------------------------------------------------------------------------- each example


async def test_gateway(capsys: pytest.CaptureFixture[str]) -> None:
    out = await run("gateway", capsys)
    for wire in ("claude-opus-4-7", "claude-sonnet-4-6", "gpt-5.5", "deepseek-chat"):
        assert re.search(rf"{re.escape(wire)} .*\(provider=gateway\)", out), wire
    assert "4.50 / 22.50" in out  # Opus at 90% of $5/$25
    assert "4 requests, endpoints used: /v1/chat/completions; distinct keys: 1" in out
    assert "saving 10.0%" in out


async def test_four_tier_router_routes_as_the_tutorials_say(capsys: pytest.CaptureFixture[str]) -> None:
    out = await run("four_tier_router", capsys)
    routes = re.findall(r"route:\s+(\w+) -> (\w+)", out)
    assert routes == [
        ("complex", "opus"),  # "Design a caching strategy ... trade-offs" → claude-opus-4-7
        ("structured", "gpt55"),  # "Extract all function names ... return as JSON schema" → gpt-5.5
        ("bulk", "deepseek"),  # "Generate unit tests ... pytest" → deepseek-chat
        ("complex", "opus"),
        ("structured", "gpt55"),  # metadata json_output
        ("bulk", "deepseek"),
        ("structured", "gpt55"),
        ("standard", "sonnet"),
    ]
    answered = re.findall(r"answered: (\w+) \(([\w.-]+) via (\w+)\)", out)
    # Opus fails twice (529), so the first complex request is answered by its fallback, Sonnet.
    assert answered[0] == ("sonnet", "claude-sonnet-4-6", "anthropic")
    assert "fell back after: opus ServerError, opus ServerError" in out
    assert answered[1:4] == [
        ("gpt55", "gpt-5.5", "openai"),
        ("deepseek", "deepseek-chat", "deepseek"),
        ("opus", "claude-opus-4-7", "anthropic"),
    ]
    assert "8 requests, 1 fallback(s), 2 provider error(s) absorbed" in out


async def test_cost_report(capsys: pytest.CaptureFixture[str]) -> None:
    out = await run("cost_report", capsys)
    assert "audit log: audit.jsonl, 40 records" in out
    assert "tierwise audit report: 40 requests" in out
    assert "By model (attempts, cost as billed per try)" in out and "By label" in out
    for alias in ("opus", "sonnet", "gpt55", "deepseek"):
        assert re.search(rf"^{alias} +\d+ +\d+ +\d+ +\$", out, re.M), alias  # report row
        assert re.search(rf"^  {alias} +\d+ +\d+ +\d+ +\d+ ", out, re.M), alias  # live metrics row
    fallbacks = re.search(r"^Fallbacks +(\d+)", out, re.M)
    cache_hits = re.search(r"^Cache hits +(\d+)", out, re.M)
    assert fallbacks and int(fallbacks.group(1)) >= 1  # Sonnet's seeded 503s
    assert cache_hits and int(cache_hits.group(1)) >= 1  # repeated prompts
    assert "audit log and live metrics agree on the total: yes" in out


async def test_caching(capsys: pytest.CaptureFixture[str]) -> None:
    out = await run("caching", capsys)
    assert "call 1: cached=False" in out
    assert "call 2: cached=True  cost=$0.000000" in out
    assert out.count("server received 1 request(s) for it") == 2  # repeated, then coalesced
    assert "5 answers: 1 paid" in out and "4 cached=True at $0; all identical: True" in out
    assert "2 calls -> server received 2 request(s)" in out  # temperature > 0: not cached
    assert "with seed=42 (reproducible): 2 calls -> server received 1 request(s)" in out


async def test_streaming(capsys: pytest.CaptureFixture[str]) -> None:
    out = await run("streaming", capsys)
    blocks = out.split("\n\n")
    assert "> Streaming sends tokens" in blocks[0]
    assert "model=claude-sonnet-4-6 provider=anthropic fallback=False" in blocks[0]
    assert re.search(r"cost=\$0\.\d+ ttft=\d+ ms", blocks[0])
    assert "[from GPT-5.5] Streaming sends tokens" in blocks[1]
    assert "model=gpt-5.5 provider=openai fallback=True" in blocks[1]
    assert "attempts=[sonnet:error(ServerError), gpt55:ok]" in blocks[1]
    assert "raised ProviderConnectionError" in blocks[2]
    assert "the fallback (gpt-5.5) was called 1 time(s)" in out


async def test_batch_resume_sends_nothing_twice(capsys: pytest.CaptureFixture[str]) -> None:
    out = await run("batch", capsys)
    crashed = re.search(r"crashed: (\d+) answers saved .*server received (\d+) requests", out)
    assert crashed
    saved, sent_1 = int(crashed.group(1)), int(crashed.group(2))
    assert 12 <= saved < 30 and sent_1 >= saved
    resumed = re.search(r"30/30 ok: (\d+) loaded from the file, (\d+) new requests sent", out)
    assert resumed and int(resumed.group(1)) == saved and int(resumed.group(2)) == 30 - saved
    assert "already-answered items sent again: 0" in out
    assert "30/30 ok, all resumed: True; new requests sent: 0" in out


async def test_provider_batch_halves_the_cost_and_resumes(capsys: pytest.CaptureFixture[str]) -> None:
    out = await run("provider_batch", capsys)
    assert "60/60 answered, in input order" in out
    assert "provider batches submitted: 2" in out
    costs = re.search(r"cost at batch price \$([0-9.]+); the same items in real-time mode \$([0-9.]+)", out)
    assert costs and float(costs.group(2)) == pytest.approx(2 * float(costs.group(1)), rel=1e-3)
    assert "rerun: 60/60 loaded from answers.jsonl, provider batches submitted now: 2" in out


async def test_cascade_reports_the_accepted_rung(capsys: pytest.CaptureFixture[str]) -> None:
    out = await run("cascade", capsys)
    checks, judged = out.split("\n\n2) ")
    assert "answered by rung cascade[2] (opus)" in checks
    assert re.search(r"cascade\[0\] +deepseek .* rejected +json: invalid", checks)
    assert re.search(r"cascade\[1\] +sonnet .* rejected +json: valid; min_length: \d+ chars < 50", checks)
    assert "answered by rung cascade[1] (sonnet)" in judged
    assert re.search(r"cascade\[0\]\.judge +gpt55 +\$0\.\d+ +\(verifier call\)", judged)
    assert "Opus calls for this question: 0" in judged
    for part in (checks, judged):
        total = re.search(r"total cost \$([\d.]+) = sum of (\d+) steps \$([\d.]+)", part)
        assert total and total.group(1) == total.group(3)
    assert "sum of 3 steps" in checks and "sum of 4 steps" in judged  # judge calls are billed


async def test_ensemble(capsys: pytest.CaptureFixture[str]) -> None:
    out = await run("ensemble", capsys)
    assert "majority vote: 'negative' has 2 of 3 votes" in out
    assert "judge: picked candidate 2 of 3" in out
    assert "(from ensemble[1]: gpt55)" in out
    assert re.search(r"judge +opus +\$0\.\d+", out)


async def test_research_pipeline(capsys: pytest.CaptureFixture[str]) -> None:
    out = await run("research_pipeline", capsys)
    for step, model in (("decompose", "deepseek"), ("research", "sonnet"), ("synthesize", "opus")):
        assert re.search(rf"^  {step} +{model} +\$0\.\d+ +\d+ ms", out, re.M), step
    assert "fan-out over 4 item(s)" in out
    parallel = re.search(r"4 research calls took (\d+) ms in total but (\d+) ms of wall time", out)
    assert parallel and int(parallel.group(2)) < int(parallel.group(1))
    assert "sub-questions sent to the research model: 4" in out
    assert "Total: $0." in out and "6 model calls" in out


async def test_custom_strategy(capsys: pytest.CaptureFixture[str]) -> None:
    out = await run("custom_strategy", capsys)
    blocks = re.split(r"\n(?=\S)", out.strip())
    free_chat, vip_chat, free_bulk, vip_bulk, free_code = blocks[:5]
    assert "explain(): standard" in free_chat and "answered by deepseek" in free_chat
    assert "explain(): complex  (VIP user: best model" in vip_chat and "answered by opus" in vip_chat
    assert "explain(): bulk" in free_bulk and "answered by deepseek" in free_bulk
    assert "answered by opus" in vip_bulk  # bulk work too, for a VIP
    assert "answered by sonnet at vip_router.routes[standard].cascade[1]" in free_code
    assert "[rung 0 (deepseek) rejected]" in free_code


# --------------------------------------------------------------------------- FastAPI (optional)


async def test_fastapi_example_without_fastapi(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "fastapi", None)  # import fastapi → ImportError
    module = load("fastapi_app")
    assert module.HAVE_FASTAPI is False
    await module.main()
    out = capsys.readouterr().out
    assert "needs FastAPI" in out and "pip install fastapi" in out
    with pytest.raises(RuntimeError, match="pip install fastapi"):
        module.create_app({})


async def test_fastapi_example(capsys: pytest.CaptureFixture[str]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        pytest.importorskip("fastapi")
    out = await run("fastapi_app", capsys)
    assert "200 route=complex model=claude-opus-4-7" in out
    assert "200 route=bulk model=deepseek-chat cost=$0.000000 cached=True" in out
    assert "unknown strategy: 400" in out
    assert "GET /metrics: 3 requests, 1 cache hit(s)" in out
    assert "after shutdown: this Orchestrator is closed" in out


def test_fastapi_app_with_testclient() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        testclient = pytest.importorskip("fastapi.testclient")
    from tierwise.testing import MockLLMServer

    module = load("fastapi_app")
    # TestClient runs the app on its own event loop in a thread; so does this server.
    with MockLLMServer.run_in_thread(module.mock_models()) as server:
        app = module.create_app(module.example_config(server.base_url + "/v1"))
        with testclient.TestClient(app) as client:
            r = client.post("/ask", json={"prompt": "Extract the endpoints and return as JSON"})
            assert r.status_code == 200, r.text
            body = r.json()
            assert body["route"] == "structured" and body["model"] == "gpt-5.5"
            assert body["cost_usd"] > 0 and body["cached"] is False
            assert client.post("/ask", json={}).status_code == 422  # prompt is required
            assert client.get("/metrics").json()["total"] == 1
            assert set(client.get("/health").json()) == {"opus", "sonnet", "gpt55", "deepseek"}
        assert len(server.requests) == 1


async def test_observability(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("prometheus_client")
    pytest.importorskip("opentelemetry.sdk")
    out = await run("observability", capsys)
    assert "ALERT firing: share[opus]>0.15: expensive share 20.0% > 15.0%" in out
    assert "ALERT firing: fallback_rate>0.05" in out
    assert re.search(r"saved \$0\.\d{4} against opus for everything", out)
    assert 'tierwise_requests_total{deployment="deepseek",error_type="",outcome="ok",route="bulk"' in out
    assert "events=['tierwise.fallback']" in out
    assert "chat claude-sonnet-4-6  provider=gateway  ServerError" in out
