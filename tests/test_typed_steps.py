"""Training data is read from typed step fields, never from the prose of notes:
rewording a note (or a verifier's reason that happens to look like another
note) cannot change what ``tierwise train`` learns."""

from __future__ import annotations

from typing import Any

from tierwise._serde import step_from_dict, step_to_dict
from tierwise.routing.feedback import verifier_feedback
from tierwise.types import StepInfo, Usage


def _record(*steps: StepInfo) -> dict[str, Any]:
    return {"request_hash": "h1", "ts": 1.0, "steps": [step_to_dict(s) for s in steps]}


def _rung(i: int, model: str, verdict: str | None, note: str) -> StepInfo:
    accepted = None if verdict is None else verdict == "accepted"
    return StepInfo(f"cascade[{i}]", f"c.cascade[{i}]", model, 0.001, 10.0, Usage(1, 1), accepted, note,
                    kind="rung", verdict=verdict)  # type: ignore[arg-type]  # fmt: skip


def test_verdicts_not_notes_decide_the_rows() -> None:
    rows = verifier_feedback(
        [
            _record(
                # A decided rejection whose reason reads like a failure note: still a verdict.
                _rung(0, "haiku", "rejected", "verifier failed: says the reason"),
                # No verdict (a judge that could not answer), whatever the note says.
                _rung(1, "sonnet", "undecided", "json: ok"),
                _rung(2, "flash", "failed", "anything at all"),
                StepInfo("cascade[2].judge", "c.cascade[2].judge", "opus", 0.002, 5.0, kind="verifier_call"),
                _rung(3, "opus", "accepted", "reworded by a later release"),
                # An ensemble member the aggregator chose is no judged answer.
                StepInfo(
                    "members[0]",
                    "e.members[0]",
                    "gpt",
                    0.0,
                    1.0,
                    accepted=True,
                    kind="member",
                    verdict="accepted",
                ),
            )
        ]
    )
    assert [(r.model, r.score) for r in rows] == [("haiku", 0.0), ("opus", 1.0)]


def test_a_step_round_trips_through_the_audit_form() -> None:
    step = _rung(0, "haiku", "undecided", "n")
    back = step_from_dict(step_to_dict(step))
    assert (back.kind, back.verdict) == ("rung", "undecided")
    # Unknown values (a newer writer, a hand edit) fall back to the neutral defaults.
    odd = step_to_dict(step) | {"kind": "mystery", "verdict": "maybe"}
    assert (step_from_dict(odd).kind, step_from_dict(odd).verdict) == ("call", None)
