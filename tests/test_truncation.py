"""Fitting a long chat into the context (``translate.truncation``): the keep/drop rule, the search
over the cut point, the budget, the estimate, the recognised context refusals, and an OpenAI chat
body forwarded as it came (its view, its room for the answer, the bound on its size)."""

from __future__ import annotations

import math

import msgspec
import pytest

from ollama_shim.translate.truncation import (
    DEFAULT_RESERVE,
    IMAGE_TOKENS,
    TEMPLATE_ALLOWANCE,
    Budget,
    CutSearch,
    Overflow,
    body_surely_fits,
    budget_for,
    context_overflow,
    estimated_tokens,
    forwarded_chat,
    forwarded_options,
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
        # an assistant's earlier thinking, sent back to llama.cpp: its template may show it
        (_request(oai.OutMessage(role="assistant", content="ab", reasoning_content="c" * 298)), 100 + 16),
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


def test_thinking_sent_back_counts_towards_surely_fits() -> None:
    thinking = _request(oai.OutMessage(role="assistant", content="x", reasoning_content="y" * 1000))
    assert not surely_fits(thinking, 1000)


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


# -- an OpenAI chat body, forwarded as it came ---------------------------------------------------------


@pytest.mark.parametrize(
    ("doc", "reserve"),
    [
        ({}, DEFAULT_RESERVE),
        ({"max_tokens": 100}, 100),
        ({"max_completion_tokens": 50, "max_tokens": 100}, 50),  # the newer name wins
        ({"max_completion_tokens": -1, "max_tokens": 100}, 100),  # not a room: the other one
        ({"max_completion_tokens": None, "max_tokens": 100}, 100),
        ({"max_tokens": 100_000}, 2048),  # at most half the context, as num_predict
        ({"max_tokens": "lots"}, DEFAULT_RESERVE),
        ({"max_tokens": True}, DEFAULT_RESERVE),
    ],
)
def test_the_room_a_forwarded_chat_asks_for(doc: dict[str, object], reserve: int) -> None:
    assert budget_for(4096, forwarded_options(doc)) == Budget(4096, reserve)


def _body(content: str) -> bytes:
    return msgspec.json.encode({"model": "m", "messages": [{"role": "user", "content": content}]})


@pytest.mark.parametrize("context", [1024, 4096, 10_000])
def test_a_body_fits_by_its_size_within_the_least_limit(context: int) -> None:
    room = Budget(context, context // 2).limit - TEMPLATE_ALLOWANCE - len(_body(""))
    assert body_surely_fits(_body("x" * room), context) is True
    assert body_surely_fits(_body("x" * (room + 1)), context) is False


def test_a_body_with_an_image_counts_the_image() -> None:
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    body = msgspec.json.encode({"model": "m", "messages": [{"role": "user", "content": [image]}]})
    without_images = 2 * (len(body) + TEMPLATE_ALLOWANCE)
    assert body_surely_fits(body, without_images) is False
    # The type tag and the key both say "image_url": counted twice, generously.
    assert body_surely_fits(body, without_images + 4 * IMAGE_TOKENS) is True


@pytest.mark.parametrize("text", ["x" * 500, "é" * 500, "\n" * 500, '"' * 500, "字" * 500, "\u2028" * 500])
def test_what_fits_by_size_fits_by_its_view(text: str) -> None:
    doc = {"model": "m", "messages": [{"role": "system", "content": "s"}, {"role": "user", "content": text},
                                      {"role": "assistant", "content": [{"type": "text", "text": text}]}]}
    body = msgspec.json.encode(doc)
    chat = forwarded_chat(msgspec.json.decode(body))
    context = 2 * (len(body) + TEMPLATE_ALLOWANCE)  # the smallest context the body fits by its size
    assert chat is not None
    assert body_surely_fits(body, context) is True
    assert surely_fits(chat.view, Budget(context, context // 2).limit) is True


def test_a_forwarded_chat_is_viewed_one_message_for_one() -> None:
    doc = {"model": "m", "x_vendor": [1], "messages": [
        {"role": "developer", "content": "be brief"},
        {"role": "user", "content": [{"type": "text", "text": "hi"}], "x_note": 1},
        {"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "AAAA"}}]},
        {"role": "assistant", "tool_calls": [{"id": "1", "function": {"name": "f", "arguments": {"a": 1}}}]},
    ]}
    chat = forwarded_chat(doc)
    assert chat is not None
    assert [m.role for m in chat.view.messages] == ["system", "user", "user", "assistant"]
    assert chat.view.messages[1].content == [oai.ContentPart(text="hi")]
    # Shapes the shim does not model are counted as their JSON text.
    assert chat.view.messages[2].content == msgspec.json.encode(doc["messages"][2]).decode()
    assert chat.view.messages[3].content == msgspec.json.encode(doc["messages"][3]).decode()


def test_a_forwarded_chat_cut_keeps_the_rest_of_the_body() -> None:
    messages = [{"role": "system", "content": "s", "x": 1}, {"role": "user", "content": "a"},
                {"role": "user", "content": "b"}]
    chat = forwarded_chat({"model": "m", "x_vendor": {"y": None}, "stop": "\n", "messages": messages})
    assert chat is not None
    cut = chat.cut_to([0, 2])
    assert cut.doc == {"model": "m", "x_vendor": {"y": None}, "stop": "\n", "messages": [messages[0], messages[2]]}
    assert [m.content for m in cut.view.messages] == ["s", "b"]
    assert chat.doc["messages"] == messages  # the original is left as it was


@pytest.mark.parametrize(
    "doc",
    [
        [],
        {"model": "m"},
        {"model": "m", "messages": "hi"},
        {"model": "m", "messages": ["hi"]},
        {"model": "m", "messages": [{"content": "no role"}]},
        {"model": "m", "messages": [{"role": 1, "content": "x"}]},
        {"model": "m", "messages": [{"role": "user", "content": "x"}], "tools": [{"type": "web_search"}]},
    ],
)
def test_a_body_the_shim_cannot_read_is_not_fitted(doc: object) -> None:
    assert forwarded_chat(doc) is None


def test_a_forwarded_chat_keeps_its_tools_for_the_estimate() -> None:
    tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}, "strict": True}}
    chat = forwarded_chat({"model": "m", "messages": [{"role": "user", "content": "x"}], "tools": [tool]})
    assert chat is not None
    assert chat.view.tools == [oai.OutTool(function=oai.OutFunction(name="f", parameters={"type": "object"}))]
