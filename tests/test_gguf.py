"""The GGUF header reader (``wire.gguf``) against files it did not write and a reader it did not write.

Files come from the ``gguf`` package's own writer (the one llama.cpp's converters use) and from
``.cache/models``; ``gguf.GGUFReader`` reads the same files for comparison. Then the hostile side:
every truncation of a file, random bytes after a valid start, counts past the caps, arrays of arrays:
always a ``GgufError``, never another exception, and never work beyond the caps.
"""

from __future__ import annotations

import contextlib
import struct
import tracemalloc
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ollama_shim.wire import gguf as wg
from support import llama as llama_support

Q = gguf.GGMLQuantizationType


Tensors = dict[str, tuple[Any, Q | None]]


def write(path: Path, *, arch: str = "llama", template: Any = None, tensors: Tensors | None = None,
          extra: dict[str, Any] | None = None) -> Path:
    """A GGUF file written by the ``gguf`` package."""
    writer = gguf.GGUFWriter(path, arch)
    writer.add_file_type(15)
    writer.add_context_length(4096)
    writer.add_embedding_length(64)
    writer.add_token_list([f"t{i}" for i in range(300)])
    writer.add_array("tokenizer.ggml.merges", ["a b", "c d"])
    if template is not None:
        writer.add_chat_template(template)
    for key, value in (extra or {}).items():
        if isinstance(value, int):
            writer.add_uint32(key, value)
        else:
            writer.add_string(key, value)
    for name, (data, raw) in (tensors or {"w": (np.zeros((4, 8), dtype=np.float32), None)}).items():
        if raw is None:
            writer.add_tensor(name, data)
        else:
            writer.add_tensor(name, data, raw_dtype=raw)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def decode_file(path: Path) -> wg.GgufHeader:
    return wg.decode_header(path.read_bytes())


# ---------------------------------------------------------------------------
# Agreement with the third-party reader, on real and written files
# ---------------------------------------------------------------------------


def _third_party(path: Path) -> dict[str, Any]:
    reader = gguf.GGUFReader(path)
    arch = reader.fields["general.architecture"].contents()
    return {
        "architecture": arch,
        "file_type": reader.fields["general.file_type"].contents(),
        "context_length": reader.fields[f"{arch}.context_length"].contents(),
        "embedding_length": reader.fields[f"{arch}.embedding_length"].contents(),
        "vocab_size": len(reader.fields["tokenizer.ggml.tokens"].data),
        "parameter_count": sum(int(t.n_elements) for t in reader.tensors),
        "tensor_bytes": sum(int(t.n_bytes) for t in reader.tensors),
    }


def _ours(header: wg.GgufHeader) -> dict[str, Any]:
    return {key: getattr(header, key) for key in ("architecture", "file_type", "context_length", "embedding_length",
                                                  "vocab_size", "parameter_count", "tensor_bytes")}


@pytest.mark.parametrize("name", [llama_support.SMOLLM2, llama_support.GEMMA])
def test_real_model_files_read_as_the_gguf_package_reads_them(name: str) -> None:
    path = llama_support.model_file(name)
    assert _ours(decode_file(path)) == _third_party(path)


# What a loaded llama-server reports for the same files (``meta`` of its /v1/models entry).
LOADED_META = {
    llama_support.SMOLLM2: {"parameter_count": 134515008, "tensor_bytes": 96576768, "vocab_size": 49152,
                            "context_length": 8192, "embedding_length": 576},
    llama_support.GEMMA: {"parameter_count": 268098176, "tensor_bytes": 246587904, "vocab_size": 262144,
                          "context_length": 32768, "embedding_length": 640},
}


@pytest.mark.parametrize("name", list(LOADED_META))
def test_real_model_files_give_what_llama_server_reports_once_loaded(name: str) -> None:
    header = decode_file(llama_support.model_file(name))
    assert {key: getattr(header, key) for key in LOADED_META[name]} == LOADED_META[name]


def test_smollm2_has_a_template_and_gemma_none() -> None:
    assert "im_start" in (decode_file(llama_support.model_file(llama_support.SMOLLM2)).chat_template or "")
    assert decode_file(llama_support.model_file(llama_support.GEMMA)).chat_template is None


