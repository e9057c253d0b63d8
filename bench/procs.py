"""Processes for the benchmark: start, stop, and read their own CPU and memory accounting from /proc.

``Procs`` is a context manager that stops every process it started (SIGTERM, then SIGKILL),
also when the benchmark fails. ``cpu_seconds``/``memory_kb`` read ``/proc/<pid>/stat`` and
``/proc/<pid>/status`` for a process and its live children (``--workers``). ``Loader`` drives
``bench/load.py`` generator processes, splitting a job's concurrency between them.

May import: stdlib only.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry))
    return out


def tree(pid: int) -> list[int]:
    """The process and its live children."""
    return [pid, *_children(pid)]


def cpu_seconds(pid: int) -> float:
    """User + system CPU of the process and its live children, in seconds."""
    total = 0
    for p in tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / TICKS


def memory_kb(pid: int, key: str = "VmRSS") -> int:
    """``VmRSS`` (now) or ``VmHWM`` (peak) of the process plus its live children, in kB."""
    total = 0
    for p in tree(pid):
        try:
            lines = Path(f"/proc/{p}/status").read_text().splitlines()
        except OSError:
            continue
        total += next(int(line.split()[1]) for line in lines if line.startswith(key + ":"))
    return total


def get_status(port: int, path: str, timeout: float = 1.0) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        resp.read()
        return resp.status
    except OSError:
        return 0
    finally:
        conn.close()


class Procs:
    """Every process the benchmark started; all are stopped on exit."""

    def __init__(self) -> None:
        self._running: list[subprocess.Popen[str]] = []

    def __enter__(self) -> Procs:
        return self

    def __exit__(self, *exc: object) -> None:
        for proc in reversed(self._running):
            self.stop(proc)

    def start(self, argv: list[str], *, pipe: bool = False, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE if pipe else subprocess.DEVNULL, stdout=subprocess.PIPE if pipe else
            subprocess.DEVNULL, stderr=None, text=True, env={**os.environ, **(env or {})}, cwd=BENCH.parent,
        )
        self._running.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[str]) -> int:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                for pid in reversed(tree(proc.pid)):
                    os.kill(pid, signal.SIGKILL)
                proc.wait()
        if proc in self._running:
            self._running.remove(proc)
        return proc.returncode

    def stop_pid(self, pid: int) -> int:
        return self.stop(next(p for p in self._running if p.pid == pid))

    def server(self, argv: list[str], port: int, path: str = "/", timeout: float = 30.0) -> subprocess.Popen[str]:
        """Start a server and wait until ``GET path`` answers 200."""
        proc = self.start(argv)
        wait_ready(proc, port, path, timeout)
        return proc


def wait_ready(proc: subprocess.Popen[str], port: int, path: str, timeout: float, step: float = 0.05) -> float:
    """Poll until ``GET path`` is 200; return the seconds it took."""
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args} exited with {proc.returncode}")
        if get_status(port, path) == 200:
            return time.perf_counter() - started
        time.sleep(step)
    raise RuntimeError(f"{proc.args} did not answer {path} on port {port} in {timeout} s")


class Loader:
    """``processes`` load generators; a job's concurrency and request count are split between them."""

    def __init__(self, procs: Procs, processes: int = 2) -> None:
        self._gens = [procs.start([sys.executable, str(BENCH / "load.py")], pipe=True) for _ in range(processes)]

    def run(self, job: dict[str, Any], processes: int | None = None) -> dict[str, Any]:
        gens = self._gens[: max(1, min(processes or len(self._gens), job["concurrency"]))]
        parts = [dict(job) for _ in gens]
        for i, part in enumerate(parts):
            part["concurrency"] = job["concurrency"] // len(gens) + (i < job["concurrency"] % len(gens))
            if "requests" in job:
                part["requests"] = job["requests"] // len(gens) + (i < job["requests"] % len(gens))
        for gen, part in zip(gens, parts, strict=True):
            assert gen.stdin is not None
            gen.stdin.write(json.dumps(part) + "\n")
            gen.stdin.flush()
        results = [json.loads(gen.stdout.readline()) for gen in gens if gen.stdout is not None]
        merged: dict[str, Any] = {"latency": [], "ttfc": [], "chunks": 0, "count": 0, "errors": 0, "first_error": ""}
        for r in results:
            merged["latency"] += r["latency"]
            merged["ttfc"] += r["ttfc"]
            for key in ("chunks", "count", "errors"):
                merged[key] += r[key]
            merged["first_error"] = merged["first_error"] or r["first_error"]
        merged["wall"] = max(r["wall"] for r in results)
        return merged
