"""Long chats and "Continue" against the real llama-server with a 4096-token context.

A 60-turn chat is longer than the context: llama-server alone refuses it, the shim drops the
oldest turns (counting with the server's own template and tokenizer) and answers, streamed and
not; ``truncate: false`` gets Ollama's error. The same chat through the OpenAI SDK on
``/v1/chat/completions`` under the model's Ollama name is cut the same way, streamed and not, and so
is it through the Anthropic SDK on ``/v1/messages`` (natively forwarded, then translated once
llama-server refuses it, or translated from the start) and the Responses API. A
final assistant message is continued and the answer holds only the new text, where llama-server
alone repeats the partial text first. A generate ends with ``context``: the server's token ids of
the templated prompt and the answer.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest

from support import llama as llama_support
from support.llama import LlamaServer
from support.shim import ShimThread

pytestmark = pytest.mark.backend

SMOL = "SmolLM2-135M-Instruct.Q4_1:latest"
CONTEXT = 4096
GREEDY = {"temperature": 0, "seed": 1}
SYSTEM = {"role": "system", "content": "You are a terse assistant."}


def long_chat(turns: int = 60) -> list[dict[str, str]]:
    messages = [SYSTEM]
    for i in range(turns):
        messages.append({"role": "user", "content": f"Question {i}: describe object number {i} in the big "
                         "warehouse, where it is kept and why it matters to the inventory team."})
        messages.append({"role": "assistant", "content": f"Object {i} is painted a dull shade of blue and sits "
                         f"on shelf {i} near the loading bay; the inventory team counts it every week."})
    messages.append({"role": "user", "content": "Say hello."})
    return messages


@pytest.fixture(scope="module")
def server() -> Iterator[LlamaServer]:
    yield from llama_support.served(
        lambda: llama_support.single(llama_support.model_file(llama_support.SMOLLM2), "-c", str(CONTEXT), name="4k"))


@pytest.fixture(scope="module")
def shim(server: LlamaServer) -> Iterator[str]:
    with ShimThread("--backend", server.url) as url:
        yield url


def chat(url: str, body: dict[str, Any]) -> tuple[int, list[dict[str, Any]]]:
    """Status and the answer's JSON objects (one when not streamed)."""
    with httpx.Client(timeout=300) as client, client.stream("POST", url + "/api/chat", json=body) as resp:
        lines = [json.loads(line) for line in resp.iter_lines() if line.strip()]
    return resp.status_code, lines


def test_the_chat_is_too_long_for_llama_server_itself(server: LlamaServer) -> None:
    status, answer = server.post("/v1/chat/completions", {"messages": long_chat(), "max_tokens": 4})
    assert status == 400
    assert "exceeds the available context size" in answer["error"]["message"]


@pytest.mark.parametrize("stream", [True, False])
def test_a_60_turn_chat_answers(shim: str, stream: bool) -> None:
    body = {"model": SMOL, "messages": long_chat(), "stream": stream, "options": {**GREEDY, "num_predict": 8}}
    status, lines = chat(shim, body)
    assert status == 200, lines
    assert all("error" not in line for line in lines)
    done = lines[-1]
    assert done["done"] is True
    assert all(not line["done"] for line in lines[:-1])
    assert stream or len(lines) == 1
    # The prompt was cut to fit with room for the answer, and not much shorter than that.
    assert CONTEXT // 2 < done["prompt_eval_count"] <= CONTEXT - 8


def test_truncate_false_gets_ollamas_error(shim: str) -> None:
    body = {"model": SMOL, "messages": long_chat(), "stream": False, "truncate": False, "options": {"num_predict": 4}}
    status, lines = chat(shim, body)
    assert (status, lines) == (400, [{"error": "the input length exceeds the context length"}])


