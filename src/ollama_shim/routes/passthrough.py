"""``/v1/*`` forwarded to a backend, so OpenAI clients (and Copilot's chat) use the same port.

The method, query, headers (less hop-by-hop ones) and body go through unchanged, with one
exception: a ``model`` in a JSON body that names a model by its Ollama name (as listed by
``/api/tags``) is rewritten to the backend's own id, and picks the backend. The response is
streamed back chunk by chunk. With several backends, ``GET /v1/models`` is their merged list.

May import: aiohttp.web, msgspec, stdlib, ``ollama_shim.routes.*``, ``ollama_shim.settings``,
``ollama_shim.errors``, ``ollama_shim.wire``.
"""

from __future__ import annotations

from typing import Any

import msgspec
from aiohttp import web

from ..errors import UpstreamError
from ..settings import Backend
from ..wire.openai import ModelList
from .state import AppState, log, state_of

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
    }
)


class _ModelField(msgspec.Struct):
    model: str | None = None


def _request_headers(request: web.Request, state: AppState) -> dict[str, str]:
    headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
    if state.settings.api_key:  # the client's key was for the shim, not for the backend
        headers.pop("Authorization", None)
    return headers


async def _route(state: AppState, body: bytes) -> tuple[Backend, bytes]:
    """Pick the backend by the body's model, rewriting an Ollama name to the backend's id."""
    default = state.settings.backends[0]
    if not body:
        return default, body
    try:
        requested = msgspec.json.decode(body, type=_ModelField).model
    except (msgspec.DecodeError, msgspec.ValidationError):
        return default, body  # not ours to judge: the backend answers it
    if not requested:
        return default, body
    resolved = await state.registry.resolve(requested)
    if resolved.record.upstream_id != requested:
        doc: dict[str, Any] = msgspec.json.decode(body)
        doc["model"] = resolved.record.upstream_id
        body = msgspec.json.encode(doc)
    return resolved.backend, body


async def _merged_models(state: AppState) -> web.Response:
    merged = ModelList(data=[])
    for backend in state.settings.backends:
        merged.data.extend((await state.upstream.get_json(backend, "/v1/models", ModelList)).data)
    body = msgspec.json.encode({"object": "list", "data": merged.data})
    return web.Response(body=body, headers={"Content-Type": "application/json"})


async def forward(request: web.Request) -> web.StreamResponse:
    state = state_of(request)
    if request.method == "GET" and request.path == "/v1/models" and len(state.settings.backends) > 1:
        return await _merged_models(state)
    body = await request.read()
    backend, body = await _route(state, body) if request.method == "POST" else (state.settings.backends[0], body)
    async with state.upstream.forward(
        backend, request.method, request.path_qs, _request_headers(request, state), body or None
    ) as upstream:
        headers = {k: v for k, v in upstream.headers.items() if k.lower() not in HOP_BY_HOP}
        response = web.StreamResponse(status=upstream.status, reason=upstream.reason, headers=headers)
        await response.prepare(request)
        try:
            async for chunk in state.upstream.chunks(backend, upstream):
                await response.write(chunk)
        except UpstreamError as exc:
            # The status line went out already: all that is left is to cut the stream short.
            log.warning("passthrough %s from %s broke: %s", request.path, backend.root, exc.message)
            return response
        await response.write_eof()
        return response
