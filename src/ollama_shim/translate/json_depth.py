"""How deeply a JSON text nests, measured on the raw bytes before anything decodes it.

The decoder recurses once per level, so a body of a few kilobytes of ``[`` would exhaust the
interpreter's recursion limit (a ``RecursionError``, not a decoding error). ``exceeds_depth``
answers in linear time, at C speed: escaped backslashes and quotes are dropped, everything but
quotes and brackets is dropped, the text between quotes (inside strings, whose brackets do not
count) is dropped, and the running balance of the brackets left is summed.

May import: stdlib.
"""

from __future__ import annotations

import itertools

__all__ = ["MAX_JSON_DEPTH", "exceeds_depth"]

# Far deeper than any real request (tool schemas nest a dozen levels) and far below the
# interpreter's recursion limit, which decoding and the later re-encoding both draw on.
MAX_JSON_DEPTH = 256

_NOT_QUOTES_OR_BRACKETS = bytes(b for b in range(256) if b not in b'"[]{}')
_STEP = [0] * 256
_STEP[ord("[")] = _STEP[ord("{")] = 1
_STEP[ord("]")] = _STEP[ord("}")] = -1


def exceeds_depth(text: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether the arrays and objects of ``text`` nest more than ``limit`` levels deep.

    Meant for text about to be decoded: for text that is not JSON the answer may be either,
    and the decoder reports the real problem.
    """
    if text.count(b"[") + text.count(b"{") <= limit:  # cannot nest deeper than it opens
        return False
    # Runs of backslashes pair up from the left, as escapes do; a lone one left before a quote
    # escapes it. What remains is quotes and brackets only.
    skeleton = text.replace(b"\\\\", b"").replace(b'\\"', b"").translate(None, _NOT_QUOTES_OR_BRACKETS)
    brackets = b"".join(skeleton.split(b'"')[::2])  # the odd pieces are inside strings
    if len(brackets) <= limit:
        return False
    return max(itertools.accumulate(map(_STEP.__getitem__, brackets))) > limit
