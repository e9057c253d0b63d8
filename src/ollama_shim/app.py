"""``create_app(settings)``: the aiohttp application, its routes, and the one error boundary.

``error_boundary`` is the only place a failure becomes an HTTP answer before the first byte:
a ``ShimError`` keeps its status and message, aiohttp's own 404/405/413 are given Ollama's
``{"error": "..."}`` shape, and anything unexpected is logged with its traceback and answered
500 without one. Failures after a stream began are written by the stream's own writer.

Middleware order, outermost first: the error boundary, the lifecycle (requests in flight, for a
graceful shutdown: ``routes.lifecycle``), the guard (API key and CORS: ``routes.guard``).

May import: aiohttp.web, stdlib, ``ollama_shim.*``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from .errors import ShimError
from .loader import Loader
from .registry import Registry
from .routes import anthropic, embed, generation, guard, manage, meta, models, passthrough
from .routes.http import error_response
from .routes.lifecycle import LIFECYCLE, Lifecycle
from .routes.state import STATE, AppState
from .settings import Settings
from .upstream import Upstream

log = logging.getLogger("ollama_shim")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_HTTP_TEXT = {404: "404 page not found", 405: "405 method not allowed"}


def _error(request: web.Request, status: int, message: str) -> web.Response:
    """The error in the shape of the API the path belongs to: Anthropic's under /v1/messages."""
    if anthropic.is_anthropic_path(request.path):
        return anthropic.anthropic_error_response(status, message)
    return error_response(status, message)


@web.middleware
async def error_boundary(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ShimError as exc:
        return _error(request, exc.status, exc.message)
    except web.HTTPRequestEntityTooLarge:
        return _error(request, 413, f"request body is larger than the limit of {request.client_max_size} bytes")
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _error(request, exc.status, _HTTP_TEXT.get(exc.status, exc.reason))
    except Exception:
        log.exception("unexpected error in %s %s", request.method, request.path)
        return _error(request, 500, "internal error in ollama-shim; see its log")


def create_app(settings: Settings) -> web.Application:
    lifecycle = Lifecycle()
    app = web.Application(client_max_size=settings.max_body_bytes, middlewares=[error_boundary, lifecycle.middleware])
    app[LIFECYCLE] = lifecycle
    upstream = Upstream(settings.timeouts, settings.limits, secrets=[b.key for b in settings.backends])
    registry = Registry(settings, upstream)
    app[STATE] = AppState(settings=settings, upstream=upstream, registry=registry, loader=Loader(upstream, registry))
    guard.install(app, settings)  # API key and CORS, inside the boundary so their refusals are rendered

    async def start(_: web.Application) -> None:
        await upstream.start()

    async def stop(_: web.Application) -> None:
        await upstream.close()

    app.on_startup.append(start)
    app.on_cleanup.append(stop)
    for module in (meta, models, generation, embed, manage, anthropic, passthrough):
        module.add_routes(app)
    return app
