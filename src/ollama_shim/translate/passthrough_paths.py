"""Which ``/v1`` paths the passthrough may forward: free of dot segments, and on the allow-list.

``check_path(raw_path)`` takes the path as it came on the request line (still percent-encoded,
no query) and raises ``BadRequest`` if any way a backend might decode it holds a ``.`` or ``..``
segment: plain, percent-encoded (``%2e%2e``, ``%2E.``), encoded more than once (``%252e``), or
formed with an encoded slash or backslash (``a%2f..%2fprops``, ``%5c``). Such a path could leave
the backend's ``/v1`` root (and its prefix, ``http://h/tenant-a/v1``); nothing legitimate uses one.

``route_allowed(raw_path, patterns)`` says whether the path matches one of the ``--passthrough``
patterns. A pattern is a path whose segments are matched one by one; ``*`` inside a segment
matches any run of characters within that segment; a last segment ``**`` matches the path
before it and any deeper path; the pattern ``*`` alone matches every path. The raw path and
its decoded form (split at encoded slashes too) must both match, so a backend that decodes
``%2F`` before routing sees no route the list did not name. Matching is case-sensitive.

May import: stdlib, ``ollama_shim.errors``.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterable

from ..errors import BadRequest

# Rounds of percent-decoding tried; a path still changing after them is refused.
_DECODE_ROUNDS = 4
_DOT_SEGMENTS = frozenset({".", ".."})


def decoded_segments(raw_path: str) -> list[str]:
    """The path's segments once fully percent-decoded, split at ``/`` and ``\\``."""
    path = raw_path
    for _ in range(_DECODE_ROUNDS):
        decoded = urllib.parse.unquote(path, errors="replace")
        if decoded == path:
            return decoded.replace("\\", "/").split("/")
        path = decoded
    raise BadRequest(f"path {raw_path[:200]!r} is percent-encoded too many times")


def check_path(raw_path: str) -> None:
    """Raise ``BadRequest`` if the path holds a dot segment in any decoding of it."""
    if any(segment in _DOT_SEGMENTS for segment in decoded_segments(raw_path)):
        raise BadRequest(f"path {raw_path[:200]!r} has '.' or '..' segments; they are not forwarded")


def _segment_matches(segment: str, pattern: str) -> bool:
    """``pattern`` with ``*`` as any run of characters, against one segment."""
    if "*" not in pattern:
        return segment == pattern
    first, *middle, last = pattern.split("*")
    if not segment.startswith(first) or len(segment) < len(first) + len(last) or not segment.endswith(last):
        return False
    position = len(first)
    end = len(segment) - len(last)
    for piece in middle:
        found = segment.find(piece, position, end)
        if found < 0:
            return False
        position = found + len(piece)
    return True


def _matches(segments: list[str], pattern: str) -> bool:
    if pattern == "*":
        return True
    wanted = pattern.split("/")
    if wanted[-1] == "**":
        wanted = wanted[:-1]
        if len(segments) < len(wanted):
            return False
        segments = segments[: len(wanted)]
    elif len(segments) != len(wanted):
        return False
    return all(_segment_matches(s, p) for s, p in zip(segments, wanted, strict=True))


def route_allowed(raw_path: str, patterns: Iterable[str]) -> bool:
    """Whether the raw path and its decoded form both match one of ``patterns``."""
    forms = (raw_path.split("/"), decoded_segments(raw_path))
    return any(all(_matches(form, p) for form in forms) for p in patterns)
