"""The upstream client's less travelled paths: error bodies of every shape, event-stream sniffing,
bodies that cannot be inflated, large request bodies, and answers in a form the shim did not ask for."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import io
import json
import zlib
from collections.abc import AsyncIterator, Callable

import aiohttp
import pytest
from aiohttp import web

from ollama_shim.errors import UpstreamProtocol
from ollama_shim.settings import Backend, Timeouts
from ollama_shim.upstream import Upstream, _inflate, _sse_start, error_message
from ollama_shim.wire.openai import ChatCompletion
from support import free_port
from support.faults import MODEL
from support.shim import shim_in_loop

HI = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"error": {"message": "model is busy", "type": "server_error"}}', "model is busy"),
        (b'{"error": "Model not loaded"}', "Model not loaded"),  # a bare string (LM Studio)
        (b'{"object": "error", "message": "flat message"}', "flat message"),  # vLLM's older shape
        (b'{"detail": "Not Found"}', "Not Found"),  # FastAPI
        (b'{"error": {"type": "x"}}', '{"error": {"type": "x"}}'),  # nothing readable: the body itself
        (b"<html>bad gateway</html>", "<html>bad gateway</html>"),
        (b'{"error": "key sk-123 is invalid"}', "key *** is invalid"),
    ],
)
def test_error_message_reads_every_shape_and_redacts(body: bytes, expected: str) -> None:
    assert error_message(body, ["sk-123"]) == expected


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b"data: {}", True),
        (b"\xef\xbb\xbf\r\nevent: x", True),
        (b": ping", True),
        (b"da", None),  # too few bytes to tell
        (b"", None),
        (b"<html>", False),
        (b'{"choices": []}', False),
    ],
)
def test_sse_start_tells_an_event_stream_by_its_first_bytes(head: bytes, expected: bool | None) -> None:
    assert _sse_start(head) is expected


@pytest.mark.parametrize(
    ("body", "coding", "expected"),
    [
        (gzip.compress(b"hello"), "gzip", b"hello"),
        (zlib.compress(b"hello"), "deflate", b"hello"),
        (zlib.compress(b"hello")[2:-4], "deflate", b"hello"),  # raw deflate, as some servers send it
        (b"not compressed at all", "gzip", None),
        (b"not compressed at all", "deflate", None),
    ],
)
def test_inflate(body: bytes, coding: str, expected: bytes | None) -> None:
    assert _inflate(body, coding, 1000) == expected


COMPLETION = {"choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}]}


async def test_a_request_body_over_a_mebibyte_reaches_the_backend_whole() -> None:
    text = "x" * (3 * 1024 * 1024)
    received: list[bytes] = []
    async with _odd_backend(web.json_response(COMPLETION), received) as root, \
            shim_in_loop("--backend", root, "--backend-kind", "generic") as url, aiohttp.ClientSession() as session:
        body = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": text}], "stream": False})
        async with session.post(url + "/api/chat", data=io.BytesIO(body.encode())) as resp:
            assert resp.status == 200
    assert json.loads(received[-1])["messages"][-1]["content"] == text


@contextlib.asynccontextmanager
async def _odd_backend(answer: web.Response, received: list[bytes] | None = None) -> AsyncIterator[str]:
    """A backend whose every chat answer is ``answer``; the request bodies go to ``received``."""
    async def models(_: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": MODEL, "object": "model"}]})

    async def chat(request: web.Request) -> web.Response:
        if received is not None:
            received.append(await request.read())
        return answer

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_get("/v1/models", models)
    app.router.add_post("/v1/chat/completions", chat)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@pytest.mark.parametrize(
    ("answer", "stream", "error"),
    [
        (lambda: web.Response(body=gzip.compress(b'{"choices": []}'),
                              headers={"Content-Type": "application/json", "Content-Encoding": "gzip"}),
         False, "sent a gzip-encoded answer, not identity"),
        (lambda: web.json_response({"error": {"message": "out of memory"}}),
         True, "answered a streamed request with application/json, not an event stream: out of memory"),
    ],
    ids=["encoded-though-identity-was-asked", "json-error-to-a-stream"],
)
async def test_answers_in_a_form_not_asked_for_are_502(
    answer: Callable[[], web.Response], stream: bool, error: str
) -> None:
    async with _odd_backend(answer()) as root, shim_in_loop("--backend", root, "--backend-kind", "generic") as url, \
            aiohttp.ClientSession() as session:
        body = {"model": MODEL, "messages": HI, "stream": stream}
        async with session.post(url + "/api/chat", json=body) as resp:
            status, got = resp.status, await resp.json()
    assert status == 502
    assert error in got["error"]


class _OneAnswerPerConnection:
    """A backend that answers the first request of each connection (keeping it open, as HTTP/1.1
    allows) and drops the connection, unanswered, on the second: a server whose keep-alive ran out."""

    ANSWER = b'{"choices": []}'

    def __init__(self) -> None:
        self.connections = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        for answered in (True, False):
            head = await reader.readuntil(b"\r\n\r\n")
            length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length:")), 0)
            await reader.readexactly(length)
            if not answered:
                break
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                         + str(len(self.ANSWER)).encode() + b"\r\n\r\n" + self.ANSWER)
            await writer.drain()
        writer.close()


@pytest.mark.parametrize("method", ["post_json", "stream"])
async def test_a_pooled_connection_the_server_closed_is_retried_once_on_a_new_one(method: str) -> None:
    backend = _OneAnswerPerConnection()
    server = await asyncio.start_server(backend.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    upstream = Upstream(Timeouts(first_byte=10))
    await upstream.start()
    try:
        target = Backend(f"http://127.0.0.1:{port}")
        for _ in range(3):
            if method == "post_json":
                await upstream.post_json(target, "/v1/chat/completions", b"{}", ChatCompletion)
            else:
                with contextlib.suppress(UpstreamProtocol):  # the answer is JSON, not a stream: read, refused
                    async with upstream.stream(target, "/v1/chat/completions", b"{}"):
                        pass
    finally:
        await upstream.close()
        server.close()
        await server.wait_closed()
    assert backend.connections >= 3  # every request after the first found its connection dropped
