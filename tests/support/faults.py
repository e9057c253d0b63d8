"""A fault-injection upstream for tests: a small OpenAI-style aiohttp server that misbehaves on cue.

``FaultUpstream`` serves ``GET /v1/models`` (one model, ``fault-model``) and
``POST /v1/chat/completions`` / ``/v1/completions``, streamed (SSE) or not. Each completion
request takes the next ``Fault`` from ``script(...)``, else the one ``by_prompt`` names for its
last message (or prompt), else ``default``:

- ``Fault()``: a normal answer of ``words`` words; ``delay`` seconds between stream chunks
  (``delay * words`` before a non-streamed answer) makes it a *slow* backend;
- ``Fault("reset", after=n)``: n words, then the TCP connection is reset (RST);
- ``Fault("hang_headers")``: never answers; ``Fault("hang_body", after=n)``: n words, then silence;
- ``Fault("garbage", after=n)``: n words, then a ``data:`` frame that is not JSON;
- ``Fault("error_frame", after=n, status=code, message=m)``: HTTP 200, n words, then
  ``data: {"error": {...}}`` and the connection ends without ``[DONE]`` (llama.cpp's shape);
- ``Fault("status", status=code, message=m)``: an HTTP error with an OpenAI error body;
- ``Fault("endless")``: HTTP 200 and a body that never ends and holds no newline (``data: xxx...``
  streamed, ``{"x": "xxx...`` otherwise), up to ``size`` bytes as a safety stop;
- ``Fault("deep", depth=n)``: a JSON answer (or one SSE frame) with an unknown field nested n deep;
- ``Fault("redirect", message=location)``: ``302`` to ``location``;
- ``Fault("html")``: HTTP 200 ``text/html`` "Welcome to nginx" whether streamed or not;
- ``Fault("bare_sse")`` / ``Fault("bare_html")``: the normal stream / an HTML page, with no
  Content-Type header at all.

``model_fields`` are added to the model's ``/v1/models`` entry (``{"max_model_len": 2048}`` gives it
a context, as vLLM lists one). ``models_fault`` (a ``Fault`` of kind ``status``, ``endless``, ``deep``
or ``redirect``) makes ``GET /v1/models`` misbehave the same way. With ``compress_when_asked``,
every answer is gzipped when the request's Accept-Encoding allows gzip, as many servers and
proxies do.

Any other path is answered by a recorder: ``raw_calls`` keeps each request's raw path (as it came
on the wire), headers and body; the answer is ``recorder_answer`` (status, headers, body).

Every completion request is recorded as a ``Call``: its body and headers, whether it was streamed, and
``closed`` (an ``asyncio.Event``) set with ``closed_at`` when the server saw its client go away
before the answer was complete, which is how tests prove a disconnect reached the backend.

``refused_url()`` is a loopback URL nobody listens on; ``Blackhole`` is a loopback port whose
accept queue is full, so a connect there hangs (a backend behind a dropped network path).
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import socket
import struct
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from . import free_port, serve_on_loopback

MODEL = "fault-model"
LISTED_CONTEXT = 2048  # the context the model lists when a test gives it one (``max_model_len``)
WORDS = ("one", "two", "three", "four", "five", "six", "seven", "eight")


@dataclass
class Fault:
    kind: str = "ok"  # ok, reset, hang_headers, hang_body, garbage, error_frame, status
    after: int = 0  # words sent before the fault strikes
    status: int = 500
    message: str = "injected failure"
    delay: float = 0.0  # seconds between chunks (times ``words`` before a non-streamed answer)
    words: int = len(WORDS)
    size: int = 256 * 1024 * 1024  # safety stop of an ``endless`` body
    depth: int = 5000  # nesting of a ``deep`` answer


@dataclass
class RawCall:
    method: str
    raw_path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Answer:
    status: int = 200
    headers: dict[str, str] = field(default_factory=lambda: {"Content-Type": "application/json"})
    body: bytes = b'{"ok": true}'


@dataclass
class Call:
    path: str
    body: Any
    stream: bool
    started_at: float
    headers: dict[str, str] = field(default_factory=dict)
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    closed_at: float | None = None
    completed: bool = False

    def mark_closed(self) -> None:
        if not self.closed.is_set():
            self.closed_at = time.monotonic()
            self.closed.set()


def refused_url() -> str:
    """A loopback URL with nothing listening: connecting is refused at once."""
    return f"http://127.0.0.1:{free_port()}"


class Blackhole:
    """A listening port that never accepts and whose queue is full: new connects hang."""

    def __init__(self) -> None:
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(0)
        self.port = self._listener.getsockname()[1]
        self._filler = socket.create_connection(("127.0.0.1", self.port), timeout=2)
        self.url = f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self._filler.close()
        self._listener.close()

    def __enter__(self) -> Blackhole:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _chat_chunk(n: int, content: str | None, finish: str | None = None) -> dict[str, Any]:
    delta = {} if content is None else {"content": content}
    return {
        "id": "chatcmpl-fault",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": MODEL,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def _text_chunk(content: str, finish: str | None = None) -> dict[str, Any]:
    return {
        "id": "cmpl-fault",
        "object": "text_completion",
        "created": 1700000000,
        "model": MODEL,
        "choices": [{"index": 0, "text": content, "finish_reason": finish}],
    }


def _usage(words: int) -> dict[str, int]:
    return {"prompt_tokens": 5, "completion_tokens": words, "total_tokens": 5 + words}


def _completion(words: int, *, chat: bool) -> dict[str, Any]:
    text = " ".join(WORDS[:words])
    if chat:
        choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
    else:
        choice = {"index": 0, "text": text, "finish_reason": "stop"}
    return {
        "id": "fault",
        "object": "chat.completion" if chat else "text_completion",
        "created": 1700000000,
        "model": MODEL,
        "choices": [choice],
        "usage": _usage(words),
    }


def _error_body(status: int, message: str) -> dict[str, Any]:
    return {"error": {"code": status, "message": message, "type": "server_error"}}


def _sse(obj: Any) -> bytes:
    return b"data: " + json.dumps(obj).encode() + b"\n\n"


class FaultUpstream:
    """``async with FaultUpstream() as up:``; ``up.url`` is the base URL (no ``/v1``)."""

    def __init__(self, default: Fault | None = None, *, keep_calls: bool = True) -> None:
        self.default = default or Fault()
        self.keep_calls = keep_calls  # False: forget a call once it is over (long soak runs)
        self.by_prompt: dict[str, Fault] = {}  # a request whose last message is this text gets that fault
        self.calls: list[Call] = []
        self.model_listings = 0
        self.listing_headers: dict[str, str] = {}
        self.models_fault: Fault | None = None
        self.model_fields: dict[str, Any] = {}  # more fields of the model's /v1/models entry
        self.compress_when_asked = False
        self.raw_calls: list[RawCall] = []
        self.recorder_answer = Answer()
        self._script: deque[Fault] = deque()
        self._runner: web.AppRunner | None = None
        self.url = ""

    def script(self, *faults: Fault) -> None:
        """The next completion requests get these faults, in order; then ``default`` again."""
        self._script.extend(faults)

    @property
    def open_calls(self) -> int:
        return sum(1 for c in self.calls if not c.completed and not c.closed.is_set())

    async def __aenter__(self) -> FaultUpstream:
        app = web.Application()
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/completions", self._text)
        app.router.add_route("*", "/{tail:.*}", self._record)
        # handler_cancellation: a hanging handler learns at once that the shim hung up.
        self._runner, self.url = await serve_on_loopback(app, handler_cancellation=True, shutdown_timeout=0.5)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def _by_prompt(self, body: dict[str, Any]) -> Fault | None:
        if not self.by_prompt:
            return None
        messages = body.get("messages") or [{}]
        text = body.get("prompt") if "prompt" in body else messages[-1].get("content")
        return self.by_prompt.get(text) if isinstance(text, str) else None

    # -- handlers ----------------------------------------------------------------------------

    async def _record(self, request: web.Request) -> web.StreamResponse:
        self.raw_calls.append(RawCall(request.method, request.raw_path, dict(request.headers), await request.read()))
        answer = self.recorder_answer
        return web.Response(status=answer.status, headers=answer.headers, body=answer.body)

    def _compressed(self, request: web.Request, resp: web.StreamResponse) -> web.StreamResponse:
        asked = self.compress_when_asked and "gzip" in request.headers.get("Accept-Encoding", "")
        if asked and isinstance(resp, web.Response) and isinstance(resp.body, bytes):
            resp.body = gzip.compress(resp.body)
            resp.headers["Content-Encoding"] = "gzip"
        return resp

    async def _models(self, request: web.Request) -> web.StreamResponse:
        self.model_listings += 1
        self.listing_headers = dict(request.headers)
        fault = self.models_fault
        if fault is not None and fault.kind != "ok":
            if fault.kind == "status":
                return web.json_response(_error_body(fault.status, fault.message), status=fault.status)
            return await self._special(request, fault, stream=False) or web.Response(status=500)
        entry = {"id": MODEL, "object": "model", "owned_by": "faults", **self.model_fields}
        listing = {"object": "list", "data": [entry]}
        return self._compressed(request, web.json_response(listing))

    async def _special(self, request: web.Request, fault: Fault, *, stream: bool) -> web.StreamResponse | None:
        """The answer of the faults that do not depend on the endpoint; None for the others."""
        if fault.kind == "redirect":
            return web.Response(status=302, headers={"Location": fault.message})
        if fault.kind == "html":
            return web.Response(text="<html><h1>Welcome to nginx!</h1></html>", content_type="text/html")
        if fault.kind == "deep":
            nested = '{"x":' * fault.depth + "1" + "}" * fault.depth
            if stream:
                frame = json.dumps(_chat_chunk(0, "hi")).replace('"id"', f'"deep": {nested}, "id"', 1)
                return web.Response(text=f"data: {frame}\n\n", content_type="text/event-stream")
            completion = json.dumps(_completion(2, chat=True)).replace('"id"', f'"deep": {nested}, "id"', 1)
            return web.Response(text=completion, content_type="application/json")
        if fault.kind == "endless":
            resp = web.StreamResponse(headers={"Content-Type": "text/event-stream" if stream else "application/json"})
            await resp.prepare(request)
            await resp.write(b"data: " if stream else b'{"x": "')
            piece = b"x" * 65536
            for _ in range(fault.size // len(piece)):
                await resp.write(piece)
            return resp
        if fault.kind in ("bare_sse", "bare_html"):
            if fault.kind == "bare_html":
                body = b"<html><h1>Welcome to nginx!</h1></html>"
            else:
                body = b"".join(_sse(_chat_chunk(i, w + " ")) for i, w in enumerate(WORDS[:3]))
                body += _sse({**_chat_chunk(3, None, "stop"), "usage": _usage(3)}) + b"data: [DONE]\n\n"
            return await _raw(request, body)
        return None

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, chat=True)

    async def _text(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, chat=False)

    async def _serve(self, request: web.Request, *, chat: bool) -> web.StreamResponse:
        body = await request.json()
        fault = self._script.popleft() if self._script else self._by_prompt(body) or self.default
        call = Call(request.path, body, bool(body.get("stream")), time.monotonic(), dict(request.headers))
        self.calls.append(call)
        try:
            if fault.kind == "hang_headers":
                await asyncio.Event().wait()
            if fault.kind == "status":
                call.completed = True
                return web.json_response(_error_body(fault.status, fault.message), status=fault.status)
            special = await self._special(request, fault, stream=call.stream)
            if special is not None:
                call.completed = True
                return special
            if call.stream:
                resp = await self._stream(request, fault, chat=chat)
            else:
                resp = self._compressed(request, await self._whole(request, fault, chat=chat))
            call.completed = True
            return resp
        except (asyncio.CancelledError, ConnectionResetError):
            call.mark_closed()
            raise
        finally:
            if not self.keep_calls:
                self.calls.remove(call)

    async def _whole(self, request: web.Request, fault: Fault, *, chat: bool) -> web.StreamResponse:
        await asyncio.sleep(fault.delay * fault.words)  # a slow backend computing the whole answer
        if fault.kind == "garbage":
            return web.Response(body=b"<html>not json</html>", content_type="application/json")
        if fault.kind == "error_frame":  # an error object on HTTP 200
            return web.json_response(_error_body(fault.status, fault.message))
        body = json.dumps(_completion(fault.words, chat=chat)).encode()
        if fault.kind not in ("reset", "hang_body"):
            return web.Response(body=body, content_type="application/json")
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        resp.content_length = len(body)
        await resp.prepare(request)
        await resp.write(body[: len(body) // 2])
        if fault.kind == "reset":
            _reset(request)
            return resp
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def _stream(self, request: web.Request, fault: Fault, *, chat: bool) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        if self.compress_when_asked and "gzip" in request.headers.get("Accept-Encoding", ""):
            resp.enable_compression(web.ContentCoding.gzip)
        await resp.prepare(request)
        count = fault.after if fault.kind != "ok" else fault.words
        for i in range(count):
            if fault.delay:
                await asyncio.sleep(fault.delay)
            word = WORDS[i % len(WORDS)] + " "
            await resp.write(_sse(_chat_chunk(i, word) if chat else _text_chunk(word)))
        if fault.kind == "reset":
            _reset(request)
            return resp
        if fault.kind == "hang_body":
            await asyncio.Event().wait()
        if fault.kind == "garbage":
            await resp.write(b"data: {this is not json\n\n")
            return resp
        if fault.kind == "error_frame":
            await resp.write(_sse(_error_body(fault.status, fault.message)))
            return resp
        final = _chat_chunk(count, None, "stop") if chat else _text_chunk("", "stop")
        final["usage"] = _usage(count)
        await resp.write(_sse(final) + b"data: [DONE]\n\n")
        return resp


async def _raw(request: web.Request, body: bytes) -> web.StreamResponse:
    """Write a whole HTTP/1.1 answer with no Content-Type straight to the socket (aiohttp would add one)."""
    transport = request.transport
    assert transport is not None
    transport.write(f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
    await asyncio.sleep(0)
    transport.close()
    raise asyncio.CancelledError  # the answer is out; aiohttp must not write another


def _reset(request: web.Request) -> None:
    """Drop the connection with a TCP RST (SO_LINGER 0), mid-body."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()
