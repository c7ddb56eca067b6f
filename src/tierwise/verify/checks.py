"""Local checks: decided from the answer alone, no model call, no cost.

These are the cheap first line of a cascade: a truncated answer, broken JSON, a
two-line reply to a long question or a refusal is a reason to escalate that
costs nothing to detect. Put them before model-graded checks in an ``&`` chain
so a bad answer never pays for a judge.
"""

from __future__ import annotations

import importlib
import json
import math
import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Literal

from ..types import Request, Response
from . import _schema
from .base import Verdict, Verifier

if TYPE_CHECKING:
    from ..strategies.base import RunContext

__all__ = [
    "DEFAULT_REFUSALS",
    "FinishedNormally",
    "MatchesSchema",
    "MinLength",
    "NoRefusal",
    "ValidJSON",
    "strip_fences",
]

_FENCE = re.compile(r"\A\s*```[ \t]*(?:json5?|jsonc)?[ \t]*\r?\n(.*?)\r?\n[ \t]*```\s*\Z", re.S | re.I)


def strip_fences(text: str) -> str:
    """``text`` without a Markdown code fence wrapping the whole answer.

    Models asked for JSON often answer ```` ```json\\n{...}\\n``` ````; the JSON
    inside is what the caller wants, so ``ValidJSON`` and ``MatchesSchema`` accept
    it. Only a fence around the *whole* answer (whitespace aside) is removed, with
    no language tag or ``json``: prose before or after the JSON is rejected,
    because a caller parsing the answer would fail on it too. Parse accepted
    answers with this same function to see exactly what was validated.
    """
    match = _FENCE.match(text)
    return match.group(1) if match else text.strip()


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _loads(text: str) -> Any:
    """Strict JSON: ``NaN``/``Infinity`` are Python extensions, not JSON."""
    return json.loads(text, parse_constant=_reject_constant)


class FinishedNormally(Verifier):
    """The model finished on its own: ``finish_reason`` is ``stop`` or ``tool_calls``.

    ``length`` means the answer was cut off at ``max_tokens``, ``content_filter``
    that the provider refused, ``error`` that it broke: none is an answer to stop at.
    """

    name = "finish_reason"

    def __init__(self, allowed: Iterable[str] = ("stop", "tool_calls")) -> None:
        self.allowed = tuple(allowed)

    async def check(self, request: Request, response: Response, ctx: RunContext) -> Verdict:
        reason = f"finish_reason={response.finish_reason}"
        if response.finish_reason in self.allowed:
            return Verdict.accept(reason)
        return Verdict.reject(reason)

    def describe(self) -> str:
        return f"finish_reason in ({', '.join(self.allowed)})"


class ValidJSON(Verifier):
    """The answer is JSON (after ``strip_fences``).

    By default only an object or an array counts: a bare ``42`` or ``"ok"`` is
    valid JSON but almost never what a request for structured output wanted.
    ``allow_scalars=True`` accepts any JSON value. ``NaN``/``Infinity`` are rejected.
    """

    name = "json"

    def __init__(self, *, allow_scalars: bool = False) -> None:
        self.allow_scalars = allow_scalars

    async def check(self, request: Request, response: Response, ctx: RunContext) -> Verdict:
        text = strip_fences(response.text)
        if not text:
            return Verdict.reject("json: empty answer")
        try:
            value = _loads(text)
        except ValueError as exc:
            return Verdict.reject(f"json: invalid ({exc})")
        if not self.allow_scalars and not isinstance(value, dict | list):
            return Verdict.reject(f"json: a {type(value).__name__}, not an object or array")
        return Verdict.accept("json: valid")

    def describe(self) -> str:
        return "valid JSON" if self.allow_scalars else "valid JSON object/array"


