"""Embeddings both ways: Ollama ``/api/embed`` input checks, and OpenAI ``/v1/embeddings`` answers
turned into Ollama's ``/api/embed`` (L2-normalised ``embeddings``) and legacy ``/api/embeddings``
(one raw ``embedding``) replies.

May import: stdlib, msgspec, ``ollama_shim.wire``, ``ollama_shim.errors``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from ollama_shim.errors import BadRequest, UpstreamProtocol
from ollama_shim.wire import ollama
from ollama_shim.wire import openai as oai

__all__ = [
    "checked_dimensions",
    "embed_input_texts",
    "embed_response_to_ollama",
    "embeddings_response_to_ollama",
    "l2_normalised",
]


def embed_input_texts(value: str | Sequence[object] | None) -> list[str]:
    """The texts of an ``/api/embed`` ``input``: a string or a list of strings.

    An empty result (missing input, ``""`` or ``[]``) means "load the model only"; the caller
    answers ``{"model": .., "embeddings": []}`` without calling the backend.
    """
    if value is None:
        return []
    if isinstance(value, str):
        return [value] if value else []
    texts = [item for item in value if isinstance(item, str)] if isinstance(value, list) else None
    if texts is not None and len(texts) == len(value):
        return texts
    raise BadRequest("invalid input type")


def checked_dimensions(dimensions: int | None) -> int | None:
    """``dimensions`` as a cut-off length, None for "keep every dimension"."""
    if dimensions is None or dimensions == 0:
        return None
    if dimensions < 0:
        raise BadRequest("dimensions must be a positive integer")
    return dimensions


def l2_normalised(vector: Sequence[float]) -> list[float]:
    """``vector`` scaled to unit length; an all-zero vector stays all zeros (as in Ollama)."""
    norm = math.sqrt(math.fsum(x * x for x in vector))
    if norm == 0.0:
        return [0.0 for _ in vector]
    return [x / norm for x in vector]


def embed_response_to_ollama(
    response: oai.EmbeddingsResponse, *, model: str, input_count: int, dimensions: int | None = None
) -> ollama.EmbedResponse:
    """``/api/embed`` reply: one normalised vector per input, in input order; ``dimensions``
    keeps the first N values and normalises again. Durations are for the caller to fill in."""
    cut_off = checked_dimensions(dimensions)
    vectors = [
        l2_normalised(vector[:cut_off] if cut_off else vector)
        for vector in _vectors_in_input_order(response, input_count)
    ]
    prompt_tokens = response.usage.prompt_tokens if response.usage else None
    return ollama.EmbedResponse(model=model, embeddings=vectors, prompt_eval_count=prompt_tokens)


def embeddings_response_to_ollama(response: oai.EmbeddingsResponse) -> ollama.EmbeddingsResponse:
    """Legacy ``/api/embeddings`` reply: the single vector as the backend gave it (not normalised)."""
    return ollama.EmbeddingsResponse(embedding=_vectors_in_input_order(response, 1)[0])


def _vectors_in_input_order(response: oai.EmbeddingsResponse, input_count: int) -> list[list[float]]:
    if len(response.data) != input_count:
        raise UpstreamProtocol(f"backend returned {len(response.data)} embeddings for {input_count} inputs")
    indexes = sorted(item.index for item in response.data)
    if indexes == list(range(input_count)):
        return [item.embedding for item in sorted(response.data, key=lambda item: item.index)]
    # Indexes missing (all decoded as 0) or nonsense: trust the order they came in.
    return [item.embedding for item in response.data]
