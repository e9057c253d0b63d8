"""The passthrough's path rules, pure: dot segments in any encoding are refused, and the allow-list."""

from __future__ import annotations

import pytest

from ollama_shim.errors import BadRequest
from ollama_shim.settings import DEFAULT_PASSTHROUGH
from ollama_shim.translate.passthrough_paths import check_path, route_allowed

ESCAPES = [
    "/v1/../props",
    "/v1/x/../../props",
    "/v1/models/..",
    "/v1/./models",
    "/v1/%2e%2e/slots",
    "/v1/%2E%2E/slots",
    "/v1/%2E./models/load",
    "/v1/.%2e/props",
    "/v1/%2e/models",
    "/v1/models/a%2f..%2f..%2fprops",
    "/v1/models/a%2F..%2F..%2Fprops",
    "/v1/x%5c..%5cprops",
    "/v1/x\\..\\props",
    "/v1/%252e%252e/props",
    "/v1/%25252e%25252e/props",
    "/v1/chat/completions/..",
]


@pytest.mark.parametrize("path", ESCAPES)
def test_dot_segments_in_any_encoding_are_refused(path: str) -> None:
    with pytest.raises(BadRequest):
        check_path(path)


def test_a_path_encoded_past_the_rounds_is_refused() -> None:
    with pytest.raises(BadRequest, match="too many times"):
        check_path("/v1/%2525252e%2525252e/props")


FINE = [
    "/v1/chat/completions",
    "/v1/models/gpt-4.1",
    "/v1/models/a%2Fb",
    "/v1/models/..hidden",
    "/v1/models/v1...2",
    "/v1/models/%2e%2e%2e",
]


@pytest.mark.parametrize("path", FINE)
def test_dots_inside_a_name_are_fine(path: str) -> None:
    check_path(path)  # raises nothing


ALLOW = [
    # path, patterns, allowed
    ("/v1/chat/completions", DEFAULT_PASSTHROUGH, True),
    ("/v1/models", DEFAULT_PASSTHROUGH, True),
    ("/v1/models/qwen3-8b", DEFAULT_PASSTHROUGH, True),
    ("/v1/embeddings", DEFAULT_PASSTHROUGH, True),
    ("/v1/responses", DEFAULT_PASSTHROUGH, True),
    ("/v1/messages/count_tokens", DEFAULT_PASSTHROUGH, True),
    ("/v1/files", DEFAULT_PASSTHROUGH, False),
    ("/v1/files/file-abc/content", DEFAULT_PASSTHROUGH, False),
    ("/v1/fine_tuning/jobs", DEFAULT_PASSTHROUGH, False),
    ("/v1/batches", DEFAULT_PASSTHROUGH, False),
    ("/v1/organization/admin_api_keys", DEFAULT_PASSTHROUGH, False),
    ("/v1/models/a/b", DEFAULT_PASSTHROUGH, False),  # '*' is one segment
    ("/v1/models/a%2Fb", DEFAULT_PASSTHROUGH, False),  # ...also when the slash is encoded
    ("/v1/chat%2Fcompletions", DEFAULT_PASSTHROUGH, False),  # raw and decoded must both match
    ("/v1/Chat/Completions", DEFAULT_PASSTHROUGH, False),  # case-sensitive
    ("/v1//chat/completions", DEFAULT_PASSTHROUGH, False),
    ("/v1/chat/completions/", DEFAULT_PASSTHROUGH, False),
    ("/v1/files", ("*",), True),
    ("/v1/anything/at/all", ("*",), True),
    ("/v1/files", ("/v1/**",), True),
    ("/v1/files/file-abc/content", ("/v1/**",), True),
    ("/v1/files", ("/v1/files/**",), True),
    ("/v1/files/x/y", ("/v1/files/**",), True),
    ("/v1/filesystem", ("/v1/files/**",), False),
    ("/v1/models/gpt-4o-mini", ("/v1/models/gpt-*",), True),
    ("/v1/models/o3", ("/v1/models/gpt-*",), False),
    ("/v1/models/gpt-4o-mini", ("/v1/models/gpt*mini",), True),
    ("/v1/models/gpt-mini-4o", ("/v1/models/gpt*mini",), False),
    ("/v1/models/abcab", ("/v1/models/ab*b*ab",), False),  # pieces may not overlap
    ("/v1/models/ab-b-ab", ("/v1/models/ab*b*ab",), True),
    ("/v1/chat/completions", (), False),
]


@pytest.mark.parametrize(("path", "patterns", "allowed"), ALLOW)
def test_allow_list(path: str, patterns: tuple[str, ...], allowed: bool) -> None:
    assert route_allowed(path, patterns) is allowed
