"""``ollama-shim doctor``: check each backend the shim would use and say what is wrong, in plain words.

For each configured backend (or, with none configured, each one discovery finds) ``examine``
finds out: whether it answers ``/v1/models``, and if not why (nothing listening, a web page, an
API key refused, a timeout); its kind and version (llama.cpp ``/props`` ``build_info``, LM
Studio's REST API generation, vLLM ``/version``); its models from the catalog the shim itself
reads (``backends.LiveBackend``, read only): loaded or not, context, capabilities; llama.cpp's
router or single mode; LM Studio's JIT loading; then a 1-token chat round trip and, where an
embedding model exists, an embedding round trip. Every problem comes with a fix.

LM Studio's JIT setting cannot be read through its API. It shows in ``/v1/models``, which lists
every downloaded model with JIT on and only the loaded ones with it off; with nothing loaded,
the 1-token request to a model that is not loaded answers "No models loaded" when it is off.
The report says which of these it went by.

``run`` prints the report (text, or JSON with ``--json``) and returns the exit status: 0 when
everything needed works, 1 otherwise. The JSON schema (``Report``, ``schema: 1``) is documented
in the README; fields are only ever added.

May import: asyncio, logging, stdlib, msgspec, ``ollama_shim.backends``, ``ollama_shim.discovery``,
``ollama_shim.upstream``, ``ollama_shim.settings``, ``ollama_shim.errors``, ``ollama_shim.wire``,
``ollama_shim.translate.catalog``.
"""

from __future__ import annotations

import asyncio
import sys
import time
import urllib.parse
from collections.abc import Sequence
from typing import Literal, TextIO

import msgspec

from . import discovery
from .backends import LiveBackend
from .discovery import Candidate
from .errors import UpstreamError, UpstreamTimeout, UpstreamUnreachable
from .settings import Backend, Settings, Timeouts, is_loopback
from .translate import catalog
from .translate.catalog import EMBEDDING, ModelRecord
from .upstream import Upstream, error_message
from .wire.backends import LMStudioV0ModelList, LMStudioV1ModelList, ModelListEntries
from .wire.openai import (
    ChatCompletion,
    ChatCompletionRequest,
    EmbeddingsRequest,
    EmbeddingsResponse,
    ModelEntry,
    OutMessage,
)

SCHEMA = 1
# The model list and metadata of a healthy server come in well under a second.
CATALOG_TIMEOUTS = Timeouts(connect=3.0, first_byte=10.0, idle=10.0, total=0.0)
# A round trip may have to load the model first.
ROUND_TRIP_TIMEOUTS = Timeouts(connect=3.0, first_byte=120.0, idle=30.0, total=0.0)
_HEAD_BYTES = 64 * 1024  # how much of a /v1/models answer is read to tell what it is
LOADED_FOR_SECONDS = 600  # LM Studio: a model loaded only for the round trip is unloaded after this
NO_MODELS_LOADED = "no models loaded"  # LM Studio's answer with JIT off and nothing loaded

KIND_NAMES = {
    "lmstudio": "LM Studio",
    "llamacpp": "llama.cpp llama-server",
    "vllm": "vLLM",
    "openai": "OpenAI",
    "openrouter": "OpenRouter",
    "generic": "an OpenAI-compatible server",
}


# ---------------------------------------------------------------------------
# The report: the JSON schema
# ---------------------------------------------------------------------------


class Problem(msgspec.Struct):
    what: str  # what is wrong, one sentence
    fix: str  # what to do about it


class ModelReport(msgspec.Struct):
    id: str  # the backend's own id
    name: str  # the Ollama name the shim lists it under
    loaded: bool
    context_length: int | None  # usable now (loaded context), if known
    max_context_length: int | None  # what the model supports, if known
    capabilities: list[str]  # Ollama's words: completion, tools, vision, embedding, thinking, insert


class RoundTrip(msgspec.Struct):
    model: str
    ok: bool
    seconds: float
    error: str | None = None


