"""``run_workers(settings)``: serve with ``settings.workers`` processes that share one port.

The parent checks that the port is free, then forks one worker per ``--workers``; each binds the
port with ``SO_REUSEPORT`` and serves as a single shim would, so the kernel spreads connections
between them. The parent only supervises: on SIGTERM, SIGINT or SIGHUP it sends SIGTERM (SIGINT
for SIGINT) to every worker and waits. A worker whose supervisor dies, even by SIGKILL, stops as
on SIGTERM so that a restart can bind the port: on Linux the kernel tells it (``PR_SET_PDEATHSIG``),
elsewhere it notices within a second (``server.serve`` watches ``getppid()``).
Metrics: before forking, the parent makes a fresh directory and names it in
``PROMETHEUS_MULTIPROC_DIR``, where every worker writes its series (``metrics``); a worker that
exits is marked dead there, and the directory is removed when the parent exits.
When the workers exit after a signal, it exits with 0. When one stops on its own (it crashed or
could not bind), the parent stops the others and exits with that worker's status, so whatever
started the shim sees it fail instead of running short of a worker.

Linux spreads connections across ``SO_REUSEPORT`` sockets; other systems may not.

May import: contextlib, ctypes, os, shutil, signal, socket, sys, tempfile, logging, ``ollama_shim.server``,
``ollama_shim.settings``, ``ollama_shim.metrics``.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile

from .metrics import MULTIPROC_ENV, forget_worker
from .server import STOP_SIGNALS, ServeError, cannot_listen, run, setup_logging
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


PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _die_with(supervisor: int) -> None:
    """Ask Linux to send this process SIGTERM when its parent dies; elsewhere ``serve`` polls."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != supervisor:  # it died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)


def _worker(settings: Settings, supervisor: int) -> int:
    """The body of a forked worker; returns its exit status."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_DFL)
    _die_with(supervisor)
    try:
        run(settings, reuse_port=True, supervisor=supervisor)
    except ServeError as exc:
        print(f"ollama-shim: error: {exc}", file=sys.stderr)
        return 2
    except BaseException:
        log.exception("worker %d failed", os.getpid())
        return 1
    return 0


def _fork(settings: Settings) -> int:
    supervisor = os.getpid()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            code = _worker(settings, supervisor)
        finally:
            os._exit(code)
    return pid


def _signal_all(pids: set[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def run_workers(settings: Settings) -> int:
    """Start the workers, supervise them, return the exit status for the command."""
    setup_logging(settings.log_level, settings.log_format)
    check_port_free(settings)
    metrics_dir = tempfile.mkdtemp(prefix="ollama-shim-metrics-")
    os.environ[MULTIPROC_ENV] = metrics_dir  # read by each worker's metrics (prometheus_client's multiprocess mode)
    sys.stdout.flush()
    sys.stderr.flush()
    stopping = False

    def forward(sig: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        _signal_all(running, signal.SIGINT if sig == signal.SIGINT else signal.SIGTERM)

    running: set[int] = set()
    previous = {sig: signal.signal(sig, forward) for sig in STOP_SIGNALS}
    try:
        running.update(_fork(settings) for _ in range(settings.workers))
        log.info("ollama-shim supervising %d workers: %s", len(running), ", ".join(map(str, sorted(running))))
        status = 0
        while running:
            pid, raw = os.wait()
            running.discard(pid)
            forget_worker(pid, metrics_dir)
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
        os.environ.pop(MULTIPROC_ENV, None)
        shutil.rmtree(metrics_dir, ignore_errors=True)
