"""Conformance: langchain-ollama (Python, pinned in the ``conformance`` extra) against the shim.

Client: ``langchain-ollama==1.1.0`` (``ChatOllama``, ``OllamaLLM``, ``OllamaEmbeddings``) on
``ollama==0.6.3``. User flows, against the real llama-server (SmolLM2-135M):

- model check on construction (``validate_model_on_init``: ``/api/tags``), chat (``invoke``),
  streamed chat, text generation (``OllamaLLM`` on ``/api/generate``) streamed and whole,
  structured output (``with_structured_output(..., method="json_schema")``), embeddings;

against the scripted upstream (always thinks, always calls a tool):

- ``bind_tools`` + ``reasoning=True``: the tool call and the thinking reach the ``AIMessage``,
  streamed and not; the round trip sends a ``ToolMessage`` back and gets the final answer, and
  the upstream sees the result linked to the call it answers.

What real users hit and the shim must handle: a chat longer than the context keeps answering, a
Continue (final assistant message) adds only new text, images to a model without vision are a 400.
"""

from __future__ import annotations

import base64

import pytest
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, SystemMessage, ToolMessage
from langchain_ollama import ChatOllama, OllamaEmbeddings, OllamaLLM
from ollama import ResponseError
from pydantic import BaseModel

from support import always_tools as sc
from support.always_tools import ScriptedShim

SMOL = "SmolLM2-135M-Instruct.Q4_1"
GREEDY = {"temperature": 0.0, "seed": 1}
SMOL_EMBEDDING_LENGTH = 576
# One pixel PNG: enough for a client to send an image.
PNG = base64.b64encode(
    bytes.fromhex(
        "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
        "1f15c4890000000d49444154789c6360000002000100ffff03000006000557bfabd40000000049454e44ae426082"
    )
).decode()


class City(BaseModel):
    name: str
    country: str


def get_weather(city: str) -> str:
    """Get the current weather for a city."""
    return f"sunny in {city}"


def chat(url: str, num_predict: int = 8, **kwargs: object) -> ChatOllama:
    return ChatOllama(model=SMOL, base_url=url, num_predict=num_predict, **GREEDY, **kwargs)


# ---------------------------------------------------------------------------
# Real llama-server
# ---------------------------------------------------------------------------


def test_model_validation_lists_models(smol_url: str) -> None:
    chat(smol_url, validate_model_on_init=True)  # no error: the model is listed
    with pytest.raises(ValueError, match="not found in Ollama"):
        ChatOllama(model="no-such-model", base_url=smol_url, validate_model_on_init=True)


def test_chat_invoke(smol_url: str) -> None:
    answer = chat(smol_url).invoke([SystemMessage("Be brief."), HumanMessage("Say hello.")])
    assert isinstance(answer.content, str)
    assert answer.content.strip()
    assert answer.response_metadata["done_reason"] in ("stop", "length")
    assert answer.response_metadata["model_name"] == SMOL
    assert answer.usage_metadata is not None
    assert answer.usage_metadata["output_tokens"] > 0


def test_chat_stream(smol_url: str) -> None:
    chunks = list(chat(smol_url).stream("Say hello."))
    texts = [c.content for c in chunks if c.content]
    assert len(texts) >= 2  # really streamed
    assert [c.response_metadata.get("done") for c in chunks].count(True) == 1
    assert "".join(str(t) for t in texts).strip()


def test_generate_whole_and_streamed(smol_url: str) -> None:
    llm = OllamaLLM(model=SMOL, base_url=smol_url, num_predict=8, **GREEDY)
    whole = llm.invoke("Once upon a time")
    streamed = "".join(llm.stream("Once upon a time"))
    assert whole.strip()
    assert streamed == whole  # greedy, same seed


def test_structured_output_json_schema(smol_url: str) -> None:
    structured = chat(smol_url, num_predict=64).with_structured_output(City, method="json_schema")
    city = structured.invoke("Name one city in France and its country.")
    assert isinstance(city, City)
    assert city.name
    assert city.country


def test_json_mode(smol_url: str) -> None:
    answer = chat(smol_url, num_predict=24, format="json").invoke("A city in France as JSON with a key name.")
    assert isinstance(answer.content, str)
    assert answer.content.lstrip().startswith("{")  # grammar-constrained from the first token


