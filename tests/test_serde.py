"""Response ⇄ dict serialization: lossless round trips, tolerant loading."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from tierwise._serde import (
    attempt_from_dict,
    attempt_to_dict,
    rate_limits_to_dict,
    response_from_dict,
    response_to_dict,
    route_to_dict,
    step_to_dict,
    tool_call_to_dict,
    usage_from_dict,
    usage_to_dict,
)
from tierwise.types import Attempt, RateLimitInfo, Response, RouteInfo, StepInfo, ToolCall, Usage


def field_names(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def test_every_field_is_written() -> None:
    """Fails when a field is added to a type without teaching the serializer."""
    resp = Response("t", "m", "p")
    assert set(response_to_dict(resp)) == field_names(Response)
    assert set(usage_to_dict(Usage())) == field_names(Usage)
    assert set(attempt_to_dict(Attempt("m", "p", "ok"))) == field_names(Attempt)
    assert set(route_to_dict(RouteInfo())) == field_names(RouteInfo)
    assert set(rate_limits_to_dict(RateLimitInfo())) == field_names(RateLimitInfo)
    assert set(tool_call_to_dict(ToolCall("i", "n"))) == field_names(ToolCall)
    assert set(step_to_dict(StepInfo("s", "p", "m", None, 0.0))) == field_names(StepInfo)


def deep_fields(obj: Any) -> Any:
    """Every field, including those excluded from ``==`` (latency, attempts, raw args...)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: deep_fields(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, list):
        return [deep_fields(x) for x in obj]
    return obj


finite = st.floats(allow_nan=False, allow_infinity=False)
opt_finite = st.none() | finite
opt_int = st.none() | st.integers(min_value=0, max_value=2**53)
text = st.text(max_size=30)
opt_text = st.none() | text
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | finite | text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=10,
)

usages = st.builds(
    Usage,
    input_tokens=st.integers(0, 10**9),
    output_tokens=st.integers(0, 10**9),
    cached_input_tokens=st.integers(0, 10**9),
    cache_write_tokens=st.integers(0, 10**9),
    reasoning_tokens=st.integers(0, 10**9),
    reported_cost_usd=opt_finite,
)
tool_calls = st.builds(
    ToolCall,
    id=text,
    name=text,
    arguments=st.dictionaries(text, json_values, max_size=4),
    raw_arguments=text,
)
routes = st.builds(RouteInfo, strategy_path=text, label=opt_text, reason=text, score=opt_finite)
rate_limits = st.builds(
    RateLimitInfo,
    requests_limit=opt_int,
    requests_remaining=opt_int,
    requests_reset_s=opt_finite,
    tokens_limit=opt_int,
    tokens_remaining=opt_int,
    tokens_reset_s=opt_finite,
)
attempts = st.builds(
    Attempt,
    model=text,
    provider=text,
    outcome=st.sampled_from(["ok", "error", "cached", "skipped", "rejected"]),
    latency_ms=finite,
    cost_usd=opt_finite,
    error_type=opt_text,
    error=opt_text,
    usage=st.none() | usages,
    path=text,
    retry=st.integers(0, 100),
)
responses = st.builds(
    Response,
    text=st.text(max_size=200),
    model=text,
    provider=text,
    finish_reason=st.sampled_from(["stop", "length", "tool_calls", "content_filter", "error"]),
    usage=usages,
    tool_calls=st.lists(tool_calls, max_size=3),
    reasoning=text,
    raw_finish_reason=opt_text,
    cost_usd=opt_finite,
    latency_ms=finite,
    ttft_ms=opt_finite,
    route=routes,
    attempts=st.lists(attempts, max_size=3),
    cached=st.booleans(),
    request_id=opt_text,
    rate_limits=st.none() | rate_limits,
    deployment=text,
    fallback=st.booleans(),
)


@settings(max_examples=200, deadline=None)
@given(responses)
def test_response_round_trip_through_json(resp: Response) -> None:
    d = response_to_dict(resp)
    back = response_from_dict(json.loads(json.dumps(d)))
    assert back == resp
    assert deep_fields(back) == deep_fields(resp)
    assert response_to_dict(back) == d


@given(attempts)
def test_attempt_round_trip(att: Attempt) -> None:
    assert deep_fields(attempt_from_dict(json.loads(json.dumps(attempt_to_dict(att))))) == deep_fields(att)


def test_unknown_cost_stays_unknown() -> None:
    resp = Response("t", "m", "p", cost_usd=None, attempts=[Attempt("m", "p", "ok", cost_usd=None)])
    back = response_from_dict(response_to_dict(resp))
    assert back.cost_usd is None
    assert back.attempts[0].cost_usd is None
    assert usage_from_dict(usage_to_dict(Usage(reported_cost_usd=None))).reported_cost_usd is None


def test_raw_arguments_kept_byte_for_byte() -> None:
    call = ToolCall("c", "f", {"a": 1}, raw_arguments='{ "a" :1 }')
    back = response_from_dict(response_to_dict(Response("", "m", "p", tool_calls=[call])))
    assert back.tool_calls[0].raw_arguments == '{ "a" :1 }'


def test_loading_is_tolerant_of_missing_and_unknown_keys() -> None:
    back = response_from_dict({"text": "hi", "model": "m", "provider": "p", "future_field": 1})
    assert deep_fields(back) == deep_fields(Response("hi", "m", "p"))
    att = attempt_from_dict({"model": "m", "provider": "p", "outcome": "error"})
    assert (att.latency_ms, att.cost_usd, att.usage, att.retry) == (0.0, None, None, 0)
