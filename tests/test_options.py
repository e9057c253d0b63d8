"""Ollama ``options`` -> sampling parameters: every key on every dialect, types, special values."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from ollama_shim.dialect import DIALECTS
from ollama_shim.errors import BadRequest
from ollama_shim.translate.options import IgnoredOption, options_to_sampling

KINDS = ("llamacpp", "lmstudio", "vllm", "openai", "openrouter", "generic")


def only(field: str, *kinds: str) -> dict[str, str | None]:
    return {kind: field if kind in kinds else None for kind in KINDS}


def everywhere(field: str) -> dict[str, str | None]:
    return dict.fromkeys(KINDS, field)


# Ollama key, a value, and the field it is sent as on each backend kind (None: not sent, reported).
ROUTING: list[tuple[str, Any, dict[str, str | None]]] = [
    (
        "num_predict",
        128,
        {
            "llamacpp": "max_tokens",
            "lmstudio": "max_tokens",
            "vllm": "max_completion_tokens",
            "openai": "max_completion_tokens",
            "openrouter": "max_tokens",
            "generic": "max_tokens",
        },
    ),
    ("temperature", 0.5, everywhere("temperature")),
    ("top_p", 0.9, everywhere("top_p")),
    ("top_k", 40, only("top_k", "llamacpp", "lmstudio", "vllm", "openrouter", "generic")),
    ("min_p", 0.05, only("min_p", "llamacpp", "lmstudio", "vllm", "openrouter")),
    ("typical_p", 0.7, only("typical_p", "llamacpp")),
    ("seed", 42, everywhere("seed")),
    ("stop", ["\n\n", "User:"], everywhere("stop")),
    (
        "repeat_penalty",
        1.1,
        {
            "llamacpp": "repeat_penalty",
            "lmstudio": "repeat_penalty",
            "vllm": "repetition_penalty",
            "openai": None,
            "openrouter": "repetition_penalty",
            "generic": None,
        },
    ),
    ("repeat_last_n", 64, only("repeat_last_n", "llamacpp")),
    ("presence_penalty", 0.25, everywhere("presence_penalty")),
    ("frequency_penalty", -0.5, everywhere("frequency_penalty")),
    ("mirostat", 2, only("mirostat", "llamacpp")),
    ("mirostat_tau", 5.0, only("mirostat_tau", "llamacpp")),
    ("mirostat_eta", 0.1, only("mirostat_eta", "llamacpp")),
    ("num_keep", 4, only("n_keep", "llamacpp")),
]

CASES = [
    pytest.param(key, value, kind, fields[kind], id=f"{key}-{kind}") for key, value, fields in ROUTING for kind in KINDS
]


def encoded(options: dict[str, Any] | None, kind: str = "llamacpp") -> bytes:
    return msgspec.json.encode(options_to_sampling(options, DIALECTS[kind]).sampling)


@pytest.mark.parametrize(("key", "value", "kind", "field"), CASES)
def test_each_key_on_each_dialect(key: str, value: Any, kind: str, field: str | None) -> None:
    result = options_to_sampling({key: value}, DIALECTS[kind])
    if field is None:
        assert msgspec.json.encode(result.sampling) == b"{}"
        assert result.ignored == (IgnoredOption(key, "unsupported"),)
    else:
        assert msgspec.json.decode(msgspec.json.encode(result.sampling)) == {field: value}
        assert result.ignored == ()


def test_every_dialect_is_in_the_table() -> None:
    assert set(DIALECTS) == set(KINDS)


@pytest.mark.parametrize(
    ("kind", "forbidden"),
    [
        (
            "openai",
            [b"top_k", b"min_p", b"typical_p", b"repeat", b"repetition", b"mirostat", b"n_keep", b'"max_tokens"'],
        ),
        ("vllm", [b'"max_tokens"', b'"repeat_penalty"', b"typical_p", b"mirostat", b"repeat_last_n", b"n_keep"]),
        ("lmstudio", [b"max_completion_tokens", b"repetition_penalty", b"typical_p", b"mirostat", b"n_keep"]),
        ("llamacpp", [b"max_completion_tokens", b"repetition_penalty"]),
        ("generic", [b"min_p", b"repeat", b"repetition", b"mirostat", b"max_completion_tokens"]),
    ],
)
def test_rejected_spellings_are_absent_from_the_bytes(kind: str, forbidden: list[bytes]) -> None:
    body = encoded({key: value for key, value, _ in ROUTING}, kind)
    assert b'"temperature":0.5' in body
    for name in forbidden:
        assert name not in body


LOAD_TIME_KEYS = ["num_ctx", "num_batch", "num_gpu", "main_gpu", "num_thread", "draft_num_predict"]
UNKNOWN_KEYS = [
    "low_vram",
    "f16_kv",
    "logits_all",
    "vocab_only",
    "use_mlock",
    "penalize_newline",
    "tfs_z",
    "numa",
    "embedding_only",
    "num_gqa",
    "max_tokens",
    "no_such_option",
]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("key", LOAD_TIME_KEYS)
def test_runner_keys_are_reported_as_load_time(key: str, kind: str) -> None:
    result = options_to_sampling({key: 8}, DIALECTS[kind])
    assert msgspec.json.encode(result.sampling) == b"{}"
    assert result.ignored == (IgnoredOption(key, "load_time"),)


@pytest.mark.parametrize("key", UNKNOWN_KEYS)
def test_unknown_and_removed_keys_are_reported(key: str) -> None:
    result = options_to_sampling({key: True}, DIALECTS["llamacpp"])
    assert msgspec.json.encode(result.sampling) == b"{}"
    assert result.ignored_names == (key,)
    assert result.ignored[0].reason == "unknown"


def test_use_mmap_is_a_boolean_runner_key() -> None:
    assert options_to_sampling({"use_mmap": False}, DIALECTS["llamacpp"]).ignored_names == ("use_mmap",)


def test_ignored_names_keep_request_order() -> None:
    options = {"num_ctx": 4096, "temperature": 0.1, "tfs_z": 1.0, "top_k": 3}
    assert options_to_sampling(options, DIALECTS["openai"]).ignored_names == ("num_ctx", "tfs_z", "top_k")


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"num_predict": -1}, b"{}"),
        ({"num_predict": -2}, b"{}"),
        ({"num_predict": -1.0}, b"{}"),
        ({"num_predict": 0}, b'{"max_tokens":0}'),
        ({"num_predict": 1}, b'{"max_tokens":1}'),
        ({"num_predict": 100.9}, b'{"max_tokens":100}'),
        ({"seed": -1}, b"{}"),
        ({"seed": 0}, b'{"seed":0}'),
        ({"seed": -7}, b'{"seed":-7}'),
        ({"stop": "END"}, b'{"stop":["END"]}'),
        ({"stop": []}, b"{}"),
        ({"stop": ["a", "b"]}, b'{"stop":["a","b"]}'),
        ({"temperature": 1}, b'{"temperature":1.0}'),
        ({"temperature": 0}, b'{"temperature":0.0}'),
        ({"top_k": 3.9}, b'{"top_k":3}'),
        ({"top_k": -3.9}, b'{"top_k":-3}'),
        ({"temperature": None, "top_k": None}, b"{}"),
        (None, b"{}"),
        ({}, b"{}"),
    ],
)
def test_special_values_and_conversions(options: dict[str, Any] | None, expected: bytes) -> None:
    assert encoded(options) == expected


def test_null_values_are_not_reported_as_ignored() -> None:
    assert options_to_sampling({"num_ctx": None, "bogus": None}, DIALECTS["llamacpp"]).ignored == ()


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("temperature", "0.5", 'option "temperature" must be of type float32'),
        ("temperature", True, 'option "temperature" must be of type float32'),
        ("temperature", [0.5], 'option "temperature" must be of type float32'),
        ("top_p", {"v": 1}, 'option "top_p" must be of type float32'),
        ("repeat_penalty", False, 'option "repeat_penalty" must be of type float32'),
        ("mirostat_eta", "x", 'option "mirostat_eta" must be of type float32'),
        ("top_k", "40", 'option "top_k" must be of type integer'),
        ("top_k", True, 'option "top_k" must be of type integer'),
        ("top_k", 1e30, 'option "top_k" must be of type integer'),
        ("num_predict", "128", 'option "num_predict" must be of type integer'),
        ("seed", [], 'option "seed" must be of type integer'),
        ("num_keep", "4", 'option "num_keep" must be of type integer'),
        ("mirostat", False, 'option "mirostat" must be of type integer'),
        ("num_ctx", "4096", 'option "num_ctx" must be of type integer'),
        ("num_thread", True, 'option "num_thread" must be of type integer'),
        ("use_mmap", 1, 'option "use_mmap" must be of type boolean'),
        ("stop", 5, 'option "stop" must be of type array'),
        ("stop", {"a": 1}, 'option "stop" must be of type array'),
        ("stop", ["ok", 5], 'option "stop" must be of type array of strings'),
    ],
)
@pytest.mark.parametrize("kind", ["llamacpp", "openai"])
def test_wrong_types_fail_whatever_the_dialect(key: str, value: Any, message: str, kind: str) -> None:
    with pytest.raises(BadRequest) as caught:
        options_to_sampling({key: value}, DIALECTS[kind])
    assert caught.value.message == message
    assert caught.value.status == 400


BIG = 10**400  # JSON allows it; decoded exactly, it is beyond float64 as Ollama decodes options
BIG_SHOWN = "1" + "0" * 39 + "…"


@pytest.mark.parametrize(
    ("key", "value", "shown"),
    [
        ("temperature", BIG, BIG_SHOWN),  # a float key
        ("top_k", BIG, BIG_SHOWN),  # an integer key
        ("seed", -BIG, "-" + "1" + "0" * 38 + "…"),
        ("num_ctx", BIG, BIG_SHOWN),  # a runner key, never sent but still checked
        ("use_mmap", BIG, BIG_SHOWN),  # a boolean key: decoding fails before the type check
        ("repeat_penalty", 2**1030, str(2**1030)[:40] + "…"),
        ("temperature", 10**309, "1" + "0" * 39 + "…"),
        ("top_k", -(10**308) * 2, "-" + "2" + "0" * 38 + "…"),
    ],
    ids=["float-key", "integer-key", "negative", "runner-key", "boolean-key", "power-of-two", "just-past",
         "negative-past"],
)
@pytest.mark.parametrize("kind", ["llamacpp", "openai"])
def test_numbers_beyond_float_range_fail_in_go_words(key: str, value: int, shown: str, kind: str) -> None:
    with pytest.raises(BadRequest) as caught:
        options_to_sampling({key: value}, DIALECTS[kind])
    assert caught.value.message == f"json: cannot unmarshal number {shown} into Go value of type float64"


@pytest.mark.parametrize("value", [10**308, -(10**308), 2**63, 1.7976931348623157e308],
                         ids=["1e308", "-1e308", "2**63", "float-max"])
def test_numbers_just_inside_float_range_are_checked_as_usual(value: float) -> None:
    with pytest.raises(BadRequest) as caught:  # an integer key: out of int64 range, a type error as in Ollama
        options_to_sampling({"top_k": value}, DIALECTS["llamacpp"])
    assert caught.value.message == 'option "top_k" must be of type integer'
    assert options_to_sampling({"temperature": value}, DIALECTS["llamacpp"]).sampling.temperature == float(value)
