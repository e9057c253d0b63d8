"""Reading a local router's model files (``model_files``) and what their headers mean (``translate.gguf_facts``).

The reader opens only absolute ``.gguf`` paths that are regular files, never waits on a FIFO or
a device put in a model's place, reads each version of a file once, and keeps a bounded number.
The facts it gives rank below anything the backend says (``catalog.settle``), and are read only
for a backend on this machine.
"""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

import pytest

from ollama_shim.backends import LiveBackend
from ollama_shim.model_files import ModelFiles
from ollama_shim.settings import Backend
from ollama_shim.translate import catalog, gguf_facts
from ollama_shim.translate.catalog import ModelFacts
from ollama_shim.wire.gguf import GgufHeader
from support import llama as llama_support


@pytest.fixture
def smol(tmp_path: Path) -> Path:
    path = tmp_path / "smol.gguf"
    os.symlink(llama_support.model_file(llama_support.SMOLLM2), path)  # as in a router's --models-dir
    return path


def test_a_model_file_is_read_through_a_symlink(smol: Path) -> None:
    header = ModelFiles().header(str(smol))
    assert header is not None
    assert header.architecture == "llama"


def test_each_version_of_a_file_is_read_once(tmp_path: Path) -> None:
    path = tmp_path / "copy.gguf"
    shutil.copyfile(llama_support.model_file(llama_support.SMOLLM2), path)
    files = ModelFiles()
    first = files.header(str(path))
    assert files.header(str(path)) is first
    assert files.reads == 1
    os.utime(path, ns=(1, 1))  # a new version of the file
    assert files.header(str(path)) == first
    assert files.reads == 2


def test_at_most_max_files_are_kept(tmp_path: Path, smol: Path) -> None:
    files = ModelFiles(max_files=1)
    other = tmp_path / "other.gguf"
    os.symlink(smol, other)
    files.header(str(smol))
    files.header(str(other))
    files.header(str(smol))
    assert files.reads == 3


@pytest.mark.parametrize(
    "name", ["relative.gguf", "model.bin", "missing.gguf", "directory.gguf", "empty.gguf", "text.gguf", "zero.gguf"]
)
def test_what_is_not_a_gguf_file_is_none(tmp_path: Path, name: str) -> None:
    (tmp_path / "directory.gguf").mkdir()
    (tmp_path / "empty.gguf").write_bytes(b"")
    (tmp_path / "text.gguf").write_text("not a model at all")
    os.symlink("/dev/zero", tmp_path / "zero.gguf")
    (tmp_path / "model.bin").symlink_to(llama_support.model_file(llama_support.SMOLLM2))
    path = name if name == "relative.gguf" else str(tmp_path / name)
    assert ModelFiles().header(path) is None


