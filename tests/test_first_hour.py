"""The first hour, as a new user lives it, in subprocesses in a fresh directory.

``tierwise init --offline``, ``tierwise mock-server --port N &``, then ``run``,
``explain``, ``batch``, ``report`` and ``rules`` with no edit to the written file;
``init`` without ``--offline`` writes a config for the real providers (by name,
keys from their variables) that validates; ``--version``, ``run -`` from stdin,
``--system/--max-tokens/--temperature``; and every argument of every command
has help text (a walk of the argparse tree).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

import tierwise as tw
from tierwise._cli_init import init_config_text
from tierwise.cli import DEFAULT_MOCK_PORT, _parser
from tierwise.config import check_config, config_warnings

TIMEOUT_S = 60


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env() -> dict[str, str]:
    drop = ("TIERWISE_CONFIG", "ANTHROPIC_API_KEY", "OPENAI_API_KEY", "DEEPSEEK_API_KEY")
    return {k: v for k, v in os.environ.items() if k not in drop}


def tierwise(*args: str, cwd: Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tierwise", *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        env=_env(),
        cwd=cwd,
        input=stdin,
        check=False,
    )


@pytest.fixture
def mock_server() -> Iterator[int]:
    """``tierwise mock-server --port N`` as a background process, as the README starts it."""
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tierwise", "mock-server", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert f":{port}" in line, line + (proc.stderr.read() if proc.stderr else "")
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_init_offline_then_every_command_works_with_no_edit(tmp_path: Path, mock_server: int) -> None:
    done = tierwise("init", "--offline", "--port", str(mock_server), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert f"tierwise mock-server --port {mock_server} &" in done.stdout
    assert (tmp_path / "tierwise.toml").exists()

    ran = tierwise("run", "Extract the names as JSON", cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert "Mock reply" in ran.stdout
    assert "-- model gpt55" in ran.stderr  # structured → the GPT-5.5 tier, priced
    assert "cost $0.0" in ran.stderr

    ran = tierwise("run", "--json", "Design a caching strategy; compare approaches", cwd=tmp_path)
    info = json.loads(ran.stdout)
    assert info["deployment"] == "opus" and info["label"] == "complex" and info["cost_usd"] > 0

    explained = tierwise("explain", "Generate unit tests for the billing module", cwd=tmp_path)
    assert explained.returncode == 0, explained.stderr
    assert "bulk" in explained.stdout and "deepseek" in explained.stdout

    (tmp_path / "items.jsonl").write_text('"Add docstrings to utils.py"\n{"prompt": "Parse this CSV"}\n')
    batch = tierwise("batch", "items.jsonl", "--out", "out.jsonl", cwd=tmp_path)
    assert batch.returncode == 0, batch.stderr
    assert "2/2 succeeded" in batch.stdout

    report = tierwise("report", "audit.jsonl", "--json", cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    summary = json.loads(report.stdout)
    assert summary["requests"] == 4
    assert {"opus", "gpt55", "deepseek"} <= set(summary["models"])
    assert summary["cost_usd"] > 0 and summary["errors"] == 0

    rules = tierwise("rules", cwd=tmp_path)
    assert rules.returncode == 0, rules.stderr
    assert "[strategies.router]" in rules.stdout and "structured" in rules.stdout


def test_default_ports_agree() -> None:
    """The offline config points where ``tierwise mock-server`` listens by default."""
    (action,) = [a for a in _subcommand("mock-server")._actions if a.dest == "port"]
    assert action.default == DEFAULT_MOCK_PORT == 8765
    cfg = tomllib.loads(init_config_text(offline=True))
    assert cfg["providers"]["mock"]["base_url"] == "http://127.0.0.1:8765/v1"


def test_init_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    target = tmp_path / "tierwise.toml"
    target.write_text("# mine\n")
    refused = tierwise("init", "--offline", cwd=tmp_path)
    assert refused.returncode == 2
    assert "already exists" in refused.stderr and "--force" in refused.stderr
    assert target.read_text() == "# mine\n"
    forced = tierwise("init", "--offline", "--force", cwd=tmp_path)
    assert forced.returncode == 0, forced.stderr
    assert "[models.opus]" in target.read_text()


def test_init_path_option(tmp_path: Path) -> None:
    done = tierwise("init", "--path", "conf/tw.toml", cwd=tmp_path)
    assert done.returncode == 2 and "does not exist" in done.stderr
    (tmp_path / "conf").mkdir()
    done = tierwise("init", "--path", "conf/tw.toml", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "--config conf/tw.toml" in done.stdout
    assert (tmp_path / "conf" / "tw.toml").exists()


@pytest.mark.parametrize("offline", [True, False])
def test_both_templates_validate_and_have_every_section(
    offline: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # cache and audit paths are relative
    text = init_config_text(offline=offline)
    raw = tomllib.loads(text)
    for section in ("models", "strategies", "budget", "cache", "audit", "retry"):
        assert section in raw
    assert raw["models"]["opus"]["fallbacks"] == ["sonnet"]
    cfg = check_config(raw)
    warnings = config_warnings(cfg)
    # The tutorials' gpt55 <-> sonnet backup pair is the only note; no unknown prices.
    assert all("fallback cycle" in w for w in warnings), warnings
    orch = tw.Orchestrator.from_config(raw)
    for dep in orch.deployments.values():
        assert dep.spec is not None and dep.spec.input is not None  # priced
    if not offline:
        assert "providers" not in raw  # providers by name: no section needed
        providers = {d.provider.name for d in orch.deployments.values()}
        assert providers == {"anthropic", "openai", "deepseek"}
        for env in ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "DEEPSEEK_API_KEY"):
            assert f"export {env}=" in text


def test_check_config_names_the_key_variables_of_providers_used_by_name(tmp_path: Path) -> None:
    (tmp_path / "tierwise.toml").write_text(init_config_text(offline=False))
    done = tierwise("check-config", "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    missing = json.loads(done.stdout)["missing_api_key_env"]
    assert missing == ["ANTHROPIC_API_KEY", "DEEPSEEK_API_KEY", "OPENAI_API_KEY"]


# ---------------------------------------------------------------------- CLI details


def test_version_comes_from_the_package(tmp_path: Path) -> None:
    done = tierwise("--version", cwd=tmp_path)
    assert done.returncode == 0
    assert done.stdout.strip() == f"tierwise {tw.__version__}"
    pyproject = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text())
    declared = pyproject["project"].get("version")
    # One version: pyproject's (if not dynamic) must be the package's.
    assert declared in (None, tw.__version__)


def test_run_reads_the_prompt_from_stdin_and_sends_request_options(tmp_path: Path, mock_server: int) -> None:
    assert tierwise("init", "--offline", "--port", str(mock_server), cwd=tmp_path).returncode == 0
    done = tierwise(
        "run",
        "-",
        "--json",
        "--system",
        "Answer in one line.",
        "--max-tokens",
        "64",
        "--temperature",
        "0",
        cwd=tmp_path,
        stdin="Summarize the release notes\n",
    )
    assert done.returncode == 0, done.stderr
    info = json.loads(done.stdout)
    assert info["text"] == "Mock reply from claude-sonnet-4-6: Summarize the release notes"
    empty = tierwise("run", "-", cwd=tmp_path, stdin="  \n")
    assert empty.returncode == 2 and "no prompt on stdin" in empty.stderr
    bad = tierwise("run", "hi", "--max-tokens", "0", cwd=tmp_path)
    assert bad.returncode == 2 and "--max-tokens" in bad.stderr


def test_request_options_reach_the_wire(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """In process (the mock server records bodies): --system/--max-tokens/--temperature."""
    import anyio

    from tierwise.cli import main
    from tierwise.testing import MockLLMServer

    async def go() -> dict[str, object]:
        async with MockLLMServer() as server:
            port = server.port
            (tmp_path / "tierwise.toml").write_text(init_config_text(offline=True, port=port))
            code = await anyio.to_thread.run_sync(
                main, ["run", "hello", "--system", "S", "--max-tokens", "9", "--temperature", "0.5"]
            )
            assert code == 0
            body: dict[str, object] = server.requests[-1].json()
            return body

    monkeypatch.chdir(tmp_path)
    body = anyio.run(go)
    assert body["max_tokens"] == 9 and body["temperature"] == 0.5
    assert body["messages"] == [{"role": "system", "content": "S"}, {"role": "user", "content": "hello"}]


def test_explain_takes_meta_and_system(tmp_path: Path) -> None:
    (tmp_path / "tierwise.toml").write_text(init_config_text(offline=True))
    done = tierwise("explain", "hello", "--meta", "tier=complex", "--system", "Return JSON", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "complex" in done.stdout and "opus" in done.stdout


def test_rules_prints_the_effective_rules_of_a_config(tmp_path: Path) -> None:
    text = init_config_text(offline=True).replace(
        "# extra_keywords = { complex", "extra_keywords = { complex"
    )
    (tmp_path / "custom.toml").write_text(text)
    done = tierwise("rules", "--config", "custom.toml", "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    info = json.loads(done.stdout)["strategies.router"]
    by_label = {r["label"]: r for r in info["rules"]}
    assert "threat model*" in by_label["complex"]["keywords"]  # the config's addition
    assert "refactor*" in by_label["complex"]["keywords"]  # kept from the defaults
    assert [r["label"] for r in info["rules"]] == ["structured", "complex", "bulk"]  # tried in this order
    assert info["long_prompt_words"] == 500 and info["default_label"] == "standard"
    # No config at all: the built-in defaults, said so on stderr.
    empty = tmp_path / "empty"
    empty.mkdir()
    done = tierwise("rules", cwd=empty)
    assert done.returncode == 0 and "built-in defaults" in done.stderr
    assert "compare approaches" in done.stdout


def _subcommand(name: str) -> argparse.ArgumentParser:
    sub = next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction))
    parser: argparse.ArgumentParser = sub.choices[name]
    return parser


def test_every_argument_of_every_command_has_help() -> None:
    parser = _parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    missing: list[str] = []
    for name, command in sub.choices.items():
        for action in command._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            if not action.help or not action.help.strip():
                missing.append(f"{name} {'/'.join(action.option_strings) or action.dest}")
    for action in sub._choices_actions:
        if not action.help:
            missing.append(f"command {action.dest}")
    assert missing == []
    assert {"init", "rules", "run", "explain", "mock-server"} <= set(sub.choices)


def test_help_names_stdin_for_the_prompt(tmp_path: Path) -> None:
    done = tierwise("run", "--help", cwd=tmp_path)
    assert re.search(r"'-' reads it from stdin", done.stdout)
