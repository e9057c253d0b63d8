"""Reading a local router's model files (``model_files``), what their headers mean (``translate.gguf_facts``)
and how a catalog read waits for them (``backends``).

The reader opens only absolute ``.gguf`` paths that are regular files, never opens a FIFO, a
device or a kernel file put in a model's place (not even in a race), survives a file cut short
under it, reads each version of a file once and keeps a bounded number and size of them. The
facts rank below anything the backend says and are never remembered (``catalog.over``); they are
read only for a backend on this machine, off the event loop, and a stuck file never holds up the
catalog.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import stat
import subprocess
import sys
import textwrap
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import pytest

import ollama_shim
from ollama_shim import backends, model_files
from ollama_shim.backends import LiveBackend
from ollama_shim.model_files import ModelFiles
from ollama_shim.settings import Backend
from ollama_shim.translate import catalog, gguf_facts
from ollama_shim.translate.catalog import ModelFacts, Sighting
from ollama_shim.wire.backends import LlamaCppStatus
from ollama_shim.wire.gguf import GgufHeader
from ollama_shim.wire.openai import ModelEntry
from support import llama as llama_support


@pytest.fixture
def smol(tmp_path: Path) -> Path:
    path = tmp_path / "smol.gguf"
    os.symlink(llama_support.model_file(llama_support.SMOLLM2), path)  # as in a router's --models-dir
    return path


def _with_template(path: Path, template: str) -> Path:
    writer = gguf.GGUFWriter(path, "llama")
    writer.add_chat_template(template)
    writer.add_tensor("w", np.zeros(4, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture(params=["by descriptor", "by path"])
def way(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Linux's way (look through an ``O_PATH`` descriptor, reopen through it) and the other systems'."""
    if request.param == "by path":
        monkeypatch.setattr(model_files, "_by_descriptor", lambda: False)
    return str(request.param)


def test_a_model_file_is_read_through_a_symlink(smol: Path, way: str) -> None:
    header = ModelFiles().header(str(smol))
    assert header is not None
    assert header.architecture == "llama"


def test_each_version_of_a_file_is_read_once(tmp_path: Path, way: str) -> None:
    path = tmp_path / "copy.gguf"
    shutil.copyfile(llama_support.model_file(llama_support.SMOLLM2), path)
    files = ModelFiles()
    first = files.header(str(path))
    assert files.header(str(path)) is first
    assert files.reads == 1
    os.utime(path, ns=(1, 1))  # a new version of the file
    assert files.header(str(path)) == first
    assert files.reads == 2


def test_at_most_max_files_are_kept(tmp_path: Path) -> None:
    files = ModelFiles(max_files=1)
    one, other = (str(_with_template(tmp_path / f"{name}.gguf", name)) for name in ("one", "other"))
    files.header(one)
    files.header(other)
    files.header(one)
    assert files.reads == 3


def test_many_links_to_one_file_are_one_read(tmp_path: Path, smol: Path) -> None:
    files = ModelFiles()
    for i in range(3):
        os.symlink(smol, tmp_path / f"link{i}.gguf")
        assert files.header(str(tmp_path / f"link{i}.gguf")) is not None
    assert files.reads == 1


@pytest.mark.parametrize(
    "name", ["relative.gguf", "model.bin", "missing.gguf", "directory.gguf", "empty.gguf", "text.gguf", "zero.gguf"]
)
def test_what_is_not_a_gguf_file_is_none(tmp_path: Path, name: str, way: str) -> None:
    (tmp_path / "directory.gguf").mkdir()
    (tmp_path / "empty.gguf").write_bytes(b"")
    (tmp_path / "text.gguf").write_text("not a model at all")
    os.symlink("/dev/zero", tmp_path / "zero.gguf")
    (tmp_path / "model.bin").symlink_to(llama_support.model_file(llama_support.SMOLLM2))
    path = name if name == "relative.gguf" else str(tmp_path / name)
    assert ModelFiles().header(path) is None


