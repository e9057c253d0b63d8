"""Stream translation: recorded backend streams replayed byte for byte, then the mappings one by one."""

from __future__ import annotations

import json
import random

import msgspec
import pytest

from ollama_shim.errors import UpstreamError, UpstreamProtocol, UpstreamStatus
from ollama_shim.sse import SSEEvent
from ollama_shim.translate.stream import (
    Measured,
    Metrics,
    StreamContext,
    StreamTranslator,
    compute_metrics,
    done_reason,
    parse_event,
)
from ollama_shim.translate.think_tags import ThinkTagSplitter
from ollama_shim.translate.tool_calls import parse_tool_arguments
from ollama_shim.wire.openai import ChatCompletionChunk, Stats, Timings, Usage
from stream_replay import (
    GENERATE_FIXTURES,
    STREAMS,
    context,
    cut,
    expected_path,
    fixture_names,
    render,
    translator,
)

CASES = [(name, "chat") for name in fixture_names()] + [(name, "generate") for name in GENERATE_FIXTURES]
CASE_IDS = [f"{name}-{endpoint}" for name, endpoint in CASES]


def load_case(name: str, endpoint: str) -> tuple[bytes, bytes]:
    return (STREAMS / f"{name}.sse").read_bytes(), expected_path(name, endpoint).read_bytes()  # type: ignore[arg-type]


# ---------------------------------------------------------------------------
# Recorded streams
# ---------------------------------------------------------------------------


def test_the_recorded_quirks_are_all_there() -> None:
    names = set(fixture_names())
    assert len(names) >= 17
    for name in names:
        assert expected_path(name, "chat").exists(), name
    assert set(GENERATE_FIXTURES) <= names
    orphans = {path.name.split(".")[0] for path in STREAMS.glob("*.ndjson")} - names
    assert not orphans


@pytest.mark.parametrize(("name", "endpoint"), CASES, ids=CASE_IDS)
def test_whole_stream_matches_recorded_output(name: str, endpoint: str) -> None:
    data, expected = load_case(name, endpoint)
    assert render([data], context(endpoint)) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(("name", "endpoint"), CASES, ids=CASE_IDS)
def test_stream_cut_at_every_byte_gives_the_same_output(name: str, endpoint: str) -> None:
    data, expected = load_case(name, endpoint)
    ctx = context(endpoint)  # type: ignore[arg-type]
    for offset in range(len(data) + 1):
        assert render(cut(data, [offset]), ctx) == expected, f"cut at {offset}"


@pytest.mark.parametrize(("name", "endpoint"), CASES, ids=CASE_IDS)
def test_stream_cut_in_three_and_byte_by_byte(name: str, endpoint: str) -> None:
    data, expected = load_case(name, endpoint)
    ctx = context(endpoint)  # type: ignore[arg-type]
    rng = random.Random(name)
    for _ in range(40):
        offsets = sorted(rng.sample(range(len(data) + 1), 2))
        assert render(cut(data, offsets), ctx) == expected, f"cut at {offsets}"
    assert render((data[i : i + 1] for i in range(len(data))), ctx) == expected


def _recorded_lines(name: str, endpoint: str) -> list[bytes]:
    return expected_path(name, endpoint).read_bytes().splitlines()  # type: ignore[arg-type]


def _no_nulls(value: object) -> bool:
    if isinstance(value, dict):
        return all(v is not None and _no_nulls(v) for v in value.values())
    if isinstance(value, list):
        return all(_no_nulls(v) for v in value)
    return True


METRIC_KEYS = (
    "total_duration",
    "load_duration",
    "prompt_eval_count",
    "prompt_eval_duration",
    "eval_count",
    "eval_duration",
)


