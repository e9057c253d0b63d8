"""Shared pytest fixtures: real llama-server upstreams and the LM Studio emulation.

- ``llama_single`` (session): SmolLM2-135M served with ``-m``; yields a started ``LlamaServer``
  (``.url`` is the base URL without ``/v1``).
- ``llama_router`` (session): router mode over ``.cache/models`` (SmolLM2 and gemma-3-270m),
  models loaded on demand, at most one at a time.
- ``llama_embed`` (session): SmolLM2 with ``--embeddings --pooling mean``. Chat works there too,
  but it is kept apart from ``llama_single`` so that one behaves like a plain server (whose
  ``/v1/embeddings`` answers 501).
- ``lmstudio`` (function, async): a started ``LMStudioEmulation`` with its default models.
- ``upstream`` (function, async): a started fault-injection ``FaultUpstream``.

Shims started as processes keep their store under ``XDG_DATA_HOME``, pointed at the session's
temporary directory (``support.shim.SESSION_DATA_DIR``) so no test writes to the user's own.

A llama fixture whose binary or models are missing FAILS with a pointer to ``make setup``
(CI must not pass by skipping). Tests that use one are marked ``backend`` automatically.
``free_port()`` comes from ``support``.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio

from support import free_port
from support import llama as llama_support
from support.faults import LISTED_CONTEXT, FaultUpstream
from support.lmstudio import LMStudioEmulation
from support.shim import SESSION_DATA_DIR, shim_in_loop

__all__ = ["free_port"]

os.environ["XDG_DATA_HOME"] = SESSION_DATA_DIR

LLAMA_FIXTURES = frozenset({"llama_single", "llama_router", "llama_embed"})


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if LLAMA_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.backend)


@pytest.fixture(scope="session")
def llama_single() -> Iterator[llama_support.LlamaServer]:
    yield from llama_support.served(lambda: llama_support.single(llama_support.model_file(llama_support.SMOLLM2)))


@pytest.fixture(scope="session")
def llama_router() -> Iterator[llama_support.LlamaServer]:
    def make() -> llama_support.LlamaServer:
        for name in (llama_support.SMOLLM2, llama_support.GEMMA):
            llama_support.model_file(name)
        return llama_support.router(llama_support.MODELS_DIR)

    yield from llama_support.served(make)


@pytest.fixture(scope="session")
def llama_embed() -> Iterator[llama_support.LlamaServer]:
    yield from llama_support.served(lambda: llama_support.embeddings(llama_support.model_file(llama_support.SMOLLM2)))


@pytest_asyncio.fixture
async def lmstudio() -> AsyncIterator[LMStudioEmulation]:
    async with LMStudioEmulation() as emulation:
        yield emulation


@pytest_asyncio.fixture
async def upstream() -> AsyncIterator[FaultUpstream]:
    """A started fault-injection upstream (``support.faults``), scripted per test."""
    async with FaultUpstream() as up:
        yield up


@pytest_asyncio.fixture
async def sized(upstream: FaultUpstream) -> AsyncIterator[str]:
    """A shim over the fault upstream as a generic backend whose model lists ``LISTED_CONTEXT``."""
    upstream.model_fields = {"max_model_len": LISTED_CONTEXT}
    async with shim_in_loop("--backend", upstream.url, "--backend-kind", "generic") as url:
        yield url


@pytest_asyncio.fixture
async def unsized(upstream: FaultUpstream) -> AsyncIterator[str]:
    """The same with no context listed: only the backend's refusal tells."""
    async with shim_in_loop("--backend", upstream.url, "--backend-kind", "generic") as url:
        yield url
