"""Replicas: the router's choice, its pure helpers, and failover through the shim over fault upstreams.

Each integration test stands up several ``FaultUpstream``s that all list ``fault-model`` (so they
are replicas of one model) behind one in-process shim with short timeouts, and reads which replica
served what from the upstreams' own call lists.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from ollama_shim.app import STATE
from ollama_shim.backends import LiveBackend
from ollama_shim.errors import UpstreamProtocol, UpstreamStatus, UpstreamTimeout, UpstreamUnreachable
from ollama_shim.routing import Router, affinity_key, failover_worthy, retarget
from ollama_shim.server import start
from ollama_shim.settings import Backend, Routing
from support.faults import MODEL, Blackhole, Fault, FaultUpstream, refused_url
from support.shim import shim_settings, url_of

TIMEOUTS = ("--first-byte-timeout", "1", "--idle-timeout", "1", "--connect-timeout", "0.5")
QUICK_BACKOFF = ("--replica-backoff", "0.2", "--replica-backoff-max", "0.4")
HI = [{"role": "user", "content": "hi"}]


# -- pure helpers ----------------------------------------------------------------------------------

WORTHY = [
    ("unreachable", UpstreamUnreachable("refused"), True),
    ("timeout", UpstreamTimeout("first byte"), True),
    ("broken", UpstreamProtocol("closed the connection"), True),
    ("500", UpstreamStatus("CUDA error", 500), True),
    ("503", UpstreamStatus("busy", 503), True),
    ("429", UpstreamStatus("rate limited", 429), True),
    ("501", UpstreamStatus("not implemented", 501), False),
    ("400", UpstreamStatus("bad request", 400), False),
    ("404", UpstreamStatus("model not found", 404), False),
    ("500 too long", UpstreamStatus("the request exceeds the available context size", 500), False),
]


@pytest.mark.parametrize(("exc", "worthy"), [w[1:] for w in WORTHY], ids=[w[0] for w in WORTHY])
def test_failover_worthy(exc: Any, worthy: bool) -> None:
    assert failover_worthy(exc) is worthy


def _chat(*contents: str, model: str = "m", **extra: Any) -> bytes:
    messages = [{"role": "user" if i % 2 == 0 else "assistant", "content": c} for i, c in enumerate(contents)]
    return json.dumps({"temperature": 0.1, "model": model, "messages": messages, **extra}).encode()


def test_affinity_key_is_the_start_of_the_conversation() -> None:
    first = affinity_key(_chat("sys", "hello"), 2, 4096)
    assert first is not None
    assert affinity_key(_chat("sys", "hello", "more", "and more"), 2, 4096) == first  # the next turns
    assert affinity_key(_chat("sys", "hello", stream=True, max_tokens=9), 2, 4096) == first  # other fields
    assert affinity_key(_chat("sys", "goodbye"), 2, 4096) != first
    assert affinity_key(_chat("sys", "hello", model="other"), 2, 4096) != first


def test_affinity_key_is_cut_to_its_bytes() -> None:
    assert affinity_key(_chat("x" * 50 + "a"), 1, 40) == affinity_key(_chat("x" * 50 + "b"), 1, 40)
    assert affinity_key(_chat("x" * 50 + "a"), 1, 4096) != affinity_key(_chat("x" * 50 + "b"), 1, 4096)


@pytest.mark.parametrize("body", [b'{"model": "m", "prompt": "once upon"}', b'{"model": "m", "input": "hi"}'])
def test_affinity_key_of_a_prompt(body: bytes) -> None:
    assert affinity_key(body, 2, 4096) is not None


@pytest.mark.parametrize("body", [b"", b"not json", b"[1]", b'{"model": "m"}'])
def test_no_affinity_key(body: bytes) -> None:
    assert affinity_key(body, 2, 4096) is None


def test_retarget() -> None:
    body = b'{"model":"a","messages":[]}'
    assert retarget(body, "a", "a") is body
    assert json.loads(retarget(body, "a", "b")) == {"model": "b", "messages": []}
    assert retarget(b'{"model":"z"}', "a", "b") == b'{"model":"z"}'


# -- the choice ------------------------------------------------------------------------------------


def _replicas(*priorities: int, cap: int = 0, queue: int = 64) -> list[LiveBackend]:
    return [LiveBackend(Backend(f"http://r{i}:1", priority=p, max_concurrent=cap, max_queue=queue), None)  # type: ignore[arg-type]
            for i, p in enumerate(priorities)]


def _router(**routing: Any) -> Router:
    return Router(Routing(**routing), None, queue_wait=0.5)  # type: ignore[arg-type]


def test_least_in_flight_wins() -> None:
    replicas = _replicas(0, 0, 0)
    replicas[0].health.in_flight, replicas[1].health.in_flight, replicas[2].health.in_flight = 2, 0, 1
    assert _router().choose(replicas, set()) == 1


def test_ties_are_taken_in_turn() -> None:
    replicas, router = _replicas(0, 0, 0), _router()
    assert sorted(router.choose(replicas, set()) or 0 for _ in range(3)) == [0, 1, 2]


def test_tried_and_down_replicas_are_skipped() -> None:
    replicas, router = _replicas(0, 0, 0), _router()
    replicas[1].health.down_until = time.monotonic() + 60
    assert router.choose(replicas, {0}) == 2
    assert router.choose(replicas, {0, 2}) == 1  # down, but the last one left
    assert router.choose(replicas, {0, 1, 2}) is None


def test_a_lower_priority_only_when_the_higher_are_down() -> None:
    replicas, router = _replicas(1, 1, 0), _router()
    replicas[0].health.in_flight = replicas[1].health.in_flight = 5  # busy is not down
    assert router.choose(replicas, set()) in (0, 1)
    for replica in replicas[:2]:
        replica.health.down_until = time.monotonic() + 60
    assert router.choose(replicas, set()) == 2


def test_all_down_tries_the_highest_priority_that_went_down_first() -> None:
    replicas = _replicas(0, 1, 1)
    for replica, until in zip(replicas, (1.0, 3.0, 2.0), strict=True):
        replica.health.down_until = until
    assert _router().choose(replicas, set()) == 2


def test_affinity_is_stable_and_spreads() -> None:
    replicas, router = _replicas(0, 0, 0), _router(affinity=True)
    keys = [affinity_key(_chat(f"conversation {i}"), 2, 4096) for i in range(30)]
    chosen = [router.choose(replicas, set(), key) for key in keys]
    assert chosen == [router.choose(replicas, set(), key) for key in keys]
    assert set(chosen) == {0, 1, 2}


async def test_admission_queues_then_refuses() -> None:
    router = _router()
    [replica] = _replicas(0, cap=1, queue=1)
    first = await router.admit(replica)
    queued = asyncio.ensure_future(router.admit(replica))
    await _until(lambda: len(replica.health.waiting) == 1)
    with pytest.raises(Exception, match="is busy") as refused:
        await router.admit(replica)
    assert getattr(refused.value, "status", None) == 503
    first.release()
    second = await asyncio.wait_for(queued, 2)
    assert replica.health.in_flight == 1
    second.release()
    assert replica.health.in_flight == 0


async def test_a_queued_request_waits_no_longer_than_the_queue_wait() -> None:
    router = _router()
    [replica] = _replicas(0, cap=1, queue=4)
    held = await router.admit(replica)
    with pytest.raises(Exception, match="no place came free"):
        await router.admit(replica)
    held.release()
    assert replica.health.in_flight == 0
    assert not replica.health.waiting


# -- through the shim --------------------------------------------------------------------------------


async def _until(check: Callable[[], bool], deadline: float = 10.0) -> None:
    """Poll ``check`` until it holds; fail at the deadline."""
    end = time.monotonic() + deadline
    while not check():
        assert time.monotonic() < end, "condition not reached in time"
        await asyncio.sleep(0.02)


class Shim:
    """An in-process shim: its URL and its registry's live backends (their health)."""

    def __init__(self, url: str, backends: tuple[LiveBackend, ...]) -> None:
        self.url, self.backends = url, backends


