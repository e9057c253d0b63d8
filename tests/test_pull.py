"""``/api/pull`` where the backend can download (the LM Studio emulation's download endpoints) and
where it cannot (a 400 naming the backend and what to do instead); Ollama names in LM Studio's terms."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import ollama
import pytest

from ollama_shim import downloads
from ollama_shim.errors import BadRequest
from ollama_shim.translate.pull import lmstudio_download
from ollama_shim.wire.backends import LMStudioDownloadRequest
from support.clients import async_client
from support.lmstudio import LMStudioEmulation, Model
from support.scripted import ScriptedBackend, models
from support.shim import shim_in_loop

HF_NAME = "hf.co/bartowski/SmolLM2-135M-Instruct-GGUF:Q8_0"
HF_URL = "https://huggingface.co/bartowski/SmolLM2-135M-Instruct-GGUF"


@pytest.mark.parametrize(
    ("requested", "sent"),
    [
        (HF_NAME, LMStudioDownloadRequest(HF_URL, "Q8_0")),
        ("huggingface.co/bartowski/SmolLM2-135M-Instruct-GGUF:IQ3_M", LMStudioDownloadRequest(HF_URL, "IQ3_M")),
        ("hf.co/bartowski/SmolLM2-135M-Instruct-GGUF", LMStudioDownloadRequest(HF_URL)),
        ("hf.co/bartowski/SmolLM2-135M-Instruct-GGUF:latest", LMStudioDownloadRequest(HF_URL)),
        ("google/gemma-3-4b", LMStudioDownloadRequest("google/gemma-3-4b")),
        ("qwen/qwen3-4b:latest", LMStudioDownloadRequest("qwen/qwen3-4b")),
        ("deepseek-r1", LMStudioDownloadRequest("deepseek-r1")),
    ],
)
def test_ollama_names_map_to_what_lmstudio_downloads(requested: str, sent: LMStudioDownloadRequest) -> None:
    assert lmstudio_download(requested) == sent


@pytest.mark.parametrize(
    ("requested", "why"),
    [
        ("qwen3:8b", "its catalog has no tags"),
        ("google/gemma-3-4b:q4_k_m", "its catalog has no tags"),
        ("hf.co/bartowski:Q8_0", "expected hf.co/USER/REPO"),
        ("hf.co/a/b/c:Q8_0", "expected hf.co/USER/REPO"),
        ("a/b/c", "invalid model name"),
        ("/x", "invalid model name"),
    ],
)
def test_names_lmstudio_cannot_take_are_refused(requested: str, why: str) -> None:
    with pytest.raises(BadRequest) as info:
        lmstudio_download(requested)
    assert why in info.value.message


# ---------------------------------------------------------------------------
# LM Studio: downloads
# ---------------------------------------------------------------------------

SMOL = Model("smollm2-135m-instruct", size_bytes=145_000_000, params_string="135M", arch="llama")


@pytest.fixture(autouse=True)
def quick_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(downloads, "POLL_INTERVAL", 0.02)


@pytest.fixture
async def shim(lmstudio: LMStudioEmulation) -> AsyncIterator[str]:
    lmstudio.downloadable = {HF_URL: SMOL}
    async with shim_in_loop("--backend", lmstudio.url, "--catalog-ttl", "0") as url:
        yield url


async def pull_lines(url: str, body: dict[str, Any]) -> tuple[int, list[dict[str, Any]]]:
    async with aiohttp.ClientSession() as http, http.post(url + "/api/pull", json=body) as resp:
        text = await resp.text()
    return resp.status, [json.loads(line) for line in text.splitlines() if line]


async def test_a_streamed_pull_shows_progress_and_ends_in_success(shim: str, lmstudio: LMStudioEmulation) -> None:
    status, lines = await pull_lines(shim, {"model": HF_NAME})
    assert status == 200
    assert lines[0] == {"status": "pulling manifest"}
    assert lines[-3:] == [{"status": s} for s in ("verifying sha256 digest", "writing manifest", "success")]
    progress = lines[1:-3]
    assert progress, "no progress lines"
    digest = progress[0]["digest"]
    assert digest.startswith("sha256:")
    assert len(digest) == 7 + 64
    assert {p["status"] for p in progress} == {f"pulling {digest[7:19]}"}
    assert {p["total"] for p in progress} == {SMOL.size_bytes}
    completed = [p.get("completed", 0) for p in progress]
    assert completed == sorted(completed)
    assert completed[-1] == SMOL.size_bytes
    assert lmstudio.bodies("/api/v1/models/download") == [{"model": HF_URL, "quantization": "Q8_0"}]


async def test_the_pulled_model_is_listed_at_once(shim: str) -> None:
    async with async_client(shim) as api:
        parts = [p async for p in await api.pull(HF_NAME, stream=True)]
        assert parts[-1].status == "success"
        assert SMOL.key + ":latest" in {m.model for m in (await api.list()).models}


async def test_pull_without_a_stream_waits_and_answers_once(shim: str, lmstudio: LMStudioEmulation) -> None:
    status, lines = await pull_lines(shim, {"model": HF_NAME, "stream": False})
    assert (status, lines) == (200, [{"status": "success"}])
    assert lmstudio.model(SMOL.key) is not None


async def test_a_model_lmstudio_already_has_succeeds_without_a_job(shim: str, lmstudio: LMStudioEmulation) -> None:
    lmstudio.models.append(SMOL)
    lmstudio.downloadable = {"hf-only-name": SMOL}  # not a name the shim resolves, but LM Studio has it
    status, lines = await pull_lines(shim, {"model": "hf-only-name"})
    assert status == 200
    assert lines[0] == {"status": "pulling manifest"}
    assert lines[-1] == {"status": "success"}
    assert not [r for r in lmstudio.requests if r.path.startswith("/api/v1/models/download/status")]


async def test_an_unknown_model_is_an_error_line_on_a_200_stream(shim: str) -> None:
    status, lines = await pull_lines(shim, {"model": "no-such-model"})
    assert status == 200
    assert lines[0] == {"status": "pulling manifest"}
    assert lines[-1]["error"].startswith("pull model manifest: file does not exist")
    assert len(lines) == 2


async def test_an_unknown_model_without_a_stream_is_a_404(shim: str) -> None:
    status, lines = await pull_lines(shim, {"model": "no-such-model", "stream": False})
    assert status == 404
    assert lines[0]["error"].startswith("pull model manifest: file does not exist")


async def test_a_failed_download_ends_with_an_error_line(shim: str, lmstudio: LMStudioEmulation) -> None:
    lmstudio.fail_downloads = True
    status, lines = await pull_lines(shim, {"model": HF_NAME})
    assert status == 200
    assert "failed to download" in lines[-1]["error"]
    assert lmstudio.model(SMOL.key) is None


async def test_a_tag_lmstudio_cannot_take_is_a_400_before_any_line(shim: str, lmstudio: LMStudioEmulation) -> None:
    status, lines = await pull_lines(shim, {"model": "qwen3:8b"})
    assert status == 400
    assert "its catalog has no tags" in lines[0]["error"]
    assert lmstudio.bodies("/api/v1/models/download") == []


async def test_a_client_that_leaves_does_not_cancel_the_download(shim: str, lmstudio: LMStudioEmulation) -> None:
    lmstudio.hold_downloads.set()
    async with aiohttp.ClientSession() as http, http.post(shim + "/api/pull", json={"model": HF_NAME}) as resp:
        assert json.loads(await resp.content.readline()) == {"status": "pulling manifest"}
        assert "digest" in json.loads(await resp.content.readline())  # the job runs, held by LM Studio
    # the client is gone; the download goes on when LM Studio resumes it
    lmstudio.hold_downloads.clear()
    deadline = asyncio.get_running_loop().time() + 5
    while lmstudio.model(SMOL.key) is None:
        assert asyncio.get_running_loop().time() < deadline, "the download did not finish"
        await asyncio.sleep(0.02)
    assert [job.status for job in lmstudio.jobs.values()] == ["completed"]
    asked = {r.path for r in lmstudio.requests if r.method == "POST"}
    assert asked == {"/api/v1/models/download"}  # nothing that could stop it


# ---------------------------------------------------------------------------
# Backends that cannot download
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "advice"),
    [
        ("llamacpp", "--models-dir"),
        ("vllm", "vllm serve"),
        ("openai", "use one of the models it lists"),
        ("openrouter", "use one of the models it lists"),
        ("generic", "by its own means"),
    ],
)
async def test_backends_that_cannot_download_say_what_to_do_instead(kind: str, advice: str) -> None:
    async with ScriptedBackend() as backend:
        backend.answer("GET", "/v1/models", models("served-model"))
        async with shim_in_loop("--backend", backend.url, "--backend-kind", kind) as url:
            status, lines = await pull_lines(url, {"model": "other-model"})
            assert status == 400
            assert backend.url in lines[0]["error"]
            assert f"({kind})" in lines[0]["error"]
            assert advice in lines[0]["error"]
            async with async_client(url) as api:
                assert (await api.pull("served-model")).status == "success"
                with pytest.raises(ollama.ResponseError):
                    await api.pull("other-model")
