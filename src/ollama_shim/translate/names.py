"""Model names: upstream ids -> Ollama display names, and the keys a requested name matches.

Ollama names are ``[host/][namespace/]model:tag``: each part starts with ``[A-Za-z0-9_]`` and
holds ``-``, ``_`` and ``.``; the tag is what follows the last ``:``; the display always keeps the
tag; matching is case-insensitive and ``x`` is ``x:latest`` is ``library/x:latest``.

Upstream ids are mapped so that an Ollama client can both show and send them:
``lmstudio-community/Qwen2.5-7B-Instruct-GGUF`` -> ``...-GGUF:latest``; ``model@q4_k_m``
(LM Studio) -> ``model:q4_k_m``; ``meta-llama/llama-3-8b:free`` keeps its tag; a file path
becomes its file name without ``.gguf``.

May import: stdlib only.
"""

from __future__ import annotations

import re

DEFAULT_TAG = "latest"
_DEFAULT_PREFIXES = ("registry.ollama.ai/library/", "registry.ollama.ai/", "library/")
_BAD_CHARS = re.compile(r"[^A-Za-z0-9_.\-]+")
_PART_MAX = 80


def _clean_part(part: str) -> str:
    part = _BAD_CHARS.sub("-", part).lstrip("-.")
    return part[:_PART_MAX] or "_"


def split_tag(name: str) -> tuple[str, str | None]:
    """``a/b:t`` -> (``a/b``, ``t``); a ``:`` before the last ``/`` (a host port) is not a tag."""
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        return name[:colon], name[colon + 1 :]
    return name, None


def ollama_name(upstream_id: str) -> str:
    """The Ollama display name (always with a tag) for a backend's model id."""
    ident = upstream_id.strip().replace("\\", "/")
    if ident.startswith("/") or ident.lower().endswith(".gguf"):
        ident = ident.rsplit("/", 1)[-1]
    if ident.lower().endswith(".gguf"):
        ident = ident[: -len(".gguf")]
    if "@" in ident:
        base, tag = ident.rsplit("@", 1)
    else:
        base, found = split_tag(ident)
        tag = found or DEFAULT_TAG
    parts = [p for p in base.split("/") if p]
    if len(parts) > 3:  # host/namespace/model at most
        parts = [*parts[:2], "-".join(parts[2:])]
    return "/".join(_clean_part(p) for p in parts or ["model"]) + ":" + _clean_part(tag)


def request_keys(requested: str) -> tuple[str, ...]:
    """Lower-cased keys under which a client's model string may be found, most exact first."""
    raw = requested.strip()
    lowered = raw.lower()
    stripped = lowered
    for prefix in _DEFAULT_PREFIXES:
        if stripped.startswith(prefix):
            stripped = stripped[len(prefix) :]
            break
    base, tag = split_tag(stripped)
    with_tag = f"{base}:{tag or DEFAULT_TAG}"
    keys = [lowered, with_tag]
    if tag in (None, DEFAULT_TAG):
        keys.append(base)  # an upstream id such as qwen/qwen3-8b, asked for as qwen/qwen3-8b:latest
    return tuple(dict.fromkeys(keys))
