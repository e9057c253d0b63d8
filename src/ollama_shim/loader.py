"""Loading and unloading models on the backends that can: llama.cpp's router, LM Studio.

Used for Ollama's load-only requests (empty ``messages``/``prompt``), ``keep_alive: 0``, and to
recover from "No models loaded" before retrying. Other backends load on their own or not at
all; for them both calls do nothing and say so by returning False.

May import: stdlib, msgspec, ``ollama_shim.upstream``, ``ollama_shim.registry``, ``ollama_shim.errors``,
``ollama_shim.wire``.
"""

from __future__ import annotations

import asyncio
import logging
import time

import msgspec

from .errors import UpstreamStatus, UpstreamTimeout
from .registry import Registry, Resolved
from .upstream import Upstream
from .wire.backends import LMStudioUnloadRequest, ModelLoadRequest
from .wire.openai import ModelList

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
        body = msgspec.json.encode(ModelLoadRequest(model=resolved.record.upstream_id))
        paths = {"llamacpp": "/models/load", "lmstudio": "/api/v1/models/load"}
        return await self._call(resolved, paths, body, "load")

    async def unload(self, resolved: Resolved) -> bool:
        """Ask the backend to unload the model; False where the backend cannot be asked."""
        model = resolved.record.upstream_id
        if resolved.dialect.kind == "lmstudio":
            body = msgspec.json.encode(LMStudioUnloadRequest(instance_id=model))
        else:
            body = msgspec.json.encode(ModelLoadRequest(model=model))
        paths = {"llamacpp": "/models/unload", "lmstudio": "/api/v1/models/unload"}
        return await self._call(resolved, paths, body, "unload")

    async def _call(self, resolved: Resolved, paths: dict[str, str], body: bytes, verb: str) -> bool:
        path = paths.get(resolved.dialect.kind)
        if path is None:
            return False
        try:
            await self._upstream.post_json(resolved.backend, path, body, _Ack)
        except UpstreamStatus as exc:
            if exc.status in (404, 405, 501) and resolved.dialect.kind == "llamacpp" and "model" not in exc.message:
                return False  # a single-model llama-server has no router endpoints
            if not _already_done(exc):
                raise
        if resolved.dialect.kind == "llamacpp":  # the router answers at once and loads in the background
            await self._wait_for(resolved, "loaded" if verb == "load" else "unloaded")
        log.info("%sed %s on %s", verb, resolved.record.upstream_id, resolved.backend.root)
        self._registry.invalidate()
        return True

    async def _wait_for(self, resolved: Resolved, state: str) -> None:
        """Poll llama.cpp's router until the model reaches ``state`` (or failed loading)."""
        deadline = time.monotonic() + (self._upstream.timeouts.first_byte or 600.0)
        model = resolved.record.upstream_id
        while time.monotonic() < deadline:
            listing = await self._upstream.get_json(resolved.backend, "/v1/models", ModelList)
            status = next((e.status or {} for e in listing.data if e.id == model), {})
            if status.get("value", state) == state:
                return
            if status.get("failed"):
                raise UpstreamStatus(f"backend failed to load {model} (exit code {status.get('exit_code')})", 500)
            await asyncio.sleep(POLL_INTERVAL)
        raise UpstreamTimeout(f"backend did not finish loading {model} in time")
