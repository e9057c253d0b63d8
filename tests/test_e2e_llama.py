"""End to end with real components: the official ollama client -> the shim -> a real llama-server.

Single-model mode (SmolLM2-135M), router mode (SmolLM2 and gemma-3-270m, loaded on demand) and
an embeddings server. Generations are short (num_predict) and greedy to stay fast on 2 cores.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator

import httpx
import ollama
import pytest

from support import llama as llama_support
from support.clients import sync_client
from support.llama import LlamaServer
from support.shim import ShimThread

SMOL = "SmolLM2-135M-Instruct.Q4_1:latest"
GEMMA = "gemma-3-270m-q4_k_m:latest"
FAST = {"num_predict": 8, "temperature": 0, "seed": 1}
HELLO = [{"role": "user", "content": "Say hello."}]


@pytest.fixture(scope="module")
def single(llama_single: LlamaServer) -> Iterator[ollama.Client]:
    with ShimThread("--backend", llama_single.url + "/v1") as url, sync_client(url, timeout=300) as client:
        yield client


@pytest.fixture(scope="module")
def router(llama_router: LlamaServer) -> Iterator[ollama.Client]:
    with ShimThread("--backend", llama_router.url, "--catalog-ttl", "0") as url, \
            sync_client(url, timeout=300) as client:
        yield client


# ---------------------------------------------------------------------------
# Catalog
# ---------------------------------------------------------------------------


def test_single_list_show_ps_carry_real_metadata(single: ollama.Client, llama_single: LlamaServer) -> None:
    _, models = llama_single.get("/v1/models")
    meta = models["data"][0]["meta"]
    listed = single.list().models
    assert [m.model for m in listed] == [SMOL]
    entry = listed[0]
    assert entry.size == meta["size"]
    assert len(entry.digest or "") == 64
    assert entry.details.family == "llama"
    assert entry.details.format == "gguf"
    assert entry.details.quantization_level == "Q4_1"
    assert entry.details.parameter_size.endswith("M")
    shown = single.show("smollm2-135m-instruct.q4_1")  # case and tag do not matter
    _, props = llama_single.get("/props")
    assert shown.modelinfo["llama.context_length"] == props["default_generation_settings"]["n_ctx"]
    assert shown.modelinfo["general.parameter_count"] == meta["n_params"]
    # The template's render tests say no tools; a server without --embeddings does not embed.
    assert shown.capabilities == ["completion"]
    running = single.ps().models
    assert [m.model for m in running] == [SMOL]
    assert running[0].context_length == props['default_generation_settings']['n_ctx']


@pytest.mark.backend
def test_gemma_single_list_show_ps_carry_real_metadata() -> None:
    with llama_support.single(llama_support.model_file(llama_support.GEMMA), name="gemma") as server, \
            ShimThread("--backend", server.url) as url, sync_client(url, timeout=300) as client:
        _, models = server.get("/v1/models")
        meta = models["data"][0]["meta"]
        entry = client.list().models[0]
        assert entry.model == GEMMA
        assert entry.size == meta["size"]
        assert entry.details.family == "gemma3"
        assert entry.details.quantization_level == "Q4_K_M"
        shown = client.show("gemma-3-270m-q4_k_m")
        assert shown.modelinfo["general.architecture"] == "gemma3"
        assert shown.modelinfo["gemma3.context_length"] == 2048
        assert shown.modelinfo["gemma3.embedding_length"] == meta["n_embd"]
        assert shown.details.parameter_size == entry.details.parameter_size.upper() != ""
        assert [m.model for m in client.ps().models] == [GEMMA]


def test_v1_models_through_the_shim_equals_the_backend(single: ollama.Client, llama_single: LlamaServer) -> None:
    through = httpx.get(str(single._client.base_url) + "/v1/models").json()
    _, direct = llama_single.get("/v1/models")
    for doc in (through, direct):
        for item in doc.get("data", []):
            item.pop("created", None)  # llama-server stamps the time of each answer
    assert through == direct


def test_router_lists_both_models_and_tracks_loading(router: ollama.Client) -> None:
    names = {m.model for m in router.list().models}
    assert names == {SMOL, GEMMA}
    for name in names:
        shown = router.show(name)
        assert "completion" in (shown.capabilities or [])
        assert shown.details.quantization_level in ("Q4_1", "Q4_K_M")
    loaded = router.chat(model=GEMMA, messages=[])
    assert loaded.done_reason == "load"
    assert GEMMA in {m.model for m in router.ps().models}
    answer = router.chat(model=SMOL, messages=HELLO, options=FAST)
    assert answer.message.content
    assert SMOL in {m.model for m in router.ps().models}
    unloaded = router.generate(model=SMOL, prompt="", keep_alive=0)
    assert unloaded.done_reason == "unload"
    assert SMOL not in {m.model for m in router.ps().models}


def _catalog_of(url: str, name: str) -> tuple[dict[str, object], dict[str, object]]:
    tags = httpx.get(url + "/api/tags").json()
    (entry,) = [m for m in tags["models"] if m["model"] == name]
    return entry, httpx.post(url + "/api/show", json={"model": name}).json()


def _wait_until(check: Callable[[], bool], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def test_router_model_shows_the_same_loaded_and_unloaded(llama_router: LlamaServer) -> None:
    with ShimThread("--backend", llama_router.url, "--catalog-ttl", "0") as url, \
            sync_client(url, timeout=300) as client:
        assert client.chat(model=SMOL, messages=[]).done_reason == "load"
        _wait_until(lambda: SMOL in {m.model for m in client.ps().models})
        loaded_entry, loaded_show = _catalog_of(url, SMOL)
        assert client.generate(model=SMOL, prompt="", keep_alive=0).done_reason == "unload"
        _wait_until(lambda: SMOL not in {m.model for m in client.ps().models})
        unloaded_entry, unloaded_show = _catalog_of(url, SMOL)
        _, models = llama_router.get("/models")
    assert [m["status"]["value"] for m in models["data"] if m["id"] == SMOL.removesuffix(":latest")] == ["unloaded"]
    assert unloaded_entry == loaded_entry
    assert unloaded_show == loaded_show
    assert loaded_entry["size"] > 0
    assert loaded_entry["details"]["quantization_level"] == "Q4_1"  # type: ignore[index]
    assert loaded_show["capabilities"] == ["completion"]  # SmolLM2's template: no tools
    assert "tools" not in str(loaded_show["template"]).lower()


def _unload_all(llama_router: LlamaServer) -> None:
    _, models = llama_router.get("/models")
    for model in models["data"]:
        if model["status"]["value"] != "unloaded":
            llama_router.post("/models/unload", {"model": model["id"]})
    _wait_until(lambda: all(m["status"]["value"] == "unloaded" for m in llama_router.get("/models")[1]["data"]))


@pytest.mark.parametrize("name", [SMOL, GEMMA])
def test_a_never_loaded_model_shows_what_it_will_once_loaded(llama_router: LlamaServer, name: str) -> None:
    """The model's GGUF file, read by the shim, says before the first load what the loaded server says."""
    _unload_all(llama_router)
    with ShimThread("--backend", llama_router.url, "--catalog-ttl", "0") as url, \
            sync_client(url, timeout=300) as client:
        first_entry, first_show = _catalog_of(url, name)  # a new data dir: nothing remembered
        assert client.chat(model=name, messages=[]).done_reason == "load"
        _wait_until(lambda: name in {m.model for m in client.ps().models})
        loaded_entry, loaded_show = _catalog_of(url, name)
    assert first_entry == loaded_entry
    assert first_show == loaded_show
    assert loaded_show["capabilities"] == ["completion"]  # neither template renders tools


