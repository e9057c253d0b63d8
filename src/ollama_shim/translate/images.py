"""Ollama images (bare base64 strings) -> ``data:`` URLs for OpenAI ``image_url`` content parts.

The MIME type is sniffed from the decoded bytes, since Ollama clients send no type; an unknown
type is labelled ``image/jpeg``, as Ollama's own llama-server adapter does.

May import: stdlib, ``ollama_shim.errors``.
"""

from __future__ import annotations

import base64
import binascii

from ollama_shim.errors import BadRequest

__all__ = ["image_data_url", "sniff_image_mime"]

_FALLBACK_MIME = "image/jpeg"


def sniff_image_mime(data: bytes) -> str:
    """The MIME type named by the file signature at the start of ``data``."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data.startswith(b"BM"):
        return "image/bmp"
    return _FALLBACK_MIME


def image_data_url(encoded: str, *, where: str = "images[0]") -> str:
    """``data:<sniffed mime>;base64,<encoded>`` for one Ollama image; ``BadRequest`` when it is not
    standard padded base64 (a ``data:`` prefix included, as in Ollama). ``where`` names the
    image in the error, e.g. ``messages[1].images[0]``."""
    compact = "".join(encoded.split())  # Go's decoder skips line breaks; so do we
    try:
        data = base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadRequest(f"invalid image in {where}: illegal base64 data") from exc
    if not data:
        raise BadRequest(f"invalid image in {where}: no image data")
    return f"data:{sniff_image_mime(data)};base64,{compact}"
