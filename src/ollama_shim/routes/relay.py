"""Send a translated request to its backend and bring the answer back in Ollama's shape.

``deliver`` picks the relay the plan's ``Delivery`` names: ``stream`` (NDJSON, lines as the backend's
SSE chunks arrive), ``gather`` (the backend streams, the client gets one object assembled from
it, bounded by ``limits.gathered_bytes``) or ``complete`` (one JSON object each way). The first
two write or collect what ``translate.pipeline.StreamPipeline`` produces; this module holds no
decoding or translation of its own. An optional ``amend`` step sees each batch of chunks before it
is written or kept (``/api/generate`` puts its ``context`` on the done chunk there).

Other APIs reuse the same loop: ``stream_answer`` and ``gather_answer`` take an ``Answer`` (their
translator, their ``StreamWriter`` and their assembly of a whole answer); ``SseStream`` writes
tagged structs as ``event:``/``data:`` frames and a failure after the start as one error frame.

All share the retry rule: only before any byte went to the client, a backend that says no model
is loaded ("No models loaded", llama.cpp's 503 "Loading model") gets a load request and a bounded
retry with backoff. Time spent before the backend began on the answer is reported as
``load_duration``. After the first line, a failure becomes a last ``{"error": ...}`` line (or the
writer's error frame); text already sent is never sent again. So does a shutdown whose grace period ran out
(``routes.lifecycle``).

May import: aiohttp.web, stdlib, ``ollama_shim.routes.*``, ``ollama_shim.translate``,
``ollama_shim.registry``, ``ollama_shim.errors``, ``ollama_shim.wire``, ``ollama_shim.metrics``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from aiohttp import web

from .. import metrics
from ..errors import ShimError, UpstreamProtocol, UpstreamStatus
from ..registry import Resolved
from ..translate.pipeline import EventTranslator, Produced, StreamPipeline
from ..translate.request import Delivery
from ..translate.response import completion_to_ollama, merge_pieces, text_bytes
from ..translate.stream import OllamaChunk, StreamContext, StreamTranslator
from ..wire.openai import ChatCompletion
from .http import NdjsonStream, encode, json_response
from .lifecycle import SHUTTING_DOWN, lifecycle_of
from .state import AppState, log

T = TypeVar("T")
# A last step on each batch of chunks before it is written or kept (e.g. ``context`` on the done chunk).
Amend = Callable[[list[T]], Awaitable[list[T]]]

RETRY_DELAYS = (0.25, 0.5, 1.0, 2.0, 4.0)


def needs_load(exc: UpstreamStatus) -> bool:
    """The backend refused because the model is not (yet) loaded."""
    text = exc.message.lower()
    return "no models loaded" in text or (exc.status == 503 and "loading" in text)


async def _retried(state: AppState, resolved: Resolved, attempt: Callable[[], Awaitable[T]]) -> tuple[T, int]:
    """``attempt()``'s result, loading and retrying while the model is not loaded, and the monotonic
    ns at which the attempt that succeeded began."""
    metrics.route_to(resolved.record.name, resolved.backend.root)
    for delay in (*RETRY_DELAYS, None):
        began_ns = time.monotonic_ns()
        try:
            return await attempt(), began_ns
        except UpstreamStatus as exc:
            if delay is None or not needs_load(exc):
                raise
            log.info("%s is not loaded on %s (%s); loading and retrying", resolved.record.upstream_id,
                     resolved.backend.root, exc.message)
            with contextlib.suppress(ShimError):
                await state.loader.load(resolved)
            await asyncio.sleep(delay)
    raise AssertionError("unreachable")


async def with_load_retry(state: AppState, resolved: Resolved, attempt: Callable[[], Awaitable[T]]) -> T:
    """``attempt()``, loaded and retried while the backend says the model is not loaded."""
    result, _ = await _retried(state, resolved, attempt)
    return result


async def deliver(
    delivery: Delivery, request: web.Request, state: AppState, resolved: Resolved, path: str, body: bytes,
    ctx: StreamContext, amend: Amend[OllamaChunk] | None = None,
) -> web.StreamResponse:
    """Relay the answer the way ``delivery`` says; ``amend`` sees every batch of chunks first."""
    if delivery is Delivery.STREAM:
        return await stream(request, state, resolved, path, body, ctx, amend)
    if delivery is Delivery.GATHER:
        return await gather(state, resolved, path, body, ctx, amend)
    return await complete(state, resolved, path, body, ctx, amend)


async def complete(
    state: AppState, resolved: Resolved, path: str, body: bytes, ctx: StreamContext,
    amend: Amend[OllamaChunk] | None = None,
) -> web.Response:
    """One upstream answer -> one Ollama object (``stream: false``)."""
    async def attempt() -> ChatCompletion:
        return await state.upstream.post_json(resolved.backend, path, body, ChatCompletion)

    completion, began_ns = await _retried(state, resolved, attempt)
    ctx = dataclasses.replace(ctx, load_ns=max(0, began_ns - ctx.started_ns))
    answer = [completion_to_ollama(completion, ctx)]
    done = (await amend(answer) if amend else answer)[-1]
    metrics.observe_tokens(done)
    return json_response(done)


async def _open(
    stack: contextlib.AsyncExitStack, state: AppState, resolved: Resolved, path: str, body: bytes,
    make_translator: Callable[[], EventTranslator[T]],
) -> tuple[AsyncIterator[bytes], StreamPipeline[T]]:
    """Open the upstream stream on ``stack`` (loading and retrying as needed); its body's chunks and
    a pipeline over a translator made once it opened."""

    async def attempt() -> AsyncIterator[bytes]:
        return await stack.enter_async_context(state.upstream.stream(resolved.backend, path, body))

    chunks = await with_load_retry(state, resolved, attempt)
    return chunks, StreamPipeline(make_translator(), max_line=state.settings.limits.sse_line_bytes)


def _ollama_translator(ctx: StreamContext) -> Callable[[], StreamTranslator]:
    """Ollama chunks, with ``load_duration`` from the request's arrival until the stream opened."""
    def make() -> StreamTranslator:
        return StreamTranslator(dataclasses.replace(ctx, load_ns=time.monotonic_ns() - ctx.started_ns))

    return make


