"""Run the real shim on a free loopback port for a test.

``shim_in_loop(*argv)`` starts it in the running event loop (for async tests that also run an
in-process upstream such as the LM Studio emulation, driven with ``ollama.AsyncClient``).
``ShimThread(*argv)`` runs it in a thread with its own loop, for sync tests that use the
official blocking ``ollama.Client``. Both take the same arguments as the ``ollama-shim`` command;
the environment is never read. Without ``--data-dir`` each shim gets a temporary directory of its own
under the test session's (``SESSION_DATA_DIR``), never the user's own.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import shutil
import tempfile
import threading
from collections.abc import AsyncIterator

from aiohttp import web

from ollama_shim.server import ServeError, start
from ollama_shim.settings import Settings, load_settings

from . import free_port

SESSION_DATA_DIR = tempfile.mkdtemp(prefix="ollama-shim-tests-")
atexit.register(shutil.rmtree, SESSION_DATA_DIR, ignore_errors=True)


def shim_settings(*argv: str) -> Settings:
    # A data directory of its own for every shim (under the session's), so that custom models one
    # test creates never show in another test's catalog.
    data_dir = () if "--data-dir" in argv else ("--data-dir", tempfile.mkdtemp(dir=SESSION_DATA_DIR))
    return load_settings(["--listen", f"127.0.0.1:{free_port()}", *data_dir, *argv], {})


def url_of(settings: Settings) -> str:
    return f"http://{settings.host}:{settings.port}"


BIND_TRIES = 5


async def started(*argv: str) -> tuple[Settings, web.AppRunner]:
    """A shim started on a free port; another port when the one picked was taken meanwhile (the
    port is free when ``free_port`` looks, and another process may bind it before the shim does)."""
    for attempt in range(BIND_TRIES):
        settings = shim_settings(*argv)
        try:
            return settings, await start(settings)
        except ServeError as exc:
            if "cannot listen" not in str(exc) or attempt == BIND_TRIES - 1:
                raise
    raise AssertionError("unreachable")


@contextlib.asynccontextmanager
async def shim_in_loop(*argv: str) -> AsyncIterator[str]:
    settings, runner = await started(*argv)
    try:
        yield url_of(settings)
    finally:
        await runner.cleanup()


class ShimThread:
    """``with ShimThread("--backend", url) as base_url: ...``"""

    def __init__(self, *argv: str) -> None:
        self._argv = argv
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="shim", daemon=True)

    def __enter__(self) -> str:
        self._thread.start()
        self.settings, self._runner = asyncio.run_coroutine_threadsafe(started(*self._argv), self._loop).result(60)
        self.url = url_of(self.settings)
        return self.url

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
