"""docs/api.md (the mkdocstrings API reference) covers the whole stable surface.

Every name of ``tierwise.__all__`` is rendered there with a ``::: tierwise.NAME``
directive (a submodule renders its own ``__all__``), so a name added to the public
API without its reference entry fails here; a directive naming something that no
longer exists would fail ``mkdocs build --strict``.
"""

from __future__ import annotations

import re
from pathlib import Path

import tierwise

PAGE = (Path(__file__).resolve().parent.parent / "docs" / "api.md").read_text(encoding="utf-8")


def test_every_public_name_has_an_api_entry() -> None:
    rendered = set(re.findall(r"^::: tierwise\.(\w+)", PAGE, re.M))
    public = {name for name in tierwise.__all__ if name != "__version__"}
    assert public - rendered == set()
    assert rendered - public == {"state"}  # a public submodule not re-exported at the top


def test_submodule_member_lists_name_real_members() -> None:
    import importlib

    found = re.findall(r"^::: (tierwise\.\w+)\n    options:\n(?:.*\n)*?\s+members: \[(.*)\]", PAGE, re.M)
    assert len(found) == 2
    for module, members in found:
        exported = set(importlib.import_module(module).__all__)
        assert {m.strip() for m in members.split(",")} <= exported, module
