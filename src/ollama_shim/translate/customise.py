"""Custom models (``ollama create``): their definition, its checks, and how it changes a request.

A ``CustomModel`` is what ``/api/create`` (or a ``[[models]]`` table of the config) defines: a
name, the model it is made ``from`` (a backend model or another custom model), and its layers:
``system``, ``parameters`` (Ollama option names), ``messages`` and ``license``. ``chain_of`` walks
from a custom model down to the backend model it rests on (cycle-safe, at most ``MAX_CHAIN``
deep) and ``flatten`` folds the chain into one ``Customisation``, as Ollama inherits layers: a
non-empty ``system``, ``messages`` or ``license`` replaces its parent's, ``parameters`` are merged
over the parent's.

A customisation applies to a request as Ollama applies a Modelfile: its ``system`` prompt goes
first unless the request starts with its own system message, its ``messages`` go before the
request's (after the request's leading system messages), and its parameters are defaults under
the request's own ``options``. ``apply_customisation`` does it for an Ollama ``ChatRequest``
(the form the other compatibility endpoints translate to), ``customise_request`` for
``/api/chat`` and ``/api/generate``, ``customised_openai_chat`` for a forwarded chat completion.

``modelfile_of`` and ``parameters_text`` render ``/api/show``'s ``modelfile`` and ``parameters``
as ``ollama show`` prints them.

May import: stdlib, msgspec, ``ollama_shim.wire``, ``ollama_shim.errors``, ``ollama_shim.dialect``,
other ``ollama_shim.translate`` modules.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from ollama_shim.dialect import LLAMACPP, Dialect
from ollama_shim.errors import BadRequest
from ollama_shim.translate.messages import messages_to_openai
from ollama_shim.translate.names import DEFAULT_TAG, split_tag
from ollama_shim.translate.options import options_to_sampling
from ollama_shim.translate.request import ChatRequestPlan, GenerationPlan
from ollama_shim.wire import ollama as ow

__all__ = [
    "MAX_CHAIN",
    "CustomModel",
    "CustomShowResponse",
    "Customisation",
    "apply_customisation",
    "chain_of",
    "checked_custom_model",
    "customise_plan",
    "customise_request",
    "customised_openai_chat",
    "display_name",
    "flatten",
    "model_key",
    "modelfile_of",
    "parameters_text",
]

MAX_CHAIN = 16  # custom models made from custom models, at most this deep
MESSAGE_ROLES = ("system", "user", "assistant")
_DEFAULT_PREFIXES = ("registry.ollama.ai/library/", "registry.ollama.ai/", "library/")
_PART = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,79}")
_HOST = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,349}(:[0-9]+)?")


# ---------------------------------------------------------------------------
# Names
# ---------------------------------------------------------------------------


def _without_default_prefix(name: str) -> str:
    lowered = name.lower()
    for prefix in _DEFAULT_PREFIXES:
        if lowered.startswith(prefix):
            return name[len(prefix):]
    return name


def display_name(name: str) -> str:
    """The name as the client spelled it, without Ollama's default host/namespace, with a tag."""
    base, tag = split_tag(_without_default_prefix(name.strip()))
    return f"{base}:{tag or DEFAULT_TAG}"


def model_key(name: str) -> str:
    """The key a custom model is stored and found under: ``x``, ``X:latest``, ``library/x`` are one."""
    return display_name(name).lower()


def is_valid_name(name: str) -> bool:
    """Ollama's name rules: ``[host/][namespace/]model[:tag]``, each part 1-80 of ``[A-Za-z0-9_.-]``."""
    base, tag = split_tag(name.strip())
    parts = base.split("/")
    if tag is not None and not _PART.fullmatch(tag):
        return False
    if not 1 <= len(parts) <= 3 or not all(_PART.fullmatch(p) for p in parts[-2:]):
        return False
    return len(parts) < 3 or bool(_HOST.fullmatch(parts[0]))


# ---------------------------------------------------------------------------
# The definition and its checks
# ---------------------------------------------------------------------------

Message = tuple[str, str]  # (role, content)


