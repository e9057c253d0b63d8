"""The kind table: every kind has a dialect, the settings offer exactly those, and detect_kind's branches."""

from __future__ import annotations

from typing import get_args

import pytest

from ollama_shim.dialect import DIALECTS, KINDS, Kind, detect_kind, kind_named
from ollama_shim.settings import BACKEND_KINDS


def test_every_kind_has_its_dialect() -> None:
    assert set(DIALECTS) == set(get_args(Kind))


def test_each_dialect_is_filed_under_its_own_kind() -> None:
    assert [d.kind for d in DIALECTS.values()] == list(DIALECTS)


def test_settings_offer_auto_and_every_kind() -> None:
    assert ("auto", *KINDS) == BACKEND_KINDS


@pytest.mark.parametrize(("name", "kind"), [("llamacpp", "llamacpp"), ("generic", "generic"), ("auto", None),
                                            ("LlamaCpp", None), ("", None)])
def test_kind_named(name: str, kind: Kind | None) -> None:
    assert kind_named(name) == kind


LOCAL = "http://127.0.0.1:8080"


@pytest.mark.parametrize(
    ("url", "has_props", "has_lmstudio_rest", "owned_by", "kind"),
    [
        (LOCAL, True, False, set(), "llamacpp"),  # llama-server answers /props
        (LOCAL, False, False, {"llamacpp"}, "llamacpp"),  # ... or says so in owned_by
        (LOCAL, True, True, {"vllm"}, "llamacpp"),  # /props outranks everything else
        (LOCAL, False, True, {"organization_owner"}, "lmstudio"),
        (LOCAL, False, True, {"vllm"}, "lmstudio"),  # LM Studio's REST outranks owned_by
        (LOCAL, False, False, {"vllm"}, "vllm"),
        ("https://api.openai.com", False, False, {"system", "openai"}, "openai"),
        ("https://openrouter.ai/api", False, False, set(), "openrouter"),
        ("https://api.openai.com", False, False, {"vllm"}, "vllm"),  # what it says outranks its URL
        (LOCAL, False, False, {"", "someone"}, "generic"),
        (LOCAL, False, False, set(), "generic"),
    ],
)
def test_detect_kind(url: str, has_props: bool, has_lmstudio_rest: bool, owned_by: set[str], kind: Kind) -> None:
    assert detect_kind(url, has_props=has_props, has_lmstudio_rest=has_lmstudio_rest, owned_by=owned_by) == kind
