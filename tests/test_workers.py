"""``--workers 2``: two processes answer on one port, and SIGTERM to the parent stops them all.

Which worker holds a connection is read from /proc: the socket inodes of each worker's open
files against the established connections to the shim's port in ``/proc/net/tcp``.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from support import free_port

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")

CONNECTIONS = 24  # all on one worker by chance: 2 * 2**-24


async def _upstream() -> tuple[web.AppRunner, int]:
    async def models(_: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "m", "object": "model", "owned_by": "x"}]})

    app = web.Application()
    app.router.add_get("/v1/models", models)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, port


def _children(parent: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == parent:
                found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def _established_inodes(port: int) -> set[str]:
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].split(":")[1], 16) == port and fields[3] == "01":  # local port, ESTABLISHED
            inodes.add(fields[9])
    return inodes


def _socket_inodes(pid: int) -> set[str]:
    out = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            out.add(target[8:-1])
    return out


async def _wait_ready(url: str, proc: asyncio.subprocess.Process) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(200):
            assert proc.returncode is None, "the shim exited"
            try:
                async with session.get(url) as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
    raise AssertionError("the shim did not answer")


async def test_two_workers_answer_and_stop_on_sigterm() -> None:
    upstream, up_port = await _upstream()
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ollama_shim", "--workers", "2", "--backend", f"http://127.0.0.1:{up_port}",
        "--backend-kind", "generic", "--listen", f"127.0.0.1:{port}", "--log-level", "warning",
    )
    sessions = [aiohttp.ClientSession() for _ in range(CONNECTIONS)]
    try:
        await _wait_ready(f"http://127.0.0.1:{port}/", proc)
        await asyncio.sleep(0.3)  # both workers bound
        workers = _children(proc.pid)
        assert len(workers) == 2
        for session in sessions:  # each keeps its connection open after the answer
            async with session.get(f"http://127.0.0.1:{port}/api/tags") as resp:
                assert resp.status == 200
                assert (await resp.json())["models"][0]["name"] == "m:latest"
        established = _established_inodes(port)
        held = [len(_socket_inodes(pid) & established) for pid in workers]
        assert sum(held) == CONNECTIONS
        assert all(held), f"connections per worker: {held}"

        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 15) == 0
        assert not any(map(_alive, workers))
    finally:
        for session in sessions:
            await session.close()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await upstream.cleanup()


async def test_workers_refuse_a_port_in_use() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "ollama_shim", "--workers", "2", "--listen", f"127.0.0.1:{port}",
            stderr=asyncio.subprocess.PIPE,
        )
        _, err = await asyncio.wait_for(proc.communicate(), 15)
    assert proc.returncode == 2
    assert b"cannot listen" in err