@contextlib.asynccontextmanager
async def shim_in_loop(*argv: str) -> AsyncIterator[Shim]:
    settings = shim_settings(*argv)
    runner = await start(settings)
    try:
        yield Shim(url_of(settings), runner.app[STATE].registry.backends)
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def replicas(count: int, *argv: str, per_backend: Any = ()) -> AsyncIterator[tuple[str, list[FaultUpstream]]]:
    """``count`` fault upstreams serving ``fault-model``, behind one shim started with ``argv``;
    ``per_backend`` holds (flag, values) given per position."""
    async with replicas_shim(count, *argv, per_backend=per_backend) as (shim, ups):
        yield shim.url, ups


@contextlib.asynccontextmanager
async def replicas_shim(
    count: int, *argv: str, per_backend: Any = ()
) -> AsyncIterator[tuple[Shim, list[FaultUpstream]]]:
    async with contextlib.AsyncExitStack() as stack:
        ups = [await stack.enter_async_context(FaultUpstream()) for _ in range(count)]
        args = [a for up in ups for a in ("--backend", up.url, "--backend-kind", "generic")]
        for flag, values in per_backend:
            args += [a for value in values for a in (flag, str(value))]
        shim = await stack.enter_async_context(shim_in_loop(*args, *TIMEOUTS, *argv))
        yield shim, ups


