"""The ``ollama-shim`` command as a user runs it: one-line errors with exit 2, and what it says on start."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from support import free_port

ENV = {k: v for k, v in os.environ.items() if not k.startswith(("OLLAMA_SHIM_", "OLLAMA_HOST", "OLLAMA_ORIGINS"))}


def run(*argv: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ollama_shim", *argv], capture_output=True, text=True,
                          timeout=timeout, env=ENV)


def _one_line_error(result: subprocess.CompletedProcess[str], fragment: str) -> None:
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ollama-shim: error:") and fragment in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def test_bad_flag() -> None:
    _one_line_error(run("--no-such-flag"), "unrecognized arguments")


def test_unreadable_config(tmp_path: Path) -> None:
    _one_line_error(run("--config", str(tmp_path / "missing.toml")), "cannot read config file")


def test_busy_port() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        _one_line_error(run("--listen", f"127.0.0.1:{port}"), f"cannot listen on 127.0.0.1:{port}")


def test_help_lists_every_option() -> None:
    out = run("--help").stdout
    for flag in ("--listen", "--backend", "--backend-key", "--config", "--log-level", "--connect-timeout",
                 "--first-byte-timeout", "--idle-timeout", "--total-timeout", "--api-key", "--workers"):
        assert flag in out


@pytest.mark.parametrize("command", [[], ["serve"]], ids=["default", "serve"])
def test_start_says_where_it_listens_and_which_backend(command: list[str]) -> None:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "ollama_shim", *command, "--listen", f"127.0.0.1:{port}",
                             "--backend", "http://127.0.0.1:9/v1", "--backend-key", "sk-secret"],
                            stderr=subprocess.PIPE, text=True, env=ENV)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, log = proc.communicate(timeout=20)
    assert proc.returncode == 0
    assert f"listening on http://127.0.0.1:{port}" in log and "http://127.0.0.1:9" in log
    assert "sk-secret" not in log
