"""Ollama chat/generate/embed requests -> OpenAI requests, per backend dialect.

Requests are decoded from JSON bytes with the real wire types, as a route would, and checked on
the bytes that would go upstream.
"""

from __future__ import annotations

import base64
import dataclasses
import math
from typing import Any

import msgspec
import pytest

from ollama_shim.dialect import DIALECTS, LLAMACPP, LMSTUDIO, OPENAI
from ollama_shim.errors import BadRequest
from ollama_shim.translate.images import image_data_url, sniff_image_mime
from ollama_shim.translate.options import IgnoredOption
from ollama_shim.translate.request import (
    ChatRequestPlan,
    CompletionRequestPlan,
    Delivery,
    chat_request_to_openai,
    embed_request_to_openai,
    embeddings_request_to_openai,
    format_to_response_format,
    generate_request_to_openai,
    is_load_request,
    load_done_reason,
    parse_keep_alive,
    parse_think,
    ttl_seconds,
    wants_unload,
)
from ollama_shim.wire import ollama

KINDS = ("llamacpp", "lmstudio", "vllm", "openai", "openrouter", "generic")
USER_HI = [{"role": "user", "content": "hi"}]


def chat_plan(body: dict[str, Any], kind: str = "llamacpp", *, stream: bool = False) -> ChatRequestPlan:
    req = msgspec.json.decode(msgspec.json.encode({"model": "m", **body}), type=ollama.ChatRequest)
    return chat_request_to_openai(req, "upstream-id", DIALECTS[kind], Delivery.STREAM if stream else Delivery.WHOLE)


def chat_json(body: dict[str, Any], kind: str = "llamacpp", *, stream: bool = False) -> dict[str, Any]:
    return msgspec.json.decode(msgspec.json.encode(chat_plan(body, kind, stream=stream).request))


def chat_bytes(body: dict[str, Any], kind: str = "llamacpp", *, stream: bool = False) -> bytes:
    return msgspec.json.encode(chat_plan(body, kind, stream=stream).request)


def generate_plan(body: dict[str, Any], kind: str = "llamacpp") -> ChatRequestPlan | CompletionRequestPlan:
    req = msgspec.json.decode(msgspec.json.encode({"model": "m", **body}), type=ollama.GenerateRequest)
    return generate_request_to_openai(req, "upstream-id", DIALECTS[kind], Delivery.WHOLE)


def generate_json(body: dict[str, Any], kind: str = "llamacpp") -> dict[str, Any]:
    return msgspec.json.decode(msgspec.json.encode(generate_plan(body, kind).request))


def bad_request(call: Any, *args: Any, **kwargs: Any) -> str:
    with pytest.raises(BadRequest) as caught:
        call(*args, **kwargs)
    assert caught.value.status == 400
    return caught.value.message


# ---------------------------------------------------------------------------
# Envelope: model, stream, stream_options
# ---------------------------------------------------------------------------


def test_minimal_chat_bytes() -> None:
    assert chat_bytes({"messages": USER_HI}) == (b'{"model":"upstream-id","messages":[{"role":"user","content":"hi"}]}')


@pytest.mark.parametrize("kind", KINDS)
def test_streaming_asks_for_usage(kind: str) -> None:
    sent = chat_json({"messages": USER_HI}, kind, stream=True)
    assert sent["stream"] is True
    assert sent["stream_options"] == {"include_usage": True}


@pytest.mark.parametrize("kind", KINDS)
def test_no_stream_options_without_streaming(kind: str) -> None:
    assert b"stream_options" not in chat_bytes({"messages": USER_HI, "stream": True}, kind, stream=False)


def test_no_stream_options_when_the_dialect_forbids_usage() -> None:
    req = ollama.ChatRequest(model="m", messages=[ollama.RequestMessage(role="user", content="hi")])
    quiet = dataclasses.replace(LLAMACPP, stream_usage=False)
    body = msgspec.json.encode(chat_request_to_openai(req, "x", quiet, Delivery.STREAM).request)
    assert b'"stream":true' in body
    assert b"stream_options" not in body


@pytest.mark.parametrize(
    ("client_stream", "kind", "delivery"),
    [
        (None, "llamacpp", Delivery.STREAM),
        (True, "generic", Delivery.STREAM),
        (False, "llamacpp", Delivery.GATHER),
        (False, "lmstudio", Delivery.GATHER),
        (False, "vllm", Delivery.WHOLE),
        (False, "openai", Delivery.WHOLE),
        (False, "openrouter", Delivery.WHOLE),
        (False, "generic", Delivery.WHOLE),
    ],
)
def test_delivery_is_chosen_from_stream_and_dialect(client_stream: bool | None, kind: str, delivery: Delivery) -> None:
    assert Delivery.choose(client_stream, DIALECTS[kind]) is delivery


