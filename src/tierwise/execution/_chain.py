"""The deployments one call walks through, in order: the one chain loop.

``Chain`` is iterated by the executor's pipeline; the pipeline tells it what it
learned on the way (a context window that refused, a budget downgrade), which
changes what comes next. Order rules are in the executor's module docstring.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from ..types import Attempt

if TYPE_CHECKING:
    from ._attempt import Call
    from .budget import BudgetDowngrade
    from .deployment import Deployment
    from .executor import Executor

__all__: list[str] = []


class Chain:
    """The primary, its fallbacks, the default chain; cooling deployments last.

    ``primary`` is the alias an answer counts as "not a fallback" for: the
    requested one, or the cheaper model a budget downgrade put in its place.
    """

    __slots__ = ("_call", "_executor", "_i", "_min_window", "_ordered", "downgraded", "primary")

    def __init__(self, executor: Executor, alias: str, call: Call, *, fallback: bool = True) -> None:
        self._executor = executor
        self._call = call
        chain = executor.chain(alias)
        if not fallback:
            chain = chain[:1]
        health = executor.health
        # ``ready`` claims nothing: a half-open deployment's single trial is claimed
        # (``available``) only when a call is actually sent to it.
        ready = [d for d in chain if health.ready(d.alias)]
        self._ordered = ready if len(ready) == len(chain) else ready + [d for d in chain if d not in ready]
        # The requested alias, not ordered[0]: when the primary is cooling and moved
        # to the end, whatever answers instead is still a fallback.
        self.primary = alias
        self._min_window = 0
        self._i = 0
        self.downgraded = False

    def __len__(self) -> int:
        return len(self._ordered)

    def __iter__(self) -> Iterator[Deployment]:
        call = self._call
        executor = self._executor
        windows = call.request is not None
        ordered = self._ordered
        while self._i < len(ordered):
            dep = ordered[self._i]
            self._i += 1
            window = dep.context_window
            if windows and window is not None and (window <= self._min_window or call.estimate > window):
                call.add(
                    Attempt(
                        dep.alias,
                        dep.provider.name,
                        "skipped",
                        error_type="ContextWindowExceeded",
                        error=f"prompt ~{call.estimate} tokens exceeds window {window}",
                        path=call.path,
                    )
                )
                continue
            left = call.left(executor.clock.now())
            if left is not None and left <= 0:
                return
            # Claim a half-open deployment's single trial now that it is called.
            executor.health.available(dep.alias)
            yield dep

    def refused_window(self, dep: Deployment) -> None:
        """``dep`` said the prompt does not fit: skip every window not larger."""
        self._min_window = max(self._min_window, dep.context_window or 0)

    def downgrade(self, dep: Deployment, exc: BudgetDowngrade) -> None:
        """Try the cheaper model the budget asks for next, once; re-raise ``exc``
        when it names no usable model or a downgrade already happened."""
        target = exc.downgrade_to
        deployments = self._executor.deployments
        if self.downgraded or target is None or target not in deployments:
            raise exc
        self.downgraded = True
        if dep.alias == self.primary:
            self.primary = target
        # Tried next; any later copy removed so each deployment is still tried once.
        new = deployments[target]
        ordered = self._ordered
        later = ordered[self._i :]
        del ordered[self._i :]
        ordered.append(new)
        ordered.extend(d for d in later if d is not new)
