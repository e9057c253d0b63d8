"""What the catalog learned survives restarts: ``StoredMemory`` over the SQLite store, and a shim
restarted on the same data directory shows an unloaded llama.cpp router model as it was learned."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from ollama_shim.model_memory import ModelMemory
from ollama_shim.store import Store
from ollama_shim.stored_memory import SCHEMA, StoredMemory
from ollama_shim.translate.catalog import ModelFacts
from support.clients import sync_client
from support.llama import LlamaServer, http_json
from support.shim import ShimThread

FACTS = ModelFacts(family="llama", size=96576768, parameter_count=134515008, quantization_level="Q4_1",
                   context_length=2048, tools=True, vision=False, first_seen_ns=1_700_000_000_000_000_000)


def opened(path: Path) -> Store:
    return Store(str(path), (SCHEMA,)).open()


async def until_written(memory: StoredMemory) -> None:
    await asyncio.sleep(0)  # the write task starts
    await memory.drained()


async def test_remembered_facts_are_recalled_after_a_restart(tmp_path: Path) -> None:
    store = opened(tmp_path)
    first = StoredMemory(store)
    memory: ModelMemory = first  # it is one
    memory.remember("http://a", "m", FACTS)
    memory.remember("http://a", "m", FACTS)  # remembered twice: one row
    memory.remember("http://b", "m", ModelFacts(size=1))
    await until_written(first)
    store.close()

    again = StoredMemory(opened(tmp_path))
    assert again.load() == 2
    assert again.recall("http://a", "m") == FACTS
    assert again.recall("http://b", "m") == ModelFacts(size=1)
    assert again.recall("http://a", "other") is None


def test_what_is_unwritten_is_written_by_flush(tmp_path: Path) -> None:
    memory = StoredMemory(opened(tmp_path))
    memory.remember("http://a", "m", FACTS)  # no event loop: nothing written yet
    memory.flush()
    again = StoredMemory(opened(tmp_path))
    again.load()
    assert again.recall("http://a", "m") == FACTS


async def test_rows_are_bounded_and_the_oldest_is_forgotten(tmp_path: Path) -> None:
    memory = StoredMemory(opened(tmp_path), limit=2)
    for name in ("a", "b", "c"):
        memory.remember("http://x", name, ModelFacts(size=1))
        await until_written(memory)
    again = StoredMemory(opened(tmp_path), limit=2)
    assert again.load() == 2
    assert [again.recall("http://x", n) is not None for n in ("a", "b", "c")] == [False, True, True]


def test_a_row_a_newer_shim_wrote_is_read_leniently(tmp_path: Path) -> None:
    store = opened(tmp_path)
    store.run_blocking(lambda c: c.execute(
        "INSERT INTO model_memory VALUES ('http://a', 'm', '{\"size\": 5, \"new_field\": 1}', 1), "
        "('http://a', 'bad', 'not json', 2)"))
    memory = StoredMemory(store)
    memory.load()
    assert memory.recall("http://a", "m") == ModelFacts(size=5)
    assert memory.recall("http://a", "bad") is None


SMOL = "SmolLM2-135M-Instruct.Q4_1:latest"


def _listed(url: str) -> dict[str, object]:
    _, tags = http_json(url + "/api/tags")
    entry = next(m for m in tags["models"] if m["model"] == SMOL)
    return {"digest": entry["digest"], "size": entry["size"], "details": entry["details"],
            "capabilities": entry["capabilities"]}


def _wait_unloaded(api: object) -> None:
    deadline = time.monotonic() + 60
    while any(m.model == SMOL for m in api.ps().models):  # type: ignore[attr-defined]
        assert time.monotonic() < deadline, "the model stayed loaded"
        time.sleep(0.2)


def test_a_router_model_learned_through_a_load_is_known_at_once_after_a_restart(
    llama_router: LlamaServer, tmp_path: Path
) -> None:
    args = ("--backend", llama_router.url, "--data-dir", str(tmp_path), "--catalog-ttl", "0")
    with ShimThread(*args) as url, sync_client(url, timeout=300) as api:
        api.generate(model=SMOL, prompt="")  # load only: the router's /props and meta are read
        learned = _listed(url)
        api.generate(model=SMOL, prompt="", keep_alive=0)  # and unloaded again
        _wait_unloaded(api)
    assert learned["size"]
    assert learned["details"]["quantization_level"] == "Q4_1"  # type: ignore[index]
    with ShimThread(*args) as url, sync_client(url, timeout=300) as api:
        assert _listed(url) == learned


def test_the_store_keeps_one_row_per_model_across_restarts(tmp_path: Path) -> None:
    for _ in range(2):
        memory = StoredMemory(opened(tmp_path))
        memory.load()
        memory.remember("http://a", "m", FACTS)
        memory.flush()
    rows = opened(tmp_path).run_blocking(lambda c: c.execute("SELECT COUNT(*) FROM model_memory").fetchone()[0])
    assert rows == 1
