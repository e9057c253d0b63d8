"""The benchmark's phases; each measures the shim next to its baseline in the same run, interleaved.

A ``Rig`` holds the running processes: the scripted upstream (the direct baseline), the shim, the
minimal relay (``minimal.py``, the cost floor of an aiohttp translation loop) and the load
generators. Every phase returns plain dicts for ``report.py``. Repetitions alternate between the
servers compared, so a background burst on this shared machine hits both.

May import: stdlib, and ``procs``, ``measure`` from this folder.
"""

from __future__ import annotations

import statistics
import sys
import time
from dataclasses import dataclass
from typing import Any

from measure import Target, measure, median_of
from procs import BENCH, Loader, Procs, free_port, memory_kb, wait_ready

SHIM = [sys.executable, "-m", "ollama_shim", "serve", "--backend-kind", "generic", "--log-level", "warning",
        "--catalog-ttl", "60"]
CHUNKS = 100  # content chunks per answer
CONCURRENCY = (1, 8, 32, 64)


def shim_argv(upstream_port: int, port: int, *extra: str) -> list[str]:
    return [*SHIM, "--backend", f"http://127.0.0.1:{upstream_port}", "--listen", f"127.0.0.1:{port}", *extra]


def minimal_argv(upstream_port: int, port: int) -> list[str]:
    return [sys.executable, str(BENCH / "minimal.py"), "--port", str(port), "--backend", f"http://127.0.0.1:{upstream_port}"]


@dataclass
class Rig:
    procs: Procs
    loader: Loader
    upstream_port: int
    direct: Target
    shim: Target
    minimal: Target
    reps: int
    seconds: float

    def start(self, name: str, argv: list[str], port: int) -> Target:
        return start_target(self.procs, name, argv, port)


def start_target(procs: Procs, name: str, argv: list[str], port: int, api: str = "ollama") -> Target:
    proc = procs.server(argv, port, "/")
    return Target(name, port, proc.pid, api)


def startup(rig: Rig) -> dict[str, Any]:
    """Spawn to the first 200 on ``/api/tags`` and then ``/``: the shim and the minimal relay."""
    times: dict[str, list[float]] = {"shim": [], "minimal": []}
    for _ in range(rig.reps + 2):
        for name in times:
            port = free_port()
            argv = shim_argv(rig.upstream_port, port) if name == "shim" else minimal_argv(rig.upstream_port, port)
            started = time.perf_counter()
            proc = rig.procs.start(argv)
            wait_ready(proc, port, "/api/tags", 30, step=0.005)
            wait_ready(proc, port, "/", 5, step=0.005)
            times[name].append(time.perf_counter() - started)
            rig.procs.stop(proc)
    return {name: {"median_s": statistics.median(v), "all_s": v} for name, v in times.items()}


def rounds(rig: Rig, targets: list[Target], job_of: Any, processes: int | None = None) -> dict[str, Any]:
    cells: dict[str, list[dict[str, Any]]] = {t.name: [] for t in targets}
    for _ in range(rig.reps):
        for target in targets:
            cells[target.name].append(measure(rig.loader, target, job_of(target), processes))
    return {name: {"median": median_of(c), "rounds": c} for name, c in cells.items()}


def latency_c1(rig: Rig) -> dict[str, Any]:
    """Non-streaming chat at concurrency 1, and the time to the first chunk of a stream."""
    targets = [rig.direct, rig.shim, rig.minimal]
    plain = rounds(rig, targets, lambda t: {**t.chat_job(stream=False, chunks=CHUNKS), "concurrency": 1,
                                             "requests": 300})
    streamed = rounds(rig, targets, lambda t: {**t.chat_job(stream=True, chunks=5, model="paced"), "concurrency": 1,
                                                "requests": 100})
    return {"plain": plain, "stream": streamed, "added": _added(plain, streamed)}


def _added(plain: dict[str, Any], streamed: dict[str, Any]) -> dict[str, Any]:
    """Per round, relay minus direct; the median over rounds."""
    out: dict[str, Any] = {}
    for name in ("shim", "minimal"):
        pairs = list(zip(plain[name]["rounds"], plain["direct"]["rounds"], strict=True))
        spairs = list(zip(streamed[name]["rounds"], streamed["direct"]["rounds"], strict=True))
        out[name] = {
            "p50_ms": statistics.median(a["p50"] - b["p50"] for a, b in pairs),
            "p99_ms": statistics.median(a["p99"] - b["p99"] for a, b in pairs),
            "ttfc50_ms": statistics.median(a["ttfc50"] - b["ttfc50"] for a, b in spairs),
            "ttfc99_ms": statistics.median(a["ttfc99"] - b["ttfc99"] for a, b in spairs),
        }
    return out


def sweep(rig: Rig) -> dict[str, Any]:
    """Latency, throughput and CPU against concurrency, streamed and not, for all three servers."""
    out: dict[str, Any] = {}
    for stream in (True, False):
        mode = "stream" if stream else "plain"
        for c in CONCURRENCY:
            def job(t: Target, c: int = c, stream: bool = stream) -> dict[str, Any]:
                return {**t.chat_job(stream=stream, chunks=CHUNKS), "concurrency": c, "seconds": rig.seconds}

            out[f"{mode}/{c}"] = rounds(rig, [rig.direct, rig.shim, rig.minimal], job)
            print(f"  {mode} c={c}: " + ", ".join(
                f"{n} {v['median']['rps']:.0f}/s" for n, v in out[f"{mode}/{c}"].items()), flush=True)
    return out


