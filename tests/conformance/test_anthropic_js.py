"""Conformance: the official Anthropic TypeScript SDK (``@anthropic-ai/sdk``, pinned in
``tests/js/package.json`` and its lock file) against the shim's ``/v1/messages`` and
``/v1/messages/count_tokens``, as Claude Code reaches a local model through Ollama.

``tests/js/anthropic_check.mjs`` runs one flow per process and prints one JSON line (a flow that
throws prints ``{"error": ...}``); every answer is parsed by the SDK itself and streams go through
its ``MessageStream`` helpers (``on("text")``, ``on("thinking")``, ``on("inputJson")``,
``finalMessage()``, ``finalText()``).

- the real llama-server serving SmolLM2 (``llama_single``), both forwarded to its own
  ``/v1/messages`` (native) and translated (``--translate-native-apis true``): ``messages.create``,
  ``messages.stream``, the Claude Code request (bearer token, ``beta.messages.stream`` with its
  betas and headers, then ``beta.messages.countTokens``), ``countTokens``, and an unknown model
  (``NotFoundError`` carrying the Anthropic error body); the Claude Code request also against
  the router (``llama_router``);
- a shim run with ``--api-key``: a wrong ``x-api-key`` or bearer token is the SDK's
  ``AuthenticationError``, the right one of either passes. SDK 1.x sends its ``apiKey`` as
  ``Authorization: Bearer`` (and ``anthropic-version: 2026-10-21``); ``x-api-key``, what Claude
  Code and the 0.x SDKs send, is set as a header of the client;
- the scripted upstream that always thinks and calls a tool (``support.always_tools``): thinking
  blocks whole and streamed, and the ``tool_use`` round trip with a ``tool_result`` sent back
  (with the assistant's thinking block, as Claude Code sends it).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from support import always_tools as sc
from support.always_tools import ScriptedShim
from support.llama import LlamaServer
from support.shim import ShimThread

JS_DIR = Path(__file__).resolve().parents[1] / "js"
SCRIPT = "anthropic_check.mjs"
SDK_DIR = JS_DIR / "node_modules" / "@anthropic-ai" / "sdk"
KEY = "sekrit-for-the-sdk"
MAX_TOKENS = 8
STOPS = ("end_turn", "max_tokens", "stop_sequence")
MISSING_BODY = {"type": "error", "error": {"type": "not_found_error", "message": "model 'no-such-model' not found"}}
STREAM_EVENTS = {"message_start", "content_block_start", "content_block_delta", "content_block_stop",
                 "message_delta", "message_stop"}


def run(url: str, scenario: str, model: str, *extra: str) -> dict[str, Any]:
    node = shutil.which("node")
    if node is None or not SDK_DIR.is_dir():
        pytest.fail("node or @anthropic-ai/sdk is missing: run `make setup`", pytrace=False)
    # The SDK reads ANTHROPIC_* (base URL, extra headers, log level): none of the caller's reach it.
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANTHROPIC_")}
    done = subprocess.run([node, SCRIPT, url, scenario, model, *extra], cwd=JS_DIR, capture_output=True,
                          text=True, timeout=180, check=False, env=env)
    assert done.returncode == 0, done.stderr
    out: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    assert "error" not in out, out["error"]
    return out


def model_of(url: str, prefix: str = "", headers: dict[str, str] | None = None) -> str:
    names = [m["model"] for m in httpx.get(url + "/api/tags", headers=headers).json()["models"]]
    return next(name for name in names if name.lower().startswith(prefix))


class Target:
    def __init__(self, url: str, native: bool) -> None:
        self.url = url
        self.native = native
        self.model = model_of(url)


@pytest.fixture(scope="module", params=["native", "translated"])
def smol(request: pytest.FixtureRequest, llama_single: LlamaServer) -> Iterator[Target]:
    translate = "false" if request.param == "native" else "true"
    with ShimThread("--backend", llama_single.url, "--first-byte-timeout", "120",
                    "--translate-native-apis", translate) as url:
        yield Target(url, request.param == "native")


# ---------------------------------------------------------------------------
# the real llama-server
# ---------------------------------------------------------------------------


def test_create(smol: Target) -> None:
    out = run(smol.url, "create", smol.model)
    assert out["id"]
    assert (out["type"], out["role"], out["model"]) == ("message", "assistant", smol.model)
    assert out["blocks"] == ["text"]
    assert out["text"]
    assert out["stopReason"] in STOPS
    assert out["usage"]["input"] > 0
    assert 0 < out["usage"]["output"] <= MAX_TOKENS


def test_stream_helpers(smol: Target) -> None:
    out = run(smol.url, "stream", smol.model)
    assert out["events"][0] == "message_start"
    assert out["events"][-1] == "message_stop"
    assert set(out["events"]) == STREAM_EVENTS
    assert out["texts"]
    assert out["finalText"] == "".join(out["texts"]) != ""
    final = out["final"]
    assert final["model"] == smol.model
    assert final["blocks"] == ["text"]
    assert final["text"] == out["finalText"]
    assert final["stopReason"] in STOPS
    assert final["usage"]["input"] > 0
    assert 0 < final["usage"]["output"] <= MAX_TOKENS


def check_claude_code(out: dict[str, Any], model: str) -> None:
    assert out["events"][0] == "message_start"
    assert out["events"][-1] == "message_stop"
    final = out["final"]
    assert final["model"] == model
    assert final["stopReason"] in (*STOPS, "tool_use")
    assert final["usage"]["input"] > 0
    assert out["countTokens"] > 0


def test_claude_code_request(smol: Target) -> None:
    check_claude_code(run(smol.url, "claudeCode", smol.model), smol.model)


@pytest.mark.parametrize("translate", ["false", "true"], ids=["native", "translated"])
def test_claude_code_request_through_the_router(llama_router: LlamaServer, translate: str) -> None:
    with ShimThread("--backend", llama_router.url, "--first-byte-timeout", "180",
                    "--translate-native-apis", translate) as url:
        model = model_of(url, "smollm2")
        check_claude_code(run(url, "claudeCode", model), model)


def test_count_tokens(smol: Target, llama_single: LlamaServer) -> None:
    out = run(smol.url, "countTokens", smol.model)
    assert 0 < out["short"] < out["longer"]
    native = httpx.post(llama_single.url + "/v1/messages/count_tokens",
                        json={"model": "x", "messages": [{"role": "user", "content": "Say hello."}]}).json()
    assert out["short"] == native["input_tokens"]  # the backend's own count, forwarded or translated


@pytest.mark.parametrize("call", ["create", "stream", "countTokens"])
def test_unknown_model_is_the_sdks_not_found_error(smol: Target, call: str) -> None:
    refused = run(smol.url, "missing", smol.model)[call]
    assert refused["thrown"] == "NotFoundError"
    assert refused["notFound"] is True
    assert refused["status"] == 404
    assert refused["type"] == "not_found_error"
    assert refused["body"] == MISSING_BODY


@pytest.fixture(scope="module")
def keyed(llama_single: LlamaServer) -> Iterator[dict[str, Any]]:
    with ShimThread("--backend", llama_single.url, "--api-key", KEY) as url:
        yield run(url, "auth", model_of(url, headers={"Authorization": f"Bearer {KEY}"}), KEY)


@pytest.mark.parametrize("call", ["xApiKey", "bearer", "countTokens"])
def test_a_wrong_key_is_the_sdks_authentication_error(keyed: dict[str, Any], call: str) -> None:
    refused = keyed["wrong"][call]
    assert refused["thrown"] == "AuthenticationError"
    assert refused["authentication"] is True
    assert refused["status"] == 401
    assert refused["type"] == "authentication_error"
    assert refused["body"]["type"] == "error"
    assert refused["body"]["error"]["type"] == "authentication_error"


def test_the_right_key_passes_as_x_api_key_or_bearer(keyed: dict[str, Any]) -> None:
    assert keyed["right"]["xApiKey"] > 0
    assert keyed["right"]["bearer"] == keyed["right"]["xApiKey"]


# ---------------------------------------------------------------------------
# the scripted upstream: thinking and tool calls whatever a model says
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def scripted_run(scripted: ScriptedShim) -> Iterator[tuple[ScriptedShim, int, dict[str, Any]]]:
    before = len(scripted.chat_bodies())
    yield scripted, before, run(scripted.url, "tools", sc.MODEL)


def test_tool_use(scripted_run: tuple[ScriptedShim, int, dict[str, Any]]) -> None:
    _, _, out = scripted_run
    first = out["first"]
    assert first["model"] == sc.MODEL
    assert first["blocks"] == ["thinking", "tool_use"]
    assert first["stopReason"] == "tool_use"
    assert out["thinking"] == sc.THOUGHT
    assert out["call"]["name"] == "get_weather"
    assert out["call"]["input"] == {"city": "Paris"}
    assert out["call"]["id"]


def test_tool_result_round_trip(scripted_run: tuple[ScriptedShim, int, dict[str, Any]]) -> None:
    scripted, before, out = scripted_run
    final = out["final"]
    assert final["stopReason"] == "end_turn"
    assert final["blocks"] == ["thinking", "text"]
    assert final["text"] == f"{sc.FINAL_PREFIX} {out['result']}"
    [exchange] = [e for body in scripted.chat_bodies()[before:] for e in sc.tool_exchanges(body)]
    assert (exchange.call_id, exchange.call_name, exchange.call_arguments, exchange.result) == (
        out["call"]["id"], "get_weather", {"city": "Paris"}, out["result"])


def test_streamed_tool_use(scripted_run: tuple[ScriptedShim, int, dict[str, Any]]) -> None:
    streamed = scripted_run[2]["streamed"]
    assert set(streamed["events"]) == STREAM_EVENTS
    assert "".join(streamed["thoughts"]) == sc.THOUGHT
    assert json.loads("".join(streamed["inputJson"])) == {"city": "Paris"}
    assert streamed["final"]["blocks"] == ["thinking", "tool_use"]
    assert streamed["final"]["stopReason"] == "tool_use"
    assert streamed["call"]["name"] == "get_weather"
    assert streamed["call"]["input"] == {"city": "Paris"}


def test_thinking_blocks(scripted: ScriptedShim) -> None:
    out = run(scripted.url, "thinking", sc.MODEL)
    for way in (out["whole"], out["streamed"]["final"]):
        assert way["blocks"] == ["thinking", "text"]
        assert way["thinking"] == sc.THOUGHT
        assert way["signatures"] == [""]
        assert way["text"] == sc.ANSWER
        assert way["stopReason"] == "end_turn"
    assert len(out["streamed"]["thoughts"]) >= 2  # really streamed
    assert "".join(out["streamed"]["thoughts"]) == sc.THOUGHT
    assert "".join(out["streamed"]["texts"]) == sc.ANSWER
    assert scripted.last_chat_body()["reasoning_effort"] in ("low", "medium", "high")
