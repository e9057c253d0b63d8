"""No request makes the event loop wait on work that grows faster than its body.

The worst tool-call histories for the pairing of results with calls (results that answer no
call, results linked by order, by name in reverse, by an unknown name) go through a running shim
at 16,000 calls each while another client polls ``GET /api/version``: every poll answers within
250 ms. The shim runs as its own process, as it does in use: inside the test process it would
share the interpreter lock with the test's clients and backend, and its garbage collections
would walk every object the test suite holds. The backend is a stub that reads the forwarded
body without decoding it.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import sys
from collections.abc import AsyncIterator, Callable

import aiohttp
import pytest
from aiohttp import web

from support import free_port, serve_on_loopback

CALLS = 16_000
MODEL = "stub-model"
POLL_LIMIT_S = 0.250  # the quadratic pairing took 15.9 s here; a loaded CI machine adds ~0.1 s


def _json(obj: object) -> str:
    return json.dumps(obj, separators=(",", ":"))


def _calls(name: Callable[[int], str]) -> str:
    calls = ",".join(_json({"function": {"name": name(i), "arguments": {"i": i}}}) for i in range(CALLS))
    return f'{{"role":"assistant","content":"","tool_calls":[{calls}]}}'


def _results(**fields: Callable[[int], str]) -> str:
    return ",".join(_json({"role": "tool", "content": "ok", **{k: make(i) for k, make in fields.items()}})
                    for i in range(CALLS))


# Each history is built as text at once: a heap of Python objects held by the test itself
# would make every garbage collection in the process (the shim's included) slower.
SHAPES: dict[str, Callable[[], str]] = {
    "results-with-ids-that-answer-nothing": lambda: _calls(lambda i: "f") + "," + _results(
        tool_call_id=lambda i: f"other-{i}"),
    "results-linked-by-order": lambda: _calls(lambda i: "f") + "," + _results(),
    "results-linked-by-name-in-reverse": lambda: _calls(lambda i: f"f{i}") + "," + _results(
        tool_name=lambda i: f"f{CALLS - 1 - i}"),
    "results-with-an-unknown-name": lambda: _calls(lambda i: f"f{i}") + "," + _results(tool_name=lambda i: "nobody"),
    "results-before-any-call": lambda: _results(tool_name=lambda i: f"f{i}") + "," + _calls(lambda i: f"f{i}"),
}

ANSWER = {"id": "x", "object": "chat.completion", "created": 1, "model": MODEL,
          "choices": [{"index": 0, "message": {"role": "assistant", "content": "done"}, "finish_reason": "stop"}]}


STREAMED = (
    b'data: {"choices":[{"index":0,"delta":{"content":"done"}}]}\n\n'
    b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n'
)


@pytest.fixture
async def stub_backend() -> AsyncIterator[str]:
    async def models(request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": MODEL, "object": "model", "owned_by": "stub"}]})

    async def chat(request: web.Request) -> web.Response:
        body = await request.read()  # not decoded: only the shim's work is measured
        if b'"stream":true' in body:
            return web.Response(body=STREAMED, content_type="text/event-stream")
        return web.json_response(ANSWER)

    app = web.Application(client_max_size=1 << 30)
    app.router.add_get("/v1/models", models)
    app.router.add_post("/v1/chat/completions", chat)
    runner, url = await serve_on_loopback(app)
    try:
        yield url
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def shim_process(backend: str) -> AsyncIterator[str]:
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ollama_shim", "--listen", f"127.0.0.1:{port}", "--backend", backend,
        "--backend-kind", "generic",
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        async with asyncio.timeout(20), aiohttp.ClientSession() as session:
            while proc.returncode is None:
                with contextlib.suppress(aiohttp.ClientConnectionError):
                    async with session.get(url + "/") as resp:
                        if resp.status == 200:
                            break
                await asyncio.sleep(0.05)
        assert proc.returncode is None, await proc.stderr.read()  # type: ignore[union-attr]
        yield url
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


@pytest.mark.parametrize("shape", SHAPES)
async def test_worst_histories_do_not_stall_other_clients(stub_backend: str, shape: str) -> None:
    body = f'{{"model":"{MODEL}","stream":false,"messages":[{SHAPES[shape]()}]}}'.encode()
    async with (
        shim_process(stub_backend) as url,
        aiohttp.ClientSession() as session,
    ):
        async with session.get(url + "/api/version") as warm:  # connection and registry ready
            assert warm.status == 200
        async with session.post(url + "/api/chat", json={"model": MODEL, "messages": []}) as load:
            assert load.status == 200

        async def big_chat() -> int:
            async with aiohttp.ClientSession() as other, other.post(url + "/api/chat", data=io.BytesIO(body)) as resp:
                await resp.read()
                return resp.status

        loop = asyncio.get_running_loop()
        chat = asyncio.create_task(big_chat())
        waits: list[float] = []
        while not chat.done():
            started = loop.time()
            async with session.get(url + "/api/version") as resp:
                assert resp.status == 200
            waits.append(loop.time() - started)
        assert await chat == 200
        assert waits, "no poll ran while the request was served"
        assert max(waits) < POLL_LIMIT_S, f"a poll waited {max(waits) * 1000:.0f} ms"
