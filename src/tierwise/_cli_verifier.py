"""``tierwise train-verifier``: fit a ``LearnedVerifier`` for answer-aware cascades.

Rows come from audit logs joined with feedback (``--audit`` + ``--feedback``:
the answer text each verdict judged, so the audit needs ``include_text``) and/or
answer-row files (``--rows``); ``--emit-rows`` writes the joined rows out (to
inspect, to merge with other sources, to fit elsewhere). A random fifth of the
rows (seeded) is held out to report the verifier's AUROC on answers it did not
see before the final fit on all of them, so the figure printed is not a
training-set figure.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

from .cli import EXIT_FAILED, EXIT_OK, _print_json, _UsageError

__all__ = ["add_parser", "cmd_train_verifier"]


def _auroc(scores: list[float], labels: list[float]) -> float | None:
    """P(a good answer scores above a bad one), ties half; ``None`` without both kinds."""
    pos = [s for s, y in zip(scores, labels, strict=True) if y >= 0.5]
    neg = [s for s, y in zip(scores, labels, strict=True) if y < 0.5]
    if not pos or not neg:
        return None
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def cmd_train_verifier(args: argparse.Namespace) -> int:
    from .routing.feedback import FeedbackError, read_audit, read_feedback
    from .verify.learned import (
        AnswerRowError,
        LearnedVerifier,
        answer_rows,
        read_answer_rows,
        write_answer_rows,
    )

    if not args.rows and not args.audit:
        raise _UsageError("give --audit FILE (with --feedback FILE) and/or --rows FILE")
    if args.audit and not args.feedback:
        raise _UsageError("--audit needs --feedback FILE: the verdicts that say which answers were good")
    if args.out is None and args.emit_rows is None:
        raise _UsageError("nothing to do: give --out verifier.json and/or --emit-rows rows.jsonl")
    if not 0.0 <= args.threshold <= 1.0:
        raise _UsageError("--threshold must be within 0..1")
    from .verify.learned import MAX_COST_EXPONENT

    if not 0.0 <= args.cost_exponent <= MAX_COST_EXPONENT:
        raise _UsageError(f"--cost-exponent must be within 0..{MAX_COST_EXPONENT:g}")
    try:
        rows = [r for path in args.rows or [] for r in read_answer_rows(path)]
        if args.audit:
            records = [r for path in args.audit for r in read_audit(path)]
            feedback = [f for path in args.feedback for f in read_feedback(path)]
            joined = answer_rows(records, feedback)
            if not joined:
                raise _UsageError(
                    "no feedback row matches an answer in the audit (the audit needs include_text = true, "
                    "and the feedback must judge the model that answered)"
                )
            rows += joined
            if args.emit_rows is not None:
                write_answer_rows(args.emit_rows, joined)
    except (FeedbackError, AnswerRowError) as exc:
        raise _UsageError(str(exc)) from None
    summary: dict[str, object] = {
        "rows": len(rows),
        "good_rate": sum(r.score for r in rows) / max(1, len(rows)),
    }
    if args.emit_rows is not None:
        summary["emitted"] = str(args.emit_rows)
    if args.out is not None:
        out = Path(args.out)
        if not out.parent.is_dir():
            raise _UsageError(f"--out: directory not found: {out.parent}")
        try:
            order = list(range(len(rows)))
            random.Random(0).shuffle(order)
            cut = len(rows) // 5
            held, fit = [rows[i] for i in order[:cut]], [rows[i] for i in order[cut:]]
            auroc = None
            if len(held) >= 10:
                probe = LearnedVerifier.fit_rows(fit, c=args.c)
                # AUROC of p(good) itself: the cost exponent reorders by price, not by quality.
                auroc = _auroc(
                    probe.scores([r.prompt for r in held], [r.answer for r in held]), [r.score for r in held]
                )
            verifier = LearnedVerifier.fit_rows(
                rows, c=args.c, threshold=args.threshold, cost_exponent=args.cost_exponent
            )
            verifier.save(out)
        except ImportError as exc:
            sys.stderr.write(f"tierwise: error: {exc}\n")
            return EXIT_FAILED
        except (ValueError, OSError) as exc:
            sys.stderr.write(f"tierwise: training failed: {type(exc).__name__}: {exc}\n")
            return EXIT_FAILED
        summary.update(
            {
                "out": str(out),
                "held_out": len(held),
                "held_out_auroc": auroc,
                "threshold": args.threshold,
                "cost_exponent": args.cost_exponent,
            }
        )
    if args.json:
        _print_json(summary)
        return EXIT_OK
    w = sys.stdout.write
    w(f"{summary['rows']} judged answers, {summary['good_rate']:.1%} good\n")
    if args.emit_rows is not None:
        w(f"wrote the joined rows to {args.emit_rows}\n")
    if args.out is not None:
        auc = summary["held_out_auroc"]
        held_text = (
            "too few rows to hold out"
            if auc is None
            else f"AUROC {auc:.3f} on {summary['held_out']} held out"
        )
        w(f"wrote {args.out} ({held_text})\nuse it in a cascade:\n")
        extra = f", cost_exponent = {args.cost_exponent:g}" if args.cost_exponent else ""
        spec = f"{{model = {json.dumps(str(args.out))}, threshold = {args.threshold:g}{extra}}}"
        w(f"  accept = [{{learned = {spec}}}]\n")
    return EXIT_OK


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "train-verifier",
        help="fit a learned answer verifier (verifier.json) for cascades from judged answers",
    )
    p.add_argument(
        "--audit", action="append", metavar="FILE", help="audit log written with include_text = true"
    )
    p.add_argument(
        "--feedback", action="append", metavar="FILE", help="feedback JSONL judging the audit's answers"
    )
    p.add_argument(
        "--rows",
        action="append",
        metavar="FILE",
        help='answer rows JSONL: {"prompt", "answer", "good"} per line',
    )
    p.add_argument("--emit-rows", metavar="FILE", help="append the rows joined from --audit/--feedback here")
    p.add_argument("--out", "-o", help="where to write the verifier (verifier.json)")
    p.add_argument("--threshold", type=float, default=0.5, help="accept at p(good) >= this (default 0.5)")
    p.add_argument(
        "--cost-exponent",
        type=float,
        default=0.0,
        help="cost-aware acceptance: divide the doubt by (size / median size) ** this "
        "(default 0: plain p(good); 0.5 measured cheapest on GSM8K)",
    )
    p.add_argument("--c", type=float, default=1.0, help="inverse L2 strength of the regression (default 1.0)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_train_verifier)
    return p
