"""Inbound guard: the optional API key and CORS, both checked before any handler runs.

API key (``--api-key``): when set, every request must carry ``Authorization: Bearer <key>`` or
``x-api-key: <key>`` (as the Anthropic SDKs send it), compared in constant time, else 401
``{"error": "unauthorized: ..."}``. Two exceptions: ``GET``/``HEAD /`` stays open so load
balancers and ``ollama``-style health probes work without the key (it reveals nothing but
"Ollama is running"), and CORS preflights, which browsers send without credentials by design.

CORS follows Ollama (envconfig ``AllowedOrigins`` and gin-contrib/cors as Ollama configures it):
allowed origins are ``http(s)://localhost``, ``127.0.0.1`` and ``0.0.0.0`` with or without a port,
``app://``, ``file://``, ``tauri://``, ``vscode-webview://``, ``vscode-file://``, browser
extensions, plus ``OLLAMA_ORIGINS`` / ``--origins`` (a ``*`` in a pattern is a wildcard; ``*``
alone allows every origin, and only then is ``Access-Control-Allow-Origin: *`` sent). A request
with no ``Origin`` or a same-origin one is not CORS. A disallowed origin gets 403; an allowed one
gets its origin echoed on every response, streamed ones included; a preflight (``OPTIONS`` with
an ``Origin``) is answered 204 with the allowed methods and headers.

Host (DNS rebinding), as Ollama does: while the shim listens on a loopback address, a request
whose ``Host`` is not a loopback, private or unspecified address, ``localhost``, this machine's
name, or a name under ``.localhost``, ``.local`` or ``.internal`` gets 403. Otherwise a web page
on an attacker's domain that re-resolves to 127.0.0.1 would be same-origin with the shim and
could use the models without any CORS check. Listening on another address turns this off.

May import: aiohttp.web, stdlib, ``ollama_shim.errors``, ``ollama_shim.settings``.
"""

from __future__ import annotations

import functools
import hmac
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Sequence

from aiohttp import web

from ..errors import ShimError, Unauthorized
from ..settings import Settings, is_loopback

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_LOCAL_HOSTS = ("localhost", "127.0.0.1", "0.0.0.0")
DEFAULT_ORIGINS: tuple[str, ...] = (
    *(f"{scheme}://{host}{port}" for host in _LOCAL_HOSTS for scheme in ("http", "https") for port in ("", ":*")),
    "app://*",
    "file://*",
    "tauri://*",
    "vscode-webview://*",
    "vscode-file://*",
)
BROWSER_EXTENSIONS = ("chrome-extension://", "safari-extension://", "moz-extension://", "ms-browser-extension://")
ALLOW_METHODS = "GET,POST,PUT,PATCH,DELETE,HEAD,OPTIONS"
ALLOW_HEADERS = ",".join((
    "Authorization", "Content-Type", "User-Agent", "Accept", "X-Requested-With", "OpenAI-Beta",
    "x-api-key", "anthropic-version", "anthropic-beta", "anthropic-dangerous-direct-browser-access",
    "x-stainless-arch", "x-stainless-async", "x-stainless-custom-poll-interval", "x-stainless-helper-method",
    "x-stainless-lang", "x-stainless-os", "x-stainless-package-version", "x-stainless-poll-helper",
    "x-stainless-retry-count", "x-stainless-runtime", "x-stainless-runtime-version", "x-stainless-timeout",
))
MAX_AGE = str(12 * 3600)


class OriginPolicy:
    """Which browser origins may call the API."""

    def __init__(self, extra: Sequence[str] = ()) -> None:
        patterns = [p.strip().lower() for p in (*extra, *DEFAULT_ORIGINS) if p.strip()]
        self.allow_all = "*" in patterns
        self._exact = frozenset(p for p in patterns if "*" not in p)
        self._wild = tuple(tuple(p.split("*", 1)) for p in patterns if "*" in p and p != "*")

    def allows(self, origin: str) -> bool:
        origin = origin.lower()
        if self.allow_all or origin in self._exact or origin.startswith(BROWSER_EXTENSIONS):
            return True
        return any(origin.startswith(pre) and origin.endswith(suf) and len(origin) >= len(pre) + len(suf)
                   for pre, suf in self._wild)


