"""The header of a GGUF model file: what a llama.cpp model is, read without loading it.

A GGUF file (version 2 or 3, little-endian) opens with its metadata, key/value pairs, and the
list of its tensors (name, shape, type, offset); the weights follow. ``decode_header`` walks
those two sections of a buffer (the first bytes of the file, read by ``model_files``) and keeps
what the catalog needs: the architecture, the file type, the chat template(s), the trained
context, the embedding width, the vocabulary size, and two sums over the tensors, the parameter
count (elements) and the weights' bytes, which are what a loaded llama-server reports as
``meta.n_params`` and ``meta.size``.

Bounded whatever the file holds: every offset is checked against the buffer, counts are capped
(``MAX_TENSORS``, ``MAX_KEYS``, ``MAX_WALKED`` strings walked in arrays), a kept string is at
most ``MAX_KEPT_STRING`` bytes (the architecture at most ``MAX_NAME``), only the few numbers the
catalog reads are kept, and anything malformed is one ``GgufError``. A buffer that ends before
the header does is ``GgufShort``, which says how many bytes it would take at least, so that a
reader can read more (or give up on a claim no file could hold). As llama.cpp, no arrays of
arrays. Work is linear in the size of the buffer.

May import: stdlib.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass

MAGIC = b"GGUF"
Buffer = bytes | bytearray | memoryview  # the first bytes of a file
MAX_KEYS = 1 << 16
# llama.cpp compares each tensor's name with every earlier one's: a file with this many tensors
# already takes it seconds to open, and real models have a few thousand at most.
MAX_TENSORS = 1 << 16
# Strings stepped over in arrays, all arrays together: a vocabulary and its merges (the largest
# known, about 650 thousand together) many times over.
MAX_WALKED = 1 << 22
MAX_DIMS = 4  # GGML_MAX_DIMS
MAX_KEPT_STRING = 1 << 20  # a chat template longer than this is left out (``template_left_out``)
MAX_NAME = 64  # an architecture (a catalog's family) longer than this is no name
MAX_KEY = 128  # a longer key is none the catalog reads

# Value types of a metadata entry, and the struct format of each fixed-size one.
_STRING, _ARRAY = 8, 9
_FIXED = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_INTEGERS = frozenset({0, 1, 2, 3, 4, 5, 10, 11})
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_SHAPES = tuple(struct.Struct(f"<{n}Q") for n in range(MAX_DIMS + 1))

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
    """The buffer is not a GGUF header this reader can take, or is malformed."""


class GgufShort(GgufError):
    """The buffer ends before the header does; ``needed``: the fewest bytes it would take to go on."""

    def __init__(self, needed: int) -> None:
        super().__init__(f"the header ends early (at least {needed} bytes needed)")
        self.needed = needed


@dataclass(frozen=True)
class GgufHeader:
    """What a GGUF file says of its model; None wherever the file does not say (or says nonsense)."""

    version: int
    architecture: str | None = None  # general.architecture: Ollama's "family"
    file_type: int | None = None  # general.file_type: llama.cpp's ftype number
    chat_template: str | None = None  # tokenizer.chat_template
    tool_use_template: str | None = None  # tokenizer.chat_template.tool_use
    template_left_out: bool = False  # a template is there but too long (or not UTF-8) to keep
    context_length: int | None = None  # <arch>.context_length: what it was trained for
    embedding_length: int | None = None  # <arch>.embedding_length
    vocab_size: int | None = None  # entries of tokenizer.ggml.tokens
    split_count: int = 1  # split.count: the model spans this many files (the sums below cover one)
    parameter_count: int = 0  # elements of all tensors in this file
    tensor_bytes: int | None = None  # bytes of all tensors in this file; None: a type is unknown


_TEMPLATES = ("tokenizer.chat_template", "tokenizer.chat_template.tool_use")
_KEPT_STRINGS = {"general.architecture": MAX_NAME} | dict.fromkeys(_TEMPLATES, MAX_KEPT_STRING)
_KEPT_NUMBERS = frozenset({"general.file_type", "split.count"})
_PER_ARCHITECTURE = (".context_length", ".embedding_length")
_TOKENS = "tokenizer.ggml.tokens"


class _Cursor:
    """Reads little-endian values from ``buf`` at a moving offset, every read checked."""

    def __init__(self, buf: Buffer) -> None:
        self.buf = buf
        self.end = len(buf)
        self.pos = 0
        self.walked = 0

    def fixed(self, fmt: str) -> int | float | bool:
        size = struct.calcsize(fmt)
        self.need(size)
        (value,) = struct.unpack_from("<" + fmt, self.buf, self.pos)
        self.pos += size
        return value  # type: ignore[no-any-return]

    def u32(self) -> int:
        self.need(4)
        (value,) = _U32.unpack_from(self.buf, self.pos)
        self.pos += 4
        return int(value)

    def u64(self) -> int:
        self.need(8)
        (value,) = _U64.unpack_from(self.buf, self.pos)
        self.pos += 8
        return int(value)

    def count(self, limit: int, what: str) -> int:
        value = self.u64()
        if value > limit:
            raise GgufError(f"{what} {value} is over {limit}")
        return value

    def need(self, size: int) -> None:
        if self.pos + size > self.end:
            raise GgufShort(self.pos + size)

    def skip(self, size: int) -> None:
        self.need(size)
        self.pos += size

    def string(self, keep: int = 0) -> str | None:
        """A length-prefixed string: its text when it is at most ``keep`` bytes of UTF-8, else stepped over."""
        length = self.u64()
        start = self.pos
        self.skip(length)
        if length > keep:
            return None
        try:
            return bytes(self.buf[start : start + length]).decode("utf-8")
        except UnicodeDecodeError:
            return None

    def walk_strings(self, count: int) -> None:
        """Step over ``count`` strings of an array (counted against ``MAX_WALKED``)."""
        self.walked += count
        if self.walked > MAX_WALKED:
            raise GgufError(f"more than {MAX_WALKED} array items to walk")
        buf, pos, end, unpack = self.buf, self.pos, self.end, _U64.unpack_from
        for _ in range(count):
            if pos + 8 > end:
                raise GgufShort(pos + 8)
            pos += 8 + unpack(buf, pos)[0]
        if pos > end:
            raise GgufShort(pos)
        self.pos = pos


def _value(cur: _Cursor, type_: int, keep: int) -> int | float | bool | str | None:
    """One metadata value: a number, a kept string, or None (a string not kept, an array: stepped over)."""
    fmt = _FIXED.get(type_)
    if fmt is not None:
        return cur.fixed(fmt)
    if type_ == _STRING:
        return cur.string(keep)
    if type_ == _ARRAY:
        _array(cur)
        return None
    raise GgufError(f"unknown value type {type_}")


def _array(cur: _Cursor) -> int:
    """Step over an array; its length."""
    item_type = cur.u32()
    length = cur.u64()
    fmt = _FIXED.get(item_type)
    if fmt is not None:
        cur.skip(length * struct.calcsize(fmt))
    elif item_type == _STRING:
        cur.walk_strings(length)
    elif item_type == _ARRAY:
        raise GgufError("arrays of arrays are not GGUF llama.cpp reads")
    else:
        raise GgufError(f"unknown array item type {item_type}")
    return length


def _tensor_sums(cur: _Cursor, tensors: int) -> tuple[int, int | None]:
    """(elements, bytes) over the tensor list; bytes None when a tensor's type is not known."""
    buf, pos, end, u32, u64 = cur.buf, cur.pos, cur.end, _U32.unpack_from, _U64.unpack_from
    elements = 0
    total: int | None = 0
    for _ in range(tensors):
        if pos + 8 > end:
            raise GgufShort(pos + 8)
        pos += 8 + u64(buf, pos)[0]  # over the name
        if pos + 4 > end:
            raise GgufShort(pos + 4)
        (dims,) = u32(buf, pos)
        if dims > MAX_DIMS:
            raise GgufError(f"tensor dimensions {dims} is over {MAX_DIMS}")
        shape = _SHAPES[dims]
        if pos + 4 + shape.size + 12 > end:
            raise GgufShort(pos + 4 + shape.size + 12)
        n = math.prod(shape.unpack_from(buf, pos + 4))
        pos += 4 + shape.size
        (type_,) = u32(buf, pos)
        pos += 12  # its type and the offset of its data
        elements += n
        block = TENSOR_TYPES.get(type_)
        if total is not None and block is not None and n % block[0] == 0:
            total += n // block[0] * block[1]
        else:
            total = None
    cur.pos = pos
    return elements, total