@pytest.mark.parametrize("delivery", list(Delivery))
def test_a_plan_carries_its_delivery_and_asks_the_backend_to_stream_accordingly(delivery: Delivery) -> None:
    req = ollama.ChatRequest(model="m", messages=[ollama.RequestMessage(role="user", content="hi")])
    plan = chat_request_to_openai(req, "x", LLAMACPP, delivery)
    assert plan.delivery is delivery
    assert plan.request.stream is (delivery is not Delivery.WHOLE)


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"prompt": "hi"}, "/v1/chat/completions"),
        ({"prompt": "hi", "raw": True}, "/v1/completions"),
        ({"prompt": "def f(", "suffix": "return 1"}, "/v1/completions"),
    ],
    ids=["templated", "raw", "suffix"],
)
def test_a_generate_plan_names_its_path(body: dict[str, Any], path: str) -> None:
    assert generate_plan(body).path == path


def test_a_chat_plan_names_its_path() -> None:
    assert chat_plan({"messages": USER_HI}).path == "/v1/chat/completions"


def test_unset_knobs_are_absent_not_null() -> None:
    body = chat_bytes({"messages": USER_HI, "format": None, "think": None, "keep_alive": None}, "lmstudio")
    for key in (b"null", b"response_format", b"reasoning", b"ttl", b"tools", b"logprobs", b"chat_template"):
        assert key not in body


# ---------------------------------------------------------------------------
# Roles and thinking in history
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "sent"),
    [("user", "user"), ("User", "user"), ("SYSTEM", "system"), ("Assistant", "assistant"), ("TOOL", "tool")],
)
def test_roles_are_lower_cased(given: str, sent: str) -> None:
    assert chat_json({"messages": [{"role": given, "content": "x"}]})["messages"][0]["role"] == sent


@pytest.mark.parametrize("role", ["function", "developer", "bot", ""])
def test_unknown_roles_are_rejected_by_name(role: str) -> None:
    message = bad_request(chat_plan, {"messages": [{"role": role, "content": "x"}]})
    assert message == f'invalid role "{role}": must be one of system, user, assistant, tool'


THOUGHT_HISTORY = [*USER_HI, {"role": "assistant", "content": "hello", "thinking": "greet them"}]


def test_assistant_thinking_goes_back_to_llamacpp_as_reasoning_content() -> None:
    """llama.cpp hands it to the chat template, as Ollama hands ``thinking`` to its own."""
    body = chat_bytes({"messages": THOUGHT_HISTORY}, "llamacpp")
    assert b'{"role":"assistant","content":"hello","reasoning_content":"greet them"}' in body


@pytest.mark.parametrize("kind", ["lmstudio", "vllm", "openai", "openrouter", "generic"])
def test_assistant_thinking_is_left_out_elsewhere(kind: str) -> None:
    body = chat_bytes({"messages": THOUGHT_HISTORY}, kind)
    assert b'{"role":"assistant","content":"hello"}' in body
    assert b"greet them" not in body


def test_an_empty_thinking_is_not_sent() -> None:
    body = chat_bytes({"messages": [*USER_HI, {"role": "assistant", "content": "hello", "thinking": ""}]})
    assert b"reasoning_content" not in body


# ---------------------------------------------------------------------------
# Images
# ---------------------------------------------------------------------------

SIGNATURES = [
    pytest.param(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "image/png", id="png"),
    pytest.param(b"\xff\xd8\xff\xe0\x00\x10JFIF", "image/jpeg", id="jpeg"),
    pytest.param(b"GIF89a\x01\x00\x01\x00", "image/gif", id="gif89a"),
    pytest.param(b"GIF87a\x01\x00\x01\x00", "image/gif", id="gif87a"),
    pytest.param(b"RIFF\x24\x00\x00\x00WEBPVP8 ", "image/webp", id="webp"),
    pytest.param(b"BM\x36\x00\x00\x00\x00\x00", "image/bmp", id="bmp"),
    pytest.param(b"\x00\x00\x01\x00icon", "image/jpeg", id="unknown-falls-back-to-jpeg"),
    pytest.param(b"RIFF\x24\x00\x00\x00WAVEfmt ", "image/jpeg", id="riff-not-webp"),
]


@pytest.mark.parametrize(("data", "mime"), SIGNATURES)
def test_mime_is_sniffed_from_the_bytes(data: bytes, mime: str) -> None:
    assert sniff_image_mime(data) == mime
    encoded = base64.b64encode(data).decode()
    assert image_data_url(encoded) == f"data:{mime};base64,{encoded}"


PNG_B64 = base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(16)).decode()
JPEG_B64 = base64.b64encode(b"\xff\xd8\xff\xdb" + bytes(16)).decode()


