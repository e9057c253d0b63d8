"""Loading and unloading models on the backends that can: llama.cpp's router, LM Studio.

Used for Ollama's load-only requests (empty ``messages``/``prompt``), ``keep_alive: 0``, and to
recover from "No models loaded" before retrying. What to call comes from the backend's kind
(``LiveBackend.loads``: paths, bodies, whether to wait for the router's status). Other backends
load on their own or not at all; for them both calls do nothing and say so by returning False.

May import: stdlib, msgspec, ``ollama_shim.upstream``, ``ollama_shim.registry``, ``ollama_shim.backends``,
``ollama_shim.errors``, ``ollama_shim.translate``, ``ollama_shim.wire``.
"""

from __future__ import annotations

import asyncio
import logging
import time

import msgspec

from .backends import LoadCalls
from .errors import UpstreamStatus, UpstreamTimeout
from .registry import Registry, Resolved
from .translate.catalog import decode_each
from .upstream import Upstream
from .wire.backends import LlamaCppStatus, ModelListEntries
from .wire.openai import ModelEntry

log = logging.getLogger("ollama_shim.loader")

POLL_INTERVAL = 0.2


class _Ack(msgspec.Struct):
    pass


def _already_done(exc: UpstreamStatus) -> bool:
    """A load of a loaded model or an unload of an unloaded one (llama.cpp says "running")."""
    text = exc.message.lower()
    return any(s in text for s in ("already loaded", "already running", "not loaded", "not running"))


class Loader:
    def __init__(self, upstream: Upstream, registry: Registry) -> None:
        self._upstream = upstream
        self._registry = registry

    async def load(self, resolved: Resolved) -> bool:
        """Ask the backend to load the model now; False where the backend cannot be asked."""
        calls = resolved.source.loads
        if calls is None:
            return False
        body = calls.load_body(resolved.record.upstream_id)
        return await self._call(resolved, calls, calls.load_path, body, "loaded")

    async def unload(self, resolved: Resolved) -> bool:
        """Ask the backend to unload the model; False where the backend cannot be asked."""
        calls = resolved.source.loads
        if calls is None:
            return False
        body = calls.unload_body(resolved.record.upstream_id)
        return await self._call(resolved, calls, calls.unload_path, body, "unloaded")

    async def _call(self, resolved: Resolved, calls: LoadCalls, path: str, body: bytes, state: str) -> bool:
        try:
            await self._upstream.post_json(resolved.backend, path, body, _Ack)
        except UpstreamStatus as exc:
            if calls.routes_optional and exc.status in (404, 405, 501) and "model" not in exc.message:
                return False  # e.g. a single-model llama-server has no router endpoints
            if not _already_done(exc):
                raise
        if calls.polls_status:  # answered at once, done in the background
            await self._wait_for(resolved, state)
        log.info("%s %s on %s", state, resolved.record.upstream_id, resolved.backend.root)
        self._registry.invalidate()
        return True

    async def _wait_for(self, resolved: Resolved, state: str) -> None:
        """Poll the backend's ``/v1/models`` until the model reaches ``state`` (or failed loading)."""
        deadline = time.monotonic() + (self._upstream.timeouts.first_byte or 600.0)
        model = resolved.record.upstream_id
        while time.monotonic() < deadline:
            status = await self._status(resolved)
            if status is None or status.value == state:
                return
            if status.failed:
                raise UpstreamStatus(f"backend failed to load {model} (exit code {status.exit_code})", 500)
            await asyncio.sleep(POLL_INTERVAL)
        raise UpstreamTimeout(f"backend did not finish loading {model} in time")

    async def _status(self, resolved: Resolved) -> LlamaCppStatus | None:
        """The model's router status; None (done) for a model listed without one, or not listed."""
        listing = await self._upstream.get_json(resolved.backend, "/v1/models", ModelListEntries)
        model = resolved.record.upstream_id
        for entry in decode_each(listing.data, ModelEntry, lambda name: ModelEntry(id=name)):
            if entry.id == model:
                return entry.status
        return None