async def post(url: str, path: str, body: dict[str, Any]) -> tuple[int, bytes]:
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as session,
        session.post(url + path, json=body) as resp,
    ):
        return resp.status, await resp.read()


async def chat(url: str, *, stream: bool = True, messages: list[dict[str, str]] = HI) -> tuple[int, list[dict]]:
    status, raw = await post(url, "/api/chat", {"model": MODEL, "messages": messages, "stream": stream})
    return status, [json.loads(line) for line in raw.splitlines() if line.strip()]


def _served(up: FaultUpstream) -> int:
    return sum(1 for c in up.calls if c.completed)


ENDPOINTS = [
    # id, path, body, a check of a good answer
    ("chat-stream", "/api/chat", {"model": MODEL, "messages": HI}, b'"done":true'),
    ("chat", "/api/chat", {"model": MODEL, "messages": HI, "stream": False}, b'"done":true'),
    ("generate", "/api/generate", {"model": MODEL, "prompt": "hi"}, b'"done":true'),
    ("messages", "/v1/messages", {"model": MODEL, "max_tokens": 9, "messages": HI, "stream": True}, b"message_stop"),
    ("responses", "/v1/responses", {"model": MODEL, "input": "hi"}, b'"completed"'),
    ("passthrough", "/v1/chat/completions", {"model": MODEL, "messages": HI}, b'"chat.completion"'),
    ("passthrough-stream", "/v1/chat/completions", {"model": MODEL, "messages": HI, "stream": True}, b"[DONE]"),
]
FAILURES = [
    ("500", Fault("status", status=500, message="CUDA error")),
    ("429", Fault("status", status=429, message="slow down")),
    ("reset", Fault("reset")),
    ("hung", Fault("hang_headers")),
]


CASES = [
    pytest.param(path, body, good, fault, id=f"{endpoint}-{name}")
    for endpoint, path, body, good in ENDPOINTS
    for name, fault in FAILURES
    # A JSON answer broken off half-way went out as it came (the passthrough streams raw bytes).
    if not (endpoint == "passthrough" and name == "reset")
]


@pytest.mark.parametrize(("path", "body", "good", "fault"), CASES)
async def test_every_endpoint_fails_over_before_the_first_byte(
    path: str, body: dict[str, Any], good: bytes, fault: Fault
) -> None:
    # The first replica is preferred (priority 1), so it is the one that fails first.
    async with replicas(2, per_backend=[("--backend-priority", [1, 0])]) as (url, (first, second)):
        first.script(fault)
        status, raw = await post(url, path, body)
        assert status == 200, raw
        assert good in raw
        assert len(first.calls) == 1
        assert len(second.calls) == 1
        assert second.calls[0].completed


async def test_a_failure_after_the_first_byte_is_not_retried() -> None:
    async with replicas(2, per_backend=[("--backend-priority", [1, 0])]) as (url, (first, second)):
        first.script(Fault("reset", after=2))
        status, lines = await chat(url)
        assert status == 200
        assert "error" in lines[-1]
        assert second.calls == []


