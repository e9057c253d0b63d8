"""``/v1/messages`` end to end with the official ``anthropic`` SDK: against a real llama-server both
natively (forwarded) and with translation forced, against the LM Studio emulation (tool calls and
reasoning, which the tiny models do not produce), and against the fault upstream (errors after the
start, a client that leaves). Every answer is parsed by the SDK itself; streams are accumulated
with its own streaming helpers."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import anthropic
import httpx
import pytest

from ollama_shim.server import start
from support.faults import MODEL, Fault, FaultUpstream
from support.llama import LlamaServer
from support.lmstudio import LMStudioEmulation, Reply
from support.shim import ShimThread, shim_in_loop, shim_settings, url_of

USER = {"role": "user", "content": "Say hello."}
WEATHER = {
    "name": "get_weather",
    "description": "The weather in a city.",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
SHORT: Any = {"stop_sequences": ["\n"], "extra_body": {"temperature": 0.0}}  # keep the tiny model's answers short


@dataclasses.dataclass
class Target:
    url: str
    model: str
    native: bool
    sdk: anthropic.Anthropic

    def client(self) -> anthropic.Anthropic:
        return self.sdk


@pytest.fixture(scope="module", params=["native", "translated"])
def llama_target(request: pytest.FixtureRequest, llama_single: LlamaServer) -> Iterator[Target]:
    native = request.param == "native"
    shim = ShimThread("--backend", llama_single.url, "--first-byte-timeout", "120",
                      "--translate-native-apis", str(not native).lower())
    with shim as url:
        model = httpx.get(url + "/api/tags").json()["models"][0]["model"]
        with anthropic.Anthropic(base_url=url, api_key="unused", max_retries=0) as sdk:
            yield Target(url, model, native, sdk)


def test_plain_message(llama_target: Target) -> None:
    message = llama_target.client().messages.create(
        model=llama_target.model, max_tokens=8, messages=[USER], **SHORT  # type: ignore[arg-type]
    )
    assert message.type == "message"
    assert message.role == "assistant"
    assert message.model == llama_target.model
    assert message.content[0].type == "text"
    assert message.content[0].text
    assert message.stop_reason in ("end_turn", "max_tokens", "stop_sequence")
    assert message.usage.input_tokens > 0
    assert 0 < message.usage.output_tokens <= 8


def test_streamed_message_with_system_blocks_and_history(llama_target: Target) -> None:
    deltas: list[str] = []
    with llama_target.client().messages.stream(
        model=llama_target.model,
        max_tokens=8,
        system=[{"type": "text", "text": "You are terse."},
                {"type": "text", "text": "Answer in English.", "cache_control": {"type": "ephemeral"}}],
        messages=[USER, {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "Again."}],
        **SHORT,  # type: ignore[arg-type]
    ) as stream:
        for event in stream:
            if event.type == "text":
                deltas.append(event.text)
        final = stream.get_final_message()
    assert final.model == llama_target.model
    assert final.content[0].type == "text"
    assert final.content[0].text == "".join(deltas) != ""
    assert final.usage.output_tokens > 0


def test_count_tokens(llama_target: Target) -> None:
    client = llama_target.client()
    short = client.messages.count_tokens(model=llama_target.model, messages=[USER])
    longer = client.messages.count_tokens(
        model=llama_target.model, messages=[USER, {"role": "assistant", "content": "Hello there, how are you?"}]
    )
    assert 0 < short.input_tokens < longer.input_tokens


def test_translated_count_tokens_matches_native(llama_single: LlamaServer, llama_target: Target) -> None:
    body = {"model": llama_target.model, "messages": [USER], "system": "Be brief."}
    ours = httpx.post(llama_target.url + "/v1/messages/count_tokens", json=body).json()
    native = httpx.post(llama_single.url + "/v1/messages/count_tokens", json={**body, "model": "x"}).json()
    assert ours == native


def test_claude_code_request_sequence(llama_target: Target) -> None:
    """Beta endpoint with its headers, tools, system blocks with cache_control, a billing line,
    max_tokens far above the 2048-token context, stream: true; then a token count."""
    client = llama_target.client()
    headers = {"anthropic-beta": "claude-code-20250219,interleaved-thinking-2025-05-14,"
                                 "fine-grained-tool-streaming-2025-05-14",
               "x-app": "cli", "anthropic-dangerous-direct-browser-access": "true"}
    system = [
        {"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1.0; cc_entrypoint=cli; cch=00000;"},
        {"type": "text", "text": "You are a coding agent.", "cache_control": {"type": "ephemeral", "ttl": "1h"}},
    ]
    messages = [{"role": "user", "content": [
        {"type": "text", "text": "<system-reminder>Be careful.</system-reminder>"},
        {"type": "text", "text": "Say hello.", "cache_control": {"type": "ephemeral"}},
    ]}]
    with client.beta.messages.stream(
        model=llama_target.model, max_tokens=32000, system=system, messages=messages,  # type: ignore[arg-type]
        tools=[WEATHER], metadata={"user_id": "user_abc_account_x_session_y"}, extra_headers=headers, **SHORT,
    ) as stream:
        final = stream.get_final_message()
    assert final.model == llama_target.model
    assert final.stop_reason in ("end_turn", "stop_sequence", "max_tokens", "tool_use")
    assert final.usage.input_tokens > 0
    count = client.beta.messages.count_tokens(
        model=llama_target.model, system=system, messages=messages, tools=[WEATHER],  # type: ignore[arg-type]
        extra_headers=headers,
    )
    assert count.input_tokens > 0


def test_prefill_is_continued_and_not_repeated(llama_target: Target) -> None:
    """llama-server continues a final assistant turn but repeats it first: translated, the repetition is
    removed; its own /v1/messages (native, forwarded as it is) keeps it."""
    prefix = "The capital of France is"
    message = llama_target.client().messages.create(
        model=llama_target.model, max_tokens=6, messages=[{"role": "user", "content": "What is the capital of France?"},
                                                          {"role": "assistant", "content": prefix}], **SHORT,
    )
    text = message.content[0].text  # type: ignore[union-attr]
    assert text.startswith(prefix) is llama_target.native
    assert text.removeprefix(prefix).strip()


def test_unknown_model_is_an_anthropic_404(llama_target: Target) -> None:
    with pytest.raises(anthropic.NotFoundError) as caught:
        llama_target.client().messages.create(model="no-such-model", max_tokens=8, messages=[USER])
    assert caught.value.body == {"type": "error", "error": {"type": "not_found_error",
                                                            "message": "model 'no-such-model' not found"}}


@pytest.mark.parametrize(("body", "kind"), [
    ({"messages": [USER]}, "invalid_request_error"),  # no max_tokens
    ({"max_tokens": 8, "messages": "nope"}, "invalid_request_error"),
])
def test_bad_requests_are_anthropic_400s(llama_target: Target, body: dict[str, Any], kind: str) -> None:
    answer = httpx.post(llama_target.url + "/v1/messages", json={"model": llama_target.model, **body})
    assert answer.status_code == 400
    assert answer.json()["type"] == "error"
    assert answer.json()["error"]["type"] == kind


@pytest.mark.parametrize("native", [True, False], ids=["native", "translated"])
def test_llama_router_model_names_both_ways(llama_router: LlamaServer, native: bool) -> None:
    shim = ShimThread("--backend", llama_router.url, "--first-byte-timeout", "180",
                      "--translate-native-apis", str(not native).lower())
    with shim as url, anthropic.Anthropic(base_url=url, api_key="unused", max_retries=0) as client:
        names = [m["model"] for m in httpx.get(url + "/api/tags").json()["models"]]
        model = next(name for name in names if name.lower().startswith("smollm2"))
        with client.messages.stream(model=model, max_tokens=8, messages=[USER], **SHORT) as stream:
            final = stream.get_final_message()
        count = client.messages.count_tokens(model=model, messages=[USER])
    assert final.model == model
    assert final.content[0].type == "text"
    assert count.input_tokens > 0


# -- LM Studio emulation: tool calls and reasoning ---------------------------------------------------------


@contextlib.asynccontextmanager
async def _lms_shim(lms: LMStudioEmulation) -> AsyncIterator[tuple[anthropic.AsyncAnthropic, str]]:
    async with shim_in_loop("--backend", lms.url) as url:
        async with httpx.AsyncClient() as http:
            tags = (await http.get(url + "/api/tags")).json()["models"]
        model = next(m["model"] for m in tags if m["model"].startswith("qwen2.5"))
        async with anthropic.AsyncAnthropic(base_url=url, api_key="unused", max_retries=0) as client:
            yield client, model


TOOL_CALL = {"id": "call_abc123", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "whole"])
async def test_tool_round_trip(lmstudio: LMStudioEmulation, stream: bool) -> None:
    lmstudio.script(Reply(content="", tool_calls=[TOOL_CALL]), Reply("It is sunny in Paris."))
    async with _lms_shim(lmstudio) as (client, model):
        ask: list[Any] = [{"role": "user", "content": "Weather in Paris?"}]
        if stream:
            async with client.messages.stream(model=model, max_tokens=64, messages=ask, tools=[WEATHER]) as s:
                first = await s.get_final_message()
        else:
            first = await client.messages.create(model=model, max_tokens=64, messages=ask, tools=[WEATHER])
        assert first.stop_reason == "tool_use"
        call = first.content[-1]
        assert call.type == "tool_use"
        assert (call.id, call.name, call.input) == ("call_abc123", "get_weather", {"city": "Paris"})
        follow_up = [*ask, {"role": "assistant", "content": first.content},
                     {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "sunny"}]}]
        second = await client.messages.create(model=model, max_tokens=64, messages=follow_up, tools=[WEATHER])
    assert second.stop_reason == "end_turn"
    assert second.content[0].type == "text"
    assert second.content[0].text == "It is sunny in Paris."
    sent = lmstudio.bodies("/v1/chat/completions")[-1]["messages"]
    assert sent[-2]["tool_calls"][0]["id"] == "call_abc123"
    assert (sent[-1]["role"], sent[-1]["content"], sent[-1]["tool_call_id"]) == ("tool", "sunny", "call_abc123")


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "whole"])
async def test_thinking(lmstudio: LMStudioEmulation, stream: bool) -> None:
    lmstudio.script(Reply("Four.", reasoning="Two plus two is four."))
    async with _lms_shim(lmstudio) as (client, model):
        ask: Any = {"model": model, "max_tokens": 2048, "messages": [{"role": "user", "content": "2+2?"}],
                    "thinking": {"type": "enabled", "budget_tokens": 1024}}
        if stream:
            async with client.messages.stream(**ask) as s:
                thoughts = [event.thinking async for event in s if event.type == "thinking"]
                message = await s.get_final_message()
            assert "".join(thoughts) == "Two plus two is four."
        else:
            message = await client.messages.create(**ask)
    assert [block.type for block in message.content] == ["thinking", "text"]
    assert message.content[0].thinking == "Two plus two is four."  # type: ignore[union-attr]
    assert message.content[0].signature == ""  # type: ignore[union-attr]
    assert message.content[1].text == "Four."  # type: ignore[union-attr]
    assert lmstudio.bodies("/v1/chat/completions")[-1]["reasoning_effort"] == "medium"


# -- fault upstream: errors after the start, a client that leaves -------------------------------------------


@pytest.fixture
async def fault_shim(upstream: FaultUpstream) -> AsyncIterator[str]:
    async with shim_in_loop("--backend", upstream.url, "--backend-kind", "generic",
                            "--first-byte-timeout", "60", "--idle-timeout", "60") as url:
        yield url


async def test_error_after_the_start_is_an_error_event(fault_shim: str, upstream: FaultUpstream) -> None:
    upstream.script(Fault("error_frame", after=2, status=500, message="the model crashed"))
    async with anthropic.AsyncAnthropic(base_url=fault_shim, api_key="unused", max_retries=0) as client:
        with pytest.raises(anthropic.APIStatusError, match="the model crashed"):
            async with client.messages.stream(model=MODEL, max_tokens=64, messages=[USER]) as s:
                async for _ in s:
                    pass


async def test_backend_error_before_the_start_keeps_its_status(fault_shim: str, upstream: FaultUpstream) -> None:
    upstream.script(Fault("status", status=429, message="slow down"))
    async with anthropic.AsyncAnthropic(base_url=fault_shim, api_key="unused", max_retries=0) as client:
        with pytest.raises(anthropic.RateLimitError) as caught:
            await client.messages.create(model=MODEL, max_tokens=64, messages=[USER], stream=True)
    assert caught.value.body == {"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}}


async def test_shim_refusals_have_the_anthropic_shape(upstream: FaultUpstream) -> None:
    async with (
        shim_in_loop("--backend", upstream.url, "--backend-kind", "generic", "--api-key", "sekrit") as url,
        httpx.AsyncClient() as http,
    ):
        refused = await http.post(url + "/v1/messages?beta=true", json={"model": MODEL, "max_tokens": 8,
                                                                         "messages": [USER]})
        other = await http.post(url + "/api/chat", json={"model": MODEL, "messages": [USER]})
    assert refused.status_code == 401
    assert refused.json()["type"] == "error"
    assert refused.json()["error"]["type"] == "authentication_error"
    assert other.status_code == 401
    assert set(other.json()) == {"error"}


async def test_count_tokens_estimate_on_a_generic_backend(fault_shim: str) -> None:
    async with anthropic.AsyncAnthropic(base_url=fault_shim, api_key="unused", max_retries=0) as client:
        count = await client.messages.count_tokens(model=MODEL, messages=[{"role": "user", "content": "abcd" * 10}])
    assert count.input_tokens == 11 + 4  # ceil((40 + len("user")) / 4) + 4 per message


async def test_client_leaving_mid_stream_closes_the_backend_request(fault_shim: str, upstream: FaultUpstream) -> None:
    upstream.script(Fault(delay=0.05, words=10_000))
    async with aiohttp.ClientSession() as session:
        resp = await session.post(fault_shim + "/v1/messages",
                                  json={"model": MODEL, "max_tokens": 100_000, "messages": [USER], "stream": True})
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        seen = b""
        while b"text_delta" not in seen:
            seen += await resp.content.readline()
        resp.close()
        hung_up = time.monotonic()
    call = upstream.calls[-1]
    await asyncio.wait_for(call.closed.wait(), 2.0)
    assert call.closed_at is not None
    assert call.closed_at >= hung_up
    assert not call.completed


async def test_native_client_leaving_stops_llama_server(llama_single: LlamaServer) -> None:
    settings = shim_settings("--backend", llama_single.url, "--first-byte-timeout", "120")
    runner = await start(settings)
    url = url_of(settings)
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(url + "/api/tags") as tags:
                model = (await tags.json())["models"][0]["model"]
            body = {"model": model, "max_tokens": 100_000, "stream": True, "temperature": 1.0,
                    "messages": [{"role": "user", "content": "Write a very long story about a dragon."}]}
            resp = await session.post(url + "/v1/messages", json=body)
            seen = b""
            while b"text_delta" not in seen:
                seen += await resp.content.readline()
            assert json.loads(next(line for line in seen.splitlines() if line.startswith(b"data:") and
                                   b"message_start" in line)[5:])["message"]["model"] == model
            resp.close()
            async with asyncio.timeout(10):
                while True:
                    async with session.get(llama_single.url + "/slots") as slots:
                        if not any(slot.get("is_processing") for slot in await slots.json()):
                            break
                    await asyncio.sleep(0.05)
    finally:
        await runner.cleanup()


# A 1x1 PNG.
PNG = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==")


async def test_an_image_reaches_a_vision_model_and_is_refused_by_one_without(lmstudio: LMStudioEmulation) -> None:
    lmstudio.script("A single pixel.")
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}
    ask = [{"role": "user", "content": [image, {"type": "text", "text": "What is this?"}]}]
    async with shim_in_loop("--backend", lmstudio.url) as url, \
            anthropic.AsyncAnthropic(base_url=url, api_key="unused", max_retries=0) as client:
        answer = await client.messages.create(model="gemma-3-4b-it", max_tokens=16, messages=ask)  # type: ignore[arg-type]
        with pytest.raises(anthropic.BadRequestError) as refused:
            await client.messages.create(model="qwen2.5-7b-instruct", max_tokens=16, messages=ask)  # type: ignore[arg-type]
    assert answer.content[0].type == "text"
    assert answer.content[0].text == "A single pixel."
    parts = lmstudio.bodies("/v1/chat/completions")[-1]["messages"][-1]["content"]
    assert {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}} in parts
    assert "does not support images" in str(refused.value)