def test_message_images_become_content_parts_bytes() -> None:
    body = chat_bytes({"messages": [{"role": "user", "content": "what is this?", "images": [PNG_B64, JPEG_B64]}]})
    assert body.startswith(
        b'{"model":"upstream-id","messages":[{"role":"user","content":['
        b'{"type":"text","text":"what is this?"},'
        b'{"type":"image_url","image_url":{"url":"data:image/png;base64,' + PNG_B64.encode() + b'"}},'
        b'{"type":"image_url","image_url":{"url":"data:image/jpeg;base64,' + JPEG_B64.encode() + b'"}}]}'
    )


def test_images_without_text_send_no_empty_text_part() -> None:
    parts = chat_json({"messages": [{"role": "user", "images": [PNG_B64]}]})["messages"][0]["content"]
    assert [part["type"] for part in parts] == ["image_url"]


def test_line_broken_base64_is_accepted() -> None:
    wrapped = PNG_B64[:10] + "\n" + PNG_B64[10:]
    assert image_data_url(wrapped) == f"data:image/png;base64,{PNG_B64}"


@pytest.mark.parametrize(
    "image",
    [
        "not base64!!",
        f"data:image/png;base64,{PNG_B64}",
        PNG_B64.rstrip("=")[:-1],
        "",
    ],
    ids=["junk", "data-url-prefix", "bad-padding", "empty"],
)
def test_bad_base64_is_a_bad_request(image: str) -> None:
    message = bad_request(chat_plan, {"messages": [USER_HI[0], {"role": "user", "content": "x", "images": [image]}]})
    assert message.startswith("invalid image in messages[1].images[0]: ")


# ---------------------------------------------------------------------------
# Tool definitions, tool calls in history, tool results
# ---------------------------------------------------------------------------

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def test_tools_bytes() -> None:
    body = chat_bytes({"messages": USER_HI, "tools": [WEATHER_TOOL]})
    assert body.endswith(
        b'"tools":[{"function":{"name":"get_weather","description":"Weather for a city",'
        b'"parameters":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}},'
        b'"type":"function"}]}'
    )


def test_empty_tools_are_left_out() -> None:
    assert b"tools" not in chat_bytes({"messages": USER_HI, "tools": []})


def call(name: str, arguments: Any = None, call_id: str | None = None) -> dict[str, Any]:
    function: dict[str, Any] = {"name": name}
    if arguments is not None:
        function["arguments"] = arguments
    return {"function": function, **({"id": call_id} if call_id else {})}


def assistant(*calls: dict[str, Any]) -> dict[str, Any]:
    return {"role": "assistant", "content": "", "tool_calls": list(calls)}


def result(content: str, name: str | None = None, call_id: str | None = None) -> dict[str, Any]:
    message = {"role": "tool", "content": content}
    if name:
        message["tool_name"] = name
    if call_id:
        message["tool_call_id"] = call_id
    return message


def sent_tool_call_ids(history: list[dict[str, Any]]) -> list[str | None]:
    sent = chat_json({"messages": history})["messages"]
    return [message.get("tool_call_id") for message in sent if message["role"] == "tool"]


LINKING = [
    pytest.param(
        [assistant(call("f", {"a": 1}), call("f", {"a": 2})), result("1", "f"), result("2", "f")],
        ["call_0_0", "call_0_1"],
        id="same-name-calls-do-not-collide",
    ),
    pytest.param(
        [assistant(call("a"), call("b")), result("B", "b"), result("A", "a")],
        ["call_0_1", "call_0_0"],
        id="linked-by-name-out-of-order",
    ),
    pytest.param(
        [assistant(call("a"), call("b")), result("1"), result("2")],
        ["call_0_0", "call_0_1"],
        id="no-name-linked-by-order",
    ),
    pytest.param(
        [assistant(call("a"), call("b")), result("?", "zzz"), result("2", "b")],
        ["call_0_0", "call_0_1"],
        id="unknown-name-takes-earliest-unanswered",
    ),
    pytest.param(
        [assistant(call("a", call_id="x1"), call("b", call_id="y2")), result("B", "b"), result("A", "a")],
        ["y2", "x1"],
        id="given-ids-kept-and-linked-by-name",
    ),
    pytest.param(
        [assistant(call("a"), call("a")), result("2", "a", call_id="call_0_1"), result("1", "a")],
        ["call_0_1", "call_0_0"],
        id="generated-id-given-back-then-the-other",
    ),
    pytest.param(
        [assistant(call("a", call_id="k1"), call("a", call_id="k2")), result("2", call_id="k2"), result("1")],
        ["k2", "k1"],
        id="given-id-answered-then-the-other",
    ),
    pytest.param(
        [assistant(call("a")), result("1", "a", call_id="free-text-id")],
        ["free-text-id"],
        id="unmatched-tool-call-id-kept-as-given",
    ),
    pytest.param(
        [USER_HI[0], assistant(call("a")), result("1", "a"), USER_HI[0], assistant(call("a")), result("2", "a")],
        ["call_1_0", "call_4_0"],
        id="second-turn-links-to-second-call",
    ),
    pytest.param([result("orphan", "a")], [None], id="nothing-to-answer"),
]


