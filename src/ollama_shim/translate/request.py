"""Ollama requests -> OpenAI-compatible requests: /api/chat and /api/generate -> chat completions
(or legacy completions for ``raw``/``suffix``), /api/embed and /api/embeddings -> embeddings.

Each converter returns a frozen *plan*: the typed upstream request plus the option names that were
not sent, for the caller to log. The helpers ``parse_keep_alive``, ``is_load_request``,
``wants_unload`` and ``load_done_reason`` tell a route what to do before calling a backend.

May import: stdlib, msgspec, ``ollama_shim.wire``, ``ollama_shim.errors``, ``ollama_shim.dialect``,
other ``ollama_shim.translate`` modules.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Literal, cast

import msgspec

from ollama_shim.dialect import Dialect
from ollama_shim.errors import BadRequest
from ollama_shim.translate.embed import checked_dimensions, embed_input_texts
from ollama_shim.translate.images import image_data_url
from ollama_shim.translate.options import IgnoredOption, options_to_sampling
from ollama_shim.wire import ollama
from ollama_shim.wire import openai as oai

__all__ = [
    "ChatRequestPlan",
    "CompletionRequestPlan",
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
_ROLES = ("system", "user", "assistant", "tool")
_MAX_TOP_LOGPROBS = 20


# ---------------------------------------------------------------------------
# Plans
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ChatRequestPlan:
    """A POST to ``/v1/chat/completions``."""

    request: oai.ChatCompletionRequest
    ignored_options: tuple[IgnoredOption, ...] = ()


@dataclass(frozen=True)
class CompletionRequestPlan:
    """A POST to ``/v1/completions`` (raw prompt or fill-in-the-middle): no chat template applied."""

    request: oai.CompletionRequest
    ignored_options: tuple[IgnoredOption, ...] = ()


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
    req: ollama.ChatRequest, upstream_model: str, dialect: Dialect, *, stream: bool
) -> ChatRequestPlan:
    """/api/chat -> chat completion. ``stream`` is what to ask the backend for (the route may
    stream upstream even for a client that wants one object)."""
    messages = messages_to_openai(req.messages or [], dialect)
    return _chat_plan(req, upstream_model, dialect, messages, tools_to_openai(req.tools), stream=stream)


def generate_request_to_openai(
    req: ollama.GenerateRequest, upstream_model: str, dialect: Dialect, *, stream: bool
) -> ChatRequestPlan | CompletionRequestPlan:
    """/api/generate -> a chat completion (so the backend's chat template applies), or a legacy
    completion when ``raw`` is set or a ``suffix`` asks for fill-in-the-middle."""
    _check_generate(req)
    if req.raw or req.suffix:
        return _completion_plan(req, upstream_model, dialect, stream=stream)
    messages: list[oai.OutMessage] = []
    if req.system:
        messages.append(oai.OutMessage(role="system", content=req.system))
    content = _content(req.prompt, req.images, where="images")
    messages.append(oai.OutMessage(role="user", content=content))
    return _chat_plan(req, upstream_model, dialect, messages, None, stream=stream)


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
    *,
    stream: bool,
) -> ChatRequestPlan:
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
    return ChatRequestPlan(request=request, ignored_options=options.ignored)


def _completion_plan(
    req: ollama.GenerateRequest, upstream_model: str, dialect: Dialect, *, stream: bool
) -> CompletionRequestPlan:
    # `think` has no meaning without a chat template, so it is not sent here.
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
    return CompletionRequestPlan(request=request, ignored_options=options.ignored)


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
# Messages, images and tool calls
# ---------------------------------------------------------------------------


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
    content = _content(message.content, message.images, where=f"messages[{number}].images")
    # `thinking` from earlier assistant turns is not sent back: templates drop it anyway.
    if role == "assistant" and message.tool_calls:
        return oai.OutMessage(
            role=role, content=content, tool_calls=ledger.register(number, message.tool_calls)
        )
    if role == "tool":
        return oai.OutMessage(
            role=role,
            content=content,
            name=message.tool_name if dialect.sends_tool_name else None,
            tool_call_id=ledger.answer(message.tool_call_id, message.tool_name),
        )
    return oai.OutMessage(role=role, content=content)


def _content(
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


# ---------------------------------------------------------------------------
# format and think
# ---------------------------------------------------------------------------


def format_to_response_format(fmt: Any, dialect: Dialect) -> oai.ResponseFormat | None:
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
            type="json_schema", json_schema=oai.JSONSchemaFormat(name="schema", schema=fmt, strict=True)
        )
    shown = msgspec.json.encode(fmt).decode()
    raise BadRequest(f'invalid format: {shown}; expected "json" or a valid JSON Schema object')


def parse_think(value: Any) -> bool | ThinkLevel | None:
    """``think`` checked: None (not given), a bool, or a level."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str) and value in _THINK_LEVELS:
        return cast(ThinkLevel, value)
    shown = msgspec.json.encode(value).decode()
    raise BadRequest(f'invalid think value: {shown} (must be "high", "medium", "low", "max", true, or false)')


@dataclass(frozen=True)
class ThinkParams:
    """The request fields that carry ``think`` for one dialect; unset ones are not sent."""

    reasoning_effort: str | None = None
    chat_template_kwargs: dict[str, Any] | None = None
    reasoning: dict[str, Any] | None = None


def think_to_params(value: Any, dialect: Dialect) -> ThinkParams:
    think = parse_think(value)
    if think is None or dialect.think_style == "none":
        return ThinkParams()
    if dialect.think_style == "chat_template_kwargs":
        # What Ollama itself sends to llama-server: the switch, plus the level for templates
        # (gpt-oss) that read one.
        kwargs: dict[str, Any] = {"enable_thinking": think is not False}
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


# ---------------------------------------------------------------------------
# keep_alive
# ---------------------------------------------------------------------------

_GO_UNIT_SECONDS = {
    "ns": 1e-9,
    "us": 1e-6,
    "\u00b5s": 1e-6,  # micro sign
    "\u03bcs": 1e-6,  # Greek mu
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)"
_UNIT = "|".join(sorted(_GO_UNIT_SECONDS, key=len, reverse=True))
_DURATION_PART = re.compile(rf"({_NUMBER})({_UNIT})")
_GO_DURATION = re.compile(rf"([+-]?)((?:{_NUMBER}(?:{_UNIT}))+)")
_BARE_SECONDS = re.compile(rf"[+-]?{_NUMBER}")


def parse_keep_alive(value: Any) -> float | None:
    """``keep_alive`` in seconds: None when not given, ``math.inf`` for "forever" (negative).

    A number is seconds, truncated to whole seconds as Ollama does (so 0.5 unloads). A string is a
    Go duration (``"5m"``, ``"1h30m"``, ``"300ms"``, ``"0"``) or a bare number of seconds
    (``"300"``, ``"-1"``).
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise BadRequest(f"invalid keep_alive: {msgspec.json.encode(value).decode()}")
    if isinstance(value, str):
        return _parse_keep_alive_text(value)
    return math.inf if value < 0 else float(math.trunc(value))


def _parse_keep_alive_text(text: str) -> float:
    if _BARE_SECONDS.fullmatch(text):
        seconds = float(text)
        return math.inf if seconds < 0 else float(math.trunc(seconds))
    duration = _GO_DURATION.fullmatch(text)
    if duration is None:
        raise BadRequest(f'time: invalid duration "{text}"')
    sign, body = duration.groups()
    seconds = sum(float(number) * _GO_UNIT_SECONDS[unit] for number, unit in _DURATION_PART.findall(body))
    return math.inf if sign == "-" and seconds > 0 else seconds


def ttl_seconds(keep_alive: Any, dialect: Dialect) -> int | None:
    """LM Studio's per-request idle TTL: a finite positive keep_alive, rounded up to a second."""
    seconds = parse_keep_alive(keep_alive)
    if not dialect.sends_ttl or seconds is None or seconds <= 0 or math.isinf(seconds):
        return None
    return math.ceil(seconds)


def wants_unload(keep_alive: Any) -> bool:
    """keep_alive 0: unload the model (after this request, or instead of it for a load request)."""
    return parse_keep_alive(keep_alive) == 0


def is_load_request(req: ollama.ChatRequest | ollama.GenerateRequest) -> bool:
    """A chat with no messages or a generate with no prompt (and no suffix) only loads or unloads
    the model; the route answers ``done_reason`` from ``load_done_reason`` without a completion."""
    if isinstance(req, ollama.ChatRequest):
        return not req.messages
    return req.prompt == "" and not req.suffix


def load_done_reason(keep_alive: Any) -> Literal["load", "unload"]:
    return "unload" if wants_unload(keep_alive) else "load"


# ---------------------------------------------------------------------------
# /api/embed and /api/embeddings
# ---------------------------------------------------------------------------


def embed_request_to_openai(
    req: ollama.EmbedRequest, upstream_model: str, dialect: Dialect
) -> EmbeddingsRequestPlan:
    """/api/embed -> embeddings. ``options`` do not apply to embeddings: all are reported ignored.
    ``truncate`` has no OpenAI equivalent; backends truncate or fail as they are configured."""
    texts = embed_input_texts(req.input)
    request = oai.EmbeddingsRequest(
        model=upstream_model, input=texts, ttl=ttl_seconds(req.keep_alive, dialect)
    )
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
    request = oai.EmbeddingsRequest(
        model=upstream_model, input=req.prompt, ttl=ttl_seconds(req.keep_alive, dialect)
    )
    return EmbeddingsRequestPlan(
        request=request, input_count=1 if req.prompt else 0, ignored_options=tuple(req.options or ())
    )
