"""Non-streamed answers: whole backend completions to one Ollama chat or generate object."""

from __future__ import annotations

import dataclasses

import msgspec
import pytest

from ollama_shim.errors import UpstreamProtocol, UpstreamStatus
from ollama_shim.translate.response import completion_to_ollama
from ollama_shim.wire.openai import ChatCompletion
from stream_replay import LOAD_NS, STARTED_NS, WALL_START_NS, FakeClock, context


def completion_to_chat(resp, ctx, **clocks):  # type: ignore[no-untyped-def]
    return completion_to_ollama(resp, dataclasses.replace(ctx, endpoint="chat"), **clocks)


def completion_to_generate(resp, ctx, **clocks):  # type: ignore[no-untyped-def]
    return completion_to_ollama(resp, dataclasses.replace(ctx, endpoint="generate"), **clocks)


def completion(body: bytes) -> ChatCompletion:
    return msgspec.json.decode(body, type=ChatCompletion)


def clocks() -> dict[str, FakeClock]:
    return {"clock": FakeClock(STARTED_NS - 70_000_000, 250_000_000), "wallclock": FakeClock(WALL_START_NS, 1)}


def chat(body: bytes, **overrides: object) -> bytes:
    return msgspec.json.encode(completion_to_chat(completion(body), context("chat", **overrides), **clocks()))


def generate(body: bytes, **overrides: object) -> bytes:
    return msgspec.json.encode(completion_to_generate(completion(body), context("chat", **overrides), **clocks()))


LLAMACPP_REASONING = (
    b'{"choices":[{"finish_reason":"stop","index":0,"message":{"role":"assistant","content":"Hi there.",'
    b'"reasoning_content":"The user greets me."}}],"created":1761499281,"model":"qwen3-4b.gguf",'
    b'"system_fingerprint":"b6869-7f09a680","object":"chat.completion","usage":{"completion_tokens":14,'
    b'"prompt_tokens":35,"total_tokens":49},"id":"chatcmpl-X6ur","timings":{"cache_n":12,"prompt_n":23,'
    b'"prompt_ms":58.004,"predicted_n":14,"predicted_ms":151.25}}'
)
DONE_METRICS = (
    b'"done":true,"done_reason":"stop","total_duration":430000000,"load_duration":20000000,'
    b'"prompt_eval_count":35,"prompt_eval_duration":58004000,"eval_count":14,"eval_duration":151250000}'
)


def test_llamacpp_reasoning_chat() -> None:
    assert chat(LLAMACPP_REASONING) == (
        b'{"model":"shim-test:latest","created_at":"2025-10-26T17:21:21.196249002Z","message":{"role":"assistant",'
        b'"content":"Hi there.","thinking":"The user greets me."},' + DONE_METRICS
    )


def test_llamacpp_reasoning_generate() -> None:
    assert generate(LLAMACPP_REASONING) == (
        b'{"model":"shim-test:latest","created_at":"2025-10-26T17:21:21.196249002Z","response":"Hi there.",'
        b'"thinking":"The user greets me.",' + DONE_METRICS
    )


def test_think_false_drops_the_reasoning() -> None:
    out = chat(LLAMACPP_REASONING, hide_thinking=True)
    assert b'"thinking"' not in out
    assert b'"content":"Hi there."' in out


LMSTUDIO_INLINE = (
    b'{"id":"chatcmpl-1yq5","object":"chat.completion","created":1761499281,"model":"qwen/qwen3-4b",'
    b'"choices":[{"index":0,"logprobs":null,"finish_reason":"length","message":{"role":"assistant",'
    b'"content":"<think>\\nShort poem.\\n</think>\\n\\nSteam rises"}}],"usage":{"prompt_tokens":15,'
    b'"completion_tokens":11,"total_tokens":26},"stats":{"tokens_per_second":61.8,"time_to_first_token":0.214,'
    b'"generation_time":0.178,"stop_reason":"maxPredictedTokensReached"},"system_fingerprint":"qwen/qwen3-4b"}'
)


def test_lmstudio_inline_think_and_stats() -> None:
    assert chat(LMSTUDIO_INLINE) == (
        b'{"model":"shim-test:latest","created_at":"2025-10-26T17:21:21.196249002Z","message":{"role":"assistant",'
        b'"content":"Steam rises","thinking":"Short poem.\\n"},"done":true,"done_reason":"length",'
        b'"total_duration":430000000,"load_duration":20000000,"prompt_eval_count":15,'
        b'"prompt_eval_duration":214000000,"eval_count":11,"eval_duration":178000000}'
    )


OPENAI_TOOL_CALLS = (
    b'{"id":"chatcmpl-CUm","object":"chat.completion","created":1761499281,"model":"gpt-4o-mini",'
    b'"choices":[{"index":0,"message":{"role":"assistant","content":null,"tool_calls":['
    b'{"id":"call_Lima","type":"function","function":{"name":"get_weather","arguments":"{\\"city\\":\\"Lima\\"}"}},'
    b'{"id":"call_Oslo","type":"function","function":{"name":"get_weather","arguments":"{\\"city\\":\\"Oslo\\"}"}},'
    b'{"id":"call_now","type":"function","function":{"name":"get_time","arguments":""}}],'
    b'"refusal":null,"annotations":[]},"logprobs":null,"finish_reason":"tool_calls"}],'
    b'"usage":{"prompt_tokens":80,"completion_tokens":50,"total_tokens":130},"system_fingerprint":"fp_5"}'
)


