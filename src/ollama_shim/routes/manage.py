"""Ollama's model-management endpoints, answered honestly for a shim whose models live in the backend.

``POST /api/pull`` of a model the backend already serves succeeds at once (there is nothing to
download), streamed as Ollama does (NDJSON ending in ``{"status":"success"}``) or as one object;
a model the backend does not serve is a 404 that says where models come from. ``push``,
``create``, ``copy``, ``delete`` and ``blobs`` change models, which only the backend can do: they
are refused with a 400 that says so, never a silent success.

May import: aiohttp.web, msgspec, stdlib, ``ollama_shim.routes.*``, ``ollama_shim.errors``, ``ollama_shim.wire``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import msgspec
from aiohttp import web

from ..errors import BadRequest, ModelNotFound
from ..wire.ollama import StatusResponse
from .http import NdjsonStream, json_response, read_body
from .state import state_of

NOT_MANAGED = "ollama-shim does not {verb} models: they are managed by the backend ({backends})"


class PullRequest(msgspec.Struct):
    model: str = ""
    name: str = ""  # legacy spelling
    stream: bool | None = None


async def pull(request: web.Request) -> web.StreamResponse:
    state = state_of(request)
    req = await read_body(request, PullRequest)
    requested = req.model or req.name
    if not requested:
        raise BadRequest("model is required")
    try:
        await state.registry.resolve(requested)
    except ModelNotFound:
        backends = ", ".join(b.root for b in state.settings.backends)
        raise ModelNotFound(requested).with_hint(f"ollama-shim cannot download models; load it in {backends}") from None
    done = StatusResponse(status="success")
    if req.stream is False:
        return json_response(done)
    out = NdjsonStream(request)
    await out.write(done)
    return await out.finish()


def _refuse(verb: str) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handler(request: web.Request) -> web.Response:
        backends = ", ".join(b.root for b in state_of(request).settings.backends)
        raise BadRequest(NOT_MANAGED.format(verb=verb, backends=backends))

    return handler


push = _refuse("push")
create = _refuse("create")
copy = _refuse("copy")
delete = _refuse("delete")
blobs = _refuse("store blobs for")
