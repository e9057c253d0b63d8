"""Ollama ``keep_alive`` (seconds as a number, or a Go duration string) and what it asks for.

May import: stdlib, msgspec, ``ollama_shim.errors``, ``ollama_shim.dialect``.
"""

from __future__ import annotations

import math
import re
from typing import Any

import msgspec

from ollama_shim.dialect import Dialect
from ollama_shim.errors import BadRequest

__all__ = ["parse_keep_alive", "ttl_seconds", "wants_unload"]


_GO_UNIT_SECONDS = {
    "ns": 1e-9,
    "us": 1e-6,
    "\u00b5s": 1e-6,  # micro sign
    "\u03bcs": 1e-6,  # Greek mu
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)"
_UNIT = "|".join(sorted(_GO_UNIT_SECONDS, key=len, reverse=True))
_DURATION_PART = re.compile(rf"({_NUMBER})({_UNIT})")
_GO_DURATION = re.compile(rf"([+-]?)((?:{_NUMBER}(?:{_UNIT}))+)")
_BARE_SECONDS = re.compile(rf"[+-]?{_NUMBER}")


def parse_keep_alive(value: Any) -> float | None:
    """``keep_alive`` in seconds: None when not given, ``math.inf`` for "forever" (negative).

    A number is seconds, truncated to whole seconds as Ollama does (so 0.5 unloads). A string is a
    Go duration (``"5m"``, ``"1h30m"``, ``"300ms"``, ``"0"``) or a bare number of seconds
    (``"300"``, ``"-1"``).
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise BadRequest(f"invalid keep_alive: {msgspec.json.encode(value).decode()}")
    if isinstance(value, str):
        return _parse_keep_alive_text(value)
    return math.inf if value < 0 else float(math.trunc(value))


def _parse_keep_alive_text(text: str) -> float:
    if _BARE_SECONDS.fullmatch(text):
        seconds = float(text)
        return math.inf if seconds < 0 else float(math.trunc(seconds))
    duration = _GO_DURATION.fullmatch(text)
    if duration is None:
        raise BadRequest(f'time: invalid duration "{text}"')
    sign, body = duration.groups()
    seconds = sum(float(number) * _GO_UNIT_SECONDS[unit] for number, unit in _DURATION_PART.findall(body))
    return math.inf if sign == "-" and seconds > 0 else seconds


def ttl_seconds(keep_alive: Any, dialect: Dialect) -> int | None:
    """LM Studio's per-request idle TTL: a finite positive keep_alive, rounded up to a second."""
    seconds = parse_keep_alive(keep_alive)
    if not dialect.sends_ttl or seconds is None or seconds <= 0 or math.isinf(seconds):
        return None
    return math.ceil(seconds)


def wants_unload(keep_alive: Any) -> bool:
    """keep_alive 0: unload the model (after this request, or instead of it for a load request)."""
    return parse_keep_alive(keep_alive) == 0
