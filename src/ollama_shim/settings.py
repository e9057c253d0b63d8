"""The one frozen ``Settings`` object, built once from CLI > environment > TOML file > defaults.

The defaults are the dataclass defaults below, spelled nowhere else. ``OPTIONS`` is the one table
of options: each ``Option`` names its flag (``--connect-timeout``), environment variable
(``OLLAMA_SHIM_CONNECT_TIMEOUT``) and TOML key (``connect_timeout``), its help, the function that
checks and converts a raw value, and where the value lands in ``Settings``. ``load_settings`` is a
loop over that table plus the few values made of several options (``listen``, the backends,
the origins).

``load_settings(argv, environ)`` is pure: it reads only the mapping it is given and the config
file named in it, and raises ``SettingsError`` with a one-line message for anything wrong.
``parse_ollama_host`` follows the ollama client's own ``OLLAMA_HOST`` rules.

``[[models]]`` tables of the file declare read-only custom models (``custom_models``).

May import: stdlib, ``ollama_shim.dialect``, ``ollama_shim.errors``, ``ollama_shim.translate.customise``,
``ollama_shim.translate.keep_alive`` (pure).
"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import math
import posixpath
import tomllib
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn

from .dialect import DIALECTS
from .errors import BadRequest
from .translate.customise import CustomModel, checked_custom_model
from .translate.keep_alive import parse_keep_alive
from .wire.ollama import RequestMessage

DEFAULT_LISTEN = "127.0.0.1:11434"
DEFAULT_OLLAMA_VERSION = "0.32.10"
BACKEND_KINDS = ("auto", *DIALECTS)
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("text", "json")
ENV_PREFIX = "OLLAMA_SHIM_"


class SettingsError(Exception):
    """A bad flag, variable or config file; the message is one line for the user."""


@dataclass(frozen=True)
class Backend:
    """One upstream server. ``root`` has no trailing ``/v1``; ``api`` is ``root + '/v1'``."""

    root: str
    key: str | None = None
    kind: str = "auto"
    # Backends of one group serve the same models: a model is replicated only within its group
    # ("" is the group of every backend that names none).
    group: str = ""
    # Higher is preferred: a backend is used only when every replica of higher priority is down.
    priority: int = 0
    max_concurrent: int = 0  # requests sent to it at once; 0: no cap
    max_queue: int = 64  # requests that may wait for a free place once max_concurrent are running

    @property
    def api(self) -> str:
        return self.root + "/v1"

    @property
    def on_this_machine(self) -> bool:
        """Whether its root is a loopback address (or ``localhost``)."""
        return is_loopback(urllib.parse.urlsplit(self.root).hostname or "")

    def __repr__(self) -> str:  # never print a key
        return f"Backend(root={self.root!r}, kind={self.kind!r}, key={'***' if self.key else None})"


@dataclass(frozen=True)
class Routing:
    """How a request picks one of a model's replicas (``routing``)."""

    # Send requests whose conversation starts the same to the same replica (its prompt cache).
    affinity: bool = False
    affinity_messages: int = 2  # the first N messages make the conversation's key ...
    affinity_bytes: int = 4096  # ... cut to their first K bytes (a prompt: its first K bytes)
    backoff: float = 1.0  # seconds a failed replica is left alone before it is probed
    backoff_max: float = 60.0  # the back-off doubles with each failure in a row, up to this


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


