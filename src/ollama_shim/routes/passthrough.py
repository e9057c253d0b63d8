"""``/v1/*`` forwarded to a backend, so OpenAI clients (and Copilot's chat) use the same port.

The method, query, headers and body go through unchanged, with two exceptions. A ``model`` in a
JSON body that names a model by its Ollama name (as listed by ``/api/tags``) is rewritten to the
backend's own id, and picks the backend (one of the model's replicas, failed over before the
answer began as ``routes.relay`` does; an error answer is read whole first); a custom model is
rewritten to its backend model, and on ``/v1/chat/completions`` its system prompt, messages and
parameters are added to the body. And a ``/v1/chat/completions`` history longer than the model's
context loses its oldest messages, as ``/api/chat``'s does (``routes.fitting``; always, as the
OpenAI API has no ``truncate``); a backend's "prompt too long" refusal before the first byte is
followed by one retry cut to fit. The rest of the body is sent as it came. The response is
streamed back chunk by chunk. With several backends, ``GET /v1/models`` is their merged list.

What is not forwarded:

- a path with a dot segment in any encoding (400, before anything is sent), so no request leaves
  the backend's ``/v1`` root or its prefix; the path goes on the wire exactly as it came;
- a path not on the ``--passthrough`` allow-list (404), see ``translate.passthrough_paths``;
- request headers: hop-by-hop ones, those the client names in ``Connection``, ``Proxy-Connection``,
  ``Expect``, and ``Content-Encoding`` when the server already decoded the body;
- response headers: hop-by-hop ones, those the backend names in ``Connection``, ``Set-Cookie``,
  CORS headers (the shim sets its own) and ``Strict-Transport-Security``;
- a redirect: answered 502 (``Upstream.forward``);
- a configured key in an error answer (status >= 400, read whole, bounded by ``response_bytes``,
  gzip/deflate decoded): redacted to ``***``. Successful answers stream as raw bytes, unchanged.

May import: aiohttp.web, aiohttp.ClientResponse (the type), multidict, msgspec, stdlib,
``ollama_shim.routes.*``, ``ollama_shim.settings``, ``ollama_shim.errors``, ``ollama_shim.wire``,
``ollama_shim.translate.passthrough_paths``, ``ollama_shim.translate.customise``,
``ollama_shim.translate.truncation``, ``ollama_shim.custom_models``,
``ollama_shim.registry``, ``ollama_shim.upstream`` (its pure ``error_message``).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import msgspec
from aiohttp import ClientResponse, web
from multidict import CIMultiDict, MultiMapping

from ..custom_models import CustomModels
from ..errors import ShimError, UpstreamError, UpstreamStatus
from ..registry import Resolved
from ..settings import Backend
from ..translate.customise import customised_openai_chat
from ..translate.passthrough_paths import check_path, route_allowed
from ..translate.truncation import ForwardedChat, body_surely_fits, context_overflow, forwarded_chat
from ..upstream import error_message
from ..wire.backends import ModelListEntries
from . import fitting
from .http import off_loop
from .relay import aimed, with_load_retry
from .state import AppState, log, state_of

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
    }
)


CHAT_COMPLETIONS = "/v1/chat/completions"  # where a custom model's layers are applied
REQUEST_ONLY = frozenset({"expect", "proxy-connection"})
RESPONSE_ONLY = frozenset({"set-cookie", "set-cookie2", "strict-transport-security"})
# The request body codings aiohttp's server decodes before ``request.read()`` returns.
DECODED_BY_SERVER = frozenset({"gzip", "deflate", "br", "zstd"})


class _ModelField(msgspec.Struct):
    model: str | None = None


def _connection_listed(headers: MultiMapping[str]) -> set[str]:
    """The header names a ``Connection`` header lists (hop-by-hop by declaration), lower case."""
    return {name.strip().lower() for value in headers.getall("Connection", ()) for name in value.split(",")}


def request_headers(request: web.Request, state: AppState) -> dict[str, str]:
    dropped = HOP_BY_HOP | REQUEST_ONLY | _connection_listed(request.headers)
    if request.headers.get("Content-Encoding", "").lower() in DECODED_BY_SERVER:
        dropped |= {"content-encoding"}  # request.read() gives the decoded body
    if state.settings.api_key:  # the client's key was for the shim, not for the backend
        dropped |= {"authorization", "x-api-key"}
    return {k: v for k, v in request.headers.items() if k.lower() not in dropped}


def response_headers(upstream: ClientResponse, *, decoded: bool = False) -> CIMultiDict[str]:
    dropped = HOP_BY_HOP | RESPONSE_ONLY | _connection_listed(upstream.headers)
    if decoded:
        dropped |= {"content-encoding"}
    return CIMultiDict(
        (k, v) for k, v in upstream.headers.items()
        if k.lower() not in dropped and not k.lower().startswith("access-control-")
    )


def _raw_path_qs(request: web.Request) -> str:
    """The path and query as the client sent them (percent-encoding kept), origin-form."""
    url = request.rel_url
    return url.raw_path + (f"?{url.raw_query_string}" if url.raw_query_string else "")


def _check_route(request: web.Request, state: AppState) -> None:
    path = request.rel_url.raw_path
    check_path(path)
    if not route_allowed(path, state.settings.passthrough):
        shown = path[:200]
        raise ShimError(
            f"{shown} is not forwarded to the backend; allow it with --passthrough (for example "
            f"--passthrough '{shown}', or '/v1/**' for every /v1 route)",
            404,
        )


async def _route(request: web.Request, state: AppState, body: bytes) -> tuple[Resolved | None, bytes]:
    """The model the body names (None: the first backend answers), rewriting an Ollama name to the
    backend's id (and a custom model's chat completion to its backend model with its layers)."""
    if not body:
        return None, body
    try:
        requested = msgspec.json.decode(body, type=_ModelField).model
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None, body  # not ours to judge: the backend answers it
    if not requested:
        return None, body
    resolved, custom = await CustomModels.of(request.app, state.settings).resolve(state.registry, requested)
    if resolved.record.upstream_id != requested or custom is not None:
        doc: dict[str, Any] = msgspec.json.decode(body)
        doc["model"] = resolved.record.upstream_id
        if custom is not None and request.path == CHAT_COMPLETIONS:
            doc = customised_openai_chat(doc, custom, resolved.dialect)
        body = msgspec.json.encode(doc)
    return resolved, body


async def _merged_models(state: AppState) -> web.Response:
    """Every backend's entries as each sent them; a backend that is down is left out, unless all are."""
    merged: list[msgspec.Raw] = []
    failures: list[UpstreamError] = []
    for backend in state.settings.backends:
        try:
            merged.extend((await state.upstream.get_json(backend, "/v1/models", ModelListEntries)).data)
        except UpstreamError as exc:
            log.warning("model list from %s failed: %s", backend.root, exc.message)
            failures.append(exc)
    if len(failures) == len(state.settings.backends):
        raise failures[0]
    body = msgspec.json.encode({"object": "list", "data": merged})
    return web.Response(body=body, headers={"Content-Type": "application/json"})


