"""The header of a GGUF model file: what a llama.cpp model is, read without loading it.

A GGUF file (version 2 or 3, little-endian) opens with its metadata, key/value pairs, and the
list of its tensors (name, shape, type, offset); the weights follow. ``decode_header`` walks
those two sections of a buffer (in practice a read-only memory map of the file, so only the
pages it touches are read) and keeps what the catalog needs: the architecture, the file type,
the chat template(s), the trained context, the embedding width, the vocabulary size, and two
sums over the tensors, the parameter count (elements) and the weights' bytes, which are what a
loaded llama-server reports as ``meta.n_params`` and ``meta.size``.

Bounded whatever the file holds: every offset is checked against the buffer, counts are capped
(``MAX_TENSORS``, ``MAX_KEYS``, ``MAX_WALKED`` strings walked in arrays, ``MAX_DEPTH`` of nested
arrays), a kept string is at most ``MAX_KEPT_STRING`` bytes, and anything out of bounds or
malformed is one ``GgufError``. Work is linear in the size of the header.

May import: stdlib.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

MAGIC = b"GGUF"
Buffer = bytes | memoryview  # what the header is read from (a memory map through a memoryview)
MAX_KEYS = 1 << 16
MAX_TENSORS = 1 << 20
MAX_WALKED = 1 << 22  # strings (and nested arrays) stepped over in arrays, all arrays together
MAX_DEPTH = 3  # arrays of arrays of arrays
MAX_DIMS = 4  # GGML_MAX_DIMS
MAX_KEPT_STRING = 1 << 20  # a chat template longer than this is treated as absent
MAX_KEY = 1 << 16

# Value types of a metadata entry, and the struct format of each fixed-size one.
_STRING, _ARRAY = 8, 9
_FIXED = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_INTEGERS = frozenset({0, 1, 2, 3, 4, 5, 10, 11})

# ggml tensor types: (elements per block, bytes per block). A type missing here makes the byte
# sum unknown (None), never wrong.
_QK_K = 256
TENSOR_TYPES: dict[int, tuple[int, int]] = {
    0: (1, 4),  # F32
    1: (1, 2),  # F16
    2: (32, 18),  # Q4_0
    3: (32, 20),  # Q4_1
    6: (32, 22),  # Q5_0
    7: (32, 24),  # Q5_1
    8: (32, 34),  # Q8_0
    9: (32, 40),  # Q8_1
    10: (_QK_K, 84),  # Q2_K
    11: (_QK_K, 110),  # Q3_K
    12: (_QK_K, 144),  # Q4_K
    13: (_QK_K, 176),  # Q5_K
    14: (_QK_K, 210),  # Q6_K
    15: (_QK_K, 292),  # Q8_K
    16: (_QK_K, 66),  # IQ2_XXS
    17: (_QK_K, 74),  # IQ2_XS
    18: (_QK_K, 98),  # IQ3_XXS
    19: (_QK_K, 50),  # IQ1_S
    20: (32, 18),  # IQ4_NL
    21: (_QK_K, 110),  # IQ3_S
    22: (_QK_K, 82),  # IQ2_S
    23: (_QK_K, 136),  # IQ4_XS
    24: (1, 1),  # I8
    25: (1, 2),  # I16
    26: (1, 4),  # I32
    27: (1, 8),  # I64
    28: (1, 8),  # F64
    29: (_QK_K, 56),  # IQ1_M
    30: (1, 2),  # BF16
    34: (_QK_K, 54),  # TQ1_0
    35: (_QK_K, 66),  # TQ2_0
    39: (32, 17),  # MXFP4
    40: (64, 36),  # NVFP4
    41: (128, 18),  # Q1_0
}


class GgufError(ValueError):
    """The buffer is not a GGUF header this reader can take, or is malformed or out of bounds."""


@dataclass(frozen=True)
class GgufHeader:
    """What a GGUF file says of its model; None wherever the file does not say (or says nonsense)."""

    version: int
    architecture: str | None = None  # general.architecture: Ollama's "family"
    file_type: int | None = None  # general.file_type: llama.cpp's ftype number
    chat_template: str | None = None  # tokenizer.chat_template
    tool_use_template: str | None = None  # tokenizer.chat_template.tool_use
    context_length: int | None = None  # <arch>.context_length: what it was trained for
    embedding_length: int | None = None  # <arch>.embedding_length
    vocab_size: int | None = None  # entries of tokenizer.ggml.tokens
    split_count: int = 1  # split.count: the model spans this many files (the sums below cover one)
    parameter_count: int = 0  # elements of all tensors in this file
    tensor_bytes: int | None = None  # bytes of all tensors in this file; None: a type is unknown


_KEPT_STRINGS = ("general.architecture", "tokenizer.chat_template", "tokenizer.chat_template.tool_use")
_TOKENS = "tokenizer.ggml.tokens"


class _Cursor:
    """Reads little-endian values from ``buf`` at a moving offset, every read checked."""

    def __init__(self, buf: Buffer) -> None:
        self.buf = buf
        self.pos = 0
        self.walked = 0

    def fixed(self, fmt: str) -> int | float | bool:
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.buf):
            raise GgufError("the header ends early")
        (value,) = struct.unpack_from("<" + fmt, self.buf, self.pos)
        self.pos += size
        return value  # type: ignore[no-any-return]

    def count(self, fmt: str, limit: int, what: str) -> int:
        value = int(self.fixed(fmt))
        if value > limit:
            raise GgufError(f"{what} {value} is over {limit}")
        return value

    def skip(self, size: int) -> None:
        if size < 0 or self.pos + size > len(self.buf):
            raise GgufError("the header ends early")
        self.pos += size

    def string(self, keep: int = 0) -> str | None:
        """A length-prefixed string: its text when it is at most ``keep`` bytes of UTF-8, else stepped over."""
        length = int(self.fixed("Q"))
        start = self.pos
        self.skip(length)
        if length > keep:
            return None
        try:
            return bytes(self.buf[start : start + length]).decode("utf-8")
        except UnicodeDecodeError:
            return None

    def step(self) -> None:
        """Count one walked item against ``MAX_WALKED``."""
        self.walked += 1
        if self.walked > MAX_WALKED:
            raise GgufError(f"more than {MAX_WALKED} array items to walk")


def _value(cur: _Cursor, type_: int, keep: int, depth: int = 0) -> int | float | bool | str | None:
    """One metadata value: a number, a kept string, or None (a string not kept, an array: stepped over)."""
    fmt = _FIXED.get(type_)
    if fmt is not None:
        return cur.fixed(fmt)
    if type_ == _STRING:
        return cur.string(keep)
    if type_ == _ARRAY:
        _array(cur, depth + 1)
        return None
    raise GgufError(f"unknown value type {type_}")


def _array(cur: _Cursor, depth: int) -> int:
    """Step over an array; its length."""
    if depth > MAX_DEPTH:
        raise GgufError("arrays nested too deep")
    item_type = int(cur.fixed("I"))
    length = int(cur.fixed("Q"))
    fmt = _FIXED.get(item_type)
    if fmt is not None:
        cur.skip(length * struct.calcsize(fmt))
        return length
    if item_type not in (_STRING, _ARRAY):
        raise GgufError(f"unknown array item type {item_type}")
    for _ in range(length):
        cur.step()
        if item_type == _STRING:
            cur.skip(int(cur.fixed("Q")))
        else:
            _array(cur, depth + 1)
    return length


def _tensor_sums(cur: _Cursor, tensors: int) -> tuple[int, int | None]:
    """(elements, bytes) over the tensor list; bytes None when a tensor's type is not known."""
    elements = 0
    total: int | None = 0
    for _ in range(tensors):
        cur.skip(int(cur.fixed("Q")))  # name
        dims = cur.count("I", MAX_DIMS, "tensor dimensions")
        n = 1
        for _ in range(dims):
            n *= int(cur.fixed("Q"))
        type_ = int(cur.fixed("I"))
        cur.skip(8)  # offset of its data
        elements += n
        block = TENSOR_TYPES.get(type_)
        if total is not None and block is not None and n % block[0] == 0:
            total += n // block[0] * block[1]
        else:
            total = None
    return elements, total


