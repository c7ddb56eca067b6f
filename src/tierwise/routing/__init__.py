"""Classifiers: turn a request into a label a ``Router`` maps to a target.

``KeywordClassifier`` is the tutorials' rule classifier (metadata hints, keyword
rules, long-prompt upgrade); learned classifiers plug into the same
``Classifier`` protocol: ``DifficultyClassifier.pretrained()`` (a cold-start
difficulty model shipped with tierwise, no data or extra needed);
``OutcomeModel`` (``tierwise.routing.learned``, extra ``learn``) predicts each
model's chance of a good answer from recorded outcomes, and
``tierwise.routing.feedback`` turns your audit log plus good/bad feedback into
its training data (``tierwise train``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports
from .base import Classification, Classifier
from .keyword import DEFAULT_TASK_TYPES, KeywordClassifier, Rule, default_rules

if TYPE_CHECKING:
    from .difficulty import DifficultyClassifier
    from .feedback import (
        Feedback,
        FeedbackError,
        TrainingSet,
        read_audit,
        read_feedback,
        request_hash,
        training_set,
        verifier_feedback,
        write_feedback,
    )
    from .learned import OutcomeModel, TextView

__all__ = [
    "DEFAULT_TASK_TYPES",
    "Classification",
    "Classifier",
    "DifficultyClassifier",
    "Feedback",
    "FeedbackError",
    "KeywordClassifier",
    "OutcomeModel",
    "Rule",
    "TextView",
    "TrainingSet",
    "default_rules",
    "read_audit",
    "read_feedback",
    "request_hash",
    "training_set",
    "verifier_feedback",
    "write_feedback",
]

# name -> submodule, loaded on first access
_LAZY = {
    "DifficultyClassifier": "difficulty",
    "OutcomeModel": "learned",
    "TextView": "learned",
    "Feedback": "feedback",
    "FeedbackError": "feedback",
    "TrainingSet": "feedback",
    "read_audit": "feedback",
    "read_feedback": "feedback",
    "request_hash": "feedback",
    "training_set": "feedback",
    "verifier_feedback": "feedback",
    "write_feedback": "feedback",
}


# Lazy: ``import tierwise.routing`` must not import numpy or scikit-learn, nor
# pay for the training helpers (or the difficulty weights) a serving process never uses.
__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals(), __all__)
