"""Write the generated reference pages: ``docs/reference/config.md`` and ``docs/reference/cli.md``.

Why generated: a hand-written list of config keys or CLI flags drifts the first time
someone adds a field and forgets the docs. These pages are rendered from the code
that validates the file (the pydantic models in ``tierwise._config``) and from the
argparse tree ``tierwise`` runs, so they say exactly what the code accepts.

Run ``python tools/docs_reference.py`` after changing the schema or the CLI;
``--check`` exits 1 when a committed page differs from what the code renders
(``tests/test_docs_config.py`` checks the same, and the mkdocs hook renders the
pages fresh for the site).

Descriptions come from the schema itself: a model's docstring and the ``#:``
comment above each field (read from the class source, since pydantic does not
keep comments).
"""

from __future__ import annotations

import argparse
import enum
import inspect
import sys
import textwrap
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import annotated_types
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

ROOT = Path(__file__).resolve().parent.parent
CONFIG_PAGE = ROOT / "docs" / "reference" / "config.md"
CLI_PAGE = ROOT / "docs" / "reference" / "cli.md"


@dataclass(frozen=True)
class Key:
    """One key of a section: what the reference table shows for it."""

    name: str
    type: str
    default: str
    description: str


@dataclass
class Section:
    """One TOML table (``[models.ALIAS]``) or array of tables (``[[alerts.rules]]``)."""

    heading: str  # as written in a file: "[models.ALIAS]"
    path: str  # the key path pattern: "models.*" ("" for the top level)
    doc: str
    keys: list[Key] = field(default_factory=list)
    # Sections nested as inline values (``budget.limits``) point here too.
    anchor: str = ""


# --------------------------------------------------------------------- schema walk


def field_comments(cls: type) -> dict[str, str]:
    """The ``#:`` comment block above each field of ``cls`` and its bases, by field name."""
    found: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if klass in (object, BaseModel) or not issubclass(klass, BaseModel):
            continue
        try:
            source = textwrap.dedent(inspect.getsource(klass))
        except (OSError, TypeError):
            continue
        pending: list[str] = []
        for line in source.splitlines():
            stripped = line.strip()
            if stripped.startswith("#:"):
                pending.append(stripped[2:].strip())
                continue
            if pending and line.startswith("    ") and not line.startswith("     "):
                name = stripped.split(":", 1)[0].strip()
                if name.isidentifier():
                    found[name] = " ".join(pending)
            pending = []
    return found


def _constraint(meta: Any) -> str:
    for attr, symbol in (("gt", ">"), ("ge", "≥"), ("lt", "<"), ("le", "≤")):
        value = getattr(meta, attr, None)
        if value is not None:
            return f"{symbol} {value:g}" if isinstance(value, int | float) else f"{symbol} {value}"
    if isinstance(meta, annotated_types.MinLen) and meta.min_length == 1:
        return "non-empty"
    return ""


def type_name(annotation: Any, metadata: list[Any] | tuple[Any, ...] = ()) -> str:
    """A short, TOML-flavoured name for a field's type (``float > 0 or none``)."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return type_name(args[0], [*metadata, *annotation.__metadata__])
    constraints = [c for c in (_constraint(m) for m in metadata) if c]
    for meta in metadata:
        inner = getattr(meta, "metadata", None)
        if inner:
            constraints += [c for c in (_constraint(m) for m in inner) if c]
    suffix = f" {', '.join(dict.fromkeys(constraints))}" if constraints else ""
    if origin is typing.Literal:
        return " | ".join(f'`"{a}"`' if isinstance(a, str) else f"`{a}`" for a in args)
    if origin in (typing.Union, types.UnionType):
        parts = [type_name(a, metadata) for a in args if a is not type(None)]
        none = " or none" if type(None) in args else ""
        return " or ".join(parts) + none
    if origin is list:
        return f"list of {type_name(args[0])}" if args else "list"
    if origin is dict:
        return f"table of {type_name(args[1])}" if args else "table"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "table"
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return " | ".join(f"`{m.value}`" for m in annotation)
    if annotation is str and "non-empty" in constraints:
        return "non-empty string"
    names = {bool: "bool", int: "int", float: "float", str: "string"}
    if annotation in names:
        return names[annotation] + suffix
    return "any"


def default_text(info: FieldInfo) -> str:
    """The default as a reader would write it in TOML (``required`` when there is none)."""
    if info.is_required():
        return "required"
    if info.default_factory is not None:
        value = info.default_factory()  # type: ignore[call-arg]
        if isinstance(value, BaseModel):
            return "(section defaults)"
    else:
        value = info.default
    if value is None or value is PydanticUndefined:
        return "none"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, str):
        return f'`"{value}"`'
    if isinstance(value, list | dict) and not value:
        return "`[]`" if isinstance(value, list) else "`{}`"
    return f"`{value!r}`"


def _models_in(annotation: Any) -> Iterator[tuple[str, type[BaseModel]]]:
    """Pydantic models a field holds, with how each is reached: "" (the value itself),
    ".*" (a table of them), "[]" (a list of them)."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        yield from _models_in(args[0])
    elif origin in (typing.Union, types.UnionType):
        for a in args:
            yield from _models_in(a)
    elif origin is list and args:
        for how, model in _models_in(args[0]):
            yield "[]" + how, model
    elif origin is dict and args:
        for how, model in _models_in(args[1]):
            yield ".*" + how, model
    elif isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield "", annotation


