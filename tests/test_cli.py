"""The ``tierwise`` command, run for real against a loopback MockLLMServer.

``run`` and ``mock-server`` go through a subprocess (``python -m tierwise``) so
the entry point, argument parsing, exit codes and the stdout/stderr split are
what a shell user gets; the rest call ``tierwise.cli.main(argv)`` in-process,
which is faster and shows the same output through capsys.

Exit codes (cli.py): 0 success, 1 the request failed, 2 usage or config error.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tierwise.cli import main
from tierwise.testing import MockLLMServer, MockModel

# 1000 input + 500 output tokens on gpt-4o-mini's list price ($0.15 / $0.60 per 1M).
EXPECTED_COST = 1000 * 0.15e-6 + 500 * 0.60e-6
TIMEOUT_S = 60


@pytest.fixture(scope="module")
def server() -> Iterator[MockLLMServer]:
    models = {
        "gpt-4o-mini": MockModel(reply="hello from mini", input_tokens=1000, output_tokens=500),
        "broken": MockModel(faults=["500"], cycle_faults=True),
    }
    with MockLLMServer.run_in_thread(models) as srv:
        yield srv


@pytest.fixture
def config(tmp_path: Path, server: MockLLMServer) -> Path:
    path = tmp_path / "tierwise.toml"
    path.write_text(
        f"""
[providers.mock]
type = "openai"
compat = "vllm"
base_url = "{server.base_url}/v1"

[models.mini]
provider = "mock"
model = "gpt-4o-mini"

[models.broken]
provider = "mock"
model = "broken"

[strategies.default]
type = "single"
target = "mini"

[strategies.broken]
type = "single"
target = "broken"

[retry]
max_attempts = 2
initial_backoff_s = 0

