"""The fallback for a backend whose context the shim does not know: its "prompt too long" refusal
before the first byte is followed by one retry cut to fit (``routes.fitting.sent_fitted``), or by
Ollama's 400. Against the scripted upstream (a generic backend: no tokenizer, no context listed).
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest

from support.faults import MODEL, Fault, FaultUpstream

LLAMA_REFUSAL = "request (9000 tokens) exceeds the available context size (4096 tokens), try increasing it"
VLLM_REFUSAL = ("This model's maximum context length is 4096 tokens. However, you requested 9100 tokens "
                "(9000 in the messages, 100 in the completion).")


def history(turns: int = 20) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": "Be brief."}]
    for i in range(turns):
        messages.append({"role": "user", "content": f"question {i} " + "x" * 600})
        messages.append({"role": "assistant", "content": f"answer {i} " + "y" * 600})
    messages.append({"role": "user", "content": "last question"})
    return messages


async def post(url: str, body: dict[str, Any]) -> tuple[int, list[dict[str, Any]]]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as session, \
            session.post(url + "/api/chat", json=body) as resp:
        raw = await resp.read()
    return resp.status, [json.loads(line) for line in raw.splitlines() if line.strip()]


@pytest.mark.parametrize("stream", [True, False])
@pytest.mark.parametrize("refusal", [LLAMA_REFUSAL, VLLM_REFUSAL])
async def test_a_refused_chat_is_sent_once_more_cut_to_fit(
    unsized: str, upstream: FaultUpstream, stream: bool, refusal: str
) -> None:
    upstream.script(Fault("status", status=400, message=refusal))
    sent = history()
    status, lines = await post(unsized, {"model": MODEL, "messages": sent, "stream": stream})
    assert status == 200
    assert lines[-1]["done"] is True
    assert "error" not in lines[-1]
    first, second = (call.body["messages"] for call in upstream.calls)
    assert len(first) == len(sent)
    assert 1 < len(second) < len(sent)
    assert second[0] == {"role": "system", "content": "Be brief."}
    assert second[-1] == {"role": "user", "content": "last question"}
    assert second[1:] == first[len(first) - len(second) + 1:]  # a tail of the chat, after the system message


async def test_the_retry_keeps_room_for_the_answer(unsized: str, upstream: FaultUpstream) -> None:
    upstream.script(Fault("status", status=400, message=LLAMA_REFUSAL))
    await post(unsized, {"model": MODEL, "messages": history(), "stream": False, "options": {"num_predict": 2000}})
    fewer = len(upstream.calls[1].body["messages"])
    upstream.calls.clear()
    upstream.script(Fault("status", status=400, message=LLAMA_REFUSAL))
    await post(unsized, {"model": MODEL, "messages": history(), "stream": False, "options": {"num_predict": 10}})
    assert fewer < len(upstream.calls[1].body["messages"])


@pytest.mark.parametrize("stream", [True, False])
async def test_truncate_false_answers_ollamas_error_without_a_retry(
    unsized: str, upstream: FaultUpstream, stream: bool
) -> None:
    upstream.script(Fault("status", status=400, message=LLAMA_REFUSAL))
    status, lines = await post(unsized, {"model": MODEL, "messages": history(), "stream": stream, "truncate": False})
    assert (status, lines) == (400, [{"error": "the input length exceeds the context length"}])
    assert len(upstream.calls) == 1


async def test_a_second_refusal_is_passed_on_as_400(unsized: str, upstream: FaultUpstream) -> None:
    upstream.script(*[Fault("status", status=500, message=LLAMA_REFUSAL)] * 2)
    status, lines = await post(unsized, {"model": MODEL, "messages": history(), "stream": False})
    assert (status, lines) == (400, [{"error": LLAMA_REFUSAL}])
    assert len(upstream.calls) == 2


async def test_a_refusal_that_names_no_context_is_passed_on(unsized: str, upstream: FaultUpstream) -> None:
    refusal = "the request exceeds the available context size, try increasing it"
    upstream.script(Fault("status", status=500, message=refusal))
    status, lines = await post(unsized, {"model": MODEL, "messages": history(), "stream": False})
    assert (status, lines) == (400, [{"error": refusal}])
    assert len(upstream.calls) == 1


async def test_a_single_message_that_does_not_fit_is_not_retried(unsized: str, upstream: FaultUpstream) -> None:
    upstream.script(Fault("status", status=400, message=LLAMA_REFUSAL))
    one = [{"role": "user", "content": "x"}]
    status, lines = await post(unsized, {"model": MODEL, "messages": one, "stream": True})
    assert (status, lines) == (400, [{"error": LLAMA_REFUSAL}])
    assert len(upstream.calls) == 1


async def test_other_errors_are_not_retried(unsized: str, upstream: FaultUpstream) -> None:
    upstream.script(Fault("status", status=500, message="out of memory"))
    status, lines = await post(unsized, {"model": MODEL, "messages": history(), "stream": False})
    assert (status, lines) == (500, [{"error": "out of memory"}])
    assert len(upstream.calls) == 1


async def test_a_short_chat_is_sent_whole(unsized: str, upstream: FaultUpstream) -> None:
    sent = history(2)
    status, _ = await post(unsized, {"model": MODEL, "messages": sent, "stream": False,
                                     "options": {"num_ctx": 100_000}})
    assert status == 200
    assert len(upstream.calls[0].body["messages"]) == len(sent)


async def test_num_ctx_cuts_the_chat_ahead_of_time(unsized: str, upstream: FaultUpstream) -> None:
    status, _ = await post(unsized, {"model": MODEL, "messages": history(), "stream": False,
                                  "options": {"num_ctx": 2048, "num_predict": 100}})
    kept = upstream.calls[0].body["messages"]
    assert status == 200
    assert len(upstream.calls) == 1
    assert 1 < len(kept) < len(history())
    assert kept[0]["role"] == "system"
