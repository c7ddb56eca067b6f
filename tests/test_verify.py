"""Verifiers: each accepts and rejects the right answers; combinators short-circuit;
model-graded checks call through the executor (costed) and parse replies robustly;
config specs build the same objects and name the bad field."""

from __future__ import annotations

import re
from typing import Any

import pytest
from pydantic import BaseModel

from tierwise.catalog import ModelSpec
from tierwise.errors import AuthenticationError, ConfigError
from tierwise.execution.executor import Deployment, Executor
from tierwise.execution.retry import RetryPolicy
from tierwise.strategies.base import RunContext
from tierwise.testing import FakeProvider
from tierwise.types import Message, Request, Response, ToolCall
from tierwise.verify import (
    AllOf,
    AnyOf,
    Check,
    FinishedNormally,
    Judge,
    MatchesSchema,
    MinLength,
    NoRefusal,
    Not,
    SelfConfidence,
    ValidJSON,
    Verdict,
    Verifier,
    from_config,
    parse_score,
    strip_fences,
)

# ---------------------------------------------------------------- helpers

LONG_Q = " ".join(f"word{i}" for i in range(40)) + "?"  # a 40-word question


def resp(text: str = "ok", finish: Any = "stop", **kw: Any) -> Response:
    return Response(text=text, model="m", provider="p", finish_reason=finish, **kw)


def req(prompt: str = "hi", **kw: Any) -> Request:
    return Request.from_prompt(prompt, **kw)


def executor(**providers: FakeProvider) -> Executor:
    deps = {
        alias: Deployment(alias, p, alias, spec=ModelSpec(alias, "fake", input=1.0, output=2.0))
        for alias, p in providers.items()
    }
    return Executor(deps, retry=RetryPolicy(max_attempts=1))


def ctx(**providers: FakeProvider) -> RunContext:
    return RunContext(executor(**providers) if providers else executor(none=FakeProvider()), path="t")


async def check(verifier: Verifier, response: Response, request: Request | None = None) -> Verdict:
    return await verifier.check(request or req(), response, ctx())


# ---------------------------------------------------------------- local checks


@pytest.mark.parametrize(
    ("finish", "ok"),
    [("stop", True), ("tool_calls", True), ("length", False), ("content_filter", False), ("error", False)],
)
async def test_finished_normally(finish: Any, ok: bool) -> None:
    v = await check(FinishedNormally(), resp(finish=finish))
    assert v.accepted is ok
    assert finish in v.reason


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        ('{"a": 1}', True),
        ("[1, 2]", True),
        ('```json\n{"a": 1}\n```', True),
        ('  ```JSON\n{"a": [1]}\n```  \n', True),
        ("```\n[true]\n```", True),
        ('Here you go: {"a": 1}', False),
        ('```json\n{"a": 1}\n```\nHope this helps!', False),
        ('{"a": 1', False),
        ('{"a": NaN}', False),
        ("42", False),  # valid JSON, but not structured output
        ('"ok"', False),
        ("", False),
    ],
)
async def test_valid_json(text: str, ok: bool) -> None:
    assert (await check(ValidJSON(), resp(text))).accepted is ok


async def test_valid_json_scalars_when_allowed() -> None:
    assert (await check(ValidJSON(allow_scalars=True), resp("42"))).accepted
    assert strip_fences('```json\n{"a": 1}\n```') == '{"a": 1}'
    assert strip_fences("  plain  ") == "plain"


class Person(BaseModel):
    name: str
    age: int


class Team(BaseModel):
    lead: Person
    members: list[Person]


async def test_schema_pydantic_pass_and_fail() -> None:
    v = MatchesSchema(Person)
    assert (await check(v, resp('```json\n{"name": "Ada", "age": 36}\n```'))).accepted
    bad = await check(v, resp('{"name": "Ada"}'))
    assert not bad.accepted and "age" in bad.reason
    assert not (await check(v, resp('{"name": "Ada", "age": "old"}'))).accepted
    assert not (await check(v, resp("not json"))).accepted
    # any pydantic-validatable type goes through TypeAdapter
    many = MatchesSchema(list[Person])
    assert (await check(many, resp('[{"name": "a", "age": 1}]'))).accepted
    assert not (await check(many, resp('[{"name": "a"}]'))).accepted


SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 10},
        "age": {"type": "integer", "minimum": 0, "maximum": 150},
        "tags": {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 2},
        "kind": {"enum": ["a", "b"]},
        "version": {"const": 2},
        "id": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
        "one": {"oneOf": [{"type": "integer"}, {"type": "number", "minimum": 10}]},
        "both": {"allOf": [{"type": "number"}, {"minimum": 5}]},
        "code": {"type": "string", "pattern": "^[A-Z]{3}$"},
        "maybe": {"type": ["string", "null"]},
    },
    "required": ["name", "age"],
    "additionalProperties": False,
}


@pytest.mark.parametrize(
    ("doc", "ok"),
    [
        ('{"name": "Ada", "age": 36}', True),
        ('{"name": "Ada", "age": 36.0}', True),  # 36.0 is an integer in JSON Schema
        ('{"name": "Ada", "age": 36, "tags": ["x"], "kind": "a", "version": 2, "id": 7}', True),
        ('{"name": "Ada", "age": 36, "one": 3, "both": 6, "code": "ABC", "maybe": null}', True),
        ('{"name": "Ada"}', False),  # required
        ('{"name": "Ada", "age": true}', False),  # booleans are not integers
        ('{"name": "Ada", "age": 3.5}', False),
        ('{"name": "Ada", "age": -1}', False),  # minimum
        ('{"name": "", "age": 1}', False),  # minLength
        ('{"name": "Ada Lovelace!", "age": 1}', False),  # maxLength
        ('{"name": "Ada", "age": 1, "extra": 1}', False),  # additionalProperties
        ('{"name": "Ada", "age": 1, "tags": []}', False),  # minItems
        ('{"name": "Ada", "age": 1, "tags": ["a", "b", "c"]}', False),  # maxItems
        ('{"name": "Ada", "age": 1, "tags": [1]}', False),  # items
        ('{"name": "Ada", "age": 1, "kind": "c"}', False),  # enum
        ('{"name": "Ada", "age": 1, "version": 3}', False),  # const
        ('{"name": "Ada", "age": 1, "id": 1.5}', False),  # anyOf
        ('{"name": "Ada", "age": 1, "one": 12}', False),  # oneOf: matches both
        ('{"name": "Ada", "age": 1, "both": 2}', False),  # allOf
        ('{"name": "Ada", "age": 1, "code": "abc"}', False),  # pattern
        ("[]", False),  # type
    ],
)
async def test_schema_dict_builtin(doc: str, ok: bool) -> None:
    v = MatchesSchema(SCHEMA, engine="builtin")
    verdict = await check(v, resp(doc))
    assert verdict.accepted is ok, verdict.reason


async def test_schema_dict_refs_from_pydantic_and_reasons() -> None:
    v = MatchesSchema(Team.model_json_schema(), engine="builtin")
    good = '{"lead": {"name": "a", "age": 1}, "members": [{"name": "b", "age": 2}]}'
    assert (await check(v, resp(good))).accepted
    bad = await check(v, resp('{"lead": {"name": "a"}, "members": [{"name": "b", "age": "x"}]}'))
    assert not bad.accepted
    assert "'age'" in bad.reason and "$.members[0].age" in bad.reason


def test_schema_dict_unsupported_keyword_fails_at_construction() -> None:
    with pytest.raises(ValueError, match="uniqueItems"):
        MatchesSchema({"type": "array", "uniqueItems": True}, engine="builtin")
    with pytest.raises(ValueError, match="ref"):
        MatchesSchema({"$ref": "#/$defs/Missing"}, engine="builtin")


async def test_schema_dict_auto_engine() -> None:
    v = MatchesSchema(SCHEMA)
    assert v.engine in ("builtin", "jsonschema")
    assert (await check(v, resp('{"name": "a", "age": 1}'))).accepted
    assert not (await check(v, resp('{"name": "a"}'))).accepted


async def test_schema_dict_jsonschema_engine_agrees() -> None:
    pytest.importorskip("jsonschema")
    v = MatchesSchema(SCHEMA, engine="jsonschema")
    assert (await check(v, resp('{"name": "a", "age": 1}'))).accepted
    assert not (await check(v, resp('{"name": "a", "age": 1, "extra": 0}'))).accepted


