"""Downloading a model on a backend that can (LM Studio), for ``/api/pull``: start, then follow.

``downloader(registry, requested)`` chooses the backend: the first one (in the configured order)
whose kind has ``DownloadCalls``; where none has, a 400 names each backend and says what the user
can do instead (``KindBehaviour.instead_of_pull``). ``start`` asks it to download (a 4xx there is
Ollama's "file does not exist", with the backend's words) and ``follow`` looks at the job every
``POLL_INTERVAL`` seconds, yielding Ollama's pull lines (``translate.pull``) until it is done. The
download is the backend's: a client that goes away stops only the looking, never the download
(the start call itself is finished even then). A job whose byte count does not move for
``STALL_LIMIT`` seconds is given up with an error; each look is bounded by the upstream timeouts.

May import: stdlib, ``ollama_shim.upstream``, ``ollama_shim.registry``, ``ollama_shim.backends``,
``ollama_shim.errors``, ``ollama_shim.translate``, ``ollama_shim.wire``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

from .backends import DownloadCalls, LiveBackend
from .errors import BadRequest, ShimError, UpstreamStatus, UpstreamTimeout
from .registry import Registry
from .translate.pull import DONE_STATES, FAILED_STATES, finished_lines, progress_line, pull_digest
from .upstream import Upstream
from .wire.backends import LMStudioDownloadJob
from .wire.ollama import ProgressResponse

log = logging.getLogger("ollama_shim.downloads")

POLL_INTERVAL = 0.5  # seconds between two looks at a download
STALL_LIMIT = 600.0  # seconds a download may go without a byte before the pull gives up


class PullFailed(ShimError):
    """The backend refused or failed the download (Ollama's words, the backend's in brackets)."""


def downloader(registry: Registry, requested: str) -> tuple[LiveBackend, DownloadCalls]:
    """The backend that will download ``requested``; BadRequest where none can."""
    for source in registry.backends:
        if source.downloads is not None:
            return source, source.downloads
    reasons = "; ".join(
        f"{s.settings.root} ({s.kind or 'not answering'}) cannot download models: {s.behaviour.instead_of_pull}"
        for s in registry.backends
    )
    raise BadRequest(f"ollama-shim cannot pull {requested!r}: {reasons or 'no backend is configured'}")


async def start(upstream: Upstream, source: LiveBackend, calls: DownloadCalls, requested: str) -> LMStudioDownloadJob:
    """Ask the backend to download; finished even if the client goes away meanwhile."""
    body = calls.start_body(requested)  # BadRequest for a name the backend cannot take
    started = asyncio.ensure_future(upstream.post_json(source.settings, calls.start_path, body, LMStudioDownloadJob))
    try:
        job = await asyncio.shield(started)
    except UpstreamStatus as exc:
        if 400 <= exc.status < 500:
            raise PullFailed(f"pull model manifest: file does not exist ({source.settings.root}: {exc.message})",
                             404) from None
        raise
    log.info("download of %s on %s: %s (job %s)", requested, source.settings.root, job.status, job.job_id)
    return job


async def follow(
    upstream: Upstream, registry: Registry, source: LiveBackend, calls: DownloadCalls, requested: str,
    job: LMStudioDownloadJob,
) -> AsyncIterator[ProgressResponse]:
    """Ollama's pull lines for the job, from its first state to ``success``; PullFailed if it failed."""
    digest = pull_digest(source.settings.root, requested)
    last_bytes, moved_at = -1, time.monotonic()
    while True:
        if job.status in DONE_STATES:
            registry.invalidate()
            for line in finished_lines(digest, job):
                yield line
            return
        if job.status in FAILED_STATES:
            raise PullFailed(f"{source.settings.root} failed to download {requested}", 502)
        if job.job_id is None:
            raise PullFailed(f"{source.settings.root} answered the download of {requested} with no job "
                             f"(status {job.status!r})", 502)
        progress = progress_line(digest, job)
        if progress is not None:
            yield progress
        if (job.downloaded_bytes or 0) != last_bytes:
            last_bytes, moved_at = job.downloaded_bytes or 0, time.monotonic()
        elif time.monotonic() - moved_at > STALL_LIMIT:
            raise UpstreamTimeout(f"the download of {requested} on {source.settings.root} made no progress for "
                                  f"{STALL_LIMIT:g} s (it goes on there)")
        await asyncio.sleep(POLL_INTERVAL)
        job_id = job.job_id
        job = await upstream.get_json(source.settings, calls.status_path(job_id), LMStudioDownloadJob)
        job.job_id = job.job_id or job_id
