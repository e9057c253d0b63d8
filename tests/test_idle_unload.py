"""The keep_alive timers the shim keeps for a llama.cpp router (``idle_unload``), against a scripted
router: an idle model is unloaded when its keep_alive runs out, never while a request is in flight,
a new request resets its timer, forever means never, and other kinds are only shown an expiry.
The same against a real router: ``test_keep_alive_llama``; the setting: ``test_settings``-style rows here."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from ollama_shim.idle_unload import IdleUnloader
from ollama_shim.registry import Resolved
from ollama_shim.settings import SettingsError, load_settings
from support.scripted import ScriptedBackend, models, services_over

SHORT = 0.2  # seconds: a keep_alive that runs out during a test
WAIT = 5.0  # seconds: the bound on a poll for something that must happen


@pytest_asyncio.fixture
async def router() -> AsyncIterator[ScriptedBackend]:
    async with ScriptedBackend() as backend:
        backend.answer("GET", "/v1/models", {"data": [{"id": "smol", "status": {"value": "loaded"}}]})
        backend.answer("POST", "/models/unload", {"success": True})
        yield backend


@pytest_asyncio.fixture
async def kept(router: ScriptedBackend) -> AsyncIterator[tuple[IdleUnloader, Resolved]]:
    async with services_over((router, "llamacpp")) as (registry, loader):
        unloader = IdleUnloader(loader, default_keep_alive=SHORT)
        yield unloader, await registry.resolve("smol")
        await unloader.close()


def unloads(router: ScriptedBackend) -> int:
    return router.count("POST", "/models/unload")


async def unloaded_within(router: ScriptedBackend, seconds: float = WAIT) -> float:
    """Seconds until the first unload call; fails past ``seconds``."""
    began = time.monotonic()
    while unloads(router) == 0:
        assert time.monotonic() - began < seconds, "the model was not unloaded"
        await asyncio.sleep(0.02)
    return time.monotonic() - began


async def stays_loaded(router: ScriptedBackend, seconds: float) -> None:
    """No unload call during ``seconds`` (polled)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert unloads(router) == 0, "the model was unloaded"
        await asyncio.sleep(0.02)


async def test_an_idle_model_is_unloaded_when_its_keep_alive_runs_out(kept, router) -> None:
    unloader, smol = kept
    unloader.loaded(smol, 0.5)
    assert await unloaded_within(router) >= 0.4
    assert router.posts()[-1] == ("/models/unload", {"model": "smol"})
    assert unloader.expires_ns(smol) is None  # forgotten once unloaded


async def test_the_default_applies_when_a_request_names_none(kept, router) -> None:
    unloader, smol = kept
    async with unloader.using(smol, None):
        pass
    await unloaded_within(router)


async def test_a_request_in_flight_keeps_the_model_loaded(kept, router) -> None:
    unloader, smol = kept
    async with unloader.using(smol, SHORT):
        await stays_loaded(router, 3 * SHORT)
    await unloaded_within(router)


async def test_the_timer_starts_when_the_last_request_in_flight_ends(kept, router) -> None:
    unloader, smol = kept
    first = unloader.using(smol, SHORT)
    await first.__aenter__()
    async with unloader.using(smol, SHORT):
        await first.__aexit__(None, None, None)  # one still in flight
        await stays_loaded(router, 3 * SHORT)
    await unloaded_within(router)


async def test_a_new_request_resets_the_timer(kept, router) -> None:
    unloader, smol = kept
    unloader.loaded(smol, SHORT)
    async with unloader.using(smol, 3 * SHORT):  # before the first timer runs out; a longer keep_alive
        pass
    await stays_loaded(router, 2 * SHORT)
    await unloaded_within(router)


async def test_forever_is_never(kept, router) -> None:
    unloader, smol = kept
    async with unloader.using(smol, math.inf):
        pass
    assert unloader.expires_ns(smol) is None
    await stays_loaded(router, 3 * SHORT)


async def test_expires_at_is_the_end_of_the_keep_alive(kept) -> None:
    unloader, smol = kept
    unloader.loaded(smol, 60)
    expires = unloader.expires_ns(smol)
    assert expires is not None
    assert abs(expires - (time.time_ns() + 60 * 10**9)) < 2 * 10**9
    async with unloader.using(smol, 120):  # in use: its keep_alive from now
        assert abs(unloader.expires_ns(smol) - (time.time_ns() + 120 * 10**9)) < 2 * 10**9  # type: ignore[operator]


