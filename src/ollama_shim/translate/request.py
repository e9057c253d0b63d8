"""Ollama requests -> OpenAI-compatible requests: /api/chat and /api/generate -> chat completions
(or legacy completions for ``raw``/``suffix``), /api/embed and /api/embeddings -> embeddings.

Each converter returns a frozen *plan*: the typed upstream request, the path it goes to, and the
option names that were not sent, for the caller to log. A chat or generate plan also carries its
``Delivery`` (stream / gather / whole), chosen once by ``Delivery.choose`` from the client's
``stream`` flag and the dialect: it decides both the ``stream`` the backend is asked for and how the
route relays the answer. The helpers ``is_load_request``, ``wants_unload`` and
``load_done_reason`` tell a route what to do before calling a backend. ``messages_to_openai``,
``tools_to_openai`` (from ``translate.messages``) and ``parse_keep_alive``, ``ttl_seconds``,
``wants_unload`` (from ``translate.keep_alive``) are re-exported so a route needs this module only.

May import: stdlib, msgspec, ``ollama_shim.wire``, ``ollama_shim.errors``, ``ollama_shim.dialect``,
other ``ollama_shim.translate`` modules.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import ClassVar, Literal

import msgspec

from ollama_shim.dialect import Dialect
from ollama_shim.errors import BadRequest
from ollama_shim.translate.embed import checked_dimensions, embed_input_texts
from ollama_shim.translate.keep_alive import parse_keep_alive, ttl_seconds, wants_unload
from ollama_shim.translate.messages import content_to_openai, messages_to_openai, tools_to_openai
from ollama_shim.translate.options import IgnoredOption, options_to_sampling
from ollama_shim.translate.prefill import sends_continue_flag
from ollama_shim.wire import ollama
from ollama_shim.wire import openai as oai

__all__ = [
    "ChatRequestPlan",
    "CompletionRequestPlan",
    "Delivery",
    "EmbeddingsRequestPlan",
    "ThinkParams",
    "chat_request_to_openai",
    "embed_request_to_openai",
    "embeddings_request_to_openai",
    "format_to_response_format",
    "generate_request_to_openai",
    "is_load_request",
    "load_done_reason",
    "messages_to_openai",
    "parse_keep_alive",
    "parse_think",
    "think_to_params",
    "tools_to_openai",
    "ttl_seconds",
    "wants_unload",
]

ThinkLevel = Literal["low", "medium", "high", "max"]
_THINK_LEVELS: tuple[ThinkLevel, ...] = ("low", "medium", "high", "max")
_MAX_TOP_LOGPROBS = 20


# ---------------------------------------------------------------------------
# Delivery and plans
# ---------------------------------------------------------------------------


class Delivery(enum.Enum):
    """How a chat or generate answer travels from the backend to the client."""

    STREAM = "stream"  # SSE from the backend, NDJSON to the client, chunk by chunk
    GATHER = "gather"  # SSE from the backend, assembled into one object for the client
    WHOLE = "whole"  # one JSON object each way

    @property
    def upstream_streams(self) -> bool:
        """Whether the backend is asked for a stream."""
        return self is not Delivery.WHOLE

    @classmethod
    def choose(cls, client_stream: bool | None, dialect: Dialect) -> Delivery:
        """Streamed unless the client said ``stream: false`` (Ollama's default); then gathered from a
        stream where the dialect says ``stream_upstream``, else whole."""
        if client_stream is not False:
            return cls.STREAM
        return cls.GATHER if dialect.stream_upstream else cls.WHOLE


@dataclass(frozen=True)
class ChatRequestPlan:
    """A POST to ``/v1/chat/completions``."""

    path: ClassVar[str] = "/v1/chat/completions"
    request: oai.ChatCompletionRequest
    delivery: Delivery
    ignored_options: tuple[IgnoredOption, ...] = ()


@dataclass(frozen=True)
class CompletionRequestPlan:
    """A POST to ``/v1/completions`` (raw prompt or fill-in-the-middle): no chat template applied."""

    path: ClassVar[str] = "/v1/completions"
    request: oai.CompletionRequest
    delivery: Delivery
    ignored_options: tuple[IgnoredOption, ...] = ()


GenerationPlan = ChatRequestPlan | CompletionRequestPlan


@dataclass(frozen=True)
class EmbeddingsRequestPlan:
    """A POST to ``/v1/embeddings``. ``input_count`` 0 means: answer "load only", send nothing.
    ``dimensions`` is applied to the answer by ``embed_response_to_ollama``, never upstream."""

    request: oai.EmbeddingsRequest
    input_count: int
    dimensions: int | None = None
    ignored_options: tuple[str, ...] = ()


# ---------------------------------------------------------------------------
# /api/chat and /api/generate
# ---------------------------------------------------------------------------


def chat_request_to_openai(
    req: ollama.ChatRequest, upstream_model: str, dialect: Dialect, delivery: Delivery
) -> ChatRequestPlan:
    """/api/chat -> chat completion; the backend is asked to stream when ``delivery`` says so. A
    final assistant message is a prefill: vLLM is asked to continue it (``translate.prefill``)."""
    messages = messages_to_openai(req.messages or [], dialect)
    plan = _chat_plan(req, upstream_model, dialect, messages, tools_to_openai(req.tools), delivery)
    if sends_continue_flag(req.messages, dialect):
        request = msgspec.structs.replace(plan.request, continue_final_message=True, add_generation_prompt=False)
        return ChatRequestPlan(request=request, delivery=delivery, ignored_options=plan.ignored_options)
    return plan


def generate_request_to_openai(
    req: ollama.GenerateRequest, upstream_model: str, dialect: Dialect, delivery: Delivery
) -> GenerationPlan:
    """/api/generate -> a chat completion (so the backend's chat template applies), or a legacy
    completion when ``raw`` is set or a ``suffix`` asks for fill-in-the-middle."""
    _check_generate(req)
    if req.raw or req.suffix:
        return _completion_plan(req, upstream_model, dialect, delivery)
    messages: list[oai.OutMessage] = []
    if req.system:
        messages.append(oai.OutMessage(role="system", content=req.system))
    content = content_to_openai(req.prompt, req.images, where="images")
    messages.append(oai.OutMessage(role="user", content=content))
    return _chat_plan(req, upstream_model, dialect, messages, None, delivery)


def _check_generate(req: ollama.GenerateRequest) -> None:
    # `context` (old conversation tokens) is accepted and ignored: the backend has no use for it.
    if req.raw and (req.template or req.system or req.context):
        raise BadRequest("raw mode does not support template, system, or context")
    if req.template:
        raise BadRequest(
            "template is not supported: prompt templates are applied by the backend "
            "(send raw:true with a fully formatted prompt instead)"
        )
    if (req.raw or req.suffix) and req.images:
        raise BadRequest("images are not supported with raw or suffix")


def _chat_plan(
    req: ollama.ChatRequest | ollama.GenerateRequest,
    upstream_model: str,
    dialect: Dialect,
    messages: list[oai.OutMessage],
    tools: list[oai.OutTool] | None,
    delivery: Delivery,
) -> ChatRequestPlan:
    stream = delivery.upstream_streams
    options = options_to_sampling(req.options, dialect)
    think = think_to_params(req.think, dialect)
    logprobs, top_logprobs = _logprobs(req.logprobs, req.top_logprobs)
    request = oai.ChatCompletionRequest(
        model=upstream_model,
        messages=messages,
        stream=stream,
        stream_options=_stream_options(dialect, stream=stream),
        response_format=format_to_response_format(req.format, dialect),
        tools=tools,
        reasoning_effort=think.reasoning_effort,
        chat_template_kwargs=think.chat_template_kwargs,
        reasoning=think.reasoning,
        ttl=ttl_seconds(req.keep_alive, dialect),
        logprobs=logprobs,
        top_logprobs=top_logprobs,
        **msgspec.structs.asdict(options.sampling),
    )
    return ChatRequestPlan(request=request, delivery=delivery, ignored_options=options.ignored)


def _completion_plan(
    req: ollama.GenerateRequest, upstream_model: str, dialect: Dialect, delivery: Delivery
) -> CompletionRequestPlan:
    # `think` has no meaning without a chat template, so it is not sent here.
    stream = delivery.upstream_streams
    options = options_to_sampling(req.options, dialect)
    logprobs, top_logprobs = _logprobs(req.logprobs, req.top_logprobs)
    request = oai.CompletionRequest(
        model=upstream_model,
        prompt=req.prompt,
        suffix=req.suffix or None,
        stream=stream,
        stream_options=_stream_options(dialect, stream=stream),
        response_format=format_to_response_format(req.format, dialect),
        ttl=ttl_seconds(req.keep_alive, dialect),
        logprobs=(top_logprobs or 0) if logprobs else None,
        **msgspec.structs.asdict(options.sampling),
    )
    return CompletionRequestPlan(request=request, delivery=delivery, ignored_options=options.ignored)


def _stream_options(dialect: Dialect, *, stream: bool) -> oai.StreamOptions | None:
    # OpenAI and vLLM answer 400 to stream_options on a request that does not stream.
    return oai.StreamOptions(include_usage=True) if stream and dialect.stream_usage else None


def _logprobs(logprobs: bool | None, top_logprobs: int | None) -> tuple[bool | None, int | None]:
    """``(logprobs, top_logprobs)`` to send: ``top_logprobs`` only with ``logprobs`` (vLLM and
    llama.cpp reject it alone) and only when positive."""
    if top_logprobs is not None and not 0 <= top_logprobs <= _MAX_TOP_LOGPROBS:
        raise BadRequest("top_logprobs must be between 0 and 20")
    if not logprobs:
        return None, None
    return True, top_logprobs or None


# ---------------------------------------------------------------------------
# format and think
# ---------------------------------------------------------------------------


def format_to_response_format(fmt: ollama.Format, dialect: Dialect) -> oai.ResponseFormat | None:
    """``"json"`` -> JSON mode as the backend spells it; a schema object -> ``json_schema``."""
    if fmt is None or fmt == "":
        return None
    if fmt == "json":
        if dialect.json_mode == "json_schema_object":
            # LM Studio answers 400 to json_object: ask for "any object" through a schema.
            schema = oai.JSONSchemaFormat(name="json", schema={"type": "object"})
            return oai.ResponseFormat(type="json_schema", json_schema=schema)
        return oai.ResponseFormat(type="json_object")
    if isinstance(fmt, dict):
        return oai.ResponseFormat(
            type="json_schema", json_schema=oai.JSONSchemaFormat(
                name="schema", schema=fmt, strict=True if dialect.strict_json_schema else None
            ),
        )
    shown = msgspec.json.encode(fmt).decode()
    raise BadRequest(f'invalid format: {shown}; expected "json" or a valid JSON Schema object')


def parse_think(value: ollama.Think) -> bool | ThinkLevel | None:
    """``think`` checked: None (not given), a bool, or a level."""
    if value is None or isinstance(value, bool):
        return value
    if value in _THINK_LEVELS:
        return value
    shown = msgspec.json.encode(value).decode()
    raise BadRequest(f'invalid think value: {shown} (must be "high", "medium", "low", "max", true, or false)')


@dataclass(frozen=True)
class ThinkParams:
    """The request fields that carry ``think`` for one dialect; unset ones are not sent."""

    reasoning_effort: str | None = None
    chat_template_kwargs: oai.JSONObject | None = None
    reasoning: oai.JSONObject | None = None


def think_to_params(value: ollama.Think, dialect: Dialect) -> ThinkParams:
    think = parse_think(value)
    if think is None or dialect.think_style == "none":
        return ThinkParams()
    if dialect.think_style == "chat_template_kwargs":
        # What Ollama itself sends to llama-server: the switch, plus the level for templates
        # (gpt-oss) that read one.
        kwargs: oai.JSONObject = {"enable_thinking": think is not False}
        if isinstance(think, str):
            kwargs["reasoning_effort"] = think
        return ThinkParams(chat_template_kwargs=kwargs)
    if dialect.think_style == "reasoning_effort":
        if think is False:
            return ThinkParams()  # "none" is not accepted by every model; send nothing
        # OpenAI's efforts stop at "high"; Ollama counts `true` as "medium".
        effort = "medium" if think is True else "high" if think == "max" else think
        return ThinkParams(reasoning_effort=effort)
    # openrouter_reasoning: OpenRouter's own object; its top effort is "xhigh".
    if isinstance(think, bool):
        return ThinkParams(reasoning={"enabled": think})
    return ThinkParams(reasoning={"effort": "xhigh" if think == "max" else think})


def is_load_request(req: ollama.ChatRequest | ollama.GenerateRequest) -> bool:
    """A chat with no messages or a generate with no prompt (and no suffix) only loads or unloads
    the model; the route answers ``done_reason`` from ``load_done_reason`` without a completion."""
    if isinstance(req, ollama.ChatRequest):
        return not req.messages
    return req.prompt == "" and not req.suffix


def load_done_reason(keep_alive: ollama.KeepAlive) -> Literal["load", "unload"]:
    return "unload" if wants_unload(keep_alive) else "load"


# ---------------------------------------------------------------------------
# /api/embed and /api/embeddings
# ---------------------------------------------------------------------------


def embed_request_to_openai(req: ollama.EmbedRequest, upstream_model: str, dialect: Dialect) -> EmbeddingsRequestPlan:
    """/api/embed -> embeddings. ``options`` do not apply to embeddings: all are reported ignored.
    ``truncate`` has no OpenAI equivalent; backends truncate or fail as they are configured."""
    texts = embed_input_texts(req.input)
    request = oai.EmbeddingsRequest(model=upstream_model, input=texts, ttl=ttl_seconds(req.keep_alive, dialect))
    return EmbeddingsRequestPlan(
        request=request,
        input_count=len(texts),
        dimensions=checked_dimensions(req.dimensions),
        ignored_options=tuple(req.options or ()),
    )


def embeddings_request_to_openai(
    req: ollama.EmbeddingsRequest, upstream_model: str, dialect: Dialect
) -> EmbeddingsRequestPlan:
    """Legacy /api/embeddings (one ``prompt``). An empty prompt: ``input_count`` 0, and the route
    answers ``{"embedding": []}``."""
    request = oai.EmbeddingsRequest(model=upstream_model, input=req.prompt, ttl=ttl_seconds(req.keep_alive, dialect))
    return EmbeddingsRequestPlan(
        request=request, input_count=1 if req.prompt else 0, ignored_options=tuple(req.options or ())
    )
