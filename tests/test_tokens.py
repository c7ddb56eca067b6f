"""estimate_tokens: heuristic, output reservation, tiktoken when usable, silent fallback."""

from __future__ import annotations

import json
import sys
import time
import types
from typing import Any

import pytest

from tierwise.execution import tokens
from tierwise.execution.tokens import DEFAULT_OUTPUT_TOKENS, estimate_tokens, heuristic_text_tokens
from tierwise.types import Message, Request, Tool, ToolCall


@pytest.fixture(autouse=True)
def fresh_caches(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test decides whether tiktoken exists; forget what earlier tests loaded."""
    monkeypatch.setattr(tokens, "_encoders", {})
    monkeypatch.setattr(tokens, "_model_encoding", {})
    monkeypatch.setattr(tokens, "_count_cache", type(tokens._count_cache)())


@pytest.fixture
def no_tiktoken(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tiktoken", None)  # makes `import tiktoken` fail


def fake_tiktoken(monkeypatch: pytest.MonkeyPatch, *, loads: bool) -> list[str]:
    """A stand-in tiktoken counting one token per word; records requested encodings."""
    requested: list[str] = []
    module: Any = types.ModuleType("tiktoken")

    class Encoding:
        def encode_ordinary(self, text: str) -> list[int]:
            return [0] * len(text.split())

    def get_encoding(name: str) -> Encoding:
        requested.append(name)
        if not loads:
            raise ConnectionError("no network to fetch the BPE file")
        return Encoding()

    def encoding_name_for_model(model: str) -> str:
        if model.startswith("gpt-4o"):
            return "o200k_base"
        if model.startswith("gpt-4"):
            return "cl100k_base"
        raise KeyError(model)

    module.get_encoding = get_encoding
    module.encoding_name_for_model = encoding_name_for_model
    monkeypatch.setitem(sys.modules, "tiktoken", module)
    return requested


def test_heuristic_is_about_four_chars_per_token() -> None:
    assert heuristic_text_tokens("") == 0
    assert heuristic_text_tokens("abcd") == 1
    assert heuristic_text_tokens("a" * 400) == 100
    assert heuristic_text_tokens("a" * 401) == 101


def test_heuristic_weighs_non_ascii_more() -> None:
    cjk = "漢字" * 50  # 100 characters, ~1 token each
    assert 90 <= heuristic_text_tokens(cjk) <= 110
    accented = "café " * 80  # 400 characters, mostly ASCII
    assert 100 <= heuristic_text_tokens(accented) <= 170
    # long texts are measured on samples; the result matches the whole-text figure
    long_cjk = "漢字テスト" * 2000
    assert heuristic_text_tokens(long_cjk) == pytest.approx(len(long_cjk), rel=0.02)
    mixed = "The café served 漢字. " * 1000
    exact = int((len(mixed) + 1.5 * (len(mixed.encode()) - len(mixed))) / 4) + 1
    assert heuristic_text_tokens(mixed) == pytest.approx(exact, rel=0.02)


@pytest.mark.usefixtures("no_tiktoken")
def test_estimate_is_prompt_plus_max_tokens() -> None:
    request = Request.from_prompt("a" * 400, max_tokens=50)
    # 3 (reply primer) + 4 (message framing) + 100 (text) + 50 (output)
    assert estimate_tokens(request) == 157


@pytest.mark.usefixtures("no_tiktoken")
def test_default_output_cap_and_thinking_budget() -> None:
    base = Request.from_prompt("a" * 400)
    assert estimate_tokens(base) == 107 + DEFAULT_OUTPUT_TOKENS
    thinking = Request.from_prompt("a" * 400, thinking_budget=2000)
    assert estimate_tokens(thinking) == 107 + DEFAULT_OUTPUT_TOKENS + 2000
    # max_tokens already includes thinking on providers that have both
    both = Request.from_prompt("a" * 400, thinking_budget=2000, max_tokens=3000)
    assert estimate_tokens(both) == 107 + 3000


@pytest.mark.usefixtures("no_tiktoken")
def test_system_messages_tools_images_and_tool_calls_count() -> None:
    plain = estimate_tokens(Request.from_prompt("hello there", max_tokens=1))
    with_system = estimate_tokens(Request.from_prompt("hello there", system="x" * 400, max_tokens=1))
    assert with_system == plain + 4 + 100
    tool = Tool(
        "get_weather", "Weather for a city", {"type": "object", "properties": {"city": {"type": "string"}}}
    )
    with_tools = estimate_tokens(Request.from_prompt("hello there", max_tokens=1, tools=[tool]))
    assert with_tools > plain + 15
    image = Request(
        messages=[
            Message(
                "user",
                [
                    {"type": "text", "text": "what is this?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64," + "A" * 100_000}},
                ],
            )
        ],
        max_tokens=1,
    )
    # a flat image cost, not 25,000 tokens of base64
    assert 700 < estimate_tokens(image) < 1000
    call = ToolCall("call_1", "get_weather", {"city": "Paris" * 40})
    convo = Request(
        messages=[
            Message("user", "weather?"),
            Message("assistant", None, tool_calls=[call]),
            Message("tool", '{"temp": 20}', tool_call_id="call_1", name="get_weather"),
        ],
        max_tokens=1,
    )
    assert estimate_tokens(convo) > 50 + 3 * 4


@pytest.mark.usefixtures("no_tiktoken")
def test_json_schema_response_format_counts() -> None:
    schema = {"type": "object", "properties": {f"field_{i}": {"type": "string"} for i in range(30)}}
    fmt = {"type": "json_schema", "json_schema": {"name": "out", "schema": schema}}
    plain = estimate_tokens(Request.from_prompt("hi", max_tokens=1))
    assert estimate_tokens(Request.from_prompt("hi", max_tokens=1, response_format=fmt)) > plain + 100


def test_uses_tiktoken_when_it_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    requested = fake_tiktoken(monkeypatch, loads=True)
    text = "one two three four five six seven eight nine ten " * 10  # 100 words, 500 chars
    request = Request.from_prompt(text, max_tokens=0)
    assert estimate_tokens(request, model="openai/gpt-4o") == 3 + 4 + 100
    assert requested == ["o200k_base"]
    estimate_tokens(request, model="gpt-4-turbo")
    estimate_tokens(request, model="anthropic/claude-sonnet-4-5")  # unknown → o200k_base
    estimate_tokens(request)
    assert requested == ["o200k_base", "cl100k_base"]  # each encoding loaded once


def test_falls_back_silently_when_tiktoken_cannot_load(monkeypatch: pytest.MonkeyPatch) -> None:
    requested = fake_tiktoken(monkeypatch, loads=False)
    request = Request.from_prompt("a" * 400, max_tokens=50)
    assert estimate_tokens(request, model="gpt-4o") == 157  # the heuristic figure
    assert estimate_tokens(request, model="gpt-4o") == 157
    assert requested == ["o200k_base"]  # the failure is remembered, not retried per call


def test_falls_back_when_tiktoken_missing(no_tiktoken: None) -> None:
    assert estimate_tokens(Request.from_prompt("a" * 400, max_tokens=50), model="gpt-4o") == 157


@pytest.mark.usefixtures("no_tiktoken")
@pytest.mark.parametrize("word", ["tokenization", "tokénization", "漢字テスト"])
def test_cheap_for_a_2000_word_prompt(word: str) -> None:
    prompt = " ".join([word] * 2000)
    request = Request.from_prompt(prompt, system="You are terse.")
    estimate_tokens(request)
    n = 2000
    start = time.perf_counter()
    for _ in range(n):
        estimate_tokens(request)
    per_call = (time.perf_counter() - start) / n
    assert per_call < 100e-6  # generous bound for a shared CI core; 1-5 µs when idle


# -- the input bound a hard budget reserves (issue #18.2) ---------------------------

TEXTS = [
    "plain English prose, the usual case. " * 80,
    "def f(x):\n    return {'k': [x, x ** 2]}  # dense code\n" * 60,
    "密集的中文文本，每个字三个字节。" * 120,
    "emoji 🙂🚀 and accents: déjà vu, Übermaß " * 60,
    "\u0000\u00ff\ud7ff" * 10,  # control and edge-of-range code points
]


@pytest.mark.usefixtures("no_tiktoken")
@pytest.mark.parametrize("text", TEXTS, ids=["english", "code", "cjk", "emoji", "edges"])
def test_prompt_upper_bound_is_at_least_the_utf8_bytes_and_the_estimate(text: str) -> None:
    # No byte-level BPE tokenizer emits more tokens than the text has bytes.
    request = Request.from_prompt(text, system="Be exact.", max_tokens=1)
    upper = tokens.prompt_upper_bound(request)
    assert upper >= len(text.encode()) + len(b"Be exact.")
    assert upper >= estimate_tokens(request) - 1
    assert upper < 2 * (len(text.encode()) + 200)  # a ceiling, not a wild guess


def test_prompt_upper_bound_counts_everything_the_provider_reads() -> None:
    base = Request.from_prompt("hi")
    plain = tokens.prompt_upper_bound(base)
    schema = {"type": "object", "properties": {"city": {"type": "string", "description": "é" * 50}}}
    tool = Tool("get_weather", "Weather for a city", schema)
    spec_bytes = len(json.dumps(schema, separators=(",", ":"), ensure_ascii=True).encode())
    with_tool = tokens.prompt_upper_bound(Request.from_prompt("hi", tools=[tool], tool_choice="auto"))
    # the tool-use instructions a provider adds, the name, description and schema, tool_choice
    assert with_tool >= plain + tokens._TOOLS_OVERHEAD + len("get_weather") + 18 + spec_bytes + 4
    fmt = {"type": "json_schema", "json_schema": {"name": "out", "schema": schema}}
    assert tokens.prompt_upper_bound(Request.from_prompt("hi", response_format=fmt)) > plain + 1024
    extra = tokens.prompt_upper_bound(Request.from_prompt("hi", extra_body={"system": "x" * 500}))
    assert extra >= plain + 500
    call = ToolCall("c1", "lookup", {"q": "漢字" * 100})
    convo = Request(
        messages=[
            Message("user", "look it up"),
            Message("assistant", None, tool_calls=[call]),
            Message("tool", "{}", tool_call_id="c1", name="lookup"),
        ]
    )
    assert tokens.prompt_upper_bound(convo) >= len(call.raw_arguments.encode()) + len("look it up")


def test_prompt_upper_bound_counts_images_at_the_stated_ceiling() -> None:
    image = Request(
        messages=[
            Message(
                "user",
                [
                    {"type": "text", "text": "what is this?"},
                    {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
                    {"type": "image", "source": {"type": "base64", "data": "A" * 100_000}},
                ],
            )
        ]
    )
    upper = tokens.prompt_upper_bound(image)
    assert 2 * tokens.IMAGE_TOKEN_CEILING <= upper < 2 * tokens.IMAGE_TOKEN_CEILING + 200
    big = tokens.prompt_upper_bound(image, image_tokens=50_000)  # gpt-4o-mini at high detail
    assert big - upper == 2 * (50_000 - tokens.IMAGE_TOKEN_CEILING)
    assert tokens.InputBound(image_tokens=50_000).reserve_tokens(image, 10) == big


@pytest.mark.parametrize("word", ["tokenization", "tokénization", "漢字テスト"])
def test_prompt_upper_bound_is_cheap_for_a_2000_word_prompt(word: str) -> None:
    request = Request.from_prompt(" ".join([word] * 2000), system="You are terse.")
    bound = tokens.InputBound()
    n = 2000
    start = time.perf_counter()
    for _ in range(n):
        bound.reserve_tokens(request, 1000)
    per_call = (time.perf_counter() - start) / n
    # ASCII is a len() (~0.5 µs idle); non-ASCII an encode at ~1 ns a byte (~10-15 µs).
    assert per_call < (20e-6 if word.isascii() else 200e-6)  # generous for a shared CI core


def test_strict_input_bound_is_the_ceiling_whatever_it_observed() -> None:
    request = Request.from_prompt("plain English prose. " * 100)
    estimate = 600
    bound = tokens.InputBound()
    assert bound.mode == "strict"
    first = bound.reserve_tokens(request, estimate)
    assert first == tokens.prompt_upper_bound(request)
    for _ in range(100):
        bound.observe(estimate, estimate // 2)  # real counts far below: still the ceiling
    assert bound.reserve_tokens(request, estimate) == first
    # An estimate above the ceiling (an image-free prompt cannot, but a caller may) wins.
    assert bound.reserve_tokens(Request.from_prompt("hi"), 10_000) == 10_000


def test_learned_input_bound_is_strict_until_warm_then_tracks_the_densest_recent_ratio() -> None:
    request = Request.from_prompt("plain English prose. " * 100)
    upper = tokens.prompt_upper_bound(request)
    bound = tokens.InputBound("learned", margin=0.25, warmup=3, window=4)
    for actual in (800, 1600):
        bound.observe(1000, actual)
        assert bound.reserve_tokens(request, 500) == upper  # fewer than warmup: strict
    bound.observe(1000, 1200)
    assert bound.observed == 3 and bound.max_ratio == 1.6
    assert bound.reserve_tokens(request, 500) == 1000  # ceil(500 x 1.6 x 1.25)
    assert bound.reserve_tokens(request, 1500) == upper  # never above the ceiling (2,132 < 3,000)
    for _ in range(3):
        bound.observe(1000, 1100)
    assert bound.max_ratio == 1.2  # the 1.6 left the 4-reply window
    assert bound.reserve_tokens(request, 500) == 750
    for _ in range(4):
        bound.observe(1000, 500)  # the provider counts fewer: never below the estimate
    assert bound.reserve_tokens(request, 500) == 625


@pytest.mark.parametrize("bad", [0, -3, True, 1.5, float("nan"), 10**400, "12"])
def test_input_bound_ignores_nonsense_observations(bad: object) -> None:
    bound = tokens.InputBound("learned", warmup=1)
    bound.observe(100, bad)  # type: ignore[arg-type]
    bound.observe(bad, 100)  # type: ignore[arg-type]
    assert bound.observed == 0 and bound.max_ratio is None
    request = Request.from_prompt("x" * 400)
    assert bound.reserve_tokens(request, 100) == tokens.prompt_upper_bound(request)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"mode": "loose"},
        {"margin": -0.1},
        {"margin": float("nan")},
        {"warmup": 0},
        {"window": 0},
        {"image_tokens": 0},
        {"warmup": 2.5},
    ],
)
def test_input_bound_validates_its_settings(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        tokens.InputBound(**kwargs)