# Every tensor type of the table, as the gguf package sizes it.
@pytest.mark.parametrize("type_", sorted(wg.TENSOR_TYPES), ids=lambda t: Q(t).name)
def test_tensor_type_sizes_match_the_gguf_package(type_: int) -> None:
    assert wg.TENSOR_TYPES[type_] == gguf.GGML_QUANT_SIZES[Q(type_)]


def test_every_tensor_type_of_the_gguf_package_is_known() -> None:
    assert {int(t) for t in gguf.GGML_QUANT_SIZES} == set(wg.TENSOR_TYPES)


def test_written_file_sums_quantized_tensors(tmp_path: Path) -> None:
    q4k = np.zeros((2, 144), dtype=np.uint8)  # two Q4_K blocks of 256 elements each: bytes as stored
    q8 = np.zeros((3, 34), dtype=np.uint8)  # three Q8_0 blocks of 32
    path = write(tmp_path / "m.gguf", tensors={"a": (q4k, Q.Q4_K), "b": (q8, Q.Q8_0),
                                               "c": (np.zeros(10, dtype=np.float32), None)})
    header = decode_file(path)
    assert _ours(header) == _third_party(path)
    assert (header.parameter_count, header.tensor_bytes) == (512 + 96 + 10, 288 + 102 + 40)


def test_named_templates_keep_the_default_and_the_tool_use_one(tmp_path: Path) -> None:
    path = write(tmp_path / "m.gguf", template=[{"name": "default", "template": "plain"},
                                                {"name": "tool_use", "template": "{{ tools }}{{ tool_calls }}"}])
    header = decode_file(path)
    assert (header.chat_template, header.tool_use_template) == ("plain", "{{ tools }}{{ tool_calls }}")


def test_split_count_is_read(tmp_path: Path) -> None:
    header = decode_file(write(tmp_path / "m.gguf", extra={"split.count": 3}))
    assert header.split_count == 3


def test_an_overlong_template_is_left_out(tmp_path: Path) -> None:
    header = decode_file(write(tmp_path / "m.gguf", template="x" * (wg.MAX_KEPT_STRING + 1)))
    assert header.chat_template is None
    assert header.vocab_size == 300  # and what follows it is still read


def test_an_unknown_tensor_type_leaves_the_bytes_unknown_not_wrong(tmp_path: Path) -> None:
    raw = bytearray(write(tmp_path / "m.gguf").read_bytes())
    type_at = _tensor_type_offset(bytes(raw))
    raw[type_at:type_at + 4] = struct.pack("<I", 77)
    header = wg.decode_header(bytes(raw))
    assert (header.parameter_count, header.tensor_bytes) == (32, None)


def _tensor_type_offset(raw: bytes) -> int:
    """Where the type of the one tensor ``w`` (2 dims) sits in a file written by ``write``."""
    name_at = raw.rindex(struct.pack("<Q", 1) + b"w")
    return name_at + 8 + 1 + 4 + 2 * 8


