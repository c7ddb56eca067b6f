"""``tierwise serve``'s ``POST /v1/responses`` with the official ``openai`` SDK as the
client, on a real loopback socket in front of ``MockLLMServer``: whichever provider
answers (OpenAI Chat Completions, Anthropic, OpenAI Responses), the caller gets a
Response object (or its event stream) the SDK parses, with the same answer both ways.
Gemini's call signatures are checked here for ``/v1/chat/completions`` too (the same
Gemini deployment): both formats must hand them back to Gemini."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

import tierwise as tw
from _serve_helpers import ServerThread, mock_models, openai_sdk, use_upstream_key, write_config
from tierwise.serve import create_app
from tierwise.testing import MockLLMServer, MockModel

openai = pytest.importorskip("openai")
pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    "strict": False,
}

# A deployment over OpenAI's Responses API (native reasoning items), a length stop, Gemini.
EXTRA = """
[providers.gem]
type = "gemini"
base_url = "{base}/v1beta"
api_key_env = "TW_SERVE_MOCK_KEY"

[models.gem]
provider = "gem"
model = "gemini-mock"

[models.native]
provider = "oai"
model = "native-mock"
api = "responses"

[models.shorty]
provider = "oai"
model = "short-mock"

[models.gthinker]
provider = "gem"
model = "gthinker-mock"
"""


def _models() -> dict[str, MockModel]:
    return {
        **mock_models(),
        "native-mock": MockModel(thinking="Think first.", reasoning_tokens=3, tokens_per_chunk=2),
        "gemini-mock": MockModel(input_tokens=9, output_tokens=4),
        "short-mock": MockModel(reply="one two three four five six seven eight nine ten " * 5),
        # Gemini 3 thinking, then a signed function call: the signature must come back.
        "gthinker-mock": MockModel(
            thinking="Weather needs the tool.", tool_calls=[("get_weather", {"city": "Paris"})]
        ),
    }


@pytest.fixture(scope="module")
def mock() -> Iterator[MockLLMServer]:
    with MockLLMServer.run_in_thread(_models()) as srv:
        yield srv


@pytest.fixture(scope="module")
def gateway(mock: MockLLMServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    use_upstream_key()
    cfg = write_config(
        tmp_path_factory.mktemp("serve-responses"), mock.base_url, EXTRA.format(base=mock.base_url)
    )
    with ServerThread(create_app(tw.Orchestrator.from_config(cfg))) as srv:
        yield srv


@pytest.fixture
def oai(gateway: ServerThread) -> Iterator[Any]:
    client = openai_sdk(gateway)
    yield client
    client.close()


def _stream(oai: Any, **kwargs: Any) -> tuple[list[Any], Any]:
    with oai.responses.stream(**kwargs) as s:
        events = list(s)
        return events, s.get_final_response()


def test_plain_text_json_and_stream_are_equal_with_usage_and_headers(oai: Any) -> None:
    raw = oai.responses.with_raw_response.create(model="gpt", input="hello", instructions="be brief")
    r = raw.parse()
    assert r.object == "response" and r.status == "completed" and r.id.startswith("resp_")
    assert r.output_text == "Mock reply from gpt-mock: hello" and r.model == "gpt-mock"
    assert (r.usage.input_tokens, r.usage.output_tokens, r.usage.total_tokens) == (11, 7, 18)
    assert r.usage.input_tokens_details.cached_tokens == 0
    assert r.usage.output_tokens_details.reasoning_tokens == 0
    assert raw.headers["x-tierwise-model"] == "gpt-mock" and raw.headers["x-tierwise-attempts"] == "1"
    assert float(raw.headers["x-tierwise-cost-usd"]) == pytest.approx((11 * 1.0 + 7 * 2.0) / 1e6)
    events, final = _stream(oai, model="gpt", input="hello", instructions="be brief")
    kinds = [e.type for e in events]
    assert kinds[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert kinds[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert len(deltas) > 2 and "".join(deltas) == r.output_text
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert final.output_text == r.output_text and final.model == "gpt-mock"
    assert final.usage.output_tokens == 7 and final.status == "completed"


def test_an_answer_from_the_anthropic_provider(oai: Any, mock: MockLLMServer) -> None:
    mock.clear_requests()
    r = oai.responses.create(
        model="claude",
        input=[
            {"role": "developer", "content": "be brief"},
            {"role": "user", "content": [{"type": "input_text", "text": "hi there"}]},
        ],
        max_output_tokens=100,
    )
    assert r.output_text == "Mock reply from claude-mock: hi there" and r.model == "claude-mock"
    assert r.usage.input_tokens == 13 and r.usage.output_tokens == 5
    sent = [q.json() for q in mock.requests if q.provider == "anthropic"][-1]
    assert sent["system"] == "be brief" or sent["system"][0]["text"] == "be brief"
    assert sent["max_tokens"] == 100
    _, final = _stream(oai, model="claude", input="hi there")
    assert final.output_text == "Mock reply from claude-mock: hi there"


def test_an_answer_from_the_gemini_provider(oai: Any, mock: MockLLMServer) -> None:
    mock.clear_requests()
    r = oai.responses.create(model="gem", input="bonjour", instructions="be brief")
    assert r.output_text == "Mock reply from gemini-mock: bonjour" and r.model == "gemini-mock"
    assert (r.usage.input_tokens, r.usage.output_tokens) == (9, 4)
    assert mock.requests[-1].provider == "gemini"
    _, final = _stream(oai, model="gem", input="bonjour", instructions="be brief")
    assert final.output_text == r.output_text


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_function_call_then_its_output_reaches_the_provider(
    oai: Any, mock: MockLLMServer, stream: bool
) -> None:
    kwargs: dict[str, Any] = {"model": "tools", "input": "weather in Paris?", "tools": [WEATHER]}
    r = _stream(oai, **kwargs)[1] if stream else oai.responses.create(**kwargs)
    calls = [o for o in r.output if o.type == "function_call"]
    assert len(calls) == 1 and calls[0].name == "get_weather"
    assert json.loads(calls[0].arguments) == {"city": "Paris"} and calls[0].call_id
    mock.clear_requests()
    follow = [
        {"role": "user", "content": "weather in Paris?"},
        *[o.model_dump(exclude_none=True) for o in r.output],
        {"type": "function_call_output", "call_id": calls[0].call_id, "output": "sunny, 21C"},
    ]
    again = oai.responses.create(model="gpt", input=follow, tools=[WEATHER])
    assert again.output_text.startswith("Mock reply from gpt-mock")
    sent = mock.requests[-1].json()["messages"]
    assert sent[-2]["role"] == "assistant" and sent[-2]["tool_calls"][0]["id"] == calls[0].call_id
    assert sent[-1] == {"role": "tool", "tool_call_id": calls[0].call_id, "content": "sunny, 21C"}


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_anthropic_thinking_survives_the_round_trip(oai: Any, stream: bool) -> None:
    """The mock Anthropic answers 400 to a tool result without the signed thinking block
    before its tool_use, as the real API does: the reasoning item must carry it."""
    kwargs: dict[str, Any] = {"model": "thinker", "input": "weather in Paris?", "tools": [WEATHER]}
    kwargs["max_output_tokens"] = 2000
    if stream:
        events, r = _stream(oai, **kwargs)
        # The item as streamed carries the signed block too, not only the closing event.
        done = [
            e.item for e in events if e.type == "response.output_item.done" and e.item.type == "reasoning"
        ]
        assert [d.encrypted_content for d in done] == [r.output[0].encrypted_content]
    else:
        r = oai.responses.create(**kwargs)
    reasoning = r.output[0]
    assert reasoning.type == "reasoning" and reasoning.encrypted_content
    assert reasoning.summary[0].text == "The user wants weather; call the tool."
    call = next(o for o in r.output if o.type == "function_call")
    follow = [
        {"role": "user", "content": "weather in Paris?"},
        *[o.model_dump(exclude_none=True) for o in r.output],
        {"type": "function_call_output", "call_id": call.call_id, "output": "sunny"},
    ]
    again = oai.responses.create(**{**kwargs, "input": follow})
    assert any(o.type == "function_call" for o in again.output)  # answered, not refused


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_gemini_call_signatures_survive_the_round_trip(oai: Any, mock: MockLLMServer, stream: bool) -> None:
    """A function_call item has no field for Gemini's thoughtSignature: it travels in a
    reasoning item after the calls and is back on the call sent to Gemini, not the skip value."""

    kwargs: dict[str, Any] = {"model": "gthinker", "input": "weather in Paris?", "tools": [WEATHER]}
    if stream:
        events, r = _stream(oai, **kwargs)
        done = [e.item for e in events if e.type == "response.output_item.done"]
        assert [d.type for d in done][-2:] == ["function_call", "reasoning"]
        assert done[-1].encrypted_content == r.output[-1].encrypted_content
    else:
        r = oai.responses.create(**kwargs)
    assert [o.type for o in r.output] == ["reasoning", "function_call", "reasoning"]
    assert r.output[0].summary[0].text == "Weather needs the tool."
    call, signed = r.output[1], r.output[2]
    assert signed.summary == [] and signed.encrypted_content.startswith("tierwise.gemini:")
    issued = _issued()
    mock.clear_requests()
    follow = [
        {"role": "user", "content": "weather in Paris?"},
        *[o.model_dump(exclude_none=True) for o in r.output],
        {"type": "function_call_output", "call_id": call.call_id, "output": "sunny"},
    ]
    oai.responses.create(**{**kwargs, "input": follow})
    turn = mock.requests[-1].json()["contents"][1]
    assert turn["role"] == "model"
    assert turn["parts"][0]["functionCall"]["name"] == "get_weather"
    assert turn["parts"][0]["thoughtSignature"] == issued
    # Without the item (a client that drops reasoning), the call goes with Google's skip value.
    mock.clear_requests()
    oai.responses.create(**{**kwargs, "input": [i for i in follow if i is not follow[3]]})
    turn = mock.requests[-1].json()["contents"][1]
    assert turn["parts"][0]["thoughtSignature"] == "skip_thought_signature_validator"


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_chat_completions_carry_gemini_signatures_as_googles_endpoint_does(
    oai: Any, mock: MockLLMServer, stream: bool
) -> None:
    """``tool_calls[].extra_content.google.thought_signature``, Google's own field: the SDK
    keeps it, the caller sends the message back, and the call reaches Gemini signed."""
    kwargs: dict[str, Any] = {
        "model": "gthinker",
        "messages": [{"role": "user", "content": "weather in Paris?"}],
        "tools": [
            {"type": "function", "function": {k: WEATHER[k] for k in ("name", "description", "parameters")}}
        ],
    }
    if stream:
        chunks = list(oai.chat.completions.create(**kwargs, stream=True))
        deltas = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
        first = deltas[0].model_dump()
        call = {
            "id": first["id"],
            "type": "function",
            "function": {
                "name": first["function"]["name"],
                "arguments": "".join(d.function.arguments or "" for d in deltas),
            },
            "extra_content": first["extra_content"],
        }
        assistant = {"role": "assistant", "content": None, "tool_calls": [call]}
    else:
        message = oai.chat.completions.create(**kwargs).choices[0].message
        assistant = message.model_dump(exclude_none=True)
        call = assistant["tool_calls"][0]
    assert call["extra_content"] == {"google": {"thought_signature": _issued()}}
    mock.clear_requests()
    follow = [
        *kwargs["messages"],
        assistant,
        {"role": "tool", "tool_call_id": call["id"], "content": "sunny"},
    ]
    oai.chat.completions.create(**{**kwargs, "messages": follow})
    turn = mock.requests[-1].json()["contents"][1]
    assert turn["role"] == "model" and turn["parts"][0]["thoughtSignature"] == _issued()


def _issued() -> str:
    """The signature the mock gives gthinker-mock's thinking (``_mock_wire.signature``)."""
    import base64
    import hashlib

    return base64.b64encode(
        hashlib.sha256(b"sig\0gthinker-mock\0Weather needs the tool.").digest() * 3
    ).decode()


