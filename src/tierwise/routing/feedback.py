"""Training a learned router from your own traffic: feedback rows joined to the audit log.

The loop the tutorials end with ("monitor for a week, then optimize"): the
orchestrator writes one audit record per request (with ``include_text`` on, so
the prompt is in it); users, a judge model or the cascade's own verifiers say
which answers were good; ``training_set`` joins the two into ``OutcomeModel.fit``'s
``(prompts, scores, costs)`` and ``tierwise train`` does it all from files.

**Feedback rows** (JSONL, one object per line)::

    {"request_hash": "9f2c…", "good": true}
    {"request_hash": "9f2c…", "model": "haiku", "score": 0.4, "source": "judge", "ts": "2025-06-01T12:00:00Z"}

``request_hash`` is the audit record's key (``request_hash(prompt_or_request)``
computes it in the app); ``model`` is a deployment alias and defaults to the
model that answered that request in the audit; ``good`` (bool) or ``score``
(0..1) is the verdict; ``source`` (``user``, ``verifier``, ``judge`` or ``shadow``:
``strategies.Shadow``'s comparison with a reference model) and
``ts`` (ISO string or Unix seconds) are optional. Any other field is an error:
a typo such as ``"scroe"`` must not silently drop a verdict.

**Join and dedupe.** Rows are grouped by ``(request_hash, model)`` and averaged:
the same prompt asked many times is one training row, whose score for a model is
the mean of every verdict on that model's answers to it. Averaging rather than
"last wins" because verdicts are independent, noisy opinions (two users, a judge
and a verifier), the mean is the empirical good rate ``OutcomeModel`` fits
fractional scores to, and the result does not depend on file order. A model with
no verdict on a prompt gets ``nan`` there: unobserved, not bad.

**Verifier feedback** (``verifier_feedback``) reads the verdicts a cascade's
verifier gave on each rung from the audit records' ``steps``; see that function
for exactly what counts.

**Costs** are each model's mean ``cost_usd`` over its successful attempts in the
audit (cascade verifier calls, recognized by their ``steps``, excluded). A model whose cost was never known
(no price in the catalog) is an error unless a cost is given: a silent 0 would
make the router send it everything.
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ..types import Message, Request, Response

if TYPE_CHECKING:
    from .learned import OutcomeModel

__all__ = [
    "DEFAULT_MIN_FEEDBACK",
    "FEEDBACK_FIELDS",
    "FEEDBACK_SOURCES",
    "Feedback",
    "FeedbackError",
    "TrainingSet",
    "read_audit",
    "read_feedback",
    "request_hash",
    "training_set",
    "verifier_feedback",
    "write_feedback",
]

FeedbackSource = Literal["user", "verifier", "judge", "shadow"]
FEEDBACK_SOURCES: tuple[str, ...] = ("user", "verifier", "judge", "shadow")
FEEDBACK_FIELDS: tuple[str, ...] = ("request_hash", "model", "good", "score", "source", "ts")
DEFAULT_MIN_FEEDBACK = 10
"""Per model: fewer labeled prompts than this and a fitted regression is noise, not a router."""

_INCLUDE_TEXT_HINT = (
    "turn on include_text in the audit config ([audit] include_text = true, or "
    "AuditLog(path, include_text=True)), collect traffic again, then train"
)
_SQLITE_MAGIC = b"SQLite format 3\x00"
_ANSWERED = ("ok", "cached", "rejected")


class FeedbackError(ValueError):
    """Bad training input (a malformed row, an unusable audit, a missing cost): the
    message says what to fix and, for file input, names the file and line."""


def request_hash(request: Request | str) -> str:
    """The ``request_hash`` the audit log records for ``request``.

    Pass what you passed to ``Orchestrator.run``: a prompt string or the
    ``Request``. Metadata and ``user`` do not change it (nor which model
    answered), so the app can compute it next to a thumbs-up button without
    keeping the audit record around.
    """
    if isinstance(request, str):
        # What Orchestrator.run builds from a string.
        request = Request([Message("user", request)])
    if not isinstance(request, Request):
        raise TypeError(
            f"request_hash takes a prompt string or a tierwise.Request, got {type(request).__name__}"
        )
    # The audit's own function, so the app and the log can never disagree.
    from ..observe.audit import _request_hash

    return _request_hash(request)


@dataclass(frozen=True, slots=True)
class Feedback:
    """One verdict on one answer: ``score`` 1.0 is good, 0.0 bad, in between allowed.

    ``model`` ``None`` means "whichever model answered this request" (resolved
    against the audit). ``where`` is ``file:line`` for rows read from a file,
    used in error messages only.
    """

    request_hash: str
    score: float
    model: str | None = None
    source: str | None = None
    ts: str | float | None = None
    where: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.request_hash, str) or not self.request_hash:
            raise FeedbackError(f"{self._at()}request_hash must be a non-empty string")
        score = self.score
        if isinstance(score, bool) or not isinstance(score, int | float) or not 0.0 <= score <= 1.0:
            raise FeedbackError(f"{self._at()}score must be a number within 0..1, got {score!r}")
        if self.model is not None and (not isinstance(self.model, str) or not self.model):
            raise FeedbackError(f"{self._at()}model must be a non-empty string (a deployment alias)")
        if self.source is not None and self.source not in FEEDBACK_SOURCES:
            raise FeedbackError(
                f"{self._at()}source must be one of {', '.join(FEEDBACK_SOURCES)}, got {self.source!r}"
            )
        if self.ts is not None and (isinstance(self.ts, bool) or not isinstance(self.ts, str | int | float)):
            raise FeedbackError(f"{self._at()}ts must be an ISO 8601 string or Unix seconds")
        object.__setattr__(self, "score", float(score))

    def _at(self) -> str:
        return f"{self.where}: " if self.where else ""

    @classmethod
    def for_response(
        cls,
        request: Request | str,
        response: Response,
        *,
        good: bool | None = None,
        score: float | None = None,
        source: FeedbackSource | None = "user",
        ts: str | float | None = None,
    ) -> Feedback:
        """A verdict on ``response``, the answer ``Orchestrator.run(request)`` returned.

        The model is the deployment that answered, so the row stays right even if
        the same prompt is later answered by another model.
        """
        return cls(
            request_hash(request),
            _verdict(good, score, ""),
            model=response.deployment or response.model,
            source=source,
            ts=ts,
        )

    @classmethod
    def from_dict(cls, data: Any, where: str = "") -> Feedback:
        """Parse one row of the JSONL format (see the module docstring)."""
        at = f"{where}: " if where else ""
        if not isinstance(data, Mapping):
            raise FeedbackError(f"{at}a feedback row must be a JSON object, got {type(data).__name__}")
        unknown = sorted(str(k) for k in data if k not in FEEDBACK_FIELDS)
        if unknown:
            raise FeedbackError(
                f"{at}unknown field(s) {', '.join(map(repr, unknown))}; expected some of: "
                + ", ".join(FEEDBACK_FIELDS)
            )
        if "request_hash" not in data:
            raise FeedbackError(f"{at}missing request_hash (the audit record's key)")
        return cls(
            data["request_hash"],
            _verdict(data.get("good"), data.get("score"), at, given=("good" in data, "score" in data)),
            model=data.get("model"),
            source=data.get("source"),
            ts=data.get("ts"),
            where=where,
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSONL row: ``good`` for a 0/1 verdict, ``score`` otherwise."""
        row: dict[str, Any] = {"request_hash": self.request_hash}
        if self.model is not None:
            row["model"] = self.model
        if self.score in (0.0, 1.0):
            row["good"] = self.score == 1.0
        else:
            row["score"] = self.score
        if self.source is not None:
            row["source"] = self.source
        if self.ts is not None:
            row["ts"] = self.ts
        return row


