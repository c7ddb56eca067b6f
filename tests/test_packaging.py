"""Packaging invariants that .ci/check_package relies on (it runs the built wheel itself).

* the version is written once, as ``__version__`` in ``src/tierwise/__init__.py``:
  pyproject declares it dynamic and points hatch at that file, so the wheel, the sdist
  and ``tierwise --version`` cannot disagree;
* ``.ci/run`` builds the docs strictly and runs the package check, and the ``docs`` extra
  installs what mkdocs.yml uses.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import tierwise as tw

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def test_the_version_is_written_in_one_place() -> None:
    project = PYPROJECT["project"]
    assert "version" not in project and "version" in project["dynamic"]
    path = PYPROJECT["tool"]["hatch"]["version"]["path"]
    source = (ROOT / path).read_text(encoding="utf-8")
    assert re.findall(r'^__version__ = "([^"]+)"$', source, re.M) == [tw.__version__]


def test_ci_builds_the_docs_and_checks_the_package() -> None:
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "mkdocs build --strict" in ci
    assert "tools/docs_reference.py --check" in ci
    assert re.search(r"^\.ci/check_package$", ci, re.M)
    check = (ROOT / ".ci" / "check_package").read_text(encoding="utf-8")
    for step in (
        "python -m build",
        "twine check",
        "tierwise --version",
        "tierwise demo -n 20",
        "tierwise init --offline",
    ):
        assert step in check, step


def test_the_docs_extra_installs_what_mkdocs_yml_uses() -> None:
    extra = " ".join(PYPROJECT["project"]["optional-dependencies"]["docs"])
    mkdocs = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    assert "name: material" in mkdocs and "mkdocs-material" in extra
    assert "- mkdocstrings:" in mkdocs and "mkdocstrings[python]" in extra
    assert "tools/mkdocs_hooks.py" in mkdocs and (ROOT / "tools" / "mkdocs_hooks.py").exists()
