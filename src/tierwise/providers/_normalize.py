"""Checking what leaves a provider: the ``Response`` contract and embedding vectors.

The adapters fill their results from untyped JSON; these functions are the one
place where a buggy or hostile server's values are forced into the declared
types, for every adapter and both reply modes alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..types import Response
from ._accumulate import cost_amount, token_count

__all__ = ["check_embeddings", "embedding_inputs", "embedding_vector", "looks_like_sse", "normalize"]


def embedding_inputs(texts: Sequence[str]) -> list[str]:
    """The texts of an ``embed`` call as a list, ``TypeError`` for a bare string (a
    sequence of characters) or a non-string item, before anything is sent."""
    if isinstance(texts, str | bytes):
        raise TypeError("texts must be a sequence of strings, not a single string")
    batch = list(texts)
    for i, text in enumerate(batch):
        if not isinstance(text, str):
            raise TypeError(f"texts[{i}] must be a str, got {type(text).__name__}")
    return batch


def embedding_vector(value: Any, what: str) -> list[float]:
    """One embedding from a decoded reply: a non-empty list of finite numbers, as floats.

    Raises ``ValueError`` naming ``what`` (which the caller turns into a
    ``ProtocolError``): a base64 string (a server that ignored
    ``encoding_format``), ``null``, booleans or non-finite values are malformed.
    """
    if not isinstance(value, list) or not value:
        raise ValueError(f"{what} is not a non-empty list of numbers")
    out = [0.0] * len(value)
    for i, x in enumerate(value):
        if type(x) is float:
            if x - x != 0.0:  # inf or nan
                raise ValueError(f"{what}[{i}] is not finite")
            out[i] = x
        elif type(x) is int:
            out[i] = float(x)
        else:
            raise ValueError(f"{what}[{i}] is not a number ({type(x).__name__})")
    return out


def check_embeddings(vectors: list[list[float]], count: int) -> None:
    """``ValueError`` unless there are ``count`` vectors, all of one length."""
    if len(vectors) != count:
        raise ValueError(f"reply has {len(vectors)} embeddings for {count} input(s)")
    if len({len(v) for v in vectors}) > 1:
        raise ValueError("embeddings in one reply have different lengths")


_SSE_FIELDS = (b"data:", b"event:", b"id:", b"retry:", b":")


def looks_like_sse(content: bytes) -> bool:
    """Whether a body labelled JSON is really an event stream (or empty, which is a
    cut stream, retryable, rather than a JSON reply that will never parse)."""
    head = content.lstrip()[:6]
    return not head or head.startswith(_SSE_FIELDS)


_FINISH_REASONS = frozenset(("stop", "length", "tool_calls", "content_filter", "error"))
_SCALARS = (str, int, float, bool)


def normalize(response: Response, requested: str) -> None:
    """The ``Response`` contract, checked once where every adapter's reply (JSON, SSE,
    or a JSON body answering a stream request) leaves the provider.

    The adapters fill a ``Response`` from untyped JSON; a buggy or hostile server's
    ``"model": 42`` or ``"id": {...}`` would otherwise travel into metrics keys, audit
    records, cache keys and cost arithmetic. The rules, one place for all adapters:

    * ``model``: a non-empty string, else the *requested* model name (a number or
      object is no model name, and ``str({...})`` would be a metrics key nobody asked for);
    * ``text`` and ``reasoning``: strings (``None`` → ``""``, a scalar → ``str()``);
    * ``finish_reason``: one of the five, else ``"stop"``; ``raw_finish_reason`` a
      string or ``None``; ``request_id`` a string or ``None``;
    * usage: each count through ``token_count`` (negative, non-finite, huge, bool or
      non-number → 0; a float → its int), and the subsets capped by their totals;
      ``reported_cost_usd`` through ``cost_amount`` (finite and >= 0, else ``None``);
    * tool calls: ``id`` and ``name`` strings (a scalar → ``str()``; anything else →
      ``call_<i>`` / ``""``), ``arguments`` a dict.

    Called directly (no executor), a provider that reported its own cost sets
    ``cost_usd`` to it: the figure is known, so it is not left ``None``.
    """
    # Typed as str, but filled from untyped JSON: checked through Any.
    model: Any = response.model
    if not isinstance(model, str) or not model:
        response.model = requested
    response.text = _as_text(response.text)
    response.reasoning = _as_text(response.reasoning)
    if response.finish_reason not in _FINISH_REASONS:
        response.finish_reason = "stop"
    raw_finish: Any = response.raw_finish_reason
    if raw_finish is not None and not isinstance(raw_finish, str):
        response.raw_finish_reason = str(raw_finish) if isinstance(raw_finish, _SCALARS) else None
    rid: Any = response.request_id
    if rid is not None and not isinstance(rid, str):
        response.request_id = None
    u = response.usage
    u.input_tokens = token_count(u.input_tokens)
    u.output_tokens = token_count(u.output_tokens)
    u.cached_input_tokens = min(token_count(u.cached_input_tokens), u.input_tokens)
    u.cache_write_tokens = min(token_count(u.cache_write_tokens), u.input_tokens)
    u.reasoning_tokens = min(token_count(u.reasoning_tokens), u.output_tokens)
    u.reported_cost_usd = cost_amount(u.reported_cost_usd)
    for i, call in enumerate(response.tool_calls):
        cid: Any = call.id
        name: Any = call.name
        args: Any = call.arguments
        if not isinstance(cid, str):
            call.id = str(cid) if isinstance(cid, _SCALARS) else f"call_{i}"
        if not isinstance(name, str):
            call.name = str(name) if isinstance(name, _SCALARS) else ""
        if not isinstance(args, dict):
            call.arguments = {}
    if response.cost_usd is None and u.reported_cost_usd is not None:
        response.cost_usd = u.reported_cost_usd


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return str(value) if isinstance(value, _SCALARS) else ""
