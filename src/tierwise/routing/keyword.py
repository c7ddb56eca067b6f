"""The rule classifier: the tutorials' keyword router, made exact and fast.

``KeywordClassifier.default()`` implements the routing rules of the multi-model
tutorials, in their order:

1. **Metadata hints** first, because the caller knows best: ``tier`` names the
   label outright, a truthy ``json_output`` (or a JSON ``response_format``) means
   structured, and ``task_type`` is looked up in a configurable table
   (``{"tests": "bulk", "extraction": "structured", …}``).
2. **Keyword rules** in priority order, the first rule with a matching term wins:
   structured (json, extract, parse, schema, csv, xml, "format as", "return as"),
   then complex (refactor, architect, "design system", debug, "race condition",
   "security audit", "root cause", "memory leak", deadlock, trade-offs,
   "compare approaches"), then bulk ("generate tests", "add docstrings",
   translate, boilerplate, template, lint, format, rename, "add comments").
3. **Long prompts** (more than 500 words, counted like ``str.split()`` on
   ASCII whitespace) upgrade to complex: a big context is usually code or
   documents that need the stronger model.
4. Otherwise **standard**.

Differences from the tutorials' ``any(kw in prompt_lower …)``, each deliberate:

* **Word boundaries.** Substring tests make "redesign the logo" complex (it
  contains "design") and "parametrize" structured (no, but "reparse" would be).
  Terms match whole words unless a term (``json*``) or its rule says otherwise.
* **No loose "design"/"optimize"/"explain why".** The issue's lists replace them
  with "design system" and friends: "design a logo" is not an architecture task.
* **Inflections listed, not guessed.** "refactor*", "debug*", "architect*" take
  their suffixes; "generate ... tests" allows words in between, so the
  tutorials' own example "Generate unit tests for …" is bulk (the tutorials'
  substring "generate tests" never matched it).
* **The system prompt is not classified** (``include_system=False``): the
  tutorials classify the user's prompt, not the instructions around it, and a
  fixed system prompt that says "answer in JSON" would otherwise make every
  request structured. The rest of the conversation is classified, every turn.

Scores are fixed figures, not probabilities: 1.0 for a hint, the rule's
``score`` (0.8) for a keyword, 0.6 for the long-prompt upgrade, 0.5 for the
default. Learned classifiers report real probabilities.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, get_args

from ..types import Request
from ._matcher import Engine, EngineName, MatchMode, Term, build_engine, build_long_check, parse_term
from .base import Classification

__all__ = ["DEFAULT_TASK_TYPES", "KeywordClassifier", "MatchMode", "Rule", "default_rules"]

HINT_SCORE = 1.0
LONG_SCORE = 0.6
DEFAULT_SCORE = 0.5

DEFAULT_TASK_TYPES: Mapping[str, str] = {
    # cheap, high-volume work
    "tests": "bulk",
    "test_generation": "bulk",
    "docstrings": "bulk",
    "comments": "bulk",
    "translation": "bulk",
    "formatting": "bulk",
    "boilerplate": "bulk",
    "rename": "bulk",
    "lint": "bulk",
    "classification": "bulk",
    "simple_qa": "bulk",
    # machine-readable output
    "extraction": "structured",
    "json": "structured",
    "parsing": "structured",
    "structured_output": "structured",
    # reasoning-heavy work
    "architecture": "complex",
    "design": "complex",
    "debugging": "complex",
    "refactoring": "complex",
    "security_audit": "complex",
    "root_cause": "complex",
    "reasoning": "complex",
    # everything else a capable mid-tier model handles
    "chat": "standard",
    "qa": "standard",
    "summarization": "standard",
    "code_generation": "standard",
}
"""``metadata["task_type"]`` → label (keys normalized: lowercase, ``-``/space → ``_``)."""


@dataclass(frozen=True, slots=True)
class Rule:
    """Label a request ``label`` when any of ``keywords`` occurs in it.

    Rules are tried by descending ``priority`` (ties: the order given), so the
    first rule that matches decides. ``match`` is the default for the rule's
    terms: ``"word"`` (whole words), ``"prefix"`` (words starting with the term)
    or ``"substring"``; a ``*`` at either end of one term overrides it there.
    See ``tierwise.routing._matcher`` for the term syntax (``...`` gaps).
    """

    label: str
    keywords: Sequence[str]
    priority: int = 0
    match: MatchMode = "word"
    score: float = 0.8

    def __post_init__(self) -> None:
        if not isinstance(self.label, str) or not self.label:
            raise ValueError("Rule.label must be a non-empty string")
        if isinstance(self.keywords, str):
            raise TypeError(f"Rule({self.label!r}).keywords must be a list of strings, not one string")
        object.__setattr__(self, "keywords", tuple(self.keywords))
        if not self.keywords:
            raise ValueError(f"Rule({self.label!r}) needs at least one keyword")
        if self.match not in get_args(MatchMode):
            raise ValueError(f"Rule({self.label!r}).match must be one of {get_args(MatchMode)}")
        if not 0.0 <= self.score <= 1.0:
            raise ValueError(f"Rule({self.label!r}).score must be within 0..1")
        if isinstance(self.priority, bool) or not isinstance(self.priority, int):
            raise TypeError(f"Rule({self.label!r}).priority must be an int")
        for kw in self.keywords:
            parse_term(kw, self.match)  # fail here, naming the rule, not at first use

    def terms(self) -> tuple[Term, ...]:
        return tuple(parse_term(kw, self.match) for kw in self.keywords)


_FALSY_STRINGS = frozenset(("", "false", "0", "no", "off", "none", "null"))


def _truthy(value: Any) -> bool:
    """A metadata hint's truth: CLI flags and web forms deliver strings, and the
    string "false" must mean false."""
    if isinstance(value, str):
        return value.strip().lower() not in _FALSY_STRINGS
    return bool(value)


def default_rules() -> list[Rule]:
    """The tutorials' rules with the issue's keyword lists (see module docstring)."""
    return [
        Rule(
            "structured",
            [
                "json*",  # json, jsonl, jsonify, jsonschema
                "extract*",  # extract, extraction, extracted
                "parse",
                "parser",
                "parsing",
                "schema",
                "schemas",
                "csv",
                "xml",
                "format as",
                "return as",
                "structured output",
                "structured data",
            ],
            priority=300,
        ),
        Rule(
            "complex",
            [
                "refactor*",
                "architect*",  # architect, architecture, architectural
                "design system*",
                "system design",
                "debug*",
                "race condition*",
                "security audit*",
                "root cause*",
                "memory leak*",
                "deadlock*",
                "trade-offs",
                "trade-off",
                "tradeoffs",
                "tradeoff",
                "trade offs",
                "compare approaches",
            ],
            priority=200,
        ),
        Rule(
            "bulk",
            [
                "generate ... tests",
                "generate ... test",
                "write tests",
                "write unit tests",
                "add tests",
                "add unit tests",
                "add ... docstrings",
                "add ... docstring",
                "write ... docstring*",
                "translate",
                "translation*",
                "translating",
                "boilerplate",
                "template*",
                "lint*",
                "format",
                "formatting",
                "reformat*",
                "rename*",
                "renaming",
                "add ... comments",
                "add ... comment",
            ],
            priority=100,
        ),
    ]


def _task_key(value: str) -> str:
    return value.strip().lower().replace("-", "_").replace(" ", "_")


class KeywordClassifier:
    """Rule-based classifier; see the module docstring for the rules and why.

    Subclass hooks: ``hint(request)`` (metadata and ``response_format``) and
    ``text_of(request)`` (what the rules are matched against).
    """

    def __init__(
        self,
        rules: Sequence[Rule],
        *,
        default_label: str = "standard",
        long_prompt_words: int | None = 500,
        long_label: str = "complex",
        task_types: Mapping[str, str] | None = None,
        json_label: str | None = "structured",
        include_system: bool = False,
        engine: EngineName = "auto",
    ) -> None:
        if isinstance(rules, Rule):
            raise TypeError("rules must be a list of Rule")
        for rule in rules:
            if not isinstance(rule, Rule):
                raise TypeError(f"rules must be Rule instances, got {type(rule).__name__}")
        if not default_label or not long_label:
            raise ValueError("default_label and long_label must be non-empty")
        if engine not in ("auto", "rust", "re"):
            raise ValueError("engine must be 'auto', 'rust' or 're'")
        ordered = sorted(enumerate(rules), key=lambda item: (-item[1].priority, item[0]))
        self.rules: tuple[Rule, ...] = tuple(rule for _, rule in ordered)
        self.default_label = default_label
        self.long_prompt_words = long_prompt_words
        self.long_label = long_label
        self.task_types: dict[str, str] = {
            _task_key(k): v for k, v in (DEFAULT_TASK_TYPES if task_types is None else task_types).items()
        }
        self.json_label = json_label
        self.include_system = include_system
        self._terms: tuple[tuple[Term, ...], ...] = tuple(rule.terms() for rule in self.rules)
        self._engine: Engine = build_engine(self._terms, engine)
        self._is_long: Callable[[str], bool] | None = (
            build_long_check(long_prompt_words, engine) if long_prompt_words is not None else None
        )

    # ------------------------------------------------------------------ building

    @classmethod
    def default(cls, **options: Any) -> KeywordClassifier:
        """The tutorials' rules; ``options`` are the constructor's keyword arguments."""
        return cls(default_rules(), **options)

    @classmethod
    def from_config(cls, mapping: Mapping[str, Any], *, where: str = "classifier") -> KeywordClassifier:
        """Build from a config table; ``ConfigError`` names the offending field.

        Keys (all optional): ``base`` (``"default"``: start from the tutorials'
        rules, or ``"none"``), ``rules`` (label → list of keywords, or a table
        with ``keywords``, ``priority``, ``match``, ``score``; a label that the
        base already has is replaced, keeping its priority unless given),
        ``extra_keywords`` (label → keywords appended to that label's rule),
        ``default_label``, ``long_prompt_words`` (``false`` disables),
        ``long_label``, ``task_types`` (replaces the default table),
        ``json_label`` (``false`` disables), ``include_system``, ``engine``.
        """
        from ._config import classifier_kwargs

        return cls(**classifier_kwargs(mapping, where))

    # ------------------------------------------------------------------ introspection

    @property
    def engine(self) -> str:
        """``"rust"`` (pydantic-core's regex) or ``"re"`` (the fallback)."""
        return self._engine.name

    @property
    def labels(self) -> tuple[str, ...]:
        """Every label this classifier can return without a ``tier`` hint."""
        seen: dict[str, None] = {}
        for rule in self.rules:
            seen[rule.label] = None
        for label in (self.json_label, *self.task_types.values(), self.long_label, self.default_label):
            if label:
                seen[label] = None
        return tuple(seen)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(labels={list(self.labels)}, rules={len(self.rules)}, "
            f"engine={self.engine!r})"
        )

    # ------------------------------------------------------------------ classifying

    def hint(self, request: Request) -> Classification | None:
        """The caller's explicit hints, or ``None`` to fall through to the rules."""
        md = request.metadata
        if md:
            tier = md.get("tier")
            if isinstance(tier, str) and tier:
                return Classification(tier, HINT_SCORE, f"metadata tier={tier!r}")
            if self.json_label is not None and _truthy(md.get("json_output")):
                return Classification(self.json_label, HINT_SCORE, "metadata json_output")
            task = md.get("task_type")
            if isinstance(task, str):
                label = self.task_types.get(_task_key(task))
                if label is not None:
                    return Classification(label, HINT_SCORE, f"metadata task_type={task!r} ({label})")
        fmt = request.response_format
        if self.json_label is not None and fmt:
            kind = fmt.get("type")
            if kind in ("json_object", "json_schema"):
                return Classification(self.json_label, HINT_SCORE, f"response_format {kind}")
        return None

    def text_of(self, request: Request) -> str:
        """The conversation the rules see: every turn, system prompt only if asked."""
        messages = request.messages
        if self.include_system:
            return request.prompt_text
        if len(messages) == 1:
            only = messages[0]
            return "" if only.role == "system" else only.text
        return "\n".join(m.text for m in messages if m.role != "system")

    def classify(self, request: Request) -> Classification:
        hinted = self.hint(request)
        if hinted is not None:
            return hinted
        text = self.text_of(request)
        hit = self._engine.first(text.lower())
        if hit is not None:
            i, j = hit
            rule = self.rules[i]
            what = repr(self._terms[i][j].text) if j >= 0 else "a keyword"
            return Classification(rule.label, rule.score, f"matched {what} ({rule.label})")
        if self._is_long is not None and self._is_long(text):
            return Classification(
                self.long_label,
                LONG_SCORE,
                f"long prompt: more than {self.long_prompt_words} words ({self.long_label})",
            )
        return Classification(self.default_label, DEFAULT_SCORE, f"no rule matched ({self.default_label})")