async def _drive(
    chunks: AsyncIterator[bytes], pipeline: StreamPipeline[T], take: Callable[[list[T]], Awaitable[None]]
) -> None:
    """Feed every read to ``pipeline`` and hand what it produced to ``take``; a backend error is raised
    once what came before it was taken. Stops reading when the answer is complete."""
    async for data in chunks:
        await _take(pipeline.feed(data), take)
        if pipeline.done:
            return
    await _take(pipeline.close(), take)  # the backend hung up, with or without [DONE]


def _amended(
    take: Callable[[list[T]], Awaitable[None]], amend: Amend[T] | None
) -> Callable[[list[T]], Awaitable[None]]:
    if amend is None:
        return take

    async def amended(chunks: list[T]) -> None:
        await take(await amend(chunks))

    return amended


async def _take(produced: Produced[T], take: Callable[[list[T]], Awaitable[None]]) -> None:
    metrics.observe_chunks(produced.chunks)
    await take(produced.chunks)
    if produced.error is not None:
        raise produced.error


class StreamWriter(Protocol[T]):
    """Where a streamed answer goes: ``NdjsonStream`` (Ollama) or ``SseStream`` (Anthropic and
    other event-stream APIs)."""

    @property
    def started(self) -> bool: ...

    async def write_many(self, chunks: list[T]) -> None: ...

    async def write_error(self, message: str, status: int = 500) -> None: ...

    async def finish(self) -> web.StreamResponse: ...


@dataclass(frozen=True)
class Answer(Generic[T]):
    """How one API shapes a streamed answer: the translator (made once the backend's stream opened),
    the writer of a streamed answer, and the assembly of a gathered one (with each chunk's text
    size, for ``limits.gathered_bytes``)."""

    make_translator: Callable[[], EventTranslator[T]]
    open_writer: Callable[[web.Request], StreamWriter[T]]
    assemble: Callable[[list[T]], object]
    text_bytes: Callable[[T], int]
    amend: Amend[T] | None = None  # sees each batch of chunks before it is written or kept


def _ollama_answer(ctx: StreamContext, amend: Amend[OllamaChunk] | None) -> Answer[OllamaChunk]:
    return Answer(_ollama_translator(ctx), NdjsonStream, merge_pieces, text_bytes, amend)


