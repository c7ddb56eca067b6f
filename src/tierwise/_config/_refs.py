"""Cross-reference checks, on validated data: nothing is constructed.

Every reference must name something that exists (a provider, a model alias, a
strategy), strategies must not refer to each other in a cycle, and every
problem is reported (``tierwise check-config`` lists them all).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ._builtins import BUILTIN_PROVIDERS
from ._errors import FieldError, unknown
from .strategies import StrategyModel

if TYPE_CHECKING:
    from .schema import TierwiseConfig

__all__ = ["reference_problems"]


def _walk(table: StrategyModel, where: str) -> Iterator[tuple[Any, str, str]]:
    """Every (value, absolute field, kind) reference in ``table``, inline tables included."""
    for value, field, kind in table.refs():
        path = f"{where}.{field}"
        if isinstance(value, StrategyModel):
            yield from _walk(value, path)
        else:
            yield value, path, kind


def reference_problems(cfg: TierwiseConfig) -> list[FieldError]:
    problems: list[FieldError] = []

    def problem(field: str, message: str) -> None:
        problems.append(FieldError(field, message))

    known_providers = set(cfg.providers).union(BUILTIN_PROVIDERS)
    for alias, model in cfg.models.items():
        if model.provider not in known_providers:
            problem(
                f"models.{alias}.provider",
                unknown("provider", model.provider, known_providers)
                + f"; define [providers.{model.provider}] or use one of: "
                + ", ".join(sorted(known_providers)),
            )
        for i, name in enumerate(model.fallbacks):
            if name == alias:
                problem(f"models.{alias}.fallbacks[{i}]", "a model cannot fall back to itself")
            elif name not in cfg.models:
                problem(f"models.{alias}.fallbacks[{i}]", unknown("model alias", name, cfg.models))
    for i, name in enumerate(cfg.fallbacks):
        if name not in cfg.models:
            problem(f"fallbacks[{i}]", unknown("model alias", name, cfg.models))
    problems.extend(_strategy_problems(cfg))
    # With no [strategies], the Orchestrator defines "default" (the first model).
    defined = set(cfg.strategies) or {"default"}
    if cfg.default_strategy is not None and cfg.default_strategy not in defined:
        problem(
            "default_strategy",
            unknown("strategy", cfg.default_strategy, defined) + f"; defined: {', '.join(sorted(defined))}",
        )
    if cfg.budget is not None:
        for i, limit in enumerate(cfg.budget.limits):
            if limit.downgrade_to is not None and limit.downgrade_to not in cfg.models:
                problem(
                    f"budget.limits[{i}].downgrade_to", unknown("model alias", limit.downgrade_to, cfg.models)
                )
            kind, _, scoped = limit.scope.partition(":")
            if kind == "model" and scoped not in cfg.models:
                problem(
                    f"budget.limits[{i}].scope",
                    unknown("model alias", scoped, cfg.models) + " in 'model:<alias>'",
                )
    return problems


def _strategy_problems(cfg: TierwiseConfig) -> list[FieldError]:
    tables: dict[str, StrategyModel] = cfg.strategies
    models = cfg.models
    problems: list[FieldError] = []
    uses: dict[str, list[str]] = {}
    for name, table in tables.items():
        uses[name] = []
        for value, field, kind in _walk(table, f"strategies.{name}"):
            if kind == "alias" and value in tables:
                problems.append(FieldError(field, "expected a model alias"))
            elif value in models:
                continue
            elif value in tables:
                uses[name].append(value)
            else:
                problems.append(
                    FieldError(
                        field,
                        unknown("target", value, [*models, *tables]) + " (a model alias or a strategy name)",
                    )
                )
    # Cycles, found in the order the strategies would be built (config order, depth first).
    done: set[str] = set()
    reported: set[frozenset[str]] = set()

    def visit(name: str, trail: list[str]) -> None:
        if name in trail:
            loop = [*trail[trail.index(name) :], name]
            key = frozenset(loop)
            if key not in reported:
                reported.add(key)
                problems.append(
                    FieldError(
                        f"strategies.{name}",
                        f"strategies refer to each other in a cycle: {' → '.join(loop)}",
                    )
                )
            return
        if name in done:
            return
        for nxt in uses[name]:
            visit(nxt, [*trail, name])
        done.add(name)

    for name in tables:
        visit(name, [])
    return problems
