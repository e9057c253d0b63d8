"""A scripted backend for catalog, registry and loader tests: answers set per method and path.

``async with ScriptedBackend() as b:`` starts it on a loopback port (``b.url``, no ``/v1``).
``b.answer("GET", "/v1/models", {...})`` sets what a path answers (a JSON document, a ``Reply``
with a status, or a function of the request body returning either); ``path`` may carry a query,
which is matched first. Anything unscripted answers 404. Every request is recorded in ``calls``
as ``(method, path_qs, decoded JSON body or None)``. ``await b.stop()`` takes it down: connecting
is then refused, a backend that is down.

``registry_over((backend, kind), ...)`` is a ``Registry`` over such backends, with an injectable
clock; ``services_over`` the same with its ``Loader``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from ollama_shim.loader import Loader
from ollama_shim.registry import Registry
from ollama_shim.settings import load_settings
from ollama_shim.upstream import Upstream

from . import serve_on_loopback

START_NS = 1_700_000_000_000_000_000  # the registry's start: the "modified" time of models without one


@dataclass
class Reply:
    status: int
    body: Any


Answer = Any  # a JSON document, a Reply, or Callable[[Any], JSON document | Reply]


def models(*ids: str, **extra: Any) -> dict[str, Any]:
    """A /v1/models document listing ``ids``, each entry with ``extra`` fields."""
    return {"object": "list", "data": [{"id": i, "object": "model", **extra} for i in ids]}


class ScriptedBackend:
    def __init__(self) -> None:
        self.answers: dict[tuple[str, str], Answer] = {}
        self.calls: list[tuple[str, str, Any]] = []
        self._runner: web.AppRunner | None = None
        self.url = ""

    def answer(self, method: str, path: str, answer: Answer) -> None:
        self.answers[(method, path)] = answer

    def count(self, method: str, path_qs: str) -> int:
        return sum(1 for m, p, _ in self.calls if (m, p) == (method, path_qs))

    def posts(self) -> list[tuple[str, Any]]:
        return [(p, body) for m, p, body in self.calls if m == "POST"]

    async def __aenter__(self) -> ScriptedBackend:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner, self.url = await serve_on_loopback(app, shutdown_timeout=0.5)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        body = json.loads(raw) if raw else None
        self.calls.append((request.method, request.path_qs, body))
        found = self.answers.get((request.method, request.path_qs), self.answers.get((request.method, request.path)))
        if callable(found):
            found = found(body)
        if found is None:
            return web.json_response({"error": "File Not Found"}, status=404)
        if isinstance(found, Reply):
            return web.json_response(found.body, status=found.status)
        if isinstance(found, bytes):
            return web.Response(body=found, content_type="application/json")
        return web.json_response(found)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@asynccontextmanager
async def services_over(
    *backends: tuple[ScriptedBackend, str], clock: Callable[[], float] | None = None, ttl: float = 10.0,
    argv: Sequence[str] = ("--connect-timeout", "1", "--first-byte-timeout", "2"),
) -> AsyncIterator[tuple[Registry, Loader]]:
    """A registry and a loader over ``(backend, kind)`` pairs, in that order."""
    args = ["--catalog-ttl", str(ttl), *argv]
    for backend, kind in backends:
        args += ["--backend", backend.url, "--backend-kind", kind]
    settings = load_settings(args, {})
    upstream = Upstream(settings.timeouts)
    await upstream.start()
    try:
        registry = Registry(settings, upstream, clock=clock or Clock(), wallclock=lambda: START_NS)
        yield registry, Loader(upstream, registry)
    finally:
        await upstream.close()


@asynccontextmanager
async def registry_over(
    *backends: tuple[ScriptedBackend, str], clock: Callable[[], float] | None = None, ttl: float = 10.0
) -> AsyncIterator[Registry]:
    async with services_over(*backends, clock=clock, ttl=ttl) as (registry, _):
        yield registry
