"""Ollama's model-management endpoints, answered honestly for a shim whose models live in the backend.

``POST /api/pull`` of a model the backend already serves succeeds at once (there is nothing to
download), streamed as Ollama does (NDJSON ending in ``{"status":"success"}``) or as one object.
A model no backend serves is downloaded by the first backend that can (LM Studio: ``downloads``),
streamed as Ollama's pull lines (``pulling manifest``, progress, ``success``) or, with ``stream:
false``, answered once when it is done; a client that goes away does not stop the download. Where
no backend can download, a 400 names each and says what to do instead. ``push`` and
``blobs`` would move model files, which only the backend holds: they are refused with a 400 that
says so, never a silent success.

``create``, ``copy`` and ``delete`` manage the shim's own custom models (``custom_models``): a
backend model plus a system prompt, messages and parameters, as ``ollama create`` builds them
from a Modelfile. What needs model files (``files``, ``adapters``, ``quantize``) or a template of
the shim's own is refused with a 400 saying why. Every check runs before the first status line,
so a refusal is a plain 400, and a create streams Ollama's status lines ending in ``success``.

May import: aiohttp.web, msgspec, stdlib, ``ollama_shim.routes.*``, ``ollama_shim.errors``, ``ollama_shim.wire``,
``ollama_shim.custom_models``, ``ollama_shim.translate.customise``, ``ollama_shim.translate.pull``,
``ollama_shim.downloads``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from aiohttp import web

from .. import downloads
from ..custom_models import CustomModels
from ..errors import BadRequest, ModelNotFound, ShimError
from ..translate.customise import CustomModel, checked_custom_model, model_key
from ..translate.pull import MANIFEST
from ..wire.ollama import RequestMessage, StatusResponse
from .http import NdjsonStream, json_response, read_body
from .state import state_of

NOT_MANAGED = "ollama-shim does not {verb} models: they are managed by the backend ({backends})"


class PullRequest(msgspec.Struct):
    model: str = ""
    name: str = ""  # legacy spelling
    stream: bool | None = None


async def pull(request: web.Request) -> web.StreamResponse:
    state = state_of(request)
    req = await read_body(request, PullRequest)
    requested = req.model or req.name
    if not requested:
        raise BadRequest("model is required")
    try:
        await state.registry.resolve(requested)
    except ModelNotFound:
        return await _download(request, requested, req.stream)
    done = StatusResponse(status="success")
    if req.stream is False:
        return json_response(done)
    out = NdjsonStream(request)
    await out.write(done)
    return await out.finish()


async def _download(request: web.Request, requested: str, stream: bool | None) -> web.StreamResponse:
    """A model no backend serves: downloaded by the first backend that can, its progress as Ollama's lines."""
    state = state_of(request)
    source, calls = downloads.downloader(state.registry, requested)
    calls.start_body(requested)  # a name the backend cannot take: a 400 before any line
    if stream is False:
        job = await downloads.start(state.upstream, source, calls, requested)
        last = MANIFEST
        async for line in downloads.follow(state.upstream, state.registry, source, calls, requested, job):
            last = line
        return json_response(last)
    out = NdjsonStream(request)
    await out.write(MANIFEST)
    try:
        job = await downloads.start(state.upstream, source, calls, requested)
        async for line in downloads.follow(state.upstream, state.registry, source, calls, requested, job):
            await out.write(line)
    except ShimError as exc:  # after the first line an error is the last line, on a 200 (as Ollama)
        await out.write_error(exc.message, exc.status)
    return await out.finish()


def _refuse(verb: str) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handler(request: web.Request) -> web.Response:
        backends = ", ".join(b.root for b in state_of(request).settings.backends)
        raise BadRequest(NOT_MANAGED.format(verb=verb, backends=backends))

    return handler


push = _refuse("push")
blobs = _refuse("store blobs for")


class CreateRequest(msgspec.Struct):
    model: str = ""
    name: str = ""  # legacy spelling
    from_: str = msgspec.field(default="", name="from")
    files: dict[str, str] | None = None
    adapters: dict[str, str] | None = None
    template: str | None = None
    system: str | None = None
    parameters: dict[str, Any] | None = None
    messages: list[RequestMessage] | None = None
    license: str | list[str] | None = None
    quantize: str | None = None
    quantization: str | None = None  # legacy spelling
    stream: bool | None = None


def _refuse_what_needs_files(req: CreateRequest) -> None:
    if req.files or req.adapters:
        raise BadRequest(f"{'files' if req.files else 'adapters'} are not supported: ollama-shim stores no model "
                         "blobs; create from a model the backend serves with \"from\"")
    if req.quantize or req.quantization:
        raise BadRequest("quantize is not supported: ollama-shim cannot quantize; the backend serves each model "
                         "as it is stored there")
    if req.template:
        raise BadRequest("template is not supported: the backend applies the model's own chat template")


def _layer(*parts: object) -> str:
    return "sha256:" + hashlib.sha256(msgspec.json.encode(parts)).hexdigest()


def _status_lines(model: CustomModel) -> list[StatusResponse]:
    """What Ollama streams for a create from an existing model: its layers, the new ones, success."""
    lines = [StatusResponse(status=f"using existing layer {_layer('model', model_key(model.base))}")]
    layers = (("system", model.system), ("params", dict(model.parameters)), ("messages", model.messages),
              ("license", model.license))
    lines += [StatusResponse(status=f"creating new layer {_layer(kind, value)}") for kind, value in layers if value]
    lines += [StatusResponse(status="writing manifest"), StatusResponse(status="success")]
    return lines


async def create(request: web.Request) -> web.StreamResponse:
    state = state_of(request)
    req = await read_body(request, CreateRequest)
    _refuse_what_needs_files(req)
    model = checked_custom_model(req.model or req.name, req.from_, system=req.system, parameters=req.parameters,
                                 messages=req.messages, license=req.license)
    await CustomModels.of(request.app, state.settings).create(state.registry, model)
    lines = _status_lines(model)
    if req.stream is False:
        return json_response(lines[-1])
    out = NdjsonStream(request)
    await out.write_many(lines)
    return await out.finish()


class CopyRequest(msgspec.Struct):
    source: str = ""
    destination: str = ""


async def copy(request: web.Request) -> web.Response:
    state = state_of(request)
    req = await read_body(request, CopyRequest)
    await CustomModels.of(request.app, state.settings).copy(state.registry, req.source, req.destination)
    return web.Response(status=200)  # Ollama answers a copy with an empty body


class DeleteRequest(msgspec.Struct):
    model: str = ""
    name: str = ""  # legacy spelling


async def delete(request: web.Request) -> web.Response:
    state = state_of(request)
    req = await read_body(request, DeleteRequest)
    requested = req.model or req.name
    if not requested:
        raise BadRequest("model is required")
    await CustomModels.of(request.app, state.settings).delete(state.registry, requested)
    return web.Response(status=200)  # and a delete too
