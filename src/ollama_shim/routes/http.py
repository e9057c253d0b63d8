"""Request and response plumbing shared by the route handlers.

``read_body`` parses a JSON body of any Content-Type into a wire struct (Ollama parses bodies
whatever their Content-Type), turning every decoding problem into ``BadRequest``.
``json_response`` encodes a struct with Ollama's Content-Type. ``NdjsonStream`` writes one
JSON object per line and, once the 200 went out, renders a failure as a last ``{"error"}`` line.

May import: aiohttp.web, msgspec, stdlib, ``ollama_shim.errors``, ``ollama_shim.wire``.
"""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec
from aiohttp import web

from ..errors import BadRequest, PayloadTooLarge
from ..wire.ollama import ErrorResponse

T = TypeVar("T")

JSON_TYPE = "application/json; charset=utf-8"
NDJSON_TYPE = "application/x-ndjson"
_encode = msgspec.json.Encoder().encode


def encode(obj: Any) -> bytes:
    return _encode(obj)


async def read_body(request: web.Request, type_: type[T]) -> T:
    """The request body decoded as ``type_``; BadRequest/PayloadTooLarge in Ollama's words."""
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise PayloadTooLarge(f"request body is larger than the limit of {request.client_max_size} bytes") from None
    if not body.strip():
        raise BadRequest("missing request body")
    try:
        return msgspec.json.decode(body, type=type_)
    except msgspec.ValidationError as exc:
        raise BadRequest(f"invalid request: {exc}") from None
    except msgspec.DecodeError as exc:
        raise BadRequest(f"invalid JSON in request body: {exc}") from None


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
