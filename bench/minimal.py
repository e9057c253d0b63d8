"""The baseline relay: the least an aiohttp server can do to answer ``/api/chat`` from an OpenAI backend.

No model catalog, no options, no thinking or tool calls, no timeouts or error mapping: read the
body, post it upstream, turn the SSE ``data:`` frames of each read into NDJSON lines (or the one completion
into one object). The shim's figures are measured next to this one's in the same run.

Run as ``python bench/minimal.py --port P --backend http://127.0.0.1:U``; prints ``ready``.

May import: aiohttp, msgspec, stdlib.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import time

import aiohttp
import msgspec
from aiohttp import web

SESSION = web.AppKey("session", aiohttp.ClientSession)
BACKEND = web.AppKey("backend", str)
_decode = msgspec.json.decode
_encode = msgspec.json.encode


def _stamp() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _line(model: str, content: str, done: bool) -> bytes:
    message = {"role": "assistant", "content": content}
    return _encode({"model": model, "created_at": _stamp(), "message": message, "done": done}) + b"\n"


def _content(frame: bytes) -> str:
    if not frame.startswith(b"data: ") or frame.startswith(b"data: [DONE]"):
        return ""
    return _decode(frame[6:])["choices"][0]["delta"].get("content") or ""


async def _chat(request: web.Request) -> web.StreamResponse:
    req = _decode(await request.read())
    stream = req.get("stream", True)
    body = {"model": req["model"], "messages": req["messages"], "stream": stream}
    if "num_predict" in req.get("options", {}):
        body["max_tokens"] = req["options"]["num_predict"]
    url = request.app[BACKEND] + "/v1/chat/completions"
    async with request.app[SESSION].post(url, data=_encode(body), headers={"Content-Type": "application/json"}) as up:
        if not stream:
            completion = _decode(await up.read())
            text = completion["choices"][0]["message"]["content"]
            return web.Response(body=_line(req["model"], text, True), content_type="application/json")
        out = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await out.prepare(request)
        rest = b""
        async for data in up.content.iter_any():
            *frames, rest = (rest + data).split(b"\n\n")
            lines = [_line(req["model"], text, False) for text in map(_content, frames) if text]
            if lines:
                await out.write(b"".join(lines))
        await out.write(_line(req["model"], "", True))
        await out.write_eof()
        return out


async def _tags(request: web.Request) -> web.Response:
    async with request.app[SESSION].get(request.app[BACKEND] + "/v1/models") as up:
        models = [{"name": m["id"], "model": m["id"]} for m in _decode(await up.read())["data"]]
    return web.Response(body=_encode({"models": models}), content_type="application/json")


async def _serve(port: int, backend: str) -> None:
    app = web.Application()
    app[BACKEND] = backend
    app.router.add_post("/api/chat", _chat)
    app.router.add_get("/api/tags", _tags)
    app.router.add_get("/", lambda _: web.Response(text="Ollama is running"))

    async def session(app: web.Application):  # type: ignore[no-untyped-def]
        app[SESSION] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        yield
        await app[SESSION].close()

    app.cleanup_ctx.append(session)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    print("ready", flush=True)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--backend", required=True)
    args = parser.parse_args()
    asyncio.run(_serve(args.port, args.backend))


if __name__ == "__main__":
    main()
