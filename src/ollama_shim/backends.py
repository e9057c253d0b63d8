"""Each configured backend as the running shim knows it (``LiveBackend``), and what each kind does.

A ``LiveBackend`` holds one backend's settings (root, key), its kind, its last model catalog and
whether its last catalog read succeeded. Each read lays what the backend says now over what the
shared ``ModelMemory`` holds of its models (``translate.catalog.settle``) and remembers what was
new, so a model keeps what was learned while it was loaded. The kind of an ``auto`` backend is learned by probing
once (llama.cpp answers ``/props``, LM Studio its REST ``/api/v1/models``, vLLM says
``owned_by: vllm``); from then on everything the backend does follows from its kind:

- its dialect (``dialect.DIALECTS``): how requests are spelled;
- ``NATIVE[kind]``: how its catalog is read (a builder over its native metadata), how a model
  is loaded and unloaded on it, whether it can be asked to download one (``/api/pull``) and,
  where not, what a user does instead. A kind missing from ``NATIVE`` is plain: its catalog is
  ``/v1/models`` as listed, and it cannot be asked to load, unload or download anything.

Its ``health`` is what the router (``routing``) knows of it as a replica: requests in flight and
waiting, and whether it is down (after a failed request) until a background probe finds it back.

A llama.cpp router says little of a model it has not loaded; on this machine, the model's GGUF
file says the rest (``model_files``, ``translate.gguf_facts``), below what the router says and
never remembered. The files are read and understood in one worker thread per backend at a time
(``_FileRead``); a catalog read waits for it at most ``FILE_READ_WAIT`` seconds and takes what
it has found by then, so a file on a device that does not answer costs one wait, not every
refresh, and never a second thread.

A single llama-server does not say in ``/props`` whether it serves embeddings: its
``/v1/embeddings`` is asked once per model with a one-word input (200: yes; 501 or another 4xx:
no; anything else: ask again on the next read), and the answer is remembered.

May import: stdlib, msgspec, ``ollama_shim.upstream``, ``ollama_shim.settings``, ``ollama_shim.dialect``,
``ollama_shim.errors``, ``ollama_shim.wire``, ``ollama_shim.translate``, ``ollama_shim.model_memory``,
``ollama_shim.model_files``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import urllib.parse
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import TypeVar

import msgspec

from .dialect import DIALECTS, Dialect, Kind, detect_kind, kind_named
from .errors import UpstreamError, UpstreamStatus
from .model_files import ModelFiles
from .model_memory import InProcessMemory, ModelMemory
from .settings import Backend
from .translate import catalog, gguf_facts, pull
from .translate.catalog import ModelRecord, Sighting
from .upstream import Upstream
from .wire.backends import (
    LlamaCppProps,
    LMStudioLoadRequest,
    LMStudioUnloadRequest,
    LMStudioV0Model,
    LMStudioV0ModelList,
    LMStudioV1Model,
    LMStudioV1ModelList,
    ModelListEntries,
    ModelLoadRequest,
)
from .wire.openai import EmbeddingsRequest, EmbeddingsResponse, ModelEntry

log = logging.getLogger("ollama_shim.backends")

PROBE_TIMEOUT = 5.0
FILE_READ_WAIT = PROBE_TIMEOUT  # seconds a catalog read waits for a backend's model files

T = TypeVar("T")
CatalogReader = Callable[["LiveBackend", list[ModelEntry]], Awaitable[tuple[Sighting, ...]]]
# Kinds whose /v1/models ``created`` is the time of the answer, not a date of the model.
CREATED_IS_ANSWER_TIME = frozenset({"llamacpp", "vllm"})


@dataclass(frozen=True)
class LoadCalls:
    """How a backend kind is asked to load and unload a model: paths, and bodies from the model id."""

    load_path: str
    unload_path: str
    load_body: Callable[[str], bytes]
    unload_body: Callable[[str], bytes]
    # The backend answers at once and loads in the background: poll its /v1/models status until done.
    polls_status: bool = False
    # The routes exist only in one mode (llama.cpp's router): a 404/405/501 that does not speak of
    # the model means this server cannot be asked.
    routes_optional: bool = False
    # The load body at a context length (``num_ctx``), where the load call takes one (LM Studio).
    load_body_at_context: Callable[[str, int], bytes] | None = None


@dataclass(frozen=True)
class DownloadCalls:
    """How a backend kind is asked to download a model (``/api/pull``) and how the download's
    progress is read: a job started by one call and looked at by another."""

    start_path: str
    start_body: Callable[[str], bytes]  # from the Ollama name; BadRequest for one the backend cannot take
    status_path: Callable[[str], str]  # from the job id


@dataclass(frozen=True)
class KindBehaviour:
    """What a backend of one kind does beyond its dialect: how its catalog is read, how it loads,
    whether it downloads (and what a user does instead where it cannot)."""

    read_catalog: CatalogReader
    loads: LoadCalls | None = None  # None: the backend cannot be asked to load or unload
    downloads: DownloadCalls | None = None  # None: it cannot be asked to download
    instead_of_pull: str = "add the model to the backend by its own means; it is listed here once it serves it"
    # The backend has no idle timer of its own: the shim unloads a model idle for its keep_alive
    # (``idle_unload``).
    shim_keeps_alive: bool = False


@dataclass
class Health:
    """A backend as a replica: its load now, and whether (and why, until when) it is down.

    ``down_until`` is a monotonic time; None while it is up. A down backend gets traffic again
    only once a probe found it back (``routing.Router``), or when no replica is up at all.
    """

    in_flight: int = 0  # requests sent to it and not finished
    waiting: deque[asyncio.Future[None]] = field(default_factory=deque)  # requests queued for a place
    down_until: float | None = None
    failures: int = 0  # failures in a row, for the back-off
    reason: str = ""  # why it was last marked down

    @property
    def down(self) -> bool:
        return self.down_until is not None


class LiveBackend:
    """One configured backend: settings, kind (learned once for ``auto``), last catalog, health."""

    def __init__(
        self,
        settings: Backend,
        upstream: Upstream,
        memory: ModelMemory | None = None,
        files: ModelFiles | None = None,
    ) -> None:
        self.settings = settings
        self._upstream = upstream
        self.memory: ModelMemory = memory if memory is not None else InProcessMemory()
        # Its model files, where the shim may read them: only for a backend on this machine.
        self.files = files if files is not None and settings.on_this_machine else None
        self.file_read: _FileRead | None = None  # the last (or running) read of its model files
        self.kind: Kind | None = kind_named(settings.kind)  # None until an ``auto`` backend is probed
        self.records: tuple[ModelRecord, ...] = ()  # its models as last read; kept while it is down
        self.ever_answered = False
        self.failure: UpstreamError | None = None  # why its last catalog read failed, if it did
        self.health = Health()

    def __repr__(self) -> str:
        return f"LiveBackend({self.settings!r}, kind={self.kind!r})"

    @property
    def answering(self) -> bool:
        """Whether its last catalog read succeeded."""
        return self.ever_answered and self.failure is None

    @property
    def dialect(self) -> Dialect:
        return DIALECTS[self.kind or "generic"]

    @property
    def behaviour(self) -> KindBehaviour:
        return NATIVE.get(self.kind or "generic", PLAIN)

    @property
    def loads(self) -> LoadCalls | None:
        return self.behaviour.loads

    @property
    def downloads(self) -> DownloadCalls | None:
        return self.behaviour.downloads

    async def refresh(self, now_ns: int) -> None:
        """Read the catalog again; on failure keep the last one and remember why in ``failure``.

        ``now_ns``: the wall-clock time, the first-seen time of a model seen for the first time.
        """
        try:
            sightings = await self.read_catalog()
        except UpstreamError as exc:
            self.failure = exc
            return
        self.records = tuple(self._settled(s, now_ns) for s in sightings)
        self.failure = None
        self.ever_answered = True

    async def read_catalog(self) -> tuple[Sighting, ...]:
        """Its models as it describes them now; ``UpstreamError`` if it cannot say."""
        listing = await self._upstream.get_json(self.settings, "/v1/models", ModelListEntries)
        entries = catalog.decode_each(listing.data, ModelEntry, lambda name: ModelEntry(id=name))
        if self.kind is None:
            self.kind = await self._probe(entries)
        return await self.behaviour.read_catalog(self, entries)

    def recall(self, model_id: str) -> catalog.ModelFacts | None:
        return self.memory.recall(self.settings.root, model_id)

    def _settled(self, sighting: Sighting, now_ns: int) -> ModelRecord:
        """The record of a model seen now, over what was known of it; what is new is remembered."""
        before = self.recall(sighting.upstream_id)
        facts = catalog.settle(before, sighting.facts, now_ns)
        if facts != before:
            self.memory.remember(self.settings.root, sighting.upstream_id, facts)
        return catalog.record_of(sighting, catalog.over(facts, sighting.file_facts))

    async def _probe(self, entries: list[ModelEntry]) -> Kind:
        props, lms = await asyncio.gather(self.props(), self.lmstudio_v1())
        kind = detect_kind(
            self.settings.root,
            has_props=props is not None,
            has_lmstudio_rest=lms is not None,
            owned_by={e.owned_by or "" for e in entries},
        )
        log.info("backend %s is %s", self.settings.root, kind)
        return kind

    async def optional(self, path: str, type_: type[T]) -> T | None:
        """A probe or extra: ``path`` decoded as ``type_``, or None if the backend has no such thing."""
        try:
            return await self._upstream.get_json(self.settings, path, type_, limit=PROBE_TIMEOUT)
        except UpstreamError:
            return None

    async def props(self, model: str | None = None) -> LlamaCppProps | None:
        """llama.cpp's ``/props`` (of one model of a router, without loading it)."""
        query = "" if model is None else f"?model={urllib.parse.quote(model, safe='')}&autoload=false"
        props = await self.optional("/props" + query, LlamaCppProps)
        if props is None or (props.default_generation_settings is None and props.build_info is None):
            return None  # absent, or a 200 from a server that answers every path (LM Studio does)
        return props

    async def lmstudio_v1(self) -> LMStudioV1ModelList | None:
        found = await self.optional("/api/v1/models", LMStudioV1ModelList)
        return found if found is not None and found.models else None

    async def serves_embeddings(self, model: str) -> bool | None:
        """Whether ``/v1/embeddings`` answers for ``model`` (None: it could not be told this time)."""
        body = msgspec.json.encode(EmbeddingsRequest(model=model, input="a"))
        try:
            async with asyncio.timeout(PROBE_TIMEOUT):  # a busy single slot must not hold up the catalog
                await self._upstream.post_json(self.settings, "/v1/embeddings", body, EmbeddingsResponse)
        except UpstreamStatus as exc:
            return False if 400 <= exc.status < 500 or exc.status == 501 else None
        except (UpstreamError, TimeoutError):
            return None
        return True