def _verdict(good: Any, score: Any, at: str, *, given: tuple[bool, bool] | None = None) -> float:
    has_good, has_score = given if given is not None else (good is not None, score is not None)
    if has_good == has_score:
        raise FeedbackError(f'{at}give exactly one of "good" (true/false) or "score" (0..1)')
    if has_good:
        if not isinstance(good, bool):
            raise FeedbackError(f'{at}"good" must be true or false, got {good!r}')
        return 1.0 if good else 0.0
    if isinstance(score, bool) or not isinstance(score, int | float) or not math.isfinite(score):
        raise FeedbackError(f'{at}"score" must be a number within 0..1, got {score!r}')
    if not 0.0 <= score <= 1.0:
        raise FeedbackError(f'{at}"score" must be within 0..1, got {score!r}')
    return float(score)


# ---------------------------------------------------------------------- files


def _jsonl(path: Path, *, tolerate_truncated_tail: bool) -> Iterator[tuple[int, Any]]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FeedbackError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise FeedbackError(f"{path}: cannot read: {getattr(exc, 'strerror', None) or exc}") from None
    lines = text.split("\n")
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            yield n, json.loads(line)
        except json.JSONDecodeError as exc:
            if tolerate_truncated_tail and n == len(lines):
                # The writer crashed mid-line (the file does not end in a newline):
                # the audit log's documented failure mode, not a corrupt file.
                continue
            raise FeedbackError(f"{path}:{n}: not valid JSON ({exc.msg})") from None


