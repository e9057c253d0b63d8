"""Graceful shutdown: the requests in flight, and how the ones still running at the end are closed.

``Lifecycle.middleware`` keeps the set of handler tasks in flight. ``drain(grace)`` (called by
``server.serve`` once the listening socket is closed) refuses new requests on kept-alive
connections with 503, waits up to ``grace`` seconds for the running ones to finish, then cancels
the rest *as aborted*: a stream that already sent lines ends with one more line,
``{"error": "ollama-shim is shutting down"}`` (``relay.stream`` does that, see ``absorb``), and a
request that sent nothing is answered 503 with the same message.

May import: aiohttp.web, asyncio, stdlib, ``ollama_shim.errors``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from aiohttp import web

from ..errors import ShimError

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

SHUTTING_DOWN = "ollama-shim is shutting down"
ABORT_WAIT = 5.0  # seconds the aborted handlers get to write their last line


class ShuttingDown(ShimError):
    status = 503

    def __init__(self) -> None:
        super().__init__(SHUTTING_DOWN)


class Lifecycle:
    def __init__(self) -> None:
        self.closing = False
        self._running: set[asyncio.Task[object]] = set()
        self._aborted: set[asyncio.Task[object]] = set()
        self._idle = asyncio.Event()
        self._idle.set()

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if self.closing:
            raise ShuttingDown()
        task = asyncio.current_task()
        assert task is not None
        self._running.add(task)
        self._idle.clear()
        try:
            return await handler(request)
        except asyncio.CancelledError:
            if not self.absorb():
                raise
            raise ShuttingDown() from None
        finally:
            self._running.discard(task)
            self._aborted.discard(task)
            if not self._running:
                self._idle.set()

    def absorb(self) -> bool:
        """In a handler that caught CancelledError: was it our shutdown abort? If so, take it back."""
        task = asyncio.current_task()
        if task not in self._aborted:
            return False
        self._aborted.discard(task)
        task.uncancel()
        return True

    @property
    def running(self) -> int:
        return len(self._running)

    async def drain(self, grace: float, hurry: asyncio.Event | None = None) -> int:
        """Refuse new requests, wait for the running ones up to ``grace`` (or ``hurry``), abort the rest.

        Returns how many requests had to be aborted.
        """
        self.closing = True
        await _first_of(self._idle.wait(), hurry.wait() if hurry else None, limit=grace)
        stragglers = list(self._running)
        for task in stragglers:
            self._aborted.add(task)
            task.cancel()
        if stragglers:
            await _first_of(self._idle.wait(), None, limit=ABORT_WAIT)
        return len(stragglers)


async def _first_of(a: Awaitable[object], b: Awaitable[object] | None, *, limit: float) -> None:
    waiters = [asyncio.ensure_future(a)] + ([asyncio.ensure_future(b)] if b is not None else [])
    try:
        await asyncio.wait(waiters, timeout=limit, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


LIFECYCLE = web.AppKey("lifecycle", Lifecycle)


def lifecycle_of(request: web.Request) -> Lifecycle:
    return request.app[LIFECYCLE]
