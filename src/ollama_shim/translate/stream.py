"""Stream translation: OpenAI chat-completion chunks in, Ollama ``/api/chat`` or ``/api/generate``
NDJSON chunks out.

Use it through ``translate.pipeline.StreamPipeline``, which feeds it the decoded SSE events::

    pipeline = StreamPipeline(StreamTranslator(StreamContext(model=name, endpoint="chat", started_ns=t0)))

``feed_event(event)`` parses and translates one event (``[DONE]`` -> ``finish()``); ``finish()``
gives the held-back text and the final ``done: true`` chunk (EOF without ``[DONE]`` is tolerated).
``feed(chunk)`` takes an already parsed ``ChatCompletionChunk``; ``parse_event(event)`` turns an
``SSEEvent`` into one (``None`` for ``[DONE]``). Backend errors raise ``UpstreamStatus`` with the
backend's own message, unreadable frames (JSON nested too deep included) ``UpstreamProtocol``;
what was already returned stays valid, nothing is ever sent twice.

What is mapped (after Ollama's own llama-server adapter, ``llm/llama_server.go``):

- ``delta.content`` (or legacy ``choices[].text``) -> ``message.content`` / ``response``;
  ``delta.reasoning_content`` or ``delta.reasoning`` -> ``message.thinking`` / ``thinking``, and so
  is ``<think>...</think>`` at the start of the content (tags may be cut anywhere; a partial tag
  is held back). Chunks with no text are not forwarded; ``think: false`` drops thinking text.
  A prefill the backend echoes (``StreamContext.echoed_prefix``) is removed from the start of the
  content first (``translate.prefill.PrefixStripper``).
- Tool-call deltas are gathered (by ``index``; without one, a new ``id`` or a ``name`` starts a
  call) and every complete call goes on the final chunk, arguments parsed to an object, whatever
  the ``finish_reason`` said. Ollama never says ``tool_calls``: ``done_reason`` is ``length`` or
  ``stop``.
- Metrics come from llama.cpp ``timings``, else ``usage`` and LM Studio ``stats``, else the
  shim's own clock; see ``compute_metrics``.

The clocks are injected, so the module is pure: no I/O, no logging, no environment.

May import: stdlib, msgspec, ``ollama_shim.wire``, ``ollama_shim.errors``, ``ollama_shim.timefmt``,
``ollama_shim.translate.think_tags``, ``ollama_shim.translate.tool_calls``,
``ollama_shim.translate.prefill`` (and ``ollama_shim.sse``
for the ``SSEEvent`` type, at type-checking time only).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import msgspec

from ollama_shim.errors import UpstreamProtocol, UpstreamStatus
from ollama_shim.timefmt import utc_timestamp
from ollama_shim.translate.prefill import PrefixStripper
from ollama_shim.translate.think_tags import ThinkTagSplitter
from ollama_shim.translate.tool_calls import ToolCallAccumulator
from ollama_shim.wire.ollama import ChatChunk, GenerateChunk, ResponseMessage, ResponseToolCall
from ollama_shim.wire.openai import (
    ChatCompletionChunk,
    ChunkChoice,
    ErrorBody,
    ErrorField,
    Stats,
    Timings,
    Usage,
)

if TYPE_CHECKING:
    from ollama_shim.sse import SSEEvent

Endpoint = Literal["chat", "generate"]
OllamaChunk = ChatChunk | GenerateChunk
Clock = Callable[[], int]

_CHUNK_DECODER = msgspec.json.Decoder(ChatCompletionChunk)
_ERROR_BODY_DECODER = msgspec.json.Decoder(ErrorBody)
_NS_PER_MS = 1_000_000
_NS_PER_S = 1_000_000_000


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamContext:
    """What the translator needs to know about the request."""

    model: str  # the model string the client sent, echoed on every chunk
    endpoint: Endpoint  # which Ollama shape to emit
    started_ns: int  # monotonic ns when the request arrived
    load_ns: int = 0  # ns spent before the backend answered (loading); reported as load_duration
    hide_thinking: bool = False  # the client sent think:false: thinking text is dropped
    want_tool_calls: bool = True  # the request had tools; else tool-call deltas are ignored
    echoed_prefix: str = ""  # a prefill the backend repeats at the start of its answer: removed


# ---------------------------------------------------------------------------
# Backend errors
# ---------------------------------------------------------------------------


def error_message(error: ErrorField) -> str:
    """The human text of an ``error`` field, object or bare string."""
    text = error if isinstance(error, str) else error.message
    return text.strip() or "the backend reported an error"


def upstream_error(error: ErrorField) -> UpstreamStatus:
    """``UpstreamStatus`` carrying the backend's message and, when it gave one, its HTTP code."""
    code = None if isinstance(error, str) else error.code
    status = code if isinstance(code, int) and 400 <= code <= 599 else None
    return UpstreamStatus(error_message(error), status)


def _error_event(data: str) -> UpstreamStatus:
    """An ``event: error`` frame: JSON ``{"error": ...}``/``{"message": ...}`` or plain text."""
    try:
        body = _ERROR_BODY_DECODER.decode(data)
    except msgspec.DecodeError:
        return upstream_error(data)
    if body.error is not None:
        return upstream_error(body.error)
    return upstream_error(body.message or body.detail or data)


