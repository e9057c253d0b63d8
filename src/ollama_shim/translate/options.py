"""Ollama ``options`` -> OpenAI sampling parameters, spelled and filtered for one backend dialect.

``options_to_sampling`` checks every value's type the way Ollama's ``Options.FromMap`` does, maps
each key it can to its OpenAI spelling, and hands back the names it did not send (unknown keys,
runner keys such as ``num_ctx`` that a backend only takes at load time, and keys this backend
would reject) so that the caller can log each one once.

May import: stdlib, msgspec, ``ollama_shim.wire``, ``ollama_shim.errors``, ``ollama_shim.dialect``.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any, Literal

import msgspec

from ollama_shim.dialect import Dialect
from ollama_shim.errors import BadRequest
from ollama_shim.wire.openai import SamplingParams

__all__ = ["IgnoreReason", "IgnoredOption", "TranslatedOptions", "options_to_sampling"]

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_FLOAT_MAX = sys.float_info.max
_SHOWN_DIGITS = 40


class _Kind(Enum):
    INT = "integer"
    FLOAT = "float32"
    BOOL = "boolean"
    STOP = "array"


# Keys sent to the backend under an OpenAI/llama.cpp name, when the dialect lists that name.
_SAMPLING_KEYS: dict[str, tuple[_Kind, str]] = {
    "temperature": (_Kind.FLOAT, "temperature"),
    "top_p": (_Kind.FLOAT, "top_p"),
    "top_k": (_Kind.INT, "top_k"),
    "min_p": (_Kind.FLOAT, "min_p"),
    "typical_p": (_Kind.FLOAT, "typical_p"),
    "repeat_last_n": (_Kind.INT, "repeat_last_n"),
    "presence_penalty": (_Kind.FLOAT, "presence_penalty"),
    "frequency_penalty": (_Kind.FLOAT, "frequency_penalty"),
    "mirostat": (_Kind.INT, "mirostat"),
    "mirostat_tau": (_Kind.FLOAT, "mirostat_tau"),
    "mirostat_eta": (_Kind.FLOAT, "mirostat_eta"),
    "num_keep": (_Kind.INT, "n_keep"),
}

# Keys with their own rule (special values, dialect-chosen spelling).
_SPECIAL_KEYS: dict[str, _Kind] = {
    "num_predict": _Kind.INT,
    "seed": _Kind.INT,
    "stop": _Kind.STOP,
    "repeat_penalty": _Kind.FLOAT,
}

# Runner keys Ollama still knows: type-checked as Ollama does, never sent (set when the
# backend loads the model, not per request).
_RUNNER_KEYS: dict[str, _Kind] = {
    "num_ctx": _Kind.INT,
    "num_batch": _Kind.INT,
    "num_gpu": _Kind.INT,
    "main_gpu": _Kind.INT,
    "num_thread": _Kind.INT,
    "use_mmap": _Kind.BOOL,
    "draft_num_predict": _Kind.INT,
}

IgnoreReason = Literal["unknown", "load_time", "unsupported"]


@dataclass(frozen=True)
class IgnoredOption:
    """An option key that was not sent, and why: ``unknown`` to Ollama too (or removed from it),
    ``load_time`` (a runner setting), or ``unsupported`` by this backend."""

    name: str
    reason: IgnoreReason


@dataclass(frozen=True)
class TranslatedOptions:
    sampling: SamplingParams
    ignored: tuple[IgnoredOption, ...] = ()

    @property
    def ignored_names(self) -> tuple[str, ...]:
        return tuple(item.name for item in self.ignored)


def options_to_sampling(options: Mapping[str, Any] | None, dialect: Dialect) -> TranslatedOptions:
    """Check and map Ollama ``options`` to the sampling fields ``dialect`` accepts.

    A ``null`` value counts as absent, as in Ollama. Raises ``BadRequest`` on a wrong type.
    """
    fields: dict[str, Any] = {}
    ignored: list[IgnoredOption] = []
    for key, raw in (options or {}).items():
        if raw is None:
            continue
        outcome = _translate_one(key, raw, dialect)
        if isinstance(outcome, IgnoredOption):
            ignored.append(outcome)
        elif outcome is not None:
            fields[outcome[0]] = outcome[1]
    return TranslatedOptions(sampling=SamplingParams(**fields), ignored=tuple(ignored))


def _translate_one(key: str, raw: Any, dialect: Dialect) -> tuple[str, Any] | IgnoredOption | None:
    """One option: ``(field, value)`` to send, an ``IgnoredOption``, or None to leave out quietly."""
    if key in _SAMPLING_KEYS:
        kind, field = _SAMPLING_KEYS[key]
        value = _checked(key, raw, kind)
        if field not in dialect.sampling_keys:
            return IgnoredOption(key, "unsupported")
        return field, value
    if key in _SPECIAL_KEYS:
        return _translate_special(key, _checked(key, raw, _SPECIAL_KEYS[key]), dialect)
    if key in _RUNNER_KEYS:
        _checked(key, raw, _RUNNER_KEYS[key])
        return IgnoredOption(key, "load_time")
    return IgnoredOption(key, "unknown")


def _translate_special(key: str, value: Any, dialect: Dialect) -> tuple[str, Any] | IgnoredOption | None:
    if key == "num_predict":
        # -1 = no limit, -2 = fill the context: both mean "send no limit".
        return (dialect.max_tokens_field, value) if value >= 0 else None
    if key == "seed":
        if value == -1:  # Ollama's "random"
            return None
        return ("seed", value) if "seed" in dialect.sampling_keys else IgnoredOption(key, "unsupported")
    if key == "stop":
        if not value:
            return None
        return ("stop", value) if "stop" in dialect.sampling_keys else IgnoredOption(key, "unsupported")
    # repeat_penalty: llama.cpp and LM Studio spell it as Ollama does, vLLM/OpenRouter do not.
    if dialect.repeat_penalty_field is None:
        return IgnoredOption(key, "unsupported")
    return dialect.repeat_penalty_field, value


def _checked(key: str, raw: Any, kind: _Kind) -> Any:
    """The value converted to ``kind``, or ``BadRequest`` with Ollama's wording."""
    if kind is _Kind.STOP:
        return _checked_stop(key, raw)
    _check_float_range(raw)
    value = _converted(raw, kind)
    if value is None:
        raise BadRequest(f"option {_quoted(key)} must be of type {kind.value}")
    return value


