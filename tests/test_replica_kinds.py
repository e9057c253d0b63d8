"""Replicas are of one kind: a backend of another kind that lists a model's name is not a replica of it.

A request is translated once, for the kind of the backend a name resolves to (the first that lists
it), so a backend of another kind in its group gets none of its requests, not even when the first
fails (the client gets the first's failure: failing over would send a body built for another
dialect). It is named in one warning, the first time it is seen. Two kinds configured in one named
group are refused at start; ``auto`` kinds are matched once learned.

The backends are ``FaultUpstream``s, given a kind with ``--backend-kind`` or, for ``auto``, by the
``owned_by`` of their model entry (``llamacpp``, ``vllm``), which the probe reads.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from ollama_shim import cli
from ollama_shim.app import STATE
from ollama_shim.registry import Registry
from ollama_shim.server import start
from ollama_shim.settings import SettingsError, load_settings
from support.faults import MODEL, Fault, FaultUpstream, refused_url
from support.shim import shim_settings, url_of

TIMEOUTS = ("--first-byte-timeout", "2", "--connect-timeout", "0.5")
HI = [{"role": "user", "content": "hi"}]
LEFT_OUT = "left out of its replicas"


@contextlib.asynccontextmanager
async def shim(*argv: str) -> AsyncIterator[tuple[str, Registry]]:
    settings = shim_settings(*argv, *TIMEOUTS)
    runner = await start(settings)
    try:
        yield url_of(settings), runner.app[STATE].registry
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def upstreams(count: int) -> AsyncIterator[list[FaultUpstream]]:
    async with contextlib.AsyncExitStack() as stack:
        yield [await stack.enter_async_context(FaultUpstream()) for _ in range(count)]


def backends(*pairs: tuple[FaultUpstream | str, str], group: str = "") -> list[str]:
    """``--backend`` flags for (upstream or URL, kind) pairs; all in ``group`` if one is named."""
    args: list[str] = []
    for target, kind in pairs:
        args += ["--backend", target if isinstance(target, str) else target.url, "--backend-kind", kind]
        args += ["--backend-group", group] if group else []
    return args


async def chat(url: str) -> tuple[int, list[dict[str, Any]]]:
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as session,
        session.post(url + "/api/chat", json={"model": MODEL, "messages": HI, "stream": False}) as resp,
    ):
        return resp.status, [json.loads(line) for line in (await resp.read()).splitlines() if line.strip()]


def warnings_of(caplog: pytest.LogCaptureFixture, root: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if LEFT_OUT in r.getMessage() and root in r.getMessage()]


# -- at run time -------------------------------------------------------------------------------------

MIXED = [
    # id, kinds of the two backends (the first listed is the one resolved), their group
    ("llamacpp-openai", ("llamacpp", "openai"), ""),
    ("vllm-generic", ("vllm", "generic"), ""),
    ("openai-llamacpp", ("openai", "llamacpp"), ""),
    ("auto-llamacpp-auto-vllm-named", ("auto:llamacpp", "auto:vllm"), "pool"),
]


def _kind_flags(ups: list[FaultUpstream], kinds: tuple[str, str]) -> list[tuple[FaultUpstream | str, str]]:
    """``auto:X``: an ``auto`` backend whose model entry says it is X."""
    pairs: list[tuple[FaultUpstream | str, str]] = []
    for up, kind in zip(ups, kinds, strict=True):
        if kind.startswith("auto:"):
            up.model_fields = {"owned_by": kind.removeprefix("auto:")}
            kind = "auto"
        pairs.append((up, kind))
    return pairs


@pytest.mark.parametrize(("kinds", "group"), [m[1:] for m in MIXED], ids=[m[0] for m in MIXED])
async def test_requests_go_only_to_the_first_kind(kinds: tuple[str, str], group: str) -> None:
    async with upstreams(2) as ups:
        first, other = ups
        async with shim(*backends(*_kind_flags(ups, kinds), group=group)) as (url, _):
            for _ in range(4):  # two replicas would share these in turn
                assert (await chat(url))[0] == 200
        assert len(first.calls) == 4
        assert other.calls == []


async def test_the_first_kinds_failure_is_the_answer() -> None:
    async with upstreams(2) as (first, other), shim(*backends((first, "llamacpp"), (other, "openai"))) as (url, _):
        first.script(Fault("status", status=500, message="CUDA error"))
        status, lines = await chat(url)
        assert status == 500
        assert lines == [{"error": "CUDA error"}]
        assert other.calls == []  # no failover to a backend of another kind


async def test_same_kind_replicas_share_and_another_kind_is_skipped() -> None:
    async with upstreams(3) as (a, other, c), \
            shim(*backends((a, "llamacpp"), (other, "openai"), (c, "llamacpp"))) as (url, _):
        for _ in range(4):
            assert (await chat(url))[0] == 200
        assert len(a.calls) == 2
        assert len(c.calls) == 2
        assert other.calls == []


async def test_one_warning_per_backend_left_out(caplog: pytest.LogCaptureFixture) -> None:
    async with upstreams(2) as (first, other), shim(*backends((first, "llamacpp"), (other, "openai"))) as (_, registry):
        with caplog.at_level(logging.WARNING, logger="ollama_shim.registry"):
            for _ in range(3):
                await registry.models(fresh=True)
        warned = warnings_of(caplog, other.url)
        assert len(warned) == 1
        assert f"resolves to {first.url} (llamacpp)" in warned[0]
        assert f"{other.url} (openai)" in warned[0]


async def test_same_kinds_warn_of_nothing(caplog: pytest.LogCaptureFixture) -> None:
    async with upstreams(3) as (a, other, c), \
            shim(*backends((a, "llamacpp"), (other, "openai"), (c, "llamacpp"))) as (_, registry):
        with caplog.at_level(logging.WARNING, logger="ollama_shim.registry"):
            await registry.models(fresh=True)
        assert warnings_of(caplog, c.url) == []
        assert len(warnings_of(caplog, other.url)) == 1


async def test_an_unread_member_is_a_replica_unless_known_to_be_another_kind() -> None:
    # Both unread members are preferred (priority 5): one of unknown kind (``auto``, never probed) is
    # tried, refused and marked down; one configured as another kind is never tried.
    unknown, other = refused_url(), refused_url()
    async with upstreams(1) as (good,):
        good.model_fields = {"owned_by": "llamacpp"}
        argv = [*backends((good, "auto"), (unknown, "auto"), (other, "openai"), group="pool"),
                "--backend-priority", "0", "--backend-priority", "5", "--backend-priority", "5"]
        async with shim(*argv) as (url, registry):
            assert (await chat(url))[0] == 200
            assert [b.health.down for b in registry.backends] == [False, True, False]
        assert len(good.calls) == 1


# -- at start ----------------------------------------------------------------------------------------


def test_two_configured_kinds_in_one_named_group_are_refused() -> None:
    argv = [*backends(("http://a:1", "llamacpp"), ("http://b:1", "openai"), group="pool")]
    with pytest.raises(SettingsError, match="group 'pool' are of two kinds") as info:
        load_settings(argv, {})
    assert "http://b:1 is openai" in str(info.value)


def test_the_refusal_exits_2(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(cli.server, "run", lambda settings: pytest.fail("the server was started"))
    assert cli.main(backends(("http://a:1", "lmstudio"), ("http://b:1", "vllm"), group="pool")) == 2
    assert "replicas must be of one kind" in capsys.readouterr().err


ACCEPTED = [
    # id, (url, kind) pairs, group: kinds that can only be matched at run time, or need not be
    ("auto-and-a-kind", (("http://a:1", "auto"), ("http://b:1", "openai")), "pool"),
    ("one-kind", (("http://a:1", "vllm"), ("http://b:1", "vllm")), "pool"),
    ("no-group", (("http://a:1", "llamacpp"), ("http://b:1", "openai")), ""),
]


@pytest.mark.parametrize(("pairs", "group"), [a[1:] for a in ACCEPTED], ids=[a[0] for a in ACCEPTED])
def test_what_is_not_refused_at_start(pairs: tuple[tuple[str, str], ...], group: str) -> None:
    assert len(load_settings(backends(*pairs, group=group), {}).backends) == 2
