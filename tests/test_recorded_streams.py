"""Streams recorded from the real llama-server (tests/fixtures/recorded/*.sse), replayed through the
translator whole and cut at every byte offset.

The expected answer is computed independently from the raw frames (json.loads of each ``data:``
line), so these tests check the translator against what the backend really sent.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stream_replay import context, cut, render

RECORDED = Path(__file__).parent / "fixtures" / "recorded"
STREAMS = sorted(p.name for p in RECORDED.glob("*.sse"))


def _frames(raw: bytes) -> list[dict]:
    lines = raw.decode().splitlines()
    return [json.loads(line[5:]) for line in lines if line.startswith("data:") and line[5:].strip() != "[DONE]"]


def _expected(raw: bytes) -> tuple[str, str, int, int]:
    text, finish, usage, timings = "", None, None, None
    for frame in _frames(raw):
        for choice in frame.get("choices", []):
            delta = choice.get("delta") or {}
            text += delta.get("content") or choice.get("text") or ""
            finish = choice.get("finish_reason") or finish
        usage = frame.get("usage") or usage
        timings = frame.get("timings") or timings
    prompt = timings["prompt_n"] + timings["cache_n"] if timings else usage["prompt_tokens"]
    evals = timings["predicted_n"] if timings else usage["completion_tokens"]
    return text, "length" if finish == "length" else "stop", prompt, evals


def test_there_are_recorded_streams() -> None:
    assert len(STREAMS) >= 5


@pytest.mark.parametrize("name", STREAMS)
def test_recorded_stream_translates_faithfully(name: str) -> None:
    raw = (RECORDED / name).read_bytes()
    text, reason, prompt_count, eval_count = _expected(raw)
    whole = render([raw], context("chat"))
    lines = [json.loads(line) for line in whole.splitlines()]
    assert "".join(line["message"]["content"] for line in lines) == text
    done = lines[-1]
    assert done["done"] is True
    assert all(not line["done"] for line in lines[:-1])
    assert (done["done_reason"], done["prompt_eval_count"], done["eval_count"]) == (reason, prompt_count, eval_count)
    assert done["prompt_eval_duration"] > 0
    assert done["eval_duration"] > 0


@pytest.mark.parametrize("name", STREAMS)
def test_recorded_stream_survives_every_cut(name: str) -> None:
    raw = (RECORDED / name).read_bytes()
    whole = render([raw], context("chat"))
    for offset in range(1, len(raw)):
        assert render(cut(raw, [offset]), context("chat")) == whole, f"cut at byte {offset}"
