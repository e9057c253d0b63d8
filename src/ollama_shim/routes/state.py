"""The typed state every handler reaches through ``state_of(request)``: settings, upstream, registry.

May import: aiohttp.web, stdlib, ``ollama_shim.settings``, ``ollama_shim.upstream``, ``ollama_shim.registry``,
``ollama_shim.loader``, ``ollama_shim.translate.options``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

from aiohttp import web

from ..loader import Loader
from ..registry import Registry
from ..settings import Settings
from ..translate.options import IgnoredOption
from ..upstream import Upstream

log = logging.getLogger("ollama_shim")


@dataclass
class AppState:
    settings: Settings
    upstream: Upstream
    registry: Registry
    loader: Loader
    ignored_options_logged: set[str] = field(default_factory=set)

    def note_ignored(self, options: Iterable[IgnoredOption], backend_kind: str) -> None:
        """Log each option a backend cannot take, and why, once per process rather than per request."""
        for option in options:
            key = f"{backend_kind}:{option.name}"
            if key not in self.ignored_options_logged:
                self.ignored_options_logged.add(key)
                log.info("option %r %s and is ignored", option.name, _WHY[option.reason].format(kind=backend_kind))


_WHY = {
    "unsupported": "is not supported by {kind} backends",
    "load_time": "is a load-time setting of the backend",
    "unknown": "is not an Ollama option (or no longer one)",
}

STATE = web.AppKey("state", AppState)


def state_of(request: web.Request) -> AppState:
    return request.app[STATE]
