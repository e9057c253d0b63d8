"""``/v1/chat/completions`` under an Ollama name fits a long history into the model's context as
``/api/chat`` does (``routes.fitting.fit_forwarded``): the oldest messages go, system and
``developer`` messages and the last message stay, ``max_tokens``/``max_completion_tokens`` is the
room kept for the answer, and everything else in the body reaches the backend as the client sent
it. A backend's "prompt too long" refusal before the first byte is followed by one retry cut to
fit. Against the fault upstream as a generic backend (no tokenizer: the estimate counts), with a
context listed (``max_model_len``) or not.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest

from support.faults import LISTED_CONTEXT as CONTEXT
from support.faults import MODEL, Fault, FaultUpstream
from test_fitting import LLAMA_REFUSAL, VLLM_REFUSAL, history

NAME = f"{MODEL}:latest"  # the model's Ollama name


async def post(url: str, body: dict[str, Any]) -> tuple[int, bytes]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as session, \
            session.post(url + "/v1/chat/completions", json=body) as resp:
        return resp.status, await resp.read()


def answered(stream: bool, raw: bytes) -> str:
    """The answer's text, from the event stream or the JSON object the backend sent."""
    if not stream:
        return str(json.loads(raw)["choices"][0]["message"]["content"])
    frames = [line.removeprefix(b"data: ") for line in raw.splitlines() if line.startswith(b"data: ")]
    return "".join(json.loads(f)["choices"][0]["delta"].get("content", "") for f in frames if f != b"[DONE]").strip()




def assert_a_tail(sent: list[dict[str, Any]], kept: list[dict[str, Any]]) -> None:
    assert 1 < len(kept) < len(sent)
    assert kept[0] == sent[0]  # the system message
    assert kept[1:] == sent[len(sent) - len(kept) + 1:]  # then the newest messages, the last one included


@pytest.mark.parametrize("stream", [True, False])
async def test_a_long_history_is_cut_to_the_context(sized: str, upstream: FaultUpstream, stream: bool) -> None:
    sent = history()
    status, raw = await post(sized, {"model": NAME, "messages": sent, "stream": stream})
    assert status == 200
    assert answered(stream, raw) == "one two three four five six seven eight"
    assert len(upstream.calls) == 1
    assert_a_tail(sent, upstream.calls[0].body["messages"])


async def test_fields_the_shim_does_not_know_reach_the_backend(sized: str, upstream: FaultUpstream) -> None:
    sent = history()
    sent[-2] = {**sent[-2], "reasoning_content": "thought about it", "x_note": [1, 2]}
    extra = {"x_vendor": {"deep": [1, {"a": None}]}, "stop": "\n\n", "logit_bias": {"42": -100}, "n": 1}
    status, _ = await post(sized, {"model": NAME, "messages": sent, "stream": False, **extra})
    body = upstream.calls[0].body
    assert status == 200
    assert len(body["messages"]) < len(sent)
    assert {key: body[key] for key in extra} == extra
    assert body["messages"][-2] == sent[-2]
    assert body["model"] == MODEL


async def test_a_developer_message_is_kept_as_a_system_message(sized: str, upstream: FaultUpstream) -> None:
    sent = history()
    sent[0] = {"role": "developer", "content": "Be brief."}
    await post(sized, {"model": NAME, "messages": sent, "stream": False})
    kept = upstream.calls[0].body["messages"]
    assert kept[0] == {"role": "developer", "content": "Be brief."}
    assert len(kept) < len(sent)


async def test_a_message_of_an_unknown_shape_is_counted_and_kept_whole(sized: str, upstream: FaultUpstream) -> None:
    sent = history()
    sent[-1] = {"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}},
                                            {"type": "text", "text": "last question"}]}
    await post(sized, {"model": NAME, "messages": sent, "stream": False})
    kept = upstream.calls[0].body["messages"]
    assert kept[-1] == sent[-1]
    assert len(kept) < len(sent)


@pytest.mark.parametrize("field", ["max_tokens", "max_completion_tokens"])
async def test_the_room_asked_for_the_answer_is_kept(sized: str, upstream: FaultUpstream, field: str) -> None:
    kept: dict[int, int] = {}
    for room in (10, 1000):
        upstream.calls.clear()
        await post(sized, {"model": NAME, "messages": history(), "stream": False, field: room})
        kept[room] = len(upstream.calls[0].body["messages"])
    assert kept[1000] < kept[10]


async def test_a_chat_that_fits_is_sent_as_it_came(sized: str, upstream: FaultUpstream) -> None:
    sent = {"model": NAME, "messages": history(2), "stream": False, "x_vendor": True}
    status, _ = await post(sized, sent)
    assert status == 200
    assert upstream.calls[0].body == {**sent, "model": MODEL}


async def test_other_routes_are_not_cut(sized: str, upstream: FaultUpstream) -> None:
    prompt = "x" * (CONTEXT * 4)
    async with aiohttp.ClientSession() as session, \
            session.post(sized + "/v1/completions", json={"model": NAME, "prompt": prompt}) as resp:
        assert resp.status == 200
    assert upstream.calls[0].body["prompt"] == prompt


@pytest.mark.parametrize("stream", [True, False])
@pytest.mark.parametrize("refusal", [LLAMA_REFUSAL, VLLM_REFUSAL])
async def test_a_refused_chat_is_sent_once_more_cut_to_fit(
    unsized: str, upstream: FaultUpstream, stream: bool, refusal: str
) -> None:
    upstream.script(Fault("status", status=400, message=refusal))
    sent = history()
    status, raw = await post(unsized, {"model": NAME, "messages": sent, "stream": stream, "x_vendor": 7})
    assert status == 200
    assert answered(stream, raw) == "one two three four five six seven eight"
    first, second = (call.body for call in upstream.calls)
    assert first["messages"] == sent
    assert_a_tail(sent, second["messages"])
    assert second["x_vendor"] == 7


async def test_a_second_refusal_is_passed_on_as_the_backend_sent_it(unsized: str, upstream: FaultUpstream) -> None:
    upstream.script(*[Fault("status", status=400, message=LLAMA_REFUSAL)] * 2)
    status, raw = await post(unsized, {"model": NAME, "messages": history(), "stream": True})
    assert status == 400
    assert json.loads(raw)["error"]["message"] == LLAMA_REFUSAL
    assert len(upstream.calls) == 2


@pytest.mark.parametrize(("messages", "refusal"), [
    (history(), "out of memory"),  # not about the context
    ([{"role": "user", "content": "x"}], LLAMA_REFUSAL),  # nothing left to drop
])
async def test_a_refusal_that_cutting_cannot_help_is_not_retried(
    unsized: str, upstream: FaultUpstream, messages: list[dict[str, Any]], refusal: str
) -> None:
    upstream.script(Fault("status", status=400, message=refusal))
    status, raw = await post(unsized, {"model": NAME, "messages": messages, "stream": False})
    assert status == 400
    assert json.loads(raw)["error"]["message"] == refusal
    assert len(upstream.calls) == 1
