"""``GET /api/tags``, ``POST /api/show``, ``GET /api/ps``: the catalog as Ollama shows it.

Custom models (``custom_models``) are listed beside the backend's, in ``/api/ps`` while their
backend model is loaded; ``/api/show`` of one is its backend model's answer with its own layers.

May import: aiohttp.web, stdlib, ``ollama_shim.routes.*``, ``ollama_shim.translate.catalog``,
``ollama_shim.errors``, ``ollama_shim.wire``, ``ollama_shim.custom_models``, ``ollama_shim.translate.customise``,
``ollama_shim.idle_unload``.
"""

from __future__ import annotations

import time

from aiohttp import web

from ..custom_models import CustomModels
from ..errors import BadRequest, ModelNotFound
from ..idle_unload import unloader_of
from ..translate import catalog
from ..translate.customise import show_response
from ..translate.names import DEFAULT_TAG, split_tag
from ..wire import ollama as ow
from .http import json_response, read_body
from .state import state_of

_COPILOT_AGENT = "GitHubCopilotChat/"


async def tags(request: web.Request) -> web.Response:
    state = state_of(request)
    listed = await state.registry.models()
    models = [catalog.to_tags_model(m.record, m.backend.root) for m in listed]
    models += await CustomModels.of(request.app, state.settings).tags(listed)
    models.sort(key=lambda m: m.modified_at, reverse=True)
    return json_response(ow.TagsResponse(models=models))


async def show(request: web.Request) -> web.Response:
    req = await read_body(request, ow.ShowRequest)
    requested = req.model or req.name
    if not requested:
        raise BadRequest("model is required")
    state = state_of(request)
    try:
        resolved, custom = await CustomModels.of(request.app, state.settings).resolve(state.registry, requested)
    except ModelNotFound:
        base, tag = split_tag(requested)
        raise ModelNotFound(f"{base}:{tag or DEFAULT_TAG}") from None  # Ollama names it with its tag here
    # Ollama shows the requested name as the display name to Copilot, which reads general.basename.
    agent = request.headers.get("User-Agent", "")
    basename = requested if agent.startswith(_COPILOT_AGENT) else None
    answer = catalog.to_show_response(resolved.record, basename=basename)
    return json_response(show_response(answer, custom) if custom else answer)


async def ps(request: web.Request) -> web.Response:
    state = state_of(request)
    running = await state.registry.running()
    now = time.time_ns()
    unloader = unloader_of(request.app)
    models = [catalog.to_ps_model(m.record, m.backend.root, now, expires_ns=unloader.expires_ns(m)) for m in running]
    models += await CustomModels.of(request.app, state.settings).ps(running, now)
    return json_response(ow.PsResponse(models=models))
