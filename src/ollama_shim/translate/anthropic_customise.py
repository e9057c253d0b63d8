"""A custom model's layers laid on an Anthropic Messages body that is forwarded as it is (to a backend
that speaks the API itself), with the same effect as on the translated path, where they are laid on
the ``/api/chat`` request the body means (``translate.customise.apply_customisation``):

- ``system``: the custom system prompt, when the request has none of its own (no ``system`` text,
  and no leading ``role: "system"`` message);
- ``messages``: the custom messages (user and assistant turns, as plain text) before the request's,
  after any leading ``role: "system"`` messages;
- parameters, as defaults the request's own fields override (a ``null`` or, for
  ``stop_sequences``, an empty list counts as none): ``temperature``, ``top_p``, ``top_k``,
  ``num_predict`` -> ``max_tokens`` (a positive value; the API requires ``max_tokens``, so the
  request's always wins) and ``stop`` -> ``stop_sequences``. A parameter the backend's chat
  completions would not take either (``IgnoredOption``: ``num_ctx`` and other load-time keys) is
  left out on both paths.

A layer the Anthropic body cannot carry, a ``system`` message among the custom messages or a
parameter outside those five that the translated path would send (``seed``, ``repeat_penalty``,
``min_p`` ...), makes ``customised_messages_body`` answer None: the request then goes the
translated way rather than losing the layer. ``count_tokens`` bodies take the prompt layers only
(``sampling=False``), since parameters do not change a count.

May import: stdlib, ``ollama_shim.wire``, ``ollama_shim.dialect``, other ``ollama_shim.translate`` modules.
"""

from __future__ import annotations

from typing import Any

import msgspec

from ollama_shim.dialect import Dialect
from ollama_shim.translate.anthropic_request import SYSTEM_ROLES, has_own_system
from ollama_shim.translate.customise import Customisation
from ollama_shim.translate.options import options_to_sampling
from ollama_shim.wire import anthropic as am

__all__ = ["customised_messages_body"]

# The sampling fields (as the chat-completions translation spells them) the Anthropic body has a
# field for; max_tokens is matched through the dialect's own spelling.
_ANTHROPIC_FIELDS = {"temperature": "temperature", "top_p": "top_p", "top_k": "top_k", "stop": "stop_sequences"}


def _leading_system_messages(messages: list[Any]) -> int:
    count = 0
    while (count < len(messages) and isinstance(messages[count], dict)
           and str(messages[count].get("role", "")).lower() in SYSTEM_ROLES):
        count += 1
    return count


def _sampling_defaults(custom: Customisation, dialect: Dialect) -> dict[str, Any] | None:
    """The custom parameters as Anthropic fields; None when one cannot be expressed there."""
    sampling = msgspec.structs.asdict(options_to_sampling(custom.parameters, dialect).sampling)
    out: dict[str, Any] = {}
    for field, value in sampling.items():
        if value is None:
            continue
        if field == dialect.max_tokens_field:
            if value > 0:  # 0 is no answer at all: the API refuses it
                out["max_tokens"] = value
        elif field in _ANTHROPIC_FIELDS:
            out[_ANTHROPIC_FIELDS[field]] = value
        else:
            return None
    return out


def customised_messages_body(
    doc: dict[str, Any], req: am.CountTokensRequest, custom: Customisation, dialect: Dialect, *,
    sampling: bool = True,
) -> dict[str, Any] | None:
    """``doc`` (the body ``req`` was decoded from) with the custom model's layers, or None when a
    layer cannot be expressed on it (see the module)."""
    if any(role == "system" for role, _ in custom.messages):
        return None
    defaults = _sampling_defaults(custom, dialect) if sampling else {}
    if defaults is None:
        return None
    out = dict(doc)
    if custom.system and not has_own_system(req):
        out["system"] = custom.system
    if custom.messages:
        messages = list(out.get("messages") or [])
        lead = _leading_system_messages(messages)
        layer = [{"role": role, "content": content} for role, content in custom.messages]
        out["messages"] = [*messages[:lead], *layer, *messages[lead:]]
    for field, value in defaults.items():
        if out.get(field) in (None, []):
            out[field] = value
    return out
