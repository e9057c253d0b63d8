"""Fitting a long chat into the context (``translate.truncation``): the keep/drop rule, the search
over the cut point, the budget, the estimate and the recognised context refusals."""

from __future__ import annotations

import math

import msgspec
import pytest

from ollama_shim.translate.truncation import (
    DEFAULT_RESERVE,
    IMAGE_TOKENS,
    Budget,
    CutSearch,
    Overflow,
    budget_for,
    context_overflow,
    estimated_tokens,
    kept_indices,
    surely_fits,
)
from ollama_shim.wire import openai as oai


def _search(costs: list[int], limit: int) -> tuple[int, int]:
    """(cut, counts) with each message costing ``costs[i]`` tokens (system messages included)."""
    roles = ["user"] * len(costs)
    search = CutSearch(len(costs), limit)
    while (cut := search.next_cut()) is not None:
        search.report(sum(costs[i] for i in kept_indices(roles, cut)))
    return search.cut, search.counts


@pytest.mark.parametrize(
    ("roles", "cut", "kept"),
    [
        (["system", "user", "assistant", "user"], 0, [0, 1, 2, 3]),
        (["system", "user", "assistant", "user"], 2, [0, 2, 3]),  # the system message stays
        (["user", "system", "assistant", "system", "user"], 4, [1, 3, 4]),  # re-inserted in order
        (["user", "assistant", "system", "user"], 1, [1, 2, 3]),  # a later system message stays in place
        (["user", "assistant", "tool", "user"], 2, [2, 3]),  # a tool result may be orphaned
        (["SYSTEM", "user", "user"], 2, [0, 2]),  # roles in any case
        (["user", "assistant", "user"], 2, [2]),  # the last message always
        (["user"], 0, [0]),
    ],
)
def test_kept_messages(roles: list[str], cut: int, kept: list[int]) -> None:
    assert kept_indices(roles, cut) == kept


@pytest.mark.parametrize(
    ("costs", "limit", "cut"),
    [
        ([10, 10, 10], 30, 0),  # fits: nothing dropped
        ([10, 10, 10], 29, 1),
        ([10, 10, 10], 20, 1),
        ([10, 10, 10], 19, 2),
        ([10, 10, 10], 5, 2),  # nothing fits: the last message alone
        ([50, 1, 1, 1, 1], 4, 1),
        ([1, 1, 1, 1, 50], 10, 4),
        ([100], 5, 0),  # one message: nothing to drop
        ([5, 5], 6, 1),
    ],
)
def test_search_finds_the_longest_fitting_suffix(costs: list[int], limit: int, cut: int) -> None:
    assert _search(costs, limit)[0] == cut


def test_search_with_system_messages_counts_them_in_every_candidate() -> None:
    roles = ["system", "user", "assistant", "user", "assistant", "user"]
    costs = [40, 10, 10, 10, 10, 10]
    search = CutSearch(len(roles), 70)
    seen: list[list[int]] = []
    while (cut := search.next_cut()) is not None:
        kept = kept_indices(roles, cut)
        seen.append(kept)
        search.report(sum(costs[i] for i in kept))
    assert kept_indices(roles, search.cut) == [0, 3, 4, 5]
    assert all(kept[0] == 0 for kept in seen)


def test_a_chat_that_fits_is_counted_once() -> None:
    assert _search([10] * 120, 10_000) == (0, 1)


