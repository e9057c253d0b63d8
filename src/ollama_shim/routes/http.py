"""Request and response plumbing shared by the route handlers.

``read_body`` parses a JSON body of any Content-Type into a wire struct (Ollama parses bodies
whatever their Content-Type), turning every decoding problem into ``BadRequest``: nesting
deeper than ``MAX_JSON_DEPTH`` is refused before decoding, and a number beyond float range is
refused in Go's words. A large body is decoded in a worker thread, and ``off_loop`` runs a
route's own per-request work (translation, encoding) there too, so that a large request never
holds the event loop, and every other client, for longer than a small one would.
``json_response`` encodes a struct with Ollama's Content-Type. ``NdjsonStream`` writes one
JSON object per line and, once the 200 went out, renders a failure as a last ``{"error"}`` line.

May import: aiohttp.web, msgspec, stdlib, ``ollama_shim.errors``, ``ollama_shim.wire``,
``ollama_shim.translate.json_depth``.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Callable
from typing import Any, TypeVar

import msgspec
from aiohttp import web

from ..errors import BadRequest, PayloadTooLarge
from ..translate.json_depth import MAX_JSON_DEPTH, exceeds_depth
from ..wire.ollama import ErrorResponse

T = TypeVar("T")

JSON_TYPE = "application/json; charset=utf-8"
NDJSON_TYPE = "application/x-ndjson"
_encode = msgspec.json.Encoder().encode


def encode(obj: Any) -> bytes:
    return _encode(obj)


# Bodies up to this size are handled on the event loop (a few milliseconds at most); larger
# ones in a worker thread, where the interpreter hands the loop its turn every few milliseconds.
OFF_LOOP_BYTES = 64 * 1024


async def read_body(request: web.Request, type_: type[T]) -> T:
    """The request body decoded as ``type_``; BadRequest/PayloadTooLarge in Ollama's words."""
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise PayloadTooLarge(f"request body is larger than the limit of {request.client_max_size} bytes") from None
    if len(body) > OFF_LOOP_BYTES:
        return await asyncio.to_thread(_decode, body, type_)
    return _decode(body, type_)


async def off_loop(request: web.Request, work: Callable[[], T]) -> T:
    """``work()``, in a worker thread when the request's body is large (see ``OFF_LOOP_BYTES``).
    Call it after ``read_body``: the body is then at hand and its size known."""
    if len(await request.read()) > OFF_LOOP_BYTES:
        return await asyncio.to_thread(work)
    return work()


def _decode(body: bytes, type_: type[T]) -> T:
    if not body.strip():
        raise BadRequest("missing request body")
    if exceeds_depth(body):
        raise BadRequest(f"invalid JSON in request body: exceeded max depth of {MAX_JSON_DEPTH}")
    try:
        return msgspec.json.decode(body, type=type_)
    except msgspec.ValidationError as exc:
        number = _number_out_of_range(body) if "out of range" in str(exc) else None
        if number is not None:
            raise BadRequest(f"json: cannot unmarshal number {number} into Go value of type float64") from None
        raise BadRequest(f"invalid request: {exc}") from None
    except msgspec.DecodeError as exc:
        raise BadRequest(f"invalid JSON in request body: {exc}") from None
    except RecursionError:  # not expected below MAX_JSON_DEPTH; never a 500 all the same
        raise BadRequest("invalid JSON in request body: nested too deeply") from None


# A JSON string (skipped) or a number literal.
_STRING_OR_NUMBER = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|(-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)', re.DOTALL)
_SHOWN_DIGITS = 40


def _number_out_of_range(body: bytes) -> str | None:
    """The first number literal in ``body`` beyond float64 range, shortened, or None.
    Runs only after the decoder refused the body, so its cost never falls on good requests."""
    for match in _STRING_OR_NUMBER.finditer(body):
        literal = match.group(1)
        if literal is not None and math.isinf(float(literal)):
            text = literal.decode()
            return text if len(text) <= _SHOWN_DIGITS else text[:_SHOWN_DIGITS] + "…"
    return None


def json_response(obj: Any, status: int = 200) -> web.Response:
    return web.Response(body=_encode(obj), status=status, headers={"Content-Type": JSON_TYPE})


def error_response(status: int, message: str) -> web.Response:
    return json_response(ErrorResponse(error=message), status)


class NdjsonStream:
    """An ``application/x-ndjson`` response written line by line."""

    def __init__(self, request: web.Request) -> None:
        self._request = request
        self.response = web.StreamResponse(status=200, headers={"Content-Type": NDJSON_TYPE})
        self.started = False

    async def write(self, obj: Any) -> None:
        if not self.started:
            await self.response.prepare(self._request)
            self.started = True
        await self.response.write(_encode(obj) + b"\n")

    async def write_many(self, objs: list[Any]) -> None:
        if objs:
            if not self.started:
                await self.response.prepare(self._request)
                self.started = True
            await self.response.write(b"".join(_encode(o) + b"\n" for o in objs))

    async def write_error(self, message: str, status: int = 500) -> None:
        """After the first line, an error is one more line and the stream ends (Ollama's rule); the
        line has no room for the ``status``."""
        await self.write(ErrorResponse(error=message))

    async def finish(self) -> web.StreamResponse:
        if not self.started:
            await self.response.prepare(self._request)
        await self.response.write_eof()
        return self.response
