"""``exceeds_depth``: the nesting of JSON text measured on its bytes, strings and escapes aside."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ollama_shim.translate.json_depth import MAX_JSON_DEPTH, exceeds_depth


def depth_of(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max(map(depth_of, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(depth_of, value), default=0)
    return 0


@pytest.mark.parametrize(
    ("text", "limit", "exceeds"),
    [
        (b"[]", 1, False),
        (b"[[]]", 1, True),
        (b'{"a":{"b":[1]}}', 3, False),
        (b'{"a":{"b":[1]}}', 2, True),
        (b'["[[[[", "{{{{"]', 1, False),  # brackets inside strings
        (b'["\\"[[[[", 1]', 1, False),  # an escaped quote does not end the string
        (b'["\\\\", [[1]]]', 2, True),  # an escaped backslash does not escape the quote after it
        (b'["\\\\\\"[[", 1]', 1, False),  # backslash, then an escaped quote: still inside
        (b'"[[[["', 0, False),
        (b"[" * 100_000 + b"]" * 100_000, MAX_JSON_DEPTH, True),
        (b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH, MAX_JSON_DEPTH, False),
        (b"[" * 100_000, MAX_JSON_DEPTH, True),  # unclosed: not JSON, refused all the same
        (b"[]" * 100_000, MAX_JSON_DEPTH, False),  # many brackets, shallow
    ],
    ids=["flat", "two-levels", "mixed-at-limit", "mixed-past-limit", "in-strings", "escaped-quote",
         "escaped-backslash", "backslash-then-quote", "bare-string", "100000-deep", "at-default-limit",
         "unclosed", "wide"],
)
def test_exceeds_depth(text: bytes, limit: int, exceeds: bool) -> None:
    assert exceeds_depth(text, limit) is exceeds


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(alphabet='[]{}"\\ab'),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(alphabet='[]{}"\\a'), inner, max_size=3),
    max_leaves=40,
)


@settings(database=None)
@given(json_values, st.integers(min_value=0, max_value=12), st.booleans())
def test_agrees_with_the_decoded_depth(value: Any, limit: int, ascii_only: bool) -> None:
    text = json.dumps(value, ensure_ascii=ascii_only).encode()
    assert exceeds_depth(text, limit) is (depth_of(value) > limit)
