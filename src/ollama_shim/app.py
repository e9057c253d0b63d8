"""``create_app(settings)``: the aiohttp application, its routes, and the one error boundary.

``error_boundary`` is the only place a failure becomes an HTTP answer before the first byte:
a ``ShimError`` keeps its status and message, aiohttp's own 404/405/413 are given Ollama's
``{"error": "..."}`` shape, and anything unexpected is logged with its traceback and answered
500 without one. Failures after a stream began are written by the stream's own writer.

Middleware order, outermost first: the error boundary, the lifecycle (requests in flight, for a
graceful shutdown: ``routes.lifecycle``), the guard (API key and CORS: ``routes.guard``).

``ROUTES`` is every endpoint, in one table; the handlers live in ``routes/*``. A ``GET`` route
answers ``HEAD`` too. Resources that live as long as the app (the store, the upstream client
session) are opened and closed by ``cleanup_ctx`` generators.

May import: aiohttp.web, stdlib, ``ollama_shim.*``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web

from . import custom_models, store
from .errors import ShimError
from .loader import Loader
from .registry import Registry
from .routes import embed, generation, guard, manage, meta, models, passthrough
from .routes.http import error_response
from .routes.lifecycle import LIFECYCLE, Lifecycle
from .routes.state import STATE, AppState
from .settings import Settings
from .upstream import Upstream

log = logging.getLogger("ollama_shim")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

ROUTES: tuple[tuple[str, str, Handler], ...] = (
    ("GET", "/", meta.root),
    ("GET", "/api/version", meta.version),
    ("GET", "/api/tags", models.tags),
    ("POST", "/api/show", models.show),
    ("GET", "/api/ps", models.ps),
    ("POST", "/api/chat", generation.chat),
    ("POST", "/api/generate", generation.generate),
    ("POST", "/api/embed", embed.embed),
    ("POST", "/api/embeddings", embed.embeddings),
    ("POST", "/api/pull", manage.pull),
    ("POST", "/api/push", manage.push),
    ("POST", "/api/create", manage.create),
    ("POST", "/api/copy", manage.copy),
    ("DELETE", "/api/delete", manage.delete),
    ("HEAD", "/api/blobs/{digest}", manage.blobs),
    ("POST", "/api/blobs/{digest}", manage.blobs),
    ("*", "/v1/{tail:.*}", passthrough.forward),
)

_HTTP_TEXT = {404: "404 page not found", 405: "405 method not allowed"}


@web.middleware
async def error_boundary(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ShimError as exc:
        return error_response(exc.status, exc.message)
    except web.HTTPRequestEntityTooLarge:
        return error_response(413, f"request body is larger than the limit of {request.client_max_size} bytes")
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return error_response(exc.status, _HTTP_TEXT.get(exc.status, exc.reason))
    except Exception:
        log.exception("unexpected error in %s %s", request.method, request.path)
        return error_response(500, "internal error in ollama-shim; see its log")


def create_app(settings: Settings) -> web.Application:
    lifecycle = Lifecycle()
    app = web.Application(client_max_size=settings.max_body_bytes, middlewares=[error_boundary, lifecycle.middleware])
    app[LIFECYCLE] = lifecycle
    upstream = Upstream(settings.timeouts, settings.limits, secrets=[b.key for b in settings.backends])
    registry = Registry(settings, upstream)
    app[STATE] = AppState(settings=settings, upstream=upstream, registry=registry, loader=Loader(upstream, registry))
    guard.install(app, settings)  # API key and CORS, inside the boundary so their refusals are rendered
    store.attach(app, settings.data_dir, (custom_models.SCHEMA,))  # the shim's own database, opened at start
    app.cleanup_ctx.append(upstream_session)
    for method, path, handler in ROUTES:
        if method == "GET":
            app.router.add_get(path, handler)
        else:
            app.router.add_route(method, path, handler)
    return app


async def upstream_session(app: web.Application) -> AsyncIterator[None]:
    """The one pooled client session, open from start-up to clean-up."""
    upstream = app[STATE].upstream
    await upstream.start()
    try:
        yield
    finally:
        await upstream.close()
