"""``keep_alive: 0`` on a model several replicas serve: it is unloaded on every one of them, and the
shim's keep-alive timers of each are cleared; a model idle for its keep_alive is unloaded on every
replica too.

The replicas are ``FaultUpstream``s told to be llama.cpp routers (``--backend-kind llamacpp``): they
list ``fault-model`` and record the unload calls (``raw_calls``), answering each with
``recorder_answer``. A replica that is down or fails to unload is logged; the answer is Ollama's
success as long as one replica unloaded the model, and the first replica's failure only when every
one failed (as for a model on one backend). The timers are checked on ``IdleUnloader`` itself, over
scripted routers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from ollama_shim.idle_unload import IdleUnloader
from support.faults import MODEL, Answer, FaultUpstream, refused_url
from support.scripted import ScriptedBackend, services_over
from support.shim import shim_in_loop

UNLOAD = "/models/unload"
HI = [{"role": "user", "content": "hi"}]
SHORT = 0.2  # seconds: a keep_alive that runs out during a test
FAILED = Answer(500, body=json.dumps({"error": {"code": 500, "message": "unload failed", "type": "server_error"}})
                .encode())


@contextlib.asynccontextmanager
async def routers(count: int, *extra_urls: str) -> AsyncIterator[tuple[str, list[FaultUpstream]]]:
    """``count`` llama.cpp-router stand-ins serving ``fault-model`` (plus ``extra_urls``, e.g. one that
    is down), one replica group behind one shim."""
    async with contextlib.AsyncExitStack() as stack:
        ups = [await stack.enter_async_context(FaultUpstream()) for _ in range(count)]
        args: list[str] = []
        for url in [*(up.url for up in ups), *extra_urls]:
            args += ["--backend", url, "--backend-kind", "llamacpp", "--backend-group", "pool"]
        url = await stack.enter_async_context(
            shim_in_loop(*args, "--connect-timeout", "0.5", "--first-byte-timeout", "2"))
        yield url, ups


def unloads(up: FaultUpstream) -> list[Any]:
    return [json.loads(c.body) for c in up.raw_calls if (c.method, c.raw_path) == ("POST", UNLOAD)]


async def post(url: str, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as session,
        session.post(url + path, json=body) as resp,
    ):
        return resp.status, json.loads(await resp.read())


UNLOADING = [
    # id, path, body, the done_reason of the answer
    ("generate-load-only", "/api/generate", {"model": MODEL, "keep_alive": 0}, "unload"),
    ("chat-load-only", "/api/chat", {"model": MODEL, "messages": [], "keep_alive": "0s"}, "unload"),
    ("generate", "/api/generate", {"model": MODEL, "prompt": "hi", "raw": True, "stream": False, "keep_alive": 0},
     "stop"),
    ("chat", "/api/chat", {"model": MODEL, "messages": HI, "stream": False, "keep_alive": 0}, "stop"),
]


@pytest.mark.parametrize(("path", "body", "reason"), [u[1:] for u in UNLOADING], ids=[u[0] for u in UNLOADING])
async def test_keep_alive_0_unloads_on_every_replica(path: str, body: dict[str, Any], reason: str) -> None:
    async with routers(3) as (url, ups):
        status, answer = await post(url, path, body)
        assert status == 200, answer
        assert answer["done_reason"] == reason
        assert [unloads(up) for up in ups] == [[{"model": MODEL}]] * 3


async def test_an_idle_model_is_unloaded_on_every_replica_when_its_keep_alive_runs_out() -> None:
    """Whichever replica served the requests, the model is idle as a whole: all of them unload it."""
    async with routers(3) as (url, ups):
        for _ in range(3):  # spread over the replicas
            status, _ = await post(url, "/api/chat", {"model": MODEL, "messages": HI, "stream": False,
                                                      "keep_alive": "1s"})
            assert status == 200
        assert [unloads(up) for up in ups] == [[]] * 3  # not yet: within its keep_alive
        deadline = time.monotonic() + 5
        while any(not unloads(up) for up in ups):
            assert time.monotonic() < deadline, [unloads(up) for up in ups]
            await asyncio.sleep(0.02)
        assert [unloads(up) for up in ups] == [[{"model": MODEL}]] * 3


async def test_keep_alive_above_0_unloads_nowhere() -> None:
    async with routers(2) as (url, ups):
        status, answer = await post(url, "/api/generate", {"model": MODEL, "keep_alive": "5m"})
        assert (status, answer["done_reason"]) == (200, "load")
        assert [unloads(up) for up in ups] == [[], []]


async def test_a_replica_that_is_down_does_not_fail_the_unload(caplog: pytest.LogCaptureFixture) -> None:
    down = refused_url()
    async with routers(2, down) as (url, ups):
        with caplog.at_level(logging.WARNING, logger="ollama_shim.loader"):
            status, answer = await post(url, "/api/generate", {"model": MODEL, "keep_alive": 0})
        assert (status, answer["done_reason"]) == (200, "unload")
        assert [unloads(up) for up in ups] == [[{"model": MODEL}]] * 2
        assert any("could not unload" in r.getMessage() and down in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("failing", [0, 1], ids=["first", "second"])
async def test_a_replica_that_fails_to_unload_does_not_fail_the_answer(failing: int) -> None:
    async with routers(2) as (url, ups):
        ups[failing].recorder_answer = FAILED
        status, answer = await post(url, "/api/generate", {"model": MODEL, "keep_alive": 0})
        assert (status, answer["done_reason"]) == (200, "unload")
        assert [len(unloads(up)) for up in ups] == [1, 1]


async def test_when_every_replica_fails_the_first_ones_failure_is_the_answer() -> None:
    async with routers(2) as (url, ups):
        for up in ups:
            up.recorder_answer = FAILED
        status, answer = await post(url, "/api/generate", {"model": MODEL, "keep_alive": 0})
        assert (status, answer) == (500, {"error": "unload failed"})  # as for a model on one backend


async def test_a_single_backends_unload_failure_is_answered_as_before() -> None:
    async with FaultUpstream() as up, shim_in_loop("--backend", up.url, "--backend-kind", "llamacpp") as url:
        up.recorder_answer = FAILED
        status, answer = await post(url, "/api/generate", {"model": MODEL, "keep_alive": 0})
        assert (status, answer) == (500, {"error": "unload failed"})


# ---------------------------------------------------------------------------
# The shim's own timers (``idle_unload``)
# ---------------------------------------------------------------------------


async def test_keep_alive_0_clears_the_timer_of_every_replica() -> None:
    async with ScriptedBackend() as first, ScriptedBackend() as second:
        for router in (first, second):
            router.answer("GET", "/v1/models", {"data": [{"id": "smol", "status": {"value": "loaded"}}]})
            router.answer("POST", UNLOAD, {"success": True})
        async with services_over((first, "llamacpp"), (second, "llamacpp")) as (registry, loader):
            unloader = IdleUnloader(loader, default_keep_alive=SHORT)
            smol = await registry.resolve("smol")
            assert len(smol.candidates) == 2
            for replica in smol.candidates:  # a timer on each replica
                unloader.loaded(replica, SHORT)
            unloader.forget(smol)
            assert [unloader.expires_ns(replica) for replica in smol.candidates] == [None, None]
            deadline = time.monotonic() + 4 * SHORT
            while time.monotonic() < deadline:  # no timer is left to run out
                assert [r.count("POST", UNLOAD) for r in (first, second)] == [0, 0]
                await asyncio.sleep(0.02)
            await unloader.close()
