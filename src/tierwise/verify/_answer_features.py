"""Features of a (prompt, answer) pair for the learned answer verifier.

Pure Python (no numpy), because the verifier scores every cheap answer a
cascade produces and importing numpy per process is not worth a few hundred
multiplications. Two kinds of feature:

* **Dense, hand-written signals** of answers that tend to be wrong, none of them
  tied to one benchmark: the answer's own arithmetic does not check out
  (``7 * 8 = 54``), it has no clear final number, the final number is
  fractional or negative, it reuses few of the prompt's numbers, it uses
  numbers that are neither in the prompt nor results of its own steps, it hedges
  ("however", "assume", "approximately", "not possible"), its length.
* **Hashed word uni- and bigrams of the answer** (sublinear term frequency, L2
  normalized, ``crc32`` so a saved model gives the same features in every
  process, unlike ``hash()``), so phrasing that precedes wrong answers is learned
  from the data rather than listed by hand.

``FEATURE_VERSION`` is stored with a fitted model; a model saved with another
version is refused rather than scored with features it never saw.
"""

from __future__ import annotations

import itertools
import math
import re
import zlib

__all__ = ["DENSE_NAMES", "FEATURE_VERSION", "HASH_BUCKETS", "arithmetic_check", "dense", "hashed"]

FEATURE_VERSION = 1
HASH_BUCKETS = 1 << 15

_NUM = re.compile(r"-?\d[\d,]*(?:\.\d+)?")
_OPERAND = r"-?\d[\d,]*(?:\.\d+)?"
_EQUATION = re.compile(
    rf"({_OPERAND}(?:\s*[-+*/x×÷]\s*{_OPERAND})+)\s*=\s*\$?\s*({_OPERAND})",
)
_TOKEN = re.compile(r"[a-z]+|\d+|[^\sa-z\d]")
_FINAL = re.compile(r"####\s*\$?\s*(-?[\d,]*\.?\d+)")
_ANSWER_IS = re.compile(r"answer is[:\s]*\$?\s*(-?[\d,]*\.?\d+)", re.IGNORECASE)

#: Phrases whose presence says the answer doubts itself or the question.
HEDGES = (
    "however",
    "assum",
    "approximately",
    "round",
    "cannot",
    "not possible",
    "actually",
    "wait",
    "but since",
    "incorrect",
    "mistake",
    "unclear",
    "not enough",
    "impossible",
    "doesn't make sense",
    "?",
)

DENSE_NAMES: tuple[str, ...] = (
    "log_answer_chars",
    "log_prompt_words",
    "answer_lines",
    "equations_ok",
    "equations_wrong",
    "any_equation_wrong",
    "has_marked_final",
    "no_final_number",
    "final_fractional",
    "final_negative",
    "prompt_numbers_reused",
    "prompt_numbers",
    "final_in_prompt",
    "equations",
    "unexplained_numbers",
    "final_is_last_result",
    "answer_to_prompt_length",
    "distinct_answer_numbers",
    "operand_from_nowhere",
    *(f"hedge:{h}" for h in HEDGES),
)


def _number(text: str) -> float | None:
    try:
        return float(text.replace(",", ""))
    except ValueError:
        return None


def _evaluate(expr: str) -> float | None:
    """``a op b op c …`` with ``+ - * / x × ÷`` and the usual precedence; ``None``
    when it is not such an expression (or divides by zero). No ``eval``: the text
    is a model's output."""
    parts = re.findall(rf"{_OPERAND}|[-+*/x×÷]", expr.replace(" ", ""))
    values: list[float] = []
    ops: list[str] = []
    expect_number = True
    for part in parts:
        if expect_number:
            value = _number(part)
            if value is None:
                return None
            values.append(value)
        else:
            ops.append({"x": "*", "×": "*", "÷": "/"}.get(part, part))
        expect_number = not expect_number
    if expect_number or not ops:
        return None
    # Multiplication and division first, left to right; then sums.
    terms = [values[0]]
    signs: list[str] = []
    for op, value in zip(ops, values[1:], strict=True):
        if op == "*":
            terms[-1] *= value
        elif op == "/":
            if value == 0:
                return None
            terms[-1] /= value
        else:
            signs.append(op)
            terms.append(value)
    total = terms[0]
    for op, value in zip(signs, terms[1:], strict=True):
        total = total + value if op == "+" else total - value
    return total


