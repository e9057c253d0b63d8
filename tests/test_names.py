"""Upstream ids -> Ollama names, and which requested strings find them."""

from __future__ import annotations

import pytest

from ollama_shim.translate.names import ollama_name, request_keys, split_tag


@pytest.mark.parametrize(
    ("upstream_id", "name"),
    [
        ("SmolLM2-135M-Instruct.Q4_1", "SmolLM2-135M-Instruct.Q4_1:latest"),
        ("lmstudio-community/Qwen2.5-7B-Instruct-GGUF", "lmstudio-community/Qwen2.5-7B-Instruct-GGUF:latest"),
        ("qwen/qwen3-8b", "qwen/qwen3-8b:latest"),
        ("google/gemma-3-12b@q4_k_m", "google/gemma-3-12b:q4_k_m"),
        ("meta-llama/llama-3-8b-instruct:free", "meta-llama/llama-3-8b-instruct:free"),
        ("/models/gemma-3-270m-q4_k_m.gguf", "gemma-3-270m-q4_k_m:latest"),
        ("gemma-3-270m-q4_k_m.gguf", "gemma-3-270m-q4_k_m:latest"),
        ("C:\\models\\phi-3.gguf", "phi-3:latest"),
        ("gpt-4o", "gpt-4o:latest"),
        ("my model (v2)", "my-model-v2-:latest"),
        ("a/b/c/d", "a/b/c-d:latest"),
        (".hidden", "hidden:latest"),
    ],
)
def test_ollama_name(upstream_id: str, name: str) -> None:
    assert ollama_name(upstream_id) == name


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("llama3", ("llama3", None)),
        ("llama3:8b", ("llama3", "8b")),
        ("host:5000/ns/m", ("host:5000/ns/m", None)),
        ("host:5000/ns/m:q4", ("host:5000/ns/m", "q4")),
    ],
)
def test_split_tag(name: str, expected: tuple[str, str | None]) -> None:
    assert split_tag(name) == expected


@pytest.mark.parametrize(
    ("requested", "must_include"),
    [
        ("SmolLM2-135M-Instruct.Q4_1", "smollm2-135m-instruct.q4_1:latest"),
        ("smollm2-135m-instruct.q4_1:latest", "smollm2-135m-instruct.q4_1"),
        ("library/llama3", "llama3:latest"),
        ("registry.ollama.ai/library/llama3:latest", "llama3:latest"),
        ("qwen/qwen3-8b:latest", "qwen/qwen3-8b"),
        ("  Gemma:Q4  ", "gemma:q4"),
    ],
)
def test_request_keys(requested: str, must_include: str) -> None:
    assert must_include in request_keys(requested)


def test_a_non_default_tag_does_not_match_the_bare_id() -> None:
    assert "gemma" not in request_keys("gemma:q4")
