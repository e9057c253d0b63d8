"""Stream translation for ``/v1/responses``: the backend's chat-completion stream in, OpenAI Responses
events out, and the whole ``response`` object assembled from the same events.

``ResponsesTranslator`` is an ``EventTranslator`` (``translate.pipeline``): it wraps the
``StreamTranslator`` that ``/api/chat`` uses, so parsing, inline ``<think>`` tags, tool-call
gathering, backend errors and token counts follow exactly the chat rules, and turns each Ollama
chunk into events, every one numbered by ``sequence_number`` from 0:

- the first call gives ``response.created`` and ``response.in_progress`` (``status: in_progress``,
  ``output: []``);
- thinking opens a ``reasoning`` item (``output_item.added``, ``reasoning_summary_part.added``) and
  streams as ``response.reasoning_summary_text.delta``; answer text opens a ``message`` item
  (``output_item.added``, ``content_part.added``) and streams as ``response.output_text.delta``.
  When the kind of text changes, or at the end, the open item is closed with its ``.done`` events
  and ``output_item.done`` carrying the whole item;
- at the end each tool call is one ``function_call`` item (``output_item.added``, one
  ``function_call_arguments.delta`` with the whole arguments, ``.done``, ``output_item.done``),
  then ``response.completed`` with the output and ``usage``, or ``response.incomplete`` (reason
  ``max_output_tokens``) when the backend stopped for length.

``response`` holds the final object once the stream finished: the non-streamed answer. More than
``max_text_bytes`` of text raises ``UpstreamProtocol``, so neither mode holds an unbounded answer.
Pure: ids and the clock come in from the caller.

May import: stdlib, msgspec, ``ollama_shim.wire``, ``ollama_shim.errors``,
``ollama_shim.translate.stream`` (and ``ollama_shim.sse`` for the ``SSEEvent`` type, at
type-checking time only).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import msgspec

from ollama_shim.errors import UpstreamProtocol
from ollama_shim.translate.stream import Clock, OllamaChunk, StreamTranslator
from ollama_shim.wire import responses as rw
from ollama_shim.wire.ollama import ChatChunk, ResponseToolCall
from ollama_shim.wire.openai import ChatCompletionChunk

if TYPE_CHECKING:
    from ollama_shim.sse import SSEEvent

_NS_PER_S = 1_000_000_000


@dataclass(slots=True)
class _OpenItem:
    """The output item being streamed: its kind, id, place and text so far."""

    kind: Literal["reasoning", "message"]
    id: str
    output_index: int
    parts: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "".join(self.parts)


class ResponsesTranslator:
    """One streamed answer as Responses events; see the module docstring."""

    def __init__(
        self, chat: StreamTranslator, template: rw.ResponseObject, *, max_text_bytes: int,
        wallclock: Clock = time.time_ns,
    ) -> None:
        self._chat = chat
        self._template = template
        self._max_text_bytes = max_text_bytes
        self._wallclock = wallclock
        self._id_suffix = template.id.removeprefix("resp_")
        self._sequence = 0
        self._started = False
        self._text_bytes = 0
        self._open: _OpenItem | None = None
        self._output: list[rw.OutputItem] = []
        self.finished = False
        self.response: rw.ResponseObject | None = None  # the final object, once finished

    # -- EventTranslator ----------------------------------------------------------------------------

    def feed_event(self, event: SSEEvent) -> list[rw.ResponsesEvent]:
        if self.finished:
            return []
        return self._translate(self._chat.feed_event(event))

    def finish(self) -> list[rw.ResponsesEvent]:
        if self.finished:
            return []
        return self._translate(self._chat.finish())

    def feed_chunk(self, chunk: ChatCompletionChunk) -> list[rw.ResponsesEvent]:
        """An already parsed chunk (a whole completion replayed as one); ``finish()`` ends it."""
        if self.finished:
            return []
        return self._translate(self._chat.feed(chunk))

    # -- translation --------------------------------------------------------------------------------

    def _translate(self, chunks: list[OllamaChunk]) -> list[rw.ResponsesEvent]:
        out = self._start()
        for chunk in chunks:
            if not isinstance(chunk, ChatChunk):
                continue  # the inner translator is made for chat: never happens
            self._count(chunk)
            if chunk.message.thinking:
                out += self._delta("reasoning", chunk.message.thinking)
            if chunk.message.content:
                out += self._delta("message", chunk.message.content)
            if chunk.done:
                out += self._complete(chunk)
        return out

    def _next(self) -> int:
        number = self._sequence
        self._sequence += 1
        return number

    def _start(self) -> list[rw.ResponsesEvent]:
        if self._started:
            return []
        self._started = True
        return [
            rw.ResponseCreated(sequence_number=self._next(), response=self._template),
            rw.ResponseInProgress(sequence_number=self._next(), response=self._template),
        ]

    def _count(self, chunk: ChatChunk) -> None:
        self._text_bytes += len(chunk.message.content.encode()) + len((chunk.message.thinking or "").encode())
        if self._text_bytes > self._max_text_bytes:
            raise UpstreamProtocol(f"backend sent an answer longer than the limit of {self._max_text_bytes} bytes")

    def _delta(self, kind: Literal["reasoning", "message"], text: str) -> list[rw.ResponsesEvent]:
        out: list[rw.ResponsesEvent] = []
        item = self._open
        if item is None or item.kind != kind:
            out += self._close_open()
            item = self._open_item(kind, out)
        item.parts.append(text)
        if kind == "reasoning":
            out.append(rw.ReasoningSummaryTextDelta(
                sequence_number=self._next(), item_id=item.id, output_index=item.output_index, summary_index=0,
                delta=text,
            ))
        else:
            out.append(rw.OutputTextDelta(
                sequence_number=self._next(), item_id=item.id, output_index=item.output_index, content_index=0,
                delta=text,
            ))
        return out

    def _open_item(self, kind: Literal["reasoning", "message"], out: list[rw.ResponsesEvent]) -> _OpenItem:
        index = len(self._output)
        prefix = "rs" if kind == "reasoning" else "msg"
        item = self._open = _OpenItem(kind, f"{prefix}_{self._id_suffix}_{index}", index)
        if kind == "reasoning":
            out.append(rw.OutputItemAdded(
                sequence_number=self._next(), output_index=index, item=rw.ReasoningItem(id=item.id, summary=[]),
            ))
            out.append(rw.ReasoningSummaryPartAdded(
                sequence_number=self._next(), item_id=item.id, output_index=index, summary_index=0,
                part=rw.SummaryText(text=""),
            ))
        else:
            out.append(rw.OutputItemAdded(
                sequence_number=self._next(), output_index=index,
                item=rw.MessageItem(id=item.id, status="in_progress", content=[]),
            ))
            out.append(rw.ContentPartAdded(
                sequence_number=self._next(), item_id=item.id, output_index=index, content_index=0,
                part=rw.OutputText(text=""),
            ))
        return item

    def _close_open(self) -> list[rw.ResponsesEvent]:
        item, self._open = self._open, None
        if item is None:
            return []
        text, index = item.text, item.output_index
        done: rw.OutputItem
        out: list[rw.ResponsesEvent]
        if item.kind == "reasoning":
            done = rw.ReasoningItem(id=item.id, summary=[rw.SummaryText(text=text)], encrypted_content=text)
            out = [
                rw.ReasoningSummaryTextDone(
                    sequence_number=self._next(), item_id=item.id, output_index=index, summary_index=0, text=text,
                ),
                rw.ReasoningSummaryPartDone(
                    sequence_number=self._next(), item_id=item.id, output_index=index, summary_index=0,
                    part=rw.SummaryText(text=text),
                ),
            ]
        else:
            done = rw.MessageItem(id=item.id, status="completed", content=[rw.OutputText(text=text)])
            out = [
                rw.OutputTextDone(
                    sequence_number=self._next(), item_id=item.id, output_index=index, content_index=0, text=text,
                ),
                rw.ContentPartDone(
                    sequence_number=self._next(), item_id=item.id, output_index=index, content_index=0,
                    part=rw.OutputText(text=text),
                ),
            ]
        out.append(rw.OutputItemDone(sequence_number=self._next(), output_index=index, item=done))
        self._output.append(done)
        return out

    def _function_call(self, position: int, call: ResponseToolCall) -> list[rw.ResponsesEvent]:
        index = len(self._output)
        item_id = f"fc_{self._id_suffix}_{index}"
        call_id = call.id or f"call_{self._id_suffix}_{position}"
        name = call.function.name
        arguments = msgspec.json.encode(call.function.arguments).decode()
        added = rw.FunctionCallItem(id=item_id, status="in_progress", call_id=call_id, name=name, arguments="")
        done = msgspec.structs.replace(added, status="completed", arguments=arguments)
        self._output.append(done)
        return [
            rw.OutputItemAdded(sequence_number=self._next(), output_index=index, item=added),
            rw.FunctionCallArgumentsDelta(
                sequence_number=self._next(), item_id=item_id, output_index=index, delta=arguments,
            ),
            rw.FunctionCallArgumentsDone(
                sequence_number=self._next(), item_id=item_id, output_index=index, name=name, arguments=arguments,
            ),
            rw.OutputItemDone(sequence_number=self._next(), output_index=index, item=done),
        ]

    def _complete(self, done: ChatChunk) -> list[rw.ResponsesEvent]:
        self.finished = True
        out = self._close_open()
        for position, call in enumerate(done.message.tool_calls or []):
            out += self._function_call(position, call)
        input_tokens, output_tokens = done.prompt_eval_count or 0, done.eval_count or 0
        usage = rw.ResponseUsage(
            input_tokens=input_tokens, output_tokens=output_tokens, total_tokens=input_tokens + output_tokens
        )
        output = list(self._output)
        if done.done_reason == "length":
            self.response = msgspec.structs.replace(
                self._template, status="incomplete", output=output, usage=usage,
                incomplete_details=rw.IncompleteDetails(reason="max_output_tokens"),
            )
            out.append(rw.ResponseIncomplete(sequence_number=self._next(), response=self.response))
        else:
            self.response = msgspec.structs.replace(
                self._template, status="completed", output=output, usage=usage,
                completed_at=self._wallclock() // _NS_PER_S,
            )
            out.append(rw.ResponseCompleted(sequence_number=self._next(), response=self.response))
        return out
