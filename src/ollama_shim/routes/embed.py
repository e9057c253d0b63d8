"""``POST /api/embed`` and the legacy ``POST /api/embeddings``.

May import: aiohttp.web, stdlib, ``ollama_shim.routes.*``, ``ollama_shim.translate``, ``ollama_shim.errors``,
``ollama_shim.wire``, ``ollama_shim.custom_models`` (a custom model embeds with its backend model).
"""

from __future__ import annotations

import time

from aiohttp import web

from ..custom_models import CustomModels
from ..errors import BadRequest, ModelNotFound
from ..registry import Resolved
from ..translate.embed import embed_response_to_ollama, embeddings_response_to_ollama
from ..translate.request import embed_request_to_openai, embeddings_request_to_openai
from ..wire import ollama as ow
from ..wire.openai import EmbeddingsResponse
from . import relay
from .http import encode, json_response, read_body
from .state import AppState, state_of


async def _resolve(request: web.Request, state: AppState, model: str) -> Resolved:
    if not model:
        raise BadRequest("model is required")
    try:
        return (await CustomModels.of(request.app, state.settings).resolve(state.registry, model))[0]  # base only
    except ModelNotFound:
        raise ModelNotFound(model, quote='"') from None  # the embed path's wording


async def _embeddings(state: AppState, resolved: Resolved, body: bytes) -> EmbeddingsResponse:
    async def attempt(on: Resolved) -> EmbeddingsResponse:
        return await state.upstream.post_json(on.backend, "/v1/embeddings", relay.aimed(body, resolved, on),
                                              EmbeddingsResponse)

    return await relay.with_load_retry(state, resolved, attempt)


async def embed(request: web.Request) -> web.Response:
    started = time.monotonic_ns()
    state = state_of(request)
    req = await read_body(request, ow.EmbedRequest)
    resolved = await _resolve(request, state, req.model)
    plan = embed_request_to_openai(req, resolved.record.upstream_id, resolved.dialect)
    if plan.input_count == 0:
        return json_response(ow.EmbedResponse(model=req.model, embeddings=[]))
    answered = await _embeddings(state, resolved, encode(plan.request))
    out = embed_response_to_ollama(answered, model=req.model, input_count=plan.input_count,
                                   dimensions=plan.dimensions)
    out.total_duration = time.monotonic_ns() - started
    out.load_duration = 0
    return json_response(out)


async def embeddings(request: web.Request) -> web.Response:
    state = state_of(request)
    req = await read_body(request, ow.EmbeddingsRequest)
    resolved = await _resolve(request, state, req.model)
    plan = embeddings_request_to_openai(req, resolved.record.upstream_id, resolved.dialect)
    if plan.input_count == 0:
        return json_response(ow.EmbeddingsResponse(embedding=[]))
    answered = await _embeddings(state, resolved, encode(plan.request))
    return json_response(embeddings_response_to_ollama(answered))
