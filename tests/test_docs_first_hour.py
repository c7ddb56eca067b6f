"""The Python blocks of docs/sync.md run as written, offline, in a fresh interpreter;
docs/providers.md's providers-by-name TOML validates as documented."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import tierwise as tw

DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_sync_page_block_runs(tmp_path: Path) -> None:
    (block,) = re.findall(r"^```python\n(.*?)^```", (DOCS / "sync.md").read_text(), re.S | re.M)
    script = tmp_path / "sync_block.py"
    script.write_text(block, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, cwd=tmp_path, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "6"


def test_providers_by_name_example_builds() -> None:
    text = (DOCS / "providers.md").read_text()
    block = next(
        b for b in re.findall(r"^```toml\n(.*?)^```", text, re.S | re.M) if "[providers.ollama]" in b
    )
    cfg = tomllib.loads(block)
    cfg["models"]["local"] = {"provider": "ollama", "model": "llama3"}
    orch = tw.Orchestrator.from_config(cfg)
    assert orch.deployments["bulk"].provider.name == "deepseek"
    assert orch.deployments["local"].provider.base_url == "http://gpu-box:11434/v1"  # type: ignore[attr-defined]
