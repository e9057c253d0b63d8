"""Model management through the official client: pull of a served model succeeds (downloads:
``test_pull``), push and blobs
are refused (create, copy and delete of custom models: ``test_custom_models``)."""

from __future__ import annotations

import aiohttp
import ollama
import pytest

from support.clients import async_client
from support.lmstudio import LMStudioEmulation
from support.shim import shim_in_loop


@pytest.fixture
async def client(lmstudio: LMStudioEmulation):
    async with shim_in_loop("--backend", lmstudio.url) as url, async_client(url) as api:
        yield api, url


async def test_pull_of_a_served_model_succeeds_streamed_and_not(client) -> None:
    api, _ = client
    model = "qwen2.5-7b-instruct"
    assert (await api.pull(model)).status == "success"
    parts = [p async for p in await api.pull(model + ":latest", stream=True)]
    assert [p.status for p in parts] == ["success"]


async def test_pull_of_a_model_lmstudio_cannot_find_is_a_404_naming_it(client, lmstudio) -> None:
    api, _ = client
    with pytest.raises(ollama.ResponseError) as info:
        await api.pull("llama3")  # asked of LM Studio's download (``test_pull``), which knows no such model
    assert info.value.status_code == 404
    assert info.value.error.startswith("pull model manifest: file does not exist")
    assert lmstudio.url in info.value.error


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/api/push", {"model": "x"}),
        ("POST", "/api/blobs/sha256:" + "0" * 64, None),
        ("HEAD", "/api/blobs/sha256:" + "0" * 64, None),
    ],
)
async def test_model_changes_are_refused_clearly(client, method: str, path: str, body: object) -> None:
    _, url = client
    async with aiohttp.ClientSession() as http, http.request(method, url + path, json=body) as resp:
        assert resp.status == 400
        if method != "HEAD":
            assert "managed by the backend" in (await resp.json())["error"]


async def test_delete_of_a_backend_model_through_the_client_raises(client, lmstudio) -> None:
    api, _ = client
    with pytest.raises(ollama.ResponseError) as info:
        await api.delete("qwen2.5-7b-instruct")
    assert info.value.status_code == 400
    assert "lives in the backend" in info.value.error
    assert lmstudio.url in info.value.error
