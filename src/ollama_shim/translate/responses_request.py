"""OpenAI Responses requests -> Ollama ``ChatRequest``s, and the ``response`` object they start from.

``responses_to_chat`` checks and maps one ``POST /v1/responses`` body onto the ``/api/chat``
request it means; from there the chat translation (``translate.request``) takes it to the
backend. ``response_template`` is the ``in_progress`` response object the answer fills in, with
the request's settings echoed. Stateless, as Ollama's: ``previous_response_id`` and
``store: true`` are refused (400) rather than silently ignored.

What is mapped (after Ollama's ``openai/responses.go``):

- ``instructions`` -> a leading system message; ``input`` a string -> one user message, or items:
  messages (role kept, ``developer`` -> ``system``; ``input_text``/``output_text``/``refusal``
  parts joined, ``input_image`` data URLs -> images), ``function_call`` -> the assistant's
  ``tool_calls`` (merged into an assistant message just before it), ``function_call_output`` ->
  a ``tool`` message linked by ``call_id``, ``reasoning`` -> ``thinking`` of the next assistant
  message. Other item types are 400.
- ``tools`` (function only; any other type is 400), ``tool_choice: "none"`` -> no tools,
  ``reasoning.effort`` -> ``think``, ``max_output_tokens`` -> ``num_predict``,
  ``temperature`` (1.0 when absent, as Ollama) and ``top_p`` -> options, ``text.format``
  ``json_schema`` -> the schema as ``format``, ``json_object`` -> ``"json"``.

May import: stdlib, msgspec, ``ollama_shim.wire``, ``ollama_shim.errors``,
``ollama_shim.translate.json_depth``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import msgspec

from ollama_shim.errors import BadRequest
from ollama_shim.translate.json_depth import MAX_JSON_DEPTH, exceeds_depth
from ollama_shim.wire import ollama
from ollama_shim.wire import responses as rw

__all__ = ["effort_to_think", "response_template", "responses_to_chat"]

DEFAULT_TEMPERATURE = 1.0  # Ollama's Responses endpoint samples at 1.0 unless told otherwise
_EFFORTS: dict[str, bool | str] = {
    "none": False, "minimal": "low", "low": "low", "medium": "medium", "high": "high", "max": "max",
    "xhigh": "max", "ultra": "max",
}
_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}
_TEXT_PARTS = ("input_text", "output_text", "text", "summary_text", "reasoning_text")


def responses_to_chat(req: rw.ResponsesRequest) -> ollama.ChatRequest:
    """The ``/api/chat`` request a Responses request means; ``BadRequest`` for what cannot be served."""
    if not req.model:
        raise BadRequest("model is required")
    _check_stateless(req)
    messages = [ollama.RequestMessage(role="system", content=req.instructions)] if req.instructions else []
    messages += _input_messages(req.input)
    return ollama.ChatRequest(
        model=req.model,
        messages=messages,
        tools=_tools(req.tools, req.tool_choice),
        stream=bool(req.stream),
        format=_format(req.text),
        think=effort_to_think(req.reasoning.effort if req.reasoning else None),
        options=_options(req),
    )


def _check_stateless(req: rw.ResponsesRequest) -> None:
    if req.previous_response_id:
        raise BadRequest(
            "previous_response_id is not supported: responses are not stored; send the whole conversation in input"
        )
    if req.store:
        raise BadRequest("store: true is not supported: responses are not stored; send store: false")


def effort_to_think(effort: str | None) -> bool | str | None:
    """``reasoning.effort`` as Ollama's ``think``: ``none`` turns thinking off, ``minimal`` is
    ``low``, ``xhigh``/``ultra`` are ``max``."""
    if effort is None:
        return None
    if effort not in _EFFORTS:
        raise BadRequest(
            f'invalid reasoning value: "{effort}" (must be "minimal", "low", "medium", "high", "xhigh", '
            '"ultra", "max", or "none")'
        )
    return _EFFORTS[effort]


def _options(req: rw.ResponsesRequest) -> ollama.JSONObject:
    options: ollama.JSONObject = {
        "temperature": DEFAULT_TEMPERATURE if req.temperature is None else req.temperature
    }
    if req.top_p is not None:
        options["top_p"] = req.top_p
    if req.max_output_tokens is not None:
        if req.max_output_tokens < 1:
            raise BadRequest("max_output_tokens must be at least 1")
        options["num_predict"] = req.max_output_tokens
    return options


def _format(text: rw.TextParam | None) -> ollama.Format:
    fmt = text.format if text is not None else None
    if fmt is None or fmt.type == "text":
        return None
    if fmt.type == "json_object":
        return "json"
    if fmt.type == "json_schema":
        if fmt.schema is None:
            raise BadRequest("text.format: json_schema needs a schema")
        return fmt.schema
    raise BadRequest(f'text.format: unknown type "{fmt.type}" (must be "text", "json_object" or "json_schema")')


def _tools(tools: list[rw.ToolParam] | None, choice: rw.ToolChoice | None) -> list[ollama.Tool] | None:
    out: list[ollama.Tool] = []
    for position, tool in enumerate(tools or []):
        if tool.type != "function":
            raise BadRequest(f'tools[{position}]: tool type "{tool.type}" is not supported (only "function" tools are)')
        if not tool.name:
            raise BadRequest(f"tools[{position}]: a function tool needs a name")
        function = ollama.ToolFunction(name=tool.name, description=tool.description, parameters=tool.parameters)
        out.append(ollama.Tool(function=function))
    if choice == "none":
        return None  # the model may not call any of them: it is not shown them
    return out or None


# ---------------------------------------------------------------------------
# input
# ---------------------------------------------------------------------------


@dataclass
class _History:
    """Messages built so far, the name of every call by its id, and reasoning waiting for the next
    assistant message."""

    messages: list[ollama.RequestMessage] = field(default_factory=list)
    call_names: dict[str, str] = field(default_factory=dict)
    thinking: str | None = None

    def take_thinking(self) -> str | None:
        thinking, self.thinking = self.thinking, None
        return thinking


def _input_messages(value: str | list[rw.InputItem] | None) -> list[ollama.RequestMessage]:
    if value is None:
        raise BadRequest("input is required")
    if isinstance(value, str):
        return [ollama.RequestMessage(role="user", content=value)]
    history = _History()
    for position, item in enumerate(value):
        _add_item(history, position, item)
    return history.messages


def _add_item(history: _History, position: int, item: rw.InputItem) -> None:
    where = f"input[{position}]"
    kind = item.type or ("message" if item.role else None)
    if kind is None:
        raise BadRequest(f"{where}: input item missing required 'type' field")
    if kind == "message":
        history.messages.append(_message(where, item, history))
    elif kind == "function_call":
        _add_function_call(history, where, item)
    elif kind == "function_call_output":
        call_id = _required(item.call_id, where, "call_id")
        text = _output_text(where, item.output)
        name = history.call_names.get(call_id)
        history.messages.append(ollama.RequestMessage(role="tool", content=text, tool_call_id=call_id, tool_name=name))
    elif kind == "reasoning":
        summary = "".join(part.text or "" for part in item.summary or [])
        history.thinking = item.encrypted_content or summary or None
    else:
        raise BadRequest(f'{where}: unknown input item type: "{kind}"')


def _required(value: str | None, where: str, name: str) -> str:
    if not value:
        raise BadRequest(f"{where}: {name} is required")
    return value


def _message(where: str, item: rw.InputItem, history: _History) -> ollama.RequestMessage:
    role = _ROLES.get(item.role or "")
    if role is None:
        raise BadRequest(f'{where}: invalid role "{item.role}" (must be "user", "assistant", "system" or "developer")')
    text, images = _content(where, item.content)
    thinking = history.take_thinking() if role == "assistant" else None
    return ollama.RequestMessage(role=role, content=text, images=images or None, thinking=thinking)


def _add_function_call(history: _History, where: str, item: rw.InputItem) -> None:
    call_id = _required(item.call_id, where, "call_id")
    name = _required(item.name, where, "name")
    arguments = item.arguments or "{}"
    if exceeds_depth(arguments.encode()):
        raise BadRequest(f"{where}: failed to parse function call arguments: exceeded max depth of {MAX_JSON_DEPTH}")
    try:
        parsed = msgspec.json.decode(arguments)
    except msgspec.DecodeError as exc:
        raise BadRequest(f"{where}: failed to parse function call arguments: {exc}") from None
    if not isinstance(parsed, dict):
        raise BadRequest(f"{where}: failed to parse function call arguments: not a JSON object")
    history.call_names[call_id] = name
    call = ollama.ToolCall(id=call_id, function=ollama.ToolCallFunction(name=name, arguments=arguments))
    last = history.messages[-1] if history.messages else None
    if last is not None and last.role == "assistant":
        history.messages[-1] = msgspec.structs.replace(last, tool_calls=[*(last.tool_calls or []), call])
        return
    history.messages.append(
        ollama.RequestMessage(role="assistant", content="", tool_calls=[call], thinking=history.take_thinking())
    )


def _content(where: str, content: str | list[rw.ContentPart] | None) -> tuple[str, list[str]]:
    """A message's text (parts joined) and its images (base64)."""
    if content is None or isinstance(content, str):
        return content or "", []
    texts: list[str] = []
    images: list[str] = []
    for number, part in enumerate(content):
        if part.type in _TEXT_PARTS:
            texts.append(part.text or "")
        elif part.type == "refusal":
            texts.append(part.refusal or part.text or "")
        elif part.type == "input_image":
            images.append(_image(f"{where}.content[{number}]", part))
        elif part.type == "input_file":
            raise BadRequest(f"{where}.content[{number}]: file inputs are not currently supported")
        else:
            raise BadRequest(f'{where}.content[{number}]: unknown content type "{part.type}"')
    return "".join(texts), images


