"""What the shim answers while it has no backend (none configured, none discovered).

Ollama clients first check ``/`` and ``/api/version``, then list models; a failing list makes
several of them (Open WebUI, Copilot) give up on the whole server with a vaguer message. So:

- ``/`` and ``/api/version`` answer as always;
- ``/api/tags`` and ``/api/ps`` answer an empty list (the hint is in the shim's log);
- every other route (chat, generate, embed, show, the model store, ``/v1/*``) answers 503
  ``{"error": hint}``: the one line saying how to start a model server or pass ``--backend``.

Unknown paths keep their 404/405. ``install`` adds the middleware innermost, after the guard, so
the API key and CORS rules still apply, and the error boundary renders the 503.

May import: aiohttp.web, stdlib, ``ollama_shim.errors``, ``ollama_shim.wire``, ``ollama_shim.routes.http``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from ..errors import ShimError
from ..wire import ollama as ow
from .http import json_response

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

ANSWERED_AS_USUAL = frozenset({"/", "/api/version"})
EMPTY_LISTS: dict[str, Callable[[], ow.TagsResponse | ow.PsResponse]] = {
    "/api/tags": lambda: ow.TagsResponse(models=[]),
    "/api/ps": lambda: ow.PsResponse(models=[]),
}


class NoBackend(ShimError):
    status = 503


def install(app: web.Application, hint: str) -> None:
    """Make every route that needs a backend answer ``hint`` (503) instead."""

    @web.middleware
    async def no_backend(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.match_info.http_exception is not None or request.path in ANSWERED_AS_USUAL:
            return await handler(request)
        empty = EMPTY_LISTS.get(request.path)
        if empty is not None and request.method in ("GET", "HEAD"):
            return json_response(empty())
        raise NoBackend(hint)

    app.middlewares.append(no_backend)
