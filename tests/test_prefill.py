"""Assistant prefill ("Continue"): the echo stripper, the per-dialect rule, and a recorded llama.cpp
stream whose answer repeats the partial text, replayed whole and cut at every byte."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import pytest

from ollama_shim.dialect import DIALECTS, GENERIC, LLAMACPP, LMSTUDIO, VLLM
from ollama_shim.translate.prefill import PrefixStripper, echoed_prefix, prefill_text, sends_continue_flag
from ollama_shim.translate.request import Delivery, chat_request_to_openai
from ollama_shim.translate.response import completion_to_ollama
from ollama_shim.wire import ollama as ow
from ollama_shim.wire.openai import ChatCompletion
from stream_replay import context, cut, render

RECORDED = Path(__file__).parent / "fixtures" / "recorded"
PREFILL_STREAM = RECORDED / "llamacpp_chat_stream_prefill.sse"
PARTIAL = "Roses are red, violets"  # what the recorded request ended with (scripts/record_llamacpp.py)


def _strip(prefix: str, pieces: list[str]) -> str:
    stripper = PrefixStripper(prefix)
    return "".join(stripper.feed(piece) for piece in pieces) + stripper.flush()


@pytest.mark.parametrize(
    ("prefix", "pieces", "expected"),
    [
        ("abc", ["abcdef"], "def"),  # echo and new text in one piece
        ("abc", ["a", "b", "c", "d"], "d"),  # echo a character at a time
        ("abc", ["ab", "cd", "ef"], "def"),
        ("abc", ["abc"], ""),  # only the echo
        ("abc", ["abc", "abc"], "abc"),  # after the echo, a repeat is real text
        ("abc", ["xyz"], "xyz"),  # no echo at all
        ("abc", ["ab", "x"], "abx"),  # parts from the prefix: what was held is released
        ("abc", ["a", "b"], "ab"),  # ends inside the prefix: released at the end
        ("abc", ["abx", "abc"], "abxabc"),
        ("abc", ["", "a", "", "bcd"], "d"),
        ("", ["hello"], "hello"),  # no prefix: nothing held
        ("héllo wörld", ["hél", "lo w", "örld!"], "!"),
    ],
)
def test_stripper_removes_only_an_echoed_prefix(prefix: str, pieces: list[str], expected: str) -> None:
    assert _strip(prefix, pieces) == expected


def test_stripper_holds_back_no_more_than_the_prefix() -> None:
    stripper = PrefixStripper("abc")
    assert [stripper.feed(piece) for piece in ("a", "b", "x", "yz")] == ["", "", "abx", "yz"]


def test_stripper_takes_a_long_prefix_one_character_at_a_time() -> None:
    prefix = "word " * 20_000
    assert _strip(prefix, [*prefix, "end"]) == "end"


def _chat(*messages: dict[str, object]) -> list[ow.RequestMessage]:
    return msgspec.convert(list(messages), list[ow.RequestMessage])


USER = {"role": "user", "content": "Write a poem."}


@pytest.mark.parametrize(
    ("messages", "expected"),
    [
        (_chat(USER, {"role": "assistant", "content": "Roses"}), "Roses"),
        (_chat(USER, {"role": "Assistant", "content": "Roses"}), "Roses"),
        (_chat(USER), None),
        (_chat(USER, {"role": "assistant", "content": ""}), None),  # nothing to continue
        (_chat(USER, {"role": "assistant", "content": "x", "tool_calls": [{"function": {"name": "f"}}]}), None),
        (_chat({"role": "assistant", "content": "Hi"}, USER), None),
        ([], None),
    ],
)
def test_prefill_text(messages: list[ow.RequestMessage], expected: str | None) -> None:
    assert prefill_text(messages) == expected


CONTINUE = _chat(USER, {"role": "assistant", "content": "Roses"})


@pytest.mark.parametrize(
    ("dialect", "echo", "flag"),
    [(LLAMACPP, "Roses", False), (VLLM, "", True), (LMSTUDIO, "", False), (GENERIC, "", False)],
    ids=lambda v: getattr(v, "kind", repr(v)),
)
def test_each_dialect_treats_a_prefill_its_own_way(dialect: object, echo: str, flag: bool) -> None:
    assert echoed_prefix(CONTINUE, dialect) == echo  # type: ignore[arg-type]
    assert sends_continue_flag(CONTINUE, dialect) is flag  # type: ignore[arg-type]


def _encoded_request(messages: list[ow.RequestMessage], kind: str) -> dict[str, object]:
    req = ow.ChatRequest(model="m", messages=messages)
    plan = chat_request_to_openai(req, "m", DIALECTS[kind], Delivery.STREAM)  # type: ignore[index]
    decoded: dict[str, object] = json.loads(msgspec.json.encode(plan.request))
    return decoded


def test_vllm_is_asked_to_continue_the_final_message() -> None:
    sent = _encoded_request(CONTINUE, "vllm")
    assert (sent["continue_final_message"], sent["add_generation_prompt"]) == (True, False)


@pytest.mark.parametrize(
    ("messages", "kind"), [(CONTINUE, "llamacpp"), (CONTINUE, "openai"), (_chat(USER), "vllm")]
)
def test_no_continue_flags_elsewhere(messages: list[ow.RequestMessage], kind: str) -> None:
    sent = _encoded_request(messages, kind)
    assert "continue_final_message" not in sent
    assert "add_generation_prompt" not in sent


def _recorded_text() -> str:
    text = ""
    for line in PREFILL_STREAM.read_bytes().decode().splitlines():
        if line.startswith("data:") and line[5:].strip() != "[DONE]":
            for choice in json.loads(line[5:])["choices"]:
                text += (choice.get("delta") or {}).get("content") or ""
    return text


def test_the_recorded_llamacpp_answer_repeats_the_partial_text() -> None:
    assert _recorded_text().startswith(PARTIAL + " ")


def _content(ndjson: bytes) -> str:
    return "".join(json.loads(line)["message"]["content"] for line in ndjson.splitlines())


def test_recorded_prefill_stream_gives_only_the_new_text() -> None:
    raw = PREFILL_STREAM.read_bytes()
    out = _content(render([raw], context("chat", echoed_prefix=PARTIAL)))
    assert out == _recorded_text().removeprefix(PARTIAL)


def test_recorded_prefill_stream_survives_every_cut() -> None:
    raw = PREFILL_STREAM.read_bytes()
    whole = render([raw], context("chat", echoed_prefix=PARTIAL))
    for offset in range(1, len(raw)):
        assert render(cut(raw, [offset]), context("chat", echoed_prefix=PARTIAL)) == whole, f"cut at byte {offset}"


def test_a_whole_completion_loses_the_echo_too() -> None:
    body = {"choices": [{"index": 0, "message": {"role": "assistant", "content": PARTIAL + " are blue."},
                         "finish_reason": "stop"}]}
    completion = msgspec.convert(body, ChatCompletion)
    answer = completion_to_ollama(completion, context("chat", echoed_prefix=PARTIAL))
    assert isinstance(answer, ow.ChatChunk)
    assert answer.message.content == " are blue."


def test_an_answer_that_ends_inside_the_prefix_is_released_on_the_done_chunk() -> None:
    frames = b'data: {"choices":[{"index":0,"delta":{"content":"Roses are"}}]}\n\ndata: [DONE]\n\n'
    assert _content(render([frames], context("chat", echoed_prefix=PARTIAL))) == "Roses are"