def _kept_number(key: str) -> bool:
    return key in _KEPT_NUMBERS or key.endswith(_PER_ARCHITECTURE)


def decode_header(buf: Buffer) -> GgufHeader:
    """The header of the GGUF file in ``buf``; ``GgufShort`` if ``buf`` ends before it does,
    ``GgufError`` if it is not one or is malformed."""
    if len(buf) < 4:
        raise GgufShort(4)
    if bytes(buf[:4]) != MAGIC:
        raise GgufError("not a GGUF file")
    cur = _Cursor(buf)
    cur.pos = 4
    version = cur.u32()
    if version not in (2, 3):
        raise GgufError(f"GGUF version {version} is not read here")
    tensors = cur.count(MAX_TENSORS, "tensor count")
    keys = cur.count(MAX_KEYS, "key count")
    strings: dict[str, str] = {}
    numbers: dict[str, int] = {}
    vocab: int | None = None
    left_out = False
    for _ in range(keys):
        key = cur.string(MAX_KEY) or ""
        type_ = cur.u32()
        if key == _TOKENS and type_ == _ARRAY:
            vocab = _array(cur)
            continue
        value = _value(cur, type_, _KEPT_STRINGS.get(key, 0))
        if isinstance(value, str):
            strings[key] = value
        elif type_ in _INTEGERS and isinstance(value, int) and not isinstance(value, bool) and _kept_number(key):
            numbers[key] = value
        elif type_ == _STRING and key in _TEMPLATES:
            left_out = True
    elements, total = _tensor_sums(cur, tensors)
    arch = strings.get("general.architecture")
    return GgufHeader(
        version=version,
        architecture=arch,
        file_type=numbers.get("general.file_type"),
        chat_template=strings.get("tokenizer.chat_template"),
        tool_use_template=strings.get("tokenizer.chat_template.tool_use"),
        template_left_out=left_out,
        context_length=numbers.get(f"{arch}.context_length") if arch else None,
        embedding_length=numbers.get(f"{arch}.embedding_length") if arch else None,
        vocab_size=vocab,
        split_count=max(1, numbers.get("split.count", 1)),
        parameter_count=elements,
        tensor_bytes=total,
    )