# ---------------------------------------------------------------------------
# Catalog readers, one per kind with native metadata, and the plain one
# ---------------------------------------------------------------------------


async def read_plain(backend: LiveBackend, entries: list[ModelEntry]) -> tuple[Sighting, ...]:
    """``/v1/models`` as listed (vLLM ``max_model_len``, OpenRouter ``context_length``)."""
    loaded = backend.dialect.lists_loaded_models
    real_dates = backend.kind not in CREATED_IS_ANSWER_TIME
    return tuple(catalog.seen_in_openai_entry(e, loaded=loaded, created_is_real=real_dates) for e in entries)


async def read_llamacpp(backend: LiveBackend, entries: list[ModelEntry]) -> tuple[Sighting, ...]:
    """``/v1/models`` ``meta`` and ``/props``: the server's own, or on a router each loaded model's.

    A router's ``status.args`` say whether a model embeds; a single server is probed once.
    """
    router = any(e.status is not None for e in entries)
    shared = None if router else await backend.props()

    async def props_of(entry: ModelEntry) -> LlamaCppProps | None:
        if not router:
            return shared
        loaded = entry.status is not None and entry.status.value == "loaded"
        return await backend.props(entry.id) if loaded else None  # asking would load it

    async def embeds(entry: ModelEntry) -> bool | None:
        known = backend.recall(entry.id)
        if router or (known is not None and known.embedding is not None):
            return None  # said by the router's args, or already known
        return await backend.serves_embeddings(entry.id)

    props, embeddings, files = await asyncio.gather(
        asyncio.gather(*map(props_of, entries)),
        asyncio.gather(*map(embeds, entries)),
        _file_facts(backend, entries, router=router),
    )
    return tuple(
        replace(catalog.seen_in_llamacpp(e, p, embeddings=em), file_facts=f)
        for e, p, em, f in zip(entries, props, embeddings, files, strict=True)
    )


