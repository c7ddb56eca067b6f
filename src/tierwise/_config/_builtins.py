"""Provider names a model may use without a ``[providers.NAME]`` section.

Every built-in row works by its name alone: ``provider = "deepseek"`` means the
DeepSeek row of the OpenAI-compatible adapter, with its own default URL and key
variable (``DEEPSEEK_API_KEY``), exactly as ``[providers.deepseek] type = "openai",
compat = "deepseek"`` would. A section with that name is then only needed to
override something (``base_url``, ``api_key_env``, ``timeout_s``, ``headers``);
its ``type`` (and ``compat``) default from the name, so a newcomer never has to
spell out what the name already says.

The table is read from ``providers/_compat.py`` (the rows themselves), so adding a
server there makes its name usable here with no second list to keep in step.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..providers._compat import COMPATIBLE_SERVERS

__all__ = ["BUILTIN_PROVIDERS", "builtin_section", "default_key_env", "with_builtin_type"]

#: Wire formats of their own (not OpenAI-compatible rows).
_NATIVE: dict[str, str | None] = {"anthropic": "ANTHROPIC_API_KEY", "gemini": "GEMINI_API_KEY"}

#: Every name usable as ``provider = "<name>"`` with no section, sorted.
BUILTIN_PROVIDERS: tuple[str, ...] = tuple(sorted({*_NATIVE, *COMPATIBLE_SERVERS}))


def builtin_section(name: str) -> dict[str, str] | None:
    """The ``[providers.NAME]`` fields the built-in ``name`` implies, or ``None``."""
    if name in _NATIVE:
        return {"type": name}
    if name in COMPATIBLE_SERVERS:
        return {"type": "openai", "compat": name}
    return None


def default_key_env(name: str) -> str | None:
    """The variable the built-in provider ``name`` reads its key from (``None``:
    a local server that needs no key, or not a built-in name)."""
    if name in _NATIVE:
        return _NATIVE[name]
    row = COMPATIBLE_SERVERS.get(name)
    return None if row is None else row.api_key_env


def with_builtin_type(providers: Any) -> Any:
    """``[providers]`` with ``type`` (and ``compat``) filled in for sections named
    after a built-in provider that leave them out; anything else is returned as
    given, for the schema to judge."""
    if not isinstance(providers, Mapping):
        return providers
    out: dict[Any, Any] = {}
    for name, section in providers.items():
        implied = builtin_section(name) if isinstance(name, str) else None
        if implied is not None and isinstance(section, Mapping) and "type" not in section:
            section = {**implied, **section}
        out[name] = section
    return out
