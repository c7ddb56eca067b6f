"""report.summarize / format_report against a hand-computed fixture."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tierwise.observe.audit import AuditLog, audit_record
from tierwise.observe.report import format_report, summarize
from tierwise.types import Attempt, Response, RouteInfo, Usage


def _att(
    model: str, outcome: str, cost: float | None, latency: float, usage: tuple[int, int] | None = None
) -> dict:
    return {
        "model": model,
        "provider": "p",
        "outcome": outcome,
        "latency_ms": latency,
        "cost_usd": cost,
        "error_type": "ServerError" if outcome == "error" else None,
        "error": "overloaded" if outcome == "error" else None,
        "usage": None if usage is None else {"input_tokens": usage[0], "output_tokens": usage[1]},
        "path": "router",
        "retry": 0,
    }


def _rec(
    ts: str, label: str | None, model: str | None, cost: float | None, latency: float, **kw: Any
) -> dict:
    rec: dict[str, Any] = {
        "v": 1,
        "ts": ts,
        "request_hash": "h",
        "strategy": "router",
        "route": None if label is None else {"path": "router", "label": label, "reason": "", "score": None},
        "model": model,
        "usage": None,
        "cost_usd": cost,
        "latency_ms": latency,
        "cached": False,
        "fallback": False,
        "attempts": [],
        "metadata": {},
        "error": None,
    }
    rec.update(kw)
    return rec


FIXTURE = [
    _rec(
        "2025-01-01T09:00:00.000Z", "complex", "opus", 0.02, 1000.0, fallback=True,
        usage={"input_tokens": 1000, "output_tokens": 200},
        attempts=[_att("sonnet", "error", 0.0, 100.0), _att("opus", "ok", 0.02, 900.0, (1000, 200))],
    ),
    _rec(
        "2025-01-01T10:00:00.000Z", "bulk", "haiku", 0.001, 200.0,
        usage={"input_tokens": 100, "output_tokens": 50},
        attempts=[_att("haiku", "ok", 0.001, 190.0, (100, 50))],
    ),
    _rec(
        "2025-01-02T11:00:00.000Z", "bulk", "haiku", 0.0, 1.0, cached=True,
        usage={"input_tokens": 100, "output_tokens": 50}, attempts=[_att("haiku", "cached", 0.0, 0.0)],
    ),
    _rec(
        "2025-01-02T12:00:00.000Z", "complex", "local", None, 300.0,
        usage={"input_tokens": 10, "output_tokens": 5}, attempts=[_att("local", "ok", None, 290.0, (10, 5))],
    ),
    _rec(
        "2025-01-03T13:00:00.000Z", None, None, None, 60.0,
        error={"type": "AllTargetsFailed", "message": "all failed"},
        attempts=[_att("opus", "error", None, 50.0)],
    ),
]  # fmt: skip


def _write(path: Path, records: list[dict], tail: str = "") -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records) + tail, encoding="utf-8")
    return path


def _check(s: dict[str, Any]) -> None:
    assert s["records"] == 5 and s["requests"] == 5
    assert s["errors"] == 1 and s["error_rate"] == pytest.approx(0.2)
    assert s["fallbacks"] == 1 and s["fallback_rate"] == pytest.approx(0.2)
    assert s["cache_hits"] == 1 and s["cache_hit_rate"] == pytest.approx(0.2)
    assert s["cost_usd"] == pytest.approx(0.021)
    assert s["unknown_cost_requests"] == 2
    assert s["tokens"] == {"input": 1210, "output": 305}
    assert s["first_ts"] == "2025-01-01T09:00:00.000Z" and s["last_ts"] == "2025-01-03T13:00:00.000Z"
    lat = s["latency_ms"]
    assert lat["p50"] == pytest.approx(200.0, rel=0.01)  # of [1, 60, 200, 300, 1000]
    assert lat["max"] == 1000.0 and lat["mean"] == pytest.approx(312.2)

    m = s["models"]
    assert set(m) == {"haiku", "local", "opus", "sonnet"}
    assert (m["opus"]["requests"], m["opus"]["attempts"], m["opus"]["errors"]) == (1, 2, 1)
    assert m["opus"]["cost_usd"] == pytest.approx(0.02) and m["opus"]["unknown_cost_attempts"] == 1
    assert m["opus"]["tokens"] == {"input": 1000, "output": 200}
    assert (m["sonnet"]["requests"], m["sonnet"]["attempts"], m["sonnet"]["errors"]) == (0, 1, 1)
    assert m["sonnet"]["cost_usd"] == 0.0
    assert (m["haiku"]["requests"], m["haiku"]["attempts"], m["haiku"]["cache_hits"]) == (2, 2, 1)
    assert m["haiku"]["cost_usd"] == pytest.approx(0.001)
    assert m["haiku"]["latency_ms"]["p50"] == pytest.approx(190.0, rel=0.01)  # the cache hit is excluded
    assert m["local"]["cost_usd"] is None and m["local"]["unknown_cost_attempts"] == 1

    lab = s["labels"]
    assert set(lab) == {"(none)", "bulk", "complex"}
    cx = lab["complex"]
    assert (cx["requests"], cx["fallbacks"], cx["unknown_cost_requests"]) == (2, 1, 1)
    assert lab["complex"]["cost_usd"] == pytest.approx(0.02)
    assert lab["bulk"]["cost_usd"] == pytest.approx(0.001) and lab["bulk"]["cache_hits"] == 1
    assert lab["(none)"]["errors"] == 1 and lab["(none)"]["cost_usd"] is None

    d = s["days"]
    assert list(d) == ["2025-01-01", "2025-01-02", "2025-01-03"]
    assert d["2025-01-01"]["requests"] == 2 and d["2025-01-01"]["cost_usd"] == pytest.approx(0.021)
    assert d["2025-01-02"]["cost_usd"] == 0.0 and d["2025-01-02"]["unknown_cost_requests"] == 1
    assert d["2025-01-03"]["errors"] == 1 and d["2025-01-03"]["cost_usd"] is None


def test_totals_match_hand_computed_fixture(tmp_path: Path) -> None:
    s = summarize(_write(tmp_path / "a.jsonl", FIXTURE))
    _check(s)
    assert s["skipped_lines"] == 0
    json.dumps(s, allow_nan=False)


def test_truncated_last_line_is_skipped_not_fatal(tmp_path: Path) -> None:
    # A writer killed mid-line, including mid multi-byte character.
    tail = '{"v":1,"ts":"2025-01-03T14:00:00.000Z","model":"op\xe9'
    path = _write(tmp_path / "a.jsonl", FIXTURE, tail)
    with path.open("ab") as f:
        f.write("é".encode()[:1])
    s = summarize(path)
    _check(s)
    assert s["skipped_lines"] == 1
    assert "1 unreadable line(s) skipped" in format_report(s)


def test_garbage_in_the_middle_and_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    lines = [json.dumps(r) for r in FIXTURE]
    lines[2:2] = ["", "not json", "[1, 2]"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    s = summarize(path)
    _check(s)
    assert s["skipped_lines"] == 2  # blank lines are not errors


def test_iterable_of_records_or_lines_gives_the_same_summary(tmp_path: Path) -> None:
    from_path = summarize(_write(tmp_path / "a.jsonl", FIXTURE))
    assert summarize(FIXTURE) == from_path
    assert summarize(json.dumps(r) for r in FIXTURE) == from_path


def test_empty_log() -> None:
    s = summarize([])
    assert s["requests"] == 0 and s["cost_usd"] == 0.0 and s["fallback_rate"] is None
    text = format_report(s)
    assert "0 requests" in text


def test_format_report_is_a_readable_table(tmp_path: Path) -> None:
    text = format_report(summarize(FIXTURE))
    lines = text.splitlines()
    assert (
        lines[0] == "tierwise audit report: 5 requests, 2025-01-01T09:00:00.000Z → 2025-01-03T13:00:00.000Z"
    )
    assert "Total cost   $0.0210  (+2 request(s) of unknown cost, not included)" in text
    assert "Fallbacks    1 (20.0%)" in text
    assert "By model" in text and "By label" in text and "By day (UTC)" in text
    opus = next(line for line in lines if line.startswith("opus "))
    assert opus.split() == ["opus", "1", "2", "1", "$0.0200", "1", "50", "900"]  # latencies 50, 900
    local = next(line for line in lines if line.startswith("local "))
    assert "unknown" in local  # unpriced, not $0
    # Columns line up: every row of a table has the same width as its header rule.
    start = lines.index("By day (UTC)")
    rule = lines[start + 2]
    assert set(rule.replace(" ", "")) == {"-"}


def test_percentiles_from_many_records() -> None:
    records = [_rec("2025-02-01T00:00:00Z", "x", "m", 0.001, float(i)) for i in range(1, 1001)]
    s = summarize(records)
    assert s["latency_ms"]["p50"] == pytest.approx(500.0, rel=0.01)
    assert s["latency_ms"]["p95"] == pytest.approx(950.0, rel=0.01)
    assert s["latency_ms"]["p99"] == pytest.approx(990.0, rel=0.01)
    assert s["cost_usd"] == pytest.approx(1.0)


async def test_report_reads_what_audit_log_writes(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    audit = AuditLog(path)
    usage = Usage(input_tokens=10, output_tokens=4)
    for i, cost in enumerate((0.01, None, 0.03)):
        resp = Response(
            text="t", model="gpt-x", provider="openai", usage=usage, cost_usd=cost,
            latency_ms=100.0 * (i + 1),
            route=RouteInfo("router", "standard", "default"),
            attempts=[Attempt("gpt-x", "openai", "ok", 90.0, cost, usage=usage, path="router")],
        )  # fmt: skip
        audit.write(audit_record(resp, request_hash=f"h{i}", strategy="router", ts=1_738_368_000.0 + i))
    await audit.aclose()
    s = summarize(path)
    assert s["requests"] == 3 and s["skipped_lines"] == 0
    assert s["cost_usd"] == pytest.approx(0.04) and s["unknown_cost_requests"] == 1
    assert s["models"]["gpt-x"]["attempts"] == 3
    assert s["labels"]["standard"]["requests"] == 3
    assert list(s["days"]) == ["2025-02-01"]
