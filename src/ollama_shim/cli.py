"""The ``ollama-shim`` command: argv and environment -> Settings -> ``server.run`` or ``workers.run_workers``;
``ollama-shim doctor`` -> ``doctor.run``.

``main(argv)`` returns the exit status: 0 after a clean stop, 2 with one ``ollama-shim: error:``
line on stderr for bad settings or a port that cannot be bound, a worker's status otherwise;
for ``doctor``, 0 when everything needed works and 1 otherwise.

May import: os, sys, ``ollama_shim.settings``, ``ollama_shim.server``, ``ollama_shim.workers``, ``ollama_shim.doctor``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from . import doctor, server, workers
from .settings import SettingsError, command_of, load_settings


def main(argv: Sequence[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        settings = load_settings(args, os.environ)
        if command_of(args) == "doctor":
            return doctor.run(settings)
        if settings.workers > 1:
            return workers.run_workers(settings)
        server.run(settings)
    except (SettingsError, server.ServeError) as exc:
        print(f"ollama-shim: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
