"""Forward a client API request to a backend that speaks that API itself (``Dialect.native_apis``).

``forward_json`` sends the JSON body to the backend's same path with ``model`` set to the backend's
id, and streams the answer back chunk by chunk with that id turned back into the client's name:

- an event stream is rewritten line by line: a ``data:`` line that mentions ``"model"`` is parsed,
  and every ``model`` field holding the backend's id (at the top level or one object down, as in
  ``message_start.message`` or ``response.created.response``) gets the client's name; every
  other line goes out as it came. A line longer than ``limits.sse_line_bytes`` ends the stream;
- a JSON answer is read whole (at most ``limits.response_bytes``) and rewritten the same way;
- an error answer becomes ``UpstreamStatus`` with the backend's message and status, so the route's
  error shape applies; "model not loaded" answers are loaded and retried as in ``routes.relay``.

Request headers are filtered as the ``/v1`` passthrough filters them (``routes.passthrough``);
``Accept-Encoding`` is not forwarded (the answer must be readable to be rewritten) and neither is
the client's ``x-api-key`` when it was the shim's own key. Timeouts and closing the backend's
request when the client leaves come with ``Upstream.forward`` and ``Upstream.chunks``.

May import: aiohttp.web, multidict, msgspec, stdlib, ``ollama_shim.routes.*``, ``ollama_shim.registry``,
``ollama_shim.errors``, ``ollama_shim.upstream`` (its pure ``error_message``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import msgspec
from aiohttp import ClientResponse, web

from ..errors import BadRequest, UpstreamError, UpstreamProtocol, UpstreamStatus
from ..registry import Resolved
from ..upstream import error_message
from .http import off_loop
from .passthrough import request_headers, response_headers
from .relay import with_load_retry
from .state import AppState, log

_NOT_FORWARDED = frozenset({"accept-encoding", "content-encoding", "content-type"})
_JSON = {"Content-Type": "application/json"}


class ModelRenamer:
    """Turns the backend's model id back into the client's name in an event stream (``feed`` and
    ``close``, bytes in, bytes out) or in one JSON document (``document``)."""

    def __init__(self, upstream_id: str, client_name: str, *, max_line: int) -> None:
        self._upstream_id = upstream_id
        self._client_name = client_name
        self._max_line = max_line
        self._partial: list[bytes] = []  # the unterminated last line, in the pieces it came in
        self._partial_bytes = 0

    def feed(self, data: bytes) -> bytes:
        """The complete lines in ``self``'s buffer plus ``data``, rewritten; the rest is kept. Each
        byte is looked at once, however the line is cut."""
        end = data.rfind(b"\n") + 1
        if not end:
            self._keep(data)
            return b""
        lines = b"".join((*self._partial, data[:end]))
        self._partial, self._partial_bytes = [], 0
        self._keep(data[end:])
        return b"".join(self._line(line) for line in lines.splitlines(keepends=True))

    def close(self) -> bytes:
        """The unterminated last line, rewritten."""
        rest = b"".join(self._partial)
        self._partial, self._partial_bytes = [], 0
        return self._line(rest) if rest else b""

    def _keep(self, piece: bytes) -> None:
        if piece:
            self._partial.append(piece)
            self._partial_bytes += len(piece)
        if self._partial_bytes > self._max_line:
            self._partial, self._partial_bytes = [], 0
            raise UpstreamProtocol(f"backend sent an event-stream line longer than {self._max_line} bytes")

    def document(self, body: bytes) -> bytes:
        """A whole JSON answer with its model fields renamed; anything else unchanged."""
        return self._json(body) if b'"model"' in body else body

    def _line(self, line: bytes) -> bytes:
        if not line.startswith(b"data:") or b'"model"' not in line:
            return line
        content = line.rstrip(b"\r\n")
        ending = line[len(content):]
        payload = content[5:]
        space = b" " if payload.startswith(b" ") else b""
        return b"data:" + space + self._json(payload.removeprefix(b" ")) + ending

    def _json(self, text: bytes) -> bytes:
        try:
            doc = msgspec.json.decode(text)
        except (msgspec.DecodeError, RecursionError):
            return text  # not ours to judge: the client reads it as the backend wrote it
        if not isinstance(doc, dict) or not self._rename(doc):
            return text
        return msgspec.json.encode(doc)

    def _rename(self, doc: dict[str, Any]) -> bool:
        changed = False
        for holder in (doc, *(value for value in doc.values() if isinstance(value, dict))):
            if holder.get("model") == self._upstream_id:
                holder["model"] = self._client_name
                changed = True
        return changed


def _headers(request: web.Request, state: AppState) -> dict[str, str]:
    headers = request_headers(request, state)
    dropped = _NOT_FORWARDED | ({"x-api-key"} if state.settings.api_key else set())
    return {**{k: v for k, v in headers.items() if k.lower() not in dropped}, **_JSON}


async def raw_object(request: web.Request) -> dict[str, Any]:
    """The body as a JSON object (already validated by ``read_body``), for forwarding."""
    body = await request.read()
    doc = await off_loop(request, lambda: msgspec.json.decode(body))
    if not isinstance(doc, dict):
        raise BadRequest("the request body must be a JSON object")
    return doc


async def forward_json(
    request: web.Request, state: AppState, resolved: Resolved, path: str, body: dict[str, Any],
    client_model: str, error_frame: Callable[[int, str], bytes],
) -> web.StreamResponse:
    """POST ``body`` to the backend's ``path`` (with the client's query string) as ``resolved``'s
    model; stream the answer back with the client's model name. ``error_frame`` renders a failure
    after the answer began, as one last event-stream frame."""
    # A large body is encoded off the event loop, once, for the replica tried first.
    first = await off_loop(request, lambda: msgspec.json.encode({**body, "model": resolved.record.upstream_id}))
    query = request.rel_url.raw_query_string
    path_qs = path + (f"?{query}" if query else "")
    headers = _headers(request, state)
    limits = state.settings.limits
    async with contextlib.AsyncExitStack() as stack:

        async def attempt(on: Resolved) -> tuple[Resolved, ClientResponse]:
            same = on.record.upstream_id == resolved.record.upstream_id
            sent = first if same else msgspec.json.encode({**body, "model": on.record.upstream_id})
            opened = contextlib.AsyncExitStack()
            upstream = await opened.enter_async_context(
                state.upstream.forward(on.backend, "POST", path_qs, headers, sent))
            if upstream.status >= 400:
                async with opened:
                    text = error_message(await state.upstream.error_body(on.backend, upstream))
                raise UpstreamStatus(text or f"backend answered HTTP {upstream.status}", upstream.status)
            stack.push_async_callback(opened.aclose)
            return on, upstream

        replica, upstream = await with_load_retry(state, resolved, attempt, body=lambda: msgspec.json.encode(body),
                                                   hold=stack)
        backend = replica.backend
        renamer = ModelRenamer(replica.record.upstream_id, client_model, max_line=limits.sse_line_bytes)
        if "event-stream" not in upstream.headers.get("Content-Type", ""):
            whole = await _read_capped(state, replica, upstream, limits.response_bytes)
            headers_out = response_headers(upstream)
            return web.Response(status=upstream.status, headers=headers_out, body=renamer.document(whole))
        response = web.StreamResponse(status=upstream.status, headers=response_headers(upstream))
        await response.prepare(request)
        try:
            async for data in state.upstream.chunks(backend, upstream):
                rewritten = renamer.feed(data)
                if rewritten:
                    await response.write(rewritten)
            await response.write(renamer.close())
        except UpstreamError as exc:
            log.warning("%s from %s broke: %s", path, backend.root, exc.message)
            await response.write(error_frame(exc.status, exc.message))
        await response.write_eof()
        return response


async def _read_capped(state: AppState, resolved: Resolved, upstream: ClientResponse, cap: int) -> bytes:
    parts: list[bytes] = []
    size = 0
    async for data in state.upstream.chunks(resolved.backend, upstream):
        size += len(data)
        if size > cap:
            raise UpstreamProtocol(f"backend at {resolved.backend.root} sent an answer larger than {cap} bytes")
        parts.append(data)
    return b"".join(parts)
