"""A key planted and reflected by a hostile upstream, through the orchestrator; and the
edges of the stream/JSON content-type rule and of the boundary normalization.

The key here has no telling shape (no ``sk-``/``AIza`` prefix), so the generic
secret patterns of ``redact`` cannot catch it: only the provider passing its own
key to every redaction of wire text keeps it out. Every upstream is a raw loopback
server sending exact bytes (``raw_server`` from test_hostile_replies).
"""

from __future__ import annotations

import json
import re
import traceback
from typing import Any

import pytest
from hypothesis import strategies as st

import tierwise as tw
from test_hostile_replies import FIXTURES, JSON, SSE, Reply, raw_server
from tierwise.catalog import ModelSpec
from tierwise.errors import ProtocolError, ProviderError, TierwiseError
from tierwise.execution.budget import BudgetLedger, BudgetLimit
from tierwise.execution.executor import Deployment
from tierwise.execution.limits import RateLimiter
from tierwise.execution.retry import RetryPolicy
from tierwise.providers.anthropic import Anthropic
from tierwise.providers.base import Provider
from tierwise.providers.gemini import Gemini
from tierwise.providers.openai import OpenAI
from tierwise.types import Done, Request, Response, StreamEvent

# 28 mixed-case alphanumerics: no prefix any generic pattern knows.
KEY = "Qm4Rt7Wx2Zc9Vb8NnPl4ntedKyHh"
KINDS = ["openai", "anthropic", "gemini"]


def make(kind: str, base: str) -> Provider:
    if kind == "openai":
        return OpenAI(api_key=KEY, base_url=base + "/v1")
    if kind == "anthropic":
        return Anthropic(api_key=KEY, base_url=base)
    return Gemini(api_key=KEY, base_url=base + "/v1beta")


def texts_of(value: Any) -> list[str]:
    """Every text an exception (or a response) shows: str, repr, traceback, its
    fields, its sub-exceptions and its attempts."""
    out = [str(value), repr(value)]
    if isinstance(value, BaseException):
        out.append("".join(traceback.format_exception(value)))
        out += [repr(v) for v in vars(value).values()]
        out += [repr(v) for v in value.args]
        for inner in getattr(value, "exceptions", ()):
            out += texts_of(inner)
    out += [repr(a) for a in getattr(value, "attempts", ())]
    return out


def assert_clean(value: Any) -> None:
    for text in texts_of(value):
        assert KEY not in text, text


# Every place an error body, its headers or a stream can put text.
REFLECT_HEADERS = {"x-request-id": KEY, "request-id": KEY, "x-litellm-call-id": KEY}
ERROR_BODY = json.dumps(
    {
        "type": "error",
        "request_id": KEY,
        "error": {
            "message": f"invalid key {KEY}",
            "type": f"overloaded_error {KEY}",
            "code": f"server_error {KEY}",
            "status": f"UNAVAILABLE {KEY}",
            "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": KEY}],
        },
    }
).encode()
OK_BODY = {
    "openai": (FIXTURES / "openai" / "chat_text.json").read_bytes(),
    "anthropic": (FIXTURES / "anthropic" / "text.json").read_bytes(),
    "gemini": (FIXTURES / "gemini" / "text.json").read_bytes(),
}
OK_STREAM = {
    "openai": (FIXTURES / "openai" / "chat_text.sse").read_bytes(),
    "anthropic": (FIXTURES / "anthropic" / "stream_text.sse").read_bytes(),
    "gemini": (FIXTURES / "gemini" / "stream_text.sse").read_bytes(),
}
# An in-band error event after HTTP 200, in each wire format's own shape.
INBAND = {
    "openai": b"data: " + ERROR_BODY + b"\n\n",
    "anthropic": b"event: error\ndata: " + ERROR_BODY + b"\n\n",
    "gemini": b"data: " + ERROR_BODY + b"\n\n",
}

HOSTILE: list[tuple[str, Reply]] = [
    ("503 body and headers", (503, {**JSON, **REFLECT_HEADERS}, ERROR_BODY)),
    ("429 body and headers", (429, {**JSON, **REFLECT_HEADERS, "retry-after": "0"}, ERROR_BODY)),
    ("malformed 200", (200, {**JSON, **REFLECT_HEADERS}, b'{"choices": [{"oops": "' + KEY.encode() + b'"')),
    (
        "wrong-shaped 200",
        (200, {**JSON, **REFLECT_HEADERS}, json.dumps({"content": KEY, "choices": KEY}).encode()),
    ),
    ("in-band error in a 200 body", (200, {**JSON, **REFLECT_HEADERS}, ERROR_BODY)),
]


