"""What each kind of backend accepts: one frozen ``Dialect`` per backend kind.

The request translator asks the dialect, never the backend's name, how to spell a parameter or
whether to send it at all. Facts come from ``shared/reference/backends.md`` section 5.
``Kind`` names every kind; ``DIALECTS`` holds one dialect per kind, and everything else keyed by
kind (``settings.BACKEND_KINDS``, the catalog and load behaviour in ``backends``) derives from it.
``detect_kind`` picks a kind from what a backend answered to the catalog's probes.

May import: stdlib only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

Kind = Literal["llamacpp", "lmstudio", "vllm", "openai", "openrouter", "generic"]
ThinkStyle = Literal["chat_template_kwargs", "reasoning_effort", "openrouter_reasoning", "none"]
JsonMode = Literal["json_object", "json_schema_object"]


@dataclass(frozen=True)
class Dialect:
    kind: Kind
    # Ollama option keys (already renamed to the OpenAI spelling) this backend accepts.
    sampling_keys: frozenset[str]
    max_tokens_field: Literal["max_tokens", "max_completion_tokens"] = "max_tokens"
    # How Ollama's repeat_penalty is spelled here, or None when it would be rejected.
    repeat_penalty_field: Literal["repeat_penalty", "repetition_penalty"] | None = None
    json_mode: JsonMode = "json_object"
    think_style: ThinkStyle = "none"
    # LM Studio's per-request idle TTL (seconds) for a model loaded on demand.
    sends_ttl: bool = False
    # Whether `stream_options.include_usage` may be sent on a streamed request.
    stream_usage: bool = True
    # Ask for a stream even when the client wants one object, and assemble it: llama.cpp notices a
    # client that went away only while writing a stream, and would generate to the end for nobody.
    stream_upstream: bool = False
    # Whether a `role: tool` message may carry the tool's `name` (OpenAI documents only
    # `tool_call_id` there; llama.cpp templates and Ollama's own adapter use `name`).
    sends_tool_name: bool = True
    # OpenAI's strict mode demands additionalProperties:false and every property required, which
    # a client's schema rarely has; elsewhere strict is harmless or ignored.
    strict_json_schema: bool = True
    # Whether every model ``/v1/models`` lists is loaded and served now (vLLM serves what it lists).
    lists_loaded_models: bool = False
    # The client APIs this backend speaks itself ("messages": Anthropic, "responses": OpenAI
    # Responses): such requests are forwarded as they are, with only the model name mapped.
    native_apis: frozenset[str] = frozenset()
    # A final assistant message (a "Continue"): the backend continues it but repeats it at the start
    # of its answer (llama.cpp), needs vLLM's `continue_final_message` flags, or decides itself.
    prefill: Literal["echoes_prefix", "continue_flag", "none"] = "none"
    # Whether an assistant message may carry its thinking back as `reasoning_content`: llama.cpp
    # hands it to the chat template, as Ollama hands a message's `thinking` to its own (Qwen3's and
    # gpt-oss's templates keep it within a tool-calling turn). Elsewhere it is left out.
    sends_reasoning: bool = False


_STANDARD = frozenset({"temperature", "top_p", "seed", "stop", "presence_penalty", "frequency_penalty"})

LLAMACPP = Dialect(
    kind="llamacpp",
    sampling_keys=_STANDARD
    | {"top_k", "min_p", "typical_p", "repeat_last_n", "n_keep", "mirostat", "mirostat_tau", "mirostat_eta"},
    repeat_penalty_field="repeat_penalty",
    json_mode="json_object",
    think_style="chat_template_kwargs",
    stream_upstream=True,
    # llama-server answers /v1/responses too, but its stream leaves out `content_index` on text
    # deltas and the openai SDK's stream reader fails on it: that API is translated instead.
    native_apis=frozenset({"messages"}),
    prefill="echoes_prefix",
    sends_reasoning=True,
)
LMSTUDIO = Dialect(
    kind="lmstudio",
    sampling_keys=_STANDARD | {"top_k", "min_p"},
    repeat_penalty_field="repeat_penalty",
    json_mode="json_schema_object",  # LM Studio rejects json_object with a 400
    think_style="reasoning_effort",
    sends_ttl=True,
    stream_upstream=True,  # its GGUF engine is llama.cpp
)
VLLM = Dialect(
    kind="vllm",
    sampling_keys=_STANDARD | {"top_k", "min_p"},
    max_tokens_field="max_completion_tokens",
    repeat_penalty_field="repetition_penalty",
    think_style="chat_template_kwargs",
    lists_loaded_models=True,
    prefill="continue_flag",
)
OPENAI = Dialect(
    kind="openai",
    sampling_keys=_STANDARD,
    max_tokens_field="max_completion_tokens",
    think_style="reasoning_effort",
    sends_tool_name=False,
    strict_json_schema=False,
)
OPENROUTER = Dialect(
    kind="openrouter",
    sampling_keys=_STANDARD | {"top_k", "min_p"},
    repeat_penalty_field="repetition_penalty",
    think_style="openrouter_reasoning",
    strict_json_schema=False,
)
# An unknown OpenAI-compatible server: send only what every such server accepts.
GENERIC = Dialect(kind="generic", sampling_keys=_STANDARD | {"top_k"}, think_style="none")

DIALECTS: dict[Kind, Dialect] = {d.kind: d for d in (LLAMACPP, LMSTUDIO, VLLM, OPENAI, OPENROUTER, GENERIC)}
KINDS: tuple[Kind, ...] = get_args(Kind)
_KIND_BY_NAME: dict[str, Kind] = {kind: kind for kind in KINDS}


def kind_named(name: str) -> Kind | None:
    """The kind a configured name spells (``auto`` and anything unknown: None)."""
    return _KIND_BY_NAME.get(name)


def detect_kind(url: str, *, has_props: bool, has_lmstudio_rest: bool, owned_by: set[str]) -> Kind:
    """Choose a backend kind from its URL and what it answered to the catalog's probes."""
    if has_props or "llamacpp" in owned_by:
        return "llamacpp"
    if has_lmstudio_rest:
        return "lmstudio"
    if "vllm" in owned_by:
        return "vllm"
    if "api.openai.com" in url:
        return "openai"
    if "openrouter.ai" in url:
        return "openrouter"
    return "generic"
