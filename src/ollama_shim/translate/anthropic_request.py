"""Anthropic Messages requests -> an Ollama ``ChatRequest`` -> the backend's chat completion.

``messages_to_ollama`` is the Anthropic half: the same ``ChatRequest`` a ``/api/chat`` client would
have sent for this conversation. ``messages_request_to_openai`` then runs the ``/api/chat``
translation (``translate.request.chat_request_to_openai``) on it and adds what only the Messages API
asks for (``tool_choice``, a prefill). ``estimate_input_tokens`` is the documented estimate used
where the backend has no tokenizer endpoint.

What is mapped (the field table is in ``docs/translation.md``):

- ``system`` (a string, or text blocks joined with a blank line; ``cache_control`` ignored) -> a
  leading system message; ``role: "system"`` entries inside ``messages`` stay where they are.
- ``text`` blocks -> the message text (joined with a blank line); ``image`` blocks with a
  ``base64`` source -> the message's images; other sources -> 400 (the translated path sends
  images as data only).
- ``tool_use`` -> an assistant tool call, id kept; ``tool_result`` -> a ``role: tool`` message
  before the user's own text, its ``tool_use_id`` as ``tool_call_id``; ``is_error`` prefixes the
  text with ``Error: ``. ``thinking`` -> the message's ``thinking``; ``redacted_thinking`` and
  unknown block types are dropped; a message left empty is dropped.
- ``max_tokens`` -> ``num_predict`` (at most the model's context when it is known);
  ``stop_sequences`` -> ``stop``; ``temperature``/``top_p``/``top_k`` -> the same options.
- ``tools`` (client tools; server tools such as ``web_search_*`` are dropped) -> functions;
  ``tool_choice``: ``auto`` -> nothing (the default), ``any`` -> ``"required"``, ``tool`` ->
  ``"required"`` with only that tool offered, ``none`` -> no tools at all.
- ``thinking``: ``enabled`` -> ``think: true``, ``disabled`` -> ``think: false``; otherwise
  ``output_config.effort`` -> that level (``xhigh`` -> ``high``), else unset. ``budget_tokens`` is
  not sent. ``metadata`` is ignored.
- A custom model's layers (``translate.customise``) are laid on that ``/api/chat`` request, as
  ``/api/chat`` lays them: its system prompt unless the request has one, its messages first, its
  parameters under the request's own.
- A final assistant message is a prefill: the backend continues it (llama.cpp does so by default;
  vLLM is asked with ``continue_final_message``) and only the new text is returned (llama.cpp repeats
  the prefill before the continuation; the answer translator removes it). Thinking is
  switched off for a prefill, since llama.cpp refuses both together.

May import: stdlib, msgspec, ``ollama_shim.wire``, ``ollama_shim.errors``, ``ollama_shim.dialect``,
other ``ollama_shim.translate`` modules.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import msgspec

from ollama_shim.dialect import Dialect
from ollama_shim.errors import BadRequest
from ollama_shim.translate.customise import Customisation, apply_customisation
from ollama_shim.translate.options import IgnoredOption
from ollama_shim.translate.request import Delivery, chat_request_to_openai
from ollama_shim.wire import anthropic as am
from ollama_shim.wire import ollama

__all__ = [
    "SYSTEM_ROLES",
    "MessagesPlan",
    "check_messages_request",
    "estimate_input_tokens",
    "has_own_system",
    "is_prefill",
    "messages_request_to_openai",
    "messages_to_ollama",
]

_JOIN = "\n\n"
_CHARS_PER_TOKEN = 4
_TOKENS_PER_MESSAGE = 4  # role markers and separators a chat template adds around each message
_CLIENT_TOOL_TYPES = (None, "", "custom")
SYSTEM_ROLES = ("system", "developer")  # what ``apply_customisation`` counts as the request's own system
_EFFORTS = {"low": "low", "medium": "medium", "high": "high", "xhigh": "high", "max": "max"}


@dataclass(frozen=True)
class MessagesPlan:
    """A POST to ``/v1/chat/completions`` for one Messages request (always streamed upstream)."""

    path: ClassVar[str] = "/v1/chat/completions"
    request: am.ChatCompletionRequest
    chat: ollama.ChatRequest  # the same conversation as an /api/chat request
    ignored_options: tuple[IgnoredOption, ...] = ()

    @property
    def want_tool_calls(self) -> bool:
        return bool(self.chat.tools)

    @property
    def hide_thinking(self) -> bool:
        return self.chat.think is False


def check_messages_request(req: am.MessagesRequest) -> None:
    """The checks Anthropic (and Ollama) make before anything is sent; ``BadRequest`` in their words."""
    if not req.model:
        raise BadRequest("model is required")
    if req.max_tokens is None or req.max_tokens <= 0:
        raise BadRequest("max_tokens is required and must be positive")
    if not req.messages:
        raise BadRequest("messages is required")


def is_prefill(req: am.CountTokensRequest) -> bool:
    """The conversation ends with an assistant turn that has text: the answer continues it."""
    if not req.messages:
        return False
    last = req.messages[-1]
    if last.role.lower() != "assistant":
        return False
    if isinstance(last.content, str):
        return bool(last.content)
    kinds = {block.type for block in last.content}
    return "text" in kinds and "tool_use" not in kinds


# ---------------------------------------------------------------------------
# Anthropic -> Ollama
# ---------------------------------------------------------------------------


def messages_to_ollama(req: am.MessagesRequest, *, context_length: int | None = None) -> ollama.ChatRequest:
    """The ``/api/chat`` request this Messages request means (no backend specifics yet)."""
    messages: list[ollama.RequestMessage] = []
    system = system_text(req.system)
    if system:
        messages.append(ollama.RequestMessage(role="system", content=system))
    for number, message in enumerate(req.messages or []):
        messages.extend(_message_to_ollama(number, message))
    tools = _tools_to_ollama(req.tools, req.tool_choice)
    prefill = is_prefill(req)
    return ollama.ChatRequest(
        model=req.model,
        messages=messages,
        tools=tools,
        stream=True,
        think=False if prefill else _think(req.thinking, req.output_config),
        options=_options(req, context_length),
    )


def system_text(system: am.System) -> str:
    """``system`` as one string: the text blocks joined with a blank line."""
    if system is None or isinstance(system, str):
        return system or ""
    return _JOIN.join(block.text or "" for block in system if block.type == "text" and block.text)


def has_own_system(req: am.CountTokensRequest) -> bool:
    """Whether the request brings its own system prompt (``system`` text, or a leading
    ``role: "system"`` message): a custom model's then does not apply."""
    if system_text(req.system):
        return True
    messages = req.messages or []
    return bool(messages) and messages[0].role.lower() in SYSTEM_ROLES


