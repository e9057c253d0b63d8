"""Graceful shutdown of the real process: ``python -m ollama_shim`` in front of a slow fault upstream.

On SIGTERM, SIGINT or SIGHUP the shim stops accepting connections, lets running requests finish within
``--shutdown-grace``, then ends the ones still running: a stream with a last
``{"error": "ollama-shim is shutting down"}`` line, a request that sent nothing with 503 and the
same message. It exits 0 either way, and the backend is not left generating.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
from collections.abc import AsyncIterator

import aiohttp
import pytest

from support import free_port
from support.faults import MODEL, Fault, FaultUpstream

HI = [{"role": "user", "content": "hi"}]
SHUTTING_DOWN = {"error": "ollama-shim is shutting down"}


@contextlib.asynccontextmanager
async def shim_process(upstream: FaultUpstream, grace: float) -> AsyncIterator[tuple[asyncio.subprocess.Process, str]]:
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ollama_shim", "--listen", f"127.0.0.1:{port}", "--backend", upstream.url,
        "--backend-kind", "generic", "--shutdown-grace", str(grace), "--first-byte-timeout", "60",
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        await _wait_ready(url, proc)
        yield proc, url
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def client() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))  # a failure is an error, not a hang


async def _wait_ready(url: str, proc: asyncio.subprocess.Process) -> None:
    async with asyncio.timeout(20), aiohttp.ClientSession() as session:
        while proc.returncode is None:
            with contextlib.suppress(aiohttp.ClientConnectionError):
                async with session.get(url + "/") as resp:
                    if resp.status == 200:
                        return
            await asyncio.sleep(0.05)
    raise AssertionError(f"shim exited early: {await proc.stderr.read()}")  # type: ignore[union-attr]


async def _exit_code(proc: asyncio.subprocess.Process) -> tuple[int, str]:
    async with asyncio.timeout(20):
        log = (await proc.stderr.read()).decode()  # type: ignore[union-attr]
        return await proc.wait(), log


async def _refuses_connections(url: str) -> bool:
    async with asyncio.timeout(5):
        while True:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", int(url.rsplit(":", 1)[1]))
            except (ConnectionRefusedError, ConnectionResetError):  # a reset: caught while the listener closed
                return True
            writer.close()
            await asyncio.sleep(0.02)


async def _calls_reach(upstream: FaultUpstream, n: int) -> None:
    async with asyncio.timeout(10):
        for _ in iter(int, 1):  # until the backend has seen n requests
            if len(upstream.calls) >= n:
                return
            await asyncio.sleep(0.01)


async def _lines(resp: aiohttp.ClientResponse) -> list[dict]:
    return [json.loads(line) for line in (await resp.read()).splitlines() if line.strip()]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP], ids=["SIGTERM", "SIGINT", "SIGHUP"])
async def test_running_requests_finish_within_the_grace(upstream: FaultUpstream, sig: int) -> None:
    upstream.script(Fault(delay=0.1, words=8), Fault(delay=0.1, words=8))  # ~0.8 s each, grace 10 s
    async with shim_process(upstream, grace=10) as (proc, url), client() as session:
        streamed = await session.post(url + "/api/chat", json={"model": MODEL, "messages": HI})
        first = json.loads(await streamed.content.readline())
        whole = asyncio.ensure_future(session.post(url + "/api/chat", json={"model": MODEL, "messages": HI,
                                                                             "stream": False}))
        await _calls_reach(upstream, 2)
        proc.send_signal(sig)
        assert await _refuses_connections(url)  # stopped accepting at once
        rest = await _lines(streamed)
        answer = await whole
        assert answer.status == 200
        assert (await answer.json())["message"]["content"].startswith("one two")
        code, log = await _exit_code(proc)
    assert first["message"]["content"] == "one "
    assert rest[-1]["done"] is True
    assert "error" not in rest[-1]
    words = "".join(line["message"]["content"] for line in [first, *rest]).split()
    assert words == ["one", "two", "three", "four", "five", "six", "seven", "eight"]
    assert code == 0, log
    assert all(c.completed for c in upstream.calls)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_requests_past_the_grace_end_with_an_error(upstream: FaultUpstream, sig: int) -> None:
    upstream.script(Fault(delay=0.05, words=100_000), Fault("hang_headers"))
    async with shim_process(upstream, grace=1) as (proc, url), client() as session:
        streamed = await session.post(url + "/api/chat", json={"model": MODEL, "messages": HI})
        assert json.loads(await streamed.content.readline())["message"]["content"] == "one "
        pending = asyncio.ensure_future(session.post(url + "/api/chat", json={"model": MODEL, "messages": HI,
                                                                               "stream": False}))
        await _calls_reach(upstream, 2)
        proc.send_signal(sig)
        lines = await _lines(streamed)
        silent = await pending
        silent_body = await silent.json()
        code, log = await _exit_code(proc)
    assert streamed.status == 200
    assert len(lines) > 1
    assert lines[-1] == SHUTTING_DOWN
    assert not any(line.get("done") for line in lines)
    assert silent.status == 503
    assert silent_body == SHUTTING_DOWN
    assert code == 0, log
    assert "ended 2 request(s) still running after the grace period" in log
    for c in upstream.calls:  # the backend was hung up on, not left generating
        await asyncio.wait_for(c.closed.wait(), 5)


async def test_kept_alive_connection_gets_503_while_draining(upstream: FaultUpstream) -> None:
    upstream.script(Fault(delay=0.05, words=100_000))
    async with shim_process(upstream, grace=30) as (proc, url), client() as session:
        port = int(url.rsplit(":", 1)[1])
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        request = f"GET /api/version HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
        writer.write(request)
        assert (await reader.readline()).startswith(b"HTTP/1.1 200")
        await reader.readuntil(b"}")  # the small JSON body; the connection stays open
        streamed = await session.post(url + "/api/chat", json={"model": MODEL, "messages": HI})
        await streamed.content.readline()
        proc.send_signal(signal.SIGTERM)
        assert await _refuses_connections(url)
        writer.write(request)  # a new request on the old connection, during the grace period
        assert (await reader.readline()).startswith(b"HTTP/1.1 503")
        body = await reader.readuntil(b"}")
        assert body.endswith(json.dumps(SHUTTING_DOWN, separators=(",", ":")).encode())
        writer.close()
        proc.send_signal(signal.SIGTERM)  # a second signal: no more waiting for the grace period
        lines = await _lines(streamed)
        code, log = await _exit_code(proc)
    assert lines[-1] == SHUTTING_DOWN
    assert code == 0, log
