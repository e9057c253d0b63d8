"""Safe defaults: loopback listening, the optional inbound API key, Ollama's CORS rules, backend keys
kept out of logs and answers, and a backend URL that only the configuration can choose.
"""

from __future__ import annotations

import asyncio
import logging

import aiohttp
import ollama
import pytest

from ollama_shim import server
from ollama_shim.routes.guard import Guard, OriginPolicy, host_allowed
from ollama_shim.settings import Settings, load_settings
from support.clients import async_client
from support.faults import MODEL, Fault, FaultUpstream, refused_url
from support.shim import shim_in_loop

HI = [{"role": "user", "content": "hi"}]
KEY = "inbound-5ecret-key"
BACKEND_KEY = "sk-backend-5ecret-9f8e7d"


def backend_args(upstream: FaultUpstream) -> tuple[str, ...]:
    return ("--backend", upstream.url, "--backend-kind", "generic")


# -- where it listens ----------------------------------------------------------------------------------


def test_default_listen_address_is_loopback() -> None:
    assert load_settings([], {}).host == "127.0.0.1"
    assert load_settings([], {"OLLAMA_HOST": "0.0.0.0:11434"}).host == "0.0.0.0"  # only when told


@pytest.mark.parametrize(
    ("host", "key", "warns"),
    [("127.0.0.1", None, False), ("::1", None, False), ("localhost", None, False),
     ("0.0.0.0", None, True), ("192.168.1.20", None, True), ("::", None, True), ("0.0.0.0", "k", False)],
)
def test_public_address_without_key_is_warned_about(host: str, key: str | None, warns: bool) -> None:
    warning = server.exposure_warning(Settings(host=host, api_key=key))
    assert (warning is not None) is warns
    if warns:
        assert host in warning
        assert "--api-key" in warning


async def test_start_logs_the_exposure_warning(
    upstream: FaultUpstream, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(server, "is_loopback", lambda host: False)  # pretend; still binds 127.0.0.1
    with caplog.at_level(logging.WARNING, logger="ollama_shim"):
        async with shim_in_loop(*backend_args(upstream)):
            pass
    assert "with no --api-key: anyone who can reach it" in caplog.text


# -- inbound API key -----------------------------------------------------------------------------------


async def _status(session: aiohttp.ClientSession, method: str, url: str, **kw: object) -> tuple[int, object]:
    async with session.request(method, url, **kw) as resp:
        body = await resp.json() if resp.content_type == "application/json" else await resp.text()
        return resp.status, body


async def test_api_key_is_required_when_configured(upstream: FaultUpstream) -> None:
    chat = {"model": MODEL, "messages": HI, "stream": False}
    async with shim_in_loop(*backend_args(upstream), "--api-key", KEY) as url, aiohttp.ClientSession() as s:
        refused = ({}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}, {"Authorization": f"Basic {KEY}"})
        for headers in refused:
            status, body = await _status(s, "POST", url + "/api/chat", json=chat, headers=headers)
            assert status == 401 and body["error"].startswith("unauthorized"), headers
            assert (await _status(s, "GET", url + "/api/tags", headers=headers))[0] == 401
            assert (await _status(s, "GET", url + "/v1/models", headers=headers))[0] == 401
        assert upstream.calls == []
        good = {"Authorization": f"Bearer {KEY}"}
        status, body = await _status(s, "POST", url + "/api/chat", json=chat, headers=good)
        assert status == 200
        assert body["done"] is True
        # health checks stay open: GET and HEAD / only
        assert await _status(s, "GET", url + "/") == (200, "Ollama is running")
        assert (await _status(s, "HEAD", url + "/"))[0] == 200
        assert (await _status(s, "GET", url + "/api/version"))[0] == 401


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"x-api-key": KEY}, 200),  # the Anthropic SDKs and Claude Code send the key so
        ({"X-Api-Key": f" {KEY} "}, 200),
        ({"x-api-key": "wrong"}, 401),
        ({"x-api-key": f"Bearer {KEY}"}, 401),
        ({"x-api-key": "", "Authorization": "Bearer wrong"}, 401),
        ({"x-api-key": "wrong", "Authorization": f"Bearer {KEY}"}, 200),
    ],
)
async def test_the_key_may_come_as_x_api_key(upstream: FaultUpstream, headers: dict[str, str], status: int) -> None:
    chat = {"model": MODEL, "messages": HI, "stream": False}
    async with shim_in_loop(*backend_args(upstream), "--api-key", KEY) as url, aiohttp.ClientSession() as s:
        got, _ = await _status(s, "POST", url + "/api/chat", json=chat, headers=headers)
    assert got == status