def _message_to_ollama(number: int, message: am.InMessage) -> list[ollama.RequestMessage]:
    role = message.role.lower()
    if isinstance(message.content, str):
        return [ollama.RequestMessage(role=role, content=message.content)] if message.content else []
    texts: list[str] = []
    images: list[str] = []
    thinking: str | None = None
    calls: list[ollama.ToolCall] = []
    results: list[ollama.RequestMessage] = []
    for position, block in enumerate(message.content):
        where = f"messages[{number}].content[{position}]"
        if block.type == "text":
            if block.text:
                texts.append(block.text)
        elif block.type == "image":
            images.append(_image_data(block.source, where))
        elif block.type == "tool_use":
            calls.append(_tool_call(block, where))
        elif block.type == "tool_result":
            results.append(_tool_result(block, where))
        elif block.type == "thinking":
            thinking = block.thinking or thinking
        # redacted_thinking, document, search_result, server tool blocks ...: dropped
    out = results  # tool results answer the previous turn: they come before the user's own text
    if texts or images or calls or thinking:
        out.append(
            ollama.RequestMessage(
                role=role, content=_JOIN.join(texts), thinking=thinking, images=images or None,
                tool_calls=calls or None,
            )
        )
    return out


def _image_data(source: am.ImageSource | None, where: str) -> str:
    if source is None or source.type != "base64":
        kind = source.type if source is not None else "missing"
        raise BadRequest(f"invalid image source type in {where}: {kind}. Only base64 images are supported.")
    if not source.data:
        raise BadRequest(f"invalid image in {where}: no image data")
    return source.data


def _tool_call(block: am.ContentBlock, where: str) -> ollama.ToolCall:
    if not block.id:
        raise BadRequest(f"tool_use block missing required 'id' field in {where}")
    if not block.name:
        raise BadRequest(f"tool_use block missing required 'name' field in {where}")
    arguments = block.input if block.input is not None else {}
    if not isinstance(arguments, dict):
        raise BadRequest(f"tool_use input must be an object in {where}")
    return ollama.ToolCall(id=block.id, function=ollama.ToolCallFunction(name=block.name, arguments=arguments))


def _tool_result(block: am.ContentBlock, where: str) -> ollama.RequestMessage:
    if not block.tool_use_id:
        raise BadRequest(f"tool_result block missing required 'tool_use_id' field in {where}")
    texts: list[str] = []
    images: list[str] = []
    if isinstance(block.content, str):
        texts.append(block.content)
    else:
        for position, part in enumerate(block.content or []):
            if part.type == "text" and part.text:
                texts.append(part.text)
            elif part.type == "image":
                images.append(_image_data(part.source, f"{where}.content[{position}]"))
    text = _JOIN.join(texts)
    if block.is_error:
        text = f"Error: {text}"
    return ollama.RequestMessage(role="tool", content=text, images=images or None, tool_call_id=block.tool_use_id)


