"""``ollama-shim doctor``: each failure case diagnosed in plain words with a fix, exit codes, the JSON schema.

Run in process through ``cli.main`` (in a worker thread when the upstream is an in-process
emulation, so that its event loop keeps answering), plus one run of the real command."""

from __future__ import annotations

import asyncio
import io
import json
import os
import sys
from typing import Any

import pytest

from ollama_shim import cli, doctor
from ollama_shim.discovery import Candidate
from ollama_shim.errors import UpstreamTimeout, UpstreamUnreachable
from ollama_shim.settings import Backend, load_settings
from support import free_port
from support.llama import LlamaServer
from support.lmstudio import LMStudioEmulation, Model, default_models
from support.static import StaticServer

REPORT_KEYS = {"schema", "ok", "backends", "problems"}
BACKEND_KEYS = {"url", "source", "answering", "kind", "version", "mode", "jit_loading", "jit_loading_how",
                "models", "chat", "embedding", "problems"}
MODEL_KEYS = {"id", "name", "loaded", "context_length", "max_context_length", "capabilities"}
TRIP_KEYS = {"model", "ok", "seconds", "error"}


@pytest.fixture(autouse=True)
def _no_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [k for k in os.environ if k.startswith(("OLLAMA_SHIM_", "OLLAMA_HOST"))]:
        monkeypatch.delenv(name)


