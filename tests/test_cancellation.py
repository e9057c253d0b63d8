"""A client that goes away must take its backend request with it, streaming or not.

Against the fault upstream (tests/support/faults.py), which records the moment the shim hung up
on it, and against a real llama-server, whose ``/slots`` must show ``is_processing: false``
soon after the client left a long generation. Waits are bounded; the measured delay from the
client's close to the backend seeing the close is printed (``-s``) for the record.

Non-streaming requests and streams that have not sent a byte yet rely on aiohttp's
``handler_cancellation=True`` (server.py): nothing is being written, so only the closed socket
can tell the handler to stop.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable

import aiohttp
import pytest

from support.faults import MODEL, Fault, FaultUpstream
from support.llama import LlamaServer
from support.shim import shim_in_loop

HI = [{"role": "user", "content": "hi"}]
BOUND = 2.0  # seconds; the shim should take milliseconds


@pytest.fixture
async def shim(upstream: FaultUpstream):
    # Long timeouts: only the client's disconnect may end these requests.
    async with shim_in_loop("--backend", upstream.url, "--backend-kind", "generic",
                            "--first-byte-timeout", "60", "--idle-timeout", "60") as url:
        yield url


async def eventually(check: Callable[[], Awaitable[bool]], limit: float, step: float = 0.01) -> None:
    """Poll ``check`` until it is true; TimeoutError after ``limit`` seconds."""
    async with asyncio.timeout(limit):
        while True:
            if await check():
                return
            await asyncio.sleep(step)


async def wait_for_call(upstream: FaultUpstream, n: int = 1) -> None:
    async def arrived() -> bool:
        return len(upstream.calls) >= n

    await eventually(arrived, BOUND, 0.005)


async def closed_within_bound(upstream: FaultUpstream, hung_up_at: float) -> float:
    call = upstream.calls[-1]
    await asyncio.wait_for(call.closed.wait(), BOUND)
    assert call.closed_at is not None
    assert not call.completed
    delay = call.closed_at - hung_up_at
    print(f"backend saw the disconnect {delay * 1000:.1f} ms after the client hung up")
    return delay


async def test_streaming_disconnect_mid_stream_closes_upstream(shim: str, upstream: FaultUpstream) -> None:
    upstream.script(Fault(delay=0.05, words=10_000))  # would stream for minutes
    async with aiohttp.ClientSession() as session:
        resp = await session.post(shim + "/api/chat", json={"model": MODEL, "messages": HI})
        first = json.loads(await resp.content.readline())
        assert first["message"]["content"] == "one "
        resp.close()  # drop the connection mid-stream
        hung_up = time.monotonic()
    await closed_within_bound(upstream, hung_up)


@pytest.mark.parametrize("stream", [True, False], ids=["stream-before-first-byte", "non-stream"])
async def test_disconnect_while_backend_is_silent_closes_upstream(
    shim: str, upstream: FaultUpstream, stream: bool
) -> None:
    upstream.script(Fault("hang_headers"))
    async with aiohttp.ClientSession() as session:
        body = {"model": MODEL, "messages": HI, "stream": stream}
        pending = asyncio.ensure_future(session.post(shim + "/api/chat", json=body))
        await wait_for_call(upstream)
        pending.cancel()  # aiohttp closes the connection
        hung_up = time.monotonic()
        with pytest.raises(asyncio.CancelledError):
            await pending
    await closed_within_bound(upstream, hung_up)


async def test_generate_and_passthrough_disconnects_close_upstream(shim: str, upstream: FaultUpstream) -> None:
    upstream.script(Fault(delay=0.05, words=10_000), Fault(delay=0.05, words=10_000))
    requests = [
        ("/api/generate", {"model": MODEL, "prompt": "hi"}),
        ("/v1/chat/completions", {"model": MODEL, "messages": HI, "stream": True}),
    ]
    async with aiohttp.ClientSession() as session:
        for n, (path, body) in enumerate(requests, start=1):
            resp = await session.post(shim + path, json=body)
            assert await resp.content.readline()
            resp.close()
            hung_up = time.monotonic()
            await wait_for_call(upstream, n)
            await closed_within_bound(upstream, hung_up)


async def test_shim_keeps_serving_after_disconnects(shim: str, upstream: FaultUpstream) -> None:
    upstream.script(*[Fault(delay=0.05, words=10_000)] * 5)
    async with aiohttp.ClientSession() as session:
        for _ in range(5):
            resp = await session.post(shim + "/api/chat", json={"model": MODEL, "messages": HI})
            await resp.content.readline()
            resp.close()
        async def all_closed() -> bool:
            return not upstream.open_calls

        await eventually(all_closed, BOUND)
        async with session.post(shim + "/api/chat", json={"model": MODEL, "messages": HI, "stream": False}) as ok:
            assert ok.status == 200
            assert (await ok.json())["done"] is True


# -- a real llama-server stops generating --------------------------------------------------------------


async def _slots_busy(session: aiohttp.ClientSession, llama: LlamaServer) -> bool:
    async with session.get(llama.url + "/slots") as resp:
        slots = await resp.json()
    return any(slot.get("is_processing") for slot in slots)


# A non-streamed request is streamed from llama.cpp and assembled by the shim (dialect.stream_upstream): llama-server
# notices a closed connection only while writing a stream, and would otherwise generate to the end (~8 s here).
@pytest.mark.parametrize("stream", [True, False], ids=["stream", "non-stream"])
async def test_llama_server_stops_generating_when_the_client_leaves(llama_single: LlamaServer, stream: bool) -> None:
    async with (
        shim_in_loop("--backend", llama_single.url, "--first-byte-timeout", "120") as url,
        aiohttp.ClientSession() as session,
    ):
        async with session.get(url + "/api/tags") as tags:
            model = (await tags.json())["models"][0]["model"]
        body = {"model": model, "prompt": "Write a very long story about a dragon.", "stream": stream,
                "options": {"num_predict": 100_000, "temperature": 1.0, "seed": 1}}
        pending = asyncio.ensure_future(session.post(url + "/api/generate", json=body))
        async def busy() -> bool:
            return await _slots_busy(session, llama_single)

        async def idle() -> bool:
            return not await _slots_busy(session, llama_single)

        await eventually(busy, 60, 0.05)  # the model is generating
        if stream:
            resp = await pending
            assert await resp.content.readline()
            resp.close()
        else:
            pending.cancel()
            with pytest.raises(asyncio.CancelledError):
                await pending
        hung_up = time.monotonic()
        await eventually(idle, 3, 0.02)  # a full generation here takes ~8 s
        print(f"llama-server idle {1000 * (time.monotonic() - hung_up):.0f} ms after the client hung up")