def read_feedback(path: str | os.PathLike[str]) -> list[Feedback]:
    """Every row of a feedback JSONL file; ``FeedbackError`` names ``file:line`` of a bad one."""
    p = Path(path)
    return [Feedback.from_dict(obj, f"{p}:{n}") for n, obj in _jsonl(p, tolerate_truncated_tail=False)]


def write_feedback(path: str | os.PathLike[str], rows: Iterable[Feedback]) -> int:
    """Append ``rows`` to a feedback JSONL file (created if missing); returns how many."""
    lines = [json.dumps(r.to_dict(), ensure_ascii=False, separators=(",", ":")) for r in rows]
    with open(path, "a", encoding="utf-8", newline="\n") as fh:
        if lines:
            fh.write("\n".join(lines) + "\n")
    return len(lines)


def read_audit(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Records of an audit log: JSONL (``AuditLog``) or SQLite (``SQLiteAudit``, by
    its file header, whatever the name).

    A truncated last line (the writer was killed mid-write) is skipped; any other
    unparsable line is an error naming it, since training on part of a corrupt
    log would be silent data loss.
    """
    p = Path(path)
    try:
        with open(p, "rb") as fh:
            head = fh.read(len(_SQLITE_MAGIC))
    except FileNotFoundError:
        raise FeedbackError(f"{p}: audit log not found") from None
    except OSError as exc:
        raise FeedbackError(f"{p}: cannot read: {exc.strerror or exc}") from None
    if head == _SQLITE_MAGIC:
        import sqlite3

        from ..observe.audit import read_sqlite_audit

        try:
            return list(read_sqlite_audit(p))
        except (sqlite3.Error, ValueError) as exc:
            raise FeedbackError(f"{p}: not a readable tierwise SQLite audit: {exc}") from None
    out: list[dict[str, Any]] = []
    for n, obj in _jsonl(p, tolerate_truncated_tail=True):
        if not isinstance(obj, dict):
            raise FeedbackError(f"{p}:{n}: an audit record must be a JSON object, got {type(obj).__name__}")
        out.append(obj)
    return out


# ---------------------------------------------------------------------- verifier feedback


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _list(record: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    items = record.get(key)
    return [a for a in items if isinstance(a, Mapping)] if isinstance(items, list) else []


def verifier_feedback(records: Iterable[Mapping[str, Any]]) -> list[Feedback]:
    """Feedback rows (``source="verifier"``) from the verifier verdicts in audit records.

    Read from each successful record's typed ``steps`` (``StepInfo.kind`` and
    ``verdict``, never the human-readable ``note``): a step of kind ``"rung"``
    whose verdict is ``"accepted"`` → **good** (1.0) for its ``model``;
    ``"rejected"`` → **bad** (0.0). Nothing else gives a row: a rung that
    ``"failed"`` (no answer to judge) or was ``"undecided"`` (its verifier
    raised or reached no verdict: the cascade escalated, but nobody judged the
    answer), the last rung returned unverified, verifier calls, pipeline steps,
    router summaries and ensemble members (their verdict marks the member that
    was *chosen*, not an answer someone judged).

    Rows come in step order, so an escalated request gives a bad row per
    rejected rung, then the good row of the accepted one. Cascades nested in a
    ``Router`` count too: the router keeps its target strategy's steps. A
    cascade nested in a ``Pipeline``, an ``Ensemble`` or another cascade's rung
    does not: those report one step per inner call.

    Failed requests, and records written before steps were typed, give no rows.
    Each row's ``ts`` is its record's, so ``training_set`` can tell an exported
    copy of a row from a new verdict.
    """
    out: list[Feedback] = []
    for record in records:
        h = _str(record.get("request_hash"))
        if h is None or record.get("error"):
            continue
        ts = record.get("ts")
        if isinstance(ts, bool) or not isinstance(ts, str | int | float):
            ts = None
        for step in _list(record, "steps"):
            model, verdict = _str(step.get("model")), step.get("verdict")
            if model is None or step.get("kind") != "rung" or verdict not in ("accepted", "rejected"):
                continue
            out.append(
                Feedback(h, 1.0 if verdict == "accepted" else 0.0, model=model, source="verifier", ts=ts)
            )
    return out


def _verifier_calls(record: Mapping[str, Any], attempts: Sequence[Mapping[str, Any]]) -> set[int]:
    """``id``s of the attempts that answered a cascade verifier's model calls.

    Each call has a step of kind ``"verifier_call"`` naming the path and model of
    its answer; that call's one answered attempt is the last answered attempt
    with the same path and model not yet matched (a check that calls without a
    name runs at the rung's own path, after the rung's answer).
    """
    wanted = Counter(
        (step.get("path"), step.get("model"))
        for step in _list(record, "steps")
        if step.get("kind") == "verifier_call"
    )
    found: set[int] = set()
    if not wanted:
        return found
    for a in reversed(attempts):
        key = (a.get("path"), a.get("model"))
        if wanted[key] > 0 and a.get("outcome") in _ANSWERED:
            wanted[key] -= 1
            found.add(id(a))
    return found


# ---------------------------------------------------------------------- the join


@dataclass(slots=True)
class TrainingSet:
    """``OutcomeModel.fit``'s inputs, plus what the join kept and dropped.

    ``scores[model][i]`` is the mean verdict on ``model``'s answers to
    ``prompts[i]``, ``nan`` where it has none. ``labeled[model]`` counts the
    prompts with a verdict, ``rows[model]`` the verdicts. ``skipped`` counts
    feedback rows that could not be used, by reason.
    """

    prompts: list[str]
    request_hashes: list[str]
    scores: dict[str, list[float]]
    costs: dict[str, float]
    cost_source: dict[str, str]
    labeled: dict[str, int]
    rows: dict[str, int]
    sources: dict[str, int]
    skipped: dict[str, int]
    audit_records: int

    @property
    def models(self) -> list[str]:
        return list(self.scores)

    def good_rate(self, model: str) -> float:
        """Mean score over the prompts ``model`` has a verdict on."""
        seen = [s for s in self.scores[model] if not math.isnan(s)]
        return math.fsum(seen) / len(seen) if seen else math.nan

    def fit(self, **kwargs: Any) -> OutcomeModel:
        """``OutcomeModel.fit(prompts, scores, costs, **kwargs)`` (needs ``tierwise[learn]``)."""
        from .learned import OutcomeModel

        return OutcomeModel.fit(self.prompts, self.scores, self.costs, **kwargs)


def _model_costs(records: Sequence[Mapping[str, Any]]) -> dict[str, list[float | None]]:
    """Every successful attempt's cost per model, except a cascade's verifier calls
    (a judge prompt is not the kind of request the router will send that model)."""
    out: dict[str, list[float | None]] = {}
    for record in records:
        attempts = _list(record, "attempts")
        checks = _verifier_calls(record, attempts)
        for a in attempts:
            model = _str(a.get("model"))
            if model is None or id(a) in checks or a.get("outcome") not in ("ok", "rejected"):
                continue  # cached answers cost ~0 and would understate the price
            cost = a.get("cost_usd")
            if isinstance(cost, int | float) and not isinstance(cost, bool) and math.isfinite(cost):
                out.setdefault(model, []).append(float(cost))
            else:
                out.setdefault(model, []).append(None)
    return out


def _verdict_key(r: Feedback) -> tuple[str, str | None, float, str | float | None]:
    return (r.request_hash, r.model, r.score, r.ts)


def training_set(
    audit: Iterable[Mapping[str, Any]],
    feedback: Iterable[Feedback] = (),
    *,
    from_verifier: bool = True,
    costs: Mapping[str, float] | None = None,
    min_feedback: int = DEFAULT_MIN_FEEDBACK,
) -> TrainingSet:
    """Join audit records and feedback into ``OutcomeModel.fit`` inputs.

    ``from_verifier`` adds ``verifier_feedback(audit)``; the same verifier verdict
    given twice (also exported to a feedback file) counts once. ``costs``
    overrides the per-model cost measured from the audit (USD per request).
    Every model with a verdict is trained and needs at least ``min_feedback``
    labeled prompts. Raises ``FeedbackError`` for input that cannot train.
    """
    records = list(audit)
    if min_feedback < 1:
        raise FeedbackError("min_feedback must be at least 1")
    rows = list(feedback)
    if from_verifier:
        derived = verifier_feedback(records)
        # A file row identical to a derived verdict (same request, model, score and
        # record ts: the export of ``verifier_feedback``) is that verdict read twice;
        # each cancels one derived row, so identical requests in the same millisecond
        # still count once each. User and judge rows are independent opinions.
        pending = Counter(_verdict_key(r) for r in derived)
        kept: list[Feedback] = []
        for r in rows:
            key = _verdict_key(r)
            if r.source == "verifier" and pending[key] > 0:
                pending[key] -= 1
                continue
            kept.append(r)
        rows = kept + derived
    if not rows:
        raise FeedbackError(
            "no feedback: give feedback rows, or audit records of a cascade with a verifier "
            "(verifier feedback)"
        )

    prompt_of: dict[str, str] = {}
    answered_by: dict[str, set[str]] = {}
    hashes_seen: set[str] = set()
    for record in records:
        h = _str(record.get("request_hash"))
        if h is None:
            continue
        hashes_seen.add(h)
        text = record.get("prompt")
        if isinstance(text, str) and h not in prompt_of:
            prompt_of[h] = text
        model = _str(record.get("model"))
        if model is not None and not record.get("error"):
            answered_by.setdefault(h, set()).add(model)

    skipped: Counter[str] = Counter()
    sums: dict[tuple[str, str], list[float]] = {}
    order: dict[str, None] = {}  # hashes in first-seen order, for a stable training order
    sources: Counter[str] = Counter()
    for r in rows:
        if r.request_hash not in hashes_seen:
            skipped["not_in_audit"] += 1
            continue
        model = r.model
        if model is None:
            answerers = answered_by.get(r.request_hash, set())
            if len(answerers) != 1:
                # No answer (the request failed), or several models answered this
                # prompt over time and the row does not say which one it judges.
                skipped["failed_request" if not answerers else "ambiguous_model"] += 1
                continue
            model = next(iter(answerers))
        if r.request_hash not in prompt_of:
            skipped["no_prompt_text"] += 1
            continue
        sums.setdefault((r.request_hash, model), []).append(r.score)
        order.setdefault(r.request_hash, None)
        sources[r.source or "unspecified"] += 1

    if not sums:
        if skipped["no_prompt_text"]:
            raise FeedbackError(
                f"the audit log has no prompt text for the {skipped['no_prompt_text']} feedback row(s) "
                f"that match it: {_INCLUDE_TEXT_HINT}"
            )
        reasons = ", ".join(f"{n} {why}" for why, n in sorted(skipped.items())) or "none"
        raise FeedbackError(f"no feedback row matches an answered request in the audit (skipped: {reasons})")

    hashes = list(order)
    index = {h: i for i, h in enumerate(hashes)}
    models = sorted({m for _, m in sums})
    scores = {m: [math.nan] * len(hashes) for m in models}
    n_rows: Counter[str] = Counter()
    for (h, m), values in sums.items():
        scores[m][index[h]] = math.fsum(values) / len(values)
        n_rows[m] += len(values)
    labeled = {m: sum(1 for s in scores[m] if not math.isnan(s)) for m in models}
    few = {m: n for m, n in labeled.items() if n < min_feedback}
    if few:
        detail = ", ".join(f"{m} has {n}" for m, n in sorted(few.items()))
        raise FeedbackError(
            f"too few labeled prompts: {detail} (need at least {min_feedback} per model; "
            "collect more feedback or lower --min-feedback)"
        )
    if len(hashes) < 2:
        raise FeedbackError("too few labeled prompts: training needs at least 2 distinct prompts")

    observed = _model_costs(records)
    overrides = dict(costs or {})
    cost: dict[str, float] = {}
    cost_source: dict[str, str] = {}
    unknown: list[str] = []
    for m in models:
        if m in overrides:
            value = overrides[m]
            if not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
                raise FeedbackError(f"cost of {m!r} must be a finite number >= 0, got {value!r}")
            cost[m], cost_source[m] = float(value), "given"
            continue
        known = [c for c in observed.get(m, []) if c is not None]
        if not known:
            unknown.append(m)
            continue
        cost[m], cost_source[m] = math.fsum(known) / len(known), "audit"
    if unknown:
        raise FeedbackError(
            "no known cost for "
            + ", ".join(repr(m) for m in unknown)
            + " in the audit (price missing from the catalog, or never called): give it, e.g. "
            + " ".join(f"--cost {m}=0.002" for m in unknown)
            + " (USD per request)"
        )
    return TrainingSet(
        prompts=[prompt_of[h] for h in hashes],
        request_hashes=hashes,
        scores=scores,
        costs=cost,
        cost_source=cost_source,
        labeled=labeled,
        rows=dict(n_rows),
        sources=dict(sources),
        skipped=dict(skipped),
        audit_records=len(records),
    )
