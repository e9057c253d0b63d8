"""``run_workers(settings)``: serve with ``settings.workers`` processes that share one port.

The parent checks that the port is free, then forks one worker per ``--workers``; each binds the
port with ``SO_REUSEPORT`` and serves as a single shim would, so the kernel spreads connections
between them. The parent only supervises: it forwards SIGTERM/SIGINT to every worker and waits.
When the workers exit after a signal, it exits with 0. When one stops on its own (it crashed or
could not bind), the parent stops the others and exits with that worker's status, so whatever
started the shim sees it fail instead of running short of a worker.

Linux spreads connections across ``SO_REUSEPORT`` sockets; other systems may not.

May import: contextlib, os, signal, socket, sys, logging, ``ollama_shim.server``, ``ollama_shim.settings``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import sys

from .server import ServeError, cannot_listen, run, setup_logging
from .settings import Settings

log = logging.getLogger("ollama_shim")


def check_port_free(settings: Settings) -> None:
    """ServeError when something else holds the port (SO_REUSEPORT would otherwise share it)."""
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server does: TIME_WAIT is fine
            sock.bind((settings.host, settings.port))
    except OSError as exc:
        raise cannot_listen(settings, exc) from None


def _worker(settings: Settings) -> int:
    """The body of a forked worker; returns its exit status."""
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_DFL)
    try:
        run(settings, reuse_port=True)
    except ServeError as exc:
        print(f"ollama-shim: error: {exc}", file=sys.stderr)
        return 2
    except BaseException:
        log.exception("worker %d failed", os.getpid())
        return 1
    return 0


def _fork(settings: Settings) -> int:
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            code = _worker(settings)
        finally:
            os._exit(code)
    return pid


def _signal_all(pids: set[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def run_workers(settings: Settings) -> int:
    """Start the workers, supervise them, return the exit status for the command."""
    setup_logging(settings.log_level)
    check_port_free(settings)
    sys.stdout.flush()
    sys.stderr.flush()
    stopping = False

    def forward(sig: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        _signal_all(running, sig)

    running: set[int] = set()
    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        running.update(_fork(settings) for _ in range(settings.workers))
        log.info("ollama-shim supervising %d workers: %s", len(running), ", ".join(map(str, sorted(running))))
        status = 0
        while running:
            pid, raw = os.wait()
            running.discard(pid)
            code = os.waitstatus_to_exitcode(raw)
            if not stopping and status == 0:
                log.error("worker %d stopped (status %d); stopping the others", pid, code)
                status = code if code > 0 else 1
                stopping = True
                _signal_all(running, signal.SIGTERM)
        return status
    finally:
        _signal_all(running, signal.SIGKILL)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
