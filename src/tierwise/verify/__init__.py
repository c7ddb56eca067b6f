"""Acceptance checks for cascades: is this answer good enough to stop at?

A ``Verifier`` looks at a request and an answer and returns a ``Verdict``
(accepted, an optional 0–1 score, a reason, and any model calls it made so the
caller can bill them). They compose: ``&`` (all must accept; stops at the first
rejection), ``|`` (any may accept; stops at the first acceptance), ``~`` (invert);
plain functions work on either side.

Local, free checks: ``FinishedNormally``, ``ValidJSON``, ``MatchesSchema``,
``MinLength``, ``NoRefusal``. Model-graded, one extra call each:
``SelfConfidence``, ``Judge``. Learned from judged answers, local and free:
``LearnedVerifier`` (``verify.learned``). Anything else: ``Check(fn)``.

    accept = FinishedNormally() & NoRefusal() & MinLength() & Judge("opus", threshold=0.7)
    cascade = tw.Cascade(["haiku", "sonnet", "opus"], accept=accept)

``from_config`` builds the same from a config list (``accept = ["finish_reason", ...]``).
"""

from ._config import VERIFIER_NAMES, TargetResolver, from_config
from .base import AllOf, AnyOf, Check, Not, Verdict, Verifier, VerifyFn, VerifyResult, as_verifier
from .checks import (
    DEFAULT_REFUSALS,
    FinishedNormally,
    MatchesSchema,
    MinLength,
    NoRefusal,
    ValidJSON,
    strip_fences,
)
from .graded import Judge, SelfConfidence, parse_score
from .learned import (
    ANSWER_ROW_FIELDS,
    AnswerRow,
    AnswerRowError,
    LearnedVerifier,
    answer_rows,
    read_answer_rows,
    write_answer_rows,
)

__all__ = [
    "ANSWER_ROW_FIELDS",
    "DEFAULT_REFUSALS",
    "VERIFIER_NAMES",
    "AllOf",
    "AnswerRow",
    "AnswerRowError",
    "AnyOf",
    "Check",
    "FinishedNormally",
    "Judge",
    "LearnedVerifier",
    "MatchesSchema",
    "MinLength",
    "NoRefusal",
    "Not",
    "SelfConfidence",
    "TargetResolver",
    "ValidJSON",
    "Verdict",
    "Verifier",
    "VerifyFn",
    "VerifyResult",
    "answer_rows",
    "as_verifier",
    "from_config",
    "parse_score",
    "read_answer_rows",
    "strip_fences",
    "write_answer_rows",
]