def _tools_to_ollama(tools: list[am.InTool] | None, choice: am.ToolChoice | None) -> list[ollama.Tool] | None:
    if not tools or (choice is not None and choice.type == "none"):
        return None
    out: list[ollama.Tool] = []
    for position, tool in enumerate(tools):
        if tool.type not in _CLIENT_TOOL_TYPES:
            continue  # a server tool (web search, code execution, ...): no backend runs it
        if not tool.name:
            raise BadRequest(f"tools[{position}]: name is required")
        function = ollama.ToolFunction(name=tool.name, description=tool.description, parameters=tool.input_schema)
        out.append(ollama.Tool(function=function))
    if choice is not None and choice.type == "tool":
        out = [tool for tool in out if tool.function.name == choice.name]
        if not out:
            raise BadRequest(f'tool_choice names a tool that is not in tools: "{choice.name}"')
    return out or None


def _think(thinking: am.ThinkingConfig | None, output: am.OutputConfig | None) -> bool | str | None:
    if thinking is not None and thinking.type == "enabled":
        return True
    if thinking is not None and thinking.type == "disabled":
        return False
    effort = output.effort if output is not None else None
    if effort in _EFFORTS:
        return _EFFORTS[effort]
    return None  # adaptive and anything newer, without an effort: the model's default


def _options(req: am.MessagesRequest, context_length: int | None) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if req.max_tokens is not None:
        limit = req.max_tokens
        if context_length:
            limit = min(limit, context_length)  # some backends refuse more than the context
        options["num_predict"] = limit
    if req.stop_sequences:
        options["stop"] = req.stop_sequences
    for key in ("temperature", "top_p", "top_k"):
        value = getattr(req, key)
        if value is not None:
            options[key] = value
    return options


# ---------------------------------------------------------------------------
# Ollama -> the backend's chat completion
# ---------------------------------------------------------------------------


def messages_request_to_openai(
    req: am.MessagesRequest, upstream_model: str, dialect: Dialect, *, context_length: int | None = None,
    custom: Customisation | None = None,
) -> MessagesPlan:
    """The chat completion for a Messages request (for a custom model, with its layers). The backend
    is always asked to stream: a ``stream: false`` answer is assembled from the same events."""
    chat = messages_to_ollama(req, context_length=context_length)
    if custom is not None:
        chat = apply_customisation(chat, custom)
    delivery = Delivery.STREAM if req.stream else Delivery.GATHER
    plan = chat_request_to_openai(chat, upstream_model, dialect, delivery)  # a prefill's flags included
    request = am.ChatCompletionRequest(
        **msgspec.structs.asdict(plan.request),
        tool_choice=_tool_choice(req.tool_choice) if chat.tools else None,
    )
    return MessagesPlan(request=request, chat=chat, ignored_options=plan.ignored_options)


def _tool_choice(choice: am.ToolChoice | None) -> str | None:
    # "tool" offers only the named tool (see _tools_to_ollama), so "required" picks it.
    if choice is not None and choice.type in ("any", "tool"):
        return "required"
    return None  # auto is every backend's default


# ---------------------------------------------------------------------------
# Token estimate
# ---------------------------------------------------------------------------


def estimate_input_tokens(req: am.CountTokensRequest, custom: Customisation | None = None) -> int:
    """A tokenizer-free estimate of the prompt's size: ceil(characters / 4) of the system text, every
    message's role, text, thinking, tool calls (name and arguments JSON) and tool results, and each
    tool's name, description and schema JSON; plus 4 per message (and 4 for the system text) for
    the chat template's markers. A custom model's system prompt (where it applies) and messages
    count the same way. Images are not counted. At least 1."""
    chars = 0
    overhead = 0
    system = system_text(req.system)
    if custom is not None:
        system = system if has_own_system(req) else custom.system
        for role, content in custom.messages:
            chars += len(role) + len(content)
            overhead += _TOKENS_PER_MESSAGE
    if system:
        chars += len(system)
        overhead += _TOKENS_PER_MESSAGE
    for message in req.messages or []:
        overhead += _TOKENS_PER_MESSAGE
        chars += len(message.role)
        blocks = [am.ContentBlock(type="text", text=message.content)] if isinstance(message.content, str) else (
            message.content
        )
        chars += sum(_block_chars(block) for block in blocks)
    for tool in req.tools or []:
        chars += len(tool.name) + len(tool.description or "")
        if tool.input_schema is not None:
            chars += len(msgspec.json.encode(tool.input_schema))
    return max(1, math.ceil(chars / _CHARS_PER_TOKEN) + overhead)


def _block_chars(block: am.ContentBlock) -> int:
    if block.type == "text":
        return len(block.text or "")
    if block.type == "thinking":
        return len(block.thinking or "")
    if block.type == "tool_use":
        return len(block.name or "") + len(msgspec.json.encode(block.input))
    if block.type == "tool_result":
        if isinstance(block.content, str):
            return len(block.content)
        return sum(_block_chars(part) for part in block.content or [])
    return 0