async def forward(request: web.Request) -> web.StreamResponse:
    state = state_of(request)
    _check_route(request, state)
    if request.method == "GET" and request.path == "/v1/models" and len(state.settings.backends) > 1:
        return await _merged_models(state)
    body = await request.read()
    resolved = None
    if request.method == "POST":
        resolved, body = await _route(request, state, body)
    chat_model = resolved if request.path == CHAT_COMPLETIONS else None  # the history is fitted to it
    if chat_model is not None:
        body = await _fitted(request, state, chat_model, body)
    path_qs, headers = _raw_path_qs(request), request_headers(request, state)
    async with contextlib.AsyncExitStack() as stack:

        async def attempt(backend: Backend, sent: bytes) -> _Answer:
            async with contextlib.AsyncExitStack() as opened:
                upstream = await opened.enter_async_context(
                    state.upstream.forward(backend, request.method, path_qs, headers, sent or None))
                if upstream.status >= 400:  # small, and may echo a key: read whole and redacted
                    error = await state.upstream.error_body(backend, upstream)
                    raise _Refused(web.Response(status=upstream.status, reason=upstream.reason, body=error,
                                                headers=response_headers(upstream, decoded=True)))
                chunks = state.upstream.chunks(backend, upstream)
                first = await anext(chunks, None)  # before the first byte: another replica may still answer
                stack.push_async_callback(opened.pop_all().aclose)
            return _Answer(backend, upstream, first, chunks)

        async def send(sent: bytes) -> _Answer:
            if resolved is None:
                return await attempt(state.settings.backends[0], sent)
            model = resolved
            return await with_load_retry(
                state, model, lambda on: attempt(on.backend, aimed(sent, model, on)), body=sent, hold=stack)

        try:
            answer = await send(body)
        except _Refused as refused:
            retry = None if chat_model is None else await _refitted(request, state, chat_model, body, refused)
            if retry is None:
                return refused.reply
            try:
                answer = await send(retry)
            except _Refused as again:
                return again.reply
        return await _relayed(request, answer)


