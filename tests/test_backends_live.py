"""The upstream fixtures work: real llama-server (single, router, embeddings) and the LM Studio emulation.

These talk to the upstreams directly, not through the shim, and pin the llama-server facts the shim
relies on (model ids, router status, SSE shape), so a change of llama.cpp build shows up here first.
"""

from __future__ import annotations

import json
import math
import time
import urllib.request
from typing import Any

import aiohttp

from support import llama as llama_support
from support.llama import LlamaServer
from support.lmstudio import NO_MODELS, LMStudioEmulation, Reply

HELLO = [{"role": "user", "content": "Say hello."}]
GREEDY = {"temperature": 0, "seed": 1}


def sse_events(url: str, body: dict[str, Any]) -> list[str]:
    """POST and split the streamed answer into the ``data:`` payloads, in order."""
    req = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=300) as resp:
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        raw = resp.read().decode()
    return [line[len("data: ") :] for line in raw.split("\n") if line.startswith("data: ")]


# -- llama-server, one model ---------------------------------------------------------------------


def test_single_lists_one_model_named_by_its_path(llama_single: LlamaServer) -> None:
    status, body = llama_single.get("/v1/models")
    assert status == 200
    [model] = body["data"]
    assert model["id"] == str(llama_support.model_file(llama_support.SMOLLM2))  # the -m argument as given
    assert model["owned_by"] == "llamacpp"
    assert model["meta"]["n_embd"] == 576
    assert model["meta"]["n_ctx"] == 2048
    status, props = llama_single.get("/props")
    assert status == 200
    assert props["default_generation_settings"]["n_ctx"] == 2048
    assert props["total_slots"] == 1
    status, slots = llama_single.get("/slots")
    assert status == 200
    assert [slot["n_ctx"] for slot in slots] == [2048]


def test_single_chat_completion(llama_single: LlamaServer) -> None:
    status, body = llama_single.post("/v1/chat/completions", {"messages": HELLO, "max_tokens": 8, "seed": 1})
    assert status == 200, body
    choice = body["choices"][0]
    assert isinstance(choice["message"]["content"], str)
    assert choice["finish_reason"] in ("stop", "length")
    assert body["usage"]["completion_tokens"] <= 8
    assert body["timings"]["predicted_n"] == body["usage"]["completion_tokens"]


def test_single_chat_stream_ends_with_usage_and_timings_then_done(llama_single: LlamaServer) -> None:
    events = sse_events(
        llama_single.url + "/v1/chat/completions",
        {"messages": HELLO, "max_tokens": 5, "stream": True, "stream_options": {"include_usage": True}, **GREEDY},
    )
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    # Greedy, the first token is plain text, so the role chunk comes first. When the first tokens
    # only make up a multi-byte character together, there is no role chunk at all (see
    # fixtures/recorded/llamacpp_chat_stream_no_role.sse).
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": None}
    assert chunks[-2]["choices"][0]["finish_reason"] == "length"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["completion_tokens"] == 5
    assert chunks[-1]["timings"]["predicted_n"] == 5
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])


def test_single_without_embeddings_flag_refuses_embeddings(llama_single: LlamaServer) -> None:
    status, body = llama_single.post("/v1/embeddings", {"input": "hello"})
    assert status == 501, body
    assert body["error"]["type"] == "not_supported_error"


# -- llama-server, router mode -------------------------------------------------------------------

SMOL_ID = "SmolLM2-135M-Instruct.Q4_1"
GEMMA_ID = "gemma-3-270m-q4_k_m"


def router_states(router: LlamaServer) -> dict[str, str]:
    status, body = router.get("/models")
    assert status == 200, body
    return {m["id"]: m["status"]["value"] for m in body["data"]}


def test_router_lists_both_models_and_loads_one_on_demand(llama_router: LlamaServer) -> None:
    assert set(router_states(llama_router)) == {SMOL_ID, GEMMA_ID}
    status, props = llama_router.get("/props")
    assert status == 200
    assert props["role"] == "router"

    status, answer = llama_router.post("/v1/chat/completions", {"model": GEMMA_ID, "messages": HELLO, "max_tokens": 4})
    assert status == 200, answer
    assert answer["model"] == GEMMA_ID
    assert router_states(llama_router)[GEMMA_ID] == "loaded"
    status, models = llama_router.get("/v1/models")
    meta = {m["id"]: m.get("meta") for m in models["data"]}
    assert meta[GEMMA_ID]["n_embd"] == 640  # meta only for a loaded model


def test_router_load_and_unload_by_hand(llama_router: LlamaServer) -> None:
    status, body = llama_router.post("/models/load", {"model": SMOL_ID})
    assert (status, body) == (200, {"success": True}) or "already running" in str(body)
    deadline = time.monotonic() + 120
    while router_states(llama_router)[SMOL_ID] != "loaded" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert router_states(llama_router)[SMOL_ID] == "loaded"
    assert router_states(llama_router)[GEMMA_ID] != "loaded"  # --models-max 1
    assert llama_router.post("/models/unload", {"model": SMOL_ID}) == (200, {"success": True})
    status, body = llama_router.post("/models/unload", {"model": "nope"})
    assert status == 400
    assert body["error"]["message"] == "model is not found"
    status, body = llama_router.post("/v1/chat/completions", {"model": "nope", "messages": HELLO})
    assert status == 400
    assert body["error"]["message"] == "model 'nope' not found"


