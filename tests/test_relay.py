"""``routes.relay`` through the shim, one row per delivery (stream / gather / whole): the backend's
end without ``[DONE]``, an error after text, JSON nested too deep, the gathered-answer limit, and
``load_duration`` after a "No models loaded" retry.

A ``RawUpstream`` answers every completion with scripted SSE bytes, written in the given pieces,
and then ends the response; ``FaultUpstream`` (``support.faults``) refuses and then answers.
The generic kind streams only for ``stream: true``; the llamacpp kind gathers a stream for
``stream: false`` (its dialect says ``stream_upstream``).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from ollama_shim.dialect import DIALECTS
from ollama_shim.routes import relay
from ollama_shim.server import start
from ollama_shim.settings import Limits
from ollama_shim.translate.request import Delivery
from support import serve_on_loopback
from support.faults import MODEL, Fault, FaultUpstream
from support.shim import shim_in_loop, shim_settings, url_of

HI = [{"role": "user", "content": "hi"}]
NO_MODELS = "No models loaded. Please load a model in the developer page or use the 'lms load' command."
DONE = b"data: [DONE]\n\n"


def frame(obj: Any) -> bytes:
    return b"data: " + json.dumps(obj).encode() + b"\n\n"


def text(word: str, finish: str | None = None) -> bytes:
    return frame({"choices": [{"index": 0, "delta": {"content": word}, "finish_reason": finish}]})


def error(message: str, code: int = 500) -> bytes:
    return frame({"error": {"code": code, "message": message}})


def deep_frame(depth: int = 5000) -> bytes:
    return b'data: {"choices":[{"index":0,"delta":{},"x":' + b"[" * depth + b"]" * depth + b"}]}\n\n"


class RawUpstream:
    """``GET /v1/models`` lists ``MODEL``; every streamed completion answers ``pieces`` as an event
    stream, every other one ``whole`` as JSON."""

    def __init__(self) -> None:
        self.pieces: list[bytes] = []
        self.whole = b"{}"
        self.streamed: list[bool] = []
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def __aenter__(self) -> RawUpstream:
        app = web.Application()
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v1/chat/completions", self._complete)
        self._runner, self.url = await serve_on_loopback(app)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": MODEL, "object": "model"}]})

    async def _complete(self, request: web.Request) -> web.StreamResponse:
        self.streamed.append(bool((await request.json()).get("stream")))
        if not self.streamed[-1]:
            return web.Response(body=self.whole, content_type="application/json")
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for piece in self.pieces:
            await resp.write(piece)
        await resp.write_eof()
        return resp


@pytest.fixture
async def raw() -> AsyncIterator[RawUpstream]:
    async with RawUpstream() as up:
        yield up


@dataclasses.dataclass
class Answer:
    status: int
    lines: list[dict[str, Any]]

    @property
    def content(self) -> str:
        return "".join(line.get("message", {}).get("content", "") for line in self.lines)


async def post_chat(url: str, *, stream: bool, path: str = "/api/chat", body: dict[str, Any] | None = None) -> Answer:
    body = body or {"model": MODEL, "messages": HI, "stream": stream}
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as session,
        session.post(url + path, json=body) as resp,
    ):
        raw = await resp.read()
        status = resp.status
    return Answer(status, [json.loads(line) for line in raw.splitlines() if line.strip()])


# The shim's kind and the client's `stream` for each delivery of an /api/chat answer.
MODES = {
    Delivery.STREAM: ("generic", True),
    Delivery.GATHER: ("llamacpp", False),
    Delivery.WHOLE: ("generic", False),
}
STREAMED = [Delivery.STREAM, Delivery.GATHER]


def test_the_modes_table_names_the_delivery_it_tests() -> None:
    for delivery, (kind, stream) in MODES.items():
        assert Delivery.choose(stream, DIALECTS[kind]) is delivery


async def chat_via(up_url: str, delivery: Delivery) -> Answer:
    kind, stream = MODES[delivery]
    async with shim_in_loop("--backend", up_url, "--backend-kind", kind) as url:
        return await post_chat(url, stream=stream)


# ---------------------------------------------------------------------------
# The end of the backend's stream
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("delivery", STREAMED, ids=lambda d: d.value)
async def test_a_stream_without_done_is_finished(raw: RawUpstream, delivery: Delivery) -> None:
    raw.pieces = [text("one "), text("two ", finish="stop")]
    got = await chat_via(raw.url, delivery)
    assert got.status == 200
    assert got.content == "one two "
    assert got.lines[-1]["done"] is True
    assert got.lines[-1]["done_reason"] == "stop"
    assert raw.streamed == [True]


async def test_an_unterminated_last_frame_is_not_lost(raw: RawUpstream) -> None:
    raw.pieces = [text("one "), text("two ").rstrip(b"\n")]
    got = await chat_via(raw.url, Delivery.STREAM)
    assert got.content == "one two "
    assert got.lines[-1]["done"] is True


async def test_bytes_after_done_are_not_read_into_the_answer(raw: RawUpstream) -> None:
    raw.pieces = [text("one ") + DONE + text("stray ")]
    got = await chat_via(raw.url, Delivery.STREAM)
    assert got.content == "one "
    assert [line["done"] for line in got.lines] == [False, True]


# ---------------------------------------------------------------------------
# Errors after text
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("same_read", [True, False], ids=["same-read", "later-read"])
async def test_streamed_error_after_text_is_the_last_line(raw: RawUpstream, same_read: bool) -> None:
    pieces = [text("one "), text("two "), error("model crashed")]
    raw.pieces = [b"".join(pieces)] if same_read else pieces
    got = await chat_via(raw.url, Delivery.STREAM)
    assert got.status == 200
    assert got.content == "one two "
    assert got.lines[-1] == {"error": "model crashed"}
    assert not any(line.get("done") for line in got.lines)


async def test_gathered_error_after_text_is_the_status(raw: RawUpstream) -> None:
    raw.pieces = [text("one "), error("model crashed", 500)]
    got = await chat_via(raw.url, Delivery.GATHER)
    assert got.status == 500
    assert got.lines == [{"error": "model crashed"}]


async def test_streamed_deep_nesting_after_text_is_a_last_error_line(raw: RawUpstream) -> None:
    raw.pieces = [text("one "), deep_frame()]
    got = await chat_via(raw.url, Delivery.STREAM)
    assert got.status == 200
    assert got.content == "one "
    assert set(got.lines[-1]) == {"error"}
    assert "nested too deep" in got.lines[-1]["error"]


@pytest.mark.parametrize("first", [True, False], ids=["first-frame", "after-text"])
async def test_gathered_deep_nesting_is_502(raw: RawUpstream, first: bool) -> None:
    raw.pieces = [deep_frame()] if first else [text("one "), deep_frame()]
    got = await chat_via(raw.url, Delivery.GATHER)
    assert got.status == 502
    assert "nested too deep" in got.lines[0]["error"]


async def test_whole_answer_nested_too_deep_is_502(raw: RawUpstream) -> None:
    raw.whole = b'{"choices":[{"message":{"content":"x"},"x":' + b"[" * 5000 + b"]" * 5000 + b"}]}"
    got = await chat_via(raw.url, Delivery.WHOLE)
    assert got.status == 502


# ---------------------------------------------------------------------------
# The gathered answer is bounded
# ---------------------------------------------------------------------------


async def limited_shim_chat(up_url: str, kind: str, *, stream: bool, gathered_bytes: int) -> Answer:
    settings = shim_settings("--backend", up_url, "--backend-kind", kind)
    runner = await start(dataclasses.replace(settings, limits=Limits(gathered_bytes=gathered_bytes)))
    try:
        return await post_chat(url_of(settings), stream=stream)
    finally:
        await runner.cleanup()


async def test_a_gathered_answer_over_the_limit_is_502(raw: RawUpstream) -> None:
    raw.pieces = [text("0123456789"), text("abcdef"), DONE]
    got = await limited_shim_chat(raw.url, "llamacpp", stream=False, gathered_bytes=12)
    assert got.status == 502
    assert got.lines == [{"error": f"backend at {raw.url} sent an answer longer than the limit of 12 bytes"}]


async def test_a_gathered_answer_at_the_limit_passes(raw: RawUpstream) -> None:
    raw.pieces = [text("0123456789"), text("ab"), DONE]
    got = await limited_shim_chat(raw.url, "llamacpp", stream=False, gathered_bytes=12)
    assert got.status == 200
    assert got.content == "0123456789ab"


async def test_the_gathered_limit_counts_utf8_bytes(raw: RawUpstream) -> None:
    raw.pieces = [text("ééééééé"), DONE]  # 7 characters, 14 bytes
    got = await limited_shim_chat(raw.url, "llamacpp", stream=False, gathered_bytes=12)
    assert got.status == 502


async def test_a_streamed_answer_is_not_held_to_the_gathered_limit(raw: RawUpstream) -> None:
    raw.pieces = [text("0123456789"), text("abcdef"), DONE]
    got = await limited_shim_chat(raw.url, "generic", stream=True, gathered_bytes=12)
    assert got.status == 200
    assert got.content == "0123456789abcdef"


# ---------------------------------------------------------------------------
# load_duration after "No models loaded"
# ---------------------------------------------------------------------------

RETRY_DELAY = 0.2


@pytest.mark.parametrize("delivery", list(MODES), ids=lambda d: d.value)
async def test_load_duration_counts_the_load_and_retry(
    upstream: FaultUpstream, monkeypatch: pytest.MonkeyPatch, delivery: Delivery
) -> None:
    monkeypatch.setattr(relay, "RETRY_DELAYS", (RETRY_DELAY,))
    upstream.script(Fault("status", status=400, message=NO_MODELS))
    got = await chat_via(upstream.url, delivery)
    assert got.status == 200
    assert [call.stream for call in upstream.calls] == [delivery.upstream_streams] * 2
    done = got.lines[-1]
    assert done["done"] is True
    assert done["load_duration"] >= RETRY_DELAY * 1e9
    assert done["total_duration"] >= done["load_duration"]


@pytest.mark.parametrize("delivery", list(MODES), ids=lambda d: d.value)
async def test_generate_takes_the_same_delivery(upstream: FaultUpstream, delivery: Delivery) -> None:
    kind, stream = MODES[delivery]
    async with shim_in_loop("--backend", upstream.url, "--backend-kind", kind) as url:
        got = await post_chat(url, stream=stream, path="/api/generate",
                              body={"model": MODEL, "prompt": "hi", "stream": stream})
    assert got.status == 200
    assert [call.stream for call in upstream.calls] == [delivery.upstream_streams]
    assert "".join(line["response"] for line in got.lines).split() == ["one", "two", "three", "four", "five",
                                                                        "six", "seven", "eight"]
    assert len(got.lines) == (9 if delivery is Delivery.STREAM else 1)
