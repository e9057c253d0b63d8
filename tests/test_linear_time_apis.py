"""No request to ``/v1/messages``, ``/v1/messages/count_tokens`` or ``/v1/responses`` makes the event
loop wait on its history: the worst shapes at 16,000 calls each (tool calls and their results, linked
by id, by nothing, out of order; a long prefill) go through a running shim while another client polls
``GET /api/version``, and every poll answers within 250 ms. The harness is ``test_linear_time``'s;
the stub backend answers a streamed request with one event stream. The native path's renaming of an
event stream costs linear time in a line however it is cut."""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import Callable

import aiohttp
import pytest

from ollama_shim.routes.native import ModelRenamer
from test_linear_time import CALLS, MODEL, POLL_LIMIT_S, _json, shim_process, stub_backend

__all__ = ["stub_backend"]  # the fixture, shared with test_linear_time

def _items(make: Callable[[int], str]) -> str:
    return ",".join(make(i) for i in range(CALLS))


def _tool_use(i: int) -> str:
    return _json({"type": "tool_use", "id": str(i), "name": f"f{i}", "input": {"i": i}})


def _tool_result(tool_use_id: Callable[[int], str]) -> Callable[[int], str]:
    return lambda i: _json({"type": "tool_result", "tool_use_id": tool_use_id(i), "content": "ok"})


def _anthropic(messages: str) -> bytes:
    return f'{{"model":"{MODEL}","max_tokens":16,"messages":[{messages}]}}'.encode()


def _uses_then_results(result_id: Callable[[int], str]) -> str:
    return (f'{{"role":"assistant","content":[{_items(_tool_use)}]}},'
            f'{{"role":"user","content":[{_items(_tool_result(result_id))}]}}')


def _function_call(i: int) -> str:
    return _json({"type": "function_call", "call_id": f"c{i}", "name": f"f{i}", "arguments": '{"i":1}'})


def _output(call_id: Callable[[int], str]) -> Callable[[int], str]:
    return lambda i: _json({"type": "function_call_output", "call_id": call_id(i), "output": "ok"})


def _responses(items: str) -> bytes:
    return f'{{"model":"{MODEL}","input":[{items}]}}'.encode()


PREFILL = "word " * (20 * CALLS)
MESSAGE_SHAPES: dict[str, Callable[[], bytes]] = {
    "results-in-order": lambda: _anthropic(_uses_then_results(str)),
    "results-in-reverse": lambda: _anthropic(_uses_then_results(lambda i: str(CALLS - 1 - i))),
    "results-that-answer-nothing": lambda: _anthropic(_uses_then_results(lambda i: f"other-{i}")),
    "16000-messages-one-call-each": lambda: _anthropic(",".join(
        f'{{"role":"assistant","content":[{_tool_use(i)}]}},{{"role":"user","content":[{_tool_result(str)(i)}]}}'
        for i in range(CALLS // 2))),
    "a-long-prefill": lambda: _anthropic(
        f'{{"role":"user","content":"go"}},{{"role":"assistant","content":"{PREFILL}"}}'),
}


def _calls_then(output_id: Callable[[int], str]) -> bytes:
    return _responses(_items(_function_call) + "," + _items(_output(output_id)))


RESPONSE_SHAPES: dict[str, Callable[[], bytes]] = {
    "outputs-in-order": lambda: _calls_then(lambda i: f"c{i}"),
    "outputs-in-reverse": lambda: _calls_then(lambda i: f"c{CALLS - 1 - i}"),
    "outputs-that-answer-nothing": lambda: _calls_then(lambda i: f"x{i}"),
    "outputs-before-any-call": lambda: _responses(_items(_output(lambda i: f"c{i}")) + "," + _items(_function_call)),
}
CASES = (
    [("/v1/messages", name, make) for name, make in MESSAGE_SHAPES.items()]
    + [("/v1/messages/count_tokens", name, make) for name, make in MESSAGE_SHAPES.items()]
    + [("/v1/responses", name, make) for name, make in RESPONSE_SHAPES.items()]
)


@pytest.mark.parametrize(("path", "shape", "make"), CASES, ids=[f"{p}:{n}" for p, n, _ in CASES])
async def test_worst_histories_do_not_stall_other_clients(
    stub_backend: str, path: str, shape: str, make: Callable[[], bytes]
) -> None:
    body = make()
    async with shim_process(stub_backend) as url, aiohttp.ClientSession() as session:
        async with session.get(url + "/api/version") as warm:  # connection and registry ready
            assert warm.status == 200
        async with session.post(url + "/api/chat", json={"model": MODEL, "messages": []}) as load:
            assert load.status == 200

        async def big_request() -> tuple[int, bytes]:
            async with aiohttp.ClientSession() as other, other.post(url + path, data=io.BytesIO(body)) as resp:
                return resp.status, await resp.read()

        loop = asyncio.get_running_loop()
        request = asyncio.create_task(big_request())
        waits: list[float] = []
        while not request.done():
            started = loop.time()
            async with session.get(url + "/api/version") as resp:
                assert resp.status == 200
            waits.append(loop.time() - started)
        status, answer = await request
        assert status == 200, answer[:300]
        assert waits, "no poll ran while the request was served"
        assert max(waits) < POLL_LIMIT_S, f"a poll waited {max(waits) * 1000:.0f} ms"


def _renaming_seconds(size: int) -> float:
    """The best of three times to pass a ``size``-byte event-stream line through the native path's
    ``ModelRenamer`` in 1 KiB reads."""
    piece = b"x" * 1024
    best = float("inf")
    for _ in range(3):
        renamer = ModelRenamer("upstream-id", "client-name", max_line=8 << 20)
        started = time.perf_counter()
        for _ in range(size // len(piece)):
            renamer.feed(piece)
        renamer.feed(b"\n")
        best = min(best, time.perf_counter() - started)
    return best


def test_a_long_native_line_costs_linear_time() -> None:
    """Eight times the line costs about eight times the work (each byte looked at once), not the 64
    times that re-reading what was held at every read costs."""
    small, large = _renaming_seconds(512 << 10), _renaming_seconds(4 << 20)
    assert large < 24 * small, f"{large / small:.0f} times the time for 8 times the line"