def parse_event(event: SSEEvent) -> ChatCompletionChunk | None:
    """One SSE event as a chunk; ``None`` for ``[DONE]``. Raises for error frames and non-JSON."""
    if event.event == "error":
        raise _error_event(event.data)
    if event.data.strip() == "[DONE]":
        return None
    try:
        chunk = _CHUNK_DECODER.decode(event.data)
    except msgspec.DecodeError as exc:
        raise UpstreamProtocol(f"backend sent an unreadable stream frame: {exc}") from exc
    except RecursionError:
        raise UpstreamProtocol("backend sent an unreadable stream frame: JSON nested too deep") from None
    if chunk.error is not None:
        raise upstream_error(chunk.error)
    return chunk


# ---------------------------------------------------------------------------
# Metrics and done_reason
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Measured:
    """What the shim timed and counted itself, in monotonic ns."""

    started_ns: int
    load_ns: int
    first_token_ns: int  # first text or tool-call delta; the end time when there was none
    finished_ns: int
    text_delta_count: int


@dataclass(frozen=True, slots=True)
class Metrics:
    """The done chunk's numbers, durations in ns."""

    total_duration: int
    load_duration: int
    prompt_eval_count: int
    prompt_eval_duration: int
    eval_count: int
    eval_duration: int


def _ms_to_ns(ms: float) -> int:
    return round(ms * _NS_PER_MS)


def _s_to_ns(seconds: float) -> int:
    return round(seconds * _NS_PER_S)


def _prompt_eval_count(timings: Timings | None, usage: Usage | None) -> int:
    if timings is not None and timings.prompt_n is not None:
        return (timings.cache_n or 0) + timings.prompt_n
    if usage is not None and usage.prompt_tokens is not None:
        return usage.prompt_tokens
    return 0


def _eval_count(timings: Timings | None, usage: Usage | None, measured: Measured) -> int:
    if timings is not None and timings.predicted_n is not None:
        return timings.predicted_n
    if usage is not None and usage.completion_tokens is not None:
        return usage.completion_tokens
    return measured.text_delta_count


def _prompt_eval_duration(timings: Timings | None, stats: Stats | None, measured: Measured) -> int:
    if timings is not None and timings.prompt_ms is not None:
        return _ms_to_ns(timings.prompt_ms)
    if stats is not None and stats.time_to_first_token is not None:
        return _s_to_ns(stats.time_to_first_token)
    return max(0, measured.first_token_ns - measured.started_ns - measured.load_ns)


def _eval_duration(timings: Timings | None, stats: Stats | None, measured: Measured) -> int:
    if timings is not None and timings.predicted_ms is not None:
        return _ms_to_ns(timings.predicted_ms)
    if stats is not None and stats.generation_time is not None:
        return _s_to_ns(stats.generation_time)
    return max(0, measured.finished_ns - measured.first_token_ns)


def compute_metrics(measured: Measured, timings: Timings | None, usage: Usage | None, stats: Stats | None) -> Metrics:
    """Each number from the best source the backend gave: llama.cpp ``timings`` (ms), then
    ``usage`` (counts) and LM Studio ``stats`` (s), then the shim's own measurement. The measured
    prompt time excludes ``load_ns``, which is reported as ``load_duration``."""
    return Metrics(
        total_duration=max(0, measured.finished_ns - measured.started_ns),
        load_duration=measured.load_ns,
        prompt_eval_count=_prompt_eval_count(timings, usage),
        prompt_eval_duration=_prompt_eval_duration(timings, stats, measured),
        eval_count=_eval_count(timings, usage, measured),
        eval_duration=_eval_duration(timings, stats, measured),
    )


def done_reason(finish_reason: str | None) -> str:
    """Ollama says only ``length`` or ``stop`` for a finished turn (tool calls included)."""
    return "length" if finish_reason == "length" else "stop"


# ---------------------------------------------------------------------------
# The translator
# ---------------------------------------------------------------------------


def _reasoning_text(choice: ChunkChoice) -> str:
    delta = choice.delta
    if delta is None:
        return ""
    # Some servers fill both names with the same text: take one, never both.
    return delta.reasoning_content or delta.reasoning or ""


def _content_text(choice: ChunkChoice) -> str:
    delta = choice.delta
    if delta is not None and delta.content:
        return delta.content
    return choice.text or ""


