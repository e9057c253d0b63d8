"""Custom models end to end: ``ollama create``/``cp``/``rm``/``show``/``list`` through the official
client against the LM Studio emulation, and what the backend receives when one is used."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import ollama
import pytest

from ollama_shim import custom_models as cm
from ollama_shim.custom_models import CustomModels
from ollama_shim.store import Store
from ollama_shim.translate.customise import CustomModel
from support.clients import async_client
from support.lmstudio import LMStudioEmulation
from support.shim import shim_in_loop

BASE = "qwen2.5-7b-instruct"
SYSTEM = "You are Mario from Super Mario Bros."
MESSAGES = [{"role": "user", "content": "Who are you?"}, {"role": "assistant", "content": "It's-a me, Mario!"}]
PARAMETERS = {"temperature": 0.25, "top_k": 20, "stop": ["<|eot|>"], "num_ctx": 8192}
T = TypeVar("T")


@pytest.fixture
async def shim(lmstudio: LMStudioEmulation, tmp_path: Path):
    async with shim_in_loop("--backend", lmstudio.url, "--data-dir", str(tmp_path)) as url, \
            async_client(url) as api:
        yield api, url


async def _create_mario(api: ollama.AsyncClient, name: str = "mario") -> ollama.ProgressResponse:
    return await api.create(model=name, from_=BASE, system=SYSTEM, parameters=PARAMETERS, messages=MESSAGES)


def _last_chat(lmstudio: LMStudioEmulation) -> dict[str, Any]:
    body: dict[str, Any] = lmstudio.bodies("/v1/chat/completions")[-1]
    return body


async def test_the_modelfile_flow_creates_a_model_that_chats_with_its_layers(shim, lmstudio) -> None:
    api, _ = shim
    assert (await _create_mario(api)).status == "success"
    await api.chat(model="mario", messages=[{"role": "user", "content": "Hello"}], options={"top_k": 5})
    sent = _last_chat(lmstudio)
    assert sent["model"] == BASE
    assert sent["messages"] == [{"role": "system", "content": SYSTEM}, *MESSAGES, {"role": "user", "content": "Hello"}]
    assert sent["temperature"] == 0.25  # a default from the model
    assert sent["top_k"] == 5  # the request's own option wins
    assert sent["stop"] == ["<|eot|>"]


async def test_a_request_with_its_own_system_message_keeps_it(shim, lmstudio) -> None:
    api, _ = shim
    await _create_mario(api)
    mine = {"role": "system", "content": "Be brief."}
    await api.chat(model="mario:latest", messages=[mine, {"role": "user", "content": "Hi"}])
    assert _last_chat(lmstudio)["messages"] == [mine, *MESSAGES, {"role": "user", "content": "Hi"}]


async def test_the_answer_echoes_the_custom_name(shim) -> None:
    api, _ = shim
    await _create_mario(api)
    answer = await api.chat(model="mario", messages=[{"role": "user", "content": "Hi"}])
    assert answer.model == "mario"


async def test_generate_gets_the_system_prompt_messages_and_parameters(shim, lmstudio) -> None:
    api, _ = shim
    await _create_mario(api)
    await api.generate(model="mario", prompt="Jump!")
    sent = _last_chat(lmstudio)
    assert sent["messages"] == [{"role": "system", "content": SYSTEM}, *MESSAGES, {"role": "user", "content": "Jump!"}]
    assert sent["temperature"] == 0.25


async def test_embed_with_a_custom_model_uses_its_base(shim, lmstudio) -> None:
    api, _ = shim
    embedder = "text-embedding-nomic-embed-text-v1.5"
    await api.create(model="my-embedder", from_=embedder, system="ignored")
    answer = await api.embed(model="my-embedder", input="hi")
    assert answer.model == "my-embedder"
    assert lmstudio.bodies("/v1/embeddings")[-1]["model"] == embedder


async def test_create_streams_ollama_status_lines_ending_in_success(shim) -> None:
    api, _ = shim
    statuses = [p.status async for p in await api.create(model="mario", from_=BASE, system=SYSTEM, stream=True)]
    assert statuses[0].startswith("using existing layer sha256:")
    assert statuses[1].startswith("creating new layer sha256:")
    assert statuses[-2:] == ["writing manifest", "success"]


async def test_create_without_stream_answers_one_object(shim) -> None:
    _, url = shim
    body = {"model": "mario", "from": BASE, "stream": False}
    async with aiohttp.ClientSession() as http, http.post(url + "/api/create", json=body) as resp:
        assert await resp.json() == {"status": "success"}


async def test_create_streams_by_default(shim) -> None:
    _, url = shim
    body = {"model": "m", "from": BASE}
    async with aiohttp.ClientSession() as http, http.post(url + "/api/create", json=body) as resp:
        assert resp.headers["Content-Type"] == "application/x-ndjson"
        lines = (await resp.text()).splitlines()
    assert lines[-1] == '{"status":"success"}'


async def test_list_shows_the_custom_model_with_its_parent(shim) -> None:
    api, _ = shim
    await _create_mario(api)
    listed = {m.model: m for m in (await api.list()).models}
    assert listed["mario:latest"].details.parent_model == BASE + ":latest"
    assert listed["mario:latest"].details.family == listed[BASE + ":latest"].details.family
    assert listed["mario:latest"].size == listed[BASE + ":latest"].size


async def test_show_gives_the_modelfile_parameters_system_and_the_base_details(shim) -> None:
    api, _ = shim
    await api.create(model="mario", from_=BASE, system=SYSTEM, parameters=PARAMETERS, messages=MESSAGES,
                     license="MIT")
    shown = await api.show("mario")
    base = await api.show(BASE)
    assert shown.modelfile == (
        '# Modelfile generated by "ollama show"\n'
        "# To build a new Modelfile based on this, replace FROM with:\n"
        "# FROM mario:latest\n\n"
        f"FROM {BASE}:latest\n"
        f"SYSTEM {SYSTEM}\n"
        "PARAMETER num_ctx 8192\n"
        "PARAMETER stop <|eot|>\n"
        "PARAMETER temperature 0.25\n"
        "PARAMETER top_k 20\n"
        "LICENSE MIT\n"
        "MESSAGE user Who are you?\n"
        "MESSAGE assistant It's-a me, Mario!\n"
    )
    assert sorted(shown.parameters.splitlines()) == [
        f"{'num_ctx':<30} 8192", f"{'stop':<30} \"<|eot|>\"", f"{'temperature':<30} 0.25", f"{'top_k':<30} 20"]
    assert shown.license == "MIT"
    assert shown.details.parent_model == BASE + ":latest"
    assert shown.capabilities == base.capabilities
    assert shown.modelinfo == base.modelinfo


async def test_show_gives_the_system_prompt_and_messages(shim) -> None:
    api, url = shim
    await _create_mario(api)
    async with aiohttp.ClientSession() as http, http.post(url + "/api/show", json={"model": "mario"}) as resp:
        shown = await resp.json()
    assert (shown["system"], shown["messages"]) == (SYSTEM, MESSAGES)


async def test_ps_lists_a_custom_model_while_its_base_is_loaded(shim, lmstudio) -> None:
    api, _ = shim
    await _create_mario(api)
    await api.create(model="gemma-pirate", from_="gemma-3-4b-it", system="Arr.")
    running = {m.model: m for m in (await api.ps()).models}
    assert running["mario:latest"].details.parent_model == BASE + ":latest"
    assert "gemma-pirate:latest" not in running  # gemma is not loaded


async def test_copy_of_a_custom_model_duplicates_it(shim, lmstudio) -> None:
    api, _ = shim
    await _create_mario(api)
    assert (await api.copy("mario", "luigi")).status == "success"
    await api.delete("mario")
    await api.chat(model="luigi", messages=[{"role": "user", "content": "Hi"}])
    assert _last_chat(lmstudio)["messages"][0] == {"role": "system", "content": SYSTEM}


async def test_copy_of_a_backend_model_makes_a_custom_model_of_it(shim, lmstudio) -> None:
    api, _ = shim
    await api.copy(BASE, "my-qwen")
    listed = {m.model: m for m in (await api.list()).models}
    assert listed["my-qwen:latest"].details.parent_model == BASE + ":latest"
    await api.chat(model="my-qwen", messages=[{"role": "user", "content": "Hi"}])
    assert _last_chat(lmstudio)["model"] == BASE


async def test_a_custom_model_of_a_custom_model_inherits_and_overrides(shim, lmstudio) -> None:
    api, _ = shim
    await _create_mario(api)
    await api.create(model="cold-mario", from_="mario", parameters={"temperature": 0.0})
    await api.chat(model="cold-mario", messages=[{"role": "user", "content": "Hi"}])
    sent = _last_chat(lmstudio)
    assert (sent["model"], sent["messages"][0]["content"]) == (BASE, SYSTEM)
    assert (sent["temperature"], sent["top_k"]) == (0.0, 20)
    assert (await api.show("cold-mario")).details.parent_model == "mario:latest"


async def test_delete_removes_a_custom_model(shim) -> None:
    api, _ = shim
    await _create_mario(api)
    assert (await api.delete("mario")).status == "success"
    assert "mario:latest" not in {m.model for m in (await api.list()).models}
    with pytest.raises(ollama.ResponseError) as info:
        await api.delete("mario")
    assert (info.value.status_code, info.value.error) == (404, "model 'mario:latest' not found")


async def test_the_v1_chat_passthrough_applies_the_layers(shim, lmstudio) -> None:
    api, url = shim
    await _create_mario(api)
    body = {"model": "mario", "messages": [{"role": "user", "content": "Hi"}], "temperature": 0.9}
    async with aiohttp.ClientSession() as http, http.post(url + "/v1/chat/completions", json=body) as resp:
        assert resp.status == 200
    sent = _last_chat(lmstudio)
    assert sent["model"] == BASE
    assert sent["messages"] == [{"role": "system", "content": SYSTEM}, *MESSAGES, {"role": "user", "content": "Hi"}]
    assert (sent["temperature"], sent["top_k"], sent["stop"]) == (0.9, 20, ["<|eot|>"])


async def test_custom_models_survive_a_restart(lmstudio, tmp_path: Path) -> None:
    for _ in range(2):
        async with shim_in_loop("--backend", lmstudio.url, "--data-dir", str(tmp_path)) as url, \
                async_client(url) as api:
            if "mario:latest" not in {m.model for m in (await api.list()).models}:
                await _create_mario(api)
                continue
            assert "SYSTEM " + SYSTEM in (await api.show("mario")).modelfile
            return
    pytest.fail("the custom model was gone after the restart")


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        ({"model": "m", "from": BASE, "template": "{{ .Prompt }}"}, 400, "template is not supported"),
        ({"model": "m", "from": BASE, "quantize": "q4_K_M"}, 400, "quantize is not supported"),
        ({"model": "m", "files": {"a.gguf": "sha256:" + "0" * 64}}, 400, "files are not supported"),
        ({"model": "m", "from": BASE, "adapters": {"a": "sha256:" + "0" * 64}}, 400, "adapters are not supported"),
        ({"model": "m"}, 400, "neither 'from' or 'files' was specified"),
        ({"model": "bad name!", "from": BASE}, 400, "invalid model name"),
        ({"model": "m", "from": "llama3"}, 400, "pull model manifest: file does not exist"),
        ({"model": BASE, "from": "gemma-3-4b-it"}, 400, "is a model of the backend"),
        ({"model": "m", "from": BASE, "parameters": {"temperature": "hot"}}, 400,
         'option "temperature" must be of type float32'),
        ({"model": "m", "from": BASE, "parameters": {"warmth": 1}}, 400, "unknown parameter 'warmth'"),
        ({"model": "m", "from": BASE, "messages": [{"role": "tool", "content": "x"}]}, 400,
         'message role must be one of "system", "user", or "assistant"'),
        ({"model": "m", "from": "m"}, 400, "cycle"),
    ],
)
async def test_create_refusals(shim, body: dict[str, Any], status: int, error: str) -> None:
    _, url = shim
    async with aiohttp.ClientSession() as http, http.post(url + "/api/create", json=body) as resp:
        assert resp.status == status
        assert error in (await resp.json())["error"]


async def test_a_create_that_would_close_a_cycle_is_refused(shim) -> None:
    api, _ = shim
    await api.create(model="a", from_=BASE)
    await api.create(model="b", from_="a")
    with pytest.raises(ollama.ResponseError) as info:
        await api.create(model="a", from_="b")
    assert info.value.status_code == 400
    assert "cycle" in info.value.error
    await api.chat(model="b", messages=[{"role": "user", "content": "Hi"}])  # the old "a" stays


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "error"),
    [
        ("POST", "/api/copy", {"source": "nothing", "destination": "x"}, 404, 'model "nothing" not found'),
        ("POST", "/api/copy", {"source": BASE, "destination": "gemma-3-4b-it"}, 400, "is a model of the backend"),
        ("POST", "/api/copy", {"source": BASE, "destination": "a b"}, 400, 'destination "a b" is invalid'),
        ("DELETE", "/api/delete", {"model": "nothing"}, 404, "model 'nothing:latest' not found"),
        ("DELETE", "/api/delete", {"model": BASE}, 400, "lives in the backend"),
        ("DELETE", "/api/delete", {}, 400, "model is required"),
    ],
)
async def test_copy_and_delete_refusals(shim, method: str, path: str, body: dict[str, Any], status: int,
                                        error: str) -> None:
    _, url = shim
    async with aiohttp.ClientSession() as http, http.request(method, url + path, json=body) as resp:
        assert resp.status == status
        assert error in (await resp.json())["error"]


async def test_copy_and_delete_answer_200_with_an_empty_body(shim) -> None:
    _, url = shim
    async with aiohttp.ClientSession() as http:
        async with http.post(url + "/api/copy", json={"source": BASE, "destination": "q"}) as resp:
            assert (resp.status, await resp.read()) == (200, b"")
        async with http.delete(url + "/api/delete", json={"model": "q"}) as resp:
            assert (resp.status, await resp.read()) == (200, b"")


CONFIG = f"""
[[backends]]
url = "{{url}}"

