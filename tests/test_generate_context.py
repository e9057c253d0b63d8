"""``context`` on the last object of ``/api/generate`` from a backend without a tokenizer (the scripted
generic upstream): an empty list, streamed and not, and none on a raw generate, as Ollama."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest

from support.faults import MODEL, FaultUpstream
from support.shim import shim_in_loop


async def generate(url: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as session, \
            session.post(url + "/api/generate", json=body) as resp:
        assert resp.status == 200
        raw = await resp.read()
    return [json.loads(line) for line in raw.splitlines() if line.strip()]


@pytest.fixture
async def shim(upstream: FaultUpstream):
    async with shim_in_loop("--backend", upstream.url, "--backend-kind", "generic") as url:
        yield url


@pytest.mark.parametrize("stream", [True, False])
async def test_generate_ends_with_an_empty_context(shim: str, stream: bool) -> None:
    lines = await generate(shim, {"model": MODEL, "prompt": "hi", "stream": stream})
    assert lines[-1]["done"] is True
    assert lines[-1]["context"] == []
    assert all("context" not in line for line in lines[:-1])


@pytest.mark.parametrize("stream", [True, False])
async def test_a_context_sent_in_is_accepted(shim: str, stream: bool) -> None:
    lines = await generate(shim, {"model": MODEL, "prompt": "hi", "stream": stream, "context": [1, 2, 3]})
    assert lines[-1]["context"] == []


@pytest.mark.parametrize("stream", [True, False])
async def test_raw_generate_has_no_context(shim: str, stream: bool) -> None:
    lines = await generate(shim, {"model": MODEL, "prompt": "hi", "stream": stream, "raw": True})
    assert lines[-1]["done"] is True
    assert "context" not in lines[-1]


async def test_chat_has_no_context(shim: str) -> None:
    async with aiohttp.ClientSession() as session, session.post(
        shim + "/api/chat", json={"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": False}
    ) as resp:
        assert "context" not in await resp.json()
