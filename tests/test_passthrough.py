"""The /v1 passthrough reaches only /v1 of the configured backend, prefix included, on the allow-list;
hop-by-hop and unsafe headers stay behind both ways; redirects are not forwarded; keys in error
answers are redacted. What goes on the wire is checked with a recorder that keeps the raw path.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gzip
import json
from collections.abc import AsyncIterator

import aiohttp
import pytest

from ollama_shim.server import start
from support.faults import MODEL, Answer, FaultUpstream
from support.shim import shim_settings, url_of

KEY = "sk-backend-5ecret-9f8e7d"


@contextlib.asynccontextmanager
async def shim_with(backend: str, *argv: str, passthrough: tuple[str, ...] | None = None) -> AsyncIterator[str]:
    settings = shim_settings("--backend", backend, "--backend-kind", "generic", *argv)
    if passthrough is not None:
        settings = dataclasses.replace(settings, passthrough=passthrough)
    runner = await start(settings)
    try:
        yield url_of(settings)
    finally:
        await runner.cleanup()


async def raw_request(url: str, target: str, headers: str = "", body: bytes = b"", method: str = "GET") -> tuple[
    int, bytes
]:
    """Send a request line exactly as written (an HTTP client would normalise the path)."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(f"{method} {target} HTTP/1.1\r\nHost: {host}\r\n{headers}Content-Length: {len(body)}\r\n"
                 "Connection: close\r\n\r\n".encode() + body)
    answer = await asyncio.wait_for(reader.read(), 15)
    writer.close()
    await writer.wait_closed()
    head, _, payload = answer.partition(b"\r\n\r\n")
    while head.split()[1].startswith(b"1"):  # an interim answer (100 Continue)
        head, _, payload = payload.partition(b"\r\n\r\n")
    return int(head.split()[1]), payload


# -- dot segments never leave /v1 of the backend, prefix included ---------------------------------------

ESCAPES = [
    "/v1/../../tenant-b/v1/models",
    "/v1/%2e%2e/%2e%2e/tenant-b/v1/models",
    "/v1/%2E%2E/props",
    "/v1/%2E./slots",
    "/v1/.%2e/models/load",
    "/v1/models/x/../../../props",
    "/v1/models/a%2f..%2f..%2f..%2fprops",
    "/v1/models/a%5c..%5c..%5cprops",
    "/v1/%252e%252e/props",
    "/v1/./models",
    "/v1/chat/completions/..",
]


@pytest.mark.parametrize("target", ESCAPES)
async def test_dot_segments_are_refused_before_anything_is_sent(upstream: FaultUpstream, target: str) -> None:
    async with shim_with(f"{upstream.url}/tenant-a/v1", passthrough=("*",)) as url:
        status, payload = await raw_request(url, target)
    assert status == 400
    assert "'.' or '..' segments" in json.loads(payload)["error"]
    assert upstream.raw_calls == []


@pytest.mark.parametrize(
    ("target", "arrives"),
    [
        ("/v1/models/org%2Fname", "/tenant-a/v1/models/org%2Fname"),
        ("/v1/files?after=..%2F..&limit=2", "/tenant-a/v1/files?after=..%2F..&limit=2"),
        ("/v1/models/gpt-4.1", "/tenant-a/v1/models/gpt-4.1"),
        ("/v1/models/%2e%2e%2e", "/tenant-a/v1/models/%2e%2e%2e"),
    ],
)
async def test_the_path_arrives_as_it_was_sent_under_the_prefix(upstream: FaultUpstream, target: str,
                                                                 arrives: str) -> None:
    async with shim_with(f"{upstream.url}/tenant-a/v1", passthrough=("*",)) as url:
        status, _ = await raw_request(url, target)
    assert status == 200
    assert [c.raw_path for c in upstream.raw_calls] == [arrives]


# -- the allow-list ------------------------------------------------------------------------------------------

ALLOW = [
    # method, path, passthrough setting (None: the default), forwarded
    ("GET", "/v1/files", None, False),
    ("POST", "/v1/fine_tuning/jobs", None, False),
    ("GET", "/v1/organization/admin_api_keys", None, False),
    ("DELETE", "/v1/models/ft-abc", None, True),
    ("POST", "/v1/embeddings", None, True),
    ("GET", "/v1/files", ("/v1/files/**",), True),
    ("GET", "/v1/files/file-1/content", ("/v1/files/**",), True),
    ("GET", "/v1/files", ("/v1/**",), True),
    ("GET", "/v1/batches", ("*",), True),
    ("POST", "/v1/embeddings", ("/v1/chat/completions",), False),
]


@pytest.mark.parametrize(("method", "path", "allowed", "forwarded"), ALLOW)
async def test_only_allowed_routes_are_forwarded(
    upstream: FaultUpstream, method: str, path: str, allowed: tuple[str, ...] | None, forwarded: bool
) -> None:
    body = {"input": "hi"} if method == "POST" else None
    async with (
        shim_with(upstream.url, passthrough=allowed) as url,
        aiohttp.ClientSession() as s,
        s.request(method, url + path, json=body) as resp,
    ):
        answer = await resp.json()
    assert [c.raw_path for c in upstream.raw_calls] == ([path] if forwarded else [])
    if not forwarded:
        assert resp.status == 404
        assert answer["error"].startswith(f"{path} is not forwarded to the backend")
        assert "--passthrough" in answer["error"]


# -- headers ---------------------------------------------------------------------------------------------------