async def test_timers_are_cancelled_at_clean_up(kept, router) -> None:
    unloader, smol = kept
    unloader.loaded(smol, SHORT)
    await unloader.close()
    await stays_loaded(router, 3 * SHORT)


def _expiring() -> list[asyncio.Task[object]]:
    return [t for t in asyncio.all_tasks() if "_expire" in t.get_coro().__qualname__]  # type: ignore[union-attr]


async def test_clean_up_waits_for_every_timer_even_those_already_cancelled(kept, router) -> None:
    """A timer cancelled by a new request or by ``forget`` is not left pending for the loop to destroy
    ("Task was destroyed but it is pending")."""
    unloader, smol = kept
    unloader.loaded(smol, 60)
    async with unloader.using(smol, 60):  # cancels the first timer ...
        pass  # ... and starts a second
    unloader.forget(smol)
    await unloader.close()
    assert _expiring() == []


async def test_a_backend_with_its_own_timer_is_only_shown_its_ttl() -> None:
    async with ScriptedBackend() as lms:
        lms.answer("GET", "/v1/models", models("qwen"))
        async with services_over((lms, "lmstudio")) as (registry, loader):
            unloader = IdleUnloader(loader, default_keep_alive=SHORT)
            qwen = await registry.resolve("qwen")
            async with unloader.using(qwen, None):  # no TTL sent: nothing known
                pass
            assert unloader.expires_ns(qwen) is None
            async with unloader.using(qwen, None, ttl=60):  # this request loads it with a 60 s TTL
                pass
            expires = unloader.expires_ns(qwen)
            assert expires is not None
            assert abs(expires - (time.time_ns() + 60 * 10**9)) < 2 * 10**9
            await asyncio.sleep(3 * SHORT)
            assert lms.count("POST", "/api/v1/models/unload") == 0
            await unloader.close()


# ---------------------------------------------------------------------------
# The default: --keep-alive, else OLLAMA_KEEP_ALIVE, else 5 minutes
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "environ", "seconds"),
    [
        ([], {}, 300.0),
        ([], {"OLLAMA_KEEP_ALIVE": "10m"}, 600.0),
        ([], {"OLLAMA_KEEP_ALIVE": "90"}, 90.0),
        ([], {"OLLAMA_KEEP_ALIVE": "-1"}, math.inf),
        ([], {"OLLAMA_KEEP_ALIVE": "0"}, 0.0),
        ([], {"OLLAMA_KEEP_ALIVE": ""}, 300.0),
        ([], {"OLLAMA_SHIM_KEEP_ALIVE": "1h", "OLLAMA_KEEP_ALIVE": "2s"}, 3600.0),
        (["--keep-alive", "2s"], {"OLLAMA_KEEP_ALIVE": "1h"}, 2.0),
    ],
)
def test_the_default_keep_alive(argv: list[str], environ: dict[str, str], seconds: float) -> None:
    assert load_settings(argv, environ).keep_alive == seconds


@pytest.mark.parametrize(
    ("argv", "environ", "message"),
    [
        ([], {"OLLAMA_KEEP_ALIVE": "soon"}, "invalid OLLAMA_KEEP_ALIVE 'soon'"),
        (["--keep-alive", "5q"], {}, "invalid value for keep-alive"),
    ],
)
def test_a_bad_keep_alive_is_refused_at_start(argv: list[str], environ: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(argv, environ)
    assert str(info.value).startswith(message)


async def test_a_server_that_cannot_unload_gets_no_timer_after_the_first_try() -> None:
    async with ScriptedBackend() as single:  # a single llama-server: no /models/unload route (404)
        single.answer("GET", "/v1/models", models("smol"))
        async with services_over((single, "llamacpp")) as (registry, loader):
            unloader = IdleUnloader(loader, default_keep_alive=SHORT)
            smol = await registry.resolve("smol")
            unloader.loaded(smol, SHORT)
            deadline = time.monotonic() + WAIT
            while single.count("POST", "/models/unload") == 0:
                assert time.monotonic() < deadline, "no unload was tried"
                await asyncio.sleep(0.02)
            async with unloader.using(smol, SHORT):
                pass
            assert unloader.expires_ns(smol) is None  # not shown as expiring: it never will
            await asyncio.sleep(3 * SHORT)
            assert single.count("POST", "/models/unload") == 1
            await unloader.close()
