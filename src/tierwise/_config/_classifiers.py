"""A router's classifier, from the options flat in its table: an open registry.

``classifier = "keyword"`` (the default), ``"outcome"`` (a trained router file),
``"difficulty"`` (the pretrained cold-start difficulty model, or your own file),
a name added with ``register_classifier``, or ``"pkg.module:Class"`` for an
application's own ``Classifier``. Each kind's table model validates its options
once, at load time, and ``build`` constructs the classifier.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from ..errors import ConfigError
from ..routing._config import DIFFICULTY_KEYS, OPTION_KEYS, OUTCOME_KEYS
from ._errors import FieldError, relative
from .strategies import Ref, Resolver, _Table, import_object

if TYPE_CHECKING:
    from ..routing.base import Classifier

__all__ = ["CLASSIFIERS", "ClassifierTable", "classifier_model", "register_classifier"]


class ClassifierTable:
    """Base of a classifier kind's options model (validated by ``from_table``)."""

    #: The option keys this kind reads from the router table (None: any key).
    OPTIONS: ClassVar[tuple[str, ...] | None] = ()

    def __init__(self, kind: str, options: Mapping[str, Any]) -> None:
        self.kind = kind
        self.options = dict(options)
        self.kwargs: dict[str, Any] = {}  # keyword: the classifier's arguments
        self.classifier: Any = None  # outcome: the classifier the model file gives
        self.cheapest = ""
        self.cls: Any = None  # your own: the imported class
        self._refs: list[Ref] = []

    @classmethod
    def option_keys(cls, kind: str) -> tuple[str, ...] | None:
        return cls.OPTIONS

    @classmethod
    def from_table(cls, kind: str, options: Mapping[str, Any], table: _Table) -> ClassifierTable:
        return cls(kind, options)

    def default_label(self) -> str | None:
        return None

    def required_labels(self) -> tuple[str, ...]:
        """Labels the classifier can choose that must each have a route."""
        return ()

    def refs(self) -> Iterator[Ref]:
        return iter(())

    def build(self, *, where: str, target: Resolver, resolved: bool) -> Classifier:
        raise NotImplementedError

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ClassifierTable) and (type(other), other.kind, other.options) == (
            type(self),
            self.kind,
            self.options,
        )

    __hash__ = None  # type: ignore[assignment]


class KeywordTable(ClassifierTable):
    """``classifier = "keyword"``: see ``KeywordClassifier.from_config``."""

    OPTIONS = OPTION_KEYS

    @classmethod
    def from_table(cls, kind: str, options: Mapping[str, Any], table: _Table) -> ClassifierTable:
        self = cls(kind, options)
        self.kwargs = keyword_kwargs(options, table.where if table.resolve is not None else "")
        return self

    def default_label(self) -> str | None:
        return str(self.kwargs.get("default_label", "standard"))

    def build(self, *, where: str, target: Resolver, resolved: bool) -> Classifier:
        from ..routing.keyword import KeywordClassifier

        return KeywordClassifier(**self.kwargs)


def keyword_kwargs(options: Mapping[str, Any], where: str) -> dict[str, Any]:
    """``KeywordClassifier`` arguments from a table; paths relative unless ``where``."""
    from ..routing._config import classifier_kwargs

    try:
        return classifier_kwargs(options, where)
    except ConfigError as exc:
        if where:
            from ._errors import bare_message

            raise FieldError(exc.field or "", bare_message(exc)) from None
        raise relative(exc) from None


class OutcomeTable(ClassifierTable):
    """``classifier = "outcome"``: a trained ``OutcomeModel`` file and its targets.

    The file is read at load time (a missing or damaged file names ``model``);
    the classifier it gives is kept for ``build``.
    """

    OPTIONS = OUTCOME_KEYS

    @classmethod
    def from_table(cls, kind: str, options: Mapping[str, Any], table: _Table) -> ClassifierTable:
        from ..routing._config import outcome_classifier

        self = cls(kind, options)

        def alias(value: Any, field: str) -> Any:
            if table.resolve is not None:
                return table.ref(value, field.removeprefix(f"{table.where}."))
            self._refs.append((value, field.lstrip("."), "alias"))
            return value

        where = table.where if table.resolve is not None else ""
        try:
            self.classifier, self.cheapest = outcome_classifier(options, where=where, target=alias)
        except ConfigError as exc:
            raise _located(exc, where) from None
        return self

    def default_label(self) -> str | None:
        return str(self.cheapest)

    def required_labels(self) -> tuple[str, ...]:
        return tuple(getattr(self.classifier, "labels", ()))

    def refs(self) -> Iterator[Ref]:
        return iter(self._refs)

    def build(self, *, where: str, target: Resolver, resolved: bool) -> Classifier:
        return self.classifier  # type: ignore[no-any-return]