async def test_min_length_short_answer_to_long_question() -> None:
    long_q = req(LONG_Q)
    v = MinLength()  # the tutorial's rule: < 50 chars for a > 30-word question
    assert not (await check(v, resp("Yes."), long_q)).accepted
    assert (await check(v, resp("x" * 50), long_q)).accepted
    assert (await check(v, resp("Yes."), req("Is water wet?"))).accepted  # short question: not checked
    tool = resp("", finish="tool_calls", tool_calls=[ToolCall("1", "lookup", {"q": 1})])
    assert (await check(v, tool, long_q)).accepted
    # the question is the last user turn, not a long system prompt
    sys_heavy = req("Is water wet?", system=LONG_Q)
    assert (await check(v, resp("Yes."), sys_heavy)).accepted


async def test_min_length_ratio_and_threshold() -> None:
    long_q = req(LONG_Q)
    v = MinLength(ratio=0.5)
    need = -(-len(LONG_Q) // 2)
    assert v.required(long_q) == need
    assert not (await check(v, resp("x" * (need - 1)), long_q)).accepted
    assert (await check(v, resp("x" * need), long_q)).accepted
    words = " ".join(["w"] * 10)
    assert not (await check(MinLength(chars=20, min_prompt_words=10), resp("short"), req(words))).accepted
    assert (await check(MinLength(chars=20, min_prompt_words=11), resp("short"), req(words))).accepted


@pytest.mark.parametrize(
    "text",
    [
        "I'm sorry, but I can't help with that.",
        "I can\u2019t assist with that request.",
        "I CANNOT HELP WITH this.",
        "As an AI language model, I have no opinions.",
        "Sorry,   I can't\ndo that.",
    ],
)
async def test_no_refusal_rejects(text: str) -> None:
    v = await check(NoRefusal(), resp(text))
    assert not v.accepted and v.reason.startswith("refusal")


async def test_no_refusal_accepts_and_edges() -> None:
    assert (await check(NoRefusal(), resp("Paris is the capital of France."))).accepted
    assert not (await check(NoRefusal(), resp("Sure!", finish="content_filter"))).accepted
    late = "Here is a long answer. " * 20 + "I can't provide exact figures, but roughly 3."
    assert (await check(NoRefusal(), resp(late))).accepted  # deep in a long answer: not a refusal
    assert not (await check(NoRefusal(within=None), resp(late))).accepted
    custom = NoRefusal(["no way"])
    assert not (await check(custom, resp("No way, sorry."))).accepted
    assert (await check(custom, resp("noway nowayward"))).accepted  # whole words only
    assert (await check(custom, resp("I can't help with that"))).accepted  # defaults replaced
    regex = NoRefusal([re.compile(r"\bnope\b", re.I)])
    assert not (await check(regex, resp("Nope."))).accepted


# ---------------------------------------------------------------- scores


@pytest.mark.parametrize(
    ("text", "scale", "expected"),
    [
        ("8/10", 1, 0.8),
        ("0.85", 1, 0.85),
        ("Confidence: 9", 10, 0.9),
        ("Confidence: 9", 1, 0.9),  # above the asked 0-1 scale: read as 9/10
        ("9", 10, 0.9),
        ("1", 10, 0.1),
        ("1", 1, 1.0),
        ("0.7", 10, 0.7),  # a decimal below 1 is already 0-1
        ("85%", 1, 0.85),
        ("4 out of 5", 1, 0.8),
        ("On a scale of 1-10, I'd say 7.", 10, 0.7),
        ("I would rate my confidence (1-10) as 8", 10, 0.8),
        ("Score = 0.75", 1, 0.75),
        ("<think>maybe 3?</think>\n0.9", 1, 0.9),
        ("garbage", 1, None),
        ("I am fairly confident.", 10, None),
        ("150", 1, None),
        ("-0.5", 1, None),
    ],
)
def test_parse_score(text: str, scale: float, expected: float | None) -> None:
    got = parse_score(text, scale)
    assert got == pytest.approx(expected) if expected is not None else got is None


# ---------------------------------------------------------------- model-graded


@pytest.mark.parametrize(
    ("reply", "ok", "score"),
    [("8/10", True, 0.8), ("0.85", True, 0.85), ("Confidence: 9", True, 0.9), ("6", False, 0.6)],
)
async def test_self_confidence_parses_and_thresholds(reply: str, ok: bool, score: float) -> None:
    rater = FakeProvider(reply)
    c = ctx(cheap=rater)
    answer = resp("Paris.", deployment="cheap")
    verdict = await SelfConfidence(threshold=0.8).check(req("Capital of France?"), answer, c)
    assert verdict.accepted is ok
    assert verdict.score == pytest.approx(score)
    assert len(rater.calls) == 1 and len(verdict.calls) == 1
    assert verdict.calls[0].cost_usd is not None and verdict.calls[0].cost_usd > 0
    assert verdict.calls[0].route.strategy_path == "t.confidence"


async def test_self_confidence_garbage_and_follow_up_request() -> None:
    rater = FakeProvider("I feel good about it")
    question = req("Capital of France?", response_format={"type": "json_object"}, system="Be brief.")
    answer = resp("Paris.", deployment="cheap")
    verdict = await SelfConfidence().check(question, answer, ctx(cheap=rater))
    assert not verdict.accepted and "unparseable" in verdict.reason
    assert verdict.decided is False  # no verdict on the answer, only escalation
    assert len(verdict.calls) == 1  # still billed
    model, follow_up = rater.calls[0]
    assert model == "cheap"
    roles = [m.role for m in follow_up.messages]
    assert roles == ["system", "user", "assistant", "user"]
    assert follow_up.messages[2].text == "Paris."
    assert "confident" in follow_up.messages[3].text and "1" in follow_up.messages[3].text
    assert follow_up.response_format is None and follow_up.tools is None


async def test_self_confidence_keeps_tool_definitions_for_tool_history() -> None:
    rater = FakeProvider("9")
    tool = {"name": "lookup", "parameters": {"type": "object", "properties": {}}}
    history = Request(
        messages=[
            Message("user", "Look it up"),
            Message("assistant", "", tool_calls=[ToolCall("c1", "lookup", {})]),
            Message("tool", "42", tool_call_id="c1", name="lookup"),
        ],
        tools=[tool],  # type: ignore[list-item]
    )
    await SelfConfidence().check(history, resp("It is 42.", deployment="cheap"), ctx(cheap=rater))
    follow_up = rater.calls[0][1]
    assert follow_up.tools is not None and follow_up.tool_choice == "none"
    plain = FakeProvider("9")
    await SelfConfidence().check(req("hi", tools=[tool]), resp("hello", deployment="cheap"), ctx(cheap=plain))
    assert plain.calls[0][1].tools is None and plain.calls[0][1].tool_choice is None


async def test_self_confidence_target_and_unknown_model() -> None:
    same, other = FakeProvider("9"), FakeProvider("2")
    c = ctx(cheap=same, strong=other)
    answer = resp("Paris.", deployment="cheap")
    low = await SelfConfidence(target="strong").check(req(), answer, c)
    assert not low.accepted and low.decided  # a real rating of 2/10: a verdict
    assert len(other.calls) == 1 and not same.calls
    nobody = await SelfConfidence().check(req(), resp("Paris."), c)  # no deployment known
    assert not nobody.accepted and not nobody.calls and not same.calls
    assert nobody.decided is False
    down = FakeProvider(AuthenticationError("bad key", status_code=401))
    failed = await SelfConfidence().check(req(), answer, ctx(cheap=down))
    assert not failed.accepted and failed.decided is False
    assert failed.reason.startswith("confidence (cheap): call failed: AllTargetsFailed")


@pytest.mark.parametrize(
    ("reply", "ok"), [("0.9", True), ("0.7", True), ("0.3", False), ("9/10", True), ("nope", False)]
)
async def test_judge_scores(reply: str, ok: bool) -> None:
    judge = FakeProvider(reply)
    verdict = await Judge("opus", threshold=0.7).check(req("What is 2+2?"), resp("4"), ctx(opus=judge))
    assert verdict.accepted is ok
    assert verdict.decided is (reply != "nope")  # a score is a verdict, either way; "nope" is none
    assert len(judge.calls) == 1 and len(verdict.calls) == 1
    assert verdict.calls[0].cost_usd is not None and verdict.calls[0].cost_usd > 0


async def test_judge_prompt_and_failures() -> None:
    judge = FakeProvider("0.9")
    v = Judge("opus", rubric="Answers must cite a source.")
    await v.check(req("What is 2+2?"), resp("4"), ctx(opus=judge))
    text = judge.calls[0][1].prompt_text
    assert "What is 2+2?" in text and "<response>\n4\n</response>" in text and "cite a source" in text

    down = FakeProvider(AuthenticationError("bad key", status_code=401))
    failed = await Judge("opus").check(req(), resp("4"), ctx(opus=down))
    assert not failed.accepted and failed.decided is False
    assert failed.reason.startswith("judge (opus): call failed: AllTargetsFailed")
    assert failed.calls == []

    garbled = FakeProvider("Looks fine to me!")
    unread = await Judge("opus").check(req(), resp("4"), ctx(opus=garbled))
    assert not unread.accepted and unread.decided is False
    assert unread.reason == "judge (opus): unparseable reply 'Looks fine to me!'"
    assert len(unread.calls) == 1  # still billed

    low = await Judge("opus").check(req(), resp("4"), ctx(opus=FakeProvider("0.2")))
    assert not low.accepted and low.decided is True and low.score == pytest.approx(0.2)

    with pytest.raises(ConfigError):  # an unknown judge alias is a bug, not a rejection
        await Judge("nope").check(req(), resp("4"), ctx(opus=judge))


# ---------------------------------------------------------------- Check and combinators


async def test_check_callables() -> None:
    async def async_score(request: Request, response: Response) -> float:
        return 0.9 if "yes" in response.text else 0.1

    assert (await check(Check(lambda r: r.text == "ok"), resp("ok"))).accepted
    assert (await check(Check(async_score), resp("yes"))).accepted
    low = await check(Check(async_score, threshold=0.5), resp("no"))
    assert not low.accepted and low.score == pytest.approx(0.1)
    seen: list[RunContext] = []

    def with_ctx(request: Request, response: Response, c: RunContext) -> Verdict:
        seen.append(c)
        return Verdict(False, 0.3, "custom")

    verdict = await check(Check(with_ctx), resp())
    assert verdict == Verdict(False, 0.3, "custom") and len(seen) == 1
    with pytest.raises(TypeError):
        await check(Check(lambda r: "yes"), resp())  # type: ignore[arg-type, return-value]


async def test_and_short_circuits_and_combines() -> None:
    judge = FakeProvider("0.9")
    c = ctx(opus=judge)
    both = ValidJSON() & Judge("opus")
    assert isinstance(both, AllOf)
    rejected = await both.check(req(), resp("not json"), c)
    assert not rejected.accepted and not judge.calls  # judge never paid for
    accepted = await both.check(req(), resp('{"a": 1}'), c)
    assert accepted.accepted and len(judge.calls) == 1
    assert "json: valid" in accepted.reason and "judge" in accepted.reason
    assert len(accepted.calls) == 1 and accepted.score == pytest.approx(0.9)
    # second fails after the first passed: combined reason, calls kept
    judge_low = FakeProvider("0.1")
    low = await (ValidJSON() & Judge("opus")).check(req(), resp("[]"), ctx(opus=judge_low))
    assert not low.accepted and len(low.calls) == 1 and "json: valid; judge" in low.reason


async def test_or_short_circuits() -> None:
    judge = FakeProvider("0.9")
    c = ctx(opus=judge)
    either = ValidJSON() | Judge("opus")
    assert isinstance(either, AnyOf)
    assert (await either.check(req(), resp("[]"), c)).accepted and not judge.calls
    rescued = await either.check(req(), resp("prose"), c)
    assert rescued.accepted and len(judge.calls) == 1 and len(rescued.calls) == 1
    assert "json: invalid" in rescued.reason and "judge" in rescued.reason


async def test_invert_flatten_and_functions() -> None:
    assert (await check(~ValidJSON(), resp("prose"))).accepted
    assert isinstance(~ValidJSON(), Not)
    chain = ValidJSON() & NoRefusal() & FinishedNormally()
    assert isinstance(chain, AllOf) and len(chain.verifiers) == 3
    mixed = (lambda r: "x" in r.text) & ValidJSON()  # a function on the left
    assert isinstance(mixed, AllOf) and isinstance(mixed.verifiers[0], Check)
    assert not (await check(mixed, resp("[]"))).accepted
    assert (await check(mixed, resp('["x"]'))).accepted
    assert "valid JSON" in (ValidJSON() | ~NoRefusal()).describe()


class Fixed(Verifier):
    """A verifier with a set outcome: ``"yes"`` accepts, ``"no"`` rejects,
    ``"unsure"`` reaches no verdict; records that it ran."""

    def __init__(self, outcome: str, ran: list[str]) -> None:
        self.outcome = outcome
        self.ran = ran
        self.name = outcome

    async def check(self, request: Request, response: Response, ctx: RunContext) -> Verdict:
        self.ran.append(self.outcome)
        if self.outcome == "yes":
            return Verdict.accept("yes")
        if self.outcome == "no":
            return Verdict.reject("no")
        return Verdict.undecided("unsure")


@pytest.mark.parametrize(
    ("outcomes", "accepted", "decided", "ran"),
    [
        (["yes", "yes"], True, True, 2),
        (["no", "unsure"], False, True, 1),  # a real rejection first: decided, the rest skipped
        (["yes", "no"], False, True, 2),
        (["unsure", "no"], False, False, 1),  # stops at the first rejection, even one without a verdict
        (["yes", "unsure"], False, False, 2),
        (["yes", "unsure", "yes"], False, False, 2),
    ],
)
async def test_all_of_decided(outcomes: list[str], accepted: bool, decided: bool, ran: int) -> None:
    seen: list[str] = []
    verdict = await check(AllOf(*(Fixed(o, seen) for o in outcomes)), resp())
    assert (verdict.accepted, verdict.decided) == (accepted, decided)
    assert seen == outcomes[:ran]


@pytest.mark.parametrize(
    ("outcomes", "accepted", "decided", "ran"),
    [
        (["no", "no"], False, True, 2),
        (["unsure", "yes"], True, True, 2),  # accepted by the second: a verdict
        (["yes", "unsure"], True, True, 1),
        (["no", "unsure"], False, False, 2),  # the unsure one might have accepted
        (["unsure", "no"], False, False, 2),
        (["unsure", "unsure"], False, False, 2),
    ],
)
async def test_any_of_decided(outcomes: list[str], accepted: bool, decided: bool, ran: int) -> None:
    seen: list[str] = []
    verdict = await check(AnyOf(*(Fixed(o, seen) for o in outcomes)), resp())
    assert (verdict.accepted, verdict.decided) == (accepted, decided)
    assert seen == outcomes[:ran]


async def test_decided_through_nesting_and_not() -> None:
    seen: list[str] = []
    # (no | unsure) & yes: the AnyOf gave no verdict and stopped the AllOf
    nested = await check(AllOf(AnyOf(Fixed("no", seen), Fixed("unsure", seen)), Fixed("yes", seen)), resp())
    assert not nested.accepted and nested.decided is False and seen == ["no", "unsure"]
    # yes | (yes & unsure): accepted at once
    rescued = await check(AnyOf(Fixed("yes", seen), AllOf(Fixed("yes", seen), Fixed("unsure", seen))), resp())
    assert rescued.accepted and rescued.decided
    inverted = await check(~Fixed("unsure", seen), resp())
    assert not inverted.accepted and inverted.decided is False  # never accepts an unchecked answer
    assert inverted.reason == "not (unsure)"
    assert (await check(~Fixed("no", seen), resp())).accepted
    flipped = await check(~Fixed("yes", seen), resp())
    assert not flipped.accepted and flipped.decided


async def test_combinators_with_a_judge_that_is_down() -> None:
    down = FakeProvider(AuthenticationError("bad key", status_code=401))
    c = ctx(opus=down)
    both = await (ValidJSON() & Judge("opus")).check(req(), resp("[]"), c)
    assert not both.accepted and both.decided is False
    assert both.reason.startswith("json: valid; judge (opus): call failed")
    either = await (ValidJSON() | Judge("opus")).check(req(), resp("prose"), c)
    assert not either.accepted and either.decided is False  # the judge might have rescued it
    bad_json = await (ValidJSON() & Judge("opus")).check(req(), resp("prose"), c)
    assert not bad_json.accepted and bad_json.decided and len(down.calls) == 2  # judge skipped


# ---------------------------------------------------------------- config


def resolver(seen: list[tuple[Any, str]] | None = None) -> Any:
    def resolve(value: Any, field: str) -> str:
        if seen is not None:
            seen.append((value, field))
        if value not in ("opus", "haiku"):
            raise ConfigError(f"unknown model alias {value!r}", field=field)
        return str(value)

    return resolve


def test_from_config_builds_and_resolves() -> None:
    seen: list[tuple[Any, str]] = []
    spec = [
        "finish_reason",
        "json",
        {"min_length": {"ratio": 0.5}},
        "no_refusal",
        {"confidence": {"threshold": 0.6, "scale": 1}},
        {"judge": {"target": "opus", "threshold": 0.8, "rubric": "be strict"}},
    ]
    v = from_config(spec, "strategies.c.accept", resolver(seen))
    assert isinstance(v, AllOf)
    kinds = [type(x) for x in v.verifiers]
    assert kinds == [FinishedNormally, ValidJSON, MinLength, NoRefusal, SelfConfidence, Judge]
    mins, judge = v.verifiers[2], v.verifiers[5]
    assert isinstance(mins, MinLength) and mins.ratio == 0.5
    assert isinstance(judge, Judge) and judge.target == "opus" and judge.threshold == 0.8
    assert seen == [("opus", "strategies.c.accept[5].judge.target")]
    assert isinstance(from_config("json", "x", resolver()), ValidJSON)
    assert isinstance(from_config({"any": ["json", {"not": "no_refusal"}]}, "x", resolver()), AnyOf)
    schema = from_config({"schema": {"type": "object", "required": ["a"]}}, "x", resolver())
    assert isinstance(schema, MatchesSchema)
    imported = from_config({"schema": "tierwise.types:Usage"}, "x", resolver())
    assert isinstance(imported, MatchesSchema) and imported.engine == "pydantic"
    assert isinstance(from_config({"check": "operator:truth"}, "x", resolver()), Check)


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        (["json", "jsn"], "s.accept[1]"),
        ([{"wat": {}}], "s.accept[0]"),
        ([{"judge": {"target": "opus", "thresh": 1}}], "s.accept[0].judge.thresh"),
        ([{"judge": {"target": "opus", "threshold": 2}}], "s.accept[0].judge.threshold"),
        ([{"judge": {"threshold": 0.5}}], "s.accept[0].judge.target"),
        ([{"judge": {"target": "gpt9"}}], "s.accept[0].judge.target"),
        (["judge"], "s.accept[0]"),
        ([{"min_length": {"chars": -1}}], "s.accept[0].min_length.chars"),
        ([{"json": 1, "extra": 2}], "s.accept[0]"),
        ([{"schema": {"type": "strng"}}], "s.accept[0].schema"),
        ([{"check": "nowhere.module:fn"}], "s.accept[0].check"),
        ([{"any": []}], "s.accept[0].any"),
        ([], "s.accept"),
    ],
)
def test_from_config_errors_name_the_field(spec: Any, field: str) -> None:
    with pytest.raises(ConfigError) as info:
        from_config(spec, "s.accept", resolver())
    assert info.value.field == field


def test_verdict_constructors() -> None:
    r = resp()
    assert Verdict.accept("fine", score=0.5, calls=[r]) == Verdict(True, 0.5, "fine", [r])
    assert Verdict.reject("bad") == Verdict(False, None, "bad", [])
    assert Verdict(True, 0.5, "fine", [r]).decided and Verdict.reject("bad").decided
    unsure = Verdict.undecided("judge down", score=0.1, calls=[r])
    assert unsure == Verdict(False, 0.1, "judge down", [r], decided=False)
    assert not unsure.accepted and unsure.decided is False
    assert unsure != Verdict.reject("judge down", score=0.1, calls=[r])
    with pytest.raises(ValueError):
        Verdict(True, None, "an acceptance is a verdict", decided=False)
