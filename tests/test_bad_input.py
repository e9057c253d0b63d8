"""Bad input table: every malformed request gets Ollama's status and a ``{"error": "..."}`` JSON body,
the backend is never called for it, and the shim goes on serving.

Statuses and wording follow Ollama (shared/reference/ollama-api.md sections 0-3): a missing model
is 400 ``model is required`` on chat and embed but 404 ``model '' not found`` on generate; an
unknown model 404; unknown path 404 ``404 page not found``; wrong method 405 ``405 method not
allowed``. Two deliberate differences: a body over ``--max-body-bytes`` is 413 (Ollama has no
limit), and an option of the wrong type is 400 with Ollama's text where Ollama answers 500 (the
check happens in our translation, before any backend is involved).
"""

from __future__ import annotations

import json

import aiohttp
import pytest

from support.faults import MODEL, FaultUpstream
from support.shim import shim_in_loop

LIMIT = 64 * 1024
HI = [{"role": "user", "content": "hi"}]


def chat(**fields: object) -> bytes:
    return json.dumps({"model": MODEL, "messages": HI, **fields}).encode()


def _nested(opening: bytes, depth: int = 30_000) -> bytes:
    """A chat body (no messages) whose field opened by ``opening`` holds arrays nested ``depth``
    deep; the brackets ``opening`` leaves open are closed after them."""
    still_open: list[int] = []
    for byte in opening:
        if byte in b"[{":
            still_open.append(byte + 2)  # the closing "]" or "}"
        elif byte in b"]}":
            still_open.pop()
    closing = bytes(reversed(still_open))
    return b'{"model":"%s",%s%s%s%s}' % (MODEL.encode(), opening, b"[" * depth, b"]" * depth, closing)


