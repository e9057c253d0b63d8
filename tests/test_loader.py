"""Which backend answers to a load or unload count as "already done" rather than failures."""

from __future__ import annotations

import pytest

from ollama_shim.errors import UpstreamStatus
from ollama_shim.loader import _already_done


@pytest.mark.parametrize(
    ("status", "message", "done"),
    [
        (400, "model is already running", True),  # llama.cpp router, this build
        (400, "model is not running", True),
        (400, "model is already loaded", True),  # as documented
        (400, "model is not loaded", True),
        (404, "model is not found", False),
        (500, "failed to load model", False),
    ],
)
def test_already_done(status: int, message: str, done: bool) -> None:
    assert _already_done(UpstreamStatus(message, status)) is done