class BackendReport(msgspec.Struct):
    url: str
    source: Literal["configured", "discovered"]
    answering: bool
    kind: str | None = None  # lmstudio | llamacpp | vllm | openai | openrouter | generic
    version: str | None = None
    mode: Literal["router", "single"] | None = None  # llama.cpp only
    jit_loading: Literal["on", "off", "unknown"] | None = None  # LM Studio only
    jit_loading_how: str | None = None  # what the JIT verdict was inferred from
    models: list[ModelReport] = msgspec.field(default_factory=list)
    chat: RoundTrip | None = None  # None: not tried (no chat model)
    embedding: RoundTrip | None = None  # None: not tried (no embedding model)
    problems: list[Problem] = msgspec.field(default_factory=list)


class Report(msgspec.Struct):
    schema: int
    ok: bool
    backends: list[BackendReport]
    problems: list[Problem]  # not tied to one backend: none configured and none found


# Small answers read only here.
class VllmVersion(msgspec.Struct):
    version: str | None = None


class LMStudioRestList(msgspec.Struct):
    """LM Studio's REST list, even when empty (``models`` must be there: LM Studio answers any
    unknown path with a 200 ``{"error": ...}``, which this refuses)."""

    models: list[msgspec.Raw]


class LlamaCppServerProps(msgspec.Struct):
    build_info: str | None = None
    role: str | None = None  # "router" in router mode
    models_autoload: bool | None = None


# ---------------------------------------------------------------------------
# Plain-words diagnoses
# ---------------------------------------------------------------------------


def _usual_at(port: int | None) -> str | None:
    return next((c.usual for c in discovery.WELL_KNOWN if c.port == port), None)


def unreachable(backend: Backend, error: UpstreamError) -> Problem:
    """Nothing answers: name the server that usually listens there and how to start it."""
    parts = urllib.parse.urlsplit(backend.root)
    if isinstance(error, UpstreamTimeout):
        return Problem(f"{backend.root} accepts connections but answers nothing in time",
                       "the server may be hung or still starting: look at its window or log, or restart it")
    if parts.port == 1234 and is_loopback(parts.hostname or ""):
        return Problem(f"LM Studio's server is off: nothing listens at {backend.root}",
                       "start it in LM Studio (Developer tab: Start Server) or run `lms server start`")
    if not is_loopback(parts.hostname or ""):
        return Problem(f"nothing answers at {backend.root} ({error.message})",
                       "check that the machine is up, the server runs there, and a firewall lets the port through")
    usual = _usual_at(parts.port)
    who = f" (usually {usual} on this port)" if usual else ""
    return Problem(f"nothing listens at {backend.root}{who}",
                   "start the model server, or pass the port it really listens on with --backend http://HOST:PORT")


def _wrong_port(backend: Backend, seen: str) -> Problem:
    return Problem(f"{backend.root} answers with {seen}, not a model server API: probably the wrong port",
                   "find the port your model server listens on (LM Studio 1234, llama-server 8080) and pass "
                   "--backend http://HOST:PORT")


def refused(backend: Backend, status: int, message: str) -> Problem:
    if status in (401, 403):
        if backend.key:
            return Problem(f"{backend.root} refuses the API key given (HTTP {status}: {message})",
                           "pass the server's current key with --backend-key")
        return Problem(f"{backend.root} requires an API key (HTTP {status}: {message})",
                       "pass it with --backend-key KEY (LM Studio: Developer tab, Server Settings, "
                       "Require Authentication lists the tokens)")
    if status == 404:
        return Problem(f"{backend.root} has no /v1/models (HTTP 404): not an OpenAI-compatible server at this URL",
                       "check the port and the path; pass the server's base URL, e.g. http://HOST:PORT or .../v1")
    return Problem(f"{backend.root} answers HTTP {status} to /v1/models: {message}",
                   "look at the model server's log for why")


def no_models(kind: str | None) -> Problem:
    fixes = {
        "lmstudio": "download one in LM Studio (Discover tab) or with `lms get MODEL`",
        "llamacpp": "start llama-server with -m MODEL.gguf, or --models-dir DIR holding GGUF files",
        "vllm": "start vLLM with a model: `vllm serve MODEL`",
    }
    return Problem("the server lists no models", fixes.get(kind or "", "load or download a model on the server"))


