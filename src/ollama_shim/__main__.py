"""``python -m ollama_shim``: the same as the ``ollama-shim`` command."""

import sys

from .cli import main

sys.exit(main())
