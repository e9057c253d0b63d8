"""/api/tags, /api/ps, /v1/models and a request, through the shim, over two backends one of which goes down
or sends a broken list."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from support.scripted import ScriptedBackend, models
from support.shim import shim_in_loop

FAST = ("--connect-timeout", "1", "--first-byte-timeout", "2")


@pytest_asyncio.fixture
async def a() -> AsyncIterator[ScriptedBackend]:
    async with ScriptedBackend() as backend:
        backend.answer("GET", "/v1/models", models("only-a", "shared", owned_by="a", extra={"kept": True}))
        yield backend


@pytest_asyncio.fixture
async def b() -> AsyncIterator[ScriptedBackend]:
    async with ScriptedBackend() as backend:
        backend.answer("GET", "/v1/models", models("only-b", "shared", owned_by="b"))
        yield backend


def two(a: ScriptedBackend, b: ScriptedBackend) -> tuple[str, ...]:
    return ("--backend", a.url, "--backend-kind", "vllm", "--backend", b.url, "--backend-kind", "vllm", *FAST)


async def get(session: aiohttp.ClientSession, url: str) -> tuple[int, Any]:
    async with session.get(url) as resp:
        return resp.status, await resp.json()


def names(doc: dict[str, Any]) -> list[str]:
    return sorted(m["name"] for m in doc["models"])


async def test_tags_and_ps_over_two_backends(a: ScriptedBackend, b: ScriptedBackend) -> None:
    async with shim_in_loop(*two(a, b)) as url, aiohttp.ClientSession() as s:
        _, tags = await get(s, url + "/api/tags")
        _, ps = await get(s, url + "/api/ps")
    assert names(tags) == ["only-a:latest", "only-b:latest", "shared:latest", "shared:latest"]
    assert names(ps) == names(tags)


async def test_a_backend_that_is_down(a: ScriptedBackend, b: ScriptedBackend) -> None:
    async with shim_in_loop(*two(a, b)) as url, aiohttp.ClientSession() as s:
        await get(s, url + "/api/tags")
        await b.stop()
        _, ps = await get(s, url + "/api/ps")
        _, tags = await get(s, url + "/api/tags")
        async with s.post(url + "/api/chat", json={"model": "only-b", "messages": [], "stream": False,
                                                    "keep_alive": 0}) as resp:
            unload = (resp.status, await resp.json())
        chat = {"model": "only-b", "messages": [{"role": "user", "content": "hi"}], "stream": False}
        async with s.post(url + "/api/chat", json=chat) as resp:
            status, error = resp.status, (await resp.json())["error"]
    assert names(ps) == ["only-a:latest", "shared:latest"]  # none of the backend that is down
    assert "only-b:latest" in names(tags)  # its models stay listed
    assert unload[0] == 200  # a vLLM backend cannot be asked to unload: nothing to do
    assert status == 502
    assert b.url in error


async def test_v1_models_is_merged_as_each_backend_sent_it(a: ScriptedBackend, b: ScriptedBackend) -> None:
    async with shim_in_loop(*two(a, b)) as url, aiohttp.ClientSession() as s:
        status, doc = await get(s, url + "/v1/models")
    assert status == 200
    assert [(m["id"], m["owned_by"]) for m in doc["data"]] == [
        ("only-a", "a"), ("shared", "a"), ("only-b", "b"), ("shared", "b")]
    assert doc["data"][0]["extra"] == {"kept": True}  # fields the shim does not know go through


async def test_v1_models_leaves_out_a_backend_that_is_down(a: ScriptedBackend, b: ScriptedBackend) -> None:
    async with shim_in_loop(*two(a, b)) as url, aiohttp.ClientSession() as s:
        await b.stop()
        status, doc = await get(s, url + "/v1/models")
        await a.stop()
        all_down = await get(s, url + "/v1/models")
    assert (status, [m["id"] for m in doc["data"]]) == (200, ["only-a", "shared"])
    assert all_down[0] == 502
    assert a.url in all_down[1]["error"]


@pytest.mark.parametrize("alone", [False, True], ids=["among-others", "alone"])
async def test_an_absurd_created_does_not_break_tags(a: ScriptedBackend, alone: bool) -> None:
    a.answer("GET", "/v1/models", models(*(["absurd"] if alone else ["absurd", "good"]), created=10**18))
    async with shim_in_loop("--backend", a.url, "--backend-kind", "vllm", *FAST) as url, \
            aiohttp.ClientSession() as s:
        status, tags = await get(s, url + "/api/tags")
    assert status == 200
    assert "absurd:latest" in names(tags)


async def test_one_broken_model_entry_does_not_break_tags(a: ScriptedBackend) -> None:
    a.answer("GET", "/v1/models", {"data": [
        {"id": "good", "created": 1_600_000_000},
        {"id": "absurd", "created": 10**18, "max_model_len": -1},
        {"id": "wrong-types", "created": "yesterday", "owned_by": 7},
        {"id": {"nested": True}},
    ]})
    async with shim_in_loop("--backend", a.url, "--backend-kind", "vllm", *FAST) as url, \
            aiohttp.ClientSession() as s:
        status, tags = await get(s, url + "/api/tags")
        ps_status, ps = await get(s, url + "/api/ps")
    assert status == 200
    assert names(tags) == ["absurd:latest", "good:latest", "wrong-types:latest"]
    assert all(m["modified_at"] < "2200" for m in tags["models"])
    assert (ps_status, len(ps["models"])) == (200, 3)
    assert all(m["context_length"] >= 0 for m in ps["models"])


# -- images to a model without vision -------------------------------------------------------------------

PIXEL = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
CHAT_ANSWER = {"id": "c", "object": "chat.completion", "model": "m",
               "choices": [{"index": 0, "message": {"role": "assistant", "content": "a cat"}, "finish_reason": "stop"}]}


@pytest.mark.parametrize(
    ("path", "body"),
    [("/api/chat", {"messages": [{"role": "user", "content": "what is this?", "images": [PIXEL]}]}),
     ("/api/generate", {"prompt": "what is this?", "images": [PIXEL]})],
)
@pytest.mark.parametrize(("vision", "status"), [(False, 400), (True, 200), (None, 200)])
async def test_images_to_a_model_the_backend_says_cannot_see(
    a: ScriptedBackend, path: str, body: dict[str, Any], vision: bool | None, status: int
) -> None:
    entry: dict[str, Any] = {"id": "m"}  # OpenRouter and llama.cpp say it in ``architecture``
    if vision is not None:
        entry["architecture"] = {"input_modalities": ["text", "image"] if vision else ["text"]}
    a.answer("GET", "/v1/models", {"data": [entry]})
    a.answer("POST", "/v1/chat/completions", CHAT_ANSWER)
    async with shim_in_loop("--backend", a.url, "--backend-kind", "generic", *FAST) as url, \
            aiohttp.ClientSession() as s, s.post(url + path, json={"model": "m", "stream": False, **body}) as resp:
        answer = (resp.status, await resp.json())
    assert answer[0] == status
    if status == 400:
        assert answer[1] == {"error": '"m" does not support images'}
        assert a.count("POST", "/v1/chat/completions") == 0
