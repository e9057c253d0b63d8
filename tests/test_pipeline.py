"""``StreamPipeline``: bytes in, chunks out, the backend's error after what came before it, nothing
twice, nothing after the end; and deeply nested JSON from a backend is a protocol error, not a crash."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest

from ollama_shim.errors import ShimError, UpstreamError, UpstreamProtocol, UpstreamStatus
from ollama_shim.sse import SSEEvent
from ollama_shim.translate.pipeline import StreamPipeline
from ollama_shim.translate.response import completion_to_ollama
from ollama_shim.translate.stream import OllamaChunk
from ollama_shim.translate.tool_calls import MAX_ARGUMENT_DEPTH, parse_tool_arguments
from ollama_shim.wire.openai import ChatCompletion
from stream_replay import context, pipeline

DONE = b"data: [DONE]\n\n"


def frame(obj: Any) -> bytes:
    return b"data: " + json.dumps(obj).encode() + b"\n\n"


def text(word: str, finish: str | None = None) -> bytes:
    return frame({"choices": [{"index": 0, "delta": {"content": word}, "finish_reason": finish}]})


def error(message: str, code: int = 500) -> bytes:
    return frame({"error": {"code": code, "message": message}})


def contents(chunks: list[OllamaChunk]) -> list[str]:
    return [chunk.message.content for chunk in chunks]  # type: ignore[union-attr]


def chat() -> StreamPipeline[OllamaChunk]:
    return pipeline(context("chat"))


# ---------------------------------------------------------------------------
# The end of a stream
# ---------------------------------------------------------------------------


def test_text_comes_out_as_it_is_fed() -> None:
    stream = chat()
    first = stream.feed(text("one "))
    assert contents(first.chunks) == ["one "]
    assert first.error is None
    assert not stream.done


def test_a_stream_without_done_is_finished_at_close() -> None:
    stream = chat()
    fed = stream.feed(text("one ") + text("two ", finish="stop"))
    closed = stream.close()
    assert contents(fed.chunks) == ["one ", "two "]
    assert [chunk.done for chunk in closed.chunks] == [True]
    assert closed.chunks[0].done_reason == "stop"
    assert closed.error is None
    assert stream.done


def test_an_unterminated_last_frame_is_delivered_at_close() -> None:
    stream = chat()
    assert stream.feed(text("one ").rstrip(b"\n")).chunks == []
    closed = stream.close()
    assert contents(closed.chunks) == ["one ", ""]
    assert closed.chunks[-1].done is True


def test_done_ends_the_answer_and_what_follows_is_ignored() -> None:
    stream = chat()
    fed = stream.feed(text("one ") + DONE + text("stray "))
    assert contents(fed.chunks) == ["one ", ""]
    assert fed.chunks[-1].done is True
    assert stream.done
    assert stream.feed(text("more ")).chunks == []
    assert stream.close().chunks == []


def test_close_twice_gives_nothing_the_second_time() -> None:
    stream = chat()
    stream.feed(text("one "))
    assert len(stream.close().chunks) == 1
    again = stream.close()
    assert again.chunks == []
    assert again.error is None
    assert stream.feed(text("late ")).chunks == []


# ---------------------------------------------------------------------------
# A backend that breaks
# ---------------------------------------------------------------------------


def test_error_after_text_in_the_same_read_keeps_the_text() -> None:
    stream = chat()
    fed = stream.feed(text("one ") + text("two ") + error("model crashed") + text("three "))
    assert contents(fed.chunks) == ["one ", "two "]
    assert isinstance(fed.error, UpstreamStatus)
    assert fed.error.message == "model crashed"
    assert stream.done


def test_error_in_a_later_read_gives_only_the_error() -> None:
    stream = chat()
    assert contents(stream.feed(text("one ")).chunks) == ["one "]
    later = stream.feed(error("out of memory", 503))
    assert later.chunks == []
    assert isinstance(later.error, UpstreamStatus)
    assert later.error.status == 503


def test_after_an_error_nothing_more_comes_out() -> None:
    stream = chat()
    stream.feed(error("boom"))
    after = stream.feed(text("one ") + DONE)
    closed = stream.close()
    assert (after.chunks, after.error) == ([], None)
    assert (closed.chunks, closed.error) == ([], None)


def test_an_error_in_the_unterminated_last_frame_comes_at_close() -> None:
    stream = chat()
    stream.feed(text("one ") + error("bye").rstrip(b"\n"))
    closed = stream.close()
    assert closed.chunks == []
    assert isinstance(closed.error, UpstreamStatus)
    assert closed.error.message == "bye"


def test_a_defect_in_the_translator_is_not_swallowed() -> None:
    class Broken:
        finished = False

        def feed_event(self, event: SSEEvent) -> list[str]:
            raise KeyError(event.data)  # a defect, not a backend failure

        def finish(self) -> list[str]:
            return []

    with pytest.raises(KeyError):
        StreamPipeline(Broken()).feed(b"data: x\n\n")


# ---------------------------------------------------------------------------
# The loop does not know what it produces
# ---------------------------------------------------------------------------


class Echo:
    """A translator of another output format: each event's data, ``bad`` is a backend error."""

    def __init__(self) -> None:
        self.finished = False

    def feed_event(self, event: SSEEvent) -> list[str]:
        if event.data == "bad":
            raise UpstreamProtocol("bad event")
        if event.data == "end":
            return self.finish()
        return [event.data]

    def finish(self) -> list[str]:
        if self.finished:
            return []
        self.finished = True
        return ["<end>"]


