"""Anthropic Messages answers: the backend's chat-completion stream in, Anthropic stream events out;
the whole ``message`` assembled from those events; Anthropic's error object.

``AnthropicTranslator`` is an ``EventTranslator`` (``translate.pipeline``): it wraps the
``/api/chat`` ``StreamTranslator``, which does the decoding, think-tag splitting, tool-call
gathering and metrics, and turns its Ollama chunks into events::

    message_start, ping,
    (content_block_start, content_block_delta..., content_block_stop)...,
    message_delta, message_stop

Blocks are numbered densely from 0 in the order they open; a change between thinking and text closes
the open block and opens a new one. When the request ended with an assistant turn (a prefill), the
answer is only the continuation: a backend that repeats the prefill first has that repetition
removed by the wrapped translator (``StreamContext.echoed_prefix``, as for ``/api/chat``). Thinking blocks open with
``signature: ""`` (the SDK's type requires the key; there is nothing to sign). Tool calls come as
whole blocks at the end, each with one ``input_json_delta`` holding its arguments. ``stop_reason``:
``tool_use`` when there are tool calls, ``max_tokens`` when the backend stopped at the limit, else
``end_turn`` (backends do not say whether a stop sequence matched, so ``stop_sequence`` is not
reported). ``message_start`` carries the shim's input-token estimate; ``message_delta`` the
backend's counts (the estimate when the backend gave none).

``assemble_message(events)`` builds the non-streamed answer from the same events.
``error_object(status, message)`` is the error body (and ``event: error`` frame) for a status.

May import: stdlib, msgspec, ``ollama_shim.wire``, ``ollama_shim.errors``,
``ollama_shim.translate.stream`` (and ``ollama_shim.sse`` at type-checking time only).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import msgspec

from ollama_shim.translate.stream import OllamaChunk, StreamTranslator
from ollama_shim.wire import anthropic as am
from ollama_shim.wire.ollama import ChatChunk, ResponseToolCall

if TYPE_CHECKING:
    from ollama_shim.sse import SSEEvent

__all__ = ["AnthropicContext", "AnthropicTranslator", "assemble_message", "error_object", "event_text_bytes"]

TextKind = Literal["text", "thinking"]

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
    529: "overloaded_error",
}


def error_object(status: int, message: str) -> am.Error:
    """Anthropic's error for an HTTP status: 400 ``invalid_request_error``, 401
    ``authentication_error``, 404 ``not_found_error``, 429 ``rate_limit_error``, 503/529
    ``overloaded_error``, any other 4xx ``invalid_request_error`` and 5xx ``api_error``."""
    kind = _ERROR_TYPES.get(status) or ("invalid_request_error" if 400 <= status < 500 else "api_error")
    return am.Error(error=am.ErrorDetail(type=kind, message=message))


@dataclass(frozen=True, slots=True, kw_only=True)
class AnthropicContext:
    model: str  # the name the client asked for, echoed in message_start
    message_id: str  # "msg_..."
    input_tokens: int  # the estimate sent in message_start


class AnthropicTranslator:
    """One streamed answer as Anthropic events; see the module docstring."""

    def __init__(self, ctx: AnthropicContext, inner: StreamTranslator) -> None:
        self.ctx = ctx
        self._inner = inner
        self._started = False
        self._open: TextKind | None = None  # the kind of the open text/thinking block
        self._next_index = 0
        self.finished = False

    def feed_event(self, event: SSEEvent) -> list[am.StreamEvent]:
        chunks = self._inner.feed_event(event)  # may raise: then nothing of this event is sent
        return self._translate(chunks)

    def finish(self) -> list[am.StreamEvent]:
        if self.finished:
            return []
        return self._translate(self._inner.finish())

    def _translate(self, chunks: list[OllamaChunk]) -> list[am.StreamEvent]:
        out: list[am.StreamEvent] = []
        if not self._started:
            self._started = True
            out += [am.MessageStart(message=self._head()), am.Ping()]
        for chunk in chunks:
            self._chunk(chunk, out)
        self.finished = self._inner.finished
        return out

    def _head(self) -> am.Message:
        return am.Message(
            id=self.ctx.message_id, role="assistant", model=self.ctx.model, content=[], stop_reason=None,
            stop_sequence=None, usage=am.Usage(input_tokens=self.ctx.input_tokens, output_tokens=0),
        )

    def _chunk(self, chunk: OllamaChunk, out: list[am.StreamEvent]) -> None:
        thinking, content = _texts(chunk)
        if thinking:
            self._text("thinking", thinking, out)
        if content:
            self._text("text", content, out)
        if chunk.done:
            self._done(chunk, out)

    def _text(self, kind: TextKind, text: str, out: list[am.StreamEvent]) -> None:
        if self._open != kind:
            self._close(out)
            block: am.OutBlock = am.TextOut(text="") if kind == "text" else am.ThinkingOut(thinking="")
            out.append(am.ContentBlockStart(index=self._next_index, content_block=block))
            self._open = kind
            self._next_index += 1
        delta: am.BlockDelta = am.TextDelta(text=text) if kind == "text" else am.ThinkingDelta(thinking=text)
        out.append(am.ContentBlockDelta(index=self._next_index - 1, delta=delta))

    def _close(self, out: list[am.StreamEvent]) -> None:
        if self._open is not None:
            out.append(am.ContentBlockStop(index=self._next_index - 1))
            self._open = None

    def _done(self, chunk: OllamaChunk, out: list[am.StreamEvent]) -> None:
        self._close(out)
        calls = (chunk.message.tool_calls if isinstance(chunk, ChatChunk) else None) or []
        for call in calls:
            self._tool_use(call, out)
        if calls:
            reason = "tool_use"
        elif chunk.done_reason == "length":
            reason = "max_tokens"
        else:
            reason = "end_turn"
        usage = am.Usage(input_tokens=chunk.prompt_eval_count or self.ctx.input_tokens,
                         output_tokens=chunk.eval_count or 0)
        out += [am.MessageDelta(delta=am.StopInfo(stop_reason=reason), usage=usage), am.MessageStop()]

    def _tool_use(self, call: ResponseToolCall, out: list[am.StreamEvent]) -> None:
        index = self._next_index
        self._next_index += 1
        call_id = call.id or f"toolu_{self.ctx.message_id.removeprefix('msg_')}_{index}"
        block = am.ToolUseOut(id=call_id, name=call.function.name, input={})
        arguments = msgspec.json.encode(call.function.arguments).decode()
        out += [
            am.ContentBlockStart(index=index, content_block=block),
            am.ContentBlockDelta(index=index, delta=am.InputJsonDelta(partial_json=arguments)),
            am.ContentBlockStop(index=index),
        ]


def _texts(chunk: OllamaChunk) -> tuple[str | None, str]:
    if isinstance(chunk, ChatChunk):
        return chunk.message.thinking, chunk.message.content
    return chunk.thinking, chunk.response


def event_text_bytes(event: am.StreamEvent) -> int:
    """How much text an event adds to the answer (for the limit on an assembled answer)."""
    if not isinstance(event, am.ContentBlockDelta):
        return 0
    delta = event.delta
    if isinstance(delta, am.TextDelta):
        return len(delta.text)
    if isinstance(delta, am.ThinkingDelta):
        return len(delta.thinking)
    if isinstance(delta, am.InputJsonDelta):
        return len(delta.partial_json)
    return 0


def assemble_message(events: Iterable[am.StreamEvent]) -> am.Message:
    """The whole ``message`` the events describe (for ``stream: false``)."""
    message: am.Message | None = None
    parts: dict[int, list[str]] = {}
    blocks: dict[int, am.OutBlock] = {}
    for event in events:
        if isinstance(event, am.MessageStart):
            message = msgspec.structs.replace(event.message, content=[])
        elif isinstance(event, am.ContentBlockStart):
            blocks[event.index] = event.content_block
            parts[event.index] = []
        elif isinstance(event, am.ContentBlockDelta):
            delta = event.delta
            if isinstance(delta, am.TextDelta):
                parts[event.index].append(delta.text)
            elif isinstance(delta, am.ThinkingDelta):
                parts[event.index].append(delta.thinking)
            elif isinstance(delta, am.InputJsonDelta):
                parts[event.index].append(delta.partial_json)
        elif isinstance(event, am.MessageDelta) and message is not None:
            message = msgspec.structs.replace(
                message, stop_reason=event.delta.stop_reason, stop_sequence=event.delta.stop_sequence,
                usage=event.usage,
            )
    if message is None:
        raise ValueError("no message_start among the events")
    message.content = [_whole_block(blocks[index], "".join(parts[index])) for index in sorted(blocks)]
    return message


def _whole_block(start: am.OutBlock, text: str) -> am.OutBlock:
    if isinstance(start, am.TextOut):
        return am.TextOut(text=start.text + text)
    if isinstance(start, am.ThinkingOut):
        return am.ThinkingOut(thinking=start.thinking + text, signature=start.signature)
    arguments = msgspec.json.decode(text) if text else start.input
    return am.ToolUseOut(id=start.id, name=start.name, input=arguments)
