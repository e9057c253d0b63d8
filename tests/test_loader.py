"""Loading and unloading per backend kind: which call goes where with what body, and what comes back.

Backends are ``support.scripted.ScriptedBackend`` servers; a llama.cpp router is scripted to answer
a load at once and report ``loading`` for one more poll before ``loaded``, as the real one does.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import pytest_asyncio

from ollama_shim.errors import UpstreamStatus, UpstreamTimeout
from ollama_shim.loader import _already_done
from support.scripted import Reply, ScriptedBackend, models, services_over


@pytest.mark.parametrize(
    ("status", "message", "done"),
    [
        (400, "model is already running", True),  # llama.cpp router, this build
        (400, "model is not running", True),
        (400, "model is already loaded", True),  # as documented
        (400, "model is not loaded", True),
        (404, "model is not found", False),
        (500, "failed to load model", False),
    ],
)
def test_already_done(status: int, message: str, done: bool) -> None:
    assert _already_done(UpstreamStatus(message, status)) is done


@pytest_asyncio.fixture
async def backend() -> AsyncIterator[ScriptedBackend]:
    async with ScriptedBackend() as scripted:
        yield scripted


class Router:
    """A llama.cpp router's model states: a load or unload is answered at once and takes one poll."""

    def __init__(self, backend: ScriptedBackend, state: str) -> None:
        self.state = state
        self.target = state
        backend.answer("GET", "/v1/models", self.listing)
        backend.answer("POST", "/models/load", lambda body: self.begin("loaded"))
        backend.answer("POST", "/models/unload", lambda body: self.begin("unloaded"))

    def begin(self, target: str) -> dict[str, bool]:
        self.state, self.target = "loading", target
        return {"success": True}

    def listing(self, _: object) -> dict[str, Any]:
        shown, self.state = self.state, self.target
        return {"data": [{"id": "smol", "status": {"value": shown}}]}


@dataclass
class Row:
    kind: str
    verb: str  # "load" | "unload"
    done: bool  # what the loader says: True = the backend did it, False = cannot be asked
    posts: list[tuple[str, Any]] = field(default_factory=list)


LLAMA = {"model": "smol"}
ROWS = [
    Row("llamacpp", "load", True, [("/models/load", LLAMA)]),
    Row("llamacpp", "unload", True, [("/models/unload", LLAMA)]),
    Row("lmstudio", "load", True, [("/api/v1/models/load", {"model": "smol"})]),
    Row("lmstudio", "unload", True, [("/api/v1/models/unload", {"instance_id": "smol"})]),
    *(Row(kind, verb, False) for kind in ("vllm", "openai", "openrouter", "generic") for verb in ("load", "unload")),
]


def script(backend: ScriptedBackend, kind: str, verb: str) -> None:
    if kind == "llamacpp":
        Router(backend, "unloaded" if verb == "load" else "loaded")
    else:
        backend.answer("GET", "/v1/models", models("smol"))
        backend.answer("POST", "/api/v1/models/load", {"status": "loaded"})
        backend.answer("POST", "/api/v1/models/unload", {"instance_id": "smol"})


@pytest.mark.parametrize("row", ROWS, ids=lambda r: f"{r.kind}-{r.verb}")
async def test_load_and_unload_per_kind(backend: ScriptedBackend, row: Row) -> None:
    script(backend, row.kind, row.verb)
    async with services_over((backend, row.kind)) as (registry, loader):
        resolved = await registry.resolve("smol")
        done = await (loader.load if row.verb == "load" else loader.unload)(resolved)
    assert done is row.done
    assert backend.posts() == row.posts


async def test_llamacpp_load_waits_until_the_router_says_loaded(backend: ScriptedBackend) -> None:
    router = Router(backend, "unloaded")
    async with services_over((backend, "llamacpp")) as (registry, loader):
        await loader.load(await registry.resolve("smol"))
        assert router.state == "loaded"
        assert backend.count("GET", "/v1/models") == 3  # the catalog, then "loading", then "loaded"


async def test_a_load_refreshes_the_catalog_after(backend: ScriptedBackend) -> None:
    Router(backend, "unloaded")
    async with services_over((backend, "llamacpp")) as (registry, loader):
        await loader.load(await registry.resolve("smol"))
        (model,) = await registry.models()
        assert model.record.loaded


@pytest.mark.parametrize(
    ("kind", "path", "reply", "outcome"),
    [
        ("llamacpp", "/models/load", Reply(404, {"error": "File Not Found"}), False),  # a single-model server
        ("llamacpp", "/models/load", Reply(405, "Method Not Allowed"), False),
        ("llamacpp", "/models/load", Reply(400, {"error": "model is already running"}), True),
        ("lmstudio", "/api/v1/models/load", Reply(400, {"error": "model is already loaded"}), True),
        ("llamacpp", "/models/load", Reply(400, {"error": {"message": "model is not found"}}), "model is not found"),
        ("llamacpp", "/models/load", Reply(404, {"error": {"message": "model smol is not found"}}), "not found"),
        ("lmstudio", "/api/v1/models/load", Reply(404, {"error": "Not Found"}), "Not Found"),  # no "cannot" there
        ("lmstudio", "/api/v1/models/load", Reply(500, {"error": "out of memory"}), "out of memory"),
    ],
)
async def test_what_a_load_answer_means(backend: ScriptedBackend, kind: str, path: str, reply: Reply,
                                        outcome: bool | str) -> None:
    backend.answer("GET", "/v1/models", models("smol"))  # no router status: nothing to wait for
    backend.answer("POST", path, reply)
    async with services_over((backend, kind)) as (registry, loader):
        resolved = await registry.resolve("smol")
        if isinstance(outcome, bool):
            assert await loader.load(resolved) is outcome
        else:
            with pytest.raises(UpstreamStatus, match=outcome):
                await loader.load(resolved)


async def test_a_load_the_router_gives_up_on_fails_with_its_exit_code(backend: ScriptedBackend) -> None:
    backend.answer("GET", "/v1/models", {"data": [{"id": "smol", "status": {"value": "unloaded"}}]})
    backend.answer("POST", "/models/load", {"success": True})
    async with services_over((backend, "llamacpp")) as (registry, loader):
        resolved = await registry.resolve("smol")
        backend.answer("GET", "/v1/models", {"data": [
            {"id": "smol", "status": {"value": "unloaded", "failed": True, "exit_code": 134}}]})
        with pytest.raises(UpstreamStatus, match="exit code 134"):
            await loader.load(resolved)


async def test_a_load_that_never_finishes_times_out(backend: ScriptedBackend) -> None:
    backend.answer("GET", "/v1/models", {"data": [{"id": "smol", "status": {"value": "loading"}}]})
    backend.answer("POST", "/models/load", {"success": True})
    fast = ("--connect-timeout", "1", "--first-byte-timeout", "0.5")
    async with services_over((backend, "llamacpp"), argv=fast) as (registry, loader):
        with pytest.raises(UpstreamTimeout, match="smol"):
            await loader.load(await registry.resolve("smol"))


async def test_a_model_the_router_no_longer_lists_counts_as_done(backend: ScriptedBackend) -> None:
    backend.answer("GET", "/v1/models", {"data": [{"id": "smol", "status": {"value": "loaded"}}]})
    backend.answer("POST", "/models/unload", {"success": True})
    async with services_over((backend, "llamacpp")) as (registry, loader):
        resolved = await registry.resolve("smol")
        backend.answer("GET", "/v1/models", {"data": [{"id": "other", "status": {"value": "loaded"}}]})
        assert await loader.unload(resolved) is True
