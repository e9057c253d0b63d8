"""OpenAI Responses requests -> Ollama ChatRequests (``translate.responses_request``), table-driven.

Bodies are decoded from JSON bytes with the real wire type, as the route does; the result is
compared as the JSON the chat translation would take next.
"""

from __future__ import annotations

import base64
from typing import Any

import msgspec
import pytest

from ollama_shim.dialect import LLAMACPP
from ollama_shim.errors import BadRequest
from ollama_shim.translate.request import Delivery, chat_request_to_openai
from ollama_shim.translate.responses_request import response_template, responses_to_chat
from ollama_shim.wire.responses import ResponsesRequest

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 8).decode()
WEATHER = {"type": "function", "name": "get_weather", "description": "Weather now",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}, "strict": True}


def decode(body: dict[str, Any]) -> ResponsesRequest:
    return msgspec.json.decode(msgspec.json.encode({"model": "m", **body}), type=ResponsesRequest)


def chat(body: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = msgspec.to_builtins(responses_to_chat(decode(body)))
    return result


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


MAPPING = [
    ("string input", {"input": "hi"}, {"messages": [user("hi")]}),
    ("instructions lead", {"instructions": "be brief", "input": "hi"},
     {"messages": [{"role": "system", "content": "be brief"}, user("hi")]}),
    ("bare message items", {"input": [user("a"), {"role": "assistant", "content": "b"}, user("c")]},
     {"messages": [user("a"), {"role": "assistant", "content": "b"}, user("c")]}),
    ("typed message, parts joined",
     {"input": [{"type": "message", "role": "user",
                 "content": [{"type": "input_text", "text": "one "}, {"type": "input_text", "text": "two"}]}]},
     {"messages": [user("one two")]}),
    ("assistant output_text history",
     {"input": [{"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "ok"}]}]},
     {"messages": [{"role": "assistant", "content": "ok"}]}),
    ("developer becomes system", {"input": [{"role": "developer", "content": "rules"}, user("x")]},
     {"messages": [{"role": "system", "content": "rules"}, user("x")]}),
    ("image data url",
     {"input": [{"role": "user", "content": [{"type": "input_text", "text": "what?"},
                                             {"type": "input_image", "image_url": f"data:image/png;base64,{PNG}"}]}]},
     {"messages": [{"role": "user", "content": "what?", "images": [PNG]}]}),
    ("function call round trip",
     {"input": [user("weather?"),
                {"type": "function_call", "call_id": "call_9", "name": "get_weather", "arguments": '{"city":"Paris"}'},
                {"type": "function_call_output", "call_id": "call_9", "output": "sunny"}]},
     {"messages": [user("weather?"),
                   {"role": "assistant",
                    "tool_calls": [{"function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                                    "id": "call_9"}]},
                   {"role": "tool", "content": "sunny", "tool_name": "get_weather", "tool_call_id": "call_9"}]}),
    ("function call merged into the assistant message before it",
     {"input": [{"role": "assistant", "content": "let me look"},
                {"type": "function_call", "call_id": "a", "name": "f", "arguments": "{}"},
                {"type": "function_call", "call_id": "b", "name": "g"}]},
     {"messages": [{"role": "assistant", "content": "let me look",
                    "tool_calls": [{"function": {"name": "f", "arguments": "{}"}, "id": "a"},
                                   {"function": {"name": "g", "arguments": "{}"}, "id": "b"}]}]}),
    ("function output as parts",
     {"input": [{"type": "function_call_output", "call_id": "x", "output": [{"type": "input_text", "text": "42"}]}]},
     {"messages": [{"role": "tool", "content": "42", "tool_call_id": "x"}]}),
    ("reasoning item becomes the next assistant's thinking",
     {"input": [user("q"), {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "hmm"},
                {"role": "assistant", "content": "a"}]},
     {"messages": [user("q"), {"role": "assistant", "content": "a", "thinking": "hmm"}]}),
    ("reasoning summary when nothing encrypted",
     {"input": [{"type": "reasoning", "summary": [{"type": "summary_text", "text": "s"}]},
                {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"}]},
     {"messages": [{"role": "assistant", "thinking": "s",
                    "tool_calls": [{"function": {"name": "f", "arguments": "{}"}, "id": "c"}]}]}),
]


@pytest.mark.parametrize(("body", "expected"), [case[1:] for case in MAPPING], ids=[case[0] for case in MAPPING])
def test_input_maps_to_chat_messages(body: dict[str, Any], expected: dict[str, Any]) -> None:
    assert chat(body)["messages"] == expected["messages"]


FIELDS = [
    ("defaults", {}, {"options": {"temperature": 1.0}, "stream": False}),
    ("sampling", {"temperature": 0.2, "top_p": 0.9, "max_output_tokens": 64},
     {"options": {"temperature": 0.2, "top_p": 0.9, "num_predict": 64}}),
    ("stream", {"stream": True}, {"stream": True}),
    ("json_schema", {"text": {"format": {"type": "json_schema", "name": "p", "schema": {"type": "object"}}}},
     {"format": {"type": "object"}}),
    ("json_object", {"text": {"format": {"type": "json_object"}}}, {"format": "json"}),
    ("text format", {"text": {"format": {"type": "text"}, "verbosity": "low"}}, {}),
    ("effort none", {"reasoning": {"effort": "none"}}, {"think": False}),
    ("effort minimal", {"reasoning": {"effort": "minimal"}}, {"think": "low"}),
    ("effort high", {"reasoning": {"effort": "high", "summary": "auto"}}, {"think": "high"}),
    ("effort xhigh", {"reasoning": {"effort": "xhigh"}}, {"think": "max"}),
    ("tools", {"tools": [WEATHER]},
     {"tools": [{"function": {"name": "get_weather", "description": "Weather now",
                              "parameters": WEATHER["parameters"]}}]}),
    ("tool_choice none hides tools", {"tools": [WEATHER], "tool_choice": "none"}, {}),
    ("accepted and echoed only",
     {"truncation": "auto", "metadata": {"k": "v"}, "user": "u", "parallel_tool_calls": False, "store": False,
      "include": ["reasoning.encrypted_content"], "prompt_cache_key": "t1", "tool_choice": "auto"}, {}),
]


@pytest.mark.parametrize(("body", "expected"), [case[1:] for case in FIELDS], ids=[case[0] for case in FIELDS])
def test_fields_map_to_chat_request(body: dict[str, Any], expected: dict[str, Any]) -> None:
    mapped = chat({"input": "hi", **body})
    rest = {key: value for key, value in mapped.items() if key not in ("model", "messages")}
    assert rest == {"options": {"temperature": 1.0}, "stream": False, **expected}


REFUSED = [
    ("no model", {"model": "", "input": "hi"}, "model is required"),
    ("no input", {}, "input is required"),
    ("previous id", {"input": "hi", "previous_response_id": "resp_1"}, "previous_response_id is not supported"),
    ("store true", {"input": "hi", "store": True}, "store: true is not supported"),
    ("web_search tool", {"input": "hi", "tools": [{"type": "web_search"}]}, 'tools[0]: tool type "web_search"'),
    ("custom tool", {"input": "hi", "tools": [WEATHER, {"type": "custom"}]}, 'tools[1]: tool type "custom"'),
    ("nameless function", {"input": "hi", "tools": [{"type": "function"}]}, "tools[0]: a function tool needs a name"),
    ("bad effort", {"input": "hi", "reasoning": {"effort": "huge"}}, 'invalid reasoning value: "huge"'),
    ("bad format", {"input": "hi", "text": {"format": {"type": "xml"}}}, 'unknown type "xml"'),
    ("schema missing", {"input": "hi", "text": {"format": {"type": "json_schema", "name": "n"}}}, "needs a schema"),
    ("zero max tokens", {"input": "hi", "max_output_tokens": 0}, "max_output_tokens must be at least 1"),
    ("item without type or role", {"input": [{"content": "x"}]}, "input[0]: input item missing required 'type'"),
    ("unknown item", {"input": [user("a"), {"type": "item_reference", "id": "x"}]},
     'input[1]: unknown input item type: "item_reference"'),
    ("bad role", {"input": [{"role": "robot", "content": "x"}]}, 'input[0]: invalid role "robot"'),
    ("http image", {"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "https://x/y.png"}]}]},
     "image URLs are not currently supported"),
    ("file input", {"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]},
     "file inputs are not currently supported"),
    ("unknown part", {"input": [{"role": "user", "content": [{"type": "input_audio"}]}]},
     'input[0].content[0]: unknown content type "input_audio"'),
    ("bad arguments", {"input": [{"type": "function_call", "call_id": "c", "name": "f", "arguments": "{oops"}]},
     "input[0]: failed to parse function call arguments"),
    ("array arguments", {"input": [{"type": "function_call", "call_id": "c", "name": "f", "arguments": "[1]"}]},
     "not a JSON object"),
    ("deeply nested arguments",
     {"input": [{"type": "function_call", "call_id": "c", "name": "f", "arguments": "[" * 5000 + "]" * 5000}]},
     "input[0]: failed to parse function call arguments: exceeded max depth of 256"),
    ("arguments nested past the limit in an object",
     {"input": [{"type": "function_call", "call_id": "c", "name": "f",
                 "arguments": '{"a":' + "[" * 300 + "]" * 300 + "}"}]},
     "exceeded max depth"),
    ("call without id", {"input": [{"type": "function_call", "name": "f"}]}, "input[0]: call_id is required"),
    ("output without id", {"input": [{"type": "function_call_output"}]}, "input[0]: call_id is required"),
]


@pytest.mark.parametrize(("body", "message"), [case[1:] for case in REFUSED], ids=[case[0] for case in REFUSED])
def test_refused_with_400(body: dict[str, Any], message: str) -> None:
    with pytest.raises(BadRequest) as raised:
        responses_to_chat(decode(body))
    assert message in raised.value.message


def test_tool_result_reaches_the_backend_linked_to_its_call() -> None:
    body = {"input": [user("weather?"),
                      {"type": "function_call", "call_id": "call_9", "name": "get_weather", "arguments": "{}"},
                      {"type": "function_call_output", "call_id": "call_9", "output": "sunny"}],
            "tools": [WEATHER]}
    plan = chat_request_to_openai(responses_to_chat(decode(body)), "up", LLAMACPP, Delivery.STREAM)
    sent = msgspec.to_builtins(plan.request)
    assert sent["messages"][1]["tool_calls"][0]["id"] == "call_9"
    assert sent["messages"][2] == {"role": "tool", "content": "sunny", "name": "get_weather", "tool_call_id": "call_9"}


def test_template_echoes_the_request() -> None:
    body = {"input": "hi", "instructions": "i", "tools": [WEATHER], "tool_choice": "required", "temperature": 0.5,
            "max_output_tokens": 9, "truncation": "auto", "metadata": {"k": "v"}, "user": "u",
            "parallel_tool_calls": False, "reasoning": {"effort": "low", "summary": "auto"},
            "text": {"format": {"type": "json_object"}}}
    echoed = msgspec.to_builtins(response_template(decode(body), "resp_1", 7))
    expected = {"id": "resp_1", "object": "response", "created_at": 7, "status": "in_progress", "model": "m",
                "instructions": "i", "tools": [WEATHER], "tool_choice": "required", "temperature": 0.5, "top_p": 1.0,
                "max_output_tokens": 9, "truncation": "auto", "metadata": {"k": "v"}, "user": "u",
                "parallel_tool_calls": False, "reasoning": {"effort": "low", "summary": "auto"},
                "text": {"format": {"type": "json_object"}}, "output": [], "usage": None, "store": False}
    assert {key: echoed[key] for key in expected} == expected


def test_template_defaults() -> None:
    echoed = msgspec.to_builtins(response_template(decode({"input": "hi"}), "resp_1", 7))
    defaults = {"tools": [], "tool_choice": "auto", "temperature": 1.0, "truncation": "disabled", "metadata": {},
                "parallel_tool_calls": True, "text": {"format": {"type": "text"}}, "previous_response_id": None}
    assert {key: echoed[key] for key in defaults} == defaults