def test_openai_tool_calls() -> None:
    assert chat(OPENAI_TOOL_CALLS) == (
        b'{"model":"shim-test:latest","created_at":"2025-10-26T17:21:21.196249001Z","message":{"role":"assistant",'
        b'"content":"","tool_calls":['
        b'{"id":"call_Lima","function":{"index":0,"name":"get_weather","arguments":{"city":"Lima"}}},'
        b'{"id":"call_Oslo","function":{"index":1,"name":"get_weather","arguments":{"city":"Oslo"}}},'
        b'{"id":"call_now","function":{"index":2,"name":"get_time","arguments":{}}}]},'
        b'"done":true,"done_reason":"stop","total_duration":430000000,"load_duration":20000000,'
        b'"prompt_eval_count":80,"prompt_eval_duration":160000000,"eval_count":50,"eval_duration":250000000}'
    )


def test_tool_calls_without_ids_stay_separate_calls() -> None:
    body = (
        b'{"choices":[{"message":{"role":"assistant","content":"","tool_calls":['
        b'{"function":{"name":"a","arguments":"{}"}},{"function":{"name":"a","arguments":"{\\"n\\":2}"}}]}}]}'
    )
    out = completion_to_chat(completion(body), context("chat"), **clocks())
    assert out.message.tool_calls is not None
    assert [(c.id, c.function.index, c.function.arguments) for c in out.message.tool_calls] == [
        (None, 0, {}),
        (None, 1, {"n": 2}),
    ]


def test_tool_calls_are_left_out_of_generate() -> None:
    assert b"tool_calls" not in generate(OPENAI_TOOL_CALLS)


def test_invalid_tool_arguments() -> None:
    body = b'{"choices":[{"message":{"tool_calls":[{"function":{"name":"f","arguments":"{\\"a\\":"}}]}}]}'
    with pytest.raises(UpstreamProtocol, match='invalid tool call arguments for "f"'):
        chat(body)


LEGACY_TEXT = (
    b'{"choices":[{"text":"def add(a, b):\\n    return a + b","index":0,"logprobs":null,"finish_reason":"stop"}],'
    b'"created":1761499281,"model":"coder.gguf","object":"text_completion","id":"cmpl-1",'
    b'"usage":{"completion_tokens":12,"prompt_tokens":6,"total_tokens":18}}'
)


def test_legacy_completion_text() -> None:
    assert generate(LEGACY_TEXT) == (
        b'{"model":"shim-test:latest","created_at":"2025-10-26T17:21:21.196249002Z",'
        b'"response":"def add(a, b):\\n    return a + b","done":true,"done_reason":"stop",'
        b'"total_duration":430000000,"load_duration":20000000,"prompt_eval_count":6,'
        b'"prompt_eval_duration":160000000,"eval_count":12,"eval_duration":250000000}'
    )


@pytest.mark.parametrize(
    ("body", "message", "status"),
    [
        (
            b'{"error":{"message":"Invalid model identifier","type":"invalid_request_error","code":400}}',
            "Invalid model identifier",
            400,
        ),
        (b'{"error":"No models loaded. Please load a model."}', "No models loaded. Please load a model.", 502),
        (
            b'{"choices":[{"finish_reason":"error","error":{"code":503,"message":"no capacity"},'
            b'"message":{"role":"assistant","content":""}}]}',
            "no capacity",
            503,
        ),
    ],
)
def test_errors_in_a_whole_response(body: bytes, message: str, status: int) -> None:
    with pytest.raises(UpstreamStatus) as caught:
        chat(body)
    assert (caught.value.message, caught.value.status) == (message, status)


@pytest.mark.parametrize(
    "body",
    [
        b'{"choices":[]}',
        b'{"choices":[{"message":{"role":"assistant","content":null}}]}',
        b'{"choices":[{"message":null,"finish_reason":"stop"}]}',
    ],
)
def test_empty_answers_still_have_content_and_counts(body: bytes) -> None:
    out = msgspec.json.decode(chat(body))
    assert out["message"] == {"role": "assistant", "content": ""}
    assert out["done"] is True
    assert out["done_reason"] == "stop"
    assert out["prompt_eval_count"] == 0
    assert out["eval_count"] == 0
    assert out["load_duration"] == LOAD_NS


def test_endpoint_comes_from_the_function_not_the_context() -> None:
    out = completion_to_chat(completion(LEGACY_TEXT), context("generate"), **clocks())
    assert out.message.content.startswith("def add")


def test_whole_calls_sharing_one_id_are_not_merged() -> None:
    body = (
        b'{"choices":[{"message":{"role":"assistant","tool_calls":['
        b'{"id":"call_0","function":{"name":"a","arguments":"{}"}},'
        b'{"id":"call_0","function":{"name":"b","arguments":"{}"}}]}}]}'
    )
    out = completion_to_chat(completion(body), context("chat"), **clocks())
    assert out.message.tool_calls is not None
    assert [c.function.name for c in out.message.tool_calls] == ["a", "b"]
