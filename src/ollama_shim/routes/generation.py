"""``POST /api/chat`` and ``POST /api/generate``: parse -> resolve -> translate -> relay.

After parsing, both share one path: resolve the model, check what it can do, choose the
``Delivery`` once (from ``stream`` and the backend's dialect), build the plan with it and hand it
to ``relay.deliver``. A request with no messages (chat) or no prompt (generate) only loads the
model, or unloads it with ``keep_alive: 0``, and is answered with ``done_reason: "load"``/
``"unload"`` as Ollama does, without a completion. ``keep_alive: 0`` on a real request unloads
after it; either unloads on every replica of the model (``Loader.unload_everywhere``). Other
keep_alive values are kept by ``idle_unload`` where the backend has no idle timer (the request
counts as in flight until its answer is written). A ``num_ctx`` larger than the loaded context
reloads the model where the backend allows (``Loader.fit_context``).

A chat longer than the model's context loses its oldest messages first (``routes.fitting``);
a backend's own "prompt too long" refusal is answered 400, in Ollama's words with
``truncate: false``, after one retry cut to fit otherwise. A final assistant message is a
prefill: its echo is removed from the answer where the backend repeats it (``translate.prefill``).

May import: aiohttp.web, stdlib, ``ollama_shim.routes.*``, ``ollama_shim.translate``,
``ollama_shim.registry``, ``ollama_shim.errors``, ``ollama_shim.timefmt``, ``ollama_shim.wire``,
``ollama_shim.custom_models``, ``ollama_shim.idle_unload``, ``ollama_shim.loader``.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import replace

from aiohttp import web

from ..custom_models import CustomModels
from ..errors import BadRequest, ModelNotFound, ShimError, UpstreamStatus
from ..idle_unload import IdleUnloader, unloader_of
from ..loader import num_ctx_of
from ..registry import Resolved
from ..timefmt import utc_timestamp
from ..tokens import tokenizer_for
from ..translate.catalog import COMPLETION, INSERT, VISION
from ..translate.customise import customise_plan, customise_request
from ..translate.prefill import echoed_prefix
from ..translate.request import (
    ChatRequestPlan,
    Delivery,
    GenerationPlan,
    chat_request_to_openai,
    generate_request_to_openai,
    is_load_request,
    load_done_reason,
    parse_keep_alive,
    ttl_seconds,
    wants_unload,
)
from ..translate.stream import OllamaChunk, StreamContext
from ..translate.truncation import OLLAMA_TOO_LONG, context_overflow
from ..wire import ollama as ow
from ..wire.openai import ChatCompletionRequest
from . import fitting, relay
from .generate_context import ContextIds
from .http import encode, json_response, off_loop, read_body
from .state import AppState, log, state_of

GenerationRequest = ow.ChatRequest | ow.GenerateRequest


async def chat(request: web.Request) -> web.StreamResponse:
    started = time.monotonic_ns()
    req = await read_body(request, ow.ChatRequest)
    if not req.model:
        raise BadRequest("model is required")
    return await _answer(request, req, started)


async def generate(request: web.Request) -> web.StreamResponse:
    started = time.monotonic_ns()
    req = await read_body(request, ow.GenerateRequest)
    if not req.model:
        raise ModelNotFound("")  # Ollama answers 404 "model '' not found" here, not 400
    return await _answer(request, req, started)


async def _answer(request: web.Request, req: GenerationRequest, started_ns: int) -> web.StreamResponse:
    state = state_of(request)
    resolved, custom = await CustomModels.of(request.app, state.settings).resolve(state.registry, req.model)
    _check_can_answer(resolved, req)
    check_images(resolved, req)
    unloader = unloader_of(request.app)
    if is_load_request(req):
        return json_response(_load_answer(req, await _load_only(state, unloader, resolved, req.keep_alive)))
    req = customise_request(req, custom)  # a custom model's system prompt, messages and parameters
    resolved = await _fit_context(state, resolved, req)
    # A long history costs milliseconds to translate and encode: large bodies do it off the event loop.
    plan = await off_loop(request, lambda: customise_plan(
        _plan(req, resolved, Delivery.choose(req.stream, resolved.dialect)), req, custom, resolved.dialect))
    state.note_ignored(plan.ignored_options, resolved.dialect.kind)
    is_chat = isinstance(req, ow.ChatRequest)
    ctx = StreamContext(
        model=req.model,
        endpoint="chat" if is_chat else "generate",
        started_ns=started_ns,
        hide_thinking=req.think is False,
        want_tool_calls=isinstance(req, ow.ChatRequest) and bool(req.tools),
        echoed_prefix=echoed_prefix(req.messages, resolved.dialect) if isinstance(req, ow.ChatRequest) else "",
    )
    # In flight: a model the shim unloads when idle stays loaded; its keep_alive counts from the end.
    ttl = None if resolved.record.loaded else ttl_seconds(req.keep_alive, resolved.dialect)
    async with unloader.using(resolved, parse_keep_alive(req.keep_alive), ttl=ttl):
        response = await _delivered(request, state, resolved, req, plan, ctx)
    if wants_unload(req.keep_alive):
        unloader.forget(resolved)
        with contextlib.suppress(ShimError):
            await state.loader.unload_everywhere(resolved)
    return response


async def _delivered(
    request: web.Request, state: AppState, resolved: Resolved, req: GenerationRequest, plan: GenerationPlan,
    ctx: StreamContext,
) -> web.StreamResponse:
    """The relayed answer. A chat (unless ``truncate: false``) is cut to fit the context, and once more
    after a backend's "prompt too long" refusal (``fitting.sent_fitted``); otherwise that refusal
    before the first byte is Ollama's 400."""
    if isinstance(req, ow.ChatRequest) and isinstance(plan, ChatRequestPlan) and req.truncate is not False:
        chat_plan = plan

        async def send(fitted: ChatCompletionRequest) -> web.StreamResponse:
            return await _relayed(request, state, resolved, req, replace(chat_plan, request=fitted), ctx)

        return await fitting.sent_fitted(state, resolved, plan.request, req.options, send)
    try:
        return await _relayed(request, state, resolved, req, plan, ctx)
    except UpstreamStatus as exc:
        if context_overflow(exc.message) is None:
            raise
        raise BadRequest(OLLAMA_TOO_LONG if req.truncate is False else exc.message) from exc


