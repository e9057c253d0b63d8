"""Custom models on ``/v1/messages`` and ``/count_tokens``: their layers reach the backend on both paths.

- Native: a ``FaultUpstream`` told to be llama.cpp (whose dialect speaks the Messages API) records
  the forwarded body (``raw_calls``) and answers it with ``recorder_answer``; a custom model whose
  layers the Anthropic body cannot carry goes to its chat completions instead (``calls``).
- Translated: the LM Studio emulation records the chat completion, which must be the one ``/api/chat``
  sends for the same conversation.
- ``customised_messages_body`` itself, table-driven.
- A real llama-server through the ``anthropic`` SDK (marked ``backend``): a custom model answers as
  its base model does with the layers spelled out, natively and translated.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import anthropic
import httpx
import msgspec
import pytest

from ollama_shim.dialect import LLAMACPP
from ollama_shim.translate.anthropic_customise import customised_messages_body
from ollama_shim.translate.customise import Customisation
from ollama_shim.wire import anthropic as am
from support.faults import MODEL, Answer, FaultUpstream
from support.llama import LlamaServer
from support.lmstudio import LMStudioEmulation
from support.shim import ShimThread, shim_in_loop

SYSTEM = "You are Mario from Super Mario Bros."
MESSAGES = [{"role": "user", "content": "Who are you?"}, {"role": "assistant", "content": "It's-a me, Mario!"}]
PARAMETERS = {"temperature": 0.25, "top_k": 20, "stop": ["<|eot|>"], "num_predict": 50, "num_ctx": 8192}
HELLO = {"role": "user", "content": "Hello"}
MESSAGE_ANSWER = {"id": "msg_1", "type": "message", "role": "assistant", "model": MODEL,
                  "content": [{"type": "text", "text": "Hi"}], "stop_reason": "end_turn", "stop_sequence": None,
                  "usage": {"input_tokens": 3, "output_tokens": 1}}


async def post(url: str, path: str, body: dict[str, Any]) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as session,
        session.post(url + path, json=body) as resp,
    ):
        return resp.status, json.loads(await resp.read())


async def create(url: str, name: str, base: str, **layers: Any) -> None:
    status, answer = await post(url, "/api/create", {"model": name, "from": base, "stream": False, **layers})
    assert status == 200, answer


# ---------------------------------------------------------------------------
# Native: the body forwarded to llama.cpp's own /v1/messages
# ---------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def llama_like(tmp_path: Path) -> AsyncIterator[tuple[str, FaultUpstream]]:
    async with FaultUpstream() as up, shim_in_loop("--backend", up.url, "--backend-kind", "llamacpp",
                                                   "--data-dir", str(tmp_path)) as url:
        up.recorder_answer = Answer(body=json.dumps(MESSAGE_ANSWER).encode())
        yield url, up


def forwarded(up: FaultUpstream, path: str = "/v1/messages") -> list[Any]:
    return [json.loads(c.body) for c in up.raw_calls if (c.method, c.raw_path) == ("POST", path)]


async def test_the_native_body_gets_the_base_model_and_the_layers(tmp_path: Path) -> None:
    async with llama_like(tmp_path) as (url, up):
        await create(url, "mario", MODEL, system=SYSTEM, messages=MESSAGES, parameters=PARAMETERS)
        status, answer = await post(url, "/v1/messages", {"model": "mario", "max_tokens": 9, "top_k": 5,
                                                          "temperature": None, "messages": [HELLO]})
        assert status == 200, answer
        (sent,) = forwarded(up)
        assert sent == {"model": MODEL, "system": SYSTEM, "messages": [*MESSAGES, HELLO], "max_tokens": 9,
                        "top_k": 5, "temperature": 0.25, "stop_sequences": ["<|eot|>"]}
        assert up.calls == []  # not translated


async def test_the_native_answer_carries_the_custom_name(tmp_path: Path) -> None:
    async with llama_like(tmp_path) as (url, _):
        await create(url, "mario", MODEL, system=SYSTEM)
        status, answer = await post(url, "/v1/messages", {"model": "mario", "max_tokens": 9, "messages": [HELLO]})
        assert (status, answer["model"]) == (200, "mario")


FALLBACKS = [
    # id, layers the Anthropic body cannot carry, a field of the chat completion that shows each
    ("seed", {"system": SYSTEM, "parameters": {"seed": 7}}, ("seed", 7)),
    ("repeat_penalty", {"system": SYSTEM, "parameters": {"repeat_penalty": 1.3}}, ("repeat_penalty", 1.3)),
    ("system-message", {"messages": [{"role": "system", "content": "Be brief."}]}, ("messages", None)),
]


@pytest.mark.parametrize(("layers", "field"), [f[1:] for f in FALLBACKS], ids=[f[0] for f in FALLBACKS])
async def test_a_layer_the_body_cannot_carry_is_translated_instead(
    tmp_path: Path, layers: dict[str, Any], field: tuple[str, Any]
) -> None:
    async with llama_like(tmp_path) as (url, up):
        await create(url, "mario", MODEL, **layers)
        status, answer = await post(url, "/v1/messages", {"model": "mario", "max_tokens": 9, "messages": [HELLO]})
        assert (status, answer["type"], answer["model"]) == (200, "message", "mario")
        assert forwarded(up) == []
        (call,) = up.calls
        assert call.body["model"] == MODEL
        key, value = field
        if value is not None:
            assert call.body[key] == value
        assert call.body["messages"][0]["role"] == "system"  # the custom system prompt, or message


async def test_a_backend_model_is_forwarded_as_it_came(tmp_path: Path) -> None:
    async with llama_like(tmp_path) as (url, up):
        body = {"model": MODEL, "max_tokens": 9, "messages": [HELLO]}
        status, _ = await post(url, "/v1/messages", body)
        assert status == 200
        assert forwarded(up) == [body]


async def test_native_count_tokens_gets_the_prompt_layers_only(tmp_path: Path) -> None:
    async with llama_like(tmp_path) as (url, up):
        up.recorder_answer = Answer(body=b'{"input_tokens": 42}')
        await create(url, "mario", MODEL, system=SYSTEM, messages=MESSAGES, parameters={"seed": 7, "top_k": 3})
        status, answer = await post(url, "/v1/messages/count_tokens", {"model": "mario", "messages": [HELLO]})
        assert (status, answer) == (200, {"input_tokens": 42})
        (sent,) = forwarded(up, "/v1/messages/count_tokens")
        assert sent == {"model": MODEL, "system": SYSTEM, "messages": [*MESSAGES, HELLO]}


# ---------------------------------------------------------------------------
# Translated: the chat completion is the one /api/chat sends
# ---------------------------------------------------------------------------

LMS_BASE = "qwen2.5-7b-instruct"


async def test_the_translated_request_is_the_api_chat_one(lmstudio: LMStudioEmulation, tmp_path: Path) -> None:
    async with shim_in_loop("--backend", lmstudio.url, "--data-dir", str(tmp_path)) as url:
        await create(url, "mario", LMS_BASE, system=SYSTEM, messages=MESSAGES, parameters=PARAMETERS)
        status, answer = await post(url, "/v1/messages", {"model": "mario", "max_tokens": 40, "top_k": 5,
                                                          "messages": [HELLO]})
        assert (status, answer["model"]) == (200, "mario")
        status, _ = await post(url, "/api/chat", {"model": "mario", "messages": [HELLO], "stream": False,
                                                  "options": {"num_predict": 40, "top_k": 5}})
        assert status == 200
        via_messages, via_chat = lmstudio.bodies("/v1/chat/completions")[-2:]
        assert via_messages["model"] == LMS_BASE
        assert via_messages["messages"] == [{"role": "system", "content": SYSTEM}, *MESSAGES, HELLO]
        for key in ("messages", "temperature", "top_k", "stop", "max_tokens"):
            assert via_messages.get(key) == via_chat.get(key), key


@pytest.mark.parametrize("own", ["system-field", "system-message"])
async def test_a_request_with_its_own_system_keeps_it(lmstudio: LMStudioEmulation, tmp_path: Path, own: str) -> None:
    mine = "Be brief."
    body: dict[str, Any] = {"model": "mario", "max_tokens": 9, "messages": [HELLO]}
    if own == "system-field":
        body["system"] = [{"type": "text", "text": mine}]
    else:
        body["messages"] = [{"role": "system", "content": mine}, HELLO]
    async with shim_in_loop("--backend", lmstudio.url, "--data-dir", str(tmp_path)) as url:
        await create(url, "mario", LMS_BASE, system=SYSTEM, messages=MESSAGES)
        status, _ = await post(url, "/v1/messages", body)
        assert status == 200
        sent = lmstudio.bodies("/v1/chat/completions")[-1]
        assert sent["messages"] == [{"role": "system", "content": mine}, *MESSAGES, HELLO]


async def test_the_count_estimate_includes_the_layers(lmstudio: LMStudioEmulation, tmp_path: Path) -> None:
    async with shim_in_loop("--backend", lmstudio.url, "--data-dir", str(tmp_path)) as url:
        await create(url, "mario", LMS_BASE, system=SYSTEM, messages=MESSAGES)
        spelled = {"model": LMS_BASE, "system": SYSTEM, "messages": [*MESSAGES, HELLO]}
        _, expected = await post(url, "/v1/messages/count_tokens", spelled)
        status, counted = await post(url, "/v1/messages/count_tokens", {"model": "mario", "messages": [HELLO]})
        assert (status, counted) == (200, expected)


# ---------------------------------------------------------------------------
# customised_messages_body
# ---------------------------------------------------------------------------

CUSTOM = Customisation(name="mario:latest", parent=MODEL, base=MODEL, system=SYSTEM,
                       messages=(("user", "Who are you?"), ("assistant", "It's-a me, Mario!")),
                       parameters={"temperature": 0.25, "top_p": 0.5, "top_k": 20, "num_predict": 50,
                                   "stop": ["<|eot|>"], "num_ctx": 8192})
LAYER = [{"role": "user", "content": "Who are you?"}, {"role": "assistant", "content": "It's-a me, Mario!"}]
SYSTEM_MESSAGE = {"role": "system", "content": "Mine."}
BODIES = [
    # id, request body (model and messages added), the customisation, the fields expected to differ
    ("all-defaults", {}, CUSTOM, {"system": SYSTEM, "messages": [*LAYER, HELLO], "temperature": 0.25, "top_p": 0.5,
                                  "top_k": 20, "max_tokens": 50, "stop_sequences": ["<|eot|>"]}),
    ("request-wins", {"temperature": 0.0, "top_p": 1.0, "top_k": 1, "max_tokens": 9, "stop_sequences": ["x"]},
     CUSTOM, {"system": SYSTEM, "messages": [*LAYER, HELLO]}),
    ("null-and-empty-are-none", {"temperature": None, "stop_sequences": []}, CUSTOM,
     {"system": SYSTEM, "messages": [*LAYER, HELLO], "temperature": 0.25, "top_p": 0.5, "top_k": 20,
      "max_tokens": 50, "stop_sequences": ["<|eot|>"]}),
    ("own-system-string", {"system": "Mine.", "max_tokens": 9}, dataclasses.replace(CUSTOM, parameters={}),
     {"messages": [*LAYER, HELLO]}),
    ("own-system-blocks", {"system": [{"type": "text", "text": "Mine."}]}, dataclasses.replace(CUSTOM, parameters={}),
     {"messages": [*LAYER, HELLO]}),
    ("empty-system-is-none", {"system": ""}, dataclasses.replace(CUSTOM, parameters={}, messages=()),
     {"system": SYSTEM}),
    ("own-system-message", {"messages": [SYSTEM_MESSAGE, HELLO]}, dataclasses.replace(CUSTOM, parameters={}),
     {"messages": [SYSTEM_MESSAGE, *LAYER, HELLO]}),
    ("no-layers", {}, Customisation(name="m:latest", parent=MODEL, base=MODEL), {}),
    ("num_predict-unlimited", {}, Customisation(name="m:latest", parent=MODEL, base=MODEL,
                                                parameters={"num_predict": -1}), {}),
]


@pytest.mark.parametrize(("body", "custom", "changed"), [b[1:] for b in BODIES], ids=[b[0] for b in BODIES])
def test_customised_messages_body(body: dict[str, Any], custom: Customisation, changed: dict[str, Any]) -> None:
    doc = {"model": MODEL, "messages": [HELLO], **body}
    req = msgspec.convert(doc, am.MessagesRequest)
    assert customised_messages_body(doc, req, custom, LLAMACPP) == {**doc, **changed}


UNEXPRESSIBLE = [
    ("seed", Customisation(name="m:latest", parent=MODEL, base=MODEL, parameters={"seed": 7})),
    ("min_p", Customisation(name="m:latest", parent=MODEL, base=MODEL, parameters={"min_p": 0.1})),
    ("system-message", Customisation(name="m:latest", parent=MODEL, base=MODEL, messages=(("system", "x"),))),
]


@pytest.mark.parametrize("custom", [u[1] for u in UNEXPRESSIBLE], ids=[u[0] for u in UNEXPRESSIBLE])
def test_an_unexpressible_layer_gives_none(custom: Customisation) -> None:
    doc = {"model": MODEL, "max_tokens": 9, "messages": [HELLO]}
    assert customised_messages_body(doc, msgspec.convert(doc, am.MessagesRequest), custom, LLAMACPP) is None


def test_parameters_are_left_out_of_a_count() -> None:
    doc = {"model": MODEL, "messages": [HELLO]}
    custom = dataclasses.replace(CUSTOM, parameters={"seed": 7, "temperature": 0.5})
    customised = customised_messages_body(doc, msgspec.convert(doc, am.CountTokensRequest), custom, LLAMACPP,
                                          sampling=False)
    assert customised == {**doc, "system": SYSTEM, "messages": [*LAYER, HELLO]}


# ---------------------------------------------------------------------------
# A real llama-server through the anthropic SDK
# ---------------------------------------------------------------------------

SMOL = "SmolLM2-135M-Instruct.Q4_1:latest"
PIRATE = "You are a pirate. Answer in one short sentence."
PIRATE_MESSAGES = [{"role": "user", "content": "Who are you?"}, {"role": "assistant", "content": "Captain Smol, arr."}]
TREASURE = {"role": "user", "content": "Where is the treasure?"}


@pytest.fixture(scope="module", params=["native", "translated"])
def pirate_shim(request: pytest.FixtureRequest, llama_single: LlamaServer,
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    shim = ShimThread("--backend", llama_single.url, "--data-dir", str(tmp_path_factory.mktemp("store")),
                      "--first-byte-timeout", "120",
                      "--translate-native-apis", str(request.param == "translated").lower())
    with shim as url:
        created = httpx.post(url + "/api/create", json={
            "model": "pirate", "from": SMOL, "system": PIRATE, "messages": PIRATE_MESSAGES, "stream": False,
            "parameters": {"temperature": 0, "top_k": 1}}, timeout=60)
        assert created.status_code == 200, created.text
        yield url


def test_a_custom_model_answers_as_its_base_with_the_layers_spelled_out(pirate_shim: str) -> None:
    with anthropic.Anthropic(base_url=pirate_shim, api_key="unused", max_retries=0) as client:
        custom = client.messages.create(model="pirate", max_tokens=12, messages=[TREASURE])
        spelled = client.messages.create(model=SMOL, max_tokens=12, system=PIRATE,
                                         messages=[*PIRATE_MESSAGES, TREASURE],
                                         extra_body={"temperature": 0, "top_k": 1})
    assert custom.model == "pirate"
    assert _prompt_tokens(custom) == _prompt_tokens(spelled)
    assert custom.content == spelled.content


def _prompt_tokens(message: anthropic.types.Message) -> int:
    """The whole prompt: llama-server counts the part its cache served apart (natively)."""
    return message.usage.input_tokens + (message.usage.cache_read_input_tokens or 0)


# ---------------------------------------------------------------------------
# /v1/responses: the same layering, always translated
# ---------------------------------------------------------------------------


async def test_a_responses_request_to_a_custom_model_is_the_api_chat_one(
    lmstudio: LMStudioEmulation, tmp_path: Path
) -> None:
    async with shim_in_loop("--backend", lmstudio.url, "--data-dir", str(tmp_path)) as url:
        await create(url, "mario", LMS_BASE, system=SYSTEM, messages=MESSAGES, parameters=PARAMETERS)
        status, answer = await post(url, "/v1/responses", {"model": "mario", "max_output_tokens": 40,
                                                           "input": "Hello"})
        assert (status, answer["model"]) == (200, "mario")
        status, _ = await post(url, "/api/chat", {"model": "mario", "messages": [HELLO], "stream": False,
                                                  "options": {"num_predict": 40}})
        assert status == 200
        via_responses, via_chat = lmstudio.bodies("/v1/chat/completions")[-2:]
        assert via_responses["model"] == LMS_BASE
        assert via_responses["messages"] == [{"role": "system", "content": SYSTEM}, *MESSAGES, HELLO]
        for key in ("messages", "top_k", "stop", "max_tokens"):
            assert via_responses.get(key) == via_chat.get(key), key
        assert via_responses["temperature"] == 1.0  # Ollama's Responses sends 1.0 when it is absent


async def test_responses_instructions_win_over_a_custom_system(lmstudio: LMStudioEmulation, tmp_path: Path) -> None:
    async with shim_in_loop("--backend", lmstudio.url, "--data-dir", str(tmp_path)) as url:
        await create(url, "mario", LMS_BASE, system=SYSTEM, messages=MESSAGES)
        status, _ = await post(url, "/v1/responses", {"model": "mario", "instructions": "Be brief.", "input": "Hello"})
        assert status == 200
        sent = lmstudio.bodies("/v1/chat/completions")[-1]
        assert sent["messages"] == [{"role": "system", "content": "Be brief."}, *MESSAGES, HELLO]
