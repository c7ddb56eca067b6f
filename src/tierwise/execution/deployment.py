"""A deployment: one configured model the executor can call.

Kept apart from the executor so strategies, config and the state backends can
name a deployment's facts (price, window, limits) without importing the chain
machinery.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..catalog import compute_cost
from .tokens import InputBound

if TYPE_CHECKING:
    from ..catalog import ModelSpec
    from ..providers.base import Provider
    from ..state import Limiter
    from ..types import Usage

__all__ = ["Deployment"]

_log = logging.getLogger("tierwise.executor")


@dataclass(slots=True, eq=False)
class Deployment:
    """One configured model: an alias bound to a provider, a wire model name, its
    prices and window (``spec``), its own limiter and timeouts, and its fallbacks.

    ``max_queue_wait_s``: the longest a request waits for a slot of this
    deployment's rate limiter before it falls back to the next deployment
    (``None``: wait as long as the request deadline allows). ``input_bound``
    turns the heuristic prompt estimate into the upper bound the budget reserves
    (see ``tokens.InputBound``); it learns from this deployment's real usage.
    """

    alias: str
    provider: Provider
    model: str
    spec: ModelSpec | None = None
    limiter: Limiter | None = None
    fallbacks: tuple[str, ...] = ()
    timeout_s: float | None = None
    first_token_timeout_s: float | None = None
    idle_timeout_s: float | None = None
    max_output_tokens: int | None = None
    max_queue_wait_s: float | None = None
    #: Count each prompt with the provider's token-counting endpoint before a try,
    #: for exact limiter and budget estimates (``execution._exact``); off by default.
    exact_token_counts: bool = False
    input_bound: InputBound = field(default_factory=InputBound, repr=False)
    _warned: bool = field(default=False, repr=False)

    @property
    def context_window(self) -> int | None:
        return self.spec.context_window if self.spec is not None else None

    def cost(self, usage: Usage) -> float | None:
        """Dollar cost of ``usage``; ``None`` (with one warning) when the price is unknown."""
        if usage.reported_cost_usd is not None:
            return usage.reported_cost_usd
        if self.spec is not None:
            cost = compute_cost(self.spec, usage)
            if cost is not None:
                return cost
        if not self._warned:
            self._warned = True
            _log.warning(
                "no price known for model %r (deployment %r): cost_usd will be None, not 0; "
                "add prices to its [models.%s] config",
                self.model,
                self.alias,
                self.alias,
            )
        return None

    def max_cost(self, input_tokens: int, output_tokens: int) -> float:
        """Worst-case cost used to reserve budget before the call (0 when unknown)."""
        spec = self.spec
        if spec is None or spec.input is None or spec.output is None:
            return 0.0
        return (input_tokens * spec.input + output_tokens * spec.output) / 1_000_000.0
