"""The official ``ollama.AsyncClient``, closed when the block ends.

Its class has ``__aexit__`` but no ``__aenter__``, so ``async with`` cannot be used on it directly;
an unclosed client leaves an open socket behind, which the suite treats as an error.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import ollama


@contextlib.asynccontextmanager
async def async_client(host: str, **kwargs: Any) -> AsyncIterator[ollama.AsyncClient]:
    client = ollama.AsyncClient(host=host, **kwargs)
    try:
        yield client
    finally:
        await client.close()


@contextlib.contextmanager
def sync_client(host: str, **kwargs: Any) -> Iterator[ollama.Client]:
    """The blocking ``ollama.Client``, closed when the block ends (it has no ``__enter__`` either)."""
    client = ollama.Client(host=host, **kwargs)
    try:
        yield client
    finally:
        client.close()
