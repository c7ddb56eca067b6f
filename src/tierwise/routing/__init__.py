"""Classifiers: turn a request into a label a ``Router`` maps to a target.

``KeywordClassifier`` is the tutorials' rule classifier (metadata hints, keyword
rules, long-prompt upgrade); learned classifiers plug into the same
``Classifier`` protocol.
"""

from .base import Classification, Classifier
from .keyword import DEFAULT_TASK_TYPES, KeywordClassifier, Rule, default_rules

__all__ = ["DEFAULT_TASK_TYPES", "Classification", "Classifier", "KeywordClassifier", "Rule", "default_rules"]
