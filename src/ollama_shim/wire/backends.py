"""Native metadata shapes of particular backends, read to fill the model catalog.

llama.cpp's ``/props`` and router ``/models``; LM Studio's REST ``/api/v0/models`` and
``/api/v1/models``. Decoded leniently: every field optional, unknown fields ignored.

May import: msgspec, stdlib.
"""

from __future__ import annotations

from typing import Any

import msgspec


class LlamaCppGenerationSettings(msgspec.Struct):
    n_ctx: int | None = None


class LlamaCppProps(msgspec.Struct):
    default_generation_settings: LlamaCppGenerationSettings | None = None
    total_slots: int | None = None
    model_path: str | None = None
    chat_template: str | None = None
    modalities: dict[str, bool] | None = None
    build_info: str | None = None
    role: str | None = None  # "router" in router mode


class LMStudioV0Model(msgspec.Struct):
    id: str
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
    data: list[LMStudioV0Model] = msgspec.field(default_factory=list)


class LMStudioQuantization(msgspec.Struct):
    name: str | None = None
    bits_per_weight: float | None = None


class LMStudioInstanceConfig(msgspec.Struct):
    context_length: int | None = None


class LMStudioInstance(msgspec.Struct):
    id: str
    config: LMStudioInstanceConfig | None = None


class LMStudioCapabilities(msgspec.Struct):
    vision: bool = False
    trained_for_tool_use: bool = False
    reasoning: dict[str, Any] | None = None


class LMStudioV1Model(msgspec.Struct):
    key: str
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
    models: list[LMStudioV1Model] = msgspec.field(default_factory=list)


class ModelLoadRequest(msgspec.Struct):
    """llama.cpp router ``/models/load|unload`` and LM Studio ``/api/v1/models/load``."""

    model: str


class LMStudioUnloadRequest(msgspec.Struct):
    instance_id: str
