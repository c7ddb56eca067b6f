"""A learned answer verifier: was this cheap answer good enough to stop the cascade?

A router sees only the prompt. A cascade also sees the cheap model's answer, and
the answer gives away much of whether it is wrong: its own arithmetic does not
check out, it hedges, it never commits to a final number. ``LearnedVerifier``
learns that from ``(prompt, answer, good/bad)`` rows — the recorded outcomes of
a benchmark, or your own audit log joined with feedback (``answer_rows``) — and
then scores each answer locally: no model call, so no cost and about a
millisecond, which is what lets it sit in front of every cheap answer.

    verifier = LearnedVerifier.fit(prompts, answers, good)        # needs tierwise[learn]
    verifier.save("verifier.json")
    cascade = tw.Cascade(["mixtral", "gpt-4"], accept=LearnedVerifier.load("verifier.json"))

``score(prompt, answer)`` is the estimated probability that the answer is good;
the verdict accepts when its *acceptance* is at least ``threshold``. Raising the
threshold escalates more answers (more cost, more quality): ``with_threshold``
returns a copy, and ``threshold_for_share`` picks the threshold that escalates a
given share of a sample of answers, so the trade-off is chosen on data you hold
out, never guessed.

Acceptance is the probability itself unless ``cost_exponent`` is set. Escalating
an answer buys the next rung's answer, whose price grows with the size of the
exchange (the prompt, and an answer about as long as the cheap one). For a given
budget the most accuracy comes from escalating the answers with the most doubt
*per dollar* (the knapsack ordering), so with ``cost_exponent = a`` the doubt
``1 - p`` is divided by ``(size / reference_chars) ** a`` (size: characters of
prompt plus answer; ``reference_chars``: the median size of the training rows,
where acceptance equals ``p``): a long, expensive exchange needs more doubt to
escalate than a short one. ``a = 1`` is the exact ratio for a calibrated gain;
on GSM8K's training folds ``a = 0.5`` reached 95% of GPT-4's accuracy at less
cost than 0 or 1 (the doubt is not the calibrated gain; docs/routing.md, Track C).

The model is a logistic regression over ``_answer_features`` (hand-written
signals plus hashed answer n-grams), fitted with scikit-learn and stored as
plain JSON (weights, the feature version, the scaling): loading runs no code,
and scoring needs neither numpy nor scikit-learn.

Training rows (JSONL, one object per line)::

    {"prompt": "…", "answer": "…", "good": true}
    {"prompt": "…", "answer": "…", "score": 0.25, "model": "haiku"}
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import _answer_features as feats
from .base import Verdict, Verifier

if TYPE_CHECKING:
    from ..routing.feedback import Feedback
    from ..strategies.base import RunContext
    from ..types import Request, Response

__all__ = [
    "ANSWER_ROW_FIELDS",
    "MAX_COST_EXPONENT",
    "AnswerRow",
    "AnswerRowError",
    "LearnedVerifier",
    "answer_rows",
    "read_answer_rows",
    "write_answer_rows",
]

ANSWER_ROW_FIELDS: tuple[str, ...] = ("prompt", "answer", "good", "score", "model")
#: The largest ``cost_exponent`` taken (the constructor, the CLI and the config check it).
MAX_COST_EXPONENT = 4.0
#: The reference size of a verifier built by hand or read from a file that has none.
_REFERENCE_CHARS = 1000.0
_FORMAT = "tierwise.learned_verifier"


class AnswerRowError(ValueError):
    """A malformed training row or verifier file; the message names the file and line."""


@dataclass(frozen=True, slots=True)
class AnswerRow:
    """One judged answer: ``score`` 1.0 good, 0.0 bad, in between allowed (a mean of verdicts)."""

    prompt: str
    answer: str
    score: float
    model: str | None = None
    where: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        at = f"{self.where}: " if self.where else ""
        if not isinstance(self.prompt, str) or not isinstance(self.answer, str):
            raise AnswerRowError(f"{at}prompt and answer must be strings")
        s = self.score
        if isinstance(s, bool) or not isinstance(s, int | float) or not math.isfinite(s) or not 0 <= s <= 1:
            raise AnswerRowError(f"{at}score must be a number within 0..1, got {s!r}")
        object.__setattr__(self, "score", float(s))

    @classmethod
    def from_dict(cls, data: Any, where: str = "") -> AnswerRow:
        at = f"{where}: " if where else ""
        if not isinstance(data, Mapping):
            raise AnswerRowError(f"{at}a row must be a JSON object, got {type(data).__name__}")
        unknown = sorted(str(k) for k in data if k not in ANSWER_ROW_FIELDS)
        if unknown:
            raise AnswerRowError(
                f"{at}unknown field(s) {', '.join(map(repr, unknown))}; expected some of: "
                + ", ".join(ANSWER_ROW_FIELDS)
            )
        for key in ("prompt", "answer"):
            if not isinstance(data.get(key), str):
                raise AnswerRowError(f"{at}{key!r} must be a string")
        if ("good" in data) == ("score" in data):
            raise AnswerRowError(f'{at}give exactly one of "good" (true/false) or "score" (0..1)')
        if "good" in data:
            if not isinstance(data["good"], bool):
                raise AnswerRowError(f'{at}"good" must be true or false, got {data["good"]!r}')
            score: Any = 1.0 if data["good"] else 0.0
        else:
            score = data["score"]
        model = data.get("model")
        if model is not None and not isinstance(model, str):
            raise AnswerRowError(f"{at}'model' must be a string")
        return cls(data["prompt"], data["answer"], score, model, where)

    def to_dict(self) -> dict[str, Any]:
        row: dict[str, Any] = {"prompt": self.prompt, "answer": self.answer}
        if self.score in (0.0, 1.0):
            row["good"] = self.score == 1.0
        else:
            row["score"] = self.score
        if self.model is not None:
            row["model"] = self.model
        return row


def read_answer_rows(path: str | os.PathLike[str]) -> list[AnswerRow]:
    """Every row of an answer-rows JSONL file; ``AnswerRowError`` names ``file:line``."""
    p = Path(path)
    try:
        lines = p.read_text(encoding="utf-8").split("\n")
    except FileNotFoundError:
        raise AnswerRowError(f"{p}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise AnswerRowError(f"{p}: cannot read: {exc}") from None
    rows: list[AnswerRow] = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise AnswerRowError(f"{p}:{n}: not valid JSON ({exc.msg})") from None
        rows.append(AnswerRow.from_dict(obj, f"{p}:{n}"))
    return rows


def write_answer_rows(path: str | os.PathLike[str], rows: Iterable[AnswerRow]) -> int:
    """Append ``rows`` to a JSONL file (created if missing); returns how many."""
    lines = [json.dumps(r.to_dict(), ensure_ascii=False, separators=(",", ":")) for r in rows]
    with open(path, "a", encoding="utf-8", newline="\n") as fh:
        if lines:
            fh.write("\n".join(lines) + "\n")
    return len(lines)


def answer_rows(audit: Iterable[Mapping[str, Any]], feedback: Iterable[Feedback]) -> list[AnswerRow]:
    """Training rows from audit records (written with ``include_text``) and feedback.

    A feedback row judges the answer of one request: its record's ``prompt`` and
    ``response`` text become a row when the feedback's ``model`` is the model
    that answered (or names none). Verdicts on the same answer are averaged.
    Feedback on a model whose answer is not in the log (a cascade rung that was
    escalated past: only the final answer is recorded) gives no row, since there
    is no answer text to learn from; nor does a failed request.
    """
    answers: dict[str, tuple[str, str, str | None]] = {}
    for record in audit:
        h = record.get("request_hash")
        prompt, text = record.get("prompt"), record.get("response")
        if not isinstance(h, str) or record.get("error"):
            continue
        if isinstance(prompt, str) and isinstance(text, str) and h not in answers:
            model = record.get("model")
            answers[h] = (prompt, text, model if isinstance(model, str) else None)
    sums: dict[str, list[float]] = {}
    for row in feedback:
        found = answers.get(row.request_hash)
        if found is None or (row.model is not None and found[2] is not None and row.model != found[2]):
            continue
        sums.setdefault(row.request_hash, []).append(row.score)
    return [
        AnswerRow(answers[h][0], answers[h][1], math.fsum(v) / len(v), answers[h][2]) for h, v in sums.items()
    ]


def _size(prompt: str, answer: str) -> int:
    """Characters of the exchange the next rung would be paid for: the prompt and an answer as long."""
    return len(prompt) + len(answer)


def _logistic(z: float) -> float:
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


class LearnedVerifier(Verifier):
    """Accept an answer when its learned probability of being good is ``>= threshold``.

    Build with ``fit`` (or ``load`` a saved one). ``check`` uses the request's
    prompt text and the response's text; a response with no text (only tool
    calls) is rejected as unverifiable (``Verdict.undecided``): this model has
    only learned to read answers.
    """

    name = "learned"

    def __init__(
        self,
        *,
        intercept: float,
        dense_weights: Sequence[float],
        dense_mean: Sequence[float],
        dense_scale: Sequence[float],
        hashed_weights: Mapping[int, float],
        threshold: float = 0.5,
        trained_on: int = 0,
        cost_exponent: float = 0.0,
        reference_chars: float = _REFERENCE_CHARS,
    ) -> None:
        n = len(feats.DENSE_NAMES)
        if not (len(dense_weights) == len(dense_mean) == len(dense_scale) == n):
            raise ValueError(f"a LearnedVerifier needs {n} dense weights, means and scales")
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be within 0..1, got {threshold}")
        if not (isinstance(cost_exponent, int | float) and 0.0 <= cost_exponent <= MAX_COST_EXPONENT):
            raise ValueError(f"cost_exponent must be within 0..{MAX_COST_EXPONENT:g}, got {cost_exponent!r}")
        if not (
            isinstance(reference_chars, int | float)
            and math.isfinite(reference_chars)
            and reference_chars > 0
        ):
            raise ValueError(f"reference_chars must be a positive number, got {reference_chars!r}")
        self.intercept = float(intercept)
        self.dense_weights = [float(w) for w in dense_weights]
        self.dense_mean = [float(m) for m in dense_mean]
        self.dense_scale = [float(s) if s > 0 else 1.0 for s in dense_scale]
        self.hashed_weights = {int(b): float(w) for b, w in hashed_weights.items()}
        self.threshold = float(threshold)
        self.trained_on = trained_on
        self.cost_exponent = float(cost_exponent)
        self.reference_chars = float(reference_chars)

    # ------------------------------------------------------------------ fitting

    @classmethod
    def fit(
        cls,
        prompts: Sequence[str],
        answers: Sequence[str],
        good: Sequence[float | bool],
        *,
        c: float = 1.0,
        threshold: float = 0.5,
        cost_exponent: float = 0.0,
    ) -> LearnedVerifier:
        """Fit on judged answers (``good[i]`` in 0..1; fractions are weighted rows).

        ``c`` is the inverse L2 strength (1.0 measured best on GSM8K's training
        folds among 0.3, 1, 3, 10; see docs/routing.md, Track C). ``cost_exponent``
        makes acceptance cost-aware (module docstring); the reference size is
        the median size of these rows. Needs scikit-learn (``pip install
        'tierwise[learn]'``).
        """
        from ..routing.learned import require_learn

        require_learn()
        import numpy as np
        import scipy.sparse as sparse
        from sklearn.linear_model import LogisticRegression

        if not (len(prompts) == len(answers) == len(good)):
            raise ValueError(
                f"prompts, answers and good must have one entry each: {len(prompts)}, "
                f"{len(answers)}, {len(good)}"
            )
        y = np.asarray([float(g) for g in good], dtype=np.float64)
        if y.size < 2 or not np.all((y >= 0) & (y <= 1)):
            raise ValueError("need at least 2 rows, each judged within 0..1")
        if not (y > 0).any() or not (y < 1).any():
            raise ValueError("need both good and bad answers to learn the difference")
        if not c > 0:
            raise ValueError(f"c must be > 0, got {c}")
        d = np.asarray([feats.dense(p, a) for p, a in zip(prompts, answers, strict=True)])
        mean, scale = d.mean(axis=0), d.std(axis=0)
        scale[scale == 0] = 1.0
        rows, cols, vals = [], [], []
        for i, a in enumerate(answers):
            for b, w in feats.hashed(a).items():
                rows.append(i)
                cols.append(b)
                vals.append(w)
        h = sparse.csr_matrix((vals, (rows, cols)), shape=(len(answers), feats.HASH_BUCKETS))
        x = sparse.hstack([sparse.csr_matrix((d - mean) / scale), h]).tocsr()
        # A fractional verdict s is a good row of weight s and a bad row of weight 1 - s.
        xx = sparse.vstack([x, x]).tocsr()
        yy = np.concatenate([np.ones_like(y), np.zeros_like(y)])
        ww = np.concatenate([y, 1.0 - y])
        keep = ww > 0
        # liblinear: about 18x fewer seconds than lbfgs here (a few thousand rows, 32k
        # sparse columns) for the same held-out AUROC; it also penalizes the
        # intercept, which is harmless with standardized dense features.
        lr = LogisticRegression(C=c, solver="liblinear", max_iter=2000)
        lr.fit(xx[keep], yy[keep], sample_weight=ww[keep])
        coef = lr.coef_[0]
        nd = len(feats.DENSE_NAMES)
        seen = np.unique(h.indices)
        return cls(
            intercept=float(lr.intercept_[0]),
            dense_weights=coef[:nd].tolist(),
            dense_mean=mean.tolist(),
            dense_scale=scale.tolist(),
            hashed_weights={int(b): float(coef[nd + b]) for b in seen if coef[nd + b] != 0},
            threshold=threshold,
            trained_on=int(y.size),
            cost_exponent=cost_exponent,
            reference_chars=max(
                1.0, float(np.median([_size(p, a) for p, a in zip(prompts, answers, strict=True)]))
            ),
        )

    @classmethod
    def fit_rows(cls, rows: Sequence[AnswerRow], **kwargs: Any) -> LearnedVerifier:
        """``fit`` on ``AnswerRow``s (from ``read_answer_rows`` or ``answer_rows``)."""
        return cls.fit([r.prompt for r in rows], [r.answer for r in rows], [r.score for r in rows], **kwargs)

    # ------------------------------------------------------------------ scoring

    def score(self, prompt: str, answer: str) -> float:
        """Estimated probability that ``answer`` is a good answer to ``prompt``."""
        z = self.intercept
        for v, m, s, w in zip(
            feats.dense(prompt, answer), self.dense_mean, self.dense_scale, self.dense_weights, strict=True
        ):
            z += w * (v - m) / s
        get = self.hashed_weights.get
        z += math.fsum(get(b, 0.0) * v for b, v in feats.hashed(answer).items())
        return _logistic(z)

    def scores(self, prompts: Sequence[str], answers: Sequence[str]) -> list[float]:
        return [self.score(p, a) for p, a in zip(prompts, answers, strict=True)]

    def _accept(self, p: float, prompt: str, answer: str) -> float:
        if self.cost_exponent == 0.0:
            return p
        ratio = float((self.reference_chars / max(1, _size(prompt, answer))) ** self.cost_exponent)
        return min(1.0, max(0.0, 1.0 - (1.0 - p) * ratio))

    def acceptance(self, prompt: str, answer: str) -> float:
        """What ``threshold`` is compared with: ``score`` made cost-aware by ``cost_exponent``.

        ``1 - (1 - p) * (reference_chars / size) ** cost_exponent``, clipped to 0..1;
        equal to ``score`` at ``cost_exponent = 0`` or at the reference size.
        """
        return self._accept(self.score(prompt, answer), prompt, answer)

    def acceptances(self, prompts: Sequence[str], answers: Sequence[str]) -> list[float]:
        return [self.acceptance(p, a) for p, a in zip(prompts, answers, strict=True)]

    def with_threshold(self, threshold: float) -> LearnedVerifier:
        """A copy that accepts at ``threshold`` instead."""
        return self._copy(threshold=threshold)

    def with_cost_exponent(self, cost_exponent: float) -> LearnedVerifier:
        """A copy whose acceptance divides the doubt by ``(size / reference) ** cost_exponent``."""
        return self._copy(cost_exponent=cost_exponent)

    def _copy(self, **changes: float) -> LearnedVerifier:
        kw: dict[str, Any] = {
            "intercept": self.intercept,
            "dense_weights": self.dense_weights,
            "dense_mean": self.dense_mean,
            "dense_scale": self.dense_scale,
            "hashed_weights": self.hashed_weights,
            "threshold": self.threshold,
            "trained_on": self.trained_on,
            "cost_exponent": self.cost_exponent,
            "reference_chars": self.reference_chars,
        }
        kw.update(changes)
        return LearnedVerifier(**kw)

    def threshold_for_share(self, prompts: Sequence[str], answers: Sequence[str], share: float) -> float:
        """The threshold that rejects (escalates) about ``share`` of these answers.

        Use answers the verifier was not fitted on (a held-out split): on its own
        training rows it is overconfident and would escalate too few.
        """
        if not 0.0 <= share <= 1.0:
            raise ValueError(f"share must be within 0..1, got {share}")
        ranked = sorted(self.acceptances(prompts, answers))
        if not ranked:
            raise ValueError("need at least one answer")
        k = round(share * len(ranked))
        if k <= 0:
            return 0.0
        if k >= len(ranked):
            return 1.0
        return (ranked[k - 1] + ranked[k]) / 2.0

    async def check(self, request: Request, response: Response, ctx: RunContext) -> Verdict:
        if not response.text.strip():
            return Verdict.undecided("learned: no answer text to score")
        prompt, answer = request.prompt_text, response.text
        p = self.score(prompt, answer)
        a = self._accept(p, prompt, answer)
        ok = a >= self.threshold
        verdict = f"{'>=' if ok else '<'} {self.threshold:g}"
        if self.cost_exponent == 0.0:
            return Verdict(ok, a, f"learned: p(good) {p:.2f} {verdict}")
        size = f"({_size(prompt, answer)} chars, reference {self.reference_chars:.0f})"
        return Verdict(ok, a, f"learned: p(good) {p:.2f}, cost-aware {a:.2f} {verdict} {size}")

    def describe(self) -> str:
        if self.cost_exponent == 0.0:
            return f"learned answer verifier p(good) >= {self.threshold:g}"
        return (
            f"learned answer verifier, cost-aware (exponent {self.cost_exponent:g}), "
            f"acceptance >= {self.threshold:g}"
        )

    # ------------------------------------------------------------------ storage

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": _FORMAT,
            "feature_version": feats.FEATURE_VERSION,
            "dense_names": list(feats.DENSE_NAMES),
            "intercept": self.intercept,
            "dense_weights": self.dense_weights,
            "dense_mean": self.dense_mean,
            "dense_scale": self.dense_scale,
            "hash_buckets": feats.HASH_BUCKETS,
            "hashed_weights": {str(b): w for b, w in sorted(self.hashed_weights.items())},
            "threshold": self.threshold,
            "trained_on": self.trained_on,
            "cost_exponent": self.cost_exponent,
            "reference_chars": self.reference_chars,
        }

    @classmethod
    def from_dict(
        cls,
        data: Mapping[str, Any],
        *,
        threshold: float | None = None,
        cost_exponent: float | None = None,
    ) -> LearnedVerifier:
        """Rebuild a saved verifier; ``ValueError`` for a file of another format or feature version.

        ``threshold`` and ``cost_exponent`` override the saved ones; a file written
        before cost-aware acceptance existed reads as ``cost_exponent = 0``.
        """
        if not isinstance(data, Mapping) or data.get("format") != _FORMAT:
            raise ValueError("not a tierwise learned-verifier file (format mismatch)")
        if (
            data.get("feature_version") != feats.FEATURE_VERSION
            or data.get("hash_buckets") != feats.HASH_BUCKETS
        ):
            raise ValueError(
                f"verifier was saved with feature version {data.get('feature_version')!r}; "
                f"this tierwise reads version {feats.FEATURE_VERSION}: fit it again"
            )
        try:
            return cls(
                intercept=data["intercept"],
                dense_weights=data["dense_weights"],
                dense_mean=data["dense_mean"],
                dense_scale=data["dense_scale"],
                hashed_weights={int(b): w for b, w in data["hashed_weights"].items()},
                threshold=data["threshold"] if threshold is None else threshold,
                trained_on=int(data.get("trained_on", 0)),
                cost_exponent=data.get("cost_exponent", 0.0) if cost_exponent is None else cost_exponent,
                reference_chars=data.get("reference_chars", _REFERENCE_CHARS),
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"malformed learned-verifier file: {type(exc).__name__}: {exc}") from None

    def save(self, path: str | os.PathLike[str]) -> None:
        Path(path).write_text(json.dumps(self.to_dict()), encoding="utf-8")

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        *,
        threshold: float | None = None,
        cost_exponent: float | None = None,
    ) -> LearnedVerifier:
        """Read a file written by ``save``; ``threshold`` and ``cost_exponent`` override the saved ones."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: not valid JSON ({exc.msg})") from None
        return cls.from_dict(data, threshold=threshold, cost_exponent=cost_exponent)

    def __repr__(self) -> str:
        return (
            f"LearnedVerifier(threshold={self.threshold:g}, cost_exponent={self.cost_exponent:g}, "
            f"trained_on={self.trained_on}, "
            f"hashed_features={len(self.hashed_weights)})"
        )
