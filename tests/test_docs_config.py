"""The config keys the docs name are the keys the schema accepts, both ways.

* ``docs/reference/config.md`` and ``docs/reference/cli.md`` are what
  ``tools/docs_reference.py`` renders from the pydantic schema and the argparse
  parser today (a changed field or flag without a regenerated page fails here);
* every key path of the schema appears in the reference page, and every key the
  reference page lists exists in the schema;
* every key written in a config TOML block of ``docs/*.md`` or the README, and every
  key named in docs/configuration.md's "Sections" table, exists in the schema: a
  renamed or removed key cannot linger in prose.
"""

from __future__ import annotations

import importlib.util
import re
import sys
import tomllib
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOC_FILES = [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md"]
_TOML = re.compile(r"^```toml\n(.*?)^```", re.S | re.M)

# TOML blocks that are not tierwise config files: (page, a top-level key they have).
NOT_CONFIG = {
    ("testing.md", "record_limit"),  # a MockLLMServer config file
    ("serve.md", "keys"),  # tierwise serve's caller-keys file
}


def _load_tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location("docs_reference", ROOT / "tools" / "docs_reference.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["docs_reference"] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


ref = _load_tool()
KNOWN = ref.config_key_paths()
TOP = {p.split(".")[0] for p in KNOWN}


def test_generated_pages_are_up_to_date() -> None:
    for page, render in ref.PAGES.items():
        assert page.read_text(encoding="utf-8") == render(), (
            f"{page.relative_to(ROOT)} is stale: run python tools/docs_reference.py"
        )


def _reference_paths() -> set[str]:
    """Key paths as the reference page lists them (section headings + key rows)."""
    text = (ROOT / "docs" / "reference" / "config.md").read_text(encoding="utf-8")
    paths: set[str] = set()
    prefix: str | None = None
    for line in text.splitlines():
        if line.startswith("## "):
            heading = re.match(r"## `\[\[?([^\]]+)\]\]?`", line)
            if line == "## Top level":
                prefix = ""
            elif heading and not heading.group(1).startswith("strategies"):
                name = heading.group(1)
                name = re.sub(r"\b(NAME|ALIAS)\b", "*", name)
                prefix = name + ("[]" if line.startswith("## `[[") else "")
            else:
                prefix = None
        elif prefix is not None and line.startswith("| `"):
            key = re.match(r"\| `([^`]+)`", line)
            assert key
            paths.add(f"{prefix}.{key.group(1)}".lstrip("."))
    return paths


def test_every_schema_key_is_in_the_reference_and_no_other() -> None:
    schema = {p for p in KNOWN if not p.startswith("strategies.*.")}
    listed = _reference_paths()
    assert listed - schema == set(), "the reference lists keys the schema does not have"
    assert schema - listed == set(), "schema keys missing from docs/reference/config.md"
    assert len(schema) > 100  # the walk really reached the nested sections


def test_every_schema_key_has_a_description() -> None:
    missing = [
        f"{section.path or 'top level'}.{key.name}"
        for section in ref.config_sections()
        for key in section.keys
        if not key.description
    ]
    assert missing == [], "add a #: comment above these fields in tierwise._config"


def test_strategy_keys_match_what_validation_accepts() -> None:
    """The reference's strategy keys come from KEYS; a key outside them is refused."""
    import tierwise as tw
    from tierwise.errors import ConfigError

    models = {"a": {"provider": "openai", "model": "gpt-5.5"}}
    for kind in ref.strategy_types():
        with pytest.raises(ConfigError, match="undocumented_key"):
            tw.Orchestrator.from_config(
                {"models": models, "strategies": {"s": {"type": kind.name, "undocumented_key": 1}}}
            )


def _own_class(table: dict[str, Any]) -> bool:
    """A strategy (or router classifier) of your own: its other keys are its parameters."""
    return any(":" in str(table.get(key, "")) for key in ("type", "classifier"))


def unknown_keys(cfg: dict[str, Any], at: str = "") -> list[str]:
    """Key paths of ``cfg`` the schema does not have (``models.opus.rpmm``)."""
    found: list[str] = []
    for key, value in cfg.items():
        pattern = f"{at}.{key}".lstrip(".")
        if pattern not in KNOWN:
            found.append(pattern)
            continue
        nested = [p for p in KNOWN if p.startswith(pattern + ".") or p.startswith(pattern + "[].")]
        if not nested:
            continue  # a free-form value (headers, routes, rules, ...)
        if isinstance(value, list):
            for item in value:
                if isinstance(item, dict):
                    found += unknown_keys(item, pattern + "[]")
        elif isinstance(value, dict):
            if any(p.startswith(pattern + ".*.") for p in nested):
                for name, table in value.items():
                    if isinstance(table, dict):
                        sub = f"{pattern}.*"
                        if pattern == "strategies" and _own_class(table):
                            continue
                        found += unknown_keys(table, sub)
                    else:
                        found.append(f"{pattern}.{name}")
            else:
                found += unknown_keys(value, pattern)
    return found


def _config_blocks() -> list[tuple[str, int, dict[str, Any]]]:
    blocks = []
    for path in DOC_FILES:
        for i, text in enumerate(_TOML.findall(path.read_text(encoding="utf-8"))):
            cfg = tomllib.loads(text)
            if any((path.name, key) in NOT_CONFIG for key in cfg):
                continue
            blocks.append((path.name, i, cfg))
    return blocks


def test_docs_have_config_blocks() -> None:
    pages = {name for name, _, _ in _config_blocks()}
    assert {"configuration.md", "providers.md", "strategies.md", "many-processes.md"} <= pages


@pytest.mark.parametrize(("page", "index", "cfg"), _config_blocks(), ids=lambda v: str(v)[:30])
def test_every_key_in_a_config_block_exists(page: str, index: int, cfg: dict[str, Any]) -> None:
    assert unknown_keys(cfg) == [], f"{page} toml block {index} names keys the schema lacks"


def test_the_checker_catches_an_unknown_key() -> None:
    """The walk above would pass on anything if it stopped too early."""
    cfg = {
        "models": {"opus": {"provider": "anthropic", "model": "m", "rpmm": 5}},
        "budget": {"limits": [{"limit_usd": 1, "scop": "total"}]},
        "state": {"backend": "redis", "on_error": {"budgett": "open"}},
        "strategies": {"r": {"type": "router", "routes": {"x": "opus"}, "defualt": "x"}},
        "retri": {},
    }
    assert sorted(unknown_keys(cfg)) == [
        "budget.limits[].scop",
        "models.*.rpmm",
        "retri",
        "state.on_error.budgett",
        "strategies.*.defualt",
    ]


def _sections_table() -> dict[str, list[str]]:
    text = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    table = text[text.index("## Sections") :]
    rows: dict[str, list[str]] = {}
    for line in table.splitlines()[3:]:
        if not line.startswith("|"):
            break
        first, rest = line.strip("|").split("|", 1)
        rows[first.strip()] = re.findall(r"`([a-z_]+)`", rest.split("Every built-in name")[0])
    return rows


def test_the_sections_table_names_only_real_keys() -> None:
    rows = _sections_table()
    providers = rows["`[providers.NAME]`"]
    models = rows["`[models.ALIAS]`"]
    assert "api_key_env" in providers and "max_queue_wait_s" in models
    for key in providers:
        assert f"providers.*.{key}" in KNOWN, key
    for key in models:
        assert f"models.*.{key}" in KNOWN or key in ("chat", "responses"), key
    # every section of the file has a row
    named = {re.sub(r"[`\[\]]|\.NAME|\.ALIAS", "", cell) for row in rows for cell in row.split(",")}
    sections = {p.split(".")[0] for p in KNOWN if "." in p and p.split(".")[0] != "strategies"}
    assert sections - {n.strip() for n in named} == set(), "a section of the file has no row"