JIT_OFF_NOTHING_LOADED = Problem(
    "LM Studio's JIT loading is off and no model is loaded, so every request fails with 'No models loaded'",
    "load a model (`lms load MODEL` or the Developer tab), or turn on Just-in-Time Model Loading "
    "(Developer tab, Server Settings)",
)


# ---------------------------------------------------------------------------
# Examining one backend
# ---------------------------------------------------------------------------


class _Unusable(Exception):
    def __init__(self, problem: Problem) -> None:
        self.problem = problem


async def _model_list(quick: Upstream, backend: Backend) -> list[ModelEntry]:
    """``/v1/models`` read raw first, so that a web page or a refusal can be told apart."""
    try:
        async with quick.forward(backend, "GET", "/v1/models", {"Accept-Encoding": "identity"}, None) as resp:
            status, media = resp.status, resp.headers.get("Content-Type", "").partition(";")[0].strip().lower()
            head = b""
            async for data in quick.chunks(backend, resp):
                head += data
                if len(head) > _HEAD_BYTES:
                    break
    except (UpstreamUnreachable, UpstreamTimeout) as exc:
        raise _Unusable(unreachable(backend, exc)) from None
    except UpstreamError as exc:
        raise _Unusable(Problem(f"{backend.root} does not answer like a model server: {exc.message}",
                                "check the URL and port given with --backend")) from None
    looks_html = media == "text/html" or head.lstrip()[:1] == b"<"
    if looks_html and status not in (401, 403):
        raise _Unusable(_wrong_port(backend, "a web page (HTML)"))
    if status >= 400:
        raise _Unusable(refused(backend, status, error_message(head)[:200] or "no message"))
    try:
        if len(head) > _HEAD_BYTES:  # a long list: read it again whole, under the catalog's own limit
            listing = await quick.get_json(backend, "/v1/models", ModelListEntries)
        else:
            listing = msgspec.json.decode(head, type=ModelListEntries)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError, UpstreamError):
        raise _Unusable(_wrong_port(backend, "something that is not a model list")) from None
    return catalog.decode_each(listing.data, ModelEntry, lambda name: ModelEntry(id=name))


def _model_report(record: ModelRecord) -> ModelReport:
    return ModelReport(record.upstream_id, record.name, record.loaded, record.context_length,
                       record.max_context_length, list(record.capabilities))


async def _version(live: LiveBackend, report: BackendReport, entries: list[ModelEntry]) -> None:
    """Kind-specific facts: version, llama.cpp mode."""
    if live.kind == "llamacpp":
        props = await live.optional("/props", LlamaCppServerProps)
        report.version = props.build_info if props is not None else None
        router = (props is not None and props.role == "router") or any(e.status is not None for e in entries)
        report.mode = "router" if router else "single"
    elif live.kind == "lmstudio":
        v1 = await live.optional("/api/v1/models", LMStudioV1ModelList)
        v0 = await live.optional("/api/v0/models", LMStudioV0ModelList)
        if v1 is not None and v1.models:
            report.version = "0.4 or newer (REST API v1)"
        elif v0 is not None and v0.data:
            report.version = "0.3.6 to 0.3.x (REST API v0)"
        else:
            report.version = "unknown (no REST API answered; before 0.3.6, or no models)"
    elif live.kind == "vllm":
        found = await live.optional("/version", VllmVersion)
        report.version = found.version if found is not None else None


def _jit(report: BackendReport, records: Sequence[ModelRecord], listed: set[str]) -> None:
    """LM Studio's JIT loading, from what ``/v1/models`` lists against what is downloaded."""
    unloaded = [r for r in records if not r.loaded]
    if any(r.upstream_id in listed for r in unloaded):
        report.jit_loading = "on"
        report.jit_loading_how = ("inferred: /v1/models lists models that are not loaded, which LM Studio does "
                                  "only with JIT loading on; the setting itself cannot be read")
    elif unloaded:
        report.jit_loading = "off"
        report.jit_loading_how = ("inferred: /v1/models lists only the loaded models, which LM Studio does only "
                                  "with JIT loading off; the setting itself cannot be read")
    else:
        report.jit_loading = "unknown"
        report.jit_loading_how = ("every model is loaded, so the model lists cannot tell; the setting itself "
                                  "cannot be read")


