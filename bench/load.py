"""The load generator: a long-lived process that runs HTTP jobs and reports what it timed.

It reads one JSON job per line on stdin and answers one JSON result per line on stdout, so the
driver can start it once and keep its own CPU out of the measured processes. A job::

    {"method": "POST", "url": "...", "body": "...", "stream": true, "sep": "\\n",
     "concurrency": 32, "seconds": 1.0}            # or "requests": 1000 instead of "seconds"

The result has ``latency`` (ms, request sent to body read), ``ttfc`` (ms to the first body
bytes), ``chunks`` (``sep`` occurrences in streamed bodies), ``count``, ``errors``, ``wall`` (s).
Run as ``python bench/load.py``; it exits at end of input.

May import: aiohttp, stdlib.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp


@dataclass
class Tally:
    latency: list[float] = field(default_factory=list)
    ttfc: list[float] = field(default_factory=list)
    chunks: int = 0
    errors: int = 0
    first_error: str = ""


async def _one(session: aiohttp.ClientSession, job: dict[str, Any], tally: Tally) -> None:
    sep = job.get("sep", "\n").encode()
    data = job.get("body", "").encode() or None
    started = time.perf_counter()
    first = 0.0
    try:
        async with session.request(job.get("method", "POST"), job["url"], data=data) as resp:
            if resp.status != 200:
                raise RuntimeError(f"HTTP {resp.status}: {(await resp.read())[:200]!r}")
            if job.get("stream"):
                async for piece in resp.content.iter_any():
                    if not first:
                        first = time.perf_counter()
                    tally.chunks += piece.count(sep)
            else:
                await resp.read()
                first = time.perf_counter()
    except Exception as exc:  # a failed request is counted and reported, never fatal
        tally.errors += 1
        tally.first_error = tally.first_error or f"{type(exc).__name__}: {exc}"
        return
    ended = time.perf_counter()
    tally.latency.append((ended - started) * 1000)
    tally.ttfc.append((first - started) * 1000)


async def _worker(session: aiohttp.ClientSession, job: dict[str, Any], tally: Tally, budget: list[int]) -> None:
    deadline = time.perf_counter() + job["seconds"] if "seconds" in job else None
    while True:
        if deadline is not None and time.perf_counter() >= deadline:
            return
        if deadline is None:
            if budget[0] <= 0:
                return
            budget[0] -= 1
        await _one(session, job, tally)


async def run_job(session: aiohttp.ClientSession, job: dict[str, Any]) -> dict[str, Any]:
    tally = Tally()
    budget = [job.get("requests", 0)]
    started = time.perf_counter()
    await asyncio.gather(*(_worker(session, job, tally, budget) for _ in range(job["concurrency"])))
    wall = time.perf_counter() - started
    return {
        "latency": tally.latency, "ttfc": tally.ttfc, "chunks": tally.chunks, "count": len(tally.latency),
        "errors": tally.errors, "first_error": tally.first_error, "wall": wall,
    }


async def _main() -> None:
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout, auto_decompress=False) as session:
        loop = asyncio.get_running_loop()
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line:
                return
            result = await run_job(session, json.loads(line))
            sys.stdout.write(json.dumps(result) + "\n")
            sys.stdout.flush()


if __name__ == "__main__":
    asyncio.run(_main())
