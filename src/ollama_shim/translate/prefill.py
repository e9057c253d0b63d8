"""Assistant prefill ("Continue"): a chat whose last message is the assistant's own partial answer.

Ollama treats such a final assistant message as the start of the answer and sends back only the
new text. Backends differ (``Dialect.prefill``):

- ``echoes_prefix`` (llama.cpp): the turn is continued, but the answer starts with the partial
  text again; ``PrefixStripper`` removes that echo from the answer text, wherever the chunk
  boundaries fall.
- ``continue_flag`` (vLLM): the request must say ``continue_final_message: true`` with
  ``add_generation_prompt: false``, else the partial turn is closed and a new one starts.
- ``none`` (LM Studio, OpenAI, OpenRouter, unknown servers): the message is sent as it is and
  the backend decides; what it answers is passed on unchanged.

A final assistant message counts as a prefill only when it has text and no tool calls (llama.cpp
refuses to continue a tool call; vLLM cannot).

May import: stdlib, ``ollama_shim.wire``, ``ollama_shim.dialect``.
"""

from __future__ import annotations

from ollama_shim.dialect import Dialect
from ollama_shim.wire import ollama

__all__ = ["PrefixStripper", "echoed_prefix", "prefill_text", "sends_continue_flag"]


def prefill_text(messages: list[ollama.RequestMessage] | None) -> str | None:
    """The partial answer a chat ends with, or None when its last message is not a prefill."""
    if not messages:
        return None
    last = messages[-1]
    if last.role.lower() != "assistant" or last.tool_calls or not last.content:
        return None
    return last.content


def echoed_prefix(messages: list[ollama.RequestMessage] | None, dialect: Dialect) -> str:
    """The text a backend of ``dialect`` repeats at the start of its answer ("" for none)."""
    text = prefill_text(messages) if dialect.prefill == "echoes_prefix" else None
    return text or ""


def sends_continue_flag(messages: list[ollama.RequestMessage] | None, dialect: Dialect) -> bool:
    """Whether the request must ask to continue the final message (vLLM's flags)."""
    return dialect.prefill == "continue_flag" and prefill_text(messages) is not None


class PrefixStripper:
    """Removes ``prefix`` from the start of a text that arrives in pieces.

    While the text so far agrees with the prefix it is held back (at most ``len(prefix)``
    characters, kept as a count: what is held is the prefix's own start). Once the whole prefix
    was seen, the rest passes; if the text parts from the prefix first, or ends before it was
    complete (``flush``), what was held is released, then everything passes unchanged. Each
    character is compared at most once.
    """

    __slots__ = ("_matched", "_passing", "_prefix")

    def __init__(self, prefix: str) -> None:
        self._prefix = prefix
        self._matched = 0  # characters of the prefix seen so far
        self._passing = not prefix  # decided: the rest passes unchanged

    def feed(self, text: str) -> str:
        """The part of ``text`` that is not (or is no longer possibly) the echoed prefix."""
        if self._passing or not text:
            return text
        remaining = len(self._prefix) - self._matched
        # Only ``text``'s own length is compared: a prefix that arrives a byte at a time stays linear.
        if len(text) >= remaining:
            if self._prefix.endswith(text[:remaining]):  # the prefix completes here
                self._passing = True
                return text[remaining:]
        elif self._prefix.startswith(text, self._matched):  # still agreeing; hold it
            self._matched += len(text)
            return ""
        self._passing = True  # parted from the prefix: not an echo
        return self._release() + text

    def flush(self) -> str:
        """At the end of the answer: whatever is still held (the answer was not an echo)."""
        if self._passing:
            return ""
        self._passing = True
        return self._release()

    def _release(self) -> str:
        held, self._matched = self._prefix[: self._matched], 0
        return held