[audit]
path = "{tmp_path / "audit.jsonl"}"
""",
        encoding="utf-8",
    )
    return path


def tierwise(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "TIERWISE_CONFIG"}
    return subprocess.run(
        [sys.executable, "-m", "tierwise", *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        env=env,
        cwd=cwd,
        check=False,
    )


# ---------------------------------------------------------------------- run


def test_run_prints_answer_then_model_cost_latency(config: Path) -> None:
    result = tierwise("run", "say hello", "--config", str(config))
    assert result.returncode == 0, result.stderr
    assert result.stdout == "hello from mini\n"  # only the answer on stdout: pipes stay clean
    summary = result.stderr.strip().splitlines()[-1]
    assert "model mini" in summary
    assert f"cost ${EXPECTED_COST:.6f}" in summary
    assert " ms" in summary
    assert "1000+500 tokens" in summary


def test_run_json(config: Path) -> None:
    result = tierwise("run", "say hello", "-c", str(config), "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["text"] == "hello from mini"
    assert data["model"] == "gpt-4o-mini"
    assert data["deployment"] == "mini"
    assert data["cost_usd"] == pytest.approx(EXPECTED_COST)
    assert isinstance(data["latency_ms"], float) and data["latency_ms"] > 0
    assert data["route"] == "default"
    assert data["fallback"] is False
    assert result.stderr == ""


def test_run_stream_prints_text_and_really_streams(config: Path, server: MockLLMServer) -> None:
    server.clear_requests()
    result = tierwise("run", "say hello", "-c", str(config), "--stream")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "hello from mini\n"
    assert "model mini" in result.stderr
    assert server.requests[-1].json()["stream"] is True


def test_run_stream_json_streams_and_prints_only_json(config: Path, server: MockLLMServer) -> None:
    server.clear_requests()
    result = tierwise("run", "say hello", "-c", str(config), "--stream", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)  # no streamed text mixed into the JSON
    assert data["text"] == "hello from mini"
    assert server.requests[-1].json()["stream"] is True


def test_config_from_environment_variable(config: Path) -> None:
    env = dict(os.environ, TIERWISE_CONFIG=str(config))
    result = subprocess.run(
        [sys.executable, "-m", "tierwise", "run", "hi"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "hello from mini\n"


def test_all_targets_fail_exits_1(config: Path) -> None:
    result = tierwise("run", "hi", "-c", str(config), "--strategy", "broken")
    assert result.returncode == 1
    assert result.stdout == ""
    assert "request failed" in result.stderr
    assert "AllTargetsFailed" in result.stderr
    assert "ServerError" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_config_exits_2(tmp_path: Path) -> None:
    result = tierwise("run", "hi", "--config", str(tmp_path / "nope.toml"))
    assert result.returncode == 2
    assert "config file not found" in result.stderr
    assert "nope.toml" in result.stderr
    assert "--config" in result.stderr and "TIERWISE_CONFIG" in result.stderr  # how to fix it


def test_default_config_name_in_cwd(tmp_path: Path) -> None:
    result = tierwise("run", "hi", cwd=tmp_path)
    assert result.returncode == 2
    assert "tierwise.toml" in result.stderr


def test_bad_config_exits_2_with_field(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[models.m]\nprovider = "openai"\nmodel = "gpt-4o"\nrmp = 5\n')
    result = tierwise("run", "hi", "-c", str(path))
    assert result.returncode == 2
    assert "models.m.rmp" in result.stderr
    assert "Traceback" not in result.stderr


# ---------------------------------------------------------------------- in-process commands


def test_run_unknown_strategy_is_a_usage_error(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "hi", "-c", str(config), "-s", "nosuch"]) == 2
    assert "unknown strategy 'nosuch'" in capsys.readouterr().err


def test_run_bad_meta_is_a_usage_error(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "hi", "-c", str(config), "--meta", "novalue"]) == 2
    assert "KEY=VALUE" in capsys.readouterr().err


def test_explain(config: Path, capsys: pytest.CaptureFixture[str], server: MockLLMServer) -> None:
    server.clear_requests()
    assert main(["explain", "hi", "-c", str(config)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "default"
    assert "always mini" in out
    assert main(["explain", "hi", "-c", str(config), "--json", "-s", "broken"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["strategy"] == "broken"
    assert data["reason"] == "always broken"
    assert server.requests == []  # explain calls no model


def test_report_on_an_audit_log_produced_by_run(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", "hi", "-c", str(config)]) == 0
    assert main(["run", "hi again", "-c", str(config)]) == 0
    assert main(["run", "fail", "-c", str(config), "-s", "broken"]) == 1
    capsys.readouterr()
    audit = tmp_path / "audit.jsonl"

    assert main(["report", str(audit)]) == 0
    out = capsys.readouterr().out
    assert "3 requests" in out
    assert "mini" in out and "broken" in out

    assert main(["report", str(audit), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["requests"] == 3
    assert data["errors"] == 1
    assert data["cost_usd"] == pytest.approx(2 * EXPECTED_COST)
    assert data["models"]["mini"]["attempts"] == 2
    assert data["models"]["broken"]["errors"] == 2  # two tries (max_attempts = 2), both failed


def test_report_missing_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(tmp_path / "none.jsonl")]) == 2
    assert "audit log not found" in capsys.readouterr().err


def test_check_config_ok(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "OK" in out and "2 model(s)" in out
    assert main(["check-config", str(config), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["ok"] is True
    assert data["models"] == ["broken", "mini"]


def test_check_config_notes_missing_key_env(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TW_TEST_UNSET_KEY", raising=False)
    path = tmp_path / "t.toml"
    path.write_text(
        '[providers.a]\ntype = "anthropic"\napi_key_env = "TW_TEST_UNSET_KEY"\n'
        '[models.m]\nprovider = "a"\nmodel = "claude-sonnet-4-6"\n'
    )
    assert main(["check-config", str(path)]) == 0
    assert "TW_TEST_UNSET_KEY is not set" in capsys.readouterr().out


def test_check_config_failure_exits_2_with_field(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(
        '[models.opus]\nprovider = "anthropic"\nmodel = "claude-opus-4-7"\nfallbacks = ["sonet"]\n'
        '[models.sonnet]\nprovider = "anthropic"\nmodel = "claude-sonnet-4-6"\n'
    )
    assert main(["check-config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "models.opus.fallbacks[0]" in err
    assert "did you mean 'sonnet'" in err


@pytest.mark.parametrize(
    ("toml", "field"),
    [
        ('[budget]\ntimezone = "Mars/Base"\n', "budget.timezone"),
        ('compat = "vlm"\n', "providers.p.compat"),
        ('compat = "gateway"\n', "providers.p.base_url"),  # gateway without base_url
        ('[audit]\npath = "/nonexistent-dir/audit.jsonl"\n', "audit.path"),
    ],
)
def test_check_config_catches_what_building_would(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    toml: str,
    field: str,
) -> None:
    """check-config runs the same validation as from_config (docs/configuration.md)."""
    monkeypatch.delenv("TIERWISE_GATEWAY_BASE_URL", raising=False)
    path = tmp_path / "bad.toml"
    # The snippet goes first: bare keys belong to [providers.p], tables stand alone.
    path.write_text('[providers.p]\ntype = "openai"\n' + toml + '[models.m]\nprovider = "p"\nmodel = "x"\n')
    assert main(["check-config", str(path)]) == 2
    assert f"{field}: " in capsys.readouterr().err


def test_check_config_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", str(tmp_path / "nope.toml")]) == 2
    assert "config file not found" in capsys.readouterr().err


def test_no_command_prints_help_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "usage: tierwise" in capsys.readouterr().err


# ---------------------------------------------------------------------- mock-server


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_mock_server_command_serves_requests() -> None:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k != "TIERWISE_CONFIG"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tierwise", "mock-server", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            assert proc.poll() is None, proc.communicate()[1]
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail("mock-server did not accept connections within 20 s")
                time.sleep(0.05)
        reply = httpx.post(
            f"http://127.0.0.1:{port}/v1/chat/completions",
            json={"model": "any-model", "messages": [{"role": "user", "content": "ping"}]},
            timeout=10,
        )
        assert reply.status_code == 200
        body = reply.json()
        assert body["choices"][0]["message"]["role"] == "assistant"
        assert body["usage"]["completion_tokens"] > 0
    finally:
        proc.terminate()
        try:
            out, _ = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate(timeout=10)
    assert f"listening on http://127.0.0.1:{port}" in out


def test_explain_releases_what_building_opened(
    config: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Building opens the audit log; explain calls no model but must still close it."""
    import tierwise

    closed: list[object] = []
    original = tierwise.Orchestrator.aclose

    async def spy(self: tierwise.Orchestrator) -> None:
        closed.append(self)
        await original(self)

    monkeypatch.setattr(tierwise.Orchestrator, "aclose", spy)
    assert main(["explain", "hi", "-c", str(config)]) == 0
    assert len(closed) == 1
    audit = closed[0].audit  # type: ignore[attr-defined]
    assert audit is not None and audit._file.closed
