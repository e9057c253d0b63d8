"""Ignored option names are client text: the log remembers a bounded number of them, each cut
short and quoted, so that no request can flood the log or write lines of its own into it."""

from __future__ import annotations

import io
import json
import logging

import aiohttp
import pytest

from ollama_shim.routes.state import MAX_LOGGED_OPTIONS, MAX_OPTION_NAME_CHARS
from support.faults import MODEL, FaultUpstream
from support.shim import shim_in_loop

HI = [{"role": "user", "content": "hi"}]


def ignored_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "ollama_shim" and "option" in r.getMessage()]


async def test_unknown_option_names_are_logged_bounded(
    upstream: FaultUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    hostile = {f"opt{i}\n2026-01-01 INFO forged line {'x' * 10_000}": 1 for i in range(1_000)}
    later = {f"late{i}": 1 for i in range(10)}
    with caplog.at_level(logging.INFO, logger="ollama_shim"):
        async with shim_in_loop("--backend", upstream.url, "--backend-kind", "generic") as url, \
                aiohttp.ClientSession() as session:
            for options in (hostile, hostile, later):
                body = {"model": MODEL, "messages": HI, "stream": False, "options": options}
                # A file-like body: aiohttp warns about raw bodies over 1 MiB.
                async with session.post(url + "/api/chat", data=io.BytesIO(json.dumps(body).encode())) as resp:
                    assert resp.status == 200
    lines = ignored_lines(caplog)
    named = [line for line in lines if line.startswith("option ")]
    assert len(named) == MAX_LOGGED_OPTIONS
    assert len(lines) == MAX_LOGGED_OPTIONS + 1  # and one line saying the rest go unlogged
    assert all("\n" not in line for line in lines)
    assert max(map(len, lines)) < MAX_OPTION_NAME_CHARS + 100
    assert named[0].startswith("option 'opt0\\n2026-01-01 INFO forged")


async def test_each_ignored_name_is_logged_once(upstream: FaultUpstream, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="ollama_shim"):
        async with shim_in_loop("--backend", upstream.url, "--backend-kind", "generic") as url, \
                aiohttp.ClientSession() as session:
            for _ in range(3):
                body = {"model": MODEL, "messages": HI, "stream": False, "options": {"num_ctx": 8, "frobnicate": 1}}
                # A file-like body: aiohttp warns about raw bodies over 1 MiB.
                async with session.post(url + "/api/chat", data=io.BytesIO(json.dumps(body).encode())) as resp:
                    assert resp.status == 200
    assert sorted(ignored_lines(caplog)) == [
        "option 'frobnicate' is not an Ollama option (or no longer one) and is ignored",
        "option 'num_ctx' is a load-time setting of the backend and is ignored",
    ]
