"""What the shim counts about its requests: Prometheus metrics for ``GET /metrics`` and the in-process
figures the status page shows.

One ``RequestRecord`` per request is made by the app's outermost middleware and held in a context
variable while the request runs. The routes add to it through the module functions, never by
holding a ``Metrics``:

- ``route_to(model, backend)`` once the model is resolved (the relay does it);
- ``observe_chunks(chunks)`` for each batch of Ollama chunks a streamed answer produced: the first
  one is the time to first token, the ``done`` one brings ``prompt_eval_count``/``eval_count``;
  ``observe_tokens(answer)`` for a non-streamed answer (tokens only);
- ``note_error(exc)`` for a failure the client is told about, before or after the first byte.

``Metrics`` (one per app) turns finished records into the Prometheus series below and keeps the
status page's figures (requests in flight, tokens per second over ``RATE_WINDOW`` seconds, the last
``RECENT_ERRORS`` errors: kind, status and message, never prompt text); the figures leave out the
requests about the shim itself (``QUIET_PATHS``), which the Prometheus series count.

    ollama_shim_requests_total{endpoint,model,backend,status}   counter
    ollama_shim_request_duration_seconds{endpoint}                histogram
    ollama_shim_time_to_first_token_seconds{endpoint}             histogram (streamed upstream answers)
    ollama_shim_input_tokens_total{model,backend}                 counter (prompt_eval_count)
    ollama_shim_output_tokens_total{model,backend}                counter (eval_count)
    ollama_shim_streams_in_flight                                 gauge (summed over live workers)
    ollama_shim_upstream_errors_total{kind,backend}               counter (UpstreamStatus/Timeout/...)
    ollama_shim_backend_up{backend}                               gauge, 1/0 from the last catalog read
    ollama_shim_replica_up{backend}                               gauge, 0 while the router has it down

Label values are bounded: ``model`` is the catalog's name of a resolved model (never the text a
client sent), ``endpoint`` the route's pattern (``endpoint_label``).

With ``--workers N`` the supervisor sets ``PROMETHEUS_MULTIPROC_DIR`` to a fresh directory before it
forks (``workers.py``); each worker then writes its series to files there and a scrape, answered by
any worker, adds up every worker's files (prometheus_client's multiprocess mode). Without it, the
series live in this app's own registry. The status page's figures are always the answering
process's own.

May import: stdlib, prometheus_client, ``ollama_shim.errors``, ``ollama_shim.wire``.
"""

from __future__ import annotations

import contextlib
import glob
import os
import time
from collections import deque
from collections.abc import Iterable, Sequence
from contextvars import ContextVar, Token
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Metric, generate_latest, values
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from .errors import ShimError, UpstreamError, UpstreamProtocol, UpstreamStatus, UpstreamTimeout, UpstreamUnreachable
from .wire.ollama import ChatChunk, GenerateChunk

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
RATE_WINDOW = 60.0  # seconds over which the status page's tokens per second are counted
RECENT_ERRORS = 20
MESSAGE_CHARS = 200  # an error message is cut to this length on the status page
# Requests about the shim itself (probes, scrapes, the status page polling): not "in flight" on the
# status page and logged at debug.
QUIET_PATHS = frozenset({"/", "/metrics", "/status", "/status.json", "/status.js"})
UPSTREAM_KINDS: tuple[type[UpstreamError], ...] = (UpstreamStatus, UpstreamTimeout, UpstreamUnreachable,
                                                   UpstreamProtocol)
_KNOWN_V1 = frozenset({"/v1/models", "/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/responses",
                       "/v1/messages", "/v1/messages/count_tokens"})
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300)

OllamaChunk = ChatChunk | GenerateChunk
_FILE_HEADER = 8  # bytes a worker's metrics file has once it is sized: its used-length word and padding


class WorkerFiles(MultiProcessCollector):
    """Every worker's series, read from their files, leaving out a file another worker is creating
    at this instant (empty until it is sized) or has just removed: a scrape never fails on one."""

    def collect(self) -> Iterable[Metric]:
        ready = []
        for path in glob.glob(os.path.join(self._path, "*.db")):
            with contextlib.suppress(OSError):
                if os.path.getsize(path) >= _FILE_HEADER:
                    ready.append(path)
        return self.merge(ready, accumulate=True)  # type: ignore[no-any-return,no-untyped-call]


def forget_worker(pid: int, directory: str) -> None:
    """A worker exited: its in-flight gauges no longer count (its counters still do)."""
    mark_process_dead(pid, directory)  # type: ignore[no-untyped-call]  # untyped in prometheus_client


