"""Server-Sent Events decoding shared by every adapter.

One incremental decoder for all three wire formats, because the bugs live at chunk
boundaries (a CRLF split across two reads, a UTF-8 character split across two
reads, a last event with no blank line after it) and should be fixed once.

Follows the WHATWG event-stream rules that matter for LLM APIs: LF, CRLF and CR
line endings; ``:`` comment lines (OpenRouter keep-alives) are skipped; ``event:``
is optional; multi-line ``data:`` is joined with ``\\n``; one optional space after
the colon is stripped; an event is dispatched on a blank line, and ``close()``
dispatches a final event that was not followed by one.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass

__all__ = ["SSEDecoder", "SSEEvent"]


@dataclass(slots=True)
class SSEEvent:
    """One dispatched event. ``event`` is ``"message"`` when the stream named none."""

    event: str
    data: str
    id: str | None = None


class SSEDecoder:
    """Feed raw bytes in any chunking; get complete events out, in order."""

    __slots__ = ("_buf", "_data", "_decoder", "_event", "_id", "_skip_lf")

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._buf = ""
        self._skip_lf = False
        self._event: str | None = None
        self._data: list[str] = []
        self._id: str | None = None

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        text = self._decoder.decode(chunk)
        if not text:
            return []
        if self._skip_lf and text[0] == "\n":
            # The previous chunk ended in CR; this LF completes that CRLF.
            text = text[1:]
        self._skip_lf = text.endswith("\r")
        buf = self._buf + text if self._buf else text
        if "\r" in buf:
            buf = buf.replace("\r\n", "\n").replace("\r", "\n")
        if "\n" not in buf:
            self._buf = buf
            return []
        *lines, self._buf = buf.split("\n")
        out: list[SSEEvent] = []
        for line in lines:
            self._line(line, out)
        return out

    def close(self) -> list[SSEEvent]:
        """End of stream: flush a trailing line and a final undelimited event."""
        out: list[SSEEvent] = []
        tail = self._buf + self._decoder.decode(b"", final=True)
        self._buf = ""
        if tail:
            for line in tail.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
                self._line(line, out)
        self._dispatch(out)
        return out

    def _line(self, line: str, out: list[SSEEvent]) -> None:
        if not line:
            self._dispatch(out)
            return
        if line[0] == ":":
            return
        name, sep, value = line.partition(":")
        if sep and value[:1] == " ":
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self._id = value
        # "retry" and unknown fields are ignored, as the spec says.

    def _dispatch(self, out: list[SSEEvent]) -> None:
        if self._data:
            out.append(SSEEvent(self._event or "message", "\n".join(self._data), self._id))
        self._data = []
        self._event = None
