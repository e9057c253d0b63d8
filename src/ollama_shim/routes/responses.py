"""``POST /v1/responses`` (the OpenAI Responses API, stateless as Ollama's): parse -> resolve ->
translate -> relay.

The body becomes an ``/api/chat`` request (``translate.responses_request``), which the chat
translation takes to the backend's ``/v1/chat/completions``; the answer runs through the relay's
pipeline loop with a ``ResponsesTranslator`` (``translate.responses_stream``): streamed as
``event:``/``data:`` Server-Sent Events (``ResponsesEventStream``), or assembled into the one
``response`` object. The model is named as the client named it, in and out. A custom model's
layers are laid on that ``/api/chat`` request as ``/api/chat`` lays them, and a history longer than
the model's context is cut as there (``fitting.sent_fitted``).

Errors before the first byte are rendered by ``app.error_boundary`` with ``error_response`` (OpenAI's
``{"error": {"message", "type", "param", "code"}}``); after it, as one ``error`` event that ends the
stream.

May import: aiohttp.web, stdlib, ``ollama_shim.routes.*``, ``ollama_shim.translate``,
``ollama_shim.registry``, ``ollama_shim.custom_models``, ``ollama_shim.errors``, ``ollama_shim.wire``.
"""

from __future__ import annotations

import secrets
import time

from aiohttp import web

from ..custom_models import CustomModels
from ..errors import BadRequest
from ..registry import Resolved
from ..translate.catalog import COMPLETION
from ..translate.customise import apply_customisation
from ..translate.request import Delivery, chat_request_to_openai
from ..translate.response import completion_as_chunk
from ..translate.responses_request import response_template, responses_to_chat
from ..translate.responses_stream import ResponsesTranslator
from ..translate.stream import StreamContext, StreamTranslator
from ..wire import responses as rw
from ..wire.openai import ChatCompletion, ChatCompletionRequest
from . import fitting, native, relay
from .generation import check_images
from .http import encode, json_response, off_loop, read_body
from .state import AppState, state_of

PATH = "/v1/responses"
NATIVE_API = "responses"  # the name in Dialect.native_apis
_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                404: "not_found_error", 413: "invalid_request_error", 429: "rate_limit_error"}


def responses_error_body(status: int, message: str) -> rw.ErrorEnvelope:
    """OpenAI's error object for an HTTP status: ``invalid_request_error`` and friends for 4xx,
    ``api_error`` otherwise."""
    return rw.ErrorEnvelope(rw.ErrorDetail(message=message, type=_ERROR_TYPES.get(status, "api_error")))


def error_response(status: int, message: str) -> web.Response:
    return json_response(responses_error_body(status, message), status)


class ResponsesEventStream(relay.SseStream[rw.ResponsesEvent]):
    """The relay's event stream, whose failure after the first event is one ``error`` event numbered
    after the last one, and the end."""

    def __init__(self, request: web.Request) -> None:
        super().__init__(request, self._error_event)
        self._next_sequence = 0

    async def write_many(self, chunks: list[rw.ResponsesEvent]) -> None:
        if chunks:
            self._next_sequence = chunks[-1].sequence_number + 1
        await super().write_many(chunks)

    def _error_event(self, status: int, message: str) -> rw.ErrorEvent:
        return rw.ErrorEvent(sequence_number=self._next_sequence, message=message)


def new_response_id() -> str:
    return f"resp_{secrets.token_hex(12)}"


def _serves_natively(state: AppState, resolved: Resolved) -> bool:
    """Whether ``resolved``'s backend answers ``/v1/responses`` itself, so the request is forwarded
    (model name mapped both ways) instead of translated; ``--translate-native-apis`` says no."""
    return NATIVE_API in resolved.dialect.native_apis and not state.settings.translate_native_apis


def _error_frame(status: int, message: str) -> bytes:
    return relay.SseStream.frame(rw.ErrorEvent(sequence_number=0, message=message))


async def create(request: web.Request) -> web.StreamResponse:
    started_ns = time.monotonic_ns()
    req = await read_body(request, rw.ResponsesRequest)
    # Every check of the body, before a backend is asked anything; a long history costs milliseconds
    # to translate and encode: large bodies do it off the event loop (here and below).
    chat = await off_loop(request, lambda: responses_to_chat(req))
    state = state_of(request)
    resolved, custom = await CustomModels.of(request.app, state.settings).resolve(state.registry, req.model)
    if COMPLETION not in resolved.record.capabilities:
        raise BadRequest(f'"{req.model}" does not support chat')
    check_images(resolved, chat)
    chat = apply_customisation(chat, custom) if custom is not None else chat  # as /api/chat lays them
    if _serves_natively(state, resolved) and custom is None:
        return await native.forward_json(
            request, state, resolved, PATH, await native.raw_object(request), req.model, _error_frame
        )
    delivery = Delivery.choose(bool(req.stream), resolved.dialect)
    plan = await off_loop(request, lambda: chat_request_to_openai(chat, resolved.record.upstream_id, resolved.dialect,
                                                                   delivery))
    state.note_ignored(plan.ignored_options, resolved.dialect.kind)
    ctx = StreamContext(model=req.model, endpoint="chat", started_ns=started_ns,
                        hide_thinking=chat.think is False, want_tool_calls=bool(chat.tools))
    template = response_template(req, new_response_id(), time.time_ns() // 1_000_000_000)
    made: list[ResponsesTranslator] = []

    def make() -> ResponsesTranslator:
        translator = ResponsesTranslator(
            StreamTranslator(ctx), template, max_text_bytes=state.settings.limits.gathered_bytes
        )
        made.append(translator)
        return translator

    def final(_: list[rw.ResponsesEvent]) -> rw.ResponseObject:
        response = made[-1].response
        if response is None:
            raise AssertionError("the translator finished without a response object")
        return response

    # The translator bounds the text it assembles itself (max_text_bytes): events count as 0 here.
    answer = relay.Answer(make, ResponsesEventStream, final, lambda _: 0)

    async def send(fitted: ChatCompletionRequest) -> web.StreamResponse:
        body = await off_loop(request, lambda: encode(fitted))
        if delivery is Delivery.STREAM:
            return await relay.stream_answer(request, state, resolved, plan.path, body, answer)
        if delivery is Delivery.GATHER:
            return await relay.gather_answer(state, resolved, plan.path, body, answer)
        await _whole(state, resolved, plan.path, body, make())
        return json_response(final([]))

    return await fitting.sent_fitted(state, resolved, plan.request, chat.options, send)


async def _whole(state: AppState, resolved: Resolved, path: str, body: bytes, translator: ResponsesTranslator) -> None:
    """A backend that is not asked to stream: its one completion replayed through the translator."""
    async def attempt(on: Resolved) -> ChatCompletion:
        return await state.upstream.post_json(on.backend, path, relay.aimed(body, resolved, on), ChatCompletion)

    completion = await relay.with_load_retry(state, resolved, attempt, body=body)
    translator.feed_chunk(completion_as_chunk(completion))
    translator.finish()