def test_without_the_files_a_never_loaded_model_is_guessed_from_its_name(llama_router: LlamaServer) -> None:
    _unload_all(llama_router)
    with ShimThread("--backend", llama_router.url, "--catalog-ttl", "0", "--read-model-files", "false") as url:
        entry, show = _catalog_of(url, SMOL)
    assert show["capabilities"] == ["completion", "tools"]  # the name's guess: what the files correct
    assert entry["size"] == 0


def test_images_to_smollm2_are_refused_as_ollama_does(single: ollama.Client) -> None:
    pixel = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
    with pytest.raises(ollama.ResponseError) as err:
        single.chat(model=SMOL, messages=[{"role": "user", "content": "What is this?", "images": [pixel]}])
    assert err.value.status_code == 400
    assert err.value.error == f'"{SMOL}" does not support images'


def test_keep_alive_zero_unloads_after_the_answer(router: ollama.Client) -> None:
    answer = router.chat(model=SMOL, messages=HELLO, options=FAST, keep_alive=0)
    assert answer.message.content
    assert answer.done
    assert SMOL not in {m.model for m in router.ps().models}


# ---------------------------------------------------------------------------
# Chat and generate
# ---------------------------------------------------------------------------


def test_chat_streaming_and_not(single: ollama.Client) -> None:
    parts = list(single.chat(model=SMOL, messages=HELLO, options=FAST, stream=True))
    assert parts[-1].done
    assert parts[-1].done_reason in ("stop", "length")
    assert all(not p.done for p in parts[:-1])
    assert "".join(p.message.content for p in parts)
    whole = single.chat(model=SMOL, messages=HELLO, options=FAST)
    assert whole.message.role == "assistant"
    assert whole.message.content
    assert whole.prompt_eval_count
    assert whole.eval_count
    assert whole.eval_duration
    assert whole.total_duration


