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
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import anyio

from .._serde import response_from_dict, response_to_dict
from ..errors import TierwiseError, did_you_mean, redact
from ..types import _REQUEST_PARAMS, Request, Response

if TYPE_CHECKING:
    from ..orchestrator import Orchestrator

__all__ = ["BatchProgress", "BatchResult", "InvalidItem", "render_items", "run_batch"]


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
    #: Provider batch mode: items in batches submitted and not yet collected.
    submitted: int = 0
    #: Provider batch mode: what the answered items would have cost in real-time mode.
    realtime_cost_usd: float | None = None


@dataclass(frozen=True, slots=True)
class InvalidItem:
    """An input item that cannot become a request (a malformed JSONL line, an
    unknown key): recorded as that item's error, and nothing is sent for it."""

    message: str


# Keys a dict item may carry besides its prompt: the request parameters of
# ``Request.from_prompt`` (applied to the item's request), ``system`` and ``metadata``.
_ITEM_KEYS = ("prompt", "system", "metadata", *_REQUEST_PARAMS)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _bad_value(key: str, value: Any) -> str | None:
    """Why an item's parameter value is unusable, or None. JSONL values are
    untyped; ``"max_tokens": "100"`` or ``-1`` would otherwise be sent and
    rejected by the provider item after item (or coerced into something else)."""
    if value is None:
        return None
    if key in ("max_tokens", "seed", "thinking_budget"):
        if not isinstance(value, int) or isinstance(value, bool) or (key != "seed" and value < 1):
            return "must be a whole number" + ("" if key == "seed" else " of at least 1")
    elif key == "temperature":
        if not _is_number(value) or value < 0:
            return "must be a number of at least 0"
    elif key == "top_p":
        if not _is_number(value) or not 0 < value <= 1:
            return "must be a number in (0, 1]"
    elif key == "stop":
        if not isinstance(value, str) and not (
            isinstance(value, list) and all(isinstance(v, str) for v in value)
        ):
            return "must be a string or a list of strings"
    elif key in ("response_format", "extra_body") and not isinstance(value, Mapping):
        return "must be an object"
    return None


def _item_request(
    i: int, item: Mapping[str, Any], prompt: str, allowed: Sequence[str]
) -> Request | InvalidItem:
    unknown = [k for k in item if k not in allowed]
    if unknown:
        key = str(unknown[0])
        hint = did_you_mean(key, _ITEM_KEYS)
        hint = f"; {hint}" if hint else f"; expected some of: {', '.join(_ITEM_KEYS)}"
        return InvalidItem(f"item {i}: unknown key {key!r}{hint}")
    params = {k: v for k, v in item.items() if k in _REQUEST_PARAMS and k != "metadata"}
    for key, value in params.items():
        problem = _bad_value(key, value)
        if problem:
            return InvalidItem(f"item {i}: {key!r} {problem}")
    system = item.get("system")
    if system is not None and not isinstance(system, str):
        return InvalidItem(f"item {i}: 'system' must be a string")
    try:
        req = Request.from_prompt(prompt, system=system, **params)
    except (TypeError, ValueError) as exc:
        return InvalidItem(f"item {i}: {exc}")
    meta = item.get("metadata")
    if meta is not None:
        if not isinstance(meta, Mapping):
            return InvalidItem(f"item {i}: 'metadata' must be a table of key = value")
        req.metadata = dict(meta)
    return req


def render_items(items: Sequence[Any], template: str | None) -> list[Request | InvalidItem]:
    """Turn batch items into requests (or ``InvalidItem`` s, which are not sent).

    Items may be ``Request`` objects, strings, or dicts. With a ``template``, a
    string item fills ``{item}`` and a dict item fills its own keys (and
    ``{item}`` with the whole dict); without one, a string is the prompt and a dict
    needs a ``prompt`` key. A dict may also carry ``system``, ``metadata`` and the
    request parameters (``max_tokens``, ``temperature``, ``top_p``, ``stop``,
    ``seed``, ``response_format``, …), which apply to that item; any other key is
    an error naming it (a typo like ``max_tokns`` must not be silently ignored).
    """
    out: list[Request | InvalidItem] = []
    for i, item in enumerate(items):
        if isinstance(item, Request | InvalidItem):
            out.append(item)
            continue
        if template is not None:
            fields: dict[str, Any] = {"item": item}
            if isinstance(item, Mapping):
                fields.update(item)
            try:
                prompt = template.format_map(fields)
            except (KeyError, IndexError) as exc:
                out.append(InvalidItem(f"item {i}: template field {exc} is not in the item"))
                continue
            if isinstance(item, Mapping):
                # Template fields are the item's own keys; request parameters still apply.
                params = {k: v for k, v in item.items() if k in _ITEM_KEYS and k != "prompt"}
                out.append(_item_request(i, params, prompt, _ITEM_KEYS))
            else:
                out.append(Request.from_prompt(prompt))
        elif isinstance(item, str):
            out.append(Request.from_prompt(item))
        elif isinstance(item, Mapping) and isinstance(item.get("prompt"), str):
            out.append(_item_request(i, item, item["prompt"], _ITEM_KEYS))
        else:
            out.append(InvalidItem(f"item {i}: expected a string, a Request, or a dict with 'prompt'"))
    return out


def _fingerprint(request: Request) -> str:
    return hashlib.sha256(request.prompt_text.encode()).hexdigest()[:16]


def _load_done(path: Path, requests: Sequence[Request | InvalidItem]) -> dict[int, BatchResult]:
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
            request = requests[index]
            if isinstance(request, InvalidItem):
                continue
            if rec.get("prompt_sha") != _fingerprint(request):
                raise ValueError(
                    f"{path}: item {index} was answered for a different prompt; "
                    "use a new output file for a changed input"
                )
            try:
                response = response_from_dict(rec["response"])
            except (KeyError, TypeError, ValueError):
                continue
            done[index] = BatchResult(index, request.prompt_text, response, resumed=True)
    return done


def _in_input_order(path: Path) -> None:
    """Rewrite the output file sorted by item index (the last record of each
    index wins), atomically. Records are appended as items finish, so a crash
    loses nothing; this puts the finished file in input order, as promised."""
    records: dict[int, str] = {}
    tail: list[str] = []
    with path.open("r", encoding="utf-8", errors="replace") as fh:
        for line in fh:
            try:
                index = json.loads(line).get("index")
            except (ValueError, AttributeError):
                continue
            if isinstance(index, int):
                records[index] = line if line.endswith("\n") else line + "\n"
            else:
                tail.append(line)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        fh.writelines(records[i] for i in sorted(records))
    os.replace(tmp, path)


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

    async def one(index: int, request: Request | InvalidItem) -> None:
        nonlocal done, failed, unknown, cost
        async with limiter:
            try:
                if isinstance(request, InvalidItem):
                    raise _Invalid(request.message)
                response = await orch.run(request, strategy=strategy, metadata=metadata)
            except (TierwiseError, _Invalid) as exc:
                text = "" if isinstance(request, InvalidItem) else request.prompt_text
                error_type = "InvalidItem" if isinstance(exc, _Invalid) else type(exc).__name__
                result = BatchResult(index, text, error=redact(str(exc), secrets), error_type=error_type)
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
                "prompt_sha": None if isinstance(request, InvalidItem) else _fingerprint(request),
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
            if out_path is not None:
                _in_input_order(out_path)
    return [r for r in results if r is not None]


class _Invalid(Exception):
    """An ``InvalidItem`` on its way to its result row."""
