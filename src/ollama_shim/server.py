"""``run(settings)``: serve the app until SIGINT/SIGTERM/SIGHUP, then shut down gracefully.

``handler_cancellation=True`` makes aiohttp cancel a handler whose client went away, which is
how a non-streaming request stops its backend too. Client connections are bounded in time and
number by ``connections.ShimRunner``, and the open-file limit is raised at start. A port that
cannot be bound, or a store that cannot be used, is a one-line ``ServeError``, not a traceback.
On a signal the listening socket closes first, running requests get ``shutdown_grace`` seconds,
and streams still running then end with an error line (``routes.lifecycle``); the process then
exits 0. A worker (``supervisor`` given) also stops when its supervisor process is gone.

No backend configured: ``discovery.resolve`` looks for one before the app is built, and with none
found ``routes.no_backend`` makes every route that needs one answer how to get one.

May import: aiohttp.web, asyncio, logging, signal, stdlib, ``ollama_shim.app``, ``ollama_shim.connections``,
``ollama_shim.discovery``, ``ollama_shim.logs``, ``ollama_shim.routes.lifecycle``, ``ollama_shim.routes.no_backend``,
``ollama_shim.settings``, ``ollama_shim.store``.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
from collections.abc import Sequence

from aiohttp import web

from . import discovery
from .app import create_app
from .connections import ShimRunner, raise_open_file_limit
from .logs import configure as configure_logs
from .routes import no_backend
from .routes.lifecycle import LIFECYCLE
from .settings import Settings, is_loopback
from .store import StoreError

log = logging.getLogger("ollama_shim")


class ServeError(Exception):
    """The server could not start; the message is one line for the user."""


def cannot_listen(settings: Settings, exc: OSError) -> ServeError:
    """The one message for a port that cannot be bound, from the server and the worker supervisor."""
    reason = os.strerror(exc.errno) if exc.errno else str(exc)  # asyncio's own wording repeats the address
    return ServeError(f"cannot listen on {settings.host}:{settings.port}: {reason}")


def setup_logging(level: str, fmt: str = "text") -> None:
    """The one logging set-up of the process (a forked worker inherits it): ``logs.configure``."""
    configure_logs(level, fmt)


async def start(settings: Settings, *, reuse_port: bool = False,
                candidates: Sequence[discovery.Candidate] = discovery.WELL_KNOWN) -> web.AppRunner:
    """Bind and start serving; return the runner (``await runner.cleanup()`` stops it).

    With no backend configured, the usual local ports (``candidates``) are probed first and
    what answers is used; with none found every route that needs one answers how to get one."""
    settings, hint = await discovery.resolve(settings, candidates)
    app = create_app(settings)
    if hint is not None:
        no_backend.install(app, hint)
    runner = ShimRunner(app, settings.connections, handler_cancellation=True, access_log=None,
                        shutdown_timeout=settings.shutdown_grace)
    try:
        await runner.setup()  # opens the store: a database that cannot be used stops the start here
    except StoreError as exc:
        raise ServeError(str(exc)) from None
    site = web.TCPSite(runner, settings.host, settings.port, reuse_port=reuse_port or None)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise cannot_listen(settings, exc) from None
    backends = ", ".join(f"{b.root} ({b.kind})" for b in settings.backends) or "none"
    log.info("ollama-shim listening on http://%s:%d; backends: %s", settings.host, settings.port, backends)
    warning = exposure_warning(settings)
    if warning:
        log.warning("%s", warning)
    if not settings.data_dir:
        log.warning("no data directory (no --data-dir, XDG_DATA_HOME or HOME): custom models and what was "
                    "learned about models are kept in memory only")
    return runner


def exposure_warning(settings: Settings) -> str | None:
    """What to warn about when the listening address is reachable from other machines with no key."""
    if is_loopback(settings.host) or settings.api_key:
        return None
    return f"listening on {settings.host} with no --api-key: anyone who can reach it can use the backends"


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
SUPERVISOR_POLL = 0.5  # seconds between two checks that a worker's supervisor is still there


async def serve(settings: Settings, *, reuse_port: bool = False, supervisor: int | None = None) -> None:
    """Serve until a stop signal (or, for a worker, until its ``supervisor`` process is gone); then
    stop accepting, drain, and close (a second signal skips the grace)."""
    runner = await start(settings, reuse_port=reuse_port)
    # What exists now (modules, the app, its caches) lives as long as the process: leaving it out of
    # the collector's full passes keeps a large request's allocations from pausing every client.
    gc.freeze()
    stop, hurry = asyncio.Event(), asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, lambda: hurry.set() if stop.is_set() else stop.set())
    watch = asyncio.ensure_future(_watch_supervisor(supervisor, stop)) if supervisor is not None else None
    try:
        await stop.wait()
        await drain(runner, settings.shutdown_grace, hurry)
    finally:
        if watch is not None:
            watch.cancel()
        await runner.cleanup()


async def _watch_supervisor(supervisor: int, stop: asyncio.Event) -> None:
    """Set ``stop`` once the process that forked this one has gone (the kernel re-parents us)."""
    while True:  # a poll: no event tells a process that its parent died
        await asyncio.sleep(SUPERVISOR_POLL)
        if os.getppid() != supervisor:
            break
    log.warning("the supervisor (pid %d) is gone; worker %d stops", supervisor, os.getpid())
    stop.set()


async def drain(runner: web.AppRunner, grace: float, hurry: asyncio.Event | None = None) -> None:
    """Stop accepting connections, let running requests finish for ``grace`` s, then end the rest."""
    for site in list(runner.sites):
        await site.stop()
    lifecycle = runner.app[LIFECYCLE]
    log.info("shutting down: %d request(s) running, waiting up to %g s", lifecycle.running, grace)
    aborted = await lifecycle.drain(grace, hurry)
    if aborted:
        log.warning("shutting down: ended %d request(s) still running after the grace period", aborted)


def run(settings: Settings, *, reuse_port: bool = False, supervisor: int | None = None) -> None:
    setup_logging(settings.log_level, settings.log_format)
    files = raise_open_file_limit()
    if settings.connections.max_connections and files < settings.connections.max_connections + 64:
        log.warning("the open-file limit (%d) is below --max-connections (%d): connections may fail before "
                    "the cap is reached", files, settings.connections.max_connections)
    asyncio.run(serve(settings, reuse_port=reuse_port, supervisor=supervisor))
