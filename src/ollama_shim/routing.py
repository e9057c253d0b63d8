"""Which replica of a model serves a request, and what is known of each replica's health.

A model several backends serve (``registry.Resolved.candidates``) is served by all of them. For
each request ``Router.choose`` picks, among the replicas not tried yet for it:

- those that are up (a replica that failed is down for a back-off period, then probed);
- of those, the ones of the highest ``priority`` (a lower one is a fallback, used only when
  every higher one is down);
- with affinity on and a conversation key (``affinity_key``), the replica the key hashes to
  (rendezvous hashing: stable while the replica is up, spread evenly otherwise);
- else the one with the fewest requests in flight (queued ones count), ties taken in turn.

When no replica is up, the one of the highest priority that went down first is tried anyway:
a request is never refused only because every replica failed once.

``Router.admit`` holds a place on a replica for the request (``Slot``): at most
``max_concurrent`` run at once, up to ``max_queue`` more wait (no longer than the first-byte
timeout), the rest are refused with 503 (``BackendBusy``). ``Router.failed`` marks a replica
down after a failure that ``failover_worthy`` names (no connection, a timeout before the first
byte, a 5xx or 429, a broken answer), for ``backoff`` seconds doubling with each failure in a row
up to ``backoff_max``; a background task then probes its ``GET /v1/models`` until it answers.

The retry loop itself (which replica next, what to do with a failure) is ``routes.relay._retried``.

May import: stdlib, msgspec, ``ollama_shim.backends``, ``ollama_shim.upstream``, ``ollama_shim.settings``,
``ollama_shim.errors``, ``ollama_shim.translate``, ``ollama_shim.wire``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import msgspec

from .backends import PROBE_TIMEOUT, LiveBackend
from .errors import ShimError, UpstreamError, UpstreamStatus
from .settings import Routing
from .translate.truncation import context_overflow
from .upstream import Upstream
from .wire.backends import ModelListEntries

log = logging.getLogger("ollama_shim.routing")


class BackendBusy(ShimError):
    """Every place on the chosen backend is taken and its queue is full (or the wait ran out)."""

    status = 503


def failover_worthy(exc: UpstreamError) -> bool:
    """Whether a failure before the first byte is the replica's (try another, mark it down) rather
    than the request's (answer it): a 4xx other than 429, a 501, or a prompt too long is the request's."""
    if isinstance(exc, UpstreamStatus):
        if exc.status == 429:
            return True
        return exc.status >= 500 and exc.status != 501 and context_overflow(exc.message) is None
    return True


# ---------------------------------------------------------------------------
# Pure helpers: the conversation key, the model id of a body
# ---------------------------------------------------------------------------


class _Head(msgspec.Struct):
    """What the affinity key is made of, in any API's body; the rest is skipped."""

    model: str = ""
    messages: list[msgspec.Raw] | None = None  # chat completions, Anthropic messages
    # Empty when absent (a Raw cannot be in a union with None).
    prompt: msgspec.Raw = msgspec.Raw()  # completions
    input: msgspec.Raw = msgspec.Raw()  # responses
    system: msgspec.Raw = msgspec.Raw()  # Anthropic's system prompt, outside the messages


_HEAD = msgspec.json.Decoder(_Head)


def affinity_key(body: bytes, messages: int, size: int) -> bytes | None:
    """A hash of the model and how the conversation starts (its first ``messages`` messages, or
    its prompt, cut to ``size`` bytes); None for a body that has neither."""
    try:
        head = _HEAD.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        return None
    parts = [bytes(head.system)]
    if head.messages is not None:
        parts.extend(bytes(m) for m in head.messages[:messages])
    elif head.prompt or head.input:
        parts.append(bytes(head.prompt or head.input))
    else:
        return None
    start = b"\n".join(parts)[:size]
    return hashlib.blake2b(head.model.encode() + b"\0" + start, digest_size=16).digest()


def _rank(key: bytes, backend: LiveBackend) -> bytes:
    """Rendezvous hashing: the replica with the highest rank for a key serves it."""
    return hashlib.blake2b(key + backend.settings.root.encode(), digest_size=8).digest()


def retarget(body: bytes, sent_as: str, replica_id: str) -> bytes:
    """``body`` with its ``model`` (``sent_as``) changed to ``replica_id``, the id the replica lists
    the same model under; unchanged (and not parsed) when the ids are the same."""
    if sent_as == replica_id or not body:
        return body
    try:
        doc: Any = msgspec.json.decode(body)
    except (msgspec.DecodeError, RecursionError):
        return body
    if not isinstance(doc, dict) or doc.get("model") != sent_as:
        return body
    doc["model"] = replica_id
    return msgspec.json.encode(doc)


# ---------------------------------------------------------------------------
# The router
# ---------------------------------------------------------------------------


class Slot:
    """A place held on a backend by one request; ``release`` gives it up (once)."""

    __slots__ = ("_router", "backend")

    def __init__(self, router: Router, backend: LiveBackend) -> None:
        self._router: Router | None = router
        self.backend = backend

    def release(self) -> None:
        router, self._router = self._router, None
        if router is not None:
            router.release(self.backend)


def _load(backend: LiveBackend) -> int:
    return backend.health.in_flight + len(backend.health.waiting)


