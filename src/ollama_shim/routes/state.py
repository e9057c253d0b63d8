"""The typed state every handler reaches through ``state_of(request)``: settings, upstream, registry.

May import: aiohttp.web, stdlib, ``ollama_shim.settings``, ``ollama_shim.upstream``, ``ollama_shim.registry``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from aiohttp import web

from ..loader import Loader
from ..registry import Registry
from ..settings import Settings
from ..upstream import Upstream

log = logging.getLogger("ollama_shim")


@dataclass
class AppState:
    settings: Settings
    upstream: Upstream
    registry: Registry
    loader: Loader
    ignored_options_logged: set[str] = field(default_factory=set)

    def note_ignored(self, names: list[str] | tuple[str, ...], backend_kind: str) -> None:
        """Log each option name a backend cannot take once per process, not once per request."""
        for name in names:
            key = f"{backend_kind}:{name}"
            if key not in self.ignored_options_logged:
                self.ignored_options_logged.add(key)
                log.info("option %r is not supported by %s backends and is ignored", name, backend_kind)


STATE = web.AppKey("state", AppState)


def state_of(request: web.Request) -> AppState:
    return request.app[STATE]