def test_a_fifo_in_place_of_a_model_is_never_waited_on(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo.gguf"
    os.mkfifo(fifo)
    found: list[GgufHeader | None] = []
    reader = threading.Thread(target=lambda: found.append(ModelFiles().header(str(fifo))), daemon=True)
    reader.start()
    reader.join(10)
    assert found == [None]  # an open of the FIFO would still be waiting for a writer


# ---------------------------------------------------------------------------
# What a header means
# ---------------------------------------------------------------------------

ARGS = ["llama-server", "--ctx-size", "2048", "--model", "/m/a.gguf", "--threads", "2"]


@pytest.mark.parametrize(
    ("args", "path"),
    [(ARGS, "/m/a.gguf"), (["-m", "/m/b.gguf"], "/m/b.gguf"), (["--model"], None), (["-hf", "u/r:Q4"], None),
     (None, None)],
)
def test_model_path_from_args(args: list[str] | None, path: str | None) -> None:
    assert gguf_facts.model_path_from_args(args) == path


@pytest.mark.parametrize(
    ("args", "replaced"),
    [(ARGS, False), ([*ARGS, "--chat-template", "chatml"], True), ([*ARGS, "--chat-template-file=/t.jinja"], True),
     ([*ARGS, "--no-jinja"], True), ([*ARGS, "--jinja"], False), (None, False)],
)
def test_template_replaced(args: list[str] | None, replaced: bool) -> None:
    assert gguf_facts.template_replaced(args) is replaced


@pytest.mark.parametrize(
    ("template", "tools"),
    [
        ("{% for m in messages %}{{ m.content }}{% endfor %}", False),
        ("{% if tools %}{{ tools | tojson }}{% endif %}{% for c in m.tool_calls %}{% endfor %}", True),
        ("{% if tools %}{{ tools }}{% endif %}", False),  # definitions but never the calls: a round trip breaks
        ("{{ m.tool_calls }}", False),
        ("{{ mytools }} {{ tool_calls_x }}", False),
    ],
)
def test_tools_from_template(template: str, tools: bool) -> None:
    assert gguf_facts.tools_from_template(template) is tools


HEADER = GgufHeader(version=3, architecture="qwen3", file_type=15, chat_template="<think>{{ tools }}{{ tool_calls }}",
                    context_length=40960, embedding_length=2560, vocab_size=151936,
                    parameter_count=4_022_468_096, tensor_bytes=2_497_280_256)


def test_seen_in_gguf() -> None:
    assert gguf_facts.seen_in_gguf(HEADER, ARGS) == ModelFacts(
        family="qwen3", format="gguf", size=2_497_280_256, parameter_count=4_022_468_096, parameter_size="4.0B",
        quantization_level="Q4_K_M", max_context_length=40960, embedding_length=2560, vocab_size=151936,
        tools=True, thinking=True)


def test_a_file_with_no_template_gets_the_chatml_stand_in_which_has_neither() -> None:
    facts = gguf_facts.seen_in_gguf(GgufHeader(version=3))
    assert (facts.tools, facts.thinking) == (False, False)


def test_a_tool_use_template_gives_tools() -> None:
    header = GgufHeader(version=3, chat_template="plain", tool_use_template="{{ tools }}{{ tool_calls }}")
    assert gguf_facts.seen_in_gguf(header).tools is True


def test_a_replaced_template_says_nothing_of_tools_or_thinking() -> None:
    facts = gguf_facts.seen_in_gguf(HEADER, [*ARGS, "--chat-template", "chatml"])
    assert (facts.tools, facts.thinking) == (None, None)


def test_a_split_model_says_nothing_of_its_size() -> None:
    facts = gguf_facts.seen_in_gguf(GgufHeader(version=3, split_count=2, parameter_count=10, tensor_bytes=10))
    assert (facts.size, facts.parameter_count, facts.parameter_size) == (None, None, None)


def test_values_out_of_bounds_are_dropped() -> None:
    header = GgufHeader(version=3, context_length=-1, embedding_length=1 << 40, parameter_count=1 << 80,
                        tensor_bytes=1 << 80, file_type=999)
    facts = gguf_facts.seen_in_gguf(header)
    assert (facts.max_context_length, facts.embedding_length, facts.parameter_count, facts.size,
            facts.quantization_level) == (None, None, None, None, None)


# ---------------------------------------------------------------------------
# Their rank, and who may read them
# ---------------------------------------------------------------------------

FILE = ModelFacts(family="llama", size=100, tools=False, thinking=False, max_context_length=8192)


def test_file_facts_fill_only_what_nothing_else_says() -> None:
    settled = catalog.settle(None, ModelFacts(configured_context_length=2048), 5, FILE)
    assert settled == ModelFacts(family="llama", size=100, tools=False, thinking=False, max_context_length=8192,
                                 configured_context_length=2048, first_seen_ns=5)


def test_the_backend_now_wins_over_the_file() -> None:
    settled = catalog.settle(None, ModelFacts(tools=True, size=99), 5, FILE)
    assert (settled.tools, settled.size) == (True, 99)


def test_what_the_backend_said_before_wins_over_the_file() -> None:
    remembered = ModelFacts(tools=True, size=99, first_seen_ns=1)
    settled = catalog.settle(remembered, ModelFacts(), 5, FILE)
    assert (settled.tools, settled.size, settled.first_seen_ns) == (True, 99, 1)


@pytest.mark.parametrize(
    ("root", "reads"),
    [("http://127.0.0.1:8080", True), ("http://localhost:8080", True), ("http://[::1]:8080", True),
     ("http://10.0.0.2:8080", False), ("https://models.example", False)],
)
def test_only_a_backend_on_this_machine_gets_its_files_read(root: str, reads: bool) -> None:
    backend = LiveBackend(Backend(root=root), upstream=None, files=ModelFiles())  # type: ignore[arg-type]
    assert (backend.files is not None) is reads
