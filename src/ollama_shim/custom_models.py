"""Custom models: their table in the shim's store, and what the routes ask of them.

``SCHEMA`` is the table's migrations (one row per model: the definition as JSON columns, so that
a create, a copy or a delete is one row written in one transaction). ``CustomModels`` joins the
stored models with those declared in the config (read-only; a config model wins a name both
hold) and the live registry:

- ``resolve(registry, name)``: the backend model a request goes to, and the ``Customisation`` to
  apply (None for a backend model). The registry is wrapped, never changed.
- ``create``/``copy``/``delete``: checked as Ollama checks them (a name a backend model holds, an
  unknown ``from``, a cycle: 400), written atomically.
- ``tags``/``ps``: the entries ``/api/tags`` and ``/api/ps`` list for custom models, with
  ``details.parent_model``.

Every reading goes through one per-process copy of a store's custom models, read again once
``STORED_FRESH_S`` old or after this process changed them; requests that find it stale together
share one store read.

May import: stdlib, aiohttp.web, ``ollama_shim.store``, ``ollama_shim.registry``,
``ollama_shim.errors``, ``ollama_shim.settings``, ``ollama_shim.translate``, ``ollama_shim.timefmt``,
``ollama_shim.wire``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sqlite3
import time
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import msgspec
from aiohttp import web

from .errors import BadRequest, ModelNotFound, ShimError
from .registry import Registry, Resolved
from .settings import Settings
from .store import STORE, Schema, Store
from .timefmt import local_timestamp
from .translate import catalog
from .translate.customise import (
    Customisation,
    CustomModel,
    chain_of,
    display_name,
    flatten,
    is_valid_name,
    model_key,
)
from .translate.names import request_keys
from .wire import ollama as ow

SCHEMA = Schema(
    "custom_models",
    (
        (
            "CREATE TABLE custom_models (key TEXT PRIMARY KEY, name TEXT NOT NULL, base TEXT NOT NULL, "
            "system TEXT NOT NULL, parameters TEXT NOT NULL, messages TEXT NOT NULL, license TEXT NOT NULL, "
            "modified_ns INTEGER NOT NULL)",
        ),
    ),
)

_COLUMNS = "name, base, system, parameters, messages, license, modified_ns"


def _row(model: CustomModel) -> tuple[object, ...]:
    return (model.key, model.name, model.base, model.system, json.dumps(dict(model.parameters)),
            json.dumps(model.messages), json.dumps(model.license), model.modified_ns)


def _model(row: Sequence[object]) -> CustomModel:
    name, base, system, parameters, messages, license, modified_ns = row
    return CustomModel(
        name=str(name),
        base=str(base),
        system=str(system),
        parameters=json.loads(str(parameters)),
        messages=tuple((str(role), str(content)) for role, content in json.loads(str(messages))),
        license=tuple(str(text) for text in json.loads(str(license))),
        modified_ns=int(str(modified_ns)),
    )


def select_one(connection: sqlite3.Connection, key: str) -> CustomModel | None:
    row = connection.execute(f"SELECT {_COLUMNS} FROM custom_models WHERE key = ?", (key,)).fetchone()
    return _model(row) if row else None


def select_all(connection: sqlite3.Connection) -> list[CustomModel]:
    return [_model(row) for row in connection.execute(f"SELECT {_COLUMNS} FROM custom_models ORDER BY key")]


def upsert(connection: sqlite3.Connection, model: CustomModel) -> None:
    connection.execute(
        f"INSERT INTO custom_models (key, {_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (key) DO UPDATE SET name = excluded.name, base = excluded.base, system = excluded.system, "
        "parameters = excluded.parameters, messages = excluded.messages, license = excluded.license, "
        "modified_ns = excluded.modified_ns",
        _row(model),
    )


def delete_row(connection: sqlite3.Connection, key: str) -> bool:
    return connection.execute("DELETE FROM custom_models WHERE key = ?", (key,)).rowcount > 0


@dataclass(frozen=True)
class Listed:
    """A custom model as listed: its flattened layers (None when its chain is broken, a cycle
    through the config) and the backend model under it (None when no backend serves it now)."""

    model: CustomModel
    custom: Customisation | None
    base: Resolved | None

    @property
    def parent(self) -> str:
        return self.custom.parent if self.custom else display_name(self.model.base)


def _index(models: Iterable[Resolved]) -> dict[str, Resolved]:
    by_key: dict[str, Resolved] = {}
    for model in models:
        for key in (model.record.name.lower(), model.record.upstream_id.lower()):
            by_key.setdefault(key, model)
    return by_key


def _find(index: dict[str, Resolved], name: str) -> Resolved | None:
    return next((index[k] for k in request_keys(name) if k in index), None)


# Every chat asks whether its model is a custom one and every /api/tags lists them, so the stored
# models are read at most once a second per process and store (a read costs a worker thread): a
# change made by another --workers process is seen within STORED_FRESH_S; this process's own
# changes are seen at once (``_changed``).
STORED_FRESH_S = 1.0


@dataclass
class _StoredModels:
    """What this process last read of one store's custom models, by ``model_key``, and when."""

    models: Mapping[str, CustomModel] = dataclasses.field(default_factory=dict)
    read_at: float | None = None  # on the clock of ``CustomModels``; None: read them (again)
    generation: int = 0  # counts this process's own changes: a read begun before one is not kept
    # The read running now: requests that find the copy stale at once share it (one store read).
    reading: asyncio.Future[Mapping[str, CustomModel]] | None = None


