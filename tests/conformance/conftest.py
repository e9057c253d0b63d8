"""Fixtures for the client conformance suite: one shim per module in front of each upstream.

- ``smol_url``: the shim over the real llama-server serving SmolLM2-135M (``llama_single``,
  a 2048-token context); the model is ``SmolLM2-135M-Instruct.Q4_1:latest``.
- ``embed_url``: the shim over the real llama-server run with ``--embeddings`` (``llama_embed``);
  the same model name there.
- ``router_url``: the shim over the real llama-server in router mode (``llama_router``), with
  SmolLM2 and ``gemma-3-270m-q4_k_m:latest`` loaded on demand (one at a time) and the catalog
  never cached.
- ``scripted``: a ``support.scripted.ScriptedShim``, an upstream that always thinks and calls a
  tool, with ``scripted.MODEL`` and ``scripted.EMBED_MODEL``.

The llama-server processes are shared by the whole session (``tests/conftest.py``); tests that
use them are marked ``backend`` there.

The suite turns warnings into errors; here the third-party clients' own habit of leaving their
HTTP connection pools to the garbage collector (an unclosed-socket ``ResourceWarning``) is
ignored, and only that: a collection after each test makes those warnings appear (and be
ignored) inside the test that caused them rather than at the end of the session.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.always_tools import ScriptedShim
from support.llama import LlamaServer
from support.shim import ShimThread

HERE = Path(__file__).parent
UNCLOSED_SOCKETS = (
    r"ignore:Exception ignored in. <socket\.socket:pytest.PytestUnraisableExceptionWarning",
    r"ignore:unclosed <socket\.socket:ResourceWarning",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.is_relative_to(HERE):
            for spec in UNCLOSED_SOCKETS:
                item.add_marker(pytest.mark.filterwarnings(spec))


@pytest.fixture(autouse=True)
def collect_dropped_clients() -> Iterator[None]:
    yield
    gc.collect()


@pytest.fixture(scope="module")
def smol_url(llama_single: LlamaServer) -> Iterator[str]:
    with ShimThread("--backend", llama_single.url) as url:
        yield url


@pytest.fixture(scope="module")
def embed_url(llama_embed: LlamaServer) -> Iterator[str]:
    with ShimThread("--backend", llama_embed.url) as url:
        yield url


@pytest.fixture(scope="module")
def router_url(llama_router: LlamaServer) -> Iterator[str]:
    with ShimThread("--backend", llama_router.url, "--catalog-ttl", "0") as url:
        yield url


@pytest.fixture(scope="module")
def scripted() -> Iterator[ScriptedShim]:
    with ScriptedShim() as stack:
        yield stack
