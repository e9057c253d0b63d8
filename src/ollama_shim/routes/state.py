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
    ignored_options_logged: set[tuple[str, str]] = field(default_factory=set)
    ignored_options_full: bool = False

    def note_ignored(self, options: Iterable[IgnoredOption], backend_kind: str) -> None:
        """Log each option a backend cannot take, and why, once per process rather than per request.

        Option names are client text: at most ``MAX_LOGGED_OPTIONS`` distinct ones are remembered
        (one more line says when the rest go unlogged), each cut to ``MAX_OPTION_NAME_CHARS`` and
        shown with ``repr`` so that no control character reaches the log as such.
        """
        for option in options:
            name = _shortened(option.name)
            key = (backend_kind, name)
            if key in self.ignored_options_logged:
                continue
            if len(self.ignored_options_logged) >= MAX_LOGGED_OPTIONS:
                if not self.ignored_options_full:
                    self.ignored_options_full = True
                    log.info("more options are ignored; past %d names they are no longer logged", MAX_LOGGED_OPTIONS)
                return
            self.ignored_options_logged.add(key)
            log.info("option %r %s and is ignored", name, _WHY[option.reason].format(kind=backend_kind))


MAX_LOGGED_OPTIONS = 128
MAX_OPTION_NAME_CHARS = 40


def _shortened(name: str) -> str:
    return name if len(name) <= MAX_OPTION_NAME_CHARS else name[:MAX_OPTION_NAME_CHARS] + "…"


_WHY = {
    "unsupported": "is not supported by {kind} backends",
    "load_time": "is a load-time setting of the backend",
    "unknown": "is not an Ollama option (or no longer one)",
}

STATE = web.AppKey("state", AppState)


def state_of(request: web.Request) -> AppState:
    return request.app[STATE]
