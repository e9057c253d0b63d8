"""``python -m ollama_shim``: the same as the ``ollama-shim`` command.

May import: ``ollama_shim.cli``.
"""

import sys

from .cli import main

sys.exit(main())