[[models]]
name = "pirate"
from = "{BASE}"
system = "Talk like a pirate."
parameters = {{ temperature = 0.5 }}
messages = [{{ role = "user", content = "Ahoy?" }}, {{ role = "assistant", content = "Arr!" }}]
license = "CC0"
"""


async def test_config_models_are_listed_used_and_cannot_be_deleted(lmstudio, tmp_path: Path) -> None:
    config = tmp_path / "shim.toml"
    config.write_text(CONFIG.replace("{url}", lmstudio.url))
    async with shim_in_loop("--config", str(config), "--data-dir", str(tmp_path)) as url, async_client(url) as api:
        assert "pirate:latest" in {m.model for m in (await api.list()).models}
        await api.chat(model="pirate", messages=[{"role": "user", "content": "Hi"}])
        sent = _last_chat(lmstudio)
        assert sent["messages"][:3] == [{"role": "system", "content": "Talk like a pirate."},
                                        {"role": "user", "content": "Ahoy?"}, {"role": "assistant", "content": "Arr!"}]
        assert sent["temperature"] == 0.5
        for change in (api.delete("pirate"), api.create(model="pirate", from_=BASE)):
            with pytest.raises(ollama.ResponseError) as info:
                await change
            assert info.value.status_code == 400
            assert "comes from the config file" in info.value.error


# -- the stored models as one process sees them ------------------------------------------------------


async def test_a_listing_shows_this_processes_own_changes_at_once(shim) -> None:
    api, _ = shim

    async def names() -> set[str]:
        return {m.model for m in (await api.list()).models}

    backend = await names()  # this listing has read the store: what follows must not wait for that to age
    changes = [
        (_create_mario(api), {"mario:latest"}),
        (api.copy("mario", "luigi"), {"mario:latest", "luigi:latest"}),
        (api.delete("mario"), {"luigi:latest"}),
    ]
    for change, expected in changes:
        await change
        assert await names() - backend == expected


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def two_processes(tmp_path: Path) -> Iterator[tuple[CustomModels, Store, Clock]]:
    """This process's custom models, another process's store on the same file, and this one's clock."""
    mine, theirs = (Store(str(tmp_path), (cm.SCHEMA,)).open() for _ in range(2))
    clock = Clock()
    try:
        yield CustomModels(mine, (), clock=clock), theirs, clock
    finally:
        mine.close()
        theirs.close()