@dataclass(frozen=True)
class CustomModel:
    """One custom model. ``name`` and ``base`` keep the client's spelling (``name`` with a tag)."""

    name: str
    base: str
    system: str = ""
    parameters: Mapping[str, Any] = field(default_factory=dict)
    messages: tuple[Message, ...] = ()
    license: tuple[str, ...] = ()
    modified_ns: int = 0
    from_config: bool = False

    @property
    def key(self) -> str:
        return model_key(self.name)

    @property
    def digest(self) -> str:
        """A 64-hex digest of the definition: it changes whenever the model does."""
        definition = [self.key, model_key(self.base), self.system, dict(self.parameters), self.messages, self.license]
        return hashlib.sha256(msgspec.json.encode(definition)).hexdigest()


def checked_parameters(raw: Mapping[str, Any] | None) -> dict[str, Any]:
    """Ollama option names with values of the right type (Ollama's wording otherwise); a bare
    ``stop`` string becomes a list, ``null`` values are dropped."""
    given = {key: value for key, value in (raw or {}).items() if value is not None}
    translated = options_to_sampling(given, LLAMACPP)  # raises on a wrong type; llama.cpp knows every key
    unknown = [item.name for item in translated.ignored if item.reason == "unknown"]
    if unknown:
        raise BadRequest(f"unknown parameter '{unknown[0]}'")
    if isinstance(given.get("stop"), str):
        given["stop"] = [given["stop"]]
    return given


def checked_messages(messages: Sequence[ow.RequestMessage] | None) -> tuple[Message, ...]:
    out: list[Message] = []
    for message in messages or ():
        role = message.role.lower()
        if role not in MESSAGE_ROLES:
            raise BadRequest('message role must be one of "system", "user", or "assistant"')
        if message.images or message.tool_calls:
            raise BadRequest("a custom model's messages hold text only (no images or tool calls)")
        out.append((role, message.content))
    return tuple(out)


def checked_license(license: str | Sequence[str] | None) -> tuple[str, ...]:
    if license is None:
        return ()
    return (license,) if isinstance(license, str) else tuple(license)


def checked_custom_model(
    name: str,
    base: str,
    *,
    system: str | None = None,
    parameters: Mapping[str, Any] | None = None,
    messages: Sequence[ow.RequestMessage] | None = None,
    license: str | Sequence[str] | None = None,
    modified_ns: int = 0,
    from_config: bool = False,
) -> CustomModel:
    """A ``CustomModel`` from what a client (or the config) gave; BadRequest in Ollama's words."""
    if not name or not is_valid_name(name):
        raise BadRequest("invalid model name")
    if not base:
        raise BadRequest("neither 'from' or 'files' was specified")
    if not is_valid_name(base):
        raise BadRequest(f"invalid model name {base!r} in 'from'")
    return CustomModel(
        name=display_name(name),
        base=base.strip(),
        system=system or "",
        parameters=checked_parameters(parameters),
        messages=checked_messages(messages),
        license=checked_license(license),
        modified_ns=modified_ns,
        from_config=from_config,
    )


# ---------------------------------------------------------------------------
# Chains and the flattened customisation
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Customisation:
    """A custom model's layers, inherited through its chain; ``base`` is the backend model's name."""

    name: str
    parent: str  # the model it was made from (Ollama's details.parent_model)
    base: str
    system: str = ""
    messages: tuple[Message, ...] = ()
    parameters: Mapping[str, Any] = field(default_factory=dict)
    license: tuple[str, ...] = ()


def chain_of(name: str, lookup: Callable[[str], CustomModel | None]) -> list[CustomModel]:
    """The custom model ``name`` and those it is made from, down to the one whose ``base`` is not
    custom (a backend model); ``[]`` when ``name`` is no custom model. ``lookup`` takes a
    ``model_key``. A cycle or a chain deeper than ``MAX_CHAIN`` is a BadRequest."""
    chain: list[CustomModel] = []
    seen: set[str] = set()
    current = lookup(model_key(name))
    while current is not None:
        if current.key in seen:
            path = " -> ".join([*(m.name for m in chain), current.name])
            raise BadRequest(f"custom models form a cycle: {path}")
        if len(chain) >= MAX_CHAIN:
            raise BadRequest(f"custom model {display_name(name)!r} is made from more than {MAX_CHAIN} custom models")
        seen.add(current.key)
        chain.append(current)
        current = lookup(model_key(current.base))
    return chain