async def test_the_last_replicas_failure_is_the_answer() -> None:
    async with replicas(2) as (url, ups):
        for up in ups:
            up.script(Fault("status", status=500, message="CUDA error"))
        status, lines = await chat(url)
        assert status == 500
        assert lines == [{"error": "CUDA error"}]
        assert [len(up.calls) for up in ups] == [1, 1]


async def test_a_hung_replica_costs_the_first_byte_timeout_once() -> None:
    async with replicas(3, "--replica-backoff", "30") as (url, ups):
        hung = ups[0]
        hung.default = Fault("hang_headers")
        took = []
        for _ in range(6):
            began = time.monotonic()
            status, lines = await chat(url)
            took.append(time.monotonic() - began)
            assert status == 200
            assert lines[-1]["done"] is True
        assert len(hung.calls) == 1  # tried once, then down
        slow = [t for t in took if t >= 0.9]
        assert len(slow) <= 1, took
        assert max(took) < 1.9, took


async def test_a_blackholed_replica_costs_the_connect_timeout_once() -> None:
    with Blackhole() as hole:
        async with (
            FaultUpstream() as up,
            shim_in_loop("--backend", up.url, "--backend", hole.url, "--backend-kind", "generic",
                         "--backend-kind", "generic", "--backend-group", "pool", "--backend-group", "pool",
                         "--backend-priority", "0", "--backend-priority", "1", "--replica-backoff", "30",
                         *TIMEOUTS) as shim,
        ):
            # The blackhole's model list cannot be read, but its group says it serves the same models;
            # preferred (priority 1), it is tried first, once.
            await post(shim.url, "/api/tags", {})  # the catalog read, which waits for the blackhole too
            took = []
            for _ in range(4):
                began = time.monotonic()
                status, _ = await post(shim.url, "/v1/chat/completions", {"model": MODEL, "messages": HI})
                took.append(time.monotonic() - began)
                assert status == 200
            assert took[0] >= 0.5, took  # the connect timeout, once
            assert max(took[1:]) < 0.4, took
            assert len(up.calls) == 4
            assert shim.backends[1].health.down


async def test_refused_replica_then_probed_back() -> None:
    async with replicas(2, *QUICK_BACKOFF, per_backend=[("--backend-priority", [1, 0])]) as (url, (first, second)):
        first.script(Fault("status", status=503, message="overloaded"))
        assert (await chat(url))[0] == 200
        assert len(second.calls) == 1
        assert await _replica_up(url, first.url) == 0.0  # /metrics says so while it is down
        listings = first.model_listings
        await _until(lambda: first.model_listings > listings)  # probed after its back-off
        # Up again: the preferred replica gets the next request.
        await _until_served_by(url, first)
        assert await _replica_up(url, first.url) == 1.0


async def _replica_up(url: str, backend: str) -> float:
    async with aiohttp.ClientSession() as session, session.get(url + "/metrics") as resp:
        text = await resp.text()
    line = next(line for line in text.splitlines() if line.startswith(f'ollama_shim_replica_up{{backend="{backend}"}}'))
    return float(line.split()[-1])


async def _until_served_by(url: str, up: FaultUpstream, deadline: float = 10.0) -> None:
    end = time.monotonic() + deadline
    before = _served(up)
    while _served(up) == before:
        assert time.monotonic() < end, "the replica got no traffic again"
        status, _ = await chat(url)
        assert status == 200
        await asyncio.sleep(0.05)


async def test_requests_spread_by_least_in_flight() -> None:
    async with replicas(3) as (url, ups):
        for up in ups:
            up.default = Fault(delay=0.1, words=5)  # half a second each: they overlap
        results = await asyncio.gather(*(chat(url) for _ in range(6)))
        assert all(status == 200 for status, _ in results)
        assert [len(up.calls) for up in ups] == [2, 2, 2]


async def test_a_busy_replica_is_not_given_more_while_another_is_idle() -> None:
    async with replicas(2) as (url, (slow, quick)):
        for up in (slow, quick):
            up.by_prompt["long"] = Fault(delay=0.2, words=8)
        long_one = asyncio.ensure_future(chat(url, messages=[{"role": "user", "content": "long"}]))
        await _until(lambda: len(slow.calls) + len(quick.calls) == 1)
        busy, idle = (slow, quick) if slow.calls else (quick, slow)
        for _ in range(3):
            assert (await chat(url))[0] == 200
        assert len(idle.calls) == 3
        assert len(busy.calls) == 1
        await long_one


