"""The registry over several backends: precedence, a backend that is down, the TTL, probing, reading each kind.

Backends are ``support.scripted.ScriptedBackend`` servers on loopback; the registry runs over the
real ``Upstream``. The clock is injected wherever time matters.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from ollama_shim.backends import LiveBackend
from ollama_shim.errors import ModelNotFound, UpstreamUnreachable
from support.scripted import START_NS, Clock, Reply, ScriptedBackend, models, registry_over, services_over


@pytest_asyncio.fixture
async def a() -> AsyncIterator[ScriptedBackend]:
    async with ScriptedBackend() as backend:
        yield backend


@pytest_asyncio.fixture
async def b() -> AsyncIterator[ScriptedBackend]:
    async with ScriptedBackend() as backend:
        yield backend


def listed(registry_models: tuple[Any, ...]) -> list[tuple[str, str]]:
    return [(m.record.upstream_id, m.backend.root) for m in registry_models]


# -- several backends ------------------------------------------------------------------------------


async def test_models_come_in_backend_order(a: ScriptedBackend, b: ScriptedBackend) -> None:
    a.answer("GET", "/v1/models", models("shared", "only-a"))
    b.answer("GET", "/v1/models", models("only-b", "shared"))
    async with registry_over((a, "generic"), (b, "generic")) as registry:
        assert listed(await registry.models()) == [
            ("shared", a.url), ("only-a", a.url), ("only-b", b.url), ("shared", b.url)]


@pytest.mark.parametrize("requested", ["shared", "shared:latest", "SHARED"])
async def test_first_backend_wins_a_shared_name(a: ScriptedBackend, b: ScriptedBackend, requested: str) -> None:
    a.answer("GET", "/v1/models", models("shared"))
    b.answer("GET", "/v1/models", models("only-b", "shared"))
    async with registry_over((a, "generic"), (b, "vllm")) as registry:
        found = await registry.resolve(requested)
        assert found.backend.root == a.url
        assert found.dialect.kind == "generic"


async def test_a_name_only_the_second_serves_resolves_there(a: ScriptedBackend, b: ScriptedBackend) -> None:
    a.answer("GET", "/v1/models", models("shared"))
    b.answer("GET", "/v1/models", models("only-b"))
    async with registry_over((a, "generic"), (b, "vllm")) as registry:
        found = await registry.resolve("only-b")
        assert (found.backend.root, found.dialect.kind) == (b.url, "vllm")


async def test_a_backend_that_is_down_keeps_its_last_models(a: ScriptedBackend, b: ScriptedBackend) -> None:
    a.answer("GET", "/v1/models", models("only-a"))
    b.answer("GET", "/v1/models", models("only-b"))
    async with registry_over((a, "vllm"), (b, "vllm")) as registry:
        await registry.models()
        await b.stop()
        assert listed(await registry.models(fresh=True)) == [("only-a", a.url), ("only-b", b.url)]
        assert (await registry.resolve("only-b")).backend.root == b.url


async def test_running_lists_nothing_of_a_backend_that_is_down(a: ScriptedBackend, b: ScriptedBackend) -> None:
    a.answer("GET", "/v1/models", models("only-a"))
    b.answer("GET", "/v1/models", models("only-b"))
    async with registry_over((a, "vllm"), (b, "vllm")) as registry:
        assert listed(await registry.running()) == [("only-a", a.url), ("only-b", b.url)]
        await b.stop()
        assert listed(await registry.running()) == [("only-a", a.url)]


async def test_a_backend_that_failed_answers_again(a: ScriptedBackend) -> None:
    a.answer("GET", "/v1/models", Reply(500, {"error": "busy"}))
    async with registry_over((a, "vllm")) as registry:
        with pytest.raises(Exception, match="busy"):
            await registry.models()
        a.answer("GET", "/v1/models", models("m"))
        assert listed(await registry.running()) == [("m", a.url)]


async def test_every_backend_down_and_nothing_known_fails_the_listing(b: ScriptedBackend) -> None:
    await b.stop()
    async with registry_over((b, "generic")) as registry:
        with pytest.raises(UpstreamUnreachable, match=b.url.removeprefix("http://")):
            await registry.models()


async def test_every_backend_down_after_answering_lists_the_last_models(a: ScriptedBackend) -> None:
    a.answer("GET", "/v1/models", models("m"))
    async with registry_over((a, "vllm")) as registry:
        await registry.models()
        await a.stop()
        assert listed(await registry.models(fresh=True)) == [("m", a.url)]
        assert await registry.running() == ()


async def test_a_fault_of_the_shim_itself_is_not_taken_for_a_backend_down(
    a: ScriptedBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(self: LiveBackend) -> tuple[()]:
        raise RuntimeError("a bug")

    monkeypatch.setattr(LiveBackend, "read_catalog", broken)
    async with registry_over((a, "generic")) as registry:
        with pytest.raises(RuntimeError, match="a bug"):
            await registry.models()


# -- the cache ---------------------------------------------------------------------------------------


async def test_the_list_is_cached_for_the_ttl(a: ScriptedBackend) -> None:
    a.answer("GET", "/v1/models", models("m"))
    clock = Clock()
    async with registry_over((a, "generic"), clock=clock, ttl=10) as registry:
        await registry.models()
        clock.now += 9.9
        await registry.models()
        assert a.count("GET", "/v1/models") == 1
        clock.now += 0.1
        await registry.models()
        assert a.count("GET", "/v1/models") == 2


async def test_fresh_and_invalidate_skip_the_cache(a: ScriptedBackend) -> None:
    a.answer("GET", "/v1/models", models("m"))
    async with registry_over((a, "generic")) as registry:
        await registry.models()
        await registry.models(fresh=True)
        registry.invalidate()
        await registry.models()
        assert a.count("GET", "/v1/models") == 3


async def test_concurrent_readers_share_one_refresh(a: ScriptedBackend) -> None:
    a.answer("GET", "/v1/models", models("m"))
    async with registry_over((a, "generic")) as registry:
        await asyncio.gather(*(registry.models(fresh=True) for _ in range(5)))
        assert a.count("GET", "/v1/models") == 1


async def test_an_unknown_name_refreshes_once_within_the_ttl(a: ScriptedBackend) -> None:
    a.answer("GET", "/v1/models", models("old"))
    async with registry_over((a, "generic")) as registry:
        await registry.models()
        a.answer("GET", "/v1/models", models("old", "new"))  # loaded a second ago
        assert (await registry.resolve("new")).record.upstream_id == "new"
        assert a.count("GET", "/v1/models") == 2


async def test_a_name_nobody_serves_is_not_found_after_one_refresh(a: ScriptedBackend) -> None:
    a.answer("GET", "/v1/models", models("m"))
    async with registry_over((a, "generic")) as registry:
        await registry.models()
        with pytest.raises(ModelNotFound):
            await registry.resolve("nobody")
        assert a.count("GET", "/v1/models") == 2


# -- probing an auto backend, once -------------------------------------------------------------------

PROPS = {"default_generation_settings": {"n_ctx": 4096}, "build_info": "b1", "chat_template": "{{ x }}"}
LMS_V1 = {"models": [{"key": "qwen/qwen3-8b", "type": "llm", "loaded_instances": []}]}


@pytest.mark.parametrize(
    ("answers", "kind"),
    [
        ({"/props": PROPS}, "llamacpp"),
        ({"/props": {}, "/api/v1/models": LMS_V1}, "lmstudio"),  # LM Studio answers /props with {}
        ({"/v1/models": models("m", owned_by="vllm")}, "vllm"),
        ({"/v1/models": models("m", owned_by="llamacpp")}, "llamacpp"),
        ({"/api/v1/models": {"models": []}}, "generic"),  # an empty REST list says nothing
        ({}, "generic"),
    ],
)
async def test_an_auto_backend_is_probed_once(a: ScriptedBackend, answers: dict[str, Any], kind: str) -> None:
    a.answer("GET", "/v1/models", models("m"))
    for path, doc in answers.items():
        a.answer("GET", path, doc)
    async with registry_over((a, "auto")) as registry:
        await registry.models()
        await registry.models(fresh=True)
        assert registry.backends[0].kind == kind
        # the probe asks once; after it only LM Studio's own reader asks again, on each of the two reads
        assert a.count("GET", "/api/v1/models") == (3 if kind == "lmstudio" else 1)


async def test_a_configured_kind_is_not_probed(a: ScriptedBackend) -> None:
    a.answer("GET", "/v1/models", models("m"))
    async with registry_over((a, "openrouter")) as registry:
        assert (await registry.resolve("m")).dialect.kind == "openrouter"
        assert [path for _, path, _ in a.calls] == ["/v1/models"]


# -- reading each kind's catalog --------------------------------------------------------------------


async def test_llamacpp_single_reads_meta_and_props(a: ScriptedBackend) -> None:
    meta = {"n_params": 134515008, "size": 91000000, "n_ctx_train": 8192}
    a.answer("GET", "/v1/models", models("smol", owned_by="llamacpp", created=1_600_000_000, meta=meta))
    a.answer("GET", "/props", PROPS)
    async with registry_over((a, "llamacpp")) as registry:
        (found,) = await registry.models()
        rec = found.record
        assert (rec.size, rec.context_length, rec.max_context_length, rec.loaded) == (91000000, 4096, 8192, True)
        assert rec.modified_ns == START_NS  # llama.cpp's ``created`` is the time of the answer, not a date


async def test_llamacpp_router_asks_props_of_loaded_models_only(a: ScriptedBackend) -> None:
    a.answer("GET", "/v1/models", {"data": [
        {"id": "smol q4&x", "status": {"value": "loaded"}},
        {"id": "gemma", "status": {"value": "unloaded", "args": ["llama-server", "-c", "2048"]}},
    ]})
    a.answer("GET", "/props?model=smol%20q4%26x&autoload=false", PROPS)
    async with registry_over((a, "llamacpp")) as registry:
        smol, gemma = (m.record for m in await registry.models())
        assert (smol.loaded, smol.context_length, gemma.loaded, gemma.context_length) == (True, 4096, False, 2048)
        assert [p for _, p, _ in a.calls if p.startswith("/props")] == ["/props?model=smol%20q4%26x&autoload=false"]


async def test_lmstudio_reads_rest_v1(a: ScriptedBackend) -> None:
    a.answer("GET", "/v1/models", models("qwen/qwen3-8b"))
    a.answer("GET", "/api/v1/models", {"models": [
        {"key": "qwen/qwen3-8b", "type": "llm", "max_context_length": 40960,
         "loaded_instances": [{"id": "qwen/qwen3-8b", "config": {"context_length": 16384}}]},
        {"key": "nomic-embed", "type": "embedding"},
    ]})
    async with registry_over((a, "lmstudio")) as registry:
        qwen, nomic = (m.record for m in await registry.models())
        assert (qwen.loaded, qwen.context_length, nomic.capabilities) == (True, 16384, ("embedding",))


async def test_lmstudio_falls_back_to_rest_v0(a: ScriptedBackend) -> None:
    a.answer("GET", "/v1/models", models("m"))
    a.answer("GET", "/api/v0/models", {"data": [{"id": "m", "type": "vlm", "state": "loaded"}]})
    async with registry_over((a, "lmstudio")) as registry:
        (found,) = await registry.models()
        assert (found.record.loaded, found.record.capabilities) == (True, ("completion", "vision"))


async def test_lmstudio_without_rest_reads_v1_models(a: ScriptedBackend) -> None:
    a.answer("GET", "/v1/models", models("m", max_model_len=2048))
    async with registry_over((a, "lmstudio")) as registry:
        (found,) = await registry.models()
        assert (found.record.loaded, found.record.context_length) == (False, 2048)


@pytest.mark.parametrize(("kind", "loaded"), [("vllm", True), ("openai", False), ("openrouter", False),
                                              ("generic", False)])
async def test_plain_kinds_read_v1_models(a: ScriptedBackend, kind: str, loaded: bool) -> None:
    a.answer("GET", "/v1/models", models("m", context_length=8192))
    async with registry_over((a, kind)) as registry:
        (found,) = await registry.models()
        assert (found.record.loaded, found.record.context_length) == (loaded, 8192)


# -- a broken backend's list -------------------------------------------------------------------------

BROKEN_ENTRIES = [
    {"id": "good", "created": 1_600_000_000},
    {"id": "wrong-types", "created": "yesterday", "meta": {"size": "big"}},
    {"id": "absurd", "created": 10**18, "meta": {"size": -1, "n_ctx_train": 10**15}},
    {"id": 5},
    "not an object",
]


@pytest.mark.parametrize(("kind", "good_ns"), [("llamacpp", START_NS), ("generic", 1_600_000_000 * 10**9)])
async def test_one_bad_entry_costs_only_itself(a: ScriptedBackend, kind: str, good_ns: int) -> None:
    a.answer("GET", "/v1/models", {"data": BROKEN_ENTRIES})
    async with registry_over((a, kind)) as registry:
        records = [m.record for m in await registry.models()]
        assert [r.upstream_id for r in records] == ["good", "wrong-types", "absurd"]
        assert [r.modified_ns for r in records] == [good_ns, START_NS, START_NS]
        assert records[2].size == 0


@pytest.mark.parametrize("key", ["models", "data"])
async def test_one_bad_lmstudio_entry_costs_only_itself(a: ScriptedBackend, key: str) -> None:
    a.answer("GET", "/v1/models", models("good"))
    bad = [{"key": "good", "id": "good"}, {"key": "odd", "id": "odd", "loaded_instances": 3, "state": 4}, {"x": 1}]
    a.answer("GET", "/api/v1/models" if key == "models" else "/api/v0/models", {key: bad})
    async with registry_over((a, "lmstudio")) as registry:
        assert [m.record.upstream_id for m in await registry.models()] == ["good", "odd"]


# -- what is learned is kept: load -> unload -> refresh -------------------------------------------------

SMOL_META = {"n_params": 134515008, "size": 96576768, "n_ctx_train": 8192, "n_ctx": 4096, "n_embd": 576,
             "n_vocab": 49152, "ftype": "Q4_1"}
SMOL_PROPS = {"default_generation_settings": {"n_ctx": 4096}, "build_info": "b1", "chat_template": "{{ x }}",
              "modalities": {"vision": False}, "chat_template_caps": {"supports_tools": False}}


def _router_listing(loaded: bool) -> dict[str, Any]:
    entry: dict[str, Any] = {"id": "smol", "created": 1_800_000_000 + loaded,  # the time of each answer
                             "status": {"value": "loaded" if loaded else "unloaded", "args": ["-c", "2048"]}}
    if loaded:
        entry["meta"] = SMOL_META
    return {"data": [entry]}


def shown(found: Any) -> tuple[Any, ...]:
    """What clients are shown of a model, but for whether it is loaded."""
    from ollama_shim.translate import catalog

    tags = catalog.to_tags_model(found.record, found.backend.root)
    show = catalog.to_show_response(found.record)
    return (tags.digest, tags.size, tags.details.parameter_size, tags.details.quantization_level, tags.modified_at,
            tuple(show.capabilities), show.template, show.model_info)


async def test_a_router_model_shows_the_same_after_it_is_unloaded(a: ScriptedBackend) -> None:
    a.answer("GET", "/props?model=smol&autoload=false", SMOL_PROPS)
    clock = iter(range(START_NS, START_NS + 10**12, 10**9))
    async with services_over((a, "llamacpp")) as (registry, _):
        registry._wallclock = lambda: next(clock)  # every refresh a second later
        a.answer("GET", "/v1/models", _router_listing(loaded=False))
        (before,) = await registry.models(fresh=True)
        a.answer("GET", "/v1/models", _router_listing(loaded=True))
        (first_load,) = await registry.models(fresh=True)
        seen = [first_load]
        for loaded in (False, False, True, False):
            a.answer("GET", "/v1/models", _router_listing(loaded=loaded))
            seen += await registry.models(fresh=True)
        assert [m.record.loaded for m in seen] == [True, False, False, True, False]
        for later in seen[1:]:
            assert shown(later) == shown(first_load)
        assert first_load.record.size == 96576768
        assert first_load.record.capabilities == ("completion",)
        assert first_load.record.context_length == 4096
        assert seen[1].record.context_length == 4096
        assert before.record.modified_ns == first_load.record.modified_ns == START_NS  # first seen, not `created`


async def test_what_was_learned_survives_the_backend_going_down(a: ScriptedBackend) -> None:
    a.answer("GET", "/props?model=smol&autoload=false", SMOL_PROPS)
    a.answer("GET", "/v1/models", _router_listing(loaded=True))
    async with registry_over((a, "llamacpp")) as registry:
        (up,) = await registry.models(fresh=True)
        await a.stop()
        (down,) = await registry.models(fresh=True)
        assert shown(down) == shown(up)
        assert await registry.running() == ()


async def test_memory_is_shared_and_keyed_by_backend_and_id(a: ScriptedBackend, b: ScriptedBackend) -> None:
    a.answer("GET", "/v1/models", _router_listing(loaded=True))
    a.answer("GET", "/props?model=smol&autoload=false", SMOL_PROPS)
    b.answer("GET", "/v1/models", _router_listing(loaded=False))
    async with registry_over((a, "llamacpp"), (b, "llamacpp")) as registry:
        on_a, on_b = await registry.models()
        assert (on_a.record.size, on_b.record.size) == (96576768, 0)  # b's smol is not a's
        assert registry.memory.recall(a.url, "smol") is not None
        assert registry.memory.recall(b.url, "smol") is not None


async def test_an_lmstudio_model_keeps_its_loaded_context(a: ScriptedBackend) -> None:
    model: dict[str, Any] = {"key": "qwen/qwen3-8b", "type": "llm", "size_bytes": 5, "max_context_length": 40960,
                             "loaded_instances": [{"id": "qwen/qwen3-8b", "config": {"context_length": 16384}}]}
    a.answer("GET", "/v1/models", models("qwen/qwen3-8b"))
    a.answer("GET", "/api/v1/models", {"models": [model]})
    async with registry_over((a, "lmstudio")) as registry:
        (loaded,) = await registry.models(fresh=True)
        a.answer("GET", "/api/v1/models", {"models": [{**model, "loaded_instances": []}]})
        (unloaded,) = await registry.models(fresh=True)
        assert (loaded.record.loaded, unloaded.record.loaded) == (True, False)
        assert shown(unloaded) == shown(loaded)


# -- a single llama-server is asked once whether it serves embeddings ---------------------------------


@pytest.mark.parametrize(
    ("answer", "embedding", "asked_twice"),
    [
        ({"data": [{"embedding": [0.1], "index": 0}]}, True, False),
        (Reply(501, {"error": {"code": 501, "message": "This server does not support embeddings."}}), False, False),
        (Reply(400, {"error": {"message": "Pooling type 'none' is not OAI compatible."}}), False, False),
        (Reply(500, {"error": "busy"}), False, True),  # no answer: asked again on the next read
    ],
)
async def test_a_single_server_is_probed_for_embeddings_once(
    a: ScriptedBackend, answer: Any, embedding: bool, asked_twice: bool
) -> None:
    a.answer("GET", "/v1/models", models("smol", meta=SMOL_META))
    a.answer("GET", "/props", SMOL_PROPS)
    a.answer("POST", "/v1/embeddings", answer)
    async with registry_over((a, "llamacpp")) as registry:
        (first,) = await registry.models(fresh=True)
        (second,) = await registry.models(fresh=True)
        assert ("embedding" in first.record.capabilities) is embedding
        assert second.record.capabilities == first.record.capabilities
        assert "completion" in second.record.capabilities
        assert a.count("POST", "/v1/embeddings") == (2 if asked_twice else 1)


async def test_a_router_is_not_probed_for_embeddings(a: ScriptedBackend) -> None:
    a.answer("GET", "/v1/models", _router_listing(loaded=False))
    async with registry_over((a, "llamacpp")) as registry:
        await registry.models(fresh=True)
        assert a.count("POST", "/v1/embeddings") == 0
