"""Backend model metadata -> ``ModelRecord`` -> Ollama's /api/tags, /api/show and /api/ps entries.

A ``ModelRecord`` is what the shim knows about one upstream model, whatever backend it came
from (the registry keeps which one). ``decode_each`` reads a backend's list entry by entry, so
one malformed entry costs only itself; values outside sane bounds (a ``created`` in the year
30 million, a negative size) are dropped for that entry. The ``record_from_*`` functions take
each backend's native metadata (llama.cpp ``/v1/models`` ``meta`` + ``/props``, llama.cpp router
``status``, LM Studio REST v0/v1, vLLM, OpenRouter) and fall back to careful inference from the
id (family, parameter size, quantization) only for what the backend does not say.

May import: stdlib, msgspec, ``ollama_shim.wire``, ``ollama_shim.translate.names``, ``ollama_shim.timefmt``.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import TypeVar

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
    loaded: bool = False
    modified_ns: int = 0
    template: str | None = None


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


def quantization_from_ftype(ftype: str) -> str:
    """llama.cpp's file type name as Ollama prints it: ``Q4_K - Medium`` -> ``Q4_K_M``."""
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
    """What the id alone tells; the backend-specific builders refine it."""
    return ModelRecord(
        upstream_id=upstream_id,
        name=ollama_name(upstream_id),
        family=infer_family(upstream_id),
        parameter_size=infer_parameter_size(upstream_id),
        quantization_level=infer_quantization(upstream_id),
        capabilities=infer_capabilities(upstream_id),
        modified_ns=modified_ns,
    )


# ---------------------------------------------------------------------------
# Reading a backend's list: entry by entry, values within bounds
# ---------------------------------------------------------------------------

T = TypeVar("T")

# A value outside these bounds is a backend's mistake: it is dropped for that entry (what the id
# tells, or nothing, stands in) rather than passed on to clients that would choke on it.
_MAX_CREATED_S = 7_258_118_400  # 2200-01-01: a timestamp every client can still show
_MAX_COUNT = 1 << 53  # bytes, parameters: beyond what a JSON number holds exactly
_MAX_CONTEXT = 1 << 26  # tokens (67 M): far beyond any model's window
_MAX_WIDTH = 1 << 24  # embedding length, vocabulary size
_NAME_DECODER = msgspec.json.Decoder(AnyModelName)


def within(value: int | None, limit: int) -> int | None:
    """``value`` when it is a positive number no larger than ``limit``, else None."""
    return value if value is not None and 0 < value <= limit else None


def modified_ns_of(created: int | None, fallback_ns: int) -> int:
    """A backend's ``created`` (seconds) in nanoseconds, or ``fallback_ns`` when absent or absurd."""
    seconds = within(created, _MAX_CREATED_S)
    return seconds * 1_000_000_000 if seconds else fallback_ns


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
# Backend-specific builders
# ---------------------------------------------------------------------------


def template_capabilities(template: str, vision: bool) -> tuple[str, ...]:
    """Capabilities of a llama.cpp model from its chat template (thinking) and /props (vision).

    Tools are always there: llama-server's Jinja path falls back to a generic tool-call format
    for templates that have no tool syntax of their own.
    """
    caps = {COMPLETION, TOOLS}
    if "<think>" in template or "enable_thinking" in template or "reasoning_content" in template:
        caps.add(THINKING)
    if vision:
        caps.add(VISION)
    return ordered(caps)


_CTX_FLAGS = ("--ctx-size", "-c", "--ctx_size")


def context_from_args(args: list[str] | None) -> int | None:
    """The ``--ctx-size`` a llama.cpp router will start a model with, from its ``status.args``."""
    for flag, value in itertools.pairwise(args or ()):
        if flag in _CTX_FLAGS and value.isdigit():
            return within(int(value), _MAX_CONTEXT)
    return None


def _llamacpp_context(meta: LlamaCppMeta, props: LlamaCppProps | None, status: LlamaCppStatus) -> int | None:
    """What a request may use now: the slot's context, else what a router will start the model with."""
    slot = props.default_generation_settings if props else None
    candidates = (meta.n_ctx, slot.n_ctx if slot else None, context_from_args(status.args), meta.n_ctx_train)
    return next((ctx for ctx in candidates if within(ctx, _MAX_CONTEXT)), None)


def _llamacpp_capabilities(inferred: tuple[str, ...], props: LlamaCppProps | None, embeddings: bool) -> tuple[str, ...]:
    caps = set(inferred)
    if props and props.chat_template:  # the template knows better than the id, except about infill
        vision = bool(props.modalities and props.modalities.get("vision"))
        caps = {*template_capabilities(props.chat_template, vision), *(caps & {INSERT})}
    if embeddings:
        caps.add(EMBEDDING)
    return ordered(caps)


