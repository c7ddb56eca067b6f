"""Model catalog: who serves a model, what it costs, how much it holds, what it can do.

Why a catalog at all: routing needs context windows and capabilities to choose a
target, budgets need prices *before* a call, and metrics need prices *after* it. One
table answers all three so they never disagree.

Design decisions

* **A dated data file, not code.** The built-in table lives in ``data/prices.toml``
  with an ``as_of`` date and the public pricing pages it was read from. Prices change
  every few months; a dated file makes staleness visible and updates reviewable.
* **Lazy.** ``import tierwise`` never imports this module, and importing it does not
  read the file: :meth:`Catalog.default` parses it on first use (about a millisecond)
  and caches the result.
* **Immutable.** Every change (:meth:`~Catalog.override`, :meth:`~Catalog.with_overrides`,
  :meth:`~Catalog.scaled`, :meth:`~Catalog.add`) returns a *new* catalog. Two
  orchestrators with different price overrides in one process cannot affect each
  other, and the cached default is safe to share.
* **Unknown is ``None``, never ``0``.** A missing price or an unknown model makes
  :meth:`Catalog.cost` return ``None`` and log one warning per (catalog, model) on the
  stdlib logger ``"tierwise.catalog"``. Logging rather than :func:`warnings.warn`:
  ``warnings`` de-duplicates per call site (not per model) and is meant for
  developers, whereas a missing price is an operational fact that belongs in the
  service's logs (structlog, if configured, receives stdlib records too).

Lookup keys, in order of precedence: ``"provider/name"`` (the model reference), the
canonical ``name``, the wire ``model`` name, then ``aliases``. Matching ignores case.
If a key matches several models at the same level (the same name under two
providers), :meth:`Catalog.get` returns ``None`` and ``catalog[key]`` explains the
ambiguity; qualify the key with its provider.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import KW_ONLY, dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final

from ._catalog_rows import (
    _check_field_names,
    _check_price,
    _check_str,
    _check_tokens,
    _FieldError,
    _read_builtin_text,
    _spec_from_row,
)
from .errors import ConfigError

if TYPE_CHECKING:
    from .types import Usage

from ._batch_prices import batch_cost, batch_discount

__all__ = ["Catalog", "ModelSpec", "UnknownModelError", "batch_cost", "batch_discount", "compute_cost"]

logger = logging.getLogger("tierwise.catalog")

_PER_TOKENS: Final = 1_000_000
_PRICE_FIELDS: Final = ("input", "cached_input", "cache_write", "output")
_INT_FIELDS: Final = ("context_window", "max_output_tokens")
_BOOL_FIELDS: Final = ("tools", "json_schema", "vision", "reasoning", "embedding")
_DATA_PACKAGE: Final = "tierwise"
_DATA_FILE: Final = ("data", "prices.toml")


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """Everything tierwise knows about one model at one provider.

    Prices are USD per 1M tokens; ``None`` means unknown. ``cached_input`` and
    ``cache_write`` of ``None`` mean "billed like ordinary input" (the case for
    providers without a cache discount), so only ``input`` and ``output`` must be
    known to price a call without cache traffic. ``context_window`` /
    ``max_output_tokens`` of ``None`` mean unknown / not separately limited.

    ``embedding`` marks an embedding model (``Orchestrator.embed``): it bills input
    tokens only, so ``input`` alone prices it and ``output`` stays ``None``.

    ``name`` is the canonical id used in references (``"anthropic/claude-opus-4-7"``);
    ``model`` is what goes on the wire and defaults to ``name`` — they differ when a
    deployment calls e.g. an Azure deployment or an OpenRouter slug.
    """

    name: str
    provider: str
    _: KW_ONLY
    model: str = ""
    aliases: tuple[str, ...] = ()
    input: float | None = None
    cached_input: float | None = None
    cache_write: float | None = None
    output: float | None = None
    context_window: int | None = None
    max_output_tokens: int | None = None
    tools: bool = False
    json_schema: bool = False
    vision: bool = False
    reasoning: bool = False
    embedding: bool = False

    def __post_init__(self) -> None:
        # Validate here, not only in config loading, so a hand-built spec cannot carry
        # a negative price or a string context window into cost and routing maths.
        set_ = object.__setattr__
        set_(self, "name", _check_str("name", self.name))
        provider = _check_str("provider", self.provider)
        if "/" in provider:
            raise _FieldError("provider", f"must not contain '/', got {provider!r}")
        set_(self, "provider", provider)
        set_(self, "model", _check_str("model", self.model) if self.model else self.name)
        aliases: object = self.aliases
        if isinstance(aliases, str) or not isinstance(aliases, Iterable):
            raise _FieldError("aliases", f"must be a list of strings, got {aliases!r}")
        set_(self, "aliases", tuple(_check_str("aliases", a) for a in aliases))
        for name in _PRICE_FIELDS:
            set_(self, name, _check_price(name, getattr(self, name)))
        for name in _INT_FIELDS:
            set_(self, name, _check_tokens(name, getattr(self, name)))
        for name in _BOOL_FIELDS:
            if not isinstance(getattr(self, name), bool):
                raise _FieldError(name, f"must be true or false, got {getattr(self, name)!r}")

    @property
    def ref(self) -> str:
        """The model reference strategies and config use: ``"provider/name"``."""
        return f"{self.provider}/{self.name}"

    @property
    def cached_input_price(self) -> float | None:
        """Effective cache-read price: ``cached_input``, else the input price."""
        return self.input if self.cached_input is None else self.cached_input

    @property
    def cache_write_price(self) -> float | None:
        """Effective cache-write price: ``cache_write``, else the input price."""
        return self.input if self.cache_write is None else self.cache_write

    @property
    def priced(self) -> bool:
        """True when a call without cache traffic can be priced: input and output
        known (input alone for an embedding model, which has no output tokens)."""
        return self.input is not None and (self.output is not None or self.embedding)


def compute_cost(spec: ModelSpec, usage: Usage) -> float | None:
    """Dollar cost of one call with ``usage`` on ``spec``; ``None`` when not computable.

    ``usage.reported_cost_usd`` wins when set (OpenRouter bills and reports it itself,
    including its own fees and discounts, which no list price reproduces). Otherwise::

        uncached = input_tokens - cached_input_tokens - cache_write_tokens
        cost = (uncached × input + cached × cached_input
                + cache_writes × cache_write + output_tokens × output) / 1e6

    ``Usage.input_tokens`` is the whole prompt, cache reads and writes included, so
    they are subtracted once to get the uncached part. When a provider reports cache
    counts that exceed the prompt (seen with proxies that drop fields), ``uncached``
    is clamped to 0 and the cache counts are trusted: we never bill negative tokens.
    Negative counters are treated as 0.

    Only prices that are actually needed must be known: a call with no cache traffic
    can be priced with just ``input`` and ``output``. This free function does not log;
    :meth:`Catalog.cost` adds the once-per-model warning.
    """
    if usage.reported_cost_usd is not None:
        return float(usage.reported_cost_usd)
    cached = max(0, usage.cached_input_tokens)
    writes = max(0, usage.cache_write_tokens)
    uncached = max(0, usage.input_tokens - cached - writes)
    output = max(0, usage.output_tokens)
    parts: list[float] = []
    for tokens, price in (
        (uncached, spec.input),
        (cached, spec.cached_input_price),
        (writes, spec.cache_write_price),
        (output, spec.output),
    ):
        if tokens:
            if price is None:
                return None
            parts.append(tokens * price)
    return math.fsum(parts) / _PER_TOKENS


class UnknownModelError(KeyError):
    """``catalog[key]`` found no single model. ``suggestions`` lists close matches.

    A ``KeyError`` subclass so ``except KeyError`` keeps working, with a readable
    ``str()`` (plain ``KeyError`` would print the message as a quoted repr).
    """

    def __init__(self, key: str, message: str, suggestions: tuple[str, ...] = ()) -> None:
        super().__init__(key)
        self.key = key
        self.message = message
        self.suggestions = suggestions

    def __str__(self) -> str:
        return self.message


_DEFAULT: Catalog | None = None
_DEFAULT_LOCK = threading.Lock()


class Catalog:
    """An immutable, indexed set of :class:`ModelSpec` rows.

    Build one from specs (``Catalog([ModelSpec(...), ...])``), from config rows
    (:meth:`from_mapping`), from a TOML file (:meth:`from_toml`) or start from the
    built-in table (:meth:`default`). Each catalog remembers which models it has
    already warned about, so a missing price is logged once, not once per request.
    """

    __slots__ = ("_by_ref", "_levels", "_providers", "_warn_lock", "_warned", "as_of", "sources")

    _by_ref: dict[str, ModelSpec]
    _levels: tuple[dict[str, list[ModelSpec]], ...]
    _providers: frozenset[str]
    _warned: set[str]
    _warn_lock: threading.Lock
    as_of: str | None
    sources: Mapping[str, str]

    def __init__(
        self,
        specs: Iterable[ModelSpec] = (),
        *,
        as_of: str | None = None,
        sources: Mapping[str, str] | None = None,
    ) -> None:
        by_ref: dict[str, ModelSpec] = {}
        for spec in specs:
            if not isinstance(spec, ModelSpec):
                raise TypeError(f"Catalog takes ModelSpec rows, got {type(spec).__name__}")
            key = spec.ref.casefold()
            if key in by_ref:
                raise ValueError(f"duplicate model {spec.ref!r} in catalog")
            by_ref[key] = spec
        init = object.__setattr__  # __setattr__ below refuses changes after construction
        init(self, "_by_ref", by_ref)
        # name, wire model, alias: one index per precedence level.
        levels: tuple[dict[str, list[ModelSpec]], ...] = ({}, {}, {})
        for spec in by_ref.values():
            for level, keys in zip(levels, ((spec.name,), (spec.model,), spec.aliases), strict=True):
                for k in keys:
                    bucket = level.setdefault(k.casefold(), [])
                    if spec not in bucket:
                        bucket.append(spec)
        init(self, "_levels", levels)
        init(self, "_providers", frozenset(s.provider.casefold() for s in by_ref.values()))
        init(self, "_warned", set())
        init(self, "_warn_lock", threading.Lock())
        init(self, "as_of", as_of)
        init(self, "sources", MappingProxyType(dict(sources or {})))

    def __setattr__(self, name: str, value: object) -> None:
        # The default catalog is shared process-wide: mutating it would leak one
        # deployment's prices into another. Derive a new catalog instead.
        raise AttributeError(f"Catalog is immutable (cannot set {name!r}); use override()/with_overrides()")

    # ── construction ─────────────────────────────────────────────────────

    @classmethod
    def default(cls) -> Catalog:
        """The built-in table from ``tierwise/data/prices.toml``, parsed on first use.

        Cached for the process: safe because a catalog never changes. Callers who want
        different prices derive a new catalog from it; the cached one stays intact.
        """
        global _DEFAULT
        if _DEFAULT is None:
            with _DEFAULT_LOCK:
                if _DEFAULT is None:
                    _DEFAULT = cls._load_builtin()
        return _DEFAULT

    @classmethod
    def _load_builtin(cls) -> Catalog:
        import tomllib

        document = tomllib.loads(_read_builtin_text())
        return cls._from_document(document, origin="tierwise/data/prices.toml")

    @classmethod
    def from_toml(cls, path: str | os.PathLike[str]) -> Catalog:
        """Load a catalog file with the same layout as the built-in one.

        Top-level ``as_of`` and ``[sources]`` are optional; rows live under
        ``[models."<name>"]``. Errors raise :class:`~tierwise.errors.ConfigError`
        naming the field (``models.my-model.input``).
        """
        import tomllib
        from pathlib import Path

        file = Path(path)
        try:
            document = tomllib.loads(file.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"invalid TOML in {file}: {exc}") from None
        return cls._from_document(document, origin=str(file))

    @classmethod
    def _from_document(cls, document: Mapping[str, Any], *, origin: str) -> Catalog:
        models = document.get("models", {})
        if not isinstance(models, Mapping):
            raise ConfigError(f"must be a table of model rows (in {origin})", field="models")
        as_of = document.get("as_of")
        if as_of is not None and not isinstance(as_of, str):
            as_of = str(as_of)  # TOML may give a bare date; keep it as text
        sources = document.get("sources") or {}
        if not isinstance(sources, Mapping):
            raise ConfigError("must be a table of provider = URL", field="sources")
        return cls.from_mapping(models, as_of=as_of, sources={str(k): str(v) for k, v in sources.items()})

    @classmethod
    def from_mapping(
        cls,
        rows: Mapping[str, Mapping[str, Any]],
        *,
        as_of: str | None = None,
        sources: Mapping[str, str] | None = None,
        field_prefix: str = "models",
    ) -> Catalog:
        """Build a catalog from config-style rows: ``{name: {"provider": ..., "input": ...}}``.

        The key is the model name unless the row sets ``name``. Any problem raises
        :class:`~tierwise.errors.ConfigError` whose ``field`` is the full path
        (``models.x.input``), so a user can find the line in their config.
        """
        if not isinstance(rows, Mapping):
            raise ConfigError("must be a mapping of model name to row", field=field_prefix)
        specs = [_spec_from_row(key, row, f"{field_prefix}.{key}") for key, row in rows.items()]
        seen: dict[str, str] = {}
        for key, spec in zip(rows, specs, strict=True):
            ref = spec.ref.casefold()
            if ref in seen:
                raise ConfigError(
                    f"duplicate model {spec.ref!r} (also defined by {field_prefix}.{seen[ref]})",
                    field=f"{field_prefix}.{key}",
                )
            seen[ref] = key
        return cls(specs, as_of=as_of, sources=sources)

    # ── derivation (always a new catalog) ────────────────────────────────

    def _derive(self, specs: Iterable[ModelSpec]) -> Catalog:
        return Catalog(specs, as_of=self.as_of, sources=self.sources)

    def add(self, spec: ModelSpec) -> Catalog:
        """A new catalog with ``spec`` added, replacing a row with the same reference."""
        if not isinstance(spec, ModelSpec):
            raise TypeError(f"add() takes a ModelSpec, got {type(spec).__name__}")
        ref = spec.ref.casefold()
        rows = [s for k, s in self._by_ref.items() if k != ref]
        rows.append(spec)
        return self._derive(rows)

    def override(self, key: str, /, **fields: Any) -> Catalog:
        """A new catalog where the model ``key`` has ``fields`` replaced.

        ``catalog.override("gpt-5.5", input=5.0, output=30.0)``. Only the named fields
        change: an explicit ``cached_input`` is not rescaled when ``input`` is (use
        :meth:`scaled` for proportional discounts). Raises
        :class:`UnknownModelError` for an unknown key and
        :class:`~tierwise.errors.ConfigError` for a bad field or value.
        """
        return self.with_overrides({key: fields})

    def with_overrides(self, overrides: Mapping[str, Mapping[str, Any] | ModelSpec]) -> Catalog:
        """A new catalog with several rows patched or added at once (deployment config).

        Each key is looked up like :meth:`get`. For a known model the row's fields
        replace the existing ones; an unknown key whose row names a ``provider`` adds
        a new model (so one config section can both reprice and extend the table);
        a :class:`ModelSpec` value replaces or adds that spec as is.
        """
        replaced: dict[str, ModelSpec] = dict(self._by_ref)
        for key, row in overrides.items():
            path = f"models.{key}"
            if isinstance(row, ModelSpec):
                existing = self.get(key)
                if existing is not None:
                    replaced.pop(existing.ref.casefold(), None)
                replaced[row.ref.casefold()] = row
                continue
            if not isinstance(row, Mapping):
                raise ConfigError(f"must be a table of fields, got {type(row).__name__}", field=path)
            provider = row.get("provider")
            existing = self.get(key, provider=provider if isinstance(provider, str) else None)
            if existing is None:
                if "provider" not in row:
                    raise self._unknown(key)
                spec = _spec_from_row(key, row, path)
                replaced[spec.ref.casefold()] = spec
                continue
            _check_field_names(row, path)
            # An earlier key in this call may already have patched the same model.
            current = replaced.pop(existing.ref.casefold(), existing)
            try:
                spec = dataclasses.replace(current, **row)
            except _FieldError as exc:
                raise ConfigError(exc.message, field=f"{path}.{exc.field}") from None
            replaced[spec.ref.casefold()] = spec
        return self._derive(replaced.values())

    def scaled(self, multiplier: float, providers: Iterable[str] | str | None = None) -> Catalog:
        """A new catalog with every known price multiplied by ``multiplier``.

        For a gateway or a negotiated contract that charges a flat fraction of list
        price (``scaled(0.8)`` = 20% less). ``providers`` limits it to those
        providers' rows. Unknown (``None``) prices stay unknown.
        """
        if isinstance(multiplier, bool) or not isinstance(multiplier, int | float):
            raise TypeError(f"multiplier must be a number, got {multiplier!r}")
        if not math.isfinite(multiplier) or multiplier < 0:
            raise ValueError(f"multiplier must be a finite number >= 0, got {multiplier!r}")
        wanted: frozenset[str] | None
        if providers is None:
            wanted = None
        else:
            names = [providers] if isinstance(providers, str) else list(providers)
            wanted = frozenset(p.casefold() for p in names)
            unknown = sorted(p for p in wanted if p not in self._providers)
            if unknown:
                have = ", ".join(sorted(self._providers))
                raise ValueError(f"unknown provider(s) {', '.join(unknown)}; catalog has {have}")
        rows = []
        for spec in self._by_ref.values():
            if wanted is None or spec.provider.casefold() in wanted:
                prices: dict[str, Any] = {
                    f: (None if getattr(spec, f) is None else getattr(spec, f) * multiplier)
                    for f in _PRICE_FIELDS
                }
                spec = dataclasses.replace(spec, **prices)
            rows.append(spec)
        return self._derive(rows)

    # ── lookup ───────────────────────────────────────────────────────────

    def _candidates(self, key: str, provider: str | None) -> list[ModelSpec]:
        """Matches at the first level that has any: [ref] → name → model → alias,
        then the same levels for ``"provider/rest"`` keys restricted to that provider."""
        folded = key.strip().casefold()
        prov = provider.casefold() if provider else None
        spec = self._by_ref.get(folded)
        if spec is not None and (prov is None or spec.provider.casefold() == prov):
            return [spec]
        for level in self._levels:
            found = [s for s in level.get(folded, ()) if prov is None or s.provider.casefold() == prov]
            if found:
                return found
        head, sep, rest = folded.partition("/")
        if sep and rest and head in self._providers and (prov is None or prov == head):
            return self._candidates(rest, head)
        return []

    def get(
        self, key: str, default: ModelSpec | None = None, *, provider: str | None = None
    ) -> ModelSpec | None:
        """The model for ``key`` (ref, name, wire name or alias), or ``default``.

        ``provider`` restricts the search, e.g. ``get(resp.model, provider=resp.provider)``
        after a call. An ambiguous key (several models match) also gives ``default``.
        """
        found = self._candidates(key, provider)
        return found[0] if len(found) == 1 else default

    def spec_for(self, model: str, *, provider: str, **overrides: Any) -> ModelSpec | None:
        """The spec for one deployment: wire ``model`` served by ``provider``, with
        ``overrides`` (prices, limits) applied; ``None`` when nothing is known.

        Lookup prefers the provider's own row and falls back to any single row for the
        model, so a gateway or OpenAI-compatible proxy serving ``gpt-4o`` starts from
        OpenAI's list price (deployments that pay less use overrides or
        :meth:`scaled`). The result carries the deployment's ``provider`` and ``model``.
        A model the catalog does not know gets a fresh spec when overrides give it
        something to know (e.g. prices from config); otherwise ``None``.
        """
        path = f"models.{model}"
        _check_field_names(overrides, path)
        base = self.get(model, provider=provider) or self.get(model)
        try:
            if base is None:
                if not overrides:
                    return None
                return ModelSpec(model, provider, model=model, **overrides)
            if not overrides and base.provider == provider and base.model == model:
                return base  # frozen and already validated: share it (the common case)
            return dataclasses.replace(base, provider=provider, model=model, **overrides)
        except _FieldError as exc:
            raise ConfigError(exc.message, field=f"{path}.{exc.field}") from None

    def __getitem__(self, key: str) -> ModelSpec:
        spec = self.get(key)
        if spec is None:
            raise self._unknown(key)
        return spec

    def _unknown(self, key: str) -> UnknownModelError:
        found = self._candidates(key, None) if isinstance(key, str) else []
        if len(found) > 1:
            refs = ", ".join(sorted(s.ref for s in found))
            message = f"model {key!r} is ambiguous: it matches {refs}; use one of these refs"
            return UnknownModelError(key, message, tuple(sorted(s.ref for s in found)))
        from .errors import close_matches

        suggestions = tuple(close_matches(str(key).casefold(), sorted(self._all_keys()), n=3))
        hint = f"; did you mean {' or '.join(repr(s) for s in suggestions)}?" if suggestions else ""
        where = f" (catalog as of {self.as_of})" if self.as_of else ""
        return UnknownModelError(key, f"unknown model {key!r}{where}{hint}", suggestions)

    def _all_keys(self) -> set[str]:
        keys = set(self._by_ref)
        for level in self._levels:
            keys.update(level)
        return keys

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.get(key) is not None

    def __iter__(self) -> Iterator[ModelSpec]:
        return iter(self._by_ref.values())

    def __len__(self) -> int:
        return len(self._by_ref)

    def __repr__(self) -> str:
        when = f", as_of={self.as_of!r}" if self.as_of else ""
        return f"<Catalog {len(self)} models{when}>"

    @property
    def providers(self) -> frozenset[str]:
        """Provider names present in the table (lower-cased)."""
        return self._providers

    # ── cost ─────────────────────────────────────────────────────────────

    def cost(self, model_key: str, usage: Usage, *, provider: str | None = None) -> float | None:
        """Dollar cost of ``usage`` on the model ``model_key``; ``None`` when unknown.

        A provider-reported cost (``usage.reported_cost_usd``) wins even for a model
        the catalog does not know, which is what makes OpenRouter's long tail of
        models work without rows. Otherwise see :func:`compute_cost`. When the model
        is unknown or a needed price is missing, one warning per (catalog, model) is
        logged on ``"tierwise.catalog"`` and ``None`` is returned.
        """
        if usage.reported_cost_usd is not None:
            return float(usage.reported_cost_usd)
        spec = self.get(model_key, provider=provider)
        if spec is None:
            self._warn_once(
                f"?{provider or ''}/{model_key}",
                "no catalog entry for model %r%s: its cost is reported as unknown (None); "
                "add it with Catalog.add()/with_overrides() or a [models] config row",
                model_key,
                f" (provider {provider!r})" if provider else "",
            )
            return None
        result = compute_cost(spec, usage)
        if result is None:
            missing = [f for f in _PRICE_FIELDS if getattr(spec, f) is None]
            self._warn_once(
                spec.ref,
                "model %s has no price for %s: its cost is reported as unknown (None)",
                spec.ref,
                ", ".join(missing),
            )
        return result

    def _warn_once(self, key: str, message: str, *args: object) -> None:
        with self._warn_lock:
            if key in self._warned:
                return
            self._warned.add(key)
        logger.warning(message, *args)
