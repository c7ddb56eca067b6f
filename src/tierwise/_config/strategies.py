"""``[strategies.NAME]`` tables: one pydantic model per ``type``, in an open registry.

A table is validated by the model its ``type`` names: a built-in name
(``STRATEGIES``: single, router, cascade, ensemble, pipeline; extend it with
``register_strategy``) or ``"pkg.module:Class"`` for an application's own
Strategy subclass. Validation constructs nothing: targets stay as written (a
model alias, a strategy name, or an inline table, itself validated) and are
checked against the config afterwards (``_refs.py``); ``build`` turns a validated
table into the strategy.

Called through a strategy's ``from_config(name, params, where=, target=)`` (code
building one table on its own), the same model validates with ``target``
in its validation context and resolves each target where it is found, so
errors come in the order the table is read.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, TypeAlias

from pydantic import (
    BaseModel,
    ConfigDict,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    WrapValidator,
    model_validator,
)

from ..errors import ConfigError
from ._errors import FieldError, FieldErrors, bare_message, config_error, relative

if TYPE_CHECKING:
    from typing import Self

    from ..strategies.base import Strategy, Target

__all__ = [
    "STRATEGIES",
    "Ref",
    "Resolver",
    "StrategyModel",
    "StrategyTable",
    "import_object",
    "register_strategy",
    "strategy_model",
]

#: A class (spelled so, since the models have a field named ``type``).
AnyClass: TypeAlias = type[Any]
#: ``target(value, field_path)``: a model alias or strategy name → the call target.
Resolver: TypeAlias = Callable[[Any, str], "Target"]
#: One reference found in a validated table: (value as written, path relative to
#: the table, what it must name: ``"target"`` (alias or strategy) or ``"alias"``).
Ref: TypeAlias = tuple[Any, str, str]


def import_object(path: Any, what: str) -> Any:
    """``"package.module:name"`` → the object; ``FieldError`` (relative ``""``) if not."""
    text = path if isinstance(path, str) else ""
    module_name, sep, attr = text.partition(":")
    if not sep or not module_name or not attr:
        raise FieldError("", f"expected 'package.module:{what}', got {path!r:.60}", relative=True)
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise FieldError("", f"cannot import {text!r}: {exc}", relative=True) from None
    return obj


class StrategyModel(BaseModel):
    """Base of a strategy table's model.

    Subclasses validate the table's raw keys in a ``mode="before"`` validator
    (``_table`` below gives it the context) and declare the normalized fields;
    ``refs`` lists every target for the cross-reference checks and ``build``
    constructs the strategy.
    """

    model_config = ConfigDict(frozen=True, extra="ignore", defer_build=True, arbitrary_types_allowed=True)

    #: The keys a table of this type takes besides ``type`` (the reference docs list
    #: them; a router's classifier adds its own options). Empty: any key (your own class).
    KEYS: ClassVar[tuple[str, ...]] = ()

    type: str
    #: Targets were resolved during validation (``from_config`` with a resolver).
    _resolved: bool = PrivateAttr(default=False)

    def refs(self) -> Iterator[Ref]:
        return iter(())

    def build(self, name: str, *, where: str, target: Resolver, cls: AnyClass | None = None) -> Strategy:
        raise NotImplementedError

    def resolved(self, value: Any, field: str, where: str, resolve: Resolver) -> Any:
        """A target of this table as a call target (resolved now unless it was during validation)."""
        return value if self._resolved else resolve(value, f"{where}.{field}")

    @classmethod
    def parse(cls, params: Mapping[str, Any], *, where: str, target: Resolver | None = None) -> Self:
        """Validate one table on its own; ``ConfigError`` paths start at ``where``."""
        try:
            model = cls.model_validate(params, context={"where": where, "target": target})
        except ValidationError as exc:
            raise config_error(cls, exc.errors(), prefix=where) from None
        model._resolved = target is not None
        return model

    @staticmethod
    def parse_inline(value: Mapping[str, Any], *, where: str) -> StrategyModel:
        """Validate an inline table met while building (a user's own ``from_config``)."""
        try:
            return _validate_table(value, {})
        except FieldError as exc:
            if exc.field == "type":
                raise ConfigError(_inline_type_message(), field=f"{where}.type") from None
            raise ConfigError(exc.message, field=".".join(p for p in (where, exc.field) if p)) from None
        except ValidationError as exc:
            raise config_error(StrategyModel, exc.errors(), prefix=where) from None


#: ``type`` name → the model validating that table. Extend with ``register_strategy``.
STRATEGIES: dict[str, type[StrategyModel]] = {}


def register_strategy(name: str, model: type[StrategyModel]) -> None:
    """Make ``type = name`` mean ``model`` in every config loaded from now on."""
    if not name or ":" in name:
        raise ValueError(f"a strategy type name is a plain word, got {name!r}")
    STRATEGIES[name] = model


def _builtins() -> None:
    if "single" not in STRATEGIES:
        from . import _tables

        for name, model in _tables.BUILTIN.items():
            STRATEGIES.setdefault(name, model)


def strategy_model(kind: Any) -> type[StrategyModel]:
    """The model for ``type = kind``; ``FieldError`` (at ``type``) when there is none."""
    _builtins()
    if isinstance(kind, str) and kind in STRATEGIES:
        return STRATEGIES[kind]
    if isinstance(kind, str) and ":" in kind:
        return CustomStrategy
    from ..errors import did_you_mean

    hint = did_you_mean(kind, STRATEGIES) if isinstance(kind, str) else ""
    raise FieldError(
        "type",
        f"unknown strategy type {kind!r:.60}"
        + (f" ({hint})" if hint else "")
        + "; expected one of "
        + ", ".join(repr(k) for k in STRATEGIES)
        + ", or 'pkg.module:Class' for your own Strategy subclass",
        relative=True,
    )


def _validate_table(value: Any, context: Any) -> StrategyModel:
    if not isinstance(value, Mapping):
        raise FieldError("", f"expected a table with type = ..., got {type(value).__name__}", relative=True)
    if "type" not in value:
        raise FieldError("type", "required field is missing", relative=True)
    return strategy_model(value["type"]).model_validate(value, context=context)


def _dispatch(value: Any, handler: Any, info: ValidationInfo) -> StrategyModel:
    if isinstance(value, StrategyModel):
        return value
    return _validate_table(value, info.context)


#: A ``[strategies.NAME]`` table, validated by the model its ``type`` names.
StrategyTable = Annotated[Any, WrapValidator(_dispatch)]


# ---------------------------------------------------------------------- inside a table


class _Table:
    """What a table validator needs: relative paths and the optional resolver."""

    def __init__(self, info: ValidationInfo) -> None:
        ctx = info.context or {}
        self.where: str = ctx.get("where") or ""
        self.resolve: Resolver | None = ctx.get("target")
        self.context = ctx

    def ref(self, value: Any, field: str) -> Any:
        """A target written at ``field``: resolved now when a resolver was given,
        else kept as written (an inline table is validated here)."""
        if self.resolve is not None:
            try:
                return self.resolve(value, f"{self.where}.{field}" if self.where else field)
            except ConfigError as exc:
                raise FieldError(exc.field or "", bare_message(exc)) from None
        if isinstance(value, str):
            return value
        if isinstance(value, Mapping) and "type" in value:
            try:
                return _validate_table(value, {})
            except FieldError as exc:
                if exc.field == "type":
                    raise FieldError(f"{field}.type", _inline_type_message(), relative=True) from None
                raise FieldError(".".join(p for p in (field, exc.field) if p), exc.message, True) from None
            except ValidationError as exc:
                problems = config_error(StrategyModel, exc.errors()).problems
                raise FieldErrors(
                    [FieldError(f"{field}.{f}" if f else field, m, relative=True) for f, m in problems]
                ) from None
        raise FieldError(
            field,
            "must be a string (a model alias or a strategy name) or an inline strategy table, "
            f"got {type(value).__name__}",
            relative=True,
        )


def _inline_type_message() -> str:
    return f"inline strategy type must be one of {', '.join(STRATEGIES)} (or 'pkg.module:Class')"


def checked(check: Callable[[], Any]) -> Any:
    """Run a hand check written against ``where=""`` paths; its ``ConfigError``
    becomes a path relative to the table."""
    try:
        return check()
    except ConfigError as exc:
        raise relative(exc) from None


# ---------------------------------------------------------------------- your own class


class CustomStrategy(StrategyModel):
    """``type = "pkg.module:Class"``: an application's own Strategy subclass.

    A class with a ``from_config(name, params, *, where, target)`` classmethod (the
    built-in strategies' signature, so a subclass of ``Router`` reads a router's
    table) gets the table's other keys as ``params`` and resolves its targets with
    ``target``; any other class is called with them as keyword arguments (plus
    ``name=`` when it accepts one), checked against its signature at load time.
    """

    params: dict[str, Any]
    _cls: Any = PrivateAttr(default=None)

    @model_validator(mode="before")
    @classmethod
    def _split(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and "params" not in data:
            return {"type": data.get("type"), "params": {k: v for k, v in data.items() if k != "type"}}
        return data

    @model_validator(mode="after")
    def _importable(self) -> CustomStrategy:
        from ..strategies.base import Strategy

        try:
            found = import_object(self.type, "Class")
        except FieldError as exc:
            raise FieldError("type", exc.message, relative=True) from None
        if not (isinstance(found, type) and issubclass(found, Strategy)):
            raise FieldError("type", f"{self.type!r} is not a Strategy subclass", relative=True)
        if not _has_from_config(found):
            try:
                inspect.signature(found).bind_partial(**self.params)
            except TypeError as exc:
                raise FieldError("", f"{self.type}: {exc}", relative=True) from None
        self._cls = found
        return self

    def build(self, name: str, *, where: str, target: Resolver, cls: AnyClass | None = None) -> Strategy:
        found = self._cls
        if _has_from_config(found):
            return found.from_config(name, self.params, where=where, target=target)  # type: ignore[no-any-return]
        kwargs = dict(self.params)
        if "name" in inspect.signature(found).parameters:
            kwargs.setdefault("name", name)
        return found(**kwargs)  # type: ignore[no-any-return]


def table_for(cls: type[Any]) -> type[StrategyModel]:
    """The table a Strategy class reads in ``Strategy.from_config``: the one
    registered for its ``kind`` (a subclass of a built-in inherits its parent's)."""
    _builtins()
    model = STRATEGIES.get(getattr(cls, "kind", None))  # type: ignore[arg-type]
    if model is None:
        raise ConfigError(
            f"{cls.__name__} (kind {getattr(cls, 'kind', None)!r}) has no config table: "
            "register one with register_strategy, or override from_config"
        )
    return model


def _has_from_config(cls: type[Any]) -> bool:
    """The class reads a table itself: it overrides ``Strategy.from_config``, or
    inherits it together with a registered ``kind`` (a subclass of ``Router``)."""
    from ..strategies.base import Strategy

    own = getattr(cls, "from_config", None)
    if not callable(own):
        return False
    if getattr(own, "__func__", None) is not Strategy.from_config.__func__:  # type: ignore[attr-defined]
        return True
    _builtins()
    return getattr(cls, "kind", None) in STRATEGIES
