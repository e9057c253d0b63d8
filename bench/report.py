"""Turn the benchmark's figures into ``docs/benchmarks.md`` and ``docs/benchmarks.png`` (matplotlib, Agg).

Only measured figures are written. Each target row is judged pass/fail from this run's numbers;
``notes.md`` beside this file (what was profiled and changed, and why) is appended as written.

May import: stdlib, matplotlib.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

NOTES = Path(__file__).resolve().parent / "notes.md"
SERVERS = ("direct", "shim", "minimal")
PEER_COLUMNS = ("direct", "shim", "oai2ollama")


def _f(value: float, digits: int = 2) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def _verdict(value: float, limit: float | None) -> str:
    if limit is None:
        return "(reported)"
    return "pass" if value <= limit else "**FAIL**"


def _api_rows(r: dict[str, Any]) -> list[tuple[str, float, str, float | None]]:
    """CPU per upstream chunk of a streamed answer in each API shape, next to /api/chat's."""
    if "apis" not in r:
        return []
    per_chunk = {name: cell["median"]["cpu_per_req_ms"] * 1000 / r["settings"]["chunks"]
                 for name, cell in r["apis"].items()}
    return [(f"CPU per upstream chunk, streamed {label}, translated, c=32 (µs)", per_chunk[name],
             f"/api/chat {_f(per_chunk['shim'], 1)}", None)
            for name, label in (("shim anthropic", "/v1/messages"), ("shim responses", "/v1/responses"))]


def _targets(r: dict[str, Any]) -> list[str]:
    added = r["latency"]["added"]
    plain32 = r["sweep"]["plain/32"]
    stream32 = r["sweep"]["stream/32"]
    slow = r["slow_streams"]
    start = r["startup"]
    tags = r["tags"]
    rows = [
        ("Added latency p50, non-streaming chat, c=1 (ms)", added["shim"]["p50_ms"],
         f"minimal relay {_f(added['minimal']['p50_ms'])}", 0.6),
        ("Added latency p99, non-streaming chat, c=1 (ms)", added["shim"]["p99_ms"],
         f"minimal relay {_f(added['minimal']['p99_ms'])}", None),
        ("Added time to first chunk p50, streaming chat (frames 2 ms apart), c=1 (ms)", added["shim"]["ttfc50_ms"],
         f"minimal relay {_f(added['minimal']['ttfc50_ms'])}", None),
        ("CPU per streamed chunk, c=32 (µs)", stream32["shim"]["median"]["cpu_per_chunk_us"],
         f"minimal relay {_f(stream32['minimal']['median']['cpu_per_chunk_us'], 1)}", 20.0),
        ("CPU per streamed request of 100 chunks, c=32 (ms)", stream32["shim"]["median"]["cpu_per_req_ms"],
         f"minimal relay {_f(stream32['minimal']['median']['cpu_per_req_ms'])}", None),
        ("CPU per non-streaming request, c=32 (ms)", plain32["shim"]["median"]["cpu_per_req_ms"],
         f"minimal relay {_f(plain32['minimal']['median']['cpu_per_req_ms'])}", 0.3),
        ("CPU per non-streaming request, c=32, llama.cpp/LM Studio dialect: answer streamed upstream, 100 chunks (ms)",
         r["gathered"]["shim (llama.cpp dialect)"]["median"]["cpu_per_req_ms"],
         f"generic dialect {_f(r['gathered']['shim']['median']['cpu_per_req_ms'])}", None),
        *_api_rows(r),
        ("RSS idle (MB)", slow["shim"]["idle_kb"] / 1024, f"minimal relay {_f(slow['minimal']['idle_kb'] / 1024, 1)}",
         None),
        (f"Peak RSS with {slow['shim']['streams']} concurrent slow streams (MB)", slow["shim"]["peak_kb"] / 1024,
         f"minimal relay {_f(slow['minimal']['peak_kb'] / 1024, 1)}", 250.0),
        ("Start-up: spawn to first 200 on /api/tags and / (s)", start["shim"]["median_s"],
         f"minimal relay {_f(start['minimal']['median_s'])}", 1.0),
        ("/api/tags CPU per request, cache warm, c=32 (ms)", tags["shim"]["median"]["cpu_per_req_ms"],
         f"shim `GET /` {_f(tags['shim /']['median']['cpu_per_req_ms'])}", None),
        ("/api/tags latency p50, cache warm, c=32 (ms)", tags["shim"]["median"]["p50"],
         f"backend /v1/models {_f(tags['direct /v1/models']['median']['p50'])}", None),
    ]
    if "replicas" in r:  # runs before it had no such phase
        rep = r["replicas"]
        rows += [
            (f"Routing over {rep['replicas']} replicas: added latency p50, non-streaming chat, c=1 (ms)",
             rep["added_p50_ms"], "vs the shim over 1 backend", None),
            (f"Routing over {rep['replicas']} replicas: CPU per non-streaming request, c=32 (ms)",
             rep["cpu_per_req_ms"], f"1 backend {_f(rep['cpu_per_req_ms_one'], 3)}", None),
        ]
    out = ["| figure | shim | baseline (same run) | target | verdict |", "|---|---|---|---|---|"]
    for name, value, baseline, limit in rows:
        target = "" if limit is None else f"<= {limit:g}"
        out.append(f"| {name} | {_f(value)} | {baseline} | {target} | {_verdict(value, limit)} |")
    return out