@pytest.mark.parametrize(("history", "expected"), LINKING)
def test_tool_results_are_linked_to_calls(history: list[dict[str, Any]], expected: list[str | None]) -> None:
    assert sent_tool_call_ids(history) == expected


def test_generated_id_avoids_a_given_one() -> None:
    history = [USER_HI[0], assistant(call("a", call_id="call_1_1"), call("b"))]
    calls = chat_json({"messages": history})["messages"][1]["tool_calls"]
    assert [c["id"] for c in calls] == ["call_1_1", "call_1_1_1"]


def test_orphan_tool_result_has_no_tool_call_id_key() -> None:
    assert b"tool_call_id" not in chat_bytes({"messages": [USER_HI[0], result("x", "a")]})


@pytest.mark.parametrize(
    ("arguments", "sent"),
    [
        ({"city": "Paris", "days": 2}, '{"city":"Paris","days":2}'),
        ({}, "{}"),
        (None, "{}"),
        ('{"city": "Paris"}', '{"city": "Paris"}'),
        ({"nested": {"b": [1, 2]}, "a": None}, '{"nested":{"b":[1,2]},"a":null}'),
    ],
)
def test_tool_call_arguments_are_sent_as_json_text(arguments: Any, sent: str) -> None:
    body = chat_json({"messages": [USER_HI[0], assistant(call("f", arguments))]})
    assert body["messages"][1]["tool_calls"] == [
        {"id": "call_1_0", "type": "function", "function": {"name": "f", "arguments": sent}}
    ]


@pytest.mark.parametrize(
    ("arguments", "refused"),
    [
        ("[" * 100_000 + "]" * 100_000, True),
        ('{"a":' + "[" * 256 + "]" * 256 + "}", True),  # one level past the limit
        ('{"a":' + "[" * 255 + "]" * 255 + "}", False),  # at the limit
        ('{"a":"' + "[" * 100_000 + '"}', False),  # brackets inside a string do not nest
        ('{"a":"\\\"' + "{" * 1000 + '"}', False),  # nor after escaped backslashes and quotes
    ],
    ids=["100000-deep", "257-deep", "256-deep", "in-a-string", "after-escapes"],
)
def test_deeply_nested_string_arguments_are_refused(arguments: str, refused: bool) -> None:
    body = {"messages": [USER_HI[0], assistant(call("f", arguments))]}
    if refused:
        assert bad_request(chat_plan, body) == 'invalid tool call arguments for "f": exceeded max depth of 256'
    else:
        assert chat_json(body)["messages"][1]["tool_calls"][0]["function"]["arguments"] == arguments


def test_unparseable_string_arguments_are_rejected() -> None:
    message = bad_request(chat_plan, {"messages": [assistant(call("f", "{not json"))]})
    assert message == 'invalid tool call arguments for "f"'


@pytest.mark.parametrize(("kind", "has_name"), [(kind, kind != "openai") for kind in KINDS])
def test_tool_name_on_results_per_dialect(kind: str, has_name: bool) -> None:
    body = chat_json({"messages": [USER_HI[0], assistant(call("a")), result("1", "a")]}, kind)
    tool_message = body["messages"][2]
    assert tool_message["tool_call_id"] == "call_1_0"
    assert ("name" in tool_message) is has_name


# ---------------------------------------------------------------------------
# format
# ---------------------------------------------------------------------------

SCHEMA = {"type": "object", "properties": {"age": {"type": "integer"}}, "required": ["age"]}
JSON_MODE = {"type": "json_object"}
LMSTUDIO_JSON = {"type": "json_schema", "json_schema": {"name": "json", "schema": {"type": "object"}}}
SCHEMA_MODE = {"type": "json_schema", "json_schema": {"name": "schema", "schema": SCHEMA, "strict": True}}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    ("fmt", "expected"),
    [(None, None), ("", None), ("json", "json-mode"), (SCHEMA, SCHEMA_MODE)],
    ids=["null", "empty", "json", "schema"],
)
def test_format_per_dialect(kind: str, fmt: Any, expected: Any) -> None:
    if expected == "json-mode":
        expected = LMSTUDIO_JSON if kind == "lmstudio" else JSON_MODE
    if expected == SCHEMA_MODE and kind in ("openai", "openrouter"):
        expected = {"type": "json_schema", "json_schema": {"name": "schema", "schema": SCHEMA}}  # not strict
    assert chat_json({"messages": USER_HI, "format": fmt}, kind).get("response_format") == expected


