"""Provider batch APIs: the wire side, shared by the three adapters.

A provider batch is submitted once, polled until it ends, and its results are
collected per item, keyed by the caller's ``custom_id``. Each adapter has a
``BatchWire`` that knows its endpoints and formats (``_batch_openai``,
``_batch_anthropic``, ``_batch_gemini``); everything else (which items go where,
persistence, cost, budgets) lives in ``tierwise.strategies.provider_batch``.

Item bodies and replies go through the adapter's own ``_build_body`` and
``_parse_response``, so a batched item is parsed exactly as a real-time reply:
the same ``Response``, the same typed errors for malformed content.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import httpx

from ..errors import ProtocolError, ProviderError
from ..types import Request, Response

if TYPE_CHECKING:
    from .base import Provider

__all__ = [
    "BatchInfo",
    "BatchItemNotRun",
    "BatchItemResult",
    "BatchState",
    "BatchWire",
]

#: Normalized lifecycle of a provider batch. ``ended`` covers every terminal state in
#: which results can be collected (OpenAI ``completed``/``expired``/``cancelled``,
#: Anthropic ``ended``, Gemini ``SUCCEEDED``/``EXPIRED``/``CANCELLED``); ``failed`` is a
#: batch the provider rejected as a whole (OpenAI ``failed`` validation, Gemini ``FAILED``).
BatchState = Literal["in_progress", "ended", "failed"]

ItemOutcome = Literal["succeeded", "errored", "expired", "canceled"]


@dataclass(frozen=True, slots=True)
class BatchInfo:
    """What a poll says about one provider batch."""

    id: str
    state: BatchState
    #: The provider's own status word (``in_progress``, ``finalizing``, ``ended``, ...).
    status: str
    total: int | None = None
    done: int | None = None
    failed: int | None = None
    #: Why a ``failed`` batch failed, from the provider.
    message: str | None = None


class BatchItemNotRun(ProviderError):
    """A batched item the provider never ran: the batch expired or was canceled
    before reaching it. Retryable: nothing was charged for it."""

    def __init__(self, message: str, *, outcome: str, provider: str, model: str) -> None:
        super().__init__(message, provider=provider, model=model, retryable=True)
        self.outcome = outcome


@dataclass(slots=True)
class BatchItemResult:
    """One item's result. Exactly one of ``response`` and ``error`` is set."""

    custom_id: str
    outcome: ItemOutcome
    response: Response | None = None
    error: ProviderError | None = None


class BatchWire:
    """One provider's batch endpoints. Subclasses implement the four calls; the
    helpers here send them through the provider's client with its headers and
    map failures to the same typed errors as real-time calls."""

    #: Most items one provider batch may hold (the provider's documented limit).
    max_items: ClassVar[int] = 10_000
    #: Most bytes of item bodies one batch may carry (documented limit, with margin).
    max_bytes: ClassVar[int] = 100_000_000

    def __init__(self, provider: Provider) -> None:
        self.provider = provider

    # -- the four calls ------------------------------------------------------------

    async def submit(self, model: str, items: Sequence[tuple[str, Request]], *, label: str) -> BatchInfo:
        raise NotImplementedError

    async def status(self, batch_id: str) -> BatchInfo:
        raise NotImplementedError

    async def results(self, batch_id: str, model: str, order: Sequence[str] = ()) -> list[BatchItemResult]:
        """Every item's result of an ended batch. ``order`` is the submitted
        ``custom_id`` order, for formats that answer by position."""
        raise NotImplementedError

    async def cancel(self, batch_id: str) -> BatchInfo:
        raise NotImplementedError

    async def find(self, label: str) -> BatchInfo | None:
        """A recent batch submitted with ``label``, or ``None``. Closes the window of
        a crash inside ``submit`` (accepted by the provider, id never recorded) on
        the wires that can list batches by a caller's label (OpenAI ``metadata``,
        Gemini ``displayName``); Anthropic's batches carry no label, so ``None``."""
        return None

    # -- helpers -------------------------------------------------------------------

    def body(self, model: str, request: Request) -> dict[str, Any]:
        """The item's request body, exactly as a real-time call would send it."""
        return self.provider._build_body(model, request, False)

    def parse(self, model: str, data: Any) -> Response:
        """An item's reply, parsed as a real-time reply (typed errors included)."""
        from ._normalize import normalize
        from .base import MALFORMED

        try:
            response = self.provider._parse_response(model, data)
        except ProviderError:
            raise
        except MALFORMED as exc:
            raise self.provider._protocol_error(
                f"unexpected batch item shape ({type(exc).__name__}: {exc})", _short(data), model
            ) from None
        normalize(response, model)
        return response

    def item_error(self, model: str, data: Any, status: int | None) -> ProviderError:
        """The typed error for an item the provider answered with an error object."""
        p = self.provider
        info = p._read_error(data, status, "batch item failed")
        return p._make_error(info, model, status=status)

    def not_run(self, model: str, outcome: str) -> BatchItemNotRun:
        return BatchItemNotRun(
            f"batch item {outcome} before it ran", outcome=outcome, provider=self.provider.name, model=model
        )

    async def call(
        self,
        method: str,
        url: str,
        *,
        body: Any = None,
        content: bytes | None = None,
        content_type: str | None = None,
        what: str = "batch reply",
        raw: bool = False,
    ) -> Any:
        """One HTTP call of the batch protocol; JSON in and out unless ``raw``
        (then the reply bytes). Errors map exactly as for real-time calls."""
        p = self.provider
        client, target, _ = p._client_for(url)
        hdrs = httpx.Headers(p._headers)
        if content_type is not None:
            hdrs["content-type"] = content_type
        if body is not None:
            content = json.dumps(body, separators=(",", ":")).encode()
        try:
            reply = await client.request(method, target, content=content, headers=hdrs)
        except httpx.HTTPError as exc:
            raise p._transport_error(exc, "") from None
        if reply.status_code >= 400:
            raise p._http_error(reply.status_code, reply.headers, reply.content, "")
        if raw:
            return reply.content
        try:
            return json.loads(reply.content)
        except (ValueError, RecursionError):
            raise p._protocol_error(f"{what} is not valid JSON", reply.content, "") from None

    def malformed(self, what: str, data: Any) -> ProtocolError:
        return self.provider._protocol_error(f"unexpected {what}", _short(data), "")


def multipart(fields: dict[str, str], filename: str, payload: bytes) -> tuple[str, bytes]:
    """A ``multipart/form-data`` body with text ``fields`` and one file part.

    Written out here because the provider's client carries ``content-type:
    application/json`` as a default header, which httpx's own ``files=`` encoding
    would not override."""
    boundary = "tierwise-" + secrets.token_hex(12)
    parts: list[bytes] = []
    for name, value in fields.items():
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        )
    parts.append(
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
            "Content-Type: application/jsonl\r\n\r\n"
        ).encode()
        + payload
        + b"\r\n"
    )
    parts.append(f"--{boundary}--\r\n".encode())
    return f"multipart/form-data; boundary={boundary}", b"".join(parts)


def jsonl_lines(data: bytes) -> list[Any]:
    """Parse a JSONL payload; a line that is not JSON becomes a ``ProtocolError``
    entry in place (so one bad line types one item's error, not the batch's)."""
    out: list[Any] = []
    for line in data.splitlines():
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except (ValueError, RecursionError):
            out.append(ProtocolError(f"batch result line is not valid JSON: {line[:120]!r}"))
    return out


def _short(data: Any) -> str:
    try:
        text = json.dumps(data)
    except (TypeError, ValueError):
        text = repr(data)
    return text[:300]
