"""Client connections are bounded: head, body and keep-alive timeouts, a cap on open connections,
malformed requests answered 400 without echoing their bytes, and a slowloris that cannot lock out
a new client. Raw sockets on 127.0.0.1 only; every wait has a deadline."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import resource
import subprocess
import sys
import time
from collections.abc import AsyncIterator

import pytest

from ollama_shim.server import start
from support import free_port
from support.shim import shim_settings

DEAD_BACKEND = "http://127.0.0.1:9"
GET_ROOT = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


@contextlib.asynccontextmanager
async def shim(*argv: str) -> AsyncIterator[int]:
    settings = shim_settings("--backend", DEAD_BACKEND, "--backend-kind", "generic", *argv)
    runner = await start(settings)
    try:
        yield settings.port
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def connection(port: int) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        yield reader, writer
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def read_to_eof(reader: asyncio.StreamReader, deadline: float = 10) -> bytes:
    """Everything the server sends until it closes the connection, which must happen in time."""
    async with asyncio.timeout(deadline):
        try:
            return await reader.read()
        except ConnectionResetError:
            return b""


async def read_answer(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One HTTP answer with a Content-Length: (status, body); the connection may stay open."""
    async with asyncio.timeout(10):
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        fields = (line.partition(": ") for line in lines[1:])
        length = next(int(v) for k, _, v in fields if k.lower() == "content-length")
        return int(lines[0].split()[1]), await reader.readexactly(length)


def status_and_json(raw: bytes) -> tuple[int, dict[str, object]]:
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


# -- head ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sent",
    [b"", b"GET / HTTP/1.1\r\n", b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: a"],
    ids=["nothing", "request-line", "half-a-header"],
)
async def test_an_unfinished_head_is_answered_408_and_closed(sent: bytes) -> None:
    async with shim("--head-timeout", "0.3") as port, connection(port) as (reader, writer):
        writer.write(sent)
        status, body = status_and_json(await read_to_eof(reader))
    assert status == 408
    assert body == {"error": "the request headers took too long to arrive"}


async def test_the_head_clock_is_not_reset_by_each_header_line() -> None:
    async with shim("--head-timeout", "1") as port, connection(port) as (reader, writer):
        writer.write(b"GET / HTTP/1.1\r\n")
        started = time.monotonic()

        async def drip() -> None:
            for i in range(100):  # a header line every 0.2 s: the head would never end
                await asyncio.sleep(0.2)
                writer.write(f"X-Drip-{i}: a\r\n".encode())

        dripping = asyncio.ensure_future(drip())
        try:
            raw = await read_to_eof(reader, deadline=15)
        finally:
            dripping.cancel()
    assert raw.startswith(b"HTTP/1.1 408")
    assert time.monotonic() - started < 15


