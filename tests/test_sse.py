"""The incremental SSE decoder: framing rules, and independence from how reads are cut."""

from __future__ import annotations

import pytest

from ollama_shim.errors import UpstreamProtocol
from ollama_shim.settings import Limits
from ollama_shim.sse import DEFAULT_MAX_LINE, SSEDecoder, SSEEvent


def decode(*reads: bytes) -> list[SSEEvent]:
    decoder = SSEDecoder()
    events: list[SSEEvent] = []
    for read in reads:
        events.extend(decoder.feed(read))
    return events + decoder.close()


def decode_cut_everywhere(data: bytes) -> list[list[SSEEvent]]:
    """The events for every two-read split of ``data``, plus one byte per read."""
    results = [decode(data[:offset], data[offset:]) for offset in range(len(data) + 1)]
    results.append(decode(*(data[i : i + 1] for i in range(len(data)))))
    return results


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"data: hello\n\n", [SSEEvent("hello")]),
        (b"data:hello\n\n", [SSEEvent("hello")]),
        (b"data:  two spaces\n\n", [SSEEvent(" two spaces")]),
        (b"data: a\ndata: b\n\n", [SSEEvent("a\nb")]),
        (b"event: error\ndata: {}\n\n", [SSEEvent("{}", "error")]),
        (b"event:error\ndata:x\n\ndata: y\n\n", [SSEEvent("x", "error"), SSEEvent("y")]),
        (b":\n\ndata: a\n\n", [SSEEvent("a")]),
        (b": OPENROUTER PROCESSING\n\ndata: a\n\n", [SSEEvent("a")]),
        (b"data: a\n: comment inside an event\ndata: b\n\n", [SSEEvent("a\nb")]),
        (b"data: a\r\n\r\ndata: b\r\rdata: c\n\n", [SSEEvent("a"), SSEEvent("b"), SSEEvent("c")]),
        (b"id: 7\nretry: 100\ndata: a\nunknown: x\n\n", [SSEEvent("a")]),
        (b"data\n\n", []),  # a field with no colon has an empty value
        (b"data:\n\n", []),  # empty data is not dispatched
        (b"data:\ndata:\n\n", [SSEEvent("\n")]),
        (b"event: ping\n\n", []),  # a name without data is not an event
        (b"event: error\n\ndata: after\n\n", [SSEEvent("after")]),  # the name does not leak
        (b"\xef\xbb\xbfdata: bom\n\n", [SSEEvent("bom")]),
        (b"data: [DONE]\n\n", [SSEEvent("[DONE]")]),
        ("data: line\u2028sep\u0085x\n\n".encode(), [SSEEvent("line\u2028sep\u0085x")]),
        (b"data: \xff bad\n\n", [SSEEvent("\ufffd bad")]),
    ],
)
def test_framing(raw: bytes, expected: list[SSEEvent]) -> None:
    assert decode(raw) == expected


def test_only_a_leading_bom_is_dropped() -> None:
    assert decode(b"data: a\n\n\xef\xbb\xbfdata: b\n\n") == [SSEEvent("a")]


def test_close_delivers_an_unterminated_last_event() -> None:
    assert decode(b'data: {"error":"bye"}') == [SSEEvent('{"error":"bye"}')]
    assert decode(b"data: a\n") == [SSEEvent("a")]


def test_close_resets_the_decoder() -> None:
    decoder = SSEDecoder()
    decoder.feed(b"data: half")
    assert decoder.close() == [SSEEvent("half")]
    assert decoder.close() == []
    assert decoder.feed(b"data: next\n\n") == [SSEEvent("next")]


def test_events_come_out_as_soon_as_their_blank_line_arrives() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\n") == []
    assert decoder.feed(b"\n") == [SSEEvent("a")]
    assert decoder.feed(b"data: b\n\ndata: c") == [SSEEvent("b")]
    assert decoder.feed(b"") == []


def test_cr_at_the_end_of_a_read_pairs_with_lf_in_the_next() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\r") == []
    # The LF completes the CRLF that ended "data: a"; it is not a blank line by itself.
    assert decoder.feed(b"\n") == []
    assert decoder.feed(b"\r\n") == [SSEEvent("a")]


def test_a_lone_cr_still_ends_the_line_when_no_lf_follows() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\r") == []
    assert decoder.feed(b"\r") == [SSEEvent("a")]
    assert decoder.feed(b"data: b\r\r") == [SSEEvent("b")]