@pytest.mark.parametrize(("name", "endpoint"), CASES, ids=CASE_IDS)
def test_recorded_output_has_the_ollama_shape(name: str, endpoint: str) -> None:
    lines = _recorded_lines(name, endpoint)
    objects = [json.loads(line) for line in lines]
    for index, (line, obj) in enumerate(zip(lines, objects, strict=True)):
        assert _no_nulls(obj), line
        if "error" in obj:
            assert b'"error"' in line
            assert list(obj) == ["error"]
            assert index == len(lines) - 1
            continue
        assert b'"error"' not in line
        assert list(obj)[:2] == ["model", "created_at"]
        assert ("message" in obj) == (endpoint == "chat")
        assert ("response" in obj) == (endpoint == "generate")
        text = obj["message"] if endpoint == "chat" else obj
        assert "thinking" not in text or text["thinking"]
        assert "tool_calls" not in text or text["tool_calls"]
        if obj["done"]:
            assert index == len(lines) - 1
            assert obj["done_reason"] in ("stop", "length")
            assert all(isinstance(obj[key], int) for key in METRIC_KEYS)
        else:
            assert "done_reason" not in obj
            assert not set(METRIC_KEYS) & set(obj)
            assert "tool_calls" not in text
            assert text.get("thinking") or text["content" if endpoint == "chat" else "response"]


@pytest.mark.parametrize(("name", "endpoint"), CASES, ids=CASE_IDS)
def test_every_stream_ends_in_done_or_error(name: str, endpoint: str) -> None:
    last = json.loads(_recorded_lines(name, endpoint)[-1])
    assert last.get("done") is True or set(last) == {"error"}


def test_content_only_chunks_have_no_thinking_key_at_all() -> None:
    for line in _recorded_lines("llamacpp_text_timings", "chat"):
        assert b'"thinking"' not in line
        assert b'"tool_calls"' not in line
        assert b"null" not in line


def test_thinking_only_chunks_carry_an_empty_content_string() -> None:
    first = _recorded_lines("llamacpp_reasoning", "chat")[0]
    assert b'"message":{"role":"assistant","content":"","thinking":"The user"}' in first
    first = _recorded_lines("llamacpp_reasoning", "generate")[0]
    assert b'"response":"","thinking":"The user","done":false' in first


def test_tool_calls_go_on_the_done_chunk_as_objects() -> None:
    (line,) = _recorded_lines("llamacpp_tool_calls", "chat")
    assert (
        b'"tool_calls":[{"id":"kq3GJpBg8oBLt7dG9mVw7b1Wn4UbT5xM","function":{"index":0,"name":"get_weather",'
        b'"arguments":{"city":"Paris","unit":"celsius"}}}]},"done":true,"done_reason":"stop"'
    ) in line


def test_a_call_without_id_has_no_id_key() -> None:
    (line,) = _recorded_lines("tool_calls_no_index", "chat")
    assert b'{"function":{"index":2,"name":"ping","arguments":{}}}' in line


def test_generate_never_carries_tool_calls() -> None:
    for line in _recorded_lines("llamacpp_tool_calls", "generate"):
        assert b"tool_calls" not in line
        assert b"message" not in line


# ---------------------------------------------------------------------------
# parse_event
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("data", ["[DONE]", " [DONE] ", "[DONE]\n"])
def test_done_marker(data: str) -> None:
    assert parse_event(SSEEvent(data)) is None


def test_a_data_frame_becomes_a_chunk() -> None:
    chunk = parse_event(SSEEvent('{"choices":[{"index":0,"delta":{"content":"hi"}}],"extra":1}'))
    assert chunk is not None
    assert chunk.choices[0].delta is not None
    assert chunk.choices[0].delta.content == "hi"


@pytest.mark.parametrize(
    ("event", "message", "status"),
    [
        (SSEEvent('{"error":{"message":"boom","type":"server_error","code":500}}'), "boom", 500),
        (SSEEvent('{"error":{"message":"ctx full","code":400,"type":"exceed_context_size_error"}}'), "ctx full", 400),
        (SSEEvent('{"error":{"message":"x","code":"server_error"}}'), "x", 502),
        (SSEEvent('{"error":{"message":"odd","code":200}}'), "odd", 502),
        (SSEEvent('{"error":"No models loaded."}'), "No models loaded.", 502),
        (SSEEvent('{"error":{"message":""}}'), "the backend reported an error", 502),
        (SSEEvent('{"error":{"message":"m","code":429}}', "error"), "m", 429),
        (
            SSEEvent('{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}', "error"),
            "Overloaded",
            502,
        ),
        (SSEEvent('{"message":"flat"}', "error"), "flat", 502),
        (SSEEvent("plain text failure", "error"), "plain text failure", 502),
        (SSEEvent("[DONE]", "error"), "[DONE]", 502),
    ],
)
def test_error_frames_raise_with_the_backend_message(event: SSEEvent, message: str, status: int) -> None:
    with pytest.raises(UpstreamStatus) as caught:
        parse_event(event)
    assert caught.value.message == message
    assert caught.value.status == status


