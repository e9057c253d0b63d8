"""A chat made to fit the model's context before it is sent, and once more if the backend refused it.

``fit_chat`` drops the oldest messages the way ``translate.truncation`` decides, counting with the
backend's tokenizer where it has one (``tokens.Tokenizer``: llama.cpp) and with the estimate
elsewhere, or when the tokenizer fails. A chat that fits even at one token per byte is sent
without counting; a longer one costs one count when it fits and at most ``1 + log2(n)`` when
messages must go. ``refit_chat`` is the fallback after a backend's own "prompt too long" refusal:
the same search against the context the refusal names (else the catalog's), counting with the
tokenizer, or with the estimate scaled by what the refusal said the prompt really took; None
when that would drop nothing more.

``sent_fitted`` puts the two together around one send: ``/api/chat`` (unless ``truncate: false``)
and the translated ``/v1/messages`` and ``/v1/responses`` (neither API has ``truncate``: Ollama cuts
there as on ``/api/chat``).

``fit_forwarded`` and ``refit_forwarded`` do the same for an OpenAI chat body forwarded as it came
(``translate.truncation.ForwardedChat``): the tokenizer renders the client's own body (every field
of it), the estimate reads the typed view; there is no ``truncate`` in that API, so it always
applies, as Ollama's does, and the room for the answer is the body's ``max_completion_tokens`` or
``max_tokens``.

May import: stdlib, msgspec, ``ollama_shim.routes.*``, ``ollama_shim.tokens``, ``ollama_shim.registry``,
``ollama_shim.errors``, ``ollama_shim.translate``, ``ollama_shim.wire``.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

import msgspec

from ..errors import BadRequest, UpstreamError, UpstreamStatus
from ..registry import Resolved
from ..tokens import tokenizer_for
from ..translate.truncation import (
    IMAGE_TOKENS,
    Budget,
    CutSearch,
    ForwardedChat,
    Overflow,
    budget_for,
    context_overflow,
    estimated_tokens,
    forwarded_options,
    image_count,
    kept_indices,
    surely_fits,
)
from ..wire.openai import ChatCompletionRequest, JSONObject
from .state import AppState, log

Counter = Callable[[ChatCompletionRequest], Awaitable[int]]
T = TypeVar("T")


class _Chat(Protocol):
    """A chat to fit: its messages as the shim reads them (``view``), and the body that is sent (and
    rendered by a tokenizer) when only the messages at ``kept`` are."""

    @property
    def view(self) -> ChatCompletionRequest: ...

    def keeping(self, kept: Sequence[int]) -> ChatCompletionRequest | JSONObject: ...


@dataclass(frozen=True)
class _Translated:
    """A chat the shim translated itself: what it reads is what it sends."""

    view: ChatCompletionRequest

    def keeping(self, kept: Sequence[int]) -> ChatCompletionRequest:
        return msgspec.structs.replace(self.view, messages=[self.view.messages[i] for i in kept])


async def fit_chat(
    state: AppState, resolved: Resolved, request: ChatCompletionRequest, options: JSONObject | None
) -> ChatCompletionRequest:
    """A translated chat with the oldest messages dropped until its prompt fits (``options``: the
    Ollama options it was made from, for the room its answer needs); ``request`` itself when it fits."""
    chat = _Translated(request)
    kept = await _fitted(state, resolved, chat, budget_for(resolved.record.context_length, options))
    return request if kept is None else chat.keeping(kept)


async def refit_chat(
    state: AppState, resolved: Resolved, request: ChatCompletionRequest, options: JSONObject | None,
    overflow: Overflow,
) -> ChatCompletionRequest | None:
    """A translated chat the backend refused as too long, cut further; None when nothing more would go."""
    chat = _Translated(request)
    kept = await _refitted(state, resolved, chat, options, overflow)
    return None if kept is None else chat.keeping(kept)


async def sent_fitted(
    state: AppState, resolved: Resolved, request: ChatCompletionRequest, options: JSONObject | None,
    send: Callable[[ChatCompletionRequest], Awaitable[T]],
) -> T:
    """``send(request)``, the chat first cut to fit; after the backend's "prompt too long" refusal
    (before anything was sent to the client) cut further and sent once more. A refusal that cutting
    cannot help, or a second one, is a 400 in the backend's words. For the APIs that have no
    ``truncate`` (``/v1/messages``, ``/v1/responses``): Ollama cuts there too, as on ``/api/chat``."""
    try:
        return await send(await fit_chat(state, resolved, request, options))
    except UpstreamStatus as exc:
        overflow = context_overflow(exc.message)
        if overflow is None:
            raise
        retry = await refit_chat(state, resolved, request, options, overflow)
        if retry is None:
            raise BadRequest(exc.message) from exc
        log.info("%s refused the prompt as too long (%s); sending it cut to fit", resolved.backend.root, exc.message)
    try:
        return await send(retry)
    except UpstreamStatus as exc:
        if context_overflow(exc.message) is None:
            raise
        raise BadRequest(exc.message) from exc


async def fit_forwarded(state: AppState, resolved: Resolved, chat: ForwardedChat) -> ForwardedChat:
    """A forwarded chat body with the oldest messages dropped until its prompt fits; unchanged when it
    fits or when the model's context is not known."""
    budget = budget_for(resolved.record.context_length, forwarded_options(chat.doc))
    kept = await _fitted(state, resolved, chat, budget)
    return chat if kept is None else chat.cut_to(kept)


