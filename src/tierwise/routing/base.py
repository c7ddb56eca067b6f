"""What a classifier returns, and the protocol every classifier implements.

A classifier turns a request into a *label* (``"complex"``, ``"bulk"``, …) that a
``Router`` maps to a target. It is deliberately a tiny interface:

* **Cheap, synchronous by default.** ``classify(request)`` runs on every request
  before any model is called and does no I/O. A classifier that needs one cheap
  call (the learned router's embedding) also offers ``async aclassify(request,
  ctx)``, which the router awaits; it calls through ``ctx.embed`` so the call is
  accounted, and reports it in ``Classification.call``.
* **Whole request in, not a string.** It sees the conversation (every turn, so a
  chat can be routed on everything said so far), the metadata hints (``tier``,
  ``json_output``, ``task_type``) and ``response_format``.
* **A reason, always.** ``Response.route.reason`` and ``Orchestrator.explain``
  show it, so "why did this go to Opus?" has an answer in the logs.

Learned classifiers implement exactly the same protocol: ``classify(request) ->
Classification`` with ``score`` as their probability for the label; nothing in
the router distinguishes them from the rule classifier.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from ..types import Request, StepInfo

__all__ = ["Classification", "Classifier"]


@dataclass(slots=True)
class Classification:
    """One classifier decision.

    ``score`` is the classifier's confidence in ``label``, from 0 to 1: a
    probability for a learned classifier, a fixed per-rule figure for the rule
    classifier (1.0 for an explicit metadata hint). ``reason`` is for humans and
    names what decided it (``"matched 'trade-offs' (complex)"``).

    Not frozen, like the types in ``tierwise.types``: it is built once per
    request on the hot path and freezing costs a ``__setattr__`` per field.
    """

    label: str
    score: float = 1.0
    reason: str = ""
    call: StepInfo | None = None
    """The model call the classifier made to decide, if any (the learned router's
    embedding): the router adds its cost to the answer's and lists it first in
    ``Response.steps``, so classifying is billed like everything else."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.score <= 1.0:
            raise ValueError(f"Classification.score must be within 0..1, got {self.score!r}")


@runtime_checkable
class Classifier(Protocol):
    """Anything with ``classify(request) -> Classification``.

    Implementations must be synchronous, side-effect free and fast (the router
    calls them on every request and from ``explain()``), and should return a
    label the router has a route for; an unknown label is sent to the router's
    default route, with the reason saying so.
    """

    def classify(self, request: Request) -> Classification:
        """Label ``request``; never raises for ordinary input."""
        ...