@pytest.mark.parametrize("data", ["{not json", "<html>502 Bad Gateway</html>", '{"choices":"nope"}', "[1,2]"])
def test_unreadable_frames_are_protocol_errors(data: str) -> None:
    with pytest.raises(UpstreamProtocol):
        parse_event(SSEEvent(data))


# ---------------------------------------------------------------------------
# done_reason and metrics
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("finish_reason", "expected"),
    [
        ("stop", "stop"),
        ("length", "length"),
        ("tool_calls", "stop"),
        ("function_call", "stop"),
        ("content_filter", "stop"),
        ("eos", "stop"),
        (None, "stop"),
    ],
)
def test_done_reason(finish_reason: str | None, expected: str) -> None:
    assert done_reason(finish_reason) == expected


MEASURED = Measured(started_ns=1_000, load_ns=100, first_token_ns=5_000, finished_ns=9_000, text_delta_count=7)
TIMINGS = Timings(cache_n=12, prompt_n=18, prompt_ms=41.5, predicted_n=9, predicted_ms=96.25)
USAGE = Usage(prompt_tokens=30, completion_tokens=11, total_tokens=41)
STATS = Stats(time_to_first_token=0.214, generation_time=1.5)


@pytest.mark.parametrize(
    ("timings", "usage", "stats", "expected"),
    [
        pytest.param(TIMINGS, None, None, Metrics(8_000, 100, 30, 41_500_000, 9, 96_250_000), id="timings"),
        pytest.param(TIMINGS, USAGE, STATS, Metrics(8_000, 100, 30, 41_500_000, 9, 96_250_000), id="timings-win"),
        pytest.param(Timings(prompt_n=5), None, None, Metrics(8_000, 100, 5, 3_900, 7, 4_000), id="no-cache_n"),
        pytest.param(None, USAGE, None, Metrics(8_000, 100, 30, 3_900, 11, 4_000), id="usage"),
        pytest.param(None, None, STATS, Metrics(8_000, 100, 0, 214_000_000, 7, 1_500_000_000), id="stats"),
        pytest.param(None, USAGE, STATS, Metrics(8_000, 100, 30, 214_000_000, 11, 1_500_000_000), id="lmstudio"),
        pytest.param(None, Usage(total_tokens=3), Stats(), Metrics(8_000, 100, 0, 3_900, 7, 4_000), id="empty"),
        pytest.param(None, None, None, Metrics(8_000, 100, 0, 3_900, 7, 4_000), id="measured"),
    ],
)
def test_metrics_sources(timings: Timings | None, usage: Usage | None, stats: Stats | None, expected: Metrics) -> None:
    assert compute_metrics(MEASURED, timings, usage, stats) == expected


def test_measured_durations_never_go_negative() -> None:
    measured = Measured(started_ns=1_000, load_ns=5_000, first_token_ns=2_000, finished_ns=1_500, text_delta_count=0)
    metrics = compute_metrics(measured, None, None, None)
    assert metrics.prompt_eval_duration == 0
    assert metrics.eval_duration == 0
    assert metrics.total_duration == 500


# ---------------------------------------------------------------------------
# Inline <think> tags
# ---------------------------------------------------------------------------


def split_all(pieces: list[str]) -> tuple[str, str]:
    splitter = ThinkTagSplitter()
    thinking, answer = [], []
    for piece in pieces:
        t, a = splitter.feed(piece)
        thinking.append(t)
        answer.append(a)
    t, a = splitter.flush()
    return "".join(thinking) + t, "".join(answer) + a


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<think>plan</think>answer", ("plan", "answer")),
        ("\n  <think>\n plan \n</think>\n\n answer ", ("plan \n", "answer ")),
        ("no tags at all", ("", "no tags at all")),
        ("answer <think>not thinking</think>", ("", "answer <think>not thinking</think>")),
        ("<think>unfinished", ("unfinished", "")),
        ("<think>a</think>b</think>c<think>d", ("a", "b</think>c<think>d")),
        ("<thin", ("", "<thin")),
        ("   ", ("", "   ")),
        ("<think></think>", ("", "")),
        ("<think>a < b </thin", ("a < b </thin", "")),
        ("<Think>case matters", ("", "<Think>case matters")),
    ],
)
def test_think_tags_whatever_the_cuts(text: str, expected: tuple[str, str]) -> None:
    assert split_all([text]) == expected
    for i in range(len(text) + 1):
        assert split_all([text[:i], text[i:]]) == expected, i
    assert split_all(list(text)) == expected


