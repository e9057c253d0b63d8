"""Fitting a long chat into the model's context, as Ollama does: which messages to keep.

Ollama drops the oldest messages until the prompt fits: system messages are always kept (those
before the cut are put back at the front, in their order), the last message is always kept, and
nothing else is: a tool result whose call was dropped stays (orphaned), and the images of a
dropped message go with it. If even the last message alone does not fit, the system messages and
the last message are sent and the backend answers what it answers.

Counting is the caller's (it may need the backend's tokenizer), so this module decides and the
caller counts, through ``CutSearch``::

    search = CutSearch(len(messages), budget.limit)
    while (cut := search.next_cut()) is not None:
        search.report(await count(kept_indices(roles, cut)))
    keep = kept_indices(roles, search.cut)

The whole chat is counted first (usually it fits: one count); otherwise the cut point is found
by binary search, so at most ``1 + ceil(log2(n - 1))`` counts for ``n`` messages.

The budget (``budget_for``): the model's context (its loaded context as the catalog knows it,
or ``num_ctx`` when smaller), less a reserve for the answer: ``num_predict`` when positive,
else ``DEFAULT_RESERVE`` tokens, and never more than half the context (one quarter by default).

Where the backend has no tokenizer to ask, ``estimated_tokens`` counts a third of a token per
UTF-8 byte of text (a generous estimate: English runs about four bytes a token, most other
scripts three or more bytes a character), plus ``MESSAGE_OVERHEAD`` per message and
``IMAGE_TOKENS`` per image. ``surely_fits`` is a cheaper test that needs no tokenizer: one token
per byte is more than any byte-level or SentencePiece tokenizer produces, so a chat within that
bound is sent without counting. ``context_overflow`` recognises a backend's "prompt too long"
refusal (``OVERFLOW_PHRASES``) and reads the numbers it gives.

An OpenAI chat body forwarded as it came (``/v1/chat/completions``) is fitted the same way:
``ForwardedChat`` keeps the client's document whole (fields the shim does not know included) beside
a typed view of its messages, one for one, for the estimates; a ``developer`` message counts as a
system message. Its room for the answer is ``max_completion_tokens``, else ``max_tokens``, read as
``num_predict`` (``forwarded_options``). ``body_surely_fits`` judges the encoded body from its size
alone, so a short chat is forwarded without being decoded.

May import: stdlib, msgspec, ``ollama_shim.wire``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from ollama_shim.wire import openai as oai

__all__ = [
    "DEFAULT_RESERVE",
    "IMAGE_TOKENS",
    "OLLAMA_TOO_LONG",
    "OVERFLOW_PHRASES",
    "Budget",
    "CutSearch",
    "ForwardedChat",
    "Overflow",
    "body_surely_fits",
    "budget_for",
    "context_overflow",
    "estimated_tokens",
    "forwarded_chat",
    "forwarded_options",
    "image_count",
    "kept_indices",
    "surely_fits",
]

DEFAULT_RESERVE = 1024  # tokens kept for the answer when the request does not set num_predict
IMAGE_TOKENS = 768  # what Ollama counts for one image
MESSAGE_OVERHEAD = 8  # role markers and separators of one templated message, estimated
TEMPLATE_ALLOWANCE = 256  # text a chat template adds of its own (a default system prompt), at most
BYTES_PER_TOKEN_ESTIMATE = 3

# Ollama's own words when `truncate: false` and the prompt does not fit.
OLLAMA_TOO_LONG = "the input length exceeds the context length"

# How backends say the prompt does not fit (lower case): llama.cpp, vLLM and OpenAI, LM Studio.
OVERFLOW_PHRASES = (
    "exceeds the available context size",
    "maximum context length",
    "context_length_exceeded",
    "context length of only",
    "greater than the context length",
    "exceeds the context length",
    "prompt is too long",
)
_CONTEXT_NUMBER = re.compile(r"context (?:size|length)(?: is| of only)?\D{0,12}?(\d+)")
_PROMPT_NUMBER = re.compile(r"request \((\d+) tokens\)|\((\d+) in the messages|has (\d+) input tokens")


@dataclass(frozen=True)
class Budget:
    """How many tokens the model holds and how many of them the answer is given."""

    context: int
    reserve: int

    @property
    def limit(self) -> int:
        """The most tokens the prompt may take."""
        return max(1, self.context - self.reserve)


def _positive_int(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return int(value) if value >= 1 else None


def budget_for(context_length: int | None, options: oai.JSONObject | None) -> Budget | None:
    """The prompt's budget for a model of ``context_length`` and the request's ``options``; None
    when no context is known (then nothing is dropped ahead of time)."""
    options = options or {}
    contexts = [c for c in (context_length, _positive_int(options.get("num_ctx"))) if c]
    if not contexts:
        return None
    context = min(contexts)
    predict = _positive_int(options.get("num_predict"))
    reserve = min(predict, context // 2) if predict else min(DEFAULT_RESERVE, context // 4)
    return Budget(context=context, reserve=reserve)


def kept_indices(roles: Sequence[str], cut: int) -> list[int]:
    """The messages kept when those before ``cut`` are dropped: the system messages among them
    (in order, at the front), then every message from ``cut`` on."""
    return [i for i in range(cut) if roles[i].lower() == "system"] + list(range(cut, len(roles)))


class CutSearch:
    """The smallest cut whose kept messages fit in ``limit`` tokens; see the module docstring.

    ``next_cut()`` names the cut to count next (None when decided); ``report(tokens)`` gives its
    count. The result, ``cut``, is 0 when everything fits and ``count - 1`` (the last message
    alone, with the system messages) when nothing shorter fits. Counts are taken to shrink as the
    cut moves on, which dropping messages does.
    """

    __slots__ = ("_high", "_low", "_probe", "counts", "limit", "message_count")

    def __init__(self, message_count: int, limit: int) -> None:
        self.message_count = message_count
        self.limit = limit
        self.counts = 0  # how many counts were reported
        self._low, self._high = 1, max(0, message_count - 1)  # the answer lies in [low, high]
        self._probe: int | None = 0 if message_count > 1 else None  # the whole chat first

    def next_cut(self) -> int | None:
        return self._probe

    def report(self, tokens: int) -> None:
        probe = self._probe
        if probe is None:
            raise ValueError("report() without a cut to count")
        self.counts += 1
        fits = tokens <= self.limit
        if probe == 0:
            if fits:
                self._low = self._high = 0
        elif fits:
            self._high = probe
        else:
            self._low = probe + 1
        self._probe = (self._low + self._high) // 2 if self._low < self._high else None

    @property
    def cut(self) -> int:
        """How many messages from the front are dropped (system messages among them are kept)."""
        if self._probe is not None:
            raise ValueError("the search is not finished")
        return self._high


def image_count(message: oai.OutMessage) -> int:
    content = message.content
    return sum(isinstance(part, oai.ImagePart) for part in content) if isinstance(content, list) else 0


def _text_bytes(message: oai.OutMessage) -> int:
    content = message.content
    if isinstance(content, str):
        size = len(content.encode())
    elif content is None:
        size = 0
    else:
        size = sum(len(part.text.encode()) for part in content if isinstance(part, oai.ContentPart))
    for call in message.tool_calls or ():
        size += len(call.function.name.encode()) + len(call.function.arguments.encode())
    if message.reasoning_content:  # an assistant's earlier thinking, which its template may show
        size += len(message.reasoning_content.encode())
    return size


def _tools_bytes(request: oai.ChatCompletionRequest) -> int:
    return len(msgspec.json.encode(request.tools)) if request.tools else 0


def estimated_tokens(request: oai.ChatCompletionRequest) -> int:
    """The prompt's tokens, estimated without a tokenizer (see the module docstring)."""
    text = sum(_text_bytes(m) for m in request.messages) + _tools_bytes(request)
    images = sum(image_count(m) for m in request.messages)
    # One overhead more than there are messages: the opening of the answer's own turn.
    return (
        math.ceil(text / BYTES_PER_TOKEN_ESTIMATE)
        + MESSAGE_OVERHEAD * (len(request.messages) + 1)
        + IMAGE_TOKENS * images
    )