async def _relayed(
    request: web.Request, state: AppState, resolved: Resolved, req: GenerationRequest, plan: GenerationPlan,
    ctx: StreamContext,
) -> web.StreamResponse:
    """The answer relayed; a non-raw generate's done chunk gets ``context`` (``generate_context``)."""
    body = await off_loop(request, lambda: encode(plan.request))
    amend = None
    if isinstance(req, ow.GenerateRequest) and not req.raw:
        amend = ContextIds(tokenizer_for(state.upstream, resolved), plan, state.settings.limits.gathered_bytes)
    return await relay.deliver(plan.delivery, request, state, resolved, plan.path, body, ctx, amend)


def _check_can_answer(resolved: Resolved, req: GenerationRequest) -> None:
    verb = "chat" if isinstance(req, ow.ChatRequest) else "generate"
    if COMPLETION not in resolved.record.capabilities:
        raise BadRequest(f'"{req.model}" does not support {verb}')
    if isinstance(req, ow.GenerateRequest) and req.suffix and INSERT not in resolved.record.capabilities:
        raise BadRequest(f'"{req.model}" does not support insert')


def check_images(resolved: Resolved, req: GenerationRequest) -> None:
    """Images for a model its backend says cannot see: 400 here rather than the backend's 500."""
    messages = (req.messages or []) if isinstance(req, ow.ChatRequest) else [req]  # generate: its own images
    if any(m.images for m in messages) and resolved.record.lacks(VISION):
        raise BadRequest(f'"{req.model}" does not support images')


def _plan(req: GenerationRequest, resolved: Resolved, delivery: Delivery) -> GenerationPlan:
    upstream_id, dialect = resolved.record.upstream_id, resolved.dialect
    if isinstance(req, ow.ChatRequest):
        return chat_request_to_openai(req, upstream_id, dialect, delivery)
    return generate_request_to_openai(req, upstream_id, dialect, delivery)


async def _load_only(state: AppState, unloader: IdleUnloader, resolved: Resolved, keep_alive: ow.KeepAlive) -> str:
    reason = load_done_reason(keep_alive)
    if reason == "unload":
        unloader.forget(resolved)
        await state.loader.unload_everywhere(resolved)  # on every replica
    else:
        await state.loader.load(resolved)
        unloader.loaded(resolved, parse_keep_alive(keep_alive))  # its keep_alive counts from now
    return reason


async def _fit_context(state: AppState, resolved: Resolved, req: GenerationRequest) -> Resolved:
    """The model at the request's ``num_ctx`` where the backend can load it so (``Loader.fit_context``);
    a backend that fails to is logged, and the request goes on at the context there is."""
    try:
        return await state.loader.fit_context(resolved, num_ctx_of(req.options))
    except ShimError as exc:
        log.warning("could not load %s at num_ctx: %s", resolved.record.upstream_id, exc.message)
        return resolved


def _load_answer(req: GenerationRequest, reason: str) -> OllamaChunk:
    created_at = utc_timestamp(time.time_ns())
    if isinstance(req, ow.ChatRequest):
        message = ow.ResponseMessage(role="assistant", content="")
        return ow.ChatChunk(model=req.model, created_at=created_at, message=message, done=True, done_reason=reason)
    return ow.GenerateChunk(model=req.model, created_at=created_at, response="", done=True, done_reason=reason)

