"""The live model catalog: every backend's models, merged, cached for a short TTL, resolvable by name.

On a refresh each backend is asked concurrently. A backend of kind ``auto`` is probed once to
learn its kind (llama.cpp answers ``/props``, LM Studio its REST ``/api/v1|v0/models``, vLLM
says ``owned_by: vllm``), then asked with that kind's native calls. A backend that fails keeps
its last known models; only when no backend answers and nothing is cached does a listing fail.
A name that is not found triggers one refresh before the 404 (a model loaded a second ago).

May import: stdlib, msgspec, ``ollama_shim.upstream``, ``ollama_shim.settings``, ``ollama_shim.dialect``,
``ollama_shim.errors``, ``ollama_shim.wire``, ``ollama_shim.translate``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from .dialect import DIALECTS, Dialect, detect_kind
from .errors import ModelNotFound, UpstreamError
from .settings import Backend, Settings
from .translate import catalog
from .translate.catalog import ModelRecord
from .translate.names import request_keys
from .upstream import Upstream
from .wire.backends import LlamaCppProps, LMStudioV0ModelList, LMStudioV1ModelList
from .wire.openai import ModelList

log = logging.getLogger("ollama_shim.registry")

PROBE_TIMEOUT = 5.0


@dataclass(frozen=True)
class Resolved:
    """A requested name bound to the model, backend and dialect that will serve it."""

    record: ModelRecord
    backend: Backend
    dialect: Dialect


@dataclass(frozen=True)
class _Snapshot:
    records: tuple[ModelRecord, ...]
    by_key: dict[str, ModelRecord]
    taken_at: float


def _index(records: tuple[ModelRecord, ...]) -> dict[str, ModelRecord]:
    by_key: dict[str, ModelRecord] = {}
    for rec in records:  # the first backend listed wins a name both serve
        for key in (rec.name.lower(), rec.upstream_id.lower()):
            by_key.setdefault(key, rec)
    return by_key


class Registry:
    def __init__(
        self,
        settings: Settings,
        upstream: Upstream,
        *,
        clock: Callable[[], float] = time.monotonic,
        wallclock: Callable[[], int] = time.time_ns,
    ) -> None:
        self._settings = settings
        self._upstream = upstream
        self._clock = clock
        self._started_ns = wallclock()
        self._kinds: dict[int, str] = {i: b.kind for i, b in enumerate(settings.backends) if b.kind != "auto"}
        self._by_backend: dict[int, tuple[ModelRecord, ...]] = {}
        self._snapshot: _Snapshot | None = None
        self._refreshing: asyncio.Task[_Snapshot] | None = None

    # -- public ------------------------------------------------------------------------------

    async def records(self, *, fresh: bool = False) -> tuple[ModelRecord, ...]:
        return (await self._current(fresh=fresh)).records

    async def resolve(self, requested: str) -> Resolved:
        """The model a client's name means; refreshes once on a miss; ModelNotFound otherwise."""
        snap = await self._current()
        rec = self._lookup(snap, requested)
        if rec is None:
            rec = self._lookup(await self._current(fresh=True), requested)
        if rec is None:
            raise ModelNotFound(requested)
        return self.bind(rec)

    def bind(self, rec: ModelRecord) -> Resolved:
        backend = self._settings.backends[rec.backend]
        return Resolved(rec, backend, self.dialect(rec.backend))

    def dialect(self, backend: int) -> Dialect:
        return DIALECTS[self._kinds.get(backend, "generic")]

    def backend_root(self, rec: ModelRecord) -> str:
        return self._settings.backends[rec.backend].root

    def invalidate(self) -> None:
        """Forget the cached list (a model was loaded or unloaded)."""
        self._snapshot = None

    # -- cache -------------------------------------------------------------------------------

    @staticmethod
    def _lookup(snap: _Snapshot, requested: str) -> ModelRecord | None:
        return next((snap.by_key[k] for k in request_keys(requested) if k in snap.by_key), None)

    async def _current(self, *, fresh: bool = False) -> _Snapshot:
        snap = self._snapshot
        if snap is not None and not fresh and self._clock() - snap.taken_at < self._settings.catalog_ttl:
            return snap
        if self._refreshing is None:  # one refresh at a time, shared by every waiting request
            self._refreshing = asyncio.ensure_future(self._refresh())
            self._refreshing.add_done_callback(lambda _: setattr(self, "_refreshing", None))
        return await asyncio.shield(self._refreshing)

    async def _refresh(self) -> _Snapshot:
        backends = self._settings.backends
        results = await asyncio.gather(*(self._fetch(i, b) for i, b in enumerate(backends)), return_exceptions=True)
        failures: list[BaseException] = []
        for i, result in enumerate(results):
            if isinstance(result, BaseException):
                if not isinstance(result, UpstreamError):
                    raise result
                log.warning("model list from %s failed: %s", backends[i].root, result.message)
                failures.append(result)
            else:
                self._by_backend[i] = result
        if len(failures) == len(backends) and not self._by_backend:
            raise failures[0]
        records = tuple(r for i in range(len(backends)) for r in self._by_backend.get(i, ()))
        self._snapshot = _Snapshot(records, _index(records), self._clock())
        return self._snapshot

    # -- per backend -------------------------------------------------------------------------

    async def _fetch(self, index: int, backend: Backend) -> tuple[ModelRecord, ...]:
        models = await self._upstream.get_json(backend, "/v1/models", ModelList)
        kind = self._kinds.get(index) or await self._probe_kind(index, backend, models)
        now = self._started_ns
        if kind == "llamacpp":
            return await self._llamacpp_records(index, backend, models)
        if kind == "lmstudio":
            lms = await self._lmstudio_records(index, backend)
            if lms is not None:
                return lms
        loaded = kind == "vllm"
        return tuple(catalog.record_from_openai_entry(e, index, now, loaded=loaded) for e in models.data)

    async def _probe_kind(self, index: int, backend: Backend, models: ModelList) -> str:
        props, lms = await asyncio.gather(self._props(backend), self._lmstudio_v1(backend))
        kind = detect_kind(
            backend.root,
            has_props=props is not None,
            has_lmstudio_rest=lms is not None,
            owned_by={e.owned_by or "" for e in models.data},
        )
        log.info("backend %s is %s", backend.root, kind)
        self._kinds[index] = kind
        return kind

    async def _optional(self, backend: Backend, path: str, type_: type) -> object | None:
        try:
            return await self._upstream.get_json(backend, path, type_, limit=PROBE_TIMEOUT)
        except UpstreamError:
            return None

    async def _props(self, backend: Backend, model: str | None = None) -> LlamaCppProps | None:
        path = "/props" if model is None else f"/props?model={model}&autoload=false"
        props = await self._optional(backend, path, LlamaCppProps)
        if not isinstance(props, LlamaCppProps):
            return None
        if props.default_generation_settings is None and props.build_info is None:
            return None  # a 200 from a server that answers every path (LM Studio does)
        return props

    async def _lmstudio_v1(self, backend: Backend) -> LMStudioV1ModelList | None:
        found = await self._optional(backend, "/api/v1/models", LMStudioV1ModelList)
        return found if isinstance(found, LMStudioV1ModelList) and found.models else None

    async def _llamacpp_records(self, index: int, backend: Backend, models: ModelList) -> tuple[ModelRecord, ...]:
        now = self._started_ns
        router = any(e.status is not None for e in models.data)
        if not router:
            props = await self._props(backend)
            return tuple(catalog.record_from_llamacpp(e, props, index, now) for e in models.data)
        out = []
        for entry in models.data:
            loaded = (entry.status or {}).get("value") == "loaded"
            props = await self._props(backend, entry.id) if loaded else None
            out.append(catalog.record_from_llamacpp(entry, props, index, now))
        return tuple(out)

    async def _lmstudio_records(self, index: int, backend: Backend) -> tuple[ModelRecord, ...] | None:
        now = self._started_ns
        v1 = await self._lmstudio_v1(backend)
        if v1 is not None:
            return tuple(catalog.record_from_lmstudio_v1(m, index, now) for m in v1.models)
        v0 = await self._optional(backend, "/api/v0/models", LMStudioV0ModelList)
        if isinstance(v0, LMStudioV0ModelList):
            return tuple(catalog.record_from_lmstudio_v0(m, index, now) for m in v0.data)
        return None