def _converted(raw: Any, kind: _Kind) -> bool | int | float | None:
    if isinstance(raw, bool):  # JSON true/false is never a number
        return raw if kind is _Kind.BOOL else None
    if kind is _Kind.BOOL or not isinstance(raw, int | float):
        return None
    if kind is _Kind.FLOAT:
        return float(raw)
    # JSON floats are truncated toward zero for integer keys, as Go's int64(f) does.
    if math.isfinite(raw) and _INT64_MIN <= int(raw) <= _INT64_MAX:
        return int(raw)
    return None


def _check_float_range(raw: Any) -> None:
    """Ollama decodes every option number as a float64: an integer beyond its range (JSON allows
    one; the decoder here keeps it exact) fails the request in Go's words, as there."""
    if isinstance(raw, int) and not isinstance(raw, bool) and not -_FLOAT_MAX <= raw <= _FLOAT_MAX:
        try:
            digits = str(raw)
        except ValueError:  # longer than the interpreter converts (4,300 digits by default)
            digits = "…"
        shown = digits if len(digits) <= _SHOWN_DIGITS else digits[:_SHOWN_DIGITS] + "…"
        raise BadRequest(f"json: cannot unmarshal number {shown} into Go value of type float64")


def _checked_stop(key: str, raw: Any) -> list[str]:
    # Ollama itself wants an array; a bare string is accepted here too, as OpenAI accepts one.
    if isinstance(raw, str):
        return [raw]
    if not isinstance(raw, list):
        raise BadRequest(f"option {_quoted(key)} must be of type array")
    if not all(isinstance(item, str) for item in raw):
        raise BadRequest(f"option {_quoted(key)} must be of type array of strings")
    return list(raw)


def _quoted(text: str) -> str:
    """Go's ``%q`` for the plain key names that appear here: a JSON string."""
    return msgspec.json.encode(text).decode()