def surely_fits(request: oai.ChatCompletionRequest, limit: int) -> bool:
    """Whether the prompt fits in ``limit`` tokens whatever the tokenizer: at most one token per
    byte, ``MESSAGE_OVERHEAD`` per message, ``TEMPLATE_ALLOWANCE`` for the template's own text."""
    text = sum(_text_bytes(m) for m in request.messages) + _tools_bytes(request)
    images = sum(image_count(m) for m in request.messages)
    bound = text + MESSAGE_OVERHEAD * len(request.messages) + IMAGE_TOKENS * images + TEMPLATE_ALLOWANCE
    return bound <= limit


@dataclass(frozen=True)
class Overflow:
    """A backend's refusal of a prompt too long, with the numbers it gave (None where it gave none)."""

    context: int | None
    prompt_tokens: int | None


def context_overflow(message: str) -> Overflow | None:
    """The refusal ``message`` means, if it says the prompt does not fit in the context."""
    text = message.lower()
    if not any(phrase in text for phrase in OVERFLOW_PHRASES):
        return None
    context = _CONTEXT_NUMBER.search(text)
    prompt = _PROMPT_NUMBER.search(text)
    prompt_tokens = next((int(g) for g in prompt.groups() if g), None) if prompt else None
    return Overflow(context=int(context.group(1)) if context else None, prompt_tokens=prompt_tokens)


