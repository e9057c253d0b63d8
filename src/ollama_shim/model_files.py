"""Reading the GGUF headers of a local llama.cpp router's model files, safely and once per file.

Only for a backend on this machine (a loopback root; ``Settings.read_model_files``, on by
default): the router names each model's file in its ``status.args`` and the shim reads that
file's header (``wire.gguf``) to know an unloaded model as it will be once loaded. What is read:

- only an absolute path ending in ``.gguf`` that is a regular file (after symlinks), opened
  read-only and non-blocking. On Linux the path is first opened with ``O_PATH``, which runs no
  device's open, the file is looked at through that descriptor and only then opened for reading
  through it: a FIFO or device swapped in for the model is never opened, and neither is a
  kernel file under ``/proc`` or ``/sys`` (regular to ``stat``, but not a model);
- only the header, with ``pread`` into a buffer that grows as the header needs (a first read of
  ``FIRST_READ`` bytes holds most), never past the file's size nor ``MAX_HEADER_BYTES``; the
  weights are never read. Not a memory map: a file cut short under a map kills the process
  (SIGBUS) when the cut pages are touched; a cut file read this way is only a short read;
- once per file version: the result (or the failure) is kept by the file's device, inode, size
  and modification time (so many links to one file are one read) and read again only when one of
  them changes; at most ``MAX_FILES`` are kept, whose kept strings (templates) come to at most
  ``MAX_KEPT_BYTES`` together.

``header`` blocks (it reads a file): call it in a worker thread. It never raises: a file that
cannot be read or is not GGUF is None, and the catalog falls back to what the backend and the id
say.

May import: stdlib, ``ollama_shim.wire.gguf``.
"""

from __future__ import annotations

import functools
import os
import stat
import sys
import threading
from collections import OrderedDict

from .wire.gguf import GgufError, GgufHeader, GgufShort, decode_header

MAX_FILES = 1024
MAX_KEPT_BYTES = 32 << 20  # templates of a thousand models, at ten times the usual length
MAX_HEADER_BYTES = 64 << 20  # the largest vocabularies make headers of about 10 MB
FIRST_READ = 8 << 20
_FileVersion = tuple[int, int, int, int]  # device, inode, size, mtime in ns

_O_PATH = getattr(os, "O_PATH", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_READ = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | _CLOEXEC
_KERNEL_FILES = ("/proc/", "/sys/")


@functools.cache
def _by_descriptor() -> bool:
    """Whether a path can be looked at through an ``O_PATH`` descriptor and reopened through it."""
    return bool(_O_PATH) and os.path.isdir("/proc/self/fd")


class _Found:
    """A file at a path, looked at but not yet opened for reading (``open``)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.anchor: int | None = None
        if _by_descriptor():
            self.anchor = os.open(path, _O_PATH | _CLOEXEC)
            self.link = f"/proc/self/fd/{self.anchor}"
            try:
                found = os.fstat(self.anchor)
            except OSError:
                self.close()
                raise
        else:
            found = os.stat(path)
        self.regular = stat.S_ISREG(found.st_mode)
        self.version: _FileVersion = (found.st_dev, found.st_ino, found.st_size, found.st_mtime_ns)

    def kernel_file(self) -> bool:
        return self.anchor is not None and os.readlink(self.link).startswith(_KERNEL_FILES)

    def open(self) -> int | None:
        """A read-only descriptor of the file looked at; None if another is there now."""
        if self.anchor is not None:
            return os.open(self.link, _READ)  # the very file looked at, whatever the path names now
        fd = os.open(self.path, _READ)
        try:
            opened = os.fstat(fd)
        except OSError:
            os.close(fd)
            raise
        if stat.S_ISREG(opened.st_mode) and (opened.st_dev, opened.st_ino) == self.version[:2]:
            return fd
        os.close(fd)  # replaced between the look and the open
        return None

    def close(self) -> None:
        if self.anchor is not None:
            os.close(self.anchor)
            self.anchor = None


def _kept_bytes(header: GgufHeader | None) -> int:
    if header is None:
        return 0
    kept = (header.architecture, header.chat_template, header.tool_use_template)
    return sum(sys.getsizeof(text) for text in kept if text is not None)


def _read_header(fd: int, size: int) -> GgufHeader | None:
    """The header of the open file of ``size`` bytes, read as far as it needs and no further."""
    limit = min(size, MAX_HEADER_BYTES)
    want = min(limit, FIRST_READ)
    buf = bytearray()
    while True:
        while len(buf) < want:
            chunk = os.pread(fd, want - len(buf), len(buf))
            if not chunk:
                return None  # shorter than it was: changed under the reader, read again next time
            buf += chunk
        try:
            return decode_header(buf)
        except GgufShort as short:
            if short.needed > limit:
                return None
            want = min(limit, max(short.needed, 2 * want))
        except GgufError:
            return None


class ModelFiles:
    """GGUF headers of files, each read at most once per version of the file."""

    def __init__(self, max_files: int = MAX_FILES, max_kept_bytes: int = MAX_KEPT_BYTES) -> None:
        self._max = max_files
        self._max_kept = max_kept_bytes
        self._known: OrderedDict[_FileVersion, GgufHeader | None] = OrderedDict()
        self._lock = threading.Lock()
        self.kept_bytes = 0  # of the strings the kept headers hold
        self.reads = 0  # files opened and decoded (tests count them)

    def header(self, path: str) -> GgufHeader | None:
        """The header of the GGUF file at ``path``; None if it is not one this may read."""
        if not os.path.isabs(path) or not path.lower().endswith(".gguf"):
            return None
        try:
            found = _Found(path)
        except (OSError, ValueError):
            return None
        try:
            if not found.regular or found.kernel_file():
                return None
            with self._lock:
                if found.version in self._known:
                    self._known.move_to_end(found.version)
                    return self._known[found.version]
            header = self._read(found)
        except (OSError, ValueError):
            return None
        finally:
            found.close()
        self._keep(found.version, header)
        return header

    def _read(self, found: _Found) -> GgufHeader | None:
        size = found.version[2]
        if size < 4:
            return None
        fd = found.open()
        if fd is None:
            return None
        try:
            self.reads += 1
            return _read_header(fd, size)
        finally:
            os.close(fd)

    def _keep(self, version: _FileVersion, header: GgufHeader | None) -> None:
        with self._lock:
            if version in self._known:  # read twice at once
                self.kept_bytes -= _kept_bytes(self._known.pop(version))
            self._known[version] = header
            self.kept_bytes += _kept_bytes(header)
            while len(self._known) > self._max or (self.kept_bytes > self._max_kept and len(self._known) > 1):
                _, dropped = self._known.popitem(last=False)
                self.kept_bytes -= _kept_bytes(dropped)
