"""The shim's own SQLite database (``<data_dir>/ollama-shim.db``): one ``Store`` per process.

A ``Store`` wraps one stdlib ``sqlite3`` connection in WAL mode (readers never wait for a
writer); a writer waits up to ``BUSY_TIMEOUT_MS`` for another process's write instead of failing,
so several ``--workers`` processes may write at once. Every change runs in one ``BEGIN IMMEDIATE``
transaction (``transaction()``): it is applied whole or not at all, even if the process is killed
in the middle; a read (``read``) sees one snapshot. ``run(work)`` runs a function of the connection
in a worker thread, one at a time per process, so that a busy database never holds the event loop.

The schema is made of ``Schema``s: each component (custom models, and whoever adds a table
later) names itself and lists its migrations in order; the ``schema_version`` table remembers
how many of each ran, and ``open`` runs the missing ones, each once, whichever process comes
first. A database that cannot be created, read or written, or that a newer shim wrote, is a
``StoreError`` with one line for the user when the server starts; a failure later, during a
request, is a 503 ``StoreUnavailable``.

``attach(app, data_dir, schemas)`` gives an app its store, opened by a ``cleanup_ctx`` when the app
starts and closed at clean-up; ``store_of(app)`` gives it to a handler.

May import: stdlib, aiohttp.web, ``ollama_shim.errors``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

from aiohttp import web

from .errors import ShimError

T = TypeVar("T")

DB_FILE = "ollama-shim.db"
IN_MEMORY = ":memory:"
BUSY_TIMEOUT_MS = 10_000  # how long a write waits for another process's write to finish
WRITE_RETRY_S = 0.005  # between two attempts to take the write lock

# One migration: the SQL statements it runs, in order, inside one transaction.
Migration = tuple[str, ...]


@dataclass(frozen=True)
class Schema:
    """One component's tables: its name and its migrations, oldest first (never edit a released one)."""

    component: str
    migrations: tuple[Migration, ...]


class StoreError(Exception):
    """The store cannot be used at all; the message is one line for the user."""


class StoreUnavailable(ShimError):
    """The store failed during a request (a write that waited too long, a disk error)."""

    status = 503


_VERSIONS = (
    "CREATE TABLE IF NOT EXISTS schema_version (component TEXT PRIMARY KEY, version INTEGER NOT NULL)"
)


