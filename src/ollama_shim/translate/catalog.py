"""Backend model metadata -> ``ModelFacts`` -> ``ModelRecord`` -> Ollama's /api/tags, /api/show, /api/ps.

Each backend's native metadata (llama.cpp ``/v1/models`` ``meta`` + ``/props`` + router
``status``, LM Studio REST v0/v1, vLLM, OpenRouter) is read by a ``seen_in_*`` function into a
``Sighting``: the model's id, whether it is loaded now, and ``ModelFacts``, what the backend says
about it now (None wherever it says nothing, which for a llama.cpp router model that is not
loaded is most things). ``settle`` lays those over what was remembered of the model, so a fact
once learned (size, parameters, quantization, context, capabilities) stays known when the model
is unloaded; ``over`` fills what the backend never said from the model's file where the shim reads
it (never remembered); ``record_of`` turns the facts into the ``ModelRecord`` clients are shown,
with careful inference from the id (family, parameter size, quantization, capabilities) only for
what no backend has said. ``decode_each`` reads a backend's list entry by entry, so one malformed
entry costs only itself; values outside sane bounds (a ``created`` in the year 30 million, a
negative size) are dropped for that entry.

The rules clients see:

- **Capabilities** come from the backend where it says: llama.cpp ``tools`` from ``/props``
  ``chat_template_caps`` (``supports_tools`` and ``supports_tool_calls``), ``thinking`` from the
  chat template, ``vision`` from ``/props`` ``modalities`` or the entry's
  ``architecture.input_modalities``, ``embedding`` from the router's ``--embeddings`` argument or
  a probe of a single server's ``/v1/embeddings``; LM Studio from its type and capability flags.
  A llama.cpp router model never loaded is described by its GGUF file where the shim can read
  it (``translate.gguf_facts``), below anything the backend says. The id's hints stand in only
  for what the backend and the file leave unsaid. ``denied`` lists what the
  backend said a model cannot do (a request with images to a model denied ``vision`` is refused).
- **Template**: ``/api/show`` always shows a Go-template stand-in built from the capabilities
  (``{{ .Tools }}`` when ``tools``, ``{{ .Suffix }}`` when ``insert``), never the backend's Jinja
  text, which is only known while a router model is loaded and would make the answer change with
  load state. The backend applies its own template in any case.
- **Digest**: sha256 of the backend root, the model id and the weights' size once known
  (0 before; from the file from the start where it is read): stable across loads, refreshes and
  restarts.
- **modified_at**: the backend's own date where it gives a real one (OpenAI, OpenRouter); not
  llama.cpp's or vLLM's ``created``, which is the time of the answer; else when the model was
  first seen.

May import: stdlib, msgspec, ``ollama_shim.wire``, ``ollama_shim.translate.names``, ``ollama_shim.timefmt``.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields, replace
from typing import Any, TypeVar

import msgspec

from ..timefmt import local_timestamp
from ..wire import ollama as ow
from ..wire.backends import (
    AnyModelName,
    LlamaCppMeta,
    LlamaCppProps,
    LlamaCppStatus,
    LMStudioV0Model,
    LMStudioV1Model,
    ModelArchitecture,
)
from ..wire.openai import ModelEntry
from .names import ollama_name

COMPLETION, TOOLS, VISION, EMBEDDING, THINKING, INSERT = (
    "completion",
    "tools",
    "vision",
    "embedding",
    "thinking",
    "insert",
)
_CAPABILITY_ORDER = (COMPLETION, TOOLS, INSERT, VISION, EMBEDDING, THINKING)
_FOREVER_NS = 100 * 365 * 86400 * 1_000_000_000


@dataclass(frozen=True)
class ModelFacts:
    """What backends have said about one model; None wherever they have said nothing.

    Plain values only, so that a store can keep it as JSON (``dataclasses.asdict``) and read it back
    (``ModelFacts(**doc)``). The six capability fields are tri-state: true, false, or not said.
    """

    family: str | None = None
    format: str | None = None
    size: int | None = None  # bytes of the model file
    parameter_count: int | None = None
    parameter_size: str | None = None
    quantization_level: str | None = None
    context_length: int | None = None  # the context it was last seen running with
    configured_context_length: int | None = None  # the context a llama.cpp router will start it with
    max_context_length: int | None = None  # what it was trained for
    embedding_length: int | None = None
    vocab_size: int | None = None
    completion: bool | None = None
    tools: bool | None = None
    insert: bool | None = None
    vision: bool | None = None
    embedding: bool | None = None
    thinking: bool | None = None
    created_ns: int | None = None  # the backend's own date for the model, where it gives a real one
    first_seen_ns: int | None = None  # when the shim first saw the model

    def said(self, capability: str) -> bool | None:
        """Whether the backend said the model has ``capability`` (None: it did not say)."""
        value = getattr(self, capability, None)
        return value if isinstance(value, bool) else None


@dataclass(frozen=True)
class Sighting:
    """One model in one answer of a backend: its id, whether it is loaded now, what was said of it."""

    upstream_id: str
    facts: ModelFacts
    loaded: bool = False
    # What the model's file says (``translate.gguf_facts``), where the shim could read it: below
    # anything the backend says, now or before.
    file_facts: ModelFacts | None = None


@dataclass(frozen=True)
class ModelRecord:
    upstream_id: str
    name: str  # Ollama display name, with tag
    family: str = ""
    parameter_size: str = ""
    parameter_count: int | None = None
    quantization_level: str = ""
    format: str = ""
    size: int = 0
    context_length: int | None = None  # what a request may use now (loaded/slot context)
    max_context_length: int | None = None  # what the model was trained for
    embedding_length: int | None = None
    vocab_size: int | None = None
    capabilities: tuple[str, ...] = (COMPLETION,)
    denied: tuple[str, ...] = ()  # capabilities the backend said the model lacks
    loaded: bool = False
    modified_ns: int = 0

    def lacks(self, capability: str) -> bool:
        """Whether the backend said the model cannot do ``capability`` (not merely left it unsaid)."""
        return capability in self.denied


# ---------------------------------------------------------------------------
# Inference from an id, used only where the backend says nothing better
# ---------------------------------------------------------------------------

# (pattern in the lower-cased id, Ollama family = GGUF general.architecture)
_FAMILIES = (
    ("smollm", "llama"),
    ("qwen3", "qwen3"),
    ("qwq", "qwen2"),
    ("qwen2", "qwen2"),
    ("qwen", "qwen2"),
    ("gemma-3", "gemma3"),
    ("gemma3", "gemma3"),
    ("gemma-2", "gemma2"),
    ("gemma2", "gemma2"),
    ("gemma", "gemma"),
    ("deepseek-r1", "qwen2"),
    ("deepseek", "deepseek2"),
    ("phi-4", "phi3"),
    ("phi4", "phi3"),
    ("phi-3", "phi3"),
    ("phi3", "phi3"),
    ("mixtral", "llama"),
    ("mistral", "llama"),
    ("gpt-oss", "gptoss"),
    ("granite", "granite"),
    ("nomic-bert", "nomic-bert"),
    ("nomic-embed", "nomic-bert"),
    ("bge", "bert"),
    ("minilm", "bert"),
    ("llama", "llama"),
)
_QUANT = re.compile(r"(?<![a-z0-9])(i?q\d(?:_[a-z0-9]+)*|bf16|f16|f32|fp16|\d+bit|mxfp4)(?![a-z0-9])")
_PARAMS = re.compile(r"(?<![a-z0-9.])(\d+(?:\.\d+)?)([bm])(?![a-z0-9])")
_EMBEDDING_HINTS = ("embed", "bge-", "minilm", "e5-", "gte-")
_THINKING_HINTS = ("qwen3", "deepseek-r1", "qwq", "gpt-oss", "magistral", "-thinking", "reasoning")
_INSERT_HINTS = ("coder", "starcoder", "codellama", "codegemma", "codestral")


def infer_family(upstream_id: str) -> str:
    lowered = upstream_id.lower()
    return next((family for pattern, family in _FAMILIES if pattern in lowered), "")


def infer_quantization(upstream_id: str) -> str:
    found = _QUANT.findall(upstream_id.lower())
    return found[-1].upper() if found else ""


def infer_parameter_size(upstream_id: str) -> str:
    found = _PARAMS.search(upstream_id.lower())
    return f"{found.group(1)}{found.group(2).upper()}" if found else ""


_FTYPE_SIZES = {"small": "_S", "medium": "_M", "large": "_L", "extra small": "_XS"}
# llama.cpp names whose Ollama name does not follow from the general rule.
_FTYPE_NAMES = {"Q2_K - Medium": "Q2_K", "IQ3_S mix - 3.66 bpw": "IQ3_M", "MXFP4 MoE": "MXFP4"}

# A GGUF file's ``general.file_type`` (llama.cpp's ftype number) as Ollama names it; the same
# name ``quantization_from_ftype`` gives for llama.cpp's spelling of that type.
QUANTIZATION_BY_FILE_TYPE = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K",
    11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S", 17: "Q5_K_M",
    18: "Q6_K", 19: "IQ2_XXS", 20: "IQ2_XS", 21: "Q2_K_S", 22: "IQ3_XS", 23: "IQ3_XXS", 24: "IQ1_S",
    25: "IQ4_NL", 26: "IQ3_S", 27: "IQ3_M", 28: "IQ2_S", 29: "IQ2_M", 30: "IQ4_XS", 31: "IQ1_M",
    32: "BF16", 36: "TQ1_0", 37: "TQ2_0", 38: "MXFP4", 39: "NVFP4", 40: "Q1_0",
}


def quantization_from_ftype(ftype: str) -> str:
    """llama.cpp's file type name as Ollama prints it: ``Q4_K - Medium`` -> ``Q4_K_M``.

    A name llama.cpp guessed from the tensors (``(guessed) Q4_0``) counts as the name.
    """
    ftype = ftype.removeprefix("(guessed) ").strip()
    if ftype in _FTYPE_NAMES:
        return _FTYPE_NAMES[ftype]
    name, _, rest = ftype.partition(" - ")
    name = name.removeprefix("all ").strip().upper()
    return name + _FTYPE_SIZES.get(rest.strip().lower(), "")


def infer_capabilities(upstream_id: str) -> tuple[str, ...]:
    lowered = upstream_id.lower()
    if any(h in lowered for h in _EMBEDDING_HINTS):
        return (EMBEDDING,)
    caps = {COMPLETION, TOOLS}
    if any(h in lowered for h in _THINKING_HINTS):
        caps.add(THINKING)
    if any(h in lowered for h in _INSERT_HINTS):
        caps.add(INSERT)
    return ordered(caps)


def ordered(caps: set[str] | tuple[str, ...]) -> tuple[str, ...]:
    return tuple(c for c in _CAPABILITY_ORDER if c in caps)


def human_number(n: int) -> str:
    """Parameter counts the way Ollama prints them: 8.0B, 134.52M, 7B."""
    for unit, scale, digits in (("B", 1e9, 1), ("M", 1e6, 2), ("K", 1e3, 0)):
        if n >= scale:
            value = n / scale
            return f"{value:.0f}{unit}" if value == int(value) else f"{value:.{digits}f}{unit}"
    return str(n)


def base_record(upstream_id: str, modified_ns: int) -> ModelRecord:
    """What the id alone tells."""
    return record_of(Sighting(upstream_id, ModelFacts(first_seen_ns=modified_ns)))


# ---------------------------------------------------------------------------
# Reading a backend's list: entry by entry, values within bounds
# ---------------------------------------------------------------------------

T = TypeVar("T")

# A value outside these bounds is a backend's mistake: it is dropped for that entry (what the id
# tells, or nothing, stands in) rather than passed on to clients that would choke on it.
_MAX_CREATED_S = 7_258_118_400  # 2200-01-01: a timestamp every client can still show
MAX_COUNT = 1 << 53  # bytes, parameters: beyond what a JSON number holds exactly
MAX_CONTEXT = 1 << 26  # tokens (67 M): far beyond any model's window
MAX_WIDTH = 1 << 24  # embedding length, vocabulary size
_NAME_DECODER = msgspec.json.Decoder(AnyModelName)


def within(value: int | None, limit: int) -> int | None:
    """``value`` when it is a positive number no larger than ``limit``, else None."""
    return value if value is not None and 0 < value <= limit else None


def decode_each(raws: Iterable[msgspec.Raw], type_: type[T], by_name: Callable[[str], T]) -> list[T]:
    """Each entry of a backend's list decoded as ``type_``. One that cannot be is made ``by_name``
    from its name alone (``id`` or ``key``) when it has one, and left out otherwise: it costs only
    itself."""
    decoder = msgspec.json.Decoder(type_)
    out: list[T] = []
    for raw in raws:
        try:
            out.append(decoder.decode(raw))
        except (msgspec.DecodeError, msgspec.ValidationError):
            name = _name_of(raw)
            if name:
                out.append(by_name(name))
    return out


def _name_of(raw: msgspec.Raw) -> str | None:
    try:
        named = _NAME_DECODER.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    return named.id or named.key


# ---------------------------------------------------------------------------
# Backend-specific builders: what each backend says now, as ``ModelFacts``
# ---------------------------------------------------------------------------

_THINKING_MARKS = ("<think>", "enable_thinking", "reasoning_content")


def thinking_from_template(template: str) -> bool:
    """Whether a llama.cpp chat template can think: it opens a ``<think>`` block or reads a thinking switch."""
    return any(mark in template for mark in _THINKING_MARKS)


def thinking_from_props(template: str | None, caps: dict[str, object] | None) -> bool | None:
    """``thinking`` of a loaded llama.cpp model: from its template, or its ``reasoning_effort`` switch."""
    if template is None:
        return None
    return thinking_from_template(template) or (caps is not None and caps.get("supports_reasoning_effort") is True)


def _flag(caps: dict[str, object], key: str) -> bool:
    """One of llama-server's ``chat_template_caps``; a key it does not send counts as true, as there."""
    return caps.get(key, True) is not False


