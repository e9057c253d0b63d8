"""A scripted backend for catalog, registry and loader tests: answers set per method and path.

``async with ScriptedBackend() as b:`` starts it on a loopback port (``b.url``, no ``/v1``).
``b.answer("GET", "/v1/models", {...})`` sets what a path answers (a JSON document, a ``Reply``
with a status, or a function of the request body returning either); ``path`` may carry a query,
which is matched first. Anything unscripted answers 404. Every request is recorded in ``calls``
as ``(method, path_qs, decoded JSON body or None)``. ``await b.stop()`` takes it down: connecting
is then refused, a backend that is down.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from aiohttp import web


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
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
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
