"""A llama.cpp router's model file -> ``ModelFacts``: what an unloaded model is, as its file says.

A llama.cpp router describes a model it has not loaded by little more than its id and the command
line it will start it with (``status.args``); ``/props`` answers only for a loaded one. Where the
shim can read the model's GGUF file (``model_files``), its header says the rest, the same way the
loaded server will: the parameter count and weights' bytes are the sums llama-server reports as
``meta.n_params`` and ``meta.size``, the trained context, widths and file type are its own keys,
and the capabilities come from the chat template the server will use:

- **tools**: the template reads both ``tools`` and ``tool_calls`` (or a ``tool_use`` variant
  does), as llama-server's own check finds when it renders them; a file with no template gets
  llama-server's built-in ChatML stand-in, which has neither.
- **thinking**: ``catalog.thinking_from_template``, the same test as for a loaded model.
- Nothing is said of the template when the command line replaces it (``--chat-template*``,
  ``--no-jinja``): the file does not tell what the server will use then (``as_started``); nor
  when the file's template is too long to keep (``GgufHeader.template_left_out``).

A model split over several files (``split.count``) says nothing of its size or parameters here:
the first file's sums cover only that file.

These facts rank below anything the backend says, now or remembered (``catalog.over``), so once
a model has been loaded its ``/props`` wins and is remembered; they are never remembered
themselves.

May import: stdlib, ``ollama_shim.wire.gguf``, ``ollama_shim.translate.catalog``.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import replace

from ..wire.gguf import GgufHeader
from . import catalog
from .catalog import ModelFacts

_MODEL_FLAGS = ("--model", "-m")
_TEMPLATE_FLAGS = ("--chat-template", "--chat-template-file", "--no-jinja")
_TOOLS = re.compile(r"\btools\b")
_TOOL_CALLS = re.compile(r"\btool_calls\b")


def model_path_from_args(args: list[str] | None) -> str | None:
    """The model file a llama.cpp router starts a model with (``--model PATH`` in ``status.args``)."""
    for flag, value in itertools.pairwise(args or ()):
        if flag in _MODEL_FLAGS:
            return value
    return None


def template_replaced(args: list[str] | None) -> bool:
    """Whether the command line sets the chat template instead of the file's own."""
    return any(arg.split("=", 1)[0] in _TEMPLATE_FLAGS for arg in args or ())


def tools_from_template(template: str) -> bool:
    """Whether a chat template renders tool definitions and the assistant's tool calls."""
    return bool(_TOOLS.search(template)) and bool(_TOOL_CALLS.search(template))


def seen_in_gguf(header: GgufHeader, args: list[str] | None = None) -> ModelFacts:
    """What a model's GGUF header says of it, read as llama-server would once it loads it."""
    whole = header.split_count == 1
    n_params = catalog.within(header.parameter_count, catalog.MAX_COUNT) if whole else None
    ftype = header.file_type
    tools = thinking = None
    if not header.template_left_out:
        templates = [t for t in (header.chat_template, header.tool_use_template) if t is not None]
        tools = any(map(tools_from_template, templates))
        thinking = header.chat_template is not None and catalog.thinking_from_template(header.chat_template)
    facts = ModelFacts(
        family=header.architecture or None,
        format="gguf",
        size=catalog.within(header.tensor_bytes, catalog.MAX_COUNT) if whole else None,
        parameter_count=n_params,
        parameter_size=catalog.human_number(n_params) if n_params else None,
        quantization_level=catalog.QUANTIZATION_BY_FILE_TYPE.get(ftype) if ftype is not None else None,
        max_context_length=catalog.within(header.context_length, catalog.MAX_CONTEXT),
        embedding_length=catalog.within(header.embedding_length, catalog.MAX_WIDTH),
        vocab_size=catalog.within(header.vocab_size, catalog.MAX_WIDTH),
        tools=tools,
        thinking=thinking,
    )
    return as_started(facts, args)


def as_started(facts: ModelFacts, args: list[str] | None) -> ModelFacts:
    """What a file says (``seen_in_gguf``) of a model started with ``args``: nothing of its
    template's capabilities when the command line replaces the template."""
    return replace(facts, tools=None, thinking=None) if template_replaced(args) else facts
