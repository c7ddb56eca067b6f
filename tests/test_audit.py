"""Audit log: complete records, secrets never written, text only when enabled, non-blocking writes."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import anyio
import pytest

from tierwise.errors import AllTargetsFailed, ServerError
from tierwise.observe.audit import (
    AuditLog,
    SQLiteAudit,
    audit_failure_record,
    audit_record,
    read_sqlite_audit,
)
from tierwise.observe.report import summarize
from tierwise.testing import FakeClock
from tierwise.types import Attempt, Request, Response, RouteInfo, StepInfo, Usage

KEY = "tw-live-4f9a8c7e2b1d"  # not key-shaped: only the known-secrets list can catch it
SHAPED = "sk-proj-ABCDEFGHIJKLMNOP1234"  # caught by pattern even when not listed
TS = 1_735_689_600.25  # 2025-01-01T00:00:00.250Z


def _response(**kw: Any) -> Response:
    usage = Usage(input_tokens=1200, output_tokens=300, cached_input_tokens=200)
    attempts = [
        Attempt(
            "sonnet", "anthropic", "error", 31.5, 0.0, error_type="ServerError",
            error=f"overloaded; header was 'x-api-key: {KEY}' and Bearer {SHAPED}", path="router", retry=0,
        ),
        Attempt("opus", "anthropic", "ok", 812.0, 0.0123, usage=usage, path="router", retry=0),
    ]  # fmt: skip
    base: dict[str, Any] = dict(
        text="The answer is 42.",
        model="claude-opus-4-7",
        provider="anthropic",
        usage=usage,
        cost_usd=0.0123,
        latency_ms=850.0,
        route=RouteInfo("router", "complex", "keyword 'prove'", 0.9),
        attempts=attempts,
    )
    base.update(kw)
    return Response(**base)


def _request(prompt: str = f"summarize this; my key is {KEY}") -> Request:
    return Request.from_prompt(
        prompt, metadata={"team": "search", "note": f"key={KEY}", "retries": 3, "obj": object()}
    )


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_audit_record_fields() -> None:
    rec = audit_record(
        _response(),
        request_hash="abc123",
        strategy="router",
        metadata={"team": "search", "n": 3},
        prompt_text="hello",
        include_text=False,
        ts=TS,
        fallback=True,
    )
    assert rec["ts"] == "2025-01-01T00:00:00.250Z"
    assert rec["request_hash"] == "abc123"
    assert rec["strategy"] == "router"
    assert rec["route"] == {"path": "router", "label": "complex", "reason": "keyword 'prove'", "score": 0.9}
    assert rec["model"] == "claude-opus-4-7" and rec["provider"] == "anthropic"
    assert rec["usage"]["input_tokens"] == 1200 and rec["usage"]["cached_input_tokens"] == 200
    assert rec["cost_usd"] == 0.0123 and rec["latency_ms"] == 850.0
    assert rec["cached"] is False and rec["fallback"] is True
    assert rec["metadata"] == {"team": "search"}  # only string tags
    assert rec["error"] is None
    assert [a["outcome"] for a in rec["attempts"]] == ["error", "ok"]
    a0 = rec["attempts"][0]
    assert set(a0) >= {
        "model",
        "provider",
        "outcome",
        "error_type",
        "error",
        "latency_ms",
        "cost_usd",
        "usage",
        "retry",
    }
    assert a0["error_type"] == "ServerError" and a0["retry"] == 0 and a0["latency_ms"] == 31.5
    assert rec["attempts"][1]["usage"]["output_tokens"] == 300
    assert rec["steps"] == []  # a plain call has no inner steps
    assert "prompt" not in rec and "response" not in rec
    json.dumps(rec)

    with_text = audit_record(
        _response(), request_hash="h", strategy="s", prompt_text="hello", include_text=True, ts=TS
    )
    assert with_text["prompt"] == "hello" and with_text["response"] == "The answer is 42."


def _steps() -> list[StepInfo]:
    """A cascade's steps: a rejected rung (the verifier's reason as note), its judge call, the winner."""
    return [
        StepInfo("cascade[0]", "c.cascade[0]", "haiku", 0.001, 300.0, Usage(10, 5), False,
                 f"judge (opus): 0.20 < 0.7; it quoted {KEY}"),
        StepInfo("cascade[0].judge", "c.cascade[0].judge", "opus", 0.002, 400.0, Usage(20, 1), None,
                 "verifier call"),
        StepInfo("cascade[1]", "c.cascade[1]", "opus", 0.0123, 812.0, Usage(1200, 300), True, "json: ok"),
    ]  # fmt: skip


def test_steps_are_recorded() -> None:
    rec = audit_record(_response(steps=_steps()), request_hash="h", strategy="c", ts=TS)
    assert [(s["name"], s["model"], s["accepted"]) for s in rec["steps"]] == [
        ("cascade[0]", "haiku", False),
        ("cascade[0].judge", "opus", None),
        ("cascade[1]", "opus", True),
    ]
    assert rec["steps"][0] == {
        "name": "cascade[0]",
        "path": "c.cascade[0]",
        "model": "haiku",
        "cost_usd": 0.001,
        "latency_ms": 300.0,
        "usage": {
            "input_tokens": 10,
            "output_tokens": 5,
            "cached_input_tokens": 0,
            "cache_write_tokens": 0,
            "reasoning_tokens": 0,
            "reported_cost_usd": None,
            "estimated": False,
        },
        "accepted": False,
        "note": f"judge (opus): 0.20 < 0.7; it quoted {KEY}",  # redacted by the sink, not here
        # The typed fields ``tierwise train`` reads (a StepInfo built by hand: defaults).
        "kind": "call",
        "verdict": None,
    }
    json.dumps(rec)


def test_unknown_cost_is_null_and_fallback_is_inferred() -> None:
    resp = _response(cost_usd=None)
    resp.fallback = False  # the executor's own flag wins when present
    rec = audit_record(resp, request_hash="h", strategy="s", ts=TS)
    assert rec["cost_usd"] is None
    assert rec["fallback"] is False
    rec = audit_record(resp, request_hash="h", strategy="s", ts=TS, fallback=None)
    assert rec["fallback"] is False


async def test_log_file_is_complete_and_never_contains_keys(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    audit = AuditLog(path, include_text=True, secrets=[KEY], clock=FakeClock(wall_start=TS))
    request = _request()
    audit.log_response(
        _response(text=f"echo {KEY}", steps=_steps()), request=request, strategy="router", latency_ms=900.0
    )
    err = AllTargetsFailed(
        "all failed",
        [ServerError(f"boom {KEY}", provider="anthropic", model="opus")],
        [Attempt("opus", "anthropic", "error", 10.0, None, error_type="ServerError", error=f"boom {KEY}")],
    )
    audit.log_failure(err, request=request, strategy="router", latency_ms=12.0)
    await audit.aclose()

    raw = path.read_text(encoding="utf-8")
    assert KEY not in raw
    assert SHAPED not in raw
    assert raw.count("[REDACTED]") >= 6  # attempt error, step note, metadata, prompt, response, failure
    ok, failed = _lines(path)
    assert ok["latency_ms"] == 900.0
    assert ok["metadata"] == {"team": "search", "note": "key=[REDACTED]"}
    assert ok["prompt"] == "summarize this; my key is [REDACTED]"
    assert ok["response"] == "echo [REDACTED]"
    assert ok["steps"][0]["note"] == "judge (opus): 0.20 < 0.7; it quoted [REDACTED]"
    assert [s["accepted"] for s in ok["steps"]] == [False, None, True]
    assert re.fullmatch(r"[0-9a-f]{64}", ok["request_hash"])
    assert ok["request_hash"] == failed["request_hash"]  # same request, same hash
    assert ok["ts"] == "2025-01-01T00:00:00.250Z"

    assert failed["model"] is None
    assert failed["error"]["type"] == "AllTargetsFailed"
    assert failed["attempts"][0]["error"] == "boom [REDACTED]"
    assert failed["cost_usd"] is None  # the only attempt was unpriced
    assert failed["latency_ms"] == 12.0
    assert failed["steps"] == []


async def test_text_only_when_enabled(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    audit = AuditLog(path, clock=FakeClock(wall_start=TS))
    audit.log_response(_response(), request=_request("a secret plan"), strategy="s")
    # Even a hand-built record carrying text loses it at a sink without include_text.
    audit.write(
        audit_record(_response(), request_hash="h", strategy="s", prompt_text="p", include_text=True, ts=TS)
    )
    await audit.aclose()
    raw = path.read_text(encoding="utf-8")
    assert "secret plan" not in raw and "The answer is 42" not in raw
    for rec in _lines(path):
        assert "prompt" not in rec and "response" not in rec


def test_distinct_requests_hash_differently(tmp_path: Path) -> None:
    audit = AuditLog(tmp_path / "a.jsonl", clock=FakeClock(wall_start=TS))
    audit.log_response(_response(), request=_request("one"), strategy="s")
    audit.log_response(_response(), request=_request("two"), strategy="s")
    audit.log_response(_response(), request=_request("one"), strategy="s")
    asyncio.run(audit.aclose())
    hashes = [r["request_hash"] for r in _lines(tmp_path / "a.jsonl")]
    assert hashes[0] == hashes[2] != hashes[1]


async def test_writes_are_buffered_off_the_event_loop(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    audit = AuditLog(path, clock=FakeClock(wall_start=TS), flush_interval_s=60, max_buffer=10)
    rec = audit_record(_response(), request_hash="h", strategy="s", ts=TS)
    for _ in range(5):
        audit.write(rec)
    assert path.read_text() == ""  # nothing written on the loop
    for _ in range(5):
        audit.write(rec)  # the 10th record starts a background flush
    for _ in range(100):
        await asyncio.sleep(0.01)
        if audit.written == 10:
            break
    assert len(_lines(path)) == 10
    audit.write(rec)
    await audit.flush()
    assert len(_lines(path)) == 11
    await audit.aclose()
    await audit.aclose()  # idempotent
    with pytest.raises(RuntimeError):
        audit.write(rec)


async def test_timer_flushes_a_lone_record(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    audit = AuditLog(path, clock=FakeClock(wall_start=TS), flush_interval_s=0.02)
    audit.write(audit_record(_response(), request_hash="h", strategy="s", ts=TS))
    for _ in range(100):
        await asyncio.sleep(0.01)
        if audit.written:
            break
    assert len(_lines(path)) == 1
    await audit.aclose()


def test_without_event_loop_writes_synchronously(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    audit = AuditLog(path, secrets=[KEY], clock=FakeClock(wall_start=TS))
    audit.write({"note": KEY})
    assert _lines(path) == [{"note": "[REDACTED]"}]
    anyio.run(audit.aclose)  # the file is the test's to close


def test_bad_path_fails_at_construction(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        AuditLog(tmp_path / "missing-dir" / "a.jsonl")


async def test_write_errors_are_counted_and_raised_on_flush(tmp_path: Path) -> None:
    audit = AuditLog(tmp_path / "a.jsonl", clock=FakeClock(wall_start=TS))

    def fail(records: list[dict[str, Any]]) -> None:
        raise OSError("disk full")

    audit._write_batch = fail  # type: ignore[method-assign]
    audit.write({"a": 1})
    audit.write({"a": 2})
    with pytest.raises(OSError, match="lost 2 record"):
        await audit.flush()
    assert audit.dropped == 2
    await audit.aclose()  # already reported: closing does not raise again


async def test_sqlite_audit_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    audit = SQLiteAudit(path, secrets=[KEY], clock=FakeClock(wall_start=TS))
    audit.log_response(_response(steps=_steps()), request=_request(), strategy="router")
    audit.log_response(_response(cost_usd=None, cached=True), request=_request("x"), strategy="router")
    await audit.aclose()
    records = list(read_sqlite_audit(path))
    assert len(records) == 2
    assert records[0]["route"]["label"] == "complex"
    assert records[0]["steps"][0]["note"] == "judge (opus): 0.20 < 0.7; it quoted [REDACTED]"
    assert KEY not in path.read_bytes().decode("utf-8", "replace")
    summary = summarize(path)  # the report reads SQLite too
    assert summary["requests"] == 2
    assert summary["unknown_cost_requests"] == 1
    assert summary["cache_hits"] == 1


def test_failure_record_without_attempts() -> None:
    rec = audit_failure_record(
        TimeoutError("deadline"), request_hash="h", strategy="s", ts=TS, latency_ms=5.0, include_text=True
    )
    assert rec["error"] == {"type": "TimeoutError", "message": "deadline"}
    assert rec["cost_usd"] == 0.0  # nothing was sent, so nothing was spent
    assert rec["response"] is None
    assert rec["steps"] == []
