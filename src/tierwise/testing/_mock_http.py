"""HTTP/1.1 for the mock LLM server: request parsing, response framing, one connection.

A reply is a list of operations (``_Op``): bytes to write, a float to sleep (seconds)
or a ``_Signal``. ``_Connection`` answers replies that need no waiting inside
``data_received``, without creating a task; only replies that sleep or hang get one.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import logging
import socket
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Protocol

# The server's public module name, so log records keep the logger name users filter on.
_log = logging.getLogger("tierwise.testing.mock_server")

_MAX_HEAD = 64 * 1024
_MAX_BODY = 32 * 1024 * 1024
_MAX_PENDING = 1024 * 1024  # buffered pipelined input before we stop reading

_dumps_str = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def _dumps(obj: Any) -> bytes:
    return _dumps_str(obj).encode()


class _Signal(enum.Enum):
    HANG = "hang"  # write nothing more; wait until the connection closes
    RESET = "reset"  # abort with a TCP RST
    CLOSE = "close"  # flush and close (FIN)


# A reply is a list of operations: bytes to write, floats to sleep (seconds), or a signal.
_Op = bytes | float | _Signal

_STATUS_LINES: dict[int, bytes] = {}
_EXTRA_REASONS = {529: "Site Overloaded"}


def _status_line(status: int) -> bytes:
    line = _STATUS_LINES.get(status)
    if line is None:
        try:
            reason = HTTPStatus(status).phrase
        except ValueError:
            reason = _EXTRA_REASONS.get(status, "Unknown")
        line = _STATUS_LINES[status] = f"HTTP/1.1 {status} {reason}\r\n".encode()
    return line


_JSON = b"application/json"
_SSE = b"text/event-stream; charset=utf-8"


def _head(
    status: int, ctype: bytes, length: int | None, headers: Sequence[tuple[str, str]], close: bool
) -> bytes:
    """Status line and headers; ``length=None`` means a chunked body."""
    parts = [_status_line(status), b"content-type: ", ctype, b"\r\n"]
    if length is None:
        parts.append(b"transfer-encoding: chunked\r\ncache-control: no-cache\r\n")
    else:
        parts.append(b"content-length: %d\r\n" % length)
    for name, value in headers:
        parts.append(f"{name}: {value}\r\n".encode("latin-1"))
    parts.append(b"connection: close\r\n\r\n" if close else b"\r\n")
    return b"".join(parts)


def _frame(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


_LAST_CHUNK = b"0\r\n\r\n"


def _json_reply(status: int, body: bytes, headers: Sequence[tuple[str, str]], close: bool) -> list[_Op]:
    return [_head(status, _JSON, len(body), headers, close) + body]


def _paced(head: bytes, events: Sequence[bytes], gap: float, npre: int = 0) -> list[_Op]:
    """A chunked body: ``head`` with the first ``npre`` events in one write, then each
    later event as its own write after a ``gap``-second pause (no last chunk)."""
    ops: list[_Op] = [head + b"".join(_frame(e) for e in events[:npre])]
    for event in events[npre:]:
        ops.append(gap)
        ops.append(_frame(event))
    return ops


def _linger_reset(transport: asyncio.Transport) -> None:
    """Close with SO_LINGER 0 so the peer sees a RST (ECONNRESET), not a clean FIN."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


class _Host(Protocol):
    """What a connection needs from its server."""

    _conns: set[_Connection]
    _tasks: set[asyncio.Task[None]]

    def _dispatch(
        self, method: str, target: str, headers: dict[str, str], body: bytes, close: bool
    ) -> list[_Op]: ...