def test_an_empty_read_keeps_a_pending_cr() -> None:
    decoder = SSEDecoder()
    decoder.feed(b"data: a\r")
    decoder.feed(b"")
    assert decoder.feed(b"\n\n") == [SSEEvent("a")]


MIXED_STREAM = (
    b":\n\n"
    b'data: {"t":"caf\xc3\xa9 \xe2\x98\x95 \xf0\x9f\xa6\x99"}\r\n\r\n'
    b": OPENROUTER PROCESSING\r\r"
    b'event: error\ndata:{"error":"x"}\n\n'
    b"data: multi\r\ndata: line\n\n"
    b"data: [DONE]\n\n"
)
MIXED_EVENTS = [
    SSEEvent('{"t":"café ☕ 🦙"}'),
    SSEEvent('{"error":"x"}', "error"),
    SSEEvent("multi\nline"),
    SSEEvent("[DONE]"),
]


def test_mixed_stream_is_decoded_the_same_however_it_is_cut() -> None:
    results = decode_cut_everywhere(MIXED_STREAM)
    assert all(result == MIXED_EVENTS for result in results)


def test_multibyte_characters_split_across_reads_are_intact() -> None:
    data = "data: ☕🦙é\n\n".encode()
    for offset in range(len(data) + 1):
        assert decode(data[:offset], data[offset:]) == [SSEEvent("☕🦙é")], offset


def test_many_events_in_one_read() -> None:
    data = b"".join(b"data: %d\n\n" % i for i in range(1000))
    assert decode(data) == [SSEEvent(str(i)) for i in range(1000)]


def test_a_long_line_split_into_many_reads() -> None:
    payload = b"x" * 100_000
    reads = [b"data: "] + [payload[i : i + 7] for i in range(0, len(payload), 7)] + [b"\n\n"]
    assert decode(*reads) == [SSEEvent(payload.decode())]


# -- bounded: a line or an event's data past max_line raises ------------------------------------------

CAP = 1000


def endless(prefix: bytes, piece: bytes) -> list[bytes]:
    """``prefix`` and then ``piece`` repeated well past ``CAP``."""
    return [prefix] + [piece] * (3 * CAP // len(piece) + 1)


OVER = [
    ("endless-data-line", endless(b"data: ", b"x" * 64)),
    ("endless-comment", endless(b": ", b"ping " * 10)),
    ("endless-unknown-field", endless(b"", b"y" * 100)),
    ("one-long-line-in-one-read", [b"data: " + b"x" * (2 * CAP) + b"\n\n"]),
    ("long-line-then-newline", [b"data: " + b"x" * (CAP + 10), b"\n\n"]),
    ("many-data-lines-one-event", endless(b"", b"data: " + b"z" * 50 + b"\n")),
    ("cr-terminated-lines-one-event", endless(b"", b"data: " + b"z" * 50 + b"\r")),
]


@pytest.mark.parametrize("reads", [c[1] for c in OVER], ids=[c[0] for c in OVER])
def test_a_line_or_event_past_the_cap_raises(reads: list[bytes]) -> None:
    decoder = SSEDecoder(max_line=CAP)
    with pytest.raises(UpstreamProtocol, match=f"longer than {CAP} bytes"):
        for read in reads:
            decoder.feed(read)
        decoder.close()


def test_exactly_the_cap_is_fine() -> None:
    line = b"data: " + b"x" * (CAP - 6)
    decoder = SSEDecoder(max_line=CAP)
    assert decoder.feed(line[:500]) == []
    assert decoder.feed(line[500:] + b"\n\n") == [SSEEvent("x" * (CAP - 6))]


def test_the_buffer_never_grows_past_the_cap() -> None:
    decoder = SSEDecoder(max_line=64 * 1024)
    piece = b"x" * 4096
    peak = 0
    with pytest.raises(UpstreamProtocol):
        for _ in range(10_000):  # 40 MB if nothing stopped it
            decoder.feed(piece)
            peak = max(peak, sum(len(p) for p in decoder._line_parts))
    assert peak <= 64 * 1024
    assert decoder._line_parts == []  # what was buffered is dropped


def test_the_default_cap_is_the_settings_default() -> None:
    assert SSEDecoder().max_line == DEFAULT_MAX_LINE == Limits().sse_line_bytes
