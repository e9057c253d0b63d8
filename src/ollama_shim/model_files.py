"""Reading the GGUF headers of a local llama.cpp router's model files, safely and once per file.

Only for a backend on this machine (a loopback root; ``Settings.read_model_files``, on by
default): the router names each model's file in its ``status.args`` and the shim reads that
file's header (``wire.gguf``) to know an unloaded model as it will be once loaded. What is read:

- only an absolute path ending in ``.gguf`` that is a regular file (after symlinks), opened
  read-only and non-blocking (a FIFO or device put in its place is refused, never waited on);
- only the header, through a read-only memory map: the weights are never touched;
- once per file version: the result (or the failure) is kept by path and re-read only when the
  file's size or modification time changes; at most ``MAX_FILES`` are kept.

``header`` blocks (it reads a file): call it through ``asyncio.to_thread``. It never raises: a
file that cannot be read or is not GGUF is None, and the catalog falls back to what the backend
and the id say.

May import: stdlib, ``ollama_shim.wire.gguf``.
"""

from __future__ import annotations

import mmap
import os
import stat
import threading
from collections import OrderedDict

from .wire.gguf import GgufError, GgufHeader, decode_header

MAX_FILES = 1024
_FileVersion = tuple[int, int, int, int]  # device, inode, size, mtime in ns


class ModelFiles:
    """GGUF headers by file path, each read at most once per version of the file."""

    def __init__(self, max_files: int = MAX_FILES) -> None:
        self._max = max_files
        self._known: OrderedDict[str, tuple[_FileVersion, GgufHeader | None]] = OrderedDict()
        self._lock = threading.Lock()
        self.reads = 0  # files opened and decoded (tests count them)

    def header(self, path: str) -> GgufHeader | None:
        """The header of the GGUF file at ``path``; None if it is not one this may read."""
        if not os.path.isabs(path) or not path.lower().endswith(".gguf"):
            return None
        try:
            found = os.stat(path)
        except (OSError, ValueError):
            return None
        if not stat.S_ISREG(found.st_mode):
            return None
        version = (found.st_dev, found.st_ino, found.st_size, found.st_mtime_ns)
        with self._lock:
            known = self._known.get(path)
            if known is not None and known[0] == version:
                self._known.move_to_end(path)
                return known[1]
        header = self._read(path, version)
        with self._lock:
            self._known[path] = (version, header)
            self._known.move_to_end(path)
            while len(self._known) > self._max:
                self._known.popitem(last=False)
        return header

    def _read(self, path: str, version: _FileVersion) -> GgufHeader | None:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | getattr(os, "O_CLOEXEC", 0))
        except (OSError, ValueError):
            return None
        try:
            opened = os.fstat(fd)
            if not stat.S_ISREG(opened.st_mode) or (opened.st_dev, opened.st_ino) != version[:2]:
                return None  # replaced between the look and the open
            if opened.st_size < 4:
                return None
            self.reads += 1
            with mmap.mmap(fd, 0, access=mmap.ACCESS_READ) as mapped, memoryview(mapped) as view:
                return decode_header(view)
        except GgufError:
            return None
        except (OSError, ValueError):
            return None
        finally:
            os.close(fd)
