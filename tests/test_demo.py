"""``make demo`` (``scripts/demo.py``): llama-server and the shim come up, the first Ollama request
answers, and SIGINT stops both, leaving nothing running."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from support import free_port
from support import llama as llama_support

ROOT = Path(__file__).resolve().parents[1]
READY_SECONDS = 240.0


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def _group_gone(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


def _post(url: str, body: object) -> dict[str, object]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as resp:
        answer: dict[str, object] = json.loads(resp.read())
        return answer


@pytest.mark.backend
def test_demo_answers_and_sigint_stops_both() -> None:
    try:
        for name in (llama_support.SMOLLM2, llama_support.GEMMA):
            llama_support.model_file(name)
        llama_support.binary()
    except llama_support.SetupMissing as exc:
        pytest.fail(f"{exc} (the demo needs the real llama-server and models)", pytrace=False)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OLLAMA_SHIM_", "OLLAMA_HOST"))}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    demo = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "demo.py"), "--listen", f"127.0.0.1:{port}"],
                            stdout=subprocess.PIPE, text=True, env=env)
    pids: dict[str, int] = {}
    try:
        assert demo.stdout is not None
        deadline = time.monotonic() + READY_SECONDS
        line = ""
        while time.monotonic() < deadline:
            line = demo.stdout.readline()
            if not line or line.startswith("ready:"):
                break
            found = re.match(r"demo: started (\S+) \(pid (\d+)\)", line)
            if found:
                pids[found.group(1)] = int(found.group(2))
        assert line.startswith("ready:"), f"the demo did not get ready: {line!r}"
        assert f"OLLAMA_HOST=127.0.0.1:{port} ollama list" in line
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/tags", timeout=30) as resp:
            names = {m["name"] for m in json.loads(resp.read())["models"]}
        assert "SmolLM2-135M-Instruct.Q4_1:latest" in names
        chat = _post(f"http://127.0.0.1:{port}/api/chat", {
            "model": "SmolLM2-135M-Instruct.Q4_1", "stream": False, "options": {"num_predict": 1},
            "messages": [{"role": "user", "content": "Hello"}],
        })
        assert chat["done"] is True
    finally:
        demo.send_signal(signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            demo.communicate(timeout=60)
        if demo.poll() is None:
            demo.kill()
            for pid in pids.values():
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)
    assert demo.returncode == 0
    assert set(pids) == {"llama-server", "ollama-shim"}
    assert [name for name, pid in pids.items() if not _gone(pid)] == []
    assert _group_gone(pids["llama-server"])  # the router's per-model servers went too
