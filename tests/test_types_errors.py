"""Normalized types, the error tree, and the header parsing every adapter shares."""

from __future__ import annotations

import email.utils
import pickle
import time

import httpx
import pytest

import tierwise as tw
from tierwise import errors
from tierwise.providers.base import (
    classify_error,
    make_tool_call,
    parse_duration,
    parse_rate_limit_headers,
    parse_retry_after,
)


def test_from_prompt_builds_messages_and_params() -> None:
    req = tw.Request.from_prompt("hi", system="be brief", max_tokens=5, stop="END", temperature=0)
    assert [(m.role, m.content) for m in req.messages] == [("system", "be brief"), ("user", "hi")]
    assert req.max_tokens == 5 and req.stop == ["END"] and req.temperature == 0
    assert req.system == "be brief"


def test_from_prompt_rejects_unknown_params_by_name() -> None:
    with pytest.raises(TypeError, match="max_token"):
        tw.Request.from_prompt("hi", max_token=5)


def test_tools_accept_openai_and_flat_shapes() -> None:
    req = tw.Request.from_prompt(
        "x",
        tools=[
            {"type": "function", "function": {"name": "a", "parameters": {"type": "object"}}},
            {"name": "b", "description": "d", "input_schema": {"type": "object", "required": []}},
        ],
    )
    assert req.tools is not None
    assert [t.name for t in req.tools] == ["a", "b"]
    assert req.tools[1].parameters == {"type": "object", "required": []}
    with pytest.raises(ValueError, match="name"):
        tw.Tool.coerce({"description": "nameless"})


def test_message_validation_and_dict_coercion() -> None:
    with pytest.raises(ValueError, match="role"):
        tw.Message("robot", "x")  # type: ignore[arg-type]
    req = tw.Request(messages=[{"role": "user", "content": "hello"}])  # type: ignore[list-item]
    assert req.messages[0] == tw.Message("user", "hello")
    parts = tw.Message(
        "user", [{"type": "text", "text": "a"}, {"type": "image_url"}, {"type": "text", "text": "b"}]
    )
    assert parts.text == "ab"


def test_response_equality_ignores_timing_and_bookkeeping() -> None:
    usage = tw.Usage(10, 5)
    a = tw.Response("t", "m", "p", usage=usage, latency_ms=5, request_id="1")
    b = tw.Response("t", "m", "p", usage=tw.Usage(10, 5), latency_ms=99, request_id="2", cached=True)
    assert a == b
    assert a != tw.Response("t!", "m", "p", usage=usage)
    # Tool calls compare by parsed arguments, not by the provider's whitespace.
    assert tw.ToolCall("1", "f", {"x": 1}, '{"x": 1}') == tw.ToolCall("1", "f", {"x": 1}, '{"x":1}')


def test_usage_addition_keeps_unknown_reported_cost_unknown() -> None:
    total = tw.Usage(1, 2, 3, 4, 5) + tw.Usage(10, 20, 30, 40, 50)
    assert (total.input_tokens, total.output_tokens, total.cached_input_tokens) == (11, 22, 33)
    assert total.reported_cost_usd is None
    assert (tw.Usage(reported_cost_usd=0.5) + tw.Usage()).reported_cost_usd == 0.5


def test_error_tree_matches_design() -> None:
    e = errors
    assert issubclass(e.ProviderError, e.TierwiseError)
    for cls in (
        e.RateLimitError,
        e.ProviderTimeout,
        e.ServerError,
        e.AuthenticationError,
        e.BadRequestError,
        e.ContentFiltered,
        e.ProtocolError,
    ):
        assert issubclass(cls, e.ProviderError)
    assert issubclass(e.ContextWindowExceeded, e.BadRequestError)
    assert issubclass(e.AllTargetsFailed, ExceptionGroup)
    assert issubclass(e.AllTargetsFailed, e.TierwiseError)
    assert e.RateLimitError("x").retryable and not e.BadRequestError("x").retryable
    assert not e.RateLimitError("quota", retryable=False).retryable


def test_provider_error_fields_str_repr_and_pickle() -> None:
    err = errors.RateLimitError(
        "slow down",
        provider="openai",
        model="gpt-4o",
        status_code=429,
        request_id="req_1",
        error_type="rate_limit_exceeded",
        retry_after=2.5,
    )
    assert str(err) == "[openai/gpt-4o] slow down (HTTP 429) request_id=req_1"
    assert "retry_after=2.5" in repr(err)
    clone = pickle.loads(pickle.dumps(err))
    assert type(clone) is errors.RateLimitError
    assert (clone.retry_after, clone.status_code, clone.provider) == (2.5, 429, "openai")


def test_all_targets_failed_keeps_every_error_and_attempts() -> None:
    inner = [errors.ServerError("a"), errors.RateLimitError("b")]
    group = errors.AllTargetsFailed("all failed", inner, attempts=["x", "y"])
    assert list(group.exceptions) == inner and group.attempts == ["x", "y"]
    rate, rest = group.split(errors.RateLimitError)
    assert isinstance(rate, errors.AllTargetsFailed) and rate.attempts == ["x", "y"]
    assert rest is not None and list(rest.exceptions) == [inner[0]]


