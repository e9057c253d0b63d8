"""Request ids and log lines: ``X-Request-ID`` kept or made, returned on every response, sent to the
backend and on every log line of the request; the access-log line; ``--log-format json``."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import sys
from collections.abc import Iterator

import aiohttp
import pytest

from ollama_shim.logs import JsonFormatter, RequestIdFilter, configure
from ollama_shim.request_id import REQUEST_ID, accept_request_id
from ollama_shim.settings import SettingsError, load_settings
from support import free_port
from support.faults import MODEL, Fault, FaultUpstream
from support.shim import shim_in_loop

HEX_ID = re.compile(r"[0-9a-f]{32}")


def _chat(stream: bool, text: str = "hi", model: str = MODEL) -> dict[str, object]:
    return {"model": model, "messages": [{"role": "user", "content": text}], "stream": stream}


@pytest.mark.parametrize(("sent", "kept"), [
    ("abc-123", True),
    ("x" * 128, True),
    ("trace=1;span:2/3", True),
    ("x" * 129, False),
    ("", False),
    ("has space", False),
    ("new\nline", False),
    ("caf\u00e9", False),
    (None, False),
])
def test_accept_request_id(sent: str | None, kept: bool) -> None:
    got = accept_request_id(sent)
    assert got == sent if kept else HEX_ID.fullmatch(got)


async def test_the_clients_id_is_returned_and_sent_to_the_backend(upstream: FaultUpstream) -> None:
    async with shim_in_loop("--backend", upstream.url) as base, aiohttp.ClientSession() as session, \
            session.post(base + "/api/chat", json=_chat(False), headers={"X-Request-ID": "client-7"}) as resp:
        assert resp.status == 200
        returned = resp.headers["X-Request-ID"]
    assert returned == "client-7"
    assert upstream.calls[-1].headers["X-Request-ID"] == "client-7"


@pytest.mark.parametrize("sent", [None, "bad id with spaces", "y" * 200])
async def test_a_missing_or_bad_id_is_replaced_everywhere(upstream: FaultUpstream, sent: str | None) -> None:
    headers = {} if sent is None else {"X-Request-ID": sent}
    async with shim_in_loop("--backend", upstream.url) as base, aiohttp.ClientSession() as session, \
            session.post(base + "/api/chat", json=_chat(True), headers=headers) as resp:
        await resp.read()
        returned = resp.headers["X-Request-ID"]
    assert HEX_ID.fullmatch(returned)
    assert upstream.calls[-1].headers["X-Request-ID"] == returned


@pytest.mark.parametrize(("method", "path", "status"), [
    ("GET", "/", 200),
    ("GET", "/no/such/path", 404),
    ("POST", "/api/chat", 400),  # no body
    ("GET", "/metrics", 200),
])
async def test_every_response_carries_an_id(upstream: FaultUpstream, method: str, path: str, status: int) -> None:
    async with shim_in_loop("--backend", upstream.url) as base, aiohttp.ClientSession() as session, \
            session.request(method, base + path) as resp:
        assert resp.status == status
        assert HEX_ID.fullmatch(resp.headers["X-Request-ID"])


async def test_two_requests_get_two_ids(upstream: FaultUpstream) -> None:
    async with shim_in_loop("--backend", upstream.url) as base, aiohttp.ClientSession() as session:
        ids = []
        for _ in range(2):
            async with session.get(base + "/api/tags") as resp:
                ids.append(resp.headers["X-Request-ID"])
    assert ids[0] != ids[1]


@pytest.fixture
def captured(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Log records at info and above, each given its request id as the real handler does."""
    request_ids = RequestIdFilter()
    caplog.handler.addFilter(request_ids)
    caplog.set_level(logging.INFO, logger="ollama_shim")
    yield caplog
    caplog.handler.removeFilter(request_ids)


async def test_log_lines_of_a_request_carry_its_id(upstream: FaultUpstream,
                                                   captured: pytest.LogCaptureFixture) -> None:
    upstream.script(Fault("reset", after=2))  # the relay logs a warning in the middle of the request
    async with shim_in_loop("--backend", upstream.url) as base, aiohttp.ClientSession() as session, \
            session.post(base + "/api/chat", json=_chat(True), headers={"X-Request-ID": "rid-1"}) as resp:
        await resp.read()
    broke = [r for r in captured.records if "broke" in r.getMessage()]
    access = [r for r in captured.records if r.name == "ollama_shim.access"]
    assert [r.request_id for r in broke] == ["rid-1"]  # type: ignore[attr-defined]
    assert [r.request_id for r in access] == ["rid-1"]  # type: ignore[attr-defined]