@pytest.mark.parametrize(
    ("fmt", "shown"),
    [("yaml", '"yaml"'), ("JSON", '"JSON"'), (["json"], '["json"]'), (3, "3"), (True, "true")],
)
def test_invalid_format(fmt: Any, shown: str) -> None:
    message = bad_request(format_to_response_format, fmt, LLAMACPP)
    assert message == f'invalid format: {shown}; expected "json" or a valid JSON Schema object'


def test_invalid_format_through_a_request() -> None:
    assert bad_request(chat_plan, {"messages": USER_HI, "format": "xml"}).startswith("invalid format: ")


# ---------------------------------------------------------------------------
# think
# ---------------------------------------------------------------------------

THINK_TABLE: dict[str, dict[Any, dict[str, Any]]] = {
    "llamacpp": {
        True: {"chat_template_kwargs": {"enable_thinking": True}},
        False: {"chat_template_kwargs": {"enable_thinking": False}},
        "low": {"chat_template_kwargs": {"enable_thinking": True, "reasoning_effort": "low"}},
        "high": {"chat_template_kwargs": {"enable_thinking": True, "reasoning_effort": "high"}},
        "max": {"chat_template_kwargs": {"enable_thinking": True, "reasoning_effort": "max"}},
    },
    "lmstudio": {
        True: {"reasoning_effort": "medium"},
        False: {},
        "low": {"reasoning_effort": "low"},
        "high": {"reasoning_effort": "high"},
        "max": {"reasoning_effort": "high"},
    },
    "openai": {
        True: {"reasoning_effort": "medium"},
        False: {},
        "medium": {"reasoning_effort": "medium"},
        "max": {"reasoning_effort": "high"},
    },
    "openrouter": {
        True: {"reasoning": {"enabled": True}},
        False: {"reasoning": {"enabled": False}},
        "low": {"reasoning": {"effort": "low"}},
        "medium": {"reasoning": {"effort": "medium"}},
        "max": {"reasoning": {"effort": "xhigh"}},
    },
    "generic": {True: {}, False: {}, "high": {}},
}
THINK_TABLE["vllm"] = THINK_TABLE["llamacpp"]
THINK_KEYS = ("chat_template_kwargs", "reasoning_effort", "reasoning")


@pytest.mark.parametrize(
    ("kind", "think", "expected"),
    [(kind, think, expected) for kind, rows in THINK_TABLE.items() for think, expected in rows.items()],
)
def test_think_per_dialect(kind: str, think: Any, expected: dict[str, Any]) -> None:
    sent = chat_json({"messages": USER_HI, "think": think}, kind)
    assert {key: sent[key] for key in THINK_KEYS if key in sent} == expected


@pytest.mark.parametrize("kind", KINDS)
def test_omitted_think_sends_nothing(kind: str) -> None:
    body = chat_bytes({"messages": USER_HI}, kind)
    assert b"reasoning" not in body
    assert b"enable_thinking" not in body


@pytest.mark.parametrize(
    ("think", "shown"), [("extreme", '"extreme"'), ("true", '"true"'), ("", '""'), ("HIGH", '"HIGH"')]
)
def test_invalid_think(think: str, shown: str) -> None:
    message = bad_request(chat_plan, {"messages": USER_HI, "think": think})
    assert message == f'invalid think value: {shown} (must be "high", "medium", "low", "max", true, or false)'


@pytest.mark.parametrize("value", [None, True, False, "low", "medium", "high", "max"])
def test_parse_think_accepts(value: Any) -> None:
    assert parse_think(value) == value


# ---------------------------------------------------------------------------
# keep_alive
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (None, None),
        (0, 0.0),
        (300, 300.0),
        (1800, 1800.0),
        (1.9, 1.0),
        (0.5, 0.0),
        (-1, math.inf),
        (-0.5, math.inf),
        ("0", 0.0),
        ("0s", 0.0),
        ("5m", 300.0),
        ("1h30m", 5400.0),
        ("1.5h", 5400.0),
        ("2h45m30.5s", 9930.5),
        ("300ms", 0.3),
        ("10us", 1e-5),
        ("10\u00b5s", 1e-5),
        ("1000000ns", 1e-3),
        ("+5m", 300.0),
        ("-5m", math.inf),
        ("-1s", math.inf),
        ("300", 300.0),
        ("-1", math.inf),
        ("-1.0", math.inf),
        (".5h", 1800.0),
    ],
)
def test_parse_keep_alive(value: Any, seconds: float | None) -> None:
    assert parse_keep_alive(value) == pytest.approx(seconds) if seconds is not None else parse_keep_alive(value) is None