def body_surely_fits(body: bytes, context: int) -> bool:
    """Whether an encoded OpenAI chat body surely fits a model of ``context`` tokens, whatever room it
    asks for the answer (at most half the context): the bound of ``surely_fits``, taken from the
    body's length, which is no less than its text and tool definitions (JSON only adds keys, quotes
    and escapes) plus ``MESSAGE_OVERHEAD`` per message (``{"role":`` alone is as long), with every
    ``image_url`` in it counted as an image."""
    limit = Budget(context=context, reserve=context // 2).limit
    return len(body) + IMAGE_TOKENS * body.count(b"image_url") + TEMPLATE_ALLOWANCE <= limit


def forwarded_options(doc: oai.JSONObject) -> oai.JSONObject:
    """The room an OpenAI chat body asks for its answer, as the ``options`` ``budget_for`` reads:
    ``max_completion_tokens``, else ``max_tokens``, as ``num_predict``."""
    asked = (doc.get("max_completion_tokens"), doc.get("max_tokens"))
    return {"num_predict": next((value for value in asked if _positive_int(value)), None)}


@dataclass(frozen=True)
class ForwardedChat:
    """An OpenAI chat body as the client sent it (``doc``, every field kept) and its messages and
    tools as the shim reads them (``view``), the messages one for one with the body's."""

    doc: oai.JSONObject
    view: oai.ChatCompletionRequest

    def keeping(self, kept: Sequence[int]) -> oai.JSONObject:
        """The body with only the messages at ``kept`` (indices, in order)."""
        messages = self.doc["messages"]
        return {**self.doc, "messages": [messages[i] for i in kept]}

    def cut_to(self, kept: Sequence[int]) -> ForwardedChat:
        view = msgspec.structs.replace(self.view, messages=[self.view.messages[i] for i in kept])
        return ForwardedChat(doc=self.keeping(kept), view=view)


def _message_view(raw: object) -> oai.OutMessage | None:
    if not isinstance(raw, dict) or not isinstance(raw.get("role"), str):
        return None
    try:
        message = msgspec.convert(raw, oai.OutMessage)
    except msgspec.ValidationError:
        # A shape the shim does not model (another content part, arguments as an object): counted as
        # its JSON text, which is no shorter than what it says.
        message = oai.OutMessage(role=raw["role"], content=msgspec.json.encode(raw).decode())
    if message.role.lower() == "developer":
        message = msgspec.structs.replace(message, role="system")
    return message


def forwarded_chat(doc: object) -> ForwardedChat | None:
    """``doc`` (a decoded OpenAI chat body) read for fitting; None when its messages are not a list
    of objects with a string ``role``, or its tools are not function tools (it is then sent as it
    came, and the backend answers it)."""
    if not isinstance(doc, dict) or not isinstance(doc.get("messages"), list):
        return None
    messages = [_message_view(raw) for raw in doc["messages"]]
    try:
        tools = msgspec.convert(doc.get("tools"), list[oai.OutTool] | None)
    except msgspec.ValidationError:
        return None
    if any(m is None for m in messages):
        return None
    model = doc.get("model")
    view = oai.ChatCompletionRequest(model=model if isinstance(model, str) else "",
                                     messages=[m for m in messages if m is not None], tools=tools or None)
    return ForwardedChat(doc=doc, view=view)