@dataclass(frozen=True)
class Connections:
    """Client connections: seconds (0 means no limit) and how many may be open at once (0: no cap)."""

    head_timeout: float = 10.0  # from a request's first byte to the end of its headers
    body_timeout: float = 60.0  # between two pieces of a request body
    keepalive_timeout: float = 75.0  # an idle kept-alive connection
    max_connections: int = 2048


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
    # Empty: none configured, so the server looks for one on the usual local ports at start.
    backends: tuple[Backend, ...] = ()
    timeouts: Timeouts = field(default_factory=Timeouts)
    limits: Limits = field(default_factory=Limits)
    connections: Connections = field(default_factory=Connections)
    routing: Routing = field(default_factory=Routing)
    passthrough: tuple[str, ...] = DEFAULT_PASSTHROUGH
    log_level: str = "info"
    log_format: str = "text"  # or "json": one object per line
    ollama_version: str = DEFAULT_OLLAMA_VERSION
    catalog_ttl: float = 10.0
    max_body_bytes: int = 100 * 1024 * 1024
    api_key: str | None = field(default=None, repr=False)  # never printed, like Backend.key
    origins: tuple[str, ...] = ()
    workers: int = 1
    shutdown_grace: float = 10.0
    # Where the shim keeps what it owns (custom models, what it learned about models); "" until
    # load_settings fills in the XDG default.
    data_dir: str = ""
    # Translate /v1/messages and /v1/responses even for a backend that speaks them itself.
    translate_native_apis: bool = False
    # Read the GGUF headers of a llama.cpp router's model files on this machine (``model_files``).
    read_model_files: bool = True
    # ``doctor --json``: print the report as JSON for scripts.
    json_output: bool = False
    # Custom models declared by ``[[models]]`` tables of the config file (read-only).
    custom_models: tuple[CustomModel, ...] = ()
    # Seconds a model stays loaded after its last request where the shim unloads idle models itself
    # (a llama.cpp router); math.inf: forever. ``--keep-alive``, else ``OLLAMA_KEEP_ALIVE``, else 5 minutes.
    keep_alive: float = 300.0


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


# Per-backend values given by position (``--backend-priority`` goes with the ``--backend`` of the
# same position), each checked by its function: (option name, Backend field).
_PER_BACKEND = (
    ("backend_key", "key"),
    ("backend_kind", "kind"),
    ("backend_group", "group"),
    ("backend_priority", "priority"),
    ("backend_max_concurrent", "max_concurrent"),
    ("backend_max_queue", "max_queue"),
)


def _backend_value(name: str, raw: str) -> Any:
    """One per-backend value as given (a string) -> its type; "" means the default."""
    if name == "backend_key":
        return raw or None
    if name == "backend_kind":
        kind = raw or "auto"
        if kind not in BACKEND_KINDS:
            raise SettingsError(f"invalid backend kind {kind!r}: expected one of {', '.join(BACKEND_KINDS)}")
        return kind
    if name == "backend_group":
        return raw
    flag = "--" + name.replace("_", "-")
    try:
        number = int(str(raw).strip())
    except ValueError:
        raise SettingsError(f"invalid value for {flag[2:]}: {raw!r} is not a whole number") from None
    if number < 0 and name != "backend_priority":
        raise SettingsError(f"invalid value for {flag[2:]}: must not be negative")
    return number


def _backends(urls: Sequence[str], per_backend: Mapping[str, Sequence[str]]) -> tuple[Backend, ...]:
    if any(len(values) > len(urls) for values in per_backend.values()):
        given = "/".join("--" + name.replace("_", "-") for name, _ in _PER_BACKEND)
        raise SettingsError(f"more {given} values than --backend URLs")
    out = []
    for i, url in enumerate(urls):
        fields: dict[str, Any] = {}
        for name, attr in _PER_BACKEND:
            values = per_backend.get(name, ())
            if i < len(values) and (values[i] != "" or name == "backend_key"):
                fields[attr] = _backend_value(name, values[i])
        out.append(Backend(normalize_backend_url(url), **fields))
    _one_kind_per_group(out)
    return tuple(out)


def _one_kind_per_group(backends: Sequence[Backend]) -> None:
    """Refuse a named group whose backends are configured with two kinds: the replicas of a model are
    of one kind (a request is translated for one). An ``auto`` kind is learned, and so checked, at run
    time; backends without a group may mix kinds (their replicas are matched by kind then)."""
    first: dict[str, Backend] = {}
    for backend in backends:
        if not backend.group or backend.kind == "auto":
            continue
        seen = first.setdefault(backend.group, backend)
        if seen.kind != backend.kind:
            raise SettingsError(
                f"backends of group {backend.group!r} are of two kinds ({seen.root} is {seen.kind}, "
                f"{backend.root} is {backend.kind}): replicas must be of one kind; give each kind a group of its own")


