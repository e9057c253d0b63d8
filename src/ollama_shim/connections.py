"""Client connections, bounded in time and number, and malformed requests answered in Ollama's shape.

``ShimRunner`` is aiohttp's ``AppRunner`` with its connection protocol replaced by
``GuardedRequestHandler``, which adds what aiohttp 3.14 does not have (its ``keepalive_timeout``
already closes an idle kept-alive connection):

- ``head_timeout``: from a connection's start, or from the first byte of a later request, to the
  end of the request's headers. Past it the client gets 408 ``{"error"}`` and the connection is
  closed; a slowloris client that sends a header line every few seconds is dropped.
- ``body_timeout``: the longest pause while a request body arrives. Past it the handler's read
  fails with ``RequestTimeout`` (rendered 408 by the error boundary) and the connection closes.
- ``max_connections``: a connection beyond the cap is answered 503 and closed at once; the ones
  already open carry on. One warning when the cap is reached, one line when it is left.
- A request that is not valid HTTP (bad bytes in a header, headers too long or too many) is
  answered 400 ``{"error"}`` and logged in one line, without a traceback and without the
  offending bytes (they may be a key).

``raise_open_file_limit`` lifts the soft ``RLIMIT_NOFILE`` to the hard limit, so the cap, not
the file-descriptor limit, decides when connections are refused.

aiohttp exposes no hook for a custom protocol, so this module reads a few of ``RequestHandler``'s
attributes (``_waiter``, ``_messages``, ``_request_count``, ``_current_request``); they are
checked by ``tests/test_connections.py``.

May import: aiohttp, asyncio, logging, resource, stdlib, ``ollama_shim.errors``, ``ollama_shim.settings``.
"""

from __future__ import annotations

import asyncio
import logging
import resource
from typing import Any

import msgspec
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError, LineTooLong
from aiohttp.streams import StreamReader
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from .errors import ShimError
from .settings import Connections

log = logging.getLogger("ollama_shim")


class RequestTimeout(ShimError, TimeoutError):
    """A request body paused longer than ``body_timeout``. A ``TimeoutError`` too, so that aiohttp,
    draining the unread body after the handler, takes it as the timeout it is."""

    status = 408


