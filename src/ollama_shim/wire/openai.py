"""OpenAI-compatible wire shapes: what the shim sends to a backend and what it reads back.

Requests are encoded with ``omit_defaults`` so that a parameter the shim did not set is absent
(OpenAI answers 400 to unknown keys, so an absent key and a ``null`` are not the same thing).
Responses are decoded leniently: every field optional, unknown fields ignored, and the few
fields whose type differs between backends typed as a union (``error`` is an object on most
backends and a bare string on some LM Studio versions).

May import: msgspec, stdlib, ``ollama_shim.wire.backends``.
"""

from __future__ import annotations

from typing import Any

import msgspec

from .backends import LlamaCppMeta, LlamaCppStatus, ModelArchitecture, NonEmpty

JSONObject = dict[str, Any]

# ---------------------------------------------------------------------------
# Requests (encoded)
# ---------------------------------------------------------------------------


class ImageURL(msgspec.Struct):
    url: str


class ContentPart(msgspec.Struct, omit_defaults=True, tag_field="type", tag="text"):
    text: str


class ImagePart(msgspec.Struct, omit_defaults=True, tag_field="type", tag="image_url"):
    image_url: ImageURL


class FunctionCall(msgspec.Struct):
    name: str
    arguments: str  # JSON text, as OpenAI wants it


class OutToolCall(msgspec.Struct):
    id: str
    function: FunctionCall
    type: str = "function"


class OutMessage(msgspec.Struct, omit_defaults=True):
    role: str
    content: str | list[ContentPart | ImagePart] | None = None
    name: str | None = None
    tool_calls: list[OutToolCall] | None = None
    tool_call_id: str | None = None
    reasoning_content: str | None = None  # an assistant's earlier thinking (llama.cpp)


class JSONSchemaFormat(msgspec.Struct, omit_defaults=True):
    name: str
    schema: JSONObject
    strict: bool | None = None


class ResponseFormat(msgspec.Struct, omit_defaults=True):
    type: str  # "json_object" | "json_schema" | "text"
    json_schema: JSONSchemaFormat | None = None
    schema: JSONObject | None = None  # llama.cpp: {"type":"json_object","schema":{...}}


class StreamOptions(msgspec.Struct):
    include_usage: bool = True


class OutFunction(msgspec.Struct, omit_defaults=True):
    name: str
    description: str | None = None
    parameters: JSONObject | None = None


class OutTool(msgspec.Struct):
    function: OutFunction
    type: str = "function"


class SamplingParams(msgspec.Struct, omit_defaults=True):
    """Sampling keys shared by chat and legacy completions; only set keys are sent."""

    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    min_p: float | None = None
    typical_p: float | None = None
    seed: int | None = None
    stop: list[str] | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    repeat_penalty: float | None = None
    repetition_penalty: float | None = None
    repeat_last_n: int | None = None
    n_keep: int | None = None
    mirostat: int | None = None
    mirostat_tau: float | None = None
    mirostat_eta: float | None = None


class ChatCompletionRequest(SamplingParams, omit_defaults=True, kw_only=True):
    model: str
    messages: list[OutMessage]
    stream: bool = False
    stream_options: StreamOptions | None = None
    response_format: ResponseFormat | None = None
    tools: list[OutTool] | None = None
    reasoning_effort: str | None = None
    chat_template_kwargs: JSONObject | None = None
    reasoning: JSONObject | None = None  # OpenRouter
    ttl: int | None = None  # LM Studio idle TTL for a JIT load, seconds
    logprobs: bool | None = None
    top_logprobs: int | None = None
    continue_final_message: bool | None = None  # vLLM: continue the last (assistant) message
    add_generation_prompt: bool | None = None  # vLLM: false with continue_final_message


class CompletionRequest(SamplingParams, omit_defaults=True, kw_only=True):
    model: str
    prompt: str
    suffix: str | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    response_format: ResponseFormat | None = None
    ttl: int | None = None
    logprobs: int | None = None  # legacy completions: how many top tokens per position


class EmbeddingsRequest(msgspec.Struct, omit_defaults=True):
    model: str
    input: str | list[str]
    dimensions: int | None = None
    encoding_format: str | None = None
    ttl: int | None = None  # LM Studio idle TTL for a JIT load, seconds