async def test_the_next_request_on_a_kept_alive_connection_has_its_own_head_clock() -> None:
    async with shim("--head-timeout", "0.5", "--keepalive-timeout", "60") as port, \
            connection(port) as (reader, writer):
        for _ in range(3):  # answers spaced over longer than one head timeout: each head is fresh
            writer.write(GET_ROOT)
            assert (await read_answer(reader))[0] == 200
            await asyncio.sleep(0.3)
        writer.write(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        raw = await read_to_eof(reader)
    assert raw.startswith(b"HTTP/1.1 408")


# -- body and keep-alive -------------------------------------------------------------------------


async def test_a_paused_body_is_answered_408() -> None:
    async with shim("--body-timeout", "0.3") as port, connection(port) as (reader, writer):
        writer.write(b"POST /api/show HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\n{\"model\"")
        status, body = status_and_json(await read_to_eof(reader))
    assert status == 408
    assert body == {"error": "the request body paused for more than 0.3 s"}


async def test_a_slow_but_steady_body_is_read() -> None:
    body = b'{"model": "m", "padding": "' + b"x" * 20 + b'"}'
    async with shim("--body-timeout", "1") as port, connection(port) as (reader, writer):
        writer.write(b"POST /api/show HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: %d\r\n\r\n" % len(body))
        for i in range(0, len(body), 8):  # 0.2 s apart, 1 s allowed between pieces
            writer.write(body[i:i + 8])
            await asyncio.sleep(0.2)
        status, answer = await read_answer(reader)
    assert status == 502  # the body was read whole: the (dead) backend was asked
    assert b"127.0.0.1:9" in answer


async def test_an_idle_kept_alive_connection_is_closed() -> None:
    async with shim("--keepalive-timeout", "0.3") as port, connection(port) as (reader, writer):
        writer.write(GET_ROOT)
        assert await read_answer(reader) == (200, b"Ollama is running")
        assert await read_to_eof(reader) == b""


# -- the cap -------------------------------------------------------------------------------------


async def test_connections_beyond_the_cap_are_refused_and_the_others_keep_working(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="ollama_shim")
    async with shim("--max-connections", "3") as port, contextlib.AsyncExitStack() as stack:
        held = [await stack.enter_async_context(connection(port)) for _ in range(3)]
        for reader, writer in held:  # each answered once, so the server surely counts it
            writer.write(GET_ROOT)
            assert (await read_answer(reader))[0] == 200
        refused = []
        for _ in range(3):
            async with connection(port) as (reader, _writer):
                refused.append(status_and_json(await read_to_eof(reader)))
        reader, writer = held[0]
        writer.write(GET_ROOT)
        still_working = await read_answer(reader)
    assert refused == [(503, {"error": "too many connections to ollama-shim; try again later"})] * 3
    assert still_working == (200, b"Ollama is running")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "--max-connections" in warnings[0]


async def test_a_freed_place_is_given_to_a_new_connection() -> None:
    async with shim("--max-connections", "1") as port:
        async with connection(port) as (reader, writer):
            writer.write(GET_ROOT)
            assert (await read_answer(reader))[0] == 200
        async with asyncio.timeout(10):
            while True:  # the closed one is forgotten once its handler has finished
                async with connection(port) as (reader, writer):
                    writer.write(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                    raw = await read_to_eof(reader)
                if raw.startswith(b"HTTP/1.1 200"):
                    break
                await asyncio.sleep(0.05)


# -- malformed requests --------------------------------------------------------------------------

SECRET = "sk-SECRET-4242"
MALFORMED = [
    (b"GET /api/tags HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer " + SECRET.encode() + b"\x01\r\n\r\n",
     "stray-byte-in-key"),
    (b"GET /api/tags HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Key: " + SECRET.encode() * 1000 + b"\r\n\r\n", "oversize-header"),
    (b"GET /api/tags HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"".join(b"X-%d: %s\r\n" % (i, SECRET.encode())
                                                              for i in range(200)) + b"\r\n", "too-many-headers"),
    (b"GET /api/tags HTTP/1.1\r\nHost: 127.0.0.1\r\nX-" + SECRET.encode() + b"\x7f: 1\r\n\r\n", "bad-header-name"),
    (b"GET /" + SECRET.encode() * 2000 + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", "oversize-request-line"),
    (b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1\r\nContent-Length: 2" + SECRET.encode() + b"\r\n\r\n",
     "bad-content-length"),
]


@pytest.mark.parametrize("request_bytes", [m[0] for m in MALFORMED], ids=[m[1] for m in MALFORMED])
async def test_malformed_requests_get_400_json_and_one_quiet_log_line(
        caplog: pytest.LogCaptureFixture, request_bytes: bytes) -> None:
    caplog.set_level(logging.DEBUG)
    async with shim() as port, connection(port) as (reader, writer):
        writer.write(request_bytes)
        raw = await read_to_eof(reader)
    status, body = status_and_json(raw)
    assert status == 400
    assert str(body["error"]).startswith("malformed request: ")
    assert SECRET not in raw.decode("latin-1")
    logged = [r for r in caplog.records if r.levelno >= logging.INFO and "malformed" in r.getMessage()]
    assert len(logged) == 1
    assert logged[0].exc_info is None
    noisy = [r for r in caplog.records if r.exc_info is not None or r.levelno >= logging.WARNING]
    assert noisy == []
    assert all(SECRET not in r.getMessage() for r in caplog.records)


# -- slowloris -----------------------------------------------------------------------------------

SLOWLORIS = 1_100
LOW_SOFT_LIMIT = 1024  # a common default, below the slowloris count


def _low_soft_limit() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (LOW_SOFT_LIMIT, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))


@pytest.fixture
def enough_files() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 3 * SLOWLORIS:
        pytest.skip(f"the hard open-file limit {hard} is too low for {SLOWLORIS} connections on each side")
    wanted = 3 * SLOWLORIS if soft == resource.RLIM_INFINITY else max(soft, 3 * SLOWLORIS)
    resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


async def _wait_ready(port: int, proc: asyncio.subprocess.Process) -> None:
    async with asyncio.timeout(20):
        while proc.returncode is None:
            with contextlib.suppress(OSError):
                async with connection(port) as (reader, writer):
                    writer.write(GET_ROOT)
                    if (await read_answer(reader))[0] == 200:
                        return
            await asyncio.sleep(0.05)
    raise AssertionError("the shim exited")


@pytest.mark.usefixtures("enough_files")
async def test_a_slowloris_does_not_lock_out_a_new_client() -> None:
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ollama_shim", "--listen", f"127.0.0.1:{port}", "--backend", DEAD_BACKEND,
        "--head-timeout", "8", "--log-level", "warning",
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, preexec_fn=_low_soft_limit,
    )
    slow: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    try:
        await _wait_ready(port, proc)
        for _ in range(SLOWLORIS // 100):
            slow += await asyncio.gather(*(asyncio.open_connection("127.0.0.1", port) for _ in range(100)))
        for _, writer in slow:
            writer.write(b"POST /api/chat HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        async with connection(port) as (reader, writer):
            writer.write(b"GET /api/version HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            status, body = await read_answer(reader)
        still_open = sum(not r.at_eof() for r, _ in slow)
        async with asyncio.timeout(30):  # and the slowloris is dropped by the head timeout
            await asyncio.gather(*(r.read() for r, _ in slow), return_exceptions=True)
    finally:
        for _, writer in slow:
            writer.close()
        if proc.returncode is None:
            proc.terminate()
        _, log = await asyncio.wait_for(proc.communicate(), 30)
    assert status == 200
    assert json.loads(body)["version"]
    assert still_open == SLOWLORIS  # answered while every slow connection was still held
    assert proc.returncode == 0, log
    assert b"Traceback" not in log
