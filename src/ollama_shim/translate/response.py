"""Non-streamed answers: a whole OpenAI ``ChatCompletion`` in, one Ollama chat or generate object out.

The completion is replayed through ``StreamTranslator`` as a single chunk, so content,
``reasoning_content``/``reasoning``, inline ``<think>`` tags, tool calls (JSON-string arguments
parsed to objects), legacy ``choices[].text``, errors, ``done_reason`` and metrics follow exactly
the streaming rules. The pieces are then concatenated into the done chunk, as Ollama does for
``stream: false``; ``merge_pieces`` does the same for a streamed answer gathered into one, and
``text_bytes`` measures what such gathering holds.

May import: stdlib, msgspec, ``ollama_shim.wire``, ``ollama_shim.errors``, ``ollama_shim.timefmt``,
``ollama_shim.translate.stream``.
"""

from __future__ import annotations

import time

import msgspec

from ollama_shim.translate.stream import Clock, OllamaChunk, StreamContext, StreamTranslator
from ollama_shim.wire.ollama import ChatChunk, GenerateChunk
from ollama_shim.wire.openai import ChatCompletion, ChatCompletionChunk, Choice, ChunkChoice


def _choice_as_chunk_choice(choice: Choice) -> ChunkChoice:
    message = choice.message
    if message is not None and message.tool_calls:
        # Whole tool calls carry no `index`; number them so each stays a call of its own.
        calls = [msgspec.structs.replace(call, index=position) for position, call in enumerate(message.tool_calls)]
        message = msgspec.structs.replace(message, tool_calls=calls)
    return ChunkChoice(
        index=choice.index,
        delta=message,
        finish_reason=choice.finish_reason,
        text=choice.text,
        error=choice.error,
    )


def completion_as_chunk(resp: ChatCompletion) -> ChatCompletionChunk:
    """The whole completion as one stream chunk."""
    return ChatCompletionChunk(
        id=resp.id,
        model=resp.model,
        choices=[_choice_as_chunk_choice(choice) for choice in resp.choices],
        usage=resp.usage,
        timings=resp.timings,
        stats=resp.stats,
        error=resp.error,
    )


def _translate_whole(
    resp: ChatCompletion, ctx: StreamContext, clock: Clock, wallclock: Clock
) -> list[OllamaChunk]:
    translator = StreamTranslator(ctx, clock=clock, wallclock=wallclock)
    return translator.feed(completion_as_chunk(resp)) + translator.finish()


def _joined(parts: list[str | None]) -> str:
    return "".join(part for part in parts if part)


def text_bytes(chunk: OllamaChunk) -> int:
    """UTF-8 bytes of the answer and thinking text one chunk carries (what gathering keeps)."""
    if isinstance(chunk, GenerateChunk):
        return len(chunk.response.encode()) + len((chunk.thinking or "").encode())
    return len(chunk.message.content.encode()) + len((chunk.message.thinking or "").encode())


def merge_pieces(pieces: list[OllamaChunk]) -> OllamaChunk:
    """Streamed pieces (ending with the done chunk) as one ``stream: false`` answer: text and
    thinking concatenated, tool calls, ``done_reason`` and metrics from the done chunk."""
    done = pieces[-1]
    if isinstance(done, GenerateChunk):
        return msgspec.structs.replace(
            done,
            response=_joined([p.response for p in pieces if isinstance(p, GenerateChunk)]),
            thinking=_joined([p.thinking for p in pieces if isinstance(p, GenerateChunk)]) or None,
        )
    chats = [p for p in pieces if isinstance(p, ChatChunk)]
    message = msgspec.structs.replace(
        done.message,
        content=_joined([p.message.content for p in chats]),
        thinking=_joined([p.message.thinking for p in chats]) or None,
    )
    return msgspec.structs.replace(done, message=message)


def completion_to_ollama(
    resp: ChatCompletion,
    ctx: StreamContext,
    clock: Clock = time.monotonic_ns,
    wallclock: Clock = time.time_ns,
) -> OllamaChunk:
    """The answer for ``stream: false``, in the shape of ``ctx.endpoint``."""
    return merge_pieces(_translate_whole(resp, ctx, clock, wallclock))

