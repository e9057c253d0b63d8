"""Every backend answer to the shim's own calls is bounded: no redirect followed, no encoding it cannot
read, a size cap on non-streamed, catalog and event-stream answers (memory stays flat against an
endless body), an event stream required for a streamed request, deep JSON refused, keys redacted.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator

import pytest

from ollama_shim.server import start
from ollama_shim.settings import Limits
from support.faults import MODEL, Fault, FaultUpstream
from support.shim import shim_settings, url_of
from test_faults import TIMEOUTS, Outcome, assert_backend_released, assert_still_serving, call

KEY = "sk-backend-5ecret-9f8e7d"
OTHER_KEY = "sk-other-backend-77aa"
SMALL = Limits(response_bytes=256 * 1024, sse_line_bytes=256 * 1024, catalog_bytes=64 * 1024)


@contextlib.asynccontextmanager
async def shim_with(upstream: FaultUpstream, *argv: str, limits: Limits | None = None) -> AsyncIterator[str]:
    settings = shim_settings("--backend", upstream.url, "--backend-kind", "generic", *TIMEOUTS, *argv)
    if limits is not None:
        settings = dataclasses.replace(settings, limits=limits)
    runner = await start(settings)
    try:
        yield url_of(settings)
    finally:
        await runner.cleanup()


def assert_error(got: Outcome, status: int, text: str) -> None:
    assert got.status == status, got
    assert got.content_type.startswith("application/json")
    assert len(got.lines) == 1
    assert set(got.lines[0]) == {"error"}
    assert got.error is not None and text in got.error, got.error


# -- chat, streamed or not --------------------------------------------------------------------------------

CHAT = [
    # id, fault, stream, status, error text (substring)
    ("redirect-stream", Fault("redirect"), True, 502, "redirects are not followed"),
    ("redirect-non-stream", Fault("redirect"), False, 502, "redirects are not followed"),
    ("html-stream", Fault("html"), True, 502, "answered a streamed request with text/html, not an event stream"),
    ("html-no-content-type", Fault("bare_html"), True, 502, "not an event stream (and no Content-Type)"),
    ("deep-json-non-stream", Fault("deep"), False, 502, "JSON nested too deeply"),
    ("endless-non-stream", Fault("endless", size=8 * 1024 * 1024), False, 502,
     f"larger than the limit of {SMALL.response_bytes} bytes"),
    ("endless-sse-line", Fault("endless", size=24 * 1024 * 1024), True, 502,
     f"line longer than {SMALL.sse_line_bytes} bytes"),
]


@pytest.mark.parametrize(("fault", "stream", "status", "error"), [c[1:] for c in CHAT], ids=[c[0] for c in CHAT])
async def test_chat_answer_out_of_bounds_is_an_error(
    upstream: FaultUpstream, fault: Fault, stream: bool, status: int, error: str
) -> None:
    async with FaultUpstream() as elsewhere, shim_with(upstream, limits=SMALL) as url:
        if fault.kind == "redirect":
            fault.message = elsewhere.url + "/v1/chat/completions-moved"
        upstream.script(fault)
        got = await call(url, stream=stream)
        assert_error(got, status, error)
        assert backend_named(got, upstream) or (fault.kind == "endless" and stream)
        assert elsewhere.raw_calls == []
        assert elsewhere.calls == []
        await assert_backend_released(upstream)
        await assert_still_serving(url)


def backend_named(got: Outcome, upstream: FaultUpstream) -> bool:
    return got.error is not None and upstream.url in got.error


async def test_a_stream_without_content_type_is_accepted_when_it_is_sse(upstream: FaultUpstream) -> None:
    upstream.script(Fault("bare_sse"))
    async with shim_with(upstream) as url:
        got = await call(url, stream=True)
    assert got.status == 200
    assert got.lines[-1]["done"] is True
    assert got.text == "one two three "


@pytest.mark.parametrize("stream", [True, False])
async def test_the_shim_asks_for_identity_and_gets_every_word(upstream: FaultUpstream, stream: bool) -> None:
    upstream.compress_when_asked = True
    async with shim_with(upstream) as url:
        got = await call(url, stream=stream)
        tags = await call(url, stream=False, path="/api/tags", method="GET")
    assert got.status == 200, got
    assert got.text == "one two three four five six seven eight" + (" " if stream else "")
    assert tags.status == 200
    assert tags.lines[0]["models"][0]["name"].startswith(MODEL)
    assert {c.headers.get("Accept-Encoding") for c in upstream.calls} == {"identity"}
    assert upstream.listing_headers.get("Accept-Encoding") == "identity"


# -- the catalog ------------------------------------------------------------------------------------------

CATALOG = [
    ("redirect", Fault("redirect", message="http://127.0.0.1:9/v1/models"), "redirects are not followed"),
    ("endless", Fault("endless", size=4 * 1024 * 1024), f"larger than the limit of {SMALL.catalog_bytes} bytes"),
    ("deep", Fault("deep"), "JSON nested too deeply"),
]


@pytest.mark.parametrize(("fault", "error"), [c[1:] for c in CATALOG], ids=[c[0] for c in CATALOG])
async def test_catalog_answer_out_of_bounds_fails_that_backend(
    upstream: FaultUpstream, fault: Fault, error: str
) -> None:
    upstream.models_fault = fault
    async with shim_with(upstream, limits=SMALL) as url:
        got = await call(url, stream=False, path="/api/tags", method="GET")
    assert_error(got, 502, error)
    assert backend_named(got, upstream)


# -- memory stays flat against an endless body -------------------------------------------------------------


def rss_bytes() -> int:
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmRSS:"))
    return int(line.split()[1]) * 1024


@pytest.mark.parametrize("stream", [True, False], ids=["sse-line", "non-stream"])
async def test_an_endless_body_costs_bounded_memory(upstream: FaultUpstream, stream: bool) -> None:
    endless = 160 * 1024 * 1024  # what an unbounded reader would hold
    upstream.default = Fault("endless", size=endless)
    limits = dataclasses.replace(SMALL, response_bytes=Limits().sse_line_bytes)  # the decoder's default cap
    async with shim_with(upstream, limits=limits) as url:
        await assert_still_serving_once(url, upstream)
        before = rss_bytes()
        got = await call(url, stream=stream)
        grown = rss_bytes() - before
    assert grown < 48 * 1024 * 1024, f"RSS grew by {grown // 1024 // 1024} MiB"
    assert got.status == 502
    assert "bytes" in (got.error or "")


async def assert_still_serving_once(url: str, upstream: FaultUpstream) -> None:
    """Warm up (imports, pools, the catalog) with one normal request, so RSS is compared at rest."""
    upstream.script(Fault())
    await assert_still_serving(url)


# -- keys in error messages ----------------------------------------------------------------------------------

REDACT = [
    ("own-key", f"Incorrect API key provided: {KEY}"),
    ("other-backend-key", f"wrong key {OTHER_KEY} for this backend"),
    ("key-twice", f"{KEY} / {KEY}"),
]


@pytest.mark.parametrize("stream", [True, False])
@pytest.mark.parametrize("message", [c[1] for c in REDACT], ids=[c[0] for c in REDACT])
async def test_a_backend_error_echoing_a_key_is_redacted(upstream: FaultUpstream, message: str, stream: bool) -> None:
    upstream.script(Fault("status", status=401, message=message))
    args = ("--backend-key", KEY, "--backend", upstream.url, "--backend-key", OTHER_KEY, "--backend-kind", "generic")
    async with shim_with(upstream, *args) as url:
        got = await call(url, stream=stream)
    assert got.status == 401
    assert got.error is not None
    assert KEY not in got.error
    assert OTHER_KEY not in got.error
    assert "***" in got.error

