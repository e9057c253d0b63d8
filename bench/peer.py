"""The peer comparison: ``oai2ollama`` from PyPI, on the work it and the shim both do.

oai2ollama needs Python >= 3.12; it is installed once into ``.cache/bench/oai2ollama-venv`` (a
stamp file makes later runs skip the install). It serves ``/v1/chat/completions`` by passing the
body on, and ``/api/tags`` from the backend's model list, so those are compared: the shim's
``/v1/*`` passthrough and ``/api/tags`` against the peer's, next to the backend itself.
``prepare`` returns why the peer cannot run instead of raising.

May import: stdlib, and ``procs``, ``measure``, ``phases`` from this folder.
"""

from __future__ import annotations

import glob
import shutil
import subprocess
from pathlib import Path
from typing import Any

from measure import Target
from phases import CHUNKS, Rig, rounds
from procs import BENCH, free_port, wait_ready

PACKAGE = "oai2ollama==1.2.8.4"
VENV = BENCH.parent / ".cache" / "bench" / "oai2ollama-venv"
STAMP = VENV / ".installed"
SERVE = "import os, uvicorn; from oai2ollama import app; uvicorn.run(app, host='127.0.0.1', " \
        "port=int(os.environ['BENCH_PORT']), log_level='warning')"


def _python312() -> str | None:
    found = shutil.which("python3.12")
    candidates = [found] if found else []
    candidates += sorted(glob.glob(str(Path.home() / ".pyenv/versions/3.12*/bin/python3.12")))
    for candidate in candidates:
        if candidate and subprocess.run([candidate, "-c", "pass"], capture_output=True).returncode == 0:
            return candidate
    return None


def prepare() -> tuple[Path | None, str]:
    """The peer's interpreter, installed if need be; or None and the reason."""
    python = VENV / "bin" / "python"
    if STAMP.exists() and STAMP.read_text() == PACKAGE and python.exists():
        return python, PACKAGE
    base = _python312()
    if base is None:
        return None, "no Python 3.12 here (oai2ollama requires it)"
    steps = [[base, "-m", "venv", "--clear", str(VENV)],
             [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", PACKAGE]]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True)
        if done.returncode != 0:
            return None, f"`{' '.join(step[-3:])}` failed: {done.stderr.strip().splitlines()[-1:]}"
    STAMP.write_text(PACKAGE)
    return python, PACKAGE


def compare(rig: Rig, python: Path) -> dict[str, Any]:
    port = free_port()
    env = {"BENCH_PORT": str(port), "OPENAI_API_KEY": "bench",
           "OPENAI_BASE_URL": f"http://127.0.0.1:{rig.upstream_port}/v1"}
    proc = rig.procs.start([str(python), "-c", SERVE], env=env)
    try:
        wait_ready(proc, port, "/api/version", 30)
        peer = Target("oai2ollama", port, proc.pid, "openai")
        shim = Target("shim", rig.shim.port, rig.shim.pid, "openai")
        servers = [rig.direct, shim, peer]
        return {
            "plain/1": rounds(rig, servers, lambda t: {**t.chat_job(stream=False, chunks=CHUNKS), "concurrency": 1,
                                                        "requests": 200}),
            "stream/32": rounds(rig, servers, lambda t: {**t.chat_job(stream=True, chunks=CHUNKS), "concurrency": 32,
                                                          "seconds": rig.seconds}),
            "tags/32": rounds(rig, [shim, peer], lambda t: {**t.get_job("/api/tags"), "concurrency": 32,
                                                             "seconds": rig.seconds}),
        }
    finally:
        rig.procs.stop(proc)
