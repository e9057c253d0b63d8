"""Test helpers that stand up upstream backends: real llama-server processes (``support.llama``),
an LM Studio emulation (``support.lmstudio``) and, on it, the always-thinking, always-tool-calling
upstream of the conformance suite (``support.scripted``); ``free_port()`` for any server on loopback."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
