"""Every ```python block in docs/ and the README runs, so no snippet rots.

Each page's blocks run in order in one fresh interpreter (``docs_harness/runner.py``),
in an empty directory, without API keys, offline: blocks share one namespace (a page is
read top to bottom), and top-level ``await`` works. Two markers, HTML comments that
neither GitHub nor the site shows, make fragments runnable without changing what the
reader sees:

* ``<!-- setup: ... -->`` holds Python run at that point of the page: it builds the
  names a fragment assumes (``orch``, ``items``, ``prompts``), against ``MockLLMServer``
  (helpers in ``docs_harness/offline.py``);
* ``<!-- check: ... -->`` is the same after a block: it asserts what the block did;
* ``<!-- not-run: REASON -->`` right before a block skips it. Only a block that needs
  something a test cannot have (a real provider key, a server on a fixed port) may
  carry one; their number is capped below and each must give its reason.

Pages whose blocks a dedicated test already runs (with stronger assertions on their
output) are not run twice: ``COVERED`` names that test, and the test must still exist
and read the page.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests"
PAGES = [*sorted((ROOT / "docs").rglob("*.md")), ROOT / "README.md"]

# page -> (the test that runs its Python blocks already, the section it runs; None: all)
COVERED = {
    "docs/custom-strategy.md": ("test_docs_custom_strategy.py", None),
    "docs/sync.md": ("test_docs_first_hour.py", None),
    "docs/keyword-rules.md": ("test_keyword_docs.py", None),
    "README.md": ("test_readme.py", "## Use it"),
}
MAX_NOT_RUN = 4

_TOKEN = re.compile(
    r"^<!-- (?:setup|check):\n(?P<setup>.*?)^-->\n"
    r"|^<!-- not-run: (?P<reason>.*?) -->\n"
    r"|^```python\n(?P<code>.*?)^```\n",
    re.S | re.M,
)


@dataclass(frozen=True)
class Chunk:
    page: str
    line: int  # of the chunk's first code line, in the page
    code: str
    kind: str  # "block" | "setup" | "not-run"
    reason: str = ""


def chunks(page: Path) -> list[Chunk]:
    """The page's blocks and markers, in order; a not-run marker claims the next block."""
    text = page.read_text(encoding="utf-8")
    name = page.relative_to(ROOT).as_posix()
    skip = _covered_span(name, text)
    found: list[Chunk] = []
    pending: str | None = None
    last_end = 0
    for match in _TOKEN.finditer(text):
        line = text.count("\n", 0, match.start()) + 2
        between = text[last_end : match.start()]
        if pending is not None and between.strip():
            raise AssertionError(f"{name}:{line}: a not-run marker must sit right before its block")
        last_end = match.end()
        if skip[0] <= match.start() < skip[1]:
            continue  # run by the page's dedicated test
        if match.group("reason") is not None:
            pending = match.group("reason").strip()
        elif match.group("setup") is not None:
            found.append(Chunk(name, line, match.group("setup"), "setup"))
        elif pending is not None:
            found.append(Chunk(name, line, match.group("code"), "not-run", pending))
            pending = None
        else:
            found.append(Chunk(name, line, match.group("code"), "block"))
    assert pending is None, f"{name}: a not-run marker with no block after it"
    return found


def _covered_span(name: str, text: str) -> tuple[int, int]:
    """The character range of ``name`` whose blocks its dedicated test runs (or (0, 0))."""
    if name not in COVERED:
        return (0, 0)
    section = COVERED[name][1]
    if section is None:
        return (0, len(text))
    start = text.index(section + "\n")
    end = text.find("\n## ", start + 1)
    return (start, len(text) if end < 0 else end)


def _pages_to_run() -> list[Path]:
    return [p for p in PAGES if any(c.kind == "block" for c in chunks(p))]


def test_covered_pages_really_are_tested_elsewhere() -> None:
    for page, (test, section) in COVERED.items():
        source = (TESTS / test).read_text(encoding="utf-8")
        assert Path(page).name in source, f"{test} no longer reads {page}"
        assert section is None or section in source, f"{test} no longer runs {page}'s {section!r}"
        assert "```python" in (ROOT / page).read_text(encoding="utf-8") and "python" in source


def test_not_run_blocks_are_few_and_each_says_why() -> None:
    skipped = [c for p in PAGES for c in chunks(p) if c.kind == "not-run"]
    assert len(skipped) <= MAX_NOT_RUN, [f"{c.page}:{c.line}" for c in skipped]
    for c in skipped:
        assert len(c.reason.split()) >= 4, f"{c.page}:{c.line}: say why it cannot run"


def test_every_python_block_is_run_somewhere() -> None:
    """A block is run here, run by its page's dedicated test, or marked not-run."""
    for page in PAGES:
        name = page.relative_to(ROOT).as_posix()
        text = page.read_text(encoding="utf-8")
        skip = _covered_span(name, text)
        outside = [m for m in re.finditer(r"^```python\n", text, re.M) if not skip[0] <= m.start() < skip[1]]
        assert len(outside) == sum(c.kind in ("block", "not-run") for c in chunks(page)), name
    assert len(_pages_to_run()) >= 10


@pytest.mark.parametrize("page", _pages_to_run(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_page_blocks_run(page: Path, tmp_path: Path) -> None:
    todo = [c for c in chunks(page) if c.kind != "not-run"]
    spec = tmp_path / "chunks.json"
    spec.write_text(json.dumps([{"page": c.page, "line": c.line, "code": c.code} for c in todo]))
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.endswith("_API_KEY") and k not in ("TIERWISE_CONFIG", "TIERWISE_API_KEYS", "MOCK_KEY")
    }
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS), env.get("PYTHONPATH", "")]))
    work = tmp_path / "cwd"
    work.mkdir()
    done = subprocess.run(
        [sys.executable, str(TESTS / "docs_harness" / "runner.py"), str(spec)],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=work,
        env=env,
        check=False,
    )
    ran = re.findall(r"^@@ok (\d+)$", done.stdout, re.M)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]
    assert len(ran) == len(todo)
