"""Incremental Server-Sent Events decoder: raw bytes from the backend in, complete events out.

``SSEDecoder.feed(data)`` takes whatever one socket read returned and gives back the events it
completed; ``SSEDecoder.close()`` flushes at end of stream. Framing follows the WHATWG
``text/event-stream`` rules that matter for OpenAI-style backends:

- lines end only at CR, LF or CRLF (not at U+2028/U+0085, which may sit inside JSON), and a CR
  that ends one read may pair with an LF that starts the next;
- a blank line ends an event; ``:`` lines are comments (llama.cpp ``:`` pings, OpenRouter's
  ``: OPENROUTER PROCESSING``) and are skipped;
- ``data:`` with or without one space; several ``data`` lines are joined with ``\\n``; an event
  whose data is empty is not delivered; ``event:`` names are kept (``event: error``); ``id`` and
  ``retry`` are ignored;
- bytes are decoded as UTF-8 only once a line is complete, so a character split across reads is
  never broken (undecodable bytes become U+FFFD, as the standard says).

One deliberate leniency: at ``close()`` an event whose closing blank line never came is still
delivered, so a backend that writes a last error frame and hangs up is not silenced.

Bounded: a line, or the data of one event, longer than ``max_line`` bytes (default
``DEFAULT_MAX_LINE``, the same as ``Limits.sse_line_bytes``) raises ``UpstreamProtocol`` and the
buffered bytes are dropped, so an endless line costs at most ``max_line`` plus one read.

May import: stdlib, ``ollama_shim.errors``.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import UpstreamProtocol

DEFAULT_MAX_LINE = 8 * 1024 * 1024
_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True, slots=True)
class SSEEvent:
    """One dispatched event: its data (lines joined with ``\\n``) and its ``event:`` name, if any."""

    data: str
    event: str | None = None


class SSEDecoder:
    """Turns a byte stream cut at arbitrary points into ``SSEEvent``s."""

    __slots__ = (
        "_at_stream_start", "_cr_pending", "_data_bytes", "_data_lines", "_event_name", "_line_parts",
        "_pending", "max_line",
    )

    def __init__(self, max_line: int = DEFAULT_MAX_LINE) -> None:
        self.max_line = max_line
        self._line_parts: list[bytes] = []  # the current, not yet terminated line
        self._pending = 0  # bytes in _line_parts
        self._data_bytes = 0  # bytes in _data_lines
        self._cr_pending = False  # the last read ended in CR: an LF opening the next read is its pair
        self._at_stream_start = True  # a UTF-8 BOM may open the stream
        self._data_lines: list[str] = []
        self._event_name: str | None = None

    def feed(self, data: bytes) -> list[SSEEvent]:
        """Take one read's bytes; return the events completed by them."""
        if not data:
            return []
        if self._cr_pending and data[0] == 0x0A:
            data = data[1:]
        self._cr_pending = data.endswith(b"\r")
        if b"\r" in data:
            data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        if b"\n" not in data:
            if data:
                self._line_parts.append(data)
                self._pending += len(data)
                self._check(self._pending)
            return []
        if self._line_parts:
            self._line_parts.append(data)
            data = b"".join(self._line_parts)
            self._line_parts = []
            self._pending = 0
        *lines, rest = data.split(b"\n")
        events: list[SSEEvent] = []
        for line in lines:
            self._check(len(line))
            self._take_line(line, events)
        if rest:
            self._check(len(rest))
            self._line_parts.append(rest)
            self._pending = len(rest)
        return events

    def close(self) -> list[SSEEvent]:
        """End of stream: deliver an unterminated last line and event, then reset."""
        events: list[SSEEvent] = []
        if self._line_parts:
            line = b"".join(self._line_parts)
            self._line_parts = []
            self._pending = 0
            self._take_line(line, events)
        self._dispatch(events)
        self._cr_pending = False
        return events

    def _take_line(self, line: bytes, events: list[SSEEvent]) -> None:
        if self._at_stream_start:
            self._at_stream_start = False
            if line.startswith(_BOM):
                line = line[len(_BOM) :]
        if not line:
            self._dispatch(events)
            return
        if line[0] == 0x3A:  # ":" comment / keep-alive
            return
        field, _, value = line.partition(b":")
        if value[:1] == b" ":
            value = value[1:]
        if field == b"data":
            self._data_bytes += len(value) + 1
            self._check(self._data_bytes)
            self._data_lines.append(value.decode("utf-8", "replace"))
        elif field == b"event":
            self._event_name = value.decode("utf-8", "replace")

    def _dispatch(self, events: list[SSEEvent]) -> None:
        data = "\n".join(self._data_lines)
        if data:
            events.append(SSEEvent(data, self._event_name or None))
        self._data_lines = []
        self._data_bytes = 0
        self._event_name = None

    def _check(self, size: int) -> None:
        """Past ``max_line``: drop what is buffered and raise."""
        if size > self.max_line:
            self._line_parts = []
            self._pending = 0
            self._data_lines = []
            self._data_bytes = 0
            raise UpstreamProtocol(f"backend sent an event-stream line longer than {self.max_line} bytes")