class MatchesSchema(Verifier):
    """The answer is JSON (after ``strip_fences``) conforming to ``schema``.

    ``schema`` is a pydantic model class (validated with ``model_validate_json``),
    any other type pydantic can validate (``list[Item]``, a dataclass, a
    ``TypedDict``; via ``TypeAdapter``), or a JSON Schema dict. pydantic cannot
    validate a dict schema, so dicts use ``jsonschema`` when it is importable
    (``engine="auto"``) and otherwise a built-in validator for the subset
    structured outputs use (see ``tierwise.verify._schema``); a schema using a
    keyword outside that subset raises ``ValueError`` here rather than being
    half-checked. ``engine="builtin"`` / ``"jsonschema"`` force one.
    """

    name = "schema"

    def __init__(
        self, schema: type[Any] | Any, *, engine: Literal["auto", "builtin", "jsonschema"] = "auto"
    ) -> None:
        self.schema = schema
        self._json_validator: Any = None
        self._adapter: Any = None
        if isinstance(schema, Mapping):
            schema = dict(schema)
            use_lib = engine == "jsonschema"
            if engine == "auto":
                try:
                    importlib.import_module("jsonschema")
                    use_lib = True
                except ImportError:
                    use_lib = False
            if use_lib:
                lib = importlib.import_module("jsonschema")
                cls = lib.validators.validator_for(schema)
                cls.check_schema(schema)
                self._json_validator = cls(schema)
            else:
                _schema.check_schema(schema)
            self.engine = "jsonschema" if use_lib else "builtin"
            self._label = str(schema.get("title") or "JSON schema")
        else:
            from pydantic import BaseModel, TypeAdapter

            if isinstance(schema, type) and issubclass(schema, BaseModel):
                self._adapter = schema.model_validate_json
            else:
                self._adapter = TypeAdapter(schema).validate_json
            self.engine = "pydantic"
            self._label = getattr(schema, "__name__", None) or repr(schema)

    def errors(self, text: str) -> list[str]:
        """Why ``text`` does not match (empty when it does)."""
        text = strip_fences(text)
        if self._adapter is not None:
            from pydantic import ValidationError

            try:
                self._adapter(text)
            except ValidationError as exc:
                return [
                    f"{'.'.join(str(p) for p in err['loc']) or '$'}: {err['msg']}" for err in exc.errors()
                ]
            return []
        try:
            value = _loads(text)
        except ValueError as exc:
            return [f"invalid JSON ({exc})"]
        if self._json_validator is not None:
            return [
                f"{'.'.join(str(p) for p in e.absolute_path) or '$'}: {e.message}"
                for e in self._json_validator.iter_errors(value)
            ]
        return _schema.validate(value, self.schema)

    async def check(self, request: Request, response: Response, ctx: RunContext) -> Verdict:
        errors = self.errors(response.text)
        if not errors:
            return Verdict.accept(f"schema: matches {self._label}")
        more = f" (+{len(errors) - 3} more)" if len(errors) > 3 else ""
        return Verdict.reject(f"schema: does not match {self._label}: {'; '.join(errors[:3])}{more}")

    def describe(self) -> str:
        return f"matches {self._label}"


def _question(request: Request) -> str:
    """The last user turn: the question being answered (system prompts and earlier
    turns can be long without the question being so)."""
    return next((m.text for m in reversed(request.messages) if m.role == "user"), "")


class MinLength(Verifier):
    """Reject a short answer to a long question.

    The tutorial heuristic: a fast tier that returns fewer than 50 characters for
    a question of more than 30 words has probably given up. The check applies
    only when the last user message has at least ``min_prompt_words`` words;
    shorter questions may deserve short answers. It then requires at least
    ``chars`` characters and/or ``ratio`` × the question's length in characters
    (the larger). With neither given, ``chars=50``. An answer made of tool calls
    is accepted: calling a tool is a complete turn.
    """

    name = "min_length"

    def __init__(
        self, chars: int | None = None, ratio: float | None = None, min_prompt_words: int = 30
    ) -> None:
        if chars is None and ratio is None:
            chars = 50
        if chars is not None and chars < 0:
            raise ValueError("chars must be >= 0")
        if ratio is not None and not ratio >= 0:
            raise ValueError("ratio must be >= 0")
        if min_prompt_words < 0:
            raise ValueError("min_prompt_words must be >= 0")
        self.chars = chars
        self.ratio = ratio
        self.min_prompt_words = min_prompt_words

    def required(self, request: Request) -> int:
        """Characters required for an answer to ``request`` (0 for a short question)."""
        question = _question(request)
        if len(question.split()) < self.min_prompt_words:
            return 0
        need = self.chars or 0
        if self.ratio is not None:
            need = max(need, math.ceil(self.ratio * len(question.strip())))
        return need

    async def check(self, request: Request, response: Response, ctx: RunContext) -> Verdict:
        words = len(_question(request).split())
        if response.tool_calls:
            return Verdict.accept("min_length: tool-call answer")
        need = self.required(request)
        if need == 0:
            return Verdict.accept(f"min_length: short question ({words} words), not checked")
        got = len(response.text.strip())
        if got >= need:
            return Verdict.accept(f"min_length: {got} chars >= {need} for a {words}-word question")
        return Verdict.reject(f"min_length: {got} chars < {need} for a {words}-word question")

    def describe(self) -> str:
        parts = [f">= {self.chars} chars"] if self.chars is not None else []
        if self.ratio is not None:
            parts.append(f">= {self.ratio:g} x question length")
        return f"answer {' and '.join(parts)} when the question has >= {self.min_prompt_words} words"


