"""Ollama's timestamp formats, from integer nanoseconds since the epoch.

``created_at`` is UTC RFC 3339 with up to nine fractional digits, trailing zeros trimmed
(``2025-10-26T17:21:21.196249Z``); ``modified_at``/``expires_at`` carry the local offset
(``2025-05-10T08:06:48.639712648-07:00``). Clients such as OllamaKit need the fraction.

May import: stdlib only.
"""

from __future__ import annotations

import time

_NS = 1_000_000_000


def _fraction(ns: int) -> str:
    frac = f"{ns % _NS:09d}".rstrip("0")
    return "." + (frac or "0")


# The last second formatted: a stream stamps every chunk, mostly within the same second.
_utc_second: tuple[int, str] = (-1, "")


def utc_timestamp(ns: int) -> str:
    """``created_at``: UTC with the fraction, e.g. ``2025-10-26T17:21:21.196249Z``."""
    global _utc_second
    seconds, text = _utc_second  # one tuple, read and replaced whole, so threads cannot mix two seconds
    if seconds != ns // _NS:
        seconds = ns // _NS
        text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
        _utc_second = (seconds, text)
    return text + _fraction(ns) + "Z"


def local_timestamp(ns: int) -> str:
    """``modified_at``/``expires_at``: local time with its UTC offset."""
    t = time.localtime(ns // _NS)
    offset = t.tm_gmtoff or 0
    sign = "+" if offset >= 0 else "-"
    hours, minutes = divmod(abs(offset) // 60, 60)
    return time.strftime("%Y-%m-%dT%H:%M:%S", t) + _fraction(ns) + f"{sign}{hours:02d}:{minutes:02d}"
