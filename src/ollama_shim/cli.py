"""The ``ollama-shim`` command: argv and environment -> Settings -> ``server.run``.

May import: os, sys, ``ollama_shim.settings``, ``ollama_shim.server``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from .server import ServeError, run
from .settings import SettingsError, load_settings


def main(argv: Sequence[str] | None = None) -> int:
    try:
        settings = load_settings(sys.argv[1:] if argv is None else argv, os.environ)
        run(settings)
    except (SettingsError, ServeError) as exc:
        print(f"ollama-shim: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