_PLACEHOLDERS = {"providers": "NAME", "models": "ALIAS", "strategies": "NAME"}


def _heading(path: str) -> str:
    parts = path.split(".")
    shown = []
    for i, part in enumerate(parts):
        if part == "*":
            shown.append(_PLACEHOLDERS.get(parts[i - 1], "NAME"))
        else:
            shown.append(part.removesuffix("[]"))
    text = ".".join(shown)
    return f"[[{text}]]" if path.endswith("[]") else f"[{text}]"


def kind_is_optional(info: FieldInfo) -> bool:
    """Whether a field may be left out as ``None`` (an optional section)."""
    return type(None) in typing.get_args(info.annotation)


def markdown(text: str) -> str:
    """reStructuredText literals (double backquotes) as Markdown code (single ones)."""
    return text.replace("``", "`")


def _doc(cls: type) -> str:
    return markdown(inspect.cleandoc(cls.__doc__ or "")) if cls.__doc__ != BaseModel.__doc__ else ""


def config_sections() -> list[Section]:
    """Every section of the file, in the order the top level declares them.

    ``[strategies.NAME]`` is left out: its keys depend on ``type`` (see ``strategy_types``).
    """
    from tierwise._config.schema import TierwiseConfig

    sections: list[Section] = []

    def walk(model: type[BaseModel], path: str, variant: str = "") -> None:
        comments = {name: markdown(text) for name, text in field_comments(model).items()}
        heading = f"`{_heading(path)}`" if path else "Top level"
        if variant:
            heading += f' with backend = "{variant}"'
        section = Section(heading, path, _doc(model))
        sections.append(section)
        children: list[tuple[str, type[BaseModel], str]] = []
        for name, info in model.model_fields.items():
            if path == "" and name == "strategies":
                kind = "`[strategies.NAME]` tables (below)"
                section.keys.append(Key(name, kind, "`{}`", comments.get(name, "")))
                continue
            found = list(_models_in(info.annotation))
            kind = type_name(info.annotation, info.metadata)
            if found:
                how = found[0][0]
                shape = "array of tables" if how.startswith("[]") else "tables" if how else "table"
                kind = f"`{_heading(f'{path}.{name}{how}'.lstrip('.'))}` {shape}"
                kind += " or none" if kind_is_optional(info) else ""
            section.keys.append(Key(name, kind, default_text(info), comments.get(name, "")))
            for how, child in found:
                child_variant = ""
                if len(found) > 1:
                    backend = child.model_fields.get("backend")
                    args = typing.get_args(backend.annotation) if backend else ()
                    child_variant = str(args[0]) if args else child.__name__
                children.append((f"{path}.{name}{how}".lstrip("."), child, child_variant))
        for child_path, child, child_variant in children:
            walk(child, child_path, child_variant)

    walk(TierwiseConfig, "")
    return sections


@dataclass(frozen=True)
class StrategyType:
    """A built-in ``[strategies.NAME]`` type and the keys its table takes."""

    name: str
    keys: tuple[str, ...]
    extra: dict[str, tuple[str, ...]]  # named groups of further keys (classifier options, step keys)


def strategy_types() -> list[StrategyType]:
    """The built-in strategy table types, from the registry the validator uses."""
    from tierwise._config._tables import BUILTIN
    from tierwise.routing._config import DIFFICULTY_KEYS, OPTION_KEYS, OUTCOME_KEYS
    from tierwise.strategies.pipeline import _STEP_KEYS

    extras: dict[str, dict[str, tuple[str, ...]]] = {
        "router": {
            'With `classifier = "keyword"` (the default), its options': OPTION_KEYS,
            'With `classifier = "outcome"`': OUTCOME_KEYS,
            'With `classifier = "difficulty"`': DIFFICULTY_KEYS,
        },
        "pipeline": {"Each step's keys": _STEP_KEYS},
    }
    return [StrategyType(name, model.KEYS, extras.get(name, {})) for name, model in BUILTIN.items()]