def arithmetic_check(answer: str) -> tuple[int, int]:
    """``(right, wrong)``: how many ``a op b = c`` statements in ``answer`` hold.

    Tolerant of rounding (an answer writing ``10 / 3 = 3.33`` is right), since a
    model that rounds is not a model that cannot add.
    """
    right = wrong = 0
    for expr, result in _EQUATION.findall(answer):
        value, stated = _evaluate(expr), _number(result)
        if value is None or stated is None:
            continue
        if abs(value - stated) <= 0.01 + 0.005 * abs(value):
            right += 1
        else:
            wrong += 1
    return right, wrong


def _final(answer: str, numbers: list[str]) -> tuple[float | None, bool]:
    marked = _FINAL.search(answer) or _ANSWER_IS.search(answer)
    if marked is not None:
        return _number(marked.group(1)), True
    return (_number(numbers[-1]) if numbers else None), False


def _provenance(answer: str, in_prompt: set[str], in_answer: set[str]) -> tuple[int, float, bool, bool]:
    """``(equations, unexplained, final_is_last_result, operand_from_nowhere)``.

    A number the answer uses that is neither in the prompt nor the result of one
    of its own equations came from nowhere: a misread or invented quantity, the
    commonest way a fluent step-by-step answer goes wrong.
    """
    equations = _EQUATION.findall(answer)
    results = {r.replace(",", "") for _, r in equations}
    operands = {n.replace(",", "") for expr, _ in equations for n in _NUM.findall(expr)}
    unexplained = sum(1 for n in in_answer if n not in in_prompt and n not in results)
    nowhere = any(n not in in_prompt and n not in results for n in operands)
    final, _ = _final(answer, _NUM.findall(answer))
    last = _number(equations[-1][1]) if equations else None
    same = final is not None and last is not None and abs(final - last) < 1e-6
    return len(equations), unexplained / 5.0, same, nowhere


def dense(prompt: str, answer: str) -> list[float]:
    """The hand-written features, in ``DENSE_NAMES`` order (unscaled)."""
    lowered = answer.lower()
    right, wrong = arithmetic_check(answer)
    answer_numbers = _NUM.findall(answer)
    final, marked = _final(answer, answer_numbers)
    in_prompt = {n.replace(",", "") for n in _NUM.findall(prompt)}
    in_answer = {n.replace(",", "") for n in answer_numbers}
    integral = final is not None and math.isfinite(final) and final == int(final)
    equations, unexplained, final_is_last, nowhere = _provenance(answer, in_prompt, in_answer)
    return [
        math.log1p(len(answer)),
        math.log1p(len(prompt.split())),
        answer.count("\n") / 10.0,
        right / 5.0,
        float(wrong),
        float(wrong > 0),
        float(marked),
        float(final is None),
        float(final is not None and not integral),
        float(final is not None and final < 0),
        len(in_prompt & in_answer) / max(1, len(in_prompt)),
        len(in_prompt) / 10.0,
        float(integral and final is not None and str(int(final)) in in_prompt),
        equations / 5.0,
        unexplained,
        float(final_is_last),
        len(answer) / max(1, len(prompt)),
        len(in_answer) / 10.0,
        float(nowhere),
        *(float(h in lowered) for h in HEDGES),
    ]


def hashed(answer: str) -> dict[int, float]:
    """Bucket → weight for the answer's word uni- and bigrams (sublinear tf, L2 norm)."""
    words = _TOKEN.findall(answer.lower())
    counts: dict[int, int] = {}
    grams = words + [f"{a} {b}" for a, b in itertools.pairwise(words)]
    for gram in grams:
        bucket = zlib.crc32(gram.encode("utf-8")) % HASH_BUCKETS
        counts[bucket] = counts.get(bucket, 0) + 1
    weights = {b: 1.0 + math.log(n) for b, n in counts.items()}
    norm = math.sqrt(math.fsum(w * w for w in weights.values())) or 1.0
    return {b: w / norm for b, w in weights.items()}