async def test_the_access_line_has_the_fields_and_no_prompt(upstream: FaultUpstream,
                                                            captured: pytest.LogCaptureFixture) -> None:
    async with shim_in_loop("--backend", upstream.url) as base, aiohttp.ClientSession() as session, \
            session.post(base + "/api/chat?x=1", json=_chat(False, text="SECRET-PROMPT-77")) as resp:
        assert resp.status == 200
    (line,) = [r for r in captured.records if r.name == "ollama_shim.access"]
    message = line.getMessage()
    assert line.levelno == logging.INFO
    assert message.startswith("POST /api/chat model=fault-model:latest backend=http://127.0.0.1:")
    assert re.search(r":\d+ status=200 duration_ms=[\d.]+ tokens_in=5 tokens_out=8$", message)
    assert "SECRET-PROMPT-77" not in captured.text


async def test_probes_are_logged_at_debug(upstream: FaultUpstream, captured: pytest.LogCaptureFixture) -> None:
    async with shim_in_loop("--backend", upstream.url) as base, aiohttp.ClientSession() as session:
        for path in ("/", "/metrics", "/status.json", "/api/version"):
            async with session.get(base + path) as resp:
                assert resp.status == 200
    assert [r.getMessage().split()[1] for r in captured.records if r.name == "ollama_shim.access"] == ["/api/version"]


def test_json_lines_hold_the_fields() -> None:
    out = io.StringIO()
    logger = logging.getLogger("ollama_shim.test_json")
    handler = logging.StreamHandler(out)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter())
    logger.addHandler(handler)
    try:
        token = REQUEST_ID.set("r-9")
        try:
            logger.warning("hello %s", "world", extra={"access": {"status": 200, "model": "m"}})
        finally:
            REQUEST_ID.reset(token)
        logger.warning("outside")
    finally:
        logger.removeHandler(handler)
    first, second = (json.loads(line) for line in out.getvalue().splitlines())
    assert {k: first[k] for k in ("level", "logger", "message", "request_id", "status", "model")} == {
        "level": "warning", "logger": "ollama_shim.test_json", "message": "hello world", "request_id": "r-9",
        "status": 200, "model": "m"}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", first["time"])
    assert second["request_id"] is None


def test_configure_writes_text_lines_with_the_id() -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    root.handlers.clear()
    out = io.StringIO()
    try:
        configure("info", "text", stream=out)
        token = REQUEST_ID.set("r-text")
        try:
            logging.getLogger("ollama_shim.x").info("inside")
        finally:
            REQUEST_ID.reset(token)
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
    assert re.fullmatch(r"\S+ \S+ INFO ollama_shim\.x \[r-text\]: inside\n", out.getvalue())


async def test_the_server_logs_json_lines(upstream: FaultUpstream) -> None:
    """The real command with ``--log-format json``: every stderr line is one object; the access line
    of a request holds its id and fields."""
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ollama_shim", "--backend", upstream.url, "--listen", f"127.0.0.1:{port}",
        "--log-format", "json", stderr=asyncio.subprocess.PIPE,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as session:
            async with asyncio.timeout(20):
                while True:
                    try:
                        async with session.get(base + "/api/version") as resp:
                            break
                    except aiohttp.ClientConnectionError:
                        await asyncio.sleep(0.05)
            async with session.post(base + "/api/chat", json=_chat(False), headers={"X-Request-ID": "j-1"}) as resp:
                assert resp.status == 200
    finally:
        proc.terminate()
        _, err = await asyncio.wait_for(proc.communicate(), 20)
    lines = [json.loads(line) for line in err.decode().splitlines()]
    (access,) = [line for line in lines if line["logger"] == "ollama_shim.access" and line["path"] == "/api/chat"]
    assert {k: access[k] for k in ("level", "request_id", "method", "status", "model", "tokens_in", "tokens_out")} == {
        "level": "info", "request_id": "j-1", "method": "POST", "status": 200, "model": "fault-model:latest",
        "tokens_in": 5, "tokens_out": 8}
    assert access["backend"] == upstream.url
    assert any(line["message"].startswith("ollama-shim listening") for line in lines)


@pytest.mark.parametrize(("argv", "environ", "fmt"), [
    ([], {}, "text"),
    (["--log-format", "json"], {}, "json"),
    ([], {"OLLAMA_SHIM_LOG_FORMAT": "JSON"}, "json"),
    (["--log-format", "text"], {"OLLAMA_SHIM_LOG_FORMAT": "json"}, "text"),
])
def test_log_format_setting(argv: list[str], environ: dict[str, str], fmt: str) -> None:
    assert load_settings(argv, environ).log_format == fmt


def test_an_unknown_log_format_is_refused() -> None:
    with pytest.raises(SettingsError, match="log-format: 'xml': expected one of text, json"):
        load_settings(["--log-format", "xml"], {})