def flatten(chain: Sequence[CustomModel]) -> Customisation:
    """``chain`` (from ``chain_of``, not empty) folded into one customisation."""
    system = ""
    messages: tuple[Message, ...] = ()
    license: tuple[str, ...] = ()
    parameters: dict[str, Any] = {}
    for model in reversed(chain):  # from the one nearest the backend model up to the one asked for
        system = model.system or system
        messages = model.messages or messages
        license = model.license or license
        parameters.update(model.parameters)
    top = chain[0]
    return Customisation(name=top.name, parent=display_name(top.base), base=chain[-1].base, system=system,
                         messages=messages, parameters=parameters, license=license)


# ---------------------------------------------------------------------------
# Applying it to requests
# ---------------------------------------------------------------------------


def merged_options(options: Mapping[str, Any] | None, custom: Customisation) -> dict[str, Any] | None:
    """The custom parameters as defaults under the request's own options (a ``null`` there is unset)."""
    if not custom.parameters:
        return dict(options) if options is not None else None
    return {**custom.parameters, **{k: v for k, v in (options or {}).items() if v is not None}}


def _leading_system_count(roles: Sequence[str]) -> int:
    count = 0
    while count < len(roles) and roles[count] in ("system", "developer"):
        count += 1
    return count


def apply_customisation(req: ow.ChatRequest, custom: Customisation) -> ow.ChatRequest:
    """An Ollama chat request with a custom model's system prompt, messages and parameters applied."""
    messages = list(req.messages or [])
    lead = _leading_system_count([m.role for m in messages])
    layer = [ow.RequestMessage(role=role, content=content) for role, content in custom.messages]
    if lead == 0 and custom.system:
        layer.insert(0, ow.RequestMessage(role="system", content=custom.system))
    return msgspec.structs.replace(req, messages=[*messages[:lead], *layer, *messages[lead:]],
                                   options=merged_options(req.options, custom))


def _customised_generate(req: ow.GenerateRequest, custom: Customisation) -> ow.GenerateRequest:
    options = merged_options(req.options, custom)
    if req.raw or req.suffix or req.system or not custom.system:  # raw and fill-in-the-middle take no system
        return msgspec.structs.replace(req, options=options)
    return msgspec.structs.replace(req, system=custom.system, options=options)


def customise_request(
    req: ow.ChatRequest | ow.GenerateRequest, custom: Customisation | None
) -> ow.ChatRequest | ow.GenerateRequest:
    """``/api/chat`` and ``/api/generate``: the request as the custom model changes it (unchanged
    for a backend model). A generate request's messages are added to its plan (``customise_plan``)."""
    if custom is None:
        return req
    if isinstance(req, ow.ChatRequest):
        return apply_customisation(req, custom)
    return _customised_generate(req, custom)


def customise_plan(
    plan: GenerationPlan, req: ow.ChatRequest | ow.GenerateRequest, custom: Customisation | None, dialect: Dialect
) -> GenerationPlan:
    """A generate request's chat plan with the custom model's messages before the prompt (not for
    ``raw``, fill-in-the-middle, or a request that carries an earlier ``context``), as Ollama does."""
    if custom is None or not custom.messages or not isinstance(req, ow.GenerateRequest):
        return plan
    if not isinstance(plan, ChatRequestPlan) or req.context:
        return plan
    messages = plan.request.messages
    lead = _leading_system_count([m.role for m in messages])
    layer = messages_to_openai([ow.RequestMessage(role=r, content=c) for r, c in custom.messages], dialect)
    request = msgspec.structs.replace(plan.request, messages=[*messages[:lead], *layer, *messages[lead:]])
    return dataclasses.replace(plan, request=request)


_MAX_TOKENS_FIELDS = ("max_tokens", "max_completion_tokens")


