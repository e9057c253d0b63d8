"""A server that is not a model server: every path answers one fixed page (HTML by default).

``async with StaticServer() as site:`` starts it on 127.0.0.1 and a free port; ``site.url`` and
``site.port`` say where. ``StaticServer(401, body=...)`` stands for a server that refuses without a key.
"""

from __future__ import annotations

from aiohttp import web

from . import serve_on_loopback

HTML = "<!doctype html><html><head><title>Welcome</title></head><body>It works!</body></html>"


class StaticServer:
    def __init__(self, status: int = 200, *, body: str = HTML, content_type: str = "text/html") -> None:
        self.status, self.body, self.content_type = status, body, content_type
        self.paths: list[str] = []
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _page(self, request: web.Request) -> web.Response:
        self.paths.append(request.path)
        return web.Response(status=self.status, text=self.body, content_type=self.content_type)

    async def __aenter__(self) -> StaticServer:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._page)
        self._runner, url = await serve_on_loopback(app)
        self.port = int(url.rsplit(":", 1)[1])
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
