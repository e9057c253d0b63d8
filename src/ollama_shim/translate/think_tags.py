"""Inline ``<think>...</think>`` in answer text, split into thinking and answer as Ollama's
thinking parser does: only a tag that opens the content counts, whitespace right after either tag
is dropped, and a tag cut across chunks at any character is held back until it is complete.

May import: stdlib only.
"""

from __future__ import annotations

import enum

_OPEN_TAG = "<think>"
_CLOSE_TAG = "</think>"


class _ThinkPhase(enum.Enum):
    LOOKING_FOR_OPEN_TAG = enum.auto()  # only leading whitespace (or part of "<think>") seen
    THINKING_STARTS = enum.auto()  # after "<think>": leading whitespace of the thinking is dropped
    THINKING = enum.auto()
    ANSWER_STARTS = enum.auto()  # after "</think>": leading whitespace of the answer is dropped
    ANSWER = enum.auto()


# The phases that drop leading whitespace, and the phase that follows once text arrives.
_AFTER_WHITESPACE = {
    _ThinkPhase.THINKING_STARTS: _ThinkPhase.THINKING,
    _ThinkPhase.ANSWER_STARTS: _ThinkPhase.ANSWER,
}


def _partial_tag_length(text: str, tag: str) -> int:
    """Length of the longest tail of ``text`` that could be the start of ``tag``."""
    start = text.rfind("<", max(0, len(text) - len(tag) + 1))
    if start >= 0 and tag.startswith(text[start:]):
        return len(text) - start
    return 0


class ThinkTagSplitter:
    """Splits content into (thinking, answer) when it opens with ``<think>``, as Ollama's parser
    does: only a leading tag counts, so an answer that talks about ``<think>`` is left alone."""

    __slots__ = ("_held", "_phase")

    def __init__(self) -> None:
        self._phase = _ThinkPhase.LOOKING_FOR_OPEN_TAG
        self._held = ""  # text not yet classified: a possible (partial) tag

    def feed(self, text: str) -> tuple[str, str]:
        """Returns the (thinking, answer) text that ``text`` completes."""
        if self._phase is _ThinkPhase.ANSWER:
            return "", text
        text, self._held = self._held + text, ""
        thinking: list[str] = []
        answer: list[str] = []
        while text:
            text = self._step(text, thinking, answer)
        return "".join(thinking), "".join(answer)

    def flush(self) -> tuple[str, str]:
        """End of content: whatever was held back is plain text of the current phase."""
        held, self._held = self._held, ""
        if self._phase is _ThinkPhase.THINKING:
            return held, ""
        return "", held

    def _step(self, text: str, thinking: list[str], answer: list[str]) -> str:
        """Consumes a prefix of ``text``; returns the rest."""
        phase = self._phase
        if phase is _ThinkPhase.LOOKING_FOR_OPEN_TAG:
            stripped = text.lstrip()
            if stripped.startswith(_OPEN_TAG):
                self._phase = _ThinkPhase.THINKING_STARTS
                return stripped[len(_OPEN_TAG) :]
            if _OPEN_TAG.startswith(stripped):
                self._held = text
                return ""
            self._phase = _ThinkPhase.ANSWER
        elif phase in _AFTER_WHITESPACE:
            text = text.lstrip()
            if text:
                self._phase = _AFTER_WHITESPACE[phase]
            return text
        elif phase is _ThinkPhase.THINKING:
            return self._take_thinking(text, thinking)
        answer.append(text)
        return ""

    def _take_thinking(self, text: str, thinking: list[str]) -> str:
        end = text.find(_CLOSE_TAG)
        if end >= 0:
            thinking.append(text[:end])
            self._phase = _ThinkPhase.ANSWER_STARTS
            return text[end + len(_CLOSE_TAG) :]
        keep = _partial_tag_length(text, _CLOSE_TAG)
        thinking.append(text[: len(text) - keep])
        self._held = text[len(text) - keep :]
        return ""
