"""``tierwise rules``: the keyword rules a config's routers actually apply.

Tuning the keywords is the first customization people try, and with ``base``,
``rules``, ``extra_keywords`` and priorities layered on the defaults the result
is not obvious from the file. This prints what the built classifier holds: the
hint order, each rule in the order it is tried, the long-prompt upgrade and the
default, for every router with a keyword classifier (nested ones included).
Nothing is called and no file is opened besides the config.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["cmd_rules", "describe_classifier"]


def describe_classifier(classifier: Any) -> dict[str, Any]:
    """A ``KeywordClassifier``'s effective configuration, as plain data."""
    return {
        "hints": [
            "metadata tier=LABEL",
            *(
                [f"metadata json_output / response_format json → {classifier.json_label}"]
                if classifier.json_label
                else []
            ),
            "metadata task_type (see task_types)",
        ],
        "rules": [
            {
                "label": rule.label,
                "priority": rule.priority,
                "match": rule.match,
                "score": rule.score,
                "keywords": list(rule.keywords),
            }
            for rule in classifier.rules
        ],
        "long_prompt_words": classifier.long_prompt_words,
        "long_label": classifier.long_label,
        "default_label": classifier.default_label,
        "json_label": classifier.json_label,
        "include_system": classifier.include_system,
        "task_types": dict(classifier.task_types),
        "engine": classifier.engine,
    }


def _keyword_routers(name: str, strategy: Any, seen: set[int]) -> Iterator[tuple[str, Any]]:
    """(path, classifier) for every keyword router in ``strategy``, depth first."""
    from .routing.keyword import KeywordClassifier
    from .strategies.router import Router

    if id(strategy) in seen:
        return
    seen.add(id(strategy))
    if isinstance(strategy, Router) and isinstance(strategy.classifier, KeywordClassifier):
        yield name, strategy.classifier
    children: Any = getattr(strategy, "routes", None)
    if isinstance(children, dict):
        for label, child in children.items():
            if not isinstance(child, str):
                yield from _keyword_routers(f"{name}.routes.{label}", child, seen)


def _format(path: str, info: dict[str, Any]) -> str:
    lines = [f"[{path}] keyword classifier ({info['engine']} engine), tried in this order:"]
    lines.append("  1. hints: " + "; ".join(info["hints"]))
    lines.append("  2. rules, first match wins (whole words unless match/* says otherwise):")
    for rule in info["rules"]:
        lines.append(
            f"     {rule['label']:<11} priority {rule['priority']:<4} match {rule['match']:<9} "
            f"score {rule['score']}: " + ", ".join(rule["keywords"])
        )
    if info["long_prompt_words"] is None:
        lines.append("  3. long prompts: off")
    else:
        lines.append(f"  3. more than {info['long_prompt_words']} words → {info['long_label']}")
    lines.append(f"  4. otherwise → {info['default_label']}")
    system = "included" if info["include_system"] else "not classified"
    lines.append(
        f"  system prompt: {system}; task_types: "
        + ", ".join(f"{k}→{v}" for k, v in info["task_types"].items())
    )
    return "\n".join(lines)


def cmd_rules(args: argparse.Namespace) -> int:
    from .cli import EXIT_OK, _config_path, _print_json, _UsageError

    routers: list[tuple[str, Any]] = []
    if args.config is None and not os.environ.get("TIERWISE_CONFIG") and not Path("tierwise.toml").exists():
        from .routing.keyword import KeywordClassifier

        sys.stderr.write("no config (--config, $TIERWISE_CONFIG or ./tierwise.toml): the built-in defaults\n")
        routers.append(("KeywordClassifier.default()", KeywordClassifier.default()))
    else:
        from ._config.build import _build_strategies
        from .config import check_config

        cfg = check_config(_config_path(args.config))
        strategies = _build_strategies(cfg)
        names = [args.strategy] if args.strategy else sorted(strategies)
        seen: set[int] = set()
        for name in names:
            if name not in strategies:
                raise _UsageError(f"no strategy {name!r}; defined: {', '.join(sorted(strategies))}")
            routers.extend(_keyword_routers(f"strategies.{name}", strategies[name], seen))
        if not routers:
            raise _UsageError("no router with a keyword classifier in this config")
    if args.json:
        _print_json({path: describe_classifier(c) for path, c in routers})
    else:
        sys.stdout.write("\n\n".join(_format(path, describe_classifier(c)) for path, c in routers) + "\n")
    return EXIT_OK
