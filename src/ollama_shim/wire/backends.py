"""Native metadata shapes of particular backends, read to fill the model catalog.

llama.cpp's ``/props``, the ``meta`` and router ``status`` of its ``/v1/models`` entries; LM
Studio's REST ``/api/v0/models`` and ``/api/v1/models``. Decoded leniently: every field
optional, unknown fields ignored. The lists keep their entries undecoded (``msgspec.Raw``) so
that each entry is decoded on its own and one malformed entry costs only itself.

May import: msgspec, stdlib.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

NonEmpty = Annotated[str, msgspec.Meta(min_length=1)]


class LlamaCppMeta(msgspec.Struct):
    """``meta`` of a llama-server ``/v1/models`` entry (null while a model loads)."""

    n_params: int | None = None
    size: int | None = None  # bytes of the model file
    n_ctx_train: int | None = None
    n_ctx: int | None = None  # the slot context, newer builds
    n_embd: int | None = None
    n_vocab: int | None = None
    ftype: str | None = None  # "Q4_K - Medium", newer builds


class LlamaCppStatus(msgspec.Struct):
    """``status`` of an entry of a llama.cpp router's ``/v1/models``."""

    value: str = "loaded"  # "unloaded" | "loading" | "loaded" | "sleeping" | "downloading"
    failed: bool = False
    exit_code: int | None = None
    args: list[str] | None = None  # the command line the router starts the model with


class ModelListEntries(msgspec.Struct):
    """``GET /v1/models`` with each entry left undecoded, to be decoded one at a time."""

    data: list[msgspec.Raw] = msgspec.field(default_factory=list)


class AnyModelName(msgspec.Struct):
    """What identifies a model entry in any backend's list, read when the rest of it cannot be."""

    id: str | None = None
    key: str | None = None


class ModelArchitecture(msgspec.Struct):
    """``architecture`` of a ``/v1/models`` entry (llama.cpp, OpenRouter): what goes in and out."""

    input_modalities: list[str] | None = None  # "text", "image", "audio", ...
    output_modalities: list[str] | None = None


class LlamaCppGenerationSettings(msgspec.Struct):
    n_ctx: int | None = None


class LlamaCppProps(msgspec.Struct):
    default_generation_settings: LlamaCppGenerationSettings | None = None
    total_slots: int | None = None
    model_path: str | None = None
    chat_template: str | None = None
    # What llama-server found by test-rendering the template: supports_tools, supports_tool_calls, ...
    # Values are read only when they are booleans (older builds report other keys and shapes).
    chat_template_caps: dict[str, object] | None = None
    modalities: dict[str, bool] | None = None
    build_info: str | None = None
    role: str | None = None  # "router" in router mode


class LMStudioV0Model(msgspec.Struct):
    id: NonEmpty
    type: str | None = None  # "llm" | "vlm" | "embeddings"
    publisher: str | None = None
    arch: str | None = None
    compatibility_type: str | None = None  # "gguf" | "mlx"
    quantization: str | None = None
    state: str | None = None  # "loaded" | "not-loaded"
    max_context_length: int | None = None
    loaded_context_length: int | None = None
    capabilities: list[str] | None = None


class LMStudioV0ModelList(msgspec.Struct):
    data: list[msgspec.Raw] = msgspec.field(default_factory=list)  # LMStudioV0Model each


class LMStudioQuantization(msgspec.Struct):
    name: str | None = None
    bits_per_weight: float | None = None


class LMStudioInstanceConfig(msgspec.Struct):
    context_length: int | None = None


class LMStudioInstance(msgspec.Struct):
    id: str
    config: LMStudioInstanceConfig | None = None


class LMStudioReasoning(msgspec.Struct):
    allowed_options: list[str] | None = None
    default: str | None = None


class LMStudioCapabilities(msgspec.Struct):
    vision: bool = False
    trained_for_tool_use: bool = False
    reasoning: LMStudioReasoning | None = None  # present on models that can think


class LMStudioV1Model(msgspec.Struct):
    key: NonEmpty
    type: str | None = None  # "llm" | "embedding"
    publisher: str | None = None
    display_name: str | None = None
    architecture: str | None = None
    quantization: LMStudioQuantization | None = None
    size_bytes: int | None = None
    params_string: str | None = None
    loaded_instances: list[LMStudioInstance] = msgspec.field(default_factory=list)
    max_context_length: int | None = None
    format: str | None = None
    capabilities: LMStudioCapabilities | None = None


class LMStudioV1ModelList(msgspec.Struct):
    models: list[msgspec.Raw] = msgspec.field(default_factory=list)  # LMStudioV1Model each


class ModelLoadRequest(msgspec.Struct):
    """llama.cpp router ``/models/load|unload`` and LM Studio ``/api/v1/models/load``."""

    model: str


class LMStudioUnloadRequest(msgspec.Struct):
    instance_id: str


class LMStudioDownloadRequest(msgspec.Struct, omit_defaults=True):
    """LM Studio ``POST /api/v1/models/download``: a catalog id or an exact Hugging Face URL."""

    model: str
    quantization: str | None = None  # Hugging Face links only


class LMStudioDownloadJob(msgspec.Struct):
    """LM Studio's answer to a download, and its ``/api/v1/models/download/status/:job_id``."""

    status: str = ""  # "downloading" | "paused" | "completed" | "failed" | "already_downloaded"
    job_id: str | None = None  # absent for "already_downloaded"
    total_size_bytes: int | None = None
    downloaded_bytes: int | None = None


class LMStudioLoadRequest(msgspec.Struct, omit_defaults=True):
    """LM Studio ``POST /api/v1/models/load`` at a context length."""

    model: str
    context_length: int | None = None
