"""Backend metadata -> ModelRecord -> /api/tags, /api/show and /api/ps entries."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import msgspec
import pytest

from ollama_shim.translate import catalog
from ollama_shim.translate.catalog import ModelFacts, ModelRecord
from ollama_shim.wire.backends import LlamaCppGenerationSettings, LlamaCppProps, LMStudioV0Model, LMStudioV1Model
from ollama_shim.wire.openai import ModelEntry

NOW = 1_700_000_000_000_000_000


@pytest.mark.parametrize(
    ("upstream_id", "family", "params", "quant"),
    [
        ("SmolLM2-135M-Instruct.Q4_1", "llama", "135M", "Q4_1"),
        ("gemma-3-270m-q4_k_m", "gemma3", "270M", "Q4_K_M"),
        ("lmstudio-community/Qwen2.5-7B-Instruct-GGUF", "qwen2", "7B", ""),
        ("qwen/qwen3-8b", "qwen3", "8B", ""),
        ("Meta-Llama-3.1-8B-Instruct-IQ4_XS", "llama", "8B", "IQ4_XS"),
        ("mistral-7b-instruct-v0.3.f16", "llama", "7B", "F16"),
        ("deepseek-r1-distill-qwen-1.5b", "qwen2", "1.5B", ""),
        ("gpt-4o", "", "", ""),
        ("mlx-community/Qwen3-4B-4bit", "qwen3", "4B", "4BIT"),
    ],
)
def test_inference_from_id(upstream_id: str, family: str, params: str, quant: str) -> None:
    assert catalog.infer_family(upstream_id) == family
    assert catalog.infer_parameter_size(upstream_id) == params
    assert catalog.infer_quantization(upstream_id) == quant


@pytest.mark.parametrize(
    ("ftype", "quant"),
    [("Q4_K - Medium", "Q4_K_M"), ("Q4_K - Small", "Q4_K_S"), ("Q4_1", "Q4_1"), ("Q8_0", "Q8_0"),
     ("IQ4_XS - 4.25 bpw", "IQ4_XS"), ("all F32", "F32"), ("BF16", "BF16"), ("", "")],
)
def test_quantization_from_llamacpp_ftype(ftype: str, quant: str) -> None:
    assert catalog.quantization_from_ftype(ftype) == quant


# llama.cpp's name of each file type (``meta.ftype`` of a loaded model), by GGUF ``general.file_type``.
LLAMACPP_FTYPE_NAMES = {
    0: "all F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K - Medium",
    11: "Q3_K - Small", 12: "Q3_K - Medium", 13: "Q3_K - Large", 14: "Q4_K - Small", 15: "Q4_K - Medium",
    16: "Q5_K - Small", 17: "Q5_K - Medium", 18: "Q6_K", 19: "IQ2_XXS - 2.0625 bpw", 20: "IQ2_XS - 2.3125 bpw",
    21: "Q2_K - Small", 22: "IQ3_XS - 3.3 bpw", 23: "IQ3_XXS - 3.0625 bpw", 24: "IQ1_S - 1.5625 bpw",
    25: "IQ4_NL - 4.5 bpw", 26: "IQ3_S - 3.4375 bpw", 27: "IQ3_S mix - 3.66 bpw", 28: "IQ2_S - 2.5 bpw",
    29: "IQ2_M - 2.7 bpw", 30: "IQ4_XS - 4.25 bpw", 31: "IQ1_M - 1.75 bpw", 32: "BF16", 36: "TQ1_0 - 1.69 bpw ternary",
    37: "TQ2_0 - 2.06 bpw ternary", 38: "MXFP4 MoE", 39: "NVFP4", 40: "Q1_0",
}


@pytest.mark.parametrize("file_type", sorted(LLAMACPP_FTYPE_NAMES))
def test_a_file_type_reads_the_same_from_the_file_and_from_the_loaded_server(file_type: int) -> None:
    """The unloaded model's quantization (from its file) is what the loaded server's name gives."""
    from_server = catalog.quantization_from_ftype(LLAMACPP_FTYPE_NAMES[file_type])
    assert catalog.QUANTIZATION_BY_FILE_TYPE[file_type] == from_server


def test_every_file_type_is_named() -> None:
    assert set(catalog.QUANTIZATION_BY_FILE_TYPE) == set(LLAMACPP_FTYPE_NAMES)


@pytest.mark.parametrize(("ftype", "quant"), [("(guessed) Q4_0", "Q4_0"), ("(guessed) Q4_K - Medium", "Q4_K_M"),
                                              ("MXFP4 MoE", "MXFP4"), ("IQ3_S mix - 3.66 bpw", "IQ3_M")])
def test_names_that_do_not_follow_the_rule(ftype: str, quant: str) -> None:
    assert catalog.quantization_from_ftype(ftype) == quant


@pytest.mark.parametrize(
    ("upstream_id", "caps"),
    [
        ("llama-3-8b", ("completion", "tools")),
        ("qwen3-8b", ("completion", "tools", "thinking")),
        ("qwen2.5-coder-7b", ("completion", "tools", "insert")),
        ("nomic-embed-text-v1.5", ("embedding",)),
        ("text-embedding-3-small", ("embedding",)),
    ],
)
def test_capabilities_from_id(upstream_id: str, caps: tuple[str, ...]) -> None:
    assert catalog.infer_capabilities(upstream_id) == caps


@pytest.mark.parametrize(
    ("n", "text"),
    [(8_030_261_248, "8.0B"), (7_000_000_000, "7B"), (134_515_008, "134.52M"), (268_098_176, "268.10M"),
     (5_000, "5K"), (12, "12")],
)
def test_human_number(n: int, text: str) -> None:
    assert catalog.human_number(n) == text


def _llamacpp_entry(**extra: object) -> ModelEntry:
    doc = {
        "id": "SmolLM2-135M-Instruct.Q4_1",
        "owned_by": "llamacpp",
        "meta": {"n_params": 134515008, "size": 91000000, "n_ctx_train": 8192, "n_embd": 576, "n_vocab": 49152},
        **extra,
    }
    return msgspec.convert(doc, ModelEntry)


def test_llamacpp_record_takes_real_metadata() -> None:
    props = LlamaCppProps(
        default_generation_settings=LlamaCppGenerationSettings(n_ctx=4096),
        chat_template="{% if enable_thinking %}<think>{% endif %}",
        modalities={"vision": True},
    )
    rec = catalog.record_from_llamacpp(_llamacpp_entry(), props, NOW)
    assert (rec.size, rec.parameter_size, rec.parameter_count) == (91000000, "134.52M", 134515008)
    assert (rec.context_length, rec.max_context_length, rec.embedding_length) == (4096, 8192, 576)
    assert rec.capabilities == ("completion", "tools", "vision", "thinking")
    assert rec.loaded
    assert rec.format == "gguf"
    assert rec.family == "llama"
    assert rec.quantization_level == "Q4_1"


@pytest.mark.parametrize(("status", "loaded"), [("loaded", True), ("unloaded", False), ("loading", False)])
def test_llamacpp_router_status(status: str, loaded: bool) -> None:
    rec = catalog.record_from_llamacpp(_llamacpp_entry(status={"value": status}), None, NOW)
    assert rec.loaded is loaded


@pytest.mark.parametrize(
    ("args", "ctx"),
    [(["llama-server", "--ctx-size", "2048", "--model", "m.gguf"], 2048), (["-c", "4096"], 4096),
     (["--model", "m.gguf"], None), (["--ctx-size", "0"], None), (None, None), (["--ctx-size"], None)],
)
def test_context_from_router_args(args: object, ctx: int | None) -> None:
    assert catalog.context_from_args(args) == ctx


def test_unloaded_router_model_takes_its_context_from_its_args() -> None:
    status = {"value": "unloaded", "args": ["llama-server", "--ctx-size", "2048"]}
    entry = msgspec.convert({"id": "gemma-3-270m-q4_k_m", "owned_by": "llamacpp", "status": status}, ModelEntry)
    rec = catalog.record_from_llamacpp(entry, None, NOW)
    assert rec.context_length == 2048
    assert not rec.loaded
    assert catalog.model_info_of(rec)["gemma3.context_length"] == 2048


def test_llamacpp_without_props_uses_train_context_and_id() -> None:
    rec = catalog.record_from_llamacpp(_llamacpp_entry(), None, NOW)
    assert rec.context_length == 8192
    assert rec.capabilities == ("completion", "tools")


def test_lmstudio_v1_record() -> None:
    model = msgspec.convert(
        {
            "type": "llm", "publisher": "qwen", "key": "qwen/qwen3-8b", "display_name": "Qwen3 8B",
            "architecture": "qwen3", "quantization": {"name": "Q4_K_M", "bits_per_weight": 4},
            "size_bytes": 5030000000, "params_string": "8B",
            "loaded_instances": [{"id": "qwen/qwen3-8b", "config": {"context_length": 16384}}],
            "max_context_length": 40960, "format": "gguf",
            "capabilities": {"vision": False, "trained_for_tool_use": True, "reasoning": {"allowed_options": ["on"]}},
        },
        LMStudioV1Model,
    )
    rec = catalog.record_from_lmstudio_v1(model, NOW)
    assert (rec.name, rec.family, rec.parameter_size, rec.quantization_level) == (
        "qwen/qwen3-8b:latest", "qwen3", "8B", "Q4_K_M")
    assert (rec.size, rec.context_length, rec.max_context_length, rec.loaded) == (5030000000, 16384, 40960, True)
    assert rec.capabilities == ("completion", "tools", "thinking")


@pytest.mark.parametrize(
    ("type_", "caps", "loaded_state", "ctx"),
    [
        ("llm", ("completion", "tools"), "loaded", 4096),
        ("vlm", ("completion", "tools", "vision"), "not-loaded", 32768),
        ("embeddings", ("embedding",), "not-loaded", 32768),
    ],
)
def test_lmstudio_v0_record(type_: str, caps: tuple[str, ...], loaded_state: str, ctx: int) -> None:
    doc = {"id": "m", "type": type_, "arch": "llama", "compatibility_type": "gguf", "quantization": "Q4_K_M",
           "state": loaded_state, "max_context_length": 32768, "capabilities": ["tool_use"]}
    if loaded_state == "loaded":
        doc["loaded_context_length"] = 4096
    rec = catalog.record_from_lmstudio_v0(msgspec.convert(doc, LMStudioV0Model), NOW)
    assert rec.capabilities == caps
    assert rec.context_length == ctx
    assert rec.loaded is (loaded_state == "loaded")


@pytest.mark.parametrize(
    ("doc", "ctx"),
    [({"id": "Qwen/Qwen2.5-7B-Instruct", "owned_by": "vllm", "max_model_len": 32768}, 32768),
     ({"id": "openai/gpt-4o", "context_length": 128000}, 128000),
     ({"id": "gpt-4o", "owned_by": "system"}, None)],
)
def test_openai_entry_record(doc: dict[str, object], ctx: int | None) -> None:
    rec = catalog.record_from_openai_entry(msgspec.convert(doc, ModelEntry), NOW, loaded=False)
    assert rec.context_length == ctx


def _record(**kw: object) -> ModelRecord:
    base = catalog.base_record("SmolLM2-135M-Instruct.Q4_1", NOW)
    return replace(base, **kw)  # type: ignore[arg-type]


def test_tags_entry_has_every_field_clients_read() -> None:
    entry = msgspec.json.decode(msgspec.json.encode(catalog.to_tags_model(_record(size=5), "http://b")))
    assert entry["name"] == entry["model"] == "SmolLM2-135M-Instruct.Q4_1:latest"
    assert len(entry["digest"]) == 64
    assert int(entry["digest"], 16) >= 0
    assert entry["size"] == 5
    assert "." in entry["modified_at"]
    assert set(entry["details"]) == {"parent_model", "format", "family", "families", "parameter_size",
                                     "quantization_level"}
    assert all(isinstance(v, str) for k, v in entry["details"].items() if k != "families")


def test_digest_is_stable_and_depends_on_backend() -> None:
    rec = _record()
    assert catalog.digest_of(rec, "http://a") == catalog.digest_of(rec, "http://a")
    assert catalog.digest_of(rec, "http://a") != catalog.digest_of(rec, "http://b")


def test_show_response_shape() -> None:
    rec = _record(context_length=4096, capabilities=("completion", "tools", "insert"))
    body = msgspec.json.encode(catalog.to_show_response(rec))
    doc = msgspec.json.decode(body)
    assert doc["model_info"]["general.architecture"] == "llama"
    assert doc["model_info"]["llama.context_length"] == 4096
    assert doc["capabilities"] == ["completion", "tools", "insert"]
    assert doc["parameters"].startswith("num_ctx" + " " * 24 + "4096")
    assert "tools" in doc["template"].lower()
    assert ".Suffix" in doc["template"]


def test_show_keeps_model_info_and_capabilities_when_empty() -> None:
    body = msgspec.json.encode(catalog.to_show_response(_record(family="", capabilities=())))
    assert b'"model_info":{' in body
    assert b'"capabilities":[]' in body


def test_show_basename_override_for_copilot() -> None:
    doc = catalog.to_show_response(_record(), basename="smollm2")
    assert doc.model_info["general.basename"] == "smollm2"


def test_ps_entry() -> None:
    entry = catalog.to_ps_model(_record(context_length=2048, size=7), "http://b", NOW)
    assert entry.context_length == 2048
    assert entry.size == 7
    assert entry.expires_at > "2100"


# -- what a broken backend sends: out-of-range values dropped, bad entries cost only themselves --------


@pytest.mark.parametrize(
    ("meta", "field", "expected"),
    [
        ({"size": -5}, "size", 0),
        ({"size": 10**30}, "size", 0),
        ({"n_params": -1}, "parameter_count", None),
        ({"n_params": 10**20}, "parameter_count", None),
        ({"n_params": 10**20}, "parameter_size", "135M"),  # the id's figure stands in
        ({"n_ctx_train": 10**12}, "max_context_length", None),
        ({"n_ctx_train": 10**12}, "context_length", None),
        ({"n_ctx_train": 0}, "context_length", None),
        ({"n_ctx_train": 8192, "n_ctx": -1}, "context_length", 8192),
        ({"n_ctx_train": 8192, "n_ctx": 10**12}, "context_length", 8192),
        ({"n_embd": -3}, "embedding_length", None),
        ({"n_vocab": 10**15}, "vocab_size", None),
    ],
)
def test_llamacpp_values_out_of_range_are_dropped(meta: dict[str, object], field: str, expected: object) -> None:
    entry = msgspec.convert({"id": "SmolLM2-135M-Instruct.Q4_1", "meta": meta}, ModelEntry)
    assert getattr(catalog.record_from_llamacpp(entry, None, NOW), field) == expected


@pytest.mark.parametrize("created", [10**18, -1, 0, None])
def test_absurd_created_falls_back_to_the_start_time(created: int | None) -> None:
    entry = ModelEntry(id="m", created=created)
    rec = catalog.record_from_openai_entry(entry, NOW, loaded=False)
    assert rec.modified_ns == NOW
    assert catalog.to_tags_model(rec, "http://b").modified_at.startswith("2023-11-")  # NOW, local time


def test_sane_created_is_kept() -> None:
    rec = catalog.record_from_openai_entry(ModelEntry(id="m", created=1_600_000_000), NOW, loaded=False)
    assert rec.modified_ns == 1_600_000_000 * 1_000_000_000


@pytest.mark.parametrize(
    ("doc", "ctx"),
    [({"id": "m", "max_model_len": 10**13}, None), ({"id": "m", "context_length": -4096}, None),
     ({"id": "m", "max_model_len": -1, "context_length": 4096}, 4096)],
)
def test_openai_entry_absurd_context_is_dropped(doc: dict[str, object], ctx: int | None) -> None:
    assert catalog.record_from_openai_entry(msgspec.convert(doc, ModelEntry), NOW, loaded=False).context_length == ctx


def test_lmstudio_absurd_values_are_dropped() -> None:
    v1 = msgspec.convert({"key": "m", "size_bytes": -1, "max_context_length": 10**12,
                          "loaded_instances": [{"id": "m", "config": {"context_length": -5}}]}, LMStudioV1Model)
    rec = catalog.record_from_lmstudio_v1(v1, NOW)
    assert (rec.size, rec.context_length, rec.max_context_length) == (0, None, None)
    v0 = msgspec.convert({"id": "m", "max_context_length": 4096, "loaded_context_length": 10**12}, LMStudioV0Model)
    assert catalog.record_from_lmstudio_v0(v0, NOW).context_length == 4096


@pytest.mark.parametrize(
    ("entries", "decoded"),
    [
        (b'[{"id": "a"}, {"id": "b"}]', ["a", "b"]),
        (b'[{"id": "a", "created": "yesterday"}, {"id": "b"}]', ["a (by name)", "b"]),  # a wrong type
        (b'[{"id": "a", "meta": {"n_params": "many"}}, {"id": "b"}]', ["a (by name)", "b"]),  # deep inside
        (b'[{"id": 5}, {"id": "b"}]', ["b"]),  # no usable name: left out
        (b'[{"name": "x"}, "text", 7, null, {"id": ""}, {"id": "b"}]', ["b"]),
        (b'[{"key": "k"}]', ["k (by name)"]),  # LM Studio REST names a model by its key
    ],
)
def test_decode_each_keeps_every_entry_it_can(entries: bytes, decoded: list[str]) -> None:
    raws = [msgspec.Raw(msgspec.json.encode(x)) for x in msgspec.json.decode(entries)]
    out = catalog.decode_each(raws, ModelEntry, lambda name: ModelEntry(id=f"{name} (by name)"))
    assert [e.id for e in out] == decoded


# -- capabilities from what the backend says; the id's hints only where it says nothing ----------------

RECORDED = Path(__file__).parent / "fixtures" / "recorded"


def _recorded_props(name: str) -> LlamaCppProps:
    return msgspec.json.decode((RECORDED / name).read_bytes(), type=LlamaCppProps)


@pytest.mark.parametrize(
    ("fixture", "upstream_id"),
    [
        ("llamacpp_props.json", "SmolLM2-135M-Instruct.Q4_1"),  # single mode
        ("llamacpp_router_props_model.json", "SmolLM2-135M-Instruct.Q4_1"),  # router ?model=
        ("llamacpp_props_gemma.json", "gemma-3-270m-q4_k_m"),  # no template in the GGUF: ChatML stands in
        ("llamacpp_router_props_model_gemma.json", "gemma-3-270m-q4_k_m"),
    ],
)
def test_recorded_tiny_models_have_no_tools(fixture: str, upstream_id: str) -> None:
    props = _recorded_props(fixture)
    rec = catalog.record_from_llamacpp(msgspec.convert({"id": upstream_id}, ModelEntry), props, NOW)
    assert rec.capabilities == ("completion",)
    assert rec.denied == ("tools", "vision", "thinking")


_CAPS_ALL_TRUE: dict[str, object] = {"supports_tools": True, "supports_tool_calls": True}


@pytest.mark.parametrize(
    ("props", "caps"),
    [
        # chat_template_caps decide tools: both render-tests must pass
        (LlamaCppProps(chat_template="t", chat_template_caps=_CAPS_ALL_TRUE), ("completion", "tools")),
        (LlamaCppProps(chat_template="t", chat_template_caps={"supports_tools": False}), ("completion",)),
        (LlamaCppProps(chat_template="t", chat_template_caps={"supports_tools": True, "supports_tool_calls": False}),
         ("completion",)),
        (LlamaCppProps(chat_template="t", chat_template_caps={}), ("completion", "tools")),  # absent keys: true
        # an older build without caps: the id's hint (llama -> tools)
        (LlamaCppProps(chat_template="t"), ("completion", "tools")),
        # thinking from the template, or a reasoning_effort switch
        (LlamaCppProps(chat_template="{% if enable_thinking %}", chat_template_caps={}),
         ("completion", "tools", "thinking")),
        (LlamaCppProps(chat_template="x", chat_template_caps={"supports_reasoning_effort": True}),
         ("completion", "tools", "thinking")),
        # vision from modalities
        (LlamaCppProps(chat_template="t", chat_template_caps={}, modalities={"vision": True}),
         ("completion", "tools", "vision")),
        # not loaded (router): nothing said, the id's hints
        (None, ("completion", "tools")),
    ],
)
def test_llamacpp_capabilities_from_props(props: LlamaCppProps | None, caps: tuple[str, ...]) -> None:
    entry = msgspec.convert({"id": "llama-3-8b"}, ModelEntry)
    assert catalog.record_from_llamacpp(entry, props, NOW).capabilities == caps


@pytest.mark.parametrize(
    ("args", "embedding"),
    [(["llama-server", "--embeddings", "--pooling", "mean"], True), (["--embedding"], True),
     (["--pooling", "mean"], False),  # pooling alone: llama-server still answers 501
     (["--ctx-size", "2048"], False), (None, None)],
)
def test_embeddings_from_router_args(args: list[str] | None, embedding: bool | None) -> None:
    assert catalog.embeddings_from_args(args) is embedding


@pytest.mark.parametrize(
    ("status", "embeddings", "caps"),
    [
        ({"value": "unloaded", "args": ["--embeddings"]}, None, ("completion", "tools", "embedding")),
        ({"value": "loaded", "args": ["--embeddings"]}, None, ("completion", "embedding")),  # + props
        ({"value": "loaded", "args": ["--ctx-size", "1"]}, None, ("completion",)),
        (None, True, ("completion", "embedding")),  # a single server, probed
        (None, False, ("completion",)),
    ],
)
def test_llamacpp_served_for_embeddings_keeps_embedding(
    status: dict[str, object] | None, embeddings: bool | None, caps: tuple[str, ...]
) -> None:
    doc: dict[str, object] = {"id": "SmolLM2-135M-Instruct.Q4_1"}
    if status is not None:
        doc["status"] = status
    loaded = status is None or status["value"] == "loaded"
    props = _recorded_props("llamacpp_props.json") if loaded else None
    rec = catalog.record_from_llamacpp(msgspec.convert(doc, ModelEntry), props, NOW, embeddings=embeddings)
    assert rec.capabilities == caps


def test_an_embedding_model_served_for_embeddings_does_not_complete() -> None:
    entry = msgspec.convert({"id": "nomic-embed-text-v1.5.f16", "status": {"args": ["--embeddings"]}}, ModelEntry)
    assert catalog.record_from_llamacpp(entry, None, NOW).capabilities == ("embedding",)


@pytest.mark.parametrize(
    ("architecture", "vision"),
    [({"input_modalities": ["text", "image"]}, True), ({"input_modalities": ["text"]}, False), (None, None)],
)
def test_vision_from_entry_architecture(architecture: dict[str, object] | None, vision: bool | None) -> None:
    doc: dict[str, object] = {"id": "openai/gpt-4o"}
    if architecture is not None:
        doc["architecture"] = architecture
    entry = msgspec.convert(doc, ModelEntry)
    rec = catalog.record_from_openai_entry(entry, NOW, loaded=False)
    assert ("vision" in rec.capabilities) is bool(vision)
    assert rec.lacks("vision") is (vision is False)
    assert catalog.record_from_llamacpp(entry, None, NOW).lacks("vision") is (vision is False)


@pytest.mark.parametrize(
    ("flags", "caps", "denied"),
    [
        ({"vision": True, "trained_for_tool_use": True}, ("completion", "tools", "vision"),
         ("embedding", "thinking")),
        ({"vision": False, "trained_for_tool_use": False}, ("completion",),
         ("tools", "vision", "embedding", "thinking")),
        (None, ("completion", "tools"), ("embedding",)),  # no flags: the id's hints for the rest
    ],
)
def test_lmstudio_v1_capability_flags(
    flags: dict[str, object] | None, caps: tuple[str, ...], denied: tuple[str, ...]
) -> None:
    doc: dict[str, object] = {"key": "some/model", "type": "llm"}
    if flags is not None:
        doc["capabilities"] = flags
    rec = catalog.record_from_lmstudio_v1(msgspec.convert(doc, LMStudioV1Model), NOW)
    assert (rec.capabilities, rec.denied) == (caps, denied)


# -- what is remembered: settle ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("remembered", "seen", "expected"),
    [
        (None, ModelFacts(size=5), ModelFacts(size=5, first_seen_ns=NOW)),  # first sight: stamped
        (ModelFacts(size=5, tools=False, first_seen_ns=1), ModelFacts(),
         ModelFacts(size=5, tools=False, first_seen_ns=1)),  # nothing said now: what was said stays
        (ModelFacts(size=5, first_seen_ns=1), ModelFacts(size=6), ModelFacts(size=6, first_seen_ns=1)),  # news wins
        (ModelFacts(tools=True, first_seen_ns=1), ModelFacts(tools=False), ModelFacts(tools=False, first_seen_ns=1)),
        (ModelFacts(first_seen_ns=1), ModelFacts(first_seen_ns=9), ModelFacts(first_seen_ns=1)),  # never moves
        (ModelFacts(size=5), ModelFacts(), ModelFacts(size=5, first_seen_ns=NOW)),  # a store without the stamp
    ],
)
def test_settle(remembered: ModelFacts | None, seen: ModelFacts, expected: ModelFacts) -> None:
    assert catalog.settle(remembered, seen, NOW) == expected


def _router_entry(loaded: bool) -> ModelEntry:
    doc: dict[str, object] = {"id": "SmolLM2-135M-Instruct.Q4_1", "created": 1_800_000_000,
                              "status": {"value": "loaded" if loaded else "unloaded", "args": ["-c", "2048"]}}
    if loaded:
        doc["meta"] = {"n_params": 134515008, "size": 96576768, "n_ctx_train": 8192, "n_ctx": 2048, "ftype": "Q4_1"}
    return msgspec.convert(doc, ModelEntry)


def test_a_router_model_keeps_what_was_learned_while_loaded() -> None:
    props = _recorded_props("llamacpp_router_props_model.json")
    facts: ModelFacts | None = None
    shown = []
    for loaded in (False, True, False, True, False):
        seen = catalog.seen_in_llamacpp(_router_entry(loaded), props if loaded else None)
        facts = catalog.settle(facts, seen.facts, NOW + len(shown))
        rec = catalog.record_of(seen, facts)
        shown.append((catalog.to_tags_model(rec, "http://b"), catalog.to_show_response(rec)))
    first_load = shown[1]
    for tags, show in shown[2:]:
        assert tags == first_load[0]
        assert show == first_load[1]
    before_load = shown[0][0]
    assert (before_load.size, shown[1][0].size) == (0, 96576768)  # the digest changes once, when the size is known
    assert before_load.capabilities == ["completion", "tools"]
    assert shown[1][0].capabilities == ["completion"]


# -- digest, modified_at, template -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "same"),
    [({"loaded": True}, True), ({"context_length": 4096}, True), ({"capabilities": ("embedding",)}, True),
     ({"modified_ns": 5}, True), ({"quantization_level": "Q8_0"}, True),
     ({"size": 7}, False), ({"upstream_id": "other"}, False)],
)
def test_digest_depends_only_on_what_identifies_the_model(change: dict[str, object], same: bool) -> None:
    rec = _record(size=5)
    changed = replace(rec, **change)  # type: ignore[arg-type]
    assert (catalog.digest_of(changed, "http://a") == catalog.digest_of(rec, "http://a")) is same


@pytest.mark.parametrize(
    ("kind_reader", "expected_ns"),
    [
        (lambda e: catalog.record_from_openai_entry(e, NOW, loaded=False), 1_600_000_000 * 10**9),  # OpenAI: a date
        (lambda e: catalog.record_from_openai_entry(e, NOW, loaded=False, created_is_real=False), NOW),  # vLLM
        (lambda e: catalog.record_from_llamacpp(e, None, NOW), NOW),  # llama.cpp: the time of the answer
    ],
)
def test_modified_at_is_a_real_date_or_the_first_sight(kind_reader: Any, expected_ns: int) -> None:
    assert kind_reader(ModelEntry(id="m", created=1_600_000_000)).modified_ns == expected_ns


@pytest.mark.parametrize(
    ("caps", "tools_in_template", "suffix_in_template"),
    [(("completion",), False, False), (("completion", "tools"), True, False),
     (("completion", "tools", "insert"), True, True), (("embedding",), False, False)],
)
def test_template_is_a_stand_in_that_agrees_with_capabilities(
    caps: tuple[str, ...], tools_in_template: bool, suffix_in_template: bool
) -> None:
    template = catalog.to_show_response(_record(capabilities=caps)).template
    assert ("tools" in template.lower()) is tools_in_template  # what LiteLLM reads
    assert (".Suffix" in template) is suffix_in_template  # what Continue reads


def test_template_is_never_the_backends_jinja() -> None:
    props = _recorded_props("llamacpp_props.json")
    rec = catalog.record_from_llamacpp(_llamacpp_entry(), props, NOW)
    unloaded = catalog.record_from_llamacpp(_llamacpp_entry(status={"value": "unloaded"}), None, NOW)
    assert props.chat_template
    assert props.chat_template not in catalog.to_show_response(rec).template
    assert "{%" not in catalog.to_show_response(rec).template
    assert catalog.to_show_response(replace(unloaded, capabilities=rec.capabilities)).template == \
        catalog.to_show_response(rec).template


@pytest.mark.parametrize(
    ("facts", "ctx"),
    [
        (ModelFacts(context_length=1024, configured_context_length=4096, max_context_length=8192), 1024),  # seen
        (ModelFacts(configured_context_length=4096, max_context_length=8192), 4096),  # what a router will start
        (ModelFacts(max_context_length=8192), 8192),  # what it was trained for
        (ModelFacts(), None),
    ],
)
def test_context_length_prefers_what_was_seen_running(facts: ModelFacts, ctx: int | None) -> None:
    assert catalog.record_of(catalog.Sighting("m", facts)).context_length == ctx
