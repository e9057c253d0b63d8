"""The one frozen ``Settings`` object, built once from CLI > environment > TOML file > defaults.

``load_settings(argv, environ)`` is pure: it reads only the mapping it is given and the config
file named in it, and raises ``SettingsError`` with a one-line message for anything wrong.
``parse_ollama_host`` follows the ollama client's own ``OLLAMA_HOST`` rules.

May import: stdlib only.
"""

from __future__ import annotations

import argparse
import ipaddress
import tomllib
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

DEFAULT_BACKEND = "http://127.0.0.1:1234"  # LM Studio's default port
DEFAULT_LISTEN = "127.0.0.1:11434"
DEFAULT_OLLAMA_VERSION = "0.32.10"
BACKEND_KINDS = ("auto", "llamacpp", "lmstudio", "vllm", "openai", "openrouter", "generic")
LOG_LEVELS = ("debug", "info", "warning", "error")
ENV_PREFIX = "OLLAMA_SHIM_"


class SettingsError(Exception):
    """A bad flag, variable or config file; the message is one line for the user."""


@dataclass(frozen=True)
class Backend:
    """One upstream server. ``root`` has no trailing ``/v1``; ``api`` is ``root + '/v1'``."""

    root: str
    key: str | None = None
    kind: str = "auto"

    @property
    def api(self) -> str:
        return self.root + "/v1"

    def __repr__(self) -> str:  # never print a key
        return f"Backend(root={self.root!r}, kind={self.kind!r}, key={'***' if self.key else None})"


@dataclass(frozen=True)
class Timeouts:
    """Seconds; 0 means no limit."""

    connect: float = 5.0
    first_byte: float = 600.0  # long enough for a model to load
    idle: float = 300.0  # between two chunks of a stream
    total: float = 0.0


_MIB = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    """Bytes: how much a backend may send before the shim gives up on the answer (502 or a last
    error line), so that a broken or hostile backend cannot exhaust memory."""

    response_bytes: int = 64 * _MIB  # one non-streamed answer
    sse_line_bytes: int = 8 * _MIB  # one line of an event stream
    gathered_bytes: int = 64 * _MIB  # an answer assembled from a stream (``stream: false``)
    catalog_bytes: int = 16 * _MIB  # a model list or metadata answer


# The /v1 routes forwarded by default: what OpenAI clients, VS Code Copilot and the coding agents
# use. Files, fine-tuning, batches and admin routes of a keyed cloud backend stay closed unless
# configured. ``*`` matches within one path segment, a trailing ``/**`` any deeper path.
DEFAULT_PASSTHROUGH = (
    "/v1/models",
    "/v1/models/*",
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/embeddings",
    "/v1/responses",
    "/v1/messages",
    "/v1/messages/count_tokens",
)


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 11434
    backends: tuple[Backend, ...] = (Backend(DEFAULT_BACKEND),)
    timeouts: Timeouts = field(default_factory=Timeouts)
    limits: Limits = field(default_factory=Limits)
    passthrough: tuple[str, ...] = DEFAULT_PASSTHROUGH
    log_level: str = "info"
    ollama_version: str = DEFAULT_OLLAMA_VERSION
    catalog_ttl: float = 10.0
    max_body_bytes: int = 100 * 1024 * 1024
    api_key: str | None = field(default=None, repr=False)  # never printed, like Backend.key
    origins: tuple[str, ...] = ()
    workers: int = 1
    shutdown_grace: float = 10.0
    # Translate /v1/messages and /v1/responses onto chat completions even where the backend speaks
    # them itself (for a backend whose own support is broken).
    translate_native_apis: bool = False


# ---------------------------------------------------------------------------
# OLLAMA_HOST
# ---------------------------------------------------------------------------


def parse_ollama_host(value: str | None) -> tuple[str, str, int]:
    """Parse ``OLLAMA_HOST`` the way the ollama client does; return (scheme, host, port).

    ``None``/``""`` -> http 127.0.0.1:11434; ``:1234`` -> 127.0.0.1:1234; ``http://h`` -> port 80;
    ``https://h`` -> 443; a bare host gets 11434; ``[::1]:8080`` is an IPv6 host.
    """
    host = (value or "").strip()
    scheme, _, rest = host.rpartition("://")
    if not scheme:
        scheme, rest = "http", host
    default_port = {"http": 80, "https": 443}.get(scheme, 11434) if "://" in host else 11434
    split = urllib.parse.urlsplit(f"{scheme}://{rest}")
    try:
        port = split.port
    except ValueError as exc:
        raise SettingsError(f"invalid OLLAMA_HOST {value!r}: {exc}") from None
    hostname = split.hostname or "127.0.0.1"
    if rest.startswith(":") and not rest.startswith("::"):
        hostname = "127.0.0.1"
    return scheme, hostname, port if port is not None else default_port