async def test_affinity_keeps_a_conversation_on_one_replica() -> None:
    async with replicas(3, "--affinity") as (url, ups):
        conversation = [{"role": "system", "content": "you are terse"}, {"role": "user", "content": "hi"}]
        for turn in range(4):
            status, _ = await chat(url, messages=conversation)
            assert status == 200
            conversation = [*conversation, {"role": "assistant", "content": "ok"},
                            {"role": "user", "content": f"and {turn}"}]
        assert sorted(len(up.calls) for up in ups) == [0, 0, 4]
        for i in range(30):  # other conversations go elsewhere too
            await chat(url, messages=[{"role": "user", "content": f"topic {i}"}])
        assert all(up.calls for up in ups)


async def test_max_concurrent_queues_then_503() -> None:
    limits = [("--backend-max-concurrent", [1]), ("--backend-max-queue", [1])]
    async with replicas_shim(1, per_backend=limits) as (shim, (up,)):
        health = shim.backends[0].health
        up.default = Fault(delay=0.1, words=6)
        first = asyncio.ensure_future(chat(shim.url))
        await _until(lambda: len(up.calls) == 1)
        queued = asyncio.ensure_future(chat(shim.url))
        await _until(lambda: len(health.waiting) == 1)
        status, raw = await post(shim.url, "/api/chat", {"model": MODEL, "messages": HI})
        assert status == 503
        assert "is busy" in json.loads(raw)["error"]
        assert [(await first)[0], (await queued)[0]] == [200, 200]
        assert len(up.calls) == 2
        assert health.in_flight == 0


async def test_priority_falls_back_and_returns() -> None:
    priorities = [("--backend-priority", [1, 1, 0])]
    async with replicas(3, *QUICK_BACKOFF, per_backend=priorities) as (url, (a, b, cloud)):
        for _ in range(4):
            assert (await chat(url))[0] == 200
        assert cloud.calls == []
        assert len(a.calls) == 2
        assert len(b.calls) == 2
        for local in (a, b):  # down, and their probes fail too
            local.default = local.models_fault = Fault("status", status=502, message="down")
        assert (await chat(url))[0] == 200
        assert _served(cloud) == 1
        assert (await chat(url))[0] == 200
        assert _served(cloud) == 2  # the locals are down: not asked again
        for local in (a, b):
            local.default, local.models_fault = Fault(), None
        await _until_served_by(url, a)
        served = _served(cloud)
        for _ in range(4):
            assert (await chat(url))[0] == 200
        assert _served(cloud) == served  # back on the locals


async def test_groups_keep_replicas_apart(tmp_path: Any) -> None:
    async with FaultUpstream() as team, FaultUpstream() as desk:
        config = tmp_path / "shim.toml"
        config.write_text(
            f'[[backends]]\nurl = "{desk.url}"\nkind = "generic"\ngroup = "desk"\n'
            f'[[backends]]\nurl = "{team.url}"\nkind = "generic"\ngroup = "team"\n'
        )
        async with shim_in_loop("--config", str(config), *TIMEOUTS) as shim:
            for _ in range(3):
                assert (await chat(shim.url))[0] == 200
        assert len(desk.calls) == 3
        assert team.calls == []  # not one model: the first group wins the name


async def test_a_group_member_that_never_answered_is_a_replica(tmp_path: Any) -> None:
    async with FaultUpstream() as good:
        config = tmp_path / "shim.toml"
        config.write_text(
            f'[[backends]]\nurl = "{good.url}"\nkind = "generic"\ngroup = "pool"\n'
            f'[[backends]]\nurl = "{refused_url()}"\nkind = "generic"\ngroup = "pool"\npriority = 5\n'
        )
        async with shim_in_loop("--config", str(config), *TIMEOUTS) as shim:
            assert (await chat(shim.url))[0] == 200
            assert shim.backends[1].health.down  # tried first (priority 5), refused, failed over
        assert len(good.calls) == 1