@pytest.mark.parametrize("value", ["abc", "5x", "m", "", "5 m", " 5m", "1h-30m", "5m3", "--1", "1e3s"])
def test_bad_keep_alive_strings(value: str) -> None:
    assert bad_request(parse_keep_alive, value) == f'time: invalid duration "{value}"'


@pytest.mark.parametrize(
    "value",
    [
        "1" + "0" * 400,  # bare seconds, hundreds of digits
        "1" + "0" * 400 + "s",
        "-" + "9" * 300 + "h",  # negative overflows too, as in Go
        "9223372037s",  # just past an int64 of nanoseconds
        "2562048h",
        "2562047h3600s",  # each part fits, the sum does not
        "9223372036.854775808s",
        "-9223372036.854775809s",
    ],
    ids=["bare-400-digits", "seconds-400-digits", "negative-hours", "int64-seconds", "int64-hours", "sum",
         "one-ns-past", "negative-one-ns-past"],
)
def test_keep_alive_beyond_a_go_duration_is_refused(value: str) -> None:
    shown = value if len(value) <= 100 else value[:100] + "…"
    assert bad_request(parse_keep_alive, value) == f'time: invalid duration "{shown}"'
    assert bad_request(chat_plan, {"messages": USER_HI, "keep_alive": value}, "lmstudio")


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("9223372036s", 9223372036.0), ("2562047h", 9223369200.0), ("-9223372036.854775808s", math.inf),
     ("0" * 500 + "5m", 300.0), ("1." + "9" * 1000 + "s", 1.999999999), ("-0", 0.0), (9.2e9, 9.2e9),
     (-1e300, math.inf)],
    ids=["int64-seconds", "int64-hours", "int64-min", "leading-zeros", "long-fraction", "minus-zero", "big-number",
         "huge-negative-number"],
)
def test_keep_alive_at_the_edge_of_a_go_duration(value: Any, seconds: float) -> None:
    assert parse_keep_alive(value) == pytest.approx(seconds)


@pytest.mark.parametrize("value", [1e300, 9.3e9, float("inf"), float("nan")], ids=["1e300", "9.3e9", "inf", "nan"])
def test_keep_alive_numbers_beyond_a_go_duration_are_refused(value: float) -> None:
    assert bad_request(parse_keep_alive, value).startswith("time: invalid duration ")
    assert bad_request(wants_unload, value).startswith("time: invalid duration ")


@pytest.mark.parametrize("value", [True, [5], {"s": 1}])
def test_bad_keep_alive_types(value: Any) -> None:
    assert bad_request(parse_keep_alive, value).startswith("invalid keep_alive: ")


def test_bad_keep_alive_fails_the_request_on_every_dialect() -> None:
    for kind in KINDS:
        assert bad_request(chat_plan, {"messages": USER_HI, "keep_alive": "soon"}, kind)


@pytest.mark.parametrize(
    ("keep_alive", "ttl"),
    [("5m", 300), (1800, 1800), ("300ms", 1), ("1.5s", 2), (0, None), ("0", None), (-1, None), (None, None)],
)
def test_ttl_on_lmstudio(keep_alive: Any, ttl: int | None) -> None:
    assert ttl_seconds(keep_alive, LMSTUDIO) == ttl
    assert chat_json({"messages": USER_HI, "keep_alive": keep_alive}, "lmstudio").get("ttl") == ttl


@pytest.mark.parametrize("kind", [kind for kind in KINDS if kind != "lmstudio"])
def test_no_ttl_elsewhere(kind: str) -> None:
    assert b"ttl" not in chat_bytes({"messages": USER_HI, "keep_alive": "5m"}, kind)


@pytest.mark.parametrize(
    ("keep_alive", "unload"),
    [(0, True), ("0", True), ("0s", True), (0.5, True), (None, False), ("5m", False), (-1, False), ("300ms", False)],
)
def test_wants_unload(keep_alive: Any, unload: bool) -> None:
    assert wants_unload(keep_alive) is unload
    assert load_done_reason(keep_alive) == ("unload" if unload else "load")


# ---------------------------------------------------------------------------
# options, logprobs
# ---------------------------------------------------------------------------


def test_options_reach_the_request_and_ignored_names_the_plan() -> None:
    plan = chat_plan({"messages": USER_HI, "options": {"num_predict": 64, "top_k": 5, "num_ctx": 8192}}, "openai")
    body = msgspec.json.encode(plan.request)
    assert b'"max_completion_tokens":64' in body
    assert b"top_k" not in body
    assert b"num_ctx" not in body
    assert b'"max_tokens"' not in body
    assert plan.ignored_options == (IgnoredOption("top_k", "unsupported"), IgnoredOption("num_ctx", "load_time"))