def _stored(name: str, base: str = BASE) -> CustomModel:
    return CustomModel(name=name + ":latest", base=base, system=f"I am {name}.")


async def _listed_names(models: CustomModels) -> set[str]:
    return {item.model.name for item in await models.listed([])}


async def test_a_model_another_process_creates_is_seen_within_the_freshness_time(two_processes) -> None:
    models, theirs, clock = two_processes
    assert await _listed_names(models) == set()
    theirs.run_blocking(lambda c: cm.upsert(c, _stored("mario")))
    clock.now += cm.STORED_FRESH_S
    assert await _listed_names(models) == set()  # still the copy read a moment ago: no read per listing
    assert await models.chain("mario") == []  # the names lookup is served by the same copy
    clock.now += 0.001
    assert await _listed_names(models) == {"mario:latest"}
    assert [m.name for m in await models.chain("mario")] == ["mario:latest"]


async def test_a_model_another_process_deletes_or_changes_is_seen_within_the_freshness_time(two_processes) -> None:
    models, theirs, clock = two_processes
    for name in ("mario", "luigi"):
        theirs.run_blocking(lambda c, n=name: cm.upsert(c, _stored(n)))
    assert await _listed_names(models) == {"mario:latest", "luigi:latest"}
    theirs.run_blocking(lambda c: cm.delete_row(c, "mario:latest"))
    theirs.run_blocking(lambda c: cm.upsert(c, _stored("luigi", base="gemma-3-4b-it")))
    clock.now += cm.STORED_FRESH_S + 0.001
    assert await _listed_names(models) == {"luigi:latest"}
    assert (await models.chain("luigi"))[0].base == "gemma-3-4b-it"


