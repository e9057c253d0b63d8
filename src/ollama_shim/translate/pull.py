"""``/api/pull`` on a backend that downloads: Ollama's model names in LM Studio's terms, and the
download's progress as Ollama's pull lines.

Names (``lmstudio_download``), the tag after ``:`` being Ollama's:

- ``hf.co/USER/REPO:QUANT`` (or ``huggingface.co/...``) -> ``{"model":
  "https://huggingface.co/USER/REPO", "quantization": "QUANT"}``; without a tag or with
  ``:latest``, no ``quantization`` (LM Studio chooses one);
- ``PUBLISHER/MODEL`` or ``MODEL``, without a tag or with ``:latest`` -> the LM Studio catalog id
  as it is (``google/gemma-3-4b``, ``qwen/qwen3-4b``);
- any other tag on a catalog name is a 400: LM Studio takes a quantization only with a Hugging Face
  link, so ``qwen3:8b`` cannot be told apart from ``qwen3:4b`` there.

Progress (``pull_progress``): ``pulling manifest`` first; while LM Studio downloads, one line
``{"status": "pulling <12 hex>", "digest": "sha256:<64 hex>", "total", "completed"}`` per look at
the job, under a digest made from the backend and the name (LM Studio names no blobs); when it
says ``completed`` or ``already_downloaded``: ``verifying sha256 digest``, ``writing manifest``,
``success``. ``failed`` is an error.

May import: stdlib, msgspec, ``ollama_shim.errors``, ``ollama_shim.wire``.
"""

from __future__ import annotations

import hashlib

import msgspec

from ..errors import BadRequest
from ..wire.backends import LMStudioDownloadJob, LMStudioDownloadRequest
from ..wire.ollama import ProgressResponse

HF_HOSTS = ("hf.co/", "huggingface.co/")
HF_URL = "https://huggingface.co/"
DEFAULT_TAG = "latest"

MANIFEST = ProgressResponse(status="pulling manifest")
FINISHED = (ProgressResponse(status="verifying sha256 digest"), ProgressResponse(status="writing manifest"),
            ProgressResponse(status="success"))
DONE_STATES = frozenset({"completed", "already_downloaded"})
FAILED_STATES = frozenset({"failed"})


def _split(requested: str) -> tuple[str, str]:
    """(name, tag): the tag after the last ``:`` that follows the last ``/``; ``latest`` when none."""
    name, sep, tag = requested.rpartition(":")
    if not sep or "/" in tag:
        return requested, DEFAULT_TAG
    return name, tag or DEFAULT_TAG


def lmstudio_download(requested: str) -> LMStudioDownloadRequest:
    """What LM Studio's download call is asked for an Ollama model name (see the module's rules)."""
    name, tag = _split(requested.strip())
    lowered = name.lower()
    host = next((h for h in HF_HOSTS if lowered.startswith(h)), None)
    if host is not None:
        repo = name[len(host):].strip("/")
        if repo.count("/") != 1 or not all(repo.split("/")):
            raise BadRequest(f"invalid model name {requested!r}: expected hf.co/USER/REPO[:QUANTIZATION]")
        return LMStudioDownloadRequest(model=HF_URL + repo, quantization=None if tag == DEFAULT_TAG else tag)
    if not name or name.count("/") > 1 or name.startswith("/") or name.endswith("/"):
        raise BadRequest(f"invalid model name {requested!r}: expected PUBLISHER/MODEL, MODEL or hf.co/USER/REPO:QUANT")
    if tag != DEFAULT_TAG:
        raise BadRequest(f"LM Studio cannot pull {requested!r}: its catalog has no tags and takes a quantization "
                         f"only with a Hugging Face link; pull {name} (LM Studio chooses the quantization) or "
                         "hf.co/USER/REPO:QUANTIZATION")
    return LMStudioDownloadRequest(model=name)


def pull_digest(backend_root: str, requested: str) -> str:
    """A stable sha256 digest standing for the download (LM Studio names no blobs)."""
    return "sha256:" + hashlib.sha256(f"{backend_root}\0{requested}".encode()).hexdigest()


def progress_line(digest: str, job: LMStudioDownloadJob) -> ProgressResponse | None:
    """Ollama's line for a download under way; None while LM Studio has not said how big it is."""
    total = job.total_size_bytes
    if total is None or total <= 0:
        return None
    completed = min(max(job.downloaded_bytes or 0, 0), total)
    return ProgressResponse(status=f"pulling {digest.removeprefix('sha256:')[:12]}", digest=digest, total=total,
                            completed=completed)


def finished_lines(digest: str, job: LMStudioDownloadJob) -> tuple[ProgressResponse, ...]:
    """What ends a pull that succeeded: the blob complete (when its size is known), then Ollama's last lines."""
    total = job.total_size_bytes
    whole = () if total is None or total <= 0 else (
        ProgressResponse(status=f"pulling {digest.removeprefix('sha256:')[:12]}", digest=digest, total=total,
                         completed=total),)
    return (*whole, *FINISHED)


def encode_request(request: LMStudioDownloadRequest) -> bytes:
    return msgspec.json.encode(request)
