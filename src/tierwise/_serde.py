"""Hand-written conversion of response types to and from JSON-able dicts.

Used by the response cache (SQLite stores JSON), the memory cache (to keep cached
entries isolated from callers that mutate the ``Response`` they get) and the audit
log. Written out field by field instead of ``dataclasses.asdict``: ``asdict``
recurses through ``copy.deepcopy`` for every value, which is several times slower
and gives no control over the shape. Every field is written, so a round trip is
lossless; on the way back in, missing optional keys take their defaults and unknown
keys are ignored, so records written by an older or newer version still load.

The produced dicts may share the ``arguments`` dicts of tool calls with the
source object (no deep copy on the hot path); callers that keep the dict while
someone may mutate the response must copy those themselves.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, get_args

from .types import (
    Attempt,
    RateLimitInfo,
    Response,
    RouteInfo,
    StepInfo,
    StepKind,
    StepVerdict,
    ToolCall,
    Usage,
)

_STEP_KINDS = frozenset(get_args(StepKind))
_STEP_VERDICTS = frozenset(get_args(StepVerdict))

__all__ = [
    "attempt_from_dict",
    "attempt_to_dict",
    "rate_limits_from_dict",
    "rate_limits_to_dict",
    "response_from_dict",
    "response_to_dict",
    "route_from_dict",
    "route_to_dict",
    "step_from_dict",
    "step_to_dict",
    "tool_call_from_dict",
    "tool_call_to_dict",
    "usage_from_dict",
    "usage_to_dict",
]


def usage_to_dict(usage: Usage) -> dict[str, Any]:
    return {
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
        "cached_input_tokens": usage.cached_input_tokens,
        "cache_write_tokens": usage.cache_write_tokens,
        "reasoning_tokens": usage.reasoning_tokens,
        "reported_cost_usd": usage.reported_cost_usd,
        "estimated": usage.estimated,
    }


def usage_from_dict(d: Mapping[str, Any]) -> Usage:
    return Usage(
        input_tokens=d.get("input_tokens", 0),
        output_tokens=d.get("output_tokens", 0),
        cached_input_tokens=d.get("cached_input_tokens", 0),
        cache_write_tokens=d.get("cache_write_tokens", 0),
        reasoning_tokens=d.get("reasoning_tokens", 0),
        reported_cost_usd=d.get("reported_cost_usd"),
        estimated=bool(d.get("estimated", False)),
    )


def tool_call_to_dict(call: ToolCall) -> dict[str, Any]:
    return {
        "id": call.id,
        "name": call.name,
        "arguments": call.arguments,
        "raw_arguments": call.raw_arguments,
        "incomplete": call.incomplete,
        "thought_signature": call.thought_signature,
    }


def tool_call_from_dict(d: Mapping[str, Any]) -> ToolCall:
    return ToolCall(
        id=d["id"],
        name=d["name"],
        arguments=d.get("arguments") or {},
        raw_arguments=d.get("raw_arguments", ""),
        incomplete=bool(d.get("incomplete", False)),
        thought_signature=d.get("thought_signature"),
    )


def route_to_dict(route: RouteInfo) -> dict[str, Any]:
    return {
        "strategy_path": route.strategy_path,
        "label": route.label,
        "reason": route.reason,
        "score": route.score,
    }


def route_from_dict(d: Mapping[str, Any]) -> RouteInfo:
    return RouteInfo(
        strategy_path=d.get("strategy_path", ""),
        label=d.get("label"),
        reason=d.get("reason", ""),
        score=d.get("score"),
    )


def rate_limits_to_dict(info: RateLimitInfo) -> dict[str, Any]:
    return {
        "requests_limit": info.requests_limit,
        "requests_remaining": info.requests_remaining,
        "requests_reset_s": info.requests_reset_s,
        "tokens_limit": info.tokens_limit,
        "tokens_remaining": info.tokens_remaining,
        "tokens_reset_s": info.tokens_reset_s,
    }


def rate_limits_from_dict(d: Mapping[str, Any]) -> RateLimitInfo:
    return RateLimitInfo(
        requests_limit=d.get("requests_limit"),
        requests_remaining=d.get("requests_remaining"),
        requests_reset_s=d.get("requests_reset_s"),
        tokens_limit=d.get("tokens_limit"),
        tokens_remaining=d.get("tokens_remaining"),
        tokens_reset_s=d.get("tokens_reset_s"),
    )


def attempt_to_dict(attempt: Attempt) -> dict[str, Any]:
    return {
        "model": attempt.model,
        "provider": attempt.provider,
        "outcome": attempt.outcome,
        "latency_ms": attempt.latency_ms,
        "cost_usd": attempt.cost_usd,
        "error_type": attempt.error_type,
        "error": attempt.error,
        "usage": None if attempt.usage is None else usage_to_dict(attempt.usage),
        "path": attempt.path,
        "retry": attempt.retry,
    }


def attempt_from_dict(d: Mapping[str, Any]) -> Attempt:
    usage = d.get("usage")
    return Attempt(
        model=d["model"],
        provider=d["provider"],
        outcome=d["outcome"],
        latency_ms=d.get("latency_ms", 0.0),
        # A missing key means "not recorded", which is not the same as free.
        cost_usd=d.get("cost_usd"),
        error_type=d.get("error_type"),
        error=d.get("error"),
        usage=None if usage is None else usage_from_dict(usage),
        path=d.get("path", ""),
        retry=d.get("retry", 0),
    )


def step_to_dict(step: StepInfo) -> dict[str, Any]:
    return {
        "name": step.name,
        "path": step.path,
        "model": step.model,
        "cost_usd": step.cost_usd,
        "latency_ms": step.latency_ms,
        "usage": usage_to_dict(step.usage),
        "accepted": step.accepted,
        "note": step.note,
        "kind": step.kind,
        "verdict": step.verdict,
    }


def step_from_dict(d: Mapping[str, Any]) -> StepInfo:
    usage = d.get("usage")
    kind: Any = d.get("kind")
    verdict: Any = d.get("verdict")
    return StepInfo(
        name=d.get("name", ""),
        path=d.get("path", ""),
        model=d.get("model", ""),
        cost_usd=d.get("cost_usd"),
        latency_ms=d.get("latency_ms", 0.0),
        usage=Usage() if usage is None else usage_from_dict(usage),
        accepted=d.get("accepted"),
        note=d.get("note", ""),
        kind=kind if kind in _STEP_KINDS else "call",
        verdict=verdict if verdict in _STEP_VERDICTS else None,
    )


def response_to_dict(resp: Response) -> dict[str, Any]:
    """Every field of ``resp`` as plain dicts, lists, strings and numbers."""
    return {
        "text": resp.text,
        "model": resp.model,
        "provider": resp.provider,
        "finish_reason": resp.finish_reason,
        "usage": usage_to_dict(resp.usage),
        "tool_calls": [tool_call_to_dict(c) for c in resp.tool_calls],
        "reasoning": resp.reasoning,
        "raw_finish_reason": resp.raw_finish_reason,
        "reasoning_items": resp.reasoning_items,
        "response_id": resp.response_id,
        "cost_usd": resp.cost_usd,
        "latency_ms": resp.latency_ms,
        "ttft_ms": resp.ttft_ms,
        "route": route_to_dict(resp.route),
        "attempts": [attempt_to_dict(a) for a in resp.attempts],
        "cached": resp.cached,
        "request_id": resp.request_id,
        "rate_limits": None if resp.rate_limits is None else rate_limits_to_dict(resp.rate_limits),
        "deployment": resp.deployment,
        "fallback": resp.fallback,
        "steps": [step_to_dict(st) for st in resp.steps],
        "baseline": resp.baseline,
        "baseline_cost_usd": resp.baseline_cost_usd,
        "savings_usd": resp.savings_usd,
    }


def response_from_dict(d: Mapping[str, Any]) -> Response:
    """Inverse of ``response_to_dict``; raises ``KeyError`` if text/model/provider is missing."""
    usage = d.get("usage")
    route = d.get("route")
    rate_limits = d.get("rate_limits")
    return Response(
        text=d["text"],
        model=d["model"],
        provider=d["provider"],
        finish_reason=d.get("finish_reason", "stop"),
        usage=Usage() if usage is None else usage_from_dict(usage),
        tool_calls=[tool_call_from_dict(c) for c in d.get("tool_calls") or ()],
        reasoning=d.get("reasoning", ""),
        raw_finish_reason=d.get("raw_finish_reason"),
        reasoning_items=[dict(item) for item in d.get("reasoning_items") or ()],
        response_id=d.get("response_id"),
        cost_usd=d.get("cost_usd"),
        latency_ms=d.get("latency_ms", 0.0),
        ttft_ms=d.get("ttft_ms"),
        route=RouteInfo() if route is None else route_from_dict(route),
        attempts=[attempt_from_dict(a) for a in d.get("attempts") or ()],
        cached=d.get("cached", False),
        request_id=d.get("request_id"),
        rate_limits=None if rate_limits is None else rate_limits_from_dict(rate_limits),
        deployment=d.get("deployment", ""),
        fallback=d.get("fallback", False),
        steps=[step_from_dict(st) for st in d.get("steps") or ()],
        baseline=d.get("baseline", ""),
        baseline_cost_usd=d.get("baseline_cost_usd"),
        savings_usd=d.get("savings_usd"),
    )