# ---------------------------------------------------------------------------
# Hostile files
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_file(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = write(tmp_path_factory.mktemp("g") / "m.gguf", template="{{ tools }} {{ tool_calls }}")
    raw = path.read_bytes()
    return raw[: raw.rindex(struct.pack("<Q", 1) + b"w") + 8 + 1 + 4 + 16 + 4 + 8]  # through the tensor list


def test_the_small_file_decodes_whole(small_file: bytes) -> None:
    assert wg.decode_header(small_file).parameter_count == 32


def test_every_truncation_is_a_gguf_error(small_file: bytes) -> None:
    for cut in range(len(small_file)):
        with pytest.raises(wg.GgufError):
            wg.decode_header(small_file[:cut])


@settings(max_examples=300, deadline=None)
@given(tail=st.binary(max_size=400))
def test_random_bytes_after_a_valid_start_only_ever_give_a_header_or_a_gguf_error(tail: bytes) -> None:
    raw = wg.MAGIC + struct.pack("<IQQ", 3, 2, 3) + tail
    with contextlib.suppress(wg.GgufError):
        wg.decode_header(raw)


@settings(max_examples=200, deadline=None)
@given(flips=st.lists(st.tuples(st.integers(min_value=0), st.integers(0, 255)), min_size=1, max_size=8))
def test_corrupted_bytes_only_ever_give_a_header_or_a_gguf_error(small_file: bytes, flips: list[tuple[int, int]]
                                                                 ) -> None:
    raw = bytearray(small_file)
    for at, value in flips:
        raw[at % len(raw)] = value
    with contextlib.suppress(wg.GgufError):
        wg.decode_header(bytes(raw))


def _start(tensors: int, keys: int) -> bytes:
    return wg.MAGIC + struct.pack("<IQQ", 3, tensors, keys)


def _key(name: str) -> bytes:
    return struct.pack("<Q", len(name)) + name.encode()


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        (b"GGML" + bytes(20), "not a GGUF file"),
        (wg.MAGIC + struct.pack("<IQQ", 1, 0, 0), "version 1"),
        (wg.MAGIC + struct.pack(">IQQ", 3, 0, 0), "version 50331648"),  # big-endian
        (_start(wg.MAX_TENSORS + 1, 0), "tensor count"),
        (_start(0, wg.MAX_KEYS + 1), "key count"),
        (_start(0, 1) + _key("k") + struct.pack("<I", 99), "unknown value type 99"),
        (_start(0, 1) + _key("k") + struct.pack("<IIQ", 9, 99, 1), "unknown array item type"),
        # a billion one-byte strings claimed in an array: stopped at the walking cap, not walked
        (_start(0, 1) + _key("k") + struct.pack("<IIQ", 9, 8, 10**9) + bytes(8 * (wg.MAX_WALKED + 2)), "walk"),
        # an array of arrays, which llama.cpp refuses
        (_start(0, 1) + _key("k") + struct.pack("<IIQ", 9, 9, 0), "arrays of arrays"),
        (_start(1, 0) + _key("t") + struct.pack("<I", 5), "tensor dimensions"),
        # a fixed-size array longer than the file
        (_start(0, 1) + _key("k") + struct.pack("<IIQ", 9, 10, 1 << 60), "ends early"),
    ],
    ids=["magic", "v1", "big-endian", "tensors", "keys", "value-type", "item-type", "walk", "arrays-of-arrays", "dims",
         "long-array"],
)
def test_malformed_headers_say_why(raw: bytes, says: str) -> None:
    with pytest.raises(wg.GgufError, match=says):
        wg.decode_header(raw)


def test_a_string_that_is_not_utf8_is_not_kept() -> None:
    raw = _start(0, 1) + _key("general.architecture") + struct.pack("<IQ", 8, 2) + b"\xff\xfe"
    assert wg.decode_header(raw).architecture is None


# ---------------------------------------------------------------------------
# What a hostile header could make the reader keep or do
# ---------------------------------------------------------------------------


def test_an_architecture_longer_than_a_name_is_not_kept() -> None:
    """The architecture is the family of every catalog entry: a megabyte there would be in every list."""
    name = "a" * (wg.MAX_NAME + 1)
    raw = _start(0, 1) + _key("general.architecture") + struct.pack("<IQ", 8, len(name)) + name.encode()
    assert wg.decode_header(raw).architecture is None


def test_a_template_too_long_to_keep_is_not_taken_for_no_template(tmp_path: Path) -> None:
    header = decode_file(write(tmp_path / "m.gguf", template="x" * (wg.MAX_KEPT_STRING + 1)))
    assert header.chat_template is None
    assert header.template_left_out


def test_numbers_under_keys_nobody_reads_are_not_kept() -> None:
    """Long keys of integers: the reader's memory stays far below the header's size."""
    entries = b"".join(_key(f"{i:08}" + "k" * 60_000) + struct.pack("<II", 4, 1) for i in range(200))
    raw = _start(0, 200) + entries
    tracemalloc.start()
    try:
        wg.decode_header(raw)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < len(raw) // 10


@pytest.mark.parametrize("cut", [4, 12, 30, 60])
def test_a_cut_header_says_how_much_more_it_needs(small_file: bytes, cut: int) -> None:
    with pytest.raises(wg.GgufShort) as short:
        wg.decode_header(small_file[:cut])
    assert cut < short.value.needed <= len(small_file)


def test_a_string_claimed_longer_than_any_file_needs_that_much() -> None:
    raw = _start(0, 1) + _key("k") + struct.pack("<IQ", 8, 1 << 60)
    with pytest.raises(wg.GgufShort) as short:
        wg.decode_header(raw)
    assert short.value.needed > 1 << 60