DEFAULT_REFUSALS: tuple[str, ...] = (
    "I can't help with",
    "I cannot help with",
    "I can't help you with",
    "I cannot help you with",
    "I can't assist with",
    "I cannot assist with",
    "I can't assist you with",
    "I cannot assist you with",
    "I can't provide",
    "I cannot provide",
    "I can't comply",
    "I cannot comply",
    "I can't fulfill",
    "I cannot fulfill",
    "I can't do that",
    "I cannot do that",
    "I'm unable to help",
    "I am unable to help",
    "I'm unable to assist",
    "I am unable to assist",
    "I'm unable to provide",
    "I am unable to provide",
    "I'm not able to help",
    "I am not able to help",
    "I'm not able to provide",
    "I am not able to provide",
    "I won't be able to help",
    "I must decline",
    "I have to decline",
    "I'm sorry, but I can't",
    "I'm sorry, but I cannot",
    "I'm sorry, I can't",
    "Sorry, but I can't",
    "Sorry, I can't",
    "As an AI language model",
    "As an AI, I cannot",
    "As an AI, I can't",
    "I'm not comfortable",
    "I am not comfortable",
    "against my guidelines",
    "violates my guidelines",
)


def _phrase_pattern(phrase: str) -> str:
    # Whole words at both ends, any run of whitespace inside; lookarounds instead
    # of \b so phrases ending in punctuation still anchor.
    body = r"\s+".join(re.escape(word) for word in phrase.split())
    return rf"(?<!\w){body}(?!\w)"


class NoRefusal(Verifier):
    """The model did not refuse.

    A refusal is ``finish_reason == "content_filter"`` (providers' own refusals
    map there) or a refusal phrase — whole words, case-insensitive, curly
    apostrophes treated as straight — in the first ``within`` characters of the
    answer (``None``: anywhere). Refusals lead the answer; limiting the search
    keeps "I can't provide exact figures, but…" deep in a long answer from
    counting. ``patterns`` replaces ``DEFAULT_REFUSALS``: plain phrases, or
    compiled regular expressions used as given.
    """

    name = "no_refusal"

    def __init__(
        self, patterns: Iterable[str | re.Pattern[str]] | None = None, *, within: int | None = 300
    ) -> None:
        items = list(DEFAULT_REFUSALS if patterns is None else patterns)
        phrases = [p for p in items if isinstance(p, str)]
        self._regexes = [p for p in items if isinstance(p, re.Pattern)]
        if phrases:
            self._regexes.append(re.compile("|".join(_phrase_pattern(p) for p in phrases), re.I))
        self.within = within

    def find(self, text: str) -> str | None:
        """The refusal phrase found in ``text``, else ``None``."""
        text = text.replace("\u2019", "'").replace("\u2018", "'")
        if self.within is not None:
            text = text[: self.within]
        for regex in self._regexes:
            match = regex.search(text)
            if match:
                return match.group(0)
        return None

    async def check(self, request: Request, response: Response, ctx: RunContext) -> Verdict:
        if response.finish_reason == "content_filter":
            return Verdict.reject("refusal: finish_reason=content_filter")
        found = self.find(response.text)
        if found is not None:
            return Verdict.reject(f"refusal: {found!r}")
        return Verdict.accept("no refusal")

    def describe(self) -> str:
        return "no refusal"
