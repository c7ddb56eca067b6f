"""``type = "shadow"``: the table of ``strategies.Shadow``.

Kept apart from ``_tables.py`` (the five original strategies) so the shadow's
keys and their checks read in one place. Paths in errors are relative to the
table (``compare.judge.threshold``), as for every strategy table.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import ValidationInfo, model_validator

from ..errors import did_you_mean
from ._errors import FieldError
from .strategies import AnyClass, Ref, Resolver, StrategyModel, _Table, import_object

if TYPE_CHECKING:
    from ..strategies.base import Strategy

__all__ = ["ShadowTable"]

_KEYS = (
    "type",
    "target",
    "reference",
    "compare",
    "sample",
    "max_cost_usd",
    "max_pending",
    "timeout_s",
    "feedback",
    "log",
)


def _number(data: Mapping[str, Any], key: str, lo: float, hi: float | None = None) -> float | None:
    if key not in data:
        return None
    v = data[key]
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        raise FieldError(key, f"must be a number, got {v!r:.40}", True)
    if v < lo or (hi is not None and v > hi):
        bounds = f"within {lo:g}..{hi:g}" if hi is not None else f">= {lo:g}"
        raise FieldError(key, f"must be {bounds}, got {v}", True)
    return float(v)


class ShadowTable(StrategyModel):
    """Build from ``[strategies.NAME]`` parameters::

    type = "shadow"
    target = "learned"                # what answers: a model alias or strategy name
    reference = "opus"                # what it is compared with, in the background
    sample = 0.05                     # share of requests shadowed
    compare = "same_answer"           # or {judge = {target = "opus", threshold = 0.7}}
                                      # or "pkg.module:function"
    max_cost_usd = 20.0               # the shadow's own spending cap (per process)
    max_pending = 16                  # comparisons in flight at most
    timeout_s = 120                   # per comparison
    feedback = "shadow-feedback.jsonl"  # rows for `tierwise train --feedback`
    log = "shadow.jsonl"              # records for `tierwise report --shadow`
    """

    KEYS: ClassVar[tuple[str, ...]] = _KEYS[1:]

    target: Any
    reference: Any
    compare: Any = None  # "same_answer", ("judge", target, threshold) or a function
    sample: float = 0.1
    max_cost_usd: float | None = None
    max_pending: int = 16
    timeout_s: float | None = 120.0
    feedback: str | None = None
    log: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _check(cls, data: Any, info: ValidationInfo) -> Any:
        t = _Table(info)
        for key in data:
            if key not in _KEYS:
                hint = did_you_mean(key, _KEYS)
                raise FieldError(
                    key,
                    f"unknown field {key!r}"
                    + (f" ({hint})" if hint else f"; expected some of: {', '.join(_KEYS[1:])}"),
                    True,
                )
        for key in ("target", "reference"):
            if key not in data:
                raise FieldError(key, f'shadow needs {key} = "<model alias or strategy name>"', True)
        out: dict[str, Any] = {
            "type": "shadow",
            "target": t.ref(data["target"], "target"),
            "reference": t.ref(data["reference"], "reference"),
            "compare": cls._compare(data.get("compare", "same_answer"), t),
        }
        sample = _number(data, "sample", 0.0, 1.0)
        if sample is not None:
            out["sample"] = sample
        out["max_cost_usd"] = _number(data, "max_cost_usd", 0.0)
        pending = data.get("max_pending", 16)
        if isinstance(pending, bool) or not isinstance(pending, int) or pending < 1:
            raise FieldError("max_pending", f"must be an integer >= 1, got {pending!r:.40}", True)
        out["max_pending"] = pending
        if "timeout_s" in data:
            out["timeout_s"] = _number(data, "timeout_s", 0.0)
        for key in ("feedback", "log"):
            if key in data:
                if not isinstance(data[key], str) or not data[key]:
                    raise FieldError(key, "must be a file path (a non-empty string)", True)
                out[key] = data[key]
        return out

    @staticmethod
    def _compare(spec: Any, t: _Table) -> Any:
        if spec == "same_answer":
            return "same_answer"
        if isinstance(spec, Mapping) and set(spec) == {"judge"}:
            judge = spec["judge"]
            if not isinstance(judge, Mapping) or "target" not in judge:
                raise FieldError("compare.judge.target", 'judge needs target = "<model alias>"', True)
            for key in judge:
                if key not in ("target", "threshold"):
                    raise FieldError(f"compare.judge.{key}", "expected target and threshold only", True)
            threshold = judge.get("threshold", 0.7)
            if (
                isinstance(threshold, bool)
                or not isinstance(threshold, int | float)
                or not 0 <= threshold <= 1
            ):
                raise FieldError(
                    "compare.judge.threshold", f"must be within 0..1, got {threshold!r:.40}", True
                )
            return ("judge", t.ref(judge["target"], "compare.judge.target"), float(threshold))
        if isinstance(spec, str) and ":" in spec:
            try:
                fn = import_object(spec, "function")
            except FieldError as exc:
                raise FieldError("compare", exc.message, True) from None
            if not callable(fn):
                raise FieldError("compare", f"{spec!r} is not callable", True)
            return fn
        raise FieldError(
            "compare",
            "expected \"same_answer\", {judge = {target = ..., threshold = ...}} or 'pkg.module:function', "
            f"got {spec!r:.60}",
            True,
        )

    def refs(self) -> Iterator[Ref]:
        yield (self.target, "target", "target")
        yield (self.reference, "reference", "target")
        if isinstance(self.compare, tuple):
            yield (self.compare[1], "compare.judge.target", "target")

    def build(self, name: str, *, where: str, target: Resolver, cls: AnyClass | None = None) -> Strategy:
        from ..strategies.shadow import JudgeAgreement, SameAnswer, Shadow

        compare: Any
        if self.compare == "same_answer" or self.compare is None:
            compare = SameAnswer()
        elif isinstance(self.compare, tuple):
            _, judge, threshold = self.compare
            compare = JudgeAgreement(self.resolved(judge, "compare.judge.target", where, target), threshold)
        else:
            compare = self.compare
        return (cls or Shadow)(
            self.resolved(self.target, "target", where, target),
            self.resolved(self.reference, "reference", where, target),
            compare=compare,
            sample=self.sample,
            max_cost_usd=self.max_cost_usd,
            max_pending=self.max_pending,
            timeout_s=self.timeout_s,
            feedback=self.feedback,
            log=self.log,
            name=name,
        )