def orchestrator(provider: Provider, attempts: int) -> tw.Orchestrator:
    dep = Deployment("m", provider, "m", spec=ModelSpec("m", "x", input=1.0, output=1.0))
    retry = RetryPolicy(max_attempts=attempts, initial_backoff=0.0, jitter=False)
    return tw.Orchestrator([dep], retry=retry, log_level=None)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("case", "reply"), HOSTILE, ids=[c for c, _ in HOSTILE])
async def test_a_reflected_key_is_absent_from_errors_and_attempts(kind: str, case: str, reply: Reply) -> None:
    calls = {"n": 0}

    def first_hostile(_: dict[str, Any]) -> Reply:
        calls["n"] += 1
        return reply if calls["n"] == 1 else (200, JSON, OK_BODY[kind])

    request = Request.from_prompt("hi", max_tokens=5)
    async with raw_server(lambda _: reply) as base:
        async with make(kind, base) as provider:
            with pytest.raises(TierwiseError) as direct:
                await provider.complete("m", request)
            with pytest.raises(TierwiseError) as streamed:
                async for _ in provider.stream("m", request):
                    pass
        async with orchestrator(make(kind, base), attempts=1) as orch:
            with pytest.raises(TierwiseError) as routed:
                await orch.run(request)
    assert_clean(direct.value)
    assert_clean(streamed.value)
    assert_clean(routed.value)
    assert routed.value.attempts  # type: ignore[attr-defined]  # the audit trail is there, clean
    # A retryable failure followed by a good answer: the failed try lives on in
    # Response.attempts, which the caller logs and audits.
    if isinstance(direct.value, ProviderError) and direct.value.retryable:
        async with raw_server(first_hostile) as base, orchestrator(make(kind, base), attempts=2) as orch:
            resp = await orch.run(request)
        assert [a.outcome for a in resp.attempts] == ["error", "ok"]
        assert_clean(resp)
        assert all(KEY not in (a.error or "") for a in resp.attempts)


@pytest.mark.parametrize("kind", KINDS)
async def test_a_key_in_an_inband_stream_error_is_absent_directly_and_through_the_orchestrator(
    kind: str,
) -> None:
    headers = {**SSE, **REFLECT_HEADERS}
    request = Request.from_prompt("hi", max_tokens=5)
    async with raw_server(lambda _: (200, headers, INBAND[kind])) as base:
        async with make(kind, base) as provider:
            with pytest.raises(ProviderError) as direct:
                async for _ in provider.stream("m", request):
                    pass
        async with orchestrator(make(kind, base), attempts=1) as orch:
            with pytest.raises(TierwiseError) as routed:
                async for _ in orch.stream(request):
                    pass
    assert_clean(direct.value)
    assert_clean(routed.value)
    calls = {"n": 0}

    def first_inband(_: dict[str, Any]) -> Reply:
        calls["n"] += 1
        return (200, headers, INBAND[kind]) if calls["n"] == 1 else (200, SSE, OK_STREAM[kind])

    if direct.value.retryable:
        async with raw_server(first_inband) as base, orchestrator(make(kind, base), attempts=2) as orch:
            events = [e async for e in orch.stream(request)]
        final = events[-1]
        assert isinstance(final, Done) and final.response.attempts[0].outcome == "error"
        assert_clean(final.response)


@pytest.mark.parametrize("kind", KINDS)
async def test_a_reflected_request_id_on_a_good_reply_is_redacted(kind: str) -> None:
    async with raw_server(
        lambda _: (200, {**JSON, "x-request-id": KEY, "request-id": KEY}, OK_BODY[kind])
    ) as base:
        async with make(kind, base) as provider:
            resp = await provider.complete("m", Request.from_prompt("hi", max_tokens=5))
    assert resp.request_id is not None and KEY not in resp.request_id


# -- the stream/JSON content-type rule, at its edges -----------------------------------


