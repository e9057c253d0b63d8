"""The model memory: the in-process kind, its bound, and the JSON a lasting store keeps."""

from __future__ import annotations

import pytest

from ollama_shim.model_memory import InProcessMemory, ModelMemory, facts_from_json, facts_to_json
from ollama_shim.translate.catalog import ModelFacts

FULL = ModelFacts(family="llama", format="gguf", size=96576768, parameter_count=134515008, parameter_size="134.52M",
                  quantization_level="Q4_1", context_length=2048, configured_context_length=4096,
                  max_context_length=8192, embedding_length=576, vocab_size=49152, completion=True, tools=False,
                  insert=None, vision=False, embedding=True, thinking=False, created_ns=None,
                  first_seen_ns=1_700_000_000_000_000_000)


def test_in_process_memory_recalls_by_backend_and_id() -> None:
    memory: ModelMemory = InProcessMemory()
    memory.remember("http://a", "m", FULL)
    assert memory.recall("http://a", "m") == FULL
    assert memory.recall("http://b", "m") is None
    assert memory.recall("http://a", "M") is None


def test_in_process_memory_is_bounded_and_forgets_the_oldest() -> None:
    memory = InProcessMemory(limit=2)
    for name in ("a", "b", "a", "c"):  # "a" remembered again: "b" is now the oldest
        memory.remember("http://x", name, ModelFacts(size=1))
    assert len(memory) == 2
    assert [memory.recall("http://x", n) is not None for n in ("a", "b", "c")] == [True, False, True]


def test_facts_round_trip_through_json() -> None:
    assert facts_from_json(facts_to_json(FULL)) == FULL
    assert facts_from_json(facts_to_json(ModelFacts())) == ModelFacts()


@pytest.mark.parametrize(
    ("stored", "read"),
    [
        (b'{"size": 5, "from_a_newer_shim": 1}', ModelFacts(size=5)),  # unknown keys ignored
        (b'{"size": "big", "tools": true}', ModelFacts(tools=True)),  # a wrong type costs only itself
        (b'{"tools": 1, "size": true}', ModelFacts()),  # bools and numbers are not confused
        (b'{}', ModelFacts()),
    ],
)
def test_facts_from_json_is_lenient(stored: bytes, read: ModelFacts) -> None:
    assert facts_from_json(stored) == read


@pytest.mark.parametrize("stored", [b"", b"[1]", b"null", b"{", b'"x"'])
def test_facts_from_json_refuses_what_is_not_an_object(stored: bytes) -> None:
    assert facts_from_json(stored) is None