def _image(where: str, part: rw.ContentPart) -> str:
    url = part.image_url or ""
    if url.startswith("data:"):
        header, comma, data = url.partition(",")
        if comma and header.endswith(";base64"):
            return data
        raise BadRequest(f"{where}: an image data URL must be base64 encoded")
    if url:
        raise BadRequest(f"{where}: image URLs are not currently supported, please use base64 encoded data instead")
    raise BadRequest(f"{where}: input_image needs an image_url (a base64 data URL)")


def _output_text(where: str, output: str | list[rw.ContentPart] | None) -> str:
    if output is None or isinstance(output, str):
        return output or ""
    text, images = _content(f"{where}.output", output)
    if images:
        raise BadRequest(f"{where}.output: images in a function call output are not supported")
    return text


# ---------------------------------------------------------------------------
# the response object
# ---------------------------------------------------------------------------


def response_template(req: rw.ResponsesRequest, response_id: str, created_at: int) -> rw.ResponseObject:
    """The ``in_progress`` response object for ``req``, its settings echoed; the answer's output,
    status and usage are filled in by ``translate.responses_stream``."""
    tools = [tool for tool in req.tools or [] if tool.type == "function"]
    return rw.ResponseObject(
        id=response_id,
        created_at=created_at,
        status="in_progress",
        instructions=req.instructions,
        max_output_tokens=req.max_output_tokens,
        model=req.model,
        output=[],
        parallel_tool_calls=True if req.parallel_tool_calls is None else req.parallel_tool_calls,
        reasoning=req.reasoning or rw.ReasoningParam(),
        temperature=DEFAULT_TEMPERATURE if req.temperature is None else req.temperature,
        text=rw.TextParam(
            format=(req.text.format if req.text else None) or rw.TextFormat(type="text"),
            verbosity=req.text.verbosity if req.text else None,
        ),
        tool_choice="auto" if req.tool_choice is None else req.tool_choice,
        tools=tools,
        top_p=1.0 if req.top_p is None else req.top_p,
        truncation=req.truncation or "disabled",
        user=req.user,
        metadata=req.metadata or {},
    )
