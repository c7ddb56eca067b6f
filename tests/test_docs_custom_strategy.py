"""docs/custom-strategy.md: its Python blocks run as written (offline, against
``MockLLMServer``), and its TOML block really loads the documented classes by
import path, with their table keys as constructor arguments.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import tierwise as tw

DOC = (Path(__file__).resolve().parent.parent / "docs" / "custom-strategy.md").read_text(encoding="utf-8")
BLOCKS = re.findall(r"^```python\n(.*?)^```", DOC, re.S | re.M)


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_block_runs_as_written(index: int, tmp_path: Path) -> None:
    script = tmp_path / "block.py"
    script.write_text(BLOCKS[index], encoding="utf-8")
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, cwd=tmp_path, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip()


def test_toml_block_loads_the_documented_classes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert len(BLOCKS) == 2
    package = tmp_path / "myapp"
    package.mkdir()
    (package / "__init__.py").write_text("")
    # The classes of both blocks, without their demo runs.
    source = "\n\n".join(b.replace("anyio.run(main)", "") for b in BLOCKS)
    (package / "routing.py").write_text(source, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    (block,) = re.findall(r"^```toml\n(.*?)^```", DOC, re.S | re.M)
    cfg = tomllib.loads(block)
    cfg["models"] = {
        alias: {"provider": "openai", "model": "gpt-5.5"} for alias in ("large", "small", "cheap", "best")
    }
    try:
        _check_loaded(cfg)
    finally:
        for name in ("myapp.routing", "myapp"):
            sys.modules.pop(name, None)  # imported from tmp_path: not left for other tests


def _check_loaded(cfg: dict[str, object]) -> None:
    orch = tw.Orchestrator.from_config(cfg)
    fits = orch.strategies["fits"]
    assert type(fits).__name__ == "CheapestThatFits" and fits.targets == ["large", "small"]  # type: ignore[attr-defined]
    tickets = orch.strategies["tickets"]
    assert isinstance(tickets, tw.Router)
    assert type(tickets.classifier).__name__ == "TicketClassifier"
    assert orch.explain("I was charged twice", "tickets").label == "billing"
