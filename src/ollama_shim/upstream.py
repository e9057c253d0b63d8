"""The one module that talks to backends: a pooled aiohttp ``ClientSession`` and its error mapping.

Every aiohttp or decoding failure is turned into an ``errors.Upstream*`` here, by ``_mapped``,
and nowhere else. Timeouts: ``connect`` bounds the connection,
``first_byte`` the wait for the response (and its first body chunk), ``idle`` the gap between
two body chunks, ``total`` the whole exchange. Leaving an ``async with`` early (a client that
went away cancels the handler) closes the upstream connection, so the backend stops generating.

May import: aiohttp, msgspec, stdlib, ``ollama_shim.settings``, ``ollama_shim.errors``, ``ollama_shim.wire``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Iterator, Mapping
from typing import Any, TypeVar

import aiohttp
import msgspec

from .errors import UpstreamError, UpstreamProtocol, UpstreamStatus, UpstreamTimeout, UpstreamUnreachable
from .settings import Backend, Timeouts
from .wire.openai import ErrorBody

T = TypeVar("T")

_JSON = {"Content-Type": "application/json"}
_ERROR_DECODER = msgspec.json.Decoder(ErrorBody)


def error_message(body: bytes) -> str:
    """The human message in a backend's error body, whatever shape it uses."""
    try:
        parsed = _ERROR_DECODER.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return body.decode("utf-8", "replace").strip()[:2000]
    if isinstance(parsed.error, str):
        return parsed.error
    if parsed.error is not None and parsed.error.message:
        return parsed.error.message
    return parsed.message or parsed.detail or body.decode("utf-8", "replace").strip()[:2000]


