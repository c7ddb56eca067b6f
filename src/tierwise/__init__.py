"""tierwise: send each LLM request to the cheapest model that can do it well.

The stable public surface lives here; everything else is in private or
sub-modules. Heavy pieces (the orchestrator, config, optional integrations) are
imported on first attribute access so ``import tierwise`` stays fast.
"""

from __future__ import annotations

from . import errors
from .types import (
    Attempt,
    Done,
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

__version__ = "0.1.0"

__all__ = [
    "Attempt",
    "Done",
    "Message",
    "RateLimitInfo",
    "ReasoningDelta",
    "Request",
    "Response",
    "RouteInfo",
    "StreamEvent",
    "TextDelta",
    "Tool",
    "ToolCall",
    "ToolCallDelta",
    "Usage",
    "__version__",
    "errors",
]