def parse_listen(value: str) -> tuple[str, int]:
    """``HOST:PORT``, ``:PORT``, ``[v6]:PORT`` or a bare host -> (host, port)."""
    _, host, port = parse_ollama_host(value)
    return host, port


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# ---------------------------------------------------------------------------
# Backends
# ---------------------------------------------------------------------------


def normalize_backend_url(url: str) -> str:
    """Accept ``http://host:port`` and ``http://host:port/v1``; return the root without /v1."""
    url = url.strip()
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SettingsError(f"invalid backend URL {url!r}: expected http(s)://host:port[/v1]")
    if parts.username or parts.password:
        # The URL appears in logs and in error messages sent to clients: keep secrets out of it.
        raise SettingsError("a backend URL must not hold credentials: pass the key with --backend-key")
    path = parts.path.rstrip("/")
    if path.endswith("/v1"):
        path = path[: -len("/v1")]
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def _backends(urls: Sequence[str], keys: Sequence[str], kinds: Sequence[str]) -> tuple[Backend, ...]:
    if len(keys) > len(urls) or len(kinds) > len(urls):
        raise SettingsError("more --backend-key/--backend-kind values than --backend URLs")
    out = []
    for i, url in enumerate(urls):
        kind = kinds[i] if i < len(kinds) else "auto"
        if kind not in BACKEND_KINDS:
            raise SettingsError(f"invalid backend kind {kind!r}: expected one of {', '.join(BACKEND_KINDS)}")
        key = keys[i] if i < len(keys) and keys[i] else None
        out.append(Backend(normalize_backend_url(url), key, kind))
    return tuple(out)


# ---------------------------------------------------------------------------
# Sources: CLI, environment, file
# ---------------------------------------------------------------------------