@pytest.mark.parametrize(
    ("reads", "chunks", "error"),
    [
        ([b"data: a\n\ndata: b\n\n"], ["a", "b", "<end>"], None),
        ([b"data: a\n", b"\ndata: end\n\ndata: c\n\n"], ["a", "<end>"], None),
        ([b"data: a\n\ndata: bad\n\ndata: c\n\n"], ["a"], "bad event"),
        ([b"data: a\n\ndata: b"], ["a", "b", "<end>"], None),
    ],
    ids=["eof-without-end", "end-marker", "error-mid-read", "unterminated-last"],
)
def test_any_translator_plugs_into_the_same_loop(reads: list[bytes], chunks: list[str], error: str | None) -> None:
    stream = StreamPipeline(Echo())
    out: list[str] = []
    errors: list[ShimError] = []
    for read in reads:
        produced = stream.feed(read)
        out += produced.chunks
        errors += [produced.error] if produced.error else []
    closed = stream.close()
    out += closed.chunks
    errors += [closed.error] if closed.error else []
    assert out == chunks
    assert [e.message for e in errors] == ([error] if error else [])


# ---------------------------------------------------------------------------
# JSON nested too deep
# ---------------------------------------------------------------------------


def nested(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


def tool_frame(arguments: str) -> bytes:
    call = '{"index":0,"id":"c1","function":{"name":"f","arguments":' + arguments + "}}"
    return b'data: {"choices":[{"index":0,"delta":{"tool_calls":[' + call.encode() + b"]}}]}\n\n"


DEEP = [
    ("frame-5000-deep", b'data: {"choices":[{"index":0,"delta":{"content":"x"},"extra":' + nested(5000).encode()
     + b"}]}\n\n"),
    ("object-arguments-5000-deep", tool_frame(nested(5000))),
    ("object-arguments-over-the-limit", tool_frame(nested(MAX_ARGUMENT_DEPTH + 1))),
    ("string-arguments-5000-deep", tool_frame(json.dumps(nested(5000)))),
    ("string-arguments-over-the-limit", tool_frame(json.dumps(nested(MAX_ARGUMENT_DEPTH + 1)))),
]


@pytest.mark.parametrize("data", [case[1] for case in DEEP], ids=[case[0] for case in DEEP])
def test_deep_nesting_is_a_protocol_error(data: bytes) -> None:
    stream = pipeline(context("chat", want_tool_calls=True))
    fed = stream.feed(text("one ") + data + DONE)
    errors = [fed.error, stream.close().error]
    found = [e for e in errors if e is not None]
    assert len(found) == 1
    assert isinstance(found[0], UpstreamProtocol)
    assert found[0].status == 502
    assert "nested" in found[0].message


def test_arguments_at_the_depth_limit_are_accepted() -> None:
    value = parse_tool_arguments("f", nested(MAX_ARGUMENT_DEPTH - 1))
    assert isinstance(value, dict)


@pytest.mark.parametrize("depth", [MAX_ARGUMENT_DEPTH + 1, 5000])
def test_deep_arguments_in_a_whole_answer_are_a_protocol_error(depth: int) -> None:
    call = {"id": "c1", "function": {"name": "f", "arguments": nested(depth)}}
    body = json.dumps({"choices": [{"message": {"role": "assistant", "tool_calls": [call]}}]})
    answer = msgspec.json.decode(body, type=ChatCompletion)
    with pytest.raises(UpstreamError) as caught:
        completion_to_ollama(answer, context("chat", want_tool_calls=True))
    assert isinstance(caught.value, UpstreamProtocol)
