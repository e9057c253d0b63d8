"""End to end: the official ollama client -> the shim -> the LM Studio emulation.

The emulation (tests/support/lmstudio.py) records every request, so these tests assert both
what the client sees and what the shim sent upstream.
"""

from __future__ import annotations

import json

import aiohttp
import ollama
import pytest

from support.clients import async_client
from support.lmstudio import NO_MODELS, LMStudioEmulation, Reply
from support.shim import shim_in_loop

CHAT_MODEL = "qwen2.5-7b-instruct"


@pytest.fixture
async def client(lmstudio: LMStudioEmulation):
    async with shim_in_loop("--backend", lmstudio.url + "/v1") as url, async_client(url) as api:
        yield api


def _keys(lmstudio: LMStudioEmulation) -> list[str]:
    return [m.key for m in lmstudio.models]


async def test_list_has_every_model_with_lmstudio_metadata(client: ollama.AsyncClient, lmstudio) -> None:
    listed = await client.list()
    names = {m.model for m in listed.models}
    assert names == {f"{key}:latest" for key in _keys(lmstudio)}
    by_name = {m.model: m for m in listed.models}
    first = lmstudio.models[0]
    entry = by_name[f"{first.key}:latest"]
    assert entry.size == first.size_bytes
    assert entry.details.quantization_level == first.quantization
    assert entry.details.family == first.arch
    assert entry.details.format == first.format


async def test_show_reports_context_and_capabilities(client: ollama.AsyncClient, lmstudio) -> None:
    for model in lmstudio.models:
        shown = await client.show(model.key)
        caps = set(shown.capabilities or [])
        if model.type == "embeddings":
            assert caps == {"embedding"}
            continue
        assert "completion" in caps
        assert ("vision" in caps) is (model.type == "vlm")
        assert ("tools" in caps) is model.tool_use
        arch = shown.modelinfo["general.architecture"]
        expected_ctx = model.loaded_context_length or model.max_context_length
        assert shown.modelinfo[f"{arch}.context_length"] == expected_ctx


async def test_ps_lists_only_loaded_models(client: ollama.AsyncClient, lmstudio) -> None:
    running = await client.ps()
    loaded = {f"{m.key}:latest" for m in lmstudio.models if m.loaded}
    assert {m.model for m in running.models} == loaded
    assert all(m.context_length for m in running.models)


async def test_chat_streams_and_sends_lmstudio_dialect(client: ollama.AsyncClient, lmstudio) -> None:
    lmstudio.script(Reply("one two three", reasoning="thinking hard"))
    parts = [p async for p in await client.chat(
        model=CHAT_MODEL, messages=[{"role": "user", "content": "hi"}], stream=True,
        format="json", keep_alive="10m", options={"num_predict": 50, "top_k": 5, "mirostat": 1})]
    assert "".join(p.message.content for p in parts) == "one two three"
    assert "".join(p.message.thinking or "" for p in parts) == "thinking hard"
    assert parts[-1].done
    assert parts[-1].done_reason == "stop"
    assert parts[-1].prompt_eval_count == 12
    assert parts[-1].eval_count
    sent = lmstudio.bodies("/v1/chat/completions")[-1]
    assert sent["model"] == CHAT_MODEL
    assert sent["stream"] is True
    assert sent["response_format"]["type"] == "json_schema"  # LM Studio rejects json_object
    assert sent["ttl"] == 600
    assert sent["max_tokens"] == 50
    assert sent["top_k"] == 5
    assert "mirostat" not in sent


async def test_chat_not_streamed(client: ollama.AsyncClient, lmstudio) -> None:
    lmstudio.script(Reply("all at once", reasoning="first this"))
    answer = await client.chat(model=CHAT_MODEL + ":latest", messages=[{"role": "user", "content": "hi"}])
    assert answer.message.content == "all at once"
    assert answer.done_reason == "stop"
    assert answer.message.thinking == "first this"
    assert answer.total_duration
    assert answer.total_duration > 0
    assert answer.eval_count == 3
    # LM Studio runs llama.cpp, which stops generating for a client that left only while streaming:
    # the shim asks for a stream and assembles the one answer.
    sent = lmstudio.bodies("/v1/chat/completions")[-1]
    assert sent["stream"] is True
    assert sent["stream_options"] == {"include_usage": True}


