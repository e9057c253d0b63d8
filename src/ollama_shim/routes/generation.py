"""``POST /api/chat`` and ``POST /api/generate``: parse -> resolve -> translate -> relay.

A request with no messages (chat) or no prompt (generate) only loads the model, or unloads it
with ``keep_alive: 0``, and is answered with ``done_reason: "load"``/``"unload"`` as Ollama
does, without a completion. ``keep_alive: 0`` on a real request unloads after it.

May import: aiohttp.web, stdlib, ``ollama_shim.routes.*``, ``ollama_shim.translate``,
``ollama_shim.registry``, ``ollama_shim.errors``, ``ollama_shim.timefmt``, ``ollama_shim.wire``.
"""

from __future__ import annotations

import contextlib
import time

from aiohttp import web

from ..errors import BadRequest, ModelNotFound, ShimError
from ..registry import Resolved
from ..timefmt import utc_timestamp
from ..translate.catalog import COMPLETION, INSERT
from ..translate.request import (
    ChatRequestPlan,
    chat_request_to_openai,
    generate_request_to_openai,
    is_load_request,
    load_done_reason,
    wants_unload,
)
from ..translate.stream import StreamContext
from ..wire import ollama as ow
from . import relay
from .http import encode, json_response, read_body
from .state import AppState, state_of


def _check_can_complete(resolved: Resolved, model: str, verb: str) -> None:
    if COMPLETION not in resolved.record.capabilities:
        raise BadRequest(f'"{model}" does not support {verb}')


async def _load_only(state: AppState, resolved: Resolved, keep_alive: object) -> str:
    reason = load_done_reason(keep_alive)
    if reason == "unload":
        await state.loader.unload(resolved)
    else:
        await state.loader.load(resolved)
    return reason


async def _run(
    request: web.Request, state: AppState, resolved: Resolved, plan_body: tuple[str, bytes], ctx: StreamContext,
    *, streaming: bool, keep_alive: object,
) -> web.StreamResponse:
    path, body = plan_body
    if streaming:
        response = await relay.stream(request, state, resolved, path, body, ctx)
    elif resolved.dialect.stream_upstream:
        response = await relay.gather(state, resolved, path, body, ctx)
    else:
        response = await relay.complete(state, resolved, path, body, ctx)
    if wants_unload(keep_alive):
        with contextlib.suppress(ShimError):
            await state.loader.unload(resolved)
    return response


async def chat(request: web.Request) -> web.StreamResponse:
    started = time.monotonic_ns()
    state = state_of(request)
    req = await read_body(request, ow.ChatRequest)
    if not req.model:
        raise BadRequest("model is required")
    resolved = await state.registry.resolve(req.model)
    _check_can_complete(resolved, req.model, "chat")
    if is_load_request(req):
        reason = await _load_only(state, resolved, req.keep_alive)
        message = ow.ResponseMessage(role="assistant", content="")
        done = ow.ChatChunk(model=req.model, created_at=utc_timestamp(time.time_ns()), message=message,
                            done=True, done_reason=reason)
        return json_response(done)
    streaming = req.stream is not False
    upstream_streams = streaming or resolved.dialect.stream_upstream
    plan = chat_request_to_openai(req, resolved.record.upstream_id, resolved.dialect, stream=upstream_streams)
    state.note_ignored(plan.ignored_options, resolved.dialect.kind)
    ctx = StreamContext(model=req.model, endpoint="chat", started_ns=started, hide_thinking=req.think is False,
                        want_tool_calls=bool(req.tools))
    target = ("/v1/chat/completions", encode(plan.request))
    return await _run(request, state, resolved, target, ctx, streaming=streaming, keep_alive=req.keep_alive)


async def generate(request: web.Request) -> web.StreamResponse:
    started = time.monotonic_ns()
    state = state_of(request)
    req = await read_body(request, ow.GenerateRequest)
    if not req.model:
        raise ModelNotFound("")  # Ollama answers 404 "model '' not found" here, not 400
    resolved = await state.registry.resolve(req.model)
    _check_can_complete(resolved, req.model, "generate")
    if req.suffix and INSERT not in resolved.record.capabilities:
        raise BadRequest(f'"{req.model}" does not support insert')
    if is_load_request(req):
        reason = await _load_only(state, resolved, req.keep_alive)
        done = ow.GenerateChunk(model=req.model, created_at=utc_timestamp(time.time_ns()), response="",
                                done=True, done_reason=reason)
        return json_response(done)
    streaming = req.stream is not False
    upstream_streams = streaming or resolved.dialect.stream_upstream
    plan = generate_request_to_openai(req, resolved.record.upstream_id, resolved.dialect, stream=upstream_streams)
    state.note_ignored(plan.ignored_options, resolved.dialect.kind)
    path = "/v1/chat/completions" if isinstance(plan, ChatRequestPlan) else "/v1/completions"
    ctx = StreamContext(model=req.model, endpoint="generate", started_ns=started, hide_thinking=req.think is False,
                        want_tool_calls=False)
    target = (path, encode(plan.request))
    return await _run(request, state, resolved, target, ctx, streaming=streaming, keep_alive=req.keep_alive)
