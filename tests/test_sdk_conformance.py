"""MockLLMServer against the official SDKs: whatever they send is answered in a shape
they parse, and what the real APIs reject is rejected the same way.

The ``openai``, ``anthropic`` and ``google-genai`` packages are test-only
dependencies (the ``dev`` extra). Every test also checks that no SDK request fell
through to the mock's unknown-path 404 (``/_mock/stats`` ``unanswered``): a new SDK
request shape that the mock does not serve fails here.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tierwise.testing import MockLLMServer, MockModel

openai = pytest.importorskip("openai")
anthropic = pytest.importorskip("anthropic")
genai = pytest.importorskip("google.genai")

MODELS = {
    "gpt-mock": MockModel(input_tokens=11, output_tokens=7),
    "claude-mock": MockModel(input_tokens=13, output_tokens=5),
    "gemini-mock": MockModel(input_tokens=9, output_tokens=4),
    "tools-mock": MockModel(tool_calls=[("get_weather", {"city": "Paris"})]),
    "busy-mock": MockModel(faults=["429"], cycle_faults=True, retry_after_s=0.0),
    "embed-mock": MockModel(),
    "think-mock": MockModel(
        thinking="Check the city first.",
        tool_calls=[("get_weather", {"city": "Paris"}), ("get_time", {"tz": "CET"})],
        reasoning_tokens=6,
        cached_tokens=2,
        input_tokens=12,
    ),
}


@pytest.fixture(scope="module")
def server() -> Iterator[MockLLMServer]:
    with MockLLMServer.run_in_thread(MODELS) as srv:
        yield srv


@pytest.fixture(autouse=True)
def _every_request_answered(server: MockLLMServer) -> Iterator[None]:
    yield
    stats = httpx.get(server.base_url + "/_mock/stats").json()
    assert stats["unanswered"] == 0, f"an SDK request hit no route: {stats['paths']}"


# -- OpenAI ---------------------------------------------------------------------------


@pytest.fixture
def oai(server: MockLLMServer) -> Any:
    client = openai.OpenAI(api_key="sk-test", base_url=server.base_url + "/v1", max_retries=0)
    yield client
    client.close()


def test_openai_chat_json_and_usage(oai: Any) -> None:
    r = oai.chat.completions.create(model="gpt-mock", messages=[{"role": "user", "content": "hello"}])
    assert r.choices[0].message.content == "Mock reply from gpt-mock: hello"
    assert r.usage.prompt_tokens == 11 and r.usage.completion_tokens == 7
    assert r.choices[0].finish_reason == "stop"


def test_openai_stream_with_usage(oai: Any) -> None:
    chunks = list(
        oai.chat.completions.create(
            model="gpt-mock",
            messages=[{"role": "user", "content": "stream me"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Mock reply from gpt-mock: stream me"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 7


def test_openai_tools_and_n(oai: Any) -> None:
    r = oai.chat.completions.create(
        model="tools-mock",
        messages=[{"role": "user", "content": "weather?"}],
        tools=[{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}],
    )
    call = r.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Paris"}
    r = oai.chat.completions.create(model="gpt-mock", messages=[{"role": "user", "content": "x"}], n=2)
    assert [c.index for c in r.choices] == [0, 1]


def test_openai_structured_output_parses(oai: Any) -> None:
    from pydantic import BaseModel

    class Ticket(BaseModel):
        title: str
        priority: int
        tags: list[str]

    r = oai.chat.completions.parse(
        model="gpt-mock", messages=[{"role": "user", "content": "file a ticket"}], response_format=Ticket
    )
    parsed = r.choices[0].message.parsed
    assert isinstance(parsed, Ticket) and parsed.tags
    r = oai.chat.completions.create(
        model="gpt-mock",
        messages=[{"role": "user", "content": "json please"}],
        response_format={"type": "json_object"},
    )
    assert json.loads(r.choices[0].message.content) == {"answer": "json please"}


def test_openai_embeddings_models_and_completions(oai: Any) -> None:
    e = oai.embeddings.create(model="embed-mock", input=["a", "b"])
    assert len(e.data) == 2 and len(e.data[0].embedding) > 0
    names = [m.id for m in oai.models.list()]
    assert "gpt-mock" in names
    assert oai.models.retrieve("gpt-mock").id == "gpt-mock"
    c = oai.completions.create(model="gpt-mock", prompt="complete this", max_tokens=20)
    assert c.choices[0].text.startswith("Mock reply from gpt-mock")
    streamed = "".join(
        x.choices[0].text for x in oai.completions.create(model="gpt-mock", prompt="s", stream=True)
    )
    assert streamed.startswith("Mock reply from gpt-mock")


def test_openai_errors_are_the_sdks_own_types(oai: Any) -> None:
    with pytest.raises(openai.RateLimitError):
        oai.chat.completions.create(model="busy-mock", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.BadRequestError, match="messages"):
        oai.chat.completions.create(model="gpt-mock", messages=[])
    with pytest.raises(openai.NotFoundError):
        oai.models.retrieve("no-such-model")


# -- Anthropic ------------------------------------------------------------------------


def test_openai_responses_create_plain(oai: Any) -> None:
    r = oai.responses.create(model="gpt-mock", input="hello")
    assert r.output_text == "Mock reply from gpt-mock: hello"
    assert r.status == "completed" and r.usage.input_tokens == 11 and r.usage.output_tokens == 7
    r = oai.responses.create(
        model="think-mock",
        input=[{"role": "user", "content": "weather and time?"}],
        tools=[{"type": "function", "name": "get_weather", "parameters": {"type": "object"}}],
        include=["reasoning.encrypted_content"],
        store=False,
    )
    kinds = [item.type for item in r.output]
    assert kinds == ["reasoning", "function_call", "function_call"]
    reasoning = r.output[0]
    assert reasoning.summary[0].text == "Check the city first." and reasoning.encrypted_content
    assert json.loads(r.output[1].arguments) == {"city": "Paris"} and r.output[2].name == "get_time"
    assert r.usage.output_tokens_details.reasoning_tokens == 6
    assert r.usage.input_tokens_details.cached_tokens == 2
    # The next turn sends the items back, as the SDK's docs show; the mock accepts them.
    follow = oai.responses.create(
        model="gpt-mock",
        input=[
            {"role": "user", "content": "weather and time?"},
            *[item.model_dump(exclude_none=True) for item in r.output],
            {"type": "function_call_output", "call_id": r.output[1].call_id, "output": "sunny"},
            {"type": "function_call_output", "call_id": r.output[2].call_id, "output": "noon"},
        ],
    )
    assert follow.output_text.startswith("Mock reply from gpt-mock")
    # Without include, no encrypted content (as the real API).
    plain = oai.responses.create(model="think-mock", input="x")
    assert plain.output[0].encrypted_content is None


def test_openai_responses_stream(oai: Any) -> None:
    kinds: list[str] = []
    text: list[str] = []
    with oai.responses.stream(model="gpt-mock", input="stream me") as stream:
        for event in stream:
            kinds.append(event.type)
            if event.type == "response.output_text.delta":
                text.append(event.delta)
        final = stream.get_final_response()
    assert "".join(text) == "Mock reply from gpt-mock: stream me" == final.output_text
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    args: list[str] = []
    summary: list[str] = []
    for event in oai.responses.create(model="think-mock", input="go", stream=True):
        if event.type == "response.function_call_arguments.delta":
            args.append(event.delta)
        elif event.type == "response.reasoning_summary_text.delta":
            summary.append(event.delta)
        elif event.type == "response.completed":
            done = event.response
    assert "".join(summary) == "Check the city first."
    assert "".join(args) == '{"city": "Paris"}{"tz": "CET"}'
    assert [i.type for i in done.output] == ["reasoning", "function_call", "function_call"]


def test_openai_responses_errors(oai: Any) -> None:
    with pytest.raises(openai.RateLimitError):
        oai.responses.create(model="busy-mock", input="x")
    with pytest.raises(openai.BadRequestError, match="input"):
        oai.responses.create(model="gpt-mock")  # type: ignore[call-overload]


@pytest.fixture
def ant(server: MockLLMServer) -> Any:
    client = anthropic.Anthropic(api_key="sk-ant-test", base_url=server.base_url, max_retries=0)
    yield client
    client.close()


def test_anthropic_messages_json_stream_and_tools(ant: Any) -> None:
    r = ant.messages.create(model="claude-mock", max_tokens=64, messages=[{"role": "user", "content": "hi"}])
    assert r.content[0].text == "Mock reply from claude-mock: hi"
    assert r.usage.input_tokens == 13 and r.usage.output_tokens == 5
    with ant.messages.stream(
        model="claude-mock", max_tokens=64, messages=[{"role": "user", "content": "go"}]
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "Mock reply from claude-mock: go" and final.usage.output_tokens == 5
    r = ant.messages.create(
        model="tools-mock",
        max_tokens=64,
        messages=[{"role": "user", "content": "weather?"}],
        tools=[{"name": "get_weather", "input_schema": {"type": "object"}}],
    )
    block = next(b for b in r.content if b.type == "tool_use")
    assert block.name == "get_weather" and block.input == {"city": "Paris"}


def test_anthropic_thinking_blocks_json_and_stream(ant: Any) -> None:
    r = ant.messages.create(
        model="think-mock",
        max_tokens=2048,
        thinking={"type": "enabled", "budget_tokens": 1024},
        messages=[{"role": "user", "content": "weather?"}],
    )
    assert [b.type for b in r.content] == ["thinking", "tool_use", "tool_use"]
    assert r.content[0].thinking == "Check the city first." and r.content[0].signature
    with ant.messages.stream(
        model="think-mock",
        max_tokens=2048,
        thinking={"type": "enabled", "budget_tokens": 1024},
        messages=[{"role": "user", "content": "weather?"}],
    ) as stream:
        final = stream.get_final_message()
    assert final.content[0].type == "thinking" and final.content[0].signature == r.content[0].signature
    # The signed block goes back with the tool results; the mock accepts the turn.
    follow = ant.messages.create(
        model="claude-mock",
        max_tokens=64,
        messages=[
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "content": [b.model_dump() for b in r.content]},
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": b.id, "content": "ok"} for b in r.content[1:]
                ],
            },
        ],
    )
    assert follow.content[0].text.startswith("Mock reply")


def test_token_counting_endpoints(ant: Any, gem: Any, oai: Any) -> None:
    counted = ant.messages.count_tokens(model="claude-mock", messages=[{"role": "user", "content": "hi"}])
    assert counted.input_tokens == 13  # the model's fixed input size, as generation reports
    assert gem.models.count_tokens(model="gemini-mock", contents="hello").total_tokens == 9
    assert oai.responses.input_tokens.count(model="gpt-mock", input="hello").input_tokens == 11
    with pytest.raises(anthropic.NotFoundError):
        ant.messages.count_tokens(model="no-such-model", messages=[{"role": "user", "content": "x"}])


def test_anthropic_models_and_errors(ant: Any) -> None:
    names = [m.id for m in ant.models.list()]
    assert "claude-mock" in names
    assert ant.models.retrieve("claude-mock").id == "claude-mock"
    with pytest.raises(anthropic.RateLimitError):
        ant.messages.create(model="busy-mock", max_tokens=8, messages=[{"role": "user", "content": "x"}])
    # The real API rejects a system turn inside messages; so does the mock.
    with pytest.raises(anthropic.BadRequestError, match="system"):
        ant.messages.create(
            model="claude-mock",
            max_tokens=8,
            messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "x"}],
        )
    with pytest.raises(anthropic.NotFoundError):
        ant.models.retrieve("no-such-model")


# -- Gemini ---------------------------------------------------------------------------


@pytest.fixture
def gem(server: MockLLMServer) -> Any:
    from google.genai import types

    return genai.Client(api_key="g-test", http_options=types.HttpOptions(base_url=server.base_url))


def test_gemini_generate_stream_and_embed(gem: Any) -> None:
    r = gem.models.generate_content(model="gemini-mock", contents="hello")
    assert r.text == "Mock reply from gemini-mock: hello"
    assert r.usage_metadata.prompt_token_count == 9
    text = "".join(
        c.text or "" for c in gem.models.generate_content_stream(model="gemini-mock", contents="s")
    )
    assert text == "Mock reply from gemini-mock: s"
    e = gem.models.embed_content(model="embed-mock", contents=["a", "b"])
    assert len(e.embeddings) == 2


def test_gemini_thought_parts_and_signatures(gem: Any) -> None:
    r = gem.models.generate_content(model="think-mock", contents="weather?")
    parts = r.candidates[0].content.parts
    assert parts[0].thought is True and parts[0].text == "Check the city first."
    calls = [p for p in parts if p.function_call is not None]
    assert calls[0].thought_signature and calls[1].thought_signature is None
    assert [c.function_call.name for c in calls] == ["get_weather", "get_time"]
    streamed = [
        p
        for c in gem.models.generate_content_stream(model="think-mock", contents="w")
        for p in c.candidates[0].content.parts
    ]
    assert streamed[0].thought is True


def test_openai_chat_reasoning_content(oai: Any) -> None:
    r = oai.chat.completions.create(model="think-mock", messages=[{"role": "user", "content": "w"}])
    assert r.choices[0].message.model_extra["reasoning_content"] == "Check the city first."


def test_gemini_json_mode_models_and_errors(gem: Any) -> None:
    from google.genai import errors, types

    config = types.GenerateContentConfig(
        response_mime_type="application/json",
        response_schema={
            "type": "OBJECT",
            "properties": {"city": {"type": "STRING"}, "days": {"type": "INTEGER"}},
        },
    )
    r = gem.models.generate_content(model="gemini-mock", contents="plan a trip", config=config)
    data = json.loads(r.text)
    assert isinstance(data["city"], str) and isinstance(data["days"], int)
    names = [m.name for m in gem.models.list()]
    assert "models/gemini-mock" in names
    assert gem.models.get(model="gemini-mock").name == "models/gemini-mock"
    with pytest.raises(errors.ClientError):
        gem.models.generate_content(model="busy-mock", contents="x")
