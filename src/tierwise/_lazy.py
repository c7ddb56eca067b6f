"""Lazy re-exports for package ``__init__`` modules.

A package lists where each public name lives and loads that module on first
access, so ``import tierwise`` (and ``import tierwise.observe``...) stays fast and
pulls in no optional dependency a process never uses.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping, MutableMapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(
    package: str,
    where: Mapping[str, str],
    namespace: MutableMapping[str, Any],
    public: Iterable[str],
    submodules: Iterable[str] = (),
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package``: ``where`` maps a name to the
    submodule (relative, dotted) defining it; ``submodules`` are returned whole.
    A loaded name is stored in ``namespace`` so later lookups skip the hook, and
    ``dir()`` lists ``public`` and ``submodules``."""
    subs = frozenset(submodules)
    names = frozenset(public)

    def __getattr__(name: str) -> Any:
        if name in subs:
            value: Any = importlib.import_module(f".{name}", package)
        else:
            module = where.get(name)
            if module is None:
                raise AttributeError(f"module {package!r} has no attribute {name!r}")
            value = getattr(importlib.import_module(f".{module}", package), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        # The public surface only: not the helpers a module imports for itself
        # (``TYPE_CHECKING``, ``annotations``...), which ``dir()`` would list.
        return sorted(names | subs)

    return __getattr__, __dir__