def test_unlimited_num_predict_sends_no_max_tokens() -> None:
    body = chat_bytes({"messages": USER_HI, "options": {"num_predict": -1}})
    assert b"max_tokens" not in body
    assert b"max_completion_tokens" not in body


def test_wrong_option_type_fails_the_request() -> None:
    message = bad_request(chat_plan, {"messages": USER_HI, "options": {"temperature": "warm"}})
    assert message == 'option "temperature" must be of type float32'


@pytest.mark.parametrize(
    ("logprobs", "top", "expected"),
    [
        (True, 5, {"logprobs": True, "top_logprobs": 5}),
        (True, 0, {"logprobs": True}),
        (True, None, {"logprobs": True}),
        (True, 20, {"logprobs": True, "top_logprobs": 20}),
        (False, 5, {}),
        (None, 3, {}),
        (None, None, {}),
    ],
)
def test_logprobs(logprobs: bool | None, top: int | None, expected: dict[str, Any]) -> None:
    sent = chat_json({"messages": USER_HI, "logprobs": logprobs, "top_logprobs": top})
    assert {key: sent[key] for key in ("logprobs", "top_logprobs") if key in sent} == expected


@pytest.mark.parametrize("top", [21, -1, 100])
def test_top_logprobs_out_of_range(top: int) -> None:
    message = bad_request(chat_plan, {"messages": USER_HI, "logprobs": True, "top_logprobs": top})
    assert message == "top_logprobs must be between 0 and 20"


# ---------------------------------------------------------------------------
# /api/generate
# ---------------------------------------------------------------------------


def test_generate_prompt_goes_through_chat() -> None:
    plan = generate_plan({"prompt": "Why is the sky blue?"})
    assert isinstance(plan, ChatRequestPlan)
    assert msgspec.json.encode(plan.request) == (
        b'{"model":"upstream-id","messages":[{"role":"user","content":"Why is the sky blue?"}]}'
    )


def test_generate_system_comes_first() -> None:
    sent = generate_json({"prompt": "hi", "system": "Be brief."})
    assert sent["messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]


def test_generate_images_become_parts() -> None:
    content = generate_json({"prompt": "describe", "images": [PNG_B64]})["messages"][0]["content"]
    assert content == [
        {"type": "text", "text": "describe"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_B64}"}},
    ]


def test_generate_bad_image() -> None:
    assert bad_request(generate_plan, {"prompt": "x", "images": ["%%%"]}).startswith("invalid image in images[0]")


def test_generate_context_is_accepted_and_not_sent() -> None:
    body = msgspec.json.encode(generate_plan({"prompt": "hi", "context": [1, 2, 3]}).request)
    assert b"context" not in body
    assert b"[1,2,3]" not in body


@pytest.mark.parametrize(
    ("extra", "suffix"),
    [({"raw": True}, None), ({"suffix": "}\n"}, "}\n"), ({"raw": True, "suffix": "end"}, "end")],
    ids=["raw", "suffix", "raw-and-suffix"],
)
def test_generate_raw_or_suffix_uses_completions(extra: dict[str, Any], suffix: str | None) -> None:
    plan = generate_plan({"prompt": "def f(", **extra, "options": {"num_predict": 32, "stop": ["\n\n"]}})
    assert isinstance(plan, CompletionRequestPlan)
    sent = msgspec.json.decode(msgspec.json.encode(plan.request))
    expected = {"model": "upstream-id", "prompt": "def f(", "max_tokens": 32, "stop": ["\n\n"]}
    assert sent == (expected | {"suffix": suffix} if suffix else expected)


def test_generate_empty_suffix_is_no_suffix() -> None:
    assert isinstance(generate_plan({"prompt": "x", "suffix": ""}), ChatRequestPlan)


def test_completions_carry_no_chat_fields() -> None:
    body = msgspec.json.encode(generate_plan({"prompt": "x", "raw": True, "think": True, "format": "json"}).request)
    assert b"messages" not in body
    assert b"chat_template_kwargs" not in body
    assert b"reasoning" not in body
    assert b'"response_format":{"type":"json_object"}' in body


def test_completion_logprobs_is_a_count() -> None:
    sent = generate_json({"prompt": "x", "raw": True, "logprobs": True, "top_logprobs": 3})
    assert sent["logprobs"] == 3


@pytest.mark.parametrize(
    "extra",
    [{"template": "{{ .Prompt }}"}, {"system": "s"}, {"context": [1]}, {"template": "t", "suffix": "x"}],
    ids=["template", "system", "context", "template-with-suffix"],
)
def test_raw_refuses_template_system_context(extra: dict[str, Any]) -> None:
    message = bad_request(generate_plan, {"prompt": "x", "raw": True, **extra})
    assert message == "raw mode does not support template, system, or context"


@pytest.mark.parametrize("extra", [{}, {"suffix": "s"}, {"system": "s"}], ids=["alone", "suffix", "system"])
def test_template_is_refused_with_a_reason(extra: dict[str, Any]) -> None:
    message = bad_request(generate_plan, {"prompt": "x", "template": "{{ .Prompt }}", **extra})
    assert message.startswith("template is not supported: prompt templates are applied by the backend")


@pytest.mark.parametrize("extra", [{"raw": True}, {"suffix": "s"}])
def test_images_are_refused_on_completions(extra: dict[str, Any]) -> None:
    message = bad_request(generate_plan, {"prompt": "x", "images": [PNG_B64], **extra})
    assert message == "images are not supported with raw or suffix"


def test_generate_think_and_format_per_dialect() -> None:
    sent = generate_json({"prompt": "x", "think": "low", "format": "json"}, "lmstudio")
    assert sent["reasoning_effort"] == "low"
    assert sent["response_format"] == LMSTUDIO_JSON


# ---------------------------------------------------------------------------
# Load-only requests
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("req", "load"),
    [
        (ollama.ChatRequest(model="m"), True),
        (ollama.ChatRequest(model="m", messages=[]), True),
        (ollama.ChatRequest(model="m", messages=[ollama.RequestMessage(role="user")]), False),
        (ollama.GenerateRequest(model="m"), True),
        (ollama.GenerateRequest(model="m", prompt="", keep_alive=0), True),
        (ollama.GenerateRequest(model="m", prompt="", suffix="x"), False),
        (ollama.GenerateRequest(model="m", prompt="", suffix=""), True),
        (ollama.GenerateRequest(model="m", prompt="hi"), False),
    ],
)
def test_is_load_request(req: ollama.ChatRequest | ollama.GenerateRequest, load: bool) -> None:
    assert is_load_request(req) is load


