"""Send a translated request to its backend and bring the answer back in Ollama's shape.

``complete`` (one JSON object) and ``stream`` (NDJSON, line per upstream chunk) share the
retry rule: only before any byte went to the client, a backend that says no model is loaded
("No models loaded", llama.cpp's 503 "Loading model") gets a load request and a bounded retry
with backoff. Time spent there is reported as ``load_duration``. After the first line, a
failure becomes a last ``{"error": ...}`` line; text already sent is never sent again. So does
a shutdown whose grace period ran out (``routes.lifecycle``).

May import: aiohttp.web, stdlib, ``ollama_shim.routes.*``, ``ollama_shim.sse``, ``ollama_shim.translate``,
``ollama_shim.registry``, ``ollama_shim.errors``, ``ollama_shim.wire``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

from aiohttp import web

from ..errors import ShimError, UpstreamStatus
from ..registry import Resolved
from ..sse import SSEDecoder
from ..translate.response import completion_to_ollama, merge_pieces
from ..translate.stream import OllamaChunk, StreamContext, StreamTranslator
from ..wire.openai import ChatCompletion
from .http import NdjsonStream, json_response
from .lifecycle import SHUTTING_DOWN, lifecycle_of
from .state import AppState, log

T = TypeVar("T")

RETRY_DELAYS = (0.25, 0.5, 1.0, 2.0, 4.0)


def needs_load(exc: UpstreamStatus) -> bool:
    """The backend refused because the model is not (yet) loaded."""
    text = exc.message.lower()
    return "no models loaded" in text or (exc.status == 503 and "loading" in text)


async def with_load_retry(state: AppState, resolved: Resolved, attempt: Callable[[], Awaitable[T]]) -> T:
    for delay in (*RETRY_DELAYS, None):
        try:
            return await attempt()
        except UpstreamStatus as exc:
            if delay is None or not needs_load(exc):
                raise
            log.info("%s is not loaded on %s (%s); loading and retrying", resolved.record.upstream_id,
                     resolved.backend.root, exc.message)
            with contextlib.suppress(ShimError):
                await state.loader.load(resolved)
            await asyncio.sleep(delay)
    raise AssertionError("unreachable")


async def complete(
    state: AppState, resolved: Resolved, path: str, body: bytes, ctx: StreamContext
) -> web.Response:
    """One upstream answer -> one Ollama object (``stream: false``)."""
    async def attempt() -> ChatCompletion:
        return await state.upstream.post_json(resolved.backend, path, body, ChatCompletion)

    completion = await with_load_retry(state, resolved, attempt)
    return json_response(completion_to_ollama(completion, ctx))


async def _open(
    stack: contextlib.AsyncExitStack, state: AppState, resolved: Resolved, path: str, body: bytes, ctx: StreamContext
) -> tuple[AsyncIterator[bytes], StreamTranslator]:
    """Open the upstream stream on ``stack`` (loading and retrying as needed); the body's chunks and a
    translator whose ``load_duration`` is the time that took."""

    async def attempt() -> AsyncIterator[bytes]:
        return await stack.enter_async_context(state.upstream.stream(resolved.backend, path, body))

    chunks = await with_load_retry(state, resolved, attempt)
    return chunks, StreamTranslator(dataclasses.replace(ctx, load_ns=time.monotonic_ns() - ctx.started_ns))


async def stream(
    request: web.Request, state: AppState, resolved: Resolved, path: str, body: bytes, ctx: StreamContext
) -> web.StreamResponse:
    """Upstream SSE -> Ollama NDJSON, chunk by chunk."""
    async with contextlib.AsyncExitStack() as stack:
        chunks, translator = await _open(stack, state, resolved, path, body, ctx)
        out = NdjsonStream(request)
        try:
            await _pump(chunks, translator, out)
        except ShimError as exc:
            if not out.started:
                raise  # nothing was sent: the error boundary answers with the right status
            log.warning("stream from %s broke: %s", resolved.backend.root, exc.message)
            await out.write_error(exc.message)
        except asyncio.CancelledError:
            if not out.started or not lifecycle_of(request).absorb():
                raise  # the client left, or nothing was sent yet (the lifecycle middleware answers 503)
            await out.write_error(SHUTTING_DOWN)  # the server is stopping and the grace period is over
        return await out.finish()


def _feed(decoder: SSEDecoder, translator: StreamTranslator, data: bytes, sink: list[OllamaChunk]) -> None:
    """Translate one read into ``sink``; on a failure, what came before it stays in ``sink``."""
    for event in decoder.feed(data):
        sink += translator.feed_event(event)


def _feed_end(decoder: SSEDecoder, translator: StreamTranslator, sink: list[OllamaChunk]) -> None:
    for event in decoder.close():
        sink += translator.feed_event(event)
    if not translator.finished:  # the backend ended without [DONE]: tolerated
        sink += translator.finish()


async def _pump(chunks: AsyncIterator[bytes], translator: StreamTranslator, out: NdjsonStream) -> None:
    decoder = SSEDecoder()
    async for data in chunks:
        lines: list[OllamaChunk] = []
        try:
            _feed(decoder, translator, data, lines)
        finally:  # what was translated before a failure still goes out, once
            await out.write_many(lines)
        if translator.finished:
            return
    lines = []
    try:
        _feed_end(decoder, translator, lines)
    finally:
        await out.write_many(lines)


async def gather(state: AppState, resolved: Resolved, path: str, body: bytes, ctx: StreamContext) -> web.Response:
    """A streamed upstream answer assembled into one Ollama object (``stream: false`` on a backend
    whose dialect says ``stream_upstream``), so that a client that leaves stops the backend too."""
    async with contextlib.AsyncExitStack() as stack:
        chunks, translator = await _open(stack, state, resolved, path, body, ctx)
        decoder = SSEDecoder()
        pieces: list[OllamaChunk] = []
        async for data in chunks:
            _feed(decoder, translator, data, pieces)
            if translator.finished:
                break
        else:
            _feed_end(decoder, translator, pieces)
    return json_response(merge_pieces(pieces))