# name -> (type, help). Each option is declared once; CLI flag, env var and file key derive from it.
_OPTIONS: dict[str, tuple[type, str]] = {
    "listen": (str, "HOST:PORT to listen on (default: OLLAMA_HOST, else 127.0.0.1:11434)"),
    "backend": (list, "backend base URL, repeatable (default http://127.0.0.1:1234, LM Studio)"),
    "backend_key": (list, "bearer token for the backend of the same position, repeatable"),
    "backend_kind": (list, f"backend kind for the same position: {', '.join(BACKEND_KINDS)}"),
    "config": (str, "TOML configuration file"),
    "log_level": (str, f"one of {', '.join(LOG_LEVELS)}"),
    "connect_timeout": (float, "seconds to connect to a backend"),
    "first_byte_timeout": (float, "seconds to wait for a backend's first byte (model loads)"),
    "idle_timeout": (float, "seconds allowed between two chunks of a stream"),
    "total_timeout": (float, "seconds for a whole request, 0 for no limit"),
    "ollama_version": (str, "version reported by /api/version"),
    "catalog_ttl": (float, "seconds the model list is cached"),
    "max_body_bytes": (int, "largest request body accepted"),
    "api_key": (str, "require this bearer token from clients"),
    "origins": (list, "extra allowed CORS origins (also OLLAMA_ORIGINS)"),
    "workers": (int, "server processes sharing the port (SO_REUSEPORT)"),
    "shutdown_grace": (float, "seconds running streams may take to finish at shutdown"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ollama-shim", description="Serve the Ollama API over an OpenAI-compatible backend."
    )
    parser.add_argument("command", nargs="?", default="serve", choices=["serve"], help="what to do (default: serve)")
    for name, (kind, text) in _OPTIONS.items():
        flag = "--" + name.replace("_", "-")
        env = ENV_PREFIX + name.upper()
        if kind is list:
            parser.add_argument(flag, action="append", default=None, help=f"{text} [env {env}, comma-separated]")
        else:
            parser.add_argument(flag, default=None, help=f"{text} [env {env}]")
    return parser


class _ArgumentError(Exception):
    pass


class _QuietParser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise _ArgumentError(message)


def _parse_argv(argv: Sequence[str]) -> dict[str, Any]:
    parser = build_parser()
    parser.__class__ = _QuietParser
    try:
        ns = parser.parse_args(list(argv))
    except _ArgumentError as exc:
        raise SettingsError(str(exc)) from None
    return {k: v for k, v in vars(ns).items() if v is not None and k in _OPTIONS}


def _from_env(environ: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, (kind, _) in _OPTIONS.items():
        raw = environ.get(ENV_PREFIX + name.upper())
        if raw is None or raw == "":
            continue
        out[name] = [p.strip() for p in raw.split(",") if p.strip()] if kind is list else raw
    return out


def _from_file(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise SettingsError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"invalid config file {path}: {exc}") from None
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key == "backends":
            if not isinstance(value, list) or not all(isinstance(b, dict) and "url" in b for b in value):
                raise SettingsError(f"invalid config file {path}: 'backends' must be [[backends]] tables with url")
            out["backend"] = [str(b["url"]) for b in value]
            out["backend_key"] = [str(b.get("key", "")) for b in value]
            out["backend_kind"] = [str(b.get("kind", "auto")) for b in value]
            continue
        name = key.replace("-", "_")
        if name not in _OPTIONS or name == "config":
            raise SettingsError(f"invalid config file {path}: unknown key {key!r}")
        out[name] = value
    return out


def _number(name: str, value: Any, kind: type) -> Any:
    try:
        number = kind(value)
    except (TypeError, ValueError):
        raise SettingsError(f"invalid value for {name.replace('_', '-')}: {value!r} is not a number") from None
    if number < 0:
        raise SettingsError(f"invalid value for {name.replace('_', '-')}: must not be negative")
    return number


def load_settings(argv: Sequence[str], environ: Mapping[str, str]) -> Settings:
    """Build Settings from argv (without the program name) and an environment mapping."""
    cli = _parse_argv(argv)
    env = _from_env(environ)
    config_path = cli.get("config") or env.get("config")
    merged: dict[str, Any] = _from_file(config_path) if config_path else {}
    merged.update(env)
    merged.update(cli)

    listen = merged.get("listen") or environ.get("OLLAMA_HOST") or DEFAULT_LISTEN
    host, port = parse_listen(str(listen))
    level = str(merged.get("log_level", "info")).lower()
    if level not in LOG_LEVELS:
        raise SettingsError(f"invalid log level {level!r}: expected one of {', '.join(LOG_LEVELS)}")
    defaults = Timeouts()
    timeouts = Timeouts(
        connect=_number("connect_timeout", merged.get("connect_timeout", defaults.connect), float),
        first_byte=_number("first_byte_timeout", merged.get("first_byte_timeout", defaults.first_byte), float),
        idle=_number("idle_timeout", merged.get("idle_timeout", defaults.idle), float),
        total=_number("total_timeout", merged.get("total_timeout", defaults.total), float),
    )
    origins = [o for o in environ.get("OLLAMA_ORIGINS", "").split(",") if o.strip()]
    origins += list(merged.get("origins", []))
    version = str(merged.get("ollama_version", DEFAULT_OLLAMA_VERSION))
    if not all(part.isdigit() for part in version.split(".")):
        raise SettingsError(f"invalid ollama version {version!r}: clients need digits and dots, e.g. 0.32.10")
    return Settings(
        host=host,
        port=port,
        backends=_backends(
            merged.get("backend") or [DEFAULT_BACKEND],
            merged.get("backend_key") or [],
            merged.get("backend_kind") or [],
        ),
        timeouts=timeouts,
        log_level=level,
        ollama_version=version,
        catalog_ttl=_number("catalog_ttl", merged.get("catalog_ttl", 10.0), float),
        max_body_bytes=_number("max_body_bytes", merged.get("max_body_bytes", Settings.max_body_bytes), int),
        api_key=merged.get("api_key") or None,
        origins=tuple(o.strip() for o in origins),
        workers=max(1, _number("workers", merged.get("workers", 1), int)),
        shutdown_grace=_number("shutdown_grace", merged.get("shutdown_grace", 10.0), float),
    )