class _Connection(asyncio.Protocol):
    """One client connection: parses pipelined HTTP/1.1 requests and runs replies in order."""

    def __init__(self, server: _Host) -> None:
        self._server = server
        self._transport: asyncio.Transport | None = None
        self._buf = bytearray()
        self._busy = False
        self._closed = False
        self._continued = False
        self._read_paused = False
        self._write_paused = False
        self._drain_waiter: asyncio.Future[None] | None = None
        self._closed_waiter: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None

    # -- asyncio callbacks ---------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._server._conns.add(self)

    def data_received(self, data: bytes) -> None:
        self._buf += data
        if self._busy:
            if len(self._buf) > _MAX_PENDING and self._transport is not None and not self._read_paused:
                self._read_paused = True
                self._transport.pause_reading()
            return
        self._process()

    def eof_received(self) -> bool:
        # The client is gone (or half-closed): stop; a hanging reply ends here too.
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._server._conns.discard(self)
        for waiter in (self._drain_waiter, self._closed_waiter):
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
        task = self._task
        if task is not None and not task.done() and task is not asyncio.current_task():
            task.cancel()

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- request loop ----------------------------------------------------------

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    def _process(self) -> None:
        transport = self._transport
        assert transport is not None
        while not self._closed and not self._busy:
            parsed = self._parse()
            if parsed is None:
                return
            method, target, headers, body, keep_alive = parsed
            try:
                ops = self._server._dispatch(method, target, headers, body, not keep_alive)
            except Exception as exc:
                # A bug in a reply callable must reach the test as a visible 500 (and the
                # log), not as asyncio's "data_received() failed" and a dropped socket.
                _log.exception("MockLLMServer failed to handle %s %s", method, target)
                ops = _json_reply(
                    500, _dumps({"error": {"message": f"mock server error: {exc!r}"}}), (), True
                )
                keep_alive = False
            if any(type(op) is float or op is _Signal.HANG for op in ops):
                self._busy = True
                task = asyncio.get_running_loop().create_task(self._run(ops, keep_alive))
                self._task = task
                self._server._tasks.add(task)
                task.add_done_callback(self._server._tasks.discard)
                return
            for op in ops:
                if type(op) is bytes:
                    transport.write(op)
                elif op is _Signal.RESET:
                    _linger_reset(transport)
                    return
                else:  # CLOSE
                    transport.close()
                    return
            if not keep_alive:
                transport.close()
                return

    async def _run(self, ops: list[_Op], keep_alive: bool) -> None:
        transport = self._transport
        assert transport is not None
        for op in ops:
            if self._closed:
                return
            if type(op) is bytes:
                transport.write(op)
                if self._write_paused:
                    await self._drain()
            elif type(op) is float:
                await asyncio.sleep(op)
            elif op is _Signal.HANG:
                loop = asyncio.get_running_loop()
                self._closed_waiter = loop.create_future()
                await self._closed_waiter
                return
            elif op is _Signal.RESET:
                _linger_reset(transport)
                return
            else:
                transport.close()
                return
        if self._closed:
            return
        if not keep_alive:
            transport.close()
            return
        self._busy = False
        self._task = None
        if self._read_paused:
            self._read_paused = False
            transport.resume_reading()
        self._process()

    async def _drain(self) -> None:
        if self._closed or not self._write_paused:
            return
        self._drain_waiter = asyncio.get_running_loop().create_future()
        await self._drain_waiter

    def _fail(self, status: int, message: str) -> None:
        body = _dumps({"error": {"message": message, "type": "invalid_request_error", "code": None}})
        assert self._transport is not None
        self._transport.write(_head(status, _JSON, len(body), (), True) + body)
        self._transport.close()
        self._closed = True

    def _parse(self) -> tuple[str, str, dict[str, str], bytes, bool] | None:
        """One complete request from the buffer, or ``None`` (need more data / failed)."""
        buf = self._buf
        end = buf.find(b"\r\n\r\n")
        if end < 0 or end > _MAX_HEAD:
            if end > _MAX_HEAD or len(buf) > _MAX_HEAD:
                self._fail(431, "request headers too large")
            return None
        lines = buf[:end].decode("latin-1").split("\r\n")
        try:
            method, target, version = lines[0].split(" ")
        except ValueError:
            self._fail(400, "malformed request line")
            return None
        if not version.startswith("HTTP/1.") or not target:
            self._fail(400, "unsupported HTTP version")
            return None
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep or not name or name[-1] in " \t":
                self._fail(400, "malformed header line")
                return None
            name = name.lower()
            value = value.strip()
            old = headers.get(name)
            headers[name] = value if old is None else f"{old}, {value}"
        start = end + 4
        te = headers.get("transfer-encoding")
        if te is not None:
            if te.lower().rsplit(",", 1)[-1].strip() != "chunked":
                self._fail(400, "unsupported transfer-encoding")
                return None
            try:
                result = _parse_chunked(buf, start)
            except ValueError as exc:
                self._fail(400 if "size" not in str(exc) else 413, str(exc))
                return None
            if result is None:
                self._maybe_continue(headers)
                return None
            body, consumed = result
        else:
            cl = headers.get("content-length")
            if cl is None:
                body, consumed = b"", start
            else:
                if not cl.isdigit():
                    self._fail(400, "invalid content-length")
                    return None
                n = int(cl)
                if n > _MAX_BODY:
                    self._fail(413, "request body too large")
                    return None
                if len(buf) < start + n:
                    self._maybe_continue(headers)
                    return None
                body, consumed = bytes(buf[start : start + n]), start + n
        del buf[:consumed]
        self._continued = False
        connection = headers.get("connection", "").lower()
        # HTTP/1.1 is persistent unless told otherwise; HTTP/1.0 only when asked.
        keep_alive = "close" not in connection if version == "HTTP/1.1" else "keep-alive" in connection
        return method, target, headers, body, keep_alive

    def _maybe_continue(self, headers: Mapping[str, str]) -> None:
        # curl sends "Expect: 100-continue" for bodies over 1 KiB and waits for this.
        if not self._continued and headers.get("expect", "").lower() == "100-continue":
            self._continued = True
            assert self._transport is not None
            self._transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")