async def _fitted(request: web.Request, state: AppState, resolved: Resolved, body: bytes) -> bytes:
    """A chat completion's body with its oldest messages dropped to fit the model's context
    (``routes.fitting``); as it came when it fits, when the context is not known or when the body is
    not a chat the shim can read (the backend answers that)."""
    context = resolved.record.context_length
    if context is None or body_surely_fits(body, context):
        return body
    chat = await off_loop(request, lambda: _read_chat(body))
    if chat is None:
        return body
    fitted = await fitting.fit_forwarded(state, resolved, chat)
    return body if fitted is chat else await off_loop(request, lambda: msgspec.json.encode(fitted.doc))


async def _refitted(
    request: web.Request, state: AppState, resolved: Resolved, body: bytes, refused: _Refused
) -> bytes | None:
    """The body cut further when the backend refused it as too long; None when it did not, or when
    cutting would drop nothing more."""
    overflow = context_overflow(refused.message)
    if overflow is None:
        return None
    chat = await off_loop(request, lambda: _read_chat(body))
    retry = None if chat is None else await fitting.refit_forwarded(state, resolved, chat, overflow)
    if retry is None:
        return None
    log.info("%s refused the prompt as too long (%s); sending it cut to fit", resolved.backend.root, refused.message)
    return await off_loop(request, lambda: msgspec.json.encode(retry.doc))


def _read_chat(body: bytes) -> ForwardedChat | None:
    """The chat in a body, if it is one the shim can read; the backend answers any other."""
    try:
        return forwarded_chat(msgspec.json.decode(body))
    except (msgspec.DecodeError, RecursionError):
        return None


class _Refused(UpstreamStatus):
    """A backend's error answer, as the client gets it unless another replica answers instead."""

    def __init__(self, reply: web.Response) -> None:
        text = error_message(reply.body if isinstance(reply.body, bytes) else b"")
        super().__init__(text or f"backend answered HTTP {reply.status}", reply.status)
        self.reply = reply


class _Answer:
    """A backend's answer that began: the backend, its response, its first chunk and the rest."""

    def __init__(self, backend: Backend, upstream: ClientResponse, first: bytes | None,
                 rest: AsyncIterator[bytes]) -> None:
        self.backend, self.upstream, self.first, self.rest = backend, upstream, first, rest


async def _relayed(request: web.Request, answer: _Answer) -> web.StreamResponse:
    """The began answer streamed to the client as it comes."""
    upstream = answer.upstream
    response = web.StreamResponse(status=upstream.status, reason=upstream.reason, headers=response_headers(upstream))
    await response.prepare(request)
    try:
        if answer.first is not None:
            await response.write(answer.first)
            async for chunk in answer.rest:
                await response.write(chunk)
    except UpstreamError as exc:
        # The status line went out already: all that is left is to cut the stream short.
        log.warning("passthrough %s from %s broke: %s", request.path, answer.backend.root, exc.message)
        return response
    await response.write_eof()
    return response
