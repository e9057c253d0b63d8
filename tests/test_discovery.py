"""Discovery of a local model server when none is configured, and the shim's answers when none is found.

Every candidate list here is explicit: servers on free loopback ports, never the real well-known
ports (a CI machine may run something there)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import aiohttp
import pytest

from ollama_shim import discovery
from ollama_shim.discovery import Candidate
from ollama_shim.server import start
from ollama_shim.settings import load_settings
from support import free_port
from support.faults import Blackhole
from support.lmstudio import LMStudioEmulation
from support.static import StaticServer


def nobody() -> Candidate:
    return Candidate("nothing", free_port())


def at(url: str, usual: str = "test server") -> Candidate:
    return Candidate(usual, int(url.rsplit(":", 1)[1]))


def test_the_well_known_list_covers_the_usual_servers() -> None:
    ports = {c.port for c in discovery.WELL_KNOWN}
    assert ports == {1234, 8080, 9931, 8000, 1337, 5001, 5000}
    assert all(c.host == "127.0.0.1" for c in discovery.WELL_KNOWN)


@pytest.mark.parametrize("host", ["192.168.1.2", "example.com", "0.0.0.0"])
def test_only_loopback_is_ever_probed(host: str) -> None:
    with pytest.raises(ValueError, match="loopback"):
        Candidate("x", 1234, host)


async def test_what_answers_a_model_list_is_found_and_nothing_else(lmstudio: LMStudioEmulation) -> None:
    async with StaticServer() as html, StaticServer(401, body='{"error":"Invalid API Key"}',
                                                    content_type="application/json") as keyed:
        with Blackhole() as hole:
            probes = await discovery.discover(
                [nobody(), at(html.url), at(lmstudio.url, "LM Studio"), at(keyed.url), at(hole.url)]
            )
    found = {p.candidate.port: p for p in probes}
    assert found[at(lmstudio.url).port].models == 3
    assert [p.candidate.usual for p in probes if p.found] == ["LM Studio"]
    assert found[at(html.url).port].refused == "it does not answer like a model server"
    assert found[at(keyed.url).port].refused is not None
    assert "HTTP 401" in found[at(keyed.url).port].refused
    assert found[at(hole.url).port].refused is None  # hung: treated as nobody there


async def test_one_address_is_probed_once_under_its_first_name(lmstudio: LMStudioEmulation) -> None:
    port = at(lmstudio.url).port
    probes = await discovery.discover([Candidate("llama.cpp", port), Candidate("LocalAI", port)])
    assert [p.candidate.usual for p in probes] == ["llama.cpp"]
    assert [r.path for r in lmstudio.requests] == ["/v1/models"]


async def test_resolve_uses_the_found_servers_and_logs_one_line_each(
    lmstudio: LMStudioEmulation, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="ollama_shim.discovery")
    async with LMStudioEmulation() as second:
        settings, hint = await discovery.resolve(load_settings([], {}),
                                                 [at(lmstudio.url), nobody(), at(second.url)])
    assert hint is None
    assert [b.root for b in settings.backends] == [lmstudio.url, second.url]
    found_lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("discovered")]
    assert len(found_lines) == 2
    assert lmstudio.url in found_lines[0]


async def test_a_configured_backend_is_not_second_guessed(lmstudio: LMStudioEmulation) -> None:
    settings = load_settings(["--backend", "http://127.0.0.1:9"], {})
    resolved, hint = await discovery.resolve(settings, [at(lmstudio.url)])
    assert resolved is settings
    assert hint is None
    assert lmstudio.requests == []


async def test_none_found_keeps_no_backend_and_warns_with_the_hint(caplog: pytest.LogCaptureFixture) -> None:
    candidates = [nobody(), nobody()]
    settings, hint = await discovery.resolve(load_settings([], {}), candidates)
    assert settings.backends == ()
    assert hint == discovery.no_backend_hint(candidates)
    assert [r.levelname for r in caplog.records if r.getMessage() == hint] == ["WARNING"]


def test_the_hint_is_one_line_that_names_both_ways_out() -> None:
    hint = discovery.no_backend_hint()
    assert "\n" not in hint
    assert "--backend" in hint
    assert "lms server start" in hint
    assert "1234" in hint
    assert "9931" in hint


# -- the server ---------------------------------------------------------------------------


async def _shim(*argv: str, candidates: list[Candidate]) -> AsyncIterator[str]:
    settings = load_settings(["--listen", f"127.0.0.1:{free_port()}", *argv], {})
    runner = await start(settings, candidates=candidates)
    try:
        yield f"http://{settings.host}:{settings.port}"
    finally:
        await runner.cleanup()


@pytest.fixture
async def lonely_shim() -> AsyncIterator[str]:
    async for url in _shim(candidates=[nobody()]):
        yield url


HINTED = [
    ("POST", "/api/chat", {"model": "m", "messages": [{"role": "user", "content": "hi"}]}),
    ("POST", "/api/generate", {"model": "m", "prompt": "hi"}),
    ("POST", "/api/embed", {"model": "m", "input": "hi"}),
    ("POST", "/api/show", {"model": "m"}),
    ("POST", "/api/pull", {"model": "m"}),
    ("GET", "/v1/models", None),
    ("POST", "/v1/chat/completions", {"model": "m", "messages": [{"role": "user", "content": "hi"}]}),
]


@pytest.mark.parametrize(("method", "path", "body"), HINTED, ids=[f"{m} {p}" for m, p, _ in HINTED])
async def test_with_no_backend_a_request_that_needs_one_gets_the_hint(
    lonely_shim: str, method: str, path: str, body: object
) -> None:
    async with aiohttp.ClientSession() as session, session.request(method, lonely_shim + path, json=body) as resp:
        answer = await resp.json()
        status = resp.status
    assert status == 503
    assert "--backend" in answer["error"]
    assert "\n" not in answer["error"]


@pytest.mark.parametrize("path", ["/api/tags", "/api/ps"])
async def test_with_no_backend_the_model_lists_are_empty(lonely_shim: str, path: str) -> None:
    async with aiohttp.ClientSession() as session, session.get(lonely_shim + path) as resp:
        assert resp.status == 200
        assert await resp.json() == {"models": []}


@pytest.mark.parametrize(("path", "status"), [("/", 200), ("/api/version", 200), ("/no/such/path", 404)])
async def test_with_no_backend_the_rest_answers_as_usual(lonely_shim: str, path: str, status: int) -> None:
    async with aiohttp.ClientSession() as session, session.get(lonely_shim + path) as resp:
        assert resp.status == status


async def test_with_no_backend_the_api_key_is_still_required() -> None:
    async for url in _shim("--api-key", "sk-test", candidates=[nobody()]):
        async with aiohttp.ClientSession() as session, session.get(url + "/api/tags") as resp:
            assert resp.status == 401


async def test_the_server_serves_what_discovery_found(lmstudio: LMStudioEmulation) -> None:
    async for url in _shim(candidates=[nobody(), at(lmstudio.url)]):
        async with aiohttp.ClientSession() as session, session.get(url + "/api/tags") as resp:
            names = [m["name"] for m in (await resp.json())["models"]]
    assert "qwen2.5-7b-instruct:latest" in names
