"""docs/keyword-rules.md cannot drift from the classifier it documents.

The page lists every option key of the keyword classifier, the default rules
(label, priority, every keyword, in the order they are tried) and the default
``task_types`` table; each is compared with the code here. Its Python block and
its TOML example are run too (the TOML inside a config that must validate).
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from tierwise.config import check_config, config_warnings
from tierwise.routing._config import OPTION_KEYS
from tierwise.routing.keyword import DEFAULT_TASK_TYPES, default_rules

DOC = (Path(__file__).resolve().parent.parent / "docs" / "keyword-rules.md").read_text(encoding="utf-8")


def _table_rows(heading: str) -> list[list[str]]:
    section = DOC[DOC.index(heading) :]
    rows = []
    for line in section.splitlines()[1:]:
        if line.startswith("|") and not line.startswith("|---"):
            rows.append([c.strip() for c in line.strip("|").split("|")])
        elif rows and not line.startswith("|"):
            break
    return rows[1:]  # without the header


def _ticks(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


def test_every_option_key_is_documented_and_no_other() -> None:
    documented = [_ticks(row[0])[0] for row in _table_rows("## Options")]
    assert sorted(documented) == sorted(OPTION_KEYS)


def test_default_rules_table_matches_the_code() -> None:
    rows = _table_rows("## The default rules")
    rules = default_rules()
    assert [_ticks(r[0])[0] for r in rows] == [r.label for r in rules]
    assert [int(r[1]) for r in rows] == [r.priority for r in rules]
    assert [_ticks(r[2]) for r in rows] == [list(r.keywords) for r in rules]


def test_default_task_types_table_matches_the_code() -> None:
    rows = _table_rows("The default `task_types` table")
    documented = {value: _ticks(r[0])[0] for r in rows for value in _ticks(r[1])}
    assert documented == dict(DEFAULT_TASK_TYPES)


def test_the_python_block_runs() -> None:
    (block,) = re.findall(r"^```python\n(.*?)^```", DOC, re.S | re.M)
    exec(compile(block, "docs/keyword-rules.md", "exec"), {})


def test_the_toml_example_validates() -> None:
    (block,) = re.findall(r"^```toml\n(.*?)^```", DOC, re.S | re.M)
    cfg = tomllib.loads(block)
    aliases = ("opus", "sonnet", "gpt55", "deepseek")
    cfg["models"] = {a: {"provider": "openai", "model": "gpt-5.5"} for a in aliases}
    assert config_warnings(check_config(cfg)) == []
