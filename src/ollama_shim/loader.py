"""Loading and unloading models on the backends that can: llama.cpp's router, LM Studio.

Used for Ollama's load-only requests (empty ``messages``/``prompt``), ``keep_alive: 0``, idle
models (``idle_unload``), and to recover from "No models loaded" before retrying. ``keep_alive: 0``
unloads on every replica of the model (``unload_everywhere``), all at once: a replica that fails
(down, or an error answer) is logged and the others still count, so the answer is a success when at
least one replica unloaded it (or had nothing to unload); only when every one failed is the first
replica's failure the answer, as it is for a model on one backend. What to call
comes from the backend's kind (``LiveBackend.loads``: paths, bodies, whether to wait for the
router's status). Other backends load on their own or not at all; for them both calls do nothing
and say so by returning False.

``fit_context`` answers a request's ``num_ctx``. Where the load call takes a context length (LM
Studio), a model loaded with less (or not loaded) is loaded at ``num_ctx`` (at most the model's
own maximum). The rule that keeps two clients asking for different sizes from reloading it in
turn: **only upward, and at most once per model per ``RELOAD_COOLDOWN``** — a model loaded with
more serves a smaller ``num_ctx`` as it is, and a second larger one within the cool-down goes
through at the context there is. Elsewhere (llama.cpp, whose context is set when the server or
its preset starts the model; vLLM; cloud backends) the request goes through and a warning says
once per model that the backend's context is N.

May import: stdlib, msgspec, ``ollama_shim.upstream``, ``ollama_shim.registry``, ``ollama_shim.backends``,
``ollama_shim.errors``, ``ollama_shim.translate``, ``ollama_shim.wire``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping

import msgspec

from .backends import LoadCalls
from .errors import ShimError, UpstreamStatus, UpstreamTimeout
from .registry import Registry, Resolved
from .translate.catalog import decode_each
from .upstream import Upstream
from .wire.backends import LlamaCppStatus, ModelListEntries
from .wire.openai import ModelEntry

log = logging.getLogger("ollama_shim.loader")

POLL_INTERVAL = 0.2
RELOAD_COOLDOWN = 300.0  # seconds: at most one reload for num_ctx per model in this time
_MAX_CONTEXT = 1 << 26  # a num_ctx beyond this is no context any model has


def num_ctx_of(options: Mapping[str, object] | None) -> int | None:
    """A request's ``options.num_ctx`` when it is a positive whole number of tokens; else None."""
    value = (options or {}).get("num_ctx")
    if isinstance(value, bool) or not isinstance(value, int | float) or not 1 <= value <= _MAX_CONTEXT:
        return None
    return int(value)


class _Ack(msgspec.Struct):
    pass


def _already_done(exc: UpstreamStatus) -> bool:
    """A load of a loaded model or an unload of an unloaded one (llama.cpp says "running")."""
    text = exc.message.lower()
    return any(s in text for s in ("already loaded", "already running", "not loaded", "not running"))


class Loader:
    def __init__(self, upstream: Upstream, registry: Registry, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._upstream = upstream
        self._registry = registry
        self._clock = clock
        self._reloaded_at: dict[tuple[str, str], float] = {}  # when a model was last loaded for num_ctx
        self._warned: set[tuple[str, str]] = set()  # models whose context was said once

    async def fit_context(self, resolved: Resolved, num_ctx: int | None) -> Resolved:
        """The model, loaded at ``num_ctx`` where that can be asked and the rule allows (see the module)."""
        calls = resolved.source.loads
        if num_ctx is None:
            return resolved
        if calls is None or calls.load_body_at_context is None:
            self._say_context(resolved, num_ctx)
            return resolved
        if not self._wants_more(resolved, num_ctx):
            return resolved
        key = (resolved.backend.root, resolved.record.upstream_id)
        last = self._reloaded_at.get(key)
        if last is not None and self._clock() - last < RELOAD_COOLDOWN:
            self._say_context(resolved, num_ctx)
            return resolved
        resolved = await self._afresh(resolved)  # the list may be a few seconds old
        if not self._wants_more(resolved, num_ctx):
            return resolved
        record = resolved.record
        wanted = min(num_ctx, record.max_context_length or num_ctx)
        self._reloaded_at[key] = self._clock()
        log.info("loading %s on %s at a context of %d for num_ctx %d (loaded with %s)", record.upstream_id,
                 resolved.backend.root, wanted, num_ctx, record.context_length if record.loaded else "none")
        if record.loaded:
            await self.unload(resolved)
        await self._call(resolved, calls, calls.load_path, calls.load_body_at_context(record.upstream_id, wanted),
                         "loaded")
        return await self._afresh(resolved)

    @staticmethod
    def _wants_more(resolved: Resolved, num_ctx: int) -> bool:
        """Whether the model is not loaded, or loaded with less than ``num_ctx`` (at most its maximum)."""
        record = resolved.record
        wanted = min(num_ctx, record.max_context_length or num_ctx)
        return not record.loaded or (record.context_length or 0) < wanted

    async def _afresh(self, resolved: Resolved) -> Resolved:
        """The same model as its backend lists it now."""
        self._registry.invalidate()
        for model in await self._registry.models():
            if model.source is resolved.source and model.record.upstream_id == resolved.record.upstream_id:
                return model
        return resolved

    def _say_context(self, resolved: Resolved, num_ctx: int) -> None:
        """Once per model: a num_ctx beyond the context the backend runs the model with."""
        context = resolved.record.context_length
        key = (resolved.backend.root, resolved.record.upstream_id)
        if context is None or num_ctx <= context or key in self._warned:
            return
        self._warned.add(key)
        log.warning("num_ctx %d asked of %s, but %s runs it with a context of %d; requests go through with that",
                    num_ctx, resolved.record.upstream_id, resolved.backend.root, context)

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

    async def unload_everywhere(self, resolved: Resolved) -> bool:
        """Unload the model on every replica (``Resolved.candidates``) at once; see the module for
        what a failing replica does to the answer. False when no replica could be asked."""
        replicas = resolved.candidates
        if len(replicas) == 1:
            return await self.unload(resolved)
        results = await asyncio.gather(*(self.unload(replica) for replica in replicas), return_exceptions=True)
        failures: list[ShimError] = []
        for replica, result in zip(replicas, results, strict=True):
            if isinstance(result, ShimError):
                failures.append(result)
                log.warning("could not unload %s on %s: %s", replica.record.upstream_id, replica.backend.root,
                            result.message)
            elif isinstance(result, BaseException):
                raise result  # not a backend's failure: a fault of the shim's own
        if len(failures) == len(replicas):
            raise failures[0]
        return any(result is True for result in results)

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
