"""Docs and examples use the public surface only.

What users copy from the README, ``docs/`` and ``examples/`` must keep working
when private modules move: every ``from tierwise... import X`` names a module
without a ``_``-prefixed part and a public name it exports (in its ``__all__``
when it has one), and every ``tw.X`` is in ``tierwise.__all__`` or is a public
subpackage. Python code is read from the examples and from the fenced
``python`` blocks of the Markdown files.
"""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

import tierwise

ROOT = Path(__file__).resolve().parent.parent
_FENCE = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
_SUBPACKAGES = {"config", "errors", "execution", "observe", "providers", "routing", "state", "strategies"}
_SUBPACKAGES |= {"testing", "types", "verify", "catalog"}


def _sources() -> list[tuple[str, str]]:
    out = [(str(p.relative_to(ROOT)), p.read_text()) for p in sorted((ROOT / "examples").glob("*.py"))]
    for md in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for i, block in enumerate(_FENCE.findall(md.read_text())):
            out.append((f"{md.relative_to(ROOT)}#python{i}", block))
    return out


def _parse(name: str, source: str) -> ast.AST | None:
    flags = ast.PyCF_ONLY_AST | ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
    try:
        tree: ast.AST = compile(source, name, "exec", flags=flags)
    except SyntaxError:
        return None  # an excerpt that is not a whole statement (e.g. a signature list)
    return tree


def _problems(name: str, tree: ast.AST) -> list[str]:
    problems: list[str] = []
    aliases = {"tierwise"}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] != "tierwise":
                    continue
                if any(part.startswith("_") for part in a.name.split(".")):
                    problems.append(f"{name}: import {a.name} (a private module)")
                if a.name == "tierwise":
                    aliases.add(a.asname or "tierwise")
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "tierwise":
            if any(part.startswith("_") for part in node.module.split(".")):
                problems.append(f"{name}: from {node.module} (a private module)")
                continue
            module = importlib.import_module(node.module)
            exported = getattr(module, "__all__", None)
            for a in node.names:
                if a.name.startswith("_"):
                    problems.append(f"{name}: from {node.module} import {a.name} (private)")
                elif not hasattr(module, a.name):
                    try:
                        importlib.import_module(f"{node.module}.{a.name}")
                    except ImportError:
                        problems.append(f"{name}: {node.module} has no {a.name}")
                elif exported is not None and a.name not in exported and a.name not in _SUBPACKAGES:
                    problems.append(f"{name}: {a.name} is not in {node.module}.__all__")
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases:
            if node.value.id == "tierwise" and "tierwise" not in aliases:
                continue
            attr = node.attr
            if attr not in tierwise.__all__ and attr not in _SUBPACKAGES and attr != "__version__":
                problems.append(f"{name}: tw.{attr} is not in tierwise.__all__")
    return problems


def test_docs_and_examples_import_only_public_names() -> None:
    sources = _sources()
    parsed = [(name, _parse(name, src)) for name, src in sources]
    trees = [(n, t) for n, t in parsed if t is not None]
    # Most blocks are whole programs or statements; only a few excerpts are skipped.
    assert len(trees) >= 0.8 * len(parsed), [n for n, t in parsed if t is None]
    problems = [p for name, tree in trees for p in _problems(name, tree)]
    assert problems == []


@pytest.mark.parametrize(
    "source",
    [
        "from tierwise._config import build",
        "from tierwise.execution.executor import _Call",
        "import tierwise as tw\ntw.Nonexistent",
        "from tierwise.observe.audit import nothing_here",
    ],
)
def test_the_check_catches_private_and_unknown_names(source: str) -> None:
    tree = _parse("snippet", source)
    assert tree is not None and _problems("snippet", tree)