@pytest.mark.parametrize("length", [3, 17, 60, 120, 1000])
def test_a_long_chat_is_counted_a_logarithmic_number_of_times(length: int) -> None:
    for limit in (1, 35, 10 * length // 2, 10 * length - 1, 10 * length):
        cut, counts = _search([10] * length, limit)
        assert counts <= 1 + math.ceil(math.log2(length - 1))
        expected = 0 if 10 * length <= limit else min(length - 1, max(1, length - limit // 10))
        assert cut == expected, (length, limit)


def test_report_without_a_probe_is_a_defect() -> None:
    search = CutSearch(1, 10)
    with pytest.raises(ValueError, match="without a cut"):
        search.report(5)


@pytest.mark.parametrize(
    ("context", "options", "expected"),
    [
        (4096, None, Budget(4096, DEFAULT_RESERVE)),
        (4096, {"num_predict": 100}, Budget(4096, 100)),
        (4096, {"num_predict": 100_000}, Budget(4096, 2048)),  # at most half the context
        (4096, {"num_predict": -1}, Budget(4096, DEFAULT_RESERVE)),  # unlimited: the default reserve
        (4096, {"num_predict": -2}, Budget(4096, DEFAULT_RESERVE)),
        (4096, {"num_ctx": 2048}, Budget(2048, 512)),  # a smaller num_ctx applies
        (4096, {"num_ctx": 8192}, Budget(4096, DEFAULT_RESERVE)),  # a larger one cannot
        (None, {"num_ctx": 2048}, Budget(2048, 512)),
        (None, None, None),
        (None, {"num_ctx": "big"}, None),
        (1000, {"num_ctx": True}, Budget(1000, 250)),
        (2048, None, Budget(2048, 512)),  # a quarter of a small context
    ],
)
def test_budget(context: int | None, options: dict[str, object] | None, expected: Budget | None) -> None:
    assert budget_for(context, options) == expected


def test_budget_limit_is_never_below_one() -> None:
    assert Budget(context=10, reserve=20).limit == 1


def _request(*messages: oai.OutMessage, tools: list[oai.OutTool] | None = None) -> oai.ChatCompletionRequest:
    return oai.ChatCompletionRequest(model="m", messages=list(messages), tools=tools)


IMAGE = oai.ImagePart(image_url=oai.ImageURL(url="data:image/png;base64,AAAA"))


@pytest.mark.parametrize(
    ("request_", "expected"),
    [
        (_request(oai.OutMessage(role="user", content="x" * 300)), 100 + 16),
        (_request(oai.OutMessage(role="user", content="é" * 30)), 20 + 16),  # UTF-8 bytes, not characters
        (_request(oai.OutMessage(role="user", content=[oai.ContentPart(text="abc"), IMAGE])), 1 + 16 + IMAGE_TOKENS),
        (_request(oai.OutMessage(role="user", content="ab"), oai.OutMessage(role="assistant", content="cd")), 2 + 24),
        (_request(oai.OutMessage(role="assistant", content=None, tool_calls=[
            oai.OutToolCall(id="1", function=oai.FunctionCall(name="fn", arguments='{"a":1}'))])), 3 + 16),
    ],
)
def test_estimate(request_: oai.ChatCompletionRequest, expected: int) -> None:
    assert estimated_tokens(request_) == expected


def test_estimate_counts_tool_definitions() -> None:
    tool = oai.OutTool(function=oai.OutFunction(name="get_weather", parameters={"type": "object"}))
    plain = _request(oai.OutMessage(role="user", content="hi"))
    with_tools = _request(oai.OutMessage(role="user", content="hi"), tools=[tool])
    assert estimated_tokens(with_tools) - estimated_tokens(plain) == math.ceil(len(msgspec.json.encode([tool])) / 3)


@pytest.mark.parametrize(("limit", "fits"), [(100 + 8 + 256, True), (100 + 8 + 255, False)])
def test_surely_fits_allows_a_token_per_byte(limit: int, fits: bool) -> None:
    assert surely_fits(_request(oai.OutMessage(role="user", content="x" * 100)), limit) is fits


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("request (4707 tokens) exceeds the available context size (4096 tokens), try increasing it",
         Overflow(context=4096, prompt_tokens=4707)),
        ("the request exceeds the available context size, try increasing it", Overflow(None, None)),
        ("This model's maximum context length is 2048 tokens. However, you requested 3000 tokens "
         "(2900 in the messages, 100 in the completion).", Overflow(context=2048, prompt_tokens=2900)),
        ("This model's maximum context length is 2048 tokens. However, your request has 2100 input tokens.",
         Overflow(context=2048, prompt_tokens=2100)),
        ("Trying to keep the first 5000 tokens when context the overflows. However, the model is loaded with "
         "context length of only 4096 tokens, which is not enough.", Overflow(context=4096, prompt_tokens=None)),
        ("model 'x' not found", None),
        ("Loading model", None),
    ],
)
def test_context_refusals_are_recognised(message: str, expected: Overflow | None) -> None:
    assert context_overflow(message) == expected
