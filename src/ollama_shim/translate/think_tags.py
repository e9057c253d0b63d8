"""Inline ``<think>...</think>`` in answer text, split into thinking and answer as Ollama's
thinking parser does: only a tag that opens the content counts, whitespace right after either tag
is dropped, and a tag cut across chunks at any character is held back until it is complete.

Leading whitespace before ``<think>`` is allowed and dropped with the tag. What is held back
stays bounded and every chunk costs time linear in its own length: at most
``MAX_HELD_WHITESPACE`` characters of leading whitespace are held (past that they are released
as answer text, and a ``<think>`` may still follow), plus at most a tag's length of a partial tag.

May import: stdlib only.
"""

from __future__ import annotations

import enum

_OPEN_TAG = "<think>"
_CLOSE_TAG = "</think>"
MAX_HELD_WHITESPACE = 1024


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

    __slots__ = ("_held", "_leading", "_leading_length", "_phase")

    def __init__(self) -> None:
        self._phase = _ThinkPhase.LOOKING_FOR_OPEN_TAG
        self._held = ""  # text not yet classified: a partial tag (never longer than a tag)
        self._leading: list[str] = []  # whitespace before any tag, while looking for one
        self._leading_length = 0

    @property
    def held_length(self) -> int:
        """Characters held back, not yet returned as thinking or answer."""
        return self._leading_length + len(self._held)

    def feed(self, text: str) -> tuple[str, str]:
        """Returns the (thinking, answer) text that ``text`` completes."""
        if self._phase is _ThinkPhase.ANSWER:
            return "", text
        thinking: list[str] = []
        answer: list[str] = []
        if self._phase is _ThinkPhase.LOOKING_FOR_OPEN_TAG:
            text = self._look_for_open_tag(text, answer)
        else:
            text, self._held = self._held + text, ""
        while text:
            text = self._step(text, thinking, answer)
        return "".join(thinking), "".join(answer)

    def flush(self) -> tuple[str, str]:
        """End of content: whatever was held back is plain text of the current phase."""
        held = self._release_leading() + self._held
        self._held = ""
        if self._phase is _ThinkPhase.THINKING:
            return held, ""
        return "", held

    def _look_for_open_tag(self, text: str, answer: list[str]) -> str:
        """Before any tag: holds leading whitespace (bounded) and a partial ``<think>``; returns
        what follows the tag once it is complete, or the text to pass on as answer otherwise."""
        if not self._held:  # still in the leading whitespace: only this chunk is looked at
            rest = text.lstrip()
            if len(rest) < len(text):
                self._leading.append(text[: len(text) - len(rest)])
                self._leading_length += len(text) - len(rest)
                if self._leading_length > MAX_HELD_WHITESPACE:
                    answer.append(self._release_leading())
            text = rest
            if not text:
                return ""
        candidate, self._held = self._held + text, ""  # the held part is shorter than the tag
        if candidate.startswith(_OPEN_TAG):
            self._release_leading()  # dropped with the tag
            self._phase = _ThinkPhase.THINKING_STARTS
            return candidate[len(_OPEN_TAG) :]
        if _OPEN_TAG.startswith(candidate):
            self._held = candidate
            return ""
        self._phase = _ThinkPhase.ANSWER
        answer.append(self._release_leading())
        return candidate

    def _release_leading(self) -> str:
        leading = "".join(self._leading)
        self._leading.clear()
        self._leading_length = 0
        return leading

    def _step(self, text: str, thinking: list[str], answer: list[str]) -> str:
        """Consumes a prefix of ``text``; returns the rest."""
        phase = self._phase
        if phase in _AFTER_WHITESPACE:
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
