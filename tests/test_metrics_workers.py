"""``/metrics`` with ``--workers 2``: a scrape answered by either worker counts both workers' requests,
and the supervisor's metrics directory is gone once it exits."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from support import free_port
from support.faults import MODEL, FaultUpstream

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SO_REUSEPORT spreads connections")

CHATS = 4


async def _get(url: str) -> aiohttp.ClientResponse:
    """One request on a connection of its own, so the kernel may hand it to either worker."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as session, \
            session.get(url) as resp:
        await resp.read()
        return resp


async def _counts(base: str) -> dict[str, float]:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as session, \
            session.get(base + "/metrics") as resp:
        text = await resp.text()
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "ollama_shim_requests_total" and s.labels["status"] == "200":
                out[s.labels["endpoint"]] = out.get(s.labels["endpoint"], 0) + s.value
            if s.name == "ollama_shim_output_tokens_total":
                out["tokens_out"] = out.get("tokens_out", 0) + s.value
    return out


async def test_both_workers_requests_are_counted(upstream: FaultUpstream, tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ollama_shim", "--workers", "2", "--backend", upstream.url, "--backend-kind", "generic",
        "--listen", f"127.0.0.1:{port}", "--log-level", "warning", env={**os.environ, "TMPDIR": str(tmp_path)},
    )
    try:
        async with asyncio.timeout(30):
            while True:  # a poll: nothing tells us the workers listen
                assert proc.returncode is None, "the shim exited"
                with contextlib.suppress(aiohttp.ClientError):
                    if (await _get(base + "/api/version")).status == 200:
                        break
                await asyncio.sleep(0.05)
        assert [name.startswith("ollama-shim-metrics-") for name in os.listdir(tmp_path)] == [True]

        pids: set[int] = set()
        polls = 0
        async with asyncio.timeout(30):
            while len(pids) < 2:  # status.json names the worker that answered
                async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as session, \
                        session.get(base + "/status.json") as resp:
                    pids.add((await resp.json())["pid"])
                polls += 1
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as session:
            for _ in range(CHATS):
                body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": False}
                async with session.post(base + "/api/chat", json=body) as resp:
                    assert resp.status == 200

        scrapes = [await _counts(base) for _ in range(6)]  # fresh connections: both workers answer some
        for counts in scrapes:
            assert counts["/status.json"] == polls
            assert counts["/api/chat"] == CHATS
            assert counts["tokens_out"] == 8 * CHATS
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(proc.wait(), 30)
    assert code == 0
    assert os.listdir(tmp_path) == []  # the metrics directory is removed at exit
