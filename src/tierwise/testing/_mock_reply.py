"""What one model request gets back: the answer, the rate-limit window and the
scripted or drawn fault, turned into the connection's write operations (``_Op``)."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from typing import Any

from ._mock_fidelity import choices_of, structured_text
from ._mock_http import _JSON, _LAST_CHUNK, _SSE, _frame, _head, _json_reply, _Op, _paced, _Signal
from ._mock_model import (
    _CHARS_PER_TOKEN,
    MockRequest,
    _last_user_text,
    _max_tokens,
    _ModelState,
    estimate_tokens,
)
from ._mock_wire import _GEMINI, _OPENAI, _Answer, _Wire
from ._mock_wire_core import _OpenAIWire


def _open(
    wire: _Wire,
    st: _ModelState,
    rec: MockRequest,
    sse: bool,
    close: bool,
    headers: list[tuple[str, str]],
    rid: str,
    usage: Callable[[], tuple[int, int]],
) -> tuple[list[_Op], str | None]:
    """What every model request goes through first: count it, draw its fault, apply the
    rate-limit window (adding to ``headers``; ``usage()`` gives the (input, output)
    tokens it spends) and the latency. Returns the operations so far and the fault
    kind still to play out, or ``None`` when the operations are already the whole
    reply (an HTTP error, a hang, a reset before any byte)."""
    m = st.model
    stats = st.stats
    stats.requests += 1
    if rec.stream:
        stats.streamed += 1
    kind = st.next_fault()
    prompt_tokens: int | None = None
    if m.rate_limit_requests is not None or m.rate_limit_tokens is not None:
        prompt_tokens, output_tokens = usage()
        now = time.monotonic()
        if now - st.win_start >= 60.0:
            st.win_start, st.win_requests, st.win_tokens = now, 0, 0
        reset_s = max(0.001, 60.0 - (now - st.win_start))
        over = (m.rate_limit_requests is not None and st.win_requests >= m.rate_limit_requests) or (
            m.rate_limit_tokens is not None and st.win_tokens >= m.rate_limit_tokens
        )
        if over and m.enforce_rate_limits and kind == "ok":
            kind = "429"
            retry_after = reset_s
        else:
            st.win_requests += 1
            st.win_tokens += prompt_tokens + output_tokens
            retry_after = m.retry_after_s
        headers += wire.ratelimit_headers(m, st, reset_s)
    else:
        retry_after = m.retry_after_s
    if kind == "ok":
        stats.ok += 1
    else:
        stats.faults[kind] = stats.faults.get(kind, 0) + 1

    ops: list[_Op] = []
    delay = m.latency_ms / 1000.0
    if m.jitter_ms:
        delay += st.jitter_rng.uniform(0.0, m.jitter_ms / 1000.0)
    if delay > 0:
        ops.append(delay)
    if kind == "hang":
        ops.append(_Signal.HANG)
        return ops, None
    if kind == "reset" and not sse:
        ops.append(_Signal.RESET)
        return ops, None
    if kind == "context":
        tokens = prompt_tokens if prompt_tokens is not None else estimate_tokens(rec.prompt)
        ops += _json_reply(400, wire.context_error(rec.model or "", tokens, request_id=rid), headers, close)
        return ops, None
    if kind[0].isdigit():
        status = int(kind)
        if status == 429:
            headers.append(("retry-after", str(math.ceil(retry_after))))
            headers.append(("retry-after-ms", str(round(retry_after * 1000))))
        body = wire.error_body(status, rec.model or "", None, retry_after=retry_after, request_id=rid)
        ops += _json_reply(status, body, headers, close)
        return ops, None
    return ops, kind


def _json_body(kind: str, body: bytes, headers: list[tuple[str, str]], close: bool) -> list[_Op]:
    """A whole JSON reply under fault ``kind`` (``ok``, ``malformed``: half a body;
    ``truncate``/``stall``: the whole body promised, half delivered, then close or hang)."""
    if kind == "ok":
        return _json_reply(200, body, headers, close)
    if kind == "malformed":
        return _json_reply(200, body[: len(body) // 2], headers, close)
    return [
        _head(200, _JSON, len(body), headers, close) + body[: len(body) // 2],
        _Signal.CLOSE if kind == "truncate" else _Signal.HANG,
    ]


def _respond(
    wire: _Wire,
    st: _ModelState,
    rec: MockRequest,
    data: dict[str, Any],
    sse: bool,
    close: bool,
    headers: list[tuple[str, str]],
    rid: str,
    seq: int,
) -> list[_Op]:
    """The reply to request number ``seq`` for the model of ``st``: counts it, draws its
    fault, applies the rate-limit window (adding to ``headers``) and frames the answer,
    an error or a broken stream."""
    m = st.model
    answer: _Answer | None = None

    def usage() -> tuple[int, int]:
        nonlocal answer
        answer = _answer(st, rec, data, wire, seq)
        return answer.input_tokens, answer.output_tokens

    ops, kind = _open(wire, st, rec, sse, close, headers, rid, usage)
    if kind is None:
        return ops
    if answer is None:
        answer = _answer(st, rec, data, wire, seq)
    if kind == "inband_error" and not sse:
        ops += _json_reply(
            200,
            wire.error_body(500 if isinstance(wire, _OpenAIWire) else 529, answer.model, request_id=rid),
            headers,
            close,
        )
        return ops
    if not sse:
        # Gemini's streamGenerateContent without alt=sse answers one JSON array.
        body = _GEMINI.reply_array(answer) if wire is _GEMINI and rec.stream else wire.reply_json(answer)
        return ops + _json_body(kind, body, headers, close)

    pre, content, tail = wire.reply_stream(answer, data)
    n = min(m.fault_after_chunks, len(content))
    events: list[bytes]
    end: _Op = _LAST_CHUNK
    if kind == "ok":
        events = pre + content + tail
    elif kind == "malformed":
        events = pre + content[:n] + [wire.malformed_event(answer)] + content[n:] + tail
    elif kind == "inband_error":
        events = [*pre, *content[:n], wire.inband_error()]
    else:  # truncate / reset / stall
        events = pre + content[:n]
        end = _LAST_CHUNK if kind == "truncate" else _Signal.RESET if kind == "reset" else _Signal.HANG
    head = _head(200, _SSE, None, headers, close)
    gap = m.stream_chunk_delay_ms / 1000.0
    if gap <= 0:
        ops.append(head + b"".join(_frame(e) for e in events) + (end if isinstance(end, bytes) else b""))
    else:
        # Preamble goes out with the headers; each later event is its own write after a pause.
        ops += _paced(head, events, gap, len(pre))
        if isinstance(end, bytes):
            ops.append(end)
    if not isinstance(end, bytes):
        ops.append(end)
    return ops


def _answer(st: _ModelState, rec: MockRequest, data: dict[str, Any], wire: _Wire, seq: int) -> _Answer:
    """The model's answer to ``rec``: its text (cut at the request's max tokens) and token counts."""
    m = st.model
    model = rec.model or ""
    tools = m._tools
    reply = m.reply
    if callable(reply):
        text = reply(rec)
        if not isinstance(text, str):
            raise TypeError(f"MockModel.reply callable returned {type(text).__name__}, not str")
    elif reply is not None:
        text = reply
    elif tools:
        text = ""
    else:
        said = " ".join(_last_user_text(wire.name, data).split())
        text = f"Mock reply from {model}: {said[:160] or '(empty prompt)'}"
        structured = structured_text(wire.name, data, said, invalid=m.invalid_json)
        if structured is not None:
            text = structured
    if m.output_tokens is not None:
        visible = m.output_tokens
    else:
        visible = estimate_tokens(text) + sum(estimate_tokens(n + json.dumps(a)) for n, a in tools)
    finish = m.finish
    cap = _max_tokens(wire.name, data)
    if cap is not None and visible > cap and not tools:
        text = text[: cap * _CHARS_PER_TOKEN]
        visible = cap
        finish = "length"
    in_tokens = m.input_tokens if m.input_tokens is not None else max(1, estimate_tokens(rec.prompt))
    return _Answer(
        model=model,
        text=text,
        tools=tools,
        input_tokens=in_tokens,
        output_tokens=visible + m.reasoning_tokens,
        cached=min(m.cached_tokens, in_tokens),
        reasoning=m.reasoning_tokens,
        finish=finish,
        seq=seq,
        created=int(time.time()),
        chunk_chars=m.tokens_per_chunk * _CHARS_PER_TOKEN,
        n=choices_of(data) if wire is _OPENAI else 1,
        thinking=m.thinking or "",
        opaque=wire.name != "responses" or "reasoning.encrypted_content" in (data.get("include") or ()),
    )


def _respond_embeddings(
    wire: _Wire,
    st: _ModelState,
    rec: MockRequest,
    data: dict[str, Any],
    texts: list[str],
    vectors: Callable[[], list[list[float]]],
    close: bool,
    headers: list[tuple[str, str]],
    rid: str,
) -> list[_Op]:
    """The reply to an embeddings request: the same faults, latency and rate-limit
    window as a chat request (a JSON reply, never a stream), then the provider's
    embeddings body. ``vectors()`` is only called when the reply needs them."""
    m = st.model
    tokens = m.input_tokens if m.input_tokens is not None else sum(max(1, estimate_tokens(t)) for t in texts)
    ops, kind = _open(wire, st, rec, False, close, headers, rid, lambda: (tokens, 0))
    if kind is None:
        return ops
    if kind == "inband_error":
        body = wire.error_body(500 if wire is _OPENAI else 503, rec.model or "", request_id=rid)
        return ops + _json_reply(200, body, headers, close)
    body = wire.embeddings_json(rec.model or "", vectors(), tokens, data)
    return ops + _json_body(kind, body, headers, close)
