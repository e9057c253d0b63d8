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

All share one attempt loop (``_retried``, also behind ``with_load_retry`` for the routes that make
their own calls): only before any byte went to the client,

- a model with several replicas (``Resolved.candidates``) is sent to the one ``routing.Router``
  chooses, holding a place on it (``max_concurrent``/``max_queue``) until the answer is over; a
  replica that fails in a way ``routing.failover_worthy`` names (no connection, a timeout, a 5xx or
  429, a broken answer) is marked down and the request goes to the next, until none is left;
- a backend that says no model is loaded ("No models loaded", llama.cpp's 503 "Loading model")
  gets a load request and a bounded retry with backoff.

A streamed answer counts as begun only once its first body chunk came (``_open`` reads it inside
the attempt), so a backend that dies before it produced anything costs the client nothing.

Time spent before the backend began on the answer is reported as
``load_duration``. After the first line, a failure becomes a last ``{"error": ...}`` line (or the
writer's error frame); text already sent is never sent again. So does a shutdown whose grace period ran out
(``routes.lifecycle``).

May import: aiohttp.web, stdlib, ``ollama_shim.routes.*``, ``ollama_shim.translate``,
``ollama_shim.registry``, ``ollama_shim.routing``, ``ollama_shim.errors``, ``ollama_shim.wire``,
``ollama_shim.metrics``.
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
from ..errors import ShimError, UpstreamError, UpstreamProtocol, UpstreamStatus
from ..registry import Resolved
from ..routing import failover_worthy, retarget
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


Attempt = Callable[[Resolved], Awaitable[T]]  # one try on one replica (the model as that backend lists it)


def aimed(body: bytes, resolved: Resolved, replica: Resolved) -> bytes:
    """``body``, built for ``resolved``, as sent to ``replica`` (its own id of the model)."""
    return retarget(body, resolved.record.upstream_id, replica.record.upstream_id)


async def _retried(
    state: AppState, resolved: Resolved, attempt: Attempt[T], *, body: bytes | Callable[[], bytes] | None = None,
    hold: contextlib.AsyncExitStack | None = None,
) -> tuple[T, int]:
    """``attempt(replica)``'s result and the monotonic ns at which the attempt that succeeded began.

    The replica is the router's choice among ``resolved``'s (``body`` gives the conversation key
    for affinity); a failover-worthy failure marks it down and the next is tried; a model that is
    not loaded is loaded and retried on the same replica. The place held on the replica is given
    up when ``hold`` closes (the answer is read after the attempt) or at once without one.
    """
    router = state.registry.router
    candidates = resolved.candidates
    sources = [c.source for c in candidates]
    key = router.affinity(body) if len(candidates) > 1 else None
    tried: set[int] = set()
    while True:
        index = router.choose(sources, tried, key)
        if index is None:
            raise AssertionError("unreachable: the last replica's failure is raised")
        tried.add(index)
        replica = candidates[index]
        metrics.route_to(resolved.record.name, replica.backend.root)
        slot = await router.admit(replica.source)
        try:
            answered = await _loaded(state, replica, attempt)
        except UpstreamError as exc:
            slot.release()
            if not failover_worthy(exc):
                raise
            router.failed(replica.source, exc)
            if len(tried) == len(candidates):
                raise
            log.warning("%s failed on %s (%s); trying another replica", resolved.record.name,
                        replica.backend.root, exc.message)
            continue
        except BaseException:
            slot.release()
            raise
        router.succeeded(replica.source)
        if hold is None:
            slot.release()
        else:
            hold.callback(slot.release)
        return answered


async def _loaded(state: AppState, replica: Resolved, attempt: Attempt[T]) -> tuple[T, int]:
    """``attempt(replica)``, loading the model and retrying while the backend says it is not loaded."""
    for delay in (*RETRY_DELAYS, None):
        began_ns = time.monotonic_ns()
        try:
            return await attempt(replica), began_ns
        except UpstreamStatus as exc:
            if delay is None or not needs_load(exc):
                raise
            log.info("%s is not loaded on %s (%s); loading and retrying", replica.record.upstream_id,
                     replica.backend.root, exc.message)
            with contextlib.suppress(ShimError):
                await state.loader.load(replica)
            await asyncio.sleep(delay)
    raise AssertionError("unreachable")


async def with_load_retry(
    state: AppState, resolved: Resolved, attempt: Attempt[T], *, body: bytes | Callable[[], bytes] | None = None,
    hold: contextlib.AsyncExitStack | None = None,
) -> T:
    """``attempt(replica)`` on a replica of ``resolved``, failed over, loaded and retried as needed
    (``_retried``); the replica's place is held until ``hold`` closes, if given."""
    result, _ = await _retried(state, resolved, attempt, body=body, hold=hold)
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
    async def attempt(on: Resolved) -> ChatCompletion:
        return await state.upstream.post_json(on.backend, path, aimed(body, resolved, on), ChatCompletion)

    completion, began_ns = await _retried(state, resolved, attempt, body=body)
    ctx = dataclasses.replace(ctx, load_ns=max(0, began_ns - ctx.started_ns))
    answer = [completion_to_ollama(completion, ctx)]
    done = (await amend(answer) if amend else answer)[-1]
    metrics.observe_tokens(done)
    return json_response(done)


@dataclass
class _Opened(Generic[T]):
    """A backend's stream that began: its first body chunk (None: the body was empty), the rest,
    and the pipeline over a translator made when its headers came."""

    first: bytes | None
    rest: AsyncIterator[bytes]
    pipeline: StreamPipeline[T]
    root: str  # the replica's


async def _open(
    stack: contextlib.AsyncExitStack, state: AppState, resolved: Resolved, path: str, body: bytes,
    make_translator: Callable[[], EventTranslator[T]],
) -> _Opened[T]:
    """Open the upstream stream on ``stack`` and read its first chunk (failing over, loading and
    retrying as needed: nothing went to the client yet)."""
    max_line = state.settings.limits.sse_line_bytes

    async def attempt(on: Resolved) -> _Opened[T]:
        async with contextlib.AsyncExitStack() as opening:
            sent = aimed(body, resolved, on)
            chunks = await opening.enter_async_context(state.upstream.stream(on.backend, path, sent))
            pipeline = StreamPipeline(make_translator(), max_line=max_line)  # load_duration ends here
            first = await anext(aiter(chunks), None)
            stack.push_async_callback(opening.pop_all().aclose)
        return _Opened(first, chunks, pipeline, on.backend.root)

    return await with_load_retry(state, resolved, attempt, body=body, hold=stack)


def _ollama_translator(ctx: StreamContext) -> Callable[[], StreamTranslator]:
    """Ollama chunks, with ``load_duration`` from the request's arrival until the stream opened."""
    def make() -> StreamTranslator:
        return StreamTranslator(dataclasses.replace(ctx, load_ns=time.monotonic_ns() - ctx.started_ns))

    return make


async def _drive(opened: _Opened[T], take: Callable[[list[T]], Awaitable[None]]) -> None:
    """Feed every read to the pipeline and hand what it produced to ``take``; a backend error is raised
    once what came before it was taken. Stops reading when the answer is complete."""
    pipeline = opened.pipeline
    if opened.first is not None:
        await _take(pipeline.feed(opened.first), take)
        if pipeline.done:
            return
        async for data in opened.rest:
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
        opened = await _open(stack, state, resolved, path, body, answer.make_translator)
        out = answer.open_writer(request)
        try:
            await _drive(opened, _amended(out.write_many, answer.amend))
        except ShimError as exc:
            if not out.started:
                raise  # nothing was sent: the error boundary answers with the right status
            log.warning("stream from %s broke: %s", opened.root, exc.message)
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
    root = resolved.backend.root  # the replica's, once it is known

    async def keep(chunks: list[T]) -> None:
        nonlocal size
        pieces.extend(chunks)
        size += sum(answer.text_bytes(chunk) for chunk in chunks)
        if size > limit:
            raise UpstreamProtocol(
                f"backend at {root} sent an answer longer than the limit of {limit} bytes"
            )

    async with contextlib.AsyncExitStack() as stack:
        opened = await _open(stack, state, resolved, path, body, answer.make_translator)
        root = opened.root
        await _drive(opened, _amended(keep, answer.amend))
    return json_response(answer.assemble(pieces))
