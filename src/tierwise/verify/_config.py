"""Verifiers from config: ``accept = ["finish_reason", "json", {judge = {target = "opus"}}]``.

Config speaks in names and small tables so a TOML file can say what a cascade
accepts without code. Every mistake raises ``ConfigError`` with the exact field
path (``strategies.cheap_first.accept[2].judge.threshold``), because "invalid
verifier" without a location is useless in a 200-line config.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeAlias

from ..errors import ConfigError
from .base import AllOf, AnyOf, Check, Not, Verifier
from .checks import FinishedNormally, MatchesSchema, MinLength, NoRefusal, ValidJSON
from .graded import Judge, SelfConfidence

if TYPE_CHECKING:
    from ..strategies.base import Target

__all__ = ["VERIFIER_NAMES", "TargetResolver", "from_config"]

#: Resolves a config value (a model alias or strategy name) to a call target;
#: raises ``ConfigError`` for the given field path when it names nothing.
TargetResolver: TypeAlias = Callable[[Any, str], "Target"]

_FINISH_REASONS = ("stop", "length", "tool_calls", "content_filter", "error")


def _fail(field: str, message: str) -> ConfigError:
    return ConfigError(message, field=field)


def _table(value: Any, field: str, allowed: Sequence[str]) -> Mapping[str, Any]:
    if value is True:  # {json = true}: the verifier with its defaults
        return {}
    if not isinstance(value, Mapping):
        raise _fail(field, f"expected a table of parameters ({', '.join(allowed)}), got {value!r:.60}")
    for key in value:
        if key not in allowed:
            raise _fail(f"{field}.{key}", f"unknown parameter; expected one of: {', '.join(allowed)}")
    return value


def _number(value: Any, field: str, lo: float | None = None, hi: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _fail(field, f"must be a number, got {value!r:.40}")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        bounds = f"between {lo:g} and {hi:g}" if lo is not None and hi is not None else f">= {lo:g}"
        raise _fail(field, f"must be {bounds}, got {value}")
    return float(value)


def _int(value: Any, field: str, lo: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(field, f"must be an integer, got {value!r:.40}")
    if value < lo:
        raise _fail(field, f"must be >= {lo}, got {value}")
    return value


def _str(value: Any, field: str) -> str:
    if not isinstance(value, str) or not value:
        raise _fail(field, f"must be a non-empty string, got {value!r:.40}")
    return value


def _import(path: Any, field: str) -> Any:
    """``"package.module:name"`` → the object."""
    text = _str(path, field)
    module_name, sep, attr = text.partition(":")
    if not sep or not module_name or not attr:
        raise _fail(field, f"expected 'package.module:name', got {text!r}")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise _fail(field, f"cannot import {text!r}: {exc}") from None
    return obj


def _finish_reason(v: Any, f: str, target: TargetResolver) -> Verifier:
    p = _table(v, f, ("allowed",))
    if "allowed" not in p:
        return FinishedNormally()
    allowed = p["allowed"]
    if not isinstance(allowed, list) or not allowed:
        raise _fail(f"{f}.allowed", "must be a non-empty list of finish reasons")
    for i, reason in enumerate(allowed):
        if reason not in _FINISH_REASONS:
            raise _fail(f"{f}.allowed[{i}]", f"must be one of {', '.join(_FINISH_REASONS)}, got {reason!r}")
    return FinishedNormally(allowed)


def _json(v: Any, f: str, target: TargetResolver) -> Verifier:
    p = _table(v, f, ("allow_scalars",))
    allow = p.get("allow_scalars", False)
    if not isinstance(allow, bool):
        raise _fail(f"{f}.allow_scalars", "must be true or false")
    return ValidJSON(allow_scalars=allow)


def _matches_schema(v: Any, f: str, target: TargetResolver) -> Verifier:
    schema = _import(v, f) if isinstance(v, str) else v
    if not isinstance(v, str | Mapping):
        raise _fail(f, "expected a JSON Schema table or 'package.module:Model'")
    try:
        return MatchesSchema(schema)
    except Exception as exc:  # a bad schema: jsonschema.SchemaError, ValueError, pydantic errors
        raise _fail(f, f"invalid schema: {exc}") from None


def _min_length(v: Any, f: str, target: TargetResolver) -> Verifier:
    p = _table(v, f, ("chars", "ratio", "min_prompt_words"))
    chars = _int(p["chars"], f"{f}.chars") if "chars" in p else None
    ratio = _number(p["ratio"], f"{f}.ratio", 0.0) if "ratio" in p else None
    words = _int(p["min_prompt_words"], f"{f}.min_prompt_words") if "min_prompt_words" in p else 30
    return MinLength(chars=chars, ratio=ratio, min_prompt_words=words)


def _no_refusal(v: Any, f: str, target: TargetResolver) -> Verifier:
    p = _table(v, f, ("patterns", "within"))
    patterns = None
    if "patterns" in p:
        patterns = p["patterns"]
        if not isinstance(patterns, list) or not patterns:
            raise _fail(f"{f}.patterns", "must be a non-empty list of phrases")
        for i, phrase in enumerate(patterns):
            _str(phrase, f"{f}.patterns[{i}]")
    within = _int(p["within"], f"{f}.within") if "within" in p else 300
    return NoRefusal(patterns, within=within or None)


def _graded_common(p: Mapping[str, Any], f: str, default: float) -> tuple[float, int | None]:
    threshold = _number(p["threshold"], f"{f}.threshold", 0.0, 1.0) if "threshold" in p else default
    max_tokens = _int(p["max_tokens"], f"{f}.max_tokens", 1) if "max_tokens" in p else None
    return threshold, max_tokens


def _confidence(v: Any, f: str, target: TargetResolver) -> Verifier:
    p = _table(v, f, ("threshold", "target", "scale", "max_tokens"))
    threshold, max_tokens = _graded_common(p, f, 0.8)
    who = target(p["target"], f"{f}.target") if "target" in p else None
    scale = p.get("scale", 10)
    if scale not in (1, 10) or isinstance(scale, bool):
        raise _fail(f"{f}.scale", f"must be 1 or 10, got {scale!r}")
    return SelfConfidence(threshold, who, scale=scale, max_tokens=max_tokens)


def _judge(v: Any, f: str, target: TargetResolver) -> Verifier:
    p = _table(v, f, ("target", "threshold", "rubric", "max_tokens"))
    if "target" not in p:
        raise _fail(f"{f}.target", 'judge needs target = "<model alias or strategy>"')
    threshold, max_tokens = _graded_common(p, f, 0.7)
    rubric = _str(p["rubric"], f"{f}.rubric") if "rubric" in p else None
    return Judge(target(p["target"], f"{f}.target"), threshold, rubric, max_tokens=max_tokens)


def _check(v: Any, f: str, target: TargetResolver) -> Verifier:
    if isinstance(v, str):
        fn, threshold, field = _import(v, f), 0.5, f
    else:
        p = _table(v, f, ("fn", "threshold"))
        if "fn" not in p:
            raise _fail(f"{f}.fn", 'check needs fn = "package.module:function"')
        fn, field = _import(p["fn"], f"{f}.fn"), f"{f}.fn"
        threshold = _number(p["threshold"], f"{f}.threshold", 0.0, 1.0) if "threshold" in p else 0.5
    if isinstance(fn, Verifier):
        return fn
    if not callable(fn):
        raise _fail(field, f"{fn!r:.60} is not callable")
    return Check(fn, threshold=threshold)


def _learned(v: Any, f: str, target: TargetResolver) -> Verifier:
    from .learned import MAX_COST_EXPONENT, LearnedVerifier

    keys = ("model", "threshold", "cost_exponent")
    p: Mapping[str, Any] = {"model": v} if isinstance(v, str) else _table(v, f, keys)
    if "model" not in p:
        raise _fail(f"{f}.model", 'learned needs model = "<verifier.json written by LearnedVerifier.save>"')
    path = _str(p["model"], f"{f}.model")
    threshold = _number(p["threshold"], f"{f}.threshold", 0.0, 1.0) if "threshold" in p else None
    exponent = (
        _number(p["cost_exponent"], f"{f}.cost_exponent", 0.0, MAX_COST_EXPONENT)
        if "cost_exponent" in p
        else None
    )
    try:
        return LearnedVerifier.load(path, threshold=threshold, cost_exponent=exponent)
    except FileNotFoundError:
        raise _fail(f"{f}.model", f"verifier file not found: {path}") from None
    except (OSError, ValueError) as exc:
        raise _fail(f"{f}.model", f"cannot load learned verifier {path!r}: {exc}") from None


def _group(kind: str) -> Callable[[Any, str, TargetResolver], Verifier]:
    def build(v: Any, f: str, target: TargetResolver) -> Verifier:
        if not isinstance(v, list) or not v:
            raise _fail(f, f"{kind} needs a non-empty list of verifiers")
        parts = [from_config(item, f"{f}[{i}]", target) for i, item in enumerate(v)]
        return AllOf(*parts) if kind == "all" else AnyOf(*parts)

    return build


def _not(v: Any, f: str, target: TargetResolver) -> Verifier:
    return Not(from_config(v, f, target))


_BUILDERS: dict[str, Callable[[Any, str, TargetResolver], Verifier]] = {
    "finish_reason": _finish_reason,
    "json": _json,
    "schema": _matches_schema,
    "min_length": _min_length,
    "no_refusal": _no_refusal,
    "confidence": _confidence,
    "judge": _judge,
    "check": _check,
    "learned": _learned,
    "all": _group("all"),
    "any": _group("any"),
    "not": _not,
}
#: Names usable in ``accept = [...]``.
VERIFIER_NAMES: tuple[str, ...] = tuple(_BUILDERS)


def from_config(spec: Any, where: str, target: TargetResolver) -> Verifier:
    """Build a verifier from its config form.

    ``spec`` is a name (``"json"``: defaults), a one-key table
    (``{min_length = {ratio = 0.5}}``, ``{judge = {target = "opus", threshold = 0.7}}``,
    ``{schema = {type = "object", ...}}`` or ``{schema = "pkg.models:Answer"}``,
    ``{check = "pkg.checks:fn"}``,
    ``{learned = {model = "verifier.json", threshold = 0.6}}``, ``{any = [...]}``,
    ``{not = "json"}``), or a list of specs, all of which must accept (AND, in order, short-circuiting).
    ``where`` is the field path of ``spec``; list items are ``where[i]``.
    ``target(value, field)`` resolves model aliases and strategy names.
    Raises ``ConfigError`` naming the offending field.
    """
    if isinstance(spec, list):
        if not spec:
            raise _fail(where, "needs at least one verifier")
        parts = [from_config(item, f"{where}[{i}]", target) for i, item in enumerate(spec)]
        return parts[0] if len(parts) == 1 else AllOf(*parts)
    if isinstance(spec, str):
        name, value = spec, True
    elif isinstance(spec, Mapping) and len(spec) == 1:
        name, value = next(iter(spec.items()))
    else:
        raise _fail(
            where, f"a verifier is a name or a one-key table like {{judge = {{...}}}}, got {spec!r:.60}"
        )
    builder = _BUILDERS.get(name)
    if builder is None:
        raise _fail(where, f"unknown verifier {name!r}; expected one of: {', '.join(VERIFIER_NAMES)}")
    if isinstance(spec, str) and name in ("schema", "judge", "check", "learned", "all", "any", "not"):
        raise _fail(where, f"verifier {name!r} needs parameters: {{{name} = ...}}")
    return builder(value, f"{where}.{name}" if isinstance(spec, Mapping) else where, target)