class StreamTranslator:
    """State of one streamed answer; see the module docstring for the protocol."""

    def __init__(self, ctx: StreamContext, clock: Clock = time.monotonic_ns, wallclock: Clock = time.time_ns):
        self.ctx = ctx
        self._clock = clock
        self._wallclock = wallclock
        self._think_tags = ThinkTagSplitter()
        self._echo = PrefixStripper(ctx.echoed_prefix)
        self._tool_calls = ToolCallAccumulator()
        self._reasoning_field_seen = False  # then inline <think> text is not thinking a second time
        self._first_token_ns: int | None = None
        self._text_delta_count = 0
        self._finish_reason: str | None = None
        self._usage: Usage | None = None
        self._timings: Timings | None = None
        self._stats: Stats | None = None
        self.finished = False

    def feed_event(self, event: SSEEvent) -> list[OllamaChunk]:
        """Parse and translate one SSE event; ``[DONE]`` finishes the stream."""
        if self.finished:
            return []
        chunk = parse_event(event)
        if chunk is None:
            return self.finish()
        return self.feed(chunk)

    def feed(self, chunk: ChatCompletionChunk) -> list[OllamaChunk]:
        """Translate one chunk into zero or more ``done: false`` chunks."""
        if chunk.error is not None:
            raise upstream_error(chunk.error)
        self._keep_backend_numbers(chunk)
        out: list[OllamaChunk] = []
        for choice in chunk.choices:
            if choice.index == 0:
                out.extend(self._translate_choice(choice))
        return out

    def finish(self) -> list[OllamaChunk]:
        """Held-back text (if any), then the ``done: true`` chunk with tool calls and metrics."""
        if self.finished:
            return []
        self.finished = True
        released_thinking, released = self._filter_inline(*self._think_tags.feed(self._echo.flush()))
        held_thinking, held = self._filter_inline(*self._think_tags.flush())
        out = self._text_chunks(released_thinking + held_thinking, released + held)
        tool_calls = self._tool_calls.build() if self._tool_calls_wanted() else []
        out.append(self._done_chunk(tool_calls, self._metrics()))
        return out

    def _keep_backend_numbers(self, chunk: ChatCompletionChunk) -> None:
        # usage/timings may come on the finish chunk or on a later `choices: []` chunk.
        if chunk.usage is not None:
            self._usage = chunk.usage
        if chunk.timings is not None:
            self._timings = chunk.timings
        if chunk.stats is not None:
            self._stats = chunk.stats

    def _translate_choice(self, choice: ChunkChoice) -> list[OllamaChunk]:
        if choice.finish_reason == "error":
            raise upstream_error(choice.error or "the backend stopped with an error")
        if choice.finish_reason is not None:
            self._finish_reason = choice.finish_reason
        tool_call_deltas = choice.delta.tool_calls if choice.delta is not None else None
        if tool_call_deltas and self._tool_calls_wanted():
            self._note_token()
            for delta in tool_call_deltas:
                self._tool_calls.add(delta)
        reasoning = _reasoning_text(choice)
        content = _content_text(choice)
        if not reasoning and not content:
            return []
        self._note_token()
        self._text_delta_count += 1
        if reasoning:
            self._reasoning_field_seen = True
        inline_thinking, answer = self._filter_inline(*self._think_tags.feed(self._echo.feed(content)))
        return self._text_chunks(reasoning + inline_thinking, answer)

    def _filter_inline(self, inline_thinking: str, answer: str) -> tuple[str, str]:
        # llama.cpp's deepseek-legacy format sends <think> text in content *and* reasoning_content.
        return ("" if self._reasoning_field_seen else inline_thinking), answer

    def _tool_calls_wanted(self) -> bool:
        return self.ctx.want_tool_calls and self.ctx.endpoint == "chat"

    def _note_token(self) -> None:
        if self._first_token_ns is None:
            self._first_token_ns = self._clock()

    def _text_chunks(self, thinking: str, content: str) -> list[OllamaChunk]:
        if self.ctx.hide_thinking:
            thinking = ""
        if not thinking and not content:
            return []
        return [self._chunk(content, thinking or None)]

    def _chunk(
        self, content: str, thinking: str | None, tool_calls: list[ResponseToolCall] | None = None
    ) -> OllamaChunk:
        created_at = utc_timestamp(self._wallclock())
        if self.ctx.endpoint == "generate":
            return GenerateChunk(
                model=self.ctx.model, created_at=created_at, response=content, thinking=thinking, done=False
            )
        message = ResponseMessage(role="assistant", content=content, thinking=thinking, tool_calls=tool_calls)
        return ChatChunk(model=self.ctx.model, created_at=created_at, message=message, done=False)

    def _metrics(self) -> Metrics:
        finished_ns = self._clock()
        first_token_ns = finished_ns if self._first_token_ns is None else self._first_token_ns
        measured = Measured(
            started_ns=self.ctx.started_ns,
            load_ns=self.ctx.load_ns,
            first_token_ns=first_token_ns,
            finished_ns=finished_ns,
            text_delta_count=self._text_delta_count,
        )
        return compute_metrics(measured, self._timings, self._usage, self._stats)

    def _done_chunk(self, tool_calls: list[ResponseToolCall], metrics: Metrics) -> OllamaChunk:
        chunk = self._chunk("", None, tool_calls or None)
        return msgspec.structs.replace(
            chunk,
            done=True,
            done_reason=done_reason(self._finish_reason),
            total_duration=metrics.total_duration,
            load_duration=metrics.load_duration,
            prompt_eval_count=metrics.prompt_eval_count,
            prompt_eval_duration=metrics.prompt_eval_duration,
            eval_count=metrics.eval_count,
            eval_duration=metrics.eval_duration,
        )