def test_a_partial_close_tag_is_held_back_not_emitted() -> None:
    splitter = ThinkTagSplitter()
    assert splitter.feed("<think>abc</th") == ("abc", "")
    assert splitter.feed("ink>def") == ("", "def")


# ---------------------------------------------------------------------------
# Tool calls
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", {}),
        ("  ", {}),
        ("{}", {}),
        ('{"a": [1, {"b": null}]}', {"a": [1, {"b": None}]}),
        ('"{\\"a\\": 1}"', {"a": 1}),
        ('""', {}),
    ],
)
def test_tool_arguments(text: str, expected: dict[str, object]) -> None:
    assert parse_tool_arguments("f", text) == expected


@pytest.mark.parametrize("text", ['{"a":', "[1]", "3", '"not json"', "null", '{"a":1}{"b":2}'])
def test_invalid_tool_arguments(text: str) -> None:
    with pytest.raises(UpstreamProtocol, match='invalid tool call arguments for "get_weather"'):
        parse_tool_arguments("get_weather", text)


def chunk(**delta: object) -> ChatCompletionChunk:
    choice: dict[str, object] = {"index": 0, "delta": delta}
    if "finish_reason" in delta:
        choice["finish_reason"] = delta.pop("finish_reason")
    return msgspec.convert({"choices": [choice]}, ChatCompletionChunk)


def run(ctx: StreamContext, *chunks: ChatCompletionChunk) -> list[dict[str, object]]:
    stream = translator(ctx)
    out = [piece for c in chunks for piece in stream.feed(c)] + stream.finish()
    return [json.loads(msgspec.json.encode(piece)) for piece in out]


def test_invalid_arguments_raise_at_finish() -> None:
    stream = translator(context("chat"))
    stream.feed(chunk(tool_calls=[{"index": 0, "function": {"name": "get_weather", "arguments": "{oops"}}]))
    with pytest.raises(UpstreamProtocol, match='"get_weather"'):
        stream.finish()


def test_tool_calls_are_numbered_from_zero_whatever_the_backend_index() -> None:
    out = run(
        context("chat"),
        chunk(tool_calls=[{"index": 3, "function": {"name": "a", "arguments": "{}"}}]),
        chunk(tool_calls=[{"index": 7, "function": {"name": "b"}}]),
    )
    calls = out[-1]["message"]["tool_calls"]  # type: ignore[index]
    assert [call["function"]["index"] for call in calls] == [0, 1]
    assert [call["function"]["name"] for call in calls] == ["a", "b"]


def test_nameless_calls_are_dropped() -> None:
    out = run(context("chat"), chunk(tool_calls=[{"index": 0, "function": {"arguments": "{}"}}]))
    assert "tool_calls" not in out[-1]["message"]  # type: ignore[operator]


def test_tool_calls_ignored_when_the_request_had_no_tools() -> None:
    out = run(
        context("chat", want_tool_calls=False),
        chunk(tool_calls=[{"index": 0, "function": {"name": "f", "arguments": "{broken"}}]),
    )
    assert "tool_calls" not in out[-1]["message"]  # type: ignore[operator]


def test_a_repeated_id_without_index_continues_the_same_call() -> None:
    out = run(
        context("chat"),
        chunk(tool_calls=[{"id": "c1", "function": {"name": "f", "arguments": '{"x":'}}]),
        chunk(tool_calls=[{"id": "c1", "function": {"arguments": "1}"}}]),
    )
    assert out[-1]["message"]["tool_calls"] == [  # type: ignore[index]
        {"id": "c1", "function": {"index": 0, "name": "f", "arguments": {"x": 1}}}
    ]


# ---------------------------------------------------------------------------
# Text, thinking and the translator's state
# ---------------------------------------------------------------------------