def test_embeddings(embed_url: str) -> None:
    embedder = OllamaEmbeddings(model=SMOL, base_url=embed_url)
    docs = embedder.embed_documents(["the cat sat", "on the mat"])
    query = embedder.embed_query("the cat sat")
    assert [len(v) for v in docs] == [SMOL_EMBEDDING_LENGTH] * 2
    assert len(query) == SMOL_EMBEDDING_LENGTH
    assert docs[0] != docs[1]


# ---------------------------------------------------------------------------
# Scripted upstream: tools and thinking
# ---------------------------------------------------------------------------


def tool_chat(stack: ScriptedShim) -> ChatOllama:
    return ChatOllama(model=sc.MODEL, base_url=stack.url, reasoning=True)


def test_tool_call_and_thinking(scripted: ScriptedShim) -> None:
    answer = tool_chat(scripted).bind_tools([get_weather]).invoke("What is the weather in Paris?")
    assert answer.additional_kwargs.get("reasoning_content") == sc.THOUGHT
    assert [(c["name"], c["args"]) for c in answer.tool_calls] == [("get_weather", {"city": "Paris"})]
    sent = scripted.last_chat_body()
    assert [t["function"]["name"] for t in sent["tools"]] == ["get_weather"]


def test_streamed_tool_call_and_thinking(scripted: ScriptedShim) -> None:
    merged: AIMessageChunk | None = None
    for chunk in tool_chat(scripted).bind_tools([get_weather]).stream("What is the weather in Paris?"):
        merged = chunk if merged is None else merged + chunk
    assert merged is not None
    assert merged.additional_kwargs.get("reasoning_content") == sc.THOUGHT
    assert [(c["name"], c["args"]) for c in merged.tool_calls] == [("get_weather", {"city": "Paris"})]


def test_tool_round_trip(scripted: ScriptedShim) -> None:
    model = tool_chat(scripted).bind_tools([get_weather])
    history: list[HumanMessage | AIMessage | ToolMessage] = [HumanMessage("What is the weather in Paris?")]
    first = model.invoke(history)
    assert isinstance(first, AIMessage)
    assert len(first.tool_calls) == 1
    call = first.tool_calls[0]
    result = get_weather(**call["args"])
    history += [first, ToolMessage(result, tool_call_id=call["id"] or "")]
    final = model.invoke(history)
    assert final.content == f"{sc.FINAL_PREFIX} {result}"
    [exchange] = sc.tool_exchanges(scripted.last_chat_body())
    assert (exchange.call_name, exchange.call_arguments, exchange.result) == ("get_weather", {"city": "Paris"}, result)


# ---------------------------------------------------------------------------
# Issue 10's known defects
# ---------------------------------------------------------------------------


def long_history(turns: int) -> list[HumanMessage | AIMessage]:
    """A chat far longer than the 2048-token context of the test llama-server."""
    filler = "This sentence only makes the conversation long enough to overflow the context. " * 3
    history: list[HumanMessage | AIMessage] = []
    for turn in range(turns):
        history += [HumanMessage(f"Turn {turn}. {filler}"), AIMessage(f"Noted turn {turn}. {filler}")]
    return [*history, HumanMessage("Say hello.")]


def test_chat_longer_than_the_context_still_answers(smol_url: str) -> None:
    answer = chat(smol_url).invoke(long_history(60))
    assert isinstance(answer.content, str)
    assert answer.content.strip()


def test_continue_adds_only_new_text(smol_url: str) -> None:
    partial = "Zebras graze quietly while"
    answer = chat(smol_url).invoke([HumanMessage("Write one sentence about zebras."), AIMessage(partial)])
    assert isinstance(answer.content, str)
    assert not answer.content.startswith(partial)


def test_image_to_a_model_without_vision_is_a_400(smol_url: str) -> None:
    image = {"type": "image_url", "image_url": f"data:image/png;base64,{PNG}"}
    message = HumanMessage(content=[{"type": "text", "text": "What is this?"}, image])
    with pytest.raises(ResponseError) as err:
        chat(smol_url).invoke([message])
    assert err.value.status_code == 400
