"""Replays recorded backend SSE streams through the shipped ``StreamPipeline`` with fixed fake clocks.

The expected NDJSON under ``tests/fixtures/streams/`` was produced by ``render`` below; rerun
``python tests/stream_replay.py`` after a deliberate change of output and review the diff.
A backend error ends the output with the ``{"error": ...}`` line a client would see; the writing
loop is the one ``routes.relay.stream`` runs: chunks, then the error, stop at the pipeline's end.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

import msgspec

from ollama_shim.translate.pipeline import Produced, StreamPipeline
from ollama_shim.translate.stream import Endpoint, OllamaChunk, StreamContext, StreamTranslator
from ollama_shim.wire.ollama import ErrorResponse

STREAMS = Path(__file__).parent / "fixtures" / "streams"

STARTED_NS = 5_000_000_000
LOAD_NS = 20_000_000
WALL_START_NS = 1_761_499_281_196_249_000

# Fixtures whose /api/generate rendering is also pinned.
GENERATE_FIXTURES = (
    "llamacpp_text_timings",
    "llamacpp_reasoning",
    "llamacpp_tool_calls",
    "lmstudio_inline_think",
    "legacy_completions_text",
    "finish_length",
    "vllm_reasoning_error",
)


class FakeClock:
    """Returns ``start + step``, ``start + 2*step``, ... on successive calls."""

    def __init__(self, start: int, step: int) -> None:
        self.now = start
        self.step = step

    def __call__(self) -> int:
        self.now += self.step
        return self.now


def context(endpoint: Endpoint, **overrides: object) -> StreamContext:
    fields: dict[str, object] = {
        "model": "shim-test:latest",
        "endpoint": endpoint,
        "started_ns": STARTED_NS,
        "load_ns": LOAD_NS,
    }
    fields.update(overrides)
    return StreamContext(**fields)  # type: ignore[arg-type]


def translator(ctx: StreamContext) -> StreamTranslator:
    # monotonic: first token at start + 180 ms, end at start + 430 ms; wall clock steps 1 ms.
    return StreamTranslator(
        ctx, clock=FakeClock(STARTED_NS - 70_000_000, 250_000_000), wallclock=FakeClock(WALL_START_NS, 1_000_000)
    )


def cut(data: bytes, offsets: Iterable[int]) -> Iterator[bytes]:
    """``data`` split at the given (sorted) offsets."""
    start = 0
    for offset in offsets:
        yield data[start:offset]
        start = offset
    yield data[start:]


def pipeline(ctx: StreamContext) -> StreamPipeline[OllamaChunk]:
    return StreamPipeline(translator(ctx))


def lines(produced: Produced[OllamaChunk]) -> bytes:
    """NDJSON for what one step produced; its error as the last ``{"error"}`` line."""
    out = b"".join(msgspec.json.encode(chunk) + b"\n" for chunk in produced.chunks)
    if produced.error is not None:
        out += msgspec.json.encode(ErrorResponse(produced.error.message)) + b"\n"
    return out


def render(reads: Iterable[bytes], ctx: StreamContext) -> bytes:
    """What the shim would write for this stream, as NDJSON bytes."""
    stream = pipeline(ctx)
    out = bytearray()
    for read in reads:
        out += lines(stream.feed(read))
        if stream.done:
            return bytes(out)
    out += lines(stream.close())
    return bytes(out)


def expected_path(name: str, endpoint: Endpoint) -> Path:
    return STREAMS / f"{name}.{endpoint}.ndjson"


def fixture_names() -> list[str]:
    return sorted(path.stem for path in STREAMS.glob("*.sse"))


def regenerate() -> None:
    for name in fixture_names():
        data = (STREAMS / f"{name}.sse").read_bytes()
        endpoints: list[Endpoint] = ["chat", "generate"] if name in GENERATE_FIXTURES else ["chat"]
        for endpoint in endpoints:
            expected_path(name, endpoint).write_bytes(render([data], context(endpoint)))
            print("wrote", expected_path(name, endpoint).name, file=sys.stderr)


if __name__ == "__main__":
    regenerate()
