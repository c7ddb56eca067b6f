"""The README's "Use it" Python snippets run as written, offline.

Each fenced ``python`` block of that section is written to a file and run in a
fresh interpreter in an empty directory (no keys in the environment, no network:
the snippets start their own ``MockLLMServer``), exactly as a reader pasting it
would. A snippet that needs an edit to run fails here.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
_FENCE = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def _use_it_blocks() -> list[str]:
    text = README.read_text(encoding="utf-8")
    start = text.index("## Use it")
    end = text.index("\n## ", start + 1)
    return _FENCE.findall(text[start:end])


def test_the_use_it_section_has_snippets() -> None:
    blocks = _use_it_blocks()
    assert len(blocks) >= 2
    assert "MockLLMServer" in blocks[0] and "Orchestrator.from_config" in blocks[0]
    assert "SyncOrchestrator" in blocks[1]


@pytest.mark.parametrize("index", range(len(_use_it_blocks())))
def test_use_it_snippet_runs_offline_as_written(index: int, tmp_path: Path) -> None:
    script = tmp_path / f"snippet{index}.py"
    script.write_text(_use_it_blocks()[index], encoding="utf-8")
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "TIERWISE_CONFIG", "MOCK_KEY")
    }
    done = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "Mock reply from" in done.stdout
    if index == 0:
        lines = done.stdout.strip().splitlines()
        assert lines[-2].startswith("opus ")  # deployment, cost, latency, outcomes
        assert lines[-2].endswith("['ok']")  # one attempt, answered
        assert lines[-1] == "1"  # one request in the metrics
