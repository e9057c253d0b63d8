"""Anthropic Messages wire shapes: what a client sends to ``/v1/messages`` (and
``/v1/messages/count_tokens``) and the message, events and errors the shim answers with.

Requests are decoded leniently: unknown fields (``cache_control``, ``citations``, ``metadata``,
``context_management``, ...) are ignored. A content block is one flat struct keyed by ``type``, so a
block type the shim does not know (``document``, ``search_result``, ...) decodes and is dropped by
the translator rather than failing the request. Answers are tagged structs whose ``type`` comes
first, as Anthropic writes them; the tag of a stream event is also its SSE ``event:`` name.

May import: msgspec, stdlib, ``ollama_shim.wire.openai``.
"""

from __future__ import annotations

from typing import Any

import msgspec

from ollama_shim.wire import openai as oai

JSONObject = dict[str, Any]

# ---------------------------------------------------------------------------
# Requests (decoded)
# ---------------------------------------------------------------------------


class ImageSource(msgspec.Struct):
    type: str = ""  # "base64" | "url" (| "file", not supported)
    media_type: str | None = None
    data: str | None = None
    url: str | None = None


class ContentBlock(msgspec.Struct):
    """Any request content block; which fields matter depends on ``type``."""

    type: str
    text: str | None = None  # text
    source: ImageSource | None = None  # image
    id: str | None = None  # tool_use
    name: str | None = None  # tool_use
    input: Any = None  # tool_use: the arguments object
    tool_use_id: str | None = None  # tool_result
    content: str | list[ContentBlock] | None = None  # tool_result
    is_error: bool | None = None  # tool_result
    thinking: str | None = None  # thinking
    signature: str | None = None  # thinking


class InMessage(msgspec.Struct):
    role: str
    content: str | list[ContentBlock]


class InTool(msgspec.Struct):
    name: str = ""
    description: str | None = None
    input_schema: JSONObject | None = None
    type: str | None = None  # "custom" or absent for client tools; server tools are named by type


class ToolChoice(msgspec.Struct):
    type: str  # auto | any | tool | none
    name: str | None = None
    disable_parallel_tool_use: bool | None = None


class ThinkingConfig(msgspec.Struct):
    type: str  # enabled | disabled | adaptive
    budget_tokens: int | None = None


System = str | list[ContentBlock] | None


class OutputConfig(msgspec.Struct):
    effort: str | None = None  # low | medium | high | xhigh | max


class CountTokensRequest(msgspec.Struct):
    model: str = ""
    messages: list[InMessage] | None = None
    system: System = None
    tools: list[InTool] | None = None
    tool_choice: ToolChoice | None = None
    thinking: ThinkingConfig | None = None
    output_config: OutputConfig | None = None


class MessagesRequest(CountTokensRequest):
    max_tokens: int | None = None
    stop_sequences: list[str] | None = None
    stream: bool | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    metadata: Any = None  # accepted and ignored


class ModelOnly(msgspec.Struct):
    """Just the ``model`` of a request body (for a request forwarded as it came)."""

    model: str = ""


# ---------------------------------------------------------------------------
# Answers (encoded)
# ---------------------------------------------------------------------------


class TextOut(msgspec.Struct, tag_field="type", tag="text"):
    text: str


class ThinkingOut(msgspec.Struct, tag_field="type", tag="thinking"):
    thinking: str
    signature: str = ""  # required by the SDK's type; the shim has nothing to sign


class ToolUseOut(msgspec.Struct, tag_field="type", tag="tool_use"):
    id: str
    name: str
    input: JSONObject


OutBlock = TextOut | ThinkingOut | ToolUseOut


class Usage(msgspec.Struct):
    input_tokens: int
    output_tokens: int


class Message(msgspec.Struct, tag_field="type", tag="message"):
    """The whole answer (``stream: false``), and the head of a stream in ``message_start``."""

    id: str
    role: str
    model: str
    content: list[OutBlock]
    stop_reason: str | None
    stop_sequence: str | None
    usage: Usage


class TextDelta(msgspec.Struct, tag_field="type", tag="text_delta"):
    text: str


class ThinkingDelta(msgspec.Struct, tag_field="type", tag="thinking_delta"):
    thinking: str


class SignatureDelta(msgspec.Struct, tag_field="type", tag="signature_delta"):
    signature: str


class InputJsonDelta(msgspec.Struct, tag_field="type", tag="input_json_delta"):
    partial_json: str


BlockDelta = TextDelta | ThinkingDelta | SignatureDelta | InputJsonDelta


class MessageStart(msgspec.Struct, tag_field="type", tag="message_start"):
    message: Message


class Ping(msgspec.Struct, tag_field="type", tag="ping"):
    pass


class ContentBlockStart(msgspec.Struct, tag_field="type", tag="content_block_start"):
    index: int
    content_block: OutBlock


class ContentBlockDelta(msgspec.Struct, tag_field="type", tag="content_block_delta"):
    index: int
    delta: BlockDelta


class ContentBlockStop(msgspec.Struct, tag_field="type", tag="content_block_stop"):
    index: int


class StopInfo(msgspec.Struct):
    stop_reason: str
    stop_sequence: str | None = None


class MessageDelta(msgspec.Struct, tag_field="type", tag="message_delta"):
    delta: StopInfo
    usage: Usage


class MessageStop(msgspec.Struct, tag_field="type", tag="message_stop"):
    pass


class ErrorDetail(msgspec.Struct):
    type: str
    message: str


class Error(msgspec.Struct, tag_field="type", tag="error"):
    """An error answer, and the ``event: error`` frame after a stream began."""

    error: ErrorDetail


StreamEvent = (
    MessageStart | Ping | ContentBlockStart | ContentBlockDelta | ContentBlockStop | MessageDelta | MessageStop
)


class TokenCount(msgspec.Struct):
    input_tokens: int


# ---------------------------------------------------------------------------
# What the translation adds to a chat-completions request
# ---------------------------------------------------------------------------


class ChatCompletionRequest(oai.ChatCompletionRequest, omit_defaults=True, kw_only=True):
    """A chat-completions request with the fields only the Messages translation sets."""

    tool_choice: str | JSONObject | None = None
    parallel_tool_calls: bool | None = None


class ApplyTemplateAnswer(msgspec.Struct):
    """llama.cpp ``POST /apply-template``."""

    prompt: str


class TokenizeAnswer(msgspec.Struct):
    """llama.cpp ``POST /tokenize``: ids (or ``{id, piece}`` objects with ``with_pieces``)."""

    tokens: list[Any] = msgspec.field(default_factory=list)


class TokenizeRequest(msgspec.Struct):
    """llama.cpp ``POST /tokenize`` (``model`` routes it on a llama-server router). The rendered
    template already holds the special tokens as text: they are parsed, none is added."""

    content: str
    model: str
    add_special: bool = False
    parse_special: bool = True
