"""``tierwise serve`` with the official ``openai`` and ``anthropic`` SDKs as clients,
in front of a real loopback ``MockLLMServer``: the reply is in the caller's
format whatever provider answered, failures before the first token are
invisible, a stall mid-stream ends the stream with an error event, and keys,
limits and the operations routes behave as documented (docs/serve.md)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import tierwise as tw
from _serve_helpers import UPSTREAM_KEY, ServerThread, mock_models, openai_sdk, use_upstream_key, write_config
from tierwise.serve import KeyRing, create_app, hash_key
from tierwise.testing import MockLLMServer

openai = pytest.importorskip("openai")
anthropic = pytest.importorskip("anthropic")
pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}

KEY_A, KEY_B, KEY_C = "sk-team-a-secret-0001", "sk-team-b-secret-0002", "sk-team-c-secret-0003"
_AUDIT: dict[str, Path] = {}


class _Boom(tw.strategies.single.Single):
    """A strategy with a bug: what the caller sees of an unexpected exception."""

    async def run(self, request: tw.Request, ctx: Any) -> tw.Response:
        raise RuntimeError("internal detail /etc/secret-path")


@pytest.fixture(scope="module")
def mock() -> Iterator[MockLLMServer]:
    with MockLLMServer.run_in_thread(mock_models()) as srv:
        yield srv


@pytest.fixture(scope="module")
def gateway(mock: MockLLMServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    use_upstream_key()
    cfg = write_config(tmp_path_factory.mktemp("serve"), mock.base_url, "[telemetry]\nprometheus = true\n")
    orch = tw.Orchestrator.from_config(cfg)
    orch.add_strategy("boom", _Boom("gpt", name="boom"))
    with ServerThread(create_app(orch)) as srv:
        yield srv


@pytest.fixture
def oai(gateway: ServerThread) -> Iterator[Any]:
    client = openai_sdk(gateway)
    yield client
    client.close()


@pytest.fixture
def ant(gateway: ServerThread) -> Iterator[Any]:
    client = anthropic.Anthropic(api_key="anything", base_url=gateway.base_url, max_retries=0, timeout=10)
    yield client
    client.close()


# -- OpenAI format ---------------------------------------------------------------------


def test_openai_plain_reply_with_tierwise_headers(oai: Any) -> None:
    raw = oai.chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": "hello"}]
    )
    r = raw.parse()
    assert r.choices[0].message.content == "Mock reply from gpt-mock: hello"
    assert r.model == "gpt-mock"
    assert (r.usage.prompt_tokens, r.usage.completion_tokens) == (11, 7)
    assert r.choices[0].finish_reason == "stop"
    assert raw.headers["x-tierwise-route"] == "default"
    assert raw.headers["x-tierwise-attempts"] == "1"
    # 11 input tokens at $1/M + 7 output at $2/M.
    assert float(raw.headers["x-tierwise-cost-usd"]) == pytest.approx((11 * 1.0 + 7 * 2.0) / 1e6)


def test_openai_request_id_propagates(oai: Any, gateway: ServerThread) -> None:
    r = httpx.post(
        gateway.base_url + "/v1/chat/completions",
        json={"model": "gpt", "messages": [{"role": "user", "content": "hi"}]},
        headers={"x-request-id": "req-abc.123"},
    )
    assert r.status_code == 200 and r.headers["x-request-id"] == "req-abc.123"
    # A header that is not a plain id is replaced by a fresh one, never echoed.
    r = httpx.post(
        gateway.base_url + "/v1/chat/completions",
        json={"model": "gpt", "messages": [{"role": "user", "content": "hi"}]},
        headers={"x-request-id": "bad id\twith spaces"},
    )
    assert r.headers["x-request-id"] != "bad id\twith spaces" and len(r.headers["x-request-id"]) == 32


def test_openai_stream_with_usage(oai: Any) -> None:
    chunks = list(
        oai.chat.completions.create(
            model="gpt",
            messages=[{"role": "user", "content": "stream me"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Mock reply from gpt-mock: stream me"
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 2  # really streamed
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finish == ["stop"]
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 7
    assert chunks[-1].model == "gpt-mock"


def test_openai_stream_without_usage_has_no_usage_chunk(oai: Any) -> None:
    chunks = list(
        oai.chat.completions.create(model="gpt", messages=[{"role": "user", "content": "x"}], stream=True)
    )
    assert all(c.usage is None for c in chunks)


def test_openai_tools_json_and_stream(oai: Any) -> None:
    msgs = [{"role": "user", "content": "weather in Paris?"}]
    r = oai.chat.completions.create(model="tools", messages=msgs, tools=[WEATHER])
    call = r.choices[0].message.tool_calls[0]
    assert r.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Paris"}
    chunks = list(oai.chat.completions.create(model="tools", messages=msgs, tools=[WEATHER], stream=True))
    args = "".join(
        tc.function.arguments or ""
        for c in chunks
        if c.choices and c.choices[0].delta.tool_calls
        for tc in c.choices[0].delta.tool_calls
    )
    names = [
        tc.function.name
        for c in chunks
        if c.choices and c.choices[0].delta.tool_calls
        for tc in c.choices[0].delta.tool_calls
        if tc.function.name
    ]
    assert names == ["get_weather"] and json.loads(args) == {"city": "Paris"}
    # A follow-up turn carrying the tool call and its result is accepted and answered.
    follow = [
        *msgs,
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": "sunny"},
    ]
    r2 = oai.chat.completions.create(model="gpt", messages=follow)
    assert r2.choices[0].message.content.startswith("Mock reply from gpt-mock")


def test_openai_structured_output(oai: Any) -> None:
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "temp": {"type": "integer"}},
        "required": ["city", "temp"],
        "additionalProperties": False,
    }
    r = oai.chat.completions.create(
        model="gpt",
        messages=[{"role": "user", "content": "weather as JSON"}],
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "w", "schema": schema, "strict": True},
        },
    )
    value = json.loads(r.choices[0].message.content)
    assert set(value) == {"city", "temp"} and isinstance(value["temp"], int)


def test_openai_embeddings(oai: Any, mock: MockLLMServer) -> None:
    r = oai.embeddings.create(model="embedder", input=["a cat", "a dog"])
    assert len(r.data) == 2 and r.model == "embed-mock"
    direct = httpx.post(
        mock.base_url + "/v1/embeddings", json={"model": "embed-mock", "input": ["a cat", "a dog"]}
    ).json()
    assert r.data[0].embedding == pytest.approx(direct["data"][0]["embedding"], abs=1e-6)
    # The SDK's default base64 encoding decodes to the same vector.
    b64 = oai.embeddings.create(model="embedder", input="a cat", encoding_format="base64")
    assert isinstance(b64.data[0].embedding, str)
    with pytest.raises(openai.NotFoundError):
        oai.embeddings.create(model="not-a-model", input="x")


def test_openai_errors_are_typed(oai: Any) -> None:
    with pytest.raises(openai.NotFoundError) as nf:
        oai.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
    assert "no-such-model" in str(nf.value)
    with pytest.raises(openai.BadRequestError) as bad:
        oai.chat.completions.create(model="gpt", messages=[])
    assert bad.value.body["param"] == "messages"


def test_an_unexpected_error_is_a_500_in_the_callers_format(oai: Any, ant: Any) -> None:
    with pytest.raises(openai.InternalServerError) as info:
        oai.chat.completions.create(model="boom", messages=[{"role": "user", "content": "x"}])
    assert info.value.body["type"] == "server_error" and "secret-path" not in str(info.value.body)
    with pytest.raises(anthropic.InternalServerError) as ainfo:
        ant.messages.create(model="boom", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert ainfo.value.body["error"]["type"] == "api_error"


def test_models_lists_strategies_and_aliases(oai: Any) -> None:
    ids = [m.id for m in oai.models.list()]
    assert ids[0] == "auto" and len(ids) == len(set(ids))
    assert {"default", "gpt", "claude", "flaky", "tools", "embedder"} <= set(ids)


# -- fallbacks and stalls -------------------------------------------------------------


def test_failure_before_first_token_is_invisible(oai: Any, ant: Any, mock: MockLLMServer) -> None:
    stats = mock.stats
    before = stats["flaky-mock"].requests if "flaky-mock" in stats else 0
    raw = oai.chat.completions.with_raw_response.create(
        model="flaky", messages=[{"role": "user", "content": "hi"}]
    )
    r = raw.parse()
    # Answered by the Anthropic-format fallback, in OpenAI's format.
    assert r.choices[0].message.content == "Mock reply from claude-mock: hi" and r.model == "claude-mock"
    assert raw.headers["x-tierwise-attempts"] == "2"
    chunks = list(
        oai.chat.completions.create(model="flaky", messages=[{"role": "user", "content": "hi"}], stream=True)
    )
    assert (
        "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == r.choices[0].message.content
    )
    with ant.messages.stream(model="flaky", max_tokens=50, messages=[{"role": "user", "content": "hi"}]) as s:
        assert s.get_final_text() == "Mock reply from claude-mock: hi"
    assert mock.stats["flaky-mock"].requests - before == 3  # it really was tried each time


def test_stall_mid_stream_ends_with_error_event_openai(oai: Any) -> None:
    got: list[str] = []
    start = time.monotonic()

    def read() -> None:
        stream = oai.chat.completions.create(
            model="staller", messages=[{"role": "user", "content": "tell me"}], stream=True
        )
        got.extend(c.choices[0].delta.content for c in stream if c.choices and c.choices[0].delta.content)

    with pytest.raises(openai.APIError) as info:
        read()
    assert time.monotonic() - start < 5  # ended by the idle timeout (0.5 s), not a hang
    assert got, "the content before the stall reached the client"
    assert "timeout" in str(info.value).lower() or "stall" in str(info.value).lower()


def test_stall_mid_stream_ends_with_error_event_anthropic(ant: Any) -> None:
    start = time.monotonic()

    def read() -> None:
        with ant.messages.stream(
            model="staller", max_tokens=50, messages=[{"role": "user", "content": "x"}]
        ) as s:
            for _ in s.text_stream:
                pass

    with pytest.raises(anthropic.APIStatusError) as info:
        read()
    assert info.value.body["type"] == "error"
    assert time.monotonic() - start < 5


# -- Anthropic format ------------------------------------------------------------------


def test_anthropic_plain_from_an_openai_provider(ant: Any) -> None:
    raw = ant.messages.with_raw_response.create(
        model="gpt", max_tokens=100, system="be brief", messages=[{"role": "user", "content": "hello"}]
    )
    m = raw.parse()
    assert m.content[0].text == "Mock reply from gpt-mock: hello" and m.model == "gpt-mock"
    assert m.stop_reason == "end_turn" and m.usage.output_tokens == 7
    assert raw.headers["x-tierwise-attempts"] == "1"


def test_anthropic_stream(ant: Any) -> None:
    with ant.messages.stream(model="gpt", max_tokens=100, messages=[{"role": "user", "content": "hey"}]) as s:
        pieces = list(s.text_stream)
        final = s.get_final_message()
    assert "".join(pieces) == "Mock reply from gpt-mock: hey" and len(pieces) > 2
    assert final.stop_reason == "end_turn" and final.usage.output_tokens == 7


def test_anthropic_tools_json_and_stream(ant: Any) -> None:
    tool = {
        "name": "get_weather",
        "description": "Weather in a city",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
    }
    msgs = [{"role": "user", "content": "weather?"}]
    m = ant.messages.create(model="tools", max_tokens=100, tools=[tool], messages=msgs)
    use = next(b for b in m.content if b.type == "tool_use")
    assert m.stop_reason == "tool_use" and use.name == "get_weather" and use.input == {"city": "Paris"}
    with ant.messages.stream(model="tools", max_tokens=100, tools=[tool], messages=msgs) as s:
        final = s.get_final_message()
    streamed = next(b for b in final.content if b.type == "tool_use")
    assert streamed.input == {"city": "Paris"} and final.stop_reason == "tool_use"
    # The tool_use / tool_result turns of a follow-up are understood.
    follow = [
        *msgs,
        {"role": "assistant", "content": [use.model_dump()]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "sunny"}]},
    ]
    m2 = ant.messages.create(model="claude", max_tokens=100, messages=follow)
    assert m2.content[0].text.startswith("Mock reply from claude-mock")


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_anthropic_thinking_keeps_its_signature_for_the_next_turn(ant: Any, stream: bool) -> None:
    """With extended thinking and tools, Anthropic requires the signed thinking block back
    before the tool_use when the tool result is sent (the mock answers 400 without it, as the
    real API does): the gateway must relay the signature, JSON and streamed alike."""
    tool = {
        "name": "get_weather",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
    }
    msgs: list[dict[str, Any]] = [{"role": "user", "content": "weather in Paris?"}]
    kwargs: dict[str, Any] = {"model": "thinker", "max_tokens": 2000, "tools": [tool]}
    kwargs["thinking"] = {"type": "enabled", "budget_tokens": 1024}
    if stream:
        with ant.messages.stream(messages=msgs, **kwargs) as s:
            m = s.get_final_message()
    else:
        m = ant.messages.create(messages=msgs, **kwargs)
    thinking = m.content[0]
    assert thinking.type == "thinking" and thinking.thinking == "The user wants weather; call the tool."
    assert thinking.signature  # the provider's, unchanged
    use = next(b for b in m.content if b.type == "tool_use")
    assert m.stop_reason == "tool_use"
    follow = [
        *msgs,
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in m.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "sunny"}]},
    ]
    again = ant.messages.create(messages=follow, **kwargs)
    assert again.stop_reason == "tool_use"  # answered (the mock's 400 would raise here)
    assert again.content[0].signature == thinking.signature  # same model, same thinking


def test_anthropic_stream_relays_a_redacted_thinking_block() -> None:
    from tierwise.serve._anthropic_wire import AnthropicStream

    w = AnthropicStream("r1", "m")
    raw = (
        w.start()
        + w.reasoning("step one")
        + w.reasoning_item({"type": "thinking", "thinking": "step one", "signature": "sig-1"})
    )
    raw += w.reasoning_item({"type": "redacted_thinking", "data": "EmwKAhgB"}) + w.text("hi")
    raw += w.reasoning_item({"type": "reasoning", "encrypted_content": "x"})  # not Anthropic's: nothing
    events = [json.loads(line[6:]) for line in raw.decode().splitlines() if line.startswith("data: ")]
    starts = [e["content_block"] for e in events if e["type"] == "content_block_start"]
    assert [b["type"] for b in starts] == ["thinking", "redacted_thinking", "text"]
    assert starts[1] == {"type": "redacted_thinking", "data": "EmwKAhgB"}
    sig = [e for e in events if e.get("delta", {}).get("type") == "signature_delta"]
    assert sig == [
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "signature_delta", "signature": "sig-1"},
        }
    ]
    stops = [e["index"] for e in events if e["type"] == "content_block_stop"]
    assert stops == [0, 1]  # the text block is still open


def test_anthropic_errors_are_typed(ant: Any) -> None:
    with pytest.raises(anthropic.NotFoundError):
        ant.messages.create(model="nope", max_tokens=10, messages=[{"role": "user", "content": "x"}])
    with pytest.raises(anthropic.BadRequestError) as bad:
        ant.messages.create(model="gpt", max_tokens=10, messages=[])
    assert bad.value.body["type"] == "error" and bad.value.body["error"]["type"] == "invalid_request_error"


# -- operations ----------------------------------------------------------------------


def test_health_ready_metrics(gateway: ServerThread, oai: Any) -> None:
    oai.chat.completions.create(model="gpt", messages=[{"role": "user", "content": "count me"}])
    assert httpx.get(gateway.base_url + "/health").json() == {"status": "ok"}
    ready = httpx.get(gateway.base_url + "/ready")
    assert ready.status_code == 200 and ready.json()["ready"] is True
    assert set(ready.json()["circuits"]) >= {"gpt", "claude", "flaky"}
    metrics = httpx.get(gateway.base_url + "/metrics")
    assert metrics.status_code == 200
    assert "tierwise_requests_total{" in metrics.text and 'deployment="gpt"' in metrics.text


def test_upstream_key_never_reaches_the_client(gateway: ServerThread) -> None:
    bodies = [
        httpx.post(gateway.base_url + "/v1/chat/completions", json={"model": "flaky", "messages": []}).text,
        httpx.get(gateway.base_url + "/ready").text,
        httpx.get(gateway.base_url + "/metrics").text,
    ]
    assert all(UPSTREAM_KEY not in b for b in bodies)


# -- keys and per-key limits -----------------------------------------------------------


def _keyring() -> KeyRing:
    return KeyRing.from_toml(
        f"""
