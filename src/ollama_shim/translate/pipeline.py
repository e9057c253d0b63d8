"""One streamed backend answer, bytes in, output chunks out: the SSE decoder and a translator as one
incremental object.

Use::

    pipeline = StreamPipeline(StreamTranslator(ctx))
    for data in reads:                       # whatever each socket read returned
        produced = pipeline.feed(data)
        send(produced.chunks)                # valid even when an error follows
        if produced.error is not None:       # the backend broke: stop, report it
            ...
        if pipeline.done:                    # [DONE] came: stop reading
            ...
    produced = pipeline.close()              # the backend hung up (no [DONE] is tolerated)

Every chunk is returned once. After an error, after the translator finished and after
``close()``, ``feed`` and ``close`` return nothing. Only ``ShimError`` is caught: a failure of
the backend, never a defect of the shim.

The loop does not know what it produces: any ``EventTranslator`` (Ollama chunks today; Anthropic
or Responses events later) plugs in.

May import: stdlib, ``ollama_shim.sse``, ``ollama_shim.errors``.
"""

from __future__ import annotations

from typing import Generic, NamedTuple, Protocol, TypeVar

from ollama_shim.errors import ShimError
from ollama_shim.sse import DEFAULT_MAX_LINE, SSEDecoder, SSEEvent

T = TypeVar("T")


class EventTranslator(Protocol[T]):
    """Turns the backend's SSE events into output chunks of type ``T``."""

    finished: bool  # the stream's end was seen (``[DONE]``) or ``finish()`` ran

    def feed_event(self, event: SSEEvent) -> list[T]:
        """Chunks for one event; raises ``ShimError`` when the event says the backend failed."""
        ...

    def finish(self) -> list[T]:
        """Held-back output and the closing chunk(s); nothing when already finished."""
        ...


class Produced(NamedTuple, Generic[T]):
    """What one ``feed``/``close`` gave: the chunks, then the error that stopped them, if any."""

    chunks: list[T]
    error: ShimError | None = None


class StreamPipeline(Generic[T]):
    """SSE decoding and translation of one streamed answer; see the module docstring."""

    __slots__ = ("_decoder", "_stopped", "_translator")

    def __init__(self, translator: EventTranslator[T], *, max_line: int = DEFAULT_MAX_LINE) -> None:
        self._decoder = SSEDecoder(max_line=max_line)
        self._translator = translator
        self._stopped = False  # an error came, or close() ran

    @property
    def done(self) -> bool:
        """Nothing more will be produced: the answer finished, broke, or the stream was closed."""
        return self._stopped or self._translator.finished

    def feed(self, data: bytes) -> Produced[T]:
        """Take one read's bytes; return the chunks they completed."""
        if self.done:
            return Produced([])
        chunks: list[T] = []
        try:
            for event in self._decoder.feed(data):
                chunks += self._translator.feed_event(event)
                if self._translator.finished:
                    break  # anything after [DONE] is not part of the answer
        except ShimError as exc:
            self._stopped = True
            return Produced(chunks, exc)
        return Produced(chunks)

    def close(self) -> Produced[T]:
        """The backend ended the stream: deliver its unterminated last event, then finish the
        answer if ``[DONE]`` never came."""
        if self.done:
            self._stopped = True
            return Produced([])
        self._stopped = True
        chunks: list[T] = []
        try:
            for event in self._decoder.close():
                chunks += self._translator.feed_event(event)
                if self._translator.finished:
                    return Produced(chunks)
            chunks += self._translator.finish()
        except ShimError as exc:
            return Produced(chunks, exc)
        return Produced(chunks)