def test_think_false_drops_thinking_and_thinking_only_chunks() -> None:
    out = run(
        context("chat", hide_thinking=True),
        chunk(reasoning_content="hidden"),
        chunk(content="<think>also hidden</think>shown"),
    )
    assert [o["message"] for o in out] == [  # type: ignore[index]
        {"role": "assistant", "content": "shown"},
        {"role": "assistant", "content": ""},
    ]


def test_thinking_sent_in_both_fields_is_not_doubled() -> None:
    out = run(context("generate"), chunk(reasoning_content="same", reasoning="same"), chunk(content="ok"))
    assert [(o["response"], o.get("thinking")) for o in out[:-1]] == [("", "same"), ("ok", None)]


def test_deepseek_legacy_inline_think_is_not_doubled() -> None:
    out = run(
        context("chat"),
        chunk(reasoning_content="plan", content="<think>plan"),
        chunk(content="</think>answer"),
    )
    assert [o["message"] for o in out[:-1]] == [  # type: ignore[index]
        {"role": "assistant", "content": "", "thinking": "plan"},
        {"role": "assistant", "content": "answer"},
    ]


def test_reasoning_and_content_in_one_delta_make_one_chunk() -> None:
    out = run(context("chat"), chunk(reasoning_content="r", content="c"))
    assert out[0]["message"] == {"role": "assistant", "content": "c", "thinking": "r"}


def test_empty_deltas_are_not_forwarded() -> None:
    out = run(
        context("chat"),
        chunk(role="assistant", content=""),
        chunk(content=None),
        chunk(),
        msgspec.convert({"choices": []}, ChatCompletionChunk),
    )
    assert len(out) == 1
    assert out[0]["done"] is True


def test_held_back_text_is_flushed_before_the_done_chunk() -> None:
    out = run(context("chat"), chunk(content="<thi"))
    assert [o["message"]["content"] for o in out] == ["<thi", ""]  # type: ignore[index]
    assert out[-1]["done"] is True


def test_eval_count_counts_text_deltas_without_usage() -> None:
    out = run(context("chat"), chunk(content="a"), chunk(reasoning="b"), chunk(content=""), chunk(content="c"))
    assert out[-1]["eval_count"] == 3
    assert out[-1]["prompt_eval_count"] == 0


def test_other_choices_are_ignored() -> None:
    extra = msgspec.convert({"choices": [{"index": 1, "delta": {"content": "other"}}]}, ChatCompletionChunk)
    out = run(context("chat"), extra, chunk(content="mine"))
    assert [o["message"]["content"] for o in out] == ["mine", ""]  # type: ignore[index]


def test_model_is_echoed_and_times_come_from_the_clocks() -> None:
    ctx = StreamContext(model="Qwen3:8B", endpoint="chat", started_ns=100, load_ns=0)
    ticks = iter([150, 400])
    stream = StreamTranslator(ctx, clock=lambda: next(ticks), wallclock=lambda: 1_761_499_281_000_000_001)
    first = stream.feed(chunk(content="x"))[0]
    done = stream.finish()[-1]
    assert first.model == done.model == "Qwen3:8B"
    assert first.created_at == "2025-10-26T17:21:21.000000001Z"
    assert (done.total_duration, done.prompt_eval_duration, done.eval_duration) == (300, 50, 250)


def test_finish_is_idempotent_and_done_ends_the_stream() -> None:
    stream = translator(context("chat"))
    assert stream.feed_event(SSEEvent('{"choices":[{"delta":{"content":"a"}}]}'))
    assert stream.feed_event(SSEEvent("[DONE]"))[-1].done is True
    assert stream.finished
    assert stream.feed_event(SSEEvent('{"choices":[{"delta":{"content":"late"}}]}')) == []
    assert stream.finish() == []


def test_finish_reason_error_without_details() -> None:
    stream = translator(context("chat"))
    with pytest.raises(UpstreamStatus, match="stopped with an error"):
        stream.feed(chunk(finish_reason="error"))


def test_top_level_error_on_a_chunk_fed_directly() -> None:
    stream = translator(context("chat"))
    bad = msgspec.convert({"error": {"message": "quota", "code": 402}, "choices": []}, ChatCompletionChunk)
    with pytest.raises(UpstreamError) as caught:
        stream.feed(bad)
    assert (caught.value.message, caught.value.status) == ("quota", 402)