async def run_doctor(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    """``ollama-shim doctor ARGV`` in process (a worker thread: it runs its own event loop)."""
    code = await asyncio.to_thread(cli.main, ["doctor", *argv])
    return code, capsys.readouterr().out


async def run_json(capsys: pytest.CaptureFixture[str], url: str) -> tuple[int, dict[str, Any]]:
    code, out = await run_doctor(capsys, "--json", "--backend", url)
    return code, json.loads(out)


def only_backend(report: dict[str, Any]) -> dict[str, Any]:
    assert set(report) == REPORT_KEYS
    assert report["schema"] == 1
    [backend] = report["backends"]
    assert set(backend) == BACKEND_KEYS
    return backend


def problem_text(backend: dict[str, Any]) -> str:
    return " | ".join(f"{p['what']} => {p['fix']}" for p in backend["problems"])


# -- what is wrong -------------------------------------------------------------------------


async def test_nothing_listening(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    code, report = await run_json(capsys, url)
    backend = only_backend(report)
    assert code == 1
    assert report["ok"] is False
    assert backend["answering"] is False
    assert backend["models"] == []
    assert f"nothing listens at {url}" in problem_text(backend)
    assert "--backend" in problem_text(backend)


@pytest.mark.parametrize(
    ("root", "error", "what", "fix"),
    [
        ("http://127.0.0.1:1234", UpstreamUnreachable("refused"), "LM Studio's server is off", "lms server start"),
        ("http://localhost:1234", UpstreamUnreachable("refused"), "LM Studio's server is off", "lms server start"),
        ("http://127.0.0.1:8000", UpstreamUnreachable("refused"), "usually vLLM", "--backend"),
        ("http://127.0.0.1:4321", UpstreamUnreachable("refused"), "nothing listens", "--backend"),
        ("http://10.1.2.3:1234", UpstreamUnreachable("refused"), "nothing answers", "firewall"),
        ("http://127.0.0.1:1234", UpstreamTimeout("slow"), "answers nothing in time", "restart"),
    ],
)
def test_unreachable_is_explained_by_where_it_points(root: str, error: UpstreamUnreachable, what: str,
                                                     fix: str) -> None:
    problem = doctor.unreachable(Backend(root), error)
    assert what in problem.what
    assert fix in problem.fix


async def test_jit_off_with_nothing_loaded(capsys: pytest.CaptureFixture[str]) -> None:
    async with LMStudioEmulation(jit=False) as lms:
        for model in lms.models:
            model.loaded_context_length = None
        code, report = await run_json(capsys, lms.url)
    backend = only_backend(report)
    assert code == 1
    assert backend["kind"] == "lmstudio"
    assert backend["jit_loading"] == "off"
    assert "No models loaded" in backend["jit_loading_how"]  # confirmed by the 1-token request
    assert [p["what"] for p in backend["problems"]] == [doctor.JIT_OFF_NOTHING_LOADED.what]
    assert "Just-in-Time" in backend["problems"][0]["fix"]
    assert backend["chat"]["ok"] is False
    assert lms.bodies("/v1/chat/completions")[0]["max_tokens"] == 1


async def test_jit_off_is_seen_in_the_model_lists_without_a_request_failing(
        capsys: pytest.CaptureFixture[str]) -> None:
    only_chat = [m for m in default_models() if m.type != "embeddings"]
    async with LMStudioEmulation(only_chat, jit=False) as lms:
        code, report = await run_json(capsys, lms.url)
    backend = only_backend(report)
    assert code == 0  # the loaded model chats; nothing else is needed
    assert backend["jit_loading"] == "off"
    assert "lists only the loaded models" in backend["jit_loading_how"]


async def test_a_long_model_list_is_read_whole(capsys: pytest.CaptureFixture[str]) -> None:
    many = [Model(f"model-{i:04d}-{'x' * 120}") for i in range(600)]  # /v1/models is over 64 KiB
    async with LMStudioEmulation(many) as lms:
        code, report = await run_json(capsys, lms.url)
    backend = only_backend(report)
    assert code == 0
    assert len(backend["models"]) == 600
    assert backend["jit_loading"] == "on"  # the unloaded models were seen in /v1/models


async def test_no_models(capsys: pytest.CaptureFixture[str]) -> None:
    async with LMStudioEmulation([]) as lms:
        code, report = await run_json(capsys, lms.url)
    backend = only_backend(report)
    assert code == 1
    assert backend["answering"] is True
    assert backend["kind"] == "lmstudio"
    assert backend["problems"] == [{"what": "the server lists no models", "fix": doctor.no_models("lmstudio").fix}]
    assert backend["chat"] is None


async def test_wrong_port_answering_html(capsys: pytest.CaptureFixture[str]) -> None:
    async with StaticServer() as site:
        code, report = await run_json(capsys, site.url)
    backend = only_backend(report)
    assert code == 1
    assert backend["answering"] is False
    assert "a web page (HTML)" in problem_text(backend)
    assert "wrong port" in problem_text(backend)


@pytest.mark.parametrize(("key", "what"),
                         [((), "requires an API key"), (("--backend-key", "sk-old"), "refuses the API key")])
async def test_auth_refused(capsys: pytest.CaptureFixture[str], key: tuple[str, ...], what: str) -> None:
    body = '{"error":{"code":401,"message":"Invalid API Key","type":"authentication_error"}}'
    async with StaticServer(401, body=body, content_type="application/json") as site:
        code, out = await run_doctor(capsys, "--json", "--backend", site.url, *key)
    backend = only_backend(json.loads(out))
    assert code == 1
    assert what in problem_text(backend)
    assert "Invalid API Key" in problem_text(backend)
    assert "--backend-key" in problem_text(backend)
    assert "sk-old" not in out


async def test_a_failing_chat_is_a_problem(capsys: pytest.CaptureFixture[str]) -> None:
    async with LMStudioEmulation() as lms:
        lms.fail_next(500, {"error": "the engine crashed"})  # the next inference call: the chat
        code, report = await run_json(capsys, lms.url)
    backend = only_backend(report)
    assert code == 1
    assert backend["chat"]["ok"] is False
    assert "the engine crashed" in backend["chat"]["error"]
    assert "the chat round trip with qwen2.5-7b-instruct failed" in problem_text(backend)
    assert backend["embedding"]["ok"] is True


async def test_an_embedding_model_jit_cannot_load_is_a_problem(capsys: pytest.CaptureFixture[str]) -> None:
    async with LMStudioEmulation(jit=False) as lms:  # the chat model is loaded, the embedding model not
        code, report = await run_json(capsys, lms.url)
    backend = only_backend(report)
    assert code == 1
    assert backend["chat"]["ok"] is True
    assert backend["embedding"]["ok"] is False
    [problem] = backend["problems"]
    assert problem["fix"].startswith("JIT loading is off: load it first (`lms load text-embedding-nomic")


# -- healthy ------------------------------------------------------------------------------


async def test_healthy_lmstudio(capsys: pytest.CaptureFixture[str]) -> None:
    async with LMStudioEmulation() as lms:
        code, report = await run_json(capsys, lms.url)
    backend = only_backend(report)
    assert code == 0
    assert report["ok"] is True
    assert report["problems"] == []
    assert backend["problems"] == []
    assert (backend["source"], backend["answering"], backend["kind"]) == ("configured", True, "lmstudio")
    assert backend["version"] == "0.4 or newer (REST API v1)"
    assert backend["mode"] is None
    assert backend["jit_loading"] == "on"
    assert all(set(m) == MODEL_KEYS for m in backend["models"])
    by_id = {m["id"]: m for m in backend["models"]}
    assert by_id["qwen2.5-7b-instruct"]["loaded"] is True
    assert by_id["qwen2.5-7b-instruct"]["context_length"] == 4096
    assert "tools" in by_id["qwen2.5-7b-instruct"]["capabilities"]
    assert "vision" in by_id["gemma-3-4b-it"]["capabilities"]
    assert by_id["text-embedding-nomic-embed-text-v1.5"]["capabilities"] == ["embedding"]
    assert set(backend["chat"]) == TRIP_KEYS
    assert (backend["chat"]["model"], backend["chat"]["ok"]) == ("qwen2.5-7b-instruct", True)  # the loaded one
    assert (backend["embedding"]["model"], backend["embedding"]["ok"]) == ("text-embedding-nomic-embed-text-v1.5",
                                                                             True)


async def test_healthy_lmstudio_as_text(capsys: pytest.CaptureFixture[str]) -> None:
    async with LMStudioEmulation([Model("qwen2.5-7b-instruct", loaded_context_length=4096)]) as lms:
        code, out = await run_doctor(capsys, "--backend", lms.url)
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == f"{lms.url} (configured): LM Studio, version 0.4 or newer (REST API v1)"
    assert any(line.startswith("  chat: ok with qwen2.5-7b-instruct") for line in lines)
    assert "  embedding: not tried (no embedding model)" in lines
    assert lines[-1] == "ok: everything needed works"
    assert "PROBLEM" not in out


def test_healthy_llama_server(llama_single: LlamaServer, capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["doctor", "--json", "--backend", llama_single.url])
    backend = only_backend(json.loads(capsys.readouterr().out))
    assert code == 0
    assert backend["problems"] == []
    assert (backend["kind"], backend["mode"]) == ("llamacpp", "single")
    assert backend["version"]  # /props build_info
    assert backend["jit_loading"] is None
    [model] = backend["models"]
    assert model["loaded"] is True
    assert model["context_length"] == 2048
    assert backend["chat"]["ok"] is True
    assert backend["embedding"] is None


# -- discovery ----------------------------------------------------------------------------


async def test_no_backend_and_none_found() -> None:
    out = io.StringIO()
    settings = load_settings(["doctor"], {})
    async with StaticServer() as site:
        candidates = [Candidate("nothing", free_port()), Candidate("a web server", site.port)]
        code = await asyncio.to_thread(doctor.run, settings, candidates=candidates, out=out)
    assert code == 1
    text = out.getvalue()
    assert "no model server answers on this machine's usual ports" in text
    assert "--backend" in text
    assert f"{site.url} (usually a web server) answers but is not usable" in text


async def test_no_backend_uses_what_discovery_finds(lmstudio: LMStudioEmulation) -> None:
    out = io.StringIO()
    settings = load_settings(["doctor", "--json"], {})
    candidates = [Candidate("nothing", free_port()), Candidate("LM Studio", int(lmstudio.url.rsplit(":", 1)[1]))]
    code = await asyncio.to_thread(doctor.run, settings, candidates=candidates, out=out)
    backend = only_backend(json.loads(out.getvalue()))
    assert code == 0
    assert (backend["url"], backend["source"]) == (lmstudio.url, "discovered")


# -- the real command ---------------------------------------------------------------------


async def test_the_command_runs_doctor(lmstudio: LMStudioEmulation) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OLLAMA_SHIM_", "OLLAMA_HOST"))}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ollama_shim", "doctor", "--json", "--backend", lmstudio.url,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    assert only_backend(json.loads(out))["kind"] == "lmstudio"
