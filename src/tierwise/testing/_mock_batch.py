"""The three provider batch APIs on ``MockLLMServer``, in their documented shapes.

OpenAI (``/v1/files`` upload, ``/v1/batches``, output/error files), Anthropic
(``/v1/messages/batches`` and its JSONL results) and Gemini
(``models/{m}:batchGenerateContent`` with inlined requests, ``batches/{id}``
operations). Each item is answered at submission by the same model logic as a
real-time call (its ``MockModel``: reply text, token counts); the batch then
reports ``in_progress`` until ``MockBatches.complete_after_s`` seconds of the
server's clock have passed (default 0.2 s, so tests stay fast) and ``ended``
afterwards.

Faults are per item and per batch, set on ``server.batches``: ``item_errors``
(custom_id → HTTP status answered for that item), ``malformed_items`` (custom_ids
whose result line is not JSON), ``expire`` (the batch ends as expired: its items
never ran), ``poll_failures`` (the next N status polls answer 500), ``hold_models``
(batches of these models stay in progress until released). ``submitted``
counts every custom_id ever submitted, so a test can assert nothing was sent twice.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ._mock_http import _json_reply, _Op
from ._mock_model import MockRequest, _ModelState
from ._mock_reply import _answer
from ._mock_responses import RESPONSES
from ._mock_wire import _ANTHROPIC, _GEMINI, _OPENAI, _Wire

__all__ = ["MockBatches"]

_JSONL = "application/jsonl"


@dataclass(slots=True)
class _Item:
    custom_id: str
    status: int  # 200, or the error status answered for it
    body: dict[str, Any]  # the reply (status 200) or the provider's error body
    malformed: bool = False


@dataclass(slots=True)
class _Batch:
    id: str
    wire: str  # "openai" | "anthropic" | "gemini"
    model: str
    created: float
    items: list[_Item]
    canceled: bool = False
    input_file: str = ""
    label: str = ""


@dataclass
class MockBatches:
    """The batch side of one mock server: knobs, counters and the batches themselves."""

    complete_after_s: float = 0.2
    item_errors: dict[str, int] = field(default_factory=dict)
    malformed_items: set[str] = field(default_factory=set)
    expire: bool = False
    poll_failures: int = 0
    #: Models whose batches stay ``in_progress`` until removed from this set.
    hold_models: set[str] = field(default_factory=set)
    clock: Callable[[], float] = time.monotonic
    #: The server's base URL (set when it binds), for Anthropic's absolute ``results_url``.
    base_url: str = ""
    submitted: Counter[str] = field(default_factory=Counter)
    batches: dict[str, _Batch] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)
    _seq: int = 0

    # -- routing -------------------------------------------------------------------

    def handle(
        self,
        method: str,
        path: str,
        headers: Mapping[str, str],
        body: bytes,
        close: bool,
        state_for: Callable[[str], _ModelState | None],
    ) -> list[_Op] | None:
        """The reply to a batch-API request, or ``None`` when ``path`` is not one."""
        parts = path.strip("/").split("/")
        if path == "/v1/files" and method == "POST":
            return self._upload(headers, body, close)
        if len(parts) == 4 and parts[:2] == ["v1", "files"] and parts[3] == "content":
            data = self.files.get(parts[2])
            if data is None:
                return self._missing(_OPENAI, close)
            return [*_json_reply(200, data, (), close)]
        if path == "/v1/batches" and method == "GET":
            rows = [self._openai_view(b) for b in reversed(self.batches.values()) if b.wire == "openai"]
            return _json_reply(200, _dumps({"object": "list", "data": rows[:100]}), (), close)
        if path == "/v1beta/batches" and method == "GET":
            rows = [self._gemini_view(b) for b in reversed(self.batches.values()) if b.wire == "gemini"]
            return _json_reply(200, _dumps({"operations": rows[:100]}), (), close)
        if path == "/v1/batches" and method == "POST":
            return self._openai_create(body, close, state_for)
        if parts[:2] == ["v1", "batches"] and len(parts) in (3, 4):
            return self._poll_or_cancel(_OPENAI, parts[2], len(parts) == 4 and parts[3] == "cancel", close)
        if path == "/v1/messages/batches" and method == "POST":
            return self._anthropic_create(body, close, state_for)
        if parts[:3] == ["v1", "messages", "batches"] and len(parts) in (4, 5):
            if len(parts) == 5 and parts[4] == "results":
                return self._anthropic_results(parts[3], close)
            return self._poll_or_cancel(_ANTHROPIC, parts[3], len(parts) == 5 and parts[4] == "cancel", close)
        if path.startswith(("/v1beta/models/", "/v1/models/")) and path.endswith(":batchGenerateContent"):
            model = path.split("/models/", 1)[1].rsplit(":", 1)[0]
            return self._gemini_create(model, body, close, state_for)
        if path.startswith(("/v1beta/batches/", "/v1/batches/")) and parts[0] == "v1beta":
            name = parts[2]
            cancel = name.endswith(":cancel")
            return self._poll_or_cancel(_GEMINI, name.removesuffix(":cancel"), cancel, close)
        return None

    # -- creation ------------------------------------------------------------------

    def _new_id(self, prefix: str) -> str:
        self._seq += 1
        return f"{prefix}{self._seq:06d}"

    def _answer_item(self, wire: _Wire, model: str, custom_id: str, params: Any, state: _ModelState) -> _Item:
        self.submitted[custom_id] += 1
        status = self.item_errors.get(custom_id)
        if status is not None:
            return _Item(custom_id, status, json.loads(wire.error_body(status, model)))
        rec = MockRequest("POST", "/batch-item", {}, json.dumps(params).encode())
        rec.model, rec.provider = model, wire.name
        rec._json = params
        state.stats.requests += 1
        state.stats.ok += 1
        answer = _answer(state, rec, params if isinstance(params, dict) else {}, wire, self._seq)
        return _Item(custom_id, 200, json.loads(wire.reply_json(answer)), custom_id in self.malformed_items)

    def _upload(self, headers: Mapping[str, str], body: bytes, close: bool) -> list[_Op]:
        ctype = next((v for k, v in headers.items() if k.lower() == "content-type"), "")
        boundary = ctype.partition("boundary=")[2].strip('"')
        content = _file_part(body, boundary) if boundary else None
        if content is None:
            return _json_reply(
                400, _OPENAI.error_body(400, "", "expected a multipart file upload"), (), close
            )
        file_id = self._new_id("file-mock")
        self.files[file_id] = content
        reply = {"id": file_id, "object": "file", "bytes": len(content), "purpose": "batch", "created_at": 0}
        return _json_reply(200, _dumps(reply), (), close)

    def _openai_create(
        self, body: bytes, close: bool, state_for: Callable[[str], _ModelState | None]
    ) -> list[_Op]:
        data = _loads(body)
        file_id = data.get("input_file_id") if isinstance(data, dict) else None
        if not isinstance(file_id, str) or file_id not in self.files:
            return _json_reply(400, _OPENAI.error_body(400, "", "input_file_id: no such file"), (), close)
        items: list[_Item] = []
        model = ""
        for line in self.files[file_id].splitlines():
            row = _loads(line)
            if not isinstance(row, dict) or not isinstance(row.get("body"), dict):
                return _json_reply(400, _OPENAI.error_body(400, "", "invalid batch input line"), (), close)
            model = str(row["body"].get("model", ""))
            state = state_for(model)
            if state is None:
                return _json_reply(404, _OPENAI.error_body(404, model), (), close)
            # Lines for the Responses API are answered in its shape (the batch's endpoint).
            wire = RESPONSES if str(row.get("url", "")).endswith("/responses") else _OPENAI
            items.append(self._answer_item(wire, model, str(row.get("custom_id")), row["body"], state))
        label = str((data.get("metadata") or {}).get("tierwise_job", ""))
        batch = _Batch(
            self._new_id("batch_mock"), "openai", model, self.clock(), items, input_file=file_id, label=label
        )
        self.batches[batch.id] = batch
        return _json_reply(200, _dumps(self._openai_view(batch)), (), close)

    def _anthropic_create(
        self, body: bytes, close: bool, state_for: Callable[[str], _ModelState | None]
    ) -> list[_Op]:
        data = _loads(body)
        requests = data.get("requests") if isinstance(data, dict) else None
        if not isinstance(requests, list) or not requests:
            return _json_reply(400, _ANTHROPIC.error_body(400, "", "requests: Field required"), (), close)
        items: list[_Item] = []
        model = ""
        for row in requests:
            params = row.get("params") if isinstance(row, dict) else None
            if not isinstance(params, dict) or "max_tokens" not in params:
                return _json_reply(
                    400, _ANTHROPIC.error_body(400, "", "params.max_tokens: Field required"), (), close
                )
            model = str(params.get("model", ""))
            state = state_for(model)
            if state is None:
                return _json_reply(404, _ANTHROPIC.error_body(404, model), (), close)
            items.append(self._answer_item(_ANTHROPIC, model, str(row.get("custom_id")), params, state))
        batch = _Batch(self._new_id("msgbatch_mock"), "anthropic", model, self.clock(), items)
        self.batches[batch.id] = batch
        return _json_reply(200, _dumps(self._anthropic_view(batch)), (), close)

    def _gemini_create(
        self, model: str, body: bytes, close: bool, state_for: Callable[[str], _ModelState | None]
    ) -> list[_Op]:
        data = _loads(body)
        batch_obj = data.get("batch") if isinstance(data, dict) else None
        config = (
            batch_obj.get("input_config") or batch_obj.get("inputConfig")
            if isinstance(batch_obj, dict)
            else None
        )
        holder = config.get("requests") if isinstance(config, dict) else None
        requests = holder.get("requests") if isinstance(holder, dict) else None
        if not isinstance(requests, list):
            return _json_reply(
                400, _GEMINI.error_body(400, model, "batch.input_config is required"), (), close
            )
        state = state_for(model)
        if state is None:
            return _json_reply(404, _GEMINI.error_body(404, model), (), close)
        items: list[_Item] = []
        for i, row in enumerate(requests):
            params = row.get("request") if isinstance(row, dict) else None
            meta = row.get("metadata") if isinstance(row, dict) else None
            key = meta.get("key") if isinstance(meta, dict) else None
            items.append(self._answer_item(_GEMINI, model, str(key or i), params or {}, state))
        named = batch_obj if isinstance(batch_obj, dict) else {}
        label = str(named.get("display_name") or named.get("displayName") or "")
        batch = _Batch(self._new_id("mock"), "gemini", model, self.clock(), items, label=label)
        self.batches[batch.id] = batch
        return _json_reply(200, _dumps(self._gemini_view(batch)), (), close)

    # -- polling -------------------------------------------------------------------

    def _ended(self, batch: _Batch) -> bool:
        if batch.canceled:
            return True
        return batch.model not in self.hold_models and self.clock() - batch.created >= self.complete_after_s

    def _poll_or_cancel(self, wire: _Wire, batch_id: str, cancel: bool, close: bool) -> list[_Op]:
        batch = self.batches.get(batch_id)
        if batch is None or batch.wire != wire.name:
            return self._missing(wire, close)
        if cancel:
            batch.canceled = not self._ended(batch) or batch.canceled
        elif self.poll_failures > 0:
            self.poll_failures -= 1
            return _json_reply(500, wire.error_body(500, batch.model), (), close)
        view = {"openai": self._openai_view, "anthropic": self._anthropic_view, "gemini": self._gemini_view}
        return _json_reply(200, _dumps(view[batch.wire](batch)), (), close)

    def _not_run(self, batch: _Batch) -> str | None:
        """Why an ended batch's items never ran (``expired``/``canceled``), else None."""
        if batch.canceled:
            return "canceled"
        return "expired" if self.expire else None

    def _openai_view(self, batch: _Batch) -> dict[str, Any]:
        ended = self._ended(batch)
        reason = self._not_run(batch) if ended else None
        ok = [i for i in batch.items if i.status == 200] if reason is None else []
        bad = [i for i in batch.items if i.status != 200] if reason is None else batch.items
        status = (
            {"canceled": "cancelled", "expired": "expired", None: "completed"}[reason]
            if ended
            else "in_progress"
        )
        view: dict[str, Any] = {
            "id": batch.id,
            "object": "batch",
            "endpoint": "/v1/chat/completions",
            "input_file_id": batch.input_file,
            "completion_window": "24h",
            "status": status,
            "output_file_id": None,
            "error_file_id": None,
            "request_counts": {
                "total": len(batch.items),
                "completed": len(ok) if ended else 0,
                "failed": len(bad) if ended else 0,
            },
            "metadata": {"tierwise_job": batch.label} if batch.label else None,
        }
        if ended:
            if ok:
                view["output_file_id"] = self._result_file(batch, "out", ok, reason)
            if bad:
                view["error_file_id"] = self._result_file(batch, "err", bad, reason)
        return view

    def _result_file(self, batch: _Batch, kind: str, items: list[_Item], reason: str | None) -> str:
        file_id = f"file-{batch.id}-{kind}"
        if file_id not in self.files:
            lines: list[bytes] = []
            for n, item in enumerate(items):
                if item.malformed and reason is None:
                    lines.append(b'{"id": "batch_req_cut", "custom_id": ' + item.custom_id.encode()[:8])
                    continue
                row: dict[str, Any] = {"id": f"batch_req_{n}", "custom_id": item.custom_id}
                if reason is not None:
                    code = "batch_expired" if reason == "expired" else "batch_cancelled"
                    row |= {
                        "response": None,
                        "error": {"code": code, "message": f"This request was {reason}."},
                    }
                else:
                    response = {"status_code": item.status, "request_id": f"req_{n}", "body": item.body}
                    row |= {"response": response, "error": None}
                lines.append(_dumps(row))
            self.files[file_id] = b"\n".join(lines) + b"\n"
        return file_id

    def _anthropic_view(self, batch: _Batch) -> dict[str, Any]:
        ended = self._ended(batch)
        reason = self._not_run(batch) if ended else None
        counts = {"processing": 0, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}
        if not ended:
            counts["processing"] = len(batch.items)
        elif reason is not None:
            counts[reason] = len(batch.items)
        else:
            for item in batch.items:
                counts["succeeded" if item.status == 200 else "errored"] += 1
        return {
            "id": batch.id,
            "type": "message_batch",
            "processing_status": "ended" if ended else ("canceling" if batch.canceled else "in_progress"),
            "request_counts": counts,
            "results_url": f"{self.base_url}/v1/messages/batches/{batch.id}/results" if ended else None,
            "created_at": "2026-01-01T00:00:00Z",
            "ended_at": "2026-01-01T00:00:01Z" if ended else None,
        }

    def _anthropic_results(self, batch_id: str, close: bool) -> list[_Op]:
        batch = self.batches.get(batch_id)
        if batch is None or batch.wire != "anthropic":
            return self._missing(_ANTHROPIC, close)
        if not self._ended(batch):
            return _json_reply(
                400, _ANTHROPIC.error_body(400, batch.model, "batch is still in progress"), (), close
            )
        reason = self._not_run(batch)
        lines: list[bytes] = []
        for item in batch.items:
            if item.malformed and reason is None:
                lines.append(b'{"custom_id": "' + item.custom_id.encode() + b'", "result": {"type": "succ')
                continue
            if reason is not None:
                result: dict[str, Any] = {"type": reason}
            elif item.status == 200:
                result = {"type": "succeeded", "message": item.body}
            else:
                result = {"type": "errored", "error": item.body}
            lines.append(_dumps({"custom_id": item.custom_id, "result": result}))
        return _json_reply(200, b"\n".join(lines) + b"\n", (), close)

    def _gemini_view(self, batch: _Batch) -> dict[str, Any]:
        ended = self._ended(batch)
        reason = self._not_run(batch) if ended else None
        state = {
            "canceled": "BATCH_STATE_CANCELLED",
            "expired": "BATCH_STATE_EXPIRED",
            None: "BATCH_STATE_SUCCEEDED",
        }
        meta: dict[str, Any] = {
            "@type": "type.googleapis.com/google.ai.generativelanguage.v1beta.GenerateContentBatch",
            "model": f"models/{batch.model}",
            "state": state[reason] if ended else "BATCH_STATE_RUNNING",
            "batchStats": {"requestCount": str(len(batch.items))},
            "displayName": batch.label,
        }
        view: dict[str, Any] = {"name": f"batches/{batch.id}", "metadata": meta}
        if ended:
            view["done"] = True
        if ended and reason is None:  # an expired or canceled batch has no output
            entries: list[Any] = []
            for item in batch.items:
                if item.malformed:
                    entries.append("not-a-response")
                elif item.status == 200:
                    entries.append({"response": item.body, "metadata": {"key": item.custom_id}})
                else:
                    entries.append(
                        {"error": item.body.get("error", item.body), "metadata": {"key": item.custom_id}}
                    )
            view["response"] = {
                "@type": "type.googleapis.com/google.ai.generativelanguage.v1beta.GenerateContentBatchOutput",
                "inlinedResponses": {"inlinedResponses": entries},
            }
        return view

    def _missing(self, wire: _Wire, close: bool) -> list[_Op]:
        return _json_reply(404, wire.error_body(404, "", "batch not found"), (), close)


def _file_part(body: bytes, boundary: str) -> bytes | None:
    """The file content of a ``multipart/form-data`` body (the part with a filename)."""
    for part in body.split(b"--" + boundary.encode()):
        head, sep, content = part.partition(b"\r\n\r\n")
        if sep and b"filename=" in head:
            return content.removesuffix(b"\r\n")
    return None


def _loads(data: bytes) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        return None


def _dumps(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":")).encode()
