"""Streamed tool-call deltas gathered into whole Ollama tool calls, arguments parsed to objects.

Deltas are matched by ``index``; without one, a new ``id`` or a ``name`` starts a call and anything
else continues the last one. Arguments may arrive as JSON text in pieces, or (some servers) as an
object. ``function.index`` counts from 0 in order of first appearance; the backend's ``id`` is kept.
Arguments nested deeper than ``MAX_ARGUMENT_DEPTH`` are refused as ``UpstreamProtocol``, so that
they can neither exhaust the stack here nor when the answer is encoded.

May import: stdlib, msgspec, ``ollama_shim.wire``, ``ollama_shim.errors``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import msgspec

from ollama_shim.errors import UpstreamProtocol
from ollama_shim.wire.ollama import JSONObject, ResponseToolCall, ResponseToolCallFunction
from ollama_shim.wire.openai import ToolCallDelta

MAX_ARGUMENT_DEPTH = 128  # nested objects/arrays; real tool arguments stay far below


@dataclass(slots=True)
class _ToolCallParts:
    id: str | None
    name: str
    argument_parts: list[str]


def _too_deep(name: str) -> UpstreamProtocol:
    return UpstreamProtocol(
        f'backend returned tool call arguments for "{name}" nested deeper than {MAX_ARGUMENT_DEPTH} levels'
    )


def _arguments_text(name: str, arguments: str | JSONObject | None) -> str:
    if arguments is None:
        return ""
    if isinstance(arguments, str):
        return arguments
    try:
        return msgspec.json.encode(arguments).decode()
    except RecursionError:
        raise _too_deep(name) from None


def _nesting_within(value: object, limit: int) -> bool:
    """Whether no object or array in ``value`` lies deeper than ``limit`` (checked without recursion)."""
    pending: list[tuple[object, int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        children: Iterable[object]
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return False
        pending.extend((child, depth + 1) for child in children)
    return True


def parse_tool_arguments(name: str, text: str) -> JSONObject:
    """The joined argument text as an object (``{}`` when empty). A JSON string holding JSON
    (double-encoded arguments) is unwrapped once."""
    text = text.strip()
    if not text:
        return {}
    try:
        value = msgspec.json.decode(text)
        if isinstance(value, str):
            value = msgspec.json.decode(value) if value.strip() else {}
    except msgspec.DecodeError:
        value = None
    except RecursionError:
        raise _too_deep(name) from None
    if not isinstance(value, dict):
        raise UpstreamProtocol(f'backend returned invalid tool call arguments for "{name}"')
    if not _nesting_within(value, MAX_ARGUMENT_DEPTH):
        raise _too_deep(name)
    return value


class ToolCallAccumulator:
    """Gathers streamed tool-call deltas into whole calls, in order of first appearance."""

    __slots__ = ("_by_index", "_calls")

    def __init__(self) -> None:
        self._calls: list[_ToolCallParts] = []
        self._by_index: dict[int, _ToolCallParts] = {}

    def add(self, delta: ToolCallDelta) -> None:
        function = delta.function
        name = function.name if function is not None else None
        call = self._call_for(delta, name)
        if delta.id and not call.id:
            call.id = delta.id
        if name and not call.name:
            call.name = name
        if function is not None:
            call.argument_parts.append(_arguments_text(call.name, function.arguments))

    def build(self) -> list[ResponseToolCall]:
        """Every named call, arguments parsed; ``function.index`` counts from 0."""
        named = [call for call in self._calls if call.name]
        return [
            ResponseToolCall(
                function=ResponseToolCallFunction(
                    index=position,
                    name=call.name,
                    arguments=parse_tool_arguments(call.name, "".join(call.argument_parts)),
                ),
                id=call.id,
            )
            for position, call in enumerate(named)
        ]

    def _call_for(self, delta: ToolCallDelta, name: str | None) -> _ToolCallParts:
        if delta.index is not None:
            call = self._by_index.get(delta.index)
            if call is None:
                call = self._by_index[delta.index] = self._start_call()
            return call
        last = self._calls[-1] if self._calls else None
        starts_new = (delta.id and (last is None or delta.id != last.id)) or (name and not delta.id)
        if last is None or starts_new:
            return self._start_call()
        return last

    def _start_call(self) -> _ToolCallParts:
        call = _ToolCallParts(id=None, name="", argument_parts=[])
        self._calls.append(call)
        return call
