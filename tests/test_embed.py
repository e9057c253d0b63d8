"""OpenAI embeddings answers -> Ollama /api/embed and /api/embeddings replies, and input checks."""

from __future__ import annotations

import math
from typing import Any

import msgspec
import pytest

from ollama_shim.errors import BadRequest, UpstreamProtocol
from ollama_shim.translate.embed import (
    embed_input_texts,
    embed_response_to_ollama,
    embeddings_response_to_ollama,
    l2_normalised,
)
from ollama_shim.wire import openai as oai


def upstream(body: dict[str, Any]) -> oai.EmbeddingsResponse:
    return msgspec.json.decode(msgspec.json.encode(body), type=oai.EmbeddingsResponse)


def item(vector: list[float], index: int) -> dict[str, Any]:
    return {"object": "embedding", "embedding": vector, "index": index}


@pytest.mark.parametrize(
    ("vector", "unit"),
    [
        ([3.0, 4.0], [0.6, 0.8]),
        ([0.0, 0.0, 0.0], [0.0, 0.0, 0.0]),
        ([5.0], [1.0]),
        ([-2.0, 0.0], [-1.0, 0.0]),
        ([1.0, 1.0, 1.0, 1.0], [0.5, 0.5, 0.5, 0.5]),
        ([], []),
    ],
)
def test_l2_normalised(vector: list[float], unit: list[float]) -> None:
    assert l2_normalised(vector) == pytest.approx(unit)


def test_normalised_vectors_have_unit_length() -> None:
    vector = l2_normalised([0.1, -7.3, 2.25, 1e-3])
    assert math.fsum(x * x for x in vector) == pytest.approx(1.0)


def test_embed_reply_bytes() -> None:
    response = upstream({"data": [item([3, 4], 0)], "model": "x", "usage": {"prompt_tokens": 5, "total_tokens": 5}})
    reply = embed_response_to_ollama(response, model="all-minilm", input_count=1)
    assert msgspec.json.encode(reply) == b'{"model":"all-minilm","embeddings":[[0.6,0.8]],"prompt_eval_count":5}'


def test_embed_reply_without_usage_has_no_count_key() -> None:
    reply = embed_response_to_ollama(upstream({"data": [item([1, 0], 0)]}), model="m", input_count=1)
    assert msgspec.json.encode(reply) == b'{"model":"m","embeddings":[[1.0,0.0]]}'


def test_embed_reply_follows_input_order_by_index() -> None:
    response = upstream({"data": [item([0, 2], 2), item([3, 0], 0), item([0, 0, 5], 1)]})
    reply = embed_response_to_ollama(response, model="m", input_count=3)
    assert reply.embeddings == [[1.0, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0]]


def test_missing_indexes_keep_the_order_given() -> None:
    response = upstream({"data": [{"embedding": [2, 0]}, {"embedding": [0, 2]}]})
    assert embed_response_to_ollama(response, model="m", input_count=2).embeddings == [[1.0, 0.0], [0.0, 1.0]]


@pytest.mark.parametrize(
    ("dimensions", "expected"),
    [
        (None, [0.5, 0.5, 0.5, 0.5]),
        (0, [0.5, 0.5, 0.5, 0.5]),
        (2, [math.sqrt(0.5), math.sqrt(0.5)]),
        (1, [1.0]),
        (4, [0.5, 0.5, 0.5, 0.5]),
        (10, [0.5, 0.5, 0.5, 0.5]),
    ],
)
def test_dimensions_keep_the_first_n_and_normalise_again(dimensions: int | None, expected: list[float]) -> None:
    response = upstream({"data": [item([2, 2, 2, 2], 0)]})
    reply = embed_response_to_ollama(response, model="m", input_count=1, dimensions=dimensions)
    assert reply.embeddings[0] == pytest.approx(expected)


def test_dimensions_cut_before_normalising() -> None:
    # Normalising first and then cutting would give [0.6] for [3, 4]; Ollama cuts, then normalises.
    response = upstream({"data": [item([3, 4], 0)]})
    assert embed_response_to_ollama(response, model="m", input_count=1, dimensions=1).embeddings == [[1.0]]


def test_negative_dimensions_are_refused() -> None:
    with pytest.raises(BadRequest):
        embed_response_to_ollama(upstream({"data": [item([1], 0)]}), model="m", input_count=1, dimensions=-3)


@pytest.mark.parametrize(("count", "input_count"), [(1, 2), (2, 1), (0, 1)])
def test_wrong_number_of_vectors_is_a_protocol_error(count: int, input_count: int) -> None:
    response = upstream({"data": [item([1.0], i) for i in range(count)]})
    with pytest.raises(UpstreamProtocol):
        embed_response_to_ollama(response, model="m", input_count=input_count)


def test_legacy_embedding_is_not_normalised() -> None:
    reply = embeddings_response_to_ollama(upstream({"data": [item([3, 4], 0)]}))
    assert msgspec.json.encode(reply) == b'{"embedding":[3.0,4.0]}'


def test_legacy_embedding_without_data_is_a_protocol_error() -> None:
    with pytest.raises(UpstreamProtocol):
        embeddings_response_to_ollama(upstream({"data": []}))


@pytest.mark.parametrize(
    ("given", "texts"),
    [
        ("why", ["why"]),
        (["a", "b"], ["a", "b"]),
        (["", "b"], ["", "b"]),
        ("", []),
        ([], []),
        (None, []),
    ],
)
def test_embed_input_texts(given: Any, texts: list[str]) -> None:
    assert embed_input_texts(given) == texts


@pytest.mark.parametrize("given", [["a", 2], [1, 2], [["nested"]], 3, {"text": "a"}, True, [None]])
def test_embed_input_of_the_wrong_type(given: Any) -> None:
    with pytest.raises(BadRequest) as caught:
        embed_input_texts(given)
    assert caught.value.message == "invalid input type"
