"""Conformance: LlamaIndex's Ollama integrations against the shim.

Clients: ``llama-index-llms-ollama==0.11.0`` (``Ollama``) and ``llama-index-embeddings-ollama==0.10.0``
(``OllamaEmbedding``), pinned in the ``conformance`` extra. User flows, against the real
llama-server:

- ``metadata`` (the context window, read from ``/api/show``'s ``model_info`` and then sent as
  ``num_ctx`` on every request), ``complete``, ``chat``, ``stream_chat``, ``astream_chat``;
- ``structured_predict`` (a pydantic class sent as ``format``) and ``as_structured_llm``;
- embeddings of a query and of a batch of texts;

against the scripted upstream (always thinks, always calls a tool):

- ``chat_with_tools`` with ``thinking=True``: the ``ToolSelection`` and the ``ThinkingBlock``; the
  round trip appends the tool result (``role: tool`` without an id, as this client sends it) and
  gets the final answer; the upstream sees the result linked to the call it answers.
"""

from __future__ import annotations

import pytest
from llama_index.core.base.llms.types import ChatMessage, MessageRole, ThinkingBlock
from llama_index.core.prompts import PromptTemplate
from llama_index.core.tools import FunctionTool
from llama_index.embeddings.ollama import OllamaEmbedding
from llama_index.llms.ollama import Ollama
from pydantic import BaseModel

from support import always_tools as sc
from support.always_tools import ScriptedShim

SMOL = "SmolLM2-135M-Instruct.Q4_1"
SMOL_EMBEDDING_LENGTH = 576
SMOL_CONTEXT = 2048  # -c of the test llama-server
GREEDY = {"temperature": 0.0, "seed": 1}


class City(BaseModel):
    name: str
    country: str


def get_weather(city: str) -> str:
    """Get the current weather for a city."""
    return f"sunny in {city}"


def smol(url: str, num_predict: int = 8) -> Ollama:
    options = {"num_predict": num_predict, **GREEDY}
    return Ollama(model=SMOL, base_url=url, request_timeout=120, additional_kwargs=options)


# ---------------------------------------------------------------------------
# Real llama-server
# ---------------------------------------------------------------------------


def test_metadata_reads_the_context_window(smol_url: str) -> None:
    metadata = smol(smol_url).metadata
    assert metadata.context_window == SMOL_CONTEXT
    assert metadata.is_chat_model is True


def test_complete(smol_url: str) -> None:
    response = smol(smol_url).complete("Once upon a time")
    assert response.text.strip()


def test_chat(smol_url: str) -> None:
    messages = [ChatMessage(role=MessageRole.SYSTEM, content="Be brief."), ChatMessage(role="user", content="Hi.")]
    response = smol(smol_url).chat(messages)
    assert response.message.role == MessageRole.ASSISTANT
    assert (response.message.content or "").strip()
    assert response.raw is not None
    assert response.raw["done"] is True


def test_stream_chat_matches_chat(smol_url: str) -> None:
    llm = smol(smol_url)
    messages = [ChatMessage(role="user", content="Say hello.")]
    deltas = [r.delta for r in llm.stream_chat(messages) if r.delta]
    assert len(deltas) >= 2  # really streamed
    assert "".join(deltas) == llm.chat(messages).message.content


async def test_async_stream_chat(smol_url: str) -> None:
    llm = smol(smol_url)
    try:
        stream = await llm.astream_chat([ChatMessage(role="user", content="Say hello.")])
        responses = [r async for r in stream]
    finally:
        await llm.async_client.close()  # its event loop ends with the test
    assert (responses[-1].message.content or "").strip()


def test_structured_predict(smol_url: str) -> None:
    prompt = PromptTemplate("Name one city in {country} and its country.")
    city = smol(smol_url, num_predict=64).structured_predict(City, prompt, country="France")
    assert isinstance(city, City)
    assert city.name
    assert city.country


def test_structured_llm(smol_url: str) -> None:
    structured = smol(smol_url, num_predict=64).as_structured_llm(City)
    response = structured.chat([ChatMessage(role="user", content="Name one city in France and its country.")])
    assert isinstance(response.raw, City)


def test_embeddings(embed_url: str) -> None:
    embedder = OllamaEmbedding(model_name=SMOL, base_url=embed_url)
    batch = embedder.get_text_embedding_batch(["the cat sat", "on the mat"])
    query = embedder.get_query_embedding("the cat sat")
    assert [len(v) for v in batch] == [SMOL_EMBEDDING_LENGTH] * 2
    assert len(query) == SMOL_EMBEDDING_LENGTH
    assert batch[0] != batch[1]


# ---------------------------------------------------------------------------
# Scripted upstream: tools and thinking
# ---------------------------------------------------------------------------


@pytest.fixture
def weather_tool() -> FunctionTool:
    return FunctionTool.from_defaults(fn=get_weather)


def thinking_llm(stack: ScriptedShim) -> Ollama:
    # The context window is given: the scripted model's /api/show is not what is tested here.
    return Ollama(model=sc.MODEL, base_url=stack.url, thinking=True, context_window=8192, request_timeout=30)


def test_tool_call_and_thinking(scripted: ScriptedShim, weather_tool: FunctionTool) -> None:
    llm = thinking_llm(scripted)
    response = llm.chat_with_tools([weather_tool], user_msg="What is the weather in Paris?")
    [selection] = llm.get_tool_calls_from_response(response)
    assert (selection.tool_name, selection.tool_kwargs) == ("get_weather", {"city": "Paris"})
    thoughts = [b.content for b in response.message.blocks if isinstance(b, ThinkingBlock)]
    assert thoughts == [sc.THOUGHT]


def test_streamed_tool_call(scripted: ScriptedShim, weather_tool: FunctionTool) -> None:
    llm = thinking_llm(scripted)
    responses = list(llm.stream_chat_with_tools([weather_tool], user_msg="What is the weather in Paris?"))
    [selection] = llm.get_tool_calls_from_response(responses[-1])
    assert (selection.tool_name, selection.tool_kwargs) == ("get_weather", {"city": "Paris"})


def test_tool_round_trip(scripted: ScriptedShim, weather_tool: FunctionTool) -> None:
    llm = thinking_llm(scripted)
    history = [ChatMessage(role="user", content="What is the weather in Paris?")]
    first = llm.chat_with_tools([weather_tool], chat_history=history)
    [selection] = llm.get_tool_calls_from_response(first)
    result = str(weather_tool.call(**selection.tool_kwargs))
    history += [first.message, ChatMessage(role=MessageRole.TOOL, content=result)]
    final = llm.chat_with_tools([weather_tool], chat_history=history)
    assert final.message.content == f"{sc.FINAL_PREFIX} {result}"
    [exchange] = sc.tool_exchanges(scripted.last_chat_body())
    assert (exchange.call_name, exchange.call_arguments, exchange.result) == ("get_weather", {"city": "Paris"}, result)