async def test_generate_goes_through_chat_with_system(client: ollama.AsyncClient, lmstudio) -> None:
    lmstudio.script("generated")
    answer = await client.generate(model=CHAT_MODEL, prompt="p", system="s")
    assert answer.response == "generated"
    sent = lmstudio.bodies("/v1/chat/completions")[-1]
    assert sent["messages"] == [{"role": "system", "content": "s"}, {"role": "user", "content": "p"}]


async def test_tool_calls_arrive_whole_with_object_arguments(client: ollama.AsyncClient, lmstudio) -> None:
    call = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}
    lmstudio.script(Reply("", tool_calls=[call]))
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    parts = [p async for p in await client.chat(
        model=CHAT_MODEL, messages=[{"role": "user", "content": "weather?"}], tools=tools, stream=True)]
    calls = [c for p in parts for c in (p.message.tool_calls or [])]
    assert len(calls) == 1
    assert calls[0].function.name == "get_weather"
    assert calls[0].function.arguments == {"city": "Paris"}
    assert parts[-1].done_reason == "stop"


async def test_no_models_loaded_triggers_load_and_retry(lmstudio) -> None:
    lmstudio.fail_next(400, {"error": {"message": NO_MODELS, "type": "invalid_request_error"}})
    lmstudio.script("after load")
    async with shim_in_loop("--backend", lmstudio.url) as url, async_client(url) as api:
        answer = await api.chat(model=CHAT_MODEL, messages=[{"role": "user", "content": "x"}])
    assert answer.message.content == "after load"
    assert lmstudio.bodies("/api/v1/models/load")[-1] == {"model": CHAT_MODEL}


async def test_load_and_unload_requests(client: ollama.AsyncClient, lmstudio) -> None:
    vision = next(m for m in lmstudio.models if not m.loaded and m.type != "embeddings")
    loaded = await client.chat(model=vision.key, messages=[])
    assert loaded.done
    assert loaded.done_reason == "load"
    assert lmstudio.model(vision.key).loaded
    unloaded = await client.generate(model=vision.key, prompt="", keep_alive=0)
    assert unloaded.done_reason == "unload"
    assert not lmstudio.model(vision.key).loaded
    assert lmstudio.bodies("/v1/chat/completions") == []


async def test_embed_normalises_and_embeddings_does_not(client: ollama.AsyncClient, lmstudio) -> None:
    embedder = next(m.key for m in lmstudio.models if m.type == "embeddings")
    out = await client.embed(model=embedder, input=["a", "bb"])
    assert len(out.embeddings) == 2
    for vector in out.embeddings:
        assert abs(sum(x * x for x in vector) - 1.0) < 1e-6
    legacy = await client.embeddings(model=embedder, prompt="a")
    assert len(legacy.embedding) == lmstudio.embedding_dim


async def test_unknown_model_is_404(client: ollama.AsyncClient) -> None:
    with pytest.raises(ollama.ResponseError) as info:
        await client.chat(model="nope", messages=[{"role": "user", "content": "x"}])
    assert info.value.status_code == 404
    assert info.value.error == "model 'nope' not found"


async def test_backend_error_keeps_its_status_and_message(client: ollama.AsyncClient, lmstudio) -> None:
    lmstudio.fail_next(400, {"error": "'response_format.type' must be 'json_schema' or 'text'"})
    with pytest.raises(ollama.ResponseError) as info:
        await client.chat(model=CHAT_MODEL, messages=[{"role": "user", "content": "x"}])
    assert info.value.status_code == 400
    assert "json_schema" in info.value.error


async def test_v1_passthrough_equals_backend_and_maps_names(lmstudio) -> None:
    lmstudio.script("via v1")
    async with shim_in_loop("--backend", lmstudio.url) as url, aiohttp.ClientSession() as http:
        async with http.get(url + "/v1/models") as through, http.get(lmstudio.url + "/v1/models") as direct:
            assert await through.read() == await direct.read()
        body = {"model": CHAT_MODEL + ":latest", "messages": [{"role": "user", "content": "x"}], "stream": True}
        async with http.post(url + "/v1/chat/completions", json=body) as resp:
            assert resp.status == 200
            assert resp.content_type == "text/event-stream"
            text = (await resp.read()).decode()
    assert "via" in text
    assert text.rstrip().endswith("data: [DONE]")
    assert lmstudio.bodies("/v1/chat/completions")[-1]["model"] == CHAT_MODEL


