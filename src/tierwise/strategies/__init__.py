"""Strategies decide WHICH model(s) answer; see ``base`` for the contract.

Built-ins are imported on first access, so using one does not load the others.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports
from .base import RunContext, Strategy, Target
from .single import Single

if TYPE_CHECKING:
    from .aggregate import Aggregator, Fastest, FirstValid, JudgePick, MajorityVote
    from .batch import BatchProgress, BatchResult, run_batch
    from .cascade import Cascade
    from .ensemble import Ensemble
    from .pipeline import Pipeline, Step
    from .router import Router
    from .shadow import JudgeAgreement, SameAnswer, Shadow

__all__ = [
    "Aggregator",
    "BatchProgress",
    "BatchResult",
    "Cascade",
    "Ensemble",
    "Fastest",
    "FirstValid",
    "JudgeAgreement",
    "JudgePick",
    "MajorityVote",
    "Pipeline",
    "Router",
    "RunContext",
    "SameAnswer",
    "Shadow",
    "Single",
    "Step",
    "Strategy",
    "Target",
    "run_batch",
]

_LAZY = {
    "Aggregator": "aggregate",
    "BatchProgress": "batch",
    "BatchResult": "batch",
    "Cascade": "cascade",
    "Ensemble": "ensemble",
    "Fastest": "aggregate",
    "FirstValid": "aggregate",
    "JudgeAgreement": "shadow",
    "JudgePick": "aggregate",
    "MajorityVote": "aggregate",
    "Pipeline": "pipeline",
    "Router": "router",
    "SameAnswer": "shadow",
    "Shadow": "shadow",
    "Step": "pipeline",
    "run_batch": "batch",
}


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals(), __all__)
