"""``POST /v1/messages`` and ``POST /v1/messages/count_tokens``: the Anthropic Messages API.

A model whose backend speaks the API itself (``"messages"`` in its dialect's ``native_apis``) gets
the request forwarded (``routes.native``) unless ``Settings.translate_native_apis`` is set. Elsewhere
the request is translated (``translate.anthropic_request``) onto the backend's chat completions and
the answer comes back through the relay's pipeline as Anthropic events
(``translate.anthropic_stream``): streamed as an event stream, or assembled into one ``message``
for ``stream: false`` (the backend streams either way, so a client that leaves stops it).

The model is resolved as for ``/api/chat``; answers carry the name the client sent. A custom model
(``custom_models``) goes to its backend model with its layers: on the translated path laid on the
``/api/chat`` request the body means, exactly as ``/api/chat`` lays them; on the native path laid on
the forwarded body itself (``translate.anthropic_customise``: its system prompt where the request has
none, its messages first, its temperature/top_p/top_k/num_predict/stop as defaults of the Anthropic
fields). A custom model with a layer the Anthropic body cannot carry (a ``system`` message among its
messages, or another parameter the backend takes, such as ``seed`` or ``repeat_penalty``) is
translated instead of forwarded, so that no layer is dropped. The query
(``?beta=true``) and the ``anthropic-version``/``anthropic-beta`` headers are accepted and ignored.
Every error under ``/v1/messages`` has Anthropic's shape (``anthropic_error_response``, used by the
application's error boundary); after a stream began it is one ``event: error`` frame.

``count_tokens``: natively where the backend has it; on llama.cpp otherwise the translated request
rendered by ``/apply-template`` and counted by ``/tokenize``; elsewhere the estimate of
``translate.anthropic_request.estimate_input_tokens`` (ceil(characters / 4) plus 4 per message).

May import: aiohttp.web, msgspec, stdlib, ``ollama_shim.routes.*``, ``ollama_shim.translate``,
``ollama_shim.registry``, ``ollama_shim.errors``, ``ollama_shim.wire``, ``ollama_shim.custom_models``.
"""

from __future__ import annotations

import dataclasses
import secrets
import time
from typing import Any

import msgspec
from aiohttp import web

from ..custom_models import CustomModels
from ..errors import BadRequest, UpstreamStatus
from ..registry import Resolved
from ..translate.anthropic_customise import customised_messages_body
from ..translate.anthropic_request import (
    MessagesPlan,
    check_messages_request,
    estimate_input_tokens,
    messages_request_to_openai,
)
from ..translate.anthropic_stream import (
    AnthropicContext,
    AnthropicTranslator,
    assemble_message,
    error_object,
    event_text_bytes,
)
from ..translate.catalog import COMPLETION
from ..translate.customise import Customisation
from ..translate.prefill import echoed_prefix
from ..translate.stream import StreamContext, StreamTranslator
from ..translate.truncation import context_overflow
from ..wire import anthropic as am
from ..wire.openai import ChatCompletionRequest
from . import fitting, native, relay
from .generation import check_images
from .http import encode, json_response, off_loop, read_body
from .state import AppState, log, state_of

MESSAGES_PATH = "/v1/messages"
COUNT_TOKENS_PATH = "/v1/messages/count_tokens"
NATIVE_API = "messages"
_NO_TOKENIZER = (404, 405, 501)  # an older llama-server without /apply-template: estimate instead


def is_anthropic_path(path: str) -> bool:
    """Whether errors on ``path`` are answered in Anthropic's shape."""
    return path == MESSAGES_PATH or path.startswith(MESSAGES_PATH + "/")


def anthropic_error_response(status: int, message: str) -> web.Response:
    return json_response(error_object(status, message), status)


def _error_frame(status: int, message: str) -> bytes:
    return relay.SseStream.frame(error_object(status, message))


def _is_native(state: AppState, resolved: Resolved) -> bool:
    return NATIVE_API in resolved.dialect.native_apis and not state.settings.translate_native_apis


async def _native_body(
    request: web.Request, req: am.CountTokensRequest, resolved: Resolved, custom: Customisation | None, *,
    sampling: bool,
) -> dict[str, Any] | None:
    """The body to forward (with a custom model's layers); None: the custom model needs translating."""
    body = await native.raw_object(request)
    if custom is None:
        return body
    return customised_messages_body(body, req, custom, resolved.dialect, sampling=sampling)