def test_a_fifo_in_place_of_a_model_is_never_waited_on(tmp_path: Path, way: str) -> None:
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
    settled = catalog.over(catalog.settle(None, ModelFacts(configured_context_length=2048), 5), FILE)
    assert settled == ModelFacts(family="llama", size=100, tools=False, thinking=False, max_context_length=8192,
                                 configured_context_length=2048, first_seen_ns=5)


def test_the_backend_now_wins_over_the_file() -> None:
    settled = catalog.over(catalog.settle(None, ModelFacts(tools=True, size=99), 5), FILE)
    assert (settled.tools, settled.size) == (True, 99)


def test_what_the_backend_said_before_wins_over_the_file() -> None:
    remembered = ModelFacts(tools=True, size=99, first_seen_ns=1)
    settled = catalog.over(catalog.settle(remembered, ModelFacts(), 5), FILE)
    assert (settled.tools, settled.size, settled.first_seen_ns) == (True, 99, 1)


@pytest.mark.parametrize(
    ("root", "reads"),
    [("http://127.0.0.1:8080", True), ("http://localhost:8080", True), ("http://[::1]:8080", True),
     ("http://10.0.0.2:8080", False), ("https://models.example", False)],
)
def test_only_a_backend_on_this_machine_gets_its_files_read(root: str, reads: bool) -> None:
    backend = LiveBackend(Backend(root=root), upstream=None, files=ModelFiles())  # type: ignore[arg-type]
    assert (backend.files is not None) is reads


# ---------------------------------------------------------------------------
# A hostile or careless file system: what the reader must survive and never touch
# ---------------------------------------------------------------------------


