"""Ollama chat messages and tool definitions -> OpenAI messages and tools.

Images become ``image_url`` content parts; an assistant's ``thinking`` goes back as
``reasoning_content`` where the dialect takes it (``Dialect.sends_reasoning``); assistant tool
calls get ids (kept when given, ``call_<message>_<call>`` otherwise) and JSON-text arguments;
each ``role: tool`` result is linked to the call it answers: its own ``tool_call_id``, else the
oldest unanswered call with the same ``tool_name``, else the oldest unanswered call.

May import: stdlib, msgspec, ``ollama_shim.wire``, ``ollama_shim.errors``, ``ollama_shim.dialect``,
other ``ollama_shim.translate`` modules.
"""

from __future__ import annotations

from collections import deque

import msgspec

from ollama_shim.dialect import Dialect
from ollama_shim.errors import BadRequest
from ollama_shim.translate.images import image_data_url
from ollama_shim.translate.json_depth import MAX_JSON_DEPTH, exceeds_depth
from ollama_shim.wire import ollama
from ollama_shim.wire import openai as oai

__all__ = ["content_to_openai", "messages_to_openai", "tools_to_openai"]

_ROLES = ("system", "user", "assistant", "tool")


class _ToolCallLedger:
    """Assistant tool calls seen so far that no tool message has answered yet, oldest first.

    Every call gets a serial number; ``_pending`` holds the serials still unanswered, and the
    queues by age, by name and by id hold serials that may since have been answered (skipped
    when met, so that each serial is dropped at most once per queue). Each message therefore
    costs O(1) amortised, whatever the history.
    """

    __slots__ = ("_by_age", "_by_id", "_by_name", "_ids", "_pending", "_used_ids")

    def __init__(self) -> None:
        self._ids: list[str] = []  # call id by serial
        self._pending: set[int] = set()
        self._by_age: deque[int] = deque()
        self._by_name: dict[str, deque[int]] = {}
        self._by_id: dict[str, list[int]] = {}
        self._used_ids: set[str] = set()

    def register(self, message_number: int, calls: list[ollama.ToolCall]) -> list[oai.OutToolCall]:
        out: list[oai.OutToolCall] = []
        for call_number, call in enumerate(calls):
            call_id = call.id or self._new_id(f"call_{message_number}_{call_number}")
            self._used_ids.add(call_id)
            serial = len(self._ids)
            self._ids.append(call_id)
            self._pending.add(serial)
            self._by_age.append(serial)
            self._by_name.setdefault(call.function.name, deque()).append(serial)
            self._by_id.setdefault(call_id, []).append(serial)
            out.append(oai.OutToolCall(id=call_id, function=_function_call(call.function)))
        return out

    def answer(self, tool_call_id: str | None, tool_name: str | None) -> str | None:
        """The id a tool result answers: its own ``tool_call_id``, else the oldest unanswered call
        with the same name, else the oldest unanswered call; None when nothing is waiting."""
        if tool_call_id:
            self._pending.difference_update(self._by_id.pop(tool_call_id, ()))
            return tool_call_id
        serial = None
        if tool_name is not None and tool_name in self._by_name:
            serial = self._oldest_pending(self._by_name[tool_name])
        if serial is None:
            serial = self._oldest_pending(self._by_age)
        if serial is None:
            return None
        self._pending.discard(serial)
        return self._ids[serial]

    def _oldest_pending(self, queue: deque[int]) -> int | None:
        """The first serial in ``queue`` still unanswered; answered ones ahead of it are dropped."""
        while queue and queue[0] not in self._pending:
            queue.popleft()
        return queue[0] if queue else None

    def _new_id(self, candidate: str) -> str:
        unique, suffix = candidate, 1
        while unique in self._used_ids:
            unique, suffix = f"{candidate}_{suffix}", suffix + 1
        return unique


def messages_to_openai(messages: list[ollama.RequestMessage], dialect: Dialect) -> list[oai.OutMessage]:
    """Chat history -> OpenAI messages; tool results are linked to the calls they answer."""
    ledger = _ToolCallLedger()
    return [_message_to_openai(number, message, ledger, dialect) for number, message in enumerate(messages)]


def _message_to_openai(
    number: int, message: ollama.RequestMessage, ledger: _ToolCallLedger, dialect: Dialect
) -> oai.OutMessage:
    role = message.role.lower()
    if role not in _ROLES:
        raise BadRequest(f'invalid role "{message.role}": must be one of system, user, assistant, tool')
    content = content_to_openai(message.content, message.images, where=f"messages[{number}].images")
    if role == "assistant":
        reasoning = (message.thinking or None) if dialect.sends_reasoning else None
        calls = ledger.register(number, message.tool_calls) if message.tool_calls else None
        return oai.OutMessage(role=role, content=content, tool_calls=calls, reasoning_content=reasoning)
    if role == "tool":
        return oai.OutMessage(
            role=role,
            content=content,
            name=message.tool_name if dialect.sends_tool_name else None,
            tool_call_id=ledger.answer(message.tool_call_id, message.tool_name),
        )
    return oai.OutMessage(role=role, content=content)


def content_to_openai(
    text: str, images: list[str] | None, *, where: str
) -> str | list[oai.ContentPart | oai.ImagePart]:
    """Plain text, or text and image parts when there are images."""
    if not images:
        return text
    parts: list[oai.ContentPart | oai.ImagePart] = [oai.ContentPart(text=text)] if text else []
    for position, image in enumerate(images):
        url = image_data_url(image, where=f"{where}[{position}]")
        parts.append(oai.ImagePart(image_url=oai.ImageURL(url=url)))
    return parts


def _function_call(function: ollama.ToolCallFunction) -> oai.FunctionCall:
    """OpenAI wants the arguments as JSON text; Ollama clients send an object (or, some, text)."""
    arguments = function.arguments
    if arguments is None:
        return oai.FunctionCall(name=function.name, arguments="{}")
    if isinstance(arguments, str):
        text = arguments.encode()
        if exceeds_depth(text):
            raise BadRequest(
                f'invalid tool call arguments for "{function.name}": exceeded max depth of {MAX_JSON_DEPTH}'
            )
        try:
            msgspec.json.decode(text)
        except msgspec.DecodeError as exc:
            raise BadRequest(f'invalid tool call arguments for "{function.name}"') from exc
        return oai.FunctionCall(name=function.name, arguments=arguments)
    return oai.FunctionCall(name=function.name, arguments=msgspec.json.encode(arguments).decode())


def tools_to_openai(tools: list[ollama.Tool] | None) -> list[oai.OutTool] | None:
    """Tool definitions; an empty list is left out (OpenAI rejects ``tools: []``)."""
    if not tools:
        return None
    return [
        oai.OutTool(
            type=tool.type,
            function=oai.OutFunction(
                name=tool.function.name,
                description=tool.function.description,
                parameters=tool.function.parameters,
            ),
        )
        for tool in tools
    ]