def endpoint_label(route_pattern: str | None, path: str) -> str:
    """The ``endpoint`` label: the route's pattern; a ``/v1`` passthrough path only when it is a known
    one (any other would let clients make up series), a model id under ``/v1/models/`` folded."""
    if route_pattern is None:
        return "unmatched"
    if not route_pattern.startswith("/v1/"):
        return route_pattern
    if path in _KNOWN_V1:
        return path
    return "/v1/models/{model}" if path.startswith("/v1/models/") else "/v1/other"


def upstream_kind(exc: BaseException) -> str | None:
    """``UpstreamStatus``, ``UpstreamTimeout``, ... for a backend failure; None for anything else."""
    if not isinstance(exc, UpstreamError):
        return None
    return next((kind.__name__ for kind in UPSTREAM_KINDS if isinstance(exc, kind)), UpstreamError.__name__)


@dataclass
class RequestRecord:
    """What is known about one request, filled in as it runs."""

    request_id: str
    method: str
    path: str  # for the log (no query string)
    endpoint: str  # the metric label
    started: float  # time.monotonic()
    model: str = ""
    backend: str = ""
    status: int = 0
    first_chunk_at: float | None = None
    tokens_in: int = 0
    tokens_out: int = 0
    error_kind: str = ""  # the exception's class name, when the client was told of a failure
    error_message: str = ""
    upstream_kind: str | None = None
    streaming: bool = False
    duration: float = 0.0

    @property
    def quiet(self) -> bool:
        return self.path in QUIET_PATHS

    def access_fields(self) -> dict[str, str | int | float]:
        """The access-log line's fields: no prompt text, nothing the client wrote but method and path."""
        fields: dict[str, str | int | float] = {"method": self.method, "path": self.path}
        if self.model:
            fields["model"] = self.model
        if self.backend:
            fields["backend"] = self.backend
        fields["status"] = self.status
        fields["duration_ms"] = round(self.duration * 1000, 1)
        if self.tokens_in or self.tokens_out:
            fields["tokens_in"] = self.tokens_in
            fields["tokens_out"] = self.tokens_out
        if self.error_kind:
            fields["error"] = self.error_kind
        return fields


_CURRENT: ContextVar[RequestRecord | None] = ContextVar("request_record", default=None)


def track(record: RequestRecord) -> Token[RequestRecord | None]:
    """Make ``record`` the current request's (the middleware does; ``untrack`` with the token after)."""
    return _CURRENT.set(record)


def untrack(token: Token[RequestRecord | None]) -> None:
    _CURRENT.reset(token)


def route_to(model: str, backend: str) -> None:
    """The current request goes to ``model`` on ``backend`` (the catalog's name and the backend's root)."""
    record = _CURRENT.get()
    if record is not None:
        record.model, record.backend = model, backend


def observe_chunks(chunks: Sequence[object]) -> None:
    """A streamed answer produced ``chunks``: the first ever is the first token, a done Ollama chunk
    brings the counts (chunks of other shapes only count for the first token)."""
    record = _CURRENT.get()
    if record is None or not chunks:
        return
    if record.first_chunk_at is None:
        record.first_chunk_at = time.monotonic()
    last = chunks[-1]
    if isinstance(last, ChatChunk | GenerateChunk):
        observe_tokens(last)


def observe_tokens(chunk: OllamaChunk) -> None:
    """The token counts of a done chunk (a whole non-streamed answer is one)."""
    record = _CURRENT.get()
    if record is not None and chunk.done:
        record.tokens_in = chunk.prompt_eval_count or 0
        record.tokens_out = chunk.eval_count or 0


def note_error(exc: BaseException) -> None:
    """The current request failed with ``exc`` (told to the client as a status or a last line)."""
    record = _CURRENT.get()
    if record is None:
        return
    record.error_kind = type(exc).__name__
    record.error_message = (exc.message if isinstance(exc, ShimError) else "internal error")[:MESSAGE_CHARS]
    record.upstream_kind = upstream_kind(exc)


@dataclass(frozen=True)
class RecentError:
    at: float  # time.time()
    request_id: str
    method: str
    path: str
    status: int
    kind: str
    message: str
    model: str
    backend: str


