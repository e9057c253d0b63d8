"""Custom models with ``--workers 2``: creates spread over both processes all land in the one
store, creates of one name at once leave one whole model, and a store that cannot be used stops
the shim with exit status 2."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from ollama_shim.store import DB_FILE
from support import free_port
from support.lmstudio import LMStudioEmulation

BASE = "qwen2.5-7b-instruct"
CREATES = 30


@contextlib.asynccontextmanager
async def _workers(backend: str, data_dir: Path) -> AsyncIterator[str]:
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ollama_shim", "--workers", "2", "--backend", backend, "--data-dir", str(data_dir),
        "--listen", f"127.0.0.1:{port}", "--log-level", "warning",
    )
    url = f"http://127.0.0.1:{port}"
    try:
        async with asyncio.timeout(20), aiohttp.ClientSession() as session:
            while True:
                assert proc.returncode is None, "the shim exited"
                with contextlib.suppress(aiohttp.ClientError):
                    async with session.get(url + "/") as resp:
                        if resp.status == 200:
                            break
                await asyncio.sleep(0.05)
        yield url
    finally:
        if proc.returncode is None:
            proc.terminate()
            await proc.wait()


async def _create(url: str, body: dict[str, object]) -> int:
    # A connection per request, so the kernel spreads them over both workers.
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session, \
            session.post(url + "/api/create", json={**body, "stream": False}) as resp:
        await resp.read()
        return resp.status


async def test_creates_on_both_workers_all_land_in_the_store(lmstudio: LMStudioEmulation, tmp_path: Path) -> None:
    async with _workers(lmstudio.url, tmp_path) as url:
        statuses = await asyncio.gather(*(_create(url, {"model": f"m{i}", "from": BASE}) for i in range(CREATES)))
        assert statuses == [200] * CREATES
        async with aiohttp.ClientSession() as session, session.get(url + "/api/tags") as resp:
            names = {m["name"] for m in (await resp.json())["models"]}
    assert {f"m{i}:latest" for i in range(CREATES)} <= names


async def test_creates_of_one_name_at_once_leave_one_whole_model(lmstudio: LMStudioEmulation, tmp_path: Path) -> None:
    async with _workers(lmstudio.url, tmp_path) as url:
        bodies = [{"model": "same", "from": BASE, "system": f"v{i}", "parameters": {"seed": i}} for i in range(CREATES)]
        assert await asyncio.gather(*(_create(url, b) for b in bodies)) == [200] * CREATES
        async with aiohttp.ClientSession() as session, session.post(url + "/api/show", json={"model": "same"}) as resp:
            shown = await resp.json()
    winner = int(shown["system"][1:])
    assert shown["parameters"].split()[:2] == ["seed", str(winner)]  # its own parameters, not another's


async def test_a_corrupt_store_stops_the_workers_with_status_2(tmp_path: Path) -> None:
    (tmp_path / DB_FILE).write_bytes(b"not a database at all" * 100)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ollama_shim", "--workers", "2", "--backend", "http://127.0.0.1:9",
        "--data-dir", str(tmp_path), "--listen", f"127.0.0.1:{free_port()}", "--log-level", "error",
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(30):
            _, err = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 2
    errors = [line for line in err.decode().splitlines() if line.startswith("ollama-shim: error: ")]
    assert errors
    assert all(line.startswith("ollama-shim: error: cannot use the database") for line in errors)


pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SO_REUSEPORT workers")