class DifficultyTable(ClassifierTable):
    """``classifier = "difficulty"``: ``DifficultyClassifier.pretrained()`` (or ``model = "file.json"``),
    labels by ``thresholds`` / ``below``; built at load time so a bad option names its field."""

    OPTIONS = DIFFICULTY_KEYS

    @classmethod
    def from_table(cls, kind: str, options: Mapping[str, Any], table: _Table) -> ClassifierTable:
        from ..routing._config import difficulty_classifier

        self = cls(kind, options)
        where = table.where if table.resolve is not None else ""
        try:
            self.classifier = difficulty_classifier(options, where=where)
        except ConfigError as exc:
            raise _located(exc, where) from None
        return self

    def default_label(self) -> str | None:
        return str(self.classifier.default_label)

    def build(self, *, where: str, target: Resolver, resolved: bool) -> Classifier:
        return self.classifier  # type: ignore[no-any-return]


class CustomClassifierTable(ClassifierTable):
    """``classifier = "pkg.module:Class"``: the router table's other keys go to
    ``Class.from_config(options, where=...)`` when it has one, else to ``Class(**options)``."""

    OPTIONS = None

    @classmethod
    def from_table(cls, kind: str, options: Mapping[str, Any], table: _Table) -> ClassifierTable:
        from ..routing.base import Classifier

        self = cls(kind, options)
        try:
            found = import_object(kind, "Class")
        except FieldError as exc:
            raise FieldError("classifier", exc.message, relative=True) from None
        if not (isinstance(found, type) and issubclass(found, Classifier)):
            raise FieldError("classifier", f"{kind!r} is not a Classifier (no classify method)", True)
        if not callable(getattr(found, "from_config", None)):
            try:
                inspect.signature(found).bind(**options)
            except TypeError as exc:
                raise FieldError("", f"{kind}: {exc}", relative=True) from None
        self.cls = found
        return self

    def default_label(self) -> str | None:
        label = getattr(self.cls, "default_label", None)
        return label if isinstance(label, str) else None

    def build(self, *, where: str, target: Resolver, resolved: bool) -> Classifier:
        if callable(getattr(self.cls, "from_config", None)):
            return self.cls.from_config(self.options, where=where)  # type: ignore[no-any-return]
        return self.cls(**self.options)  # type: ignore[no-any-return]


#: ``classifier = name`` → its table model. Extend with ``register_classifier``.
CLASSIFIERS: dict[str, type[ClassifierTable]] = {
    "keyword": KeywordTable,
    "outcome": OutcomeTable,
    "difficulty": DifficultyTable,
}


def register_classifier(name: str, model: type[ClassifierTable]) -> None:
    """Make ``classifier = name`` in a router table mean ``model``."""
    if not name or ":" in name:
        raise ValueError(f"a classifier name is a plain word, got {name!r}")
    CLASSIFIERS[name] = model


def classifier_model(kind: Any) -> type[ClassifierTable]:
    if isinstance(kind, str) and kind in CLASSIFIERS:
        return CLASSIFIERS[kind]
    if isinstance(kind, str) and ":" in kind:
        return CustomClassifierTable
    available = ", ".join(repr(k) for k in CLASSIFIERS)
    raise FieldError(
        "classifier",
        f"unknown classifier {kind!r}; available: {available} (or 'pkg.module:Class' for your own)",
        relative=True,
    )


def _located(exc: ConfigError, where: str) -> Exception:
    """A classifier built at load time failed: its field, relative to the table
    being validated (``where`` set: the builder named the full path already)."""
    if where:
        from ._errors import bare_message

        return FieldError(exc.field or "", bare_message(exc))
    return relative(exc)
