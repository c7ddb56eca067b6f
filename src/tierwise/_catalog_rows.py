"""The catalog's row checks and the packaged price table's text.

Kept apart from ``catalog.py`` (the lookup and pricing logic): these turn a
``[models]`` row from the data file or a deployment's overrides into
``ModelSpec`` fields, naming the exact field of every mistake.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

from .errors import ConfigError, did_you_mean

if TYPE_CHECKING:
    from .catalog import ModelSpec

_DATA_PACKAGE: Final = "tierwise"
_DATA_FILE: Final = ("data", "prices.toml")


class _FieldError(ValueError):
    """A bad value for one ``ModelSpec`` field; carries the field name so config
    loading can report a full path such as ``models.gpt-4o.input``."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def _check_price(field: str, value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _FieldError(field, f"price must be a number (USD per 1M tokens) or None, got {value!r}")
    price = float(value)
    if not math.isfinite(price) or price < 0:
        raise _FieldError(field, f"price must be a finite number >= 0, got {value!r}")
    return price


def _check_tokens(field: str, value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _FieldError(field, f"must be a whole number of tokens or None, got {value!r}")
    if value <= 0:
        raise _FieldError(field, f"must be > 0, got {value!r}")
    return value


def _check_str(field: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _FieldError(field, f"must be a non-empty string, got {value!r}")
    return value.strip()


def _read_builtin_text() -> str:
    """The text of the packaged ``data/prices.toml``.

    Read straight from the package directory when it exists on disk (the normal
    install): importing :mod:`importlib.resources` costs ~10 ms of further imports
    (zipfile, tempfile, pathlib), five times the parse itself. When the package is
    not a plain directory (zipapp, zipimport), :func:`importlib.resources.files`
    is the portable path and is used instead.
    """
    path = os.path.join(os.path.dirname(__file__), *_DATA_FILE)
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except OSError:
        from importlib.resources import files

        resource = files(_DATA_PACKAGE)
        for part in _DATA_FILE:
            resource = resource / part
        return resource.read_text(encoding="utf-8")


def _check_field_names(row: Mapping[str, Any], path: str) -> None:
    allowed = _row_fields()
    for name in row:
        if name not in allowed:
            expected = ", ".join(sorted(allowed))
            hint = did_you_mean(str(name), sorted(allowed))
            hint = f"; {hint}" if hint else f"; expected one of {expected}"
            raise ConfigError(f"unknown field{hint}", field=f"{path}.{name}")


def _spec_from_row(key: str, row: object, path: str) -> ModelSpec:
    """Turn one config row into a ``ModelSpec``, reporting errors by field path."""
    if not isinstance(row, Mapping):
        raise ConfigError(f"must be a table of fields, got {type(row).__name__}", field=path)
    _check_field_names(row, path)
    if "provider" not in row:
        raise ConfigError("is required (e.g. 'openai', 'anthropic')", field=f"{path}.provider")
    from .catalog import ModelSpec

    fields = dict(row)
    fields.setdefault("name", key)
    try:
        return ModelSpec(**fields)
    except _FieldError as exc:
        raise ConfigError(exc.message, field=f"{path}.{exc.field}") from None


def _row_fields() -> frozenset[str]:
    from .catalog import ModelSpec

    return frozenset(f.name for f in dataclasses.fields(ModelSpec))