def _reply(status: int, reason: str, message: str) -> bytes:
    """A whole HTTP/1.1 answer with a JSON error body that closes the connection."""
    body = msgspec.json.encode({"error": message})
    head = (f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n")
    return head.encode() + body


TOO_MANY = _reply(503, "Service Unavailable", "too many connections to ollama-shim; try again later")
HEAD_TOO_SLOW = _reply(408, "Request Timeout", "the request headers took too long to arrive")


def malformed_reason(exc: BaseException | None) -> str:
    """What was wrong with a request aiohttp could not parse, in words that quote none of its bytes."""
    if isinstance(exc, LineTooLong):
        return "request line or header too long"
    message = getattr(exc, "message", "")
    if isinstance(message, str) and ":\n" in message:  # llhttp: "<fixed reason>:\n\n  <the bytes>"
        reason = message.split(":\n", 1)[0].strip()
        if reason.isascii() and reason.isprintable() and len(reason) <= 80:
            return reason.lower()
    if isinstance(message, str) and message.startswith("Too many headers"):
        return "too many headers"
    return "not a valid HTTP/1.1 request"


class GuardedRequestHandler(RequestHandler):
    def __init__(self, manager: GuardedServer, *, limits: Connections, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._guard = manager
        self._limits = limits
        self._head_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._body: StreamReader | None = None
        self._admitted = False

    # -- connection ---------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if not self._guard.admit():
            assert isinstance(transport, asyncio.Transport)
            transport.write(TOO_MANY)
            transport.close()
            return
        self._admitted = True
        super().connection_made(transport)
        self._start_head_clock()

    def connection_lost(self, exc: BaseException | None) -> None:
        for timer in (self._head_timer, self._body_timer):
            if timer is not None:
                timer.cancel()
        self._head_timer = self._body_timer = None
        if self._admitted:
            super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if not self._admitted:
            return
        parsed = self._request_count
        super().data_received(data)
        if self._request_count != parsed:  # a request head is complete
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None
            self._body = self._messages[-1][1] if self._messages else None
        elif self._head_timer is None and self._current_request is None and not self._request_in_progress:
            self._start_head_clock()  # the first bytes of the next request
        self._restart_body_clock()

    # -- head ---------------------------------------------------------------------------------

    def _start_head_clock(self) -> None:
        if self._limits.head_timeout > 0:
            self._head_timer = self._loop.call_later(self._limits.head_timeout, self._head_expired,
                                                     self._request_count)

    def _head_expired(self, parsed: int) -> None:
        self._head_timer = None
        waiting = self._waiter is not None and not self._waiter.done()
        if self._request_count == parsed and waiting and self.transport is not None:
            log.debug("closed a client connection: no complete request head within %g s", self._limits.head_timeout)
            self.transport.write(HEAD_TOO_SLOW)
            self.force_close()

    # -- body ---------------------------------------------------------------------------------

    def _restart_body_clock(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None
        body = self._body
        if body is not None and not body.is_eof() and self._limits.body_timeout > 0:
            self._body_timer = self._loop.call_later(self._limits.body_timeout, self._body_expired, body)

    def _body_expired(self, body: StreamReader) -> None:
        self._body_timer = None
        if body.is_eof() or body.exception() is not None:
            return
        if self._reading_paused:  # the shim is not reading, so the client is not to blame
            self._restart_body_clock()
            return
        log.info("a client paused its request body for more than %g s; closing its connection",
                 self._limits.body_timeout)
        body.set_exception(RequestTimeout(f"the request body paused for more than {self._limits.body_timeout:g} s"))
        self.close()

    # -- malformed requests ------------------------------------------------------------------

    def handle_error(self, request: BaseRequest, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        if not isinstance(exc, HttpProcessingError):
            return super().handle_error(request, status, exc, message)
        reason = malformed_reason(exc)
        log.info("refused a malformed request from %s: %s", request.remote, reason)
        body = msgspec.json.encode({"error": f"malformed request: {reason}"})
        response = web.Response(status=status, body=body, content_type="application/json", charset="utf-8")
        response.force_close()
        return response


class GuardedServer(web.Server):
    """aiohttp's ``Server`` whose connections are ``GuardedRequestHandler`` and capped in number."""

    def __init__(self, plain: web.Server, limits: Connections) -> None:
        kwargs = dict(plain._kwargs)  # what the app and the runner asked of each connection
        super().__init__(plain.request_handler, request_factory=plain.request_factory,
                         handler_cancellation=plain.handler_cancellation, **kwargs)
        self._limits = limits
        self._handler_kwargs = kwargs
        self._refusing = False

    def __call__(self) -> RequestHandler:
        return GuardedRequestHandler(self, limits=self._limits, loop=asyncio.get_running_loop(),
                                     **self._handler_kwargs)

    def admit(self) -> bool:
        """Whether a new connection is within the cap; logs when the cap is reached and left."""
        cap = self._limits.max_connections
        open_now = len(self._connections)
        if cap and open_now >= cap:
            if not self._refusing:
                self._refusing = True
                log.warning("%d client connections are open, the limit (--max-connections): "
                            "refusing new ones until some close", open_now)
            return False
        if self._refusing and open_now < cap * 9 // 10:
            self._refusing = False
            log.info("client connections down to %d: accepting new ones again", open_now)
        return True


class ShimRunner(web.AppRunner):
    """``AppRunner`` serving through ``GuardedServer``, with the idle keep-alive timeout set."""

    def __init__(self, app: web.Application, limits: Connections, **kwargs: Any) -> None:
        super().__init__(app, keepalive_timeout=limits.keepalive_timeout, **kwargs)
        self._limits = limits

    async def _make_server(self) -> web.Server:
        return GuardedServer(await super()._make_server(), self._limits)


def raise_open_file_limit() -> int:
    """Raise the soft limit on open files to the hard one; return the soft limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = max(soft, 1 << 20)
    if soft == resource.RLIM_INFINITY or soft >= hard:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
    except (ValueError, OSError):  # some systems cap it below the hard limit
        return soft
    return hard
