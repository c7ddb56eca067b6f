"""The audit trail: one record per orchestrator request, as JSONL (or SQLite).

What a record holds (``audit_record``/``audit_failure_record`` build it): ISO 8601
UTC timestamp, the request hash, the strategy, the route (path, label, reason),
every attempt (model, provider, outcome, error type and redacted message, latency,
cost, usage, retry index), the response's ``steps`` (one per inner call of a
composite strategy: name, path, model, cost, latency, usage, ``accepted`` and
note, e.g. each cascade rung with its verifier's verdict and reason; ``[]`` for a
plain call and for a failed request), the answering model, usage, cost (``null``
when the price is unknown, never a made-up 0), latency, whether it was cached or a
fallback, string-valued metadata tags, and the prompt/response text only with
``include_text=True``. Records written before ``steps`` existed lack the key;
readers treat a missing key as ``[]``.

Secrets: every string in a record (keys of metadata included) passes through
``tierwise.errors.redact`` with the sink's known secrets just before it is
serialized, whoever built the record. Text is dropped by the sink when
``include_text`` is off, even if a caller's record carries it.

Why writes are buffered and done in a worker thread: measured on the dev box
(ext4), redacting and serializing a typical two-attempt record costs ~95 µs and a
record with a 100 KB prompt ~9 ms, while the ``write`` itself is ~2.5-5 µs. So the
expensive part is CPU, not IO, and it would land on the event loop once per request
if done inline. ``write()`` therefore only appends the record to a list (~0.1 µs);
a background task hands batches to ``anyio.to_thread`` (at ``max_buffer`` records
or ``flush_interval_s`` after the first unflushed one), where they are redacted,
serialized and written with one ``write`` call per batch. The cost: records of the
last ``flush_interval_s`` can be lost if the process is killed, so ``await
aclose()`` (the orchestrator's ``aclose`` does it) flushes everything. A crash
mid-write can leave a truncated last line; ``report.summarize`` skips it.

Records handed to ``write()`` belong to the sink from then on (they are serialized
later, in another thread): do not mutate them.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio.to_thread

from .._clock import SYSTEM_CLOCK, Clock
from .._closing import AsyncClosing
from .._serde import attempt_to_dict, step_to_dict, usage_to_dict
from ..errors import redact
from ..types import Attempt, Request, Response, StepInfo
from .events import AttemptEvent, RequestCancelled, RequestEvent

if TYPE_CHECKING:
    import sqlite3

__all__ = [
    "AUDIT_VERSION",
    "AuditLog",
    "SQLiteAudit",
    "audit_failure_record",
    "audit_record",
    "iso_utc",
    "read_sqlite_audit",
]

AUDIT_VERSION = 1
"""Bumped when a field changes meaning; readers skip nothing on unknown fields."""

_TEXT_KEYS = ("prompt", "response")


def iso_utc(ts: float) -> str:
    """Unix seconds → ``2025-01-31T12:00:00.123Z``."""
    return datetime.fromtimestamp(ts, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _string_tags(metadata: Mapping[str, Any] | None) -> dict[str, str]:
    # Only string tags: other values (objects, numbers meant for code) may be large,
    # unserializable or sensitive in ways a string tag is deliberately not.
    if not metadata:
        return {}
    return {k: v for k, v in metadata.items() if isinstance(k, str) and isinstance(v, str)}


def _attempts(attempts: Sequence[Any]) -> list[dict[str, Any]]:
    return [attempt_to_dict(a) for a in attempts if isinstance(a, Attempt)]


def _steps(steps: Sequence[Any]) -> list[dict[str, Any]]:
    return [step_to_dict(s) for s in steps if isinstance(s, StepInfo)]


def _infer_fallback(model: str, attempts: Sequence[Attempt]) -> bool:
    # A different model failed before this one answered. Retries of the answering
    # model are not fallbacks, nor are cascade escalations: a rejected rung's call
    # succeeded (outcome "ok"); the verifier's verdict is in the record's steps.
    return any(a.outcome == "error" and a.model != model for a in attempts)


def audit_record(
    response: Response,
    *,
    request_hash: str,
    strategy: str,
    metadata: Mapping[str, Any] | None = None,
    prompt_text: str | None = None,
    include_text: bool = False,
    ts: float,
    latency_ms: float | None = None,
    fallback: bool | None = None,
) -> dict[str, Any]:
    """The audit record of a successful request. ``ts`` is Unix seconds;
    ``latency_ms`` defaults to ``response.latency_ms`` and ``fallback`` to
    ``response.fallback`` (inferred from the attempts when absent). Strings are not
    redacted here; the sink does it for every record it writes."""
    model = getattr(response, "deployment", "") or response.model
    if fallback is None:
        fallback = getattr(response, "fallback", None)
        if fallback is None:
            fallback = _infer_fallback(model, response.attempts)
    route = response.route
    record: dict[str, Any] = {
        "v": AUDIT_VERSION,
        "ts": iso_utc(ts),
        "request_hash": request_hash,
        "strategy": strategy,
        "route": {
            "path": route.strategy_path,
            "label": route.label,
            "reason": route.reason,
            "score": route.score,
        },
        "model": model,
        "provider": response.provider,
        "provider_model": response.model,
        "finish_reason": response.finish_reason,
        "usage": usage_to_dict(response.usage),
        "cost_usd": response.cost_usd,
        "baseline": getattr(response, "baseline", "") or None,
        "baseline_cost_usd": getattr(response, "baseline_cost_usd", None),
        "savings_usd": getattr(response, "savings_usd", None),
        "latency_ms": response.latency_ms if latency_ms is None else latency_ms,
        "ttft_ms": response.ttft_ms,
        "cached": response.cached,
        "fallback": bool(fallback),
        "attempts": _attempts(response.attempts),
        "steps": _steps(getattr(response, "steps", None) or ()),
        "metadata": _string_tags(metadata),
        "error": None,
    }
    if include_text:
        record["prompt"] = prompt_text
        record["response"] = response.text
    return record


def audit_failure_record(
    error: BaseException,
    *,
    request_hash: str,
    strategy: str,
    metadata: Mapping[str, Any] | None = None,
    prompt_text: str | None = None,
    include_text: bool = False,
    ts: float,
    latency_ms: float,
    attempts: Sequence[Attempt] | None = None,
) -> dict[str, Any]:
    """The audit record of a failed request: no model, ``error`` set, no steps,
    and every attempt (from ``error.attempts`` for ``AllTargetsFailed`` unless
    given). Cost is the known cost of failed attempts that still consumed tokens,
    ``null`` if none were priced."""
    tries = _attempts(attempts if attempts is not None else getattr(error, "attempts", None) or ())
    costs = [a["cost_usd"] for a in tries]
    known = [c for c in costs if c is not None]
    record: dict[str, Any] = {
        "v": AUDIT_VERSION,
        "ts": iso_utc(ts),
        "request_hash": request_hash,
        "strategy": strategy,
        "route": None,
        "model": None,
        "provider": None,
        "provider_model": None,
        "finish_reason": "error",
        "usage": None,
        "cost_usd": sum(known) if known else (0.0 if not tries else None),
        "latency_ms": latency_ms,
        "ttft_ms": None,
        "cached": False,
        "fallback": False,
        "attempts": tries,
        "steps": [],
        "metadata": _string_tags(metadata),
        "error": {"type": type(error).__name__, "message": str(error)},
    }
    if include_text:
        record["prompt"] = prompt_text
        record["response"] = None
    return record


def _request_hash(request: Request) -> str:
    # The cache key without a model: the same question hashes the same whichever
    # model answered, and metadata/user tags do not change it.
    from ..execution.cache import request_key

    return request_key("", request)


class _Redactor:
    __slots__ = ("secrets",)

    def __init__(self, secrets: Sequence[str]) -> None:
        self.secrets = tuple(s for s in secrets if s)

    def __call__(self, value: Any) -> Any:
        if isinstance(value, str):
            return redact(value, self.secrets)
        if isinstance(value, Mapping):
            return {(self(k) if isinstance(k, str) else k): self(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self(v) for v in value]
        return value


class _BufferedSink(AsyncClosing):
    """Buffering, background flushing and lifecycle shared by the JSONL and SQLite sinks."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        include_text: bool = False,
        secrets: Sequence[str] = (),
        clock: Clock = SYSTEM_CLOCK,
        flush_interval_s: float = 1.0,
        max_buffer: int = 256,
        max_pending: int = 100_000,
        fsync: bool = False,
    ) -> None:
        if flush_interval_s < 0 or max_buffer < 1 or max_pending < max_buffer:
            raise ValueError("need flush_interval_s >= 0 and 1 <= max_buffer <= max_pending")
        self.include_text = include_text
        self.clock = clock
        self.flush_interval_s = flush_interval_s
        self.max_buffer = max_buffer
        self.max_pending = max_pending
        self.written = 0
        self.dropped = 0
        self.last_error: BaseException | None = None
        self._redact = _Redactor(secrets)
        self._buf: list[Mapping[str, Any]] = []
        self._io_lock = threading.Lock()  # one batch at a time, whichever thread
        self._flusher: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._closed = False
        self._raised = False
        self.path = Path(path)
        self.fsync = fsync
        # Opened here, so a bad path fails at construction, not on the first request.
        self._open()

    # -- subclass hooks (called in a worker thread, under _io_lock) ---------------

    def _open(self) -> None:
        raise NotImplementedError

    def _write_batch(self, records: list[dict[str, Any]]) -> None:
        raise NotImplementedError

    def _close_io(self) -> None:
        raise NotImplementedError

    # -- writing --------------------------------------------------------------------

    def add_secret(self, secret: str) -> None:
        """Also scrub ``secret`` from records written from now on."""
        if secret and secret not in self._redact.secrets:
            self._redact.secrets = (*self._redact.secrets, secret)

    def write(self, record: Mapping[str, Any]) -> None:
        """Queue one record. Never blocks on IO when called inside an event loop;
        without a running loop it writes synchronously."""
        if self._closed:
            raise RuntimeError("audit log is closed")
        if len(self._buf) >= self.max_pending:
            self.dropped += 1  # the writer is stuck (disk full?): bound memory, count the loss
            return
        self._buf.append(record)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._flush_sync()
            return
        if self._flusher is not None:
            return  # the running flusher picks the record up
        if len(self._buf) >= self.max_buffer or self.flush_interval_s == 0:
            self._start_flusher(loop)
        elif self._timer is None:
            self._timer = loop.call_later(self.flush_interval_s, self._start_flusher, loop)

    # -- Observer ---------------------------------------------------------------

    def on_attempt(self, event: AttemptEvent) -> None:
        """Attempts are written inside their request's record, not one by one."""

    def on_request(self, event: RequestEvent) -> None:
        """One record per request: answered, failed or abandoned."""
        request = event.request
        if request is None:  # an event made by hand, without the request to hash
            return
        if event.response is not None:
            self.log_response(
                event.response, request=request, strategy=event.strategy, latency_ms=event.latency_ms
            )
        else:
            self.log_failure(
                event.error if event.error is not None else RequestCancelled(),
                request=request,
                strategy=event.strategy,
                latency_ms=event.latency_ms,
                attempts=event.attempts,
            )

    def log_response(
        self,
        response: Response,
        *,
        request: Request,
        strategy: str,
        latency_ms: float | None = None,
        request_hash: str | None = None,
    ) -> None:
        """Build (``audit_record``) and queue the record of a successful request."""
        self.write(audit_record(response, **self._about(request, strategy, latency_ms, request_hash)))

    def log_failure(
        self,
        error: BaseException,
        *,
        request: Request,
        strategy: str,
        latency_ms: float,
        request_hash: str | None = None,
        attempts: Sequence[Attempt] | None = None,
    ) -> None:
        """Build (``audit_failure_record``) and queue the record of a failed request
        (``attempts``: every try made for it; default ``error.attempts``)."""
        about = self._about(request, strategy, latency_ms, request_hash)
        self.write(audit_failure_record(error, attempts=attempts, **about))

    def _about(
        self, request: Request, strategy: str, latency_ms: float | None, request_hash: str | None
    ) -> dict[str, Any]:
        """What every record says about its request, answered or not."""
        return {
            "request_hash": request_hash or _request_hash(request),
            "strategy": strategy,
            "metadata": request.metadata,
            "prompt_text": request.prompt_text if self.include_text else None,
            "include_text": self.include_text,
            "ts": self.clock.wall(),
            "latency_ms": latency_ms,
        }

    def _prepare(self, record: Mapping[str, Any]) -> dict[str, Any]:
        clean: dict[str, Any] = self._redact(record)
        if not self.include_text:
            for key in _TEXT_KEYS:
                clean.pop(key, None)
        return clean

    def _write_now(self, batch: list[Mapping[str, Any]]) -> None:
        """Redact, serialize and write ``batch`` (runs in a worker thread)."""
        with self._io_lock:
            try:
                self._write_batch([self._prepare(r) for r in batch])
            except Exception as exc:  # disk full, permissions, closed db...
                self.dropped += len(batch)
                self.last_error = exc
                self._raised = False
            else:
                self.written += len(batch)

    def _flush_sync(self) -> None:
        batch, self._buf = self._buf, []
        if batch:
            self._write_now(batch)

    def _start_flusher(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._timer is not None:
            self._timer.cancel()  # no-op when called by the timer itself
            self._timer = None
        if self._flusher is None and self._buf:
            self._flusher = loop.create_task(self._flush_loop())

    async def _flush_loop(self) -> None:
        try:
            while self._buf:
                batch, self._buf = self._buf, []
                await anyio.to_thread.run_sync(self._write_now, batch)
        finally:
            self._flusher = None

    async def flush(self) -> None:
        """Write everything queued so far; re-raises a write error that lost records."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._flusher is not None:
            await self._flusher
        if self._buf:
            batch, self._buf = self._buf, []
            await anyio.to_thread.run_sync(self._write_now, batch)
        if self.last_error is not None and not self._raised:
            self._raised = True
            raise OSError(f"audit log lost {self.dropped} record(s): {self.last_error}") from self.last_error

    async def aclose(self) -> None:
        """Flush and close. Idempotent."""
        if self._closed:
            return
        try:
            await self.flush()
        finally:
            self._closed = True
            await anyio.to_thread.run_sync(self._close_locked)

    def _close_locked(self) -> None:
        with self._io_lock:
            self._close_io()


class AuditLog(_BufferedSink):
    """Append-only JSONL audit log, one record per line (UTF-8).

    The file is opened (and created) at construction. ``fsync=True`` syncs after
    each batch for logs that must survive power loss, at the cost of a disk flush
    per batch.
    """

    def _open(self) -> None:
        self._file = open(self.path, "a", encoding="utf-8", newline="\n")  # noqa: SIM115 - lives until aclose

    def _write_batch(self, records: list[dict[str, Any]]) -> None:
        lines = [json.dumps(r, ensure_ascii=False, separators=(",", ":"), default=str) for r in records]
        self._file.write("\n".join(lines) + "\n")
        self._file.flush()
        if self.fsync:
            os.fsync(self._file.fileno())

    def _close_io(self) -> None:
        self._file.close()

    def __repr__(self) -> str:
        return f"AuditLog({str(self.path)!r}, include_text={self.include_text})"


_SQL_SCHEMA = """
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY,
    ts TEXT NOT NULL,
    request_hash TEXT,
    strategy TEXT,
    label TEXT,
    model TEXT,
    cost_usd REAL,
    latency_ms REAL,
    cached INTEGER,
    fallback INTEGER,
    error_type TEXT,
    record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_ts ON audit (ts);
"""


class SQLiteAudit(_BufferedSink):
    """The same records in a SQLite table (``audit``): the whole record as JSON in
    ``record`` plus indexed-friendly columns (ts, model, label, cost, ...) for ad-hoc
    SQL. One transaction per batch; WAL mode so readers do not block the writer."""

    def _open(self) -> None:
        import sqlite3  # not at module level: JSONL users should not pay for it

        # Used from worker threads, one at a time (the sink's lock serializes access).
        self._db: sqlite3.Connection = sqlite3.connect(self.path, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        if self.fsync:
            self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SQL_SCHEMA)
        self._db.commit()

    def _write_batch(self, records: list[dict[str, Any]]) -> None:
        rows = []
        for r in records:
            route = r.get("route") or {}
            error = r.get("error") or {}
            rows.append(
                (
                    r.get("ts"),
                    r.get("request_hash"),
                    r.get("strategy"),
                    route.get("label"),
                    r.get("model"),
                    r.get("cost_usd"),
                    r.get("latency_ms"),
                    int(bool(r.get("cached"))),
                    int(bool(r.get("fallback"))),
                    error.get("type"),
                    json.dumps(r, ensure_ascii=False, separators=(",", ":"), default=str),
                )
            )
        with self._db:
            self._db.executemany(
                "INSERT INTO audit (ts, request_hash, strategy, label, model, cost_usd, latency_ms,"
                " cached, fallback, error_type, record) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )

    def _close_io(self) -> None:
        self._db.close()

    def __repr__(self) -> str:
        return f"SQLiteAudit({str(self.path)!r}, include_text={self.include_text})"


def read_sqlite_audit(path: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    """Records of a ``SQLiteAudit`` database in insertion order (for ``summarize``)."""
    import sqlite3

    db = sqlite3.connect(Path(path).resolve().as_uri() + "?mode=ro", uri=True)
    try:
        for (text,) in db.execute("SELECT record FROM audit ORDER BY id"):
            yield json.loads(text)
    finally:
        db.close()
