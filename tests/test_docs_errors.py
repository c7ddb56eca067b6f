"""docs/reference/errors.md documents every public exception class, and no other.

"Public" is found, not listed: every exception class defined in tierwise that a public
module (no ``_`` in its dotted name) exports in ``__all__``. Each class's section must
state its module (outside ``tierwise.errors``), its real bases, what raises it and what
to do, so a new exception, a moved one or a changed hierarchy fails here.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from pathlib import Path

import tierwise

PAGE = (Path(__file__).resolve().parent.parent / "docs" / "reference" / "errors.md").read_text(
    encoding="utf-8"
)


def public_exceptions() -> dict[str, type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for info in pkgutil.walk_packages(tierwise.__path__, "tierwise."):
        if any(part.startswith("_") for part in info.name.split(".")):
            continue
        module = importlib.import_module(info.name)
        for name in getattr(module, "__all__", ()):
            obj = getattr(module, name, None)
            if (
                isinstance(obj, type)
                and issubclass(obj, BaseException)
                and obj.__module__.startswith("tierwise")
            ):
                found[obj.__name__] = obj
    return found


def sections() -> dict[str, str]:
    parts = re.split(r"^### `(\w+)`\n", PAGE, flags=re.M)
    return {parts[i]: re.split(r"^## ", parts[i + 1], flags=re.M)[0] for i in range(1, len(parts), 2)}


def test_every_public_exception_has_a_section_and_no_other() -> None:
    found = public_exceptions()
    assert {"TierwiseError", "EventLoopRunningError", "StateUnavailable"} <= set(found)
    assert sorted(sections()) == sorted(found)


def test_every_class_in_tierwise_errors_is_documented() -> None:
    exported = {n for n in tierwise.errors.__all__ if isinstance(getattr(tierwise.errors, n), type)}
    assert exported <= set(sections())


def test_each_section_states_bases_module_cause_and_remedy() -> None:
    found = public_exceptions()
    for name, body in sections().items():
        cls = found[name]
        bases = re.search(r"Subclass of: (.+)", body)
        assert bases, name
        assert re.findall(r"`(\w+)`", bases.group(1)) == [b.__name__ for b in cls.__bases__], name
        if cls.__module__ != "tierwise.errors":
            module = re.search(r"Module: `([\w.]+)`", body)
            assert module and module.group(1) == cls.__module__, name
            assert PAGE.index(f"### `{name}`") > PAGE.index("## Elsewhere"), name
        assert "**Raised**:" in body and "**What to do**:" in body, name
