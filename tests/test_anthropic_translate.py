"""The pure halves of ``/v1/messages``: the request mapping (Anthropic -> Ollama -> chat completion),
the event translator replaying recorded backend streams (whole and cut at every byte), the
assembled message, the error object, and the native path's model renaming."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec
import pytest
from anthropic.lib.streaming._messages import accumulate_event

from ollama_shim.dialect import DIALECTS, GENERIC, LLAMACPP, LMSTUDIO, OPENAI, VLLM
from ollama_shim.errors import BadRequest, UpstreamProtocol
from ollama_shim.routes.native import ModelRenamer
from ollama_shim.translate.anthropic_request import (
    check_messages_request,
    estimate_input_tokens,
    messages_request_to_openai,
)
from ollama_shim.translate.anthropic_stream import (
    AnthropicContext,
    AnthropicTranslator,
    assemble_message,
    error_object,
)
from ollama_shim.translate.pipeline import StreamPipeline
from ollama_shim.wire import anthropic as am
from stream_replay import context, cut, translator

STREAMS = Path(__file__).parent / "fixtures" / "streams"
RECORDED = Path(__file__).parent / "fixtures" / "recorded"
SSE_FILES = sorted([*STREAMS.glob("*.sse"), *RECORDED.glob("*chat_stream*.sse")])
USER = {"role": "user", "content": "hi"}


def _req(**fields: Any) -> am.MessagesRequest:
    body = {"model": "m", "max_tokens": 100, "messages": [USER], **fields}
    return msgspec.json.decode(json.dumps(body), type=am.MessagesRequest)


def _sent(req: am.MessagesRequest, dialect=LLAMACPP, **kw: Any) -> dict[str, Any]:
    plan = messages_request_to_openai(req, "up-id", dialect, **kw)
    return json.loads(msgspec.json.encode(plan.request))


# -- request mapping --------------------------------------------------------------------------------

WEATHER = {"name": "get_weather", "description": "Weather", "input_schema": {"type": "object"}}
CLOCK = {"name": "get_time", "input_schema": {"type": "object"}}

REQUEST_CASES: list[tuple[str, dict[str, Any], dict[str, Any], Any]] = [
    ("system string", {"system": "Be brief."}, {},
     lambda s: s["messages"][0] == {"role": "system", "content": "Be brief."}),
    (
        "system blocks, cache_control ignored",
        {"system": [{"type": "text", "text": "A"},
                    {"type": "text", "text": "B", "cache_control": {"type": "ephemeral"}}]},
        {},
        lambda s: s["messages"][0] == {"role": "system", "content": "A\n\nB"},
    ),
    ("max_tokens", {"max_tokens": 77}, {}, lambda s: s["max_tokens"] == 77),
    ("max_tokens clamped to the context", {"max_tokens": 32000}, {"context_length": 2048},
     lambda s: s["max_tokens"] == 2048),
    ("max_tokens on OpenAI", {"max_tokens": 5}, {"dialect": OPENAI}, lambda s: s["max_completion_tokens"] == 5),
    ("stop_sequences", {"stop_sequences": ["END"]}, {}, lambda s: s["stop"] == ["END"]),
    ("sampling", {"temperature": 0.5, "top_p": 0.9, "top_k": 7}, {},
     lambda s: (s["temperature"], s["top_p"], s["top_k"]) == (0.5, 0.9, 7)),
    ("top_k dropped where unsupported", {"top_k": 7}, {"dialect": OPENAI}, lambda s: "top_k" not in s),
    ("metadata ignored", {"metadata": {"user_id": "u"}}, {}, lambda s: "metadata" not in s and "user" not in s),
    ("streams upstream when the client does not", {"stream": False}, {}, lambda s: s["stream"] is True),
    ("tools", {"tools": [WEATHER]}, {}, lambda s: s["tools"] == [
        {"function": {"name": "get_weather", "description": "Weather", "parameters": {"type": "object"}},
         "type": "function"}] and "tool_choice" not in s),
    ("server tools dropped", {"tools": [WEATHER, {"type": "web_search_20250305", "name": "web_search"}]}, {},
     lambda s: [t["function"]["name"] for t in s["tools"]] == ["get_weather"]),
    ("tool_choice any", {"tools": [WEATHER], "tool_choice": {"type": "any"}}, {},
     lambda s: s["tool_choice"] == "required"),
    ("tool_choice tool offers only that tool",
     {"tools": [WEATHER, CLOCK], "tool_choice": {"type": "tool", "name": "get_time"}},
     {}, lambda s: s["tool_choice"] == "required" and [t["function"]["name"] for t in s["tools"]] == ["get_time"]),
    ("tool_choice none drops tools", {"tools": [WEATHER], "tool_choice": {"type": "none"}}, {},
     lambda s: "tools" not in s and "tool_choice" not in s),
    ("thinking enabled", {"thinking": {"type": "enabled", "budget_tokens": 2048}}, {},
     lambda s: s["chat_template_kwargs"] == {"enable_thinking": True}),
    ("thinking disabled", {"thinking": {"type": "disabled"}}, {},
     lambda s: s["chat_template_kwargs"] == {"enable_thinking": False}),
    ("thinking adaptive leaves the default", {"thinking": {"type": "adaptive"}}, {},
     lambda s: "chat_template_kwargs" not in s),
    ("output_config effort when thinking is adaptive",
     {"thinking": {"type": "adaptive"}, "output_config": {"effort": "xhigh"}}, {},
     lambda s: s["chat_template_kwargs"] == {"enable_thinking": True, "reasoning_effort": "high"}),
    ("thinking on LM Studio", {"thinking": {"type": "enabled"}}, {"dialect": LMSTUDIO},
     lambda s: s["reasoning_effort"] == "medium"),
    (
        "prefill on llama.cpp: the last assistant turn is sent, thinking off",
        {"messages": [USER, {"role": "assistant", "content": "The answer is"}], "thinking": {"type": "enabled"}},
        {},
        lambda s: s["messages"][-1] == {"role": "assistant", "content": "The answer is"}
        and s["chat_template_kwargs"] == {"enable_thinking": False} and "continue_final_message" not in s,
    ),
    (
        "prefill on vLLM",
        {"messages": [USER, {"role": "assistant", "content": [{"type": "text", "text": "The answer is"}]}]},
        {"dialect": VLLM},
        lambda s: s["continue_final_message"] is True and s["add_generation_prompt"] is False,
    ),
    (
        "image (base64)",
        {"messages": [{"role": "user", "content": [
            {"type": "text", "text": "What is this?"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
        ]}]},
        {},
        lambda s: s["messages"][0]["content"] == [
            {"type": "text", "text": "What is this?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        ],
    ),
    (
        "tool round trip: ids kept, results before the user's text, is_error noted",
        {"tools": [WEATHER], "messages": [
            USER,
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "I should look", "signature": "sig"},
                {"type": "text", "text": "Let me check."},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
                {"type": "tool_use", "id": "toolu_2", "name": "get_weather", "input": {"city": "Rome"}},
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_2", "content": [{"type": "text", "text": "rain"}],
                 "is_error": True},
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sun"},
                {"type": "text", "text": "And now?"},
            ]},
        ]},
        {},
        lambda s: s["messages"][1:] == [
            {"role": "assistant", "content": "Let me check.", "tool_calls": [
                {"id": "toolu_1", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                 "type": "function"},
                {"id": "toolu_2", "function": {"name": "get_weather", "arguments": '{"city":"Rome"}'},
                 "type": "function"}], "reasoning_content": "I should look"},
            {"role": "tool", "content": "Error: rain", "tool_call_id": "toolu_2"},
            {"role": "tool", "content": "sun", "tool_call_id": "toolu_1"},
            {"role": "user", "content": "And now?"},
        ],
    ),
    (
        "system inside messages stays in place; unknown blocks and empty messages dropped",
        {"messages": [USER, {"role": "system", "content": "reminder"},
                      {"role": "user", "content": [{"type": "document", "source": {}}]},
                      {"role": "user", "content": "next"}]},
        {},
        lambda s: [m["role"] for m in s["messages"]] == ["user", "system", "user"],
    ),
]


@pytest.mark.parametrize(("name", "fields", "options", "check"), REQUEST_CASES, ids=[c[0] for c in REQUEST_CASES])
def test_request_mapping(name: str, fields: dict[str, Any], options: dict[str, Any], check: Any) -> None:
    dialect = options.pop("dialect", LLAMACPP)
    sent = _sent(_req(**fields), dialect, **options)
    assert sent["model"] == "up-id"
    assert check(sent), json.dumps(sent, indent=1)


BAD_REQUESTS = [
    ({"model": ""}, "model is required"),
    ({"max_tokens": 0}, "max_tokens is required"),
    ({"max_tokens": None}, "max_tokens is required"),
    ({"messages": []}, "messages is required"),
]


@pytest.mark.parametrize(("fields", "message"), BAD_REQUESTS)
def test_request_checks(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        check_messages_request(_req(**fields))


TRANSLATION_ERRORS = [
    ({"messages": [{"role": "user", "content": [{"type": "image", "source": {"type": "url", "url": "http://x"}}]}]},
     "Only base64 images"),
    ({"messages": [{"role": "assistant", "content": [{"type": "tool_use", "name": "f", "input": {}}]}]},
     "missing required 'id'"),
    ({"messages": [{"role": "user", "content": [{"type": "tool_result", "content": "x"}]}]}, "tool_use_id"),
    ({"tools": [WEATHER], "tool_choice": {"type": "tool", "name": "nope"}}, "not in tools"),
    ({"messages": [{"role": "robot", "content": "x"}]}, "invalid role"),
]


@pytest.mark.parametrize(("fields", "message"), TRANSLATION_ERRORS)
def test_request_translation_refuses(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        messages_request_to_openai(_req(**fields), "up-id", LLAMACPP)


@pytest.mark.parametrize("dialect", sorted(DIALECTS), ids=str)
def test_every_dialect_translates_a_tool_request(dialect: str) -> None:
    sent = _sent(_req(tools=[WEATHER], tool_choice={"type": "any"}, thinking={"type": "enabled"}), DIALECTS[dialect])
    assert sent["tool_choice"] == "required"


def test_estimate_counts_characters_and_messages() -> None:
    short = _req(messages=[{"role": "user", "content": "abcd"}])
    assert estimate_input_tokens(short) == 2 + 4  # ceil((4 + len("user")) / 4) + 4 per message
    longer = _req(messages=[{"role": "user", "content": "abcd" * 100}], system="s", tools=[WEATHER])
    assert estimate_input_tokens(longer) > estimate_input_tokens(short) + 100


# -- the event translator ---------------------------------------------------------------------------

CTX = AnthropicContext(model="client-name", message_id="msg_0123456789abcdef01234567", input_tokens=42)


def _render(reads: Any, *, tools: bool = True) -> list[Any]:
    """Events (as JSON objects) the translator gives for these reads; a backend error as a last
    ``{"type": "error"}`` object, as the writer renders it."""
    inner = translator(context("chat", model="client-name", want_tool_calls=tools))
    pipeline = StreamPipeline(AnthropicTranslator(CTX, inner))
    out: list[Any] = []

    def take(produced: Any) -> bool:
        out.extend(produced.chunks)
        if produced.error is not None:
            out.append(error_object(produced.error.status, produced.error.message))
            return True
        return False

    for read in reads:
        if take(pipeline.feed(read)) or pipeline.done:
            return [msgspec.to_builtins(e) for e in out]
    take(pipeline.close())
    return [msgspec.to_builtins(e) for e in out]


def _check_sequence(events: list[dict[str, Any]]) -> None:
    """The order rules Claude Code and the SDK enforce, and the SDK's own accumulation."""
    assert [e["type"] for e in events[:2]] == ["message_start", "ping"]
    assert sum(e["type"] == "message_start" for e in events) == 1
    open_index: int | None = None
    opened: list[str] = []
    for event in events[2:]:
        kind = event["type"]
        if kind == "content_block_start":
            assert open_index is None
            assert event["index"] == len(opened)
            open_index = event["index"]
            opened.append(event["content_block"]["type"])
        elif kind == "content_block_delta":
            assert event["index"] == open_index
            expected = {"text": "text_delta", "thinking": "thinking_delta", "tool_use": "input_json_delta"}
            assert event["delta"]["type"] == expected[opened[open_index]]
        elif kind == "content_block_stop":
            assert event["index"] == open_index
            open_index = None
    if events[-1]["type"] != "error":
        assert [e["type"] for e in events[-2:]] == ["message_delta", "message_stop"]
        assert open_index is None
        snapshot = None
        buffers: dict[int, bytes] = {}
        for event in events:
            snapshot = accumulate_event(event=event, current_snapshot=snapshot, json_bufs=buffers)
        assert snapshot is not None
        assert snapshot.stop_reason == events[-2]["delta"]["stop_reason"]


