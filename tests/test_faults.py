"""Fault table: a misbehaving backend (tests/support/faults.py) behind the shim, and what the client gets.

Each row is one fault on ``/api/chat``, streamed or not. Before the first byte went to the client
the outcome is an HTTP status with ``{"error": ...}`` (application/json); after it, the NDJSON
lines already translated and one last ``{"error": ...}`` line, with no ``done: true``. After every
fault the backend's connection must be gone (a hanging backend is not left generating) and the
shim must still serve a normal request.

Timeouts here are short (first byte 1 s, idle 0.5 s, connect 0.5 s) so the table runs quickly.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass

import aiohttp
import ollama
import pytest

from ollama_shim.routes import relay
from support.clients import async_client
from support.faults import MODEL, Blackhole, Fault, FaultUpstream, refused_url
from support.shim import shim_in_loop

TIMEOUTS = ("--first-byte-timeout", "1", "--idle-timeout", "0.5", "--connect-timeout", "0.5")
HI = [{"role": "user", "content": "hi"}]
LOADING = "Loading model"
NO_MODELS = "No models loaded. Please load a model in the developer page or use the 'lms load' command."


@dataclass
class Outcome:
    status: int
    content_type: str
    lines: list[dict]  # NDJSON lines, or the one JSON object

    @property
    def error(self) -> str | None:
        return self.lines[-1].get("error") if self.lines else None

    @property
    def text(self) -> str:
        return "".join(line.get("message", {}).get("content", "") for line in self.lines)


async def call(
    url: str, *, stream: bool, path: str = "/api/chat", body: dict | None = None, method: str = "POST"
) -> Outcome:
    body = body or {"model": MODEL, "messages": HI, "stream": stream}
    timeout = aiohttp.ClientTimeout(total=15)
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        session.request(method, url + path, json=body if method == "POST" else None) as resp,
    ):
        raw = await resp.read()
        ctype = resp.headers.get("Content-Type", "")
    lines = [json.loads(line) for line in raw.splitlines() if line.strip()]
    return Outcome(resp.status, ctype, lines)


@pytest.fixture
async def shim(upstream: FaultUpstream):
    async with shim_in_loop("--backend", upstream.url, "--backend-kind", "generic", *TIMEOUTS) as url:
        yield url


@pytest.fixture
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(relay, "RETRY_DELAYS", (0.01, 0.02, 0.03))


async def assert_backend_released(upstream: FaultUpstream) -> None:
    """Every call the backend saw either completed or was hung up on by the shim (bounded wait)."""
    for c in upstream.calls:
        if not c.completed:
            await asyncio.wait_for(c.closed.wait(), 3)


async def assert_still_serving(url: str) -> None:
    ok = await call(url, stream=True)
    assert ok.status == 200 and ok.lines[-1]["done"] is True, ok


# -- before the first byte: a status and {"error"} ---------------------------------------------------

BEFORE = [
    # id, fault, stream, status, error text (substring)
    ("reset-before-body", Fault("reset"), True, 502, "broke off its answer"),
    ("reset-non-stream", Fault("reset"), False, 502, "broke off its answer"),
    ("hang-before-headers", Fault("hang_headers"), True, 504, "sent nothing for 1 s (first-byte timeout)"),
    ("hang-before-headers-non-stream", Fault("hang_headers"), False, 504, "(first-byte timeout)"),
    ("headers-then-silence", Fault("hang_body"), True, 504, "sent nothing for 1 s (first-byte timeout)"),
    ("half-body-then-silence-non-stream", Fault("hang_body"), False, 504, "(first-byte timeout)"),
    ("garbage-sse", Fault("garbage"), True, 502, "unreadable stream frame"),
    ("garbage-json-non-stream", Fault("garbage"), False, 502, "sent an invalid response"),
    ("error-frame-first", Fault("error_frame", status=400, message="the request exceeds the available context size"),
     True, 400, "the request exceeds the available context size"),
    ("error-body-on-200-non-stream", Fault("error_frame", status=500, message="model crashed"), False, 500,
     "model crashed"),
    ("429", Fault("status", status=429, message="Rate limit reached, slow down"), True, 429,
     "Rate limit reached, slow down"),
    ("429-non-stream", Fault("status", status=429, message="Rate limit reached"), False, 429, "Rate limit reached"),
    ("500", Fault("status", status=500, message="CUDA error: out of memory"), True, 500, "CUDA error: out of memory"),
    ("503", Fault("status", status=503, message="server busy, queue full"), True, 503, "server busy, queue full"),
]


@pytest.mark.parametrize(("fault", "stream", "status", "error"), [c[1:] for c in BEFORE], ids=[c[0] for c in BEFORE])
async def test_fault_before_first_byte(
    shim: str, upstream: FaultUpstream, fault: Fault, stream: bool, status: int, error: str
) -> None:
    upstream.script(fault)
    got = await call(shim, stream=stream)
    assert got.status == status, got
    assert got.content_type.startswith("application/json")
    assert len(got.lines) == 1
    assert set(got.lines[0]) == {"error"}
    assert error in got.error
    assert len(upstream.calls) == 1  # no retry for these
    await assert_backend_released(upstream)
    await assert_still_serving(shim)


# -- after the first byte: the lines so far, then one {"error"} line ----------------------------------

AFTER = [
    ("reset-mid-stream", Fault("reset", after=3), "broke off its answer"),
    ("stall-mid-stream", Fault("hang_body", after=3), "stopped sending for 0.5 s (idle timeout)"),
    ("garbage-mid-stream", Fault("garbage", after=3), "unreadable stream frame"),
    ("error-frame-after-text", Fault("error_frame", after=3, message="Loading model"), "Loading model"),
]


@pytest.mark.parametrize(("fault", "error"), [c[1:] for c in AFTER], ids=[c[0] for c in AFTER])
async def test_fault_after_first_byte(shim: str, upstream: FaultUpstream, fault: Fault, error: str) -> None:
    upstream.script(fault)
    got = await call(shim, stream=True)
    assert got.status == 200
    assert got.content_type == "application/x-ndjson"
    assert got.text == "one two three "  # what came before the fault, once
    assert not any(line.get("done") for line in got.lines)
    assert set(got.lines[-1]) == {"error"}
    assert error in got.error
    assert len(upstream.calls) == 1  # never retried once bytes went out, even for "Loading model"
    await assert_backend_released(upstream)
    await assert_still_serving(shim)


# -- slow but within the limits ------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [True, False])
async def test_slow_backend_within_timeouts_succeeds(shim: str, upstream: FaultUpstream, stream: bool) -> None:
    upstream.script(Fault(delay=0.15, words=4))  # 0.15 s between chunks < idle 0.5 s; 0.6 s in all < 1 s
    got = await call(shim, stream=stream)
    assert got.status == 200
    assert got.lines[-1]["done"] is True
    assert got.text.split() == ["one", "two", "three", "four"]


async def test_total_timeout_cuts_a_slow_stream_with_an_error_line(upstream: FaultUpstream) -> None:
    upstream.script(Fault(delay=0.2, words=8), Fault(delay=0.3, words=8))
    async with shim_in_loop("--backend", upstream.url, "--backend-kind", "generic", *TIMEOUTS,
                            "--total-timeout", "0.7") as url:
        streamed = await call(url, stream=True)
        whole = await call(url, stream=False)
    assert streamed.status == 200
    assert 0 < len(streamed.lines) - 1 < 8
    assert "(total timeout 0.7 s)" in streamed.error
    assert whole.status == 504
    assert "(total timeout 0.7 s)" in whole.error
    await assert_backend_released(upstream)


# -- retries: only for "not loaded", only before the first byte, bounded ------------------------------


@pytest.mark.parametrize(
    "refusal",
    [Fault("status", status=503, message=LOADING), Fault("status", status=400, message=NO_MODELS)],
    ids=["llamacpp-503-loading", "lmstudio-no-models-loaded"],
)
@pytest.mark.parametrize("stream", [True, False])
async def test_not_loaded_is_retried_then_succeeds(
    shim: str, upstream: FaultUpstream, quick_retries: None, refusal: Fault, stream: bool
) -> None:
    upstream.script(refusal, refusal)
    got = await call(shim, stream=stream)
    assert got.status == 200
    assert got.lines[-1]["done"] is True
    assert len(upstream.calls) == 3


async def test_retries_are_bounded(shim: str, upstream: FaultUpstream, quick_retries: None) -> None:
    upstream.default = Fault("status", status=503, message=LOADING)
    got = await call(shim, stream=True)
    assert got.status == 503
    assert got.error == LOADING
    assert len(upstream.calls) == len(relay.RETRY_DELAYS) + 1


# -- a backend that is not there ----------------------------------------------------------------------


async def test_refused_connection_is_502_cannot_reach() -> None:
    dead = refused_url()
    async with shim_in_loop("--backend", dead, "--backend-kind", "generic", *TIMEOUTS) as url:
        got = await call(url, stream=True)
        tags = await call(url, stream=False, path="/api/tags", method="GET")
    assert got.status == 502
    assert got.error.startswith(f"cannot reach backend at {dead}")
    assert tags.status == 502
    assert "cannot reach backend" in tags.error


async def test_unanswered_connect_is_502_within_the_connect_timeout() -> None:
    with Blackhole() as hole:
        async with shim_in_loop("--backend", hole.url, "--backend-kind", "generic", *TIMEOUTS) as url:
            started = time.monotonic()
            got = await call(url, stream=True)
            waited = time.monotonic() - started
    assert got.status == 502
    assert got.error == f"cannot reach backend at {hole.url}: no connection within 0.5 s"
    assert waited < 5  # bounded: the connect timeout, not the first-byte one or forever


# -- the official client sees the same --------------------------------------------------------------


async def test_official_client_raises_with_status_and_message(shim: str, upstream: FaultUpstream) -> None:
    upstream.script(Fault("status", status=429, message="Rate limit reached"), Fault("error_frame", after=2))
    parts = []
    async with async_client(shim) as client:
        with pytest.raises(ollama.ResponseError) as before:
            await client.chat(model=MODEL, messages=HI, stream=False)
        with pytest.raises(ollama.ResponseError) as after:
            async for part in await client.chat(model=MODEL, messages=HI, stream=True):
                parts.append(part.message.content)
    assert before.value.status_code == 429
    assert before.value.error == "Rate limit reached"
    assert parts == ["one ", "two "]
    assert after.value.error == "injected failure"