async def messages(request: web.Request) -> web.StreamResponse:
    started_ns = time.monotonic_ns()
    req = await read_body(request, am.MessagesRequest)
    check_messages_request(req)
    state = state_of(request)
    resolved, custom = await CustomModels.of(request.app, state.settings).resolve(state.registry, req.model)
    if _is_native(state, resolved):
        forwarded = await _native_body(request, req, resolved, custom, sampling=True)
        if forwarded is not None:
            try:
                return await native.forward_json(request, state, resolved, MESSAGES_PATH, forwarded, req.model,
                                                 _error_frame)
            except UpstreamStatus as exc:
                if context_overflow(exc.message) is None:
                    raise
                log.info("%s refused the prompt as too long (%s); translating it to cut it to fit",
                         resolved.backend.root, exc.message)
    if COMPLETION not in resolved.record.capabilities:
        raise BadRequest(f'"{req.model}" does not support chat')
    # A long history costs milliseconds to translate, count and encode: large bodies do it off the event loop.
    plan, input_tokens = await off_loop(request, lambda: _translated(req, resolved, custom))
    check_images(resolved, plan.chat)
    state.note_ignored(plan.ignored_options, resolved.dialect.kind)
    inner = StreamContext(
        model=req.model, endpoint="chat", started_ns=started_ns, hide_thinking=plan.hide_thinking,
        want_tool_calls=plan.want_tool_calls, echoed_prefix=echoed_prefix(plan.chat.messages, resolved.dialect),
    )
    outer = AnthropicContext(
        model=req.model, message_id=f"msg_{secrets.token_hex(12)}", input_tokens=input_tokens,
    )

    def translator() -> AnthropicTranslator:
        loaded = dataclasses.replace(inner, load_ns=time.monotonic_ns() - started_ns)
        return AnthropicTranslator(outer, StreamTranslator(loaded))

    def writer(client: web.Request) -> relay.SseStream[am.StreamEvent]:
        return relay.SseStream(client, error_object)

    answer = relay.Answer(translator, writer, assemble_message, event_text_bytes)

    async def send(fitted: ChatCompletionRequest) -> web.StreamResponse:
        body = await off_loop(request, lambda: encode(fitted))
        if req.stream:
            return await relay.stream_answer(request, state, resolved, plan.path, body, answer)
        return await relay.gather_answer(state, resolved, plan.path, body, answer)

    return await fitting.sent_fitted(state, resolved, plan.request, plan.chat.options, send)


def _translated(
    req: am.MessagesRequest, resolved: Resolved, custom: Customisation | None
) -> tuple[MessagesPlan, int]:
    """The chat-completions plan for ``req`` and its input-token estimate."""
    plan = messages_request_to_openai(
        req, resolved.record.upstream_id, resolved.dialect, context_length=resolved.record.context_length,
        custom=custom,
    )
    return plan, estimate_input_tokens(req, custom)


async def count_tokens(request: web.Request) -> web.StreamResponse:
    req = await read_body(request, am.CountTokensRequest)
    if not req.model:
        raise BadRequest("model is required")
    if not req.messages:
        raise BadRequest("messages is required")
    state = state_of(request)
    resolved, custom = await CustomModels.of(request.app, state.settings).resolve(state.registry, req.model)
    if _is_native(state, resolved):
        forwarded = await _native_body(request, req, resolved, custom, sampling=False)
        if forwarded is not None:
            return await native.forward_json(request, state, resolved, COUNT_TOKENS_PATH, forwarded, req.model,
                                             _error_frame)
    count = None
    if resolved.dialect.kind == "llamacpp":
        count = await _llamacpp_count(request, state, resolved, req, custom)
    if count is None:
        count = await off_loop(request, lambda: estimate_input_tokens(req, custom))
    return json_response(am.TokenCount(input_tokens=count))


async def _llamacpp_count(
    request: web.Request, state: AppState, resolved: Resolved, req: am.CountTokensRequest,
    custom: Customisation | None,
) -> int | None:
    """The prompt's exact size: the translated chat rendered by the model's template, then tokenized.
    None when this llama-server has no ``/apply-template``."""
    full = am.MessagesRequest(**msgspec.structs.asdict(req), max_tokens=1)
    chat = await off_loop(request, lambda: encode(
        messages_request_to_openai(full, resolved.record.upstream_id, resolved.dialect, custom=custom).request))

    async def attempt(on: Resolved) -> int:
        rendered = await state.upstream.post_json(
            on.backend, "/apply-template", relay.aimed(chat, resolved, on), am.ApplyTemplateAnswer
        )
        tokenize = am.TokenizeRequest(content=rendered.prompt, model=on.record.upstream_id)
        answer = await state.upstream.post_json(on.backend, "/tokenize", encode(tokenize), am.TokenizeAnswer)
        return len(answer.tokens)

    try:
        return await relay.with_load_retry(state, resolved, attempt)
    except UpstreamStatus as exc:
        if exc.status in _NO_TOKENIZER:
            return None
        raise
