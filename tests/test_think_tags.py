"""``ThinkTagSplitter`` holds back only a bounded amount of text, whatever the stream: leading
whitespace past ``MAX_HELD_WHITESPACE`` is released as answer text, and a ``<think>`` may still
follow it. Measured with the amount of text not yet returned, never with a clock."""

from __future__ import annotations

import pytest

from ollama_shim.translate.think_tags import MAX_HELD_WHITESPACE, ThinkTagSplitter

CHUNKS = 200_000
HELD_BOUND = MAX_HELD_WHITESPACE + len("<think>")


def feed_all(pieces: list[str]) -> tuple[str, str, int]:
    """(thinking, answer, most characters ever held back) for ``pieces`` fed one by one."""
    splitter = ThinkTagSplitter()
    thinking: list[str] = []
    answer: list[str] = []
    fed = returned = most_held = 0
    for piece in pieces:
        t, a = splitter.feed(piece)
        thinking.append(t)
        answer.append(a)
        fed += len(piece)
        returned += len(t) + len(a)
        most_held = max(most_held, fed - returned)
    t, a = splitter.flush()
    return "".join(thinking) + t, "".join(answer) + a, most_held


@pytest.mark.parametrize("space", [" ", "\n", "\t", "\u3000"], ids=["space", "newline", "tab", "ideographic"])
def test_a_stream_of_whitespace_is_not_held_back(space: str) -> None:
    thinking, answer, most_held = feed_all([space] * CHUNKS)
    assert most_held <= HELD_BOUND
    assert (thinking, answer) == ("", space * CHUNKS)


@pytest.mark.parametrize(
    ("after", "thinking", "answer_tail"),
    [("<think>plan</think>done", "plan", "done"), ("answer", "", "answer"), ("<thin", "", "<thin")],
    ids=["then-think", "then-text", "then-a-partial-tag"],
)
def test_whitespace_then_more(after: str, thinking: str, answer_tail: str) -> None:
    got_thinking, answer, most_held = feed_all([" "] * CHUNKS + list(after))
    assert most_held <= HELD_BOUND
    assert got_thinking == thinking
    assert answer.endswith(answer_tail)
    assert set(answer[: -len(answer_tail)]) == {" "}
    # whitespace still held when the tag came is dropped with it, the rest was answer already
    assert CHUNKS - HELD_BOUND <= len(answer) - len(answer_tail) <= CHUNKS


def test_one_big_whitespace_chunk_is_released_at_once() -> None:
    splitter = ThinkTagSplitter()
    assert splitter.feed(" " * CHUNKS + "<th") == ("", " " * CHUNKS)
    assert splitter.feed("ink>x</think>y") == ("x", "y")


@pytest.mark.parametrize("pieces", [["<thi", "nk>"], ["  <", "think", ">"], ["\n", "\n", "<think>"]])
def test_short_leading_whitespace_is_still_dropped_with_the_tag(pieces: list[str]) -> None:
    assert feed_all([*pieces, "a</think>b"])[:2] == ("a", "b")


def test_held_length_counts_what_is_not_yet_returned() -> None:
    splitter = ThinkTagSplitter()
    splitter.feed("  ")
    splitter.feed("<thi")
    assert splitter.held_length == 6
