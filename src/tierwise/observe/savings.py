"""Savings against a baseline model: the tutorials' "Opus for everything" row,
measured on the application's own traffic.

For each answered request, the *baseline cost* is what the answer's tokens
(input, cached input, output) would have cost at the baseline model's prices;
the *savings* are that minus the request's ``cost_usd``, which already holds
every try the request made — failed tries, fallbacks, classifier, verifier and
judge calls — so the figure is net of routing's own overhead and can be
negative. A cache hit used no tokens: baseline and savings are 0. Anything
unpriced gives ``None``, never a silent 0.

The baseline defaults to the most expensive chat deployment of the
orchestrator (highest input + output price), the model an application would
use if it did not route at all.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING

from ..catalog import compute_cost

if TYPE_CHECKING:
    from ..execution.deployment import Deployment
    from ..types import Response, Usage

__all__ = ["apply_savings", "priciest_deployment"]


def priciest_deployment(deployments: Mapping[str, Deployment]) -> str | None:
    """The alias of the chat deployment with the highest input + output price
    (``None`` when none is priced)."""
    best: tuple[float, str] | None = None
    for alias, dep in deployments.items():
        spec = dep.spec
        if spec is None or spec.embedding or spec.input is None or spec.output is None:
            continue
        price = spec.input + spec.output
        if best is None or price > best[0]:
            best = (price, alias)
    return None if best is None else best[1]


def _answer_usage(response: Response) -> Usage:
    """The tokens of the try that answered (a cascade's accepted rung), not the
    sum over every call the request made."""
    for attempt in reversed(response.attempts):
        if attempt.outcome == "ok" and attempt.model == response.deployment and attempt.usage is not None:
            return attempt.usage
    return response.usage


def apply_savings(response: Response, baseline: Deployment | None) -> None:
    """Fill ``response``'s ``baseline``, ``baseline_cost_usd`` and ``savings_usd``."""
    if baseline is None or baseline.spec is None:
        # No priced baseline: say so (a cached copy may carry its first figures).
        response.baseline, response.baseline_cost_usd, response.savings_usd = "", None, None
        return
    response.baseline = baseline.alias
    if response.cached:
        response.baseline_cost_usd = 0.0
        response.savings_usd = 0.0 if response.cost_usd is not None else None
        return
    # The provider's own billed figure belongs to the model that answered.
    usage = replace(_answer_usage(response), reported_cost_usd=None)
    try:
        cost: float | None = compute_cost(baseline.spec, usage)
    except (ArithmeticError, ValueError, TypeError):
        cost = None  # nonsense counts from a provider: unknown, as the request's own cost is
    if cost is not None and not math.isfinite(cost):
        cost = None
    response.baseline_cost_usd = cost
    response.savings_usd = None if cost is None or response.cost_usd is None else cost - response.cost_usd
