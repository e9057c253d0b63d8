"""``/v1/messages`` and ``/v1/responses`` fit a long history into the model's context as ``/api/chat``
does (``routes.fitting.sent_fitted``): neither API has ``truncate``, and Ollama cuts there too.

Against the fault upstream as a generic backend (the estimate counts): a history past the listed
context reaches the backend as its tail (system first, the last message kept), streamed or not; a
backend's "prompt too long" refusal is followed by one retry cut to fit; a second refusal is the
API's own 400 in the backend's words. Forwarded natively (``/v1/messages`` to llama.cpp), a
refusal sends the conversation the translated way, cut to fit.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

from support.faults import LISTED_CONTEXT, MODEL, Answer, Fault, FaultUpstream
from support.shim import shim_in_loop
from test_fitting import LLAMA_REFUSAL, history

NAME = f"{MODEL}:latest"
SYSTEM = "Be brief."


def as_messages(stream: bool) -> dict[str, Any]:
    chat = history()
    return {"model": NAME, "max_tokens": 64, "stream": stream, "system": SYSTEM,
            "messages": [m for m in chat if m["role"] != "system"]}


def as_responses(stream: bool) -> dict[str, Any]:
    chat = history()
    return {"model": NAME, "stream": stream, "instructions": SYSTEM,
            "input": [{"role": m["role"], "content": m["content"]} for m in chat if m["role"] != "system"]}


APIS: dict[str, Callable[[bool], dict[str, Any]]] = {"/v1/messages": as_messages, "/v1/responses": as_responses}


async def post(url: str, path: str, body: dict[str, Any]) -> tuple[int, bytes]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as session, \
            session.post(url + path, json=body) as resp:
        return resp.status, await resp.read()


def error_message(raw: bytes) -> str:
    return str(json.loads(raw)["error"]["message"])


def assert_a_tail(kept: list[dict[str, Any]]) -> None:
    sent = history()
    assert 1 < len(kept) < len(sent)
    assert kept[0] == {"role": "system", "content": SYSTEM}
    assert [m["content"] for m in kept[1:]] == [m["content"] for m in sent[len(sent) - len(kept) + 1:]]


@pytest.mark.parametrize("stream", [True, False], ids=["streamed", "whole"])
@pytest.mark.parametrize("path", list(APIS))
async def test_a_long_history_is_cut_to_the_context(
    sized: str, upstream: FaultUpstream, path: str, stream: bool
) -> None:
    status, _ = await post(sized, path, APIS[path](stream))
    assert status == 200
    [call] = upstream.calls
    assert_a_tail(call.body["messages"])


@pytest.mark.parametrize("path", list(APIS))
async def test_a_short_history_is_sent_whole(sized: str, upstream: FaultUpstream, path: str) -> None:
    body = APIS[path](False)
    key = "messages" if path == "/v1/messages" else "input"
    body[key] = body[key][-3:]
    status, _ = await post(sized, path, body)
    assert status == 200
    assert len(upstream.calls[0].body["messages"]) == 4  # the system message and the three


@pytest.mark.parametrize("stream", [True, False], ids=["streamed", "whole"])
@pytest.mark.parametrize("path", list(APIS))
async def test_a_refused_history_is_sent_once_more_cut_to_fit(
    unsized: str, upstream: FaultUpstream, path: str, stream: bool
) -> None:
    upstream.script(Fault("status", status=400, message=LLAMA_REFUSAL))
    status, _ = await post(unsized, path, APIS[path](stream))
    assert status == 200
    first, second = (call.body["messages"] for call in upstream.calls)
    assert len(first) == len(history())
    assert_a_tail(second)


@pytest.mark.parametrize("path", list(APIS))
async def test_a_second_refusal_is_the_apis_400_in_the_backends_words(
    unsized: str, upstream: FaultUpstream, path: str
) -> None:
    upstream.script(*[Fault("status", status=400, message=LLAMA_REFUSAL)] * 2)
    status, raw = await post(unsized, path, APIS[path](False))
    assert status == 400
    assert error_message(raw) == LLAMA_REFUSAL
    assert len(upstream.calls) == 2


async def test_the_messages_error_keeps_anthropics_shape(unsized: str, upstream: FaultUpstream) -> None:
    upstream.script(*[Fault("status", status=400, message=LLAMA_REFUSAL)] * 2)
    _, raw = await post(unsized, "/v1/messages", as_messages(False))
    assert json.loads(raw) == {"type": "error", "error": {"type": "invalid_request_error", "message": LLAMA_REFUSAL}}


async def test_a_native_refusal_goes_the_translated_way_cut_to_fit(upstream: FaultUpstream) -> None:
    """llama.cpp serves /v1/messages itself; when it refuses the history as too long, the shim
    translates the request, which it can cut to fit."""
    upstream.model_fields = {"meta": {"n_ctx": LISTED_CONTEXT}}
    upstream.recorder_answer = Answer(status=400, body=json.dumps({"error": {"message": LLAMA_REFUSAL}}).encode())
    async with shim_in_loop("--backend", upstream.url, "--backend-kind", "llamacpp") as url:
        status, _ = await post(url, "/v1/messages", as_messages(True))
    assert status == 200
    assert [c.raw_path for c in upstream.raw_calls if c.method == "POST" and "messages" in c.raw_path] == [
        "/v1/messages"]
    [call] = upstream.calls
    assert_a_tail(call.body["messages"])
