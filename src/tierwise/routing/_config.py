"""Config tables → ``KeywordClassifier`` arguments, with field-path errors.

Kept apart from ``keyword.py`` so the classifier reads as the rules it applies;
this module is only about turning TOML/dict input into those arguments and
saying exactly which field is wrong when it cannot (``ConfigError.field`` is
``strategies.smart.rules.complex.keywords[2]``, not "invalid config").
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ._matcher import parse_term

__all__ = [
    "DIFFICULTY_KEYS",
    "OPTION_KEYS",
    "OUTCOME_KEYS",
    "classifier_kwargs",
    "difficulty_classifier",
    "outcome_classifier",
]

OPTION_KEYS = (
    "base",
    "rules",
    "extra_keywords",
    "default_label",
    "long_prompt_words",
    "long_label",
    "task_types",
    "json_label",
    "include_system",
    "engine",
)
_RULE_KEYS = ("keywords", "priority", "match", "score")
OUTCOME_KEYS = (
    "model",
    "cost_weight",
    "strong_share",
    "cost_per_request",
    "strong",
    "embedder",
    "embed_timeout_s",
)

DIFFICULTY_KEYS = ("model", "thresholds", "below")


def _keywords(value: Any, field: str, match: str) -> list[str]:
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise ConfigError("expected a list of keyword strings", field=field)
    if not value:
        raise ConfigError("needs at least one keyword", field=field)
    for i, kw in enumerate(value):
        try:
            parse_term(kw, match)  # type: ignore[arg-type]
        except (TypeError, ValueError) as exc:
            raise ConfigError(str(exc), field=f"{field}[{i}]") from None
    return list(value)


def _label(value: Any, field: str) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError("expected a non-empty label string", field=field)
    return value


def _rule(label: str, spec: Any, base: Any, field: str) -> Any:
    from .keyword import Rule

    opts: Mapping[str, Any]
    if isinstance(spec, Mapping):
        for key in spec:
            if key not in _RULE_KEYS:
                raise ConfigError(
                    f"unknown key {key!r}; expected one of {', '.join(_RULE_KEYS)}", field=f"{field}.{key}"
                )
        if "keywords" not in spec:
            raise ConfigError("missing 'keywords'", field=f"{field}.keywords")
        opts, raw, kw_field = spec, spec["keywords"], f"{field}.keywords"
    else:
        opts, raw, kw_field = {}, spec, field
    match = opts.get("match", base.match if base is not None else "word")
    if match not in ("word", "prefix", "substring"):
        raise ConfigError("expected 'word', 'prefix' or 'substring'", field=f"{field}.match")
    keywords = _keywords(raw, kw_field, match)
    priority = opts.get("priority", base.priority if base is not None else 0)
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise ConfigError("expected an integer", field=f"{field}.priority")
    score = opts.get("score", base.score if base is not None else 0.8)
    if isinstance(score, bool) or not isinstance(score, int | float) or not 0.0 <= score <= 1.0:
        raise ConfigError("expected a number within 0..1", field=f"{field}.score")
    return Rule(label, keywords, priority=priority, match=match, score=float(score))


def classifier_kwargs(mapping: Mapping[str, Any], where: str) -> dict[str, Any]:
    """Validate a keyword-classifier table; return ``KeywordClassifier`` kwargs."""
    from .keyword import Rule, default_rules

    if not isinstance(mapping, Mapping):
        raise ConfigError("expected a table", field=where)
    for key in mapping:
        if key not in OPTION_KEYS:
            raise ConfigError(
                f"unknown key {key!r}; expected one of {', '.join(OPTION_KEYS)}", field=f"{where}.{key}"
            )

    base = mapping.get("base", "default")
    if base not in ("default", "none"):
        raise ConfigError("expected 'default' or 'none'", field=f"{where}.base")
    rules: dict[str, Rule] = {r.label: r for r in default_rules()} if base == "default" else {}

    raw_rules = mapping.get("rules", {})
    if not isinstance(raw_rules, Mapping):
        raise ConfigError("expected a table of label = [keywords]", field=f"{where}.rules")
    for label, spec in raw_rules.items():
        field = f"{where}.rules.{label}"
        _label(label, field)
        rules[label] = _rule(label, spec, rules.get(label), field)

    extra = mapping.get("extra_keywords", {})
    if not isinstance(extra, Mapping):
        raise ConfigError("expected a table of label = [keywords]", field=f"{where}.extra_keywords")
    for label, raw in extra.items():
        field = f"{where}.extra_keywords.{label}"
        rule = rules.get(label)
        if rule is None:
            raise ConfigError(
                f"no rule labelled {label!r} to extend; rules: {', '.join(rules) or 'none'}", field=field
            )
        rules[label] = replace(rule, keywords=(*rule.keywords, *_keywords(raw, field, rule.match)))

    kwargs: dict[str, Any] = {"rules": list(rules.values())}
    for key in ("default_label", "long_label"):
        if key in mapping:
            kwargs[key] = _label(mapping[key], f"{where}.{key}")
    if "long_prompt_words" in mapping:
        words = mapping["long_prompt_words"]
        if words is False:
            kwargs["long_prompt_words"] = None
        elif isinstance(words, bool) or not isinstance(words, int) or words < 1:
            raise ConfigError(
                "expected a positive integer, or false to disable", field=f"{where}.long_prompt_words"
            )
        else:
            kwargs["long_prompt_words"] = words
    if "json_label" in mapping:
        label = mapping["json_label"]
        kwargs["json_label"] = None if label is False else _label(label, f"{where}.json_label")
    if "task_types" in mapping:
        table = mapping["task_types"]
        if not isinstance(table, Mapping):
            raise ConfigError("expected a table of task_type = label", field=f"{where}.task_types")
        kwargs["task_types"] = {
            _label(k, f"{where}.task_types"): _label(v, f"{where}.task_types.{k}") for k, v in table.items()
        }
    if "include_system" in mapping:
        if not isinstance(mapping["include_system"], bool):
            raise ConfigError("expected true or false", field=f"{where}.include_system")
        kwargs["include_system"] = mapping["include_system"]
    if "engine" in mapping:
        if mapping["engine"] not in ("auto", "rust", "re"):
            raise ConfigError("expected 'auto', 'rust' or 're'", field=f"{where}.engine")
        kwargs["engine"] = mapping["engine"]
    return kwargs


def _number(params: Mapping[str, Any], key: str, where: str) -> float | None:
    value = params.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError("expected a number", field=f"{where}.{key}")
    return float(value)


def outcome_classifier(
    params: Mapping[str, Any], *, where: str, target: Callable[[Any, str], Any]
) -> tuple[Any, str]:
    """``classifier = "outcome"`` in a router table → ``(OutcomeClassifier, default label)``.

    The model file is read here, at config time, so a missing or damaged file is a
    ``ConfigError`` naming ``{where}.model`` before any request is served. The
    default label is the model's cheapest choice. ``embedder`` must be a model
    alias (checked with ``target``, like a route), called through the router's
    executor.
    """
    path = params.get("model")
    if not isinstance(path, str) or not path:
        raise ConfigError(
            'expected the path of a trained router (model = "router.json")', field=f"{where}.model"
        )
    try:
        from .learned import OutcomeModel

        model = OutcomeModel.load(Path(path).expanduser())
    except ImportError as exc:
        raise ConfigError(str(exc), field=f"{where}.model") from None
    except FileNotFoundError:
        raise ConfigError(f"no such file: {path}", field=f"{where}.model") from None
    except (OSError, ValueError) as exc:  # json errors are ValueErrors
        raise ConfigError(f"cannot load {path}: {exc}", field=f"{where}.model") from None
    targets = {k: _number(params, k, where) for k in ("cost_weight", "strong_share", "cost_per_request")}
    given = [k for k, v in targets.items() if v is not None]
    if len(given) != 1:
        raise ConfigError(
            "give exactly one of cost_weight, strong_share or cost_per_request"
            + (f" (got {', '.join(given)})" if given else ""),
            field=f"{where}.{given[1] if len(given) > 1 else 'strong_share'}",
        )
    strong = params.get("strong")
    if strong is not None and strong not in model.models:
        raise ConfigError(
            f"{strong!r} is not a model of {path}: {', '.join(model.models)}", field=f"{where}.strong"
        )
    embed_model = params.get("embedder")
    if embed_model is not None:
        if not isinstance(embed_model, str) or not isinstance(target(embed_model, f"{where}.embedder"), str):
            raise ConfigError("expected a model alias", field=f"{where}.embedder")
        if model.embedding_dim is None:
            raise ConfigError(f"{path} was trained without embeddings", field=f"{where}.embedder")
    timeout = _number(params, "embed_timeout_s", where)
    if timeout is not None and not timeout > 0:
        raise ConfigError("expected a number of seconds > 0", field=f"{where}.embed_timeout_s")
    try:
        clf = model.as_classifier(
            targets["cost_weight"],
            strong_share=targets["strong_share"],
            cost_per_request=targets["cost_per_request"],
            strong=strong,
            embed_model=embed_model,
            embed_timeout_s=2.0 if timeout is None else timeout,
        )
    except ValueError as exc:
        raise ConfigError(str(exc), field=f"{where}.{given[0]}") from None
    cheapest = min(model.models, key=lambda m: (model.expected_cost[m], m))
    return clf, cheapest


def difficulty_classifier(params: Mapping[str, Any], *, where: str) -> Any:
    """``classifier = "difficulty"`` in a router table → a ``DifficultyClassifier``.

    ``model`` (optional): a difficulty model file of your own; without it the
    pretrained one. ``thresholds = { complex = 0.5, standard = 0.3 }`` (label →
    lowest difficulty) and ``below = "bulk"`` relabel it. Read and checked here, at
    config time, so a bad file or threshold is a ``ConfigError`` naming its field.
    """
    from .difficulty import DifficultyClassifier

    thresholds = params.get("thresholds")
    if thresholds is not None:
        if not isinstance(thresholds, Mapping) or not thresholds:
            raise ConfigError("expected a table of label = difficulty (0..1)", field=f"{where}.thresholds")
        for label, cut in thresholds.items():
            if isinstance(cut, bool) or not isinstance(cut, int | float) or not 0.0 <= cut <= 1.0:
                raise ConfigError("expected a number within 0..1", field=f"{where}.thresholds.{label}")
    below = params.get("below")
    if below is not None:
        below = _label(below, f"{where}.below")
    path = params.get("model")
    if path is None:
        clf = DifficultyClassifier.pretrained()
    elif not isinstance(path, str) or not path:
        raise ConfigError("expected the path of a difficulty model file", field=f"{where}.model")
    else:
        try:
            clf = DifficultyClassifier.load(Path(path).expanduser())
        except FileNotFoundError:
            raise ConfigError(f"no such file: {path}", field=f"{where}.model") from None
        except (OSError, ValueError) as exc:  # json errors are ValueErrors
            raise ConfigError(f"cannot load {path}: {exc}", field=f"{where}.model") from None
    if thresholds is None and below is None:
        return clf
    try:
        return clf.with_thresholds(dict(clf.thresholds) if thresholds is None else thresholds, below=below)
    except ValueError as exc:  # two labels with one threshold, or below is also a threshold label
        raise ConfigError(
            str(exc), field=f"{where}.{'below' if 'below' in str(exc) else 'thresholds'}"
        ) from None