async def test_stream_lines_are_ndjson(lmstudio) -> None:
    lmstudio.script("a b")
    async with shim_in_loop("--backend", lmstudio.url) as url, aiohttp.ClientSession() as http:
        body = {"model": CHAT_MODEL, "messages": [{"role": "user", "content": "x"}]}
        async with http.post(url + "/api/chat", data=json.dumps(body)) as resp:
            assert resp.headers["Content-Type"] == "application/x-ndjson"
            raw = await resp.read()
    lines = raw.split(b"\n")
    assert lines[-1] == b""
    assert all(lines[:-1])
    docs = [json.loads(line) for line in lines[:-1]]
    assert docs[-1]["done"] is True
    assert all(not d["done"] for d in docs[:-1])
    assert all("error" not in d for d in docs)


async def test_suffix_needs_a_model_that_can_insert(client: ollama.AsyncClient, lmstudio) -> None:
    with pytest.raises(ollama.ResponseError) as info:
        await client.generate(model=CHAT_MODEL, prompt="def f(", suffix="return x")
    assert info.value.status_code == 400
    assert info.value.error == f'"{CHAT_MODEL}" does not support insert'
    assert lmstudio.bodies("/v1/completions") == []


async def test_embedding_model_cannot_chat(client: ollama.AsyncClient, lmstudio) -> None:
    embedder = next(m.key for m in lmstudio.models if m.type == "embeddings")
    with pytest.raises(ollama.ResponseError) as info:
        await client.chat(model=embedder, messages=[{"role": "user", "content": "x"}])
    assert info.value.status_code == 400
    assert info.value.error == f'"{embedder}" does not support chat'


async def test_tool_round_trip_links_results_to_calls(client: ollama.AsyncClient, lmstudio) -> None:
    lmstudio.script("It is sunny in Paris and rainy in Oslo.")
    history = [
        {"role": "user", "content": "Weather in Paris and Oslo?"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}},
            {"function": {"name": "get_weather", "arguments": {"city": "Oslo"}}},
        ]},
        {"role": "tool", "tool_name": "get_weather", "content": "sunny"},
        {"role": "tool", "tool_name": "get_weather", "content": "rainy"},
    ]
    answer = await client.chat(model=CHAT_MODEL, messages=history)
    assert answer.message.content.startswith("It is sunny")
    sent = lmstudio.bodies("/v1/chat/completions")[-1]["messages"]
    calls = sent[1]["tool_calls"]
    assert [json.loads(c["function"]["arguments"]) for c in calls] == [{"city": "Paris"}, {"city": "Oslo"}]
    ids = [c["id"] for c in calls]
    assert len(set(ids)) == 2  # same-name calls do not collide
    assert [(m["role"], m["tool_call_id"], m["content"]) for m in sent[2:]] == [
        ("tool", ids[0], "sunny"), ("tool", ids[1], "rainy")]


async def test_ignored_options_are_logged_once_with_the_reason(client: ollama.AsyncClient, caplog) -> None:
    caplog.set_level("INFO", logger="ollama_shim")
    options = {"mirostat": 1, "num_ctx": 4096, "tfs_z": 1.0}
    for _ in range(2):
        await client.chat(model=CHAT_MODEL, messages=[{"role": "user", "content": "x"}], options=options)
    lines = [r.getMessage() for r in caplog.records if "is ignored" in r.getMessage()]
    assert sorted(lines) == sorted([
        "option 'mirostat' is not supported by lmstudio backends and is ignored",
        "option 'num_ctx' is a load-time setting of the backend and is ignored",
        "option 'tfs_z' is not an Ollama option (or no longer one) and is ignored",
    ])


@pytest.mark.parametrize(("asked", "named"), [("nope", "nope:latest"), ("nope:7b", "nope:7b")])
async def test_show_of_an_unknown_model_names_it_with_its_tag(client: ollama.AsyncClient, asked: str,
                                                              named: str) -> None:
    with pytest.raises(ollama.ResponseError) as info:
        await client.show(asked)
    assert info.value.status_code == 404
    assert info.value.error == f"model '{named}' not found"