class Store:
    """One connection, opened by ``open`` and shared by the threads of ``run`` one at a time."""

    def __init__(self, data_dir: str, schemas: Sequence[Schema]) -> None:
        self.data_dir = data_dir
        # No data directory (no HOME to put it in): the process keeps its data in memory only.
        self.path = os.path.join(data_dir, DB_FILE) if data_dir else IN_MEMORY
        self.schemas = tuple(schemas)
        self._connection: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def open(self) -> Store:
        """Create the directory and database as needed, check it, and migrate it; blocking."""
        try:
            if self.data_dir:
                os.makedirs(self.data_dir, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the data directory {self.data_dir}: {exc.strerror or exc}") from None
        try:
            self._connect_and_prepare()
        except (sqlite3.Error, StoreError) as exc:
            self.close()
            if isinstance(exc, StoreError):
                raise
            reason = " ".join(str(exc).split())  # one line, whatever SQLite's report looks like
            raise StoreError(f"cannot use the database {self.path}: {reason} (move it away to start afresh)") from None
        return self

    def _connect_and_prepare(self) -> None:
        """Connect, switch to WAL, check and migrate. Another process opening the same new database at
        the same moment can make SQLite answer "locked" at once, without waiting (the switch to WAL
        needs the file to itself): such a start is tried again until ``BUSY_TIMEOUT_MS`` is over."""
        deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
        while True:
            self._connection = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                                               check_same_thread=False)
            try:
                self._prepare()
                return
            except sqlite3.OperationalError as exc:
                self.close()
                if not _is_busy(exc) or time.monotonic() > deadline:
                    raise
            time.sleep(0.01)

    def close(self) -> None:
        with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None

    @contextlib.contextmanager
    def transaction(self, *, write: bool = True) -> Iterator[sqlite3.Connection]:
        """The connection inside one transaction, committed at the end, rolled back on any error.

        A write takes the database's write lock at once (``BEGIN IMMEDIATE``: no deadlock between
        two processes that read, then write). While another process holds it, the attempt is
        repeated for up to ``BUSY_TIMEOUT_MS`` without holding the connection, so this process's
        reads go on meanwhile. A read sees one snapshot and never waits for a writer."""
        deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
        while True:
            with self._lock:
                connection = self._connection
                if connection is None:
                    raise sqlite3.OperationalError("the store is not open")
                if _begin(connection, write=write):
                    try:
                        yield connection
                    except BaseException:
                        connection.execute("ROLLBACK")
                        raise
                    connection.execute("COMMIT")
                    return
            if time.monotonic() > deadline:
                raise sqlite3.OperationalError(f"database is locked: another process kept writing for "
                                               f"{BUSY_TIMEOUT_MS / 1000:g} s")
            time.sleep(WRITE_RETRY_S)

    def run_blocking(self, work: Callable[[sqlite3.Connection], T], *, write: bool = True) -> T:
        """``work(connection)`` in one transaction, in the calling thread."""
        with self.transaction(write=write) as connection:
            return work(connection)

    async def run(self, work: Callable[[sqlite3.Connection], T], *, write: bool = True) -> T:
        """``work(connection)`` in one transaction, in a worker thread; StoreUnavailable on failure."""
        try:
            return await asyncio.to_thread(functools.partial(self.run_blocking, work, write=write))
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"the model store {self.path} failed: {exc}") from None

    async def read(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """``run`` for work that only reads."""
        return await self.run(work, write=False)

    # -- opening -------------------------------------------------------------------------------

    def _prepare(self) -> None:
        assert self._connection is not None
        connection = self._connection
        connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        mode = connection.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal" and self.path != IN_MEMORY:  # a database in memory has no journal file
            raise sqlite3.OperationalError(f"cannot switch to WAL mode (it stays {mode!r})")
        connection.execute("PRAGMA synchronous = NORMAL")  # in WAL mode a commit survives a killed process
        check = connection.execute("PRAGMA quick_check").fetchone()[0]
        if check != "ok":
            raise sqlite3.DatabaseError(f"integrity check failed: {check}")
        with self.transaction() as connection:  # a write: proves the file is writable, every start
            connection.execute(_VERSIONS)
            for schema in self.schemas:
                _migrate(connection, schema, self.path)


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


def _begin(connection: sqlite3.Connection, *, write: bool) -> bool:
    """Begin a transaction; False when it is a write and another process holds the write lock."""
    if not write:
        connection.execute("BEGIN")
        return True
    connection.execute("PRAGMA busy_timeout = 0")  # the caller retries, without holding the connection
    try:
        connection.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as exc:
        if exc.sqlite_errorcode in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
            return False
        raise
    finally:
        connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    return True


def _migrate(connection: sqlite3.Connection, schema: Schema, path: str) -> None:
    row = connection.execute("SELECT version FROM schema_version WHERE component = ?", (schema.component,)).fetchone()
    done = int(row[0]) if row else 0
    if done > len(schema.migrations):
        raise StoreError(f"the database {path} was written by a newer ollama-shim ({schema.component} schema "
                         f"version {done}, this one knows {len(schema.migrations)})")
    for migration in schema.migrations[done:]:
        for statement in migration:
            connection.execute(statement)
    if done < len(schema.migrations):
        connection.execute(
            "INSERT INTO schema_version (component, version) VALUES (?, ?) "
            "ON CONFLICT (component) DO UPDATE SET version = excluded.version",
            (schema.component, len(schema.migrations)),
        )


STORE = web.AppKey("store", Store)


def attach(app: web.Application, data_dir: str, schemas: Sequence[Schema]) -> None:
    """Give ``app`` its store, opened (off the event loop) when the app starts, closed at clean-up."""
    store = app[STORE] = Store(data_dir, schemas)

    async def open_and_close(_: web.Application) -> AsyncIterator[None]:
        await asyncio.to_thread(store.open)
        try:
            yield
        finally:
            store.close()

    app.cleanup_ctx.append(open_and_close)


def store_of(app: web.Application) -> Store:
    return app[STORE]
