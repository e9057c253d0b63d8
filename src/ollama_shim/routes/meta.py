"""``GET|HEAD /`` and ``GET|HEAD /api/version``: what clients probe before anything else.

May import: aiohttp.web, ``ollama_shim.routes.http``, ``ollama_shim.routes.state``, ``ollama_shim.wire``.
"""

from __future__ import annotations

from aiohttp import web

from ..wire.ollama import Version
from .http import json_response
from .state import state_of

_ROOT_TEXT = b"Ollama is running"


async def root(request: web.Request) -> web.Response:
    return web.Response(body=_ROOT_TEXT, headers={"Content-Type": "text/plain; charset=utf-8"})


async def version(request: web.Request) -> web.Response:
    return json_response(Version(version=state_of(request).settings.ollama_version))