async def test_x_api_key_never_reaches_the_backend(upstream: FaultUpstream) -> None:
    async with shim_in_loop(*backend_args(upstream), "--api-key", KEY) as url, aiohttp.ClientSession() as s:
        await _status(s, "POST", url + "/v1/chat/completions", json={"model": MODEL, "messages": HI},
                      headers={"x-api-key": KEY})
    assert len(upstream.calls) == 1
    assert KEY not in str(upstream.calls[0].headers)


async def test_preflight_allows_the_anthropic_headers(upstream: FaultUpstream) -> None:
    async with shim_in_loop(*backend_args(upstream), "--api-key", KEY) as url, aiohttp.ClientSession() as s:
        headers = {"Origin": "http://localhost:3000", "Access-Control-Request-Method": "POST",
                   "Access-Control-Request-Headers": "x-api-key,anthropic-version"}
        async with s.options(url + "/v1/messages", headers=headers) as resp:
            allowed = resp.headers["Access-Control-Allow-Headers"].lower().split(",")
    assert "x-api-key" in allowed
    assert "anthropic-version" in allowed


async def test_official_client_with_the_key(upstream: FaultUpstream) -> None:
    async with shim_in_loop(*backend_args(upstream), "--api-key", KEY) as url:
        async with async_client(url) as keyless:
            with pytest.raises(ollama.ResponseError) as refused:
                await keyless.list()
        assert refused.value.status_code == 401
        async with async_client(url, headers={"Authorization": f"Bearer {KEY}"}) as client:
            answer = await client.chat(model=MODEL, messages=HI)
        assert answer.message.content == "one two three four five six seven eight"


async def test_without_a_key_nothing_is_asked(upstream: FaultUpstream) -> None:
    async with shim_in_loop(*backend_args(upstream)) as url, async_client(url) as client:
        assert (await client.list()).models


async def test_inbound_key_goes_nowhere_and_backend_key_goes_only_upstream(upstream: FaultUpstream) -> None:
    args = ("--backend", upstream.url, "--backend-kind", "generic", "--backend-key", BACKEND_KEY)
    async with shim_in_loop(*args, "--api-key", KEY) as url, aiohttp.ClientSession() as s:
        auth = {"Authorization": f"Bearer {KEY}"}
        await _status(s, "POST", url + "/api/chat", json={"model": MODEL, "messages": HI}, headers=auth)
        await _status(s, "POST", url + "/v1/chat/completions", json={"model": MODEL, "messages": HI}, headers=auth)
    assert len(upstream.calls) == 2
    for sent in [c.headers for c in upstream.calls] + [upstream.listing_headers]:
        assert sent["Authorization"] == f"Bearer {BACKEND_KEY}"
        assert KEY not in str(sent)


# -- CORS ------------------------------------------------------------------------------------------------

ALLOWED_BY_DEFAULT = [
    "http://localhost", "https://localhost", "http://localhost:3000", "http://127.0.0.1", "https://127.0.0.1:8443",
    "http://0.0.0.0:8080", "app://obsidian.md", "file://", "tauri://localhost", "vscode-webview://1a2b3c",
    "vscode-file://vscode-app", "chrome-extension://abcdef", "moz-extension://1234",
]
REFUSED_BY_DEFAULT = [
    "https://evil.example", "http://localhost.evil.example", "http://127.0.0.1.nip.io", "null", "http://192.168.1.5",
]


@pytest.mark.parametrize("origin", ALLOWED_BY_DEFAULT)
def test_default_origins_allowed(origin: str) -> None:
    assert OriginPolicy().allows(origin)


@pytest.mark.parametrize("origin", REFUSED_BY_DEFAULT)
def test_other_origins_refused_by_default(origin: str) -> None:
    assert not OriginPolicy().allows(origin)


def test_configured_origins_and_wildcards() -> None:
    policy = OriginPolicy(load_settings([], {"OLLAMA_ORIGINS": "https://app.example,https://*.corp.example"}).origins)
    assert policy.allows("https://app.example")
    assert policy.allows("https://chat.corp.example")
    assert not policy.allows("https://corp.example.evil")
    assert not policy.allows("https://other.example")
    assert not policy.allow_all
    assert OriginPolicy(load_settings(["--origins", "*"], {}).origins).allow_all