@pytest.mark.parametrize("kind", KINDS)
async def test_events_mislabelled_as_json_are_read_as_the_stream_they_are(kind: str) -> None:
    """A server that labels its event stream ``application/json`` still streams: the
    body is events, not a JSON reply that will never parse (and must not be failed as
    a non-retryable "JSON to a stream request")."""
    async with raw_server(lambda _: (200, JSON, OK_STREAM[kind])) as base, make(kind, base) as provider:
        labelled_json = [e async for e in provider.stream("m", Request.from_prompt("hi", max_tokens=5))]
    async with raw_server(lambda _: (200, SSE, OK_STREAM[kind])) as base, make(kind, base) as provider:
        proper = [e async for e in provider.stream("m", Request.from_prompt("hi", max_tokens=5))]
    assert isinstance(labelled_json[-1], Done) and isinstance(proper[-1], Done)
    assert labelled_json[-1].response == proper[-1].response
    assert labelled_json[-1].response.text


async def test_an_empty_json_body_answering_a_stream_is_a_retryable_cut() -> None:
    """No bytes at all is a cut connection, which a retry may fix, not "the server
    answered JSON" (which it did not)."""
    async with raw_server(lambda _: (200, JSON, b"")) as base, make("openai", base) as provider:
        with pytest.raises(ProtocolError) as info:
            async for _ in provider.stream("m", Request.from_prompt("hi")):
                pass
    assert info.value.retryable is True and "truncated" in info.value.message


# -- a cut at the token limit, by a compatible server's own word ---------------------------


async def test_mistral_model_length_inside_tool_arguments_keeps_the_call_flagged() -> None:
    """Mistral says ``model_length`` where OpenAI says ``length``; the rule "a reply
    cut at its limit never raises for its truncated arguments" follows the mapped
    finish reason, not the literal word."""
    body = json.dumps(
        {
            "id": "c",
            "model": "mistral-small",
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "model_length",
                    "message": {
                        "role": "assistant",
                        "content": "",
                        "tool_calls": [
                            {"id": "t1", "function": {"name": "search", "arguments": '{"query": "tier'}}
                        ],
                    },
                }
            ],
            "usage": {"prompt_tokens": 9, "completion_tokens": 16},
        }
    ).encode()
    async with raw_server(lambda _: (200, JSON, body)) as base:
        async with OpenAI(api_key=KEY, base_url=base + "/v1", compat="mistral") as provider:
            resp = await provider.complete("mistral-small", Request.from_prompt("hi"))
    assert resp.finish_reason == "length"
    (call,) = resp.tool_calls
    assert call.incomplete and call.arguments == {} and call.raw_arguments == '{"query": "tier'


async def test_a_legacy_function_call_cut_at_length_is_kept_flagged() -> None:
    body = json.dumps(
        {
            "choices": [
                {
                    "finish_reason": "length",
                    "message": {
                        "role": "assistant",
                        "function_call": {"name": "f", "arguments": '{"a": [1,'},
                    },
                }
            ]
        }
    ).encode()
    async with raw_server(lambda _: (200, JSON, body)) as base, make("openai", base) as provider:
        resp = await provider.complete("m", Request.from_prompt("hi"))
    assert resp.finish_reason == "length" and resp.tool_calls[0].incomplete


# -- boundary normalization of tool calls --------------------------------------------------


async def test_tool_call_ids_and_names_of_the_wrong_type_are_normalized() -> None:
    """A number becomes its string; an object is no id (``call_<i>``) and no name."""
    calls = [
        {"id": 7, "function": {"name": 12, "arguments": "{}"}},
        {"id": {"x": 1}, "function": {"name": ["f"], "arguments": "{}"}},
    ]
    body = json.dumps(
        {"choices": [{"finish_reason": "tool_calls", "message": {"content": None, "tool_calls": calls}}]}
    ).encode()
    async with raw_server(lambda _: (200, JSON, body)) as base, make("openai", base) as provider:
        resp = await provider.complete("m", Request.from_prompt("hi"))
    assert [(c.id, c.name) for c in resp.tool_calls] == [("7", "12"), ("call_1", "")]


_NON_NUMBERS = ['"12"', "true", "[3]", '{"n": 3}']


def _with_input_count(kind: str, raw: str, stream: bool) -> bytes:
    """A recorded reply whose prompt-token count(s) are replaced by ``raw`` (the old
    value is kept under a throwaway key, so the JSON stays well-formed)."""
    field = {"openai": b"prompt_tokens", "anthropic": b"input_tokens", "gemini": b"promptTokenCount"}[kind]
    body = OK_STREAM[kind] if stream else OK_BODY[kind]
    return re.sub(b'"' + field + rb'":\s*', b'"' + field + b'": ' + raw.encode() + b', "_": ', body)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