def _parse_chunked(buf: bytearray, pos: int) -> tuple[bytes, int] | None:
    out = bytearray()
    while True:
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            return None
        try:
            size = int(bytes(buf[pos:eol]).split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise ValueError("invalid chunk header") from None
        pos = eol + 2
        if size == 0:
            while True:  # optional trailers, then a blank line
                eol = buf.find(b"\r\n", pos)
                if eol < 0:
                    return None
                if eol == pos:
                    return bytes(out), pos + 2
                pos = eol + 2
        if len(out) + size > _MAX_BODY:
            raise ValueError("request body size too large")
        if len(buf) < pos + size + 2:
            return None
        if buf[pos + size : pos + size + 2] != b"\r\n":
            raise ValueError("invalid chunk framing")
        out += buf[pos : pos + size]
        pos += size + 2


# --------------------------------------------------------------------------- server


# --------------------------------------------------------------------------- scripted replies

_FRAMING_HEADERS = frozenset(("content-length", "transfer-encoding", "connection", "content-type"))


@dataclass(slots=True)
class _Replay:
    """One raw scripted response (``MockLLMServer.replay``)."""

    status: int
    headers: list[tuple[str, str]]
    ctype: bytes
    chunks: list[bytes]
    delay: float

    @classmethod
    def build(
        cls, status: int, headers: Mapping[str, str], chunks: Sequence[bytes], chunk_delay_ms: float
    ) -> _Replay:
        hdrs = [(k.lower(), v) for k, v in headers.items()]
        ctype = next((v for k, v in hdrs if k == "content-type"), "application/json")
        return cls(
            status,
            [(k, v) for k, v in hdrs if k not in _FRAMING_HEADERS],
            ctype.encode("latin-1"),
            [bytes(c) for c in chunks],
            chunk_delay_ms / 1000.0,
        )

    def ops(self, close: bool) -> list[_Op]:
        chunked = len(self.chunks) > 1 or self.ctype.startswith(b"text/event-stream")
        if not chunked:
            body = b"".join(self.chunks)
            return [_head(self.status, self.ctype, len(body), self.headers, close) + body]
        # A pause (at least one loop turn) between writes so chunks tend to arrive as
        # separate reads, exercising the client's boundary handling.
        head = _head(self.status, self.ctype, None, self.headers, close)
        ops = _paced(head, [c for c in self.chunks if c], self.delay)
        ops.append(_LAST_CHUNK)
        return ops
