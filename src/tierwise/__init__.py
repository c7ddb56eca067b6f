"""tierwise: send each LLM request to the cheapest model that can do it well.

The stable public surface lives here; everything else is in private or
sub-modules. Heavy pieces (the orchestrator, config, optional integrations) are
imported on first attribute access so ``import tierwise`` stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import errors
from ._lazy import lazy_exports
from .types import (
    Attempt,
    Done,
    Embeddings,
    Message,
    RateLimitInfo,
    ReasoningDelta,
    Request,
    Response,
    RouteInfo,
    StreamEvent,
    TextDelta,
    Tool,
    ToolCall,
    ToolCallDelta,
    Usage,
)

if TYPE_CHECKING:
    from . import providers, routing, strategies, sync, testing, verify
    from .catalog import Catalog, ModelSpec
    from .execution.executor import Deployment
    from .orchestrator import Orchestrator
    from .routing import Classification, Classifier, KeywordClassifier
    from .strategies.base import RunContext, Strategy
    from .strategies.batch import BatchResult
    from .strategies.cascade import Cascade
    from .strategies.ensemble import Ensemble
    from .strategies.pipeline import Pipeline, Step
    from .strategies.router import Router
    from .strategies.single import Single

#: The one place the version is written: pyproject.toml reads it (``[tool.hatch.version]``),
#: ``tierwise --version`` and the OpenTelemetry scope print it.
__version__ = "0.1.0"

# name -> module holding it; imported on first access (PEP 562).
_LAZY = {
    "BatchResult": "strategies.batch",
    "Cascade": "strategies.cascade",
    "Catalog": "catalog",
    "Classification": "routing",
    "Classifier": "routing",
    "Ensemble": "strategies.ensemble",
    "KeywordClassifier": "routing",
    "Pipeline": "strategies.pipeline",
    "Router": "strategies.router",
    "Step": "strategies.pipeline",
    "Deployment": "execution.executor",
    "ModelSpec": "catalog",
    "Orchestrator": "orchestrator",
    "RunContext": "strategies.base",
    "Single": "strategies.single",
    "Strategy": "strategies.base",
}
_SUBMODULES = frozenset(("providers", "routing", "strategies", "sync", "testing", "verify"))


__all__ = [
    "Attempt",
    "BatchResult",
    "Cascade",
    "Catalog",
    "Classification",
    "Classifier",
    "Deployment",
    "Done",
    "Embeddings",
    "Ensemble",
    "KeywordClassifier",
    "Message",
    "ModelSpec",
    "Orchestrator",
    "Pipeline",
    "RateLimitInfo",
    "ReasoningDelta",
    "Request",
    "Response",
    "RouteInfo",
    "Router",
    "RunContext",
    "Single",
    "Step",
    "Strategy",
    "StreamEvent",
    "TextDelta",
    "Tool",
    "ToolCall",
    "ToolCallDelta",
    "Usage",
    "__version__",
    "errors",
    "providers",
    "routing",
    "strategies",
    "sync",
    "testing",
    "verify",
]

__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals(), __all__, _SUBMODULES)
