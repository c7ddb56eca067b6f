"""Batch processing: many requests, bounded concurrency, nothing paid for is lost.

``run_batch`` (``orch.batch``) sends every item through the orchestrator with at
most ``concurrency`` in flight, returns results in input order, and captures each
item's error instead of stopping the rest — one bad item must not cost you the
other 9,999.

Resumability: with ``output=path`` every finished item is appended to a JSONL file
as soon as it completes (and flushed), so a crash loses at most the requests in
flight. Running again with the same ``output`` reads the file, skips the items
that already succeeded (their answers are loaded back, not re-bought), and retries
only the failed and missing ones. Records are matched by input index and a hash of
the prompt, so a changed input file is detected instead of silently mixing
answers.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import anyio

from .._serde import response_from_dict, response_to_dict
from ..errors import TierwiseError, redact
from ..types import Request, Response

if TYPE_CHECKING:
    from ..orchestrator import Orchestrator

__all__ = ["BatchProgress", "BatchResult", "render_items", "run_batch"]


@dataclass(slots=True)
class BatchResult:
    """One item's outcome. Exactly one of ``response`` and ``error`` is set."""

    index: int
    prompt: str
    response: Response | None = None
    error: str | None = None
    error_type: str | None = None
    resumed: bool = False

    @property
    def ok(self) -> bool:
        return self.response is not None


@dataclass(slots=True)
class BatchProgress:
    """Passed to the progress callback after every item."""

    done: int
    total: int
    failed: int
    resumed: int
    cost_usd: float
    unknown_cost: int
    elapsed_s: float


def render_items(items: Sequence[Any], template: str | None) -> list[Request]:
    """Turn batch items into requests.

    Items may be ``Request`` objects, strings, or dicts. With a ``template``, a
    string item fills ``{item}`` and a dict item fills its own keys (and
    ``{item}`` with the whole dict); without one, a string is the prompt and a dict
    needs a ``prompt`` key (optional ``system`` and ``metadata``).
    """
    out: list[Request] = []
    for i, item in enumerate(items):
        if isinstance(item, Request):
            out.append(item)
            continue
        if template is not None:
            fields: dict[str, Any] = {"item": item}
            if isinstance(item, Mapping):
                fields.update(item)
            try:
                prompt = template.format_map(fields)
            except (KeyError, IndexError) as exc:
                raise ValueError(f"item {i}: template field {exc} is not in the item") from None
            out.append(Request.from_prompt(prompt))
        elif isinstance(item, str):
            out.append(Request.from_prompt(item))
        elif isinstance(item, Mapping) and isinstance(item.get("prompt"), str):
            req = Request.from_prompt(item["prompt"], system=item.get("system"))
            meta = item.get("metadata")
            if isinstance(meta, Mapping):
                req.metadata = dict(meta)
            out.append(req)
        else:
            raise ValueError(f"item {i}: expected a string, a Request, or a dict with 'prompt'")
    return out


def _fingerprint(request: Request) -> str:
    return hashlib.sha256(request.prompt_text.encode()).hexdigest()[:16]


def _load_done(path: Path, requests: Sequence[Request]) -> dict[int, BatchResult]:
    """Successful results already in ``path`` whose prompt still matches."""
    done: dict[int, BatchResult] = {}
    if not path.exists():
        return done
    with path.open("r", encoding="utf-8", errors="replace") as fh:
        for line in fh:
            try:
                rec = json.loads(line)
            except ValueError:
                continue  # a line cut by a crash: that item is simply redone
            if not isinstance(rec, dict) or not rec.get("ok"):
                continue
            index = rec.get("index")
            if not isinstance(index, int) or not 0 <= index < len(requests):
                continue
            if rec.get("prompt_sha") != _fingerprint(requests[index]):
                raise ValueError(
                    f"{path}: item {index} was answered for a different prompt; "
                    "use a new output file for a changed input"
                )
            try:
                response = response_from_dict(rec["response"])
            except (KeyError, TypeError, ValueError):
                continue
            done[index] = BatchResult(index, requests[index].prompt_text, response, resumed=True)
    return done


async def run_batch(
    orch: Orchestrator,
    items: Sequence[Any],
    template: str | None = None,
    *,
    concurrency: int = 8,
    strategy: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    progress: Callable[[BatchProgress], None] | None = None,
    output: str | os.PathLike[str] | None = None,
) -> list[BatchResult]:
    """Run every item; results in input order, errors captured per item."""
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    requests = render_items(items, template)
    total = len(requests)
    results: list[BatchResult | None] = [None] * total
    out_path = Path(output) if output is not None else None
    if out_path is not None:
        for index, result in _load_done(out_path, requests).items():
            results[index] = result
    resumed = sum(1 for r in results if r is not None)
    done, failed, unknown = resumed, 0, 0
    cost = sum(r.response.cost_usd or 0.0 for r in results if r is not None and r.response is not None)
    start = time.perf_counter()
    sink: TextIO | None = out_path.open("a", encoding="utf-8") if out_path is not None else None
    limiter = anyio.CapacityLimiter(concurrency)
    secrets = [getattr(p, "_api_key", None) for p in orch.providers]

    def report() -> None:
        if progress is not None:
            progress(
                BatchProgress(
                    done,
                    total,
                    failed,
                    resumed,
                    cost,
                    unknown,
                    time.perf_counter() - start,
                )
            )

    async def one(index: int, request: Request) -> None:
        nonlocal done, failed, unknown, cost
        async with limiter:
            try:
                response = await orch.run(request, strategy=strategy, metadata=metadata)
            except TierwiseError as exc:
                result = BatchResult(
                    index, request.prompt_text, error=redact(str(exc), secrets), error_type=type(exc).__name__
                )
                failed += 1
            else:
                result = BatchResult(index, request.prompt_text, response)
                if response.cost_usd is None:
                    unknown += 1
                else:
                    cost += response.cost_usd
        results[index] = result
        done += 1
        if sink is not None:
            record: dict[str, Any] = {
                "index": index,
                "prompt_sha": _fingerprint(request),
                "ok": result.ok,
            }
            if result.response is not None:
                record["response"] = response_to_dict(result.response)
            else:
                record["error"] = result.error
                record["error_type"] = result.error_type
            sink.write(json.dumps(record, separators=(",", ":")) + "\n")
            sink.flush()
        report()

    try:
        if resumed:
            report()
        async with anyio.create_task_group() as tg:
            for index, request in enumerate(requests):
                if results[index] is None:
                    tg.start_soon(one, index, request)
    finally:
        if sink is not None:
            sink.close()
    return [r for r in results if r is not None]
