"""The ``context`` of an ``/api/generate`` answer: token ids of the prompt and the answer.

Ollama ends every non-raw generate with ``context``, the conversation so far as token ids, and
some clients index it or reject an answer without it. ``ContextIds`` is a ``relay.Amend`` step:
it keeps the answer's text as its chunks pass (up to ``limits.gathered_bytes``) and puts the ids
on the done chunk. Where the backend has a tokenizer (llama.cpp) they are its ids of the prompt
as its chat template renders it (the raw prompt for a ``suffix`` request), followed by the
answer; elsewhere, and if asking fails or the answer was too long to keep, an empty list. The
ids are what the backend's tokenizer says, not what its cache holds: sending them back as
``context`` is accepted and ignored.

May import: stdlib, msgspec, ``ollama_shim.routes.*``, ``ollama_shim.tokens``, ``ollama_shim.errors``,
``ollama_shim.translate``, ``ollama_shim.wire``.
"""

from __future__ import annotations

import msgspec

from ..errors import UpstreamError
from ..tokens import Tokenizer
from ..translate.request import GenerationPlan
from ..translate.stream import OllamaChunk
from ..wire.ollama import GenerateChunk
from ..wire.openai import ChatCompletionRequest
from .state import log


class ContextIds:
    """Collects an answer's text and gives its done chunk ``context``; see the module docstring."""

    def __init__(self, tokenizer: Tokenizer | None, plan: GenerationPlan, limit: int) -> None:
        self._tokenizer = tokenizer
        self._plan = plan
        self._limit = limit
        self._parts: list[str] = []
        self._size = 0

    async def __call__(self, chunks: list[OllamaChunk]) -> list[OllamaChunk]:
        out: list[OllamaChunk] = []
        for chunk in chunks:
            if isinstance(chunk, GenerateChunk):
                self._keep(chunk.response)
                if chunk.done:
                    chunk = msgspec.structs.replace(chunk, context=await self._ids())
            out.append(chunk)
        return out

    def _keep(self, text: str) -> None:
        if self._size <= self._limit and text:
            self._size += len(text)
            self._parts.append(text)

    async def _ids(self) -> list[int]:
        tokenizer = self._tokenizer
        if tokenizer is None or self._size > self._limit:
            return []
        request = self._plan.request
        try:
            prompt = await tokenizer.render(request) if isinstance(request, ChatCompletionRequest) else request.prompt
            return await tokenizer.tokenize(prompt + "".join(self._parts))
        except UpstreamError as exc:
            log.warning("cannot tokenize a generate answer for its context (%s); sending an empty one", exc.message)
            return []
