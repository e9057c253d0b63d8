"""A scripted OpenAI-compatible backend for the benchmark, fast enough not to be the bottleneck.

Every answer is encoded once at start-up. ``GET /v1/models`` lists three models: ``fast``
writes its stream frames back to back, ``slow`` sleeps ``--delay`` seconds before each frame
(the many-slow-streams phase), ``paced`` 2 ms (so a stream's first frame arrives on its own).
``POST /v1/chat/completions`` answers with ``max_tokens`` content chunks (default ``--chunks``)
as SSE frames, or one JSON completion when ``stream`` is false.

Run as ``python bench/upstream.py --port P [--chunks N] [--delay S]``; it prints ``ready`` once
it listens and stops on SIGTERM/SIGINT.

May import: aiohttp, msgspec, stdlib.
"""

from __future__ import annotations

import argparse
import asyncio
import signal

import msgspec
from aiohttp import web

MAX_CHUNKS = 4096
MODELS = ("fast", "slow", "paced")
PACED_DELAY = 0.002  # "paced": frames 2 ms apart, so the first one arrives alone (time to first chunk)
_SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
_JSON_HEADERS = {"Content-Type": "application/json"}


class _Request(msgspec.Struct):
    model: str = "fast"
    stream: bool = False
    max_tokens: int | None = None


def _frame(obj: object) -> bytes:
    return b"data: " + msgspec.json.encode(obj) + b"\n\n"


def _chunk(index: int, finish: str | None = None, usage: dict[str, int] | None = None) -> dict[str, object]:
    delta = {} if finish else {"content": f" tok{index}"}
    if index == 0:
        delta["role"] = "assistant"
    chunk: dict[str, object] = {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "fast",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    if usage is not None:
        chunk["usage"] = usage
    return chunk


class Script:
    """The pre-encoded answers."""

    def __init__(self, chunks: int, delay: float) -> None:
        self.default_chunks = chunks
        self.delay = delay
        self.frames = [_frame(_chunk(i)) for i in range(MAX_CHUNKS)]
        self.tails = [
            _frame(_chunk(n, "stop", {"prompt_tokens": 8, "completion_tokens": n, "total_tokens": 8 + n}))
            + b"data: [DONE]\n\n"
            for n in range(MAX_CHUNKS + 1)
        ]
        self.completions = [self._completion(n) for n in range(MAX_CHUNKS + 1)]
        models = {"object": "list", "data": [{"id": m, "object": "model", "owned_by": "bench"} for m in MODELS]}
        self.models = msgspec.json.encode(models)

    @staticmethod
    def _completion(n: int) -> bytes:
        return msgspec.json.encode({
            "id": "chatcmpl-bench",
            "object": "chat.completion",
            "created": 1700000000,
            "model": "fast",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "".join(
                f" tok{i}" for i in range(n))}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 8, "completion_tokens": n, "total_tokens": 8 + n},
        })

    def count(self, req: _Request) -> int:
        n = self.default_chunks if req.max_tokens is None else req.max_tokens
        return max(1, min(n, MAX_CHUNKS))


async def _models(request: web.Request) -> web.Response:
    return web.Response(body=request.app[SCRIPT].models, headers=_JSON_HEADERS)


async def _chat(request: web.Request) -> web.StreamResponse:
    script = request.app[SCRIPT]
    req = msgspec.json.decode(await request.read(), type=_Request)
    n = script.count(req)
    if not req.stream:
        return web.Response(body=script.completions[n], headers=_JSON_HEADERS)
    response = web.StreamResponse(headers=_SSE_HEADERS)
    await response.prepare(request)
    delay = {"slow": script.delay, "paced": PACED_DELAY}.get(req.model, 0.0)
    for frame in script.frames[:n]:
        if delay:
            await asyncio.sleep(delay)
        await response.write(frame)
    await response.write(script.tails[n])
    await response.write_eof()
    return response


SCRIPT = web.AppKey("script", Script)


def make_app(chunks: int, delay: float) -> web.Application:
    app = web.Application()
    app[SCRIPT] = Script(chunks, delay)
    app.router.add_get("/v1/models", _models)
    app.router.add_post("/v1/chat/completions", _chat)
    return app


async def _serve(port: int, chunks: int, delay: float) -> None:
    runner = web.AppRunner(make_app(chunks, delay), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, backlog=4096).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print("ready", flush=True)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--chunks", type=int, default=100)
    parser.add_argument("--delay", type=float, default=0.05)
    args = parser.parse_args()
    asyncio.run(_serve(args.port, args.chunks, args.delay))


if __name__ == "__main__":
    main()