def config_key_paths() -> set[str]:
    """Every key path the schema accepts: ``models.*.rpm``, ``budget.limits[].scope``,
    ``state.url_env``, ``strategies.*.routes`` (strategy keys of every built-in type)."""
    paths = set()
    for section in config_sections():
        for key in section.keys:
            paths.add(f"{section.path}.{key.name}".lstrip("."))
    for kind in strategy_types():
        paths.update(f"strategies.*.{k}" for k in ("type", *kind.keys))
        for group in kind.extra.values():
            sub = "strategies.*.steps[]." if kind.name == "pipeline" else "strategies.*."
            paths.update(sub + k for k in group)
    return paths


# --------------------------------------------------------------------- rendering


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_config() -> str:
    """``docs/reference/config.md``."""
    out = [
        "# Config keys",
        "",
        "<!-- Generated by tools/docs_reference.py from the pydantic schema (tierwise._config): "
        "do not edit by hand. -->",
        "",
        "Every key `Orchestrator.from_config` and `tierwise check-config` accept, generated from",
        "the schema that validates them, so this page cannot drift from the code. An unknown key",
        "is an error that names its path. The annotated example and what each section is for",
        "are in [Configuration](../configuration.md).",
        "",
    ]
    for section in config_sections():
        out += [f"## {section.heading}", ""]
        if section.doc:
            out += [section.doc, ""]
        out += ["| key | type | default | description |", "|---|---|---|---|"]
        for key in section.keys:
            out.append(f"| `{key.name}` | {_cell(key.type)} | {key.default} | {_cell(key.description)} |")
        out.append("")
    out += [
        "## `[strategies.NAME]`",
        "",
        "The keys of a strategy table depend on its `type`: one of the built-in types below, or",
        '`"package.module:Class"` for your own strategy, whose table\'s other keys are its',
        "parameters ([Config internals](../config.md)). What each key does:",
        "[Strategies](../strategies.md); the keyword classifier's options:",
        "[Keyword rules](../keyword-rules.md).",
        "",
    ]
    for kind in strategy_types():
        out += [f'### `type = "{kind.name}"`', ""]
        out += [", ".join(f"`{k}`" for k in kind.keys), ""]
        for label, keys in kind.extra.items():
            out += [f"{label}: " + ", ".join(f"`{k}`" for k in keys) + ".", ""]
    return "\n".join(out).rstrip() + "\n"


def _actions(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [
        a for a in parser._actions if not isinstance(a, argparse._SubParsersAction | argparse._HelpAction)
    ]


def _usage_name(action: argparse.Action) -> str:
    if not action.option_strings:
        return f"`{action.metavar or action.dest}`"
    takes_value = action.nargs != 0
    metavar = action.metavar or action.dest.upper()
    return ", ".join(f"`{o} {metavar}`" if takes_value else f"`{o}`" for o in action.option_strings)


def _default(action: argparse.Action) -> str:
    if action.option_strings and action.nargs == 0:
        return ""
    if action.default in (None, argparse.SUPPRESS, False):
        return ""
    return f"`{action.default}`"


def render_cli() -> str:
    """``docs/reference/cli.md``, from the parser ``tierwise`` itself runs."""
    from tierwise.cli import _parser

    parser = _parser()
    out = [
        "# Command line",
        "",
        "<!-- Generated by tools/docs_reference.py from tierwise.cli's argparse parser: "
        "do not edit by hand. -->",
        "",
        f"{parser.description} `tierwise COMMAND --help` prints what this page says about",
        "one command; `tierwise --version` prints the installed version.",
        "",
    ]
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    helps = {choice.dest: choice.help for choice in sub._choices_actions}
    for name, command in sub.choices.items():
        summary = (helps.get(name) or "").rstrip(".")
        out += [f"## `tierwise {name}`", "", summary[:1].upper() + summary[1:] + ".", ""]
        out += ["| argument | default | what it does |", "|---|---|---|"]
        for action in _actions(command):
            out.append(f"| {_usage_name(action)} | {_default(action)} | {_cell(action.help or '')} |")
        out.append("")
    return "\n".join(out).rstrip() + "\n"


PAGES = {CONFIG_PAGE: render_config, CLI_PAGE: render_cli}


def main(argv: list[str] | None = None) -> int:
    """Write the pages, or with ``--check`` report (exit 1) the ones that are stale."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="compare instead of writing; exit 1 if stale")
    args = parser.parse_args(argv)
    stale = []
    for page, render in PAGES.items():
        text = render()
        if args.check:
            if not page.exists() or page.read_text(encoding="utf-8") != text:
                stale.append(page)
        else:
            page.parent.mkdir(parents=True, exist_ok=True)
            page.write_text(text, encoding="utf-8")
            print(f"wrote {page.relative_to(ROOT)}")
    for page in stale:
        print(f"{page.relative_to(ROOT)} is stale: run python tools/docs_reference.py", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "src"))
    raise SystemExit(main())