REQUEST_HEADERS = [
    # id, extra request headers, a header that must not arrive, a header that must
    ("connection-listed", "Connection: keep-alive, X-Hop\r\nX-Hop: 1\r\nX-Keep: 1\r\n", "X-Hop", "X-Keep"),
    ("proxy-connection", "Proxy-Connection: keep-alive\r\nX-Keep: 1\r\n", "Proxy-Connection", "X-Keep"),
    ("expect", "Expect: 100-continue\r\nX-Keep: 1\r\n", "Expect", "X-Keep"),
    ("decoded-body", "Content-Encoding: gzip\r\nContent-Type: application/json\r\n", "Content-Encoding",
     "Content-Type"),
]


@pytest.mark.parametrize(("headers", "dropped", "kept"), [c[1:] for c in REQUEST_HEADERS],
                         ids=[c[0] for c in REQUEST_HEADERS])
async def test_request_headers_that_stay_behind(upstream: FaultUpstream, headers: str, dropped: str, kept: str) -> None:
    payload = b'{"input": "hi"}'
    body = gzip.compress(payload) if "gzip" in headers else payload
    async with shim_with(upstream.url) as url:
        status, _ = await raw_request(url, "/v1/embeddings", headers, body, method="POST")
    assert status == 200
    [seen] = upstream.raw_calls
    assert dropped.lower() not in {k.lower() for k in seen.headers}
    assert kept.lower() in {k.lower() for k in seen.headers}
    assert seen.body == payload


RESPONSE_HEADERS = [
    ("set-cookie", {"Set-Cookie": "session=abc; Path=/"}, "Set-Cookie"),
    ("cors", {"Access-Control-Allow-Origin": "*"}, "Access-Control-Allow-Origin"),
    ("cors-credentials", {"Access-Control-Allow-Credentials": "true"}, "Access-Control-Allow-Credentials"),
    ("hsts", {"Strict-Transport-Security": "max-age=63072000"}, "Strict-Transport-Security"),
    ("connection-listed", {"Connection": "X-Hop", "X-Hop": "1"}, "X-Hop"),
]


@pytest.mark.parametrize(("headers", "dropped"), [c[1:] for c in RESPONSE_HEADERS],
                         ids=[c[0] for c in RESPONSE_HEADERS])
async def test_response_headers_that_stay_behind(upstream: FaultUpstream, headers: dict[str, str],
                                                 dropped: str) -> None:
    upstream.recorder_answer = Answer(headers={"Content-Type": "application/json", "X-Keep": "1", **headers})
    async with (
        shim_with(upstream.url, passthrough=("*",)) as url,
        aiohttp.ClientSession() as s,
        s.get(url + "/v1/anything") as resp,
    ):
        assert resp.status == 200
        assert dropped not in resp.headers
        assert resp.headers["X-Keep"] == "1"


# -- encodings: the passthrough keeps the client's own -----------------------------------------------------------


async def test_passthrough_forwards_the_clients_accept_encoding_and_raw_bytes(upstream: FaultUpstream) -> None:
    upstream.compress_when_asked = True
    chat = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}
    async with shim_with(upstream.url) as url, aiohttp.ClientSession(auto_decompress=False) as s:
        async with s.post(url + "/v1/chat/completions", json=chat, headers={"Accept-Encoding": "gzip"}) as resp:
            raw = await resp.read()
            assert resp.headers["Content-Encoding"] == "gzip"
        assert json.loads(gzip.decompress(raw))["choices"][0]["message"]["content"].startswith("one two")
        async with s.post(url + "/v1/chat/completions", json=chat, skip_auto_headers=("Accept-Encoding",)) as resp:
            plain = await resp.read()
            assert "Content-Encoding" not in resp.headers
        assert json.loads(plain)["choices"][0]["message"]["content"].startswith("one two")
    assert [c.headers.get("Accept-Encoding") for c in upstream.calls] == ["gzip", None]


# -- redirects and keys ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_a_redirect_is_a_502_and_not_followed(upstream: FaultUpstream, status: int) -> None:
    async with FaultUpstream() as elsewhere:
        upstream.recorder_answer = Answer(status=status, headers={"Location": elsewhere.url + "/v1/files"}, body=b"")
        async with (
            shim_with(upstream.url, passthrough=("*",)) as url,
            aiohttp.ClientSession() as s,
            s.get(url + "/v1/files") as resp,
        ):
            body = await resp.json()
    assert resp.status == 502
    assert f"backend at {upstream.url} answered HTTP {status}" in body["error"]
    assert elsewhere.raw_calls == []


@pytest.mark.parametrize("encoding", ["identity", "gzip"])
async def test_an_error_answer_echoing_the_key_is_redacted(upstream: FaultUpstream, encoding: str) -> None:
    error = json.dumps({"error": {"message": f"Incorrect API key provided: {KEY}."}}).encode()
    headers = {"Content-Type": "application/json"}
    if encoding == "gzip":
        error = gzip.compress(error)
        headers["Content-Encoding"] = "gzip"
    upstream.recorder_answer = Answer(status=401, headers=headers, body=error)
    async with (
        shim_with(upstream.url, "--backend-key", KEY) as url,
        aiohttp.ClientSession() as s,
        s.post(url + "/v1/embeddings", json={"input": "x"}, headers={"Accept-Encoding": "gzip"}) as resp,
    ):
        body = await resp.read()
    assert resp.status == 401
    assert KEY.encode() not in body
    assert json.loads(body)["error"]["message"] == "Incorrect API key provided: ***."