def _sweep_table(sweep: dict[str, Any], mode: str) -> list[str]:
    out = ["| concurrency | " + " | ".join(f"{s} req/s | {s} p50 ms | {s} p99 ms" for s in SERVERS) + " |",
           "|---" * (1 + 3 * len(SERVERS)) + "|"]
    for key, cell in sweep.items():
        if key.startswith(mode + "/"):
            cols = []
            for s in SERVERS:
                m = cell[s]["median"]
                cols.append(f"{m['rps']:.0f} | {_f(m['p50'])} | {_f(m['p99'])}")
            out.append(f"| {key.split('/')[1]} | " + " | ".join(cols) + " |")
    return out


def _peer(r: dict[str, Any]) -> list[str]:
    if "peer" not in r:
        return [f"The peer could not be run here: {r['peer_note']}."]
    p = r["peer"]
    out = [f"Peer: `{r['peer_note']}` (FastAPI + uvicorn + httpx), installed from PyPI into its own venv.", "",
           "| work | direct | shim | oai2ollama |", "|---|---|---|---|"]
    rows = [
        ("`/v1/chat/completions` non-streaming, c=1, p50 ms", "plain/1", "p50", 2),
        ("`/v1/chat/completions` non-streaming, c=1, p99 ms", "plain/1", "p99", 2),
        ("`/v1/chat/completions` streaming 100 chunks, c=32, req/s", "stream/32", "rps", 0),
        ("`/v1/chat/completions` streaming 100 chunks, c=32, p50 ms", "stream/32", "p50", 1),
        ("`/v1/chat/completions` streaming, c=32, CPU per request ms (direct: the upstream's)", "stream/32",
         "cpu_per_req_ms", 3),
        ("`/api/tags`, c=32, req/s", "tags/32", "rps", 0),
        ("`/api/tags`, c=32, p50 ms", "tags/32", "p50", 2),
        ("`/api/tags`, c=32, CPU per request ms", "tags/32", "cpu_per_req_ms", 3),
    ]
    for label, cell, key, digits in rows:
        values = [_f(p[cell][s]["median"][key], digits) if s in p[cell] else "-" for s in PEER_COLUMNS]
        out.append(f"| {label} | " + " | ".join(values) + " |")
    return out


def _workers(w: dict[str, Any]) -> list[str]:
    one, two = w["workers=1"]["median"], w["workers=2"]["median"]
    return [
        "| workers | req/s | p50 ms | p99 ms | shim CPU per request ms |", "|---|---|---|---|---|",
        *(f"| {n} | {m['rps']:.0f} | {_f(m['p50'])} | {_f(m['p99'])} | {_f(m['cpu_per_req_ms'], 3)} |"
          for n, m in (("1", one), ("2", two))),
        "", f"Throughput from 1 to 2 workers: **x{two['rps'] / one['rps']:.2f}**.",
    ]