class Router:
    """The replica choice, admission, failures and probes of one app (one process)."""

    def __init__(
        self, settings: Routing, upstream: Upstream, *, queue_wait: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self._upstream = upstream
        self._queue_wait = queue_wait or None  # longest wait for a place; None: no limit
        self._clock = clock
        self._turn = 0
        self._probes: dict[LiveBackend, asyncio.Task[None]] = {}

    # -- choice ----------------------------------------------------------------------------------

    def affinity(self, body: bytes | Callable[[], bytes] | None) -> bytes | None:
        """The conversation key of ``body`` (made only now, if a function) when affinity is on."""
        if not self.settings.affinity or body is None:
            return None
        data = body() if callable(body) else body
        return affinity_key(data, self.settings.affinity_messages, self.settings.affinity_bytes)

    def choose(self, replicas: Sequence[LiveBackend], tried: set[int], key: bytes | None = None) -> int | None:
        """The index of the replica to try next (None when every one was tried)."""
        fresh = [i for i in range(len(replicas)) if i not in tried]
        if len(fresh) <= 1:
            return fresh[0] if fresh else None
        up = [i for i in fresh if replicas[i].health.down_until is None]
        if not up:  # none is up: the likeliest to be back
            return min(fresh, key=lambda i: (-replicas[i].settings.priority, replicas[i].health.down_until or 0.0))
        top = max(replicas[i].settings.priority for i in up)
        tier = [i for i in up if replicas[i].settings.priority == top]
        if len(tier) == 1:
            return tier[0]
        if key is not None:
            return max(tier, key=lambda i: _rank(key, replicas[i]))
        least = min(_load(replicas[i]) for i in tier)
        tied = [i for i in tier if _load(replicas[i]) == least]
        self._turn += 1
        return tied[self._turn % len(tied)]

    # -- admission -------------------------------------------------------------------------------

    async def admit(self, backend: LiveBackend) -> Slot:
        """A place on ``backend``: at once, after a bounded wait in its queue, or ``BackendBusy``."""
        health, cap = backend.health, backend.settings.max_concurrent
        if not cap or health.in_flight < cap:
            health.in_flight += 1
            return Slot(self, backend)
        if len(health.waiting) >= backend.settings.max_queue:
            raise BackendBusy(
                f"backend at {backend.settings.root} is busy: {health.in_flight} requests running and "
                f"{len(health.waiting)} waiting; try again later"
            )
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        health.waiting.append(turn)
        try:
            async with asyncio.timeout(self._queue_wait):
                await turn
        except TimeoutError:
            if not turn.done() or turn.cancelled():
                raise BackendBusy(
                    f"backend at {backend.settings.root} is busy: no place came free in {self._queue_wait:g} s; "
                    "try again later"
                ) from None
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self.release(backend)  # the place was handed over as the client left: pass it on
            raise
        finally:
            with contextlib.suppress(ValueError):
                health.waiting.remove(turn)
        return Slot(self, backend)  # handed over by ``release``: in_flight already counts it

    def release(self, backend: LiveBackend) -> None:
        """A request is over on ``backend``: its place goes to the first one waiting, if any."""
        waiting = backend.health.waiting
        while waiting:
            turn = waiting.popleft()
            if not turn.done():
                turn.set_result(None)
                return
        backend.health.in_flight -= 1

    # -- health ----------------------------------------------------------------------------------

    def failed(self, backend: LiveBackend, exc: UpstreamError) -> None:
        """``backend`` failed a request: down for its back-off, then probed in the background."""
        self._mark_down(backend, exc.message)
        if backend not in self._probes:
            self._probes[backend] = asyncio.ensure_future(self._probe(backend))

    def succeeded(self, backend: LiveBackend) -> None:
        """``backend`` answered: its failures in a row are over (and it is up, if it was down)."""
        health = backend.health
        health.failures = 0
        if health.down_until is not None:
            health.down_until = None
            log.info("replica %s answered again", backend.settings.root)

    def _mark_down(self, backend: LiveBackend, reason: str) -> None:
        health = backend.health
        health.failures += 1
        backoff = min(self.settings.backoff * 2 ** min(health.failures - 1, 32), self.settings.backoff_max)
        health.down_until = self._clock() + backoff
        health.reason = reason
        log.warning("replica %s is down for %g s: %s", backend.settings.root, backoff, reason)

    async def _probe(self, backend: LiveBackend) -> None:
        """Until ``backend`` is up: wait out its back-off, then ask for its model list."""
        health = backend.health
        try:
            while health.down_until is not None:
                wait = health.down_until - self._clock()
                if wait > 0:
                    await asyncio.sleep(wait)
                    continue  # it may have been marked down again (or up) meanwhile
                try:
                    await self._upstream.get_json(backend.settings, "/v1/models", ModelListEntries,
                                                  limit=PROBE_TIMEOUT)
                except UpstreamError as exc:
                    self._mark_down(backend, exc.message)
                    continue
                if health.down_until is not None:
                    health.down_until = None
                    log.info("replica %s is back (its model list answered)", backend.settings.root)
        finally:
            self._probes.pop(backend, None)

    async def close(self) -> None:
        """Stop every probe (the app is shutting down)."""
        probes = list(self._probes.values())
        for task in probes:
            task.cancel()
        await asyncio.gather(*probes, return_exceptions=True)