@pytest.mark.parametrize("stream", [True, False])
def test_a_60_turn_chat_answers_through_the_openai_sdk(shim: str, stream: bool) -> None:
    with openai.OpenAI(base_url=shim + "/v1", api_key="unused", max_retries=0, timeout=300) as client:
        if stream:
            chunks = list(client.chat.completions.create(
                model=SMOL, messages=long_chat(), max_tokens=8, temperature=0, seed=1, stream=True,
                stream_options={"include_usage": True}))
            text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
            usage = chunks[-1].usage
        else:
            completion = client.chat.completions.create(
                model=SMOL, messages=long_chat(), max_tokens=8, temperature=0, seed=1)
            text, usage = completion.choices[0].message.content or "", completion.usage
    assert text
    assert usage is not None
    # Cut to fit with room for max_tokens, and not much shorter than that.
    assert CONTEXT // 2 < usage.prompt_tokens <= CONTEXT - 8


@pytest.mark.parametrize(("native", "stream"), [(True, True), (False, False)],
                         ids=["native-streamed", "translated-whole"])
def test_a_60_turn_chat_answers_through_the_anthropic_sdk(server: LlamaServer, native: bool, stream: bool) -> None:
    """Claude Code's API: natively llama-server refuses the history, and the shim sends it translated, cut."""
    chat_turns = long_chat()
    with ShimThread("--backend", server.url, "--translate-native-apis", str(not native).lower()) as url, \
            anthropic.Anthropic(base_url=url, api_key="unused", max_retries=0, timeout=300) as client:
        kwargs: dict[str, Any] = {"model": SMOL, "max_tokens": 8, "system": SYSTEM["content"],
                                  "messages": chat_turns[1:]}
        if stream:
            with client.messages.stream(**kwargs) as events:
                message = events.get_final_message()
        else:
            message = client.messages.create(**kwargs)
    assert message.content
    assert CONTEXT // 2 < message.usage.input_tokens <= CONTEXT - 8


def test_a_60_turn_chat_answers_through_the_responses_api(shim: str) -> None:
    with openai.OpenAI(base_url=shim + "/v1", api_key="unused", max_retries=0, timeout=300) as client:
        *_, last = client.responses.create(model=SMOL, max_output_tokens=16, temperature=0, stream=True,
                                           instructions=SYSTEM["content"], input=long_chat()[1:])
    assert last.type in ("response.completed", "response.incomplete")  # incomplete: a length stop
    usage = last.response.usage
    assert usage is not None
    assert CONTEXT // 2 < usage.input_tokens <= CONTEXT - 16


CONTINUE = [{"role": "user", "content": "Write a short poem about flowers."},
            {"role": "assistant", "content": "Roses are red, violets"}]


def test_llama_server_itself_repeats_the_partial_answer(server: LlamaServer) -> None:
    status, answer = server.post("/v1/chat/completions", {"messages": CONTINUE, "max_tokens": 8, **GREEDY})
    assert status == 200
    assert answer["choices"][0]["message"]["content"].startswith("Roses are red, violets")


@pytest.mark.parametrize("stream", [True, False])
def test_continue_adds_only_new_text(shim: str, server: LlamaServer, stream: bool) -> None:
    _, direct = server.post("/v1/chat/completions", {"messages": CONTINUE, "max_tokens": 8, **GREEDY})
    status, lines = chat(shim, {"model": SMOL, "messages": CONTINUE, "stream": stream,
                                "options": {**GREEDY, "num_predict": 8}})
    assert status == 200
    text = "".join(line["message"]["content"] for line in lines)
    assert not text.startswith("Roses")
    assert text == direct["choices"][0]["message"]["content"].removeprefix("Roses are red, violets")


@pytest.mark.parametrize("stream", [True, False])
def test_generate_ends_with_the_conversation_as_token_ids(shim: str, server: LlamaServer, stream: bool) -> None:
    body = {"model": SMOL, "prompt": "Say hello.", "stream": stream, "options": {**GREEDY, "num_predict": 6}}
    with httpx.Client(timeout=300) as client:
        lines = [json.loads(line) for line in client.post(shim + "/api/generate", json=body).text.splitlines()]
    done = lines[-1]
    answer = "".join(line["response"] for line in lines)
    _, rendered = server.post("/apply-template", {"messages": [{"role": "user", "content": "Say hello."}]})
    _, tokens = server.post("/tokenize", {"content": rendered["prompt"] + answer})
    assert done["done"] is True
    assert done["context"] == tokens["tokens"]
    assert len(done["context"]) > done["eval_count"] > 0
    assert all("context" not in line for line in lines[:-1])
