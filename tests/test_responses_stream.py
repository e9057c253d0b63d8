"""Recorded backend streams (tests/fixtures/streams/*.sse) replayed through the shipped
``StreamPipeline`` with a ``ResponsesTranslator``: the Responses event sequence is well formed for
every stream, agrees with what the backend sent, and is the same whole or cut at any byte.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import msgspec
import pytest

from ollama_shim.translate.pipeline import StreamPipeline
from ollama_shim.translate.responses_request import response_template
from ollama_shim.translate.responses_stream import ResponsesTranslator
from ollama_shim.wire.responses import ResponseObject, ResponsesEvent, ResponsesRequest
from stream_replay import FakeClock, context, cut, translator

STREAMS = Path(__file__).parent / "fixtures" / "streams"
NAMES = sorted(path.stem for path in STREAMS.glob("*.sse"))
ERRORS = {"llamacpp_error_midstream", "lmstudio_error_string", "openrouter_error_midstream",
          "openrouter_finish_error", "vllm_reasoning_error"}
TEMPLATE = response_template(ResponsesRequest(model="shim-test:latest", input="hi"), "resp_abc", 1_761_499_281)


def responses_translator(max_text_bytes: int = 1 << 20) -> ResponsesTranslator:
    return ResponsesTranslator(translator(context("chat")), TEMPLATE, max_text_bytes=max_text_bytes,
                               wallclock=FakeClock(1_761_499_282_000_000_000, 0))


def replay(reads: Iterable[bytes], max_text_bytes: int = 1 << 20) -> tuple[list[dict[str, Any]], str | None]:
    """The events as JSON objects, and the error that ended the stream (if one did)."""
    pipeline: StreamPipeline[ResponsesEvent] = StreamPipeline(responses_translator(max_text_bytes))
    events: list[ResponsesEvent] = []
    for read in reads:
        produced = pipeline.feed(read)
        events += produced.chunks
        if produced.error is not None:
            return _json(events), produced.error.message
        if pipeline.done:
            break
    else:
        produced = pipeline.close()
        events += produced.chunks
        if produced.error is not None:
            return _json(events), produced.error.message
    return _json(events), None


def _json(events: list[ResponsesEvent]) -> list[dict[str, Any]]:
    return [json.loads(msgspec.json.encode(event)) for event in events]


def _raw(name: str) -> bytes:
    return (STREAMS / f"{name}.sse").read_bytes()


def _pinned_chat_text(name: str) -> tuple[str, str]:
    """Answer and thinking text of the pinned ``/api/chat`` rendering of the same stream."""
    lines = [json.loads(line) for line in (STREAMS / f"{name}.chat.ndjson").read_bytes().splitlines()]
    messages = [line["message"] for line in lines if "message" in line]
    return "".join(m["content"] for m in messages), "".join(m.get("thinking") or "" for m in messages)


def test_there_are_streams_with_and_without_errors() -> None:
    assert set(NAMES) > ERRORS


@pytest.mark.parametrize("name", NAMES)
def test_events_are_well_formed(name: str) -> None:
    events, error = replay([_raw(name)])
    assert [event["sequence_number"] for event in events] == list(range(len(events)))
    assert [event["type"] for event in events[:2]] == ["response.created", "response.in_progress"]
    open_items: dict[int, str] = {}
    done_items: dict[int, dict[str, Any]] = {}
    for event in events[2:]:
        kind = event["type"]
        if kind == "response.output_item.added":
            assert event["output_index"] == len(open_items) + len(done_items)  # indices count up from 0
            open_items[event["output_index"]] = event["item"]["id"]
        elif kind == "response.output_item.done":
            assert open_items.pop(event["output_index"]) == event["item"]["id"]
            done_items[event["output_index"]] = event["item"]
        elif "item_id" in event:  # every delta and part event belongs to the item open at its index
            assert open_items[event["output_index"]] == event["item_id"]
    if error is not None:  # the stream ends where the backend broke; the route adds an `error` event
        assert name in ERRORS
        assert events[-1]["type"] not in ("response.completed", "response.incomplete")
        return
    assert not open_items  # every item was closed
    final = events[-1]
    assert final["type"] in ("response.completed", "response.incomplete")
    assert final["response"]["output"] == [done_items[index] for index in sorted(done_items)]
    usage = final["response"]["usage"]
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]


@pytest.mark.parametrize("name", NAMES)
def test_text_is_the_chat_text(name: str) -> None:
    events, _ = replay([_raw(name)])
    answer = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    thinking = "".join(e["delta"] for e in events if e["type"] == "response.reasoning_summary_text.delta")
    assert (answer, thinking) == _pinned_chat_text(name)


@pytest.mark.parametrize("name", NAMES)
def test_same_events_cut_at_every_byte(name: str) -> None:
    raw = _raw(name)
    whole = replay([raw])
    for offset in range(1, len(raw)):
        assert replay(cut(raw, [offset])) == whole, f"cut at byte {offset}"


def test_reasoning_then_message() -> None:
    events, _ = replay([_raw("llamacpp_reasoning")])
    kinds = [e["item"]["type"] for e in events if e["type"] == "response.output_item.done"]
    assert kinds == ["reasoning", "message"]
    reasoning, message = events[-1]["response"]["output"]
    assert reasoning["summary"][0]["text"].startswith("The user")
    assert reasoning["encrypted_content"] == reasoning["summary"][0]["text"]
    assert message["status"] == "completed"
    assert message["content"][0]["type"] == "output_text"


def test_tool_call_is_one_function_call_item() -> None:
    events, _ = replay([_raw("llamacpp_tool_calls")])
    added = [e for e in events if e["type"] == "response.output_item.added"]
    assert [e["item"]["type"] for e in added] == ["function_call"]
    assert added[0]["item"]["arguments"] == ""
    assert added[0]["item"]["status"] == "in_progress"
    deltas = [e for e in events if e["type"] == "response.function_call_arguments.delta"]
    assert [json.loads(e["delta"]) for e in deltas] == [{"city": "Paris", "unit": "celsius"}]
    (call,) = events[-1]["response"]["output"]
    assert call["call_id"] == "kq3GJpBg8oBLt7dG9mVw7b1Wn4UbT5xM"
    assert call["name"] == "get_weather"
    assert call["status"] == "completed"
    assert call["arguments"] == deltas[0]["delta"]
    assert events[-1]["response"]["usage"]["input_tokens"] == 211


def test_calls_without_ids_get_distinct_call_ids() -> None:
    events, _ = replay([_raw("parallel_tool_calls_stop")])
    calls = [item for item in events[-1]["response"]["output"] if item["type"] == "function_call"]
    assert len(calls) >= 2
    assert len({call["call_id"] for call in calls}) == len(calls)


def test_length_stop_is_incomplete() -> None:
    events, _ = replay([_raw("finish_length")])
    final = events[-1]
    assert final["type"] == "response.incomplete"
    assert final["response"]["status"] == "incomplete"
    assert final["response"]["incomplete_details"] == {"reason": "max_output_tokens"}


def test_completed_object_is_the_template_filled_in() -> None:
    events, _ = replay([_raw("llamacpp_text_timings")])
    final = events[-1]["response"]
    assert (final["status"], final["completed_at"], final["model"]) == ("completed", 1_761_499_282, "shim-test:latest")
    assert final["id"] == events[0]["response"]["id"] == "resp_abc"
    assert events[0]["response"]["output"] == []
    assert events[0]["response"]["usage"] is None


def test_error_midstream_keeps_what_came_before() -> None:
    events, error = replay([_raw("llamacpp_error_midstream")])
    assert error == "Failed to decode: out of memory"
    assert [e["delta"] for e in events if e["type"] == "response.output_text.delta"] == ["Partial"]


def test_answer_longer_than_the_limit_is_an_error() -> None:
    events, error = replay([_raw("llamacpp_text_timings")], max_text_bytes=3)
    assert error is not None
    assert "longer than the limit of 3 bytes" in error
    assert not [e for e in events if e["type"] == "response.completed"]


def test_response_type_round_trips() -> None:
    events, _ = replay([_raw("llamacpp_reasoning")])
    final = msgspec.json.encode(events[-1]["response"])
    assert msgspec.json.decode(final, type=ResponseObject).status == "completed"
