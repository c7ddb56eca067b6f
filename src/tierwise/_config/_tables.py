"""The built-in strategy tables: single, router, cascade, ensemble, pipeline.

Each model's ``mode="before"`` validator reads the raw table in the order the
strategy's ``from_config`` always did (so the first error reported is the same)
and keeps the normalized values; ``build`` only constructs. Paths in errors are
relative to the table (``routes.complex``, ``steps[1].prompt``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field, ValidationInfo, model_validator

from ..errors import ConfigError, did_you_mean
from . import _shadow_table
from ._errors import FieldError
from .strategies import AnyClass, Ref, Resolver, StrategyModel, _Table, checked

if TYPE_CHECKING:
    from ..strategies.base import Strategy

__all__ = ["BUILTIN", "CascadeTable", "EnsembleTable", "PipelineTable", "RouterTable", "SingleTable"]


def _unknown_key(key: str, allowed: tuple[str, ...]) -> str:
    hint = did_you_mean(key, allowed)
    return f"unknown field {key!r}" + (f" ({hint})" if hint else f"; expected some of: {', '.join(allowed)}")


class SingleTable(StrategyModel):
    """``type = "single"`` with ``target = "<model alias or strategy>"``."""

    KEYS: ClassVar[tuple[str, ...]] = ("target",)

    target: Any

    @model_validator(mode="before")
    @classmethod
    def _check(cls, data: Any, info: ValidationInfo) -> Any:
        t = _Table(info)
        for key in data:
            if key != "type" and key not in cls.KEYS:
                hint = " (did you mean 'target'?)" if key.startswith("target") else ""
                raise FieldError(key, f"unknown field {key!r}{hint}; single takes only 'target'", True)
        if "target" not in data:
            raise FieldError("target", 'single strategy needs target = "<model alias>"', True)
        return {"type": "single", "target": t.ref(data["target"], "target")}

    def refs(self) -> Iterator[Ref]:
        yield (self.target, "target", "target")

    def build(self, name: str, *, where: str, target: Resolver, cls: AnyClass | None = None) -> Strategy:
        from ..strategies.single import Single

        return (cls or Single)(self.resolved(self.target, "target", where, target), name=name)


_ROUTER_KEYS = ("type", "routes", "default", "long_context", "sticky", "sticky_size", "classifier")


class RouterTable(StrategyModel):
    """``type = "router"``.

    ``routes = {label = "alias or strategy"}`` (each resolved by ``target(value,
    field_path)``), ``default`` (a route label; defaults to the classifier's
    default label when that is a route), ``long_context`` (a route label),
    ``sticky``, ``sticky_size``, and the classifier: ``classifier = "keyword"``
    (the default) with the keyword classifier's options flat in the same table
    (``rules``, ``extra_keywords``, ``base``, ``long_prompt_words``, … — see
    ``KeywordClassifier.from_config``), or ``classifier = "outcome"`` with a
    trained ``OutcomeModel`` (``model = "router.json"``, one of
    ``strong_share``/``cost_per_request``/``cost_weight``, optional ``strong``,
    ``embedder`` (a model alias) and ``embed_timeout_s``; its labels are model
    names, each of which needs a route; ``default`` defaults to the cheapest), or
    ``classifier = "difficulty"`` (the pretrained difficulty model; optional
    ``thresholds = {label = lowest difficulty}``, ``below`` and ``model``; a label
    without a route goes to ``default``, which defaults to ``standard``).
    """

    KEYS: ClassVar[tuple[str, ...]] = _ROUTER_KEYS[1:]

    classifier: Any  # a validated ClassifierModel
    routes: dict[str, Any]
    default: str
    long_context: str | None = None
    sticky: bool = False
    sticky_size: int = 10_000

    @model_validator(mode="before")
    @classmethod
    def _check(cls, data: Any, info: ValidationInfo) -> Any:
        from ._classifiers import classifier_model

        t = _Table(info)
        kind = data.get("classifier", "keyword")
        model = classifier_model(kind)
        options = model.option_keys(kind)
        for key in data:
            if key not in _ROUTER_KEYS and (options is not None and key not in options):
                raise FieldError(
                    key,
                    f"unknown key {key!r} for a router with classifier = {kind!r}; expected some of "
                    f"{', '.join((*_ROUTER_KEYS, *(options or ())))}",
                    True,
                )
        classifier = model.from_table(kind, {k: v for k, v in data.items() if k not in _ROUTER_KEYS}, t)
        default_label = classifier.default_label()

        raw_routes = data.get("routes")
        if not isinstance(raw_routes, Mapping) or not raw_routes:
            raise FieldError("routes", "expected a table of label = target", True)
        routes: dict[str, Any] = {}
        for label, value in raw_routes.items():
            if not isinstance(label, str) or not label:
                raise FieldError("routes", "route labels must be non-empty strings", True)
            routes[label] = t.ref(value, f"routes.{label}")

        def route_label(key: str, value: Any) -> str:
            if not isinstance(value, str) or value not in routes:
                raise FieldError(key, f"{value!r} is not a route; routes: {', '.join(routes)}", True)
            return value

        missing = [m for m in classifier.required_labels() if m not in routes]
        if missing:
            raise FieldError(
                "routes",
                f"no route for {', '.join(map(repr, missing))}: the outcome model can choose "
                f"{'it' if len(missing) == 1 else 'them'}; routes: {', '.join(routes)}",
                True,
            )
        if "default" in data:
            default = route_label("default", data["default"])
        elif default_label in routes:
            default = default_label
        else:
            raise FieldError(
                "default", f"missing; no route is labelled {default_label!r} to default to", True
            )
        long_context = data.get("long_context")
        if long_context is not None:
            long_context = route_label("long_context", long_context)
        sticky = data.get("sticky", False)
        if not isinstance(sticky, bool):
            raise FieldError("sticky", "expected true or false", True)
        sticky_size = data.get("sticky_size", 10_000)
        if isinstance(sticky_size, bool) or not isinstance(sticky_size, int) or sticky_size < 1:
            raise FieldError("sticky_size", "expected a positive integer", True)
        return {
            "type": "router",
            "classifier": classifier,
            "routes": routes,
            "default": default,
            "long_context": long_context,
            "sticky": sticky,
            "sticky_size": sticky_size,
        }

    def refs(self) -> Iterator[Ref]:
        for label, value in self.routes.items():
            yield (value, f"routes.{label}", "target")
        yield from self.classifier.refs()

    def build(self, name: str, *, where: str, target: Resolver, cls: AnyClass | None = None) -> Strategy:
        from ..strategies.router import Router

        routes = {k: self.resolved(v, f"routes.{k}", where, target) for k, v in self.routes.items()}
        return (cls or Router)(
            self.classifier.build(where=where, target=target, resolved=self._resolved),
            routes,
            self.default,
            name=name,
            long_context=self.long_context,
            sticky=self.sticky,
            sticky_size=self.sticky_size,
        )


class CascadeTable(StrategyModel):
    """Build from ``[strategies.NAME]`` parameters::

        type = "cascade"
        targets = ["haiku", "sonnet", "opus"]        # aliases or strategy names
        accept = ["finish_reason", "json", {min_length = {ratio = 0.5}},
                  {judge = {target = "opus", threshold = 0.7}}]   # all must pass
        # accept_any = [...]                          # or: any may pass
        verify_last = true

    ``target(value, field)`` resolves aliases and strategy names; every error is
    a ``ConfigError`` naming its field (``{where}.accept[2]``).
    """

    KEYS: ClassVar[tuple[str, ...]] = ("targets", "accept", "accept_any", "verify_last")

    targets: list[Any]
    accept: Any  # the verifier spec as written, or the built verifier when resolved
    any_of: bool = False
    verify_last: bool = True
    verifier_refs: list[Any] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _check(cls, data: Any, info: ValidationInfo) -> Any:
        from ..verify import AnyOf, Verifier
        from ..verify import from_config as verifier_from_config

        t = _Table(info)
        allowed = ("type", *cls.KEYS)
        for key in data:
            if key not in allowed:
                raise FieldError(
                    key, f"unknown cascade parameter {key!r}; expected: {', '.join(allowed[1:])}", True
                )
        raw = data.get("targets")
        if not isinstance(raw, list) or not raw:
            raise FieldError(
                "targets",
                'cascade needs targets = ["<cheap>", ..., "<strong>"] (model aliases or strategy names)',
                True,
            )
        targets = [t.ref(value, f"targets[{i}]") for i, value in enumerate(raw)]
        if "accept" in data and "accept_any" in data:
            raise FieldError("accept_any", "give accept (all must pass) or accept_any, not both", True)
        refs: list[Any] = []

        def record(value: Any, field: str) -> Any:
            if t.resolve is not None:
                return t.ref(value, field.removeprefix(f"{t.where}."))
            ref = t.ref(value, field)
            refs.append((ref, field, "target"))
            return ref

        where = f"{t.where}." if t.resolve is not None and t.where else ""
        key = "accept_any" if "accept_any" in data else "accept"
        if key not in data:
            raise FieldError(
                "accept", 'cascade needs accept = [...] (e.g. ["finish_reason", "no_refusal"])', True
            )
        spec = data[key]
        if key == "accept_any" and (not isinstance(spec, list) or not spec):
            raise FieldError("accept_any", "must be a non-empty list of verifiers", True)

        def verifier() -> Verifier:
            if key == "accept_any":
                return AnyOf(
                    *(
                        verifier_from_config(item, f"{where}accept_any[{i}]", record)
                        for i, item in enumerate(spec)
                    )
                )
            return verifier_from_config(spec, f"{where}accept", record)

        built = _absolute(verifier) if where else checked(verifier)
        verify_last = data.get("verify_last", True)
        if not isinstance(verify_last, bool):
            raise FieldError("verify_last", "must be true or false", True)
        return {
            "type": "cascade",
            "targets": targets,
            "accept": built if t.resolve is not None else spec,
            "any_of": key == "accept_any",
            "verify_last": verify_last,
            "verifier_refs": refs,
        }

    def refs(self) -> Iterator[Ref]:
        for i, value in enumerate(self.targets):
            yield (value, f"targets[{i}]", "target")
        yield from self.verifier_refs

    def build(self, name: str, *, where: str, target: Resolver, cls: AnyClass | None = None) -> Strategy:
        from ..strategies.cascade import Cascade
        from ..verify import AnyOf
        from ..verify import from_config as verifier_from_config

        targets = [self.resolved(v, f"targets[{i}]", where, target) for i, v in enumerate(self.targets)]
        verifier = self.accept
        if not self._resolved:
            if self.any_of:
                field = f"{where}.accept_any"
                verifier = AnyOf(
                    *(verifier_from_config(s, f"{field}[{i}]", target) for i, s in enumerate(self.accept))
                )
            else:
                verifier = verifier_from_config(self.accept, f"{where}.accept", target)
        return (cls or Cascade)(targets, verifier, name=name, verify_last=self.verify_last)


def _absolute(check: Any) -> Any:
    try:
        return check()
    except ConfigError as exc:
        from ._errors import bare_message

        raise FieldError(exc.field or "", bare_message(exc)) from None


class EnsembleTable(StrategyModel):
    """Build from a ``[strategies.NAME]`` table::

        type = "ensemble"
        targets = ["sonnet", "gpt55", "gemini"]
        aggregate = "vote"          # "vote" | "judge" | "fastest" | "first_valid"
        judge = "opus"              # aggregate = "judge" only
        rubric = "..."              # aggregate = "judge" only (optional)
        quorum = 2                  # gather-all only (optional)

    ``target(value, field_path)`` resolves a model alias or strategy name and
    raises ``ConfigError`` naming ``field_path``; every other mistake raises
    ``ConfigError`` naming its field too (``strategies.vote.quorum``).
    """

    KEYS: ClassVar[tuple[str, ...]] = ("targets", "aggregate", "judge", "rubric", "quorum")

    targets: list[Any]
    aggregate: str = "vote"
    judge: Any = None
    rubric: str | None = None
    quorum: int | None = None

    @model_validator(mode="before")
    @classmethod
    def _check(cls, data: Any, info: ValidationInfo) -> Any:
        from ..strategies.aggregate import AGGREGATE_NAMES, as_aggregator

        t = _Table(info)
        allowed = cls.KEYS
        for key in data:
            if key != "type" and key not in allowed:
                raise FieldError(str(key), _unknown_key(str(key), allowed), True)
        raw_targets = data.get("targets")
        if not isinstance(raw_targets, list) or not raw_targets:
            raise FieldError(
                "targets", 'needs a non-empty list of targets, e.g. targets = ["sonnet", "gpt55"]', True
            )
        targets = [t.ref(v, f"targets[{i}]") for i, v in enumerate(raw_targets)]
        agg_name = data.get("aggregate", "vote")
        if agg_name not in AGGREGATE_NAMES:
            raise FieldError(
                "aggregate",
                f"must be one of {', '.join(repr(a) for a in AGGREGATE_NAMES)}, got {agg_name!r}",
                True,
            )
        judge = rubric = None
        if agg_name == "judge":
            if "judge" not in data:
                raise FieldError("judge", 'aggregate = "judge" needs judge = "<model alias>"', True)
            rubric = data.get("rubric")
            if rubric is not None and not isinstance(rubric, str):
                raise FieldError("rubric", f"must be a string, got {type(rubric).__name__}", True)
            judge = t.ref(data["judge"], "judge")
        else:
            for key in ("judge", "rubric"):
                if key in data:
                    raise FieldError(key, f'only used with aggregate = "judge" (this is {agg_name!r})', True)
        quorum = data.get("quorum")
        if quorum is not None and (isinstance(quorum, bool) or not isinstance(quorum, int)):
            raise FieldError("quorum", f"must be an integer, got {quorum!r}", True)
        n = len(targets)
        if quorum is not None and not 1 <= quorum <= n:
            raise FieldError(
                "quorum", f"quorum must be an int from 1 to {n} (the number of targets), got {quorum!r}", True
            )
        aggregator = as_aggregator("vote" if agg_name == "judge" else agg_name)
        if quorum is not None and aggregator.mode == "race" and quorum != 1:
            raise FieldError(
                "quorum",
                f"quorum={quorum} does not apply to {aggregator.kind!r}: "
                "a race answers with the first valid member",
                True,
            )
        return {
            "type": "ensemble",
            "targets": targets,
            "aggregate": agg_name,
            "judge": judge,
            "rubric": rubric,
            "quorum": quorum,
        }

    def refs(self) -> Iterator[Ref]:
        for i, value in enumerate(self.targets):
            yield (value, f"targets[{i}]", "target")
        if self.judge is not None:
            yield (self.judge, "judge", "target")

    def build(self, name: str, *, where: str, target: Resolver, cls: AnyClass | None = None) -> Strategy:
        from ..strategies.aggregate import JudgePick, as_aggregator
        from ..strategies.ensemble import Ensemble

        targets = [self.resolved(v, f"targets[{i}]", where, target) for i, v in enumerate(self.targets)]
        aggregator = (
            JudgePick(self.resolved(self.judge, "judge", where, target), self.rubric)
            if self.aggregate == "judge"
            else as_aggregator(self.aggregate)
        )
        return (cls or Ensemble)(targets, aggregator, quorum=self.quorum, name=name)


class PipelineTable(StrategyModel):
    """Build from a ``[strategies.NAME]`` table::

        type = "pipeline"
        steps = [
          {name = "decompose", target = "deepseek", prompt = "Sub-questions as a JSON list: {input}"},
          {name = "research", target = "sonnet", prompt = "Research: {item}", fan_out = "decompose",
           concurrency = 4},
          {name = "synthesize", target = "opus", prompt = "{input}\n\nFindings:\n{research}"},
        ]

    Step keys: ``name``, ``target``, ``prompt`` (required), ``fan_out``,
    ``concurrency``, ``join``, ``system``, ``params``, ``on_item_error``. Every
    mistake raises ``ConfigError`` naming its field
    (``strategies.research.steps[1].prmpt``); ``target(value, field_path)``
    resolves model aliases and strategy names.
    """

    KEYS: ClassVar[tuple[str, ...]] = ("steps",)

    steps: list[dict[str, Any]]

    @model_validator(mode="before")
    @classmethod
    def _check(cls, data: Any, info: ValidationInfo) -> Any:
        from ..strategies.pipeline import _STEP_KEYS, Step

        t = _Table(info)
        for key in data:
            if key != "type" and key not in cls.KEYS:
                raise FieldError(str(key), _unknown_key(str(key), cls.KEYS), True)
        raw = data.get("steps")
        if not isinstance(raw, list) or not raw:
            raise FieldError("steps", "needs a non-empty list of step tables", True)
        steps: list[dict[str, Any]] = []
        built: list[Any] = []
        for i, table in enumerate(raw):
            at = f"steps[{i}]"
            if not isinstance(table, Mapping):
                raise FieldError(at, f"must be a table with name, target and prompt, got {table!r}", True)
            for key in table:
                if key not in _STEP_KEYS:
                    raise FieldError(f"{at}.{key}", _unknown_key(str(key), _STEP_KEYS), True)
            for key in ("name", "target", "prompt"):
                if key not in table:
                    raise FieldError(f"{at}.{key}", "is required", True)
            step = {**table, "target": t.ref(table["target"], f"{at}.target")}
            kwargs = {k: v for k, v in step.items() if k not in ("name", "target", "prompt")}
            placeholder = step["target"] if isinstance(step["target"], str) or t.resolve else "inline"
            try:
                built.append(Step(step["name"], placeholder, step["prompt"], **kwargs))
            except ConfigError as exc:
                raise FieldError(f"{at}.{exc.field}" if exc.field else at, _bare(exc), True) from None
            steps.append(step)
        _check_steps(built)
        return {"type": "pipeline", "steps": steps}

    def refs(self) -> Iterator[Ref]:
        for i, step in enumerate(self.steps):
            yield (step["target"], f"steps[{i}].target", "target")

    def build(self, name: str, *, where: str, target: Resolver, cls: AnyClass | None = None) -> Strategy:
        from ..strategies.pipeline import Pipeline, Step

        steps = []
        for i, step in enumerate(self.steps):
            resolved = self.resolved(step["target"], f"steps[{i}].target", where, target)
            kwargs = {k: v for k, v in step.items() if k not in ("name", "target", "prompt")}
            steps.append(Step(step["name"], resolved, step["prompt"], **kwargs))
        return (cls or Pipeline)(steps, name=name)


def _bare(exc: ConfigError) -> str:
    from ._errors import bare_message

    return bare_message(exc)


def _check_steps(steps: list[Any]) -> None:
    """The pipeline's own rules (``strategies.pipeline.check_steps``), reported at
    the table's paths: no Pipeline is constructed."""
    from ..strategies.pipeline import check_steps

    try:
        check_steps(steps)
    except ConfigError as exc:
        raise FieldError(exc.field or "", _bare(exc), True) from None


BUILTIN: dict[str, type[StrategyModel]] = {
    "single": SingleTable,
    "router": RouterTable,
    "cascade": CascadeTable,
    "ensemble": EnsembleTable,
    "pipeline": PipelineTable,
    "shadow": _shadow_table.ShadowTable,
}