def _cause(exc: BaseException) -> str:
    """Why an aiohttp error happened, in a few words: the OS error if there was one."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.strerror:
            return seen.strerror
        seen = seen.__cause__ or seen.__context__
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "the connection closed before the end"
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


class Upstream:
    """HTTP access to the configured backends; owned by the app, closed at shutdown."""

    def __init__(self, timeouts: Timeouts) -> None:
        self.timeouts = timeouts
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300, enable_cleanup_closed=True)
        timeout = aiohttp.ClientTimeout(
            total=self.timeouts.total or None,
            sock_connect=self.timeouts.connect or None,
        )
        self._session = aiohttp.ClientSession(
            connector=connector, timeout=timeout, auto_decompress=False, skip_auto_headers=("User-Agent",)
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        assert self._session is not None, "Upstream.start() was not awaited"
        return self._session

    @staticmethod
    def _headers(backend: Backend, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        headers = dict(extra or {})
        if backend.key:
            headers["Authorization"] = f"Bearer {backend.key}"
        return headers

    def _mapped(self, backend: Backend, exc: BaseException) -> BaseException:
        """The ``Upstream*`` error an aiohttp or decoding failure means; anything else unchanged."""
        if isinstance(exc, UpstreamError):
            return exc
        if isinstance(exc, aiohttp.ConnectionTimeoutError):
            return UpstreamUnreachable(
                f"cannot reach backend at {backend.root}: no connection within {self.timeouts.connect:g} s"
            )
        if isinstance(exc, aiohttp.ClientConnectorError):
            return UpstreamUnreachable(f"cannot reach backend at {backend.root}: {exc.os_error or exc}")
        if isinstance(exc, TimeoutError | aiohttp.ServerTimeoutError):
            return UpstreamTimeout(self._timeout_text(backend))
        if isinstance(exc, aiohttp.ServerDisconnectedError):
            return UpstreamProtocol(f"backend at {backend.root} closed the connection without answering")
        if isinstance(exc, aiohttp.ClientPayloadError):
            return UpstreamProtocol(f"backend at {backend.root} broke off its answer ({_cause(exc)})")
        if isinstance(exc, aiohttp.ClientError):
            return UpstreamProtocol(f"backend at {backend.root} broke the connection: {_cause(exc)}")
        if isinstance(exc, msgspec.DecodeError | msgspec.ValidationError):
            return UpstreamProtocol(f"backend at {backend.root} sent an invalid response: {exc}")
        return exc

    @contextlib.contextmanager
    def _mapped_errors(self, backend: Backend) -> Iterator[None]:
        try:
            yield
        except Exception as exc:
            mapped = self._mapped(backend, exc)
            if mapped is exc:
                raise
            raise mapped from exc

    def _stalled_text(self, backend: Backend, started: bool) -> str:
        if started:
            return f"backend at {backend.root} stopped sending for {self.timeouts.idle:g} s (idle timeout)"
        return self._first_byte_text(backend, self.timeouts.first_byte)

    @staticmethod
    def _first_byte_text(backend: Backend, seconds: float) -> str:
        return f"backend at {backend.root} sent nothing for {seconds:g} s (first-byte timeout)"

    def _timeout_text(self, backend: Backend) -> str:
        total = self.timeouts.total
        limit = f" (total timeout {total:g} s)" if total else ""
        return f"backend at {backend.root} did not answer in time{limit}"

    def _deadline(self, seconds: float | None = None) -> float | None:
        """The loop time the first byte must come by: ``seconds`` (default first_byte) from now."""
        seconds = seconds or self.timeouts.first_byte
        return asyncio.get_running_loop().time() + seconds if seconds else None

    @contextlib.asynccontextmanager
    async def _before(self, backend: Backend, deadline: float | None) -> AsyncIterator[None]:
        """Run the block under ``deadline``; its expiry is the first-byte timeout, errors mapped."""
        with self._mapped_errors(backend):
            started = asyncio.get_running_loop().time()
            try:
                async with asyncio.timeout_at(deadline) as limit:
                    yield
            except TimeoutError as exc:
                if not limit.expired() or deadline is None:
                    raise
                raise UpstreamTimeout(self._first_byte_text(backend, round(deadline - started, 1))) from exc

    async def _raise_for_status(self, resp: aiohttp.ClientResponse) -> None:
        if resp.status >= 400:
            body = await resp.read()
            raise UpstreamStatus(error_message(body) or f"backend answered HTTP {resp.status}", resp.status)

    async def get_json(self, backend: Backend, path: str, type_: type[T], *, limit: float | None = None) -> T:
        """GET ``backend.root + path`` and decode it as ``type_``."""
        return await self._exchange(backend, "GET", path, None, self._headers(backend), type_, self._deadline(limit))

    async def post_json(self, backend: Backend, path: str, body: bytes, type_: type[T]) -> T:
        """POST a JSON body and decode the whole JSON answer as ``type_``.

        The whole answer counts as the first byte: a non-streamed completion sends nothing before it is done.
        """
        return await self._exchange(backend, "POST", path, body, self._headers(backend, _JSON), type_, self._deadline())

    async def _exchange(
        self, backend: Backend, method: str, path: str, body: bytes | None, headers: dict[str, str], type_: type[T],
        deadline: float | None,
    ) -> T:
        # Written out rather than through _before: an async context manager costs ~40 us a request here.
        started = asyncio.get_running_loop().time()
        try:
            async with asyncio.timeout_at(deadline) as limit:
                async with self.session.request(method, backend.root + path, data=body, headers=headers) as resp:
                    await self._raise_for_status(resp)
                    data = await resp.read()
            return msgspec.json.decode(data, type=type_)
        except TimeoutError as exc:
            if deadline is not None and limit.expired():
                raise UpstreamTimeout(self._first_byte_text(backend, round(deadline - started, 1))) from exc
            raise self._mapped(backend, exc) from exc
        except Exception as exc:
            mapped = self._mapped(backend, exc)
            if mapped is exc:
                raise
            raise mapped from exc

    @contextlib.asynccontextmanager
    async def stream(self, backend: Backend, path: str, body: bytes) -> AsyncIterator[AsyncIterator[bytes]]:
        """POST a JSON body; yield an iterator over the response body's chunks as they come.

        One first-byte deadline covers the headers and the first body chunk together. Leaving
        the block for any reason (done, failed, cancelled) closes the upstream connection.
        """
        deadline = self._deadline()
        async with self._before(backend, deadline):
            resp = await self.session.post(backend.root + path, data=body, headers=self._headers(backend, _JSON))
        chunks = None
        try:
            async with self._before(backend, deadline):
                await self._raise_for_status(resp)
            chunks = self.chunks(backend, resp, deadline)
            yield chunks
        finally:
            if chunks is not None:
                await chunks.aclose()
            resp.close()  # an early exit must drop the connection so the backend stops

    async def chunks(
        self, backend: Backend, resp: aiohttp.ClientResponse, first_deadline: float | None = None
    ) -> AsyncGenerator[bytes, None]:
        """The response body as it arrives, under the first-byte and idle timeouts.

        ``first_deadline`` is the loop time by which the first chunk must come (by default
        ``first_byte`` seconds from now); after that each chunk must follow the one before
        within ``idle`` seconds. Time spent by our own consumer between chunks is not counted.
        """
        loop = asyncio.get_running_loop()
        idle = self.timeouts.idle or None
        if first_deadline is None and self.timeouts.first_byte:
            first_deadline = loop.time() + self.timeouts.first_byte
        started = False
        with self._mapped_errors(backend):
            try:
                async with asyncio.timeout_at(first_deadline) as deadline:
                    async for data in resp.content.iter_any():
                        deadline.reschedule(None)
                        started = True
                        yield data
                        deadline.reschedule(loop.time() + idle if idle else None)
            except TimeoutError as exc:
                if not deadline.expired():
                    raise  # aiohttp's total timeout
                raise UpstreamTimeout(self._stalled_text(backend, started)) from exc

    @contextlib.asynccontextmanager
    async def forward(
        self, backend: Backend, method: str, path_qs: str, headers: Mapping[str, str], body: Any
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """Send a request as it came (``/v1/*`` passthrough); yield the raw response, any status."""
        async with self._before(backend, self._deadline()):
            resp = await self.session.request(
                method, backend.root + path_qs, data=body, headers=self._headers(backend, headers)
            )
        try:
            yield resp
        finally:
            resp.close()