def test_native_reasoning_items_go_back_unchanged(oai: Any, mock: MockLLMServer) -> None:
    from tierwise.testing._mock_responses import encrypted_reasoning

    r = oai.responses.create(model="native", input="why?", reasoning={"effort": "low"})
    item = r.output[0]
    assert item.type == "reasoning" and item.encrypted_content == encrypted_reasoning(
        "native-mock", "Think first."
    )
    assert r.usage.output_tokens_details.reasoning_tokens == 3
    assert r.output_text == "Mock reply from native-mock: why?"
    _, final = _stream(oai, model="native", input="why?", reasoning={"effort": "low"})
    assert final.output[0].encrypted_content == item.encrypted_content
    assert final.output_text == r.output_text
    mock.clear_requests()
    follow = [{"role": "user", "content": "why?"}, *[o.model_dump(exclude_none=True) for o in r.output]]
    follow.append({"role": "user", "content": "and then?"})
    oai.responses.create(model="native", input=follow)
    sent = mock.requests[-1].json()["input"]
    assert sent[1] == item.model_dump(exclude_none=True)


def test_structured_output(oai: Any) -> None:
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "temp": {"type": "integer"}},
        "required": ["city", "temp"],
        "additionalProperties": False,
    }
    fmt = {"format": {"type": "json_schema", "name": "w", "schema": schema, "strict": True}}
    r = oai.responses.create(model="gpt", input="weather as JSON", text=fmt)
    value = json.loads(r.output_text)
    assert set(value) == {"city", "temp"} and isinstance(value["temp"], int)