def test_num_predict_gives_done_reason_length(single: ollama.Client) -> None:
    answer = single.generate(model=SMOL, prompt="Count from one to one hundred.", options={**FAST, "num_predict": 3})
    assert answer.done_reason == "length"
    assert answer.eval_count == 3


def test_generate_streaming_carries_response_not_message(single: ollama.Client) -> None:
    parts = list(single.generate(model=SMOL, prompt="Hi", options=FAST, stream=True))
    assert "".join(p.response for p in parts)
    assert parts[-1].done
    assert all(getattr(p, "message", None) is None for p in parts)


def test_raw_generate_goes_to_completions(single: ollama.Client) -> None:
    answer = single.generate(model=SMOL, prompt="The capital of France is", raw=True, options=FAST)
    assert answer.response
    assert answer.done_reason in ("stop", "length")


def test_format_schema_produces_valid_json(single: ollama.Client) -> None:
    schema = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
              "required": ["name", "age"]}
    answer = single.chat(model=SMOL, messages=[{"role": "user", "content": "Give a person as JSON."}],
                         format=schema, options={"num_predict": 60, "temperature": 0})
    doc = json.loads(answer.message.content)
    assert isinstance(doc["name"], str)
    assert isinstance(doc["age"], int)


def test_format_json_produces_json(single: ollama.Client) -> None:
    answer = single.generate(model=SMOL, prompt="A JSON object with a key a.", format="json",
                             options={"num_predict": 40, "temperature": 0})
    # The grammar forces an object from the first token; a tiny model may still run out of tokens.
    assert answer.response.lstrip().startswith("{")
    if answer.done_reason == "stop":
        assert isinstance(json.loads(answer.response), dict)


def test_an_embeddings_server_keeps_embedding_after_chat_and_embed(llama_embed: LlamaServer) -> None:
    with ShimThread("--backend", llama_embed.url, "--catalog-ttl", "0") as url, \
            sync_client(url, timeout=300) as client:
        before = client.show(SMOL).capabilities
        client.chat(model=SMOL, messages=HELLO, options=FAST)
        client.embed(model=SMOL, input="hello")
        after = client.show(SMOL).capabilities
        listed = [m for m in httpx.get(url + "/api/tags").json()["models"] if m["model"] == SMOL]
    assert before == after == ["completion", "embedding"]
    assert listed[0]["capabilities"] == ["completion", "embedding"]


def test_embed_and_legacy_embeddings(llama_embed: LlamaServer) -> None:
    with ShimThread("--backend", llama_embed.url) as url, sync_client(url, timeout=300) as client:
        out = client.embed(model=SMOL, input=["hello", "world"])
        assert len(out.embeddings) == 2
        assert len(out.embeddings[0]) == 576
        assert abs(sum(x * x for x in out.embeddings[0]) - 1) < 1e-5
        assert out.embeddings[0] != out.embeddings[1]
        assert out.prompt_eval_count
        cut = client.embed(model=SMOL, input="hello", dimensions=8)
        assert len(cut.embeddings[0]) == 8
        legacy = client.embeddings(model=SMOL, prompt="hello")
        assert len(legacy.embedding) == 576
