"""A scripted upstream for the client conformance tests: it always thinks and always calls a tool.

Tool and thinking parsing in a client must be tested whatever a tiny real model happens to say,
so ``ToolRoundTrip`` is a ``responder`` for the LM Studio emulation (``support.lmstudio``) that
answers every chat request from its body alone:

- tools offered and the last message is not a tool result: thinking ``THOUGHT`` and one call of
  the first tool, with arguments made from its JSON schema (``sample_arguments``); the call's id
  is ``call_<n>``;
- the last message is a tool result: thinking ``THOUGHT`` and ``FINAL_PREFIX`` + that result;
- anything else: thinking ``THOUGHT`` and the answer ``ANSWER``.

``ScriptedShim`` runs that emulation (with a thinking, tool-using chat model ``MODEL`` and an
embedding model ``EMBED_MODEL``) and the shim in one background event loop, so blocking clients
can talk to it; ``tool_exchanges`` finds, in what the emulation received, the call each tool
result answered, for the round-trip checks.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import threading
from dataclasses import dataclass
from typing import Any

from .lmstudio import LMStudioEmulation, Model, Reply, nomic_embedding
from .shim import shim_in_loop

MODEL = "qwen3-4b-thinking"  # as the shim lists it: MODEL + ":latest"
EMBED_MODEL = nomic_embedding().key
THOUGHT = "The user wants a tool result first."
ANSWER = "Plain scripted answer."
FINAL_PREFIX = "Final answer from the tool:"
CHAT_PATH = "/v1/chat/completions"

_SAMPLES: dict[str, Any] = {"string": "Paris", "integer": 2, "number": 3.5, "boolean": True}


def sample_arguments(schema: Any) -> dict[str, Any]:
    """Arguments that satisfy a tool's ``parameters`` schema: every property, a fixed sample per type."""
    props = schema.get("properties") if isinstance(schema, dict) else None
    if not isinstance(props, dict):
        return {}
    out: dict[str, Any] = {}
    for name, prop in props.items():
        kind = prop.get("type") if isinstance(prop, dict) else None
        if isinstance(kind, list):  # ["string", "null"]
            kind = next((k for k in kind if k != "null"), "string")
        if isinstance(prop, dict) and prop.get("enum"):
            out[name] = prop["enum"][0]
        else:
            out[name] = _SAMPLES.get(str(kind), "Paris")
    return out


class ToolRoundTrip:
    """The responder: see the module docstring. Call ids count up from ``call_1``."""

    def __init__(self) -> None:
        self._ids = itertools.count(1)

    def __call__(self, body: dict[str, Any]) -> Reply:
        messages = body.get("messages") or [{}]
        last = messages[-1] if isinstance(messages[-1], dict) else {}
        if last.get("role") == "tool":
            return Reply(f"{FINAL_PREFIX} {_text(last.get('content'))}", reasoning=THOUGHT)
        tools = body.get("tools") or []
        if tools:
            function = tools[0]["function"]
            call = {
                "id": f"call_{next(self._ids)}",
                "type": "function",
                "function": {
                    "name": function["name"],
                    "arguments": json.dumps(sample_arguments(function.get("parameters"))),
                },
            }
            return Reply("", reasoning=THOUGHT, tool_calls=[call])
        return Reply(ANSWER, reasoning=THOUGHT)


def _text(content: Any) -> str:
    if isinstance(content, list):  # content parts
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return str(content)


@dataclass
class ToolExchange:
    """One tool result as the upstream received it and the assistant call it answers."""

    call_id: str
    call_name: str
    call_arguments: dict[str, Any]
    result: str


def tool_exchanges(body: dict[str, Any]) -> list[ToolExchange]:
    """Every ``role: tool`` message of a chat request paired with the assistant call it names."""
    calls: dict[str, dict[str, Any]] = {}
    found = []
    for message in body.get("messages") or []:
        for call in message.get("tool_calls") or []:
            calls[call["id"]] = call["function"]
        if message.get("role") == "tool":
            call = calls.get(message.get("tool_call_id") or "")
            if call is None:
                raise AssertionError(f"tool result not linked to any earlier call: {message}")
            arguments = json.loads(call["arguments"])
            found.append(ToolExchange(message["tool_call_id"], call["name"], arguments, _text(message["content"])))
    return found


def scripted_models() -> list[Model]:
    return [
        Model(MODEL, arch="qwen3", params_string="4B", loaded_context_length=8192, reasoning=True),
        nomic_embedding(),
    ]


class ScriptedShim:
    """``with ScriptedShim() as stack:`` the emulation and the shim in a background loop.

    ``stack.url`` is the shim's base URL, ``stack.emulation`` the upstream (read its ``requests``
    and ``bodies(path)`` after a client call returns).
    """

    def __init__(self) -> None:
        self.emulation = LMStudioEmulation(scripted_models())
        self.emulation.responder = ToolRoundTrip()
        self.url = ""
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="scripted-shim", daemon=True)
        self._stack = contextlib.AsyncExitStack()

    async def _start(self) -> str:
        await self._stack.enter_async_context(self.emulation)
        return await self._stack.enter_async_context(shim_in_loop("--backend", self.emulation.url))

    def __enter__(self) -> ScriptedShim:
        self._thread.start()
        self.url = asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(30)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stack.aclose(), self._loop).result(30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def chat_bodies(self) -> list[dict[str, Any]]:
        return list(self.emulation.bodies(CHAT_PATH))

    def last_chat_body(self) -> dict[str, Any]:
        bodies = self.chat_bodies()
        assert bodies, "the upstream received no chat request"
        return bodies[-1]