# ---------------------------------------------------------------------------
# /api/embed and /api/embeddings requests
# ---------------------------------------------------------------------------


def embed_body(body: dict[str, Any], kind: str = "llamacpp") -> Any:
    req = msgspec.json.decode(msgspec.json.encode({"model": "m", **body}), type=ollama.EmbedRequest)
    return embed_request_to_openai(req, "upstream-id", DIALECTS[kind])


@pytest.mark.parametrize(
    ("given", "texts"),
    [("hello", ["hello"]), (["a", "b"], ["a", "b"]), (["a", ""], ["a", ""]), ("", []), ([], []), (None, [])],
)
def test_embed_inputs(given: Any, texts: list[str]) -> None:
    plan = embed_body({"input": given})
    assert plan.input_count == len(texts)
    assert plan.request.input == texts


@pytest.mark.parametrize("given", [["a", 1], [["a"]], [None], [{"t": "a"}]])
def test_embed_non_string_items(given: Any) -> None:
    assert bad_request(embed_body, {"input": given}) == "invalid input type"


def test_embed_bytes_leave_dimensions_to_the_shim() -> None:
    plan = embed_body({"input": ["a"], "dimensions": 64, "truncate": False, "options": {"num_ctx": 1}})
    assert msgspec.json.encode(plan.request) == b'{"model":"upstream-id","input":["a"]}'
    assert plan.dimensions == 64
    assert plan.ignored_options == ("num_ctx",)


@pytest.mark.parametrize(("dimensions", "kept"), [(None, None), (0, None), (8, 8)])
def test_embed_dimensions(dimensions: int | None, kept: int | None) -> None:
    assert embed_body({"input": "a", "dimensions": dimensions}).dimensions == kept


def test_embed_negative_dimensions() -> None:
    assert bad_request(embed_body, {"input": "a", "dimensions": -1}) == "dimensions must be a positive integer"


def test_embed_ttl_on_lmstudio_only() -> None:
    assert embed_body({"input": "a", "keep_alive": "10m"}, "lmstudio").request.ttl == 600
    assert embed_body({"input": "a", "keep_alive": "10m"}, "llamacpp").request.ttl is None


@pytest.mark.parametrize(("prompt", "count"), [("hello", 1), ("", 0)])
def test_legacy_embeddings_request(prompt: str, count: int) -> None:
    req = ollama.EmbeddingsRequest(model="m", prompt=prompt, options={"temperature": 1})
    plan = embeddings_request_to_openai(req, "upstream-id", OPENAI)
    assert plan.input_count == count
    assert msgspec.json.encode(plan.request) == b'{"model":"upstream-id","input":"%s"}' % prompt.encode()
    assert plan.ignored_options == ("temperature",)