def plot(r: dict[str, Any], path: Path) -> None:
    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    for col, mode in enumerate(("stream", "plain")):
        cells = {int(k.split("/")[1]): v for k, v in r["sweep"].items() if k.startswith(mode + "/")}
        xs = sorted(cells)
        for server in SERVERS:
            axes[0][col].plot(xs, [cells[x][server]["median"]["p50"] for x in xs], marker="o", label=server)
            axes[1][col].plot(xs, [cells[x][server]["median"]["rps"] for x in xs], marker="o", label=server)
        title = "streaming, 100 chunks" if mode == "stream" else "non-streaming"
        axes[0][col].set(title=f"p50 latency, {title}", xlabel="concurrency", ylabel="ms", xscale="log", yscale="log")
        axes[1][col].set(title=f"throughput, {title}", xlabel="concurrency", ylabel="requests/s", xscale="log")
        for ax in (axes[0][col], axes[1][col]):
            ax.set_xticks(xs, [str(x) for x in xs])
            ax.grid(True, alpha=0.3)
            ax.legend()
    fig.suptitle(f"ollama-shim vs direct vs minimal relay ({r['machine']['cores']} cores, {r['machine']['date']})")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def write(r: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    plot(r, out / "benchmarks.png")
    m = r["machine"]
    s = r["settings"]
    lines = [
        "# Benchmarks", "",
        "Written by `make bench` (`bench/run.py`); every figure below is from the run of "
        f"{m['date']}, which took {r['duration_s']:.0f} s.", "",
        "## Machine", "",
        f"{m['cpu']}, {m['cores']} cores, Linux {m['kernel']}, Python {m['python']}, aiohttp {m['aiohttp']}, "
        f"msgspec {m['msgspec']}. Load average before the run: {m['load_before']:.2f}.", "",
        "## Method", "",
        "All on 127.0.0.1, each in its own process: a scripted OpenAI-compatible upstream (`bench/upstream.py`, "
        f"every answer pre-encoded; {s['chunks']} content chunks per answer unless said otherwise), the shim "
        "(`python -m ollama_shim serve --backend-kind generic --catalog-ttl 60`), a minimal aiohttp relay "
        "(`bench/minimal.py`: the least code that turns `/api/chat` into an upstream call and SSE into NDJSON) and "
        "two aiohttp load-generator processes (`bench/load.py`). \"direct\" is the load sent to the upstream's "
        "`/v1/chat/completions`; \"shim\" and \"minimal\" are the same chat sent to `/api/chat`. The servers "
        f"compared take turns within each of {s['reps']} rounds, and medians over the rounds are reported; an "
        "\"added\" figure is the per-round difference from direct, then its median. "
        f"Timed cells last {s['seconds']:g} s. "
        "CPU is the server process's own utime + stime from `/proc/<pid>/stat` (10 ms ticks) read before and after a "
        "cell, divided by the requests or NDJSON lines it answered; memory is `VmRSS`/`VmHWM` from "
        "`/proc/<pid>/status`. The machine's two cores are shared by the upstream, the server measured and the load "
        "generators, so throughput figures are for the whole set-up on two cores, not for the shim alone.", "",
        "## Targets", "", *_targets(r), "",
        "## Latency and throughput against concurrency", "", "![latency and throughput](benchmarks.png)", "",
        "Streaming chat, 100 chunks per answer:", "", *_sweep_table(r["sweep"], "stream"), "",
        "Non-streaming chat:", "", *_sweep_table(r["sweep"], "plain"), "",
        f"1,000 slow streams ({r['slow_streams']['shim']['streams']} at once, 20 chunks 50 ms apart): the shim "
        f"completed {r['slow_streams']['shim']['completed']} with {r['slow_streams']['shim']['errors']} errors "
        f"(p50 {r['slow_streams']['shim']['p50_s']:.2f} s); the minimal relay "
        f"{r['slow_streams']['minimal']['completed']} with {r['slow_streams']['minimal']['errors']} errors.", "",
        "## Peer comparison", "", *_peer(r), "",
        "## Workers", "",
        "The same streaming load (c=64, 100 chunks) against `--workers 1` and `--workers 2` (`SO_REUSEPORT`); CPU "
        "counts the parent and its workers.", "", *_workers(r["workers"]), "",
    ]
    if NOTES.exists():
        lines += [NOTES.read_text().rstrip(), ""]
    (out / "benchmarks.md").write_text("\n".join(lines))