def tools_from_template_caps(caps: dict[str, object] | None) -> bool | None:
    """``tools`` from llama-server's ``chat_template_caps``: the template renders tool definitions and
    the assistant's tool calls (else a round trip loses the calls). None: the build does not say."""
    if caps is None:
        return None
    return _flag(caps, "supports_tools") and _flag(caps, "supports_tool_calls")


def vision_from_modalities(
    modalities: dict[str, bool] | None, architecture: ModelArchitecture | None
) -> bool | None:
    """``/props`` ``modalities.vision``, else an entry's ``architecture.input_modalities``; None when neither says."""
    if modalities is not None and "vision" in modalities:
        return modalities["vision"] is True
    if architecture is not None and architecture.input_modalities is not None:
        return "image" in architecture.input_modalities
    return None


_CTX_FLAGS = ("--ctx-size", "-c", "--ctx_size")
_EMBEDDING_FLAGS = ("--embedding", "--embeddings")


def context_from_args(args: list[str] | None) -> int | None:
    """The ``--ctx-size`` a llama.cpp router will start a model with, from its ``status.args``."""
    for flag, value in itertools.pairwise(args or ()):
        if flag in _CTX_FLAGS and value.isdigit():
            return within(int(value), MAX_CONTEXT)
    return None


def embeddings_from_args(args: list[str] | None) -> bool | None:
    """Whether a llama.cpp router starts a model with ``--embeddings`` (None: its command line is not given).

    ``--pooling`` alone does not count: without ``--embeddings`` llama-server still answers 501.
    """
    if args is None:
        return None
    return any(arg in _EMBEDDING_FLAGS for arg in args)


