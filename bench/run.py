"""``make bench``: measure the shim against talking to the backend directly; write docs/benchmarks.md and .png.

Starts the scripted upstream, the shim, the minimal relay and two load generators, all on
127.0.0.1, runs the phases in ``phases.py`` and ``peer.py``, keeps the raw figures in
``.cache/bench/results.json`` and writes the report with ``report.py``. Every process started is
stopped on the way out, also on failure.

Usage: ``python bench/run.py [--reps N] [--seconds S] [--out DIR] [--only PHASE]``. With ``--only`` just
that phase runs; its figures replace that phase's in ``results.json`` and are printed, and the report is
written again only when the file holds every phase.

May import: stdlib, and the modules of this folder.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import peer
import phases
import report
from measure import Target
from procs import BENCH, Loader, Procs, free_port


def machine() -> dict[str, Any]:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    import aiohttp
    import msgspec

    return {
        "cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "kernel": platform.release(),
        "aiohttp": aiohttp.__version__, "msgspec": msgspec.__version__,
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "load_before": os.getloadavg()[0],
    }


def build_rig(procs: Procs, reps: int, seconds: float) -> phases.Rig:
    up = free_port()
    upstream = procs.server([sys.executable, str(BENCH / "upstream.py"), "--port", str(up)], up, "/v1/models")
    loader = Loader(procs, 2)
    shim_port, minimal_port = free_port(), free_port()
    shim = phases.start_target(procs, "shim", phases.shim_argv(up, shim_port), shim_port)
    minimal = phases.start_target(procs, "minimal", phases.minimal_argv(up, minimal_port), minimal_port)
    direct = Target("direct", up, upstream.pid, "openai")
    return phases.Rig(procs, loader, up, direct, shim, minimal, reps, seconds)


def _timed(name: str, results: dict[str, Any], run: Any, *args: Any) -> None:
    started = time.perf_counter()
    print(f"{name} ...", flush=True)
    results[name] = run(*args)
    print(f"{name}: {time.perf_counter() - started:.1f} s", flush=True)


RAW = BENCH.parent / ".cache" / "bench" / "results.json"
ONLY = {"replicas": phases.replicas, "latency": phases.latency_c1, "tags": phases.tags}


def only(name: str, args: argparse.Namespace) -> int:
    """One phase, merged into the last full run's figures (if any); the report only if they are whole."""
    results: dict[str, Any] = json.loads(RAW.read_text()) if RAW.exists() else {}
    with Procs() as procs:
        rig = build_rig(procs, args.reps, args.seconds)
        _timed(name, results, ONLY[name], rig)
    print(json.dumps({k: v for k, v in results[name].items() if not isinstance(v, dict)}, indent=1))
    RAW.parent.mkdir(parents=True, exist_ok=True)
    RAW.write_text(json.dumps(results, indent=1))
    if "workers" in results and "machine" in results:
        report.write(results, args.out)
        print(f"wrote {args.out / 'benchmarks.md'}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description="ollama-shim benchmark")
    parser.add_argument("--reps", type=int, default=3, help="repetitions of each measurement (medians reported)")
    parser.add_argument("--seconds", type=float, default=1.0, help="length of each timed load cell")
    parser.add_argument("--out", type=Path, default=BENCH.parent / "docs")
    parser.add_argument("--only", choices=sorted(ONLY), help="run this phase alone, into the last results")
    args = parser.parse_args()
    if args.only:
        return only(args.only, args)
    started = time.perf_counter()
    results: dict[str, Any] = {"machine": machine(), "settings": {"reps": args.reps, "seconds": args.seconds,
                                                                    "chunks": phases.CHUNKS}}
    with Procs() as procs:
        rig = build_rig(procs, args.reps, args.seconds)
        _timed("startup", results, phases.startup, rig)
        _timed("latency", results, phases.latency_c1, rig)
        _timed("sweep", results, phases.sweep, rig)
        _timed("gathered", results, phases.gathered, rig)
        _timed("apis", results, phases.apis, rig)
        _timed("tags", results, phases.tags, rig)
        python, note = peer.prepare()
        results["peer_note"] = note
        if python is not None:
            _timed("peer", results, peer.compare, rig, python)
        _timed("slow_streams", results, phases.slow_streams, rig)
        _timed("workers", results, phases.workers, rig)
        _timed("replicas", results, phases.replicas, rig)
    results["duration_s"] = time.perf_counter() - started
    RAW.parent.mkdir(parents=True, exist_ok=True)
    RAW.write_text(json.dumps(results, indent=1))
    report.write(results, args.out)
    print(f"wrote {args.out / 'benchmarks.md'} and benchmarks.png in {results['duration_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
