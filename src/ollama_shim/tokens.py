"""A backend's own tokenizer, where it has one: llama.cpp's ``/apply-template`` and ``/tokenize``.

``tokenizer_for(upstream, resolved)`` gives a ``Tokenizer`` for a model on a llama.cpp server
(router or single; the body's ``model`` picks the router's child) and None elsewhere. It
renders a chat body with the model's own template, exactly as a completion would be prompted
(``/apply-template``), and tokenizes text (``/tokenize`` with ``add_special: false``, as Ollama
asks). Each call is bounded by ``CALL_TIMEOUT`` and, as it changes nothing on the server, tried
twice when the connection breaks; every failure is an ``UpstreamError`` for the caller to fall
back on.

May import: stdlib, msgspec, ``ollama_shim.upstream``, ``ollama_shim.registry``, ``ollama_shim.settings``,
``ollama_shim.errors``, ``ollama_shim.wire``.
"""

from __future__ import annotations

import asyncio
from typing import TypeVar

import msgspec

from .errors import UpstreamProtocol, UpstreamTimeout
from .registry import Resolved
from .settings import Backend
from .upstream import Upstream
from .wire.openai import ChatCompletionRequest, JSONObject

T = TypeVar("T")

CALL_TIMEOUT = 15.0  # seconds for one tokenizer call


class _RenderedPrompt(msgspec.Struct):
    """``/apply-template``'s answer."""

    prompt: str


class _TokenizeRequest(msgspec.Struct, omit_defaults=True):
    content: str
    add_special: bool = False
    model: str | None = None  # a router sends it to that model's server


class _Tokens(msgspec.Struct):
    """``/tokenize``'s answer (ids only: ``with_pieces`` is not asked for)."""

    tokens: list[int]


class Tokenizer:
    """One llama.cpp model's chat template and tokenizer."""

    def __init__(self, upstream: Upstream, backend: Backend, model: str) -> None:
        self._upstream = upstream
        self._backend = backend
        self._model = model

    async def _post(self, path: str, body: bytes, type_: type[T]) -> T:
        try:
            async with asyncio.timeout(CALL_TIMEOUT):
                try:
                    return await self._upstream.post_json(self._backend, path, body, type_)
                except UpstreamProtocol:
                    # After a streamed answer llama-server leaves the pooled connection half closed, and
                    # the next request written on it fails once. These calls change nothing: ask again.
                    return await self._upstream.post_json(self._backend, path, body, type_)
        except TimeoutError:
            raise UpstreamTimeout(f"backend at {self._backend.root} did not answer {path} in {CALL_TIMEOUT:g} s") \
                from None

    async def render(self, request: ChatCompletionRequest | JSONObject) -> str:
        """The prompt text the model's template makes of a chat body (the shim's, or a client's as it came)."""
        return (await self._post("/apply-template", msgspec.json.encode(request), _RenderedPrompt)).prompt

    async def tokenize(self, text: str) -> list[int]:
        body = msgspec.json.encode(_TokenizeRequest(content=text, model=self._model))
        return (await self._post("/tokenize", body, _Tokens)).tokens

    async def prompt_tokens(self, request: ChatCompletionRequest | JSONObject) -> int:
        """How many tokens the chat body's prompt takes (images not included)."""
        return len(await self.tokenize(await self.render(request)))


def tokenizer_for(upstream: Upstream, resolved: Resolved) -> Tokenizer | None:
    """The model's tokenizer on its backend, or None when the backend offers none."""
    if resolved.dialect.kind != "llamacpp":
        return None
    return Tokenizer(upstream, resolved.backend, resolved.record.upstream_id)