def record_from_llamacpp(
    entry: ModelEntry, props: LlamaCppProps | None, modified_ns: int, *, embeddings: bool = False
) -> ModelRecord:
    """llama-server: ``/v1/models`` ``meta`` (+ router ``status``) and ``/props`` when it has one."""
    rec = base_record(entry.id, modified_ns_of(entry.created, modified_ns))
    meta = entry.meta or LlamaCppMeta()
    status = entry.status or LlamaCppStatus()
    n_params = within(meta.n_params, _MAX_COUNT)
    return replace(
        rec,
        format="gguf",
        size=within(meta.size, _MAX_COUNT) or 0,
        parameter_count=n_params,
        parameter_size=human_number(n_params) if n_params else rec.parameter_size,
        quantization_level=quantization_from_ftype(meta.ftype or "") or rec.quantization_level,
        context_length=_llamacpp_context(meta, props, status),
        max_context_length=within(meta.n_ctx_train, _MAX_CONTEXT),
        embedding_length=within(meta.n_embd, _MAX_WIDTH),
        vocab_size=within(meta.n_vocab, _MAX_WIDTH),
        capabilities=_llamacpp_capabilities(rec.capabilities, props, embeddings),
        loaded=status.value == "loaded",
        template=props.chat_template if props else None,
    )


def record_from_lmstudio_v1(model: LMStudioV1Model, modified_ns: int) -> ModelRecord:
    rec = base_record(model.key, modified_ns)
    caps = {EMBEDDING} if model.type == "embedding" else {COMPLETION}
    flags = model.capabilities
    if flags and model.type != "embedding":
        caps |= {TOOLS} if flags.trained_for_tool_use else set()
        caps |= {VISION} if flags.vision else set()
        caps |= {THINKING} if flags.reasoning is not None else set()
    contexts = (within(i.config.context_length, _MAX_CONTEXT) for i in model.loaded_instances if i.config)
    loaded_ctx = next((ctx for ctx in contexts if ctx), None)
    max_ctx = within(model.max_context_length, _MAX_CONTEXT)
    quant = model.quantization.name if model.quantization and model.quantization.name else ""
    return replace(
        rec,
        family=model.architecture or rec.family,
        format=model.format or "",
        size=within(model.size_bytes, _MAX_COUNT) or 0,
        parameter_size=model.params_string or rec.parameter_size,
        quantization_level=quant or rec.quantization_level,
        context_length=loaded_ctx or max_ctx,
        max_context_length=max_ctx,
        capabilities=ordered(caps),
        loaded=bool(model.loaded_instances),
    )


def record_from_lmstudio_v0(model: LMStudioV0Model, modified_ns: int) -> ModelRecord:
    rec = base_record(model.id, modified_ns)
    if model.type == "embeddings":
        caps = {EMBEDDING}
    else:
        caps = {COMPLETION}
        caps |= {TOOLS} if "tool_use" in (model.capabilities or []) else set()
        caps |= {VISION} if model.type == "vlm" else set()
        caps |= {THINKING} if THINKING in rec.capabilities else set()
    max_ctx = within(model.max_context_length, _MAX_CONTEXT)
    return replace(
        rec,
        family=model.arch or rec.family,
        format=model.compatibility_type or "",
        quantization_level=(model.quantization or "").upper() or rec.quantization_level,
        context_length=within(model.loaded_context_length, _MAX_CONTEXT) or max_ctx,
        max_context_length=max_ctx,
        capabilities=ordered(caps),
        loaded=model.state == "loaded",
    )


def record_from_openai_entry(entry: ModelEntry, modified_ns: int, *, loaded: bool) -> ModelRecord:
    """vLLM (``max_model_len``), OpenRouter (``context_length``), OpenAI and anything else."""
    rec = base_record(entry.id, modified_ns_of(entry.created, modified_ns))
    ctx = within(entry.max_model_len, _MAX_CONTEXT) or within(entry.context_length, _MAX_CONTEXT)
    return replace(rec, context_length=ctx, max_context_length=ctx, loaded=loaded)


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


def to_ps_model(record: ModelRecord, backend_root: str, now_ns: int) -> ow.PsModel:
    return ow.PsModel(
        name=record.name,
        model=record.name,
        size=record.size,
        digest=digest_of(record, backend_root),
        details=details_of(record),
        expires_at=local_timestamp(now_ns + _FOREVER_NS),
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
    if record.template:
        return record.template
    # A Go-template stand-in that tells clients what the backend's own template supports
    # (LiteLLM looks for "tools", Continue for ".Suffix").
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