_stored: weakref.WeakKeyDictionary[Store, _StoredModels] = weakref.WeakKeyDictionary()


class CustomModels:
    """The custom models of one app: its store plus the config's ``[[models]]``."""

    def __init__(self, store: Store, configured: Iterable[CustomModel], *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.configured = {model.key: model for model in configured}
        self.clock = clock

    @classmethod
    def of(cls, app: web.Application, settings: Settings) -> CustomModels:
        return cls(app[STORE], settings.custom_models)

    # -- reading -------------------------------------------------------------------------------

    def _lookup(self, connection: sqlite3.Connection, key: str) -> CustomModel | None:
        return self.configured.get(key) or select_one(connection, key)

    async def _stored_models(self) -> Mapping[str, CustomModel]:
        """The stored custom models by key, read again once ``STORED_FRESH_S`` old."""
        cached = _stored.setdefault(self.store, _StoredModels())
        now = self.clock()
        if cached.read_at is not None and now - cached.read_at <= STORED_FRESH_S:
            return cached.models
        if cached.reading is None:
            cached.reading = asyncio.ensure_future(self._read(cached, now))
        return await asyncio.shield(cached.reading)

    async def _read(self, cached: _StoredModels, now: float) -> Mapping[str, CustomModel]:
        generation = cached.generation
        reading = cached.reading
        try:
            models = {model.key: model for model in await self.store.read(select_all)}
        finally:
            if cached.reading is reading:
                cached.reading = None
        if cached.generation == generation:
            cached.models, cached.read_at = models, now
        return models

    async def _all(self) -> dict[str, CustomModel]:
        """The stored and the configured custom models by key; a configured one wins a key both hold."""
        return {**await self._stored_models(), **self.configured}

    async def chain(self, name: str) -> list[CustomModel]:
        """``name`` and the custom models it is made from (``[]`` for a model that is not custom)."""
        if not is_valid_name(name):
            return []
        return chain_of(name, (await self._all()).get)

    def _changed(self) -> None:
        """This process changed the stored models: the next reading reads them again."""
        cached = _stored.setdefault(self.store, _StoredModels())
        cached.read_at = None
        cached.reading = None  # a read begun before the change is not joined
        cached.generation += 1

    async def resolve(self, registry: Registry, name: str) -> tuple[Resolved, Customisation | None]:
        """The backend model ``name`` runs on, and its customisation (None: not a custom model)."""
        chain = await self.chain(name)
        if not chain:
            return await registry.resolve(name), None
        custom = flatten(chain)
        try:
            return await registry.resolve(custom.base), custom
        except ModelNotFound:
            raise ModelNotFound(name).with_hint(f"it is made from {custom.base!r}, which no backend serves now") \
                from None

    async def listed(self, backend_models: Sequence[Resolved]) -> list[Listed]:
        by_key = await self._all()
        index = _index(backend_models)
        out = []
        for model in by_key.values():
            try:
                custom: Customisation | None = flatten(chain_of(model.name, by_key.get))
            except BadRequest:
                custom = None
            out.append(Listed(model, custom, _find(index, custom.base) if custom else None))
        return out

    # -- changing ------------------------------------------------------------------------------

    def _refuse_config(self, name: str, verb: str) -> None:
        if model_key(name) in self.configured:
            raise BadRequest(f"model '{display_name(name)}' comes from the config file and cannot be {verb} through "
                             "the API; change it there")

    async def _refuse_backend_name(self, registry: Registry, name: str) -> None:
        try:
            held = await registry.resolve(name)
        except ModelNotFound:
            return
        raise BadRequest(f"model '{display_name(name)}' is a model of the backend ({held.backend.root}); "
                         "give the custom model another name")

    async def _write(self, model: CustomModel) -> None:
        def write(connection: sqlite3.Connection) -> None:
            chain_of(model.name, lambda key: model if key == model.key else self._lookup(connection, key))  # cycle?
            upsert(connection, model)

        await self.store.run(write)
        self._changed()

    async def create(self, registry: Registry, model: CustomModel) -> None:
        """Store ``model`` (replacing one of that name), made from a backend or custom model."""
        self._refuse_config(model.name, "changed")
        if model.key == model_key(model.base):
            raise BadRequest(f"custom models form a cycle: {model.name} -> {model.name}")
        if not await self.chain(model.base):
            try:
                await registry.resolve(model.base)
            except ModelNotFound:
                raise BadRequest(f"pull model manifest: file does not exist: ollama-shim cannot download "
                                 f"'{model.base}'; create from a model the backend serves or a custom model") from None
        await self._refuse_backend_name(registry, model.name)
        await self._write(dataclasses.replace(model, modified_ns=time.time_ns()))

    async def copy(self, registry: Registry, source: str, destination: str) -> None:
        """A custom model copied under a new name, or a backend model given a custom name."""
        if not is_valid_name(source):
            raise BadRequest(f'source "{source}" is invalid')
        if not is_valid_name(destination):
            raise BadRequest(f'destination "{destination}" is invalid')
        self._refuse_config(destination, "changed")
        chain = await self.chain(source)
        if chain:
            copied = dataclasses.replace(chain[0], name=display_name(destination), from_config=False)
        else:
            try:
                await registry.resolve(source)
            except ModelNotFound:
                raise ShimError(f'model "{source}" not found', 404) from None
            copied = CustomModel(name=display_name(destination), base=source)
        await self._refuse_backend_name(registry, destination)
        await self._write(dataclasses.replace(copied, modified_ns=time.time_ns()))

    async def delete(self, registry: Registry, name: str) -> None:
        self._refuse_config(name, "deleted")
        key = model_key(name)
        deleted = is_valid_name(name) and await self.store.run(lambda c: delete_row(c, key))
        self._changed()
        if deleted:
            return
        try:
            held = await registry.resolve(name)
        except ModelNotFound:
            raise ModelNotFound(display_name(name)) from None
        raise BadRequest(f"model '{name}' lives in the backend ({held.backend.root}); ollama-shim cannot delete it")

    # -- listing -------------------------------------------------------------------------------

    async def tags(self, backend_models: Sequence[Resolved]) -> list[ow.TagsModel]:
        return [_tags_model(item) for item in await self.listed(backend_models)]

    async def ps(self, running: Sequence[Resolved], now_ns: int) -> list[ow.PsModel]:
        """Custom models whose backend model is loaded."""
        return [_ps_model(item, now_ns) for item in await self.listed(running) if item.base is not None]


def _details(item: Listed) -> ow.ModelDetails:
    if item.base is None:
        return ow.ModelDetails(parent_model=item.parent, format="", family="", families=[], parameter_size="",
                               quantization_level="")
    return msgspec.structs.replace(catalog.details_of(item.base.record), parent_model=item.parent)


def _tags_model(item: Listed) -> ow.TagsModel:
    base = item.base
    return ow.TagsModel(
        name=item.model.name,
        model=item.model.name,
        modified_at=local_timestamp(item.model.modified_ns or (base.record.modified_ns if base else 0)),
        size=base.record.size if base else 0,
        digest=item.model.digest,
        details=_details(item),
        capabilities=list(base.record.capabilities) if base else None,
    )


def _ps_model(item: Listed, now_ns: int) -> ow.PsModel:
    assert item.base is not None
    entry = catalog.to_ps_model(item.base.record, item.base.backend.root, now_ns)
    return msgspec.structs.replace(entry, name=item.model.name, model=item.model.name, digest=item.model.digest,
                                   details=_details(item))