async def test_a_read_begun_before_this_processes_change_is_not_kept(two_processes) -> None:
    models, _, _ = two_processes
    store = models.store
    real_read = store.read
    read_done, release = asyncio.Event(), asyncio.Event()

    async def slow_read(work: Callable[[sqlite3.Connection], T]) -> T:
        result = await real_read(work)
        read_done.set()
        await release.wait()  # the result reaches the caller only after the change below
        return result

    store.read = slow_read  # type: ignore[method-assign]
    listing = asyncio.create_task(_listed_names(models))
    await read_done.wait()
    store.read = real_read  # type: ignore[method-assign]
    store.run_blocking(lambda c: cm.upsert(c, _stored("mario")))
    models._changed()  # what create, copy and delete do after writing
    release.set()
    assert await listing == set()  # it began before the change
    assert await _listed_names(models) == {"mario:latest"}  # at the same instant: read again


async def test_listings_that_find_the_copy_stale_together_share_one_read(two_processes) -> None:
    models, _, clock = two_processes
    store = models.store
    real_read = store.read
    reads = 0

    async def counted(work: Callable[[sqlite3.Connection], T]) -> T:
        nonlocal reads
        reads += 1
        return await real_read(work)

    store.read = counted  # type: ignore[method-assign]
    clock.now += cm.STORED_FRESH_S + 1
    listed = await asyncio.gather(*(_listed_names(models) for _ in range(32)))
    assert listed == [set()] * 32
    assert reads == 1