def decode_header(buf: Buffer) -> GgufHeader:
    """The header of the GGUF file in ``buf``; ``GgufError`` if it is not one or is malformed."""
    if bytes(buf[:4]) != MAGIC:
        raise GgufError("not a GGUF file")
    cur = _Cursor(buf)
    cur.pos = 4
    version = int(cur.fixed("I"))
    if version not in (2, 3):
        raise GgufError(f"GGUF version {version} is not read here")
    tensors = cur.count("Q", MAX_TENSORS, "tensor count")
    keys = cur.count("Q", MAX_KEYS, "key count")
    strings: dict[str, str] = {}
    numbers: dict[str, int] = {}
    vocab: int | None = None
    for _ in range(keys):
        key = cur.string(MAX_KEY) or ""
        type_ = int(cur.fixed("I"))
        if key == _TOKENS and type_ == _ARRAY:
            vocab = _array(cur, 1)
            continue
        value = _value(cur, type_, MAX_KEPT_STRING if key in _KEPT_STRINGS else 0)
        if isinstance(value, str):
            strings[key] = value
        elif type_ in _INTEGERS and isinstance(value, int) and not isinstance(value, bool):
            numbers[key] = value
    elements, total = _tensor_sums(cur, tensors)
    arch = strings.get("general.architecture")
    return GgufHeader(
        version=version,
        architecture=arch,
        file_type=numbers.get("general.file_type"),
        chat_template=strings.get("tokenizer.chat_template"),
        tool_use_template=strings.get("tokenizer.chat_template.tool_use"),
        context_length=numbers.get(f"{arch}.context_length") if arch else None,
        embedding_length=numbers.get(f"{arch}.embedding_length") if arch else None,
        vocab_size=vocab,
        split_count=max(1, numbers.get("split.count", 1)),
        parameter_count=elements,
        tensor_bytes=total,
    )