class _FileRead:
    """One pass over model files in a worker thread; what each file says, by path, as it is found."""

    def __init__(self, files: ModelFiles, paths: list[str]) -> None:
        loop = asyncio.get_running_loop()
        self.found: dict[str, catalog.ModelFacts | None] = {}  # filled by the thread, read by the loop
        self.deadline = loop.time() + FILE_READ_WAIT
        self.task = loop.create_task(asyncio.to_thread(self._read_all, files, list(dict.fromkeys(paths))))

    def _read_all(self, files: ModelFiles, paths: list[str]) -> None:
        for path in paths:
            try:
                header = files.header(path)
                self.found[path] = None if header is None else gguf_facts.seen_in_gguf(header)
            except Exception:  # a file never breaks the catalog
                log.exception("reading the model file %s failed", path)
                self.found[path] = None

    async def wait(self) -> None:
        """Until the pass is over or its deadline has come, whichever is first."""
        left = self.deadline - asyncio.get_running_loop().time()
        if left > 0 and not self.task.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self.task), left)


async def _file_facts(
    backend: LiveBackend, entries: list[ModelEntry], *, router: bool
) -> list[catalog.ModelFacts | None]:
    """What each router model's GGUF file says, where the shim may read it (``model_files``).

    A pass still running from an earlier read (a slow or stuck file) is waited on, never doubled.
    """
    files = backend.files
    if files is None or not router:
        return [None] * len(entries)
    args = [e.status.args if e.status else None for e in entries]
    paths = [gguf_facts.model_path_from_args(a) for a in args]
    read = backend.file_read
    if read is None or read.task.done():
        read = backend.file_read = _FileRead(files, [p for p in paths if p])
    await read.wait()
    facts = [read.found.get(p) if p else None for p in paths]
    return [None if f is None else gguf_facts.as_started(f, a) for f, a in zip(facts, args, strict=True)]


