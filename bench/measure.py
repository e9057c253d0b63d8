"""One measured cell: a load job against one server, with that server's own CPU accounting around it.

``Target`` names a server process and how to ask it for a chat (Ollama ``/api/chat`` or OpenAI
``/v1/chat/completions``, streamed or not) or a GET. ``measure`` runs a job on the ``Loader`` and
returns latency percentiles, throughput, chunks and the CPU the target process used (from
``/proc``, so the load generator's CPU is not in it). ``median_of`` folds repeated cells.

May import: stdlib, ``bench.procs``.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass
from typing import Any

from procs import Loader, cpu_seconds

PROMPT = [{"role": "user", "content": "Say hello"}]


@dataclass(frozen=True)
class Target:
    name: str
    port: int
    pid: int
    api: str  # "ollama", "openai", "anthropic" (/v1/messages) or "responses" (/v1/responses)

    def chat_job(self, *, stream: bool, chunks: int, model: str = "fast") -> dict[str, Any]:
        if self.api == "ollama":
            path = "/api/chat"
            body = {"model": model, "messages": PROMPT, "stream": stream, "options": {"num_predict": chunks}}
        elif self.api == "anthropic":
            path = "/v1/messages"
            body = {"model": model, "messages": PROMPT, "stream": stream, "max_tokens": chunks}
        elif self.api == "responses":
            path = "/v1/responses"
            body = {"model": model, "input": PROMPT[0]["content"], "stream": stream, "max_output_tokens": chunks}
        else:
            path = "/v1/chat/completions"
            body = {"model": model, "messages": PROMPT, "stream": stream, "max_tokens": chunks}
        sep = "\n" if self.api == "ollama" else "\n\n"
        return {"method": "POST", "url": self.url(path), "body": json.dumps(body), "stream": stream, "sep": sep}

    def get_job(self, path: str) -> dict[str, Any]:
        return {"method": "GET", "url": self.url(path), "stream": False}

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


def percentile(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def measure(loader: Loader, target: Target, job: dict[str, Any], processes: int | None = None) -> dict[str, Any]:
    before = cpu_seconds(target.pid)
    result = loader.run(job, processes)
    cpu = cpu_seconds(target.pid) - before
    count, chunks = result["count"], result["chunks"]
    if result["errors"]:
        print(f"  {target.name}: {result['errors']} errors, first: {result['first_error']}", flush=True)
    return {
        "count": count,
        "errors": result["errors"],
        "rps": count / result["wall"] if result["wall"] else 0.0,
        "p50": percentile(result["latency"], 0.50),
        "p99": percentile(result["latency"], 0.99),
        "ttfc50": percentile(result["ttfc"], 0.50),
        "ttfc99": percentile(result["ttfc"], 0.99),
        "chunks": chunks,
        "cpu_s": cpu,
        "cpu_per_req_ms": cpu / count * 1000 if count else math.nan,
        "cpu_per_chunk_us": cpu / chunks * 1e6 if chunks else math.nan,
    }


def median_of(cells: list[dict[str, Any]]) -> dict[str, Any]:
    """Each numeric field's median over repeated cells; counts and errors are summed."""
    out: dict[str, Any] = {"reps": len(cells)}
    for key in cells[0]:
        values = [c[key] for c in cells]
        out[key] = sum(values) if key in ("count", "errors", "chunks") else statistics.median(values)
    return out