def _llamacpp_context(meta: LlamaCppMeta, props: LlamaCppProps | None) -> int | None:
    """The context a loaded model runs with (newer builds say it in ``meta``, all in ``/props``)."""
    slot = props.default_generation_settings if props else None
    candidates = (meta.n_ctx, slot.n_ctx if slot else None)
    return next((ctx for ctx in candidates if within(ctx, MAX_CONTEXT)), None)


def seen_in_llamacpp(entry: ModelEntry, props: LlamaCppProps | None, *, embeddings: bool | None = None) -> Sighting:
    """llama-server: ``/v1/models`` ``meta`` (+ router ``status``, ``architecture``) and ``/props`` when it has one.

    ``embeddings``: whether the server answers ``/v1/embeddings`` (a single server is probed); a
    router's ``status.args`` say it when this is None. ``created`` is the time of the answer, not a date.
    """
    meta = entry.meta or LlamaCppMeta()
    status = entry.status or LlamaCppStatus()
    n_params = within(meta.n_params, MAX_COUNT)
    served_for_embeddings = embeddings if embeddings is not None else embeddings_from_args(status.args)
    template = props.chat_template if props else None
    caps = props.chat_template_caps if props else None
    facts = ModelFacts(
        format="gguf",
        size=within(meta.size, MAX_COUNT),
        parameter_count=n_params,
        parameter_size=human_number(n_params) if n_params else None,
        quantization_level=quantization_from_ftype(meta.ftype or "") or None,
        context_length=_llamacpp_context(meta, props),
        configured_context_length=context_from_args(status.args),
        max_context_length=within(meta.n_ctx_train, MAX_CONTEXT),
        embedding_length=within(meta.n_embd, MAX_WIDTH),
        vocab_size=within(meta.n_vocab, MAX_WIDTH),
        # A server that cannot embed can only complete; one that can embeds, and completes unless
        # its model looks like an embedding model (llama-server says nothing about that).
        completion=True if served_for_embeddings is False else None,
        embedding=served_for_embeddings,
        tools=tools_from_template_caps(caps),
        thinking=thinking_from_props(template, caps),
        vision=vision_from_modalities(props.modalities if props else None, entry.architecture),
    )
    return Sighting(entry.id, facts, loaded=status.value == "loaded")


