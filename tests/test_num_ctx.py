"""``num_ctx``: LM Studio (the emulation) loads the model at that context when it is loaded with
less, only upward and at most once per model per cool-down, so two clients asking for different
sizes never reload it in turn; a llama.cpp backend is only told about, once per model."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from ollama_shim import loader as loader_module
from ollama_shim.loader import num_ctx_of
from support.lmstudio import LMStudioEmulation
from support.scripted import Clock, ScriptedBackend, services_over
from support.shim import shim_in_loop

QWEN = "qwen2.5-7b-instruct"  # loaded at 4096 in the emulation, at most 32768
GEMMA = "gemma-3-4b-it"  # not loaded


@pytest.fixture
async def shim(lmstudio: LMStudioEmulation) -> AsyncIterator[str]:
    async with shim_in_loop("--backend", lmstudio.url, "--catalog-ttl", "0") as url:
        yield url


async def chat(url: str, model: str, num_ctx: int | None) -> None:
    body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": False}
    if num_ctx is not None:
        body["options"] = {"num_ctx": num_ctx}
    async with aiohttp.ClientSession() as http, http.post(url + "/api/chat", json=body) as resp:
        assert resp.status == 200, await resp.text()


async def ps_context(url: str, model: str) -> int:
    async with aiohttp.ClientSession() as http, http.get(url + "/api/ps") as resp:
        models = (await resp.json())["models"]
    return int(next(m for m in models if m["model"] == model + ":latest")["context_length"])


def loads(lmstudio: LMStudioEmulation) -> list[Any]:
    return lmstudio.bodies("/api/v1/models/load")


@pytest.mark.parametrize(
    ("options", "num_ctx"),
    [({"num_ctx": 8192}, 8192), ({"num_ctx": 8192.0}, 8192), ({"num_ctx": 0}, None), ({"num_ctx": -1}, None),
     ({"num_ctx": True}, None), ({"num_ctx": "8192"}, None), ({"num_ctx": 1e30}, None), ({}, None), (None, None)],
)
def test_num_ctx_of(options: dict[str, object] | None, num_ctx: int | None) -> None:
    assert num_ctx_of(options) == num_ctx


async def test_a_larger_num_ctx_reloads_the_model_at_that_context(shim: str, lmstudio: LMStudioEmulation) -> None:
    await chat(shim, QWEN, 8192)
    assert loads(lmstudio) == [{"model": QWEN, "context_length": 8192}]
    assert lmstudio.bodies("/api/v1/models/unload") == [{"instance_id": QWEN}]  # the old instance goes first
    assert await ps_context(shim, QWEN) == 8192
    async with aiohttp.ClientSession() as http, http.post(shim + "/api/show", json={"model": QWEN}) as resp:
        assert "num_ctx                        8192" in (await resp.json())["parameters"]


async def test_a_model_not_loaded_is_loaded_at_num_ctx(shim: str, lmstudio: LMStudioEmulation) -> None:
    await chat(shim, GEMMA, 16384)
    assert loads(lmstudio) == [{"model": GEMMA, "context_length": 16384}]
    assert lmstudio.bodies("/api/v1/models/unload") == []


@pytest.mark.parametrize("num_ctx", [None, 2048, 4096])
async def test_a_loaded_context_that_is_enough_is_kept(shim: str, lmstudio: LMStudioEmulation,
                                                       num_ctx: int | None) -> None:
    await chat(shim, QWEN, num_ctx)
    assert loads(lmstudio) == []


async def test_num_ctx_beyond_the_model_loads_its_maximum_once(shim: str, lmstudio: LMStudioEmulation) -> None:
    for _ in range(3):
        await chat(shim, QWEN, 100_000)
    assert loads(lmstudio) == [{"model": QWEN, "context_length": 32768}]


@pytest.mark.parametrize("first", [4096, 8192])
async def test_two_clients_alternating_sizes_never_reload_in_turn(shim: str, lmstudio: LMStudioEmulation,
                                                                   first: int) -> None:
    sizes = (first, 12288 - first)  # 4096 and 8192, in either order
    for _ in range(4):
        for num_ctx in sizes:
            await chat(shim, QWEN, num_ctx)
    assert loads(lmstudio) == [{"model": QWEN, "context_length": 8192}]  # upward once, never back down
    assert await ps_context(shim, QWEN) == 8192


async def test_a_second_larger_size_within_the_cool_down_goes_through_as_loaded(
    shim: str, lmstudio: LMStudioEmulation, caplog: pytest.LogCaptureFixture
) -> None:
    for num_ctx in (8192, 16384, 8192, 16384):
        await chat(shim, QWEN, num_ctx)
    assert loads(lmstudio) == [{"model": QWEN, "context_length": 8192}]
    assert any("num_ctx 16384" in r.message and "context of 8192" in r.message for r in caplog.records)


async def test_after_the_cool_down_it_may_grow_again(lmstudio: LMStudioEmulation) -> None:
    clock = Clock()
    async with services_over((lmstudio, "lmstudio"), clock=clock, ttl=0) as (registry, loader):  # type: ignore[arg-type]
        loader._clock = clock  # the cool-down on the test's clock
        qwen = await loader.fit_context(await registry.resolve(QWEN), 8192)
        qwen = await loader.fit_context(qwen, 16384)
        clock.now += loader_module.RELOAD_COOLDOWN + 1
        await loader.fit_context(qwen, 16384)
    assert [b["context_length"] for b in loads(lmstudio)] == [8192, 16384]


async def test_llamacpp_is_told_about_once_per_model(caplog: pytest.LogCaptureFixture) -> None:
    async with ScriptedBackend() as router:
        router.answer("GET", "/v1/models", {"data": [
            {"id": "smol", "status": {"value": "loaded"}, "meta": {"n_ctx": 2048}},
            {"id": "gemma", "status": {"value": "loaded"}, "meta": {"n_ctx": 4096}},
        ]})
        async with services_over((router, "llamacpp")) as (registry, loader):
            caplog.set_level(logging.WARNING, logger="ollama_shim.loader")
            for model in ("smol", "smol", "gemma", "smol"):
                resolved = await registry.resolve(model)
                assert await loader.fit_context(resolved, 8192) is resolved  # the request goes through
        said = [r.message for r in caplog.records if "num_ctx 8192" in r.message]
        assert len(said) == 2
        assert "context of 2048" in said[0]
        assert "context of 4096" in said[1]
        assert router.posts() == []  # nothing is reloaded
