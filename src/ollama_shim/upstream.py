"""The one module that talks to backends: a pooled aiohttp ``ClientSession`` and its error mapping.

Every aiohttp or decoding failure is turned into an ``errors.Upstream*`` here, by ``_mapped``,
and nowhere else. Timeouts: ``connect`` bounds the connection,
``first_byte`` the wait for the response (and its first body chunk), ``idle`` the gap between
two body chunks, ``total`` the whole exchange. Leaving an ``async with`` early (a client that
went away cancels the handler) closes the upstream connection, so the backend stops generating.

What a backend may send is bounded too:

- no redirect is ever followed: a 3xx is ``UpstreamProtocol`` (502) naming the backend, for the
  shim's own calls and for the passthrough alike (``forward``);
- the shim's own calls ask for ``Accept-Encoding: identity`` (the session does not decompress)
  and refuse an encoded answer; the passthrough forwards the client's own Accept-Encoding (none
  if it sent none) and hands back raw bytes;
- a non-streamed answer over ``Limits.response_bytes``, a catalog answer (``get_json``) over
  ``Limits.catalog_bytes``, and JSON nested too deeply to decode are ``UpstreamProtocol``;
- a streamed request answered with something that is not ``text/event-stream`` is
  ``UpstreamProtocol``; an answer with no Content-Type at all is accepted only if its first
  bytes start an SSE field (``data``, ``event``, ``id``, ``retry`` or a ``:`` comment);
- an error body's message, and the passthrough's error bodies (``error_body``), have every
  configured key replaced by ``***``.

May import: aiohttp, msgspec, multidict, yarl, stdlib, ``ollama_shim.settings``, ``ollama_shim.errors``,
``ollama_shim.wire``, ``ollama_shim.request_id``.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import zlib
from collections.abc import AsyncGenerator, AsyncIterator, Iterable, Iterator, Mapping
from typing import Any, TypeVar

import aiohttp
import msgspec
from multidict import CIMultiDict
from yarl import URL

from .errors import UpstreamError, UpstreamProtocol, UpstreamStatus, UpstreamTimeout, UpstreamUnreachable
from .request_id import HEADER as REQUEST_ID_HEADER
from .request_id import REQUEST_ID
from .settings import Backend, Limits, Timeouts
from .wire.openai import ErrorBody

T = TypeVar("T")

_IDENTITY = {"Accept-Encoding": "identity"}
_JSON = {"Content-Type": "application/json", **_IDENTITY}
_LARGE_BODY = 1024 * 1024
KEEPALIVE_S = 4.0  # aiohttp warns above this size for a raw bytes body
_ERROR_DECODER = msgspec.json.Decoder(ErrorBody)
REDACTED = "***"
_ERROR_BYTES = 1024 * 1024  # an error body is read this far for its message; the rest is ignored
_SSE_FIELDS = (b"data", b"event", b"id", b"retry", b":")
_BOM = b"\xef\xbb\xbf"


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every occurrence of each secret replaced by ``***``."""
    for secret in secrets:
        if secret and secret in text:
            text = text.replace(secret, REDACTED)
    return text


def error_message(body: bytes, secrets: Iterable[str] = ()) -> str:
    """The human message in a backend's error body, whatever shape it uses, with secrets redacted."""
    raw = body.decode("utf-8", "replace").strip()[:2000]
    try:
        parsed = _ERROR_DECODER.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        return redact(raw, secrets)
    if isinstance(parsed.error, str):
        message = parsed.error
    elif parsed.error is not None and parsed.error.message:
        message = parsed.error.message
    else:
        message = parsed.message or parsed.detail or raw
    return redact(message, secrets)


def is_redirect(status: int) -> bool:
    """A 3xx that points elsewhere (304 Not Modified does not)."""
    return 300 <= status < 400 and status != 304


def _media_type(resp: aiohttp.ClientResponse) -> str | None:
    """The Content-Type's media type, lower case, without parameters; None if there is none."""
    value = resp.headers.get("Content-Type")
    return value.partition(";")[0].strip().lower() if value is not None else None


def _sse_start(head: bytes) -> bool | None:
    """Whether the first bytes of a body start an SSE field; None while too few came to tell."""
    text = head.removeprefix(_BOM).lstrip(b"\r\n")
    if any(text.startswith(field) for field in _SSE_FIELDS):
        return True
    if not text or any(field.startswith(text) for field in _SSE_FIELDS):
        return None
    return False


def _inflate(body: bytes, coding: str, cap: int) -> bytes | None:
    """A gzip or deflate body decoded (at most ``cap + 1`` bytes of it); None if it cannot be."""
    # 47: a gzip or zlib header, detected; -15: raw deflate, which some servers send as "deflate".
    for wbits in (47,) if coding in ("gzip", "x-gzip") else (47, -15):
        try:
            return zlib.decompressobj(wbits).decompress(body, cap + 1)
        except zlib.error:
            continue
    return None


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