def seen_in_lmstudio_v1(model: LMStudioV1Model) -> Sighting:
    """LM Studio REST v1: type, capability flags (when given), quantization, size, loaded context."""
    embedding_model = model.type == "embedding"
    flags = None if embedding_model else model.capabilities
    contexts = (within(i.config.context_length, MAX_CONTEXT) for i in model.loaded_instances if i.config)
    quant = model.quantization.name if model.quantization and model.quantization.name else None
    facts = ModelFacts(
        family=model.architecture or None,
        format=model.format or None,
        size=within(model.size_bytes, MAX_COUNT),
        parameter_size=model.params_string or None,
        quantization_level=quant,
        context_length=next((ctx for ctx in contexts if ctx), None),
        max_context_length=within(model.max_context_length, MAX_CONTEXT),
        completion=not embedding_model,
        embedding=embedding_model,
        tools=False if embedding_model else flags.trained_for_tool_use if flags else None,
        vision=False if embedding_model else flags.vision if flags else None,
        thinking=False if embedding_model else flags.reasoning is not None if flags else None,
    )
    return Sighting(model.key, facts, loaded=bool(model.loaded_instances))


def seen_in_lmstudio_v0(model: LMStudioV0Model) -> Sighting:
    """LM Studio REST v0: type (``llm``/``vlm``/``embeddings``), ``tool_use``, loaded context."""
    embedding_model = model.type == "embeddings"
    facts = ModelFacts(
        family=model.arch or None,
        format=model.compatibility_type or None,
        quantization_level=(model.quantization or "").upper() or None,
        context_length=within(model.loaded_context_length, MAX_CONTEXT) if model.state == "loaded" else None,
        max_context_length=within(model.max_context_length, MAX_CONTEXT),
        completion=not embedding_model,
        embedding=embedding_model,
        tools=not embedding_model and "tool_use" in (model.capabilities or []),
        vision=model.type == "vlm",
        thinking=False if embedding_model else None,
    )
    return Sighting(model.id, facts, loaded=model.state == "loaded")