[keys.team-a]
sha256 = "{hash_key(KEY_A)}"
tags = {{ team = "a" }}
rpm = 2

[keys.team-b]
sha256 = "{hash_key(KEY_B)}"
tags = {{ team = "b" }}

[keys.team-c]
sha256 = "{hash_key(KEY_C)}"
tags = {{ team = "c" }}
"""
    )


@pytest.fixture(scope="module")
def keyed(mock: MockLLMServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    use_upstream_key()
    tmp = tmp_path_factory.mktemp("keyed")
    budget = '[budget]\nlimits = [{ limit_usd = 0.000001, period = "day", scope = "tag:team=b" }]\n'
    _AUDIT["path"] = tmp / "audit.jsonl"
    audit = f'[audit]\npath = "{_AUDIT["path"]}"\n'
    cfg = write_config(tmp, mock.base_url, budget + audit)
    with ServerThread(create_app(tw.Orchestrator.from_config(cfg), _keyring())) as srv:
        yield srv


def test_unknown_key_is_401_in_each_format(keyed: ServerThread) -> None:
    o = openai.OpenAI(api_key="sk-wrong", base_url=keyed.base_url + "/v1", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        o.chat.completions.create(model="gpt", messages=[{"role": "user", "content": "x"}])
    a = anthropic.Anthropic(api_key="sk-wrong", base_url=keyed.base_url, max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as info:
        a.messages.create(model="gpt", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert info.value.body["error"]["type"] == "authentication_error"
    assert "sk-wrong" not in str(info.value)


def test_per_key_rpm_is_429_with_retry_after(keyed: ServerThread, mock: MockLLMServer) -> None:
    o = openai.OpenAI(api_key=KEY_A, base_url=keyed.base_url + "/v1", max_retries=0)
    before = mock.stats["gpt-mock"].requests
    for _ in range(2):
        o.chat.completions.create(model="gpt", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.RateLimitError) as info:
        o.chat.completions.create(model="gpt", messages=[{"role": "user", "content": "x"}])
    assert mock.stats["gpt-mock"].requests - before == 2
    assert int(info.value.response.headers["retry-after"]) >= 1
    a = anthropic.Anthropic(api_key=KEY_A, base_url=keyed.base_url, max_retries=0)
    with pytest.raises(anthropic.RateLimitError) as ainfo:
        a.messages.create(model="gpt", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert ainfo.value.body["error"]["type"] == "rate_limit_error"


def test_key_tags_reach_the_budget_scopes(keyed: ServerThread, mock: MockLLMServer) -> None:
    # team-b's day budget (tag:team=b) is a millionth of a dollar, less than one
    # call's reservation: its key is refused before anything is sent.
    o = openai.OpenAI(api_key=KEY_B, base_url=keyed.base_url + "/v1", max_retries=0)
    before = mock.stats["gpt-mock"].requests
    with pytest.raises(openai.RateLimitError) as info:
        o.chat.completions.create(model="gpt", messages=[{"role": "user", "content": "x"}], max_tokens=5)
    assert info.value.body["code"] == "insufficient_quota" and "tag:team=b" in info.value.message
    assert mock.stats["gpt-mock"].requests == before


def test_key_table_is_hashed_and_checked(tmp_path: Path) -> None:
    path = tmp_path / "keys.toml"
    path.write_text(f'[keys.ci]\nkey = "{KEY_A}"\ntags = {{ team = "ci" }}\n')
    ring = KeyRing.from_env("TW_KEYS", {"TW_KEYS_FILE": str(path)})
    assert ring.lookup(KEY_A) is not None and ring.lookup(KEY_A).tags == {"api_key": "ci", "team": "ci"}
    assert ring.lookup(KEY_B) is None and ring.lookup("") is None
    assert KEY_A not in repr(ring) and KEY_A not in repr(ring.keys[0])
    assert KeyRing.from_env("TW_KEYS", {}).open
    with pytest.raises(tw.errors.ConfigError, match="rpm"):
        KeyRing.from_toml(f'[keys.x]\nsha256 = "{hash_key("k")}"\nrpm = -1\n')
    with pytest.raises(tw.errors.ConfigError) as info:
        KeyRing.from_toml(f'[keys.x]\nsha256 = "{KEY_A}"\n')
    assert KEY_A not in str(info.value)


def test_audit_records_carry_the_key_and_request_id(keyed: ServerThread) -> None:
    r = httpx.post(
        keyed.base_url + "/v1/chat/completions",
        json={"model": "claude", "messages": [{"role": "user", "content": "audit me"}]},
        headers={"authorization": f"Bearer {KEY_C}", "x-request-id": "audit-req-1"},
    )
    assert r.status_code == 200
    mine: list[dict[str, Any]] = []
    for _ in range(100):  # the audit writer appends off the request path
        text = _AUDIT["path"].read_text()
        records = [json.loads(line) for line in text.splitlines() if line.strip()]
        mine = [rec for rec in records if rec.get("metadata", {}).get("request_id") == "audit-req-1"]
        if mine:
            break
        time.sleep(0.02)
    assert mine and mine[0]["metadata"]["api_key"] == "team-c" and mine[0]["metadata"]["team"] == "c"
    assert KEY_C not in text and hash_key(KEY_C) not in text


def test_cli_serve_refuses_a_bad_key_table_before_starting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from tierwise.cli import main

    cfg = write_config(tmp_path, "http://127.0.0.1:9")
    monkeypatch.setenv("TW_BAD_KEYS", '[keys.x]\nsha256 = "not-hex"\n')
    assert main(["serve", "--config", str(cfg), "--keys-env", "TW_BAD_KEYS"]) == 2
    assert "keys.x.sha256" in capsys.readouterr().err
    assert main(["serve", "--config", str(tmp_path / "missing.toml")]) == 2


# -- operations: readiness and tracing ----------------------------------------------------


def test_ready_is_503_once_every_circuit_is_open(mock: MockLLMServer, tmp_path: Path) -> None:
    # Only the always-failing model is configured: two failed requests open its
    # circuit (failure_threshold = 2), and a gateway with no deployment left to
    # route to says so on /ready while /health (liveness) stays 200.
    use_upstream_key()
    cfg = tmp_path / "down.toml"
    cfg.write_text(
        f"""