def _pick(records: Sequence[ModelRecord], *, embedding: bool) -> ModelRecord | None:
    """The model for a round trip: a loaded one first, so that nothing is loaded just for the check."""
    fitting = [r for r in records if (EMBEDDING in r.capabilities) == embedding]
    return next((r for r in fitting if r.loaded), fitting[0] if fitting else None)


async def _round_trip(patient: Upstream, live: LiveBackend, model: str, *, embedding: bool) -> RoundTrip:
    started = time.monotonic()
    try:
        if embedding:
            ttl = LOADED_FOR_SECONDS if live.dialect.sends_ttl else None
            body = msgspec.json.encode(EmbeddingsRequest(model=model, input="Hello", ttl=ttl))
            answer = await patient.post_json(live.settings, "/v1/embeddings", body, EmbeddingsResponse)
            empty = not answer.data
        else:
            request = ChatCompletionRequest(model=model, messages=[OutMessage(role="user", content="Hello")],
                                            ttl=LOADED_FOR_SECONDS if live.dialect.sends_ttl else None)
            if live.dialect.max_tokens_field == "max_tokens":
                request.max_tokens = 1
            else:
                request.max_completion_tokens = 1
            chat = await patient.post_json(live.settings, "/v1/chat/completions", msgspec.json.encode(request),
                                           ChatCompletion)
            empty = not chat.choices
    except UpstreamError as exc:
        return RoundTrip(model, False, round(time.monotonic() - started, 3), exc.message[:300])
    error = "the answer held no result" if empty else None
    return RoundTrip(model, not empty, round(time.monotonic() - started, 3), error)


def _round_trip_problem(what: str, trip: RoundTrip, report: BackendReport) -> Problem:
    error = trip.error or ""
    if NO_MODELS_LOADED in error.lower() and report.kind == "lmstudio":
        report.jit_loading = "off"
        report.jit_loading_how = (f"inferred: a 1-token request to {trip.model}, which is not loaded, answered "
                                  "'No models loaded'; the setting itself cannot be read")
        return JIT_OFF_NOTHING_LOADED
    if report.kind == "lmstudio" and report.jit_loading == "off":
        return Problem(f"the {what} round trip with {trip.model} failed: {error}",
                       f"JIT loading is off: load it first (`lms load {trip.model}` or the Developer tab)")
    return Problem(f"the {what} round trip with {trip.model} failed: {error}",
                   "look at the model server's log; try the model in the server's own UI")


async def examine(backend: Backend, source: Literal["configured", "discovered"], quick: Upstream,
                  patient: Upstream) -> BackendReport:
    """Everything ``doctor`` says about one backend."""
    report = BackendReport(backend.root, source, answering=False)
    try:
        entries = await _model_list(quick, backend)
    except _Unusable as exc:
        report.problems.append(exc.problem)
        return report
    report.answering = True
    live = LiveBackend(backend, quick)
    await live.refresh(time.time_ns())
    if live.failure is not None:
        report.problems.append(Problem(f"its model list could not be read: {live.failure.message}",
                                       "look at the model server's log for why"))
        return report
    records = live.records
    report.kind = live.kind
    if live.kind == "generic" and not records and await live.optional("/api/v1/models", LMStudioRestList) is not None:
        report.kind = "lmstudio"  # an LM Studio with no model at all is not told apart by the catalog
    report.models = [_model_report(r) for r in records]
    await _version(live, report, entries)
    if live.kind == "lmstudio":
        _jit(report, records, {e.id for e in entries})
    if not records:
        report.problems.append(no_models(report.kind))
        return report
    chat_model, embed_model = _pick(records, embedding=False), _pick(records, embedding=True)
    if chat_model is not None:
        report.chat = await _round_trip(patient, live, chat_model.upstream_id, embedding=False)
        if not report.chat.ok:
            report.problems.append(_round_trip_problem("chat", report.chat, report))
    if embed_model is not None:
        report.embedding = await _round_trip(patient, live, embed_model.upstream_id, embedding=True)
        if not report.embedding.ok and JIT_OFF_NOTHING_LOADED not in report.problems:
            report.problems.append(_round_trip_problem("embedding", report.embedding, report))
    return report


