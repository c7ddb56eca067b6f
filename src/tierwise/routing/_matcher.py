"""Keyword terms → regular expressions, and the two engines that run them.

Why two engines. The rule classifier runs on every request and must label a
2,000-word prompt (~12,000 characters) in under 50 µs at p99. Measured here on
such a prompt with the default rules: Python's ``re`` (a backtracking engine)
needs 0.2-0.5 ms however the ~50 terms are arranged (one alternation with word
boundaries is tried at every position, ~6 ms; literal-first patterns one by one,
~7 µs each); a word set is no better (``str.split`` alone allocates 2,000
strings, ~50 µs), nor one ``in`` scan per keyword (~5 µs each). pydantic-core,
already a dependency, wraps Rust's ``regex`` crate (a lazy DFA behind SIMD
literal prefilters) and exposes it through its public
``core_schema.str_schema(pattern=…)``: a ``left_to_right`` union of
``chain(pattern → constant)`` validators is a first-match finder that crosses
the Python/Rust boundary once and raises nothing, ~7 µs for the three default
rules over 2,000 words. The ``re`` engine is the fallback (a pydantic-core that
cannot build the patterns) and the reference the tests compare the fast engine
against; both are generated from the same term, with the same ASCII word
boundaries, so they agree.

Term syntax (case-insensitive; the text is lowercased once before matching):

* ``refactor`` — a whole word: ``(?a:\\b)refactor(?a:\\b)``; "refactoring" and
  "prerefactor" do not match. Boundaries are ASCII (letters, digits, ``_``), the
  same in both engines; at an edge whose character is not an ASCII word
  character (``c++``, a CJK keyword) there is no boundary to assert, so that
  edge matches as a substring.
* ``json*`` — a word prefix ("jsonl", "jsonify"); ``*sql`` — a word suffix;
  ``*json*`` — anywhere. A rule's ``match`` mode sets the default for its terms.
* ``format as`` — whitespace in a term matches any run of whitespace.
* ``generate ... tests`` — ``...`` stands for up to three words in between
  ("generate unit tests", "generate pytest unit tests").
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypeAlias, cast

__all__ = [
    "GAP_WORDS",
    "Engine",
    "MatchMode",
    "Term",
    "build_engine",
    "build_long_check",
    "parse_term",
]

MatchMode: TypeAlias = Literal["word", "prefix", "substring"]
EngineName: TypeAlias = Literal["auto", "rust", "re"]

GAP_WORDS = 3
"""How many words ``...`` in a term may stand for."""

_GAP = "..."
# Escaped in both dialects; every other ASCII punctuation mark is a literal in both.
_META = frozenset("\\.+*?()|[]{}^$#&-~")
_BOUNDARY = {"rust": r"(?-u:\b)", "re": r"(?a:\b)"}
# Above this many words the Rust word-count pattern gets too big to compile.
_RUST_MAX_WORDS = 2000


@dataclass(frozen=True, slots=True)
class Term:
    """One compiled keyword: ``text`` as written (for reasons), a dialect-neutral
    pattern ``body``, and whether each edge asserts a word boundary."""

    text: str
    body: str
    left: bool
    right: bool

    def pattern(self, dialect: Literal["rust", "re"]) -> str:
        b = _BOUNDARY[dialect]
        return f"{b if self.left else ''}{self.body}{b if self.right else ''}"


def _is_word_char(c: str) -> bool:
    return c.isascii() and (c.isalnum() or c == "_")


def _escape(token: str) -> str:
    return "".join("\\" + c if c in _META else c for c in token)


def parse_term(raw: str, match: MatchMode = "word") -> Term:
    """Compile one keyword; ``ValueError`` says what is wrong with it."""
    if not isinstance(raw, str):
        raise TypeError(f"keyword must be a string, got {type(raw).__name__}")
    text = raw.strip()
    s = text.lower()
    left = match != "substring"
    right = match == "word"
    if s.startswith("*"):
        left, s = False, s[1:]
    if s.endswith("*"):
        right, s = False, s[:-1]
    tokens = s.split()
    if not tokens or all(t == _GAP for t in tokens):
        raise ValueError(f"keyword {raw!r} is empty")
    if tokens[0] == _GAP or tokens[-1] == _GAP:
        raise ValueError(f"keyword {raw!r}: '...' must stand between two words")
    parts: list[str] = []
    gap = False
    for tok in tokens:
        if tok == _GAP:
            if gap:
                raise ValueError(f"keyword {raw!r}: two '...' in a row")
            gap = True
            continue
        if parts:
            parts.append(rf"\s+(?:\S+\s+){{0,{GAP_WORDS}}}" if gap else r"\s+")
        parts.append(_escape(tok))
        gap = False
    return Term(
        text=text,
        body="".join(parts),
        left=left and _is_word_char(tokens[0][0]),
        right=right and _is_word_char(tokens[-1][-1]),
    )


class Engine(Protocol):
    """Finds the first rule (in priority order) with a matching term."""

    name: str

    def first(self, text: str) -> tuple[int, int] | None:
        """``(rule index, term index)`` of the first rule that matches ``text``
        (already lowercased) and its first matching term, or ``None``."""
        ...


def _re_pattern(term: Term) -> str:
    """``term`` for Python ``re``, literal first.

    ``re`` skips ahead fast only when a pattern starts with a literal string; a
    leading ``\\b`` makes it try the pattern at every position (~6 ms for 2,000
    words with the default rules). So a left boundary is asserted *after* the
    term's leading literal run, by a lookbehind over it.
    """
    if not term.left:
        return term.pattern("re")
    cut = term.body.find("\\")
    head, rest = (term.body, "") if cut < 0 else (term.body[:cut], term.body[cut:])
    right = _BOUNDARY["re"] if term.right else ""
    # a left boundary means body[0] is [a-z0-9_], so head is non-empty
    return f"{head}(?<![0-9A-Za-z_]{head}){rest}{right}"


class _ReEngine:
    """Python ``re``: the fallback, and the reference the tests compare against.

    One literal-first pattern per term, tried in order: ~15× slower than the
    Rust engine on long prompts, but still faster here than one alternation per
    rule (whose mixed first characters defeat ``re``'s literal skip-ahead).
    """

    name = "re"

    def __init__(self, rules: Sequence[Sequence[Term]]) -> None:
        self._rules = [[re.compile(_re_pattern(t)).search for t in terms] for terms in rules]

    def first(self, text: str) -> tuple[int, int] | None:
        for i, terms in enumerate(self._rules):
            for j, search in enumerate(terms):
                if search(text) is not None:
                    return i, j
        return None


def _const(value: Any) -> Any:
    """A schema that ignores its input and returns ``value``."""
    from pydantic_core import core_schema as cs

    return cs.no_info_plain_validator_function(lambda _text: value)


def _first_match(choices: Sequence[tuple[str, Any]], otherwise: Any) -> Any:
    """A schema that runs the ``then`` schema of the first ``(pattern, then)``
    whose pattern occurs in the input, else ``otherwise``.

    Built from pydantic-core's public schema API: ``str_schema(pattern=…)`` is
    Rust ``regex``'s ``is_match`` (a search, not a full match); a
    ``left_to_right`` union stops at the first choice that validates, and the
    last choice always does, so no ``ValidationError`` is ever raised.
    """
    from pydantic_core import core_schema as cs

    schemas: list[Any] = [
        cs.chain_schema([cs.str_schema(pattern=pattern, regex_engine="rust-regex", strict=True), then])
        for pattern, then in choices
    ]
    schemas.append(otherwise)
    return cs.union_schema(schemas, mode="left_to_right")


class _RustEngine:
    """Rust ``regex`` through pydantic-core: one call per classification.

    Per rule, one alternation of its terms (a Teddy/Aho-Corasick prefilter finds
    candidates, the DFA confirms boundaries); only when a rule's alternation
    matches are its terms tried one by one, to name the keyword in the reason.
    One alternation per rule beats one for all rules (~12 µs vs ~7 µs for the
    three): smaller literal sets keep the prefilter on its fastest path.
    """

    name = "rust"

    def __init__(self, rules: Sequence[Sequence[Term]]) -> None:
        from pydantic_core import SchemaValidator

        per_rule: list[tuple[str, Any]] = []
        for i, terms in enumerate(rules):
            if not terms:
                continue
            alternation = "|".join(f"(?:{t.pattern('rust')})" for t in terms)
            which_term = _first_match(
                [(t.pattern("rust"), _const((i, j))) for j, t in enumerate(terms)], otherwise=_const((i, -1))
            )
            per_rule.append((alternation, which_term))
        self._validator = SchemaValidator(_first_match(per_rule, otherwise=_const(None)))
        self._validate: Callable[[str], Any] = self._validator.validate_python

    def first(self, text: str) -> tuple[int, int] | None:
        hit: tuple[int, int] | None = self._validate(text)
        return hit


def _compile(rules: Sequence[Sequence[Term]], engine: EngineName) -> Engine:
    if engine == "re":
        return _ReEngine(rules)
    try:
        return _RustEngine(rules)
    except Exception:
        if engine == "rust":
            raise
        return _ReEngine(rules)


class _LazyEngine:
    """The ``"auto"`` engine, compiled on first use: building a classifier (every
    router in a config, at every process start) then costs no regex compilation
    until a request is classified. After the first call, ``first`` and ``name``
    are the compiled engine's own (no extra indirection on the hot path)."""

    def __init__(self, rules: Sequence[Sequence[Term]]) -> None:
        self._rules = rules

    def _engine(self) -> Engine:
        engine = _compile(self._rules, "auto")
        self.first = engine.first  # type: ignore[method-assign]
        self.__dict__["name"] = engine.name
        return engine

    @property
    def name(self) -> str:
        return self.__dict__.get("name") or self._engine().name

    def first(self, text: str) -> tuple[int, int] | None:
        return self._engine().first(text)


def build_engine(rules: Sequence[Sequence[Term]], engine: EngineName = "auto") -> Engine:
    """The fastest engine that compiles every term (``engine="auto"``, compiled on
    first use), or the one asked for (compiled now, so a bad choice fails here)."""
    if engine == "auto":
        return cast(Engine, _LazyEngine(rules))
    return _compile(rules, engine)


# Word separators for the long-prompt count: ASCII whitespace, exactly what
# ``str.split()`` splits an ASCII string on. Unicode spaces (NBSP, U+2003, …)
# do not separate words here: a DFA over these few byte classes counts 2,000
# words in ~7 µs with a steady p99, twice as steady as one over Unicode ``\s``.
_WS_CLASS = r"\t-\r \x1c-\x1f"
# Non-ASCII characters ``str.split()`` would split on, mapped to a letter so the
# Python count agrees with the Rust one.
_UNICODE_SPACES = {c: "x" for c in range(0x80, 0x3001) if chr(c).isspace()}


def build_long_check(words: int, engine: EngineName = "auto") -> Callable[[str], bool]:
    """A predicate "more than ``words`` words" (runs of non-whitespace).

    ``len(text.split())`` costs ~50 µs on 2,000 words (one string per word). A
    text of at most ``2 * words`` characters cannot hold more than ``words``
    words, so short prompts are answered from ``len`` alone; longer ones by an
    anchored Rust pattern that stops as soon as it has seen ``words + 1`` words,
    or by ``str.split`` with a ``maxsplit`` bound.
    """
    if words < 0:
        raise ValueError("long_prompt_words must be >= 0")
    limit = 2 * words

    def by_split(text: str) -> bool:
        if len(text) <= limit:
            return False
        if not text.isascii():
            text = text.translate(_UNICODE_SPACES)
        return len(text.split(None, words)) > words

    if engine == "re" or words > _RUST_MAX_WORDS:
        return by_split
    ws = _WS_CLASS
    pattern = rf"^[{ws}]*(?:[^{ws}]+[{ws}]+){{{words}}}[^{ws}]"

    def compiled() -> Callable[[str], Any]:
        from pydantic_core import SchemaValidator

        return SchemaValidator(_first_match([(pattern, _const(True))], _const(False))).validate_python

    if engine == "rust":
        validate: Callable[[str], Any] | None = compiled()
    else:  # "auto": compiled on the first long prompt; str.split if it cannot be
        validate = None

    def by_rust(text: str) -> bool:
        nonlocal validate
        if len(text) <= limit:
            return False
        if validate is None:
            try:
                validate = compiled()
            except Exception:
                validate = by_split
        return validate(text) is True

    return by_rust
