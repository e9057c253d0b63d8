"""Conformance: LiteLLM's Ollama providers against the shim.

Client: ``litellm==1.110.2`` (pinned in the ``conformance`` extra), with its bundled model cost
map (``LITELLM_LOCAL_MODEL_COST_MAP``: no download at import). Both prefixes are driven: ``ollama/``
(LiteLLM turns the chat into a prompt for ``/api/generate``) and ``ollama_chat/`` (``/api/chat``).
User flows, against the real llama-server:

- the model list (``get_valid_models`` with ``check_provider_endpoint``: ``/api/tags``) and
  ``get_model_info`` (``/api/show``: ``supports_function_calling`` from ``template``, context from
  ``model_info``);
- completion and streamed completion on both prefixes; structured output (``response_format``
  with a JSON schema) on both; embeddings (``/api/embed``);

against the scripted upstream (always thinks, always calls a tool):

- ``ollama_chat/`` with ``tools`` and ``reasoning_effort``, streamed and not: the tool call and the
  ``reasoning_content`` come back; the round trip sends the ``tool`` message back and gets the
  final answer, and the upstream sees the result linked to its call.

``get_model_info`` for a router model gives the same ``supports_function_calling`` whether it is
loaded or not, from its first listing: llama.cpp says what a template supports only once the model
is loaded, and until then the shim reads it from the model's GGUF file.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # the bundled map; no download

import litellm
from litellm.utils import get_valid_models

from support import always_tools as sc
from support.always_tools import ScriptedShim

# LiteLLM's own TypedDicts trip a pydantic warning when a provider module loads lazily.
pytestmark = pytest.mark.filterwarnings(r"ignore:Items? .* (is|are) using the `ReadOnly` qualifier:UserWarning")

SMOL = "SmolLM2-135M-Instruct.Q4_1"
GEMMA = "gemma-3-270m-q4_k_m"
SMOL_EMBEDDING_LENGTH = 576
SMOL_CONTEXT = 2048  # -c of the test llama-server
GREEDY: dict[str, Any] = {"temperature": 0, "seed": 1}
HELLO = [{"role": "user", "content": "Say hello."}]
PREFIXES = ("ollama", "ollama_chat")
CITY_SCHEMA = {
    "type": "json_schema",
    "json_schema": {
        "name": "city",
        "schema": {
            "type": "object",
            "properties": {"name": {"type": "string"}, "country": {"type": "string"}},
            "required": ["name", "country"],
        },
    },
}
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather for a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def get_weather(city: str) -> str:
    return f"sunny in {city}"


def model_info(model: str, api_base: str) -> Any:
    """``get_model_info`` as a process's first call sees it: LiteLLM keeps each answer for the
    life of the process, so whatever the shim said at that moment (loaded or not) sticks."""
    litellm.get_model_info.cache_clear()
    litellm.utils.cached_get_model_info_helper.cache_clear()
    return litellm.get_model_info(model, api_base=api_base)


# ---------------------------------------------------------------------------
# Real llama-server
# ---------------------------------------------------------------------------


def test_model_list(smol_url: str) -> None:
    models = get_valid_models(check_provider_endpoint=True, custom_llm_provider="ollama", api_base=smol_url)
    assert models == [f"ollama/{SMOL}:latest"]


def test_get_model_info(smol_url: str) -> None:
    info = model_info(f"ollama/{SMOL}", smol_url)
    assert info["max_input_tokens"] == SMOL_CONTEXT
    assert info["litellm_provider"] == "ollama"
    assert info["supports_function_calling"] is False  # SmolLM2's own template has no tools


@pytest.mark.parametrize("prefix", PREFIXES)
def test_completion(smol_url: str, prefix: str) -> None:
    response = litellm.completion(model=f"{prefix}/{SMOL}", messages=HELLO, api_base=smol_url, max_tokens=8, **GREEDY)
    choice = response.choices[0]
    assert isinstance(choice.message.content, str)
    assert choice.message.content.strip()
    assert response.usage.completion_tokens > 0


@pytest.mark.parametrize("prefix", PREFIXES)
def test_streamed_completion(smol_url: str, prefix: str) -> None:
    chunks = list(litellm.completion(model=f"{prefix}/{SMOL}", messages=HELLO, api_base=smol_url, max_tokens=8,
                                     stream=True, **GREEDY))
    texts = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(texts) >= 2  # really streamed
    whole = litellm.completion(model=f"{prefix}/{SMOL}", messages=HELLO, api_base=smol_url, max_tokens=8, **GREEDY)
    assert "".join(texts) == whole.choices[0].message.content


@pytest.mark.parametrize("prefix", PREFIXES)
def test_structured_output(smol_url: str, prefix: str) -> None:
    response = litellm.completion(model=f"{prefix}/{SMOL}", api_base=smol_url, max_tokens=64,
                                  messages=[{"role": "user", "content": "Name one city in France and its country."}],
                                  response_format=CITY_SCHEMA, **GREEDY)
    city = json.loads(response.choices[0].message.content)
    assert set(city) == {"name", "country"}


def test_embedding(embed_url: str) -> None:
    response = litellm.embedding(model=f"ollama/{SMOL}", input=["the cat sat", "on the mat"], api_base=embed_url)
    vectors = [item["embedding"] for item in response.data]
    assert [len(v) for v in vectors] == [SMOL_EMBEDDING_LENGTH] * 2
    assert vectors[0] != vectors[1]


def test_model_info_is_the_same_loaded_or_not(router_url: str) -> None:
    short: dict[str, Any] = {"messages": HELLO, "api_base": router_url, "max_tokens": 2, **GREEDY}
    litellm.completion(model=f"ollama_chat/{GEMMA}", **short)  # SmolLM2 unloaded (at most one model)
    unloaded = model_info(f"ollama/{SMOL}", router_url)
    litellm.completion(model=f"ollama_chat/{SMOL}", **short)
    loaded = model_info(f"ollama/{SMOL}", router_url)
    assert unloaded["supports_function_calling"] == loaded["supports_function_calling"]


# ---------------------------------------------------------------------------
# Scripted upstream: tools and thinking
# ---------------------------------------------------------------------------


def ask_weather(stack: ScriptedShim, messages: list[dict[str, Any]], *, stream: bool = False) -> Any:
    response = litellm.completion(model=f"ollama_chat/{sc.MODEL}", messages=messages, api_base=stack.url,
                                  tools=[WEATHER_TOOL], reasoning_effort="low", stream=stream)
    if stream:
        return litellm.stream_chunk_builder(list(response), messages=messages)
    return response


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_tool_call_and_thinking(scripted: ScriptedShim, stream: bool) -> None:
    response = ask_weather(scripted, [{"role": "user", "content": "What is the weather in Paris?"}], stream=stream)
    message = response.choices[0].message
    assert response.choices[0].finish_reason == "tool_calls"
    assert message.reasoning_content == sc.THOUGHT
    calls = [(c.function.name, json.loads(c.function.arguments)) for c in message.tool_calls]
    assert calls == [("get_weather", {"city": "Paris"})]
    assert scripted.last_chat_body()["tools"][0]["function"]["name"] == "get_weather"


def test_tool_round_trip(scripted: ScriptedShim) -> None:
    messages: list[dict[str, Any]] = [{"role": "user", "content": "What is the weather in Paris?"}]
    first = ask_weather(scripted, messages).choices[0].message
    [call] = first.tool_calls
    result = get_weather(**json.loads(call.function.arguments))
    messages += [first.model_dump(), {"role": "tool", "tool_call_id": call.id, "content": result}]
    final = ask_weather(scripted, messages).choices[0].message
    assert final.content == f"{sc.FINAL_PREFIX} {result}"
    [exchange] = sc.tool_exchanges(scripted.last_chat_body())
    assert (exchange.call_name, exchange.call_arguments, exchange.result) == ("get_weather", {"city": "Paris"}, result)
