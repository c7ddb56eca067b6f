"""Classifiers: turn a request into a label a ``Router`` maps to a target.

``KeywordClassifier`` is the tutorials' rule classifier (metadata hints, keyword
rules, long-prompt upgrade); learned classifiers plug into the same
``Classifier`` protocol: ``OutcomeModel`` (``tierwise.routing.learned``, extra
``learn``) predicts each model's chance of a good answer from recorded outcomes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .base import Classification, Classifier
from .keyword import DEFAULT_TASK_TYPES, KeywordClassifier, Rule, default_rules

if TYPE_CHECKING:
    from .learned import OutcomeModel

__all__ = [
    "DEFAULT_TASK_TYPES",
    "Classification",
    "Classifier",
    "KeywordClassifier",
    "OutcomeModel",
    "Rule",
    "default_rules",
]


def __getattr__(name: str) -> Any:
    # Lazy: ``import tierwise.routing`` must not import numpy or scikit-learn.
    if name == "OutcomeModel":
        from .learned import OutcomeModel

        return OutcomeModel
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
