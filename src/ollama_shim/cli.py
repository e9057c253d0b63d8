"""The ``ollama-shim`` command: argv and environment -> Settings -> ``server.run``.

May import: os, sys, ``ollama_shim.settings``, ``ollama_shim.server``, ``ollama_shim.workers``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from .server import ServeError, run
from .settings import SettingsError, load_settings
from .workers import run_workers


def main(argv: Sequence[str] | None = None) -> int:
    try:
        settings = load_settings(sys.argv[1:] if argv is None else argv, os.environ)
        if settings.workers > 1:
            return run_workers(settings)
        run(settings)
    except (SettingsError, ServeError) as exc:
        print(f"ollama-shim: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
