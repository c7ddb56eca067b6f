"""The three batch wire formats. Documented shapes this follows:

* OpenAI Batch: https://platform.openai.com/docs/guides/batch and
  https://platform.openai.com/docs/api-reference/batch (a JSONL file uploaded to
  ``/v1/files`` with ``purpose=batch``, ``POST /v1/batches``, output and error files
  read from ``/v1/files/{id}/content``; 50,000 requests / 200 MB per batch).
* Anthropic Message Batches: https://docs.anthropic.com/en/api/creating-message-batches
  and .../retrieving-message-batch-results (``POST /v1/messages/batches`` with
  ``requests: [{custom_id, params}]``, ``processing_status`` until ``ended``, results
  as JSONL at ``results_url``; 100,000 requests / 256 MB per batch).
* Gemini batch mode: https://ai.google.dev/gemini-api/docs/batch-mode and
  https://ai.google.dev/api/batch-mode (``models/{m}:batchGenerateContent`` with
  inlined requests, a ``batches/{id}`` operation polled until ``done``; inlined
  responses in input order; inlined requests up to 20 MB).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Literal

from ..errors import ProtocolError, ProviderError
from ..types import Request
from ._batch import BatchInfo, BatchItemResult, BatchState, BatchWire, jsonl_lines, multipart

__all__ = ["AnthropicBatchWire", "GeminiBatchWire", "OpenAIBatchWire"]


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


_CHAT = "/v1/chat/completions"
_RESPONSES = "/v1/responses"


class OpenAIBatchWire(BatchWire):
    max_items = 50_000
    max_bytes = 190_000_000  # 200 MB documented; margin for the JSONL framing

    _STATES: ClassVar[dict[str, BatchState]] = {
        "validating": "in_progress",
        "in_progress": "in_progress",
        "finalizing": "in_progress",
        "cancelling": "in_progress",
        "completed": "ended",
        "expired": "ended",
        "cancelled": "ended",
        "failed": "failed",
    }

    def _info(self, data: Any) -> BatchInfo:
        if not isinstance(data, Mapping) or not isinstance(data.get("id"), str):
            raise self.malformed("batch object", data)
        status = data.get("status")
        state = self._STATES.get(status) if isinstance(status, str) else None
        if state is None:
            raise self.malformed(f"batch status {status!r}", data)
        counts = _map(data.get("request_counts"))
        message = None
        errors = data.get("errors")
        if isinstance(errors, Mapping) and isinstance(errors.get("data"), list) and errors["data"]:
            first = errors["data"][0]
            if isinstance(first, Mapping):
                message = str(first.get("message") or first.get("code") or "")
        done, failed = _int(counts.get("completed")), _int(counts.get("failed"))
        return BatchInfo(data["id"], state, str(status), _int(counts.get("total")), done, failed, message)

    async def submit(self, model: str, items: Sequence[tuple[str, Request]], *, label: str) -> BatchInfo:
        # A deployment on the Responses API batches over it: the body is a Responses body.
        from .openai import OpenAI

        provider = self.provider
        endpoint = _RESPONSES if isinstance(provider, OpenAI) and provider.uses_responses(model) else _CHAT
        lines = [
            json.dumps(
                {
                    "custom_id": cid,
                    "method": "POST",
                    "url": endpoint,
                    "body": self.body(model, r),
                },
                separators=(",", ":"),
            )
            for cid, r in items
        ]
        payload = ("\n".join(lines) + "\n").encode()
        ctype, form = multipart({"purpose": "batch"}, f"{label}.jsonl", payload)
        base = self.provider.base_url
        uploaded = await self.call(
            "POST", f"{base}/files", content=form, content_type=ctype, what="file upload"
        )
        if not isinstance(uploaded, Mapping) or not isinstance(uploaded.get("id"), str):
            raise self.malformed("file object", uploaded)
        body = {
            "input_file_id": uploaded["id"],
            "endpoint": endpoint,
            "completion_window": "24h",
            "metadata": {"tierwise_job": label},
        }
        return self._info(await self.call("POST", f"{base}/batches", body=body))

    async def status(self, batch_id: str) -> BatchInfo:
        return self._info(await self.call("GET", f"{self.provider.base_url}/batches/{batch_id}"))

    async def cancel(self, batch_id: str) -> BatchInfo:
        return self._info(await self.call("POST", f"{self.provider.base_url}/batches/{batch_id}/cancel"))

    async def find(self, label: str) -> BatchInfo | None:
        data = await self.call("GET", f"{self.provider.base_url}/batches?limit=100")
        for row in _map(data).get("data") or []:
            if _map(_map(row).get("metadata")).get("tierwise_job") == label:
                return self._info(row)
        return None

    async def results(self, batch_id: str, model: str, order: Sequence[str] = ()) -> list[BatchItemResult]:
        base = self.provider.base_url
        data = await self.call("GET", f"{base}/batches/{batch_id}")
        out: list[BatchItemResult] = []
        for key in ("output_file_id", "error_file_id"):
            file_id = data.get(key) if isinstance(data, Mapping) else None
            if not isinstance(file_id, str):
                continue
            raw = await self.call("GET", f"{base}/files/{file_id}/content", raw=True)
            out.extend(self._line(line, model) for line in jsonl_lines(raw))
        return out

    def _line(self, line: Any, model: str) -> BatchItemResult:
        cid = line.get("custom_id") if isinstance(line, Mapping) else None
        if isinstance(line, ProtocolError) or not isinstance(cid, str):
            return BatchItemResult("", "errored", error=_as_protocol(line, self))
        response = line.get("response")
        error = line.get("error")
        if isinstance(response, Mapping) and response.get("status_code") == 200:
            try:
                return BatchItemResult(cid, "succeeded", self.parse(model, response.get("body")))
            except ProviderError as exc:
                return BatchItemResult(cid, "errored", error=exc)
        if isinstance(error, Mapping) and error.get("code") in ("batch_expired", "batch_cancelled"):
            if error["code"] == "batch_expired":
                return BatchItemResult(cid, "expired", error=self.not_run(model, "expired"))
            return BatchItemResult(cid, "canceled", error=self.not_run(model, "canceled"))
        if isinstance(response, Mapping):
            status = _int(response.get("status_code"))
            return BatchItemResult(cid, "errored", error=self.item_error(model, response.get("body"), status))
        return BatchItemResult(cid, "errored", error=self.item_error(model, {"error": error}, None))


class AnthropicBatchWire(BatchWire):
    max_items = 100_000
    max_bytes = 250_000_000  # 256 MB documented

    def _info(self, data: Any) -> BatchInfo:
        if not isinstance(data, Mapping) or not isinstance(data.get("id"), str):
            raise self.malformed("message batch object", data)
        status = data.get("processing_status")
        if status not in ("in_progress", "canceling", "ended"):
            raise self.malformed(f"processing_status {status!r}", data)
        counts = _map(data.get("request_counts"))
        numbers = {
            k: _int(counts.get(k)) or 0 for k in ("processing", "succeeded", "errored", "canceled", "expired")
        }
        total = sum(numbers.values())
        failed = numbers["errored"] + numbers["canceled"] + numbers["expired"]
        state: BatchState = "ended" if status == "ended" else "in_progress"
        return BatchInfo(data["id"], state, status, total, numbers["succeeded"], failed)

    async def submit(self, model: str, items: Sequence[tuple[str, Request]], *, label: str) -> BatchInfo:
        requests = [{"custom_id": cid, "params": self.body(model, r)} for cid, r in items]
        url = f"{self.provider.base_url}/v1/messages/batches"
        return self._info(await self.call("POST", url, body={"requests": requests}))

    async def status(self, batch_id: str) -> BatchInfo:
        return self._info(await self.call("GET", f"{self.provider.base_url}/v1/messages/batches/{batch_id}"))

    async def cancel(self, batch_id: str) -> BatchInfo:
        url = f"{self.provider.base_url}/v1/messages/batches/{batch_id}/cancel"
        return self._info(await self.call("POST", url))

    async def results(self, batch_id: str, model: str, order: Sequence[str] = ()) -> list[BatchItemResult]:
        data = await self.call("GET", f"{self.provider.base_url}/v1/messages/batches/{batch_id}")
        url = data.get("results_url") if isinstance(data, Mapping) else None
        if not isinstance(url, str):
            raise self.malformed("ended batch without results_url", data)
        raw = await self.call("GET", url, raw=True)
        return [self._line(line, model) for line in jsonl_lines(raw)]

    def _line(self, line: Any, model: str) -> BatchItemResult:
        cid = line.get("custom_id") if isinstance(line, Mapping) else None
        result = line.get("result") if isinstance(line, Mapping) else None
        if isinstance(line, ProtocolError) or not isinstance(cid, str) or not isinstance(result, Mapping):
            return BatchItemResult(
                cid if isinstance(cid, str) else "", "errored", error=_as_protocol(line, self)
            )
        kind = result.get("type")
        if kind == "succeeded":
            try:
                return BatchItemResult(cid, "succeeded", self.parse(model, result.get("message")))
            except ProviderError as exc:
                return BatchItemResult(cid, "errored", error=exc)
        if kind in ("expired", "canceled"):
            return BatchItemResult(cid, kind, error=self.not_run(model, kind))
        return BatchItemResult(cid, "errored", error=self.item_error(model, result.get("error"), None))


class GeminiBatchWire(BatchWire):
    max_items = 10_000
    max_bytes = 18_000_000  # inlined requests: 20 MB documented

    _STATES: ClassVar[dict[str, BatchState]] = {
        "BATCH_STATE_UNSPECIFIED": "in_progress",
        "BATCH_STATE_PENDING": "in_progress",
        "BATCH_STATE_RUNNING": "in_progress",
        "BATCH_STATE_SUCCEEDED": "ended",
        "BATCH_STATE_EXPIRED": "ended",
        "BATCH_STATE_CANCELLED": "ended",
        "BATCH_STATE_FAILED": "failed",
    }

    def _info(self, data: Any) -> BatchInfo:
        if not isinstance(data, Mapping) or not isinstance(data.get("name"), str):
            raise self.malformed("batch operation", data)
        meta = _map(data.get("metadata"))
        status = meta.get("state", "BATCH_STATE_PENDING")
        state = self._STATES.get(status) if isinstance(status, str) else None
        if state is None:
            raise self.malformed(f"batch state {status!r}", data)
        stats = _map(meta.get("batchStats"))
        error = data.get("error")
        message = str(error.get("message")) if isinstance(error, Mapping) and error.get("message") else None
        if isinstance(error, Mapping) and state == "in_progress":
            state = "failed"

        def count(key: str) -> int | None:
            value = stats.get(key)
            return int(value) if isinstance(value, str | int) and str(value).isdigit() else None

        name = data["name"].removeprefix("batches/")
        total, done, failed = (
            count("requestCount"),
            count("successfulRequestCount"),
            count("failedRequestCount"),
        )
        return BatchInfo(name, state, status, total, done, failed, message)

    async def submit(self, model: str, items: Sequence[tuple[str, Request]], *, label: str) -> BatchInfo:
        requests = [{"request": self.body(model, r), "metadata": {"key": cid}} for cid, r in items]
        name = model if model.startswith(("models/", "tunedModels/")) else f"models/{model}"
        body = {"batch": {"display_name": label, "input_config": {"requests": {"requests": requests}}}}
        url = f"{self.provider.base_url}/{name}:batchGenerateContent"
        return self._info(await self.call("POST", url, body=body))

    async def status(self, batch_id: str) -> BatchInfo:
        return self._info(await self.call("GET", f"{self.provider.base_url}/batches/{batch_id}"))

    async def cancel(self, batch_id: str) -> BatchInfo:
        await self.call("POST", f"{self.provider.base_url}/batches/{batch_id}:cancel")
        return await self.status(batch_id)

    async def find(self, label: str) -> BatchInfo | None:
        data = await self.call("GET", f"{self.provider.base_url}/batches?pageSize=100")
        rows = _map(data).get("operations") or _map(data).get("batches") or []
        for row in rows:
            meta = _map(_map(row).get("metadata"))
            if label in (meta.get("displayName"), meta.get("display_name")):
                return self._info(row)
        return None

    async def results(self, batch_id: str, model: str, order: Sequence[str] = ()) -> list[BatchItemResult]:
        data = await self.call("GET", f"{self.provider.base_url}/batches/{batch_id}")
        holder = data.get("response") if isinstance(data, Mapping) else None
        if not isinstance(holder, Mapping):
            meta = data.get("metadata") if isinstance(data, Mapping) else None
            holder = meta.get("output") if isinstance(meta, Mapping) else None
        inlined = holder.get("inlinedResponses") if isinstance(holder, Mapping) else None
        if isinstance(inlined, Mapping):
            inlined = inlined.get("inlinedResponses")
        if not isinstance(inlined, list):
            meta = data.get("metadata") if isinstance(data, Mapping) else None
            state = meta.get("state") if isinstance(meta, Mapping) else None
            if state in ("BATCH_STATE_EXPIRED", "BATCH_STATE_CANCELLED"):
                # Ended before answering anything: no output at all.
                outcome: Literal["expired", "canceled"] = (
                    "expired" if state == "BATCH_STATE_EXPIRED" else "canceled"
                )
                return [BatchItemResult(cid, outcome, error=self.not_run(model, outcome)) for cid in order]
            raise self.malformed("batch output without inlinedResponses", data)
        # Inlined responses come in input order and may omit the metadata key: the
        # submitted order (``order``, persisted by the runner) maps them back.
        out: list[BatchItemResult] = []
        for i, entry in enumerate(inlined):
            meta = entry.get("metadata") if isinstance(entry, Mapping) else None
            key = meta.get("key") if isinstance(meta, Mapping) else None
            cid = key if isinstance(key, str) else order[i] if i < len(order) else ""
            if not isinstance(entry, Mapping):
                out.append(BatchItemResult(cid, "errored", error=_as_protocol(entry, self)))
            elif isinstance(entry.get("response"), Mapping):
                try:
                    out.append(BatchItemResult(cid, "succeeded", self.parse(model, entry["response"])))
                except ProviderError as exc:
                    out.append(BatchItemResult(cid, "errored", error=exc))
            else:
                error = entry.get("error")
                status = _int(error.get("code")) if isinstance(error, Mapping) else None
                out.append(
                    BatchItemResult(cid, "errored", error=self.item_error(model, {"error": error}, status))
                )
        return out


def _as_protocol(line: Any, wire: BatchWire) -> ProtocolError:
    return line if isinstance(line, ProtocolError) else wire.malformed("batch result line", line)