async def diagnose(settings: Settings, candidates: Sequence[Candidate] = discovery.WELL_KNOWN) -> Report:
    """The whole report: the configured backends, or those discovery finds."""
    source: Literal["configured", "discovered"] = "configured"
    backends = settings.backends
    problems: list[Problem] = []
    if not backends:
        source = "discovered"
        probes = await discovery.discover(candidates)
        backends = tuple(Backend(p.candidate.root) for p in probes if p.found)
        if not backends:
            problems.append(Problem("no backend is configured and no model server answers on this machine's "
                                    "usual ports", discovery.no_backend_hint(candidates)))
            problems.extend(Problem(f"{p.candidate.root} (usually {p.candidate.usual}) answers but is not usable: "
                                    f"{p.refused}", "pass it with --backend (and --backend-key if it wants one)")
                            for p in probes if p.refused is not None)
    secrets = [b.key for b in backends]
    quick = Upstream(CATALOG_TIMEOUTS, settings.limits, secrets=secrets)
    patient = Upstream(ROUND_TRIP_TIMEOUTS, settings.limits, secrets=secrets)
    await quick.start()
    await patient.start()
    try:
        reports = list(await asyncio.gather(*(examine(b, source, quick, patient) for b in backends)))
    finally:
        await quick.close()
        await patient.close()
    ok = not problems and all(not r.problems for r in reports)
    return Report(SCHEMA, ok, reports, problems)


# ---------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------


def _context(model: ModelReport) -> str:
    now = str(model.context_length) if model.context_length else "-"
    most = str(model.max_context_length) if model.max_context_length else "-"
    return f"context {now}/{most}"


def _trip_line(what: str, trip: RoundTrip | None, missing: str) -> str:
    if trip is None:
        return f"  {what}: not tried ({missing})"
    if trip.ok:
        return f"  {what}: ok with {trip.model} ({trip.seconds:.2f} s)"
    return f"  {what}: FAILED with {trip.model}: {trip.error}"


def render_text(report: Report) -> str:
    lines: list[str] = []
    for b in report.backends:
        kind = KIND_NAMES.get(b.kind or "", "not known") if b.answering else "not answering"
        version = f", version {b.version}" if b.version else ""
        lines.append(f"{b.url} ({b.source}): {kind}{version}")
        if b.mode is not None:
            lines.append(f"  mode: {b.mode}")
        if b.jit_loading is not None:
            lines.append(f"  JIT loading: {b.jit_loading} ({b.jit_loading_how})")
        if b.answering:
            lines.append(f"  models: {len(b.models)}")
            width = max((len(m.id) for m in b.models), default=0)
            for m in b.models:
                state = "loaded" if m.loaded else "not loaded"
                lines.append(f"    {m.id:<{width}}  {state:<10}  {_context(m)}  {', '.join(m.capabilities)}")
            lines.append(_trip_line("chat", b.chat, "no chat model"))
            lines.append(_trip_line("embedding", b.embedding, "no embedding model"))
        lines.extend(_problem_lines(b.problems))
    lines.extend(_problem_lines(report.problems))
    count = len(report.problems) + sum(len(b.problems) for b in report.backends)
    lines.append("ok: everything needed works" if report.ok else f"{count} problem(s) found")
    return "\n".join(lines) + "\n"


def _problem_lines(problems: Sequence[Problem]) -> list[str]:
    return [line for p in problems for line in (f"  PROBLEM: {p.what}", f"     fix: {p.fix}")]


def render_json(report: Report) -> str:
    return msgspec.json.format(msgspec.json.encode(report), indent=2).decode() + "\n"


def run(settings: Settings, *, candidates: Sequence[Candidate] = discovery.WELL_KNOWN,
        out: TextIO | None = None) -> int:
    """Print the report; 0 when everything needed works, else 1."""
    report = asyncio.run(diagnose(settings, candidates))
    stream = out if out is not None else sys.stdout
    stream.write(render_json(report) if settings.json_output else render_text(report))
    return 0 if report.ok else 1
