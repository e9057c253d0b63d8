"""Ollama's wire shapes: what clients send to the shim and what the shim answers.

Field order follows Ollama's Go structs, because clients and tests compare bytes. Every struct
that is encoded uses ``omit_defaults`` so that an unset optional key is *absent*, never ``null``
(ollama-js throws on any object holding an ``error`` key; Zed wants strings, not nulls).
Fields that Ollama always writes (``model``, ``created_at``, ``done``, ``message.content``,
``response``) are declared without a default so they are always encoded.

May import: msgspec, stdlib.
"""

from __future__ import annotations

from typing import Any

import msgspec

# ---------------------------------------------------------------------------
# Requests (decoded; unknown fields are ignored, as Ollama ignores them)
# ---------------------------------------------------------------------------

JSONObject = dict[str, Any]


class ToolCallFunction(msgspec.Struct, omit_defaults=True):
    name: str = ""
    # Ollama sends an object; some clients send the OpenAI JSON string. Both are accepted.
    arguments: JSONObject | str | None = None
    index: int | None = None


class ToolCall(msgspec.Struct, omit_defaults=True):
    function: ToolCallFunction
    id: str | None = None
    type: str | None = None


class RequestMessage(msgspec.Struct, omit_defaults=True):
    role: str
    content: str = ""
    thinking: str | None = None
    images: list[str] | None = None
    tool_calls: list[ToolCall] | None = None
    tool_name: str | None = None
    tool_call_id: str | None = None


class ToolFunction(msgspec.Struct, omit_defaults=True):
    name: str
    description: str | None = None
    parameters: JSONObject | None = None


class Tool(msgspec.Struct, omit_defaults=True):
    function: ToolFunction
    type: str = "function"


# `format`: "json", a JSON-schema object, or null/"" for none.
Format = str | JSONObject | None
# `think`: true/false or a level ("low", "medium", "high", "max").
Think = bool | str | None
# `keep_alive`: seconds as a number, or a Go duration string ("5m", "0").
KeepAlive = float | str | None


class _ModelRequest(msgspec.Struct, omit_defaults=True):
    """Fields every model request shares (decoding only: their order does not matter)."""

    model: str = ""
    keep_alive: KeepAlive = None
    options: JSONObject | None = None


class _GenerationRequest(_ModelRequest, omit_defaults=True):
    """Fields /api/chat and /api/generate share."""

    stream: bool | None = None
    format: Format = None
    think: Think = None
    truncate: bool | None = None
    shift: bool | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None


class ChatRequest(_GenerationRequest, omit_defaults=True):
    messages: list[RequestMessage] | None = None
    tools: list[Tool] | None = None


class GenerateRequest(_GenerationRequest, omit_defaults=True):
    prompt: str = ""
    suffix: str | None = None
    system: str | None = None
    template: str | None = None
    context: list[int] | None = None
    raw: bool | None = None
    images: list[str] | None = None


class EmbedRequest(_ModelRequest, omit_defaults=True):
    input: str | list[Any] | None = None
    truncate: bool | None = None
    dimensions: int | None = None


class EmbeddingsRequest(_ModelRequest, omit_defaults=True):
    prompt: str = ""


class ShowRequest(msgspec.Struct, omit_defaults=True):
    model: str = ""
    name: str = ""  # legacy spelling, still sent by Continue and LiteLLM
    verbose: bool | None = None


# ---------------------------------------------------------------------------
# Responses (encoded)
# ---------------------------------------------------------------------------


class Version(msgspec.Struct):
    version: str


class ModelDetails(msgspec.Struct):
    # Zed and OllamaKit decode these as non-null strings: never None.
    parent_model: str
    format: str
    family: str
    families: list[str]
    parameter_size: str
    quantization_level: str


class TagsModel(msgspec.Struct, omit_defaults=True):
    name: str
    model: str
    modified_at: str
    size: int
    digest: str
    details: ModelDetails
    capabilities: list[str] | None = None


class TagsResponse(msgspec.Struct):
    models: list[TagsModel]


class PsModel(msgspec.Struct):
    name: str
    model: str
    size: int
    digest: str
    details: ModelDetails
    expires_at: str
    size_vram: int
    context_length: int


class PsResponse(msgspec.Struct):
    models: list[PsModel]


class ShowResponse(msgspec.Struct, omit_defaults=True, kw_only=True):
    license: str | None = None
    modelfile: str | None = None
    parameters: str | None = None
    template: str | None = None
    system: str | None = None
    details: ModelDetails | None = None
    # model_info is a required key for ollama-python, capabilities an array Copilot reads:
    # both are declared without defaults so they are always encoded, even when empty.
    model_info: JSONObject
    capabilities: list[str]
    modified_at: str | None = None


class ResponseToolCallFunction(msgspec.Struct):
    index: int
    name: str
    arguments: JSONObject


class ResponseToolCall(msgspec.Struct, omit_defaults=True, kw_only=True):
    id: str | None = None  # first, as Ollama writes it: {"id":..,"function":{..}}
    function: ResponseToolCallFunction


class ResponseMessage(msgspec.Struct, omit_defaults=True):
    role: str
    content: str
    thinking: str | None = None
    images: list[str] | None = None
    tool_calls: list[ResponseToolCall] | None = None


class ChatChunk(msgspec.Struct, omit_defaults=True):
    """One /api/chat NDJSON line, or the whole answer when not streaming."""

    model: str
    created_at: str
    message: ResponseMessage
    done: bool
    done_reason: str | None = None
    total_duration: int | None = None
    load_duration: int | None = None
    prompt_eval_count: int | None = None
    prompt_eval_duration: int | None = None
    eval_count: int | None = None
    eval_duration: int | None = None


class GenerateChunk(msgspec.Struct, omit_defaults=True, kw_only=True):
    """One /api/generate NDJSON line, or the whole answer when not streaming."""

    model: str
    created_at: str
    response: str
    thinking: str | None = None
    done: bool
    done_reason: str | None = None
    context: list[int] | None = None
    total_duration: int | None = None
    load_duration: int | None = None
    prompt_eval_count: int | None = None
    prompt_eval_duration: int | None = None
    eval_count: int | None = None
    eval_duration: int | None = None


class EmbedResponse(msgspec.Struct, omit_defaults=True):
    model: str
    embeddings: list[list[float]]
    total_duration: int | None = None
    load_duration: int | None = None
    prompt_eval_count: int | None = None


class EmbeddingsResponse(msgspec.Struct):
    embedding: list[float]


class ErrorResponse(msgspec.Struct):
    error: str


class StatusResponse(msgspec.Struct):
    status: str


class ProgressResponse(msgspec.Struct, omit_defaults=True):
    """One line of ``/api/pull``'s stream: a status, with a blob's digest and byte counts while it downloads."""

    status: str
    digest: str | None = None
    total: int | None = None
    completed: int | None = None
