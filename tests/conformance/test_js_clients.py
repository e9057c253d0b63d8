"""Conformance: the npm clients, driven by small Node scripts in ``tests/js``, against the shim.

Clients (pinned in ``tests/js/package.json`` and its lock file; ``make setup`` runs ``npm ci``):
``@langchain/ollama@1.3.0`` with ``@langchain/core@1.4.0``, and the Vercel AI SDK ``ai@6.0.325`` with
``ollama-ai-provider-v2@3.6.0`` and ``zod@4.6.7`` (the AI SDK 7 line needs Node 22; Node 20 is
what the project's machines have). Each script run does one user flow and prints one JSON line;
a flow that throws prints ``{"error": ...}``.

- ``langchain_check.mjs``: ``ChatOllama`` invoke and stream, ``Ollama`` (``/api/generate``) whole
  and streamed, ``withStructuredOutput`` (JSON schema), ``OllamaEmbeddings``; against the scripted
  upstream ``bindTools`` + ``think``: thinking, the tool call (whole and streamed), and the
  round trip with a ``ToolMessage``.
- ``ai_sdk_check.mjs``: ``generateText`` and ``streamText`` on the chat model, ``generateObject``,
  ``embedMany``, ``generateText`` on the completion model (``/api/generate``); against the
  scripted upstream ``generateText``/``streamText`` with a tool that has ``execute`` and
  ``stopWhen: stepCountIs(3)``, so the SDK itself sends the tool result back and gets the final
  answer, with ``think`` on.

``/api/generate``'s final object carries ``context``: without it the AI SDK provider rejects the
whole answer.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from support import always_tools as sc
from support.always_tools import ScriptedShim

JS_DIR = Path(__file__).resolve().parents[1] / "js"
SMOL = "SmolLM2-135M-Instruct.Q4_1"
SMOL_EMBEDDING_LENGTH = 576
LANGCHAIN = "langchain_check.mjs"
AI_SDK = "ai_sdk_check.mjs"


def run(script: str, url: str, scenario: str, model: str) -> dict[str, Any]:
    node = shutil.which("node")
    if node is None or not (JS_DIR / "node_modules" / "ollama-ai-provider-v2").is_dir():
        pytest.fail("node or the npm clients are missing: run `make setup`", pytrace=False)
    done = subprocess.run([node, script, url, scenario, model], cwd=JS_DIR, capture_output=True, text=True,
                          timeout=180, check=False)
    assert done.returncode == 0, done.stderr
    out: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return out


def ok(script: str, url: str, scenario: str, model: str = SMOL) -> dict[str, Any]:
    out = run(script, url, scenario, model)
    assert "error" not in out, out["error"]
    return out


def linked_exchanges(stack: ScriptedShim, since: int) -> list[sc.ToolExchange]:
    """Tool results in the chat requests the upstream received after the first ``since``."""
    return [e for body in stack.chat_bodies()[since:] for e in sc.tool_exchanges(body)]


# ---------------------------------------------------------------------------
# @langchain/ollama
# ---------------------------------------------------------------------------


def test_langchain_chat(smol_url: str) -> None:
    out = ok(LANGCHAIN, smol_url, "chat")
    assert out["text"].strip()
    assert out["doneReason"] in ("stop", "length")
    assert out["usage"]["output_tokens"] > 0


def test_langchain_stream(smol_url: str) -> None:
    chunks = [c for c in ok(LANGCHAIN, smol_url, "stream")["chunks"] if c]
    assert len(chunks) >= 2  # really streamed
    assert "".join(chunks).strip()


def test_langchain_generate(smol_url: str) -> None:
    out = ok(LANGCHAIN, smol_url, "generate")
    assert out["whole"].strip()
    assert out["streamed"] == out["whole"]


def test_langchain_structured_output(smol_url: str) -> None:
    assert set(ok(LANGCHAIN, smol_url, "structured")["object"]) == {"name", "country"}


def test_langchain_embeddings(embed_url: str) -> None:
    out = ok(LANGCHAIN, embed_url, "embed")
    assert out["lengths"] == [SMOL_EMBEDDING_LENGTH] * 2
    assert out["queryLength"] == SMOL_EMBEDDING_LENGTH
    assert out["differ"] is True


def test_langchain_tools_and_thinking(scripted: ScriptedShim) -> None:
    before = len(scripted.chat_bodies())
    out = ok(LANGCHAIN, scripted.url, "tools", sc.MODEL)
    assert out["thinking"] == sc.THOUGHT
    assert out["calls"] == [{"name": "get_weather", "args": {"city": "Paris"}}]
    assert out["streamedCalls"] == out["calls"]
    assert out["final"] == f"{sc.FINAL_PREFIX} {out['result']}"
    [exchange] = linked_exchanges(scripted, before)
    assert (exchange.call_name, exchange.call_arguments, exchange.result) == (
        "get_weather", {"city": "Paris"}, out["result"])


# ---------------------------------------------------------------------------
# Vercel AI SDK + ollama-ai-provider-v2
# ---------------------------------------------------------------------------


def test_ai_sdk_generate_text(smol_url: str) -> None:
    out = ok(AI_SDK, smol_url, "chat")
    assert out["text"].strip()
    assert out["finishReason"] in ("stop", "length")
    assert out["outputTokens"] > 0


def test_ai_sdk_stream_text(smol_url: str) -> None:
    out = ok(AI_SDK, smol_url, "stream")
    assert len([c for c in out["chunks"] if c]) >= 2
    assert out["finishReason"] in ("stop", "length")


def test_ai_sdk_generate_object(smol_url: str) -> None:
    assert set(ok(AI_SDK, smol_url, "structured")["object"]) == {"name", "country"}


def test_ai_sdk_embed_many(embed_url: str) -> None:
    out = ok(AI_SDK, embed_url, "embed")
    assert out["lengths"] == [SMOL_EMBEDDING_LENGTH] * 2
    assert out["differ"] is True


def test_ai_sdk_completion_model(smol_url: str) -> None:
    out = ok(AI_SDK, smol_url, "completion")
    assert out["text"].strip()


def test_ai_sdk_tool_loop_with_thinking(scripted: ScriptedShim) -> None:
    before = len(scripted.chat_bodies())
    out = ok(AI_SDK, scripted.url, "tools", sc.MODEL)
    first, second = out["steps"]
    assert first["reasoning"] == sc.THOUGHT
    assert first["calls"] == [{"name": "get_weather", "input": {"city": "Paris"}}]
    assert first["results"] == ["sunny in Paris"]
    assert second["calls"] == []
    assert out["text"] == f"{sc.FINAL_PREFIX} sunny in Paris"
    [exchange] = linked_exchanges(scripted, before)
    assert (exchange.call_name, exchange.call_arguments, exchange.result) == (
        "get_weather", {"city": "Paris"}, "sunny in Paris")


def test_ai_sdk_streamed_tool_loop(scripted: ScriptedShim) -> None:
    before = len(scripted.chat_bodies())
    out = ok(AI_SDK, scripted.url, "streamTools", sc.MODEL)
    assert {"reasoning-delta", "tool-call", "tool-result", "text-delta"} <= set(out["kinds"])
    assert sc.THOUGHT in out["reasoning"]
    assert out["calls"] == [{"name": "get_weather", "input": {"city": "Paris"}}]
    assert out["text"] == f"{sc.FINAL_PREFIX} sunny in Paris"
    [exchange] = linked_exchanges(scripted, before)  # the SDK sent the result back, linked to its call
    assert (exchange.call_name, exchange.result) == ("get_weather", "sunny in Paris")
