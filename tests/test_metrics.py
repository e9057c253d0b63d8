"""``GET /metrics``: the Prometheus series after real requests through the shim to a fault upstream,
read back with prometheus_client's own text parser; the label helpers; the API key in front."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from ollama_shim.errors import (
    BadRequest,
    UpstreamError,
    UpstreamProtocol,
    UpstreamStatus,
    UpstreamTimeout,
    UpstreamUnreachable,
)
from ollama_shim.metrics import MULTIPROC_ENV, Metrics, endpoint_label, upstream_kind
from support.faults import MODEL, Fault, FaultUpstream, refused_url
from support.shim import shim_in_loop

CHAT = "/api/chat"
LISTED = MODEL + ":latest"  # the catalog's name of the fault upstream's model: the label value


def _chat(stream: bool, text: str = "hi", model: str = MODEL) -> dict[str, object]:
    return {"model": model, "messages": [{"role": "user", "content": text}], "stream": stream}


async def _scrape(session: aiohttp.ClientSession, base: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    async with session.get(base + "/metrics") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        text = await resp.text()
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def _value(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    """The sample of ``name`` with exactly ``labels``; 0 if there is none."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def _sum(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    """Summed over every sample of ``name`` whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(v for (n, have), v in samples.items() if n == name and wanted <= have)


async def test_chat_stream_and_error_are_counted(upstream: FaultUpstream) -> None:
    async with shim_in_loop("--backend", upstream.url) as base, aiohttp.ClientSession() as session:
        async with session.post(base + CHAT, json=_chat(False)) as resp:
            assert resp.status == 200
        async with session.post(base + CHAT, json=_chat(True)) as resp:
            assert resp.status == 200
            await resp.read()
        upstream.script(Fault("status", status=500, message="boom"))
        async with session.post(base + CHAT, json=_chat(False)) as resp:
            assert resp.status == 500
        samples = await _scrape(session, base)

    ok = {"endpoint": CHAT, "model": LISTED, "backend": upstream.url}
    assert _value(samples, "ollama_shim_requests_total", **ok, status="200") == 2
    assert _value(samples, "ollama_shim_requests_total", **ok, status="500") == 1
    assert _value(samples, "ollama_shim_input_tokens_total", model=LISTED, backend=upstream.url) == 10  # 5 each
    assert _value(samples, "ollama_shim_output_tokens_total", model=LISTED, backend=upstream.url) == 16  # 8 words each
    assert _value(samples, "ollama_shim_upstream_errors_total", kind="UpstreamStatus", backend=upstream.url) == 1
    assert _value(samples, "ollama_shim_request_duration_seconds_count", endpoint=CHAT) == 3
    assert _value(samples, "ollama_shim_backend_up", backend=upstream.url) == 1
    assert _value(samples, "ollama_shim_streams_in_flight") == 0


async def test_time_to_first_token_is_observed_for_a_stream(upstream: FaultUpstream) -> None:
    upstream.default = Fault(delay=0.05)
    async with shim_in_loop("--backend", upstream.url) as base, aiohttp.ClientSession() as session:
        async with session.post(base + CHAT, json=_chat(True)) as resp:
            await resp.read()
        samples = await _scrape(session, base)
    ttft = _value(samples, "ollama_shim_time_to_first_token_seconds_sum", endpoint=CHAT)
    total = _value(samples, "ollama_shim_request_duration_seconds_sum", endpoint=CHAT)
    assert _value(samples, "ollama_shim_time_to_first_token_seconds_count", endpoint=CHAT) == 1
    assert 0 < ttft < total  # the first word came before the other seven (50 ms apart)


async def test_a_running_stream_is_in_flight(upstream: FaultUpstream) -> None:
    upstream.default = Fault(delay=0.3)
    async with shim_in_loop("--backend", upstream.url) as base, aiohttp.ClientSession() as session:
        async with session.post(base + CHAT, json=_chat(True)) as resp:
            await resp.content.readline()  # the stream has begun
            during = await _scrape(session, base)
            await resp.read()
        after = await _scrape(session, base)
    assert _value(during, "ollama_shim_streams_in_flight") == 1
    assert _value(after, "ollama_shim_streams_in_flight") == 0