async def test_cors_on_the_wire(upstream: FaultUpstream) -> None:
    good, bad = "http://localhost:5173", "https://evil.example"
    chat = {"model": MODEL, "messages": HI}
    async with shim_in_loop(*backend_args(upstream), "--api-key", KEY) as url, aiohttp.ClientSession() as s:
        preflight = {"Origin": good, "Access-Control-Request-Method": "POST",
                     "Access-Control-Request-Headers": "authorization,content-type"}
        async with s.options(url + "/api/chat", headers=preflight) as resp:  # no key on a preflight
            assert resp.status == 204
            assert resp.headers["Access-Control-Allow-Origin"] == good
            assert "POST" in resp.headers["Access-Control-Allow-Methods"]
            assert {"authorization", "content-type"} <= set(resp.headers["Access-Control-Allow-Headers"].lower()
                                                             .split(","))
        async with s.options(url + "/api/chat", headers={**preflight, "Origin": bad}) as resp:
            assert resp.status == 403
            assert "not allowed" in (await resp.json())["error"]
        auth = {"Authorization": f"Bearer {KEY}"}
        async with s.post(url + "/api/chat", json=chat, headers={**auth, "Origin": good}) as resp:  # a stream
            assert resp.status == 200
            assert resp.headers["Access-Control-Allow-Origin"] == good
            assert "Origin" in resp.headers.getall("Vary")
            await resp.read()
        async with s.get(url + "/api/nope", headers={**auth, "Origin": good}) as resp:  # an error
            assert resp.status == 404
            assert resp.headers["Access-Control-Allow-Origin"] == good
        async with s.post(url + "/api/chat", json=chat, headers={**auth, "Origin": bad}) as resp:
            assert resp.status == 403
            assert "Access-Control-Allow-Origin" not in resp.headers
        async with s.get(url + "/api/tags", headers=auth) as resp:  # not a browser: no CORS headers
            assert resp.status == 200
            assert "Access-Control-Allow-Origin" not in resp.headers
        same = {**auth, "Host": "shim.internal:8000", "Origin": "http://shim.internal:8000"}
        async with s.get(url + "/api/tags", headers=same) as resp:  # same origin is not cross-origin
            assert resp.status == 200
    assert len(upstream.calls) == 1


async def test_star_allows_every_origin_only_when_configured(upstream: FaultUpstream) -> None:
    anywhere = {"Origin": "https://anything.example"}
    async with (
        shim_in_loop(*backend_args(upstream), "--origins", "*") as url,
        aiohttp.ClientSession() as s,
        s.get(url + "/api/version", headers=anywhere) as resp,
    ):
        assert resp.status == 200
        assert resp.headers["Access-Control-Allow-Origin"] == "*"


# -- secrets never logged ----------------------------------------------------------------------------------


async def test_backend_key_never_in_logs_or_answers(upstream: FaultUpstream, caplog: pytest.LogCaptureFixture) -> None:
    dead = refused_url()
    args = ("--backend", upstream.url, "--backend-key", BACKEND_KEY, "--backend-kind", "generic",
            "--backend", dead, "--backend-key", BACKEND_KEY + "-2", "--backend-kind", "generic",
            "--api-key", KEY, "--log-level", "debug", "--first-byte-timeout", "1")
    upstream.script(Fault("status", status=401, message="Invalid API Key"), Fault("error_frame", after=2),
                    Fault("hang_headers"), Fault("status", status=500, message="boom"))
    answers: list[str] = []
    with caplog.at_level(logging.DEBUG):
        async with shim_in_loop(*args) as url, aiohttp.ClientSession() as s:
            auth = {"Authorization": f"Bearer {KEY}"}
            chat = {"model": MODEL, "messages": HI}
            for method, path, body in [
                ("GET", "/api/tags", None), ("POST", "/api/chat", chat), ("POST", "/api/chat", chat),
                ("POST", "/api/chat", chat), ("POST", "/v1/chat/completions", chat), ("GET", "/v1/models", None),
                ("POST", "/api/chat", {**chat, "model": "missing"}), ("POST", "/api/show", {"model": MODEL}),
            ]:
                async with s.request(method, url + path, json=body, headers=auth) as resp:
                    answers.append(await resp.text())
            async with s.get(url + "/api/tags", headers={"Authorization": "Bearer not-" + KEY}) as resp:
                answers.append(await resp.text())
        settings = load_settings(list(args), {})
    logged = caplog.text + repr(settings) + str(settings)
    assert "Invalid API Key" in "".join(answers)
    assert "cannot reach backend" in logged  # failures happened
    for secret in (BACKEND_KEY, KEY):
        assert secret not in logged
        assert all(secret not in answer for answer in answers)


# -- the backend URL comes from the configuration only -------------------------------------------------------


