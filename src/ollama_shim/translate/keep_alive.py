"""Ollama ``keep_alive`` (seconds as a number, or a Go duration string) and what it asks for.

Ollama holds keep_alive as a Go ``time.Duration``: a signed 64-bit count of nanoseconds. A
duration string beyond that range is refused as Go's ``time.ParseDuration`` refuses it
(``time: invalid duration "..."``), and so is a positive number of seconds beyond it; a negative
number means "forever", however large.

May import: stdlib, msgspec, ``ollama_shim.errors``, ``ollama_shim.dialect``, ``ollama_shim.wire``.
"""

from __future__ import annotations

import math
import re

import msgspec

from ollama_shim.dialect import Dialect
from ollama_shim.errors import BadRequest
from ollama_shim.wire.ollama import KeepAlive

__all__ = ["parse_keep_alive", "ttl_seconds", "wants_unload"]


_NANOSECONDS_PER_UNIT = {
    "ns": 1,
    "us": 1_000,
    "\u00b5s": 1_000,  # micro sign
    "\u03bcs": 1_000,  # Greek mu
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}
_NANOSECONDS_PER_SECOND = 1_000_000_000
_MAX_NANOSECONDS = 2**63 - 1  # time.Duration is an int64
# Digits of a fraction that can still matter: 19 reach below one nanosecond of an hour.
_FRACTION_DIGITS = 19
_SHOWN_CHARS = 100  # a refused value is quoted back up to this length

_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)"
_UNIT = "|".join(sorted(_NANOSECONDS_PER_UNIT, key=len, reverse=True))
_DURATION_PART = re.compile(rf"(\d*)(?:\.(\d*))?({_UNIT})")
_GO_DURATION = re.compile(rf"([+-]?)((?:{_NUMBER}(?:{_UNIT}))+)")
_BARE_SECONDS = re.compile(r"([+-]?)(\d*)(?:\.(\d*))?")


def parse_keep_alive(value: KeepAlive) -> float | None:
    """``keep_alive`` in seconds: None when not given, ``math.inf`` for "forever" (negative).

    A number is seconds, truncated to whole seconds as Ollama does (so 0.5 unloads). A string is a
    Go duration (``"5m"``, ``"1h30m"``, ``"300ms"``, ``"0"``) or a bare number of seconds
    (``"300"``, ``"-1"``).
    """
    return _seconds(value)


def _seconds(value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, str):
        return _parse_keep_alive_text(value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadRequest(f"invalid keep_alive: {_shown(msgspec.json.encode(value).decode())}")
    if value < 0:
        return math.inf
    if not value * _NANOSECONDS_PER_SECOND <= _MAX_NANOSECONDS:  # NaN and inf fail here too
        raise BadRequest(f'time: invalid duration "{_shown(msgspec.json.encode(value).decode())}"')
    return float(math.trunc(value))


def _parse_keep_alive_text(text: str) -> float:
    bare = _BARE_SECONDS.fullmatch(text)
    if bare is not None and (bare.group(2) or bare.group(3)):
        sign, whole, fraction = bare.groups()
        nanoseconds = _nanoseconds(text, whole, fraction, "s")
        if sign == "-" and nanoseconds > 0:
            return math.inf
        return float(nanoseconds // _NANOSECONDS_PER_SECOND)
    duration = _GO_DURATION.fullmatch(text)
    if duration is None:
        raise _invalid_duration(text)
    sign, body = duration.groups()
    nanoseconds = 0
    for whole, fraction, unit in _DURATION_PART.findall(body):
        nanoseconds += _nanoseconds(text, whole, fraction, unit)
        if nanoseconds > _MAX_NANOSECONDS + (sign == "-"):  # Go allows down to -2**63
            raise _invalid_duration(text)
    return math.inf if sign == "-" and nanoseconds > 0 else nanoseconds / _NANOSECONDS_PER_SECOND


def _nanoseconds(text: str, whole: str, fraction: str | None, unit: str) -> int:
    """One ``<number><unit>`` part in whole nanoseconds (the fraction truncated, as in Go);
    ``time: invalid duration`` when the part alone is beyond an int64."""
    whole = whole.lstrip("0")
    if len(whole) > len(str(_MAX_NANOSECONDS)):  # checked before any big-number arithmetic
        raise _invalid_duration(text)
    scale = _NANOSECONDS_PER_UNIT[unit]
    nanoseconds = int(whole or "0") * scale
    digits = (fraction or "")[:_FRACTION_DIGITS]
    if digits:
        nanoseconds += int(digits) * scale // 10 ** len(digits)
    if nanoseconds > _MAX_NANOSECONDS + 1:
        raise _invalid_duration(text)
    return nanoseconds


def _invalid_duration(text: str) -> BadRequest:
    return BadRequest(f'time: invalid duration "{_shown(text)}"')


def _shown(text: str) -> str:
    return text if len(text) <= _SHOWN_CHARS else text[:_SHOWN_CHARS] + "…"


def ttl_seconds(keep_alive: KeepAlive, dialect: Dialect) -> int | None:
    """LM Studio's per-request idle TTL: a finite positive keep_alive, rounded up to a second."""
    seconds = parse_keep_alive(keep_alive)
    if not dialect.sends_ttl or seconds is None or seconds <= 0 or math.isinf(seconds):
        return None
    return math.ceil(seconds)


def wants_unload(keep_alive: object) -> bool:
    """keep_alive 0: unload the model (after this request, or instead of it for a load request).
    Takes any value a route holds; one that is not a keep_alive is a ``BadRequest``."""
    return _seconds(keep_alive) == 0