# ---------------------------------------------------------------------------
# Checks: (option, raw value) -> value; a raw value is a string from the CLI or the environment,
# or whatever TOML type the file holds.
# ---------------------------------------------------------------------------


def _bad(option: Option, why: str) -> NoReturn:
    raise SettingsError(f"invalid value for {option.flag[2:]}: {why}")


def _number(kind: Callable[[Any], float]) -> Callable[[Option, Any], Any]:
    def check(option: Option, value: Any) -> Any:
        try:
            number = kind(value)
        except (TypeError, ValueError, OverflowError):
            _bad(option, f"{value!r} is not a number")
        if not math.isfinite(number):
            _bad(option, f"{value!r} is not a finite number")
        if number < 0:
            _bad(option, "must not be negative")
        return number

    return check


_seconds = _number(float)
_count = _number(int)


def _at_least_one(option: Option, value: Any) -> int:
    return max(1, int(_count(option, value)))


def _text(option: Option, value: Any) -> str:
    if not isinstance(value, str):
        _bad(option, f"{value!r} is not a string")
    return value


def _strings(option: Option, value: Any) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not all(isinstance(v, str) for v in items):
        _bad(option, "expected a list of strings")
    return tuple(items)


def _log_level(option: Option, value: Any) -> str:
    level = _text(option, value).lower()
    if level not in LOG_LEVELS:
        raise SettingsError(f"invalid log level {level!r}: expected one of {', '.join(LOG_LEVELS)}")
    return level


def _log_format(option: Option, value: Any) -> str:
    fmt = _text(option, value).lower()
    if fmt not in LOG_FORMATS:
        _bad(option, f"{fmt!r}: expected one of {', '.join(LOG_FORMATS)}")
    return fmt


def _version(option: Option, value: Any) -> str:
    version = str(value)
    if not all(part.isdigit() for part in version.split(".")):
        raise SettingsError(f"invalid ollama version {version!r}: clients need digits and dots, e.g. 0.32.10")
    return version


def _api_key(option: Option, value: Any) -> str:
    key = _text(option, value)
    if not key:
        _bad(option, "the key is empty (leave the option out to run without a key)")
    if key != key.strip():
        _bad(option, "the key starts or ends with whitespace; clients could never send it")
    return key


