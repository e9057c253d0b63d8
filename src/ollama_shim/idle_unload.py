"""Ollama's ``keep_alive`` kept by the shim for backends that have no idle timer of their own.

Ollama unloads a model once it has been idle for its keep_alive (default 5 minutes, else
``OLLAMA_KEEP_ALIVE``, else the request's own value; negative: never; 0: at once). A llama.cpp
router keeps a model loaded until it needs the room, so for the kinds whose ``KindBehaviour``
says ``shim_keeps_alive`` the ``IdleUnloader`` does it: one timer per model, started when the
last request in flight for it ends (a streamed answer counts until its last line) and cancelled
by the next request, which may bring its own keep_alive; when it runs out, the model is
unloaded through the ``Loader``, on every replica of it (the model as a whole was idle; a
replica that fails is logged). All timers are cancelled at clean-up (``attach``).

``expires_ns`` is what ``/api/ps`` shows as ``expires_at``: for a kept model the time its timer
runs out (a model in use: its keep_alive from now, as Ollama shows it); for LM Studio the idle TTL
the shim sent when its request loaded the model (``ttl``), from the end of the last request; None
where it is not known (shown as today, far in the future).

Only requests that come through the shim's Ollama routes (``/api/chat``, ``/api/generate``) mark a
model in use; each server process (``--workers``) keeps its own timers.

May import: stdlib, aiohttp.web, ``ollama_shim.loader``, ``ollama_shim.registry``, ``ollama_shim.errors``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from aiohttp import web

from .errors import ShimError
from .loader import Loader
from .registry import Resolved

log = logging.getLogger("ollama_shim.keep_alive")

Key = tuple[str, str]  # (backend root, model id)


@dataclass
class _Kept:
    resolved: Resolved
    keep_for: float  # seconds; math.inf: forever
    in_flight: int = 0
    idle_since: float | None = None  # monotonic, when the last request ended
    timer: asyncio.Task[None] | None = None
    acts: bool = True  # False: only an expiry to show (the backend keeps it, LM Studio's TTL)


class IdleUnloader:
    """One timer per model kept loaded for its keep_alive; see the module's docstring."""

    def __init__(self, loader: Loader, default_keep_alive: float, *,
                 clock: Callable[[], float] = time.monotonic, wallclock: Callable[[], int] = time.time_ns) -> None:
        self._loader = loader
        self.default_keep_alive = default_keep_alive
        self._clock = clock
        self._wallclock = wallclock
        self._kept: dict[Key, _Kept] = {}
        self._closed = False  # at clean-up: no timer starts any more
        self._cannot_unload: set[Key] = set()  # e.g. a single llama-server: it has no unload route
        # Every timer task until it is done, cancelled ones and one busy unloading included: clean-up
        # waits for them all, so none is left pending when the loop closes.
        self._tasks: set[asyncio.Task[None]] = set()

    @staticmethod
    def _key(resolved: Resolved) -> Key:
        return (resolved.backend.root, resolved.record.upstream_id)

    def _entry(self, resolved: Resolved, keep_alive: float | None, ttl: int | None) -> _Kept | None:
        """The model's entry with this request's keep_alive, or None where nothing is kept or shown."""
        key = self._key(resolved)
        entry = self._kept.get(key)
        if resolved.source.behaviour.shim_keeps_alive and key not in self._cannot_unload:
            keep_for = self.default_keep_alive if keep_alive is None else keep_alive
            if entry is None:
                entry = self._kept[key] = _Kept(resolved, keep_for)
            entry.resolved, entry.keep_for, entry.acts = resolved, keep_for, True
            return entry
        if ttl is not None:  # LM Studio loads it now with this idle TTL
            entry = self._kept[key] = _Kept(resolved, float(ttl), acts=False)
        return entry

    # -- requests ----------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def using(
        self, resolved: Resolved, keep_alive: float | None, *, ttl: int | None = None
    ) -> AsyncIterator[None]:
        """While a request for the model is in flight: no timer runs; when the last one ends, it starts.

        ``keep_alive``: the request's own (seconds, None: the default); ``ttl``: the idle TTL sent to a
        backend that keeps its own (LM Studio), when this request loads the model."""
        entry = self._entry(resolved, keep_alive, ttl)
        if entry is None:
            yield
            return
        entry.in_flight += 1
        self._cancel(entry)
        try:
            yield
        finally:
            entry.in_flight -= 1
            if entry.in_flight == 0:
                self._idle(entry)

    def loaded(self, resolved: Resolved, keep_alive: float | None) -> None:
        """A load-only request: the model's timer starts now (unless requests are in flight)."""
        entry = self._entry(resolved, keep_alive, None)
        if entry is not None and entry.in_flight == 0:
            self._cancel(entry)
            self._idle(entry)

    def forget(self, resolved: Resolved) -> None:
        """The model was unloaded by other means (``keep_alive: 0``): no timer for it, on any of its
        replicas."""
        for replica in resolved.candidates:
            entry = self._kept.pop(self._key(replica), None)
            if entry is not None:
                self._cancel(entry)

    def expires_ns(self, resolved: Resolved) -> int | None:
        """Wall-clock ns at which the model is unloaded if nothing else uses it; None: not known."""
        entry = self._kept.get(self._key(resolved))
        if entry is None or math.isinf(entry.keep_for):
            return None
        now = self._clock()
        idle_since = now if entry.in_flight or entry.idle_since is None else entry.idle_since
        remaining = max(0.0, idle_since + entry.keep_for - now)
        return self._wallclock() + int(remaining * 1e9)

    # -- timers ------------------------------------------------------------------------------

    def _idle(self, entry: _Kept) -> None:
        entry.idle_since = self._clock()
        if self._closed:
            return
        if entry.acts and entry.keep_for > 0 and not math.isinf(entry.keep_for):
            entry.timer = asyncio.get_running_loop().create_task(self._expire(entry))
            self._tasks.add(entry.timer)
            entry.timer.add_done_callback(self._tasks.discard)
        elif entry.acts and entry.keep_for <= 0:
            self._kept.pop(self._key(entry.resolved), None)  # keep_alive 0: the route unloads it itself

    @staticmethod
    def _cancel(entry: _Kept) -> None:
        if entry.timer is not None:
            entry.timer.cancel()
            entry.timer = None

    async def _expire(self, entry: _Kept) -> None:
        await asyncio.sleep(entry.keep_for)
        entry.timer = None
        if entry.in_flight or self._kept.get(self._key(entry.resolved)) is not entry:
            return
        del self._kept[self._key(entry.resolved)]
        model = entry.resolved.record.upstream_id
        try:
            unloaded = await self._loader.unload_everywhere(entry.resolved)  # every replica: the model is idle
        except ShimError as exc:
            log.warning("could not unload %s on %s: %s", model, entry.resolved.backend.root, exc.message)
            return
        if unloaded:
            log.info("unloaded %s on %s: idle for its keep_alive of %g s", model, entry.resolved.backend.root,
                     entry.keep_for)
        else:  # it cannot be asked (a single server): no timer for it again, and no expiry shown
            self._cannot_unload.add(self._key(entry.resolved))

    async def close(self) -> None:
        """Cancel every timer (clean-up): nothing is unloaded by a shim that stops."""
        self._closed = True
        timers = list(self._tasks)
        for timer in timers:
            timer.cancel()
        await asyncio.gather(*timers, return_exceptions=True)
        self._kept.clear()


UNLOADER = web.AppKey("idle_unloader", IdleUnloader)


def attach(app: web.Application, unloader: IdleUnloader) -> None:
    """Give ``app`` its unloader; its timers are cancelled at clean-up."""
    app[UNLOADER] = unloader

    async def cancel_at_cleanup(_: web.Application) -> AsyncIterator[None]:
        yield
        await unloader.close()

    app.cleanup_ctx.append(cancel_at_cleanup)


def unloader_of(app: web.Application) -> IdleUnloader:
    return app[UNLOADER]