async def refit_forwarded(
    state: AppState, resolved: Resolved, chat: ForwardedChat, overflow: Overflow
) -> ForwardedChat | None:
    """A forwarded chat body (refused as too long) cut further to fit; None when nothing more would go."""
    kept = await _refitted(state, resolved, chat, forwarded_options(chat.doc), overflow)
    return None if kept is None else chat.cut_to(kept)


async def _fitted(state: AppState, resolved: Resolved, chat: _Chat, budget: Budget | None) -> list[int] | None:
    """The messages kept to fit ``budget``; None when all are (or no context is known)."""
    if budget is None or surely_fits(chat.view, budget.limit):
        return None
    return await _searched(state, resolved, chat, budget.limit, _estimate)


async def _refitted(
    state: AppState, resolved: Resolved, chat: _Chat, options: JSONObject | None, overflow: Overflow
) -> list[int] | None:
    """The messages kept to fit the context ``overflow`` names (else the catalog's); None when that
    drops nothing."""
    budget = budget_for(overflow.context or resolved.record.context_length, options)
    if budget is None:
        return None
    estimate = estimated_tokens(chat.view)
    scale = max(1.0, (overflow.prompt_tokens or 0) / estimate)

    async def scaled(request: ChatCompletionRequest) -> int:
        return math.ceil(estimated_tokens(request) * scale)

    return await _searched(state, resolved, chat, budget.limit, scaled)


async def _estimate(request: ChatCompletionRequest) -> int:
    return estimated_tokens(request)


async def _searched(
    state: AppState, resolved: Resolved, chat: _Chat, limit: int, fallback: Counter
) -> list[int] | None:
    """The messages of the longest fitting tail of the chat (None: all of them), counted by the
    backend's tokenizer if it has one, by ``fallback`` if not or if the tokenizer fails."""
    messages = chat.view.messages
    roles = [m.role for m in messages]
    tokenizer = tokenizer_for(state.upstream, resolved)
    if tokenizer is not None:

        async def exact(kept: Sequence[int]) -> int:
            images = sum(image_count(messages[i]) for i in kept)
            return await tokenizer.prompt_tokens(chat.keeping(kept)) + IMAGE_TOKENS * images

        try:
            return _logged(resolved, len(roles), limit, *await _search(roles, limit, exact))
        except UpstreamError as exc:
            log.warning("cannot count tokens on %s (%s); estimating instead", resolved.backend.root, exc.message)

    async def estimated(kept: Sequence[int]) -> int:
        return await fallback(msgspec.structs.replace(chat.view, messages=[messages[i] for i in kept]))

    return _logged(resolved, len(roles), limit, *await _search(roles, limit, estimated))


async def _search(
    roles: list[str], limit: int, count: Callable[[Sequence[int]], Awaitable[int]]
) -> tuple[list[int] | None, int]:
    """The messages kept where ``CutSearch`` cuts (None: all of them), and how many counts that took."""
    search = CutSearch(len(roles), limit)
    while (cut := search.next_cut()) is not None:
        search.report(await count(kept_indices(roles, cut)))
    kept = kept_indices(roles, search.cut)
    return (kept if len(kept) < len(roles) else None), search.counts


def _logged(resolved: Resolved, total: int, limit: int, kept: list[int] | None, counts: int) -> list[int] | None:
    if kept is not None:
        log.info("dropped the %d oldest of %d messages to fit %s in %d prompt tokens (%d counts)",
                 total - len(kept), total, resolved.record.upstream_id, limit, counts)
    return kept