class Metrics:
    """The Prometheus series of one app (one process) and the status page's figures."""

    def __init__(self, multiprocess_dir: str | None = None) -> None:
        self.multiprocess_dir = multiprocess_dir
        # prometheus_client picks where values live when it is imported; a worker is forked after
        # that, so the choice is made again here, before any series exists.
        values.ValueClass = values.MultiProcessValue() if multiprocess_dir else values.MutexValue  # type: ignore[no-untyped-call]
        # In multiprocess mode the registry holds one collector over the workers' files; describing it
        # at registration would read those files while another worker may be creating its own (an
        # empty file then fails to parse and the worker would die at start).
        self.registry = CollectorRegistry(auto_describe=not multiprocess_dir)
        own = None if multiprocess_dir else self.registry  # in multiprocess mode the files are the registry
        self.requests = Counter("ollama_shim_requests", "Requests answered, by endpoint, model, backend and status",
                                ("endpoint", "model", "backend", "status"), registry=own)
        self.latency = Histogram("ollama_shim_request_duration_seconds", "Time from request to last byte",
                                 ("endpoint",), buckets=LATENCY_BUCKETS, registry=own)
        self.ttft = Histogram("ollama_shim_time_to_first_token_seconds",
                              "Time from request to the first generated text of a streamed backend answer",
                              ("endpoint",), buckets=TTFT_BUCKETS, registry=own)
        self.tokens_in = Counter("ollama_shim_input_tokens", "Prompt tokens the backends evaluated",
                                 ("model", "backend"), registry=own)
        self.tokens_out = Counter("ollama_shim_output_tokens", "Tokens the backends generated",
                                  ("model", "backend"), registry=own)
        self.streams = Gauge("ollama_shim_streams_in_flight", "Streamed answers being sent now",
                             registry=own, multiprocess_mode="livesum")
        self.upstream_errors = Counter("ollama_shim_upstream_errors", "Backend failures told to clients, by kind",
                                       ("kind", "backend"), registry=own)
        self.backend_up = Gauge("ollama_shim_backend_up", "1 if the backend's last model list was read, else 0",
                                ("backend",), registry=own, multiprocess_mode="livemostrecent")
        self.replica_up = Gauge("ollama_shim_replica_up",
                                "0 while a request failed on the backend and it has not been probed back, else 1",
                                ("backend",), registry=own, multiprocess_mode="livemin")
        if multiprocess_dir:
            WorkerFiles(self.registry, path=multiprocess_dir)  # type: ignore[no-untyped-call]
        # The status page's figures, this process only.
        self.started = time.time()
        self.in_flight = 0
        self.streams_now = 0
        self.total_requests = 0
        self.total_tokens_in = 0
        self.total_tokens_out = 0
        self._generated: deque[tuple[float, int]] = deque()  # (monotonic time, tokens) of finished requests
        self.recent_errors: deque[RecentError] = deque(maxlen=RECENT_ERRORS)

    @classmethod
    def from_environment(cls) -> Metrics:
        """Multiprocess mode when the worker supervisor set ``PROMETHEUS_MULTIPROC_DIR``."""
        return cls(os.environ.get(MULTIPROC_ENV) or None)

    # -- a request's life ----------------------------------------------------------------------

    def began(self, record: RequestRecord) -> None:
        if not record.quiet:
            self.in_flight += 1

    def stream_started(self, record: RequestRecord) -> None:
        if not record.streaming:
            record.streaming = True
            self.streams_now += 1
            self.streams.inc()

    def finished(self, record: RequestRecord) -> None:
        """Count a request that is over (``status`` and the rest filled in)."""
        now = time.monotonic()
        record.duration = now - record.started
        if not record.quiet:
            self.in_flight -= 1
        if record.streaming:
            self.streams_now -= 1
            self.streams.dec()
        self.requests.labels(record.endpoint, record.model, record.backend, str(record.status)).inc()
        self.latency.labels(record.endpoint).observe(record.duration)
        if record.first_chunk_at is not None:
            self.ttft.labels(record.endpoint).observe(record.first_chunk_at - record.started)
        if record.tokens_in:
            self.tokens_in.labels(record.model, record.backend).inc(record.tokens_in)
        if record.tokens_out:
            self.tokens_out.labels(record.model, record.backend).inc(record.tokens_out)
            self._generated.append((now, record.tokens_out))
        if record.upstream_kind is not None:
            self.upstream_errors.labels(record.upstream_kind, record.backend).inc()
        if not record.quiet:
            self.total_requests += 1
        self.total_tokens_in += record.tokens_in
        self.total_tokens_out += record.tokens_out
        if record.error_kind:
            self.recent_errors.append(RecentError(
                time.time(), record.request_id, record.method, record.path, record.status, record.error_kind,
                record.error_message, record.model, record.backend,
            ))

    # -- reading -------------------------------------------------------------------------------

    def tokens_per_second(self) -> float:
        """Generated tokens per second over the last ``RATE_WINDOW`` seconds (or since start, if less)."""
        now = time.monotonic()
        while self._generated and self._generated[0][0] < now - RATE_WINDOW:
            self._generated.popleft()
        window = min(RATE_WINDOW, max(time.time() - self.started, 1.0))
        return sum(tokens for _, tokens in self._generated) / window

    def set_backend_up(self, backend: str, up: bool) -> None:
        self.backend_up.labels(backend).set(1 if up else 0)

    def set_replica_up(self, backend: str, up: bool) -> None:
        self.replica_up.labels(backend).set(1 if up else 0)

    def exposition(self) -> bytes:
        """Every series in Prometheus's text format (all workers' in multiprocess mode)."""
        return generate_latest(self.registry)