async def test_a_token_count_that_is_no_number_counts_zero_in_every_adapter(kind: str, stream: bool) -> None:
    """One rule for all adapters (``token_count``): a string, a bool or a container
    where a count belongs is dropped to 0 and the answer kept, never a failed call in
    one adapter and a silent 0 in another."""
    for raw in _NON_NUMBERS:
        body = _with_input_count(kind, raw, stream)
        assert raw.encode() in body
        headers = SSE if stream else JSON
        reply = (200, headers, body)
        async with raw_server(lambda _, r=reply: r) as base, make(kind, base) as provider:  # type: ignore[misc]
            request = Request.from_prompt("hi", max_tokens=5)
            if stream:
                final = [e async for e in provider.stream("m", request)][-1]
                assert isinstance(final, Done)
                resp = final.response
            else:
                resp = await provider.complete("m", request)
        assert resp.text, raw
        # Anthropic adds cache counts to input; none of the recorded replies has any.
        assert resp.usage.input_tokens == 0, (raw, resp.usage)
        assert resp.usage.output_tokens > 0, (raw, resp.usage)


# -- streams fuzzed through the orchestrator: typed errors only, nothing leaked ---------

_SEEDS = {
    kind: [OK_STREAM[kind], (FIXTURES / kind / name).read_bytes()]
    for kind, name in (
        ("openai", "chat_tool_calls.sse"),
        ("anthropic", "stream_tool_calls.sse"),
        ("gemini", "stream_function_calls.sse"),
    )
}
_HOSTILE_VALUES = st.sampled_from(
    [b"Infinity", b"-Infinity", b"NaN", b"-1", b"1e400", b"9" * 400, b'"x"', b"null", b"[]", b"{}", b"true",
     b"[" * 3000, b'"' + KEY.encode() + b'"']
)  # fmt: skip


@st.composite
def mutated_stream(draw: st.DrawFn, kind: str) -> bytes:
    body = draw(st.sampled_from(_SEEDS[kind]))
    how = draw(st.sampled_from(["value", "truncate", "drop-event"]))
    if how == "truncate":
        return body[: draw(st.integers(0, len(body)))]
    if how == "drop-event":
        events = body.split(b"\n\n")
        del events[draw(st.integers(0, len(events) - 1))]
        return b"\n\n".join(events)
    colons = [i for i, b in enumerate(body) if b == 58 and body[i + 1 : i + 2] == b" "] or [0]
    at = draw(st.sampled_from(colons)) + 2
    end = at
    while end < len(body) and body[end] not in b",}]\n":
        end += 1
    return body[:at] + draw(_HOSTILE_VALUES) + body[end:]


@pytest.mark.parametrize("kind", KINDS)
async def test_fuzzed_streams_through_the_orchestrator_leave_the_deployment_whole(kind: str) -> None:
    from test_hostile_replies import _draw

    current = {"body": b""}

    def reply(request: dict[str, Any]) -> Reply:
        if "fine" in json.dumps(request):
            return 200, SSE, OK_STREAM[kind]
        return 200, SSE, current["body"]

    async with raw_server(reply) as base:
        limiter = RateLimiter(max_concurrency=1)
        budget = BudgetLedger([BudgetLimit(limit_usd=0.05, period="total")])
        spec = ModelSpec("m", kind, input=1.0, output=1.0)
        dep = Deployment("m", make(kind, base), "m", spec=spec, limiter=limiter, max_output_tokens=100)
        async with tw.Orchestrator(
            [dep], budget=budget, retry=RetryPolicy(max_attempts=1), log_level=None
        ) as orch:
            for body in _draw(mutated_stream(kind), 60):
                current["body"] = body
                events: list[StreamEvent] = []
                try:
                    async for event in orch.stream(Request.from_prompt("x", max_tokens=5)):
                        events.append(event)
                except TierwiseError as exc:
                    assert_clean(exc)
                else:
                    final = events[-1]
                    assert isinstance(final, Done) and isinstance(final.response, Response)
                    assert isinstance(final.response.model, str) and isinstance(final.response.text, str)
                    u = final.response.usage
                    assert all(type(v) is int and v >= 0 for v in (u.input_tokens, u.output_tokens))
                assert limiter.in_flight == 0 and budget.reserved("total", "total") == 0.0
            follow = [e async for e in orch.stream(Request.from_prompt("fine", max_tokens=5))]
            assert isinstance(follow[-1], Done) and follow[-1].response.text  # the deployment is whole