def test_redact_removes_keys_and_key_shapes() -> None:
    text = "bad key sk-proj-abcdef123456 Bearer tok_abcdefgh1234 url?key=AIzaSyA1234567890abcdefghij&x=1 mine"
    out = errors.redact(text, ["mine"])
    for secret in ("sk-proj-abcdef123456", "tok_abcdefgh1234", "AIzaSyA1234567890abcdefghij", "mine"):
        assert secret not in out
    assert out.count("[REDACTED]") == 4


def test_config_error_names_the_field() -> None:
    err = errors.ConfigError("unknown alias 'opsu'", field="models.opus.fallbacks[0]")
    assert str(err).startswith("models.opus.fallbacks[0]: ")
    assert err.field == "models.opus.fallbacks[0]"


def test_parse_retry_after_forms() -> None:
    assert parse_retry_after(httpx.Headers({"retry-after-ms": "1500"})) == 1.5
    assert parse_retry_after(httpx.Headers({"retry-after": "7"})) == 7.0
    date = email.utils.formatdate(time.time() + 30, usegmt=True)
    got = parse_retry_after(httpx.Headers({"retry-after": date}))
    assert got is not None and 27 <= got <= 31
    assert parse_retry_after(httpx.Headers({"retry-after": "soon"})) is None
    assert parse_retry_after(httpx.Headers({})) is None
    # retry-after-ms is more precise and wins.
    assert parse_retry_after(httpx.Headers({"retry-after-ms": "250", "retry-after": "1"})) == 0.25


def test_parse_duration_forms() -> None:
    assert parse_duration("6m0s") == 360.0
    assert parse_duration("20ms") == pytest.approx(0.02)
    assert parse_duration("1h2m3.5s") == pytest.approx(3723.5)
    assert parse_duration("12") == 12.0
    assert parse_duration("garbage") is None


def test_rate_limit_headers_openai_and_anthropic() -> None:
    info = parse_rate_limit_headers(
        httpx.Headers(
            {
                "x-ratelimit-limit-requests": "500",
                "x-ratelimit-remaining-requests": "499",
                "x-ratelimit-reset-requests": "120ms",
                "x-ratelimit-limit-tokens": "30000",
                "x-ratelimit-remaining-tokens": "29000",
                "x-ratelimit-reset-tokens": "2s",
            }
        )
    )
    assert info == tw.RateLimitInfo(500, 499, pytest.approx(0.12), 30000, 29000, 2.0)
    reset = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 60))
    info = parse_rate_limit_headers(
        httpx.Headers(
            {
                "anthropic-ratelimit-requests-limit": "50",
                "anthropic-ratelimit-requests-remaining": "0",
                "anthropic-ratelimit-requests-reset": reset,
                "anthropic-ratelimit-tokens-limit": "80000",
                "anthropic-ratelimit-tokens-remaining": "100",
            }
        )
    )
    assert info is not None and info.requests_remaining == 0 and info.tokens_remaining == 100
    assert info.requests_reset_s is not None and 55 <= info.requests_reset_s <= 61
    assert parse_rate_limit_headers(httpx.Headers({"content-type": "x"})) is None


@pytest.mark.parametrize(
    ("status", "message", "etype", "code", "expected"),
    [
        (
            400,
            "This model's maximum context length is 8192 tokens",
            "invalid_request_error",
            "context_length_exceeded",
            errors.ContextWindowExceeded,
        ),
        (
            400,
            "prompt is too long: 210000 tokens > 200000 maximum",
            "invalid_request_error",
            None,
            errors.ContextWindowExceeded,
        ),
        (400, "bad", "invalid_request_error", None, errors.BadRequestError),
        (400, "flagged", None, "content_filter", errors.ContentFiltered),
        (401, "no", None, None, errors.AuthenticationError),
        (403, "no", None, None, errors.PermissionDeniedError),
        (404, "no model", None, None, errors.NotFoundError),
        (408, "slow", None, None, errors.ProviderTimeout),
        (409, "conflict", None, None, errors.ServerError),
        (429, "slow down", None, None, errors.RateLimitError),
        (500, "oops", None, None, errors.ServerError),
        (529, "overloaded", "overloaded_error", None, errors.ServerError),
        (None, "Overloaded", "overloaded_error", None, errors.ServerError),
        (None, "rate", "rate_limit_error", None, errors.RateLimitError),
        (None, "bad", "invalid_request_error", None, errors.BadRequestError),
    ],
)
def test_classify_error(
    status: int | None, message: str, etype: str | None, code: str | None, expected: type
) -> None:
    assert classify_error(status, message, etype, code) is expected


def test_make_tool_call_parses_once_and_rejects_bad_json() -> None:
    call = make_tool_call("c1", "f", '{"a": [1, 2]}', provider="p", model="m")
    assert call.arguments == {"a": [1, 2]} and call.raw_arguments == '{"a": [1, 2]}'
    assert make_tool_call("c2", "g", {"b": 1}, provider="p", model="m").raw_arguments == '{"b":1}'
    with pytest.raises(errors.ProtocolError, match="invalid JSON"):
        make_tool_call("c3", "h", '{"a": ', provider="p", model="m")
    with pytest.raises(errors.ProtocolError, match="not a JSON object"):
        make_tool_call("c4", "h", "[1]", provider="p", model="m")
