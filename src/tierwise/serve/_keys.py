"""Caller API keys for ``tierwise serve``: who is calling, with which tags and limits.

The key table is read from an environment variable named by ``--keys-env``
(default ``TIERWISE_API_KEYS``): either the TOML text itself, or, when the
variable ``<NAME>_FILE`` is set instead, the path of a TOML file. Keys are stored
hashed (``sha256 = "<hex>"``), so the file can sit in a config repository
without leaking a usable credential; a plaintext ``key = "..."`` is accepted for
local use and hashed at load, never kept. Shape::

    [keys.search-team]
    sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
    tags = { team = "search" }      # merged into every request's metadata
    rpm = 60                        # this key's requests per minute (optional)

The tags are what the budget scopes see (``scope = "tag:team=search"``), so a
team's spend limit applies through the existing ``[budget]`` table. ``rpm`` is
enforced per key by a limiter that lives in the shared state backend when one is
configured, so it holds across workers and hosts.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError

__all__ = ["ApiKey", "KeyRing", "hash_key"]


def hash_key(key: str) -> str:
    """The hex sha256 of ``key``: what the key table stores."""
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class ApiKey:
    """One caller. ``digest`` is the key's sha256; the key itself is never held."""

    name: str
    digest: str = field(repr=False)
    tags: Mapping[str, str] = field(default_factory=dict)
    rpm: float | None = None


class KeyRing:
    """The configured caller keys; ``open`` (no table configured) admits everyone."""

    def __init__(self, keys: list[ApiKey] | None = None) -> None:
        self.keys = list(keys or [])
        self._by_digest = {k.digest: k for k in self.keys}

    @property
    def open(self) -> bool:
        return not self.keys

    @classmethod
    def from_env(cls, name: str = "TIERWISE_API_KEYS", environ: Mapping[str, str] | None = None) -> KeyRing:
        """Load the table from ``$name`` (TOML text) or the file ``$name_FILE``; none: open."""
        env = os.environ if environ is None else environ
        path = env.get(f"{name}_FILE")
        text = env.get(name)
        where = f"${name}"
        if path:
            try:
                with open(path, "rb") as fh:
                    raw = fh.read().decode()
            except OSError as exc:
                raise ConfigError(
                    f"cannot read the API key file named by ${name}_FILE: {exc.strerror}"
                ) from None
            text, where = raw, f"${name}_FILE"
        if not text:
            return cls()
        return cls.from_toml(text, where=where)

    @classmethod
    def from_toml(cls, text: str, *, where: str = "the key table") -> KeyRing:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            # The message may quote the offending line, which could hold a key: keep
            # only the position.
            raise ConfigError(f"{where} is not valid TOML (line {getattr(exc, 'lineno', '?')})") from None
        return cls.from_mapping(data, where=where)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], *, where: str = "the key table") -> KeyRing:
        table = data.get("keys")
        if not isinstance(table, Mapping) or not table:
            raise ConfigError(f"{where} needs a [keys.NAME] table per caller", field="keys")
        keys: list[ApiKey] = []
        for name, spec in table.items():
            at = f"keys.{name}"
            if not isinstance(spec, Mapping):
                raise ConfigError("must be a table", field=at)
            unknown = sorted(set(spec) - {"sha256", "key", "tags", "rpm"})
            if unknown:
                raise ConfigError(f"unknown field(s) {', '.join(unknown)}", field=at)
            digest = spec.get("sha256")
            if digest is None and isinstance(spec.get("key"), str) and spec["key"]:
                digest = hash_key(spec["key"])
            if not isinstance(digest, str) or len(digest) != 64:
                raise ConfigError("needs sha256 = '<64 hex digits>' (or key = '...')", field=f"{at}.sha256")
            try:
                bytes.fromhex(digest)
            except ValueError:
                raise ConfigError("is not hex", field=f"{at}.sha256") from None
            tags = spec.get("tags", {})
            if not isinstance(tags, Mapping) or not all(isinstance(v, str) for v in tags.values()):
                raise ConfigError("must be a table of strings", field=f"{at}.tags")
            rpm = spec.get("rpm")
            if rpm is not None and (isinstance(rpm, bool) or not isinstance(rpm, int | float) or rpm <= 0):
                raise ConfigError(f"must be a number > 0, got {rpm!r}", field=f"{at}.rpm")
            keys.append(
                ApiKey(
                    name=str(name),
                    digest=digest.lower(),
                    tags={"api_key": str(name), **{str(k): v for k, v in tags.items()}},
                    rpm=None if rpm is None else float(rpm),
                )
            )
        return cls(keys)

    def lookup(self, presented: str | None) -> ApiKey | None:
        """The caller holding ``presented``, or ``None``: compared by digest in
        constant time, so the lookup leaks nothing about near misses."""
        if not presented:
            return None
        digest = hash_key(presented)
        found = self._by_digest.get(digest)
        if found is not None and hmac.compare_digest(found.digest, digest):
            return found
        return None

    def __repr__(self) -> str:
        return f"KeyRing({len(self.keys)} key(s): {', '.join(k.name for k in self.keys)})"


def presented_key(headers: Mapping[str, str]) -> str | None:
    """The key a caller sent: ``Authorization: Bearer`` (OpenAI SDKs) or ``x-api-key``
    (Anthropic SDKs)."""
    auth = headers.get("authorization")
    if auth and auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    return headers.get("x-api-key") or None
