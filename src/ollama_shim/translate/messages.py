"""Ollama chat messages and tool definitions -> OpenAI messages and tools.

Images become ``image_url`` content parts; assistant tool calls get ids (kept when given,
``call_<message>_<call>`` otherwise) and JSON-text arguments; each ``role: tool`` result is linked
to the call it answers: its own ``tool_call_id``, else the oldest unanswered call with the same
``tool_name``, else the oldest unanswered call.

May import: stdlib, msgspec, ``ollama_shim.wire``, ``ollama_shim.errors``, ``ollama_shim.dialect``,
other ``ollama_shim.translate`` modules.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import msgspec

from ollama_shim.dialect import Dialect
from ollama_shim.errors import BadRequest
from ollama_shim.translate.images import image_data_url
from ollama_shim.wire import ollama
from ollama_shim.wire import openai as oai

__all__ = ["content_to_openai", "messages_to_openai", "tools_to_openai"]

_ROLES = ("system", "user", "assistant", "tool")


@dataclass(frozen=True)
class _PendingCall:
    id: str
    name: str


@dataclass
class _ToolCallLedger:
    """Assistant tool calls seen so far that no tool message has answered yet, oldest first."""

    pending: list[_PendingCall] = field(default_factory=list)
    used_ids: set[str] = field(default_factory=set)

    def register(self, message_number: int, calls: list[ollama.ToolCall]) -> list[oai.OutToolCall]:
        out: list[oai.OutToolCall] = []
        for call_number, call in enumerate(calls):
            call_id = call.id or self._new_id(f"call_{message_number}_{call_number}")
            self.used_ids.add(call_id)
            self.pending.append(_PendingCall(call_id, call.function.name))
            out.append(oai.OutToolCall(id=call_id, function=_function_call(call.function)))
        return out

    def answer(self, tool_call_id: str | None, tool_name: str | None) -> str | None:
        """The id a tool result answers: its own ``tool_call_id``, else the oldest unanswered call
        with the same name, else the oldest unanswered call; None when nothing is waiting."""
        if tool_call_id:
            self.pending = [call for call in self.pending if call.id != tool_call_id]
            return tool_call_id
        match = next((call for call in self.pending if call.name == tool_name), None)
        if match is None and self.pending:
            match = self.pending[0]
        if match is None:
            return None
        self.pending.remove(match)
        return match.id

    def _new_id(self, candidate: str) -> str:
        unique, suffix = candidate, 1
        while unique in self.used_ids:
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
    # `thinking` from earlier assistant turns is not sent back: templates drop it anyway.
    if role == "assistant" and message.tool_calls:
        return oai.OutMessage(role=role, content=content, tool_calls=ledger.register(number, message.tool_calls))
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
        try:
            msgspec.json.decode(arguments)
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
