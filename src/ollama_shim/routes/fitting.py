"""A chat made to fit the model's context before it is sent, and once more if the backend refused it.

``fit`` drops the oldest messages the way ``translate.truncation`` decides, counting with the
backend's tokenizer where it has one (``tokens.Tokenizer``: llama.cpp) and with the estimate
elsewhere, or when the tokenizer fails. A chat that fits even at one token per byte is sent
without counting; a longer one costs one count when it fits and at most ``1 + log2(n)`` when
messages must go. ``refit`` is the fallback after a backend's own "prompt too long" refusal:
the same search against the context the refusal names (else the catalog's), counting with the
tokenizer, or with the estimate scaled by what the refusal said the prompt really took; None
when that would drop nothing more.

May import: stdlib, msgspec, ``ollama_shim.routes.*``, ``ollama_shim.tokens``, ``ollama_shim.registry``,
``ollama_shim.errors``, ``ollama_shim.translate``, ``ollama_shim.wire``.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from dataclasses import replace

import msgspec

from ..errors import UpstreamError
from ..registry import Resolved
from ..tokens import tokenizer_for
from ..translate.request import ChatRequestPlan
from ..translate.truncation import (
    IMAGE_TOKENS,
    CutSearch,
    Overflow,
    budget_for,
    estimated_tokens,
    image_count,
    kept_indices,
    surely_fits,
)
from ..wire import ollama as ow
from ..wire.openai import ChatCompletionRequest
from .state import AppState, log

Counter = Callable[[ChatCompletionRequest], Awaitable[int]]


async def fit(state: AppState, resolved: Resolved, req: ow.ChatRequest, plan: ChatRequestPlan) -> ChatRequestPlan:
    """``plan`` with the oldest messages dropped until its prompt fits; unchanged when it fits, when
    ``truncate`` is false or when the model's context is not known."""
    budget = budget_for(resolved.record.context_length, req.options)
    if req.truncate is False or budget is None or surely_fits(plan.request, budget.limit):
        return plan
    return await _searched(state, resolved, plan, budget.limit, _estimate)


async def refit(
    state: AppState, resolved: Resolved, req: ow.ChatRequest, plan: ChatRequestPlan, overflow: Overflow
) -> ChatRequestPlan | None:
    """``plan`` (refused as too long) cut further to fit; None when nothing more would be dropped."""
    budget = budget_for(overflow.context or resolved.record.context_length, req.options)
    if budget is None:
        return None
    estimate = estimated_tokens(plan.request)
    scale = max(1.0, (overflow.prompt_tokens or 0) / estimate)

    async def scaled(request: ChatCompletionRequest) -> int:
        return math.ceil(estimated_tokens(request) * scale)

    fitted = await _searched(state, resolved, plan, budget.limit, scaled)
    return fitted if len(fitted.request.messages) < len(plan.request.messages) else None


async def _estimate(request: ChatCompletionRequest) -> int:
    return estimated_tokens(request)


async def _searched(
    state: AppState, resolved: Resolved, plan: ChatRequestPlan, limit: int, fallback: Counter
) -> ChatRequestPlan:
    """The longest fitting tail of ``plan``'s chat: counted by the backend's tokenizer if it has
    one, by ``fallback`` if not or if the tokenizer fails."""
    tokenizer = tokenizer_for(state.upstream, resolved)
    if tokenizer is not None:

        async def exact(request: ChatCompletionRequest) -> int:
            images = sum(image_count(m) for m in request.messages)
            return await tokenizer.prompt_tokens(request) + IMAGE_TOKENS * images

        try:
            return _logged(resolved, plan, limit, *await _search(plan, limit, exact))
        except UpstreamError as exc:
            log.warning("cannot count tokens on %s (%s); estimating instead", resolved.backend.root, exc.message)
    return _logged(resolved, plan, limit, *await _search(plan, limit, fallback))


async def _search(plan: ChatRequestPlan, limit: int, count: Counter) -> tuple[ChatRequestPlan, int]:
    """``plan`` cut where ``CutSearch`` decides, and how many counts that took."""
    messages = plan.request.messages
    roles = [m.role for m in messages]

    def kept(cut: int) -> ChatCompletionRequest:
        return msgspec.structs.replace(plan.request, messages=[messages[i] for i in kept_indices(roles, cut)])

    search = CutSearch(len(messages), limit)
    while (cut := search.next_cut()) is not None:
        search.report(await count(kept(cut)))
    return replace(plan, request=kept(search.cut)) if search.cut else plan, search.counts


def _logged(
    resolved: Resolved, plan: ChatRequestPlan, limit: int, fitted: ChatRequestPlan, counts: int
) -> ChatRequestPlan:
    dropped = len(plan.request.messages) - len(fitted.request.messages)
    if dropped:
        log.info("dropped the %d oldest of %d messages to fit %s in %d prompt tokens (%d counts)", dropped,
                 len(plan.request.messages), resolved.record.upstream_id, limit, counts)
    return fitted
