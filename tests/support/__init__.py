"""Test helpers that stand up upstream backends: real llama-server processes (``support.llama``),
an LM Studio emulation (``support.lmstudio``) and, on it, the always-thinking, always-tool-calling
upstream of the conformance suite (``support.scripted``); ``free_port()`` for any server on loopback
and ``serve_on_loopback`` for an aiohttp app of a test."""

from __future__ import annotations

import socket
from typing import Any

from aiohttp import web


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def serve_on_loopback(app: web.Application, **runner_options: Any) -> tuple[web.AppRunner, str]:
    """``app`` started on a free 127.0.0.1 port: its runner (``await runner.cleanup()`` stops it) and base URL."""
    runner = web.AppRunner(app, access_log=None, **runner_options)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    return runner, f"http://{host}:{port}"
