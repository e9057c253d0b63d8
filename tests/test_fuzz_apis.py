"""Structured fuzzing of ``/v1/messages``, ``/v1/messages/count_tokens``, ``/v1/responses``,
``/api/create`` and ``/api/copy``: whatever JSON a client sends, the answer is a 2xx, or a 4xx in
the shape of that API (Anthropic's ``{"type": "error", "error": {"type", "message"}}``, OpenAI's
``{"error": {"message", "type", "param", "code"}}``, Ollama's ``{"error": "<text>"}``); never a 500.
Bodies go through a running shim with a well-behaved backend behind it, as in ``test_fuzz_chat``.
Also here: what the Messages API does with a prefill on a backend that does not repeat it."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from hypothesis import given
from hypothesis import strategies as st

from support.faults import MODEL, FaultUpstream
from support.shim import shim_in_loop
from test_fuzz_chat import FUZZ, arguments, big_numbers, images, json_values

Shape = Callable[[Any], bool]


def _anthropic_error(answer: Any) -> bool:
    return (isinstance(answer, dict) and list(answer) == ["type", "error"] and answer["type"] == "error"
            and isinstance(answer["error"], dict) and set(answer["error"]) == {"type", "message"}
            and all(isinstance(v, str) for v in answer["error"].values()))


def _openai_error(answer: Any) -> bool:
    return (isinstance(answer, dict) and list(answer) == ["error"] and isinstance(answer["error"], dict)
            and set(answer["error"]) == {"message", "type", "param", "code"}
            and isinstance(answer["error"]["message"], str))


def _ollama_error(answer: Any) -> bool:
    return isinstance(answer, dict) and list(answer) == ["error"] and isinstance(answer["error"], str)


ERROR_SHAPES: dict[str, Shape] = {
    "/v1/messages": _anthropic_error,
    "/v1/messages/count_tokens": _anthropic_error,
    "/v1/responses": _openai_error,
    "/api/create": _ollama_error,
    "/api/copy": _ollama_error,
}

text = st.text(max_size=12)
numbers = big_numbers | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
maybe = st.none() | json_values  # a field of any type at all, now and then

# -- /v1/messages -------------------------------------------------------------------------------------
image_sources = st.fixed_dictionaries({}, optional={
    "type": st.sampled_from(["base64", "url", "file", ""]) | text, "media_type": text, "data": images, "url": text})
inner_blocks = st.fixed_dictionaries(
    {"type": st.sampled_from(["text", "image"])}, optional={"text": text, "source": image_sources})
blocks = st.fixed_dictionaries(
    {"type": st.sampled_from(["text", "image", "tool_use", "tool_result", "thinking", "redacted_thinking",
                              "document"]) | text},
    optional={
        "text": text, "source": image_sources, "id": text, "name": text,
        "input": json_values | st.dictionaries(text, json_values, max_size=3), "tool_use_id": text,
        "content": text | st.lists(inner_blocks, max_size=2), "is_error": st.booleans(), "thinking": text,
        "signature": text,
    },
)
anthropic_messages = st.lists(
    st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant", "system", "tool", "USER"]) | text,
                           "content": text | st.lists(blocks, max_size=3)}),
    max_size=5,
)
anthropic_tools = st.lists(st.fixed_dictionaries({}, optional={
    "name": text, "description": text, "input_schema": st.dictionaries(text, json_values, max_size=3),
    "type": st.sampled_from(["custom", "web_search_20250305"]) | text}), max_size=2)
messages_bodies = st.fixed_dictionaries(
    {"model": st.just(MODEL), "messages": anthropic_messages},
    optional={
        "max_tokens": numbers, "stream": st.booleans(), "system": text | st.lists(inner_blocks, max_size=2),
        "stop_sequences": st.lists(text, max_size=3), "temperature": numbers, "top_p": numbers, "top_k": numbers,
        "tools": anthropic_tools,
        "tool_choice": st.fixed_dictionaries({"type": st.sampled_from(["auto", "any", "tool", "none"]) | text},
                                             optional={"name": text}),
        "thinking": st.fixed_dictionaries({"type": st.sampled_from(["enabled", "disabled", "adaptive"]) | text},
                                          optional={"budget_tokens": numbers}),
        "output_config": st.fixed_dictionaries({}, optional={"effort": st.sampled_from(["low", "xhigh"]) | text}),
        "metadata": maybe,
    },
)

# -- /v1/responses ------------------------------------------------------------------------------------
parts = st.fixed_dictionaries(
    {"type": st.sampled_from(["input_text", "output_text", "input_image", "refusal", "input_file"]) | text},
    optional={"text": text, "refusal": text, "detail": text,
              "image_url": st.sampled_from(["data:image/png;base64,AAAA", "data:,x", "https://x/y.png"]) | text},
)
items = st.fixed_dictionaries({}, optional={
    "type": st.sampled_from(["message", "function_call", "function_call_output", "reasoning"]) | text,
    "role": st.sampled_from(["user", "assistant", "system", "developer"]) | text,
    "content": text | st.lists(parts, max_size=2), "call_id": text, "name": text,
    "arguments": arguments.map(lambda a: a if isinstance(a, str) else json.dumps(a)),
    "output": text | st.lists(parts, max_size=2), "summary": st.lists(parts, max_size=2),
    "encrypted_content": text,
})
response_tools = st.lists(st.fixed_dictionaries(
    {"type": st.sampled_from(["function", "web_search"]) | text},
    optional={"name": text, "description": text, "strict": st.booleans(),
              "parameters": st.dictionaries(text, json_values, max_size=3)}), max_size=2)
responses_bodies = st.fixed_dictionaries(
    {"model": st.just(MODEL), "input": text | st.lists(items, max_size=5)},
    optional={
        "instructions": text, "tools": response_tools,
        "tool_choice": st.sampled_from(["none", "auto", "required"]) | text | st.dictionaries(text, json_values),
        "parallel_tool_calls": st.booleans(), "max_output_tokens": numbers, "temperature": numbers, "top_p": numbers,
        "reasoning": st.fixed_dictionaries({}, optional={"effort": st.sampled_from(["low", "none", "max"]) | text,
                                                         "summary": text}),
        "text": st.fixed_dictionaries({}, optional={"format": st.fixed_dictionaries(
            {"type": st.sampled_from(["text", "json_object", "json_schema"]) | text},
            optional={"name": text, "schema": st.dictionaries(text, json_values, max_size=3), "strict": st.booleans()}),
            "verbosity": text}),
        "stream": st.booleans(), "store": st.booleans(), "truncation": text,
        "metadata": st.dictionaries(text, text, max_size=2), "user": text, "include": st.lists(text, max_size=2),
    },
)

# -- /api/create and /api/copy ------------------------------------------------------------------------
PARAMETER_NAMES = ["temperature", "num_ctx", "stop", "seed", "top_k", "num_predict", "mirostat", "use_mmap"]
names = st.sampled_from([MODEL, "fuzz-a", "fuzz-b:tag", "fuzz-a:latest", "", "a/b/c", "x:", "../x", "UPPER"]) | text
create_bodies = st.fixed_dictionaries(
    {"model": names},
    optional={
        "from": names, "system": text, "license": text | st.lists(text, max_size=2), "template": text,
        "parameters": st.dictionaries(st.sampled_from(PARAMETER_NAMES) | text, json_values | big_numbers, max_size=4),
        "messages": st.lists(st.fixed_dictionaries({"role": st.sampled_from(["system", "user", "assistant"]) | text,
                                                    "content": text}), max_size=3),
        "stream": st.booleans(), "quantize": text, "files": st.dictionaries(text, text, max_size=1),
        "adapters": st.dictionaries(text, text, max_size=1), "modelfile": text,
    },
)
copy_bodies = st.fixed_dictionaries({}, optional={"source": names | maybe, "destination": names | maybe})

BODIES = {
    "/v1/messages": messages_bodies,
    "/v1/messages/count_tokens": messages_bodies,
    "/v1/responses": responses_bodies,
    "/api/create": create_bodies,
    "/api/copy": copy_bodies,
}


async def answer_is_well_formed(session: aiohttp.ClientSession, url: str, path: str, body: bytes) -> None:
    async with session.post(url + path, data=body) as resp:
        raw = await resp.read()
        assert resp.status < 500, (resp.status, raw, body[:500])
        if resp.status >= 400:
            assert ERROR_SHAPES[path](json.loads(raw)), raw


@pytest.mark.parametrize("path", BODIES)
@FUZZ
@given(data=st.data())
async def test_any_structured_request_is_answered_without_a_server_error(path: str, data: st.DataObject) -> None:
    body = data.draw(BODIES[path])
    async with (
        FaultUpstream() as upstream,
        shim_in_loop("--backend", upstream.url, "--backend-kind", "generic") as url,
        aiohttp.ClientSession() as session,
    ):
        await answer_is_well_formed(session, url, path, json.dumps(body).encode())


@pytest.mark.parametrize("path", BODIES)
@FUZZ
@given(body=json_values | st.binary(max_size=40))
async def test_any_body_at_all_is_answered_without_a_server_error(path: str, body: Any) -> None:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    async with (
        FaultUpstream() as upstream,
        shim_in_loop("--backend", upstream.url, "--backend-kind", "generic") as url,
        aiohttp.ClientSession() as session,
    ):
        await answer_is_well_formed(session, url, path, data)


async def test_a_prefill_is_not_cut_from_an_answer_the_backend_did_not_repeat_it_in() -> None:
    """A backend that does not echo a prefill (here: any but llama.cpp) may well begin its continuation
    with the same words: they are the answer and stay, as on ``/api/chat``."""
    body = {"model": MODEL, "max_tokens": 8,
            "messages": [{"role": "user", "content": "count"}, {"role": "assistant", "content": "one two"}]}
    async with (
        FaultUpstream() as upstream,  # answers "one two three ..." whatever it is asked
        shim_in_loop("--backend", upstream.url, "--backend-kind", "generic") as url,
        aiohttp.ClientSession() as session,
        session.post(url + "/v1/messages", json=body) as resp,
    ):
        answer = await resp.json()
    assert answer["content"][0]["text"].startswith("one two three")