def customised_openai_chat(doc: dict[str, Any], custom: Customisation, dialect: Dialect) -> dict[str, Any]:
    """A forwarded ``/v1/chat/completions`` body with the custom model's layers: its system prompt
    and messages as above, its parameters (in the backend's spelling) where the body has none."""
    out = dict(doc)
    messages = out.get("messages")
    if isinstance(messages, list):
        roles = [m.get("role") if isinstance(m, dict) else None for m in messages]
        lead = _leading_system_count([r if isinstance(r, str) else "" for r in roles])
        layer: list[dict[str, Any]] = [{"role": role, "content": content} for role, content in custom.messages]
        if lead == 0 and custom.system:
            layer.insert(0, {"role": "system", "content": custom.system})
        out["messages"] = [*messages[:lead], *layer, *messages[lead:]]
    sampling = msgspec.structs.asdict(options_to_sampling(custom.parameters, dialect).sampling)
    for key, value in sampling.items():
        if value is None or key in out:
            continue
        if key in _MAX_TOKENS_FIELDS and any(f in out for f in _MAX_TOKENS_FIELDS):
            continue
        out[key] = value
    return out


# ---------------------------------------------------------------------------
# /api/show
# ---------------------------------------------------------------------------


class ShowMessage(msgspec.Struct):
    role: str
    content: str


class CustomShowResponse(ow.ShowResponse, omit_defaults=True, kw_only=True):
    """``/api/show`` of a custom model: the base model's answer plus the model's ``messages``."""

    messages: list[ShowMessage] | None = None


def _quoted(value: str) -> str:
    """A Modelfile value, quoted only when it must be (a newline or edge spaces)."""
    if "\n" in value or value != value.strip(" "):
        return f'"""{value}"""' if '"' in value else f'"{value}"'
    return value


def _values(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else [value]


def _plain(value: Any) -> str:
    """Go's ``%v``: ``true``, ``0.7``, ``1`` for 1.0."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _go_syntax(value: Any) -> str:
    """Go's ``%#v``: strings double-quoted, numbers as ``%v``."""
    return msgspec.json.encode(value).decode() if isinstance(value, str) else _plain(value)


def parameters_text(parameters: Mapping[str, Any]) -> str:
    """``/api/show``'s ``parameters``: a line per value (lists repeat the key), keys sorted."""
    return "\n".join(f"{key:<30} {_go_syntax(v)}" for key in sorted(parameters) for v in _values(parameters[key]))


def modelfile_of(custom: Customisation) -> str:
    """The Modelfile ``ollama show --modelfile`` prints, with ``FROM`` naming the parent model."""
    lines = [
        '# Modelfile generated by "ollama show"',
        "# To build a new Modelfile based on this, replace FROM with:",
        f"# FROM {custom.name}",
        "",
        f"FROM {custom.parent}",
    ]
    if custom.system:
        lines.append(f"SYSTEM {_quoted(custom.system)}")
    for key in sorted(custom.parameters):
        lines.extend(f"PARAMETER {key} {_quoted(_plain(v))}" for v in _values(custom.parameters[key]))
    for text in custom.license:
        lines.append(f"LICENSE {_quoted(text)}")
    for role, content in custom.messages:
        lines.append(f"MESSAGE {role} {_quoted(content)}")
    return "\n".join(lines) + "\n"


def _with_base_parameters(own: str, base: str | None, custom: Customisation) -> str | None:
    """The custom parameters, then the base model's lines for keys it does not set (``num_ctx``)."""
    lines = (base or "").splitlines()
    inherited = [line for line in lines if line.split() and line.split()[0] not in custom.parameters]
    return "\n".join(line for line in (own, *inherited) if line) or None


def show_response(base: ow.ShowResponse, custom: Customisation) -> CustomShowResponse:
    """The base model's ``/api/show`` answer, made the custom model's."""
    fields = msgspec.structs.asdict(base)
    details = base.details
    if details is not None:
        fields["details"] = msgspec.structs.replace(details, parent_model=custom.parent)
    fields.update(
        modelfile=modelfile_of(custom),
        parameters=_with_base_parameters(parameters_text(custom.parameters), base.parameters, custom),
        system=custom.system or None,
        license="\n".join(custom.license) or None,
        messages=[ShowMessage(role, content) for role, content in custom.messages] or None,
    )
    return CustomShowResponse(**fields)