CASES = [
    # id, method, path, body, status, error (exact, or a prefix when it ends with "…")
    ("invalid-json", "POST", "/api/chat", b"{not json", 400, "invalid JSON in request body: …"),
    ("not-utf8", "POST", "/api/generate", b"\xff\xfe", 400, "invalid JSON in request body: …"),
    ("empty-body", "POST", "/api/chat", b"", 400, "missing request body"),
    ("body-not-object", "POST", "/api/chat", b"[1, 2]", 400, "invalid request: Expected `object`, got `array`"),
    ("model-not-string", "POST", "/api/chat", b'{"model": 5, "messages": []}', 400,
     "invalid request: Expected `str`, got `int` - at `$.model`"),
    ("stream-not-bool", "POST", "/api/chat", chat(stream="yes"), 400,
     "invalid request: Expected `bool | null`, got `str` - at `$.stream`"),
    ("content-not-string", "POST", "/api/chat", chat(messages=[{"role": "user", "content": ["a"]}]), 400,
     "invalid request: Expected `str`, got `array` - at `$.messages[0].content`"),
    ("chat-missing-model", "POST", "/api/chat", json.dumps({"messages": HI}).encode(), 400, "model is required"),
    ("generate-missing-model", "POST", "/api/generate", b'{"prompt": "hi"}', 404, "model '' not found"),
    ("embed-missing-model", "POST", "/api/embed", b'{"input": "hi"}', 400, "model is required"),
    ("messages-not-list", "POST", "/api/chat", chat(messages={"role": "user", "content": "hi"}), 400,
     "invalid request: Expected `array | null`, got `object` - at `$.messages`"),
    ("unknown-role", "POST", "/api/chat", chat(messages=[{"role": "wizard", "content": "hi"}]), 400,
     'invalid role "wizard": must be one of system, user, assistant, tool'),
    ("bad-base64-image-chat", "POST", "/api/chat",
     chat(messages=[{"role": "user", "content": "hi", "images": ["!!not base64"]}]), 400,
     "invalid image in messages[0].images[0]: illegal base64 data"),
    ("data-url-image-generate", "POST", "/api/generate",
     json.dumps({"model": MODEL, "prompt": "hi", "images": ["data:image/png;base64,AAAA"]}).encode(), 400,
     "invalid image in images[0]: illegal base64 data"),
    ("unknown-model-chat", "POST", "/api/chat", chat(model="no-such-model"), 404, "model 'no-such-model' not found"),
    ("unknown-model-generate", "POST", "/api/generate", b'{"model": "nope:7b", "prompt": "hi"}', 404,
     "model 'nope:7b' not found"),
    ("unknown-model-embed", "POST", "/api/embed", b'{"model": "nope", "input": "hi"}', 404,
     'model "nope" not found, try pulling it first'),
    ("option-wrong-type", "POST", "/api/chat", chat(options={"temperature": "hot"}), 400,
     'option "temperature" must be of type float32'),
    ("options-not-object", "POST", "/api/chat", chat(options="fast"), 400,
     "invalid request: Expected `object | null`, got `str` - at `$.options`"),
    ("body-over-limit", "POST", "/api/chat", chat(messages=[{"role": "user", "content": "a" * LIMIT}]), 413,
     f"request body is larger than the limit of {LIMIT} bytes"),
    ("body-over-limit-passthrough", "POST", "/v1/chat/completions", b"x" * (LIMIT + 1), 413,
     f"request body is larger than the limit of {LIMIT} bytes"),
    # nesting beyond MAX_JSON_DEPTH, wherever it is (the decoder would run out of stack first)
    *((f"deep-{where}", "POST", path, body, 400, "invalid JSON in request body: exceeded max depth of 256")
      for where, path, body in [
          ("options", "/api/chat", _nested(b'"options":{"a":')),
          ("format", "/api/chat", _nested(b'"format":{"a":')),
          ("tool-parameters", "/api/chat", _nested(b'"tools":[{"function":{"name":"f","parameters":')),
          ("tool-call-arguments", "/api/chat",
           _nested(b'"messages":[{"role":"assistant","tool_calls":[{"function":{"name":"f","arguments":{"a":')),
          ("unknown-field", "/api/chat", _nested(b'"extra":')),
          ("whole-body", "/api/chat", b"[" * 30_000 + b"]" * 30_000),
          ("embed-input", "/api/embed", _nested(b'"input":')),
          ("generate-options", "/api/generate", _nested(b'"prompt":"hi","options":{"a":')),
          ("257-levels", "/api/chat", _nested(b'"options":{"a":', 255)),
      ]),
    ("deep-tool-call-argument-string", "POST", "/api/chat",
     chat(messages=[{"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": "[" * 30_000}}]}]),
     400, 'invalid tool call arguments for "f": exceeded max depth of 256'),
    # numbers beyond float64, in Go's words (Ollama decodes options as float64)
    ("option-1e400", "POST", "/api/chat", chat(options={"temperature": 1}).replace(b"1}", b"1e400}"), 400,
     "json: cannot unmarshal number 1e400 into Go value of type float64"),
    ("option-400-digits", "POST", "/api/chat", chat(options={"top_k": 10**400}), 400,
     f"json: cannot unmarshal number {'1' + '0' * 39}… into Go value of type float64"),
    ("keep-alive-400-digits", "POST", "/api/chat", chat(keep_alive="1" * 400), 400,
     f'time: invalid duration "{"1" * 100}…"'),
    ("keep-alive-duration-overflow", "POST", "/api/chat", chat(keep_alive="9999999999999h"), 400,
     'time: invalid duration "9999999999999h"'),
    ("keep-alive-number-overflow", "POST", "/api/chat", chat(keep_alive=1e300), 400,
     'time: invalid duration "1e300"'),
    ("keep-alive-1e400", "POST", "/api/chat", chat(keep_alive=1).replace(b'"keep_alive": 1', b'"keep_alive": 1e400'),
     400, "json: cannot unmarshal number 1e400 into Go value of type float64"),
    ("unknown-path", "GET", "/api/nope", None, 404, "404 page not found"),
    ("unknown-path-post", "POST", "/no/such/thing", b"{}", 404, "404 page not found"),
    ("wrong-method-chat", "GET", "/api/chat", None, 405, "405 method not allowed"),
    ("wrong-method-tags", "DELETE", "/api/tags", None, 405, "405 method not allowed"),
]


@pytest.mark.parametrize(("method", "path", "body", "status", "error"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
async def test_bad_input(method: str, path: str, body: bytes | None, status: int, error: str) -> None:
    async with (
        FaultUpstream() as upstream,
        shim_in_loop("--backend", upstream.url, "--backend-kind", "generic", "--max-body-bytes", str(LIMIT)) as url,
        aiohttp.ClientSession() as session,
    ):
        async with session.request(method, url + path, data=body) as resp:
            raw = await resp.read()
            assert resp.status == status, raw
            assert resp.headers["Content-Type"] == "application/json; charset=utf-8"
        answer = json.loads(raw)
        assert list(answer) == ["error"]
        assert isinstance(answer["error"], str)
        if error.endswith("…"):
            assert answer["error"].startswith(error[:-1]), answer
        else:
            assert answer["error"] == error
        assert upstream.calls == []  # refused before any backend work
        async with session.post(url + "/api/chat", data=chat(stream=False)) as ok:  # still serving
            assert ok.status == 200
            assert (await ok.json())["done"] is True
        assert len(upstream.calls) == 1


async def test_nesting_at_the_limit_is_accepted(upstream: FaultUpstream) -> None:
    body = _nested(b'"stream":false,"messages":[{"role":"user","content":"hi"}],"options":{"a":', 254)  # 256 levels
    async with (
        shim_in_loop("--backend", upstream.url, "--backend-kind", "generic") as url,
        aiohttp.ClientSession() as session,
        session.post(url + "/api/chat", data=body) as resp,
    ):
        assert resp.status == 200, await resp.text()