# -- llama-server, embeddings --------------------------------------------------------------------


def test_embeddings_return_one_vector_per_input(llama_embed: LlamaServer) -> None:
    status, body = llama_embed.post("/v1/embeddings", {"input": ["hello", "world"]})
    assert status == 200, body
    vectors = [item["embedding"] for item in body["data"]]
    assert [len(v) for v in vectors] == [576, 576]
    assert all(math.isfinite(x) for x in vectors[0])


def test_embeddings_server_still_answers_chat(llama_embed: LlamaServer) -> None:
    status, body = llama_embed.post("/v1/chat/completions", {"messages": HELLO, "max_tokens": 4})
    assert status == 200, body
    assert body["choices"][0]["finish_reason"] in ("stop", "length")


# -- LM Studio emulation -------------------------------------------------------------------------


async def test_lmstudio_lists_models_in_all_three_shapes(lmstudio: LMStudioEmulation) -> None:
    async with aiohttp.ClientSession(lmstudio.url) as http:
        async with http.get("/v1/models") as resp:
            oai = await resp.json()
        async with http.get("/api/v0/models") as resp:
            v0 = await resp.json()
        async with http.get("/api/v1/models") as resp:
            v1 = await resp.json()
    assert set(oai["data"][0]) == {"id", "object", "owned_by"}
    assert [m["state"] for m in v0["data"]] == ["loaded", "not-loaded", "not-loaded"]
    assert v0["data"][0]["loaded_context_length"] == 4096
    assert v1["models"][0]["loaded_instances"][0]["config"]["context_length"] == 4096
    assert v1["models"][1]["capabilities"]["vision"] is True
    assert "architecture" not in v1["models"][2]


async def test_lmstudio_scripted_stream_and_recorded_body(lmstudio: LMStudioEmulation) -> None:
    lmstudio.script(Reply("one two three", reasoning="thinking"))
    body = {"model": "qwen2.5-7b-instruct", "messages": HELLO, "stream": True, "max_tokens": 2}
    async with aiohttp.ClientSession(lmstudio.url) as http, http.post("/v1/chat/completions", json=body) as resp:
        raw = await resp.text()
    events = [line[6:] for line in raw.split("\n") if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    deltas = [json.loads(e)["choices"][0] for e in events[:-1]]
    assert "".join(d["delta"].get("reasoning_content", "") for d in deltas) == "thinking"
    assert "".join(d["delta"].get("content", "") for d in deltas) == "one two"
    assert deltas[-1]["finish_reason"] == "length"
    assert lmstudio.bodies("/v1/chat/completions") == [body]


async def test_lmstudio_documented_errors(lmstudio: LMStudioEmulation) -> None:
    async with aiohttp.ClientSession(lmstudio.url) as http:
        json_object = {"model": "qwen2.5-7b-instruct", "messages": HELLO, "response_format": {"type": "json_object"}}
        async with http.post("/v1/chat/completions", json=json_object) as resp:
            assert resp.status == 400
            assert await resp.json() == {"error": "'response_format.type' must be 'json_schema' or 'text'"}
        async with http.post("/v1/chat/completions", json={"model": "nope", "messages": HELLO}) as resp:
            assert resp.status == 400
            assert (await resp.json())["error"]["code"] == "model_not_found"
        lmstudio.jit = False
        async with http.post("/api/v1/models/unload", json={"instance_id": "qwen2.5-7b-instruct"}) as resp:
            assert resp.status == 200
        async with http.get("/v1/models") as resp:
            assert (await resp.json())["data"] == []
        async with http.post("/v1/chat/completions", json={"model": "qwen2.5-7b-instruct", "messages": HELLO}) as resp:
            assert resp.status == 400
            assert (await resp.json())["error"]["message"] == NO_MODELS
        lmstudio.no_models_error = "string"
        async with http.post("/v1/embeddings", json={"model": "qwen2.5-7b-instruct", "input": "x"}) as resp:
            assert await resp.json() == {"error": NO_MODELS}
        async with http.get("/props") as resp:  # LM Studio answers unknown routes with 200
            assert resp.status == 200
            assert "Unexpected endpoint" in (await resp.json())["error"]


async def test_lmstudio_jit_load_evicts_the_previous_jit_model(lmstudio: LMStudioEmulation) -> None:
    async with aiohttp.ClientSession(lmstudio.url) as http:
        for key in ("gemma-3-4b-it", "text-embedding-nomic-embed-text-v1.5"):
            path = "/v1/embeddings" if key.startswith("text-") else "/v1/chat/completions"
            async with http.post(path, json={"model": key, "messages": HELLO, "input": "x"}) as resp:
                assert resp.status == 200
        async with http.get("/api/v0/models") as resp:
            states = {m["id"]: m["state"] for m in (await resp.json())["data"]}
    assert states == {
        "qwen2.5-7b-instruct": "loaded",  # loaded by hand, never evicted
        "gemma-3-4b-it": "not-loaded",
        "text-embedding-nomic-embed-text-v1.5": "loaded",
    }
