"""OpenAI Responses API wire shapes (``POST /v1/responses``): the request a client sends, the
``response`` object, the streamed events and the error envelope the shim answers with.

Requests are decoded leniently (unknown fields ignored; an input item is one flat struct because
bare ``{role, content}`` items carry no ``type``). Everything the shim encodes is built fresh per
event, so an event already handed out never changes. The ``response`` object and the events
write ``null`` where OpenAI does (no ``omit_defaults``); nested request echoes omit unset keys.

May import: msgspec, stdlib.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

JSONObject = dict[str, Any]

# ---------------------------------------------------------------------------
# Requests (decoded)
# ---------------------------------------------------------------------------


class ContentPart(msgspec.Struct, omit_defaults=True):
    """A part of a message's content, of a tool output, or of a reasoning item's summary."""

    type: str = ""
    text: str | None = None  # input_text, output_text, summary_text, reasoning_text
    refusal: str | None = None  # refusal
    image_url: str | None = None  # input_image: a URL (the shim takes data: URLs only)
    file_id: str | None = None  # input_image / input_file by uploaded id
    detail: str | None = None


class InputItem(msgspec.Struct, omit_defaults=True):
    """One item of ``input``: a message, a ``function_call``, a ``function_call_output`` or a
    ``reasoning`` item; which fields matter depends on ``type`` (absent on bare messages)."""

    type: str | None = None
    role: str | None = None
    content: str | list[ContentPart] | None = None
    id: str | None = None
    status: str | None = None
    call_id: str | None = None  # function_call, function_call_output
    name: str | None = None  # function_call
    arguments: str | None = None  # function_call: JSON text
    output: str | list[ContentPart] | None = None  # function_call_output
    summary: list[ContentPart] | None = None  # reasoning
    encrypted_content: str | None = None  # reasoning


class ToolParam(msgspec.Struct, omit_defaults=True):
    """A tool definition; the shim serves ``type: "function"`` (flat: name and schema at the top)."""

    type: str = ""
    name: str | None = None
    description: str | None = None
    parameters: JSONObject | None = None
    strict: bool | None = None


class ReasoningParam(msgspec.Struct, omit_defaults=True):
    effort: str | None = None
    summary: str | None = None


class TextFormat(msgspec.Struct, omit_defaults=True):
    """``text.format``: ``text``, ``json_object`` or ``json_schema`` (with ``name``, ``schema``)."""

    type: str  # always written: it is the default value clients test for
    name: str | None = None
    schema: JSONObject | None = None
    description: str | None = None
    strict: bool | None = None


class TextParam(msgspec.Struct, omit_defaults=True):
    format: TextFormat | None = None
    verbosity: str | None = None


# `tool_choice`: "none" | "auto" | "required", or an object naming a tool.
ToolChoice = str | JSONObject


class ResponsesRequest(msgspec.Struct, omit_defaults=True):
    model: str = ""
    input: str | list[InputItem] | None = None
    instructions: str | None = None
    tools: list[ToolParam] | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    reasoning: ReasoningParam | None = None
    max_output_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    text: TextParam | None = None
    stream: bool | None = None
    store: bool | None = None
    previous_response_id: str | None = None
    truncation: str | None = None
    metadata: dict[str, str] | None = None
    user: str | None = None
    include: list[str] | None = None
    prompt_cache_key: str | None = None


# ---------------------------------------------------------------------------
# The response object (encoded)
# ---------------------------------------------------------------------------


class OutputText(msgspec.Struct, tag_field="type", tag="output_text"):
    text: str
    annotations: list[JSONObject] = msgspec.field(default_factory=list)
    logprobs: list[JSONObject] = msgspec.field(default_factory=list)


class SummaryText(msgspec.Struct, tag_field="type", tag="summary_text"):
    text: str


ItemStatus = Literal["in_progress", "completed", "incomplete"]


class MessageItem(msgspec.Struct, tag_field="type", tag="message", kw_only=True):
    id: str
    status: ItemStatus
    role: str = "assistant"
    content: list[OutputText]


class ReasoningItem(msgspec.Struct, tag_field="type", tag="reasoning", kw_only=True, omit_defaults=True):
    id: str
    summary: list[SummaryText]
    encrypted_content: str | None = None  # the thinking text again, as Ollama sends it


class FunctionCallItem(msgspec.Struct, tag_field="type", tag="function_call", kw_only=True):
    id: str
    status: ItemStatus
    call_id: str
    name: str
    arguments: str  # JSON text


OutputItem = MessageItem | ReasoningItem | FunctionCallItem


class InputTokensDetails(msgspec.Struct):
    cached_tokens: int = 0


class OutputTokensDetails(msgspec.Struct):
    reasoning_tokens: int = 0


class ResponseUsage(msgspec.Struct, kw_only=True):
    input_tokens: int
    input_tokens_details: InputTokensDetails = msgspec.field(default_factory=InputTokensDetails)
    output_tokens: int
    output_tokens_details: OutputTokensDetails = msgspec.field(default_factory=OutputTokensDetails)
    total_tokens: int


class IncompleteDetails(msgspec.Struct):
    reason: str


ResponseStatus = Literal["in_progress", "completed", "incomplete", "failed"]


class ResponseObject(msgspec.Struct, kw_only=True):
    """The ``response`` object: the whole non-streamed answer, and the payload of the lifecycle
    events (``response.created`` ... ``response.completed``)."""

    id: str
    object: str = "response"
    created_at: int  # Unix seconds
    status: ResponseStatus
    completed_at: int | None = None
    error: JSONObject | None = None
    incomplete_details: IncompleteDetails | None = None
    instructions: str | None
    max_output_tokens: int | None
    model: str  # the name the client asked for
    output: list[OutputItem]
    parallel_tool_calls: bool
    previous_response_id: None = None
    reasoning: ReasoningParam
    store: bool = False
    temperature: float
    text: TextParam
    tool_choice: ToolChoice
    tools: list[ToolParam]
    top_p: float
    truncation: str
    usage: ResponseUsage | None = None
    user: str | None = None
    metadata: dict[str, str]
    service_tier: str = "default"


# ---------------------------------------------------------------------------
# Streamed events (encoded as `event: <type>` / `data: <json>`)
# ---------------------------------------------------------------------------


class Event(msgspec.Struct, tag_field="type", kw_only=True):
    """Every streamed event: its ``type`` tag and its place in the stream, counting from 0."""

    sequence_number: int


class ResponseCreated(Event, tag="response.created"):
    response: ResponseObject


class ResponseInProgress(Event, tag="response.in_progress"):
    response: ResponseObject


class ResponseCompleted(Event, tag="response.completed"):
    response: ResponseObject


class ResponseIncomplete(Event, tag="response.incomplete"):
    response: ResponseObject


class OutputItemAdded(Event, tag="response.output_item.added"):
    output_index: int
    item: OutputItem


class OutputItemDone(Event, tag="response.output_item.done"):
    output_index: int
    item: OutputItem


class ContentPartAdded(Event, tag="response.content_part.added"):
    item_id: str
    output_index: int
    content_index: int
    part: OutputText


class ContentPartDone(Event, tag="response.content_part.done"):
    item_id: str
    output_index: int
    content_index: int
    part: OutputText


class OutputTextDelta(Event, tag="response.output_text.delta"):
    item_id: str
    output_index: int
    content_index: int
    delta: str
    logprobs: list[JSONObject] = msgspec.field(default_factory=list)


class OutputTextDone(Event, tag="response.output_text.done"):
    item_id: str
    output_index: int
    content_index: int
    text: str
    logprobs: list[JSONObject] = msgspec.field(default_factory=list)


class ReasoningSummaryPartAdded(Event, tag="response.reasoning_summary_part.added"):
    item_id: str
    output_index: int
    summary_index: int
    part: SummaryText


class ReasoningSummaryPartDone(Event, tag="response.reasoning_summary_part.done"):
    item_id: str
    output_index: int
    summary_index: int
    part: SummaryText


class ReasoningSummaryTextDelta(Event, tag="response.reasoning_summary_text.delta"):
    item_id: str
    output_index: int
    summary_index: int
    delta: str


class ReasoningSummaryTextDone(Event, tag="response.reasoning_summary_text.done"):
    item_id: str
    output_index: int
    summary_index: int
    text: str


class FunctionCallArgumentsDelta(Event, tag="response.function_call_arguments.delta"):
    item_id: str
    output_index: int
    delta: str


class FunctionCallArgumentsDone(Event, tag="response.function_call_arguments.done"):
    item_id: str
    output_index: int
    name: str
    arguments: str


class ErrorEvent(Event, tag="error"):
    """A failure after the stream began; the stream ends after it."""

    message: str
    code: str | None = None
    param: None = None


ResponsesEvent = (
    ResponseCreated | ResponseInProgress | ResponseCompleted | ResponseIncomplete | OutputItemAdded | OutputItemDone
    | ContentPartAdded | ContentPartDone | OutputTextDelta | OutputTextDone | ReasoningSummaryPartAdded
    | ReasoningSummaryPartDone | ReasoningSummaryTextDelta | ReasoningSummaryTextDone | FunctionCallArgumentsDelta
    | FunctionCallArgumentsDone | ErrorEvent
)


def event_name(event: Event) -> str:
    """The event's ``type``, which is also its SSE ``event:`` name."""
    return str(type(event).__struct_config__.tag)


# ---------------------------------------------------------------------------
# Errors (encoded)
# ---------------------------------------------------------------------------


class ErrorDetail(msgspec.Struct):
    message: str
    type: str
    param: None = None
    code: str | None = None


class ErrorEnvelope(msgspec.Struct):
    """``{"error": {"message", "type", "param", "code"}}``: an error before the first byte."""

    error: ErrorDetail