def _payload(body: T) -> T | io.BytesIO:
    """A body over 1 MiB (images, long histories) as a stream aiohttp writes in pieces; smaller
    ones as they are (aiohttp warns about large raw bodies, and a file-like one costs more)."""
    if isinstance(body, bytes | bytearray) and len(body) > _LARGE_BODY:
        return io.BytesIO(body)
    return body


class Upstream:
    """HTTP access to the configured backends; owned by the app, closed at shutdown.

    ``secrets`` are redacted from backend error messages besides the calling backend's own key.
    """

    def __init__(self, timeouts: Timeouts, limits: Limits | None = None, *, secrets: Iterable[str | None] = ()) -> None:
        self.timeouts = timeouts
        self.limits = limits or Limits()
        self._secrets = tuple(s for s in secrets if s)
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        # Idle connections are dropped after KEEPALIVE_S, before a server's own idle limit (llama-server
        # closes after 5 s): a pooled connection the server already closed would fail the next request.
        connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300, enable_cleanup_closed=True,
                                         keepalive_timeout=KEEPALIVE_S)
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
    def _headers(backend: Backend, extra: Mapping[str, str]) -> CIMultiDict[str]:
        headers = CIMultiDict(extra)
        if backend.key:
            headers["Authorization"] = f"Bearer {backend.key}"  # replaces any spelling of it
        if request_id := REQUEST_ID.get():
            headers[REQUEST_ID_HEADER] = request_id  # the id of the request this call is made for
        return headers

    def _secrets_of(self, backend: Backend) -> tuple[str, ...]:
        return (backend.key, *self._secrets) if backend.key else self._secrets

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
        if isinstance(exc, RecursionError):
            return UpstreamProtocol(f"backend at {backend.root} sent an invalid response: JSON nested too deeply")
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

    def _redirect_error(self, backend: Backend, resp: aiohttp.ClientResponse) -> UpstreamProtocol:
        target = ""
        location = resp.headers.get("Location")
        if location:
            with contextlib.suppress(ValueError):
                joined = resp.url.join(URL(location))
                target = f" to {joined.with_query(None).with_fragment(None)}"
        return UpstreamProtocol(
            f"backend at {backend.root} answered HTTP {resp.status} (a redirect{target}); redirects are not "
            "followed: configure the URL the backend really answers at"
        )

    async def _check_answer(self, backend: Backend, resp: aiohttp.ClientResponse) -> None:
        """Raise for an error status, a redirect, or an encoded body the shim did not ask for."""
        if resp.status >= 400:
            body = await self._prefix(resp, _ERROR_BYTES)
            message = error_message(body, self._secrets_of(backend))
            raise UpstreamStatus(message or f"backend answered HTTP {resp.status}", resp.status)
        if 300 <= resp.status < 400:
            raise self._redirect_error(backend, resp)
        coding = resp.headers.get("Content-Encoding", "").strip().lower()
        if coding not in ("identity", ""):
            raise UpstreamProtocol(f"backend at {backend.root} sent a {coding}-encoded answer, not identity")

    @staticmethod
    async def _prefix(resp: aiohttp.ClientResponse, cap: int) -> bytes:
        """At most about ``cap`` bytes of the body; the rest is left unread."""
        parts: list[bytes] = []
        size = 0
        async for data in resp.content.iter_any():
            parts.append(data)
            size += len(data)
            if size >= cap:
                break
        return b"".join(parts)[:cap]

    def _too_large(self, backend: Backend, cap: int) -> UpstreamProtocol:
        return UpstreamProtocol(f"backend at {backend.root} sent an answer larger than the limit of {cap} bytes")

    async def _read_capped(self, backend: Backend, resp: aiohttp.ClientResponse, cap: int) -> bytes:
        """The whole body, or ``UpstreamProtocol`` as soon as it is known to pass ``cap`` bytes."""
        length = resp.content_length
        if length is not None:
            if length > cap:
                raise self._too_large(backend, cap)
            return await resp.read()  # exactly Content-Length bytes
        parts: list[bytes] = []
        size = 0
        async for data in resp.content.iter_any():
            size += len(data)
            if size > cap:
                raise self._too_large(backend, cap)
            parts.append(data)
        return b"".join(parts)

    async def get_json(self, backend: Backend, path: str, type_: type[T], *, limit: float | None = None) -> T:
        """GET ``backend.root + path`` and decode it as ``type_`` (a catalog answer: ``catalog_bytes`` at most)."""
        return await self._exchange(
            backend, "GET", path, None, self._headers(backend, _IDENTITY), type_, self._deadline(limit),
            self.limits.catalog_bytes,
        )

    async def post_json(self, backend: Backend, path: str, body: bytes, type_: type[T]) -> T:
        """POST a JSON body and decode the whole JSON answer (``response_bytes`` at most) as ``type_``.

        The whole answer counts as the first byte: a non-streamed completion sends nothing before it is done.
        """
        return await self._exchange(
            backend, "POST", path, body, self._headers(backend, _JSON), type_, self._deadline(),
            self.limits.response_bytes,
        )

    async def _exchange(
        self, backend: Backend, method: str, path: str, body: bytes | None, headers: CIMultiDict[str], type_: type[T],
        deadline: float | None, cap: int,
    ) -> T:
        # Written out rather than through _before: an async context manager costs ~40 us a request here.
        started = asyncio.get_running_loop().time()
        try:
            async with asyncio.timeout_at(deadline) as limit:
                for retry in (True, False):
                    try:
                        async with self.session.request(
                            method, backend.root + path, data=_payload(body), headers=headers, allow_redirects=False
                        ) as resp:
                            await self._check_answer(backend, resp)
                            data = await self._read_capped(backend, resp, cap)
                        break
                    except aiohttp.ServerDisconnectedError:
                        if not retry:  # a pooled connection the server had closed: once more, on a new one
                            raise
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
        The answer must be an event stream: ``text/event-stream`` (with any parameters), or no
        Content-Type and a body whose first bytes start an SSE field; else ``UpstreamProtocol``.
        """
        deadline = self._deadline()
        async with self._before(backend, deadline):
            try:
                resp = await self.session.post(
                    backend.root + path, data=_payload(body), headers=self._headers(backend, _JSON),
                    allow_redirects=False,
                )
            except aiohttp.ServerDisconnectedError:  # a pooled connection the server had closed: once more
                resp = await self.session.post(
                    backend.root + path, data=_payload(body), headers=self._headers(backend, _JSON),
                    allow_redirects=False,
                )
        chunks: AsyncGenerator[bytes, None] | None = None
        try:
            async with self._before(backend, deadline):
                await self._check_answer(backend, resp)
                media_type = _media_type(resp)
                if media_type is not None and media_type != "text/event-stream":
                    raise await self._not_a_stream(backend, resp, media_type)
            chunks = self.chunks(backend, resp, deadline)
            if media_type is None:
                chunks = self._sniffed(backend, chunks)
            yield chunks
        finally:
            if chunks is not None:
                await chunks.aclose()
            resp.close()  # an early exit must drop the connection so the backend stops

    async def _not_a_stream(self, backend: Backend, resp: aiohttp.ClientResponse, media_type: str) -> UpstreamProtocol:
        text = f"backend at {backend.root} answered a streamed request with {media_type}, not an event stream"
        if media_type.endswith("json"):  # an error object sent with status 200
            message = error_message(await self._prefix(resp, _ERROR_BYTES), self._secrets_of(backend))
            text = f"{text}: {message[:500]}"
        return UpstreamProtocol(text)

    async def _sniffed(self, backend: Backend, chunks: AsyncGenerator[bytes, None]) -> AsyncGenerator[bytes, None]:
        """``chunks`` of an answer without a Content-Type, once its first bytes look like SSE."""
        head: bytes | None = b""
        try:
            async for data in chunks:
                if head is not None:
                    head += data
                    verdict = _sse_start(head)
                    if verdict is False:
                        raise UpstreamProtocol(
                            f"backend at {backend.root} answered a streamed request with something that is not an "
                            "event stream (and no Content-Type)"
                        )
                    if verdict:
                        head = None
                yield data
        finally:
            await chunks.aclose()

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
        """Send a request as it came (``/v1/*`` passthrough); yield the raw response, any status but 3xx.

        ``path_qs`` goes on the wire exactly as given (it is not re-normalised or re-quoted), so the
        caller must have refused dot segments in it. No Accept-Encoding is added when the client
        sent none, so the raw body is one the client can read. A redirect (a 3xx other than 304)
        is ``UpstreamProtocol`` (502), not forwarded: a client following it would reach a host
        or path the configuration did not name.
        """
        url = URL(str(URL(backend.root)) + path_qs, encoded=True)
        asked = any(name.lower() == "accept-encoding" for name in headers)
        async with self._before(backend, self._deadline()):
            resp = await self.session.request(
                method, url, data=_payload(body), headers=self._headers(backend, headers), allow_redirects=False,
                skip_auto_headers=None if asked else ("Accept-Encoding",),
            )
        try:
            if is_redirect(resp.status):
                raise self._redirect_error(backend, resp)
            yield resp
        finally:
            resp.close()

    async def error_body(self, backend: Backend, resp: aiohttp.ClientResponse) -> bytes:
        """A passthrough error answer's body, decoded (gzip, deflate) and with every secret redacted.

        Over ``response_bytes`` it is ``UpstreamProtocol``. A body in another encoding cannot be
        checked, so it is replaced by an OpenAI-style error saying so.
        """
        cap = self.limits.response_bytes
        with self._mapped_errors(backend):
            body = await self._read_capped(backend, resp, cap)
        coding = resp.headers.get("Content-Encoding", "identity").strip().lower()
        if coding not in ("identity", ""):
            inflated = _inflate(body, coding, cap) if coding in ("gzip", "x-gzip", "deflate") else None
            if inflated is None:
                text = f"backend answered HTTP {resp.status} with a {coding}-encoded body, withheld"
                return msgspec.json.encode({"error": {"message": text, "type": "upstream_error"}})
            if len(inflated) > cap:
                raise self._too_large(backend, cap)
            body = inflated
        for secret in self._secrets_of(backend):
            body = body.replace(secret.encode(), REDACTED.encode())
        return body
