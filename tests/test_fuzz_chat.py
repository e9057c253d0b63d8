"""Structured fuzzing of ``/api/chat``: whatever JSON a client sends, the answer is a 2xx, or a
4xx whose body is exactly ``{"error": "<text>"}``; never a 500. Bodies go through a running shim
(body reading, decoding, translation, the backend call) with a well-behaved backend behind it."""

from __future__ import annotations

import base64
import json
from typing import Any

import aiohttp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from support.faults import MODEL, FaultUpstream
from support.shim import shim_in_loop

FUZZ = settings(max_examples=300, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])

big_numbers = st.sampled_from([10**400, -(10**400), 2**63, -(2**63) - 1, 10**308 * 2, 1e308, -1e-320, 0.5, -1])
scalars = (st.none() | st.booleans() | st.integers() | big_numbers | st.floats(allow_nan=False, allow_infinity=False)
           | st.text(max_size=20))
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
images = st.one_of(
    st.text(max_size=12),
    st.sampled_from([base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"0" * 8).decode(), "AAAA", "",
                     "data:image/png;base64,AAAA"]),
)
OPTION_NAMES = ["temperature", "top_k", "top_p", "num_predict", "seed", "stop", "num_ctx", "use_mmap", "repeat_penalty"]
options = st.dictionaries(st.sampled_from(OPTION_NAMES) | st.text(max_size=10), big_numbers | json_values, max_size=5)
arguments = (st.dictionaries(st.text(max_size=6), json_values, max_size=3) | st.text(max_size=20)
             | st.sampled_from(['{"a": 1}', "[" * 300 + "]" * 300, '{"a": [[[]]]}', "{", "1e400"]))
tool_calls = st.lists(
    st.fixed_dictionaries(
        {"function": st.fixed_dictionaries({"name": st.text(max_size=6)}, optional={"arguments": arguments})},
        optional={"id": st.text(max_size=6) | st.none()},
    ),
    max_size=3,
)
keep_alives = (st.sampled_from(["5m", "1" * 400, "-1", "0", "9999999999999h", "1.5h", "300ms", ".5s"]) | big_numbers
               | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8))
# Fields of the right JSON type (a wrong type stops at decoding, which the second test covers),
# with values that stress the translation.
messages = st.lists(
    st.fixed_dictionaries(
        {"role": st.sampled_from(["user", "assistant", "tool", "system", "USER"])},
        optional={
            "content": st.text(max_size=20),
            "images": st.lists(images, max_size=2),
            "tool_calls": tool_calls,
            "tool_name": st.text(max_size=6) | st.none(),
            "tool_call_id": st.text(max_size=6) | st.none(),
            "thinking": st.text(max_size=6),
        },
    ),
    max_size=6,
)
chat_bodies = st.fixed_dictionaries(
    {"model": st.just(MODEL), "stream": st.booleans(), "messages": messages},
    optional={
        "options": options,
        "keep_alive": keep_alives,
        "format": st.dictionaries(st.text(max_size=6), json_values, max_size=3) | st.text(max_size=6) | st.just("json"),
        "think": st.booleans() | st.text(max_size=6) | st.sampled_from(["low", "high", "max"]),
        "tools": st.lists(st.fixed_dictionaries(
            {"function": st.fixed_dictionaries({"name": st.text(max_size=6)}, optional={
                "parameters": st.dictionaries(st.text(max_size=6), json_values, max_size=3)})}
        ), max_size=2),
        "logprobs": st.booleans(),
        "top_logprobs": st.integers() | big_numbers.filter(lambda n: isinstance(n, int)),
    },
)


async def answer_is_well_formed(session: aiohttp.ClientSession, url: str, body: bytes) -> None:
    async with session.post(url + "/api/chat", data=body) as resp:
        raw = await resp.read()
        assert resp.status < 500, (resp.status, raw, body[:500])
        if resp.status >= 400:
            answer = json.loads(raw)
            assert list(answer) == ["error"] and isinstance(answer["error"], str), raw


@FUZZ
@given(body=chat_bodies)
async def test_any_chat_request_is_answered_without_a_server_error(body: dict[str, Any]) -> None:
    async with (
        FaultUpstream() as upstream,
        shim_in_loop("--backend", upstream.url, "--backend-kind", "generic") as url,
        aiohttp.ClientSession() as session,
    ):
        await answer_is_well_formed(session, url, json.dumps(body).encode())


@FUZZ
@given(body=json_values | st.binary(max_size=40))
async def test_any_body_at_all_is_answered_without_a_server_error(body: Any) -> None:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    async with (
        FaultUpstream() as upstream,
        shim_in_loop("--backend", upstream.url, "--backend-kind", "generic") as url,
        aiohttp.ClientSession() as session,
    ):
        await answer_is_well_formed(session, url, data)
