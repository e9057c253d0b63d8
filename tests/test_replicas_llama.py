"""Three real llama-server replicas of one model behind the shim: spread, and one killed under load.

The three serve the same GGUF file with ``-m``, so they list the same id and are one model with
three replicas. Each is as small as the 2-core machine allows (one thread, one slot, a short
context); the tests are few.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import aiohttp
import pytest

from support import llama as llama_support
from support.shim import shim_in_loop

pytestmark = pytest.mark.backend

TINY = ("-c", "512", "-t", "1", "-tb", "1", "-np", "1")
TIMEOUTS = ("--first-byte-timeout", "60", "--connect-timeout", "2", "--replica-backoff", "30")


@pytest.fixture(scope="module")
def servers() -> Iterator[list[llama_support.LlamaServer]]:
    try:
        model = llama_support.model_file(llama_support.SMOLLM2)
        made = [llama_support.single(model, *TINY, name=f"replica{i}") for i in range(3)]
        llama_support.binary()
    except llama_support.SetupMissing as exc:
        pytest.fail(f"{exc} (the backend tests need the real llama-server and models)", pytrace=False)
    try:
        with ThreadPoolExecutor(3) as pool:
            list(pool.map(lambda s: s.start(), made))
        yield made
    finally:
        for server in made:
            server.stop()


def _backends(servers: list[llama_support.LlamaServer]) -> list[str]:
    return [a for s in servers for a in ("--backend", s.url)]


async def _chat(session: aiohttp.ClientSession, url: str, model: str, text: str, lines: list[dict[str, Any]]) -> int:
    """A streamed chat; every NDJSON line is appended to ``lines`` as it comes; the HTTP status."""
    body = {"model": model, "messages": [{"role": "user", "content": text}],
            "options": {"num_predict": 48, "temperature": 0}}
    async with session.post(url + "/api/chat", json=body) as resp:
        async for line in resp.content:
            if line.strip():
                lines.append(json.loads(line))
        return resp.status


async def _model(session: aiohttp.ClientSession, url: str) -> str:
    async with session.get(url + "/api/tags") as resp:
        names = {m["name"] for m in (await resp.json())["models"]}
    assert len(names) == 1, names  # one model, three replicas
    return names.pop()


async def _served_by(session: aiohttp.ClientSession, url: str) -> dict[str, int]:
    """Chat requests answered 200, by backend, from the shim's own metrics."""
    async with session.get(url + "/metrics") as resp:
        text = await resp.text()
    counts: dict[str, int] = {}
    for match in re.finditer(r'ollama_shim_requests_total\{([^}]*)\} ([0-9.e+]+)', text):
        labels = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1)))
        if labels.get("endpoint") == "/api/chat" and labels.get("status") == "200":
            counts[labels["backend"]] = counts.get(labels["backend"], 0) + int(float(match.group(2)))
    return counts


async def test_requests_spread_over_the_replicas(servers: list[llama_support.LlamaServer]) -> None:
    async with shim_in_loop(*_backends(servers), *TIMEOUTS) as url, aiohttp.ClientSession() as session:
        model = await _model(session, url)
        answers: list[list[dict[str, Any]]] = [[] for _ in range(3)]
        statuses = await asyncio.gather(*(_chat(session, url, model, f"count to {i}", answers[i]) for i in range(3)))
        assert statuses == [200, 200, 200]
        assert all(lines[-1].get("done") is True for lines in answers)
        assert await _served_by(session, url) == {s.url: 1 for s in servers}


async def test_a_replica_killed_under_load_loses_no_request_that_had_not_started(
    servers: list[llama_support.LlamaServer],
) -> None:
    victim = servers[0]
    async with shim_in_loop(*_backends(servers), *TIMEOUTS) as url, aiohttp.ClientSession() as session:
        model = await _model(session, url)
        answers: list[list[dict[str, Any]]] = [[] for _ in range(6)]  # two per replica: one runs, one waits
        chats = [asyncio.ensure_future(_chat(session, url, model, f"tell me about {i}", answers[i]))
                 for i in range(6)]
        deadline = time.monotonic() + 60
        while not any(answers):  # the first token anywhere: the victim is mid-answer or mid-prompt
            assert time.monotonic() < deadline, "no answer began"
            await asyncio.sleep(0.01)
        assert victim.proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(victim.proc.pid, signal.SIGKILL)
        statuses = await asyncio.gather(*chats)
        for status, lines in zip(statuses, answers, strict=True):
            began = any(line.get("message", {}).get("content") for line in lines[:-1])
            finished = status == 200 and lines[-1].get("done") is True
            assert finished or began, (status, lines)  # a failure only after the answer had begun
        assert sum(1 for lines in answers if lines[-1].get("done") is True) >= 4
        # The dead replica is down: what follows goes to the others at once.
        for i in range(3):
            lines: list[dict[str, Any]] = []
            assert await _chat(session, url, model, f"again {i}", lines) == 200
            assert lines[-1].get("done") is True