def _cors_origin(request: web.Request) -> str | None:
    """The request's ``Origin`` when this is a cross-origin request, else None."""
    origin = request.headers.get("Origin")
    if not origin or origin in (f"http://{request.host}", f"https://{request.host}"):
        return None
    return origin


_LOCAL_SUFFIXES = (".localhost", ".local", ".internal")


@functools.lru_cache(maxsize=256)  # a client sends the same Host on every request
def host_allowed(host_header: str, machine_name: str) -> bool:
    """Whether a ``Host`` header names this machine (Ollama's rule against DNS rebinding)."""
    host = host_header.strip().lower()
    if host.startswith("["):  # [v6]:port
        host = host[1 : host.find("]")] if "]" in host else host
    elif host.count(":") == 1:
        host = host.rsplit(":", 1)[0]
    if host in ("", "localhost", machine_name.lower()) or host.endswith(_LOCAL_SUFFIXES):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_private or address.is_unspecified


def _same_key(sent: str, key: str) -> bool:
    """Compared as bytes: a header arrives as text whose stray non-UTF-8 bytes are held as
    surrogates, which ``hmac.compare_digest`` on text (ASCII only) would raise on, and so would
    a plain ``encode()``; ``surrogatepass`` encodes any text, both sides alike."""
    return hmac.compare_digest(sent.strip().encode("utf-8", "surrogatepass"), key.encode("utf-8", "surrogatepass"))


def _key_ok(request: web.Request, key: str) -> bool:
    """``Authorization: Bearer KEY`` (Ollama and OpenAI clients) or ``x-api-key: KEY`` (the
    Anthropic SDKs and Claude Code)."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and _same_key(token, key):
        return True
    return _same_key(request.headers.get("x-api-key", ""), key)


class Guard:
    """Built once per app from the settings; ``middleware`` checks, ``add_cors_headers`` decorates."""

    def __init__(self, settings: Settings) -> None:
        self.api_key = settings.api_key
        self.origins = OriginPolicy(settings.origins)
        self.check_host = is_loopback(settings.host)
        self.machine_name = socket.gethostname()

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if self.check_host and not host_allowed(request.host, self.machine_name):
            raise ShimError(f"host {request.host} is not allowed: this server answers only to local names", 403)
        origin = _cors_origin(request)
        if origin is not None and not self.origins.allows(origin):
            raise ShimError(f"origin {origin} is not allowed; add it to OLLAMA_ORIGINS", 403)
        if origin is not None and request.method == "OPTIONS":
            return self._preflight(request)
        if self.api_key and not _is_health_check(request) and not _key_ok(request, self.api_key):
            raise Unauthorized("unauthorized: this server needs 'Authorization: Bearer <key>'")
        return await handler(request)

    def _preflight(self, request: web.Request) -> web.Response:
        headers = {
            "Access-Control-Allow-Methods": ALLOW_METHODS,
            "Access-Control-Allow-Headers": ALLOW_HEADERS,
            "Access-Control-Max-Age": MAX_AGE,
        }
        return web.Response(status=204, headers=headers)

    async def add_cors_headers(self, request: web.Request, response: web.StreamResponse) -> None:
        """``on_response_prepare``: runs for every response, including streams and errors."""
        origin = _cors_origin(request)
        if origin is None or not self.origins.allows(origin):
            return
        response.headers["Access-Control-Allow-Origin"] = "*" if self.origins.allow_all else origin
        if not self.origins.allow_all:
            response.headers.add("Vary", "Origin")


def _is_health_check(request: web.Request) -> bool:
    return request.path == "/" and request.method in ("GET", "HEAD")


def install(app: web.Application, settings: Settings) -> None:
    """Add the guard's middleware (innermost, after the error boundary) and its CORS headers."""
    guard = Guard(settings)
    app.middlewares.append(guard.middleware)
    app.on_response_prepare.append(guard.add_cors_headers)