def seen_in_openai_entry(entry: ModelEntry, *, loaded: bool, created_is_real: bool = True) -> Sighting:
    """vLLM (``max_model_len``), OpenRouter (``context_length``, ``architecture``), OpenAI and anything else.

    ``created_is_real``: false where ``created`` is the time of the answer (vLLM, llama.cpp).
    """
    ctx = within(entry.max_model_len, MAX_CONTEXT) or within(entry.context_length, MAX_CONTEXT)
    created = within(entry.created, _MAX_CREATED_S) if created_is_real else None
    facts = ModelFacts(
        max_context_length=ctx,
        vision=vision_from_modalities(None, entry.architecture),
        created_ns=created * 1_000_000_000 if created else None,
    )
    return Sighting(entry.id, facts, loaded=loaded)


# ---------------------------------------------------------------------------
# Facts remembered and settled -> the record clients are shown
# ---------------------------------------------------------------------------


def _said(facts: ModelFacts) -> dict[str, Any]:
    """The facts that are said (not None), by field name, without the first-seen stamp."""
    said = {f.name: value for f in fields(ModelFacts) if (value := getattr(facts, f.name)) is not None}
    said.pop("first_seen_ns", None)
    return said


def settle(remembered: ModelFacts | None, seen: ModelFacts, now_ns: int) -> ModelFacts:
    """What is known of a model after a look at it: what the backend says now, else what it said before.

    A model seen for the first time is stamped ``first_seen_ns = now_ns``; that stamp never changes.
    """
    base = remembered or ModelFacts(first_seen_ns=now_ns)
    settled = replace(base, **_said(seen))
    return settled if settled.first_seen_ns is not None else replace(settled, first_seen_ns=now_ns)


