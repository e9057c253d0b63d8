"""Soak: 10,000 requests, streamed, whole and cancelled mid-stream, 50 at a time, then no leaks.

Everything runs in this process and loop: the fault upstream (fast answers; a slow endless one
for the requests that are cancelled), the shim (``shim_in_loop``) and the client. After a
warm-up, open file descriptors, asyncio tasks and RSS are measured; after the 10,000 requests and
a short settle they must not have grown beyond a small bound, every answer must have been right,
and the backend must have no request left open. Marked ``slow``; ``make test`` runs it.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os

import aiohttp
import pytest

from support.faults import MODEL, Fault, FaultUpstream
from support.shim import shim_in_loop

pytestmark = pytest.mark.slow

TOTAL = 10_000
WARMUP = 1_000
CONCURRENCY = 50
MAX_FD_GROWTH = 10
MAX_TASK_GROWTH = 5
MAX_RSS_GROWTH = 16 * 1024 * 1024
SLOW = "take your time"


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def rss_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


async def one(session: aiohttp.ClientSession, url: str, n: int) -> str:
    kind = ("stream", "whole", "cancel")[n % 3]
    text = SLOW if kind == "cancel" else f"request {n}"
    body = {"model": MODEL, "messages": [{"role": "user", "content": text}], "stream": kind != "whole"}
    path = "/api/generate" if n % 5 == 0 and kind != "cancel" else "/api/chat"
    if path == "/api/generate":
        body = {"model": MODEL, "prompt": text, "stream": kind != "whole"}
    resp = await session.post(url + path, json=body)
    try:
        assert resp.status == 200, await resp.text()
        if kind == "cancel":
            assert await resp.content.readline()
            resp.close()  # the client hangs up mid-stream
            return kind
        lines = [json.loads(line) for line in (await resp.read()).splitlines()]
        assert lines[-1]["done"] is True, lines[-1]
        return kind
    finally:
        resp.release()


async def run(url: str, count: int) -> dict[str, int]:
    done: dict[str, int] = {}
    numbers = iter(range(count))
    connector = aiohttp.TCPConnector(limit=CONCURRENCY)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as session:

        async def worker() -> None:
            for n in numbers:
                kind = await one(session, url, n)
                done[kind] = done.get(kind, 0) + 1

        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return done


async def settle(upstream: FaultUpstream) -> None:
    async with asyncio.timeout(10):
        for _ in iter(int, 1):  # until the backend has no request open
            if not upstream.open_calls:
                break
            await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)  # closed connections and finished tasks are collected
    gc.collect()


@pytest.mark.timeout(240)
async def test_soak_no_growth_in_fds_tasks_or_memory() -> None:
    async with FaultUpstream(Fault(words=8), keep_calls=False) as upstream:
        upstream.by_prompt[SLOW] = Fault(delay=0.02, words=100_000)
        async with shim_in_loop("--backend", upstream.url, "--backend-kind", "generic") as url:
            await run(url, WARMUP)
            await settle(upstream)
            before = (open_fds(), len(asyncio.all_tasks()), rss_bytes())
            done = await run(url, TOTAL)
            await settle(upstream)
            after = (open_fds(), len(asyncio.all_tasks()), rss_bytes())
    print(f"fds {before[0]} -> {after[0]}, tasks {before[1]} -> {after[1]}, "
          f"RSS {before[2] / 2**20:.1f} -> {after[2] / 2**20:.1f} MiB; {done}")
    assert sum(done.values()) == TOTAL
    assert min(done.values()) >= TOTAL // 3
    assert upstream.open_calls == 0
    assert after[0] - before[0] <= MAX_FD_GROWTH
    assert after[1] - before[1] <= MAX_TASK_GROWTH
    assert after[2] - before[2] <= MAX_RSS_GROWTH
