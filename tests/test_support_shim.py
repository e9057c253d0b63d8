"""The test harness's own shim start (``support.shim``): a port taken between ``free_port`` and the
bind is not a failed test; another port is tried."""

from __future__ import annotations

import socket

import aiohttp
import pytest

from support import free_port
from support import shim as shim_support


async def test_a_port_taken_meanwhile_is_replaced(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        ports = iter([busy, free_port()])
        monkeypatch.setattr(shim_support, "free_port", lambda: next(ports))
        async with shim_support.shim_in_loop("--backend", "http://127.0.0.1:9") as url, \
                aiohttp.ClientSession() as session, session.get(url + "/api/version") as resp:
            assert resp.status == 200
        assert not url.endswith(f":{busy}")
