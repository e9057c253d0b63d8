"""The live model catalog: every backend's models, merged, cached for a short TTL, resolvable by name.

On a refresh each backend (a ``backends.LiveBackend``, which knows how its kind's catalog is
read) is asked concurrently. A backend that fails keeps its last known models in the list, but
none of them counts as running; only when no backend has ever answered does a listing fail.
A name several backends of one replica group (``Backend.group``) serve is one model with several
replicas: it resolves to the first backend's (whose record answers ``/api/show`` and friends),
carrying every replica in ``Resolved.replicas`` (in a named group, also the members whose model list
cannot be read now, so that a member that is down at start is tried, marked down and probed like
any replica). Replicas are of the first backend's kind, since a request is translated once for
one kind: a backend of another kind that lists the name is left out, with one warning
(``LeftOut``). Which replica serves a request is the router's choice
(``routing.Router``, ``self.router``). A name that is not found triggers one refresh before the
404 (a model loaded a second ago).

What is learned about each model is kept in one ``ModelMemory`` shared by the backends (in-process
unless another is given), so a model's size, digest, details, capabilities and ``modified_at`` stay
as they were once learned, whether it is loaded, unloaded, or its backend is down.

May import: stdlib, ``ollama_shim.backends``, ``ollama_shim.routing``, ``ollama_shim.model_memory``,
``ollama_shim.model_files``, ``ollama_shim.upstream``, ``ollama_shim.settings``, ``ollama_shim.dialect``,
``ollama_shim.errors``, ``ollama_shim.translate``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from .backends import LiveBackend
from .dialect import Dialect, Kind
from .errors import ModelNotFound
from .model_files import ModelFiles
from .model_memory import InProcessMemory, ModelMemory
from .routing import Router
from .settings import Backend, Settings
from .translate.catalog import ModelRecord
from .translate.names import request_keys
from .upstream import Upstream

log = logging.getLogger("ollama_shim.registry")


@dataclass(frozen=True)
class Resolved:
    """A model bound to the backend that serves it, and so to the dialect its requests speak;
    with the same model on the other backends of its group, when there are some."""

    record: ModelRecord
    source: LiveBackend
    replicas: tuple[Resolved, ...] = ()  # every backend's (this one first), when more than one

    @property
    def candidates(self) -> tuple[Resolved, ...]:
        """Where a request for this model may go: every replica, or this one alone."""
        return self.replicas or (self,)

    @property
    def backend(self) -> Backend:
        return self.source.settings

    @property
    def dialect(self) -> Dialect:
        return self.source.dialect


@dataclass(frozen=True)
class _Snapshot:
    models: tuple[Resolved, ...]
    by_key: dict[str, Resolved]
    taken_at: float


@dataclass(frozen=True)
class LeftOut:
    """A backend that lists a model of its group under the same name but is of another kind than the
    backend the name resolves to: not a replica of it (a request is translated for one kind)."""

    group: str
    name: str
    resolved: LiveBackend  # the backend the name resolves to
    other: LiveBackend


def _index(
    models: tuple[Resolved, ...], backends: tuple[LiveBackend, ...]
) -> tuple[dict[str, Resolved], list[LeftOut]]:
    """Each name and id -> its model, with the replicas of its group (in backend order; the first
    listed is the one resolved), and the backends left out of a name's replicas for their kind.

    Replicas are of one kind: a backend of another kind than the first that lists the same name is
    not a replica of it (its own models are another model, which the first listed wins by name).
    A member of a named group whose model list cannot be read now is a replica of the group's models
    too (under the first member's id): the group serves the same models; unless its kind is known
    and is another."""
    same: dict[tuple[str, str, Kind | None], list[Resolved]] = {}
    resolved_to: dict[tuple[str, str], Resolved] = {}
    for model in models:
        group, name = model.source.settings.group, model.record.name.lower()
        resolved_to.setdefault((group, name), model)
        same.setdefault((group, name, model.source.kind), []).append(model)
    unread = [b for b in backends if b.settings.group and not b.answering]
    by_key: dict[str, Resolved] = {}
    left_out: list[LeftOut] = []
    for (group, name, kind), replicas in same.items():
        first = resolved_to[(group, name)]
        if first.source.kind != kind:
            left_out += [LeftOut(group, first.record.name, first.source, r.source) for r in replicas]
        listed = {id(r.source) for r in replicas}
        replicas += [Resolved(replicas[0].record, b) for b in unread if b.settings.group == group
                     and id(b) not in listed and b.kind in (None, kind)]
        head = replicas[0] if len(replicas) == 1 else dataclasses.replace(replicas[0], replicas=tuple(replicas))
        for model in replicas:
            for key in (model.record.name.lower(), model.record.upstream_id.lower()):
                by_key.setdefault(key, head)  # the first group (and kind) listed wins a name two serve
    return by_key, left_out


class Registry:
    def __init__(
        self,
        settings: Settings,
        upstream: Upstream,
        *,
        clock: Callable[[], float] = time.monotonic,
        wallclock: Callable[[], int] = time.time_ns,
        memory: ModelMemory | None = None,
    ) -> None:
        self._ttl = settings.catalog_ttl
        self._clock = clock
        self._wallclock = wallclock  # a model's first-seen time, its "modified" time if its backend gives none
        self.memory: ModelMemory = memory if memory is not None else InProcessMemory()
        files = ModelFiles() if settings.read_model_files else None
        self.backends = tuple(LiveBackend(b, upstream, self.memory, files) for b in settings.backends)
        self.router = Router(settings.routing, upstream, queue_wait=settings.timeouts.first_byte)
        self._snapshot: _Snapshot | None = None
        self._refreshing: asyncio.Task[_Snapshot] | None = None
        self._warned: set[tuple[str, str, str]] = set()  # (group, name, backend root) left out for its kind

    # -- public ------------------------------------------------------------------------------

    async def models(self, *, fresh: bool = False) -> tuple[Resolved, ...]:
        """Every backend's models, in backend order; a backend that is down keeps its last ones."""
        return (await self._current(fresh=fresh)).models

    async def running(self) -> tuple[Resolved, ...]:
        """The models loaded now, asked afresh: none of a backend that does not answer."""
        return tuple(m for m in await self.models(fresh=True) if m.record.loaded and m.source.answering)

    async def resolve(self, requested: str) -> Resolved:
        """The model a client's name means; refreshes once on a miss; ModelNotFound otherwise."""
        found = self._lookup(await self._current(), requested)
        if found is None:
            found = self._lookup(await self._current(fresh=True), requested)
        if found is None:
            raise ModelNotFound(requested)
        return found

    def invalidate(self) -> None:
        """Forget the cached list (a model was loaded or unloaded)."""
        self._snapshot = None

    # -- cache -------------------------------------------------------------------------------

    @staticmethod
    def _lookup(snap: _Snapshot, requested: str) -> Resolved | None:
        return next((snap.by_key[k] for k in request_keys(requested) if k in snap.by_key), None)

    async def _current(self, *, fresh: bool = False) -> _Snapshot:
        snap = self._snapshot
        if snap is not None and not fresh and self._clock() - snap.taken_at < self._ttl:
            return snap
        if self._refreshing is None:  # one refresh at a time, shared by every waiting request
            self._refreshing = asyncio.ensure_future(self._refresh())
            self._refreshing.add_done_callback(lambda _: setattr(self, "_refreshing", None))
        return await asyncio.shield(self._refreshing)

    async def _refresh(self) -> _Snapshot:
        now_ns = self._wallclock()
        results = await asyncio.gather(*(b.refresh(now_ns) for b in self.backends), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result  # not a backend failing (that is kept in ``failure``): a fault of the shim's own
        failures = [(b.settings.root, b.failure) for b in self.backends if b.failure is not None]
        for root, failure in failures:
            log.warning("model list from %s failed: %s", root, failure.message)
        if len(failures) == len(self.backends) and not any(b.ever_answered for b in self.backends):
            raise failures[0][1]
        models = tuple(Resolved(rec, b) for b in self.backends for rec in b.records)
        by_key, left_out = _index(models, self.backends)
        self._warn_of_kinds(left_out)
        self._snapshot = _Snapshot(models, by_key, self._clock())
        return self._snapshot

    def _warn_of_kinds(self, left_out: list[LeftOut]) -> None:
        """One warning per (group, name, backend) left out of a model's replicas for its kind."""
        for out in left_out:
            seen = (out.group, out.name.lower(), out.other.settings.root)
            if seen in self._warned:
                continue
            self._warned.add(seen)
            group = f"group {out.group!r}" if out.group else "the backends without a group"
            log.warning("model %r in %s: %s (%s) is left out of its replicas, which must be of one kind: "
                        "the name resolves to %s (%s); give the other a group of its own", out.name, group,
                        out.other.settings.root, out.other.kind, out.resolved.settings.root, out.resolved.kind)
