"""An LM Studio *emulation* for tests: a small aiohttp server, not LM Studio itself.

Built from LM Studio's documented REST API (OpenAI-compatible ``/v1``, native REST ``/api/v0``
and ``/api/v1``) and the observed error shapes collected in ``shared/reference/backends.md``
section 1. Where LM Studio's behaviour is undocumented the choice made here is marked "guess".

What it serves, on 127.0.0.1 and a free port:

- ``GET /v1/models`` (only ``id``, ``object``, ``owned_by``; all models with JIT on, only loaded
  ones with JIT off), ``GET /api/v0/models[/{id}]``, ``GET /api/v1/models``,
  ``POST /api/v1/models/load`` and ``/unload``;
- ``POST /api/v1/models/download`` and ``GET /api/v1/models/download/status/{job_id}``: a model of
  ``downloadable`` (keyed by what the download names: a catalog id or a Hugging Face URL) is
  downloaded in ``download_steps`` steps of ``download_tick`` seconds, whether or not anyone looks
  (``hold_downloads`` pauses them); when complete it joins ``models``. A model already in ``models``
  is ``already_downloaded``; an unknown one is a 400 (guess: the error is not documented);
  ``fail_downloads`` makes a job end ``failed``;
- ``POST /v1/chat/completions`` and ``/v1/completions`` with scripted replies (``Reply``, queued
  with ``script(...)``, else made by ``responder(body)`` when one is set), streamed or not, with ``stats``,
  ``reasoning_content`` and ``stream_options.include_usage``;
- ``POST /v1/embeddings`` with small deterministic vectors;
- the documented errors: "No models loaded..." (object or bare-string variant), "Invalid model
  identifier" (``code: model_not_found``), ``response_format`` ``json_object`` rejected;
- any other route answers **200** ``{"error": "Unexpected endpoint or method. (GET /x)"}``, as
  LM Studio does (third-party report), so a probe's 200 proves nothing.

Every request is recorded in ``requests`` so tests can assert what the shim sent.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web

from . import serve_on_loopback


@dataclass
class Model:
    """One downloaded model. ``loaded_context_length`` is None while it is not loaded."""

    key: str
    type: Literal["llm", "vlm", "embeddings"] = "llm"
    publisher: str = "lmstudio-community"
    arch: str = "qwen2"
    quantization: str = "Q4_K_M"
    bits_per_weight: float = 4.8
    size_bytes: int = 4_683_073_952
    params_string: str | None = "7B"
    max_context_length: int = 32768
    format: Literal["gguf", "mlx"] = "gguf"
    tool_use: bool = True
    reasoning: bool = False  # listed with capabilities.reasoning in /api/v1/models
    loaded_context_length: int | None = None
    jit_loaded: bool = False

    @property
    def loaded(self) -> bool:
        return self.loaded_context_length is not None


def default_models() -> list[Model]:
    """A chat model (loaded), a vision model and an embedding model (both not loaded)."""
    return [
        Model("qwen2.5-7b-instruct", loaded_context_length=4096),
        Model(
            "gemma-3-4b-it",
            type="vlm",
            arch="gemma3",
            size_bytes=3_341_081_056,
            params_string="4B",
            max_context_length=131072,
            tool_use=False,
        ),
        nomic_embedding(),
    ]


def nomic_embedding() -> Model:
    """An embedding model as LM Studio lists nomic-embed-text (not loaded)."""
    return Model("text-embedding-nomic-embed-text-v1.5", type="embeddings", publisher="nomic-ai", arch="nomic-bert",
                 size_bytes=84_106_624, params_string=None, max_context_length=2048, tool_use=False)


@dataclass
class Reply:
    """One scripted answer. Tokens are whitespace-separated words of ``content``."""

    content: str = "Hello from the LM Studio emulation."
    reasoning: str | None = None  # sent as reasoning_content
    tool_calls: list[dict[str, Any]] | None = None  # OpenAI tool_calls items
    prompt_tokens: int = 12


@dataclass
class Recorded:
    method: str
    path: str
    body: Any  # parsed JSON, or the raw text when it was not JSON, or None


@dataclass
class DownloadJob:
    """One download LM Studio runs: its model joins the list when the last step is done."""

    job_id: str
    model: Model
    total: int
    done_steps: int = 0
    status: str = "downloading"
    started_at: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()))
    quantization: str | None = None


BODY = web.RequestKey("body", object)  # the parsed JSON body, set by the recording middleware
NO_MODELS = "No models loaded. Please load a model in the developer page or use the 'lms load' command."


class LMStudioEmulation:
    """Start with ``async with LMStudioEmulation() as lms:``; ``lms.url`` is the base URL."""

    def __init__(
        self,
        models: list[Model] | None = None,
        *,
        jit: bool = True,
        no_models_error: Literal["object", "string"] = "object",
        embedding_dim: int = 8,
        default_load_context: int = 4096,
    ) -> None:
        self.models = default_models() if models is None else models
        self.jit = jit
        self.no_models_error = no_models_error
        self.embedding_dim = embedding_dim
        self.default_load_context = default_load_context
        self.replies: deque[Reply] = deque()
        # Answers every inference call the script does not cover, from its request body.
        self.responder: Callable[[dict[str, Any]], Reply] | None = None
        self.requests: list[Recorded] = []
        self._failures: deque[tuple[int, Any]] = deque()
        self._runner: web.AppRunner | None = None
        self._counter = 0
        self.url = ""
        # What the download endpoint can fetch, by the name a download gives (catalog id or HF URL).
        self.downloadable: dict[str, Model] = {}
        self.download_steps = 4
        self.download_tick = 0.05
        self.hold_downloads = asyncio.Event()  # set: downloads pause
        self.fail_downloads = False
        self.jobs: dict[str, DownloadJob] = {}
        self._job_tasks: set[asyncio.Task[None]] = set()

    # -- control ---------------------------------------------------------------------------

    def script(self, *replies: Reply | str) -> None:
        """Queue answers for the next inference calls; when empty, ``responder`` or ``Reply()`` is used."""
        self.replies.extend(r if isinstance(r, Reply) else Reply(r) for r in replies)

    def fail_next(self, status: int, body: Any) -> None:
        """Make the next inference call (chat, completions, embeddings) answer this error."""
        self._failures.append((status, body))

    def bodies(self, path: str) -> list[Any]:
        """The JSON bodies received on ``path``, oldest first."""
        return [r.body for r in self.requests if r.path == path]

    def model(self, key: str) -> Model | None:
        return next((m for m in self.models if m.key == key), None)

    async def __aenter__(self) -> LMStudioEmulation:
        app = web.Application(middlewares=[self._record])
        r = app.router
        r.add_get("/v1/models", self._v1_models)
        r.add_get("/api/v0/models", self._v0_models)
        r.add_get("/api/v0/models/{key:.+}", self._v0_model)
        r.add_get("/api/v1/models", self._rest_v1_models)
        r.add_post("/api/v1/models/load", self._load)
        r.add_post("/api/v1/models/unload", self._unload)
        r.add_post("/api/v1/models/download", self._download)
        r.add_get("/api/v1/models/download/status/{job_id}", self._download_status)
        r.add_post("/v1/chat/completions", self._chat)
        r.add_post("/v1/completions", self._completions)
        r.add_post("/v1/embeddings", self._embeddings)
        r.add_route("*", "/{tail:.*}", self._unexpected)
        self._runner, self.url = await serve_on_loopback(app)
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in self._job_tasks:
            task.cancel()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- plumbing --------------------------------------------------------------------------

    @web.middleware
    async def _record(self, request: web.Request, handler: Any) -> web.StreamResponse:
        raw = await request.text() if request.can_read_body else ""
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw
        self.requests.append(Recorded(request.method, request.path, body))
        request[BODY] = body
        return await handler(request)

    @staticmethod
    def _error(status: int, message: str, *, code: str | None = None, param: str | None = "model") -> web.Response:
        err = {"message": message, "type": "invalid_request_error", "param": param, "code": code}
        return web.json_response({"error": err}, status=status)

    def _visible(self) -> list[Model]:
        return [m for m in self.models if self.jit or m.loaded]

    def _resolve(self, body: dict[str, Any]) -> Model | web.Response:
        """The model a request names, JIT-loading it; or the error LM Studio gives."""
        if self._failures:
            status, payload = self._failures.popleft()
            return web.json_response(payload, status=status)
        if not self.jit and not any(m.loaded for m in self.models):
            if self.no_models_error == "string":
                return web.json_response({"error": NO_MODELS}, status=400)
            return self._error(400, NO_MODELS)
        model = self.model(str(body.get("model", "")))
        if model is None or not (self.jit or model.loaded):
            names = ", ".join(m.key for m in self._visible())
            return self._error(
                400,
                f'Invalid model identifier "{body.get("model")}". '
                f"Please specify a valid downloaded model (e.g., {names}).",
                code="model_not_found",
            )
        if not model.loaded:  # JIT load; Auto-Evict keeps at most one JIT-loaded model
            for other in self.models:
                if other.jit_loaded:
                    other.loaded_context_length, other.jit_loaded = None, False
            model.loaded_context_length, model.jit_loaded = self.default_load_context, True
        return model

    # -- model lists -----------------------------------------------------------------------

    async def _v1_models(self, request: web.Request) -> web.Response:
        data = [{"id": m.key, "object": "model", "owned_by": "organization_owner"} for m in self._visible()]
        return web.json_response({"data": data, "object": "list"})

    @staticmethod
    def _v0(m: Model) -> dict[str, Any]:
        item: dict[str, Any] = {
            "id": m.key,
            "object": "model",
            "type": m.type,
            "publisher": m.publisher,
            "arch": m.arch,
            "compatibility_type": m.format,
            "quantization": m.quantization,
            "state": "loaded" if m.loaded else "not-loaded",
            "max_context_length": m.max_context_length,
        }
        if m.loaded:
            item["loaded_context_length"] = m.loaded_context_length
        if m.tool_use:
            item["capabilities"] = ["tool_use"]
        return item

    async def _v0_models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [self._v0(m) for m in self.models]})

    async def _v0_model(self, request: web.Request) -> web.Response:
        model = self.model(request.match_info["key"])
        if model is None:  # guess: the 404 body is not documented
            return web.json_response({"error": f"Model {request.match_info['key']} not found"}, status=404)
        return web.json_response(self._v0(model))

    async def _rest_v1_models(self, request: web.Request) -> web.Response:
        models = []
        for m in self.models:
            item: dict[str, Any] = {
                "type": "embedding" if m.type == "embeddings" else "llm",
                "publisher": m.publisher,
                "key": m.key,
                "display_name": m.key.replace("-", " ").title(),
                "quantization": {"name": m.quantization, "bits_per_weight": m.bits_per_weight},
                "size_bytes": m.size_bytes,
                "params_string": m.params_string,
                "loaded_instances": [{"id": m.key, "config": {"context_length": m.loaded_context_length}}]
                if m.loaded
                else [],
                "max_context_length": m.max_context_length,
                "format": m.format,
            }
            if m.type != "embeddings":
                item["architecture"] = m.arch
                item["capabilities"] = {"vision": m.type == "vlm", "trained_for_tool_use": m.tool_use}
                if m.reasoning:
                    item["capabilities"]["reasoning"] = {"allowed_options": ["off", "on"], "default": "on"}
            models.append(item)
        return web.json_response({"models": models})

    async def _load(self, request: web.Request) -> web.Response:
        body = request[BODY] or {}
        model = self.model(str(body.get("model", "")))
        if model is None:  # guess: LM Studio's exact message for an unknown key is not documented
            return self._error(404, f"Model {body.get('model')!r} not found", code="model_not_found")
        model.loaded_context_length = int(body.get("context_length") or self.default_load_context)
        model.jit_loaded = False
        out: dict[str, Any] = {
            "type": "embedding" if model.type == "embeddings" else "llm",
            "instance_id": model.key,
            "load_time_seconds": 0.01,
            "status": "loaded",
        }
        if body.get("echo_load_config"):
            out["load_config"] = {"context_length": model.loaded_context_length}
        return web.json_response(out)

    async def _unload(self, request: web.Request) -> web.Response:
        body = request[BODY] or {}
        model = self.model(str(body.get("instance_id", "")))
        if model is None or not model.loaded:  # guess: undocumented error body
            return self._error(404, f"No loaded model instance {body.get('instance_id')!r}", param="instance_id")
        model.loaded_context_length, model.jit_loaded = None, False
        return web.json_response({"instance_id": model.key})

    # -- downloads -------------------------------------------------------------------------

    async def _download(self, request: web.Request) -> web.Response:
        body = request[BODY] or {}
        name = str(body.get("model", ""))
        wanted = self.downloadable.get(name)
        if self.model(name) is not None or (wanted is not None and self.model(wanted.key) is not None):
            return web.json_response({"status": "already_downloaded"})
        if wanted is None:  # guess: the error body for an unknown model is not documented
            return web.json_response({"error": f"Model {name!r} not found in the catalog"}, status=400)
        self._counter += 1
        job = DownloadJob(f"job_{self._counter:06d}", wanted, wanted.size_bytes,
                          quantization=body.get("quantization"))
        self.jobs[job.job_id] = job
        task = asyncio.get_running_loop().create_task(self._run_download(job))
        self._job_tasks.add(task)
        task.add_done_callback(self._job_tasks.discard)
        return web.json_response({"job_id": job.job_id, "status": job.status, "total_size_bytes": job.total,
                                  "started_at": job.started_at})

    async def _run_download(self, job: DownloadJob) -> None:
        while job.done_steps < self.download_steps:
            await asyncio.sleep(self.download_tick)
            if not self.hold_downloads.is_set():
                job.done_steps += 1
        if self.fail_downloads:
            job.status = "failed"
            return
        job.status = "completed"
        if job.quantization:
            job.model.quantization = job.quantization
        self.models.append(job.model)

    async def _download_status(self, request: web.Request) -> web.Response:
        job = self.jobs.get(request.match_info["job_id"])
        if job is None:  # guess: undocumented
            return web.json_response({"error": "Job not found"}, status=404)
        downloaded = job.total * job.done_steps // self.download_steps
        out: dict[str, Any] = {"job_id": job.job_id, "status": job.status, "total_size_bytes": job.total,
                               "downloaded_bytes": downloaded, "started_at": job.started_at}
        if job.status == "downloading":
            out["bytes_per_second"] = job.total / (self.download_steps * self.download_tick)
        if job.status == "completed":
            out["completed_at"] = job.started_at
        return web.json_response(out)

    # -- inference -------------------------------------------------------------------------

    def _next_reply(self, body: dict[str, Any]) -> tuple[Reply, list[str], str]:
        """The reply, its content tokens after ``max_tokens``, and the finish reason."""
        if self.replies:
            reply = self.replies.popleft()
        else:
            reply = self.responder(body) if self.responder is not None else Reply()
        words = reply.content.split(" ")
        tokens = [w if i == 0 else " " + w for i, w in enumerate(words)] if reply.content else []
        limit = body.get("max_tokens")
        if isinstance(limit, int) and 0 <= limit < len(tokens):
            return reply, tokens[:limit], "length"
        return reply, tokens, "tool_calls" if reply.tool_calls else "stop"

    @staticmethod
    def _usage(reply: Reply, n: int) -> dict[str, int]:
        return {"prompt_tokens": reply.prompt_tokens, "completion_tokens": n, "total_tokens": reply.prompt_tokens + n}

    @staticmethod
    def _stats(finish: str) -> dict[str, Any]:
        stop = {"stop": "eosFound", "length": "maxPredictedTokensReached", "tool_calls": "toolCalls"}[finish]
        return {"tokens_per_second": 50.0, "time_to_first_token": 0.05, "generation_time": 0.2, "stop_reason": stop}

    async def _inference(self, request: web.Request, kind: Literal["chat", "text"]) -> web.StreamResponse:
        body = request[BODY]
        if not isinstance(body, dict):
            return web.json_response({"error": "Invalid JSON body"}, status=400)  # guess
        fmt = body.get("response_format")
        if isinstance(fmt, dict) and fmt.get("type") not in (None, "json_schema", "text"):
            return web.json_response({"error": "'response_format.type' must be 'json_schema' or 'text'"}, status=400)
        model = self._resolve(body)
        if isinstance(model, web.Response):
            return model
        reply, tokens, finish = self._next_reply(body)
        self._counter += 1
        ident = f"{'chatcmpl' if kind == 'chat' else 'cmpl'}-emu{self._counter:06d}"
        head = {
            "id": ident,
            "object": "chat.completion" if kind == "chat" else "text_completion",
            "created": int(time.time()),
            "model": model.key,
            "system_fingerprint": model.key,
        }
        if not body.get("stream"):
            if kind == "chat":
                message: dict[str, Any] = {"role": "assistant", "content": "".join(tokens)}
                if reply.reasoning is not None:
                    message["reasoning_content"] = reply.reasoning
                if reply.tool_calls:
                    message["tool_calls"] = reply.tool_calls
                choice: dict[str, Any] = {"index": 0, "message": message, "logprobs": None, "finish_reason": finish}
            else:
                choice = {"index": 0, "text": "".join(tokens), "logprobs": None, "finish_reason": finish}
            return web.json_response(
                {**head, "choices": [choice], "usage": self._usage(reply, len(tokens)), "stats": self._stats(finish)}
            )
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await resp.prepare(request)
        head["object"] = "chat.completion.chunk" if kind == "chat" else "text_completion"

        async def send(choice: dict[str, Any] | None, **extra: Any) -> None:
            chunk = {**head, "choices": [] if choice is None else [choice], **extra}
            await resp.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")

        def piece(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
            if kind == "chat":
                return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            return {"index": 0, "text": delta.get("content", ""), "logprobs": None, "finish_reason": finish_reason}

        if kind == "chat" and reply.reasoning:
            for i, word in enumerate(reply.reasoning.split(" ")):
                await send(piece({"role": "assistant", "reasoning_content": word if i == 0 else " " + word}))
        for token in tokens:
            await send(piece({"role": "assistant", "content": token}))
        if kind == "chat" and reply.tool_calls:
            calls = [{"index": i, **call} for i, call in enumerate(reply.tool_calls)]
            await send(piece({"role": "assistant", "tool_calls": calls}))
        await send(piece({}, finish))
        if (body.get("stream_options") or {}).get("include_usage"):
            await send(None, usage=self._usage(reply, len(tokens)), stats=self._stats(finish))
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        return await self._inference(request, "chat")

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        return await self._inference(request, "text")

    async def _embeddings(self, request: web.Request) -> web.Response:
        body = request[BODY]
        if not isinstance(body, dict):
            return web.json_response({"error": "Invalid JSON body"}, status=400)
        model = self._resolve(body)
        if isinstance(model, web.Response):
            return model
        inputs = body.get("input")
        texts = inputs if isinstance(inputs, list) else [inputs]
        data = []
        for i, text in enumerate(texts):
            digest = hashlib.sha256(str(text).encode()).digest()
            vector = [round(b / 255 - 0.5, 6) for b in digest[: self.embedding_dim]]
            data.append({"object": "embedding", "embedding": vector, "index": i})
        return web.json_response(
            {"object": "list", "data": data, "model": model.key, "usage": {"prompt_tokens": 0, "total_tokens": 0}}
        )

    async def _unexpected(self, request: web.Request) -> web.Response:
        return web.json_response({"error": f"Unexpected endpoint or method. ({request.method} {request.path})"})