async def test_a_stream_that_breaks_counts_its_upstream_error(upstream: FaultUpstream) -> None:
    upstream.script(Fault("garbage", after=2))
    async with shim_in_loop("--backend", upstream.url) as base, aiohttp.ClientSession() as session:
        async with session.post(base + CHAT, json=_chat(True)) as resp:
            lines = [json.loads(line) for line in (await resp.read()).splitlines()]
        samples = await _scrape(session, base)
    assert "error" in lines[-1]
    assert _value(samples, "ollama_shim_upstream_errors_total", kind="UpstreamProtocol", backend=upstream.url) == 1


async def test_first_byte_timeout_is_counted_by_kind(upstream: FaultUpstream) -> None:
    upstream.script(Fault("hang_headers"))
    async with shim_in_loop("--backend", upstream.url, "--first-byte-timeout", "0.3") as base, \
            aiohttp.ClientSession() as session:
        async with session.post(base + CHAT, json=_chat(False)) as resp:
            assert resp.status == 504
        samples = await _scrape(session, base)
    assert _value(samples, "ollama_shim_upstream_errors_total", kind="UpstreamTimeout", backend=upstream.url) == 1


async def test_a_backend_that_refuses_is_down_and_unreachable() -> None:
    url = refused_url()
    async with shim_in_loop("--backend", url) as base, aiohttp.ClientSession() as session:
        async with session.get(base + "/api/tags") as resp:
            assert resp.status == 502
        samples = await _scrape(session, base)
    assert _value(samples, "ollama_shim_backend_up", backend=url) == 0
    assert _sum(samples, "ollama_shim_upstream_errors_total", kind="UpstreamUnreachable") == 1
    assert _value(samples, "ollama_shim_requests_total", endpoint="/api/tags", model="", backend="",
                  status="502") == 1


async def test_unknown_paths_do_not_make_new_series(upstream: FaultUpstream) -> None:
    async with shim_in_loop("--backend", upstream.url) as base, aiohttp.ClientSession() as session:
        for path in ("/nope/1", "/nope/2", "/v1/made-up/a", "/v1/made-up/b"):
            async with session.get(base + path) as resp:
                assert resp.status == 404
        samples = await _scrape(session, base)
    endpoints = {dict(labels)["endpoint"] for (name, labels) in samples if name == "ollama_shim_requests_total"}
    assert endpoints == {"unmatched", "/v1/other"}


@pytest.mark.parametrize(("pattern", "path", "label"), [
    (None, "/whatever", "unmatched"),
    ("/api/chat", "/api/chat", "/api/chat"),
    ("/api/blobs/{digest}", "/api/blobs/sha256:ab", "/api/blobs/{digest}"),
    ("/v1/{tail}", "/v1/chat/completions", "/v1/chat/completions"),
    ("/v1/{tail}", "/v1/models/some/model", "/v1/models/{model}"),
    ("/v1/{tail}", "/v1/anything-else", "/v1/other"),
])
def test_endpoint_label(pattern: str | None, path: str, label: str) -> None:
    assert endpoint_label(pattern, path) == label


@pytest.mark.parametrize(("exc", "kind"), [
    (UpstreamStatus("x", 500), "UpstreamStatus"),
    (UpstreamTimeout("x"), "UpstreamTimeout"),
    (UpstreamUnreachable("x"), "UpstreamUnreachable"),
    (UpstreamProtocol("x"), "UpstreamProtocol"),
    (UpstreamError("x"), "UpstreamError"),
    (BadRequest("x"), None),
])
def test_upstream_kind(exc: Exception, kind: str | None) -> None:
    assert upstream_kind(exc) == kind


