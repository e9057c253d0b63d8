"""keep_alive and num_ctx against a real llama.cpp router: the shim unloads an idle model when its
keep_alive runs out, ``/api/ps`` shows when, and a request in flight keeps the model loaded; a
num_ctx beyond the router's context goes through and the real context is shown."""

from __future__ import annotations

import datetime
import time
from collections.abc import Iterator

import ollama
import pytest

from support.clients import sync_client
from support.llama import LlamaServer
from support.shim import ShimThread

SMOL = "SmolLM2-135M-Instruct.Q4_1:latest"
UNLOAD_BOUND = 30.0  # seconds: a router's unload is quick, but the machine is shared


@pytest.fixture(scope="module")
def api(llama_router: LlamaServer) -> Iterator[ollama.Client]:
    with ShimThread("--backend", llama_router.url, "--catalog-ttl", "0") as url, \
            sync_client(url, timeout=300) as client:
        yield client


def listed(api: ollama.Client) -> ollama.ProcessResponse.Model | None:
    return next((m for m in api.ps().models if m.model == SMOL), None)


def unloaded_after(api: ollama.Client, began: float) -> float:
    """Seconds from ``began`` until ``/api/ps`` no longer lists the model (polled, bounded)."""
    while listed(api) is not None:
        assert time.monotonic() - began < UNLOAD_BOUND, "the model was not unloaded"
        time.sleep(0.1)
    return time.monotonic() - began


def test_an_idle_model_is_unloaded_when_its_keep_alive_runs_out(api: ollama.Client) -> None:
    api.generate(model=SMOL, prompt="", keep_alive="2s")
    began = time.monotonic()
    entry = listed(api)
    assert entry is not None
    assert entry.expires_at is not None
    left = (entry.expires_at - datetime.datetime.now(datetime.UTC)).total_seconds()
    assert 0 < left <= 2.5  # the real expiry, not a date years ahead
    assert unloaded_after(api, began) >= 1.5


def test_a_request_in_flight_keeps_the_model_loaded(api: ollama.Client) -> None:
    api.generate(model=SMOL, prompt="", keep_alive="1s")  # loaded, with a short keep_alive
    # Counting goes on to num_predict (about 20 s here): the stream is in flight for all of the watch.
    stream = api.generate(model=SMOL, prompt="1, 2, 3, 4, 5, 6, 7, 8, 9, 10,", raw=True, keep_alive="1s",
                          stream=True, options={"temperature": 0, "num_predict": 1500})
    seen_loaded: list[bool] = []
    watched = None
    for part in stream:
        assert not part.done, "the answer ended too soon to tell"
        watched = watched or time.monotonic()
        if time.monotonic() - watched > 3.0:  # three keep_alives in flight
            break
        seen_loaded.append(listed(api) is not None)
    stream.close()  # the client leaves: the request ends, and with it the model's reprieve
    assert seen_loaded
    assert all(seen_loaded)
    assert unloaded_after(api, time.monotonic()) <= UNLOAD_BOUND


def test_a_larger_num_ctx_goes_through_and_the_real_context_is_shown(api: ollama.Client) -> None:
    answer = api.chat(model=SMOL, messages=[{"role": "user", "content": "Hi"}], keep_alive="2s",
                      options={"num_ctx": 8192, "num_predict": 4, "temperature": 0})
    assert answer.done
    entry = listed(api)
    assert entry is not None
    assert entry.context_length == 2048  # the router's -c, not the num_ctx asked
    shown = api.show(SMOL)
    assert "num_ctx                        2048" in (shown.parameters or "")
    assert (shown.modelinfo or {}).get("llama.context_length") == 2048
