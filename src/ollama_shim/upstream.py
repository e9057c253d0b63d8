"""The one module that talks to backends: a pooled aiohttp ``ClientSession`` and its error mapping.

Every aiohttp or decoding failure is turned into an ``errors.Upstream*`` here, in
``_mapped_errors``, and nowhere else. Timeouts: ``connect`` bounds the connection,
``first_byte`` the wait for the response (and its first body chunk), ``idle`` the gap between
two body chunks, ``total`` the whole exchange. Leaving an ``async with`` early (a client that
went away cancels the handler) closes the upstream connection, so the backend stops generating.

May import: aiohttp, msgspec, stdlib, ``ollama_shim.settings``, ``ollama_shim.errors``, ``ollama_shim.wire``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator, Mapping
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

    @contextlib.contextmanager
    def _mapped_errors(self, backend: Backend) -> Iterator[None]:
        try:
            yield
        except UpstreamError:
            raise
        except aiohttp.ClientConnectorError as exc:
            raise UpstreamUnreachable(f"cannot reach backend at {backend.root}: {exc.os_error or exc}") from exc
        except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
            raise UpstreamTimeout(f"backend at {backend.root} did not answer in time") from exc
        except aiohttp.ClientError as exc:
            raise UpstreamProtocol(f"backend at {backend.root} broke the connection: {exc}") from exc
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise UpstreamProtocol(f"backend at {backend.root} sent an invalid response: {exc}") from exc

    async def _raise_for_status(self, resp: aiohttp.ClientResponse) -> None:
        if resp.status >= 400:
            body = await resp.read()
            raise UpstreamStatus(error_message(body) or f"backend answered HTTP {resp.status}", resp.status)

    async def get_json(self, backend: Backend, path: str, type_: type[T], *, limit: float | None = None) -> T:
        """GET ``backend.root + path`` and decode it as ``type_``."""
        with self._mapped_errors(backend):
            async with asyncio.timeout(limit or self.timeouts.first_byte or None):
                async with self.session.get(backend.root + path, headers=self._headers(backend)) as resp:
                    await self._raise_for_status(resp)
                    return msgspec.json.decode(await resp.read(), type=type_)

    async def post_json(self, backend: Backend, path: str, body: bytes, type_: type[T]) -> T:
        """POST a JSON body and decode the whole JSON answer as ``type_``."""
        with self._mapped_errors(backend):
            async with asyncio.timeout(self.timeouts.first_byte or None):
                async with self.session.post(
                    backend.root + path, data=body, headers=self._headers(backend, _JSON)
                ) as resp:
                    await self._raise_for_status(resp)
                    return msgspec.json.decode(await resp.read(), type=type_)

    @contextlib.asynccontextmanager
    async def stream(self, backend: Backend, path: str, body: bytes) -> AsyncIterator[AsyncIterator[bytes]]:
        """POST a JSON body; yield an iterator over the response body's chunks as they come."""
        with self._mapped_errors(backend):
            async with asyncio.timeout(self.timeouts.first_byte or None):
                resp = await self.session.post(backend.root + path, data=body, headers=self._headers(backend, _JSON))
        try:
            with self._mapped_errors(backend):
                await self._raise_for_status(resp)
            yield self.chunks(backend, resp)
        finally:
            resp.close()  # an early exit must drop the connection so the backend stops

    async def chunks(self, backend: Backend, resp: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
        """The response body as it arrives, under the first-byte and idle timeouts."""
        loop = asyncio.get_running_loop()
        idle = self.timeouts.idle or None
        first = self.timeouts.first_byte or None
        with self._mapped_errors(backend):
            async with asyncio.timeout(loop.time() + first if first else None) as deadline:
                async for data in resp.content.iter_any():
                    deadline.reschedule(None)  # time our own client takes is not the backend's
                    yield data
                    deadline.reschedule(loop.time() + idle if idle else None)

    @contextlib.asynccontextmanager
    async def forward(
        self, backend: Backend, method: str, path_qs: str, headers: Mapping[str, str], body: Any
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """Send a request as it came (``/v1/*`` passthrough); yield the raw response, any status."""
        with self._mapped_errors(backend):
            async with asyncio.timeout(self.timeouts.first_byte or None):
                resp = await self.session.request(
                    method, backend.root + path_qs, data=body, headers=self._headers(backend, headers)
                )
        try:
            yield resp
        finally:
            resp.close()