def over(known: ModelFacts, fallback: ModelFacts | None) -> ModelFacts:
    """``known`` (the backend's word, now or remembered), with what it leaves unsaid taken from
    ``fallback`` (what the model's file says, read by the shim). Never remembered: a file replaced
    is read anew, and its facts never outlive it."""
    if fallback is None:
        return known
    return replace(fallback, **_said(known), first_seen_ns=known.first_seen_ns)


def capabilities_from(upstream_id: str, facts: ModelFacts) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(capabilities, denied): each as the backend said, else as the id suggests; denied are those the
    backend said the model lacks."""
    guessed = infer_capabilities(upstream_id)
    caps: set[str] = set()
    denied: set[str] = set()
    for cap in _CAPABILITY_ORDER:
        said = facts.said(cap)
        if said is False:
            denied.add(cap)
        if said or (said is None and cap in guessed):
            caps.add(cap)
    return ordered(caps), ordered(denied)


def record_of(sighting: Sighting, facts: ModelFacts | None = None) -> ModelRecord:
    """The record clients are shown: ``facts`` (by default the sighting's own) over what the id suggests."""
    upstream_id = sighting.upstream_id
    known = facts if facts is not None else sighting.facts
    caps, denied = capabilities_from(upstream_id, known)
    n_params = known.parameter_count
    return ModelRecord(
        upstream_id=upstream_id,
        name=ollama_name(upstream_id),
        family=known.family or infer_family(upstream_id),
        parameter_size=known.parameter_size or (human_number(n_params) if n_params else "")
        or infer_parameter_size(upstream_id),
        parameter_count=n_params,
        quantization_level=known.quantization_level or infer_quantization(upstream_id),
        format=known.format or "",
        size=known.size or 0,
        context_length=known.context_length or known.configured_context_length or known.max_context_length,
        max_context_length=known.max_context_length,
        embedding_length=known.embedding_length,
        vocab_size=known.vocab_size,
        capabilities=caps,
        denied=denied,
        loaded=sighting.loaded,
        modified_ns=known.created_ns or known.first_seen_ns or 0,
    )


def _record(sighting: Sighting, first_seen_ns: int) -> ModelRecord:
    return record_of(sighting, over(settle(None, sighting.facts, first_seen_ns), sighting.file_facts))


def record_from_llamacpp(
    entry: ModelEntry, props: LlamaCppProps | None, first_seen_ns: int, *, embeddings: bool | None = None
) -> ModelRecord:
    """A llama.cpp model as seen once, with nothing remembered (the registry also remembers)."""
    return _record(seen_in_llamacpp(entry, props, embeddings=embeddings), first_seen_ns)


def record_from_lmstudio_v1(model: LMStudioV1Model, first_seen_ns: int) -> ModelRecord:
    return _record(seen_in_lmstudio_v1(model), first_seen_ns)


def record_from_lmstudio_v0(model: LMStudioV0Model, first_seen_ns: int) -> ModelRecord:
    return _record(seen_in_lmstudio_v0(model), first_seen_ns)


def record_from_openai_entry(
    entry: ModelEntry, first_seen_ns: int, *, loaded: bool, created_is_real: bool = True
) -> ModelRecord:
    return _record(seen_in_openai_entry(entry, loaded=loaded, created_is_real=created_is_real), first_seen_ns)


# ---------------------------------------------------------------------------
# Records -> Ollama entries
# ---------------------------------------------------------------------------


def digest_of(record: ModelRecord, backend_root: str) -> str:
    """A stable 64-hex digest: the same model on the same backend always gets the same one."""
    return hashlib.sha256(f"{backend_root}\0{record.upstream_id}\0{record.size}".encode()).hexdigest()


def details_of(record: ModelRecord) -> ow.ModelDetails:
    return ow.ModelDetails(
        parent_model="",
        format=record.format,
        family=record.family,
        families=[record.family] if record.family else [],
        parameter_size=record.parameter_size,
        quantization_level=record.quantization_level,
    )


def to_tags_model(record: ModelRecord, backend_root: str) -> ow.TagsModel:
    return ow.TagsModel(
        name=record.name,
        model=record.name,
        modified_at=local_timestamp(record.modified_ns),
        size=record.size,
        digest=digest_of(record, backend_root),
        details=details_of(record),
        capabilities=list(record.capabilities),
    )


def to_ps_model(record: ModelRecord, backend_root: str, now_ns: int, *, expires_ns: int | None = None) -> ow.PsModel:
    """``expires_ns``: when the model is unloaded if idle; None where that is not known (shown far ahead)."""
    return ow.PsModel(
        name=record.name,
        model=record.name,
        size=record.size,
        digest=digest_of(record, backend_root),
        details=details_of(record),
        expires_at=local_timestamp(now_ns + _FOREVER_NS if expires_ns is None else expires_ns),
        size_vram=0,  # not reported by OpenAI-compatible backends
        context_length=record.context_length or 0,
    )


def model_info_of(record: ModelRecord, basename: str | None = None) -> dict[str, object]:
    arch = record.family or "unknown"
    info: dict[str, object] = {"general.architecture": arch, "general.basename": basename or record.name}
    if record.parameter_count:
        info["general.parameter_count"] = record.parameter_count
    if record.parameter_size:
        info["general.size_label"] = record.parameter_size
    if record.context_length or record.max_context_length:
        info[f"{arch}.context_length"] = record.context_length or record.max_context_length
    if record.embedding_length:
        info[f"{arch}.embedding_length"] = record.embedding_length
    if record.vocab_size:
        info[f"{arch}.vocab_size"] = record.vocab_size
    return info


def _parameters_text(record: ModelRecord) -> str:
    lines = []
    if record.context_length:
        lines.append(f"{'num_ctx':<30} {record.context_length}")
    return "\n".join(lines)


def _template_of(record: ModelRecord) -> str:
    """A Go-template stand-in that tells clients what the backend's own template supports (LiteLLM
    looks for "tools", Continue for ".Suffix"): built from the capabilities alone, so it changes only
    when they do."""
    parts = ["{{ if .System }}{{ .System }}\n{{ end }}"]
    if TOOLS in record.capabilities:
        parts.append("{{ if .Tools }}{{ .Tools }}\n{{ end }}")
    parts.append("{{ .Prompt }}")
    if INSERT in record.capabilities:
        parts.append("{{ if .Suffix }}{{ .Suffix }}{{ end }}")
    return "".join(parts)


def to_show_response(record: ModelRecord, *, basename: str | None = None) -> ow.ShowResponse:
    return ow.ShowResponse(
        modelfile=f'# Modelfile generated by "ollama show"\nFROM {record.name}\n',
        parameters=_parameters_text(record),
        template=_template_of(record),
        details=details_of(record),
        model_info=model_info_of(record, basename),
        capabilities=list(record.capabilities),
        modified_at=local_timestamp(record.modified_ns),
    )
