"""Finding a model server when none is configured: the usual local ports, probed on loopback.

``WELL_KNOWN`` lists where local OpenAI-compatible servers listen by default. ``discover``
asks each candidate's ``GET /v1/models`` at once, with short timeouts (``PROBE_TIMEOUTS``), and
returns a ``Probe`` per candidate: found (a model list came back), or why not. ``resolve`` is what
the server and ``doctor`` call when ``settings.backends`` is empty: the found servers become the
backends, one log line each; with none found the settings keep no backend and ``no_backend_hint``
is the one line every answer then gives. Only loopback addresses are ever probed; tests pass
their own candidates (free ports) and never touch the real well-known ones.

May import: asyncio, dataclasses, logging, stdlib, msgspec, ``ollama_shim.upstream``,
``ollama_shim.settings``, ``ollama_shim.errors``, ``ollama_shim.wire``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from .errors import UpstreamError, UpstreamProtocol, UpstreamStatus
from .settings import Backend, Settings, Timeouts, is_loopback
from .upstream import Upstream
from .wire.backends import ModelListEntries

log = logging.getLogger("ollama_shim.discovery")


@dataclass(frozen=True)
class Candidate:
    """A place a local model server usually listens: who listens there, and the port."""

    usual: str  # "LM Studio"
    port: int
    host: str = "127.0.0.1"

    def __post_init__(self) -> None:
        if not is_loopback(self.host):
            raise ValueError(f"discovery probes loopback only, not {self.host}")

    @property
    def root(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


WELL_KNOWN: tuple[Candidate, ...] = (
    Candidate("LM Studio", 1234),
    Candidate("llama.cpp llama-server or LocalAI", 8080),
    Candidate("llama.cpp llama-server (newer default)", 9931),
    Candidate("vLLM", 8000),
    Candidate("Jan", 1337),
    Candidate("KoboldCpp", 5001),
    Candidate("text-generation-webui", 5000),
)

# A local server answers its model list in milliseconds; these only bound a port that hangs.
PROBE_TIMEOUTS = Timeouts(connect=0.5, first_byte=1.5, idle=1.5, total=2.0)


@dataclass(frozen=True)
class Probe:
    """What one candidate answered: ``models`` is None unless it served a model list."""

    candidate: Candidate
    models: int | None = None
    refused: str | None = None  # why a server that answered is not used (an HTTP error, not JSON)

    @property
    def found(self) -> bool:
        return self.models is not None


async def probe(upstream: Upstream, candidate: Candidate) -> Probe:
    """Ask one candidate for ``/v1/models``; never raises for anything the port does."""
    try:
        listing = await upstream.get_json(Backend(candidate.root), "/v1/models", ModelListEntries)
    except UpstreamStatus as exc:
        return Probe(candidate, refused=f"HTTP {exc.status}: {exc.message[:200]}")
    except UpstreamProtocol:
        return Probe(candidate, refused="it does not answer like a model server")
    except UpstreamError:
        return Probe(candidate)  # nothing there, or too slow to count
    return Probe(candidate, models=len(listing.data))


async def discover(candidates: Sequence[Candidate] = WELL_KNOWN) -> tuple[Probe, ...]:
    """Probe every candidate concurrently; one ``Probe`` per distinct address, in the given order."""
    unique = tuple({c.root: c for c in reversed(candidates)}.values())[::-1]  # the first name wins
    upstream = Upstream(PROBE_TIMEOUTS)
    await upstream.start()
    try:
        return tuple(await asyncio.gather(*(probe(upstream, c) for c in unique)))
    finally:
        await upstream.close()


def no_backend_hint(candidates: Sequence[Candidate] = WELL_KNOWN) -> str:
    """The one line that says how to get a backend, when discovery found none."""
    ports = ", ".join(str(p) for p in dict.fromkeys(c.port for c in candidates))
    return (
        f"ollama-shim has no model server: none answered on this machine's usual ports ({ports}). "
        "Start one (LM Studio: `lms server start`; llama.cpp: `llama-server -m MODEL.gguf`; "
        "or `make demo` in the ollama-shim checkout) and restart ollama-shim, "
        "or pass --backend http://HOST:PORT"
    )


def log_probes(probes: Sequence[Probe]) -> None:
    """One line per server that answered; a warning when none serves a model list."""
    for found in probes:
        where = f"{found.candidate.root} (usually {found.candidate.usual})"
        if found.found:
            log.info("discovered a model server at %s: %d model(s) listed", where, found.models)
        elif found.refused is not None:
            log.info("%s answers but is not used: %s", where, found.refused)


async def resolve(settings: Settings, candidates: Sequence[Candidate] = WELL_KNOWN) -> tuple[Settings, str | None]:
    """``settings`` with backends: as configured, else those discovery found.

    The second value is the hint when there is still no backend (None otherwise).
    """
    if settings.backends:
        return settings, None
    probes = await discover(candidates)
    log_probes(probes)
    backends = tuple(Backend(p.candidate.root) for p in probes if p.found)
    if not backends:
        hint = no_backend_hint(candidates)
        log.warning("%s", hint)
        return settings, hint
    return dataclasses.replace(settings, backends=backends), None
