"""What the shim remembers about each backend's models: the ``ModelMemory`` interface and its in-process kind.

The catalog lays what a backend says now over what it said before (``translate.catalog.settle``),
so that a llama.cpp router model keeps its size, parameters, quantization, context and
capabilities after it is unloaded, and its digest and ``modified_at`` do not move. Facts are
keyed by the backend's root URL and the model's id on it. ``remember`` is called only when
something new was learned (a model seen for the first time, or loaded for the first time), never
on every refresh; ``recall`` is called for every model on every refresh, so an implementation
keeps its facts in memory and reads its storage once.

``InProcessMemory`` forgets on restart. A store that survives restarts implements the same two
methods; ``facts_to_json``/``facts_from_json`` are the encoding it keeps (one JSON object per
model, unknown keys ignored and bad values dropped on reading, so that an older or newer shim can
read what another wrote).

May import: stdlib, msgspec, ``ollama_shim.translate.catalog``.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import asdict
from typing import Protocol, get_type_hints

import msgspec

from .translate.catalog import ModelFacts

MAX_REMEMBERED = 10_000  # models; past that the one remembered longest ago is forgotten first


class ModelMemory(Protocol):
    def recall(self, backend_root: str, model_id: str) -> ModelFacts | None:
        """What was learned about the model, or None if it was never seen."""
        ...

    def remember(self, backend_root: str, model_id: str, facts: ModelFacts) -> None:
        """Keep ``facts`` (all that is known of the model, not a change) in place of what was known."""
        ...


class InProcessMemory:
    """``ModelMemory`` in a dict, bounded to ``limit`` models (a backend that invents ids cannot grow it)."""

    def __init__(self, limit: int = MAX_REMEMBERED) -> None:
        self._limit = limit
        self._facts: OrderedDict[tuple[str, str], ModelFacts] = OrderedDict()

    def __len__(self) -> int:
        return len(self._facts)

    def recall(self, backend_root: str, model_id: str) -> ModelFacts | None:
        return self._facts.get((backend_root, model_id))

    def remember(self, backend_root: str, model_id: str, facts: ModelFacts) -> None:
        key = (backend_root, model_id)
        self._facts[key] = facts
        self._facts.move_to_end(key)
        while len(self._facts) > self._limit:
            self._facts.popitem(last=False)


_FIELD_TYPES = get_type_hints(ModelFacts)


def facts_to_json(facts: ModelFacts) -> bytes:
    """One JSON object with every field (None as null)."""
    return msgspec.json.encode(asdict(facts))


def facts_from_json(data: bytes) -> ModelFacts | None:
    """What ``facts_to_json`` wrote; unknown keys are ignored and a value of the wrong type is dropped.
    None if ``data`` is not a JSON object."""
    try:
        doc = msgspec.json.decode(data)
    except msgspec.DecodeError:
        return None
    if not isinstance(doc, dict):
        return None
    kept: dict[str, object] = {}
    for name, value in doc.items():
        if name in _FIELD_TYPES:
            try:
                kept[name] = msgspec.convert(value, _FIELD_TYPES[name])
            except msgspec.ValidationError:
                continue
    return ModelFacts(**kept)  # type: ignore[arg-type]  # each value was converted to its field's type
