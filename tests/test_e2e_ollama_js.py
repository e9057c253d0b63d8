"""End to end with the official JavaScript client (``ollama`` on npm) -> the shim -> LM Studio emulation:
chat, generate, embed, and the ``create`` / ``copy`` / ``delete`` / ``pull`` sequence.

ollama-js is stricter than the Python client in two ways that matter to a server: a stream
must end with an object whose ``done`` is true, and any object holding an ``error`` key throws.
``make setup`` installs the pinned client into ``tests/js/node_modules``.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import pytest

from support.lmstudio import LMStudioEmulation
from support.shim import shim_in_loop

JS_DIR = Path(__file__).parent / "js"


async def test_official_js_client(lmstudio: LMStudioEmulation) -> None:
    node = shutil.which("node")
    if node is None or not (JS_DIR / "node_modules" / "ollama").is_dir():
        pytest.fail("node or the ollama npm package is missing: run `make setup`", pytrace=False)
    lmstudio.script("one two", "whole answer", "gen text")
    chat_model = lmstudio.models[0].key
    embed_model = next(m.key for m in lmstudio.models if m.type == "embeddings")
    async with shim_in_loop("--backend", lmstudio.url) as url:
        proc = await asyncio.create_subprocess_exec(
            node, "client_check.mjs", url, chat_model, embed_model, cwd=JS_DIR,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        stdout, stderr = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, stderr.decode()
    out = json.loads(stdout)
    assert out["version"].count(".") == 2
    assert f"{chat_model}:latest" in out["models"]
    assert "completion" in out["capabilities"]
    assert "general.architecture" in out["modelInfoKeys"]
    assert out["chatStream"] == {"text": "one two", "done": True, "doneReason": "stop", "evalCount": 2}
    assert out["chat"] == {"text": "whole answer", "done": True}
    assert out["generate"] == "gen text"
    assert out["embedLengths"] == [lmstudio.embedding_dim] * 2
    assert out["missing"] == {"status": 404, "error": "model 'no-such-model' not found"}


async def test_official_js_client_creates_copies_deletes_and_pulls(lmstudio: LMStudioEmulation) -> None:
    node = shutil.which("node")
    if node is None or not (JS_DIR / "node_modules" / "ollama").is_dir():
        pytest.fail("node or the ollama npm package is missing: run `make setup`", pytrace=False)
    base = lmstudio.models[0].key
    async with shim_in_loop("--backend", lmstudio.url) as url:
        proc = await asyncio.create_subprocess_exec(
            node, "manage_check.mjs", url, base, cwd=JS_DIR,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        stdout, stderr = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, stderr.decode()
    out = json.loads(stdout)
    assert out["createStatuses"][-1] == "success"
    # a copy duplicates the model, as Ollama's does: both are made from the backend model
    assert sorted(out["listed"]) == [["luigi:latest", f"{base}:latest"], ["mario:latest", f"{base}:latest"]]
    assert out["shownSystem"] == "You are Mario."
    assert out["modelfileHasFrom"] is True
    assert out["chatModel"] == "luigi"
    assert out["afterDelete"] == []
    assert out["pull"] == "success"
    sent = lmstudio.bodies("/v1/chat/completions")[-1]
    assert sent["messages"][0] == {"role": "system", "content": "You are Mario."}
    assert sent["temperature"] == 0.25