async def read_lmstudio(backend: LiveBackend, entries: list[ModelEntry]) -> tuple[Sighting, ...]:
    """LM Studio's REST list (v1, else v0): what is downloaded, loaded, and with what context."""
    v1 = await backend.lmstudio_v1()
    if v1 is not None:
        models_v1 = catalog.decode_each(v1.models, LMStudioV1Model, lambda key: LMStudioV1Model(key=key))
        return tuple(map(catalog.seen_in_lmstudio_v1, models_v1))
    v0 = await backend.optional("/api/v0/models", LMStudioV0ModelList)
    if v0 is not None:
        models_v0 = catalog.decode_each(v0.data, LMStudioV0Model, lambda id_: LMStudioV0Model(id=id_))
        return tuple(map(catalog.seen_in_lmstudio_v0, models_v0))
    return await read_plain(backend, entries)


def _model_body(model: str) -> bytes:
    return msgspec.json.encode(ModelLoadRequest(model=model))


def _lmstudio_context_body(model: str, context_length: int) -> bytes:
    return msgspec.json.encode(LMStudioLoadRequest(model=model, context_length=context_length))


def _instance_body(model: str) -> bytes:
    return msgspec.json.encode(LMStudioUnloadRequest(instance_id=model))


def _lmstudio_download_body(requested: str) -> bytes:
    return pull.encode_request(pull.lmstudio_download(requested))


def _lmstudio_job_path(job_id: str) -> str:
    return "/api/v1/models/download/status/" + urllib.parse.quote(job_id, safe="")


PLAIN = KindBehaviour(read_plain)
NATIVE: dict[Kind, KindBehaviour] = {
    "llamacpp": KindBehaviour(
        read_llamacpp,
        LoadCalls("/models/load", "/models/unload", _model_body, _model_body, polls_status=True, routes_optional=True),
        shim_keeps_alive=True,
        instead_of_pull="put the GGUF file in the router's --models-dir (or start llama-server with "
                        "-hf USER/REPO:QUANT); it is listed here once the server sees it",
    ),
    "lmstudio": KindBehaviour(
        read_lmstudio,
        LoadCalls("/api/v1/models/load", "/api/v1/models/unload", _model_body, _instance_body,
                  load_body_at_context=_lmstudio_context_body),
        DownloadCalls("/api/v1/models/download", _lmstudio_download_body, _lmstudio_job_path),
    ),
    "vllm": KindBehaviour(
        read_plain, instead_of_pull="start vLLM with the model (vllm serve USER/REPO); it serves what it "
                                    "was started with",
    ),
    "openai": KindBehaviour(read_plain, instead_of_pull="use one of the models it lists (ollama list)"),
    "openrouter": KindBehaviour(read_plain, instead_of_pull="use one of the models it lists (ollama list)"),
}
