"""Small helpers shared by the server's two wire formats."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ..errors import TierwiseError

_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def dumps(obj: Any) -> bytes:
    """Compact JSON bytes (the hot path: one encoder, no whitespace)."""
    return _encode(obj).encode()


class BadInput(TierwiseError):
    """The caller's body is malformed; answered 400 in the caller's format, naming ``param``."""

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


def opt_int(body: Mapping[str, Any], name: str) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadInput(f"{name} must be an integer", param=name)
    return value


def opt_float(body: Mapping[str, Any], name: str) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadInput(f"{name} must be a number", param=name)
    return float(value)
