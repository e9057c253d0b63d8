"""The request sequences of real clients, as they check the server (shared/reference/ollama-api.md §6),
against the shim in front of a real llama-server in router mode, where the model name really matters.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime

import httpx
import pytest

from support.llama import LlamaServer
from support.shim import ShimThread

COPILOT_AGENT = {"User-Agent": "GitHubCopilotChat/0.53.0"}


@pytest.fixture(scope="module")
def shim(llama_router: LlamaServer) -> Iterator[httpx.Client]:
    # No catalog cache: what a model shows is read afresh after a request loaded it.
    with ShimThread("--backend", llama_router.url, "--catalog-ttl", "0") as url, \
            httpx.Client(base_url=url, timeout=300) as http:
        yield http


def test_vscode_copilot_sequence(shim: httpx.Client) -> None:
    version = shim.get("/api/version").json()["version"]
    assert tuple(int(part) for part in version.split(".")) >= (0, 6, 4)  # every part parseInt-ed
    models = [m["model"] for m in shim.get("/api/tags").json()["models"]]
    for model in models:
        show = shim.post("/api/show", json={"model": model}, headers=COPILOT_AGENT).json()
        assert "completion" in show["capabilities"]  # agent mode also wants "tools": only where it is true
        info = show["model_info"]
        assert info["general.basename"] == model  # the display name
        assert info[f"{info['general.architecture']}.context_length"] > 0
    # Copilot chats over the OpenAI API on the Ollama port, naming the model as /api/tags listed it.
    smol = next(m for m in models if m.lower().startswith("smollm2"))
    body = {"model": smol, "stream": True, "max_tokens": 8, "temperature": 0,
            "messages": [{"role": "user", "content": "Say hello."}]}
    with shim.stream("POST", "/v1/chat/completions", json=body) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        frames = [line[6:] for line in resp.iter_lines() if line.startswith("data: ")]
    assert frames[-1] == "[DONE]"
    chunks = [json.loads(frame) for frame in frames[:-1]]
    assert "".join((c["choices"][0]["delta"].get("content") or "") for c in chunks if c["choices"])
    # Once its template was seen, SmolLM2 is shown without tools (its template cannot render them): agent
    # mode leaves it out rather than failing on it.
    show = shim.post("/api/show", json={"model": smol}, headers=COPILOT_AGENT).json()
    assert show["capabilities"] == ["completion"]


def test_open_webui_sequence(shim: httpx.Client) -> None:
    assert shim.get("/api/version").status_code == 200
    tags = shim.get("/api/tags")
    assert tags.headers["content-type"].startswith("application/json")  # aiohttp's .json() insists
    models = {m["model"]: m for m in tags.json()["models"]}
    gemma = next(name for name in models if name.startswith("gemma"))
    untagged = gemma.removesuffix(":latest")
    assert f"{untagged}:latest" in models  # Open WebUI adds :latest before its lookup
    lines = []
    with shim.stream("POST", "/api/chat", json={"model": untagged, "messages": [{"role": "user", "content": "Hi"}],
                                                 "options": {"num_predict": 5, "temperature": 0}}) as resp:
        assert resp.headers["content-type"] == "application/x-ndjson"
        lines = [json.loads(line) for line in resp.iter_lines()]  # one JSON object per line, none blank
    assert lines[-1]["done"] is True
    assert "prompt_eval_count" in lines[-1]
    assert "eval_count" in lines[-1]
    running = shim.get("/api/ps").json()["models"]
    assert gemma in {m["model"] for m in running}
    for item in running:
        datetime.fromisoformat(item["expires_at"])
    unload = shim.post("/api/generate", json={"model": gemma, "keep_alive": 0, "prompt": ""}).json()
    assert unload["done_reason"] == "unload"
    assert gemma not in {m["model"] for m in shim.get("/api/ps").json()["models"]}