def test_a_length_stop_is_incomplete(oai: Any) -> None:
    r = oai.responses.create(model="shorty", input="count", max_output_tokens=5)
    assert r.status == "incomplete" and r.incomplete_details.reason == "max_output_tokens"
    assert r.output_text and r.output[0].status == "incomplete"
    events = list(oai.responses.create(model="shorty", input="count", max_output_tokens=5, stream=True))
    assert events[-1].type == "response.incomplete"
    assert events[-1].response.incomplete_details.reason == "max_output_tokens"
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == r.output_text


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": "x", "previous_response_id": "resp_1"}, "previous_response_id"),
        ({"input": "x", "background": True}, "background"),
        ({"input": "x", "tools": [{"type": "web_search"}]}, "tools[0].type"),
        ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input[0].type"),
        ({"input": "x", "frobnicate": 1}, "frobnicate"),
        ({"input": []}, "input"),
        ({"input": "x", "max_output_tokens": "many"}, "max_output_tokens"),
    ],
)
def test_bad_input_is_a_400_naming_the_field(oai: Any, body: dict[str, Any], param: str) -> None:
    with pytest.raises(openai.BadRequestError) as bad:
        oai.responses.create(model="gpt", **{"input": body.pop("input")}, extra_body=body)
    assert bad.value.body["param"] == param and bad.value.body["type"] == "invalid_request_error"


def test_a_failure_before_the_first_token_is_hidden_by_fallback(oai: Any, mock: MockLLMServer) -> None:
    before = mock.stats["flaky-mock"].requests if "flaky-mock" in mock.stats else 0
    raw = oai.responses.with_raw_response.create(model="flaky", input="hi")
    r = raw.parse()
    assert r.output_text == "Mock reply from claude-mock: hi" and r.model == "claude-mock"
    assert raw.headers["x-tierwise-attempts"] == "2"
    _, final = _stream(oai, model="flaky", input="hi")
    assert final.output_text == r.output_text and final.model == "claude-mock"
    assert mock.stats["flaky-mock"].requests - before == 2


def test_a_failure_mid_stream_is_a_response_failed_event(oai: Any) -> None:
    events = list(oai.responses.create(model="staller", input="tell me", stream=True))
    assert any(e.type == "response.output_text.delta" for e in events)
    assert events[-1].type == "response.failed"
    assert events[-1].response.status == "failed" and events[-1].response.error.code == "server_error"


def test_unknown_model_is_a_404(oai: Any) -> None:
    with pytest.raises(openai.NotFoundError):
        oai.responses.create(model="no-such-model", input="x")
