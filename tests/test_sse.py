"""The one SSE decoder all adapters share: correct for any chunk boundaries."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tierwise.providers._sse import SSEDecoder, SSEEvent

# Realistic streams in the three providers' shapes, with the awkward parts:
# CRLF line endings, comment lines, no `event:` lines, multi-byte UTF-8,
# multi-line data, and a last event with no blank line after it.
OPENROUTER = (
    b": OPENROUTER PROCESSING\n\n"
    b'data: {"choices":[{"delta":{"content":"H\xc3\xa9llo"}}]}\n\n'
    b": OPENROUTER PROCESSING\n\n"
    b'data: {"choices":[{"delta":{"content":" w\xf0\x9f\x8c\x8d"}}]}\n\n'
    b"data: [DONE]\n\n"
)
ANTHROPIC_CRLF = (
    b"event: message_start\r\n"
    b'data: {"type":"message_start"}\r\n\r\n'
    b"event: ping\r\n"
    b'data: {"type": "ping"}\r\n\r\n'
    b"event: content_block_delta\r\n"
    b'data: {"type":"content_block_delta","delta":{"text":"\xe6\x97\xa5\xe6\x9c\xac"}}\r\n\r\n'
    b"event: message_stop\r\n"
    b'data: {"type":"message_stop"}'  # no trailing blank line
)
MULTILINE_CR = b"id: 7\rdata: line one\rdata:line two\r\rdata: last\r"

EXPECTED = {
    OPENROUTER: [
        SSEEvent("message", '{"choices":[{"delta":{"content":"Héllo"}}]}'),
        SSEEvent("message", '{"choices":[{"delta":{"content":" w🌍"}}]}'),
        SSEEvent("message", "[DONE]"),
    ],
    ANTHROPIC_CRLF: [
        SSEEvent("message_start", '{"type":"message_start"}'),
        SSEEvent("ping", '{"type": "ping"}'),
        SSEEvent("content_block_delta", '{"type":"content_block_delta","delta":{"text":"日本"}}'),
        SSEEvent("message_stop", '{"type":"message_stop"}'),
    ],
    MULTILINE_CR: [
        SSEEvent("message", "line one\nline two", "7"),
        SSEEvent("message", "last", "7"),
    ],
}


def decode(chunks: list[bytes]) -> list[SSEEvent]:
    decoder = SSEDecoder()
    out: list[SSEEvent] = []
    for chunk in chunks:
        out.extend(decoder.feed(chunk))
    out.extend(decoder.close())
    return out


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces, last = [], 0
    for p in points:
        pieces.append(data[last:p])
        last = p
    pieces.append(data[last:])
    return pieces


def test_whole_streams_decode_as_expected() -> None:
    for stream, expected in EXPECTED.items():
        assert decode([stream]) == expected


def test_one_byte_at_a_time() -> None:
    for stream, expected in EXPECTED.items():
        assert decode([stream[i : i + 1] for i in range(len(stream))]) == expected


@settings(max_examples=300, deadline=None)
@given(
    stream=st.sampled_from(sorted(EXPECTED)),
    cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=40),
)
def test_any_chunk_boundaries_give_identical_events(stream: bytes, cuts: list[int]) -> None:
    assert decode(split_at(stream, cuts)) == EXPECTED[stream]


def test_crlf_split_between_chunks_is_one_line_end() -> None:
    # "data: a\r" | "\n\r\n": the CR/LF pair straddles the boundary and must not
    # produce an extra blank line (which would dispatch an empty event early).
    assert decode([b"data: a\r", b"\ndata: b\r\n\r\n"]) == [SSEEvent("message", "a\nb")]


def test_comment_only_and_empty_data_dispatch_nothing() -> None:
    assert decode([b": keep-alive\n\n: again\n\n"]) == []
    assert decode([b"event: ping\n\n"]) == []


def test_field_without_space_and_unknown_fields() -> None:
    assert decode([b"data:x\nretry: 10\nfoo: bar\n\n"]) == [SSEEvent("message", "x")]


def test_event_name_resets_after_dispatch() -> None:
    events = decode([b"event: error\ndata: 1\n\ndata: 2\n\n"])
    assert [e.event for e in events] == ["error", "message"]
