"""``create_app(settings)``: the aiohttp application, its routes, and the one error boundary.

``error_boundary`` is the only place a failure becomes an HTTP answer before the first byte:
a ``ShimError`` keeps its status and message, aiohttp's own 404/405/413 are given Ollama's
``{"error": "..."}`` shape, and anything unexpected is logged with its traceback and answered
500 without one. Failures after a stream began are written by the stream's own writer.

Middleware order, outermost first: ``observed`` (the request id, the metrics and the access-log
line: ``request_id``, ``metrics``, ``logs``), the error boundary, the lifecycle (requests in flight,
for a graceful shutdown: ``routes.lifecycle``), the guard (API key and CORS: ``routes.guard``).

``ROUTES`` is every endpoint, in one table; the handlers live in ``routes/*``. A ``GET`` route
answers ``HEAD`` too. Resources that live as long as the app (the store and the model memory in
it, the upstream client session, the keep_alive timers) are opened and closed by ``cleanup_ctx``
generators.

May import: aiohttp.web, stdlib, ``ollama_shim.*``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web

from . import custom_models, idle_unload, metrics, store, stored_memory
from .errors import ShimError
from .idle_unload import IdleUnloader
from .loader import Loader
from .logs import log_access
from .metrics import Metrics, RequestRecord
from .registry import Registry
from .request_id import HEADER, REQUEST_ID, accept_request_id
from .routes import anthropic, embed, generation, guard, manage, meta, models, passthrough, responses, status
from .routes.http import error_response
from .routes.lifecycle import LIFECYCLE, Lifecycle
from .routes.state import STATE, AppState
from .routes.status import METRICS
from .settings import Settings
from .stored_memory import StoredMemory
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
    ("GET", "/metrics", status.metrics_text),
    ("GET", "/status", status.page),
    ("GET", "/status.js", status.script),
    ("GET", "/status.json", status.summary),
    ("POST", responses.PATH, responses.create),
    ("POST", anthropic.MESSAGES_PATH, anthropic.messages),
    ("POST", anthropic.COUNT_TOKENS_PATH, anthropic.count_tokens),
    ("*", "/v1/{tail:.*}", passthrough.forward),  # last: the routes above win over it
)

_HTTP_TEXT = {404: "404 page not found", 405: "405 method not allowed"}


def _error(request: web.Request, status: int, message: str) -> web.Response:
    """The error in the shape of the API the path belongs to: Anthropic's under /v1/messages,
    OpenAI's on /v1/responses, Ollama's everywhere else."""
    if anthropic.is_anthropic_path(request.path):
        return anthropic.anthropic_error_response(status, message)
    if request.path == responses.PATH:
        return responses.error_response(status, message)
    return error_response(status, message)


@web.middleware
async def error_boundary(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ShimError as exc:
        metrics.note_error(exc)
        return _error(request, exc.status, exc.message)
    except web.HTTPRequestEntityTooLarge:
        return _error(request, 413, f"request body is larger than the limit of {request.client_max_size} bytes")
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _error(request, exc.status, _HTTP_TEXT.get(exc.status, exc.reason))
    except Exception as exc:
        metrics.note_error(exc)
        log.exception("unexpected error in %s %s", request.method, request.path)
        return _error(request, 500, "internal error in ollama-shim; see its log")


RECORD = web.RequestKey("record", RequestRecord)
CLIENT_LEFT = 499  # the status logged and counted for a request whose client went away


@web.middleware
async def observed(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Give the request its id and record (for the logs, the upstream calls and the metrics), then
    count it and write its access-log line once it is over."""
    request_id = accept_request_id(request.headers.get(HEADER))
    route = request.match_info.route.resource
    record = RequestRecord(request_id, request.method, request.raw_path.partition("?")[0][:256],
                           metrics.endpoint_label(route.canonical if route else None, request.path), time.monotonic())
    request[RECORD] = record
    observer = request.app[METRICS]
    id_token, record_token = REQUEST_ID.set(request_id), metrics.track(record)
    observer.began(record)
    try:
        response = await handler(request)
        record.status = response.status
        return response
    except asyncio.CancelledError:
        record.status = CLIENT_LEFT
        raise
    except web.HTTPException as exc:  # a redirect the boundary lets through
        record.status = exc.status
        raise
    finally:
        observer.finished(record)
        log_access(record.access_fields(), quiet=record.quiet)
        metrics.untrack(record_token)
        REQUEST_ID.reset(id_token)


async def stamp_response(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``: the request id on every response; a streamed one counts as a stream."""
    record = request.get(RECORD)
    if record is None:
        return
    response.headers[HEADER] = record.request_id
    if not isinstance(response, web.Response) and not record.status:  # status: set once it is over
        request.app[METRICS].stream_started(record)


def create_app(settings: Settings) -> web.Application:
    lifecycle = Lifecycle()
    app = web.Application(client_max_size=settings.max_body_bytes,
                          middlewares=[observed, error_boundary, lifecycle.middleware])
    app[LIFECYCLE] = lifecycle
    app[METRICS] = Metrics.from_environment()
    app.on_response_prepare.append(stamp_response)
    upstream = Upstream(settings.timeouts, settings.limits, secrets=[b.key for b in settings.backends])
    store.attach(app, settings.data_dir, (custom_models.SCHEMA, stored_memory.SCHEMA))  # opened at start
    memory = StoredMemory(app[store.STORE])  # what was learned about models, kept across restarts
    stored_memory.attach(app, memory)
    registry = Registry(settings, upstream, memory=memory)
    loader = Loader(upstream, registry)
    app[STATE] = AppState(settings=settings, upstream=upstream, registry=registry, loader=loader)
    guard.install(app, settings)  # API key and CORS, inside the boundary so their refusals are rendered
    app.cleanup_ctx.append(upstream_session)
    idle_unload.attach(app, IdleUnloader(loader, settings.keep_alive))  # after: its timers stop first
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
        await app[STATE].registry.router.close()  # its probes use the session
        await upstream.close()
