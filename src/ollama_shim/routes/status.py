"""The shim's own observability endpoints: ``GET /metrics``, ``GET /status`` and what the page reads.

- ``/metrics``: every ``metrics.Metrics`` series in Prometheus's text format (summed over the
  workers with ``--workers``), with ``ollama_shim_backend_up`` set from each backend's last catalog
  read just before (a backend not asked yet has no such series).
- ``/status``: a plain HTML page (``static/status.html``) whose script (``/status.js``) polls
  ``/status.json`` every 2 s and redraws.
- ``/status.json``: ``StatusSummary``, built from the registry's cached catalog (no backend is asked
  beyond what ``/api/tags`` would ask) and the answering process's own figures.

All of them sit behind ``--api-key`` like every other path but ``GET /``: with a key, a browser must
send ``Authorization: Bearer <key>`` itself (a header extension, or a proxy that adds it).

May import: aiohttp.web, msgspec, stdlib, ``ollama_shim.routes.*``, ``ollama_shim.metrics``,
``ollama_shim.backends``, ``ollama_shim.errors``, ``ollama_shim.timefmt``.
"""

from __future__ import annotations

import functools
import importlib.resources
import os
import time
from typing import Literal

import msgspec
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from ..backends import LiveBackend
from ..errors import UpstreamError
from ..metrics import RATE_WINDOW, Metrics
from ..registry import Resolved
from ..timefmt import utc_timestamp
from .http import json_response
from .state import state_of

METRICS = web.AppKey("metrics", Metrics)

Health = Literal["up", "down", "unknown"]
_PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'unsafe-inline'; "
                               "base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
}


class StatusModel(msgspec.Struct):
    name: str
    loaded: bool


class StatusBackend(msgspec.Struct):
    root: str
    kind: str
    health: Health
    last_error: str | None
    models: list[StatusModel]


class StatusError(msgspec.Struct):
    time: str
    request_id: str
    method: str
    path: str
    status: int
    kind: str
    message: str
    model: str
    backend: str


class StatusSummary(msgspec.Struct):
    version: str
    pid: int
    uptime_seconds: float
    requests_in_flight: int
    streams_in_flight: int
    requests_total: int
    tokens_in_total: int
    tokens_out_total: int
    tokens_per_second: float
    rate_window_seconds: float
    backends: list[StatusBackend]
    recent_errors: list[StatusError]


def health_of(backend: LiveBackend) -> Health:
    if backend.answering:
        return "up"
    return "down" if backend.failure is not None else "unknown"


def _backend(backend: LiveBackend, listed: tuple[Resolved, ...]) -> StatusBackend:
    up = backend.answering
    models = [StatusModel(m.record.name, up and m.record.loaded) for m in listed if m.source is backend]
    return StatusBackend(backend.settings.root, backend.kind or "unknown", health_of(backend),
                         backend.failure.message if backend.failure is not None else None, models)


def build_summary(observer: Metrics, backends: tuple[LiveBackend, ...], listed: tuple[Resolved, ...],
                  version: str, now: float) -> StatusSummary:
    errors = [StatusError(utc_timestamp(int(e.at * 1e9)), e.request_id, e.method, e.path, e.status, e.kind, e.message,
                          e.model, e.backend) for e in reversed(observer.recent_errors)]
    return StatusSummary(
        version=version,
        pid=os.getpid(),
        uptime_seconds=round(now - observer.started, 1),
        requests_in_flight=observer.in_flight,
        streams_in_flight=observer.streams_now,
        requests_total=observer.total_requests,
        tokens_in_total=observer.total_tokens_in,
        tokens_out_total=observer.total_tokens_out,
        tokens_per_second=round(observer.tokens_per_second(), 2),
        rate_window_seconds=RATE_WINDOW,
        backends=[_backend(b, listed) for b in backends],
        recent_errors=errors,
    )


async def summary(request: web.Request) -> web.Response:
    state = state_of(request)
    try:
        listed = await state.registry.models()
    except UpstreamError:  # no backend has ever answered: each one's failure is shown instead
        listed = ()
    body = build_summary(request.app[METRICS], state.registry.backends, listed, state.settings.ollama_version,
                         time.time())
    response = json_response(body)
    response.headers["Cache-Control"] = "no-store"
    return response


async def metrics_text(request: web.Request) -> web.Response:
    observer = request.app[METRICS]
    for backend in state_of(request).registry.backends:
        if backend.ever_answered or backend.failure is not None:
            observer.set_backend_up(backend.settings.root, backend.answering)
        observer.set_replica_up(backend.settings.root, not backend.health.down)
    return web.Response(body=observer.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST})


@functools.cache
def _static(name: str) -> bytes:
    return (importlib.resources.files("ollama_shim") / "static" / name).read_bytes()


async def page(request: web.Request) -> web.Response:
    return web.Response(body=_static("status.html"), headers={"Content-Type": "text/html; charset=utf-8",
                                                               **_PAGE_HEADERS})


async def script(request: web.Request) -> web.Response:
    return web.Response(body=_static("status.js"), headers={"Content-Type": "text/javascript; charset=utf-8",
                                                             **_PAGE_HEADERS})
