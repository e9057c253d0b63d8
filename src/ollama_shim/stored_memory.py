"""``StoredMemory``: the ``ModelMemory`` kept in the shim's SQLite store, so what was learned survives restarts.

Its table (``SCHEMA``, one of the store's per-component schemas) holds one row per model, keyed by
the backend's root URL and the model's id, its facts in one JSON column (``model_memory``'s
encoding: a row written by an older or newer shim still reads). Every row is read once when the
app starts (``load``); ``recall`` answers from memory, never from the database; ``remember`` keeps
the facts in memory at once and writes them through in a worker thread, one batch at a time, so the
event loop never waits for the disk. A write that fails is logged and tried again with the next
batch; what is still unwritten at clean-up is written then. Rows are bounded like the in-process
memory: past ``MAX_REMEMBERED`` models the one remembered longest ago is forgotten first.

``attach(app, memory)`` loads it when the app starts (after the store opened) and writes what is
left at clean-up (before the store closes).

May import: stdlib, aiohttp.web, ``ollama_shim.store``, ``ollama_shim.model_memory``, ``ollama_shim.translate.catalog``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import sqlite3
import time
from collections.abc import AsyncIterator

from aiohttp import web

from .model_memory import MAX_REMEMBERED, InProcessMemory, facts_from_json, facts_to_json
from .store import Schema, Store
from .translate.catalog import ModelFacts

log = logging.getLogger("ollama_shim.memory")

SCHEMA = Schema(
    "model_memory",
    (
        (
            "CREATE TABLE model_memory (backend_root TEXT NOT NULL, model_id TEXT NOT NULL, facts TEXT NOT NULL, "
            "remembered_ns INTEGER NOT NULL, PRIMARY KEY (backend_root, model_id))",
        ),
    ),
)

Key = tuple[str, str]


class StoredMemory:
    """``ModelMemory`` over the store: read once at start, written through in the background."""

    def __init__(self, store: Store, limit: int = MAX_REMEMBERED) -> None:
        self._store = store
        self._limit = limit
        self._known = InProcessMemory(limit)
        self._unwritten: dict[Key, ModelFacts] = {}
        self._writing: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        return len(self._known)

    # -- ModelMemory -------------------------------------------------------------------------

    def recall(self, backend_root: str, model_id: str) -> ModelFacts | None:
        return self._known.recall(backend_root, model_id)

    def remember(self, backend_root: str, model_id: str, facts: ModelFacts) -> None:
        self._known.remember(backend_root, model_id, facts)
        self._unwritten[(backend_root, model_id)] = facts
        if self._writing is None:
            try:
                self._writing = asyncio.get_running_loop().create_task(self._write_soon())
            except RuntimeError:  # no loop (a blocking caller): written at the next flush
                return

    # -- storage -----------------------------------------------------------------------------

    def load(self) -> int:
        """Read every row (blocking, once, at start); how many were read."""
        rows = self._store.run_blocking(_select_all, write=False)
        for root, model_id, text in rows:
            facts = facts_from_json(text.encode())
            if facts is not None:
                self._known.remember(root, model_id, facts)
        return len(rows)

    async def _write_soon(self) -> None:
        try:
            while self._unwritten:
                batch, self._unwritten = self._unwritten, {}
                try:
                    await self._store.run(functools.partial(_upsert, batch=batch, limit=self._limit))
                except Exception as exc:  # a failed write must not fail a request: kept for the next try
                    log.warning("cannot save what was learned about models: %s", exc)
                    self._unwritten = {**batch, **self._unwritten}
                    return
        finally:
            self._writing = None

    async def drained(self) -> None:
        """Once the background write running now (if any) is over."""
        if self._writing is not None:
            await asyncio.gather(self._writing, return_exceptions=True)

    def flush(self) -> None:
        """Write what is still unwritten, now (blocking; at clean-up)."""
        batch, self._unwritten = self._unwritten, {}
        if batch:
            try:
                self._store.run_blocking(functools.partial(_upsert, batch=batch, limit=self._limit))
            except sqlite3.Error as exc:
                log.warning("cannot save what was learned about models: %s", exc)


def _select_all(connection: sqlite3.Connection) -> list[tuple[str, str, str]]:
    rows = connection.execute(
        "SELECT backend_root, model_id, facts FROM model_memory ORDER BY remembered_ns"
    ).fetchall()
    return [(str(root), str(model_id), str(facts)) for root, model_id, facts in rows]


def _upsert(connection: sqlite3.Connection, batch: dict[Key, ModelFacts], limit: int) -> None:
    now = time.time_ns()
    connection.executemany(
        "INSERT INTO model_memory (backend_root, model_id, facts, remembered_ns) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (backend_root, model_id) DO UPDATE SET facts = excluded.facts, "
        "remembered_ns = excluded.remembered_ns",
        [(root, model_id, facts_to_json(facts).decode(), now) for (root, model_id), facts in batch.items()],
    )
    connection.execute(
        "DELETE FROM model_memory WHERE rowid NOT IN "
        "(SELECT rowid FROM model_memory ORDER BY remembered_ns DESC LIMIT ?)",
        (limit,),
    )


def attach(app: web.Application, memory: StoredMemory) -> None:
    """Load ``memory`` when the app starts and write what is left at clean-up (after ``store.attach``)."""

    async def load_and_flush(_: web.Application) -> AsyncIterator[None]:
        count = await asyncio.to_thread(memory.load)
        log.debug("recalled what was learned about %d models", count)
        try:
            yield
        finally:
            await memory.drained()
            await asyncio.to_thread(memory.flush)

    app.cleanup_ctx.append(load_and_flush)