def apis(rig: Rig) -> dict[str, Any]:
    """Streamed chat at c=32 through the same shim as Ollama ``/api/chat``, Anthropic ``/v1/messages``
    and OpenAI ``/v1/responses`` (both translated onto chat completions), in the same rounds: the CPU
    each answer shape costs per upstream chunk."""
    shim = rig.shim
    targets = [shim, *(Target(f"shim {api}", shim.port, shim.pid, api) for api in ("anthropic", "responses"))]
    return rounds(rig, targets, lambda t: {**t.chat_job(stream=True, chunks=CHUNKS), "concurrency": 32,
                                           "seconds": rig.seconds})


def gathered(rig: Rig) -> dict[str, Any]:
    """Non-streaming chat at c=32 through a shim that treats the upstream as llama.cpp: the dialect
    asks for a stream and assembles the answer (so a client that leaves stops the generation),
    next to the generic dialect's single JSON answer, in the same rounds."""
    port = free_port()
    argv = [("llamacpp" if arg == "generic" else arg) for arg in shim_argv(rig.upstream_port, port)]
    llamacpp = start_target(rig.procs, "shim (llama.cpp dialect)", argv, port)
    return rounds(rig, [rig.shim, llamacpp], lambda t: {**t.chat_job(stream=False, chunks=CHUNKS), "concurrency": 32,
                                                         "seconds": rig.seconds})


def tags(rig: Rig) -> dict[str, Any]:
    """``/api/tags`` with the catalog cached, next to ``GET /`` (the framework floor) and the backend's list."""
    floor = Target("shim /", rig.shim.port, rig.shim.pid, "ollama")
    models = Target("direct /v1/models", rig.direct.port, rig.direct.pid, "openai")
    paths = {rig.shim.name: "/api/tags", floor.name: "/", models.name: "/v1/models"}
    return rounds(rig, [rig.shim, floor, models], lambda t: {**t.get_job(paths[t.name]), "concurrency": 32,
                                                              "seconds": rig.seconds})


def slow_streams(rig: Rig, streams: int = 1000, chunks: int = 20) -> dict[str, Any]:
    """Peak RSS with ``streams`` concurrent slow streams, each server started fresh for it."""
    out: dict[str, Any] = {}
    for name in ("shim", "minimal"):
        port = free_port()
        argv = shim_argv(rig.upstream_port, port) if name == "shim" else minimal_argv(rig.upstream_port, port)
        target = rig.start(name, argv, port)
        measure(rig.loader, target, {**target.chat_job(stream=True, chunks=2), "concurrency": 1, "requests": 3})
        idle = memory_kb(target.pid)
        job = {**target.chat_job(stream=True, chunks=chunks, model="slow"), "concurrency": streams,
               "requests": streams}
        cell = measure(rig.loader, target, job)
        out[name] = {"idle_kb": idle, "peak_kb": memory_kb(target.pid, "VmHWM"), "streams": streams,
                     "completed": cell["count"], "errors": cell["errors"], "p50_s": cell["p50"] / 1000}
        rig.procs.stop_pid(target.pid)
    return out


def workers(rig: Rig, concurrency: int = 64) -> dict[str, Any]:
    """The same streaming load on ``--workers 1`` and ``--workers 2``."""
    targets = []
    for n in (1, 2):
        port = free_port()
        targets.append(rig.start(f"workers={n}", shim_argv(rig.upstream_port, port, "--workers", str(n)), port))
    time.sleep(0.5)  # every worker bound, not only the first to answer
    try:
        return rounds(rig, targets, lambda t: {**t.chat_job(stream=True, chunks=CHUNKS), "concurrency": concurrency,
                                                "seconds": rig.seconds})
    finally:
        for target in targets:
            rig.procs.stop_pid(target.pid)


def replicas(rig: Rig, count: int = 3) -> dict[str, Any]:
    """What routing over replicas costs: the same chat through a shim over ``count`` scripted upstreams
    that all list the same models (so each request picks one) next to the shim over one, in the same
    rounds: non-streaming at c=1 (added latency) and at c=32 (CPU per request)."""
    ports = [rig.upstream_port]
    for _ in range(count - 1):
        port = free_port()
        rig.procs.server([sys.executable, str(BENCH / "upstream.py"), "--port", str(port)], port, "/v1/models")
        ports.append(port)
    port = free_port()
    backends = [arg for up in ports for arg in ("--backend", f"http://127.0.0.1:{up}", "--backend-kind", "generic")]
    argv = [*SHIM[:SHIM.index("--backend-kind")], *SHIM[SHIM.index("--backend-kind") + 2:], *backends,
            "--listen", f"127.0.0.1:{port}"]
    routed = rig.start(f"shim over {count} replicas", argv, port)
    targets = [rig.shim, routed]
    c1 = rounds(rig, targets, lambda t: {**t.chat_job(stream=False, chunks=CHUNKS), "concurrency": 1, "requests": 300})
    c32 = rounds(rig, targets, lambda t: {**t.chat_job(stream=False, chunks=CHUNKS), "concurrency": 32,
                                           "seconds": rig.seconds})
    pairs = list(zip(c1[routed.name]["rounds"], c1[rig.shim.name]["rounds"], strict=True))
    return {
        "replicas": count,
        "c1": c1,
        "c32": c32,
        "added_p50_ms": statistics.median(a["p50"] - b["p50"] for a, b in pairs),
        "cpu_per_req_ms": c32[routed.name]["median"]["cpu_per_req_ms"],
        "cpu_per_req_ms_one": c32[rig.shim.name]["median"]["cpu_per_req_ms"],
    }