@pytest.mark.parametrize("path", ["/metrics", "/status", "/status.json", "/status.js"])
async def test_observability_needs_the_api_key(upstream: FaultUpstream, path: str) -> None:
    async with shim_in_loop("--backend", upstream.url, "--api-key", "k3y") as base, \
            aiohttp.ClientSession() as session:
        async with session.get(base + path) as resp:
            assert resp.status == 401
        async with session.get(base + path, headers={"Authorization": "Bearer k3y"}) as resp:
            assert resp.status == 200


async def test_status_json_shows_backends_models_and_recent_errors(upstream: FaultUpstream) -> None:
    async with shim_in_loop("--backend", upstream.url) as base, aiohttp.ClientSession() as session:
        async with session.post(base + CHAT, json=_chat(False, text="PROMPT-TEXT-42")) as resp:
            assert resp.status == 200
        async with session.post(base + CHAT, json=_chat(False, model="no-such-model")) as resp:
            assert resp.status == 404
        async with session.get(base + "/status.json") as resp:
            summary = await resp.json()
    assert [(b["root"], b["health"]) for b in summary["backends"]] == [(upstream.url, "up")]
    assert [m["name"] for m in summary["backends"][0]["models"]] == [LISTED]
    assert summary["tokens_out_total"] == 8
    assert summary["requests_in_flight"] == 0  # the poll itself is not counted
    assert [(e["status"], e["kind"]) for e in summary["recent_errors"]] == [(404, "ModelNotFound")]
    assert "PROMPT-TEXT-42" not in json.dumps(summary)


async def test_recent_errors_keep_the_last_twenty(upstream: FaultUpstream) -> None:
    async with shim_in_loop("--backend", upstream.url) as base, aiohttp.ClientSession() as session:
        for i in range(25):
            async with session.post(base + CHAT, json=_chat(False, model=f"missing-{i}")) as resp:
                assert resp.status == 404
        async with session.get(base + "/status.json") as resp:
            errors = (await resp.json())["recent_errors"]
    assert len(errors) == 20
    assert "missing-24" in errors[0]["message"]  # newest first


async def test_status_page_and_script_are_served(upstream: FaultUpstream) -> None:
    async with shim_in_loop("--backend", upstream.url) as base, aiohttp.ClientSession() as session:
        async with session.get(base + "/status") as resp:
            html = await resp.text()
            page_type, csp = resp.headers["Content-Type"], resp.headers["Content-Security-Policy"]
        async with session.get(base + "/status.js") as resp:
            script_type = resp.headers["Content-Type"]
        async with session.get(base + "/") as resp:
            root = await resp.text()
    assert page_type.startswith("text/html")
    assert '<script src="/status.js">' in html
    assert "script-src 'self'" in csp
    assert script_type.startswith("text/javascript")
    assert root == "Ollama is running"


async def test_metrics_scrape_does_not_wait_for_backends() -> None:
    """A scrape reads what is known; it asks no backend (none was asked yet: no backend_up series)."""
    url = refused_url()
    async with shim_in_loop("--backend", url) as base, aiohttp.ClientSession() as session:
        samples = await asyncio.wait_for(_scrape(session, base), 5)
    assert ("ollama_shim_backend_up", frozenset({("backend", url)})) not in samples


def test_a_scrape_leaves_out_a_worker_file_being_created(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another worker's file is empty for an instant after it is created: the scrape still answers."""
    monkeypatch.setenv(MULTIPROC_ENV, str(tmp_path))
    try:
        metrics = Metrics(str(tmp_path))
        metrics.requests.labels("/api/chat", "m", "b", "200").inc()
        (tmp_path / "counter_99999.db").write_bytes(b"")
        text = metrics.exposition().decode()
    finally:
        Metrics()  # in-process values again for the tests that follow
    assert 'ollama_shim_requests_total{backend="b",endpoint="/api/chat",model="m",status="200"} 1.0' in text