class SseStream(Generic[T]):
    """A ``text/event-stream`` response of tagged structs: ``event: <tag>`` and ``data: <JSON>`` per
    chunk. Once the 200 went out, a failure is one ``event: error`` frame built by ``error_frame``."""

    def __init__(self, request: web.Request, error_frame: Callable[[int, str], object]) -> None:
        self._request = request
        self._error_frame = error_frame
        self.response = web.StreamResponse(
            status=200, headers={"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache"}
        )
        self.started = False

    @staticmethod
    def frame(chunk: object) -> bytes:
        tag = type(chunk).__struct_config__.tag  # type: ignore[attr-defined]
        return b"event: " + str(tag).encode() + b"\ndata: " + encode(chunk) + b"\n\n"

    async def write_many(self, chunks: list[T]) -> None:
        if chunks:
            await self._start()
            await self.response.write(b"".join(self.frame(chunk) for chunk in chunks))

    async def write_error(self, message: str, status: int = 500) -> None:
        await self._start()
        await self.response.write(self.frame(self._error_frame(status, message)))

    async def finish(self) -> web.StreamResponse:
        await self._start()
        await self.response.write_eof()
        return self.response

    async def _start(self) -> None:
        if not self.started:
            await self.response.prepare(self._request)
            self.started = True


async def stream(
    request: web.Request, state: AppState, resolved: Resolved, path: str, body: bytes, ctx: StreamContext,
    amend: Amend[OllamaChunk] | None = None,
) -> web.StreamResponse:
    """Upstream SSE -> Ollama NDJSON, chunk by chunk."""
    return await stream_answer(request, state, resolved, path, body, _ollama_answer(ctx, amend))


async def stream_answer(
    request: web.Request, state: AppState, resolved: Resolved, path: str, body: bytes, answer: Answer[T]
) -> web.StreamResponse:
    """Upstream SSE -> the client, chunk by chunk, in the shape ``answer`` gives."""
    async with contextlib.AsyncExitStack() as stack:
        chunks, pipeline = await _open(stack, state, resolved, path, body, answer.make_translator)
        out = answer.open_writer(request)
        try:
            await _drive(chunks, pipeline, _amended(out.write_many, answer.amend))
        except ShimError as exc:
            if not out.started:
                raise  # nothing was sent: the error boundary answers with the right status
            log.warning("stream from %s broke: %s", resolved.backend.root, exc.message)
            metrics.note_error(exc)
            await out.write_error(exc.message, exc.status)
        except asyncio.CancelledError:
            if not out.started or not lifecycle_of(request).absorb():
                raise  # the client left, or nothing was sent yet (the lifecycle middleware answers 503)
            await out.write_error(SHUTTING_DOWN, 503)  # the server is stopping and the grace period is over
        return await out.finish()


async def gather(
    state: AppState, resolved: Resolved, path: str, body: bytes, ctx: StreamContext,
    amend: Amend[OllamaChunk] | None = None,
) -> web.Response:
    """A streamed upstream answer assembled into one Ollama object (``stream: false`` on a backend
    whose dialect says ``stream_upstream``), so that a client that leaves stops the backend too.
    More than ``limits.gathered_bytes`` of text is a 502."""
    return await gather_answer(state, resolved, path, body, _ollama_answer(ctx, amend))


async def gather_answer(
    state: AppState, resolved: Resolved, path: str, body: bytes, answer: Answer[T]
) -> web.Response:
    """A streamed upstream answer assembled into one object by ``answer``; over
    ``limits.gathered_bytes`` of text it is a 502."""
    limit = state.settings.limits.gathered_bytes
    pieces: list[T] = []
    size = 0

    async def keep(chunks: list[T]) -> None:
        nonlocal size
        pieces.extend(chunks)
        size += sum(answer.text_bytes(chunk) for chunk in chunks)
        if size > limit:
            raise UpstreamProtocol(
                f"backend at {resolved.backend.root} sent an answer longer than the limit of {limit} bytes"
            )

    async with contextlib.AsyncExitStack() as stack:
        chunks, pipeline = await _open(stack, state, resolved, path, body, answer.make_translator)
        await _drive(chunks, pipeline, _amended(keep, answer.amend))
    return json_response(answer.assemble(pieces))