# ---------------------------------------------------------------------------
# Responses (decoded)
# ---------------------------------------------------------------------------


class ErrorDetail(msgspec.Struct):
    message: str = ""
    type: str | None = None
    code: int | str | None = None
    param: str | None = None


# `error` is an object almost everywhere, a bare string on some LM Studio versions.
ErrorField = ErrorDetail | str


class ErrorBody(msgspec.Struct):
    error: ErrorField | None = None
    message: str | None = None  # vLLM's older flat {"object":"error","message":...}
    detail: str | None = None  # some FastAPI-based servers


class Usage(msgspec.Struct):
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None


class Timings(msgspec.Struct):
    """llama.cpp's per-response timings, in milliseconds and token counts."""

    cache_n: int | None = None
    prompt_n: int | None = None
    prompt_ms: float | None = None
    predicted_n: int | None = None
    predicted_ms: float | None = None


class Stats(msgspec.Struct):
    """LM Studio's per-response stats, in seconds."""

    tokens_per_second: float | None = None
    time_to_first_token: float | None = None
    generation_time: float | None = None
    stop_reason: str | None = None


class FunctionDelta(msgspec.Struct):
    name: str | None = None
    # A string of JSON text, per OpenAI; a few servers send an object.
    arguments: str | JSONObject | None = None


class ToolCallDelta(msgspec.Struct):
    index: int | None = None
    id: str | None = None
    type: str | None = None
    function: FunctionDelta | None = None


class Delta(msgspec.Struct):
    """A stream chunk's ``delta``, and a whole answer's ``message``: the same fields. (A whole
    answer's tool calls carry no ``index``.)"""

    role: str | None = None
    content: str | None = None
    reasoning_content: str | None = None
    reasoning: str | None = None
    tool_calls: list[ToolCallDelta] | None = None


class ChunkChoice(msgspec.Struct):
    index: int = 0
    delta: Delta | None = None
    finish_reason: str | None = None
    text: str | None = None  # /v1/completions streams
    error: ErrorField | None = None  # OpenRouter: set with finish_reason "error"


class ChatCompletionChunk(msgspec.Struct):
    """One SSE data frame of a chat (or legacy completion) stream."""

    id: str | None = None
    model: str | None = None
    choices: list[ChunkChoice] = msgspec.field(default_factory=list)
    usage: Usage | None = None
    timings: Timings | None = None
    stats: Stats | None = None
    error: ErrorField | None = None


class Choice(msgspec.Struct):
    index: int = 0
    message: Delta | None = None
    text: str | None = None  # /v1/completions
    finish_reason: str | None = None
    error: ErrorField | None = None  # OpenRouter: set with finish_reason "error"


class ChatCompletion(msgspec.Struct):
    """A whole non-streamed chat (or legacy completion) response."""

    id: str | None = None
    model: str | None = None
    choices: list[Choice] = msgspec.field(default_factory=list)
    usage: Usage | None = None
    timings: Timings | None = None
    stats: Stats | None = None
    error: ErrorField | None = None


class EmbeddingItem(msgspec.Struct):
    embedding: list[float]
    index: int = 0


class EmbeddingsResponse(msgspec.Struct):
    data: list[EmbeddingItem] = msgspec.field(default_factory=list)
    model: str | None = None
    usage: Usage | None = None


class ModelEntry(msgspec.Struct):
    """An item of GET /v1/models, with the extras llama.cpp, vLLM and OpenRouter add."""

    id: NonEmpty
    object: str | None = None
    created: int | None = None
    owned_by: str | None = None
    meta: LlamaCppMeta | None = None  # llama.cpp: n_ctx_train, n_params, size, n_ctx, ...
    status: LlamaCppStatus | None = None  # llama.cpp router: {"value": "loaded" | ...}
    architecture: ModelArchitecture | None = None  # llama.cpp, OpenRouter: input/output modalities
    max_model_len: int | None = None  # vLLM
    context_length: int | None = None  # OpenRouter
    root: str | None = None  # vLLM


class ModelList(msgspec.Struct):
    data: list[ModelEntry] = msgspec.field(default_factory=list)