async def test_no_request_can_choose_the_backend(upstream: FaultUpstream) -> None:
    async with FaultUpstream() as decoy, shim_in_loop(*backend_args(upstream)) as url, aiohttp.ClientSession() as s:
        decoy_host = decoy.url.removeprefix("http://")
        steer = {"Host": decoy_host, "X-Forwarded-Host": decoy_host, "Forwarded": f"host={decoy_host}",
                 "X-Backend": decoy.url, "Origin": "http://localhost"}
        chat = {"model": MODEL, "messages": HI, "stream": False, "base_url": decoy.url, "api_base": decoy.url}
        attempts = [
            ("POST", "/api/chat", chat),
            ("POST", "/api/generate", {"model": f"{decoy.url}/v1/{MODEL}", "prompt": "hi"}),
            ("POST", "/api/chat", {**chat, "model": f"{decoy_host}/{MODEL}"}),
            ("POST", "/v1/chat/completions", {**chat, "model": MODEL}),
            ("GET", f"/v1/models?base_url={decoy.url}", None),
            ("GET", f"/v1//{decoy_host}/v1/models", None),
            ("POST", f"/v1/{decoy.url}/v1/chat/completions", chat),
        ]
        for method, path, body in attempts:
            async with s.request(method, url + path, json=body, headers=steer) as resp:
                await resp.read()
        # An absolute-form request line names the decoy outright.
        reader, writer = await asyncio.open_connection("127.0.0.1", int(url.rsplit(":", 1)[1]))
        payload = b'{"model": "fault-model", "messages": [{"role": "user", "content": "hi"}], "stream": false}'
        writer.write(f"POST {decoy.url}/api/chat HTTP/1.1\r\nHost: {decoy_host}\r\nContent-Length: {len(payload)}\r\n"
                     f"Connection: close\r\n\r\n".encode() + payload)
        status_line = await reader.readline()
        await reader.read()
        writer.close()
        await writer.wait_closed()
    assert status_line.startswith(b"HTTP/1.1 200")
    assert decoy.calls == []
    assert decoy.model_listings == 0
    assert len(upstream.calls) >= 3


# ---------------------------------------------------------------------------
# Host header (DNS rebinding)
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("localhost:11434", True), ("127.0.0.1:11434", True), ("127.0.0.2", True), ("[::1]:11434", True),
        ("0.0.0.0:11434", True), ("192.168.1.20:11434", True), ("10.0.0.5", True), ("myhost", True),
        ("MyHost:11434", True), ("box.local", True), ("svc.internal:80", True), ("app.localhost", True), ("", True),
        ("evil.example:11434", False), ("evil.example", False), ("8.8.8.8:11434", False),
        ("localhost.evil.example", False), ("[2606:4700::1111]:80", False),
    ],
)
def test_host_rule(host: str, allowed: bool) -> None:
    assert host_allowed(host, "myhost") is allowed


async def test_rebound_host_is_refused_on_loopback(upstream: FaultUpstream) -> None:
    async with shim_in_loop("--backend", upstream.url) as url, aiohttp.ClientSession() as http:
        async with http.get(url + "/api/version", headers={"Host": "evil.example:11434"}) as resp:
            assert resp.status == 403
            assert "not allowed" in (await resp.json())["error"]
        async with http.get(url + "/api/version", headers={"Host": "localhost:11434"}) as resp:
            assert resp.status == 200


def test_host_rule_is_off_when_listening_beyond_loopback() -> None:
    assert Guard(load_settings(["--listen", "0.0.0.0:11434"], {})).check_host is False
    assert Guard(load_settings(["--listen", "127.0.0.1:11434"], {})).check_host is True


async def _raw_status(url: str, authorization: bytes) -> tuple[int, bytes]:
    """One request written byte for byte, so the header can carry what no client library sends."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(b"GET /api/tags HTTP/1.1\r\nHost: %s\r\nAuthorization: %s\r\nConnection: close\r\n\r\n"
                     % (host.encode(), authorization))
        await writer.drain()
        async with asyncio.timeout(10):
            answer = await reader.read()
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


@pytest.mark.parametrize(
    ("key", "authorization", "status"),
    [
        (KEY, b"Bearer \xff\xfe", 401),  # not UTF-8
        (KEY, b"Bearer " + KEY.encode() + b"\xff", 401),
        (KEY, b"Bearer \xc3\xa9t\xc3\xa9", 401),  # UTF-8, not ASCII
        (KEY, b"\xff\xfe " + KEY.encode(), 401),
        ("cl\u00e9-secr\u00e8te", "Bearer cl\u00e9-secr\u00e8te".encode(), 200),  # a non-ASCII key still works
        ("cl\u00e9-secr\u00e8te", b"Bearer cl\xe9-secr\xe8te", 401),  # the same text in Latin-1 is not the key
        (KEY, b"Bearer " + KEY.encode(), 200),
    ],
    ids=["not-utf8", "key-then-stray-byte", "utf8-non-ascii", "stray-bytes-in-scheme", "non-ascii-key",
         "non-ascii-key-in-latin1", "the-key"],
)
async def test_authorization_bytes_never_break_the_check(
    upstream: FaultUpstream, key: str, authorization: bytes, status: int
) -> None:
    async with shim_in_loop(*backend_args(upstream), "--api-key", key) as url:
        got, body = await _raw_status(url, authorization)
    assert got == status, body
    if status == 401:
        assert body.startswith(b'{"error":"unauthorized')
