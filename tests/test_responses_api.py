"""``POST /v1/responses`` end to end with the official ``openai`` SDK's ``responses`` client.

Against the LM Studio emulation (scripted text, reasoning and tool calls, which the tiny real
models do not produce), the fault upstream (errors, disconnects, a backend that is not asked to
stream) and the real llama-server (translated). Every streamed answer goes through the SDK's own
event parser and accumulator (``responses.stream`` and ``get_final_response``).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import httpx
import openai
import pydantic
import pytest

from support.faults import MODEL, Fault, FaultUpstream
from support.lmstudio import LMStudioEmulation, Reply
from support.shim import ShimThread, shim_in_loop
from test_cancellation import closed_within_bound, wait_for_call

LMS_MODEL = "qwen2.5-7b-instruct"
WEATHER = {"type": "function", "name": "get_weather", "description": "The weather in a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
CALL = {"id": "call_abc", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}


def sdk(url: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)


@pytest.fixture
async def lms(lmstudio: LMStudioEmulation) -> AsyncIterator[openai.AsyncOpenAI]:
    async with shim_in_loop("--backend", lmstudio.url + "/v1") as url, sdk(url) as client:
        yield client


@pytest.fixture
async def shim(upstream: FaultUpstream) -> AsyncIterator[str]:
    async with shim_in_loop("--backend", upstream.url, "--backend-kind", "generic",
                            "--first-byte-timeout", "60", "--idle-timeout", "60") as url:
        yield url


def sent(lmstudio: LMStudioEmulation) -> dict[str, Any]:
    body: dict[str, Any] = lmstudio.bodies("/v1/chat/completions")[-1]
    return body


async def sse_events(resp: aiohttp.ClientResponse) -> list[tuple[str, dict[str, Any]]]:
    """``(event name, data)`` pairs of a whole event-stream answer."""
    events: list[tuple[str, dict[str, Any]]] = []
    for block in (await resp.text()).split("\n\n"):
        if block.strip():
            name, data = block.split("\n")
            events.append((name.removeprefix("event: "), json.loads(data.removeprefix("data: "))))
    return events


# -- LM Studio emulation ----------------------------------------------------------------------------


async def test_plain_text_with_instructions(lms: openai.AsyncOpenAI, lmstudio: LMStudioEmulation) -> None:
    lmstudio.script("one two three")
    response = await lms.responses.create(model=LMS_MODEL, input="hi", instructions="be brief",
                                          max_output_tokens=50, temperature=0.3)
    assert response.output_text == "one two three"
    assert (response.status, response.model, response.object) == ("completed", LMS_MODEL, "response")
    assert response.usage is not None
    assert response.usage.input_tokens == 12
    assert response.usage.output_tokens == 3
    assert response.usage.total_tokens == 15
    body = sent(lmstudio)
    assert body["messages"] == [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]
    assert (body["max_tokens"], body["temperature"]) == (50, 0.3)


async def test_streamed_text_through_the_sdk_helper(lms: openai.AsyncOpenAI, lmstudio: LMStudioEmulation) -> None:
    lmstudio.script("one two three")
    async with lms.responses.stream(model=LMS_MODEL, input="hi") as stream:
        types = [event.type async for event in stream]
        final = await stream.get_final_response()
    assert final.output_text == "one two three"
    assert final.model == LMS_MODEL
    assert types[:2] == ["response.created", "response.in_progress"]
    assert types[-1] == "response.completed"
    assert types.count("response.output_text.delta") == 3
    assert types.index("response.output_item.added") < types.index("response.output_text.delta")


async def test_multi_turn_items(lms: openai.AsyncOpenAI, lmstudio: LMStudioEmulation) -> None:
    lmstudio.script("Blue.")
    history: Any = [
        {"role": "user", "content": "Pick a colour."},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Red."}]},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Another?"}]},
    ]
    response = await lms.responses.create(model=LMS_MODEL, input=history)
    assert response.output_text == "Blue."
    assert sent(lmstudio)["messages"] == [
        {"role": "user", "content": "Pick a colour."}, {"role": "assistant", "content": "Red."},
        {"role": "user", "content": "Another?"},
    ]


class Answer(pydantic.BaseModel):
    city: str
    sunny: bool


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
async def test_structured_output(lms: openai.AsyncOpenAI, lmstudio: LMStudioEmulation, stream: bool) -> None:
    lmstudio.script('{"city": "Paris", "sunny": true}')
    if stream:
        async with lms.responses.stream(model=LMS_MODEL, input="weather?", text_format=Answer) as events:
            parsed = (await events.get_final_response()).output_parsed
    else:
        parsed = (await lms.responses.parse(model=LMS_MODEL, input="weather?", text_format=Answer)).output_parsed
    assert parsed == Answer(city="Paris", sunny=True)
    response_format = sent(lmstudio)["response_format"]
    assert response_format["type"] == "json_schema"
    assert response_format["json_schema"]["schema"]["properties"].keys() == {"city", "sunny"}


async def test_function_call_round_trip(lms: openai.AsyncOpenAI, lmstudio: LMStudioEmulation) -> None:
    lmstudio.script(Reply("", tool_calls=[CALL]), "It is sunny in Paris.")
    tools: Any = [WEATHER]
    async with lms.responses.stream(model=LMS_MODEL, input="Weather in Paris?", tools=tools) as stream:
        first = await stream.get_final_response()
    (call,) = first.output
    assert call.type == "function_call"
    assert (call.call_id, call.name, json.loads(call.arguments)) == ("call_abc", "get_weather", {"city": "Paris"})
    assert sent(lmstudio)["tools"][0]["function"]["name"] == "get_weather"

    history: Any = [{"role": "user", "content": "Weather in Paris?"}, *[item.model_dump() for item in first.output],
                    {"type": "function_call_output", "call_id": call.call_id, "output": "sunny, 21 C"}]
    second = await lms.responses.create(model=LMS_MODEL, input=history, tools=tools)
    assert second.output_text == "It is sunny in Paris."
    assistant, tool = sent(lmstudio)["messages"][1:]
    assert assistant["tool_calls"][0]["id"] == "call_abc"
    assert assistant["tool_calls"][0]["function"] == {"name": "get_weather", "arguments": '{"city":"Paris"}'}
    assert (tool["role"], tool["tool_call_id"], tool["content"]) == ("tool", "call_abc", "sunny, 21 C")


async def test_reasoning_streams_as_summary_and_goes_back(lms: openai.AsyncOpenAI, lmstudio: LMStudioEmulation) -> None:
    lmstudio.script(Reply("Four.", reasoning="two plus two"), "Eight.")
    async with lms.responses.stream(model=LMS_MODEL, input="2+2?", reasoning={"effort": "high"}) as stream:
        thinking = [event.delta async for event in stream if event.type == "response.reasoning_summary_text.delta"]
        final = await stream.get_final_response()
    assert "".join(thinking) == "two plus two"
    reasoning, message = final.output
    assert reasoning.type == "reasoning"
    assert reasoning.summary[0].text == "two plus two"
    assert message.type == "message"
    assert final.output_text == "Four."
    assert sent(lmstudio)["reasoning_effort"] == "high"
    history: Any = [{"role": "user", "content": "2+2?"}, *[item.model_dump(exclude_none=True) for item in final.output],
                    {"role": "user", "content": "times two?"}]
    again = await lms.responses.create(model=LMS_MODEL, input=history, reasoning={"effort": "none"})
    assert again.output_text == "Eight."
    assert [m["role"] for m in sent(lmstudio)["messages"]] == ["user", "assistant", "user"]


async def test_codex_request_shape(lmstudio: LMStudioEmulation) -> None:
    """The body Codex sends each turn (whole history, developer messages, tools, store false,
    include encrypted reasoning, prompt_cache_key), streamed; what its strict parser insists on."""
    lmstudio.script(Reply("", reasoning="need the weather", tool_calls=[CALL]))
    body = {
        "model": LMS_MODEL, "instructions": "You are a coding agent.",
        "input": [{"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "sandbox"}]},
                  {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "weather?"}]}],
        "tools": [{**WEATHER, "strict": False}], "tool_choice": "auto", "parallel_tool_calls": False,
        "reasoning": {"effort": "medium", "summary": "auto"}, "store": False, "stream": True,
        "include": ["reasoning.encrypted_content"], "prompt_cache_key": "thread-1",
        "text": {"verbosity": "medium"}, "client_metadata": {"x": "y"},
    }
    async with (
        shim_in_loop("--backend", lmstudio.url + "/v1") as url,
        aiohttp.ClientSession() as session,
        session.post(url + "/v1/responses", json=body) as resp,
    ):
        assert resp.status == 200
        assert resp.content_type == "text/event-stream"
        events = await sse_events(resp)
    assert all(name == data["type"] for name, data in events)
    assert [data["sequence_number"] for _, data in events] == list(range(len(events)))
    completed = events[-1][1]
    assert completed["type"] == "response.completed"
    assert completed["response"]["usage"]["input_tokens"] == 12
    assert completed["response"]["parallel_tool_calls"] is False
    assert [item["type"] for item in completed["response"]["output"]] == ["reasoning", "function_call"]
    assert completed["response"]["output"][0]["encrypted_content"] == "need the weather"
    assert [m["role"] for m in sent(lmstudio)["messages"]] == ["system", "system", "user"]


async def test_max_output_tokens_goes_upstream(upstream: FaultUpstream, shim: str) -> None:
    async with sdk(shim) as client:
        response = await client.responses.create(model=MODEL, input="hi", max_output_tokens=1)
    assert response.max_output_tokens == 1  # echoed
    assert upstream.calls[-1].body["max_tokens"] == 1


# -- errors, the route itself, disconnects (fault upstream) ------------------------------------------------


ERROR_CASES = [
    ("unknown model", {"model": "nope", "input": "hi"}, 404, "not_found_error"),
    ("stateful", {"model": MODEL, "input": "hi", "previous_response_id": "resp_1"}, 400, "invalid_request_error"),
    ("store", {"model": MODEL, "input": "hi", "store": True}, 400, "invalid_request_error"),
    ("bad json type", {"model": MODEL, "input": 5}, 400, "invalid_request_error"),
]


@pytest.mark.parametrize(("body", "status", "kind"), [c[1:] for c in ERROR_CASES], ids=[c[0] for c in ERROR_CASES])
async def test_errors_before_the_first_byte_in_openai_shape(
    shim: str, upstream: FaultUpstream, body: dict[str, Any], status: int, kind: str
) -> None:
    async with aiohttp.ClientSession() as session, session.post(shim + "/v1/responses", json=body) as resp:
        assert resp.status == status
        error = (await resp.json())["error"]
    assert (error["type"], error["param"], error["code"]) == (kind, None, None)
    assert error["message"]
    assert not upstream.calls


async def test_sdk_raises_its_own_error_types(shim: str) -> None:
    async with sdk(shim) as client:
        with pytest.raises(openai.BadRequestError) as bad:
            await client.responses.create(model=MODEL, input="hi", previous_response_id="resp_1")
        with pytest.raises(openai.NotFoundError):
            await client.responses.create(model="nope", input="hi")
    assert "previous_response_id is not supported" in bad.value.message


async def test_backend_error_before_the_stream_is_an_http_error(shim: str, upstream: FaultUpstream) -> None:
    upstream.script(Fault("status", status=503, message="overloaded"))
    async with sdk(shim) as client:
        with pytest.raises(openai.APIStatusError) as raised:
            await client.responses.create(model=MODEL, input="hi", stream=True)
    assert raised.value.status_code == 503
    assert raised.value.body == {"message": "overloaded", "type": "api_error", "param": None, "code": None}


async def test_error_midstream_is_an_error_event_then_the_end(shim: str, upstream: FaultUpstream) -> None:
    upstream.script(Fault("error_frame", after=2, message="out of memory"))
    body = {"model": MODEL, "input": "hi", "stream": True}
    async with aiohttp.ClientSession() as session, session.post(shim + "/v1/responses", json=body) as resp:
        events = await sse_events(resp)
    assert resp.status == 200
    assert [d["delta"] for name, d in events if name == "response.output_text.delta"] == ["one ", "two "]
    name, error = events[-1]
    assert (name, error["type"], error["message"]) == ("error", "error", "out of memory")
    assert [d["sequence_number"] for _, d in events] == list(range(len(events)))
    assert not [d for name, d in events if name == "response.completed"]


async def test_sdk_stream_ends_without_a_final_response_after_an_error(shim: str, upstream: FaultUpstream) -> None:
    upstream.script(Fault("error_frame", after=1, message="boom"))
    async with sdk(shim) as client, client.responses.stream(model=MODEL, input="hi") as stream:
        types = [event.type async for event in stream]
        with pytest.raises(RuntimeError, match=r"response\.completed"):
            await stream.get_final_response()
    assert types[-1] == "error"


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
async def test_generic_backend(shim: str, upstream: FaultUpstream, stream: bool) -> None:
    async with sdk(shim) as client:
        if stream:
            async with client.responses.stream(model=MODEL, input="hi") as events:
                response = await events.get_final_response()
        else:
            response = await client.responses.create(model=MODEL, input="hi")
    assert response.output_text.strip() == "one two three four five six seven eight"
    assert response.model == MODEL
    assert response.usage is not None
    assert response.usage.input_tokens == 5
    assert upstream.calls[-1].stream is stream  # generic backends: a whole answer is asked for whole
    assert upstream.calls[-1].path == "/v1/chat/completions"


async def test_explicit_route_wins_over_passthrough(upstream: FaultUpstream) -> None:
    async with (
        shim_in_loop("--backend", upstream.url, "--backend-kind", "generic") as url,  # /v1/responses is allowed
        sdk(url) as client,
    ):
        response = await client.responses.create(model=MODEL, input="hi")
    assert response.output_text.startswith("one")
    assert not upstream.raw_calls  # nothing was forwarded as is, although the passthrough allows the path
    assert [call.path for call in upstream.calls] == ["/v1/chat/completions"]


async def test_disconnect_mid_stream_closes_upstream(shim: str, upstream: FaultUpstream) -> None:
    upstream.script(Fault(delay=0.05, words=10_000))
    body = {"model": MODEL, "input": "hi", "stream": True}
    async with aiohttp.ClientSession() as session:
        resp = await session.post(shim + "/v1/responses", json=body)
        while b"response.output_text.delta" not in await resp.content.readline():
            pass
        resp.close()
        hung_up = time.monotonic()
    await closed_within_bound(upstream, hung_up)


async def test_disconnect_while_gathering_closes_upstream(upstream: FaultUpstream) -> None:
    upstream.script(Fault("hang_body", after=1))
    async with (
        shim_in_loop("--backend", upstream.url, "--backend-kind", "llamacpp", "--first-byte-timeout", "60",
                     "--idle-timeout", "60") as url,
        aiohttp.ClientSession() as session,
    ):
        pending = asyncio.ensure_future(session.post(url + "/v1/responses", json={"model": MODEL, "input": "hi"}))
        await wait_for_call(upstream)
        pending.cancel()
        hung_up = time.monotonic()
        with pytest.raises(asyncio.CancelledError):
            await pending
    assert upstream.calls[-1].stream is True  # gathered from a stream
    await closed_within_bound(upstream, hung_up)


# -- the real llama-server (translated) ---------------------------------------------------------------------


@pytest.fixture(scope="module", params=["llama_single", "llama_router"])
def llama(request: pytest.FixtureRequest) -> Iterator[tuple[openai.OpenAI, str]]:
    """The SDK against the shim in front of llama-server, plain (``-m``) or in router mode."""
    server = request.getfixturevalue(request.param)
    with ShimThread("--backend", server.url, "--catalog-ttl", "0") as url, \
            openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=300) as client:
        names = [model["model"] for model in httpx.get(url + "/api/tags", timeout=60).json()["models"]]
        yield client, next(name for name in names if "smol" in name.lower())  # the client's name for it


def test_llama_plain_and_streamed(llama: tuple[openai.OpenAI, str]) -> None:
    client, model = llama
    whole = client.responses.create(model=model, input="Say hello.", max_output_tokens=8, temperature=0)
    with client.responses.stream(model=model, input="Say hello.", max_output_tokens=8, temperature=0) as stream:
        events = list(stream)
    deltas = [event.delta for event in events if event.type == "response.output_text.delta"]
    last = events[-1]  # 8 tokens may stop the answer: then it is incomplete, which get_final_response refuses
    assert last.type in ("response.completed", "response.incomplete")
    streamed = last.response
    assert whole.model == streamed.model == model  # the client's name, not the backend's file path
    assert whole.output_text
    assert whole.output_text == streamed.output_text == "".join(deltas)
    assert whole.usage is not None
    assert whole.usage.input_tokens > 0
    assert whole.usage.output_tokens > 0


def test_llama_length_stop_is_incomplete(llama: tuple[openai.OpenAI, str]) -> None:
    client, model = llama
    response = client.responses.create(model=model, input="Write a long story.", max_output_tokens=3)
    assert response.status == "incomplete"
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == "max_output_tokens"
    assert response.usage is not None
    assert response.usage.output_tokens == 3


def test_llama_structured_output(llama: tuple[openai.OpenAI, str]) -> None:
    client, model = llama
    schema = {"type": "object", "properties": {"answer": {"type": "string", "enum": ["yes", "no"]}},
              "required": ["answer"], "additionalProperties": False}
    response = client.responses.create(
        model=model, input="Is the sky blue? Answer in JSON.", max_output_tokens=40, temperature=0,
        text={"format": {"type": "json_schema", "name": "yes_no", "schema": schema, "strict": True}},
    )
    assert json.loads(response.output_text)["answer"] in ("yes", "no")


PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="


async def test_an_image_reaches_a_vision_model_and_is_refused_by_one_without(lmstudio: LMStudioEmulation) -> None:
    lmstudio.script("A single pixel.")
    url_of_image = f"data:image/png;base64,{PNG}"
    content = [{"type": "input_text", "text": "What is this?"}, {"type": "input_image", "image_url": url_of_image}]
    ask: Any = [{"role": "user", "content": content}]
    async with shim_in_loop("--backend", lmstudio.url) as url, \
            openai.AsyncOpenAI(base_url=url + "/v1", api_key="unused", max_retries=0) as client:
        answer = await client.responses.create(model="gemma-3-4b-it", input=ask)
        with pytest.raises(openai.BadRequestError) as refused:
            await client.responses.create(model="qwen2.5-7b-instruct", input=ask)
    assert answer.output_text == "A single pixel."
    parts = lmstudio.bodies("/v1/chat/completions")[-1]["messages"][-1]["content"]
    assert {"type": "image_url", "image_url": {"url": url_of_image}} in parts
    assert "does not support images" in str(refused.value)