@pytest.fixture
def opened_for_reading(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, str]]:
    """(file type, real path) of each descriptor opened while the test runs, other than ``O_PATH`` ones."""
    opened: list[tuple[int, str]] = []
    real_open = os.open

    def spy(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        fd = real_open(path, flags, *args, **kwargs)
        if not flags & getattr(os, "O_PATH", 0):
            opened.append((stat.S_IFMT(os.fstat(fd).st_mode), os.readlink(f"/proc/self/fd/{fd}")))
        return fd

    monkeypatch.setattr(os, "open", spy)
    return opened


def test_a_file_cut_short_while_it_is_read_never_kills_the_process(tmp_path: Path) -> None:
    """A model file truncated under the reader (``cp`` over it opens it with O_TRUNC) is no crash."""
    path = tmp_path / "m.gguf"
    shutil.copyfile(llama_support.model_file(llama_support.SMOLLM2), path)
    script = textwrap.dedent(f"""
        import os
        from ollama_shim import model_files
        decode = model_files.decode_header
        def cut_then_decode(buf):
            os.truncate({str(path)!r}, 0)
            return decode(buf)
        model_files.decode_header = cut_then_decode
        model_files.ModelFiles().header({str(path)!r})
        print("alive")
    """)
    src = str(Path(ollama_shim.__file__).parents[1])
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": src})
    assert (done.returncode, done.stdout.strip()) == (0, "alive"), done.stderr


def test_a_device_swapped_in_after_the_look_is_never_opened(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, opened_for_reading: list[tuple[int, str]]
) -> None:
    link = tmp_path / "m.gguf"
    link.symlink_to(llama_support.model_file(llama_support.SMOLLM2))
    swapped = False

    def after_first_look() -> None:  # the race lost: a device where the model was, right after a look at it
        nonlocal swapped
        if not swapped:
            swapped = True
            link.unlink()
            link.symlink_to("/dev/null")

    real_stat, real_open = os.stat, os.open

    def stat_then_swap(path: Any, *args: Any, **kwargs: Any) -> os.stat_result:
        found = real_stat(path, *args, **kwargs)
        if str(path) == str(link):
            after_first_look()
        return found

    def open_then_swap(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        fd = real_open(path, flags, *args, **kwargs)
        if str(path) == str(link):
            after_first_look()
        return fd

    monkeypatch.setattr(os, "stat", stat_then_swap)
    monkeypatch.setattr(os, "open", open_then_swap)
    ModelFiles().header(str(link))
    assert swapped
    assert [kind for kind, _ in opened_for_reading if kind != stat.S_IFREG] == []


@pytest.mark.parametrize("target", ["/proc/self/environ", "/proc/self/status", "/sys/kernel/notes"])
def test_kernel_pseudo_files_are_never_opened(
    tmp_path: Path, opened_for_reading: list[tuple[int, str]], target: str
) -> None:
    if not os.path.exists(target):
        pytest.skip(f"{target} is not on this machine")
    link = tmp_path / "m.gguf"
    link.symlink_to(target)
    assert ModelFiles().header(str(link)) is None
    assert opened_for_reading == []


def test_a_header_longer_than_the_cap_is_not_read_past_it(smol: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(model_files, "MAX_HEADER_BYTES", 1 << 20)  # SmolLM2's header is 1.8 MB
    read: list[int] = []
    real_pread = os.pread

    def spy(fd: int, n: int, offset: int) -> bytes:
        chunk = real_pread(fd, n, offset)
        read.append(len(chunk))
        return chunk

    monkeypatch.setattr(os, "pread", spy)
    assert ModelFiles().header(str(smol)) is None
    assert 0 < sum(read) <= 1 << 20


def test_the_kept_templates_of_all_files_are_bounded_together(tmp_path: Path) -> None:
    """A thousand files with the longest templates kept would hold gigabytes: the oldest are let go."""
    files = ModelFiles(max_kept_bytes=250_000)
    paths = [str(_with_template(tmp_path / f"m{i}.gguf", f"{i}" + "x" * 100_000)) for i in range(3)]
    for path in paths:
        assert files.header(path) is not None
    assert files.kept_bytes <= 250_000
    files.header(paths[0])  # let go: read again
    assert files.reads == 4


# ---------------------------------------------------------------------------
# The hook: reading never holds up the catalog nor runs on the event loop
# ---------------------------------------------------------------------------


def _router_entry(path: str, name: str = "m") -> ModelEntry:
    return ModelEntry(id=name, status=LlamaCppStatus(value="unloaded", args=["llama-server", "--model", path]))


class _StuckFiles(ModelFiles):
    """Model files on a device that does not answer until ``release`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()
        self.calls = 0

    def header(self, path: str) -> GgufHeader | None:
        self.calls += 1
        self.release.wait(60)
        return None


async def test_a_stuck_file_read_never_holds_up_the_catalog(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backends, "FILE_READ_WAIT", 0.2)
    files = _StuckFiles()
    backend = LiveBackend(Backend(root="http://127.0.0.1:8080"), upstream=None, files=files)  # type: ignore[arg-type]
    try:
        first = await asyncio.wait_for(backends._file_facts(backend, [_router_entry("/m/a.gguf")], router=True), 20)
        again = await asyncio.wait_for(backends._file_facts(backend, [_router_entry("/m/a.gguf")], router=True), 20)
    finally:
        files.release.set()
    assert (first, again) == ([None], [None])
    assert files.calls == 1  # the second refresh does not stack a second thread on the stuck one


class _OneStuckFile(_StuckFiles):
    def header(self, path: str) -> GgufHeader | None:
        return super().header(path) if path.endswith("stuck.gguf") else ModelFiles.header(self, path)


async def test_a_catalog_read_takes_what_was_found_before_a_stuck_file(
    smol: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(backends, "FILE_READ_WAIT", 0.5)
    files = _OneStuckFile()
    backend = LiveBackend(Backend(root="http://127.0.0.1:8080"), upstream=None, files=files)  # type: ignore[arg-type]
    entries = [_router_entry(str(smol), "a"), _router_entry("/m/stuck.gguf", "b"), _router_entry(str(smol), "c")]
    try:
        facts = await asyncio.wait_for(backends._file_facts(backend, entries, router=True), 20)
    finally:
        files.release.set()
    assert [f is not None and f.family for f in facts] == ["llama", False, "llama"]


async def test_a_failing_file_read_never_breaks_the_catalog(smol: Path) -> None:
    class Failing(ModelFiles):
        def header(self, path: str) -> GgufHeader | None:
            raise RuntimeError("a bug")

    backend = LiveBackend(Backend(root="http://127.0.0.1:8080"), upstream=None, files=Failing())  # type: ignore[arg-type]
    assert await backends._file_facts(backend, [_router_entry(str(smol))], router=True) == [None]


async def test_the_files_are_read_and_understood_off_the_event_loop(
    smol: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads: set[int] = set()
    understood = gguf_facts.seen_in_gguf

    def spy(header: GgufHeader, args: list[str] | None = None) -> ModelFacts:
        threads.add(threading.get_ident())
        return understood(header, args)

    monkeypatch.setattr(gguf_facts, "seen_in_gguf", spy)
    backend = LiveBackend(Backend(root="http://127.0.0.1:8080"), upstream=None, files=ModelFiles())  # type: ignore[arg-type]
    (facts,) = await backends._file_facts(backend, [_router_entry(str(smol))], router=True)
    assert facts is not None
    assert facts.family == "llama"
    assert threading.get_ident() not in threads


# ---------------------------------------------------------------------------
# What is remembered
# ---------------------------------------------------------------------------


def test_what_a_file_says_is_not_remembered_as_the_backends_word() -> None:
    """A model file replaced before the model is ever loaded shows its new facts, not the old file's."""
    backend = LiveBackend(Backend(root="http://127.0.0.1:8080"), upstream=None)  # type: ignore[arg-type]
    old = Sighting(upstream_id="m", facts=ModelFacts(format="gguf"),
                   file_facts=ModelFacts(size=100, quantization_level="Q4_0"))
    backend._settled(old, 1)
    record = backend._settled(replace(old, file_facts=ModelFacts(size=200, quantization_level="Q8_0")), 2)
    assert (record.size, record.quantization_level) == (200, "Q8_0")


def test_the_memory_keeps_only_the_backends_word() -> None:
    backend = LiveBackend(Backend(root="http://127.0.0.1:8080"), upstream=None)  # type: ignore[arg-type]
    backend._settled(Sighting(upstream_id="m", facts=ModelFacts(format="gguf"), file_facts=FILE), 1)
    assert backend.recall("m") == ModelFacts(format="gguf", first_seen_ns=1)


def test_a_template_too_long_to_keep_says_nothing_of_tools_or_thinking() -> None:
    """Not the ChatML stand-in of a file with no template: there is one, unread."""
    facts = gguf_facts.seen_in_gguf(GgufHeader(version=3, template_left_out=True))
    assert (facts.tools, facts.thinking) == (None, None)


def test_as_started_drops_only_what_a_replaced_template_changes() -> None:
    facts = gguf_facts.seen_in_gguf(HEADER)
    assert gguf_facts.as_started(facts, ARGS) == facts
    assert gguf_facts.as_started(facts, [*ARGS, "--no-jinja"]) == replace(facts, tools=None, thinking=None)


def test_no_descriptor_is_left_open(tmp_path: Path, smol: Path, way: str) -> None:
    os.mkfifo(tmp_path / "fifo.gguf")
    (tmp_path / "text.gguf").write_text("not a model at all")
    (tmp_path / "kernel.gguf").symlink_to("/proc/self/status")
    paths = [smol, tmp_path / "fifo.gguf", tmp_path / "text.gguf", tmp_path / "kernel.gguf", tmp_path / "none.gguf"]
    before = len(os.listdir("/proc/self/fd"))
    files = ModelFiles()
    for path in paths * 2:
        files.header(str(path))
    assert len(os.listdir("/proc/self/fd")) == before
