"""``--workers 2``: two processes answer on one port; SIGTERM or SIGHUP to the parent stops them all,
and so does the parent's death, SIGKILL included, so that a restart can bind the port.

Which worker holds a connection is read from /proc: the socket inodes of each worker's open
files against the established connections to the shim's port in ``/proc/net/tcp``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Callable
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


def _inodes(port: int, state: str) -> set[str]:
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].split(":")[1], 16) == port and fields[3] == state:  # local port, TCP state
            inodes.add(fields[9])
    return inodes


def _established_inodes(port: int) -> set[str]:
    return _inodes(port, "01")


def _listening_workers(parent: int, port: int) -> list[int]:
    """The children of ``parent`` that hold a listening socket on ``port``."""
    listening = _inodes(port, "0A")
    return [pid for pid in _children(parent) if _socket_inodes(pid) & listening]


async def _until(check: Callable[[], bool], what: str, deadline: float = 15) -> None:
    try:
        async with asyncio.timeout(deadline):  # a poll: /proc sends no events
            while True:
                if check():
                    return
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"not within {deadline} s: {what}") from None


@contextlib.asynccontextmanager
async def _shim_workers(up_port: int, port: int) -> AsyncIterator[tuple[asyncio.subprocess.Process, list[int]]]:
    """A started ``--workers 2`` shim whose two workers both listen; yields the process and the workers."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ollama_shim", "--workers", "2", "--backend", f"http://127.0.0.1:{up_port}",
        "--backend-kind", "generic", "--listen", f"127.0.0.1:{port}", "--log-level", "warning",
    )
    try:
        await _wait_ready(f"http://127.0.0.1:{port}/", proc)
        await _until(lambda: len(_listening_workers(proc.pid, port)) == 2, "both workers listen")
        yield proc, _children(proc.pid)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


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
    async with asyncio.timeout(20), aiohttp.ClientSession() as session:
        while True:
            assert proc.returncode is None, "the shim exited"
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(url) as resp:
                    if resp.status == 200:
                        return
            await asyncio.sleep(0.05)


async def test_two_workers_answer_and_stop_on_sigterm() -> None:
    upstream, up_port = await _upstream()
    port = free_port()
    sessions = [aiohttp.ClientSession() for _ in range(CONNECTIONS)]
    try:
        async with _shim_workers(up_port, port) as (proc, workers):
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
        await upstream.cleanup()


async def test_sighup_stops_the_workers_like_sigterm() -> None:
    upstream, up_port = await _upstream()
    try:
        async with _shim_workers(up_port, free_port()) as (proc, workers):
            proc.send_signal(signal.SIGHUP)
            assert await asyncio.wait_for(proc.wait(), 15) == 0
            assert not any(map(_alive, workers))
    finally:
        await upstream.cleanup()


async def test_workers_stop_when_the_supervisor_is_killed_and_a_restart_binds() -> None:
    upstream, up_port = await _upstream()
    port = free_port()
    try:
        async with _shim_workers(up_port, port) as (proc, workers):
            proc.kill()  # SIGKILL: the supervisor cannot forward anything
            await proc.wait()
            await _until(lambda: not any(map(_alive, workers)), "the orphaned workers exited")
        restart = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "ollama_shim", "--workers", "2", "--backend", f"http://127.0.0.1:{up_port}",
            "--listen", f"127.0.0.1:{port}", "--log-level", "warning", stderr=asyncio.subprocess.PIPE,
        )
        try:
            await _wait_ready(f"http://127.0.0.1:{port}/", restart)
        finally:
            restart.send_signal(signal.SIGTERM)
            _, err = await asyncio.wait_for(restart.communicate(), 15)
        assert restart.returncode == 0, err
    finally:
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