def _switch(option: Option, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    _bad(option, f"{value!r} is not true or false")


def _keep_alive(option: Option, value: Any) -> float:
    """An Ollama keep_alive: a duration (``5m``, ``1h30m``), seconds, or negative for forever."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        _bad(option, f"{value!r} is not a duration")
    try:
        seconds = parse_keep_alive(value)
    except BadRequest as exc:
        _bad(option, exc.message)
    assert seconds is not None  # only None for None
    return seconds


def default_data_dir(environ: Mapping[str, str]) -> str:
    """``$XDG_DATA_HOME/ollama-shim``, else ``~/.local/share/ollama-shim`` (from ``HOME``); "" when
    neither is set: the shim then keeps its data in memory, never in the working directory."""
    if environ.get("XDG_DATA_HOME"):
        return posixpath.join(environ["XDG_DATA_HOME"], "ollama-shim")
    if environ.get("HOME"):
        return posixpath.join(environ["HOME"], ".local", "share", "ollama-shim")
    return ""


def _passthrough(option: Option, value: Any) -> tuple[str, ...]:
    patterns = _strings(option, value)
    if any(p in ("*", "/v1/**") for p in patterns):
        return ("/v1/**",)
    for pattern in patterns:
        if not pattern.startswith("/v1/") or "**" in pattern[:-3] or ".." in pattern:
            _bad(option, f"{pattern!r} is not a /v1/... route pattern ('*' in a segment, '/**' at the end)")
    return tuple(dict.fromkeys(p.rstrip("/") for p in patterns))


# ---------------------------------------------------------------------------
# The option table
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Option:
    """One option. ``target`` is where its value lands in ``Settings`` (``"timeouts.connect"``);
    None for the options that ``load_settings`` combines itself."""

    name: str
    check: Callable[[Option, Any], Any]
    help: str
    target: str | None = None
    repeat: bool = False  # a list: a repeatable flag, a comma-separated variable, a TOML array
    secret: bool = False  # an empty variable is refused rather than ignored; no default shown
    bare: bool = False  # on the command line a flag without a value (``--json``), meaning true

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.upper()

    @property
    def default(self) -> Any:
        """The dataclass default, for the help text; None for combined options."""
        if self.target is None:
            return None
        value: Any = _DEFAULTS
        for attr in self.target.split("."):
            value = getattr(value, attr)
        return value


OPTIONS: tuple[Option, ...] = (
    Option("listen", _text, "HOST:PORT to listen on (default: OLLAMA_HOST, else 127.0.0.1:11434)"),
    Option("backend", _strings, "backend base URL, repeatable (default: a local server found on the usual ports)",
           repeat=True),
    Option("backend_key", _strings, "bearer token for the backend of the same position, repeatable", repeat=True),
    Option("backend_kind", _strings, f"backend kind for the same position: {', '.join(BACKEND_KINDS)}",
           repeat=True),
    Option("backend_group", _strings, "replica group of the backend of the same position (default: one group)",
           repeat=True),
    Option("backend_priority", _strings, "priority of the backend of the same position: a lower one is used only "
           "when every higher one is down (default 0)", repeat=True),
    Option("backend_max_concurrent", _strings, "requests sent at once to the backend of the same position "
           "(default 0: no cap)", repeat=True),
    Option("backend_max_queue", _strings, "requests that may wait for the backend of the same position once "
           "it is at max_concurrent (default 64)", repeat=True),
    Option("affinity", _switch, "send conversations that start the same to the same replica (prompt cache)",
           "routing.affinity", bare=True),
    Option("affinity_messages", _at_least_one, "affinity: how many first messages make a conversation's key",
           "routing.affinity_messages"),
    Option("affinity_bytes", _at_least_one, "affinity: how many bytes of those messages (or of a prompt) count",
           "routing.affinity_bytes"),
    Option("replica_backoff", _seconds, "seconds a failed replica gets no traffic before it is probed",
           "routing.backoff"),
    Option("replica_backoff_max", _seconds, "longest back-off of a replica that keeps failing",
           "routing.backoff_max"),
    Option("config", _text, "TOML configuration file"),
    Option("log_level", _log_level, f"one of {', '.join(LOG_LEVELS)}", "log_level"),
    Option("log_format", _log_format, "log line format: text, or json (one object per line)",
           "log_format"),
    Option("connect_timeout", _seconds, "seconds to connect to a backend", "timeouts.connect"),
    Option("first_byte_timeout", _seconds, "seconds to wait for a backend's first byte (model loads)",
           "timeouts.first_byte"),
    Option("idle_timeout", _seconds, "seconds allowed between two chunks of a stream", "timeouts.idle"),
    Option("total_timeout", _seconds, "seconds for a whole request, 0 for no limit", "timeouts.total"),
    Option("max_response_bytes", _count, "largest non-streamed backend answer", "limits.response_bytes"),
    Option("max_sse_line_bytes", _count, "longest line of a backend's event stream", "limits.sse_line_bytes"),
    Option("max_gathered_bytes", _count, "largest answer assembled from a backend stream",
           "limits.gathered_bytes"),
    Option("max_catalog_bytes", _count, "largest model list or metadata answer from a backend",
           "limits.catalog_bytes"),
    Option("head_timeout", _seconds, "seconds a client may take to send a request's headers",
           "connections.head_timeout"),
    Option("body_timeout", _seconds, "seconds a client may pause while sending a request body",
           "connections.body_timeout"),
    Option("keepalive_timeout", _seconds, "seconds an idle client connection is kept open",
           "connections.keepalive_timeout"),
    Option("max_connections", _count, "client connections open at once, 0 for no cap",
           "connections.max_connections"),
    Option("passthrough", _passthrough, "a /v1 route forwarded to the backend, repeatable; '*' for all",
           "passthrough", repeat=True),
    Option("ollama_version", _version, "version reported by /api/version", "ollama_version"),
    Option("catalog_ttl", _seconds, "seconds the model list is cached", "catalog_ttl"),
    Option("max_body_bytes", _count, "largest request body accepted", "max_body_bytes"),
    Option("api_key", _api_key, "require this bearer token from clients", "api_key", secret=True),
    Option("origins", _strings, "extra allowed CORS origins (also OLLAMA_ORIGINS)", repeat=True),
    Option("workers", _at_least_one, "server processes sharing the port (SO_REUSEPORT)", "workers"),
    Option("data_dir", _text, "directory for the shim's own data (default $XDG_DATA_HOME/ollama-shim)"),
    Option("translate_native_apis", _switch,
           "translate /v1/messages and /v1/responses even where the backend speaks them", "translate_native_apis"),
    Option("read_model_files", _switch, "read the GGUF headers of a llama.cpp router's model files when it runs "
           "on this machine, to describe models it has not loaded", "read_model_files"),
    Option("keep_alive", _keep_alive, "how long a model stays loaded after its last request where the shim "
           "unloads idle models itself (llama.cpp router): 5m, 1h, 0, -1 for forever (also OLLAMA_KEEP_ALIVE)"),
    Option("shutdown_grace", _seconds, "seconds running streams may take to finish at shutdown", "shutdown_grace"),
    Option("json", _switch, "doctor: print the report as JSON", "json_output", bare=True),
)
_BY_NAME = {option.name: option for option in OPTIONS}
_DEFAULTS = Settings()


# ---------------------------------------------------------------------------
# Sources: CLI, environment, file
# ---------------------------------------------------------------------------


class ArgumentParser(argparse.ArgumentParser):
    """argparse that raises ``SettingsError`` instead of printing usage and exiting."""

    def error(self, message: str) -> NoReturn:
        raise SettingsError(message)


def _help(option: Option) -> str:
    parts = [option.help]
    if option.default is not None and not option.secret and not option.repeat:
        parts.append(f"(default {option.default})")
    parts.append(f"[env {option.env}{', comma-separated' if option.repeat else ''}]")
    return " ".join(parts)


COMMANDS = ("serve", "doctor")


def command_of(argv: Sequence[str]) -> str:
    """The command ``argv`` names (``serve`` when none); ``SettingsError`` for a bad one."""
    command: str = build_parser().parse_args(list(argv)).command
    return command


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="ollama-shim", description="Serve the Ollama API over an OpenAI-compatible backend.")
    parser.add_argument("command", nargs="?", default="serve", choices=COMMANDS,
                        help="serve, or doctor: check the backends and say what is wrong (default: serve)")
    for option in OPTIONS:
        if option.bare:
            parser.add_argument(option.flag, dest=option.name, action="store_const", const=True, default=None,
                                help=_help(option))
            continue
        parser.add_argument(option.flag, dest=option.name, action="append" if option.repeat else "store",
                            default=None, help=_help(option))
    return parser


def _from_argv(argv: Sequence[str]) -> dict[str, Any]:
    ns = build_parser().parse_args(list(argv))
    return {k: v for k, v in vars(ns).items() if v is not None and k in _BY_NAME}


def _from_env(environ: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for option in OPTIONS:
        raw = environ.get(option.env)
        if raw is None or (raw == "" and not option.secret):
            continue
        out[option.name] = [p.strip() for p in raw.split(",") if p.strip()] if option.repeat else raw
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
            for table in value:
                unknown = sorted(set(table) - _BACKEND_KEYS)
                if unknown:
                    raise SettingsError(f"invalid config file {path}: [[backends]] {table['url']!r}: "
                                        f"unknown key {unknown[0]!r}")
            out["backend"] = [str(b["url"]) for b in value]
            for name, attr in _PER_BACKEND:
                out[name] = [str(b.get(attr, "")) for b in value]
            continue
        if key == "models":
            out["models"] = _configured_models(path, value)
            continue
        name = key.replace("-", "_")
        if name not in _BY_NAME or name == "config":
            raise SettingsError(f"invalid config file {path}: unknown key {key!r}")
        out[name] = value
    return out


_BACKEND_KEYS = frozenset({"url", *(attr for _, attr in _PER_BACKEND)})
_MODEL_KEYS = frozenset({"name", "from", "system", "parameters", "messages", "license"})


def _configured_models(path: str, tables: Any) -> tuple[CustomModel, ...]:
    """``[[models]]`` tables -> custom models, checked as ``/api/create`` checks them."""
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise SettingsError(f"invalid config file {path}: 'models' must be [[models]] tables")
    models: dict[str, CustomModel] = {}
    for table in tables:
        where = f"invalid config file {path}: [[models]] {table.get('name', '')!r}"
        unknown = sorted(set(table) - _MODEL_KEYS)
        if unknown:
            raise SettingsError(f"{where}: unknown key {unknown[0]!r}")
        messages = table.get("messages", [])
        if not isinstance(messages, list) or not all(isinstance(m, dict) and isinstance(m.get("role"), str)
                                                     and isinstance(m.get("content"), str) for m in messages):
            raise SettingsError(f"{where}: 'messages' must be tables with role and content strings")
        if not isinstance(table.get("parameters", {}), dict):
            raise SettingsError(f"{where}: 'parameters' must be a table")
        license = table.get("license")
        if license is not None and not isinstance(license, str) and not (
                isinstance(license, list) and all(isinstance(t, str) for t in license)):
            raise SettingsError(f"{where}: 'license' must be a string or a list of strings")
        try:
            model = checked_custom_model(
                str(table.get("name", "")), str(table.get("from", "")), system=str(table.get("system", "")),
                parameters=table.get("parameters"), license=license, from_config=True,
                messages=[RequestMessage(role=m["role"], content=m["content"]) for m in messages])
        except BadRequest as exc:
            raise SettingsError(f"{where}: {exc.message}") from None
        if model.key in models:
            raise SettingsError(f"{where}: declared twice")
        models[model.key] = model
    return tuple(models.values())


def _ollama_keep_alive(values: Mapping[str, Any], environ: Mapping[str, str]) -> float:
    """``--keep-alive`` (flag, variable or file), else Ollama's own ``OLLAMA_KEEP_ALIVE``, else the default."""
    if "keep_alive" in values:
        seconds: float = values["keep_alive"]
        return seconds
    raw = environ.get("OLLAMA_KEEP_ALIVE", "").strip()
    if not raw:
        return _DEFAULTS.keep_alive
    try:
        return _keep_alive(_BY_NAME["keep_alive"], raw)
    except SettingsError as exc:
        raise SettingsError(f"invalid OLLAMA_KEEP_ALIVE {raw!r}: {str(exc).partition(': ')[2]}") from None


def load_settings(argv: Sequence[str], environ: Mapping[str, str]) -> Settings:
    """Build Settings from argv (without the program name) and an environment mapping."""
    cli = _from_argv(argv)
    env = _from_env(environ)
    config_path = cli.get("config") or env.get("config")
    raw: dict[str, Any] = _from_file(config_path) if config_path else {}
    custom_models = raw.pop("models", ())
    raw.update(env)
    raw.update(cli)
    values = {name: _BY_NAME[name].check(_BY_NAME[name], value) for name, value in raw.items()}

    groups: dict[str, dict[str, Any]] = {"": {}, "timeouts": {}, "limits": {}, "connections": {}, "routing": {}}
    for option in OPTIONS:
        if option.target is not None and option.name in values:
            group, _, attr = option.target.rpartition(".")
            groups[group][attr] = values[option.name]
    host, port = parse_listen(values.get("listen") or environ.get("OLLAMA_HOST") or DEFAULT_LISTEN)
    origins = [o.strip() for o in environ.get("OLLAMA_ORIGINS", "").split(",") if o.strip()]
    return dataclasses.replace(
        _DEFAULTS,
        host=host,
        port=port,
        backends=_backends(values.get("backend") or [], {name: values.get(name, ()) for name, _ in _PER_BACKEND}),
        origins=(*origins, *(o.strip() for o in values.get("origins", ()))),
        timeouts=Timeouts(**groups["timeouts"]),
        limits=Limits(**groups["limits"]),
        connections=Connections(**groups["connections"]),
        routing=Routing(**groups["routing"]),
        data_dir=values.get("data_dir") or default_data_dir(environ),
        custom_models=custom_models,
        keep_alive=_ollama_keep_alive(values, environ),
        **groups[""],
    )