@pytest.mark.parametrize("path", SSE_FILES, ids=lambda p: p.name)
def test_recorded_stream_gives_a_valid_event_sequence(path: Path) -> None:
    _check_sequence(_render([path.read_bytes()]))


@pytest.mark.parametrize("path", SSE_FILES, ids=lambda p: p.name)
def test_recorded_stream_survives_every_cut(path: Path) -> None:
    raw = path.read_bytes()
    whole = _render([raw])
    for offset in range(1, len(raw)):
        assert _render(cut(raw, [offset])) == whole, f"cut at byte {offset}"


def _blocks(events: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(block type, its text or arguments) in order."""
    blocks: list[list[str]] = []
    for event in events:
        if event["type"] == "content_block_start":
            blocks.append([event["content_block"]["type"], ""])
        elif event["type"] == "content_block_delta":
            delta = event["delta"]
            blocks[event["index"]][1] += delta.get("text") or delta.get("thinking") or delta.get("partial_json") or ""
    return [(kind, text) for kind, text in blocks]


def test_reasoning_becomes_a_thinking_block_before_the_text() -> None:
    events = _render([(STREAMS / "llamacpp_reasoning.sse").read_bytes()])
    blocks = _blocks(events)
    assert [kind for kind, _ in blocks] == ["thinking", "text"]
    assert blocks[0][1].startswith("The user")
    start = next(e for e in events if e["type"] == "content_block_start")
    assert start["content_block"] == {"type": "thinking", "thinking": "", "signature": ""}


def test_tool_calls_become_tool_use_blocks_and_stop_reason() -> None:
    events = _render([(STREAMS / "llamacpp_tool_calls.sse").read_bytes()])
    tool_starts = [e["content_block"] for e in events if e["type"] == "content_block_start"
                   and e["content_block"]["type"] == "tool_use"]
    assert tool_starts[0]["id"] == "kq3GJpBg8oBLt7dG9mVw7b1Wn4UbT5xM"
    assert tool_starts[0]["name"] == "get_weather"
    arguments = [text for kind, text in _blocks(events) if kind == "tool_use"]
    assert json.loads(arguments[0])["city"] == "Paris"
    assert events[-2]["delta"]["stop_reason"] == "tool_use"


def test_tool_calls_ignored_without_tools_in_the_request() -> None:
    events = _render([(STREAMS / "llamacpp_tool_calls.sse").read_bytes()], tools=False)
    assert all(kind != "tool_use" for kind, _ in _blocks(events))
    assert events[-2]["delta"]["stop_reason"] == "end_turn"


def test_length_stop_is_max_tokens_and_usage_comes_from_the_backend() -> None:
    events = _render([(STREAMS / "finish_length.sse").read_bytes()])
    assert events[-2]["delta"]["stop_reason"] == "max_tokens"
    assert events[0]["message"]["usage"] == {"input_tokens": 42, "output_tokens": 0}
    assert events[0]["message"]["model"] == "client-name"
    assert events[-2]["usage"]["output_tokens"] > 0


def test_error_midstream_ends_with_an_error_event() -> None:
    events = _render([(STREAMS / "llamacpp_error_midstream.sse").read_bytes()])
    assert events[-1]["type"] == "error"
    assert events[-1]["error"]["type"] == "api_error"
    assert [kind for kind, _ in _blocks(events)] == ["text"]


def _sse_text(*pieces: str, finish: str = "stop") -> bytes:
    frames = [{"choices": [{"index": 0, "delta": {"content": piece}}]} for piece in pieces]
    frames.append({"choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
    return b"".join(b"data: " + json.dumps(f).encode() + b"\n\n" for f in frames) + b"data: [DONE]\n\n"


PREFILL_CASES = [
    ("echoed, cut inside", ["The ans", "wer is", " 42."], " 42."),
    ("echoed whole, then more", ["The answer is 42."], " 42."),
    ("not echoed", [" 42."], " 42."),
    ("diverges inside the prefix", ["The ans", "w"], "The answ"),
    ("only the echo", ["The answer", " is"], ""),
    ("ends inside the prefix", ["The ans"], "The ans"),
]


@pytest.mark.parametrize(("name", "pieces", "text"), PREFILL_CASES, ids=[c[0] for c in PREFILL_CASES])
def test_prefill_echo_is_removed(name: str, pieces: list[str], text: str) -> None:
    raw = _sse_text(*pieces)
    for offset in range(0, len(raw), 7):
        inner = translator(context("chat", echoed_prefix="The answer is"))
        pipeline = StreamPipeline(AnthropicTranslator(CTX, inner))
        events = [msgspec.to_builtins(e) for read in cut(raw, [offset]) for e in pipeline.feed(read).chunks]
        events += [msgspec.to_builtins(e) for e in pipeline.close().chunks]
        assert "".join(t for _, t in _blocks(events)) == text
        _check_sequence(events)


def test_assembled_message_matches_the_stream() -> None:
    raw = (STREAMS / "llamacpp_reasoning.sse").read_bytes()
    inner = translator(context("chat", model="client-name"))
    pipeline = StreamPipeline(AnthropicTranslator(CTX, inner))
    events = pipeline.feed(raw).chunks + pipeline.close().chunks
    message = msgspec.to_builtins(assemble_message(events))
    blocks = _blocks([msgspec.to_builtins(e) for e in events])
    assert [(b["type"], b.get("text", b.get("thinking"))) for b in message["content"]] == blocks
    assert message["id"] == CTX.message_id
    assert message["model"] == "client-name"
    assert message["stop_reason"] == "end_turn"
    assert message["stop_sequence"] is None


def test_assembled_tool_use_has_its_input_object() -> None:
    raw = (STREAMS / "llamacpp_tool_calls.sse").read_bytes()
    pipeline = StreamPipeline(AnthropicTranslator(CTX, translator(context("chat"))))
    message = assemble_message(pipeline.feed(raw).chunks + pipeline.close().chunks)
    tool = next(b for b in message.content if isinstance(b, am.ToolUseOut))
    assert tool.input["city"] == "Paris"


ERRORS = [(400, "invalid_request_error"), (401, "authentication_error"), (404, "not_found_error"),
          (413, "request_too_large"), (422, "invalid_request_error"), (429, "rate_limit_error"),
          (500, "api_error"), (502, "api_error"), (503, "overloaded_error"), (504, "api_error")]


@pytest.mark.parametrize(("status", "kind"), ERRORS)
def test_error_object(status: int, kind: str) -> None:
    body = msgspec.to_builtins(error_object(status, "boom"))
    assert body == {"type": "error", "error": {"type": kind, "message": "boom"}}


# -- the native path's model renaming ---------------------------------------------------------------

NATIVE_STREAM = (
    b'event: message_start\n'
    b'data: {"type":"message_start","message":{"id":"msg_1","model":"/m/x.gguf","content":[]}}\n\n'
    b'event: content_block_delta\r\n'
    b'data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"the \\"model\\" is"}}\r\n\r\n'
    b'event: message_stop\n'
    b'data: {"type":"message_stop"}'
)


def _renamed(reads: Any) -> bytes:
    renamer = ModelRenamer("/m/x.gguf", "client:latest", max_line=10_000)
    return b"".join(renamer.feed(read) for read in reads) + renamer.close()


def test_renamer_rewrites_model_fields_only() -> None:
    out = _renamed([NATIVE_STREAM])
    assert b'"model":"client:latest"' in out
    assert b"/m/x.gguf" not in out
    assert out.replace(b'"model":"client:latest"', b'"model":"/m/x.gguf"') == NATIVE_STREAM


def test_renamer_survives_every_cut() -> None:
    whole = _renamed([NATIVE_STREAM])
    for offset in range(1, len(NATIVE_STREAM)):
        assert _renamed(cut(NATIVE_STREAM, [offset])) == whole, f"cut at byte {offset}"


def test_renamer_document_and_line_bound() -> None:
    renamer = ModelRenamer("/m/x.gguf", "client:latest", max_line=16)
    assert json.loads(renamer.document(b'{"model": "/m/x.gguf", "x": 1}')) == {"model": "client:latest", "x": 1}
    assert renamer.document(b'{"model": "other"}') == b'{"model": "other"}'
    with pytest.raises(UpstreamProtocol):
        renamer.feed(b"data: " + b"x" * 32)


def test_only_llamacpp_speaks_messages_natively() -> None:
    assert LLAMACPP.native_apis == {"messages"}  # its /v1/responses stream breaks the openai SDK
    assert not GENERIC.native_apis
    assert not OPENAI.native_apis