[providers.oai]
type = "openai"
base_url = "{mock.base_url}/v1"
api_key_env = "TW_SERVE_MOCK_KEY"

[models.flaky]
provider = "oai"
model = "flaky-mock"

[strategies.default]
type = "single"
target = "flaky"

[retry]
max_attempts = 1

[health]
failure_threshold = 2
cooldown_s = 600

[logging]
level = "off"
"""
    )
    with ServerThread(create_app(tw.Orchestrator.from_config(cfg))) as srv:
        ready = httpx.get(srv.base_url + "/ready")
        assert ready.status_code == 200 and ready.json()["circuits"]["flaky"]["state"] == "healthy"
        body = {"model": "auto", "messages": [{"role": "user", "content": "hi"}]}
        for _ in range(2):
            assert httpx.post(srv.base_url + "/v1/chat/completions", json=body).status_code >= 500
        ready = httpx.get(srv.base_url + "/ready")
        assert ready.status_code == 503
        assert ready.json()["ready"] is False and ready.json()["circuits"]["flaky"]["state"] == "cooling"
        assert httpx.get(srv.base_url + "/health").status_code == 200


def test_request_spans_join_the_callers_trace(mock: MockLLMServer, tmp_path: Path) -> None:
    # The caller sends W3C trace context; the gateway's request span (JSON and a
    # stream) is a child of the caller's span, in the caller's trace.
    pytest.importorskip("opentelemetry.sdk")
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from tierwise.observe.otel import OTelObserver

    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    orch = tw.Orchestrator.from_config(write_config(tmp_path, mock.base_url))
    orch.observers.add(OTelObserver(tracer_provider=provider))
    trace_id, parent_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    headers = {"traceparent": f"00-{trace_id}-{parent_id}-01"}
    body: dict[str, Any] = {"model": "auto", "messages": [{"role": "user", "content": "trace me"}]}
    with ServerThread(create_app(orch)) as srv:
        url = srv.base_url + "/v1/chat/completions"
        assert httpx.post(url, json=body, headers=headers).status_code == 200
        with httpx.stream("POST", url, json={**body, "stream": True}, headers=headers) as r:
            assert r.status_code == 200 and "data: [DONE]" in r.read().decode()
        # A caller without trace context starts a trace of its own.
        assert httpx.post(url, json=body).status_code == 200
    requests = [s for s in spans.get_finished_spans() if s.name.startswith("tierwise.request")]
    assert len(requests) == 3
    joined = [s for s in requests if s.parent is not None and s.parent.span_id == int(parent_id, 16)]
    assert len(joined) == 2
    assert all(format(s.context.trace_id, "032x") == trace_id for s in joined)
    (alone,) = [s for s in requests if s not in joined]
    assert alone.parent is None and format(alone.context.trace_id, "032x") != trace_id
