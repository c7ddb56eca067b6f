"""KeywordClassifier: the tutorials' rules, word boundaries, hints, long prompts, config.

Every behavioural test runs on both matching engines (Rust ``regex`` through
pydantic-core, and Python ``re``), so the fast engine is held to the reference
one; a separate test pins that the default really uses the fast engine.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import pytest

from tierwise.errors import ConfigError
from tierwise.routing import Classification, Classifier, KeywordClassifier, Rule, _matcher, default_rules
from tierwise.types import Message, Request

ENGINES = ["rust", "re"]


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def clf(engine: str, **kw: Any) -> KeywordClassifier:
    return KeywordClassifier.default(engine=engine, **kw)


def label_of(c: KeywordClassifier, prompt: str, **metadata: Any) -> str:
    return c.classify(Request.from_prompt(prompt, metadata=metadata)).label


# -- the tutorials' own examples ------------------------------------------------------

TUTORIAL_EXAMPLES = [
    # 000: "Complex architecture task → Claude Opus"
    (
        "Design a caching strategy for a multi-tenant SaaS application that handles 10K "
        "requests/second. Consider trade-offs between Redis cluster, local cache, and CDN caching.",
        "complex",
        "matched 'trade-offs' (complex)",
    ),
    # 000: "Structured extraction → GPT-5.5"
    (
        "Extract all function names, parameters, and return types from this Python file and "
        "return as JSON schema.",
        "structured",
        None,
    ),
    # 000: "Bulk generation → DeepSeek" (the tutorial's substring "generate tests" never
    # matched its own example; "generate ... tests" does)
    (
        "Generate unit tests for all public methods in this class. Use pytest with parametrize "
        "for edge cases.",
        "bulk",
        "matched 'generate ... tests' (bulk)",
    ),
    # 000: the batch example, routed to the cheap model
    ("Write a clear docstring for this Python function:\ndef calculate_tax(income, rate):", "bulk", None),
    # 002: complex / structured / bulk
    (
        "Design a distributed caching system that handles partition tolerance and maintains "
        "consistency across 3 regions. Consider the CAP trade-offs.",
        "complex",
        None,
    ),
    (
        "Extract all API endpoints from this codebase and return as JSON with method, path, "
        "description, and parameters for each.",
        "structured",
        None,
    ),
    ("Generate unit tests for all 15 functions in this utils module.", "bulk", None),
    # 003 uses fast/mid/power tiers: a JSON conversion is our structured tier, the
    # architecture plan its "power" tier, our complex
    ("Convert this list to JSON: name=Alice, age=30, role=dev", "structured", None),
    ("Architect a microservices migration plan for our Django monolith with 200k LOC", "complex", None),
]


@pytest.mark.parametrize(("prompt", "label", "reason"), TUTORIAL_EXAMPLES)
def test_tutorial_examples_are_labelled_as_the_tutorials_say(
    engine: str, prompt: str, label: str, reason: str | None
) -> None:
    result = clf(engine).classify(Request.from_prompt(prompt))
    assert result.label == label
    assert result.score == 0.8
    assert result.reason.startswith("matched '") and result.reason.endswith(f"({label})")
    if reason is not None:
        assert result.reason == reason


def test_002_structured_example_with_its_json_output_hint(engine: str) -> None:
    prompt = "Extract all API endpoints from this codebase and return as JSON with method, path."
    result = clf(engine).classify(Request.from_prompt(prompt, metadata={"json_output": True}))
    assert (result.label, result.score, result.reason) == ("structured", 1.0, "metadata json_output")


def test_plain_prompt_is_standard(engine: str) -> None:
    result = clf(engine).classify(Request.from_prompt("What is the capital of France?"))
    assert (result.label, result.score, result.reason) == ("standard", 0.5, "no rule matched (standard)")


# -- word boundaries ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prompt", "label"),
    [
        ("Redesign the logo for our bakery", "standard"),  # "design" is not a keyword, nor inside words
        ("Design a logo with warm colours", "standard"),  # the tutorial's loose "design" is gone
        ("Design system tokens for our app", "complex"),
        ("we need a better system design here", "complex"),
        ("please do the design\nsystem review", "complex"),  # any whitespace inside a phrase
        ("Explain this parametrize decorator", "standard"),  # no "parse" inside "parametrize"
        ("reparse nothing, just explain", "standard"),
        ("jsonify the payload", "structured"),  # json* is a prefix term on purpose
        ("write it as JSONL", "structured"),
        ("help me with refactoring this module", "complex"),  # refactor*
        ("the debugger stops here, why?", "complex"),
        ("the architecture of this service", "complex"),
        ("what formation do penguins fly in?", "standard"),  # "format" is a whole word
        ("explain the xmlns attribute", "standard"),
        ("weigh the tradeoffs", "complex"),
        ("weigh the trade offs", "complex"),
        ("generate   some   unit tests", "bulk"),
        ("generate a lot of very good tests", "standard"),  # more than three words apart
        ("Translate this paragraph to German", "bulk"),
        ("add inline comments to this function", "bulk"),
        ("run the linter on it", "bulk"),
        ("rename the variable x", "bulk"),
    ],
)
def test_word_boundaries(engine: str, prompt: str, label: str) -> None:
    assert label_of(clf(engine), prompt) == label


@pytest.mark.parametrize(
    ("prompt", "label"),
    [
        ("Refactor this and return as JSON", "structured"),  # structured before complex
        ("Debug this boilerplate", "complex"),  # complex before bulk
        ("Format the output as a table, then extract totals", "structured"),
        ("format as yaml please", "structured"),  # "format as" before bulk's "format"
        ("format this file", "bulk"),
    ],
)
def test_rule_priority_follows_the_tutorial_order(engine: str, prompt: str, label: str) -> None:
    assert label_of(clf(engine), prompt) == label


# -- long prompts ------------------------------------------------------------------------


def words(n: int, sep: str = " ") -> str:
    return sep.join(f"w{i % 97}" for i in range(n))


@pytest.mark.parametrize("sep", [" ", "\n", " \t ", "\n\n"])
def test_long_prompts_upgrade_to_complex(engine: str, sep: str) -> None:
    c = clf(engine)
    over = c.classify(Request.from_prompt(words(501, sep)))
    assert (over.label, over.score) == ("complex", 0.6)
    assert over.reason == "long prompt: more than 500 words (complex)"
    assert c.classify(Request.from_prompt(words(500, sep))).label == "standard"
    assert c.classify(Request.from_prompt("   " + words(500, sep) + "  \n")).label == "standard"


def test_a_keyword_beats_the_long_prompt_upgrade(engine: str) -> None:
    assert label_of(clf(engine), words(2000) + " now format it") == "bulk"


def test_long_prompt_threshold_and_label_are_configurable(engine: str) -> None:
    c = clf(engine, long_prompt_words=10, long_label="heavy")
    assert label_of(c, words(11)) == "heavy"
    assert label_of(c, words(10)) == "standard"
    assert label_of(clf(engine, long_prompt_words=None), words(5000)) == "standard"
    # past the Rust word-count pattern's size limit, str.split counts
    big = clf(engine, long_prompt_words=3000)
    assert label_of(big, words(3001)) == "complex"
    assert label_of(big, words(3000)) == "standard"


def test_words_are_counted_over_the_whole_conversation(engine: str) -> None:
    turns = [Message("user", words(300)), Message("assistant", words(150)), Message("user", words(60))]
    assert clf(engine).classify(Request(messages=turns)).label == "complex"


# -- metadata hints ------------------------------------------------------------------------


def test_tier_hint_overrides_keywords(engine: str) -> None:
    c = clf(engine)
    result = c.classify(Request.from_prompt("Refactor this module", metadata={"tier": "bulk"}))
    assert (result.label, result.score, result.reason) == ("bulk", 1.0, "metadata tier='bulk'")
    # any label, even one without a rule: the router decides what to do with it
    assert label_of(c, "hello", tier="premium") == "premium"
    # tier wins over json_output
    assert label_of(c, "hello", tier="complex", json_output=True) == "complex"
    # empty / non-string tiers are not hints
    assert label_of(c, "Refactor this", tier="") == "complex"
    assert label_of(c, "Refactor this", tier=None) == "complex"


def test_json_output_hint_overrides_keywords(engine: str) -> None:
    c = clf(engine)
    assert label_of(c, "Refactor this module", json_output=True) == "structured"
    assert label_of(c, "Refactor this module", json_output=False) == "complex"
    assert label_of(clf(engine, json_label=None), "Refactor this module", json_output=True) == "complex"


def test_task_type_hint_goes_through_the_table(engine: str) -> None:
    c = clf(engine)
    result = c.classify(Request.from_prompt("Refactor this", metadata={"task_type": "tests"}))
    assert (result.label, result.reason) == ("bulk", "metadata task_type='tests' (bulk)")
    assert label_of(c, "hello", task_type="Test-Generation") == "bulk"  # normalized key
    assert label_of(c, "hello", task_type="extraction") == "structured"
    assert label_of(c, "Refactor this", task_type="no-such-task") == "complex"  # falls through
    custom = clf(engine, task_types={"poem": "standard"})
    assert label_of(custom, "Refactor this", task_type="poem") == "standard"
    assert label_of(custom, "Refactor this", task_type="tests") == "complex"  # table replaced


def test_json_response_format_means_structured(engine: str) -> None:
    c = clf(engine)
    schema = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}
    result = c.classify(Request.from_prompt("Refactor this", response_format=schema))
    assert (result.label, result.reason) == ("structured", "response_format json_schema")
    assert label_of(c, "Refactor this", tier="complex") == "complex"
    plain = Request.from_prompt("Refactor this", response_format={"type": "text"})
    assert c.classify(plain).label == "complex"


# -- what text is classified --------------------------------------------------------------


def test_the_classifier_sees_every_turn(engine: str) -> None:
    turns = [
        Message("user", "there is a race condition in the worker pool"),
        Message("assistant", "Can you show me the code?"),
        Message("user", "sure, here it is"),
    ]
    result = clf(engine).classify(Request(messages=turns))
    assert (result.label, result.reason) == ("complex", "matched 'race condition*' (complex)")


def test_the_system_prompt_is_not_classified_unless_asked(engine: str) -> None:
    request = Request.from_prompt("hello there", system="Always answer in JSON.")
    assert clf(engine).classify(request).label == "standard"
    assert clf(engine, include_system=True).classify(request).label == "structured"
    only_system = Request(messages=[Message("system", "Answer in JSON.")])
    assert clf(engine).classify(only_system).label == "standard"


# -- custom rules --------------------------------------------------------------------------


def test_custom_rules_priority_and_match_modes(engine: str) -> None:
    rules = [
        Rule("low", ["integral"], priority=1),
        Rule("high", ["derivative", "integral"], priority=5),
        Rule("prefix", ["kube"], match="prefix"),
        Rule("substring", ["sql"], match="substring"),
        Rule("suffix", ["*ops"]),
    ]
    c = KeywordClassifier(rules, engine=engine)  # type: ignore[arg-type]
    assert [r.label for r in c.rules] == ["high", "low", "prefix", "substring", "suffix"]
    assert c.classify(Request.from_prompt("an integral")).reason == "matched 'integral' (high)"
    assert label_of(c, "deploy to kubernetes") == "prefix"
    assert label_of(c, "deploy to minikube") == "standard"  # prefix keeps the left boundary
    assert label_of(c, "a nosql store") == "substring"
    assert label_of(c, "ask devops") == "suffix"
    assert label_of(c, "ops review") == "suffix"
    assert label_of(c, "opsec review") == "standard"


def test_ties_keep_declaration_order(engine: str) -> None:
    c = KeywordClassifier([Rule("a", ["x1"]), Rule("b", ["x1"])], engine=engine)  # type: ignore[arg-type]
    assert label_of(c, "x1") == "a"


def test_non_ascii_keywords_match_as_substrings_at_their_non_ascii_edges(engine: str) -> None:
    c = KeywordClassifier(
        [Rule("bulk", ["翻译", "übersetzen", "c++"])],
        engine=engine,  # type: ignore[arg-type]
    )
    assert label_of(c, "请翻译这段话") == "bulk"
    assert label_of(c, "Bitte ÜBERSETZEN Sie das") == "bulk"
    assert label_of(c, "modern C++17 idioms") == "bulk"
    assert label_of(c, "abc++ is not a language") == "standard"  # the "c" edge is ASCII: bounded


def test_custom_default_label(engine: str) -> None:
    c = KeywordClassifier([], default_label="chat", engine=engine)  # type: ignore[arg-type]
    assert c.classify(Request.from_prompt("Refactor this")).reason == "no rule matched (chat)"


@pytest.mark.parametrize(
    ("args", "kwargs", "error"),
    [
        (("bulk", "lint"), {}, TypeError),  # one string, not a list
        (("bulk", []), {}, ValueError),
        (("", ["x"]), {}, ValueError),
        (("bulk", ["x"]), {"match": "fuzzy"}, ValueError),
        (("bulk", ["x"]), {"score": 1.5}, ValueError),
        (("bulk", ["x"]), {"priority": "high"}, TypeError),
        (("bulk", ["... tests"]), {}, ValueError),
        (("bulk", ["generate ... ... tests"]), {}, ValueError),
        (("bulk", ["   "]), {}, ValueError),
        (("bulk", ["*"]), {}, ValueError),
    ],
)
def test_invalid_rules_fail_at_construction(
    args: tuple[Any, ...], kwargs: dict[str, Any], error: type
) -> None:
    with pytest.raises(error):
        Rule(*args, **kwargs)


def test_default_rule_set_is_the_issue_lists() -> None:
    rules = {r.label: r for r in default_rules()}
    assert list(rules) == ["structured", "complex", "bulk"]
    assert rules["structured"].priority > rules["complex"].priority > rules["bulk"].priority
    for kw in ("json*", "extract*", "parse", "schema", "csv", "xml", "format as", "return as"):
        assert kw in rules["structured"].keywords
    for kw in ("refactor*", "architect*", "design system*", "debug*", "race condition*", "security audit*"):
        assert kw in rules["complex"].keywords
    for kw in ("root cause*", "memory leak*", "deadlock*", "trade-offs", "compare approaches"):
        assert kw in rules["complex"].keywords
    for kw in ("generate ... tests", "add ... docstrings", "translate", "boilerplate", "template*", "lint*"):
        assert kw in rules["bulk"].keywords
    for kw in ("format", "rename*", "add ... comments"):
        assert kw in rules["bulk"].keywords
    assert "design" not in rules["complex"].keywords and "optimize" not in rules["complex"].keywords


# -- config --------------------------------------------------------------------------------


def test_from_config_replaces_extends_and_adds_rules(engine: str) -> None:
    c = KeywordClassifier.from_config(
        {
            "rules": {
                "complex": ["kubernetes", "terraform"],  # replaces complex's keywords, keeps its priority
                "math": {"keywords": ["integral*"], "priority": 250, "score": 0.9},
            },
            "extra_keywords": {"bulk": ["changelog"]},
            "long_prompt_words": 50,
            "engine": engine,
        }
    )
    assert [r.label for r in c.rules] == ["structured", "math", "complex", "bulk"]
    assert label_of(c, "refactor the terraform module") == "complex"
    assert label_of(c, "refactor this") == "standard"  # the default complex keywords are gone
    result = c.classify(Request.from_prompt("integrals of the format"))
    assert (result.label, result.score) == ("math", 0.9)  # math outranks complex and bulk
    assert label_of(c, "update the changelog") == "bulk"
    assert label_of(c, "lint it") == "bulk"
    assert label_of(c, words(51)) == "complex"


def test_from_config_base_none_and_options(engine: str) -> None:
    c = KeywordClassifier.from_config(
        {
            "base": "none",
            "rules": {"first": ["alpha"], "second": {"keywords": ["beta"], "match": "prefix"}},
            "default_label": "chat",
            "long_prompt_words": False,
            "json_label": False,
            "task_types": {"poem": "second"},
            "include_system": True,
            "engine": engine,
        }
    )
    assert [r.label for r in c.rules] == ["first", "second"]
    assert label_of(c, "alpha betamax") == "first"
    assert label_of(c, "betamax") == "second"
    assert label_of(c, "refactor " + words(3000)) == "chat"
    assert label_of(c, "x", json_output=True) == "chat"
    assert label_of(c, "x", task_type="poem") == "second"
    assert c.classify(Request.from_prompt("x", system="alpha")).label == "first"


@pytest.mark.parametrize(
    ("mapping", "field"),
    [
        ({"rule": {}}, "c.rule"),
        ({"base": "tutorial"}, "c.base"),
        ({"rules": ["json"]}, "c.rules"),
        ({"rules": {"bulk": "lint"}}, "c.rules.bulk"),
        ({"rules": {"bulk": ["lint", "... x"]}}, "c.rules.bulk[1]"),
        ({"rules": {"bulk": {"keywords": ["x"], "weight": 2}}}, "c.rules.bulk.weight"),
        ({"rules": {"bulk": {"priority": 2}}}, "c.rules.bulk.keywords"),
        ({"rules": {"bulk": {"keywords": [3]}}}, "c.rules.bulk.keywords[0]"),
        ({"rules": {"bulk": {"keywords": ["x"], "match": "fuzzy"}}}, "c.rules.bulk.match"),
        ({"rules": {"bulk": {"keywords": ["x"], "priority": "1"}}}, "c.rules.bulk.priority"),
        ({"rules": {"bulk": {"keywords": ["x"], "score": 2}}}, "c.rules.bulk.score"),
        ({"extra_keywords": {"math": ["x"]}}, "c.extra_keywords.math"),
        ({"extra_keywords": {"bulk": [""]}}, "c.extra_keywords.bulk[0]"),
        ({"long_prompt_words": 0}, "c.long_prompt_words"),
        ({"long_prompt_words": True}, "c.long_prompt_words"),
        ({"default_label": ""}, "c.default_label"),
        ({"json_label": 3}, "c.json_label"),
        ({"task_types": {"tests": 1}}, "c.task_types.tests"),
        ({"include_system": "yes"}, "c.include_system"),
        ({"engine": "pcre"}, "c.engine"),
    ],
)
def test_from_config_errors_name_the_field(mapping: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        KeywordClassifier.from_config(mapping, where="c")
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}: ")


# -- engines -------------------------------------------------------------------------------


def test_the_default_uses_the_fast_engine() -> None:
    assert KeywordClassifier.default().engine == "rust"


def test_auto_falls_back_to_re_when_rust_is_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("no rust regex here")

    monkeypatch.setattr(_matcher, "_RustEngine", broken)
    c = KeywordClassifier.default()
    assert c.engine == "re"
    assert label_of(c, "Refactor this") == "complex"
    with pytest.raises(RuntimeError):
        KeywordClassifier.default(engine="rust")


EQUIVALENCE_TEXTS = [
    "",
    "json",
    "JSON.",
    "(refactor)",
    "pre-refactor",
    "re_factor refactor_x x_refactor",
    "trade-off trade-offs trade_offs",
    "format\tas",
    "add\n\nmany   docstrings",
    "add a b c d docstrings",
    "café json; über-lint",
    "ünjson jsonü",
    "generate 1 2 3 tests",
    "generate 1 2 3 4 tests",
    "root causes of the memory leaks",
    "security auditing and deadlocks",
    "CSV/XML/YAML",
    "x" * 5000 + " lint",
    words(700),
    "1lint lint1 _lint lint_",
    "\xa0".join(["w"] * 600),  # NBSP does not separate words: one long word
    "\x1c".join(["w"] * 600),  # ASCII separators do, as in str.split
    "é " * 501,
    "é\u2003" * 600,
]


@pytest.mark.parametrize("text", EQUIVALENCE_TEXTS)
def test_both_engines_agree(text: str) -> None:
    fast, ref = KeywordClassifier.default(engine="rust"), KeywordClassifier.default(engine="re")
    request = Request.from_prompt(text)
    assert fast.classify(request) == ref.classify(request)


@pytest.mark.parametrize(
    ("text", "label"),
    [
        ("\xa0".join(["w"] * 600), "standard"),
        ("\x1c".join(["w"] * 600), "complex"),
        ("é " * 501, "complex"),
        ("é " * 500, "standard"),
    ],
)
def test_words_are_separated_by_ascii_whitespace(engine: str, text: str, label: str) -> None:
    assert label_of(clf(engine), text) == label


def test_classifier_protocol_and_classification() -> None:
    assert isinstance(KeywordClassifier.default(), Classifier)
    with pytest.raises(ValueError, match=r"0\.\.1"):
        Classification("x", 1.5)
    assert set(KeywordClassifier.default().labels) == {"structured", "complex", "bulk", "standard"}


def test_classifying_a_2000_word_prompt_stays_fast() -> None:
    """A guard against losing the fast engine, not the benchmark (benchmarks/classify.py):
    Python ``re`` takes ~300 µs here, the Rust engine ~15 µs; the bound leaves room
    for a loaded CI machine."""
    c = KeywordClassifier.default()
    request = Request.from_prompt(words(2000) + " add docstrings")
    for _ in range(20):
        c.classify(request)
    samples = []
    for _ in range(200):
        t0 = time.perf_counter()
        c.classify(request)
        samples.append(time.perf_counter() - t0)
    assert statistics.median(samples) < 150e-6
