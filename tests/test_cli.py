"""The ``ollama-shim`` command: exit statuses and one-line errors, in process with the server replaced;
one real start-answer-stop of the command, and a busy port through the real command."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from ollama_shim import cli, server, workers
from ollama_shim.settings import OPTIONS, Settings
from support import free_port

ENV = {k: v for k, v in os.environ.items() if not k.startswith(("OLLAMA_SHIM_", "OLLAMA_HOST", "OLLAMA_ORIGINS"))}


class Runner:
    """Stands in for ``server.run`` and ``workers.run_workers``: records the settings it was given."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, *, fail: Exception | None = None, status: int = 0) -> None:
        self.single: list[Settings] = []
        self.workers: list[Settings] = []
        self.fail, self.status = fail, status
        monkeypatch.setattr(server, "run", self.run)
        monkeypatch.setattr(workers, "run_workers", self.run_workers)
        for name in [k for k in os.environ if k.startswith(("OLLAMA_SHIM_", "OLLAMA_HOST", "OLLAMA_ORIGINS"))]:
            monkeypatch.delenv(name)

    def run(self, settings: Settings) -> None:
        self.single.append(settings)
        if self.fail is not None:
            raise self.fail

    def run_workers(self, settings: Settings) -> int:
        self.workers.append(settings)
        return self.status


def _one_line_error(capsys: pytest.CaptureFixture[str], fragment: str) -> None:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("ollama-shim: error:")
    assert fragment in lines[0]


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["--no-such-flag"], "unrecognized arguments"),
        (["--config", "/nonexistent/shim.toml"], "cannot read config file"),
        (["--workers", "two"], "not a number"),
        (["--api-key", " sk-padded "], "whitespace"),
        (["--api-key", ""], "the key is empty"),
        (["stop"], "invalid choice"),
    ],
    ids=["bad-flag", "missing-config", "bad-number", "padded-key", "empty-key", "bad-command"],
)
def test_bad_settings_exit_2_with_one_line(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                           argv: list[str], fragment: str) -> None:
    runner = Runner(monkeypatch)
    assert cli.main(argv) == 2
    _one_line_error(capsys, fragment)
    assert runner.single == []
    assert runner.workers == []


def test_the_padded_key_is_not_echoed(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    Runner(monkeypatch)
    cli.main(["--api-key", "sk-secret-value "])
    assert "sk-secret-value" not in capsys.readouterr().err


@pytest.mark.parametrize("command", [[], ["serve"]], ids=["default", "serve"])
def test_good_settings_run_one_server_and_exit_0(monkeypatch: pytest.MonkeyPatch, command: list[str]) -> None:
    runner = Runner(monkeypatch)
    assert cli.main([*command, "--listen", "127.0.0.1:7001"]) == 0
    assert [s.port for s in runner.single] == [7001]
    assert runner.workers == []


def test_a_port_that_cannot_be_bound_exits_2(monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    settings = Settings(port=7002)
    Runner(monkeypatch, fail=server.cannot_listen(settings, OSError(98, "Address already in use")))
    assert cli.main([]) == 2
    _one_line_error(capsys, "cannot listen on 127.0.0.1:7002: Address already in use")


@pytest.mark.parametrize("status", [0, 1, 2])
def test_workers_status_is_the_exit_status(monkeypatch: pytest.MonkeyPatch, status: int) -> None:
    runner = Runner(monkeypatch, status=status)
    assert cli.main(["--workers", "3"]) == status
    assert [s.workers for s in runner.workers] == [3]
    assert runner.single == []


def test_environment_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    runner = Runner(monkeypatch)
    monkeypatch.setenv("OLLAMA_SHIM_HEAD_TIMEOUT", "3")
    assert cli.main([]) == 0
    assert runner.single[0].connections.head_timeout == 3


def test_help_lists_every_option(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    Runner(monkeypatch)
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    missing = [option.flag for option in OPTIONS if option.flag not in out]
    assert missing == []


# -- the real command ------------------------------------------------------------------------


def _command(*argv: str) -> list[str]:
    return [sys.executable, "-m", "ollama_shim", *argv]


def test_busy_port() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        # A backend is named so that the real command does not probe this machine's usual ports.
        result = subprocess.run(_command("--listen", f"127.0.0.1:{port}", "--backend", "http://127.0.0.1:9"),
                                capture_output=True, text=True,
                                timeout=30, env=ENV)
    assert result.returncode == 2
    assert result.stderr.strip() == (f"ollama-shim: error: cannot listen on 127.0.0.1:{port}: "
                                     "Address already in use")


def _get_root(port: int, proc: subprocess.Popen[str], deadline: float) -> bytes:
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the shim exited"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as resp:
                return bytes(resp.read())
        except OSError:
            time.sleep(0.05)
    raise AssertionError("the shim did not answer GET /")


def test_start_answer_and_stop_on_sigterm() -> None:
    port = free_port()
    proc = subprocess.Popen(_command("--listen", f"127.0.0.1:{port}", "--backend", "http://127.0.0.1:9/v1",
                                     "--backend-key", "sk-secret"),
                            stderr=subprocess.PIPE, text=True, env=ENV)
    try:
        body = _get_root(port, proc, time.monotonic() + 20)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, log = proc.communicate(timeout=20)
    assert body == b"Ollama is running"
    assert proc.returncode == 0
    assert f"listening on http://127.0.0.1:{port}" in log
    assert "http://127.0.0.1:9" in log
    assert "sk-secret" not in log
    assert "Traceback" not in log


def test_module_main_is_the_command(tmp_path: Path) -> None:
    result = subprocess.run(_command("--config", str(tmp_path / "missing.toml")), capture_output=True, text=True,
                            timeout=30, env=ENV)
    assert result.returncode == 2
    assert result.stderr.startswith("ollama-shim: error: cannot read config file")
